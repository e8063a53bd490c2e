//! The registry of incremental views: each is built by a pure function from the engine's
//! input collections, in the order listed here. The views Goldmane's services read are
//! fields below; every other view is a file under `views/` and one line of [`REGISTERED`],
//! read through the one generic query ([`registry::ViewQuery`]).

pub mod bucketed;
pub mod changes;
pub mod flows;
pub mod hints;
pub mod policy_stats;
pub mod registry;

use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::progress::frontier::AntichainRef;

use differential_dataflow::trace::TraceReader;

use crate::keys::FlowKeys;
use crate::model::Tick;
use crate::traces::{FlowRows, FlowsTrace, HintRows, HintsTrace, PolicyStatsTrace, StatRows};

/// Declares each registered view's module (its one file under `views/`) and lists the
/// views in [`REGISTERED`], in the order given.
macro_rules! registered_views {
    ($($module:ident::$view:ident,)*) => {
        $(pub mod $module;)*

        /// Every view read through the generic query, in the order the API lists them. A
        /// view's index here is its number in a read command.
        pub static REGISTERED: &[&dyn registry::ViewDefinition] = &[$(&$module::$view),*];
    };
}

// One line per registered view: `file::View,`.
registered_views! {
    top_talkers::TopTalkers,
    dns::DnsFlows,
    policy_changes::PolicyChanges,
}

/// The registered view called `name`, with its index in [`REGISTERED`].
pub fn registered(name: &str) -> Option<(usize, &'static dyn registry::ViewDefinition)> {
    REGISTERED
        .iter()
        .copied()
        .enumerate()
        .find(|(_, view)| view.schema().name == name)
}

/// The traces of every view on one worker. Only this worker's thread can read them.
pub struct Views {
    /// Per (flow id, bucket, label pair) counters: List, Stream, label intersection, expiry.
    pub flows: FlowsTrace,
    /// The key of every flow this worker owns, by id: what the flows view's ids stand for.
    pub keys: FlowKeys,
    /// Per (field, value, bucket) presence: unfiltered FilterHints.
    pub hints: HintsTrace,
    /// Per (policy rule, direction, bucket) counters: Statistics.
    pub policy_stats: PolicyStatsTrace,
    /// The arrangements of the [`REGISTERED`] views, in that order.
    pub registered: Vec<Box<dyn registry::ViewReader>>,
}

/// The engine's input collections, from which every view is built. `inputs::EngineInputs`
/// keeps them consistent: every update enters all of them.
pub struct Inputs<'scope> {
    /// One row per flow update, weighted by its counters.
    pub rows: FlowRows<'scope>,
    /// Each update's hint rows ([`hints::rows_of`]).
    pub hint_rows: HintRows<'scope>,
    /// Each update's counters per distinct rule of its trace
    /// ([`policy_stats::TraceRules::rows_of`]).
    pub stat_rows: StatRows<'scope>,
}

impl Views {
    /// Builds every view from the inputs, attaching each to `probe`.
    pub fn build(inputs: Inputs<'_>, probe: &ProbeHandle<Tick>) -> Views {
        let Inputs {
            rows,
            hint_rows,
            stat_rows,
        } = inputs;
        Views {
            flows: flows::build(rows, probe),
            keys: FlowKeys::default(),
            hints: hints::build(hint_rows, probe),
            policy_stats: policy_stats::build(stat_rows, probe),
            registered: Vec::new(),
        }
    }

    /// Allows every view to forget history before `tick` and merge its batches.
    pub fn compact_to(&mut self, tick: Tick) {
        let frontier = [tick];
        let frontier = AntichainRef::new(&frontier);
        self.flows.set_logical_compaction(frontier);
        self.flows.set_physical_compaction(frontier);
        self.hints.set_logical_compaction(frontier);
        self.hints.set_physical_compaction(frontier);
        self.policy_stats.set_logical_compaction(frontier);
        self.policy_stats.set_physical_compaction(frontier);
        for view in &mut self.registered {
            view.compact_to(tick);
        }
    }
}
