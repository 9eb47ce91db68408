//! What every ESB service binary does the same way at start and stop: its
//! log format and tracing setup, the exit status for bad configuration, and
//! shutdown on SIGTERM or SIGINT.

use tokio_util::sync::CancellationToken;

/// The exit status for configuration a service cannot run with (sysexits
/// `EX_USAGE`).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// Set (to anything) in a worker's environment, the runtime shim sends its
/// own stderr to stdout before anything else, so a start failure's message
/// reaches a log that keeps only one stream intact. The containerd backend
/// sets it: containerd 1.6's shim writes both streams to one `file://` log
/// and closes that file when stdout ends, dropping what stderr still had to
/// copy when the process exits.
pub const STDERR_TO_STDOUT_ENV: &str = "ESB_STDERR_TO_STDOUT";

/// `ESB_LOG_FORMAT`: `text` for people, `json` inside containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Logs to stderr in `format`, filtered by `ESB_LOG` (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ESB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT. Returns once `shutdown` is
/// cancelled, by a signal or by anyone else.
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = shutdown.cancelled() => return,
            }
            tracing::info!("stopping");
            shutdown.cancel();
        }
        _ => {
            tracing::warn!("cannot install signal handlers: stopping on signals is off");
            shutdown.cancelled().await;
        }
    }
}
