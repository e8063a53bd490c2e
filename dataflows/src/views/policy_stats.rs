//! The policy statistics view (SPEC §8): one row per (policy rule, direction, bucket) whose
//! difference is the summed counters of the flows that hit the rule. Goldmane's Statistics
//! reads it with its own layout (`queries/stats.rs`, through [`PolicyStatsReader::trace`]);
//! the generic API reads the same rows, the rule's fields, direction, bucket and counters.
//!
//! Each update's counters reach one row per distinct rule of its trace, so a flow counts once
//! per distinct rule (SPEC §8.2) and expiry, which negates a flow's counters, retracts its
//! statistics with no extra work. A tick's updates are summed per (rule, direction, bucket) as
//! they arrive, in a table indexed by the rules' numbers on this worker
//! (`rule_sums::RuleSums`: one lookup of the update's trace, one addition per distinct rule),
//! and the sums enter the arrangement when the tick closes, so a tick's many updates that hit
//! the same rule in the same bucket reach the batcher as one row.
//!
//! State: every trace's distinct rules on every worker (`rule_sums::TraceRules`, added when a
//! trace is first interned, removed when the catalog retires it: the engine hands this view's
//! input the rule changes of every batch), the open tick's sums, and the output per (rule,
//! direction, bucket).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use differential_dataflow::input::Input;
use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::{Navigable, SpanOf};
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
use crate::views::rule_sums::{RuleSums, TraceRules};
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
                sums: RuleSums::default(),
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
/// tick's updates summed per rule row.
struct PolicyStatsFeed {
    input: StatRowsInput,
    rules: TraceRules,
    sums: RuleSums,
}

impl PolicyStatsFeed {
    /// Inserts the open tick's sums. Called when the tick closes and before any rule gives up
    /// its number, so every sum enters under the rule it was added for.
    fn flush(&mut self) {
        let (rules, input) = (&self.rules, &mut self.input);
        self.sums.take(|number, direction, bucket, stats| {
            let rule = *rules.rule(number);
            input.update((StatKey { rule, direction }, bucket), stats);
        });
    }
}

impl ViewFeed for PolicyStatsFeed {
    fn note(&mut self, record: &FlowRecord) {
        self.sums.add(
            self.rules.rules_of(record.key.trace),
            direction_of(record.key.reporter),
            record.bucket,
            &record.stats,
        );
    }

    fn insert_rules(&mut self, rules: &[(TraceId, PolicyRule)]) {
        // The sums held were added per rule already: rules a trace gains count only for its
        // later updates, and a new rule takes a number no sum is held under.
        self.rules.insert(rules);
    }

    fn retract_rules(&mut self, rules: &[(TraceId, PolicyRule)]) {
        self.flush();
        self.rules.retract(rules);
    }

    fn advance_to(&mut self, tick: Tick) {
        if tick > *self.input.time() {
            self.flush();
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
