//! Reading typed values out of resolved nodes, with located errors.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use super::error::{Located, Result};
use super::yaml::{Kind, Node};

/// A scalar as text (numbers and booleans as written).
pub(crate) fn text(node: &Node, what: &str) -> Result<String> {
    match &node.kind {
        Kind::Scalar(s) => Ok(s.text.clone()),
        _ => Err(Located::new(
            node.pos,
            format!("{what} must be a string, found {}", node.type_name()),
        )),
    }
}

/// A whole number within `range`.
pub(crate) fn integer(node: &Node, what: &str, range: RangeInclusive<u32>) -> Result<u32> {
    let parsed = node.as_str().and_then(|s| {
        let s = s.trim();
        s.parse::<u32>().ok().or_else(|| {
            // `30.0` is a whole number too.
            s.parse::<f64>()
                .ok()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
                .map(|f| f as u32)
        })
    });
    match parsed {
        Some(n) if range.contains(&n) => Ok(n),
        Some(n) => Err(Located::new(
            node.pos,
            format!(
                "{what} must be between {} and {}, found {n}",
                range.start(),
                range.end()
            ),
        )),
        None => Err(Located::new(
            node.pos,
            format!("{what} must be a whole number, found {}", describe(node)),
        )),
    }
}

/// `true` / `false` in any case, quoted or not (CloudFormation accepts both).
pub(crate) fn boolean(node: &Node, what: &str) -> Result<bool> {
    match node.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err(Located::new(
            node.pos,
            format!("{what} must be true or false, found {}", describe(node)),
        )),
    }
}

/// A list of scalars (a single scalar counts as a list of one).
pub(crate) fn text_list(node: &Node, what: &str) -> Result<Vec<String>> {
    match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .map(|item| text(item, &format!("each item of {what}")))
            .collect(),
        Kind::Scalar(s) => Ok(vec![s.text.clone()]),
        _ => Err(Located::new(
            node.pos,
            format!(
                "{what} must be a list of strings, found {}",
                node.type_name()
            ),
        )),
    }
}

/// A mapping of names to scalars.
pub(crate) fn text_map(node: &Node, what: &str) -> Result<BTreeMap<String, String>> {
    let Some(entries) = node.as_map() else {
        return Err(Located::new(
            node.pos,
            format!("{what} must be a mapping, found {}", node.type_name()),
        ));
    };
    entries
        .iter()
        .map(|(k, v)| Ok((k.name.clone(), text(v, &format!("{what}.{}", k.name))?)))
        .collect()
}

/// The mapping entries of a node, or an error naming `what`.
pub(crate) fn mapping<'n>(node: &'n Node, what: &str) -> Result<&'n [(super::yaml::Key, Node)]> {
    match &node.kind {
        Kind::Map(entries) => Ok(entries),
        Kind::Null => Ok(&[]),
        _ => Err(Located::new(
            node.pos,
            format!("{what} must be a mapping, found {}", node.type_name()),
        )),
    }
}

/// A short rendering of a node for messages: the scalar quoted, else its type.
pub(crate) fn describe(node: &Node) -> String {
    match &node.kind {
        Kind::Scalar(s) => format!("{:?}", s.text),
        _ => node.type_name().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sam::yaml;

    fn node(text: &str) -> Node {
        yaml::load(text).expect("yaml")
    }

    #[test]
    fn integers_check_their_range() {
        assert_eq!(integer(&node("30"), "Timeout", 1..=900), Ok(30));
        assert_eq!(integer(&node("'30'"), "Timeout", 1..=900), Ok(30));
        assert_eq!(integer(&node("30.0"), "Timeout", 1..=900), Ok(30));
        let err = integer(&node("901"), "Timeout", 1..=900).expect_err("range");
        assert_eq!(err.message, "Timeout must be between 1 and 900, found 901");
        let err = integer(&node("ten"), "Timeout", 1..=900).expect_err("nan");
        assert_eq!(err.message, "Timeout must be a whole number, found \"ten\"");
    }

    #[test]
    fn booleans_accept_strings() {
        assert_eq!(boolean(&node("True"), "Enabled"), Ok(true));
        assert_eq!(boolean(&node("'false'"), "Enabled"), Ok(false));
        assert!(boolean(&node("yes"), "Enabled").is_err());
    }

    #[test]
    fn lists_and_maps() {
        assert_eq!(
            text_list(&node("[a, 1]"), "L"),
            Ok(vec!["a".to_owned(), "1".to_owned()])
        );
        let err = text_map(&node("A: [1]"), "Variables").expect_err("list value");
        assert_eq!(err.message, "Variables.A must be a string, found a list");
    }
}
