//! Prometheus metrics served on `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabel {
    pub function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub function: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    pub function: String,
    pub state: String,
}

/// How an invocation ended, as counted in `esb_invocations_total`.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Success,
    FunctionError,
    Timeout,
    Throttled,
    StartFailed,
    WorkerFailed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::FunctionError => "function_error",
            Outcome::Timeout => "timeout",
            Outcome::Throttled => "throttled",
            Outcome::StartFailed => "start_failed",
            Outcome::WorkerFailed => "worker_failed",
        }
    }
}

fn latency_buckets() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0, 300.0, 900.0,
    ])
}

pub struct Metrics {
    registry: Registry,
    invocations: Family<OutcomeLabels, Counter>,
    duration: Family<FunctionLabel, Histogram, fn() -> Histogram>,
    cold_starts: Family<FunctionLabel, Counter>,
    queue_wait: Family<FunctionLabel, Histogram, fn() -> Histogram>,
    workers: Family<WorkerLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("esb");
        let invocations = Family::<OutcomeLabels, Counter>::default();
        let duration = Family::<FunctionLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_buckets,
        );
        let cold_starts = Family::<FunctionLabel, Counter>::default();
        let queue_wait =
            Family::<FunctionLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_buckets,
            );
        let workers = Family::<WorkerLabels, Gauge>::default();
        registry.register(
            "invocations",
            "Invocations by function and outcome",
            invocations.clone(),
        );
        registry.register(
            "invocation_duration_seconds",
            "Time from accepting an invocation to its result",
            duration.clone(),
        );
        registry.register(
            "cold_starts",
            "Workers started to serve an invocation",
            cold_starts.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time an invocation waited for a worker",
            queue_wait.clone(),
        );
        registry.register("workers", "Workers by function and state", workers.clone());
        Metrics {
            registry,
            invocations,
            duration,
            cold_starts,
            queue_wait,
            workers,
        }
    }

    pub fn invocation(&self, function: &str, outcome: Outcome, seconds: f64) {
        self.invocations
            .get_or_create(&OutcomeLabels {
                function: function.to_owned(),
                outcome: outcome.as_str().to_owned(),
            })
            .inc();
        self.duration
            .get_or_create(&FunctionLabel {
                function: function.to_owned(),
            })
            .observe(seconds);
    }

    pub fn cold_start(&self, function: &str) {
        self.cold_starts
            .get_or_create(&FunctionLabel {
                function: function.to_owned(),
            })
            .inc();
    }

    pub fn queue_wait(&self, function: &str, seconds: f64) {
        self.queue_wait
            .get_or_create(&FunctionLabel {
                function: function.to_owned(),
            })
            .observe(seconds);
    }

    /// Sets the worker gauges of one function.
    pub fn workers(&self, function: &str, idle: usize, busy: usize, starting: usize) {
        for (state, n) in [("idle", idle), ("busy", busy), ("starting", starting)] {
            self.workers
                .get_or_create(&WorkerLabels {
                    function: function.to_owned(),
                    state: state.to_owned(),
                })
                .set(n as i64);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_documented_series() {
        let m = Metrics::new();
        m.invocation("hello", Outcome::Success, 0.01);
        m.cold_start("hello");
        m.queue_wait("hello", 0.0);
        m.workers("hello", 1, 0, 0);
        let text = m.encode();
        for series in [
            "esb_invocations_total{function=\"hello\",outcome=\"success\"} 1",
            "esb_invocation_duration_seconds_bucket",
            "esb_cold_starts_total{function=\"hello\"} 1",
            "esb_queue_wait_seconds_count{function=\"hello\"} 1",
            "esb_workers{function=\"hello\",state=\"idle\"} 1",
        ] {
            assert!(text.contains(series), "missing {series} in\n{text}");
        }
    }
}
