//! Schedules run by the gateway: a schedule due now runs once, through the
//! asynchronous-invocation queue, with EventBridge's scheduled-event
//! envelope or with its `input`; a gateway restart does not run a claimed
//! run again. (Clock-driven behaviour — rates, crons, missed runs, reloads —
//! is covered with paused time in the scheduler's unit tests.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use esb_testkit::process::ProcessBackend;
use esb_testkit::stack::{Stack, StackOptions};
use serde_json::{json, Value};

/// A task root whose handler appends each event it gets, as one JSON line,
/// to the file `OUT` names.
fn task_root(dir: &Path) -> PathBuf {
    let root = dir.join("task");
    std::fs::create_dir_all(&root).expect("task root");
    std::fs::write(
        root.join("app.py"),
        "import json, os\n\
         def handler(event, context):\n\
         \x20   with open(os.environ['OUT'], 'a') as f:\n\
         \x20       f.write(json.dumps(event) + '\\n')\n\
         \x20   return {'ok': True}\n",
    )
    .expect("handler");
    root
}

fn catalog(root: &Path, out: &Path, schedules: Value) -> Value {
    json!({
        "version": 1,
        "functions": [{
            "name": "ticker",
            "image": root.to_string_lossy(),
            "runtime": "python3.11",
            "handler": "app.handler",
            "timeout_seconds": 30,
            "max_workers": 2,
            "environment": {"OUT": out.to_string_lossy()},
        }],
        "routes": [],
        "schedules": schedules,
    })
}

fn events(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event per line"))
        .collect()
}

/// The asynchronous invocations the gateway recorded, once all settled.
async fn settled_invocations(s: &Stack<ProcessBackend>, token: &str, count: usize) -> Vec<Value> {
    s.eventually(
        Duration::from_secs(60),
        &format!("{count} invocations to succeed"),
        || async {
            let listed = s.admin(token, "invocations").await;
            let all = listed["invocations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            all.len() == count && all.iter().all(|i| i["status"] == "succeeded")
        },
    )
    .await;
    s.admin(token, "invocations").await["invocations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_schedule_runs_once_with_the_envelope_or_its_input_and_not_again_after_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "esb-schedule-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let root = task_root(&dir);
    let out = dir.join("events.jsonl");
    // A rate runs as soon as the schedule appears, then a day later.
    let first = json!([
        {"name": "ticker-Daily", "function": "ticker", "expression": "rate(1 day)"},
        {"name": "ticker-WithInput", "function": "ticker", "expression": "rate(1 day)",
         "input": "{\"job\": \"report\", \"n\": 1}"},
        {"name": "ticker-Off", "function": "ticker", "expression": "rate(1 day)", "enabled": false},
    ]);
    let mut s = Stack::start(
        catalog(&root, &out, first.clone()),
        ProcessBackend::new(),
        StackOptions::default(),
    )
    .await;
    let token = s.login().await;
    let before = chrono::Utc::now();

    s.eventually(Duration::from_secs(60), "two scheduled events", || async {
        events(&out).len() >= 2
    })
    .await;
    let invocations = settled_invocations(&s, &token, 2).await;
    assert!(invocations.iter().all(|i| i["function"] == "ticker"));
    let got = events(&out);
    assert_eq!(got.len(), 2, "{got:?}");
    let envelope = got
        .iter()
        .find(|e| e["source"] == "aws.events")
        .unwrap_or_else(|| panic!("no envelope in {got:?}"));
    assert_eq!(envelope["version"], "0");
    assert_eq!(envelope["detail-type"], "Scheduled Event");
    assert_eq!(envelope["account"], "000000000000");
    assert_eq!(envelope["region"], "us-east-1");
    assert_eq!(
        envelope["resources"],
        json!(["arn:aws:events:us-east-1:000000000000:rule/ticker-Daily"])
    );
    assert_eq!(envelope["detail"], json!({}));
    assert!(uuid::Uuid::parse_str(envelope["id"].as_str().expect("id")).is_ok());
    let time = chrono::DateTime::parse_from_rfc3339(envelope["time"].as_str().expect("time"))
        .expect("RFC 3339 time");
    let skew = (time.with_timezone(&chrono::Utc) - before)
        .num_seconds()
        .abs();
    assert!(skew < 60, "the run's time is now: {time} vs {before}");
    assert!(
        got.contains(&json!({"job": "report", "n": 1})),
        "the input is the event as is: {got:?}"
    );

    // Restarted with one more schedule (listed last): once it has run, the
    // scheduler has looked at the others, whose runs were claimed already.
    s.stop_gateway().await;
    let mut second = first.as_array().cloned().expect("array");
    second.push(
        json!({"name": "ticker-Late", "function": "ticker", "expression": "rate(1 day)",
                       "input": "{\"late\": true}"}),
    );
    s.write_catalog(&catalog(&root, &out, Value::Array(second)));
    s.restart_gateway().await;
    s.eventually(
        Duration::from_secs(60),
        "the new schedule's run",
        || async { events(&out).iter().any(|e| e["late"] == true) },
    )
    .await;
    settled_invocations(&s, &token, 3).await;
    let got = events(&out);
    assert_eq!(got.len(), 3, "nothing ran twice: {got:?}");

    s.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
