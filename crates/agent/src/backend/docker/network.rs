//! The network safety rule. The agent probes a worker only on an address it
//! has a local route to: loopback, or in network mode the container's IP on
//! a network the agent's own container is attached to.

use std::net::{Ipv4Addr, SocketAddr};

use bollard::Docker;

use super::{is_status, AddressMode, Inner};
use crate::backend::{route, BackendError};

impl Inner {
    /// The network safety rule: may the agent send traffic to `addr`?
    pub(super) async fn check_probe_target(&self, addr: SocketAddr) -> Result<(), BackendError> {
        let allowed = match (self.config.address_mode, addr) {
            (AddressMode::Loopback, a) => a.ip().is_loopback(),
            (AddressMode::Network, SocketAddr::V4(a)) => {
                route::is_local(&route::connected_routes().await, *a.ip())
            }
            (AddressMode::Network, SocketAddr::V6(_)) => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(BackendError::Unroutable {
                network: self.config.network.clone(),
                address: addr.to_string(),
            })
        }
    }
}

/// In network mode the agent must run in a container attached to the
/// workers' network (inside the box), and one of the network's subnets must
/// be directly connected to it.
pub(super) async fn check_network_attached(
    docker: &Docker,
    network: &str,
) -> Result<(), BackendError> {
    let docker_err = |operation| {
        move |source| BackendError::Docker {
            operation,
            worker_id: String::new(),
            source,
        }
    };
    let not_attached = || BackendError::NotAttached {
        network: network.to_owned(),
    };
    let inspect = docker
        .inspect_network(network, None)
        .await
        .map_err(docker_err("inspect network"))?;
    let own = own_container_id().await.ok_or_else(not_attached)?;
    let me = match docker.inspect_container(&own, None).await {
        Ok(me) => me,
        Err(e) if is_status(&e, 404) => return Err(not_attached()),
        Err(e) => return Err(docker_err("inspect own container")(e)),
    };
    let attached = me
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .iter()
        .any(|(name, endpoint)| {
            name == network || (endpoint.network_id.is_some() && endpoint.network_id == inspect.id)
        });
    if !attached {
        return Err(not_attached());
    }
    let routes = route::connected_routes().await;
    let subnets: Vec<String> = inspect
        .ipam
        .and_then(|ipam| ipam.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.subnet)
        .collect();
    let connected = subnets.iter().any(|subnet| {
        subnet
            .split('/')
            .next()
            .and_then(|net| net.parse::<Ipv4Addr>().ok())
            .is_some_and(|net| route::is_local(&routes, net))
    });
    if connected {
        Ok(())
    } else {
        Err(BackendError::Unroutable {
            network: network.to_owned(),
            address: subnets.join(","),
        })
    }
}

/// The id of the container this process runs in: Docker bind-mounts
/// `/etc/hostname` from `/var/lib/docker/containers/<id>/hostname`, and
/// cgroup v1 paths end in `/docker/<id>`. `None` outside a container.
async fn own_container_id() -> Option<String> {
    if let Ok(text) = tokio::fs::read_to_string("/proc/self/mountinfo").await {
        if let Some(id) = container_id_in_mountinfo(&text) {
            return Some(id);
        }
    }
    let text = tokio::fs::read_to_string("/proc/self/cgroup").await.ok()?;
    container_id_in_cgroup(&text)
}

/// From the mount of `/etc/hostname` only: a host process sees other
/// containers' mounts too.
fn container_id_in_mountinfo(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(4) != Some(&"/etc/hostname") {
            return None;
        }
        hex_id_after(fields.get(3)?, "/containers/")
    })
}

fn container_id_in_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| hex_id_after(line, "/docker/").or_else(|| hex_id_after(line, "/docker-")))
}

/// The 64-hex-digit id right after `marker` in `text`.
fn hex_id_after(text: &str, marker: &str) -> Option<String> {
    text.match_indices(marker).find_map(|(at, _)| {
        let id: String = text[at + marker.len()..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        (id.len() == 64).then_some(id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_container_id_is_found_in_mountinfo_and_cgroups() {
        let id = "16e32a3d6755cbf3b9610beb1d223b7de5e19ed0aa7faa8e9aecdeb83d2cffc3";
        let own = format!("96 78 254:0 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda rw");
        assert_eq!(container_id_in_mountinfo(&own).as_deref(), Some(id));
        // A host process sees containers' shm mounts: not its own container.
        let host =
            format!("120 30 0:50 / /var/lib/docker/containers/{id}/mounts/shm rw - tmpfs shm rw");
        assert_eq!(container_id_in_mountinfo(&host), None);
        assert_eq!(
            container_id_in_cgroup(&format!("8:pids:/docker/{id}")).as_deref(),
            Some(id)
        );
        assert_eq!(container_id_in_cgroup("9:name=systemd:/\n8:pids:/\n"), None);
        assert_eq!(container_id_in_cgroup("0::/init.scope"), None);
    }
}
