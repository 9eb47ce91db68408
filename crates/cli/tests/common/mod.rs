//! The harness of the end-to-end tests on real Docker Compose: a copy of
//! a SAM app in a temp dir, `esb` run on it under a unique project with
//! every port 0, and `esb down -v` plus the app's images removed on drop.
// Each test binary uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use esb_testkit::boto3::Boto3;
use serde_json::{json, Value};

pub const ESB: &str = env!("CARGO_BIN_EXE_esb");

/// The box's runtime mode (`esb up --mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Docker,
    Containerd,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Docker => "docker",
            Mode::Containerd => "containerd",
        }
    }
}

/// A copy of a SAM app in a temp dir, and the box's project name.
pub struct App {
    pub dir: PathBuf,
    pub project: String,
    /// Extra environment for every `esb` command.
    pub env: Vec<(String, String)>,
}

impl App {
    /// A copy of `examples/sam-app`.
    pub fn new(tag: &str) -> App {
        App::from_dir(&esb_testkit::workspace_root().join("examples/sam-app"), tag)
    }

    /// A copy of the app in `source`.
    pub fn from_dir(source: &Path, tag: &str) -> App {
        let dir = std::env::temp_dir().join(format!("esb-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(source, &dir);
        App {
            dir,
            project: format!("e2e{tag}{}", std::process::id()),
            env: Vec::new(),
        }
    }

    pub fn esb(&self, args: &[&str]) -> Output {
        let python = esb_testkit::python();
        let out = Command::new(ESB)
            .args(args)
            .current_dir(&self.dir)
            .env("ESB_PROJECT", &self.project)
            .env("ESB_PIP", format!("{} -m pip", python.display()))
            .env("ESB_IDLE_TIMEOUT_SECONDS", "6")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(
                [
                    "ESB_PORT_GATEWAY_HTTPS",
                    "ESB_PORT_GATEWAY_HTTP",
                    "ESB_PORT_GRPC",
                    "ESB_PORT_S3",
                    "ESB_PORT_DATABASE",
                    "ESB_PORT_LOGS",
                    "ESB_PORT_REGISTRY",
                    "ESB_PORT_AGENT_METRICS",
                ]
                .map(|v| (v, "0")),
            )
            .output()
            .expect("run esb");
        eprintln!(
            "$ esb {} -> {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn esb_ok(&self, args: &[&str]) -> String {
        let out = self.esb(args);
        assert!(out.status.success(), "esb {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.esb(&["down", "-v"]);
        let _ = std::fs::remove_dir_all(&self.dir);
        // The function images of this copy of the app.
        let prefix = format!(
            "esb-fn-{}-",
            self.dir.file_name().and_then(|n| n.to_str()).unwrap_or("-")
        );
        let out = Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output();
        if let Ok(out) = out {
            for image in String::from_utf8_lossy(&out.stdout).lines() {
                if image.starts_with(&prefix) {
                    let _ = Command::new("docker").args(["rmi", "-f", image]).output();
                }
            }
        }
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == ".esb") {
            continue;
        }
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

pub fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// boto3 against the box: its S3 and Lambda endpoints, keys and region
/// from `esb info --json`.
pub fn boto3(info: &Value) -> Boto3 {
    let creds = &info["credentials"];
    let text = |v: &Value| v.as_str().expect("string in esb info").to_owned();
    Boto3::new(
        &text(&creds["access_key_id"]),
        &text(&creds["secret_access_key"]),
        &text(&info["region"]),
    )
    .endpoint("S3", &text(&info["endpoints"]["s3"]))
    .endpoint("LAMBDA", &text(&info["endpoints"]["gateway_http"]))
}

/// The box's IdToken, logging in with its credentials from `esb info`.
pub async fn login(client: &reqwest::Client, gateway: &str, creds: &Value) -> String {
    let login: Value = client
        .post(format!("{gateway}/user/auth/v1"))
        .header("x-api-key", creds["api_key"].as_str().expect("api key"))
        .json(
            &json!({"AuthParameters": {"USERNAME": creds["user"], "PASSWORD": creds["password"]}}),
        )
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json");
    login["AuthenticationResult"]["IdToken"]
        .as_str()
        .expect("token")
        .to_owned()
}

pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
