//! The containerd backend: one containerd container and task per worker,
//! through containerd's gRPC API (`containerd-client`) in one namespace,
//! with the workers' network from CNI.
//!
//! Containers carry the Docker backend's labels ([`label`]) plus
//! `esb.address`, the worker's invoke address, set once CNI gave it; the
//! node and stack labels are how the backend finds its workers again after
//! a restart. A worker is made in this order: its image resolved (pulled
//! and unpacked once, see [`image`]), its snapshot prepared on the image's
//! top chain id, the container (with an OCI spec built here, see [`spec`]),
//! the task (runc create: the process exists in a new, empty network
//! namespace), CNI ADD on `/proc/<task pid>/ns/net`, the task started, and
//! `/health` polled on `<ip>:8080` until it answers 200. A failure anywhere
//! undoes what was made, in reverse. Destroy stops the task (SIGTERM, then
//! SIGKILL after a grace), deletes it, runs CNI DEL (which releases the
//! address lease even without the namespace), and deletes the container,
//! its snapshot and its files.
//!
//! The agent runs in the node's network and PID namespaces (beside
//! containerd): task PIDs are valid in its `/proc`, and the CNI bridge gives
//! it a connected route to the workers. It probes only addresses it has
//! such a route to ([`BackendError::Unroutable`] otherwise).
//!
//! Files the node must see (each worker's `resolv.conf`, `hosts` and log)
//! live under the node state directory, mounted at the same path in the
//! agent and in the node.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use api::containers::container::Runtime;
use api::containers::containers_client::ContainersClient;
use api::containers::{
    Container, CreateContainerRequest, DeleteContainerRequest, ListContainersRequest,
    UpdateContainerRequest,
};
use api::content::content_client::ContentClient;
use api::diff::diff_client::DiffClient;
use api::images::images_client::ImagesClient;
use api::leases::leases_client::LeasesClient;
use api::leases::{CreateRequest as CreateLeaseRequest, DeleteRequest as DeleteLeaseRequest};
use api::snapshots::snapshots_client::SnapshotsClient;
use api::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use api::task_types::Status as TaskStatus;
use api::tasks::tasks_client::TasksClient;
use api::tasks::{
    CreateTaskRequest, DeleteTaskRequest, GetRequest, KillRequest, ListTasksRequest,
    MetricsRequest, PauseTaskRequest, ResumeTaskRequest, StartRequest, WaitRequest,
};
use api::version::version_client::VersionClient;
use esb_contracts::agent::{
    CreateWorker, RuntimeKind, Worker, WorkerEvent, WorkerMetrics, WorkerState,
};
use prost::Message as _;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request};

use super::docker::label;
use super::health;
use super::marks::{MarkTable, Marks, StartingMark};
use super::{route, Backend, BackendError};

mod api;
mod cgroups;
pub mod cni;
mod events;
mod image;
mod registry;
mod spec;

pub use cni::{CniError, CniNetwork};
pub use image::ImageError;
pub use registry::RegistryError;

/// The label with the worker's invoke address (`ip:8080`), set after CNI
/// ADD; adoption reads it back.
pub const ADDRESS_LABEL: &str = "esb.address";
/// The worker shim's invoke port.
const INVOKE_PORT: u16 = 8080;
const EVENT_CHANNEL: usize = 256;
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// containerd ids: letters, digits, `_.-`, at most 76 characters.
const MAX_ID_LEN: usize = 76;
const LOG_TAIL_MAX_BYTES: u64 = 4096;
/// How long an empty worker log is read again, for output still being copied.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);
const SIGTERM: u32 = 15;
const SIGKILL: u32 = 9;

/// Debian's static tini on runtime-node: the workers' default init.
pub const DEFAULT_INIT: &str = "/usr/bin/tini-static";

/// Settings of the containerd backend.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// containerd's socket.
    pub socket: PathBuf,
    /// containerd's namespace for the workers.
    pub namespace: String,
    /// This node's id (`esb.node` label).
    pub node_id: String,
    /// The stack label (`esb.stack`), also part of container ids.
    pub stack: String,
    /// The snapshotter images are unpacked with.
    pub snapshotter: String,
    /// The containerd runtime (shim) of workers.
    pub runtime: String,
    /// The workers' CNI network list.
    pub cni_conf_file: PathBuf,
    /// Where the CNI plugins are.
    pub cni_bin_dir: PathBuf,
    /// The workers' DNS server (their `resolv.conf`).
    pub worker_dns: Ipv4Addr,
    /// The node state directory, at the same path in the agent and the node.
    pub state_dir: PathBuf,
    /// PEM of the CA the registry's certificate is checked against (the
    /// only root trusted; `None` trusts no HTTPS registry).
    pub registry_ca: Option<Vec<u8>>,
    /// Registries spoken to over plain HTTP (tests, development).
    pub insecure_registries: Vec<String>,
    /// How long a worker has to answer `/health` with 200.
    pub start_timeout: Duration,
    /// The user workers run as.
    pub user: (u32, u32),
    /// Processes per worker at most.
    pub pids_limit: i64,
    /// Size of the writable `/tmp` tmpfs (counts against the memory limit).
    pub tmp_size_mb: u32,
    /// The CPU floor in millicores.
    pub min_millicpus: u64,
    /// Pull missing images, bounded by this timeout; `None` never pulls.
    pub pull_timeout: Option<Duration>,
    /// Bound on each containerd request.
    pub api_timeout: Duration,
    /// How long a worker has between SIGTERM and SIGKILL on destroy.
    pub stop_grace: Duration,
    /// A static init, at this path on the node, bound into every worker and
    /// run as its PID 1 (it reaps orphans and forwards signals, as
    /// `docker-init` does in docker mode); `None` runs the entrypoint as
    /// PID 1.
    pub init: Option<PathBuf>,
}

impl ContainerdConfig {
    /// Defaults as in runtime-node: socket `/run/containerd/containerd.sock`,
    /// namespace `esb`, overlayfs and runc v2, the CNI list
    /// `/etc/esb/cni/esb.conflist` with plugins in `/opt/cni/bin`, DNS
    /// 10.88.0.1, state in `/var/lib/esb-node`, 30 s start timeout, user
    /// 993:993, 256 pids, 512 MB `/tmp`, a floor of 0.25 vCPU, pulls within
    /// 5 minutes, 2 s stop grace, Debian's `tini-static` as the workers'
    /// init.
    pub fn new(node_id: impl Into<String>, stack: impl Into<String>) -> Self {
        Self {
            socket: PathBuf::from("/run/containerd/containerd.sock"),
            namespace: "esb".into(),
            node_id: node_id.into(),
            stack: stack.into(),
            snapshotter: "overlayfs".into(),
            runtime: "io.containerd.runc.v2".into(),
            cni_conf_file: PathBuf::from("/etc/esb/cni/esb.conflist"),
            cni_bin_dir: PathBuf::from("/opt/cni/bin"),
            worker_dns: Ipv4Addr::new(10, 88, 0, 1),
            state_dir: PathBuf::from("/var/lib/esb-node"),
            registry_ca: None,
            insecure_registries: Vec::new(),
            start_timeout: Duration::from_secs(30),
            user: (993, 993),
            pids_limit: 256,
            tmp_size_mb: 512,
            min_millicpus: 250,
            pull_timeout: Some(Duration::from_secs(300)),
            api_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(2),
            init: Some(PathBuf::from(DEFAULT_INIT)),
        }
    }
}

/// Workers as containerd tasks. Create it with
/// [`ContainerdBackend::connect`]; call [`ContainerdBackend::close`] to stop
/// its event watcher.
pub struct ContainerdBackend {
    inner: Arc<Containerd>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// The backend's state, shared with the event watcher.
pub(crate) struct Containerd {
    channel: Channel,
    namespace: AsciiMetadataValue,
    config: ContainerdConfig,
    cni: CniNetwork,
    registry: registry::Registry,
    images: image::ImageCache,
    host_millicpus: u64,
    events: broadcast::Sender<WorkerEvent>,
    marks: MarkTable,
}

/// A container of this node, as listed.
struct Found {
    id: String,
    labels: HashMap<String, String>,
    image: String,
}

impl Found {
    fn worker_id(&self) -> Option<&str> {
        self.labels.get(label::WORKER).map(String::as_str)
    }

    fn address(&self) -> Option<SocketAddr> {
        self.labels.get(ADDRESS_LABEL)?.parse().ok()
    }
}

impl ContainerdBackend {
    /// Connects to containerd, loads the CNI network, reaps this node's
    /// workers that are not running and starts watching task exits and OOM
    /// kills.
    pub async fn connect(config: ContainerdConfig) -> Result<Self, BackendError> {
        let node_err = |operation| {
            move |source| BackendError::Containerd {
                operation,
                worker_id: String::new(),
                source,
            }
        };
        if !is_socket(&config.socket) {
            return Err(BackendError::Setup {
                reason: format!(
                    "containerd socket {} does not exist or is not a socket",
                    config.socket.display()
                ),
            });
        }
        let cni =
            CniNetwork::load(&config.cni_conf_file, &config.cni_bin_dir).map_err(|source| {
                BackendError::Cni {
                    worker_id: String::new(),
                    source,
                }
            })?;
        let channel = connect(&config.socket)
            .await
            .map_err(|e| BackendError::Setup {
                reason: format!(
                    "cannot connect to containerd at {}: {e}",
                    config.socket.display()
                ),
            })?;
        let namespace: AsciiMetadataValue = MetadataValue::try_from(config.namespace.as_str())
            .map_err(|_| BackendError::Setup {
                reason: format!("invalid containerd namespace {:?}", config.namespace),
            })?;
        let mut version = Request::new(());
        version.set_timeout(config.api_timeout);
        let version = VersionClient::new(channel.clone())
            .version(version)
            .await
            .map_err(node_err("version"))?
            .into_inner();
        let registry = registry::Registry::new(
            config.registry_ca.as_deref(),
            config.insecure_registries.clone(),
        )
        .map_err(|e| BackendError::Setup {
            reason: format!("{}", crate::connection::Chain(&e)),
        })?;
        std::fs::create_dir_all(config.state_dir.join("workers")).map_err(|source| {
            BackendError::Io {
                operation: "create the node state directory",
                worker_id: String::new(),
                source,
            }
        })?;
        let host_millicpus = std::thread::available_parallelism()
            .map(|n| n.get() as u64 * 1000)
            .unwrap_or(1000);
        let (events, _) = broadcast::channel(EVENT_CHANNEL);
        let inner = Arc::new(Containerd {
            channel,
            namespace,
            config,
            cni,
            registry,
            images: image::ImageCache::default(),
            host_millicpus,
            events,
            marks: MarkTable::default(),
        });
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        // Subscribed before the reap, so no exit in between is missed
        // (containerd answers a subscription with its first event only: the
        // watcher waits for it).
        tasks.spawn(events::watch_events(Arc::clone(&inner), stop.clone()));
        inner.reap_stopped().await?;
        tracing::info!(
            node = %inner.config.node_id,
            containerd = %version.version,
            namespace = %inner.config.namespace,
            network = %inner.cni.name(),
            "containerd backend ready"
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
    pub fn config(&self) -> &ContainerdConfig {
        &self.inner.config
    }

    /// The containerd id of a worker's container (for tests and tools).
    pub fn container_id(&self, worker_id: &str) -> String {
        container_id(&self.inner.config.stack, worker_id)
    }
}

impl Drop for ContainerdBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Backend for ContainerdBackend {
    fn runtime(&self) -> RuntimeKind {
        RuntimeKind::Containerd
    }

    async fn create(&self, spec: CreateWorker) -> Result<Worker, BackendError> {
        self.inner.create(spec).await
    }

    async fn destroy(&self, worker_id: &str) -> Result<(), BackendError> {
        let found = self.inner.find(worker_id).await?;
        self.inner.remove_worker(&found.id, worker_id).await
    }

    async fn pause(&self, worker_id: &str) -> Result<(), BackendError> {
        let found = self.inner.find(worker_id).await?;
        let status = self.inner.task_status(&found.id, worker_id).await?;
        if status != Some(TaskStatus::Running) {
            return Err(invalid_state(worker_id, "pause", status));
        }
        self.inner
            .tasks_client()
            .pause(self.inner.request(PauseTaskRequest {
                container_id: found.id.clone(),
            }))
            .await
            .map_err(|s| self.inner.worker_error("pause task", worker_id, s))?;
        Ok(())
    }

    async fn resume(&self, worker_id: &str) -> Result<(), BackendError> {
        let found = self.inner.find(worker_id).await?;
        let status = self.inner.task_status(&found.id, worker_id).await?;
        if status != Some(TaskStatus::Paused) {
            return Err(invalid_state(worker_id, "resume", status));
        }
        self.inner
            .tasks_client()
            .resume(self.inner.request(ResumeTaskRequest {
                container_id: found.id.clone(),
            }))
            .await
            .map_err(|s| self.inner.worker_error("resume task", worker_id, s))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Worker>, BackendError> {
        let containers = self.inner.containers(None).await?;
        let statuses = self.inner.task_statuses().await?;
        let starting = self.inner.marks().starting.clone();
        Ok(containers
            .iter()
            .filter_map(|c| worker(c, statuses.get(&c.id).copied(), &starting))
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

impl Containerd {
    fn marks(&self) -> MutexGuard<'_, Marks> {
        self.marks.lock()
    }

    /// A unary request in the backend's namespace, bounded in time.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = self.stream_request(message);
        request.set_timeout(self.config.api_timeout);
        request
    }

    /// A request in the backend's namespace without a deadline (streams,
    /// waits and pulls, which their callers bound).
    fn stream_request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("containerd-namespace", self.namespace.clone());
        request
    }

    /// A request that runs under `lease` (what it makes is kept from
    /// garbage collection until the lease is deleted).
    fn leased<T>(&self, message: T, lease: &str) -> Request<T> {
        let mut request = self.stream_request(message);
        if let Ok(lease) = MetadataValue::try_from(lease) {
            request.metadata_mut().insert("containerd-lease", lease);
        }
        request
    }

    fn containers_client(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    fn tasks_client(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    fn snapshots_client(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    fn content_client(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
    }

    fn images_client(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    fn diff_client(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }

    /// A lease that expires by itself if the agent dies holding it.
    async fn create_lease(&self) -> Result<String, tonic::Status> {
        let expiry = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + LEASE_EXPIRY)
            .to_string();
        let id = format!("esb-{}-{:016x}", self.config.node_id, fastrand::u64(..));
        let lease = LeasesClient::new(self.channel.clone())
            .create(self.request(CreateLeaseRequest {
                id,
                labels: HashMap::from([("containerd.io/gc.expire".to_owned(), expiry)]),
            }))
            .await?
            .into_inner()
            .lease
            .map(|l| l.id)
            .unwrap_or_default();
        Ok(lease)
    }

    async fn delete_lease(&self, id: &str) -> Result<(), tonic::Status> {
        LeasesClient::new(self.channel.clone())
            .delete(self.request(DeleteLeaseRequest {
                id: id.to_owned(),
                sync: false,
            }))
            .await
            .map(|_| ())
    }

    fn worker_error(
        &self,
        operation: &'static str,
        worker_id: &str,
        s: tonic::Status,
    ) -> BackendError {
        if s.code() == Code::NotFound {
            BackendError::NotFound {
                worker_id: worker_id.to_owned(),
            }
        } else {
            BackendError::Containerd {
                operation,
                worker_id: worker_id.to_owned(),
                source: s,
            }
        }
    }

    /// This node's containers of this stack, optionally only the one of
    /// `worker_id`.
    async fn containers(&self, worker_id: Option<&str>) -> Result<Vec<Found>, BackendError> {
        let mut filter = format!(
            "labels.\"{}\"=={},labels.\"{}\"=={}",
            label::NODE,
            quote(&self.config.node_id),
            label::STACK,
            quote(&self.config.stack)
        );
        if let Some(w) = worker_id {
            filter.push_str(&format!(",labels.\"{}\"=={}", label::WORKER, quote(w)));
        }
        let listed = self
            .containers_client()
            .list(self.request(ListContainersRequest {
                filters: vec![filter],
            }))
            .await
            .map_err(|source| BackendError::Containerd {
                operation: "list containers",
                worker_id: worker_id.unwrap_or_default().to_owned(),
                source,
            })?
            .into_inner();
        Ok(listed
            .containers
            .into_iter()
            .map(|c| Found {
                id: c.id,
                labels: c.labels,
                image: c.image,
            })
            .collect())
    }

    async fn find(&self, worker_id: &str) -> Result<Found, BackendError> {
        self.containers(Some(worker_id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| BackendError::NotFound {
                worker_id: worker_id.to_owned(),
            })
    }

    /// The status of every task in the namespace, by container id.
    async fn task_statuses(&self) -> Result<HashMap<String, TaskStatus>, BackendError> {
        let tasks = self
            .tasks_client()
            .list(self.request(ListTasksRequest {
                filter: String::new(),
            }))
            .await
            .map_err(|source| BackendError::Containerd {
                operation: "list tasks",
                worker_id: String::new(),
                source,
            })?
            .into_inner()
            .tasks;
        // Tasks are listed by their init process, whose id is the
        // container's (containerd 1.6 leaves `container_id` empty).
        Ok(tasks
            .into_iter()
            .map(|p| {
                let status = TaskStatus::try_from(p.status).unwrap_or(TaskStatus::Unknown);
                (p.id, status)
            })
            .collect())
    }

    /// The task's status, `None` when the container has no task.
    async fn task_status(
        &self,
        container_id: &str,
        worker_id: &str,
    ) -> Result<Option<TaskStatus>, BackendError> {
        Ok(self
            .task_process(container_id, worker_id)
            .await?
            .map(|(status, _)| status))
    }

    /// The task's status and exit status, `None` without a task.
    async fn task_process(
        &self,
        container_id: &str,
        worker_id: &str,
    ) -> Result<Option<(TaskStatus, u32)>, BackendError> {
        match self
            .tasks_client()
            .get(self.request(GetRequest {
                container_id: container_id.to_owned(),
                exec_id: String::new(),
            }))
            .await
        {
            Ok(r) => Ok(r.into_inner().process.map(|p| {
                (
                    TaskStatus::try_from(p.status).unwrap_or(TaskStatus::Unknown),
                    p.exit_status,
                )
            })),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(source) => Err(BackendError::Containerd {
                operation: "get task",
                worker_id: worker_id.to_owned(),
                source,
            }),
        }
    }

    fn worker_dir(&self, container_id: &str) -> PathBuf {
        self.config.state_dir.join("workers").join(container_id)
    }

    async fn create(&self, spec: CreateWorker) -> Result<Worker, BackendError> {
        let worker_id = spec.worker_id.clone();
        let _starting = StartingMark::new(&self.marks, &worker_id)?;
        let resolved = self
            .resolve_image(&spec.image)
            .await
            .map_err(|e| image_error(&spec, e))?;
        let id = container_id(&self.config.stack, &worker_id);
        let mut made = Made::default();
        match self.make(&id, &spec, &resolved, &mut made).await {
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
                if !matches!(e, BackendError::AlreadyExists { .. }) {
                    self.undo(&id, &worker_id, &made).await;
                }
                Err(e)
            }
        }
    }

    /// Makes the worker step by step, recording each step in `made`.
    async fn make(
        &self,
        id: &str,
        spec: &CreateWorker,
        resolved: &image::ResolvedImage,
        made: &mut Made,
    ) -> Result<SocketAddr, BackendError> {
        let worker_id = spec.worker_id.as_str();
        let ctd = |operation| {
            move |source| BackendError::Containerd {
                operation,
                worker_id: worker_id.to_owned(),
                source,
            }
        };
        let io = |operation| {
            move |source| BackendError::Io {
                operation,
                worker_id: worker_id.to_owned(),
                source,
            }
        };
        let dir = self.worker_dir(id);
        let resolv_conf = dir.join("resolv.conf");
        let hosts = dir.join("hosts");
        let log = dir.join("log");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io("create the worker directory"))?;
        made.dir = true;
        tokio::fs::write(&resolv_conf, spec::resolv_conf(self.config.worker_dns))
            .await
            .map_err(io("write resolv.conf"))?;
        tokio::fs::write(&hosts, spec::hosts_file(id))
            .await
            .map_err(io("write hosts"))?;
        tokio::fs::write(&log, b"")
            .await
            .map_err(io("create the log"))?;
        let runtime_spec = spec::runtime_spec(
            &spec::SpecInput {
                container_id: id,
                namespace: &self.config.namespace,
                user: self.config.user,
                pids_limit: self.config.pids_limit,
                tmp_size_mb: self.config.tmp_size_mb,
                min_millicpus: self.config.min_millicpus,
                host_millicpus: self.host_millicpus,
                resolv_conf: &resolv_conf,
                hosts: &hosts,
                init: self.config.init.as_deref(),
            },
            &resolved.config,
            spec,
        );

        // The snapshot and the container that references it are made under
        // a lease: a collection in between must not take the snapshot.
        let started = Instant::now();
        let lease = self.create_lease().await.map_err(ctd("create lease"))?;
        let snapshot_and_container = async {
            let prepared = self
                .snapshots_client()
                .prepare(self.leased(
                    PrepareSnapshotRequest {
                        snapshotter: self.config.snapshotter.clone(),
                        key: id.to_owned(),
                        parent: resolved.chain_id.clone(),
                        labels: HashMap::new(),
                    },
                    &lease,
                ))
                .await;
            let mounts = match prepared {
                Ok(p) => p.into_inner().mounts,
                Err(s) if s.code() == Code::AlreadyExists => {
                    return Err(BackendError::AlreadyExists {
                        worker_id: worker_id.to_owned(),
                    })
                }
                Err(s) => return Err(ctd("prepare snapshot")(s)),
            };
            made.snapshot = true;
            let container = Container {
                id: id.to_owned(),
                labels: self.labels(spec),
                image: spec.image.clone(),
                runtime: Some(Runtime {
                    name: self.config.runtime.clone(),
                    options: None,
                }),
                spec: Some(prost_types::Any {
                    type_url: SPEC_TYPE_URL.to_owned(),
                    value: serde_json::to_vec(&runtime_spec).unwrap_or_default(),
                }),
                snapshotter: self.config.snapshotter.clone(),
                snapshot_key: id.to_owned(),
                created_at: None,
                updated_at: None,
                extensions: HashMap::new(),
                sandbox: String::new(),
            };
            let created = self
                .containers_client()
                .create(self.leased(
                    CreateContainerRequest {
                        container: Some(container),
                    },
                    &lease,
                ))
                .await;
            match created {
                Ok(_) => made.container = true,
                Err(s) if s.code() == Code::AlreadyExists => {
                    return Err(BackendError::AlreadyExists {
                        worker_id: worker_id.to_owned(),
                    })
                }
                Err(s) => return Err(ctd("create container")(s)),
            }
            Ok(mounts)
        };
        let mounts = snapshot_and_container.await;
        if let Err(e) = self.delete_lease(&lease).await {
            tracing::warn!(worker = %worker_id, error = %e, "cannot delete a create lease (it expires by itself)");
        }
        let mounts = mounts?;

        let container_made = started.elapsed();
        let log_uri = format!("file://{}", log.display());
        let task = self
            .tasks_client()
            .create(self.request(CreateTaskRequest {
                container_id: id.to_owned(),
                rootfs: mounts,
                stdin: String::new(),
                stdout: log_uri.clone(),
                stderr: log_uri,
                terminal: false,
                checkpoint: None,
                options: None,
                runtime_path: String::new(),
            }))
            .await;
        let pid = match task {
            Ok(t) => t.into_inner().pid,
            Err(s) => {
                tracing::warn!(worker = %worker_id, container = %id, error = %s, "task create failed");
                return Err(BackendError::StartFailed {
                    worker_id: worker_id.to_owned(),
                    image: spec.image.clone(),
                    reason: "the task could not be created (see the agent's log)".into(),
                    logs: self.tail_log(id).await,
                });
            }
        };
        made.task = true;

        let task_made = started.elapsed();
        made.network = true;
        let ip = self
            .cni
            .add(id, &format!("/proc/{pid}/ns/net"))
            .await
            .map_err(|source| BackendError::Cni {
                worker_id: worker_id.to_owned(),
                source,
            })?;
        let address = SocketAddr::from((ip, INVOKE_PORT));
        self.check_probe_target(address).await?;
        let mut labelled = self.labels(spec);
        labelled.insert(ADDRESS_LABEL.to_owned(), address.to_string());
        self.containers_client()
            .update(self.request(UpdateContainerRequest {
                container: Some(Container {
                    id: id.to_owned(),
                    labels: labelled,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec![format!("labels.{ADDRESS_LABEL}")],
                }),
            }))
            .await
            .map_err(ctd("label the container"))?;

        if let Err(s) = self
            .tasks_client()
            .start(self.request(StartRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            }))
            .await
        {
            tracing::warn!(worker = %worker_id, container = %id, error = %s, "task start failed");
            return Err(BackendError::StartFailed {
                worker_id: worker_id.to_owned(),
                image: spec.image.clone(),
                reason: "the task could not be started (see the agent's log)".into(),
                logs: self.tail_log(id).await,
            });
        }
        let network_made = started.elapsed();
        self.wait_ready(id, spec, address).await?;
        tracing::debug!(
            worker = %worker_id,
            container_ms = container_made.as_millis() as u64,
            task_ms = task_made.as_millis() as u64,
            network_ms = network_made.as_millis() as u64,
            ready_ms = started.elapsed().as_millis() as u64,
            "worker made (times since the snapshot was prepared)"
        );
        Ok(address)
    }

    /// Polls `/health` until 200, checking that the task still runs.
    async fn wait_ready(
        &self,
        id: &str,
        spec: &CreateWorker,
        address: SocketAddr,
    ) -> Result<(), BackendError> {
        let worker_id = spec.worker_id.as_str();
        let deadline = Instant::now() + self.config.start_timeout;
        let stopped = || self.stopped_reason(id, worker_id, spec.memory_mb);
        let readiness = health::wait_ready(address, deadline, stopped).await?;
        if matches!(readiness, health::Readiness::Stopped(_)) {
            // The shim finishes copying a stopped task's output to the log
            // file when the task is deleted (it drains the pipes first).
            if let Err(e) = self.delete_task(id, worker_id).await {
                tracing::warn!(worker = %worker_id, error = %crate::connection::Chain(&e), "cannot delete a stopped task");
            }
        }
        super::started(
            readiness,
            spec,
            self.config.start_timeout,
            self.tail_log(id),
        )
        .await?;
        Ok(())
    }

    /// Why the task is no longer running, or `None` while it runs.
    async fn stopped_reason(
        &self,
        id: &str,
        worker_id: &str,
        memory_mb: u32,
    ) -> Result<Option<String>, BackendError> {
        Ok(match self.task_process(id, worker_id).await? {
            Some((TaskStatus::Stopped, code)) => {
                let oom = self.marks().oom_kills.get(worker_id).copied().unwrap_or(0);
                Some(if oom > 0 {
                    format!("killed for exceeding its memory limit of {memory_mb} MB")
                } else {
                    format!("exited with code {code}")
                })
            }
            Some(_) => None,
            None => Some("the task is gone".into()),
        })
    }

    /// The network safety rule: the agent probes only addresses it has a
    /// connected route to.
    async fn check_probe_target(&self, addr: SocketAddr) -> Result<(), BackendError> {
        let local = match addr {
            SocketAddr::V4(a) => route::is_local(&route::connected_routes().await, *a.ip()),
            SocketAddr::V6(_) => false,
        };
        if local {
            Ok(())
        } else {
            Err(BackendError::Unroutable {
                network: self.cni.name().to_owned(),
                address: addr.to_string(),
            })
        }
    }

    /// The last lines the worker printed, best effort.
    async fn tail_log(&self, id: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let path = self.worker_dir(id).join("log");
        let text = async {
            let mut file = tokio::fs::File::open(&path).await.ok()?;
            let len = file.metadata().await.ok()?.len();
            let start = len.saturating_sub(LOG_TAIL_MAX_BYTES);
            file.seek(std::io::SeekFrom::Start(start)).await.ok()?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).await.ok()?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            // Drop a partial first line.
            Some(match (start > 0, text.find('\n')) {
                (true, Some(i)) => text[i + 1..].to_owned(),
                _ => text,
            })
        };
        text.await.unwrap_or_default().trim_end().to_owned()
    }

    fn labels(&self, spec: &CreateWorker) -> HashMap<String, String> {
        HashMap::from([
            (label::NODE.to_owned(), self.config.node_id.clone()),
            (label::STACK.to_owned(), self.config.stack.clone()),
            (label::FUNCTION.to_owned(), spec.function.clone()),
            (label::WORKER.to_owned(), spec.worker_id.clone()),
            (label::OWNER.to_owned(), spec.owner.clone()),
            (label::MEMORY.to_owned(), spec.memory_mb.to_string()),
            (label::IMAGE.to_owned(), spec.image.clone()),
        ])
    }

    /// Undoes a failed create: everything `made` says exists.
    async fn undo(&self, id: &str, worker_id: &str, made: &Made) {
        self.marks().removing.insert(worker_id.to_owned());
        if let Err(e) = self.teardown(id, worker_id, made).await {
            tracing::error!(worker = %worker_id, container = %id, error = %crate::connection::Chain(&e), "cannot clean up a worker that failed to start");
        }
        self.marks().removing.remove(worker_id);
    }

    /// Removes a worker (task, network, container, snapshot, files),
    /// suppressing its exit event. Parts already gone count as removed.
    async fn remove_worker(&self, id: &str, worker_id: &str) -> Result<(), BackendError> {
        self.marks().removing.insert(worker_id.to_owned());
        let result = self.teardown(id, worker_id, &Made::all()).await;
        let mut marks = self.marks();
        marks.removing.remove(worker_id);
        marks.oom_kills.remove(worker_id);
        result
    }

    async fn teardown(&self, id: &str, worker_id: &str, made: &Made) -> Result<(), BackendError> {
        let ctd = |operation| {
            move |source| BackendError::Containerd {
                operation,
                worker_id: worker_id.to_owned(),
                source,
            }
        };
        let gone = |r: Result<(), tonic::Status>| match r {
            Err(s) if s.code() != Code::NotFound => Err(s),
            _ => Ok(()),
        };
        if made.task {
            self.stop_task(id, worker_id).await?;
            self.delete_task(id, worker_id).await?;
        }
        if made.network {
            // The namespace is gone with the task: host-local releases the
            // lease by container id.
            self.cni
                .del(id, "")
                .await
                .map_err(|source| BackendError::Cni {
                    worker_id: worker_id.to_owned(),
                    source,
                })?;
        }
        if made.container {
            gone(
                self.containers_client()
                    .delete(self.request(DeleteContainerRequest { id: id.to_owned() }))
                    .await
                    .map(|_| ()),
            )
            .map_err(ctd("delete container"))?;
        }
        if made.snapshot {
            gone(
                self.snapshots_client()
                    .remove(self.request(RemoveSnapshotRequest {
                        snapshotter: self.config.snapshotter.clone(),
                        key: id.to_owned(),
                    }))
                    .await
                    .map(|_| ()),
            )
            .map_err(ctd("remove snapshot"))?;
        }
        if made.dir {
            match tokio::fs::remove_dir_all(self.worker_dir(id)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(BackendError::Io {
                        operation: "remove the worker directory",
                        worker_id: worker_id.to_owned(),
                        source: e,
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Deletes a stopped task; the shim drains its output to the log file
    /// first. A task already gone counts as deleted.
    async fn delete_task(&self, id: &str, worker_id: &str) -> Result<(), BackendError> {
        match self
            .tasks_client()
            .delete(self.request(DeleteTaskRequest {
                container_id: id.to_owned(),
            }))
            .await
        {
            Err(s) if s.code() != Code::NotFound => Err(BackendError::Containerd {
                operation: "delete task",
                worker_id: worker_id.to_owned(),
                source: s,
            }),
            _ => Ok(()),
        }
    }

    /// Stops the task if it runs: thawed if paused, SIGTERM, SIGKILL to
    /// every process after the grace.
    async fn stop_task(&self, id: &str, worker_id: &str) -> Result<(), BackendError> {
        let status = match self.task_status(id, worker_id).await? {
            None | Some(TaskStatus::Stopped) => return Ok(()),
            Some(s) => s,
        };
        if matches!(status, TaskStatus::Paused | TaskStatus::Pausing) {
            let _ = self
                .tasks_client()
                .resume(self.request(ResumeTaskRequest {
                    container_id: id.to_owned(),
                }))
                .await;
        }
        // A created task that never started exits on SIGKILL only.
        let first = if status == TaskStatus::Created {
            SIGKILL
        } else {
            SIGTERM
        };
        for (signal, grace) in [
            (first, self.config.stop_grace),
            (SIGKILL, Duration::from_secs(10)),
        ] {
            let killed = self
                .tasks_client()
                .kill(self.request(KillRequest {
                    container_id: id.to_owned(),
                    exec_id: String::new(),
                    signal,
                    all: signal == SIGKILL,
                }))
                .await;
            match killed {
                Ok(_) => {}
                Err(s) if s.code() == Code::NotFound => return Ok(()),
                Err(s) => {
                    tracing::debug!(worker = %worker_id, signal, error = %s, "kill failed");
                }
            }
            let mut tasks = self.tasks_client();
            let wait = tasks.wait(self.stream_request(WaitRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            }));
            match tokio::time::timeout(grace, wait).await {
                Ok(_) => return Ok(()),
                Err(_) if signal == SIGKILL => {
                    return Err(BackendError::Containerd {
                        operation: "stop task",
                        worker_id: worker_id.to_owned(),
                        source: tonic::Status::deadline_exceeded("the task survived SIGKILL"),
                    })
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    async fn metrics(&self, worker_id: &str) -> Result<WorkerMetrics, BackendError> {
        let found = self.find(worker_id).await?;
        let response = self
            .tasks_client()
            .metrics(self.request(MetricsRequest {
                filters: vec![format!("id=={}", found.id)],
            }))
            .await
            .map_err(|s| self.worker_error("task metrics", worker_id, s))?
            .into_inner();
        let data = response
            .metrics
            .into_iter()
            .find(|m| m.id == found.id)
            .and_then(|m| m.data)
            .ok_or_else(|| BackendError::NotFound {
                worker_id: worker_id.to_owned(),
            })?;
        if !data.type_url.ends_with(cgroups::METRICS_V1) {
            return Err(BackendError::Setup {
                reason: format!(
                    "containerd reports {} metrics; the agent reads cgroup v1 only",
                    data.type_url
                ),
            });
        }
        let metrics =
            cgroups::Metrics::decode(data.value.as_slice()).map_err(|e| BackendError::Setup {
                reason: format!("unreadable cgroup metrics: {e}"),
            })?;
        let seen = self.marks().oom_kills.get(worker_id).copied().unwrap_or(0);
        Ok(WorkerMetrics {
            worker_id: worker_id.to_owned(),
            memory_bytes: metrics.memory_bytes(),
            memory_limit_bytes: metrics.memory_limit_bytes(),
            cpu_seconds: metrics.cpu_seconds(),
            oom_kills: seen.max(u32::try_from(metrics.oom_kills()).unwrap_or(u32::MAX)),
        })
    }

    /// Removes this node's workers whose task does not run (exited, never
    /// started, or gone with a restart of the node).
    async fn reap_stopped(&self) -> Result<(), BackendError> {
        let statuses = self.task_statuses().await?;
        for c in self.containers(None).await? {
            let status = statuses.get(&c.id).copied();
            let running = matches!(
                status,
                Some(TaskStatus::Running | TaskStatus::Paused | TaskStatus::Pausing)
            );
            if let (false, Some(worker_id)) = (running, c.worker_id()) {
                tracing::info!(worker = %worker_id, container = %c.id, ?status, "removing a stopped worker");
                if let Err(e) = self.remove_worker(&c.id, worker_id).await {
                    tracing::warn!(worker = %worker_id, error = %crate::connection::Chain(&e), "cannot remove a stopped worker");
                }
            }
        }
        Ok(())
    }

    /// Reaps what cannot be used and returns the workers to announce:
    /// running workers whose `/health` answers and paused ones.
    async fn adopt(&self) -> Result<Vec<Worker>, BackendError> {
        let containers = self.containers(None).await?;
        let statuses = self.task_statuses().await?;
        let starting = self.marks().starting.clone();
        let checks = containers.iter().filter_map(|c| {
            let status = statuses.get(&c.id).copied();
            let worker = worker(c, status, &starting)?;
            if worker.state() == WorkerState::Starting && starting.contains(&worker.worker_id) {
                return None;
            }
            Some(async move {
                let keep = match status {
                    Some(TaskStatus::Paused | TaskStatus::Pausing) => true,
                    Some(TaskStatus::Running) => match c.address() {
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
                tracing::info!(worker = %worker.worker_id, container = %c.id, ?status, "removing a worker that cannot be adopted");
                if let Err(e) = self.remove_worker(&c.id, &worker.worker_id).await {
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

/// What a create made so far, to undo in reverse.
#[derive(Debug, Default, Clone, Copy)]
struct Made {
    dir: bool,
    snapshot: bool,
    container: bool,
    task: bool,
    network: bool,
}

impl Made {
    fn all() -> Self {
        Self {
            dir: true,
            snapshot: true,
            container: true,
            task: true,
            network: true,
        }
    }
}

/// The wire view of a container; `None` without a worker label.
fn worker(c: &Found, status: Option<TaskStatus>, starting: &HashSet<String>) -> Option<Worker> {
    let worker_id = c.worker_id()?.to_owned();
    let state = if starting.contains(&worker_id) {
        WorkerState::Starting
    } else {
        match status {
            Some(TaskStatus::Running) => WorkerState::Ready,
            Some(TaskStatus::Paused | TaskStatus::Pausing) => WorkerState::Paused,
            Some(TaskStatus::Created) => WorkerState::Starting,
            _ => WorkerState::Exited,
        }
    };
    let address = match state {
        WorkerState::Exited => String::new(),
        _ => c.address().map(|a| a.to_string()).unwrap_or_default(),
    };
    let text = |key: &str| c.labels.get(key).cloned().unwrap_or_default();
    Some(Worker {
        function: text(label::FUNCTION),
        address,
        state: state as i32,
        backend_id: c.id.clone(),
        owner: text(label::OWNER),
        memory_mb: text(label::MEMORY).parse().unwrap_or(0),
        image: c
            .labels
            .get(label::IMAGE)
            .cloned()
            .unwrap_or_else(|| c.image.clone()),
        worker_id,
    })
}

fn invalid_state(
    worker_id: &str,
    operation: &'static str,
    status: Option<TaskStatus>,
) -> BackendError {
    BackendError::InvalidState {
        worker_id: worker_id.to_owned(),
        operation,
        state: status
            .map(|s| s.as_str_name().to_lowercase())
            .unwrap_or_else(|| "no task".into()),
    }
}

/// Registry failures are the image not being available (as in Docker
/// mode); containerd failures are the backend's.
fn image_error(spec: &CreateWorker, e: ImageError) -> BackendError {
    match e {
        ImageError::Containerd { .. } | ImageError::Timeout { .. } => BackendError::Image {
            worker_id: spec.worker_id.clone(),
            source: e,
        },
        other => {
            tracing::warn!(worker = %spec.worker_id, image = %spec.image, error = %crate::connection::Chain(&other), "image not available");
            BackendError::ImageNotFound {
                worker_id: spec.worker_id.clone(),
                image: spec.image.clone(),
            }
        }
    }
}

/// `esb-<stack>-<worker id>` with anything containerd does not allow in ids
/// replaced by `-`; a hash of both when that is too long.
pub(crate) fn container_id(stack: &str, worker_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let id = format!("esb-{}-{}", clean(stack), clean(worker_id));
    if id.len() <= MAX_ID_LEN {
        return id;
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(format!("{stack}/{worker_id}").as_bytes());
    format!("esb-{:x}", hash)[..36].to_owned()
}

/// A channel to containerd's Unix socket (the URI is a placeholder).
async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_owned();
    tonic::transport::Endpoint::from_static("http://containerd")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
}

/// A containerd filter value: quoted, with quotes and backslashes escaped.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_containerd_safe_and_bounded() {
        assert_eq!(container_id("dev", "hello-0a1b2c"), "esb-dev-hello-0a1b2c");
        assert_eq!(container_id("a b", "x/y"), "esb-a-b-x-y");
        let long = container_id("stack", &"f".repeat(100));
        assert!(long.len() <= MAX_ID_LEN, "{long}");
        assert!(long.starts_with("esb-"));
        assert_ne!(long, container_id("stack", &"g".repeat(100)));
    }

    #[test]
    fn filter_values_are_quoted() {
        assert_eq!(quote("node-1"), "\"node-1\"");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn workers_are_listed_with_their_state_and_address() {
        let c = Found {
            id: "esb-dev-w1".into(),
            labels: HashMap::from([
                (label::WORKER.to_owned(), "w1".to_owned()),
                (label::FUNCTION.to_owned(), "fn".to_owned()),
                (label::MEMORY.to_owned(), "128".to_owned()),
                (ADDRESS_LABEL.to_owned(), "10.88.0.9:8080".to_owned()),
            ]),
            image: "registry:5010/fn:1".into(),
        };
        let none = HashSet::new();
        let w = worker(&c, Some(TaskStatus::Running), &none).expect("worker");
        assert_eq!(w.state(), WorkerState::Ready);
        assert_eq!(w.address, "10.88.0.9:8080");
        assert_eq!(w.memory_mb, 128);
        assert_eq!(w.image, "registry:5010/fn:1");
        let paused = worker(&c, Some(TaskStatus::Paused), &none).expect("worker");
        assert_eq!(paused.state(), WorkerState::Paused);
        let exited = worker(&c, None, &none).expect("worker");
        assert_eq!(exited.state(), WorkerState::Exited);
        assert!(exited.address.is_empty());
        let starting = HashSet::from(["w1".to_owned()]);
        assert_eq!(
            worker(&c, Some(TaskStatus::Running), &starting)
                .expect("worker")
                .state(),
            WorkerState::Starting
        );
    }
}
