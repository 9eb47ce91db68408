//! `AWS::Serverless::Function`.

use std::collections::{BTreeMap, HashMap};

use super::api::Apis;
use super::code;
use super::error::{Located, Pos, Result};
use super::event::{self, Routes};
use super::globals::{merge_properties, Globals};
use super::intrinsic::{Context, Resource};
use super::model::{Architecture, Function, Layer, Package};
use super::value::{self, describe};
use super::yaml::{Kind, Node};

/// The runtimes ESB has base images for.
pub const RUNTIMES: &[&str] = &[
    "python3.8",
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "provided",
    "provided.al2",
    "provided.al2023",
];

/// Lambda's limit on layers per function.
const MAX_LAYERS: usize = 5;

/// Environment variables Lambda sets itself and refuses in a function's configuration.
const RESERVED_VARIABLES: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_REGION",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "LAMBDA_RUNTIME_DIR",
    "LAMBDA_TASK_ROOT",
];

/// Properties ESB reads.
const USED: &[&str] = &[
    "Architectures",
    "AutoPublishAlias",
    "CodeUri",
    "Environment",
    "Events",
    "FunctionName",
    "Handler",
    "ImageConfig",
    "ImageUri",
    "InlineCode",
    "Layers",
    "MemorySize",
    "PackageType",
    "ProvisionedConcurrencyConfig",
    "ReservedConcurrentExecutions",
    "Runtime",
    "Timeout",
];

/// Properties that only matter on AWS (permissions, deployment, tracing,
/// networking); ignored without a warning.
const AWS_ONLY: &[&str] = &[
    "AssumeRolePolicyDocument",
    "AutoPublishAliasAllProperties",
    "AutoPublishCodeSha256",
    "CodeSigningConfigArn",
    "DeadLetterQueue",
    "DeploymentPreference",
    "Description",
    "EphemeralStorage",
    "EventInvokeConfig",
    "KmsKeyArn",
    "LoggingConfig",
    "PermissionsBoundary",
    "Policies",
    "PropagateTags",
    "RecursiveLoop",
    "Role",
    "RolePath",
    "RuntimeManagementConfig",
    "SnapStart",
    "Tags",
    "Tracing",
    "VersionDescription",
    "VpcConfig",
];

pub(crate) fn build(
    ctx: &Context<'_>,
    resource: &Resource<'_>,
    globals: &Globals<'_>,
    layers: &HashMap<String, Layer>,
    apis: &Apis,
    routes: &mut Routes,
    warnings: &mut Vec<Located>,
) -> Result<Function> {
    let id = resource.id();
    let props = merge_properties(globals.function, resource.properties)
        .unwrap_or_else(|| Node::new(Kind::Map(Vec::new()), resource.key.pos));
    // Where to point when a required property is missing.
    let at = resource.properties_pos();
    let f = FunctionReader {
        ctx,
        id,
        props: &props,
        at,
    };

    for (key, _) in props.as_map().unwrap_or_default() {
        let name = key.name.as_str();
        if USED.contains(&name) || AWS_ONLY.contains(&name) {
            continue;
        }
        let message = match name {
            "FunctionUrlConfig" => format!(
                "function URLs are not provided by ESB; FunctionUrlConfig of {id} is ignored"
            ),
            "FileSystemConfigs" => format!(
                "EFS file systems are not provided by ESB; FileSystemConfigs of {id} is ignored"
            ),
            _ => format!("property {name} of function {id} is not used by ESB"),
        };
        warnings.push(Located::new(key.pos, message));
    }

    let name = ctx.physical_name(id, resource.key.pos)?;
    check_function_name(&name).map_err(|m| {
        let pos = props
            .get("FunctionName")
            .map_or(resource.key.pos, |n| n.pos);
        Located::new(pos, format!("FunctionName {name:?} of {id} {m}"))
    })?;

    let package = f.package(resource, layers, warnings)?;
    let architecture = f.architecture()?;
    let environment = f.environment()?;
    let timeout_seconds = f.integer("Timeout", 1..=900)?.unwrap_or(3);
    let memory_mb = f.integer("MemorySize", 128..=10240)?.unwrap_or(128);
    let reserved_concurrency = f.integer("ReservedConcurrentExecutions", 0..=u32::MAX)?;
    let provisioned_concurrency = f.provisioned(reserved_concurrency, warnings)?;
    let events_node = ctx.property_shallow(&props, "Events")?;
    let events = event::build(ctx, id, events_node.as_ref(), apis, routes, warnings)?;

    Ok(Function {
        logical_id: id.to_owned(),
        name,
        package,
        architecture,
        environment,
        timeout_seconds,
        memory_mb,
        reserved_concurrency,
        provisioned_concurrency,
        events,
    })
}

/// Lambda's rule for function names.
fn check_function_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("may only contain letters, digits, - and _");
    }
    Ok(())
}

struct FunctionReader<'a, 't> {
    ctx: &'a Context<'t>,
    id: &'a str,
    props: &'a Node,
    at: Pos,
}

impl FunctionReader<'_, '_> {
    fn what(&self, property: &str) -> String {
        format!("{property} of function {}", self.id)
    }

    fn get(&self, key: &str) -> Result<Option<Node>> {
        self.ctx.property(self.props, key)
    }

    fn text(&self, key: &str) -> Result<Option<(String, Node)>> {
        match self.get(key)? {
            Some(node) => Ok(Some((value::text(&node, &self.what(key))?, node))),
            None => Ok(None),
        }
    }

    fn integer(&self, key: &str, range: std::ops::RangeInclusive<u32>) -> Result<Option<u32>> {
        match self.get(key)? {
            Some(node) => Ok(Some(value::integer(&node, &self.what(key), range)?)),
            None => Ok(None),
        }
    }

    fn missing(&self, what: &str) -> Located {
        Located::new(self.at, format!("function {} has no {what}", self.id))
    }

    fn package(
        &self,
        resource: &Resource<'_>,
        layers: &HashMap<String, Layer>,
        warnings: &mut Vec<Located>,
    ) -> Result<Package> {
        let package_type = match self.text("PackageType")? {
            None => "Zip".to_owned(),
            Some((t, node)) => match t.as_str() {
                "Zip" | "Image" => t,
                other => {
                    return Err(Located::new(
                        node.pos,
                        format!(
                            "{} must be Zip or Image, found {other:?}",
                            self.what("PackageType")
                        ),
                    ))
                }
            },
        };
        if package_type == "Image" {
            return self.image(resource);
        }

        let (runtime, runtime_node) = self
            .text("Runtime")?
            .ok_or_else(|| self.missing("Runtime"))?;
        if !RUNTIMES.contains(&runtime.as_str()) {
            return Err(Located::new(
                runtime_node.pos,
                format!(
                    "runtime {runtime} is not supported by ESB (supported: {})",
                    RUNTIMES.join(", ")
                ),
            ));
        }
        let handler = match self.text("Handler")? {
            Some((h, _)) => h,
            None if runtime.starts_with("provided") => "bootstrap".to_owned(),
            None => return Err(self.missing(&format!("Handler (required for {runtime})"))),
        };
        let layers = self.layers(&runtime, layers, warnings)?;

        // InlineCode beats a CodeUri that only comes from Globals.
        let local_code_uri = resource.properties.and_then(|p| p.get("CodeUri")).is_some();
        match (self.get("InlineCode")?, self.get("CodeUri")?) {
            (Some(inline), Some(_)) if local_code_uri => Err(Located::new(
                inline.pos,
                format!("function {} sets both CodeUri and InlineCode; use one", self.id),
            )),
            (Some(inline), _) => Ok(Package::Inline {
                code: value::text(&inline, &self.what("InlineCode"))?,
                runtime,
                handler,
                layers,
            }),
            (None, Some(uri)) => Ok(Package::Zip {
                code: code::local(self.ctx.template_dir(), &uri, &self.what("CodeUri"))?,
                runtime,
                handler,
                layers,
            }),
            (None, None) => Err(Located::new(
                self.at,
                format!(
                    "function {} has no CodeUri (set CodeUri, InlineCode or Globals.Function.CodeUri)",
                    self.id
                ),
            )),
        }
    }

    fn layers(
        &self,
        runtime: &str,
        known: &HashMap<String, Layer>,
        warnings: &mut Vec<Located>,
    ) -> Result<Vec<Layer>> {
        let Some(list) = self.get("Layers")? else {
            return Ok(Vec::new());
        };
        let Some(items) = list.as_seq() else {
            return Err(Located::new(
                list.pos,
                format!(
                    "{} must be a list, found {}",
                    self.what("Layers"),
                    describe(&list)
                ),
            ));
        };
        if items.len() > MAX_LAYERS {
            return Err(Located::new(
                list.pos,
                format!(
                    "function {} has {} layers; Lambda allows at most {MAX_LAYERS}",
                    self.id,
                    items.len()
                ),
            ));
        }
        let mut out = Vec::new();
        for item in items {
            let arn = value::text(item, &format!("each item of {}", self.what("Layers")))?;
            match known.get(&arn) {
                Some(layer) => {
                    if !layer.compatible_runtimes.is_empty()
                        && !layer.compatible_runtimes.iter().any(|r| r == runtime)
                    {
                        warnings.push(Located::new(
                            item.pos,
                            format!(
                                "layer {} lists CompatibleRuntimes {} but function {} uses {runtime}",
                                layer.logical_id,
                                layer.compatible_runtimes.join(", "),
                                self.id
                            ),
                        ));
                    }
                    out.push(layer.clone());
                }
                None if arn.starts_with("arn:") => warnings.push(Located::new(
                    item.pos,
                    format!("layer {arn} is not available in ESB; skipped"),
                )),
                None => {
                    return Err(Located::new(
                        item.pos,
                        format!(
                            "layer {arn:?} of function {} is neither a layer of this template nor a layer ARN",
                            self.id
                        ),
                    ))
                }
            }
        }
        Ok(out)
    }

    fn image(&self, resource: &Resource<'_>) -> Result<Package> {
        let id = self.id;
        if let Some((key, _)) = resource.properties.and_then(|p| p.entry("Layers")) {
            return Err(Located::new(
                key.pos,
                format!("function {id} has PackageType Image, which cannot use Layers"),
            ));
        }
        if let Some((key, _)) = resource.properties.and_then(|p| p.entry("InlineCode")) {
            return Err(Located::new(
                key.pos,
                format!("function {id} has PackageType Image, which cannot use InlineCode"),
            ));
        }
        let metadata = match resource.node.get("Metadata") {
            Some(m) => self.ctx.resolve(m)?,
            None => None,
        };
        let Some(metadata) = metadata else {
            return Err(Located::new(
                resource.key.pos,
                format!(
                    "function {id} has PackageType Image but no Metadata with DockerContext and Dockerfile to build it from"
                ),
            ));
        };
        let meta = |key: &str| format!("Metadata.{key} of function {id}");
        let context_node = metadata.get("DockerContext").ok_or_else(|| {
            Located::new(
                metadata.pos,
                format!("function {id} has no Metadata.DockerContext"),
            )
        })?;
        let context = code::local_path(
            self.ctx.template_dir(),
            context_node,
            &meta("DockerContext"),
        )?;
        if !context.is_dir() {
            return Err(Located::new(
                context_node.pos,
                format!(
                    "{} {} is not a directory",
                    meta("DockerContext"),
                    context.display()
                ),
            ));
        }
        let (dockerfile_name, dockerfile_pos) = match metadata.get("Dockerfile") {
            Some(n) => (value::text(n, &meta("Dockerfile"))?, n.pos),
            None => ("Dockerfile".to_owned(), metadata.pos),
        };
        let dockerfile = super::normalize(&context.join(&dockerfile_name));
        if !dockerfile.is_file() {
            return Err(Located::new(
                dockerfile_pos,
                format!(
                    "{} {} does not exist",
                    meta("Dockerfile"),
                    dockerfile.display()
                ),
            ));
        }
        let build_args = match metadata.get("DockerBuildArgs") {
            Some(n) => value::text_map(n, &meta("DockerBuildArgs"))?,
            None => BTreeMap::new(),
        };
        let target = match metadata.get("DockerBuildTarget") {
            Some(n) => Some(value::text(n, &meta("DockerBuildTarget"))?),
            None => None,
        };
        let config = self.get("ImageConfig")?;
        let list = |key: &str| -> Result<Vec<String>> {
            match config.as_ref().and_then(|c| c.get(key)) {
                Some(n) => value::text_list(n, &self.what(&format!("ImageConfig.{key}"))),
                None => Ok(Vec::new()),
            }
        };
        let working_directory = match config.as_ref().and_then(|c| c.get("WorkingDirectory")) {
            Some(n) => Some(value::text(n, &self.what("ImageConfig.WorkingDirectory"))?),
            None => None,
        };
        Ok(Package::Image {
            dockerfile,
            context,
            build_args,
            target,
            command: list("Command")?,
            entry_point: list("EntryPoint")?,
            working_directory,
        })
    }

    fn architecture(&self) -> Result<Architecture> {
        let Some(node) = self.get("Architectures")? else {
            return Ok(Architecture::X86_64);
        };
        let items = value::text_list(&node, &self.what("Architectures"))?;
        match items.as_slice() {
            [a] if a == "x86_64" => Ok(Architecture::X86_64),
            [a] if a == "arm64" => Ok(Architecture::Arm64),
            _ => Err(Located::new(
                node.pos,
                format!(
                    "{} must be exactly one of x86_64 or arm64, found [{}]",
                    self.what("Architectures"),
                    items.join(", ")
                ),
            )),
        }
    }

    fn environment(&self) -> Result<BTreeMap<String, String>> {
        let Some(env) = self.get("Environment")? else {
            return Ok(BTreeMap::new());
        };
        value::mapping(&env, &self.what("Environment"))?;
        let Some(vars) = env.get("Variables") else {
            return Ok(BTreeMap::new());
        };
        let what = self.what("Environment.Variables");
        let mut out = BTreeMap::new();
        for (key, node) in value::mapping(vars, &what)? {
            let name = &key.name;
            let valid = name.len() >= 2
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(Located::new(
                    key.pos,
                    format!(
                        "environment variable name {name:?} of function {} must match [a-zA-Z][a-zA-Z0-9_]+",
                        self.id
                    ),
                ));
            }
            if RESERVED_VARIABLES.contains(&name.as_str()) {
                return Err(Located::new(
                    key.pos,
                    format!(
                        "environment variable {name} of function {} is reserved by Lambda",
                        self.id
                    ),
                ));
            }
            let text = match &node.kind {
                Kind::Null => String::new(),
                _ => value::text(node, &format!("{what}.{name}"))?,
            };
            out.insert(name.clone(), text);
        }
        Ok(out)
    }

    fn provisioned(
        &self,
        reserved: Option<u32>,
        warnings: &mut Vec<Located>,
    ) -> Result<Option<u32>> {
        let Some(config) = self.get("ProvisionedConcurrencyConfig")? else {
            return Ok(None);
        };
        let what = self.what("ProvisionedConcurrencyConfig.ProvisionedConcurrentExecutions");
        value::mapping(&config, &self.what("ProvisionedConcurrencyConfig"))?;
        let node = config
            .get("ProvisionedConcurrentExecutions")
            .ok_or_else(|| {
                Located::new(
                    config.pos,
                    format!(
                        "{} needs ProvisionedConcurrentExecutions",
                        self.what("ProvisionedConcurrencyConfig")
                    ),
                )
            })?;
        let count = value::integer(node, &what, 1..=u32::MAX)?;
        if let Some(reserved) = reserved {
            if count > reserved {
                return Err(Located::new(
                    node.pos,
                    format!(
                        "{what} ({count}) is more than ReservedConcurrentExecutions ({reserved})"
                    ),
                ));
            }
        }
        if self.props.get("AutoPublishAlias").is_none() {
            warnings.push(Located::new(
                config.pos,
                format!(
                    "ProvisionedConcurrencyConfig of function {} needs AutoPublishAlias in SAM; ESB keeps {count} workers warm anyway",
                    self.id
                ),
            ));
        }
        Ok(Some(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        assert!(check_function_name("shop-api_v2").is_ok());
        assert!(check_function_name("").is_err());
        assert!(check_function_name(&"a".repeat(65)).is_err());
        assert_eq!(
            check_function_name("my.fn"),
            Err("may only contain letters, digits, - and _")
        );
    }
}
