//! `AWS::Serverless::Api` / `AWS::Serverless::HttpApi`, explicit or implicit:
//! their stage, CORS and default authorization.

use super::error::{Located, Result};
use super::event::AUTH_NONE;
use super::globals::{merge_properties, Globals};
use super::intrinsic::{Context, Resource, ResourceKind, IMPLICIT_HTTP_API, IMPLICIT_REST_API};
use super::model::{Api, ApiProtocol, Cors, Event, Function};
use super::value::{self, describe};
use super::yaml::{Kind, Node};

/// What events need to know about the API they attach to.
#[derive(Debug, Clone)]
pub(crate) struct ApiSettings {
    pub api: Api,
    /// `Auth.DefaultAuthorizer: NONE`.
    pub default_auth_none: bool,
    /// `Auth.ApiKeyRequired` (REST only).
    pub api_key_required: bool,
}

/// The APIs of a template, the implicit ones included.
#[derive(Debug)]
pub(crate) struct Apis {
    entries: Vec<ApiSettings>,
}

impl Apis {
    /// The implicit APIs, configured by `Globals.Api` / `Globals.HttpApi`.
    pub fn new(ctx: &Context<'_>, globals: &Globals<'_>) -> Result<Self> {
        let rest = settings(ctx, IMPLICIT_REST_API, ApiProtocol::Rest, globals.api)?;
        let http = settings(ctx, IMPLICIT_HTTP_API, ApiProtocol::Http, globals.http_api)?;
        Ok(Apis {
            entries: vec![rest, http],
        })
    }

    /// An explicit API resource, with Globals merged in.
    pub fn add(
        &mut self,
        ctx: &Context<'_>,
        resource: &Resource<'_>,
        globals: &Globals<'_>,
        warnings: &mut Vec<Located>,
    ) -> Result<()> {
        let (protocol, global) = match resource.kind {
            ResourceKind::HttpApi => (ApiProtocol::Http, globals.http_api),
            _ => (ApiProtocol::Rest, globals.api),
        };
        let props = merge_properties(global, resource.properties);
        if let Some(props) = &props {
            for key in ["DefinitionBody", "DefinitionUri"] {
                if let Some((k, _)) = props.entry(key) {
                    warnings.push(Located::new(
                        k.pos,
                        format!(
                            "the OpenAPI {key} of {} is not used by ESB; routes come from function events",
                            resource.id()
                        ),
                    ));
                }
            }
        }
        let settings = settings(ctx, resource.id(), protocol, props.as_ref())?;
        self.entries.push(settings);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&ApiSettings> {
        self.entries.iter().find(|a| a.api.logical_id == id)
    }

    /// The APIs some function's event routes through.
    pub fn used(&self, functions: &[Function]) -> Vec<Api> {
        let mut explicit: Vec<Api> = Vec::new();
        let mut implicit: Vec<Api> = Vec::new();
        for settings in &self.entries {
            let id = &settings.api.logical_id;
            let used = functions.iter().flat_map(|f| &f.events).any(|e| match e {
                Event::Api { api, .. } | Event::HttpApi { api, .. } => api == id,
                Event::Schedule { .. } => false,
            });
            if used {
                if id == IMPLICIT_REST_API || id == IMPLICIT_HTTP_API {
                    implicit.push(settings.api.clone());
                } else {
                    explicit.push(settings.api.clone());
                }
            }
        }
        explicit.extend(implicit);
        explicit
    }
}

fn settings(
    ctx: &Context<'_>,
    id: &str,
    protocol: ApiProtocol,
    props: Option<&Node>,
) -> Result<ApiSettings> {
    let default_stage = match protocol {
        ApiProtocol::Rest => "Prod",
        ApiProtocol::Http => "$default",
    };
    let mut settings = ApiSettings {
        api: Api {
            logical_id: id.to_owned(),
            protocol,
            stage_name: default_stage.to_owned(),
            cors: None,
        },
        default_auth_none: false,
        api_key_required: false,
    };
    let Some(props) = props else {
        return Ok(settings);
    };
    if let Some(stage) = ctx.property(props, "StageName")? {
        settings.api.stage_name = value::text(&stage, &format!("StageName of {id}"))?;
    }
    settings.api.cors = match protocol {
        ApiProtocol::Rest => match ctx.property(props, "Cors")? {
            Some(node) => Some(rest_cors(&node, id)?),
            None => None,
        },
        ApiProtocol::Http => match ctx.property(props, "CorsConfiguration")? {
            Some(node) => http_cors(&node, id)?,
            None => None,
        },
    };
    if let Some(auth) = ctx.property_shallow(props, "Auth")? {
        if let Some(default) = ctx.property(&auth, "DefaultAuthorizer")? {
            let default = value::text(&default, &format!("Auth.DefaultAuthorizer of {id}"))?;
            settings.default_auth_none = default == AUTH_NONE;
        }
        if protocol == ApiProtocol::Rest {
            if let Some(required) = ctx.property(&auth, "ApiKeyRequired")? {
                settings.api_key_required =
                    value::boolean(&required, &format!("Auth.ApiKeyRequired of {id}"))?;
            }
        }
    }
    Ok(settings)
}

/// A REST API header value like `"'GET,POST'"` as its items.
fn header_items(node: &Node, what: &str) -> Result<Vec<String>> {
    let text = value::text(node, what)?;
    let text = text.trim();
    let unquoted = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .ok_or_else(|| {
            Located::new(
                node.pos,
                format!("{what} must be a quoted header value like \"'*'\", found {text:?}"),
            )
        })?;
    Ok(unquoted
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

fn rest_cors(node: &Node, id: &str) -> Result<Cors> {
    let what = format!("Cors of {id}");
    if let Kind::Scalar(_) = node.kind {
        return Ok(Cors {
            allow_origins: header_items(node, &what)?,
            ..Cors::default()
        });
    }
    value::mapping(node, &what)?;
    let origin = node
        .get("AllowOrigin")
        .ok_or_else(|| Located::new(node.pos, format!("{what} needs AllowOrigin")))?;
    let mut cors = Cors {
        allow_origins: header_items(origin, &format!("{what}.AllowOrigin"))?,
        ..Cors::default()
    };
    if let Some(n) = node.get("AllowMethods") {
        cors.allow_methods = header_items(n, &format!("{what}.AllowMethods"))?;
    }
    if let Some(n) = node.get("AllowHeaders") {
        cors.allow_headers = header_items(n, &format!("{what}.AllowHeaders"))?;
    }
    if let Some(n) = node.get("MaxAge") {
        let items = header_items(n, &format!("{what}.MaxAge"))?;
        let age = items
            .first()
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(|| {
                Located::new(
                    n.pos,
                    format!(
                        "{what}.MaxAge must be a number of seconds, found {}",
                        describe(n)
                    ),
                )
            })?;
        cors.max_age = Some(age);
    }
    if let Some(n) = node.get("AllowCredentials") {
        cors.allow_credentials = value::boolean(n, &format!("{what}.AllowCredentials"))?;
    }
    Ok(cors)
}

fn http_cors(node: &Node, id: &str) -> Result<Option<Cors>> {
    let what = format!("CorsConfiguration of {id}");
    if let Kind::Scalar(_) = node.kind {
        return Ok(value::boolean(node, &what)?.then(|| Cors {
            allow_origins: vec!["*".to_owned()],
            allow_methods: vec!["*".to_owned()],
            allow_headers: vec!["*".to_owned()],
            ..Cors::default()
        }));
    }
    value::mapping(node, &what)?;
    let list = |key: &str| -> Result<Vec<String>> {
        match node.get(key) {
            Some(n) => value::text_list(n, &format!("{what}.{key}")),
            None => Ok(Vec::new()),
        }
    };
    let mut cors = Cors {
        allow_origins: list("AllowOrigins")?,
        allow_methods: list("AllowMethods")?,
        allow_headers: list("AllowHeaders")?,
        expose_headers: list("ExposeHeaders")?,
        ..Cors::default()
    };
    if let Some(n) = node.get("MaxAge") {
        cors.max_age = Some(value::integer(n, &format!("{what}.MaxAge"), 0..=86400)?);
    }
    if let Some(n) = node.get("AllowCredentials") {
        cors.allow_credentials = value::boolean(n, &format!("{what}.AllowCredentials"))?;
    }
    Ok(Some(cors))
}
