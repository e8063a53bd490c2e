//! The long differential-dataflow type names of Eddy's arrangements, spelled in one place.

use differential_dataflow::input::InputSession;
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::implementations::{KeySpine, ValSpine};
use differential_dataflow::VecCollection;

use crate::model::{Bucket, FlowId, FlowRow, LabelPair, PolicyRule, StatKey, Stats, Tick, TraceId};
use crate::views::hints::HintRow;
use crate::views::policy_stats::TraceFlow;

/// The engine's input: one row per update, `(flow id, (bucket, labels))`, weighted by its
/// counters.
pub type FlowRows<'scope> = VecCollection<'scope, Tick, FlowRow, Stats>;

/// The engine's second input: the distinct policy rules of each canonical trace, added once
/// when the trace is first seen.
pub type TraceRules<'scope> = VecCollection<'scope, Tick, (TraceId, PolicyRule), isize>;

/// The flows view: flow id -> (bucket, label pair), with the summed counters of the updates
/// that carried that label pair in that bucket.
pub type FlowsSpine = ValSpine<FlowId, (Bucket, LabelPair), Tick, Stats>;

/// The shared handle of the flows view.
pub type FlowsTrace = TraceAgent<FlowsSpine>;

/// The engine's hint rows, consolidated per batch before they enter.
pub type HintRows<'scope> = VecCollection<'scope, Tick, HintRow, isize>;

/// The engine's flow counters by trace, consolidated per batch before they enter.
pub type TraceFlows<'scope> = VecCollection<'scope, Tick, TraceFlow, Stats>;

/// The hints view: (field, value, bucket), with the number of updates carrying it.
pub type HintsTrace = TraceAgent<KeySpine<HintRow, Tick, isize>>;

/// The policy statistics view: (rule, direction) -> bucket, with the summed counters of the
/// flows that hit the rule.
pub type PolicyStatsTrace = TraceAgent<ValSpine<StatKey, Bucket, Tick, Stats>>;

/// The handle a worker inserts flow rows through.
pub type FlowRowsInput = InputSession<Tick, FlowRow, Stats>;

/// The handle a worker inserts hint rows through.
pub type HintRowsInput = InputSession<Tick, HintRow, isize>;

/// The handle a worker inserts flow counters by trace through.
pub type TraceFlowsInput = InputSession<Tick, TraceFlow, Stats>;

/// The handle a worker inserts trace rules through.
pub type TraceRulesInput = InputSession<Tick, (TraceId, PolicyRule), isize>;
