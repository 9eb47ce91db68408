//! The `Globals` section and SAM's merge rules.
//!
//! As the SAM translator does: mappings merge key by key (the resource
//! wins), lists concatenate (globals first), anything else, including an
//! intrinsic function, is replaced by the resource's value.
//! `Architectures` is replaced rather than concatenated: a function runs on
//! one architecture.

use super::error::{Located, Result};
use super::yaml::{Kind, Node};

/// `Globals.Function` keys SAM rejects.
const NOT_GLOBAL: &[&str] = &["FunctionName", "Events", "Role", "Policies"];

/// The parts of `Globals` ESB uses.
#[derive(Debug, Default)]
pub(crate) struct Globals<'t> {
    pub function: Option<&'t Node>,
    pub api: Option<&'t Node>,
    pub http_api: Option<&'t Node>,
}

impl<'t> Globals<'t> {
    pub fn read(section: Option<&'t Node>, warnings: &mut Vec<Located>) -> Result<Self> {
        let mut globals = Globals::default();
        let Some(section) = section else {
            return Ok(globals);
        };
        let entries = match &section.kind {
            Kind::Map(entries) => entries,
            Kind::Null => return Ok(globals),
            _ => {
                return Err(Located::new(
                    section.pos,
                    "Globals must be a mapping (Function, Api, HttpApi, ...)",
                ))
            }
        };
        for (key, value) in entries {
            if !matches!(value.kind, Kind::Map(_) | Kind::Null) {
                return Err(Located::new(
                    value.pos,
                    format!("Globals.{} must be a mapping of properties", key.name),
                ));
            }
            let value = Some(value).filter(|v| v.as_map().is_some());
            match key.name.as_str() {
                "Function" => {
                    if let Some(props) = value.and_then(Node::as_map) {
                        if let Some((k, _)) = props
                            .iter()
                            .find(|(k, _)| NOT_GLOBAL.contains(&k.name.as_str()))
                        {
                            return Err(Located::new(
                                k.pos,
                                format!(
                                    "{} cannot be set in Globals.Function; set it on each function",
                                    k.name
                                ),
                            ));
                        }
                    }
                    globals.function = value;
                }
                "Api" => globals.api = value,
                "HttpApi" => globals.http_api = value,
                "SimpleTable" | "LayerVersion" | "StateMachine" | "CapacityProvider" => {}
                other => warnings.push(Located::new(
                    key.pos,
                    format!("Globals.{other} is not a SAM Globals section; ignored"),
                )),
            }
        }
        Ok(globals)
    }
}

/// Merge global properties with a resource's own; either may be absent.
pub(crate) fn merge_properties(global: Option<&Node>, local: Option<&Node>) -> Option<Node> {
    match (global, local) {
        (None, None) => None,
        (Some(g), None) => Some(g.clone()),
        (None, Some(l)) => Some(l.clone()),
        (Some(g), Some(l)) => Some(merge(g, l, true)),
    }
}

fn is_dict(node: &Node) -> bool {
    matches!(node.kind, Kind::Map(_)) && node.intrinsic().is_none() && !is_condition(node)
}

/// `{Condition: X}` counts as an intrinsic for SAM's merge.
fn is_condition(node: &Node) -> bool {
    matches!(node.as_map(), Some([(k, _)]) if k.name == "Condition")
}

fn merge(global: &Node, local: &Node, top: bool) -> Node {
    match (&global.kind, &local.kind) {
        (Kind::Map(g), Kind::Map(l)) if is_dict(global) && is_dict(local) => {
            let mut out = g.clone();
            for (key, value) in l {
                match out.iter_mut().find(|(k, _)| k.name == key.name) {
                    Some((k, existing)) => {
                        let replace = top && key.name == "Architectures";
                        *existing = if replace {
                            value.clone()
                        } else {
                            merge(existing, value, false)
                        };
                        *k = key.clone();
                    }
                    None => out.push((key.clone(), value.clone())),
                }
            }
            Node::new(Kind::Map(out), local.pos)
        }
        (Kind::Seq(g), Kind::Seq(l)) => {
            let mut out = g.clone();
            out.extend(l.iter().cloned());
            Node::new(Kind::Seq(out), local.pos)
        }
        _ => local.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sam::yaml;

    fn merged(text: &str) -> Node {
        let root = yaml::load(text).expect("yaml");
        merge_properties(root.get("G"), root.get("L")).expect("merged")
    }

    #[test]
    fn maps_merge_lists_concatenate_scalars_override() {
        let m = merged(
            "G:\n  Timeout: 3\n  Layers: [a]\n  Environment:\n    Variables: {A: g, B: g}\nL:\n  Timeout: 10\n  Layers: [b]\n  Environment:\n    Variables: {B: l, C: l}\n",
        );
        assert_eq!(m.get("Timeout").and_then(Node::as_str), Some("10"));
        let layers: Vec<_> = m
            .get("Layers")
            .and_then(Node::as_seq)
            .expect("layers")
            .iter()
            .filter_map(Node::as_str)
            .collect();
        assert_eq!(layers, ["a", "b"]);
        let vars = m
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .expect("vars");
        let get = |k: &str| vars.get(k).and_then(Node::as_str);
        assert_eq!(
            (get("A"), get("B"), get("C")),
            (Some("g"), Some("l"), Some("l"))
        );
        // The value that won keeps its own position.
        assert_eq!(vars.get("B").map(|n| n.pos.line), Some(10));
    }

    #[test]
    fn intrinsics_and_architectures_replace() {
        let m = merged(
            "G:\n  Environment: !If [C, {Variables: {A: 1}}, !Ref AWS::NoValue]\n  Architectures: [x86_64]\nL:\n  Environment: {Variables: {B: 2}}\n  Architectures: [arm64]\n",
        );
        let env = m.get("Environment").expect("env");
        assert!(env.get("Variables").and_then(|v| v.get("A")).is_none());
        assert_eq!(
            m.get("Architectures")
                .and_then(Node::as_seq)
                .map(<[Node]>::len),
            Some(1)
        );
    }

    #[test]
    fn rejects_per_function_keys_in_globals() {
        let root = yaml::load("Globals:\n  Function:\n    FunctionName: x\n").expect("yaml");
        let err = Globals::read(root.get("Globals"), &mut Vec::new()).expect_err("not global");
        assert_eq!((err.pos.line, err.pos.column), (3, 5));
        assert_eq!(
            err.message,
            "FunctionName cannot be set in Globals.Function; set it on each function"
        );
    }
}
