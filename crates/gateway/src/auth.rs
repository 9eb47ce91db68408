//! Gateway authentication: the Cognito-style login endpoint, the ID tokens it
//! issues (HS256 JWTs), the bearer-token check of routes and the API key check.
//!
//! What the client sees follows API Gateway with a Cognito user pool
//! authorizer and API keys:
//! - no `Authorization` header, or a token that fails verification (bad
//!   signature, wrong issuer or audience, not an ID token, unreadable):
//!   401 `{"message":"Unauthorized"}` (gateway response `UNAUTHORIZED`: "the
//!   custom or Amazon Cognito authorizer failed to authenticate the caller");
//! - an expired token: 401 `{"message":"The incoming token has expired"}`;
//! - a missing or unknown API key on a route that requires one: 403
//!   `{"message":"Forbidden"}` (gateway response `INVALID_API_KEY`).
//!
//! Passwords and API keys are compared as SHA-256 digests in constant time, so
//! neither their content nor their length leaks through timing. No error
//! message or `Debug` output contains a password, API key, secret or token.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::event::UtcTime;

/// Minimum length of the HS256 signing secret (256 bits, the hash size).
pub const MIN_SECRET_LEN: usize = 32;

/// Longest token lifetime accepted (Cognito's maximum for ID tokens).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Clock skew tolerated when checking a token's `exp`.
pub const EXP_LEEWAY: Duration = Duration::from_secs(5);

/// The `scope` Cognito puts in access tokens issued by `InitiateAuth`.
const ACCESS_TOKEN_SCOPE: &str = "aws.cognito.signin.user.admin";

/// One user who can log in.
#[derive(Clone, PartialEq, Eq)]
pub struct UserConfig {
    /// The login name (`AuthParameters.USERNAME`, claim `cognito:username`).
    pub username: String,
    /// The password (`AuthParameters.PASSWORD`).
    pub password: String,
    /// An e-mail address to put in the ID token (`email`, `email_verified`).
    pub email: Option<String>,
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("email", &self.email)
            .finish()
    }
}

/// Everything the authenticator needs, as configured.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The users who can log in.
    pub users: Vec<UserConfig>,
    /// The valid API keys (`x-api-key`); at least one, the login needs it.
    pub api_keys: Vec<String>,
    /// The HS256 signing secret, at least [`MIN_SECRET_LEN`] bytes.
    pub jwt_secret: Vec<u8>,
    /// The tokens' `iss`, e.g. `https://esb.local/<stack>`.
    pub issuer: String,
    /// The ID tokens' `aud` (Cognito: the app client id).
    pub audience: String,
    /// How long a token is valid (`ExpiresIn`), at most [`MAX_TOKEN_LIFETIME`].
    pub token_lifetime: Duration,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("users", &self.users)
            .field(
                "api_keys",
                &format_args!("<{} redacted>", self.api_keys.len()),
            )
            .field("jwt_secret", &"<redacted>")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("token_lifetime", &self.token_lifetime)
            .finish()
    }
}

/// Why an [`AuthConfig`] was rejected.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// No API key is configured, so nobody could log in.
    #[error("no api key configured: the login endpoint requires one")]
    NoApiKeys,
    /// An API key is empty.
    #[error("api key #{index} is empty")]
    EmptyApiKey {
        /// Position of the key in the list.
        index: usize,
    },
    /// The signing secret is too short.
    #[error("jwt signing secret is {len} bytes, at least {MIN_SECRET_LEN} are required")]
    ShortSecret {
        /// The secret's length.
        len: usize,
    },
    /// The issuer is empty.
    #[error("token issuer is empty")]
    EmptyIssuer,
    /// The audience is empty.
    #[error("token audience (client id) is empty")]
    EmptyAudience,
    /// The token lifetime is zero or longer than [`MAX_TOKEN_LIFETIME`].
    #[error("token lifetime of {seconds}s is outside 1s..=86400s")]
    InvalidLifetime {
        /// The lifetime in seconds.
        seconds: u64,
    },
    /// A user has an empty name.
    #[error("user #{index} has an empty username")]
    EmptyUsername {
        /// Position of the user in the list.
        index: usize,
    },
    /// A user has an empty password.
    #[error("user {username:?} has an empty password")]
    EmptyPassword {
        /// The user.
        username: String,
    },
    /// Two users have the same name.
    #[error("user {username:?} is configured more than once")]
    DuplicateUser {
        /// The user.
        username: String,
    },
    /// The signing key could not be built.
    #[error("invalid jwt signing key")]
    Key {
        /// What jsonwebtoken reported.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
}

/// Why a login, token or API key was refused. [`AuthError::status`] and
/// [`AuthError::client_message`] give what the client is told; `Display` is
/// for the log and never contains a credential.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `x-api-key` was sent.
    #[error("missing api key")]
    MissingApiKey,
    /// The `x-api-key` is not a configured key.
    #[error("invalid api key")]
    InvalidApiKey,
    /// The login body is not a JSON object of the expected shape.
    #[error("malformed login body (json error at line {line}, column {column})")]
    MalformedLoginBody {
        /// Line of the JSON error.
        line: usize,
        /// Column of the JSON error.
        column: usize,
    },
    /// `AuthParameters.USERNAME` or `.PASSWORD` is missing or empty.
    #[error("login body lacks {parameter}")]
    MissingCredentials {
        /// `USERNAME` or `PASSWORD`.
        parameter: &'static str,
    },
    /// Unknown user or wrong password (deliberately not told apart).
    #[error("incorrect username or password")]
    BadCredentials,
    /// No `Authorization` header.
    #[error("missing authorization token")]
    MissingToken,
    /// The `Authorization` header is neither `Bearer <jwt>` nor a bare JWT.
    #[error("authorization header is not a bearer token")]
    MalformedAuthorization,
    /// The token failed decoding, signature, issuer or audience checks.
    #[error("invalid token")]
    InvalidToken {
        /// What jsonwebtoken reported.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// The token is valid but not an ID token (`token_use` is not `id`).
    #[error("token is not an id token")]
    WrongTokenUse,
    /// The token lacks a claim the gateway needs, or has it in the wrong type.
    #[error("token lacks a valid {claim} claim")]
    MissingClaim {
        /// The claim's name.
        claim: &'static str,
    },
    /// The token's `exp` has passed.
    #[error("token expired")]
    ExpiredToken,
    /// Signing a new token failed.
    #[error("signing a token failed")]
    TokenSigning {
        /// What jsonwebtoken reported.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
}

impl AuthError {
    /// The HTTP status API Gateway (or Cognito, for the login) answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MissingApiKey | AuthError::InvalidApiKey => StatusCode::FORBIDDEN,
            AuthError::MalformedLoginBody { .. } | AuthError::MissingCredentials { .. } => {
                StatusCode::BAD_REQUEST
            }
            AuthError::BadCredentials
            | AuthError::MissingToken
            | AuthError::MalformedAuthorization
            | AuthError::InvalidToken { .. }
            | AuthError::WrongTokenUse
            | AuthError::MissingClaim { .. }
            | AuthError::ExpiredToken => StatusCode::UNAUTHORIZED,
            AuthError::TokenSigning { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `message` of the JSON error body, safe to show to the client.
    pub fn client_message(&self) -> &'static str {
        match self {
            AuthError::MissingApiKey | AuthError::InvalidApiKey => "Forbidden",
            AuthError::MalformedLoginBody { .. } => "Malformed request body",
            AuthError::MissingCredentials {
                parameter: "USERNAME",
            } => "Missing required parameter USERNAME",
            AuthError::MissingCredentials { .. } => "Missing required parameter PASSWORD",
            AuthError::BadCredentials => "Incorrect username or password.",
            AuthError::MissingToken
            | AuthError::MalformedAuthorization
            | AuthError::InvalidToken { .. }
            | AuthError::WrongTokenUse
            | AuthError::MissingClaim { .. } => "Unauthorized",
            AuthError::ExpiredToken => "The incoming token has expired",
            AuthError::TokenSigning { .. } => "Internal server error",
        }
    }
}

/// The source of "now" for issuing and checking tokens.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The successful login answer, serialized as Cognito's `InitiateAuth`
/// response: `{"AuthenticationResult":{"AccessToken":..,"ExpiresIn":3600,
/// "IdToken":..,"TokenType":"Bearer"},"ChallengeParameters":{}}` (no
/// `RefreshToken`: ESB does not refresh tokens).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoginResponse {
    /// The tokens.
    pub authentication_result: AuthenticationResult,
    /// Always empty: no challenge follows a password login.
    pub challenge_parameters: BTreeMap<String, String>,
}

impl fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginResponse")
            .field("authentication_result", &self.authentication_result)
            .finish_non_exhaustive()
    }
}

/// Cognito's `AuthenticationResultType`, as ESB fills it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthenticationResult {
    /// An access token (`token_use: access`); routes do not accept it.
    pub access_token: String,
    /// Lifetime of both tokens in seconds.
    pub expires_in: u64,
    /// The ID token routes need in `Authorization: Bearer <IdToken>`.
    pub id_token: String,
    /// Always `Bearer`.
    pub token_type: String,
}

impl fmt::Debug for AuthenticationResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticationResult")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("id_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .finish()
    }
}

/// The verified claims of an ID token.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    raw: Map<String, Value>,
}

impl Claims {
    /// Wraps claims that were already verified (or, in tests, made up).
    pub(crate) fn from_verified(raw: Map<String, Value>) -> Claims {
        Claims { raw }
    }

    /// The claims as the JWT carries them.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// The `sub` claim.
    pub fn sub(&self) -> Option<&str> {
        self.raw.get("sub").and_then(Value::as_str)
    }

    /// The `cognito:username` claim.
    pub fn username(&self) -> Option<&str> {
        self.raw.get("cognito:username").and_then(Value::as_str)
    }

    /// The token's scopes (its space-separated `scope` claim), if it has any.
    pub fn scopes(&self) -> Option<Vec<String>> {
        self.raw
            .get("scope")
            .and_then(Value::as_str)
            .map(|scope| scope.split_whitespace().map(str::to_owned).collect())
    }

    /// The claims as an API Gateway REST API Cognito authorizer presents them
    /// in `requestContext.authorizer.claims`: every value a string, `exp` and
    /// `iat` as Java dates (`"Sun Dec 17 07:28:12 UTC 2017"`), other numbers
    /// in decimal (`"auth_time": "1513492092"`), booleans `"true"`/`"false"`,
    /// arrays as `"[a b]"`; null claims are left out.
    pub fn rest_v1(&self) -> Map<String, Value> {
        self.stringified(true)
    }

    /// The claims as an HTTP API JWT authorizer presents them in
    /// `requestContext.authorizer.jwt.claims`: like [`Claims::rest_v1`] but
    /// with `exp` and `iat` in decimal seconds.
    pub fn http_v2(&self) -> Map<String, Value> {
        self.stringified(false)
    }

    fn stringified(&self, java_dates: bool) -> Map<String, Value> {
        self.raw
            .iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(name, value)| {
                let text = match value.as_i64() {
                    Some(seconds) if java_dates && (name == "exp" || name == "iat") => {
                        UtcTime::from_unix_seconds(seconds).java_date()
                    }
                    _ => claim_text(value),
                };
                (name.clone(), Value::String(text))
            })
            .collect()
    }
}

/// One claim value as API Gateway stringifies it.
fn claim_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(claim_text).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A user as the authenticator keeps it.
struct User {
    password_digest: [u8; 32],
    sub: String,
    email: Option<String>,
}

/// Issues and verifies tokens and checks API keys. Cheap to share (`Arc`).
pub struct Authenticator {
    users: HashMap<String, User>,
    api_key_digests: Vec<[u8; 32]>,
    issuer: String,
    audience: String,
    token_lifetime: Duration,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("users", &self.users.len())
            .field("api_keys", &self.api_key_digests.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("token_lifetime", &self.token_lifetime)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// The body of `POST /user/auth/v1`, Cognito `InitiateAuth` style; other
/// fields (`AuthFlow`, `ClientId`, ...) are ignored.
#[derive(Deserialize)]
struct LoginBody {
    #[serde(rename = "AuthParameters")]
    auth_parameters: Option<AuthParameters>,
}

#[derive(Deserialize)]
struct AuthParameters {
    #[serde(rename = "USERNAME")]
    username: Option<String>,
    #[serde(rename = "PASSWORD")]
    password: Option<String>,
}

/// ID token claims, as Cognito puts them in an ID token.
#[derive(Serialize)]
struct IdTokenClaims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    iss: &'a str,
    #[serde(rename = "cognito:username")]
    username: &'a str,
    aud: &'a str,
    token_use: &'static str,
    auth_time: u64,
    exp: u64,
    iat: u64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

/// Access token claims, as Cognito puts them in an access token.
#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    sub: &'a str,
    iss: &'a str,
    client_id: &'a str,
    token_use: &'static str,
    scope: &'static str,
    auth_time: u64,
    exp: u64,
    iat: u64,
    jti: String,
    username: &'a str,
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A stable `sub` per username: a UUID (version 8, "custom") made of the
/// first 16 bytes of SHA-256 over a fixed prefix and the name.
fn user_sub(username: &str) -> String {
    let hash = Sha256::digest(format!("esb-user-sub:{username}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// The token in an `Authorization` value: `Bearer <jwt>` (scheme
/// case-insensitive) or a bare JWT, as REST API Cognito authorizers accept both.
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let token = match value.split_once(char::is_whitespace) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        Some(_) => return None,
        None => value,
    };
    let is_jwt_shaped =
        !token.is_empty() && token.split('.').count() == 3 && !token.contains(char::is_whitespace);
    is_jwt_shaped.then_some(token)
}

impl Authenticator {
    /// Validates the config and builds an authenticator on the system clock.
    pub fn new(config: AuthConfig) -> Result<Authenticator, AuthConfigError> {
        Authenticator::with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`Authenticator::new`] with another clock (tests use a fixed one).
    pub fn with_clock(
        config: AuthConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Authenticator, AuthConfigError> {
        if config.api_keys.is_empty() {
            return Err(AuthConfigError::NoApiKeys);
        }
        if let Some(index) = config.api_keys.iter().position(String::is_empty) {
            return Err(AuthConfigError::EmptyApiKey { index });
        }
        if config.jwt_secret.len() < MIN_SECRET_LEN {
            return Err(AuthConfigError::ShortSecret {
                len: config.jwt_secret.len(),
            });
        }
        if config.issuer.trim().is_empty() {
            return Err(AuthConfigError::EmptyIssuer);
        }
        if config.audience.trim().is_empty() {
            return Err(AuthConfigError::EmptyAudience);
        }
        if config.token_lifetime.as_secs() == 0 || config.token_lifetime > MAX_TOKEN_LIFETIME {
            return Err(AuthConfigError::InvalidLifetime {
                seconds: config.token_lifetime.as_secs(),
            });
        }
        let mut users = HashMap::with_capacity(config.users.len());
        for (index, user) in config.users.into_iter().enumerate() {
            if user.username.is_empty() {
                return Err(AuthConfigError::EmptyUsername { index });
            }
            if user.password.is_empty() {
                return Err(AuthConfigError::EmptyPassword {
                    username: user.username,
                });
            }
            if users.contains_key(&user.username) {
                return Err(AuthConfigError::DuplicateUser {
                    username: user.username,
                });
            }
            let entry = User {
                password_digest: digest(&user.password),
                sub: user_sub(&user.username),
                email: user.email,
            };
            users.insert(user.username, entry);
        }

        let encoding = EncodingKey::from_secret(&config.jwt_secret)
            .map_err(|source| AuthConfigError::Key { source })?;
        let decoding = DecodingKey::from_secret(&config.jwt_secret)
            .map_err(|source| AuthConfigError::Key { source })?;
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is checked against the injected clock in `verify_bearer`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_audience(&[config.audience.as_str()]);

        Ok(Authenticator {
            users,
            api_key_digests: config.api_keys.iter().map(|key| digest(key)).collect(),
            issuer: config.issuer,
            audience: config.audience,
            token_lifetime: config.token_lifetime,
            encoding,
            decoding,
            validation,
            clock,
        })
    }

    /// Checks an `x-api-key` value against the configured keys.
    pub fn check_api_key(&self, api_key: Option<&str>) -> Result<(), AuthError> {
        let key = api_key
            .filter(|key| !key.is_empty())
            .ok_or(AuthError::MissingApiKey)?;
        let presented = digest(key);
        let matched = self
            .api_key_digests
            .iter()
            .fold(subtle::Choice::from(0), |found, known| {
                found | known.ct_eq(&presented)
            });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(AuthError::InvalidApiKey)
        }
    }

    /// Handles `POST /user/auth/v1`: checks the API key, then the user name
    /// and password of a `{"AuthParameters":{"USERNAME":..,"PASSWORD":..}}`
    /// body, and issues an ID token and an access token.
    pub fn login(&self, api_key: Option<&str>, body: &[u8]) -> Result<LoginResponse, AuthError> {
        self.check_api_key(api_key)?;
        let body: LoginBody =
            serde_json::from_slice(body).map_err(|err| AuthError::MalformedLoginBody {
                line: err.line(),
                column: err.column(),
            })?;
        let parameters = body.auth_parameters.ok_or(AuthError::MissingCredentials {
            parameter: "USERNAME",
        })?;
        let username = parameters.username.filter(|name| !name.is_empty()).ok_or(
            AuthError::MissingCredentials {
                parameter: "USERNAME",
            },
        )?;
        let password = parameters
            .password
            .filter(|password| !password.is_empty())
            .ok_or(AuthError::MissingCredentials {
                parameter: "PASSWORD",
            })?;

        let presented = digest(&password);
        let user = self.users.get(&username);
        // Compare against a dummy digest for unknown users so the time spent
        // does not tell which user names exist.
        let expected = user.map_or([0u8; 32], |user| user.password_digest);
        let password_ok = bool::from(expected.ct_eq(&presented));
        let user = match user {
            Some(user) if password_ok => user,
            _ => return Err(AuthError::BadCredentials),
        };

        let now = unix_seconds(self.clock.now());
        let exp = now + self.token_lifetime.as_secs();
        let header = Header::new(Algorithm::HS256);
        let id_claims = IdTokenClaims {
            sub: &user.sub,
            email_verified: user.email.as_ref().map(|_| true),
            iss: &self.issuer,
            username: &username,
            aud: &self.audience,
            token_use: "id",
            auth_time: now,
            exp,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            email: user.email.as_deref(),
        };
        let access_claims = AccessTokenClaims {
            sub: &user.sub,
            iss: &self.issuer,
            client_id: &self.audience,
            token_use: "access",
            scope: ACCESS_TOKEN_SCOPE,
            auth_time: now,
            exp,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            username: &username,
        };
        let id_token = jsonwebtoken::encode(&header, &id_claims, &self.encoding)
            .map_err(|source| AuthError::TokenSigning { source })?;
        let access_token = jsonwebtoken::encode(&header, &access_claims, &self.encoding)
            .map_err(|source| AuthError::TokenSigning { source })?;

        Ok(LoginResponse {
            authentication_result: AuthenticationResult {
                access_token,
                expires_in: self.token_lifetime.as_secs(),
                id_token,
                token_type: "Bearer".to_owned(),
            },
            challenge_parameters: BTreeMap::new(),
        })
    }

    /// Verifies the `Authorization` header of a route request: an ID token
    /// this gateway signed (HS256), for this issuer and audience, not expired
    /// (with [`EXP_LEEWAY`]).
    pub fn verify_bearer(&self, authorization_header: Option<&str>) -> Result<Claims, AuthError> {
        let value = authorization_header
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .ok_or(AuthError::MissingToken)?;
        let token = bearer_token(value).ok_or(AuthError::MalformedAuthorization)?;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &self.validation)
                .map_err(|source| AuthError::InvalidToken { source })?;
        let claims = data.claims;
        if claims.get("token_use").and_then(Value::as_str) != Some("id") {
            return Err(AuthError::WrongTokenUse);
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(AuthError::MissingClaim { claim: "exp" })?;
        let now = unix_seconds(self.clock.now());
        if exp.saturating_add(EXP_LEEWAY.as_secs()) < now {
            return Err(AuthError::ExpiredToken);
        }
        Ok(Claims::from_verified(claims))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use base64::Engine as _;

    use super::*;

    const API_KEY: &str = "test-api-key-0123456789";
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const ISSUER: &str = "https://esb.local/teststack";
    const AUDIENCE: &str = "esb-client";
    /// 2020-05-15T06:01:09Z
    const T0: u64 = 1_589_522_469;

    #[derive(Debug)]
    struct FixedClock(Mutex<SystemTime>);

    impl FixedClock {
        fn at(seconds: u64) -> Arc<FixedClock> {
            Arc::new(FixedClock(Mutex::new(
                UNIX_EPOCH + Duration::from_secs(seconds),
            )))
        }

        fn advance(&self, by: Duration) {
            let mut now = self.0.lock().expect("clock lock");
            *now += by;
        }
    }

    impl Clock for FixedClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().expect("clock lock")
        }
    }

    fn config() -> AuthConfig {
        AuthConfig {
            users: vec![
                UserConfig {
                    username: "alice".to_owned(),
                    password: "correct horse".to_owned(),
                    email: Some("alice@example.com".to_owned()),
                },
                UserConfig {
                    username: "bob".to_owned(),
                    password: "hunter2".to_owned(),
                    email: None,
                },
            ],
            api_keys: vec!["other-key".to_owned(), API_KEY.to_owned()],
            jwt_secret: SECRET.to_vec(),
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            token_lifetime: Duration::from_secs(3600),
        }
    }

    fn authenticator(clock: Arc<FixedClock>) -> Authenticator {
        Authenticator::with_clock(config(), clock).expect("valid config")
    }

    fn login_body(username: &str, password: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "AuthFlow": "USER_PASSWORD_AUTH",
            "ClientId": AUDIENCE,
            "AuthParameters": {"USERNAME": username, "PASSWORD": password},
        }))
        .expect("json")
    }

    fn id_token(auth: &Authenticator, username: &str, password: &str) -> String {
        auth.login(Some(API_KEY), &login_body(username, password))
            .expect("login succeeds")
            .authentication_result
            .id_token
    }

    /// The claims of a JWT, read without verification.
    fn payload(token: &str) -> Map<String, Value> {
        let part = token.split('.').nth(1).expect("three parts");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("json claims")
    }

    /// Signs arbitrary claims with `secret`.
    fn sign(claims: &Value, secret: &[u8]) -> String {
        let key = EncodingKey::from_secret(secret).expect("key");
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("sign")
    }

    fn valid_claims() -> Value {
        serde_json::json!({
            "sub": "s", "iss": ISSUER, "aud": AUDIENCE, "token_use": "id",
            "exp": T0 + 60, "iat": T0, "cognito:username": "alice",
        })
    }

    #[test]
    fn login_issues_cognito_shaped_tokens() {
        let auth = authenticator(FixedClock::at(T0));
        let response = auth
            .login(Some(API_KEY), &login_body("alice", "correct horse"))
            .expect("login succeeds");

        let json = serde_json::to_value(&response).expect("serializes");
        let result = &json["AuthenticationResult"];
        assert_eq!(result["ExpiresIn"], 3600);
        assert_eq!(result["TokenType"], "Bearer");
        assert!(result["IdToken"].is_string());
        assert!(result["AccessToken"].is_string());
        assert_eq!(json["ChallengeParameters"], serde_json::json!({}));
        let mut keys: Vec<&String> = result.as_object().expect("object").keys().collect();
        keys.sort();
        assert_eq!(keys, ["AccessToken", "ExpiresIn", "IdToken", "TokenType"]);

        let id = payload(&response.authentication_result.id_token);
        assert_eq!(id["token_use"], "id");
        assert_eq!(id["cognito:username"], "alice");
        assert_eq!(id["iss"], ISSUER);
        assert_eq!(id["aud"], AUDIENCE);
        assert_eq!(id["auth_time"], T0);
        assert_eq!(id["iat"], T0);
        assert_eq!(id["exp"], T0 + 3600);
        assert_eq!(id["email"], "alice@example.com");
        assert_eq!(id["email_verified"], true);
        let sub = id["sub"].as_str().expect("sub");
        assert!(uuid::Uuid::parse_str(sub).is_ok(), "sub {sub} is a uuid");

        let access = payload(&response.authentication_result.access_token);
        assert_eq!(access["token_use"], "access");
        assert_eq!(access["client_id"], AUDIENCE);
        assert_eq!(access["username"], "alice");
        assert_eq!(access["sub"], id["sub"]);
        assert!(access.get("aud").is_none());

        let header = response
            .authentication_result
            .id_token
            .split('.')
            .next()
            .map(|h| {
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .expect("base64url");
                serde_json::from_slice::<Value>(&bytes).expect("json header")
            });
        assert_eq!(header.expect("header")["alg"], "HS256");
    }

    #[test]
    fn sub_is_stable_per_user_and_distinct_between_users() {
        let auth = authenticator(FixedClock::at(T0));
        let first = payload(&id_token(&auth, "alice", "correct horse"));
        let again = payload(&id_token(&auth, "alice", "correct horse"));
        let other = payload(&id_token(&auth, "bob", "hunter2"));
        assert_eq!(first["sub"], again["sub"]);
        assert_ne!(first["sub"], other["sub"]);
        assert_ne!(first["jti"], again["jti"]);
        // A new authenticator (a restarted gateway) keeps the same sub.
        let restarted = authenticator(FixedClock::at(T0 + 10));
        assert_eq!(
            payload(&id_token(&restarted, "alice", "correct horse"))["sub"],
            first["sub"]
        );
        // Without an e-mail there is no e-mail claim.
        assert!(other.get("email").is_none());
        assert!(other.get("email_verified").is_none());
    }

    #[test]
    fn login_rejects_wrong_password_and_unknown_user_alike() {
        let auth = authenticator(FixedClock::at(T0));
        for (user, password) in [
            ("alice", "wrong"),
            ("alice", "correct horse "),
            ("mallory", "correct horse"),
            ("ALICE", "correct horse"),
        ] {
            let err = auth
                .login(Some(API_KEY), &login_body(user, password))
                .expect_err("must fail");
            assert!(matches!(err, AuthError::BadCredentials), "{user}: {err:?}");
            assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(err.client_message(), "Incorrect username or password.");
            assert!(!err.to_string().contains(password));
        }
    }

    #[test]
    fn login_requires_a_valid_api_key_before_reading_the_body() {
        let auth = authenticator(FixedClock::at(T0));
        let body = login_body("alice", "correct horse");
        for key in [None, Some("")] {
            let err = auth.login(key, &body).expect_err("no key");
            assert!(matches!(err, AuthError::MissingApiKey));
            assert_eq!(err.status(), StatusCode::FORBIDDEN);
            assert_eq!(err.client_message(), "Forbidden");
        }
        for key in [
            "wrong",
            "test-api-key-012345678",
            "test-api-key-0123456789x",
        ] {
            let err = auth.login(Some(key), &body).expect_err("bad key");
            assert!(matches!(err, AuthError::InvalidApiKey), "{key}");
            assert_eq!(err.status(), StatusCode::FORBIDDEN);
        }
        // The key is checked first: a bad key with a bad body is still 403.
        let err = auth.login(Some("wrong"), b"{").expect_err("bad key");
        assert!(matches!(err, AuthError::InvalidApiKey));
        // Every configured key works.
        assert!(auth.login(Some("other-key"), &body).is_ok());
    }

    #[test]
    fn check_api_key() {
        let auth = authenticator(FixedClock::at(T0));
        assert!(auth.check_api_key(Some(API_KEY)).is_ok());
        assert!(matches!(
            auth.check_api_key(None),
            Err(AuthError::MissingApiKey)
        ));
        assert!(matches!(
            auth.check_api_key(Some("nope")),
            Err(AuthError::InvalidApiKey)
        ));
    }

    #[test]
    fn login_rejects_malformed_bodies() {
        let auth = authenticator(FixedClock::at(T0));
        let cases: &[(&[u8], &str)] = &[
            (b"", "malformed"),
            (b"not json", "malformed"),
            (b"[1,2]", "malformed"),
            (br#"{"AuthParameters":"x"}"#, "malformed"),
            (
                br#"{"AuthParameters":{"USERNAME":1,"PASSWORD":"p"}}"#,
                "malformed",
            ),
            (br#"{}"#, "USERNAME"),
            (br#"{"AuthParameters":{}}"#, "USERNAME"),
            (
                br#"{"AuthParameters":{"USERNAME":"","PASSWORD":"p"}}"#,
                "USERNAME",
            ),
            (br#"{"AuthParameters":{"USERNAME":"alice"}}"#, "PASSWORD"),
            (
                br#"{"AuthParameters":{"USERNAME":"alice","PASSWORD":null}}"#,
                "PASSWORD",
            ),
        ];
        for (body, expected) in cases {
            let err = auth.login(Some(API_KEY), body).expect_err("must fail");
            let shown = String::from_utf8_lossy(body);
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{shown}: {err:?}");
            match (expected, &err) {
                (&"malformed", AuthError::MalformedLoginBody { .. }) => {
                    assert_eq!(err.client_message(), "Malformed request body");
                }
                (
                    &"USERNAME",
                    AuthError::MissingCredentials {
                        parameter: "USERNAME",
                    },
                ) => {
                    assert_eq!(err.client_message(), "Missing required parameter USERNAME");
                }
                (
                    &"PASSWORD",
                    AuthError::MissingCredentials {
                        parameter: "PASSWORD",
                    },
                ) => {
                    assert_eq!(err.client_message(), "Missing required parameter PASSWORD");
                }
                _ => panic!("{shown}: expected {expected}, got {err:?}"),
            }
        }
        // A wrongly typed password is never echoed into the error.
        let err = auth
            .login(
                Some(API_KEY),
                br#"{"AuthParameters":{"USERNAME":"alice","PASSWORD":424242}}"#,
            )
            .expect_err("must fail");
        assert!(!err.to_string().contains("424242"), "{err}");
        assert!(!format!("{err:?}").contains("424242"), "{err:?}");
    }

    #[test]
    fn token_round_trip() {
        let auth = authenticator(FixedClock::at(T0));
        let token = id_token(&auth, "alice", "correct horse");
        for header in [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            format!("BEARER  {token} "),
            token.clone(),
        ] {
            let claims = auth.verify_bearer(Some(&header)).expect("valid token");
            assert_eq!(claims.username(), Some("alice"));
            assert_eq!(claims.raw()["email"], "alice@example.com");
            assert!(claims.sub().is_some());
            assert_eq!(claims.scopes(), None);
        }
    }

    #[test]
    fn missing_and_malformed_authorization() {
        let auth = authenticator(FixedClock::at(T0));
        for header in [None, Some(""), Some("   ")] {
            let err = auth.verify_bearer(header).expect_err("missing");
            assert!(matches!(err, AuthError::MissingToken));
            assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(err.client_message(), "Unauthorized");
        }
        let token = id_token(&auth, "alice", "correct horse");
        for header in [
            format!("Basic {token}"),
            "Bearer".to_owned(),
            "Bearer a.b".to_owned(),
            format!("Bearer {token} extra"),
        ] {
            let err = auth.verify_bearer(Some(&header)).expect_err("malformed");
            assert!(
                matches!(err, AuthError::MalformedAuthorization),
                "{header}: {err:?}"
            );
            assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        }
        let err = auth
            .verify_bearer(Some("Bearer x.y.z"))
            .expect_err("garbage");
        assert!(matches!(err, AuthError::InvalidToken { .. }), "{err:?}");
    }

    #[test]
    fn tampered_token_is_rejected() {
        let auth = authenticator(FixedClock::at(T0));
        let token = id_token(&auth, "bob", "hunter2");
        let parts: Vec<&str> = token.split('.').collect();

        // Swap the payload for one claiming to be alice, keep the signature.
        let mut claims = payload(&token);
        claims.insert("cognito:username".to_owned(), Value::from("alice"));
        let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).expect("json"));
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        let err = auth
            .verify_bearer(Some(&format!("Bearer {forged}")))
            .expect_err("forged");
        assert!(matches!(err, AuthError::InvalidToken { .. }), "{err:?}");
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.client_message(), "Unauthorized");

        // A flipped signature character.
        let mut signature = parts[2].to_owned();
        let last = signature.pop().expect("non-empty");
        signature.push(if last == 'A' { 'B' } else { 'A' });
        let flipped = format!("{}.{}.{}", parts[0], parts[1], signature);
        assert!(matches!(
            auth.verify_bearer(Some(&flipped)),
            Err(AuthError::InvalidToken { .. })
        ));

        // Signed with another secret.
        let other = sign(&valid_claims(), b"another-secret-another-secret-xx");
        assert!(matches!(
            auth.verify_bearer(Some(&other)),
            Err(AuthError::InvalidToken { .. })
        ));

        // `alg: none` is never accepted.
        let none_header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert!(auth.verify_bearer(Some(&unsigned)).is_err());
    }

    #[test]
    fn expired_token_is_rejected_after_the_leeway() {
        let clock = FixedClock::at(T0);
        let auth = authenticator(clock.clone());
        let token = id_token(&auth, "alice", "correct horse");

        clock.advance(Duration::from_secs(3600));
        assert!(auth.verify_bearer(Some(&token)).is_ok(), "valid up to exp");
        clock.advance(EXP_LEEWAY);
        assert!(
            auth.verify_bearer(Some(&token)).is_ok(),
            "valid within the leeway"
        );
        clock.advance(Duration::from_secs(1));
        let err = auth.verify_bearer(Some(&token)).expect_err("expired");
        assert!(matches!(err, AuthError::ExpiredToken));
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.client_message(), "The incoming token has expired");
    }

    #[test]
    fn wrong_issuer_or_audience_is_rejected() {
        let auth = authenticator(FixedClock::at(T0));
        let mut claims = valid_claims();
        assert!(auth.verify_bearer(Some(&sign(&claims, SECRET))).is_ok());

        claims["iss"] = Value::from("https://esb.local/otherstack");
        let err = auth
            .verify_bearer(Some(&sign(&claims, SECRET)))
            .expect_err("issuer");
        assert!(matches!(err, AuthError::InvalidToken { .. }), "{err:?}");

        let mut claims = valid_claims();
        claims["aud"] = Value::from("another-client");
        assert!(matches!(
            auth.verify_bearer(Some(&sign(&claims, SECRET))),
            Err(AuthError::InvalidToken { .. })
        ));

        // A token from an authenticator with another issuer but the same secret.
        let mut other_config = config();
        other_config.issuer = "https://esb.local/otherstack".to_owned();
        let other = Authenticator::with_clock(other_config, FixedClock::at(T0)).expect("valid");
        let foreign = id_token(&other, "alice", "correct horse");
        assert!(matches!(
            auth.verify_bearer(Some(&foreign)),
            Err(AuthError::InvalidToken { .. })
        ));
    }

    #[test]
    fn access_tokens_and_tokens_without_required_claims_are_rejected() {
        let auth = authenticator(FixedClock::at(T0));
        let response = auth
            .login(Some(API_KEY), &login_body("alice", "correct horse"))
            .expect("login");
        // Cognito access tokens carry no `aud`: rejected like any foreign token.
        assert!(auth
            .verify_bearer(Some(&response.authentication_result.access_token))
            .is_err());

        let mut claims = valid_claims();
        claims["token_use"] = Value::from("access");
        let err = auth
            .verify_bearer(Some(&sign(&claims, SECRET)))
            .expect_err("access");
        assert!(matches!(err, AuthError::WrongTokenUse));
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);

        for claim in ["exp", "iss", "aud", "sub", "token_use"] {
            let mut claims = valid_claims();
            claims.as_object_mut().expect("object").remove(claim);
            assert!(
                auth.verify_bearer(Some(&sign(&claims, SECRET))).is_err(),
                "without {claim}"
            );
        }
        let mut claims = valid_claims();
        claims["exp"] = Value::from("tomorrow");
        assert!(auth.verify_bearer(Some(&sign(&claims, SECRET))).is_err());
    }

    #[test]
    fn claims_are_stringified_like_api_gateway() {
        let claims = Claims::from_verified(
            serde_json::json!({
                "sub": "940805d0-a810-42da-9515-a213e211bbd1",
                "email_verified": true,
                "auth_time": 1_513_492_092,
                "exp": 1_513_495_692,
                "iat": 1_513_492_092,
                "cognito:groups": ["admins", "operators"],
                "scope": "read write",
                "nothing": null,
            })
            .as_object()
            .expect("object")
            .clone(),
        );
        let rest = claims.rest_v1();
        // Values from a captured REST API event with a Cognito authorizer.
        assert_eq!(rest["exp"], "Sun Dec 17 07:28:12 UTC 2017");
        assert_eq!(rest["iat"], "Sun Dec 17 06:28:12 UTC 2017");
        assert_eq!(rest["auth_time"], "1513492092");
        assert_eq!(rest["email_verified"], "true");
        assert_eq!(rest["sub"], "940805d0-a810-42da-9515-a213e211bbd1");
        assert_eq!(rest["cognito:groups"], "[admins operators]");
        assert!(!rest.contains_key("nothing"));
        assert!(rest.values().all(Value::is_string));

        let http = claims.http_v2();
        assert_eq!(http["exp"], "1513495692");
        assert_eq!(http["iat"], "1513492092");
        assert_eq!(http["email_verified"], "true");
        assert_eq!(
            claims.scopes(),
            Some(vec!["read".to_owned(), "write".to_owned()])
        );
    }

    #[test]
    fn config_is_validated() {
        fn rejected(change: impl FnOnce(&mut AuthConfig)) -> AuthConfigError {
            let mut config = config();
            change(&mut config);
            Authenticator::new(config).expect_err("must be rejected")
        }
        assert!(matches!(
            rejected(|c| c.api_keys.clear()),
            AuthConfigError::NoApiKeys
        ));
        assert!(matches!(
            rejected(|c| c.api_keys.push(String::new())),
            AuthConfigError::EmptyApiKey { index: 2 }
        ));
        assert!(matches!(
            rejected(|c| c.jwt_secret.truncate(31)),
            AuthConfigError::ShortSecret { len: 31 }
        ));
        assert!(matches!(
            rejected(|c| c.issuer.clear()),
            AuthConfigError::EmptyIssuer
        ));
        assert!(matches!(
            rejected(|c| c.audience = " ".to_owned()),
            AuthConfigError::EmptyAudience
        ));
        assert!(matches!(
            rejected(|c| c.token_lifetime = Duration::ZERO),
            AuthConfigError::InvalidLifetime { seconds: 0 }
        ));
        assert!(matches!(
            rejected(|c| c.token_lifetime = MAX_TOKEN_LIFETIME + Duration::from_secs(1)),
            AuthConfigError::InvalidLifetime { .. }
        ));
        assert!(matches!(
            rejected(|c| c.users[1].username.clear()),
            AuthConfigError::EmptyUsername { index: 1 }
        ));
        assert!(matches!(
            rejected(|c| c.users[1].password.clear()),
            AuthConfigError::EmptyPassword { .. }
        ));
        let err = rejected(|c| {
            let copy = c.users[0].clone();
            c.users.push(copy);
        });
        assert!(
            matches!(err, AuthConfigError::DuplicateUser { ref username } if username == "alice")
        );
        // An authenticator without users is valid (only public routes).
        let mut no_users = config();
        no_users.users.clear();
        assert!(Authenticator::new(no_users).is_ok());
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let config = config();
        let shown = format!("{config:?}");
        for secret in ["correct horse", "hunter2", API_KEY, "0123456789abcdef"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        let auth = authenticator(FixedClock::at(T0));
        let shown = format!("{auth:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        let response = auth
            .login(Some(API_KEY), &login_body("alice", "correct horse"))
            .expect("login");
        let shown = format!("{response:?}");
        assert!(
            !shown.contains(&response.authentication_result.id_token),
            "{shown}"
        );
        assert!(
            !shown.contains(&response.authentication_result.access_token),
            "{shown}"
        );
    }
}
