//! The expiry read (SPEC §2.3): the records that retract everything this worker holds for
//! buckets older than the retention floor. Inserting them empties those buckets in every view.

use differential_dataflow::difference::IsZero;
use differential_dataflow::trace::cursor::Cursor;

use crate::model::{Bucket, FlowRecord, Stats};
use crate::queries::cursor_over_all;
use crate::traces::FlowsTrace;

/// The retraction of every (flow, bucket, label pair) with `bucket < floor` in this worker's
/// shard: the exact negation of its accumulated counters.
pub fn expired(flows: &mut FlowsTrace, floor: Bucket) -> Vec<FlowRecord> {
    let (mut cursor, storage) = cursor_over_all(flows);
    let mut retractions = Vec::new();
    while let Some(key) = cursor.get_key(&storage) {
        while let Some((bucket, labels)) = cursor.get_val(&storage) {
            if *bucket >= floor {
                break;
            }
            let mut stats = Stats::default();
            cursor.map_times(&storage, |_, diff| stats.add(diff));
            if !stats.is_zero() {
                retractions.push(FlowRecord {
                    key: *key,
                    bucket: *bucket,
                    labels: *labels,
                    stats: stats.negated(),
                });
            }
            cursor.step_val(&storage);
        }
        cursor.step_key(&storage);
    }
    retractions
}
