use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use esb_cli::commands::{self, UpOptions};
use esb_cli::compose::Mode;
use esb_cli::error::{CliError, Result};
use esb_cli::project::Project;

/// ESB, the Edge Serverless Box: build a SAM app and run it as a box of
/// containers that clients call like API Gateway and Lambda.
#[derive(Parser)]
#[command(name = "esb", version, propagate_version = true)]
struct Cli {
    /// The box to act on (default: the app directory's name).
    #[arg(long, short = 'p', env = "ESB_PROJECT", global = true)]
    project_name: Option<String>,

    /// The SAM template; its directory is the app directory.
    #[arg(
        long,
        short = 't',
        env = "ESB_TEMPLATE",
        global = true,
        default_value = "template.yaml"
    )]
    template: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a SAM app (template.yaml and a function) in a directory.
    Init {
        /// Where to create it (default: the current directory).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// python3.11 or provided.al2023.
        #[arg(long, default_value = "python3.11")]
        runtime: String,
    },
    /// Build the function images and the box's configuration from the template.
    Build {
        /// Template parameter values, as Key=Value.
        #[arg(long = "parameter-overrides", value_name = "KEY=VALUE", num_args = 1..)]
        parameter_overrides: Vec<String>,
        /// docker or containerd (default: the mode of the last build or up).
        /// Containerd mode pushes the images to the box's registry when it runs.
        #[arg(long)]
        mode: Option<String>,
    },
    /// Start the box (building first when it was never built).
    Up {
        /// docker or containerd (firecracker is not available yet).
        #[arg(long, default_value = "docker")]
        mode: String,
        /// Build before starting.
        #[arg(long)]
        build: bool,
        /// Wait until the box serves requests: the agent's node is registered.
        #[arg(long)]
        wait: bool,
        /// Template parameter values for the build, as Key=Value.
        #[arg(long = "parameter-overrides", value_name = "KEY=VALUE", num_args = 1..)]
        parameter_overrides: Vec<String>,
    },
    /// Stop and remove the box's containers and network (and, with -v, its data).
    Down {
        /// Also remove the volumes: stored objects, databases.
        #[arg(short = 'v', long)]
        volumes: bool,
    },
    /// Stop the box, keeping its containers and data.
    Stop,
    /// Show the logs of a service (gateway, agent, s3-storage, database, ...)
    /// or of a function.
    Logs {
        /// A Compose service or a function name; all services when omitted.
        target: Option<String>,
        #[arg(short, long)]
        follow: bool,
        /// Lines from the end of the logs.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// The box's services, functions and workers.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Endpoints, credentials and the CA of the running box.
    Info {
        #[arg(long)]
        json: bool,
    },
    /// Invoke a function through the gateway's Lambda Invoke API.
    Invoke {
        function: String,
        /// The event, as JSON (default: {}).
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Print the invocation's log tail to stderr.
        #[arg(long)]
        log: bool,
    },
    /// Generate the box's TLS certificates if needed and print where they are.
    Certs,
    /// Print a shell completion script.
    Completion { shell: clap_complete::Shell },
    /// Print the version.
    Version,
}

fn overrides(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .flat_map(|p| p.split_whitespace())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(CliError::Usage(format!(
                "parameter override {pair:?} is not KEY=VALUE"
            ))),
        })
        .collect()
}

fn run(cli: Cli) -> Result<()> {
    let project = || Project::new(&cli.template, cli.project_name.as_deref());
    match cli.command {
        Command::Init { dir, runtime } => commands::init(&dir, &runtime),
        Command::Build {
            parameter_overrides,
            mode,
        } => {
            let project = project()?;
            let mode = match mode {
                Some(mode) => Mode::parse(&mode)?,
                None => Mode::of(&project)?,
            };
            commands::build(&project, overrides(&parameter_overrides)?, mode)
        }
        Command::Up {
            mode,
            build,
            wait,
            parameter_overrides,
        } => commands::up(
            &project()?,
            UpOptions {
                mode: Mode::parse(&mode)?,
                build,
                wait,
                overrides: overrides(&parameter_overrides)?,
            },
        ),
        Command::Down { volumes } => commands::down(&project()?, volumes),
        Command::Stop => commands::stop(&project()?),
        Command::Logs {
            target,
            follow,
            tail,
        } => esb_cli::logs::logs(&project()?, target.as_deref(), follow, tail),
        Command::Status { json } => commands::status(&project()?, json),
        Command::Info { json } => commands::info(&project()?, json),
        Command::Invoke {
            function,
            payload,
            log,
        } => commands::invoke(&project()?, &function, payload, log),
        Command::Certs => commands::certs(&project()?),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "esb", &mut std::io::stdout());
            Ok(())
        }
        Command::Version => {
            println!("esb {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esb: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
