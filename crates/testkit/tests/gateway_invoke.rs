//! The Lambda Invoke API of the gateway driven by real clients: boto3 (with
//! SigV4 and the box's key pair, the endpoint from `AWS_ENDPOINT_URL_LAMBDA`)
//! over HTTPS and HTTP, and reqwest with a Bearer IdToken, against an
//! in-process gateway and agent whose workers are the real shim running
//! awslambdaric.

use std::time::Duration;

use esb_testkit::boto3::Boto3;
use esb_testkit::fixture;
use esb_testkit::process::ProcessBackend;
use esb_testkit::stack::{Stack, StackOptions, ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use serde_json::{json, Value};

fn function(name: &str, extra: Value) -> Value {
    let mut f = json!({
        "name": name,
        "image": fixture("functions/python").to_string_lossy(),
        "runtime": "python3.11",
        "handler": "app.handler",
        "timeout_seconds": 30,
    });
    if let (Some(f), Some(extra)) = (f.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            f.insert(k.clone(), v.clone());
        }
    }
    f
}

async fn stack(functions: Vec<Value>, options: StackOptions) -> Stack<ProcessBackend> {
    let catalog = json!({"version": 1, "functions": functions, "routes": []});
    Stack::start(catalog, ProcessBackend::new(), options).await
}

/// boto3 with the Lambda endpoint at `endpoint`, trusting `ca_bundle`.
async fn boto3(endpoint: &str, ca_bundle: Option<&std::path::Path>, script: &str) -> Value {
    let boto3 =
        Boto3::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, "us-east-1").endpoint("LAMBDA", endpoint);
    match ca_bundle {
        Some(ca) => boto3.ca_bundle(ca),
        None => boto3,
    }
    .run(script)
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_invokes_functions_with_sigv4_over_https() {
    let s = stack(vec![function("echo", json!({}))], StackOptions::default()).await;
    let endpoint = format!("https://localhost:{}", s.https.port());
    let out = boto3(
        &endpoint,
        Some(&s.ca_path()),
        r#"
r = lam.invoke(FunctionName="echo", Payload=json.dumps({"action": "echo", "k": "v"}))
out["rr"] = {"status": r["StatusCode"], "version": r.get("ExecutedVersion"),
             "error": r.get("FunctionError"), "payload": payload(r),
             "request_id": r["ResponseMetadata"]["RequestId"]}

r = lam.invoke(FunctionName="echo", LogType="Tail",
               Payload=json.dumps({"action": "print", "lines": ["hello from the tail"]}))
out["tail"] = {"status": r["StatusCode"], "payload": payload(r),
               "log": base64.b64decode(r["LogResult"]).decode()}

r = lam.invoke(FunctionName="echo", InvocationType="DryRun")
out["dry_run"] = {"status": r["StatusCode"], "payload": r["Payload"].read().decode()}

r = lam.invoke(FunctionName="echo", Payload=json.dumps({"action": "raise", "message": "boom"}))
out["unhandled"] = {"status": r["StatusCode"], "error": r.get("FunctionError"), "payload": payload(r)}

r = lam.invoke(FunctionName="arn:aws:lambda:us-east-1:000000000000:function:echo",
               Qualifier="$LATEST", Payload=json.dumps({"action": "echo"}))
out["full_arn"] = payload(r)["function_arn"]
r = lam.invoke(FunctionName="000000000000:function:echo", Payload=json.dumps({"action": "echo"}))
out["partial_arn"] = payload(r)["function_arn"]
r = lam.invoke(FunctionName="echo:$LATEST", Payload=b"")
out["empty_payload"] = payload(r)["event"]

context = base64.b64encode(json.dumps({"custom": {"who": "boto3"}}).encode()).decode()
r = lam.invoke(FunctionName="echo", ClientContext=context, Payload=json.dumps({"action": "echo"}))
out["client_context"] = payload(r)["client_context_custom"]

out["missing"] = client_error(lam.invoke, FunctionName="ghost")
out["other_version"] = client_error(lam.invoke, FunctionName="echo", Qualifier="prod")
r = lam.invoke(FunctionName="echo", InvocationType="Event", Payload=json.dumps({"action": "echo"}))
out["event"] = {"status": r["StatusCode"], "payload": r["Payload"].read().decode()}
out["not_json"] = client_error(lam.invoke, FunctionName="echo", Payload=b"{not json")
out["too_large"] = client_error(lam.invoke, FunctionName="echo",
                                Payload=json.dumps({"blob": "x" * (6 * 1024 * 1024)}))

wrong_secret = boto3.client("lambda", aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key="not-the-box-secret-0123456789", config=CONFIG)
out["wrong_secret"] = client_error(wrong_secret.invoke, FunctionName="echo")
unknown_key = boto3.client("lambda", aws_access_key_id="AKIDNOTTHEBOXKEY0000",
                           aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"], config=CONFIG)
out["unknown_key"] = client_error(unknown_key.invoke, FunctionName="echo")
other_region = boto3.client("lambda", region_name="eu-west-1", config=CONFIG)
out["other_region"] = client_error(other_region.invoke, FunctionName="echo")
"#,
    )
    .await;

    let rr = &out["rr"];
    assert_eq!(rr["status"], 200);
    assert_eq!(rr["version"], "$LATEST");
    assert_eq!(rr["error"], Value::Null);
    assert_eq!(rr["payload"]["event"], json!({"action": "echo", "k": "v"}));
    assert_eq!(
        rr["payload"]["request_id"], rr["request_id"],
        "the runtime's request id is the response's x-amzn-RequestId"
    );
    assert_eq!(
        rr["payload"]["function_arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:echo"
    );

    assert_eq!(out["tail"]["status"], 200);
    assert_eq!(out["tail"]["payload"], "printed");
    let log = out["tail"]["log"].as_str().expect("log");
    assert!(log.contains("hello from the tail"), "{log}");

    assert_eq!(out["dry_run"], json!({"status": 204, "payload": ""}));

    let unhandled = &out["unhandled"];
    assert_eq!(unhandled["status"], 200, "a function error is still a 200");
    assert_eq!(unhandled["error"], "Unhandled");
    assert_eq!(unhandled["payload"]["errorType"], "ValueError");
    assert_eq!(unhandled["payload"]["errorMessage"], "boom");

    assert_eq!(
        out["full_arn"], "arn:aws:lambda:us-east-1:000000000000:function:echo:$LATEST",
        "the context's ARN is the one invoked, with its qualifier"
    );
    assert_eq!(
        out["partial_arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:echo"
    );
    assert_eq!(out["empty_payload"], json!({}));
    assert_eq!(out["client_context"], json!({"who": "boto3"}));

    let missing = &out["missing"];
    assert_eq!(missing["class"], "ResourceNotFoundException");
    assert_eq!(missing["status"], 404);
    assert_eq!(
        missing["message"],
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:ghost"
    );
    assert_eq!(out["other_version"]["class"], "ResourceNotFoundException");
    assert_eq!(
        out["other_version"]["message"],
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:echo:prod"
    );
    assert_eq!(
        out["event"],
        json!({"status": 202, "payload": ""}),
        "accepted for asynchronous invocation (tests/gateway_async.rs)"
    );
    assert_eq!(out["not_json"]["class"], "InvalidRequestContentException");
    assert_eq!(out["too_large"]["code"], "RequestEntityTooLargeException");
    assert_eq!(out["too_large"]["status"], 413);
    assert_eq!(
        out["too_large"]["message"],
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
    );

    assert_eq!(out["wrong_secret"]["code"], "InvalidSignatureException");
    assert_eq!(out["wrong_secret"]["status"], 403);
    assert!(out["wrong_secret"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("The request signature we calculated does not match")));
    assert_eq!(out["unknown_key"]["code"], "UnrecognizedClientException");
    assert_eq!(out["unknown_key"]["status"], 403);
    assert_eq!(out["other_region"]["code"], "InvalidSignatureException");

    // One worker served everything: the errors above never reached it.
    assert_eq!(s.backend.running(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_invokes_over_plain_http_with_the_endpoint_from_the_environment() {
    let s = stack(vec![function("echo", json!({}))], StackOptions::default()).await;
    let out = boto3(
        &format!("http://127.0.0.1:{}", s.http.port()),
        None,
        r#"
r = lam.invoke(FunctionName="echo", Payload=json.dumps({"action": "echo", "via": "http"}))
out["status"] = r["StatusCode"]
out["event"] = payload(r)["event"]
"#,
    )
    .await;
    assert_eq!(
        out,
        json!({"status": 200, "event": {"action": "echo", "via": "http"}})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_invokes_and_a_busy_function_throttles_with_429() {
    let s = stack(
        vec![function("single", json!({"max_workers": 1}))],
        StackOptions {
            acquire_timeout_seconds: 1,
            ..StackOptions::default()
        },
    )
    .await;
    let token = s.login().await;
    let url = s.https_url("/2015-03-31/functions/single/invocations");

    let resp = s
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"action": "echo", "via": "bearer"}))
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-amz-executed-version"], "$LATEST");
    assert!(resp.headers().contains_key("x-amzn-requestid"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["event"]["via"], "bearer");

    // Unsigned, and with a token that is not one of ours.
    let resp = s.client.post(&url).send().await.expect("invoke");
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.headers()["x-amzn-errortype"],
        "MissingAuthenticationTokenException"
    );
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"message": "Missing Authentication Token"})
    );
    let resp = s
        .client
        .post(&url)
        .bearer_auth("a.b.c")
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 401);

    // The only worker is busy for longer than a request may queue.
    let slow = {
        let client = s.client.clone();
        let url = url.clone();
        let token = token.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"action": "sleep", "seconds": 4}))
                .send()
                .await
        })
    };
    s.eventually(
        Duration::from_secs(20),
        "the slow invocation to hold the worker",
        || async { s.pool(&token, "single").await["busy"] == 1 },
    )
    .await;
    let resp = s
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"action": "echo"}))
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()["x-amzn-errortype"],
        "TooManyRequestsException"
    );
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({
            "Type": "User",
            "message": "Rate Exceeded.",
            "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
        })
    );
    let slow = slow.await.expect("join").expect("slow invoke");
    assert_eq!(slow.status(), 200);
    assert_eq!(slow.json::<Value>().await.expect("json"), "slept");
    s.stop().await;
}
