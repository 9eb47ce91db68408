//! Command-line / environment configuration and its validated form.

use esb_contracts::service::LogFormat;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::LifecycleSettings;

/// Where the S3 endpoint listens by default.
const DEFAULT_ADDR: &str = "0.0.0.0:9000";

/// User input of the `esb-storage` binary.
#[derive(Debug, clap::Parser)]
#[command(
    name = "esb-storage",
    version,
    about = "ESB S3-compatible object store",
    after_help = "`esb-storage healthcheck` probes a running server instead: exit 0 when \
                  GET /_esb/health on ESB_STORAGE_ADDR answers 200 (the image's health check)."
)]
pub struct Config {
    /// Address the S3 endpoint listens on.
    #[arg(long, env = "ESB_STORAGE_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
    /// Directory holding buckets and objects; must exist.
    #[arg(long, env = "ESB_STORAGE_DIR", default_value = "/data")]
    pub data_dir: PathBuf,
    /// Access key id clients sign requests with (SigV4).
    #[arg(
        long,
        env = "ESB_S3_ACCESS_KEY_ID",
        default_value = "",
        hide_env_values = true
    )]
    pub access_key_id: String,
    /// Secret access key clients sign requests with (SigV4).
    #[arg(
        long,
        env = "ESB_S3_SECRET_ACCESS_KEY",
        default_value = "",
        hide_env_values = true
    )]
    pub secret_access_key: String,
    /// How often lifecycle expiration runs (e.g. `10m`, `1h`).
    #[arg(long, env = "ESB_STORAGE_LIFECYCLE_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub lifecycle_interval: Duration,
    /// Length of a lifecycle "day"; only tests shorten it.
    #[arg(long, env = "ESB_STORAGE_LIFECYCLE_DAY", default_value = "24h", value_parser = humantime::parse_duration, hide = true)]
    pub lifecycle_day: Duration,
    /// Log format: `json` (inside containers) or `text`.
    #[arg(long, env = "ESB_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// `esb-storage healthcheck`: the health check of the storage image, which
/// has no shell or curl. Exit 0 when [`crate::HEALTH_PATH`] answers 200.
#[derive(Debug, clap::Parser)]
#[command(name = "esb-storage healthcheck")]
pub struct HealthcheckConfig {
    /// Address of the running server (a 0.0.0.0 address is probed on
    /// 127.0.0.1).
    #[arg(long, env = "ESB_STORAGE_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
}

impl HealthcheckConfig {
    /// The address to probe.
    pub fn probe_addr(&self) -> SocketAddr {
        esb_contracts::health::loopback(self.addr)
    }
}

/// Invalid configuration; the binary exits with status 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("data directory {path} is not a directory")]
    DataDir {
        path: PathBuf,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("{field} must not be empty")]
    EmptyKey { field: &'static str },
    #[error("lifecycle durations must be positive")]
    ZeroDuration,
}

/// The box's S3 credentials. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
}

impl Credentials {
    /// Both keys must be non-empty.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let access_key_id = access_key_id.into();
        let secret_access_key = secret_access_key.into();
        if access_key_id.trim().is_empty() {
            return Err(ConfigError::EmptyKey {
                field: "ESB_S3_ACCESS_KEY_ID",
            });
        }
        if secret_access_key.trim().is_empty() {
            return Err(ConfigError::EmptyKey {
                field: "ESB_S3_SECRET_ACCESS_KEY",
            });
        }
        Ok(Self {
            access_key_id,
            secret_access_key,
        })
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub(crate) fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Validated settings of the storage server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Existing directory holding one sub-directory per bucket.
    pub data_dir: PathBuf,
    /// The only key pair accepted for SigV4 (headers and presigned URLs).
    pub credentials: Credentials,
    /// Lifecycle expiration timing.
    pub lifecycle: LifecycleSettings,
}

impl Config {
    /// Validates the input before anything is bound.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        match std::fs::metadata(&self.data_dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(ConfigError::DataDir {
                    path: self.data_dir.clone(),
                    source: None,
                })
            }
            Err(e) => {
                return Err(ConfigError::DataDir {
                    path: self.data_dir.clone(),
                    source: Some(e),
                })
            }
        }
        let credentials = Credentials::new(&self.access_key_id, &self.secret_access_key)?;
        if self.lifecycle_interval.is_zero() || self.lifecycle_day.is_zero() {
            return Err(ConfigError::ZeroDuration);
        }
        Ok(Settings {
            data_dir: self.data_dir.clone(),
            credentials,
            lifecycle: LifecycleSettings {
                day: self.lifecycle_day,
                sweep_interval: self.lifecycle_interval,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["esb-storage"];
        argv.extend_from_slice(args);
        Config::parse_from(argv)
    }

    #[test]
    fn valid_config_yields_settings() {
        let dir = std::env::temp_dir();
        let dir_s = dir.to_string_lossy().into_owned();
        let c = parse(&[
            "--data-dir",
            &dir_s,
            "--access-key-id",
            "AK",
            "--secret-access-key",
            "SK",
        ]);
        let s = c.validate().expect("valid");
        assert_eq!(s.data_dir, dir);
        assert_eq!(s.credentials.access_key_id(), "AK");
        assert!(
            !format!("{s:?}").contains("SK\""),
            "secret must be redacted"
        );
    }

    #[test]
    fn empty_keys_are_rejected() {
        let dir_s = std::env::temp_dir().to_string_lossy().into_owned();
        let c = parse(&[
            "--data-dir",
            &dir_s,
            "--access-key-id",
            "AK",
            "--secret-access-key",
            "",
        ]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::EmptyKey {
                field: "ESB_S3_SECRET_ACCESS_KEY"
            })
        ));
        let c = parse(&[
            "--data-dir",
            &dir_s,
            "--secret-access-key",
            "SK",
            "--access-key-id",
            " ",
        ]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::EmptyKey {
                field: "ESB_S3_ACCESS_KEY_ID"
            })
        ));
    }

    #[test]
    fn missing_data_dir_is_rejected() {
        let c = parse(&[
            "--data-dir",
            "/nonexistent/esb-storage-test",
            "--access-key-id",
            "AK",
            "--secret-access-key",
            "SK",
        ]);
        assert!(matches!(c.validate(), Err(ConfigError::DataDir { .. })));
    }

    #[test]
    fn healthcheck_probes_the_listen_address_on_loopback() {
        let c = HealthcheckConfig::parse_from(["healthcheck", "--addr", "0.0.0.0:9100"]);
        assert_eq!(c.probe_addr(), "127.0.0.1:9100".parse().expect("addr"));
        let c = HealthcheckConfig::parse_from(["healthcheck", "--addr", "10.1.2.3:9000"]);
        assert_eq!(c.probe_addr(), "10.1.2.3:9000".parse().expect("addr"));
    }

    #[test]
    fn unknown_log_format_is_rejected() {
        let err = Config::try_parse_from([
            "esb-storage",
            "--data-dir",
            "/tmp",
            "--access-key-id",
            "AK",
            "--secret-access-key",
            "SK",
            "--log-format",
            "xml",
        ])
        .expect_err("xml is no log format");
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
    }
}
