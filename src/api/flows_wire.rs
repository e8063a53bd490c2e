//! `goldmane.Flows` on the wire: routes each method's path to [`FlowsService`], with protobuf
//! for `List` and `FilterHints`. `Stream` decodes its request through tonic, and its response
//! body is the stream's [`Outbound`](crate::streams::outbound::Outbound): runs of results the
//! hub encoded and framed once and shares between every subscriber they reach
//! (`streams::encoded`), written as they are, many results per HTTP/2 data frame.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::NamedService;
use tonic::Status;

use crate::api::calls::{live_stream, unary};
use crate::api::flows::FlowsService;
use crate::proto::FlowStreamRequest;

/// The `goldmane.Flows` service as tonic serves it.
#[derive(Clone)]
pub struct FlowsWire {
    service: FlowsService,
    max_decoding_message_size: usize,
}

impl FlowsWire {
    /// Serves `service`, refusing request messages larger than `max_decoding_message_size`.
    pub fn new(service: FlowsService, max_decoding_message_size: usize) -> Self {
        FlowsWire {
            service,
            max_decoding_message_size,
        }
    }
}

impl NamedService for FlowsWire {
    const NAME: &'static str = "goldmane.Flows";
}

impl<B> Service<http::Request<B>> for FlowsWire
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let service = self.service.clone();
        let decoding_limit = self.max_decoding_message_size;
        match request.uri().path() {
            "/goldmane.Flows/List" => Box::pin(async move {
                let list = move |message| {
                    let service = service.clone();
                    async move { service.list(message).await }
                };
                Ok(unary(request, decoding_limit, list).await)
            }),
            "/goldmane.Flows/FilterHints" => Box::pin(async move {
                let filter_hints = move |message| {
                    let service = service.clone();
                    async move { service.filter_hints(message).await }
                };
                Ok(unary(request, decoding_limit, filter_hints).await)
            }),
            "/goldmane.Flows/Stream" => Box::pin(async move {
                let open = |message: FlowStreamRequest, peer| service.stream(message, peer);
                Ok(live_stream(request, decoding_limit, open)
                    .await
                    .unwrap_or_else(Status::into_http))
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}
