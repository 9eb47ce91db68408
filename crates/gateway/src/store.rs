//! The gateway's durable state: PostgreSQL (`ESB_DATABASE_URL`, the box's
//! database in Compose) or a SQLite file in the state directory when no URL
//! is given. One enum over the two backends; each backend has its own
//! embedded migrations (`migrations/{postgres,sqlite}`) so each schema can
//! use what its engine does best.
//!
//! Tables: `deployments` (every catalog the gateway applies), `schedules`
//! (each schedule's last claimed run), `async_invocations` (accepted `Event`
//! invocations and their outcomes; queries in [`crate::queue`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::event::UtcTime;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");

/// The SQLite file inside the state directory.
pub const SQLITE_FILE: &str = "gateway.db";

/// How long one connection attempt (and, later, one wait for a pooled
/// connection) may take.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Where the state lives, validated.
#[derive(Clone)]
pub enum StoreConfig {
    Postgres {
        /// The full URL, with its password: never logged (see [`StoreConfig::describe`]).
        url: String,
    },
    Sqlite {
        path: PathBuf,
    },
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreConfigError {
    #[error("ESB_DATABASE_URL must be a postgres:// or postgresql:// URL, got {url}")]
    Scheme { url: String },
    #[error("ESB_DATABASE_URL {url} is not a valid PostgreSQL URL: {source}")]
    Url {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("ESB_STATE_DIR must not be empty")]
    StateDir,
}

impl StoreConfig {
    /// PostgreSQL at `database_url` when given, else `<state_dir>/gateway.db`.
    pub fn new(
        database_url: Option<&str>,
        state_dir: &Path,
    ) -> Result<StoreConfig, StoreConfigError> {
        match database_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(StoreConfigError::Scheme {
                        url: redact_url(url),
                    });
                }
                PgConnectOptions::from_str(url).map_err(|source| StoreConfigError::Url {
                    url: redact_url(url),
                    source,
                })?;
                Ok(StoreConfig::Postgres {
                    url: url.to_owned(),
                })
            }
            None if state_dir.as_os_str().is_empty() => Err(StoreConfigError::StateDir),
            None => Ok(StoreConfig::Sqlite {
                path: state_dir.join(SQLITE_FILE),
            }),
        }
    }

    /// What to call the database in logs and errors: the URL without its
    /// password, or the SQLite file.
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Postgres { url } => redact_url(url),
            StoreConfig::Sqlite { path } => format!("sqlite:{}", path.display()),
        }
    }
}

/// `scheme://user:password@host/...` with the password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let password = if userinfo.contains(':') { ":***" } else { "" };
            // A password can also be a query parameter.
            let tail = redact_query_password(tail);
            format!("{scheme}://{user}{password}@{host}{tail}")
        }
        None => format!("{scheme}://{authority}{}", redact_query_password(tail)),
    }
}

fn redact_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {database} did not accept connections within {waited:?}: {source}")]
    Unavailable {
        database: String,
        waited: Duration,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot open database {database}: {source}")]
    Connect {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database {database}: migrations failed: {source}")]
    Migrate {
        database: String,
        #[source]
        source: MigrateError,
    },
    #[error("database query failed ({operation}): {source}")]
    Query {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("database query timed out ({operation}) after {waited:?}")]
    TimedOut {
        operation: &'static str,
        waited: Duration,
    },
    #[error("stopped while waiting for the database")]
    Cancelled,
}

/// How long a query on a client's behalf may take. A database that stops
/// answering without closing its connections (paused, partitioned) costs
/// the client this long and then a clear 5xx, never a hang.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// `query` bounded by [`QUERY_TIMEOUT`].
pub(crate) async fn bounded<T>(
    operation: &'static str,
    query: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    bounded_by(QUERY_TIMEOUT, operation, query).await
}

async fn bounded_by<T>(
    waited: Duration,
    operation: &'static str,
    query: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(waited, query)
        .await
        .unwrap_or(Err(StoreError::TimedOut { operation, waited }))
}

/// Why a catalog was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentReason {
    /// The catalog the gateway started with.
    Startup,
    /// The catalog file changed while the gateway ran.
    Reload,
}

impl DeploymentReason {
    fn as_str(self) -> &'static str {
        match self {
            DeploymentReason::Startup => "startup",
            DeploymentReason::Reload => "reload",
        }
    }
}

/// A catalog about to be recorded.
#[derive(Debug, Clone)]
pub struct NewDeployment<'a> {
    pub catalog_sha256: &'a str,
    pub functions: usize,
    pub routes: usize,
    pub reason: DeploymentReason,
    pub gateway_id: &'a str,
}

/// A recorded deployment, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployment {
    pub id: i64,
    pub catalog_sha256: String,
    pub functions: i64,
    pub routes: i64,
    pub reason: String,
    pub gateway_id: String,
    /// RFC 3339, UTC, milliseconds.
    pub applied_at: String,
}

type DeploymentRow = (i64, String, i64, i64, String, String, i64);

impl From<DeploymentRow> for Deployment {
    fn from(row: DeploymentRow) -> Deployment {
        let (id, catalog_sha256, functions, routes, reason, gateway_id, applied_at_ms) = row;
        let seconds = applied_at_ms.div_euclid(1000);
        // rem_euclid(1000) is in 0..1000.
        let millis = applied_at_ms.rem_euclid(1000) as u32;
        Deployment {
            id,
            catalog_sha256,
            functions,
            routes,
            reason,
            gateway_id,
            applied_at: UtcTime::from_unix_seconds(seconds).iso8601(Some(millis)),
        }
    }
}

/// The connected store; cheap to clone (the pools are shared).
#[derive(Debug, Clone)]
pub enum Store {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Store {
    /// Connects and migrates. PostgreSQL is retried with backoff for up to
    /// `wait` while it refuses connections or is starting up (the database
    /// container may still be starting); other errors (a wrong password, a
    /// missing database) fail at once. Returns early with
    /// [`StoreError::Cancelled`] when `shutdown` fires.
    pub async fn connect(
        config: &StoreConfig,
        wait: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Store, StoreError> {
        let database = config.describe();
        let store = match config {
            StoreConfig::Postgres { url } => {
                let options =
                    PgConnectOptions::from_str(url).map_err(|source| StoreError::Connect {
                        database: database.clone(),
                        source,
                    })?;
                Store::Postgres(connect_postgres(options, &database, wait, shutdown).await?)
            }
            StoreConfig::Sqlite { path } => Store::Sqlite(connect_sqlite(path, &database).await?),
        };
        let migrator = match &store {
            Store::Postgres(_) => &POSTGRES_MIGRATIONS,
            Store::Sqlite(_) => &SQLITE_MIGRATIONS,
        };
        let migrated = match &store {
            Store::Postgres(pool) => migrator.run(pool).await,
            Store::Sqlite(pool) => migrator.run(pool).await,
        };
        migrated.map_err(|source| StoreError::Migrate {
            database: database.clone(),
            source,
        })?;
        tracing::info!(%database, "state store ready");
        Ok(store)
    }

    /// `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Records an applied catalog and returns it as stored.
    pub async fn record_deployment(
        &self,
        deployment: &NewDeployment<'_>,
    ) -> Result<Deployment, StoreError> {
        let query = |source| StoreError::Query {
            operation: "record deployment",
            source,
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        let functions = i64::try_from(deployment.functions).unwrap_or(i64::MAX);
        let routes = i64::try_from(deployment.routes).unwrap_or(i64::MAX);
        let reason = deployment.reason.as_str();
        let row: DeploymentRow = match self {
            Store::Postgres(pool) => {
                sqlx::query_as(
                    "INSERT INTO deployments \
                     (catalog_sha256, functions, routes, reason, gateway_id, applied_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     RETURNING id, catalog_sha256, functions, routes, reason, gateway_id, applied_at_ms",
                )
                .bind(deployment.catalog_sha256)
                .bind(functions)
                .bind(routes)
                .bind(reason)
                .bind(deployment.gateway_id)
                .bind(now_ms)
                .fetch_one(pool)
                .await
            }
            Store::Sqlite(pool) => {
                sqlx::query_as(
                    "INSERT INTO deployments \
                     (catalog_sha256, functions, routes, reason, gateway_id, applied_at_ms) \
                     VALUES (?, ?, ?, ?, ?, ?) \
                     RETURNING id, catalog_sha256, functions, routes, reason, gateway_id, applied_at_ms",
                )
                .bind(deployment.catalog_sha256)
                .bind(functions)
                .bind(routes)
                .bind(reason)
                .bind(deployment.gateway_id)
                .bind(now_ms)
                .fetch_one(pool)
                .await
            }
        }
        .map_err(query)?;
        Ok(row.into())
    }

    /// The latest `limit` deployments, newest first.
    pub async fn deployments(&self, limit: u32) -> Result<Vec<Deployment>, StoreError> {
        let query = |source| StoreError::Query {
            operation: "list deployments",
            source,
        };
        let limit = i64::from(limit);
        let rows: Vec<DeploymentRow> = bounded("list deployments", async {
            match self {
                Store::Postgres(pool) => sqlx::query_as(
                    "SELECT id, catalog_sha256, functions, routes, reason, gateway_id, applied_at_ms \
                         FROM deployments ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(pool)
                .await,
                Store::Sqlite(pool) => sqlx::query_as(
                    "SELECT id, catalog_sha256, functions, routes, reason, gateway_id, applied_at_ms \
                         FROM deployments ORDER BY id DESC LIMIT ?",
                )
                .bind(limit)
                .fetch_all(pool)
                .await,
            }
            .map_err(query)
        })
        .await?;
        Ok(rows.into_iter().map(Deployment::from).collect())
    }

    /// Closes the pool, waiting for open connections to be returned.
    pub async fn close(&self) {
        match self {
            Store::Postgres(pool) => pool.close().await,
            Store::Sqlite(pool) => pool.close().await,
        }
    }
}

/// A schedule's durable state (table `schedules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleState {
    pub name: String,
    /// What decides the schedule's runs (expression, time zone, enabled).
    pub definition: String,
    /// When this definition was first seen: earlier runs do not count.
    pub since_ms: i64,
    /// The scheduled time of the last run claimed.
    pub last_fired_ms: Option<i64>,
}

type ScheduleRow = (String, String, i64, Option<i64>);

/// Runs the same statements on either backend; `$n` placeholders are
/// written as SQLite's `?n` there.
macro_rules! on_backend {
    ($store:expr, |$pool:ident, $sql:ident| $body:expr) => {
        match $store {
            Store::Postgres($pool) => {
                let $sql = |q: &'static str| -> String { q.to_owned() };
                $body
            }
            Store::Sqlite($pool) => {
                let $sql = |q: &'static str| -> String { q.replace('$', "?") };
                $body
            }
        }
    };
}

impl Store {
    /// Makes the `schedules` table match the running catalog's schedules
    /// (`(name, definition)`): rows of removed schedules go; a new
    /// schedule, or one whose definition changed, counts its runs from
    /// `now_ms`; an unchanged one keeps its state (so a restart neither
    /// skips nor repeats a run). Returns every row.
    pub async fn sync_schedules(
        &self,
        schedules: &[(&str, &str)],
        now_ms: i64,
    ) -> Result<Vec<ScheduleState>, StoreError> {
        let query = |source| StoreError::Query {
            operation: "sync schedules",
            source,
        };
        let rows: Vec<ScheduleRow> = on_backend!(self, |pool, sql| {
            let mut tx = pool.begin().await.map_err(query)?;
            let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM schedules")
                .fetch_all(&mut *tx)
                .await
                .map_err(query)?;
            for (name,) in names {
                if !schedules.iter().any(|(n, _)| *n == name) {
                    sqlx::query(&sql("DELETE FROM schedules WHERE name = $1"))
                        .bind(&name)
                        .execute(&mut *tx)
                        .await
                        .map_err(query)?;
                }
            }
            for (name, definition) in schedules {
                sqlx::query(&sql(
                    "INSERT INTO schedules (name, definition, since_ms, last_fired_ms) \
                     VALUES ($1, $2, $3, NULL) \
                     ON CONFLICT (name) DO UPDATE \
                     SET definition = excluded.definition, since_ms = excluded.since_ms \
                     WHERE schedules.definition <> excluded.definition",
                ))
                .bind(*name)
                .bind(*definition)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(query)?;
            }
            let rows = sqlx::query_as(
                "SELECT name, definition, since_ms, last_fired_ms FROM schedules ORDER BY name",
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(query)?;
            tx.commit().await.map_err(query)?;
            rows
        });
        Ok(rows
            .into_iter()
            .map(
                |(name, definition, since_ms, last_fired_ms)| ScheduleState {
                    name,
                    definition,
                    since_ms,
                    last_fired_ms,
                },
            )
            .collect())
    }

    /// Claims the run of `name` scheduled at `fire_ms` by compare-and-set:
    /// succeeds only while the schedule's last claimed run is still
    /// `expected` (and its definition still `definition`). Written before
    /// the run is invoked, so a run is claimed once, whoever asks and
    /// however often.
    pub async fn claim_schedule_run(
        &self,
        name: &str,
        definition: &str,
        expected: Option<i64>,
        fire_ms: i64,
    ) -> Result<bool, StoreError> {
        let query = |source| StoreError::Query {
            operation: "claim schedule run",
            source,
        };
        let result = on_backend!(self, |pool, sql| {
            sqlx::query(&sql("UPDATE schedules SET last_fired_ms = $1 \
                 WHERE name = $2 AND definition = $3 \
                 AND (last_fired_ms = $4 OR (last_fired_ms IS NULL AND $5))"))
            .bind(fire_ms)
            .bind(name)
            .bind(definition)
            .bind(expected.unwrap_or_default())
            .bind(expected.is_none())
            .execute(pool)
            .await
            .map_err(query)?
            .rows_affected()
        });
        Ok(result == 1)
    }
}

/// Errors worth another attempt while the database comes up: nothing
/// listening yet, a name not resolving yet, a server still starting
/// (`57P03 cannot_connect_now`), a timed-out attempt.
fn retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(e) => e.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

async fn connect_postgres(
    options: PgConnectOptions,
    database: &str,
    wait: Duration,
    shutdown: &CancellationToken,
) -> Result<PgPool, StoreError> {
    let started = Instant::now();
    let deadline = started + wait;
    let mut delay = RETRY_MIN;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(remaining.clamp(Duration::from_millis(100), ACQUIRE_TIMEOUT))
            .connect_with(options.clone());
        let error = tokio::select! {
            result = attempt => match result {
                Ok(pool) => {
                    if attempts > 1 {
                        tracing::info!(%database, attempts, "database reachable");
                    }
                    return Ok(pool);
                }
                Err(e) => e,
            },
            () = shutdown.cancelled() => return Err(StoreError::Cancelled),
        };
        if !retryable(&error) {
            return Err(StoreError::Connect {
                database: database.to_owned(),
                source: error,
            });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(StoreError::Unavailable {
                database: database.to_owned(),
                waited: wait,
                source: error,
            });
        }
        if attempts == 1 {
            tracing::info!(%database, error = %error, wait = ?wait, "database not reachable yet: waiting for it");
        } else {
            tracing::debug!(%database, error = %error, "database still not reachable");
        }
        let pause = delay.min(deadline - now);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return Err(StoreError::Cancelled),
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

async fn connect_sqlite(path: &Path, database: &str) -> Result<SqlitePool, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| StoreError::StateDir {
                path: dir.to_owned(),
                source,
            })?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(ACQUIRE_TIMEOUT)
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect {
            database: database.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_query_that_never_answers_times_out() {
        let never = std::future::pending::<Result<(), StoreError>>();
        let err = bounded_by(Duration::from_millis(20), "enqueue invocation", never)
            .await
            .expect_err("times out");
        assert!(
            matches!(
                err,
                StoreError::TimedOut {
                    operation: "enqueue invocation",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            bounded_by(Duration::from_secs(5), "x", async { Ok(7) })
                .await
                .expect("answers"),
            7
        );
    }

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("esb-store-{}", uuid::Uuid::new_v4().simple()))
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact_url("postgres://esb:s3cr3t@db:5432/esb?sslmode=disable"),
            "postgres://esb:***@db:5432/esb?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgresql://db/esb?user=esb&password=s3cr3t"),
            "postgresql://db/esb?user=esb&password=***"
        );
        assert_eq!(redact_url("postgres://esb@db/esb"), "postgres://esb@db/esb");
        let err = StoreConfig::new(Some("mysql://root:s3cr3t@db/esb"), Path::new("/x"))
            .expect_err("scheme")
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("mysql://root:***@db/esb"), "{err}");
        let config =
            StoreConfig::new(Some("postgres://esb:s3cr3t@db/esb"), Path::new("/x")).expect("valid");
        assert!(!format!("{config:?}").contains("s3cr3t"));
        let config = StoreConfig::new(None, Path::new("/var/lib/esb")).expect("valid");
        assert_eq!(config.describe(), "sqlite:/var/lib/esb/gateway.db");
    }

    #[tokio::test]
    async fn sqlite_records_deployments_and_keeps_them_across_reopening() {
        let dir = temp_dir().join("state");
        let config = StoreConfig::new(None, &dir).expect("config");
        let never = CancellationToken::new();
        let store = Store::connect(&config, Duration::from_secs(1), &never)
            .await
            .expect("connect creates the directory and the file");
        assert_eq!(store.backend(), "sqlite");
        for (i, reason) in [DeploymentReason::Startup, DeploymentReason::Reload]
            .into_iter()
            .enumerate()
        {
            let recorded = store
                .record_deployment(&NewDeployment {
                    catalog_sha256: &format!("{i:064}"),
                    functions: 2 + i,
                    routes: 3,
                    reason,
                    gateway_id: "gw-1",
                })
                .await
                .expect("record");
            assert_eq!(recorded.functions, 2 + i as i64);
            assert!(
                recorded.applied_at.ends_with('Z'),
                "{}",
                recorded.applied_at
            );
        }
        store.close().await;
        assert!(dir.join(SQLITE_FILE).exists());

        // A new gateway on the same state directory sees the history;
        // migrations are not applied twice.
        let store = Store::connect(&config, Duration::from_secs(1), &never)
            .await
            .expect("reopen");
        let all = store.deployments(10).await.expect("list");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].reason, "reload", "newest first");
        assert_eq!(all[1].reason, "startup");
        assert!(all[0].id > all[1].id);
        assert_eq!(store.deployments(1).await.expect("list").len(), 1);
        store.close().await;
        let _ = std::fs::remove_dir_all(dir.parent().expect("parent"));
    }

    #[tokio::test]
    async fn a_schedule_run_is_claimed_once_and_its_state_survives_reopening() {
        let dir = temp_dir().join("state");
        let config = StoreConfig::new(None, &dir).expect("config");
        let never = CancellationToken::new();
        let store = Store::connect(&config, Duration::from_secs(1), &never)
            .await
            .expect("connect");
        let rows = store
            .sync_schedules(
                &[
                    ("a", "rate(1 minute) UTC enabled"),
                    ("b", "cron(0 1 * * ? *) UTC enabled"),
                ],
                1_000,
            )
            .await
            .expect("sync");
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].since_ms, rows[0].last_fired_ms), (1_000, None));

        assert!(store
            .claim_schedule_run("a", "rate(1 minute) UTC enabled", None, 60_000)
            .await
            .expect("claim"));
        // The same run again, or a run claimed from a stale view: refused.
        assert!(!store
            .claim_schedule_run("a", "rate(1 minute) UTC enabled", None, 60_000)
            .await
            .expect("claim"));
        assert!(!store
            .claim_schedule_run("a", "rate(1 minute) UTC enabled", Some(0), 120_000)
            .await
            .expect("claim"));
        // Another definition than the stored one: refused.
        assert!(!store
            .claim_schedule_run("a", "rate(2 minutes) UTC enabled", Some(60_000), 120_000)
            .await
            .expect("claim"));
        assert!(store
            .claim_schedule_run("a", "rate(1 minute) UTC enabled", Some(60_000), 120_000)
            .await
            .expect("claim"));
        store.close().await;

        // Reopened: the claim is kept for an unchanged schedule; a changed
        // one counts from the new time; a removed one is gone.
        let store = Store::connect(&config, Duration::from_secs(1), &never)
            .await
            .expect("reopen");
        let rows = store
            .sync_schedules(
                &[
                    ("a", "rate(1 minute) UTC enabled"),
                    ("c", "rate(1 day) UTC enabled"),
                ],
                5_000,
            )
            .await
            .expect("sync");
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(
            (rows[0].since_ms, rows[0].last_fired_ms),
            (1_000, Some(120_000))
        );
        let rows = store
            .sync_schedules(&[("a", "rate(5 minutes) UTC enabled")], 9_000)
            .await
            .expect("sync");
        assert_eq!(rows[0].definition, "rate(5 minutes) UTC enabled");
        assert_eq!(
            (rows[0].since_ms, rows[0].last_fired_ms),
            (9_000, Some(120_000))
        );
        store.close().await;
        let _ = std::fs::remove_dir_all(dir.parent().expect("parent"));
    }

    #[tokio::test]
    async fn an_unreachable_postgres_is_a_clear_error_after_the_wait() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let url = format!("postgres://esb:hunter2secret@127.0.0.1:{port}/esb");
        let config = StoreConfig::new(Some(&url), Path::new("/unused")).expect("config");
        let started = std::time::Instant::now();
        let err = Store::connect(&config, Duration::from_secs(1), &CancellationToken::new())
            .await
            .expect_err("nothing listens");
        let waited = started.elapsed();
        let message = err.to_string();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{message}");
        assert!(
            message.contains(&format!("127.0.0.1:{port}/esb")),
            "{message}"
        );
        assert!(!message.contains("hunter2secret"), "{message}");
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
            "retried for about the wait: {waited:?}"
        );

        // Shutdown interrupts the wait.
        let stop = CancellationToken::new();
        stop.cancel();
        let err = Store::connect(&config, Duration::from_secs(60), &stop)
            .await
            .expect_err("cancelled");
        assert!(matches!(err, StoreError::Cancelled), "{err}");
    }
}
