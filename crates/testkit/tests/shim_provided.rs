//! The worker shim running a `provided.al2023` function: a `bootstrap` built
//! with the official `lambda_runtime` crate (src/bin/fixture_bootstrap.rs).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use esb_testkit::Shim;
use serde_json::{json, Value};

/// A task root holding `bootstrap`, as a provided function's code does.
struct TaskRoot(PathBuf);

impl TaskRoot {
    fn new(name: &str) -> TaskRoot {
        let dir = std::env::temp_dir().join(format!("esb-provided-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("task root");
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_fixture-bootstrap"),
            dir.join("bootstrap"),
        )
        .expect("link bootstrap");
        TaskRoot(dir)
    }

    async fn shim(&self, extra: &[&str]) -> Shim {
        let mut args = vec![
            "--runtime",
            "provided.al2023",
            "--task-root",
            self.0.to_str().expect("utf-8 path"),
            "--function-name",
            "rusty",
            "--memory-size",
            "256",
        ];
        args.extend_from_slice(extra);
        Shim::start(&args).await
    }
}

impl Drop for TaskRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn body(resp: reqwest::Response) -> Value {
    resp.json().await.expect("json body")
}

#[tokio::test]
async fn lambda_runtime_gets_every_context_header() {
    let root = TaskRoot::new("context");
    let shim = root.shim(&["--timeout", "20"]).await;
    let client_context = base64::engine::general_purpose::STANDARD
        .encode(r#"{"custom":{"k":"v"},"env":{"platform":"linux"}}"#);
    let resp = shim
        .client
        .post(shim.invocations_url())
        .header("X-Amzn-RequestId", "req-provided-1")
        .header(
            "X-Amzn-Trace-Id",
            "Root=1-00000001-000000000000000000000001;Sampled=0",
        )
        .header("X-Amz-Client-Context", client_context)
        .header(
            "X-Amz-Cognito-Identity",
            r#"{"cognitoIdentityId":"cid","cognitoIdentityPoolId":"pool"}"#,
        )
        .header(
            "X-Esb-Invoked-Function-Arn",
            "arn:aws:lambda:us-east-1:000000000000:function:rusty:live",
        )
        .json(&json!({"action": "echo", "x": [1, 2]}))
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 200);
    let v = body(resp).await;
    assert_eq!(v["event"], json!({"action": "echo", "x": [1, 2]}), "{v}");
    assert_eq!(v["request_id"], "req-provided-1");
    assert_eq!(
        v["function_arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:rusty:live"
    );
    assert_eq!(
        v["trace_id"],
        "Root=1-00000001-000000000000000000000001;Sampled=0"
    );
    assert_eq!(v["client_context_custom"], json!({"k": "v"}));
    assert_eq!(v["cognito_identity_id"], "cid");
    assert_eq!(v["function_name"], "rusty");
    assert_eq!(v["memory"], 256);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let deadline = v["deadline"].as_u64().expect("deadline");
    assert!(
        deadline > now_ms + 15_000 && deadline <= now_ms + 20_000,
        "deadline {deadline} vs now {now_ms}"
    );
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn errors_panics_and_output() {
    let root = TaskRoot::new("errors");
    let shim = root.shim(&[]).await;

    let resp = shim
        .invoke(json!({"action": "error", "message": "nope"}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-amz-function-error"], "Unhandled");
    let v = body(resp).await;
    assert_eq!(v["errorMessage"], "nope");
    assert_eq!(v["errorType"], "FixtureError");

    let resp = shim.invoke(json!({"action": "panic"})).await;
    assert_eq!(resp.headers()["x-amz-function-error"], "Unhandled");
    assert!(body(resp).await["errorMessage"]
        .as_str()
        .expect("message")
        .contains("fixture panic"));

    let resp = shim
        .client
        .post(shim.invocations_url())
        .header("X-Amz-Log-Type", "Tail")
        .json(&json!({"action": "print", "lines": ["rust says hi"]}))
        .send()
        .await
        .expect("invoke");
    let log = base64::engine::general_purpose::STANDARD
        .decode(resp.headers()["x-amz-log-result"].as_bytes())
        .expect("base64");
    assert!(String::from_utf8_lossy(&log)
        .lines()
        .any(|l| l == "rust says hi"));
    assert_eq!(body(resp).await, json!("printed"));
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn timeout_and_exit_recover_with_a_fresh_bootstrap() {
    let root = TaskRoot::new("faults");
    let shim = root.shim(&["--timeout", "1"]).await;
    let resp = shim.invoke(json!({"action": "sleep", "seconds": 10})).await;
    assert_eq!(body(resp).await["errorType"], "Sandbox.Timedout");
    let resp = shim.invoke(json!({"action": "exit", "code": 2})).await;
    let v = body(resp).await;
    assert_eq!(v["errorType"], "Runtime.ExitError");
    assert!(v["errorMessage"]
        .as_str()
        .expect("message")
        .ends_with("exit status 2"));
    let resp = shim.invoke(json!({"action": "echo"})).await;
    assert!(resp.headers().get("x-amz-function-error").is_none());
    assert_eq!(body(resp).await["event"]["action"], "echo");
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn missing_bootstrap_names_the_places_searched() {
    let dir = std::env::temp_dir().join(format!("esb-provided-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let shim = Shim::start(&[
        "--runtime",
        "provided",
        "--task-root",
        dir.to_str().expect("utf-8"),
        "--runtime-dir",
        dir.to_str().expect("utf-8"),
    ])
    .await;
    let v = body(shim.invoke(json!({})).await).await;
    assert_eq!(v["errorType"], "Runtime.InvalidEntrypoint");
    let message = v["errorMessage"].as_str().expect("message");
    assert!(
        message.starts_with("Couldn't find valid bootstrap(s): ["),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}/bootstrap", dir.display())),
        "{message}"
    );
    shim.stop().await.expect("clean stop");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn runtime_api_rejects_unknown_request_ids() {
    // A bare Runtime API client: what a misbehaving custom runtime sees.
    let root = TaskRoot::new("api");
    let shim = root.shim(&[]).await;
    shim.wait_ready(Duration::from_secs(20)).await;
    let api = &shim.runtime_api;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!(
            "http://{api}/2018-06-01/runtime/invocation/not-in-flight/response"
        ))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    let v = body(resp).await;
    assert_eq!(v["errorType"], "InvalidRequestID");
    let resp = client
        .post(format!("http://{api}/2018-06-01/runtime/init/error"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 403);
    assert_eq!(body(resp).await["errorType"], "InvalidStateTransition");
    // The function is unaffected.
    let resp = shim.invoke(json!({"action": "echo"})).await;
    assert!(resp.headers().get("x-amz-function-error").is_none());
    shim.stop().await.expect("clean stop");
}
