//! Docker's event stream for this node's containers of this stack, turned
//! into worker events: `die` (with the exit code) and `oom`; exited workers
//! are removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{label, Inner};
use crate::backend::{publish_seen, Seen};

/// Follows the daemon's events for this node's containers until `stop`,
/// resubscribing (from the last event seen) when the stream breaks.
pub(super) async fn watch_events(inner: Arc<Inner>, stop: CancellationToken, mut since: String) {
    let filters = HashMap::from([
        ("type", vec!["container".to_owned()]),
        ("label", super::own_labels(&inner.config)),
        (
            "event",
            vec!["die".to_owned(), "oom".to_owned(), "destroy".to_owned()],
        ),
    ]);
    let mut retry = Duration::from_millis(500);
    loop {
        let options = EventsOptionsBuilder::new()
            .since(&since)
            .filters(&filters)
            .build();
        let mut stream = inner.docker.events(Some(options));
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(event)) => {
                    retry = Duration::from_millis(500);
                    if let Some(nanos) = event.time_nano {
                        since = docker_timestamp_nanos(nanos.saturating_add(1));
                    }
                    inner.on_event(event).await;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "docker event stream failed; resubscribing");
                    break;
                }
                None => {
                    tracing::warn!("docker event stream ended; resubscribing");
                    break;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(Duration::from_secs(10));
    }
}

impl Inner {
    /// Turns one Docker event into a worker event, removing exited workers.
    pub(super) async fn on_event(&self, event: EventMessage) {
        let Some(actor) = event.actor else { return };
        let attributes = actor.attributes.unwrap_or_default();
        let Some(worker_id) = attributes.get(label::WORKER).cloned() else {
            return;
        };
        let function = attributes.get(label::FUNCTION).cloned().unwrap_or_default();
        let container = actor.id.unwrap_or_default();
        let seen = match event.action.as_deref() {
            Some("oom") => Seen::OomKill,
            Some("die") => Seen::Exit(
                attributes
                    .get("exitCode")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(-1),
            ),
            Some("destroy") => {
                let mut marks = self.marks();
                marks.removing.remove(&worker_id);
                marks.oom_kills.remove(&worker_id);
                return;
            }
            _ => return,
        };
        if publish_seen(&self.marks, &self.events, &worker_id, function, seen) {
            if let Err(e) = self.remove_container(&container, &worker_id).await {
                tracing::warn!(worker = %worker_id, error = %crate::connection::Chain(&e), "cannot remove an exited worker");
            }
        }
    }
}

pub(super) fn docker_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn docker_timestamp_nanos(nanos: i64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_nanoseconds() {
        assert_eq!(
            docker_timestamp_nanos(1_700_000_000_000_000_001),
            "1700000000.000000001"
        );
    }
}
