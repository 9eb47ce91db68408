//! Function pools: the workers of each function, scaled out on demand up to
//! its maximum, kept warm down to its minimum, reaped when idle (scale to
//! zero), with a circuit breaker on infrastructure failures.
//!
//! Invariants, per pool: every invocation holds one of `max_workers` permits
//! while it runs, and `total` (starting + idle + busy workers) never exceeds
//! `max_workers`. A permit holder takes an idle worker, or starts one when
//! `total < max_workers`, or waits for one to be returned.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use esb_contracts::agent::{command, reply, CreateWorker, Worker, WorkerRef, WorkerState};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::catalog::{Catalog, Function};
use crate::metrics::{Metrics, Outcome};
use crate::node::{Node, NodeError, NodeEvent, NodeRegistry};
use crate::worker::{WorkerCallError, WorkerClient, WorkerRequest, WorkerResponse};

/// Time the runtime may take to initialise, on top of the function timeout.
const INIT_ALLOWANCE: Duration = Duration::from_secs(10);
/// Slack for the network and the shim, on top of that.
const CALL_MARGIN: Duration = Duration::from_secs(5);
const DESTROY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// How long an invocation may wait for a worker before 429.
    pub acquire_timeout: Duration,
    /// Idle workers beyond the minimum are destroyed after this long.
    pub idle_timeout: Duration,
    /// Idle workers are paused after this long, when set.
    pub pause_after: Option<Duration>,
    /// How long a node may take to start a worker.
    pub start_timeout: Duration,
    /// Consecutive infrastructure failures that open a function's breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker refuses before letting one trial through.
    pub breaker_cooldown: Duration,
    pub region: String,
    pub account_id: String,
    /// Environment every worker gets (endpoints, logs URL).
    pub worker_env: BTreeMap<String, String>,
}

/// Why an invocation got no answer from the function.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("function {0} not found")]
    UnknownFunction(String),
    #[error("function {function} has no free worker within {waited:?}")]
    Throttled { function: String, waited: Duration },
    #[error("function {function} is failing and temporarily refuses invocations")]
    CircuitOpen { function: String },
    #[error("function {function}: worker failed to start: {source}")]
    StartFailed {
        function: String,
        #[source]
        source: StartError,
    },
    #[error("function {function}: {source}")]
    WorkerFailed {
        function: String,
        #[source]
        source: WorkerCallError,
    },
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("the function was replaced while the request waited")]
    Retired,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no compute node has {memory_mb} MB free")]
    NoCapacity { memory_mb: u32 },
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// A worker the gateway knows, wherever it is in its life.
#[derive(Debug)]
pub struct WorkerEntry {
    pub id: String,
    pub function: String,
    pub image: String,
    pub node: Arc<Node>,
    pub address: String,
    pub memory_mb: u32,
    alive: AtomicBool,
    created: Instant,
}

#[derive(Debug)]
struct Idle {
    worker: Arc<WorkerEntry>,
    since: Instant,
    paused: bool,
}

#[derive(Debug, Default)]
struct PoolState {
    idle: Vec<Idle>,
    total: usize,
    starting: usize,
    busy: usize,
}

impl PoolState {
    /// Takes the worker out of the idle list (and the total) if it is
    /// there; whether it was.
    fn remove_idle(&mut self, worker_id: &str) -> bool {
        let before = self.idle.len();
        self.idle.retain(|i| i.worker.id != worker_id);
        let removed = before - self.idle.len();
        self.total -= removed;
        removed > 0
    }
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    trial: bool,
}

impl Breaker {
    fn allow(&mut self, now: Instant) -> bool {
        match self.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) if self.trial => false,
            Some(_) => {
                self.trial = true;
                true
            }
        }
    }

    fn success(&mut self) {
        *self = Breaker::default();
    }

    fn failure(&mut self, now: Instant, threshold: u32, cooldown: Duration) {
        self.failures += 1;
        if self.trial || self.failures >= threshold {
            self.open_until = Some(now + cooldown);
            self.trial = false;
        }
    }

    fn state(&self, now: Instant) -> &'static str {
        match self.open_until {
            None => "closed",
            Some(until) if now < until => "open",
            Some(_) => "half_open",
        }
    }
}

struct Pool {
    function: Arc<Function>,
    slots: Semaphore,
    state: Mutex<PoolState>,
    returned: Notify,
    breaker: Mutex<Breaker>,
    retired: AtomicBool,
}

impl Pool {
    fn new(function: Arc<Function>) -> Pool {
        Pool {
            slots: Semaphore::new(function.max_workers as usize),
            function,
            state: Mutex::new(PoolState::default()),
            returned: Notify::new(),
            breaker: Mutex::new(Breaker::default()),
            retired: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Counter updates only; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn breaker(&self) -> MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a permit holder found in its pool.
enum Take {
    Idle(Arc<WorkerEntry>, bool),
    Start,
    Wait,
}

/// The result of an invocation that reached a worker.
#[derive(Debug)]
pub struct Invoked {
    pub response: WorkerResponse,
    pub cold_start: bool,
    pub worker_id: String,
}

/// A pool as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct PoolSummary {
    pub function: String,
    pub max_workers: u32,
    pub min_workers: u32,
    pub total: usize,
    pub idle: usize,
    pub busy: usize,
    pub starting: usize,
    pub breaker: &'static str,
}

/// A worker as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct WorkerSummary {
    pub id: String,
    pub function: String,
    pub node: String,
    pub address: String,
    pub memory_mb: u32,
    pub state: &'static str,
    pub age_seconds: u64,
}

pub struct Pools {
    registry: Arc<NodeRegistry>,
    client: WorkerClient,
    metrics: Arc<Metrics>,
    settings: PoolSettings,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    workers: Mutex<HashMap<String, Arc<WorkerEntry>>>,
    background: TaskTracker,
    closed: AtomicBool,
}

impl Pools {
    pub fn new(
        registry: Arc<NodeRegistry>,
        metrics: Arc<Metrics>,
        settings: PoolSettings,
    ) -> Arc<Pools> {
        Arc::new(Pools {
            registry,
            client: WorkerClient::new(),
            metrics,
            settings,
            pools: Mutex::new(HashMap::new()),
            workers: Mutex::new(HashMap::new()),
            background: TaskTracker::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// Brings the pools in line with a (new) catalog: pools of removed or
    /// changed functions retire, their workers are destroyed once idle.
    pub fn apply(self: &Arc<Self>, catalog: &Catalog) {
        let retired: Vec<Arc<Pool>> = {
            let mut pools = self.lock_pools();
            let stale: Vec<String> = pools
                .iter()
                .filter(|(name, pool)| {
                    catalog
                        .functions
                        .get(*name)
                        .is_none_or(|f| **f != *pool.function)
                })
                .map(|(name, _)| name.clone())
                .collect();
            let retired = stale.iter().filter_map(|n| pools.remove(n)).collect();
            for (name, function) in &catalog.functions {
                pools
                    .entry(name.clone())
                    .or_insert_with(|| Arc::new(Pool::new(Arc::clone(function))));
            }
            retired
        };
        for pool in retired {
            tracing::info!(function = %pool.function.name, "function changed or removed: retiring its workers");
            pool.retired.store(true, Ordering::SeqCst);
            pool.slots.close();
            // Requests holding a permit and waiting for a worker of the old
            // spec move on to the new pool.
            pool.returned.notify_waiters();
            let idle: Vec<Idle> = {
                let mut state = pool.lock();
                let idle: Vec<Idle> = state.idle.drain(..).collect();
                state.total -= idle.len();
                idle
            };
            for i in idle {
                self.destroy(i.worker);
            }
            self.metrics.workers(&pool.function.name, 0, 0, 0);
        }
    }

    fn pool(&self, function: &str) -> Option<Arc<Pool>> {
        self.lock_pools().get(function).cloned()
    }

    /// Runs one invocation on a worker of `function`.
    pub async fn invoke(
        self: &Arc<Self>,
        function: &str,
        request: &WorkerRequest,
    ) -> Result<Invoked, InvokeError> {
        let started = Instant::now();
        let mut pool = self
            .pool(function)
            .ok_or_else(|| InvokeError::UnknownFunction(function.to_owned()))?;
        let mut result = self.invoke_on(&pool, request, started).await;
        // The function changed while this request queued: its old pool
        // retired, so it goes on with the new one.
        if matches!(result, Err(InvokeError::Retired)) {
            pool = self
                .pool(function)
                .ok_or_else(|| InvokeError::UnknownFunction(function.to_owned()))?;
            result = self.invoke_on(&pool, request, started).await;
        }
        let name = pool.function.name.as_str();
        let outcome = match &result {
            Ok(invoked) => match invoked.response.error_type().as_deref() {
                None if invoked.response.function_error.is_none() => Outcome::Success,
                Some("Sandbox.Timedout") => Outcome::Timeout,
                _ => Outcome::FunctionError,
            },
            Err(InvokeError::Throttled { .. } | InvokeError::CircuitOpen { .. }) => {
                Outcome::Throttled
            }
            Err(InvokeError::StartFailed { .. }) => Outcome::StartFailed,
            Err(_) => Outcome::WorkerFailed,
        };
        self.metrics
            .invocation(name, outcome, started.elapsed().as_secs_f64());
        result
    }

    async fn invoke_on(
        self: &Arc<Self>,
        pool: &Arc<Pool>,
        request: &WorkerRequest,
        started: Instant,
    ) -> Result<Invoked, InvokeError> {
        let function = &pool.function;
        let name = function.name.clone();
        if !pool.breaker().allow(Instant::now()) {
            return Err(InvokeError::CircuitOpen { function: name });
        }
        let deadline = started + self.settings.acquire_timeout;
        let throttled = || InvokeError::Throttled {
            function: function.name.clone(),
            waited: self.settings.acquire_timeout,
        };
        let _permit = match tokio::time::timeout_at(deadline, pool.slots.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) if self.closed.load(Ordering::SeqCst) => {
                return Err(InvokeError::ShuttingDown)
            }
            Ok(Err(_)) => return Err(InvokeError::Retired),
            Err(_) => return Err(throttled()),
        };

        // Take an idle worker, start one, or wait for one to come back.
        let (worker, cold_start) = loop {
            let returned = pool.returned.notified();
            // The function changed: this request gets a worker of the new
            // spec from the new pool, never a new worker of the old one.
            if pool.retired.load(Ordering::SeqCst) {
                return Err(InvokeError::Retired);
            }
            let taken = {
                let mut state = pool.lock();
                if let Some(idle) = state.idle.pop() {
                    state.busy += 1;
                    Take::Idle(idle.worker, idle.paused)
                } else if state.total < function.max_workers as usize {
                    state.total += 1;
                    state.starting += 1;
                    Take::Start
                } else {
                    Take::Wait
                }
            };
            let paused = match taken {
                Take::Idle(worker, paused) => Some((worker, paused)),
                Take::Start => None,
                Take::Wait => {
                    if tokio::time::timeout_at(deadline, returned).await.is_err() {
                        return Err(throttled());
                    }
                    continue;
                }
            };
            match paused {
                Some((worker, false)) => break (worker, false),
                Some((worker, true)) => match self.resume(&worker).await {
                    Ok(()) => break (worker, false),
                    Err(e) => {
                        tracing::warn!(worker = %worker.id, error = %e, "paused worker did not resume");
                        self.release(pool, worker, false);
                        continue;
                    }
                },
                None => {
                    self.metrics
                        .queue_wait(&name, started.elapsed().as_secs_f64());
                    match self.start(function).await {
                        Ok(worker) if pool.retired.load(Ordering::SeqCst) => {
                            // Replaced while it started: the request goes
                            // to the new spec.
                            {
                                let mut state = pool.lock();
                                state.starting -= 1;
                                state.total -= 1;
                            }
                            self.destroy(worker);
                            return Err(InvokeError::Retired);
                        }
                        Ok(worker) => {
                            let mut state = pool.lock();
                            state.starting -= 1;
                            state.busy += 1;
                            break (worker, true);
                        }
                        Err(source) => {
                            {
                                let mut state = pool.lock();
                                state.starting -= 1;
                                state.total -= 1;
                            }
                            pool.returned.notify_one();
                            self.breaker_failure(pool);
                            return Err(InvokeError::StartFailed {
                                function: name,
                                source,
                            });
                        }
                    }
                }
            }
        };
        if !cold_start {
            self.metrics
                .queue_wait(&name, started.elapsed().as_secs_f64());
        } else {
            self.metrics.cold_start(&name);
        }

        let timeout = function.timeout + INIT_ALLOWANCE + CALL_MARGIN;
        match self.client.invoke(&worker.address, request, timeout).await {
            Ok(response) if response.status == 429 || response.status >= 500 => {
                tracing::warn!(worker = %worker.id, status = response.status, "worker refused the invocation");
                self.breaker_failure(pool);
                self.release(pool, worker, false);
                Err(InvokeError::WorkerFailed {
                    function: name,
                    source: WorkerCallError::Protocol {
                        address: String::new(),
                        reason: format!("worker answered HTTP {}", response.status),
                    },
                })
            }
            Ok(response) => {
                pool.breaker().success();
                let worker_id = worker.id.clone();
                // A worker whose runtime had to be killed (timeout) is
                // restarted by its shim and stays usable.
                self.release(pool, worker, true);
                Ok(Invoked {
                    response,
                    cold_start,
                    worker_id,
                })
            }
            Err(source) => {
                tracing::warn!(worker = %worker.id, error = %source, "worker call failed");
                self.breaker_failure(pool);
                self.release(pool, worker, false);
                Err(InvokeError::WorkerFailed {
                    function: name,
                    source,
                })
            }
        }
    }

    fn breaker_failure(&self, pool: &Pool) {
        pool.breaker().failure(
            Instant::now(),
            self.settings.breaker_threshold,
            self.settings.breaker_cooldown,
        );
    }

    /// Hands a busy worker back: to the idle list when it is healthy,
    /// otherwise it is destroyed.
    fn release(&self, pool: &Pool, worker: Arc<WorkerEntry>, healthy: bool) {
        let keep =
            healthy && worker.alive.load(Ordering::SeqCst) && !pool.retired.load(Ordering::SeqCst);
        {
            let mut state = pool.lock();
            state.busy -= 1;
            if keep {
                state.idle.push(Idle {
                    worker: Arc::clone(&worker),
                    since: Instant::now(),
                    paused: false,
                });
            } else {
                state.total -= 1;
            }
        }
        pool.returned.notify_one();
        if !keep {
            self.destroy(worker);
        }
    }

    /// Starts a worker for `function` on the node with the most room.
    async fn start(&self, function: &Function) -> Result<Arc<WorkerEntry>, StartError> {
        let node = self
            .registry
            .place(function.memory_mb)
            .ok_or(StartError::NoCapacity {
                memory_mb: function.memory_mb,
            })?;
        node.reserve(function.memory_mb);
        let worker_id = format!(
            "{}-{}",
            function.name,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let create = CreateWorker {
            worker_id: worker_id.clone(),
            function: function.name.clone(),
            image: function.image.clone(),
            memory_mb: function.memory_mb,
            timeout_seconds: function.timeout.as_secs() as u32,
            env: self.worker_env(function).into_iter().collect(),
            command: function.command.clone(),
            owner: self.registry.gateway_id().to_owned(),
        };
        let result = node
            .call(command::Kind::Create(create), self.settings.start_timeout)
            .await;
        let worker = match result {
            Ok(reply::Result::Worker(w)) => w,
            Ok(_) => {
                node.release(function.memory_mb);
                return Err(NodeError::UnexpectedReply {
                    node: node.id.clone(),
                    command: "create",
                }
                .into());
            }
            Err(e) => {
                node.release(function.memory_mb);
                return Err(e.into());
            }
        };
        tracing::info!(function = %function.name, worker = %worker.worker_id, node = %node.id, "worker started");
        let entry = Arc::new(WorkerEntry {
            id: worker.worker_id,
            function: function.name.clone(),
            image: function.image.clone(),
            node,
            address: worker.address,
            memory_mb: function.memory_mb,
            alive: AtomicBool::new(true),
            created: Instant::now(),
        });
        self.lock_workers()
            .insert(entry.id.clone(), Arc::clone(&entry));
        Ok(entry)
    }

    /// The Lambda environment of a function's workers.
    fn worker_env(&self, function: &Function) -> BTreeMap<String, String> {
        let mut env = self.settings.worker_env.clone();
        env.extend(function.environment.clone());
        let mut set = |k: &str, v: String| {
            env.insert(k.to_owned(), v);
        };
        set("AWS_LAMBDA_FUNCTION_NAME", function.name.clone());
        set(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            function.memory_mb.to_string(),
        );
        set(
            "AWS_LAMBDA_FUNCTION_TIMEOUT",
            function.timeout.as_secs().to_string(),
        );
        set("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned());
        set("AWS_REGION", self.settings.region.clone());
        set("AWS_DEFAULT_REGION", self.settings.region.clone());
        set("ESB_ACCOUNT_ID", self.settings.account_id.clone());
        set("LAMBDA_TASK_ROOT", "/var/task".to_owned());
        if let Some(handler) = &function.handler {
            set("_HANDLER", handler.clone());
        }
        if let Some(runtime) = &function.runtime {
            set("ESB_FUNCTION_RUNTIME", runtime.clone());
        }
        env
    }

    async fn resume(&self, worker: &WorkerEntry) -> Result<(), NodeError> {
        worker
            .node
            .call(
                command::Kind::Resume(WorkerRef {
                    worker_id: worker.id.clone(),
                }),
                self.settings.start_timeout,
            )
            .await
            .map(|_| ())
    }

    /// Destroys a worker in the background and forgets it.
    fn destroy(&self, worker: Arc<WorkerEntry>) {
        worker.alive.store(false, Ordering::SeqCst);
        {
            let mut workers = self.lock_workers();
            match workers.get(&worker.id) {
                Some(known) if Arc::ptr_eq(known, &worker) => {
                    workers.remove(&worker.id);
                }
                // Already gone (exit event, node left), or adopted anew
                // since: nothing to destroy.
                _ => return,
            }
        }
        worker.node.release(worker.memory_mb);
        // The node's current session: it may have reconnected since.
        let node = self
            .registry
            .get(&worker.node.id)
            .unwrap_or_else(|| Arc::clone(&worker.node));
        self.background.spawn(async move {
            let result = node
                .call(
                    command::Kind::Destroy(WorkerRef {
                        worker_id: worker.id.clone(),
                    }),
                    DESTROY_TIMEOUT,
                )
                .await;
            match result {
                Ok(_) => tracing::info!(worker = %worker.id, function = %worker.function, "worker destroyed"),
                Err(e) => tracing::warn!(worker = %worker.id, error = %e, "worker not destroyed"),
            }
        });
    }

    /// Takes a worker out of service for good: destroyed now when idle,
    /// when its invocation ends when busy.
    fn retire_worker(&self, worker_id: &str) {
        let Some(worker) = self.lock_workers().get(worker_id).cloned() else {
            return;
        };
        worker.alive.store(false, Ordering::SeqCst);
        let Some(pool) = self.pool(&worker.function) else {
            self.destroy(worker);
            return;
        };
        let idle = pool.lock().remove_idle(worker_id);
        if idle {
            pool.returned.notify_one();
            self.destroy(worker);
        }
        // Busy: `release` sees it is not alive and destroys it.
    }

    /// The node of a worker went away. Its containers may live on (an
    /// agent that restarts leaves them running): an idle worker is
    /// forgotten, and adopted again when the node lists it on its return;
    /// a busy one finishes its invocation (the gateway calls workers
    /// directly), then is destroyed through the node's new session. It is
    /// never adopted while busy, so it never runs two invocations at once.
    fn disconnected(&self, worker_id: &str) {
        let Some(worker) = self.lock_workers().get(worker_id).cloned() else {
            return;
        };
        let idle = self
            .pool(&worker.function)
            .is_some_and(|pool| pool.lock().remove_idle(worker_id));
        if idle {
            self.lost(worker_id);
        } else {
            // `release` sees it is not alive and destroys it.
            worker.alive.store(false, Ordering::SeqCst);
        }
    }

    /// Forgets a worker that is gone without the gateway's doing.
    fn lost(&self, worker_id: &str) {
        let Some(worker) = self.lock_workers().remove(worker_id) else {
            return;
        };
        worker.alive.store(false, Ordering::SeqCst);
        worker.node.release(worker.memory_mb);
        if let Some(pool) = self.pool(&worker.function) {
            let removed = pool.lock().remove_idle(worker_id);
            if removed {
                pool.returned.notify_one();
            }
        }
    }

    /// Acts on what a node reported.
    pub fn handle(self: &Arc<Self>, event: NodeEvent) {
        match event {
            NodeEvent::Joined { node, workers } => self.adopt(&node, workers),
            NodeEvent::Left { node_id } => {
                let gone: Vec<String> = self
                    .lock_workers()
                    .values()
                    .filter(|w| w.node.id == node_id)
                    .map(|w| w.id.clone())
                    .collect();
                for id in gone {
                    self.disconnected(&id);
                }
            }
            NodeEvent::Worker(event) => {
                use esb_contracts::agent::worker_event::Kind;
                if matches!(event.kind, Some(Kind::OomKilled(_))) {
                    // The kernel killed a process of the worker (usually the
                    // runtime, which its shim restarts): the container may
                    // still run, so it is destroyed, not just forgotten.
                    tracing::info!(worker = %event.worker_id, function = %event.function, "worker hit its memory limit: replacing it");
                    self.retire_worker(&event.worker_id);
                } else {
                    tracing::info!(worker = %event.worker_id, function = %event.function, kind = ?event.kind, "worker gone");
                    self.lost(&event.worker_id);
                }
            }
        }
    }

    /// Takes over the workers a (re)connecting node already runs: ready
    /// workers of current functions join their pool, the rest are destroyed.
    fn adopt(self: &Arc<Self>, node: &Arc<Node>, workers: Vec<Worker>) {
        for w in workers {
            if self.lock_workers().contains_key(&w.worker_id) {
                continue;
            }
            let pool = self.pool(&w.function).filter(|p| {
                p.function.image == w.image
                    && p.function.memory_mb == w.memory_mb
                    && w.state == WorkerState::Ready as i32
            });
            let entry = Arc::new(WorkerEntry {
                id: w.worker_id.clone(),
                function: w.function.clone(),
                image: w.image.clone(),
                node: Arc::clone(node),
                address: w.address.clone(),
                memory_mb: w.memory_mb,
                alive: AtomicBool::new(true),
                created: Instant::now(),
            });
            node.reserve(w.memory_mb);
            self.lock_workers()
                .insert(entry.id.clone(), Arc::clone(&entry));
            let adopted = pool.is_some_and(|pool| {
                let mut state = pool.lock();
                let room = state.total < pool.function.max_workers as usize;
                if room {
                    state.total += 1;
                    state.idle.push(Idle {
                        worker: Arc::clone(&entry),
                        since: Instant::now(),
                        paused: false,
                    });
                    drop(state);
                    pool.returned.notify_one();
                }
                room
            });
            if adopted {
                tracing::info!(worker = %w.worker_id, function = %w.function, node = %node.id, "worker adopted");
            } else {
                tracing::info!(worker = %w.worker_id, function = %w.function, node = %node.id, "reaping a worker of no current function");
                self.destroy(entry);
            }
        }
    }

    /// Periodic upkeep: reap and pause idle workers, keep the minimum warm,
    /// refresh the worker gauges.
    pub fn tick(self: &Arc<Self>) {
        let now = Instant::now();
        let pools: Vec<Arc<Pool>> = self.lock_pools().values().cloned().collect();
        for pool in pools {
            let min = pool.function.min_workers as usize;
            let (expired, to_pause, to_start) = {
                let mut state = pool.lock();
                let mut expired = Vec::new();
                // Oldest first: the idle list is a stack (LIFO keeps the
                // warmest workers in use), so its front is the coldest.
                while state.total > min
                    && state
                        .idle
                        .first()
                        .is_some_and(|i| now.duration_since(i.since) >= self.settings.idle_timeout)
                {
                    let idle = state.idle.remove(0);
                    state.total -= 1;
                    expired.push(idle.worker);
                }
                let mut to_pause = Vec::new();
                if let Some(after) = self.settings.pause_after {
                    for idle in state.idle.iter_mut().filter(|i| !i.paused) {
                        if now.duration_since(idle.since) >= after {
                            idle.paused = true;
                            to_pause.push(Arc::clone(&idle.worker));
                        }
                    }
                }
                let warm_gap = min.saturating_sub(state.total);
                let to_start = if warm_gap > 0 && pool.breaker().allow(now) {
                    state.total += warm_gap;
                    state.starting += warm_gap;
                    warm_gap
                } else {
                    0
                };
                self.metrics.workers(
                    &pool.function.name,
                    state.idle.len(),
                    state.busy,
                    state.starting,
                );
                (expired, to_pause, to_start)
            };
            for worker in expired {
                tracing::info!(worker = %worker.id, function = %worker.function, "idle timeout: scaling in");
                self.destroy(worker);
            }
            for worker in to_pause {
                let this = Arc::clone(self);
                self.background.spawn(async move {
                    let result = worker
                        .node
                        .call(
                            command::Kind::Pause(WorkerRef {
                                worker_id: worker.id.clone(),
                            }),
                            this.settings.start_timeout,
                        )
                        .await;
                    if let Err(e) = result {
                        tracing::warn!(worker = %worker.id, error = %e, "worker not paused");
                    }
                });
            }
            for _ in 0..to_start {
                let this = Arc::clone(self);
                let pool = Arc::clone(&pool);
                self.background.spawn(async move {
                    let started = this.start(&pool.function).await;
                    let mut state = pool.lock();
                    state.starting -= 1;
                    match started {
                        Ok(worker) if !pool.retired.load(Ordering::SeqCst) => {
                            state.idle.push(Idle {
                                worker,
                                since: Instant::now(),
                                paused: false,
                            });
                            drop(state);
                            pool.returned.notify_one();
                        }
                        Ok(worker) => {
                            state.total -= 1;
                            drop(state);
                            this.destroy(worker);
                        }
                        Err(e) => {
                            state.total -= 1;
                            drop(state);
                            tracing::warn!(function = %pool.function.name, error = %e, "warm worker did not start");
                            this.breaker_failure(&pool);
                        }
                    }
                });
            }
        }
    }

    pub fn summaries(&self) -> Vec<PoolSummary> {
        let now = Instant::now();
        let mut out: Vec<PoolSummary> = self
            .lock_pools()
            .values()
            .map(|pool| {
                let state = pool.lock();
                PoolSummary {
                    function: pool.function.name.clone(),
                    max_workers: pool.function.max_workers,
                    min_workers: pool.function.min_workers,
                    total: state.total,
                    idle: state.idle.len(),
                    busy: state.busy,
                    starting: state.starting,
                    breaker: pool.breaker().state(now),
                }
            })
            .collect();
        out.sort_by(|a, b| a.function.cmp(&b.function));
        out
    }

    pub fn workers(&self) -> Vec<WorkerSummary> {
        let idle: HashMap<String, bool> = self
            .lock_pools()
            .values()
            .flat_map(|p| {
                p.lock()
                    .idle
                    .iter()
                    .map(|i| (i.worker.id.clone(), i.paused))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut out: Vec<WorkerSummary> = self
            .lock_workers()
            .values()
            .map(|w| WorkerSummary {
                id: w.id.clone(),
                function: w.function.clone(),
                node: w.node.id.clone(),
                address: w.address.clone(),
                memory_mb: w.memory_mb,
                state: match idle.get(&w.id) {
                    Some(true) => "paused",
                    Some(false) => "idle",
                    None => "busy",
                },
                age_seconds: w.created.elapsed().as_secs(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Stops accepting invocations and waits for background work (worker
    /// destruction) to finish. Live workers stay for the next gateway to
    /// adopt.
    pub async fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            for pool in self.lock_pools().values() {
                pool.slots.close();
            }
        }
        self.background.close();
        self.background.wait().await;
    }

    fn lock_pools(&self) -> MutexGuard<'_, HashMap<String, Arc<Pool>>> {
        // Inserts and removals only; a poisoned map is still consistent.
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_workers(&self) -> MutexGuard<'_, HashMap<String, Arc<WorkerEntry>>> {
        // Inserts and removals only; a poisoned map is still consistent.
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CatalogConfig, Defaults, FunctionConfig};
    use crate::node::attach_test_node;
    use esb_contracts::agent::{gateway_message, Done, Reply};
    use tokio::sync::mpsc;

    const IMAGE: &str = "fn-image:1";

    fn settings(pause_after: Option<Duration>) -> PoolSettings {
        PoolSettings {
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            pause_after,
            start_timeout: Duration::from_secs(30),
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(10),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            worker_env: BTreeMap::new(),
        }
    }

    fn catalog(min_workers: u32) -> Catalog {
        let function: FunctionConfig = serde_json::from_value(serde_json::json!({
            "name": "fn", "image": IMAGE, "min_workers": min_workers, "max_workers": 3
        }))
        .expect("function");
        Catalog::from_config(
            CatalogConfig {
                version: 1,
                functions: vec![function],
                routes: vec![],
                schedules: vec![],
            },
            Defaults { max_workers: 10 },
        )
        .expect("catalog")
    }

    /// A fake agent at the node boundary: answers every command and
    /// records it as "create <fn>", "destroy <id>", "pause <id>".
    fn fake_agent(
        node: Arc<Node>,
        commands: mpsc::Receiver<Result<esb_contracts::agent::GatewayMessage, tonic::Status>>,
    ) -> Arc<Mutex<Vec<String>>> {
        fake_agent_gated(node, commands, None)
    }

    /// Like [`fake_agent`]; each create first takes a permit of `gate`.
    fn fake_agent_gated(
        node: Arc<Node>,
        mut commands: mpsc::Receiver<Result<esb_contracts::agent::GatewayMessage, tonic::Status>>,
        gate: Option<Arc<Semaphore>>,
    ) -> Arc<Mutex<Vec<String>>> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&log);
        tokio::spawn(async move {
            while let Some(Ok(message)) = commands.recv().await {
                let Some(gateway_message::Body::Command(command)) = message.body else {
                    continue;
                };
                let result = match command.kind {
                    Some(command::Kind::Create(c)) => {
                        if let Some(gate) = &gate {
                            gate.acquire().await.expect("gate").forget();
                        }
                        seen.lock()
                            .expect("log")
                            .push(format!("create {} {} {}", c.function, c.image, c.worker_id));
                        reply::Result::Worker(Worker {
                            worker_id: c.worker_id,
                            function: c.function,
                            address: "127.0.0.1:9".into(),
                            state: WorkerState::Ready as i32,
                            memory_mb: c.memory_mb,
                            image: c.image,
                            ..Worker::default()
                        })
                    }
                    Some(command::Kind::Destroy(w)) => {
                        seen.lock()
                            .expect("log")
                            .push(format!("destroy {}", w.worker_id));
                        reply::Result::Done(Done {})
                    }
                    Some(command::Kind::Pause(w)) => {
                        seen.lock()
                            .expect("log")
                            .push(format!("pause {}", w.worker_id));
                        reply::Result::Done(Done {})
                    }
                    _ => reply::Result::Done(Done {}),
                };
                node.deliver(Reply {
                    id: command.id,
                    result: Some(result),
                });
            }
        });
        log
    }

    fn ready_worker(id: &str) -> Worker {
        Worker {
            worker_id: id.into(),
            function: "fn".into(),
            address: "127.0.0.1:9".into(),
            state: WorkerState::Ready as i32,
            memory_mb: 128,
            image: IMAGE.into(),
            ..Worker::default()
        }
    }

    fn setup(
        min_workers: u32,
        pause_after: Option<Duration>,
    ) -> (Arc<Pools>, Arc<Node>, Arc<Mutex<Vec<String>>>) {
        let (events, _rx) = mpsc::channel(16);
        let registry = NodeRegistry::new("gw".into(), Duration::from_secs(5), events);
        let (node, commands) = attach_test_node(&registry, "node-1", 4096);
        let log = fake_agent(Arc::clone(&node), commands);
        let pools = Pools::new(registry, Arc::new(Metrics::new()), settings(pause_after));
        pools.apply(&catalog(min_workers));
        (pools, node, log)
    }

    /// Lets spawned tasks run (paused time advances only when all idle).
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    fn summary(pools: &Pools) -> PoolSummary {
        pools.summaries().into_iter().next().expect("a pool")
    }

    #[tokio::test(start_paused = true)]
    async fn idle_workers_beyond_the_minimum_are_reaped_after_the_idle_timeout() {
        let (pools, node, log) = setup(1, None);
        pools.tick();
        settle().await;
        assert_eq!(
            summary(&pools).idle,
            1,
            "the minimum is started without a request"
        );
        pools.handle(NodeEvent::Joined {
            node: Arc::clone(&node),
            workers: vec![ready_worker("w-a"), ready_worker("w-b")],
        });
        assert_eq!(
            summary(&pools).total,
            3,
            "ready workers of the function are adopted"
        );

        tokio::time::advance(Duration::from_secs(59)).await;
        pools.tick();
        settle().await;
        assert_eq!(summary(&pools).total, 3, "not idle long enough");

        tokio::time::advance(Duration::from_secs(2)).await;
        pools.tick();
        settle().await;
        let s = summary(&pools);
        assert_eq!((s.total, s.idle), (1, 1), "scaled in down to the minimum");
        let destroyed = log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l.starts_with("destroy"))
            .count();
        assert_eq!(destroyed, 2);
        assert_eq!(node.worker_count(), 1, "the node's accounting follows");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_minimum_the_pool_scales_to_zero() {
        let (pools, node, log) = setup(0, None);
        pools.handle(NodeEvent::Joined {
            node: Arc::clone(&node),
            workers: vec![ready_worker("w-a")],
        });
        tokio::time::advance(Duration::from_secs(61)).await;
        pools.tick();
        settle().await;
        assert_eq!(summary(&pools).total, 0);
        assert_eq!(*log.lock().expect("log"), vec!["destroy w-a".to_string()]);
        assert!(pools.workers().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_workers_are_paused_first_when_configured() {
        let (pools, node, log) = setup(0, Some(Duration::from_secs(10)));
        pools.handle(NodeEvent::Joined {
            node: Arc::clone(&node),
            workers: vec![ready_worker("w-a")],
        });
        tokio::time::advance(Duration::from_secs(11)).await;
        pools.tick();
        settle().await;
        assert_eq!(*log.lock().expect("log"), vec!["pause w-a".to_string()]);
        assert_eq!(pools.workers()[0].state, "paused");
        pools.tick();
        settle().await;
        assert_eq!(log.lock().expect("log").len(), 1, "paused once");
    }

    #[tokio::test(start_paused = true)]
    async fn workers_of_other_images_or_not_ready_are_reaped_on_adoption() {
        let (pools, node, log) = setup(0, None);
        let mut stale = ready_worker("w-old");
        stale.image = "fn-image:0".into();
        let mut starting = ready_worker("w-starting");
        starting.state = WorkerState::Starting as i32;
        let mut orphan = ready_worker("w-orphan");
        orphan.function = "deleted".into();
        pools.handle(NodeEvent::Joined {
            node: Arc::clone(&node),
            workers: vec![stale, starting, orphan, ready_worker("w-good")],
        });
        settle().await;
        assert_eq!(summary(&pools).total, 1);
        let mut destroyed: Vec<String> = log.lock().expect("log").clone();
        destroyed.sort();
        assert_eq!(
            destroyed,
            ["destroy w-old", "destroy w-orphan", "destroy w-starting"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exits_oom_kills_and_lost_nodes_remove_workers() {
        use esb_contracts::agent::{worker_event::Kind, Exited, OomKilled, WorkerEvent};
        let (pools, node, log) = setup(0, None);
        pools.handle(NodeEvent::Joined {
            node: Arc::clone(&node),
            workers: vec![
                ready_worker("w-a"),
                ready_worker("w-b"),
                ready_worker("w-c"),
            ],
        });
        // An exited worker is gone already: forgotten, nothing to destroy.
        pools.handle(NodeEvent::Worker(WorkerEvent {
            worker_id: "w-a".into(),
            function: "fn".into(),
            kind: Some(Kind::Exited(Exited { exit_code: 1 })),
        }));
        // An OOM kill may leave the container running (the shim restarts
        // its runtime): it is destroyed, never left behind unknown.
        pools.handle(NodeEvent::Worker(WorkerEvent {
            worker_id: "w-b".into(),
            function: "fn".into(),
            kind: Some(Kind::OomKilled(OomKilled {})),
        }));
        settle().await;
        assert_eq!(summary(&pools).total, 1);
        assert_eq!(*log.lock().expect("log"), vec!["destroy w-b".to_string()]);
        pools.handle(NodeEvent::Left {
            node_id: "node-1".into(),
        });
        assert_eq!(summary(&pools).total, 0);
        assert!(pools.workers().is_empty());
        assert_eq!(node.worker_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_function_retires_its_idle_workers() {
        let (pools, node, log) = setup(0, None);
        pools.handle(NodeEvent::Joined {
            node: Arc::clone(&node),
            workers: vec![ready_worker("w-a")],
        });
        let mut changed = catalog(0);
        let f = changed.functions.get_mut("fn").expect("fn");
        *f = Arc::new(Function {
            image: "fn-image:2".into(),
            ..(**f).clone()
        });
        pools.apply(&changed);
        settle().await;
        assert_eq!(*log.lock().expect("log"), vec!["destroy w-a".to_string()]);
        assert_eq!(summary(&pools).total, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_started_for_a_function_replaced_meanwhile_is_not_used() {
        let (events, _rx) = mpsc::channel(16);
        let registry = NodeRegistry::new("gw".into(), Duration::from_secs(5), events);
        let (node, commands) = attach_test_node(&registry, "node-1", 4096);
        let gate = Arc::new(Semaphore::new(0));
        let log = fake_agent_gated(Arc::clone(&node), commands, Some(Arc::clone(&gate)));
        let pools = Pools::new(registry, Arc::new(Metrics::new()), settings(None));
        pools.apply(&catalog(0));

        // A request starts a worker of image 1; the catalog changes to
        // image 2 before the node answers.
        let request = WorkerRequest {
            payload: bytes::Bytes::from_static(b"{}"),
            request_id: "r-1".into(),
            trace_id: "Root=1-5759e988-bd862e3fe1be46a994272793".into(),
            tail: false,
            client_context: None,
            invoked_function_arn: None,
        };
        let invocation = {
            let pools = Arc::clone(&pools);
            tokio::spawn(async move { pools.invoke("fn", &request).await })
        };
        settle().await;
        let mut changed = catalog(0);
        let f = changed.functions.get_mut("fn").expect("fn");
        *f = Arc::new(Function {
            image: "fn-image:2".into(),
            ..(**f).clone()
        });
        pools.apply(&changed);
        gate.add_permits(2);
        // The fake workers do not answer invocations (127.0.0.1:9): what
        // matters is which worker the request went to.
        let _ = invocation.await.expect("join");
        settle().await;
        let log = log.lock().expect("log").clone();
        let creates: Vec<&String> = log.iter().filter(|l| l.starts_with("create")).collect();
        assert_eq!(creates.len(), 2, "{log:?}");
        assert!(creates[0].starts_with("create fn fn-image:1 "), "{log:?}");
        assert!(
            creates[1].starts_with("create fn fn-image:2 "),
            "the request went on with a worker of the new spec: {log:?}"
        );
        let old_worker = creates[0].rsplit(' ').next().expect("id");
        assert!(
            log.contains(&format!("destroy {old_worker}")),
            "the old-spec worker is destroyed unused: {log:?}"
        );
    }

    #[test]
    fn breaker_opens_after_the_threshold_and_lets_one_trial_through() {
        let now = Instant::now();
        let cooldown = Duration::from_secs(10);
        let mut b = Breaker::default();
        for _ in 0..2 {
            b.failure(now, 3, cooldown);
            assert!(b.allow(now));
        }
        b.failure(now, 3, cooldown);
        assert!(!b.allow(now), "open after 3 failures");
        assert_eq!(b.state(now), "open");
        let later = now + cooldown;
        assert!(b.allow(later), "one trial after the cooldown");
        assert!(!b.allow(later), "only one trial at a time");
        b.failure(later, 3, cooldown);
        assert!(!b.allow(later), "a failed trial opens it again");
        let much_later = later + cooldown;
        assert!(b.allow(much_later));
        b.success();
        assert!(b.allow(much_later) && b.allow(much_later));
        assert_eq!(b.state(much_later), "closed");
    }
}
