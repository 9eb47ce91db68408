//! A whole box in-process for component tests: the real gateway on
//! ephemeral loopback ports (HTTPS and HTTP for clients, gRPC with mTLS for
//! agents) and a real agent dialling it, with a backend of the test's choice
//! (usually [`crate::process::ProcessBackend`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use esb_agent::backend::Backend;
use esb_agent::settings::{AgentSettings, TlsSettings};
use esb_gateway::config::Config;
use esb_gateway::Listeners;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use esb_contracts::pki::Pki;

pub const USER: &str = "tester";
pub const PASSWORD: &str = "correct horse battery";
pub const API_KEY: &str = "test-api-key-0123456789";
/// The box's AWS key pair: Lambda API requests signed with it are accepted.
pub const ACCESS_KEY_ID: &str = "AKIDESBTEST0000000001";
pub const SECRET_ACCESS_KEY: &str = "esb-test/secret+access+key0123456789";
const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef-test";

/// Knobs of the gateway under test.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub idle_timeout_seconds: u64,
    pub acquire_timeout_seconds: u64,
    pub breaker_threshold: u32,
    pub breaker_cooldown_seconds: u64,
    pub node_memory_mb: u64,
    pub node_max_workers: u32,
    /// `ESB_ASYNC_RETRY_DELAYS_SECONDS`: delays before the retries of a
    /// failed asynchronous invocation.
    pub async_retry_delays_seconds: String,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            idle_timeout_seconds: 300,
            acquire_timeout_seconds: 10,
            breaker_threshold: 5,
            breaker_cooldown_seconds: 10,
            node_memory_mb: 8192,
            node_max_workers: 32,
            async_retry_delays_seconds: "60,120".to_owned(),
        }
    }
}

struct GatewayRun {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), esb_gateway::ServeError>>,
}

pub struct Stack<B: Backend> {
    pub dir: PathBuf,
    pub catalog: PathBuf,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// A client trusting the test CA.
    pub client: reqwest::Client,
    pub backend: Arc<B>,
    pki: Pki,
    options: StackOptions,
    gateway: Option<GatewayRun>,
    agent_shutdown: CancellationToken,
    agent: Option<JoinHandle<Result<(), esb_agent::AgentError>>>,
}

impl<B: Backend> Stack<B> {
    /// Starts a gateway serving `catalog` and an agent with `backend`, and
    /// waits until the agent has registered.
    pub async fn start(catalog: Value, backend: Arc<B>, options: StackOptions) -> Stack<B> {
        // ESB_TEST_LOG=debug shows the gateway's and agent's logs.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("ESB_TEST_LOG"))
            .with_test_writer()
            .try_init();
        let dir = std::env::temp_dir().join(format!(
            "esb-stack-{}-{}",
            std::process::id(),
            next_stack_number()
        ));
        std::fs::create_dir_all(&dir).expect("stack dir");
        let pki = Pki::new("ESB test CA").expect("ca");
        let server = pki
            .server(&["localhost", "127.0.0.1"])
            .expect("server certificate");
        let write = |name: &str, content: &str| {
            let path = dir.join(name);
            std::fs::write(&path, content).expect("write");
            path
        };
        write("ca.pem", &pki.ca_pem());
        write("gateway.pem", &server.cert_pem);
        write("gateway-key.pem", &server.key_pem);
        let catalog_path = write("gateway.json", &catalog.to_string());
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
        let (https, http, grpc) = (bind().await, bind().await, bind().await);
        let addrs = (
            https.local_addr().expect("addr"),
            http.local_addr().expect("addr"),
            grpc.local_addr().expect("addr"),
        );
        let ca = reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).expect("ca");
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .expect("client");
        let mut stack = Stack {
            catalog: catalog_path,
            https: addrs.0,
            http: addrs.1,
            grpc: addrs.2,
            client,
            backend,
            pki,
            options,
            gateway: None,
            agent_shutdown: CancellationToken::new(),
            agent: None,
            dir,
        };
        stack.gateway = Some(stack.spawn_gateway(Listeners {
            https: Some(https),
            http,
            grpc,
        }));
        stack.start_agent();
        stack.wait_for_node().await;
        stack
    }

    fn spawn_gateway(&self, listeners: Listeners) -> GatewayRun {
        let o = &self.options;
        let path = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        let args: Vec<String> = vec![
            "esb-gateway".into(),
            format!("--catalog={}", self.catalog.display()),
            format!("--tls-cert={}", path("gateway.pem")),
            format!("--tls-key={}", path("gateway-key.pem")),
            format!("--agent-ca={}", path("ca.pem")),
            format!("--auth-user={USER}"),
            format!("--auth-password={PASSWORD}"),
            format!("--api-key={API_KEY}"),
            format!("--jwt-secret={JWT_SECRET}"),
            format!("--access-key-id={ACCESS_KEY_ID}"),
            format!("--secret-access-key={SECRET_ACCESS_KEY}"),
            // The gateway's SQLite state lives with the stack (and survives
            // gateway restarts).
            format!("--state-dir={}", path("state")),
            format!("--idle-timeout-seconds={}", o.idle_timeout_seconds),
            format!("--acquire-timeout-seconds={}", o.acquire_timeout_seconds),
            format!("--breaker-threshold={}", o.breaker_threshold),
            format!("--breaker-cooldown-seconds={}", o.breaker_cooldown_seconds),
            format!(
                "--async-retry-delays-seconds={}",
                o.async_retry_delays_seconds
            ),
        ];
        use clap::Parser as _;
        let settings = Config::try_parse_from(args)
            .expect("gateway arguments")
            .validate()
            .expect("gateway settings");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(esb_gateway::serve(settings, listeners, shutdown.clone()));
        GatewayRun { shutdown, task }
    }

    fn start_agent(&mut self) {
        let client = self.pki.client("agent-1").expect("client certificate");
        let mut settings =
            AgentSettings::new(format!("https://127.0.0.1:{}", self.grpc.port()), "node-1");
        settings.gateway.tls = Some(TlsSettings {
            ca_pem: self.pki.ca_pem().into_bytes(),
            cert_pem: client.cert_pem.into_bytes(),
            key_pem: client.key_pem.into_bytes(),
            server_name: Some("localhost".into()),
        });
        settings.node.memory_mb = self.options.node_memory_mb;
        settings.node.max_workers = self.options.node_max_workers;
        settings.reconnect.initial = Duration::from_millis(50);
        settings.reconnect.max = Duration::from_millis(500);
        self.agent_shutdown = CancellationToken::new();
        self.agent = Some(tokio::spawn(esb_agent::run(
            settings,
            Arc::clone(&self.backend),
            self.agent_shutdown.clone(),
        )));
    }

    /// Polls the admin API until the agent's node is registered.
    pub async fn wait_for_node(&self) {
        let token = self.login().await;
        self.eventually(Duration::from_secs(20), "the agent to register", || async {
            let nodes = self.admin(&token, "nodes").await;
            nodes["nodes"].as_array().is_some_and(|n| !n.is_empty())
        })
        .await;
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http.port())
    }

    /// Logs in and returns the IdToken.
    pub async fn login(&self) -> String {
        let resp = self
            .client
            .post(self.https_url("/user/auth/v1"))
            .header("x-api-key", API_KEY)
            .json(&serde_json::json!({"AuthParameters": {"USERNAME": USER, "PASSWORD": PASSWORD}}))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), 200, "login failed");
        let body: Value = resp.json().await.expect("login json");
        body["AuthenticationResult"]["IdToken"]
            .as_str()
            .expect("IdToken")
            .to_owned()
    }

    /// GET /admin/v1/{what}.
    pub async fn admin(&self, token: &str, what: &str) -> Value {
        let resp = self
            .client
            .get(self.https_url(&format!("/admin/v1/{what}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("admin");
        assert_eq!(resp.status(), 200, "admin {what}");
        resp.json().await.expect("admin json")
    }

    /// The pool summary of one function.
    pub async fn pool(&self, token: &str, function: &str) -> Value {
        let pools = self.admin(token, "pools").await;
        pools["pools"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["function"] == function).cloned())
            .unwrap_or(Value::Null)
    }

    /// Polls `check` until it holds, failing the test after `deadline`.
    pub async fn eventually<F, Fut>(&self, deadline: Duration, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let end = Instant::now() + deadline;
        loop {
            if check().await {
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out after {deadline:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Replaces the catalog file (the gateway reloads it).
    pub fn write_catalog(&self, catalog: &Value) {
        let tmp = self.dir.join("gateway.json.tmp");
        std::fs::write(&tmp, catalog.to_string()).expect("write catalog");
        std::fs::rename(&tmp, &self.catalog).expect("replace catalog");
    }

    /// Stops the gateway (the agent keeps its workers and reconnects).
    pub async fn stop_gateway(&mut self) {
        if let Some(run) = self.gateway.take() {
            run.shutdown.cancel();
            run.task
                .await
                .expect("gateway task")
                .expect("gateway stopped cleanly");
        }
    }

    /// Starts a new gateway on the same ports.
    pub async fn restart_gateway(&mut self) {
        self.stop_gateway().await;
        let bind = |addr: SocketAddr| async move {
            // The old listener is closed; the port is free again.
            TcpListener::bind(addr).await.expect("rebind")
        };
        let listeners = Listeners {
            https: Some(bind(self.https).await),
            http: bind(self.http).await,
            grpc: bind(self.grpc).await,
        };
        self.gateway = Some(self.spawn_gateway(listeners));
        self.wait_for_node().await;
    }

    /// Stops the agent; its workers stay for the next agent to adopt.
    pub async fn stop_agent(&mut self) {
        self.agent_shutdown.cancel();
        if let Some(agent) = self.agent.take() {
            agent
                .await
                .expect("agent task")
                .expect("agent stopped cleanly");
        }
    }

    pub async fn restart_agent(&mut self) {
        self.stop_agent().await;
        self.start_agent();
        self.wait_for_node().await;
    }

    /// Stops everything and removes the stack's files.
    pub async fn stop(mut self) {
        self.stop_gateway().await;
        self.stop_agent().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The PEM CA the HTTPS listener's certificate chains to (`AWS_CA_BUNDLE`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

/// A number unique in this test process, for stack directory names.
fn next_stack_number() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}
