//! The borrowed ingest path against prost (SPEC §9.3, §10.1): on random encoded updates, with
//! unknown fields, repeated and misplaced fields, invalid UTF-8 and truncations, the borrowed
//! reader refuses only what prost refuses and reads the same values (prost alone refusing only
//! for the key or a label's text, which the reader leaves to it), and a `Connect` call's
//! remembering preparation gives the same record, skip reason or error as decoding with prost
//! and preparing, update after update. Remembered ids stay valid across the catalog collector's
//! removals.

use eddy::catalog::{Catalog, CatalogLimits};
use eddy::ingest::connection::{ConnectionIngest, Refused};
use eddy::ingest::wire::{read_update, Side, WireError};
use eddy::ingest::{prepare, Bounds, InputLimits, NotPrepared};
use eddy::proto::{Flow, FlowKey, FlowUpdate, PolicyHit, PolicyTrace};
use eddy::retention::Retention;
use proptest::prelude::*;
use prost::Message;

const NOW: i64 = 1_700_000_000;
const WINDOW: i64 = 15;

fn retention() -> Retention {
    Retention {
        window: WINDOW,
        closed_buckets: 240,
    }
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One field of an encoded message, as the generator writes it.
#[derive(Clone, Debug)]
enum Field {
    Varint(u32, u64),
    Bytes(u32, Vec<u8>),
    Fixed32(u32),
    Fixed64(u32),
    /// A group holding one varint field, closed with the right or a wrong end tag.
    Group(u32, bool),
    /// Raw bytes, whatever they are.
    Raw(Vec<u8>),
}

fn write(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields {
        match field {
            Field::Varint(tag, value) => {
                varint(u64::from(*tag) << 3, &mut out);
                varint(*value, &mut out);
            }
            Field::Bytes(tag, bytes) => {
                varint((u64::from(*tag) << 3) | 2, &mut out);
                varint(bytes.len() as u64, &mut out);
                out.extend_from_slice(bytes);
            }
            Field::Fixed32(tag) => {
                varint((u64::from(*tag) << 3) | 5, &mut out);
                out.extend_from_slice(&[1, 2, 3, 4]);
            }
            Field::Fixed64(tag) => {
                varint((u64::from(*tag) << 3) | 1, &mut out);
                out.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
            }
            Field::Group(tag, closed_right) => {
                varint((u64::from(*tag) << 3) | 3, &mut out);
                varint(1 << 3, &mut out);
                varint(7, &mut out);
                let end = if *closed_right { *tag } else { *tag + 1 };
                varint((u64::from(end) << 3) | 4, &mut out);
            }
            Field::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }
    out
}

fn text() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "a", "b", "web-1", "kube-system", "tcp", "é"])
        .prop_map(str::to_string)
}

fn hit() -> impl Strategy<Value = PolicyHit> {
    (
        0..4i32,
        text(),
        text(),
        text(),
        0..4i32,
        -1..3i64,
        -1..3i64,
        any::<bool>(),
    )
        .prop_map(
            |(kind, namespace, name, tier, action, policy_index, rule_index, triggered)| {
                PolicyHit {
                    kind,
                    namespace: namespace.clone(),
                    name: name.clone(),
                    tier: tier.clone(),
                    action,
                    policy_index,
                    rule_index,
                    trigger: triggered.then(|| {
                        Box::new(PolicyHit {
                            kind: 1,
                            name,
                            namespace,
                            tier,
                            ..PolicyHit::default()
                        })
                    }),
                }
            },
        )
}

fn key() -> impl Strategy<Value = FlowKey> {
    (
        (text(), text(), 0..6i32, text(), text(), -1..6i32),
        (0..3i64, text(), text(), text(), 0..3i64, text()),
        (0..4i32, 0..4i32),
        prop::option::of((
            prop::collection::vec(hit(), 0..3),
            prop::collection::vec(hit(), 0..2),
        )),
    )
        .prop_map(
            |(
                (source_name, source_namespace, source_type, dest_name, dest_namespace, dest_type),
                (dest_port, service, service_ns, port_name, service_port, proto),
                (reporter, action),
                trace,
            )| FlowKey {
                source_name,
                source_namespace,
                source_type,
                dest_name,
                dest_namespace,
                dest_type,
                dest_port,
                dest_service_name: service,
                dest_service_namespace: service_ns,
                dest_service_port_name: port_name,
                dest_service_port: service_port,
                proto,
                reporter,
                action,
                policies: trace.map(|(enforced_policies, pending_policies)| PolicyTrace {
                    enforced_policies,
                    pending_policies,
                }),
            },
        )
}

fn label() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(vec!["a=1", "b=2", "c=3", "app=web"]).prop_map(|l| l.as_bytes().to_vec()),
        1 => Just(vec![0xff, 0xfe]),
    ]
}

/// A field of a `Flow`: mostly the right ones, sometimes misplaced, unknown or broken.
fn flow_field(key_bytes: Vec<u8>) -> impl Strategy<Value = Field> {
    prop_oneof![
        4 => Just(Field::Bytes(1, key_bytes)),
        4 => (2..=12u32, prop_oneof![Just(0u64), 1..2_000u64, Just(u64::MAX), Just(NOW as u64)])
            .prop_filter("labels are bytes", |(tag, _)| *tag != 4 && *tag != 5)
            .prop_map(|(tag, value)| Field::Varint(tag, value)),
        4 => (4..=5u32, label()).prop_map(|(tag, bytes)| Field::Bytes(tag, bytes)),
        1 => (1..=12u32).prop_map(Field::Fixed32),
        1 => (13..40u32, any::<u64>()).prop_map(|(tag, value)| Field::Varint(tag, value)),
        1 => (13..40u32).prop_map(Field::Fixed64),
        1 => (13..40u32, any::<bool>()).prop_map(|(tag, right)| Field::Group(tag, right)),
        1 => prop::collection::vec(any::<u8>(), 1..4).prop_map(Field::Raw),
    ]
}

/// An encoded update: a flow of random fields, sometimes unknown or broken top-level fields,
/// sometimes truncated.
fn encoded_update() -> impl Strategy<Value = Vec<u8>> {
    key()
        .prop_flat_map(|key| {
            let key_bytes = key.encode_to_vec();
            (
                prop::collection::vec(flow_field(key_bytes), 0..12),
                prop::collection::vec(
                    prop_oneof![
                        (2..20u32, any::<u64>()).prop_map(|(tag, value)| Field::Varint(tag, value)),
                        (2..20u32, any::<bool>()).prop_map(|(tag, right)| Field::Group(tag, right)),
                        prop::collection::vec(any::<u8>(), 1..3).prop_map(Field::Raw),
                    ],
                    0..2,
                ),
                1..3usize,
                prop::option::of(0..1000usize),
            )
        })
        .prop_map(|(flow, top, flows, cut)| {
            let body = write(&flow);
            let mut fields = vec![Field::Bytes(1, body); flows - 1];
            fields.extend(top);
            fields.push(Field::Bytes(1, write(&flow)));
            fields.rotate_right(1);
            let mut bytes = write(&fields);
            if let Some(cut) = cut {
                bytes.truncate(cut.min(bytes.len()));
            }
            bytes
        })
}

/// An update of realistic shape with the given key and counters, encoded.
fn realistic(
    key: FlowKey,
    labels: (Vec<String>, Vec<String>),
    start: i64,
    packets: i64,
) -> Vec<u8> {
    FlowUpdate {
        flow: Some(Flow {
            key: Some(key),
            start_time: start,
            end_time: start + WINDOW,
            source_labels: labels.0,
            dest_labels: labels.1,
            packets_in: packets,
            bytes_in: packets * 700,
            ..Flow::default()
        }),
    }
    .encode_to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_reader_refuses_only_what_prost_refuses_and_reads_the_same(bytes in encoded_update()) {
        let decoded = FlowUpdate::decode(&bytes[..]);
        match read_update(&bytes) {
            Err(WireError::Malformed) => prop_assert!(decoded.is_err(), "prost accepted {:?}", bytes),
            Err(WireError::Merge) => {}
            Ok(view) => {
                let Ok(update) = decoded else {
                    // The reader leaves the key and the labels' text to prost.
                    let flow = view.flow.expect("prost refuses only what is inside a flow");
                    let bad_label = [Side::Source, Side::Dest]
                        .iter()
                        .any(|side| flow.labels(*side).any(|label| std::str::from_utf8(label).is_err()));
                    let bad_key = flow.key.is_some_and(|key| FlowKey::decode(key).is_err());
                    prop_assert!(bad_label || bad_key, "prost refused {:?}", bytes);
                    return Ok(());
                };
                prop_assert_eq!(view.flow.is_some(), update.flow.is_some());
                if let (Some(view), Some(flow)) = (view.flow, update.flow) {
                    prop_assert_eq!(view.start_time, flow.start_time);
                    prop_assert_eq!(view.end_time, flow.end_time);
                    prop_assert_eq!(view.counters, [
                        flow.packets_in, flow.packets_out, flow.bytes_in, flow.bytes_out,
                        flow.num_connections_started, flow.num_connections_completed,
                        flow.num_connections_live,
                    ]);
                    let labels = |side| view.labels(side).map(<[u8]>::to_vec).collect::<Vec<_>>();
                    let as_bytes = |labels: &[String]| labels.iter().map(|l| l.as_bytes().to_vec()).collect::<Vec<_>>();
                    prop_assert_eq!(labels(Side::Source), as_bytes(&flow.source_labels));
                    prop_assert_eq!(labels(Side::Dest), as_bytes(&flow.dest_labels));
                    let key = view.key.map(FlowKey::decode).transpose()
                        .map_err(|e| TestCaseError::fail(format!("the key does not decode: {e}")))?;
                    prop_assert_eq!(key, flow.key);
                }
            }
        }
    }

    #[test]
    fn a_call_prepares_every_update_as_prost_and_prepare_do(
        updates in prop::collection::vec(
            prop_oneof![
                3 => (key(), 0..3usize, 0..4i64, 0..3i64).prop_map(|(key, labels, bucket, packets)| {
                    let sets = [vec![], vec!["b=2".to_string(), "a=1".to_string()], vec!["a=1".to_string(), "a=1".to_string()]];
                    let start = NOW - WINDOW * (bucket + 1);
                    realistic(key, (sets[labels].clone(), sets[2 - labels].clone()), start, packets - 1)
                }),
                1 => encoded_update(),
            ],
            1..30,
        ),
        repeats in 1..3usize,
    ) {
        let limits = InputLimits { field_bytes: 8, ..InputLimits::default() };
        let retention = retention();
        let bounds = Bounds { retention: &retention, limits: &limits, now: NOW };
        let by_prost = Catalog::new(CatalogLimits::default());
        let by_call = Catalog::new(CatalogLimits::default());
        let mut call = ConnectionIngest::new();
        for bytes in updates.iter().cycle().take(updates.len() * repeats) {
            let expected = FlowUpdate::decode(&bytes[..]).map(|update| {
                let times = update.flow.as_ref().map_or((0, 0), |f| (f.start_time, f.end_time));
                prepare(&update, &by_prost, bounds).map(|record| (record, times))
            });
            let got = call.prepare(bytes, &by_call, bounds);
            match (expected, got) {
                (Err(_), Err(Refused::Malformed(_))) => {}
                (Ok(Ok((record, times))), Ok(prepared)) => {
                    prop_assert_eq!(prepared.record, record);
                    prop_assert_eq!((prepared.start_time, prepared.end_time), times);
                }
                (Ok(Err(reason)), Err(Refused::NotPrepared(got))) => prop_assert_eq!(got, reason),
                (expected, got) => prop_assert!(false, "prost and prepare: {:?}; the call: {:?}", expected, got),
            }
        }
    }
}

#[test]
fn remembered_ids_are_checked_again_after_the_collector_removes_entries() {
    let retention = retention();
    let limits = InputLimits::default();
    let bounds = Bounds {
        retention: &retention,
        limits: &limits,
        now: NOW,
    };
    let catalog = Catalog::new(CatalogLimits::default());
    let mut call = ConnectionIngest::new();
    let key = FlowKey {
        source_name: "web-1".into(),
        dest_name: "db-1".into(),
        proto: "tcp".into(),
        ..FlowKey::default()
    };
    let labels = (vec!["app=web".to_string()], vec![]);
    let start = NOW - 2 * WINDOW;
    let first = call
        .prepare(
            &realistic(key.clone(), labels.clone(), start, 1),
            &catalog,
            bounds,
        )
        .expect("a valid update");
    let again = call
        .prepare(
            &realistic(key.clone(), labels.clone(), start, 2),
            &catalog,
            bounds,
        )
        .expect("a valid update");
    assert_eq!(call.remembered(), 1);
    assert_eq!(again.record.key, first.record.key);
    assert_eq!(again.record.stats.packets_in, 2);

    // A round begins and the collector removes the source name and the label set, which no
    // retained flow uses; a second call did not use them in this round either.
    let (round, _) = catalog.begin_round();
    let name = first.record.key.source_name;
    assert_eq!(
        catalog.symbols.table().remove_unused(&[name], round),
        vec![name]
    );
    let set = first.record.labels.0;
    assert_eq!(catalog.label_sets.remove_unused(&[set], round), vec![set]);

    let after = call
        .prepare(
            &realistic(key.clone(), labels.clone(), start, 3),
            &catalog,
            bounds,
        )
        .expect("a valid update");
    assert!(
        after.record.key.source_name > name,
        "a new id, never the old one"
    );
    assert_eq!(
        catalog.symbols.resolve(after.record.key.source_name),
        "web-1"
    );
    assert!(after.record.labels.0 > set);
    assert_eq!(catalog.label_set(after.record.labels.0), vec!["app=web"]);
    assert_eq!(after.record.key.dest_name, first.record.key.dest_name);

    // Used again in this round, the entries are stamped with it: the collector keeps them.
    let (round, _) = catalog.begin_round();
    call.prepare(&realistic(key, labels, start, 4), &catalog, bounds)
        .expect("a valid update");
    let dest = after.record.key.dest_name;
    assert_eq!(
        catalog.symbols.table().remove_unused(&[dest], round),
        Vec::<u32>::new()
    );
    assert_eq!(
        call.prepare(&[0x0a, 0x02, 0x12, 0x00], &catalog, bounds)
            .map(|prepared| prepared.record),
        Err(Refused::Malformed(
            FlowUpdate::decode(&[0x0a, 0x02, 0x12, 0x00][..]).expect_err("a misplaced field")
        ))
    );
    assert!(matches!(
        call.prepare(&[], &catalog, bounds),
        Err(Refused::NotPrepared(NotPrepared::Skipped(_)))
    ));
}
