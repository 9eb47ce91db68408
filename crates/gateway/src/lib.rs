//! The ESB gateway: the API-Gateway-compatible front that runs functions on
//! workers across compute nodes, scales them out and back to zero.
//!
//! `serve` takes bound listeners and a shutdown token; `main.rs` only parses
//! the configuration and binds.

pub mod api;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod cors;
pub mod error;
pub mod event;
pub mod function;
pub mod invocation;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod pool;
pub mod queue;
pub mod route;
pub mod schedule;
pub mod scheduler;
pub mod sigv4;
pub mod store;
pub mod tls;
pub mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::serve::ListenerExt as _;
use esb_contracts::agent::node_service_server::NodeServiceServer;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, SystemClock};
use crate::catalog::{Catalog, CatalogError, Defaults};
use crate::config::Settings;
use crate::event::ApiContext;
use crate::metrics::Metrics;
use crate::node::{NodeGrpc, NodeRegistry};
use crate::pool::Pools;
use crate::sigv4::Verifier;
use crate::store::{DeploymentReason, NewDeployment, Store, StoreError};

/// How often the catalog file is checked for changes.
const CATALOG_POLL: Duration = Duration::from_secs(1);
/// How often pools are tended (idle reaping, warm minimum).
const POOL_TICK: Duration = Duration::from_secs(1);
const HEARTBEAT: Duration = Duration::from_secs(5);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The listeners the gateway serves on, bound by the caller.
pub struct Listeners {
    /// Client HTTPS; served only when TLS material is configured.
    pub https: Option<TcpListener>,
    pub http: TcpListener,
    pub grpc: TcpListener,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("authentication setup: {0}")]
    Auth(#[from] auth::AuthConfigError),
    #[error("an HTTPS listener was given but no TLS certificate is configured")]
    HttpsWithoutTls,
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
    #[error("state store: {0}")]
    Store(#[from] StoreError),
}

/// The shared state behind every request.
pub struct Gateway {
    pub settings: Settings,
    catalog: RwLock<Arc<Catalog>>,
    pub pools: Arc<Pools>,
    pub registry: Arc<NodeRegistry>,
    pub auth: Authenticator,
    /// SigV4 verification of Lambda API requests.
    pub sigv4: Verifier,
    /// Durable state (deployments).
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// What events say about the API (account, id, stage).
    pub api: ApiContext,
}

impl Gateway {
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            max_workers: self.settings.default_max_workers,
        }
    }

    fn install(&self, catalog: Catalog) {
        let catalog = Arc::new(catalog);
        self.pools.apply(&catalog);
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = catalog;
    }

    /// Records the running catalog as a deployment.
    async fn record_deployment(&self, reason: DeploymentReason) -> Result<(), StoreError> {
        let catalog = self.catalog();
        let recorded = self
            .store
            .record_deployment(&NewDeployment {
                catalog_sha256: &catalog.sha256,
                functions: catalog.functions.len(),
                routes: catalog.source.routes.len(),
                reason,
                gateway_id: self.registry.gateway_id(),
            })
            .await?;
        tracing::info!(
            deployment = recorded.id,
            catalog_sha256 = %recorded.catalog_sha256,
            "deployment recorded"
        );
        Ok(())
    }
}

/// Loads the catalog at startup: a missing file is an empty catalog (the
/// box is up before the first build), anything else wrong is an error.
fn initial_catalog(path: &Path, defaults: Defaults) -> Result<Catalog, CatalogError> {
    if path.exists() {
        Catalog::load(path, defaults)
    } else {
        tracing::warn!(catalog = %path.display(), "no catalog yet: serving no functions until it appears");
        Catalog::empty(defaults)
    }
}

/// Serves until `shutdown` is cancelled, then drains and returns.
pub async fn serve(
    settings: Settings,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let defaults = Defaults {
        max_workers: settings.default_max_workers,
    };
    let catalog = initial_catalog(&settings.catalog, defaults)?;
    let https_config = match (&settings.tls, &listeners.https) {
        (Some(tls), Some(_)) => Some(tls.https_config()?),
        (None, Some(_)) => return Err(ServeError::HttpsWithoutTls),
        _ => None,
    };
    let auth = Authenticator::new(settings.auth.clone())?;
    let sigv4 = Verifier::new(
        settings.access_key.clone(),
        &settings.region,
        "lambda",
        Arc::new(SystemClock),
    );
    // The database may still be starting: this waits (bounded) for it.
    let store = match Store::connect(&settings.store, settings.database_wait, &shutdown).await {
        Ok(store) => store,
        // Stopped while waiting for the database: a clean stop.
        Err(StoreError::Cancelled) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let metrics = Arc::new(Metrics::new());
    let (node_events, mut node_events_rx) = mpsc::channel(1024);
    let registry = NodeRegistry::new(uuid::Uuid::new_v4().to_string(), HEARTBEAT, node_events);
    let pools = Pools::new(
        Arc::clone(&registry),
        Arc::clone(&metrics),
        settings.pools.clone(),
    );
    pools.apply(&catalog);
    let gateway = Arc::new(Gateway {
        catalog: RwLock::new(Arc::new(catalog)),
        pools: Arc::clone(&pools),
        registry: Arc::clone(&registry),
        auth,
        sigv4,
        store,
        metrics,
        api: ApiContext {
            account_id: settings.account_id.clone(),
            api_id: settings.api_id.clone(),
            stage: settings.stage.clone(),
            domain_name: "localhost".to_owned(),
        },
        settings,
    });
    tracing::info!(
        gateway_id = registry.gateway_id(),
        functions = gateway.catalog().functions.len(),
        store = gateway.store.backend(),
        "gateway starting"
    );
    gateway.record_deployment(DeploymentReason::Startup).await?;

    let tasks = TaskTracker::new();
    {
        let pools = Arc::clone(&pools);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    event = node_events_rx.recv() => match event {
                        Some(event) => pools.handle(event),
                        None => return,
                    },
                    () = stop.cancelled() => return,
                }
            }
        });
    }
    {
        let pools = Arc::clone(&pools);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval(POOL_TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => pools.tick(),
                    () = stop.cancelled() => return,
                }
            }
        });
    }
    tasks.spawn(watch_catalog(Arc::clone(&gateway), shutdown.clone()));
    tasks.spawn(queue::dispatch(Arc::clone(&gateway), shutdown.clone()));
    {
        // Scheduled runs go into the queue the dispatcher above drains.
        let source = Arc::clone(&gateway);
        tasks.spawn(scheduler::run(
            gateway.store.clone(),
            scheduler::QueueInvoker {
                store: gateway.store.clone(),
                region: gateway.settings.region.clone(),
                account: gateway.settings.account_id.clone(),
            },
            Arc::new(SystemClock),
            scheduler::SchedulerContext {
                region: gateway.settings.region.clone(),
                account: gateway.settings.account_id.clone(),
            },
            move || source.catalog(),
            shutdown.clone(),
        ));
    }

    let router = api::router(Arc::clone(&gateway));
    let grpc = {
        let mut server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)));
        // Agents authenticate with client certificates: the gRPC port uses
        // TLS exactly when there is a CA to check them against.
        match &gateway.settings.tls {
            Some(tls) if tls.client_ca_pem.is_some() => {
                server = server.tls_config(tls.grpc_config())?;
            }
            _ => tracing::warn!(
                "no agent CA configured: the gRPC port accepts agents in plain text, without authentication"
            ),
        }
        let service = NodeServiceServer::new(NodeGrpc::new(Arc::clone(&registry)));
        let stop = shutdown.clone();
        let incoming = TcpListenerStream::new(listeners.grpc);
        tasks.spawn(async move {
            server
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stop.cancelled())
                .await
        })
    };
    let port_of = |l: &TcpListener| l.local_addr().map(|a| a.port()).unwrap_or_default();
    let http = {
        let port = port_of(&listeners.http);
        let app = router
            .clone()
            .layer(axum::Extension(api::LocalPort(("http", port))))
            .into_make_service_with_connect_info::<SocketAddr>();
        let stop = shutdown.clone();
        let listener = listeners.http.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };
    let https = match (listeners.https, https_config) {
        (Some(listener), Some(config)) => {
            let port = port_of(&listener);
            Some(tasks.spawn(serve_https(
                listener,
                TlsAcceptor::from(config),
                router.layer(axum::Extension(api::LocalPort(("https", port)))),
                shutdown.clone(),
            )))
        }
        _ => None,
    };

    shutdown.cancelled().await;
    tracing::info!("gateway stopping");
    registry.close();
    let grpc_result = grpc.await.unwrap_or(Ok(()));
    let http_result = http.await.unwrap_or(Ok(()));
    if let Some(https) = https {
        let _ = https.await;
    }
    pools.close().await;
    registry.stopped().await;
    tasks.close();
    tasks.wait().await;
    gateway.store.close().await;
    grpc_result?;
    http_result?;
    Ok(())
}

/// Reloads the catalog when its file changes; a bad file is logged and the
/// running catalog kept.
async fn watch_catalog(gateway: Arc<Gateway>, shutdown: CancellationToken) {
    let path: PathBuf = gateway.settings.catalog.clone();
    let stamp = |p: &Path| -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(p).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    let mut last = stamp(&path);
    let mut ticker = tokio::time::interval(CATALOG_POLL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        if now.is_none() {
            tracing::warn!(catalog = %path.display(), "catalog file removed: keeping the running catalog");
            continue;
        }
        let loaded = {
            let path = path.clone();
            let defaults = gateway.defaults();
            tokio::task::spawn_blocking(move || Catalog::load(&path, defaults)).await
        };
        match loaded {
            Ok(Ok(catalog)) => {
                tracing::info!(
                    functions = catalog.functions.len(),
                    routes = catalog.source.routes.len(),
                    "catalog reloaded"
                );
                gateway.install(catalog);
                if let Err(e) = gateway.record_deployment(DeploymentReason::Reload).await {
                    tracing::error!(error = %e, "the reloaded catalog serves but was not recorded");
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "catalog not reloaded: keeping the running catalog")
            }
            Err(e) => tracing::error!(error = %e, "catalog reload failed"),
        }
    }
}

/// Serves the router over TLS on `listener` until shutdown, then lets open
/// connections finish.
async fn serve_https(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Responses go out in pieces; without TCP_NODELAY, Nagle's
        // algorithm can hold the last one back for ~40 ms.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    let mut router = router.clone();
                    async move {
                        use tower::Service as _;
                        router.call(request.map(axum::body::Body::new)).await
                    }
                },
            );
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTPS connections still open after 30 s: closing them");
    }
    connections.close();
    connections.wait().await;
}
