//! Capture of the runtime's stdout and stderr: every line goes to the shim's
//! own stdout (what `docker logs` shows), into the current invocation's tail
//! (for `X-Amz-Log-Type: Tail`), and, when configured, to VictoriaLogs.
//! Lambda-style `START`/`END`/`REPORT` lines frame each invocation.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How much of an invocation's log `Tail` returns, as AWS.
pub const TAIL_BYTES: usize = 4 * 1024;
const SHIP_QUEUE: usize = 4096;
const SHIP_BATCH: usize = 512;
const SHIP_INTERVAL: Duration = Duration::from_millis(500);
const SHIP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The figures of a `REPORT` line.
#[derive(Debug, Clone)]
pub struct Report {
    pub duration: Duration,
    pub memory_size_mb: u32,
    pub max_memory_used_mb: u64,
    pub init_duration: Option<Duration>,
}

impl Report {
    fn line(&self, request_id: &str) -> String {
        let ms = self.duration.as_secs_f64() * 1000.0;
        let mut line = format!(
            "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB\t",
            ms.ceil().max(1.0) as u64,
            self.memory_size_mb,
            self.max_memory_used_mb,
        );
        if let Some(init) = self.init_duration {
            line.push_str(&format!(
                "Init Duration: {:.2} ms\t",
                init.as_secs_f64() * 1000.0
            ));
        }
        line
    }
}

struct Current {
    request_id: String,
    trace_id: String,
    tail: Vec<u8>,
}

#[derive(Default)]
struct State {
    current: Option<Current>,
    partial: [Vec<u8>; 2],
}

/// How `read_available` reads: after the reactor reported readiness, or
/// directly, to drain what is already in the pipe.
#[derive(Clone, Copy)]
enum Read {
    Ready,
    Drain,
}

/// The two pipes the runtime writes to, and what is done with each line.
pub struct LogCapture {
    function: String,
    state: Mutex<State>,
    readers: [pipe::Receiver; 2],
    writers: [OwnedFd; 2],
    shipper: Option<mpsc::Sender<Record>>,
}

/// One shipped log line, in VictoriaLogs' JSON-lines shape.
#[derive(Debug, Serialize)]
struct Record {
    #[serde(rename = "_time")]
    time: String,
    #[serde(rename = "_msg")]
    message: String,
    function: String,
    request_id: Option<String>,
    trace_id: Option<String>,
    level: &'static str,
    stream: Stream,
}

impl LogCapture {
    /// Creates the pipes. With a logs URL, also returns the shipper task,
    /// which the caller owns and awaits on shutdown.
    pub fn new(
        function: String,
        logs_url: Option<String>,
        shutdown: CancellationToken,
    ) -> io::Result<(Arc<Self>, Option<impl std::future::Future<Output = ()>>)> {
        let (out_tx, out_rx) = pipe::pipe()?;
        let (err_tx, err_rx) = pipe::pipe()?;
        let (shipper, task) = match logs_url {
            Some(url) => {
                let (tx, rx) = mpsc::channel(SHIP_QUEUE);
                (Some(tx), Some(ship(url, rx, shutdown)))
            }
            None => (None, None),
        };
        let capture = Arc::new(Self {
            function,
            state: Mutex::new(State::default()),
            readers: [out_rx, err_rx],
            writers: [out_tx.into_blocking_fd()?, err_tx.into_blocking_fd()?],
            shipper,
        });
        Ok((capture, task))
    }

    /// Stdio handles for a new runtime process (write ends of the pipes).
    pub fn child_stdio(&self) -> io::Result<(Stdio, Stdio)> {
        Ok((
            Stdio::from(self.writers[0].try_clone()?),
            Stdio::from(self.writers[1].try_clone()?),
        ))
    }

    /// Reads one stream until the shim stops; the pipes never reach EOF
    /// because the shim keeps their write ends for the next runtime process.
    pub async fn pump(&self, stream: Stream) {
        let reader = &self.readers[stream as usize];
        loop {
            if reader.readable().await.is_err() {
                return;
            }
            let mut state = self.lock();
            if self
                .read_available(&mut state, stream, Read::Ready)
                .is_err()
            {
                return;
            }
        }
    }

    /// Starts attributing output to an invocation and prints `START`.
    pub fn begin(&self, request_id: &str, trace_id: &str, version: &str) {
        let mut state = self.lock();
        state.current = Some(Current {
            request_id: request_id.to_owned(),
            trace_id: trace_id.to_owned(),
            tail: Vec::new(),
        });
        self.emit(
            &mut state,
            Stream::Stdout,
            format!("START RequestId: {request_id} Version: {version}").as_bytes(),
        );
    }

    /// Collects what the runtime has written so far, prints `END` and
    /// `REPORT`, and returns the invocation's last 4 KB of log.
    pub fn finish(&self, report: &Report) -> Bytes {
        let mut state = self.lock();
        for stream in [Stream::Stdout, Stream::Stderr] {
            // A read error here only means nothing more can be collected.
            let _ = self.read_available(&mut state, stream, Read::Drain);
            let partial = std::mem::take(&mut state.partial[stream as usize]);
            if !partial.is_empty() {
                self.emit(&mut state, stream, &partial);
            }
        }
        let Some(request_id) = state.current.as_ref().map(|c| c.request_id.clone()) else {
            return Bytes::new();
        };
        self.emit(
            &mut state,
            Stream::Stdout,
            format!("END RequestId: {request_id}").as_bytes(),
        );
        self.emit(
            &mut state,
            Stream::Stdout,
            report.line(&request_id).as_bytes(),
        );
        let tail = state.current.take().map(|c| c.tail).unwrap_or_default();
        let start = tail.len().saturating_sub(TAIL_BYTES);
        Bytes::copy_from_slice(&tail[start..])
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only log bookkeeping behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads everything the pipe holds right now, emitting complete lines.
    fn read_available(&self, state: &mut State, stream: Stream, how: Read) -> io::Result<()> {
        let reader = &self.readers[stream as usize];
        let mut buf = [0u8; 16 * 1024];
        loop {
            let read = match how {
                Read::Ready => reader.try_read(&mut buf),
                // The reactor may not have seen the pipe become readable
                // yet; read the descriptor directly so that everything the
                // runtime wrote before answering is collected.
                Read::Drain => {
                    nix::unistd::read(reader.as_raw_fd(), &mut buf).map_err(io::Error::from)
                }
            };
            match read {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    let mut chunk = &buf[..n];
                    while let Some(pos) = chunk.iter().position(|b| *b == b'\n') {
                        let mut line = std::mem::take(&mut state.partial[stream as usize]);
                        line.extend_from_slice(&chunk[..pos]);
                        self.emit(state, stream, &line);
                        chunk = &chunk[pos + 1..];
                    }
                    state.partial[stream as usize].extend_from_slice(chunk);
                    if state.partial[stream as usize].len() > 256 * 1024 {
                        let line = std::mem::take(&mut state.partial[stream as usize]);
                        self.emit(state, stream, &line);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn emit(&self, state: &mut State, stream: Stream, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        {
            let mut out = io::stdout().lock();
            // The shim's stdout going away must not fail an invocation.
            let _ = out.write_all(line).and_then(|()| out.write_all(b"\n"));
            let _ = out.flush();
        }
        if let Some(current) = state.current.as_mut() {
            current.tail.extend_from_slice(line);
            current.tail.push(b'\n');
            if current.tail.len() > 4 * TAIL_BYTES {
                let cut = current.tail.len() - TAIL_BYTES;
                current.tail.drain(..cut);
            }
        }
        if let Some(shipper) = &self.shipper {
            let message = String::from_utf8_lossy(line).into_owned();
            let record = Record {
                time: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
                level: level_of(&message, stream),
                message,
                function: self.function.clone(),
                request_id: state.current.as_ref().map(|c| c.request_id.clone()),
                trace_id: state.current.as_ref().map(|c| c.trace_id.clone()),
                stream,
            };
            // Shipping is best effort: a full queue drops the line rather
            // than slowing the function down.
            let _ = shipper.try_send(record);
        }
    }
}

/// Log level from the prefixes the Lambda runtime clients print.
fn level_of(message: &str, stream: Stream) -> &'static str {
    let head = message.trim_start();
    for (prefix, level) in [
        ("[ERROR]", "error"),
        ("[WARNING]", "warn"),
        ("[WARN]", "warn"),
        ("[INFO]", "info"),
        ("[DEBUG]", "debug"),
        ("[TRACE]", "trace"),
        ("[CRITICAL]", "fatal"),
    ] {
        if head.starts_with(prefix) {
            return level;
        }
    }
    match stream {
        Stream::Stdout => "info",
        Stream::Stderr => "error",
    }
}

/// Sends batches of records to `<url>/insert/jsonline` until shutdown, then
/// flushes what is left. Failures are logged and the batch is dropped.
async fn ship(url: String, mut rx: mpsc::Receiver<Record>, shutdown: CancellationToken) {
    let endpoint = format!(
        "{}/insert/jsonline?_stream_fields=function,stream&_msg_field=_msg&_time_field=_time",
        url.trim_end_matches('/')
    );
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut batch = Vec::with_capacity(SHIP_BATCH);
    let mut ticker = tokio::time::interval(SHIP_INTERVAL);
    loop {
        let stop = tokio::select! {
            n = rx.recv_many(&mut batch, SHIP_BATCH) => {
                if n == 0 {
                    true
                } else if batch.len() < SHIP_BATCH {
                    continue;
                } else {
                    false
                }
            }
            _ = ticker.tick() => false,
            () = shutdown.cancelled() => true,
        };
        if stop {
            while let Ok(record) = rx.try_recv() {
                batch.push(record);
            }
        }
        if !batch.is_empty() {
            let mut body = Vec::new();
            for record in batch.drain(..) {
                if serde_json::to_writer(&mut body, &record).is_ok() {
                    body.push(b'\n');
                }
            }
            send(&client, &endpoint, body).await;
        }
        if stop {
            return;
        }
    }
}

async fn send(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    endpoint: &str,
    body: Vec<u8>,
) {
    let request = match hyper::Request::post(endpoint)
        .header(hyper::header::CONTENT_TYPE, "application/stream+json")
        .body(Full::new(Bytes::from(body)))
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build log shipping request");
            return;
        }
    };
    match tokio::time::timeout(SHIP_TIMEOUT, client.request(request)).await {
        Ok(Ok(resp)) if resp.status().is_success() => {}
        Ok(Ok(resp)) => tracing::warn!(status = %resp.status(), "log shipping rejected"),
        Ok(Err(e)) => tracing::warn!(error = %e, "log shipping failed"),
        Err(_) => tracing::warn!("log shipping timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line_has_the_lambda_shape() {
        let r = Report {
            duration: Duration::from_micros(1234),
            memory_size_mb: 128,
            max_memory_used_mb: 40,
            init_duration: Some(Duration::from_micros(100_120)),
        };
        assert_eq!(
            r.line("abc"),
            "REPORT RequestId: abc\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 100.12 ms\t"
        );
    }

    #[test]
    fn levels_follow_runtime_prefixes() {
        assert_eq!(level_of("[ERROR] 2024 boom", Stream::Stdout), "error");
        assert_eq!(level_of("[WARNING]\tx", Stream::Stdout), "warn");
        assert_eq!(level_of("hello", Stream::Stdout), "info");
        assert_eq!(level_of("Traceback", Stream::Stderr), "error");
    }

    #[tokio::test]
    async fn lines_are_framed_and_tailed_per_invocation() {
        let (capture, _) =
            LogCapture::new("f".into(), None, CancellationToken::new()).expect("pipes");
        let (stdout, _stderr) = capture.child_stdio().expect("stdio");
        let status = std::process::Command::new("sh")
            .args(["-c", "printf 'one\\ntwo'"])
            .stdout(stdout)
            .status()
            .expect("sh");
        assert!(status.success());
        capture.begin("req-1", "Root=1-x", "$LATEST");
        let tail = capture.finish(&Report {
            duration: Duration::from_millis(2),
            memory_size_mb: 128,
            max_memory_used_mb: 10,
            init_duration: None,
        });
        let text = String::from_utf8(tail.to_vec()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "START RequestId: req-1 Version: $LATEST");
        assert_eq!(&lines[1..3], ["one", "two"]);
        assert_eq!(lines[3], "END RequestId: req-1");
        assert!(lines[4].starts_with("REPORT RequestId: req-1\tDuration: 2.00 ms"));
    }

    #[tokio::test]
    async fn tail_keeps_the_last_4kb() {
        let (capture, _) =
            LogCapture::new("f".into(), None, CancellationToken::new()).expect("pipes");
        capture.begin("r", "t", "$LATEST");
        {
            let mut state = capture.lock();
            for i in 0..500 {
                capture.emit(
                    &mut state,
                    Stream::Stdout,
                    format!("line {i:04}").as_bytes(),
                );
            }
        }
        let tail = capture.finish(&Report {
            duration: Duration::from_millis(1),
            memory_size_mb: 128,
            max_memory_used_mb: 1,
            init_duration: None,
        });
        assert_eq!(tail.len(), TAIL_BYTES);
        assert!(String::from_utf8_lossy(&tail).contains("line 0499\nEND RequestId: r\nREPORT"));
    }
}
