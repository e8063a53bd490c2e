//! What every gRPC service shares: the engine handle, the catalog, the clock, the counters,
//! health and the shutdown flag.

use std::sync::Arc;

use crate::api::collector::limits::ConnectCalls;
use crate::api::request_limits::RequestLimits;
use crate::catalog::Catalog;
use crate::durability::Durability;
use crate::health::Health;
use crate::ingest::dedup::Deduplicator;
use crate::ingest::threads::IngestThreads;
use crate::ingest::Bounds;
use crate::ingest::{IngestCounters, InputLimits};
use crate::metrics::Metrics;
use crate::retention::Retention;
use crate::shutdown::Shutdown;
use crate::streams::views::ViewHub;
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
    /// Open `Connect` calls and their bounds.
    pub connect: Arc<ConnectCalls>,
    /// The threads `Connect` calls are served on, below the rest of the server's priority.
    pub ingest_threads: Arc<IngestThreads>,
    /// Live streams.
    pub streams: StreamHub,
    /// Live subscriptions to the registered views.
    pub view_streams: ViewHub,
    /// Eddy's own measurements (open clients, query latency, emitter progress).
    pub metrics: Arc<Metrics>,
    /// Readiness and liveness.
    pub health: Health,
    /// Set when the server begins to stop.
    pub shutdown: Shutdown,
    /// Size bounds of one update.
    pub input_limits: InputLimits,
    /// Size bounds of one query request.
    pub request_limits: RequestLimits,
    /// The data directory, when one is set (SPEC §13).
    pub durability: Option<Arc<Durability>>,
}

impl ServerState {
    /// The current time in whole Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// What an update is checked against at `now`: retention and the size limits.
    pub fn bounds(&self, now: i64) -> Bounds<'_> {
        Bounds {
            retention: &self.retention,
            limits: &self.input_limits,
            now,
        }
    }
}
