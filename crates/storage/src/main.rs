use std::process::ExitCode;

use clap::Parser;
use esb_contracts::service::{cancel_on_signal, init_tracing, EXIT_BAD_CONFIG};
use esb_storage::{CancellationToken, Config, HealthcheckConfig, HEALTH_PATH};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "healthcheck")
    {
        return healthcheck();
    }
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_BAD_CONFIG),
            };
        }
    };
    init_tracing(config.log_format);
    let settings = match config.validate() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("invalid configuration: {:#}", anyhow::Error::from(e));
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
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.addr))?;
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        esb_storage::serve(settings, listener, shutdown).await?;
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

fn healthcheck() -> ExitCode {
    // The first argument, "healthcheck", stands in for the program name.
    let config = match HealthcheckConfig::try_parse_from(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let addr = config.probe_addr();
    if esb_contracts::health::probe(addr, HEALTH_PATH) {
        ExitCode::SUCCESS
    } else {
        eprintln!("esb-storage: no 200 from http://{addr}{HEALTH_PATH}");
        ExitCode::FAILURE
    }
}
