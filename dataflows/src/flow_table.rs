//! The flows of one worker, updated in place: each flow's key, stored once, and its rows, one
//! per (bucket, label pair) with the summed counters of the updates that carried that label
//! pair in that bucket; with the [`FlowIndex`] of the flows by namespace for filtered reads.
//!
//! An update is one hash probe by flow id and an addition into the row: no sort, no batch, no
//! merge. An arrangement of the same rows (what the flows view was) copied every row about
//! log₂(rows / tick) times over its life in its merges, and its batches and merges held two to
//! three times the rows' size (see BENCHMARKS.md, "The flows view as a table").
//!
//! Invariants:
//! - a flow is in the table exactly while it has a row, and in the index exactly while it is
//!   in the table, under its own destination and source namespace;
//! - a row is held exactly while its `records` do not sum to zero (`Stats`' `IsZero`, the
//!   rule differential dataflow applies to a difference);
//! - a flow's rows are in (bucket, label pair) order.
//!
//! State: the entries (a key and its rows' vector) in one dense vector, and a hash table of
//! their positions (4 bytes each) found by the key's own flow id, so neither the id is stored a
//! second time nor the entries pay the hash table's empty buckets (measured: a table of whole
//! entries kept about 55 bytes per retained row empty). Each row is 80 bytes; a flow's rows
//! grow by a quarter at a time, most flows holding only a few.

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use crate::filter::FlowFilter;
use crate::flow_index::FlowIndex;
use crate::model::{Bucket, FlowId, FlowKey, LabelPair, Stats};

/// One row of a flow: a bucket and label pair, and the summed counters of its updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRow {
    /// The bucket's start.
    pub bucket: Bucket,
    /// The source and destination label sets.
    pub labels: LabelPair,
    /// The counters of every update of the row, summed (`records` is never zero).
    pub stats: Stats,
}

/// A flow's key and rows.
#[derive(Debug)]
struct FlowEntry {
    key: FlowKey,
    rows: Vec<FlowRow>,
}

/// What an update did to its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Updated {
    /// The flow was in the table before and is still.
    Kept,
    /// The flow entered the table.
    Added,
    /// The flow's last row cancelled out: it left the table.
    Removed,
    /// The update summed to nothing and the flow was not held: nothing changed.
    Nothing,
}

/// How many flows a scan touches at once (see [`FlowTable::visit`]).
const TOUCHED_TOGETHER: usize = 16;

/// The hash an entry is kept under: its flow id's.
fn hash_of(id: FlowId) -> u64 {
    FxBuildHasher.hash_one(id)
}

/// The flows one worker owns, by flow id.
#[derive(Debug, Default)]
pub struct FlowTable {
    /// Every flow held, in no particular order.
    entries: Vec<FlowEntry>,
    /// The position in `entries` of each flow, hashed by its id.
    positions: HashTable<u32>,
    index: FlowIndex,
    rows: usize,
}

/// Makes room for one more row in `rows`: a quarter more at a time, so a flow with few rows
/// keeps no empty ones beside them.
fn reserve_row(rows: &mut Vec<FlowRow>) {
    if rows.len() == rows.capacity() {
        rows.reserve_exact(1 + rows.len() / 4);
    }
}

impl FlowTable {
    /// Adds `stats` to the row (`bucket`, `labels`) of the flow of `key`, adding the flow or
    /// the row when new and removing the row when its records sum to zero (the flow too, when
    /// it was its last).
    pub fn update(
        &mut self,
        key: &FlowKey,
        bucket: Bucket,
        labels: LabelPair,
        stats: &Stats,
    ) -> Updated {
        let id = key.id;
        let entries = &mut self.entries;
        let found = self.positions.entry(
            hash_of(id),
            |at| entries[*at as usize].key.id == id,
            |at| hash_of(entries[*at as usize].key.id),
        );
        let position = match found {
            Entry::Occupied(held) => *held.get() as usize,
            Entry::Vacant(vacant) => {
                if stats.records == 0 {
                    return Updated::Nothing;
                }
                let position = u32::try_from(entries.len()).expect(
                    "a worker holds fewer than 2^32 flows (each takes over 100 bytes of memory)",
                );
                vacant.insert(position);
                entries.push(FlowEntry {
                    key: *key,
                    rows: vec![FlowRow {
                        bucket,
                        labels,
                        stats: *stats,
                    }],
                });
                self.index.add(key);
                self.rows += 1;
                return Updated::Added;
            }
        };
        let rows = &mut entries[position].rows;
        match rows.binary_search_by(|row| (row.bucket, row.labels).cmp(&(bucket, labels))) {
            Ok(at) => {
                rows[at].stats.add(stats);
                if rows[at].stats.records != 0 {
                    return Updated::Kept;
                }
                rows.remove(at);
                self.rows -= 1;
                if !rows.is_empty() {
                    return Updated::Kept;
                }
                self.remove(position);
                Updated::Removed
            }
            Err(at) => {
                if stats.records != 0 {
                    reserve_row(rows);
                    rows.insert(
                        at,
                        FlowRow {
                            bucket,
                            labels,
                            stats: *stats,
                        },
                    );
                    self.rows += 1;
                }
                Updated::Kept
            }
        }
    }

    /// Removes the flow at `position` (its rows gone), moving the last entry into its place.
    fn remove(&mut self, position: usize) {
        let id = self.entries[position].key.id;
        let entries = &self.entries;
        if let Ok(held) = self
            .positions
            .find_entry(hash_of(id), |at| entries[*at as usize].key.id == id)
        {
            held.remove();
        }
        let gone = self.entries.swap_remove(position);
        self.index.remove(&gone.key);
        if let Some(moved) = self.entries.get(position) {
            let moved_id = moved.key.id;
            let last = self.entries.len() as u32;
            if let Some(at) = self.positions.find_mut(hash_of(moved_id), |at| *at == last) {
                *at = position as u32;
            }
        }
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
        }
    }

    /// The key of flow `id`, if this worker holds it.
    pub fn key(&self, id: FlowId) -> Option<&FlowKey> {
        self.find(id).map(|entry| &entry.key)
    }

    /// The key and rows of flow `id`, if this worker holds it.
    pub fn flow(&self, id: FlowId) -> Option<(&FlowKey, &[FlowRow])> {
        self.find(id)
            .map(|entry| (&entry.key, entry.rows.as_slice()))
    }

    fn find(&self, id: FlowId) -> Option<&FlowEntry> {
        let entries = &self.entries;
        self.positions
            .find(hash_of(id), |at| entries[*at as usize].key.id == id)
            .map(|at| &entries[*at as usize])
    }

    /// How many flows this worker holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether this worker holds no flow.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many rows this worker's flows have.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Calls `visit` with the key and rows of every flow held, in no particular order, or of
    /// the flows of `only` that are held, in its order.
    pub fn visit(&self, only: Option<&[FlowId]>, mut visit: impl FnMut(&FlowKey, &[FlowRow])) {
        match only {
            None => {
                for flows in self.entries.chunks(TOUCHED_TOGETHER) {
                    // Each flow's rows are on the heap: one cache miss per flow. Touched
                    // together first, the misses of a chunk overlap instead of following one
                    // another (measured: the scan waited on them for two thirds of its time).
                    let touched = flows.iter().fold(0, |touched, entry| {
                        touched ^ entry.rows.first().map_or(0, |row| row.bucket)
                    });
                    std::hint::black_box(touched);
                    for entry in flows {
                        visit(&entry.key, &entry.rows);
                    }
                }
            }
            Some(ids) => {
                for id in ids {
                    if let Some(entry) = self.find(*id) {
                        visit(&entry.key, &entry.rows);
                    }
                }
            }
        }
    }

    /// Every key held, in no particular order.
    fn keys(&self) -> impl Iterator<Item = &FlowKey> {
        self.entries.iter().map(|entry| &entry.key)
    }

    /// The ids of the flows whose key matches `filter`, ascending: the candidates of a
    /// filtered read, in the index when the filter constrains an indexed field.
    pub fn matching(&self, filter: &FlowFilter) -> Vec<FlowId> {
        if let Some(candidates) = self.index.candidates(filter) {
            let mut ids = candidates.ids;
            if !candidates.exact {
                ids.retain(|id| self.key(*id).is_some_and(|key| filter.matches(key)));
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

    fn stats(records: i64, bytes_in: i64) -> Stats {
        Stats {
            records,
            bytes_in,
            ..Stats::default()
        }
    }

    #[test]
    fn rows_are_summed_in_place_in_order_and_leave_when_their_records_cancel() {
        let mut table = FlowTable::default();
        assert_eq!(
            table.update(&key(7, 10), 60, (1, 2), &stats(1, 5)),
            Updated::Added
        );
        assert_eq!(
            table.update(&key(7, 10), 30, (1, 2), &stats(1, 6)),
            Updated::Kept
        );
        assert_eq!(
            table.update(&key(7, 10), 60, (1, 1), &stats(1, 7)),
            Updated::Kept
        );
        assert_eq!(
            table.update(&key(7, 10), 60, (1, 2), &stats(1, 8)),
            Updated::Kept
        );
        let (_, rows) = table.flow(7).expect("flow 7 was added");
        let summary: Vec<(Bucket, LabelPair, i64, i64)> = rows
            .iter()
            .map(|row| {
                (
                    row.bucket,
                    row.labels,
                    row.stats.records,
                    row.stats.bytes_in,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![(30, (1, 2), 1, 6), (60, (1, 1), 1, 7), (60, (1, 2), 2, 13)]
        );
        assert_eq!(table.rows(), 3);
        assert_eq!(
            table.update(&key(7, 10), 60, (1, 2), &stats(-2, -13)),
            Updated::Kept
        );
        assert_eq!(
            table.update(&key(7, 10), 30, (1, 2), &stats(-1, -6)),
            Updated::Kept
        );
        assert_eq!(
            table.update(&key(7, 10), 60, (1, 1), &stats(-1, -7)),
            Updated::Removed
        );
        assert!(table.is_empty());
        assert_eq!(table.rows(), 0);
        assert_eq!(
            table.matching(&FlowFilter {
                dest_namespaces: Some(IdSet::new(vec![10])),
                ..FlowFilter::default()
            }),
            Vec::<FlowId>::new(),
            "a flow that left the table left the index"
        );
        assert_eq!(
            table.update(&key(7, 10), 60, (1, 1), &stats(0, 3)),
            Updated::Nothing
        );
        assert!(table.is_empty());
    }

    /// A flow that leaves gives its place to the last one: every other flow is still found,
    /// with its own rows, and updated in place.
    #[test]
    fn a_flow_leaving_keeps_every_other_flow_found() {
        let mut table = FlowTable::default();
        for id in 1..=5 {
            table.update(&key(id, 10), 60, (0, 0), &stats(1, id as i64));
        }
        assert_eq!(
            table.update(&key(2, 10), 60, (0, 0), &stats(-1, -2)),
            Updated::Removed
        );
        assert_eq!(
            table.update(&key(5, 10), 60, (0, 0), &stats(1, 50)),
            Updated::Kept
        );
        assert_eq!(
            table.update(&key(5, 10), 60, (0, 0), &stats(-2, -55)),
            Updated::Removed
        );
        let mut held = Vec::new();
        table.visit(None, |key, rows| {
            held.push((key.id, rows[0].stats.bytes_in))
        });
        held.sort_unstable();
        assert_eq!(held, vec![(1, 1), (3, 3), (4, 4)]);
        for id in [1, 3, 4] {
            assert_eq!(table.key(id).map(|key| key.id), Some(id));
        }
        assert_eq!(table.key(2), None);
        assert_eq!(table.key(5), None);
        assert_eq!((table.len(), table.rows()), (3, 3));
    }

    #[test]
    fn matching_ids_come_ascending_and_only_lists_held_flows() {
        let mut table = FlowTable::default();
        for (id, namespace) in [(40, 10), (8, 11), (16, 10), (2, 10)] {
            table.update(&key(id, namespace), 0, (0, 0), &stats(1, 0));
        }
        let filter = FlowFilter {
            dest_namespaces: Some(IdSet::new(vec![10])),
            ..FlowFilter::default()
        };
        assert_eq!(table.matching(&filter), vec![2, 16, 40]);
        let mut visited = Vec::new();
        table.visit(Some(&[16, 17, 40]), |key, rows| {
            visited.push((key.id, rows.len()))
        });
        assert_eq!(visited, vec![(16, 1), (40, 1)]);
        assert_eq!(table.len(), 4);
    }
}
