//! The agent's typed settings. The binary builds them from its `Config`;
//! libraries and tests build them directly.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Everything [`crate::run`] needs besides the backend.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Where the gateway is and how to authenticate.
    pub gateway: GatewaySettings,
    /// What this node announces in `Register`.
    pub node: NodeSettings,
    /// Delays between connection attempts.
    pub reconnect: ReconnectSettings,
    /// Commands run at once; further commands wait (a slow create does not
    /// block a destroy unless this many creates are in flight).
    pub command_concurrency: usize,
    /// How long commands in flight may finish when a session ends or the
    /// agent shuts down before they are abandoned.
    pub drain_timeout: Duration,
    /// Heartbeat interval when the gateway's `Registered` does not set one.
    pub default_heartbeat: Duration,
}

impl AgentSettings {
    /// Settings with defaults for everything but the gateway URL and node id:
    /// no TLS (set `gateway.tls` for `https://`), capacity 1 GiB / 8 workers.
    pub fn new(gateway_url: impl Into<String>, node_id: impl Into<String>) -> Self {
        Self {
            gateway: GatewaySettings {
                url: gateway_url.into(),
                tls: None,
                connect_timeout: Duration::from_secs(5),
                register_timeout: Duration::from_secs(10),
                keepalive_interval: Duration::from_secs(10),
                keepalive_timeout: Duration::from_secs(10),
            },
            node: NodeSettings {
                node_id: node_id.into(),
                memory_mb: 1024,
                max_workers: 8,
                labels: BTreeMap::new(),
            },
            reconnect: ReconnectSettings::default(),
            command_concurrency: 64,
            drain_timeout: Duration::from_secs(20),
            default_heartbeat: Duration::from_secs(10),
        }
    }

    /// Checks what can be checked without the network: the gateway URL and
    /// that the TLS material parses. [`crate::run`] does the same first.
    pub fn check(&self) -> Result<(), crate::AgentError> {
        crate::connection::endpoint(&self.gateway).map(|_| ())
    }
}

/// How to reach the gateway.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// `https://host:port` (requires `tls`) or `http://host:port` (no TLS).
    pub url: String,
    /// mTLS material; required for `https://` URLs, refused for `http://`.
    pub tls: Option<TlsSettings>,
    /// Bound on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// How long the gateway has to answer `Register` with `Registered`.
    pub register_timeout: Duration,
    /// HTTP/2 keepalive ping interval, to notice a dead connection.
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered.
    pub keepalive_timeout: Duration,
}

/// PEM-encoded mTLS material. `Debug` never prints the key.
#[derive(Clone)]
pub struct TlsSettings {
    /// The CA that signed the gateway's server certificate.
    pub ca_pem: Vec<u8>,
    /// The agent's client certificate (chain).
    pub cert_pem: Vec<u8>,
    /// The agent's private key.
    pub key_pem: Vec<u8>,
    /// The name to verify the server certificate against, when it differs
    /// from the URL's host.
    pub server_name: Option<String>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca_pem", &format_args!("<{} bytes>", self.ca_pem.len()))
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// What the node announces when it registers.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The node's id, unique in the box (the Docker backend labels its
    /// containers with it).
    pub node_id: String,
    /// Memory the node offers to workers.
    pub memory_mb: u64,
    /// Workers the node runs at most.
    pub max_workers: u32,
    /// Free-form scheduling labels.
    pub labels: BTreeMap<String, String>,
}

/// Exponential backoff between connection attempts: the delay doubles from
/// `initial` up to `max`, each delay jittered to 50-100 % of its value, and
/// resets after a session that registered.
#[derive(Debug, Clone, Copy)]
pub struct ReconnectSettings {
    /// The first delay.
    pub initial: Duration,
    /// The cap.
    pub max: Duration,
}

impl Default for ReconnectSettings {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}
