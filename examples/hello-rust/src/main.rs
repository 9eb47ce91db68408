//! Hello from ESB, as a `provided.al2023` function: a `bootstrap` built with
//! AWS's `lambda_runtime` crate; nothing in it is ESB-specific.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

async fn hello(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let name = event.payload["name"]
        .as_str()
        .or_else(|| event.payload["pathParameters"]["name"].as_str())
        .unwrap_or("world");
    println!("greeting {name}");
    Ok(json!({
        "message": format!("Hello, {name}!"),
        "function": event.context.env_config.function_name,
        "request_id": event.context.request_id,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(hello)).await
}
