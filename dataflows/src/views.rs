//! The registry of incremental views: each is built by a pure function from the engine's
//! input collection, in the order listed here. Adding a view is one file under `views/`,
//! one field and one line below.

pub mod flows;
pub mod hints;
pub mod labels;
pub mod policy_stats;

use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::progress::frontier::AntichainRef;

use differential_dataflow::trace::TraceReader;

use crate::model::Tick;
use crate::traces::{FlowRows, FlowsTrace, HintsTrace, LabelsTrace, PolicyStatsTrace, TraceRules};

/// The traces of every view on one worker. Only this worker's thread can read them.
pub struct Views {
    /// Per (flow key, bucket) counters: List, expiry.
    pub flows: FlowsTrace,
    /// Per (flow, bucket) label sets: label intersection (SPEC §3.4).
    pub labels: LabelsTrace,
    /// Per (field, value, bucket) presence: unfiltered FilterHints.
    pub hints: HintsTrace,
    /// Per (policy rule, direction, bucket) counters: Statistics.
    pub policy_stats: PolicyStatsTrace,
}

/// The engine's input collections, from which every view is built.
pub struct Inputs<'scope> {
    /// One row per flow update, weighted by its counters.
    pub rows: FlowRows<'scope>,
    /// The distinct policy rules of every canonical trace.
    pub trace_rules: TraceRules<'scope>,
}

impl Views {
    /// Builds every view from the inputs, attaching each to `probe`.
    pub fn build(inputs: Inputs<'_>, probe: &ProbeHandle<Tick>) -> Views {
        let Inputs { rows, trace_rules } = inputs;
        Views {
            flows: flows::build(rows.clone(), probe),
            labels: labels::build(rows.clone(), probe),
            hints: hints::build(rows.clone(), probe),
            policy_stats: policy_stats::build(rows, trace_rules, probe),
        }
    }

    /// Allows every view to forget history before `tick` and merge its batches.
    pub fn compact_to(&mut self, tick: Tick) {
        let frontier = [tick];
        let frontier = AntichainRef::new(&frontier);
        self.flows.set_logical_compaction(frontier);
        self.flows.set_physical_compaction(frontier);
        self.labels.set_logical_compaction(frontier);
        self.labels.set_physical_compaction(frontier);
        self.hints.set_logical_compaction(frontier);
        self.hints.set_physical_compaction(frontier);
        self.policy_stats.set_logical_compaction(frontier);
        self.policy_stats.set_physical_compaction(frontier);
    }
}
