use std::process::ExitCode;

use clap::Parser;
use esb_contracts::health;
use esb_contracts::service::{cancel_on_signal, init_tracing, EXIT_BAD_CONFIG};
use esb_gateway::config::{Command, Config};
use esb_gateway::Listeners;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(Command::Healthcheck) = config.command {
        // The Compose health check: no logging setup, nothing bound.
        let healthy = health::probe(health::loopback(config.http_addr), "/health");
        return if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    init_tracing(config.log_format);
    let settings = match config.validate() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let bind = |addr: std::net::SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
        };
        let https = match settings.tls {
            Some(_) => Some(bind(config.https_addr).await?),
            None => {
                tracing::warn!("no TLS certificate configured: HTTPS is off");
                None
            }
        };
        let listeners = Listeners {
            https,
            http: bind(config.http_addr).await?,
            grpc: bind(config.grpc_addr).await?,
        };
        tracing::info!(
            https = %config.https_addr, http = %config.http_addr, grpc = %config.grpc_addr,
            "esb-gateway listening"
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        esb_gateway::serve(settings, listeners, shutdown).await?;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
