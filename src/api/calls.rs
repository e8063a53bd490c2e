//! The call shapes Eddy's hand-routed gRPC services share: a unary method answered by an
//! async function of its request message, a server-streaming call answered by messages
//! already encoded (`goldmane.Statistics` in `api::statistics_wire`), and a server-streaming
//! call answered by a live stream's [`Outbound`] (`goldmane.Flows` in `api::flows_wire`,
//! `eddy.views.v1.Views` in `api::views_wire`).

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder, Streaming};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::transport::server::TcpConnectInfo;
use tonic::transport::server::TlsConnectInfo;
use tonic::{Request, Response, Status};
use tonic_prost::{ProstCodec, ProstDecoder};

use crate::api::status::ApiError;
use crate::streams::outbound::Outbound;

/// The answer to one call of a hand-routed method.
pub type MethodAnswer = BoxFuture<http::Response<tonic::body::Body>, Infallible>;

/// A service whose methods are routed by hand (`goldmane.Flows`, `goldmane.Statistics`,
/// `eddy.views.v1.Views`): its name, and the answer to each of its methods.
pub trait RoutedMethods: Clone + Send + 'static {
    /// The service's full gRPC name.
    const NAME: &'static str;

    /// The answer to `request`, by its method's path, with request messages decoded up to
    /// `limit` bytes; `None` for a path that is not one of the service's methods.
    fn answer<B>(self, request: http::Request<B>, limit: usize) -> Option<MethodAnswer>
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static;
}

/// A hand-routed service as tonic serves it: each call routed by [`RoutedMethods::answer`],
/// `UNIMPLEMENTED` for any other path.
#[derive(Clone)]
pub struct HandRouted<S> {
    service: S,
    max_decoding_message_size: usize,
}

impl<S> HandRouted<S> {
    /// Serves `service`, refusing request messages larger than `max_decoding_message_size`.
    pub fn new(service: S, max_decoding_message_size: usize) -> Self {
        HandRouted {
            service,
            max_decoding_message_size,
        }
    }
}

impl<S: RoutedMethods> NamedService for HandRouted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for HandRouted<S>
where
    S: RoutedMethods,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = MethodAnswer;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> MethodAnswer {
        self.service
            .clone()
            .answer(request, self.max_decoding_message_size)
            .unwrap_or_else(|| {
                Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) })
            })
    }
}

/// A unary method: `answer` applied to each request message.
struct UnaryMethod<F>(F);

impl<Req, Resp, F, Answer> UnaryService<Req> for UnaryMethod<F>
where
    F: FnMut(Req) -> Answer,
    Answer: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    type Response = Resp;
    type Future = BoxFuture<Response<Resp>, Status>;

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let answer = (self.0)(request.into_inner());
        Box::pin(async move { Ok(Response::new(answer.await?)) })
    }
}

/// A unary call answered by `answer`, its request message decoded up to `limit` bytes.
pub(crate) async fn unary<Req, Resp, Answer, B>(
    request: http::Request<B>,
    limit: usize,
    answer: impl FnMut(Req) -> Answer + Send + 'static,
) -> http::Response<tonic::body::Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    Answer: Future<Output = Result<Resp, ApiError>> + Send + 'static,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send,
{
    let mut grpc = Grpc::new(ProstCodec::<Resp, Req>::default())
        .apply_max_message_size_config(Some(limit), None);
    grpc.unary(UnaryMethod(answer), request).await
}

/// A server-streaming method: `answer` applied to the request message gives the response
/// messages, each as its encoded bytes.
struct EncodedStreamMethod<F>(F);

/// The response stream of an [`EncodedStreamMethod`].
type EncodedMessages<Messages> =
    futures::stream::Iter<std::iter::Map<Messages, fn(Bytes) -> Result<Bytes, Status>>>;

impl<Req, Messages, F, Answer> ServerStreamingService<Req> for EncodedStreamMethod<F>
where
    F: FnMut(Req) -> Answer,
    Answer: Future<Output = Result<Messages, ApiError>> + Send + 'static,
    Messages: Iterator<Item = Bytes> + Send + 'static,
{
    type Response = Bytes;
    type ResponseStream = EncodedMessages<Messages>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let answer = (self.0)(request.into_inner());
        Box::pin(async move {
            let messages = answer.await?;
            let ok: fn(Bytes) -> Result<Bytes, Status> = Ok;
            Ok(Response::new(futures::stream::iter(messages.map(ok))))
        })
    }
}

/// Requests decoded by prost; responses given as their encoded bytes, written as they are.
struct EncodedResponses<Req>(PhantomData<fn() -> Req>);

impl<Req> Codec for EncodedResponses<Req>
where
    Req: prost::Message + Default + Send + 'static,
{
    type Encode = Bytes;
    type Decode = Req;
    type Encoder = BytesEncoder;
    type Decoder = ProstDecoder<Req>;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<Req> {
        ProstDecoder::new(BufferSettings::default())
    }
}

/// Writes a message's encoded bytes.
struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, message: Bytes, buffer: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buffer.put_slice(&message);
        Ok(())
    }
}

/// A server-streaming call answered by `answer` with encoded messages, its request message
/// decoded up to `limit` bytes.
pub(crate) async fn encoded_stream<Req, Messages, Answer, B>(
    request: http::Request<B>,
    limit: usize,
    answer: impl FnMut(Req) -> Answer + Send + 'static,
) -> http::Response<tonic::body::Body>
where
    Req: prost::Message + Default + Send + 'static,
    Messages: Iterator<Item = Bytes> + Send + 'static,
    Answer: Future<Output = Result<Messages, ApiError>> + Send + 'static,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send,
{
    let mut grpc = Grpc::new(EncodedResponses::<Req>(PhantomData))
        .apply_max_message_size_config(Some(limit), None);
    grpc.server_streaming(EncodedStreamMethod(answer), request)
        .await
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
