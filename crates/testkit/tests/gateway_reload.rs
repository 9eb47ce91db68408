//! Catalog reloads while the gateway runs: a function whose image (here:
//! task root) and environment change is served by new workers without a
//! restart, and every applied catalog is recorded in the gateway's durable
//! state (`GET /admin/v1/deployments`), across gateway restarts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use esb_testkit::process::ProcessBackend;
use esb_testkit::stack::{Stack, StackOptions};
use serde_json::{json, Value};

/// A task root whose handler answers with its version, its worker's pid and
/// the NOTE variable, after sleeping `event["sleep"]` seconds.
fn task_root(dir: &Path, version: &str) -> PathBuf {
    let root = dir.join(format!("task-{version}"));
    std::fs::create_dir_all(&root).expect("task root");
    std::fs::write(
        root.join("app.py"),
        format!(
            "import os, time\n\
             def handler(event, context):\n\
             \x20   time.sleep(float((event or {{}}).get('sleep', 0)))\n\
             \x20   return {{'version': '{version}', 'pid': os.getpid(), 'note': os.environ.get('NOTE')}}\n"
        ),
    )
    .expect("handler");
    root
}

fn catalog(image: &Path, note: &str) -> Value {
    json!({
        "version": 1,
        "functions": [{
            "name": "versioned",
            "image": image.to_string_lossy(),
            "runtime": "python3.11",
            "handler": "app.handler",
            "timeout_seconds": 30,
            "max_workers": 2,
            "environment": {"NOTE": note},
        }],
        "routes": [],
    })
}

async fn invoke(s: &Stack<ProcessBackend>, token: &str, event: Value) -> Value {
    let resp = s
        .client
        .post(s.http_url("/2015-03-31/functions/versioned/invocations"))
        .bearer_auth(token)
        .json(&event)
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_image_is_served_by_new_workers_without_a_restart() {
    let roots = std::env::temp_dir().join(format!("esb-reload-{}", std::process::id()));
    let (a, b) = (task_root(&roots, "a"), task_root(&roots, "b"));
    let s = Stack::start(
        catalog(&a, "first"),
        ProcessBackend::new(),
        StackOptions::default(),
    )
    .await;
    let token = s.login().await;

    // Two workers of version a: one busy with a long invocation, one idle.
    let first = invoke(&s, &token, json!({})).await;
    assert_eq!(
        (first["version"].as_str(), first["note"].as_str()),
        (Some("a"), Some("first"))
    );
    let slow = {
        let client = s.client.clone();
        let url = s.http_url("/2015-03-31/functions/versioned/invocations");
        let token = token.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"sleep": 8}))
                .send()
                .await
        })
    };
    s.eventually(
        Duration::from_secs(20),
        "the slow invocation to start",
        || async { s.pool(&token, "versioned").await["busy"] == 1 },
    )
    .await;
    let second = invoke(&s, &token, json!({})).await;
    assert_eq!(second["version"], "a");
    assert_ne!(second["pid"], first["pid"], "a second worker");
    assert_eq!(s.backend.running(), 2);

    // `esb build` rewrites the catalog: new image, new environment.
    s.write_catalog(&catalog(&b, "second"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let served = loop {
        let answer = invoke(&s, &token, json!({})).await;
        if answer["version"] == "b" {
            break answer;
        }
        assert_eq!(answer["version"], "a", "{answer}");
        assert!(
            std::time::Instant::now() < deadline,
            "version b never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(served["note"], "second", "the new environment too");
    // The idle worker of version a is gone; the busy one finishes its
    // invocation first.
    s.eventually(
        Duration::from_secs(20),
        "the idle old worker to go",
        || async { s.backend.running() == 2 },
    )
    .await;
    let slow = slow.await.expect("join").expect("slow invoke");
    assert_eq!(slow.status(), 200);
    let slow: Value = slow.json().await.expect("json");
    assert_eq!(
        slow["version"], "a",
        "an invocation in flight ends on its worker"
    );
    assert_eq!(slow["pid"], first["pid"]);
    s.eventually(
        Duration::from_secs(20),
        "the busy old worker to be retired",
        || async { s.backend.running() == 1 },
    )
    .await;
    let pool = s.pool(&token, "versioned").await;
    assert_eq!(
        (pool["total"].as_u64(), pool["idle"].as_u64()),
        (Some(1), Some(1))
    );
    for _ in 0..3 {
        let after = invoke(&s, &token, json!({})).await;
        assert_eq!(after["version"], "b");
        assert_eq!(after["pid"], served["pid"], "the new worker is reused");
    }
    s.stop().await;
    let _ = std::fs::remove_dir_all(&roots);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_catalogs_are_recorded_as_deployments_across_restarts() {
    let roots = std::env::temp_dir().join(format!("esb-deployments-{}", std::process::id()));
    let a = task_root(&roots, "a");
    let mut s = Stack::start(
        catalog(&a, "first"),
        ProcessBackend::new(),
        StackOptions::default(),
    )
    .await;
    let token = s.login().await;
    let deployments = |v: Value| v["deployments"].as_array().cloned().unwrap_or_default();

    let startup = deployments(s.admin(&token, "deployments").await);
    assert_eq!(startup.len(), 1, "{startup:?}");
    assert_eq!(startup[0]["reason"], "startup");
    assert_eq!(startup[0]["functions"], 1);
    assert_eq!(startup[0]["routes"], 0);
    let first_sha = startup[0]["catalog_sha256"]
        .as_str()
        .expect("sha")
        .to_owned();
    let file_sha = {
        use std::io::Read as _;
        let mut bytes = Vec::new();
        std::fs::File::open(&s.catalog)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .expect("catalog");
        sha256_hex(&bytes)
    };
    assert_eq!(first_sha, file_sha, "the sha256 of the catalog file");

    let mut with_route = catalog(&a, "first");
    with_route["routes"] = json!([{"method": "GET", "path": "/v", "function": "versioned",
                                   "payload": "rest_v1", "auth": "none"}]);
    s.write_catalog(&with_route);
    s.eventually(
        Duration::from_secs(20),
        "the reload to be recorded",
        || async { deployments(s.admin(&token, "deployments").await).len() == 2 },
    )
    .await;
    let listed = deployments(s.admin(&token, "deployments").await);
    assert_eq!(listed[0]["reason"], "reload", "newest first");
    assert_eq!(listed[0]["routes"], 1);
    assert_ne!(listed[0]["catalog_sha256"], first_sha.as_str());

    // The state is durable: a new gateway sees the history and adds its own.
    s.restart_gateway().await;
    let token = s.login().await;
    let listed = deployments(s.admin(&token, "deployments").await);
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["reason"], "startup");
    assert_ne!(listed[0]["gateway_id"], listed[1]["gateway_id"]);
    let limited = deployments(s.admin(&token, "deployments?limit=1").await);
    assert_eq!(limited.len(), 1);

    let resp = s
        .client
        .get(s.https_url("/admin/v1/deployments"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401, "the admin API needs a token");
    s.stop().await;
    let _ = std::fs::remove_dir_all(&roots);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = <sha2::Sha256 as sha2::Digest>::digest(bytes);
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
