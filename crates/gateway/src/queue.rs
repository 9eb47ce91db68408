//! Asynchronous invocations (`X-Amz-Invocation-Type: Event`), as Lambda
//! runs them: the Invoke API stores the event in the gateway's store before
//! it answers 202; the dispatcher claims due events with a lease (at least
//! once: an event claimed by a gateway that died runs again), runs them on
//! the same pools as synchronous invocations, retries a function error
//! after the configured delays (Lambda: two retries, after about one and two
//! minutes), requeues a throttled event or one lost to a system error (a
//! worker that would not start or stopped answering) without counting an
//! attempt, drops events older than the maximum age,
//! and keeps the outcome for `GET /admin/v1/invocations`.
//!
//! Claims are one statement: `FOR UPDATE SKIP LOCKED` on PostgreSQL (many
//! dispatchers never take the same event), SQLite's single writer.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::event::UtcTime;
use crate::pool::{InvokeError, StartError};
use crate::store::{bounded, Store, StoreError};
use crate::worker::WorkerRequest;
use crate::Gateway;

/// Largest `Event` payload: Lambda's 256 KB asynchronous limit.
pub const MAX_EVENT_PAYLOAD: usize = 256 * 1024;

/// How often the dispatcher looks for due events.
const POLL: Duration = Duration::from_millis(200);
/// Events run at the same time by one gateway.
const MAX_IN_FLIGHT: usize = 64;
/// A throttled event (no free worker, no node with room, breaker open) is tried again after this.
const THROTTLE_DELAY: Duration = Duration::from_secs(1);
/// The wait before an invocation lost to a system error runs again.
const SYSTEM_ERROR_DELAY: Duration = Duration::from_secs(5);
/// A claim lasts the longest function timeout plus this (queueing for a
/// worker, starting it, the runtime's init).
const LEASE_MARGIN: Duration = Duration::from_secs(120);
/// How much of a function's error is kept as `last_error`.
const MAX_ERROR_CHARS: usize = 1024;

/// Retries and the age limit, from `ESB_ASYNC_RETRY_DELAYS_SECONDS` and
/// `ESB_ASYNC_MAX_AGE_SECONDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncSettings {
    /// One entry per retry: the delay before it.
    pub retry_delays: Vec<Duration>,
    pub max_age: Duration,
}

/// Where an invocation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl InvocationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationStatus::Queued => "queued",
            InvocationStatus::Running => "running",
            InvocationStatus::Succeeded => "succeeded",
            InvocationStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<InvocationStatus> {
        [
            InvocationStatus::Queued,
            InvocationStatus::Running,
            InvocationStatus::Succeeded,
            InvocationStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// An accepted `Event` invocation, as the Invoke API stores it.
#[derive(Debug)]
pub struct NewInvocation<'a> {
    pub request_id: &'a str,
    pub function: &'a str,
    pub invoked_function_arn: &'a str,
    pub payload: &'a [u8],
    pub trace_id: &'a str,
    pub client_context: Option<&'a str>,
}

/// An invocation as the admin API shows it (never its payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvocationSummary {
    pub request_id: String,
    pub function: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// RFC 3339, UTC, milliseconds.
    pub enqueued_at: String,
    /// When it is (or was) due next.
    pub due_at: String,
    pub finished_at: Option<String>,
}

type SummaryRow = (
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    i64,
    Option<i64>,
);

impl From<SummaryRow> for InvocationSummary {
    fn from(row: SummaryRow) -> InvocationSummary {
        let (request_id, function, status, attempts, last_error, enqueued, due, finished) = row;
        InvocationSummary {
            request_id,
            function,
            status,
            attempts,
            last_error,
            enqueued_at: timestamp(enqueued),
            due_at: timestamp(due),
            finished_at: finished.map(timestamp),
        }
    }
}

/// A claimed invocation, ready to run.
#[derive(Debug, Clone)]
pub struct ClaimedInvocation {
    pub request_id: String,
    pub function: String,
    pub invoked_function_arn: String,
    pub payload: Vec<u8>,
    pub trace_id: String,
    pub client_context: Option<String>,
    /// Attempts made before this one.
    pub attempts: i64,
    pub enqueued_at_ms: i64,
}

type ClaimedRow = (
    String,
    String,
    String,
    Vec<u8>,
    String,
    Option<String>,
    i64,
    i64,
);

impl From<ClaimedRow> for ClaimedInvocation {
    fn from(row: ClaimedRow) -> ClaimedInvocation {
        let (
            request_id,
            function,
            invoked_function_arn,
            payload,
            trace_id,
            client_context,
            attempts,
            enqueued_at_ms,
        ) = row;
        ClaimedInvocation {
            request_id,
            function,
            invoked_function_arn,
            payload,
            trace_id,
            client_context,
            attempts,
            enqueued_at_ms,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn timestamp(ms: i64) -> String {
    // rem_euclid(1000) is in 0..1000.
    UtcTime::from_unix_seconds(ms.div_euclid(1000)).iso8601(Some(ms.rem_euclid(1000) as u32))
}

/// The queries are written for PostgreSQL (`$1`); SQLite reads the same
/// numbered parameters as `?1`.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

/// Runs a `query_as` on either backend; `$bind` binds the parameters to `$q`.
macro_rules! fetch {
    ($store:expr, $sql:expr, $method:ident, |$q:ident| $bind:expr) => {
        match $store {
            Store::Postgres(pool) => {
                let $q = sqlx::query_as($sql);
                $bind.$method(pool).await
            }
            Store::Sqlite(pool) => {
                let sql = sqlite_sql($sql);
                let $q = sqlx::query_as(&sql);
                $bind.$method(pool).await
            }
        }
    };
}

/// Runs a statement on either backend and returns the rows it changed.
macro_rules! execute {
    ($store:expr, $sql:expr, |$q:ident| $bind:expr) => {
        match $store {
            Store::Postgres(pool) => {
                let $q = sqlx::query($sql);
                $bind.execute(pool).await.map(|r| r.rows_affected())
            }
            Store::Sqlite(pool) => {
                let sql = sqlite_sql($sql);
                let $q = sqlx::query(&sql);
                $bind.execute(pool).await.map(|r| r.rows_affected())
            }
        }
    };
}

const CLAIMED_COLUMNS: &str = "request_id, function_name, invoked_function_arn, payload, \
     trace_id, client_context, attempts, enqueued_at_ms";

impl Store {
    /// Stores an accepted `Event` invocation, due at once.
    pub async fn enqueue_invocation(
        &self,
        invocation: &NewInvocation<'_>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let operation = "enqueue invocation";
        bounded(operation, async {
            execute!(
                self,
                "INSERT INTO async_invocations (request_id, function_name, invoked_function_arn, \
                 payload, trace_id, client_context, status, attempts, enqueued_at_ms, due_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $7)",
                |q| q
                    .bind(invocation.request_id)
                    .bind(invocation.function)
                    .bind(invocation.invoked_function_arn)
                    .bind(invocation.payload)
                    .bind(invocation.trace_id)
                    .bind(invocation.client_context)
                    .bind(now)
            )
            .map_err(|source| StoreError::Query { operation, source })
        })
        .await?;
        Ok(())
    }

    /// Claims up to `limit` due invocations for `gateway_id` until
    /// `lease_until_ms`: queued ones that are due, and running ones whose
    /// claim has lapsed (their gateway died).
    pub async fn claim_invocations(
        &self,
        gateway_id: &str,
        now: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedInvocation>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let due = "(status = 'queued' AND due_at_ms <= $1) \
                   OR (status = 'running' AND lease_until_ms <= $1)";
        // Concurrent dispatchers skip each other's rows on PostgreSQL; a
        // SQLite statement holds the database's single write lock.
        let lock = match self {
            Store::Postgres(_) => " FOR UPDATE SKIP LOCKED",
            Store::Sqlite(_) => "",
        };
        let sql = format!(
            "UPDATE async_invocations SET status = 'running', claimed_by = $2, \
             lease_until_ms = $3 WHERE request_id IN (SELECT request_id FROM \
             async_invocations WHERE {due} ORDER BY due_at_ms LIMIT $4{lock}) \
             RETURNING {CLAIMED_COLUMNS}"
        );
        let rows: Vec<ClaimedRow> = fetch!(self, &sql, fetch_all, |q| q
            .bind(now)
            .bind(gateway_id)
            .bind(lease_until_ms)
            .bind(limit))
        .map_err(|source| StoreError::Query {
            operation: "claim invocations",
            source,
        })?;
        Ok(rows.into_iter().map(ClaimedInvocation::from).collect())
    }

    /// Puts a claimed invocation back in the queue, due at `due_at_ms`.
    pub async fn requeue_invocation(
        &self,
        request_id: &str,
        gateway_id: &str,
        due_at_ms: i64,
        attempts: i64,
        last_error: Option<&str>,
    ) -> Result<(), StoreError> {
        execute!(
            self,
            "UPDATE async_invocations SET status = 'queued', due_at_ms = $3, attempts = $4, \
             last_error = COALESCE($5, last_error), claimed_by = NULL, lease_until_ms = NULL \
             WHERE request_id = $1 AND claimed_by = $2 AND status = 'running'",
            |q| q
                .bind(request_id)
                .bind(gateway_id)
                .bind(due_at_ms)
                .bind(attempts)
                .bind(last_error)
        )
        .map_err(|source| StoreError::Query {
            operation: "requeue invocation",
            source,
        })?;
        Ok(())
    }

    /// Records the final outcome of a claimed invocation.
    pub async fn finish_invocation(
        &self,
        request_id: &str,
        gateway_id: &str,
        status: InvocationStatus,
        attempts: i64,
        last_error: Option<&str>,
    ) -> Result<(), StoreError> {
        execute!(
            self,
            "UPDATE async_invocations SET status = $3, attempts = $4, \
             last_error = COALESCE($5, last_error), finished_at_ms = $6, lease_until_ms = NULL \
             WHERE request_id = $1 AND claimed_by = $2 AND status = 'running'",
            |q| q
                .bind(request_id)
                .bind(gateway_id)
                .bind(status.as_str())
                .bind(attempts)
                .bind(last_error)
                .bind(now_ms())
        )
        .map_err(|source| StoreError::Query {
            operation: "finish invocation",
            source,
        })?;
        Ok(())
    }

    /// At startup: invocations left running by a gateway that stopped (or
    /// died) are due again at once. One gateway serves a store.
    pub async fn recover_invocations(&self, gateway_id: &str) -> Result<u64, StoreError> {
        execute!(
            self,
            "UPDATE async_invocations SET status = 'queued', due_at_ms = $2, \
             claimed_by = NULL, lease_until_ms = NULL \
             WHERE status = 'running' AND (claimed_by IS NULL OR claimed_by <> $1)",
            |q| q.bind(gateway_id).bind(now_ms())
        )
        .map_err(|source| StoreError::Query {
            operation: "recover invocations",
            source,
        })
    }

    /// At shutdown: this gateway's unfinished claims go back to the queue.
    pub async fn release_invocations(&self, gateway_id: &str) -> Result<u64, StoreError> {
        execute!(
            self,
            "UPDATE async_invocations SET status = 'queued', claimed_by = NULL, \
             lease_until_ms = NULL WHERE status = 'running' AND claimed_by = $1",
            |q| q.bind(gateway_id)
        )
        .map_err(|source| StoreError::Query {
            operation: "release invocations",
            source,
        })
    }

    /// The latest `limit` invocations, newest first, optionally only those
    /// in `status`.
    pub async fn invocations(
        &self,
        status: Option<InvocationStatus>,
        limit: u32,
    ) -> Result<Vec<InvocationSummary>, StoreError> {
        let operation = "list invocations";
        let rows: Vec<SummaryRow> = bounded(operation, async {
            fetch!(
                self,
                "SELECT request_id, function_name, status, attempts, last_error, enqueued_at_ms, \
                 due_at_ms, finished_at_ms FROM async_invocations \
                 WHERE ($1 IS NULL OR status = $1) ORDER BY enqueued_at_ms DESC LIMIT $2",
                fetch_all,
                |q| q
                    .bind(status.map(InvocationStatus::as_str))
                    .bind(i64::from(limit))
            )
            .map_err(|source| StoreError::Query { operation, source })
        })
        .await?;
        Ok(rows.into_iter().map(InvocationSummary::from).collect())
    }
}

/// What one attempt came to.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Succeeded,
    /// The function failed (an error, a crash, a timeout): counts as an
    /// attempt.
    Failed(String),
    /// Not run, or lost to the infrastructure (no free worker, breaker open,
    /// gateway stopping, a worker that failed to start or stopped answering):
    /// tried again after the delay without counting an attempt, as Lambda
    /// retries throttles and system errors until the maximum event age.
    NotRun {
        delay: Duration,
        error: Option<String>,
    },
    /// Can never run (the function is gone, the payload is refused).
    Rejected(String),
}

/// What happens to an invocation after an attempt: pure, for tests.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Finish {
        status: InvocationStatus,
        attempts: i64,
        error: Option<String>,
    },
    Requeue {
        due_at_ms: i64,
        attempts: i64,
        error: Option<String>,
    },
}

fn next_step(
    settings: &AsyncSettings,
    attempts_before: i64,
    enqueued_at_ms: i64,
    now: i64,
    attempt: Attempt,
) -> Next {
    let expires = enqueued_at_ms.saturating_add(millis(settings.max_age));
    let too_old = |attempts: i64, error: String| Next::Finish {
        status: InvocationStatus::Failed,
        attempts,
        error: Some(format!(
            "{error}; maximum event age ({}s) reached",
            settings.max_age.as_secs()
        )),
    };
    match attempt {
        Attempt::Succeeded => Next::Finish {
            status: InvocationStatus::Succeeded,
            attempts: attempts_before + 1,
            error: None,
        },
        Attempt::Rejected(error) => Next::Finish {
            status: InvocationStatus::Failed,
            attempts: attempts_before,
            error: Some(error),
        },
        Attempt::NotRun { delay, error } => {
            let due = now.saturating_add(millis(delay));
            if due > expires {
                too_old(
                    attempts_before,
                    error.unwrap_or_else(|| "not run".to_owned()),
                )
            } else {
                Next::Requeue {
                    due_at_ms: due,
                    attempts: attempts_before,
                    error,
                }
            }
        }
        Attempt::Failed(error) => {
            let attempts = attempts_before + 1;
            let retry = usize::try_from(attempts - 1)
                .ok()
                .and_then(|i| settings.retry_delays.get(i));
            match retry {
                None => Next::Finish {
                    status: InvocationStatus::Failed,
                    attempts,
                    error: Some(error),
                },
                Some(delay) => {
                    let due = now.saturating_add(millis(*delay));
                    if due > expires {
                        too_old(attempts, error)
                    } else {
                        Next::Requeue {
                            due_at_ms: due,
                            attempts,
                            error: Some(error),
                        }
                    }
                }
            }
        }
    }
}

/// Claims and runs due invocations until `shutdown`; then puts its
/// unfinished claims back in the queue.
pub async fn dispatch(gateway: Arc<Gateway>, shutdown: CancellationToken) {
    let gateway_id = gateway.registry.gateway_id().to_owned();
    match gateway.store.recover_invocations(&gateway_id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            invocations = n,
            "asynchronous invocations left running by a previous gateway are due again"
        ),
        Err(e) => tracing::error!(error = %e, "could not recover asynchronous invocations"),
    }
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let runs = TaskTracker::new();
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let free = slots.available_permits();
        if free == 0 {
            continue;
        }
        let longest = gateway
            .catalog()
            .functions
            .values()
            .map(|f| f.timeout)
            .max()
            .unwrap_or_default();
        let lease = longest + gateway.settings.pools.acquire_timeout + LEASE_MARGIN;
        let now = now_ms();
        let claimed = match gateway
            .store
            .claim_invocations(&gateway_id, now, now.saturating_add(millis(lease)), free)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim asynchronous invocations");
                continue;
            }
        };
        for invocation in claimed {
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                // Cannot happen: at most `free` were claimed and only this
                // loop takes permits. Should it, the claim lapses and the
                // invocation runs later.
                break;
            };
            let span = tracing::info_span!(
                "async_invocation",
                request_id = %invocation.request_id,
                function = %invocation.function,
                trace_id = %invocation.trace_id,
                attempt = invocation.attempts + 1,
            );
            let gateway = Arc::clone(&gateway);
            let gateway_id = gateway_id.clone();
            let stop = shutdown.clone();
            runs.spawn(
                async move {
                    let _permit = permit;
                    tokio::select! {
                        () = run(&gateway, &gateway_id, invocation) => {}
                        // Abandoned: released below, run again later.
                        () = stop.cancelled() => {}
                    }
                }
                .instrument(span),
            );
        }
    }
    runs.close();
    runs.wait().await;
    match gateway.store.release_invocations(&gateway_id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            invocations = n,
            "unfinished asynchronous invocations requeued"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "unfinished asynchronous invocations stay claimed until the next start"
        ),
    }
}

/// One attempt of a claimed invocation, and its bookkeeping.
async fn run(gateway: &Gateway, gateway_id: &str, invocation: ClaimedInvocation) {
    let settings = &gateway.settings.async_invocations;
    let expired = now_ms().saturating_sub(invocation.enqueued_at_ms) > millis(settings.max_age);
    let attempt = if expired {
        Attempt::Rejected(format!(
            "maximum event age ({}s) reached",
            settings.max_age.as_secs()
        ))
    } else {
        attempt(gateway, &invocation).await
    };
    let step = next_step(
        settings,
        invocation.attempts,
        invocation.enqueued_at_ms,
        now_ms(),
        attempt,
    );
    let recorded = match &step {
        Next::Finish {
            status,
            attempts,
            error,
        } => {
            match status {
                InvocationStatus::Succeeded => {
                    tracing::info!(attempts, "asynchronous invocation succeeded")
                }
                _ => tracing::warn!(
                    attempts,
                    error = error.as_deref().unwrap_or_default(),
                    "asynchronous invocation failed for good"
                ),
            }
            gateway
                .store
                .finish_invocation(
                    &invocation.request_id,
                    gateway_id,
                    *status,
                    *attempts,
                    error.as_deref(),
                )
                .await
        }
        Next::Requeue {
            due_at_ms,
            attempts,
            error,
        } => {
            if let Some(error) = error {
                tracing::info!(
                    attempts,
                    error,
                    "asynchronous invocation failed: retry later"
                );
            }
            gateway
                .store
                .requeue_invocation(
                    &invocation.request_id,
                    gateway_id,
                    *due_at_ms,
                    *attempts,
                    error.as_deref(),
                )
                .await
        }
    };
    if let Err(e) = recorded {
        // The claim lapses and the invocation runs again: at least once.
        tracing::error!(error = %e, "outcome of an asynchronous invocation not recorded");
    }
}

async fn attempt(gateway: &Gateway, invocation: &ClaimedInvocation) -> Attempt {
    let request = WorkerRequest {
        payload: Bytes::from(invocation.payload.clone()),
        request_id: invocation.request_id.clone(),
        trace_id: invocation.trace_id.clone(),
        tail: false,
        client_context: invocation.client_context.clone(),
        invoked_function_arn: Some(invocation.invoked_function_arn.clone()),
    };
    match gateway.pools.invoke(&invocation.function, &request).await {
        Ok(invoked) => {
            let response = invoked.response;
            match response.status {
                200 if response.function_error.is_none() => Attempt::Succeeded,
                200 => Attempt::Failed(function_error(&response.body)),
                413 => Attempt::Rejected("the function's runtime refused the payload".to_owned()),
                status => Attempt::Failed(format!("the worker answered HTTP {status}")),
            }
        }
        // No node has room (or none has registered yet, as right after the
        // box starts): like a throttle, this is not the function's attempt.
        Err(
            InvokeError::Throttled { .. }
            | InvokeError::CircuitOpen { .. }
            | InvokeError::StartFailed {
                source: StartError::NoCapacity { .. },
                ..
            },
        ) => Attempt::NotRun {
            delay: THROTTLE_DELAY,
            error: None,
        },
        Err(InvokeError::ShuttingDown | InvokeError::Retired) => Attempt::NotRun {
            delay: Duration::ZERO,
            error: None,
        },
        Err(InvokeError::UnknownFunction(_)) => {
            Attempt::Rejected("the function no longer exists".to_owned())
        }
        // A node that cannot start the worker, or a worker lost mid-call (its
        // container killed, its agent restarted): a system error, not the
        // function's. The breaker stops a persistent one from spinning.
        Err(e @ (InvokeError::StartFailed { .. } | InvokeError::WorkerFailed { .. })) => {
            Attempt::NotRun {
                delay: SYSTEM_ERROR_DELAY,
                error: Some(e.to_string()),
            }
        }
    }
}

/// `errorType: errorMessage` of a function error payload, shortened.
fn function_error(body: &[u8]) -> String {
    let value = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    let text = match (field("errorType"), field("errorMessage")) {
        ("", "") => "function error".to_owned(),
        (kind, "") => kind.to_owned(),
        ("", message) => message.to_owned(),
        (kind, message) => format!("{kind}: {message}"),
    };
    text.chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AsyncSettings {
        AsyncSettings {
            retry_delays: vec![Duration::from_secs(60), Duration::from_secs(120)],
            max_age: Duration::from_secs(6 * 3600),
        }
    }

    #[test]
    fn failures_are_retried_twice_after_one_and_two_minutes() {
        let s = settings();
        let failed = || Attempt::Failed("ValueError: boom".to_owned());
        assert_eq!(
            next_step(&s, 0, 0, 1_000, failed()),
            Next::Requeue {
                due_at_ms: 61_000,
                attempts: 1,
                error: Some("ValueError: boom".into())
            }
        );
        assert_eq!(
            next_step(&s, 1, 0, 61_000, failed()),
            Next::Requeue {
                due_at_ms: 181_000,
                attempts: 2,
                error: Some("ValueError: boom".into())
            }
        );
        assert_eq!(
            next_step(&s, 2, 0, 181_000, failed()),
            Next::Finish {
                status: InvocationStatus::Failed,
                attempts: 3,
                error: Some("ValueError: boom".into())
            }
        );
        assert_eq!(
            next_step(&s, 2, 0, 181_000, Attempt::Succeeded),
            Next::Finish {
                status: InvocationStatus::Succeeded,
                attempts: 3,
                error: None
            }
        );
    }

    #[test]
    fn throttles_do_not_count_and_old_events_are_dropped() {
        let s = settings();
        assert_eq!(
            next_step(
                &s,
                1,
                0,
                5_000,
                Attempt::NotRun {
                    delay: THROTTLE_DELAY,
                    error: None
                }
            ),
            Next::Requeue {
                due_at_ms: 6_000,
                attempts: 1,
                error: None
            }
        );
        // A system error keeps its message but not the attempt.
        assert_eq!(
            next_step(
                &s,
                1,
                0,
                5_000,
                Attempt::NotRun {
                    delay: SYSTEM_ERROR_DELAY,
                    error: Some("worker unreachable".into())
                }
            ),
            Next::Requeue {
                due_at_ms: 10_000,
                attempts: 1,
                error: Some("worker unreachable".into())
            }
        );
        let six_hours = 6 * 3600 * 1000;
        let throttled = Attempt::NotRun {
            delay: THROTTLE_DELAY,
            error: None,
        };
        match next_step(&s, 0, 0, six_hours, throttled) {
            Next::Finish {
                status: InvocationStatus::Failed,
                attempts: 0,
                error: Some(e),
            } => assert!(e.contains("maximum event age"), "{e}"),
            other => panic!("{other:?}"),
        }
        match next_step(&s, 0, 0, six_hours - 30_000, Attempt::Failed("x".into())) {
            Next::Finish {
                status: InvocationStatus::Failed,
                attempts: 1,
                ..
            } => {}
            other => panic!("a retry after the maximum age is not scheduled: {other:?}"),
        }
        let none = AsyncSettings {
            retry_delays: Vec::new(),
            ..s
        };
        assert!(matches!(
            next_step(&none, 0, 0, 0, Attempt::Failed("x".into())),
            Next::Finish { attempts: 1, .. }
        ));
    }

    #[test]
    fn function_errors_are_summarised() {
        assert_eq!(
            function_error(br#"{"errorType":"ValueError","errorMessage":"boom","stackTrace":[]}"#),
            "ValueError: boom"
        );
        assert_eq!(function_error(b"not json"), "function error");
        let long = format!(r#"{{"errorMessage":"{}"}}"#, "x".repeat(5000));
        assert_eq!(function_error(long.as_bytes()).len(), MAX_ERROR_CHARS);
        assert_eq!(
            InvocationStatus::parse("failed"),
            Some(InvocationStatus::Failed)
        );
        assert_eq!(InvocationStatus::parse("done"), None);
    }

    #[tokio::test]
    async fn sqlite_claims_each_invocation_once_and_recovers_running_ones() {
        let dir = std::env::temp_dir().join(format!("esb-queue-{}", uuid::Uuid::new_v4().simple()));
        let config = crate::store::StoreConfig::new(None, &dir).expect("config");
        let store = Store::connect(&config, Duration::from_secs(1), &CancellationToken::new())
            .await
            .expect("connect");
        for id in ["a", "b"] {
            store
                .enqueue_invocation(&NewInvocation {
                    request_id: id,
                    function: "f",
                    invoked_function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f",
                    payload: b"{}",
                    trace_id: "Root=1-00000000-000000000000000000000000",
                    client_context: None,
                })
                .await
                .expect("enqueue");
        }
        let now = now_ms();
        let lease = now + 60_000;
        let first = store
            .claim_invocations("gw-1", now, lease, 1)
            .await
            .expect("claim");
        assert_eq!(first.len(), 1);
        let second = store
            .claim_invocations("gw-2", now, lease, 10)
            .await
            .expect("claim");
        assert_eq!(second.len(), 1, "the other one only");
        assert_ne!(first[0].request_id, second[0].request_id);
        assert!(store
            .claim_invocations("gw-3", now, lease, 10)
            .await
            .expect("claim")
            .is_empty());
        // A lapsed claim is taken over.
        let later = store
            .claim_invocations("gw-3", lease, lease + 60_000, 10)
            .await
            .expect("claim");
        assert_eq!(later.len(), 2);
        // Only the current holder records the outcome.
        store
            .finish_invocation(
                &first[0].request_id,
                "gw-1",
                InvocationStatus::Succeeded,
                1,
                None,
            )
            .await
            .expect("finish");
        assert!(store
            .invocations(Some(InvocationStatus::Succeeded), 10)
            .await
            .expect("list")
            .is_empty());
        store
            .finish_invocation(
                &first[0].request_id,
                "gw-3",
                InvocationStatus::Succeeded,
                1,
                None,
            )
            .await
            .expect("finish");
        let done = store
            .invocations(Some(InvocationStatus::Succeeded), 10)
            .await
            .expect("list");
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].attempts, 1);
        // A new gateway makes the running one due again.
        assert_eq!(store.recover_invocations("gw-4").await.expect("recover"), 1);
        let queued = store
            .invocations(Some(InvocationStatus::Queued), 10)
            .await
            .expect("list");
        assert_eq!(queued.len(), 1);
        assert_eq!(store.invocations(None, 10).await.expect("list").len(), 2);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
