//! A tower layer that makes a request body ending inside a gRPC message an error (SPEC §10.1):
//! the call then ends `INTERNAL`, as for any unparseable request.
//!
//! gRPC frames a message as a 5-byte header (a flag byte and a big-endian length) followed by
//! the message. tonic's decoder treats a body that ends right after a header, before any of the
//! message's bytes, as a clean end of stream, so such a `Connect` call would end `OK`. This layer
//! follows the frame boundaries of every request body and, when the body ends inside a frame,
//! yields an `INTERNAL` status as the body's error, which tonic reports as the call's status.
//! State: five counters per request; nothing is buffered.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tonic::codegen::{http, Bytes};
use tonic::Status;
use tower::{Layer, Service};

/// Wraps services in a [`WholeFrames`].
#[derive(Clone, Copy, Debug, Default)]
pub struct WholeFramesLayer;

impl<S> Layer<S> for WholeFramesLayer {
    type Service = WholeFrames<S>;

    fn layer(&self, inner: S) -> WholeFrames<S> {
        WholeFrames { inner }
    }
}

/// Hands the inner service a body that fails when it ends inside a gRPC frame.
#[derive(Clone, Debug)]
pub struct WholeFrames<S> {
    inner: S,
}

impl<S> Service<http::Request<tonic::body::Body>> for WholeFrames<S>
where
    S: Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let body = tonic::body::Body::new(FrameTracked {
            inner: body,
            position: FramePosition::default(),
        });
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

/// Where a body stands in its sequence of gRPC frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FramePosition {
    /// Header bytes of the current frame read so far (0 to 5).
    header_read: usize,
    /// The current frame's length bytes, as read so far.
    length: [u8; 4],
    /// Message bytes of the current frame still to come.
    payload_left: u64,
}

impl FramePosition {
    /// Moves past `data`.
    pub fn advance(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let taken = data
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                self.payload_left -= taken as u64;
                data = &data[taken..];
                continue;
            }
            if self.header_read >= 1 {
                self.length[self.header_read - 1] = data[0];
            }
            self.header_read += 1;
            data = &data[1..];
            if self.header_read == 5 {
                self.header_read = 0;
                self.payload_left = u64::from(u32::from_be_bytes(self.length));
            }
        }
    }

    /// Whether the body so far ends on a frame boundary.
    pub fn at_boundary(&self) -> bool {
        self.header_read == 0 && self.payload_left == 0
    }
}

/// A request body whose frame boundaries are followed.
struct FrameTracked {
    inner: tonic::body::Body,
    position: FramePosition,
}

impl Body for FrameTracked {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.position.advance(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) if !self.position.at_boundary() => {
                self.position = FramePosition::default();
                let ended = Status::internal("the request ended inside a message");
                Poll::Ready(Some(Err(ended)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream() && self.position.at_boundary()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(chunks: &[&[u8]]) -> FramePosition {
        let mut position = FramePosition::default();
        for chunk in chunks {
            position.advance(chunk);
        }
        position
    }

    #[test]
    fn whole_frames_in_any_chunking_end_on_a_boundary() {
        let frames: &[u8] = &[0, 0, 0, 0, 2, 7, 8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 9];
        assert!(position(&[frames]).at_boundary());
        for split in 0..frames.len() {
            let (left, right) = frames.split_at(split);
            assert!(position(&[left, right]).at_boundary(), "split at {split}");
        }
        let one_byte_chunks: Vec<&[u8]> = frames.chunks(1).collect();
        assert!(position(&one_byte_chunks).at_boundary());
    }

    #[test]
    fn a_body_ending_in_a_header_or_a_message_is_not_on_a_boundary() {
        assert!(!position(&[&[0, 0, 0]]).at_boundary(), "inside a header");
        assert!(
            !position(&[&[0, 0, 0, 0, 3]]).at_boundary(),
            "a header without its message"
        );
        assert!(
            !position(&[&[0, 0, 0, 0, 3, 1, 2]]).at_boundary(),
            "a message cut short"
        );
        assert!(
            position(&[&[0, 0, 0, 0, 0]]).at_boundary(),
            "an empty message"
        );
    }
}
