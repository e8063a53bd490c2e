//! Expiry (SPEC §2.3): the records that retract everything this worker holds for buckets
//! older than the retention floor, and the flows left with no retained bucket, read from the
//! flows view. Inserting the records empties those buckets in every view; a flow left with no
//! row leaves the flow table, its key with it.

use crate::flow_table::FlowTable;
use crate::inputs::EngineInputs;
use crate::model::{Bucket, FlowRecord};
use crate::views::flows::FlowsReader;
use crate::views::Views;

/// Retracts everything this worker holds below `floor` through `inputs`: the flow table
/// drops the rows, and the flows nothing retained is left of, as the retractions reach it.
pub fn expire(views: &mut Views, inputs: &mut EngineInputs, floor: Bucket) {
    let retractions = expired(&views.reader::<FlowsReader>().table(), floor);
    inputs.retract(&retractions);
}

/// The exact negation of every (flow, bucket, label pair) with `bucket < floor` in this
/// worker's flow table.
fn expired(table: &FlowTable, floor: Bucket) -> Vec<FlowRecord> {
    let mut retractions = Vec::new();
    table.visit(None, |key, rows| {
        // Rows are in bucket order.
        for row in rows.iter().take_while(|row| row.bucket < floor) {
            retractions.push(FlowRecord {
                key: *key,
                bucket: row.bucket,
                labels: row.labels,
                stats: row.stats.negated(),
            });
        }
    });
    retractions
}
