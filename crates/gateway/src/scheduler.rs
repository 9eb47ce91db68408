//! The scheduler: runs the catalog's schedules (SAM `Schedule` /
//! `ScheduleV2`) as EventBridge does, by invoking their function
//! asynchronously — each run goes into the durable asynchronous-invocation
//! queue ([`crate::queue`]), so it is retried like any `Event` invocation.
//!
//! Runs are claimed in the store before they are queued: the schedule's
//! `last_fired_ms` moves to the run's time by compare-and-set, so a run is
//! queued once, even across gateway restarts. Restart semantics:
//! - a run whose time came while the gateway was down is run once when it
//!   starts (only the latest missed one: EventBridge does not backfill
//!   every missed run, and a box that was off should not flood a function);
//! - a run already claimed is never run again;
//! - a new schedule, one whose expression, time zone or enabled state
//!   changed, counts its runs from when the gateway first saw it so: a
//!   rate runs at once and then every period (EventBridge Scheduler starts a
//!   rate without a start date immediately), a cron at its next time.
//!
//! A crash between the claim and the enqueue loses that one run (at most
//! once, never twice). Catalog reloads are picked up within a tick.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::auth::Clock;
use crate::catalog::Catalog;
use crate::queue::NewInvocation;
use crate::schedule::{Schedule, ScheduleExpression};
use crate::store::{ScheduleState, Store, StoreError};

/// The longest the scheduler sleeps between looks at the clock and the
/// catalog (the wall clock can jump; a reload should be seen soon).
pub const TICK: Duration = Duration::from_secs(1);

/// Where schedules' state lives (the gateway's [`Store`]).
pub trait ScheduleStore: Send + Sync {
    /// See [`Store::sync_schedules`].
    fn sync(
        &self,
        schedules: &[(&str, &str)],
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<ScheduleState>, StoreError>> + Send;
    /// See [`Store::claim_schedule_run`].
    fn claim(
        &self,
        name: &str,
        definition: &str,
        expected: Option<i64>,
        fire_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl ScheduleStore for Store {
    fn sync(
        &self,
        schedules: &[(&str, &str)],
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<ScheduleState>, StoreError>> + Send {
        self.sync_schedules(schedules, now_ms)
    }

    fn claim(
        &self,
        name: &str,
        definition: &str,
        expected: Option<i64>,
        fire_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.claim_schedule_run(name, definition, expected, fire_ms)
    }
}

/// One claimed run, ready to invoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRun {
    pub schedule: String,
    pub function: String,
    /// When the run was scheduled (the envelope's `time`).
    pub time: DateTime<Utc>,
    /// The event: the schedule's `input`, or the EventBridge envelope.
    pub payload: String,
    pub request_id: String,
}

/// Starts a claimed run without waiting for it.
pub trait ScheduleInvoker: Send + Sync {
    fn invoke(&self, run: ScheduledRun) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Runs go into the durable asynchronous-invocation queue.
pub struct QueueInvoker {
    pub store: Store,
    pub region: String,
    pub account: String,
}

impl ScheduleInvoker for QueueInvoker {
    async fn invoke(&self, run: ScheduledRun) -> Result<(), StoreError> {
        let arn = format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account, run.function
        );
        let trace_id = esb_contracts::trace::new_trace_id();
        self.store
            .enqueue_invocation(&NewInvocation {
                request_id: &run.request_id,
                function: &run.function,
                invoked_function_arn: &arn,
                payload: run.payload.as_bytes(),
                trace_id: &trace_id,
                client_context: None,
            })
            .await
    }
}

/// What the scheduler needs to know about the box.
#[derive(Debug, Clone)]
pub struct SchedulerContext {
    pub region: String,
    pub account: String,
}

/// A schedule with its durable state.
struct Entry {
    schedule: Schedule,
    definition: String,
    since: DateTime<Utc>,
    last_fired: Option<DateTime<Utc>>,
}

impl Entry {
    /// The last run that counts for this definition.
    fn counted_last(&self) -> Option<DateTime<Utc>> {
        self.last_fired.filter(|l| *l >= self.since)
    }

    /// The run to claim now, if one is due: the latest whose time has
    /// come and that was not claimed.
    fn due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.schedule.timezone;
        match (&self.schedule.expression, self.counted_last()) {
            (ScheduleExpression::Rate { .. }, Some(last)) => {
                self.schedule.expression.latest_between(last, now, last, tz)
            }
            // A rate's first run is when it appeared.
            (ScheduleExpression::Rate { .. }, None) => {
                let just_before = self.since - chrono::Duration::milliseconds(1);
                self.schedule
                    .expression
                    .latest_between(just_before, now, self.since, tz)
            }
            (ScheduleExpression::Cron(_), last) => {
                let after = last.unwrap_or(self.since);
                self.schedule
                    .expression
                    .latest_between(after, now, after, tz)
            }
        }
    }

    /// When the next run is, to know how long to sleep.
    fn next(&self) -> Option<DateTime<Utc>> {
        let tz = self.schedule.timezone;
        match self.counted_last() {
            Some(last) => self.schedule.expression.next_after(last, last, tz),
            None => match &self.schedule.expression {
                ScheduleExpression::Rate { .. } => Some(self.since),
                ScheduleExpression::Cron(_) => self
                    .schedule
                    .expression
                    .next_after(self.since, self.since, tz),
            },
        }
    }
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

fn now(clock: &dyn Clock) -> DateTime<Utc> {
    let now: SystemTime = clock.now();
    DateTime::<Utc>::from(now)
}

/// Runs the schedules of the catalog `catalog` returns (called every tick:
/// a different `Arc` is a reload) until `shutdown`.
pub async fn run<S, I, F>(
    store: S,
    invoker: I,
    clock: Arc<dyn Clock>,
    context: SchedulerContext,
    catalog: F,
    shutdown: CancellationToken,
) where
    S: ScheduleStore,
    I: ScheduleInvoker,
    F: Fn() -> Arc<Catalog> + Send,
{
    let mut applied: Option<Arc<Catalog>> = None;
    let mut entries: Vec<Entry> = Vec::new();
    let mut failing = false;
    loop {
        let current = catalog();
        let stale = applied.as_ref().is_none_or(|a| !Arc::ptr_eq(a, &current));
        if stale {
            match sync(&store, &current, now(clock.as_ref())).await {
                Ok(synced) => {
                    if failing || applied.is_some() || !synced.is_empty() {
                        tracing::info!(schedules = synced.len(), "schedules loaded");
                    }
                    entries = synced;
                    applied = Some(current);
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(error = %e, "cannot load the schedules' state: retrying");
                    }
                    failing = true;
                }
            }
        }
        let now = now(clock.as_ref());
        let mut resync = false;
        for entry in entries.iter_mut().filter(|e| e.schedule.enabled) {
            let Some(time) = entry.due(now) else {
                continue;
            };
            let expected = entry.last_fired.map(|t| t.timestamp_millis());
            let claimed = store
                .claim(
                    &entry.schedule.name,
                    &entry.definition,
                    expected,
                    time.timestamp_millis(),
                )
                .await;
            match claimed {
                Ok(true) => {
                    entry.last_fired = Some(time);
                    let run = ScheduledRun {
                        schedule: entry.schedule.name.clone(),
                        function: entry.schedule.function.clone(),
                        time,
                        payload: entry
                            .schedule
                            .event(time, &context.region, &context.account),
                        request_id: uuid::Uuid::new_v4().to_string(),
                    };
                    let request_id = run.request_id.clone();
                    match invoker.invoke(run).await {
                        Ok(()) => tracing::info!(
                            schedule = %entry.schedule.name,
                            function = %entry.schedule.function,
                            scheduled_time = %time,
                            %request_id,
                            "scheduled run queued"
                        ),
                        Err(e) => tracing::error!(
                            schedule = %entry.schedule.name,
                            function = %entry.schedule.function,
                            scheduled_time = %time,
                            error = %e,
                            "scheduled run claimed but not queued: it is lost"
                        ),
                    }
                }
                // Someone else moved the state: read it again.
                Ok(false) => resync = true,
                Err(e) => {
                    tracing::warn!(schedule = %entry.schedule.name, error = %e, "cannot claim a scheduled run: trying again");
                }
            }
        }
        if resync {
            applied = None;
        }
        let wait = entries
            .iter()
            .filter(|e| e.schedule.enabled)
            .filter_map(Entry::next)
            .min()
            .map_or(TICK, |next| {
                (next - now).to_std().unwrap_or(Duration::ZERO).min(TICK)
            });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn sync<S: ScheduleStore>(
    store: &S,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Result<Vec<Entry>, StoreError> {
    let definitions: Vec<(String, String)> = catalog
        .schedules
        .iter()
        .map(|s| (s.name.clone(), s.definition()))
        .collect();
    let pairs: Vec<(&str, &str)> = definitions
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_str()))
        .collect();
    let states = store.sync(&pairs, now.timestamp_millis()).await?;
    Ok(catalog
        .schedules
        .iter()
        .zip(definitions)
        .filter_map(|(schedule, (_, definition))| {
            let state = states.iter().find(|s| s.name == schedule.name)?;
            Some(Entry {
                schedule: schedule.clone(),
                definition,
                since: from_ms(state.since_ms),
                last_fired: state.last_fired_ms.map(from_ms),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::catalog::{CatalogConfig, Defaults};

    /// The store's semantics in memory.
    #[derive(Default, Clone)]
    struct MemoryStore(Arc<Mutex<HashMap<String, ScheduleState>>>);

    impl ScheduleStore for MemoryStore {
        async fn sync(
            &self,
            schedules: &[(&str, &str)],
            now_ms: i64,
        ) -> Result<Vec<ScheduleState>, StoreError> {
            let mut rows = self.0.lock().expect("lock");
            rows.retain(|name, _| schedules.iter().any(|(n, _)| n == name));
            for (name, definition) in schedules {
                let row = rows.entry((*name).to_owned()).or_insert(ScheduleState {
                    name: (*name).to_owned(),
                    definition: (*definition).to_owned(),
                    since_ms: now_ms,
                    last_fired_ms: None,
                });
                if row.definition != *definition {
                    row.definition = (*definition).to_owned();
                    row.since_ms = now_ms;
                }
            }
            Ok(rows.values().cloned().collect())
        }

        async fn claim(
            &self,
            name: &str,
            definition: &str,
            expected: Option<i64>,
            fire_ms: i64,
        ) -> Result<bool, StoreError> {
            let mut rows = self.0.lock().expect("lock");
            match rows.get_mut(name) {
                Some(row) if row.definition == definition && row.last_fired_ms == expected => {
                    row.last_fired_ms = Some(fire_ms);
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
    }

    /// Records the runs it is given.
    #[derive(Default, Clone)]
    struct FakeInvoker(Arc<Mutex<Vec<ScheduledRun>>>);

    impl ScheduleInvoker for FakeInvoker {
        async fn invoke(&self, run: ScheduledRun) -> Result<(), StoreError> {
            self.0.lock().expect("lock").push(run);
            Ok(())
        }
    }

    impl FakeInvoker {
        fn times(&self) -> Vec<String> {
            self.0
                .lock()
                .expect("lock")
                .iter()
                .map(|r| r.time.format("%H:%M:%S").to_string())
                .collect()
        }
    }

    /// Wall-clock time that moves with tokio's (paused) clock.
    #[derive(Debug)]
    struct TokioClock {
        start: SystemTime,
        at: tokio::time::Instant,
    }

    impl Clock for TokioClock {
        fn now(&self) -> SystemTime {
            self.start + self.at.elapsed()
        }
    }

    fn clock_at(text: &str) -> Arc<dyn Clock> {
        let start: SystemTime = DateTime::parse_from_rfc3339(text).expect("time").into();
        Arc::new(TokioClock {
            start,
            at: tokio::time::Instant::now(),
        })
    }

    fn catalog(schedules: serde_json::Value) -> Arc<Catalog> {
        let config: CatalogConfig = serde_json::from_value(json!({
            "version": 1,
            "functions": [{"name": "f", "image": "i"}],
            "schedules": schedules,
        }))
        .expect("shape");
        Arc::new(Catalog::from_config(config, Defaults { max_workers: 1 }).expect("valid"))
    }

    struct Running {
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        catalog: Arc<Mutex<Arc<Catalog>>>,
    }

    fn start(
        store: &MemoryStore,
        invoker: &FakeInvoker,
        clock: Arc<dyn Clock>,
        c: Arc<Catalog>,
    ) -> Running {
        let stop = CancellationToken::new();
        let shared = Arc::new(Mutex::new(c));
        let source = Arc::clone(&shared);
        let task = tokio::spawn(run(
            store.clone(),
            invoker.clone(),
            clock,
            SchedulerContext {
                region: "us-east-1".into(),
                account: "123456789012".into(),
            },
            move || Arc::clone(&source.lock().expect("lock")),
            stop.clone(),
        ));
        Running {
            stop,
            task,
            catalog: shared,
        }
    }

    impl Running {
        async fn stop(self) {
            self.stop.cancel();
            self.task.await.expect("scheduler task");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_runs_at_once_then_every_period() {
        let (store, invoker) = (MemoryStore::default(), FakeInvoker::default());
        let s = start(
            &store,
            &invoker,
            clock_at("2026-01-01T10:00:00Z"),
            catalog(json!([{"name": "tick", "function": "f", "expression": "rate(5 minutes)"}])),
        );
        tokio::time::sleep(Duration::from_secs(11 * 60)).await;
        assert_eq!(invoker.times(), ["10:00:00", "10:05:00", "10:10:00"]);
        let runs = invoker.0.lock().expect("lock").clone();
        let event: serde_json::Value = serde_json::from_str(&runs[1].payload).expect("json");
        assert_eq!(event["time"], "2026-01-01T10:05:00Z");
        assert_eq!(
            event["resources"][0],
            "arn:aws:events:us-east-1:123456789012:rule/tick"
        );
        assert_eq!(runs[1].function, "f");
        s.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_cron_runs_at_its_times_with_its_input() {
        let (store, invoker) = (MemoryStore::default(), FakeInvoker::default());
        let s = start(
            &store,
            &invoker,
            clock_at("2026-01-01T10:07:30Z"),
            catalog(
                json!([{"name": "q", "function": "f", "expression": "cron(0/15 * * * ? *)",
                            "input": "{\"job\":1}"}]),
            ),
        );
        tokio::time::sleep(Duration::from_secs(40 * 60)).await;
        assert_eq!(invoker.times(), ["10:15:00", "10:30:00", "10:45:00"]);
        assert!(invoker
            .0
            .lock()
            .expect("lock")
            .iter()
            .all(|r| r.payload == "{\"job\":1}"));
        s.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_runs_the_latest_missed_run_once_and_never_a_claimed_one() {
        let (store, invoker) = (MemoryStore::default(), FakeInvoker::default());
        let c =
            catalog(json!([{"name": "q", "function": "f", "expression": "cron(0/15 * * * ? *)"}]));
        let clock = clock_at("2026-01-01T10:07:30Z");
        let s = start(&store, &invoker, Arc::clone(&clock), Arc::clone(&c));
        tokio::time::sleep(Duration::from_secs(8 * 60)).await; // 10:15:30
        s.stop().await;
        assert_eq!(invoker.times(), ["10:15:00"]);

        // A restart right away: the claimed 10:15 run does not run again.
        let s = start(&store, &invoker, Arc::clone(&clock), Arc::clone(&c));
        tokio::time::sleep(Duration::from_secs(60)).await; // 10:16:30
        s.stop().await;
        assert_eq!(invoker.times(), ["10:15:00"]);

        // Down from 10:16:30 to 11:20: 10:30 ... 11:15 were missed; the
        // latest runs once, then the schedule goes on.
        tokio::time::sleep(Duration::from_secs(63 * 60 + 30)).await; // 11:20:00
        let s = start(&store, &invoker, Arc::clone(&clock), c);
        tokio::time::sleep(Duration::from_secs(11 * 60)).await; // 11:31:00
        s.stop().await;
        assert_eq!(invoker.times(), ["10:15:00", "11:15:00", "11:30:00"]);
    }

    #[tokio::test(start_paused = true)]
    async fn reloads_add_change_disable_and_remove_schedules() {
        let (store, invoker) = (MemoryStore::default(), FakeInvoker::default());
        let s = start(
            &store,
            &invoker,
            clock_at("2026-01-01T10:00:30Z"),
            catalog(json!([])),
        );
        // Half a tick off the scheduler's: it sees the reload at 10:01:31.
        tokio::time::sleep(Duration::from_millis(60_500)).await;
        assert!(invoker.times().is_empty());

        // Added: a rate runs at once.
        *s.catalog.lock().expect("lock") =
            catalog(json!([{"name": "r", "function": "f", "expression": "rate(10 minutes)"}]));
        tokio::time::sleep(Duration::from_secs(3 * 60)).await; // 10:04:30
        assert_eq!(invoker.times(), ["10:01:31"]);

        // Changed to a cron: it follows the new expression.
        *s.catalog.lock().expect("lock") =
            catalog(json!([{"name": "r", "function": "f", "expression": "cron(0/5 * * * ? *)"}]));
        tokio::time::sleep(Duration::from_secs(6 * 60)).await; // 10:10:30
        assert_eq!(invoker.times(), ["10:01:31", "10:05:00", "10:10:00"]);

        // Disabled: nothing runs.
        *s.catalog.lock().expect("lock") = catalog(
            json!([{"name": "r", "function": "f", "expression": "cron(0/5 * * * ? *)", "enabled": false}]),
        );
        tokio::time::sleep(Duration::from_secs(10 * 60)).await; // 10:20:30
        assert_eq!(invoker.times().len(), 3);

        // Removed: its state goes too.
        *s.catalog.lock().expect("lock") = catalog(json!([]));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(store.0.lock().expect("lock").is_empty());
        s.stop().await;
    }
}
