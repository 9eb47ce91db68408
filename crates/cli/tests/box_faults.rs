//! Surviving faults on a real box (`esb build` + `esb up --wait` of
//! `fixtures/faults-app` on Docker Compose, in docker and in containerd
//! mode): functions that crash, hang past their timeout or exceed their
//! memory; storage and database outages; the gateway killed with SIGKILL
//! while asynchronous invocations are queued and requests are in flight;
//! the agent killed while an invocation runs. Every wait is bounded.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{boto3, docker_lines, eventually, login, App, Mode};
use serde_json::{json, Value};

/// A running box of the fixture app and a client for it.
struct FaultBox {
    mode: Mode,
    app: App,
    info: Value,
    client: reqwest::Client,
    gateway: String,
    token: String,
}

impl FaultBox {
    /// Up in `mode` with idle workers reaped after `idle_seconds`.
    async fn up(mode: Mode, tag: &str, idle_seconds: u32) -> FaultBox {
        let mut app = App::from_dir(
            &esb_testkit::workspace_root().join("crates/cli/tests/fixtures/faults-app"),
            tag,
        );
        app.env
            .push(("ESB_IDLE_TIMEOUT_SECONDS".into(), idle_seconds.to_string()));
        app.esb_ok(&["build", "--mode", mode.as_str()]);
        app.esb_ok(&["up", "--mode", mode.as_str(), "--wait"]);
        let info: Value =
            serde_json::from_str(&app.esb_ok(&["info", "--json"])).expect("info json");
        let ca = std::fs::read(info["ca_cert"].as_str().expect("ca")).expect("read ca");
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca pem"))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let gateway = info["endpoints"]["gateway"]
            .as_str()
            .expect("gateway")
            .to_owned();
        let token = login(&client, &gateway, &info["credentials"]).await;
        FaultBox {
            mode,
            app,
            info,
            client,
            gateway,
            token,
        }
    }

    /// After a restart of the gateway container its ports are new ones.
    async fn refresh(&mut self) {
        let info: Value =
            serde_json::from_str(&self.app.esb_ok(&["info", "--json"])).expect("info json");
        self.gateway = info["endpoints"]["gateway"]
            .as_str()
            .expect("gateway")
            .to_owned();
        self.info = info;
    }

    /// A synchronous Invoke API call with the IdToken: status, the
    /// `X-Amz-Function-Error` header, `x-amzn-ErrorType`, and the body.
    async fn invoke(&self, function: &str, payload: Value) -> Invoked {
        self.invoke_as(function, payload, "RequestResponse")
            .await
            .expect("invoke answers")
    }

    async fn invoke_as(
        &self,
        function: &str,
        payload: Value,
        invocation_type: &str,
    ) -> Result<Invoked, reqwest::Error> {
        invoke(
            &self.client,
            &self.gateway,
            &self.token,
            function,
            payload,
            invocation_type,
        )
        .await
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.gateway))
            .send()
            .await
            .expect("route answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn pool(&self, function: &str) -> Value {
        let pools: Value = self
            .client
            .get(format!("{}/admin/v1/pools", self.gateway))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("pools")
            .json()
            .await
            .expect("pools json");
        pools["pools"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["function"] == function).cloned())
            .unwrap_or(Value::Null)
    }

    /// Running workers of the box (of one function, or all): the agent's
    /// labelled containers in docker mode, containerd's containers of the
    /// stack with a running task in containerd mode.
    fn workers(&self, function: Option<&str>) -> BTreeSet<String> {
        match self.mode {
            Mode::Docker => {
                let mut args = vec![
                    "ps".to_owned(),
                    "-q".into(),
                    "--no-trunc".into(),
                    "--filter".into(),
                    format!("label=esb.stack={}", self.app.project),
                ];
                if let Some(f) = function {
                    args.extend(["--filter".into(), format!("label=esb.function={f}")]);
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                docker_lines(&args).into_iter().collect()
            }
            Mode::Containerd => {
                let running: BTreeSet<String> = self
                    .ctr(&["tasks", "ls"])
                    .iter()
                    .skip(1)
                    .filter_map(|line| {
                        let mut fields = line.split_whitespace();
                        let id = fields.next()?;
                        (fields.nth(1)? == "RUNNING").then(|| id.to_owned())
                    })
                    .collect();
                self.containerd_workers(function)
                    .into_iter()
                    .filter(|id| running.contains(id))
                    .collect()
            }
        }
    }

    /// Every worker container of the box, whatever its state.
    fn all_workers(&self) -> Vec<String> {
        match self.mode {
            Mode::Docker => docker_lines(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=esb.stack={}", self.app.project),
            ]),
            Mode::Containerd => self.containerd_workers(None),
        }
    }

    /// containerd's containers of the stack (of one function, or all).
    fn containerd_workers(&self, function: Option<&str>) -> Vec<String> {
        let mut filter = format!(r#"labels."esb.stack"=={}"#, self.app.project);
        if let Some(f) = function {
            filter.push_str(&format!(r#",labels."esb.function"=={f}"#));
        }
        self.ctr(&["containers", "ls", "-q", &filter])
    }

    /// `ctr` in the box's namespace on runtime-node.
    fn ctr(&self, args: &[&str]) -> Vec<String> {
        let node = self.service("runtime-node");
        let mut all = vec!["exec", node.as_str(), "ctr", "-n", "esb"];
        all.extend_from_slice(args);
        docker_lines(&all)
    }

    /// The container of one of the box's Compose services.
    fn service(&self, service: &str) -> String {
        let ids = docker_lines(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.app.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]);
        assert_eq!(ids.len(), 1, "one {service} container: {ids:?}");
        ids[0].clone()
    }

    /// SIGKILL to a service's process from the host, as a crash would: the
    /// restart policy (`unless-stopped`) brings it back.
    fn kill_9(&self, service: &str) {
        let container = self.service(service);
        let pid = docker_lines(&["inspect", "-f", "{{.State.Pid}}", &container]);
        let pid = pid.first().expect("pid").clone();
        assert_ne!(pid, "0", "{service} is not running");
        let status = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -9 {pid} ({service})");
    }

    async fn wait_healthy(&self, service: &str) {
        let container = self.service(service);
        eventually(
            &format!("{service} healthy again"),
            Duration::from_secs(60),
            || {
                let health =
                    docker_lines(&["inspect", "-f", "{{.State.Health.Status}}", &container]);
                async move {
                    match health.first().map(String::as_str) {
                        Some("healthy") => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await;
    }

    /// Keys the slow function wrote (one per run), read with boto3 (at
    /// the storage's current port: a restart publishes a new one).
    fn runs(&self) -> BTreeSet<String> {
        let bucket = format!("{}-runs", self.app.project);
        let info: Value =
            serde_json::from_str(&self.app.esb_ok(&["info", "--json"])).expect("info json");
        let out = boto3(&info).run_blocking(&format!(
            r#"
pages = boto3.client("s3", config=CONFIG).get_paginator("list_objects_v2").paginate(Bucket="{bucket}", Prefix="runs/")
out["runs"] = [o["Key"][len("runs/"):] for page in pages for o in page.get("Contents", [])]
"#
        ));
        out["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|k| k.as_str().expect("key").to_owned())
            .collect()
    }

    /// Queues `count` asynchronous invocations with boto3 (SigV4, the box's
    /// keys, `InvocationType="Event"`); their request ids, each one a 202.
    fn queue_events(&self, function: &str, payload: Value, count: usize) -> Vec<String> {
        let out = boto3(&self.info).run_blocking(&format!(
            r#"
out["ids"] = []
for _ in range({count}):
    r = lam.invoke(FunctionName="{function}", InvocationType="Event", Payload=json.dumps({payload}))
    assert r["StatusCode"] == 202, r
    out["ids"].append(r["ResponseMetadata"]["RequestId"])
"#
        ));
        let ids: Vec<String> = out["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|id| id.as_str().expect("request id").to_owned())
            .collect();
        assert_eq!(ids.len(), count);
        ids
    }

    /// No worker container left once idle workers are reaped (also none
    /// stopped and not removed).
    async fn no_worker_left(&self) {
        eventually("every worker reaped", Duration::from_secs(60), || {
            let left = self.all_workers();
            async move {
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{} worker containers: {left:?}", left.len()))
                }
            }
        })
        .await;
    }
}

#[derive(Debug)]
struct Invoked {
    status: u16,
    function_error: Option<String>,
    error_type: Option<String>,
    request_id: Option<String>,
    body: Value,
}

async fn invoke(
    client: &reqwest::Client,
    gateway: &str,
    token: &str,
    function: &str,
    payload: Value,
    invocation_type: &str,
) -> Result<Invoked, reqwest::Error> {
    let response = client
        .post(format!(
            "{gateway}/2015-03-31/functions/{function}/invocations"
        ))
        .bearer_auth(token)
        .header("X-Amz-Invocation-Type", invocation_type)
        .json(&payload)
        .send()
        .await?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let function_error = header("x-amz-function-error");
    let error_type = header("x-amzn-errortype");
    let request_id = header("x-amzn-requestid");
    let status = response.status().as_u16();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Invoked {
        status,
        function_error,
        error_type,
        request_id,
        body,
    })
}

/// GET /steady in a loop until stopped; every status seen.
fn neighbour(b: &FaultBox) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<u16>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let client = b.client.clone();
    let url = format!("{}/steady", b.gateway);
    let flag = Arc::clone(&stop);
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while !flag.load(Ordering::SeqCst) {
            let status = match client.get(&url).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            seen.push(status);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        seen
    });
    (stop, task)
}

fn assert_function_error(invoked: &Invoked, error_type: &str, message: &str) {
    assert_eq!(invoked.status, 200, "{invoked:?}");
    assert_eq!(
        invoked.function_error.as_deref(),
        Some("Unhandled"),
        "{invoked:?}"
    );
    assert_eq!(invoked.body["errorType"], error_type, "{invoked:?}");
    let text = invoked.body["errorMessage"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("RequestId: ") && text.contains(message),
        "{invoked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_faults_and_outages_stay_contained() {
    function_faults_and_outages(Mode::Docker, "faults").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_faults_and_outages_stay_contained_in_containerd_mode() {
    function_faults_and_outages(Mode::Containerd, "ctdfaults").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_agent_crashes_lose_nothing() {
    gateway_and_agent_crashes(Mode::Docker, "restarts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_agent_crashes_lose_nothing_in_containerd_mode() {
    gateway_and_agent_crashes(Mode::Containerd, "ctdrestarts").await;
}

async fn function_faults_and_outages(mode: Mode, tag: &str) {
    let b = &FaultBox::up(mode, tag, 30).await;
    let (stop, neighbour_task) = neighbour(b);

    // A crash (os._exit): Lambda's Runtime.ExitError, 502 on a route, and
    // a fresh runtime for the next invocation.
    let before = b.invoke("CrashFunction", json!({"mode": "ok"})).await;
    assert_eq!(before.status, 200, "{before:?}");
    let crashed = b.invoke("CrashFunction", json!({"mode": "crash"})).await;
    assert_function_error(
        &crashed,
        "Runtime.ExitError",
        "Error: Runtime exited with error: exit status 3",
    );
    let after = b.invoke("CrashFunction", json!({"mode": "ok"})).await;
    assert_eq!(after.status, 200, "{after:?}");
    assert!(after.function_error.is_none(), "{after:?}");
    assert_ne!(after.body["init"], before.body["init"], "a fresh runtime");
    let (status, body) = b.get("/crash/crash").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!({"message": "Internal server error"})
    );
    assert_eq!(b.get("/crash/ok").await.0, 200);

    // More crashes than the breaker's threshold (5): user errors, so the
    // breaker stays closed and the function keeps being served.
    for _ in 0..6 {
        let crashed = b.invoke("CrashFunction", json!({"mode": "crash"})).await;
        assert_eq!(crashed.function_error.as_deref(), Some("Unhandled"));
    }
    assert_eq!(b.pool("CrashFunction").await["breaker"], "closed");
    assert_eq!(
        b.invoke("CrashFunction", json!({"mode": "ok"}))
            .await
            .status,
        200
    );

    // A hang past the 2 s timeout: Sandbox.Timedout within a bound, 504 on
    // a route, and the function serves again.
    let started = Instant::now();
    let hung = b.invoke("HangFunction", json!({"mode": "hang"})).await;
    assert_function_error(
        &hung,
        "Sandbox.Timedout",
        "Error: Task timed out after 2.00 seconds",
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        b.invoke("HangFunction", json!({"mode": "ok"})).await.status,
        200
    );
    let (status, body) = b.get("/hang/hang").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!({"message": "Endpoint request timed out"})
    );
    assert_eq!(b.pool("HangFunction").await["breaker"], "closed");

    // Over the 128 MB limit: the kernel kills the runtime (Lambda's
    // "Runtime exited with error: signal: killed"), the worker is
    // replaced, and the next invocation runs on a fresh one.
    let warm = b.invoke("HogFunction", json!({"mb": 1})).await;
    assert_eq!(warm.body["held_mb"], 1, "{warm:?}");
    let first = b.workers(Some("HogFunction"));
    assert_eq!(first.len(), 1, "{first:?}");
    let oom = b.invoke("HogFunction", json!({"mb": 512})).await;
    assert_function_error(
        &oom,
        "Runtime.ExitError",
        "Error: Runtime exited with error: signal: killed",
    );
    eventually(
        "the OOM-killed worker replaced",
        Duration::from_secs(30),
        || {
            let now = b.workers(Some("HogFunction"));
            let old = first.clone();
            async move {
                if now.is_disjoint(&old) {
                    Ok(())
                } else {
                    Err(format!("still running: {now:?}"))
                }
            }
        },
    )
    .await;
    let fresh = b.invoke("HogFunction", json!({"mb": 1})).await;
    assert_eq!(fresh.body["held_mb"], 1, "{fresh:?}");
    let second = b.workers(Some("HogFunction"));
    assert_eq!(second.len(), 1, "{second:?}");
    assert!(second.is_disjoint(&first), "a new worker serves");
    assert_eq!(b.pool("HogFunction").await["breaker"], "closed");

    // The neighbour answered 200 all along.
    stop.store(true, Ordering::SeqCst);
    let seen = neighbour_task.await.expect("neighbour");
    assert!(seen.len() >= 5, "{seen:?}");
    assert!(seen.iter().all(|s| *s == 200), "{seen:?}");
    assert_eq!(b.pool("SteadyFunction").await["breaker"], "closed");

    // S3 storage down: a function using it fails within its timeout with
    // a function error (no hang), and works again once storage is back.
    assert_eq!(
        b.invoke("FilesFunction", json!({"key": "probe.txt"}))
            .await
            .body,
        json!({"read": "probe"})
    );
    let storage = b.service("s3-storage");
    docker_lines(&["stop", "-t", "3", &storage]);
    let started = Instant::now();
    let failed = b.invoke("FilesFunction", json!({"key": "probe.txt"})).await;
    let waited = started.elapsed();
    assert_eq!(failed.status, 200, "{failed:?}");
    assert_eq!(
        failed.function_error.as_deref(),
        Some("Unhandled"),
        "{failed:?}"
    );
    eprintln!("with storage down, the function failed in {waited:?}");
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    docker_lines(&["start", &storage]);
    b.wait_healthy("s3-storage").await;
    eventually(
        "S3 from a function again",
        Duration::from_secs(30),
        move || async move {
            let again = b.invoke("FilesFunction", json!({"key": "probe.txt"})).await;
            if again.body == json!({"read": "probe"}) {
                Ok(())
            } else {
                Err(format!("{again:?}"))
            }
        },
    )
    .await;

    // The database down: an Event invocation (it must be stored before its
    // 202) gets a clear 5xx within a bound instead of hanging; synchronous
    // invocations and routes, which need no database, keep working; once
    // the database is back, Event invocations are accepted and run.
    let database = b.service("database");
    docker_lines(&["stop", "-t", "3", &database]);
    let started = Instant::now();
    let refused = b
        .invoke_as("SlowFunction", json!({"seconds": 0}), "Event")
        .await
        .expect("an answer");
    let waited = started.elapsed();
    assert_eq!(refused.status, 500, "{refused:?}");
    assert_eq!(
        refused.error_type.as_deref(),
        Some("ServiceException"),
        "{refused:?}"
    );
    assert_eq!(refused.body["Type"], "Service", "{refused:?}");
    eprintln!("with the database down, an Event invoke was refused in {waited:?}");
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    assert_eq!(
        b.invoke("SteadyFunction", json!({})).await.status,
        200,
        "sync invocations need no database"
    );
    assert_eq!(b.get("/steady").await.0, 200);
    docker_lines(&["start", &database]);
    b.wait_healthy("database").await;
    let accepted: Arc<Mutex<Option<String>>> = Arc::default();
    let slot = Arc::clone(&accepted);
    eventually(
        "Event invocations accepted again",
        Duration::from_secs(30),
        move || {
            let accepted = Arc::clone(&slot);
            async move {
                let r = b
                    .invoke_as("SlowFunction", json!({"seconds": 0}), "Event")
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status == 202 {
                    *accepted.lock().expect("lock") = r.request_id;
                    Ok(())
                } else {
                    Err(format!("{r:?}"))
                }
            }
        },
    )
    .await;
    let accepted = accepted
        .lock()
        .expect("lock")
        .clone()
        .expect("a request id");
    eventually(
        "the accepted Event invocation ran",
        Duration::from_secs(30),
        || {
            let ran = b.runs().contains(&accepted);
            async move {
                if ran {
                    Ok(())
                } else {
                    Err("not yet".to_owned())
                }
            }
        },
    )
    .await;
}

async fn gateway_and_agent_crashes(mode: Mode, tag: &str) {
    // Idle workers go soon, so "none leaked" is seen, but not before an
    // adopted one can show it serves.
    let mut b = FaultBox::up(mode, tag, 10).await;
    assert_eq!(b.get("/steady").await.0, 200);

    // Five Event invocations of a function limited to one worker, each
    // sleeping 2 s: most are still queued when the gateway dies.
    let accepted = b.queue_events("SlowFunction", json!({"seconds": 2}), 5);
    // Two synchronous invocations in flight.
    let in_flight: Vec<_> = (0..2)
        .map(|_| {
            let (client, gateway, token) = (b.client.clone(), b.gateway.clone(), b.token.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let result = tokio::time::timeout(
                    Duration::from_secs(30),
                    invoke(
                        &client,
                        &gateway,
                        &token,
                        "SleepFunction",
                        json!({"seconds": 8}),
                        "RequestResponse",
                    ),
                )
                .await;
                (result, started.elapsed())
            })
        })
        .collect();
    let bx = &b;
    eventually(
        "the slow invocations running",
        Duration::from_secs(30),
        move || async move {
            let b = bx;
            let sleep = b.pool("SleepFunction").await;
            let slow = b.pool("SlowFunction").await;
            if sleep["busy"] == 2 && slow["busy"] == 1 {
                Ok(())
            } else {
                Err(format!("{sleep} {slow}"))
            }
        },
    )
    .await;
    assert!(
        b.runs().len() < accepted.len(),
        "some invocations are still queued"
    );
    b.kill_9("gateway");

    // The requests in flight fail; they do not hang.
    for task in in_flight {
        let (result, took) = task.await.expect("request task");
        let result = result.expect("an in-flight request ends within 30 s");
        if let Ok(invoked) = &result {
            assert!(invoked.status >= 500, "{invoked:?}");
        }
        assert!(took < Duration::from_secs(30), "{took:?}");
    }

    // The restart policy brings the gateway back (on new host ports).
    b.wait_healthy("gateway").await;
    b.refresh().await;
    let bx = &b;
    eventually(
        "the gateway answers",
        Duration::from_secs(30),
        move || async move {
            let b = bx;
            let r = b
                .client
                .get(format!("{}/steady", b.gateway))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status() == 200 {
                Ok(())
            } else {
                Err(r.status().to_string())
            }
        },
    )
    .await;
    b.token = login(&b.client, &b.gateway, &b.info["credentials"]).await;

    // Every accepted invocation ran, at least once.
    eventually(
        "every accepted Event invocation ran",
        Duration::from_secs(90),
        || {
            let runs = b.runs();
            let missing: Vec<String> = accepted
                .iter()
                .filter(|id| !runs.contains(*id))
                .cloned()
                .collect();
            async move {
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not run yet: {missing:?}"))
                }
            }
        },
    )
    .await;
    let next = b.invoke("SleepFunction", json!({"seconds": 0})).await;
    assert_eq!(next.status, 200, "{next:?}");

    // The workers that outlived the gateway were adopted and are reaped
    // when idle, like any other.
    b.no_worker_left().await;

    // The agent dies while an invocation runs on its node.
    let (status, host) = b.get("/steady").await;
    assert_eq!(status, 200);
    let steady = b.workers(Some("SteadyFunction"));
    assert_eq!(steady.len(), 1, "{steady:?}");
    assert!(
        steady.iter().next().is_some_and(|id| id.starts_with(&host)),
        "{host} {steady:?}"
    );
    let running = {
        let (client, gateway, token) = (b.client.clone(), b.gateway.clone(), b.token.clone());
        tokio::spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(30),
                invoke(
                    &client,
                    &gateway,
                    &token,
                    "SleepFunction",
                    json!({"seconds": 4}),
                    "RequestResponse",
                ),
            )
            .await
        })
    };
    let bx = &b;
    eventually(
        "the invocation running",
        Duration::from_secs(30),
        move || async move {
            let b = bx;
            let sleep = b.pool("SleepFunction").await;
            if sleep["busy"] == 1 {
                Ok(())
            } else {
                Err(sleep.to_string())
            }
        },
    )
    .await;
    b.kill_9("agent");
    let outcome = running
        .await
        .expect("request task")
        .expect("the in-flight invocation ends within 30 s")
        .expect("an HTTP answer");
    eprintln!("invocation in flight when the agent died: {outcome:?}");
    // The gateway calls the worker directly: the invocation completes, or
    // fails with the Lambda service's error shape.
    if outcome.status == 200 {
        assert_eq!(outcome.body["slept"], 4, "{outcome:?}");
    } else {
        assert!(outcome.status >= 500, "{outcome:?}");
        assert_eq!(outcome.error_type.as_deref(), Some("ServiceException"));
    }

    // The next requests succeed, served by the same (adopted) worker.
    let bx = &b;
    let expected = host.clone();
    eventually(
        "the adopted worker serves",
        Duration::from_secs(30),
        move || {
            let host = expected.clone();
            async move {
                let b = bx;
                let (status, body) = b.get("/steady").await;
                if status == 200 && body == host {
                    Ok(())
                } else {
                    Err(format!("{status} {body}"))
                }
            }
        },
    )
    .await;
    assert_eq!(b.workers(Some("SteadyFunction")), steady, "none leaked");
    b.wait_healthy("agent").await;
    assert_eq!(b.pool("SteadyFunction").await["breaker"], "closed");
    if mode == Mode::Containerd {
        containerd_dies(&b, &steady).await;
    }
    b.no_worker_left().await;
}

/// containerd itself killed on runtime-node (its supervisor starts it again
/// a second later): the running worker keeps serving (its shim outlives the
/// daemon, the gateway calls it directly), and the agent reconnects and
/// destroys and creates workers through the new daemon.
async fn containerd_dies(b: &FaultBox, steady: &BTreeSet<String>) {
    let node = b.service("runtime-node");
    let killed = docker_lines(&[
        "exec",
        &node,
        "bash",
        "-c",
        r#"for p in /proc/[0-9]*; do [[ $(cat "$p/comm" 2>/dev/null) == containerd ]] && kill -9 "${p#/proc/}" && echo "${p#/proc/}"; done; true"#,
    ]);
    assert_eq!(killed.len(), 1, "one containerd killed: {killed:?}");
    let (status, body) = b.get("/steady").await;
    assert_eq!(status, 200, "{body}");
    eventually("containerd back", Duration::from_secs(30), || {
        let up = Command::new("docker")
            .args(["exec", &node, "ctr", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
        async move {
            if up {
                Ok(())
            } else {
                Err("ctr version fails".to_owned())
            }
        }
    })
    .await;
    assert_eq!(
        b.workers(Some("SteadyFunction")),
        *steady,
        "the worker lives on"
    );
    // Reaped when idle (destroyed through the new daemon)...
    b.no_worker_left().await;
    // ...and a new worker made through it.
    let (status, host) = b.get("/steady").await;
    assert_eq!(status, 200, "{host}");
    let fresh = b.workers(Some("SteadyFunction"));
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert!(fresh.is_disjoint(steady), "{fresh:?} {steady:?}");
}
