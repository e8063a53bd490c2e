//! The expiry read (SPEC §2.3): the rows that retract everything this worker holds for
//! buckets older than the retention floor. Inserting them empties those buckets in every view.

use differential_dataflow::trace::cursor::Cursor;

use crate::model::{Bucket, FlowRow, Stats};
use crate::queries::cursor_over_all;
use crate::traces::{FlowsTrace, LabelsTrace};

/// The retraction of every (flow, bucket) with `bucket < floor` in this worker's shard.
///
/// For each such (flow, bucket) with counters `S` and label pairs `p_i` counted `c_i` times,
/// the rows are `(flow, bucket, p_i)` weighted `-c_i` records, and the first also carries
/// `-S`'s counters: the flows view then sums to zero, and so does every label and hint count.
pub fn expired(
    flows: &mut FlowsTrace,
    labels: &mut LabelsTrace,
    floor: Bucket,
) -> Vec<(FlowRow, Stats)> {
    let (mut flow_cursor, flow_storage) = cursor_over_all(flows);
    let (mut label_cursor, label_storage) = cursor_over_all(labels);
    let mut retractions = Vec::new();
    let mut expiring: Vec<(Bucket, Stats)> = Vec::new();
    while let Some(key) = flow_cursor.get_key(&flow_storage) {
        expiring.clear();
        while let Some(bucket) = flow_cursor.get_val(&flow_storage) {
            if *bucket >= floor {
                break;
            }
            let mut stats = Stats::default();
            flow_cursor.map_times(&flow_storage, |_, diff| stats.add(diff));
            if stats != Stats::default() {
                expiring.push((*bucket, stats.negated()));
            }
            flow_cursor.step_val(&flow_storage);
        }
        if !expiring.is_empty() {
            label_cursor.seek_key(&label_storage, &key.id);
            if label_cursor.get_key(&label_storage) == Some(&key.id) {
                while let Some((bucket, pair)) = label_cursor.get_val(&label_storage) {
                    if *bucket >= floor {
                        break;
                    }
                    let mut count = 0isize;
                    label_cursor.map_times(&label_storage, |_, diff| count += diff);
                    if count != 0 {
                        // The counters ride on the first label row of the bucket; the
                        // others carry only their record counts.
                        let counters = expiring
                            .binary_search_by_key(bucket, |(expiring_bucket, _)| *expiring_bucket)
                            .map(|at| std::mem::take(&mut expiring[at].1))
                            .unwrap_or_default();
                        let mut diff = counters;
                        diff.records = -(count as i64);
                        retractions.push(((*key, *bucket, *pair), diff));
                    }
                    label_cursor.step_val(&label_storage);
                }
            }
        }
        flow_cursor.step_key(&flow_storage);
    }
    retractions
}
