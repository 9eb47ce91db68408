//! The ESB worker shim: the entrypoint of every function image.
//!
//! It serves the invoke endpoint of AWS's Runtime Interface Emulator on
//! :8080, starts the language runtime with `AWS_LAMBDA_RUNTIME_API` pointing
//! at its own Runtime API on 127.0.0.1:9001, and relays one invocation at a
//! time between the two, enforcing the function timeout, restarting a
//! crashed runtime and capturing its output per invocation.

pub mod config;
pub mod invocation;
pub mod invoke_api;
pub mod logs;
pub mod runtime_api;
pub mod sandbox;

use std::sync::Arc;

use axum::body::Body;
use axum::serve::ListenerExt as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::FunctionSpec;
use crate::logs::{LogCapture, Stream};
use crate::sandbox::Sandbox;

/// Runs the shim until `shutdown` is cancelled: stops the runtime, finishes
/// the servers and flushes shipped logs before returning.
pub async fn serve(
    spec: FunctionSpec,
    invoke_listener: TcpListener,
    runtime_api_listener: TcpListener,
    logs_url: Option<String>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let runtime_api_addr = runtime_api_listener.local_addr()?;
    let (logs, shipper) = LogCapture::new(spec.name.clone(), logs_url, shutdown.clone())?;
    let sandbox = Sandbox::new(
        Arc::new(spec),
        runtime_api_addr,
        Arc::clone(&logs),
        shutdown.clone(),
    );

    let tasks = tokio_util::task::TaskTracker::new();
    if let Some(shipper) = shipper {
        tasks.spawn(shipper);
    }
    for stream in [Stream::Stdout, Stream::Stderr] {
        let logs = Arc::clone(&logs);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = logs.pump(stream) => {}
                () = stop.cancelled() => {}
            }
        });
    }
    let api = axum::serve(
        runtime_api_listener,
        runtime_api::router(Arc::clone(&sandbox)),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let invoke_listener = invoke_listener.tap_io(|tcp| {
        // Keep small responses from waiting on Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    let invoke = axum::serve(invoke_listener, invoke_api::router(Arc::clone(&sandbox)))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let api = tasks.spawn(async move { api.await });
    sandbox.start();
    let invoke_result = invoke.await;
    shutdown.cancel();
    sandbox.stopped().await;
    let api_result = api.await.unwrap_or(Ok(()));
    tasks.close();
    tasks.wait().await;
    invoke_result.and(api_result)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("body exceeds the size limit")]
    TooLarge,
    #[error("body could not be read: {0}")]
    Read(String),
}

/// Reads a whole body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(BodyError::TooLarge);
                }
                source = s.source();
            }
            Err(BodyError::Read(e.to_string()))
        }
    }
}
