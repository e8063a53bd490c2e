//! The generic rows of a view whose arrangement has a layout of its own (Goldmane's flows,
//! hints and policy statistics views, laid out for their own queries): the view sums its
//! arrangement into measures per (key, bucket) ([`BucketSums`]) and says how such a sum
//! looks as a row ([`RowOf`]); this file gives it [`ViewReader`]'s read and changes, and its
//! reference from the same sums computed from scratch.
//!
//! Rows are one per (key, bucket), or one per key summed over the range read; a (key, bucket)
//! makes a row when its measures are present ([`BucketSums::present`]: it had updates).
//! Changes are taken as in `bucketed` (a [`ChangeLog`] of the arrangement's batches, the old
//! row being the new one minus the delta), except that these views note their batches only
//! while someone subscribes ([`ChangeLog::skip_through`]).
//!
//! [`ViewReader`]: crate::views::registry::ViewReader
//! [`ChangeLog`]: crate::views::changes::ChangeLog
//! [`ChangeLog::skip_through`]: crate::views::changes::ChangeLog::skip_through

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::difference::{Abelian, Semigroup};
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::trace::TraceReader;
use timely::progress::frontier::AntichainRef;

use crate::model::{Bucket, BucketRange, Stats, Tick};
use crate::queries::cursor_over_all;
use crate::views::changes::SharedLog;
use crate::views::registry::{Row, TopRows, ViewChanges, ViewQuery, Watch};

/// An arrangement read as measures per (key, bucket).
pub trait BucketSums {
    /// What rows are grouped by, besides the bucket.
    type Key: Ord + Copy;
    /// What is summed.
    type Measures: Abelian + Copy;

    /// Calls `visit` with the measures of (key, bucket)s of the arrangement, each summed over
    /// the times before `before`: without `wanted`, each one whose bucket is in `range`, each
    /// key's buckets together and in order (the keys in any order); with `wanted`
    /// (ascending), exactly one visit per entry of `wanted`, in its order, zero for one the
    /// arrangement does not hold.
    fn sums(
        &mut self,
        range: &BucketRange,
        wanted: Option<&[(Self::Key, Bucket)]>,
        before: Tick,
        visit: &mut dyn FnMut(Self::Key, Bucket, Self::Measures),
    );

    /// Whether `measures` make a row.
    fn present(measures: &Self::Measures) -> bool;
}

/// The row of a key over `[start, end)` with its measures summed, in the schema's order, or
/// `None` when the view shows no row for that key.
pub type RowOf<'a, K, M> = &'a dyn Fn(&K, i64, i64, &M) -> Option<Row>;

/// Every (key, bucket) of everything.
const EVERY_BUCKET: BucketRange = BucketRange {
    gte: Bucket::MIN,
    lt: Bucket::MAX,
};

/// The rows of a query built from sums arriving with each key's buckets together.
struct RowsOfSums<'a, K, M> {
    query: &'a ViewQuery,
    row: RowOf<'a, K, M>,
    rows: TopRows<'a>,
    /// The key being summed over the range (without `per_bucket`), and its total.
    open: Option<(K, M)>,
}

impl<'a, K: Ord + Copy, M: Abelian + Copy> RowsOfSums<'a, K, M> {
    fn new(query: &'a ViewQuery, row: RowOf<'a, K, M>) -> Self {
        RowsOfSums {
            query,
            row,
            rows: query.top_rows(),
            open: None,
        }
    }

    /// Adds the present measures of `key` in `bucket` (in the query's range).
    fn add(&mut self, key: K, bucket: Bucket, measures: M) {
        if self.query.per_bucket {
            let end = bucket.saturating_add(self.query.window);
            self.push((self.row)(&key, bucket, end, &measures));
            return;
        }
        match self.open.as_mut() {
            Some((open, total)) if *open == key => total.plus_equals(&measures),
            _ => {
                if let Some((done, total)) = self.open.replace((key, measures)) {
                    self.push_total(done, total);
                }
            }
        }
    }

    fn push_total(&mut self, key: K, total: M) {
        let range = self.query.range;
        self.push((self.row)(&key, range.gte, range.lt, &total));
    }

    fn push(&mut self, row: Option<Row>) {
        if let Some(row) = row {
            self.rows.push(row);
        }
    }

    fn finish(mut self) -> Vec<Row> {
        if let Some((key, total)) = self.open.take() {
            self.push_total(key, total);
        }
        self.rows.finish()
    }
}

/// Answers `query` from `arranged`, rows made by `row` ([`ViewQuery::finish`]ed).
pub fn read<A: BucketSums>(
    arranged: &mut A,
    row: RowOf<'_, A::Key, A::Measures>,
    query: &ViewQuery,
) -> Vec<Row> {
    let mut rows = RowsOfSums::new(query, row);
    arranged.sums(
        &query.range,
        None,
        Tick::MAX,
        &mut |key, bucket, measures| {
            if A::present(&measures) {
                rows.add(key, bucket, measures);
            }
        },
    );
    rows.finish()
}

/// Answers `query` from measures per (key, bucket) computed from scratch: the reference
/// [`read`] must match.
pub fn reference<K: Ord + Copy, M: Abelian + Copy>(
    sums: impl IntoIterator<Item = ((K, Bucket), M)>,
    present: fn(&M) -> bool,
    row: RowOf<'_, K, M>,
    query: &ViewQuery,
) -> Vec<Row> {
    let mut sums: Vec<((K, Bucket), M)> = sums.into_iter().collect();
    consolidate(&mut sums);
    let mut rows = RowsOfSums::new(query, row);
    for ((key, bucket), measures) in sums {
        if query.range.contains(bucket) && present(&measures) {
            rows.add(key, bucket, measures);
        }
    }
    rows.finish()
}

/// [`ViewReader::changes`] of `arranged`, whose batches `log` notes while recording.
///
/// [`ViewReader::changes`]: crate::views::registry::ViewReader::changes
pub fn changes<A: BucketSums>(
    arranged: &mut A,
    row: RowOf<'_, A::Key, A::Measures>,
    log: &SharedLog<(A::Key, Bucket), A::Measures>,
    watch: Watch,
    window: i64,
    before: Tick,
) -> ViewChanges
where
    A::Key: Ord,
    (A::Key, Bucket): Ord + Clone,
{
    let (mut delta, snapshot_before) = {
        let mut log = log.borrow_mut();
        match watch {
            Watch::Snapshot => log.set_recording(true),
            Watch::Changes => {}
            Watch::Stop => {
                log.set_recording(false);
                log.forget_before(before);
                return ViewChanges::default();
            }
        }
        (log.take_before(before), log.snapshot_before(before))
    };
    consolidate(&mut delta);
    let wanted: Vec<(A::Key, Bucket)> = delta.iter().map(|(at, _)| *at).collect();
    let mut now = Vec::with_capacity(wanted.len());
    arranged.sums(
        &EVERY_BUCKET,
        Some(&wanted),
        before,
        &mut |_, _, measures| now.push(measures),
    );
    let row_at = |(key, bucket): &(A::Key, Bucket), measures: &A::Measures| {
        row(key, *bucket, bucket.saturating_add(window), measures)
    };
    let mut changes = Vec::new();
    for ((at, change), new) in delta.iter().zip(&now) {
        let mut old = *change;
        old.negate();
        old.plus_equals(new);
        if A::present(&old) {
            changes.extend(row_at(at, &old).map(|row| (row, -1)));
        }
        if A::present(new) {
            changes.extend(row_at(at, new).map(|row| (row, 1)));
        }
    }
    let snapshot = (watch == Watch::Snapshot).then(|| {
        let mut rows = Vec::new();
        arranged.sums(
            &EVERY_BUCKET,
            None,
            snapshot_before,
            &mut |key, bucket, measures| {
                if A::present(&measures) {
                    rows.extend(row_at(&(key, bucket), &measures));
                }
            },
        );
        rows
    });
    ViewChanges { changes, snapshot }
}

/// Allows `trace` to forget history before the tick before `tick` and merge its batches: one
/// tick behind the frontier, so the ticks before it stay apart from the frontier itself (a
/// read of the changes sums the ticks before the frontier).
pub fn compact_behind<Tr: TraceReader<Time = Tick>>(trace: &mut Tr, tick: Tick) {
    let frontier = [tick.saturating_sub(1)];
    let frontier = AntichainRef::new(&frontier);
    trace.set_logical_compaction(frontier);
    trace.set_physical_compaction(frontier);
}

/// [`BucketSums::sums`] of an arrangement `key → bucket` whose differences are counters: the
/// counters of each (key, bucket) summed over the times before `before`. The policy
/// statistics view reads its sums through it; the flows view reads its own from its flow
/// table.
pub fn counter_sums<K>(
    trace: &mut TraceAgent<ValSpine<K, Bucket, Tick, Stats>>,
    range: &BucketRange,
    wanted: Option<&[(K, Bucket)]>,
    before: Tick,
    visit: &mut dyn FnMut(K, Bucket, Stats),
) where
    K: Ord + Clone + 'static,
{
    let (mut cursor, storage) = cursor_over_all(trace);
    let add_times = |cursor: &mut _, stats: &mut Stats| {
        Cursor::map_times(cursor, &storage, |time: &Tick, diff: &Stats| {
            if *time < before {
                stats.add(diff);
            }
        });
    };
    let Some(wanted) = wanted else {
        while let Some(key) = cursor.get_key(&storage).cloned() {
            // The cursor gives each bucket once, summed over the batches holding it.
            while let Some(bucket) = cursor.get_val(&storage).copied() {
                if range.contains(bucket) {
                    let mut stats = Stats::default();
                    add_times(&mut cursor, &mut stats);
                    visit(key.clone(), bucket, stats);
                }
                cursor.step_val(&storage);
            }
            cursor.step_key(&storage);
        }
        return;
    };
    for (key, bucket) in wanted {
        let mut stats = Stats::default();
        cursor.seek_key(&storage, key);
        if cursor.get_key(&storage) == Some(key) {
            // An earlier bucket of this key may have left the values at their end. Stepped,
            // not sought: a list's seek_val also moves its cursors that are past their last
            // key.
            cursor.rewind_vals(&storage);
            while let Some(at) = cursor.get_val(&storage).copied() {
                if at > *bucket {
                    break;
                }
                if at == *bucket {
                    add_times(&mut cursor, &mut stats);
                }
                cursor.step_val(&storage);
            }
        }
        visit(key.clone(), *bucket, stats);
    }
}
