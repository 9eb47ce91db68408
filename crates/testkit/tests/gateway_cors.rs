//! CORS from the template, HTTP API (payload 2.0) cookies and response
//! formats, and API Gateway's request size quotas, through the real gateway
//! and agent with awslambdaric functions (no Docker).

use esb_testkit::fixture;
use esb_testkit::process::ProcessBackend;
use esb_testkit::stack::{Stack, StackOptions};
use serde_json::{json, Value};

const APP: &str = "https://app.example";

fn python_function(name: &str, handler: &str) -> Value {
    json!({
        "name": name,
        "image": fixture("functions/python").to_string_lossy(),
        "runtime": "python3.11",
        "handler": handler,
        "timeout_seconds": 30,
    })
}

fn http_cors() -> Value {
    json!({
        "api": "http",
        "allow_origins": [APP],
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["authorization", "content-type"],
        "expose_headers": ["x-fn"],
        "max_age": 300,
        "allow_credentials": true,
    })
}

async fn stack() -> Stack<ProcessBackend> {
    let catalog = json!({
        "version": 1,
        "functions": [
            python_function("simple", "api.simple"),
            python_function("full", "api.cookies"),
            python_function("rest", "api.handler"),
        ],
        "routes": [
            {"method": "GET", "path": "/v2/simple", "function": "simple",
             "payload": "http_v2", "auth": "none", "cors": http_cors()},
            {"method": "ANY", "path": "/v2/full/{proxy+}", "function": "full",
             "payload": "http_v2", "cors": http_cors()},
            {"method": "GET", "path": "/rest/items", "function": "rest",
             "payload": "rest_v1",
             "cors": {"api": "rest", "allow_origins": ["*"],
                      "allow_headers": ["Content-Type", "Authorization"], "max_age": 600}},
        ],
    });
    Stack::start(catalog, ProcessBackend::new(), StackOptions::default()).await
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("text").to_owned())
}

async fn json_body(resp: reqwest::Response) -> Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_are_answered_by_the_gateway_without_a_worker_or_auth() {
    let s = stack().await;
    let token = s.login().await;
    let options = |path: &str| {
        s.client
            .request(reqwest::Method::OPTIONS, s.https_url(path))
    };

    // HTTP API: 204 with the configured headers, no Authorization needed
    // although the route itself requires a token.
    let resp = options("/v2/full/a/b")
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("preflight");
    assert_eq!(resp.status(), 204);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert_eq!(
        header(&resp, "access-control-allow-methods").as_deref(),
        Some("GET,POST")
    );
    assert_eq!(
        header(&resp, "access-control-allow-headers").as_deref(),
        Some("authorization,content-type")
    );
    assert_eq!(
        header(&resp, "access-control-max-age").as_deref(),
        Some("300")
    );
    assert_eq!(
        header(&resp, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert!(header(&resp, "x-amzn-requestid").is_some());

    // An origin that is not allowed gets no CORS headers.
    let resp = options("/v2/simple")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("preflight");
    assert_eq!(resp.status(), 204);
    assert!(header(&resp, "access-control-allow-origin").is_none());

    // An OPTIONS that is not a preflight goes to routing: GET-only route.
    let resp = options("/v2/simple").send().await.expect("options");
    assert_eq!(resp.status(), 405);

    // REST API: SAM's MOCK OPTIONS method, whatever the origin.
    let resp = options("/rest/items").send().await.expect("preflight");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(
        header(&resp, "access-control-allow-methods").as_deref(),
        Some("GET,OPTIONS")
    );
    assert_eq!(
        header(&resp, "access-control-allow-headers").as_deref(),
        Some("Content-Type,Authorization")
    );
    assert_eq!(
        header(&resp, "access-control-max-age").as_deref(),
        Some("600")
    );
    assert!(header(&resp, "access-control-allow-credentials").is_none());

    // No function ran: no pool has a worker.
    let workers = s.admin(&token, "workers").await;
    assert_eq!(workers["workers"], json!([]), "{workers}");
    for function in ["simple", "full", "rest"] {
        let total = s.pool(&token, function).await["total"]
            .as_u64()
            .unwrap_or(0);
        assert_eq!(total, 0, "{function} started a worker");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_responses_get_cors_headers_and_cookies_go_both_ways() {
    let s = stack().await;
    let token = s.login().await;

    let resp = s
        .client
        .get(s.https_url("/v2/full/a"))
        .bearer_auth(&token)
        .header("origin", APP)
        .header("cookie", "a=1; b=2")
        .header("cookie", "c=3")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 201);
    let set_cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("text").to_owned())
        .collect();
    assert_eq!(set_cookies, ["session=abc; Path=/; HttpOnly", "theme=dark"]);
    // The function's own Access-Control-Allow-Origin is replaced.
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert_eq!(
        header(&resp, "access-control-expose-headers").as_deref(),
        Some("x-fn")
    );
    assert_eq!(
        header(&resp, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(header(&resp, "x-fn").as_deref(), Some("yes"));
    let body = json_body(resp).await;
    assert_eq!(body["cookies"], json!(["a=1", "b=2", "c=3"]));
    assert_eq!(
        body["cookieHeader"],
        Value::Null,
        "cookies are not headers in 2.0"
    );
    assert_eq!(body["routeKey"], "ANY /v2/full/{proxy+}");
    assert_eq!(body["claims"]["cognito:username"], esb_testkit::stack::USER);

    // Without an Origin the function's CORS header is still dropped and
    // none is added.
    let resp = s
        .client
        .get(s.https_url("/v2/full/a"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 201);
    assert!(header(&resp, "access-control-allow-origin").is_none());

    // REST proxy integrations add nothing to actual responses.
    let resp = s
        .client
        .get(s.https_url("/rest/items"))
        .bearer_auth(&token)
        .header("origin", APP)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "access-control-allow-origin").is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_simple_response_format() {
    let s = stack().await;

    let resp = s
        .client
        .get(s.https_url("/v2/simple?x=1&x=2&y=%20z"))
        .header("cookie", "k=v")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/json")
    );
    let body = json_body(resp).await;
    assert_eq!(body["version"], "2.0");
    assert_eq!(body["routeKey"], "GET /v2/simple");
    assert_eq!(body["rawPath"], "/v2/simple");
    assert_eq!(body["rawQueryString"], "x=1&x=2&y=%20z");
    assert_eq!(
        body["queryStringParameters"],
        json!({"x": "1,2", "y": " z"})
    );
    assert_eq!(body["cookies"], json!(["k=v"]));

    // A string is the body as it is.
    let resp = s
        .client
        .get(s.https_url("/v2/simple?text=1"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(resp.text().await.expect("body"), "Hello from Lambda!");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_api_gateway_quotas_are_refused() {
    let s = stack().await;

    let resp = s
        .client
        .get(s.https_url("/v2/simple"))
        .header("x-big", "v".repeat(10_240))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 431);
    assert_eq!(
        json_body(resp).await,
        json!({"message": "Request Header Fields Too Large"})
    );

    let resp = s
        .client
        .get(s.https_url(&format!("/v2/simple?q={}", "a".repeat(10_240))))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 414);
    assert_eq!(
        json_body(resp).await,
        json!({"message": "Request URI too long"})
    );
    s.stop().await;
}
