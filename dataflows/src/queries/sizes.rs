//! The size read: how many live rows each view holds on this worker, for metrics.
//!
//! A row is live when its differences, summed over every time, are not zero. The read walks
//! every key once, so it costs time proportional to the views' size: callers ask rarely
//! (Eddy refreshes it at most once per window).

use differential_dataflow::difference::{IsZero, Semigroup};
use differential_dataflow::trace::cursor::Cursor;

use crate::queries::cursor_over_all;
use crate::views::Views;

/// Live rows per view on one worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewSizes {
    /// Distinct flow keys with data in any retained bucket.
    pub flow_keys: u64,
    /// (flow key, bucket, label pair) rows of the flows view.
    pub flow_rows: u64,
    /// (field, value, bucket) rows of the hints view.
    pub hint_rows: u64,
    /// (rule, direction, bucket) rows of the policy statistics view.
    pub policy_stat_rows: u64,
}

impl ViewSizes {
    /// Live rows per view, by view name (the `view` label of `eddy_view_rows`).
    pub fn per_view(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("flows", self.flow_rows),
            ("hints", self.hint_rows),
            ("policy_stats", self.policy_stat_rows),
        ]
    }

    /// Adds another worker's sizes to these.
    pub fn add(&mut self, other: &ViewSizes) {
        self.flow_keys += other.flow_keys;
        self.flow_rows += other.flow_rows;
        self.hint_rows += other.hint_rows;
        self.policy_stat_rows += other.policy_stat_rows;
    }
}

/// Counts the live rows of every view on this worker.
pub fn sizes(views: &mut Views) -> ViewSizes {
    let (mut cursor, storage) = cursor_over_all(&mut views.flows);
    let (flow_keys, flow_rows) = live(&mut cursor, &storage);
    let (mut cursor, storage) = cursor_over_all(&mut views.hints);
    let (_, hint_rows) = live(&mut cursor, &storage);
    let (mut cursor, storage) = cursor_over_all(&mut views.policy_stats);
    let (_, policy_stat_rows) = live(&mut cursor, &storage);
    ViewSizes {
        flow_keys,
        flow_rows,
        hint_rows,
        policy_stat_rows,
    }
}

/// The keys with at least one live value, and the live (key, value) pairs.
fn live<C: Cursor>(cursor: &mut C, storage: &C::Storage) -> (u64, u64) {
    let (mut keys, mut rows) = (0, 0);
    while cursor.key_valid(storage) {
        let before = rows;
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
                rows += 1;
            }
            cursor.step_val(storage);
        }
        if rows > before {
            keys += 1;
        }
        cursor.step_key(storage);
    }
    (keys, rows)
}
