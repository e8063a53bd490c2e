//! Stream results encoded once, as gRPC messages ready for the wire: a row that reaches a
//! hundred subscribers is turned into protobuf bytes once, framed (a 5-byte gRPC message
//! header, no compression), and appended to the run of its filter group's results for the
//! bucket. A [`Chunk`] is one such run: every subscriber of the group is handed the same
//! shared bytes, and its call writes them as they are.

use prost::Message;
use tonic::codegen::Bytes;

use crate::proto::FlowResult;

/// The gRPC message header: a compression flag and the message length (big-endian u32).
const HEADER: usize = 5;

/// Framed `FlowResult` messages, shared. Cloning shares the bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    bytes: Bytes,
    results: usize,
}

impl Chunk {
    /// The framed messages, one after the other.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// How many results it holds.
    pub fn results(&self) -> usize {
        self.results
    }

    /// Takes whole messages from the front: as many as fit in `most` bytes, or the first one
    /// if it alone is larger. Shares the bytes; never copies. A stream ended between two
    /// slices so never ends inside a message.
    pub fn take_front(&mut self, most: usize) -> Bytes {
        let mut cut = 0;
        while cut + HEADER <= self.bytes.len() {
            let header = &self.bytes[cut..cut + HEADER];
            let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let next = cut + HEADER + length;
            if next > most && cut > 0 {
                break;
            }
            cut = next.min(self.bytes.len());
        }
        self.bytes.split_to(cut)
    }

    /// Whether every byte was taken.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// A run of framed results being built.
#[derive(Debug, Default)]
pub struct Frames {
    bytes: Vec<u8>,
    results: usize,
    /// The size of the last run taken: the room reserved when the next one starts.
    hint: usize,
}

impl Frames {
    /// Appends one message whose protobuf encoding is `message`.
    pub fn push_encoded(&mut self, message: &[u8]) {
        // A FlowResult is far below 4 GiB: its fields are bounded on input (SPEC §12.1).
        let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
        if self.bytes.capacity() == 0 {
            self.bytes.reserve(self.hint.max(HEADER + message.len()));
        }
        self.bytes.push(0);
        self.bytes.extend_from_slice(&length.to_be_bytes());
        self.bytes.extend_from_slice(message);
        self.results += 1;
    }

    /// Appends `result`, encoded through `scratch`.
    pub fn push(&mut self, result: &FlowResult, scratch: &mut Vec<u8>) {
        encode(result, scratch);
        self.push_encoded(scratch);
    }

    /// How many results it holds.
    pub fn results(&self) -> usize {
        self.results
    }

    /// How many bytes it holds.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it holds no result.
    pub fn is_empty(&self) -> bool {
        self.results == 0
    }

    /// The run as a shared chunk; leaves this one empty (it reserves as much room as this
    /// one took when its next result comes).
    pub fn take(&mut self) -> Chunk {
        self.hint = self.bytes.len();
        let bytes = std::mem::take(&mut self.bytes);
        Chunk {
            bytes: Bytes::from(bytes),
            results: std::mem::take(&mut self.results),
        }
    }
}

/// Encodes `result` into `scratch`, replacing what it held.
pub fn encode(result: &FlowResult, scratch: &mut Vec<u8>) {
    scratch.clear();
    scratch.reserve(result.encoded_len());
    // Encoding into a Vec with room reserved cannot fail.
    let _ = result.encode(scratch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Flow, FlowKey};

    fn result(id: i64) -> FlowResult {
        FlowResult {
            id,
            flow: Some(Flow {
                key: Some(FlowKey {
                    source_name: "client".into(),
                    ..Default::default()
                }),
                start_time: 100,
                end_time: 115,
                ..Default::default()
            }),
        }
    }

    /// Reads framed messages back as a gRPC client would.
    fn unframe(mut bytes: &[u8]) -> Vec<FlowResult> {
        let mut results = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(bytes[0], 0, "uncompressed");
            let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
            let end = HEADER + length;
            results.push(FlowResult::decode(&bytes[HEADER..end]).expect("a FlowResult"));
            bytes = &bytes[end..];
        }
        results
    }

    #[test]
    fn a_chunk_holds_each_result_framed_in_order_and_is_taken_in_pieces() {
        let mut frames = Frames::default();
        let mut scratch = Vec::new();
        for id in 1..=3 {
            frames.push(&result(id), &mut scratch);
        }
        assert_eq!(frames.results(), 3);
        let mut chunk = frames.take();
        assert!(frames.is_empty());
        assert_eq!(frames.len(), 0);
        assert_eq!(chunk.results(), 3);
        assert_eq!(
            unframe(chunk.bytes()),
            vec![result(1), result(2), result(3)]
        );
        let one = chunk.bytes().len() / 3;
        // Less than a message: the first whole message all the same.
        let first = chunk.take_front(7);
        assert_eq!(unframe(&first), vec![result(1)]);
        // Room for one and a half: one.
        let second = chunk.take_front(one + one / 2);
        assert_eq!(unframe(&second), vec![result(2)]);
        let rest = chunk.take_front(usize::MAX);
        assert_eq!(unframe(&rest), vec![result(3)]);
        assert!(chunk.is_empty());
        assert_eq!(chunk.take_front(100).len(), 0);
    }
}
