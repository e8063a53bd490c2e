//! The shape most views take: measures summed per (key, bucket), derived from each record by
//! a pure function, consolidated per ingest batch, arranged by key (exchanged by the key's
//! hash, so every bucket of a key lives on one worker) and read per bucket or summed over a
//! range. A view of this shape implements [`BucketedView`]; this file gives it its build,
//! input, read, compaction and reference, as a [`ViewDefinition`].

use std::collections::BTreeMap;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::difference::{IsZero, Monoid, Semigroup};
use differential_dataflow::hashable::Hashable;
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::trace::TraceReader;
use differential_dataflow::ExchangeData;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;
use timely::dataflow::Scope;
use timely::progress::frontier::AntichainRef;

use crate::model::{Bucket, FlowRecord, Tick};
use crate::queries::cursor_over_all;
use crate::views::registry::{
    BuiltView, Row, ViewDefinition, ViewFeed, ViewQuery, ViewReader, ViewSchema,
};

/// A view of measures per (key, bucket). Implementing this (one file) and adding one line to
/// [`crate::views::REGISTERED`] is all a new view of this shape needs.
pub trait BucketedView: Clone + Sync + 'static {
    /// What rows are grouped by, besides the bucket.
    type Key: ExchangeData + Hashable + Copy;
    /// What is summed: the difference type of the arrangement. A row is absent when its
    /// measures are zero ([`IsZero`]).
    type Measures: ExchangeData + Monoid + Copy;

    /// Name, description, typed columns.
    fn schema(&self) -> &'static ViewSchema;

    /// The key and measures `record` adds to its bucket, if any.
    fn row_of(&self, record: &FlowRecord) -> Option<(Self::Key, Self::Measures)>;

    /// The row of `key` over `[start, end)` with `measures` summed, in the schema's order.
    fn row(&self, key: &Self::Key, start: i64, end: i64, measures: &Self::Measures) -> Row;

    /// The measures per (key, bucket) of `records`, computed from scratch without
    /// [`BucketedView::row_of`]: what the property tests compare the arrangement with.
    fn reference(&self, records: &[FlowRecord]) -> BTreeMap<(Self::Key, Bucket), Self::Measures>;
}

/// One derived row of a bucketed view with its measures.
type Update<V> = (
    (<V as BucketedView>::Key, Bucket),
    <V as BucketedView>::Measures,
);

type Spine<V> = ValSpine<<V as BucketedView>::Key, Bucket, Tick, <V as BucketedView>::Measures>;

/// The rows of `sums` that `query` selects, before filters, sort and limit.
fn rows_in_range<V: BucketedView>(
    view: &V,
    query: &ViewQuery,
    sums: impl IntoIterator<Item = ((V::Key, Bucket), V::Measures)>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut totals: BTreeMap<V::Key, V::Measures> = BTreeMap::new();
    for ((key, bucket), measures) in sums {
        if !query.range.contains(bucket) || measures.is_zero() {
            continue;
        }
        if query.per_bucket {
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
    rows
}

impl<V: BucketedView> ViewDefinition for V {
    fn schema(&self) -> &'static ViewSchema {
        BucketedView::schema(self)
    }

    fn build(&self, scope: Scope<'_, Tick>, probe: &ProbeHandle<Tick>) -> BuiltView {
        let (input, rows) = scope.new_collection::<(V::Key, Bucket), V::Measures>();
        let arranged = rows.arrange_by_key_named(BucketedView::schema(self).name);
        arranged.stream.probe_with(probe);
        BuiltView {
            feed: Box::new(Feed::<V> {
                view: self.clone(),
                input,
                scratch: Vec::new(),
            }),
            reader: Box::new(Reader::<V> {
                view: self.clone(),
                trace: arranged.trace,
            }),
        }
    }

    fn reference(&self, records: &[FlowRecord], query: &ViewQuery) -> Vec<Row> {
        query.finish(rows_in_range(
            self,
            query,
            BucketedView::reference(self, records),
        ))
    }
}

/// The input of a bucketed view on one worker.
struct Feed<V: BucketedView> {
    view: V,
    input: InputSession<Tick, (V::Key, Bucket), V::Measures>,
    scratch: Vec<Update<V>>,
}

impl<V: BucketedView> ViewFeed for Feed<V> {
    fn note(&mut self, record: &FlowRecord) {
        if let Some((key, measures)) = self.view.row_of(record) {
            self.scratch.push(((key, record.bucket), measures));
        }
    }

    fn end_batch(&mut self) {
        consolidate(&mut self.scratch);
        for (row, measures) in self.scratch.drain(..) {
            self.input.update(row, measures);
        }
    }

    fn advance_to(&mut self, tick: Tick) {
        if tick > *self.input.time() {
            self.input.advance_to(tick);
            self.input.flush();
        }
    }
}

/// The arrangement of a bucketed view on one worker.
struct Reader<V: BucketedView> {
    view: V,
    trace: TraceAgent<Spine<V>>,
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

    fn compact_to(&mut self, tick: Tick) {
        let frontier = [tick];
        let frontier = AntichainRef::new(&frontier);
        self.trace.set_logical_compaction(frontier);
        self.trace.set_physical_compaction(frontier);
    }
}
