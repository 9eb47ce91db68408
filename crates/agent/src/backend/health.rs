//! The readiness probe: `GET /health` on a worker's invoke endpoint.
//!
//! Callers decide which addresses may be probed (see the network safety rule
//! in [`super::docker`]); this module only speaks HTTP/1.1 to the address it
//! is given.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Whether the worker at `addr` answers `GET /health` with 200 within
/// `timeout` (the shim answers 200 once usable, 503 while starting).
/// Any failure (refused, reset, timeout, other status) is `false`.
pub async fn is_ready(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, status(addr)).await,
        Ok(Some(200))
    )
}

/// How a worker's start ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Readiness {
    /// `GET /health` answered 200.
    Ready,
    /// The worker stopped before it was ready, for this reason.
    Stopped(String),
    /// The deadline passed first.
    TimedOut,
}

/// How often a start that is not ready yet asks whether the worker stopped.
const STATE_CHECK_EVERY: Duration = Duration::from_millis(300);

/// Polls [`is_ready`] until 200 or `deadline` (every 5 ms at first, backing
/// off to 100 ms). Every 300 ms it asks `stopped` whether the worker already
/// stopped, and why, so a start that crashes fails at once rather than at the
/// deadline.
pub async fn wait_ready<F, Fut, E>(
    addr: SocketAddr,
    deadline: tokio::time::Instant,
    mut stopped: F,
) -> Result<Readiness, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, E>>,
{
    use tokio::time::Instant;
    let mut delay = Duration::from_millis(5);
    let mut last_state_check = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(Readiness::TimedOut);
        }
        if is_ready(addr, (deadline - now).min(Duration::from_secs(1))).await {
            return Ok(Readiness::Ready);
        }
        if last_state_check.elapsed() >= STATE_CHECK_EVERY {
            last_state_check = Instant::now();
            if let Some(reason) = stopped().await? {
                return Ok(Readiness::Stopped(reason));
            }
        }
        tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// The status of `GET /health`, or `None` when there is no HTTP answer.
async fn status(addr: SocketAddr) -> Option<u16> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    let request = Request::get("/health")
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .ok()?;
    let response = sender.send_request(request);
    tokio::pin!(conn, response);
    tokio::select! {
        biased;
        r = &mut response => r.ok().map(|r| r.status().as_u16()),
        // The connection ended: the answer, if one came, is there now.
        _ = &mut conn => response.await.ok().map(|r| r.status().as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn serve_once(status_line: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let body = "{}";
                let _ = s
                    .write_all(
                        format!(
                            "{status_line}\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn ready_only_on_200() {
        let ok = serve_once("HTTP/1.1 200 OK").await;
        assert!(is_ready(ok, Duration::from_secs(2)).await);
        let starting = serve_once("HTTP/1.1 503 Service Unavailable").await;
        assert!(!is_ready(starting, Duration::from_secs(2)).await);
        let running = || async { Ok::<_, ()>(None) };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        assert_eq!(
            wait_ready(starting, deadline, running).await,
            Ok(Readiness::TimedOut)
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        assert_eq!(
            wait_ready(ok, deadline, running).await,
            Ok(Readiness::Ready)
        );
        let crashed = || async { Ok::<_, ()>(Some("exit status 1".to_owned())) };
        assert_eq!(
            wait_ready(starting, deadline, crashed).await,
            Ok(Readiness::Stopped("exit status 1".to_owned()))
        );
    }

    #[tokio::test]
    async fn closed_port_is_not_ready() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        assert!(!is_ready(addr, Duration::from_secs(1)).await);
    }
}
