//! The S3 endpoint: accept loop, readiness route, graceful shutdown.

use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::BoxAuth;
use crate::store::Store;
use crate::{Settings, StorageError};

/// Readiness route: `GET` answers `200 ok` without authentication once the
/// store is open. The `_` makes it an invalid bucket name, so it never
/// shadows a bucket.
pub const HEALTH_PATH: &str = "/_esb/health";

/// How long in-flight requests may run after shutdown is requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves S3 on `listener` until `shutdown` is cancelled, then stops
/// accepting and drains open connections (bounded by a timeout).
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StorageError> {
    let addr = listener.local_addr().map_err(StorageError::Listener)?;
    let (service, store) = build_service(&settings)?;
    // Owned here and awaited after the connections have drained.
    let sweeper = tokio::spawn(crate::lifecycle::run(
        store,
        settings.lifecycle,
        shutdown.child_token(),
    ));
    tracing::info!(%addr, data_dir = %settings.data_dir.display(), "esb-storage serving S3");

    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (socket, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Transient (EMFILE, aborted handshake): keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Responses are written in several pieces (headers, streamed body):
        // without TCP_NODELAY, Nagle's algorithm delays them by ~40 ms.
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let service = service.clone();
        let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let service = service.clone();
            async move {
                if req.uri().path() == HEALTH_PATH && req.method() == http::Method::GET {
                    return Ok(health_response());
                }
                let span =
                    tracing::debug_span!("s3", method = %req.method(), path = %req.uri().path());
                hyper::service::Service::call(&service, req)
                    .instrument(span)
                    .await
            }
        });
        let conn = http
            .serve_connection(TokioIo::new(socket), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("esb-storage shutting down");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
    }
    if let Err(e) = sweeper.await {
        tracing::error!(error = %e, "lifecycle sweep task failed");
    }
    Ok(())
}

fn build_service(settings: &Settings) -> Result<(S3Service, Store), StorageError> {
    let root = settings
        .data_dir
        .canonicalize()
        .map_err(|source| StorageError::DataDir {
            path: settings.data_dir.clone(),
            source,
        })?;
    let fs = s3s_fs::FileSystem::new(&root).map_err(|e| StorageError::Backend {
        path: settings.data_dir.clone(),
        message: format!("{e:?}"),
    })?;
    let store = Store::new(fs, root);
    let mut builder = S3ServiceBuilder::new(store.clone());
    builder.set_auth(BoxAuth::new(&settings.credentials));
    Ok((builder.build(), store))
}

fn health_response() -> http::Response<s3s::Body> {
    let mut resp = http::Response::new(s3s::Body::from("ok\n".to_owned()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}
