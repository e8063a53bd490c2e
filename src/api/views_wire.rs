//! `eddy.views.v1.Views` on the wire: routes each method's path to [`ViewsService`], with
//! protobuf for `ListViews` and `Read`. `Subscribe` decodes its request through tonic, and its
//! response body is the subscription's [`Outbound`](crate::streams::outbound::Outbound), as
//! for `goldmane.Flows/Stream` (`api::flows_wire`): runs of messages the view hub encoded once
//! for every subscriber of a filter, written as they are.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::NamedService;
use tonic::Status;

use crate::api::calls::{live_stream, unary};
use crate::api::views::ViewsService;
use crate::proto::views::{ListViewsRequest, SubscribeRequest};

/// The `eddy.views.v1.Views` service as tonic serves it.
#[derive(Clone)]
pub struct ViewsWire {
    service: ViewsService,
    max_decoding_message_size: usize,
}

impl ViewsWire {
    /// Serves `service`, refusing request messages larger than `max_decoding_message_size`.
    pub fn new(service: ViewsService, max_decoding_message_size: usize) -> Self {
        ViewsWire {
            service,
            max_decoding_message_size,
        }
    }
}

impl NamedService for ViewsWire {
    const NAME: &'static str = "eddy.views.v1.Views";
}

impl<B> Service<http::Request<B>> for ViewsWire
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
            "/eddy.views.v1.Views/ListViews" => Box::pin(async move {
                let list_views =
                    move |_: ListViewsRequest| std::future::ready(Ok(service.list_views()));
                Ok(unary(request, decoding_limit, list_views).await)
            }),
            "/eddy.views.v1.Views/Read" => Box::pin(async move {
                let read = move |message| {
                    let service = service.clone();
                    async move { service.read(message).await }
                };
                Ok(unary(request, decoding_limit, read).await)
            }),
            "/eddy.views.v1.Views/Subscribe" => Box::pin(async move {
                let open = |message: SubscribeRequest, peer| service.subscribe(message, peer);
                Ok(live_stream(request, decoding_limit, open)
                    .await
                    .unwrap_or_else(Status::into_http))
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}
