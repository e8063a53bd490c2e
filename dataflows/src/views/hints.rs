//! The hints view: one row per (field, value, bucket) counting the updates that carried the
//! value, for the namespace fields FilterHints reports (SPEC §6) and the policy trace. Policy
//! fields are kept as trace ids; the frontend expands a trace into its tiers, names, kinds and
//! namespaces. The endpoint name fields have no rows here: a name is (nearly) one per flow, so
//! its rows would repeat the flows view row for row; FilterHints reads names from the flow
//! table instead (`queries/hints.rs`). Goldmane's unfiltered FilterHints of a
//! namespace or policy field reads this view with its own layout (through
//! [`HintsReader::trace`]); the generic API reads the namespace fields' rows (field, value,
//! bucket, updates), the field as its `goldmane.FilterType` number. The trace rows are left
//! out there: a trace id is no string.
//!
//! Each update's hint rows ([`rows_of`] of its [`held_values_of`]) are summed as they arrive
//! ([`Scratch`]) and enter the arrangement when the tick closes, so the many updates of a tick
//! that share a namespace or a trace cost one row, not one each. (Summing whole value sets
//! first cost an extra hash per update: on the realistic workload a tick's value sets are
//! nearly all distinct, traces being many.)

use std::cell::RefCell;
use std::rc::Rc;

use differential_dataflow::hashable::Hashable;
use differential_dataflow::input::Input;
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::{Navigable, SpanOf};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::Scope;

use crate::model::{Bucket, BucketRange, FlowKey, FlowRecord, PolicyRule, Tick, TraceId};
use crate::queries::cursor_over_all;
use crate::queries::sizes::live_rows;
use crate::tick_batcher::KeySorter;
use crate::traces::{HintRowsInput, HintsSpine, HintsTrace};
use crate::views::changes::{ChangeLog, SharedLog};
use crate::views::registry::{
    columns, BuiltView, Column, ColumnType, LiveRows, Row, Sort, Value, ViewChanges,
    ViewDefinition, ViewFeed, ViewQuery, ViewReader, ViewSchema, Watch, SPAN_COLUMNS,
};
use crate::views::scratch::Scratch;
use crate::views::sums::{self, BucketSums};

/// The hints view (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct FilterHints;

/// A key field whose distinct values FilterHints reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HintField {
    /// `FlowKey.source_name`.
    SourceName,
    /// `FlowKey.dest_name`.
    DestName,
    /// `FlowKey.source_namespace`.
    SourceNamespace,
    /// `FlowKey.dest_namespace`.
    DestNamespace,
    /// `FlowKey.trace`: the policy fields are derived from it.
    Trace,
}

impl HintField {
    /// The `goldmane.FilterType` number of a held field with string values, or `None` for
    /// the trace (whose policy fields the frontend derives).
    fn filter_type(self) -> Option<i64> {
        match self {
            HintField::DestNamespace => Some(3),
            HintField::SourceNamespace => Some(4),
            HintField::SourceName | HintField::DestName | HintField::Trace => None,
        }
    }

    /// The fields this view holds rows of, in the order rows are produced: those with few
    /// values, shared by many flows.
    pub const HELD: [HintField; 3] = [
        HintField::SourceNamespace,
        HintField::DestNamespace,
        HintField::Trace,
    ];

    /// Whether this view holds rows of this field (the name fields are read from the flows
    /// view).
    pub fn is_held(self) -> bool {
        Self::HELD.contains(&self)
    }

    /// The value of this field in `key`.
    pub fn value_of(self, key: &FlowKey) -> u32 {
        match self {
            HintField::SourceName => key.source_name,
            HintField::DestName => key.dest_name,
            HintField::SourceNamespace => key.source_namespace,
            HintField::DestNamespace => key.dest_namespace,
            HintField::Trace => key.trace,
        }
    }
}

/// One row of the hints view.
pub type HintRow = (HintField, u32, Bucket);

/// The values of the held fields of one update (in [`HintField::HELD`]'s order) and its
/// bucket.
pub type HeldValues = ([u32; 3], Bucket);

/// The held values of `record`.
pub fn held_values_of(record: &FlowRecord) -> HeldValues {
    (
        HintField::HELD.map(|field| field.value_of(&record.key)),
        record.bucket,
    )
}

/// The hint rows of `updates` updates with the same held values: one per held field.
pub fn rows_of(&(values, bucket): &HeldValues, updates: isize) -> [(HintRow, isize); 3] {
    std::array::from_fn(|at| ((HintField::HELD[at], values[at], bucket), updates))
}

const COLUMNS: &[Column] = &columns::<5>(&[
    &[
        Column {
            name: "field",
            kind: ColumnType::Integer,
            description: "goldmane.FilterType number: 3 dest_namespace, 4 source_namespace",
        },
        Column {
            name: "value",
            kind: ColumnType::String,
            description: "a value of the field",
        },
    ],
    &SPAN_COLUMNS,
    &[Column {
        name: "updates",
        kind: ColumnType::Integer,
        description: "flow updates carrying the value",
    }],
]);

const SCHEMA: ViewSchema = ViewSchema {
    name: "hints",
    description: "Goldmane's filter hints (Flows.FilterHints): the values of the endpoint \
                  namespace fields per bucket, with the updates carrying each (names are one \
                  per flow: the flows view's columns).",
    columns: COLUMNS,
    default_sort: Sort {
        column: 4,
        descending: true,
    },
};

/// The generic row of a (field, value) over `[start, end)` with `updates`, if the field has
/// one.
fn row(&(field, value): &(HintField, u32), start: i64, end: i64, updates: &isize) -> Option<Row> {
    Some(vec![
        Value::Integer(field.filter_type()?),
        Value::String(value),
        Value::Timestamp(start),
        Value::Timestamp(end),
        Value::Integer(*updates as i64),
    ])
}

fn has_updates(updates: &isize) -> bool {
    *updates > 0
}

impl ViewDefinition for FilterHints {
    fn schema(&self) -> &'static ViewSchema {
        &SCHEMA
    }

    fn build(&self, scope: Scope<'_, Tick>, probe: &ProbeHandle<Tick>) -> BuiltView {
        let (input, hint_rows) = scope.new_collection::<HintRow, isize>();
        // Exchanged by (field, value), not by the whole row: every bucket of a value lives on
        // one worker, so a row summed over a range is whole on one worker.
        let by_value = Exchange::new(|update: &((HintRow, ()), Tick, isize)| {
            let ((field, value, _), ()) = update.0;
            (field, value).hashed()
        });
        let arranged = arrange_core::<_, _, KeySorter<_, _, _>, HintsSpine>(
            hint_rows.map(|row| (row, ())).inner,
            by_value,
            "hints::arrange",
            KeySorter::new,
        );
        let log: SharedLog<((HintField, u32), Bucket), isize> =
            Rc::new(RefCell::new(ChangeLog::default()));
        let noted = log.clone();
        arranged
            .stream
            .inspect(move |span: &SpanOf<HintsSpine>| {
                let mut log = noted.borrow_mut();
                match &span.inner {
                    Some(batch) if log.is_recording() => {
                        let mut cursor = batch.cursor();
                        while let Some(&(field, value, bucket)) = cursor.get_key(batch) {
                            cursor.map_times(batch, |time, updates| {
                                log.record(*time, ((field, value), bucket), *updates);
                            });
                            cursor.step_key(batch);
                        }
                    }
                    Some(_) => log.skip_through(span.upper().elements()),
                    None => {}
                }
            })
            .probe_with(probe);
        BuiltView {
            feed: Box::new(HintsFeed {
                input,
                rows: Scratch::default(),
            }),
            reader: Box::new(HintsReader {
                arranged: Arranged {
                    trace: arranged.trace,
                },
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
        let sums = records.iter().flat_map(|record| {
            HintField::HELD.map(|field| {
                (
                    ((field, field.value_of(&record.key)), record.bucket),
                    record.stats.records as isize,
                )
            })
        });
        sums::reference(sums, has_updates, &row, query)
    }
}

/// The input of the hints view on one worker: the open tick's hint rows, summed as they
/// arrive.
struct HintsFeed {
    input: HintRowsInput,
    /// The open tick's hint rows, summed.
    rows: Scratch<HintRow, isize>,
}

impl ViewFeed for HintsFeed {
    fn note(&mut self, record: &FlowRecord) {
        self.rows.extend(rows_of(
            &held_values_of(record),
            record.stats.records as isize,
        ));
    }

    fn advance_to(&mut self, tick: Tick) {
        if tick > *self.input.time() {
            for (row, count) in self.rows.take() {
                self.input.update(row, count);
            }
            self.input.advance_to(tick);
            self.input.flush();
        }
    }
}

/// The hints view's arrangement, read as updates per ((field, value), bucket).
struct Arranged {
    trace: HintsTrace,
}

impl BucketSums for Arranged {
    type Key = (HintField, u32);
    type Measures = isize;

    fn sums(
        &mut self,
        range: &BucketRange,
        wanted: Option<&[((HintField, u32), Bucket)]>,
        before: Tick,
        visit: &mut dyn FnMut((HintField, u32), Bucket, isize),
    ) {
        let (mut cursor, storage) = cursor_over_all(&mut self.trace);
        let sum = |cursor: &mut _, storage: &_| {
            let mut updates = 0isize;
            Cursor::map_times(cursor, storage, |time: &Tick, diff: &isize| {
                if *time < before {
                    updates += diff;
                }
            });
            updates
        };
        let Some(wanted) = wanted else {
            while let Some(&(field, value, bucket)) = cursor.get_key(&storage) {
                if range.contains(bucket) {
                    visit((field, value), bucket, sum(&mut cursor, &storage));
                }
                cursor.step_key(&storage);
            }
            return;
        };
        for &((field, value), bucket) in wanted {
            let key = (field, value, bucket);
            cursor.seek_key(&storage, &key);
            let updates = if cursor.get_key(&storage) == Some(&key) {
                sum(&mut cursor, &storage)
            } else {
                0
            };
            visit((field, value), bucket, updates);
        }
    }

    fn present(updates: &isize) -> bool {
        has_updates(updates)
    }
}

/// The hints view's arrangement on one worker.
pub struct HintsReader {
    arranged: Arranged,
    log: SharedLog<((HintField, u32), Bucket), isize>,
}

impl HintsReader {
    /// The arrangement: what Goldmane's unfiltered FilterHints scans.
    pub fn trace(&mut self) -> &mut HintsTrace {
        &mut self.arranged.trace
    }
}

impl ViewReader for HintsReader {
    fn read(&mut self, query: &ViewQuery) -> Vec<Row> {
        sums::read(&mut self.arranged, &row, query)
    }

    fn changes(&mut self, watch: Watch, window: i64, before: Tick) -> ViewChanges {
        sums::changes(&mut self.arranged, &row, &self.log, watch, window, before)
    }

    fn compact_to(&mut self, tick: Tick) {
        self.log.borrow_mut().forget_before(tick);
        sums::compact_behind(&mut self.arranged.trace, tick);
    }

    fn live_rows(&mut self) -> LiveRows {
        live_rows(&mut self.arranged.trace)
    }
}
