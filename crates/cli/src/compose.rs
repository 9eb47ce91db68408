//! The box's Compose files, carried in the binary and materialised into
//! `.esb/`, and the `docker compose` invocations that act on one project.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::docker::{last_line, Docker};
use crate::error::{CliError, Result};
use crate::project::Project;
use crate::secrets::{write_atomic, Credentials};

/// The Compose files of DESIGN.md §1, as the repository has them.
pub const FILES: [(&str, &str); 7] = [
    (
        "docker-compose.docker.yml",
        include_str!("../../../docker-compose.docker.yml"),
    ),
    (
        "docker-compose.containerd.yml",
        include_str!("../../../docker-compose.containerd.yml"),
    ),
    (
        "compose/containerd/base.yml",
        include_str!("../../../compose/containerd/base.yml"),
    ),
    (
        "compose/containerd/worker.yml",
        include_str!("../../../compose/containerd/worker.yml"),
    ),
    (
        "compose/base.yml",
        include_str!("../../../compose/base.yml"),
    ),
    (
        "compose/worker.yml",
        include_str!("../../../compose/worker.yml"),
    ),
    (
        "compose/registry.yml",
        include_str!("../../../compose/registry.yml"),
    ),
];

/// How the box runs its workers (DESIGN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Containers on the host's Docker daemon.
    Docker,
    /// containerd tasks in the runtime-node container, on a CNI bridge;
    /// function images go through the box's registry.
    Containerd,
}

impl Mode {
    pub fn parse(text: &str) -> Result<Mode> {
        match text.trim() {
            "docker" => Ok(Mode::Docker),
            "containerd" => Ok(Mode::Containerd),
            "firecracker" => Err(CliError::Usage(
                "mode \"firecracker\" is not available in this version of esb (available: docker, containerd)".into(),
            )),
            other => Err(CliError::Usage(format!(
                "unknown mode {other:?} (available: docker, containerd)"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Docker => "docker",
            Mode::Containerd => "containerd",
        }
    }

    /// The entry file of the mode's Compose project.
    pub fn entry_file(self) -> &'static str {
        match self {
            Mode::Docker => "docker-compose.docker.yml",
            Mode::Containerd => "docker-compose.containerd.yml",
        }
    }

    /// The images the mode needs besides [`SERVICE_IMAGES`].
    pub fn extra_images(self) -> &'static [&'static str] {
        match self {
            Mode::Docker => &[],
            Mode::Containerd => &["esb-runtime-node:latest", "esb-registry:latest"],
        }
    }

    /// The mode of the project's last `build` or `up` (docker when none).
    pub fn of(project: &Project) -> Result<Mode> {
        match std::fs::read_to_string(project.mode_path()) {
            Ok(text) => Mode::parse(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", project.mode_path().display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Mode::Docker),
            Err(e) => Err(CliError::read(&project.mode_path(), e)),
        }
    }

    /// Remember the mode for the commands that follow (down, status, ...).
    pub fn save(self, project: &Project) -> Result<()> {
        write_atomic(&project.mode_path(), self.as_str().as_bytes(), 0o644)
    }
}

/// The registry's port inside the box: function images are
/// `registry:5010/<name>:<tag>` for the nodes.
pub const REGISTRY_HOST: &str = "registry:5010";

/// The upstream VictoriaLogs image; the logs service runs only when it is
/// present (nothing is ever pulled).
pub const VICTORIALOGS_IMAGE: &str = "victoriametrics/victoria-logs";
pub const VICTORIALOGS_TAG: &str = "v1.24.0-victorialogs";

/// ESB's own service images, built by `images/build.sh`.
pub const SERVICE_IMAGES: [&str; 4] = [
    "esb-gateway:latest",
    "esb-agent:latest",
    "esb-storage:latest",
    "esb-postgres:latest",
];

/// A published port: the variable that sets it, its default, and where it
/// lands in the box.
pub struct PortSpec {
    pub var: &'static str,
    pub default: u16,
    pub service: &'static str,
    pub container_port: u16,
    pub what: &'static str,
    /// Published in containerd mode only.
    pub containerd_only: bool,
}

impl PortSpec {
    pub fn published_in(&self, mode: Mode) -> bool {
        !self.containerd_only || mode == Mode::Containerd
    }
}

pub const PORTS: [PortSpec; 8] = [
    PortSpec {
        var: "ESB_PORT_GATEWAY_HTTPS",
        default: 8443,
        service: "gateway",
        container_port: 8443,
        what: "the gateway (HTTPS)",
        containerd_only: false,
    },
    PortSpec {
        var: "ESB_PORT_GATEWAY_HTTP",
        default: 8080,
        service: "gateway",
        container_port: 8080,
        what: "the gateway (HTTP)",
        containerd_only: false,
    },
    PortSpec {
        var: "ESB_PORT_GRPC",
        default: 50051,
        service: "gateway",
        container_port: 50051,
        what: "the gateway (gRPC for agents)",
        containerd_only: false,
    },
    PortSpec {
        var: "ESB_PORT_S3",
        default: 9000,
        service: "s3-storage",
        container_port: 9000,
        what: "S3 storage",
        containerd_only: false,
    },
    PortSpec {
        var: "ESB_PORT_DATABASE",
        default: 5432,
        service: "database",
        container_port: 5432,
        what: "PostgreSQL",
        containerd_only: false,
    },
    PortSpec {
        var: "ESB_PORT_LOGS",
        default: 9428,
        service: "victorialogs",
        container_port: 9428,
        what: "VictoriaLogs",
        containerd_only: false,
    },
    PortSpec {
        var: "ESB_PORT_REGISTRY",
        default: 5010,
        service: "registry",
        container_port: 5010,
        what: "the registry",
        containerd_only: true,
    },
    PortSpec {
        var: "ESB_PORT_AGENT_METRICS",
        default: 9091,
        service: "runtime-node",
        container_port: 9091,
        what: "the agent's metrics",
        containerd_only: true,
    },
];

/// The port variables as `esb up` was given them (0 = a free port).
pub fn requested_ports() -> Result<BTreeMap<&'static str, u16>> {
    let mut ports = BTreeMap::new();
    for spec in &PORTS {
        let port = match std::env::var(spec.var) {
            Ok(v) if !v.trim().is_empty() => v.trim().parse::<u16>().map_err(|_| {
                CliError::Usage(format!("{}={v:?} is not a port number (0-65535)", spec.var))
            })?,
            _ => spec.default,
        };
        ports.insert(spec.var, port);
    }
    Ok(ports)
}

/// Everything `esb up` tells Compose, written to the project's env file.
pub struct BoxSettings {
    pub ports: BTreeMap<&'static str, u16>,
    pub region: String,
    pub idle_timeout_seconds: Option<u64>,
    pub logs: bool,
}

impl BoxSettings {
    pub fn from_env(logs: bool) -> Result<BoxSettings> {
        let region = std::env::var("ESB_REGION")
            .ok()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "us-east-1".into());
        let idle_timeout_seconds = match std::env::var("ESB_IDLE_TIMEOUT_SECONDS") {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().parse::<u64>().map_err(|_| {
                CliError::Usage(format!(
                    "ESB_IDLE_TIMEOUT_SECONDS={v:?} is not a number of seconds"
                ))
            })?),
            _ => None,
        };
        Ok(BoxSettings {
            ports: requested_ports()?,
            region,
            idle_timeout_seconds,
            logs,
        })
    }
}

/// Refresh the Compose files of an app that has a `.esb/` (commands that
/// only act on a box write nothing into a directory that is not an app).
pub fn refresh(project: &Project) -> Result<()> {
    if project.state_dir.is_dir() {
        materialize(project)
    } else {
        Ok(())
    }
}

/// Write the Compose files into `.esb/`.
pub fn materialize(project: &Project) -> Result<()> {
    for (name, content) in FILES {
        let path = project.state_dir.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(content.as_bytes()) {
            write_atomic(&path, content.as_bytes(), 0o644)?;
        }
    }
    Ok(())
}

/// Write the project's env file (mode 0600: it holds the secrets).
pub fn write_env(
    project: &Project,
    credentials: &Credentials,
    settings: &BoxSettings,
) -> Result<()> {
    let mut env: Vec<(String, String)> = vec![
        ("ESB_PROJECT".into(), project.name.clone()),
        (
            "ESB_CONFIG_DIR".into(),
            project.config_dir().display().to_string(),
        ),
        (
            "ESB_CERTS_DIR".into(),
            project.certs_dir().display().to_string(),
        ),
        ("ESB_REGION".into(), settings.region.clone()),
        ("ESB_AUTH_USER".into(), credentials.user.clone()),
        ("ESB_AUTH_PASSWORD".into(), credentials.password.clone()),
        ("ESB_API_KEY".into(), credentials.api_key.clone()),
        ("ESB_JWT_SECRET".into(), credentials.jwt_secret.clone()),
        (
            "ESB_ACCESS_KEY_ID".into(),
            credentials.access_key_id.clone(),
        ),
        (
            "ESB_SECRET_ACCESS_KEY".into(),
            credentials.secret_access_key.clone(),
        ),
        (
            "ESB_DATABASE_PASSWORD".into(),
            credentials.database_password.clone(),
        ),
        (
            "ESB_LOGS_URL".into(),
            if settings.logs {
                "http://victorialogs:9428".into()
            } else {
                String::new()
            },
        ),
    ];
    if let Some(idle) = settings.idle_timeout_seconds {
        env.push(("ESB_IDLE_TIMEOUT_SECONDS".into(), idle.to_string()));
    }
    for (var, port) in &settings.ports {
        env.push(((*var).into(), port.to_string()));
    }
    let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    write_atomic(&project.env_path(), text.as_bytes(), 0o600)
}

/// `docker compose` for one project.
pub struct Compose<'a> {
    pub project: &'a Project,
    pub mode: Mode,
    pub profiles: Vec<&'static str>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServiceState {
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "State")]
    pub state: String,
    #[serde(rename = "Health", default)]
    pub health: String,
    #[serde(rename = "Name", default)]
    pub container: String,
}

impl<'a> Compose<'a> {
    /// The project in the mode it was last built or started in.
    pub fn new(project: &'a Project) -> Result<Compose<'a>> {
        Ok(Compose::with_mode(project, Mode::of(project)?))
    }

    pub fn with_mode(project: &'a Project, mode: Mode) -> Compose<'a> {
        Compose {
            project,
            mode,
            profiles: Vec::new(),
        }
    }

    pub fn command(&self, _docker: &Docker) -> Command {
        let mut c = Command::new("docker");
        c.stdin(Stdio::null());
        c.arg("compose")
            .arg("--project-name")
            .arg(&self.project.name);
        // Without the files (a box started from another directory), Compose
        // finds the project's containers by their labels.
        if self.entry_file().exists() {
            c.arg("--project-directory")
                .arg(&self.project.state_dir)
                .arg("-f")
                .arg(self.entry_file());
        }
        if self.project.env_path().exists() {
            c.arg("--env-file").arg(self.project.env_path());
        }
        for p in &self.profiles {
            c.args(["--profile", p]);
        }
        c
    }

    pub fn entry_file(&self) -> PathBuf {
        self.project.state_dir.join(self.mode.entry_file())
    }

    /// Run with the output on the terminal (progress of long steps).
    pub fn run(&self, docker: &Docker, args: &[&str]) -> Result<()> {
        let status = self
            .command(docker)
            .args(args)
            .status()
            .map_err(|e| CliError::io("cannot run docker compose", e))?;
        if status.success() {
            Ok(())
        } else {
            Err(CliError::Failed(format!(
                "`docker compose {}` failed for project {}",
                args.join(" "),
                self.project.name
            )))
        }
    }

    /// Run quietly; an error carries compose's last line.
    pub fn output(&self, docker: &Docker, args: &[&str]) -> Result<String> {
        let out = self
            .command(docker)
            .args(args)
            .output()
            .map_err(|e| CliError::io("cannot run docker compose", e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(CliError::Failed(format!(
                "`docker compose {}` failed: {}",
                args.join(" "),
                last_line(&out.stderr)
            )))
        }
    }

    /// The box's containers and their state (stopped ones too).
    pub fn ps(&self, docker: &Docker) -> Result<Vec<ServiceState>> {
        let text = self.output(docker, &["ps", "-a", "--format", "json"])?;
        let mut states = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // Compose prints one JSON object per line (older versions: an array).
            if line.trim_start().starts_with('[') {
                let list: Vec<ServiceState> = serde_json::from_str(line).map_err(|e| {
                    CliError::Failed(format!("unexpected `docker compose ps` output: {e}"))
                })?;
                states.extend(list);
            } else {
                states.push(serde_json::from_str(line).map_err(|e| {
                    CliError::Failed(format!("unexpected `docker compose ps` output: {e}"))
                })?);
            }
        }
        Ok(states)
    }

    /// Whether the gateway of this box is running.
    pub fn is_running(&self, docker: &Docker) -> Result<bool> {
        Ok(self
            .ps(docker)?
            .iter()
            .any(|s| s.service == "gateway" && s.state == "running"))
    }

    /// The host port a service's container port is published on. In
    /// containerd mode runtime-node publishes the ports of the gateway and
    /// the agent, which share its network namespace.
    pub fn port(&self, docker: &Docker, service: &str, container_port: u16) -> Option<u16> {
        let service = match (self.mode, service) {
            (Mode::Containerd, "gateway" | "agent") => "runtime-node",
            _ => service,
        };
        let out = self
            .output(docker, &["port", service, &container_port.to_string()])
            .ok()?;
        // "127.0.0.1:49153" (or "[::]:49153")
        out.lines()
            .next()?
            .rsplit(':')
            .next()?
            .trim()
            .parse()
            .ok()
            .filter(|p| *p != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(dir: &std::path::Path) -> Project {
        Project::new(&dir.join("template.yaml"), Some("t1")).expect("project")
    }

    #[test]
    fn modes_parse_and_name_their_entry_files() {
        assert_eq!(Mode::parse("docker").expect("docker"), Mode::Docker);
        assert_eq!(
            Mode::parse("containerd\n").expect("containerd"),
            Mode::Containerd
        );
        assert_eq!(
            Mode::Containerd.entry_file(),
            "docker-compose.containerd.yml"
        );
        let err = Mode::parse("firecracker").expect_err("not yet").to_string();
        assert!(err.contains("not available"), "{err}");
        let err = Mode::parse("podman").expect_err("unknown").to_string();
        assert!(err.contains("unknown mode \"podman\""), "{err}");
    }

    #[test]
    fn the_mode_is_kept_between_commands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = project(dir.path());
        assert_eq!(Mode::of(&project).expect("default"), Mode::Docker);
        Mode::Containerd.save(&project).expect("save");
        assert_eq!(Mode::of(&project).expect("saved"), Mode::Containerd);
        std::fs::write(project.mode_path(), "vm").expect("write");
        let err = Mode::of(&project).expect_err("bad file").to_string();
        assert!(err.contains("mode") && err.contains("\"vm\""), "{err}");
    }

    #[test]
    fn containerd_mode_finds_the_sidecars_ports_on_runtime_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = project(dir.path());
        let compose = Compose::with_mode(&project, Mode::Containerd);
        assert!(compose
            .entry_file()
            .ends_with(".esb/docker-compose.containerd.yml"));
        let only: Vec<&str> = PORTS
            .iter()
            .filter(|p| !p.published_in(Mode::Docker))
            .map(|p| p.var)
            .collect();
        assert_eq!(only, ["ESB_PORT_REGISTRY", "ESB_PORT_AGENT_METRICS"]);
        assert!(PORTS.iter().all(|p| p.published_in(Mode::Containerd)));
    }

    #[test]
    fn every_compose_file_an_entry_file_names_is_carried() {
        for (entry, text) in FILES
            .iter()
            .filter(|(n, _)| n.starts_with("docker-compose."))
        {
            let named: Vec<&str> = text
                .split(|c: char| c.is_whitespace() || "[],:".contains(c))
                .filter(|w| w.starts_with("compose/") && w.ends_with(".yml"))
                .collect();
            assert!(!named.is_empty(), "{entry} includes nothing");
            for path in named {
                assert!(
                    FILES.iter().any(|(n, _)| *n == path),
                    "{entry} names {path}, which esb does not carry"
                );
            }
        }
    }
}
