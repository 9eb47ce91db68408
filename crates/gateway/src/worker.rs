//! Calling a worker's invoke endpoint (the shim's RIE-compatible API) over
//! kept-alive HTTP/1.1 connections, one pool per worker address.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Largest worker response read; the shim caps function output at 6 MB.
const MAX_WORKER_RESPONSE: usize = 7 * 1024 * 1024;

/// What the gateway sends a worker.
#[derive(Debug, Clone)]
pub struct WorkerRequest {
    pub payload: Bytes,
    pub request_id: String,
    pub trace_id: String,
    /// Ask for `X-Amz-Log-Result`.
    pub tail: bool,
    pub client_context: Option<String>,
    pub invoked_function_arn: Option<String>,
}

/// What a worker answered.
#[derive(Debug, Clone)]
pub struct WorkerResponse {
    pub status: u16,
    pub body: Bytes,
    /// `X-Amz-Function-Error`, when the function failed.
    pub function_error: Option<String>,
    pub log_result: Option<String>,
}

impl WorkerResponse {
    /// The `errorType` of a function error payload.
    pub fn error_type(&self) -> Option<String> {
        self.function_error.as_ref()?;
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()?
            .get("errorType")?
            .as_str()
            .map(str::to_owned)
    }
}

/// The worker could not be reached or answered outside the contract: an
/// infrastructure failure, never the function's own.
#[derive(Debug, thiserror::Error)]
pub enum WorkerCallError {
    #[error("worker at {address} unreachable: {source}")]
    Connect {
        address: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("worker at {address} did not answer within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("worker at {address} sent an unreadable response: {reason}")]
    Protocol { address: String, reason: String },
}

#[derive(Clone)]
pub struct WorkerClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for WorkerClient {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerClient {
    pub fn new() -> WorkerClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(2)
            .build(connector);
        WorkerClient { client }
    }

    pub async fn invoke(
        &self,
        address: &str,
        request: &WorkerRequest,
        timeout: Duration,
    ) -> Result<WorkerResponse, WorkerCallError> {
        let protocol = |reason: String| WorkerCallError::Protocol {
            address: address.to_owned(),
            reason,
        };
        let uri = format!("http://{address}/2015-03-31/functions/function/invocations");
        let mut builder = hyper::Request::post(uri)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("x-amzn-requestid", &request.request_id)
            .header("x-amzn-trace-id", &request.trace_id);
        if request.tail {
            builder = builder.header("x-amz-log-type", "Tail");
        }
        if let Some(cc) = &request.client_context {
            builder = builder.header("x-amz-client-context", cc);
        }
        if let Some(arn) = &request.invoked_function_arn {
            builder = builder.header("x-esb-invoked-function-arn", arn);
        }
        let http_request = builder
            .body(Full::new(request.payload.clone()))
            .map_err(|e| protocol(e.to_string()))?;
        let call = async {
            let response = self.client.request(http_request).await.map_err(|source| {
                WorkerCallError::Connect {
                    address: address.to_owned(),
                    source,
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_WORKER_RESPONSE)
                .collect()
                .await
                .map_err(|e| protocol(e.to_string()))?
                .to_bytes();
            let header = |name: &'static str| {
                parts
                    .headers
                    .get(HeaderName::from_static(name))
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            Ok(WorkerResponse {
                status: parts.status.as_u16(),
                function_error: header("x-amz-function-error"),
                log_result: header("x-amz-log-result"),
                body,
            })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| WorkerCallError::Timeout {
                address: address.to_owned(),
                timeout,
            })?
    }
}
