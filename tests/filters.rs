//! Flows.List filters through gRPC against a real server (SPEC §5, with §4.5): every `Filter`
//! field, exact and fuzzy matching (§5.3), OR within a field and AND across fields (§5.1),
//! name and namespace aliases (§5.2), ports, actions, reporter and pending actions (§5.4), and
//! policy matches with wildcards and EndOfTier triggers (§5.5).
//!
//! The fixture holds six flows in bucket C-15 (C = B(NOW)), told apart by their `packets_in`
//! tag, and a seventh (tag 7) in bucket C-300 that only the time tests select:
//!
//! | tag | source ns / name          | dest ns / name          | port | proto | reporter | action |
//! |-----|---------------------------|-------------------------|------|-------|----------|--------|
//! | 1   | shop / frontend           | shop / checkout         | 443  | TCP   | Dst      | Allow  |
//! | 2   | shop / Frontend-Canary    | payments / ledger       | 8443 | TCP   | Src      | Deny   |
//! | 3   | - / pub                   | shop / checkout         | 443  | UDP   | Dst      | Allow  |
//! | 4   | kube-system / coredns     | Global / pvt            | 53   | UDP   | Src      | Pass   |
//! | 5   | shop / frontend           | - / pub                 | 80   | tcp   | Src      | Allow  |
//! | 6   | payments / ledger         | kube-system / coredns   | 53   | UDP   | Dst      | Deny   |
//! | 7   | shop / frontend           | shop / checkout         | 443  | TCP   | Dst      | Deny   |
//!
//! Policy traces (kind, tier, namespace, name, action):
//! 1. enforced: Calico default/shop/allow-frontend Allow.
//! 2. enforced: Calico default/payments/pass-to-security Pass, Global security//deny-all Deny;
//!    pending: Staged default/payments/staged-deny Deny.
//! 3. enforced: EndOfTier security Deny triggered by Calico security/shop/only-internal Pass,
//!    Calico default/shop/allow-udp Allow.
//! 4. no hits.
//! 5. enforced: Calico default/shop/allow-frontend Allow (rule 1); pending: Staged
//!    default/shop/staged-allow Allow.
//! 6. enforced: Kubernetes default/kube-system/dns Deny; pending: EndOfTier default Deny
//!    triggered by StagedKubernetes default/kube-system/staged-dns Deny.
//! 7. no hits.

mod common;

use common::*;
use eddy::proto::{
    Action, Filter, FlowKey, FlowListRequest, PolicyHit, PolicyKind, PolicyMatch, PolicyTrace,
    PortMatch, Reporter, StringMatch,
};

/// The current bucket, `B(NOW)`.
const C: i64 = 1_700_000_100;
const ALL: [i64; 6] = [1, 2, 3, 4, 5, 6];

fn indexed(hit: PolicyHit, policy_index: i64, rule_index: i64) -> PolicyHit {
    PolicyHit {
        policy_index,
        rule_index,
        ..hit
    }
}

fn end_of_tier(tier: &str, action: Action, trigger: PolicyHit) -> PolicyHit {
    PolicyHit {
        trigger: Some(Box::new(trigger)),
        ..hit(PolicyKind::EndOfTier, tier, "", "", action)
    }
}

#[allow(clippy::too_many_arguments)]
fn fixture_key(
    source: (&str, &str),
    dest: (&str, &str),
    port: i64,
    proto: &str,
    reporter: Reporter,
    action: Action,
    enforced: Vec<PolicyHit>,
    pending: Vec<PolicyHit>,
) -> FlowKey {
    FlowKey {
        dest_port: port,
        proto: proto.into(),
        reporter: reporter as i32,
        action: action as i32,
        policies: Some(PolicyTrace {
            enforced_policies: enforced,
            pending_policies: pending,
        }),
        ..key(source, dest)
    }
}

async fn fixture(workers: usize) -> TestServer {
    use Action::*;
    use PolicyKind::*;
    use Reporter::*;
    let server = TestServer::start(workers).await;
    let keys = vec![
        fixture_key(
            ("shop", "frontend"),
            ("shop", "checkout"),
            443,
            "TCP",
            Dst,
            Allow,
            vec![hit(
                CalicoNetworkPolicy,
                "default",
                "shop",
                "allow-frontend",
                Allow,
            )],
            vec![],
        ),
        fixture_key(
            ("shop", "Frontend-Canary"),
            ("payments", "ledger"),
            8443,
            "TCP",
            Src,
            Deny,
            vec![
                hit(
                    CalicoNetworkPolicy,
                    "default",
                    "payments",
                    "pass-to-security",
                    Pass,
                ),
                indexed(
                    hit(GlobalNetworkPolicy, "security", "", "deny-all", Deny),
                    1,
                    0,
                ),
            ],
            vec![hit(
                StagedNetworkPolicy,
                "default",
                "payments",
                "staged-deny",
                Deny,
            )],
        ),
        fixture_key(
            ("-", "pub"),
            ("shop", "checkout"),
            443,
            "UDP",
            Dst,
            Allow,
            vec![
                end_of_tier(
                    "security",
                    Deny,
                    hit(
                        CalicoNetworkPolicy,
                        "security",
                        "shop",
                        "only-internal",
                        Pass,
                    ),
                ),
                indexed(
                    hit(CalicoNetworkPolicy, "default", "shop", "allow-udp", Allow),
                    1,
                    0,
                ),
            ],
            vec![],
        ),
        fixture_key(
            ("kube-system", "coredns"),
            ("Global", "pvt"),
            53,
            "UDP",
            Src,
            Pass,
            vec![],
            vec![],
        ),
        fixture_key(
            ("shop", "frontend"),
            ("-", "pub"),
            80,
            "tcp",
            Src,
            Allow,
            vec![indexed(
                hit(
                    CalicoNetworkPolicy,
                    "default",
                    "shop",
                    "allow-frontend",
                    Allow,
                ),
                0,
                1,
            )],
            vec![hit(
                StagedNetworkPolicy,
                "default",
                "shop",
                "staged-allow",
                Allow,
            )],
        ),
        fixture_key(
            ("payments", "ledger"),
            ("kube-system", "coredns"),
            53,
            "UDP",
            Dst,
            Deny,
            vec![hit(NetworkPolicy, "default", "kube-system", "dns", Deny)],
            vec![end_of_tier(
                "default",
                Deny,
                hit(
                    StagedKubernetesNetworkPolicy,
                    "default",
                    "kube-system",
                    "staged-dns",
                    Deny,
                ),
            )],
        ),
    ];
    let mut flows: Vec<_> = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| flow(k, C - 10, i as i64 + 1))
        .collect();
    let old = fixture_key(
        ("shop", "frontend"),
        ("shop", "checkout"),
        443,
        "TCP",
        Dst,
        Deny,
        vec![],
        vec![],
    );
    flows.push(flow(old, C - 299, 7));
    server.ingest(flows).await;
    server
}

/// The sorted tags of the flows in bucket C-15 that `filter` selects.
async fn matched(server: &TestServer, filter: Filter) -> Vec<i64> {
    matched_in(server, filter, -100, 0).await
}

/// The sorted tags of the flows in `[gte, lt)` that `filter` selects; checks the totals.
async fn matched_in(server: &TestServer, filter: Filter, gte: i64, lt: i64) -> Vec<i64> {
    let listed = list_ok(
        server,
        FlowListRequest {
            start_time_gte: gte,
            start_time_lt: lt,
            filter: Some(filter),
            ..Default::default()
        },
    )
    .await;
    let mut tags: Vec<i64> = listed.flows.iter().map(|f| flow_of(f).packets_in).collect();
    tags.sort_unstable();
    let meta = listed.meta.expect("meta is set");
    assert_eq!(meta.total_results, tags.len() as i64);
    assert_eq!(meta.total_pages, i64::from(!tags.is_empty()));
    tags
}

fn source_names(matches: Vec<StringMatch>) -> Filter {
    Filter {
        source_names: matches,
        ..Default::default()
    }
}

fn dest_names(matches: Vec<StringMatch>) -> Filter {
    Filter {
        dest_names: matches,
        ..Default::default()
    }
}

fn source_namespaces(matches: Vec<StringMatch>) -> Filter {
    Filter {
        source_namespaces: matches,
        ..Default::default()
    }
}

fn dest_namespaces(matches: Vec<StringMatch>) -> Filter {
    Filter {
        dest_namespaces: matches,
        ..Default::default()
    }
}

fn protocols(matches: Vec<StringMatch>) -> Filter {
    Filter {
        protocols: matches,
        ..Default::default()
    }
}

fn ports(ports: &[i64]) -> Filter {
    Filter {
        dest_ports: ports.iter().map(|port| PortMatch { port: *port }).collect(),
        ..Default::default()
    }
}

fn actions(actions: &[Action]) -> Filter {
    Filter {
        actions: actions.iter().map(|a| *a as i32).collect(),
        ..Default::default()
    }
}

fn pending_actions(actions: &[Action]) -> Filter {
    Filter {
        pending_actions: actions.iter().map(|a| *a as i32).collect(),
        ..Default::default()
    }
}

fn reporter(reporter: Reporter) -> Filter {
    Filter {
        reporter: reporter as i32,
        ..Default::default()
    }
}

fn policies(matches: Vec<PolicyMatch>) -> Filter {
    Filter {
        policies: matches,
        ..Default::default()
    }
}

fn named(name: &str) -> PolicyMatch {
    PolicyMatch {
        name: name.into(),
        ..Default::default()
    }
}

async fn check(server: &TestServer, cases: Vec<(Filter, Vec<i64>)>) {
    for (filter, want) in cases {
        let described = format!("{filter:?}");
        assert_eq!(matched(server, filter).await, want, "filter {described}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_or_empty_filter_matches_everything() {
    let server = fixture(2).await;
    let listed = list_ok(
        &server,
        FlowListRequest {
            start_time_gte: -100,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(listed.flows.len(), 6);
    assert_eq!(matched(&server, Filter::default()).await, ALL);
    assert_eq!(
        matched_in(&server, Filter::default(), 0, 0).await,
        [1, 2, 3, 4, 5, 6, 7]
    );
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_match_exactly_or_fuzzily_with_aliases() {
    let server = fixture(2).await;
    check(
        &server,
        vec![
            // Exact is byte equality.
            (source_names(vec![exact("frontend")]), vec![1, 5]),
            (source_names(vec![exact("Frontend")]), vec![]),
            (source_names(vec![exact("front")]), vec![]),
            (source_names(vec![exact("Frontend-Canary")]), vec![2]),
            (source_names(vec![exact("FRONTEND-CANARY")]), vec![]),
            // Fuzzy is a case-insensitive substring; an empty fuzzy value matches everything.
            (source_names(vec![fuzzy("FRONT")]), vec![1, 2, 5]),
            (source_names(vec![fuzzy("canary")]), vec![2]),
            (source_names(vec![fuzzy("")]), ALL.to_vec()),
            (source_names(vec![exact("nope"), fuzzy("")]), ALL.to_vec()),
            (source_names(vec![fuzzy("zzz")]), vec![]),
            // OR within the field.
            (
                source_names(vec![exact("frontend"), exact("coredns")]),
                vec![1, 4, 5],
            ),
            (
                source_names(vec![exact("coredns"), fuzzy("LEDG")]),
                vec![4, 6],
            ),
            // Stored `pub` answers to PUBLIC NETWORK, stored `pvt` to PRIVATE NETWORK.
            (source_names(vec![exact("pub")]), vec![3]),
            (source_names(vec![exact("PUBLIC NETWORK")]), vec![3]),
            (source_names(vec![exact("Public Network")]), vec![]),
            (source_names(vec![fuzzy("public")]), vec![3]),
            (source_names(vec![fuzzy("c netw")]), vec![3]),
            (source_names(vec![exact("PRIVATE NETWORK")]), vec![]),
            (source_names(vec![exact("Global")]), vec![]),
            (dest_names(vec![exact("PRIVATE NETWORK")]), vec![4]),
            (dest_names(vec![exact("pvt")]), vec![4]),
            (dest_names(vec![fuzzy("Private")]), vec![4]),
            (dest_names(vec![exact("PUBLIC NETWORK")]), vec![5]),
            (dest_names(vec![fuzzy("network")]), vec![4, 5]),
            (dest_names(vec![exact("checkout")]), vec![1, 3]),
            // "o": checkout, coredns, and the aliases of pvt and pub.
            (dest_names(vec![fuzzy("O")]), vec![1, 3, 4, 5, 6]),
            (
                dest_names(vec![exact("ledger"), exact("PUBLIC NETWORK")]),
                vec![2, 5],
            ),
        ],
    )
    .await;
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_match_with_the_global_alias() {
    let server = fixture(1).await;
    check(
        &server,
        vec![
            (source_namespaces(vec![exact("shop")]), vec![1, 2, 5]),
            (source_namespaces(vec![exact("Shop")]), vec![]),
            (source_namespaces(vec![fuzzy("SHO")]), vec![1, 2, 5]),
            // Stored `-` answers to Global and stored Global to `-`.
            (source_namespaces(vec![exact("Global")]), vec![3]),
            (source_namespaces(vec![exact("-")]), vec![3]),
            (source_namespaces(vec![fuzzy("glo")]), vec![3]),
            (source_namespaces(vec![fuzzy("-")]), vec![3, 4]),
            (dest_namespaces(vec![exact("-")]), vec![4, 5]),
            (dest_namespaces(vec![exact("Global")]), vec![4, 5]),
            (dest_namespaces(vec![fuzzy("GLOBAL")]), vec![4, 5]),
            (dest_namespaces(vec![fuzzy("-")]), vec![4, 5, 6]),
            (dest_namespaces(vec![exact("global")]), vec![]),
            // Name aliases do not apply to namespaces.
            (dest_namespaces(vec![exact("PUBLIC NETWORK")]), vec![]),
            (
                dest_namespaces(vec![exact("payments"), exact("kube-system")]),
                vec![2, 6],
            ),
            (dest_namespaces(vec![fuzzy("")]), ALL.to_vec()),
        ],
    )
    .await;
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocols_ports_actions_and_reporter() {
    let server = fixture(1).await;
    use Action::*;
    check(
        &server,
        vec![
            (protocols(vec![exact("TCP")]), vec![1, 2]),
            (protocols(vec![exact("tcp")]), vec![5]),
            (protocols(vec![exact("UDP")]), vec![3, 4, 6]),
            (protocols(vec![exact("udp")]), vec![]),
            (protocols(vec![fuzzy("tcp")]), vec![1, 2, 5]),
            (protocols(vec![fuzzy("Dp")]), vec![3, 4, 6]),
            (
                protocols(vec![exact("TCP"), exact("UDP")]),
                vec![1, 2, 3, 4, 6],
            ),
            (protocols(vec![fuzzy("")]), ALL.to_vec()),
            (ports(&[53]), vec![4, 6]),
            (ports(&[443, 80]), vec![1, 3, 5]),
            (ports(&[8443, 53]), vec![2, 4, 6]),
            (ports(&[9999]), vec![]),
            (actions(&[Deny]), vec![2, 6]),
            (actions(&[Allow]), vec![1, 3, 5]),
            (actions(&[Allow, Pass]), vec![1, 3, 4, 5]),
            (actions(&[Pass]), vec![4]),
            (reporter(Reporter::Src), vec![2, 4, 5]),
            (reporter(Reporter::Dst), vec![1, 3, 6]),
            (reporter(Reporter::Unspecified), ALL.to_vec()),
        ],
    )
    .await;
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_actions_look_at_pending_hits_only() {
    let server = fixture(2).await;
    use Action::*;
    check(
        &server,
        vec![
            (pending_actions(&[Deny]), vec![2, 6]),
            (pending_actions(&[Allow]), vec![5]),
            // Flow 2 has an enforced Pass hit, but no pending one.
            (pending_actions(&[Pass]), vec![]),
            (pending_actions(&[Allow, Deny]), vec![2, 5, 6]),
        ],
    )
    .await;
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_matches_with_wildcards_and_end_of_tier_triggers() {
    let server = fixture(2).await;
    use PolicyKind::*;
    let kind = |kind: PolicyKind| PolicyMatch {
        kind: kind as i32,
        ..Default::default()
    };
    let action = |action: Action| PolicyMatch {
        action: action as i32,
        ..Default::default()
    };
    check(
        &server,
        vec![
            // All wildcards: any flow with a hit; flow 4 has none and matches no PolicyMatch.
            (policies(vec![PolicyMatch::default()]), vec![1, 2, 3, 5, 6]),
            (policies(vec![named("allow-frontend")]), vec![1, 5]),
            (
                policies(vec![PolicyMatch {
                    kind: CalicoNetworkPolicy as i32,
                    tier: "default".into(),
                    namespace: "shop".into(),
                    name: "allow-frontend".into(),
                    action: Action::Allow as i32,
                }]),
                vec![1, 5],
            ),
            (
                policies(vec![PolicyMatch {
                    action: Action::Deny as i32,
                    ..named("allow-frontend")
                }]),
                vec![],
            ),
            (
                policies(vec![PolicyMatch {
                    kind: GlobalNetworkPolicy as i32,
                    ..named("allow-frontend")
                }]),
                vec![],
            ),
            (policies(vec![kind(GlobalNetworkPolicy)]), vec![2]),
            (policies(vec![kind(StagedNetworkPolicy)]), vec![2, 5]),
            (policies(vec![kind(NetworkPolicy)]), vec![6]),
            (policies(vec![kind(Profile)]), vec![]),
            (policies(vec![kind(EndOfTier)]), vec![3, 6]),
            // Only name and namespace come from the trigger, not its kind.
            (policies(vec![kind(StagedKubernetesNetworkPolicy)]), vec![]),
            (
                policies(vec![PolicyMatch {
                    tier: "security".into(),
                    ..Default::default()
                }]),
                vec![2, 3],
            ),
            (
                policies(vec![PolicyMatch {
                    namespace: "payments".into(),
                    ..Default::default()
                }]),
                vec![2],
            ),
            // EndOfTier hits answer with their trigger's name and namespace (enforced and
            // pending).
            (
                policies(vec![PolicyMatch {
                    namespace: "kube-system".into(),
                    ..Default::default()
                }]),
                vec![6],
            ),
            (policies(vec![named("only-internal")]), vec![3]),
            (
                policies(vec![PolicyMatch {
                    namespace: "shop".into(),
                    tier: "security".into(),
                    kind: EndOfTier as i32,
                    ..named("only-internal")
                }]),
                vec![3],
            ),
            (
                policies(vec![PolicyMatch {
                    tier: "default".into(),
                    ..named("only-internal")
                }]),
                vec![],
            ),
            (policies(vec![named("staged-dns")]), vec![6]),
            (
                policies(vec![PolicyMatch {
                    action: Action::Deny as i32,
                    ..named("staged-dns")
                }]),
                vec![6],
            ),
            // The action is the hit's own: flow 3's trigger passes, its EndOfTier hit denies.
            (policies(vec![action(Action::Pass)]), vec![2]),
            (policies(vec![action(Action::Deny)]), vec![2, 3, 6]),
            (policies(vec![action(Action::Allow)]), vec![1, 3, 5]),
            // OR across PolicyMatches.
            (
                policies(vec![named("deny-all"), named("staged-dns")]),
                vec![2, 6],
            ),
            (policies(vec![named("no-such-policy")]), vec![]),
            (
                policies(vec![named("no-such-policy"), named("dns")]),
                vec![6],
            ),
        ],
    )
    .await;
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_combine_with_and() {
    let server = fixture(1).await;
    use Action::*;
    let exactly_six = Filter {
        source_names: vec![exact("ledger")],
        source_namespaces: vec![exact("payments")],
        dest_names: vec![fuzzy("DNS")],
        dest_namespaces: vec![exact("kube-system")],
        protocols: vec![exact("UDP")],
        dest_ports: vec![PortMatch { port: 53 }],
        actions: vec![Deny as i32],
        policies: vec![named("dns")],
        reporter: Reporter::Dst as i32,
        pending_actions: vec![Deny as i32],
    };
    check(
        &server,
        vec![
            (
                Filter {
                    actions: vec![Allow as i32],
                    ..source_namespaces(vec![exact("shop")])
                },
                vec![1, 5],
            ),
            (
                Filter {
                    actions: vec![Allow as i32],
                    reporter: Reporter::Dst as i32,
                    ..source_namespaces(vec![exact("shop")])
                },
                vec![1],
            ),
            (
                Filter {
                    dest_ports: vec![PortMatch { port: 8443 }],
                    ..source_names(vec![fuzzy("front")])
                },
                vec![2],
            ),
            (
                Filter {
                    dest_namespaces: vec![exact("Global")],
                    ..protocols(vec![fuzzy("udp")])
                },
                vec![4],
            ),
            (
                Filter {
                    source_namespaces: vec![exact("Global")],
                    ..dest_names(vec![exact("checkout")])
                },
                vec![3],
            ),
            (
                Filter {
                    reporter: Reporter::Src as i32,
                    ..policies(vec![PolicyMatch {
                        tier: "default".into(),
                        ..Default::default()
                    }])
                },
                vec![2, 5],
            ),
            (
                Filter {
                    pending_actions: vec![Deny as i32],
                    ..policies(vec![named("allow-frontend")])
                },
                vec![],
            ),
            (
                Filter {
                    pending_actions: vec![Allow as i32],
                    ..policies(vec![named("allow-frontend")])
                },
                vec![5],
            ),
            (exactly_six.clone(), vec![6]),
            (
                Filter {
                    reporter: Reporter::Src as i32,
                    ..exactly_six.clone()
                },
                vec![],
            ),
            (
                Filter {
                    dest_ports: vec![PortMatch { port: 53 }, PortMatch { port: 443 }],
                    ..exactly_six
                },
                vec![6],
            ),
        ],
    )
    .await;
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_apply_together_with_time_and_paging() {
    let server = fixture(2).await;
    let frontend = || source_names(vec![exact("frontend")]);
    assert_eq!(matched_in(&server, frontend(), 0, 0).await, vec![1, 5, 7]);
    assert_eq!(matched_in(&server, frontend(), -100, 0).await, vec![1, 5]);
    assert_eq!(
        matched_in(&server, frontend(), C - 300, C - 285).await,
        vec![7]
    );
    assert_eq!(
        matched_in(&server, actions(&[Action::Deny]), 0, 0).await,
        vec![2, 6, 7]
    );

    // Three matches, pages of two.
    let page = |page| FlowListRequest {
        start_time_gte: -100,
        page,
        page_size: 2,
        filter: Some(source_names(vec![fuzzy("front")])),
        sort_by: vec![sort_by(eddy::proto::SortBy::SourceName)],
        ..Default::default()
    };
    // Byte order: "Frontend-Canary" < "frontend" (tags 1 and 5 tie and go by id).
    let first = list_ok(&server, page(0)).await;
    let second = list_ok(&server, page(1)).await;
    for listed in [&first, &second] {
        let meta = listed.meta.as_ref().expect("meta is set");
        assert_eq!((meta.total_results, meta.total_pages), (3, 2));
    }
    assert_eq!(first.flows.len(), 2);
    assert_eq!(flow_of(&first.flows[0]).packets_in, 2);
    assert_eq!(second.flows.len(), 1);
    let mut rest = vec![
        flow_of(&first.flows[1]).packets_in,
        flow_of(&second.flows[0]).packets_in,
    ];
    assert!(first.flows[1].id < second.flows[0].id);
    rest.sort_unstable();
    assert_eq!(rest, vec![1, 5]);
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_of_other_fields_and_late_strings_match_correctly() {
    // A filter value that is a stored value of another field (namespace `shop` is not a
    // name) or was never stored matches nothing in the field it names.
    let server = fixture(1).await;
    check(
        &server,
        vec![
            (source_names(vec![exact("shop")]), vec![]),
            (dest_names(vec![exact("payments")]), vec![]),
            (source_names(vec![exact("never-seen-before")]), vec![]),
            (protocols(vec![exact("checkout")]), vec![]),
        ],
    )
    .await;
    // New strings arriving later are matched by later requests.
    let mut k = key(("shop", "late-comer"), ("shop", "checkout"));
    k.proto = "SCTP".into();
    server.ingest(vec![flow(k, C - 5, 8)]).await;
    check(
        &server,
        vec![
            (source_names(vec![exact("late-comer")]), vec![8]),
            (source_names(vec![fuzzy("COMER")]), vec![8]),
            (protocols(vec![fuzzy("sctp")]), vec![8]),
        ],
    )
    .await;
    common::assert_accounting(&server.state);
}
