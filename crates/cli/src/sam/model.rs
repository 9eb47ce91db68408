//! The resolved application: what ESB runs for a template.
//!
//! Every value here is final: intrinsics are resolved, Globals merged,
//! defaults applied, paths absolute and checked to exist.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::Warning;

/// Everything ESB builds and runs from one template.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// The template as given to [`super::load`].
    pub template: PathBuf,
    pub functions: Vec<Function>,
    /// REST and HTTP APIs that at least one event routes through, including
    /// SAM's implicit `ServerlessRestApi` / `ServerlessHttpApi`.
    pub apis: Vec<Api>,
    pub buckets: Vec<Bucket>,
    pub databases: Vec<Database>,
    pub warnings: Vec<Warning>,
}

/// An `AWS::Serverless::Function`.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub logical_id: String,
    /// `FunctionName` when set, else the logical id; 1-64 of `[A-Za-z0-9_-]`.
    pub name: String,
    pub package: Package,
    pub architecture: Architecture,
    /// `Globals.Function.Environment.Variables` merged with the function's
    /// own (the function wins).
    pub environment: BTreeMap<String, String>,
    /// 1..=900, default 3.
    pub timeout_seconds: u32,
    /// 128..=10240, default 128.
    pub memory_mb: u32,
    /// `ReservedConcurrentExecutions`: the most workers at once.
    pub reserved_concurrency: Option<u32>,
    /// `ProvisionedConcurrencyConfig.ProvisionedConcurrentExecutions`: warm workers.
    pub provisioned_concurrency: Option<u32>,
    pub events: Vec<Event>,
}

/// How a function's code is shipped.
#[derive(Debug, Clone, PartialEq)]
pub enum Package {
    /// `PackageType: Zip` with `CodeUri` a local directory or `.zip` file.
    Zip {
        runtime: String,
        /// For `provided*` runtimes without a `Handler`, `bootstrap`.
        handler: String,
        code: Code,
        /// Globals' layers first, then the function's.
        layers: Vec<Layer>,
    },
    /// `InlineCode`: the source text of the handler module.
    Inline {
        runtime: String,
        handler: String,
        code: String,
        layers: Vec<Layer>,
    },
    /// `PackageType: Image`, built from `Metadata.Dockerfile` in `Metadata.DockerContext`.
    Image {
        dockerfile: PathBuf,
        context: PathBuf,
        build_args: BTreeMap<String, String>,
        /// `Metadata.DockerBuildTarget`.
        target: Option<String>,
        /// `ImageConfig.Command`.
        command: Vec<String>,
        /// `ImageConfig.EntryPoint`.
        entry_point: Vec<String>,
        /// `ImageConfig.WorkingDirectory`.
        working_directory: Option<String>,
    },
}

/// Local code: an absolute path to a directory or a `.zip` archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Dir(PathBuf),
    Zip(PathBuf),
}

impl Code {
    pub fn path(&self) -> &std::path::Path {
        match self {
            Code::Dir(p) | Code::Zip(p) => p,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    X86_64,
    Arm64,
}

impl Architecture {
    /// The Lambda spelling: `x86_64` or `arm64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }
}

/// An `AWS::Serverless::LayerVersion` or `AWS::Lambda::LayerVersion` of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub logical_id: String,
    /// `LayerName` when set, else the logical id.
    pub name: String,
    /// `ContentUri` (or `Content` given as a local path).
    pub content: Code,
    pub compatible_runtimes: Vec<String>,
    /// `Metadata.BuildMethod` (e.g. `python3.12`, `makefile`).
    pub build_method: Option<String>,
}

/// What invokes a function.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A REST API route (API Gateway v1 proxy payload).
    Api {
        /// The event's key under `Events`.
        name: String,
        /// Logical id of the API: `RestApiId`, else `ServerlessRestApi`.
        api: String,
        /// Starts with `/`; `{param}` and `{proxy+}` as in API Gateway.
        path: String,
        /// Upper case; `ANY` matches every method.
        method: String,
        /// `Auth.Authorizer: NONE` (or the API's `DefaultAuthorizer: NONE`).
        auth_none: bool,
        api_key_required: bool,
    },
    /// An HTTP API route.
    HttpApi {
        name: String,
        /// Logical id of the API: `ApiId`, else `ServerlessHttpApi`.
        api: String,
        /// `/{proxy+}` for the `$default` route.
        path: String,
        /// `ANY` for the `$default` route.
        method: String,
        auth_none: bool,
        payload_format: PayloadFormat,
    },
    /// `Schedule` and `ScheduleV2`.
    Schedule {
        name: String,
        /// `rate(...)` or `cron(...)`.
        expression: String,
        /// `Input`: JSON text, checked to parse.
        input: Option<String>,
        enabled: bool,
        /// `ScheduleExpressionTimezone` (ScheduleV2 only); UTC when absent.
        timezone: Option<String>,
    },
}

/// The event shape an HTTP API sends (`PayloadFormatVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    V1,
    V2,
}

/// An API Gateway API that routes requests to functions.
#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    pub logical_id: String,
    pub protocol: ApiProtocol,
    /// `StageName`; SAM's default for implicit APIs is `Prod` / `$default`.
    pub stage_name: String,
    pub cors: Option<Cors>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiProtocol {
    /// `AWS::Serverless::Api` (API Gateway REST, v1 payload).
    Rest,
    /// `AWS::Serverless::HttpApi`.
    Http,
}

/// CORS as the API declares it (quotes of REST `Cors` values removed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u32>,
    pub allow_credentials: bool,
}

/// An `AWS::S3::Bucket`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub logical_id: String,
    /// `BucketName` when set, else the lower-cased logical id.
    pub name: String,
    pub lifecycle: Vec<LifecycleRule>,
}

/// An expiration rule of `LifecycleConfiguration.Rules`.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleRule {
    pub id: Option<String>,
    /// `Prefix` or `Filter.Prefix`; every object when absent.
    pub prefix: Option<String>,
    pub expiration_days: u32,
    /// `Status: Enabled`.
    pub enabled: bool,
}

/// A PostgreSQL database: an Aurora PostgreSQL `AWS::RDS::DBCluster` (with
/// its instances) or a PostgreSQL `AWS::RDS::DBInstance`.
#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    pub logical_id: String,
    /// `DatabaseName` / `DBName`, else the lower-cased logical id.
    pub db_name: String,
    /// `MasterUsername`, else `app`.
    pub user: String,
    /// `MasterUserPassword`; `None` when absent, managed by RDS or a
    /// `{{resolve:...}}` dynamic reference: the CLI generates one then.
    pub password: Option<String>,
}
