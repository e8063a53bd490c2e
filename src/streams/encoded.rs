//! Stream results encoded once and shared: a row that reaches a hundred subscribers is turned
//! into protobuf bytes once, and each subscriber's stream writes the same bytes. The codec
//! here is what `Flows.Stream` speaks on the wire: it reads a `FlowStreamRequest` and writes
//! those bytes as the `FlowResult` messages they are.

use prost::bytes::BufMut;
use prost::Message;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::Bytes;
use tonic::Status;
use tonic_prost::ProstDecoder;

use crate::api::convert::RowConverter;
use crate::proto::{FlowResult, FlowStreamRequest};
use eddy_dataflows::queries::list::ListRow;

/// One `FlowResult`, already encoded. Cloning shares the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedResult(Bytes);

impl EncodedResult {
    /// Encodes `result`.
    pub fn of(result: &FlowResult) -> Self {
        EncodedResult(Bytes::from(result.encode_to_vec()))
    }

    /// Encodes the result of one of many rows converted by `converter`.
    pub fn of_row_with(row: &ListRow, converter: &mut RowConverter<'_>) -> Self {
        EncodedResult::of(&converter.flow_result(row))
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Writes an [`EncodedResult`] as it is.
#[derive(Debug, Default)]
pub struct EncodedResultEncoder;

impl Encoder for EncodedResultEncoder {
    type Item = EncodedResult;
    type Error = Status;

    fn encode(&mut self, item: EncodedResult, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.bytes());
        Ok(())
    }
}

/// The `Flows.Stream` codec: decodes the request, writes pre-encoded results.
#[derive(Debug, Default)]
pub struct StreamCodec;

impl Codec for StreamCodec {
    type Encode = EncodedResult;
    type Decode = FlowStreamRequest;
    type Encoder = EncodedResultEncoder;
    type Decoder = ProstDecoder<FlowStreamRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedResultEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Flow, FlowKey};

    #[test]
    fn encoded_results_decode_to_what_was_encoded() {
        let result = FlowResult {
            id: 7,
            flow: Some(Flow {
                key: Some(FlowKey {
                    source_name: "client".into(),
                    ..Default::default()
                }),
                start_time: 100,
                end_time: 115,
                ..Default::default()
            }),
        };
        let encoded = EncodedResult::of(&result);
        assert_eq!(
            FlowResult::decode(encoded.bytes()).expect("our own encoding decodes"),
            result
        );
    }
}
