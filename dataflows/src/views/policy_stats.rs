//! The policy statistics view (SPEC §8): one row per (policy rule, direction, bucket) whose
//! difference is the summed counters of the flows that hit the rule.
//!
//! Built by joining the flow rows, keyed by trace, with each trace's distinct rules, so a flow
//! counts once per distinct rule (SPEC §8.2) and expiry of flows retracts their statistics.
//! State: the flow rows consolidated per (trace, reporter, bucket), the trace rules, and the
//! output per (rule, direction, bucket).

use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::model::{direction_of, StatKey, Tick};
use crate::traces::{FlowRows, PolicyStatsTrace, TraceRules};

/// Builds the policy statistics view from the flow rows and the trace rules.
pub fn build(
    rows: FlowRows<'_>,
    trace_rules: TraceRules<'_>,
    probe: &ProbeHandle<Tick>,
) -> PolicyStatsTrace {
    let rules = trace_rules.arrange_by_key_named("policy_stats::rules");
    let arranged = rows
        .map(|(key, bucket, _labels)| (key.trace, (key.reporter, bucket)))
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
