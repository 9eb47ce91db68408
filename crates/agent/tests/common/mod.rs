//! What the backend tests share.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
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
