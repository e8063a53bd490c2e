//! What one write-ahead log record holds: the updates one `Connect` batch stored (after
//! validation and de-duplication), when they arrived and from which peer, so recovery can
//! rebuild both the views and the de-duplication windows (SPEC §9.4, §13.2).
//!
//! The record is a `LoggedBatch` message. It is written from the updates' bytes as received
//! (no decode and re-encode at ingest) and read back as borrowed slices of those bytes, which
//! recovery prepares as a `Connect` call does (`ingest::connection`).

use std::net::IpAddr;

use prost::encoding::{
    decode_key, decode_varint, encode_key, encode_varint, skip_field, DecodeContext, WireType,
};
use prost::{DecodeError, Message};

use crate::durability::segment;
use crate::proto::FlowUpdate;

/// The field numbers of `LoggedBatch`.
const ARRIVAL: u32 = 1;
const PEER: u32 = 2;
const UPDATES: u32 = 3;

/// One logged batch, encoded as a protobuf message.
#[derive(Clone, PartialEq, Message)]
pub struct LoggedBatch {
    /// Arrival, in Unix seconds (the time de-duplication saw the updates).
    #[prost(int64, tag = "1")]
    pub arrival: i64,
    /// The peer's IP address: 4 or 16 bytes, empty when unknown.
    #[prost(bytes = "vec", tag = "2")]
    pub peer: Vec<u8>,
    /// The stored updates, as received.
    #[prost(message, repeated, tag = "3")]
    pub updates: Vec<FlowUpdate>,
}

impl LoggedBatch {
    /// The peer's IP address, if the batch recorded one.
    pub fn peer(&self) -> Option<IpAddr> {
        peer_of(&self.peer)
    }
}

/// The octets of `peer`: 4 or 16 bytes, none when unknown.
fn peer_octets(peer: Option<IpAddr>) -> Vec<u8> {
    match peer {
        Some(IpAddr::V4(ip)) => ip.octets().to_vec(),
        Some(IpAddr::V6(ip)) => ip.octets().to_vec(),
        None => Vec::new(),
    }
}

/// The peer's IP address from its octets, if they are one.
fn peer_of(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(octets) = <[u8; 4]>::try_from(octets) {
        return Some(IpAddr::from(octets));
    }
    <[u8; 16]>::try_from(octets).ok().map(IpAddr::from)
}

/// Encodes a `LoggedBatch` of the encoded `updates` (each a `FlowUpdate`'s bytes as
/// received) from `peer` arriving at `arrival`, copying each update's bytes once.
#[cfg(test)]
pub fn encode_wire<'a>(
    arrival: i64,
    peer: Option<IpAddr>,
    updates: impl Iterator<Item = &'a [u8]> + Clone,
) -> Vec<u8> {
    let mut payload = Vec::new();
    encode_wire_into(arrival, peer, updates, &mut payload);
    payload
}

/// The log record of a `LoggedBatch` of `updates` from `peer` arriving at `arrival`, framed
/// in place (`segment::begin_record`): each update's bytes are copied once, into the record
/// the log writes.
pub fn wire_record<'a>(
    arrival: i64,
    peer: Option<IpAddr>,
    updates: impl Iterator<Item = &'a [u8]> + Clone,
) -> Vec<u8> {
    let mut record = Vec::new();
    segment::begin_record(&mut record);
    encode_wire_into(arrival, peer, updates, &mut record);
    segment::end_record(&mut record);
    record
}

/// Appends the `LoggedBatch` of `updates` from `peer` arriving at `arrival` to `payload`.
fn encode_wire_into<'a>(
    arrival: i64,
    peer: Option<IpAddr>,
    updates: impl Iterator<Item = &'a [u8]> + Clone,
    payload: &mut Vec<u8>,
) {
    let peer = peer_octets(peer);
    let bytes: usize = updates.clone().map(|update| update.len() + 6).sum();
    payload.reserve(bytes + peer.len() + 16);
    if arrival != 0 {
        encode_key(ARRIVAL, WireType::Varint, payload);
        encode_varint(arrival as u64, payload);
    }
    if !peer.is_empty() {
        encode_key(PEER, WireType::LengthDelimited, payload);
        encode_varint(peer.len() as u64, payload);
        payload.extend_from_slice(&peer);
    }
    for update in updates {
        encode_key(UPDATES, WireType::LengthDelimited, payload);
        encode_varint(update.len() as u64, payload);
        payload.extend_from_slice(update);
    }
}

/// A logged batch read in place: its updates are slices of the record.
#[derive(Debug, PartialEq)]
pub struct BatchView<'a> {
    /// Arrival, in Unix seconds.
    pub arrival: i64,
    /// The peer's IP address, if the batch recorded one.
    pub peer: Option<IpAddr>,
    /// Each stored update's encoded `FlowUpdate`.
    pub updates: Vec<&'a [u8]>,
}

/// Reads a `LoggedBatch` record without decoding its updates; fields it does not know are
/// skipped, as prost does. An error says why the bytes are not a batch.
pub fn read_batch(mut bytes: &[u8]) -> Result<BatchView<'_>, String> {
    let error = |error: DecodeError| error.to_string();
    let mut view = BatchView {
        arrival: 0,
        peer: None,
        updates: Vec::new(),
    };
    while !bytes.is_empty() {
        let (tag, wire_type) = decode_key(&mut bytes).map_err(error)?;
        match (tag, wire_type) {
            (ARRIVAL, WireType::Varint) => {
                view.arrival = decode_varint(&mut bytes).map_err(error)? as i64
            }
            (PEER | UPDATES, WireType::LengthDelimited) => {
                let length = usize::try_from(decode_varint(&mut bytes).map_err(error)?)
                    .ok()
                    .filter(|length| *length <= bytes.len())
                    .ok_or("a field passes the record's end")?;
                let (field, rest) = bytes.split_at(length);
                bytes = rest;
                if tag == PEER {
                    view.peer = peer_of(field);
                } else {
                    view.updates.push(field);
                }
            }
            _ => skip_field(wire_type, tag, &mut bytes, DecodeContext::default()).map_err(error)?,
        }
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Flow;

    fn update(start_time: i64) -> FlowUpdate {
        FlowUpdate {
            flow: Some(Flow {
                start_time,
                end_time: start_time + 15,
                source_labels: vec!["app=web".into()],
                packets_in: 3,
                ..Flow::default()
            }),
        }
    }

    #[test]
    fn a_batch_written_from_wire_bytes_decodes_as_the_message_and_reads_back_in_place() {
        let peers = [
            Some(IpAddr::from([10, 0, 0, 7])),
            Some("fd00::1".parse().expect("an IPv6 address")),
            None,
        ];
        let updates = vec![update(1_700_000_100), FlowUpdate::default(), update(7)];
        let encoded: Vec<Vec<u8>> = updates.iter().map(Message::encode_to_vec).collect();
        for peer in peers {
            for arrival in [1_700_000_000, 0, -5] {
                let payload = encode_wire(arrival, peer, encoded.iter().map(Vec::as_slice));
                let decoded = LoggedBatch::decode(payload.as_slice()).expect("a batch decodes");
                assert_eq!(decoded.arrival, arrival);
                assert_eq!(decoded.peer(), peer);
                assert_eq!(decoded.updates, updates);
                let view = read_batch(&payload).expect("the batch reads in place");
                let expected = BatchView {
                    arrival,
                    peer,
                    updates: encoded.iter().map(Vec::as_slice).collect(),
                };
                assert_eq!(view, expected);
                assert_eq!(
                    read_batch(&decoded.encode_to_vec()).expect("prost's encoding reads"),
                    expected
                );
            }
        }
    }

    /// SPEC §13.1: what the log writes before a receipt is the batch as received.
    #[test]
    fn a_record_framed_in_place_is_the_batch_framed_as_the_log_frames_it() {
        let encoded: Vec<Vec<u8>> = [1_700_000_100, 1_700_000_115]
            .map(|start| update(start).encode_to_vec())
            .into();
        let peer = Some(IpAddr::from([10, 0, 0, 7]));
        let payload = encode_wire(42, peer, encoded.iter().map(Vec::as_slice));
        let mut framed = Vec::new();
        segment::frame(&payload, &mut framed);
        let record = wire_record(42, peer, encoded.iter().map(Vec::as_slice));
        assert_eq!(record, framed);
        assert_eq!(record.len(), payload.len() + segment::RECORD_OVERHEAD);
    }

    #[test]
    fn a_cut_batch_does_not_read_and_unknown_fields_are_skipped() {
        let encoded = update(1_700_000_100).encode_to_vec();
        let mut payload = encode_wire(9, None, [encoded.as_slice()].into_iter());
        assert!(read_batch(&payload[..payload.len() - 1]).is_err());
        encode_key(9, WireType::Varint, &mut payload);
        encode_varint(77, &mut payload);
        let view = read_batch(&payload).expect("an unknown field is skipped");
        assert_eq!(view.arrival, 9);
        assert_eq!(view.updates, [encoded.as_slice()]);
    }
}
