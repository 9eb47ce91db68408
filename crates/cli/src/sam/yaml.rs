//! A YAML tree that remembers where every node came from.
//!
//! Templates are read with `libyaml-safer`'s event API and folded into a
//! small tree of [`Node`]s carrying 1-based line and column numbers, so that
//! every later error can point at the node that is wrong. CloudFormation's
//! short-form tags are rewritten into their long forms while loading
//! (`!Ref X` becomes `{Ref: X}`, `!GetAtt A.B` becomes `{Fn::GetAtt: [A, B]}`,
//! `!Sub s` becomes `{Fn::Sub: s}` ...), so the resolver only knows one form.

use std::collections::HashMap;

use libyaml_safer::{Event, EventData, Mark, Parser, ScalarStyle};

use super::error::{Located, Pos};

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// `~`, `null` or an empty value.
    Null,
    /// Any scalar; numbers and booleans stay text, as CloudFormation sees them.
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Keys in document order; duplicate keys are rejected while loading.
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
    pub text: String,
    /// Unquoted and untagged: only such scalars can be booleans or numbers.
    pub plain: bool,
}

/// A mapping key (CloudFormation only has string keys).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub pos: Pos,
}

/// Long names of the short-form tags CloudFormation defines.
const FN_TAGS: &[&str] = &[
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "GetAtt",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
];

/// What `!!` expands to.
const YAML_CORE_PREFIX: &str = "tag:yaml.org,2002:";

/// How deep lists and mappings may nest. Templates stay far below; deeper
/// input only makes the scanner slow (quadratic in the depth) and the
/// recursive passes over the tree deep.
const MAX_DEPTH: usize = 128;

impl Node {
    pub fn new(kind: Kind, pos: Pos) -> Self {
        Node { kind, pos }
    }

    pub fn scalar(text: impl Into<String>, pos: Pos) -> Self {
        Node::new(
            Kind::Scalar(Scalar {
                text: text.into(),
                plain: false,
            }),
            pos,
        )
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.kind {
            Kind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar node.
    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().map(|s| s.text.as_str())
    }

    /// The value of `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key and value of `key` when this node is a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Key, &Node)> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, v)| (k, v))
    }

    /// `Some((name, argument))` when the node is a one-key mapping whose key
    /// is an intrinsic function (`Ref` or `Fn::*`).
    pub fn intrinsic(&self) -> Option<(&Key, &Node)> {
        match self.as_map()? {
            [(k, v)] if k.name == "Ref" || k.name.starts_with("Fn::") => Some((k, v)),
            _ => None,
        }
    }

    /// A short human description of the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Null => "null",
            Kind::Scalar(_) => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

fn pos_of(mark: Mark) -> Pos {
    // libyaml marks are 0-based.
    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Pos {
        line: to_usize(mark.line).saturating_add(1),
        column: to_usize(mark.column).saturating_add(1),
    }
}

/// Parse one YAML document into a [`Node`] tree.
///
/// The scanner is a port of libyaml, the library behind PyYAML (and so
/// behind the SAM CLI): templates AWS accepts load here too.
pub(crate) fn load(text: &str) -> Result<Node, Located> {
    // libyaml-safer 0.3 panics on a block scalar that ends the input
    // without a line break (`a: |\n  x`); one more line break changes no
    // value and no position.
    let text = if text.ends_with('\n') {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(format!("{text}\n"))
    };
    let mut parser = Parser::new();
    parser.set_input(text.as_bytes());
    let mut builder = Builder::default();
    let mut last = Pos { line: 1, column: 1 };
    loop {
        // libyaml-safer 0.3 also panics ("TODO") on a tag directly followed
        // by `,` in a flow collection (`[!Ref, x]`), which libyaml accepts:
        // that becomes an error at the end of the last complete event.
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parser.next()));
        let event = match next {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(_) => {
                return Err(Located::new(
                    last,
                    "invalid YAML: cannot read what follows (a tag such as !Ref directly followed by ',' is not supported)",
                ))
            }
        };
        let event = event.map_err(|e| {
            let pos = e.problem_mark().map_or(Pos { line: 1, column: 1 }, pos_of);
            let mut message = format!("invalid YAML: {}", e.problem());
            if let (Some(context), Some(mark)) = (e.context(), e.context_mark()) {
                message.push_str(&format!(" ({context} at line {})", pos_of(mark).line));
            }
            Located::new(pos, message)
        })?;
        last = pos_of(event.end_mark);
        builder.event(event)?;
    }
    builder
        .root
        .ok_or_else(|| Located::new(Pos { line: 1, column: 1 }, "the template is empty"))
}

enum Frame {
    Seq {
        pos: Pos,
        tag: Option<String>,
        anchor: Option<String>,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        tag: Option<String>,
        anchor: Option<String>,
        entries: Vec<(Key, Node)>,
        pending_key: Option<Key>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<String, Node>,
    root: Option<Node>,
    documents: usize,
}

impl Builder {
    fn event(&mut self, event: Event) -> Result<(), Located> {
        let pos = pos_of(event.start_mark);
        match event.data {
            EventData::StreamStart { .. }
            | EventData::StreamEnd
            | EventData::DocumentEnd { .. } => Ok(()),
            EventData::DocumentStart { .. } => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Located::new(
                        pos,
                        "a template must be a single YAML document",
                    ));
                }
                Ok(())
            }
            EventData::Alias { anchor } => {
                let node = self.anchors.get(&anchor).cloned().ok_or_else(|| {
                    Located::new(pos, format!("alias *{anchor} refers to no complete anchor"))
                })?;
                self.push(Node { pos, ..node })
            }
            EventData::Scalar {
                anchor,
                tag,
                value,
                style,
                ..
            } => {
                let plain = style == ScalarStyle::Plain && tag.is_none();
                let kind = if plain && is_null(&value) {
                    Kind::Null
                } else {
                    Kind::Scalar(Scalar { text: value, plain })
                };
                let node = apply_tag(Node::new(kind, pos), tag, pos)?;
                self.remember(anchor, &node);
                self.push(node)
            }
            EventData::SequenceStart { anchor, tag, .. } => {
                self.check_depth(pos)?;
                self.stack.push(Frame::Seq {
                    pos,
                    tag,
                    anchor,
                    items: Vec::new(),
                });
                Ok(())
            }
            EventData::MappingStart { anchor, tag, .. } => {
                self.check_depth(pos)?;
                self.stack.push(Frame::Map {
                    pos,
                    tag,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                });
                Ok(())
            }
            EventData::SequenceEnd | EventData::MappingEnd => {
                let (node, tag, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        pos,
                        tag,
                        anchor,
                        items,
                    }) => (Node::new(Kind::Seq(items), pos), tag, anchor),
                    Some(Frame::Map {
                        pos,
                        tag,
                        anchor,
                        entries,
                        ..
                    }) => (Node::new(Kind::Map(entries), pos), tag, anchor),
                    None => return Err(Located::new(pos, "unbalanced YAML collection")),
                };
                let at = node.pos;
                let node = apply_tag(node, tag, at)?;
                self.remember(anchor, &node);
                self.push(node)
            }
        }
    }

    /// Refuses one more level of nesting past [`MAX_DEPTH`].
    fn check_depth(&self, pos: Pos) -> Result<(), Located> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Located::new(
                pos,
                format!("the template nests lists and mappings more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(())
    }

    fn remember(&mut self, anchor: Option<String>, node: &Node) {
        if let Some(anchor) = anchor {
            self.anchors.insert(anchor, node.clone());
        }
    }

    fn push(&mut self, node: Node) -> Result<(), Located> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                Some(key) => {
                    entries.push((key, node));
                    Ok(())
                }
                None => {
                    let name = match &node.kind {
                        Kind::Scalar(s) => s.text.clone(),
                        Kind::Null => String::new(),
                        _ => {
                            return Err(Located::new(
                                node.pos,
                                format!("mapping keys must be strings, found {}", node.type_name()),
                            ))
                        }
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                        return Err(Located::new(
                            node.pos,
                            format!(
                                "duplicate key {name} (first defined at line {})",
                                first.pos.line
                            ),
                        ));
                    }
                    *pending_key = Some(Key {
                        name,
                        pos: node.pos,
                    });
                    Ok(())
                }
            },
        }
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Turn a tagged node into what CloudFormation means by it.
fn apply_tag(node: Node, tag: Option<String>, pos: Pos) -> Result<Node, Located> {
    let Some(tag) = tag else {
        return Ok(node);
    };
    if let Some(core) = tag.strip_prefix(YAML_CORE_PREFIX) {
        // `!!str 3` is the string "3"; other core tags change nothing here.
        return Ok(match (core, node.kind) {
            ("str", Kind::Scalar(s)) => Node::new(
                Kind::Scalar(Scalar {
                    text: s.text,
                    plain: false,
                }),
                node.pos,
            ),
            ("str", Kind::Null) => Node::scalar("", node.pos),
            (_, kind) => Node::new(kind, node.pos),
        });
    }
    let Some(name) = tag.strip_prefix('!').filter(|n| !n.contains('!')) else {
        return Err(Located::new(pos, format!("unsupported YAML tag {tag}")));
    };
    let (key, argument) = match name {
        "Ref" | "Condition" => (name.to_owned(), node),
        "GetAtt" => ("Fn::GetAtt".to_owned(), split_get_att(node)),
        _ if FN_TAGS.contains(&name) => (format!("Fn::{name}"), node),
        _ => {
            return Err(Located::new(
                pos,
                format!("unknown tag !{name} (not a CloudFormation intrinsic function)"),
            ))
        }
    };
    Ok(Node::new(
        Kind::Map(vec![(Key { name: key, pos }, argument)]),
        pos,
    ))
}

/// `!GetAtt Res.Attr.Sub` is `[Res, "Attr.Sub"]`; a list stays as it is.
fn split_get_att(node: Node) -> Node {
    let Kind::Scalar(s) = &node.kind else {
        return node;
    };
    let Some((resource, attribute)) = s.text.split_once('.') else {
        return node;
    };
    let pos = node.pos;
    // The attribute starts right after the dot; on one line that is a
    // column further along, which helps messages point at it.
    let attr_pos = Pos {
        line: pos.line,
        column: pos.column + resource.chars().count() + 1,
    };
    Node::new(
        Kind::Seq(vec![
            Node::scalar(resource, pos),
            Node::scalar(attribute, attr_pos),
        ]),
        pos,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(node: &Node) -> (usize, usize) {
        (node.pos.line, node.pos.column)
    }

    /// Found by `fuzz/fuzz_targets/sam_template.rs`: libyaml-safer panicked
    /// ("unexpected end of input") on a block scalar at the very end.
    #[test]
    fn a_block_scalar_may_end_the_input() {
        for text in ["a: |\n  x", "a: >\n  x", "a: |-\n  x\n  y"] {
            let root = load(text).unwrap_or_else(|e| panic!("{text:?}: {}", e.message));
            let value = root.get("a").and_then(Node::as_str).expect("a");
            assert!(value.starts_with('x'), "{text:?}: {value:?}");
        }
    }

    /// Found by `fuzz/fuzz_targets/sam_template.rs`: libyaml-safer panicked
    /// ("TODO: What is expected here?") on a tag followed by `,` in a flow
    /// collection.
    #[test]
    fn a_tag_followed_by_a_comma_in_a_flow_collection_is_an_error() {
        let err = load("a: 1\nb: [!Ref, x]\n").expect_err("refused");
        assert_eq!((err.pos.line, err.pos.column), (2, 5));
        assert!(
            err.message.contains("!Ref directly followed by ','"),
            "{}",
            err.message
        );
        load("b: [!Ref a, x]\n").expect("a tag with a value is fine");
    }

    /// Found by `fuzz/fuzz_targets/sam_template.rs`: 20,000 nested `[`
    /// took 12 s to scan; the depth is now refused early.
    #[test]
    fn deep_nesting_is_refused_with_its_position() {
        let ok = format!(
            "a: {}1{}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        load(&ok).expect("within the limit");
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = load(&deep).expect_err("too deep");
        assert_eq!((err.pos.line, err.pos.column), (1, 4 + MAX_DEPTH - 1));
        assert!(
            err.message.contains("more than 128 levels"),
            "{}",
            err.message
        );
        let block = format!(
            "a:\n{}",
            (1..200)
                .map(|i| format!("{}- \n", " ".repeat(i)))
                .collect::<String>()
        );
        assert!(load(&block).is_err());
    }

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let root = load("a: 1\nb:\n  c: [x, y]\n  d: hello\n").expect("loads");
        let (key, value) = root.entry("b").expect("b");
        assert_eq!((key.pos.line, key.pos.column), (2, 1));
        let c = value.get("c").expect("c");
        assert_eq!(at(c), (3, 6));
        let items = c.as_seq().expect("seq");
        assert_eq!(at(&items[1]), (3, 10));
        assert_eq!(value.get("d").and_then(Node::as_str), Some("hello"));
        assert_eq!(at(value.get("d").expect("d")), (4, 6));
    }

    #[test]
    fn short_forms_become_long_forms() {
        let root =
            load("a: !Ref Param\nb: !GetAtt Fn.Arn\nc: !Sub '${X}'\nd: !If [C, !Ref A, !Ref B]\n")
                .expect("loads");
        let a = root.get("a").expect("a");
        let (name, arg) = a.intrinsic().expect("intrinsic");
        assert_eq!(name.name, "Ref");
        assert_eq!(arg.as_str(), Some("Param"));
        assert_eq!(at(a), (1, 4));

        let (name, arg) = root.get("b").and_then(Node::intrinsic).expect("getatt");
        assert_eq!(name.name, "Fn::GetAtt");
        let parts: Vec<_> = arg
            .as_seq()
            .expect("list")
            .iter()
            .map(|n| n.as_str().expect("str"))
            .collect();
        assert_eq!(parts, ["Fn", "Arn"]);

        let (name, _) = root.get("c").and_then(Node::intrinsic).expect("sub");
        assert_eq!(name.name, "Fn::Sub");
        let (name, arg) = root.get("d").and_then(Node::intrinsic).expect("if");
        assert_eq!(name.name, "Fn::If");
        assert_eq!(arg.as_seq().map(<[Node]>::len), Some(3));
    }

    #[test]
    fn long_forms_are_recognised() {
        let root = load("{\"a\": {\"Fn::Join\": [\"-\", [\"x\", \"y\"]]}}").expect("json");
        let (name, _) = root.get("a").and_then(Node::intrinsic).expect("join");
        assert_eq!(name.name, "Fn::Join");
    }

    #[test]
    fn scalars_remember_quoting_and_null() {
        let root = load("a: true\nb: 'true'\nc:\nd: ~\ne: !!str 5\n").expect("loads");
        assert!(root.get("a").and_then(Node::as_scalar).expect("a").plain);
        assert!(!root.get("b").and_then(Node::as_scalar).expect("b").plain);
        assert_eq!(root.get("c").map(|n| &n.kind), Some(&Kind::Null));
        assert_eq!(root.get("d").map(|n| &n.kind), Some(&Kind::Null));
        let e = root.get("e").and_then(Node::as_scalar).expect("e");
        assert_eq!((e.text.as_str(), e.plain), ("5", false));
    }

    #[test]
    fn anchors_and_aliases_copy_nodes() {
        let root = load("a: &env {X: '1'}\nb: *env\n").expect("loads");
        assert_eq!(
            root.get("b")
                .and_then(|b| b.get("X"))
                .and_then(Node::as_str),
            Some("1")
        );
    }

    #[test]
    fn syntax_errors_carry_their_position() {
        let err = load("a: b\n  c: d\n").expect_err("bad indentation");
        assert_eq!((err.pos.line, err.pos.column), (2, 4));
        assert!(err.message.starts_with("invalid YAML: "), "{}", err.message);
    }

    #[test]
    fn duplicate_keys_and_unknown_tags_are_errors() {
        let err = load("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!((err.pos.line, err.pos.column), (3, 1));
        assert_eq!(err.message, "duplicate key a (first defined at line 1)");

        let err = load("a: !Foo x\n").expect_err("unknown tag");
        assert_eq!((err.pos.line, err.pos.column), (1, 4));
        assert_eq!(
            err.message,
            "unknown tag !Foo (not a CloudFormation intrinsic function)"
        );
    }

    #[test]
    fn empty_and_multi_document_input_is_rejected() {
        assert_eq!(
            load("# nothing\n").expect_err("empty").message,
            "the template is empty"
        );
        let err = load("a: 1\n---\nb: 2\n").expect_err("two documents");
        assert_eq!(err.pos.line, 2);
    }
}
