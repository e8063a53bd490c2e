//! The `eddy serve` process from start to exit: checks every setting and file first, starts
//! the engine, binds the gRPC, health and metrics ports, runs the emitter, and on SIGTERM or
//! SIGINT stops in order (SPEC §11.6):
//!
//! 1. readiness turns false and no new call is accepted;
//! 2. live streams end with `UNAVAILABLE`; each `Connect` call finishes the batch it holds
//!    (handed to the engine and receipted), then ends with `UNAVAILABLE`;
//! 3. once every call has ended (or after [`SHUTDOWN_GRACE`]), the engine is synced, the
//!    totals are logged (`eddy stopped`), and the process exits 0.
//!
//! If a worker or the controller dies (SPEC §12.8), the cause is logged and `run` returns
//! [`DaemonError::Engine`] at once, without waiting for calls or threads: the process exits
//! non-zero and an orchestrator restarts it. A panic anywhere is logged with its thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eddy_dataflows::filter::FlowFilter;
use eddy_dataflows::model::BucketRange;
use eddy_dataflows::queries::list::{ListQuery, SortField};
use tokio::net::TcpListener;

use crate::config::ServeArgs;
use crate::emitter::Emitter;
use crate::ingest::SkipReason;
use crate::state::ServerState;
use crate::worker::clock::{Clock, SystemClock};
use crate::worker::fault::FaultInjection;

/// How long open calls may take to end after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why `eddy serve` could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A setting is invalid.
    #[error("{0}")]
    Config(String),
    /// A TLS file is unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The emitter's state file is unusable.
    #[error(transparent)]
    Emitter(#[from] crate::emitter::progress::ProgressError),
    /// A port could not be bound; the message names the setting to change.
    #[error("{what} port {address} {}: set {setting}", bind_problem(.source))]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        address: SocketAddr,
        /// The flag and variable that choose it, with a hint.
        setting: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The engine or the runtime could not start.
    #[error("{0}")]
    Start(String),
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
    /// A worker or the controller died.
    #[error("the dataflow engine failed ({0}); exiting so that the process is restarted")]
    Engine(String),
}

/// The gRPC address's settings.
const GRPC_SETTING: &str = "--listen/EDDY_LISTEN or PORT (port 0 picks a free port)";
/// The health port's settings.
const HEALTH_SETTING: &str = "--health-port/HEALTH_PORT (0 picks a free port)";
/// The metrics port's settings.
const METRICS_SETTING: &str = "--prometheus-port/PROMETHEUS_PORT (0 turns metrics off)";
/// The settings of a port shared by health and metrics.
const SHARED_SETTING: &str = "--health-port/HEALTH_PORT or --prometheus-port/PROMETHEUS_PORT";

fn bind_problem(source: &std::io::Error) -> String {
    match source.kind() {
        std::io::ErrorKind::AddrInUse => "is in use".to_string(),
        _ => format!("cannot be used ({source})"),
    }
}

/// A bound listener and the address it got.
async fn bind(
    what: &'static str,
    setting: &'static str,
    address: SocketAddr,
) -> Result<(TcpListener, SocketAddr), DaemonError> {
    let error = |source| DaemonError::Bind {
        what,
        address,
        setting,
        source,
    };
    let listener = TcpListener::bind(address).await.map_err(error)?;
    let local = listener.local_addr().map_err(error)?;
    Ok((listener, local))
}

/// Runs `eddy serve` until a shutdown signal. Logging must already be installed.
pub fn run(args: ServeArgs) -> Result<(), DaemonError> {
    log_panics();
    let mut config = args.server_config().map_err(DaemonError::Config)?;
    config.fault_injection = FaultInjection::from_env().map_err(DaemonError::Config)?;
    let operations = &args.operations;
    let tls = operations.server_tls()?.map(|tls| tls.load()).transpose()?;
    let mut emitter_config = operations
        .emitter(&config.retention)
        .map_err(DaemonError::Config)?;
    if let Some(emitter) = &mut emitter_config {
        emitter.state_file = args.durability.state_file(&emitter.state_file);
    }
    if operations.ca_for_emitter_only() {
        tracing::warn!(
            "CA_CERT_PATH verifies the PUSH_URL server only: without SERVER_CERT_PATH and \
             SERVER_KEY_PATH the gRPC port is plaintext"
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let emitter = emitter_config
        .map(|emitter| Emitter::new(emitter, clock.now()))
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::memory_return::thread_idle)
        .build()
        .map_err(|error| DaemonError::Start(format!("cannot start the tokio runtime: {error}")))?;
    let mut state = runtime
        .block_on(async { crate::server::build_state(config, clock.clone()) })
        .map_err(DaemonError::Start)?;
    // Recovery comes before any port is bound: no call is answered, and readiness cannot
    // turn true, before every receipted update is back in the engine (SPEC §13.2).
    state.durability = runtime
        .block_on(crate::durability::recovery::recover(
            &args.durability,
            &state,
        ))
        .map_err(DaemonError::Start)?;
    let engine = state.engine.clone();
    let served = runtime.block_on(async {
        let (listener, local) = bind("gRPC", GRPC_SETTING, args.listen_address()).await?;
        let health = operations.health_address();
        let metrics = operations.metrics_address();
        let health_address = start_admin(&state, health, metrics).await?;
        let signalled = crate::shutdown::signal();
        tracing::info!(
            address = %local,
            tls = tls.is_some(),
            mtls = tls.is_some() && operations.ca_cert_path.is_some(),
            health = ?health_address.0,
            metrics = ?health_address.1,
            emitter = emitter.is_some(),
            data_dir = ?args.durability.data_dir,
            workers = config.workers,
            window_seconds = config.retention.window,
            retained_buckets = config.retention.closed_buckets,
            "eddy is serving the Goldmane API"
        );
        if let Some(emitter) = emitter {
            tokio::spawn(emitter.run(state.clone()));
        }
        if args.demo {
            tracing::info!("demo traffic is on: six simulated nodes report every few seconds");
            let clock = clock.clone();
            tokio::spawn(crate::demo::run(local, 6, move || clock.now()));
        }
        let shutdown = state.shutdown.clone();
        tokio::spawn(async move {
            signalled.await;
            tracing::info!("shutting down: no new calls; ending streams and collectors");
            shutdown.trigger();
        });
        let server = crate::server::serve_with(state.clone(), listener, tls, state.shutdown.wait());
        tokio::pin!(server);
        let failed = state.engine.failed();
        tokio::pin!(failed);
        tokio::select! {
            result = &mut server => result?,
            cause = &mut failed => return Err(DaemonError::Engine(cause)),
            _ = state.shutdown.wait() => {
                tokio::select! {
                    ended = tokio::time::timeout(SHUTDOWN_GRACE, server) => match ended {
                        Ok(result) => result?,
                        Err(_) => tracing::warn!("open calls did not end within the grace period"),
                    },
                    cause = &mut failed => return Err(DaemonError::Engine(cause)),
                }
            }
        }
        log_totals(&state).await;
        Ok::<(), DaemonError>(())
    });
    drop(state);
    if let Err(DaemonError::Engine(_)) = served {
        // The engine's threads may never end: leave them to the process exit.
        runtime.shutdown_background();
        return served;
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    engine.shutdown();
    served
}

/// Logs every panic with its thread before the default report on standard error.
fn log_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            panic = %panic,
            "a thread panicked"
        );
        report(panic);
    }));
}

/// Binds and starts the health and metrics listeners (one listener when they share an
/// address). Returns their bound addresses.
async fn start_admin(
    state: &ServerState,
    health: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), DaemonError> {
    use crate::admin::{health_routes, metrics_routes, serve};
    if let (Some(health), Some(metrics)) = (health, metrics) {
        if health == metrics {
            let (listener, local) = bind("health and metrics", SHARED_SETTING, health).await?;
            let routes = health_routes(state.health.clone()).merge(metrics_routes(state.clone()));
            tokio::spawn(serve(listener, routes));
            return Ok((Some(local), Some(local)));
        }
    }
    let mut addresses = (None, None);
    if let Some(address) = health {
        let (listener, local) = bind("health", HEALTH_SETTING, address).await?;
        addresses.0 = Some(local);
        tokio::spawn(serve(listener, health_routes(state.health.clone())));
    }
    if let Some(address) = metrics {
        let (listener, local) = bind("metrics", METRICS_SETTING, address).await?;
        addresses.1 = Some(local);
        tokio::spawn(serve(listener, metrics_routes(state.clone())));
    }
    Ok(addresses)
}

/// Waits until the engine reflects everything handed to it, then logs the ingest totals and
/// the records the views hold: every stored update is one record.
async fn log_totals(state: &ServerState) {
    let ingest = &state.ingest;
    let skipped: u64 = SkipReason::ALL
        .iter()
        .map(|reason| ingest.skipped_total(*reason))
        .sum();
    let now = state.now();
    let query = ListQuery {
        range: BucketRange {
            gte: state.retention.oldest(now),
            lt: state.retention.newest(now) + state.retention.window,
        },
        window: state.retention.window,
        interval: 0,
        filter: FlowFilter::default(),
        sort: vec![SortField::Time],
        limit: None,
        name_ranks: Arc::new(Vec::new()),
    };
    let records: Option<i64> = match state.engine.sync().await {
        Ok(()) => state.engine.list(query).await.ok().map(|partials| {
            partials
                .iter()
                .flat_map(|partial| &partial.rows)
                .map(|row| row.stats.records)
                .sum()
        }),
        Err(_) => None,
    };
    tracing::info!(
        received = ingest.received_total(),
        stored = ingest.stored_total(),
        skipped,
        records_in_views = records.unwrap_or(-1),
        "eddy stopped"
    );
}
