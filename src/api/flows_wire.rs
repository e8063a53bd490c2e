//! `goldmane.Flows` on the wire: routes each method's path to [`FlowsService`], with protobuf
//! for `List` and `FilterHints`. `Stream` decodes its request through tonic, and its response
//! body is the stream's [`Outbound`](crate::streams::outbound::Outbound): runs of results the
//! hub encoded and framed once and shares between every subscriber they reach
//! (`streams::encoded`), written as they are, many results per HTTP/2 data frame.

use tonic::codegen::{http, Body, StdError};
use tonic::Status;

use crate::api::calls::{live_stream, unary, HandRouted, MethodAnswer, RoutedMethods};
use crate::api::flows::FlowsService;
use crate::proto::FlowStreamRequest;

/// The `goldmane.Flows` service as tonic serves it.
pub type FlowsWire = HandRouted<FlowsService>;

impl RoutedMethods for FlowsService {
    const NAME: &'static str = "goldmane.Flows";

    fn answer<B>(self, request: http::Request<B>, limit: usize) -> Option<MethodAnswer>
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        let service = self;
        match request.uri().path() {
            "/goldmane.Flows/List" => Some(Box::pin(async move {
                let list = move |message| {
                    let service = service.clone();
                    async move { service.list(message).await }
                };
                Ok(unary(request, limit, list).await)
            })),
            "/goldmane.Flows/FilterHints" => Some(Box::pin(async move {
                let filter_hints = move |message| {
                    let service = service.clone();
                    async move { service.filter_hints(message).await }
                };
                Ok(unary(request, limit, filter_hints).await)
            })),
            "/goldmane.Flows/Stream" => Some(Box::pin(async move {
                let open = |message: FlowStreamRequest, peer| service.stream(message, peer);
                Ok(live_stream(request, limit, open)
                    .await
                    .unwrap_or_else(Status::into_http))
            })),
            _ => None,
        }
    }
}
