//! The gateway's configuration, validated before anything is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::auth::{AuthConfig, UserConfig};
use crate::pool::PoolSettings;
use crate::tls::{TlsError, TlsFiles};

#[derive(Debug, Clone, Parser)]
#[command(name = "esb-gateway", version, about = "ESB gateway")]
pub struct Config {
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

    #[arg(long, env = "ESB_AUTH_PASSWORD", hide_env_values = true)]
    pub auth_password: String,

    #[arg(long, env = "ESB_API_KEY", hide_env_values = true)]
    pub api_key: String,

    /// Secret that signs ID tokens (HS256), at least 32 bytes.
    #[arg(long, env = "ESB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,

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
    #[arg(long, env = "ESB_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
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
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Everything the gateway needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub catalog: PathBuf,
    pub tls: Option<TlsFiles>,
    pub auth: AuthConfig,
    pub pools: PoolSettings,
    pub default_max_workers: u32,
    pub stage: String,
    pub api_id: String,
    pub region: String,
    pub account_id: String,
    pub json_logs: bool,
}

impl Config {
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let invalid = |name, expected| ConfigError::Invalid { name, expected };
        if self.auth_password.len() < 8 {
            return Err(invalid("ESB_AUTH_PASSWORD", "at least 8 characters"));
        }
        if self.api_key.len() < 16 {
            return Err(invalid("ESB_API_KEY", "at least 16 characters"));
        }
        if self.jwt_secret.len() < 32 {
            return Err(invalid("ESB_JWT_SECRET", "at least 32 bytes"));
        }
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
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(invalid("ESB_LOG_FORMAT", "text or json"));
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles::read(cert, key, self.agent_ca.as_deref())?),
            (None, None) if self.agent_ca.is_some() => return Err(ConfigError::CaWithoutTls),
            (None, None) => None,
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
                    password: self.auth_password.clone(),
                    email: None,
                }],
                api_keys: vec![self.api_key.clone()],
                jwt_secret: self.jwt_secret.as_bytes().to_vec(),
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
            default_max_workers: self.default_max_workers,
            stage: self.stage.clone(),
            api_id: self.api_id.clone(),
            region: self.region.clone(),
            account_id: self.account_id.clone(),
            json_logs: self.log_format == "json",
        })
    }
}
