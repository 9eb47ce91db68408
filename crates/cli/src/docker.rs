//! The Docker engine, through the `docker` CLI the user already has (and its
//! Compose plugin): the same engine, contexts and configuration they use.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::error::{CliError, Result};

/// Labels the agent puts on worker containers.
pub const LABEL_STACK: &str = "esb.stack";
pub const LABEL_FUNCTION: &str = "esb.function";

pub struct Docker;

impl Docker {
    /// Fails with a one-line error when there is no `docker` or no daemon.
    pub fn connect() -> Result<Docker> {
        let out = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                CliError::Unavailable(format!(
                    "cannot run `docker` ({e}): install Docker and put it on PATH"
                ))
            })?;
        if !out.status.success() {
            let host = std::env::var("DOCKER_HOST")
                .unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
            return Err(CliError::Unavailable(format!(
                "cannot reach the Docker daemon at {host}: is dockerd running? ({})",
                last_line(&out.stderr)
            )));
        }
        Ok(Docker)
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new("docker");
        c.stdin(Stdio::null());
        c
    }

    /// Run `docker args...`, capturing its output; an error names the command.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(|e| CliError::io("cannot run docker", e))?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(CliError::Failed(format!(
                "`docker {}` failed: {}",
                args.join(" "),
                last_line(&out.stderr)
            )))
        }
    }

    pub fn image_id(&self, image: &str) -> Option<String> {
        let out = self
            .command()
            .args(["image", "inspect", "--format", "{{.Id}}", image])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn image_exists(&self, image: &str) -> bool {
        self.image_id(image).is_some()
    }

    /// `docker build` of `context`, showing the build's output only when it
    /// fails.
    pub fn build(
        &self,
        context: &Path,
        dockerfile: &Path,
        tag: &str,
        target: Option<&str>,
        build_args: &[(String, String)],
        labels: &[(String, String)],
    ) -> Result<()> {
        let mut cmd = self.command();
        // The classic builder needs no buildx plugin and never resolves
        // FROM images from a registry.
        cmd.env("DOCKER_BUILDKIT", "0")
            .arg("build")
            .arg("--quiet")
            .arg("-f")
            .arg(dockerfile)
            .args(["-t", tag]);
        if let Some(target) = target {
            cmd.args(["--target", target]);
        }
        for (k, v) in build_args {
            cmd.arg("--build-arg").arg(format!("{k}={v}"));
        }
        for (k, v) in labels {
            cmd.arg("--label").arg(format!("{k}={v}"));
        }
        cmd.arg(context);
        let out = cmd
            .output()
            .map_err(|e| CliError::io("cannot run docker build", e))?;
        if out.status.success() {
            return Ok(());
        }
        let log = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        Err(CliError::Failed(format!(
            "docker build of {tag} failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )))
    }

    /// Ids of the containers (running or not) carrying every label.
    pub fn containers(&self, labels: &[(&str, &str)]) -> Result<Vec<String>> {
        let mut args = vec!["ps".to_owned(), "-aq".to_owned()];
        for (k, v) in labels {
            args.push("--filter".into());
            args.push(format!("label={k}={v}"));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.output(&refs)?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// Remove the worker containers of a box (the agent creates them outside
    /// Compose).
    pub fn remove_workers(&self, project: &str) -> Result<usize> {
        let ids = self.containers(&[(LABEL_STACK, project)])?;
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            self.output(&args)?;
        }
        Ok(ids.len())
    }
}

pub fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no output")
        .to_owned()
}
