//! One invocation as it travels from the invoke endpoint through the runtime
//! and back, and the AWS-shaped results it can end in.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::oneshot;

/// What the caller supplied with an invocation besides the payload.
#[derive(Debug, Clone)]
pub struct InvocationContext {
    pub request_id: String,
    pub trace_id: String,
    pub invoked_function_arn: String,
    /// Decoded JSON of `X-Amz-Client-Context`.
    pub client_context: Option<String>,
    /// JSON of the caller's Cognito identity.
    pub cognito_identity: Option<String>,
}

/// An invocation waiting for, or being processed by, the runtime.
#[derive(Debug)]
pub struct Invocation {
    pub context: InvocationContext,
    pub payload: Bytes,
    /// Fired when the runtime picks the invocation up, with the deadline
    /// (ms since the epoch) handed to the runtime.
    pub dispatched: Option<oneshot::Sender<u64>>,
    pub reply: oneshot::Sender<Outcome>,
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The runtime posted a response.
    Success(Bytes),
    /// The function failed; the body is the AWS error payload returned to the
    /// caller with `X-Amz-Function-Error: Unhandled`.
    FunctionError(Bytes),
}

/// The error payload Lambda returns for a failed invocation.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorPayload {
    #[serde(rename = "errorMessage")]
    pub message: String,
    #[serde(rename = "errorType")]
    pub error_type: String,
}

impl ErrorPayload {
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            error_type: error_type.into(),
        }
    }

    pub fn timed_out(request_id: &str, seconds: f64) -> Self {
        Self::new(
            "Sandbox.Timedout",
            format!("RequestId: {request_id} Error: Task timed out after {seconds:.2} seconds"),
        )
    }

    pub fn runtime_exited(request_id: &str, status: &str) -> Self {
        Self::new(
            "Runtime.ExitError",
            format!("RequestId: {request_id} Error: Runtime exited with error: {status}"),
        )
    }

    pub fn response_too_large(limit: usize) -> Self {
        Self::new(
            "Function.ResponseSizeTooLarge",
            format!("Response payload size exceeded maximum allowed payload size ({limit} bytes)."),
        )
    }

    pub fn to_bytes(&self) -> Bytes {
        // Serialising two strings into JSON cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn into_outcome(self) -> Outcome {
        Outcome::FunctionError(self.to_bytes())
    }
}

/// Turns what a runtime posted to `/error` or `/init/error` into the payload
/// the caller sees: the runtime's JSON object as is, or one built from the
/// `Lambda-Runtime-Function-Error-Type` header when the body is not JSON.
pub fn runtime_error_payload(body: &[u8], error_type: Option<&str>) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(_)) => Bytes::copy_from_slice(body),
        _ => {
            let message = String::from_utf8_lossy(body).trim().to_owned();
            ErrorPayload::new(
                error_type
                    .filter(|t| !t.is_empty())
                    .unwrap_or("Runtime.Unknown"),
                if message.is_empty() {
                    "The runtime reported an error without details".to_owned()
                } else {
                    message
                },
            )
            .to_bytes()
        }
    }
}

pub fn epoch_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Accepts a caller-supplied request id when it is a plausible id.
pub fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_error_bodies_pass_through_when_json() {
        let body = br#"{"errorMessage":"boom","errorType":"ValueError","stackTrace":[]}"#;
        assert_eq!(
            runtime_error_payload(body, Some("X")),
            Bytes::from_static(body)
        );
    }

    #[test]
    fn runtime_error_without_json_uses_the_header_type() {
        let p = runtime_error_payload(b"plain failure", Some("Runtime.Custom"));
        let v: serde_json::Value = serde_json::from_slice(&p).expect("json");
        assert_eq!(v["errorType"], "Runtime.Custom");
        assert_eq!(v["errorMessage"], "plain failure");
        let p = runtime_error_payload(b"", None);
        let v: serde_json::Value = serde_json::from_slice(&p).expect("json");
        assert_eq!(v["errorType"], "Runtime.Unknown");
    }

    #[test]
    fn aws_messages() {
        let t = ErrorPayload::timed_out("abc", 3.0);
        assert_eq!(
            t.message,
            "RequestId: abc Error: Task timed out after 3.00 seconds"
        );
        let big = ErrorPayload::response_too_large(6291556);
        assert_eq!(
            String::from_utf8(big.to_bytes().to_vec()).expect("utf8"),
            r#"{"errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}"#
        );
    }

    #[test]
    fn request_ids_are_checked() {
        assert!(valid_request_id("8f9b1f2c-1c44-4e0f-9d1f-0e1e6f2d3a4b"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"x".repeat(65)));
    }
}
