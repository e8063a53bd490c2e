//! De-duplication of replayed updates (SPEC §9.4): an update identical to one received within
//! the horizon from the same scope (peer IP by default) is receipted and skipped.
//!
//! State: per scope, 64-bit fingerprints with their arrival second, in two generations.
//! Bound: `capacity` fingerprints per scope; at the bound the older generation is forgotten
//! early (counted in `evicted`), so a replay older than that is counted again rather than
//! using unbounded memory. A connection checks a whole batch under one lock.
//!
//! Scopes of peers that left are forgotten by a sweep of the peer map, run by a new connection
//! at most once per horizon; between sweeps a new connection only looks up its own peer, so
//! the peer map's lock is held for O(1) work per connection, amortised.

mod fingerprints;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use eddy_dataflows::model::FlowRecord;
use parking_lot::Mutex;

use self::fingerprints::FingerprintTable;
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

/// The remembered fingerprints of one scope, in two generations: new fingerprints go into
/// `current`; when it is full or older than the horizon, `previous` is dropped and `current`
/// takes its place. A fingerprint is remembered for at least the horizon unless the scope
/// holds `capacity` fingerprints, and an arrival older than the horizon never matches.
#[derive(Debug)]
pub struct DedupWindow {
    current: FingerprintTable,
    current_since: i64,
    previous: FingerprintTable,
}

impl DedupWindow {
    /// An empty window for at most `capacity` fingerprints.
    fn new(capacity: usize) -> Self {
        let generation = capacity.div_ceil(2);
        DedupWindow {
            current: FingerprintTable::new(generation),
            current_since: i64::MIN,
            previous: FingerprintTable::new(generation),
        }
    }

    /// The newest arrival this window remembers, if any.
    fn last_arrival(&self) -> Option<i64> {
        (self.current.len() > 0).then_some(self.current_since)
    }

    /// Starts a new generation, forgetting the previous one; counts what it forgets early.
    fn rotate(&mut self, now: i64, evicted: &AtomicU64) {
        let early = self.previous.count_arrived_after(now - HORIZON_SECONDS);
        evicted.fetch_add(early as u64, Ordering::Relaxed);
        std::mem::swap(&mut self.current, &mut self.previous);
        self.current.clear();
        self.current_since = now;
    }

    /// Whether `fingerprint` was seen within the horizon; remembers it if not.
    fn check(&mut self, fingerprint: u64, now: i64, evicted: &AtomicU64) -> bool {
        let recent = |arrived: i64| arrived > now - HORIZON_SECONDS;
        if self.current.arrival(fingerprint).is_some_and(recent)
            || self.previous.arrival(fingerprint).is_some_and(recent)
        {
            return true;
        }
        if self.current.len() == 0 {
            self.current_since = now;
        } else if self.current.is_full() || self.current_since <= now - HORIZON_SECONDS {
            self.rotate(now, evicted);
        }
        let recorded = self.current.record(fingerprint, now);
        debug_assert!(recorded, "a rotated generation has room for a fingerprint");
        false
    }
}

/// The windows of the peers seen, and when they were last swept.
#[derive(Debug, Default)]
struct Peers {
    windows: HashMap<IpAddr, Arc<Mutex<DedupWindow>>>,
    swept_at: Option<i64>,
    /// Peer entries looked at by sweeps, to check their cost.
    #[cfg(test)]
    examined: usize,
}

impl Peers {
    /// Forgets the windows no connection holds and nothing arrived in for two horizons, if
    /// the last sweep is a horizon old.
    fn sweep(&mut self, now: i64) {
        if self
            .swept_at
            .is_some_and(|swept| now < swept.saturating_add(HORIZON_SECONDS))
        {
            return;
        }
        self.swept_at = Some(now);
        #[cfg(test)]
        {
            self.examined += self.windows.len();
        }
        self.windows.retain(|_, window| {
            Arc::strong_count(window) > 1
                || window
                    .lock()
                    .last_arrival()
                    .is_some_and(|arrived| arrived > now - 2 * HORIZON_SECONDS)
        });
    }
}

/// The de-duplication state of the whole server.
#[derive(Debug)]
pub struct Deduplicator {
    scope: DedupScope,
    capacity: usize,
    by_peer: Mutex<Peers>,
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
            by_peer: Mutex::new(Peers::default()),
            evicted: AtomicU64::new(0),
        }
    }

    /// The window for a new connection from `peer`.
    pub fn for_connection(&self, peer: Option<IpAddr>, now: i64) -> ConnectionDedup {
        let window = match (self.scope, peer) {
            (DedupScope::Off, _) => None,
            (DedupScope::PeerIp, Some(ip)) => {
                let mut by_peer = self.by_peer.lock();
                by_peer.sweep(now);
                let window = by_peer
                    .windows
                    .entry(ip)
                    .or_insert_with(|| Arc::new(Mutex::new(DedupWindow::new(self.capacity))));
                Some(window.clone())
            }
            (DedupScope::PeerIp, None) | (DedupScope::Connection, _) => {
                Some(Arc::new(Mutex::new(DedupWindow::new(self.capacity))))
            }
        };
        ConnectionDedup { window }
    }

    /// Removes from `updates` each one whose fingerprint was seen in the connection's scope
    /// within the horizon (or earlier in `updates`), remembering the others. Returns how
    /// many it removed.
    pub fn remove_duplicates<T>(
        &self,
        connection: &ConnectionDedup,
        updates: &mut Vec<(T, u64)>,
        now: i64,
    ) -> usize {
        let Some(window) = connection.window.as_ref() else {
            return 0;
        };
        let before = updates.len();
        let mut window = window.lock();
        updates.retain(|(_, fingerprint)| !window.check(*fingerprint, now, &self.evicted));
        before - updates.len()
    }

    /// Forgets `fingerprints` in the connection's scope: updates that were taken as new but
    /// could not be stored (the data directory refused them), so a resend is not absorbed.
    pub fn forget(
        &self,
        connection: &ConnectionDedup,
        fingerprints: impl IntoIterator<Item = u64>,
    ) {
        let Some(window) = connection.window.as_ref() else {
            return;
        };
        let mut window = window.lock();
        for fingerprint in fingerprints {
            window.current.forget(fingerprint);
            window.previous.forget(fingerprint);
        }
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
        let mut window = DedupWindow::new(10);
        assert!(!window.check(7, 1000, &evicted));
        assert!(window.check(7, 1000 + HORIZON_SECONDS - 1, &evicted));
        assert!(!window.check(7, 1000 + HORIZON_SECONDS + 1, &evicted));
        assert!(window.check(7, 1000 + HORIZON_SECONDS + 2, &evicted));
        assert_eq!(evicted.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_window_forgets_the_older_generation_and_counts_it() {
        let evicted = AtomicU64::new(0);
        let mut window = DedupWindow::new(4);
        for fingerprint in 10..14 {
            assert!(!window.check(fingerprint, 1000, &evicted));
        }
        assert_eq!(evicted.load(Ordering::Relaxed), 0);
        assert!(!window.check(14, 1000, &evicted));
        assert_eq!(evicted.load(Ordering::Relaxed), 2);
        assert!(
            !window.check(10, 1000, &evicted),
            "10 was in the forgotten generation"
        );
        assert!(
            window.check(13, 1000, &evicted),
            "13 is in the kept generation"
        );
    }

    #[test]
    fn new_connections_sweep_the_peers_once_per_horizon_and_forget_peers_that_left() {
        let deduplicator = Deduplicator::new(DedupScope::PeerIp, 100);
        for peer in 0..1000u32 {
            let ip = IpAddr::from(peer.to_be_bytes());
            let connection = deduplicator.for_connection(Some(ip), 1000);
            let mut updates = vec![((), u64::from(peer))];
            deduplicator.remove_duplicates(&connection, &mut updates, 1000);
        }
        {
            let peers = deduplicator.by_peer.lock();
            assert_eq!(peers.windows.len(), 1000);
            assert_eq!(peers.examined, 0, "the first sweep found no peer");
        }
        let back = deduplicator.for_connection(Some(IpAddr::from([0, 0, 0, 0])), 1000);
        let mut replay = vec![((), 0)];
        assert_eq!(deduplicator.remove_duplicates(&back, &mut replay, 1000), 1);
        drop(back);
        let later = 1000 + 2 * HORIZON_SECONDS + 1;
        let _newcomer = deduplicator.for_connection(Some(IpAddr::from([10, 0, 0, 1])), later);
        let peers = deduplicator.by_peer.lock();
        assert_eq!(peers.examined, 1000, "one sweep over the 1,000 peers");
        assert_eq!(peers.windows.len(), 1, "only the newcomer is left");
    }

    #[test]
    fn a_batch_loses_its_replays_and_its_repeats() {
        let deduplicator = Deduplicator::new(DedupScope::Connection, 100);
        let connection = deduplicator.for_connection(None, 1000);
        let mut first = vec![("a", 1), ("b", 2), ("a again", 1)];
        assert_eq!(
            deduplicator.remove_duplicates(&connection, &mut first, 1000),
            1
        );
        assert_eq!(first, vec![("a", 1), ("b", 2)]);
        let mut replay = vec![("b", 2), ("c", 3)];
        assert_eq!(
            deduplicator.remove_duplicates(&connection, &mut replay, 1010),
            1
        );
        assert_eq!(replay, vec![("c", 3)]);
        deduplicator.forget(&connection, [3]);
        let mut resent = vec![("c", 3), ("b", 2)];
        assert_eq!(
            deduplicator.remove_duplicates(&connection, &mut resent, 1020),
            1
        );
        assert_eq!(resent, vec![("c", 3)], "a forgotten update is new again");
        let off = Deduplicator::new(DedupScope::Off, 100);
        let mut all = vec![("a", 1), ("a", 1)];
        assert_eq!(
            off.remove_duplicates(&off.for_connection(None, 1000), &mut all, 1000),
            0
        );
    }
}
