//! The reads' one pass over the flows view: each flow's rows with their counters summed over
//! every batch and time, read straight from the batches' columns (keys, the offsets of each
//! key's values and each value's updates, the counters) rather than through a merged cursor,
//! which re-derives offsets and compares every batch's position at each step. A scan of 1M
//! rows spends its time summing counters, not navigating.

use differential_dataflow::trace::implementations::ord_neu::val_batch::OrdValStorage;
use differential_dataflow::trace::implementations::Vector;
use differential_dataflow::trace::TraceReader;
use timely::progress::Antichain;

use crate::model::{Bucket, FlowId, LabelPair, Stats, Tick};
use crate::traces::FlowsTrace;

/// One row of a flow: its bucket and label pair, with the counters of every update of it.
pub(crate) type FlowRowSum = (Bucket, LabelPair, Stats);

/// The columns of one batch of the flows view.
type FlowsStorage = OrdValStorage<Vector<((FlowId, (Bucket, LabelPair)), Tick, Stats)>>;

/// A batch and the index of the next key to read in it.
struct BatchScan<'a> {
    storage: &'a FlowsStorage,
    next: usize,
}

impl BatchScan<'_> {
    fn key(&self) -> Option<FlowId> {
        self.storage.keys.get(self.next).copied()
    }

    /// Moves to the first key at or after `id`.
    fn seek(&mut self, id: FlowId) {
        self.next += self.storage.keys[self.next..].partition_point(|key| *key < id);
    }

    /// Appends the rows of the key at `next` (every row, counters summed over its times) and
    /// moves past it.
    fn take_rows(&mut self, rows: &mut Vec<FlowRowSum>) {
        let (first, end) = self.storage.vals.bounds(self.next);
        for value in first..end {
            let (bucket, labels) = self.storage.vals.vals[value];
            let (lower, upper) = self.storage.upds.bounds(value);
            let mut stats = Stats::default();
            for diff in &self.storage.upds.diffs[lower..upper] {
                stats.add(diff);
            }
            rows.push((bucket, labels, stats));
        }
        self.next += 1;
    }
}

/// Calls `visit` with each flow of the flows view, in id order, and its rows whose counters do
/// not sum to zero, in (bucket, label pair) order: every flow, or only the ids in `only`
/// (ascending), found by binary search so the others are not read. A flow whose rows all sum to
/// zero (expired, not yet merged away) is visited with no rows.
pub(crate) fn visit_flows(
    flows: &mut FlowsTrace,
    only: Option<&[FlowId]>,
    mut visit: impl FnMut(FlowId, &[FlowRowSum]),
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
    let mut read = |id: FlowId, scans: &mut [BatchScan], rows: &mut Vec<FlowRowSum>| {
        rows.clear();
        let mut holding = 0;
        for scan in scans.iter_mut() {
            if scan.key() == Some(id) {
                scan.take_rows(rows);
                holding += 1;
            }
        }
        if holding == 0 {
            return;
        }
        if holding > 1 {
            // Each batch's rows are in order; the same row may be in several batches.
            rows.sort_by_key(|(bucket, labels, _)| (*bucket, *labels));
            rows.dedup_by(|row, kept| {
                let same = (row.0, row.1) == (kept.0, kept.1);
                if same {
                    kept.2.add(&row.2);
                }
                same
            });
        }
        rows.retain(|(_, _, stats)| stats.records != 0);
        visit(id, rows);
    };
    match only {
        None => {
            while let Some(id) = scans.iter().filter_map(BatchScan::key).min() {
                read(id, &mut scans, &mut rows);
            }
        }
        Some(ids) => {
            for id in ids {
                for scan in scans.iter_mut() {
                    scan.seek(*id);
                }
                read(*id, &mut scans, &mut rows);
            }
        }
    }
}
