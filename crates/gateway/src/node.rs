//! The node registry: compute nodes whose agents dialled in over gRPC, the
//! one `Connect` stream each keeps open, and commands sent down it with
//! their replies correlated by id.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use esb_contracts::agent::{
    agent_message, command, gateway_message, node_service_server::NodeService, reply, AgentMessage,
    Capacity, Command, GatewayMessage, Registered, Reply, RuntimeKind, Worker, WorkerEvent,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

/// Something a node told the gateway that the pools must act on.
#[derive(Debug)]
pub enum NodeEvent {
    /// A node registered; `workers` are the ones it already runs.
    Joined {
        node: Arc<Node>,
        workers: Vec<Worker>,
    },
    /// A node's session ended: its workers are out of reach.
    Left { node_id: String },
    /// A worker exited or was OOM-killed.
    Worker(WorkerEvent),
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node {node} is not connected")]
    Disconnected { node: String },
    #[error("node {node} did not answer {command} within {timeout:?}")]
    Timeout {
        node: String,
        command: &'static str,
        timeout: Duration,
    },
    #[error("node {node} failed {command}: {message}")]
    Agent {
        node: String,
        command: &'static str,
        code: i32,
        message: String,
    },
    #[error("node {node} answered {command} with an unexpected reply")]
    UnexpectedReply { node: String, command: &'static str },
}

/// One connected agent.
#[derive(Debug)]
pub struct Node {
    pub id: String,
    pub runtime: RuntimeKind,
    pub capacity: Capacity,
    pub labels: HashMap<String, String>,
    pub agent_version: String,
    session: u64,
    /// Dropped to end the session's response stream.
    outbound: Mutex<Option<mpsc::Sender<Result<GatewayMessage, Status>>>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<reply::Result>>>,
    next_command: AtomicU64,
    /// Memory of the workers the gateway placed here (its own accounting).
    reserved_mb: AtomicU64,
    workers: AtomicU32,
    last_seen: Mutex<Instant>,
    connected_at: Instant,
}

impl Node {
    /// Sends a command and waits for its reply.
    pub async fn call(
        &self,
        kind: command::Kind,
        timeout: Duration,
    ) -> Result<reply::Result, NodeError> {
        let name = command_name(&kind);
        let id = self.next_command.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id, tx);
        let message = GatewayMessage {
            body: Some(gateway_message::Body::Command(Command {
                id,
                kind: Some(kind),
            })),
        };
        let outbound = self
            .outbound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let sent = match outbound {
            Some(tx) => tx.send(Ok(message)).await.is_ok(),
            None => false,
        };
        if !sent {
            self.lock_pending().remove(&id);
            return Err(NodeError::Disconnected {
                node: self.id.clone(),
            });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply::Result::Error(e))) => Err(NodeError::Agent {
                node: self.id.clone(),
                command: name,
                code: e.code,
                message: e.message,
            }),
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(NodeError::Disconnected {
                node: self.id.clone(),
            }),
            Err(_) => {
                self.lock_pending().remove(&id);
                Err(NodeError::Timeout {
                    node: self.id.clone(),
                    command: name,
                    timeout,
                })
            }
        }
    }

    /// Hands a reply to the call waiting for it.
    pub(crate) fn deliver(&self, reply: Reply) {
        let waiter = self.lock_pending().remove(&reply.id);
        if let (Some(waiter), Some(result)) = (waiter, reply.result) {
            let _ = waiter.send(result);
        }
    }

    /// Memory still free for workers, by the gateway's accounting.
    pub fn free_mb(&self) -> u64 {
        self.capacity
            .memory_mb
            .saturating_sub(self.reserved_mb.load(Ordering::Relaxed))
    }

    pub fn worker_count(&self) -> u32 {
        self.workers.load(Ordering::Relaxed)
    }

    /// Counts a worker placed on this node.
    pub fn reserve(&self, memory_mb: u32) {
        self.reserved_mb
            .fetch_add(u64::from(memory_mb), Ordering::Relaxed);
        self.workers.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets a worker that left this node.
    pub fn release(&self, memory_mb: u32) {
        let _ = self
            .reserved_mb
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(u64::from(memory_mb)))
            });
        let _ = self
            .workers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }

    fn fits(&self, memory_mb: u32) -> bool {
        let max = self.capacity.max_workers;
        self.free_mb() >= u64::from(memory_mb) && (max == 0 || self.worker_count() < max)
    }

    fn lock_pending(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<reply::Result>>> {
        // Inserts and removals only; a poisoned map is still consistent.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the session: its stream closes and waiting calls fail.
    fn close(&self) {
        self.outbound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // Dropping the senders makes every waiting call see Disconnected.
        self.lock_pending().clear();
    }

    pub fn summary(&self) -> NodeSummary {
        NodeSummary {
            id: self.id.clone(),
            runtime: self.runtime.as_str_name().to_owned(),
            memory_mb: self.capacity.memory_mb,
            max_workers: self.capacity.max_workers,
            reserved_mb: self.reserved_mb.load(Ordering::Relaxed),
            workers: self.worker_count(),
            labels: self.labels.clone(),
            agent_version: self.agent_version.clone(),
            connected_seconds: self.connected_at.elapsed().as_secs(),
            last_seen_ms: self
                .last_seen
                .lock()
                .map(|t| t.elapsed().as_millis() as u64)
                .unwrap_or_default(),
        }
    }
}

/// A node as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct NodeSummary {
    pub id: String,
    pub runtime: String,
    pub memory_mb: u64,
    pub max_workers: u32,
    pub reserved_mb: u64,
    pub workers: u32,
    pub labels: HashMap<String, String>,
    pub agent_version: String,
    pub connected_seconds: u64,
    pub last_seen_ms: u64,
}

fn command_name(kind: &command::Kind) -> &'static str {
    match kind {
        command::Kind::Create(_) => "create",
        command::Kind::Destroy(_) => "destroy",
        command::Kind::Pause(_) => "pause",
        command::Kind::Resume(_) => "resume",
        command::Kind::List(_) => "list",
        command::Kind::Metrics(_) => "metrics",
    }
}

/// The connected nodes.
pub struct NodeRegistry {
    gateway_id: String,
    heartbeat_interval: Duration,
    nodes: Mutex<HashMap<String, Arc<Node>>>,
    sessions: AtomicU64,
    events: mpsc::Sender<NodeEvent>,
    readers: TaskTracker,
}

impl NodeRegistry {
    pub fn new(
        gateway_id: String,
        heartbeat_interval: Duration,
        events: mpsc::Sender<NodeEvent>,
    ) -> Arc<NodeRegistry> {
        Arc::new(NodeRegistry {
            gateway_id,
            heartbeat_interval,
            nodes: Mutex::new(HashMap::new()),
            sessions: AtomicU64::new(1),
            events,
            readers: TaskTracker::new(),
        })
    }

    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    pub fn get(&self, id: &str) -> Option<Arc<Node>> {
        self.lock().get(id).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Node>> {
        let mut nodes: Vec<_> = self.lock().values().cloned().collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        nodes
    }

    /// The node with the most free memory that fits a worker.
    pub fn place(&self, memory_mb: u32) -> Option<Arc<Node>> {
        self.lock()
            .values()
            .filter(|n| n.fits(memory_mb))
            .max_by_key(|n| (n.free_mb(), std::cmp::Reverse(n.worker_count())))
            .cloned()
    }

    /// Ends every node session (at shutdown), so the gRPC server can stop.
    pub fn close(&self) {
        for node in self.lock().values() {
            node.close();
        }
    }

    /// Waits for the connection readers to finish (after the gRPC server
    /// stopped).
    pub async fn stopped(&self) {
        self.readers.close();
        self.readers.wait().await;
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Node>>> {
        // Inserts and removals only; a poisoned map is still consistent.
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn session_ended(&self, node: &Arc<Node>) {
        let removed = {
            let mut nodes = self.lock();
            match nodes.get(&node.id) {
                Some(current) if current.session == node.session => nodes.remove(&node.id),
                _ => None,
            }
        };
        node.close();
        if removed.is_some() {
            tracing::warn!(node = %node.id, "node disconnected");
            let _ = self
                .events
                .send(NodeEvent::Left {
                    node_id: node.id.clone(),
                })
                .await;
        }
    }
}

/// A node driven by a test instead of an agent: the test reads the
/// commands from the returned receiver and answers with [`Node::deliver`].
#[cfg(test)]
pub(crate) fn attach_test_node(
    registry: &NodeRegistry,
    id: &str,
    memory_mb: u64,
) -> (Arc<Node>, mpsc::Receiver<Result<GatewayMessage, Status>>) {
    let (tx, rx) = mpsc::channel(64);
    let node = Arc::new(Node {
        id: id.to_owned(),
        runtime: RuntimeKind::Process,
        capacity: Capacity {
            memory_mb,
            max_workers: 0,
        },
        labels: HashMap::new(),
        agent_version: "test".into(),
        session: registry.sessions.fetch_add(1, Ordering::Relaxed),
        outbound: Mutex::new(Some(tx)),
        pending: Mutex::new(HashMap::new()),
        next_command: AtomicU64::new(1),
        reserved_mb: AtomicU64::new(0),
        workers: AtomicU32::new(0),
        last_seen: Mutex::new(Instant::now()),
        connected_at: Instant::now(),
    });
    registry.lock().insert(id.to_owned(), Arc::clone(&node));
    (node, rx)
}

/// The gRPC face of the registry.
#[derive(Clone)]
pub struct NodeGrpc {
    registry: Arc<NodeRegistry>,
}

impl NodeGrpc {
    pub fn new(registry: Arc<NodeRegistry>) -> NodeGrpc {
        NodeGrpc { registry }
    }
}

const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

#[tonic::async_trait]
impl NodeService for NodeGrpc {
    type ConnectStream = Pin<Box<dyn Stream<Item = Result<GatewayMessage, Status>> + Send>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Register message within 10 s"))??;
        let register = match first.and_then(|m| m.body) {
            Some(agent_message::Body::Register(r)) => r,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be Register",
                ))
            }
        };
        if register.node_id.is_empty() || register.node_id.len() > 128 {
            return Err(Status::invalid_argument("node_id must be 1-128 characters"));
        }
        let registry = Arc::clone(&self.registry);
        let (tx, rx) = mpsc::channel(256);
        let node = Arc::new(Node {
            id: register.node_id.clone(),
            runtime: RuntimeKind::try_from(register.runtime).unwrap_or(RuntimeKind::Unspecified),
            capacity: register.capacity.unwrap_or_default(),
            labels: register.labels.clone(),
            agent_version: register.agent_version.clone(),
            session: registry.sessions.fetch_add(1, Ordering::Relaxed),
            outbound: Mutex::new(Some(tx.clone())),
            pending: Mutex::new(HashMap::new()),
            next_command: AtomicU64::new(1),
            reserved_mb: AtomicU64::new(0),
            workers: AtomicU32::new(0),
            last_seen: Mutex::new(Instant::now()),
            connected_at: Instant::now(),
        });
        let registered = GatewayMessage {
            body: Some(gateway_message::Body::Registered(Registered {
                heartbeat_interval_ms: registry.heartbeat_interval.as_millis() as u32,
                gateway_id: registry.gateway_id.clone(),
            })),
        };
        tx.send(Ok(registered))
            .await
            .map_err(|_| Status::unavailable("stream closed"))?;
        drop(tx);
        if let Some(old) = registry.lock().insert(node.id.clone(), Arc::clone(&node)) {
            old.close();
        }
        tracing::info!(
            node = %node.id,
            runtime = node.runtime.as_str_name(),
            memory_mb = node.capacity.memory_mb,
            workers = register.workers.len(),
            "node registered"
        );
        let _ = registry
            .events
            .send(NodeEvent::Joined {
                node: Arc::clone(&node),
                workers: register.workers,
            })
            .await;

        let reader_registry = Arc::clone(&registry);
        registry.readers.spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(message)) => {
                        if let Ok(mut seen) = node.last_seen.lock() {
                            *seen = Instant::now();
                        }
                        match message.body {
                            Some(agent_message::Body::Reply(reply)) => node.deliver(reply),
                            Some(agent_message::Body::Event(event)) => {
                                let _ = reader_registry.events.send(NodeEvent::Worker(event)).await;
                            }
                            Some(agent_message::Body::Heartbeat(_)) => {}
                            Some(agent_message::Body::Register(_)) | None => {
                                tracing::warn!(node = %node.id, "unexpected message on an established session");
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::info!(node = %node.id, %status, "node stream ended");
                        break;
                    }
                }
            }
            reader_registry.session_ended(&node).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
