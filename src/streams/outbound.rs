//! The response stream of one `Flows.Stream` call, and the [`StreamLink`] it shares with the
//! hub: the stream's slot and the receiving end of its bounded buffer. Whichever side ends
//! the stream first releases both at once: the hub when the server ends it (slow consumer,
//! shutdown; the status is handed over first), the call when its client goes away. So a
//! client that never reads keeps neither a slot nor buffered results after being ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::streams::encoded::EncodedResult;
use crate::streams::slots::Slot;

/// What the hub hears from outside besides new subscriptions.
#[derive(Debug)]
pub enum Departure {
    /// The client of a subscription went away.
    Left(u64),
    /// A subscription's backfill has been sent.
    BackfillDone(u64),
}

/// What one stream's call and the hub share.
#[derive(Debug)]
pub struct StreamLink {
    slot: Slot,
    results: Mutex<mpsc::Receiver<EncodedResult>>,
}

impl StreamLink {
    /// A link holding `slot`, whose buffer is read from `results`.
    pub fn new(slot: Slot, results: mpsc::Receiver<EncodedResult>) -> Self {
        StreamLink {
            slot,
            results: Mutex::new(results),
        }
    }

    /// Frees the slot, closes the buffer and drops what it holds, once. Returns whether this
    /// call did it.
    pub fn release(&self) -> bool {
        if !self.slot.release() {
            return false;
        }
        let mut results = self.results.lock().unwrap_or_else(PoisonError::into_inner);
        results.close();
        while results.try_recv().is_ok() {}
        true
    }

    /// Whether the stream was ended by either side.
    pub fn is_released(&self) -> bool {
        self.slot.is_released()
    }
}

/// What a `Flows.Stream` call returns to tonic. Dropping it (the client went away) releases
/// the link and tells the hub.
pub struct Outbound {
    pub(crate) id: u64,
    pub(crate) link: Arc<StreamLink>,
    pub(crate) end: Option<oneshot::Receiver<Status>>,
    pub(crate) ended: bool,
    pub(crate) departures: mpsc::Sender<Departure>,
}

impl Outbound {
    /// The status the hub ended the stream with, if it did.
    fn ending(&mut self) -> Option<Status> {
        self.end.take().and_then(|mut end| end.try_recv().ok())
    }
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
        let link = self.link.clone();
        let mut results = link.results.lock().unwrap_or_else(PoisonError::into_inner);
        match results.poll_recv(cx) {
            Poll::Ready(Some(result)) => Poll::Ready(Some(Ok(result))),
            // The hub hands the status over before it closes the buffer.
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(self.ending().map(Err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        // When the hub ended the stream it already removed the subscription. Otherwise a full
        // queue only delays the removal to the hub's sweep at the next epoch.
        if self.link.release() {
            let _ = self.departures.try_send(Departure::Left(self.id));
        }
    }
}
