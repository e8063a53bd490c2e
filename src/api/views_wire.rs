//! `eddy.views.v1.Views` on the wire: routes each method's path to [`ViewsService`], with
//! protobuf for `ListViews` and `Read`. `Subscribe` decodes its request through tonic, and its
//! response body is the subscription's [`Outbound`](crate::streams::outbound::Outbound), as
//! for `goldmane.Flows/Stream` (`api::flows_wire`): runs of messages the view hub encoded once
//! for every subscriber of a filter, written as they are.

use tonic::codegen::{http, Body, StdError};
use tonic::Status;

use crate::api::calls::{live_stream, unary, HandRouted, MethodAnswer, RoutedMethods};
use crate::api::views::ViewsService;
use crate::proto::views::{ListViewsRequest, SubscribeRequest};

/// The `eddy.views.v1.Views` service as tonic serves it.
pub type ViewsWire = HandRouted<ViewsService>;

impl RoutedMethods for ViewsService {
    const NAME: &'static str = "eddy.views.v1.Views";

    fn answer<B>(self, request: http::Request<B>, limit: usize) -> Option<MethodAnswer>
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        let service = self;
        match request.uri().path() {
            "/eddy.views.v1.Views/ListViews" => Some(Box::pin(async move {
                let list_views =
                    move |_: ListViewsRequest| std::future::ready(Ok(service.list_views()));
                Ok(unary(request, limit, list_views).await)
            })),
            "/eddy.views.v1.Views/Read" => Some(Box::pin(async move {
                let read = move |message| {
                    let service = service.clone();
                    async move { service.read(message).await }
                };
                Ok(unary(request, limit, read).await)
            })),
            "/eddy.views.v1.Views/Subscribe" => Some(Box::pin(async move {
                let open = |message: SubscribeRequest, peer| service.subscribe(message, peer);
                Ok(live_stream(request, limit, open)
                    .await
                    .unwrap_or_else(Status::into_http))
            })),
            _ => None,
        }
    }
}
