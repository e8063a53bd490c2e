//! The reads' one pass over the flows view: each flow's rows with their update counts summed
//! over every batch and every time (or every time before a tick: the generic read and the
//! changes of subscriptions), read straight from the batches' columns (keys, the offsets of
//! each key's values and each value's updates, the counters) rather than through a merged
//! cursor, which re-derives offsets and compares every batch's position at each step. A row's
//! other counters are summed only when a read asks for them ([`FlowRows::stats`]): a List
//! needs them for the rows of its page, not for the 1M rows it counts.

use differential_dataflow::trace::implementations::ord_neu::val_batch::OrdValStorage;
use differential_dataflow::trace::implementations::Vector;
use differential_dataflow::trace::TraceReader;
use timely::progress::Antichain;

use crate::model::{Bucket, FlowId, LabelPair, Stats, Tick};
use crate::traces::FlowsTrace;

/// The columns of one batch of the flows view.
type FlowsStorage = OrdValStorage<Vector<((FlowId, (Bucket, LabelPair)), Tick, Stats)>>;

/// `FlowRow::holder` of a row summed from several batches.
const SEVERAL_BATCHES: usize = usize::MAX;

/// The `before` of a scan that sums every time.
pub(crate) const EVERY_TICK: Tick = Tick::MAX;

/// One row of a flow: its bucket and label pair, and the records of every update of it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlowRow {
    pub bucket: Bucket,
    pub labels: LabelPair,
    /// The updates' `records`, summed over batches and times.
    pub records: i64,
    /// The index in [`FlowRows::holders`] of the batch holding the row, or [`SEVERAL_BATCHES`].
    holder: usize,
    /// The row's value index in that batch.
    value: usize,
}

/// A flow's rows whose records do not sum to zero, in (bucket, label pair) order, and the
/// batches they were read from, to sum a row's counters on demand.
pub(crate) struct FlowRows<'a> {
    rows: &'a [FlowRow],
    /// Only updates at times before this are summed.
    before: Tick,
    /// Each batch holding the flow, with the range of the flow's values in it.
    holders: &'a [(&'a FlowsStorage, usize, usize)],
}

impl FlowRows<'_> {
    /// The rows, in (bucket, label pair) order.
    pub fn rows(&self) -> &[FlowRow] {
        self.rows
    }

    /// The counters of `row` (one of [`FlowRows::rows`]), summed over every batch and time
    /// the scan sums.
    pub fn stats(&self, row: &FlowRow) -> Stats {
        let mut stats = Stats::default();
        if row.holder == SEVERAL_BATCHES {
            for (storage, first, end) in self.holders {
                let values = &storage.vals.vals[*first..*end];
                if let Ok(at) = values.binary_search(&(row.bucket, row.labels)) {
                    add_updates(storage, first + at, self.before, &mut stats);
                }
            }
        } else {
            add_updates(
                self.holders[row.holder].0,
                row.value,
                self.before,
                &mut stats,
            );
        }
        stats
    }
}

/// Calls `add` with the difference of each update of value `value` of `storage` at a time
/// before `before` (every update for [`EVERY_TICK`], without reading their times).
fn for_each_update(storage: &FlowsStorage, value: usize, before: Tick, add: impl FnMut(&Stats)) {
    let (lower, upper) = storage.upds.bounds(value);
    let diffs = &storage.upds.diffs[lower..upper];
    if before == EVERY_TICK {
        diffs.iter().for_each(add);
    } else {
        let times = &storage.upds.times[lower..upper];
        times
            .iter()
            .zip(diffs)
            .filter(|(time, _)| **time < before)
            .map(|(_, diff)| diff)
            .for_each(add);
    }
}

/// Adds the counters of the updates of value `value` of `storage` at times before `before`
/// to `stats`.
fn add_updates(storage: &FlowsStorage, value: usize, before: Tick, stats: &mut Stats) {
    for_each_update(storage, value, before, |diff| stats.add(diff));
}

/// The records of the updates of value `value` of `storage` at times before `before`.
fn records_of(storage: &FlowsStorage, value: usize, before: Tick) -> i64 {
    let mut records = 0i64;
    for_each_update(storage, value, before, |diff| {
        records = records.saturating_add(diff.records);
    });
    records
}

/// A batch and the index of the next key to read in it.
struct BatchScan<'a> {
    storage: &'a FlowsStorage,
    next: usize,
}

impl<'a> BatchScan<'a> {
    fn key(&self) -> Option<FlowId> {
        self.storage.keys.get(self.next).copied()
    }

    /// Moves to the first key at or after `id`.
    fn seek(&mut self, id: FlowId) {
        self.next += self.storage.keys[self.next..].partition_point(|key| *key < id);
    }

    /// Appends the rows of the key at `next` (every row, records summed over its times before
    /// `before`), notes this batch as their holder, and moves past the key.
    fn take_rows(
        &mut self,
        before: Tick,
        rows: &mut Vec<FlowRow>,
        holders: &mut Vec<(&'a FlowsStorage, usize, usize)>,
    ) {
        let storage = self.storage;
        let (first, end) = storage.vals.bounds(self.next);
        let holder = holders.len();
        holders.push((storage, first, end));
        for value in first..end {
            let (bucket, labels) = storage.vals.vals[value];
            let records = records_of(storage, value, before);
            rows.push(FlowRow {
                bucket,
                labels,
                records,
                holder,
                value,
            });
        }
        self.next += 1;
    }
}

/// Calls `visit` with each flow of the flows view, in id order, and its rows whose records at
/// times before `before` ([`EVERY_TICK`]: every time) do not sum to zero: every flow, or only
/// the ids in `only` (ascending), found by binary search so the others are not read. A flow
/// whose rows all sum to zero (expired, not yet merged away) is visited with no rows; a flow
/// no batch holds is not visited.
pub(crate) fn visit_flows(
    flows: &mut FlowsTrace,
    only: Option<&[FlowId]>,
    before: Tick,
    mut visit: impl FnMut(FlowId, &FlowRows),
) {
    let batches = flows
        .batches_through(Antichain::new().borrow())
        .expect("the empty frontier is always a clean cut of a trace");
    let mut scans: Vec<BatchScan> = batches
        .iter()
        .map(|batch| BatchScan {
            storage: &batch.storage,
            next: 0,
        })
        .filter(|scan| scan.key().is_some())
        .collect();
    let mut rows = Vec::new();
    let mut holders = Vec::new();
    let mut next = 0;
    loop {
        let id = match only {
            None => match scans.iter().filter_map(BatchScan::key).min() {
                Some(id) => id,
                None => break,
            },
            Some(ids) => match ids.get(next) {
                Some(id) => {
                    next += 1;
                    for scan in scans.iter_mut() {
                        scan.seek(*id);
                    }
                    *id
                }
                None => break,
            },
        };
        if read_flow(id, before, &mut scans, &mut rows, &mut holders) {
            let flow = FlowRows {
                rows: &rows,
                before,
                holders: &holders,
            };
            visit(id, &flow);
        }
    }
}

/// Reads flow `id`'s rows from the scans positioned at it (moving them past it) into `rows`,
/// their records at times before `before` summed per (bucket, label pair) and without those
/// whose records sum to zero, and the batches holding them into `holders`; returns whether
/// any batch held the flow.
fn read_flow<'a>(
    id: FlowId,
    before: Tick,
    scans: &mut [BatchScan<'a>],
    rows: &mut Vec<FlowRow>,
    holders: &mut Vec<(&'a FlowsStorage, usize, usize)>,
) -> bool {
    rows.clear();
    holders.clear();
    for scan in scans.iter_mut() {
        if scan.key() == Some(id) {
            scan.take_rows(before, rows, holders);
        }
    }
    if holders.len() > 1 {
        // Each batch's rows are in order; the same row may be in several batches.
        rows.sort_by_key(|row| (row.bucket, row.labels));
        rows.dedup_by(|row, kept| {
            let same = (row.bucket, row.labels) == (kept.bucket, kept.labels);
            if same {
                kept.records = kept.records.saturating_add(row.records);
                kept.holder = SEVERAL_BATCHES;
            }
            same
        });
    }
    rows.retain(|row| row.records != 0);
    !holders.is_empty()
}
