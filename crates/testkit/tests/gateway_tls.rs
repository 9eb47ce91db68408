//! `ESB_TLS_DIR`: a gateway started on an empty certificate directory
//! generates the box's PKI there, serves HTTPS with it and requires agents
//! to present a certificate of the same CA; a restart reuses the files.

use std::time::Duration;

use clap::Parser as _;
use esb_agent::settings::{AgentSettings, TlsSettings};
use esb_contracts::pki::files;
use esb_gateway::config::Config;
use esb_gateway::Listeners;
use esb_testkit::process::ProcessBackend;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse battery";
const API_KEY: &str = "test-api-key-0123456789";

fn args(dir: &std::path::Path, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        "esb-gateway".to_owned(),
        format!("--catalog={}", dir.join("gateway.json").display()),
        format!("--auth-password={PASSWORD}"),
        format!("--api-key={API_KEY}"),
        "--jwt-secret=0123456789abcdef0123456789abcdef-test".to_owned(),
        format!("--state-dir={}", dir.join("state").display()),
    ];
    args.extend_from_slice(extra);
    args
}

async fn login(client: &reqwest::Client, https: &str) -> String {
    let resp = client
        .post(format!("{https}/user/auth/v1"))
        .header("x-api-key", API_KEY)
        .json(&serde_json::json!({"AuthParameters": {"USERNAME": "admin", "PASSWORD": PASSWORD}}))
        .send()
        .await
        .expect("login over HTTPS with the generated CA");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    body["AuthenticationResult"]["IdToken"]
        .as_str()
        .expect("token")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_tls_dir_gets_the_box_pki_and_agents_need_its_certificates() {
    let dir = std::env::temp_dir().join(format!("esb-tls-dir-{}", std::process::id()));
    let certs = dir.join("certs");
    let tls_dir = format!("--tls-dir={}", certs.display());
    let settings = Config::try_parse_from(args(&dir, std::slice::from_ref(&tls_dir)))
        .expect("arguments")
        .validate()
        .expect("settings: material generated before anything is bound");
    for name in [
        files::GATEWAY_CERT,
        files::GATEWAY_KEY,
        files::CA_CERT,
        files::AGENT_CERT,
        files::AGENT_KEY,
    ] {
        assert!(certs.join(name).exists(), "{name} generated");
    }
    let read = |name: &str| std::fs::read(certs.join(name)).expect(name);
    let gateway_cert = read(files::GATEWAY_CERT);

    let bind = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
    let (https, http, grpc) = (bind().await, bind().await, bind().await);
    let https_port = https.local_addr().expect("addr").port();
    let grpc_port = grpc.local_addr().expect("addr").port();
    let shutdown = CancellationToken::new();
    let gateway = tokio::spawn(esb_gateway::serve(
        settings,
        Listeners {
            https: Some(https),
            http,
            grpc,
        },
        shutdown.clone(),
    ));

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&read(files::CA_CERT)).expect("ca"))
        .build()
        .expect("client");
    let base = format!("https://localhost:{https_port}");
    let token = login(&client, &base).await;

    // An agent with the generated agent certificate registers over mTLS.
    let backend = ProcessBackend::new();
    let mut agent_settings =
        AgentSettings::new(format!("https://127.0.0.1:{grpc_port}"), "node-tls");
    agent_settings.gateway.tls = Some(TlsSettings {
        ca_pem: read(files::CA_CERT),
        cert_pem: read(files::AGENT_CERT),
        key_pem: read(files::AGENT_KEY),
        server_name: Some("gateway".into()),
    });
    agent_settings.reconnect.initial = Duration::from_millis(50);
    agent_settings.reconnect.max = Duration::from_millis(500);
    let agent_stop = CancellationToken::new();
    let agent = tokio::spawn(esb_agent::run(agent_settings, backend, agent_stop.clone()));
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let nodes: Value = client
            .get(format!("{base}/admin/v1/nodes"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("nodes")
            .json()
            .await
            .expect("json");
        if nodes["nodes"][0]["id"] == "node-tls" {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the agent never registered: {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent_stop.cancel();
    agent.await.expect("join").expect("agent stopped");
    shutdown.cancel();
    gateway.await.expect("join").expect("gateway stopped");

    // A restart reads the same material; nothing is regenerated.
    Config::try_parse_from(args(&dir, std::slice::from_ref(&tls_dir)))
        .expect("arguments")
        .validate()
        .expect("settings");
    assert_eq!(read(files::GATEWAY_CERT), gateway_cert);

    // ESB_TLS_DIR and explicit files exclude each other.
    let err = Config::try_parse_from(args(
        &dir,
        &[
            tls_dir.clone(),
            format!("--tls-cert={}", certs.join(files::GATEWAY_CERT).display()),
        ],
    ))
    .expect("arguments")
    .validate()
    .expect_err("conflict");
    assert!(err.to_string().contains("ESB_TLS_DIR"), "{err}");

    // A directory with some of the files is an error naming the others.
    std::fs::remove_file(certs.join(files::CA_CERT)).expect("remove");
    let err = Config::try_parse_from(args(&dir, &[tls_dir]))
        .expect("arguments")
        .validate()
        .expect_err("incomplete");
    assert!(err.to_string().contains("ca.pem missing"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
