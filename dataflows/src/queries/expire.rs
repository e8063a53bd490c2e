//! Expiry (SPEC §2.3): the records that retract everything this worker holds for buckets
//! older than the retention floor, and the flows left with no retained bucket, read from the
//! flows view. Inserting the records empties those buckets in every view; the flows' keys
//! then leave the key store.

use crate::inputs::EngineInputs;
use crate::keys::FlowKeys;
use crate::model::{Bucket, FlowId, FlowRecord, Tick};
use crate::queries::{visit_flows, EVERY_TICK};
use crate::traces::FlowsTrace;
use crate::views::flows::FlowsReader;
use crate::views::Views;

/// What expiry removes from one worker.
#[derive(Clone, Debug, Default)]
struct Expired {
    /// The exact negation of every live (flow, bucket, label pair) with `bucket < floor`.
    pub retractions: Vec<FlowRecord>,
    /// The flows with no live row at or above the floor.
    pub gone: Vec<FlowId>,
}

/// Retracts everything this worker holds below `floor` through `inputs`, and forgets the
/// keys of the flows nothing retained is left of unless a record was inserted for them at
/// `reflected` or later (a tick the views may not show yet).
pub fn expire(views: &mut Views, inputs: &mut EngineInputs, floor: Bucket, reflected: Tick) {
    let flows = views.reader::<FlowsReader>();
    let expired = {
        let (trace, keys) = flows.trace_and_keys();
        expired(trace, &keys, floor)
    };
    inputs.retract(&expired.retractions);
    for id in expired.gone {
        flows.forget_unless_inserted_since(id, reflected);
    }
}

/// The retraction of every (flow, bucket, label pair) with `bucket < floor` in this worker's
/// shard, each with its flow's key from `keys`, and the flows nothing retained is left of.
fn expired(flows: &mut FlowsTrace, keys: &FlowKeys, floor: Bucket) -> Expired {
    let mut expired = Expired::default();
    visit_flows(flows, None, EVERY_TICK, |id, flow| {
        let mut retained = false;
        for row in flow.rows() {
            if row.bucket >= floor {
                retained = true;
                break;
            }
            let key = keys
                .get(id)
                .expect("every flow with a live row has its key stored (FlowKeys invariant)");
            expired.retractions.push(FlowRecord {
                key: *key,
                bucket: row.bucket,
                labels: row.labels,
                stats: flow.stats(row).negated(),
            });
        }
        if !retained {
            expired.gone.push(id);
        }
    });
    expired
}
