//! The AWS Lambda Runtime API (version 2018-06-01), served to the language
//! runtime on 127.0.0.1:9001. Errors are mapped to the wire here, in the
//! shapes AWS's own implementation returns.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::config::MAX_RESPONSE_BYTES;
use crate::invocation::{runtime_error_payload, ErrorPayload, Outcome};
use crate::sandbox::{RuntimeApiError, Sandbox};
use crate::{read_limited, BodyError};

const ERROR_TYPE_HEADER: &str = "lambda-runtime-function-error-type";
/// Error bodies posted by a runtime are capped like responses.
const MAX_ERROR_BYTES: usize = MAX_RESPONSE_BYTES;

pub fn router(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(sandbox)
}

async fn next(State(sandbox): State<Arc<Sandbox>>) -> Result<Response, RuntimeApiError> {
    let event = sandbox.next().await?;
    let ctx = &event.context;
    let mut response = Response::new(Body::from(event.payload));
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        // Values come from validated ids and JSON we produced; one that is
        // not a valid header value is left out rather than failing the call.
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("content-type", "application/json");
    set("lambda-runtime-aws-request-id", &ctx.request_id);
    set("lambda-runtime-deadline-ms", &event.deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        &ctx.invoked_function_arn,
    );
    set("lambda-runtime-trace-id", &ctx.trace_id);
    if let Some(cc) = &ctx.client_context {
        set("lambda-runtime-client-context", cc);
    }
    if let Some(ci) = &ctx.cognito_identity {
        set("lambda-runtime-cognito-identity", ci);
    }
    Ok(response)
}

async fn response(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, RuntimeApiError> {
    match read_limited(body, MAX_RESPONSE_BYTES).await {
        Ok(bytes) => {
            sandbox.complete(&id, Outcome::Success(bytes))?;
            Ok(accepted())
        }
        Err(BodyError::TooLarge) => {
            sandbox.complete(
                &id,
                ErrorPayload::response_too_large(MAX_RESPONSE_BYTES).into_outcome(),
            )?;
            Err(RuntimeApiError::ResponseTooLarge)
        }
        Err(BodyError::Read(e)) => {
            tracing::warn!(request_id = %id, error = %e, "runtime response body unreadable");
            sandbox.complete(
                &id,
                ErrorPayload::new(
                    "Runtime.InvalidResponse",
                    "the runtime's response could not be read",
                )
                .into_outcome(),
            )?;
            Ok(accepted())
        }
    }
}

async fn error(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RuntimeApiError> {
    let payload = error_payload(&headers, body).await;
    sandbox.complete(&id, Outcome::FunctionError(payload))?;
    Ok(accepted())
}

async fn init_error(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RuntimeApiError> {
    let payload = error_payload(&headers, body).await;
    sandbox.init_failed(payload)?;
    Ok(accepted())
}

async fn error_payload(headers: &HeaderMap, body: Body) -> bytes::Bytes {
    let error_type = headers.get(ERROR_TYPE_HEADER).and_then(|v| v.to_str().ok());
    match read_limited(body, MAX_ERROR_BYTES).await {
        Ok(bytes) => runtime_error_payload(&bytes, error_type),
        Err(_) => runtime_error_payload(b"", error_type),
    }
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, Json(json!({"status": "OK"}))).into_response()
}

impl IntoResponse for RuntimeApiError {
    fn into_response(self) -> Response {
        let (status, error_type) = match &self {
            RuntimeApiError::InvalidRequestId => (StatusCode::BAD_REQUEST, "InvalidRequestID"),
            RuntimeApiError::InvalidStateTransition { .. } => {
                (StatusCode::FORBIDDEN, "InvalidStateTransition")
            }
            RuntimeApiError::ResponseTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge")
            }
        };
        tracing::debug!(error = %self, "runtime api call refused");
        (
            status,
            Json(json!({"errorMessage": self.to_string(), "errorType": error_type})),
        )
            .into_response()
    }
}
