//! Backfill of a new stream (SPEC §7.3, §12.5): the already emitted buckets from its start,
//! read and sent one bucket at a time, oldest first, at the client's pace (the next bucket is
//! read only once the client has taken the previous one), then handed back to the hub's
//! live path. At most a configured number of backfills run at a time; the others wait their
//! turn, so the memory of backfills is bounded by that many buckets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use eddy_dataflows::filter::FlowFilter;
use eddy_dataflows::model::{Bucket, BucketRange};
use eddy_dataflows::queries::list::{ListQuery, ListRow, SortField};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::api::convert::RowConverter;
use crate::catalog::Catalog;
use crate::streams::encoded::Frames;
use crate::streams::limits::StreamCounters;
use crate::streams::outbound::{Departure, Outbox};
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

/// One subscription's backfill: buckets `[from, to)` that pass `filter`.
pub(crate) struct Backfill {
    pub(crate) id: u64,
    pub(crate) from: Bucket,
    pub(crate) to: Bucket,
    pub(crate) window: i64,
    pub(crate) filter: FlowFilter,
}

/// What a backfill task uses of the server.
pub(crate) struct BackfillContext {
    pub(crate) engine: Engine,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) turns: Arc<Semaphore>,
    pub(crate) counters: Arc<StreamCounters>,
    pub(crate) departures: mpsc::Sender<Departure>,
}

/// Waits for a turn among the backfills allowed to run at once, counting a wait.
async fn turn(context: &BackfillContext) -> Option<OwnedSemaphorePermit> {
    match context.turns.clone().try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(TryAcquireError::NoPermits) => {
            context
                .counters
                .backfills_waited
                .fetch_add(1, Ordering::Relaxed);
            context.turns.clone().acquire_owned().await.ok()
        }
        Err(TryAcquireError::Closed) => None,
    }
}

/// Reads and sends each bucket of `backfill` in turn, each as one chunk, the next read only
/// once the client has taken the previous one. Returns early if the client goes away or the
/// engine stops.
async fn send_buckets(backfill: &Backfill, context: &BackfillContext, outbox: &Outbox) {
    let mut bucket = backfill.from;
    let mut frames = Frames::default();
    let mut scratch = Vec::new();
    while bucket < backfill.to {
        if outbox.is_released() {
            return;
        }
        let query = bucket_rows_query(
            bucket,
            bucket + backfill.window,
            backfill.window,
            backfill.filter.clone(),
        );
        let Ok(partials) = context.engine.list(query).await else {
            return;
        };
        let mut rows: Vec<ListRow> = partials
            .into_iter()
            .flat_map(|partial| partial.rows)
            .collect();
        rows.sort_unstable_by_key(|row| row.key.id);
        // Encoded now, not at the client's pace: the catalog may drop the names of rows that
        // leave retention meanwhile.
        let mut converter = RowConverter::new(&context.catalog);
        for row in &rows {
            frames.push(&converter.flow_result(row), &mut scratch);
        }
        drop(rows);
        if !frames.is_empty() {
            if !outbox.push(frames.take()) {
                return;
            }
            outbox.drained().await;
        }
        bucket += backfill.window;
    }
}

/// Sends the backfill of one subscription when its turn comes, then tells the hub, which
/// queues the live rows it held back meanwhile (at most one buffer).
pub(crate) async fn backfill_task(
    backfill: Backfill,
    context: BackfillContext,
    outbox: Arc<Outbox>,
    _running: BackfillGuard,
) {
    if let Some(permit) = turn(&context).await {
        send_buckets(&backfill, &context, &outbox).await;
        drop(permit);
    }
    drop(outbox);
    // The hub holds a sender of this channel, so it is never closed while the hub runs.
    let _ = context
        .departures
        .send(Departure::BackfillDone(backfill.id))
        .await;
}
