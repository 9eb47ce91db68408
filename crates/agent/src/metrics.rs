//! The agent's Prometheus metrics: a few counters and gauges served as text
//! on `GET /metrics`, next to the liveness route `GET /health`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use esb_contracts::agent::command;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Command kinds, for per-kind counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommandKind {
    Create,
    Destroy,
    Pause,
    Resume,
    List,
    Metrics,
    Unknown,
}

impl CommandKind {
    const ALL: [Self; 7] = [
        Self::Create,
        Self::Destroy,
        Self::Pause,
        Self::Resume,
        Self::List,
        Self::Metrics,
        Self::Unknown,
    ];

    pub(crate) fn of(kind: Option<&command::Kind>) -> Self {
        match kind {
            Some(command::Kind::Create(_)) => Self::Create,
            Some(command::Kind::Destroy(_)) => Self::Destroy,
            Some(command::Kind::Pause(_)) => Self::Pause,
            Some(command::Kind::Resume(_)) => Self::Resume,
            Some(command::Kind::List(_)) => Self::List,
            Some(command::Kind::Metrics(_)) => Self::Metrics,
            None => Self::Unknown,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Destroy => "destroy",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::List => "list",
            Self::Metrics => "metrics",
            Self::Unknown => "unknown",
        }
    }
}

/// Counters and gauges of one agent. Shared (`Arc`) between the agent and
/// the metrics endpoint.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    /// `[kind][0 = ok, 1 = error]`.
    commands: [[AtomicU64; 2]; CommandKind::ALL.len()],
    workers: AtomicU64,
    worker_memory_mb: AtomicU64,
    connected: AtomicU64,
    registrations: AtomicU64,
    worker_events: AtomicU64,
}

impl AgentMetrics {
    pub(crate) fn command_done(&self, kind: CommandKind, ok: bool) {
        let index = CommandKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.commands[index][usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_workers(&self, workers: u64, memory_mb: u64) {
        self.workers.store(workers, Ordering::Relaxed);
        self.worker_memory_mb.store(memory_mb, Ordering::Relaxed);
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected
            .store(u64::from(connected), Ordering::Relaxed);
    }

    pub(crate) fn registered(&self) {
        self.registrations.fetch_add(1, Ordering::Relaxed);
        self.set_connected(true);
    }

    pub(crate) fn worker_event(&self) {
        self.worker_events.fetch_add(1, Ordering::Relaxed);
    }

    /// Commands handled so far (all kinds, both outcomes).
    pub fn commands_total(&self) -> u64 {
        self.commands
            .iter()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Successful registrations with a gateway so far.
    pub fn registrations_total(&self) -> u64 {
        self.registrations.load(Ordering::Relaxed)
    }

    /// Whether a session with the gateway is registered right now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed) == 1
    }

    /// The Prometheus text exposition of all metrics.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str(
            "# HELP esb_agent_commands_total Gateway commands handled, by kind and result.\n",
        );
        out.push_str("# TYPE esb_agent_commands_total counter\n");
        for (kind, counts) in CommandKind::ALL.iter().zip(&self.commands) {
            for (result, count) in ["ok", "error"].iter().zip(counts) {
                let _ = writeln!(
                    out,
                    "esb_agent_commands_total{{kind=\"{}\",result=\"{result}\"}} {}",
                    kind.name(),
                    load(count)
                );
            }
        }
        let gauges = [
            (
                "esb_agent_workers",
                "Workers on this node (last heartbeat).",
                "gauge",
                &self.workers,
            ),
            (
                "esb_agent_worker_memory_mb",
                "Memory reserved by the workers on this node, in MB.",
                "gauge",
                &self.worker_memory_mb,
            ),
            (
                "esb_agent_connected",
                "1 while registered with a gateway.",
                "gauge",
                &self.connected,
            ),
            (
                "esb_agent_registrations_total",
                "Registrations with a gateway.",
                "counter",
                &self.registrations,
            ),
            (
                "esb_agent_worker_events_total",
                "Worker events (exits, OOM kills) reported.",
                "counter",
                &self.worker_events,
            ),
        ];
        for (name, help, kind, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                load(value)
            );
        }
        out
    }
}

/// The liveness route on the metrics listener (`esb-agent healthcheck`
/// probes it).
pub const HEALTH_PATH: &str = "/health";

/// Serves `GET /metrics` and `GET /health` on `listener` until `shutdown` is
/// cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<AgentMetrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .route(HEALTH_PATH, get(health))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn render(State(metrics): State<Arc<AgentMetrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

/// `200` whenever the agent process is up and serving, whether or not it is
/// registered with a gateway right now (it reconnects on its own); the body
/// says which, for people: `{"status":"up","connected":true}`.
async fn health(State(metrics): State<Arc<AgentMetrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            "{{\"status\":\"up\",\"connected\":{}}}\n",
            metrics.is_connected()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_kind_and_result() {
        let m = AgentMetrics::default();
        m.command_done(CommandKind::Create, true);
        m.command_done(CommandKind::Create, false);
        m.command_done(CommandKind::Destroy, true);
        m.set_workers(3, 384);
        m.registered();
        let text = m.render();
        assert!(text.contains("esb_agent_commands_total{kind=\"create\",result=\"ok\"} 1"));
        assert!(text.contains("esb_agent_commands_total{kind=\"create\",result=\"error\"} 1"));
        assert!(text.contains("esb_agent_commands_total{kind=\"destroy\",result=\"ok\"} 1"));
        assert!(text.contains("esb_agent_workers 3\n"));
        assert!(text.contains("esb_agent_connected 1\n"));
        assert_eq!(m.commands_total(), 3);
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(AgentMetrics::default());
        metrics.registered();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics), shutdown.clone()));
        let body = get(addr, "/metrics").await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("esb_agent_registrations_total 1"), "{body}");
        shutdown.cancel();
        server.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn health_is_up_with_or_without_a_gateway() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(AgentMetrics::default());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics), shutdown.clone()));
        let body = get(addr, HEALTH_PATH).await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(
            body.ends_with("{\"status\":\"up\",\"connected\":false}\n"),
            "{body}"
        );
        metrics.registered();
        let body = get(addr, HEALTH_PATH).await;
        assert!(
            body.ends_with("{\"status\":\"up\",\"connected\":true}\n"),
            "{body}"
        );
        // The probe the image's health check runs.
        let probe =
            tokio::task::spawn_blocking(move || esb_contracts::health::probe(addr, HEALTH_PATH));
        assert!(probe.await.expect("probe"));
        shutdown.cancel();
        server.await.expect("join").expect("serve");
        let probe =
            tokio::task::spawn_blocking(move || esb_contracts::health::probe(addr, HEALTH_PATH));
        assert!(
            !probe.await.expect("probe"),
            "nothing listens after shutdown"
        );
    }
}
