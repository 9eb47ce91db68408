//! The state store against a real, throwaway PostgreSQL started in a temp
//! directory on a free port (the Debian `postgresql` binaries). Skipped,
//! with the reason printed, when they are not installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use esb_gateway::store::{DeploymentReason, NewDeployment, Store, StoreConfig, StoreError};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "pg-test-secret-7d1e";

/// The directory with `initdb`, `pg_ctl` and `postgres`: `ESB_TEST_PG_BIN`,
/// the newest `/usr/lib/postgresql/*/bin`, or the `PATH`.
fn postgres_bin() -> Option<PathBuf> {
    let has_tools = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|t| dir.join(t).exists())
    };
    if let Some(dir) = std::env::var_os("ESB_TEST_PG_BIN").map(PathBuf::from) {
        return has_tools(&dir).then_some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(dir) = versions.into_iter().rev().find(|d| has_tools(d)) {
        return Some(dir);
    }
    std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).find(|d| has_tools(d)))
}

fn run(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{command:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A PostgreSQL cluster in a temp directory, run as an unprivileged user
/// when the tests run as root (PostgreSQL refuses root); stopped and
/// removed on drop.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    run_as: Option<String>,
    port: u16,
    started: bool,
}

impl Cluster {
    fn command(&self, tool: &str) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(self.bin.join(tool));
                c
            }
            None => Command::new(self.bin.join(tool)),
        }
    }

    /// `initdb` with a password-protected user `esb`; not started yet.
    fn init(bin: PathBuf) -> Result<Cluster, String> {
        let root = run(Command::new("id").arg("-u"))?.trim() == "0";
        let run_as = if root {
            run(Command::new("id").arg("postgres")).map_err(|_| {
                "running as root and there is no postgres user to run PostgreSQL as".to_owned()
            })?;
            Some("postgres".to_owned())
        } else {
            None
        };
        let dir = std::env::temp_dir().join(format!(
            "esb-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("pwfile"), PASSWORD).map_err(|e| e.to_string())?;
        if let Some(user) = &run_as {
            run(Command::new("chown").arg("-R").arg(user).arg(&dir))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let cluster = Cluster {
            bin,
            dir,
            run_as,
            port,
            started: false,
        };
        run(cluster
            .command("initdb")
            .arg("-D")
            .arg(cluster.dir.join("data"))
            .args([
                "-U",
                "esb",
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .arg(format!("--pwfile={}", cluster.dir.join("pwfile").display())))?;
        Ok(cluster)
    }

    fn start(&mut self) -> Result<(), String> {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.display()
            ))
            .args(["-w", "start"]))?;
        self.started = true;
        Ok(())
    }

    fn url(&self, password: &str) -> String {
        format!("postgres://esb:{password}@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            let _ = run(self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "stop"]));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_waits_for_postgres_migrates_and_records_deployments() {
    let Some(bin) = postgres_bin() else {
        println!("SKIPPED: no PostgreSQL binaries (initdb, pg_ctl, postgres) on this machine; install postgresql or set ESB_TEST_PG_BIN");
        return;
    };
    let mut cluster = match Cluster::init(bin) {
        Ok(c) => c,
        Err(reason) => {
            println!("SKIPPED: cannot set up a throwaway PostgreSQL: {reason}");
            return;
        }
    };
    let config =
        StoreConfig::new(Some(&cluster.url(PASSWORD)), Path::new("/unused")).expect("config");
    let never = CancellationToken::new();

    // The gateway starts before the database (as in Compose): it waits.
    let connecting = {
        let config = config.clone();
        let never = never.clone();
        tokio::spawn(async move { Store::connect(&config, Duration::from_secs(60), &never).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!connecting.is_finished(), "still waiting for the database");
    let started = tokio::task::spawn_blocking(move || cluster.start().map(|()| cluster))
        .await
        .expect("join");
    let cluster = started.expect("PostgreSQL starts");
    let store = connecting
        .await
        .expect("join")
        .expect("connected once it is up");
    assert_eq!(store.backend(), "postgres");

    for (i, reason) in [DeploymentReason::Startup, DeploymentReason::Reload]
        .into_iter()
        .enumerate()
    {
        store
            .record_deployment(&NewDeployment {
                catalog_sha256: &format!("{i:064}"),
                functions: i,
                routes: 2 * i,
                reason,
                gateway_id: "gw-pg",
            })
            .await
            .expect("record");
    }
    store.close().await;

    // A second gateway: migrations already applied, history visible.
    let store = Store::connect(&config, Duration::from_secs(5), &never)
        .await
        .expect("reconnect");
    let listed = store.deployments(10).await.expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].reason.as_str(), listed[0].routes), ("reload", 2));
    assert_eq!(listed[1].reason, "startup");
    assert!(listed[0].applied_at.ends_with('Z'));
    store.close().await;

    // A wrong password is not waited for, and not shown.
    let wrong = StoreConfig::new(Some(&cluster.url("not-the-password")), Path::new("/unused"))
        .expect("config");
    let started = std::time::Instant::now();
    let err = Store::connect(&wrong, Duration::from_secs(60), &never)
        .await
        .expect_err("wrong password");
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failed without waiting the full minute"
    );
    let message = format!("{err:#}");
    assert!(!message.contains("not-the-password"), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{}", cluster.port)),
        "{message}"
    );
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_claims_a_schedule_run_once() {
    let Some(bin) = postgres_bin() else {
        println!("SKIPPED: no PostgreSQL binaries (initdb, pg_ctl, postgres) on this machine; install postgresql or set ESB_TEST_PG_BIN");
        return;
    };
    let mut cluster = match Cluster::init(bin) {
        Ok(c) => c,
        Err(reason) => {
            println!("SKIPPED: cannot set up a throwaway PostgreSQL: {reason}");
            return;
        }
    };
    let cluster = tokio::task::spawn_blocking(move || cluster.start().map(|()| cluster))
        .await
        .expect("join")
        .expect("PostgreSQL starts");
    let config =
        StoreConfig::new(Some(&cluster.url(PASSWORD)), Path::new("/unused")).expect("config");
    let store = Store::connect(&config, Duration::from_secs(30), &CancellationToken::new())
        .await
        .expect("connect");
    let def = "cron(0/5 * * * ? *) UTC enabled";
    let rows = store
        .sync_schedules(&[("a", def), ("b", def)], 1_000)
        .await
        .expect("sync");
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].since_ms, rows[0].last_fired_ms), (1_000, None));
    // Two gateways racing for the same run: one wins.
    let (x, y) = tokio::join!(
        store.claim_schedule_run("a", def, None, 300_000),
        store.claim_schedule_run("a", def, None, 300_000)
    );
    assert_eq!(
        [x.expect("claim"), y.expect("claim")]
            .iter()
            .filter(|won| **won)
            .count(),
        1
    );
    assert!(!store
        .claim_schedule_run("a", "rate(1 day) UTC enabled", Some(300_000), 600_000)
        .await
        .expect("claim"));
    assert!(store
        .claim_schedule_run("a", def, Some(300_000), 600_000)
        .await
        .expect("claim"));
    let rows = store
        .sync_schedules(&[("a", def)], 9_000)
        .await
        .expect("sync");
    assert_eq!(rows.len(), 1, "b was removed");
    assert_eq!(
        (rows[0].since_ms, rows[0].last_fired_ms),
        (1_000, Some(600_000))
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queues_and_claims_async_invocations_once() {
    use esb_gateway::queue::{InvocationStatus, NewInvocation};
    let Some(bin) = postgres_bin() else {
        println!("SKIPPED: no PostgreSQL binaries (initdb, pg_ctl, postgres) on this machine; install postgresql or set ESB_TEST_PG_BIN");
        return;
    };
    let mut cluster = match Cluster::init(bin) {
        Ok(c) => c,
        Err(reason) => {
            println!("SKIPPED: cannot set up a throwaway PostgreSQL: {reason}");
            return;
        }
    };
    let cluster = tokio::task::spawn_blocking(move || cluster.start().map(|()| cluster))
        .await
        .expect("join")
        .expect("PostgreSQL starts");
    let config =
        StoreConfig::new(Some(&cluster.url(PASSWORD)), Path::new("/unused")).expect("config");
    let store = Store::connect(&config, Duration::from_secs(30), &CancellationToken::new())
        .await
        .expect("connect");
    let ids: Vec<String> = (0..20).map(|i| format!("request-{i:02}")).collect();
    for id in &ids {
        store
            .enqueue_invocation(&NewInvocation {
                request_id: id,
                function: "f",
                invoked_function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f",
                payload: br#"{"k":"v"}"#,
                trace_id: "Root=1-5759e988-bd862e3fe1be46a994272793",
                client_context: None,
            })
            .await
            .expect("enqueue");
    }
    // Two dispatchers claiming at once never take the same invocation.
    let now = i64::MAX / 4;
    let (a, b) = tokio::join!(
        store.claim_invocations("gw-a", now, now + 60_000, 15),
        store.claim_invocations("gw-b", now, now + 60_000, 15)
    );
    let (a, b) = (a.expect("claim"), b.expect("claim"));
    let mut claimed: Vec<String> = a.iter().chain(&b).map(|c| c.request_id.clone()).collect();
    claimed.sort();
    assert_eq!(claimed, ids, "each exactly once");
    let first = a.first().or(b.first()).expect("one claimed");
    assert_eq!(first.payload, br#"{"k":"v"}"#);
    let holder = if a.is_empty() { "gw-b" } else { "gw-a" };
    store
        .finish_invocation(
            &first.request_id,
            holder,
            InvocationStatus::Failed,
            3,
            Some("ValueError: boom"),
        )
        .await
        .expect("finish");
    let failed = store
        .invocations(Some(InvocationStatus::Failed), 10)
        .await
        .expect("list");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 3);
    assert_eq!(failed[0].last_error.as_deref(), Some("ValueError: boom"));
    // A new gateway makes the others due again.
    assert_eq!(
        store.recover_invocations("gw-c").await.expect("recover"),
        19
    );
    assert_eq!(
        store
            .invocations(Some(InvocationStatus::Queued), 100)
            .await
            .expect("list")
            .len(),
        19
    );
    store.close().await;
}
