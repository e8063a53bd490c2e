//! How the controller paces ticks: a tick closes on a timer, or once it holds a number of
//! records. That number bounds how much ingest is ever ahead of a query (one tick), so it is
//! small while calls are answered, and smaller still for a while after each query
//! ([`QUERY_TICK_RECORDS`]); a bulk load that no call can be waiting on (recovery, before
//! any port is bound) raises it for its duration ([`Engine::bulk_load`]), since every tick
//! costs the views a batch and a merge: measured on the engine bench at 1M keys, ticks of
//! 131,072 records took 2.1–2.4 µs of CPU per update and ticks of 32,768 took 2.8–3.2.
//!
//! [`Engine::bulk_load`]: crate::worker::Engine::bulk_load

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::worker::controller::FORWARD_RECORDS;

/// Records a tick holds during a bulk load.
pub const BULK_TICK_RECORDS: usize = 262_144;

/// Records a tick holds at most while queries are being asked: one gathered ingest batch
/// ([`FORWARD_RECORDS`]), so a query waits behind at most that much ingest. Measured with the
/// queries bench at 1M rows, ingest at full speed beside (two alternated runs each): a tick
/// otherwise holds about 11,000 records (the 50 ms timer closes it first); with these ticks
/// the p99 of FilterHints (almost all of it that wait) went from 27–28 to 20–21 ms, List's
/// from 46–51 to 39–43 ms and Statistics' from 50–72 to 42–46 ms, while the ingest beside
/// List fell from 147–151 to 129–131 k updates/s.
pub const QUERY_TICK_RECORDS: usize = FORWARD_RECORDS;

/// How long after a query ticks stay at [`QUERY_TICK_RECORDS`]: longer than the interval at
/// which a dashboard polls, so a page that refreshes finds the small ticks still in place.
pub const QUERY_PACING: Duration = Duration::from_secs(10);

/// How the controller paces ticks.
#[derive(Clone, Debug)]
pub struct Pacing {
    /// How often a tick closes when nothing else closes it.
    pub tick_interval: Duration,
    /// Records after which a tick closes.
    pub tick_records: Arc<TickRecords>,
}

impl Pacing {
    /// The records after which the open tick closes, `since_query` after the latest query
    /// (`None` before the first).
    pub fn records_per_tick(&self, since_query: Option<Duration>) -> usize {
        let current = self.tick_records.current();
        match since_query {
            Some(elapsed) if elapsed < QUERY_PACING => current.min(QUERY_TICK_RECORDS),
            _ => current,
        }
    }
}

/// The records after which a tick closes: the configured number, or more during a bulk load.
#[derive(Debug)]
pub struct TickRecords {
    configured: usize,
    current: AtomicUsize,
}

impl TickRecords {
    /// Ticks of `configured` records (at least one).
    pub fn new(configured: usize) -> TickRecords {
        let configured = configured.max(1);
        TickRecords {
            configured,
            current: AtomicUsize::new(configured),
        }
    }

    /// The records after which the open tick closes now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }
}

/// Ticks of [`BULK_TICK_RECORDS`] (or the configured number, if larger) until dropped.
#[derive(Debug)]
pub struct BulkLoad {
    tick_records: Arc<TickRecords>,
}

impl BulkLoad {
    /// Raises the tick size of `tick_records` until the guard is dropped.
    pub fn start(tick_records: Arc<TickRecords>) -> BulkLoad {
        tick_records.current.store(
            tick_records.configured.max(BULK_TICK_RECORDS),
            Ordering::Relaxed,
        );
        BulkLoad { tick_records }
    }
}

impl Drop for BulkLoad {
    fn drop(&mut self) {
        self.tick_records
            .current
            .store(self.tick_records.configured, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bulk_load_raises_the_tick_size_until_it_ends() {
        let tick_records = Arc::new(TickRecords::new(32_768));
        assert_eq!(tick_records.current(), 32_768);
        let bulk = BulkLoad::start(tick_records.clone());
        assert_eq!(tick_records.current(), BULK_TICK_RECORDS);
        drop(bulk);
        assert_eq!(tick_records.current(), 32_768);
        let larger = Arc::new(TickRecords::new(1_000_000));
        let _bulk = BulkLoad::start(larger.clone());
        assert_eq!(larger.current(), 1_000_000);
    }

    #[test]
    fn ticks_are_small_for_a_while_after_a_query() {
        let pacing = |configured| Pacing {
            tick_interval: Duration::from_millis(50),
            tick_records: Arc::new(TickRecords::new(configured)),
        };
        let serving = pacing(32_768);
        assert_eq!(serving.records_per_tick(None), 32_768);
        assert_eq!(serving.records_per_tick(Some(Duration::ZERO)), 4096);
        assert_eq!(serving.records_per_tick(Some(Duration::from_secs(9))), 4096);
        assert_eq!(serving.records_per_tick(Some(QUERY_PACING)), 32_768);
        let already_small = pacing(1000);
        assert_eq!(already_small.records_per_tick(Some(Duration::ZERO)), 1000);
    }
}
