//! The route matcher (`esb_gateway::route`): a table built from arbitrary
//! routes, looked up with arbitrary request paths.
//!
//! Input: `METHOD PATH` lines (the routes, then the request; the seed
//! corpus), or structured input for anything else.
//!
//! Properties:
//! - a found route serves the request's method, and its path parameters put
//!   back into its resource path give the request path, percent-decoded
//!   segment by segment (query and one trailing slash dropped);
//! - `MethodNotAllowed` lists sorted methods, never the request's own;
//! - `path_routes` is empty exactly when the lookup is `NotFound`;
//! - every route of the table is found by a request for its own path.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};
use esb_fuzz::{percent_decode, METHODS};
use esb_gateway::route::{
    PayloadFormat, RouteAuth, RouteConfig, RouteMatch, RouteMethod, RouteTable,
};
use http::Method;
use libfuzzer_sys::fuzz_target;

const LITERALS: &[&str] = &["items", "a", "b", "special", "v1.0", "x_y-z", "%61"];
const NAMES: &[&str] = &["id", "proxy", "name", "a", "x.y"];
const ROUTE_METHODS: &[&str] = &[
    "GET", "post", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "ANY", "any", "FETCH",
];

#[derive(Debug, Arbitrary)]
enum Seg {
    Lit(u8),
    Param(u8),
    Greedy(u8),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
struct RouteSpec {
    method: u8,
    segments: Vec<Seg>,
    /// Used instead of `segments` when present.
    raw_path: Option<String>,
}

#[derive(Debug, Arbitrary)]
enum ReqSeg {
    Lit(u8),
    /// Percent-encoded (`true`) or as written, `/` and `?` replaced.
    Text(String, bool),
    Empty,
}

#[derive(Debug, Arbitrary)]
enum ReqPath {
    Raw(String),
    Built {
        segments: Vec<ReqSeg>,
        trailing_slash: bool,
        query: Option<String>,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    routes: Vec<RouteSpec>,
    method: u8,
    path: ReqPath,
}

fn pick<'a>(pool: &[&'a str], i: u8) -> &'a str {
    pool[usize::from(i) % pool.len()]
}

fn route_path(spec: &RouteSpec) -> String {
    if let Some(raw) = &spec.raw_path {
        return raw.clone();
    }
    let segments: Vec<String> = spec
        .segments
        .iter()
        .map(|s| match s {
            Seg::Lit(i) => pick(LITERALS, *i).to_owned(),
            Seg::Param(i) => format!("{{{}}}", pick(NAMES, *i)),
            Seg::Greedy(i) => format!("{{{}+}}", pick(NAMES, *i)),
            Seg::Raw(raw) => raw.clone(),
        })
        .collect();
    format!("/{}", segments.join("/"))
}

fn request_path(path: &ReqPath) -> String {
    match path {
        ReqPath::Raw(raw) => raw.clone(),
        ReqPath::Built {
            segments,
            trailing_slash,
            query,
        } => {
            let segments: Vec<String> = segments
                .iter()
                .map(|s| match s {
                    ReqSeg::Lit(i) => pick(LITERALS, *i).to_owned(),
                    ReqSeg::Text(text, true) => esb_fuzz::percent_encode(text),
                    ReqSeg::Text(text, false) => text.replace(['/', '?'], "_"),
                    ReqSeg::Empty => String::new(),
                })
                .collect();
            let mut path = format!("/{}", segments.join("/"));
            if *trailing_slash {
                path.push('/');
            }
            if let Some(query) = query {
                path.push('?');
                path.push_str(query);
            }
            path
        }
    }
}

/// The request's segments, decoded, as the matcher sees them.
fn decoded_segments(path: &str) -> Option<Vec<String>> {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let rest = path.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    Some(if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').map(percent_decode).collect()
    })
}

/// The resource path with its parameters filled in; `None` when a
/// parameter has no value.
fn reassemble(resource: &str, params: &BTreeMap<String, String>) -> Option<(String, usize)> {
    let rest = resource.strip_prefix('/')?;
    if rest.is_empty() {
        return Some((String::new(), 0));
    }
    let mut used = 0;
    let mut out = Vec::new();
    for segment in rest.split('/') {
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let name = name.strip_suffix('+').unwrap_or(name);
                out.push(params.get(name)?.clone());
                used += 1;
            }
            None => out.push(segment.to_owned()),
        }
    }
    Some((out.join("/"), used))
}

/// The route's own path with every parameter given a plain value.
fn instantiate(resource: &str) -> String {
    resource
        .split('/')
        .map(|segment| {
            if segment.ends_with("+}") {
                "g0/g1".to_owned()
            } else if segment.starts_with('{') {
                "p0".to_owned()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn config(method: &str, path: &str, i: usize) -> RouteConfig {
    RouteConfig {
        method: method.to_owned(),
        path: path.to_owned(),
        function: format!("F{i}"),
        payload: PayloadFormat::RestV1,
        auth: RouteAuth::None,
        api_key_required: false,
        cors: None,
    }
}

/// `METHOD PATH` lines: the routes, then the request.
fn text_input(data: &[u8]) -> Option<(Vec<RouteConfig>, Method, String)> {
    let text = std::str::from_utf8(data).ok()?;
    let mut lines: Vec<(&str, &str)> = text
        .lines()
        .map(|line| line.split_once(' '))
        .collect::<Option<_>>()?;
    let (method, path) = lines.pop()?;
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let configs = lines
        .iter()
        .enumerate()
        .map(|(i, (m, p))| config(m, p, i))
        .collect();
    Some((configs, method, path.to_owned()))
}

fuzz_target!(|data: &[u8]| {
    if let Some((configs, method, path)) = text_input(data) {
        check(configs, &method, &path);
    } else if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        let configs = input
            .routes
            .iter()
            .take(32)
            .enumerate()
            .map(|(i, spec)| config(pick(ROUTE_METHODS, spec.method), &route_path(spec), i))
            .collect();
        let method = Method::from_bytes(pick(METHODS, input.method).as_bytes()).expect("method");
        check(configs, &method, &request_path(&input.path));
    }
});

fn check(configs: Vec<RouteConfig>, method: &Method, path: &str) {
    let Ok(table) = RouteTable::new(configs) else {
        return;
    };
    let found = table.lookup(method, path);
    let path_routes = table.path_routes(path);
    assert_eq!(
        path_routes.is_empty(),
        found == RouteMatch::NotFound,
        "path_routes and lookup disagree on {path:?}: {found:?}"
    );
    match &found {
        RouteMatch::Found {
            route,
            path_parameters,
        } => {
            assert!(route.method().matches(method), "{route:?} for {method}");
            let decoded = decoded_segments(path).expect("a found path is absolute");
            let (rebuilt, used) =
                reassemble(route.resource(), path_parameters).unwrap_or_else(|| {
                    panic!(
                        "{path:?}: {path_parameters:?} misses a parameter of {}",
                        route.resource()
                    )
                });
            assert_eq!(used, path_parameters.len(), "{path:?}: extra parameters");
            assert_eq!(
                rebuilt,
                decoded.join("/"),
                "{path:?} matched {} with {path_parameters:?}",
                route.resource()
            );
        }
        RouteMatch::MethodNotAllowed { allowed } => {
            assert!(!allowed.is_empty());
            assert!(
                !allowed.contains(method),
                "{method} is allowed: {allowed:?}"
            );
            let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(names, sorted);
        }
        RouteMatch::NotFound => {}
    }

    for route in table.routes() {
        let own = match route.method() {
            RouteMethod::Any => Method::GET,
            RouteMethod::Only(m) => m.clone(),
        };
        let own_path = instantiate(route.resource());
        assert!(
            matches!(table.lookup(&own, &own_path), RouteMatch::Found { .. }),
            "{} {own_path} is not found in a table with {route:?}",
            own
        );
    }
}
