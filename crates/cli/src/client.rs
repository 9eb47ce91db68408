//! The box's gateway as a client sees it: HTTPS with the box's CA, a login
//! with the box's credentials, the admin API and the Lambda Invoke API.

use std::time::Duration;

use serde_json::Value;

use crate::error::{CliError, Result};
use crate::secrets::Credentials;

pub struct GatewayClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// What an invocation returned.
pub struct Invocation {
    pub status: u16,
    pub payload: Vec<u8>,
    pub function_error: Option<String>,
    pub log_tail: Option<String>,
}

impl GatewayClient {
    /// Log in to the gateway at `base` (https://127.0.0.1:PORT).
    pub async fn login(
        base: &str,
        ca_pem: &[u8],
        credentials: &Credentials,
    ) -> Result<GatewayClient> {
        let ca = reqwest::Certificate::from_pem(ca_pem)
            .map_err(|e| CliError::Failed(format!("the box's CA certificate is not valid: {e}")))?;
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| CliError::Failed(format!("cannot make an HTTPS client: {e}")))?;
        let response = http
            .post(format!("{base}/user/auth/v1"))
            .header("x-api-key", &credentials.api_key)
            .json(&serde_json::json!({
                "AuthParameters": {"USERNAME": credentials.user, "PASSWORD": credentials.password}
            }))
            .send()
            .await
            .map_err(|e| CliError::Failed(format!("cannot reach the gateway at {base}: {e}")))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let token = body
            .pointer("/AuthenticationResult/IdToken")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                CliError::Failed(format!(
                    "the gateway refused the box's credentials ({status}): {body}"
                ))
            })?
            .to_owned();
        Ok(GatewayClient {
            http,
            base: base.to_owned(),
            token,
        })
    }

    /// `GET /admin/v1/{what}`.
    pub async fn admin(&self, what: &str) -> Result<Value> {
        let url = format!("{}/admin/v1/{what}", self.base);
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| CliError::Failed(format!("GET {url}: {e}")))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| CliError::Failed(format!("GET {url}: {e}")))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(CliError::Failed(format!("GET {url}: {status} {body}")))
        }
    }

    /// Lambda's Invoke API, synchronously, with the log tail.
    pub async fn invoke(&self, function: &str, payload: Vec<u8>) -> Result<Invocation> {
        let url = format!("{}/2015-03-31/functions/{function}/invocations", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .header("x-amz-log-type", "Tail")
            .body(payload)
            .send()
            .await
            .map_err(|e| CliError::Failed(format!("POST {url}: {e}")))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let function_error = header("x-amz-function-error");
        let log_tail = header("x-amz-log-result").and_then(|b64| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        });
        let status = response.status().as_u16();
        let payload = response
            .bytes()
            .await
            .map_err(|e| CliError::Failed(format!("POST {url}: {e}")))?
            .to_vec();
        Ok(Invocation {
            status,
            payload,
            function_error,
            log_tail,
        })
    }
}
