//! Connect calls that send updates with a bounded number awaiting a receipt, and wait for
//! every receipt.

use std::sync::Arc;

use eddy::proto::flow_collector_client::FlowCollectorClient;
use eddy::proto::{FlowReceipt, FlowUpdate};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

/// The sending half of a Connect call: each update takes room in the call's window.
pub struct UpdateSender {
    window: Arc<Semaphore>,
    updates: mpsc::Sender<FlowUpdate>,
}

impl UpdateSender {
    /// Waits for room in the window, then sends `update`; false once the call has ended.
    pub async fn send(&self, update: FlowUpdate) -> bool {
        self.window
            .acquire()
            .await
            .expect("the window is never closed")
            .forget();
        self.updates.send(update).await.is_ok()
    }
}

/// The receiving half of a Connect call: each receipt gives its update's room back.
pub struct ReceiptReader {
    window: Arc<Semaphore>,
    receipts: Streaming<FlowReceipt>,
}

impl ReceiptReader {
    /// The next receipt, or `None` once the sender has closed the call and every receipt
    /// has arrived.
    pub async fn next(&mut self) -> Option<FlowReceipt> {
        let receipt = self
            .receipts
            .message()
            .await
            .expect("the Connect call stays healthy")?;
        self.window.add_permits(1);
        Some(receipt)
    }
}

/// Opens a Connect call on `channel` whose window lets `outstanding` updates await a receipt.
pub async fn open(channel: Channel, outstanding: usize) -> (UpdateSender, ReceiptReader) {
    let window = Arc::new(Semaphore::new(outstanding));
    let (updates, queued) = mpsc::channel(outstanding);
    let receipts = FlowCollectorClient::new(channel)
        .connect(ReceiverStream::new(queued))
        .await
        .expect("Connect is accepted")
        .into_inner();
    (
        UpdateSender {
            window: window.clone(),
            updates,
        },
        ReceiptReader { window, receipts },
    )
}

/// Sends `updates` on one Connect call over `channel`, at most `outstanding` without a
/// receipt, and returns once every update has its receipt.
pub async fn send_receipted<I>(channel: Channel, outstanding: usize, updates: I)
where
    I: ExactSizeIterator<Item = FlowUpdate> + Send + 'static,
{
    let (sink, mut reader) = open(channel, outstanding).await;
    let count = updates.len();
    let sender = tokio::spawn(async move {
        for update in updates {
            if !sink.send(update).await {
                return;
            }
        }
    });
    for _ in 0..count {
        reader.next().await.expect("one receipt per update");
    }
    sender.await.expect("the sender finishes");
}

/// Sends the updates `make` builds for indices `0..total`, spread over one Connect call per
/// channel (index `i` on channel `i % channels.len()`), at most `outstanding` without a
/// receipt per call, and returns once every update has its receipt.
pub async fn send_spread<F>(channels: &[Channel], total: u64, outstanding: usize, make: F)
where
    F: Fn(u64) -> FlowUpdate + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let streams = channels.len() as u64;
    let mut tasks = Vec::new();
    for (stream, channel) in channels.iter().enumerate() {
        let make = make.clone();
        let first = stream as u64;
        let count = total.saturating_sub(first).div_ceil(streams) as usize;
        let updates = (0..count).map(move |i| make(first + i as u64 * streams));
        tasks.push(tokio::spawn(send_receipted(
            channel.clone(),
            outstanding,
            updates,
        )));
    }
    for task in tasks {
        task.await.expect("every Connect call finishes");
    }
}
