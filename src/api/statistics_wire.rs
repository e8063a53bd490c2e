//! `goldmane.Statistics` on the wire: routes `List` to [`StatisticsService`], its request
//! decoded by prost and its results written as the bytes `api::statistics_encoding` made of
//! them.

use tonic::codegen::{http, Body, StdError};

use crate::api::calls::{encoded_stream, HandRouted, MethodAnswer, RoutedMethods};
use crate::api::statistics::StatisticsService;

/// The `goldmane.Statistics` service as tonic serves it.
pub type StatisticsWire = HandRouted<StatisticsService>;

impl RoutedMethods for StatisticsService {
    const NAME: &'static str = "goldmane.Statistics";

    fn answer<B>(self, request: http::Request<B>, limit: usize) -> Option<MethodAnswer>
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        let service = self;
        match request.uri().path() {
            "/goldmane.Statistics/List" => Some(Box::pin(async move {
                let list = move |message| {
                    let service = service.clone();
                    async move { service.list(message).await }
                };
                Ok(encoded_stream(request, limit, list).await)
            })),
            _ => None,
        }
    }
}
