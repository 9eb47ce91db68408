//! containerd's task events in the backend's namespace, turned into worker
//! events: `/tasks/exit` of a worker's init process (exited workers are
//! removed) and `/tasks/oom`.

use std::sync::Arc;
use std::time::Duration;

use super::api::containers::GetContainerRequest;
use super::api::events::events_client::EventsClient;
use super::api::events::SubscribeRequest;
use super::api::task_events::{TaskExit, TaskOom};
use super::api::types::Envelope;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use super::{label, BackendError, Containerd};
use crate::backend::{publish_seen, Seen};

const TOPIC_EXIT: &str = "/tasks/exit";
const TOPIC_OOM: &str = "/tasks/oom";

impl Containerd {
    /// A subscription to the namespace's task exits and OOM kills.
    pub(super) async fn subscribe(&self) -> Result<Streaming<Envelope>, BackendError> {
        let ns = &self.config.namespace;
        let filters = [TOPIC_EXIT, TOPIC_OOM]
            .iter()
            .map(|topic| format!("namespace=={},topic==\"{topic}\"", super::quote(ns)))
            .collect();
        EventsClient::new(self.channel.clone())
            .subscribe(self.stream_request(SubscribeRequest { filters }))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|source| BackendError::Containerd {
                operation: "subscribe to events",
                worker_id: String::new(),
                source,
            })
    }

    /// Turns one event into a worker event, removing exited workers.
    async fn on_event(&self, envelope: Envelope) {
        let Some(event) = envelope.event else { return };
        let (container_id, exit_status) = match envelope.topic.as_str() {
            TOPIC_EXIT => match TaskExit::decode(event.value.as_slice()) {
                // Exits of exec'd processes are not the worker's.
                Ok(e) if e.id == e.container_id || e.id.is_empty() => {
                    (e.container_id, Some(e.exit_status))
                }
                _ => return,
            },
            TOPIC_OOM => match TaskOom::decode(event.value.as_slice()) {
                Ok(e) => (e.container_id, None),
                Err(_) => return,
            },
            _ => return,
        };
        let container = self
            .containers_client()
            .get(self.request(GetContainerRequest {
                id: container_id.clone(),
            }))
            .await;
        // Gone already: removed by this backend.
        let Ok(container) = container else { return };
        let Some(container) = container.into_inner().container else {
            return;
        };
        let labels = &container.labels;
        let ours = labels.get(label::NODE) == Some(&self.config.node_id)
            && labels.get(label::STACK) == Some(&self.config.stack);
        let Some(worker_id) = labels.get(label::WORKER).cloned() else {
            return;
        };
        if !ours {
            return;
        }
        let function = labels.get(label::FUNCTION).cloned().unwrap_or_default();
        let seen = match exit_status {
            None => Seen::OomKill,
            Some(code) => Seen::Exit(i32::try_from(code).unwrap_or(-1)),
        };
        if publish_seen(&self.marks, &self.events, &worker_id, function, seen) {
            if let Err(e) = self.remove_worker(&container_id, &worker_id).await {
                tracing::warn!(worker = %worker_id, error = %crate::connection::Chain(&e), "cannot remove an exited worker");
            }
        }
    }
}

/// Follows the events until `stop`, resubscribing when the stream breaks.
/// Each event is handled in its own task (removing an exited worker takes a
/// while; the stream must keep flowing).
pub(super) async fn watch_events(inner: Arc<Containerd>, stop: CancellationToken) {
    let handlers = tokio_util::task::TaskTracker::new();
    let mut retry = Duration::from_millis(500);
    loop {
        let subscribed = tokio::select! {
            _ = stop.cancelled() => break,
            s = inner.subscribe() => s,
        };
        match subscribed {
            Ok(mut stream) => loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => break,
                    next = stream.message() => next,
                };
                match next {
                    Ok(Some(envelope)) => {
                        retry = Duration::from_millis(500);
                        let inner = Arc::clone(&inner);
                        handlers.spawn(async move { inner.on_event(envelope).await });
                    }
                    Ok(None) => {
                        tracing::warn!("containerd event stream ended; resubscribing");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "containerd event stream failed; resubscribing");
                        break;
                    }
                }
            },
            Err(e) => {
                tracing::warn!(error = %crate::connection::Chain(&e), "cannot subscribe to containerd events");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(Duration::from_secs(10));
    }
    handlers.close();
    handlers.wait().await;
}
