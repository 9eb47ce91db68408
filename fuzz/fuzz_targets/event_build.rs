//! The event builder (`esb_gateway::event`): REST v1 and HTTP API v2 events
//! from arbitrary routed requests, and the mapping of function output back
//! to an HTTP response.
//!
//! Input: a request as text (`METHOD TARGET`, headers, body) or a
//! function's JSON output (the seed corpus), or structured input.
//!
//! Properties:
//! - both events deserialize into the AWS event types of `aws_lambda_events`;
//! - the body survives (`isBase64Encoded` says how), every request header
//!   is in the event with all its values, the query parameters decode to
//!   what was encoded, `rawQueryString` is the query as received and
//!   `rawPath` the decoded path;
//! - arbitrary output never panics the response mappers, and a proxy
//!   response built from arbitrary parts maps back to those parts.
#![no_main]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
use base64::Engine as _;
use esb_fuzz::{
    parse_http_text, percent_decode, percent_encode, request_parts, TextRequest, METHODS,
};
use esb_gateway::event::{build_event, map_response, ApiContext, Forwarding, ProxyRequest};
use esb_gateway::route::{PayloadFormat, RouteAuth, RouteConfig, RouteMatch, RouteTable};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const HEADER_NAMES: &[&str] = &[
    "Content-Type",
    "content-type",
    "Host",
    "Cookie",
    "User-Agent",
    "X-Forwarded-For",
    "X-Amzn-Trace-Id",
    "x-api-key",
    "X-Custom",
    "accept",
];
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "text/plain; charset=utf-8",
    "image/png",
    "application/octet-stream",
    "application/vnd.api+json",
    "",
];

#[derive(Debug, Arbitrary)]
enum Header {
    Known(u8, String),
    ContentType(u8),
    Raw(Vec<u8>, Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Query {
    Raw(String),
    Pairs(Vec<(String, String)>),
}

#[derive(Debug, Arbitrary)]
struct Request {
    v2: bool,
    api_key_required: bool,
    method: u8,
    segments: Vec<String>,
    query: Option<Query>,
    version: u8,
    headers: Vec<Header>,
    body: Vec<u8>,
    ip: [u8; 16],
    v6: bool,
    forwarding: Option<(bool, u16)>,
    trace_id: Option<String>,
    time: u64,
}

#[derive(Debug, Arbitrary)]
struct Output {
    v2: bool,
    status: u16,
    headers: Vec<(u8, String)>,
    cookies: Vec<String>,
    body: Vec<u8>,
    base64: bool,
}

#[derive(Debug, Arbitrary)]
enum Input {
    Request(Request),
    Output(Output),
    RawOutput(bool, Vec<u8>),
}

/// Only what a header value may hold (and survives trimming).
fn header_text(value: &str) -> String {
    value
        .chars()
        .filter(|c| *c == ' ' || c.is_ascii_graphic())
        .collect::<String>()
        .trim()
        .to_owned()
}

fn payload(v2: bool) -> PayloadFormat {
    if v2 {
        PayloadFormat::HttpV2
    } else {
        PayloadFormat::RestV1
    }
}

/// One request, ready for the event builder.
struct Built {
    v2: bool,
    api_key_required: bool,
    method: Method,
    raw_path: String,
    raw_query: Option<String>,
    /// The decoded query pairs, when the query was built from them.
    pairs: Option<Vec<(String, String)>>,
    headers: HeaderMap,
    header_names: Vec<String>,
    body: Vec<u8>,
    source_ip: IpAddr,
    version: Version,
    forwarding: Option<(bool, u16)>,
    trace_id: Option<String>,
    time: u64,
}

fn from_arbitrary(input: Request) -> Built {
    let method = Method::from_bytes(METHODS[usize::from(input.method) % METHODS.len()].as_bytes())
        .expect("method");
    let raw_path: String = input
        .segments
        .iter()
        .take(8)
        .map(|s| format!("/{}", percent_encode(s)))
        .collect();
    let raw_path = if raw_path.is_empty() {
        "/".to_owned()
    } else {
        raw_path
    };
    let (raw_query, pairs) = match &input.query {
        None => (None, None),
        Some(Query::Raw(raw)) => (Some(raw.clone()), None),
        Some(Query::Pairs(pairs)) => {
            let pairs: Vec<(String, String)> = pairs.iter().take(8).cloned().collect();
            let raw = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            (Some(raw), Some(pairs))
        }
    };
    let mut headers = HeaderMap::new();
    let mut header_names = Vec::new();
    for header in input.headers.iter().take(12) {
        let (name, value) = match header {
            Header::Known(i, value) => {
                let name = HEADER_NAMES[usize::from(*i) % HEADER_NAMES.len()];
                (name.to_owned(), header_text(value).into_bytes())
            }
            Header::ContentType(i) => (
                "Content-Type".to_owned(),
                CONTENT_TYPES[usize::from(*i) % CONTENT_TYPES.len()]
                    .as_bytes()
                    .to_vec(),
            ),
            Header::Raw(name, value) => (String::from_utf8_lossy(name).into_owned(), value.clone()),
        };
        let (Ok(header_name), Ok(header_value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) else {
            continue;
        };
        headers.append(header_name, header_value);
        header_names.push(name);
    }
    let source_ip = if input.v6 {
        IpAddr::from(input.ip)
    } else {
        IpAddr::from([input.ip[0], input.ip[1], input.ip[2], input.ip[3]])
    };
    Built {
        v2: input.v2,
        api_key_required: input.api_key_required,
        method,
        raw_path,
        raw_query,
        pairs,
        headers,
        header_names,
        body: input.body,
        source_ip,
        version: [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2]
            [usize::from(input.version) % 3],
        forwarding: input.forwarding,
        trace_id: input.trace_id.as_deref().map(header_text),
        time: input.time,
    }
}

/// A seed request, for both payload formats; `None` when it is not valid HTTP.
fn from_text(text: &TextRequest<'_>) -> Option<[Built; 2]> {
    let parts = request_parts(text)?;
    let raw_path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().map(str::to_owned);
    let header_names = text
        .headers
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let built = |v2| Built {
        v2,
        api_key_required: true,
        method: parts.method.clone(),
        raw_path: raw_path.clone(),
        raw_query: raw_query.clone(),
        pairs: None,
        headers: parts.headers.clone(),
        header_names: Vec::clone(&header_names),
        body: text.body.to_vec(),
        source_ip: IpAddr::from([203, 0, 113, 7]),
        version: Version::HTTP_11,
        forwarding: Some((true, 443)),
        trace_id: None,
        time: 1_589_522_469_123,
    };
    Some([built(false), built(true)])
}

fn request(input: Built) {
    let Built {
        v2,
        api_key_required,
        method,
        raw_path,
        raw_query,
        pairs,
        headers,
        header_names,
        body: request_body,
        source_ip,
        version,
        forwarding,
        trace_id,
        time,
    } = input;
    let table = RouteTable::new(
        ["/{proxy+}", "/items/{id}", "/"]
            .iter()
            .map(|path| RouteConfig {
                method: "ANY".to_owned(),
                path: (*path).to_owned(),
                function: "F".to_owned(),
                payload: payload(v2),
                auth: RouteAuth::None,
                api_key_required,
                cors: None,
            })
            .collect(),
    )
    .expect("valid routes");
    let RouteMatch::Found {
        route,
        path_parameters,
    } = table.lookup(&method, &raw_path)
    else {
        // `/{proxy+}` takes every path but those with empty segments.
        return;
    };
    let api = ApiContext {
        account_id: "123456789012".to_owned(),
        api_id: "esb".to_owned(),
        stage: "Prod".to_owned(),
        domain_name: "localhost".to_owned(),
    };
    let request = ProxyRequest {
        method: &method,
        raw_path: &raw_path,
        raw_query: raw_query.as_deref(),
        version,
        headers: &headers,
        header_names: &header_names,
        body: &request_body,
        source_ip,
        forwarding: forwarding.map(|(https, port)| Forwarding {
            proto: if https { "https" } else { "http" },
            port,
        }),
        trace_id: trace_id.as_deref(),
        api: &api,
        route,
        path_parameters: &path_parameters,
        claims: None,
        request_id: "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        // Requests arrive now: keep the time before the year 10000 (AWS's
        // event types hold `requestTimeEpoch` in an i64).
        request_time: UNIX_EPOCH + Duration::from_millis(time % 253_402_300_800_000),
    };
    let event = build_event(&request);

    // The body survives.
    let body = match event.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) if event["isBase64Encoded"] == true => {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .expect("base64 body")
        }
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(other) => panic!("body {other}"),
    };
    assert_eq!(body, request_body);

    // Headers the gateway does not replace keep all their values.
    let replaced = |name: &str| {
        (forwarding.is_some() && name.starts_with("x-forwarded-"))
            || (trace_id.is_some() && name == "x-amzn-trace-id")
    };
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();

    if v2 {
        let parsed: ApiGatewayV2httpRequest =
            serde_json::from_value(event.clone()).unwrap_or_else(|e| panic!("{e}: {event}"));
        assert_eq!(
            parsed.raw_path.as_deref(),
            Some(percent_decode(&raw_path).as_str())
        );
        assert_eq!(
            parsed.raw_query_string.as_deref(),
            Some(raw_query.as_deref().unwrap_or(""))
        );
        for name in headers.keys() {
            if replaced(name.as_str()) || name == "cookie" {
                continue;
            }
            let values: Vec<String> = headers.get_all(name).iter().map(text).collect();
            assert_eq!(event["headers"][name.as_str()], values.join(","), "{name}");
        }
        if let Some(pairs) = &pairs {
            let mut expected: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (k, v) in pairs {
                expected.entry(k.as_str()).or_default().push(v.as_str());
            }
            for (k, values) in expected {
                assert_eq!(
                    event["queryStringParameters"][k],
                    values.join(","),
                    "query {k:?}"
                );
            }
        }
    } else {
        let parsed: ApiGatewayProxyRequest =
            serde_json::from_value(event.clone()).unwrap_or_else(|e| panic!("{e}: {event}"));
        assert_eq!(parsed.path.as_deref(), Some(raw_path.as_str()));
        let multi = event["multiValueHeaders"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for name in headers.keys() {
            if replaced(name.as_str()) {
                continue;
            }
            let values: Vec<Value> = headers
                .get_all(name)
                .iter()
                .map(|v| Value::from(text(v)))
                .collect();
            let spelled = multi
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name.as_str()))
                .unwrap_or_else(|| panic!("header {name} missing: {event}"));
            assert_eq!(spelled.1, &Value::Array(values), "{name}");
        }
        if let Some(pairs) = &pairs {
            let mut expected: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
            for (k, v) in pairs {
                expected
                    .entry(k.as_str())
                    .or_default()
                    .push(Value::from(v.as_str()));
            }
            for (k, values) in expected {
                assert_eq!(
                    event["multiValueQueryStringParameters"][k],
                    Value::Array(values),
                    "query {k:?}"
                );
            }
        }
    }
}

fn raw_output(v2: bool, bytes: &[u8]) {
    if let Ok(response) = map_response(payload(v2), bytes) {
        assert!((100..=599).contains(&response.status));
        assert!(response.headers.contains_key("content-type"));
    }
}

fn output(input: Output) {
    let status = 100 + input.status % 500;
    let mut headers = Map::new();
    for (i, value) in input.headers.iter().take(8) {
        let name = HEADER_NAMES[usize::from(*i) % HEADER_NAMES.len()].to_ascii_lowercase();
        headers.insert(name, Value::from(header_text(value)));
    }
    let body = if input.base64 {
        base64::engine::general_purpose::STANDARD.encode(&input.body)
    } else {
        String::from_utf8_lossy(&input.body).into_owned()
    };
    let cookies: Vec<String> = input
        .cookies
        .iter()
        .take(4)
        .map(|c| header_text(c))
        .collect();
    let mut output = json!({
        "statusCode": status,
        "headers": headers,
        "body": body,
        "isBase64Encoded": input.base64,
    });
    if input.v2 && !cookies.is_empty() {
        output["cookies"] = json!(cookies);
    }
    let mapped = map_response(payload(input.v2), output.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{e}: {output}"));
    assert_eq!(mapped.status, status);
    let expected_body = if input.base64 {
        input.body.clone()
    } else {
        body.into_bytes()
    };
    assert_eq!(&mapped.body[..], &expected_body[..]);
    for (name, value) in &headers {
        let value = value.as_str().expect("string");
        assert!(
            mapped
                .headers
                .get_all(name.as_str())
                .iter()
                .any(|v| v == value),
            "{name}: {value:?} lost: {:?}",
            mapped.headers
        );
    }
    if input.v2 {
        let set: Vec<&HeaderValue> = mapped.headers.get_all("set-cookie").iter().collect();
        assert_eq!(set.len(), cookies.len());
    }
}

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'{') {
        // A function's output (seed corpus: real proxy responses).
        for v2 in [false, true] {
            raw_output(v2, data);
        }
        return;
    }
    if let Some(text) = parse_http_text(data) {
        for built in from_text(&text).into_iter().flatten() {
            request(built);
        }
        return;
    }
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    match input {
        Input::Request(request_input) => request(from_arbitrary(request_input)),
        Input::Output(output_input) => output(output_input),
        Input::RawOutput(v2, bytes) => raw_output(v2, &bytes),
    }
});
