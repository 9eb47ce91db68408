//! The execution environment: the language runtime process, and the hand-off
//! of one invocation at a time between the invoke endpoint and the Runtime
//! API the process polls.
//!
//! Lifecycle: the runtime is started when the shim starts and after a
//! process that had become ready dies (crash, timeout kill), so the next
//! invocation is warm. A process that dies during init is started again by
//! the next invocation, which then sees the init error, as on AWS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{FunctionSpec, LaunchError, MAX_RESPONSE_BYTES};
use crate::invocation::{epoch_millis, ErrorPayload, Invocation, InvocationContext, Outcome};
use crate::logs::{LogCapture, Report};

/// Grace period between SIGTERM and SIGKILL when the shim stops.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// Why an invocation could not be accepted at all.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the worker is busy with another invocation")]
    Busy,
    #[error("the worker is shutting down")]
    ShuttingDown,
}

/// Why a Runtime API call was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeApiError {
    #[error("Invalid request ID")]
    InvalidRequestId,
    #[error("State transition from {from} to {to} failed for runtime. Error: {detail}")]
    InvalidStateTransition {
        from: &'static str,
        to: &'static str,
        detail: &'static str,
    },
    #[error("Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).")]
    ResponseTooLarge,
}

/// What `invocation/next` hands the runtime.
#[derive(Debug)]
pub struct NextEvent {
    pub context: InvocationContext,
    pub payload: Bytes,
    pub deadline_ms: u64,
}

/// The result of one invocation, with what the caller may ask for.
#[derive(Debug)]
pub struct Completed {
    pub outcome: Outcome,
    pub tail: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The runtime is waiting for an invocation.
    Ready,
    /// An invocation is in progress.
    Busy,
    /// The runtime is initialising.
    Starting,
    /// The runtime cannot initialise; invocations return the init error.
    InitError,
    Stopping,
}

enum Process {
    /// Not running; holds the error if the last start failed in init.
    Down {
        init_failed: bool,
    },
    Starting {
        pid: i32,
        started: Instant,
    },
    Ready {
        pid: i32,
        init_duration: Option<Duration>,
    },
}

struct InFlight {
    request_id: String,
    reply: oneshot::Sender<Outcome>,
}

struct State {
    generation: u64,
    process: Process,
    /// Error posted to `init/error` by the current process.
    init_error: Option<Bytes>,
    pending: Option<Invocation>,
    in_flight: Option<InFlight>,
}

pub struct Sandbox {
    spec: Arc<FunctionSpec>,
    env: HashMap<String, String>,
    logs: Arc<LogCapture>,
    state: Mutex<State>,
    wake_next: Notify,
    busy: Semaphore,
    supervisors: TaskTracker,
    shutdown: CancellationToken,
}

impl Sandbox {
    pub fn new(
        spec: Arc<FunctionSpec>,
        runtime_api: SocketAddr,
        logs: Arc<LogCapture>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let env = runtime_environment(&spec, runtime_api, std::env::vars());
        Arc::new(Self {
            spec,
            env,
            logs,
            state: Mutex::new(State {
                generation: 0,
                process: Process::Down { init_failed: false },
                init_error: None,
                pending: None,
                in_flight: None,
            }),
            wake_next: Notify::new(),
            busy: Semaphore::new(1),
            supervisors: TaskTracker::new(),
            shutdown,
        })
    }

    pub fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    pub fn health(&self) -> Health {
        if self.shutdown.is_cancelled() {
            return Health::Stopping;
        }
        if self.spec.launch.is_err() {
            return Health::InitError;
        }
        if self.busy.available_permits() == 0 {
            return Health::Busy;
        }
        match self.lock().process {
            Process::Ready { .. } => Health::Ready,
            Process::Starting { .. } => Health::Starting,
            Process::Down { init_failed: true } => Health::InitError,
            Process::Down { init_failed: false } => Health::Starting,
        }
    }

    /// Starts the runtime if it is not running. Errors are reported through
    /// the next invocation, so they are only logged here.
    pub fn start(self: &Arc<Self>) {
        if let Err(e) = self.ensure_started() {
            tracing::warn!(error = %e, "runtime did not start");
        }
    }

    /// Runs one invocation to its end. Only one runs at a time.
    pub async fn invoke(
        self: &Arc<Self>,
        context: InvocationContext,
        payload: Bytes,
    ) -> Result<Completed, SandboxError> {
        let _permit = self.busy.try_acquire().map_err(|_| SandboxError::Busy)?;
        if self.shutdown.is_cancelled() {
            return Err(SandboxError::ShuttingDown);
        }
        let request_id = context.request_id.clone();
        self.logs
            .begin(&request_id, &context.trace_id, &self.spec.version);
        let started = Instant::now();
        let (outcome, init_duration) = match self.ensure_started() {
            Ok(()) => self.run(context, payload).await,
            Err(e) => (e.into_outcome(), None),
        };
        let report = Report {
            duration: started.elapsed().min(self.spec.timeout),
            memory_size_mb: self.spec.memory_mb,
            max_memory_used_mb: self.peak_memory_mb(),
            init_duration,
        };
        let tail = self.logs.finish(&report);
        Ok(Completed { outcome, tail })
    }

    async fn run(
        self: &Arc<Self>,
        context: InvocationContext,
        payload: Bytes,
    ) -> (Outcome, Option<Duration>) {
        let request_id = context.request_id.clone();
        let (reply, mut replied) = oneshot::channel();
        let (dispatched_tx, dispatched) = oneshot::channel();
        {
            let mut state = self.lock();
            state.pending = Some(Invocation {
                context,
                payload,
                dispatched: Some(dispatched_tx),
                reply,
            });
        }
        self.wake_next.notify_one();

        // Phase 1: until the runtime takes the invocation (immediate when warm).
        let init = tokio::select! {
            biased;
            outcome = &mut replied => {
                return (outcome.unwrap_or_else(|_| self.lost(&request_id)), None);
            }
            deadline = dispatched => deadline.ok(),
            () = tokio::time::sleep(self.spec.init_timeout) => None,
        };
        if init.is_none() {
            self.abort(&request_id);
            let message = format!(
                "RequestId: {request_id} Error: Runtime did not become ready within the init timeout of {:.2} seconds",
                self.spec.init_timeout.as_secs_f64()
            );
            return (
                ErrorPayload::new("Sandbox.Timedout", message).into_outcome(),
                None,
            );
        }
        let init_duration = self.take_init_duration();

        // Phase 2: the function runs, bounded by its timeout.
        match tokio::time::timeout(self.spec.timeout, &mut replied).await {
            Ok(outcome) => (
                outcome.unwrap_or_else(|_| self.lost(&request_id)),
                init_duration,
            ),
            Err(_) => {
                self.abort(&request_id);
                (
                    ErrorPayload::timed_out(&request_id, self.spec.timeout.as_secs_f64())
                        .into_outcome(),
                    init_duration,
                )
            }
        }
    }

    /// The reply channel closed without an outcome: only possible when the
    /// invocation was dropped by a process that went away.
    fn lost(&self, request_id: &str) -> Outcome {
        ErrorPayload::runtime_exited(request_id, "unknown").into_outcome()
    }

    /// Forgets the invocation and kills the runtime that holds it.
    fn abort(&self, request_id: &str) {
        let pid = {
            let mut state = self.lock();
            if state
                .pending
                .as_ref()
                .is_some_and(|p| p.context.request_id == request_id)
            {
                state.pending = None;
            }
            if state
                .in_flight
                .as_ref()
                .is_some_and(|f| f.request_id == request_id)
            {
                state.in_flight = None;
            }
            state.process.pid()
        };
        if let Some(pid) = pid {
            signal_group(pid, Signal::SIGKILL);
        }
    }

    fn take_init_duration(&self) -> Option<Duration> {
        match &mut self.lock().process {
            Process::Ready { init_duration, .. } => init_duration.take(),
            _ => None,
        }
    }

    fn ensure_started(self: &Arc<Self>) -> Result<(), StartError> {
        let launch = self
            .spec
            .launch
            .as_ref()
            .map_err(|e| StartError::Launch(e.clone()))?;
        let mut state = self.lock();
        if !matches!(state.process, Process::Down { .. }) {
            return Ok(());
        }
        if self.shutdown.is_cancelled() {
            return Err(StartError::ShuttingDown);
        }
        let (stdout, stderr) = self.logs.child_stdio().map_err(StartError::Spawn)?;
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .env_clear()
            .envs(&self.env)
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true);
        if self.spec.task_root.is_dir() {
            command.current_dir(&self.spec.task_root);
        }
        let mut child = command.spawn().map_err(StartError::Spawn)?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or_default();
        state.generation += 1;
        state.init_error = None;
        state.process = Process::Starting {
            pid,
            started: Instant::now(),
        };
        let generation = state.generation;
        drop(state);
        tracing::debug!(pid, generation, program = %launch.program, "runtime started");

        let sandbox = Arc::clone(self);
        self.supervisors.spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                () = sandbox.shutdown.cancelled() => {
                    signal_group(pid, Signal::SIGTERM);
                    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                        Ok(status) => status,
                        Err(_) => {
                            signal_group(pid, Signal::SIGKILL);
                            child.wait().await
                        }
                    }
                }
            };
            let status = match status {
                Ok(s) => exit_description(s),
                Err(e) => format!("wait failed: {e}"),
            };
            // Whatever the runtime left behind in its process group goes too.
            signal_group(pid, Signal::SIGKILL);
            sandbox.exited(generation, &status);
        });
        Ok(())
    }

    /// The runtime process of `generation` has exited.
    fn exited(self: &Arc<Self>, generation: u64, status: &str) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        let was_ready = matches!(state.process, Process::Ready { .. });
        let init_error = state.init_error.take();
        state.process = Process::Down {
            init_failed: !was_ready,
        };
        let pending = state.pending.take();
        let in_flight = state.in_flight.take();
        drop(state);
        tracing::info!(generation, status, "runtime exited");

        if let Some(f) = in_flight {
            let _ = f
                .reply
                .send(ErrorPayload::runtime_exited(&f.request_id, status).into_outcome());
        }
        let restart = was_ready && !self.shutdown.is_cancelled();
        match pending {
            // Not yet taken by the runtime that died between invocations:
            // it waits for the fresh runtime instead of failing.
            Some(p) if restart => self.lock().pending = Some(p),
            Some(p) => {
                let outcome = match init_error {
                    Some(body) => Outcome::FunctionError(body),
                    None => {
                        ErrorPayload::runtime_exited(&p.context.request_id, status).into_outcome()
                    }
                };
                let _ = p.reply.send(outcome);
            }
            None => {}
        }
        if restart {
            self.start();
        }
    }

    /// `GET /runtime/invocation/next`: waits for the next invocation.
    pub async fn next(&self) -> Result<NextEvent, RuntimeApiError> {
        loop {
            {
                let mut state = self.lock();
                if state.in_flight.is_some() {
                    return Err(RuntimeApiError::InvalidStateTransition {
                        from: "Invoking",
                        to: "Ready",
                        detail: "the runtime asked for the next invocation before answering the current one",
                    });
                }
                if let Process::Starting { pid, started } = state.process {
                    state.process = Process::Ready {
                        pid,
                        init_duration: Some(started.elapsed()),
                    };
                }
                if let Some(mut invocation) = state.pending.take() {
                    let deadline_ms = epoch_millis(SystemTime::now() + self.spec.timeout);
                    if let Some(dispatched) = invocation.dispatched.take() {
                        let _ = dispatched.send(deadline_ms);
                    }
                    state.in_flight = Some(InFlight {
                        request_id: invocation.context.request_id.clone(),
                        reply: invocation.reply,
                    });
                    return Ok(NextEvent {
                        context: invocation.context,
                        payload: invocation.payload,
                        deadline_ms,
                    });
                }
            }
            self.wake_next.notified().await;
        }
    }

    /// `POST /runtime/invocation/{id}/response` and `/error`: hands the
    /// outcome to the waiting caller.
    pub fn complete(&self, request_id: &str, outcome: Outcome) -> Result<(), RuntimeApiError> {
        let in_flight = {
            let mut state = self.lock();
            match &state.in_flight {
                Some(f) if f.request_id == request_id => state.in_flight.take(),
                _ => None,
            }
        };
        let in_flight = in_flight.ok_or(RuntimeApiError::InvalidRequestId)?;
        // The caller may have gone (timeout); nothing is left to tell then.
        let _ = in_flight.reply.send(outcome);
        Ok(())
    }

    /// `POST /runtime/init/error`: the pending invocation fails with the
    /// runtime's error and the process is stopped; the next invocation
    /// starts a fresh one.
    pub fn init_failed(&self, payload: Bytes) -> Result<(), RuntimeApiError> {
        let (pending, pid) = {
            let mut state = self.lock();
            if !matches!(state.process, Process::Starting { .. }) {
                return Err(RuntimeApiError::InvalidStateTransition {
                    from: "Ready",
                    to: "InitError",
                    detail: "init errors can only be reported before the first next call",
                });
            }
            state.init_error = Some(payload.clone());
            (state.pending.take(), state.process.pid())
        };
        if let Some(p) = pending {
            let _ = p.reply.send(Outcome::FunctionError(payload));
        }
        if let Some(pid) = pid {
            signal_group(pid, Signal::SIGKILL);
        }
        Ok(())
    }

    /// Waits for every runtime supervisor to finish (after shutdown).
    pub async fn stopped(&self) {
        self.supervisors.close();
        self.supervisors.wait().await;
    }

    /// Peak resident memory of the runtime process, in MB.
    fn peak_memory_mb(&self) -> u64 {
        let Some(pid) = self.lock().process.pid() else {
            return 0;
        };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kb| kb.div_ceil(1024))
            .unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State transitions are single assignments; a poisoned lock still
        // holds consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Process {
    fn pid(&self) -> Option<i32> {
        match self {
            Process::Starting { pid, .. } | Process::Ready { pid, .. } => Some(*pid),
            Process::Down { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Launch(LaunchError),
    #[error("cannot start the runtime: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the worker is shutting down")]
    ShuttingDown,
}

impl StartError {
    fn into_outcome(self) -> Outcome {
        let error_type = match &self {
            StartError::Launch(LaunchError::UnknownRuntime(_)) => "Runtime.InvalidRuntime",
            StartError::ShuttingDown => "Runtime.ExitError",
            _ => "Runtime.InvalidEntrypoint",
        };
        ErrorPayload::new(error_type, self.to_string()).into_outcome()
    }
}

fn signal_group(pid: i32, signal: Signal) {
    if pid > 0 {
        // ESRCH (already gone) is the expected case after an exit.
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

fn exit_description(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "signal: killed".to_owned(),
        (None, Some(sig)) => format!(
            "signal: {}",
            Signal::try_from(sig)
                .map(|s| s.as_str().to_owned())
                .unwrap_or(sig.to_string())
        ),
        (None, None) => "unknown".to_owned(),
    }
}

/// The environment of the runtime process: the shim's own, without ESB's
/// settings, plus the standard Lambda variables.
fn runtime_environment(
    spec: &FunctionSpec,
    runtime_api: SocketAddr,
    inherited: impl Iterator<Item = (String, String)>,
) -> HashMap<String, String> {
    let mut env: HashMap<String, String> =
        inherited.filter(|(k, _)| !k.starts_with("ESB_")).collect();
    env.extend(spec.environment.iter().cloned());
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    set("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string());
    set("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone());
    set("AWS_LAMBDA_FUNCTION_VERSION", spec.version.clone());
    set(
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        spec.memory_mb.to_string(),
    );
    set(
        "AWS_LAMBDA_FUNCTION_TIMEOUT",
        spec.timeout.as_secs().to_string(),
    );
    set("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned());
    set(
        "AWS_LAMBDA_LOG_GROUP_NAME",
        format!("/aws/lambda/{}", spec.name),
    );
    set("LAMBDA_TASK_ROOT", spec.task_root.display().to_string());
    set("AWS_REGION", spec.region.clone());
    if let Ok(launch) = &spec.launch {
        set("_HANDLER", launch.handler.clone());
        if let Some(exec_env) = &launch.execution_env {
            set("AWS_EXECUTION_ENV", exec_env.clone());
        }
    }
    env.entry("AWS_DEFAULT_REGION".to_owned())
        .or_insert_with(|| spec.region.clone());
    env.entry("AWS_LAMBDA_LOG_STREAM_NAME".to_owned())
        .or_insert_with(|| format!("$LATEST[{}]", uuid::Uuid::new_v4().simple()));
    env.entry("TZ".to_owned())
        .or_insert_with(|| ":UTC".to_owned());
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Launch;
    use std::path::PathBuf;

    fn spec() -> FunctionSpec {
        FunctionSpec {
            name: "fn".into(),
            version: "$LATEST".into(),
            memory_mb: 256,
            timeout: Duration::from_secs(7),
            init_timeout: Duration::from_secs(10),
            region: "eu-west-1".into(),
            account_id: "000000000000".into(),
            task_root: PathBuf::from("/var/task"),
            environment: vec![("TABLE".into(), "items".into())],
            launch: Ok(Launch {
                program: "python3".into(),
                args: vec![],
                handler: "app.handler".into(),
                execution_env: Some("AWS_Lambda_python3.11".into()),
            }),
        }
    }

    #[test]
    fn runtime_environment_is_lambdas_without_esb_settings() {
        let inherited = vec![
            ("PATH".to_string(), "/usr/bin".to_string()),
            ("ESB_LOGS_URL".to_string(), "http://x".to_string()),
            ("AWS_DEFAULT_REGION".to_string(), "ap-south-1".to_string()),
        ];
        let env = runtime_environment(
            &spec(),
            "127.0.0.1:9001".parse().expect("addr"),
            inherited.into_iter(),
        );
        assert_eq!(env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9001");
        assert_eq!(env["_HANDLER"], "app.handler");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_TIMEOUT"], "7");
        assert_eq!(env["AWS_EXECUTION_ENV"], "AWS_Lambda_python3.11");
        assert_eq!(env["AWS_REGION"], "eu-west-1");
        assert_eq!(env["AWS_DEFAULT_REGION"], "ap-south-1");
        assert_eq!(env["PATH"], "/usr/bin");
        assert_eq!(env["TABLE"], "items");
        assert!(!env.contains_key("ESB_LOGS_URL"));
    }

    #[test]
    fn exit_descriptions_match_lambda() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            exit_description(std::process::ExitStatus::from_raw(1 << 8)),
            "exit status 1"
        );
        assert_eq!(
            exit_description(std::process::ExitStatus::from_raw(9)),
            "signal: killed"
        );
        assert_eq!(
            exit_description(std::process::ExitStatus::from_raw(11)),
            "signal: SIGSEGV"
        );
    }
}
