//! `goldmane.Flows` on the wire: routes each method's path to [`FlowsService`], with protobuf
//! for `List` and `FilterHints`. `Stream` decodes its request through tonic, and its response
//! body is the stream's [`Outbound`]: runs of results the hub encoded and framed once and
//! shares between every subscriber they reach (`streams::encoded`), written as they are,
//! many results per HTTP/2 data frame.

use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use tonic::codec::{BufferSettings, Streaming};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::server::TcpConnectInfo;
use tonic::transport::server::TlsConnectInfo;
use tonic::{Request, Response, Status};
use tonic_prost::{ProstCodec, ProstDecoder};

use crate::api::flows::FlowsService;
use crate::api::status::ApiError;
use crate::proto::{
    FilterHintsRequest, FilterHintsResult, FlowListRequest, FlowListResult, FlowStreamRequest,
};
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

/// The client address of a call, as tonic records it for plain and TLS connections.
fn peer_of<B>(request: &http::Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
        .map(|address| address.ip())
}

/// Refuses a compressed request: this service accepts none (as tonic does when no encoding is
/// enabled).
fn check_uncompressed<B>(request: &http::Request<B>) -> Result<(), Status> {
    match request.headers().get("grpc-encoding") {
        Some(encoding) if encoding.as_bytes() != b"identity" => {
            Err(Status::unimplemented(format!(
                "Content is compressed with `{}` which isn't supported",
                String::from_utf8_lossy(encoding.as_bytes())
            )))
        }
        _ => Ok(()),
    }
}

/// A unary call answered by `method`, its request message decoded up to `limit` bytes.
/// `Flows.List`, `Flows.FilterHints`, `Views.ListViews` and `Views.Read`.
pub(crate) async fn unary<Req, Resp, M, B>(
    method: M,
    request: http::Request<B>,
    limit: usize,
) -> http::Response<tonic::body::Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    M: UnaryService<Req, Response = Resp>,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send,
{
    let mut grpc = Grpc::new(ProstCodec::<Resp, Req>::default())
        .apply_max_message_size_config(Some(limit), None);
    grpc.unary(method, request).await
}

/// A server-streaming call answered by a live stream: decodes the one request message `M`
/// (at most `limit` bytes), opens the stream with `open` for the client's address, and
/// answers with the stream's [`Outbound`] as the body. `Flows.Stream` and `Views.Subscribe`.
pub(crate) async fn live_stream<M, B>(
    request: http::Request<B>,
    limit: usize,
    open: impl FnOnce(M, Option<IpAddr>) -> Result<Outbound, ApiError>,
) -> Result<http::Response<tonic::body::Body>, Status>
where
    M: prost::Message + Default + Send + 'static,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    check_uncompressed(&request)?;
    let peer = peer_of(&request);
    let mut messages = Streaming::new_request(
        ProstDecoder::<M>::new(BufferSettings::default()),
        request.into_body(),
        None,
        Some(limit),
    );
    let message = messages
        .message()
        .await?
        .ok_or_else(|| Status::internal("Missing request message."))?;
    let outbound = open(message, peer)?;
    let mut response = http::Response::new(tonic::body::Body::new(outbound));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    Ok(response)
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
            "/goldmane.Flows/List" => {
                Box::pin(
                    async move { Ok(unary(ListMethod(service), request, decoding_limit).await) },
                )
            }
            "/goldmane.Flows/FilterHints" => Box::pin(async move {
                Ok(unary(FilterHintsMethod(service), request, decoding_limit).await)
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
