//! The flows view: per flow, one row per (bucket, label pair) whose counters are the summed
//! `Stats` of the updates that carried that label pair in that bucket, held in the owning
//! worker's [`FlowTable`] with the flow's key and updated in place as records are inserted.
//! Goldmane's List, Stream, filtered FilterHints and expiry read the table (`queries/`,
//! through [`FlowsReader::table`]); the generic API reads one row per flow and bucket, the key's
//! fields and the counters summed over label pairs.
//!
//! Held on the worker that owns the flow ([`owner_of`], by its connection), the one its records
//! were inserted on: nothing moves between workers, and every bucket of a flow, and every flow
//! of a connection, lives on one worker.
//!
//! The label pairs present give a range's label intersection (SPEC §3.4), exact under
//! retraction and independent of arrival order. A flow whose nodes report the same labels has
//! one row per bucket.
//!
//! Not an arrangement: the table has no history, so Goldmane's reads see every record inserted
//! on this worker so far, which includes every tick the other views reflect (read-your-writes
//! holds, SPEC §9.1). Subscribers: while someone subscribes, every update is noted in the
//! change log as it is applied, with its tick, and the keys of the flows that left the table
//! meanwhile, so a flow that expiry removed still has its old rows. A read of the changes
//! before a tick takes the log's updates before it and reads the table with the log's later
//! updates taken back out, so a subscriber's deltas add up to the rows at one tick, as an
//! arrangement's would (a worker may have applied ticks the others have not reached).
//!
//! [`owner_of`]: crate::keys::owner_of

use std::cell::{Ref, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::Rc;

use differential_dataflow::consolidation::consolidate;
use rustc_hash::FxHasher;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::Scope;

use crate::flow_table::{FlowTable, Rows, Updated};
use crate::model::{
    Bucket, BucketRange, FlowId, FlowKey, FlowRecord, PolicyRule, Stats, Tick, TraceId,
};
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

/// The flow table and, while someone subscribes, the keys of the flows that left it since the
/// last read of the changes (by flow id, with the tick they left at).
#[derive(Default)]
struct FlowStore {
    table: FlowTable,
    left: HashMap<FlowId, (Tick, FlowKey), BuildHasherDefault<FxHasher>>,
}

impl FlowStore {
    /// The key of flow `id`: held, or left since the last read of the changes.
    fn key(&self, id: FlowId) -> Option<&FlowKey> {
        self.table
            .key(id)
            .or_else(|| self.left.get(&id).map(|(_, key)| key))
    }
}

impl ViewDefinition for Flows {
    fn schema(&self) -> &'static ViewSchema {
        &SCHEMA
    }

    fn build(&self, _scope: Scope<'_, Tick>, _probe: &ProbeHandle<Tick>) -> BuiltView {
        let log: SharedLog<(FlowId, Bucket), Stats> = Rc::new(RefCell::new(ChangeLog::default()));
        let store = Rc::new(RefCell::new(FlowStore::default()));
        BuiltView {
            feed: Box::new(FlowsFeed {
                store: store.clone(),
                log: log.clone(),
                tick: 0,
            }),
            reader: Box::new(FlowsReader { store, log }),
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

/// The input of the flows view on one worker: applies each record to the table.
struct FlowsFeed {
    store: Rc<RefCell<FlowStore>>,
    log: SharedLog<(FlowId, Bucket), Stats>,
    /// The tick records are inserted at.
    tick: Tick,
}

impl ViewFeed for FlowsFeed {
    fn note(&mut self, record: &FlowRecord) {
        let mut store = self.store.borrow_mut();
        let updated =
            store
                .table
                .update(&record.key, record.bucket, record.labels, &record.stats);
        let mut log = self.log.borrow_mut();
        if log.is_recording() {
            log.record(self.tick, (record.key.id, record.bucket), record.stats);
            if updated == Updated::Removed {
                store.left.insert(record.key.id, (self.tick, record.key));
            }
        }
    }

    fn advance_to(&mut self, tick: Tick) {
        self.tick = self.tick.max(tick);
    }
}

/// The counters of each bucket of `rows` (in bucket order) in `range`, label pairs summed.
fn bucket_sums<'a>(
    rows: Rows<'a>,
    range: &'a BucketRange,
) -> impl Iterator<Item = (Bucket, Stats)> + 'a {
    let mut rows = rows.iter().peekable();
    std::iter::from_fn(move || loop {
        let first = rows.next()?;
        let mut sum = first.stats;
        while let Some(row) = rows.next_if(|row| row.bucket == first.bucket) {
            sum.add(&row.stats);
        }
        if range.contains(first.bucket) {
            return Some((first.bucket, sum));
        }
    })
}

/// The flow table read as counters per (flow, bucket) as of the ticks before a read's
/// `before`: the table holds every update applied so far, so the updates the change log still
/// holds at `before` or later are taken back out of the sums.
struct TableSums<'a> {
    table: &'a FlowTable,
    log: &'a SharedLog<(FlowId, Bucket), Stats>,
    /// The later updates of the last `before` asked for: a read of the changes sums twice at
    /// one tick (the changed rows, then the snapshot), and the log is read once.
    later: Option<(Tick, SumsByBucket)>,
}

/// Counters per (flow, bucket).
type SumsByBucket = HashMap<(FlowId, Bucket), Stats, BuildHasherDefault<FxHasher>>;

impl<'a> TableSums<'a> {
    fn new(table: &'a FlowTable, log: &'a SharedLog<(FlowId, Bucket), Stats>) -> Self {
        TableSums {
            table,
            log,
            later: None,
        }
    }
}

/// The updates of `log` applied at `before` or later, summed per (flow, bucket): the log holds
/// every update applied while someone subscribes.
fn later_updates(log: &SharedLog<(FlowId, Bucket), Stats>, before: Tick) -> SumsByBucket {
    let mut later = SumsByBucket::default();
    if before != Tick::MAX {
        for (at, stats) in log.borrow().from_tick(before) {
            later.entry(*at).or_default().add(stats);
        }
    }
    later
}

impl BucketSums for TableSums<'_> {
    type Key = FlowId;
    type Measures = Stats;

    /// Without `wanted`, each flow's buckets come together, in bucket order, the flows in no
    /// particular order.
    fn sums(
        &mut self,
        range: &BucketRange,
        wanted: Option<&[(FlowId, Bucket)]>,
        before: Tick,
        visit: &mut dyn FnMut(FlowId, Bucket, Stats),
    ) {
        let later = match &mut self.later {
            Some((at, held)) if *at == before => &*held,
            slot => &slot.insert((before, later_updates(self.log, before))).1,
        };
        match wanted {
            None if later.is_empty() => self.table.visit(None, |key, rows| {
                for (bucket, sum) in bucket_sums(rows, range) {
                    visit(key.id, bucket, sum);
                }
            }),
            None => {
                // Rare (a snapshot taken while a worker is ahead of the read): every sum is
                // collected, the later updates taken out, and the sums put in order.
                let mut sums = Vec::with_capacity(self.table.rows());
                self.table.visit(None, |key, rows| {
                    sums.extend(bucket_sums(rows, range).map(|(bucket, sum)| ((key.id, bucket), sum)));
                });
                sums.extend(
                    later
                        .iter()
                        .filter(|((_, bucket), _)| range.contains(*bucket))
                        .map(|(at, stats)| (*at, stats.negated())),
                );
                consolidate(&mut sums);
                for ((id, bucket), sum) in sums {
                    visit(id, bucket, sum);
                }
            }
            Some(wanted) => {
                for (id, bucket) in wanted {
                    let mut sum = Stats::default();
                    if let Some((_, rows)) = self.table.flow(*id) {
                        for row in rows.iter().filter(|row| row.bucket == *bucket) {
                            sum.add(&row.stats);
                        }
                    }
                    if let Some(applied) = later.get(&(*id, *bucket)) {
                        sum.add(&applied.negated());
                    }
                    visit(*id, *bucket, sum);
                }
            }
        }
    }

    fn present(stats: &Stats) -> bool {
        has_updates(stats)
    }
}

/// A handle on one worker's flow table, held by a view that reads the flows instead of keeping
/// rows of its own (`views::derived`).
#[derive(Clone)]
pub struct FlowsHandle {
    store: Rc<RefCell<FlowStore>>,
}

impl FlowsHandle {
    /// Calls `visit` with the key and rows of each flow of this worker.
    pub(crate) fn visit(&self, mut visit: impl FnMut(&FlowKey, Rows<'_>)) {
        self.store.borrow().table.visit(None, &mut visit);
    }
}

/// The flows view's table on one worker.
pub struct FlowsReader {
    store: Rc<RefCell<FlowStore>>,
    log: SharedLog<(FlowId, Bucket), Stats>,
}

impl FlowsReader {
    /// The flow table: what Goldmane's reads scan.
    pub fn table(&self) -> Ref<'_, FlowTable> {
        Ref::map(self.store.borrow(), |store| &store.table)
    }

    /// A second handle on the table, for a view derived from the flows at read time
    /// (`views::derived`).
    pub fn handle(&self) -> FlowsHandle {
        FlowsHandle {
            store: self.store.clone(),
        }
    }
}

impl ViewReader for FlowsReader {
    fn read(&mut self, query: &ViewQuery) -> Vec<Row> {
        let store = self.store.borrow();
        let row_of = |id: &FlowId, start, end, stats: &Stats| {
            store.table.key(*id).map(|key| row(key, start, end, stats))
        };
        sums::read(
            &mut TableSums::new(&store.table, &self.log),
            &row_of,
            query,
        )
    }

    fn changes(&mut self, watch: Watch, window: i64, before: Tick) -> ViewChanges {
        let changes = {
            let store = self.store.borrow();
            let row_of = |id: &FlowId, start, end, stats: &Stats| {
                let key = store.key(*id);
                debug_assert!(key.is_some(), "a changed flow's key is held or noted as left");
                key.map(|key| row(key, start, end, stats))
            };
            sums::changes(
                &mut TableSums::new(&store.table, &self.log),
                &row_of,
                &self.log,
                watch,
                window,
                before,
            )
        };
        let mut store = self.store.borrow_mut();
        match watch {
            Watch::Stop => store.left.clear(),
            Watch::Snapshot | Watch::Changes => store.left.retain(|_, (tick, _)| *tick >= before),
        }
        changes
    }

    fn compact_to(&mut self, tick: Tick) {
        self.log.borrow_mut().forget_before(tick);
    }

    fn live_rows(&mut self) -> LiveRows {
        let table = self.table();
        LiveRows {
            keys: table.len() as u64,
            rows: table.rows() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_key, LabelPair};

    /// The sums of the (flow, bucket)s a subscription's changes ask for: exactly one per entry,
    /// in order, zero for one the table does not hold (a flow never inserted, or a bucket a
    /// held flow has no row in), label pairs summed: a row that left is a − delta (SPEC §14.2).
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
        let mut table = FlowTable::default();
        for record in [record((1, 2), 5), record((3, 4), 6)] {
            table.update(&record.key, record.bucket, record.labels, &record.stats);
        }
        let mut visited = Vec::new();
        let wanted = [(3, 30), (7, 15), (7, 30), (7, 45), (9, 30)];
        let log = Rc::new(RefCell::new(ChangeLog::default()));
        TableSums::new(&table, &log).sums(
            &BucketRange {
                gte: Bucket::MIN,
                lt: Bucket::MAX,
            },
            Some(&wanted),
            Tick::MAX,
            &mut |id, bucket, stats| visited.push((id, bucket, stats.records, stats.bytes_in)),
        );
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
