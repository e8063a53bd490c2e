//! `goldmane.Flows` on the wire: routes each method's path to [`FlowsService`], with protobuf
//! for `List` and `FilterHints`, and for `Stream` the results the hub encoded once and shares
//! between every subscriber they reach (`streams::encoded`).

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::api::flows::FlowsService;
use crate::proto::{
    FilterHintsRequest, FilterHintsResult, FlowListRequest, FlowListResult, FlowStreamRequest,
};
use crate::streams::encoded::{EncodedResult, StreamCodec};
use crate::streams::outbound::Outbound;

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

struct ListMethod(FlowsService);

impl UnaryService<FlowListRequest> for ListMethod {
    type Response = FlowListResult;
    type Future = BoxFuture<Response<FlowListResult>, Status>;

    fn call(&mut self, request: Request<FlowListRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { Ok(Response::new(service.list(request.into_inner()).await?)) })
    }
}

struct FilterHintsMethod(FlowsService);

impl UnaryService<FilterHintsRequest> for FilterHintsMethod {
    type Response = FilterHintsResult;
    type Future = BoxFuture<Response<FilterHintsResult>, Status>;

    fn call(&mut self, request: Request<FilterHintsRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            Ok(Response::new(
                service.filter_hints(request.into_inner()).await?,
            ))
        })
    }
}

struct StreamMethod(FlowsService);

impl ServerStreamingService<FlowStreamRequest> for StreamMethod {
    type Response = EncodedResult;
    type ResponseStream = Outbound;
    type Future = BoxFuture<Response<Outbound>, Status>;

    fn call(&mut self, request: Request<FlowStreamRequest>) -> Self::Future {
        let peer = request.remote_addr().map(|address| address.ip());
        let subscribed = self.0.stream(request.into_inner(), peer);
        Box::pin(async move { Ok(Response::new(subscribed?)) })
    }
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
        let limit = Some(self.max_decoding_message_size);
        match request.uri().path() {
            "/goldmane.Flows/List" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::default());
                grpc = grpc.apply_max_message_size_config(limit, None);
                Ok(grpc.unary(ListMethod(service), request).await)
            }),
            "/goldmane.Flows/FilterHints" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::default());
                grpc = grpc.apply_max_message_size_config(limit, None);
                Ok(grpc.unary(FilterHintsMethod(service), request).await)
            }),
            "/goldmane.Flows/Stream" => Box::pin(async move {
                let mut grpc = Grpc::new(StreamCodec).apply_max_message_size_config(limit, None);
                Ok(grpc.server_streaming(StreamMethod(service), request).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}
