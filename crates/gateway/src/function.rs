//! The read-only function APIs of Lambda, so that tools (boto3, the AWS
//! CLI, SDKs) can look at the box's functions: ListFunctions
//! (`GET /2015-03-31/functions/`, `MaxItems`/`Marker`), GetFunction
//! (`GET /2015-03-31/functions/{FunctionName}`) and
//! GetFunctionConfiguration (`.../configuration`), in the shapes of the
//! Lambda API model. Authenticated like the Invoke API.
//!
//! Every function is `$LATEST` and `Active`. Functions with a runtime are
//! reported as `Zip` packages (ESB builds them into an image, which
//! `Code.Location` names; there is nothing to download), the others as
//! `Image` packages with their `ImageUri`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::Digest as _;

use crate::catalog::Function;
use crate::error::LambdaError;
use crate::event::UtcTime;
use crate::invocation::{authenticate, resolve, Resolved, LATEST, PATH_PREFIX};
use crate::Gateway;

/// ListFunctions' page size without `MaxItems`, and its largest.
const DEFAULT_MAX_ITEMS: usize = 50;
const MAX_ITEMS: usize = 10_000;

/// `GET /2015-03-31/functions/`.
pub async fn list(
    State(gateway): State<Arc<Gateway>>,
    request: Request,
) -> Result<Response, LambdaError> {
    let (parts, body) = request.into_parts();
    authenticate(&gateway, &parts, body).await?;
    let query = parts.uri.query();
    let max_items = match query_param(query, "MaxItems") {
        None => DEFAULT_MAX_ITEMS,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n < 1 => {
                return Err(LambdaError::Validation {
                    message: format!(
                        "1 validation error detected: Value '{n}' at 'maxItems' failed to \
                         satisfy constraint: Member must have value greater than or equal to 1"
                    ),
                })
            }
            Ok(n) if n > MAX_ITEMS as i64 => {
                return Err(LambdaError::Validation {
                    message: format!(
                        "1 validation error detected: Value '{n}' at 'maxItems' failed to \
                         satisfy constraint: Member must have value less than or equal to \
                         {MAX_ITEMS}"
                    ),
                })
            }
            // In 1..=MAX_ITEMS.
            Ok(n) => n as usize,
            Err(_) => {
                return Err(LambdaError::InvalidParameter {
                    message: format!("Invalid MaxItems: {raw}"),
                })
            }
        },
    };
    // The marker is the name of the last function of the previous page.
    let marker = query_param(query, "Marker");
    let catalog = gateway.catalog();
    let mut functions: Vec<&Arc<Function>> = catalog.functions.values().collect();
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    let after: Vec<&Arc<Function>> = functions
        .into_iter()
        .filter(|f| marker.as_deref().is_none_or(|m| f.name.as_str() > m))
        .collect();
    let last_modified = last_modified(&gateway);
    let page: Vec<Value> = after
        .iter()
        .take(max_items)
        .map(|f| configuration(&gateway, f, &last_modified))
        .collect();
    let mut out = json!({ "Functions": page });
    if after.len() > max_items {
        out["NextMarker"] = Value::String(after[max_items - 1].name.clone());
    }
    Ok(Json(out).into_response())
}

/// `GET /2015-03-31/functions/{FunctionName}`.
pub async fn get(
    State(gateway): State<Arc<Gateway>>,
    request: Request,
) -> Result<Response, LambdaError> {
    let (parts, body) = request.into_parts();
    authenticate(&gateway, &parts, body).await?;
    let raw_name = parts
        .uri
        .path()
        .strip_prefix(PATH_PREFIX)
        .unwrap_or_default();
    let function = lookup(&gateway, raw_name, parts.uri.query())?;
    let code = if function.runtime.is_some() {
        json!({"RepositoryType": "S3", "Location": function.image})
    } else {
        json!({
            "RepositoryType": "ECR",
            "ImageUri": function.image,
            "ResolvedImageUri": function.image,
        })
    };
    Ok(Json(json!({
        "Configuration": configuration(&gateway, &function, &last_modified(&gateway)),
        "Code": code,
    }))
    .into_response())
}

/// `GET /2015-03-31/functions/{FunctionName}/configuration`.
pub async fn get_configuration(
    State(gateway): State<Arc<Gateway>>,
    request: Request,
) -> Result<Response, LambdaError> {
    let (parts, body) = request.into_parts();
    authenticate(&gateway, &parts, body).await?;
    let raw_name = parts
        .uri
        .path()
        .strip_prefix(PATH_PREFIX)
        .and_then(|p| p.strip_suffix("/configuration"))
        .unwrap_or_default();
    let function = lookup(&gateway, raw_name, parts.uri.query())?;
    Ok(Json(configuration(&gateway, &function, &last_modified(&gateway))).into_response())
}

fn lookup(
    gateway: &Gateway,
    raw_name: &str,
    query: Option<&str>,
) -> Result<Arc<Function>, LambdaError> {
    let Resolved { name, arn } = resolve(gateway, raw_name, query)?;
    tracing::Span::current().record("function", name.as_str());
    gateway
        .catalog()
        .function(&name)
        .cloned()
        // Removed by a reload since it was resolved.
        .ok_or(LambdaError::FunctionNotFound { arn })
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// When the running catalog was written, as Lambda formats `LastModified`
/// (`2024-01-01T12:00:00.000+0000`).
fn last_modified(gateway: &Gateway) -> String {
    let ms = std::fs::metadata(&gateway.settings.catalog)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    // rem_euclid(1000) is in 0..1000.
    let iso =
        UtcTime::from_unix_seconds(ms.div_euclid(1000)).iso8601(Some(ms.rem_euclid(1000) as u32));
    format!("{}+0000", iso.trim_end_matches('Z'))
}

/// A function's `FunctionConfiguration`.
fn configuration(gateway: &Gateway, function: &Function, last_modified: &str) -> Value {
    let settings = &gateway.settings;
    let digest = sha2::Sha256::digest(
        format!(
            "{}\n{}\n{:?}",
            function.name, function.image, function.environment
        )
        .as_bytes(),
    );
    let mut revision = [0u8; 16];
    revision.copy_from_slice(&digest[..16]);
    let mut c = Map::new();
    let mut set = |k: &str, v: Value| {
        c.insert(k.to_owned(), v);
    };
    set("FunctionName", json!(function.name));
    set(
        "FunctionArn",
        json!(format!(
            "arn:aws:lambda:{}:{}:function:{}",
            settings.region, settings.account_id, function.name
        )),
    );
    if function.runtime.is_some() {
        set("Runtime", json!(function.runtime));
        set("Handler", json!(function.handler));
    }
    set(
        "Role",
        json!(format!(
            "arn:aws:iam::{}:role/esb-function",
            settings.account_id
        )),
    );
    set("CodeSize", json!(0));
    set("Description", json!(""));
    set("Timeout", json!(function.timeout.as_secs()));
    set("MemorySize", json!(function.memory_mb));
    set("LastModified", json!(last_modified));
    set(
        "CodeSha256",
        json!(base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(function.image.as_bytes()))),
    );
    set("Version", json!(LATEST));
    if !function.environment.is_empty() {
        set("Environment", json!({ "Variables": function.environment }));
    }
    set("TracingConfig", json!({"Mode": "PassThrough"}));
    set(
        "RevisionId",
        json!(uuid::Uuid::from_bytes(revision).to_string()),
    );
    set("State", json!("Active"));
    set("LastUpdateStatus", json!("Successful"));
    set(
        "PackageType",
        json!(if function.runtime.is_some() {
            "Zip"
        } else {
            "Image"
        }),
    );
    if function.runtime.is_none() && !function.command.is_empty() {
        set(
            "ImageConfigResponse",
            json!({"ImageConfig": {"Command": function.command}}),
        );
    }
    set("Architectures", json!(["x86_64"]));
    set("EphemeralStorage", json!({"Size": 512}));
    set(
        "LoggingConfig",
        json!({"LogFormat": "Text", "LogGroup": format!("/aws/lambda/{}", function.name)}),
    );
    Value::Object(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(
            query_param(Some("MaxItems=1&Marker=a%2Db"), "Marker").as_deref(),
            Some("a-b")
        );
        assert_eq!(
            query_param(Some("MaxItems=1"), "MaxItems").as_deref(),
            Some("1")
        );
        assert_eq!(query_param(Some("MaxItems=1"), "Marker"), None);
        assert_eq!(query_param(None, "Marker"), None);
    }
}
