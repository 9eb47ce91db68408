use std::process::ExitCode;

use clap::Parser;
use esb_contracts::service::{
    cancel_on_signal, init_tracing, EXIT_BAD_CONFIG, STDERR_TO_STDOUT_ENV,
};
use esb_runtime::config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // First, so even an argument error printed by clap goes to stdout.
    if std::env::var_os(STDERR_TO_STDOUT_ENV).is_some() {
        if let Err(e) = nix::unistd::dup2(1, 2) {
            println!("esb-runtime: cannot send stderr to stdout: {e}");
        }
    }
    let config = Config::parse();
    init_tracing(config.log_format);
    let invoke_addr = config.invoke_addr;
    let api_addr = config.runtime_api_addr;
    let logs_url = config.logs_url.clone();
    let spec = match config.validate() {
        Ok(spec) => spec,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let Err(e) = &spec.launch {
        tracing::error!(error = %e, "the runtime cannot start; every invocation will return this error");
    }
    // One thread is enough for one invocation at a time, and keeps the
    // shim's footprint small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
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
        let invoke = TcpListener::bind(invoke_addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {invoke_addr}: {e}"))?;
        let api = TcpListener::bind(api_addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {api_addr}: {e}"))?;
        tracing::info!(%invoke_addr, runtime_api = %api_addr, function = %spec.name, "esb-runtime listening");
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        esb_runtime::serve(spec, invoke, api, logs_url, shutdown).await?;
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
