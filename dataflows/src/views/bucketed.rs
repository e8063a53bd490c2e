//! The shape most views take: measures summed per (key, bucket), derived from each record by
//! a pure function, summed per tick as they arrive, arranged by key (exchanged by the key's
//! hash, so every bucket of a key lives on one worker) and read per bucket or summed over a
//! range. A view of this shape implements [`BucketedView`]; this file gives it its build,
//! input, read, compaction, changes for subscribers and reference, as a [`ViewDefinition`].
//!
//! Changes: while someone subscribes, an operator after the arrangement notes the updates of
//! each batch it built (on the worker that owns their keys) in a [`ChangeLog`] with their
//! ticks, and the probe comes after it, so every tick the views reflect is in the log; a read
//! of the changes takes the log's entries of the ticks the arrangement holds (the delta of
//! each (key, bucket)), reads each changed (key, bucket)'s measures from the arrangement as of
//! those ticks (the new row) and subtracts the delta (the old row). While nobody subscribes
//! the operator notes only how far the batches it skipped went, and a snapshot reads through
//! them ([`ChangeLog::snapshot_before`]). The arrangement is compacted one tick behind the
//! frontier, so "every tick before the frontier" is always a time it can still tell apart.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::rc::Rc;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::difference::{Abelian, IsZero, Monoid, Semigroup};
use differential_dataflow::hashable::Hashable;
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::cursor::{Cursor, Navigable};
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::trace::{SpanOf, TraceReader};
use differential_dataflow::ExchangeData;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::Scope;
use timely::progress::frontier::AntichainRef;

use crate::model::{Bucket, FlowRecord, PolicyRule, Tick, TraceId};
use crate::queries::cursor_over_all;
use crate::queries::sizes::live_rows;
use crate::tick_batcher::ValSorter;
use crate::views::changes::{ChangeLog, SharedLog};
use crate::views::registry::{
    BuiltView, LiveRows, Row, ViewChanges, ViewDefinition, ViewFeed, ViewQuery, ViewReader,
    ViewSchema, Watch,
};
use crate::views::scratch::Scratch;

/// A view of measures per (key, bucket). Implementing this (one file) and adding one line to
/// [`crate::views::REGISTERED`] is all a new view of this shape needs.
pub trait BucketedView: Clone + Sync + 'static {
    /// What rows are grouped by, besides the bucket.
    type Key: ExchangeData + Hashable + Hash + Copy;
    /// What is summed: the difference type of the arrangement. A row is absent when its
    /// measures are zero ([`IsZero`]); negation gives a changed row's old measures.
    type Measures: ExchangeData + Abelian + Copy;

    /// Name, description, typed columns.
    fn schema(&self) -> &'static ViewSchema;

    /// The key and measures `record` adds to its bucket, if any.
    fn row_of(&self, record: &FlowRecord) -> Option<(Self::Key, Self::Measures)>;

    /// The row of `key` over `[start, end)` with `measures` summed, in the schema's order.
    fn row(&self, key: &Self::Key, start: i64, end: i64, measures: &Self::Measures) -> Row;

    /// Whether a key's rows are derived from all its buckets together
    /// ([`BucketedView::key_rows`]) instead of one row per bucket or one summed over the range.
    const ROWS_SPAN_BUCKETS: bool = false;

    /// With [`BucketedView::ROWS_SPAN_BUCKETS`]: the rows of `key` from its nonzero measures
    /// per bucket in the range read, ascending (each bucket `window` long).
    fn key_rows(
        &self,
        _key: &Self::Key,
        _buckets: &[(Bucket, Self::Measures)],
        _window: i64,
    ) -> Vec<Row> {
        Vec::new()
    }

    /// The measures per (key, bucket) of `records`, computed from scratch without
    /// [`BucketedView::row_of`]: what the property tests compare the arrangement with.
    fn reference(&self, records: &[FlowRecord]) -> BTreeMap<(Self::Key, Bucket), Self::Measures>;
}

/// One derived row of a bucketed view with its measures.
pub(crate) type Update<V> = (
    (<V as BucketedView>::Key, Bucket),
    <V as BucketedView>::Measures,
);

/// A key with its nonzero measures per bucket, ascending.
pub(crate) type KeyBuckets<V> = (
    <V as BucketedView>::Key,
    Vec<(Bucket, <V as BucketedView>::Measures)>,
);

type Spine<V> = ValSpine<<V as BucketedView>::Key, Bucket, Tick, <V as BucketedView>::Measures>;

/// The rows of `sums` that `query` selects, before filters, sort and limit.
pub(crate) fn rows_in_range<V: BucketedView>(
    view: &V,
    query: &ViewQuery,
    sums: impl IntoIterator<Item = ((V::Key, Bucket), V::Measures)>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut totals: BTreeMap<V::Key, V::Measures> = BTreeMap::new();
    let mut spans: BTreeMap<V::Key, Vec<(Bucket, V::Measures)>> = BTreeMap::new();
    for ((key, bucket), measures) in sums {
        if !query.range.contains(bucket) || measures.is_zero() {
            continue;
        }
        if V::ROWS_SPAN_BUCKETS {
            spans.entry(key).or_default().push((bucket, measures));
        } else if query.per_bucket {
            let end = bucket.saturating_add(query.window);
            rows.push(view.row(&key, bucket, end, &measures));
        } else {
            totals
                .entry(key)
                .or_insert_with(V::Measures::zero)
                .plus_equals(&measures);
        }
    }
    rows.extend(
        totals
            .iter()
            .map(|(key, measures)| view.row(key, query.range.gte, query.range.lt, measures)),
    );
    for (key, buckets) in &spans {
        rows.extend(view.key_rows(key, buckets, query.window));
    }
    rows
}

/// Each row of `rows` with `multiplicity`, equal rows summed and zero sums dropped.
pub(crate) fn add_rows(changes: &mut Vec<(Row, i64)>, rows: Vec<Row>, multiplicity: i64) {
    for row in rows {
        match changes.iter_mut().find(|(held, _)| *held == row) {
            Some((_, total)) => *total += multiplicity,
            None => changes.push((row, multiplicity)),
        }
    }
    changes.retain(|(_, total)| *total != 0);
}

impl<V: BucketedView> ViewDefinition for V {
    fn schema(&self) -> &'static ViewSchema {
        BucketedView::schema(self)
    }

    fn build(&self, scope: Scope<'_, Tick>, probe: &ProbeHandle<Tick>) -> BuiltView {
        let (input, rows) = scope.new_collection::<(V::Key, Bucket), V::Measures>();
        let arranged = rows.arrange_named::<ValSorter<_, _, _, _>, Spine<V>>(
            BucketedView::schema(self).name,
            ValSorter::new,
        );
        let log: SharedLog<(V::Key, Bucket), V::Measures> =
            Rc::new(RefCell::new(ChangeLog::default()));
        let noted = log.clone();
        arranged
            .stream
            .inspect(move |span: &SpanOf<Spine<V>>| {
                let mut log = noted.borrow_mut();
                match &span.inner {
                    Some(batch) if log.is_recording() => note_batch::<V>(&mut log, batch),
                    Some(_) => log.skip_through(span.upper().elements()),
                    None => {}
                }
            })
            .probe_with(probe);
        BuiltView {
            feed: Box::new(Feed::<V> {
                view: self.clone(),
                input,
                rows: Scratch::default(),
            }),
            reader: Box::new(Reader::<V> {
                view: self.clone(),
                trace: arranged.trace,
                log,
            }),
        }
    }

    fn reference(
        &self,
        records: &[FlowRecord],
        _rules: &[(TraceId, PolicyRule)],
        query: &ViewQuery,
    ) -> Vec<Row> {
        query.finish(rows_in_range(
            self,
            query,
            BucketedView::reference(self, records),
        ))
    }
}

/// Notes every update of `batch` in `log`.
fn note_batch<V: BucketedView>(
    log: &mut ChangeLog<(V::Key, Bucket), V::Measures>,
    batch: &<Spine<V> as TraceReader>::Batch,
) {
    let mut cursor = batch.cursor();
    while let Some(key) = cursor.get_key(batch) {
        let key = *key;
        while let Some(bucket) = cursor.get_val(batch) {
            let bucket = *bucket;
            cursor.map_times(batch, |time, measures| {
                log.record(*time, (key, bucket), *measures);
            });
            cursor.step_val(batch);
        }
        cursor.step_key(batch);
    }
}

/// The input of a bucketed view on one worker.
struct Feed<V: BucketedView> {
    view: V,
    input: InputSession<Tick, (V::Key, Bucket), V::Measures>,
    /// The open tick's rows, summed as they arrive.
    rows: Scratch<(V::Key, Bucket), V::Measures>,
}

impl<V: BucketedView> ViewFeed for Feed<V> {
    fn note(&mut self, record: &FlowRecord) {
        if let Some((key, measures)) = self.view.row_of(record) {
            self.rows.extend([((key, record.bucket), measures)]);
        }
    }

    fn advance_to(&mut self, tick: Tick) {
        if tick > *self.input.time() {
            for (row, measures) in self.rows.take() {
                self.input.update(row, measures);
            }
            self.input.advance_to(tick);
            self.input.flush();
        }
    }
}

/// The arrangement of a bucketed view on one worker.
struct Reader<V: BucketedView> {
    view: V,
    trace: TraceAgent<Spine<V>>,
    log: SharedLog<(V::Key, Bucket), V::Measures>,
}

impl<V: BucketedView> Reader<V> {
    /// The nonzero measures of every bucket of each key of `keys` (ascending), summed over
    /// the ticks before `before`; every key when `keys` is `None`.
    fn buckets_before(&mut self, keys: Option<&[V::Key]>, before: Tick) -> Vec<KeyBuckets<V>> {
        let all = match keys {
            None => self.measures_before(None, before),
            Some(keys) => {
                let (mut cursor, storage) = cursor_over_all(&mut self.trace);
                let mut sums = Vec::new();
                for key in keys {
                    cursor.seek_key(&storage, key);
                    if cursor.get_key(&storage) != Some(key) {
                        continue;
                    }
                    cursor.rewind_vals(&storage);
                    while let Some(bucket) = cursor.get_val(&storage) {
                        let bucket = *bucket;
                        let mut measures = V::Measures::zero();
                        cursor.map_times(&storage, |time, diff| {
                            if *time < before {
                                measures.plus_equals(diff);
                            }
                        });
                        sums.push(((*key, bucket), measures));
                        cursor.step_val(&storage);
                    }
                }
                sums
            }
        };
        let mut by_key: BTreeMap<V::Key, Vec<(Bucket, V::Measures)>> = BTreeMap::new();
        for ((key, bucket), measures) in all {
            if !measures.is_zero() {
                by_key.entry(key).or_default().push((bucket, measures));
            }
        }
        by_key.into_iter().collect()
    }

    /// [`ViewReader::changes`] for a view whose rows span buckets: each changed key's rows
    /// from its old buckets (−1) and its new ones (+1), equal rows cancelled; a snapshot reads
    /// the ticks before `snapshot_before`.
    fn key_changes(
        &mut self,
        watch: Watch,
        window: i64,
        before: Tick,
        snapshot_before: Tick,
        delta: &[Update<V>],
    ) -> ViewChanges {
        let mut keys: Vec<V::Key> = delta.iter().map(|((key, _), _)| *key).collect();
        keys.dedup();
        let now = self.buckets_before(Some(&keys), before);
        let mut changes = Vec::new();
        for key in &keys {
            let new: Vec<(Bucket, V::Measures)> = now
                .iter()
                .find(|(at, _)| at == key)
                .map(|(_, buckets)| buckets.clone())
                .unwrap_or_default();
            let mut old: BTreeMap<Bucket, V::Measures> = new.iter().copied().collect();
            for ((_, bucket), change) in delta.iter().filter(|((at, _), _)| at == key) {
                let mut undone = *change;
                undone.negate();
                old.entry(*bucket)
                    .or_insert_with(V::Measures::zero)
                    .plus_equals(&undone);
            }
            let old: Vec<(Bucket, V::Measures)> = old
                .into_iter()
                .filter(|(_, measures)| !measures.is_zero())
                .collect();
            let mut here = Vec::new();
            add_rows(&mut here, self.view.key_rows(key, &old, window), -1);
            add_rows(&mut here, self.view.key_rows(key, &new, window), 1);
            changes.extend(here);
        }
        let snapshot = (watch == Watch::Snapshot).then(|| {
            self.buckets_before(None, snapshot_before)
                .iter()
                .flat_map(|(key, buckets)| self.view.key_rows(key, buckets, window))
                .collect()
        });
        ViewChanges { changes, snapshot }
    }

    /// The measures of every (key, bucket) in `wanted` (ascending), summed over the ticks
    /// before `before`; all of them when `wanted` is `None`.
    fn measures_before(
        &mut self,
        wanted: Option<&[(V::Key, Bucket)]>,
        before: Tick,
    ) -> Vec<Update<V>> {
        let (mut cursor, storage) = cursor_over_all(&mut self.trace);
        let mut sums = Vec::new();
        match wanted {
            Some(wanted) => {
                for &(key, bucket) in wanted {
                    let mut measures = V::Measures::zero();
                    cursor.seek_key(&storage, &key);
                    if cursor.get_key(&storage) == Some(&key) {
                        // An earlier bucket of this key may have left the values at their end.
                        // Stepped, not sought: a list's seek_val also moves its cursors that
                        // are past their last key.
                        cursor.rewind_vals(&storage);
                        while cursor.get_val(&storage).is_some_and(|at| *at < bucket) {
                            cursor.step_val(&storage);
                        }
                        if cursor.get_val(&storage) == Some(&bucket) {
                            cursor.map_times(&storage, |time, diff| {
                                if *time < before {
                                    measures.plus_equals(diff);
                                }
                            });
                        }
                    }
                    sums.push(((key, bucket), measures));
                }
            }
            None => {
                while let Some(key) = cursor.get_key(&storage) {
                    let key = *key;
                    while let Some(bucket) = cursor.get_val(&storage) {
                        let bucket = *bucket;
                        let mut measures = V::Measures::zero();
                        cursor.map_times(&storage, |time, diff| {
                            if *time < before {
                                measures.plus_equals(diff);
                            }
                        });
                        sums.push(((key, bucket), measures));
                        cursor.step_val(&storage);
                    }
                    cursor.step_key(&storage);
                }
            }
        }
        sums
    }
}

impl<V: BucketedView> ViewReader for Reader<V> {
    fn read(&mut self, query: &ViewQuery) -> Vec<Row> {
        let (mut cursor, storage) = cursor_over_all(&mut self.trace);
        let mut sums = Vec::new();
        while let Some(key) = cursor.get_key(&storage) {
            let key = *key;
            while let Some(bucket) = cursor.get_val(&storage) {
                let bucket = *bucket;
                if query.range.contains(bucket) {
                    let mut measures = V::Measures::zero();
                    cursor.map_times(&storage, |_, diff| measures.plus_equals(diff));
                    sums.push(((key, bucket), measures));
                }
                cursor.step_val(&storage);
            }
            cursor.step_key(&storage);
        }
        query.finish(rows_in_range(&self.view, query, sums))
    }

    fn changes(&mut self, watch: Watch, window: i64, before: Tick) -> ViewChanges {
        let (mut delta, snapshot_before) = {
            let mut log = self.log.borrow_mut();
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
        if V::ROWS_SPAN_BUCKETS {
            return self.key_changes(watch, window, before, snapshot_before, &delta);
        }
        let wanted: Vec<(V::Key, Bucket)> = delta.iter().map(|(row, _)| *row).collect();
        let now = self.measures_before(Some(&wanted), before);
        let view = self.view.clone();
        let row = |(key, bucket): &(V::Key, Bucket), measures: &V::Measures| {
            view.row(key, *bucket, bucket.saturating_add(window), measures)
        };
        let mut changes = Vec::new();
        for ((at, change), (_, new)) in delta.iter().zip(&now) {
            let mut old = *change;
            old.negate();
            old.plus_equals(new);
            if !old.is_zero() {
                changes.push((row(at, &old), -1));
            }
            if !new.is_zero() {
                changes.push((row(at, new), 1));
            }
        }
        let snapshot = (watch == Watch::Snapshot).then(|| {
            self.measures_before(None, snapshot_before)
                .iter()
                .filter(|(_, measures)| !measures.is_zero())
                .map(|(at, measures)| row(at, measures))
                .collect()
        });
        ViewChanges { changes, snapshot }
    }

    fn compact_to(&mut self, tick: Tick) {
        self.log.borrow_mut().forget_before(tick);
        // One tick behind: the ticks before the frontier stay apart from the frontier itself.
        let frontier = [tick.saturating_sub(1)];
        let frontier = AntichainRef::new(&frontier);
        self.trace.set_logical_compaction(frontier);
        self.trace.set_physical_compaction(frontier);
    }

    fn live_rows(&mut self) -> LiveRows {
        live_rows(&mut self.trace)
    }
}
