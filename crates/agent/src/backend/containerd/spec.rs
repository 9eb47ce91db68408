//! The OCI runtime spec of a worker, as runc reads it: runc's default
//! Linux spec (namespaces, mounts, masked and read-only paths) with the
//! worker's process (the image's entrypoint and command, the image's and the
//! Lambda environment), unprivileged (a fixed uid:gid, no capabilities,
//! `noNewPrivileges`), a read-only root with a writable tmpfs `/tmp`, the
//! memory limit without swap, CPU proportional to memory, a pids limit, a
//! seccomp filter refusing what Docker's default profile refuses,
//! `/etc/resolv.conf` and `/etc/hosts` bound from the node's state
//! directory, and the node's init bound in and run as PID 1. The network namespace is new and empty: CNI configures it
//! between task create and start.

use std::collections::BTreeMap;
use std::path::Path;

use esb_contracts::agent::CreateWorker;
use esb_contracts::service::STDERR_TO_STDOUT_ENV;
use serde_json::{json, Value};

use super::image::ImageConfig;

use crate::backend::worker_env as lambda_env;

/// Lambda: 1769 MB of memory = 1 vCPU.
const MB_PER_VCPU: u64 = 1769;
/// The CFS period the quota is expressed in (runc's default).
const CPU_PERIOD_US: u64 = 100_000;

/// What the spec needs besides the request and the image.
pub(super) struct SpecInput<'a> {
    /// The container's id (hostname, cgroup path).
    pub container_id: &'a str,
    /// containerd's namespace (cgroup parent).
    pub namespace: &'a str,
    /// `uid:gid`.
    pub user: (u32, u32),
    /// Processes at most.
    pub pids_limit: i64,
    /// Size of `/tmp`.
    pub tmp_size_mb: u32,
    /// The CPU floor, in millicores.
    pub min_millicpus: u64,
    /// The node's CPUs, in millicores (the CPU cap).
    pub host_millicpus: u64,
    /// The worker's `resolv.conf` and `hosts`, in the node's filesystem.
    pub resolv_conf: &'a Path,
    /// See `resolv_conf`.
    pub hosts: &'a Path,
    /// The init bound to `INIT_PATH` and run as PID 1, in the node's
    /// filesystem.
    pub init: Option<&'a Path>,
}

/// Where a worker sees its init (as `docker-init` is `/sbin/docker-init`).
pub(super) const INIT_PATH: &str = "/sbin/esb-init";

/// The spec as JSON.
pub(super) fn runtime_spec(
    input: &SpecInput<'_>,
    image: &ImageConfig,
    spec: &CreateWorker,
) -> Value {
    let memory = u64::from(spec.memory_mb) * 1024 * 1024;
    let millicpus = millicpus(spec.memory_mb, input.min_millicpus, input.host_millicpus);
    let (uid, gid) = input.user;
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": uid, "gid": gid },
            "args": with_init(input.init, args(image, spec)),
            "env": env(image, spec),
            "cwd": if image.working_dir.is_empty() { "/" } else { image.working_dir.as_str() },
            "capabilities": {
                "bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": hostname(input.container_id),
        "mounts": mounts(input),
        "linux": {
            "resources": {
                "devices": [{ "allow": false, "access": "rwm" }],
                "memory": { "limit": memory, "swap": memory },
                "cpu": {
                    "shares": cpu_shares(spec.memory_mb),
                    "quota": millicpus * CPU_PERIOD_US / 1000,
                    "period": CPU_PERIOD_US
                },
                "pids": { "limit": input.pids_limit }
            },
            "cgroupsPath": format!("/{}/{}", input.namespace, input.container_id),
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" },
                { "type": "mount" }, { "type": "network" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ],
            "seccomp": seccomp()
        }
    })
}

/// Syscalls a worker is refused with `EPERM`, as Docker's default profile
/// refuses them to a container without capabilities: kernel modules and
/// keyrings, mounts and namespaces, other processes' memory, clocks and
/// system settings, NUMA policy, BPF, perf and userfaultfd. Names this
/// kernel or architecture lacks are skipped by runc.
const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "vm86",
    "vm86old",
];

/// `clone` flags that make new namespaces (`CLONE_NEWNS`, `CLONE_NEWCGROUP`,
/// `CLONE_NEWUTS`, `CLONE_NEWIPC`, `CLONE_NEWUSER`, `CLONE_NEWPID`,
/// `CLONE_NEWNET`): a `clone` with any of them is refused, like `unshare`.
const NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

/// `EPERM` and `ENOSYS`.
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The worker's seccomp filter: everything else allowed (the capabilities
/// are gone and `noNewPrivileges` is set already), the native architecture
/// only (another ABI's syscalls are refused). `clone3` answers `ENOSYS`,
/// as in Docker, since its flags cannot be inspected: the C library then
/// falls back to `clone`, whose flags can.
fn seccomp() -> Value {
    let mut syscalls = vec![
        json!({ "names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM }),
        json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }),
    ];
    syscalls.extend(NAMESPACE_FLAGS.iter().map(|flag| {
        json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
            "args": [{ "index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ" }]
        })
    }));
    json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls })
}

/// `args` run by the init when there is one (`esb-init -- args...`).
fn with_init(init: Option<&Path>, args: Vec<String>) -> Vec<String> {
    match init {
        Some(_) => [INIT_PATH.to_owned(), "--".to_owned()]
            .into_iter()
            .chain(args)
            .collect(),
        None => args,
    }
}

/// The image's entrypoint followed by the request's command, or else the
/// image's `Cmd` (Docker's rule).
fn args(image: &ImageConfig, spec: &CreateWorker) -> Vec<String> {
    let cmd = if spec.command.is_empty() {
        &image.cmd
    } else {
        &spec.command
    };
    image.entrypoint.iter().chain(cmd).cloned().collect()
}

/// The image's environment overlaid with the worker's (the gateway's and
/// the Lambda variables, as in Docker mode), and the shim asked for one
/// output stream (see `STDERR_TO_STDOUT_ENV`).
fn env(image: &ImageConfig, spec: &CreateWorker) -> Vec<String> {
    let mut env: BTreeMap<String, String> = image
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for kv in lambda_env(spec) {
        if let Some((k, v)) = kv.split_once('=') {
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    env.insert(STDERR_TO_STDOUT_ENV.to_owned(), "1".to_owned());
    env.entry("PATH".to_owned()).or_insert_with(|| {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()
    });
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn mounts(input: &SpecInput<'_>) -> Value {
    let mut mounts = json!([
        { "destination": "/proc", "type": "proc", "source": "proc",
          "options": ["nosuid", "noexec", "nodev"] },
        { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
          "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
        { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
          "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
        { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
          "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
        { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
          "options": ["nosuid", "noexec", "nodev"] },
        { "destination": "/sys", "type": "sysfs", "source": "sysfs",
          "options": ["nosuid", "noexec", "nodev", "ro"] },
        { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
          "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] },
        { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
          "options": ["nosuid", "nodev", "mode=1777", format!("size={}m", input.tmp_size_mb)] },
        { "destination": "/etc/resolv.conf", "type": "bind",
          "source": input.resolv_conf.to_string_lossy(), "options": ["rbind", "ro", "nosuid", "nodev", "noexec"] },
        { "destination": "/etc/hosts", "type": "bind",
          "source": input.hosts.to_string_lossy(), "options": ["rbind", "ro", "nosuid", "nodev", "noexec"] }
    ]);
    if let (Some(init), Some(list)) = (input.init, mounts.as_array_mut()) {
        list.push(json!({ "destination": INIT_PATH, "type": "bind",
          "source": init.to_string_lossy(), "options": ["rbind", "ro", "nosuid", "nodev"] }));
    }
    mounts
}

/// The worker's hostname: its container id, cut to the kernel's 64 bytes.
pub(super) fn hostname(container_id: &str) -> &str {
    &container_id[..container_id.len().min(63)]
}

/// The worker's `/etc/hosts`.
pub(super) fn hosts_file(container_id: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost {}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        hostname(container_id)
    )
}

/// The worker's `/etc/resolv.conf`.
pub(super) fn resolv_conf(dns: std::net::Ipv4Addr) -> String {
    format!("nameserver {dns}\n")
}

/// CPU proportional to memory (1769 MB = 1 vCPU), at least `floor`, at
/// most the node's CPUs, in millicores.
fn millicpus(memory_mb: u32, floor: u64, host: u64) -> u64 {
    (u64::from(memory_mb) * 1000 / MB_PER_VCPU)
        .max(floor)
        .min(host)
}

/// cgroup v1 CPU shares proportional to memory (1024 per vCPU).
fn cpu_shares(memory_mb: u32) -> u64 {
    (u64::from(memory_mb) * 1024 / MB_PER_VCPU).max(2)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::*;

    fn worker() -> CreateWorker {
        CreateWorker {
            worker_id: "w-1".into(),
            function: "hello".into(),
            image: "registry:5010/hello:1".into(),
            memory_mb: 256,
            timeout_seconds: 7,
            env: HashMap::from([
                ("GREETING".into(), "hi".into()),
                ("PATH".into(), "/x".into()),
            ]),
            command: Vec::new(),
            owner: "gw".into(),
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/usr/local/bin/esb-runtime".into()],
            cmd: vec!["app.handler".into()],
            env: vec!["PATH=/usr/bin".into(), "LAMBDA_TASK_ROOT=/var/task".into()],
            working_dir: "/var/task".into(),
        }
    }

    #[test]
    fn the_spec_is_unprivileged_read_only_and_limited() {
        let resolv = PathBuf::from("/var/lib/esb-node/workers/c1/resolv.conf");
        let hosts = PathBuf::from("/var/lib/esb-node/workers/c1/hosts");
        let input = SpecInput {
            container_id: "c1",
            namespace: "esb",
            user: (993, 993),
            pids_limit: 256,
            tmp_size_mb: 512,
            min_millicpus: 250,
            host_millicpus: 2000,
            resolv_conf: &resolv,
            hosts: &hosts,
            init: Some(Path::new("/usr/bin/tini-static")),
        };
        let s = runtime_spec(&input, &image(), &worker());
        assert_eq!(s["process"]["user"], json!({"uid": 993, "gid": 993}));
        assert_eq!(
            s["process"]["args"],
            json!([
                "/sbin/esb-init",
                "--",
                "/usr/local/bin/esb-runtime",
                "app.handler"
            ])
        );
        let init = s["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["destination"] == "/sbin/esb-init")
            .expect("the init bound in");
        assert_eq!(init["source"], "/usr/bin/tini-static");
        let no_init = runtime_spec(
            &SpecInput {
                init: None,
                ..input
            },
            &image(),
            &worker(),
        );
        assert_eq!(
            no_init["process"]["args"],
            json!(["/usr/local/bin/esb-runtime", "app.handler"])
        );
        let env: Vec<&str> = s["process"]["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(env.contains(&"GREETING=hi"), "{env:?}");
        assert!(
            env.contains(&"PATH=/x"),
            "the gateway's value wins: {env:?}"
        );
        assert!(env.contains(&"LAMBDA_TASK_ROOT=/var/task"), "{env:?}");
        assert!(env.contains(&"ESB_STDERR_TO_STDOUT=1"), "{env:?}");
        assert!(
            env.contains(&"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256"),
            "{env:?}"
        );
        assert_eq!(s["process"]["cwd"], "/var/task");
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert_eq!(s["process"]["capabilities"]["bounding"], json!([]));
        assert_eq!(s["root"]["readonly"], true);
        let memory = 256 * 1024 * 1024;
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], memory);
        assert_eq!(s["linux"]["resources"]["memory"]["swap"], memory);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 256);
        // 256 MB is below the floor of a quarter CPU.
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 25_000);
        assert_eq!(s["linux"]["resources"]["cpu"]["shares"], 148);
        assert_eq!(s["linux"]["cgroupsPath"], "/esb/c1");
        let seccomp = &s["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ALLOW");
        let denied: Vec<&str> = seccomp["syscalls"][0]["names"]
            .as_array()
            .expect("names")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for name in ["unshare", "setns", "mount", "keyctl", "bpf"] {
            assert!(denied.contains(&name), "{name} allowed");
        }
        let clone_user = seccomp["syscalls"]
            .as_array()
            .expect("syscalls")
            .iter()
            .any(|r| r["names"] == json!(["clone"]) && r["args"][0]["value"] == 0x1000_0000);
        assert!(clone_user, "clone(CLONE_NEWUSER) allowed");
        let network = json!({"type": "network"});
        assert!(s["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .contains(&network));
        let mounts = s["mounts"].as_array().expect("mounts");
        let tmp = mounts
            .iter()
            .find(|m| m["destination"] == "/tmp")
            .expect("/tmp");
        assert!(tmp["options"]
            .as_array()
            .expect("options")
            .contains(&json!("size=512m")));
        let resolv_mount = mounts
            .iter()
            .find(|m| m["destination"] == "/etc/resolv.conf")
            .expect("resolv.conf");
        assert_eq!(resolv_mount["source"], resolv.to_string_lossy().as_ref());
    }

    #[test]
    fn a_command_replaces_the_images_cmd_but_not_its_entrypoint() {
        let mut w = worker();
        w.command = vec!["other.handler".into()];
        assert_eq!(
            args(&image(), &w),
            vec!["/usr/local/bin/esb-runtime", "other.handler"]
        );
    }

    #[test]
    fn cpu_follows_memory_within_floor_and_host() {
        assert_eq!(millicpus(1769, 250, 2000), 1000);
        assert_eq!(millicpus(128, 250, 2000), 250);
        assert_eq!(millicpus(10240, 250, 2000), 2000);
        assert_eq!(cpu_shares(1769), 1024);
        assert_eq!(cpu_shares(1), 2);
    }
}
