//! Errors and warnings, each pointing at a place in the template.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column in the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

/// What is wrong with a template, and where.
///
/// Displays as `template.yaml:12:5: message`, with the file as it was given.
/// `line` and `column` are 1-based; both are 0 only when the file itself
/// could not be read, and the display then omits them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, &self.file, self.line, self.column, &self.message)
    }
}

/// Something in the template that ESB ignores or approximates.
///
/// Displays like [`TemplateError`]: `template.yaml:30:3: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, &self.file, self.line, self.column, &self.message)
    }
}

fn write_located(
    f: &mut fmt::Formatter<'_>,
    file: &Path,
    line: usize,
    column: usize,
    message: &str,
) -> fmt::Result {
    if line == 0 {
        write!(f, "{}: {message}", file.display())
    } else {
        write!(f, "{}:{line}:{column}: {message}", file.display())
    }
}

/// An error before the file name is attached (the parser's internal error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    pub pos: Pos,
    pub message: String,
}

impl Located {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Located {
            pos,
            message: message.into(),
        }
    }

    pub fn into_error(self, file: &Path) -> TemplateError {
        TemplateError {
            file: file.to_path_buf(),
            line: self.pos.line,
            column: self.pos.column,
            message: self.message,
        }
    }

    pub fn into_warning(self, file: &Path) -> Warning {
        Warning {
            file: file.to_path_buf(),
            line: self.pos.line,
            column: self.pos.column,
            message: self.message,
        }
    }
}

pub(crate) type Result<T, E = Located> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_file_line_column_message() {
        let err = Located::new(
            Pos {
                line: 12,
                column: 5,
            },
            "runtime nodejs20.x is not supported by ESB",
        )
        .into_error(Path::new("template.yaml"));
        assert_eq!(
            err.to_string(),
            "template.yaml:12:5: runtime nodejs20.x is not supported by ESB"
        );
        let warning = Located::new(Pos { line: 3, column: 1 }, "skipped")
            .into_warning(Path::new("dir/t.yaml"));
        assert_eq!(warning.to_string(), "dir/t.yaml:3:1: skipped");
    }

    #[test]
    fn unreadable_files_have_no_position() {
        let err = TemplateError {
            file: PathBuf::from("missing.yaml"),
            line: 0,
            column: 0,
            message: "cannot read the template: not found".into(),
        };
        assert_eq!(
            err.to_string(),
            "missing.yaml: cannot read the template: not found"
        );
    }
}
