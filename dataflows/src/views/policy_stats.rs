//! The policy statistics view (SPEC §8): one row per (policy rule, direction, bucket) whose
//! difference is the summed counters of the flows that hit the rule.
//!
//! Built by joining the flows' counters per (trace, reporter, bucket) with each trace's
//! distinct rules, so a flow counts once per distinct rule (SPEC §8.2) and expiry of flows
//! retracts their statistics. The counters per trace are derived from each update by
//! [`trace_flow_of`] and consolidated per ingest batch before they enter.
//! State: counters per (trace, reporter, bucket), the trace rules, and the output per
//! (rule, direction, bucket).

use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::model::{direction_of, Bucket, FlowRecord, StatKey, Stats, Tick, TraceId};
use crate::traces::{PolicyStatsTrace, TraceFlows, TraceRules};

/// A flow's counters keyed by its trace: `(trace, (reporter, bucket))`.
pub type TraceFlow = (TraceId, (i32, Bucket));

/// The row through which one update reaches the policy statistics.
pub fn trace_flow_of(record: &FlowRecord) -> (TraceFlow, Stats) {
    (
        (record.key.trace, (record.key.reporter, record.bucket)),
        record.stats,
    )
}

/// Builds the policy statistics view from the counters by trace and the trace rules.
pub fn build(
    trace_flows: TraceFlows<'_>,
    trace_rules: TraceRules<'_>,
    probe: &ProbeHandle<Tick>,
) -> PolicyStatsTrace {
    let rules = trace_rules.arrange_by_key_named("policy_stats::rules");
    let arranged = trace_flows
        .join_core(rules, |_trace, (reporter, bucket), rule| {
            Some((
                StatKey {
                    rule: *rule,
                    direction: direction_of(*reporter),
                },
                *bucket,
            ))
        })
        .arrange_by_key_named("policy_stats::arrange");
    arranged.stream.probe_with(probe);
    arranged.trace
}
