//! Backfill of a new stream (SPEC §7.3): the already emitted buckets from its start, listed
//! once, sent oldest first at the client's pace, then handed back to the hub's live path.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use eddy_dataflows::filter::FlowFilter;
use eddy_dataflows::model::{Bucket, BucketRange};
use eddy_dataflows::queries::list::{ListQuery, ListRow, SortField};
use tokio::sync::mpsc;

use crate::api::convert::RowConverter;
use crate::catalog::Catalog;
use crate::streams::encoded::EncodedResult;
use crate::streams::hub::HubMessage;
use crate::worker::Engine;

/// A List query for every key's rows in buckets `[from, to)`, one row per bucket.
pub(crate) fn bucket_rows_query(
    from: Bucket,
    to: Bucket,
    window: i64,
    filter: FlowFilter,
) -> ListQuery {
    ListQuery {
        range: BucketRange { gte: from, lt: to },
        window,
        interval: window,
        filter,
        sort: vec![SortField::Time],
        limit: None,
        name_ranks: Arc::new(Vec::new()),
    }
}

/// Counts a running backfill task until it ends.
pub(crate) struct BackfillGuard(pub(crate) Arc<AtomicUsize>);

impl Drop for BackfillGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sends the backfill of one subscription, oldest bucket first, at the client's pace; then
/// waits until the client has taken all of it, so that the live rows held back meanwhile
/// (at most one buffer) fit in the subscriber's channel when the hub hands them over.
pub(crate) async fn backfill_task(
    id: u64,
    query: ListQuery,
    engine: Engine,
    catalog: Arc<Catalog>,
    results: mpsc::Sender<EncodedResult>,
    control: mpsc::UnboundedSender<HubMessage>,
    _running: BackfillGuard,
) {
    if let Ok(partials) = engine.list(query).await {
        let mut rows: Vec<ListRow> = partials
            .into_iter()
            .flat_map(|partial| partial.rows)
            .collect();
        rows.sort_unstable_by_key(|row| (row.start, row.key.id));
        // Encoded now, not at the client's pace: the catalog may drop the names of rows that
        // leave retention meanwhile.
        let mut converter = RowConverter::new(&catalog);
        let encoded: Vec<EncodedResult> = rows
            .iter()
            .map(|row| EncodedResult::of_row_with(row, &mut converter))
            .collect();
        drop(rows);
        for result in encoded {
            if results.send(result).await.is_err() {
                break;
            }
        }
    }
    // Holding every permit means the channel is empty; dropping them frees the room again.
    // Only the hub sends besides this task, and it holds this subscriber's rows back until
    // it hears `BackfillDone`, so the room is still free when it delivers the backlog.
    let drained = results.reserve_many(results.max_capacity()).await;
    drop(drained);
    drop(results);
    let _ = control.send(HubMessage::BackfillDone(id));
}
