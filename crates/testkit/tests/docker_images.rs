//! Function images on the real Docker engine: a python and a provided
//! function built from the fixtures on ESB's base images, run unprivileged
//! with a read-only root, and invoked through :8080.
//!
//! Needs a running Docker daemon and the base images (`images/build.sh`) and
//! the musl fixture bootstrap, all of which `./dev test` prepares.

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use esb_testkit::docker::{build_image, docker, Cleanup};
use esb_testkit::{fixture, workspace_root};
use serde_json::{json, Value};

/// Runs a function container the way the agent will: no capabilities,
/// read-only root with a writable /tmp, a memory limit, an unprivileged user.
fn run(cleanup: &mut Cleanup, image: &str, env: &[&str], cmd: &[&str]) -> (String, String) {
    let mut args = vec![
        "run",
        "-d",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--memory",
        "256m",
        "--pids-limit",
        "256",
        "--user",
        "993:993",
        "-p",
        "127.0.0.1::8080",
    ];
    for e in env {
        args.push("-e");
        args.push(e);
    }
    args.push(image);
    args.extend_from_slice(cmd);
    let id = docker(&args);
    cleanup.containers.push(id.clone());
    let port = docker(&["port", &id, "8080/tcp"]);
    let port = port
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .expect("published port")
        .to_owned();
    (id, format!("http://127.0.0.1:{port}"))
}

async fn wait_ready(client: &reqwest::Client, url: &str, container: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{url}/health")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        if Instant::now() > deadline {
            let logs = Command::new("docker")
                .args(["logs", container])
                .output()
                .ok();
            panic!(
                "function container not ready within 60 s: {}",
                logs.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn invoke(
    client: &reqwest::Client,
    url: &str,
    payload: Value,
    tail: bool,
) -> reqwest::Response {
    let mut req = client
        .post(format!("{url}/2015-03-31/functions/function/invocations"))
        .json(&payload);
    if tail {
        req = req.header("X-Amz-Log-Type", "Tail");
    }
    req.send().await.expect("invoke")
}

/// SIGTERM must end the shim by itself: exit code 0, not Docker's SIGKILL.
fn stop_gracefully(id: &str) {
    docker(&["stop", "-t", "20", id]);
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", id]);
    assert_eq!(code, "0", "the shim did not exit cleanly on SIGTERM");
}

#[tokio::test]
async fn python_function_image_runs_awslambdaric_behind_the_shim() {
    let mut cleanup = Cleanup::default();
    let src = fixture("functions/python");
    let image = build_image(
        &mut cleanup,
        "python-fn",
        "FROM esb-lambda-python:3.11\nCOPY app.py broken.py /var/task/\nCMD [\"app.handler\"]\n",
        &[
            (&src.join("app.py"), "app.py"),
            (&src.join("broken.py"), "broken.py"),
        ],
    );
    let (id, url) = run(
        &mut cleanup,
        &image,
        &[
            "AWS_LAMBDA_FUNCTION_NAME=py-fixture",
            "AWS_LAMBDA_FUNCTION_TIMEOUT=2",
        ],
        &[],
    );
    let client = reqwest::Client::new();
    wait_ready(&client, &url, &id).await;

    let resp = invoke(&client, &url, json!({"action": "echo", "k": "v"}), false).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["event"], json!({"action": "echo", "k": "v"}));
    assert_eq!(
        v["function_arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:py-fixture"
    );
    assert_eq!(v["handler"], "app.handler");
    assert_eq!(v["runtime_api"], "127.0.0.1:9001");

    let resp = invoke(
        &client,
        &url,
        json!({"action": "print", "lines": ["in a container"]}),
        true,
    )
    .await;
    let log = base64::engine::general_purpose::STANDARD
        .decode(resp.headers()["x-amz-log-result"].as_bytes())
        .expect("base64");
    assert!(String::from_utf8_lossy(&log)
        .lines()
        .any(|l| l == "in a container"));

    let resp = invoke(
        &client,
        &url,
        json!({"action": "raise", "message": "from docker"}),
        false,
    )
    .await;
    assert_eq!(resp.headers()["x-amz-function-error"], "Unhandled");
    assert_eq!(
        resp.json::<Value>().await.expect("json")["errorType"],
        "ValueError"
    );

    let resp = invoke(
        &client,
        &url,
        json!({"action": "sleep", "seconds": 10}),
        false,
    )
    .await;
    assert_eq!(
        resp.json::<Value>().await.expect("json")["errorType"],
        "Sandbox.Timedout"
    );
    let resp = invoke(&client, &url, json!({"action": "echo"}), false).await;
    assert!(resp.headers().get("x-amz-function-error").is_none());

    let logs = docker(&["logs", &id]);
    assert!(logs.contains("START RequestId: "), "{logs}");
    assert!(logs.contains("REPORT RequestId: "), "{logs}");
    assert!(logs.contains("Init Duration: "), "{logs}");
    stop_gracefully(&id);
}

#[tokio::test]
async fn python_image_ships_boto3_and_reports_import_errors() {
    let mut cleanup = Cleanup::default();
    let dir = std::env::temp_dir().join(format!("esb-boto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    cleanup.dirs.push(dir.clone());
    let handler = dir.join("boto.py");
    std::fs::write(
        &handler,
        "import boto3, botocore\n\ndef handler(event, context):\n    return {\"boto3\": boto3.__version__, \"botocore\": botocore.__version__}\n",
    )
    .expect("handler");
    let src = fixture("functions/python");
    let image = build_image(
        &mut cleanup,
        "python-boto",
        "FROM esb-lambda-python:3.11\nCOPY boto.py broken.py /var/task/\nCMD [\"boto.handler\"]\n",
        &[(&handler, "boto.py"), (&src.join("broken.py"), "broken.py")],
    );
    let client = reqwest::Client::new();
    let (id, url) = run(&mut cleanup, &image, &[], &[]);
    wait_ready(&client, &url, &id).await;
    let v: Value = invoke(&client, &url, json!({}), false)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        v["boto3"].as_str().is_some_and(|s| s.starts_with('1')),
        "{v}"
    );
    stop_gracefully(&id);

    // A command override picks another handler, as ImageConfig.Command does;
    // this one cannot be imported and says so on every invocation.
    let (id, url) = run(&mut cleanup, &image, &[], &["broken.handler"]);
    wait_ready(&client, &url, &id).await;
    for _ in 0..2 {
        let resp = invoke(&client, &url, json!({}), false).await;
        assert_eq!(resp.headers()["x-amz-function-error"], "Unhandled");
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["errorType"], "Runtime.ImportModuleError", "{v}");
    }
    stop_gracefully(&id);
}

#[tokio::test]
async fn provided_function_image_runs_a_lambda_runtime_bootstrap() {
    let mut cleanup = Cleanup::default();
    let bootstrap =
        workspace_root().join("target/x86_64-unknown-linux-musl/release/fixture-bootstrap");
    assert!(
        bootstrap.exists(),
        "{} is missing: build it with `cargo build --release --target x86_64-unknown-linux-musl -p esb-testkit --bin fixture-bootstrap` (./dev test does)",
        bootstrap.display()
    );
    let image = build_image(
        &mut cleanup,
        "provided-fn",
        "FROM esb-lambda-provided:al2023\nCOPY bootstrap /var/task/bootstrap\n",
        &[(&bootstrap, "bootstrap")],
    );
    let (id, url) = run(
        &mut cleanup,
        &image,
        &[
            "AWS_LAMBDA_FUNCTION_NAME=rust-fixture",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
        ],
        &[],
    );
    let client = reqwest::Client::new();
    wait_ready(&client, &url, &id).await;
    let resp = invoke(&client, &url, json!({"action": "echo", "n": 3}), false).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["event"]["n"], 3);
    assert_eq!(v["function_name"], "rust-fixture");
    assert_eq!(v["memory"], 256);
    let resp = invoke(&client, &url, json!({"action": "exit", "code": 4}), false).await;
    assert_eq!(
        resp.json::<Value>().await.expect("json")["errorType"],
        "Runtime.ExitError"
    );
    let resp = invoke(&client, &url, json!({"action": "echo"}), false).await;
    assert!(resp.headers().get("x-amz-function-error").is_none());
    stop_gracefully(&id);
}
