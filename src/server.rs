//! Assembles the engine, the shared state and the tonic server, and serves on a listener
//! until a shutdown signal.
//!
//! The gRPC port carries the three `goldmane` services, Eddy's `eddy.views.v1.Views`,
//! `grpc.health.v1.Health` and server
//! reflection v1 and v1alpha (SPEC §1.1), in plaintext or TLS (SPEC §11.2).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::ServerTlsConfig;

use crate::api::collector::limits::{ConnectCalls, ConnectLimits};
use crate::api::collector::CollectorService;
use crate::api::flows::FlowsService;
use crate::api::flows_wire::FlowsWire;
use crate::api::framing::WholeFramesLayer;
use crate::api::oversize::OversizeStatusLayer;
use crate::api::request_limits::RequestLimits;
use crate::api::statistics::StatisticsService;
use crate::api::statistics_wire::StatisticsWire;
use crate::api::views::ViewsService;
use crate::api::views_wire::ViewsWire;
use crate::catalog::collector::CatalogCollector;
use crate::catalog::{Catalog, CatalogLimits};
use crate::health::Health;
use crate::ingest::dedup::{DedupScope, Deduplicator};
use crate::ingest::threads::{IngestThreads, INGEST_NICE};
use crate::ingest::{IngestCounters, InputLimits};
use crate::metrics::{Metrics, QueryTimerLayer};
use crate::retention::Retention;
use crate::shutdown::Shutdown;
use crate::state::ServerState;
use crate::streams::views::ViewHub;
use crate::streams::{StreamHub, StreamLimits};
use crate::worker::clock::Clock;
use crate::worker::controller::TICK_RECORDS;
use crate::worker::fault::FaultInjection;
use crate::worker::shared_reads::ReadLimits;
use crate::worker::{Engine, EngineConfig};

/// Largest request message accepted, in bytes.
pub const MAX_DECODED_MESSAGE: usize = 4 * 1024 * 1024;
/// Most concurrent HTTP/2 streams on one connection (many `Stream` calls may share one).
pub const MAX_CONCURRENT_STREAMS: u32 = 16_384;
/// HTTP/2 flow-control window of one stream: bytes a call's client may have sent that the
/// server has not read (hyper's default, 1 MiB: a full batch of `Connect` updates).
pub const STREAM_WINDOW: u32 = 1024 * 1024;
/// HTTP/2 flow-control window of one connection: bytes all its streams together may have sent
/// that the server has not read. A `Connect` call reads nothing while its batch is handed over,
/// so under hyper's default (1 MiB, shared) 64 calls on one connection had about 16 KiB each
/// (some 30 realistic updates) waiting when they read their next batch, and paid the costs of
/// a batch that often. This lets 32 calls each fill their stream window; it bounds what one
/// connection holds unread.
pub const CONNECTION_WINDOW: u32 = 32 * STREAM_WINDOW;

/// Everything needed to build the server's state.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    /// Timely worker threads.
    pub workers: usize,
    /// Window and retention.
    pub retention: Retention,
    /// How often the engine closes a tick on its own.
    pub tick_interval: Duration,
    /// De-duplication scope.
    pub dedup_scope: DedupScope,
    /// Fingerprints remembered per de-duplication scope.
    pub dedup_capacity: usize,
    /// Interner bounds.
    pub catalog: CatalogLimits,
    /// Live stream bounds.
    pub streams: StreamLimits,
    /// Size bounds of one update.
    pub input_limits: InputLimits,
    /// Size bounds of one query request.
    pub request_limits: RequestLimits,
    /// `Connect` bounds.
    pub connect: ConnectLimits,
    /// How queries share reads.
    pub reads: ReadLimits,
    /// Records after which the engine closes a tick.
    pub tick_records: usize,
    /// Nice levels the threads serving `Connect` calls run below the rest of the server.
    pub ingest_nice: u8,
    /// A fault to inject into the engine (tests of the fault path only).
    pub fault_injection: Option<FaultInjection>,
}

impl ServerConfig {
    /// Defaults for `workers` workers and the given retention.
    pub fn new(workers: usize, retention: Retention) -> Self {
        ServerConfig {
            workers,
            retention,
            tick_interval: Duration::from_millis(50),
            dedup_scope: DedupScope::PeerIp,
            dedup_capacity: 2_000_000,
            catalog: CatalogLimits::default(),
            streams: StreamLimits::default(),
            input_limits: InputLimits::default(),
            request_limits: RequestLimits::default(),
            connect: ConnectLimits::default(),
            reads: ReadLimits::default(),
            tick_records: TICK_RECORDS,
            ingest_nice: INGEST_NICE,
            fault_injection: None,
        }
    }
}

/// Starts the engine and the stream hub and builds the services' shared state. Must run
/// inside a tokio runtime.
pub fn build_state(config: ServerConfig, clock: Arc<dyn Clock>) -> Result<ServerState, String> {
    let engine = Engine::start(
        EngineConfig {
            workers: config.workers,
            retention: config.retention,
            tick_interval: config.tick_interval,
            tick_records: config.tick_records,
            fault_injection: config.fault_injection,
        },
        clock.clone(),
    )?
    .with_read_limits(config.reads);
    let ingest_threads = IngestThreads::start(
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        config.ingest_nice,
    )
    .map(Arc::new)
    .map_err(|error| format!("cannot start the ingest threads: {error}"))?;
    let catalog = Arc::new(Catalog::new(config.catalog));
    tokio::spawn(CatalogCollector::new(engine.clone(), catalog.clone()).run());
    let streams = StreamHub::start(
        engine.clone(),
        catalog.clone(),
        config.retention,
        clock.now(),
        config.streams,
    );
    let view_streams = ViewHub::start(
        engine.clone(),
        catalog.clone(),
        config.retention,
        config.streams,
    );
    let shutdown = Shutdown::new();
    let health = Health::start(
        engine.clone(),
        config.retention,
        clock.clone(),
        shutdown.clone(),
    );
    let hub = streams.clone();
    let view_hub = view_streams.clone();
    let stopping = shutdown.wait();
    tokio::spawn(async move {
        stopping.await;
        hub.shutdown();
        view_hub.shutdown();
    });
    Ok(ServerState {
        engine,
        catalog,
        streams,
        view_streams,
        retention: config.retention,
        clock,
        ingest: Arc::new(IngestCounters::default()),
        dedup: Arc::new(Deduplicator::new(config.dedup_scope, config.dedup_capacity)),
        connect: Arc::new(ConnectCalls::new(config.connect)),
        ingest_threads,
        metrics: Arc::new(Metrics::default()),
        health,
        shutdown,
        input_limits: config.input_limits,
        request_limits: config.request_limits,
        durability: None,
    })
}

/// Serves every gRPC service in plaintext on `listener` until `shutdown` completes.
pub async fn serve(
    state: ServerState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_with(state, listener, None, shutdown).await
}

/// Serves every gRPC service on `listener`, over TLS when `tls` is set, until `shutdown`
/// completes. Then no new call is accepted and the server returns once open calls end.
pub async fn serve_with(
    state: ServerState,
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    // A custom listener does not get TCP_NODELAY by default; without it receipts stall on
    // Nagle's algorithm and delayed ACKs.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let reporting = tokio::spawn(state.health.clone().report_to(reporter));
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled descriptor sets are valid");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the compiled descriptor sets are valid");
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let served = builder
        .layer(QueryTimerLayer::new(state.metrics.clone()))
        .layer(OversizeStatusLayer)
        .layer(WholeFramesLayer)
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(
            CollectorService::new(state.clone()).max_decoding_message_size(MAX_DECODED_MESSAGE),
        )
        .add_service(FlowsWire::new(
            FlowsService::new(state.clone()),
            MAX_DECODED_MESSAGE,
        ))
        .add_service(StatisticsWire::new(
            StatisticsService::new(state.clone()),
            MAX_DECODED_MESSAGE,
        ))
        .add_service(ViewsWire::new(
            ViewsService::new(state.clone()),
            MAX_DECODED_MESSAGE,
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    reporting.abort();
    served
}
