//! The response stream of one `Flows.Stream` call: the subscription's bounded buffer, an
//! early end with a status (slow consumer, shutdown), and a guard that releases the
//! subscription when the client goes away.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::streams::encoded::EncodedResult;
use crate::streams::hub::HubMessage;

/// Releases a subscription: frees its slot in the stream limit and tells the hub.
pub struct SubscriptionGuard {
    pub(crate) id: u64,
    pub(crate) active: Arc<AtomicUsize>,
    pub(crate) control: mpsc::UnboundedSender<HubMessage>,
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        let _ = self.control.send(HubMessage::Unsubscribe(self.id));
    }
}

/// What a `Flows.Stream` call returns to tonic.
pub struct Outbound {
    pub(crate) results: mpsc::Receiver<EncodedResult>,
    pub(crate) end: Option<oneshot::Receiver<Status>>,
    pub(crate) ended: bool,
    pub(crate) _guard: SubscriptionGuard,
}

impl Stream for Outbound {
    type Item = Result<EncodedResult, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(end) = self.end.as_mut() {
            match Pin::new(end).poll(cx) {
                Poll::Ready(Ok(status)) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Err(_)) => self.end = None,
                Poll::Pending => {}
            }
        }
        self.results.poll_recv(cx).map(|result| result.map(Ok))
    }
}
