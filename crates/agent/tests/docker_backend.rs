//! The Docker backend against the real daemon: a python function image built
//! here on `esb-lambda-python:3.11` (built by `images/build.sh`), workers
//! addressed over loopback (the only addresses these tests contact are on
//! 127.0.0.1). Each test uses its own node and stack labels, and a guard
//! force-removes whatever carries them, whatever happens.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use esb_agent::backend::docker::{AddressMode, DockerBackend, DockerConfig};
use esb_agent::proto::{worker_event, CreateWorker, ErrorCode, WorkerState};
use esb_agent::{Backend, BackendError};
use serde_json::{json, Value};

const BASE_IMAGE: &str = "esb-lambda-python:3.11";
const TEST_IMAGE: &str = "esb-agent-test-python:latest";

const HANDLER: &str = r#"import os


def handler(event, context):
    if event.get("action") == "alloc":
        blob = b"x" * (int(event["mb"]) * 1024 * 1024)
        return {"allocated": len(blob)}
    return {"echo": event, "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME")}
"#;

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The function image, built once per test run (layer-cached by Docker).
fn test_image() -> &'static str {
    static IMAGE: OnceLock<()> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("esb-agent-test-image-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("context dir");
        std::fs::write(
            dir.join("Dockerfile"),
            format!("FROM {BASE_IMAGE}\nCOPY app.py /var/task/\nCMD [\"app.handler\"]\n"),
        )
        .expect("Dockerfile");
        std::fs::write(dir.join("app.py"), HANDLER).expect("app.py");
        docker(&[
            "build",
            "-q",
            "-t",
            TEST_IMAGE,
            dir.to_str().expect("utf-8 path"),
        ]);
        let _ = std::fs::remove_dir_all(&dir);
    });
    TEST_IMAGE
}

/// A test's node and stack labels; dropping it removes every container
/// that carries them.
struct Scope {
    node: String,
    stack: String,
}

impl Scope {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let unique = format!("{}-{name}-{nanos}", std::process::id());
        Self {
            node: format!("agent-test-node-{unique}"),
            stack: format!("agent-test-{unique}"),
        }
    }

    fn config(&self) -> DockerConfig {
        let mut c = DockerConfig::new(self.node.clone(), self.stack.clone());
        c.address_mode = AddressMode::Loopback;
        c.start_timeout = Duration::from_secs(30);
        c
    }

    async fn backend(&self) -> DockerBackend {
        DockerBackend::connect(self.config())
            .await
            .expect("docker backend")
    }

    /// Container ids carrying this scope's stack label, in any state.
    fn containers(&self) -> Vec<String> {
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=esb.stack={}", self.stack),
        ])
        .lines()
        .map(str::to_owned)
        .collect()
    }

    fn spec(&self, worker_id: &str) -> CreateWorker {
        CreateWorker {
            worker_id: worker_id.to_owned(),
            function: "echo-fn".into(),
            image: test_image().to_owned(),
            memory_mb: 128,
            timeout_seconds: 10,
            env: HashMap::from([("GREETING".to_owned(), "hi".to_owned())]),
            command: Vec::new(),
            owner: "gw-test".into(),
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        for filter in [
            format!("label=esb.node={}", self.node),
            format!("label=esb.stack={}", self.stack),
        ] {
            let ids = Command::new("docker")
                .args(["ps", "-aq", "--filter", &filter])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for id in ids.lines().filter(|l| !l.is_empty()) {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
}

/// POSTs an invocation to a worker's RIE-compatible endpoint; tests only
/// contact loopback here.
async fn invoke(address: &str, payload: Value) -> (u16, Value) {
    let addr: SocketAddr = address.parse().expect("worker address");
    assert!(
        addr.ip().is_loopback(),
        "tests only contact loopback, got {addr}"
    );
    common::invoke(addr, payload).await
}

#[tokio::test]
async fn create_invoke_destroy_leaves_nothing_behind() {
    let scope = Scope::new("lifecycle");
    let backend = scope.backend().await;

    let worker = backend.create(scope.spec("w-life")).await.expect("create");
    assert_eq!(worker.state(), WorkerState::Ready);
    assert_eq!(worker.worker_id, "w-life");
    assert_eq!(worker.function, "echo-fn");
    assert_eq!(worker.owner, "gw-test");
    assert_eq!(worker.memory_mb, 128);
    assert!(
        worker.address.starts_with("127.0.0.1:"),
        "{}",
        worker.address
    );

    let (status, body) = invoke(&worker.address, json!({"hello": "world"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["echo"], json!({"hello": "world"}));
    assert_eq!(body["function"], "echo-fn");

    // The container runs the way DESIGN.md §4 says workers run.
    let host: Value = serde_json::from_str(&docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig}}",
        &worker.backend_id,
    ]))
    .expect("host config");
    assert_eq!(host["Memory"], 128 * 1024 * 1024);
    assert_eq!(host["MemorySwap"], 128 * 1024 * 1024);
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(host["Init"], true);
    assert_eq!(host["PidsLimit"], 256);
    assert_eq!(host["CapDrop"], json!(["ALL"]));
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges"]));
    assert!(host["NanoCpus"].as_i64().unwrap_or(0) > 0);
    assert!(host["Tmpfs"]["/tmp"].is_string(), "{host}");
    let config: Value = serde_json::from_str(&docker(&[
        "inspect",
        "-f",
        "{{json .Config}}",
        &worker.backend_id,
    ]))
    .expect("config");
    assert_eq!(config["User"], "993:993");
    assert_eq!(config["Labels"]["esb.worker"], "w-life");
    assert_eq!(config["Labels"]["esb.node"], scope.node.as_str());
    assert_eq!(config["Labels"]["esb.function"], "echo-fn");
    assert_eq!(config["Labels"]["esb.owner"], "gw-test");
    assert_eq!(config["Labels"]["esb.memory"], "128");

    let listed = backend.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].worker_id, "w-life");
    assert_eq!(listed[0].state(), WorkerState::Ready);
    assert_eq!(listed[0].address, worker.address);

    backend.destroy("w-life").await.expect("destroy");
    assert!(backend.list().await.expect("list").is_empty());
    assert!(scope.containers().is_empty(), "containers left behind");
    let again = backend.destroy("w-life").await;
    assert!(
        matches!(again, Err(BackendError::NotFound { .. })),
        "{again:?}"
    );
    backend.close().await;
}

#[tokio::test]
async fn memory_limit_is_enforced_and_the_oom_kill_reported() {
    let scope = Scope::new("oom");
    let backend = scope.backend().await;
    let mut events = backend.events();
    let worker = backend.create(scope.spec("w-oom")).await.expect("create");

    // 400 MB in a 128 MB worker: the kernel kills the runtime.
    let (status, body) = invoke(&worker.address, json!({"action": "alloc", "mb": 400})).await;
    assert!(
        body.get("allocated").is_none(),
        "allocation succeeded: {status} {body}"
    );

    let kind = common::next_event_of(&mut events, "w-oom").await;
    eprintln!("worker event after the allocation: {kind:?}");
    assert!(
        matches!(
            kind,
            Some(worker_event::Kind::OomKilled(_) | worker_event::Kind::Exited(_))
        ),
        "{kind:?}"
    );
    if matches!(kind, Some(worker_event::Kind::OomKilled(_))) {
        // The shim restarts the runtime; the worker lives on and counts it.
        let metrics = backend.metrics("w-oom").await.expect("metrics");
        assert!(metrics.oom_kills >= 1, "{metrics:?}");
        assert_eq!(metrics.memory_limit_bytes, 128 * 1024 * 1024);
    }
    let _ = backend.destroy("w-oom").await;
    assert!(scope.containers().is_empty());
    backend.close().await;
}

#[tokio::test]
async fn pause_resume_and_metrics() {
    let scope = Scope::new("pause");
    let backend = scope.backend().await;
    let worker = backend.create(scope.spec("w-pause")).await.expect("create");

    let metrics = backend.metrics("w-pause").await.expect("metrics");
    assert_eq!(metrics.worker_id, "w-pause");
    assert!(metrics.memory_bytes > 0, "{metrics:?}");
    assert_eq!(metrics.memory_limit_bytes, 128 * 1024 * 1024);
    assert!(metrics.cpu_seconds > 0.0, "{metrics:?}");

    backend.pause("w-pause").await.expect("pause");
    let listed = backend.list().await.expect("list");
    assert_eq!(listed[0].state(), WorkerState::Paused);
    let twice = backend.pause("w-pause").await;
    assert!(
        matches!(twice, Err(BackendError::InvalidState { .. })),
        "{twice:?}"
    );

    backend.resume("w-pause").await.expect("resume");
    assert_eq!(
        backend.list().await.expect("list")[0].state(),
        WorkerState::Ready
    );
    let (status, body) = invoke(&worker.address, json!({"after": "resume"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["echo"]["after"], "resume");

    let missing = backend.pause("w-nobody").await;
    assert!(
        matches!(missing, Err(BackendError::NotFound { .. })),
        "{missing:?}"
    );
    backend.destroy("w-pause").await.expect("destroy");
    assert!(scope.containers().is_empty());
    backend.close().await;
}

#[tokio::test]
async fn a_restarted_backend_adopts_running_workers_and_reaps_dead_ones() {
    let scope = Scope::new("adopt");
    let first = scope.backend().await;
    let a = first.create(scope.spec("w-a")).await.expect("create a");
    let b = first.create(scope.spec("w-b")).await.expect("create b");
    // The agent goes away without touching its workers...
    first.close().await;
    drop(first);
    // ...and one worker dies while no agent watches.
    docker(&["kill", &b.backend_id]);
    docker(&["wait", &b.backend_id]);

    // The new backend removes the dead worker as it starts...
    let second = scope.backend().await;
    assert_eq!(scope.containers(), vec![a.backend_id[..12].to_owned()]);
    // ...and adopts the live one.
    let adopted = second.adopt().await.expect("adopt");
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(adopted[0].worker_id, "w-a");
    assert_eq!(adopted[0].state(), WorkerState::Ready);
    assert_eq!(adopted[0].address, a.address);
    assert_eq!(adopted[0].backend_id, a.backend_id);
    assert_eq!(scope.containers(), vec![a.backend_id[..12].to_owned()]);

    let (status, _) = invoke(&adopted[0].address, json!({})).await;
    assert_eq!(status, 200);
    second.destroy("w-a").await.expect("destroy");
    assert!(scope.containers().is_empty());
    second.close().await;
}

#[tokio::test]
async fn boxes_sharing_a_node_id_leave_each_other_alone() {
    // Two boxes on one daemon whose agents have the same node id.
    let ours = Scope::new("shared-ours");
    let mut theirs = Scope::new("shared-theirs");
    theirs.node = ours.node.clone();
    let first = ours.backend().await;
    let live = first
        .create(ours.spec("w-live"))
        .await
        .expect("create live");
    let dead = first
        .create(ours.spec("w-dead"))
        .await
        .expect("create dead");
    // Our agent goes away (it would remove its own dead worker) and a worker
    // dies meanwhile.
    first.close().await;
    drop(first);
    docker(&["kill", &dead.backend_id]);
    docker(&["wait", &dead.backend_id]);

    // The other box's agent starts: it neither reaps our dead worker nor
    // offers our live one for adoption (its gateway would destroy it).
    let other = theirs.backend().await;
    assert!(other.adopt().await.expect("adopt").is_empty());
    let mut left = ours.containers();
    left.sort();
    let mut expected = vec![
        live.backend_id[..12].to_owned(),
        dead.backend_id[..12].to_owned(),
    ];
    expected.sort();
    assert_eq!(left, expected);
    other.close().await;

    let (status, _) = invoke(&live.address, json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn missing_image_is_image_not_found_and_leaves_nothing() {
    let scope = Scope::new("noimage");
    let backend = scope.backend().await;
    let mut spec = scope.spec("w-missing");
    spec.image = "esb-agent-test-no-such-image:nope".into();
    let err = backend.create(spec).await.expect_err("no such image");
    assert!(matches!(err, BackendError::ImageNotFound { .. }), "{err:?}");
    let wire = err.to_wire();
    assert_eq!(wire.code(), ErrorCode::ImageNotFound);
    assert!(
        wire.message.contains("esb-agent-test-no-such-image:nope"),
        "{}",
        wire.message
    );
    assert!(backend.list().await.expect("list").is_empty());
    assert!(scope.containers().is_empty());
    backend.close().await;
}

#[tokio::test]
async fn a_worker_that_exits_at_start_fails_with_its_logs_and_is_removed() {
    let scope = Scope::new("startfail");
    let backend = scope.backend().await;
    let mut spec = scope.spec("w-broken");
    // The shim refuses this configuration and exits.
    spec.env
        .insert("ESB_INVOKE_ADDR".into(), "not-an-address".into());
    let err = backend.create(spec).await.expect_err("start failure");
    common::assert_exited_at_start(&err);
    assert!(
        scope.containers().is_empty(),
        "a failed worker was left behind"
    );
    backend.close().await;
}

#[tokio::test]
async fn network_addresses_need_an_agent_inside_the_box_network() {
    // This test process runs on the host, not in a container attached to
    // the network: network mode must refuse rather than probe container IPs.
    let scope = Scope::new("netmode");
    let mut config = scope.config();
    config.address_mode = AddressMode::Network;
    let err = DockerBackend::connect(config).await.err().expect("refused");
    assert!(matches!(err, BackendError::NotAttached { .. }), "{err:?}");
}
