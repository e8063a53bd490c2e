//! Canonical forms: policy traces sorted as SPEC §3.2 orders them, label sets as sorted sets
//! (SPEC §3.4), and the flow id derived from the canonical key (SPEC §3.6).

use std::borrow::Cow;
use std::cmp::Ordering;

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::proto::{FlowKey, PolicyHit, PolicyTrace};

/// Orders hits by (policy_index, rule_index, tier, kind, namespace, name, action, trigger);
/// an absent trigger sorts first, a present one compares the same way.
pub fn compare_hits(a: &PolicyHit, b: &PolicyHit) -> Ordering {
    a.policy_index
        .cmp(&b.policy_index)
        .then(a.rule_index.cmp(&b.rule_index))
        .then_with(|| a.tier.as_bytes().cmp(b.tier.as_bytes()))
        .then(a.kind.cmp(&b.kind))
        .then_with(|| a.namespace.as_bytes().cmp(b.namespace.as_bytes()))
        .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
        .then(a.action.cmp(&b.action))
        .then_with(|| match (&a.trigger, &b.trigger) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(a), Some(b)) => compare_hits(a, b),
        })
}

/// The trace with both hit lists in canonical order.
pub fn canonical_trace(mut trace: PolicyTrace) -> PolicyTrace {
    trace.enforced_policies.sort_by(compare_hits);
    trace.pending_policies.sort_by(compare_hits);
    trace
}

/// The protobuf encoding of the canonical form of `trace` (absent is empty). A trace that is
/// already in canonical order, as most senders keep it, is encoded without a copy.
pub fn canonical_trace_bytes(trace: Option<&PolicyTrace>) -> Vec<u8> {
    let Some(trace) = trace else {
        return Vec::new();
    };
    let in_order = |hits: &[PolicyHit]| hits.is_sorted_by(|a, b| compare_hits(a, b).is_le());
    if in_order(&trace.enforced_policies) && in_order(&trace.pending_policies) {
        prost::Message::encode_to_vec(trace)
    } else {
        prost::Message::encode_to_vec(&canonical_trace(trace.clone()))
    }
}

/// Labels as a set: sorted by bytes, duplicates removed. Borrowed when already a set.
pub fn label_set(labels: &[String]) -> Cow<'_, [String]> {
    if labels.windows(2).all(|pair| pair[0] < pair[1]) {
        return Cow::Borrowed(labels);
    }
    let mut set = labels.to_vec();
    set.sort_unstable();
    set.dedup();
    Cow::Owned(set)
}

/// A positive 63-bit id from every key field and the canonical trace's encoding. The same
/// key gives the same id in every process and across restarts.
pub fn flow_id(key: &FlowKey, canonical_trace: &[u8]) -> u64 {
    flow_id_of(
        [
            &key.source_name,
            &key.source_namespace,
            &key.dest_name,
            &key.dest_namespace,
            &key.dest_service_name,
            &key.dest_service_namespace,
            &key.dest_service_port_name,
            &key.proto,
        ],
        [
            i64::from(key.source_type),
            i64::from(key.dest_type),
            key.dest_port,
            key.dest_service_port,
            i64::from(key.reporter),
            i64::from(key.action),
        ],
        canonical_trace,
    )
}

/// [`flow_id`] from a key's fields: its texts (source name and namespace, destination name
/// and namespace, service name, namespace and port name, protocol) and its numbers (source
/// and destination type, destination port, service port, reporter, action), in that order.
pub fn flow_id_of(texts: [&str; 8], numbers: [i64; 6], canonical_trace: &[u8]) -> u64 {
    let mut hasher = Xxh3::new();
    lay_out(texts, numbers, canonical_trace, |bytes| {
        hasher.update(bytes)
    });
    positive(hasher.digest())
}

/// [`flow_id_of`] with the fields laid out in `buffer` (cleared first) and hashed in one
/// call: the same id (XXH3 of a stream is XXH3 of its bytes at once), for callers deriving
/// many ids in a row (recovery), without the streaming hasher's work per field.
pub fn flow_id_in(
    texts: [&str; 8],
    numbers: [i64; 6],
    canonical_trace: &[u8],
    buffer: &mut Vec<u8>,
) -> u64 {
    buffer.clear();
    lay_out(texts, numbers, canonical_trace, |bytes| {
        buffer.extend_from_slice(bytes)
    });
    positive(xxh3_64(buffer))
}

/// Hands `emit` the bytes a flow id hashes, in order: each text's length and bytes, each
/// number, the canonical trace.
fn lay_out(
    texts: [&str; 8],
    numbers: [i64; 6],
    canonical_trace: &[u8],
    mut emit: impl FnMut(&[u8]),
) {
    for text in texts {
        emit(&(text.len() as u64).to_le_bytes());
        emit(text.as_bytes());
    }
    for number in numbers {
        emit(&number.to_le_bytes());
    }
    emit(canonical_trace);
}

/// A hash as a flow id: its low 63 bits, 1 for 0.
fn positive(hash: u64) -> u64 {
    match hash & (i64::MAX as u64) {
        0 => 1,
        id => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(policy_index: i64, rule_index: i64, name: &str) -> PolicyHit {
        PolicyHit {
            name: name.into(),
            policy_index,
            rule_index,
            ..Default::default()
        }
    }

    #[test]
    fn the_id_hashed_at_once_is_the_streamed_one() {
        let mut buffer = vec![7; 3];
        for (texts, numbers, trace) in [
            (
                ["web-1", "shop", "db-2", "data", "db", "data", "pg", "tcp"],
                [1, 1, 5432, 5432, 2, 1],
                &b"\x0a\x04deny"[..],
            ),
            ([""; 8], [0; 6], &[][..]),
        ] {
            let streamed = flow_id_of(texts, numbers, trace);
            assert_eq!(flow_id_in(texts, numbers, trace, &mut buffer), streamed);
        }
        assert_eq!(
            flow_id_of([""; 8], [0; 6], &[]),
            positive(xxh3_64(&[0; 8 * 8 + 6 * 8]))
        );
    }

    #[test]
    fn hits_in_any_order_give_one_trace_and_one_id() {
        let forward = PolicyTrace {
            enforced_policies: vec![hit(0, 1, "a"), hit(1, 0, "b")],
            pending_policies: vec![],
        };
        let backward = PolicyTrace {
            enforced_policies: vec![hit(1, 0, "b"), hit(0, 1, "a")],
            pending_policies: vec![],
        };
        let forward = canonical_trace(forward);
        assert_eq!(forward, canonical_trace(backward));
        assert_eq!(forward.enforced_policies[0].name, "a");
        let key = FlowKey::default();
        let encoded = prost::Message::encode_to_vec(&forward);
        assert_eq!(flow_id(&key, &encoded), flow_id(&key, &encoded));
        assert_ne!(flow_id(&key, &encoded), flow_id(&key, &[]));
    }

    #[test]
    fn a_trace_in_order_encodes_like_its_canonical_copy() {
        let shuffled = PolicyTrace {
            enforced_policies: vec![hit(1, 0, "b"), hit(0, 1, "a")],
            pending_policies: vec![hit(2, 0, "c")],
        };
        let ordered = canonical_trace(shuffled.clone());
        assert_eq!(
            canonical_trace_bytes(Some(&shuffled)),
            canonical_trace_bytes(Some(&ordered))
        );
        assert_eq!(
            canonical_trace_bytes(Some(&ordered)),
            prost::Message::encode_to_vec(&ordered)
        );
        assert!(canonical_trace_bytes(None).is_empty());
        assert!(canonical_trace_bytes(Some(&PolicyTrace::default())).is_empty());
    }

    #[test]
    fn label_sets_are_sorted_and_unique_whatever_the_input() {
        let labels = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        assert!(matches!(label_set(&labels(&["a", "b"])), Cow::Borrowed(_)));
        assert_eq!(
            &*label_set(&labels(&["b", "a", "b"])),
            &labels(&["a", "b"])[..]
        );
    }

    #[test]
    fn absent_trigger_sorts_before_present() {
        let mut with_trigger = hit(0, 0, "x");
        with_trigger.trigger = Some(Box::new(hit(0, 0, "t")));
        let without = hit(0, 0, "x");
        assert_eq!(compare_hits(&without, &with_trigger), Ordering::Less);
    }
}
