//! The gateway's configuration, validated before anything is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use esb_contracts::service::LogFormat;

use crate::auth::{AuthConfig, UserConfig};
use crate::pool::PoolSettings;
use crate::sigv4::AccessKey;
use crate::store::StoreConfig;
use crate::tls::{TlsError, TlsFiles};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "esb-gateway",
    version,
    about = "ESB gateway",
    // `esb-gateway healthcheck` needs none of the gateway's settings.
    subcommand_negates_reqs = true
)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The catalog file `esb build` writes (functions and routes); reloaded
    /// when it changes. A missing file means no functions yet.
    #[arg(long, env = "ESB_CATALOG", default_value = "/etc/esb/gateway.json")]
    pub catalog: PathBuf,

    /// Client HTTPS listener (needs --tls-cert and --tls-key).
    #[arg(long, env = "ESB_HTTPS_ADDR", default_value = "0.0.0.0:8443")]
    pub https_addr: SocketAddr,

    /// Plain HTTP listener (workers, compute nodes, the box network).
    #[arg(long, env = "ESB_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// gRPC listener for agents.
    #[arg(long, env = "ESB_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,

    /// The box's certificate directory: `gateway.pem`, `gateway.key` (HTTPS
    /// and gRPC) and `ca.pem` (agents' CA, mTLS). When it holds none of
    /// them, the gateway generates the box's TLS material there.
    #[arg(long, env = "ESB_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,

    /// PEM certificate (chain) of the gateway, for HTTPS and gRPC.
    #[arg(long, env = "ESB_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of the gateway.
    #[arg(long, env = "ESB_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA that signs agents' client certificates; when set, the gRPC
    /// port requires them (mTLS).
    #[arg(long, env = "ESB_AGENT_CA")]
    pub agent_ca: Option<PathBuf>,

    #[arg(long, env = "ESB_AUTH_USER", default_value = "admin")]
    pub auth_user: String,

    #[arg(
        long,
        env = "ESB_AUTH_PASSWORD",
        hide_env_values = true,
        required = true
    )]
    pub auth_password: Option<String>,

    #[arg(long, env = "ESB_API_KEY", hide_env_values = true, required = true)]
    pub api_key: Option<String>,

    /// Secret that signs ID tokens (HS256), at least 32 bytes.
    #[arg(long, env = "ESB_JWT_SECRET", hide_env_values = true, required = true)]
    pub jwt_secret: Option<String>,

    /// The box's AWS access key id: Lambda API requests signed (SigV4) with
    /// it and its secret are accepted. Without it only Bearer tokens are.
    #[arg(long, env = "ESB_ACCESS_KEY_ID")]
    pub access_key_id: Option<String>,

    #[arg(long, env = "ESB_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,

    /// PostgreSQL URL of the gateway's state (postgres://user:password@host/db);
    /// without it the state is a SQLite file in the state directory.
    #[arg(long, env = "ESB_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// How long to wait at startup for the database to accept connections.
    #[arg(long, env = "ESB_DATABASE_WAIT_SECONDS", default_value_t = 60)]
    pub database_wait_seconds: u64,

    /// Where the gateway keeps local state (`gateway.db` without a database URL).
    #[arg(long, env = "ESB_STATE_DIR", default_value = "/var/lib/esb")]
    pub state_dir: PathBuf,

    /// Idle workers beyond a function's minimum are destroyed after this.
    #[arg(long, env = "ESB_IDLE_TIMEOUT_SECONDS", default_value_t = 300)]
    pub idle_timeout_seconds: u64,

    /// Idle workers are paused after this many seconds (off when unset).
    #[arg(long, env = "ESB_PAUSE_AFTER_SECONDS")]
    pub pause_after_seconds: Option<u64>,

    /// How long a request may queue for a worker before 429.
    #[arg(long, env = "ESB_ACQUIRE_TIMEOUT_SECONDS", default_value_t = 10)]
    pub acquire_timeout_seconds: u64,

    #[arg(long, env = "ESB_WORKER_START_TIMEOUT_SECONDS", default_value_t = 60)]
    pub worker_start_timeout_seconds: u64,

    /// Max workers of a function without ReservedConcurrentExecutions.
    #[arg(long, env = "ESB_DEFAULT_MAX_WORKERS", default_value_t = 10)]
    pub default_max_workers: u32,

    #[arg(long, env = "ESB_BREAKER_THRESHOLD", default_value_t = 5)]
    pub breaker_threshold: u32,

    #[arg(long, env = "ESB_BREAKER_COOLDOWN_SECONDS", default_value_t = 10)]
    pub breaker_cooldown_seconds: u64,

    #[arg(long, env = "ESB_REGION", default_value = "us-east-1")]
    pub region: String,

    #[arg(long, env = "ESB_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,

    /// The API id in events and the token issuer (the box's stack name).
    #[arg(long, env = "ESB_API_ID", default_value = "esb")]
    pub api_id: String,

    /// API Gateway stage name in REST events.
    #[arg(long, env = "ESB_STAGE", default_value = "Prod")]
    pub stage: String,

    /// Extra environment for every worker, as NAME=value,NAME=value.
    #[arg(
        long,
        env = "ESB_WORKER_ENV",
        default_value = "",
        hide_env_values = true
    )]
    pub worker_env: String,

    /// Format of the gateway's logs: text or json.
    #[arg(long, env = "ESB_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Delays before the retries of a failed asynchronous invocation, in
    /// seconds (Lambda: two retries, after about 1 and 2 minutes).
    #[arg(long, env = "ESB_ASYNC_RETRY_DELAYS_SECONDS", default_value = "60,120")]
    pub async_retry_delays_seconds: String,

    /// Asynchronous invocations older than this are dropped as failed
    /// (Lambda's maximum event age, 6 hours).
    #[arg(long, env = "ESB_ASYNC_MAX_AGE_SECONDS", default_value_t = 21_600)]
    pub async_max_age_seconds: u64,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Probes `GET /health` on the HTTP listener (ESB_HTTP_ADDR) and exits 0
    /// when it answers 2xx, 1 otherwise: the Compose health check of the
    /// FROM-scratch image. Binds nothing and needs no other setting.
    Healthcheck,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} must be {expected}")]
    Invalid {
        name: &'static str,
        expected: &'static str,
    },
    #[error("--tls-cert and --tls-key go together")]
    HalfTls,
    #[error("--agent-ca needs --tls-cert and --tls-key")]
    CaWithoutTls,
    #[error("ESB_WORKER_ENV entry {0:?} is not NAME=value")]
    WorkerEnv(String),
    #[error("ESB_TLS_DIR cannot be combined with ESB_TLS_CERT, ESB_TLS_KEY or ESB_AGENT_CA")]
    TlsDirConflict,
    #[error("ESB_ACCESS_KEY_ID and ESB_SECRET_ACCESS_KEY go together")]
    HalfAccessKey,
    #[error(transparent)]
    Store(#[from] crate::store::StoreConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Everything the gateway needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub catalog: PathBuf,
    pub tls: Option<TlsFiles>,
    pub auth: AuthConfig,
    /// The key pair SigV4-signed Lambda API requests must use.
    pub access_key: Option<AccessKey>,
    pub store: StoreConfig,
    /// How long to wait for the database at startup.
    pub database_wait: Duration,
    pub pools: PoolSettings,
    pub default_max_workers: u32,
    pub stage: String,
    pub api_id: String,
    pub region: String,
    pub account_id: String,
    pub json_logs: bool,
    /// Retries and age limit of asynchronous invocations.
    pub async_invocations: crate::queue::AsyncSettings,
}

impl Config {
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let invalid = |name, expected| ConfigError::Invalid { name, expected };
        let auth_password = self.auth_password.clone().unwrap_or_default();
        let api_key = self.api_key.clone().unwrap_or_default();
        let jwt_secret = self.jwt_secret.clone().unwrap_or_default();
        if auth_password.len() < 8 {
            return Err(invalid("ESB_AUTH_PASSWORD", "at least 8 characters"));
        }
        if api_key.len() < 16 {
            return Err(invalid("ESB_API_KEY", "at least 16 characters"));
        }
        if jwt_secret.len() < 32 {
            return Err(invalid("ESB_JWT_SECRET", "at least 32 bytes"));
        }
        let access_key = match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => {
                // It travels in `Credential=<id>/<scope>`: no '/', ',', '='
                // or spaces.
                let id_ok = (1..=128).contains(&id.len())
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !id_ok {
                    return Err(invalid(
                        "ESB_ACCESS_KEY_ID",
                        "1 to 128 letters, digits, '-', '_' or '.'",
                    ));
                }
                let secret_ok = secret.len() >= 16 && secret.chars().all(|c| c.is_ascii_graphic());
                if !secret_ok {
                    return Err(invalid(
                        "ESB_SECRET_ACCESS_KEY",
                        "at least 16 printable characters without spaces",
                    ));
                }
                Some(AccessKey::new(id.clone(), secret.clone()))
            }
            (None, None) => None,
            _ => return Err(ConfigError::HalfAccessKey),
        };
        if self.database_wait_seconds == 0 {
            return Err(invalid("ESB_DATABASE_WAIT_SECONDS", "at least 1"));
        }
        let store = StoreConfig::new(self.database_url.as_deref(), &self.state_dir)?;
        if self.auth_user.is_empty() {
            return Err(invalid("ESB_AUTH_USER", "a user name"));
        }
        if self.idle_timeout_seconds == 0 {
            return Err(invalid("ESB_IDLE_TIMEOUT_SECONDS", "at least 1"));
        }
        if self.default_max_workers == 0 {
            return Err(invalid("ESB_DEFAULT_MAX_WORKERS", "at least 1"));
        }
        if self.breaker_threshold == 0 {
            return Err(invalid("ESB_BREAKER_THRESHOLD", "at least 1"));
        }
        let retry_delays = self
            .async_retry_delays_seconds
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| d.parse::<u64>().map(Duration::from_secs))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                invalid(
                    "ESB_ASYNC_RETRY_DELAYS_SECONDS",
                    "whole seconds separated by commas (e.g. 60,120)",
                )
            })?;
        if self.async_max_age_seconds == 0 {
            return Err(invalid("ESB_ASYNC_MAX_AGE_SECONDS", "at least 1"));
        }
        let explicit_tls =
            self.tls_cert.is_some() || self.tls_key.is_some() || self.agent_ca.is_some();
        let tls = match (&self.tls_dir, &self.tls_cert, &self.tls_key) {
            (Some(_), _, _) if explicit_tls => return Err(ConfigError::TlsDirConflict),
            // Generates the box's material when the directory has none.
            (Some(dir), _, _) => Some(TlsFiles::from_dir(dir)?),
            (None, Some(cert), Some(key)) => {
                Some(TlsFiles::read(cert, key, self.agent_ca.as_deref())?)
            }
            (None, None, None) if self.agent_ca.is_some() => return Err(ConfigError::CaWithoutTls),
            (None, None, None) => None,
            _ => return Err(ConfigError::HalfTls),
        };
        let mut worker_env = BTreeMap::new();
        for entry in self
            .worker_env
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (k, v) = entry
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    ConfigError::WorkerEnv(entry.split('=').next().unwrap_or_default().to_owned())
                })?;
            worker_env.insert(k.to_owned(), v.to_owned());
        }
        Ok(Settings {
            catalog: self.catalog.clone(),
            tls,
            auth: AuthConfig {
                users: vec![UserConfig {
                    username: self.auth_user.clone(),
                    password: auth_password,
                    email: None,
                }],
                api_keys: vec![api_key],
                jwt_secret: jwt_secret.into_bytes(),
                issuer: format!("https://esb.local/{}", self.api_id),
                audience: self.api_id.clone(),
                token_lifetime: Duration::from_secs(3600),
            },
            pools: PoolSettings {
                acquire_timeout: Duration::from_secs(self.acquire_timeout_seconds),
                idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
                pause_after: self.pause_after_seconds.map(Duration::from_secs),
                start_timeout: Duration::from_secs(self.worker_start_timeout_seconds),
                breaker_threshold: self.breaker_threshold,
                breaker_cooldown: Duration::from_secs(self.breaker_cooldown_seconds),
                region: self.region.clone(),
                account_id: self.account_id.clone(),
                worker_env,
            },
            access_key,
            store,
            database_wait: Duration::from_secs(self.database_wait_seconds),
            default_max_workers: self.default_max_workers,
            stage: self.stage.clone(),
            api_id: self.api_id.clone(),
            region: self.region.clone(),
            account_id: self.account_id.clone(),
            json_logs: self.log_format == LogFormat::Json,
            async_invocations: crate::queue::AsyncSettings {
                retry_delays,
                max_age: Duration::from_secs(self.async_max_age_seconds),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: [&str; 4] = [
        "esb-gateway",
        "--auth-password=correct horse battery",
        "--api-key=test-api-key-0123456789",
        "--jwt-secret=0123456789abcdef0123456789abcdef",
    ];

    fn parse(extra: &[&str]) -> Result<Settings, ConfigError> {
        let args: Vec<&str> = BASE.iter().chain(extra).copied().collect();
        Config::try_parse_from(args).expect("arguments").validate()
    }

    #[test]
    fn healthcheck_needs_no_secret_but_serving_does() {
        let config = Config::try_parse_from(["esb-gateway", "healthcheck"]).expect("healthcheck");
        assert!(matches!(config.command, Some(Command::Healthcheck)));
        let err = Config::try_parse_from(["esb-gateway"]).expect_err("secrets required");
        assert!(err.to_string().contains("--auth-password"), "{err}");
    }

    #[test]
    fn the_access_key_pair_is_optional_and_goes_together() {
        assert!(parse(&[]).expect("valid").access_key.is_none());
        let settings = parse(&[
            "--access-key-id=esb-dev-access-key",
            "--secret-access-key=esb-dev-secret-access-key",
        ])
        .expect("valid");
        let key = settings.access_key.expect("key");
        assert_eq!(key.access_key_id, "esb-dev-access-key");
        assert!(
            !format!("{key:?}").contains("esb-dev-secret"),
            "never shown"
        );
        let err = parse(&["--access-key-id=AKIDEXAMPLE"]).expect_err("half");
        assert!(matches!(err, ConfigError::HalfAccessKey));
        let err = parse(&[
            "--access-key-id=a/b",
            "--secret-access-key=0123456789abcdef",
        ])
        .expect_err("slash");
        assert!(err.to_string().contains("ESB_ACCESS_KEY_ID"), "{err}");
        let err = parse(&["--access-key-id=AKIDEXAMPLE", "--secret-access-key=short"])
            .expect_err("short secret");
        assert!(err.to_string().contains("ESB_SECRET_ACCESS_KEY"), "{err}");
    }

    #[test]
    fn the_store_is_postgres_with_a_url_and_sqlite_in_the_state_dir_otherwise() {
        let settings = parse(&["--state-dir=/srv/esb"]).expect("valid");
        assert_eq!(settings.store.describe(), "sqlite:/srv/esb/gateway.db");
        assert_eq!(settings.database_wait, Duration::from_secs(60));
        let settings = parse(&[
            "--database-url=postgres://esb:pw-123@database:5432/esb",
            "--database-wait-seconds=5",
        ])
        .expect("valid");
        assert_eq!(
            settings.store.describe(),
            "postgres://esb:***@database:5432/esb"
        );
        assert_eq!(settings.database_wait, Duration::from_secs(5));
        let err = parse(&["--database-url=mysql://esb:pw-123@db/esb"]).expect_err("scheme");
        assert!(!err.to_string().contains("pw-123"), "{err}");
    }

    #[test]
    fn async_retry_delays_are_a_list_of_seconds() {
        let settings = parse(&[]).expect("valid").async_invocations;
        assert_eq!(
            settings.retry_delays,
            [Duration::from_secs(60), Duration::from_secs(120)]
        );
        assert_eq!(settings.max_age, Duration::from_secs(6 * 3600));
        let settings = parse(&["--async-retry-delays-seconds=1, 2,3"]).expect("valid");
        assert_eq!(settings.async_invocations.retry_delays.len(), 3);
        let settings = parse(&["--async-retry-delays-seconds="]).expect("no retries");
        assert!(settings.async_invocations.retry_delays.is_empty());
        let err = parse(&["--async-retry-delays-seconds=1m"]).expect_err("unit");
        assert!(
            err.to_string().contains("ESB_ASYNC_RETRY_DELAYS_SECONDS"),
            "{err}"
        );
    }

    #[test]
    fn a_tls_dir_excludes_explicit_files() {
        let err = parse(&["--tls-dir=/certs", "--agent-ca=/certs/ca.pem"]).expect_err("conflict");
        assert!(matches!(err, ConfigError::TlsDirConflict), "{err}");
    }
}
