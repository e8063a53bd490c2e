//! A tower layer on the gRPC server that times the query RPCs ([`Rpc`]) from request to
//! response. For unary calls the response is ready only when the answer is, so this is the
//! whole query's latency as the server sees it. Other paths pass through untimed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;
use tower::{Layer, Service};

use crate::metrics::{Metrics, Rpc};

/// Wraps services in a [`QueryTimer`].
#[derive(Clone, Debug)]
pub struct QueryTimerLayer {
    metrics: Arc<Metrics>,
}

impl QueryTimerLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        QueryTimerLayer { metrics }
    }
}

impl<S> Layer<S> for QueryTimerLayer {
    type Service = QueryTimer<S>;

    fn layer(&self, inner: S) -> QueryTimer<S> {
        QueryTimer {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Records the latency of every measured RPC it forwards.
#[derive(Clone, Debug)]
pub struct QueryTimer<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for QueryTimer<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let rpc = Rpc::from_path(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let result = response.await;
            if let Some(rpc) = rpc {
                metrics
                    .query_latency(rpc)
                    .observe(started.elapsed().as_secs_f64());
            }
            result
        })
    }
}
