//! A tower layer on the gRPC server that answers a request over the decode limit with
//! `RESOURCE_EXHAUSTED` (SPEC §10.1, §12.3), for every service.
//!
//! tonic refuses such a message with `OUT_OF_RANGE`, in the response headers (unary and
//! server-streaming calls) or in the trailers (a `Connect` stream that already answered).
//! Eddy answers no `OUT_OF_RANGE` of its own, so every one is rewritten, wherever it appears.

use std::task::{Context, Poll};

use http_body_util::BodyExt;
use tonic::codegen::http::{self, HeaderMap, HeaderValue};
use tonic::Code;
use tower::{Layer, Service};

/// Wraps services in an [`OversizeStatus`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OversizeStatusLayer;

impl<S> Layer<S> for OversizeStatusLayer {
    type Service = OversizeStatus<S>;

    fn layer(&self, inner: S) -> OversizeStatus<S> {
        OversizeStatus { inner }
    }
}

/// Rewrites `grpc-status: OUT_OF_RANGE` to `RESOURCE_EXHAUSTED` in headers and trailers.
#[derive(Clone, Debug)]
pub struct OversizeStatus<S> {
    inner: S,
}

/// Rewrites the status in one header map, if it is `OUT_OF_RANGE`.
fn rewrite(headers: &mut HeaderMap) {
    let out_of_range = HeaderValue::from(Code::OutOfRange as i32);
    if headers.get("grpc-status") == Some(&out_of_range) {
        headers.insert(
            "grpc-status",
            HeaderValue::from(Code::ResourceExhausted as i32),
        );
    }
}

impl<S, B> Service<http::Request<B>> for OversizeStatus<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = futures::future::MapOk<
        S::Future,
        fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use futures::TryFutureExt;
        self.inner.call(request).map_ok(|response| {
            let (mut parts, body) = response.into_parts();
            rewrite(&mut parts.headers);
            let body = body.map_frame(|mut frame| {
                if let Some(trailers) = frame.trailers_mut() {
                    rewrite(trailers);
                }
                frame
            });
            http::Response::from_parts(parts, tonic::body::Body::new(body))
        })
    }
}
