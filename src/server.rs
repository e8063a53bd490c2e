//! Assembles the engine, the shared state and the tonic server, and serves on a listener
//! until a shutdown signal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::api::collector::CollectorService;
use crate::api::flows::FlowsService;
use crate::api::statistics::StatisticsService;
use crate::catalog::{Catalog, CatalogLimits};
use crate::ingest::dedup::{DedupScope, Deduplicator};
use crate::ingest::IngestCounters;
use crate::proto::flow_collector_server::FlowCollectorServer;
use crate::proto::flows_server::FlowsServer;
use crate::proto::statistics_server::StatisticsServer;
use crate::retention::Retention;
use crate::state::ServerState;
use crate::streams::{StreamHub, StreamLimits};
use crate::worker::clock::Clock;
use crate::worker::{Engine, EngineConfig};

/// Largest request message accepted, in bytes.
pub const MAX_DECODED_MESSAGE: usize = 4 * 1024 * 1024;
/// Most concurrent HTTP/2 streams on one connection (many `Stream` calls may share one).
pub const MAX_CONCURRENT_STREAMS: u32 = 16_384;

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
        },
        clock.clone(),
    )?;
    let catalog = Arc::new(Catalog::new(config.catalog));
    let streams = StreamHub::start(
        engine.clone(),
        catalog.clone(),
        config.retention,
        clock.now(),
        config.streams,
    );
    Ok(ServerState {
        engine,
        catalog,
        streams,
        retention: config.retention,
        clock,
        ingest: Arc::new(IngestCounters::default()),
        dedup: Arc::new(Deduplicator::new(config.dedup_scope, config.dedup_capacity)),
    })
}

/// Serves every gRPC service on `listener` until `shutdown` completes.
pub async fn serve(
    state: ServerState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    // A custom listener does not get TCP_NODELAY by default; without it receipts stall on
    // Nagle's algorithm and delayed ACKs.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(
            FlowCollectorServer::new(CollectorService::new(state.clone()))
                .max_decoding_message_size(MAX_DECODED_MESSAGE),
        )
        .add_service(
            FlowsServer::new(FlowsService::new(state.clone()))
                .max_decoding_message_size(MAX_DECODED_MESSAGE),
        )
        .add_service(
            StatisticsServer::new(StatisticsService::new(state.clone()))
                .max_decoding_message_size(MAX_DECODED_MESSAGE),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
