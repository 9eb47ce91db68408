//! The gateway and a real agent, in-process, with workers that are the real
//! shim running awslambdaric as child processes (no Docker): routes, auth,
//! events, pools, scale-out and back to zero, faults and restarts, driven
//! over real HTTPS.

use std::time::Duration;

use esb_testkit::fixture;
use esb_testkit::process::ProcessBackend;
use esb_testkit::stack::{Stack, StackOptions, API_KEY};
use serde_json::{json, Value};

fn python_function(name: &str, extra: Value) -> Value {
    let mut f = json!({
        "name": name,
        "image": fixture("functions/python").to_string_lossy(),
        "runtime": "python3.11",
        "handler": "api.handler",
        "timeout_seconds": 30,
        "environment": {"GREETING": "hello from the catalog"},
    });
    if let (Some(f), Some(extra)) = (f.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            f.insert(k.clone(), v.clone());
        }
    }
    f
}

fn catalog(functions: Vec<Value>, routes: Vec<Value>) -> Value {
    json!({"version": 1, "functions": functions, "routes": routes})
}

fn route(method: &str, path: &str, function: &str, extra: Value) -> Value {
    let mut r = json!({"method": method, "path": path, "function": function, "payload": "rest_v1"});
    if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            r.insert(k.clone(), v.clone());
        }
    }
    r
}

async fn stack(catalog: Value, options: StackOptions) -> Stack<ProcessBackend> {
    Stack::start(catalog, ProcessBackend::new(), options).await
}

async fn json_body(resp: reqwest::Response) -> Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_runs_the_function_with_an_api_gateway_event() {
    let s = stack(
        catalog(
            vec![python_function("items", json!({}))],
            vec![
                route("GET", "/items/{id}", "items", json!({})),
                route("ANY", "/open/{proxy+}", "items", json!({"auth": "none"})),
            ],
        ),
        StackOptions::default(),
    )
    .await;
    let token = s.login().await;

    let resp = s
        .client
        .get(s.https_url("/items/42?x=1"))
        .bearer_auth(&token)
        .header(
            "X-Amzn-Trace-Id",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
        )
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .expect("id")
        .to_owned();
    assert_eq!(resp.headers()["x-fixture"], "yes");
    let cookies: Vec<_> = resp.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies.len(), 2);
    assert!(resp.headers()["x-amzn-trace-id"]
        .to_str()
        .expect("trace")
        .starts_with("Root=1-5759e988"));
    let body = json_body(resp).await;
    assert_eq!(body["path"], "/items/42");
    assert_eq!(body["resource"], "/items/{id}");
    assert_eq!(body["pathParameters"], json!({"id": "42"}));
    assert_eq!(
        body["requestId"],
        request_id.as_str(),
        "event requestId = x-amzn-RequestId"
    );
    assert_eq!(
        body["awsRequestId"],
        request_id.as_str(),
        "runtime request id = x-amzn-RequestId"
    );
    assert_eq!(body["greeting"], "hello from the catalog");
    assert!(body["trace"]
        .as_str()
        .expect("trace")
        .starts_with("Root=1-5759e988"));
    assert_eq!(body["claims"]["cognito:username"], esb_testkit::stack::USER);

    // Greedy path, no auth, any method, body passed through.
    let resp = s
        .client
        .post(s.http_url("/open/a/b/c"))
        .body("{\"k\": 1}")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let body = json_body(resp).await;
    assert_eq!(body["pathParameters"], json!({"proxy": "a/b/c"}));
    assert_eq!(body["body"], "{\"k\": 1}");

    // Output without statusCode passes through as JSON.
    let resp = s
        .client
        .get(s.http_url("/open/raw?raw=1"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(json_body(resp).await["raw"], true);

    // Over Lambda's 6 MB: refused by the gateway, or by the worker once a
    // binary body is base64-encoded into the event; the worker stays usable.
    for size in [7 * 1024 * 1024, 5 * 1024 * 1024] {
        let resp = s
            .client
            .post(s.http_url("/open/big"))
            .header("content-type", "application/octet-stream")
            .body(vec![0xffu8; size])
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 413, "{size} bytes");
        assert_eq!(
            resp.headers()["x-amzn-errortype"],
            "RequestEntityTooLargeException"
        );
    }
    let resp = s
        .client
        .get(s.http_url("/open/after"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_routes_and_errors_have_aws_shapes() {
    let s = stack(
        catalog(
            vec![python_function("items", json!({}))],
            vec![
                route("GET", "/items", "items", json!({})),
                route(
                    "GET",
                    "/keyed",
                    "items",
                    json!({"auth": "none", "api_key_required": true}),
                ),
            ],
        ),
        StackOptions::default(),
    )
    .await;
    let get = |path: &str| s.client.get(s.https_url(path));

    let resp = get("/items").send().await.expect("request");
    assert_eq!(resp.status(), 401, "no token");
    assert!(resp.headers().contains_key("x-amzn-requestid"));
    assert_eq!(json_body(resp).await, json!({"message": "Unauthorized"}));
    let resp = get("/items")
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .expect("request");
    assert!(
        matches!(resp.status().as_u16(), 401 | 403),
        "bad token: {}",
        resp.status()
    );

    let resp = s
        .client
        .post(s.https_url("/user/auth/v1"))
        .header("x-api-key", API_KEY)
        .json(
            &json!({"AuthParameters": {"USERNAME": esb_testkit::stack::USER, "PASSWORD": "wrong"}}),
        )
        .send()
        .await
        .expect("login");
    assert!(
        matches!(resp.status().as_u16(), 401 | 403),
        "wrong password: {}",
        resp.status()
    );
    let resp = s
        .client
        .post(s.https_url("/user/auth/v1"))
        .json(&json!({"AuthParameters": {"USERNAME": esb_testkit::stack::USER, "PASSWORD": esb_testkit::stack::PASSWORD}}))
        .send()
        .await
        .expect("login");
    assert!(
        matches!(resp.status().as_u16(), 401 | 403),
        "no api key: {}",
        resp.status()
    );

    let resp = get("/keyed").send().await.expect("request");
    assert_eq!(resp.status(), 403, "api key required");
    let resp = get("/keyed")
        .header("x-api-key", API_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);

    let resp = get("/nowhere").send().await.expect("request");
    assert_eq!(resp.status(), 404);
    let resp = s
        .client
        .delete(s.https_url("/items"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_failures_map_to_502_and_504_and_neighbours_are_unaffected() {
    let s = stack(
        catalog(
            vec![
                python_function("flaky", json!({"timeout_seconds": 1})),
                python_function("steady", json!({})),
            ],
            vec![
                route("GET", "/flaky", "flaky", json!({"auth": "none"})),
                route("GET", "/steady", "steady", json!({"auth": "none"})),
            ],
        ),
        StackOptions::default(),
    )
    .await;
    let get = |path: &str| s.client.get(s.http_url(path)).send();
    let resp = get("/flaky?fail=1").await.expect("request");
    assert_eq!(resp.status(), 502);
    assert_eq!(
        json_body(resp).await,
        json!({"message": "Internal server error"})
    );
    let resp = get("/flaky?sleep=5").await.expect("request");
    assert_eq!(resp.status(), 504);
    assert_eq!(
        json_body(resp).await,
        json!({"message": "Endpoint request timed out"})
    );
    let resp = get("/flaky?exit=1").await.expect("request");
    assert_eq!(resp.status(), 502);
    // The same worker's fresh runtime serves the next request.
    let resp = get("/flaky").await.expect("request");
    assert_eq!(resp.status(), 200);
    let resp = get("/steady").await.expect("request");
    assert_eq!(resp.status(), 200);
    // Function errors are the user's, not infrastructure: the breaker stays closed.
    let token = s.login().await;
    assert_eq!(s.pool(&token, "flaky").await["breaker"], "closed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_scale_out_to_max_workers_and_queue() {
    let s = stack(
        catalog(
            vec![python_function("busy", json!({"max_workers": 3}))],
            vec![route("GET", "/busy", "busy", json!({"auth": "none"}))],
        ),
        StackOptions {
            acquire_timeout_seconds: 60,
            ..StackOptions::default()
        },
    )
    .await;
    let mut calls = Vec::new();
    for _ in 0..6 {
        let client = s.client.clone();
        let url = s.http_url("/busy?sleep=1.5");
        calls.push(tokio::spawn(async move { client.get(url).send().await }));
    }
    let token = s.login().await;
    let mut peak = 0;
    for call in calls {
        let resp = call.await.expect("join").expect("request");
        assert_eq!(
            resp.status(),
            200,
            "no request fails while queue time allows"
        );
        let total = s.pool(&token, "busy").await["total"].as_u64().unwrap_or(0);
        peak = peak.max(total);
    }
    assert_eq!(
        peak, 3,
        "6 concurrent requests scale to min(6, max 3) workers"
    );
    assert_eq!(s.backend.running(), 3);
    let metrics = s
        .client
        .get(s.http_url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("esb_invocations_total{function=\"busy\",outcome=\"success\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("esb_cold_starts_total{function=\"busy\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("esb_queue_wait_seconds_count{function=\"busy\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("esb_workers{function=\"busy\",state=\"idle\"}"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_free_worker_within_the_acquire_timeout_is_429() {
    let s = stack(
        catalog(
            vec![python_function("single", json!({"max_workers": 1}))],
            vec![route("GET", "/single", "single", json!({"auth": "none"}))],
        ),
        StackOptions {
            acquire_timeout_seconds: 1,
            ..StackOptions::default()
        },
    )
    .await;
    let slow = {
        let client = s.client.clone();
        let url = s.http_url("/single?sleep=4");
        tokio::spawn(async move { client.get(url).send().await })
    };
    let token = s.login().await;
    s.eventually(
        Duration::from_secs(20),
        "the slow request to hold the worker",
        || async { s.pool(&token, "single").await["busy"] == 1 },
    )
    .await;
    let resp = s
        .client
        .get(s.http_url("/single"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()["x-amzn-errortype"],
        "TooManyRequestsException"
    );
    assert_eq!(slow.await.expect("join").expect("request").status(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_scale_to_zero_and_the_minimum_stays_warm() {
    let s = stack(
        catalog(
            vec![
                python_function("cold", json!({})),
                python_function("warm", json!({"min_workers": 1})),
            ],
            vec![route("GET", "/cold", "cold", json!({"auth": "none"}))],
        ),
        StackOptions {
            idle_timeout_seconds: 1,
            ..StackOptions::default()
        },
    )
    .await;
    let token = s.login().await;
    // Provisioned concurrency: started without any request, and kept.
    s.eventually(Duration::from_secs(30), "the warm minimum", || async {
        s.pool(&token, "warm").await["idle"] == 1
    })
    .await;
    assert_eq!(
        s.client
            .get(s.http_url("/cold"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
    assert_eq!(s.pool(&token, "cold").await["total"], 1);
    s.eventually(Duration::from_secs(20), "scale to zero", || async {
        s.pool(&token, "cold").await["total"] == 0
    })
    .await;
    assert_eq!(
        s.pool(&token, "warm").await["total"],
        1,
        "the minimum is not reaped"
    );
    assert_eq!(s.backend.running(), 1);
    // And back from zero.
    assert_eq!(
        s.client
            .get(s.http_url("/cold"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_start_opens_the_breaker_which_recovers() {
    let missing = std::env::temp_dir().join("esb-no-such-task-root");
    let s = stack(
        catalog(
            vec![python_function(
                "broken",
                json!({"image": missing.to_string_lossy()}),
            )],
            vec![route("GET", "/broken", "broken", json!({"auth": "none"}))],
        ),
        StackOptions {
            breaker_threshold: 2,
            breaker_cooldown_seconds: 2,
            ..StackOptions::default()
        },
    )
    .await;
    let token = s.login().await;
    for _ in 0..2 {
        let resp = s
            .client
            .get(s.http_url("/broken"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 503, "worker failed to start");
    }
    assert_eq!(s.pool(&token, "broken").await["breaker"], "open");
    let resp = s
        .client
        .get(s.http_url("/broken"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 503);
    // The image appears (a fixed build); after the cooldown one trial goes
    // through and closes the breaker.
    std::os::unix::fs::symlink(fixture("functions/python"), &missing).expect("link task root");
    s.eventually(
        Duration::from_secs(20),
        "the breaker to recover",
        || async {
            s.client
                .get(s.http_url("/broken"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    assert_eq!(s.pool(&token, "broken").await["breaker"], "closed");
    let _ = std::fs::remove_file(&missing);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_gateway_adopts_the_workers_and_a_lost_worker_is_replaced() {
    let mut s = stack(
        catalog(
            vec![python_function("sticky", json!({}))],
            vec![route("GET", "/sticky", "sticky", json!({"auth": "none"}))],
        ),
        StackOptions::default(),
    )
    .await;
    let first = json_body(
        s.client
            .get(s.http_url("/sticky"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    s.restart_gateway().await;
    let token = s.login().await;
    s.eventually(
        Duration::from_secs(20),
        "the worker to be adopted",
        || async { s.pool(&token, "sticky").await["idle"] == 1 },
    )
    .await;
    let second = json_body(
        s.client
            .get(s.http_url("/sticky"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(
        first["pid"], second["pid"],
        "the adopted worker served, no cold start"
    );
    assert_eq!(s.backend.running(), 1, "no worker leaked");

    // An agent restart: the worker is adopted again.
    s.restart_agent().await;
    let third = json_body(
        s.client
            .get(s.http_url("/sticky"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(third["pid"], first["pid"]);

    // A worker that dies is forgotten; the next request gets a fresh one.
    let workers = s.admin(&token, "workers").await;
    let id = workers["workers"][0]["id"]
        .as_str()
        .expect("worker id")
        .to_owned();
    s.backend.kill(&id).await;
    s.eventually(
        Duration::from_secs(20),
        "the dead worker to be forgotten",
        || async { s.pool(&token, "sticky").await["total"] == 0 },
    )
    .await;
    let fourth = json_body(
        s.client
            .get(s.http_url("/sticky"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_ne!(fourth["pid"], first["pid"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_reloads_without_a_restart() {
    let s = stack(
        catalog(
            vec![python_function("one", json!({}))],
            vec![route("GET", "/one", "one", json!({"auth": "none"}))],
        ),
        StackOptions::default(),
    )
    .await;
    assert_eq!(
        s.client
            .get(s.http_url("/two"))
            .send()
            .await
            .expect("request")
            .status(),
        404
    );
    s.write_catalog(&catalog(
        vec![
            python_function("one", json!({})),
            python_function("two", json!({})),
        ],
        vec![
            route("GET", "/one", "one", json!({"auth": "none"})),
            route("GET", "/two", "two", json!({"auth": "none"})),
        ],
    ));
    s.eventually(Duration::from_secs(20), "the new route", || async {
        s.client
            .get(s.http_url("/two"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    // A broken catalog is refused and the running one kept.
    std::fs::write(&s.catalog, "{ not json").expect("write");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        s.client
            .get(s.http_url("/two"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_a_token_and_lists_the_box() {
    let s = stack(
        catalog(
            vec![python_function("one", json!({}))],
            vec![route("GET", "/one", "one", json!({"auth": "none"}))],
        ),
        StackOptions::default(),
    )
    .await;
    let resp = s
        .client
        .get(s.https_url("/admin/v1/nodes"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    let token = s.login().await;
    let nodes = s.admin(&token, "nodes").await;
    assert_eq!(nodes["nodes"][0]["id"], "node-1");
    assert_eq!(nodes["nodes"][0]["runtime"], "RUNTIME_KIND_PROCESS");
    let functions = s.admin(&token, "functions").await;
    assert_eq!(functions["functions"][0]["name"], "one");
    let routes = s.admin(&token, "routes").await;
    assert_eq!(routes["routes"][0]["path"], "/one");
    let health = json_body(
        s.client
            .get(s.https_url("/health"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(health["status"], "ok");
    s.stop().await;
}
