//! Resolving intrinsic functions, references and conditions.
//!
//! [`Context::resolve`] turns a raw template node into a plain one: every
//! `Ref` / `Fn::*` is evaluated, `Fn::If` branches chosen and
//! `AWS::NoValue` entries dropped. Resources' physical names are computed
//! on demand (a function's `FunctionName` may itself use `!Sub`), with cycle
//! detection, so the order of resources in the template does not matter.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::error::{Located, Pos, Result};
use super::parameter::ParamValue;
use super::value::{self, describe};
use super::yaml::{Key, Kind, Node};
use super::LoadOptions;

/// The resource types ESB understands by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceKind {
    Function,
    Bucket,
    DbCluster,
    DbInstance,
    Layer,
    RestApi,
    HttpApi,
    /// Everything else: skipped with a warning; `Ref` gives its logical id.
    Other,
}

impl ResourceKind {
    pub fn of(type_name: &str) -> Self {
        match type_name {
            "AWS::Serverless::Function" => ResourceKind::Function,
            "AWS::S3::Bucket" => ResourceKind::Bucket,
            "AWS::RDS::DBCluster" => ResourceKind::DbCluster,
            "AWS::RDS::DBInstance" => ResourceKind::DbInstance,
            "AWS::Serverless::LayerVersion" | "AWS::Lambda::LayerVersion" => ResourceKind::Layer,
            "AWS::Serverless::Api" => ResourceKind::RestApi,
            "AWS::Serverless::HttpApi" => ResourceKind::HttpApi,
            _ => ResourceKind::Other,
        }
    }
}

/// One entry of `Resources`.
#[derive(Debug)]
pub(crate) struct Resource<'t> {
    pub key: &'t Key,
    pub node: &'t Node,
    pub type_name: String,
    pub type_node: &'t Node,
    pub kind: ResourceKind,
    /// The raw `Properties`, when present.
    pub properties: Option<&'t Node>,
    /// The `Condition` name and its node.
    pub condition: Option<(&'t str, &'t Node)>,
}

impl Resource<'_> {
    pub fn id(&self) -> &str {
        &self.key.name
    }

    /// Where to point when a required property is missing: the
    /// `Properties` key, else the resource's logical id.
    pub fn properties_pos(&self) -> Pos {
        self.node
            .entry("Properties")
            .map_or(self.key.pos, |(k, _)| k.pos)
    }

    /// The raw value of a property.
    pub fn property(&self, name: &str) -> Option<&Node> {
        self.properties.and_then(|p| p.get(name))
    }
}

#[derive(Clone)]
enum Memo<T> {
    InProgress,
    Done(T),
}

/// Everything intrinsic functions can see.
pub(crate) struct Context<'t> {
    options: &'t LoadOptions,
    parameters: BTreeMap<String, ParamValue>,
    mappings: Option<&'t Node>,
    conditions: BTreeMap<&'t str, &'t Node>,
    resources: BTreeMap<&'t str, Resource<'t>>,
    template_dir: PathBuf,
    condition_memo: RefCell<HashMap<String, Memo<bool>>>,
    name_memo: RefCell<HashMap<String, Memo<String>>>,
}

/// SAM's implicit APIs, which `Ref` may name without a resource.
pub(crate) const IMPLICIT_REST_API: &str = "ServerlessRestApi";
pub(crate) const IMPLICIT_HTTP_API: &str = "ServerlessHttpApi";

const POSTGRES_PORT: &str = "5432";
/// The host name functions reach the database by inside the box.
pub(crate) const DATABASE_HOST: &str = "database";

impl<'t> Context<'t> {
    pub fn new(
        options: &'t LoadOptions,
        parameters: BTreeMap<String, ParamValue>,
        mappings: Option<&'t Node>,
        conditions: BTreeMap<&'t str, &'t Node>,
        resources: BTreeMap<&'t str, Resource<'t>>,
        template_dir: PathBuf,
    ) -> Self {
        Context {
            options,
            parameters,
            mappings,
            conditions,
            resources,
            template_dir,
            condition_memo: RefCell::default(),
            name_memo: RefCell::default(),
        }
    }

    pub fn resource(&self, id: &str) -> Option<&Resource<'t>> {
        self.resources.get(id)
    }

    /// The absolute directory of the template.
    pub fn template_dir(&self) -> &Path {
        &self.template_dir
    }

    /// Whether a resource survives its `Condition`.
    pub fn is_active(&self, resource: &Resource<'_>) -> Result<bool> {
        match resource.condition {
            None => Ok(true),
            Some((name, node)) => self.condition(name, node.pos),
        }
    }

    /// Resolve a node; `None` means `AWS::NoValue` (the property is removed).
    pub fn resolve(&self, node: &Node) -> Result<Option<Node>> {
        match &node.kind {
            Kind::Null | Kind::Scalar(_) => Ok(Some(node.clone())),
            Kind::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if let Some(v) = self.resolve(item)? {
                        out.push(v);
                    }
                }
                Ok(Some(Node::new(Kind::Seq(out), node.pos)))
            }
            Kind::Map(entries) => {
                if let Some((name, argument)) = node.intrinsic() {
                    return self.intrinsic(node, name, argument);
                }
                let mut out = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    if let Some(v) = self.resolve(value)? {
                        out.push((key.clone(), v));
                    }
                }
                Ok(Some(Node::new(Kind::Map(out), node.pos)))
            }
        }
    }

    /// Resolve a node that must not vanish.
    fn resolve_present(&self, node: &Node, what: &str) -> Result<Node> {
        self.resolve(node)?
            .ok_or_else(|| Located::new(node.pos, format!("{what} cannot be AWS::NoValue")))
    }

    /// Resolve a node to one string.
    pub fn resolve_text(&self, node: &Node, what: &str) -> Result<String> {
        value::text(&self.resolve_present(node, what)?, what)
    }

    /// Resolve a property of a mapping; `None` when absent or `AWS::NoValue`.
    pub fn property(&self, map: &Node, key: &str) -> Result<Option<Node>> {
        match map.get(key) {
            None => Ok(None),
            Some(node) => self.resolve(node),
        }
    }

    /// A property resolved only at its top level: an intrinsic function is
    /// evaluated, a mapping is returned as written so that its children can
    /// be resolved one by one (and unused ones never are).
    pub fn property_shallow(&self, map: &Node, key: &str) -> Result<Option<Node>> {
        match map.get(key) {
            None => Ok(None),
            Some(node) if node.intrinsic().is_some() => self.resolve(node),
            Some(node) => Ok(Some(node.clone())),
        }
    }

    fn intrinsic(&self, node: &Node, name: &Key, argument: &Node) -> Result<Option<Node>> {
        let pos = node.pos;
        let scalar = |text: String| Ok(Some(Node::scalar(text, pos)));
        match name.name.as_str() {
            "Ref" => {
                let target = self.resolve_text(argument, "the argument of Ref")?;
                self.reference(&target, pos)
            }
            "Fn::Sub" => scalar(self.sub(argument, pos)?),
            "Fn::GetAtt" => {
                let (resource, attribute) = self.get_att_arguments(argument, pos)?;
                scalar(self.get_att(&resource, &attribute, pos)?)
            }
            "Fn::Join" => {
                let [delimiter, list] = arguments::<2>(argument, "Fn::Join", "[delimiter, list]")?;
                let delimiter = self.resolve_text(delimiter, "the Fn::Join delimiter")?;
                let items = self.resolve_list(list, "the Fn::Join list")?;
                scalar(items.join(&delimiter))
            }
            "Fn::Split" => {
                let [delimiter, source] =
                    arguments::<2>(argument, "Fn::Split", "[delimiter, string]")?;
                let delimiter = self.resolve_text(delimiter, "the Fn::Split delimiter")?;
                let source = self.resolve_text(source, "the Fn::Split string")?;
                if delimiter.is_empty() {
                    return Err(Located::new(pos, "the Fn::Split delimiter is empty"));
                }
                let items = source
                    .split(delimiter.as_str())
                    .map(|s| Node::scalar(s, pos))
                    .collect();
                Ok(Some(Node::new(Kind::Seq(items), pos)))
            }
            "Fn::Select" => {
                let [index_node, list] = arguments::<2>(argument, "Fn::Select", "[index, list]")?;
                let index = self.resolve_present(index_node, "the Fn::Select index")?;
                let index = value::integer(&index, "the Fn::Select index", 0..=u32::MAX)?;
                let list_node = self.resolve_present(list, "the Fn::Select list")?;
                let items = list_node.as_seq().ok_or_else(|| {
                    Located::new(
                        list.pos,
                        format!("the Fn::Select list must be a list, found {}", list_node.type_name()),
                    )
                })?;
                let item = usize::try_from(index).ok().and_then(|i| items.get(i));
                match item {
                    Some(item) => Ok(Some(item.clone())),
                    None => Err(Located::new(
                        index_node.pos,
                        format!(
                            "Fn::Select index {index} is out of range for a list of {}",
                            items.len()
                        ),
                    )),
                }
            }
            "Fn::If" => {
                let [condition, then, otherwise] =
                    arguments::<3>(argument, "Fn::If", "[condition, value if true, value if false]")?;
                let name = condition.as_str().ok_or_else(|| {
                    Located::new(condition.pos, "the first argument of Fn::If must be a condition name")
                })?;
                if self.condition(name, condition.pos)? {
                    self.resolve(then)
                } else {
                    self.resolve(otherwise)
                }
            }
            "Fn::FindInMap" => self.find_in_map(argument, pos).map(Some),
            "Fn::Base64" => {
                let text = self.resolve_text(argument, "the argument of Fn::Base64")?;
                scalar(base64::engine::general_purpose::STANDARD.encode(text))
            }
            "Fn::Length" => {
                let list = self.resolve_present(argument, "the argument of Fn::Length")?;
                match list.as_seq() {
                    Some(items) => scalar(items.len().to_string()),
                    None => Err(Located::new(
                        argument.pos,
                        format!("Fn::Length needs a list, found {}", list.type_name()),
                    )),
                }
            }
            "Fn::ToJsonString" => {
                let resolved = self.resolve_present(argument, "the argument of Fn::ToJsonString")?;
                scalar(to_json(&resolved).to_string())
            }
            "Fn::Equals" | "Fn::Not" | "Fn::And" | "Fn::Or" => Err(Located::new(
                name.pos,
                format!(
                    "{} can only be used in the Conditions section (use Fn::If with a named condition)",
                    name.name
                ),
            )),
            "Fn::ImportValue" | "Fn::GetAZs" | "Fn::Cidr" | "Fn::Transform" => {
                Err(Located::new(
                    name.pos,
                    format!(
                        "intrinsic function {} is not supported by ESB (it needs an AWS account)",
                        name.name
                    ),
                ))
            }
            other => Err(Located::new(
                name.pos,
                format!("unknown intrinsic function {other}"),
            )),
        }
    }

    /// A list argument (a literal list or an intrinsic giving one) as strings.
    fn resolve_list(&self, node: &Node, what: &str) -> Result<Vec<String>> {
        let resolved = self.resolve_present(node, what)?;
        match &resolved.kind {
            Kind::Seq(items) => items
                .iter()
                .map(|item| value::text(item, &format!("each item of {what}")))
                .collect(),
            _ => Err(Located::new(
                node.pos,
                format!("{what} must be a list, found {}", describe(&resolved)),
            )),
        }
    }

    /// `Ref`: a parameter, pseudo parameter or resource.
    pub fn reference(&self, name: &str, pos: Pos) -> Result<Option<Node>> {
        if name == "AWS::NoValue" {
            return Ok(None);
        }
        if let Some(value) = self.pseudo(name) {
            return Ok(Some(match value {
                ParamValue::Scalar(s) => Node::scalar(s, pos),
                ParamValue::List(items) => list_node(items, pos),
            }));
        }
        if let Some(value) = self.parameters.get(name) {
            return Ok(Some(match value {
                ParamValue::Scalar(s) => Node::scalar(s.clone(), pos),
                ParamValue::List(items) => list_node(items.clone(), pos),
            }));
        }
        if self.resources.contains_key(name) {
            return Ok(Some(Node::scalar(self.physical_name(name, pos)?, pos)));
        }
        if name == IMPLICIT_REST_API || name == IMPLICIT_HTTP_API {
            return Ok(Some(Node::scalar(name, pos)));
        }
        Err(Located::new(
            pos,
            format!(
                "unknown reference {name}: not a parameter, pseudo parameter or resource of this template"
            ),
        ))
    }

    fn pseudo(&self, name: &str) -> Option<ParamValue> {
        let o = self.options;
        let (partition, suffix) = partition(&o.region);
        let s = |v: String| Some(ParamValue::Scalar(v));
        match name {
            "AWS::Region" => s(o.region.clone()),
            "AWS::AccountId" => s(o.account_id.clone()),
            "AWS::StackName" => s(o.stack_name.clone()),
            "AWS::StackId" => s(format!(
                "arn:{partition}:cloudformation:{}:{}:stack/{}/00000000-0000-0000-0000-000000000000",
                o.region, o.account_id, o.stack_name
            )),
            "AWS::Partition" => s(partition.to_owned()),
            "AWS::URLSuffix" => s(suffix.to_owned()),
            "AWS::NotificationARNs" => Some(ParamValue::List(Vec::new())),
            _ => None,
        }
    }

    /// The name `Ref` gives for a resource of this template.
    pub fn physical_name(&self, id: &str, pos: Pos) -> Result<String> {
        let Some(resource) = self.resources.get(id) else {
            return Err(Located::new(pos, format!("unknown resource {id}")));
        };
        if !self.is_active(resource)? {
            let condition = resource.condition.map(|(c, _)| c).unwrap_or_default();
            return Err(Located::new(
                pos,
                format!("{id} is referenced here but is not created (its condition {condition} is false)"),
            ));
        }
        match self.name_memo.borrow().get(id) {
            Some(Memo::Done(name)) => return Ok(name.clone()),
            Some(Memo::InProgress) => {
                return Err(Located::new(
                    pos,
                    format!("circular reference: the name of {id} depends on itself"),
                ))
            }
            None => {}
        }
        self.name_memo
            .borrow_mut()
            .insert(id.to_owned(), Memo::InProgress);
        let name = self.compute_name(resource);
        match &name {
            Ok(n) => self
                .name_memo
                .borrow_mut()
                .insert(id.to_owned(), Memo::Done(n.clone())),
            Err(_) => self.name_memo.borrow_mut().remove(id),
        };
        name
    }

    fn compute_name(&self, resource: &Resource<'_>) -> Result<String> {
        let id = resource.id();
        let named = |property: &str| -> Result<Option<String>> {
            match resource.property(property) {
                None => Ok(None),
                Some(node) => match self.resolve(node)? {
                    None => Ok(None),
                    Some(v) => Ok(Some(value::text(&v, &format!("{property} of {id}"))?)),
                },
            }
        };
        Ok(match resource.kind {
            ResourceKind::Function => named("FunctionName")?.unwrap_or_else(|| id.to_owned()),
            ResourceKind::Bucket => named("BucketName")?.unwrap_or_else(|| default_bucket_name(id)),
            ResourceKind::Layer => {
                let name = named("LayerName")?.unwrap_or_else(|| id.to_owned());
                self.layer_arn(&name)
            }
            _ => id.to_owned(),
        })
    }

    /// The ARN `Ref` gives for a layer of this template.
    pub fn layer_arn(&self, name: &str) -> String {
        let o = self.options;
        let (partition, _) = partition(&o.region);
        format!(
            "arn:{partition}:lambda:{}:{}:layer:{name}:1",
            o.region, o.account_id
        )
    }

    fn get_att_arguments(&self, argument: &Node, pos: Pos) -> Result<(String, String)> {
        match &argument.kind {
            Kind::Scalar(s) => match s.text.split_once('.') {
                Some((r, a)) => Ok((r.to_owned(), a.to_owned())),
                None => Err(Located::new(
                    pos,
                    "Fn::GetAtt needs Resource.Attribute or [Resource, Attribute]",
                )),
            },
            Kind::Seq(items) if items.len() == 2 => {
                let resource = items[0].as_str().ok_or_else(|| {
                    Located::new(
                        items[0].pos,
                        "the resource of Fn::GetAtt must be a logical id",
                    )
                })?;
                let attribute = self.resolve_text(&items[1], "the attribute of Fn::GetAtt")?;
                Ok((resource.to_owned(), attribute))
            }
            _ => Err(Located::new(
                pos,
                "Fn::GetAtt needs Resource.Attribute or [Resource, Attribute]",
            )),
        }
    }

    /// `Fn::GetAtt`: the attributes ESB can answer.
    pub fn get_att(&self, id: &str, attribute: &str, pos: Pos) -> Result<String> {
        let Some(resource) = self.resources.get(id) else {
            return Err(Located::new(
                pos,
                format!("unknown resource {id} in Fn::GetAtt {id}.{attribute}"),
            ));
        };
        let o = self.options;
        let (partition, suffix) = partition(&o.region);
        let answer = match (resource.kind, attribute) {
            (ResourceKind::Function, "Arn") => Some(format!(
                "arn:{partition}:lambda:{}:{}:function:{}",
                o.region,
                o.account_id,
                self.physical_name(id, pos)?
            )),
            (ResourceKind::Bucket, _) => {
                let name = self.physical_name(id, pos)?;
                match attribute {
                    "Arn" => Some(format!("arn:{partition}:s3:::{name}")),
                    "DomainName" => Some(format!("{name}.s3.{suffix}")),
                    "RegionalDomainName" => Some(format!("{name}.s3.{}.{suffix}", o.region)),
                    "DualStackDomainName" => {
                        Some(format!("{name}.s3.dualstack.{}.{suffix}", o.region))
                    }
                    "WebsiteURL" => Some(format!("http://{name}.s3-website.{}.{suffix}", o.region)),
                    _ => None,
                }
            }
            (ResourceKind::DbCluster | ResourceKind::DbInstance, _) => {
                self.physical_name(id, pos)?;
                let cluster = resource.kind == ResourceKind::DbCluster;
                match attribute {
                    "Endpoint.Address" => Some(DATABASE_HOST.to_owned()),
                    "ReadEndpoint.Address" if cluster => Some(DATABASE_HOST.to_owned()),
                    "Endpoint.Port" => Some(POSTGRES_PORT.to_owned()),
                    "DBClusterArn" if cluster => Some(format!(
                        "arn:{partition}:rds:{}:{}:cluster:{}",
                        o.region,
                        o.account_id,
                        id.to_ascii_lowercase()
                    )),
                    "DBInstanceArn" if !cluster => Some(format!(
                        "arn:{partition}:rds:{}:{}:db:{}",
                        o.region,
                        o.account_id,
                        id.to_ascii_lowercase()
                    )),
                    _ => None,
                }
            }
            (ResourceKind::Layer, "Arn") => Some(self.physical_name(id, pos)?),
            _ => None,
        };
        answer.ok_or_else(|| {
            let what = match resource.kind {
                ResourceKind::Other => {
                    format!("{} {id} is not provided by ESB", resource.type_name)
                }
                _ => format!(
                    "{} has no attribute {attribute} that ESB can provide",
                    resource.type_name
                ),
            };
            Located::new(
                pos,
                format!("cannot resolve Fn::GetAtt {id}.{attribute}: {what}"),
            )
        })
    }

    /// `Fn::Sub` in both forms.
    fn sub(&self, argument: &Node, pos: Pos) -> Result<String> {
        let (template, variables) = match &argument.kind {
            Kind::Scalar(s) => (s.text.as_str(), None),
            Kind::Seq(items) if items.len() == 2 => {
                let template = items[0].as_str().ok_or_else(|| {
                    Located::new(
                        items[0].pos,
                        "the first argument of Fn::Sub must be a string",
                    )
                })?;
                let variables = value::mapping(&items[1], "the variables of Fn::Sub")?;
                let mut resolved = HashMap::new();
                for (key, node) in variables {
                    let text =
                        self.resolve_text(node, &format!("Fn::Sub variable {}", key.name))?;
                    resolved.insert(key.name.as_str(), text);
                }
                (template, Some(resolved))
            }
            _ => {
                return Err(Located::new(
                    pos,
                    "Fn::Sub needs a string or [string, {variables}]",
                ))
            }
        };
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let name = &after[..end];
            rest = &after[end + 1..];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
                continue;
            }
            let name = name.trim();
            if let Some(value) = variables.as_ref().and_then(|v| v.get(name)) {
                out.push_str(value);
                continue;
            }
            if let Some((resource, attribute)) = name.split_once('.') {
                if self.resources.contains_key(resource) {
                    out.push_str(&self.get_att(resource, attribute, pos)?);
                    continue;
                }
            }
            match self.reference(name, pos)? {
                Some(node) => {
                    out.push_str(&value::text(&node, &format!("${{{name}}} in Fn::Sub"))?)
                }
                None => {
                    return Err(Located::new(
                        pos,
                        "AWS::NoValue cannot be used inside Fn::Sub",
                    ))
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn find_in_map(&self, argument: &Node, pos: Pos) -> Result<Node> {
        let items = argument
            .as_seq()
            .filter(|i| i.len() == 3 || i.len() == 4)
            .ok_or_else(|| {
                Located::new(
                    pos,
                    "Fn::FindInMap needs [MapName, TopLevelKey, SecondLevelKey]",
                )
            })?;
        let default = match items.get(3) {
            None => None,
            Some(node) => Some(node.get("DefaultValue").ok_or_else(|| {
                Located::new(
                    node.pos,
                    "the fourth argument of Fn::FindInMap must be {DefaultValue: ...}",
                )
            })?),
        };
        let mut current = self.mappings.ok_or_else(|| {
            Located::new(pos, "Fn::FindInMap used but the template has no Mappings")
        })?;
        let levels = ["mapping", "top-level key", "second-level key"];
        let mut path = Vec::new();
        for (node, level) in items.iter().take(3).zip(levels) {
            let key = self.resolve_text(node, &format!("the {level} of Fn::FindInMap"))?;
            match current.get(&key) {
                Some(next) => current = next,
                None => {
                    if let Some(default) = default {
                        return self.resolve_present(default, "the DefaultValue of Fn::FindInMap");
                    }
                    let within = if path.is_empty() {
                        "Mappings".to_owned()
                    } else {
                        format!("mapping {}", path.join("."))
                    };
                    return Err(Located::new(
                        node.pos,
                        format!("Fn::FindInMap: {within} has no key {key}"),
                    ));
                }
            }
            path.push(key);
        }
        Ok(Node {
            pos,
            ..current.clone()
        })
    }

    /// The value of a named condition.
    pub fn condition(&self, name: &str, pos: Pos) -> Result<bool> {
        match self.condition_memo.borrow().get(name) {
            Some(Memo::Done(v)) => return Ok(*v),
            Some(Memo::InProgress) => {
                return Err(Located::new(
                    pos,
                    format!("circular condition: {name} depends on itself"),
                ))
            }
            None => {}
        }
        let Some(definition) = self.conditions.get(name) else {
            return Err(Located::new(
                pos,
                format!("unknown condition {name} (not in the Conditions section)"),
            ));
        };
        self.condition_memo
            .borrow_mut()
            .insert(name.to_owned(), Memo::InProgress);
        let result = self.evaluate_condition(definition);
        match result {
            Ok(v) => self
                .condition_memo
                .borrow_mut()
                .insert(name.to_owned(), Memo::Done(v)),
            Err(_) => self.condition_memo.borrow_mut().remove(name),
        };
        result
    }

    fn evaluate_condition(&self, node: &Node) -> Result<bool> {
        let entry = match node.as_map() {
            Some([(key, argument)]) => Some((key, argument)),
            _ => None,
        };
        let Some((key, argument)) = entry else {
            return Err(Located::new(
                node.pos,
                "a condition must be Fn::Equals, Fn::Not, Fn::And, Fn::Or or Condition",
            ));
        };
        match key.name.as_str() {
            "Fn::Equals" => {
                let [a, b] = arguments::<2>(argument, "Fn::Equals", "[value, value]")?;
                let a = self.resolve(a)?;
                let b = self.resolve(b)?;
                Ok(comparable(a.as_ref()) == comparable(b.as_ref()))
            }
            "Fn::Not" => {
                let [inner] = arguments::<1>(argument, "Fn::Not", "[condition]")?;
                Ok(!self.evaluate_condition(inner)?)
            }
            "Fn::And" | "Fn::Or" => {
                let items = argument.as_seq().filter(|i| (2..=10).contains(&i.len())).ok_or_else(|| {
                    Located::new(
                        argument.pos,
                        format!("{} needs a list of 2 to 10 conditions", key.name),
                    )
                })?;
                let and = key.name == "Fn::And";
                for item in items {
                    let v = self.evaluate_condition(item)?;
                    if and && !v {
                        return Ok(false);
                    }
                    if !and && v {
                        return Ok(true);
                    }
                }
                Ok(and)
            }
            "Condition" => {
                let name = argument.as_str().ok_or_else(|| {
                    Located::new(argument.pos, "Condition needs a condition name")
                })?;
                self.condition(name, argument.pos)
            }
            other => Err(Located::new(
                key.pos,
                format!("{other} cannot be used as a condition (use Fn::Equals, Fn::Not, Fn::And, Fn::Or or Condition)"),
            )),
        }
    }
}

/// A resolved value as something `Fn::Equals` can compare.
fn comparable(node: Option<&Node>) -> Option<serde_json::Value> {
    node.map(|n| match &n.kind {
        // CloudFormation compares the string forms: `true` equals "true".
        Kind::Scalar(s) => serde_json::Value::String(s.text.clone()),
        _ => to_json(n),
    })
}

/// The JSON form of a resolved node (plain numbers and booleans stay typed).
pub(crate) fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        Kind::Null => Value::Null,
        Kind::Scalar(s) if s.plain => match s.text.as_str() {
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            t => match serde_json::from_str::<serde_json::Number>(t) {
                Ok(n) => Value::Number(n),
                Err(_) => Value::String(t.to_owned()),
            },
        },
        Kind::Scalar(s) => Value::String(s.text.clone()),
        Kind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.name.clone(), to_json(v)))
                .collect(),
        ),
    }
}

fn list_node(items: Vec<String>, pos: Pos) -> Node {
    Node::new(
        Kind::Seq(items.into_iter().map(|s| Node::scalar(s, pos)).collect()),
        pos,
    )
}

/// Exactly `N` list arguments of an intrinsic function.
fn arguments<'n, const N: usize>(
    argument: &'n Node,
    function: &str,
    shape: &str,
) -> Result<[&'n Node; N]> {
    argument
        .as_seq()
        .and_then(|items| <&[Node; N]>::try_from(items).ok())
        .map(|items| items.each_ref())
        .ok_or_else(|| Located::new(argument.pos, format!("{function} needs {shape}")))
}

/// The partition and URL suffix of a region.
fn partition(region: &str) -> (&'static str, &'static str) {
    if region.starts_with("cn-") {
        ("aws-cn", "amazonaws.com.cn")
    } else if region.starts_with("us-gov-") {
        ("aws-us-gov", "amazonaws.com")
    } else {
        ("aws", "amazonaws.com")
    }
}

/// A bucket without `BucketName`: its logical id made a valid S3 name.
pub(crate) fn default_bucket_name(id: &str) -> String {
    let mut name: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(63)
        .collect();
    while name.len() < 3 {
        name.push('0');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sam::yaml;

    struct Fixture {
        root: Node,
        options: LoadOptions,
    }

    impl Fixture {
        fn new(text: &str) -> Self {
            Fixture {
                root: yaml::load(text).expect("yaml"),
                options: LoadOptions {
                    region: "eu-west-1".into(),
                    stack_name: "shop".into(),
                    ..LoadOptions::default()
                },
            }
        }

        fn context(&self) -> Context<'_> {
            let mut parameters = BTreeMap::new();
            parameters.insert("Stage".to_owned(), ParamValue::Scalar("prod".into()));
            parameters.insert(
                "Zones".to_owned(),
                ParamValue::List(vec!["a".into(), "b".into(), "c".into()]),
            );
            let conditions = self
                .root
                .get("Conditions")
                .and_then(Node::as_map)
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| (k.name.as_str(), v))
                .collect();
            let resources = self
                .root
                .get("Resources")
                .and_then(Node::as_map)
                .unwrap_or_default()
                .iter()
                .map(|(key, node)| {
                    let type_node = node.get("Type").expect("Type");
                    let type_name = type_node.as_str().expect("str").to_owned();
                    (
                        key.name.as_str(),
                        Resource {
                            key,
                            node,
                            kind: ResourceKind::of(&type_name),
                            type_name,
                            type_node,
                            properties: node.get("Properties"),
                            condition: node.get("Condition").map(|c| (c.as_str().expect("str"), c)),
                        },
                    )
                })
                .collect();
            Context::new(
                &self.options,
                parameters,
                self.root.get("Mappings"),
                conditions,
                resources,
                PathBuf::from("/template"),
            )
        }

        fn value(&self, key: &str) -> Result<Option<Node>> {
            let node = self
                .root
                .get("Values")
                .and_then(|v| v.get(key))
                .expect("value");
            self.context().resolve(node)
        }

        fn text(&self, key: &str) -> String {
            let node = self.value(key).expect("resolves").expect("present");
            node.as_str().expect("scalar").to_owned()
        }
    }

    const TEMPLATE: &str = r#"
Mappings:
  Sizes:
    prod: {Memory: 1024}
    dev: {Memory: 128}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
  Both: !And [!Condition IsProd, !Equals ['1', 1]]
  Either: {"Fn::Or": [{"Condition": "IsDev"}, {"Fn::Equals": [a, b]}]}
Resources:
  Api:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub '${AWS::StackName}-api'
  Files:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub 'files-${Stage}'
  Db:
    Type: AWS::RDS::DBCluster
  Queue:
    Type: AWS::SQS::Queue
  Old:
    Type: AWS::S3::Bucket
    Condition: IsDev
  Libs:
    Type: AWS::Serverless::LayerVersion
Values:
  ref_param: !Ref Stage
  ref_fn: !Ref Api
  ref_bucket: !Ref Files
  ref_db: !Ref Db
  ref_queue: !Ref Queue
  ref_layer: !Ref Libs
  region: !Ref AWS::Region
  stack_id: !Ref AWS::StackId
  sub: !Sub 'https://${Files}.s3.${AWS::Region}.${AWS::URLSuffix}/${!Literal}/${Api.Arn}'
  sub_vars: !Sub ['${Host}:${Port}', {Host: !GetAtt Db.Endpoint.Address, Port: !GetAtt Db.Endpoint.Port}]
  long_sub: {"Fn::Sub": "${Stage}-x"}
  long_ref: {"Ref": "Stage"}
  arn: !GetAtt Api.Arn
  arn_list: {"Fn::GetAtt": [Files, Arn]}
  domain: !GetAtt Files.DomainName
  join: !Join ['-', [a, !Ref Stage, !Select [1, !Ref Zones]]]
  split: !Select [2, !Split [',', 'x,y,z']]
  if: !If [IsProd, big, small]
  if_novalue: !If [IsDev, x, !Ref AWS::NoValue]
  map: !FindInMap [Sizes, !Ref Stage, Memory]
  map_default: {"Fn::FindInMap": [Sizes, qa, Memory, {DefaultValue: 64}]}
  base64: !Base64 hello
  length: {"Fn::Length": [1, 2, 3]}
  json: {"Fn::ToJsonString": {a: 1, b: [true, x]}}
  nested: {List: [a, !Ref AWS::NoValue, b], Gone: !Ref AWS::NoValue}
  both: !If [Both, y, n]
  either: !If [Either, y, n]
  bad_ref: !Ref Nope
  bad_att: !GetAtt Files.Nope
  bad_att_other: !GetAtt Queue.Arn
  import: !ImportValue shared
  unknown_fn: {"Fn::Nope": 1}
  equals_outside: !Equals [a, a]
  ref_old: !Ref Old
  bad_select: !Select [5, [a]]
  bad_map: !FindInMap [Sizes, qa, Memory]
  bad_condition: !If [Missing, a, b]
"#;

    #[test]
    fn references() {
        let f = Fixture::new(TEMPLATE);
        assert_eq!(f.text("ref_param"), "prod");
        assert_eq!(f.text("ref_fn"), "shop-api");
        assert_eq!(f.text("ref_bucket"), "files-prod");
        assert_eq!(f.text("ref_db"), "Db");
        assert_eq!(f.text("ref_queue"), "Queue");
        assert_eq!(
            f.text("ref_layer"),
            "arn:aws:lambda:eu-west-1:000000000000:layer:Libs:1"
        );
        assert_eq!(f.text("region"), "eu-west-1");
        assert_eq!(
            f.text("stack_id"),
            "arn:aws:cloudformation:eu-west-1:000000000000:stack/shop/00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(f.text("long_ref"), "prod");
    }

    #[test]
    fn sub_and_get_att() {
        let f = Fixture::new(TEMPLATE);
        assert_eq!(
            f.text("sub"),
            "https://files-prod.s3.eu-west-1.amazonaws.com/${Literal}/arn:aws:lambda:eu-west-1:000000000000:function:shop-api"
        );
        assert_eq!(f.text("sub_vars"), "database:5432");
        assert_eq!(f.text("long_sub"), "prod-x");
        assert_eq!(
            f.text("arn"),
            "arn:aws:lambda:eu-west-1:000000000000:function:shop-api"
        );
        assert_eq!(f.text("arn_list"), "arn:aws:s3:::files-prod");
        assert_eq!(f.text("domain"), "files-prod.s3.amazonaws.com");
    }

    #[test]
    fn list_functions() {
        let f = Fixture::new(TEMPLATE);
        assert_eq!(f.text("join"), "a-prod-b");
        assert_eq!(f.text("split"), "z");
        assert_eq!(f.text("base64"), "aGVsbG8=");
        assert_eq!(f.text("length"), "3");
        assert_eq!(f.text("json"), r#"{"a":1,"b":[true,"x"]}"#);
    }

    #[test]
    fn conditions_and_mappings() {
        let f = Fixture::new(TEMPLATE);
        assert_eq!(f.text("if"), "big");
        assert_eq!(f.value("if_novalue").expect("ok"), None);
        assert_eq!(f.text("map"), "1024");
        assert_eq!(f.text("map_default"), "64");
        assert_eq!(f.text("both"), "y");
        assert_eq!(f.text("either"), "n");
        let nested = f.value("nested").expect("ok").expect("present");
        assert!(nested.get("Gone").is_none());
        assert_eq!(
            nested.get("List").and_then(Node::as_seq).map(<[Node]>::len),
            Some(2)
        );
    }

    fn error(f: &Fixture, key: &str) -> (usize, usize, String) {
        let err = f.value(key).expect_err(key);
        (err.pos.line, err.pos.column, err.message)
    }

    #[test]
    fn errors_point_at_the_intrinsic() {
        let f = Fixture::new(TEMPLATE);
        let line = |key: &str| {
            TEMPLATE
                .lines()
                .position(|l| l.trim_start().starts_with(&format!("{key}:")))
                .expect("line")
                + 1
        };
        assert_eq!(
            error(&f, "bad_ref"),
            (
                line("bad_ref"),
                12,
                "unknown reference Nope: not a parameter, pseudo parameter or resource of this template".into()
            )
        );
        assert_eq!(
            error(&f, "bad_att").2,
            "cannot resolve Fn::GetAtt Files.Nope: AWS::S3::Bucket has no attribute Nope that ESB can provide"
        );
        assert_eq!(
            error(&f, "bad_att_other").2,
            "cannot resolve Fn::GetAtt Queue.Arn: AWS::SQS::Queue Queue is not provided by ESB"
        );
        assert_eq!(
            error(&f, "import"),
            (
                line("import"),
                11,
                "intrinsic function Fn::ImportValue is not supported by ESB (it needs an AWS account)".into()
            )
        );
        assert_eq!(
            error(&f, "unknown_fn").2,
            "unknown intrinsic function Fn::Nope"
        );
        assert!(error(&f, "equals_outside")
            .2
            .starts_with("Fn::Equals can only be used"));
        assert_eq!(
            error(&f, "ref_old").2,
            "Old is referenced here but is not created (its condition IsDev is false)"
        );
        assert_eq!(
            error(&f, "bad_select").2,
            "Fn::Select index 5 is out of range for a list of 1"
        );
        assert_eq!(
            error(&f, "bad_map").2,
            "Fn::FindInMap: mapping Sizes has no key qa"
        );
        assert_eq!(
            error(&f, "bad_condition").2,
            "unknown condition Missing (not in the Conditions section)"
        );
    }

    #[test]
    fn circular_conditions_are_reported() {
        let f = Fixture::new(
            "Conditions:\n  A: !Condition B\n  B: !Condition A\nValues:\n  v: !If [A, x, y]\n",
        );
        assert!(error(&f, "v").2.starts_with("circular condition"));
    }

    #[test]
    fn default_bucket_names_are_valid() {
        assert_eq!(default_bucket_name("UploadsBucket"), "uploadsbucket");
        assert_eq!(default_bucket_name("B"), "b00");
    }
}
