//! The part of containerd's cgroup v1 task metrics
//! (`io.containerd.cgroups.v1.Metrics`, from containerd/cgroups
//! `stats/v1/metrics.proto`) that the agent reports: memory use, limit and
//! inactive page cache, CPU time, OOM kills. Unknown fields are skipped by
//! the decoder.

/// The type URL of the message in `Tasks.Metrics` answers.
pub(super) const METRICS_V1: &str = "io.containerd.cgroups.v1.Metrics";

/// `io.containerd.cgroups.v1.Metrics`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Metrics {
    /// CPU use.
    #[prost(message, optional, tag = "3")]
    pub cpu: Option<CpuStat>,
    /// Memory use.
    #[prost(message, optional, tag = "4")]
    pub memory: Option<MemoryStat>,
    /// `memory.oom_control`.
    #[prost(message, optional, tag = "9")]
    pub memory_oom_control: Option<MemoryOomControl>,
}

/// `CPUStat`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct CpuStat {
    /// `cpuacct.usage` and friends.
    #[prost(message, optional, tag = "1")]
    pub usage: Option<CpuUsage>,
}

/// `CPUUsage`, in nanoseconds.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct CpuUsage {
    /// Total CPU time.
    #[prost(uint64, tag = "1")]
    pub total: u64,
}

/// `MemoryStat`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct MemoryStat {
    /// Reclaimable page cache of the cgroup and its children.
    #[prost(uint64, tag = "30")]
    pub total_inactive_file: u64,
    /// `memory.usage_in_bytes` and `memory.limit_in_bytes`.
    #[prost(message, optional, tag = "33")]
    pub usage: Option<MemoryEntry>,
}

/// `MemoryEntry`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct MemoryEntry {
    /// The limit in bytes.
    #[prost(uint64, tag = "1")]
    pub limit: u64,
    /// The use in bytes.
    #[prost(uint64, tag = "2")]
    pub usage: u64,
}

/// `MemoryOomControl`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct MemoryOomControl {
    /// OOM kills in the cgroup so far.
    #[prost(uint64, tag = "3")]
    pub oom_kill: u64,
}

impl Metrics {
    /// Memory in use without reclaimable page cache, like `docker stats`.
    pub(super) fn memory_bytes(&self) -> u64 {
        let Some(memory) = &self.memory else { return 0 };
        let usage = memory.usage.as_ref().map_or(0, |u| u.usage);
        usage.saturating_sub(memory.total_inactive_file)
    }

    pub(super) fn memory_limit_bytes(&self) -> u64 {
        self.memory
            .as_ref()
            .and_then(|m| m.usage.as_ref())
            .map_or(0, |u| u.limit)
    }

    pub(super) fn cpu_seconds(&self) -> f64 {
        let nanos = self
            .cpu
            .as_ref()
            .and_then(|c| c.usage.as_ref())
            .map_or(0, |u| u.total);
        nanos as f64 / 1e9
    }

    pub(super) fn oom_kills(&self) -> u64 {
        self.memory_oom_control.as_ref().map_or(0, |o| o.oom_kill)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn decodes_the_fields_the_agent_reports() {
        let m = Metrics {
            cpu: Some(CpuStat {
                usage: Some(CpuUsage {
                    total: 1_500_000_000,
                }),
            }),
            memory: Some(MemoryStat {
                total_inactive_file: 1000,
                usage: Some(MemoryEntry {
                    limit: 128 << 20,
                    usage: 5000,
                }),
            }),
            memory_oom_control: Some(MemoryOomControl { oom_kill: 2 }),
        };
        let decoded = Metrics::decode(m.encode_to_vec().as_slice()).expect("decode");
        assert_eq!(decoded.memory_bytes(), 4000);
        assert_eq!(decoded.memory_limit_bytes(), 128 << 20);
        assert!((decoded.cpu_seconds() - 1.5).abs() < 1e-9);
        assert_eq!(decoded.oom_kills(), 2);
        assert_eq!(Metrics::default().memory_bytes(), 0);
    }
}
