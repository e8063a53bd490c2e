//! De-duplication of replayed updates (SPEC §9.4): an update identical to one received within
//! the horizon from the same scope (peer IP by default) is receipted and skipped.
//!
//! State: per scope, a set of 64-bit fingerprints with their arrival second, oldest first.
//! Bound: `capacity` fingerprints per scope; at the bound the oldest is forgotten early
//! (counted in `evicted`), so a replay older than that is counted again rather than using
//! unbounded memory.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use eddy_dataflows::model::FlowRecord;
use parking_lot::Mutex;
use rustc_hash::FxHashSet;
use xxhash_rust::xxh3::xxh3_64;

/// How long an update is remembered: Felix replays up to 5 minutes after a reconnect.
pub const HORIZON_SECONDS: i64 = 360;

/// Which updates are compared with each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DedupScope {
    /// Updates from the same peer IP address, across connections (the default).
    PeerIp,
    /// Updates on the same connection only.
    Connection,
    /// No de-duplication.
    Off,
}

/// The fingerprint of an update: canonical key, times, counters and label sets.
pub fn fingerprint(record: &FlowRecord, start_time: i64, end_time: i64) -> u64 {
    let stats = record.stats;
    let words = [
        record.key.id as i64,
        start_time,
        end_time,
        stats.packets_in,
        stats.packets_out,
        stats.bytes_in,
        stats.bytes_out,
        stats.connections_started,
        stats.connections_completed,
        stats.connections_live,
        i64::from(record.labels.0),
        i64::from(record.labels.1),
    ];
    let mut bytes = [0u8; 96];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    xxh3_64(&bytes)
}

/// The remembered fingerprints of one scope.
#[derive(Debug, Default)]
pub struct DedupWindow {
    seen: FxHashSet<u64>,
    order: VecDeque<(i64, u64)>,
}

impl DedupWindow {
    /// Whether `fingerprint` was seen within the horizon; remembers it either way.
    fn check(&mut self, fingerprint: u64, now: i64, capacity: usize, evicted: &AtomicU64) -> bool {
        while let Some(&(arrived, old)) = self.order.front() {
            if arrived > now - HORIZON_SECONDS && self.order.len() < capacity {
                break;
            }
            if arrived > now - HORIZON_SECONDS {
                evicted.fetch_add(1, Ordering::Relaxed);
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        if self.seen.contains(&fingerprint) {
            return true;
        }
        self.seen.insert(fingerprint);
        self.order.push_back((now, fingerprint));
        false
    }
}

/// The de-duplication state of the whole server.
#[derive(Debug)]
pub struct Deduplicator {
    scope: DedupScope,
    capacity: usize,
    by_peer: Mutex<HashMap<IpAddr, Arc<Mutex<DedupWindow>>>>,
    evicted: AtomicU64,
}

/// The window one connection checks its updates against.
#[derive(Clone, Debug)]
pub struct ConnectionDedup {
    window: Option<Arc<Mutex<DedupWindow>>>,
}

impl Deduplicator {
    /// A de-duplicator with the given scope and per-scope capacity.
    pub fn new(scope: DedupScope, capacity: usize) -> Self {
        Deduplicator {
            scope,
            capacity: capacity.max(1),
            by_peer: Mutex::new(HashMap::new()),
            evicted: AtomicU64::new(0),
        }
    }

    /// The window for a new connection from `peer`.
    pub fn for_connection(&self, peer: Option<IpAddr>, now: i64) -> ConnectionDedup {
        let window = match (self.scope, peer) {
            (DedupScope::Off, _) => None,
            (DedupScope::PeerIp, Some(ip)) => {
                let mut by_peer = self.by_peer.lock();
                by_peer.retain(|_, window| {
                    Arc::strong_count(window) > 1
                        || window
                            .lock()
                            .order
                            .back()
                            .is_some_and(|(arrived, _)| *arrived > now - HORIZON_SECONDS)
                });
                Some(by_peer.entry(ip).or_default().clone())
            }
            (DedupScope::PeerIp, None) | (DedupScope::Connection, _) => {
                Some(Arc::new(Mutex::new(DedupWindow::default())))
            }
        };
        ConnectionDedup { window }
    }

    /// Whether the update was already seen in the connection's scope.
    pub fn is_duplicate(&self, connection: &ConnectionDedup, fingerprint: u64, now: i64) -> bool {
        connection.window.as_ref().is_some_and(|window| {
            window
                .lock()
                .check(fingerprint, now, self.capacity, &self.evicted)
        })
    }

    /// Fingerprints forgotten before the horizon because a scope was full.
    pub fn evicted_total(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_remembers_for_the_horizon_then_forgets() {
        let evicted = AtomicU64::new(0);
        let mut window = DedupWindow::default();
        assert!(!window.check(7, 1000, 10, &evicted));
        assert!(window.check(7, 1000 + HORIZON_SECONDS - 1, 10, &evicted));
        assert!(!window.check(7, 1000 + HORIZON_SECONDS + 1, 10, &evicted));
    }

    #[test]
    fn a_full_window_forgets_the_oldest_and_counts_it() {
        let evicted = AtomicU64::new(0);
        let mut window = DedupWindow::default();
        for fingerprint in 0..3 {
            assert!(!window.check(fingerprint, 1000, 2, &evicted));
        }
        assert_eq!(evicted.load(Ordering::Relaxed), 1);
        assert!(!window.check(0, 1000, 2, &evicted));
    }
}
