//! The OS boundary: a [`Backend`] creates, pauses, destroys and inspects
//! workers and reports their exits. The session code is generic over it;
//! tests use fakes, production uses [`docker::DockerBackend`] or
//! [`containerd::ContainerdBackend`].

pub mod containerd;
pub mod docker;
pub mod health;
mod marks;
mod route;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use esb_contracts::agent::{
    worker_event, CreateWorker, Error as WireError, ErrorCode, Exited, OomKilled, RuntimeKind,
    Worker, WorkerEvent, WorkerMetrics,
};
use tokio::sync::broadcast;

/// A runtime that runs workers on this node.
///
/// Implementations must be cheap to share (`Arc<B>`) and safe to call
/// concurrently: the agent runs commands in parallel. Every method must be
/// bounded in time (a hung runtime must end in an error, not a hang).
///
/// Workers are identified by the gateway's `worker_id`
/// ([`CreateWorker::worker_id`]), never by the backend's own ids.
pub trait Backend: Send + Sync + 'static {
    /// The runtime kind announced in `Register`.
    fn runtime(&self) -> RuntimeKind;

    /// Creates and starts a worker and returns it once its invoke endpoint is
    /// ready (`GET /health` answers 200), in state `READY` with `address`
    /// set to `host:port`. On any failure nothing is left behind.
    /// The agent validates `spec` before calling (ids, image, memory).
    fn create(
        &self,
        spec: CreateWorker,
    ) -> impl Future<Output = Result<Worker, BackendError>> + Send;

    /// Removes a worker, whatever its state. Unknown workers give
    /// [`BackendError::NotFound`].
    fn destroy(&self, worker_id: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Freezes a running worker.
    fn pause(&self, worker_id: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Thaws a paused worker.
    fn resume(&self, worker_id: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Every worker of this node, in any state.
    fn list(&self) -> impl Future<Output = Result<Vec<Worker>, BackendError>> + Send;

    /// Resource usage of one worker.
    fn metrics(
        &self,
        worker_id: &str,
    ) -> impl Future<Output = Result<WorkerMetrics, BackendError>> + Send;

    /// The workers to announce in `Register`, called before each
    /// registration. Backends reap what cannot be used here (exited workers,
    /// workers whose endpoint does not answer) and return the rest.
    /// The default is [`Backend::list`] without the exited workers.
    fn adopt(&self) -> impl Future<Output = Result<Vec<Worker>, BackendError>> + Send {
        async move {
            let mut workers = self.list().await?;
            workers.retain(|w| w.state() != esb_contracts::agent::WorkerState::Exited);
            Ok(workers)
        }
    }

    /// A new subscription to worker events (exits, OOM kills) from now on.
    /// Each session subscribes once; a lagging subscriber loses the oldest
    /// events (the next `Register` lists the workers that are left).
    fn events(&self) -> broadcast::Receiver<WorkerEvent>;
}

/// The worker's environment: the gateway's, plus the Lambda variables the
/// shim needs when the gateway did not set them.
pub(crate) fn worker_env(spec: &CreateWorker) -> Vec<String> {
    let mut env: BTreeMap<&str, String> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    env.entry("AWS_LAMBDA_FUNCTION_NAME")
        .or_insert_with(|| spec.function.clone());
    env.entry("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .or_insert_with(|| spec.memory_mb.to_string());
    if spec.timeout_seconds > 0 {
        env.entry("AWS_LAMBDA_FUNCTION_TIMEOUT")
            .or_insert_with(|| spec.timeout_seconds.to_string());
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Why a backend operation failed. Mapped to the wire's `Error` in one
/// place, [`BackendError::to_wire`].
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No worker with this id on this node.
    #[error("worker {worker_id} not found")]
    NotFound {
        /// The gateway's worker id.
        worker_id: String,
    },
    /// The worker's image is not on the node (and could not be pulled).
    #[error("image {image} not found (worker {worker_id})")]
    ImageNotFound {
        /// The gateway's worker id.
        worker_id: String,
        /// The image as requested.
        image: String,
    },
    /// The worker's process ended (or could not start) before it was ready.
    #[error("worker {worker_id} (image {image}) failed to start: {reason}")]
    StartFailed {
        /// The gateway's worker id.
        worker_id: String,
        /// The image as requested.
        image: String,
        /// What happened, e.g. `exited with code 64`.
        reason: String,
        /// The last lines the worker printed.
        logs: String,
    },
    /// The worker did not become ready in time.
    #[error("worker {worker_id} (image {image}) not ready within {timeout:?}")]
    NotReady {
        /// The gateway's worker id.
        worker_id: String,
        /// The image as requested.
        image: String,
        /// The start timeout that expired.
        timeout: Duration,
        /// The last lines the worker printed.
        logs: String,
    },
    /// The request cannot be carried out as given.
    #[error("invalid request for worker {worker_id}: {reason}")]
    Invalid {
        /// The gateway's worker id.
        worker_id: String,
        /// What is wrong.
        reason: String,
    },
    /// A worker with this id already exists.
    #[error("worker {worker_id} already exists")]
    AlreadyExists {
        /// The gateway's worker id.
        worker_id: String,
    },
    /// The worker is in a state that does not allow the operation.
    #[error("cannot {operation} worker {worker_id} in state {state}")]
    InvalidState {
        /// The gateway's worker id.
        worker_id: String,
        /// `pause`, `resume`, ...
        operation: &'static str,
        /// The backend's name of the state.
        state: String,
    },
    /// The node has no room for another worker.
    #[error("no capacity for worker {worker_id}: {reason}")]
    Capacity {
        /// The gateway's worker id.
        worker_id: String,
        /// Which limit was hit.
        reason: String,
    },
    /// The agent cannot reach the worker's network safely (it is not
    /// attached to the network, or has no local route to the address).
    #[error("no local route to {address} on network {network}")]
    Unroutable {
        /// The Docker network.
        network: String,
        /// The address the agent refused to contact.
        address: String,
    },
    /// Network address mode needs the agent to run in a container attached
    /// to the workers' network (inside the box).
    #[error("the agent is not running in a container attached to network {network}; use loopback addresses outside the box")]
    NotAttached {
        /// The Docker network.
        network: String,
    },
    /// A Docker Engine API call failed.
    #[error("docker {operation} failed (worker {worker_id})")]
    Docker {
        /// The API operation, e.g. `create container`.
        operation: &'static str,
        /// The gateway's worker id, empty for node-wide operations.
        worker_id: String,
        /// The engine's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// A containerd API call failed.
    #[error("containerd {operation} failed (worker {worker_id})")]
    Containerd {
        /// The API operation, e.g. `create task`.
        operation: &'static str,
        /// The gateway's worker id, empty for node-wide operations.
        worker_id: String,
        /// containerd's error.
        #[source]
        source: tonic::Status,
    },
    /// Attaching or detaching a worker's network failed.
    #[error("worker network failed (worker {worker_id})")]
    Cni {
        /// The gateway's worker id, empty for node-wide operations.
        worker_id: String,
        /// What went wrong.
        #[source]
        source: containerd::CniError,
    },
    /// The worker's image could not be pulled or unpacked for a reason other
    /// than the registry not having it.
    #[error("cannot prepare the image of worker {worker_id}")]
    Image {
        /// The gateway's worker id.
        worker_id: String,
        /// What went wrong.
        #[source]
        source: containerd::ImageError,
    },
    /// The backend cannot run on this node as configured.
    #[error("{reason}")]
    Setup {
        /// What is missing or wrong.
        reason: String,
    },
    /// An I/O operation failed (process backends).
    #[error("{operation} failed (worker {worker_id})")]
    Io {
        /// What was being done, e.g. `spawn runtime`.
        operation: &'static str,
        /// The gateway's worker id, empty for node-wide operations.
        worker_id: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl BackendError {
    /// The wire error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::ImageNotFound { .. } => ErrorCode::ImageNotFound,
            Self::StartFailed { .. } => ErrorCode::StartFailed,
            Self::NotReady { .. } => ErrorCode::NotReady,
            Self::Invalid { .. } | Self::AlreadyExists { .. } | Self::InvalidState { .. } => {
                ErrorCode::Invalid
            }
            Self::Capacity { .. } => ErrorCode::Capacity,
            Self::Unroutable { .. }
            | Self::NotAttached { .. }
            | Self::Docker { .. }
            | Self::Containerd { .. }
            | Self::Cni { .. }
            | Self::Image { .. }
            | Self::Setup { .. }
            | Self::Io { .. } => ErrorCode::Backend,
        }
    }

    /// The wire error sent to the gateway: the code and a message with the
    /// error's context (ids, image, the worker's last log lines), never the
    /// engine's or the OS's internal error text. The one place where backend
    /// errors meet the wire; the caller logs the full error once.
    pub fn to_wire(&self) -> WireError {
        let message = match self {
            Self::StartFailed { logs, .. } | Self::NotReady { logs, .. } if !logs.is_empty() => {
                format!("{self}; last log lines:\n{logs}")
            }
            Self::Docker { .. }
            | Self::Containerd { .. }
            | Self::Cni { .. }
            | Self::Image { .. }
            | Self::Io { .. } => {
                format!("{self}: internal backend error, see the agent's log")
            }
            _ => self.to_string(),
        };
        WireError {
            code: self.code() as i32,
            message,
        }
    }
}

/// A start's outcome as the backends report it: `Ok` once ready, else
/// `NotReady` or `StartFailed` with the worker's last log lines.
pub(crate) async fn started(
    readiness: health::Readiness,
    spec: &CreateWorker,
    timeout: Duration,
    logs: impl Future<Output = String>,
) -> Result<(), BackendError> {
    let worker_id = spec.worker_id.clone();
    let image = spec.image.clone();
    match readiness {
        health::Readiness::Ready => Ok(()),
        health::Readiness::TimedOut => Err(BackendError::NotReady {
            worker_id,
            image,
            timeout,
            logs: logs.await,
        }),
        health::Readiness::Stopped(reason) => Err(BackendError::StartFailed {
            worker_id,
            image,
            reason,
            logs: logs.await,
        }),
    }
}

/// What a backend's event watcher saw happen to a worker.
pub(crate) enum Seen {
    /// The kernel killed a process of the worker for its memory limit.
    OomKill,
    /// The worker's init process exited with this code.
    Exit(i32),
}

/// Counts an OOM kill and sends the worker event for what was seen, unless
/// the worker's create or removal under way owns it (a start failure is the
/// create's error, a removal expects the exit). No subscriber (no session
/// right now) is fine: the next Register lists the workers that are left.
/// True when an exit was sent: the caller removes the worker.
pub(crate) fn publish_seen(
    marks: &marks::MarkTable,
    events: &broadcast::Sender<WorkerEvent>,
    worker_id: &str,
    function: String,
    seen: Seen,
) -> bool {
    let owned_elsewhere = {
        let mut marks = marks.lock();
        if matches!(seen, Seen::OomKill) {
            *marks.oom_kills.entry(worker_id.to_owned()).or_default() += 1;
        }
        marks.starting.contains(worker_id) || marks.removing.contains(worker_id)
    };
    let kind = match seen {
        Seen::OomKill => {
            tracing::warn!(worker = %worker_id, function = %function, "worker hit its memory limit (OOM kill)");
            worker_event::Kind::OomKilled(OomKilled {})
        }
        Seen::Exit(_) if owned_elsewhere => return false,
        Seen::Exit(exit_code) => {
            tracing::info!(worker = %worker_id, function = %function, exit_code, "worker exited");
            worker_event::Kind::Exited(Exited { exit_code })
        }
    };
    if owned_elsewhere {
        return false;
    }
    let exited = matches!(kind, worker_event::Kind::Exited(_));
    let _ = events.send(WorkerEvent {
        worker_id: worker_id.to_owned(),
        function,
        kind: Some(kind),
    });
    exited
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn spec() -> CreateWorker {
        CreateWorker {
            worker_id: "w-1".into(),
            function: "hello".into(),
            image: "hello:latest".into(),
            memory_mb: 256,
            timeout_seconds: 7,
            env: HashMap::from([
                ("AWS_LAMBDA_FUNCTION_NAME".into(), "given".into()),
                ("DATABASE_URL".into(), "postgres://x".into()),
            ]),
            command: Vec::new(),
            owner: "gw-1".into(),
        }
    }

    #[test]
    fn env_keeps_the_gateways_values_and_adds_missing_lambda_variables() {
        let env = worker_env(&spec());
        assert!(env.contains(&"AWS_LAMBDA_FUNCTION_NAME=given".to_owned()));
        assert!(env.contains(&"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256".to_owned()));
        assert!(env.contains(&"AWS_LAMBDA_FUNCTION_TIMEOUT=7".to_owned()));
        assert!(env.contains(&"DATABASE_URL=postgres://x".to_owned()));
    }

    #[test]
    fn wire_errors_carry_code_and_context_but_no_internal_text() {
        let e = BackendError::ImageNotFound {
            worker_id: "w1".into(),
            image: "fn:latest".into(),
        }
        .to_wire();
        assert_eq!(e.code(), ErrorCode::ImageNotFound);
        assert!(e.message.contains("fn:latest"), "{}", e.message);

        let e = BackendError::NotReady {
            worker_id: "w1".into(),
            image: "fn:latest".into(),
            timeout: Duration::from_secs(30),
            logs: "Traceback: boom".into(),
        }
        .to_wire();
        assert_eq!(e.code(), ErrorCode::NotReady);
        assert!(e.message.contains("boom") && e.message.contains("w1"));

        let e = BackendError::Io {
            operation: "spawn runtime",
            worker_id: "w2".into(),
            source: std::io::Error::other("secret internal detail"),
        }
        .to_wire();
        assert_eq!(e.code(), ErrorCode::Backend);
        assert!(!e.message.contains("secret"), "{}", e.message);
        assert!(e.message.contains("w2"));
    }

    #[test]
    fn what_a_watcher_sees_is_published_unless_a_create_or_removal_owns_it() {
        let marks = marks::MarkTable::default();
        let (events, mut received) = broadcast::channel(8);
        assert!(publish_seen(
            &marks,
            &events,
            "w1",
            "f".into(),
            Seen::Exit(3)
        ));
        let event = received.try_recv().expect("exit published");
        assert_eq!(
            event.kind,
            Some(worker_event::Kind::Exited(Exited { exit_code: 3 }))
        );
        assert!(!publish_seen(
            &marks,
            &events,
            "w1",
            "f".into(),
            Seen::OomKill
        ));
        assert!(received.try_recv().is_ok(), "OOM kill published");

        marks.lock().starting.insert("w2".into());
        assert!(!publish_seen(
            &marks,
            &events,
            "w2",
            "f".into(),
            Seen::OomKill
        ));
        assert!(!publish_seen(
            &marks,
            &events,
            "w2",
            "f".into(),
            Seen::Exit(1)
        ));
        marks.lock().removing.insert("w3".into());
        assert!(!publish_seen(
            &marks,
            &events,
            "w3",
            "f".into(),
            Seen::Exit(0)
        ));
        assert!(
            received.try_recv().is_err(),
            "nothing published for owned workers"
        );
        let counted = marks.lock().oom_kills.clone();
        assert_eq!(counted.get("w1"), Some(&1));
        assert_eq!(
            counted.get("w2"),
            Some(&1),
            "counted even when not published"
        );
    }
}
