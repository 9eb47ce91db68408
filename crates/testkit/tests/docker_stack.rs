//! The gateway and a real agent with the Docker backend: routes served by
//! real worker containers that scale out and back to zero, on the real
//! engine. Needs the Docker daemon and the base images (`./dev test`).

use std::sync::Arc;
use std::time::Duration;

use esb_agent::backend::docker::{DockerBackend, DockerConfig};
use esb_testkit::docker::{build_image, docker, Cleanup};
use esb_testkit::fixture;
use esb_testkit::stack::{Stack, StackOptions};
use serde_json::json;

fn containers(stack: &str) -> usize {
    docker(&["ps", "-aq", "--filter", &format!("label=esb.stack={stack}")])
        .lines()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_run_on_docker_workers_that_scale_out_and_back_to_zero() {
    let mut cleanup = Cleanup::default();
    let label = format!("esb-test-stack-{}", std::process::id());
    cleanup.stacks.push(label.clone());
    let api = fixture("functions/python/api.py");
    let image = build_image(
        &mut cleanup,
        "stack-fn",
        "FROM esb-lambda-python:3.11\nCOPY api.py /var/task/\nCMD [\"api.handler\"]\n",
        &[(&api, "api.py")],
    );
    let backend = DockerBackend::connect(DockerConfig::new(label.clone(), label.clone()))
        .await
        .expect("docker backend");
    let s = Stack::start(
        json!({
            "version": 1,
            "functions": [{"name": "web", "image": image, "memory_mb": 256, "timeout_seconds": 10,
                           "max_workers": 2, "environment": {"GREETING": "from docker"}}],
            "routes": [{"method": "GET", "path": "/web", "function": "web", "payload": "rest_v1", "auth": "none"}]
        }),
        Arc::new(backend),
        StackOptions {
            idle_timeout_seconds: 2,
            acquire_timeout_seconds: 60,
            ..StackOptions::default()
        },
    )
    .await;
    let token = s.login().await;

    // Two concurrent requests: two containers.
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let client = s.client.clone();
            let url = s.https_url("/web?sleep=1");
            tokio::spawn(async move { client.get(url).send().await })
        })
        .collect();
    let mut pids = Vec::new();
    for call in calls {
        let resp = call.await.expect("join").expect("request");
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value =
            serde_json::from_str(&resp.text().await.expect("body")).expect("json");
        assert_eq!(body["greeting"], "from docker");
        pids.push(body["pid"].clone());
    }
    assert_eq!(s.pool(&token, "web").await["total"], 2);
    assert_eq!(containers(&label), 2, "one container per worker");

    // Scale to zero: the containers go.
    s.eventually(Duration::from_secs(60), "scale to zero", || async {
        s.pool(&token, "web").await["total"] == 0 && containers(&label) == 0
    })
    .await;

    // And back from zero.
    let resp = s
        .client
        .get(s.https_url("/web"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(containers(&label), 1);
    let backend = Arc::clone(&s.backend);
    s.stop().await;
    backend.close().await;
    // Stopping the box's processes leaves the worker for the next agent to
    // adopt; the test's cleanup removes it.
    assert_eq!(containers(&label), 1);
    drop(cleanup);
}
