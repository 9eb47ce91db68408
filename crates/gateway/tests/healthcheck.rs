//! `esb-gateway healthcheck`, the Compose health check of the FROM-scratch
//! image: the real binary probing a real gateway, with nothing but
//! `ESB_HTTP_ADDR` in its environment.

use std::process::Command;
use std::time::Duration;

use clap::Parser as _;
use esb_gateway::config::Config;
use esb_gateway::Listeners;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn healthcheck(http_addr: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_esb-gateway"))
        .arg("healthcheck")
        .env_clear()
        .env("ESB_HTTP_ADDR", http_addr)
        .output()
        .expect("esb-gateway runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_while_the_gateway_serves_and_1_otherwise() {
    let state = std::env::temp_dir().join(format!("esb-healthcheck-{}", std::process::id()));
    let settings = Config::try_parse_from([
        "esb-gateway",
        "--catalog=/nonexistent/gateway.json",
        "--auth-password=correct horse battery",
        "--api-key=test-api-key-0123456789",
        "--jwt-secret=0123456789abcdef0123456789abcdef",
        &format!("--state-dir={}", state.display()),
    ])
    .expect("arguments")
    .validate()
    .expect("settings");
    let bind = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
    let (http, grpc) = (bind().await, bind().await);
    let port = http.local_addr().expect("addr").port();
    let shutdown = CancellationToken::new();
    let gateway = tokio::spawn(esb_gateway::serve(
        settings,
        Listeners {
            https: None,
            http,
            grpc,
        },
        shutdown.clone(),
    ));

    // The image's listen address is 0.0.0.0: the probe goes to loopback.
    // It binds nothing (the port is taken) and needs no secret.
    let listen = format!("0.0.0.0:{port}");
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = tokio::task::spawn_blocking({
            let listen = listen.clone();
            move || healthcheck(&listen)
        })
        .await
        .expect("join");
        if out.status.success() {
            break;
        }
        assert_eq!(out.status.code(), Some(1), "unhealthy is exit 1: {out:?}");
        assert!(
            std::time::Instant::now() < end,
            "the healthcheck never passed: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    shutdown.cancel();
    gateway
        .await
        .expect("join")
        .expect("the gateway stopped cleanly");
    let out = tokio::task::spawn_blocking(move || healthcheck(&listen))
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(1), "nothing listens: {out:?}");

    // Serving (no subcommand) still requires the secrets.
    let out = Command::new(env!("CARGO_BIN_EXE_esb-gateway"))
        .env_clear()
        .output()
        .expect("esb-gateway runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--auth-password"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&state);
}
