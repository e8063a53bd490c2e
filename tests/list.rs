//! Flows.List through gRPC against a real server: flow identity and aggregation (SPEC §3),
//! time ranges (§2.5, §2.6), per-window results (§4.2), sorting (§4.3) and paging (§4.4).
//!
//! Every server runs on a manual clock at `NOW` = 1_700_000_107, so the current bucket is
//! `C` = 1_700_000_100, the future bucket `C + 15`, and the oldest retained bucket `C - 3600`.
//! Most flows carry a distinct `packets_in` "tag" so a result's tag says which updates it
//! aggregated.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use eddy::proto::{
    Action, EndpointType, Filter, Flow, FlowKey, FlowListRequest, FlowListResult, FlowResult,
    ListMetadata, PolicyKind, PolicyTrace, Reporter, SortBy,
};

/// The current bucket, `B(NOW)`.
const C: i64 = 1_700_000_100;
/// The oldest retained bucket: 240 closed buckets before the current one.
const OLDEST: i64 = C - 240 * WINDOW;

fn request(gte: i64, lt: i64) -> FlowListRequest {
    FlowListRequest {
        start_time_gte: gte,
        start_time_lt: lt,
        ..Default::default()
    }
}

fn sorted(sorts: &[SortBy]) -> FlowListRequest {
    FlowListRequest {
        sort_by: sorts.iter().map(|s| sort_by(*s)).collect(),
        ..Default::default()
    }
}

fn paged(page: i64, page_size: i64) -> FlowListRequest {
    FlowListRequest {
        page,
        page_size,
        ..Default::default()
    }
}

fn meta(result: &FlowListResult) -> (i64, i64) {
    let meta: &ListMetadata = result.meta.as_ref().expect("meta is set");
    (meta.total_results, meta.total_pages)
}

/// The `packets_in` of every result, in the order returned.
fn tags(result: &FlowListResult) -> Vec<i64> {
    result.flows.iter().map(|f| flow_of(f).packets_in).collect()
}

/// (start_time, end_time, packets_in) of every result, in the order returned.
fn spans(result: &FlowListResult) -> Vec<(i64, i64, i64)> {
    result
        .flows
        .iter()
        .map(|f| {
            let flow = flow_of(f);
            (flow.start_time, flow.end_time, flow.packets_in)
        })
        .collect()
}

/// A flow whose seven counters are `n` times 1..=7, with the given labels.
fn counted(key: &FlowKey, start: i64, n: i64, source: &[&str], dest: &[&str]) -> Flow {
    Flow {
        key: Some(key.clone()),
        start_time: start,
        end_time: start + 5,
        source_labels: strings(source),
        dest_labels: strings(dest),
        packets_in: n,
        packets_out: 2 * n,
        bytes_in: 3 * n,
        bytes_out: 4 * n,
        num_connections_started: 5 * n,
        num_connections_completed: 6 * n,
        num_connections_live: 7 * n,
    }
}

fn assert_counters(flow: &Flow, n: i64) {
    assert_eq!(
        [
            flow.packets_in,
            flow.packets_out,
            flow.bytes_in,
            flow.bytes_out,
            flow.num_connections_started,
            flow.num_connections_completed,
            flow.num_connections_live,
        ],
        [n, 2 * n, 3 * n, 4 * n, 5 * n, 6 * n, 7 * n]
    );
}

#[test]
fn the_constants_match_the_harness_clock() {
    assert_eq!(C, bucket(NOW));
    assert_eq!(C % WINDOW, 0);
    assert_eq!(OLDEST, 1_699_996_500);
}

// ---------------------------------------------------------------------------------------------
// §3: identity and aggregation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_of_one_key_from_two_nodes_sum_counters_and_intersect_labels() {
    let server = TestServer::start(2).await;
    let forward = key(("shop", "frontend"), ("shop", "checkout"));
    let mut backward = forward.clone();
    backward.source_name = "frontend-2".into();

    // Four updates over buckets C-30 and C-15. Source labels share `app=web` and the comma
    // label `team=a,b`; dest labels share `Beta`, `Zeta`, `alpha` (byte order puts
    // upper case first).
    let updates = |k: &FlowKey| {
        (
            vec![
                counted(
                    k,
                    C - 29,
                    1,
                    &["app=web", "team=a,b", "zone=eu"],
                    &["Zeta", "alpha", "Beta", "x=1"],
                ),
                counted(
                    k,
                    C - 16,
                    10,
                    &["zone=eu", "team=a,b", "app=web", "extra"],
                    &["alpha", "Zeta", "Beta"],
                ),
            ],
            vec![
                counted(
                    k,
                    C - 13,
                    100,
                    &["team=a,b", "app=web", "zone=us"],
                    &["Beta", "alpha", "Zeta", "y"],
                ),
                counted(
                    k,
                    C - 25,
                    1000,
                    &["app=web", "team=a,b", "zone=eu"],
                    &["alpha", "Beta", "Zeta"],
                ),
            ],
        )
    };
    // The first key arrives node A then node B, concurrently on two connections.
    let (node_a, node_b) = updates(&forward);
    tokio::join!(server.ingest(node_a), server.ingest(node_b));
    // The second key arrives in the opposite order, one update at a time.
    let (node_a, node_b) = updates(&backward);
    for update in node_b.into_iter().rev().chain(node_a.into_iter().rev()) {
        server.ingest(vec![update]).await;
    }

    let listed = list_ok(&server, sorted(&[SortBy::SourceName])).await;
    assert_eq!(meta(&listed), (2, 1));
    assert_eq!(listed.flows.len(), 2);
    for (result, name) in listed.flows.iter().zip(["frontend", "frontend-2"]) {
        let flow = flow_of(result);
        assert_eq!(key_of(result).source_name, name);
        assert_counters(flow, 1111);
        assert_eq!(flow.start_time, C - 30);
        assert_eq!(flow.end_time, C);
        assert_eq!(flow.source_labels, strings(&["app=web", "team=a,b"]));
        assert_eq!(flow.dest_labels, strings(&["Beta", "Zeta", "alpha"]));
    }

    // Only bucket C-15: one update per key, so its labels come back whole and sorted.
    let newest = list_ok(
        &server,
        FlowListRequest {
            start_time_gte: C - 15,
            start_time_lt: C,
            sort_by: vec![sort_by(SortBy::SourceName)],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(newest.flows.len(), 2);
    for result in &newest.flows {
        let flow = flow_of(result);
        assert_counters(flow, 100);
        assert_eq!((flow.start_time, flow.end_time), (C - 15, C));
        assert_eq!(
            flow.source_labels,
            strings(&["app=web", "team=a,b", "zone=us"])
        );
        assert_eq!(flow.dest_labels, strings(&["Beta", "Zeta", "alpha", "y"]));
    }
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_without_labels_empties_the_intersection() {
    let server = TestServer::start(1).await;
    let k = key(("shop", "frontend"), ("shop", "checkout"));
    let labelled = |start: i64, tag: i64, source: &[&str], dest: &[&str]| {
        let mut f = flow(k.clone(), start, tag);
        f.source_labels = strings(source);
        f.dest_labels = strings(dest);
        f
    };
    server
        .ingest(vec![
            labelled(C - 20, 1, &["b", "a", "a"], &["x"]),
            labelled(C - 19, 2, &["a", "b"], &[]),
        ])
        .await;
    let listed = server.list_all().await;
    assert_eq!(listed.len(), 1);
    let flow = flow_of(&listed[0]);
    assert_eq!(flow.packets_in, 3);
    // Labels are sets: the duplicate "a" collapses; the second update has no dest labels.
    assert_eq!(flow.source_labels, strings(&["a", "b"]));
    assert!(flow.dest_labels.is_empty());
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_intersected_over_retained_buckets_only() {
    let server = TestServer::start(2).await;
    let k = key(("shop", "frontend"), ("shop", "checkout"));
    let mut oldest = flow(k.clone(), OLDEST + 2, 1);
    oldest.dest_labels = strings(&["app=checkout"]);
    let mut recent = flow(k, C - 14, 2);
    recent.dest_labels = strings(&["app=checkout", "version=2"]);
    server.ingest(vec![oldest, recent]).await;
    let before = server.list_all().await;
    assert_eq!(before.len(), 1);
    assert_eq!(flow_of(&before[0]).dest_labels, strings(&["app=checkout"]));
    assert_eq!(flow_of(&before[0]).start_time, OLDEST);

    // The oldest bucket leaves retention (SPEC §2.3): its counters and labels are retracted.
    server.advance_clock(WINDOW).await;
    let after = server.list_all().await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, before[0].id);
    let flow = flow_of(&after[0]);
    assert_eq!(flow.packets_in, 2);
    assert_eq!((flow.start_time, flow.end_time), (C - 15, C));
    assert_eq!(flow.dest_labels, strings(&["app=checkout", "version=2"]));
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_differ_in_any_field_or_in_their_trace_stay_distinct() {
    let server = TestServer::start(2).await;
    let base = key(("shop", "frontend"), ("shop", "checkout"));
    let allow = hit(
        PolicyKind::CalicoNetworkPolicy,
        "default",
        "shop",
        "allow",
        Action::Allow,
    );
    let variant = |change: &dyn Fn(&mut FlowKey)| {
        let mut k = base.clone();
        change(&mut k);
        k
    };
    let variants: Vec<FlowKey> = vec![
        base.clone(),
        variant(&|k| k.reporter = Reporter::Src as i32),
        variant(&|k| k.dest_port = 8443),
        variant(&|k| k.action = Action::Deny as i32),
        variant(&|k| {
            k.policies = Some(PolicyTrace {
                enforced_policies: vec![allow.clone()],
                pending_policies: vec![],
            })
        }),
        variant(&|k| {
            let mut deny = allow.clone();
            deny.action = Action::Deny as i32;
            k.policies = Some(PolicyTrace {
                enforced_policies: vec![deny],
                pending_policies: vec![],
            })
        }),
        variant(&|k| {
            k.policies = Some(PolicyTrace {
                enforced_policies: vec![],
                pending_policies: vec![allow.clone()],
            })
        }),
        variant(&|k| {
            let mut second_rule = allow.clone();
            second_rule.rule_index = 1;
            k.policies = Some(PolicyTrace {
                enforced_policies: vec![second_rule],
                pending_policies: vec![],
            })
        }),
        variant(&|k| k.dest_service_name = "checkout-svc".into()),
        variant(&|k| k.dest_service_port = 8080),
        variant(&|k| k.proto = "UDP".into()),
        variant(&|k| k.source_type = EndpointType::HostEndpoint as i32),
        variant(&|k| k.source_namespace = "Shop".into()),
        variant(&|k| {
            k.policies = Some(PolicyTrace {
                enforced_policies: vec![hit(
                    PolicyKind::EndOfTier,
                    "default",
                    "",
                    "",
                    Action::Deny,
                )],
                pending_policies: vec![],
            })
        }),
        variant(&|k| {
            let mut triggered = hit(PolicyKind::EndOfTier, "default", "", "", Action::Deny);
            triggered.trigger = Some(Box::new(allow.clone()));
            k.policies = Some(PolicyTrace {
                enforced_policies: vec![triggered],
                pending_policies: vec![],
            })
        }),
    ];
    // Tag i+1 for variant i, all in bucket C-15.
    let flows = variants
        .iter()
        .enumerate()
        .map(|(i, k)| flow(k.clone(), C - 10, i as i64 + 1))
        .collect();
    server.ingest(flows).await;

    let listed = list_ok(&server, FlowListRequest::default()).await;
    assert_eq!(meta(&listed), (15, 1));
    let by_tag: BTreeMap<i64, &FlowResult> = listed
        .flows
        .iter()
        .map(|f| (flow_of(f).packets_in, f))
        .collect();
    assert_eq!(
        by_tag.keys().copied().collect::<Vec<_>>(),
        (1..=15).collect::<Vec<_>>()
    );
    for (i, sent) in variants.iter().enumerate() {
        let result = by_tag[&(i as i64 + 1)];
        assert_eq!(key_of(result), sent, "variant {i} comes back unchanged");
        assert_eq!(flow_of(result).packets_out, i as i64 + 1);
    }
    let ids: BTreeSet<i64> = listed.flows.iter().map(|f| f.id).collect();
    assert_eq!(ids.len(), 15, "every distinct key has its own id");
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_in_a_different_order_are_one_key_returned_in_canonical_order() {
    let server = TestServer::start(2).await;
    let indexed = |kind, tier: &str, ns: &str, name: &str, action, policy, rule| {
        let mut h = hit(kind, tier, ns, name, action);
        h.policy_index = policy;
        h.rule_index = rule;
        h
    };
    use PolicyKind::*;
    let c = indexed(
        CalicoNetworkPolicy,
        "default",
        "shop",
        "z-pol",
        Action::Deny,
        0,
        1,
    );
    let f = indexed(
        GlobalNetworkPolicy,
        "alpha-tier",
        "",
        "g",
        Action::Pass,
        0,
        2,
    );
    let b = indexed(
        CalicoNetworkPolicy,
        "default",
        "shop",
        "a-pol",
        Action::Allow,
        0,
        2,
    );
    let a = indexed(
        CalicoNetworkPolicy,
        "default",
        "shop",
        "b-pol",
        Action::Allow,
        1,
        0,
    );
    let e = indexed(EndOfTier, "default", "", "", Action::Deny, 2, 0);
    let mut d = e.clone();
    d.trigger = Some(Box::new(a.clone()));
    let p_staged = indexed(
        StagedNetworkPolicy,
        "default",
        "shop",
        "s",
        Action::Deny,
        0,
        0,
    );
    let p_calico = indexed(
        CalicoNetworkPolicy,
        "default",
        "shop",
        "s",
        Action::Deny,
        0,
        0,
    );
    // Canonical: by (policy_index, rule_index, tier, kind, namespace, name, action, trigger)
    // with an absent trigger first.
    let canonical = PolicyTrace {
        enforced_policies: vec![
            c.clone(),
            f.clone(),
            b.clone(),
            a.clone(),
            e.clone(),
            d.clone(),
        ],
        pending_policies: vec![p_calico.clone(), p_staged.clone()],
    };
    let shuffled_1 = PolicyTrace {
        enforced_policies: vec![
            d.clone(),
            a.clone(),
            b.clone(),
            e.clone(),
            c.clone(),
            f.clone(),
        ],
        pending_policies: vec![p_staged.clone(), p_calico.clone()],
    };
    let shuffled_2 = PolicyTrace {
        enforced_policies: vec![f, e, c, b, d, a],
        pending_policies: vec![p_staged, p_calico],
    };
    let k = key(("shop", "frontend"), ("shop", "checkout"));
    let with = |trace: &PolicyTrace| {
        let mut k = k.clone();
        k.policies = Some(trace.clone());
        k
    };
    server
        .ingest(vec![
            flow(with(&shuffled_1), C - 20, 3),
            flow(with(&shuffled_2), C - 5, 4),
            flow(with(&canonical), C - 44, 5),
        ])
        .await;

    let listed = server.list_all().await;
    assert_eq!(
        listed.len(),
        1,
        "hit order does not split a key (SPEC §3.2)"
    );
    let flow = flow_of(&listed[0]);
    assert_eq!(flow.packets_in, 12);
    assert_eq!((flow.start_time, flow.end_time), (C - 45, C));
    assert_eq!(key_of(&listed[0]).policies.as_ref(), Some(&canonical));
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_trace_is_the_empty_trace() {
    let server = TestServer::start(1).await;
    let mut absent = key(("shop", "frontend"), ("shop", "checkout"));
    absent.policies = None;
    let empty = key(("shop", "frontend"), ("shop", "checkout"));
    server
        .ingest(vec![flow(absent, C - 20, 1), flow(empty, C - 19, 2)])
        .await;
    let listed = server.list_all().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(flow_of(&listed[0]).packets_in, 3);
    assert_eq!(
        key_of(&listed[0]).policies,
        Some(PolicyTrace::default()),
        "an empty trace is returned, never an absent one (SPEC §1.3)"
    );
    assert!(flow_of(&listed[0]).source_labels.is_empty());
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_end_times_are_bucket_aligned() {
    let server = TestServer::start(2).await;
    let to = |name: &str| key(("shop", "client"), ("shop", name));
    let mut late_end = flow(to("late-end"), C - 31, 1);
    late_end.end_time = C + 100; // The end time never moves a flow (SPEC §2.4).
    server
        .ingest(vec![
            late_end,
            flow(to("on-boundary"), C - 60, 2),
            flow(to("last-second"), C - 1, 3),
            flow(to("spread"), C - 293, 4),
            flow(to("spread"), C + 3, 5),
            flow(to("future"), C + 29, 6),
        ])
        .await;
    let listed = list_ok(
        &server,
        FlowListRequest {
            start_time_lt: C + 1000,
            sort_by: vec![sort_by(SortBy::DestName)],
            ..Default::default()
        },
    )
    .await;
    let got: Vec<(String, i64, i64, i64)> = listed
        .flows
        .iter()
        .map(|f| {
            let flow = flow_of(f);
            (
                key_of(f).dest_name.clone(),
                flow.start_time,
                flow.end_time,
                flow.packets_in,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("future".to_string(), C + 15, C + 30, 6),
            ("last-second".to_string(), C - 15, C, 3),
            ("late-end".to_string(), C - 45, C - 30, 1),
            ("on-boundary".to_string(), C - 60, C - 45, 2),
            ("spread".to_string(), C - 300, C + 15, 9),
        ]
    );
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_positive_and_the_same_for_a_key_across_calls_and_servers() {
    let server = TestServer::start(2).await;
    let one = key(("shop", "frontend"), ("shop", "checkout"));
    let two = key(("shop", "frontend"), ("shop", "cart"));
    server
        .ingest(vec![
            flow(one.clone(), C - 20, 1),
            flow(two.clone(), C - 20, 2),
        ])
        .await;
    let first = server.list_all().await;
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|f| f.id > 0));
    assert_ne!(first[0].id, first[1].id);
    let id_of = |flows: &[FlowResult], name: &str| {
        flows
            .iter()
            .find(|f| key_of(f).dest_name == name)
            .map(|f| f.id)
            .expect("the key is listed")
    };
    let checkout = id_of(&first, "checkout");
    let cart = id_of(&first, "cart");

    // Listing again, after more data for the key, with a filter, or per window: same id.
    assert_eq!(server.list_all().await, first);
    server.ingest(vec![flow(one.clone(), C - 50, 7)]).await;
    let again = server.list_all().await;
    assert_eq!(id_of(&again, "checkout"), checkout);
    assert_eq!(id_of(&again, "cart"), cart);
    let filtered = list_ok(
        &server,
        FlowListRequest {
            filter: Some(Filter {
                dest_names: vec![exact("checkout")],
                ..Default::default()
            }),
            aggregation_interval: WINDOW,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        spans(&filtered),
        vec![(C - 30, C - 15, 1), (C - 60, C - 45, 7)]
    );
    assert!(filtered.flows.iter().all(|f| f.id == checkout));

    // Derived from the canonical key: another process gives the key the same id (§3.6).
    let other = TestServer::start(1).await;
    other.ingest(vec![flow(one, C - 35, 3)]).await;
    let listed = other.list_all().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, checkout);
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §4.3: sorting
// ---------------------------------------------------------------------------------------------

/// Four flows, tagged 1..=4 (A..D):
///
/// | tag | source ns/name/type      | dest ns/name/type       | bucket |
/// |-----|--------------------------|-------------------------|--------|
/// | 1 A | alpha / web / WEP(1)     | zeta / db / HEP(2)      | C-60   |
/// | 2 B | Beta / api / NetSet(3)   | alpha / cache / WEP(1)  | C-15   |
/// | 3 C | alpha / Worker / HEP(2)  | mid / db / NetSet(3)    | C-30   |
/// | 4 D | gamma / api / WEP(1)     | alpha / Auth / Net(4)   | C-15   |
async fn sort_fixture(workers: usize) -> (TestServer, BTreeMap<i64, i64>) {
    use EndpointType::*;
    let server = TestServer::start(workers).await;
    let rows = [
        (
            ("alpha", "web", WorkloadEndpoint),
            ("zeta", "db", HostEndpoint),
            C - 60,
        ),
        (
            ("Beta", "api", NetworkSet),
            ("alpha", "cache", WorkloadEndpoint),
            C - 15,
        ),
        (
            ("alpha", "Worker", HostEndpoint),
            ("mid", "db", NetworkSet),
            C - 30,
        ),
        (
            ("gamma", "api", WorkloadEndpoint),
            ("alpha", "Auth", Network),
            C - 15,
        ),
    ];
    let flows = rows
        .iter()
        .enumerate()
        .map(|(i, (src, dst, start))| {
            let mut k = key((src.0, src.1), (dst.0, dst.1));
            k.source_type = src.2 as i32;
            k.dest_type = dst.2 as i32;
            flow(k, *start + 2, i as i64 + 1)
        })
        .collect();
    server.ingest(flows).await;
    let ids = list_ok(&server, FlowListRequest::default())
        .await
        .flows
        .iter()
        .map(|f| (flow_of(f).packets_in, f.id))
        .collect();
    (server, ids)
}

/// The expected tag order: `groups` in order, each group of tied tags by id ascending.
fn expected(groups: &[&[i64]], ids: &BTreeMap<i64, i64>) -> Vec<i64> {
    groups
        .iter()
        .flat_map(|group| {
            let mut group = group.to_vec();
            group.sort_by_key(|tag| ids[tag]);
            group
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sort_option_orders_as_specified() {
    let (server, ids) = sort_fixture(2).await;
    use SortBy::*;
    let cases: Vec<(Vec<SortBy>, Vec<&[i64]>)> = vec![
        // No option: Time. Time: start descending.
        (vec![], vec![&[2, 4], &[3], &[1]]),
        (vec![Time], vec![&[2, 4], &[3], &[1]]),
        // Names and namespaces: byte order ("Worker" < "api", "Beta" < "alpha").
        (vec![SourceName], vec![&[3], &[2, 4], &[1]]),
        (vec![SourceNamespace], vec![&[2], &[1, 3], &[4]]),
        (vec![DestName], vec![&[4], &[2], &[1, 3]]),
        (vec![DestNamespace], vec![&[2, 4], &[3], &[1]]),
        // Types: enum number ascending.
        (vec![SourceType], vec![&[1, 4], &[3], &[2]]),
        (vec![DestType], vec![&[2], &[1], &[3], &[4]]),
        // Several options: each breaks the ties of the previous one.
        (vec![SourceNamespace, Time], vec![&[2], &[3], &[1], &[4]]),
        (vec![DestName, SourceName], vec![&[4], &[2], &[3], &[1]]),
        (
            vec![DestNamespace, SourceNamespace],
            vec![&[2], &[4], &[3], &[1]],
        ),
        (
            vec![SourceType, DestNamespace],
            vec![&[4], &[1], &[3], &[2]],
        ),
        (vec![Time, DestName], vec![&[4], &[2], &[3], &[1]]),
        (vec![SourceName, DestNamespace], vec![&[3], &[2, 4], &[1]]),
        (
            vec![SourceName, SourceName, DestName],
            vec![&[3], &[4], &[2], &[1]],
        ),
    ];
    for (sorts, groups) in cases {
        let listed = list_ok(&server, sorted(&sorts)).await;
        assert_eq!(meta(&listed), (4, 1));
        assert_eq!(tags(&listed), expected(&groups, &ids), "sort_by {sorts:?}");
    }

    // Paging cuts the sorted order.
    let page = list_ok(
        &server,
        FlowListRequest {
            sort_by: vec![sort_by(DestType)],
            page: 1,
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(tags(&page), vec![3, 4]);
    assert_eq!(meta(&page), (4, 2));
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorting_by_name_works_with_one_worker() {
    let (server, ids) = sort_fixture(1).await;
    let listed = list_ok(&server, sorted(&[SortBy::DestName, SortBy::SourceName])).await;
    assert_eq!(tags(&listed), vec![4, 2, 3, 1]);
    let listed = list_ok(&server, sorted(&[SortBy::SourceType])).await;
    assert_eq!(tags(&listed), expected(&[&[1, 4], &[3], &[2]], &ids));
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_ties_are_broken_by_id_then_start_descending() {
    let server = TestServer::start(2).await;
    // Twelve keys that differ only in the port, each with data in buckets C-30 and C-15.
    let mut flows = Vec::new();
    for port in 1..=12 {
        let mut k = key(("shop", "frontend"), ("shop", "checkout"));
        k.dest_port = port;
        flows.push(flow(k.clone(), C - 30, port));
        flows.push(flow(k, C - 15, 100 + port));
    }
    server.ingest(flows).await;

    for sorts in [vec![], vec![SortBy::SourceName, SortBy::DestNamespace]] {
        let listed = list_ok(&server, sorted(&sorts)).await;
        assert_eq!(meta(&listed), (12, 1));
        let ids: Vec<i64> = listed.flows.iter().map(|f| f.id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{sorts:?}: id ascending"
        );
        assert!(listed.flows.iter().all(|f| flow_of(f).packets_in > 100));
    }

    // Per-window rows: under Time, all C-15 rows (by id) come before all C-30 rows.
    let windows = FlowListRequest {
        aggregation_interval: WINDOW,
        ..Default::default()
    };
    let listed = list_ok(&server, windows.clone()).await;
    assert_eq!(meta(&listed), (24, 1));
    let starts: Vec<i64> = listed.flows.iter().map(|f| flow_of(f).start_time).collect();
    assert_eq!(starts[..12], [C - 15; 12]);
    assert_eq!(starts[12..], [C - 30; 12]);
    let ids: Vec<i64> = listed.flows.iter().map(|f| f.id).collect();
    assert!(ids[..12].windows(2).all(|w| w[0] < w[1]));
    assert_eq!(ids[..12], ids[12..]);

    // Under a name sort that ties everything: id ascending, then start descending.
    let listed = list_ok(
        &server,
        FlowListRequest {
            sort_by: vec![sort_by(SortBy::DestName)],
            ..windows
        },
    )
    .await;
    let rows: Vec<(i64, i64)> = listed
        .flows
        .iter()
        .map(|f| (f.id, flow_of(f).start_time))
        .collect();
    let mut expected_rows = rows.clone();
    expected_rows.sort_by_key(|(id, start)| (*id, -start));
    assert_eq!(rows, expected_rows);
    for pair in rows.chunks(2) {
        assert_eq!(pair[0].0, pair[1].0, "both windows of one key are adjacent");
        assert_eq!((pair[0].1, pair[1].1), (C - 15, C - 30));
    }
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §4.4: paging
// ---------------------------------------------------------------------------------------------

/// `count` keys, key `i` (1-based) with tag `i` in bucket `C - 15 i`, so Time order is 1, 2, ...
async fn staircase(server: &TestServer, count: i64) {
    let flows = (1..=count)
        .map(|i| {
            let k = key(("shop", &format!("src-{i:03}")), ("shop", "checkout"));
            flow(k, C - WINDOW * i + 3, i)
        })
        .collect();
    server.ingest(flows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_metadata_and_pages() {
    let server = TestServer::start(2).await;
    staircase(&server, 7).await;

    type Case = ((i64, i64), Vec<i64>, (i64, i64));
    let cases: Vec<Case> = vec![
        ((0, 3), vec![1, 2, 3], (7, 3)),
        ((1, 3), vec![4, 5, 6], (7, 3)),
        ((2, 3), vec![7], (7, 3)),
        ((3, 3), vec![], (7, 3)),
        ((100, 3), vec![], (7, 3)),
        ((0, 0), (1..=7).collect(), (7, 1)),
        ((4, 0), (1..=7).collect(), (7, 1)), // page is ignored without a page size
        ((0, 7), (1..=7).collect(), (7, 1)),
        ((0, 8), (1..=7).collect(), (7, 1)),
        ((1, 7), vec![], (7, 1)),
        ((6, 1), vec![7], (7, 7)),
        ((5, 1), vec![6], (7, 7)),
        ((1, 2), vec![3, 4], (7, 4)),
    ];
    for ((page, size), want, totals) in cases {
        let listed = list_ok(&server, paged(page, size)).await;
        assert_eq!(tags(&listed), want, "page {page} of size {size}");
        assert_eq!(meta(&listed), totals, "page {page} of size {size}");
    }

    // Nothing matched: 0 results and 0 pages, whatever the page size.
    for size in [0, 1, 5] {
        let listed = list_ok(
            &server,
            FlowListRequest {
                page_size: size,
                filter: Some(Filter {
                    dest_names: vec![exact("nothing-here")],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await;
        assert!(listed.flows.is_empty());
        assert_eq!(meta(&listed), (0, 0));
    }
    common::assert_accounting(&server.state);
}

/// Pages of `size` concatenate to the whole list; page 0 of size 2 is the first two.
async fn assert_pages_cover_the_list(server: &TestServer, count: i64, sorts: &[SortBy]) {
    let whole = list_ok(server, sorted(sorts)).await;
    let want: Vec<i64> = (1..=count).collect();
    assert_eq!(tags(&whole), want);
    for size in [1, 2, 7, 16, 33] {
        let pages = (count + size - 1) / size;
        let mut joined = Vec::new();
        for page in 0..=pages {
            let listed = list_ok(
                server,
                FlowListRequest {
                    page,
                    page_size: size,
                    sort_by: sorts.iter().map(|s| sort_by(*s)).collect(),
                    ..Default::default()
                },
            )
            .await;
            assert_eq!(meta(&listed), (count, pages), "size {size}");
            let expected_page: Vec<i64> = want
                .iter()
                .copied()
                .skip((page * size) as usize)
                .take(size as usize)
                .collect();
            assert_eq!(tags(&listed), expected_page, "page {page} of size {size}");
            joined.extend(tags(&listed));
        }
        assert_eq!(joined, want, "size {size}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_pages_of_many_rows_on_one_worker_are_the_true_first_rows() {
    let server = TestServer::start(1).await;
    staircase(&server, 60).await;
    assert_pages_cover_the_list(&server, 60, &[]).await;
    // Source names src-001.. sort the same way as the tags.
    assert_pages_cover_the_list(&server, 60, &[SortBy::SourceName]).await;
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_pages_of_many_rows_on_two_workers_are_the_true_first_rows() {
    let server = TestServer::start(2).await;
    staircase(&server, 100).await;
    assert_pages_cover_the_list(&server, 100, &[SortBy::Time]).await;
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §2.5, §2.6: time ranges
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_ranges_select_whole_buckets_with_absolute_relative_and_zero_bounds() {
    let server = TestServer::start(1).await;
    let k = key(("shop", "frontend"), ("shop", "checkout"));
    // Tags are powers of two, so a sum names the buckets it covers.
    server
        .ingest(vec![
            flow(k.clone(), OLDEST - 15, 32), // older than retention: not stored
            flow(k.clone(), OLDEST + 4, 1),
            flow(k.clone(), C - 300, 2),
            flow(k.clone(), C - 14, 4),
            flow(k.clone(), C + 1, 8),
            flow(k.clone(), C + 20, 16), // the future bucket
            flow(k, C + 30, 64),         // beyond the future bucket: not stored
        ])
        .await;
    // (gte, lt) -> Some((packets, start, end)) or None for no result.
    type Case = ((i64, i64), Option<(i64, i64, i64)>);
    let cases: Vec<Case> = vec![
        // 0 means the oldest bucket / now; the current bucket starts before NOW.
        ((0, 0), Some((15, OLDEST, C + 15))),
        // Relative: NOW-30 = C-23 selects C-15 and C.
        ((-30, 0), Some((12, C - 15, C + 15))),
        ((-7, 0), Some((8, C, C + 15))), // NOW-7 = C exactly
        ((-6, 0), None),                 // [C+1, NOW): no bucket starts there
        ((0, -7), Some((7, OLDEST, C))), // lt = C excludes the current bucket
        ((0, -8), Some((7, OLDEST, C))),
        ((-3700, -100), Some((3, OLDEST, C - 285))), // gte clamped to the oldest bucket
        // Absolute.
        ((C - 300, C - 15), Some((2, C - 300, C - 285))),
        ((C - 300, C - 14), Some((6, C - 300, C))),
        ((C - 299, C), Some((4, C - 15, C))),
        ((C, C + 1000), Some((24, C, C + 30))), // lt clamped after the future bucket
        ((C + 15, C + 30), Some((16, C + 15, C + 30))),
        ((OLDEST, OLDEST + 15), Some((1, OLDEST, OLDEST + 15))),
        ((OLDEST - 15, OLDEST + 1), Some((1, OLDEST, OLDEST + 15))),
        ((1, 0), Some((15, OLDEST, C + 15))),
        ((1, i64::MAX), Some((31, OLDEST, C + 30))),
        ((OLDEST - 100, C - 301), Some((1, OLDEST, OLDEST + 15))),
        // Valid but outside retention: clamped, nothing selected, never an error.
        ((100, 200), None),
        ((C + 1000, C + 2000), None),
        ((-100_000, -50_000), None),
        ((i64::MIN, OLDEST), None),
    ];
    for ((gte, lt), want) in cases {
        let listed = list_ok(&server, request(gte, lt)).await;
        match want {
            Some((packets, start, end)) => {
                assert_eq!(
                    spans(&listed),
                    vec![(start, end, packets)],
                    "range ({gte}, {lt})"
                );
                assert_eq!(meta(&listed), (1, 1), "range ({gte}, {lt})");
            }
            None => {
                assert!(listed.flows.is_empty(), "range ({gte}, {lt})");
                assert_eq!(meta(&listed), (0, 0), "range ({gte}, {lt})");
            }
        }
    }
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_without_data_in_the_range_are_not_listed() {
    let server = TestServer::start(1).await;
    let old = key(("shop", "old"), ("shop", "checkout"));
    let recent = key(("shop", "recent"), ("shop", "checkout"));
    let oldest = key(("shop", "oldest"), ("shop", "checkout"));
    let mut silent = flow(key(("shop", "silent"), ("shop", "checkout")), C - 10, 0);
    silent.num_connections_started = 0;
    silent.num_connections_completed = 0;
    server
        .ingest(vec![
            flow(old, C - 299, 1),
            flow(recent, C - 14, 2),
            flow(oldest, OLDEST + 1, 4),
            silent,
        ])
        .await;
    let names = |listed: &FlowListResult| -> Vec<String> {
        listed
            .flows
            .iter()
            .map(|f| key_of(f).source_name.clone())
            .collect()
    };
    let request_sorted = |gte, lt| FlowListRequest {
        sort_by: vec![sort_by(SortBy::SourceName)],
        ..request(gte, lt)
    };
    let recent_only = list_ok(&server, request_sorted(-100, 0)).await;
    // An update with zero counters is still data for its key (it is not a phantom row).
    assert_eq!(names(&recent_only), strings(&["recent", "silent"]));
    assert_eq!(meta(&recent_only), (2, 1));
    let silent = &recent_only.flows[1];
    assert_eq!(flow_of(silent).packets_in, 0);
    assert_eq!(flow_of(silent).num_connections_started, 0);

    let old_only = list_ok(&server, request_sorted(C - 300, C - 285)).await;
    assert_eq!(names(&old_only), strings(&["old"]));
    assert_eq!(meta(&old_only), (1, 1));

    // Per-window: one row per bucket that has data, none for the empty buckets in between.
    let windows = list_ok(
        &server,
        FlowListRequest {
            aggregation_interval: WINDOW,
            ..request_sorted(0, 0)
        },
    )
    .await;
    assert_eq!(
        names(&windows),
        strings(&["old", "oldest", "recent", "silent"])
    );
    assert_eq!(meta(&windows), (4, 1));

    // Once the oldest bucket leaves retention, its only key is gone, not listed with zeros.
    server.advance_clock(WINDOW).await;
    let after = list_ok(&server, request_sorted(0, 0)).await;
    assert_eq!(names(&after), strings(&["old", "recent", "silent"]));
    assert_eq!(meta(&after), (3, 1));
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §4.2: aggregation_interval
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_intervals_give_one_result_per_key_per_aligned_window() {
    let server = TestServer::start(2).await;
    let k = key(("shop", "frontend"), ("shop", "checkout"));
    let labelled = |start: i64, tag: i64, labels: &[&str]| {
        let mut f = flow(k.clone(), start, tag);
        f.source_labels = strings(labels);
        f
    };
    server
        .ingest(vec![
            labelled(C - 75, 1, &["a"]),
            labelled(C - 60, 2, &["a", "b"]),
            labelled(C - 45, 4, &["b", "c"]),
            labelled(C - 15, 8, &["b", "d"]),
            labelled(C, 16, &["e"]),
        ])
        .await;
    // C is a multiple of 30, 45 and 60, but C mod 3600 = 900.
    assert_eq!((C % 30, C % 45, C % 60, C % 3600), (0, 0, 0, 900));
    type Row = (i64, i64, i64, Vec<String>);
    let cases: Vec<(i64, Vec<Row>)> = vec![
        (
            15,
            vec![
                (C, C + 15, 16, strings(&["e"])),
                (C - 15, C, 8, strings(&["b", "d"])),
                (C - 45, C - 30, 4, strings(&["b", "c"])),
                (C - 60, C - 45, 2, strings(&["a", "b"])),
                (C - 75, C - 60, 1, strings(&["a"])),
            ],
        ),
        (
            30, // windows [C-90, C-60), [C-60, C-30), [C-30, C), [C, C+30)
            vec![
                (C, C + 15, 16, strings(&["e"])),
                (C - 15, C, 8, strings(&["b", "d"])),
                (C - 60, C - 30, 6, strings(&["b"])),
                (C - 75, C - 60, 1, strings(&["a"])),
            ],
        ),
        (
            45, // windows [C-90, C-45), [C-45, C), [C, C+45)
            vec![
                (C, C + 15, 16, strings(&["e"])),
                (C - 45, C, 12, strings(&["b"])),
                (C - 75, C - 45, 3, strings(&["a"])),
            ],
        ),
        (
            60, // windows [C-120, C-60), [C-60, C), [C, C+60)
            vec![
                (C, C + 15, 16, strings(&["e"])),
                (C - 60, C, 14, strings(&["b"])),
                (C - 75, C - 60, 1, strings(&["a"])),
            ],
        ),
        (3600, vec![(C - 75, C + 15, 31, vec![])]), // window [C-900, C+2700)
        (0, vec![(C - 75, C + 15, 31, vec![])]),
    ];
    for (interval, want) in cases {
        let listed = list_ok(
            &server,
            FlowListRequest {
                aggregation_interval: interval,
                ..Default::default()
            },
        )
        .await;
        let got: Vec<Row> = listed
            .flows
            .iter()
            .map(|f| {
                let flow = flow_of(f);
                (
                    flow.start_time,
                    flow.end_time,
                    flow.packets_in,
                    flow.source_labels.clone(),
                )
            })
            .collect();
        let count = want.len() as i64;
        assert_eq!(got, want, "interval {interval}");
        assert_eq!(meta(&listed), (count, 1), "interval {interval}");
    }

    // The range cuts windows: from C-50, the window [C-60, C-30) holds only bucket C-45.
    let cut = list_ok(
        &server,
        FlowListRequest {
            start_time_gte: C - 50,
            aggregation_interval: 30,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        spans(&cut),
        vec![(C, C + 15, 16), (C - 15, C, 8), (C - 45, C - 30, 4)]
    );
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_window_rows_of_several_keys_sort_and_page_deterministically() {
    let server = TestServer::start(1).await;
    let one = key(("shop", "one"), ("shop", "checkout"));
    let two = key(("shop", "two"), ("shop", "checkout"));
    server
        .ingest(vec![
            flow(one.clone(), C - 75, 1),
            flow(one.clone(), C - 45, 2),
            flow(one.clone(), C - 15, 4),
            flow(two.clone(), C - 60, 32),
            flow(two.clone(), C - 14, 64),
        ])
        .await;
    let ids: BTreeMap<String, i64> = server
        .list_all()
        .await
        .iter()
        .map(|f| (key_of(f).source_name.clone(), f.id))
        .collect();
    // Windows of 30: [C-90, C-60), [C-60, C-30), [C-30, C); each row spans its own buckets.
    let one_rows = vec![(C - 15, C, 4), (C - 45, C - 30, 2), (C - 75, C - 60, 1)];
    let two_rows = vec![(C - 15, C, 64), (C - 60, C - 45, 32)];
    // DestName ties: id ascending, then start descending.
    let want: Vec<(i64, i64, i64)> = if ids["one"] < ids["two"] {
        [one_rows, two_rows].concat()
    } else {
        [two_rows, one_rows].concat()
    };
    let request = |page, page_size| FlowListRequest {
        aggregation_interval: 30,
        sort_by: vec![sort_by(SortBy::DestName)],
        page,
        page_size,
        ..Default::default()
    };
    let all = list_ok(&server, request(0, 0)).await;
    assert_eq!(spans(&all), want);
    assert_eq!(meta(&all), (5, 1));
    let first = list_ok(&server, request(0, 3)).await;
    assert_eq!(spans(&first), want[..3]);
    assert_eq!(meta(&first), (5, 2));
    let second = list_ok(&server, request(1, 3)).await;
    assert_eq!(spans(&second), want[3..]);
    assert_eq!(meta(&second), (5, 2));

    // By Time: start descending (C-15 twice, C-45, C-60, C-75), the C-15 tie by id.
    let by_time = list_ok(
        &server,
        FlowListRequest {
            aggregation_interval: 30,
            ..Default::default()
        },
    )
    .await;
    let (low, high) = if ids["one"] < ids["two"] {
        ((C - 15, C, 4), (C - 15, C, 64))
    } else {
        ((C - 15, C, 64), (C - 15, C, 4))
    };
    assert_eq!(
        spans(&by_time),
        vec![
            low,
            high,
            (C - 45, C - 30, 2),
            (C - 60, C - 45, 32),
            (C - 75, C - 60, 1)
        ]
    );
    common::assert_accounting(&server.state);
}
