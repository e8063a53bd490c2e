//! The `eddy` binary: parses the command line and runs the chosen subcommand.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use eddy::config::{Cli, Command, ServeArgs};
use eddy::worker::clock::{Clock, SystemClock};
use tracing_subscriber::EnvFilter;

/// How long open calls may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Flows(args) => eddy::cli::main(eddy::cli::flows::run(*args)),
        Command::Stats(args) => eddy::cli::main(eddy::cli::stats::run(*args)),
        Command::Flowgen(args) => eddy::cli::main(eddy::cli::flowgen::run(*args)),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&args.log_level).context("invalid --log-level")?)
        .init();
    let config = args.server_config().map_err(anyhow::Error::msg)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    let state = runtime
        .block_on(async { eddy::server::build_state(config, clock.clone()) })
        .map_err(anyhow::Error::msg)?;
    let engine = state.engine.clone();
    runtime.block_on(async {
        let address = args.listen_address();
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let local = listener.local_addr()?;
        tracing::info!(
            address = %local,
            workers = config.workers,
            window_seconds = config.retention.window,
            retained_buckets = config.retention.closed_buckets,
            "eddy is serving the Goldmane API"
        );
        if args.demo {
            tracing::info!("demo traffic is on: six simulated nodes report every few seconds");
            tokio::spawn(eddy::demo::run(local, 6, move || clock.now()));
        }
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown_signal().await;
            let _ = stopping_tx.send(());
        };
        let server = eddy::server::serve(state, listener, signal);
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => return result.context("the gRPC server failed"),
            _ = stopping_rx => {}
        }
        // Calls still open (streams, idle collectors) get a grace period, then are cut.
        match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
            Ok(result) => result.context("the gRPC server failed"),
            Err(_) => {
                tracing::warn!("open calls did not finish within the grace period; closing them");
                Ok(())
            }
        }
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    engine.shutdown();
    tracing::info!("eddy stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
