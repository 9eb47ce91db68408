//! Asynchronous invocations (`InvocationType="Event"`) and the read-only
//! function APIs of the gateway, driven by boto3 against an in-process
//! gateway (SQLite store) and agent whose workers are the real shim running
//! awslambdaric. The fixture function `marker.handler` appends its request
//! id to a file per run, so the tests count runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use esb_testkit::boto3::Boto3;
use esb_testkit::fixture;
use esb_testkit::process::ProcessBackend;
use esb_testkit::stack::{Stack, StackOptions, ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use serde_json::{json, Value};

/// A directory for the marker files, given to the function as `MARKER_DIR`.
fn marker_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "esb-async-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("marker dir");
    dir
}

fn function(name: &str, handler: &str, extra: Value) -> Value {
    let mut f = json!({
        "name": name,
        "image": fixture("functions/python").to_string_lossy(),
        "runtime": "python3.11",
        "handler": handler,
        "timeout_seconds": 30,
    });
    if let (Some(f), Some(extra)) = (f.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            f.insert(k.clone(), v.clone());
        }
    }
    f
}

fn marker_function(name: &str, dir: &Path) -> Value {
    function(
        name,
        "marker.handler",
        json!({"environment": {"MARKER_DIR": dir.to_string_lossy()}}),
    )
}

/// The request ids of the runs recorded in a marker file.
fn runs(dir: &Path, marker: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(marker))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// boto3 with the Lambda endpoint at the stack's HTTP port; `STATE_DB` is
/// the gateway's SQLite file.
async fn boto3(s: &Stack<ProcessBackend>, script: &str) -> Value {
    Boto3::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, "us-east-1")
        .endpoint("LAMBDA", &format!("http://127.0.0.1:{}", s.http.port()))
        .env(
            "STATE_DB",
            &s.dir().join("state/gateway.db").to_string_lossy(),
        )
        .run(script)
        .await
}

/// The invocation `request_id` as `GET /admin/v1/invocations` shows it.
async fn invocation(s: &Stack<ProcessBackend>, token: &str, request_id: &str) -> Value {
    let all = s.admin(token, "invocations?limit=100").await;
    all["invocations"]
        .as_array()
        .and_then(|list| list.iter().find(|i| i["request_id"] == request_id).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_invocations_are_accepted_run_and_retried_like_lambda() {
    let dir = marker_dir();
    let s = Stack::start(
        json!({"version": 1, "functions": [marker_function("marker", &dir)], "routes": []}),
        ProcessBackend::new(),
        StackOptions {
            async_retry_delays_seconds: "1,1".to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let out = boto3(
        &s,
        r#"
out["ok"] = event("marker", {"marker": "ok"})
out["failing"] = event("marker", {"marker": "failing", "fail_times": 100})
# Exactly Lambda's 256 KB is accepted, one byte more refused.
empty = len(json.dumps({"marker": "big", "blob": ""}))
out["limit"] = event("marker", {"marker": "big", "blob": "x" * (262144 - empty)})
out["too_large"] = client_error(lam.invoke, FunctionName="marker", InvocationType="Event",
                                Payload=json.dumps({"marker": "big", "blob": "x" * (262145 - empty)}))
out["not_json"] = client_error(lam.invoke, FunctionName="marker", InvocationType="Event",
                               Payload=b"{oops")
out["missing"] = client_error(lam.invoke, FunctionName="ghost", InvocationType="Event",
                              Payload=b"{}")
"#,
    )
    .await;

    let ok = &out["ok"];
    assert_eq!(ok["status"], 202, "{ok}");
    assert_eq!(ok["payload"], "", "no body");
    let ok_id = ok["request_id"].as_str().expect("request id").to_owned();
    assert_eq!(out["limit"]["status"], 202, "{}", out["limit"]);
    let too_large = &out["too_large"];
    // botocore models it as RequestTooLargeException: compare the code.
    assert_eq!(too_large["code"], "RequestEntityTooLargeException");
    assert_eq!(too_large["status"], 413);
    assert_eq!(
        too_large["message"],
        "262145 byte payload is too large for the Event invocation type (limit 262144 bytes)"
    );
    assert_eq!(out["not_json"]["class"], "InvalidRequestContentException");
    assert_eq!(out["missing"]["class"], "ResourceNotFoundException");

    // The accepted invocation runs, with the Invoke's request id.
    s.eventually(Duration::from_secs(30), "the event to run", || async {
        !runs(&dir, "ok").is_empty()
    })
    .await;
    s.eventually(Duration::from_secs(30), "the big event to run", || async {
        !runs(&dir, "big").is_empty()
    })
    .await;
    assert_eq!(runs(&dir, "ok"), [ok_id.as_str()]);

    // A failing function is attempted three times (two retries), then
    // recorded as failed.
    let failing_id = out["failing"]["request_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let token = s.login().await;
    s.eventually(
        Duration::from_secs(60),
        "the failing event to fail for good",
        || async {
            let failed = s.admin(&token, "invocations?status=failed").await;
            failed["invocations"]
                .as_array()
                .is_some_and(|l| l.iter().any(|i| i["request_id"] == failing_id))
        },
    )
    .await;
    let failed = invocation(&s, &token, &failing_id).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempts"], 3, "{failed}");
    assert_eq!(failed["function"], "marker");
    assert_eq!(failed["last_error"], "RuntimeError: failing run 3");
    assert_eq!(
        runs(&dir, "failing"),
        [failing_id.as_str(); 3],
        "every attempt keeps the request id"
    );
    let succeeded = invocation(&s, &token, &ok_id).await;
    assert_eq!(succeeded["status"], "succeeded");
    assert_eq!(succeeded["attempts"], 1);
    // No further attempt, no second run of the successful one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runs(&dir, "failing").len(), 3);
    assert_eq!(runs(&dir, "ok").len(), 1);
    let resp = s
        .client
        .get(s.https_url("/admin/v1/invocations?status=done"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("admin");
    assert_eq!(resp.status(), 400);

    s.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_invocations_survive_gateway_restarts() {
    let dir = marker_dir();
    let mut s = Stack::start(
        json!({"version": 1, "functions": [marker_function("marker", &dir)], "routes": []}),
        ProcessBackend::new(),
        StackOptions {
            async_retry_delays_seconds: "3".to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let token = s.login().await;

    // 1. Queued for its retry while the gateway restarts.
    let out = boto3(
        &s,
        r#"out["id"] = event("marker", {"marker": "retry", "fail_times": 1})["request_id"]"#,
    )
    .await;
    let retry_id = out["id"].as_str().expect("id").to_owned();
    s.eventually(Duration::from_secs(30), "the first attempt", || async {
        invocation(&s, &token, &retry_id).await["attempts"] == 1
    })
    .await;
    assert_eq!(invocation(&s, &token, &retry_id).await["status"], "queued");
    s.restart_gateway().await;
    let token = s.login().await;
    s.eventually(
        Duration::from_secs(30),
        "the retry after the restart",
        || async { invocation(&s, &token, &retry_id).await["status"] == "succeeded" },
    )
    .await;
    assert_eq!(invocation(&s, &token, &retry_id).await["attempts"], 2);
    assert_eq!(runs(&dir, "retry").len(), 2);

    // 2. Running when the gateway stops: it runs again after the restart.
    let out = boto3(
        &s,
        r#"out["id"] = event("marker", {"marker": "running", "sleep": 2})["request_id"]"#,
    )
    .await;
    let running_id = out["id"].as_str().expect("id").to_owned();
    s.eventually(Duration::from_secs(30), "the run to start", || async {
        !runs(&dir, "running").is_empty()
    })
    .await;
    assert_eq!(
        invocation(&s, &token, &running_id).await["status"],
        "running"
    );
    s.restart_gateway().await;
    let token = s.login().await;
    s.eventually(
        Duration::from_secs(30),
        "the interrupted invocation to run again",
        || async { invocation(&s, &token, &running_id).await["status"] == "succeeded" },
    )
    .await;
    assert!(
        runs(&dir, "running").len() >= 2,
        "ran again after the restart"
    );

    // 3. Claimed by a gateway that died (its claim would last another
    // hour): the next gateway runs it at startup.
    s.stop_gateway().await;
    let out = boto3(
        &s,
        r#"
import time, uuid
db = sqlite3.connect(os.environ["STATE_DB"])
now = int(time.time() * 1000)
request_id = str(uuid.uuid4())
db.execute(
    "INSERT INTO async_invocations (request_id, function_name, invoked_function_arn, payload, "
    "trace_id, status, attempts, enqueued_at_ms, due_at_ms, claimed_by, lease_until_ms) "
    "VALUES (?, 'marker', 'arn:aws:lambda:us-east-1:000000000000:function:marker', ?, "
    "'Root=1-5759e988-bd862e3fe1be46a994272793', 'running', 0, ?, ?, 'dead-gateway', ?)",
    (request_id, json.dumps({"marker": "orphan"}).encode(), now, now, now + 3600 * 1000))
db.commit()
out["id"] = request_id
"#,
    )
    .await;
    let orphan_id = out["id"].as_str().expect("id").to_owned();
    s.restart_gateway().await;
    let token = s.login().await;
    s.eventually(
        Duration::from_secs(30),
        "the dead gateway's invocation to run",
        || async { invocation(&s, &token, &orphan_id).await["status"] == "succeeded" },
    )
    .await;
    assert_eq!(runs(&dir, "orphan"), [orphan_id.as_str()]);

    s.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_lists_and_describes_functions() {
    let dir = marker_dir();
    let s = Stack::start(
        json!({"version": 1, "functions": [
            marker_function("marker", &dir),
            function("echo", "app.handler", json!({"memory_mb": 256, "timeout_seconds": 7})),
            {"name": "image-fn", "image": "registry.local/image-fn:1", "command": ["app.handler"]},
        ], "routes": []}),
        ProcessBackend::new(),
        StackOptions::default(),
    )
    .await;
    let out = boto3(
        &s,
        r#"
pages, marker = [], None
while True:
    kwargs = {"MaxItems": 1}
    if marker:
        kwargs["Marker"] = marker
    r = lam.list_functions(**kwargs)
    pages.append([f["FunctionName"] for f in r["Functions"]])
    marker = r.get("NextMarker")
    if not marker:
        break
out["pages"] = pages
out["all"] = [f["FunctionName"] for p in lam.get_paginator("list_functions").paginate()
              for f in p["Functions"]]
out["config"] = lam.get_function_configuration(FunctionName="echo")
out["function"] = lam.get_function(FunctionName="arn:aws:lambda:us-east-1:000000000000:function:echo")
out["image"] = lam.get_function(FunctionName="image-fn")
out["marker_env"] = lam.get_function_configuration(FunctionName="marker")["Environment"]
for r in (out["config"], out["function"], out["image"]):
    r.pop("ResponseMetadata", None)
out["missing"] = client_error(lam.get_function, FunctionName="ghost")
out["missing_config"] = client_error(lam.get_function_configuration, FunctionName="echo",
                                     Qualifier="prod")
"#,
    )
    .await;
    assert_eq!(
        out["pages"],
        json!([["echo"], ["image-fn"], ["marker"]]),
        "one function per page, in order, every one once"
    );
    assert_eq!(out["all"], json!(["echo", "image-fn", "marker"]));
    let config = &out["config"];
    for (key, value) in [
        ("FunctionName", json!("echo")),
        (
            "FunctionArn",
            json!("arn:aws:lambda:us-east-1:000000000000:function:echo"),
        ),
        ("Runtime", json!("python3.11")),
        ("Handler", json!("app.handler")),
        ("MemorySize", json!(256)),
        ("Timeout", json!(7)),
        ("PackageType", json!("Zip")),
        ("State", json!("Active")),
        ("LastUpdateStatus", json!("Successful")),
        ("Version", json!("$LATEST")),
        ("Architectures", json!(["x86_64"])),
    ] {
        assert_eq!(config[key], value, "{key} in {config}");
    }
    assert!(
        config["LastModified"]
            .as_str()
            .is_some_and(|t| t.ends_with("+0000")),
        "{config}"
    );
    assert_eq!(out["function"]["Configuration"]["FunctionName"], "echo");
    assert_eq!(out["function"]["Code"]["RepositoryType"], "S3");
    let image = &out["image"];
    assert_eq!(image["Configuration"]["PackageType"], "Image");
    assert_eq!(image["Configuration"]["Runtime"], Value::Null);
    assert_eq!(
        image["Code"],
        json!({"RepositoryType": "ECR", "ImageUri": "registry.local/image-fn:1",
               "ResolvedImageUri": "registry.local/image-fn:1"})
    );
    assert_eq!(
        out["marker_env"],
        json!({"Variables": {"MARKER_DIR": dir.to_string_lossy()}})
    );
    assert_eq!(out["missing"]["class"], "ResourceNotFoundException");
    assert_eq!(out["missing"]["status"], 404);
    assert_eq!(
        out["missing"]["message"],
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:ghost"
    );
    assert_eq!(out["missing_config"]["class"], "ResourceNotFoundException");

    // Unauthenticated: refused like the Invoke API.
    let resp = s
        .client
        .get(s.https_url("/2015-03-31/functions/"))
        .send()
        .await
        .expect("list");
    assert_eq!(resp.status(), 403);
    s.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
