//! `esb logs`: a service's logs through Compose, or a function's output
//! (START/END/REPORT lines and everything it printed) from its workers.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::build;
use crate::compose::{self, Compose, Mode};
use crate::docker::{Docker, LABEL_FUNCTION, LABEL_STACK};
use crate::error::{CliError, Result};
use crate::project::Project;

pub const SERVICES: [&str; 7] = [
    "gateway",
    "agent",
    "s3-storage",
    "database",
    "victorialogs",
    "registry",
    "runtime-node",
];

pub fn logs(
    project: &Project,
    target: Option<&str>,
    follow: bool,
    tail: Option<usize>,
) -> Result<()> {
    let docker = Docker::connect()?;
    compose::refresh(project)?;
    let mut compose = Compose::new(project)?;
    compose.profiles.push("logs");
    let tail_arg = tail.map(|n| n.to_string());
    let mut args = vec!["logs"];
    if follow {
        args.push("--follow");
    }
    if let Some(n) = &tail_arg {
        args.extend(["--tail", n]);
    }
    match target {
        None => compose.run(&docker, &args),
        Some(service) if SERVICES.contains(&service) => {
            args.push(service);
            compose.run(&docker, &args)
        }
        Some(function) => {
            let functions = if build::catalog_exists(project) {
                build::built_functions(project)?
            } else {
                Vec::new()
            };
            if !functions.iter().any(|f| f == function) {
                return Err(CliError::Usage(format!(
                    "no service or function named {function:?} in box {} (services: {}; functions: {})",
                    project.name,
                    SERVICES.join(", "),
                    if functions.is_empty() { "none built".to_owned() } else { functions.join(", ") }
                )));
            }
            match compose.mode {
                Mode::Containerd => {
                    node_function_logs(&compose, &docker, function, follow, tail_arg.as_deref())
                }
                _ => function_logs(&docker, project, function, follow, tail_arg.as_deref()),
            }
        }
    }
}

/// Where runtime-node keeps each worker's output (the agent's
/// `ESB_NODE_STATE_DIR`, see compose/containerd/worker.yml):
/// `<dir>/<container id>/log`.
const NODE_WORKERS_DIR: &str = "/var/lib/esb-node/workers";

/// Prints the logs of the workers the filter `$FILTER` selects in
/// runtime-node's containerd, the last `$LINES` lines of each; with
/// `FOLLOW=1` keeps following them and the workers started later.
const NODE_LOGS_SCRIPT: &str = r#"
seen=" "
while :; do
  for id in $(ctr -n esb containers ls -q "$FILTER"); do
    case "$seen" in *" $id "*) continue ;; esac
    seen="$seen$id "
    if [ "$FOLLOW" = 1 ]; then
      tail -n "$LINES" -F "$DIR/$id/log" 2>/dev/null &
    else
      tail -n "$LINES" "$DIR/$id/log" 2>/dev/null
    fi
  done
  if [ "$seen" = " " ] && [ "$FOLLOW" != 1 ]; then
    echo "$FUNCTION has no workers right now: its logs appear while it has workers (invoke it)" >&2
  fi
  [ "$FOLLOW" = 1 ] || exit 0
  sleep 1
done
"#;

/// A function's output in containerd mode: its workers are containerd tasks
/// in runtime-node, each writing to a log file there, read through
/// `docker compose exec`. Following needs a terminal: a process started by
/// `exec` outlives a client that goes away, but Ctrl-C on a terminal stops it.
fn node_function_logs(
    compose: &Compose,
    docker: &Docker,
    function: &str,
    follow: bool,
    tail: Option<&str>,
) -> Result<()> {
    use std::io::IsTerminal as _;
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if follow && !tty {
        return Err(CliError::Usage(
            "`esb logs -f FUNCTION` in containerd mode needs a terminal (Ctrl-C ends it); without one, leave out -f"
                .to_owned(),
        ));
    }
    let filter = format!(
        "labels.\"{LABEL_STACK}\"==\"{}\",labels.\"{LABEL_FUNCTION}\"==\"{function}\"",
        compose.project.name
    );
    let env = [
        format!("FILTER={filter}"),
        format!("LINES={}", tail.unwrap_or("+1")),
        format!("FOLLOW={}", u8::from(follow)),
        format!("DIR={NODE_WORKERS_DIR}"),
        format!("FUNCTION={function}"),
    ];
    let mut args = vec!["exec"];
    if !tty {
        args.push("-T");
    }
    for e in &env {
        args.extend(["-e", e]);
    }
    args.extend(["runtime-node", "sh", "-c", NODE_LOGS_SCRIPT]);
    compose.run(docker, &args)
}

/// The output of a function's workers, oldest container first; with
/// `follow`, new workers join as the gateway starts them.
fn function_logs(
    docker: &Docker,
    project: &Project,
    function: &str,
    follow: bool,
    tail: Option<&str>,
) -> Result<()> {
    let labels = [
        (LABEL_STACK, project.name.as_str()),
        (LABEL_FUNCTION, function),
    ];
    let mut ids = docker.containers(&labels)?;
    // `docker ps` lists newest first.
    ids.reverse();
    if ids.is_empty() {
        eprintln!(
            "{function} has no workers right now: its logs appear while it has workers (invoke it)"
        );
    }
    if !follow {
        for id in &ids {
            let mut cmd = docker.command();
            cmd.arg("logs");
            if let Some(n) = tail {
                cmd.args(["--tail", n]);
            }
            cmd.arg(id);
            // A worker removed meanwhile is simply gone.
            let _ = cmd.status();
        }
        return Ok(());
    }
    let mut seen = std::collections::HashSet::new();
    let mut children: Vec<Child> = Vec::new();
    loop {
        for id in &ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            let mut cmd = docker.command();
            cmd.args(["logs", "--follow"]);
            if let Some(n) = tail {
                cmd.args(["--tail", n]);
            }
            cmd.arg(id)
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit());
            let child = cmd
                .spawn()
                .map_err(|e| CliError::io("cannot run docker logs", e))?;
            children.push(child);
        }
        children.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
        std::thread::sleep(Duration::from_secs(1));
        ids = docker.containers(&labels)?;
        ids.reverse();
    }
}
