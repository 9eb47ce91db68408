//! AWS SAM templates: from `template.yaml` to the typed [`App`] ESB runs.
//!
//! [`load`] reads a template (YAML or JSON), applies `Globals`, parameters
//! and `--parameter-overrides`, evaluates `Conditions` and the intrinsic
//! functions, and checks everything ESB needs. It is pure: it reads the
//! template and checks that code paths exist, nothing else.
//!
//! Every error carries the line and column of the node that is wrong and
//! displays as `template.yaml:12:5: message`. What ESB does not provide
//! (DynamoDB tables, SQS events, IAM roles, ...) becomes a [`Warning`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

mod api;
mod bucket;
mod code;
mod database;
mod error;
mod event;
mod function;
mod globals;
mod intrinsic;
mod layer;
mod model;
mod parameter;
mod value;
mod yaml;

pub use error::{TemplateError, Warning};
pub use function::RUNTIMES;
pub use model::{
    Api, ApiProtocol, App, Architecture, Bucket, Code, Cors, Database, Event, Function, Layer,
    LifecycleRule, Package, PayloadFormat,
};

use error::{Located, Pos, Result};
use globals::Globals;
use intrinsic::{Context, Resource, ResourceKind};
use yaml::{Kind, Node};

/// The only SAM transform there is.
pub const SAM_TRANSFORM: &str = "AWS::Serverless-2016-10-31";
const LANGUAGE_EXTENSIONS: &str = "AWS::LanguageExtensions";

/// Inputs that are not in the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// `--parameter-overrides Key=Value`.
    pub overrides: BTreeMap<String, String>,
    /// `AWS::Region`.
    pub region: String,
    /// `AWS::AccountId`.
    pub account_id: String,
    /// `AWS::StackName`.
    pub stack_name: String,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            overrides: BTreeMap::new(),
            region: "us-east-1".to_owned(),
            account_id: "000000000000".to_owned(),
            stack_name: "esb".to_owned(),
        }
    }
}

/// Read and resolve the template at `path`.
pub fn load(path: &Path, options: &LoadOptions) -> Result<App, TemplateError> {
    let text = std::fs::read_to_string(path).map_err(|e| TemplateError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the template: {e}"),
    })?;
    parse(&text, path, options)
}

/// Resolve template `text`. `path` names the file in messages, and relative
/// `CodeUri`, `ContentUri` and `DockerContext` are resolved against its directory.
pub fn parse(text: &str, path: &Path, options: &LoadOptions) -> Result<App, TemplateError> {
    let mut warnings = Vec::new();
    let result = build(text, path, options, &mut warnings);
    let parts = result.map_err(|e| e.into_error(path))?;
    // Globals are merged into every function: report their warnings once.
    warnings.sort_by_key(|w| w.pos);
    warnings.dedup();
    Ok(App {
        template: path.to_path_buf(),
        functions: parts.functions,
        apis: parts.apis,
        buckets: parts.buckets,
        databases: parts.databases,
        warnings: warnings.into_iter().map(|w| w.into_warning(path)).collect(),
    })
}

struct Parts {
    functions: Vec<Function>,
    apis: Vec<Api>,
    buckets: Vec<Bucket>,
    databases: Vec<Database>,
}

const TOP_LEVEL: &[&str] = &[
    "AWSTemplateFormatVersion",
    "Description",
    "Metadata",
    "Parameters",
    "Rules",
    "Mappings",
    "Conditions",
    "Transform",
    "Globals",
    "Resources",
    "Outputs",
];

fn build(
    text: &str,
    path: &Path,
    options: &LoadOptions,
    warnings: &mut Vec<Located>,
) -> Result<Parts> {
    let root = yaml::load(text)?;
    if root.as_map().is_none() {
        return Err(Located::new(
            root.pos,
            format!("a template must be a mapping, found {}", root.type_name()),
        ));
    }
    for (key, _) in root.as_map().unwrap_or_default() {
        if !TOP_LEVEL.contains(&key.name.as_str()) {
            warnings.push(Located::new(
                key.pos,
                format!("unknown top-level section {}; ignored", key.name),
            ));
        }
    }

    let (parameters, parameter_warnings) =
        parameter::resolve(root.get("Parameters"), &options.overrides)?;
    warnings.extend(parameter_warnings);

    let conditions = named_section(&root, "Conditions")?;
    let resource_entries = match root.entry("Resources") {
        None => {
            return Err(Located::new(
                root.pos,
                "the template has no Resources section",
            ))
        }
        Some((key, node)) => match &node.kind {
            Kind::Map(entries) if !entries.is_empty() => entries,
            _ => {
                return Err(Located::new(
                    if matches!(node.kind, Kind::Null) {
                        key.pos
                    } else {
                        node.pos
                    },
                    "Resources must be a mapping with at least one resource",
                ))
            }
        },
    };
    let mut resources = BTreeMap::new();
    for (key, node) in resource_entries {
        let resource = read_resource(key, node, &conditions)?;
        resources.insert(key.name.as_str(), resource);
    }
    check_transform(&root, resources.values())?;
    let globals = Globals::read(root.get("Globals"), warnings)?;

    let template_dir = template_dir(path);
    let ctx = Context::new(
        options,
        parameters,
        root.get("Mappings"),
        conditions,
        resources,
        template_dir,
    );

    // Resources in template order, without those whose condition is false.
    let mut active: Vec<&Resource<'_>> = Vec::new();
    for (key, _) in resource_entries {
        if let Some(resource) = ctx.resource(&key.name) {
            if ctx.is_active(resource)? {
                active.push(resource);
            }
        }
    }

    let mut layers = HashMap::new();
    for resource in active.iter().filter(|r| r.kind == ResourceKind::Layer) {
        let layer = layer::build(&ctx, resource)?;
        let arn = ctx.physical_name(resource.id(), resource.key.pos)?;
        layers.insert(arn, layer);
    }
    let mut apis = api::Apis::new(&ctx, &globals)?;
    for resource in active
        .iter()
        .filter(|r| matches!(r.kind, ResourceKind::RestApi | ResourceKind::HttpApi))
    {
        apis.add(&ctx, resource, &globals, warnings)?;
    }

    let mut functions = Vec::new();
    let mut buckets = Vec::new();
    let mut databases = database::Databases::default();
    let mut names: HashMap<String, Pos> = HashMap::new();
    let mut routes = event::Routes::default();
    for resource in &active {
        match resource.kind {
            ResourceKind::Function => {
                let function = function::build(
                    &ctx,
                    resource,
                    &globals,
                    &layers,
                    &apis,
                    &mut routes,
                    warnings,
                )?;
                if let Some(first) =
                    names.insert(function.name.to_ascii_lowercase(), resource.key.pos)
                {
                    return Err(Located::new(
                        resource.key.pos,
                        format!(
                            "function name {} is already used by the function at line {}",
                            function.name, first.line
                        ),
                    ));
                }
                functions.push(function);
            }
            ResourceKind::Bucket => {
                let bucket = bucket::build(&ctx, resource, warnings)?;
                if let Some(other) = buckets.iter().find(|b: &&Bucket| b.name == bucket.name) {
                    return Err(Located::new(
                        resource.key.pos,
                        format!(
                            "bucket name {} is already used by {}",
                            bucket.name, other.logical_id
                        ),
                    ));
                }
                buckets.push(bucket);
            }
            ResourceKind::DbCluster | ResourceKind::DbInstance => {
                databases.add(&ctx, resource, warnings)?;
            }
            ResourceKind::Layer | ResourceKind::RestApi | ResourceKind::HttpApi => {}
            ResourceKind::Other => warnings.push(skipped(resource)),
        }
    }

    Ok(Parts {
        apis: apis.used(&functions),
        functions,
        buckets,
        databases: databases.finish()?,
    })
}

fn skipped(resource: &Resource<'_>) -> Located {
    let id = resource.id();
    let message = match resource.type_name.as_str() {
        "AWS::DynamoDB::Table" | "AWS::Serverless::SimpleTable" => {
            format!("DynamoDB tables are not provided by ESB; {id} is skipped")
        }
        "AWS::Lambda::Function" => format!(
            "AWS::Lambda::Function {id} is skipped; ESB runs AWS::Serverless::Function resources"
        ),
        t => format!("{t} is not provided by ESB; {id} is skipped"),
    };
    Located::new(resource.key.pos, message)
}

/// `Conditions` as name → definition.
fn named_section<'t>(root: &'t Node, name: &str) -> Result<BTreeMap<&'t str, &'t Node>> {
    match root.get(name) {
        None => Ok(BTreeMap::new()),
        Some(node) => Ok(value::mapping(node, name)?
            .iter()
            .map(|(k, v)| (k.name.as_str(), v))
            .collect()),
    }
}

fn read_resource<'t>(
    key: &'t yaml::Key,
    node: &'t Node,
    conditions: &BTreeMap<&'t str, &'t Node>,
) -> Result<Resource<'t>> {
    let id = &key.name;
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Located::new(
            key.pos,
            format!("logical id {id:?} must be alphanumeric"),
        ));
    }
    if node.as_map().is_none() {
        return Err(Located::new(
            node.pos,
            format!("resource {id} must be a mapping with a Type"),
        ));
    }
    let type_node = node
        .get("Type")
        .ok_or_else(|| Located::new(key.pos, format!("resource {id} has no Type")))?;
    let type_name = type_node
        .as_str()
        .ok_or_else(|| Located::new(type_node.pos, format!("the Type of {id} must be a string")))?
        .to_owned();
    let properties = match node.get("Properties") {
        None => None,
        Some(p) if matches!(p.kind, Kind::Null) => None,
        Some(p) if p.as_map().is_some() => Some(p),
        Some(p) => {
            return Err(Located::new(
                p.pos,
                format!("the Properties of {id} must be a mapping"),
            ))
        }
    };
    let condition = match node.get("Condition") {
        None => None,
        Some(c) => {
            let name = c.as_str().ok_or_else(|| {
                Located::new(
                    c.pos,
                    format!("the Condition of {id} must be a condition name"),
                )
            })?;
            if !conditions.contains_key(name) {
                return Err(Located::new(
                    c.pos,
                    format!("unknown condition {name} (not in the Conditions section)"),
                ));
            }
            Some((name, c))
        }
    };
    Ok(Resource {
        key,
        node,
        kind: ResourceKind::of(&type_name),
        type_name,
        type_node,
        properties,
        condition,
    })
}

/// `Transform` must name SAM when SAM resource types are used.
fn check_transform<'a, 't: 'a>(
    root: &Node,
    resources: impl Iterator<Item = &'a Resource<'t>>,
) -> Result<()> {
    let mut has_sam = false;
    if let Some(node) = root.get("Transform") {
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        for item in items {
            match item.as_str() {
                Some(SAM_TRANSFORM) => has_sam = true,
                Some(LANGUAGE_EXTENSIONS) => {}
                Some(other) => {
                    return Err(Located::new(
                        item.pos,
                        format!(
                            "Transform {other} is not supported by ESB (supported: {SAM_TRANSFORM}, {LANGUAGE_EXTENSIONS})"
                        ),
                    ))
                }
                None => {
                    return Err(Located::new(
                        item.pos,
                        "Transform must be a transform name or a list of them",
                    ))
                }
            }
        }
    }
    if has_sam {
        return Ok(());
    }
    if let Some(r) = resources
        .filter(|r| r.type_name.starts_with("AWS::Serverless::"))
        .min_by_key(|r| r.key.pos)
    {
        return Err(Located::new(
            r.type_node.pos,
            format!(
                "{} needs `Transform: {SAM_TRANSFORM}` at the top of the template",
                r.type_name
            ),
        ));
    }
    if let Some((key, _)) = root.entry("Globals") {
        return Err(Located::new(
            key.pos,
            format!("Globals needs `Transform: {SAM_TRANSFORM}` at the top of the template"),
        ));
    }
    Ok(())
}

/// The absolute directory relative paths in the template start from.
fn template_dir(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    normalize(&std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()))
}

/// Remove `.` and `..` components without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_removes_dots() {
        assert_eq!(
            normalize(Path::new("/a/b/./c/../d")),
            PathBuf::from("/a/b/d")
        );
    }

    #[test]
    fn template_dir_is_absolute() {
        assert!(template_dir(Path::new("template.yaml")).is_absolute());
        assert_eq!(
            template_dir(Path::new("/x/y/template.yaml")),
            PathBuf::from("/x/y")
        );
    }
}
