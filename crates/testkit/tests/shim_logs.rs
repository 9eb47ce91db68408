//! Shipping of function output in VictoriaLogs' `/insert/jsonline` format.
//! The receiving end here records what arrives, to check the wire format
//! ESB sends; it never decides an invocation's outcome.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::routing::post;
use axum::Router;
use esb_testkit::Shim;
use serde_json::{json, Value};

/// One POST: its query string and body.
type Post = (Option<String>, String);

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Post>>>);

async fn record(State(r): State<Received>, RawQuery(q): RawQuery, body: String) {
    r.0.lock().expect("lock").push((q, body));
}

async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/insert/jsonline", post(record))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn function_output_is_shipped_as_json_lines_with_request_ids() {
    let (url, received) = receiver().await;
    let shim =
        Shim::python_with_logs("app.handler", &["--function-name", "shipper"], Some(url)).await;
    let resp = shim
        .invoke(json!({"action": "print", "lines": ["[ERROR] shipped line", "plain line"]}))
        .await;
    let request_id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .expect("id")
        .to_owned();
    assert_eq!(resp.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(10);
    let records: Vec<Value> = loop {
        let records: Vec<Value> = received
            .0
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|(query, body)| {
                let query = query.clone().unwrap_or_default();
                assert!(query.contains("_stream_fields=function,stream"), "{query}");
                body.lines()
                    .map(|l| serde_json::from_str::<Value>(l).expect("each line is JSON"))
                    .collect::<Vec<_>>()
            })
            .filter(|r| r["request_id"] == request_id.as_str())
            .collect();
        if records
            .iter()
            .any(|r| r["_msg"].as_str().is_some_and(|m| m.starts_with("REPORT")))
        {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "logs not shipped within 10 s: {records:?} {:?}",
            received.0.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_msg = |m: &str| records.iter().find(|r| r["_msg"] == m).cloned();
    let error = by_msg("[ERROR] shipped line").expect("error line shipped");
    assert_eq!(error["level"], "error");
    assert_eq!(error["function"], "shipper");
    assert_eq!(error["stream"], "stdout");
    assert!(error["trace_id"]
        .as_str()
        .expect("trace")
        .starts_with("Root=1-"));
    assert!(error["_time"].as_str().expect("time").ends_with('Z'));
    assert_eq!(by_msg("plain line").expect("plain line")["level"], "info");
    assert_eq!(
        by_msg("to stderr").expect("stderr line")["stream"],
        "stderr"
    );
    assert!(by_msg(&format!("START RequestId: {request_id} Version: $LATEST")).is_some());
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_unreachable_log_store_never_fails_an_invocation() {
    // Bind then drop a listener: nothing accepts on that port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let shim =
        Shim::python_with_logs("app.handler", &[], Some(format!("http://127.0.0.1:{port}"))).await;
    for _ in 0..3 {
        let resp = shim
            .invoke(json!({"action": "print", "lines": ["x"]}))
            .await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("x-amz-function-error").is_none());
    }
    shim.stop().await.expect("clean stop");
}
