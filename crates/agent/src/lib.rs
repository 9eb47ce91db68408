//! The ESB agent: runs function workers on one compute node for the gateway.
//!
//! The agent dials the gateway's gRPC port ([`settings::GatewaySettings`],
//! mTLS or plain `http://` for development), registers its node and keeps one
//! bidirectional `Connect` stream (DESIGN.md §2): the gateway sends
//! commands, the agent answers each with one reply of the same id, reports
//! worker events (exits, OOM kills) and heartbeats, and reconnects with a
//! capped, jittered exponential backoff when the stream drops.
//!
//! Workers are created through a [`Backend`], the trait at the OS boundary.
//! [`backend::docker::DockerBackend`] drives the Docker daemon; other
//! backends (the testkit's process backend, containerd, firecracker)
//! implement the same trait outside or inside this crate.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use esb_agent::backend::docker::{DockerBackend, DockerConfig};
//! use esb_agent::settings::AgentSettings;
//! use tokio_util::sync::CancellationToken;
//!
//! let backend = Arc::new(DockerBackend::connect(DockerConfig::new("node-1", "dev")).await?);
//! let settings = AgentSettings::new("http://127.0.0.1:50051", "node-1");
//! let shutdown = CancellationToken::new();
//! esb_agent::run(settings, Arc::clone(&backend), shutdown).await?;
//! backend.close().await;
//! # Ok(()) }
//! ```

pub mod backend;
mod command;
mod connection;
pub mod metrics;
mod session;
pub mod settings;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use backend::{Backend, BackendError};
pub use metrics::AgentMetrics;
pub use settings::AgentSettings;

/// The agent <-> gateway wire types (`esb_contracts::agent`), re-exported
/// for backend implementations.
pub use esb_contracts::agent as proto;

/// Errors that stop the agent. Connection and stream failures are not among
/// them: the agent retries those until shutdown.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The gateway URL is neither `http://...` nor `https://...`.
    #[error("gateway url {url:?} must start with http:// or https://")]
    UnsupportedScheme {
        /// The URL as configured.
        url: String,
    },
    /// The gateway URL does not parse.
    #[error("invalid gateway url {url:?}")]
    InvalidGatewayUrl {
        /// The URL as configured.
        url: String,
        /// Why it does not parse.
        #[source]
        source: tonic::transport::Error,
    },
    /// An `https://` gateway needs a CA and a client certificate.
    #[error("gateway url {url:?} is https but no TLS settings (CA, certificate, key) were given")]
    MissingTls {
        /// The URL as configured.
        url: String,
    },
    /// TLS settings were given for a plain `http://` gateway.
    #[error("TLS settings were given but gateway url {url:?} is plain http")]
    TlsWithoutHttps {
        /// The URL as configured.
        url: String,
    },
    /// The CA, certificate or key cannot be used.
    #[error("invalid TLS settings for gateway {url:?}")]
    Tls {
        /// The URL as configured.
        url: String,
        /// What is wrong with them.
        #[source]
        source: tonic::transport::Error,
    },
}

/// An agent: one node's connection to the gateway, serving one backend.
pub struct Agent<B> {
    settings: AgentSettings,
    backend: Arc<B>,
    metrics: Arc<AgentMetrics>,
}

impl<B: Backend> Agent<B> {
    /// An agent for `backend` with fresh metrics.
    pub fn new(settings: AgentSettings, backend: Arc<B>) -> Self {
        Self {
            settings,
            backend,
            metrics: Arc::new(AgentMetrics::default()),
        }
    }

    /// The agent's metrics, to serve with [`metrics::serve`].
    pub fn metrics(&self) -> Arc<AgentMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Connects, registers and serves the gateway, reconnecting with backoff
    /// whenever the connection or the stream drops, until `shutdown` is
    /// cancelled. Returns an error only for settings that can never work.
    ///
    /// Shutdown stops reading commands, lets the commands in flight finish
    /// (bounded by `AgentSettings::drain_timeout`) and leaves the workers
    /// running: the next agent adopts them.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let endpoint = connection::endpoint(&self.settings.gateway)?;
        let mut backoff = connection::Backoff::new(&self.settings.reconnect);
        let ctx = session::Context {
            settings: &self.settings,
            backend: &self.backend,
            metrics: &self.metrics,
        };
        tracing::info!(
            gateway = %self.settings.gateway.url,
            node = %self.settings.node.node_id,
            tls = self.settings.gateway.tls.is_some(),
            "agent starting"
        );
        while !shutdown.is_cancelled() {
            match session::run(&ctx, &endpoint, &shutdown).await {
                Ok(session::Outcome::Shutdown) => break,
                Ok(session::Outcome::Ended { registered }) => {
                    if registered {
                        backoff.reset();
                    }
                    tracing::warn!("gateway stream ended; reconnecting");
                }
                Err(e) => {
                    if e.registered() {
                        backoff.reset();
                    }
                    tracing::warn!(error = %connection::Chain(&e), "gateway session failed; reconnecting");
                }
            }
            self.metrics.set_connected(false);
            let delay = backoff.next_delay();
            tracing::debug!(delay_ms = delay.as_millis() as u64, "reconnect backoff");
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.metrics.set_connected(false);
        tracing::info!("agent stopped; workers are left running for the next agent");
        Ok(())
    }
}

/// Runs an agent for `backend` until `shutdown` is cancelled: the library
/// entry point (`Agent::new(settings, backend).run(shutdown)`).
pub async fn run<B: Backend>(
    settings: AgentSettings,
    backend: Arc<B>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    Agent::new(settings, backend).run(shutdown).await
}
