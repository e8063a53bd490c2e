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
//! - a flow's rows are in (bucket, label pair) order;
//! - a flow's rows are all narrow (in its entry) or, once one row did not fit, all whole
//!   (in `whole`, its entry's narrow rows empty) until the flow leaves (see [`crate::flow_rows`]).
//!
//! State: the entries (a key and its rows' vector) in one dense vector, and a hash table of
//! their positions (4 bytes each) found by the key's own flow id, so neither the id is stored a
//! second time nor the entries pay the hash table's empty buckets (measured: a table of whole
//! entries kept about 55 bytes per retained row empty). Each row is 44 bytes (80 for a flow
//! stored whole); a flow's rows grow one place at a time up to 8, then by a quarter, most
//! flows holding only a few.

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::filter::FlowFilter;
use crate::flow_index::FlowIndex;
use crate::flow_rows::NarrowRow;
pub use crate::flow_rows::{FlowRow, Rows};
use crate::model::{Bucket, FlowId, FlowKey, LabelPair, Stats};

/// A flow's key and rows (none here when the flow is stored whole).
#[derive(Debug)]
struct FlowEntry {
    key: FlowKey,
    rows: Vec<NarrowRow>,
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
    /// The rows of the flows stored whole, by flow id.
    whole: FxHashMap<FlowId, Vec<FlowRow>>,
    index: FlowIndex,
    rows: usize,
}

/// Rows a flow grows by one at a time, before it grows by a quarter.
const GROWN_ONE_AT_A_TIME: usize = 8;

/// Makes room for one more row in `rows`: one at a time while they are few (a flow seen in
/// every retained bucket holds one row more between a bucket's first update and the oldest
/// bucket's expiry, and keeps that one empty place after it, not a quarter more), then a
/// quarter more at a time.
fn reserve_row<T>(rows: &mut Vec<T>) {
    if rows.len() == rows.capacity() {
        let more = if rows.len() < GROWN_ONE_AT_A_TIME {
            1
        } else {
            rows.len() / 4
        };
        rows.reserve_exact(more);
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
        let row = || FlowRow {
            bucket,
            labels,
            stats: *stats,
        };
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
                let rows = match NarrowRow::of(&row()) {
                    Some(narrow) => vec![narrow],
                    None => {
                        self.whole.insert(id, vec![row()]);
                        Vec::new()
                    }
                };
                entries.push(FlowEntry { key: *key, rows });
                self.index.add(key);
                self.rows += 1;
                return Updated::Added;
            }
        };
        let rows = &mut entries[position].rows;
        if rows.is_empty() {
            return self.update_whole(position, row());
        }
        match rows.binary_search_by(|held| held.place().cmp(&(bucket, labels))) {
            Ok(at) => {
                let (sum, stored) = rows[at].add(stats);
                if !stored {
                    self.store_whole(position);
                    return self.update_whole(position, row());
                }
                if sum.records != 0 {
                    return Updated::Kept;
                }
                rows.remove(at);
                let emptied = rows.is_empty();
                self.row_removed(position, emptied)
            }
            Err(at) => {
                if stats.records == 0 {
                    return Updated::Kept;
                }
                let Some(narrow) = NarrowRow::of(&row()) else {
                    self.store_whole(position);
                    return self.update_whole(position, row());
                };
                reserve_row(rows);
                rows.insert(at, narrow);
                self.rows += 1;
                Updated::Kept
            }
        }
    }

    /// Counts a row of the flow at `position` removed, and removes the flow when that
    /// `emptied` it.
    fn row_removed(&mut self, position: usize, emptied: bool) -> Updated {
        self.rows -= 1;
        if !emptied {
            return Updated::Kept;
        }
        self.remove(position);
        Updated::Removed
    }

    /// Moves the narrow rows of the flow at `position` to `whole`.
    fn store_whole(&mut self, position: usize) {
        let entry = &mut self.entries[position];
        let rows = std::mem::take(&mut entry.rows);
        self.whole
            .insert(entry.key.id, rows.iter().map(NarrowRow::widen).collect());
    }

    /// [`FlowTable::update`] for the flow at `position`, stored whole.
    fn update_whole(&mut self, position: usize, row: FlowRow) -> Updated {
        let id = self.entries[position].key.id;
        let rows = self
            .whole
            .get_mut(&id)
            .expect("a held flow with no narrow rows has its rows in `whole`");
        match rows
            .binary_search_by(|held| (held.bucket, held.labels).cmp(&(row.bucket, row.labels)))
        {
            Ok(at) => {
                rows[at].stats.add(&row.stats);
                if rows[at].stats.records != 0 {
                    return Updated::Kept;
                }
                rows.remove(at);
                let emptied = rows.is_empty();
                self.row_removed(position, emptied)
            }
            Err(at) => {
                if row.stats.records != 0 {
                    reserve_row(rows);
                    rows.insert(at, row);
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
        if gone.rows.is_empty() {
            self.whole.remove(&id);
        }
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
    pub fn flow(&self, id: FlowId) -> Option<(&FlowKey, Rows<'_>)> {
        self.find(id).map(|entry| (&entry.key, self.rows_of(entry)))
    }

    /// The rows of `entry`, narrow or whole.
    fn rows_of<'a>(&'a self, entry: &'a FlowEntry) -> Rows<'a> {
        if entry.rows.is_empty() {
            Rows::whole(self.whole.get(&entry.key.id).map_or(&[], Vec::as_slice))
        } else {
            Rows::narrow(&entry.rows)
        }
    }

    /// How many flows are stored whole, a row of theirs not fitting 32 bits.
    #[cfg(test)]
    fn whole_flows(&self) -> usize {
        self.whole.len()
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
    pub fn visit(&self, only: Option<&[FlowId]>, mut visit: impl FnMut(&FlowKey, Rows<'_>)) {
        match only {
            None => {
                for flows in self.entries.chunks(TOUCHED_TOGETHER) {
                    // Each flow's rows are on the heap: one cache miss per flow. Touched
                    // together first, the misses of a chunk overlap instead of following one
                    // another (measured: the scan waited on them for two thirds of its time).
                    let touched = flows.iter().fold(0, |touched, entry| {
                        touched ^ entry.rows.first().map_or(0, |row| row.place().0)
                    });
                    std::hint::black_box(touched);
                    for entry in flows {
                        visit(&entry.key, self.rows_of(entry));
                    }
                }
            }
            Some(ids) => {
                for id in ids {
                    if let Some(entry) = self.find(*id) {
                        visit(&entry.key, self.rows_of(entry));
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
            held.push((
                key.id,
                rows.iter().map(|row| row.stats.bytes_in).sum::<i64>(),
            ))
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

    fn summary(table: &FlowTable, id: FlowId) -> Vec<(Bucket, i64, i64)> {
        table.flow(id).map_or(Vec::new(), |(_, rows)| {
            rows.iter()
                .map(|row| (row.bucket, row.stats.records, row.stats.bytes_in))
                .collect()
        })
    }

    /// SPEC §12.2 (sums kept up to `i64::MAX`): a sum leaving 32 bits moves the flow's rows to
    /// `whole` exactly, later updates add to them there, and the flow leaves `whole` when its
    /// last row expires.
    #[test]
    fn a_flow_whose_sum_leaves_32_bits_is_stored_whole_and_read_exactly() {
        let mut table = FlowTable::default();
        let big = i64::from(i32::MAX);
        table.update(&key(7, 10), 30, (0, 0), &stats(1, 5));
        table.update(&key(7, 10), 60, (0, 0), &stats(1, big));
        table.update(&key(8, 10), 60, (0, 0), &stats(1, 9));
        assert_eq!(table.whole_flows(), 0);
        assert_eq!(
            table.update(&key(7, 10), 60, (0, 0), &stats(1, 1)),
            Updated::Kept
        );
        assert_eq!(table.whole_flows(), 1);
        assert_eq!(summary(&table, 7), vec![(30, 1, 5), (60, 2, big + 1)]);
        table.update(&key(7, 10), 90, (0, 0), &stats(1, 3));
        table.update(&key(7, 10), 60, (0, 0), &stats(1, big));
        assert_eq!(
            summary(&table, 7),
            vec![(30, 1, 5), (60, 3, 2 * big + 1), (90, 1, 3)]
        );
        assert_eq!(summary(&table, 8), vec![(60, 1, 9)]);
        assert_eq!(table.rows(), 4);
        table.update(&key(7, 10), 30, (0, 0), &stats(-1, -5));
        table.update(&key(7, 10), 60, (0, 0), &stats(-3, -(2 * big + 1)));
        assert_eq!(
            table.update(&key(7, 10), 90, (0, 0), &stats(-1, -3)),
            Updated::Removed
        );
        assert_eq!((table.whole_flows(), table.len(), table.rows()), (0, 1, 1));
        assert_eq!(summary(&table, 8), vec![(60, 1, 9)]);
    }

    /// A flow whose first update does not fit 32 bits enters the table whole, and leaves it.
    #[test]
    fn a_new_flow_too_large_for_32_bits_enters_whole() {
        let mut table = FlowTable::default();
        let large = i64::from(i32::MAX) + 1;
        assert_eq!(
            table.update(&key(5, 10), 60, (0, 0), &stats(1, large)),
            Updated::Added
        );
        assert_eq!(summary(&table, 5), vec![(60, 1, large)]);
        let mut visited = Vec::new();
        table.visit(None, |key, rows| visited.push((key.id, rows.len())));
        assert_eq!(visited, vec![(5, 1)]);
        assert_eq!(
            table.update(&key(5, 10), 60, (0, 0), &stats(-1, -large)),
            Updated::Removed
        );
        assert_eq!((table.whole_flows(), table.len()), (0, 0));
    }

    /// Few rows grow one place at a time: a flow of four rows that takes a fifth keeps room
    /// for five, not six.
    #[test]
    fn few_rows_grow_one_place_at_a_time() {
        let mut table = FlowTable::default();
        for bucket in 0..5 {
            table.update(&key(3, 10), bucket * 15, (0, 0), &stats(1, 1));
        }
        table.update(&key(3, 10), 0, (0, 0), &stats(-1, -1));
        let capacity = table.entries[0].rows.capacity();
        assert_eq!((table.entries[0].rows.len(), capacity), (4, 5));
        table.update(&key(3, 10), 75, (0, 0), &stats(1, 1));
        assert_eq!(table.entries[0].rows.capacity(), 5);
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
