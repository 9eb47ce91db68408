//! CORS as API Gateway applies it, from the template's `Cors` (REST APIs)
//! or `CorsConfiguration` (HTTP APIs), carried on each route of the catalog.
//!
//! REST APIs (SAM `AWS::Serverless::Api` `Cors`): SAM adds an `OPTIONS`
//! method with a `MOCK` integration to every path of the API that has no
//! `OPTIONS` method of its own (samtranslator `SwaggerEditor.add_cors` /
//! `_options_method_response_for_cors`). It answers every `OPTIONS` request
//! on the path, without calling a function and whatever the `Origin`, with
//! `200`, `Content-Type: application/json`, and the configured values as they
//! are: `Access-Control-Allow-Origin` always, `-Allow-Methods` (when not
//! configured: the path's methods plus `OPTIONS`, sorted; all seven for a
//! path with `ANY`: `_make_cors_allowed_methods_for_path`), `-Allow-Headers`
//! and `-Max-Age` when configured, `-Allow-Credentials: true` when enabled.
//! Actual responses of a Lambda proxy integration are the function's own:
//! API Gateway adds no CORS headers to them.
//!
//! HTTP APIs (`CorsConfiguration`, API Gateway developer guide "Configure
//! CORS for HTTP APIs"): API Gateway answers preflight requests (`OPTIONS`
//! with `Origin` and `Access-Control-Request-Method`) itself, even without an
//! `OPTIONS` route, with `204`; CORS headers are only sent when the request's
//! origin is allowed. To actual requests from an allowed origin it adds
//! `Access-Control-Allow-Origin`, `-Expose-Headers` and `-Allow-Credentials`,
//! and it ignores (here: removes) CORS headers the function returned.
//! `AllowCredentials` with the origin `*` is refused, as AWS's
//! `BadRequestException` "allow-credentials is not supported if
//! 'allow-origin' is *".

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;
use serde::{Deserialize, Serialize};

use crate::route::{PayloadFormat, Route, RouteMethod};

/// Which kind of API the CORS settings come from; they behave differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorsApi {
    /// A REST API (`AWS::Serverless::Api`, `Cors`).
    Rest,
    /// An HTTP API (`AWS::Serverless::HttpApi`, `CorsConfiguration`).
    Http,
}

/// A route's CORS settings as written in the catalog.
///
/// ```json
/// {"api": "http", "allow_origins": ["https://app.example.com"],
///  "allow_methods": ["GET", "POST"], "allow_headers": ["authorization"],
///  "expose_headers": ["x-request-id"], "max_age": 600, "allow_credentials": true}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// `rest` or `http`; when absent, `http` for `http_v2` routes and
    /// `rest` for `rest_v1` routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<CorsApi>,
    /// Allowed origins (`*` for any). A REST API sends them as configured.
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// HTTP APIs only.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub max_age: Option<u32>,
    #[serde(default)]
    pub allow_credentials: bool,
}

/// Why a route's CORS settings were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CorsError {
    #[error("cors needs at least one allowed origin")]
    NoOrigin,
    #[error("cors origin {origin:?} is not '*' or scheme://host[:port]")]
    InvalidOrigin { origin: String },
    #[error("cors method {method:?} is not an HTTP method or '*'")]
    InvalidMethod { method: String },
    #[error("cors header {header:?} is not a header name or '*'")]
    InvalidHeader { header: String },
    #[error("cors max_age {max_age} exceeds 86400 seconds")]
    MaxAge { max_age: u32 },
    #[error("cors allow_credentials is not supported if the allowed origin is '*'")]
    CredentialsWithWildcard,
}

/// Validated CORS settings of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    api: CorsApi,
    allow_origins: Vec<String>,
    allow_methods: Vec<String>,
    allow_headers: Vec<String>,
    expose_headers: Vec<String>,
    max_age: Option<u32>,
    allow_credentials: bool,
}

/// What the gateway answers to a preflight request itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Preflight {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: &'static str,
}

const ALLOW_ORIGIN: &str = "access-control-allow-origin";
const ALLOW_METHODS: &str = "access-control-allow-methods";
const ALLOW_HEADERS: &str = "access-control-allow-headers";
const EXPOSE_HEADERS: &str = "access-control-expose-headers";
const MAX_AGE: &str = "access-control-max-age";
const ALLOW_CREDENTIALS: &str = "access-control-allow-credentials";

/// What SAM allows on a path with an `ANY` method.
const ALL_METHODS: [&str; 7] = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"];

impl Cors {
    /// Validates a route's CORS settings.
    pub fn from_config(config: &CorsConfig, payload: PayloadFormat) -> Result<Cors, CorsError> {
        let api = config.api.unwrap_or(match payload {
            PayloadFormat::RestV1 => CorsApi::Rest,
            PayloadFormat::HttpV2 => CorsApi::Http,
        });
        if config.allow_origins.is_empty() {
            return Err(CorsError::NoOrigin);
        }
        for origin in &config.allow_origins {
            if !valid_origin(origin) {
                return Err(CorsError::InvalidOrigin {
                    origin: origin.clone(),
                });
            }
        }
        for method in &config.allow_methods {
            let valid = method == "*"
                || (!method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic()));
            if !valid {
                return Err(CorsError::InvalidMethod {
                    method: method.clone(),
                });
            }
        }
        for header in config.allow_headers.iter().chain(&config.expose_headers) {
            if header != "*" && HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(CorsError::InvalidHeader {
                    header: header.clone(),
                });
            }
        }
        if api == CorsApi::Http {
            if let Some(max_age) = config.max_age.filter(|age| *age > 86_400) {
                return Err(CorsError::MaxAge { max_age });
            }
            if config.allow_credentials && config.allow_origins.iter().any(|o| o == "*") {
                return Err(CorsError::CredentialsWithWildcard);
            }
        }
        Ok(Cors {
            api,
            allow_origins: config.allow_origins.clone(),
            allow_methods: config
                .allow_methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            allow_headers: config.allow_headers.clone(),
            expose_headers: config.expose_headers.clone(),
            max_age: config.max_age,
            allow_credentials: config.allow_credentials,
        })
    }

    /// The kind of API the settings come from.
    pub fn api(&self) -> CorsApi {
        self.api
    }

    /// The allowed `Origin` of a request, if any: for HTTP APIs `*` or an
    /// entry equal to the origin (ASCII case-insensitive), or a wildcard
    /// entry `scheme://*` / `scheme://*.domain`.
    fn allows_origin(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|allowed| {
            if allowed == "*" || allowed.eq_ignore_ascii_case(origin) {
                return true;
            }
            match allowed.split_once("://*") {
                Some((scheme, suffix)) => {
                    let Some((own_scheme, host)) = origin.split_once("://") else {
                        return false;
                    };
                    own_scheme.eq_ignore_ascii_case(scheme)
                        && host
                            .to_ascii_lowercase()
                            .ends_with(&suffix.to_ascii_lowercase())
                        && host.len() > suffix.len()
                }
                None => false,
            }
        })
    }

    /// `Access-Control-Allow-Origin` for an allowed HTTP API request.
    fn http_allow_origin(&self, origin: &str) -> String {
        if self.allow_origins.iter().any(|o| o == "*") {
            "*".to_owned()
        } else {
            origin.to_owned()
        }
    }

    /// Adds the headers API Gateway puts on an HTTP API's actual response,
    /// after removing the function's own CORS headers (AWS ignores them).
    /// REST APIs leave the function's response alone.
    pub fn apply_to_response(&self, request: &HeaderMap, response: &mut HeaderMap) {
        if self.api != CorsApi::Http {
            return;
        }
        for name in [
            ALLOW_ORIGIN,
            ALLOW_METHODS,
            ALLOW_HEADERS,
            EXPOSE_HEADERS,
            MAX_AGE,
            ALLOW_CREDENTIALS,
        ] {
            response.remove(name);
        }
        let Some(origin) = header(request, "origin") else {
            return;
        };
        if !self.allows_origin(origin) {
            return;
        }
        insert(response, ALLOW_ORIGIN, &self.http_allow_origin(origin));
        if !self.expose_headers.is_empty() {
            insert(response, EXPOSE_HEADERS, &self.expose_headers.join(","));
        }
        if self.allow_credentials {
            insert(response, ALLOW_CREDENTIALS, "true");
        }
    }
}

/// The gateway's own answer to an `OPTIONS` request on a path, or `None`
/// when the request goes to a route as usual. `routes` are the routes of
/// the most specific path matching the request (see
/// [`crate::route::RouteTable::path_routes`]).
pub fn preflight(routes: &[&Route], request: &HeaderMap) -> Option<Preflight> {
    let cors = routes.iter().find_map(|route| route.cors())?;
    match cors.api {
        CorsApi::Rest => {
            // SAM does not replace an OPTIONS method the path has.
            let own_options = routes
                .iter()
                .any(|r| matches!(r.method(), RouteMethod::Only(m) if m == Method::OPTIONS));
            if own_options {
                return None;
            }
            let mut headers = HeaderMap::new();
            insert(&mut headers, "content-type", "application/json");
            insert(&mut headers, ALLOW_ORIGIN, &cors.allow_origins.join(","));
            let methods = if cors.allow_methods.is_empty() {
                path_methods(routes)
            } else {
                cors.allow_methods.join(",")
            };
            insert(&mut headers, ALLOW_METHODS, &methods);
            if !cors.allow_headers.is_empty() {
                insert(&mut headers, ALLOW_HEADERS, &cors.allow_headers.join(","));
            }
            if let Some(max_age) = cors.max_age {
                insert(&mut headers, MAX_AGE, &max_age.to_string());
            }
            if cors.allow_credentials {
                insert(&mut headers, ALLOW_CREDENTIALS, "true");
            }
            Some(Preflight {
                status: 200,
                headers,
                body: "{}",
            })
        }
        CorsApi::Http => {
            let origin = header(request, "origin")?;
            header(request, "access-control-request-method")?;
            let mut headers = HeaderMap::new();
            if cors.allows_origin(origin) {
                insert(&mut headers, ALLOW_ORIGIN, &cors.http_allow_origin(origin));
                if !cors.allow_methods.is_empty() {
                    insert(&mut headers, ALLOW_METHODS, &cors.allow_methods.join(","));
                }
                if !cors.allow_headers.is_empty() {
                    insert(&mut headers, ALLOW_HEADERS, &cors.allow_headers.join(","));
                }
                if let Some(max_age) = cors.max_age {
                    insert(&mut headers, MAX_AGE, &max_age.to_string());
                }
                if cors.allow_credentials {
                    insert(&mut headers, ALLOW_CREDENTIALS, "true");
                }
            }
            Some(Preflight {
                status: 204,
                headers,
                body: "",
            })
        }
    }
}

/// SAM's default `Access-Control-Allow-Methods` of a path: its methods and
/// `OPTIONS`, upper-case, sorted; every method when the path has `ANY`.
fn path_methods(routes: &[&Route]) -> String {
    if routes
        .iter()
        .any(|route| matches!(route.method(), RouteMethod::Any))
    {
        return ALL_METHODS.join(",");
    }
    let mut methods: Vec<String> = routes
        .iter()
        .map(|route| route.method().to_string())
        .chain(std::iter::once("OPTIONS".to_owned()))
        .collect();
    methods.sort();
    methods.dedup();
    methods.join(",")
}

fn valid_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        && !rest.is_empty()
        && !rest.contains('/')
        && rest
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'"')
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Inserts a header whose value was validated (or built from validated
/// parts); a value that is still not a valid header value is skipped.
fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{RouteAuth, RouteConfig, RouteTable};

    fn config(api: CorsApi, origins: &[&str]) -> CorsConfig {
        CorsConfig {
            api: Some(api),
            allow_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..CorsConfig::default()
        }
    }

    fn table(routes: &[(&str, &str, Option<CorsConfig>)], payload: PayloadFormat) -> RouteTable {
        RouteTable::new(
            routes
                .iter()
                .map(|(method, path, cors)| RouteConfig {
                    method: (*method).to_owned(),
                    path: (*path).to_owned(),
                    function: "F".to_owned(),
                    payload,
                    auth: RouteAuth::Jwt,
                    api_key_required: false,
                    cors: cors.clone(),
                })
                .collect(),
        )
        .expect("valid routes")
    }

    fn request(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).expect("value"));
        }
        headers
    }

    fn get<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
        header(headers, name)
    }

    #[test]
    fn rest_preflight_is_sams_mock_options_method() {
        let cors = CorsConfig {
            allow_headers: vec!["Content-Type".into(), "X-Api-Key".into()],
            max_age: Some(600),
            allow_credentials: true,
            ..config(CorsApi::Rest, &["https://app.example.com"])
        };
        let t = table(
            &[
                ("GET", "/items/{id}", Some(cors.clone())),
                ("delete", "/items/{id}", Some(cors.clone())),
                ("ANY", "/any", Some(cors)),
            ],
            PayloadFormat::RestV1,
        );
        // No Origin needed: the MOCK integration answers every OPTIONS.
        let answer = preflight(&t.path_routes("/items/7"), &HeaderMap::new()).expect("answered");
        assert_eq!(answer.status, 200);
        assert_eq!(
            get(&answer.headers, "content-type"),
            Some("application/json")
        );
        assert_eq!(
            get(&answer.headers, ALLOW_ORIGIN),
            Some("https://app.example.com")
        );
        assert_eq!(
            get(&answer.headers, ALLOW_METHODS),
            Some("DELETE,GET,OPTIONS")
        );
        assert_eq!(
            get(&answer.headers, ALLOW_HEADERS),
            Some("Content-Type,X-Api-Key")
        );
        assert_eq!(get(&answer.headers, MAX_AGE), Some("600"));
        assert_eq!(get(&answer.headers, ALLOW_CREDENTIALS), Some("true"));

        let answer = preflight(&t.path_routes("/any"), &HeaderMap::new()).expect("answered");
        assert_eq!(
            get(&answer.headers, ALLOW_METHODS),
            Some("DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT")
        );
        assert!(t.path_routes("/nothing").is_empty());
    }

    #[test]
    fn rest_preflight_keeps_an_options_route_and_configured_methods() {
        let cors = CorsConfig {
            allow_methods: vec!["get".into(), "POST".into()],
            ..config(CorsApi::Rest, &["*"])
        };
        let t = table(
            &[
                ("GET", "/a", Some(cors.clone())),
                ("OPTIONS", "/a", Some(cors.clone())),
                ("GET", "/b", Some(cors)),
                ("GET", "/plain", None),
            ],
            PayloadFormat::RestV1,
        );
        assert_eq!(preflight(&t.path_routes("/a"), &HeaderMap::new()), None);
        let answer = preflight(&t.path_routes("/b"), &HeaderMap::new()).expect("answered");
        assert_eq!(get(&answer.headers, ALLOW_METHODS), Some("GET,POST"));
        assert_eq!(get(&answer.headers, ALLOW_ORIGIN), Some("*"));
        assert!(get(&answer.headers, ALLOW_HEADERS).is_none());
        assert!(get(&answer.headers, MAX_AGE).is_none());
        assert!(get(&answer.headers, ALLOW_CREDENTIALS).is_none());
        assert_eq!(preflight(&t.path_routes("/plain"), &HeaderMap::new()), None);
    }

    #[test]
    fn http_preflight_checks_the_origin() {
        let cors = CorsConfig {
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["authorization".into()],
            expose_headers: vec!["x-id".into()],
            max_age: Some(300),
            allow_credentials: true,
            ..config(
                CorsApi::Http,
                &["https://app.example.com", "https://*.example.org"],
            )
        };
        let t = table(&[("ANY", "/items/{id}", Some(cors))], PayloadFormat::HttpV2);
        let routes = t.path_routes("/items/1");
        let preflight_from = |origin: &str| {
            preflight(
                &routes,
                &request(&[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                ]),
            )
            .expect("answered")
        };

        let answer = preflight_from("https://app.example.com");
        assert_eq!(answer.status, 204);
        assert_eq!(answer.body, "");
        assert_eq!(
            get(&answer.headers, ALLOW_ORIGIN),
            Some("https://app.example.com")
        );
        assert_eq!(get(&answer.headers, ALLOW_METHODS), Some("GET,POST"));
        assert_eq!(get(&answer.headers, ALLOW_HEADERS), Some("authorization"));
        assert_eq!(get(&answer.headers, MAX_AGE), Some("300"));
        assert_eq!(get(&answer.headers, ALLOW_CREDENTIALS), Some("true"));
        assert!(get(&answer.headers, EXPOSE_HEADERS).is_none());

        let answer = preflight_from("https://shop.example.org");
        assert_eq!(
            get(&answer.headers, ALLOW_ORIGIN),
            Some("https://shop.example.org")
        );

        // A foreign origin gets the 204 without any CORS header.
        let answer = preflight_from("https://evil.example.net");
        assert_eq!(answer.status, 204);
        assert!(answer.headers.is_empty(), "{:?}", answer.headers);

        // Not a preflight: the request goes to the route.
        assert_eq!(
            preflight(&routes, &request(&[("origin", "https://app.example.com")])),
            None
        );
    }

    #[test]
    fn http_actual_responses_get_the_configured_headers_only() {
        let star = Cors::from_config(
            &CorsConfig {
                expose_headers: vec!["x-id".into(), "date".into()],
                ..config(CorsApi::Http, &["*"])
            },
            PayloadFormat::HttpV2,
        )
        .expect("valid");
        let mut response = request(&[
            (ALLOW_ORIGIN, "https://function.example"),
            (ALLOW_METHODS, "PUT"),
            ("x-other", "kept"),
        ]);
        star.apply_to_response(
            &request(&[("origin", "https://any.example")]),
            &mut response,
        );
        assert_eq!(get(&response, ALLOW_ORIGIN), Some("*"));
        assert_eq!(get(&response, EXPOSE_HEADERS), Some("x-id,date"));
        assert!(get(&response, ALLOW_METHODS).is_none());
        assert_eq!(get(&response, "x-other"), Some("kept"));

        // Without an Origin (not a CORS request) no CORS header at all.
        let mut response = request(&[(ALLOW_ORIGIN, "https://function.example")]);
        star.apply_to_response(&HeaderMap::new(), &mut response);
        assert!(response.is_empty());

        let strict = Cors::from_config(
            &CorsConfig {
                allow_credentials: true,
                ..config(CorsApi::Http, &["https://app.example.com"])
            },
            PayloadFormat::HttpV2,
        )
        .expect("valid");
        let mut response = HeaderMap::new();
        strict.apply_to_response(
            &request(&[("origin", "https://APP.example.com")]),
            &mut response,
        );
        assert_eq!(
            get(&response, ALLOW_ORIGIN),
            Some("https://APP.example.com")
        );
        assert_eq!(get(&response, ALLOW_CREDENTIALS), Some("true"));
        let mut response = HeaderMap::new();
        strict.apply_to_response(&request(&[("origin", "https://other.com")]), &mut response);
        assert!(response.is_empty());
    }

    #[test]
    fn rest_actual_responses_are_left_alone() {
        let cors = Cors::from_config(&config(CorsApi::Rest, &["*"]), PayloadFormat::RestV1)
            .expect("valid");
        let mut response = request(&[(ALLOW_ORIGIN, "https://function.example")]);
        cors.apply_to_response(&request(&[("origin", "https://x.example")]), &mut response);
        assert_eq!(
            get(&response, ALLOW_ORIGIN),
            Some("https://function.example")
        );
    }

    #[test]
    fn the_api_kind_defaults_from_the_payload() {
        let mut c = config(CorsApi::Rest, &["*"]);
        c.api = None;
        assert_eq!(
            Cors::from_config(&c, PayloadFormat::HttpV2)
                .expect("valid")
                .api(),
            CorsApi::Http
        );
        assert_eq!(
            Cors::from_config(&c, PayloadFormat::RestV1)
                .expect("valid")
                .api(),
            CorsApi::Rest
        );
    }

    #[test]
    fn invalid_settings_are_refused() {
        let check = |c: CorsConfig, expected: CorsError| {
            assert_eq!(Cors::from_config(&c, PayloadFormat::HttpV2), Err(expected));
        };
        check(config(CorsApi::Http, &[]), CorsError::NoOrigin);
        check(
            config(CorsApi::Http, &["example.com"]),
            CorsError::InvalidOrigin {
                origin: "example.com".into(),
            },
        );
        check(
            config(CorsApi::Http, &["https://a.com/path"]),
            CorsError::InvalidOrigin {
                origin: "https://a.com/path".into(),
            },
        );
        check(
            CorsConfig {
                allow_methods: vec!["GE T".into()],
                ..config(CorsApi::Http, &["*"])
            },
            CorsError::InvalidMethod {
                method: "GE T".into(),
            },
        );
        check(
            CorsConfig {
                allow_headers: vec!["bad header".into()],
                ..config(CorsApi::Http, &["*"])
            },
            CorsError::InvalidHeader {
                header: "bad header".into(),
            },
        );
        check(
            CorsConfig {
                max_age: Some(86_401),
                ..config(CorsApi::Http, &["*"])
            },
            CorsError::MaxAge { max_age: 86_401 },
        );
        check(
            CorsConfig {
                allow_credentials: true,
                ..config(CorsApi::Http, &["*"])
            },
            CorsError::CredentialsWithWildcard,
        );
        // A REST API sends what the template says, credentials and all.
        assert!(Cors::from_config(
            &CorsConfig {
                allow_credentials: true,
                ..config(CorsApi::Rest, &["*"])
            },
            PayloadFormat::RestV1
        )
        .is_ok());
    }
}
