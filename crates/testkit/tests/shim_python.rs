//! The worker shim driven by AWS's own Python runtime client, awslambdaric,
//! running the fixture function as a real child process.

use std::time::{Duration, Instant};

use base64::Engine as _;
use esb_testkit::Shim;
use serde_json::{json, Value};

const READY: Duration = Duration::from_secs(30);

async fn body(resp: reqwest::Response) -> Value {
    resp.json().await.expect("json body")
}

#[tokio::test]
async fn success_carries_ids_context_and_lambda_environment() {
    let shim = Shim::python(
        "app.handler",
        &["--function-name", "echo-fn", "--timeout", "30"],
    )
    .await;
    let health = shim.wait_ready(READY).await;
    assert_eq!(health["status"], "ready");

    let client_context = base64::engine::general_purpose::STANDARD
        .encode(r#"{"custom":{"tenant":"t1"},"client":{},"env":{}}"#);
    let resp = shim
        .client
        .post(shim.invocations_url())
        .header("X-Amzn-RequestId", "11111111-2222-3333-4444-555555555555")
        .header(
            "X-Amzn-Trace-Id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .header("X-Amz-Client-Context", client_context)
        .header(
            "X-Amz-Cognito-Identity",
            r#"{"cognitoIdentityId":"id-1","cognitoIdentityPoolId":"pool-1"}"#,
        )
        .json(&json!({"action": "echo", "n": 1}))
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-amzn-requestid"],
        "11111111-2222-3333-4444-555555555555"
    );
    assert!(resp.headers().get("x-amz-function-error").is_none());
    let v = body(resp).await;
    assert_eq!(v["event"], json!({"action": "echo", "n": 1}));
    assert_eq!(v["request_id"], "11111111-2222-3333-4444-555555555555");
    assert_eq!(
        v["function_arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:echo-fn"
    );
    assert_eq!(v["function_name"], "echo-fn");
    assert_eq!(v["memory_limit_in_mb"], "128");
    assert_eq!(v["handler"], "app.handler");
    assert_eq!(
        v["trace_id"],
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    );
    assert_eq!(v["client_context_custom"], json!({"tenant": "t1"}));
    assert_eq!(v["cognito_identity_id"], "id-1");
    let remaining = v["remaining_ms"].as_i64().expect("remaining ms");
    assert!(
        (25_000..=30_000).contains(&remaining),
        "remaining {remaining}"
    );

    // Without caller ids, the shim makes them.
    let resp = shim.invoke(json!({})).await;
    let id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .expect("id")
        .to_owned();
    let trace = resp.headers()["x-amzn-trace-id"]
        .to_str()
        .expect("trace")
        .to_owned();
    let v = body(resp).await;
    assert_eq!(v["request_id"], id.as_str());
    assert_eq!(v["trace_id"], trace.as_str());
    assert!(trace.starts_with("Root=1-"));
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn tail_returns_the_invocation_log() {
    let shim = Shim::python("app.handler", &[]).await;
    // The first invocation starts from a cold runtime: Init Duration shows.
    let resp = shim
        .client
        .post(shim.invocations_url())
        .header("X-Amz-Log-Type", "Tail")
        .json(&json!({"action": "print", "lines": ["hello from the function", "second line"]}))
        .send()
        .await
        .expect("invoke");
    let id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .expect("id")
        .to_owned();
    let log = base64::engine::general_purpose::STANDARD
        .decode(resp.headers()["x-amz-log-result"].as_bytes())
        .expect("base64 log");
    let log = String::from_utf8(log).expect("utf8");
    assert_eq!(body(resp).await, json!("printed"));
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("START RequestId: {id} Version: $LATEST").as_str()),
        "{log}"
    );
    assert!(lines.contains(&"hello from the function"), "{log}");
    assert!(lines.contains(&"second line"), "{log}");
    assert!(lines.contains(&"to stderr"), "{log}");
    assert!(
        lines.contains(&format!("END RequestId: {id}").as_str()),
        "{log}"
    );
    let report = lines.last().expect("report");
    assert!(
        report.starts_with(&format!("REPORT RequestId: {id}\tDuration: ")),
        "{log}"
    );
    assert!(
        report.contains("Memory Size: 128 MB\tMax Memory Used: "),
        "{log}"
    );

    // Tail is only sent when asked for.
    let resp = shim.invoke(json!({"action": "echo"})).await;
    assert!(resp.headers().get("x-amz-log-result").is_none());
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn handled_exception_is_an_unhandled_function_error() {
    let shim = Shim::python("app.handler", &[]).await;
    let resp = shim
        .invoke(json!({"action": "raise", "message": "bad input"}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-amz-function-error"], "Unhandled");
    let v = body(resp).await;
    assert_eq!(v["errorType"], "ValueError");
    assert_eq!(v["errorMessage"], "bad input");
    assert!(v["stackTrace"].is_array());
    // The runtime survives a function error.
    let resp = shim.invoke(json!({"action": "pid"})).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-amz-function-error").is_none());
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn import_error_reaches_the_caller_and_the_shim_stays_up() {
    let shim = Shim::python("broken.handler", &[]).await;
    for _ in 0..2 {
        let resp = shim.invoke(json!({})).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-amz-function-error"], "Unhandled");
        let v = body(resp).await;
        assert_eq!(v["errorType"], "Runtime.ImportModuleError");
        assert!(
            v["errorMessage"]
                .as_str()
                .expect("message")
                .contains("module_that_does_not_exist"),
            "{v}"
        );
    }
    let health = shim.wait_ready(READY).await;
    assert_eq!(health["status"], "init_error");
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn timeout_kills_the_runtime_and_the_next_invocation_gets_a_fresh_one() {
    let shim = Shim::python("app.handler", &["--timeout", "1"]).await;
    let before = body(shim.invoke(json!({"action": "pid"})).await).await;
    let resp = shim.invoke(json!({"action": "sleep", "seconds": 20})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-amz-function-error"], "Unhandled");
    let id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .expect("id")
        .to_owned();
    let v = body(resp).await;
    assert_eq!(v["errorType"], "Sandbox.Timedout");
    assert_eq!(
        v["errorMessage"],
        format!("RequestId: {id} Error: Task timed out after 1.00 seconds")
    );
    let after = shim.invoke(json!({"action": "pid"})).await;
    assert_eq!(after.status(), 200);
    assert!(after.headers().get("x-amz-function-error").is_none());
    assert_ne!(
        body(after).await,
        before,
        "a fresh runtime process serves after a timeout"
    );
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn crash_is_an_exit_error_and_the_runtime_restarts() {
    let shim = Shim::python("app.handler", &[]).await;
    let resp = shim.invoke(json!({"action": "exit", "code": 7})).await;
    assert_eq!(resp.headers()["x-amz-function-error"], "Unhandled");
    let id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .expect("id")
        .to_owned();
    let v = body(resp).await;
    assert_eq!(v["errorType"], "Runtime.ExitError");
    assert_eq!(
        v["errorMessage"],
        format!("RequestId: {id} Error: Runtime exited with error: exit status 7")
    );
    let resp = shim.invoke(json!({"action": "echo"})).await;
    assert!(resp.headers().get("x-amz-function-error").is_none());
    assert_eq!(body(resp).await["event"]["action"], "echo");
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn six_megabyte_limits_both_ways() {
    let shim = Shim::python("app.handler", &["--timeout", "30"]).await;
    // Request over 6 MB: refused before the function runs.
    let big = format!("\"{}\"", "a".repeat(6 * 1024 * 1024));
    let resp = shim
        .client
        .post(shim.invocations_url())
        .body(big)
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.headers()["x-amzn-errortype"],
        "RequestEntityTooLargeException"
    );
    let v = body(resp).await;
    assert!(
        v["message"]
            .as_str()
            .expect("message")
            .contains("limit 6291456 bytes"),
        "{v}"
    );

    // A request just under the limit goes through.
    let ok = json!({"action": "pid", "pad": "b".repeat(6 * 1024 * 1024 - 64)});
    let resp = shim.invoke(ok).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-amz-function-error").is_none());

    // Response over the limit: AWS's error, and the runtime carries on.
    let resp = shim
        .invoke(json!({"action": "big", "size": 6_291_556}))
        .await;
    assert_eq!(resp.headers()["x-amz-function-error"], "Unhandled");
    let v = body(resp).await;
    assert_eq!(v["errorType"], "Function.ResponseSizeTooLarge");
    assert_eq!(
        v["errorMessage"],
        "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
    );
    let resp = shim
        .invoke(json!({"action": "big", "size": 1_000_000}))
        .await;
    assert!(
        resp.headers().get("x-amz-function-error").is_none(),
        "{:?}",
        resp.text().await
    );
    assert_eq!(body(resp).await.as_str().map(str::len), Some(1_000_000));
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_second_concurrent_invocation_is_refused() {
    let shim = Shim::python("app.handler", &["--timeout", "30"]).await;
    shim.wait_ready(READY).await;
    let first = {
        let client = shim.client.clone();
        let url = shim.invocations_url();
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"action": "sleep", "seconds": 2}))
                .send()
                .await
        })
    };
    // Wait until the first invocation holds the worker.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health: Value = shim
            .client
            .get(format!("{}/health", shim.url))
            .send()
            .await
            .expect("health")
            .json()
            .await
            .expect("health json");
        if health["status"] == "busy" {
            break;
        }
        assert!(Instant::now() < deadline, "the worker never reported busy");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = shim.invoke(json!({"action": "echo"})).await;
    assert_eq!(second.status(), 429);
    assert_eq!(
        second.headers()["x-amzn-errortype"],
        "TooManyRequestsException"
    );
    let first = first.await.expect("join").expect("first invoke");
    assert_eq!(first.status(), 200);
    assert_eq!(body(first).await, json!("slept"));
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn malformed_requests_get_clear_errors_and_change_nothing() {
    let shim = Shim::python("app.handler", &[]).await;
    let post = |body: &'static str| shim.client.post(shim.invocations_url()).body(body).send();
    let resp = post("{not json").await.expect("invoke");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.headers()["x-amzn-errortype"],
        "InvalidRequestContentException"
    );
    let resp = shim
        .client
        .post(shim.invocations_url())
        .header("X-Amz-Client-Context", "%%%")
        .body("{}")
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 400);
    assert!(body(resp).await["message"]
        .as_str()
        .expect("message")
        .contains("X-Amz-Client-Context"));
    let resp = shim
        .client
        .post(shim.invocations_url())
        .header("X-Amzn-RequestId", "not a valid id!")
        .body("{}")
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 400);
    // DryRun validates without running the function.
    let resp = shim
        .client
        .post(shim.invocations_url())
        .header("X-Amz-Invocation-Type", "DryRun")
        .body("{}")
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 204);
    // An empty body is the empty event, as with the Invoke API.
    let resp = post("").await.expect("invoke");
    assert_eq!(body(resp).await["event"], json!({}));
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn unknown_runtime_and_missing_handler_are_reported_per_invocation() {
    let shim = Shim::start(&["--runtime", "cobol85"]).await;
    let resp = shim.invoke(json!({})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-amz-function-error"], "Unhandled");
    let v = body(resp).await;
    assert_eq!(v["errorType"], "Runtime.InvalidRuntime");
    assert!(v["errorMessage"]
        .as_str()
        .expect("message")
        .contains("cobol85"));
    assert_eq!(shim.wait_ready(READY).await["status"], "init_error");
    shim.stop().await.expect("clean stop");

    let shim = Shim::start(&["--runtime", "python3.11"]).await;
    let v = body(shim.invoke(json!({})).await).await;
    assert_eq!(v["errorType"], "Runtime.InvalidEntrypoint");
    assert!(v["errorMessage"]
        .as_str()
        .expect("message")
        .contains("no handler"));
    shim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn shutdown_ends_an_invocation_in_progress_promptly() {
    let shim = Shim::python("app.handler", &["--timeout", "60"]).await;
    shim.wait_ready(READY).await;
    let pending = {
        let client = shim.client.clone();
        let url = shim.invocations_url();
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"action": "sleep", "seconds": 50}))
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = shim.shutdown_token();
    let stopping = tokio::spawn(shim.stop());
    token.cancelled().await;
    // The shim is done long before the 50 s sleep would end.
    let stopped = tokio::time::timeout(Duration::from_secs(10), stopping).await;
    assert!(stopped.is_ok(), "shim did not stop within 10 s of shutdown");
    let resp = pending.await.expect("join").expect("response before close");
    assert_eq!(resp.headers()["x-amz-function-error"], "Unhandled");
    assert_eq!(body(resp).await["errorType"], "Runtime.ExitError");
}
