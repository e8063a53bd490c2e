//! The long differential-dataflow type names of Eddy's arrangements, spelled in one place.

use differential_dataflow::input::InputSession;
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::implementations::{KeySpine, ValSpine};
use differential_dataflow::VecCollection;

use crate::model::{Bucket, FlowId, FlowRow, LabelPair, StatKey, Stats, Tick};
use crate::views::hints::HintRow;
use crate::views::policy_stats::StatRow;

/// The engine's input: one row per update, `(flow id, (bucket, labels))`, weighted by its
/// counters.
pub type FlowRows<'scope> = VecCollection<'scope, Tick, FlowRow, Stats>;

/// The flows view: flow id -> (bucket, label pair), with the summed counters of the updates
/// that carried that label pair in that bucket.
pub type FlowsSpine = ValSpine<FlowId, (Bucket, LabelPair), Tick, Stats>;

/// The shared handle of the flows view.
pub type FlowsTrace = TraceAgent<FlowsSpine>;

/// The engine's hint rows, consolidated per tick before they enter.
pub type HintRows<'scope> = VecCollection<'scope, Tick, HintRow, isize>;

/// The engine's flow counters by (rule, direction, bucket), consolidated per tick before they
/// enter.
pub type StatRows<'scope> = VecCollection<'scope, Tick, StatRow, Stats>;

/// The hints view: (field, value, bucket), with the number of updates carrying it.
pub type HintsTrace = TraceAgent<KeySpine<HintRow, Tick, isize>>;

/// The policy statistics view: (rule, direction) -> bucket, with the summed counters of the
/// flows that hit the rule.
pub type PolicyStatsTrace = TraceAgent<ValSpine<StatKey, Bucket, Tick, Stats>>;

/// The handle a worker inserts flow rows through.
pub type FlowRowsInput = InputSession<Tick, FlowRow, Stats>;

/// The handle a worker inserts hint rows through.
pub type HintRowsInput = InputSession<Tick, HintRow, isize>;

/// The handle a worker inserts flow counters by (rule, direction, bucket) through.
pub type StatRowsInput = InputSession<Tick, StatRow, Stats>;
