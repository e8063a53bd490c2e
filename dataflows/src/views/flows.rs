//! The flows view: one fixed-size row per (flow id, bucket, label pair) whose difference is the
//! summed `Stats` of the updates that carried that label pair in that bucket. The flow's key
//! fields are not in the row: the owning worker's key store holds them once per flow.
//!
//! Arranged by flow id and exchanged by [`owner_of`], so every bucket of a flow lives on the
//! worker that owns it, the one its records were inserted on: the exchange moves nothing.
//!
//! The label pairs present with a non-zero record count give a range's label intersection
//! (SPEC §3.4), exact under retraction and independent of arrival order. A flow whose nodes
//! report the same labels has one row per bucket.
//!
//! [`owner_of`]: crate::keys::owner_of

use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::trace::implementations::ValBatcher;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::model::{Bucket, FlowId, LabelPair, Stats, Tick};
use crate::traces::{FlowRows, FlowsSpine, FlowsTrace};

/// Builds the flows view from the input rows.
pub fn build(rows: FlowRows<'_>, probe: &ProbeHandle<Tick>) -> FlowsTrace {
    // Timely sends a datum to worker `hash % peers`: the flow id itself gives `owner_of`.
    let by_owner =
        Exchange::new(|update: &((FlowId, (Bucket, LabelPair)), Tick, Stats)| (update.0).0);
    let arranged = arrange_core::<_, _, ValBatcher<_, _, _, _>, FlowsSpine>(
        rows.inner,
        by_owner,
        "flows::arrange",
        ValBatcher::new,
    );
    arranged.stream.probe_with(probe);
    arranged.trace
}
