//! The long differential-dataflow type names of Goldmane's arrangements (the hints and policy
//! statistics views), spelled in one place.

use differential_dataflow::input::InputSession;
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::implementations::{KeySpine, ValSpine};

use crate::model::{Bucket, StatKey, Stats, Tick};
use crate::views::hints::HintRow;
use crate::views::policy_stats::StatRow;

/// The hints view's storage: (field, value, bucket), with the number of updates carrying it.
pub type HintsSpine = KeySpine<HintRow, Tick, isize>;

/// The hints view.
pub type HintsTrace = TraceAgent<HintsSpine>;

/// The policy statistics view's storage: (rule, direction) -> bucket, with the summed
/// counters of the flows that hit the rule.
pub type PolicyStatsSpine = ValSpine<StatKey, Bucket, Tick, Stats>;

/// The policy statistics view.
pub type PolicyStatsTrace = TraceAgent<PolicyStatsSpine>;

/// The handle a worker inserts hint rows through, consolidated per tick.
pub type HintRowsInput = InputSession<Tick, HintRow, isize>;

/// The handle a worker inserts flow counters by (rule, direction, bucket) through,
/// consolidated per tick.
pub type StatRowsInput = InputSession<Tick, StatRow, Stats>;
