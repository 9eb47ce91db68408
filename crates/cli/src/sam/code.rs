//! Local code locations (`CodeUri`, `ContentUri`, `DockerContext`).

use std::path::{Path, PathBuf};

use super::error::{Located, Result};
use super::model::Code;
use super::normalize;
use super::value::describe;
use super::yaml::{Kind, Node};

/// A resolved `CodeUri`-like node as a local directory or `.zip` archive.
///
/// `what` names the property for messages, e.g. "CodeUri of function Hello".
pub(crate) fn local(template_dir: &Path, node: &Node, what: &str) -> Result<Code> {
    let path = local_path(template_dir, node, what)?;
    if path.is_dir() {
        return Ok(Code::Dir(path));
    }
    if path.is_file() {
        let zip = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
        if zip {
            return Ok(Code::Zip(path));
        }
        return Err(Located::new(
            node.pos,
            format!(
                "{what} must be a directory or a .zip archive, but {} is another kind of file",
                path.display()
            ),
        ));
    }
    Err(Located::new(
        node.pos,
        format!("{what} {} does not exist", path.display()),
    ))
}

/// A resolved path property made absolute against the template directory.
pub(crate) fn local_path(template_dir: &Path, node: &Node, what: &str) -> Result<PathBuf> {
    let text = match &node.kind {
        Kind::Scalar(s) => s.text.as_str(),
        Kind::Map(_) => {
            return Err(Located::new(
                node.pos,
                format!("{what} points to S3; ESB builds from a local path"),
            ))
        }
        _ => {
            return Err(Located::new(
                node.pos,
                format!("{what} must be a local path, found {}", describe(node)),
            ))
        }
    };
    if text.starts_with("s3://") || text.starts_with("https://") || text.starts_with("http://") {
        return Err(Located::new(
            node.pos,
            format!("{what} {text} is not a local path; ESB builds from local code"),
        ));
    }
    if text.is_empty() {
        return Err(Located::new(node.pos, format!("{what} is empty")));
    }
    Ok(normalize(&template_dir.join(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sam::yaml;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sam/full")
    }

    fn node(text: &str) -> Node {
        yaml::load(text).expect("yaml")
    }

    #[test]
    fn directories_and_archives() {
        let code = local(&fixtures(), &node("src/orders/"), "CodeUri").expect("dir");
        assert_eq!(code, Code::Dir(fixtures().join("src/orders")));
        let code = local(
            &fixtures(),
            &node("./layers/../artifacts/worker.zip"),
            "CodeUri",
        )
        .expect("zip");
        assert_eq!(code, Code::Zip(fixtures().join("artifacts/worker.zip")));
    }

    #[test]
    fn missing_and_remote_code() {
        let err = local(&fixtures(), &node("nope/"), "CodeUri of function F").expect_err("missing");
        assert_eq!(
            err.message,
            format!(
                "CodeUri of function F {} does not exist",
                fixtures().join("nope").display()
            )
        );
        let err = local(&fixtures(), &node("s3://bucket/key.zip"), "CodeUri").expect_err("s3");
        assert_eq!(
            err.message,
            "CodeUri s3://bucket/key.zip is not a local path; ESB builds from local code"
        );
        let err = local(&fixtures(), &node("{Bucket: b, Key: k}"), "CodeUri").expect_err("s3 map");
        assert_eq!(
            err.message,
            "CodeUri points to S3; ESB builds from a local path"
        );
        let err = local(&fixtures(), &node("template.yaml"), "CodeUri").expect_err("file");
        assert!(
            err.message.ends_with("is another kind of file"),
            "{}",
            err.message
        );
    }
}
