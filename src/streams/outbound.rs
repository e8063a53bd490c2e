//! The response body of one `Flows.Stream` call, and the [`Outbox`] it shares with the hub:
//! the stream's slot and its queue of [`Chunk`]s (each a run of framed results, one per
//! bucket). The hub pushes at most one chunk per bucket and wakes the call once; the call
//! hands the queued bytes to HTTP/2 in slices of [`SLICE`] bytes, taking the next slice only
//! when HTTP/2 has room for it, so what stays queued here is what the client has not made room
//! for.
//!
//! Whichever side ends the stream first releases the slot and the queue at once: the hub when
//! the server ends it (slow consumer, shutdown; the status is set first and sent as the
//! trailers), the call when its client goes away. So a client that never reads keeps neither
//! a slot nor queued results after being ended.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use http_body::{Body, Frame, SizeHint};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};
use tonic::codegen::http::HeaderMap;
use tonic::codegen::Bytes;
use tonic::Status;

use crate::streams::encoded::Chunk;
use crate::streams::slots::Slot;

/// The most bytes handed to HTTP/2 at a time: the next slice is taken only once HTTP/2 has
/// room again, so a stream whose client does not read keeps its results in the queue, where
/// the hub sees them.
pub const SLICE: usize = 64 * 1024;

/// What the hub hears from outside besides new subscriptions.
#[derive(Debug)]
pub enum Departure {
    /// The client of a subscription went away.
    Left(u64),
    /// A subscription's backfill has been sent.
    BackfillDone(u64),
}

/// What became of a chunk offered to an outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// It is queued.
    Queued,
    /// It would overflow the stream's buffer: not queued.
    Full,
    /// The stream was ended by either side: not queued.
    Released,
}

#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    results: usize,
    released: bool,
    end: Option<Status>,
    waker: Option<Waker>,
}

/// What one stream's call and the hub (and its backfill) share.
#[derive(Debug)]
pub struct Outbox {
    slot: Slot,
    queue: Mutex<Queue>,
    drained: Notify,
}

impl Outbox {
    /// An empty outbox holding `slot`.
    pub fn new(slot: Slot) -> Self {
        Outbox {
            slot,
            queue: Mutex::new(Queue::default()),
            drained: Notify::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `chunk` and wakes the call; false if the stream was ended.
    pub fn push(&self, chunk: Chunk) -> bool {
        let waker = {
            let mut queue = self.queue();
            if queue.released {
                return false;
            }
            queue.results += chunk.results();
            queue.chunks.push_back(chunk);
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Queues `chunk` and wakes the call, unless the results queued would then be more than
    /// `most`.
    pub fn offer(&self, chunk: Chunk, most: usize) -> Offer {
        let waker = {
            let mut queue = self.queue();
            if queue.released {
                return Offer::Released;
            }
            if queue.results.saturating_add(chunk.results()) > most {
                return Offer::Full;
            }
            queue.results += chunk.results();
            queue.chunks.push_back(chunk);
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Offer::Queued
    }

    /// Queues every chunk of `chunks` with one wake-up; false if the stream was ended.
    pub fn push_all(&self, chunks: Vec<Chunk>) -> bool {
        let waker = {
            let mut queue = self.queue();
            if queue.released {
                return false;
            }
            for chunk in chunks {
                queue.results += chunk.results();
                queue.chunks.push_back(chunk);
            }
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Results queued (counted whole until their last byte is taken).
    pub fn queued_results(&self) -> usize {
        self.queue().results
    }

    /// Whether nothing is queued.
    pub fn is_drained(&self) -> bool {
        self.queue().chunks.is_empty()
    }

    /// Waits until nothing is queued or the stream was ended.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            {
                let queue = self.queue();
                if queue.chunks.is_empty() || queue.released {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Ends the stream with `status` (sent as its trailers) and releases it. Returns whether
    /// this call ended it.
    pub fn end(&self, status: Status) -> bool {
        self.queue().end = Some(status);
        self.release()
    }

    /// Frees the slot, drops what is queued and wakes the call, once. Returns whether this
    /// call did it.
    pub fn release(&self) -> bool {
        if !self.slot.release() {
            return false;
        }
        let (waker, dropped) = {
            let mut queue = self.queue();
            queue.released = true;
            queue.results = 0;
            (queue.waker.take(), std::mem::take(&mut queue.chunks))
        };
        drop(dropped);
        self.drained.notify_waiters();
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Whether the stream was ended by either side.
    pub fn is_released(&self) -> bool {
        self.slot.is_released()
    }

    /// The next slice to write, the end of the stream (with the status the hub ended it with,
    /// if any), or nothing yet.
    fn poll_slice(&self, cx: &mut Context<'_>) -> Poll<Result<Bytes, Option<Status>>> {
        let mut queue = self.queue();
        if let Some(front) = queue.chunks.front_mut() {
            let slice = front.take_front(SLICE);
            if front.is_empty() {
                let results = front.results();
                queue.chunks.pop_front();
                queue.results = queue.results.saturating_sub(results);
                if queue.chunks.is_empty() {
                    self.drained.notify_waiters();
                }
            }
            return Poll::Ready(Ok(slice));
        }
        if queue.released {
            return Poll::Ready(Err(queue.end.take()));
        }
        match &queue.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => queue.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The response body of a `Flows.Stream` call: the queued results as gRPC messages, then the
/// trailers with the status the stream ended with. Dropping it (the client went away)
/// releases the outbox and tells the hub.
pub struct Outbound {
    pub(crate) id: u64,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) ended: bool,
    pub(crate) departures: mpsc::Sender<Departure>,
}

impl Body for Outbound {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.outbox.poll_slice(cx) {
            Poll::Ready(Ok(slice)) => Poll::Ready(Some(Ok(Frame::data(slice)))),
            Poll::Ready(Err(status)) => {
                self.ended = true;
                // Only the server ends a stream with a status: the shutdown or a slow client.
                let status = status.unwrap_or_else(|| Status::cancelled("the stream was ended"));
                let mut trailers = HeaderMap::new();
                match status.add_header(&mut trailers) {
                    Ok(()) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                    Err(status) => Poll::Ready(Some(Err(status))),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        // When the hub ended the stream it already removed the subscription. Otherwise a full
        // queue only delays the removal to the hub's sweep at the next epoch.
        if self.outbox.release() {
            let _ = self.departures.try_send(Departure::Left(self.id));
        }
    }
}
