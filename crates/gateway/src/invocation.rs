//! The Lambda Invoke API, `POST /2015-03-31/functions/{FunctionName}/invocations`,
//! as boto3, the AWS CLI and the SDKs call it with an endpoint URL: SigV4
//! with the box's key pair (or a Bearer IdToken), a function name, a
//! partial or a full ARN, optionally qualified with `$LATEST`.
//!
//! Synchronous invocations run on the same pools as routes. `DryRun`
//! answers 204 once the caller is authorised and the function exists.
//! `Event` (asynchronous) is stored durably, answered 202 and run later by
//! the dispatcher ([`crate::queue`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine as _;
use bytes::Bytes;

use crate::api::{read_body, BodyError, RequestIds, MAX_REQUEST_BYTES};
use crate::error::LambdaError;
use crate::pool::InvokeError;
use crate::queue;
use crate::sigv4;
use crate::worker::WorkerRequest;
use crate::Gateway;

/// The API's path prefix and suffix around `{FunctionName}`.
pub const PATH_PREFIX: &str = "/2015-03-31/functions/";
const PATH_SUFFIX: &str = "/invocations";

/// The version every ESB function has.
pub const LATEST: &str = "$LATEST";

/// Largest `X-Amz-Client-Context` (base64) Lambda accepts.
const MAX_CLIENT_CONTEXT: usize = 3583;

/// The `FunctionName` regular expression of the Lambda API model, quoted in
/// validation errors.
const FUNCTION_NAME_PATTERN: &str = "(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST(\\.PUBLISHED)?|[a-zA-Z0-9-_]+))?";

/// A function as an Invoke request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub qualifier: Option<String>,
    pub region: Option<String>,
    pub account: Option<String>,
}

impl FunctionRef {
    /// Parses `name`, `name:qualifier`, `123456789012:function:name[:qualifier]`
    /// or `arn:aws:lambda:region:123456789012:function:name[:qualifier]`
    /// (the forms the API model's pattern allows).
    pub fn parse(raw: &str) -> Result<FunctionRef, LambdaError> {
        let invalid = || {
            LambdaError::Validation {
            message: format!(
                "1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy \
                 constraint: Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}"
            ),
        }
        };
        if raw.is_empty() || raw.len() > 256 {
            return Err(invalid());
        }
        let parts: Vec<&str> = raw.split(':').collect();
        let mut rest: &[&str] = &parts;
        if rest.first() == Some(&"arn") {
            match rest {
                [_, partition, "lambda", tail @ ..] if is_partition(partition) => rest = tail,
                _ => return Err(invalid()),
            }
        }
        let mut region = None;
        if let [first, tail @ ..] = rest {
            if is_region(first) {
                region = Some((*first).to_owned());
                rest = tail;
            }
        }
        let mut account = None;
        if let [first, _, ..] = rest {
            if first.len() == 12 && first.bytes().all(|b| b.is_ascii_digit()) {
                account = Some((*first).to_owned());
                rest = &rest[1..];
            }
        }
        if let ["function", _, ..] = rest {
            rest = &rest[1..];
        }
        let (name, qualifier) = match rest {
            [name] => (*name, None),
            [name, qualifier] => (*name, Some(*qualifier)),
            _ => return Err(invalid()),
        };
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let qualifier_ok = qualifier.is_none_or(valid_qualifier);
        if !name_ok || !qualifier_ok {
            return Err(invalid());
        }
        Ok(FunctionRef {
            name: name.to_owned(),
            qualifier: qualifier.map(str::to_owned),
            region,
            account,
        })
    }
}

fn valid_qualifier(q: &str) -> bool {
    q == LATEST
        || (!q.is_empty()
            && q.len() <= 128
            && q.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')))
}

/// `aws`, `aws-cn`, `aws-us-gov`...: the pattern's `aws[a-zA-Z-]*`.
fn is_partition(s: &str) -> bool {
    s.strip_prefix("aws")
        .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'))
}

/// `us-east-1`, `us-gov-west-1`, `us-isob-east-1`, `eusc-de-east-1`...: the
/// pattern's `(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}`.
fn is_region(s: &str) -> bool {
    let lower = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase());
    let words: Vec<&str> = s.strip_prefix("eusc-").unwrap_or(s).split('-').collect();
    let (country, area, digit) = match words.as_slice() {
        [country, area, digit] => (*country, *area, *digit),
        [country, partition, area, digit]
            if *partition == "gov"
                || partition
                    .strip_prefix("iso")
                    .is_some_and(|x| x.len() <= 1 && (x.is_empty() || lower(x))) =>
        {
            (*country, *area, *digit)
        }
        _ => return false,
    };
    country.len() == 2
        && lower(country)
        && lower(area)
        && digit.len() == 1
        && digit.bytes().all(|b| b.is_ascii_digit())
}

/// `X-Amz-Invocation-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn enum_error(field: &str, value: &str, allowed: &str) -> LambdaError {
    LambdaError::Validation {
        message: format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy \
             constraint: Member must satisfy enum value set: [{allowed}]"
        ),
    }
}

/// Who may invoke: a SigV4 signature with the box's key, checked once the
/// body is read, or a verified Bearer IdToken.
enum Caller {
    Signed(sigv4::Authorization),
    Bearer,
}

/// Authenticates a Lambda API request (SigV4 with the box's key or a
/// Bearer IdToken) and returns its body, at most 6 MB.
pub(crate) async fn authenticate(
    gateway: &Gateway,
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<Bytes, LambdaError> {
    // Authentication first, as AWS does: nobody learns which functions exist.
    let caller = match header(&parts.headers, "authorization") {
        Some(value) if !sigv4::is_sigv4(value) => {
            gateway.auth.verify_bearer(Some(value))?;
            Caller::Bearer
        }
        _ => Caller::Signed(gateway.sigv4.authorize(parts)?),
    };
    let body = match read_body(body, MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Err(LambdaError::PayloadTooLarge {
                limit: MAX_REQUEST_BYTES,
            })
        }
        Err(BodyError::Read) => return Err(LambdaError::BodyRead),
    };
    if let Caller::Signed(authorization) = &caller {
        gateway.sigv4.verify(authorization, parts, &body)?;
    }
    Ok(body)
}

/// A function of this box that a request named, with the ARN it used.
pub(crate) struct Resolved {
    pub name: String,
    /// The ARN as invoked: this box's region and account, with the
    /// qualifier when one was given.
    pub arn: String,
}

/// `POST /2015-03-31/functions/{FunctionName}/invocations`.
pub async fn invoke(
    State(gateway): State<Arc<Gateway>>,
    Extension(ids): Extension<RequestIds>,
    request: Request,
) -> Result<Response, LambdaError> {
    let (parts, body) = request.into_parts();
    let body = authenticate(&gateway, &parts, body).await?;
    let raw_name = parts
        .uri
        .path()
        .strip_prefix(PATH_PREFIX)
        .and_then(|p| p.strip_suffix(PATH_SUFFIX))
        .unwrap_or_default();
    let Resolved { name, arn } = resolve(&gateway, raw_name, parts.uri.query())?;
    tracing::Span::current().record("function", name.as_str());

    let invocation_type = match header(&parts.headers, "x-amz-invocation-type") {
        None | Some("RequestResponse") => InvocationType::RequestResponse,
        Some("Event") => InvocationType::Event,
        Some("DryRun") => InvocationType::DryRun,
        Some(other) => {
            return Err(enum_error(
                "invocationType",
                other,
                "Event, RequestResponse, DryRun",
            ))
        }
    };
    let tail = match header(&parts.headers, "x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => return Err(enum_error("logType", other, "None, Tail")),
    };
    if invocation_type == InvocationType::DryRun {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if invocation_type == InvocationType::Event && body.len() > queue::MAX_EVENT_PAYLOAD {
        return Err(LambdaError::EventPayloadTooLarge {
            size: body.len(),
            limit: queue::MAX_EVENT_PAYLOAD,
        });
    }
    let client_context = header(&parts.headers, "x-amz-client-context")
        .map(|cc| validate_client_context(cc).map(|()| cc.to_owned()))
        .transpose()?;
    validate_payload(&body)?;
    if invocation_type == InvocationType::Event {
        // Durable before the 202: a gateway restart loses nothing accepted.
        gateway
            .store
            .enqueue_invocation(&queue::NewInvocation {
                request_id: &ids.request_id,
                function: &name,
                invoked_function_arn: &arn,
                payload: &body,
                trace_id: &ids.trace_id,
                client_context: client_context.as_deref(),
            })
            .await
            .map_err(LambdaError::Store)?;
        tracing::info!("asynchronous invocation queued");
        return Ok(StatusCode::ACCEPTED.into_response());
    }

    let invoked = gateway
        .pools
        .invoke(
            &name,
            &WorkerRequest {
                payload: body,
                request_id: ids.request_id.clone(),
                trace_id: ids.trace_id.clone(),
                tail,
                client_context,
                invoked_function_arn: Some(arn.clone()),
            },
        )
        .await
        .map_err(|e| match e {
            // Removed by a reload while the request waited.
            InvokeError::UnknownFunction(_) => LambdaError::FunctionNotFound { arn: arn.clone() },
            other => LambdaError::Invoke(other),
        })?;
    let response = invoked.response;
    match response.status {
        200 => {}
        // The shim measures the payload too.
        413 => {
            return Err(LambdaError::PayloadTooLarge {
                limit: MAX_REQUEST_BYTES,
            })
        }
        status => {
            return Err(LambdaError::WorkerRejected {
                function: name,
                status,
            })
        }
    }
    let mut out = Response::new(Body::from(response.body));
    let headers = out.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-amz-executed-version", HeaderValue::from_static(LATEST));
    if let Some(v) = response
        .function_error
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert("x-amz-function-error", v);
    }
    if tail {
        if let Some(v) = response
            .log_result
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert("x-amz-log-result", v);
        }
    }
    Ok(out)
}

/// Resolves `{FunctionName}` (percent-encoded, as in the path) and the
/// `Qualifier` query parameter to a function of this box: anything else
/// (another account, region or version) is not found, as in AWS.
pub(crate) fn resolve(
    gateway: &Gateway,
    raw_name: &str,
    query: Option<&str>,
) -> Result<Resolved, LambdaError> {
    let raw_name = percent_encoding::percent_decode_str(raw_name)
        .decode_utf8()
        .map_err(|_| LambdaError::Validation {
            message: "The function name is not valid UTF-8.".to_owned(),
        })?;
    let function = FunctionRef::parse(&raw_name)?;
    let query_qualifier = query.and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == "Qualifier").then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    });
    let qualifier = match (&function.qualifier, query_qualifier) {
        (Some(derived), Some(given)) if *derived != given => {
            return Err(LambdaError::InvalidParameter {
                message: "The derived qualifier from the function name does not match the \
                          specified qualifier."
                    .to_owned(),
            })
        }
        (Some(q), _) => Some(q.clone()),
        (None, given) => given,
    };

    // The function: this box's account and region, version $LATEST.
    let settings = &gateway.settings;
    let mut arn = format!(
        "arn:aws:lambda:{}:{}:function:{}",
        function.region.as_deref().unwrap_or(&settings.region),
        function.account.as_deref().unwrap_or(&settings.account_id),
        function.name
    );
    if let Some(q) = &qualifier {
        arn.push(':');
        arn.push_str(q);
    }
    let exists = gateway.catalog().function(&function.name).is_some();
    let ours = function
        .region
        .as_deref()
        .is_none_or(|r| r == settings.region)
        && function
            .account
            .as_deref()
            .is_none_or(|a| a == settings.account_id);
    let latest = qualifier.as_deref().is_none_or(|q| q == LATEST);
    if !(exists && ours && latest) {
        return Err(LambdaError::FunctionNotFound { arn });
    }
    Ok(Resolved {
        name: function.name,
        arn,
    })
}

/// An empty payload is `{}` to the function; anything else must be JSON.
fn validate_payload(body: &Bytes) -> Result<(), LambdaError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| LambdaError::InvalidRequestContent {
            message: format!(
                "Could not parse request body into json: Could not parse payload into json: {e}"
            ),
        })
}

/// Base64 of a JSON object, at most 3583 bytes.
fn validate_client_context(value: &str) -> Result<(), LambdaError> {
    let ok = value.len() <= MAX_CLIENT_CONTEXT
        && base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            .is_some_and(|v| v.is_object());
    if ok {
        Ok(())
    } else {
        Err(LambdaError::InvalidRequestContent {
            message: format!(
                "Client context must be a base64-encoded JSON object of at most \
                 {MAX_CLIENT_CONTEXT} bytes."
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> FunctionRef {
        FunctionRef::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn every_form_of_function_name_parses() {
        let plain = parse("hello");
        assert_eq!((plain.name.as_str(), plain.qualifier), ("hello", None));
        assert_eq!(parse("hello:$LATEST").qualifier.as_deref(), Some("$LATEST"));
        assert_eq!(parse("hello:prod").qualifier.as_deref(), Some("prod"));
        let partial = parse("123456789012:function:hello");
        assert_eq!(
            (partial.name.as_str(), partial.account.as_deref()),
            ("hello", Some("123456789012"))
        );
        let full = parse("arn:aws:lambda:eu-west-1:123456789012:function:hello-world_2:7");
        assert_eq!(full.name, "hello-world_2");
        assert_eq!(full.region.as_deref(), Some("eu-west-1"));
        assert_eq!(full.account.as_deref(), Some("123456789012"));
        assert_eq!(full.qualifier.as_deref(), Some("7"));
        assert_eq!(
            parse("arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f").name,
            "f"
        );
    }

    #[test]
    fn malformed_names_are_validation_errors() {
        for raw in [
            "",
            "a:b:c:d:e",
            "hello world",
            "arn:aws:s3:::bucket",
            "hello:",
            "hello:a.b",
            "arn:aws:lambda:us-east-1:123456789012:function:",
            // Found by fuzz/fuzz_targets/function_ref.rs: the partition
            // must be `aws` followed by letters and dashes.
            "arn:aws5us-gov:lambda:us-gov-west-1:123456789012:function:my-fn:$LATEST",
            "arn:aws_cn:lambda:cn-north-1:123456789012:function:f",
            "eu-weu-west-1:awshest-1:awshello",
        ] {
            let err = FunctionRef::parse(raw).expect_err(raw);
            assert!(
                matches!(err, LambdaError::Validation { .. }),
                "{raw}: {err}"
            );
        }
    }

    #[test]
    fn regions_are_recognised() {
        for r in [
            "us-east-1",
            "us-gov-west-1",
            "ap-southeast-2",
            "cn-north-1",
            "us-iso-east-1",
            "us-isob-east-1",
            "eusc-de-east-1",
        ] {
            assert!(is_region(r), "{r}");
        }
        // `eu-weu-west-1` was found by fuzz/fuzz_targets/function_ref.rs:
        // one word between the country and the digit, as the API model says.
        for r in [
            "hello",
            "us-east",
            "123456789012",
            "function",
            "a-b-1",
            "eu-weu-west-1",
            "us-isoxy-east-1",
            "us-gov-east-12",
        ] {
            assert!(!is_region(r), "{r}");
        }
    }

    #[test]
    fn payloads_and_client_contexts_are_checked() {
        assert!(validate_payload(&Bytes::from_static(b"")).is_ok());
        assert!(validate_payload(&Bytes::from_static(b" \n")).is_ok());
        assert!(validate_payload(&Bytes::from_static(b"\"text\"")).is_ok());
        assert!(validate_payload(&Bytes::from_static(b"{oops")).is_err());
        let cc = base64::engine::general_purpose::STANDARD.encode(r#"{"custom":{"k":"v"}}"#);
        assert!(validate_client_context(&cc).is_ok());
        assert!(validate_client_context("not base64!").is_err());
        let array = base64::engine::general_purpose::STANDARD.encode("[1]");
        assert!(validate_client_context(&array).is_err());
    }
}
