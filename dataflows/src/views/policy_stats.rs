//! The policy statistics view (SPEC §8): one row per (policy rule, direction, bucket) whose
//! difference is the summed counters of the flows that hit the rule.
//!
//! Each update is expanded on its worker into one row per distinct rule of its trace
//! ([`TraceRules::rows_of`]), so a flow counts once per distinct rule (SPEC §8.2) and expiry,
//! which negates a flow's counters, retracts its statistics with no extra work. The rows are
//! consolidated per tick before they enter: a tick's many updates that hit the same rule in the
//! same bucket reach the batcher as one row.
//! State: every trace's distinct rules on every worker ([`TraceRules`], added when a trace is
//! first interned, removed when the catalog retires it), and the output per (rule, direction,
//! bucket).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::model::{direction_of, Bucket, FlowRecord, PolicyRule, StatKey, Stats, Tick, TraceId};
use crate::traces::{PolicyStatsTrace, StatRows};

/// A row of the policy statistics view's input: a rule and direction, and a bucket.
pub type StatRow = (StatKey, Bucket);

/// The distinct rules of every trace the catalog holds, on one worker.
///
/// Invariant: a record reaches [`TraceRules::rows_of`] only after its trace's rules were
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

    /// The rows through which one update reaches the policy statistics: one per distinct rule
    /// of its trace, in the direction of its reporter, weighted by its counters.
    pub fn rows_of<'a>(
        &'a self,
        record: &'a FlowRecord,
    ) -> impl Iterator<Item = (StatRow, Stats)> + 'a {
        let direction = direction_of(record.key.reporter);
        self.rules
            .get(&record.key.trace)
            .into_iter()
            .flatten()
            .map(move |rule| {
                (
                    (
                        StatKey {
                            rule: *rule,
                            direction,
                        },
                        record.bucket,
                    ),
                    record.stats,
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

/// Builds the policy statistics view from the rows of [`TraceRules::rows_of`].
pub fn build(stat_rows: StatRows<'_>, probe: &ProbeHandle<Tick>) -> PolicyStatsTrace {
    let arranged = stat_rows.arrange_by_key_named("policy_stats::arrange");
    arranged.stream.probe_with(probe);
    arranged.trace
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FlowKey, StatLevel, DIRECTION_EGRESS, REPORTER_SRC};

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
                id: 7,
                source_name: 1,
                source_namespace: 2,
                source_type: 1,
                dest_name: 3,
                dest_namespace: 4,
                dest_type: 1,
                dest_port: 443,
                dest_service_name: 0,
                dest_service_namespace: 0,
                dest_service_port_name: 0,
                dest_service_port: 0,
                proto: 5,
                reporter: REPORTER_SRC,
                action: 1,
                trace,
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
        let rows: Vec<_> = rules.rows_of(&record).collect();
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
        assert_eq!(rules.rows_of(&record(1)).count(), 1);
        rules.retract(&[(1, rule(11))]);
        assert!(rules.is_empty());
        assert_eq!(rules.rows_of(&record(1)).count(), 0);
    }
}
