//! The Runtime API's request handling (`esb_runtime::runtime_api`): arbitrary
//! requests to the router of a sandbox with no invocation in flight, and the
//! error payload built from what a runtime posts to `/error` and
//! `/init/error` (`esb_runtime::invocation::runtime_error_payload`).
//!
//! Input: a request as text (`METHOD TARGET`, headers, body; the seed
//! corpus), or structured input.
//!
//! Properties: no panic; every answer has a status the API uses, and the
//! handlers' refusals are JSON with an `errorType` AWS uses; the error
//! payload is always a JSON object: the posted body when it is one, else
//! one with the `Lambda-Runtime-Function-Error-Type` (or `Runtime.Unknown`)
//! and the posted text.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use axum::body::Body;
use axum::Router;
use esb_fuzz::{parse_http_text, request_parts};
use esb_runtime::config::{FunctionSpec, LaunchError};
use esb_runtime::invocation::runtime_error_payload;
use esb_runtime::logs::LogCapture;
use esb_runtime::runtime_api;
use esb_runtime::sandbox::Sandbox;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";

#[derive(Debug, Arbitrary)]
enum Endpoint {
    Response(String),
    Error(String),
    InitError,
    Raw(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    post: bool,
    endpoint: Endpoint,
    error_type: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

struct World {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let shutdown = CancellationToken::new();
        let spec = FunctionSpec {
            name: "fuzz".to_owned(),
            version: "$LATEST".to_owned(),
            memory_mb: 128,
            timeout: Duration::from_secs(3),
            init_timeout: Duration::from_secs(10),
            region: "us-east-1".to_owned(),
            account_id: "000000000000".to_owned(),
            task_root: "/var/task".into(),
            environment: Vec::new(),
            launch: Err(LaunchError::NoRuntime),
        };
        let router = runtime.block_on(async {
            let (logs, _) =
                LogCapture::new("fuzz".to_owned(), None, shutdown.clone()).expect("log pipes");
            let sandbox = Sandbox::new(
                Arc::new(spec),
                SocketAddr::from((Ipv4Addr::LOCALHOST, 9001)),
                logs,
                shutdown,
            );
            runtime_api::router(sandbox)
        });
        World { runtime, router }
    })
}

/// Only what a header value may hold.
fn header_text(value: &str) -> String {
    value
        .chars()
        .filter(|c| *c == ' ' || *c == '\t' || c.is_ascii_graphic())
        .collect()
}

fn check_error_payload(body: &[u8], error_type: Option<&str>) {
    let payload = runtime_error_payload(body, error_type);
    let value: Value = serde_json::from_slice(&payload).expect("the payload is JSON");
    let object = value.as_object().expect("the payload is an object");
    if matches!(serde_json::from_slice::<Value>(body), Ok(Value::Object(_))) {
        assert_eq!(&payload[..], body, "a JSON object is passed through");
        return;
    }
    let expected_type = error_type
        .filter(|t| !t.is_empty())
        .unwrap_or("Runtime.Unknown");
    assert_eq!(object["errorType"], expected_type);
    let text = String::from_utf8_lossy(body);
    let message = object["errorMessage"].as_str().expect("errorMessage");
    if text.trim().is_empty() {
        assert!(!message.is_empty());
    } else {
        assert_eq!(message, text.trim());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(text) = parse_http_text(data) {
        let error_type = text
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("lambda-runtime-function-error-type"))
            .map(|(_, value)| *value);
        check_error_payload(text.body, error_type);
        let Some(parts) = request_parts(&text) else {
            return;
        };
        send(http::Request::from_parts(
            parts,
            Body::from(text.body.to_vec()),
        ));
        return;
    }
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let error_type = input.error_type.as_deref().map(header_text);
    check_error_payload(&input.body, error_type.as_deref());

    let path = match &input.endpoint {
        Endpoint::Response(id) => format!(
            "/2018-06-01/runtime/invocation/{}/response",
            esb_fuzz::percent_encode(id)
        ),
        Endpoint::Error(id) => format!(
            "/2018-06-01/runtime/invocation/{}/error",
            esb_fuzz::percent_encode(id)
        ),
        Endpoint::InitError => "/2018-06-01/runtime/init/error".to_owned(),
        Endpoint::Raw(raw) => raw.clone(),
    };
    let method = if input.post { "POST" } else { "GET" };
    let mut builder = http::Request::builder().method(method).uri(&path);
    if let Some(error_type) = &error_type {
        builder = builder.header("lambda-runtime-function-error-type", error_type);
    }
    for (name, value) in input.headers.iter().take(8) {
        builder = builder.header(name.as_str(), header_text(value));
    }
    if let Ok(request) = builder.body(Body::from(input.body)) {
        send(request);
    }
});

/// Sends one request to the Runtime API and checks the answer.
fn send(request: http::Request<Body>) {
    if request.method() == http::Method::GET && request.uri().path() == NEXT {
        // `next` waits for an invocation that never comes.
        return;
    }
    let (method, path) = (request.method().clone(), request.uri().clone());
    let world = world();
    let response = world.runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            world.router.clone().oneshot(request),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} {path} did not answer"))
        .expect("infallible")
    });
    let status = response.status().as_u16();
    assert!(
        matches!(status, 202 | 400 | 403 | 404 | 405 | 413),
        "{method} {path}: status {status}"
    );
    let json = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if json {
        let body = world.runtime.block_on(async {
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body")
        });
        let value: Value = serde_json::from_slice(&body).expect("a JSON answer");
        if status != 202 {
            let error_type = value["errorType"].as_str().expect("errorType");
            assert!(
                matches!(
                    error_type,
                    "InvalidRequestID" | "InvalidStateTransition" | "RequestEntityTooLarge"
                ),
                "{error_type}"
            );
        }
    }
}
