//! One session with the gateway: connect, register, then serve commands,
//! report worker events and heartbeats on the `Connect` stream until it
//! ends or the agent shuts down.

use std::sync::Arc;
use std::time::Duration;

use esb_contracts::agent::node_service_client::NodeServiceClient;
use esb_contracts::agent::{
    agent_message, gateway_message, AgentMessage, Capacity, Command, GatewayMessage, Heartbeat,
    Register, Registered, WorkerState,
};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use crate::backend::{Backend, BackendError};
use crate::command;
use crate::connection::{self, Chain, ConnectError};
use crate::metrics::AgentMetrics;
use crate::settings::AgentSettings;

/// Messages queued for the gateway at most; senders wait beyond that.
const OUTBOUND: usize = 256;

/// What a session needs from its agent.
pub(crate) struct Context<'a, B> {
    pub(crate) settings: &'a AgentSettings,
    pub(crate) backend: &'a Arc<B>,
    pub(crate) metrics: &'a Arc<AgentMetrics>,
}

/// How a session ended without an error.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The agent is shutting down.
    Shutdown,
    /// The gateway closed the stream.
    Ended { registered: bool },
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot list the workers to register")]
    Adopt(#[source] BackendError),
    #[error("the gateway refused the stream")]
    Refused(#[source] tonic::Status),
    #[error("the gateway did not answer Register within {0:?}")]
    RegisterTimeout(Duration),
    #[error("the gateway's first message was not Registered")]
    NotRegistered,
    #[error("the stream with the gateway failed")]
    Stream {
        #[source]
        source: tonic::Status,
        registered: bool,
    },
}

impl SessionError {
    /// Whether the session had registered before it failed.
    pub(crate) fn registered(&self) -> bool {
        matches!(
            self,
            Self::Stream {
                registered: true,
                ..
            }
        )
    }
}

pub(crate) async fn run<B: Backend>(
    ctx: &Context<'_, B>,
    endpoint: &Endpoint,
    shutdown: &CancellationToken,
) -> Result<Outcome, SessionError> {
    let settings = ctx.settings;
    let channel = tokio::select! {
        _ = shutdown.cancelled() => return Ok(Outcome::Shutdown),
        c = connection::connect(endpoint, settings.gateway.connect_timeout) => c?,
    };
    // Subscribe before listing, so that no exit between the list and the
    // registration goes unreported.
    let events = ctx.backend.events();
    let workers = ctx.backend.adopt().await.map_err(SessionError::Adopt)?;
    let register = Register {
        node_id: settings.node.node_id.clone(),
        runtime: ctx.backend.runtime() as i32,
        capacity: Some(Capacity {
            memory_mb: settings.node.memory_mb,
            max_workers: settings.node.max_workers,
        }),
        labels: settings.node.labels.clone().into_iter().collect(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        workers,
    };
    let announced = register.workers.len();
    let (outbound, outbound_rx) = mpsc::channel(OUTBOUND);
    // Cannot fail: the receiver is alive and the channel empty.
    let _ = outbound.try_send(message(agent_message::Body::Register(register)));
    let mut client = NodeServiceClient::new(channel);
    // The gateway has `register_timeout` to open the stream and answer
    // Register; a gateway that hangs must not hold the agent forever.
    let register_timeout = settings.gateway.register_timeout;
    let register_deadline = tokio::time::Instant::now() + register_timeout;
    let opened = tokio::select! {
        _ = shutdown.cancelled() => return Ok(Outcome::Shutdown),
        r = tokio::time::timeout_at(register_deadline, client.connect(ReceiverStream::new(outbound_rx))) => r,
    };
    let response = opened
        .map_err(|_| SessionError::RegisterTimeout(register_timeout))?
        .map_err(SessionError::Refused)?;
    let mut inbound = response.into_inner();
    let first = tokio::select! {
        _ = shutdown.cancelled() => return Ok(Outcome::Shutdown),
        m = tokio::time::timeout_at(register_deadline, inbound.message()) => m,
    };
    let registered = match first {
        Err(_) => return Err(SessionError::RegisterTimeout(register_timeout)),
        Ok(Err(source)) => {
            return Err(SessionError::Stream {
                source,
                registered: false,
            })
        }
        Ok(Ok(None)) => return Ok(Outcome::Ended { registered: false }),
        Ok(Ok(Some(GatewayMessage {
            body: Some(gateway_message::Body::Registered(r)),
        }))) => r,
        Ok(Ok(Some(_))) => return Err(SessionError::NotRegistered),
    };
    ctx.metrics.registered();
    let heartbeat = heartbeat_interval(&registered, settings.default_heartbeat);
    tracing::info!(
        gateway_id = %registered.gateway_id,
        workers = announced,
        heartbeat_ms = heartbeat.as_millis() as u64,
        "registered with the gateway"
    );

    // Background reporters of this session: events and heartbeats.
    let stop_reporters = shutdown.child_token();
    let mut reporters = JoinSet::new();
    reporters.spawn(forward_events(
        events,
        outbound.clone(),
        Arc::clone(ctx.metrics),
        stop_reporters.clone(),
    ));
    reporters.spawn(send_heartbeats(
        Arc::clone(ctx.backend),
        outbound.clone(),
        Arc::clone(ctx.metrics),
        heartbeat,
        stop_reporters.clone(),
    ));

    // Commands run concurrently, bounded by the semaphore.
    let permits = Arc::new(Semaphore::new(settings.command_concurrency.max(1)));
    let mut commands = JoinSet::new();
    let outcome = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(Outcome::Shutdown),
            Some(done) = commands.join_next(), if !commands.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a command task failed");
                }
            }
            message = inbound.message() => match message {
                Ok(Some(GatewayMessage { body: Some(gateway_message::Body::Command(cmd)) })) => {
                    let permit = tokio::select! {
                        _ = shutdown.cancelled() => break Ok(Outcome::Shutdown),
                        p = Arc::clone(&permits).acquire_owned() => p,
                    };
                    let Ok(permit) = permit else { break Ok(Outcome::Shutdown) };
                    commands.spawn(handle_command(
                        Arc::clone(ctx.backend),
                        Arc::clone(ctx.metrics),
                        outbound.clone(),
                        cmd,
                        permit,
                    ));
                }
                Ok(Some(GatewayMessage { body: Some(gateway_message::Body::Registered(_)) })) => {
                    tracing::warn!("ignoring a second Registered from the gateway");
                }
                Ok(Some(GatewayMessage { body: None })) => {
                    tracing::warn!("ignoring an empty message from the gateway");
                }
                Ok(None) => break Ok(Outcome::Ended { registered: true }),
                Err(source) => break Err(SessionError::Stream { source, registered: true }),
            },
        }
    };

    // Let the commands in flight finish (their replies still go out when
    // the stream is alive), then stop the reporters. `inbound` stays alive
    // until then: dropping it would cancel the stream.
    drain(&mut commands, settings.drain_timeout).await;
    stop_reporters.cancel();
    while reporters.join_next().await.is_some() {}
    drop(outbound);
    drop(inbound);
    if let Err(e) = &outcome {
        tracing::debug!(error = %Chain(e), "session ended");
    }
    outcome
}

fn message(body: agent_message::Body) -> AgentMessage {
    AgentMessage { body: Some(body) }
}

fn heartbeat_interval(registered: &Registered, default: Duration) -> Duration {
    match registered.heartbeat_interval_ms {
        0 => default,
        ms => Duration::from_millis(u64::from(ms)),
    }
}

/// Waits for the commands in flight, aborting them after `timeout`.
async fn drain(commands: &mut JoinSet<()>, timeout: Duration) {
    if commands.is_empty() {
        return;
    }
    tracing::info!(in_flight = commands.len(), "waiting for commands in flight");
    let waited = tokio::time::timeout(timeout, async {
        while commands.join_next().await.is_some() {}
    })
    .await;
    if waited.is_err() {
        tracing::warn!(
            in_flight = commands.len(),
            ?timeout,
            "abandoning commands still in flight"
        );
        commands.abort_all();
        while commands.join_next().await.is_some() {}
    }
}

async fn handle_command<B: Backend>(
    backend: Arc<B>,
    metrics: Arc<AgentMetrics>,
    outbound: mpsc::Sender<AgentMessage>,
    cmd: Command,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let reply = command::execute(backend.as_ref(), &metrics, cmd).await;
    let id = reply.id;
    if outbound
        .send(message(agent_message::Body::Reply(reply)))
        .await
        .is_err()
    {
        tracing::warn!(
            command = id,
            "the stream ended before the reply could be sent"
        );
    }
}

async fn forward_events(
    mut events: broadcast::Receiver<esb_contracts::agent::WorkerEvent>,
    outbound: mpsc::Sender<AgentMessage>,
    metrics: Arc<AgentMetrics>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.recv() => e,
        };
        match event {
            Ok(event) => {
                metrics.worker_event();
                let send = outbound.send(message(agent_message::Body::Event(event)));
                tokio::select! {
                    _ = stop.cancelled() => return,
                    sent = send => if sent.is_err() { return },
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "worker events were dropped; the gateway learns of them at the next registration");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn send_heartbeats<B: Backend>(
    backend: Arc<B>,
    outbound: mpsc::Sender<AgentMessage>,
    metrics: Arc<AgentMetrics>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let workers = tokio::select! {
            _ = stop.cancelled() => return,
            w = backend.list() => w,
        };
        let heartbeat = match workers {
            Ok(workers) => {
                let live: Vec<_> = workers
                    .iter()
                    .filter(|w| w.state() != WorkerState::Exited)
                    .collect();
                let memory: u64 = live.iter().map(|w| u64::from(w.memory_mb)).sum();
                metrics.set_workers(live.len() as u64, memory);
                Heartbeat {
                    running_workers: u32::try_from(live.len()).unwrap_or(u32::MAX),
                    used_memory_mb: memory,
                }
            }
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "cannot list workers for the heartbeat");
                continue;
            }
        };
        let send = outbound.send(message(agent_message::Body::Heartbeat(heartbeat)));
        tokio::select! {
            _ = stop.cancelled() => return,
            sent = send => if sent.is_err() { return },
        }
    }
}
