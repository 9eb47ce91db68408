//! What the backend tests share.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use esb_agent::proto::{worker_event, ErrorCode, WorkerEvent};
use esb_agent::BackendError;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// POSTs `payload` to the RIE-compatible endpoint of the worker at `addr`
/// (the caller checks that it may contact it); its status and JSON body.
pub async fn invoke(addr: SocketAddr, payload: Value) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let driver = tokio::spawn(conn);
    let request = hyper::Request::post("/2015-03-31/functions/function/invocations")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(payload.to_string())))
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
        .await
        .expect("invoke within 30 s")
        .expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    drop(sender);
    driver.abort();
    let _ = driver.await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The next event of `worker_id` (others are skipped), within 30 s.
pub async fn next_event_of(
    events: &mut tokio::sync::broadcast::Receiver<WorkerEvent>,
    worker_id: &str,
) -> Option<worker_event::Kind> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .expect("a worker event within 30 s")
            .expect("event");
        if event.worker_id == worker_id {
            return event.kind;
        }
    }
}

/// `err` is the start failure of a worker whose shim exited at start: its
/// exit in the reason, its log lines captured, `StartFailed` on the wire.
pub fn assert_exited_at_start(err: &BackendError) {
    let BackendError::StartFailed { reason, logs, .. } = err else {
        panic!("expected StartFailed, got {err:?}");
    };
    assert!(reason.contains("exited with code"), "{reason}");
    assert!(!logs.is_empty(), "no log lines captured");
    assert_eq!(err.to_wire().code(), ErrorCode::StartFailed);
}
