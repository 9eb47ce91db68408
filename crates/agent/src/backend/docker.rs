//! The Docker backend: one container per worker, through the Docker Engine
//! API on the daemon's Unix socket (`bollard`).
//!
//! Containers carry the labels `esb.node`, `esb.stack`, `esb.function`,
//! `esb.worker` (the gateway's worker id), `esb.owner`, `esb.memory` and
//! `esb.image`; the node and stack labels together are how the backend finds
//! its containers again after a restart (several boxes, each with its own
//! stack, may share one daemon and even one node id). Workers run
//! unprivileged (`user`, all capabilities dropped, `no-new-privileges`),
//! with a read-only root and a writable tmpfs `/tmp`, `MemorySize` as a hard
//! limit without swap, CPU proportional to memory (1769 MB = 1 vCPU, as
//! Lambda), a pids limit and `docker-init` as PID 1.
//!
//! Network safety: the backend probes a worker's `/health` only on an
//! address it has a local route to. In [`AddressMode::Loopback`] that is
//! `127.0.0.1:<published port>`; in [`AddressMode::Network`] it is the
//! container's IP on the configured network, and only when that network is
//! directly connected to the agent (the agent runs inside the box, attached
//! to it). Any other address is refused with [`BackendError::Unroutable`].

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, SystemTime};

use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerState, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryStateEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StatsOptionsBuilder,
};
use bollard::Docker;
use esb_contracts::agent::{
    CreateWorker, RuntimeKind, Worker, WorkerEvent, WorkerMetrics, WorkerState,
};
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::health;
use super::marks::{MarkTable, Marks, StartingMark};
use super::{Backend, BackendError};

mod events;
mod network;
mod spec;

/// Label keys on every worker container.
pub mod label {
    /// The node (agent) that owns the container.
    pub const NODE: &str = "esb.node";
    /// The stack (box) the worker belongs to.
    pub const STACK: &str = "esb.stack";
    /// The function the worker runs.
    pub const FUNCTION: &str = "esb.function";
    /// The gateway's worker id.
    pub const WORKER: &str = "esb.worker";
    /// The gateway instance that owns the worker.
    pub const OWNER: &str = "esb.owner";
    /// The worker's memory limit in MB.
    pub const MEMORY: &str = "esb.memory";
    /// The image as requested.
    pub const IMAGE: &str = "esb.image";
}

/// The worker shim's invoke port inside the container.
const INVOKE_PORT: u16 = 8080;
const INVOKE_PORT_KEY: &str = "8080/tcp";
const NANOS_PER_CPU: i64 = 1_000_000_000;
/// How many of a failed worker's last log lines go into the error.
const LOG_TAIL_LINES: &str = "40";
const LOG_TAIL_MAX_BYTES: usize = 4096;
const EVENT_CHANNEL: usize = 256;

/// How the gateway (and the agent's readiness probe) reach a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMode {
    /// The container's IP on the configured network, port 8080: for agents
    /// running inside the box network.
    Network,
    /// Port 8080 published on `127.0.0.1` with an ephemeral host port: for a
    /// developer host and tests.
    Loopback,
}

impl FromStr for AddressMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "network" => Ok(Self::Network),
            "loopback" => Ok(Self::Loopback),
            other => Err(format!(
                "unknown worker address mode {other:?} (expected network or loopback)"
            )),
        }
    }
}

/// Settings of the Docker backend.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The Docker daemon's socket.
    pub socket: PathBuf,
    /// This node's id (`esb.node` label).
    pub node_id: String,
    /// The stack label (`esb.stack`) and container name prefix.
    pub stack: String,
    /// The Docker network workers join.
    pub network: String,
    /// How worker addresses are formed.
    pub address_mode: AddressMode,
    /// How long a worker has to answer `/health` with 200.
    pub start_timeout: Duration,
    /// The user workers run as (`uid:gid`).
    pub user: String,
    /// Processes per worker at most.
    pub pids_limit: i64,
    /// Size of the writable `/tmp` tmpfs (counts against the memory limit).
    pub tmp_size_mb: u32,
    /// The CPU floor in nano-CPUs (small functions still get this much).
    pub min_nano_cpus: i64,
    /// Pull missing images, bounded by this timeout; `None` never pulls
    /// (images are built on the machine).
    pub pull_timeout: Option<Duration>,
    /// Bound on each Docker API request.
    pub api_timeout: Duration,
}

impl DockerConfig {
    /// Defaults: `/var/run/docker.sock`, network `bridge`, loopback
    /// addresses, 30 s start timeout, user `993:993`, 256 pids, 512 MB
    /// `/tmp`, a floor of 0.25 vCPU, no pulls.
    pub fn new(node_id: impl Into<String>, stack: impl Into<String>) -> Self {
        Self {
            socket: PathBuf::from("/var/run/docker.sock"),
            node_id: node_id.into(),
            stack: stack.into(),
            network: "bridge".into(),
            address_mode: AddressMode::Loopback,
            start_timeout: Duration::from_secs(30),
            user: "993:993".into(),
            pids_limit: 256,
            tmp_size_mb: 512,
            min_nano_cpus: NANOS_PER_CPU / 4,
            pull_timeout: None,
            api_timeout: Duration::from_secs(60),
        }
    }
}

/// Workers as Docker containers. Create it with [`DockerBackend::connect`];
/// call [`DockerBackend::close`] to stop its event watcher.
pub struct DockerBackend {
    inner: Arc<Inner>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

struct Inner {
    docker: Docker,
    config: DockerConfig,
    host_nano_cpus: i64,
    events: broadcast::Sender<WorkerEvent>,
    marks: MarkTable,
}

impl DockerBackend {
    /// Connects to the daemon (negotiating the API version), checks the
    /// network in [`AddressMode::Network`] and starts watching the daemon's
    /// events for this node's containers.
    pub async fn connect(config: DockerConfig) -> Result<Self, BackendError> {
        let node_err = |operation| {
            move |source| BackendError::Docker {
                operation,
                worker_id: String::new(),
                source,
            }
        };
        let socket = config.socket.to_string_lossy().into_owned();
        let docker = Docker::connect_with_unix(
            &socket,
            config.api_timeout.as_secs().max(1),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(node_err("connect"))?
        .negotiate_version()
        .await
        .map_err(node_err("version negotiation"))?;
        let info = docker.info().await.map_err(node_err("info"))?;
        let host_nano_cpus = info.ncpu.unwrap_or(1).max(1) * NANOS_PER_CPU;
        if config.address_mode == AddressMode::Network {
            network::check_network_attached(&docker, &config.network).await?;
        }
        let (events, _) = broadcast::channel(EVENT_CHANNEL);
        let inner = Arc::new(Inner {
            docker,
            config,
            host_nano_cpus,
            events,
            marks: MarkTable::default(),
        });
        inner.reap_stopped().await?;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(events::watch_events(
            Arc::clone(&inner),
            stop.clone(),
            events::docker_timestamp(SystemTime::now()),
        ));
        tracing::info!(
            node = %inner.config.node_id,
            network = %inner.config.network,
            mode = ?inner.config.address_mode,
            "docker backend ready"
        );
        Ok(Self { inner, tasks, stop })
    }

    /// Stops the event watcher and waits for it. Workers keep running.
    pub async fn close(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The backend's settings.
    pub fn config(&self) -> &DockerConfig {
        &self.inner.config
    }
}

impl Drop for DockerBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Backend for DockerBackend {
    fn runtime(&self) -> RuntimeKind {
        RuntimeKind::Docker
    }

    async fn create(&self, spec: CreateWorker) -> Result<Worker, BackendError> {
        self.inner.create(spec).await
    }

    async fn destroy(&self, worker_id: &str) -> Result<(), BackendError> {
        let container = self.inner.find(worker_id).await?;
        let id = container.id.unwrap_or_default();
        self.inner.remove_container(&id, worker_id).await
    }

    async fn pause(&self, worker_id: &str) -> Result<(), BackendError> {
        let container = self.inner.find(worker_id).await?;
        match container.state {
            Some(ContainerSummaryStateEnum::RUNNING) => {}
            other => return Err(invalid_state(worker_id, "pause", other)),
        }
        let id = container.id.unwrap_or_default();
        self.inner
            .docker
            .pause_container(&id)
            .await
            .map_err(|e| self.inner.worker_error("pause container", worker_id, e))
    }

    async fn resume(&self, worker_id: &str) -> Result<(), BackendError> {
        let container = self.inner.find(worker_id).await?;
        match container.state {
            Some(ContainerSummaryStateEnum::PAUSED) => {}
            other => return Err(invalid_state(worker_id, "resume", other)),
        }
        let id = container.id.unwrap_or_default();
        self.inner
            .docker
            .unpause_container(&id)
            .await
            .map_err(|e| self.inner.worker_error("unpause container", worker_id, e))
    }

    async fn list(&self) -> Result<Vec<Worker>, BackendError> {
        let containers = self.inner.containers(None).await?;
        let starting = self.inner.marks().starting.clone();
        Ok(containers
            .iter()
            .filter_map(|c| self.inner.worker(c, &starting))
            .collect())
    }

    async fn metrics(&self, worker_id: &str) -> Result<WorkerMetrics, BackendError> {
        self.inner.metrics(worker_id).await
    }

    async fn adopt(&self) -> Result<Vec<Worker>, BackendError> {
        self.inner.adopt().await
    }

    fn events(&self) -> broadcast::Receiver<WorkerEvent> {
        self.inner.events.subscribe()
    }
}

impl Inner {
    fn marks(&self) -> MutexGuard<'_, Marks> {
        self.marks.lock()
    }

    fn worker_error(
        &self,
        operation: &'static str,
        worker_id: &str,
        e: DockerError,
    ) -> BackendError {
        if is_status(&e, 404) {
            BackendError::NotFound {
                worker_id: worker_id.to_owned(),
            }
        } else {
            BackendError::Docker {
                operation,
                worker_id: worker_id.to_owned(),
                source: e,
            }
        }
    }

    /// This node's containers of this stack, optionally only the one of
    /// `worker_id`.
    async fn containers(
        &self,
        worker_id: Option<&str>,
    ) -> Result<Vec<ContainerSummary>, BackendError> {
        let mut labels = own_labels(&self.config);
        if let Some(w) = worker_id {
            labels.push(format!("{}={w}", label::WORKER));
        }
        let filters = HashMap::from([("label", labels)]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|source| BackendError::Docker {
                operation: "list containers",
                worker_id: worker_id.unwrap_or_default().to_owned(),
                source,
            })
    }

    async fn find(&self, worker_id: &str) -> Result<ContainerSummary, BackendError> {
        self.containers(Some(worker_id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| BackendError::NotFound {
                worker_id: worker_id.to_owned(),
            })
    }

    /// The wire view of a container; `None` for containers without a
    /// worker label.
    fn worker(&self, c: &ContainerSummary, starting: &HashSet<String>) -> Option<Worker> {
        let labels = c.labels.as_ref()?;
        let worker_id = labels.get(label::WORKER)?.clone();
        let state = if starting.contains(&worker_id) {
            WorkerState::Starting
        } else {
            summary_state(c.state)
        };
        let address = match state {
            WorkerState::Exited => String::new(),
            _ => self
                .summary_address(c)
                .map(|a| a.to_string())
                .unwrap_or_default(),
        };
        let text = |key: &str| labels.get(key).cloned().unwrap_or_default();
        Some(Worker {
            function: text(label::FUNCTION),
            address,
            state: state as i32,
            backend_id: c.id.clone().unwrap_or_default(),
            owner: text(label::OWNER),
            memory_mb: labels
                .get(label::MEMORY)
                .and_then(|m| m.parse().ok())
                .unwrap_or(0),
            image: labels
                .get(label::IMAGE)
                .cloned()
                .or_else(|| c.image.clone())
                .unwrap_or_default(),
            worker_id,
        })
    }

    /// The worker's invoke address from a list entry.
    fn summary_address(&self, c: &ContainerSummary) -> Option<SocketAddr> {
        match self.config.address_mode {
            AddressMode::Loopback => c.ports.as_ref()?.iter().find_map(|p| {
                let loopback = p.ip.as_deref() == Some("127.0.0.1");
                (p.private_port == INVOKE_PORT && loopback)
                    .then_some(p.public_port)
                    .flatten()
                    .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            }),
            AddressMode::Network => {
                let networks = c.network_settings.as_ref()?.networks.as_ref()?;
                let ip = networks.get(&self.config.network)?.ip_address.as_deref()?;
                let ip: Ipv4Addr = ip.parse().ok()?;
                Some(SocketAddr::from((ip, INVOKE_PORT)))
            }
        }
    }

    /// The worker's invoke address from an inspect, once started.
    async fn inspect_address(
        &self,
        id: &str,
        worker_id: &str,
    ) -> Result<Option<SocketAddr>, BackendError> {
        let inspect = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| self.worker_error("inspect container", worker_id, e))?;
        let settings = inspect.network_settings.unwrap_or_default();
        Ok(match self.config.address_mode {
            AddressMode::Loopback => settings
                .ports
                .and_then(|mut ports| ports.remove(INVOKE_PORT_KEY))
                .flatten()
                .and_then(|bindings| {
                    bindings.into_iter().find_map(|b| {
                        let port: u16 = b.host_port?.parse().ok()?;
                        Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                    })
                }),
            AddressMode::Network => settings
                .networks
                .and_then(|mut n| n.remove(&self.config.network))
                .and_then(|endpoint| endpoint.ip_address)
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                .map(|ip| SocketAddr::from((ip, INVOKE_PORT))),
        })
    }

    async fn create(&self, spec: CreateWorker) -> Result<Worker, BackendError> {
        let worker_id = spec.worker_id.clone();
        self.ensure_image(&spec).await?;
        let _starting = StartingMark::new(&self.marks, &worker_id)?;
        let name = spec::container_name(&self.config.stack, &spec.function, &worker_id);
        let body = spec::container_body(&self.config, self.host_nano_cpus, &spec);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = match self.docker.create_container(Some(options), body).await {
            Ok(c) => c,
            Err(e) if is_status(&e, 404) => {
                return Err(BackendError::ImageNotFound {
                    worker_id,
                    image: spec.image,
                })
            }
            Err(e) if is_status(&e, 409) => return Err(BackendError::AlreadyExists { worker_id }),
            Err(source) => {
                return Err(BackendError::Docker {
                    operation: "create container",
                    worker_id,
                    source,
                })
            }
        };
        let id = created.id;
        tracing::debug!(worker = %worker_id, container = %id, name = %name, "container created");
        match self.start_and_wait(&id, &spec).await {
            Ok(address) => {
                tracing::info!(worker = %worker_id, container = %id, %address, "worker ready");
                Ok(Worker {
                    worker_id,
                    function: spec.function,
                    address: address.to_string(),
                    state: WorkerState::Ready as i32,
                    backend_id: id,
                    owner: spec.owner,
                    memory_mb: spec.memory_mb,
                    image: spec.image,
                })
            }
            Err(e) => {
                if let Err(cleanup) = self.remove_container(&id, &worker_id).await {
                    tracing::error!(
                        worker = %worker_id,
                        container = %id,
                        error = %crate::connection::Chain(&cleanup),
                        "cannot remove a worker that failed to start"
                    );
                }
                Err(e)
            }
        }
    }

    async fn ensure_image(&self, spec: &CreateWorker) -> Result<(), BackendError> {
        let not_found = || BackendError::ImageNotFound {
            worker_id: spec.worker_id.clone(),
            image: spec.image.clone(),
        };
        match self.docker.inspect_image(&spec.image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, 404) => {}
            Err(source) => {
                return Err(BackendError::Docker {
                    operation: "inspect image",
                    worker_id: spec.worker_id.clone(),
                    source,
                })
            }
        }
        let Some(timeout) = self.config.pull_timeout else {
            return Err(not_found());
        };
        tracing::info!(image = %spec.image, "pulling a missing image");
        let options = CreateImageOptionsBuilder::new()
            .from_image(&spec.image)
            .build();
        let pull = async {
            let mut progress = self.docker.create_image(Some(options), None, None);
            while let Some(step) = progress.next().await {
                step?;
            }
            Ok::<(), DockerError>(())
        };
        match tokio::time::timeout(timeout, pull).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(image = %spec.image, error = %e, "image pull failed");
                Err(not_found())
            }
            Err(_) => {
                tracing::warn!(image = %spec.image, ?timeout, "image pull timed out");
                Err(not_found())
            }
        }
    }

    /// Starts the container and waits until `/health` answers 200. Errors
    /// carry the container's last log lines; the caller removes it.
    async fn start_and_wait(
        &self,
        id: &str,
        spec: &CreateWorker,
    ) -> Result<SocketAddr, BackendError> {
        let worker_id = spec.worker_id.as_str();
        let deadline = Instant::now() + self.config.start_timeout;
        if let Err(e) = self.docker.start_container(id, None).await {
            tracing::warn!(worker = %worker_id, container = %id, error = %e, "docker start failed");
            return Err(BackendError::StartFailed {
                worker_id: worker_id.to_owned(),
                image: spec.image.clone(),
                reason: "the container could not be started (see the agent's log)".into(),
                logs: self.tail_logs(id).await,
            });
        }
        let Some(address) = self.inspect_address(id, worker_id).await? else {
            // A container that already stopped has no address either.
            let reason = match self.stopped_reason(id, worker_id, spec.memory_mb).await? {
                Some(reason) => reason,
                None => format!(
                    "the container has no address on network {}",
                    self.config.network
                ),
            };
            return Err(BackendError::StartFailed {
                worker_id: worker_id.to_owned(),
                image: spec.image.clone(),
                reason,
                logs: self.tail_logs(id).await,
            });
        };
        self.check_probe_target(address).await?;
        let stopped = || self.stopped_reason(id, worker_id, spec.memory_mb);
        let readiness = health::wait_ready(address, deadline, stopped).await?;
        super::started(
            readiness,
            spec,
            self.config.start_timeout,
            self.tail_logs(id),
        )
        .await?;
        Ok(address)
    }

    /// Why the container is no longer running, or `None` while it runs.
    async fn stopped_reason(
        &self,
        id: &str,
        worker_id: &str,
        memory_mb: u32,
    ) -> Result<Option<String>, BackendError> {
        let inspect = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| self.worker_error("inspect container", worker_id, e))?;
        let state = inspect.state.unwrap_or_default();
        Ok(match state.status {
            Some(ContainerStateStatusEnum::RUNNING)
            | Some(ContainerStateStatusEnum::CREATED)
            | None => None,
            _ => Some(describe_stop(&state, memory_mb)),
        })
    }

    /// The container's last log lines (stdout and stderr), best effort.
    async fn tail_logs(&self, id: &str) -> String {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(LOG_TAIL_LINES)
            .build();
        let collect = async {
            let mut text = String::new();
            let mut logs = self.docker.logs(id, Some(options));
            while let Some(Ok(chunk)) = logs.next().await {
                text.push_str(&String::from_utf8_lossy(chunk.as_ref()));
            }
            text
        };
        let text = tokio::time::timeout(Duration::from_secs(5), collect)
            .await
            .unwrap_or_default();
        tail_bytes(text.trim_end(), LOG_TAIL_MAX_BYTES).to_owned()
    }

    /// Force-removes a container, suppressing its `die` event. A container
    /// that is already gone (or going) counts as removed.
    async fn remove_container(&self, id: &str, worker_id: &str) -> Result<(), BackendError> {
        self.marks().removing.insert(worker_id.to_owned());
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => {
                self.marks().removing.remove(worker_id);
                Ok(())
            }
            Err(source) => {
                self.marks().removing.remove(worker_id);
                Err(BackendError::Docker {
                    operation: "remove container",
                    worker_id: worker_id.to_owned(),
                    source,
                })
            }
        }
    }

    async fn metrics(&self, worker_id: &str) -> Result<WorkerMetrics, BackendError> {
        let container = self.find(worker_id).await?;
        let id = container.id.unwrap_or_default();
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let stats = self
            .docker
            .stats(&id, Some(options))
            .next()
            .await
            .ok_or_else(|| BackendError::NotFound {
                worker_id: worker_id.to_owned(),
            })?
            .map_err(|e| self.worker_error("container stats", worker_id, e))?;
        let inspect = self
            .docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| self.worker_error("inspect container", worker_id, e))?;
        let memory = stats.memory_stats.unwrap_or_default();
        let usage = memory.usage.unwrap_or(0);
        // Like `docker stats`: page cache that can be reclaimed is not use.
        let inactive_file = memory
            .stats
            .as_ref()
            .and_then(|s| {
                s.get("total_inactive_file")
                    .or_else(|| s.get("inactive_file"))
            })
            .copied()
            .unwrap_or(0);
        let cpu_nanos = stats
            .cpu_stats
            .and_then(|c| c.cpu_usage)
            .and_then(|u| u.total_usage)
            .unwrap_or(0);
        let oom_flag = inspect.state.and_then(|s| s.oom_killed).unwrap_or(false);
        let oom_seen = self.marks().oom_kills.get(worker_id).copied().unwrap_or(0);
        Ok(WorkerMetrics {
            worker_id: worker_id.to_owned(),
            memory_bytes: usage.checked_sub(inactive_file).unwrap_or(usage),
            memory_limit_bytes: memory.limit.unwrap_or(0),
            cpu_seconds: cpu_nanos as f64 / 1e9,
            oom_kills: oom_seen.max(u32::from(oom_flag)),
        })
    }

    /// Removes this node's workers that are not running (exited, dead, or
    /// created by an agent that died before starting them).
    async fn reap_stopped(&self) -> Result<(), BackendError> {
        for c in self.containers(None).await? {
            let stopped = !matches!(
                c.state,
                Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::PAUSED)
            );
            let worker_id = c.labels.as_ref().and_then(|l| l.get(label::WORKER));
            if let (true, Some(worker_id), Some(id)) = (stopped, worker_id, c.id.as_deref()) {
                tracing::info!(worker = %worker_id, container = %id, state = ?c.state, "removing a stopped worker");
                if let Err(e) = self.remove_container(id, worker_id).await {
                    tracing::warn!(worker = %worker_id, error = %crate::connection::Chain(&e), "cannot remove a stopped worker");
                }
            }
        }
        Ok(())
    }

    /// Reaps what cannot be used and returns the workers to announce: running
    /// workers whose `/health` answers (READY) and paused ones (PAUSED).
    async fn adopt(&self) -> Result<Vec<Worker>, BackendError> {
        let containers = self.containers(None).await?;
        let starting = self.marks().starting.clone();
        let checks = containers.iter().filter_map(|c| {
            let worker = self.worker(c, &starting)?;
            if worker.state() == WorkerState::Starting {
                return None;
            }
            Some(async move {
                let id = c.id.clone().unwrap_or_default();
                let keep = match c.state {
                    Some(ContainerSummaryStateEnum::PAUSED) => true,
                    Some(ContainerSummaryStateEnum::RUNNING) => match self.summary_address(c) {
                        Some(addr) => {
                            self.check_probe_target(addr).await.is_ok()
                                && health::is_ready(addr, Duration::from_secs(2)).await
                        }
                        None => false,
                    },
                    _ => false,
                };
                if keep {
                    return Some(worker);
                }
                tracing::info!(worker = %worker.worker_id, container = %id, state = ?c.state, "removing a worker that cannot be adopted");
                if let Err(e) = self.remove_container(&id, &worker.worker_id).await {
                    tracing::warn!(worker = %worker.worker_id, error = %crate::connection::Chain(&e), "cannot remove an unusable worker");
                }
                None
            })
        });
        let adopted: Vec<Worker> = futures_util::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect();
        tracing::info!(workers = adopted.len(), "adopted workers");
        Ok(adopted)
    }
}

fn is_status(e: &DockerError, status: u16) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code, .. } if *status_code == status)
}

fn invalid_state(
    worker_id: &str,
    operation: &'static str,
    state: Option<ContainerSummaryStateEnum>,
) -> BackendError {
    BackendError::InvalidState {
        worker_id: worker_id.to_owned(),
        operation,
        state: state
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into()),
    }
}

fn summary_state(state: Option<ContainerSummaryStateEnum>) -> WorkerState {
    match state {
        Some(ContainerSummaryStateEnum::RUNNING) => WorkerState::Ready,
        Some(ContainerSummaryStateEnum::PAUSED) => WorkerState::Paused,
        Some(ContainerSummaryStateEnum::CREATED | ContainerSummaryStateEnum::RESTARTING) => {
            WorkerState::Starting
        }
        _ => WorkerState::Exited,
    }
}

fn describe_stop(state: &ContainerState, memory_mb: u32) -> String {
    if state.oom_killed == Some(true) {
        format!("killed for exceeding its memory limit of {memory_mb} MB")
    } else {
        match state.exit_code {
            Some(code) => format!("exited with code {code}"),
            None => format!(
                "stopped ({})",
                state.status.map(|s| s.to_string()).unwrap_or_default()
            ),
        }
    }
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The label filters (all must match) of this backend's own containers.
fn own_labels(config: &DockerConfig) -> Vec<String> {
    vec![
        format!("{}={}", label::NODE, config.node_id),
        format!("{}={}", label::STACK, config.stack),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_mode_parses() {
        assert_eq!("network".parse::<AddressMode>(), Ok(AddressMode::Network));
        assert_eq!("loopback".parse::<AddressMode>(), Ok(AddressMode::Loopback));
        assert!("host".parse::<AddressMode>().is_err());
    }

    #[test]
    fn log_tails_cut_at_char_boundaries() {
        assert_eq!(tail_bytes("abc", 10), "abc");
        assert_eq!(tail_bytes("aé", 1), "");
        assert_eq!(tail_bytes("abcdef", 3), "def");
    }
}
