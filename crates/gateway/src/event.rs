//! The Lambda events API Gateway sends for a routed HTTP request, and the
//! mapping of a function's output back to an HTTP response.
//!
//! Two formats, chosen by the route's [`PayloadFormat`]:
//! - REST API proxy events, payload format 1.0 (SAM `Api`):
//!   [`rest_v1_event`] and [`rest_v1_response`];
//! - HTTP API events, payload format 2.0 (SAM `HttpApi`):
//!   [`http_v2_event`] and [`http_v2_response`].
//!
//! Behaviour taken from AWS (API Gateway developer guide, "Lambda proxy
//! integrations" and "Working with AWS Lambda proxy integrations for HTTP
//! APIs"; captured events of the `aws_lambda_events` crate, see
//! `fixtures/README.md`):
//! - 1.0: `headers`/`queryStringParameters` keep the last value of a repeated
//!   name, `multiValueHeaders`/`multiValueQueryStringParameters` all of them;
//!   the query maps and `pathParameters` are `null` when empty,
//!   `stageVariables` is `null` (ESB has none); `path` is the request path as
//!   received (still percent-encoded), `requestContext.path` the same with
//!   the stage in front (`/Prod/items/1`), as on an `execute-api` endpoint;
//! - 2.0: header names lower-case and repeated headers joined with `,`,
//!   repeated query parameters joined with `,`, `Cookie` headers split into
//!   `cookies` (and not repeated in `headers`), `stage` `$default`; `rawPath`
//!   and `requestContext.http.path` are percent-decoded (HTTP APIs deliver
//!   the path decoded, unlike REST APIs);
//! - query strings are decoded as API Gateway does: `+` is a space, then
//!   percent-decoding (`%2B` is a `+`);
//! - times: `requestTime`/`time` as `15/May/2020:06:01:09 +0000`,
//!   `requestTimeEpoch`/`timeEpoch` in milliseconds.
//!
//! Chosen by ESB:
//! - header name case: the names the client sent if the caller knows them
//!   ([`ProxyRequest::header_names`]), else the lower-case names of the
//!   `HeaderMap` (what HTTP/2 clients send, and what AWS then passes on);
//! - binary bodies: the body is sent base64-encoded with `isBase64Encoded:
//!   true` when it is not valid UTF-8 or its content type is a binary media
//!   type (`application/octet-stream`, `image/*`, `audio/*`, `video/*`,
//!   `font/*`, `application/pdf`, `application/zip`, `application/gzip`, ...;
//!   `+json`/`+xml` types count as text). AWS decides by the API's
//!   `BinaryMediaTypes` instead; without them a REST API mangles binary data,
//!   which ESB never does. An empty body is `null` (1.0) or absent (2.0);
//! - `requestContext.extendedRequestId` is the request id;
//!   `requestContext.resourceId` is [`Route::resource_id`];
//! - `domainName` is the `Host` header (else [`ApiContext::domain_name`]),
//!   `domainPrefix` its first label.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, Version};
use serde_json::{json, Map, Value};

use crate::auth::Claims;
use crate::route::{PayloadFormat, Route};

/// The API a request came in through: the same for every request of a box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiContext {
    /// `requestContext.accountId`, e.g. `123456789012`.
    pub account_id: String,
    /// `requestContext.apiId`.
    pub api_id: String,
    /// The REST API stage, e.g. `Prod` (HTTP API events always say `$default`).
    pub stage: String,
    /// `requestContext.domainName` when the request has no `Host` header.
    pub domain_name: String,
}

/// What a proxy in front of the function adds to the request headers, as
/// API Gateway (through CloudFront) does: `X-Forwarded-Proto`,
/// `X-Forwarded-Port` (replaced) and the client address appended to
/// `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarding<'a> {
    /// `https` or `http`.
    pub proto: &'a str,
    /// The port the client connected to.
    pub port: u16,
}

/// One routed request, as received, with what routing and authentication
/// decided about it. Build an event from it with [`build_event`].
#[derive(Debug, Clone)]
pub struct ProxyRequest<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request path as received, percent-encoded, without the query.
    pub raw_path: &'a str,
    /// The query string as received, without `?`.
    pub raw_query: Option<&'a str>,
    /// The HTTP version (`requestContext.protocol`).
    pub version: Version,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The header names as the client spelled them (HTTP/1.1), in any order;
    /// matched case-insensitively against `headers`. Names not found here
    /// are sent lower-case.
    pub header_names: &'a [String],
    /// The request body.
    pub body: &'a [u8],
    /// The client's address (`identity.sourceIp`).
    pub source_ip: IpAddr,
    /// Forwarding headers to add; `None` adds none.
    pub forwarding: Option<Forwarding<'a>>,
    /// The request's `X-Amzn-Trace-Id`, added to (or replacing) the header.
    pub trace_id: Option<&'a str>,
    /// The API.
    pub api: &'a ApiContext,
    /// The matched route.
    pub route: &'a Route,
    /// The path parameters of the match.
    pub path_parameters: &'a BTreeMap<String, String>,
    /// The verified token's claims, on routes that require one.
    pub claims: Option<&'a Claims>,
    /// The request id (`requestContext.requestId`).
    pub request_id: &'a str,
    /// When the request arrived.
    pub request_time: SystemTime,
}

/// Builds the event of the route's payload format.
pub fn build_event(request: &ProxyRequest<'_>) -> Value {
    match request.route.payload() {
        PayloadFormat::RestV1 => rest_v1_event(request),
        PayloadFormat::HttpV2 => http_v2_event(request),
    }
}

/// Builds a REST API proxy event (payload format 1.0).
pub fn rest_v1_event(request: &ProxyRequest<'_>) -> Value {
    let headers = request_headers(request, false);
    let mut single_headers = Map::new();
    let mut multi_headers = Map::new();
    for header in &headers {
        if let Some(last) = header.values.last() {
            single_headers.insert(header.name.clone(), Value::from(last.as_str()));
        }
        multi_headers.insert(header.name.clone(), Value::from(header.values.clone()));
    }

    let query = parse_query(request.raw_query.unwrap_or(""));
    let (single_query, multi_query) = if query.is_empty() {
        (Value::Null, Value::Null)
    } else {
        let mut single = Map::new();
        let mut multi: Map<String, Value> = Map::new();
        for (name, value) in query {
            single.insert(name.clone(), Value::from(value.as_str()));
            match multi.get_mut(&name).and_then(Value::as_array_mut) {
                Some(values) => values.push(Value::from(value)),
                None => {
                    multi.insert(name, Value::Array(vec![Value::from(value)]));
                }
            }
        }
        (Value::Object(single), Value::Object(multi))
    };

    let (body, is_base64) = encode_body(request.body, content_type(request.headers));
    let time = RequestTime::new(request.request_time);
    let domain_name = domain_name(request);
    let user_agent = header_text(request.headers, "user-agent");
    let api_key = request
        .route
        .api_key_required()
        .then(|| header_text(request.headers, "x-api-key"))
        .flatten();

    let mut context = json!({
        "accountId": request.api.account_id,
        "apiId": request.api.api_id,
        "domainName": domain_name,
        "domainPrefix": domain_prefix(&domain_name),
        "extendedRequestId": request.request_id,
        "httpMethod": request.method.as_str(),
        "identity": {
            "accessKey": null,
            "accountId": null,
            "apiKey": api_key,
            "apiKeyId": null,
            "caller": null,
            "cognitoAuthenticationProvider": null,
            "cognitoAuthenticationType": null,
            "cognitoIdentityId": null,
            "cognitoIdentityPoolId": null,
            "principalOrgId": null,
            "sourceIp": request.source_ip.to_string(),
            "user": null,
            "userAgent": user_agent,
            "userArn": null,
        },
        "path": format!("/{}{}", request.api.stage, request.raw_path),
        "protocol": protocol(request.version),
        "requestId": request.request_id,
        "requestTime": time.clf,
        "requestTimeEpoch": time.epoch_millis,
        "resourceId": request.route.resource_id(),
        "resourcePath": request.route.resource(),
        "stage": request.api.stage,
    });
    if let (Some(claims), Some(context)) = (request.claims, context.as_object_mut()) {
        context.insert(
            "authorizer".to_owned(),
            json!({ "claims": claims.rest_v1() }),
        );
    }

    json!({
        "resource": request.route.resource(),
        "path": request.raw_path,
        "httpMethod": request.method.as_str(),
        "headers": non_empty(single_headers),
        "multiValueHeaders": non_empty(multi_headers),
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters(request.path_parameters),
        "stageVariables": null,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": is_base64,
    })
}

/// Builds an HTTP API event (payload format 2.0).
pub fn http_v2_event(request: &ProxyRequest<'_>) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for header in request_headers(request, true) {
        if header.name == "cookie" {
            cookies.extend(
                header
                    .values
                    .iter()
                    .flat_map(|value| value.split(';'))
                    .map(str::trim)
                    .filter(|cookie| !cookie.is_empty())
                    .map(Value::from),
            );
        } else {
            headers.insert(header.name, Value::from(header.values.join(",")));
        }
    }

    let raw_query = request.raw_query.unwrap_or("");
    let mut query: Map<String, Value> = Map::new();
    for (name, value) in parse_query(raw_query) {
        match query.get_mut(&name) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                query.insert(name, Value::from(value));
            }
        }
    }

    let path = percent_encoding::percent_decode_str(request.raw_path)
        .decode_utf8_lossy()
        .into_owned();
    let time = RequestTime::new(request.request_time);
    let domain_name = domain_name(request);
    let route_key = request.route.route_key();

    let mut context = json!({
        "accountId": request.api.account_id,
        "apiId": request.api.api_id,
        "domainName": domain_name,
        "domainPrefix": domain_prefix(&domain_name),
        "http": {
            "method": request.method.as_str(),
            "path": path,
            "protocol": protocol(request.version),
            "sourceIp": request.source_ip.to_string(),
            "userAgent": header_text(request.headers, "user-agent"),
        },
        "requestId": request.request_id,
        "routeKey": route_key,
        "stage": "$default",
        "time": time.clf,
        "timeEpoch": time.epoch_millis,
    });
    if let (Some(claims), Some(context)) = (request.claims, context.as_object_mut()) {
        context.insert(
            "authorizer".to_owned(),
            json!({ "jwt": { "claims": claims.http_v2(), "scopes": claims.scopes() } }),
        );
    }

    let mut event = Map::new();
    event.insert("version".to_owned(), Value::from("2.0"));
    event.insert("routeKey".to_owned(), Value::from(route_key));
    event.insert("rawPath".to_owned(), Value::from(path));
    event.insert("rawQueryString".to_owned(), Value::from(raw_query));
    if !cookies.is_empty() {
        event.insert("cookies".to_owned(), Value::Array(cookies));
    }
    event.insert("headers".to_owned(), Value::Object(headers));
    if !query.is_empty() {
        event.insert("queryStringParameters".to_owned(), Value::Object(query));
    }
    if !request.path_parameters.is_empty() {
        event.insert(
            "pathParameters".to_owned(),
            path_parameters(request.path_parameters),
        );
    }
    event.insert("requestContext".to_owned(), context);
    let (body, is_base64) = encode_body(request.body, content_type(request.headers));
    if let Some(body) = body {
        event.insert("body".to_owned(), Value::from(body));
    }
    event.insert("isBase64Encoded".to_owned(), Value::from(is_base64));
    Value::Object(event)
}

/// One request header for the event: its name as sent and all its values.
struct EventHeader {
    name: String,
    values: Vec<String>,
}

/// The request headers with the forwarding and trace headers applied, names
/// in the client's case (or lower-case when `lower`), in first-seen order.
fn request_headers(request: &ProxyRequest<'_>, lower: bool) -> Vec<EventHeader> {
    let spelled: HashMap<String, &str> = if lower {
        HashMap::new()
    } else {
        let mut spelled = HashMap::new();
        for name in request.header_names {
            spelled
                .entry(name.to_ascii_lowercase())
                .or_insert(name.as_str());
        }
        spelled
    };
    let mut headers: Vec<EventHeader> = Vec::new();
    for name in request.headers.keys() {
        let values = request
            .headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        let name = spelled
            .get(name.as_str())
            .map_or_else(|| name.as_str().to_owned(), |spelled| (*spelled).to_owned());
        headers.push(EventHeader { name, values });
    }

    let mut set = |canonical: &str, values: Vec<String>| {
        let lower_name = canonical.to_ascii_lowercase();
        match headers
            .iter_mut()
            .find(|header| header.name.eq_ignore_ascii_case(&lower_name))
        {
            Some(header) => header.values = values,
            None => headers.push(EventHeader {
                name: if lower {
                    lower_name
                } else {
                    canonical.to_owned()
                },
                values,
            }),
        }
    };
    if let Some(forwarding) = request.forwarding {
        let client = request.source_ip.to_string();
        let chain: Vec<&str> = request
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter(|value| !value.trim().is_empty())
            .collect();
        let forwarded_for = if chain.is_empty() {
            client
        } else {
            format!("{}, {client}", chain.join(", "))
        };
        set("X-Forwarded-For", vec![forwarded_for]);
        set("X-Forwarded-Port", vec![forwarding.port.to_string()]);
        set("X-Forwarded-Proto", vec![forwarding.proto.to_owned()]);
    }
    if let Some(trace_id) = request.trace_id {
        set("X-Amzn-Trace-Id", vec![trace_id.to_owned()]);
    }
    headers
}

/// The last value of a header as text.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(name)
        .iter()
        .next_back()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
}

fn domain_name(request: &ProxyRequest<'_>) -> String {
    header_text(request.headers, "host")
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| request.api.domain_name.clone())
}

/// The first label of a host name (without a port); an IP address stays whole.
fn domain_prefix(domain_name: &str) -> String {
    if domain_name.starts_with('[') {
        let end = domain_name
            .find(']')
            .map_or(domain_name.len(), |end| end + 1);
        return domain_name[..end].to_owned();
    }
    let host = match domain_name.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => domain_name,
    };
    if host.parse::<IpAddr>().is_ok() {
        return host.to_owned();
    }
    host.split('.').next().unwrap_or(host).to_owned()
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn non_empty(map: Map<String, Value>) -> Value {
    if map.is_empty() {
        Value::Null
    } else {
        Value::Object(map)
    }
}

fn path_parameters(parameters: &BTreeMap<String, String>) -> Value {
    if parameters.is_empty() {
        return Value::Null;
    }
    Value::Object(
        parameters
            .iter()
            .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
            .collect(),
    )
}

/// Splits a query string into decoded pairs, in order: `+` is a space, then
/// percent-decoding; a name without `=` has the value `""`.
fn parse_query(raw: &str) -> Vec<(String, String)> {
    fn decode(text: &str) -> String {
        let spaced = text.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    }
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Whether a content type is one whose bodies ESB always base64-encodes.
fn is_binary_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.ends_with("+json") || essence.ends_with("+xml") {
        return false;
    }
    ["image/", "audio/", "video/", "font/"]
        .iter()
        .any(|prefix| essence.starts_with(prefix))
        || matches!(
            essence.as_str(),
            "application/octet-stream"
                | "application/pdf"
                | "application/zip"
                | "application/gzip"
                | "application/x-gzip"
                | "application/x-tar"
                | "application/x-7z-compressed"
                | "application/x-bzip2"
                | "application/zstd"
                | "application/wasm"
                | "application/protobuf"
                | "application/x-protobuf"
                | "application/vnd.google.protobuf"
                | "application/cbor"
                | "application/msgpack"
                | "application/x-msgpack"
        )
}

/// The event's `body` and `isBase64Encoded`.
fn encode_body(body: &[u8], content_type: Option<&str>) -> (Option<String>, bool) {
    if body.is_empty() {
        return (None, false);
    }
    let binary = content_type.is_some_and(is_binary_media_type);
    match std::str::from_utf8(body) {
        Ok(text) if !binary => (Some(text.to_owned()), false),
        _ => (
            Some(base64::engine::general_purpose::STANDARD.encode(body)),
            true,
        ),
    }
}

/// `requestTime` and `requestTimeEpoch` of one request.
struct RequestTime {
    clf: String,
    epoch_millis: u64,
}

impl RequestTime {
    fn new(time: SystemTime) -> RequestTime {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let seconds = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
        RequestTime {
            clf: UtcTime::from_unix_seconds(seconds).clf(),
            epoch_millis: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// A UTC calendar time, for the timestamp formats AWS uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UtcTime {
    year: i64,
    /// 1..=12
    month: usize,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Sunday
    weekday: usize,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

impl UtcTime {
    /// The calendar time of a Unix timestamp (proleptic Gregorian calendar,
    /// Howard Hinnant's `civil_from_days`).
    pub(crate) fn from_unix_seconds(seconds: i64) -> UtcTime {
        let days = seconds.div_euclid(86_400);
        let of_day = seconds.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // All casts below are of values already reduced to small ranges:
        // month 1..=12, day 1..=31, hour < 24, minute/second < 60, weekday < 7.
        UtcTime {
            year,
            month: month as usize,
            day: day as u32,
            hour: (of_day / 3_600) as u32,
            minute: (of_day / 60 % 60) as u32,
            second: (of_day % 60) as u32,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as usize,
        }
    }

    fn month_name(&self) -> &'static str {
        MONTHS[(self.month + 11) % 12]
    }

    /// Common Log Format, as `requestTime`: `15/May/2020:06:01:09 +0000`.
    pub(crate) fn clf(&self) -> String {
        format!(
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            self.day,
            self.month_name(),
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }

    /// ISO 8601 / RFC 3339 with optional milliseconds:
    /// `2020-05-15T06:01:09Z` or `2020-05-15T06:01:09.123Z`.
    pub(crate) fn iso8601(&self, millis: Option<u32>) -> String {
        let fraction = millis.map(|m| format!(".{m:03}")).unwrap_or_default();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// SigV4's basic ISO 8601 form (`X-Amz-Date`): `20200515T060109Z`.
    pub(crate) fn amz_basic(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// Java's `Date.toString()` in UTC, as REST API Cognito authorizers show
    /// `exp` and `iat`: `Sun Dec 17 07:28:12 UTC 2017`.
    pub(crate) fn java_date(&self) -> String {
        format!(
            "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
            WEEKDAYS[self.weekday % 7],
            self.month_name(),
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.year
        )
    }
}

/// An HTTP response mapped from a function's output.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// The status code (100..=599).
    pub status: u16,
    /// The headers, possibly several values per name.
    pub headers: HeaderMap,
    /// The body, base64-decoded when the output said `isBase64Encoded`.
    pub body: Bytes,
}

/// Why a function's output could not be mapped to a response. The caller
/// answers 502 (`{"message": "Internal server error"}`) and logs this; the
/// messages never contain the output itself.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The output is not JSON.
    #[error("function output is not valid json")]
    InvalidJson {
        /// The JSON error (position only).
        #[source]
        source: serde_json::Error,
    },
    /// `statusCode` is not an integer (or integer string) in 100..=599.
    #[error("statusCode is not an integer in 100..=599")]
    InvalidStatusCode,
    /// A REST API proxy response has a field API Gateway does not accept.
    #[error("unexpected field {field:?} in proxy response")]
    UnexpectedField {
        /// The field's name.
        field: String,
    },
    /// `body` is neither a string nor null.
    #[error("body is not a string")]
    InvalidBody,
    /// `isBase64Encoded` is neither a boolean nor `"true"`/`"false"`.
    #[error("{field} is not a boolean")]
    InvalidBase64Flag {
        /// `isBase64Encoded` or `base64Encoded`.
        field: &'static str,
    },
    /// The body is flagged base64 but does not decode.
    #[error("body is flagged base64 but is not valid base64")]
    InvalidBase64Body {
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// `headers`, `multiValueHeaders` or `cookies` has the wrong JSON type.
    #[error("{field} has the wrong shape")]
    InvalidShape {
        /// The field's name.
        field: &'static str,
    },
    /// A header name is not a valid HTTP header name.
    #[error("invalid response header name {name:?}")]
    InvalidHeaderName {
        /// The name.
        name: String,
    },
    /// A header value is not a string, number or boolean, or not a valid
    /// HTTP header value.
    #[error("invalid value for response header {name:?}")]
    InvalidHeaderValue {
        /// The header's name.
        name: String,
    },
}

/// Maps a function's output by the route's payload format.
pub fn map_response(payload: PayloadFormat, output: &[u8]) -> Result<HttpResponse, EventError> {
    match payload {
        PayloadFormat::RestV1 => rest_v1_response(output),
        PayloadFormat::HttpV2 => http_v2_response(output),
    }
}

/// The fields API Gateway accepts in a REST API proxy response (the SAM CLI's
/// list, which mirrors AWS rejecting others with 502).
const REST_V1_RESPONSE_FIELDS: [&str; 7] = [
    "statusCode",
    "headers",
    "multiValueHeaders",
    "body",
    "isBase64Encoded",
    "base64Encoded",
    "cookies",
];

/// Maps the output of a REST API (payload 1.0) function.
///
/// A JSON object with a non-null `statusCode` is a proxy response:
/// `statusCode`, `headers` and `multiValueHeaders` (merged as API Gateway
/// does: all of `multiValueHeaders`, plus each `headers` pair not already
/// there), `body` (base64-decoded when `isBase64Encoded` or `base64Encoded`
/// is true), `Content-Type: application/json` when none is given; any other
/// field is an error, as on AWS.
///
/// Any other JSON output passes through: 200 with the output as the body and
/// `Content-Type: application/json` (the project's rule). AWS instead answers
/// 502 `{"message": "Internal server error"}` for a proxy integration whose
/// function returns anything but a proxy response, and `sam local` treats a
/// missing `statusCode` as 200.
pub fn rest_v1_response(output: &[u8]) -> Result<HttpResponse, EventError> {
    let value: Value =
        serde_json::from_slice(output).map_err(|source| EventError::InvalidJson { source })?;
    let Some(fields) = value
        .as_object()
        .filter(|fields| fields.get("statusCode").is_some_and(|code| !code.is_null()))
    else {
        return Ok(json_pass_through(Bytes::copy_from_slice(output)));
    };
    if let Some(field) = fields
        .keys()
        .find(|key| !REST_V1_RESPONSE_FIELDS.contains(&key.as_str()))
    {
        return Err(EventError::UnexpectedField {
            field: field.clone(),
        });
    }

    let status = status_code(&fields["statusCode"])?;
    let mut headers = HeaderMap::new();
    if let Some(multi) = present(fields, "multiValueHeaders") {
        let multi = multi.as_object().ok_or(EventError::InvalidShape {
            field: "multiValueHeaders",
        })?;
        for (name, values) in multi {
            if values.is_null() {
                continue;
            }
            let values = values.as_array().ok_or(EventError::InvalidShape {
                field: "multiValueHeaders",
            })?;
            let header_name = header_name(name)?;
            for value in values {
                if let Some(value) = header_value(name, value)? {
                    headers.append(header_name.clone(), value);
                }
            }
        }
    }
    if let Some(single) = present(fields, "headers") {
        let single = single
            .as_object()
            .ok_or(EventError::InvalidShape { field: "headers" })?;
        for (name, value) in single {
            let header_name = header_name(name)?;
            if let Some(value) = header_value(name, value)? {
                let already = headers.get_all(&header_name).iter().any(|v| v == value);
                if !already {
                    headers.append(header_name, value);
                }
            }
        }
    }

    let flag = match present(fields, "base64Encoded") {
        Some(flag) => base64_flag(flag, "base64Encoded")?,
        None => present(fields, "isBase64Encoded")
            .map(|flag| base64_flag(flag, "isBase64Encoded"))
            .transpose()?
            .unwrap_or(false),
    };
    let body = response_body(present(fields, "body"), flag)?;
    Ok(finish(status, headers, body))
}

/// Maps the output of an HTTP API (payload 2.0) function.
///
/// A JSON object with a non-null `statusCode` is the full format:
/// `statusCode`, `headers`, `cookies` (one `Set-Cookie` each), `body`,
/// `isBase64Encoded`; other fields are ignored, as on AWS. Any other valid
/// JSON is the simple format, which API Gateway infers: 200, `Content-Type:
/// application/json`, the output as the body (a JSON string's content
/// without the quotes, as in the developer guide's table).
pub fn http_v2_response(output: &[u8]) -> Result<HttpResponse, EventError> {
    let value: Value =
        serde_json::from_slice(output).map_err(|source| EventError::InvalidJson { source })?;
    let fields = match &value {
        Value::Object(fields) if fields.get("statusCode").is_some_and(|code| !code.is_null()) => {
            fields
        }
        Value::String(text) => return Ok(json_pass_through(Bytes::from(text.clone()))),
        _ => return Ok(json_pass_through(Bytes::copy_from_slice(output))),
    };

    let status = status_code(&fields["statusCode"])?;
    let mut headers = HeaderMap::new();
    if let Some(single) = present(fields, "headers") {
        let single = single
            .as_object()
            .ok_or(EventError::InvalidShape { field: "headers" })?;
        for (name, value) in single {
            let header_name = header_name(name)?;
            if let Some(value) = header_value(name, value)? {
                headers.append(header_name, value);
            }
        }
    }
    if let Some(cookies) = present(fields, "cookies") {
        let cookies = cookies
            .as_array()
            .ok_or(EventError::InvalidShape { field: "cookies" })?;
        for cookie in cookies {
            let cookie = cookie
                .as_str()
                .ok_or(EventError::InvalidShape { field: "cookies" })?;
            let value =
                HeaderValue::from_str(cookie).map_err(|_| EventError::InvalidHeaderValue {
                    name: "set-cookie".to_owned(),
                })?;
            headers.append(http::header::SET_COOKIE, value);
        }
    }
    let flag = present(fields, "isBase64Encoded")
        .map(|flag| base64_flag(flag, "isBase64Encoded"))
        .transpose()?
        .unwrap_or(false);
    let body = response_body(present(fields, "body"), flag)?;
    Ok(finish(status, headers, body))
}

/// A field that is present and not null.
fn present<'v>(fields: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    fields.get(name).filter(|value| !value.is_null())
}

fn json_pass_through(body: Bytes) -> HttpResponse {
    finish(200, HeaderMap::new(), body)
}

/// Adds the default `Content-Type` and assembles the response.
fn finish(status: u16, mut headers: HeaderMap, body: Bytes) -> HttpResponse {
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn status_code(value: &Value) -> Result<u16, EventError> {
    let code = match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        _ => None,
    };
    code.filter(|code| (100..=599).contains(code))
        .and_then(|code| u16::try_from(code).ok())
        .ok_or(EventError::InvalidStatusCode)
}

fn base64_flag(value: &Value, field: &'static str) -> Result<bool, EventError> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::String(text) if text == "true" || text == "True" => Ok(true),
        Value::String(text) if text == "false" || text == "False" => Ok(false),
        _ => Err(EventError::InvalidBase64Flag { field }),
    }
}

fn response_body(body: Option<&Value>, base64_encoded: bool) -> Result<Bytes, EventError> {
    let Some(body) = body else {
        return Ok(Bytes::new());
    };
    let text = body.as_str().ok_or(EventError::InvalidBody)?;
    if base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(Bytes::from)
            .map_err(|source| EventError::InvalidBase64Body { source })
    } else {
        Ok(Bytes::from(text.to_owned()))
    }
}

fn header_name(name: &str) -> Result<HeaderName, EventError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| EventError::InvalidHeaderName {
        name: name.to_owned(),
    })
}

/// A header value from JSON: strings, numbers and booleans as text; `null`
/// is no value.
fn header_value(name: &str, value: &Value) -> Result<Option<HeaderValue>, EventError> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Array(_) | Value::Object(_) => {
            return Err(EventError::InvalidHeaderValue {
                name: name.to_owned(),
            })
        }
    };
    HeaderValue::from_str(&text)
        .map(Some)
        .map_err(|_| EventError::InvalidHeaderValue {
            name: name.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use aws_lambda_events::apigw::{
        ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest,
        ApiGatewayV2httpResponse,
    };

    use super::*;
    use crate::route::{RouteConfig, RouteMatch, RouteTable};

    const REST_REQUEST: &str = include_str!("../fixtures/example-apigw-request.json");
    const REST_REQUEST_MULTI: &str =
        include_str!("../fixtures/example-apigw-request-multi-value-parameters.json");
    const REST_RESPONSE: &str = include_str!("../fixtures/example-apigw-response.json");
    const SAM_REST_REQUEST: &str = include_str!("../fixtures/example-apigw-sam-rest-request.json");
    const V2_NO_AUTHORIZER: &str =
        include_str!("../fixtures/example-apigw-v2-request-no-authorizer.json");
    const V2_JWT: &str = include_str!("../fixtures/example-apigw-v2-request-jwt-authorizer.json");
    const V2_MULTI: &str =
        include_str!("../fixtures/example-apigw-v2-request-multi-value-parameters.json");

    fn fixture(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture is json")
    }

    fn routes(
        method: &str,
        path: &str,
        payload: PayloadFormat,
        api_key_required: bool,
    ) -> RouteTable {
        RouteTable::new(vec![RouteConfig {
            method: method.to_owned(),
            path: path.to_owned(),
            function: "Fn".to_owned(),
            payload,
            auth: crate::route::RouteAuth::Jwt,
            api_key_required,
            cors: None,
        }])
        .expect("valid route")
    }

    /// Looks the request up and returns the route and its path parameters.
    fn matched<'t>(
        table: &'t RouteTable,
        method: &Method,
        path: &str,
    ) -> (&'t Route, BTreeMap<String, String>) {
        match table.lookup(method, path) {
            RouteMatch::Found {
                route,
                path_parameters,
            } => (route, path_parameters),
            other => panic!("{method} {path} did not match: {other:?}"),
        }
    }

    /// The headers of a fixture's `multiValueHeaders`, in order, and their
    /// names as spelled.
    fn fixture_headers(multi: &Value) -> (HeaderMap, Vec<String>) {
        let mut headers = HeaderMap::new();
        let mut names = Vec::new();
        for (name, values) in multi.as_object().expect("object") {
            names.push(name.clone());
            for value in values.as_array().expect("array") {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    HeaderValue::from_str(value.as_str().expect("string")).expect("value"),
                );
            }
        }
        (headers, names)
    }

    fn millis(epoch_millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(epoch_millis)
    }

    fn api(stage: &str) -> ApiContext {
        ApiContext {
            account_id: "12345678912".to_owned(),
            api_id: "gy415nuibc".to_owned(),
            stage: stage.to_owned(),
            domain_name: "localhost".to_owned(),
        }
    }

    /// Compares the named fields of two JSON objects (dotted paths).
    fn assert_fields(ours: &Value, theirs: &Value, fields: &[&str]) {
        for field in fields {
            let pointer = format!("/{}", field.replace('.', "/"));
            assert!(
                theirs.pointer(&pointer).is_some(),
                "fixture has no field {field}"
            );
            assert_eq!(
                ours.pointer(&pointer),
                theirs.pointer(&pointer),
                "field {field} differs"
            );
        }
    }

    /// Rebuilds the request of `example-apigw-request.json` and compares the
    /// event with the fixture field by field.
    #[test]
    fn golden_rest_v1_request() {
        let expected = fixture(REST_REQUEST);
        let table = routes("POST", "/{proxy+}", PayloadFormat::RestV1, false);
        let (route, path_parameters) = matched(&table, &Method::POST, "/hello/world");
        let (headers, names) = fixture_headers(&expected["multiValueHeaders"]);
        let api = api("testStage");
        let body = expected["body"].as_str().expect("body");
        let request = ProxyRequest {
            method: &Method::POST,
            raw_path: "/hello/world",
            raw_query: Some("name=me"),
            version: Version::HTTP_11,
            headers: &headers,
            header_names: &names,
            body: body.as_bytes(),
            source_ip: "192.168.196.186".parse().expect("ip"),
            forwarding: None,
            trace_id: None,
            api: &api,
            route,
            path_parameters: &path_parameters,
            claims: None,
            request_id: "deef4878-7910-11e6-8f14-25afc3e9ae33",
            request_time: millis(1_589_522_469_693),
        };
        let event = rest_v1_event(&request);

        assert_fields(
            &event,
            &expected,
            &[
                "resource",
                "path",
                "httpMethod",
                "headers",
                "multiValueHeaders",
                "queryStringParameters",
                "multiValueQueryStringParameters",
                "pathParameters",
                "body",
                "requestContext.accountId",
                "requestContext.apiId",
                "requestContext.stage",
                "requestContext.requestId",
                "requestContext.protocol",
                "requestContext.resourcePath",
                "requestContext.httpMethod",
                "requestContext.requestTime",
                "requestContext.requestTimeEpoch",
                "requestContext.identity.sourceIp",
                "requestContext.identity.userAgent",
            ],
        );
        // Skipped, with reasons: `stageVariables` (ESB has none: null);
        // `requestContext.path` (the fixture was taken through a custom domain
        // without the stage; on execute-api AWS prefixes it, as ESB does);
        // `domainName`/`domainPrefix` (the fixture's differ from its own Host
        // header); `resourceId`, the identity's IAM/Cognito fields and the
        // Lambda-authorizer `authorizer` (generated or not applicable).
        assert_eq!(event["stageVariables"], Value::Null);
        assert_eq!(event["requestContext"]["path"], "/testStage/hello/world");
        assert_eq!(
            event["requestContext"]["domainName"],
            "gy415nuibc.execute-api.us-east-1.amazonaws.com"
        );
        assert_eq!(event["requestContext"]["domainPrefix"], "gy415nuibc");
        assert_eq!(event["requestContext"]["identity"]["caller"], Value::Null);
        assert_eq!(event["requestContext"]["identity"]["apiKey"], Value::Null);
        assert!(event["requestContext"].get("authorizer").is_none());
        assert_eq!(event["isBase64Encoded"], false);

        // Every field the fixture has, ESB sends too.
        assert_same_keys(&event, &expected, &["isBase64Encoded"]);
        assert_same_keys(
            &event["requestContext"],
            &expected["requestContext"],
            &["authorizer", "extendedRequestId"],
        );
        assert_same_keys(
            &event["requestContext"]["identity"],
            &expected["requestContext"]["identity"],
            &["principalOrgId"],
        );
    }

    /// Checks that `ours` has every key of `theirs`, and only `extra` besides.
    fn assert_same_keys(ours: &Value, theirs: &Value, extra: &[&str]) {
        let ours = ours.as_object().expect("object");
        let theirs = theirs.as_object().expect("object");
        for key in theirs.keys() {
            assert!(
                ours.contains_key(key) || extra.contains(&key.as_str()),
                "missing {key}"
            );
        }
        for key in ours.keys() {
            assert!(
                theirs.contains_key(key) || extra.contains(&key.as_str()),
                "unexpected {key}"
            );
        }
    }

    #[test]
    fn golden_rest_v1_multi_value_request() {
        let expected = fixture(REST_REQUEST_MULTI);
        let table = routes("ANY", "/{proxy+}", PayloadFormat::RestV1, false);
        let (route, path_parameters) = matched(&table, &Method::POST, "/hello/world");
        let (headers, names) = fixture_headers(&expected["multiValueHeaders"]);
        let api = api("testStage");
        let request = ProxyRequest {
            method: &Method::POST,
            raw_path: "/hello/world",
            raw_query: Some("name=me&name=me2"),
            version: Version::HTTP_11,
            headers: &headers,
            header_names: &names,
            body: b"",
            source_ip: Ipv4Addr::LOCALHOST.into(),
            forwarding: None,
            trace_id: None,
            api: &api,
            route,
            path_parameters: &path_parameters,
            claims: None,
            request_id: "id",
            request_time: millis(0),
        };
        let event = rest_v1_event(&request);
        assert_fields(
            &event,
            &expected,
            &[
                "headers",
                "multiValueHeaders",
                "multiValueQueryStringParameters",
                "resource",
            ],
        );
        assert_eq!(
            event["headers"]["headerName"], "headerValue2",
            "last value wins"
        );
        // The fixture's single-value query keeps the first value, which
        // contradicts the developer guide's own example
        // (`"multivalueName": "me"` for `["you", "me"]`): AWS keeps the last.
        assert_eq!(event["queryStringParameters"]["name"], "me2");
        assert_eq!(event["body"], Value::Null);
    }

    /// `example-apigw-sam-rest-request.json`: a GET without body, query or
    /// path parameters, where AWS sends nulls.
    #[test]
    fn golden_rest_v1_get_without_query_or_body() {
        let expected = fixture(SAM_REST_REQUEST);
        let table = routes("GET", "/test", PayloadFormat::RestV1, false);
        let (route, path_parameters) = matched(&table, &Method::GET, "/test");
        let (headers, names) = fixture_headers(&expected["multiValueHeaders"]);
        let api = ApiContext {
            account_id: "123456789012".to_owned(),
            api_id: "1234567890".to_owned(),
            stage: "Prod".to_owned(),
            domain_name: "localhost".to_owned(),
        };
        let request = ProxyRequest {
            method: &Method::GET,
            raw_path: "/test",
            raw_query: None,
            version: Version::HTTP_11,
            headers: &headers,
            header_names: &names,
            body: b"",
            source_ip: Ipv4Addr::LOCALHOST.into(),
            forwarding: None,
            trace_id: None,
            api: &api,
            route,
            path_parameters: &path_parameters,
            claims: None,
            request_id: "ea86b9eb-c688-4bbb-8309-a1671442bea9",
            request_time: millis(1_706_439_946_000),
        };
        let event = rest_v1_event(&request);
        assert_fields(
            &event,
            &expected,
            &[
                "body",
                "headers",
                "multiValueHeaders",
                "httpMethod",
                "isBase64Encoded",
                "multiValueQueryStringParameters",
                "queryStringParameters",
                "path",
                "pathParameters",
                "resource",
                "stageVariables",
                "requestContext.accountId",
                "requestContext.apiId",
                "requestContext.domainName",
                "requestContext.httpMethod",
                "requestContext.identity.sourceIp",
                "requestContext.protocol",
                "requestContext.requestId",
                "requestContext.requestTime",
                "requestContext.resourcePath",
                "requestContext.stage",
            ],
        );
        // `sam local` reports `requestTimeEpoch` in seconds and leaves the
        // stage out of `requestContext.path`; AWS does neither.
        assert_eq!(
            event["requestContext"]["requestTimeEpoch"],
            1_706_439_946_000_u64
        );
        assert_eq!(event["requestContext"]["path"], "/Prod/test");
    }

    fn simple_request<'a>(
        route: &'a Route,
        path_parameters: &'a BTreeMap<String, String>,
        headers: &'a HeaderMap,
        api: &'a ApiContext,
    ) -> ProxyRequest<'a> {
        ProxyRequest {
            method: &Method::GET,
            raw_path: "/",
            raw_query: None,
            version: Version::HTTP_11,
            headers,
            header_names: &[],
            body: b"",
            source_ip: Ipv4Addr::new(203, 0, 113, 7).into(),
            forwarding: None,
            trace_id: None,
            api,
            route,
            path_parameters,
            claims: None,
            request_id: "req-1",
            request_time: millis(1_587_481_701_067),
        }
    }

    #[test]
    fn rest_v1_event_deserializes_into_the_official_type() {
        let table = routes("PUT", "/items/{id}", PayloadFormat::RestV1, true);
        let (route, path_parameters) = matched(&table, &Method::PUT, "/items/a%20b");
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("api.example.com:8443"));
        headers.insert("user-agent", HeaderValue::from_static("curl/8.5.0"));
        headers.insert("x-api-key", HeaderValue::from_static("key-1"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("accept", HeaderValue::from_static("text/plain"));
        headers.append("accept", HeaderValue::from_static("application/json"));
        let api = api("Prod");
        let claims = Claims::from_verified(
            json!({"sub": "u-1", "cognito:username": "alice", "exp": 1_513_495_692, "token_use": "id"})
                .as_object()
                .expect("object")
                .clone(),
        );
        let request = ProxyRequest {
            method: &Method::PUT,
            raw_path: "/items/a%20b",
            raw_query: Some("q=1&q=2&flag&x=a+b%2Bc"),
            body: br#"{"name":"x"}"#,
            claims: Some(&claims),
            ..simple_request(route, &path_parameters, &headers, &api)
        };
        let event = rest_v1_event(&request);
        let official: ApiGatewayProxyRequest = serde_json::from_value(event.clone())
            .expect("deserializes into ApiGatewayProxyRequest");

        assert_eq!(official.http_method, Method::PUT);
        assert_eq!(official.resource.as_deref(), Some("/items/{id}"));
        assert_eq!(official.path.as_deref(), Some("/items/a%20b"));
        assert_eq!(
            official.path_parameters.get("id").map(String::as_str),
            Some("a b")
        );
        assert_eq!(official.query_string_parameters.first("q"), Some("2"));
        assert_eq!(
            official.multi_value_query_string_parameters.all("q"),
            Some(vec!["1", "2"])
        );
        assert_eq!(official.query_string_parameters.first("flag"), Some(""));
        assert_eq!(official.query_string_parameters.first("x"), Some("a b+c"));
        assert_eq!(official.body.as_deref(), Some(r#"{"name":"x"}"#));
        assert!(!official.is_base64_encoded);
        let accept: Vec<_> = official
            .multi_value_headers
            .get_all("accept")
            .iter()
            .collect();
        assert_eq!(accept, ["text/plain", "application/json"]);

        let context = &official.request_context;
        assert_eq!(context.stage.as_deref(), Some("Prod"));
        assert_eq!(context.path.as_deref(), Some("/Prod/items/a%20b"));
        assert_eq!(context.resource_path.as_deref(), Some("/items/{id}"));
        assert_eq!(context.domain_name.as_deref(), Some("api.example.com:8443"));
        assert_eq!(context.domain_prefix.as_deref(), Some("api"));
        assert_eq!(
            context.request_time.as_deref(),
            Some("21/Apr/2020:15:08:21 +0000")
        );
        assert_eq!(context.request_time_epoch, 1_587_481_701_067);
        assert_eq!(context.identity.source_ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(context.identity.user_agent.as_deref(), Some("curl/8.5.0"));
        assert_eq!(context.identity.api_key.as_deref(), Some("key-1"));
        assert_eq!(context.resource_id.as_deref(), Some(route.resource_id()));

        let claims = &event["requestContext"]["authorizer"]["claims"];
        assert_eq!(claims["cognito:username"], "alice");
        assert_eq!(claims["exp"], "Sun Dec 17 07:28:12 UTC 2017");
    }

    #[test]
    fn rest_v1_event_for_a_bare_get() {
        let table = routes("GET", "/", PayloadFormat::RestV1, false);
        let (route, path_parameters) = matched(&table, &Method::GET, "/");
        let headers = HeaderMap::new();
        let api = api("Prod");
        let event = rest_v1_event(&simple_request(route, &path_parameters, &headers, &api));
        for null in [
            "headers",
            "multiValueHeaders",
            "queryStringParameters",
            "multiValueQueryStringParameters",
            "pathParameters",
            "stageVariables",
            "body",
        ] {
            assert_eq!(event[null], Value::Null, "{null}");
        }
        assert_eq!(event["requestContext"]["domainName"], "localhost");
        assert_eq!(
            event["requestContext"]["identity"]["userAgent"],
            Value::Null
        );
        assert_eq!(event["requestContext"]["identity"]["apiKey"], Value::Null);
        assert_eq!(event["requestContext"]["path"], "/Prod/");
        // An empty query string is no query string.
        let request = ProxyRequest {
            raw_query: Some(""),
            ..simple_request(route, &path_parameters, &headers, &api)
        };
        assert_eq!(
            rest_v1_event(&request)["multiValueQueryStringParameters"],
            Value::Null
        );
        let official: ApiGatewayProxyRequest = serde_json::from_value(event).expect("deserializes");
        assert!(official.body.is_none());
    }

    #[test]
    fn forwarding_and_trace_headers_are_added_like_api_gateway() {
        let table = routes("GET", "/", PayloadFormat::RestV1, false);
        let (route, path_parameters) = matched(&table, &Method::GET, "/");
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("gopher"));
        headers.insert(
            "x-amzn-trace-id",
            HeaderValue::from_static("client-supplied"),
        );
        let names = vec!["x-forwarded-for".to_owned(), "X-Forwarded-Proto".to_owned()];
        let api = api("Prod");
        let request = ProxyRequest {
            header_names: &names,
            forwarding: Some(Forwarding {
                proto: "https",
                port: 8443,
            }),
            trace_id: Some("Root=1-5e9f0c65-1de4d666d4dd26aced652b6c"),
            ..simple_request(route, &path_parameters, &headers, &api)
        };
        let event = rest_v1_event(&request);
        let headers = &event["headers"];
        assert_eq!(headers["x-forwarded-for"], "198.51.100.1, 203.0.113.7");
        assert_eq!(headers["X-Forwarded-Proto"], "https");
        assert_eq!(headers["X-Forwarded-Port"], "8443");
        assert_eq!(
            headers["x-amzn-trace-id"],
            "Root=1-5e9f0c65-1de4d666d4dd26aced652b6c"
        );
        assert_eq!(
            event["multiValueHeaders"]["X-Forwarded-Port"],
            json!(["8443"])
        );
        assert_eq!(headers.as_object().expect("object").len(), 4);

        // Without a client X-Forwarded-For, the client address is the chain.
        let empty = HeaderMap::new();
        let request = ProxyRequest {
            forwarding: Some(Forwarding {
                proto: "http",
                port: 80,
            }),
            ..simple_request(route, &path_parameters, &empty, &api)
        };
        let event = rest_v1_event(&request);
        assert_eq!(event["headers"]["X-Forwarded-For"], "203.0.113.7");
        let v2 = http_v2_event(&request);
        assert_eq!(v2["headers"]["x-forwarded-for"], "203.0.113.7");
        assert_eq!(v2["headers"]["x-forwarded-proto"], "http");
    }

    #[test]
    fn header_names_fall_back_to_lower_case() {
        let table = routes("GET", "/", PayloadFormat::RestV1, false);
        let (route, path_parameters) = matched(&table, &Method::GET, "/");
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.insert("x-custom", HeaderValue::from_static("1"));
        let names = vec!["Content-Type".to_owned(), "CONTENT-TYPE".to_owned()];
        let api = api("Prod");
        let request = ProxyRequest {
            header_names: &names,
            ..simple_request(route, &path_parameters, &headers, &api)
        };
        let event = rest_v1_event(&request);
        assert_eq!(
            event["headers"],
            json!({"Content-Type": "text/plain", "x-custom": "1"})
        );
    }

    #[test]
    fn binary_bodies_are_base64_encoded() {
        let table = routes("POST", "/", PayloadFormat::RestV1, false);
        let (route, path_parameters) = matched(&table, &Method::POST, "/");
        let api = api("Prod");
        let cases: &[(Option<&'static str>, &[u8], bool)] = &[
            (None, b"plain text", false),
            (Some("application/json"), "{\"é\":1}".as_bytes(), false),
            (Some("application/x-www-form-urlencoded"), b"a=1&b=2", false),
            (Some("image/svg+xml"), b"<svg/>", false),
            (Some("application/vnd.api+json"), b"{}", false),
            (Some("text/plain"), &[0xff, 0xfe, 0x00], true),
            (None, &[0x89, b'P', b'N', b'G', 0x0d, 0x0a], true),
            (Some("image/png"), b"PNG-looking-utf8", true),
            (Some("Application/Octet-Stream; charset=x"), b"abc", true),
            (Some("application/pdf"), b"%PDF-1.7", true),
        ];
        for (content_type, body, binary) in cases {
            let mut headers = HeaderMap::new();
            if let Some(content_type) = content_type {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            }
            let request = ProxyRequest {
                method: &Method::POST,
                body,
                ..simple_request(route, &path_parameters, &headers, &api)
            };
            for event in [rest_v1_event(&request), http_v2_event(&request)] {
                assert_eq!(event["isBase64Encoded"], *binary, "{content_type:?}");
                let sent = event["body"].as_str().expect("body");
                let decoded = if *binary {
                    base64::engine::general_purpose::STANDARD
                        .decode(sent)
                        .expect("base64")
                } else {
                    sent.as_bytes().to_vec()
                };
                assert_eq!(decoded, *body, "{content_type:?}: body must round-trip");
            }
        }
    }

    #[test]
    fn query_strings_are_decoded_like_api_gateway() {
        assert_eq!(
            parse_query("sort=-+createdAt&e=a%2Bb%40c&&k&=v&u=%E2%9C%93&bad=%ZZ"),
            vec![
                ("sort".to_owned(), "- createdAt".to_owned()),
                ("e".to_owned(), "a+b@c".to_owned()),
                ("k".to_owned(), String::new()),
                (String::new(), "v".to_owned()),
                ("u".to_owned(), "✓".to_owned()),
                ("bad".to_owned(), "%ZZ".to_owned()),
            ]
        );
        assert!(parse_query("").is_empty());
    }

    #[test]
    fn times_are_formatted_like_aws() {
        assert_eq!(
            UtcTime::from_unix_seconds(1_589_522_469).clf(),
            "15/May/2020:06:01:09 +0000"
        );
        assert_eq!(
            UtcTime::from_unix_seconds(0).clf(),
            "01/Jan/1970:00:00:00 +0000"
        );
        assert_eq!(
            UtcTime::from_unix_seconds(0).java_date(),
            "Thu Jan 01 00:00:00 UTC 1970"
        );
        assert_eq!(
            UtcTime::from_unix_seconds(1_513_495_692).java_date(),
            "Sun Dec 17 07:28:12 UTC 2017"
        );
        // Leap day, end of a century leap year, and a date before 1970.
        assert_eq!(
            UtcTime::from_unix_seconds(951_782_400).clf(),
            "29/Feb/2000:00:00:00 +0000"
        );
        assert_eq!(
            UtcTime::from_unix_seconds(978_307_199).java_date(),
            "Sun Dec 31 23:59:59 UTC 2000"
        );
        assert_eq!(
            UtcTime::from_unix_seconds(-1).clf(),
            "31/Dec/1969:23:59:59 +0000"
        );
        assert_eq!(
            UtcTime::from_unix_seconds(-1).java_date(),
            "Wed Dec 31 23:59:59 UTC 1969"
        );
    }

    #[test]
    fn domain_prefix_is_the_first_label() {
        assert_eq!(
            domain_prefix("aaaaaaaaaa.execute-api.us-west-2.amazonaws.com"),
            "aaaaaaaaaa"
        );
        assert_eq!(domain_prefix("localhost:8443"), "localhost");
        assert_eq!(domain_prefix("127.0.0.1:3000"), "127.0.0.1");
        assert_eq!(domain_prefix("[::1]:8443"), "[::1]");
        assert_eq!(domain_prefix("::1"), "::1");
    }

    /// `example-apigw-v2-request-no-authorizer.json`, captured from a curl GET.
    #[test]
    fn golden_http_v2_request() {
        let expected = fixture(V2_NO_AUTHORIZER);
        let table = routes("GET", "/", PayloadFormat::HttpV2, false);
        let (route, path_parameters) = matched(&table, &Method::GET, "/");
        let mut headers = HeaderMap::new();
        for (name, value) in expected["headers"].as_object().expect("headers") {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value.as_str().expect("string")).expect("value"),
            );
        }
        let api = ApiContext {
            account_id: "123456789012".to_owned(),
            api_id: "aaaaaaaaaa".to_owned(),
            stage: "Prod".to_owned(),
            domain_name: "unused".to_owned(),
        };
        let request = ProxyRequest {
            method: &Method::GET,
            raw_path: "/",
            raw_query: None,
            version: Version::HTTP_11,
            headers: &headers,
            header_names: &[],
            body: b"",
            source_ip: "1.2.3.4".parse().expect("ip"),
            forwarding: None,
            trace_id: None,
            api: &api,
            route,
            path_parameters: &path_parameters,
            claims: None,
            request_id: "LV7fzho-PHcEJPw=",
            request_time: millis(1_587_481_701_067),
        };
        let event = http_v2_event(&request);
        assert_fields(
            &event,
            &expected,
            &[
                "version",
                "rawPath",
                "rawQueryString",
                "headers",
                "isBase64Encoded",
                "requestContext.accountId",
                "requestContext.apiId",
                "requestContext.domainName",
                "requestContext.domainPrefix",
                "requestContext.http",
                "requestContext.requestId",
                "requestContext.stage",
                "requestContext.time",
                "requestContext.timeEpoch",
            ],
        );
        // The fixture's API has only the `$default` route; ESB routes are
        // explicit (`GET /`). `authentication` is mTLS, which ESB does not
        // pass per request.
        assert_eq!(event["routeKey"], "GET /");
        assert_eq!(event["requestContext"]["routeKey"], "GET /");
        assert_same_keys(&event, &expected, &[]);
        assert_same_keys(
            &event["requestContext"],
            &expected["requestContext"],
            &["authentication"],
        );

        let official: ApiGatewayV2httpRequest =
            serde_json::from_value(event).expect("deserializes into ApiGatewayV2httpRequest");
        assert_eq!(official.raw_path.as_deref(), Some("/"));
        assert_eq!(official.request_context.http.method, Method::GET);
        assert_eq!(official.request_context.time_epoch, 1_587_481_701_067);
    }

    /// The query, cookie and claim handling of the JWT-authorizer fixture and
    /// the header joining of the multi-value fixture.
    #[test]
    fn golden_http_v2_query_cookies_claims_and_repeated_headers() {
        let jwt = fixture(V2_JWT);
        let multi = fixture(V2_MULTI);
        let table = routes("ANY", "/{proxy+}", PayloadFormat::HttpV2, false);
        let (route, path_parameters) = matched(&table, &Method::GET, "/hello/world");
        let mut headers = HeaderMap::new();
        headers.append("cookie", HeaderValue::from_static("cookie1; cookie2"));
        headers.append("header2", HeaderValue::from_static("value1"));
        headers.append("header2", HeaderValue::from_static("value2"));
        let api = api("Prod");
        let claims = Claims::from_verified(
            json!({"claim1": "value1", "claim2": "value2", "scope": "scope1 scope2"})
                .as_object()
                .expect("object")
                .clone(),
        );
        let raw_query = jwt["rawQueryString"].as_str().expect("raw query");
        let request = ProxyRequest {
            method: &Method::GET,
            raw_path: "/hello/world",
            raw_query: Some(raw_query),
            headers: &headers,
            claims: Some(&claims),
            ..simple_request(route, &path_parameters, &headers, &api)
        };
        let event = http_v2_event(&request);
        assert_fields(
            &event,
            &jwt,
            &[
                "rawQueryString",
                "queryStringParameters",
                "cookies",
                "pathParameters",
                "requestContext.authorizer.jwt.scopes",
            ],
        );
        let claims = &event["requestContext"]["authorizer"]["jwt"]["claims"];
        assert_eq!(
            claims["claim1"],
            jwt["requestContext"]["authorizer"]["jwt"]["claims"]["claim1"]
        );
        assert_eq!(
            claims["claim2"],
            jwt["requestContext"]["authorizer"]["jwt"]["claims"]["claim2"]
        );
        // The fixture's header names are capitalised (a documentation
        // example); captured events have them lower-case, as ESB sends them.
        assert_eq!(event["headers"]["header2"], multi["headers"]["Header2"]);
        assert!(
            event["headers"].get("cookie").is_none(),
            "cookies are not headers in 2.0"
        );
        assert_eq!(event["rawPath"], "/hello/world");

        let official: ApiGatewayV2httpRequest =
            serde_json::from_value(event).expect("deserializes");
        assert_eq!(
            official.cookies,
            Some(vec!["cookie1".to_owned(), "cookie2".to_owned()])
        );
        assert_eq!(
            official.path_parameters.get("proxy").map(String::as_str),
            Some("hello/world")
        );
    }

    #[test]
    fn http_v2_event_paths_and_empty_parts() {
        let table = routes("GET", "/files/{key}", PayloadFormat::HttpV2, false);
        let (route, path_parameters) = matched(&table, &Method::GET, "/files/a%20b");
        let headers = HeaderMap::new();
        let api = api("Prod");
        let request = ProxyRequest {
            raw_path: "/files/a%20b",
            ..simple_request(route, &path_parameters, &headers, &api)
        };
        let event = http_v2_event(&request);
        assert_eq!(event["rawPath"], "/files/a b");
        assert_eq!(event["requestContext"]["http"]["path"], "/files/a b");
        assert_eq!(event["pathParameters"], json!({"key": "a b"}));
        assert_eq!(event["routeKey"], "GET /files/{key}");
        assert_eq!(event["requestContext"]["stage"], "$default");
        assert_eq!(event["rawQueryString"], "");
        assert_eq!(event["headers"], json!({}));
        for absent in ["cookies", "queryStringParameters", "body", "stageVariables"] {
            assert!(event.get(absent).is_none(), "{absent}");
        }
        assert!(event["requestContext"].get("authorizer").is_none());
    }

    #[test]
    fn build_event_follows_the_route_payload() {
        let headers = HeaderMap::new();
        let api = api("Prod");
        for (payload, has_version) in [
            (PayloadFormat::RestV1, false),
            (PayloadFormat::HttpV2, true),
        ] {
            let table = routes("GET", "/", payload, false);
            let (route, path_parameters) = matched(&table, &Method::GET, "/");
            let event = build_event(&simple_request(route, &path_parameters, &headers, &api));
            assert_eq!(event.get("version").is_some(), has_version, "{payload:?}");
        }
    }

    fn header_values(response: &HttpResponse, name: &str) -> Vec<String> {
        response
            .headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().expect("text").to_owned())
            .collect()
    }

    /// `example-apigw-response.json`: the same pairs in `headers` and
    /// `multiValueHeaders` appear once each.
    #[test]
    fn golden_rest_v1_response() {
        let expected = fixture(REST_RESPONSE);
        let response = rest_v1_response(REST_RESPONSE.as_bytes()).expect("maps");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, Bytes::from_static(b"Hello World"));
        for (name, values) in expected["multiValueHeaders"].as_object().expect("object") {
            let values: Vec<String> = values
                .as_array()
                .expect("array")
                .iter()
                .map(|v| v.as_str().expect("string").to_owned())
                .collect();
            assert_eq!(header_values(&response, name), values, "{name}");
        }
        // The fixture has no Content-Type, so API Gateway's default is added.
        assert_eq!(
            header_values(&response, "content-type"),
            ["application/json"]
        );
        assert_eq!(
            response.headers.keys_len(),
            expected["multiValueHeaders"]
                .as_object()
                .expect("object")
                .len()
                + 1
        );
    }

    #[test]
    fn rest_v1_response_merges_headers_and_decodes_base64() {
        let output = json!({
            "statusCode": "201",
            "headers": {"Set-Cookie": "a=1", "X-Single": "s", "X-Num": 5, "X-Null": null, "Content-Type": "image/png"},
            "multiValueHeaders": {"set-cookie": ["b=2", "a=1"], "X-Multi": ["m1", "m2"]},
            "body": base64::engine::general_purpose::STANDARD.encode([0u8, 159, 146, 150]),
            "isBase64Encoded": true,
        });
        let response = rest_v1_response(output.to_string().as_bytes()).expect("maps");
        assert_eq!(response.status, 201);
        assert_eq!(response.body, Bytes::from_static(&[0, 159, 146, 150]));
        assert_eq!(header_values(&response, "set-cookie"), ["b=2", "a=1"]);
        assert_eq!(header_values(&response, "x-multi"), ["m1", "m2"]);
        assert_eq!(header_values(&response, "x-single"), ["s"]);
        assert_eq!(header_values(&response, "x-num"), ["5"]);
        assert!(response.headers.get("x-null").is_none());
        assert_eq!(header_values(&response, "content-type"), ["image/png"]);

        // `base64Encoded` wins over `isBase64Encoded` (REST only), and the
        // string forms of the flag are accepted.
        let output = json!({"statusCode": 200, "body": "aGk=", "base64Encoded": "True", "isBase64Encoded": false});
        assert_eq!(
            rest_v1_response(output.to_string().as_bytes())
                .expect("maps")
                .body,
            Bytes::from_static(b"hi")
        );
        // A missing or null body is empty.
        let response = rest_v1_response(br#"{"statusCode":204,"body":null}"#).expect("maps");
        assert_eq!((response.status, response.body.len()), (204, 0));
    }

    #[test]
    fn official_response_types_map_back() {
        let mut official = ApiGatewayProxyResponse::default();
        official.status_code = 418;
        official
            .headers
            .insert("x-teapot", HeaderValue::from_static("yes"));
        official
            .multi_value_headers
            .append("x-multi", HeaderValue::from_static("1"));
        official
            .multi_value_headers
            .append("x-multi", HeaderValue::from_static("2"));
        official.body = Some(aws_lambda_events::encodings::Body::Binary(vec![1, 2, 3]));
        official.is_base64_encoded = true;
        let output = serde_json::to_vec(&official).expect("serializes");
        let response = rest_v1_response(&output).expect("maps");
        assert_eq!(response.status, 418);
        assert_eq!(header_values(&response, "x-teapot"), ["yes"]);
        assert_eq!(header_values(&response, "x-multi"), ["1", "2"]);
        assert_eq!(response.body, Bytes::from_static(&[1, 2, 3]));

        let mut official = ApiGatewayV2httpResponse::default();
        official.status_code = 302;
        official
            .headers
            .insert("location", HeaderValue::from_static("/next"));
        official.cookies = vec!["a=1; Path=/".to_owned(), "b=2".to_owned()];
        official.body = Some(aws_lambda_events::encodings::Body::Text("moved".to_owned()));
        let output = serde_json::to_vec(&official).expect("serializes");
        let response = http_v2_response(&output).expect("maps");
        assert_eq!(response.status, 302);
        assert_eq!(header_values(&response, "location"), ["/next"]);
        assert_eq!(
            header_values(&response, "set-cookie"),
            ["a=1; Path=/", "b=2"]
        );
        assert_eq!(response.body, Bytes::from_static(b"moved"));
    }

    #[test]
    fn rest_v1_output_without_status_code_passes_through_as_json() {
        for output in [
            &br#"{"message":"hello"}"#[..],
            br#"{"body":"x","statusCode":null}"#,
            br#"["a",1]"#,
            br#""text""#,
            b"42",
            b"null",
            b" {\"spaced\" : true} ",
        ] {
            let response = rest_v1_response(output).expect("passes through");
            assert_eq!(response.status, 200);
            assert_eq!(response.body, Bytes::copy_from_slice(output));
            assert_eq!(
                header_values(&response, "content-type"),
                ["application/json"]
            );
        }
    }

    /// An output and a check of the error it must produce.
    type ErrorCase = (&'static [u8], fn(&EventError) -> bool);

    #[test]
    fn malformed_outputs_are_errors() {
        let cases: &[ErrorCase] = &[
            (b"", |e| matches!(e, EventError::InvalidJson { .. })),
            (b"not json", |e| matches!(e, EventError::InvalidJson { .. })),
            (br#"{"statusCode":"abc"}"#, |e| {
                matches!(e, EventError::InvalidStatusCode)
            }),
            (br#"{"statusCode":99}"#, |e| {
                matches!(e, EventError::InvalidStatusCode)
            }),
            (br#"{"statusCode":600}"#, |e| {
                matches!(e, EventError::InvalidStatusCode)
            }),
            (br#"{"statusCode":200.5}"#, |e| {
                matches!(e, EventError::InvalidStatusCode)
            }),
            (br#"{"statusCode":true}"#, |e| {
                matches!(e, EventError::InvalidStatusCode)
            }),
            (br#"{"statusCode":200,"body":{"a":1}}"#, |e| {
                matches!(e, EventError::InvalidBody)
            }),
            (br#"{"statusCode":200,"body":5}"#, |e| {
                matches!(e, EventError::InvalidBody)
            }),
            (
                br#"{"statusCode":200,"extra":1}"#,
                |e| matches!(e, EventError::UnexpectedField { field } if field == "extra"),
            ),
            (br#"{"statusCode":200,"isBase64Encoded":"yes"}"#, |e| {
                matches!(e, EventError::InvalidBase64Flag { .. })
            }),
            (
                br#"{"statusCode":200,"isBase64Encoded":true,"body":"***"}"#,
                |e| matches!(e, EventError::InvalidBase64Body { .. }),
            ),
            (br#"{"statusCode":200,"headers":[1]}"#, |e| {
                matches!(e, EventError::InvalidShape { field: "headers" })
            }),
            (
                br#"{"statusCode":200,"multiValueHeaders":{"a":"b"}}"#,
                |e| {
                    matches!(
                        e,
                        EventError::InvalidShape {
                            field: "multiValueHeaders"
                        }
                    )
                },
            ),
            (br#"{"statusCode":200,"headers":{"bad name":"x"}}"#, |e| {
                matches!(e, EventError::InvalidHeaderName { .. })
            }),
            (br#"{"statusCode":200,"headers":{"x":"a\nb"}}"#, |e| {
                matches!(e, EventError::InvalidHeaderValue { .. })
            }),
            (br#"{"statusCode":200,"headers":{"x":{"y":1}}}"#, |e| {
                matches!(e, EventError::InvalidHeaderValue { .. })
            }),
        ];
        for (output, is_expected) in cases {
            let shown = String::from_utf8_lossy(output);
            let err = rest_v1_response(output).expect_err(&format!("{shown} must fail"));
            assert!(is_expected(&err), "{shown}: unexpected {err:?}");
        }
        // The same checks apply to 2.0's full format, which also checks cookies.
        for output in [
            &br#"{"statusCode":"x"}"#[..],
            br#"{"statusCode":200,"body":[]}"#,
            br#"{"statusCode":200,"cookies":"a=1"}"#,
            br#"{"statusCode":200,"cookies":[1]}"#,
            b"{",
        ] {
            assert!(
                http_v2_response(output).is_err(),
                "{}",
                String::from_utf8_lossy(output)
            );
        }
    }

    /// The developer guide's table of how API Gateway interprets 2.0 outputs
    /// without `statusCode`.
    #[test]
    fn http_v2_simple_format_is_inferred() {
        let response = http_v2_response(br#""Hello from Lambda!""#).expect("maps");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, Bytes::from_static(b"Hello from Lambda!"));
        assert_eq!(
            header_values(&response, "content-type"),
            ["application/json"]
        );

        let output = br#"{ "message": "Hello from Lambda!" }"#;
        let response = http_v2_response(output).expect("maps");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, Bytes::copy_from_slice(output));
        assert_eq!(
            header_values(&response, "content-type"),
            ["application/json"]
        );

        let response = http_v2_response(b"[1,2]").expect("maps");
        assert_eq!(response.body, Bytes::from_static(b"[1,2]"));
    }

    #[test]
    fn http_v2_full_format() {
        let output = json!({
            "statusCode": 200,
            "headers": {"content-type": "text/html", "x-a": "1,2"},
            "cookies": ["c=1", "d=2; Secure"],
            "multiValueHeaders": {"ignored": ["x"]},
            "unknownField": true,
            "body": "PGh0bWw+",
            "isBase64Encoded": true,
        });
        let response = http_v2_response(output.to_string().as_bytes()).expect("maps");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, Bytes::from_static(b"<html>"));
        assert_eq!(header_values(&response, "content-type"), ["text/html"]);
        assert_eq!(header_values(&response, "x-a"), ["1,2"]);
        assert_eq!(
            header_values(&response, "set-cookie"),
            ["c=1", "d=2; Secure"]
        );
        assert!(response.headers.get("ignored").is_none());
    }

    #[test]
    fn map_response_follows_the_payload() {
        // Extra fields are an error for REST but ignored for HTTP APIs.
        let output = br#"{"statusCode":200,"body":"x","extra":1}"#;
        assert!(map_response(PayloadFormat::RestV1, output).is_err());
        assert_eq!(
            map_response(PayloadFormat::HttpV2, output)
                .expect("maps")
                .body,
            Bytes::from_static(b"x")
        );
    }
}
