//! Shim configuration: the standard Lambda environment plus a few `ESB_*`
//! settings, validated into a [`FunctionSpec`] before anything is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

/// Synchronous invocation payload limit, request side (bytes), as AWS.
pub const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;
/// Synchronous invocation payload limit, response side (bytes), as AWS.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024 + 100;
/// The longest function timeout Lambda allows.
pub const MAX_TIMEOUT_SECONDS: u64 = 900;

/// Command line and environment of `esb-runtime`.
///
/// Everything after the options is the function's command: for `python3.x`
/// the handler (as the CMD of AWS's base images), for `provided*` extra
/// arguments to `bootstrap`, for `image` the program to run.
#[derive(Debug, Clone, Parser)]
#[command(name = "esb-runtime", version, about)]
pub struct Config {
    /// Address of the RIE-compatible invoke endpoint.
    #[arg(long, env = "ESB_INVOKE_ADDR", default_value = "0.0.0.0:8080")]
    pub invoke_addr: SocketAddr,

    /// Address of the Lambda Runtime API offered to the language runtime.
    #[arg(long, env = "ESB_RUNTIME_API_ADDR", default_value = "127.0.0.1:9001")]
    pub runtime_api_addr: SocketAddr,

    /// Lambda runtime identifier: python3.x, provided, provided.al2,
    /// provided.al2023 or image.
    #[arg(long, env = "ESB_FUNCTION_RUNTIME")]
    pub runtime: Option<String>,

    /// The function handler (`module.function` for Python).
    #[arg(long, env = "_HANDLER")]
    pub handler: Option<String>,

    #[arg(long, env = "AWS_LAMBDA_FUNCTION_NAME", default_value = "function")]
    pub function_name: String,

    #[arg(long, env = "AWS_LAMBDA_FUNCTION_VERSION", default_value = "$LATEST")]
    pub function_version: String,

    /// Memory size in MB (reported in REPORT lines; the container limit is
    /// enforced by the agent).
    #[arg(long, env = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", default_value_t = 128)]
    pub memory_size: u32,

    /// Function timeout in seconds (1..=900).
    #[arg(long, env = "AWS_LAMBDA_FUNCTION_TIMEOUT", default_value_t = 3)]
    pub timeout: u64,

    /// How long the runtime may take to reach its first `next` call.
    #[arg(long, env = "ESB_INIT_TIMEOUT_SECONDS", default_value_t = 10)]
    pub init_timeout: u64,

    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,

    #[arg(long, env = "ESB_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,

    #[arg(long, env = "LAMBDA_TASK_ROOT", default_value = "/var/task")]
    pub task_root: PathBuf,

    #[arg(long, env = "LAMBDA_RUNTIME_DIR", default_value = "/var/runtime")]
    pub runtime_dir: PathBuf,

    /// Python interpreter used for python3.x runtimes.
    #[arg(long, env = "ESB_PYTHON", default_value = "python3")]
    pub python: String,

    /// VictoriaLogs base URL; function output is shipped to
    /// `<url>/insert/jsonline` when set.
    #[arg(long, env = "ESB_LOGS_URL")]
    pub logs_url: Option<String>,

    /// Format of the shim's own diagnostics on stderr: text or json.
    #[arg(long, env = "ESB_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// The function command (see above).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub use esb_contracts::service::LogFormat;

/// A configuration value the shim cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("function timeout must be between 1 and {MAX_TIMEOUT_SECONDS} seconds, got {0}")]
    Timeout(u64),
    #[error("init timeout must be at least 1 second")]
    InitTimeout,
    #[error("memory size must be between 128 and 10240 MB, got {0}")]
    MemorySize(u32),
    #[error("function name {0:?} is not a valid Lambda function name")]
    FunctionName(String),
    #[error("logs url {0:?} must start with http://")]
    LogsUrl(String),
}

/// The validated description of the function this shim serves.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub version: String,
    pub memory_mb: u32,
    pub timeout: Duration,
    pub init_timeout: Duration,
    pub region: String,
    pub account_id: String,
    pub task_root: PathBuf,
    /// Variables the runtime process gets on top of the shim's own
    /// environment (for embedders running several shims in one process).
    pub environment: Vec<(String, String)>,
    /// How to start the language runtime, or why it cannot be started.
    /// A bad runtime or handler does not stop the shim: every invocation is
    /// answered with the AWS-shaped init error instead.
    pub launch: Result<Launch, LaunchError>,
}

impl FunctionSpec {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account_id, self.name
        )
    }
}

/// The runtime process to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
    pub handler: String,
    /// `AWS_EXECUTION_ENV` value, when the runtime is a managed one.
    pub execution_env: Option<String>,
}

/// Why the language runtime cannot be started; reported per invocation.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LaunchError {
    #[error("unknown runtime {0:?}: expected python3.x, provided, provided.al2, provided.al2023 or image")]
    UnknownRuntime(String),
    #[error("no runtime configured: set ESB_FUNCTION_RUNTIME or give a command to run")]
    NoRuntime,
    #[error("no handler configured: set _HANDLER or the image CMD")]
    NoHandler,
    #[error("Couldn't find valid bootstrap(s): [{}]", .0.join(" "))]
    NoBootstrap(Vec<String>),
}

impl Config {
    pub fn validate(self) -> Result<FunctionSpec, ConfigError> {
        if self.timeout == 0 || self.timeout > MAX_TIMEOUT_SECONDS {
            return Err(ConfigError::Timeout(self.timeout));
        }
        if self.init_timeout == 0 {
            return Err(ConfigError::InitTimeout);
        }
        if !(128..=10240).contains(&self.memory_size) {
            return Err(ConfigError::MemorySize(self.memory_size));
        }
        if !valid_function_name(&self.function_name) {
            return Err(ConfigError::FunctionName(self.function_name));
        }
        if let Some(url) = &self.logs_url {
            if !url.starts_with("http://") {
                return Err(ConfigError::LogsUrl(url.clone()));
            }
        }
        let launch = resolve_launch(
            self.runtime.as_deref(),
            self.handler.as_deref(),
            &self.command,
            &self.python,
            &[
                self.task_root.join("bootstrap"),
                PathBuf::from("/opt/bootstrap"),
                self.runtime_dir.join("bootstrap"),
            ],
        );
        Ok(FunctionSpec {
            name: self.function_name,
            version: self.function_version,
            memory_mb: self.memory_size,
            timeout: Duration::from_secs(self.timeout),
            init_timeout: Duration::from_secs(self.init_timeout),
            region: self.region,
            account_id: self.account_id,
            task_root: self.task_root,
            environment: Vec::new(),
            launch,
        })
    }
}

fn valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 140
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Decides what process runs the function, as AWS's base images do.
pub fn resolve_launch(
    runtime: Option<&str>,
    handler: Option<&str>,
    command: &[String],
    python: &str,
    bootstraps: &[PathBuf],
) -> Result<Launch, LaunchError> {
    let handler_from = |command: &[String]| {
        command
            .first()
            .map(String::as_str)
            .or(handler)
            .filter(|h| !h.trim().is_empty())
            .map(str::to_owned)
    };
    match runtime.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) if is_python(r) => {
            let handler = handler_from(command).ok_or(LaunchError::NoHandler)?;
            Ok(Launch {
                program: python.to_owned(),
                args: vec!["-m".into(), "awslambdaric".into(), handler.clone()],
                handler,
                execution_env: Some(format!("AWS_Lambda_{r}")),
            })
        }
        Some(r @ ("provided" | "provided.al2" | "provided.al2023")) => {
            let bootstrap = bootstraps
                .iter()
                .find(|p| is_executable(p))
                .ok_or_else(|| {
                    LaunchError::NoBootstrap(
                        bootstraps.iter().map(|p| p.display().to_string()).collect(),
                    )
                })?;
            Ok(Launch {
                program: bootstrap.display().to_string(),
                args: command.to_vec(),
                handler: handler.unwrap_or_default().to_owned(),
                execution_env: Some(format!("AWS_Lambda_{r}")),
            })
        }
        Some("image") | None => {
            let (program, args) = command.split_first().ok_or(if runtime.is_some() {
                LaunchError::NoHandler
            } else {
                LaunchError::NoRuntime
            })?;
            Ok(Launch {
                program: program.clone(),
                args: args.to_vec(),
                handler: handler.unwrap_or_default().to_owned(),
                execution_env: None,
            })
        }
        Some(other) => Err(LaunchError::UnknownRuntime(other.to_owned())),
    }
}

fn is_python(runtime: &str) -> bool {
    runtime
        .strip_prefix("python3.")
        .is_some_and(|minor| !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(
        runtime: Option<&str>,
        handler: Option<&str>,
        cmd: &[&str],
    ) -> Result<Launch, LaunchError> {
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        resolve_launch(
            runtime,
            handler,
            &cmd,
            "python3",
            &[PathBuf::from("/nonexistent/bootstrap")],
        )
    }

    #[test]
    fn python_takes_the_handler_from_cmd_before_the_environment() {
        let l = launch(Some("python3.11"), Some("env.handler"), &["app.handler"]).expect("launch");
        assert_eq!(l.args, ["-m", "awslambdaric", "app.handler"]);
        assert_eq!(l.execution_env.as_deref(), Some("AWS_Lambda_python3.11"));
        let l = launch(Some("python3.12"), Some("env.handler"), &[]).expect("launch");
        assert_eq!(l.handler, "env.handler");
    }

    #[test]
    fn python_without_handler_is_an_error() {
        assert_eq!(
            launch(Some("python3.11"), Some(" "), &[]),
            Err(LaunchError::NoHandler)
        );
    }

    #[test]
    fn unknown_runtimes_are_named() {
        let err = launch(Some("cobol85"), None, &[]).expect_err("unknown");
        assert!(err.to_string().contains("cobol85"));
        assert!(launch(Some("python3."), None, &["x.y"]).is_err());
        assert!(launch(Some("python2.7"), None, &["x.y"]).is_err());
    }

    #[test]
    fn provided_needs_an_executable_bootstrap() {
        let err = launch(Some("provided.al2023"), None, &[]).expect_err("no bootstrap");
        assert_eq!(
            err.to_string(),
            "Couldn't find valid bootstrap(s): [/nonexistent/bootstrap]"
        );
        let dir = std::env::temp_dir().join(format!("esb-bootstrap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("bootstrap");
        std::fs::write(&file, "#!/bin/sh\n").expect("write");
        let none = resolve_launch(
            Some("provided"),
            None,
            &[],
            "python3",
            std::slice::from_ref(&file),
        );
        assert!(none.is_err(), "a non-executable bootstrap is not valid");
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let l = resolve_launch(
            Some("provided"),
            None,
            &[],
            "python3",
            std::slice::from_ref(&file),
        )
        .expect("launch");
        assert_eq!(l.program, file.display().to_string());
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn image_runs_its_command() {
        let l = launch(None, None, &["/app/server", "--flag"]).expect("launch");
        assert_eq!(
            (l.program.as_str(), l.args.as_slice()),
            ("/app/server", &["--flag".to_string()][..])
        );
        assert_eq!(launch(None, None, &[]), Err(LaunchError::NoRuntime));
    }

    #[test]
    fn config_rejects_out_of_range_values() {
        let base = ["esb-runtime"];
        let cfg = |extra: &[&str]| Config::try_parse_from(base.iter().chain(extra)).expect("parse");
        assert!(matches!(
            cfg(&["--timeout", "901"]).validate(),
            Err(ConfigError::Timeout(901))
        ));
        assert!(matches!(
            cfg(&["--timeout", "0"]).validate(),
            Err(ConfigError::Timeout(0))
        ));
        assert!(matches!(
            cfg(&["--memory-size", "64"]).validate(),
            Err(ConfigError::MemorySize(64))
        ));
        assert!(matches!(
            cfg(&["--function-name", "a b"]).validate(),
            Err(ConfigError::FunctionName(_))
        ));
        let spec = cfg(&["--timeout", "900", "--", "python3", "-c", "pass"])
            .validate()
            .expect("valid");
        assert_eq!(spec.timeout, Duration::from_secs(900));
        assert_eq!(
            spec.arn(),
            "arn:aws:lambda:us-east-1:000000000000:function:function"
        );
    }
}
