//! `esb-agent healthcheck`, the health check of the agent's image: exit 0
//! while the agent serves `GET /health` on its metrics address, 1 otherwise.

use std::sync::Arc;
use std::time::Duration;

use esb_agent::metrics::{serve, AgentMetrics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn healthcheck(env_addr: Option<&str>, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_esb-agent"));
    cmd.arg("healthcheck").args(args);
    cmd.env_remove("ESB_AGENT_METRICS_ADDR");
    // The agent's own settings play no part in the probe.
    cmd.env_remove("ESB_GATEWAY_URL");
    if let Some(addr) = env_addr {
        cmd.env("ESB_AGENT_METRICS_ADDR", addr);
    }
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
async fn healthcheck_probes_the_metrics_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        Arc::new(AgentMetrics::default()),
        shutdown.clone(),
    ));
    let addr_s = addr.to_string();
    // Not registered with any gateway: still healthy (the process is up).
    let (code, stderr) = healthcheck(Some(&addr_s), &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = healthcheck(None, &["--metrics-addr", &addr_s]).await;
    assert_eq!(code, Some(0), "{stderr}");

    shutdown.cancel();
    server.await.expect("join").expect("serve");
    let (code, stderr) = healthcheck(Some(&addr_s), &[]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("/health"), "{stderr}");
    let (code, stderr) = healthcheck(None, &["--metrics-addr", "not-an-address"]).await;
    assert_eq!(code, Some(64), "{stderr}");
}
