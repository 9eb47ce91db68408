//! The workers' network: a CNI network list (the bridge `esb0` with
//! host-local addresses) applied by executing its plugins as the CNI spec
//! says: the command, container id, network namespace, interface and plugin
//! path in the environment, each plugin's configuration (with the list's
//! name and version, and the previous plugin's result) on stdin, the result
//! or a CNI error on stdout.
//!
//! ADD runs the plugins in order and gives the worker's IPv4 address; DEL
//! runs them in reverse and releases the address lease (host-local keys its
//! leases by container id, so DEL works after the process is gone and the
//! namespace path is empty).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

/// The interface the worker sees.
pub(super) const IFNAME: &str = "eth0";
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the network cannot be loaded or applied.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The network list file cannot be read.
    #[error("cannot read the CNI network list {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The network list is not a valid CNI network list.
    #[error("the CNI network list {path} is invalid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A plugin the list names is not in the plugin directory.
    #[error("CNI plugin {plugin:?} is not an executable file in {dir}")]
    MissingPlugin {
        /// The plugin type.
        plugin: String,
        /// The plugin directory.
        dir: PathBuf,
    },
    /// A plugin could not run.
    #[error("CNI {command} of plugin {plugin} for {container_id} could not run")]
    Exec {
        /// ADD or DEL.
        command: &'static str,
        /// The plugin type.
        plugin: String,
        /// The container.
        container_id: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A plugin failed (or timed out).
    #[error("CNI {command} of plugin {plugin} for {container_id} failed: {message}")]
    Plugin {
        /// ADD or DEL.
        command: &'static str,
        /// The plugin type.
        plugin: String,
        /// The container.
        container_id: String,
        /// The plugin's error message.
        message: String,
    },
    /// ADD gave no IPv4 address.
    #[error("CNI ADD for {container_id} gave no IPv4 address")]
    NoAddress {
        /// The container.
        container_id: String,
    },
}

/// A loaded, checked CNI network list.
#[derive(Debug, Clone)]
pub struct CniNetwork {
    name: String,
    version: String,
    plugins: Vec<Map<String, Value>>,
    bin_dir: PathBuf,
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfList {
    cni_version: String,
    name: String,
    plugins: Vec<Map<String, Value>>,
}

#[derive(Deserialize)]
struct AddResult {
    #[serde(default)]
    ips: Vec<IpConfig>,
}

#[derive(Deserialize)]
struct IpConfig {
    address: String,
}

#[derive(Deserialize)]
struct PluginError {
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

impl CniNetwork {
    /// Reads `conf_file` and checks that `bin_dir` has every plugin it
    /// names.
    pub fn load(conf_file: &Path, bin_dir: &Path) -> Result<Self, CniError> {
        let text = std::fs::read(conf_file).map_err(|source| CniError::Read {
            path: conf_file.to_owned(),
            source,
        })?;
        let invalid = |reason: String| CniError::Invalid {
            path: conf_file.to_owned(),
            reason,
        };
        let list: ConfList = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        if list.plugins.is_empty() {
            return Err(invalid("no plugins".into()));
        }
        for plugin in &list.plugins {
            let Some(kind) = plugin.get("type").and_then(Value::as_str) else {
                return Err(invalid("a plugin has no \"type\"".into()));
            };
            let file = bin_dir.join(kind);
            if !is_executable(&file) {
                return Err(CniError::MissingPlugin {
                    plugin: kind.to_owned(),
                    dir: bin_dir.to_owned(),
                });
            }
        }
        Ok(Self {
            name: list.name,
            version: list.cni_version,
            plugins: list.plugins,
            bin_dir: bin_dir.to_owned(),
            path: conf_file.to_owned(),
        })
    }

    /// The network's name (host-local keeps its leases in a directory of
    /// this name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file the network was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Attaches the namespace `netns` of `container_id`; its IPv4 address.
    pub async fn add(&self, container_id: &str, netns: &str) -> Result<Ipv4Addr, CniError> {
        let mut previous: Option<Value> = None;
        for plugin in &self.plugins {
            let result = self
                .exec("ADD", plugin, container_id, netns, previous.take())
                .await?;
            previous = Some(result);
        }
        let result: AddResult = previous
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| CniError::NoAddress {
                container_id: container_id.to_owned(),
            })?;
        result
            .ips
            .iter()
            .find_map(|ip| ip.address.split('/').next()?.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| CniError::NoAddress {
                container_id: container_id.to_owned(),
            })
    }

    /// Detaches `container_id` and releases its address; `netns` may be
    /// empty once the process is gone. Every plugin runs even when one
    /// fails; the first failure is returned.
    pub async fn del(&self, container_id: &str, netns: &str) -> Result<(), CniError> {
        let mut first_error = None;
        for plugin in self.plugins.iter().rev() {
            if let Err(e) = self.exec("DEL", plugin, container_id, netns, None).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn exec(
        &self,
        command: &'static str,
        plugin: &Map<String, Value>,
        container_id: &str,
        netns: &str,
        previous: Option<Value>,
    ) -> Result<Value, CniError> {
        let kind = plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut config = plugin.clone();
        config.insert("name".into(), Value::String(self.name.clone()));
        config.insert("cniVersion".into(), Value::String(self.version.clone()));
        if let Some(previous) = previous {
            config.insert("prevResult".into(), previous);
        }
        let stdin = serde_json::to_vec(&config).unwrap_or_default();
        let exec_err = |source| CniError::Exec {
            command,
            plugin: kind.clone(),
            container_id: container_id.to_owned(),
            source,
        };
        let mut child = tokio::process::Command::new(self.bin_dir.join(&kind))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", IFNAME)
            .env("CNI_PATH", &self.bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(exec_err)?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(&stdin).await.map_err(exec_err)?;
        }
        let output = match tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output()).await {
            Ok(output) => output.map_err(exec_err)?,
            Err(_) => {
                return Err(CniError::Plugin {
                    command,
                    plugin: kind,
                    container_id: container_id.to_owned(),
                    message: format!("no answer within {PLUGIN_TIMEOUT:?}"),
                })
            }
        };
        if !output.status.success() {
            let message = match serde_json::from_slice::<PluginError>(&output.stdout) {
                Ok(e) if e.details.is_empty() => e.msg,
                Ok(e) => format!("{}: {}", e.msg, e.details),
                Err(_) => format!(
                    "{} {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            };
            return Err(CniError::Plugin {
                command,
                plugin: kind,
                container_id: container_id.to_owned(),
                message,
            });
        }
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&output.stdout).map_err(|e| CniError::Plugin {
            command,
            plugin: kind,
            container_id: container_id.to_owned(),
            message: format!("unreadable result: {e}"),
        })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("esb-cni-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn write_plugin(dir: &Path, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("plugin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    const LIST: &str =
        r#"{"cniVersion":"1.0.0","name":"esb","plugins":[{"type":"fake","ipam":{}}]}"#;

    #[test]
    fn a_list_naming_a_missing_plugin_is_refused_with_the_directory() {
        let dir = temp_dir("missing");
        let conf = dir.join("esb.conflist");
        std::fs::write(&conf, LIST).expect("conf");
        let err = CniNetwork::load(&conf, &dir).expect_err("no plugin");
        assert!(err.to_string().contains("\"fake\""), "{err}");
        std::fs::write(&conf, "{").expect("conf");
        assert!(matches!(
            CniNetwork::load(&conf, &dir),
            Err(CniError::Invalid { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn add_passes_the_spec_environment_and_reads_the_address() {
        let dir = temp_dir("add");
        let conf = dir.join("esb.conflist");
        std::fs::write(&conf, LIST).expect("conf");
        // The fake plugin checks what the spec says it gets and answers
        // like host-local would.
        write_plugin(
            &dir,
            "fake",
            r#"input=$(cat)
case "$input" in *'"name":"esb"'*) ;; *) echo '{"msg":"no name"}'; exit 1;; esac
[ "$CNI_IFNAME" = eth0 ] && [ "$CNI_CONTAINERID" = c1 ] || { echo '{"msg":"bad env"}'; exit 1; }
if [ "$CNI_COMMAND" = ADD ]; then
  echo "{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.88.0.7/16\"}],\"netns\":\"$CNI_NETNS\"}"
else
  echo '{"msg":"lease kept","details":"on purpose"}'; exit 1
fi"#,
        );
        let network = CniNetwork::load(&conf, &dir).expect("load");
        assert_eq!(network.name(), "esb");
        let ip = network.add("c1", "/proc/1/ns/net").await.expect("add");
        assert_eq!(ip, Ipv4Addr::new(10, 88, 0, 7));
        let err = network.del("c1", "").await.expect_err("del fails");
        assert!(err.to_string().contains("lease kept: on purpose"), "{err}");
        let err = network.add("other", "/x").await.expect_err("bad env");
        assert!(err.to_string().contains("bad env"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
