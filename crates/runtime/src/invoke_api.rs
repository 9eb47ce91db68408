//! The invoke endpoint on :8080, the contract of AWS's Runtime Interface
//! Emulator and of Lambda's Invoke API for synchronous calls, plus
//! `GET /health`. Errors are mapped to the wire here.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::json;
use tracing::Instrument as _;

use crate::config::MAX_REQUEST_BYTES;
use esb_contracts::trace::{is_valid_trace_header, new_trace_id};

use crate::invocation::{valid_request_id, InvocationContext, Outcome};
use crate::sandbox::{Health, Sandbox, SandboxError};
use crate::{read_limited, BodyError};

/// Lets the gateway pass a qualified ARN (alias or version) through.
pub const INVOKED_ARN_HEADER: &str = "x-esb-invoked-function-arn";
/// JSON of the caller's Cognito identity, passed to the runtime as is.
pub const COGNITO_IDENTITY_HEADER: &str = "x-amz-cognito-identity";

pub fn router(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .route("/health", get(health))
        .with_state(sandbox)
}

/// Why an invoke request was refused before reaching the function.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("{size} byte payload is too large for the RequestResponse invocation type (limit {MAX_REQUEST_BYTES} bytes)")]
    PayloadTooLarge { size: String },
    #[error("Could not parse request body into json: {0}")]
    InvalidJson(String),
    #[error("invalid {header} header: {reason}")]
    InvalidHeader {
        header: &'static str,
        reason: &'static str,
    },
    #[error("unsupported invocation type {0:?}: a worker runs RequestResponse invocations; the gateway queues Event invocations")]
    InvocationType(String),
    #[error("the request body could not be read")]
    BodyRead,
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

async fn invoke(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, InvokeError> {
    match header(&headers, "x-amz-invocation-type").unwrap_or("RequestResponse") {
        "RequestResponse" => {}
        "DryRun" => return Ok(StatusCode::NO_CONTENT.into_response()),
        other => return Err(InvokeError::InvocationType(other.to_owned())),
    }
    let payload = match read_limited(body, MAX_REQUEST_BYTES).await {
        Ok(p) => p,
        Err(BodyError::TooLarge) => {
            return Err(InvokeError::PayloadTooLarge {
                size: header(&headers, "content-length")
                    .unwrap_or("The")
                    .to_owned(),
            })
        }
        Err(BodyError::Read(_)) => return Err(InvokeError::BodyRead),
    };
    let payload = if payload.iter().all(u8::is_ascii_whitespace) {
        Bytes::from_static(b"{}")
    } else {
        serde_json::from_slice::<serde::de::IgnoredAny>(&payload)
            .map_err(|e| InvokeError::InvalidJson(e.to_string()))?;
        payload
    };
    let context = context_from(&headers, &sandbox)?;
    let tail = header(&headers, "x-amz-log-type") == Some("Tail");
    let request_id = context.request_id.clone();
    let trace_id = context.trace_id.clone();

    let span = tracing::info_span!(
        "invocation",
        request_id = %request_id,
        function = %sandbox.spec().name,
        trace_id = %trace_id
    );
    let completed = sandbox.invoke(context, payload).instrument(span).await?;

    let (body, function_error) = match completed.outcome {
        Outcome::Success(body) => (body, false),
        Outcome::FunctionError(body) => (body, true),
    };
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("x-amz-executed-version", value(&sandbox.spec().version));
    h.insert("x-amzn-requestid", value(&request_id));
    h.insert("x-amzn-trace-id", value(&trace_id));
    if function_error {
        h.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if tail {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&completed.tail);
        h.insert("x-amz-log-result", value(&encoded));
    }
    Ok(response)
}

fn context_from(headers: &HeaderMap, sandbox: &Sandbox) -> Result<InvocationContext, InvokeError> {
    let request_id = match header(headers, "x-amzn-requestid") {
        Some(id) if valid_request_id(id) => id.to_owned(),
        Some(_) => {
            return Err(InvokeError::InvalidHeader {
                header: "X-Amzn-RequestId",
                reason: "expected up to 64 letters, digits, '-' or '_'",
            })
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let trace_id = match header(headers, "x-amzn-trace-id") {
        Some(t) if is_valid_trace_header(t) => t.to_owned(),
        Some(_) => {
            return Err(InvokeError::InvalidHeader {
                header: "X-Amzn-Trace-Id",
                reason: "expected an X-Ray trace header (Root=...)",
            })
        }
        None => new_trace_id(),
    };
    let client_context = match header(headers, "x-amz-client-context") {
        Some(encoded) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .filter(|d| {
                    serde_json::from_slice::<serde_json::Value>(d).is_ok_and(|v| v.is_object())
                })
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or(InvokeError::InvalidHeader {
                    header: "X-Amz-Client-Context",
                    reason: "expected a base64-encoded JSON object",
                })?;
            Some(decoded)
        }
        None => None,
    };
    let cognito_identity = match header(headers, COGNITO_IDENTITY_HEADER) {
        Some(json)
            if serde_json::from_str::<serde_json::Value>(json).is_ok_and(|v| v.is_object()) =>
        {
            Some(json.to_owned())
        }
        Some(_) => {
            return Err(InvokeError::InvalidHeader {
                header: "X-Amz-Cognito-Identity",
                reason: "expected a JSON object",
            })
        }
        None => None,
    };
    let invoked_function_arn = match header(headers, INVOKED_ARN_HEADER) {
        Some(arn) if arn.starts_with("arn:") && arn.len() <= 256 => arn.to_owned(),
        Some(_) => {
            return Err(InvokeError::InvalidHeader {
                header: "X-Esb-Invoked-Function-Arn",
                reason: "expected a Lambda function ARN",
            })
        }
        None => sandbox.spec().arn(),
    };
    Ok(InvocationContext {
        request_id,
        trace_id,
        invoked_function_arn,
        client_context,
        cognito_identity,
    })
}

async fn health(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let (status, state) = match sandbox.health() {
        Health::Ready => (StatusCode::OK, "ready"),
        Health::Busy => (StatusCode::OK, "busy"),
        Health::InitError => (StatusCode::OK, "init_error"),
        Health::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Health::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping"),
    };
    (
        status,
        Json(json!({"status": state, "function": sandbox.spec().name})),
    )
        .into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn value(s: &str) -> HeaderValue {
    // Every value here is ASCII we validated or generated; an impossible
    // failure degrades to an empty header rather than a panic.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl IntoResponse for InvokeError {
    fn into_response(self) -> Response {
        let (status, error_type) = match &self {
            InvokeError::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
            ),
            InvokeError::InvalidJson(_) => {
                (StatusCode::BAD_REQUEST, "InvalidRequestContentException")
            }
            InvokeError::InvalidHeader { .. } | InvokeError::InvocationType(_) => {
                (StatusCode::BAD_REQUEST, "InvalidParameterValueException")
            }
            InvokeError::BodyRead => (StatusCode::BAD_REQUEST, "InvalidRequestContentException"),
            InvokeError::Sandbox(SandboxError::Busy) => {
                (StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException")
            }
            InvokeError::Sandbox(SandboxError::ShuttingDown) => {
                (StatusCode::SERVICE_UNAVAILABLE, "ServiceException")
            }
        };
        let fault = if status.is_server_error() {
            "Service"
        } else {
            "User"
        };
        tracing::info!(error = %self, error_type, "invoke refused");
        let mut response = (
            status,
            Json(json!({"Type": fault, "message": self.to_string()})),
        )
            .into_response();
        response
            .headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(error_type));
        response
    }
}
