//! The key store of one worker: the fields of every flow this worker owns, stored once per flow
//! rather than in every row of the flows view, filled when a record is inserted and emptied by
//! expiry when a flow's last bucket leaves retention.
//!
//! A flow is owned by worker [`owner_of`] of its connection: its records are inserted there,
//! its rows are arranged there, and its key is stored there, so nothing is shared between
//! workers and the same commands could be sequenced across processes. Every flow of one
//! connection has the same owner, so a view grouping flows by connection reads them on one
//! worker (`views::derived`).
//!
//! The store keeps a [`FlowIndex`] of its flows by namespace: a filtered read finds its
//! candidates there.
//!
//! Invariant: every flow with a live row in this worker's flows view, or with a record inserted
//! at a tick the view does not reflect yet, has its key here.
//!
//! State: one hash table of entries (a key and a tick, 80 bytes), found by the key's own flow
//! id, so the id is not stored a second time as a map key.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use crate::filter::FlowFilter;
use crate::flow_index::FlowIndex;
use crate::model::{FlowId, FlowKey, Sym, Tick};

/// The worker (of `peers`) that owns the flow of `key`: the one its records, rows and key live
/// on. Chosen by the flow's connection ([`connection_of`]), so the flows of one connection
/// (both reporters, every action, service and protocol) share a worker.
pub fn owner_of(key: &FlowKey, peers: usize) -> usize {
    let (source_namespace, source_name, dest_namespace, dest_name, port) = connection_of(key);
    let source = u64::from(source_namespace) << 32 | u64::from(source_name);
    let dest = u64::from(dest_namespace) << 32 | u64::from(dest_name);
    let mixed = mix(source ^ mix(dest ^ mix(port as u64)));
    (mixed % peers.max(1) as u64) as usize
}

/// A flow's connection: source namespace and name, destination namespace and name,
/// destination port.
pub type Connection = (Sym, Sym, Sym, Sym, i64);

/// The connection of the flow of `key`.
pub fn connection_of(key: &FlowKey) -> Connection {
    (
        key.source_namespace,
        key.source_name,
        key.dest_namespace,
        key.dest_name,
        key.dest_port,
    )
}

/// SplitMix64's finalizer: every bit of `value` reaches every bit of the result, so the
/// remainder by any worker count is spread evenly.
fn mix(value: u64) -> u64 {
    let mut mixed = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
}

/// A flow's key and the tick its latest record was inserted at.
#[derive(Clone, Copy, Debug)]
struct Entry {
    key: FlowKey,
    inserted_at: Tick,
}

/// The hash an entry is kept under: its flow id's.
fn hash_of(id: FlowId) -> u64 {
    FxBuildHasher.hash_one(id)
}

/// The keys of the flows one worker owns, by flow id.
#[derive(Debug, Default)]
pub struct FlowKeys {
    entries: HashTable<Entry>,
    index: FlowIndex,
}

impl FlowKeys {
    /// Notes that a record of `key` is inserted at `tick`.
    pub fn note(&mut self, key: &FlowKey, tick: Tick) {
        let id = key.id;
        match self.entries.entry(
            hash_of(id),
            |entry| entry.key.id == id,
            |entry| hash_of(entry.key.id),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut held) => held.get_mut().inserted_at = tick,
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                self.index.add(key);
                vacant.insert(Entry {
                    key: *key,
                    inserted_at: tick,
                });
            }
        }
    }

    /// The key of flow `id`, if this worker holds it.
    pub fn get(&self, id: FlowId) -> Option<&FlowKey> {
        self.entries
            .find(hash_of(id), |entry| entry.key.id == id)
            .map(|entry| &entry.key)
    }

    /// Forgets flow `id` unless a record was inserted for it at `reflected` or later (a tick
    /// the flows view may not show yet).
    pub fn forget_unless_inserted_since(&mut self, id: FlowId, reflected: Tick) {
        if let Ok(held) = self
            .entries
            .find_entry(hash_of(id), |entry| entry.key.id == id)
        {
            if held.get().inserted_at < reflected {
                self.index.remove(&held.remove().0.key);
            }
        }
    }

    /// How many flows this worker holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether this worker holds no flow.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every key held, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &FlowKey> {
        self.entries.iter().map(|entry| &entry.key)
    }

    /// The ids of the flows whose key matches `filter`, ascending: the candidates of a
    /// filtered read, found without touching the flows view, in the index when the filter
    /// constrains an indexed field.
    pub fn matching(&self, filter: &FlowFilter) -> Vec<FlowId> {
        if let Some(candidates) = self.index.candidates(filter) {
            let mut ids = candidates.ids;
            if !candidates.exact {
                ids.retain(|id| self.get(*id).is_some_and(|key| filter.matches(key)));
            }
            return ids;
        }
        let mut ids: Vec<FlowId> = self
            .keys()
            .filter(|key| filter.matches(key))
            .map(|key| key.id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::IdSet;
    use crate::model::test_key;

    fn key(id: FlowId, dest_namespace: u32) -> FlowKey {
        test_key(id, 2, dest_namespace)
    }

    #[test]
    fn a_flow_inserted_after_the_reflected_tick_is_kept() {
        let mut keys = FlowKeys::default();
        keys.note(&key(7, 10), 3);
        keys.note(&key(9, 11), 5);
        keys.forget_unless_inserted_since(7, 4);
        keys.forget_unless_inserted_since(9, 4);
        assert_eq!(keys.get(7), None);
        assert_eq!(keys.get(9).map(|key| key.dest_namespace), Some(11));
        keys.note(&key(9, 11), 6);
        keys.forget_unless_inserted_since(9, 6);
        assert_eq!(
            keys.len(),
            1,
            "inserted at the reflected tick: not reflected yet"
        );
        keys.forget_unless_inserted_since(9, 7);
        assert!(keys.is_empty());
    }

    #[test]
    fn matching_ids_come_ascending() {
        let mut keys = FlowKeys::default();
        for (id, namespace) in [(40, 10), (8, 11), (16, 10), (2, 10)] {
            keys.note(&key(id, namespace), 0);
        }
        let filter = FlowFilter {
            dest_namespaces: Some(IdSet::new(vec![10])),
            ..FlowFilter::default()
        };
        assert_eq!(keys.matching(&filter), vec![2, 16, 40]);
    }

    #[test]
    fn the_flows_of_one_connection_share_an_owner_and_connections_spread_evenly() {
        let mut counts = [0_usize; 3];
        for name in 0..3_000 {
            let mut source = key(u64::from(name), 10);
            source.source_name = name;
            let mut destination = source;
            destination.id += 100_000;
            destination.reporter = 2;
            destination.action = 2;
            destination.proto = 99;
            assert_eq!(owner_of(&source, 3), owner_of(&destination, 3));
            counts[owner_of(&source, 3)] += 1;
            assert_eq!(owner_of(&source, 1), 0);
            assert_eq!(owner_of(&source, 0), 0);
        }
        assert!(
            counts.iter().all(|count| (900..1_100).contains(count)),
            "{counts:?}"
        );
    }
}
