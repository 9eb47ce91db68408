//! The containerd backend against a real containerd, the way the box runs
//! it: containerd in a runtime node container (`esb-runtime-node`, or when
//! that image is not built, `esb-os-base` with this machine's containerd,
//! runc and CNI plugins mounted in), and the backend inside the node's
//! network and PID namespaces, where the CNI bridge gives a route to the
//! workers and task PIDs are valid.
//!
//! `containerd_backend_in_a_runtime_node` (on the host) builds a python
//! function image, pushes it to an `esb-registry` serving TLS with a CA made
//! here, starts the node, and runs this same test binary inside the node's
//! namespaces with `--ignored inside_`: the `inside_*` tests below, which
//! pull from `registry:5010` trusting that CA and contact workers on their
//! 10.88.x.y addresses. Outside the node they are ignored. Everything the
//! run made (containers, volumes, network, image tags) is removed by a
//! guard.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use esb_agent::backend::containerd::{ContainerdBackend, ContainerdConfig};
use esb_agent::proto::{worker_event, CreateWorker, ErrorCode, WorkerState};
use esb_agent::{Backend, BackendError};
use serde_json::{json, Value};
use tokio::time::Instant;

const BASE_IMAGE: &str = "esb-lambda-python:3.11";
const FUNCTION_IMAGE: &str = "esb-agent-ctd-test-python";
const NODE_IMAGE: &str = "esb-runtime-node:latest";
const FALLBACK_NODE_IMAGE: &str = "esb-os-base:latest";
/// Inside the node: where the harness mounts things.
const INSIDE_ENV: &str = "ESB_CONTAINERD_TEST_INSIDE";
const CA_PATH: &str = "/esb-test/ca.pem";
const CONFLIST_PATH: &str = "/esb-test/esb.conflist";
const STATE_DIR: &str = "/var/lib/esb-node";
const LEASES_DIR: &str = "/var/lib/cni/networks/esb";
/// The function image as the inside tests pull it.
const IMAGE_REF: &str = "registry:5010/esb-agent-ctd-test-python:latest";

const HANDLER: &str = r#"import os


def handler(event, context):
    if event.get("action") == "alloc":
        blob = b"x" * (int(event["mb"]) * 1024 * 1024)
        return {"allocated": len(blob)}
    if event.get("action") == "syscalls":
        import ctypes
        import threading
        libc = ctypes.CDLL(None, use_errno=True)
        unshared = libc.unshare(0x10000000)  # CLONE_NEWUSER
        errno = ctypes.get_errno()
        ran = []
        t = threading.Thread(target=lambda: ran.append(True))
        t.start()
        t.join()
        return {"unshare": unshared, "errno": errno, "thread_ran": ran == [True]}
    if event.get("action") == "orphan":
        import time
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(0)
            os.write(write_end, str(grandchild).encode())
            os._exit(0)  # the grandchild is orphaned: PID 1 must reap it
        os.waitpid(child, 0)
        grandchild = int(os.read(read_end, 32))
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{grandchild}") and time.monotonic() < deadline:
            time.sleep(0.02)
        zombies = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        zombies.append(int(pid))
            except OSError:
                pass
        with open("/proc/1/cmdline", "rb") as f:
            pid1 = f.read().split(b"\0")[0].decode()
        return {"zombies": zombies, "pid1": pid1}
    return {"echo": event, "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
            "uid": os.getuid(), "greeting": os.environ.get("GREETING")}
"#;

/// The workers' network, as the agent image carries it.
const CONFLIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "esb",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "esb0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.88.0.0/16", "gateway": "10.88.0.1" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "/var/lib/cni/networks"
      }
    }
  ]
}
"#;

/// The fallback node's entrypoint: writable cgroup controllers,
/// forwarding, containerd without its CRI plugin.
const FALLBACK_NODE_SCRIPT: &str = r#"set -eu
awk '$3 == "cgroup" { print $2 }' /proc/self/mounts | while read -r mnt; do
  mount --bind "$mnt" "$mnt" && mount -o remount,bind,rw "$mnt"
done
echo 1 >/proc/sys/net/ipv4/ip_forward
mkdir -p /etc/containerd
printf 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n' >/etc/containerd/config.toml
exec containerd --config /etc/containerd/config.toml
"#;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn docker(args: &[&str]) -> String {
    run("docker", args)
}

fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Everything the host side made; dropping it removes all of it.
struct Harness {
    name: String,
    dir: PathBuf,
    containers: Vec<String>,
    volumes: Vec<String>,
    network: Option<String>,
    tags: Vec<String>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("docker").args(args).output();
        };
        for c in self.containers.iter().rev() {
            quiet(&["rm", "-f", "-v", c]);
        }
        for v in &self.volumes {
            quiet(&["volume", "rm", "-f", v]);
        }
        if let Some(n) = &self.network {
            quiet(&["network", "rm", n]);
        }
        for t in &self.tags {
            quiet(&["image", "rm", t]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Harness {
    fn new() -> Self {
        let name = format!("esb-ctd-test-{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("harness dir");
        Self {
            name,
            dir,
            containers: Vec::new(),
            volumes: Vec::new(),
            network: None,
            tags: Vec::new(),
        }
    }

    fn volume(&mut self, what: &str) -> String {
        let name = format!("{}-{what}", self.name);
        docker(&["volume", "create", &name]);
        self.volumes.push(name.clone());
        name
    }

    /// The function image, built on the python base.
    fn build_function_image(&mut self) -> String {
        let ctx = self.dir.join("function");
        std::fs::create_dir_all(&ctx).expect("context");
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM {BASE_IMAGE}\nCOPY app.py /var/task/\nCMD [\"app.handler\"]\n"),
        )
        .expect("Dockerfile");
        std::fs::write(ctx.join("app.py"), HANDLER).expect("app.py");
        let tag = format!("{FUNCTION_IMAGE}:{}", self.name);
        docker(&["build", "-q", "-t", &tag, ctx.to_str().expect("utf-8")]);
        self.tags.push(tag.clone());
        tag
    }

    /// A registry serving TLS for `registry` with a CA made here, on the
    /// test network and on a loopback port (for `docker push`).
    fn start_registry(&mut self, network: &str) -> u16 {
        let pki = esb_contracts::pki::Pki::new("esb test CA").expect("CA");
        let server = pki
            .server(&["registry", "localhost", "127.0.0.1"])
            .expect("server cert");
        let certs = self.dir.join("certs");
        std::fs::create_dir_all(&certs).expect("certs dir");
        std::fs::write(certs.join("ca.pem"), pki.ca_pem()).expect("ca");
        std::fs::write(certs.join("server.pem"), &server.cert_pem).expect("cert");
        std::fs::write(certs.join("server.key"), &server.key_pem).expect("key");
        std::fs::write(certs.join("esb.conflist"), CONFLIST).expect("conflist");
        let name = format!("{}-registry", self.name);
        let mount = format!("{}:/esb-test:ro", certs.display());
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            network,
            "--network-alias",
            "registry",
            "-p",
            "127.0.0.1::5010",
            "-v",
            &mount,
            "-e",
            "REGISTRY_HTTP_TLS_CERTIFICATE=/esb-test/server.pem",
            "-e",
            "REGISTRY_HTTP_TLS_KEY=/esb-test/server.key",
            "esb-registry:latest",
        ]);
        self.containers.push(name.clone());
        let port = docker(&["port", &name, "5010/tcp"]);
        let port: u16 = port
            .lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("registry port from {port:?}"));
        port
    }

    /// Starts the node; returns its container name.
    fn start_node(&mut self, network: &str, volumes: &NodeVolumes) -> String {
        let name = format!("{}-node", self.name);
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            network,
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "systempaths=unconfined",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(volumes.args());
        if image_exists(NODE_IMAGE) {
            args.push(NODE_IMAGE.into());
        } else {
            eprintln!("{NODE_IMAGE} is not built: using {FALLBACK_NODE_IMAGE} with this machine's containerd");
            for bin in [
                "/usr/bin/containerd",
                "/usr/bin/containerd-shim-runc-v2",
                "/usr/bin/ctr",
                "/usr/sbin/runc",
                "/usr/bin/tini-static",
            ] {
                args.extend(["-v".to_owned(), format!("{bin}:{bin}:ro")]);
            }
            args.extend([
                "--entrypoint".to_owned(),
                "sh".to_owned(),
                FALLBACK_NODE_IMAGE.to_owned(),
                "-c".to_owned(),
                FALLBACK_NODE_SCRIPT.to_owned(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args);
        self.containers.push(name.clone());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new("docker")
                .args(["exec", &name, "ctr", "version"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ready {
                return name;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "containerd did not answer in the node: {}",
                docker(&["logs", "--tail", "40", &name])
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The node's named volumes, mounted at the same paths in the node and the
/// test runner (as in compose).
struct NodeVolumes {
    containerd_data: String,
    containerd_run: String,
    node_state: String,
    cni_state: String,
}

impl NodeVolumes {
    fn args(&self) -> Vec<String> {
        [
            (&self.containerd_data, "/var/lib/containerd"),
            (&self.containerd_run, "/run/containerd"),
            (&self.node_state, STATE_DIR),
            (&self.cni_state, "/var/lib/cni"),
        ]
        .iter()
        .flat_map(|(v, p)| ["-v".to_owned(), format!("{v}:{p}")])
        .collect()
    }
}

#[test]
fn containerd_backend_in_a_runtime_node() {
    if std::env::var_os(INSIDE_ENV).is_some() {
        return; // This is the driver; inside, only the inside_ tests run.
    }
    let mut h = Harness::new();
    let network = h.name.clone();
    docker(&["network", "create", &network]);
    h.network = Some(network.clone());

    let image = h.build_function_image();
    let port = h.start_registry(&network);
    let pushed = format!("127.0.0.1:{port}/{FUNCTION_IMAGE}:latest");
    docker(&["tag", &image, &pushed]);
    h.tags.push(pushed.clone());
    // The push is retried until the registry serves (a few seconds at most).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pushed_ok = Command::new("docker")
            .args(["push", "-q", &pushed])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if pushed_ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cannot push to the test registry: {}",
            docker(&["logs", "--tail", "20", &format!("{}-registry", h.name)])
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let volumes = NodeVolumes {
        containerd_data: h.volume("containerd-data"),
        containerd_run: h.volume("containerd-run"),
        node_state: h.volume("node-state"),
        cni_state: h.volume("cni-state"),
    };
    let node = h.start_node(&network, &volumes);

    // This test binary, run inside the node's network and PID namespaces.
    let exe = std::env::current_exe().expect("test binary");
    let certs = h.dir.join("certs");
    let runner_image = if image_exists(NODE_IMAGE) {
        NODE_IMAGE
    } else {
        FALLBACK_NODE_IMAGE
    };
    let mut args: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--name".into(),
        format!("{}-runner", h.name),
        "--network".into(),
        format!("container:{node}"),
        "--pid".into(),
        format!("container:{node}"),
        // What the agent needs for CNI (and no more): netlink in the node's
        // namespace, setns into a worker's, /proc/<pid>/ns of another
        // user's process (without SYS_PTRACE CNI ADD fails).
        "--cap-add".into(),
        "NET_ADMIN".into(),
        "--cap-add".into(),
        "SYS_ADMIN".into(),
        "--cap-add".into(),
        "SYS_PTRACE".into(),
        "-v".into(),
        format!("{}:/esb-test-bin:ro", exe.display()),
        "-v".into(),
        format!("{}:/esb-test:ro", certs.display()),
        "-e".into(),
        format!("{INSIDE_ENV}=1"),
        "-e".into(),
        "RUST_BACKTRACE=0".into(),
        "--entrypoint".into(),
        "/esb-test-bin".into(),
    ];
    args.extend(volumes.args());
    if runner_image == FALLBACK_NODE_IMAGE {
        args.extend(["-v".into(), "/usr/lib/cni:/opt/cni/bin:ro".into()]);
        args.extend(["-v".into(), "/usr/bin/ctr:/usr/bin/ctr:ro".into()]);
    }
    args.push(runner_image.into());
    // ESB_CONTAINERD_TEST_FILTER narrows the inside tests (development).
    let filter = std::env::var("ESB_CONTAINERD_TEST_FILTER").unwrap_or_else(|_| "inside_".into());
    args.extend(["--ignored", "--test-threads", "3", &filter].map(str::to_owned));
    let status = Command::new("docker")
        .args(&args)
        .status()
        .expect("run the inside tests");
    h.containers.push(format!("{}-runner", h.name));
    assert!(status.success(), "the tests inside the node failed");
}

// ----- inside the node ------------------------------------------------------

/// A test's own node and stack labels, for isolation from the others.
struct Scope {
    node: String,
    stack: String,
}

impl Scope {
    fn new(name: &str) -> Self {
        assert!(
            std::env::var_os(INSIDE_ENV).is_some(),
            "inside_ tests run inside the node (see containerd_backend_in_a_runtime_node)"
        );
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("esb_agent=debug,warn"))
            .with_test_writer()
            .try_init();
        Self {
            node: format!("ctd-test-{name}"),
            stack: format!("ctd-{name}"),
        }
    }

    fn config(&self) -> ContainerdConfig {
        let mut c = ContainerdConfig::new(self.node.clone(), self.stack.clone());
        c.cni_conf_file = CONFLIST_PATH.into();
        c.registry_ca = Some(std::fs::read(CA_PATH).expect("the test CA"));
        c.start_timeout = Duration::from_secs(60);
        c
    }

    async fn backend(&self) -> ContainerdBackend {
        ContainerdBackend::connect(self.config())
            .await
            .expect("containerd backend")
    }

    fn spec(&self, worker_id: &str) -> CreateWorker {
        CreateWorker {
            worker_id: worker_id.to_owned(),
            function: "echo-fn".into(),
            image: IMAGE_REF.to_owned(),
            memory_mb: 128,
            timeout_seconds: 10,
            env: HashMap::from([("GREETING".to_owned(), "hi".to_owned())]),
            command: Vec::new(),
            owner: "gw-test".into(),
        }
    }

    /// containerd containers of this scope (by id prefix).
    fn containers(&self) -> Vec<String> {
        let prefix = format!("esb-{}-", self.stack);
        ctr(&["containers", "ls", "-q"])
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(str::to_owned)
            .collect()
    }

    /// Snapshots of this scope's containers (their keys are the ids).
    fn snapshots(&self) -> Vec<String> {
        let prefix = format!("esb-{}-", self.stack);
        ctr(&["snapshots", "ls"])
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|k| k.starts_with(&prefix))
            .map(str::to_owned)
            .collect()
    }

    /// host-local leases held by this scope's containers.
    fn leases(&self) -> Vec<String> {
        let prefix = format!("esb-{}-", self.stack);
        let Ok(entries) = std::fs::read_dir(LEASES_DIR) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path()).is_ok_and(|text| text.starts_with(&prefix))
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// What is left of this scope: containers, snapshots, leases, files.
    fn leftovers(&self) -> Vec<String> {
        let prefix = format!("esb-{}-", self.stack);
        let files = std::fs::read_dir(Path::new(STATE_DIR).join("workers"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        [
            ("container", self.containers()),
            ("snapshot", self.snapshots()),
            ("lease", self.leases()),
            ("worker files", files),
        ]
        .into_iter()
        .flat_map(|(kind, names)| names.into_iter().map(move |n| format!("{kind} {n}")))
        .collect()
    }

    /// Nothing of this scope is left, right now (after a removal the
    /// backend finished before answering).
    fn assert_nothing_left(&self) {
        let left = self.leftovers();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    /// Nothing of this scope is left within 20 s (after a removal the
    /// backend does on its own, e.g. of an exited worker: its parts go one
    /// after the other, after the exit event).
    async fn wait_until_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.leftovers().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.assert_nothing_left();
    }
}

fn ctr(args: &[&str]) -> String {
    let mut all = vec!["-n", "esb"];
    all.extend_from_slice(args);
    run("ctr", &all)
}

/// POSTs an invocation to a worker's RIE-compatible endpoint (inside the
/// node, where the bridge gives a route to it).
async fn invoke(address: &str, payload: Value) -> (u16, Value) {
    let addr: SocketAddr = address.parse().expect("worker address");
    assert!(
        addr.to_string().starts_with("10.88."),
        "a worker address on the CNI bridge, got {addr}"
    );
    common::invoke(addr, payload).await
}

/// The task's PID as containerd reports it.
fn task_pid(container_id: &str) -> u32 {
    ctr(&["tasks", "ls"])
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&container_id)).then(|| f.get(1)?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no task {container_id}"))
}

#[tokio::test]
#[ignore = "runs inside the runtime node, driven by containerd_backend_in_a_runtime_node"]
async fn inside_pull_create_invoke_destroy_leaves_nothing_behind() {
    let scope = Scope::new("life");
    let backend = scope.backend().await;
    for round in 0..3 {
        let worker = backend.create(scope.spec("w-life")).await.expect("create");
        assert_eq!(worker.state(), WorkerState::Ready);
        assert_eq!(worker.worker_id, "w-life");
        assert_eq!(worker.function, "echo-fn");
        assert_eq!(worker.owner, "gw-test");
        assert_eq!(worker.memory_mb, 128);
        assert_eq!(worker.image, IMAGE_REF);
        assert!(worker.address.ends_with(":8080"), "{}", worker.address);

        let (status, body) = invoke(&worker.address, json!({"hello": "world"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["echo"], json!({"hello": "world"}));
        assert_eq!(body["function"], "echo-fn");
        assert_eq!(body["greeting"], "hi");
        assert_eq!(body["uid"], 993);

        if round == 0 {
            // The worker runs the way DESIGN.md §4 says workers run.
            let pid = task_pid(&worker.backend_id);
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
            let caps = status
                .lines()
                .find(|l| l.starts_with("CapEff:"))
                .expect("CapEff");
            assert!(caps.ends_with("0000000000000000"), "{caps}");
            assert!(status.contains("NoNewPrivs:\t1"), "{status}");
            let info: Value =
                serde_json::from_str(&ctr(&["containers", "info", &worker.backend_id]))
                    .expect("container info");
            let spec = &info["Spec"];
            assert_eq!(spec["root"]["readonly"], true);
            assert_eq!(
                spec["linux"]["resources"]["memory"]["limit"],
                128 * 1024 * 1024
            );
            assert_eq!(info["Labels"]["esb.worker"], "w-life");
            assert_eq!(info["Labels"]["esb.node"], scope.node.as_str());
            assert_eq!(info["Labels"]["esb.address"], worker.address.as_str());
            assert_eq!(scope.leases().len(), 1, "one address lease");
            // The seccomp filter: no new user namespace (which needs no
            // capability), while threads still start (clone3 refused with
            // ENOSYS, the C library falls back to clone).
            let (status, body) = invoke(&worker.address, json!({"action": "syscalls"})).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                body,
                json!({"unshare": -1, "errno": 1, "thread_ran": true}),
                "unshare(CLONE_NEWUSER) refused with EPERM"
            );
            // The init is PID 1 and reaps orphans.
            let (status, body) = invoke(&worker.address, json!({"action": "orphan"})).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body, json!({"zombies": [], "pid1": "/sbin/esb-init"}));
        }

        let listed = backend.list().await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state(), WorkerState::Ready);
        assert_eq!(listed[0].address, worker.address);

        backend.destroy("w-life").await.expect("destroy");
        assert!(backend.list().await.expect("list").is_empty());
        scope.assert_nothing_left();
    }
    let again = backend.destroy("w-life").await;
    assert!(
        matches!(again, Err(BackendError::NotFound { .. })),
        "{again:?}"
    );
    backend.close().await;
}

#[tokio::test]
#[ignore = "runs inside the runtime node, driven by containerd_backend_in_a_runtime_node"]
async fn inside_concurrent_creates_share_one_pull_and_scale_out() {
    let scope = Scope::new("scale");
    let backend = std::sync::Arc::new(scope.backend().await);
    let creates = (0..4).map(|i| {
        let backend = std::sync::Arc::clone(&backend);
        let spec = scope.spec(&format!("w-{i}"));
        async move { backend.create(spec).await }
    });
    let workers: Vec<_> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| r.expect("create"))
        .collect();
    let mut addresses: Vec<&str> = workers.iter().map(|w| w.address.as_str()).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 4, "distinct addresses: {addresses:?}");
    for w in &workers {
        let (status, _) = invoke(&w.address, json!({})).await;
        assert_eq!(status, 200);
    }
    for w in &workers {
        backend.destroy(&w.worker_id).await.expect("destroy");
    }
    scope.assert_nothing_left();
    backend.close().await;
}

#[tokio::test]
#[ignore = "runs inside the runtime node, driven by containerd_backend_in_a_runtime_node"]
async fn inside_memory_limit_is_enforced_and_the_oom_kill_reported() {
    let scope = Scope::new("oom");
    let backend = scope.backend().await;
    let mut events = backend.events();
    let worker = backend.create(scope.spec("w-oom")).await.expect("create");

    let (status, body) = invoke(&worker.address, json!({"action": "alloc", "mb": 400})).await;
    assert!(
        body.get("allocated").is_none(),
        "allocation succeeded: {status} {body}"
    );
    let kind = common::next_event_of(&mut events, "w-oom").await;
    assert!(
        matches!(kind, Some(worker_event::Kind::OomKilled(_))),
        "{kind:?}"
    );
    // The shim restarts the runtime; the worker lives on and counts it.
    let metrics = backend.metrics("w-oom").await.expect("metrics");
    assert!(metrics.oom_kills >= 1, "{metrics:?}");
    assert_eq!(metrics.memory_limit_bytes, 128 * 1024 * 1024);
    backend.destroy("w-oom").await.expect("destroy");
    scope.assert_nothing_left();
    backend.close().await;
}

#[tokio::test]
#[ignore = "runs inside the runtime node, driven by containerd_backend_in_a_runtime_node"]
async fn inside_an_exit_is_reported_and_the_worker_removed() {
    let scope = Scope::new("exit");
    let backend = scope.backend().await;
    let mut events = backend.events();
    let worker = backend.create(scope.spec("w-exit")).await.expect("create");
    ctr(&["tasks", "kill", "-s", "SIGKILL", &worker.backend_id]);
    let kind = common::next_event_of(&mut events, "w-exit").await;
    assert!(
        matches!(kind, Some(worker_event::Kind::Exited(ref e)) if e.exit_code == 137),
        "{kind:?}"
    );
    scope.wait_until_nothing_left().await;
    backend.close().await;
}

#[tokio::test]
#[ignore = "runs inside the runtime node, driven by containerd_backend_in_a_runtime_node"]
async fn inside_pause_resume_and_metrics() {
    let scope = Scope::new("pause");
    let backend = scope.backend().await;
    let worker = backend.create(scope.spec("w-pause")).await.expect("create");

    let metrics = backend.metrics("w-pause").await.expect("metrics");
    assert_eq!(metrics.worker_id, "w-pause");
    assert!(metrics.memory_bytes > 0, "{metrics:?}");
    assert_eq!(metrics.memory_limit_bytes, 128 * 1024 * 1024);
    assert!(metrics.cpu_seconds > 0.0, "{metrics:?}");

    backend.pause("w-pause").await.expect("pause");
    assert_eq!(
        backend.list().await.expect("list")[0].state(),
        WorkerState::Paused
    );
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

    // A paused worker is destroyed too.
    backend.pause("w-pause").await.expect("pause");
    let missing = backend.pause("w-nobody").await;
    assert!(
        matches!(missing, Err(BackendError::NotFound { .. })),
        "{missing:?}"
    );
    backend.destroy("w-pause").await.expect("destroy paused");
    scope.assert_nothing_left();
    backend.close().await;
}

#[tokio::test]
#[ignore = "runs inside the runtime node, driven by containerd_backend_in_a_runtime_node"]
async fn inside_a_restarted_backend_adopts_running_workers_and_reaps_dead_ones() {
    let scope = Scope::new("adopt");
    let first = scope.backend().await;
    let a = first.create(scope.spec("w-a")).await.expect("create a");
    let b = first.create(scope.spec("w-b")).await.expect("create b");
    // The agent goes away without touching its workers...
    first.close().await;
    drop(first);
    // ...and one worker dies while no agent watches.
    ctr(&["tasks", "kill", "-s", "SIGKILL", &b.backend_id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctr(&["tasks", "ls"])
        .lines()
        .any(|l| l.starts_with(&b.backend_id) && l.contains("RUNNING"))
    {
        assert!(Instant::now() < deadline, "the task did not die");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The new backend removes the dead worker as it starts (its lease too)...
    let second = scope.backend().await;
    assert_eq!(scope.containers(), vec![a.backend_id.clone()]);
    assert_eq!(scope.leases().len(), 1, "only a's lease is left");
    // ...and adopts the live one.
    let adopted = second.adopt().await.expect("adopt");
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(adopted[0].worker_id, "w-a");
    assert_eq!(adopted[0].state(), WorkerState::Ready);
    assert_eq!(adopted[0].address, a.address);
    assert_eq!(adopted[0].backend_id, a.backend_id);

    let (status, _) = invoke(&adopted[0].address, json!({})).await;
    assert_eq!(status, 200);
    second.destroy("w-a").await.expect("destroy");
    scope.assert_nothing_left();
    second.close().await;
}

#[tokio::test]
#[ignore = "runs inside the runtime node, driven by containerd_backend_in_a_runtime_node"]
async fn inside_a_worker_that_exits_at_start_fails_with_its_logs_and_leaves_nothing() {
    let scope = Scope::new("startfail");
    let backend = scope.backend().await;
    let mut spec = scope.spec("w-broken");
    // The shim refuses this configuration and exits.
    spec.env
        .insert("ESB_INVOKE_ADDR".into(), "not-an-address".into());
    let err = backend.create(spec).await.expect_err("start failure");
    common::assert_exited_at_start(&err);
    scope.assert_nothing_left();

    let mut spec = scope.spec("w-missing");
    spec.image = "registry:5010/esb-agent-ctd-test-no-such-image:nope".into();
    let err = backend.create(spec).await.expect_err("no such image");
    assert!(matches!(err, BackendError::ImageNotFound { .. }), "{err:?}");
    assert_eq!(err.to_wire().code(), ErrorCode::ImageNotFound);
    scope.assert_nothing_left();
    backend.close().await;
}
