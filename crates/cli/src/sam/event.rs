//! A function's `Events`: `Api`, `HttpApi`, `Schedule`, `ScheduleV2`.

use std::collections::HashMap;

use super::api::Apis;
use super::error::{Located, Pos, Result};
use super::intrinsic::{Context, ResourceKind, IMPLICIT_HTTP_API, IMPLICIT_REST_API};
use super::model::{ApiProtocol, Event, PayloadFormat};
use super::value::{self, describe};
use super::yaml::{Key, Node};

/// The authorizer name that opens a route to everyone.
pub(crate) const AUTH_NONE: &str = "NONE";

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];

/// Routes seen so far, to reject the same route twice.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    seen: HashMap<(String, String, String), (String, String, Pos)>,
}

impl Routes {
    fn add(
        &mut self,
        api: &str,
        method: &str,
        path: &str,
        owner: (&str, &str),
        pos: Pos,
    ) -> Result<()> {
        let key = (api.to_owned(), method.to_owned(), route_shape(path));
        if let Some((function, event, first)) = self.seen.get(&key) {
            return Err(Located::new(
                pos,
                format!(
                    "route {method} {path} of {api} is already defined by event {event} of function {function} (line {})",
                    first.line
                ),
            ));
        }
        self.seen
            .insert(key, (owner.0.to_owned(), owner.1.to_owned(), pos));
        Ok(())
    }
}

/// `/items/{id}` and `/items/{name}` are the same route.
fn route_shape(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with("+}") {
                "{+}"
            } else if segment.starts_with('{') && segment.ends_with('}') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The events of one function. `events` is the raw (merged) `Events` node.
pub(crate) fn build(
    ctx: &Context<'_>,
    function: &str,
    events: Option<&Node>,
    apis: &Apis,
    routes: &mut Routes,
    warnings: &mut Vec<Located>,
) -> Result<Vec<Event>> {
    let Some(events) = events else {
        return Ok(Vec::new());
    };
    let entries = value::mapping(events, &format!("Events of function {function}"))?;
    let mut out = Vec::new();
    for (key, event) in entries {
        let reader = EventReader {
            ctx,
            function,
            key,
            event,
        };
        if let Some(event) = reader.read(apis, routes, warnings)? {
            out.push(event);
        }
    }
    Ok(out)
}

struct EventReader<'a, 't> {
    ctx: &'a Context<'t>,
    function: &'a str,
    key: &'a Key,
    event: &'a Node,
}

impl EventReader<'_, '_> {
    fn name(&self) -> &str {
        &self.key.name
    }

    fn what(&self, property: &str) -> String {
        format!(
            "{property} of event {} of function {}",
            self.name(),
            self.function
        )
    }

    fn read(
        &self,
        apis: &Apis,
        routes: &mut Routes,
        warnings: &mut Vec<Located>,
    ) -> Result<Option<Event>> {
        let name = self.name();
        value::mapping(
            self.event,
            &format!("event {name} of function {}", self.function),
        )?;
        let type_node = self.event.get("Type").ok_or_else(|| {
            Located::new(
                self.key.pos,
                format!("event {name} of function {} has no Type", self.function),
            )
        })?;
        let type_name = value::text(type_node, &self.what("Type"))?;
        let props = match self.event.get("Properties") {
            None => None,
            Some(p) if p.as_map().is_some() => Some(p),
            Some(p) if matches!(p.kind, super::yaml::Kind::Null) => None,
            Some(p) => {
                return Err(Located::new(
                    p.pos,
                    format!("{} must be a mapping", self.what("Properties")),
                ))
            }
        };
        match type_name.as_str() {
            "Api" => self.api(props, apis, routes).map(Some),
            "HttpApi" => self.http_api(props, apis, routes).map(Some),
            "Schedule" => self.schedule(props, false, warnings),
            "ScheduleV2" => self.schedule(props, true, warnings),
            other => {
                warnings.push(Located::new(
                    type_node.pos,
                    format!(
                        "event {name} of function {} has type {other}, which ESB does not provide; skipped",
                        self.function
                    ),
                ));
                Ok(None)
            }
        }
    }

    fn required(&self, props: Option<&Node>, key: &str) -> Result<Node> {
        match self.optional(props, key)? {
            Some(v) => Ok(v),
            None => Err(Located::new(
                self.event
                    .entry("Properties")
                    .map_or(self.key.pos, |(k, _)| k.pos),
                format!(
                    "event {} of function {} has no {key}",
                    self.name(),
                    self.function
                ),
            )),
        }
    }

    fn optional(&self, props: Option<&Node>, key: &str) -> Result<Option<Node>> {
        match props {
            Some(p) => self.ctx.property(p, key),
            None => Ok(None),
        }
    }

    fn path(&self, node: &Node) -> Result<String> {
        let path = value::text(node, &self.what("Path"))?;
        if !path.starts_with('/') {
            return Err(Located::new(
                node.pos,
                format!("{} must start with /, found {path:?}", self.what("Path")),
            ));
        }
        Ok(path)
    }

    fn method(&self, node: &Node) -> Result<String> {
        let method = value::text(node, &self.what("Method"))?.to_ascii_uppercase();
        let method = if method == "X-AMAZON-APIGATEWAY-ANY-METHOD" {
            "ANY".to_owned()
        } else {
            method
        };
        if !METHODS.contains(&method.as_str()) {
            return Err(Located::new(
                node.pos,
                format!(
                    "{} must be one of {}, found {}",
                    self.what("Method"),
                    METHODS.join(", "),
                    describe(node)
                ),
            ));
        }
        Ok(method)
    }

    /// The API an event attaches to: the referenced resource or the implicit one.
    fn api_id(&self, props: Option<&Node>, key: &str, protocol: ApiProtocol) -> Result<String> {
        let Some(node) = self.optional(props, key)? else {
            return Ok(match protocol {
                ApiProtocol::Rest => IMPLICIT_REST_API,
                ApiProtocol::Http => IMPLICIT_HTTP_API,
            }
            .to_owned());
        };
        let id = value::text(&node, &self.what(key))?;
        let expected = match protocol {
            ApiProtocol::Rest => ResourceKind::RestApi,
            ApiProtocol::Http => ResourceKind::HttpApi,
        };
        match self.ctx.resource(&id) {
            Some(r) if r.kind == expected => Ok(id),
            _ => Err(Located::new(
                node.pos,
                format!(
                    "{} must reference an {} of this template, found {id:?}",
                    self.what(key),
                    match protocol {
                        ApiProtocol::Rest => "AWS::Serverless::Api",
                        ApiProtocol::Http => "AWS::Serverless::HttpApi",
                    }
                ),
            )),
        }
    }

    /// `Auth.Authorizer` and `Auth.ApiKeyRequired` of the event.
    fn auth(&self, props: Option<&Node>) -> Result<(Option<String>, Option<bool>)> {
        let Some(auth) = props
            .map(|p| self.ctx.property_shallow(p, "Auth"))
            .transpose()?
            .flatten()
        else {
            return Ok((None, None));
        };
        let authorizer = match self.ctx.property(&auth, "Authorizer")? {
            Some(n) => Some(value::text(&n, &self.what("Auth.Authorizer"))?),
            None => None,
        };
        let api_key = match self.ctx.property(&auth, "ApiKeyRequired")? {
            Some(n) => Some(value::boolean(&n, &self.what("Auth.ApiKeyRequired"))?),
            None => None,
        };
        Ok((authorizer, api_key))
    }

    fn api(&self, props: Option<&Node>, apis: &Apis, routes: &mut Routes) -> Result<Event> {
        let path_node = self.required(props, "Path")?;
        let method_node = self.required(props, "Method")?;
        let path = self.path(&path_node)?;
        let method = self.method(&method_node)?;
        let api = self.api_id(props, "RestApiId", ApiProtocol::Rest)?;
        let settings = apis.get(&api);
        let (authorizer, api_key) = self.auth(props)?;
        let auth_none = match &authorizer {
            Some(a) => a == AUTH_NONE,
            None => settings.is_some_and(|s| s.default_auth_none),
        };
        let api_key_required =
            api_key.unwrap_or_else(|| settings.is_some_and(|s| s.api_key_required));
        routes.add(
            &api,
            &method,
            &path,
            (self.function, self.name()),
            self.key.pos,
        )?;
        Ok(Event::Api {
            name: self.name().to_owned(),
            api,
            path,
            method,
            auth_none,
            api_key_required,
        })
    }

    fn http_api(&self, props: Option<&Node>, apis: &Apis, routes: &mut Routes) -> Result<Event> {
        let path_node = self.optional(props, "Path")?;
        let method_node = self.optional(props, "Method")?;
        let (path, method) = match (&path_node, &method_node) {
            (None, None) => ("/{proxy+}".to_owned(), "ANY".to_owned()),
            (Some(p), _) if p.as_str() == Some("$default") => {
                ("/{proxy+}".to_owned(), "ANY".to_owned())
            }
            (Some(p), Some(m)) => (self.path(p)?, self.method(m)?),
            (Some(p), None) => (self.path(p)?, "ANY".to_owned()),
            (None, Some(m)) => {
                return Err(Located::new(
                    m.pos,
                    format!(
                        "event {} of function {} has a Method but no Path",
                        self.name(),
                        self.function
                    ),
                ))
            }
        };
        let api = self.api_id(props, "ApiId", ApiProtocol::Http)?;
        let settings = apis.get(&api);
        let (authorizer, _) = self.auth(props)?;
        let auth_none = match &authorizer {
            Some(a) => a == AUTH_NONE,
            None => settings.is_some_and(|s| s.default_auth_none),
        };
        let payload_format = match self.optional(props, "PayloadFormatVersion")? {
            None => PayloadFormat::V2,
            Some(node) => match value::text(&node, &self.what("PayloadFormatVersion"))?.as_str() {
                "1.0" => PayloadFormat::V1,
                "2.0" => PayloadFormat::V2,
                other => {
                    return Err(Located::new(
                        node.pos,
                        format!(
                            "{} must be \"1.0\" or \"2.0\", found {other:?}",
                            self.what("PayloadFormatVersion")
                        ),
                    ))
                }
            },
        };
        routes.add(
            &api,
            &method,
            &path,
            (self.function, self.name()),
            self.key.pos,
        )?;
        Ok(Event::HttpApi {
            name: self.name().to_owned(),
            api,
            path,
            method,
            auth_none,
            payload_format,
        })
    }

    fn schedule(
        &self,
        props: Option<&Node>,
        v2: bool,
        warnings: &mut Vec<Located>,
    ) -> Result<Option<Event>> {
        let expression_key = if v2 { "ScheduleExpression" } else { "Schedule" };
        let node = self.required(props, expression_key)?;
        let expression = value::text(&node, &self.what(expression_key))?;
        if v2 && expression.starts_with("at(") {
            warnings.push(Located::new(
                node.pos,
                format!(
                    "one-time schedule {expression} of function {} is not supported by ESB; event {} skipped",
                    self.function,
                    self.name()
                ),
            ));
            return Ok(None);
        }
        check_schedule_expression(&expression)
            .map_err(|m| Located::new(node.pos, format!("{}: {m}", self.what(expression_key))))?;

        let input = match self.optional(props, "Input")? {
            None => None,
            Some(node) => {
                let text = value::text(&node, &self.what("Input"))?;
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                    return Err(Located::new(
                        node.pos,
                        format!("{} must be JSON text: {e}", self.what("Input")),
                    ));
                }
                Some(text)
            }
        };
        let enabled_node = if v2 {
            None
        } else {
            self.optional(props, "Enabled")?
        };
        let state_node = self.optional(props, "State")?;
        let enabled = match (enabled_node, state_node) {
            (Some(e), Some(_)) => {
                return Err(Located::new(
                    e.pos,
                    format!(
                        "event {} of function {} sets both Enabled and State; use one",
                        self.name(),
                        self.function
                    ),
                ))
            }
            (Some(e), None) => value::boolean(&e, &self.what("Enabled"))?,
            (None, Some(s)) => match value::text(&s, &self.what("State"))?.as_str() {
                "ENABLED" => true,
                "DISABLED" => false,
                other => {
                    return Err(Located::new(
                        s.pos,
                        format!(
                            "{} must be ENABLED or DISABLED, found {other:?}",
                            self.what("State")
                        ),
                    ))
                }
            },
            (None, None) => true,
        };
        let timezone = if v2 {
            match self.optional(props, "ScheduleExpressionTimezone")? {
                Some(n) => Some(value::text(&n, &self.what("ScheduleExpressionTimezone"))?),
                None => None,
            }
        } else {
            None
        };
        Ok(Some(Event::Schedule {
            name: self.name().to_owned(),
            expression,
            input,
            enabled,
            timezone,
        }))
    }
}

/// `rate(N unit)` or `cron(six fields)`, as EventBridge accepts them.
pub(crate) fn check_schedule_expression(expression: &str) -> std::result::Result<(), String> {
    if let Some(body) = expression
        .strip_prefix("rate(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let mut parts = body.split_whitespace();
        let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("{expression:?} must look like rate(5 minutes)"));
        };
        let n: u64 =
            n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("the rate in {expression:?} must be a positive whole number")
            })?;
        let singular = ["minute", "hour", "day"];
        let plural = ["minutes", "hours", "days"];
        let ok = if n == 1 {
            singular.contains(&unit)
        } else {
            plural.contains(&unit)
        };
        if !ok {
            let expected = if n == 1 { singular } else { plural };
            return Err(format!(
                "the unit in {expression:?} must be one of {}",
                expected.join(", ")
            ));
        }
        return Ok(());
    }
    if let Some(body) = expression
        .strip_prefix("cron(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let fields = body.split_whitespace().count();
        if fields != 6 {
            return Err(format!(
                "{expression:?} must have six fields (minutes hours day-of-month month day-of-week year), found {fields}"
            ));
        }
        // Every field as EventBridge reads it, as the gateway will.
        return esb_gateway::schedule::ScheduleExpression::parse(expression)
            .map(|_| ())
            .map_err(|e| e.to_string());
    }
    Err(format!("{expression:?} must be rate(...) or cron(...)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_expressions() {
        assert!(check_schedule_expression("rate(1 minute)").is_ok());
        assert!(check_schedule_expression("rate(5 minutes)").is_ok());
        assert!(check_schedule_expression("cron(0 12 * * ? *)").is_ok());
        assert_eq!(
            check_schedule_expression("rate(1 minutes)"),
            Err("the unit in \"rate(1 minutes)\" must be one of minute, hour, day".into())
        );
        assert_eq!(
            check_schedule_expression("rate(0 days)"),
            Err("the rate in \"rate(0 days)\" must be a positive whole number".into())
        );
        assert!(check_schedule_expression("cron(0 12 * * ?)").is_err());
        assert!(check_schedule_expression("cron(0 12 * * * *)").is_err());
        assert!(check_schedule_expression("cron(0 25 ? * MON *)").is_err());
        assert!(check_schedule_expression("every day").is_err());
    }

    #[test]
    fn route_shapes_ignore_parameter_names() {
        assert_eq!(route_shape("/items/{id}"), route_shape("/items/{name}"));
        assert_ne!(route_shape("/items/{id}"), route_shape("/items/{proxy+}"));
        assert_ne!(route_shape("/items"), route_shape("/items/{id}"));
    }
}
