//! Views read from the flows view instead of kept: [`FromFlows`] serves a [`BucketedView`]
//! (its rows, measures and reference unchanged) by deriving its measures per (key, bucket)
//! from the flows this worker holds when it is read, so ingest pays nothing for it: no input,
//! no batcher, no arrangement, no merges. A read costs a pass over this worker's flows.
//!
//! Requirement: the view's key must determine the flow's connection (source and destination
//! namespace and name, destination port; `keys::connection_of`). Every flow of a connection is
//! owned by one worker (`keys::owner_of`), so each key's buckets are read whole on one worker
//! and a row lives on one worker, as for every other view.
//!
//! Subscriptions: while someone subscribes, the reader keeps the measures it last showed; a
//! read of the changes derives the measures from the flows as they are and sends the rows of
//! every key whose measures differ (old rows −, new rows +). An epoch's changes cost a
//! pass over this worker's flows, and the shown measures take memory in proportion to the
//! view, only while someone subscribes.

use std::collections::BTreeMap;

use differential_dataflow::consolidation::consolidate;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::Scope;

use crate::model::{Bucket, FlowRecord, PolicyRule, Tick, TraceId};
use crate::views::bucketed::{add_rows, rows_in_range, BucketedView, KeyBuckets, Update};
use crate::views::flows::FlowsHandle;
use crate::views::registry::{
    BuiltView, LiveRows, Row, ViewChanges, ViewDefinition, ViewFeed, ViewQuery, ViewReader,
    ViewSchema, Watch,
};

/// A [`BucketedView`] derived from the flows view at read time (see the module
/// documentation). Registered as `FromFlows(View)` instead of `View`.
#[derive(Clone, Copy, Debug)]
pub struct FromFlows<V>(pub V);

/// Each key's nonzero measures per bucket, ascending.
type Measured<V> = BTreeMap<<V as BucketedView>::Key, Vec<(Bucket, <V as BucketedView>::Measures)>>;

impl<V: BucketedView> ViewDefinition for FromFlows<V> {
    fn schema(&self) -> &'static ViewSchema {
        self.0.schema()
    }

    fn build(&self, _scope: Scope<'_, Tick>, _probe: &ProbeHandle<Tick>) -> BuiltView {
        BuiltView {
            feed: Box::new(NoFeed),
            reader: Box::new(Derived {
                view: self.0.clone(),
                flows: None,
                shown: None,
            }),
        }
    }

    /// The same answer as the view kept as an arrangement: the reference does not depend on
    /// how the view is served.
    fn reference(
        &self,
        records: &[FlowRecord],
        rules: &[(TraceId, PolicyRule)],
        query: &ViewQuery,
    ) -> Vec<Row> {
        ViewDefinition::reference(&self.0, records, rules, query)
    }
}

/// The input of a derived view: it keeps nothing, the flows view's input does.
struct NoFeed;

impl ViewFeed for NoFeed {
    fn note(&mut self, _record: &FlowRecord) {}

    fn advance_to(&mut self, _tick: Tick) {}
}

/// Each key of `sums` (sorted by key and bucket, as [`Derived::sums`] returns them: a key's
/// buckets are one run) with its measures per bucket, ascending.
fn by_key<V: BucketedView>(sums: &[Update<V>]) -> impl Iterator<Item = KeyBuckets<V>> + '_ {
    sums.chunk_by(|(a, _), (b, _)| a.0 == b.0).map(|run| {
        let buckets = run
            .iter()
            .map(|((_, bucket), measures)| (*bucket, *measures));
        (run[0].0 .0, buckets.collect())
    })
}

/// A derived view on one worker: its handle on the flows, and while someone subscribes the
/// measures last shown.
struct Derived<V: BucketedView> {
    view: V,
    /// Given once every view is built ([`ViewReader::read_flows_through`]).
    flows: Option<FlowsHandle>,
    shown: Option<Measured<V>>,
}

impl<V: BucketedView> Derived<V> {
    /// The measures per (key, bucket) of the `selected` buckets of the flows on this worker,
    /// zero sums left out.
    fn sums(&self, selected: impl Fn(Bucket) -> bool) -> Vec<Update<V>> {
        let mut sums = Vec::new();
        let view = &self.view;
        if let Some(flows) = self.flows.as_ref() {
            flows.visit(|key, rows| {
                for row in rows.iter().filter(|row| selected(row.bucket)) {
                    let record = FlowRecord {
                        key: *key,
                        bucket: row.bucket,
                        labels: row.labels,
                        stats: row.stats,
                    };
                    if let Some((at, measures)) = view.row_of(&record) {
                        sums.push(((at, row.bucket), measures));
                    }
                }
            });
        }
        consolidate(&mut sums);
        sums
    }

    /// Every key's nonzero measures per bucket, ascending.
    fn measured(&self) -> Measured<V> {
        by_key::<V>(&self.sums(|_| true)).collect()
    }

    /// The rows of `key` with `buckets`: one per bucket, or the view's rows across them.
    fn key_rows(&self, key: &V::Key, buckets: &[(Bucket, V::Measures)], window: i64) -> Vec<Row> {
        if V::ROWS_SPAN_BUCKETS {
            return self.view.key_rows(key, buckets, window);
        }
        buckets
            .iter()
            .map(|(bucket, measures)| {
                self.view
                    .row(key, *bucket, bucket.saturating_add(window), measures)
            })
            .collect()
    }

    /// The rows of every key whose measures differ between `old` and `new`: old rows −1, new
    /// rows +1, equal rows cancelled.
    fn difference(&self, old: &Measured<V>, new: &Measured<V>, window: i64) -> Vec<(Row, i64)> {
        let none = Vec::new();
        let mut changes = Vec::new();
        let keys = old
            .keys()
            .chain(new.keys().filter(|key| !old.contains_key(key)));
        for key in keys {
            let (before, after) = (old.get(key).unwrap_or(&none), new.get(key).unwrap_or(&none));
            if before == after {
                continue;
            }
            let mut here = Vec::new();
            add_rows(&mut here, self.key_rows(key, before, window), -1);
            add_rows(&mut here, self.key_rows(key, after, window), 1);
            changes.extend(here);
        }
        changes
    }
}

impl<V: BucketedView> ViewReader for Derived<V> {
    fn read(&mut self, query: &ViewQuery) -> Vec<Row> {
        let sums = self.sums(|bucket| query.range.contains(bucket));
        if !V::ROWS_SPAN_BUCKETS {
            return query.finish(rows_in_range(&self.view, query, sums));
        }
        // Only the best rows are held, not every key's.
        let mut top = query.top_rows();
        for (key, buckets) in by_key::<V>(&sums) {
            for row in self.view.key_rows(&key, &buckets, query.window) {
                top.push(row);
            }
        }
        top.finish()
    }

    fn changes(&mut self, watch: Watch, window: i64, _before: Tick) -> ViewChanges {
        if watch == Watch::Stop {
            self.shown = None;
            return ViewChanges::default();
        }
        let now = self.measured();
        let changes = self
            .shown
            .as_ref()
            .map(|shown| self.difference(shown, &now, window))
            .unwrap_or_default();
        let snapshot = (watch == Watch::Snapshot).then(|| {
            now.iter()
                .flat_map(|(key, buckets)| self.key_rows(key, buckets, window))
                .collect()
        });
        self.shown = Some(now);
        ViewChanges { changes, snapshot }
    }

    fn compact_to(&mut self, _tick: Tick) {}

    fn live_rows(&mut self) -> LiveRows {
        let sums = self.sums(|_| true);
        LiveRows {
            keys: sums.chunk_by(|(a, _), (b, _)| a.0 == b.0).count() as u64,
            rows: sums.len() as u64,
        }
    }

    fn read_flows_through(&mut self, flows: &FlowsHandle) {
        self.flows = Some(flows.clone());
    }
}
