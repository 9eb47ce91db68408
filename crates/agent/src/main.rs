//! `esb-agent`: parses its configuration, installs tracing and runs the
//! agent library with the Docker or the containerd backend
//! (`ESB_AGENT_BACKEND`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use esb_agent::backend::containerd::{
    CniNetwork, ContainerdBackend, ContainerdConfig, DEFAULT_INIT,
};
use esb_agent::backend::docker::{AddressMode, DockerBackend, DockerConfig};
use esb_agent::settings::{AgentSettings, TlsSettings};
use esb_agent::{Agent, Backend};
use esb_contracts::service::{cancel_on_signal, init_tracing, LogFormat, EXIT_BAD_CONFIG};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where the metrics listener (`/metrics`, `/health`) binds by default.
const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9091";

/// The ESB agent: runs function workers on this node for the gateway.
#[derive(Debug, Parser)]
#[command(
    name = "esb-agent",
    version,
    after_help = "`esb-agent healthcheck` probes a running agent instead: exit 0 when GET /health \
                  on ESB_AGENT_METRICS_ADDR answers 200 (the image's health check)."
)]
struct Config {
    /// The gateway's gRPC URL: https://host:port (mTLS) or http://host:port.
    #[arg(long, env = "ESB_GATEWAY_URL")]
    gateway_url: String,
    /// This node's id (default: the hostname).
    #[arg(long, env = "ESB_NODE_ID")]
    node_id: Option<String>,
    /// PEM file of the CA that signed the gateway's certificate.
    #[arg(long, env = "ESB_AGENT_CA")]
    ca: Option<PathBuf>,
    /// PEM file of the agent's client certificate.
    #[arg(long, env = "ESB_AGENT_CERT")]
    cert: Option<PathBuf>,
    /// PEM file of the agent's private key.
    #[arg(long, env = "ESB_AGENT_KEY")]
    key: Option<PathBuf>,
    /// Name to verify the gateway's certificate against (default: the URL's host).
    #[arg(long, env = "ESB_GATEWAY_TLS_NAME")]
    gateway_tls_name: Option<String>,
    /// The backend that runs workers: docker or containerd.
    #[arg(long, env = "ESB_AGENT_BACKEND", value_enum, default_value = "docker")]
    backend: BackendArg,
    /// containerd's socket (containerd backend).
    #[arg(
        long,
        env = "ESB_CONTAINERD_ADDRESS",
        default_value = "/run/containerd/containerd.sock"
    )]
    containerd_address: PathBuf,
    /// containerd's namespace for workers (containerd backend).
    #[arg(long, env = "ESB_CONTAINERD_NAMESPACE", default_value = "esb")]
    containerd_namespace: String,
    /// The workers' CNI network list (containerd backend).
    #[arg(
        long,
        env = "ESB_CNI_CONF_FILE",
        default_value = "/etc/esb/cni/esb.conflist"
    )]
    cni_conf_file: PathBuf,
    /// The directory of the CNI plugins (containerd backend).
    #[arg(long, env = "ESB_CNI_BIN_DIR", default_value = "/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    /// The workers' DNS server (containerd backend).
    #[arg(long, env = "ESB_WORKER_DNS", default_value = "10.88.0.1")]
    worker_dns: std::net::Ipv4Addr,
    /// PEM file of the CA the registry's certificate is checked against
    /// (containerd backend; the only root it trusts).
    #[arg(long, env = "ESB_REGISTRY_CA")]
    registry_ca: Option<PathBuf>,
    /// The node state directory, at the same path in the agent and in
    /// containerd's node (containerd backend).
    #[arg(long, env = "ESB_NODE_STATE_DIR", default_value = "/var/lib/esb-node")]
    node_state_dir: PathBuf,
    /// A static init on the node, run as every worker's PID 1; empty: none
    /// (containerd backend).
    #[arg(long, env = "ESB_WORKER_INIT", default_value = DEFAULT_INIT)]
    worker_init: PathBuf,
    /// The Docker daemon's socket.
    #[arg(
        long,
        env = "ESB_DOCKER_SOCKET",
        default_value = "/var/run/docker.sock"
    )]
    docker_socket: PathBuf,
    /// The Docker network workers join.
    #[arg(long, env = "ESB_DOCKER_NETWORK", default_value = "bridge")]
    docker_network: String,
    /// How worker addresses are formed: network (container IP) or loopback
    /// (port published on 127.0.0.1).
    #[arg(
        long,
        env = "ESB_WORKER_ADDRESS_MODE",
        value_enum,
        default_value = "network"
    )]
    worker_address_mode: AddressModeArg,
    /// Seconds a worker has to become ready.
    #[arg(long, env = "ESB_WORKER_START_TIMEOUT", default_value_t = 30)]
    worker_start_timeout: u64,
    /// The stack label of this box's workers.
    #[arg(long, env = "ESB_STACK", default_value = "esb")]
    stack: String,
    /// Memory offered to workers, in MB (default: the machine's memory).
    #[arg(long, env = "ESB_NODE_MEMORY_MB")]
    node_memory_mb: Option<u64>,
    /// Workers at most (default: memory / 128 MB).
    #[arg(long, env = "ESB_NODE_MAX_WORKERS")]
    node_max_workers: Option<u32>,
    /// Scheduling labels: k=v,k2=v2.
    #[arg(long, env = "ESB_NODE_LABELS", default_value = "")]
    node_labels: String,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "ESB_AGENT_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    metrics_addr: SocketAddr,
    /// Log format: text or json.
    #[arg(long, env = "ESB_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// `esb-agent healthcheck`: the health check of the agent's image, which has
/// no shell or curl. Exit 0 when the agent's `GET /health` answers 200.
#[derive(Debug, Parser)]
#[command(name = "esb-agent healthcheck")]
struct HealthcheckConfig {
    /// Address of the agent's metrics listener (a 0.0.0.0 address is probed
    /// on 127.0.0.1).
    #[arg(long, env = "ESB_AGENT_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    metrics_addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Docker,
    Containerd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AddressModeArg {
    Network,
    Loopback,
}

/// The validated configuration.
struct Validated {
    settings: AgentSettings,
    backend: BackendConfig,
    metrics_addr: SocketAddr,
}

/// The backend and its settings.
enum BackendConfig {
    Docker(DockerConfig),
    Containerd(ContainerdConfig),
}

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "healthcheck")
    {
        return healthcheck();
    }
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_BAD_CONFIG),
            };
        }
    };
    init_tracing(config.log_format);
    let validated = match validate(config) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("invalid configuration: {e:#}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(validated)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck() -> ExitCode {
    // The first argument, "healthcheck", stands in for the program name.
    let config = match HealthcheckConfig::try_parse_from(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let addr = esb_contracts::health::loopback(config.metrics_addr);
    if esb_contracts::health::probe(addr, esb_agent::metrics::HEALTH_PATH) {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "esb-agent: no 200 from http://{addr}{}",
            esb_agent::metrics::HEALTH_PATH
        );
        ExitCode::FAILURE
    }
}

async fn serve(v: Validated) -> anyhow::Result<()> {
    let metrics_listener = TcpListener::bind(v.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", v.metrics_addr))?;
    match v.backend {
        BackendConfig::Docker(config) => {
            let backend = Arc::new(
                DockerBackend::connect(config)
                    .await
                    .context("cannot use the Docker daemon")?,
            );
            let result = serve_with(v.settings, Arc::clone(&backend), metrics_listener).await;
            backend.close().await;
            result
        }
        BackendConfig::Containerd(config) => {
            let backend = Arc::new(
                ContainerdBackend::connect(config)
                    .await
                    .context("cannot use containerd")?,
            );
            let result = serve_with(v.settings, Arc::clone(&backend), metrics_listener).await;
            backend.close().await;
            result
        }
    }
}

/// Runs the agent with `backend` until a signal; the caller closes the
/// backend.
async fn serve_with<B: Backend>(
    settings: AgentSettings,
    backend: Arc<B>,
    metrics_listener: TcpListener,
) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let agent = Agent::new(settings, backend);
    let metrics = tokio::spawn(esb_agent::metrics::serve(
        metrics_listener,
        agent.metrics(),
        shutdown.clone(),
    ));
    let signals = tokio::spawn(cancel_on_signal(shutdown.clone()));
    let result = agent.run(shutdown.clone()).await;
    shutdown.cancel();
    // Ends once `shutdown` is cancelled.
    let _ = signals.await;
    match metrics.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("metrics endpoint failed: {e}"),
        Err(e) => tracing::warn!("metrics endpoint task failed: {e}"),
    }
    result.context("the agent stopped")
}

fn validate(c: Config) -> anyhow::Result<Validated> {
    let https = c.gateway_url.starts_with("https://");
    if !https && !c.gateway_url.starts_with("http://") {
        anyhow::bail!("ESB_GATEWAY_URL must start with https:// or http://");
    }
    let tls = match (&c.ca, &c.cert, &c.key) {
        (Some(ca), Some(cert), Some(key)) => {
            if !https {
                anyhow::bail!("ESB_AGENT_CA/CERT/KEY are set but ESB_GATEWAY_URL is plain http://");
            }
            Some(TlsSettings {
                ca_pem: read_pem(ca, "ESB_AGENT_CA")?,
                cert_pem: read_pem(cert, "ESB_AGENT_CERT")?,
                key_pem: read_pem(key, "ESB_AGENT_KEY")?,
                server_name: c.gateway_tls_name.clone(),
            })
        }
        (None, None, None) => {
            if https {
                anyhow::bail!(
                    "an https:// gateway needs ESB_AGENT_CA, ESB_AGENT_CERT and ESB_AGENT_KEY"
                );
            }
            None
        }
        _ => anyhow::bail!("ESB_AGENT_CA, ESB_AGENT_CERT and ESB_AGENT_KEY must be set together"),
    };
    let node_id = match c.node_id.clone() {
        Some(id) => id,
        None => hostname().context("ESB_NODE_ID is not set and the hostname cannot be read")?,
    };
    check_label_value("ESB_NODE_ID", &node_id)?;
    check_label_value("ESB_STACK", &c.stack)?;
    if c.docker_network.trim().is_empty() {
        anyhow::bail!("ESB_DOCKER_NETWORK must not be empty");
    }
    if c.worker_start_timeout == 0 || c.worker_start_timeout > 900 {
        anyhow::bail!("ESB_WORKER_START_TIMEOUT must be 1-900 seconds");
    }
    let memory_mb = match c.node_memory_mb {
        Some(0) => anyhow::bail!("ESB_NODE_MEMORY_MB must be positive"),
        Some(m) => m,
        None => machine_memory_mb()
            .context("ESB_NODE_MEMORY_MB is not set and /proc/meminfo cannot be read")?,
    };
    let max_workers = match c.node_max_workers {
        Some(0) => anyhow::bail!("ESB_NODE_MAX_WORKERS must be positive"),
        Some(n) => n,
        None => u32::try_from((memory_mb / 128).max(1)).unwrap_or(u32::MAX),
    };
    let labels = parse_labels(&c.node_labels)?;

    let mut settings = AgentSettings::new(c.gateway_url.clone(), node_id.clone());
    settings.gateway.tls = tls;
    settings.node.memory_mb = memory_mb;
    settings.node.max_workers = max_workers;
    settings.node.labels = labels;
    // The URL and the TLS material are checked now, to exit 64.
    settings.check().context("ESB_GATEWAY_URL / TLS settings")?;

    let start_timeout = Duration::from_secs(c.worker_start_timeout);
    let backend = match c.backend {
        BackendArg::Docker => {
            let mut docker = DockerConfig::new(node_id, c.stack.clone());
            docker.socket = c.docker_socket.clone();
            docker.network = c.docker_network.clone();
            docker.address_mode = match c.worker_address_mode {
                AddressModeArg::Network => AddressMode::Network,
                AddressModeArg::Loopback => AddressMode::Loopback,
            };
            docker.start_timeout = start_timeout;
            BackendConfig::Docker(docker)
        }
        BackendArg::Containerd => {
            let mut ctd = containerd_config(&c, node_id)?;
            ctd.start_timeout = start_timeout;
            BackendConfig::Containerd(ctd)
        }
    };
    Ok(Validated {
        settings,
        backend,
        metrics_addr: c.metrics_addr,
    })
}

/// The containerd backend's settings, checked: the socket, the CNI list and
/// its plugins, the state directory, the registry CA.
fn containerd_config(c: &Config, node_id: String) -> anyhow::Result<ContainerdConfig> {
    use std::os::unix::fs::FileTypeExt;
    let socket = &c.containerd_address;
    match std::fs::metadata(socket) {
        Ok(m) if m.file_type().is_socket() => {}
        Ok(_) => anyhow::bail!(
            "ESB_CONTAINERD_ADDRESS: {} is not a socket",
            socket.display()
        ),
        Err(_) => anyhow::bail!(
            "ESB_CONTAINERD_ADDRESS: no containerd socket at {}",
            socket.display()
        ),
    }
    check_label_value("ESB_CONTAINERD_NAMESPACE", &c.containerd_namespace)?;
    CniNetwork::load(&c.cni_conf_file, &c.cni_bin_dir)
        .context("ESB_CNI_CONF_FILE / ESB_CNI_BIN_DIR")?;
    if !c.node_state_dir.is_dir() {
        anyhow::bail!(
            "ESB_NODE_STATE_DIR: {} is not a directory (it must be the node's state volume)",
            c.node_state_dir.display()
        );
    }
    let registry_ca = match &c.registry_ca {
        Some(path) => Some(read_pem(path, "ESB_REGISTRY_CA")?),
        None => None,
    };
    let mut ctd = ContainerdConfig::new(node_id, c.stack.clone());
    ctd.socket = socket.clone();
    ctd.namespace = c.containerd_namespace.clone();
    ctd.cni_conf_file = c.cni_conf_file.clone();
    ctd.cni_bin_dir = c.cni_bin_dir.clone();
    ctd.worker_dns = c.worker_dns;
    ctd.state_dir = c.node_state_dir.clone();
    ctd.registry_ca = registry_ca;
    ctd.init = Some(c.worker_init.clone()).filter(|p| !p.as_os_str().is_empty());
    if let Some(init) = ctd.init.as_ref().filter(|p| !p.is_absolute()) {
        anyhow::bail!(
            "ESB_WORKER_INIT: {} is not an absolute path (on the node)",
            init.display()
        );
    }
    Ok(ctd)
}

fn read_pem(path: &PathBuf, var: &str) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("{var}: cannot read {}", path.display()))?;
    if !bytes.starts_with(b"-----BEGIN") && !String::from_utf8_lossy(&bytes).contains("-----BEGIN")
    {
        anyhow::bail!("{var}: {} is not a PEM file", path.display());
    }
    Ok(bytes)
}

/// Node ids and stacks become Docker label values and name parts.
fn check_label_value(var: &str, value: &str) -> anyhow::Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        anyhow::bail!("{var} must be 1-64 characters of [A-Za-z0-9_.-]")
    }
}

fn parse_labels(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            anyhow::bail!("ESB_NODE_LABELS: {pair:?} is not key=value");
        };
        let k = k.trim();
        if k.is_empty() {
            anyhow::bail!("ESB_NODE_LABELS: empty key in {pair:?}");
        }
        labels.insert(k.to_owned(), v.trim().to_owned());
    }
    Ok(labels)
}

fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))?;
    Ok(name.trim().to_owned())
}

fn machine_memory_mb() -> anyhow::Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .context("no MemTotal in /proc/meminfo")?;
    Ok(kb / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse() {
        let l = parse_labels("zone=a, gpu=false").expect("labels");
        assert_eq!(l.get("zone").map(String::as_str), Some("a"));
        assert_eq!(l.get("gpu").map(String::as_str), Some("false"));
        assert!(parse_labels("").expect("empty").is_empty());
        assert!(parse_labels("novalue").is_err());
        assert!(parse_labels("=v").is_err());
    }

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["esb-agent", "--node-id", "n1", "--node-memory-mb", "1024"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).expect("parse")
    }

    #[test]
    fn https_needs_all_three_tls_files_and_http_none() {
        assert!(validate(config(&["--gateway-url", "http://gw:50051"])).is_ok());
        assert!(validate(config(&["--gateway-url", "https://gw:50051"])).is_err());
        assert!(validate(config(&[
            "--gateway-url",
            "https://gw:50051",
            "--ca",
            "/nonexistent"
        ]))
        .is_err());
        assert!(validate(config(&["--gateway-url", "grpc://gw:50051"])).is_err());
    }

    #[test]
    fn healthcheck_takes_the_metrics_address() {
        let c =
            HealthcheckConfig::try_parse_from(["healthcheck", "--metrics-addr", "0.0.0.0:9191"])
                .expect("parse");
        assert_eq!(
            esb_contracts::health::loopback(c.metrics_addr),
            "127.0.0.1:9191".parse::<SocketAddr>().expect("addr")
        );
        assert!(HealthcheckConfig::try_parse_from(["healthcheck", "--gateway-url", "x"]).is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(validate(config(&["--gateway-url", "http://gw:1", "--stack", "a b"])).is_err());
        assert!(validate(config(&[
            "--gateway-url",
            "http://gw:1",
            "--node-max-workers",
            "0"
        ]))
        .is_err());
        let v = validate(config(&["--gateway-url", "http://gw:1"])).expect("valid");
        assert_eq!(v.settings.node.max_workers, 8);
        assert!(matches!(v.backend, BackendConfig::Docker(_)));
    }

    #[test]
    fn containerd_needs_its_socket_and_says_which_path() {
        let err = validate(config(&[
            "--gateway-url",
            "http://gw:1",
            "--backend",
            "containerd",
            "--containerd-address",
            "/nonexistent/containerd.sock",
        ]))
        .err()
        .expect("no socket");
        assert_eq!(
            format!("{err:#}"),
            "ESB_CONTAINERD_ADDRESS: no containerd socket at /nonexistent/containerd.sock"
        );
        assert!(
            Config::try_parse_from(["esb-agent", "--gateway-url", "x", "--backend", "podman"])
                .is_err()
        );
    }
}
