//! The one place where gateway errors become HTTP responses: [`ApiError`]
//! in the shapes API Gateway sends (`{"message": ...}`, plus
//! `x-amzn-ErrorType`) for routes, login and the admin API, and
//! [`LambdaError`] in the shapes the Lambda service sends for its Invoke
//! API. The internal error is logged here, once; clients never see its text.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::AuthError;
use crate::event::EventError;
use crate::pool::InvokeError;
use crate::sigv4::SigV4Error;
use crate::store::StoreError;

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
    #[error("request URL of {length} characters exceeds {limit}")]
    UriTooLong { length: usize, limit: usize },
    #[error("request line and header values of {size} bytes exceed {limit}")]
    HeadersTooLarge { size: usize, limit: usize },
    #[error("query parameter {parameter} must be {expected}")]
    InvalidQuery {
        parameter: &'static str,
        expected: &'static str,
    },
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
    #[error(transparent)]
    Store(#[from] StoreError),
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
            ApiError::UriTooLong { .. } => (
                StatusCode::URI_TOO_LONG,
                "Request URI too long",
                "RequestUriTooLongException",
            ),
            ApiError::HeadersTooLarge { .. } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request Header Fields Too Large",
                "RequestHeaderFieldsTooLargeException",
            ),
            ApiError::BodyRead | ApiError::InvalidQuery { .. } => (
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
            ApiError::Store(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
                "InternalServerErrorException",
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

/// Why a Lambda Invoke API request failed. The shapes are the Lambda
/// service's (`rest-json`: the type in `x-amzn-ErrorType`, a JSON body with
/// `Type` and `message`, or `Message` where the API model says so), so the
/// SDKs raise their modelled exceptions (`ResourceNotFoundException`,
/// `TooManyRequestsException` with its `Reason`, ...).
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error(transparent)]
    Signature(#[from] SigV4Error),
    #[error(transparent)]
    Bearer(#[from] AuthError),
    #[error("invalid request: {message}")]
    Validation { message: String },
    #[error("invalid parameter: {message}")]
    InvalidParameter { message: String },
    #[error("invalid request content: {message}")]
    InvalidRequestContent { message: String },
    #[error("function {arn} not found")]
    FunctionNotFound { arn: String },
    #[error("event payload of {size} bytes exceeds {limit} bytes")]
    EventPayloadTooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Store(StoreError),
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body could not be read")]
    BodyRead,
    #[error(transparent)]
    Invoke(InvokeError),
    #[error("function {function}: the worker answered HTTP {status}")]
    WorkerRejected { function: String, status: u16 },
}

/// Whose fault an error is, as Lambda's `Type` field says.
const USER: &str = "User";
const SERVICE: &str = "Service";

impl IntoResponse for LambdaError {
    fn into_response(self) -> Response {
        use InvokeError as I;
        use LambdaError as L;
        let service_error = |status, message: &str| {
            (
                status,
                "ServiceException",
                json!({"Type": SERVICE, "Message": message}),
            )
        };
        let (status, error_type, body) = match &self {
            L::Signature(e) => (
                StatusCode::FORBIDDEN,
                e.error_type(),
                json!({"message": e.client_message()}),
            ),
            L::Bearer(e) => (
                e.status(),
                match e.status() {
                    StatusCode::FORBIDDEN => "ForbiddenException",
                    StatusCode::UNAUTHORIZED => "UnauthorizedException",
                    _ => "ServiceException",
                },
                json!({"message": e.client_message()}),
            ),
            L::Validation { message } => (
                StatusCode::BAD_REQUEST,
                "ValidationException",
                json!({"message": message}),
            ),
            L::InvalidParameter { message } => (
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                json!({"Type": USER, "message": message}),
            ),
            // Lambda's wording for asynchronous payloads.
            L::EventPayloadTooLarge { size, limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
                json!({"Type": USER, "message": format!(
                    "{size} byte payload is too large for the Event invocation type (limit {limit} bytes)"
                )}),
            ),
            L::Store(_) => service_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The invocation could not be stored; retry.",
            ),
            L::InvalidRequestContent { message } => (
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                json!({"Type": USER, "message": message}),
            ),
            L::BodyRead => (
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                json!({"Type": USER, "message": "The request body could not be read."}),
            ),
            L::FunctionNotFound { arn } => (
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                json!({"Type": USER, "Message": format!("Function not found: {arn}")}),
            ),
            L::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
                json!({"Type": USER, "message": format!(
                    "Request must be smaller than {limit} bytes for the InvokeFunction operation"
                )}),
            ),
            L::Invoke(I::Throttled { .. }) => (
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                json!({
                    "Type": USER,
                    "message": "Rate Exceeded.",
                    "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                }),
            ),
            L::Invoke(I::UnknownFunction(name)) => (
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                json!({"Type": USER, "Message": format!("Function not found: {name}")}),
            ),
            L::Invoke(I::CircuitOpen { .. }) => service_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The function failed repeatedly and is paused briefly; retry later.",
            ),
            L::Invoke(I::ShuttingDown | I::Retired) => service_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The gateway could not run the invocation; retry.",
            ),
            L::Invoke(I::StartFailed { .. }) => service_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "A worker for the function could not be started.",
            ),
            L::Invoke(I::WorkerFailed { .. }) | L::WorkerRejected { .. } => service_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The function's worker failed to run the invocation.",
            ),
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), error_type, "invoke failed");
        } else {
            tracing::info!(error = %self, status = status.as_u16(), error_type, "invoke refused");
        }
        let mut response = (status, Json(body)).into_response();
        response
            .headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(error_type));
        response
    }
}
