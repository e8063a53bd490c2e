//! `goldmane.FlowCollector` on the wire: routes `Connect` to [`CollectorService`] with a codec
//! that hands over each request message as its bytes, split from tonic's decode buffer without
//! a copy, for the call to read in place (`ingest::connection`); receipts are encoded with prost.

use std::convert::Infallible;
use std::task::{Context, Poll};

use prost::bytes::{Buf, Bytes};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstEncoder;

use crate::api::collector::{CollectorService, ConnectStream};
use crate::proto::FlowReceipt;

/// Bytes of the buffer tonic decodes a call's request messages into, and grows it by. Each
/// message is split off it and lives until its batch is handed over, so the buffer is
/// allocated again once per this many bytes: large, so a call allocates once per few hundred
/// updates rather than once per few.
const DECODE_BUFFER_BYTES: usize = 128 * 1024;
/// Bytes decoded before the call yields to other tasks (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// Yields each request message as its encoded bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageBytesDecoder;

impl Decoder for MessageBytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, source: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(source.copy_to_bytes(source.remaining())))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(DECODE_BUFFER_BYTES, YIELD_THRESHOLD)
    }
}

/// The `Connect` codec: request messages as bytes, receipts with prost.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectCodec;

impl Codec for ConnectCodec {
    type Encode = FlowReceipt;
    type Decode = Bytes;
    type Encoder = ProstEncoder<FlowReceipt>;
    type Decoder = MessageBytesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageBytesDecoder
    }
}

impl NamedService for CollectorService {
    const NAME: &'static str = "goldmane.FlowCollector";
}

struct ConnectMethod(CollectorService);

impl StreamingService<Bytes> for ConnectMethod {
    type Response = FlowReceipt;
    type ResponseStream = ConnectStream;
    type Future = BoxFuture<Response<ConnectStream>, Status>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let connected = self.0.connect(request);
        Box::pin(async move { connected })
    }
}

impl<B> Service<http::Request<B>> for CollectorService
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
        let service = self.clone();
        match request.uri().path() {
            "/goldmane.FlowCollector/Connect" => Box::pin(async move {
                let limit = Some(service.max_decoding_message_size);
                let mut grpc = Grpc::new(ConnectCodec).apply_max_message_size_config(limit, None);
                Ok(grpc.streaming(ConnectMethod(service), request).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}
