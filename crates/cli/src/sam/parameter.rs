//! The `Parameters` section: types, defaults, overrides and constraints.

use std::collections::BTreeMap;

use super::error::{Located, Pos, Result};
use super::yaml::{Key, Kind, Node};

/// The value of a parameter after defaults and overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParamValue {
    Scalar(String),
    List(Vec<String>),
}

/// Where a parameter's value came from, for messages.
enum Source<'a> {
    Override,
    Default(&'a Node),
}

impl Source<'_> {
    fn describe(&self) -> &'static str {
        match self {
            Source::Override => " (from --parameter-overrides)",
            Source::Default(_) => "",
        }
    }
}

/// Resolve every parameter. Returns the values and warnings.
pub(crate) fn resolve(
    section: Option<&Node>,
    overrides: &BTreeMap<String, String>,
) -> Result<(BTreeMap<String, ParamValue>, Vec<Located>)> {
    let mut values = BTreeMap::new();
    let mut warnings = Vec::new();
    let entries: &[(Key, Node)] = match section {
        None => &[],
        Some(node) => match &node.kind {
            Kind::Null => &[],
            Kind::Map(entries) => entries,
            _ => {
                return Err(Located::new(
                    node.pos,
                    "Parameters must be a mapping of parameter names to definitions",
                ))
            }
        },
    };
    for (key, definition) in entries {
        let value = parameter(key, definition, overrides.get(&key.name), &mut warnings)?;
        values.insert(key.name.clone(), value);
    }
    for name in overrides.keys() {
        if !values.contains_key(name) {
            let pos = section.map(|n| n.pos).unwrap_or(Pos { line: 1, column: 1 });
            warnings.push(Located::new(
                pos,
                format!(
                    "--parameter-overrides {name} does not match any parameter of the template"
                ),
            ));
        }
    }
    Ok((values, warnings))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    String,
    Number,
    NumberList,
    StringList,
    /// `AWS::SSM::Parameter::Value<...>`: ESB has no SSM.
    Ssm,
}

fn parameter_type(key: &Key, definition: &Node) -> Result<Type> {
    let Some(type_node) = definition.get("Type") else {
        return Err(Located::new(
            key.pos,
            format!("parameter {} has no Type", key.name),
        ));
    };
    let Some(text) = type_node.as_str() else {
        return Err(Located::new(
            type_node.pos,
            format!("Type of parameter {} must be a string", key.name),
        ));
    };
    Ok(match text {
        "String" => Type::String,
        "Number" => Type::Number,
        "List<Number>" => Type::NumberList,
        "CommaDelimitedList" => Type::StringList,
        t if t.starts_with("AWS::SSM::Parameter::Value<") => Type::Ssm,
        t if t.starts_with("List<AWS::") => Type::StringList,
        t if t.starts_with("AWS::") => Type::String,
        other => {
            return Err(Located::new(
                type_node.pos,
                format!(
                    "parameter {} has unknown Type {other} (expected String, Number, List<Number>, CommaDelimitedList or an AWS-specific type)",
                    key.name
                ),
            ))
        }
    })
}

fn parameter(
    key: &Key,
    definition: &Node,
    override_value: Option<&String>,
    warnings: &mut Vec<Located>,
) -> Result<ParamValue> {
    let name = &key.name;
    if definition.as_map().is_none() {
        return Err(Located::new(
            definition.pos,
            format!("parameter {name} must be a mapping with at least a Type"),
        ));
    }
    let ty = parameter_type(key, definition)?;
    let default = definition.get("Default");
    let (raw, source) = match (override_value, default) {
        (Some(value), _) => (value.clone(), Source::Override),
        (None, Some(node)) => (default_text(name, node)?, Source::Default(node)),
        (None, None) => {
            return Err(Located::new(
                key.pos,
                format!("parameter {name} has no Default and no value in --parameter-overrides"),
            ))
        }
    };
    let at = match source {
        Source::Override => key.pos,
        Source::Default(node) => node.pos,
    };
    if ty == Type::Ssm {
        if let Source::Default(_) = source {
            warnings.push(Located::new(
                at,
                format!(
                    "parameter {name} is an SSM parameter; ESB has no SSM and uses the Default {raw:?} as the value (set it with --parameter-overrides {name}=...)"
                ),
            ));
        }
        return Ok(ParamValue::Scalar(raw));
    }
    let constraints = Constraints::read(name, definition)?;
    let value = match ty {
        Type::String | Type::Ssm => ParamValue::Scalar(raw),
        Type::Number => ParamValue::Scalar(raw),
        Type::StringList | Type::NumberList => {
            ParamValue::List(raw.split(',').map(str::to_owned).collect())
        }
    };
    let items: Vec<&str> = match &value {
        ParamValue::Scalar(s) => vec![s.as_str()],
        ParamValue::List(items) => items.iter().map(String::as_str).collect(),
    };
    for item in items {
        let numeric = matches!(ty, Type::Number | Type::NumberList);
        if numeric && item.trim().parse::<f64>().is_err() {
            return Err(Located::new(
                at,
                format!(
                    "parameter {name}: {item:?}{} is not a number",
                    source.describe()
                ),
            ));
        }
        constraints.check(name, item, numeric, &source, at)?;
    }
    Ok(value)
}

/// A `Default` as the text an override would give.
fn default_text(name: &str, node: &Node) -> Result<String> {
    match &node.kind {
        Kind::Scalar(s) => Ok(s.text.clone()),
        Kind::Null => Ok(String::new()),
        Kind::Seq(items) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    Located::new(
                        item.pos,
                        format!("Default of parameter {name} must be a list of strings"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(|items| items.join(",")),
        Kind::Map(_) => Err(Located::new(
            node.pos,
            format!(
                "Default of parameter {name} must be a plain value (intrinsic functions are not allowed here)"
            ),
        )),
    }
}

#[derive(Default)]
struct Constraints {
    allowed_values: Option<Vec<String>>,
    allowed_pattern: Option<(regex::Regex, String)>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    min_value: Option<f64>,
    max_value: Option<f64>,
    description: Option<String>,
}

impl Constraints {
    fn read(name: &str, definition: &Node) -> Result<Self> {
        let mut c = Constraints::default();
        if let Some(node) = definition.get("AllowedValues") {
            let items = node.as_seq().ok_or_else(|| {
                Located::new(
                    node.pos,
                    format!("AllowedValues of parameter {name} must be a list"),
                )
            })?;
            let values = items
                .iter()
                .map(|item| match &item.kind {
                    Kind::Scalar(s) => Ok(s.text.clone()),
                    Kind::Null => Ok(String::new()),
                    _ => Err(Located::new(
                        item.pos,
                        format!("AllowedValues of parameter {name} must be plain values"),
                    )),
                })
                .collect::<Result<Vec<_>>>()?;
            c.allowed_values = Some(values);
        }
        if let Some(node) = definition.get("AllowedPattern") {
            let pattern = node.as_str().ok_or_else(|| {
                Located::new(
                    node.pos,
                    format!("AllowedPattern of parameter {name} must be a string"),
                )
            })?;
            let regex = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                Located::new(
                    node.pos,
                    format!("AllowedPattern of parameter {name} is not a valid pattern: {e}"),
                )
            })?;
            c.allowed_pattern = Some((regex, pattern.to_owned()));
        }
        c.min_length = number(name, definition, "MinLength")?.map(|n| n as usize);
        c.max_length = number(name, definition, "MaxLength")?.map(|n| n as usize);
        c.min_value = number(name, definition, "MinValue")?;
        c.max_value = number(name, definition, "MaxValue")?;
        c.description = definition
            .get("ConstraintDescription")
            .and_then(Node::as_str)
            .map(str::to_owned);
        Ok(c)
    }

    fn check(
        &self,
        name: &str,
        value: &str,
        numeric: bool,
        source: &Source<'_>,
        at: Pos,
    ) -> Result<()> {
        let from = source.describe();
        let fail = |what: String| {
            let mut message = format!("parameter {name}: {value:?}{from} {what}");
            if let Some(d) = &self.description {
                message.push_str(&format!(" ({d})"));
            }
            Err(Located::new(at, message))
        };
        if let Some(allowed) = &self.allowed_values {
            let matches = allowed.iter().any(|a| {
                a == value
                    || (numeric
                        && matches!((a.parse::<f64>(), value.trim().parse::<f64>()), (Ok(x), Ok(y)) if x == y))
            });
            if !matches {
                return fail(format!(
                    "is not one of the AllowedValues: {}",
                    allowed.join(", ")
                ));
            }
        }
        if let Some((regex, pattern)) = &self.allowed_pattern {
            if !regex.is_match(value) {
                return fail(format!("does not match the AllowedPattern {pattern}"));
            }
        }
        let length = value.chars().count();
        if let Some(min) = self.min_length {
            if length < min {
                return fail(format!("is shorter than MinLength {min}"));
            }
        }
        if let Some(max) = self.max_length {
            if length > max {
                return fail(format!("is longer than MaxLength {max}"));
            }
        }
        if numeric {
            let n: f64 = value.trim().parse().unwrap_or(f64::NAN);
            if let Some(min) = self.min_value {
                if n < min {
                    return fail(format!("is less than MinValue {min}"));
                }
            }
            if let Some(max) = self.max_value {
                if n > max {
                    return fail(format!("is greater than MaxValue {max}"));
                }
            }
        }
        Ok(())
    }
}

fn number(name: &str, definition: &Node, key: &str) -> Result<Option<f64>> {
    let Some(node) = definition.get(key) else {
        return Ok(None);
    };
    let parsed = node
        .as_str()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|n| n.is_finite());
    let is_length = key.ends_with("Length");
    match parsed {
        Some(n) if !is_length || n >= 0.0 => Ok(Some(n)),
        _ => Err(Located::new(
            node.pos,
            format!("{key} of parameter {name} must be a number"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sam::yaml;

    fn run(
        text: &str,
        overrides: &[(&str, &str)],
    ) -> Result<(BTreeMap<String, ParamValue>, Vec<Located>)> {
        let root = yaml::load(text).expect("yaml");
        let overrides = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(root.get("Parameters"), &overrides)
    }

    const TEMPLATE: &str = "\
Parameters:
  Stage:
    Type: String
    Default: dev
    AllowedValues: [dev, prod]
  Size:
    Type: Number
    Default: 3
    MinValue: 1
  Zones:
    Type: CommaDelimitedList
    Default: a,b
  Ports:
    Type: List<Number>
    Default: '80,443'
";

    #[test]
    fn defaults_and_overrides() {
        let (values, warnings) = run(TEMPLATE, &[("Stage", "prod")]).expect("ok");
        assert!(warnings.is_empty());
        assert_eq!(values["Stage"], ParamValue::Scalar("prod".into()));
        assert_eq!(values["Size"], ParamValue::Scalar("3".into()));
        assert_eq!(
            values["Zones"],
            ParamValue::List(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            values["Ports"],
            ParamValue::List(vec!["80".into(), "443".into()])
        );
    }

    #[test]
    fn allowed_values_are_checked_at_the_override_or_default() {
        let err = run(TEMPLATE, &[("Stage", "qa")]).expect_err("not allowed");
        assert_eq!((err.pos.line, err.pos.column), (2, 3));
        assert_eq!(
            err.message,
            "parameter Stage: \"qa\" (from --parameter-overrides) is not one of the AllowedValues: dev, prod"
        );
        let err = run(
            "Parameters:\n  S:\n    Type: String\n    Default: x\n    AllowedValues: [a]\n",
            &[],
        )
        .expect_err("bad default");
        assert_eq!((err.pos.line, err.pos.column), (4, 14));
    }

    #[test]
    fn numbers_and_ranges() {
        let err = run(TEMPLATE, &[("Size", "many")]).expect_err("nan");
        assert_eq!(
            err.message,
            "parameter Size: \"many\" (from --parameter-overrides) is not a number"
        );
        let err = run(TEMPLATE, &[("Size", "0")]).expect_err("too small");
        assert!(
            err.message.ends_with("is less than MinValue 1"),
            "{}",
            err.message
        );
    }

    #[test]
    fn missing_values_and_unknown_overrides() {
        let err = run("Parameters:\n  Key:\n    Type: String\n", &[]).expect_err("no value");
        assert_eq!((err.pos.line, err.pos.column), (2, 3));
        assert_eq!(
            err.message,
            "parameter Key has no Default and no value in --parameter-overrides"
        );
        let (_, warnings) = run(TEMPLATE, &[("Nope", "1")]).expect("ok");
        assert_eq!(
            warnings[0].message,
            "--parameter-overrides Nope does not match any parameter of the template"
        );
    }

    #[test]
    fn patterns_and_lengths() {
        let text = "Parameters:\n  P:\n    Type: String\n    Default: abc\n    AllowedPattern: '[a-z]+'\n    MaxLength: 4\n    ConstraintDescription: lower-case letters\n";
        assert!(run(text, &[]).is_ok());
        let err = run(text, &[("P", "ABC")]).expect_err("pattern");
        assert_eq!(
            err.message,
            "parameter P: \"ABC\" (from --parameter-overrides) does not match the AllowedPattern [a-z]+ (lower-case letters)"
        );
        let err = run(text, &[("P", "abcde")]).expect_err("length");
        assert!(err.message.contains("is longer than MaxLength 4"));
    }

    #[test]
    fn ssm_parameters_use_the_default_with_a_warning() {
        let text = "Parameters:\n  Arn:\n    Type: 'AWS::SSM::Parameter::Value<String>'\n    Default: /app/arn\n";
        let (values, warnings) = run(text, &[]).expect("ok");
        assert_eq!(values["Arn"], ParamValue::Scalar("/app/arn".into()));
        assert_eq!(warnings.len(), 1);
        let (_, warnings) = run(text, &[("Arn", "arn:aws:x")]).expect("ok");
        assert!(warnings.is_empty());
    }
}
