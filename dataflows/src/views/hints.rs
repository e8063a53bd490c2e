//! The hints view: one row per (field, value, bucket) counting the updates that carried the
//! value, for the fields FilterHints reports (SPEC §6). Policy fields are kept as trace ids;
//! the frontend expands a trace into its tiers, names, kinds and namespaces.
//!
//! Its input is derived from each update by [`rows_of`] and summed per tick before it enters,
//! so the many updates of a tick that share a namespace cost one row, not one each.

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::model::{Bucket, FlowKey, FlowRecord, Tick};
use crate::traces::{HintRows, HintsTrace};

/// A key field whose distinct values FilterHints reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HintField {
    /// `FlowKey.source_name`.
    SourceName,
    /// `FlowKey.dest_name`.
    DestName,
    /// `FlowKey.source_namespace`.
    SourceNamespace,
    /// `FlowKey.dest_namespace`.
    DestNamespace,
    /// `FlowKey.trace`: the policy fields are derived from it.
    Trace,
}

impl HintField {
    /// Every field, in the order rows are produced.
    pub const ALL: [HintField; 5] = [
        HintField::SourceName,
        HintField::DestName,
        HintField::SourceNamespace,
        HintField::DestNamespace,
        HintField::Trace,
    ];

    /// The value of this field in `key`.
    pub fn value_of(self, key: &FlowKey) -> u32 {
        match self {
            HintField::SourceName => key.source_name,
            HintField::DestName => key.dest_name,
            HintField::SourceNamespace => key.source_namespace,
            HintField::DestNamespace => key.dest_namespace,
            HintField::Trace => key.trace,
        }
    }
}

/// One row of the hints view.
pub type HintRow = (HintField, u32, Bucket);

/// The hint rows one update contributes: one per field, counted by its record count.
pub fn rows_of(record: &FlowRecord) -> [(HintRow, isize); 5] {
    HintField::ALL.map(|field| {
        (
            (field, field.value_of(&record.key), record.bucket),
            record.stats.records as isize,
        )
    })
}

/// Builds the hints view from the hint rows (derived from each update by [`rows_of`]).
pub fn build(hint_rows: HintRows<'_>, probe: &ProbeHandle<Tick>) -> HintsTrace {
    let arranged = hint_rows.arrange_by_self_named("hints::arrange");
    arranged.stream.probe_with(probe);
    arranged.trace
}
