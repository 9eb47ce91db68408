//! The client-facing HTTP API: login, the template's routes, health,
//! metrics and the admin API. Served identically on HTTPS and HTTP.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::json;

use esb_contracts::trace::{is_valid_trace_header, new_trace_id};

use crate::cors;
use crate::error::ApiError;
use crate::event;
use crate::function;
use crate::invocation;
use crate::limits;
use crate::route::{RouteAuth, RouteMatch};
use crate::worker::WorkerRequest;
use crate::Gateway;

/// Largest request body accepted on a route: Lambda's synchronous limit.
pub const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;

/// How much of an oversized body is still read (and dropped) so that the
/// client, busy sending it, reads the 413 instead of a connection reset.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The connection failed while reading.
    Read,
}

/// Reads a request body of at most `limit` bytes. The rest of a longer
/// one is drained (within [`DRAIN_LIMIT`] and [`DRAIN_TIMEOUT`]) before the
/// caller answers 413.
pub(crate) async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut buffer = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Read)?.into_data() else {
            continue;
        };
        if buffer.len() + data.len() > limit {
            let drain = async {
                let mut drained = 0usize;
                while let Some(Ok(frame)) = body.frame().await {
                    drained += frame.data_ref().map_or(0, Bytes::len);
                    if drained > DRAIN_LIMIT {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
            return Err(BodyError::TooLarge);
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer.freeze())
}

/// The scheme and port a request came in on, for `X-Forwarded-*`.
#[derive(Debug, Clone, Copy)]
pub struct LocalPort(pub (&'static str, u16));

/// The ids of one request, on every response.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    pub trace_id: String,
}

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/user/auth/v1", post(login))
        .route("/admin/v1/functions", get(admin_functions))
        .route("/admin/v1/routes", get(admin_routes))
        .route("/admin/v1/pools", get(admin_pools))
        .route("/admin/v1/nodes", get(admin_nodes))
        .route("/admin/v1/workers", get(admin_workers))
        .route("/admin/v1/deployments", get(admin_deployments))
        .route("/admin/v1/invocations", get(admin_invocations))
        .route("/2015-03-31/functions", get(function::list))
        .route("/2015-03-31/functions/", get(function::list))
        .route("/2015-03-31/functions/{function}", get(function::get))
        .route(
            "/2015-03-31/functions/{function}/configuration",
            get(function::get_configuration),
        )
        .route(
            "/2015-03-31/functions/{function}/invocations",
            post(invocation::invoke),
        )
        .fallback(dispatch)
        .layer(middleware::from_fn(request_ids))
        .with_state(gateway)
}

/// Gives every request an `x-amzn-RequestId` and an `X-Amzn-Trace-Id`
/// (the caller's when it sent a valid one) and puts both on the response.
async fn request_ids(mut request: Request, next: Next) -> Response {
    let trace_id = request
        .headers()
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .filter(|t| is_valid_trace_header(t))
        .map(str::to_owned)
        .unwrap_or_else(new_trace_id);
    let ids = RequestIds {
        request_id: uuid::Uuid::new_v4().to_string(),
        trace_id,
    };
    request.extensions_mut().insert(ids.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %ids.request_id,
        trace_id = %ids.trace_id,
        function = tracing::field::Empty
    );
    let mut response = {
        use tracing::Instrument as _;
        next.run(request).instrument(span).await
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ids.request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ids.trace_id) {
        headers.insert("x-amzn-trace-id", v);
    }
    response
}

async fn health(State(gateway): State<Arc<Gateway>>) -> Response {
    Json(json!({
        "status": "ok",
        "functions": gateway.catalog().functions.len(),
        "nodes": gateway.registry.list().len(),
        "store": gateway.store.backend(),
    }))
    .into_response()
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gateway.metrics.encode(),
    )
        .into_response()
}

async fn login(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let api_key = header(&headers, "x-api-key");
    let result = gateway.auth.login(api_key, &body)?;
    Ok(Json(result).into_response())
}

fn authorize(gateway: &Gateway, headers: &HeaderMap) -> Result<(), ApiError> {
    gateway
        .auth
        .verify_bearer(header(headers, "authorization"))?;
    Ok(())
}

async fn admin_functions(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&gateway, &headers)?;
    Ok(Json(json!({ "functions": gateway.catalog().source.functions })).into_response())
}

async fn admin_routes(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&gateway, &headers)?;
    Ok(Json(json!({ "routes": gateway.catalog().source.routes })).into_response())
}

async fn admin_pools(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&gateway, &headers)?;
    Ok(Json(json!({ "pools": gateway.pools.summaries() })).into_response())
}

async fn admin_nodes(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&gateway, &headers)?;
    let nodes: Vec<_> = gateway
        .registry
        .list()
        .iter()
        .map(|n| n.summary())
        .collect();
    Ok(Json(json!({ "nodes": nodes })).into_response())
}

async fn admin_workers(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&gateway, &headers)?;
    Ok(Json(json!({ "workers": gateway.pools.workers() })).into_response())
}

/// How many deployments `GET /admin/v1/deployments` lists by default, and at most.
const DEPLOYMENTS_DEFAULT: u32 = 20;
const DEPLOYMENTS_MAX: u32 = 100;

#[derive(Debug, serde::Deserialize)]
struct DeploymentsQuery {
    limit: Option<u32>,
}

async fn admin_deployments(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(query): Query<DeploymentsQuery>,
) -> Result<Response, ApiError> {
    authorize(&gateway, &headers)?;
    let limit = query
        .limit
        .unwrap_or(DEPLOYMENTS_DEFAULT)
        .clamp(1, DEPLOYMENTS_MAX);
    let deployments = gateway.store.deployments(limit).await?;
    Ok(Json(json!({ "deployments": deployments })).into_response())
}

#[derive(Debug, serde::Deserialize)]
struct InvocationsQuery {
    status: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/v1/invocations[?status=queued|running|succeeded|failed][&limit=N]`:
/// asynchronous invocations, newest first.
async fn admin_invocations(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(query): Query<InvocationsQuery>,
) -> Result<Response, ApiError> {
    authorize(&gateway, &headers)?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(crate::queue::InvocationStatus::parse(s).ok_or(
            ApiError::InvalidQuery {
                parameter: "status",
                expected: "queued, running, succeeded or failed",
            },
        )?),
    };
    let limit = query
        .limit
        .unwrap_or(DEPLOYMENTS_DEFAULT)
        .clamp(1, DEPLOYMENTS_MAX);
    let invocations = gateway.store.invocations(status, limit).await?;
    Ok(Json(json!({ "invocations": invocations })).into_response())
}

/// A request on one of the template's routes: match, authenticate, build
/// the event, run the function, map its output.
async fn dispatch(
    State(gateway): State<Arc<Gateway>>,
    Extension(ids): Extension<RequestIds>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    limits::check(&parts.method, &parts.uri, &parts.headers)?;
    let catalog = gateway.catalog();
    // CORS preflights the API answers itself: no function, no auth.
    if parts.method == Method::OPTIONS {
        let routes = catalog.routes.path_routes(parts.uri.path());
        if let Some(preflight) = cors::preflight(&routes, &parts.headers) {
            let mut response = Response::new(Body::from(preflight.body));
            *response.status_mut() =
                StatusCode::from_u16(preflight.status).unwrap_or(StatusCode::NO_CONTENT);
            response.headers_mut().extend(preflight.headers);
            return Ok(response);
        }
    }
    let (route, path_parameters) = match catalog.routes.lookup(&parts.method, parts.uri.path()) {
        RouteMatch::Found {
            route,
            path_parameters,
        } => (route, path_parameters),
        RouteMatch::MethodNotAllowed { allowed } => {
            return Err(ApiError::MethodNotAllowed { allowed })
        }
        RouteMatch::NotFound => return Err(ApiError::RouteNotFound),
    };
    // API Gateway runs the authorizer before the API key check.
    let claims = match route.auth() {
        RouteAuth::Jwt => Some(
            gateway
                .auth
                .verify_bearer(header(&parts.headers, "authorization"))?,
        ),
        RouteAuth::None => None,
    };
    if route.api_key_required() {
        gateway
            .auth
            .check_api_key(header(&parts.headers, "x-api-key"))?;
    }
    let body = match read_body(body, MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Err(ApiError::PayloadTooLarge {
                limit: MAX_REQUEST_BYTES,
            })
        }
        Err(BodyError::Read) => return Err(ApiError::BodyRead),
    };
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let source_ip = peer.map_or(IpAddr::from([127, 0, 0, 1]), |p| p.ip());
    let local_port = parts.extensions.get::<LocalPort>().map(|p| p.0);
    let payload = event::build_event(&event::ProxyRequest {
        method: &parts.method,
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query(),
        version: parts.version,
        headers: &parts.headers,
        header_names: &[],
        body: &body,
        source_ip,
        forwarding: local_port.map(|(proto, port)| event::Forwarding { proto, port }),
        trace_id: Some(&ids.trace_id),
        api: &gateway.api,
        route,
        path_parameters: &path_parameters,
        claims: claims.as_ref(),
        request_id: &ids.request_id,
        request_time: std::time::SystemTime::now(),
    });
    let payload = Bytes::from(serde_json::to_vec(&payload).unwrap_or_default());
    let function = route.function().to_owned();
    tracing::Span::current().record("function", function.as_str());
    let invoked = gateway
        .pools
        .invoke(
            &function,
            &WorkerRequest {
                payload,
                request_id: ids.request_id.clone(),
                trace_id: ids.trace_id.clone(),
                tail: false,
                client_context: None,
                invoked_function_arn: None,
            },
        )
        .await?;
    let response = invoked.response;
    // The shim refuses an event over Lambda's 6 MB (a binary body grows by
    // a third in base64).
    if response.status == 413 {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_REQUEST_BYTES,
        });
    }
    if response.status != 200 {
        return Err(ApiError::WorkerRejected {
            function,
            status: response.status,
        });
    }
    if response.function_error.is_some() {
        let error_type = response
            .error_type()
            .unwrap_or_else(|| "Unknown".to_owned());
        return Err(if error_type == "Sandbox.Timedout" {
            ApiError::FunctionTimeout { function }
        } else {
            ApiError::FunctionFailed {
                function,
                error_type,
            }
        });
    }
    let mut mapped = event::map_response(route.payload(), &response.body).map_err(|source| {
        ApiError::BadFunctionResponse {
            function: function.clone(),
            source,
        }
    })?;
    if let Some(cors) = route.cors() {
        cors.apply_to_response(&parts.headers, &mut mapped.headers);
    }
    Ok(into_http(mapped))
}

fn into_http(mapped: event::HttpResponse) -> Response {
    let mut response = Response::new(Body::from(mapped.body));
    *response.status_mut() = StatusCode::from_u16(mapped.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in mapped.headers.iter() {
        headers.append(name.clone(), value.clone());
    }
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
