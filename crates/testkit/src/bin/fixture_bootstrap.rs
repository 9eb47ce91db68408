//! A `provided` runtime built with the official `lambda_runtime` crate: the
//! fixture function of the shim tests. The event's "action" picks what it
//! does, like the Python fixture.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::{json, Value};

fn fixture_error(message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        error_type: "FixtureError".into(),
        error_message: message.into(),
    }
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let (payload, ctx) = event.into_parts();
    let action = payload
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("echo");
    match action {
        "echo" => Ok(json!({
            "event": payload,
            "request_id": ctx.request_id,
            "function_arn": ctx.invoked_function_arn,
            "deadline": ctx.deadline,
            "trace_id": ctx.xray_trace_id,
            "client_context_custom": ctx.client_context.as_ref().map(|c| c.custom.clone()),
            "cognito_identity_id": ctx.identity.as_ref().map(|i| i.identity_id.clone()),
            "function_name": ctx.env_config.function_name,
            "memory": ctx.env_config.memory,
        })),
        "print" => {
            for line in payload["lines"].as_array().into_iter().flatten() {
                println!("{}", line.as_str().unwrap_or_default());
            }
            Ok(json!("printed"))
        }
        "error" => Err(fixture_error(payload["message"].as_str().unwrap_or("boom"))),
        "panic" => panic!("fixture panic"),
        "sleep" => {
            let secs = payload["seconds"].as_f64().unwrap_or(1.0);
            tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
            Ok(json!("slept"))
        }
        "exit" => std::process::exit(payload["code"].as_i64().unwrap_or(3) as i32),
        "big" => Ok(json!(
            "x".repeat(payload["size"].as_u64().unwrap_or(0) as usize)
        )),
        other => Err(fixture_error(format!("unknown action {other}"))),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}
