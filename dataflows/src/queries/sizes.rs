//! The size read: how many live rows each registered view holds on this worker, for metrics,
//! and how many distinct flows the flows view holds.
//!
//! A row is live when its differences, summed over every time, are not zero. The read walks
//! every key once, so it costs time proportional to the views' size: callers ask rarely
//! (Eddy refreshes it at most once per window).

use differential_dataflow::difference::{IsZero, Semigroup};
use differential_dataflow::trace::cursor::{Cursor, Navigable};
use differential_dataflow::trace::TraceReader;

use crate::queries::cursor_over_all;
use crate::views::flows::FlowsReader;
use crate::views::registry::LiveRows;
use crate::views::{Views, REGISTERED};

/// Live rows per view on one worker, or summed over workers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewSizes {
    /// Distinct flow keys with data in any retained bucket.
    pub flow_keys: u64,
    /// (flow key, bucket, label pair) rows of the flows view (also among `rows`).
    pub flow_rows: u64,
    /// Live rows of each registered view, in the registry's order.
    pub rows: Vec<u64>,
}

impl ViewSizes {
    /// Live rows per view, by view name (the `view` label of `eddy_view_rows`).
    pub fn per_view(&self) -> Vec<(&'static str, u64)> {
        REGISTERED
            .iter()
            .zip(&self.rows)
            .map(|(view, rows)| (view.schema().name, *rows))
            .collect()
    }

    /// Adds another worker's sizes to these.
    pub fn add(&mut self, other: &ViewSizes) {
        self.flow_keys += other.flow_keys;
        self.flow_rows += other.flow_rows;
        if self.rows.len() < other.rows.len() {
            self.rows.resize(other.rows.len(), 0);
        }
        for (rows, theirs) in self.rows.iter_mut().zip(&other.rows) {
            *rows += theirs;
        }
    }
}

/// Counts the live rows of every view on this worker.
pub fn sizes(views: &mut Views) -> ViewSizes {
    let mut flows = LiveRows::default();
    let mut rows = Vec::with_capacity(REGISTERED.len());
    for reader in views.readers_mut() {
        let live = reader.live_rows();
        if (reader as &mut dyn std::any::Any).is::<FlowsReader>() {
            flows = live;
        }
        rows.push(live.rows);
    }
    ViewSizes {
        flow_keys: flows.keys,
        flow_rows: flows.rows,
        rows,
    }
}

/// The live rows of `trace`: its keys with at least one live value, and its live (key,
/// value) pairs.
pub(crate) fn live_rows<Tr>(trace: &mut Tr) -> LiveRows
where
    Tr: TraceReader,
    Tr::Batch: Navigable,
    <Tr::Batch as Navigable>::Cursor: Cursor,
{
    let (mut cursor, storage) = cursor_over_all(trace);
    live(&mut cursor, &storage)
}

fn live<C: Cursor>(cursor: &mut C, storage: &C::Storage) -> LiveRows {
    let mut live = LiveRows::default();
    while cursor.key_valid(storage) {
        let before = live.rows;
        while cursor.val_valid(storage) {
            let mut sum: Option<C::Diff> = None;
            cursor.map_times(storage, |_, diff| {
                let diff = C::owned_diff(diff);
                match sum.as_mut() {
                    Some(total) => total.plus_equals(&diff),
                    None => sum = Some(diff),
                }
            });
            if sum.is_some_and(|total| !total.is_zero()) {
                live.rows += 1;
            }
            cursor.step_val(storage);
        }
        if live.rows > before {
            live.keys += 1;
        }
        cursor.step_key(storage);
    }
    live
}
