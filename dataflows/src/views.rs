//! The registry of incremental views: each is a file under `views/` and one line of
//! [`REGISTERED`], built by the engine from its own input in the order listed here and read
//! through the one generic query ([`registry::ViewQuery`]). Goldmane's views (flows, hints,
//! policy statistics) are entries like the others; Goldmane's queries (`queries/`) reach
//! their readers by type ([`Views::reader`]) to read them with their own layouts.

pub mod bucketed;
pub mod changes;
pub mod derived;
pub mod registry;
pub mod rule_sums;
pub mod scratch;
pub mod sums;

use std::any::Any;

use crate::model::Tick;

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
    policy_changes::POLICY_CHANGES,
    flows::Flows,
    hints::FilterHints,
    policy_stats::PolicyStats,
}

/// The registered view called `name`, with its index in [`REGISTERED`].
pub fn registered(name: &str) -> Option<(usize, &'static dyn registry::ViewDefinition)> {
    REGISTERED
        .iter()
        .copied()
        .enumerate()
        .find(|(_, view)| view.schema().name == name)
}

/// The arrangements of every view on one worker. Only this worker's thread can read them.
pub struct Views {
    /// The arrangements of the [`REGISTERED`] views, in that order.
    pub registered: Vec<Box<dyn registry::ViewReader>>,
}

impl Views {
    /// The reader of the registered view whose reader is an `R`: how a query written for one
    /// view's own layout (Goldmane's List, FilterHints, Statistics, expiry) reaches it. One
    /// type comparison per registered view, once per query.
    pub fn reader<R: registry::ViewReader>(&mut self) -> &mut R {
        self.registered
            .iter_mut()
            .find_map(|reader| {
                let reader: &mut dyn Any = reader.as_mut();
                reader.downcast_mut::<R>()
            })
            .expect("every reader a query asks for by type is registered (views::REGISTERED)")
    }

    /// Gives every view a handle on the flows view ([`registry::ViewReader::read_flows_through`]).
    pub(crate) fn hand_out_flows(&mut self) {
        let flows = self.reader::<flows::FlowsReader>().handle();
        for reader in &mut self.registered {
            reader.read_flows_through(&flows);
        }
    }

    /// Every view's reader, in the registry's order.
    pub fn readers_mut(&mut self) -> impl Iterator<Item = &mut dyn registry::ViewReader> {
        self.registered.iter_mut().map(|reader| reader.as_mut())
    }

    /// Allows every view to forget history before `tick` and merge its batches.
    pub fn compact_to(&mut self, tick: Tick) {
        for view in &mut self.registered {
            view.compact_to(tick);
        }
    }
}
