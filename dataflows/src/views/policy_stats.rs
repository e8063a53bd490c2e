//! The policy statistics view (SPEC §8): one row per (policy rule, direction, bucket) whose
//! difference is the summed counters of the flows that hit the rule. Goldmane's Statistics
//! reads it with its own layout (`queries/stats.rs`, through [`PolicyStatsReader::trace`]);
//! the generic API reads the same rows, the rule's fields, direction, bucket and counters.
//!
//! Each update's counters reach one row per distinct rule of its trace
//! ([`TraceRules::rows_of`]), so a flow counts once per distinct rule (SPEC §8.2) and expiry,
//! which negates a flow's counters, retracts its statistics with no extra work. A tick's
//! updates are first summed by (trace, direction, bucket) as they arrive ([`Scratch`], one
//! hash per update whatever the trace's length); when the tick closes each sum is expanded
//! into its trace's rules and the rule rows are summed again, so a tick's many updates that
//! hit the same rule in the same bucket reach the batcher as one row. Expanding a sum of
//! updates gives the sum of their expansions: a rule row's counters are a sum either way.
//!
//! State: every trace's distinct rules on every worker ([`TraceRules`], added when a trace is
//! first interned, removed when the catalog retires it: the engine hands this view's input
//! the rule changes of every batch), and the output per (rule, direction, bucket).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::rc::Rc;

use differential_dataflow::input::Input;
use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::{Navigable, SpanOf};
use rustc_hash::FxHasher;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::Scope;

use crate::model::{
    direction_of, Bucket, BucketRange, FlowRecord, PolicyRule, StatKey, StatLevel, Stats, Tick,
    TraceId,
};
use crate::queries::sizes::live_rows;
use crate::tick_batcher::ValSorter;
use crate::traces::{PolicyStatsSpine, PolicyStatsTrace, StatRowsInput};
use crate::views::changes::{ChangeLog, SharedLog};
use crate::views::registry::{
    columns, BuiltView, Column, ColumnType, LiveRows, Row, Sort, Value, ViewChanges,
    ViewDefinition, ViewFeed, ViewQuery, ViewReader, ViewSchema, Watch, COUNTER_COLUMNS,
    SPAN_COLUMNS,
};
use crate::views::scratch::Scratch;
use crate::views::sums::{self, BucketSums};

/// The policy statistics view (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct PolicyStats;

const COLUMNS: &[Column] = &columns::<18>(&[
    &[
        Column {
            name: "kind",
            kind: ColumnType::Integer,
            description: "goldmane.PolicyKind number of the policy",
        },
        Column {
            name: "tier",
            kind: ColumnType::String,
            description: "tier of the policy",
        },
        Column {
            name: "namespace",
            kind: ColumnType::String,
            description: "namespace of the policy (empty for global policies)",
        },
        Column {
            name: "name",
            kind: ColumnType::String,
            description: "name of the policy",
        },
        Column {
            name: "action",
            kind: ColumnType::Integer,
            description: "goldmane.Action number of the hit (1 allow, 2 deny, 3 pass)",
        },
        Column {
            name: "rule_index",
            kind: ColumnType::Integer,
            description: "index of the rule hit (0 on policy rows)",
        },
        Column {
            name: "per_rule",
            kind: ColumnType::Bool,
            description: "true: a row per rule (StatisticsGroupBy PolicyRule); false: per policy",
        },
        Column {
            name: "direction",
            kind: ColumnType::Integer,
            description: "goldmane.RuleDirection number of the flows (1 ingress, 2 egress)",
        },
    ],
    &SPAN_COLUMNS,
    &[Column {
        name: "updates",
        kind: ColumnType::Integer,
        description: "flow updates that hit the rule",
    }],
    &COUNTER_COLUMNS,
]);

const SCHEMA: ViewSchema = ViewSchema {
    name: "policy_stats",
    description: "Goldmane's policy statistics (Statistics.List): the counters of the flows \
                  that hit each policy (and each rule), per direction and bucket.",
    columns: COLUMNS,
    default_sort: Sort {
        column: 10,
        descending: true,
    },
};

/// The generic row of (rule, direction) over `[start, end)` with `stats`.
fn row(key: &StatKey, start: i64, end: i64, stats: &Stats) -> Option<Row> {
    let rule = &key.rule;
    Some(vec![
        Value::Integer(i64::from(rule.kind)),
        Value::String(rule.tier),
        Value::String(rule.namespace),
        Value::String(rule.name),
        Value::Integer(i64::from(rule.action)),
        Value::Integer(rule.rule_index),
        Value::Bool(rule.level == StatLevel::Rule),
        Value::Integer(i64::from(key.direction)),
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
    ])
}

/// Whether a rule's counters in a bucket make a row: flows hit it there.
fn has_updates(stats: &Stats) -> bool {
    stats.records > 0
}

/// A row of the policy statistics view's input: a rule and direction, and a bucket.
pub type StatRow = (StatKey, Bucket);

/// The updates of one trace in one direction (from their reporter) and bucket: what a tick
/// sums, one hash per update, before each sum is expanded into its trace's rules.
pub type TraceRow = (TraceId, i32, Bucket);

/// The trace row an update is summed under.
fn trace_row_of(record: &FlowRecord) -> TraceRow {
    (
        record.key.trace,
        direction_of(record.key.reporter),
        record.bucket,
    )
}

/// The distinct rules of every trace the catalog holds, on one worker.
///
/// Invariant: a record's trace row reaches [`TraceRules::rows_of`] only after its trace's rules were
/// inserted: batches are handed to the engine one at a time under the catalog's handover lock,
/// each taking the rules queued so far, so the rules of a trace travel (to every worker) in
/// the first batch handed over after the trace was interned, no later than any record of it,
/// and a worker inserts a batch's rules before its records. A trace's rules are removed only
/// once no retained flow uses the trace.
#[derive(Debug, Default)]
pub struct TraceRules {
    rules: HashMap<TraceId, Vec<PolicyRule>, BuildHasherDefault<FxHasher>>,
}

impl TraceRules {
    /// Adds the rules of newly interned traces (each rule once per trace).
    pub fn insert(&mut self, rules: &[(TraceId, PolicyRule)]) {
        for (trace, rule) in rules {
            let held = self.rules.entry(*trace).or_default();
            if !held.contains(rule) {
                held.push(*rule);
            }
        }
    }

    /// Removes the rules of traces the catalog retired.
    pub fn retract(&mut self, rules: &[(TraceId, PolicyRule)]) {
        for (trace, rule) in rules {
            if let Some(held) = self.rules.get_mut(trace) {
                held.retain(|kept| kept != rule);
                if held.is_empty() {
                    self.rules.remove(trace);
                }
            }
        }
    }

    /// Whether trace `trace` has rules here.
    pub fn holds(&self, trace: TraceId) -> bool {
        self.rules.contains_key(&trace)
    }

    /// The rows through which a trace's updates in one direction and bucket reach the policy
    /// statistics: one per distinct rule of the trace, weighted by the updates' summed
    /// counters.
    pub fn rows_of(
        &self,
        &(trace, direction, bucket): &TraceRow,
        stats: Stats,
    ) -> impl Iterator<Item = (StatRow, Stats)> + '_ {
        self.rules
            .get(&trace)
            .into_iter()
            .flatten()
            .map(move |rule| {
                (
                    (
                        StatKey {
                            rule: *rule,
                            direction,
                        },
                        bucket,
                    ),
                    stats,
                )
            })
    }

    /// How many traces have rules here.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no trace has rules here.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl ViewDefinition for PolicyStats {
    fn schema(&self) -> &'static ViewSchema {
        &SCHEMA
    }

    fn build(&self, scope: Scope<'_, Tick>, probe: &ProbeHandle<Tick>) -> BuiltView {
        let (input, stat_rows) = scope.new_collection();
        let arranged = stat_rows
            .arrange_named::<ValSorter<_, _, _, _>, PolicyStatsSpine>("policy_stats::arrange", ValSorter::new);
        let log: SharedLog<(StatKey, Bucket), Stats> = Rc::new(RefCell::new(ChangeLog::default()));
        let noted = log.clone();
        arranged
            .stream
            .inspect(move |span: &SpanOf<PolicyStatsSpine>| {
                let mut log = noted.borrow_mut();
                match &span.inner {
                    Some(batch) if log.is_recording() => {
                        let mut cursor = batch.cursor();
                        while let Some(key) = cursor.get_key(batch) {
                            let key = *key;
                            while let Some(bucket) = cursor.get_val(batch) {
                                let bucket = *bucket;
                                cursor.map_times(batch, |time, stats| {
                                    log.record(*time, (key, bucket), *stats);
                                });
                                cursor.step_val(batch);
                            }
                            cursor.step_key(batch);
                        }
                    }
                    Some(_) => log.skip_through(span.upper().elements()),
                    None => {}
                }
            })
            .probe_with(probe);
        BuiltView {
            feed: Box::new(PolicyStatsFeed {
                input,
                rules: TraceRules::default(),
                traces: Scratch::default(),
                rule_rows: Scratch::default(),
            }),
            reader: Box::new(PolicyStatsReader {
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
        rules: &[(TraceId, PolicyRule)],
        query: &ViewQuery,
    ) -> Vec<Row> {
        let mut distinct: HashMap<TraceId, BTreeSet<PolicyRule>> = HashMap::new();
        for (trace, rule) in rules {
            distinct.entry(*trace).or_default().insert(*rule);
        }
        let sums = records.iter().flat_map(|record| {
            let direction = direction_of(record.key.reporter);
            distinct
                .get(&record.key.trace)
                .into_iter()
                .flatten()
                .map(move |rule| {
                    let key = StatKey {
                        rule: *rule,
                        direction,
                    };
                    ((key, record.bucket), record.stats)
                })
        });
        sums::reference(sums, has_updates, &row, query)
    }
}

/// The input of the policy statistics view on one worker: every trace's rules, and the open
/// tick's updates summed by trace row, expanded into rule rows when the tick closes.
struct PolicyStatsFeed {
    input: StatRowsInput,
    rules: TraceRules,
    /// The open tick's updates, summed by trace row.
    traces: Scratch<TraceRow, Stats>,
    /// The expanded rows, summed by rule row (traces share rules): empty between expansions.
    rule_rows: Scratch<StatRow, Stats>,
}

impl PolicyStatsFeed {
    /// Expands the summed trace rows into rule rows with the rules held now, and inserts them.
    /// Called before the rules of a trace with summed rows change, so every sum is expanded
    /// with the rules its updates were inserted under.
    fn expand(&mut self) {
        for (row, stats) in self.traces.take() {
            self.rule_rows.extend(self.rules.rows_of(&row, stats));
        }
        for (row, stats) in self.rule_rows.take() {
            self.input.update(row, stats);
        }
    }
}

impl ViewFeed for PolicyStatsFeed {
    fn note(&mut self, record: &FlowRecord) {
        self.traces.extend([(trace_row_of(record), record.stats)]);
    }

    fn insert_rules(&mut self, rules: &[(TraceId, PolicyRule)]) {
        // A new trace has no summed rows. A held trace gaining rules must have its sums
        // expanded first: the catalog never reuses a trace id, but this view does not rely on
        // it.
        if rules.iter().any(|(trace, _)| self.rules.holds(*trace)) {
            self.expand();
        }
        self.rules.insert(rules);
    }

    fn retract_rules(&mut self, rules: &[(TraceId, PolicyRule)]) {
        self.expand();
        self.rules.retract(rules);
    }

    fn end_batch(&mut self) {}

    fn advance_to(&mut self, tick: Tick) {
        if tick > *self.input.time() {
            self.expand();
            self.input.advance_to(tick);
            self.input.flush();
        }
    }
}

/// The policy statistics view's arrangement, read as counters per (rule, bucket).
struct Arranged {
    trace: PolicyStatsTrace,
}

impl BucketSums for Arranged {
    type Key = StatKey;
    type Measures = Stats;

    fn sums(
        &mut self,
        range: &BucketRange,
        wanted: Option<&[(StatKey, Bucket)]>,
        before: Tick,
        visit: &mut dyn FnMut(StatKey, Bucket, Stats),
    ) {
        sums::counter_sums(&mut self.trace, range, wanted, before, visit);
    }

    fn present(stats: &Stats) -> bool {
        has_updates(stats)
    }
}

/// The policy statistics view's arrangement on one worker.
pub struct PolicyStatsReader {
    arranged: Arranged,
    log: SharedLog<(StatKey, Bucket), Stats>,
}

impl PolicyStatsReader {
    /// The arrangement: what Goldmane's Statistics scans.
    pub fn trace(&mut self) -> &mut PolicyStatsTrace {
        &mut self.arranged.trace
    }
}

impl ViewReader for PolicyStatsReader {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_key, FlowKey, StatLevel, DIRECTION_EGRESS, REPORTER_SRC};

    fn rule(name: u32) -> PolicyRule {
        PolicyRule {
            kind: 1,
            tier: 2,
            namespace: 3,
            name,
            action: 1,
            rule_index: 0,
            level: StatLevel::Policy,
        }
    }

    fn record(trace: TraceId) -> FlowRecord {
        FlowRecord {
            key: FlowKey {
                reporter: REPORTER_SRC,
                trace,
                ..test_key(7, 2, 4)
            },
            bucket: 60,
            labels: (0, 0),
            stats: Stats {
                records: 1,
                packets_in: 9,
                ..Stats::default()
            },
        }
    }

    #[test]
    fn an_update_counts_once_per_distinct_rule_of_its_trace() {
        let mut rules = TraceRules::default();
        rules.insert(&[(1, rule(10)), (1, rule(11)), (1, rule(10)), (2, rule(12))]);
        let record = record(1);
        let rows: Vec<_> = rules
            .rows_of(&trace_row_of(&record), record.stats)
            .collect();
        let names: Vec<_> = rows.iter().map(|((key, _), _)| key.rule.name).collect();
        assert_eq!(names, vec![10, 11]);
        assert!(rows
            .iter()
            .all(|((key, bucket), stats)| key.direction == DIRECTION_EGRESS
                && *bucket == 60
                && stats.packets_in == 9));
    }

    #[test]
    fn retired_rules_are_forgotten() {
        let mut rules = TraceRules::default();
        rules.insert(&[(1, rule(10)), (1, rule(11))]);
        rules.retract(&[(1, rule(10))]);
        let rows_of = |rules: &TraceRules| {
            let record = record(1);
            rules.rows_of(&trace_row_of(&record), record.stats).count()
        };
        assert_eq!(rows_of(&rules), 1);
        rules.retract(&[(1, rule(11))]);
        assert!(rules.is_empty());
        assert_eq!(rows_of(&rules), 0);
    }
}
