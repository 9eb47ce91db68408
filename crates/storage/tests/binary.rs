//! The `esb-storage` binary: configuration errors, JSON logs, readiness, its
//! `healthcheck` probe and graceful shutdown on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esb-storage"));
    for var in [
        "ESB_STORAGE_ADDR",
        "ESB_STORAGE_DIR",
        "ESB_S3_ACCESS_KEY_ID",
        "ESB_S3_SECRET_ACCESS_KEY",
        "ESB_LOG_FORMAT",
        "ESB_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.kill_on_drop(true);
    cmd
}

async fn exit_code(cmd: &mut Command) -> (Option<i32>, String) {
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("exits")
        .expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_configuration_exits_64() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_s = dir.path().to_str().expect("utf-8");

    // Missing data directory.
    let (code, stderr) = exit_code(
        command()
            .args([
                "--addr",
                "127.0.0.1:0",
                "--data-dir",
                "/nonexistent/esb-data",
            ])
            .env("ESB_S3_ACCESS_KEY_ID", "AK")
            .env("ESB_S3_SECRET_ACCESS_KEY", "SK"),
    )
    .await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("/nonexistent/esb-data"), "{stderr}");

    // Empty secret key.
    let (code, stderr) = exit_code(
        command()
            .args(["--addr", "127.0.0.1:0"])
            .env("ESB_STORAGE_DIR", dir_s)
            .env("ESB_S3_ACCESS_KEY_ID", "AK"),
    )
    .await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("ESB_S3_SECRET_ACCESS_KEY"), "{stderr}");

    // Unparsable address.
    let (code, stderr) = exit_code(command().args(["--addr", "not-an-address"])).await;
    assert_eq!(code, Some(64), "{stderr}");
}

#[tokio::test]
async fn serves_health_logs_json_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = command()
        .args(["--addr", "127.0.0.1:0"])
        .env("ESB_STORAGE_DIR", dir.path())
        .env("ESB_S3_ACCESS_KEY_ID", "AK")
        .env("ESB_S3_SECRET_ACCESS_KEY", "super-secret-value")
        .env("ESB_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn esb-storage");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();

    // The first log line announces the bound address, as JSON.
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("logs within 20s")
        .expect("reads stderr")
        .expect("a log line");
    let log: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
    assert_eq!(log["fields"]["message"], "esb-storage serving S3", "{line}");
    assert!(!line.contains("super-secret-value"), "{line}");
    let addr = log["fields"]["addr"]
        .as_str()
        .expect("addr field")
        .to_owned();

    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /_esb/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("answers within 10s")
    .expect("reads");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");

    // The image's health check, given the address as in the container (by
    // environment) or as a flag.
    let (code, stderr) =
        exit_code(command().arg("healthcheck").env("ESB_STORAGE_ADDR", &addr)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = exit_code(command().args(["healthcheck", "--addr", &addr])).await;
    assert_eq!(code, Some(0), "{stderr}");

    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits within 15s of SIGTERM")
        .expect("waits");
    assert!(status.success(), "{status}");
    while let Ok(Some(line)) = lines.next_line().await {
        assert!(!line.contains("super-secret-value"), "{line}");
    }

    // Nothing listens any more: unhealthy.
    let (code, stderr) = exit_code(command().args(["healthcheck", "--addr", &addr])).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("/_esb/health"), "{stderr}");
}
