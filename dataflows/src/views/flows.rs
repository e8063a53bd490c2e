//! The flows view: one row per (flow key, bucket, label pair) whose difference is the summed
//! `Stats` of the updates that carried that label pair in that bucket. Arranged by flow key,
//! so every bucket of a flow lives on the worker its id hashes to.
//!
//! The label pairs present with a non-zero record count give a range's label intersection
//! (SPEC §3.4), exact under retraction and independent of arrival order. A flow whose nodes
//! report the same labels has one row per bucket.

use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::model::Tick;
use crate::traces::{FlowRows, FlowsTrace};

/// Builds the flows view from the input rows.
pub fn build(rows: FlowRows<'_>, probe: &ProbeHandle<Tick>) -> FlowsTrace {
    let arranged = rows
        .map(|(key, bucket, labels)| (key, (bucket, labels)))
        .arrange_by_key_named("flows::arrange");
    arranged.stream.probe_with(probe);
    arranged.trace
}
