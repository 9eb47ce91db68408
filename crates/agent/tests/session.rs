//! The agent <-> gateway session over real gRPC with mTLS: a minimal
//! `NodeService` server in the test (requiring client certificates signed
//! by the test CA) and a fake backend at the trait boundary. Everything runs
//! on 127.0.0.1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esb_agent::proto::node_service_server::{NodeService, NodeServiceServer};
use esb_agent::proto::{
    agent_message, command, gateway_message, reply, worker_event, AgentMessage, Command,
    CreateWorker, ErrorCode, Exited, GatewayMessage, ListWorkers, Register, Registered, Reply,
    RuntimeKind, Worker, WorkerEvent, WorkerMetrics, WorkerRef, WorkerState,
};
use esb_agent::settings::{AgentSettings, ReconnectSettings, TlsSettings};
use esb_agent::{Backend, BackendError};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- PKI

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("ca key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("ca cert"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

struct Pki {
    ca: Ca,
    server: Leaf,
    client: Leaf,
}

impl Pki {
    fn new() -> Self {
        let ca = Ca::new("esb test ca");
        let server = ca.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = ca.issue(&["agent-node-1"], ExtendedKeyUsagePurpose::ClientAuth);
        Self { ca, server, client }
    }

    fn server_tls(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(
                &self.server.cert_pem,
                &self.server.key_pem,
            ))
            .client_ca_root(Certificate::from_pem(self.ca.pem()))
    }

    fn agent_tls(&self, trusted_ca: &Ca, client: &Leaf) -> TlsSettings {
        TlsSettings {
            ca_pem: trusted_ca.pem().into_bytes(),
            cert_pem: client.cert_pem.clone().into_bytes(),
            key_pem: client.key_pem.clone().into_bytes(),
            server_name: None,
        }
    }
}

// ---------------------------------------------------------------- fake backend

/// Workers in memory; creates take `create_delay`.
struct FakeBackend {
    workers: Mutex<HashMap<String, Worker>>,
    events: broadcast::Sender<WorkerEvent>,
    create_delay: Duration,
}

impl FakeBackend {
    fn new(existing: &[&str], create_delay: Duration) -> Self {
        let workers = existing
            .iter()
            .map(|id| ((*id).to_owned(), fake_worker(id, "existing-fn")))
            .collect();
        Self {
            workers: Mutex::new(workers),
            events: broadcast::channel(16).0,
            create_delay,
        }
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.workers.lock().expect("lock").keys().cloned().collect();
        ids.sort();
        ids
    }

    fn set_state(&self, worker_id: &str, state: WorkerState) -> Result<(), BackendError> {
        let mut workers = self.workers.lock().expect("lock");
        let w = workers
            .get_mut(worker_id)
            .ok_or_else(|| not_found(worker_id))?;
        w.state = state as i32;
        Ok(())
    }
}

fn fake_worker(id: &str, function: &str) -> Worker {
    Worker {
        worker_id: id.to_owned(),
        function: function.to_owned(),
        address: "127.0.0.1:9".into(),
        state: WorkerState::Ready as i32,
        backend_id: format!("fake-{id}"),
        owner: "gw".into(),
        memory_mb: 128,
        image: "fake:latest".into(),
    }
}

fn not_found(worker_id: &str) -> BackendError {
    BackendError::NotFound {
        worker_id: worker_id.to_owned(),
    }
}

impl Backend for FakeBackend {
    fn runtime(&self) -> RuntimeKind {
        RuntimeKind::Process
    }

    async fn create(&self, spec: CreateWorker) -> Result<Worker, BackendError> {
        tokio::time::sleep(self.create_delay).await;
        let worker = fake_worker(&spec.worker_id, &spec.function);
        self.workers
            .lock()
            .expect("lock")
            .insert(spec.worker_id, worker.clone());
        Ok(worker)
    }

    async fn destroy(&self, worker_id: &str) -> Result<(), BackendError> {
        self.workers
            .lock()
            .expect("lock")
            .remove(worker_id)
            .map(|_| ())
            .ok_or_else(|| not_found(worker_id))
    }

    async fn pause(&self, worker_id: &str) -> Result<(), BackendError> {
        self.set_state(worker_id, WorkerState::Paused)
    }

    async fn resume(&self, worker_id: &str) -> Result<(), BackendError> {
        self.set_state(worker_id, WorkerState::Ready)
    }

    async fn list(&self) -> Result<Vec<Worker>, BackendError> {
        Ok(self
            .workers
            .lock()
            .expect("lock")
            .values()
            .cloned()
            .collect())
    }

    async fn metrics(&self, worker_id: &str) -> Result<WorkerMetrics, BackendError> {
        if self.workers.lock().expect("lock").contains_key(worker_id) {
            Ok(WorkerMetrics {
                worker_id: worker_id.to_owned(),
                ..Default::default()
            })
        } else {
            Err(not_found(worker_id))
        }
    }

    fn events(&self) -> broadcast::Receiver<WorkerEvent> {
        self.events.subscribe()
    }
}

// ---------------------------------------------------------------- test gateway

/// One agent connection as the test sees it.
struct Session {
    register: Register,
    to_agent: mpsc::Sender<Result<GatewayMessage, Status>>,
    from_agent: Streaming<AgentMessage>,
    heartbeats: Vec<esb_agent::proto::Heartbeat>,
    events: Vec<WorkerEvent>,
}

impl Session {
    async fn send(&self, id: u64, kind: command::Kind) {
        self.to_agent
            .send(Ok(GatewayMessage {
                body: Some(gateway_message::Body::Command(Command {
                    id,
                    kind: Some(kind),
                })),
            }))
            .await
            .expect("agent stream open");
    }

    /// The next reply, recording heartbeats and events on the way.
    async fn reply(&mut self) -> Reply {
        loop {
            match self.next().await {
                agent_message::Body::Reply(r) => return r,
                other => self.record(other),
            }
        }
    }

    /// The next worker event, recording heartbeats on the way.
    async fn event(&mut self) -> WorkerEvent {
        loop {
            match self.next().await {
                agent_message::Body::Event(e) => return e,
                other => self.record(other),
            }
        }
    }

    async fn heartbeat_where(&mut self, pred: impl Fn(&esb_agent::proto::Heartbeat) -> bool) {
        if self.heartbeats.iter().any(&pred) {
            return;
        }
        loop {
            match self.next().await {
                agent_message::Body::Heartbeat(h) if pred(&h) => return,
                other => self.record(other),
            }
        }
    }

    fn record(&mut self, body: agent_message::Body) {
        match body {
            agent_message::Body::Heartbeat(h) => self.heartbeats.push(h),
            agent_message::Body::Event(e) => self.events.push(e),
            other => panic!("unexpected message from the agent: {other:?}"),
        }
    }

    async fn next(&mut self) -> agent_message::Body {
        tokio::time::timeout(WAIT, self.from_agent.message())
            .await
            .expect("a message from the agent in time")
            .expect("agent stream ok")
            .expect("agent stream open")
            .body
            .expect("message body")
    }
}

struct TestGateway {
    sessions: mpsc::Sender<Session>,
}

#[tonic::async_trait]
impl NodeService for TestGateway {
    type ConnectStream = ReceiverStream<Result<GatewayMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut from_agent = request.into_inner();
        let first = from_agent
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("stream closed before Register"))?;
        let Some(agent_message::Body::Register(register)) = first.body else {
            return Err(Status::invalid_argument(
                "the first message must be Register",
            ));
        };
        let (to_agent, rx) = mpsc::channel(16);
        let registered = GatewayMessage {
            body: Some(gateway_message::Body::Registered(Registered {
                heartbeat_interval_ms: 100,
                gateway_id: "gw-test".into(),
            })),
        };
        to_agent
            .send(Ok(registered))
            .await
            .map_err(|_| Status::internal("closed"))?;
        self.sessions
            .send(Session {
                register,
                to_agent,
                from_agent,
                heartbeats: Vec::new(),
                events: Vec::new(),
            })
            .await
            .map_err(|_| Status::unavailable("test over"))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct RunningGateway {
    addr: SocketAddr,
    stop: CancellationToken,
    server: JoinHandle<()>,
    sessions: mpsc::Receiver<Session>,
}

async fn start_gateway(addr: SocketAddr, tls: Option<ServerTlsConfig>) -> RunningGateway {
    let listener = TcpListener::bind(addr).await.expect("bind gateway");
    let addr = listener.local_addr().expect("addr");
    let (tx, sessions) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).expect("server tls");
    }
    let router = builder.add_service(NodeServiceServer::new(TestGateway { sessions: tx }));
    let signal = stop.clone().cancelled_owned();
    let server = tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
            .await;
    });
    RunningGateway {
        addr,
        stop,
        server,
        sessions,
    }
}

impl RunningGateway {
    async fn session(&mut self) -> Session {
        tokio::time::timeout(WAIT, self.sessions.recv())
            .await
            .expect("the agent registers in time")
            .expect("gateway running")
    }

    /// Stops the server as a crashing gateway would: the streams end and the
    /// listener goes away.
    async fn stop(self) -> SocketAddr {
        self.stop.cancel();
        drop(self.sessions);
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
            let _ = server.await;
        }
        self.addr
    }
}

fn agent_settings(url: String, tls: Option<TlsSettings>) -> AgentSettings {
    let mut settings = AgentSettings::new(url, "node-1");
    settings.gateway.tls = tls;
    settings.gateway.connect_timeout = Duration::from_secs(2);
    settings.reconnect = ReconnectSettings {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(300),
    };
    settings.node.memory_mb = 4096;
    settings.node.max_workers = 16;
    settings.node.labels.insert("zone".into(), "test".into());
    settings
}

fn create(worker_id: &str) -> command::Kind {
    command::Kind::Create(CreateWorker {
        worker_id: worker_id.to_owned(),
        function: "hello".into(),
        image: "fake:latest".into(),
        memory_mb: 128,
        timeout_seconds: 3,
        env: HashMap::from([("SECRET".to_owned(), "hunter2".to_owned())]),
        command: Vec::new(),
        owner: "gw-test".into(),
    })
}

fn worker_ref(worker_id: &str) -> WorkerRef {
    WorkerRef {
        worker_id: worker_id.to_owned(),
    }
}

fn error_code(reply: &Reply) -> Option<ErrorCode> {
    match &reply.result {
        Some(reply::Result::Error(e)) => Some(e.code()),
        _ => None,
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn mtls_session_registers_serves_commands_and_reconnects() {
    let pki = Pki::new();
    let mut gateway =
        start_gateway("127.0.0.1:0".parse().expect("addr"), Some(pki.server_tls())).await;
    let backend = Arc::new(FakeBackend::new(
        &["w-existing"],
        Duration::from_millis(600),
    ));
    let settings = agent_settings(
        format!("https://127.0.0.1:{}", gateway.addr.port()),
        Some(pki.agent_tls(&pki.ca, &pki.client)),
    );
    let shutdown = CancellationToken::new();
    let agent = esb_agent::Agent::new(settings, Arc::clone(&backend));
    let metrics = agent.metrics();
    let running = tokio::spawn(agent.run(shutdown.clone()));

    // Register: node, runtime, capacity, labels and the workers it has.
    let mut s = gateway.session().await;
    assert_eq!(s.register.node_id, "node-1");
    assert_eq!(s.register.runtime(), RuntimeKind::Process);
    let capacity = s.register.capacity.expect("capacity");
    assert_eq!((capacity.memory_mb, capacity.max_workers), (4096, 16));
    assert_eq!(
        s.register.labels.get("zone").map(String::as_str),
        Some("test")
    );
    assert!(!s.register.agent_version.is_empty());
    let announced: Vec<&str> = s
        .register
        .workers
        .iter()
        .map(|w| w.worker_id.as_str())
        .collect();
    assert_eq!(announced, ["w-existing"]);

    // List: one reply, same id.
    s.send(1, command::Kind::List(ListWorkers {})).await;
    let r = s.reply().await;
    assert_eq!(r.id, 1);
    let Some(reply::Result::Workers(list)) = r.result else {
        panic!("expected a worker list, got {r:?}");
    };
    assert_eq!(list.workers.len(), 1);

    // A slow create does not hold up a destroy sent after it.
    s.send(2, create("w-new")).await;
    s.send(3, command::Kind::Destroy(worker_ref("w-existing")))
        .await;
    let first = s.reply().await;
    let second = s.reply().await;
    assert_eq!(
        (first.id, second.id),
        (3, 2),
        "the destroy waited for the create"
    );
    assert!(
        matches!(first.result, Some(reply::Result::Done(_))),
        "{first:?}"
    );
    let Some(reply::Result::Worker(created)) = second.result else {
        panic!("expected a worker, got {second:?}");
    };
    assert_eq!(created.worker_id, "w-new");
    assert_eq!(backend.ids(), ["w-new"]);

    // Errors come back as wire codes with the same id.
    let mut bad = create("w-bad");
    if let command::Kind::Create(c) = &mut bad {
        c.image = String::new();
    }
    s.send(4, bad).await;
    let r = s.reply().await;
    assert_eq!(
        (r.id, error_code(&r)),
        (4, Some(ErrorCode::Invalid)),
        "{r:?}"
    );
    s.send(5, command::Kind::Metrics(worker_ref("w-nobody")))
        .await;
    let r = s.reply().await;
    assert_eq!(
        (r.id, error_code(&r)),
        (5, Some(ErrorCode::NotFound)),
        "{r:?}"
    );
    s.send(6, command::Kind::Pause(worker_ref("w-new"))).await;
    let r = s.reply().await;
    assert_eq!(r.id, 6);
    assert!(matches!(r.result, Some(reply::Result::Done(_))), "{r:?}");
    s.send(7, command::Kind::Resume(worker_ref("w-new"))).await;
    assert_eq!(s.reply().await.id, 7);

    // Worker events reach the gateway; heartbeats follow the interval the
    // gateway asked for and count the workers.
    let _ = backend.events.send(WorkerEvent {
        worker_id: "w-new".into(),
        function: "hello".into(),
        kind: Some(worker_event::Kind::Exited(Exited { exit_code: 3 })),
    });
    let event = s.event().await;
    assert_eq!(event.worker_id, "w-new");
    assert_eq!(
        event.kind,
        Some(worker_event::Kind::Exited(Exited { exit_code: 3 }))
    );
    s.heartbeat_where(|h| h.running_workers == 1 && h.used_memory_mb == 128)
        .await;
    assert!(metrics.is_connected());

    // The gateway goes away and comes back on the same address: the agent
    // reconnects and registers again with the workers it has now.
    drop(s);
    let addr = gateway.stop().await;
    let mut gateway = start_gateway(addr, Some(pki.server_tls())).await;
    let mut s = gateway.session().await;
    let announced: Vec<&str> = s
        .register
        .workers
        .iter()
        .map(|w| w.worker_id.as_str())
        .collect();
    assert_eq!(announced, ["w-new"]);
    s.send(8, command::Kind::List(ListWorkers {})).await;
    assert_eq!(s.reply().await.id, 8);
    assert!(metrics.registrations_total() >= 2);
    assert!(metrics.commands_total() >= 8);

    // Shutdown ends the agent and leaves the workers alone.
    shutdown.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("agent stops in time")
        .expect("agent task")
        .expect("agent result");
    assert_eq!(backend.ids(), ["w-new"]);
    drop(s);
    gateway.stop().await;
}

#[tokio::test]
async fn certificates_are_verified_both_ways() {
    let pki = Pki::new();
    let rogue = Ca::new("rogue ca");
    let rogue_client = rogue.issue(&["agent-node-1"], ExtendedKeyUsagePurpose::ClientAuth);
    let mut gateway =
        start_gateway("127.0.0.1:0".parse().expect("addr"), Some(pki.server_tls())).await;
    let url = format!("https://127.0.0.1:{}", gateway.addr.port());
    let shutdown = CancellationToken::new();

    // A client certificate from another CA is refused by the gateway...
    let bad_client = tokio::spawn(esb_agent::run(
        agent_settings(url.clone(), Some(pki.agent_tls(&pki.ca, &rogue_client))),
        Arc::new(FakeBackend::new(&[], Duration::ZERO)),
        shutdown.clone(),
    ));
    // ...and the agent refuses a gateway its CA did not sign.
    let wrong_ca = tokio::spawn(esb_agent::run(
        agent_settings(url.clone(), Some(pki.agent_tls(&rogue, &pki.client))),
        Arc::new(FakeBackend::new(&[], Duration::ZERO)),
        shutdown.clone(),
    ));
    // Both keep retrying (several attempts at this backoff) without ever
    // registering.
    let registered =
        tokio::time::timeout(Duration::from_millis(1500), gateway.sessions.recv()).await;
    assert!(
        registered.is_err(),
        "an agent without a valid certificate registered"
    );

    // The same gateway accepts an agent with a valid certificate.
    let good = tokio::spawn(esb_agent::run(
        agent_settings(url, Some(pki.agent_tls(&pki.ca, &pki.client))),
        Arc::new(FakeBackend::new(&[], Duration::ZERO)),
        shutdown.clone(),
    ));
    let s = gateway.session().await;
    assert_eq!(s.register.node_id, "node-1");
    assert!(
        gateway.sessions.try_recv().is_err(),
        "only the agent with a valid certificate registered"
    );

    shutdown.cancel();
    for agent in [bad_client, wrong_ca, good] {
        tokio::time::timeout(WAIT, agent)
            .await
            .expect("agent stops in time")
            .expect("agent task")
            .expect("agent result");
    }
    drop(s);
    gateway.stop().await;
}

#[tokio::test]
async fn plain_http_gateway_for_local_development() {
    let mut gateway = start_gateway("127.0.0.1:0".parse().expect("addr"), None).await;
    let backend = Arc::new(FakeBackend::new(&[], Duration::ZERO));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(esb_agent::run(
        agent_settings(format!("http://127.0.0.1:{}", gateway.addr.port()), None),
        Arc::clone(&backend),
        shutdown.clone(),
    ));
    let mut s = gateway.session().await;
    assert!(s.register.workers.is_empty());
    s.send(1, create("w-1")).await;
    let r = s.reply().await;
    assert_eq!(r.id, 1);
    assert!(matches!(r.result, Some(reply::Result::Worker(_))), "{r:?}");
    shutdown.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("agent stops in time")
        .expect("agent task")
        .expect("agent result");
    drop(s);
    gateway.stop().await;
}
