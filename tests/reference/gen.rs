//! Proptest strategies over the domain of `domain.rs`.

use eddy::proto::{Filter, PolicyMatch, PortMatch, StatisticsRequest, StringMatch};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::domain::{
    Bound, Case, Defect, KeySpec, Op, QuerySpec, Step, UpdateSpec, LABELS, PORTS, PROTOS, W,
};

/// Keys: enum fields include unspecified and unknown numbers (stored and echoed, SPEC §1.4).
fn key_spec() -> impl Strategy<Value = KeySpec> {
    let types = (select(vec![1, 3, 9]), select(vec![0, 1, 3]));
    (
        (0..4usize, 0..4usize),
        (0..4usize, 0..4usize),
        types,
        (0..PORTS.len(), 0..PROTOS.len(), any::<bool>()),
        (select(vec![0, 1, 2, 2]), select(vec![0, 1, 1, 2, 3, 7])),
        0..4usize,
    )
        .prop_map(
            |(names, namespaces, types, (port, proto, service), (reporter, action), trace)| {
                KeySpec {
                    names,
                    namespaces,
                    types,
                    port,
                    proto,
                    service,
                    reporter,
                    action,
                    trace,
                }
            },
        )
}

fn update_spec() -> impl Strategy<Value = UpdateSpec> {
    let start = prop_oneof![
        1 => (Just(true), -1..=1i64),
        4 => (Just(false), -2..=2i64),
    ];
    let defect = prop_oneof![
        12 => Just(Defect::None),
        1 => Just(Defect::NoKey),
        1 => Just(Defect::EndBeforeStart),
        1 => Just(Defect::NegativeCounter),
    ];
    let labels = (vec(0..LABELS.len(), 0..4), vec(0..LABELS.len(), 0..4));
    (
        (0..6usize, any::<u64>(), any::<bool>()),
        (start, 0..W, 0..40i64),
        prop::array::uniform7(0..50i64),
        labels,
        defect,
    )
        .prop_map(
            |(
                (key, shuffle, absent_trace),
                ((from_floor, buckets), second, duration),
                counters,
                labels,
                defect,
            )| {
                UpdateSpec {
                    key,
                    shuffle,
                    absent_trace,
                    from_floor,
                    buckets,
                    second,
                    duration,
                    counters,
                    labels,
                    defect,
                }
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let step = prop_oneof![
        4 => (1..=40i64).prop_map(Step::Seconds),
        4 => (1..=3i64).prop_map(Step::Windows),
        1 => Just(Step::PastRetention),
        1 => Just(Step::PastDedupHorizon),
    ];
    prop_oneof![
        5 => vec(update_spec(), 1..=10).prop_map(Op::Ingest),
        1 => any::<usize>().prop_map(Op::Replay),
        1 => any::<u64>().prop_map(Op::Bulk),
        3 => step.prop_map(Op::Advance),
    ]
}

fn one_or_two<T: Clone + std::fmt::Debug>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Vec<T>> {
    vec(s, 1..=2)
}

fn strings(values: &'static [&'static str]) -> impl Strategy<Value = Vec<StringMatch>> {
    one_or_two((select(values), 0..=1i32).prop_map(|(v, t)| StringMatch {
        value: v.into(),
        r#type: t,
    }))
}

fn policy_match() -> impl Strategy<Value = PolicyMatch> {
    (
        select(vec![0, 0, 0, 1, 2, 3, 6, 9, 10]),
        select(vec!["", "", "default", "security", "tenant", "hidden"]),
        select(vec!["", "", "", "shop", "-", "Global"]),
        select(vec![
            "",
            "",
            "allow-web",
            "deny-all",
            "np-db",
            "kns.shop",
            "np-hidden",
        ]),
        select(vec![0, 0, 1, 2, 3]),
    )
        .prop_map(|(kind, tier, namespace, name, action)| PolicyMatch {
            kind,
            tier: tier.into(),
            namespace: namespace.into(),
            name: name.into(),
            action,
        })
}

/// A filter constraining none, one or two of its ten fields (more rarely match anything).
fn filter() -> impl Strategy<Value = Filter> {
    const NAMES: &[&str] = &[
        "frontend",
        "pub",
        "pvt",
        "PUBLIC NETWORK",
        "CHECK",
        "net",
        "e",
        "",
    ];
    const NAMESPACES: &[&str] = &["shop", "-", "Global", "", "glob", "SHOP"];
    let full = (
        (strings(NAMES), strings(NAMES)),
        (strings(NAMESPACES), strings(NAMESPACES)),
        strings(&["TCP", "udp", "T"]),
        one_or_two(select(PORTS.to_vec()).prop_map(|port| PortMatch { port })),
        (one_or_two(select(vec![1, 2, 3, 7])), one_or_two(1..=3i32)),
        one_or_two(policy_match()),
        1..=2i32,
    )
        .prop_map(
            |((sn, dn), (sns, dns), protocols, ports, (actions, pending), policies, reporter)| {
                Filter {
                    source_names: sn,
                    source_namespaces: sns,
                    dest_names: dn,
                    dest_namespaces: dns,
                    protocols,
                    dest_ports: ports,
                    actions,
                    policies,
                    reporter,
                    pending_actions: pending,
                }
            },
        );
    let kept = prop_oneof![1 => vec(0..10usize, 0..=0), 3 => vec(0..10usize, 1..=1), 2 => vec(0..10usize, 2..=2)];
    (full, kept).prop_map(|(full, kept)| {
        let mut filter = Filter::default();
        for field in kept {
            match field {
                0 => filter.source_names = full.source_names.clone(),
                1 => filter.dest_names = full.dest_names.clone(),
                2 => filter.source_namespaces = full.source_namespaces.clone(),
                3 => filter.dest_namespaces = full.dest_namespaces.clone(),
                4 => filter.protocols = full.protocols.clone(),
                5 => filter.dest_ports = full.dest_ports.clone(),
                6 => filter.actions = full.actions.clone(),
                7 => filter.pending_actions = full.pending_actions.clone(),
                8 => filter.policies = full.policies.clone(),
                _ => filter.reporter = full.reporter,
            }
        }
        filter
    })
}

/// A lower bound (`older`) or an upper one: mostly valid ranges, sometimes inverted.
fn bound(older: bool) -> impl Strategy<Value = Bound> {
    let (relative, buckets) = if older {
        (1..=8 * W, -6..=1i64)
    } else {
        (1..=2 * W, -1..=3i64)
    };
    prop_oneof![
        3 => Just(Bound::Zero),
        1 => relative.prop_map(Bound::Relative),
        2 => (buckets, 0..W).prop_map(|(b, s)| Bound::Absolute(b, s)),
    ]
}

fn statistics() -> impl Strategy<Value = StatisticsRequest> {
    let policy_match = prop::option::of(policy_match());
    (0..=2i32, 0..=1i32, policy_match, any::<bool>()).prop_map(
        |(r#type, group_by, policy_match, time_series)| StatisticsRequest {
            r#type,
            group_by,
            policy_match,
            time_series,
            ..Default::default()
        },
    )
}

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    (
        filter(),
        (bound(true), bound(false)),
        vec(0..=6i32, 0..=2),
        0..=2i64,
        (0..=2i64, select(vec![0i64, 1, 3])),
        statistics(),
    )
        .prop_map(
            |(filter, (gte, lt), sort_by, intervals, (page, page_size), statistics)| QuerySpec {
                filter,
                gte,
                lt,
                sort_by,
                intervals,
                page,
                page_size,
                statistics,
            },
        )
}

/// A case: retention of a few buckets (much expiry) or of more than the dedup horizon.
pub fn case() -> impl Strategy<Value = Case> {
    (
        select(vec![3i64, 30]),
        vec(key_spec(), 2..=6),
        vec((op(), query_spec()), 1..=12),
    )
        .prop_map(|(closed_buckets, keys, ops)| Case {
            closed_buckets,
            keys,
            ops,
        })
}
