//! The labels view: one row per (flow id, bucket, label pair) counting the updates that
//! carried that pair. A range's label intersection (SPEC §3.4) is the intersection of the
//! pairs present with a non-zero count, which stays exact under retraction.

use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::model::Tick;
use crate::traces::{FlowRows, LabelsTrace};

/// Builds the labels view from the input rows.
pub fn build(rows: FlowRows<'_>, probe: &ProbeHandle<Tick>) -> LabelsTrace {
    let arranged = rows
        .explode(|(key, bucket, labels)| Some(((key.id, (bucket, labels)), 1isize)))
        .arrange_by_key_named("labels::arrange");
    arranged.stream.probe_with(probe);
    arranged.trace
}
