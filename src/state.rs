//! What every gRPC service shares: the engine handle, the catalog, the clock, the counters,
//! health and the shutdown flag.

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::durability::Durability;
use crate::health::Health;
use crate::ingest::dedup::Deduplicator;
use crate::ingest::IngestCounters;
use crate::metrics::Metrics;
use crate::retention::Retention;
use crate::shutdown::Shutdown;
use crate::streams::StreamHub;
use crate::worker::clock::Clock;
use crate::worker::Engine;

/// The state behind the services. Cheap to clone.
#[derive(Clone)]
pub struct ServerState {
    /// The dataflow engine.
    pub engine: Engine,
    /// Interned strings, label sets and traces.
    pub catalog: Arc<Catalog>,
    /// Window and retention.
    pub retention: Retention,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    /// Ingest counters.
    pub ingest: Arc<IngestCounters>,
    /// Replay de-duplication.
    pub dedup: Arc<Deduplicator>,
    /// Live streams.
    pub streams: StreamHub,
    /// Eddy's own measurements (open clients, query latency, emitter progress).
    pub metrics: Arc<Metrics>,
    /// Readiness and liveness.
    pub health: Health,
    /// Set when the server begins to stop.
    pub shutdown: Shutdown,
    /// The data directory, when one is set (SPEC §13).
    pub durability: Option<Arc<Durability>>,
}

impl ServerState {
    /// The current time in whole Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}
