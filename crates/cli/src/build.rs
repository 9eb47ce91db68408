//! `esb build`: the SAM template to function images and the box's config.
//!
//! Each function becomes one image on its runtime's base image, tagged with
//! the hash of everything that goes into it (code, layers, installed
//! requirements, the Dockerfile, the base image), so a rebuild only builds
//! what changed. The gateway's catalog (`.esb/config/gateway.json`) and the
//! resources file are written atomically; a running gateway picks them up.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use esb_gateway::catalog::{Catalog, CatalogConfig, Defaults, FunctionConfig, CATALOG_VERSION};
use esb_gateway::cors::{CorsApi, CorsConfig};
use esb_gateway::route::{PayloadFormat, RouteAuth, RouteConfig};
use esb_gateway::schedule::ScheduleConfig;
use sha2::{Digest, Sha256};

use crate::compose::{Mode, REGISTRY_HOST};
use crate::docker::Docker;
use crate::error::{CliError, Result};
use crate::project::Project;
use crate::provision::{BucketSpec, DatabaseSpec, ExpirationRule, Resources};
use crate::sam::{
    self, ApiProtocol, App, Code, Event, Function, Package, PayloadFormat as SamPayload,
};
use crate::secrets::{write_atomic, Credentials};

/// Directories never copied from a code directory into an image.
const SKIPPED_DIRS: [&str; 5] = [".esb", ".git", ".aws-sam", "__pycache__", "node_modules"];

/// Label on function images: the hash of their inputs.
const INPUT_HASH_LABEL: &str = "org.esb.input-hash";

pub struct BuildOptions {
    pub overrides: BTreeMap<String, String>,
    pub region: String,
    /// Containerd mode: the catalog names images in the box's registry.
    pub mode: Mode,
}

/// What a build did, per function.
pub struct Built {
    pub app: App,
    pub images: Vec<(String, String, bool)>,
}

pub fn build(project: &Project, docker: &Docker, options: &BuildOptions) -> Result<Built> {
    let app = sam::load(
        &project.template,
        &sam::LoadOptions {
            overrides: options.overrides.clone(),
            region: options.region.clone(),
            account_id: "000000000000".into(),
            stack_name: project.name.clone(),
        },
    )?;
    for warning in &app.warnings {
        eprintln!("warning: {warning}");
    }
    let mut credentials = Credentials::load_or_create(project)?;
    let resources = resources(&app, &mut credentials)?;
    credentials.save(project)?;

    let mut functions = Vec::new();
    let mut images = Vec::new();
    for function in &app.functions {
        let started = Instant::now();
        let (image, built) = build_function(project, docker, function)?;
        eprintln!(
            "  {:<28} {} {} ({:.1}s)",
            function.name,
            if built { "built     " } else { "up to date" },
            image,
            started.elapsed().as_secs_f64()
        );
        functions.push(function_config(
            function,
            &catalog_image(options.mode, &image),
            &resources,
        ));
        images.push((function.name.clone(), image, built));
    }
    let catalog = CatalogConfig {
        version: CATALOG_VERSION,
        routes: routes(&app),
        functions,
        schedules: schedules(&app),
    };
    // The gateway would refuse a catalog it cannot serve: refuse it here.
    Catalog::from_config(catalog.clone(), Defaults { max_workers: 10 })
        .map_err(|e| CliError::Failed(format!("the built configuration is not valid: {e}")))?;
    write_atomic(&project.resources_path(), &to_json(&resources)?, 0o600)?;
    write_atomic(&project.catalog_path(), &to_json(&catalog)?, 0o600)?;
    Ok(Built { app, images })
}

/// The image as the box's nodes name it: the local tag in docker mode, the
/// registry's copy in containerd mode.
pub fn catalog_image(mode: Mode, image: &str) -> String {
    match mode {
        Mode::Docker => image.to_owned(),
        Mode::Containerd => format!("{REGISTRY_HOST}/{image}"),
    }
}

/// Push function images to the box's registry, published on the host's
/// `port` (containerd mode). The registry serves HTTPS with the box's
/// certificate; Docker treats a registry on 127.0.0.1 as its own and does
/// not verify it. Layers the registry has are not sent again.
pub fn push(docker: &Docker, images: &[String], port: u16) -> Result<()> {
    for image in images {
        let remote = format!("127.0.0.1:{port}/{image}");
        let started = Instant::now();
        docker.output(&["tag", image, &remote])?;
        let pushed = docker.output(&["push", "--quiet", &remote]);
        // The local alias is only the push's name; the image stays.
        let _ = docker.output(&["rmi", &remote]);
        pushed?;
        eprintln!(
            "  pushed {image} to the registry ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value)
        .map_err(|e| CliError::Failed(format!("cannot encode the configuration: {e}")))
}

fn resources(app: &App, credentials: &mut Credentials) -> Result<Resources> {
    let buckets = app
        .buckets
        .iter()
        .map(|b| BucketSpec {
            name: b.name.clone(),
            lifecycle: b
                .lifecycle
                .iter()
                .map(|r| ExpirationRule {
                    id: r.id.clone(),
                    prefix: r.prefix.clone(),
                    expiration_days: r.expiration_days,
                    enabled: r.enabled,
                })
                .collect(),
        })
        .collect();
    let mut databases = Vec::new();
    for db in &app.databases {
        let password = match &db.password {
            Some(p) => p.clone(),
            None => credentials.database_user_password(&db.logical_id)?,
        };
        databases.push(DatabaseSpec {
            logical_id: db.logical_id.clone(),
            name: db.db_name.clone(),
            user: db.user.clone(),
            password,
        });
    }
    Ok(Resources { buckets, databases })
}

fn function_config(function: &Function, image: &str, resources: &Resources) -> FunctionConfig {
    let mut environment = function.environment.clone();
    if let Some(db) = resources.databases.first() {
        environment.entry("DATABASE_URL".into()).or_insert_with(|| {
            format!(
                "postgres://{}:{}@database:5432/{}",
                urlencode(&db.user),
                urlencode(&db.password),
                urlencode(&db.name)
            )
        });
    }
    let (runtime, handler, command) = match &function.package {
        Package::Zip {
            runtime, handler, ..
        }
        | Package::Inline {
            runtime, handler, ..
        } => (Some(runtime.clone()), Some(handler.clone()), Vec::new()),
        Package::Image { command, .. } => (None, None, command.clone()),
    };
    FunctionConfig {
        name: function.name.clone(),
        image: image.to_owned(),
        runtime,
        handler,
        memory_mb: function.memory_mb,
        timeout_seconds: function.timeout_seconds,
        environment,
        max_workers: function.reserved_concurrency,
        min_workers: function.provisioned_concurrency.unwrap_or(0),
        command,
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One schedule per `Schedule`/`ScheduleV2` event, named
/// `<FunctionName>-<EventName>`.
fn schedules(app: &App) -> Vec<ScheduleConfig> {
    let mut schedules = Vec::new();
    for function in &app.functions {
        for event in &function.events {
            if let Event::Schedule {
                name,
                expression,
                input,
                enabled,
                timezone,
            } = event
            {
                schedules.push(ScheduleConfig {
                    name: format!("{}-{name}", function.name),
                    function: function.name.clone(),
                    expression: expression.clone(),
                    input: input.clone(),
                    enabled: *enabled,
                    timezone: timezone.clone(),
                });
            }
        }
    }
    schedules
}

fn routes(app: &App) -> Vec<RouteConfig> {
    let mut routes = Vec::new();
    for function in &app.functions {
        for event in &function.events {
            match event {
                Event::Api {
                    api,
                    path,
                    method,
                    auth_none,
                    api_key_required,
                    ..
                } => routes.push(RouteConfig {
                    method: method.clone(),
                    path: path.clone(),
                    function: function.name.clone(),
                    payload: PayloadFormat::RestV1,
                    auth: if *auth_none {
                        RouteAuth::None
                    } else {
                        RouteAuth::Jwt
                    },
                    api_key_required: *api_key_required,
                    cors: api_cors(app, api),
                }),
                Event::HttpApi {
                    api,
                    path,
                    method,
                    auth_none,
                    payload_format,
                    ..
                } => routes.push(RouteConfig {
                    method: method.clone(),
                    path: path.clone(),
                    function: function.name.clone(),
                    payload: match payload_format {
                        SamPayload::V1 => PayloadFormat::RestV1,
                        SamPayload::V2 => PayloadFormat::HttpV2,
                    },
                    auth: if *auth_none {
                        RouteAuth::None
                    } else {
                        RouteAuth::Jwt
                    },
                    api_key_required: false,
                    cors: api_cors(app, api),
                }),
                // Written by `schedules`.
                Event::Schedule { .. } => {}
            }
        }
    }
    routes
}

/// The CORS settings of the API with logical id `api`, for its routes.
fn api_cors(app: &App, api: &str) -> Option<CorsConfig> {
    let api = app
        .apis
        .iter()
        .find(|candidate| candidate.logical_id == api)?;
    let cors = api.cors.as_ref()?;
    Some(CorsConfig {
        api: Some(match api.protocol {
            ApiProtocol::Rest => CorsApi::Rest,
            ApiProtocol::Http => CorsApi::Http,
        }),
        allow_origins: cors.allow_origins.clone(),
        allow_methods: cors.allow_methods.clone(),
        allow_headers: cors.allow_headers.clone(),
        expose_headers: cors.expose_headers.clone(),
        max_age: cors.max_age,
        allow_credentials: cors.allow_credentials,
    })
}

/// The base image of a runtime, and a note when it is an approximation.
pub fn base_image(runtime: &str) -> (&'static str, Option<String>) {
    if runtime.starts_with("python3") {
        let note = (runtime != "python3.11").then(|| {
            format!("{runtime} functions run on Python 3.11, the Python of ESB's base image")
        });
        ("esb-lambda-python:3.11", note)
    } else if runtime == "provided.al2023" || runtime == "provided" {
        ("esb-lambda-provided:al2023", None)
    } else {
        ("esb-lambda-provided:al2", None)
    }
}

/// Build (or find up to date) the image of one function: (tag, built now).
fn build_function(
    project: &Project,
    docker: &Docker,
    function: &Function,
) -> Result<(String, bool)> {
    let repo = format!(
        "{}-{}",
        project.image_prefix(),
        function.name.to_lowercase()
    );
    let ctx = project.build_dir().join(&function.name);
    match &function.package {
        Package::Image {
            dockerfile,
            context,
            build_args,
            target,
            entry_point,
            ..
        } => {
            if !entry_point.is_empty() {
                eprintln!(
                    "warning: {}: ImageConfig.EntryPoint is ignored: the ESB runtime shim is the entrypoint of every function image (build FROM an esb-lambda-* base image)",
                    function.name
                );
            }
            let mut hasher = Sha256::new();
            if let Some(target) = target {
                hasher.update(format!("target={target}\n"));
            }
            hash_tree(&mut hasher, context, context)?;
            hasher.update(std::fs::read(dockerfile).map_err(|e| CliError::read(dockerfile, e))?);
            for (k, v) in build_args {
                hasher.update(format!("{k}={v}\n"));
            }
            let hash = hex::encode(hasher.finalize());
            let tag = format!("{repo}:{}", &hash[..12]);
            if docker.image_exists(&tag) {
                return Ok((tag, false));
            }
            let args: Vec<(String, String)> = build_args.clone().into_iter().collect();
            docker.build(
                context,
                dockerfile,
                &tag,
                target.as_deref(),
                &args,
                &[(INPUT_HASH_LABEL.into(), hash)],
            )?;
            Ok((tag, true))
        }
        Package::Zip { runtime, .. } | Package::Inline { runtime, .. } => {
            let (base, note) = base_image(runtime);
            if let Some(note) = note {
                eprintln!("warning: {}: {note}", function.name);
            }
            let base_id = docker.image_id(base).ok_or_else(|| {
                CliError::Unavailable(format!(
                    "function {} needs the base image {base}, which is not present: build it with images/build.sh from the ESB repository",
                    function.name
                ))
            })?;
            let dockerfile = zip_dockerfile(base, function);
            let mut hasher = Sha256::new();
            hasher.update(&base_id);
            hasher.update(&dockerfile);
            hash_sources(&mut hasher, function)?;
            let hash = hex::encode(hasher.finalize());
            let tag = format!("{repo}:{}", &hash[..12]);
            if docker.image_exists(&tag) {
                return Ok((tag, false));
            }
            stage_context(project, &ctx, function, &dockerfile)?;
            docker.build(
                &ctx,
                &ctx.join("Dockerfile"),
                &tag,
                None,
                &[],
                &[(INPUT_HASH_LABEL.into(), hash)],
            )?;
            Ok((tag, true))
        }
    }
}

fn zip_dockerfile(base: &str, function: &Function) -> String {
    let mut d =
        format!("FROM {base}\nCOPY layers/ /opt/\nCOPY deps/ /var/task/\nCOPY code/ /var/task/\n");
    if let Package::Zip { handler, .. } | Package::Inline { handler, .. } = &function.package {
        d.push_str(&format!(
            "CMD [{}]\n",
            serde_json::Value::from(handler.as_str())
        ));
    }
    d
}

/// Hash what goes into a zip-packaged function: code, layers, requirements.
fn hash_sources(hasher: &mut Sha256, function: &Function) -> Result<()> {
    match &function.package {
        Package::Zip { code, layers, .. } => {
            hasher.update(b"code\0");
            hash_path(hasher, code.path())?;
            hash_layers(hasher, layers)?;
        }
        Package::Inline { code, layers, .. } => {
            hasher.update(code.as_bytes());
            hash_layers(hasher, layers)?;
        }
        Package::Image { .. } => {}
    }
    Ok(())
}

fn hash_layers(hasher: &mut Sha256, layers: &[sam::Layer]) -> Result<()> {
    for layer in layers {
        hasher.update(b"layer\0");
        hash_path(hasher, layer.content.path())?;
    }
    Ok(())
}

fn hash_path(hasher: &mut Sha256, path: &Path) -> Result<()> {
    if path.is_dir() {
        hash_tree(hasher, path, path)
    } else {
        hasher.update(std::fs::read(path).map_err(|e| CliError::read(path, e))?);
        Ok(())
    }
}

/// Names, executable bits and contents of every file under `dir`, in order.
fn hash_tree(hasher: &mut Sha256, root: &Path, dir: &Path) -> Result<()> {
    for entry in sorted_entries(dir)? {
        let path = entry.path();
        let name = entry.file_name();
        let meta = std::fs::metadata(&path).map_err(|e| CliError::read(&path, e))?;
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if meta.is_dir() {
            if SKIPPED_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            hash_tree(hasher, root, &path)?;
        } else if meta.is_file() {
            hasher.update(rel.as_bytes());
            hasher.update([0, u8::from(meta.permissions().mode() & 0o111 != 0)]);
            let mut file = std::fs::File::open(&path).map_err(|e| CliError::read(&path, e))?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf).map_err(|e| CliError::read(&path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| CliError::read(dir, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| CliError::read(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Lay out the build context: code/, layers/, deps/ (requirements), Dockerfile.
fn stage_context(
    project: &Project,
    ctx: &Path,
    function: &Function,
    dockerfile: &str,
) -> Result<()> {
    if ctx.exists() {
        std::fs::remove_dir_all(ctx).map_err(|e| CliError::write(ctx, e))?;
    }
    for d in ["code", "layers", "deps"] {
        std::fs::create_dir_all(ctx.join(d)).map_err(|e| CliError::write(ctx, e))?;
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile).map_err(|e| CliError::write(ctx, e))?;
    match &function.package {
        Package::Zip {
            runtime,
            code,
            layers,
            ..
        } => {
            place(code, &ctx.join("code"))?;
            for layer in layers {
                place(&layer.content, &ctx.join("layers"))?;
            }
            if runtime.starts_with("python") {
                let requirements = ctx.join("code/requirements.txt");
                if requirements.is_file() {
                    install_requirements(project, function, &requirements, &ctx.join("deps"))?;
                }
            } else if runtime.starts_with("provided") {
                let bootstrap = ctx.join("code/bootstrap");
                let executable = std::fs::metadata(&bootstrap)
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false);
                if !executable {
                    return Err(CliError::Usage(format!(
                        "function {}: {} has no executable `bootstrap` (a {runtime} function's CodeUri must contain one)",
                        function.name,
                        code.path().display()
                    )));
                }
            }
        }
        Package::Inline { code, layers, .. } => {
            std::fs::write(ctx.join("code/index.py"), code).map_err(|e| CliError::write(ctx, e))?;
            for layer in layers {
                place(&layer.content, &ctx.join("layers"))?;
            }
        }
        Package::Image { .. } => {}
    }
    Ok(())
}

/// Copy a directory's content, or extract a .zip, into `dest`.
fn place(source: &Code, dest: &Path) -> Result<()> {
    match source {
        Code::Dir(dir) => copy_tree(dir, dest),
        Code::Zip(source) => extract(source, dest),
    }
}

fn extract(source: &Path, dest: &Path) -> Result<()> {
    {
        let file = std::fs::File::open(source).map_err(|e| CliError::read(source, e))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| {
            CliError::Usage(format!("{} is not a zip archive: {e}", source.display()))
        })?;
        archive
            .extract(dest)
            .map_err(|e| CliError::Failed(format!("cannot extract {}: {e}", source.display())))
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| CliError::write(to, e))?;
    for entry in sorted_entries(from)? {
        let path = entry.path();
        let name = entry.file_name();
        let meta = std::fs::metadata(&path).map_err(|e| CliError::read(&path, e))?;
        if meta.is_dir() {
            if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                copy_tree(&path, &to.join(&name))?;
            }
        } else if meta.is_file() {
            std::fs::copy(&path, to.join(&name)).map_err(|e| CliError::read(&path, e))?;
        }
    }
    Ok(())
}

/// `pip install -r requirements.txt` on the host for the image's Python and
/// platform (manylinux x86_64, CPython 3.11, wheels only), as `sam build`
/// does; cached by the file's hash.
fn install_requirements(
    project: &Project,
    function: &Function,
    requirements: &Path,
    dest: &Path,
) -> Result<()> {
    let text = std::fs::read(requirements).map_err(|e| CliError::read(requirements, e))?;
    let wanted = String::from_utf8_lossy(&text)
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    if !wanted {
        return Ok(());
    }
    let hash = hex::encode(Sha256::digest(&text));
    let cache = project.build_dir().join(".pip").join(&hash[..16]);
    if !cache.join(".complete").exists() {
        eprintln!(
            "  {:<28} pip install -r {}",
            function.name,
            requirements.display()
        );
        if cache.exists() {
            std::fs::remove_dir_all(&cache).map_err(|e| CliError::write(&cache, e))?;
        }
        let (program, mut args) = pip_command();
        args.extend(
            [
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
                "--implementation",
                "cp",
                "--python-version",
                "3.11",
                "--only-binary=:all:",
                "--platform",
                "manylinux2014_x86_64",
                "--platform",
                "manylinux_2_28_x86_64",
                "--platform",
                "manylinux_2_34_x86_64",
                "--target",
            ]
            .map(String::from),
        );
        args.push(cache.display().to_string());
        args.push("-r".into());
        args.push(requirements.display().to_string());
        let out = Command::new(&program).args(&args).output().map_err(|e| {
            CliError::Unavailable(format!(
                "function {} has a requirements.txt, and `{program}` cannot run ({e}): install pip on the host (python3-pip) or set ESB_PIP",
                function.name
            ))
        })?;
        if !out.status.success() {
            return Err(CliError::Failed(format!(
                "function {}: pip could not install {}:\n{}",
                function.name,
                requirements.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        std::fs::write(cache.join(".complete"), b"").map_err(|e| CliError::write(&cache, e))?;
    }
    copy_tree(&cache, dest)?;
    let _ = std::fs::remove_file(dest.join(".complete"));
    Ok(())
}

/// `ESB_PIP` (a command line), else `pip3`.
fn pip_command() -> (String, Vec<String>) {
    let configured = std::env::var("ESB_PIP").unwrap_or_default();
    let mut words = configured.split_whitespace().map(str::to_owned);
    match words.next() {
        Some(program) => (program, words.collect()),
        None => ("pip3".into(), Vec::new()),
    }
}

pub fn catalog_exists(project: &Project) -> bool {
    project.catalog_path().is_file()
}

/// The function names of the last build.
pub fn built_functions(project: &Project) -> Result<Vec<String>> {
    let path = project.catalog_path();
    let bytes = std::fs::read(&path).map_err(|e| CliError::read(&path, e))?;
    let catalog: CatalogConfig = serde_json::from_slice(&bytes)
        .map_err(|e| CliError::Failed(format!("{} is not valid: {e}", path.display())))?;
    Ok(catalog.functions.into_iter().map(|f| f.name).collect())
}

pub fn read_resources(project: &Project) -> Result<Resources> {
    let path = project.resources_path();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| CliError::Failed(format!("{} is not valid: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Resources::default()),
        Err(e) => Err(CliError::read(&path, e)),
    }
}

/// A path relative to the app directory, for messages.
pub fn relative(project: &Project, path: &Path) -> PathBuf {
    path.strip_prefix(&project.app_dir)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tests/fixtures/sam/full`: `Globals.Api.Cors` on the REST APIs and
    /// `Globals.HttpApi.CorsConfiguration` on the implicit HTTP API reach
    /// every route of their API, with the API's kind.
    #[test]
    fn routes_carry_their_apis_cors() {
        let template =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sam/full/template.yaml");
        let app = sam::load(
            &template,
            &sam::LoadOptions {
                region: "eu-central-1".to_owned(),
                stack_name: "shop".to_owned(),
                ..sam::LoadOptions::default()
            },
        )
        .expect("the fixture loads");
        let routes = routes(&app);
        let route = |method: &str, path: &str| {
            routes
                .iter()
                .find(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
                .unwrap_or_else(|| panic!("no route {method} {path}"))
        };

        let rest = route("GET", "/orders").cors.clone().expect("REST cors");
        assert_eq!(rest.api, Some(CorsApi::Rest));
        assert_eq!(rest.allow_origins, ["*"]);
        assert_eq!(rest.allow_methods, ["GET", "POST"]);
        assert_eq!(rest.allow_headers, ["Content-Type", "Authorization"]);
        assert_eq!(rest.max_age, Some(600));
        assert!(!rest.allow_credentials);

        let http = route("GET", "/orders/{id}")
            .cors
            .clone()
            .expect("HTTP cors");
        assert_eq!(http.api, Some(CorsApi::Http));
        assert_eq!(http.allow_methods, ["GET"]);
        assert!(http.allow_credentials);
        assert_eq!(
            http.allow_origins,
            app.apis
                .iter()
                .find(|a| a.logical_id == "ServerlessHttpApi")
                .and_then(|a| a.cors.as_ref())
                .expect("the HTTP API has CORS")
                .allow_origins
        );

        // The gateway accepts what build writes.
        let functions: Vec<serde_json::Value> = app
            .functions
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "image": "img:1"}))
            .collect();
        let json = serde_json::json!({
            "version": CATALOG_VERSION,
            "functions": functions,
            "routes": serde_json::to_value(&routes).expect("serializes"),
        });
        let again: CatalogConfig = serde_json::from_value(json).expect("reads back");
        Catalog::from_config(again, Defaults { max_workers: 10 }).expect("valid catalog");
    }

    /// `Schedule` and `ScheduleV2` events become the catalog's schedules,
    /// named `<FunctionName>-<EventName>`, and the gateway accepts them.
    #[test]
    fn schedule_events_become_catalog_schedules() {
        let template =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sam/full/template.yaml");
        let app = sam::load(&template, &sam::LoadOptions::default()).expect("the fixture loads");
        let schedules = schedules(&app);
        let find = |event: &str| {
            schedules
                .iter()
                .find(|s| s.name == format!("{}-{event}", s.function))
                .unwrap_or_else(|| panic!("no schedule for {event}: {schedules:?}"))
        };
        let nightly = find("Nightly");
        assert_eq!(nightly.expression, "cron(0 3 * * ? *)");
        assert_eq!(nightly.input.as_deref(), Some(r#"{"job": "cleanup"}"#));
        assert!(!nightly.enabled);
        assert_eq!(nightly.timezone, None);
        let every5 = find("Every5");
        assert_eq!(every5.expression, "rate(5 minutes)");
        assert_eq!(every5.timezone.as_deref(), Some("Europe/Berlin"));
        assert!(every5.enabled);
        let input: serde_json::Value =
            serde_json::from_str(every5.input.as_deref().expect("input")).expect("JSON");
        assert_eq!(input, serde_json::json!({"batch": 10}));

        let functions: Vec<serde_json::Value> = app
            .functions
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "image": "img:1"}))
            .collect();
        let json = serde_json::json!({
            "version": CATALOG_VERSION,
            "functions": functions,
            "schedules": serde_json::to_value(&schedules).expect("serializes"),
        });
        let again: CatalogConfig = serde_json::from_value(json).expect("reads back");
        let catalog = Catalog::from_config(again, Defaults { max_workers: 10 }).expect("valid");
        assert_eq!(catalog.schedules.len(), schedules.len());
    }
}
