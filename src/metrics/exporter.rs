//! [`Exporter`]: the Prometheus registry behind `/metrics`, built once at start-up, and the
//! scrape that refreshes the view sizes (shared by concurrent scrapes) and renders the text
//! exposition (format 0.0.4). The process's own `process_*` family (CPU, memory, file
//! descriptors, threads, start time) comes from the client crate's collector on Linux.

use std::sync::Arc;

use prometheus::{IntCounter, Registry, TextEncoder};

use crate::metrics::families::register_all;
use crate::metrics::view_sizes::ViewSizesCache;
use crate::state::ServerState;
use crate::worker::clock::Clock;
use crate::worker::Engine;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric Eddy exports, and what a scrape must refresh first.
pub struct Exporter {
    registry: Registry,
    sizes: Arc<ViewSizesCache>,
    engine: Engine,
    clock: Arc<dyn Clock>,
}

impl Exporter {
    /// Builds the registry over `state`'s parts. The view sizes are read at most once per
    /// aggregation window.
    pub fn new(state: &ServerState) -> prometheus::Result<Exporter> {
        let registry = Registry::new();
        let reads = IntCounter::new(
            "eddy_view_size_reads_total",
            "Engine reads of the view sizes (at most one per window, shared by concurrent scrapes).",
        )?;
        registry.register(Box::new(reads.clone()))?;
        let sizes = Arc::new(ViewSizesCache::new(state.retention.window, reads));
        register_all(&registry, state, &sizes)?;
        #[cfg(feature = "count-allocations")]
        registry.register(Box::new(crate::alloc_count::AllocationsCollector::new()?))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Exporter {
            registry,
            sizes,
            engine: state.engine.clone(),
            clock: state.clock.clone(),
        })
    }

    /// Refreshes the view sizes if they are older than a window (waiting for a refresh
    /// already in flight), then renders every metric.
    pub async fn scrape(&self) -> prometheus::Result<String> {
        self.sizes.refresh(&self.engine, self.clock.now()).await;
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}
