//! The flows view: one row per (flow key, bucket) whose difference is the bucket's summed
//! `Stats`. Arranged by flow key, so all buckets of a flow live on the worker its id hashes to.

use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::model::Tick;
use crate::traces::{FlowRows, FlowsTrace};

/// Builds the flows view from the input rows.
pub fn build(rows: FlowRows<'_>, probe: &ProbeHandle<Tick>) -> FlowsTrace {
    let arranged = rows
        .map(|(key, bucket, _labels)| (key, bucket))
        .arrange_by_key_named("flows::arrange");
    arranged.stream.probe_with(probe);
    arranged.trace
}
