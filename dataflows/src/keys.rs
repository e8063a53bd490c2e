//! Which worker owns a flow: the one its records are inserted on and its key and rows are held
//! on (`flow_table`), chosen by the flow's connection so that nothing is shared between
//! workers and the same commands could be sequenced across processes. Every flow of one
//! connection has the same owner, so a view grouping flows by connection reads them on one
//! worker (`views::derived`).

use crate::model::{FlowKey, Sym};

/// The worker (of `peers`) that owns the flow of `key`: the one its records, rows and key live
/// on. Chosen by the flow's connection ([`connection_of`]), so the flows of one connection
/// (both reporters, every action, service and protocol) share a worker.
pub fn owner_of(key: &FlowKey, peers: usize) -> usize {
    let (source_namespace, source_name, dest_namespace, dest_name, port) = connection_of(key);
    let source = u64::from(source_namespace) << 32 | u64::from(source_name);
    let dest = u64::from(dest_namespace) << 32 | u64::from(dest_name);
    let mixed = mix(source ^ mix(dest ^ mix(port as u64)));
    (mixed % peers.max(1) as u64) as usize
}

/// A flow's connection: source namespace and name, destination namespace and name,
/// destination port.
pub type Connection = (Sym, Sym, Sym, Sym, i64);

/// The connection of the flow of `key`.
pub fn connection_of(key: &FlowKey) -> Connection {
    (
        key.source_namespace,
        key.source_name,
        key.dest_namespace,
        key.dest_name,
        key.dest_port,
    )
}

/// SplitMix64's finalizer: every bit of `value` reaches every bit of the result, so the
/// remainder by any worker count is spread evenly.
fn mix(value: u64) -> u64 {
    let mut mixed = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_key, FlowId};

    fn key(id: FlowId, dest_namespace: u32) -> FlowKey {
        test_key(id, 2, dest_namespace)
    }

    #[test]
    fn the_flows_of_one_connection_share_an_owner_and_connections_spread_evenly() {
        let mut counts = [0_usize; 3];
        for name in 0..3_000 {
            let mut source = key(u64::from(name), 10);
            source.source_name = name;
            let mut destination = source;
            destination.id += 100_000;
            destination.reporter = 2;
            destination.action = 2;
            destination.proto = 99;
            assert_eq!(owner_of(&source, 3), owner_of(&destination, 3));
            counts[owner_of(&source, 3)] += 1;
            assert_eq!(owner_of(&source, 1), 0);
            assert_eq!(owner_of(&source, 0), 0);
        }
        assert!(
            counts.iter().all(|count| (900..1_100).contains(count)),
            "{counts:?}"
        );
    }
}
