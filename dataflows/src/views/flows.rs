//! The flows view: one fixed-size row per (flow id, bucket, label pair) whose difference is the
//! summed `Stats` of the updates that carried that label pair in that bucket. The flow's key
//! fields are not in the row: the owning worker's key store holds them once per flow, filled
//! by this view's input as records are inserted. Goldmane's List, Stream, filtered
//! FilterHints and expiry read it with its own layout (`queries/`, through
//! [`FlowsReader::trace_and_keys`]); the generic API reads one row per flow and bucket, the
//! key's fields and the counters summed over label pairs.
//!
//! Arranged by flow id on the worker that owns the flow ([`owner_of`], by its connection), the
//! one its records were inserted on: nothing moves between workers, and every bucket of a
//! flow, and every flow of a connection, lives on one worker.
//!
//! The label pairs present with a non-zero record count give a range's label intersection
//! (SPEC §3.4), exact under retraction and independent of arrival order. A flow whose nodes
//! report the same labels has one row per bucket.
//!
//! Subscribers: the view notes its batches only while someone subscribes (it holds every
//! update of every flow), and the keys of the flows retracted meanwhile, so a flow that
//! expiry removed (and the key store forgot) still has its old rows. The key of a retraction
//! inserted before the first subscriber came is not needed: the event loop answers a
//! subscription queued after an expiry only once the views reflect its retraction, so that
//! retraction is in the subscription's snapshot, not in a change.
//!
//! [`owner_of`]: crate::keys::owner_of

use std::cell::{Ref, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::Rc;

use differential_dataflow::input::Input;
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::{Navigable, SpanOf};
use rustc_hash::FxHasher;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::Scope;

use crate::keys::FlowKeys;
use crate::model::{
    Bucket, BucketRange, FlowId, FlowKey, FlowRecord, PolicyRule, Stats, Tick, TraceId,
};
use crate::queries::sizes::live_rows;
use crate::queries::{visit_flows, FlowRows};
use crate::tick_batcher::ValSorter;
use crate::traces::{FlowRowsInput, FlowsSpine, FlowsTrace};
use crate::views::changes::{ChangeLog, SharedLog};
use crate::views::registry::{
    columns, BuiltView, Column, ColumnType, LiveRows, Row, Sort, Value, ViewChanges,
    ViewDefinition, ViewFeed, ViewQuery, ViewReader, ViewSchema, Watch, COUNTER_COLUMNS,
    SPAN_COLUMNS,
};
use crate::views::sums::{self, BucketSums};

/// The flows view (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct Flows;

const COLUMNS: &[Column] = &columns::<25>(&[
    &[
        Column {
            name: "id",
            kind: ColumnType::Integer,
            description: "the flow's id, one to one with its key (FlowResult.id)",
        },
        Column {
            name: "source_name",
            kind: ColumnType::String,
            description: "name of the source endpoint",
        },
        Column {
            name: "source_namespace",
            kind: ColumnType::String,
            description: "namespace of the source endpoint",
        },
        Column {
            name: "source_type",
            kind: ColumnType::Integer,
            description: "goldmane.EndpointType number of the source",
        },
        Column {
            name: "dest_name",
            kind: ColumnType::String,
            description: "name of the destination endpoint",
        },
        Column {
            name: "dest_namespace",
            kind: ColumnType::String,
            description: "namespace of the destination endpoint",
        },
        Column {
            name: "dest_type",
            kind: ColumnType::Integer,
            description: "goldmane.EndpointType number of the destination",
        },
        Column {
            name: "dest_port",
            kind: ColumnType::Integer,
            description: "destination port",
        },
        Column {
            name: "dest_service_name",
            kind: ColumnType::String,
            description: "destination service name",
        },
        Column {
            name: "dest_service_namespace",
            kind: ColumnType::String,
            description: "destination service namespace",
        },
        Column {
            name: "dest_service_port_name",
            kind: ColumnType::String,
            description: "destination service port name",
        },
        Column {
            name: "dest_service_port",
            kind: ColumnType::Integer,
            description: "destination service port",
        },
        Column {
            name: "protocol",
            kind: ColumnType::String,
            description: "L4 protocol",
        },
        Column {
            name: "reporter",
            kind: ColumnType::Integer,
            description: "goldmane.Reporter number (1 source, 2 destination)",
        },
        Column {
            name: "action",
            kind: ColumnType::Integer,
            description: "goldmane.Action number (1 allow, 2 deny, 3 pass)",
        },
    ],
    &SPAN_COLUMNS,
    &[Column {
        name: "updates",
        kind: ColumnType::Integer,
        description: "flow updates aggregated",
    }],
    &COUNTER_COLUMNS,
]);

const SCHEMA: ViewSchema = ViewSchema {
    name: "flows",
    description: "Goldmane's flows (Flows.List): one row per flow key and bucket, or per key \
                  summed over the range, with the key's fields and its counters.",
    columns: COLUMNS,
    default_sort: Sort {
        column: 15,
        descending: true,
    },
};

/// The row of flow `key` over `[start, end)` with `stats`, in the schema's order.
fn row(key: &FlowKey, start: i64, end: i64, stats: &Stats) -> Row {
    vec![
        Value::Integer(key.id as i64),
        Value::String(key.source_name),
        Value::String(key.source_namespace),
        Value::Integer(i64::from(key.source_type)),
        Value::String(key.dest_name),
        Value::String(key.dest_namespace),
        Value::Integer(i64::from(key.dest_type)),
        Value::Integer(key.dest_port),
        Value::String(key.dest_service_name),
        Value::String(key.dest_service_namespace),
        Value::String(key.dest_service_port_name),
        Value::Integer(key.dest_service_port),
        Value::String(key.proto),
        Value::Integer(i64::from(key.reporter)),
        Value::Integer(i64::from(key.action)),
        Value::Timestamp(start),
        Value::Timestamp(end),
        Value::Integer(stats.records),
        Value::Integer(stats.packets_in),
        Value::Integer(stats.packets_out),
        Value::Integer(stats.bytes_in),
        Value::Integer(stats.bytes_out),
        Value::Integer(stats.connections_started),
        Value::Integer(stats.connections_completed),
        Value::Integer(stats.connections_live),
    ]
}

/// Whether a flow's counters in a bucket make a row: it had updates there.
fn has_updates(stats: &Stats) -> bool {
    stats.records > 0
}

/// The key store and, while someone subscribes, the keys of the flows retracted since the
/// last read of the changes (by flow id, with the tick of the latest retraction).
#[derive(Default)]
struct FlowStore {
    keys: FlowKeys,
    retracted: HashMap<FlowId, (Tick, FlowKey), BuildHasherDefault<FxHasher>>,
}

impl FlowStore {
    /// The key of flow `id`: stored, or retracted since the last read of the changes.
    fn key(&self, id: FlowId) -> Option<&FlowKey> {
        self.keys
            .get(id)
            .or_else(|| self.retracted.get(&id).map(|(_, key)| key))
    }
}

impl ViewDefinition for Flows {
    fn schema(&self) -> &'static ViewSchema {
        &SCHEMA
    }

    fn build(&self, scope: Scope<'_, Tick>, probe: &ProbeHandle<Tick>) -> BuiltView {
        let (input, rows) = scope.new_collection();
        // Records are inserted on their flow's owner only (`owner_of`): they stay there, fed
        // straight to the arrangement (a pipeline; its batcher copies each container's rows
        // out, so the input's buffers are not held).
        let arranged = arrange_core::<_, _, ValSorter<_, _, _, _>, FlowsSpine>(
            rows.inner,
            Pipeline,
            "flows::arrange",
            ValSorter::new,
        );
        let log: SharedLog<(FlowId, Bucket), Stats> = Rc::new(RefCell::new(ChangeLog::default()));
        let noted = log.clone();
        arranged
            .stream
            .inspect(move |span: &SpanOf<FlowsSpine>| {
                let mut log = noted.borrow_mut();
                match &span.inner {
                    Some(batch) if log.is_recording() => {
                        note_batch(&mut log, batch);
                    }
                    Some(_) => log.skip_through(span.upper().elements()),
                    None => {}
                }
            })
            .probe_with(probe);
        let store = Rc::new(RefCell::new(FlowStore::default()));
        BuiltView {
            feed: Box::new(FlowsFeed {
                input,
                store: store.clone(),
                log: log.clone(),
            }),
            reader: Box::new(FlowsReader {
                arranged: Arranged {
                    trace: arranged.trace,
                },
                store,
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
        let keys: HashMap<FlowId, FlowKey> = records
            .iter()
            .map(|record| (record.key.id, record.key))
            .collect();
        let sums = records
            .iter()
            .map(|record| ((record.key.id, record.bucket), record.stats));
        sums::reference(
            sums,
            has_updates,
            &|id, start, end, stats| keys.get(id).map(|key| row(key, start, end, stats)),
            query,
        )
    }
}

/// Notes every update of `batch` in `log`, by (flow, bucket).
fn note_batch(
    log: &mut ChangeLog<(FlowId, Bucket), Stats>,
    batch: &<FlowsTrace as differential_dataflow::trace::TraceReader>::Batch,
) {
    let mut cursor = batch.cursor();
    while let Some(id) = cursor.get_key(batch) {
        let id = *id;
        while let Some((bucket, _)) = cursor.get_val(batch) {
            let bucket = *bucket;
            cursor.map_times(batch, |time, stats| log.record(*time, (id, bucket), *stats));
            cursor.step_val(batch);
        }
        cursor.step_key(batch);
    }
}

/// The input of the flows view on one worker, with the key store it fills.
struct FlowsFeed {
    input: FlowRowsInput,
    store: Rc<RefCell<FlowStore>>,
    log: SharedLog<(FlowId, Bucket), Stats>,
}

impl FlowsFeed {
    fn update(&mut self, record: &FlowRecord) {
        self.input.update(
            (record.key.id, (record.bucket, record.labels)),
            record.stats,
        );
    }
}

impl ViewFeed for FlowsFeed {
    fn note(&mut self, record: &FlowRecord) {
        self.update(record);
        if self.log.borrow().is_recording() {
            let tick = *self.input.time();
            self.store
                .borrow_mut()
                .retracted
                .insert(record.key.id, (tick, record.key));
        }
    }

    fn insert(&mut self, record: &FlowRecord) {
        let tick = *self.input.time();
        self.store.borrow_mut().keys.note(&record.key, tick);
        self.update(record);
    }

    fn advance_to(&mut self, tick: Tick) {
        if tick > *self.input.time() {
            self.input.advance_to(tick);
            self.input.flush();
        }
    }
}

/// The flows view's arrangement, read as counters per (flow, bucket).
struct Arranged {
    trace: FlowsTrace,
}

impl BucketSums for Arranged {
    type Key = FlowId;
    type Measures = Stats;

    fn sums(
        &mut self,
        range: &BucketRange,
        wanted: Option<&[(FlowId, Bucket)]>,
        before: Tick,
        visit: &mut dyn FnMut(FlowId, Bucket, Stats),
    ) {
        // The flows view's rows are (bucket, label pair): a (flow, bucket) sums its label
        // pairs, adjacent in the scan.
        let Some(wanted) = wanted else {
            visit_flows(&mut self.trace, None, before, |id, flow| {
                let mut open: Option<(Bucket, Stats)> = None;
                for row in flow.rows().iter().filter(|row| range.contains(row.bucket)) {
                    let stats = flow.stats(row);
                    match open.as_mut() {
                        Some((at, sum)) if *at == row.bucket => sum.add(&stats),
                        _ => {
                            if let Some((at, sum)) = open.replace((row.bucket, stats)) {
                                visit(id, at, sum);
                            }
                        }
                    }
                }
                if let Some((at, sum)) = open {
                    visit(id, at, sum);
                }
            });
            return;
        };
        let mut ids: Vec<FlowId> = wanted.iter().map(|(id, _)| *id).collect();
        ids.dedup();
        // The entries of `wanted` not visited yet: those of a flow no batch holds are zero.
        let mut pending = wanted.iter().peekable();
        visit_flows(&mut self.trace, Some(&ids), before, |id, flow| {
            while let Some((wanted_id, bucket)) = pending.next_if(|(wanted_id, _)| *wanted_id <= id)
            {
                let mut stats = Stats::default();
                if *wanted_id == id {
                    for row in flow.rows().iter().filter(|row| row.bucket == *bucket) {
                        stats.add(&flow.stats(row));
                    }
                }
                visit(*wanted_id, *bucket, stats);
            }
        });
        for (id, bucket) in pending {
            visit(*id, *bucket, Stats::default());
        }
    }

    fn present(stats: &Stats) -> bool {
        has_updates(stats)
    }
}

/// A handle on one worker's flows view and key store, held by a view that reads the flows
/// instead of keeping rows of its own (`views::derived`). A clone is another handle on the
/// same arrangement: its holder compacts it.
#[derive(Clone)]
pub struct FlowsHandle {
    trace: FlowsTrace,
    store: Rc<RefCell<FlowStore>>,
}

impl FlowsHandle {
    /// Calls `visit` with the key of each flow of this worker and its rows whose records at
    /// times before `before` do not sum to zero (`queries::visit_flows`).
    pub(crate) fn visit(&mut self, before: Tick, mut visit: impl FnMut(&FlowKey, &FlowRows)) {
        let store = self.store.borrow();
        visit_flows(&mut self.trace, None, before, |id, flow| {
            if flow.rows().is_empty() {
                return;
            }
            let key = store.keys.get(id);
            debug_assert!(key.is_some(), "a flow with a live row has its key stored");
            if let Some(key) = key {
                visit(key, flow);
            }
        });
    }

    /// Allows the arrangement to forget history before `tick`, through this handle.
    pub fn compact_to(&mut self, tick: Tick) {
        sums::compact_behind(&mut self.trace, tick);
    }
}

/// The flows view's arrangement and key store on one worker.
pub struct FlowsReader {
    arranged: Arranged,
    store: Rc<RefCell<FlowStore>>,
    log: SharedLog<(FlowId, Bucket), Stats>,
}

impl FlowsReader {
    /// The arrangement, and the key of every flow it holds: what Goldmane's reads scan.
    pub fn trace_and_keys(&mut self) -> (&mut FlowsTrace, Ref<'_, FlowKeys>) {
        let keys = Ref::map(self.store.borrow(), |store| &store.keys);
        (&mut self.arranged.trace, keys)
    }

    /// A second handle on the arrangement and the key store, for a view derived from the
    /// flows at read time (`views::derived`). Its holder compacts it as this reader does.
    pub fn handle(&self) -> FlowsHandle {
        FlowsHandle {
            trace: self.arranged.trace.clone(),
            store: self.store.clone(),
        }
    }

    /// Forgets flow `id`'s key unless a record was inserted for it at `reflected` or later
    /// (`FlowKeys::forget_unless_inserted_since`).
    pub fn forget_unless_inserted_since(&mut self, id: FlowId, reflected: Tick) {
        self.store
            .borrow_mut()
            .keys
            .forget_unless_inserted_since(id, reflected);
    }
}

impl ViewReader for FlowsReader {
    fn read(&mut self, query: &ViewQuery) -> Vec<Row> {
        let store = self.store.borrow();
        let row_of = |id: &FlowId, start, end, stats: &Stats| {
            store.keys.get(*id).map(|key| row(key, start, end, stats))
        };
        sums::read(&mut self.arranged, &row_of, query)
    }

    fn changes(&mut self, watch: Watch, window: i64, before: Tick) -> ViewChanges {
        let changes = {
            let store = self.store.borrow();
            let row_of = |id: &FlowId, start, end, stats: &Stats| {
                let key = store.key(*id);
                debug_assert!(key.is_some(), "a changed flow's key is stored or retracted");
                key.map(|key| row(key, start, end, stats))
            };
            sums::changes(
                &mut self.arranged,
                &row_of,
                &self.log,
                watch,
                window,
                before,
            )
        };
        let mut store = self.store.borrow_mut();
        match watch {
            Watch::Stop => store.retracted.clear(),
            Watch::Snapshot | Watch::Changes => {
                store.retracted.retain(|_, (tick, _)| *tick >= before);
            }
        }
        changes
    }

    fn compact_to(&mut self, tick: Tick) {
        self.log.borrow_mut().forget_before(tick);
        sums::compact_behind(&mut self.arranged.trace, tick);
    }

    fn live_rows(&mut self) -> LiveRows {
        live_rows(&mut self.arranged.trace)
    }
}

#[cfg(test)]
mod tests {
    use timely::dataflow::operators::probe::Handle as ProbeHandle;

    use super::*;
    use crate::inputs::EngineInputs;
    use crate::model::{test_key, LabelPair};

    /// The sums of the (flow, bucket)s a subscription's changes ask for: exactly one per entry,
    /// in order, zero for one the arrangement does not hold (a flow never inserted, or a bucket
    /// a held flow has no row in), label pairs summed: a row that left is a − delta (SPEC §14.2).
    #[test]
    fn wanted_sums_visit_every_entry_with_zero_for_what_is_not_held() {
        let record = |labels: LabelPair, bytes_in: i64| FlowRecord {
            key: test_key(7, 2, 2),
            bucket: 30,
            labels,
            stats: Stats {
                records: 1,
                bytes_in,
                ..Stats::default()
            },
        };
        let visited = timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let (mut inputs, mut views) = EngineInputs::build(worker, &probe);
            inputs.insert([record((1, 2), 5), record((3, 4), 6)].iter());
            inputs.advance_to(1);
            while probe.less_than(&1) {
                worker.step();
            }
            let mut visited = Vec::new();
            let wanted = [(3, 30), (7, 15), (7, 30), (7, 45), (9, 30)];
            views.reader::<FlowsReader>().arranged.sums(
                &BucketRange {
                    gte: Bucket::MIN,
                    lt: Bucket::MAX,
                },
                Some(&wanted),
                Tick::MAX,
                &mut |id, bucket, stats| visited.push((id, bucket, stats.records, stats.bytes_in)),
            );
            visited
        });
        assert_eq!(
            visited,
            vec![
                (3, 30, 0, 0),
                (7, 15, 0, 0),
                (7, 30, 2, 11),
                (7, 45, 0, 0),
                (9, 30, 0, 0)
            ]
        );
    }
}
