//! The expiry read (SPEC §2.3): the records that retract everything this worker holds for
//! buckets older than the retention floor, and the flows left with no retained bucket.
//! Inserting the records empties those buckets in every view; the flows' keys can then leave
//! the key store.

use differential_dataflow::difference::IsZero;
use differential_dataflow::trace::cursor::Cursor;

use crate::keys::FlowKeys;
use crate::model::{Bucket, FlowId, FlowRecord, Stats};
use crate::queries::visit_flows;
use crate::traces::FlowsTrace;

/// What expiry removes from one worker.
#[derive(Clone, Debug, Default)]
pub struct Expired {
    /// The exact negation of every live (flow, bucket, label pair) with `bucket < floor`.
    pub retractions: Vec<FlowRecord>,
    /// The flows with no live row at or above the floor.
    pub gone: Vec<FlowId>,
}

/// The retraction of every (flow, bucket, label pair) with `bucket < floor` in this worker's
/// shard, each with its flow's key from `keys`, and the flows nothing retained is left of.
pub fn expired(flows: &mut FlowsTrace, keys: &FlowKeys, floor: Bucket) -> Expired {
    let mut expired = Expired::default();
    visit_flows(flows, None, |id, cursor, storage| {
        let mut retained = false;
        while let Some((bucket, labels)) = cursor.get_val(storage) {
            let mut stats = Stats::default();
            cursor.map_times(storage, |_, diff| stats.add(diff));
            if !stats.is_zero() {
                if *bucket >= floor {
                    retained = true;
                    break;
                }
                let key = keys
                    .get(id)
                    .expect("every flow with a live row has its key stored (FlowKeys invariant)");
                expired.retractions.push(FlowRecord {
                    key: *key,
                    bucket: *bucket,
                    labels: *labels,
                    stats: stats.negated(),
                });
            }
            cursor.step_val(storage);
        }
        if !retained {
            expired.gone.push(id);
        }
    });
    expired
}
