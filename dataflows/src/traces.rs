//! The long differential-dataflow type names of Eddy's arrangements, spelled in one place.

use differential_dataflow::input::InputSession;
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::implementations::{KeySpine, ValSpine};
use differential_dataflow::VecCollection;

use crate::model::{
    Bucket, FlowKey, FlowRow, LabelPair, PolicyRule, StatKey, Stats, Tick, TraceId,
};
use crate::views::hints::HintRow;

/// The engine's input: one row per update, `(key, bucket, labels)`, weighted by its counters.
pub type FlowRows<'scope> = VecCollection<'scope, Tick, FlowRow, Stats>;

/// The engine's second input: the distinct policy rules of each canonical trace, added once
/// when the trace is first seen.
pub type TraceRules<'scope> = VecCollection<'scope, Tick, (TraceId, PolicyRule), isize>;

/// The flows view: flow key -> bucket, with the bucket's summed counters.
pub type FlowsTrace = TraceAgent<ValSpine<FlowKey, Bucket, Tick, Stats>>;

/// The labels view: flow id -> (bucket, label pair), with the number of updates carrying it.
pub type LabelsTrace = TraceAgent<ValSpine<u64, (Bucket, LabelPair), Tick, isize>>;

/// The hints view: (field, value, bucket), with the number of updates carrying it.
pub type HintsTrace = TraceAgent<KeySpine<HintRow, Tick, isize>>;

/// The policy statistics view: (rule, direction) -> bucket, with the summed counters of the
/// flows that hit the rule.
pub type PolicyStatsTrace = TraceAgent<ValSpine<StatKey, Bucket, Tick, Stats>>;

/// The handle a worker inserts flow rows through.
pub type FlowRowsInput = InputSession<Tick, FlowRow, Stats>;

/// The handle a worker inserts trace rules through.
pub type TraceRulesInput = InputSession<Tick, (TraceId, PolicyRule), isize>;
