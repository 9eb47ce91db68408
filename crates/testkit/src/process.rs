//! A process-based agent backend for component tests without Docker: each
//! worker is the real shim (`esb_runtime::serve`) on ephemeral loopback ports,
//! running the real language runtime (awslambdaric, a `lambda_runtime`
//! bootstrap) as a child process.
//!
//! A worker's "image" is the path of its task root, e.g. the Python fixture
//! directory. The function's runtime and handler come from the
//! `ESB_FUNCTION_RUNTIME` and `_HANDLER` variables the gateway sends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esb_agent::backend::{Backend, BackendError};
use esb_contracts::agent::{
    CreateWorker, RuntimeKind, Worker, WorkerEvent, WorkerMetrics, WorkerState,
};
use esb_runtime::config::{resolve_launch, FunctionSpec};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Running {
    worker: Worker,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

/// Workers as in-process shims with real runtime child processes.
pub struct ProcessBackend {
    python: PathBuf,
    workers: Mutex<HashMap<String, Running>>,
    events: broadcast::Sender<WorkerEvent>,
    ready_timeout: Duration,
}

impl ProcessBackend {
    pub fn new() -> Arc<ProcessBackend> {
        Arc::new(ProcessBackend {
            python: crate::python(),
            workers: Mutex::new(HashMap::new()),
            events: broadcast::channel(256).0,
            ready_timeout: Duration::from_secs(30),
        })
    }

    /// How many workers run now.
    pub fn running(&self) -> usize {
        self.lock().len()
    }

    /// Ends a worker as if it crashed, and reports it like a real node.
    pub async fn kill(&self, worker_id: &str) {
        let running = self.lock().remove(worker_id);
        if let Some(r) = running {
            r.shutdown.cancel();
            let _ = r.task.await;
            let _ = self.events.send(WorkerEvent {
                worker_id: worker_id.to_owned(),
                function: r.worker.function.clone(),
                kind: Some(esb_contracts::agent::worker_event::Kind::Exited(
                    esb_contracts::agent::Exited { exit_code: 137 },
                )),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spec(&self, create: &CreateWorker) -> Result<FunctionSpec, BackendError> {
        let invalid = |reason: String| BackendError::Invalid {
            worker_id: create.worker_id.clone(),
            reason,
        };
        let task_root = Path::new(&create.image);
        if !task_root.is_dir() {
            return Err(BackendError::ImageNotFound {
                worker_id: create.worker_id.clone(),
                image: create.image.clone(),
            });
        }
        let env = |k: &str| create.env.get(k).map(String::as_str);
        let python = self
            .python
            .to_str()
            .ok_or_else(|| invalid("python path".into()))?;
        let launch = resolve_launch(
            env("ESB_FUNCTION_RUNTIME"),
            env("_HANDLER"),
            &create.command,
            python,
            &[task_root.join("bootstrap")],
        );
        Ok(FunctionSpec {
            name: create.function.clone(),
            version: "$LATEST".into(),
            memory_mb: create.memory_mb,
            timeout: Duration::from_secs(u64::from(create.timeout_seconds.max(1))),
            init_timeout: Duration::from_secs(10),
            region: env("AWS_REGION").unwrap_or("us-east-1").to_owned(),
            account_id: env("ESB_ACCOUNT_ID").unwrap_or("000000000000").to_owned(),
            task_root: task_root.to_owned(),
            environment: create
                .env
                .iter()
                .filter(|(k, _)| !k.starts_with("ESB_"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            launch,
        })
    }
}

fn io_error(operation: &'static str, worker_id: &str, source: std::io::Error) -> BackendError {
    BackendError::Io {
        operation,
        worker_id: worker_id.to_owned(),
        source,
    }
}

impl Backend for ProcessBackend {
    fn runtime(&self) -> RuntimeKind {
        RuntimeKind::Process
    }

    async fn create(&self, spec: CreateWorker) -> Result<Worker, BackendError> {
        if self.lock().contains_key(&spec.worker_id) {
            return Err(BackendError::AlreadyExists {
                worker_id: spec.worker_id,
            });
        }
        let function = self.spec(&spec)?;
        let id = spec.worker_id.clone();
        let invoke = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| io_error("bind invoke port", &id, e))?;
        let api = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| io_error("bind runtime api port", &id, e))?;
        let address = invoke
            .local_addr()
            .map_err(|e| io_error("local address", &id, e))?
            .to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(esb_runtime::serve(
            function,
            invoke,
            api,
            None,
            shutdown.clone(),
        ));
        let worker = Worker {
            worker_id: id.clone(),
            function: spec.function.clone(),
            address: address.clone(),
            state: WorkerState::Ready as i32,
            backend_id: format!("process:{address}"),
            owner: spec.owner.clone(),
            memory_mb: spec.memory_mb,
            image: spec.image.clone(),
        };
        self.lock().insert(
            id.clone(),
            Running {
                worker: worker.clone(),
                shutdown,
                task,
            },
        );
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        loop {
            if let Ok(r) = client.get(format!("http://{address}/health")).send().await {
                if r.status() == 200 {
                    return Ok(worker);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self.destroy(&id).await;
                return Err(BackendError::NotReady {
                    worker_id: id,
                    image: spec.image,
                    timeout: self.ready_timeout,
                    logs: String::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn destroy(&self, worker_id: &str) -> Result<(), BackendError> {
        let running = self
            .lock()
            .remove(worker_id)
            .ok_or(BackendError::NotFound {
                worker_id: worker_id.to_owned(),
            })?;
        running.shutdown.cancel();
        let _ = running.task.await;
        Ok(())
    }

    async fn pause(&self, worker_id: &str) -> Result<(), BackendError> {
        Err(BackendError::InvalidState {
            worker_id: worker_id.to_owned(),
            operation: "pause",
            state: "process workers cannot be paused".into(),
        })
    }

    async fn resume(&self, worker_id: &str) -> Result<(), BackendError> {
        Err(BackendError::InvalidState {
            worker_id: worker_id.to_owned(),
            operation: "resume",
            state: "process workers cannot be paused".into(),
        })
    }

    async fn list(&self) -> Result<Vec<Worker>, BackendError> {
        Ok(self.lock().values().map(|r| r.worker.clone()).collect())
    }

    async fn metrics(&self, worker_id: &str) -> Result<WorkerMetrics, BackendError> {
        Err(BackendError::InvalidState {
            worker_id: worker_id.to_owned(),
            operation: "metrics",
            state: "process workers report no metrics".into(),
        })
    }

    fn events(&self) -> broadcast::Receiver<WorkerEvent> {
        self.events.subscribe()
    }
}
