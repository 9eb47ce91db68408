//! The route table: which function serves which `METHOD /path`, built from the
//! SAM template's `Api` and `HttpApi` events.
//!
//! Matching follows API Gateway:
//! - a path is matched segment by segment, left to right; at each segment a
//!   literal (`/items/special`) wins over a parameter (`/items/{id}`), which wins
//!   over a greedy parameter (`/items/{proxy+}`);
//! - `{name}` matches exactly one non-empty segment, `{name+}` one or more
//!   remaining segments (so `/{proxy+}` never matches `/`); the greedy value is
//!   the rest of the path without its leading slash;
//! - on the most specific path that has a route for the request, a route for
//!   the request's method wins over an `ANY` route; `HEAD` is only served by a
//!   `HEAD` or `ANY` route, never implicitly by `GET`;
//! - path parameter values are percent-decoded (`+` stays `+`; `%2F` inside a
//!   segment becomes `/` in the value but does not split the segment).
//!
//! Trailing slash: API Gateway REST APIs ignore one trailing slash when they
//! select a resource (LocalStack's AWS-validated router strips it:
//! `localstack/services/apigateway/next_gen/execute_api/handlers/resource_router.py`,
//! "trailing slashes are ignored in APIGW"), and a REST resource path cannot end
//! in `/`. ESB does the same for every route: a route path may not end in `/`
//! (except the root `/`), and a request path with one trailing slash matches the
//! route without it (`/items/` matches `/items`, `/items/1/` matches
//! `/items/{id}` with `id = "1"`). Empty segments (`/items//1`) never match a
//! literal or a `{name}` segment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use http::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cors::{Cors, CorsConfig, CorsError};

/// One route as written in the gateway's config file (one SAM `Api` or
/// `HttpApi` event of a function).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `GET`, `POST`, `PUT`, `DELETE`, `PATCH`, `HEAD`, `OPTIONS` or `ANY`
    /// (case-insensitive, as SAM accepts `get` or `any`).
    pub method: String,
    /// The resource path: `/items`, `/items/{id}`, `/files/{proxy+}`.
    pub path: String,
    /// Name of the function that serves the route.
    pub function: String,
    /// Which event the function receives.
    pub payload: PayloadFormat,
    /// Whether the route needs `Authorization: Bearer <IdToken>`.
    #[serde(default)]
    pub auth: RouteAuth,
    /// Whether the route needs a valid `x-api-key` header (SAM `ApiKeyRequired`).
    #[serde(default)]
    pub api_key_required: bool,
    /// The CORS settings of the route's API, if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsConfig>,
}

/// The event format a route's function receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// API Gateway REST API proxy event, payload format 1.0 (SAM `Api`).
    RestV1,
    /// API Gateway HTTP API event, payload format 2.0 (SAM `HttpApi`).
    HttpV2,
}

/// How a route authenticates its callers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAuth {
    /// A gateway-issued ID token in `Authorization: Bearer <jwt>` (the default).
    #[default]
    Jwt,
    /// No authentication (SAM `Auth: {Authorizer: NONE}`).
    None,
}

/// The method a route answers: one HTTP method, or any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteMethod {
    /// Every method (SAM `Method: any`).
    Any,
    /// Exactly this method.
    Only(Method),
}

impl RouteMethod {
    /// Parses a SAM method name (case-insensitive).
    fn parse(raw: &str) -> Option<RouteMethod> {
        let method = match raw.to_ascii_uppercase().as_str() {
            "ANY" => return Some(RouteMethod::Any),
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "DELETE" => Method::DELETE,
            "PATCH" => Method::PATCH,
            "HEAD" => Method::HEAD,
            "OPTIONS" => Method::OPTIONS,
            _ => return None,
        };
        Some(RouteMethod::Only(method))
    }

    /// Whether a request with `method` is served by this route method.
    pub fn matches(&self, method: &Method) -> bool {
        match self {
            RouteMethod::Any => true,
            RouteMethod::Only(own) => own == method,
        }
    }
}

impl fmt::Display for RouteMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteMethod::Any => f.write_str("ANY"),
            RouteMethod::Only(method) => f.write_str(method.as_str()),
        }
    }
}

/// A validated route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    method: RouteMethod,
    resource: String,
    resource_id: String,
    function: String,
    payload: PayloadFormat,
    auth: RouteAuth,
    api_key_required: bool,
    cors: Option<Cors>,
}

impl Route {
    /// The method this route answers.
    pub fn method(&self) -> &RouteMethod {
        &self.method
    }

    /// The template path, e.g. `/items/{id}`: the event's `resource` and
    /// `requestContext.resourcePath`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// A stable 6-character id of the resource path (the event's
    /// `requestContext.resourceId`; the same for every method of a path).
    pub fn resource_id(&self) -> &str {
        &self.resource_id
    }

    /// The HTTP API route key, e.g. `GET /items/{id}` or `ANY /{proxy+}`.
    pub fn route_key(&self) -> String {
        format!("{} {}", self.method, self.resource)
    }

    /// Name of the function that serves the route.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The event format the function receives.
    pub fn payload(&self) -> PayloadFormat {
        self.payload
    }

    /// How callers authenticate.
    pub fn auth(&self) -> RouteAuth {
        self.auth
    }

    /// Whether the route needs a valid `x-api-key`.
    pub fn api_key_required(&self) -> bool {
        self.api_key_required
    }

    /// The CORS settings of the route's API.
    pub fn cors(&self) -> Option<&Cors> {
        self.cors.as_ref()
    }
}

/// Why a route in the config was rejected. Every variant names the route as
/// `METHOD /path -> function`.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The method is not one API Gateway routes.
    #[error("route {route}: unknown method {method:?} (expected GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS or ANY)")]
    UnknownMethod {
        /// The offending route.
        route: String,
        /// The method as written.
        method: String,
    },
    /// The path does not start with `/`.
    #[error("route {route}: path must start with '/'")]
    PathNotAbsolute {
        /// The offending route.
        route: String,
    },
    /// The path ends with `/` (only the root path may).
    #[error("route {route}: path must not end with '/'")]
    TrailingSlash {
        /// The offending route.
        route: String,
    },
    /// The path has an empty segment (`//`).
    #[error("route {route}: path has an empty segment")]
    EmptySegment {
        /// The offending route.
        route: String,
    },
    /// A literal segment has characters API Gateway does not allow in a path part.
    #[error("route {route}: invalid path segment {segment:?} (allowed: a-z A-Z 0-9 . _ - or a whole-segment {{name}} / {{name+}})")]
    InvalidSegment {
        /// The offending route.
        route: String,
        /// The segment as written.
        segment: String,
    },
    /// A `{name}` segment has an empty or invalid name.
    #[error("route {route}: invalid path parameter name {name:?} (allowed: a-z A-Z 0-9 . _ -)")]
    InvalidParameterName {
        /// The offending route.
        route: String,
        /// The name as written.
        name: String,
    },
    /// A greedy `{name+}` segment is not the last segment.
    #[error("route {route}: greedy parameter {{{name}+}} must be the last path segment")]
    GreedyNotLast {
        /// The offending route.
        route: String,
        /// The greedy parameter's name.
        name: String,
    },
    /// The same parameter name appears twice in one path.
    #[error("route {route}: path parameter {name:?} appears more than once")]
    DuplicateParameter {
        /// The offending route.
        route: String,
        /// The repeated name.
        name: String,
    },
    /// Two routes have the same method and path.
    #[error("route {route}: another route already has the same method and path")]
    Duplicate {
        /// The offending route.
        route: String,
    },
    /// Two routes name a parameter differently at the same position after the
    /// same prefix (`/items/{id}` and `/items/{itemId}`), which API Gateway rejects.
    #[error("route {route}: parameter {{{found}}} conflicts with {{{existing}}} of another route at the same position")]
    ConflictingParameter {
        /// The offending route.
        route: String,
        /// The name the earlier route uses.
        existing: String,
        /// The name this route uses.
        found: String,
    },
    /// The route names no function.
    #[error("route {route}: function name is empty")]
    EmptyFunction {
        /// The offending route.
        route: String,
    },
    /// The route's CORS settings are invalid.
    #[error("route {route}: {source}")]
    Cors {
        /// The offending route.
        route: String,
        /// What is wrong.
        #[source]
        source: CorsError,
    },
}

/// The result of looking up a request in the route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch<'a> {
    /// A route serves the request.
    Found {
        /// The route.
        route: &'a Route,
        /// The path parameters, percent-decoded, by name.
        path_parameters: BTreeMap<String, String>,
    },
    /// The path exists but no route of it serves the request's method.
    /// (API Gateway REST answers this with 403 `Missing Authentication Token`,
    /// HTTP APIs with 404 `Not Found`; the caller decides.)
    MethodNotAllowed {
        /// The methods that would be served on this path, sorted.
        allowed: Vec<Method>,
    },
    /// No route has this path.
    NotFound,
}

/// All routes of the box, indexed for lookup.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    root: Node,
}

/// Routes that end at one path: index into `RouteTable::routes`.
#[derive(Debug, Clone, Default)]
struct Endpoints {
    any: Option<usize>,
    methods: Vec<(Method, usize)>,
}

impl Endpoints {
    fn is_empty(&self) -> bool {
        self.any.is_none() && self.methods.is_empty()
    }

    /// The route for `method`: the method's own route first, then `ANY`.
    fn find(&self, method: &Method) -> Option<usize> {
        self.methods
            .iter()
            .find(|(own, _)| own == method)
            .map(|(_, index)| *index)
            .or(self.any)
    }

    /// Adds a route; `false` if the slot is taken.
    fn insert(&mut self, method: &RouteMethod, index: usize) -> bool {
        match method {
            RouteMethod::Any => {
                if self.any.is_some() {
                    return false;
                }
                self.any = Some(index);
            }
            RouteMethod::Only(method) => {
                if self.methods.iter().any(|(own, _)| own == method) {
                    return false;
                }
                self.methods.push((method.clone(), index));
            }
        }
        true
    }
}

/// One path segment position in the trie.
#[derive(Debug, Clone, Default)]
struct Node {
    literals: HashMap<String, Node>,
    param: Option<(String, Box<Node>)>,
    greedy: Option<(String, Endpoints)>,
    endpoints: Endpoints,
}

/// One parsed segment of a route path.
enum Segment<'p> {
    Literal(&'p str),
    Param(&'p str),
    Greedy(&'p str),
}

impl RouteTable {
    /// Validates the routes and builds the table. The first invalid route
    /// stops the build with an error naming it.
    pub fn new(configs: Vec<RouteConfig>) -> Result<RouteTable, RouteError> {
        let mut table = RouteTable::default();
        for config in configs {
            table.insert(config)?;
        }
        Ok(table)
    }

    /// Every route, in config order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    fn insert(&mut self, config: RouteConfig) -> Result<(), RouteError> {
        let label = format!("{} {} -> {}", config.method, config.path, config.function);
        let method =
            RouteMethod::parse(&config.method).ok_or_else(|| RouteError::UnknownMethod {
                route: label.clone(),
                method: config.method.clone(),
            })?;
        if config.function.trim().is_empty() {
            return Err(RouteError::EmptyFunction { route: label });
        }
        let segments = parse_path(&config.path, &label)?;
        let cors = config
            .cors
            .as_ref()
            .map(|cors| Cors::from_config(cors, config.payload))
            .transpose()
            .map_err(|source| RouteError::Cors {
                route: label.clone(),
                source,
            })?;

        let index = self.routes.len();
        let (greedy, prefix) = match segments.split_last() {
            Some((Segment::Greedy(name), prefix)) => (Some(*name), prefix),
            _ => (None, segments.as_slice()),
        };
        let mut node = &mut self.root;
        for segment in prefix {
            match segment {
                Segment::Literal(literal) => {
                    node = node.literals.entry((*literal).to_owned()).or_default();
                }
                Segment::Param(name) => {
                    let (existing, child) = node
                        .param
                        .get_or_insert_with(|| ((*name).to_owned(), Box::default()));
                    if existing != name {
                        return Err(RouteError::ConflictingParameter {
                            route: label,
                            existing: existing.clone(),
                            found: (*name).to_owned(),
                        });
                    }
                    node = child;
                }
                // `parse_path` only allows a greedy segment last.
                Segment::Greedy(name) => {
                    return Err(RouteError::GreedyNotLast {
                        route: label,
                        name: (*name).to_owned(),
                    })
                }
            }
        }
        let endpoints = match greedy {
            Some(name) => {
                let (existing, endpoints) = node
                    .greedy
                    .get_or_insert_with(|| (name.to_owned(), Endpoints::default()));
                if existing != name {
                    return Err(RouteError::ConflictingParameter {
                        route: label,
                        existing: format!("{existing}+"),
                        found: format!("{name}+"),
                    });
                }
                endpoints
            }
            None => &mut node.endpoints,
        };
        if !endpoints.insert(&method, index) {
            return Err(RouteError::Duplicate { route: label });
        }

        let resource_id = resource_id(&config.path);
        self.routes.push(Route {
            method,
            resource: config.path,
            resource_id,
            function: config.function,
            payload: config.payload,
            auth: config.auth,
            api_key_required: config.api_key_required,
            cors,
        });
        Ok(())
    }

    /// The routes of the most specific path that matches `path`, whatever
    /// their method (empty when no route has the path): the routes a CORS
    /// preflight on `path` is about.
    pub fn path_routes(&self, path: &str) -> Vec<&Route> {
        let Some(segments) = request_segments(path) else {
            return Vec::new();
        };
        let mut search = Search {
            method: None,
            segments: &segments,
            params: Vec::new(),
            found: None,
            allowed: BTreeSet::new(),
            path_matched: false,
            path_routes: Vec::new(),
        };
        search.walk(&self.root, 0);
        search
            .path_routes
            .into_iter()
            .map(|index| &self.routes[index])
            .collect()
    }

    /// Finds the route for a request. `path` is the request path as received
    /// (percent-encoded); anything from a `?` on is ignored.
    pub fn lookup(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        let Some(segments) = request_segments(path) else {
            return RouteMatch::NotFound;
        };
        let mut search = Search {
            method: Some(method),
            segments: &segments,
            params: Vec::new(),
            found: None,
            allowed: BTreeSet::new(),
            path_matched: false,
            path_routes: Vec::new(),
        };
        search.walk(&self.root, 0);
        match search.found {
            Some((index, params)) => RouteMatch::Found {
                route: &self.routes[index],
                path_parameters: params.into_iter().collect(),
            },
            None if search.path_matched => {
                let allowed = search
                    .allowed
                    .into_iter()
                    .filter_map(|name| Method::from_bytes(name.as_bytes()).ok())
                    .collect();
                RouteMatch::MethodNotAllowed { allowed }
            }
            None => RouteMatch::NotFound,
        }
    }
}

/// The segments of a request path (anything from a `?` on is ignored);
/// `None` when it does not start with `/`.
fn request_segments(path: &str) -> Option<Vec<&str>> {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let rest = path.strip_prefix('/')?;
    // One trailing slash is ignored, as API Gateway does.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    Some(if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    })
}

/// The state of one depth-first lookup, most specific branch first.
struct Search<'t, 's> {
    /// The request's method; `None` collects every route of the first
    /// matching path into `path_routes` instead.
    method: Option<&'t Method>,
    segments: &'t [&'s str],
    params: Vec<(String, String)>,
    found: Option<(usize, Vec<(String, String)>)>,
    allowed: BTreeSet<String>,
    path_matched: bool,
    path_routes: Vec<usize>,
}

impl Search<'_, '_> {
    /// Visits the routes that end at a matched path; `true` stops the search.
    fn visit(&mut self, endpoints: &Endpoints) -> bool {
        if endpoints.is_empty() {
            return false;
        }
        self.path_matched = true;
        let Some(method) = self.method else {
            self.path_routes = endpoints
                .any
                .into_iter()
                .chain(endpoints.methods.iter().map(|(_, index)| *index))
                .collect();
            return true;
        };
        if let Some(index) = endpoints.find(method) {
            self.found = Some((index, self.params.clone()));
            return true;
        }
        self.allowed.extend(
            endpoints
                .methods
                .iter()
                .map(|(method, _)| method.as_str().to_owned()),
        );
        false
    }

    fn walk(&mut self, node: &Node, depth: usize) -> bool {
        let Some(raw) = self.segments.get(depth) else {
            return self.visit(&node.endpoints);
        };
        let decoded = percent_decode(raw);
        if let Some(child) = node.literals.get(decoded.as_str()) {
            if self.walk(child, depth + 1) {
                return true;
            }
        }
        if let Some((name, child)) = &node.param {
            if !raw.is_empty() {
                self.params.push((name.clone(), decoded));
                if self.walk(child, depth + 1) {
                    return true;
                }
                self.params.pop();
            }
        }
        if let Some((name, endpoints)) = &node.greedy {
            let rest = percent_decode(&self.segments[depth..].join("/"));
            if !rest.is_empty() {
                self.params.push((name.clone(), rest));
                if self.visit(endpoints) {
                    return true;
                }
                self.params.pop();
            }
        }
        false
    }
}

/// Percent-decodes a path segment (`+` is not a space in paths); invalid
/// UTF-8 becomes U+FFFD.
fn percent_decode(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// Characters API Gateway allows in a resource path part or parameter name.
fn is_path_part(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn parse_path<'p>(path: &'p str, label: &str) -> Result<Vec<Segment<'p>>, RouteError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(RouteError::PathNotAbsolute {
            route: label.to_owned(),
        });
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    if rest.ends_with('/') {
        return Err(RouteError::TrailingSlash {
            route: label.to_owned(),
        });
    }
    let raw: Vec<&str> = rest.split('/').collect();
    let mut segments = Vec::with_capacity(raw.len());
    let mut names: Vec<&str> = Vec::new();
    for (position, part) in raw.iter().enumerate() {
        if part.is_empty() {
            return Err(RouteError::EmptySegment {
                route: label.to_owned(),
            });
        }
        let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(inner) => {
                let (name, greedy) = match inner.strip_suffix('+') {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                if !is_path_part(name) {
                    return Err(RouteError::InvalidParameterName {
                        route: label.to_owned(),
                        name: name.to_owned(),
                    });
                }
                if names.contains(&name) {
                    return Err(RouteError::DuplicateParameter {
                        route: label.to_owned(),
                        name: name.to_owned(),
                    });
                }
                names.push(name);
                if greedy {
                    if position + 1 != raw.len() {
                        return Err(RouteError::GreedyNotLast {
                            route: label.to_owned(),
                            name: name.to_owned(),
                        });
                    }
                    Segment::Greedy(name)
                } else {
                    Segment::Param(name)
                }
            }
            None if is_path_part(part) => Segment::Literal(part),
            None => {
                return Err(RouteError::InvalidSegment {
                    route: label.to_owned(),
                    segment: (*part).to_owned(),
                })
            }
        };
        segments.push(segment);
    }
    Ok(segments)
}

/// A stable, AWS-looking resource id: the first 6 hex digits of the path's SHA-256.
fn resource_id(path: &str) -> String {
    Sha256::digest(path.as_bytes())
        .iter()
        .take(3)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(method: &str, path: &str, function: &str) -> RouteConfig {
        RouteConfig {
            method: method.to_owned(),
            path: path.to_owned(),
            function: function.to_owned(),
            payload: PayloadFormat::RestV1,
            auth: RouteAuth::Jwt,
            api_key_required: false,
            cors: None,
        }
    }

    fn table(routes: &[(&str, &str, &str)]) -> RouteTable {
        RouteTable::new(
            routes
                .iter()
                .map(|(method, path, function)| config(method, path, function))
                .collect(),
        )
        .expect("valid routes")
    }

    /// The function and path parameters a request reaches, or panics.
    fn hit(table: &RouteTable, method: Method, path: &str) -> (String, Vec<(String, String)>) {
        match table.lookup(&method, path) {
            RouteMatch::Found {
                route,
                path_parameters,
            } => (
                route.function().to_owned(),
                path_parameters.into_iter().collect(),
            ),
            other => panic!("{method} {path}: expected a route, got {other:?}"),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn error(routes: &[(&str, &str, &str)]) -> RouteError {
        match RouteTable::new(
            routes
                .iter()
                .map(|(method, path, function)| config(method, path, function))
                .collect(),
        ) {
            Ok(_) => panic!("expected {routes:?} to be rejected"),
            Err(err) => err,
        }
    }

    #[test]
    fn config_deserializes_with_defaults_and_rejects_unknown_fields() {
        let parsed: RouteConfig = serde_json::from_str(
            r#"{"method":"get","path":"/items/{id}","function":"Items","payload":"http_v2"}"#,
        )
        .expect("valid config");
        assert_eq!(parsed.payload, PayloadFormat::HttpV2);
        assert_eq!(parsed.auth, RouteAuth::Jwt);
        assert!(!parsed.api_key_required);

        let parsed: RouteConfig = serde_json::from_str(
            r#"{"method":"ANY","path":"/","function":"Root","payload":"rest_v1","auth":"none","api_key_required":true}"#,
        )
        .expect("valid config");
        assert_eq!(parsed.auth, RouteAuth::None);
        assert!(parsed.api_key_required);

        let unknown = serde_json::from_str::<RouteConfig>(
            r#"{"method":"GET","path":"/","function":"F","payload":"rest_v1","cors":true}"#,
        );
        assert!(unknown.is_err(), "unknown field must be rejected");
        let bad_payload = serde_json::from_str::<RouteConfig>(
            r#"{"method":"GET","path":"/","function":"F","payload":"v3"}"#,
        );
        assert!(bad_payload.is_err());
    }

    #[test]
    fn route_exposes_its_template() {
        let table = RouteTable::new(vec![RouteConfig {
            method: "post".to_owned(),
            path: "/items/{id}".to_owned(),
            function: "Items".to_owned(),
            payload: PayloadFormat::HttpV2,
            auth: RouteAuth::None,
            api_key_required: true,
            cors: None,
        }])
        .expect("valid");
        let route = &table.routes()[0];
        assert_eq!(route.method(), &RouteMethod::Only(Method::POST));
        assert_eq!(route.resource(), "/items/{id}");
        assert_eq!(route.route_key(), "POST /items/{id}");
        assert_eq!(route.function(), "Items");
        assert_eq!(route.payload(), PayloadFormat::HttpV2);
        assert_eq!(route.auth(), RouteAuth::None);
        assert!(route.api_key_required());
        assert_eq!(route.resource_id().len(), 6);
        assert!(route.resource_id().bytes().all(|b| b.is_ascii_hexdigit()));

        let any = table_route("any", "/{proxy+}");
        assert_eq!(any.route_key(), "ANY /{proxy+}");
    }

    fn table_route(method: &str, path: &str) -> Route {
        table(&[(method, path, "F")]).routes()[0].clone()
    }

    #[test]
    fn resource_id_is_stable_per_path_and_shared_by_methods() {
        let table = table(&[
            ("GET", "/items/{id}", "A"),
            ("DELETE", "/items/{id}", "B"),
            ("GET", "/items", "C"),
        ]);
        let ids: Vec<&str> = table.routes().iter().map(Route::resource_id).collect();
        assert_eq!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
        let again = table_route("GET", "/items/{id}");
        assert_eq!(again.resource_id(), ids[0]);
    }

    #[test]
    fn literal_paths_and_root() {
        let table = table(&[
            ("GET", "/", "Root"),
            ("GET", "/items", "List"),
            ("GET", "/items/all", "All"),
        ]);
        assert_eq!(hit(&table, Method::GET, "/").0, "Root");
        assert_eq!(hit(&table, Method::GET, "/items").0, "List");
        assert_eq!(hit(&table, Method::GET, "/items/all").0, "All");
        assert_eq!(
            table.lookup(&Method::GET, "/items/none"),
            RouteMatch::NotFound
        );
        assert_eq!(table.lookup(&Method::GET, "/other"), RouteMatch::NotFound);
        assert_eq!(table.lookup(&Method::GET, ""), RouteMatch::NotFound);
        assert_eq!(table.lookup(&Method::GET, "items"), RouteMatch::NotFound);
    }

    #[test]
    fn path_parameters_are_extracted() {
        let table = table(&[("GET", "/users/{user}/posts/{post}", "Post")]);
        let (function, got) = hit(&table, Method::GET, "/users/42/posts/abc");
        assert_eq!(function, "Post");
        assert_eq!(got, params(&[("post", "abc"), ("user", "42")]));
        assert_eq!(
            table.lookup(&Method::GET, "/users/42/posts"),
            RouteMatch::NotFound
        );
        assert_eq!(
            table.lookup(&Method::GET, "/users/42/posts/abc/extra"),
            RouteMatch::NotFound
        );
    }

    #[test]
    fn literal_wins_over_parameter_which_wins_over_greedy() {
        let table = table(&[
            ("GET", "/items/special", "Special"),
            ("GET", "/items/{id}", "ById"),
            ("GET", "/items/{proxy+}", "Proxy"),
        ]);
        assert_eq!(
            hit(&table, Method::GET, "/items/special"),
            ("Special".into(), vec![])
        );
        assert_eq!(
            hit(&table, Method::GET, "/items/7"),
            ("ById".into(), params(&[("id", "7")]))
        );
        assert_eq!(
            hit(&table, Method::GET, "/items/7/parts"),
            ("Proxy".into(), params(&[("proxy", "7/parts")]))
        );
    }

    #[test]
    fn precedence_is_decided_left_to_right_with_backtracking() {
        let table = table(&[
            ("GET", "/a/{x}/c", "LiteralFirst"),
            ("GET", "/{y}/b/c", "ParamFirst"),
            ("GET", "/{y}/b/d", "Backtracked"),
        ]);
        assert_eq!(
            hit(&table, Method::GET, "/a/b/c"),
            ("LiteralFirst".into(), params(&[("x", "b")]))
        );
        // `/a/...` has no `d` continuation, so the search falls back to `{y}`.
        assert_eq!(
            hit(&table, Method::GET, "/a/b/d"),
            ("Backtracked".into(), params(&[("y", "a")]))
        );
    }

    #[test]
    fn greedy_matches_one_or_more_segments_but_not_the_bare_prefix() {
        let table = table(&[
            ("GET", "/files/{proxy+}", "Files"),
            ("ANY", "/{all+}", "All"),
        ]);
        assert_eq!(
            hit(&table, Method::GET, "/files/a"),
            ("Files".into(), params(&[("proxy", "a")]))
        );
        assert_eq!(
            hit(&table, Method::GET, "/files/a/b/c.txt"),
            ("Files".into(), params(&[("proxy", "a/b/c.txt")]))
        );
        // `/files` alone is not `/files/{proxy+}`: the catch-all takes it.
        assert_eq!(
            hit(&table, Method::GET, "/files"),
            ("All".into(), params(&[("all", "files")]))
        );
        // `/{all+}` never matches the root.
        assert_eq!(table.lookup(&Method::GET, "/"), RouteMatch::NotFound);
    }

    #[test]
    fn specific_method_wins_over_any_on_the_same_path() {
        let table = table(&[("ANY", "/items", "Any"), ("POST", "/items", "Create")]);
        assert_eq!(hit(&table, Method::POST, "/items").0, "Create");
        assert_eq!(hit(&table, Method::GET, "/items").0, "Any");
        assert_eq!(hit(&table, Method::DELETE, "/items").0, "Any");
    }

    #[test]
    fn a_more_specific_path_wins_over_a_method_match_on_a_less_specific_one() {
        let table = table(&[
            ("ANY", "/items/{id}", "AnyById"),
            ("GET", "/items/{proxy+}", "GetProxy"),
        ]);
        assert_eq!(hit(&table, Method::GET, "/items/1").0, "AnyById");
        assert_eq!(hit(&table, Method::GET, "/items/1/2").0, "GetProxy");
    }

    #[test]
    fn method_falls_through_to_a_less_specific_path_that_serves_it() {
        let table = table(&[
            ("GET", "/items/special", "Special"),
            ("POST", "/items/{id}", "Update"),
        ]);
        assert_eq!(
            hit(&table, Method::POST, "/items/special"),
            ("Update".into(), params(&[("id", "special")]))
        );
    }

    #[test]
    fn method_not_allowed_lists_the_methods_of_every_matching_path() {
        let table = table(&[
            ("GET", "/items/special", "Special"),
            ("PUT", "/items/{id}", "Replace"),
            ("DELETE", "/items/{id}", "Delete"),
            ("GET", "/other", "Other"),
        ]);
        assert_eq!(
            table.lookup(&Method::POST, "/items/special"),
            RouteMatch::MethodNotAllowed {
                allowed: vec![Method::DELETE, Method::GET, Method::PUT]
            }
        );
        assert_eq!(
            table.lookup(&Method::POST, "/items/1"),
            RouteMatch::MethodNotAllowed {
                allowed: vec![Method::DELETE, Method::PUT]
            }
        );
        assert_eq!(
            table.lookup(&Method::POST, "/nothing"),
            RouteMatch::NotFound
        );
    }

    #[test]
    fn head_is_not_implicitly_get() {
        let table = table(&[("GET", "/items", "Get"), ("ANY", "/any", "Any")]);
        assert_eq!(
            table.lookup(&Method::HEAD, "/items"),
            RouteMatch::MethodNotAllowed {
                allowed: vec![Method::GET]
            }
        );
        assert_eq!(hit(&table, Method::HEAD, "/any").0, "Any");
    }

    #[test]
    fn path_parameters_are_percent_decoded() {
        let table = table(&[
            ("GET", "/items/{id}", "ById"),
            ("GET", "/files/{key+}", "Files"),
        ]);
        assert_eq!(
            hit(&table, Method::GET, "/items/hello%20world").1,
            params(&[("id", "hello world")])
        );
        // `+` is literal in a path, and an encoded slash stays inside the value.
        assert_eq!(
            hit(&table, Method::GET, "/items/a+b").1,
            params(&[("id", "a+b")])
        );
        assert_eq!(
            hit(&table, Method::GET, "/items/a%2Fb").1,
            params(&[("id", "a/b")])
        );
        assert_eq!(
            hit(&table, Method::GET, "/items/caf%C3%A9").1,
            params(&[("id", "café")])
        );
        assert_eq!(
            hit(&table, Method::GET, "/files/dir%20one/f%25.txt").1,
            params(&[("key", "dir one/f%.txt")])
        );
        // Invalid UTF-8 is replaced, not rejected.
        assert_eq!(
            hit(&table, Method::GET, "/items/%FF").1,
            params(&[("id", "\u{FFFD}")])
        );
        // Literal segments compare decoded.
        let literal = self::table(&[("GET", "/items/all", "All")]);
        assert_eq!(hit(&literal, Method::GET, "/items/%61ll").0, "All");
    }

    #[test]
    fn one_trailing_slash_is_ignored_and_empty_segments_do_not_match() {
        let table = table(&[
            ("GET", "/items", "List"),
            ("GET", "/items/{id}", "ById"),
            ("GET", "/files/{proxy+}", "Files"),
        ]);
        assert_eq!(hit(&table, Method::GET, "/items/").0, "List");
        assert_eq!(
            hit(&table, Method::GET, "/items/1/"),
            ("ById".into(), params(&[("id", "1")]))
        );
        assert_eq!(
            hit(&table, Method::GET, "/files/a/b/"),
            ("Files".into(), params(&[("proxy", "a/b")]))
        );
        assert_eq!(table.lookup(&Method::GET, "/items//"), RouteMatch::NotFound);
        assert_eq!(table.lookup(&Method::GET, "//items"), RouteMatch::NotFound);
        assert_eq!(
            table.lookup(&Method::GET, "/items//1"),
            RouteMatch::NotFound
        );
        assert_eq!(table.lookup(&Method::GET, "/files/"), RouteMatch::NotFound);
    }

    #[test]
    fn query_string_is_ignored() {
        let table = table(&[("GET", "/items/{id}", "ById")]);
        assert_eq!(
            hit(&table, Method::GET, "/items/1?x=2").1,
            params(&[("id", "1")])
        );
    }

    #[test]
    fn methods_are_case_insensitive_and_validated() {
        let table = table(&[("get", "/a", "A"), ("Options", "/a", "Preflight")]);
        assert_eq!(hit(&table, Method::GET, "/a").0, "A");
        assert_eq!(hit(&table, Method::OPTIONS, "/a").0, "Preflight");
        let err = error(&[("FETCH", "/a", "A")]);
        assert!(matches!(err, RouteError::UnknownMethod { ref method, .. } if method == "FETCH"));
        assert!(err.to_string().contains("FETCH /a -> A"), "{err}");
    }

    /// A route path and a check of the error it must produce.
    type ErrorCase = (&'static str, fn(&RouteError) -> bool);

    #[test]
    fn invalid_paths_are_rejected_naming_the_route() {
        let cases: &[ErrorCase] = &[
            ("items", |e| matches!(e, RouteError::PathNotAbsolute { .. })),
            ("/items/", |e| matches!(e, RouteError::TrailingSlash { .. })),
            ("/items//x", |e| {
                matches!(e, RouteError::EmptySegment { .. })
            }),
            ("/items/a b", |e| {
                matches!(e, RouteError::InvalidSegment { .. })
            }),
            ("/items/{id", |e| {
                matches!(e, RouteError::InvalidSegment { .. })
            }),
            ("/items/x{id}", |e| {
                matches!(e, RouteError::InvalidSegment { .. })
            }),
            ("/items/{}", |e| {
                matches!(e, RouteError::InvalidParameterName { .. })
            }),
            ("/items/{+}", |e| {
                matches!(e, RouteError::InvalidParameterName { .. })
            }),
            ("/items/{a b}", |e| {
                matches!(e, RouteError::InvalidParameterName { .. })
            }),
            ("/{proxy+}/x", |e| {
                matches!(e, RouteError::GreedyNotLast { .. })
            }),
            ("/{id}/{id}", |e| {
                matches!(e, RouteError::DuplicateParameter { .. })
            }),
        ];
        for (path, is_expected) in cases {
            let err = error(&[("GET", path, "Fn")]);
            assert!(is_expected(&err), "{path}: unexpected error {err:?}");
            let message = err.to_string();
            assert!(
                message.contains(&format!("GET {path} -> Fn")),
                "{path}: {message}"
            );
        }
    }

    #[test]
    fn duplicates_and_conflicting_parameters_are_rejected() {
        let err = error(&[("GET", "/items/{id}", "A"), ("get", "/items/{id}", "B")]);
        assert!(
            matches!(err, RouteError::Duplicate { ref route } if route == "get /items/{id} -> B")
        );
        let err = error(&[("ANY", "/x", "A"), ("any", "/x", "B")]);
        assert!(matches!(err, RouteError::Duplicate { .. }));
        let err = error(&[("GET", "/files/{p+}", "A"), ("GET", "/files/{p+}", "B")]);
        assert!(matches!(err, RouteError::Duplicate { .. }));

        let err = error(&[
            ("GET", "/items/{id}", "A"),
            ("DELETE", "/items/{itemId}", "B"),
        ]);
        match err {
            RouteError::ConflictingParameter {
                existing, found, ..
            } => {
                assert_eq!((existing.as_str(), found.as_str()), ("id", "itemId"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = error(&[("GET", "/f/{a+}", "A"), ("PUT", "/f/{b+}", "B")]);
        assert!(matches!(err, RouteError::ConflictingParameter { .. }));

        // Same method and path but a different payload is still a duplicate;
        // different methods on one path are fine.
        let ok = table(&[
            ("GET", "/items/{id}", "A"),
            ("PUT", "/items/{id}", "B"),
            ("ANY", "/items/{id}", "C"),
        ]);
        assert_eq!(ok.routes().len(), 3);
    }

    #[test]
    fn path_routes_are_every_method_of_the_most_specific_path() {
        let table = table(&[
            ("GET", "/items/{id}", "Get"),
            ("DELETE", "/items/{id}", "Delete"),
            ("ANY", "/items/{id}", "Any"),
            ("GET", "/items/special", "Special"),
            ("ANY", "/{proxy+}", "Proxy"),
        ]);
        let functions = |path: &str| -> Vec<String> {
            let mut names: Vec<String> = table
                .path_routes(path)
                .iter()
                .map(|route| route.function().to_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(functions("/items/1"), ["Any", "Delete", "Get"]);
        assert_eq!(functions("/items/1/"), ["Any", "Delete", "Get"]);
        assert_eq!(functions("/items/special"), ["Special"]);
        assert_eq!(functions("/other/x"), ["Proxy"]);
        assert!(functions("/").is_empty());
        assert!(functions("nope").is_empty());
    }

    #[test]
    fn invalid_cors_is_rejected_naming_the_route() {
        let mut config = config("GET", "/a", "F");
        config.cors = Some(CorsConfig::default());
        let err = RouteTable::new(vec![config.clone()]).expect_err("no origin");
        assert!(
            matches!(
                err,
                RouteError::Cors {
                    source: CorsError::NoOrigin,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("GET /a -> F"), "{err}");

        config.cors = Some(CorsConfig {
            allow_origins: vec!["*".to_owned()],
            ..CorsConfig::default()
        });
        let table = RouteTable::new(vec![config]).expect("valid");
        assert!(table.routes()[0].cors().is_some());
        let parsed: RouteConfig = serde_json::from_str(
            r#"{"method":"GET","path":"/","function":"F","payload":"http_v2",
                "cors":{"allow_origins":["https://a.example"],"max_age":5}}"#,
        )
        .expect("valid config");
        assert_eq!(parsed.cors.expect("cors").max_age, Some(5));
        let unknown = serde_json::from_str::<RouteConfig>(
            r#"{"method":"GET","path":"/","function":"F","payload":"http_v2",
                "cors":{"allow_origins":["*"],"origin":"x"}}"#,
        );
        assert!(unknown.is_err(), "unknown cors field must be rejected");
    }

    #[test]
    fn empty_function_is_rejected() {
        let err = error(&[("GET", "/a", " ")]);
        assert!(matches!(err, RouteError::EmptyFunction { .. }));
    }

    #[test]
    fn empty_table_finds_nothing() {
        let table = RouteTable::new(Vec::new()).expect("empty is valid");
        assert_eq!(table.lookup(&Method::GET, "/"), RouteMatch::NotFound);
    }
}
