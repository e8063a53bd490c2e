//! `goldmane.Statistics` on the wire: routes `List` to [`StatisticsService`], its request
//! decoded by prost and its results written as the bytes `api::statistics_encoding` made of
//! them.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::NamedService;
use tonic::Status;

use crate::api::calls::encoded_stream;
use crate::api::statistics::StatisticsService;

/// The `goldmane.Statistics` service as tonic serves it.
#[derive(Clone)]
pub struct StatisticsWire {
    service: StatisticsService,
    max_decoding_message_size: usize,
}

impl StatisticsWire {
    /// Serves `service`, refusing request messages larger than `max_decoding_message_size`.
    pub fn new(service: StatisticsService, max_decoding_message_size: usize) -> Self {
        StatisticsWire {
            service,
            max_decoding_message_size,
        }
    }
}

impl NamedService for StatisticsWire {
    const NAME: &'static str = "goldmane.Statistics";
}

impl<B> Service<http::Request<B>> for StatisticsWire
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
            "/goldmane.Statistics/List" => Box::pin(async move {
                let list = move |message| {
                    let service = service.clone();
                    async move { service.list(message).await }
                };
                Ok(encoded_stream(request, decoding_limit, list).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}
