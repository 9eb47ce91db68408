//! The container a worker runs in: name, environment, limits and
//! hardening, as one Docker create request.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use esb_contracts::agent::CreateWorker;

use super::{label, AddressMode, DockerConfig, INVOKE_PORT_KEY, NANOS_PER_CPU};

/// Lambda: 1769 MB of memory = 1 vCPU.
const MB_PER_VCPU: i64 = 1769;

/// The create request for `spec`: the image with the gateway's environment
/// and command, the labels, and the limits (memory without swap, CPU
/// proportional to memory, pids), unprivileged with a read-only root and a
/// writable tmpfs `/tmp`, `docker-init` as PID 1.
pub(super) fn container_body(
    c: &DockerConfig,
    host_nano_cpus: i64,
    spec: &CreateWorker,
) -> ContainerCreateBody {
    let memory = i64::from(spec.memory_mb) * 1024 * 1024;
    let labels = HashMap::from([
        (label::NODE.to_owned(), c.node_id.clone()),
        (label::STACK.to_owned(), c.stack.clone()),
        (label::FUNCTION.to_owned(), spec.function.clone()),
        (label::WORKER.to_owned(), spec.worker_id.clone()),
        (label::OWNER.to_owned(), spec.owner.clone()),
        (label::MEMORY.to_owned(), spec.memory_mb.to_string()),
        (label::IMAGE.to_owned(), spec.image.clone()),
    ]);
    let port_bindings = (c.address_mode == AddressMode::Loopback).then(|| {
        HashMap::from([(
            INVOKE_PORT_KEY.to_owned(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }]),
        )])
    });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(super::super::worker_env(spec)),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        labels: Some(labels),
        user: Some(c.user.clone()),
        exposed_ports: Some(vec![INVOKE_PORT_KEY.to_owned()]),
        host_config: Some(HostConfig {
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some(nano_cpus(spec.memory_mb, c.min_nano_cpus, host_nano_cpus)),
            pids_limit: Some(c.pids_limit),
            init: Some(true),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                format!("rw,nosuid,nodev,size={}m,mode=1777", c.tmp_size_mb),
            )])),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            network_mode: Some(c.network.clone()),
            port_bindings,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `esb-<stack>-<function>-<worker id>`, with anything Docker does not
/// allow in names replaced by `-`.
pub(super) fn container_name(stack: &str, function: &str, worker_id: &str) -> String {
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .take(max)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let mut parts = vec!["esb".to_owned()];
    for (part, max) in [(stack, 32), (function, 64), (worker_id, 128)] {
        if !part.is_empty() {
            parts.push(clean(part, max));
        }
    }
    parts.join("-")
}

/// CPU proportional to memory (1769 MB = 1 vCPU), at least `floor`, at most
/// the host's CPUs.
fn nano_cpus(memory_mb: u32, floor: i64, host: i64) -> i64 {
    let proportional = i64::from(memory_mb) * NANOS_PER_CPU / MB_PER_VCPU;
    proportional.max(floor).min(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_proportional_to_memory_with_floor_and_host_cap() {
        let host = 2 * NANOS_PER_CPU;
        let floor = NANOS_PER_CPU / 4;
        assert_eq!(nano_cpus(1769, floor, host), NANOS_PER_CPU);
        assert_eq!(nano_cpus(128, floor, host), floor);
        assert_eq!(nano_cpus(3538, floor, host), 2 * NANOS_PER_CPU);
        assert_eq!(nano_cpus(10240, floor, host), host);
    }

    #[test]
    fn container_names_are_docker_safe() {
        assert_eq!(container_name("dev", "hello", "w-1"), "esb-dev-hello-w-1");
        assert_eq!(container_name("", "a/b c", "x"), "esb-a-b-c-x");
    }
}
