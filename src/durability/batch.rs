//! What one write-ahead log record holds: the updates one `Connect` batch stored (after
//! validation and de-duplication), when they arrived and from which peer, so recovery can
//! rebuild both the views and the de-duplication windows (SPEC §9.4, §13.2).

use std::net::IpAddr;

use prost::Message;

use crate::proto::FlowUpdate;

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
    /// A batch of `updates` from `peer` arriving at `arrival`.
    pub fn new(arrival: i64, peer: Option<IpAddr>, updates: Vec<FlowUpdate>) -> Self {
        let peer = match peer {
            Some(IpAddr::V4(ip)) => ip.octets().to_vec(),
            Some(IpAddr::V6(ip)) => ip.octets().to_vec(),
            None => Vec::new(),
        };
        LoggedBatch {
            arrival,
            peer,
            updates,
        }
    }

    /// The peer's IP address, if the batch recorded one.
    pub fn peer(&self) -> Option<IpAddr> {
        if let Ok(octets) = <[u8; 4]>::try_from(self.peer.as_slice()) {
            return Some(IpAddr::from(octets));
        }
        <[u8; 16]>::try_from(self.peer.as_slice())
            .ok()
            .map(IpAddr::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_survives_encoding_with_its_peer() {
        let peers = [
            Some(IpAddr::from([10, 0, 0, 7])),
            Some("fd00::1".parse().expect("an IPv6 address")),
            None,
        ];
        for peer in peers {
            let batch = LoggedBatch::new(1_700_000_000, peer, vec![FlowUpdate::default()]);
            let decoded =
                LoggedBatch::decode(batch.encode_to_vec().as_slice()).expect("a batch decodes");
            assert_eq!(decoded, batch);
            assert_eq!(decoded.peer(), peer);
        }
    }
}
