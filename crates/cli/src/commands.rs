//! The box commands: build, up, down, stop, status, info, invoke, certs, init.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::build::{self, BuildOptions};
use crate::client::GatewayClient;
use crate::compose::{self, BoxSettings, Compose, Mode, SERVICE_IMAGES};
use crate::docker::Docker;
use crate::error::{missing, CliError, Result};
use crate::project::Project;
use crate::provision;
use crate::secrets::{ensure_certs, Credentials};

pub struct UpOptions {
    pub mode: Mode,
    pub build: bool,
    pub wait: bool,
    pub overrides: BTreeMap<String, String>,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("cannot start the async runtime", e))
}

fn region() -> String {
    std::env::var("ESB_REGION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "us-east-1".into())
}

fn require_template(project: &Project) -> Result<()> {
    if project.template.is_file() {
        Ok(())
    } else {
        Err(missing(
            project.template.clone(),
            "run esb in a SAM app directory, pass -t path/to/template.yaml, or create an app with `esb init`",
        ))
    }
}

/// `esb build`: the images and the catalog for `mode`. In containerd mode the
/// images are pushed when the box's registry runs; otherwise `esb up --mode
/// containerd` pushes them.
pub fn build(project: &Project, overrides: BTreeMap<String, String>, mode: Mode) -> Result<()> {
    let built = build_images(project, overrides, mode)?;
    if mode == Mode::Containerd {
        let docker = Docker::connect()?;
        let compose = Compose::with_mode(project, mode);
        match compose.port(&docker, "registry", 5010) {
            Some(port) => push(&docker, &built, port)?,
            None => eprintln!(
                "the box's registry is not running: `esb up --mode containerd` pushes the images"
            ),
        }
    }
    Ok(())
}

fn build_images(
    project: &Project,
    overrides: BTreeMap<String, String>,
    mode: Mode,
) -> Result<build::Built> {
    require_template(project)?;
    let docker = Docker::connect()?;
    let started = Instant::now();
    eprintln!(
        "building {} ({}, {} mode)",
        project.name,
        build::relative(project, &project.template).display(),
        mode.as_str()
    );
    let built = build::build(
        project,
        &docker,
        &BuildOptions {
            overrides,
            region: region(),
            mode,
        },
    )?;
    mode.save(project)?;
    let fresh = built.images.iter().filter(|(_, _, b)| *b).count();
    eprintln!(
        "built {} function(s) ({fresh} rebuilt, {} up to date), {} bucket(s), {} database(s) in {:.1}s",
        built.images.len(),
        built.images.len() - fresh,
        built.app.buckets.len(),
        built.app.databases.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(built)
}

fn push(docker: &Docker, built: &build::Built, port: u16) -> Result<()> {
    let images: Vec<String> = built.images.iter().map(|(_, i, _)| i.clone()).collect();
    build::push(docker, &images, port)
}

pub fn up(project: &Project, options: UpOptions) -> Result<()> {
    let mode = options.mode;
    require_template(project)?;
    let docker = Docker::connect()?;
    let missing_images: Vec<&str> = SERVICE_IMAGES
        .iter()
        .chain(mode.extra_images())
        .copied()
        .filter(|i| !docker.image_exists(i))
        .collect();
    if !missing_images.is_empty() {
        return Err(CliError::Unavailable(format!(
            "the box's service images are not present ({}): build them with images/build.sh from the ESB repository",
            missing_images.join(", ")
        )));
    }
    let credentials = Credentials::load_or_create(project)?;
    ensure_certs(project)?;
    compose::materialize(project)?;
    let previous = Mode::of(project)?;
    if previous != mode && Compose::with_mode(project, previous).is_running(&docker)? {
        return Err(CliError::Usage(format!(
            "box {} is running in {} mode: `esb down` first to start it in {} mode",
            project.name,
            previous.as_str(),
            mode.as_str()
        )));
    }
    let mut compose = Compose::with_mode(project, mode);
    let running = compose.is_running(&docker)?;
    let logs_image = format!(
        "{}:{}",
        compose::VICTORIALOGS_IMAGE,
        compose::VICTORIALOGS_TAG
    );
    let logs = docker.image_exists(&logs_image);
    if !logs {
        eprintln!("logs: {logs_image} is not present; the VictoriaLogs service is skipped (esb logs reads the workers' output)");
    }
    let settings = BoxSettings::from_env(logs)?;
    if !running {
        check_ports(&settings, mode)?;
    }
    compose::write_env(project, &credentials, &settings)?;
    if logs {
        compose.profiles.push("logs");
    }
    eprintln!("starting box {} ({} mode)", project.name, mode.as_str());
    let started = Instant::now();
    let result = prepare_images(project, &docker, &compose, &options)
        .and_then(|()| compose.run(&docker, &["up", "--detach", "--wait", "--remove-orphans"]))
        .and_then(|()| provision(project, &docker, &compose, &credentials, &settings))
        .and_then(|()| {
            if options.wait {
                wait_for_node(project, &docker, &compose, &credentials)
            } else {
                Ok(())
            }
        });
    if let Err(e) = result {
        if !running {
            eprintln!("esb: the box did not start; removing what was started");
            let _ = take_down(project, &docker, &compose, false);
        }
        return Err(e);
    }
    eprintln!(
        "box {} is up in {:.1}s",
        project.name,
        started.elapsed().as_secs_f64()
    );
    print_info(&describe(project, &docker, &compose)?, false);
    Ok(())
}

/// The function images and the catalog the box starts with. Docker mode
/// builds when asked to or never built. Containerd mode builds every time
/// (incremental: up-to-date images are found, and the catalog names them in
/// the registry), starts the registry alone and pushes them there, before
/// any node looks for them.
fn prepare_images(
    project: &Project,
    docker: &Docker,
    compose: &Compose,
    options: &UpOptions,
) -> Result<()> {
    match options.mode {
        Mode::Docker => {
            if options.build
                || !build::catalog_exists(project)
                || Mode::of(project)? != Mode::Docker
            {
                build_images(project, options.overrides.clone(), Mode::Docker)?;
            }
            Ok(())
        }
        Mode::Containerd => {
            let built = build_images(project, options.overrides.clone(), Mode::Containerd)?;
            compose.run(docker, &["up", "--detach", "--wait", "registry"])?;
            let port = compose.port(docker, "registry", 5010).ok_or_else(|| {
                CliError::Failed("the registry publishes no port (see `esb logs registry`)".into())
            })?;
            push(docker, &built, port)
        }
    }
}

/// Every non-zero port must be free before anything starts.
fn check_ports(settings: &BoxSettings, mode: Mode) -> Result<()> {
    for spec in &compose::PORTS {
        if (spec.service == "victorialogs" && !settings.logs) || !spec.published_in(mode) {
            continue;
        }
        let port = settings.ports[spec.var];
        if port != 0 && TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(CliError::Unavailable(format!(
                "port {port} for {} is in use: set {} to a free port, or to 0 for any free port",
                spec.what, spec.var
            )));
        }
    }
    Ok(())
}

fn provision(
    project: &Project,
    docker: &Docker,
    compose: &Compose,
    credentials: &Credentials,
    settings: &BoxSettings,
) -> Result<()> {
    let resources = build::read_resources(project)?;
    if resources.buckets.is_empty() && resources.databases.is_empty() {
        return Ok(());
    }
    let s3 = compose
        .port(docker, "s3-storage", 9000)
        .ok_or_else(|| CliError::Failed("S3 storage publishes no port".into()))?;
    let db = compose
        .port(docker, "database", 5432)
        .ok_or_else(|| CliError::Failed("the database publishes no port".into()))?;
    runtime()?.block_on(async {
        provision::buckets(
            &format!("http://127.0.0.1:{s3}"),
            &settings.region,
            credentials,
            &resources.buckets,
        )
        .await?;
        provision::databases(
            &format!(
                "postgres://esb:{}@127.0.0.1:{db}/esb",
                credentials.database_password
            ),
            &resources.databases,
        )
        .await
    })?;
    for b in &resources.buckets {
        eprintln!(
            "  bucket   {} ({} lifecycle rule(s))",
            b.name,
            b.lifecycle.len()
        );
    }
    for d in &resources.databases {
        eprintln!("  database {} (user {})", d.name, d.user);
    }
    Ok(())
}

/// Wait until an agent has registered its node with the gateway.
fn wait_for_node(
    project: &Project,
    docker: &Docker,
    compose: &Compose,
    credentials: &Credentials,
) -> Result<()> {
    let base = gateway_url(docker, compose)?;
    let ca = read_ca(project)?;
    runtime()?.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let nodes = match GatewayClient::login(&base, &ca, credentials).await {
                Ok(client) => client.admin("nodes").await.ok(),
                Err(_) => None,
            };
            let count = nodes
                .as_ref()
                .and_then(|n| n["nodes"].as_array().map(Vec::len))
                .unwrap_or(0);
            if count > 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CliError::Failed(
                    "no agent registered with the gateway within 90s (see `esb logs agent`)".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

fn gateway_url(docker: &Docker, compose: &Compose) -> Result<String> {
    let port = compose
        .port(docker, "gateway", 8443)
        .ok_or_else(|| CliError::NotRunning {
            project: compose.project.name.clone(),
        })?;
    Ok(format!("https://127.0.0.1:{port}"))
}

fn read_ca(project: &Project) -> Result<Vec<u8>> {
    let path = project.certs_dir().join(esb_contracts::pki::files::CA_CERT);
    std::fs::read(&path).map_err(|e| CliError::read(&path, e))
}

/// Stop gateway and agent (so no worker is started meanwhile), remove the
/// workers, then the Compose project.
fn take_down(project: &Project, docker: &Docker, compose: &Compose, volumes: bool) -> Result<()> {
    let _ = compose.output(docker, &["stop", "gateway", "agent"]);
    let workers = docker.remove_workers(&project.name)?;
    if workers > 0 {
        eprintln!("removed {workers} worker container(s)");
    }
    let mut args = vec!["down", "--remove-orphans"];
    if volumes {
        args.push("--volumes");
    }
    compose.run(docker, &args)?;
    docker.remove_workers(&project.name)?;
    Ok(())
}

pub fn down(project: &Project, volumes: bool) -> Result<()> {
    let docker = Docker::connect()?;
    compose::refresh(project)?;
    let mut compose = Compose::new(project)?;
    compose.profiles.push("logs");
    take_down(project, &docker, &compose, volumes)
}

pub fn stop(project: &Project) -> Result<()> {
    let docker = Docker::connect()?;
    compose::refresh(project)?;
    let mut compose = Compose::new(project)?;
    compose.profiles.push("logs");
    let _ = compose.output(&docker, &["stop", "gateway", "agent"]);
    docker.remove_workers(&project.name)?;
    compose.run(&docker, &["stop"])
}

/// The running box, as `esb info --json` prints it.
fn describe(project: &Project, docker: &Docker, compose: &Compose) -> Result<Value> {
    if !compose.is_running(docker)? {
        return Err(CliError::NotRunning {
            project: project.name.clone(),
        });
    }
    let credentials = Credentials::load(project)?;
    let port = |service: &str, p: u16| compose.port(docker, service, p);
    let https = port("gateway", 8443).ok_or_else(|| CliError::NotRunning {
        project: project.name.clone(),
    })?;
    let http = port("gateway", 8080);
    let s3 = port("s3-storage", 9000);
    let db = port("database", 5432);
    let logs = port("victorialogs", 9428);
    let registry = match compose.mode {
        Mode::Docker => None,
        Mode::Containerd => port("registry", 5010),
    };
    let env = read_env(project);
    Ok(json!({
        "mode": compose.mode.as_str(),
        "project": project.name,
        "endpoints": {
            "gateway": format!("https://127.0.0.1:{https}"),
            "gateway_http": http.map(|p| format!("http://127.0.0.1:{p}")),
            "s3": s3.map(|p| format!("http://127.0.0.1:{p}")),
            "database": db.map(|p| format!("postgres://esb:{}@127.0.0.1:{p}/esb", credentials.database_password)),
            "logs": logs.map(|p| format!("http://127.0.0.1:{p}")),
            "registry": registry.map(|p| format!("https://127.0.0.1:{p}")),
        },
        "credentials": {
            "user": credentials.user,
            "password": credentials.password,
            "api_key": credentials.api_key,
            "access_key_id": credentials.access_key_id,
            "secret_access_key": credentials.secret_access_key,
        },
        "region": env.get("ESB_REGION").cloned().unwrap_or_else(region),
        "ca_cert": project.certs_dir().join(esb_contracts::pki::files::CA_CERT),
    }))
}

fn read_env(project: &Project) -> BTreeMap<String, String> {
    std::fs::read_to_string(project.env_path())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn print_info(info: &Value, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(info).unwrap_or_default());
        return;
    }
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let e = &info["endpoints"];
    let c = &info["credentials"];
    println!(
        "box        {} ({} mode, region {})",
        s(&info["project"]),
        s(&info["mode"]),
        s(&info["region"])
    );
    println!(
        "gateway    {}   (HTTP on the host: {})",
        s(&e["gateway"]),
        s(&e["gateway_http"])
    );
    println!("s3         {}", s(&e["s3"]));
    println!("database   {}", s(&e["database"]));
    println!("logs       {}", s(&e["logs"]));
    if !e["registry"].is_null() {
        println!("registry   {}", s(&e["registry"]));
    }
    println!("ca cert    {}", s(&info["ca_cert"]));
    println!(
        "user       {} / password in `esb info --json`",
        s(&c["user"])
    );
    println!(
        "aws keys   AWS_ACCESS_KEY_ID={}  (secret in `esb info --json`)",
        s(&c["access_key_id"])
    );
}

pub fn info(project: &Project, json: bool) -> Result<()> {
    let docker = Docker::connect()?;
    compose::refresh(project)?;
    let compose = Compose::new(project)?;
    print_info(&describe(project, &docker, &compose)?, json);
    Ok(())
}

pub fn status(project: &Project, json: bool) -> Result<()> {
    let docker = Docker::connect()?;
    compose::refresh(project)?;
    let mut compose = Compose::new(project)?;
    compose.profiles.push("logs");
    let services = compose.ps(&docker)?;
    if services.is_empty() {
        return Err(CliError::NotRunning {
            project: project.name.clone(),
        });
    }
    let credentials = Credentials::load(project)?;
    let gateway = match gateway_url(&docker, &compose) {
        Ok(base) => {
            let ca = read_ca(project)?;
            runtime()?.block_on(async {
                let client = GatewayClient::login(&base, &ca, &credentials).await?;
                Ok::<_, CliError>(json!({
                    "pools": client.admin("pools").await?["pools"],
                    "nodes": client.admin("nodes").await?["nodes"],
                    "workers": client.admin("workers").await?["workers"],
                }))
            })
        }
        Err(e) => Err(e),
    };
    let services_json: Vec<Value> = services
        .iter()
        .map(|s| json!({"service": s.service, "state": s.state, "health": s.health, "container": s.container}))
        .collect();
    if json {
        let mut out = json!({"project": project.name, "mode": compose.mode.as_str(), "services": services_json});
        match gateway {
            Ok(g) => {
                out["pools"] = g["pools"].clone();
                out["nodes"] = g["nodes"].clone();
                out["workers"] = g["workers"].clone();
            }
            Err(e) => out["gateway_error"] = Value::from(e.to_string()),
        }
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!("box {} ({} mode)", project.name, compose.mode.as_str());
    println!("  {:<14} {:<10} HEALTH", "SERVICE", "STATE");
    for s in &services {
        println!("  {:<14} {:<10} {}", s.service, s.state, s.health);
    }
    match gateway {
        Ok(g) => {
            println!(
                "  nodes: {}",
                g["nodes"].as_array().map(Vec::len).unwrap_or(0)
            );
            println!("  {:<28} POOL", "FUNCTION");
            for pool in g["pools"].as_array().into_iter().flatten() {
                let name = pool["function"].as_str().unwrap_or("?");
                let mut rest = pool.clone();
                if let Some(o) = rest.as_object_mut() {
                    o.remove("function");
                }
                println!("  {name:<28} {rest}");
            }
        }
        Err(e) => println!("  gateway: {e}"),
    }
    Ok(())
}

pub fn invoke(project: &Project, function: &str, payload: String, log: bool) -> Result<()> {
    serde_json::from_str::<Value>(&payload)
        .map_err(|e| CliError::Usage(format!("--payload is not valid JSON: {e}")))?;
    let docker = Docker::connect()?;
    compose::refresh(project)?;
    let compose = Compose::new(project)?;
    let base = gateway_url(&docker, &compose)?;
    let credentials = Credentials::load(project)?;
    let ca = read_ca(project)?;
    let result = runtime()?.block_on(async {
        let client = GatewayClient::login(&base, &ca, &credentials).await?;
        client.invoke(function, payload.into_bytes()).await
    })?;
    if log {
        if let Some(tail) = &result.log_tail {
            eprint!("{tail}");
        }
    }
    let body = String::from_utf8_lossy(&result.payload);
    if result.status >= 300 {
        return Err(CliError::Failed(format!(
            "invoke {function}: {} {body}",
            result.status
        )));
    }
    println!("{body}");
    match result.function_error {
        Some(kind) => {
            let error_type = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["errorType"].as_str().map(str::to_owned))
                .unwrap_or(kind);
            Err(CliError::Function {
                function: function.to_owned(),
                error_type,
            })
        }
        None => Ok(()),
    }
}

pub fn certs(project: &Project) -> Result<()> {
    let generated = ensure_certs(project)?;
    let dir = project.certs_dir();
    eprintln!(
        "{} {}",
        if generated { "generated" } else { "kept" },
        dir.display()
    );
    use esb_contracts::pki::files;
    for (what, name) in [
        ("CA certificate (trust this)", files::CA_CERT),
        ("gateway certificate", files::GATEWAY_CERT),
        ("agent client certificate", files::AGENT_CERT),
        ("gateway client certificate", files::CLIENT_CERT),
        ("registry certificate", files::REGISTRY_CERT),
    ] {
        println!("{:<28} {}", what, dir.join(name).display());
    }
    Ok(())
}

const INIT_TEMPLATE: &str = r#"AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: A SAM app for ESB

Globals:
  Function:
    Timeout: 10
    MemorySize: 128

Resources:
  HelloFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: hello/
      Handler: app.handler
      Runtime: RUNTIME
      Events:
        Hello:
          Type: Api
          Properties:
            Path: /hello/{name}
            Method: get
            Auth:
              Authorizer: NONE
"#;

const INIT_APP: &str = r#"import json


def handler(event, context):
    name = (event.get("pathParameters") or {}).get("name", "world")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"message": f"Hello, {name}!"}),
    }
"#;

pub fn init(dir: &Path, runtime: &str) -> Result<()> {
    if !runtime.starts_with("python3") {
        return Err(CliError::Usage(format!(
            "esb init scaffolds python3.x apps; {runtime:?} is not one (see examples/hello-rust for a provided.al2023 function)"
        )));
    }
    let template = dir.join("template.yaml");
    if template.exists() {
        return Err(CliError::Usage(format!(
            "{} already exists: esb init does not overwrite an app",
            template.display()
        )));
    }
    let write = |path: &Path, text: &str| {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CliError::write(parent, e))?;
        }
        std::fs::write(path, text).map_err(|e| CliError::write(path, e))
    };
    write(&template, &INIT_TEMPLATE.replace("RUNTIME", runtime))?;
    write(&dir.join("hello/app.py"), INIT_APP)?;
    write(&dir.join(".gitignore"), ".esb/\n")?;
    eprintln!(
        "created {} — next: `esb up --wait`, then `curl --cacert .esb/certs/ca.pem https://localhost:8443/hello/you`",
        template.display()
    );
    Ok(())
}
