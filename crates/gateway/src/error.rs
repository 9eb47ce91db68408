//! The one place where gateway errors become HTTP responses, in the shapes
//! API Gateway sends (`{"message": ...}`, plus `x-amzn-ErrorType`). The
//! internal error is logged here, once; clients never see its text.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::AuthError;
use crate::event::EventError;
use crate::pool::InvokeError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route matches the request")]
    RouteNotFound,
    #[error("the route does not allow this method")]
    MethodNotAllowed { allowed: Vec<Method> },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body could not be read")]
    BodyRead,
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    #[error("function {function} failed: {error_type}")]
    FunctionFailed {
        function: String,
        error_type: String,
    },
    #[error("function {function}: the worker answered HTTP {status}")]
    WorkerRejected { function: String, status: u16 },
    #[error("function {function} timed out")]
    FunctionTimeout { function: String },
    #[error("function {function} returned a response API Gateway cannot map: {source}")]
    BadFunctionResponse {
        function: String,
        #[source]
        source: EventError,
    },
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use InvokeError as I;
        let (status, message, error_type) = match &self {
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, "Not Found", "NotFoundException"),
            ApiError::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed",
                "MethodNotAllowedException",
            ),
            ApiError::Auth(e) => (
                e.status(),
                e.client_message(),
                match e.status() {
                    StatusCode::FORBIDDEN => "ForbiddenException",
                    StatusCode::BAD_REQUEST => "BadRequestException",
                    StatusCode::UNAUTHORIZED => "UnauthorizedException",
                    _ => "InternalServerErrorException",
                },
            ),
            ApiError::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request Too Long",
                "RequestEntityTooLargeException",
            ),
            ApiError::BodyRead => (
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "BadRequestException",
            ),
            ApiError::Invoke(I::Throttled { .. }) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                "TooManyRequestsException",
            ),
            ApiError::Invoke(
                I::CircuitOpen { .. } | I::StartFailed { .. } | I::ShuttingDown | I::Retired,
            ) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "ServiceUnavailableException",
            ),
            ApiError::Invoke(I::UnknownFunction(_) | I::WorkerFailed { .. })
            | ApiError::WorkerRejected { .. }
            | ApiError::FunctionFailed { .. }
            | ApiError::BadFunctionResponse { .. } => (
                StatusCode::BAD_GATEWAY,
                "Internal server error",
                "InternalServerErrorException",
            ),
            ApiError::FunctionTimeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "Endpoint request timed out",
                "IntegrationTimeoutException",
            ),
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), "request failed");
        } else {
            tracing::info!(error = %self, status = status.as_u16(), "request refused");
        }
        let mut response = (status, Json(json!({ "message": message }))).into_response();
        let headers = response.headers_mut();
        headers.insert("x-amzn-errortype", HeaderValue::from_static(error_type));
        if let ApiError::MethodNotAllowed { allowed } = &self {
            let allow = allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(v) = HeaderValue::from_str(&allow) {
                headers.insert(axum::http::header::ALLOW, v);
            }
        }
        response
    }
}
