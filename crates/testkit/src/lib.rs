//! Test support: fixture paths, the host's Lambda runtime clients, boto3
//! scripts pinned to local endpoints, the
//! worker shim started in-process on ephemeral ports, a process-based agent
//! backend, a test PKI, and whole stacks (gateway + agent) in-process.

pub mod boto3;
pub mod docker;
pub mod process;
pub mod stack;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser as _;
use esb_runtime::config::{Config, FunctionSpec};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A file or directory under `crates/testkit/fixtures`.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(relative)
}

/// The Python interpreter that has `awslambdaric` installed: `ESB_TEST_PYTHON`,
/// or the venv `scripts/install-deps` creates.
pub fn python() -> PathBuf {
    let path = std::env::var_os("ESB_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/venv/bin/python3"));
    assert!(
        path.exists(),
        "no Python with awslambdaric at {}: run scripts/install-deps or set ESB_TEST_PYTHON",
        path.display()
    );
    path
}

/// A worker shim served in-process on ephemeral loopback ports.
pub struct Shim {
    pub url: String,
    /// `host:port` of the shim's Runtime API.
    pub runtime_api: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Shim {
    /// Starts the shim with `esb-runtime` command-line arguments.
    pub async fn start(args: &[&str]) -> Shim {
        Shim::start_with_logs(args, None).await
    }

    /// Starts the shim shipping function output to `logs_url`.
    pub async fn start_with_logs(args: &[&str], logs_url: Option<String>) -> Shim {
        let spec = parse_config(args);
        let invoke = TcpListener::bind("127.0.0.1:0").await.expect("bind invoke");
        let api = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime api");
        let url = format!("http://{}", invoke.local_addr().expect("addr"));
        let runtime_api = api.local_addr().expect("addr").to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(esb_runtime::serve(
            spec,
            invoke,
            api,
            logs_url,
            shutdown.clone(),
        ));
        Shim {
            url,
            runtime_api,
            client: reqwest::Client::new(),
            shutdown,
            task,
        }
    }

    /// A shim running the Python fixture function with awslambdaric.
    pub async fn python(handler: &str, extra: &[&str]) -> Shim {
        Shim::python_with_logs(handler, extra, None).await
    }

    /// The Python fixture function, shipping its output to `logs_url`.
    pub async fn python_with_logs(handler: &str, extra: &[&str], logs_url: Option<String>) -> Shim {
        let python = python();
        let root = fixture("functions/python");
        let mut args = vec![
            "--runtime",
            "python3.11",
            "--python",
            python.to_str().expect("utf-8 path"),
            "--task-root",
            root.to_str().expect("utf-8 path"),
            "--handler",
            handler,
        ];
        args.extend_from_slice(extra);
        Shim::start_with_logs(&args, logs_url).await
    }

    pub fn invocations_url(&self) -> String {
        format!("{}/2015-03-31/functions/function/invocations", self.url)
    }

    /// Invokes with a JSON payload.
    pub async fn invoke(&self, payload: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.invocations_url())
            .json(&payload)
            .send()
            .await
            .expect("invoke request")
    }

    /// Polls `/health` until it answers 200, within `deadline`.
    pub async fn wait_ready(&self, deadline: Duration) -> serde_json::Value {
        let end = Instant::now() + deadline;
        loop {
            if let Ok(resp) = self.client.get(format!("{}/health", self.url)).send().await {
                if resp.status() == 200 {
                    return resp.json().await.expect("health json");
                }
            }
            assert!(Instant::now() < end, "shim not ready within {deadline:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the shim like SIGTERM does and waits for it to finish.
    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.task.await.expect("shim task")
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// A validated shim configuration from `esb-runtime` arguments.
pub fn parse_config(args: &[&str]) -> FunctionSpec {
    let argv = std::iter::once("esb-runtime").chain(args.iter().copied());
    Config::try_parse_from(argv)
        .expect("valid shim arguments")
        .validate()
        .expect("valid shim configuration")
}
