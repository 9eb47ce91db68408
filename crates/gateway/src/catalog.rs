//! The catalog: the functions and routes the gateway serves, read from the
//! versioned file `esb build` writes (`.esb/gateway.json`), validated as a
//! whole, and reloaded when the file changes.
//!
//! ```json
//! {
//!   "version": 1,
//!   "functions": [{
//!     "name": "hello", "image": "esb-app-hello:abc123", "runtime": "python3.11",
//!     "handler": "app.handler", "memory_mb": 128, "timeout_seconds": 3,
//!     "environment": {"TABLE": "items"}, "max_workers": 10, "min_workers": 0
//!   }],
//!   "routes": [{"method": "GET", "path": "/hello/{name}", "function": "hello",
//!               "payload": "rest_v1", "auth": "none"}],
//!   "schedules": [{"name": "hello-Nightly", "function": "hello",
//!                  "expression": "cron(0 3 * * ? *)", "input": null,
//!                  "enabled": true, "timezone": "Europe/Paris"}]
//! }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::route::{RouteConfig, RouteError, RouteTable};
use crate::schedule::{Schedule, ScheduleConfig};

/// The catalog file format version this gateway reads.
pub const CATALOG_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    pub version: u32,
    #[serde(default)]
    pub functions: Vec<FunctionConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// SAM `Schedule`/`ScheduleV2` events (absent in older catalogs).
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub runtime: Option<String>,
    #[serde(default)]
    pub handler: Option<String>,
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// ReservedConcurrentExecutions; the gateway default when absent.
    #[serde(default)]
    pub max_workers: Option<u32>,
    /// ProvisionedConcurrency: workers kept warm.
    #[serde(default)]
    pub min_workers: u32,
    /// Overrides the image CMD (ImageConfig.Command).
    #[serde(default)]
    pub command: Vec<String>,
}

fn default_memory() -> u32 {
    128
}

fn default_timeout() -> u32 {
    3
}

/// A validated function.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub name: String,
    pub image: String,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub memory_mb: u32,
    pub timeout: Duration,
    pub environment: BTreeMap<String, String>,
    pub max_workers: u32,
    pub min_workers: u32,
    pub command: Vec<String>,
}

/// A validated catalog; swapped whole on reload.
#[derive(Debug)]
pub struct Catalog {
    pub functions: HashMap<String, Arc<Function>>,
    pub routes: RouteTable,
    pub source: CatalogConfig,
    /// SHA-256 (hex) of the catalog file as read, or of the configuration
    /// when it did not come from a file.
    pub sha256: String,
    /// Validated schedules, in catalog order.
    pub schedules: Vec<Schedule>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "catalog version {found} is not supported (this gateway reads version {CATALOG_VERSION})"
    )]
    Version { found: u32 },
    #[error("function {function:?}: {reason}")]
    Function { function: String, reason: String },
    #[error("route {method} {path} names unknown function {function:?}")]
    UnknownFunction {
        method: String,
        path: String,
        function: String,
    },
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("schedule {schedule:?}: {reason}")]
    Schedule { schedule: String, reason: String },
}

/// Limits the gateway applies where a function leaves them open.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub max_workers: u32,
}

impl Catalog {
    /// A catalog with no functions, for a gateway started before any build.
    pub fn empty(defaults: Defaults) -> Result<Catalog, CatalogError> {
        Catalog::from_config(
            CatalogConfig {
                version: CATALOG_VERSION,
                functions: Vec::new(),
                routes: Vec::new(),
                schedules: Vec::new(),
            },
            defaults,
        )
    }

    pub fn load(path: &Path, defaults: Defaults) -> Result<Catalog, CatalogError> {
        let text = std::fs::read(path).map_err(|source| CatalogError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: CatalogConfig =
            serde_json::from_slice(&text).map_err(|source| CatalogError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let mut catalog = Catalog::from_config(config, defaults)?;
        catalog.sha256 = sha256_hex(&text);
        Ok(catalog)
    }

    pub fn from_config(config: CatalogConfig, defaults: Defaults) -> Result<Catalog, CatalogError> {
        if config.version != CATALOG_VERSION {
            return Err(CatalogError::Version {
                found: config.version,
            });
        }
        let mut functions = HashMap::new();
        for f in &config.functions {
            let function = validate_function(f, defaults)?;
            if functions
                .insert(function.name.clone(), Arc::new(function))
                .is_some()
            {
                return Err(CatalogError::Function {
                    function: f.name.clone(),
                    reason: "defined twice".into(),
                });
            }
        }
        for r in &config.routes {
            if !functions.contains_key(&r.function) {
                return Err(CatalogError::UnknownFunction {
                    method: r.method.clone(),
                    path: r.path.clone(),
                    function: r.function.clone(),
                });
            }
        }
        let routes = RouteTable::new(config.routes.clone())?;
        let schedules = validate_schedules(&config.schedules, &functions)?;
        let sha256 = sha256_hex(&serde_json::to_vec(&config).unwrap_or_default());
        Ok(Catalog {
            functions,
            routes,
            source: config,
            schedules,
            sha256,
        })
    }

    pub fn function(&self, name: &str) -> Option<&Arc<Function>> {
        self.functions.get(name)
    }
}

fn validate_schedules(
    configs: &[ScheduleConfig],
    functions: &HashMap<String, Arc<Function>>,
) -> Result<Vec<Schedule>, CatalogError> {
    let mut schedules: Vec<Schedule> = Vec::with_capacity(configs.len());
    for config in configs {
        let fail = |reason: String| CatalogError::Schedule {
            schedule: config.name.clone(),
            reason,
        };
        let schedule = Schedule::parse(config).map_err(|e| fail(e.to_string()))?;
        if !functions.contains_key(&schedule.function) {
            return Err(fail(format!("unknown function {:?}", schedule.function)));
        }
        if schedules.iter().any(|s| s.name == schedule.name) {
            return Err(fail("defined twice".into()));
        }
        schedules.push(schedule);
    }
    Ok(schedules)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Lambda's rules: 1-64 letters, digits, '-' or '_'.
pub fn valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn validate_function(f: &FunctionConfig, defaults: Defaults) -> Result<Function, CatalogError> {
    let fail = |reason: String| CatalogError::Function {
        function: f.name.clone(),
        reason,
    };
    if !valid_function_name(&f.name) {
        return Err(fail(
            "the name must be 1-64 letters, digits, '-' or '_'".into(),
        ));
    }
    if f.image.trim().is_empty() {
        return Err(fail("no image".into()));
    }
    if !(128..=10240).contains(&f.memory_mb) {
        return Err(fail(format!(
            "memory_mb must be between 128 and 10240, got {}",
            f.memory_mb
        )));
    }
    if !(1..=900).contains(&f.timeout_seconds) {
        return Err(fail(format!(
            "timeout_seconds must be between 1 and 900, got {}",
            f.timeout_seconds
        )));
    }
    let max_workers = f.max_workers.unwrap_or(defaults.max_workers);
    if max_workers == 0 {
        return Err(fail("max_workers must be at least 1".into()));
    }
    if f.min_workers > max_workers {
        return Err(fail(format!(
            "min_workers ({}) exceeds max_workers ({max_workers})",
            f.min_workers
        )));
    }
    for key in f.environment.keys() {
        let valid = !key.is_empty()
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(fail(format!(
                "environment variable name {key:?} is not valid"
            )));
        }
    }
    Ok(Function {
        name: f.name.clone(),
        image: f.image.clone(),
        runtime: f.runtime.clone(),
        handler: f.handler.clone(),
        memory_mb: f.memory_mb,
        timeout: Duration::from_secs(u64::from(f.timeout_seconds)),
        environment: f.environment.clone(),
        max_workers,
        min_workers: f.min_workers,
        command: f.command.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEFAULTS: Defaults = Defaults { max_workers: 10 };

    fn catalog(v: serde_json::Value) -> Result<Catalog, CatalogError> {
        Catalog::from_config(serde_json::from_value(v).expect("shape"), DEFAULTS)
    }

    #[test]
    fn a_valid_catalog_gets_defaults() {
        let c = catalog(json!({
            "version": 1,
            "functions": [{"name": "hello", "image": "img:1"}],
            "routes": [{"method": "GET", "path": "/hello", "function": "hello", "payload": "rest_v1"}]
        }))
        .expect("valid");
        let f = c.function("hello").expect("function");
        assert_eq!(
            (f.memory_mb, f.timeout, f.max_workers, f.min_workers),
            (128, Duration::from_secs(3), 10, 0)
        );
    }

    #[test]
    fn schedules_are_validated_and_old_catalogs_still_load() {
        let c = catalog(json!({"version": 1, "functions": [{"name": "f", "image": "i"}]}))
            .expect("a catalog without schedules");
        assert!(c.schedules.is_empty());
        let schedule = |name: &str, function: &str, expression: &str| json!({"name": name, "function": function, "expression": expression});
        let with = |schedules: serde_json::Value| {
            catalog(
                json!({"version": 1, "functions": [{"name": "f", "image": "i"}], "schedules": schedules}),
            )
        };
        let c = with(json!([schedule("f-Tick", "f", "rate(1 minute)")])).expect("valid");
        assert_eq!(c.schedules[0].name, "f-Tick");
        assert!(c.schedules[0].enabled, "enabled by default");
        for (schedules, expected) in [
            (
                json!([schedule("f-Ghost", "ghost", "rate(1 minute)")]),
                "\"f-Ghost\": unknown function \"ghost\"",
            ),
            (
                json!([schedule("f-Bad", "f", "cron(0 12 * * * *)")]),
                "\"f-Bad\"",
            ),
            (
                json!([
                    schedule("f-A", "f", "rate(1 minute)"),
                    schedule("f-A", "f", "rate(2 minutes)")
                ]),
                "defined twice",
            ),
        ] {
            let err = with(schedules).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let err = catalog(json!({"version": 2})).expect_err("version");
        assert!(err.to_string().contains("version 2"));
        let err = catalog(json!({"version": 1, "functions": [{"name": "a b", "image": "i"}]}))
            .expect_err("name");
        assert!(err.to_string().contains("\"a b\""));
        let err = catalog(json!({"version": 1, "functions": [{"name": "f", "image": "i", "timeout_seconds": 901}]}))
            .expect_err("timeout");
        assert!(err.to_string().contains("901"));
        let err = catalog(json!({"version": 1, "functions": [{"name": "f", "image": "i", "min_workers": 3, "max_workers": 2}]}))
            .expect_err("min > max");
        assert!(err.to_string().contains("min_workers"));
        let err = catalog(json!({
            "version": 1, "functions": [],
            "routes": [{"method": "GET", "path": "/x", "function": "ghost", "payload": "rest_v1"}]
        }))
        .expect_err("unknown function");
        assert!(err.to_string().contains("ghost"));
        let err = serde_json::from_value::<CatalogConfig>(json!({"version": 1, "extra": true}))
            .expect_err("unknown key");
        assert!(err.to_string().contains("extra"));
    }
}
