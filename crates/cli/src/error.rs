//! Every way a command fails, and the exit code each one means (sysexits):
//! scripts tell a bad template from a missing daemon from a failed function.

use std::path::PathBuf;

use crate::sam::TemplateError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The template is malformed or asks for something ESB cannot run.
    #[error("{0}")]
    Template(#[from] TemplateError),
    /// A bad argument or setting.
    #[error("{0}")]
    Usage(String),
    /// Docker, an image, a port or another prerequisite is not available.
    #[error("{0}")]
    Unavailable(String),
    /// The box is not running.
    #[error("box {project:?} is not running (start it with `esb up`)")]
    NotRunning { project: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A step failed (a build, compose, a request to the box).
    #[error("{0}")]
    Failed(String),
    /// The function ran and returned an error (esb invoke).
    #[error("function {function} failed: {error_type}")]
    Function {
        function: String,
        error_type: String,
    },
}

impl CliError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> CliError {
        CliError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn read(path: &std::path::Path, source: std::io::Error) -> CliError {
        CliError::io(format!("cannot read {}", path.display()), source)
    }

    pub fn write(path: &std::path::Path, source: std::io::Error) -> CliError {
        CliError::io(format!("cannot write {}", path.display()), source)
    }

    /// The process exit code (sysexits.h where one fits).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) | CliError::Function { .. } => 1,
            CliError::NotRunning { .. } => 3,
            CliError::Usage(_) => 64,
            CliError::Template(_) => 65,
            CliError::Unavailable(_) => 69,
            CliError::Io { .. } => 74,
        }
    }
}

/// A file the command needs that is not there.
pub fn missing(path: PathBuf, hint: &str) -> CliError {
    CliError::Usage(format!("{} does not exist: {hint}", path.display()))
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
