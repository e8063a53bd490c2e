//! Flows.FilterHints through gRPC (SPEC §6, with §2.5-§2.6 time ranges, §4.4 paging, §5
//! filters and §10 errors): every filter type, byte-order ascending distinct values, empty
//! strings dropped, Profile hits skipped, trigger values for EndOfTier hits, narrowing
//! filters (also on the hinted field itself), paging and totals, time ranges, validation.

mod common;

use common::*;
use eddy::proto::{
    Action, FilterHintsRequest, FilterType, Flow, FlowKey, FlowListRequest, MatchType, PolicyHit,
    PolicyKind, PolicyMatch, PolicyTrace, PortMatch, Reporter, StringMatch,
};
use tonic::Code;

/// Hints with their metadata, as one value for easy comparison.
#[derive(Debug, PartialEq, Eq)]
struct Hints {
    values: Vec<String>,
    total_results: i64,
    total_pages: i64,
}

fn hints_of(values: &[&str], total_results: i64, total_pages: i64) -> Hints {
    Hints {
        values: values.iter().map(|v| v.to_string()).collect(),
        total_results,
        total_pages,
    }
}

/// All distinct values on one page (page_size 0): totals are the count and 1 page (0 if none).
fn all(values: &[&str]) -> Hints {
    let pages = if values.is_empty() { 0 } else { 1 };
    hints_of(values, values.len() as i64, pages)
}

fn request(kind: FilterType) -> FilterHintsRequest {
    FilterHintsRequest {
        r#type: kind as i32,
        ..Default::default()
    }
}

fn filtered(kind: FilterType, filter: eddy::proto::Filter) -> FilterHintsRequest {
    FilterHintsRequest {
        r#type: kind as i32,
        filter: Some(filter),
        ..Default::default()
    }
}

fn ranged(kind: FilterType, gte: i64, lt: i64) -> FilterHintsRequest {
    FilterHintsRequest {
        r#type: kind as i32,
        start_time_gte: gte,
        start_time_lt: lt,
        ..Default::default()
    }
}

fn paged(kind: FilterType, page: i64, page_size: i64) -> FilterHintsRequest {
    FilterHintsRequest {
        r#type: kind as i32,
        page,
        page_size,
        ..Default::default()
    }
}

async fn hints(server: &TestServer, request: FilterHintsRequest) -> Hints {
    let result = server
        .flows()
        .filter_hints(request.clone())
        .await
        .unwrap_or_else(|status| panic!("FilterHints {request:?} failed: {status}"))
        .into_inner();
    let meta = result.meta.expect("FilterHints returns metadata");
    Hints {
        values: result.hints.into_iter().map(|hint| hint.value).collect(),
        total_results: meta.total_results,
        total_pages: meta.total_pages,
    }
}

async fn hints_error(server: &TestServer, request: FilterHintsRequest) -> tonic::Status {
    match server.flows().filter_hints(request.clone()).await {
        Ok(response) => panic!(
            "FilterHints {request:?} should fail, returned {:?}",
            response.into_inner()
        ),
        Err(status) => status,
    }
}

fn exact_match(value: &str) -> StringMatch {
    StringMatch {
        value: value.into(),
        r#type: MatchType::Exact as i32,
    }
}

fn fuzzy_match(value: &str) -> StringMatch {
    StringMatch {
        value: value.into(),
        r#type: MatchType::Fuzzy as i32,
    }
}

fn indexed(mut hit: PolicyHit, policy_index: i64, rule_index: i64) -> PolicyHit {
    hit.policy_index = policy_index;
    hit.rule_index = rule_index;
    hit
}

fn with_trigger(mut hit: PolicyHit, trigger: PolicyHit) -> PolicyHit {
    hit.trigger = Some(Box::new(trigger));
    hit
}

fn traced(mut key: FlowKey, enforced: Vec<PolicyHit>, pending: Vec<PolicyHit>) -> FlowKey {
    key.policies = Some(PolicyTrace {
        enforced_policies: enforced,
        pending_policies: pending,
    });
    key
}

/// A closed bucket, two windows back, so that the default time range holds it.
fn closed_start() -> i64 {
    bucket(NOW) - 2 * WINDOW + 1
}

/// Name and namespace hints take the stored values, distinct, byte order, no empty strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_and_namespace_types_list_distinct_stored_values_in_byte_order() {
    let server = TestServer::start(1).await;
    let start = closed_start();
    let mut same_values_other_port = key(("shop", "alpha"), ("shop", "alpha_1"));
    same_values_other_port.dest_port = 8443;
    let keys = vec![
        key(("shop", "alpha"), ("kube-system", "Zeta")),
        key(("-", "pub"), ("shop", "alpha_1")),
        key(("", "élan"), ("Kube", "alpha-1")),
        key(("shop", "alpha1"), ("", "")),
        same_values_other_port,
    ];
    server
        .ingest(keys.into_iter().map(|k| flow(k, start, 3)).collect())
        .await;

    assert_eq!(
        hints(&server, request(FilterType::SourceName)).await,
        all(&["alpha", "alpha1", "pub", "élan"])
    );
    assert_eq!(
        hints(&server, request(FilterType::DestName)).await,
        all(&["Zeta", "alpha-1", "alpha_1"])
    );
    assert_eq!(
        hints(&server, request(FilterType::SourceNamespace)).await,
        all(&["-", "shop"])
    );
    assert_eq!(
        hints(&server, request(FilterType::DestNamespace)).await,
        all(&["Kube", "kube-system", "shop"])
    );
    // Stored values are reported, even when a filter matched them through an alias (§5.2).
    let public = eddy::proto::Filter {
        source_names: vec![exact_match("PUBLIC NETWORK")],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::SourceName, public)).await,
        all(&["pub"])
    );
    let global = eddy::proto::Filter {
        source_namespaces: vec![exact_match("Global")],
        ..Default::default()
    };
    assert_eq!(
        hints(
            &server,
            filtered(FilterType::SourceNamespace, global.clone())
        )
        .await,
        all(&["-"])
    );
    assert_eq!(
        hints(&server, filtered(FilterType::DestName, global)).await,
        all(&["alpha_1"])
    );
    // Flows without policy hits give no policy hints at all.
    for kind in [
        FilterType::PolicyTier,
        FilterType::PolicyName,
        FilterType::PolicyKind,
        FilterType::PolicyNamespace,
    ] {
        assert_eq!(hints(&server, request(kind)).await, all(&[]), "{kind:?}");
    }
    common::assert_accounting(&server.state);
}

/// Policy hints walk enforced then pending hits, skip Profile hits, take a trigger's values,
/// report kinds by enum name, and drop empty strings (SPEC §6.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_types_walk_every_hit_skip_profiles_and_use_triggers() {
    let server = TestServer::start(2).await;
    let start = closed_start();
    let flows = vec![
        // Enforced and pending hits of three kinds.
        traced(
            key(("shop", "frontend"), ("shop", "checkout")),
            vec![
                indexed(
                    hit(
                        PolicyKind::CalicoNetworkPolicy,
                        "security",
                        "shop",
                        "allow-frontend",
                        Action::Pass,
                    ),
                    0,
                    1,
                ),
                indexed(
                    hit(
                        PolicyKind::GlobalNetworkPolicy,
                        "default",
                        "",
                        "deny-all",
                        Action::Deny,
                    ),
                    1,
                    0,
                ),
            ],
            vec![hit(
                PolicyKind::StagedNetworkPolicy,
                "security",
                "shop",
                "staged-np",
                Action::Deny,
            )],
        ),
        // A profile: none of its values may appear.
        traced(
            key(("shop", "frontend"), ("shop", "cart")),
            vec![hit(
                PolicyKind::Profile,
                "__PROFILE__",
                "profile-ns",
                "kns.shop",
                Action::Allow,
            )],
            vec![],
        ),
        // An EndOfTier hit with a trigger: every value comes from the trigger.
        traced(
            key(("pay", "api"), ("pay", "db")),
            vec![with_trigger(
                hit(
                    PolicyKind::EndOfTier,
                    "tier-of-the-hit",
                    "ns-of-the-hit",
                    "name-of-the-hit",
                    Action::Deny,
                ),
                hit(
                    PolicyKind::NetworkPolicy,
                    "platform",
                    "pay",
                    "np-pay",
                    Action::Deny,
                ),
            )],
            vec![],
        ),
        // An EndOfTier hit without a trigger: kind EndOfTier and its own tier.
        traced(
            key(("pay", "api"), ("edge", "gateway")),
            vec![hit(PolicyKind::EndOfTier, "edge", "", "", Action::Deny)],
            vec![],
        ),
        // Only pending hits.
        traced(
            key(("shop", "frontend"), ("shop", "search")),
            vec![],
            vec![hit(
                PolicyKind::StagedKubernetesNetworkPolicy,
                "default",
                "shop",
                "knp.default.k8s-np",
                Action::Allow,
            )],
        ),
        // A cluster-scoped kind with an empty namespace.
        traced(
            key(("shop", "frontend"), ("kube-system", "kube-dns")),
            vec![hit(
                PolicyKind::ClusterNetworkPolicy,
                "adminnetworkpolicy",
                "",
                "cnp-1",
                Action::Allow,
            )],
            vec![],
        ),
        // No trace at all.
        FlowKey {
            policies: None,
            ..key(("shop", "frontend"), ("shop", "untraced"))
        },
    ];
    server
        .ingest(flows.into_iter().map(|k| flow(k, start, 2)).collect())
        .await;

    assert_eq!(
        hints(&server, request(FilterType::PolicyTier)).await,
        all(&[
            "adminnetworkpolicy",
            "default",
            "edge",
            "platform",
            "security"
        ])
    );
    assert_eq!(
        hints(&server, request(FilterType::PolicyName)).await,
        all(&[
            "allow-frontend",
            "cnp-1",
            "deny-all",
            "knp.default.k8s-np",
            "np-pay",
            "staged-np",
        ])
    );
    assert_eq!(
        hints(&server, request(FilterType::PolicyKind)).await,
        all(&[
            "CalicoNetworkPolicy",
            "ClusterNetworkPolicy",
            "EndOfTier",
            "GlobalNetworkPolicy",
            "NetworkPolicy",
            "StagedKubernetesNetworkPolicy",
            "StagedNetworkPolicy",
        ])
    );
    assert_eq!(
        hints(&server, request(FilterType::PolicyNamespace)).await,
        all(&["pay", "shop"])
    );
    // The same answers through the filtered path (a filter that keeps every flow).
    let keep_all = eddy::proto::Filter {
        protocols: vec![exact_match("TCP")],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::PolicyTier, keep_all.clone())).await,
        all(&[
            "adminnetworkpolicy",
            "default",
            "edge",
            "platform",
            "security"
        ])
    );
    assert_eq!(
        hints(&server, filtered(FilterType::PolicyKind, keep_all))
            .await
            .total_results,
        7
    );
    // Only the first flow has a pending Deny: every value of its trace, enforced and pending.
    let pending_deny = eddy::proto::Filter {
        pending_actions: vec![Action::Deny as i32],
        ..Default::default()
    };
    assert_eq!(
        hints(
            &server,
            filtered(FilterType::PolicyName, pending_deny.clone())
        )
        .await,
        all(&["allow-frontend", "deny-all", "staged-np"])
    );
    assert_eq!(
        hints(&server, filtered(FilterType::DestName, pending_deny)).await,
        all(&["checkout"])
    );
    // A policy match on the trigger's name selects the EndOfTier flow (§5.5); its hints are
    // the trigger's values.
    let by_trigger = eddy::proto::Filter {
        policies: vec![PolicyMatch {
            name: "np-pay".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        hints(
            &server,
            filtered(FilterType::PolicyKind, by_trigger.clone())
        )
        .await,
        all(&["NetworkPolicy"])
    );
    assert_eq!(
        hints(&server, filtered(FilterType::PolicyTier, by_trigger)).await,
        all(&["platform"])
    );
    // Filtering on a Profile selects its flow, whose only hit is skipped: no hints.
    let by_profile = eddy::proto::Filter {
        policies: vec![PolicyMatch {
            kind: PolicyKind::Profile as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        hints(
            &server,
            filtered(FilterType::PolicyName, by_profile.clone())
        )
        .await,
        all(&[])
    );
    assert_eq!(
        hints(&server, filtered(FilterType::DestName, by_profile)).await,
        all(&["cart"])
    );
    common::assert_accounting(&server.state);
}

/// An EndOfTier hit without a trigger is the only hit: kind and tier hints, no name or
/// namespace hints (its empty strings are dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_tier_without_trigger_gives_its_kind_and_tier_only() {
    let server = TestServer::start(1).await;
    let k = traced(
        key(("shop", "frontend"), ("shop", "checkout")),
        vec![hit(PolicyKind::EndOfTier, "security", "", "", Action::Deny)],
        vec![],
    );
    server.ingest(vec![flow(k, closed_start(), 1)]).await;
    assert_eq!(
        hints(&server, request(FilterType::PolicyKind)).await,
        all(&["EndOfTier"])
    );
    assert_eq!(
        hints(&server, request(FilterType::PolicyTier)).await,
        all(&["security"])
    );
    assert_eq!(
        hints(&server, request(FilterType::PolicyName)).await,
        all(&[])
    );
    assert_eq!(
        hints(&server, request(FilterType::PolicyNamespace)).await,
        all(&[])
    );
    common::assert_accounting(&server.state);
}

/// Flows for the narrowing tests: four keys with different names, protocols, ports,
/// reporters and traces.
fn narrowing_flows() -> Vec<Flow> {
    let start = closed_start();
    let t1 = (
        vec![
            indexed(
                hit(
                    PolicyKind::CalicoNetworkPolicy,
                    "security",
                    "shop",
                    "allow-frontend",
                    Action::Pass,
                ),
                0,
                0,
            ),
            indexed(
                hit(
                    PolicyKind::GlobalNetworkPolicy,
                    "default",
                    "",
                    "default-allow",
                    Action::Allow,
                ),
                1,
                0,
            ),
        ],
        vec![],
    );
    let t2 = (
        vec![hit(
            PolicyKind::GlobalNetworkPolicy,
            "default",
            "",
            "deny-all",
            Action::Deny,
        )],
        vec![],
    );
    let a = traced(
        key(("shop", "frontend"), ("shop", "checkout")),
        t1.0.clone(),
        t1.1.clone(),
    );
    let mut b = traced(
        key(("shop", "frontend"), ("pay", "payments-api")),
        t2.0,
        t2.1,
    );
    b.action = Action::Deny as i32;
    let mut c = traced(key(("shop", "Cart"), ("shop", "CheckoutV2")), t1.0, t1.1);
    c.proto = "UDP".into();
    let mut d = key(("kube-system", "coredns"), ("kube-system", "kube-dns"));
    d.dest_port = 53;
    d.reporter = Reporter::Src as i32;
    vec![
        flow(a, start, 1),
        flow(b, start, 2),
        flow(c, start, 3),
        flow(d, start, 4),
    ]
}

/// The filter selects flows, and the hints are the values over those flows, including when
/// the filter constrains the hinted field itself (SPEC §6.2, §5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_the_flows_the_hints_come_from() {
    let server = TestServer::start(2).await;
    server.ingest(narrowing_flows()).await;
    use eddy::proto::Filter;

    assert_eq!(
        hints(&server, request(FilterType::DestName)).await,
        all(&["CheckoutV2", "checkout", "kube-dns", "payments-api"])
    );
    // Another field.
    let by_source = Filter {
        source_names: vec![exact_match("frontend")],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::DestName, by_source)).await,
        all(&["checkout", "payments-api"])
    );
    // The hinted field itself, exact, one value and two values (OR).
    let itself = Filter {
        dest_names: vec![exact_match("checkout")],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::DestName, itself)).await,
        all(&["checkout"])
    );
    let either = Filter {
        dest_names: vec![exact_match("checkout"), exact_match("kube-dns")],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::DestName, either)).await,
        all(&["checkout", "kube-dns"])
    );
    // The hinted field itself, fuzzy: case-insensitive substring.
    let fuzzy_itself = Filter {
        dest_names: vec![fuzzy_match("CHECK")],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::DestName, fuzzy_itself)).await,
        all(&["CheckoutV2", "checkout"])
    );
    // An empty fuzzy value matches everything.
    let fuzzy_empty = Filter {
        dest_names: vec![fuzzy_match("")],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::DestName, fuzzy_empty)).await,
        all(&["CheckoutV2", "checkout", "kube-dns", "payments-api"])
    );
    // AND across fields.
    let both = Filter {
        source_names: vec![fuzzy_match("FRONT")],
        dest_namespaces: vec![exact_match("pay")],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::DestName, both)).await,
        all(&["payments-api"])
    );
    // Protocol, port, reporter and action filters.
    let udp = Filter {
        protocols: vec![exact_match("UDP")],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::SourceName, udp)).await,
        all(&["Cart"])
    );
    let dns = Filter {
        dest_ports: vec![PortMatch { port: 53 }],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::SourceNamespace, dns)).await,
        all(&["kube-system"])
    );
    let by_src_reporter = Filter {
        reporter: Reporter::Src as i32,
        ..Default::default()
    };
    assert_eq!(
        hints(
            &server,
            filtered(FilterType::DestNamespace, by_src_reporter)
        )
        .await,
        all(&["kube-system"])
    );
    let denied = Filter {
        actions: vec![Action::Deny as i32],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::PolicyTier, denied)).await,
        all(&["default"])
    );
    // A policy filter selects flows; their every policy value is a hint, not only the
    // matching hit's.
    let by_policy = Filter {
        policies: vec![PolicyMatch {
            name: "allow-frontend".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::PolicyName, by_policy.clone())).await,
        all(&["allow-frontend", "default-allow"])
    );
    assert_eq!(
        hints(&server, filtered(FilterType::DestName, by_policy)).await,
        all(&["CheckoutV2", "checkout"])
    );
    let by_kind = Filter {
        policies: vec![PolicyMatch {
            kind: PolicyKind::GlobalNetworkPolicy as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::PolicyKind, by_kind)).await,
        all(&["CalicoNetworkPolicy", "GlobalNetworkPolicy"])
    );
    // A filter matching nothing: no hints, zero totals.
    let nothing = Filter {
        dest_names: vec![exact_match("no-such-name")],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::SourceName, nothing)).await,
        all(&[])
    );
    let nothing_fuzzy = Filter {
        source_namespaces: vec![fuzzy_match("zzz")],
        ..Default::default()
    };
    assert_eq!(
        hints(&server, filtered(FilterType::PolicyName, nothing_fuzzy)).await,
        all(&[])
    );
    common::assert_accounting(&server.state);
}

/// Paging like SPEC §4.4, with totals over distinct values, on the unfiltered and the
/// filtered path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_page_like_list_with_totals_over_distinct_values() {
    let server = TestServer::start(2).await;
    let start = closed_start();
    let mut flows: Vec<Flow> = ["d-e", "d-c", "d-a", "d-d", "d-b"]
        .iter()
        .map(|name| flow(key(("shop", "frontend"), ("shop", name)), start, 1))
        .collect();
    // A second key with an existing value: still five distinct values.
    flows.push(flow(key(("shop", "cart"), ("shop", "d-c")), start, 1));
    server.ingest(flows).await;

    for filter in [
        None,
        Some(eddy::proto::Filter {
            dest_names: vec![fuzzy_match("D-")],
            ..Default::default()
        }),
    ] {
        let ask = |page, page_size| FilterHintsRequest {
            filter: filter.clone(),
            ..paged(FilterType::DestName, page, page_size)
        };
        assert_eq!(
            hints(&server, ask(0, 2)).await,
            hints_of(&["d-a", "d-b"], 5, 3)
        );
        assert_eq!(
            hints(&server, ask(1, 2)).await,
            hints_of(&["d-c", "d-d"], 5, 3)
        );
        assert_eq!(hints(&server, ask(2, 2)).await, hints_of(&["d-e"], 5, 3));
        assert_eq!(hints(&server, ask(3, 2)).await, hints_of(&[], 5, 3));
        assert_eq!(hints(&server, ask(100, 2)).await, hints_of(&[], 5, 3));
        assert_eq!(
            hints(&server, ask(0, 5)).await,
            hints_of(&["d-a", "d-b", "d-c", "d-d", "d-e"], 5, 1)
        );
        assert_eq!(
            hints(&server, ask(0, 10)).await,
            hints_of(&["d-a", "d-b", "d-c", "d-d", "d-e"], 5, 1)
        );
        assert_eq!(hints(&server, ask(1, 4)).await, hints_of(&["d-e"], 5, 2));
        // Extreme pages and page sizes neither overflow nor fail.
        assert_eq!(hints(&server, ask(i64::MAX, 2)).await, hints_of(&[], 5, 3));
        assert_eq!(
            hints(&server, ask(0, i64::MAX)).await,
            hints_of(&["d-a", "d-b", "d-c", "d-d", "d-e"], 5, 1)
        );
        assert_eq!(
            hints(&server, ask(i64::MAX, i64::MAX)).await,
            hints_of(&[], 5, 1)
        );
        // page_size 0: one page holding everything; page is ignored.
        assert_eq!(
            hints(&server, ask(7, 0)).await,
            hints_of(&["d-a", "d-b", "d-c", "d-d", "d-e"], 5, 1)
        );
    }
    // Nothing matched: zero results and zero pages, whatever the page size.
    let nothing = FilterHintsRequest {
        filter: Some(eddy::proto::Filter {
            dest_names: vec![exact_match("d-z")],
            ..Default::default()
        }),
        ..paged(FilterType::DestName, 0, 2)
    };
    assert_eq!(hints(&server, nothing).await, hints_of(&[], 0, 0));
    assert_eq!(
        hints(&server, paged(FilterType::PolicyName, 0, 3)).await,
        hints_of(&[], 0, 0)
    );
    common::assert_accounting(&server.state);
}

/// Time ranges select whole buckets by their start (SPEC §2.5, §2.6), on both paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_ranges_select_whole_buckets() {
    let server = TestServer::start(2).await;
    let current = bucket(NOW);
    let old = current - 3 * WINDOW;
    let recent = current - WINDOW;
    let future = current + WINDOW;
    let oldest = current - 240 * WINDOW;
    server
        .ingest(vec![
            flow(key(("a", "src"), ("a", "oldest")), oldest + 14, 1),
            flow(key(("a", "src"), ("a", "old")), old + 2, 1),
            flow(key(("a", "src"), ("a", "recent")), recent, 1),
            flow(key(("a", "src"), ("a", "current")), current + 3, 1),
            flow(key(("a", "src"), ("a", "future")), future + 14, 1),
        ])
        .await;

    let keep_all = eddy::proto::Filter {
        protocols: vec![fuzzy_match("tcp")],
        ..Default::default()
    };
    for filter in [None, Some(keep_all)] {
        let ask = |gte, lt| FilterHintsRequest {
            filter: filter.clone(),
            ..ranged(FilterType::DestName, gte, lt)
        };
        // Default: oldest retained bucket up to now, current bucket included, future not.
        assert_eq!(
            hints(&server, ask(0, 0)).await,
            all(&["current", "old", "oldest", "recent"])
        );
        // Absolute bounds.
        assert_eq!(hints(&server, ask(old, old + WINDOW)).await, all(&["old"]));
        assert_eq!(
            hints(&server, ask(recent, 0)).await,
            all(&["current", "recent"])
        );
        // A bucket whose start is before gte is out, even if it overlaps the range.
        assert_eq!(
            hints(&server, ask(old + 1, recent + 1)).await,
            all(&["recent"])
        );
        // Relative bounds: [now - 52, now - 22) = [old, recent).
        assert_eq!(
            hints(&server, ask(old - NOW, recent - NOW)).await,
            all(&["old"])
        );
        assert_eq!(
            hints(&server, ask(-(NOW - recent), 0)).await,
            all(&["current", "recent"])
        );
        // An end past now reaches the future bucket (clamped, never an error).
        assert_eq!(
            hints(&server, ask(current, NOW + 10_000)).await,
            all(&["current", "future"])
        );
        assert_eq!(
            hints(&server, ask(0, NOW + 10_000)).await,
            all(&["current", "future", "old", "oldest", "recent"])
        );
        // A start older than retention is clamped.
        assert_eq!(hints(&server, ask(1, old)).await, all(&["oldest"]));
        // A range entirely older than retention: valid, empty.
        assert_eq!(hints(&server, ask(1, 2)).await, all(&[]));
        // A range with no data in it.
        assert_eq!(hints(&server, ask(old + WINDOW, recent)).await, all(&[]));
    }
    common::assert_accounting(&server.state);
}

/// SPEC §6.1: unspecified or unknown type, bad time range and negative paging are
/// INVALID_ARGUMENT naming the field; the server answers normally afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_rejected_and_the_server_keeps_answering() {
    let server = TestServer::start(1).await;
    server
        .ingest(vec![flow(
            key(("shop", "frontend"), ("shop", "checkout")),
            closed_start(),
            1,
        )])
        .await;
    let cases: Vec<(FilterHintsRequest, &str)> = vec![
        (request(FilterType::Unspecified), "type"),
        (
            FilterHintsRequest {
                r#type: 9,
                ..Default::default()
            },
            "type",
        ),
        (
            FilterHintsRequest {
                r#type: -1,
                ..Default::default()
            },
            "type",
        ),
        (
            FilterHintsRequest {
                r#type: i32::MAX,
                ..Default::default()
            },
            "type",
        ),
        (ranged(FilterType::DestName, -10, -10), "start_time"),
        (ranged(FilterType::DestName, -10, -20), "start_time"),
        (
            ranged(FilterType::DestName, NOW + 100, NOW + 50),
            "start_time",
        ),
        // gte 0 is the oldest retained bucket, which is after lt = 1.
        (ranged(FilterType::DestName, 0, 1), "start_time"),
        // gte = now and lt 0 (= now): empty, so invalid.
        (ranged(FilterType::DestName, NOW, 0), "start_time"),
        (paged(FilterType::DestName, -1, 10), "page"),
        (paged(FilterType::DestName, 0, -1), "page_size"),
        (paged(FilterType::PolicyName, i64::MIN, 0), "page"),
        (paged(FilterType::PolicyName, 0, i64::MIN), "page_size"),
        (
            filtered(
                FilterType::DestName,
                eddy::proto::Filter {
                    dest_names: vec![StringMatch {
                        value: "x".into(),
                        r#type: 7,
                    }],
                    ..Default::default()
                },
            ),
            "dest_names",
        ),
    ];
    for (bad, field) in cases {
        let status = hints_error(&server, bad.clone()).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status}");
        assert!(
            status.message().contains(field),
            "{bad:?}: the message {:?} names {field}",
            status.message()
        );
        assert_eq!(
            hints(&server, request(FilterType::DestName)).await,
            all(&["checkout"])
        );
    }
    // The checks of the time range come before clamping: a valid range entirely in the
    // future is clamped, not rejected.
    assert_eq!(
        hints(
            &server,
            ranged(FilterType::DestName, NOW + 1000, NOW + 2000)
        )
        .await,
        all(&[])
    );
    // Bytes that are not a FilterHintsRequest: INTERNAL, as tonic answers.
    let status = raw_unary(
        &server.channel,
        "/goldmane.Flows/FilterHints",
        vec![0x08, 0xff, 0xff],
    )
    .await
    .expect_err("a truncated varint is not a message");
    assert_eq!(status.code(), Code::Internal, "{status}");
    let listed = server
        .flows()
        .list(FlowListRequest::default())
        .await
        .expect("List still answers")
        .into_inner();
    assert_eq!(listed.flows.len(), 1);
    assert_eq!(
        hints(&server, request(FilterType::SourceNamespace)).await,
        all(&["shop"])
    );
    common::assert_accounting(&server.state);
}
