//! Statistics.List through gRPC against a real server (SPEC §8, with §2.5-§2.6 time ranges and
//! §1.4 enum validation): every statistic type x group-by x time_series over one fixture whose
//! expected arrays are computed by hand below; policy_match; ordering; validation; expiry.
//!
//! The fixture, on a manual clock at `NOW` (current bucket `C`), buckets `b0 = C-30`,
//! `b1 = C-15`, `b2 = C`. Counters are `(packets_in, packets_out, live)`; bytes are always
//! `100 x packets_in` and `1000 x packets_out`.
//!
//! | flow | reporter | enforced | pending | b0 | b1 | b2 |
//! |---|---|---|---|---|---|---|
//! | F1 | Dst | web Allow r1, web Allow r3 | | (1,2,1) | (10,20,2) | |
//! | F2 | Src | web Allow r1 | staged-web Deny r0, web Allow r1 | | (3,4,5) | (7,8,6) |
//! | F3 | Dst | gate Pass r0, web Deny r2 | gate Deny r2 | | | (5,6,4) |
//! | F4 | Dst | EndOfTier(security) Deny r-1, trigger gate | EndOfTier(audit) Deny r-1 | (2,3,7) | | |
//!
//! `web` is (CalicoNetworkPolicy, default, shop, web); `staged-web` is (StagedNetworkPolicy,
//! default, shop, staged-web); `gate` is (GlobalNetworkPolicy, security, "", gate); the
//! untriggered EndOfTier is (EndOfTier, audit, "", "").

mod common;

use common::*;
use eddy::proto::{
    Action, Flow, FlowKey, PolicyHit, PolicyKind, PolicyMatch, PolicyTrace, Reporter,
    RuleDirection, StatisticType, StatisticsGroupBy, StatisticsRequest, StatisticsResult,
};
use eddy::retention::Retention;
use tonic::Code;

const C: i64 = 1_700_000_100;
const B0: i64 = C - 30;
const B1: i64 = C - 15;
const B2: i64 = C;

/// The columns of one result: allowed in/out, denied in/out, passed in/out.
type Columns = [Vec<i64>; 6];

/// A result's identity: tier, kind, namespace, name, action, rule index, direction.
type Identity = (String, i32, String, String, i32, i64, i32);

fn identity(
    tier: &str,
    kind: PolicyKind,
    namespace: &str,
    name: &str,
    action: Action,
    rule_index: i64,
    direction: RuleDirection,
) -> Identity {
    (
        tier.into(),
        kind as i32,
        namespace.into(),
        name.into(),
        action as i32,
        rule_index,
        direction as i32,
    )
}

fn policy(tier: &str, kind: PolicyKind, namespace: &str, name: &str) -> Identity {
    identity(
        tier,
        kind,
        namespace,
        name,
        Action::Unspecified,
        0,
        RuleDirection::Any,
    )
}

fn audit() -> Identity {
    policy("audit", PolicyKind::EndOfTier, "", "")
}
fn web() -> Identity {
    policy("default", PolicyKind::CalicoNetworkPolicy, "shop", "web")
}
fn staged_web() -> Identity {
    policy(
        "default",
        PolicyKind::StagedNetworkPolicy,
        "shop",
        "staged-web",
    )
}
fn gate() -> Identity {
    policy("security", PolicyKind::GlobalNetworkPolicy, "", "gate")
}

/// `policy` narrowed to one rule.
fn rule(policy: Identity, action: Action, rule_index: i64, direction: RuleDirection) -> Identity {
    (
        policy.0,
        policy.1,
        policy.2,
        policy.3,
        action as i32,
        rule_index,
        direction as i32,
    )
}

fn result_identity(result: &StatisticsResult) -> Identity {
    let hit = result
        .policy
        .as_ref()
        .expect("StatisticsResult.policy is set");
    (
        hit.tier.clone(),
        hit.kind,
        hit.namespace.clone(),
        hit.name.clone(),
        hit.action,
        hit.rule_index,
        result.direction,
    )
}

fn columns(result: &StatisticsResult) -> Columns {
    [
        result.allowed_in.clone(),
        result.allowed_out.clone(),
        result.denied_in.clone(),
        result.denied_out.clone(),
        result.passed_in.clone(),
        result.passed_out.clone(),
    ]
}

/// Columns from the non-zero ones; the rest are zero arrays of the same width.
fn cols(width: usize, set: &[(usize, &[i64])]) -> Columns {
    let mut columns: Columns = std::array::from_fn(|_| vec![0; width]);
    for (slot, values) in set {
        assert_eq!(values.len(), width);
        columns[*slot] = values.to_vec();
    }
    columns
}

const ALLOWED_IN: usize = 0;
const ALLOWED_OUT: usize = 1;
const DENIED_IN: usize = 2;
const DENIED_OUT: usize = 3;
const PASSED_IN: usize = 4;
const PASSED_OUT: usize = 5;

/// Every column summed to one element (what `time_series = false` returns).
fn summed(columns: &Columns) -> Columns {
    std::array::from_fn(|i| vec![columns[i].iter().sum()])
}

/// Byte columns from packet columns: the fixture's bytes are 100 x in, 1000 x out.
fn as_bytes(columns: &Columns) -> Columns {
    std::array::from_fn(|i| {
        let factor = if i % 2 == 0 { 100 } else { 1000 };
        columns[i].iter().map(|v| v * factor).collect()
    })
}

fn traffic(key: &FlowKey, start: i64, packets_in: i64, packets_out: i64, live: i64) -> Flow {
    Flow {
        key: Some(key.clone()),
        start_time: start + 3,
        end_time: start + 9,
        source_labels: vec![],
        dest_labels: vec![],
        packets_in,
        packets_out,
        bytes_in: 100 * packets_in,
        bytes_out: 1000 * packets_out,
        num_connections_started: 1,
        num_connections_completed: 1,
        num_connections_live: live,
    }
}

fn ruled(mut hit: PolicyHit, rule_index: i64) -> PolicyHit {
    hit.rule_index = rule_index;
    hit
}

fn traced(
    dest: &str,
    reporter: Reporter,
    enforced: Vec<PolicyHit>,
    pending: Vec<PolicyHit>,
) -> FlowKey {
    let mut k = key(("shop", "frontend"), ("shop", dest));
    k.reporter = reporter as i32;
    k.policies = Some(PolicyTrace {
        enforced_policies: enforced,
        pending_policies: pending,
    });
    k
}

fn fixture() -> Vec<Flow> {
    let web = |action, rule| {
        ruled(
            hit(
                PolicyKind::CalicoNetworkPolicy,
                "default",
                "shop",
                "web",
                action,
            ),
            rule,
        )
    };
    let staged_web = ruled(
        hit(
            PolicyKind::StagedNetworkPolicy,
            "default",
            "shop",
            "staged-web",
            Action::Deny,
        ),
        0,
    );
    let gate = |action, rule| {
        ruled(
            hit(
                PolicyKind::GlobalNetworkPolicy,
                "security",
                "",
                "gate",
                action,
            ),
            rule,
        )
    };
    let mut end_of_security = ruled(
        hit(PolicyKind::EndOfTier, "security", "", "", Action::Deny),
        -1,
    );
    end_of_security.trigger = Some(Box::new(gate(Action::Deny, 4)));
    let end_of_audit = ruled(
        hit(PolicyKind::EndOfTier, "audit", "", "", Action::Deny),
        -1,
    );

    let f1 = traced(
        "f1",
        Reporter::Dst,
        vec![web(Action::Allow, 1), web(Action::Allow, 3)],
        vec![],
    );
    let f2 = traced(
        "f2",
        Reporter::Src,
        vec![web(Action::Allow, 1)],
        vec![staged_web, web(Action::Allow, 1)],
    );
    let f3 = traced(
        "f3",
        Reporter::Dst,
        vec![gate(Action::Pass, 0), web(Action::Deny, 2)],
        vec![gate(Action::Deny, 2)],
    );
    let f4 = traced(
        "f4",
        Reporter::Dst,
        vec![end_of_security],
        vec![end_of_audit],
    );
    vec![
        traffic(&f1, B0, 1, 2, 1),
        traffic(&f1, B1, 10, 20, 2),
        traffic(&f2, B1, 3, 4, 5),
        traffic(&f2, B2, 7, 8, 6),
        traffic(&f3, B2, 5, 6, 4),
        traffic(&f4, B0, 2, 3, 7),
    ]
}

async fn fixture_server(workers: usize) -> TestServer {
    let server = TestServer::start(workers).await;
    server.ingest(fixture()).await;
    server
}

fn request(
    kind: StatisticType,
    group_by: StatisticsGroupBy,
    time_series: bool,
) -> StatisticsRequest {
    StatisticsRequest {
        r#type: kind as i32,
        group_by: group_by as i32,
        time_series,
        ..Default::default()
    }
}

/// Every result of a call that must succeed.
async fn statistics(server: &TestServer, request: StatisticsRequest) -> Vec<StatisticsResult> {
    let mut stream = server
        .statistics()
        .list(request)
        .await
        .expect("Statistics succeeds")
        .into_inner();
    let mut results = Vec::new();
    while let Some(result) = stream
        .message()
        .await
        .expect("the results stream has no error")
    {
        results.push(result);
    }
    results
}

async fn statistics_status(server: &TestServer, request: StatisticsRequest) -> tonic::Status {
    let call = server.statistics().list(request).await;
    match call {
        Err(status) => status,
        Ok(response) => {
            let mut stream = response.into_inner();
            match stream.message().await {
                Err(status) => status,
                Ok(message) => panic!("Statistics should fail but returned {message:?}"),
            }
        }
    }
}

/// Checks results against `expected` in order, and that each carries the request's type,
/// group-by and `x`.
fn assert_results(
    results: &[StatisticsResult],
    expected: &[(Identity, Columns)],
    request: &StatisticsRequest,
    x: &[i64],
) {
    let got: Vec<(Identity, Columns)> = results
        .iter()
        .map(|r| (result_identity(r), columns(r)))
        .collect();
    assert_eq!(got, expected, "{request:?}");
    for result in results {
        assert_eq!(result.r#type, request.r#type);
        assert_eq!(result.group_by, request.group_by);
        assert_eq!(result.x, x);
        let hit = result.policy.as_ref().expect("policy is set");
        assert_eq!(hit.policy_index, 0);
        assert!(hit.trigger.is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-computed expectations over x = [C-45, b0, b1, b2]
// ---------------------------------------------------------------------------------------------

/// Policy level, PacketCount. web: allowed = F1 (once for r1 and r3) + F2 (once for the
/// enforced and pending r1), denied = F3. gate: passed = F3, denied = F3's pending Deny + F4's
/// EndOfTier through its trigger. Directions are summed at the policy level.
fn policy_packets() -> Vec<(Identity, Columns)> {
    vec![
        (
            audit(),
            cols(
                4,
                &[(DENIED_IN, &[0, 2, 0, 0]), (DENIED_OUT, &[0, 3, 0, 0])],
            ),
        ),
        (
            web(),
            cols(
                4,
                &[
                    (ALLOWED_IN, &[0, 1, 13, 7]),
                    (ALLOWED_OUT, &[0, 2, 24, 8]),
                    (DENIED_IN, &[0, 0, 0, 5]),
                    (DENIED_OUT, &[0, 0, 0, 6]),
                ],
            ),
        ),
        (
            staged_web(),
            cols(
                4,
                &[(DENIED_IN, &[0, 0, 3, 7]), (DENIED_OUT, &[0, 0, 4, 8])],
            ),
        ),
        (
            gate(),
            cols(
                4,
                &[
                    (DENIED_IN, &[0, 2, 0, 5]),
                    (DENIED_OUT, &[0, 3, 0, 6]),
                    (PASSED_IN, &[0, 0, 0, 5]),
                    (PASSED_OUT, &[0, 0, 0, 6]),
                ],
            ),
        ),
    ]
}

/// Policy level, LiveConnectionCount: live connections of ingress flows (F1, F3, F4) go to
/// `*_in`, of egress flows (F2) to `*_out`.
fn policy_live() -> Vec<(Identity, Columns)> {
    vec![
        (audit(), cols(4, &[(DENIED_IN, &[0, 7, 0, 0])])),
        (
            web(),
            cols(
                4,
                &[
                    (ALLOWED_IN, &[0, 1, 2, 0]),
                    (ALLOWED_OUT, &[0, 0, 5, 6]),
                    (DENIED_IN, &[0, 0, 0, 4]),
                ],
            ),
        ),
        (staged_web(), cols(4, &[(DENIED_OUT, &[0, 0, 5, 6])])),
        (
            gate(),
            cols(4, &[(DENIED_IN, &[0, 7, 0, 4]), (PASSED_IN, &[0, 0, 0, 4])]),
        ),
    ]
}

/// Rule level, PacketCount, ordered by policy, action, rule index (numerically: -1 first),
/// direction (Ingress before Egress).
fn rule_packets() -> Vec<(Identity, Columns)> {
    use RuleDirection::{Egress, Ingress};
    vec![
        (
            rule(audit(), Action::Deny, -1, Ingress),
            cols(
                4,
                &[(DENIED_IN, &[0, 2, 0, 0]), (DENIED_OUT, &[0, 3, 0, 0])],
            ),
        ),
        (
            rule(web(), Action::Allow, 1, Ingress),
            cols(
                4,
                &[(ALLOWED_IN, &[0, 1, 10, 0]), (ALLOWED_OUT, &[0, 2, 20, 0])],
            ),
        ),
        (
            rule(web(), Action::Allow, 1, Egress),
            cols(
                4,
                &[(ALLOWED_IN, &[0, 0, 3, 7]), (ALLOWED_OUT, &[0, 0, 4, 8])],
            ),
        ),
        (
            rule(web(), Action::Allow, 3, Ingress),
            cols(
                4,
                &[(ALLOWED_IN, &[0, 1, 10, 0]), (ALLOWED_OUT, &[0, 2, 20, 0])],
            ),
        ),
        (
            rule(web(), Action::Deny, 2, Ingress),
            cols(
                4,
                &[(DENIED_IN, &[0, 0, 0, 5]), (DENIED_OUT, &[0, 0, 0, 6])],
            ),
        ),
        (
            rule(staged_web(), Action::Deny, 0, Egress),
            cols(
                4,
                &[(DENIED_IN, &[0, 0, 3, 7]), (DENIED_OUT, &[0, 0, 4, 8])],
            ),
        ),
        (
            rule(gate(), Action::Deny, -1, Ingress),
            cols(
                4,
                &[(DENIED_IN, &[0, 2, 0, 0]), (DENIED_OUT, &[0, 3, 0, 0])],
            ),
        ),
        (
            rule(gate(), Action::Deny, 2, Ingress),
            cols(
                4,
                &[(DENIED_IN, &[0, 0, 0, 5]), (DENIED_OUT, &[0, 0, 0, 6])],
            ),
        ),
        (
            rule(gate(), Action::Pass, 0, Ingress),
            cols(
                4,
                &[(PASSED_IN, &[0, 0, 0, 5]), (PASSED_OUT, &[0, 0, 0, 6])],
            ),
        ),
    ]
}

/// Rule level, LiveConnectionCount.
fn rule_live() -> Vec<(Identity, Columns)> {
    use RuleDirection::{Egress, Ingress};
    vec![
        (
            rule(audit(), Action::Deny, -1, Ingress),
            cols(4, &[(DENIED_IN, &[0, 7, 0, 0])]),
        ),
        (
            rule(web(), Action::Allow, 1, Ingress),
            cols(4, &[(ALLOWED_IN, &[0, 1, 2, 0])]),
        ),
        (
            rule(web(), Action::Allow, 1, Egress),
            cols(4, &[(ALLOWED_OUT, &[0, 0, 5, 6])]),
        ),
        (
            rule(web(), Action::Allow, 3, Ingress),
            cols(4, &[(ALLOWED_IN, &[0, 1, 2, 0])]),
        ),
        (
            rule(web(), Action::Deny, 2, Ingress),
            cols(4, &[(DENIED_IN, &[0, 0, 0, 4])]),
        ),
        (
            rule(staged_web(), Action::Deny, 0, Egress),
            cols(4, &[(DENIED_OUT, &[0, 0, 5, 6])]),
        ),
        (
            rule(gate(), Action::Deny, -1, Ingress),
            cols(4, &[(DENIED_IN, &[0, 7, 0, 0])]),
        ),
        (
            rule(gate(), Action::Deny, 2, Ingress),
            cols(4, &[(DENIED_IN, &[0, 0, 0, 4])]),
        ),
        (
            rule(gate(), Action::Pass, 0, Ingress),
            cols(4, &[(PASSED_IN, &[0, 0, 0, 4])]),
        ),
    ]
}

fn expected(kind: StatisticType, group_by: StatisticsGroupBy) -> Vec<(Identity, Columns)> {
    let (packets, live) = match group_by {
        StatisticsGroupBy::Policy => (policy_packets(), policy_live()),
        StatisticsGroupBy::PolicyRule => (rule_packets(), rule_live()),
    };
    match kind {
        StatisticType::PacketCount => packets,
        StatisticType::ByteCount => packets
            .into_iter()
            .map(|(id, columns)| (id, as_bytes(&columns)))
            .collect(),
        StatisticType::LiveConnectionCount => live,
    }
}

// ---------------------------------------------------------------------------------------------
// §8.2-§8.5, §8.7: every type x group-by x time_series
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_grouping_as_a_time_series_matches_the_hand_computed_arrays() {
    for workers in [1, 2] {
        let server = fixture_server(workers).await;
        for kind in [
            StatisticType::PacketCount,
            StatisticType::ByteCount,
            StatisticType::LiveConnectionCount,
        ] {
            for group_by in [StatisticsGroupBy::Policy, StatisticsGroupBy::PolicyRule] {
                let request = StatisticsRequest {
                    start_time_gte: C - 45,
                    ..request(kind, group_by, true)
                };
                let results = statistics(&server, request.clone()).await;
                assert_results(
                    &results,
                    &expected(kind, group_by),
                    &request,
                    &[C - 45, B0, B1, B2],
                );
            }
        }
        common::assert_accounting(&server.state);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_grouping_without_time_series_is_one_summed_element_and_no_axis() {
    let server = fixture_server(2).await;
    for kind in [
        StatisticType::PacketCount,
        StatisticType::ByteCount,
        StatisticType::LiveConnectionCount,
    ] {
        for group_by in [StatisticsGroupBy::Policy, StatisticsGroupBy::PolicyRule] {
            // The default range: everything retained up to now.
            let request = request(kind, group_by, false);
            let results = statistics(&server, request.clone()).await;
            let sums: Vec<(Identity, Columns)> = expected(kind, group_by)
                .iter()
                .map(|(id, columns)| (id.clone(), summed(columns)))
                .collect();
            assert_results(&results, &sums, &request, &[]);
        }
    }
    // The sums written out once, for the policy-level packets.
    let request = request(StatisticType::PacketCount, StatisticsGroupBy::Policy, false);
    let results = statistics(&server, request.clone()).await;
    assert_results(
        &results,
        &[
            (audit(), cols(1, &[(DENIED_IN, &[2]), (DENIED_OUT, &[3])])),
            (
                web(),
                cols(
                    1,
                    &[
                        (ALLOWED_IN, &[21]),
                        (ALLOWED_OUT, &[34]),
                        (DENIED_IN, &[5]),
                        (DENIED_OUT, &[6]),
                    ],
                ),
            ),
            (
                staged_web(),
                cols(1, &[(DENIED_IN, &[10]), (DENIED_OUT, &[12])]),
            ),
            (
                gate(),
                cols(
                    1,
                    &[
                        (DENIED_IN, &[7]),
                        (DENIED_OUT, &[9]),
                        (PASSED_IN, &[5]),
                        (PASSED_OUT, &[6]),
                    ],
                ),
            ),
        ],
        &request,
        &[],
    );
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_axis_is_dense_shared_and_follows_the_selected_buckets() {
    let server = fixture_server(2).await;
    // Default range: every retained bucket from the oldest through the current one.
    let request_all = request(StatisticType::PacketCount, StatisticsGroupBy::Policy, true);
    let results = statistics(&server, request_all.clone()).await;
    let axis: Vec<i64> = (0..=240).map(|i| C - 3600 + 15 * i).collect();
    let at = |bucket: i64| ((bucket - (C - 3600)) / 15) as usize;
    let widened: Vec<(Identity, Columns)> = policy_packets()
        .into_iter()
        .map(|(id, columns)| {
            let wide: Columns = std::array::from_fn(|i| {
                let mut values = vec![0; axis.len()];
                for (slot, bucket) in [B0, B1, B2].into_iter().enumerate() {
                    values[at(bucket)] = columns[i][slot + 1];
                }
                values
            });
            (id, wide)
        })
        .collect();
    assert_results(&results, &widened, &request_all, &axis);

    // Relative start -40 (C-33): the first bucket starting at or after it is b0.
    let relative = StatisticsRequest {
        start_time_gte: -40,
        ..request(StatisticType::PacketCount, StatisticsGroupBy::Policy, true)
    };
    let results = statistics(&server, relative.clone()).await;
    let trimmed: Vec<(Identity, Columns)> = policy_packets()
        .into_iter()
        .map(|(id, columns)| (id, std::array::from_fn(|i| columns[i][1..].to_vec())))
        .collect();
    assert_results(&results, &trimmed, &relative, &[B0, B1, B2]);

    // A start inside b0 and an end at b2's start select b1 only: whole buckets by start.
    let middle = StatisticsRequest {
        start_time_gte: B0 + 1,
        start_time_lt: B2,
        ..request(StatisticType::PacketCount, StatisticsGroupBy::Policy, true)
    };
    let results = statistics(&server, middle.clone()).await;
    assert_results(
        &results,
        &[
            (web(), cols(1, &[(ALLOWED_IN, &[13]), (ALLOWED_OUT, &[24])])),
            (
                staged_web(),
                cols(1, &[(DENIED_IN, &[3]), (DENIED_OUT, &[4])]),
            ),
        ],
        &middle,
        &[B1],
    );
    // The same without time series: one element, no axis.
    let middle_sum = StatisticsRequest {
        time_series: false,
        ..middle
    };
    let results = statistics(&server, middle_sum.clone()).await;
    assert_results(
        &results,
        &[
            (web(), cols(1, &[(ALLOWED_IN, &[13]), (ALLOWED_OUT, &[24])])),
            (
                staged_web(),
                cols(1, &[(DENIED_IN, &[3]), (DENIED_OUT, &[4])]),
            ),
        ],
        &middle_sum,
        &[],
    );

    // A range older than retention is clamped: valid, nothing selected, OK without messages.
    let old = StatisticsRequest {
        start_time_gte: 1,
        start_time_lt: 1000,
        ..request(StatisticType::PacketCount, StatisticsGroupBy::Policy, true)
    };
    assert!(statistics(&server, old).await.is_empty());
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_bucket_counts_when_its_start_is_before_the_end_and_the_future_bucket_on_request(
) {
    // The clock on a bucket boundary: `now` is the current bucket's start.
    let server = TestServer::start_with(
        2,
        Retention {
            window: 15,
            closed_buckets: 4,
        },
        C,
    )
    .await;
    let allow = hit(
        PolicyKind::CalicoNetworkPolicy,
        "default",
        "shop",
        "web",
        Action::Allow,
    );
    let k = traced("svc", Reporter::Dst, vec![allow], vec![]);
    server
        .ingest(vec![
            traffic(&k, C - 15, 1, 1, 0),
            traffic(&k, C, 10, 10, 0),
            traffic(&k, C + 15, 100, 100, 0),
        ])
        .await;
    let packets_in = |results: &[StatisticsResult]| -> Vec<(Vec<i64>, Vec<i64>)> {
        results
            .iter()
            .map(|r| (r.x.clone(), r.allowed_in.clone()))
            .collect()
    };
    // start_time_lt = now = C: the current bucket's start is not before it.
    let default = request(StatisticType::PacketCount, StatisticsGroupBy::Policy, true);
    assert_eq!(
        packets_in(&statistics(&server, default).await),
        vec![(vec![C - 60, C - 45, C - 30, C - 15], vec![0, 0, 0, 1])]
    );
    // An end past the future bucket is clamped to its end.
    let future = StatisticsRequest {
        start_time_gte: C - 20,
        start_time_lt: C + 1000,
        ..request(StatisticType::PacketCount, StatisticsGroupBy::Policy, true)
    };
    assert_eq!(
        packets_in(&statistics(&server, future).await),
        vec![(vec![C - 15, C, C + 15], vec![1, 10, 100])]
    );
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §8.6: policy_match
// ---------------------------------------------------------------------------------------------

fn matching(group_by: StatisticsGroupBy, policy_match: PolicyMatch) -> StatisticsRequest {
    StatisticsRequest {
        start_time_gte: C - 45,
        policy_match: Some(policy_match),
        ..request(StatisticType::PacketCount, group_by, true)
    }
}

/// Which expected results a policy match keeps.
type Keep = Box<dyn Fn(&Identity) -> bool>;

/// The expectations of `group_by` whose identity satisfies `keep`.
fn only(group_by: StatisticsGroupBy, keep: impl Fn(&Identity) -> bool) -> Vec<(Identity, Columns)> {
    expected(StatisticType::PacketCount, group_by)
        .into_iter()
        .filter(|(id, _)| keep(id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_match_wildcards_exact_fields_and_action_at_both_levels() {
    let server = fixture_server(2).await;
    let x = [C - 45, B0, B1, B2];
    for group_by in [StatisticsGroupBy::Policy, StatisticsGroupBy::PolicyRule] {
        // An empty match is all wildcards.
        let request = matching(group_by, PolicyMatch::default());
        let results = statistics(&server, request.clone()).await;
        assert_results(
            &results,
            &expected(StatisticType::PacketCount, group_by),
            &request,
            &x,
        );

        // One field at a time.
        let cases: Vec<(PolicyMatch, Keep)> = vec![
            (
                PolicyMatch {
                    name: "gate".into(),
                    ..Default::default()
                },
                Box::new(|id: &Identity| id.3 == "gate"),
            ),
            (
                PolicyMatch {
                    tier: "default".into(),
                    ..Default::default()
                },
                Box::new(|id: &Identity| id.0 == "default"),
            ),
            (
                PolicyMatch {
                    namespace: "shop".into(),
                    ..Default::default()
                },
                Box::new(|id: &Identity| id.2 == "shop"),
            ),
            (
                PolicyMatch {
                    kind: PolicyKind::StagedNetworkPolicy as i32,
                    ..Default::default()
                },
                Box::new(|id: &Identity| id.1 == PolicyKind::StagedNetworkPolicy as i32),
            ),
            // The triggered EndOfTier hit counts for gate, so only the untriggered one is
            // of kind EndOfTier.
            (
                PolicyMatch {
                    kind: PolicyKind::EndOfTier as i32,
                    ..Default::default()
                },
                Box::new(|id: &Identity| id.0 == "audit"),
            ),
            // Every field exact.
            (
                PolicyMatch {
                    kind: PolicyKind::CalicoNetworkPolicy as i32,
                    tier: "default".into(),
                    namespace: "shop".into(),
                    name: "web".into(),
                    action: Action::Unspecified as i32,
                },
                Box::new(|id: &Identity| id.3 == "web"),
            ),
        ];
        for (policy_match, keep) in cases {
            let request = matching(group_by, policy_match);
            let results = statistics(&server, request.clone()).await;
            assert_results(&results, &only(group_by, keep), &request, &x);
        }

        // Unknown values and an action no hit of the policy has: OK, no messages.
        for policy_match in [
            PolicyMatch {
                name: "nope".into(),
                ..Default::default()
            },
            PolicyMatch {
                name: "gate".into(),
                action: Action::Allow as i32,
                ..Default::default()
            },
            PolicyMatch {
                name: "web".into(),
                kind: PolicyKind::GlobalNetworkPolicy as i32,
                ..Default::default()
            },
        ] {
            assert!(statistics(&server, matching(group_by, policy_match))
                .await
                .is_empty());
        }
    }

    // The action at the rule level keeps only rules with that action.
    let request = matching(
        StatisticsGroupBy::PolicyRule,
        PolicyMatch {
            action: Action::Deny as i32,
            ..Default::default()
        },
    );
    let results = statistics(&server, request.clone()).await;
    assert_results(
        &results,
        &only(StatisticsGroupBy::PolicyRule, |id| {
            id.4 == Action::Deny as i32
        }),
        &request,
        &x,
    );
    assert_eq!(results.len(), 5);

    // At the policy level it keeps only that action's columns.
    let request = matching(
        StatisticsGroupBy::Policy,
        PolicyMatch {
            action: Action::Deny as i32,
            ..Default::default()
        },
    );
    let results = statistics(&server, request.clone()).await;
    let denied_only: Vec<(Identity, Columns)> = policy_packets()
        .into_iter()
        .map(|(id, columns)| {
            let kept: Columns = std::array::from_fn(|i| {
                if i == DENIED_IN || i == DENIED_OUT {
                    columns[i].clone()
                } else {
                    vec![0; 4]
                }
            });
            (id, kept)
        })
        .collect();
    assert_results(&results, &denied_only, &request, &x);

    let request = matching(
        StatisticsGroupBy::Policy,
        PolicyMatch {
            name: "gate".into(),
            action: Action::Pass as i32,
            ..Default::default()
        },
    );
    let results = statistics(&server, request.clone()).await;
    assert_results(
        &results,
        &[(
            gate(),
            cols(
                4,
                &[(PASSED_IN, &[0, 0, 0, 5]), (PASSED_OUT, &[0, 0, 0, 6])],
            ),
        )],
        &request,
        &x,
    );
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §8.8 ordering with strings and enums that compare differently
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_ordered_by_tier_kind_namespace_name_action_rule_and_direction() {
    let server = TestServer::start(2).await;
    let h = |kind, tier: &str, ns: &str, name: &str, action, rule| {
        ruled(hit(kind, tier, ns, name, action), rule)
    };
    use PolicyKind::{
        CalicoNetworkPolicy as Cnp, GlobalNetworkPolicy as Gnp, NetworkPolicy as Knp,
    };
    // Byte order: "Z" < "a"; "t10" < "t9". Kinds by number: Cnp 1 < Gnp 2 < Knp 6.
    let hits = vec![
        h(Knp, "a", "ns", "p", Action::Allow, 0),
        h(Cnp, "a", "ns", "p", Action::Allow, 0),
        h(Gnp, "a", "", "p", Action::Allow, 0),
        h(Cnp, "Z", "ns", "p", Action::Allow, 0),
        h(Cnp, "a", "ns", "P", Action::Allow, 0),
        h(Cnp, "a", "Ns", "p", Action::Allow, 0),
        h(Cnp, "t10", "ns", "p", Action::Allow, 0),
        h(Cnp, "t9", "ns", "p", Action::Allow, 0),
        // Rules of one policy: actions by number, rule indexes numerically (10 after 9).
        h(Cnp, "r", "ns", "p", Action::Pass, 1),
        h(Cnp, "r", "ns", "p", Action::Deny, 10),
        h(Cnp, "r", "ns", "p", Action::Deny, 9),
        h(Cnp, "r", "ns", "p", Action::Deny, -2),
        h(Cnp, "r", "ns", "p", Action::Allow, 5),
    ];
    let ingress = traced("in", Reporter::Dst, hits.clone(), vec![]);
    let egress = traced("out", Reporter::Src, hits, vec![]);
    server
        .ingest(vec![
            traffic(&ingress, B1, 1, 1, 0),
            traffic(&egress, B1, 1, 1, 0),
        ])
        .await;

    let results = statistics(
        &server,
        request(StatisticType::PacketCount, StatisticsGroupBy::Policy, false),
    )
    .await;
    let order: Vec<(String, i32, String, String)> = results
        .iter()
        .map(|r| {
            let id = result_identity(r);
            (id.0, id.1, id.2, id.3)
        })
        .collect();
    let expected_order: Vec<(String, i32, String, String)> = [
        ("Z", Cnp, "ns", "p"),
        ("a", Cnp, "Ns", "p"),
        ("a", Cnp, "ns", "P"),
        ("a", Cnp, "ns", "p"),
        ("a", Gnp, "", "p"),
        ("a", Knp, "ns", "p"),
        ("r", Cnp, "ns", "p"),
        ("t10", Cnp, "ns", "p"),
        ("t9", Cnp, "ns", "p"),
    ]
    .iter()
    .map(|(t, k, ns, n)| (t.to_string(), *k as i32, ns.to_string(), n.to_string()))
    .collect();
    assert_eq!(order, expected_order);
    // Two flows, one per direction, both allowed once at the policy level.
    assert_eq!(results[0].allowed_in, vec![2]);
    // The "r" policy has Allow, Deny and Pass hits: every column.
    assert_eq!(
        columns(&results[6]),
        cols(
            1,
            &[
                (ALLOWED_IN, &[2]),
                (ALLOWED_OUT, &[2]),
                (DENIED_IN, &[2]),
                (DENIED_OUT, &[2]),
                (PASSED_IN, &[2]),
                (PASSED_OUT, &[2]),
            ]
        )
    );

    let results = statistics(
        &server,
        StatisticsRequest {
            policy_match: Some(PolicyMatch {
                tier: "r".into(),
                ..Default::default()
            }),
            ..request(
                StatisticType::PacketCount,
                StatisticsGroupBy::PolicyRule,
                false,
            )
        },
    )
    .await;
    let rules: Vec<(i32, i64, i32)> = results
        .iter()
        .map(|r| {
            let id = result_identity(r);
            (id.4, id.5, id.6)
        })
        .collect();
    let (allow, deny, pass) = (
        Action::Allow as i32,
        Action::Deny as i32,
        Action::Pass as i32,
    );
    let (i, e) = (RuleDirection::Ingress as i32, RuleDirection::Egress as i32);
    assert_eq!(
        rules,
        vec![
            (allow, 5, i),
            (allow, 5, e),
            (deny, -2, i),
            (deny, -2, e),
            (deny, 9, i),
            (deny, 9, e),
            (deny, 10, i),
            (deny, 10, e),
            (pass, 1, i),
            (pass, 1, e),
        ]
    );
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §8.1 validation, §8.8 no match
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_type_or_group_by_and_bad_ranges_are_invalid_and_the_server_keeps_answering() {
    let server = fixture_server(2).await;
    let valid = request(StatisticType::PacketCount, StatisticsGroupBy::Policy, false);
    let invalid = [
        StatisticsRequest {
            r#type: 3,
            ..valid.clone()
        },
        StatisticsRequest {
            r#type: -1,
            ..valid.clone()
        },
        StatisticsRequest {
            group_by: 2,
            ..valid.clone()
        },
        StatisticsRequest {
            group_by: i32::MAX,
            ..valid.clone()
        },
        // gte >= lt after normalising (§2.5).
        StatisticsRequest {
            start_time_gte: C,
            start_time_lt: C,
            ..valid.clone()
        },
        StatisticsRequest {
            start_time_gte: -10,
            start_time_lt: -20,
            ..valid.clone()
        },
    ];
    for request in invalid {
        let status = statistics_status(&server, request.clone()).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        // The server still answers.
        assert_eq!(statistics(&server, valid.clone()).await.len(), 4);
    }
    let status = statistics_status(
        &server,
        StatisticsRequest {
            r#type: 9,
            ..valid.clone()
        },
    )
    .await;
    assert!(status.message().contains("type"), "{}", status.message());
    let status = statistics_status(
        &server,
        StatisticsRequest {
            group_by: 9,
            ..valid.clone()
        },
    )
    .await;
    assert!(
        status.message().contains("group_by"),
        "{}",
        status.message()
    );
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_time_bounds_never_break_the_call() {
    let server = fixture_server(2).await;
    for (gte, lt) in [
        (i64::MAX - 1, i64::MAX),
        (i64::MIN, 0),
        (i64::MIN, i64::MAX),
        (1, i64::MAX),
        (-i64::MAX, -1),
    ] {
        for time_series in [false, true] {
            let request = StatisticsRequest {
                start_time_gte: gte,
                start_time_lt: lt,
                time_series,
                ..Default::default()
            };
            let mut stream = server
                .statistics()
                .list(request.clone())
                .await
                .unwrap_or_else(|status| panic!("{request:?}: {status}"))
                .into_inner();
            while let Some(result) = stream.message().await.expect("no error") {
                assert!(result.x.len() <= 242, "{request:?}");
            }
        }
    }
    assert_eq!(
        statistics(
            &server,
            request(StatisticType::PacketCount, StatisticsGroupBy::Policy, false)
        )
        .await
        .len(),
        4
    );
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_flows_or_no_policies_end_ok_without_messages() {
    let server = TestServer::start(2).await;
    let request = request(
        StatisticType::PacketCount,
        StatisticsGroupBy::PolicyRule,
        true,
    );
    assert!(statistics(&server, request.clone()).await.is_empty());
    // Flows without any policy hit contribute nothing.
    server
        .ingest(vec![traffic(
            &key(("shop", "frontend"), ("shop", "checkout")),
            B1,
            5,
            5,
            1,
        )])
        .await;
    assert!(statistics(&server, request).await.is_empty());
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §2.3: statistics leave with their buckets
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_of_expired_buckets_are_retracted() {
    // Two closed buckets: b0 is the oldest retained one at NOW.
    let server = TestServer::start_with(
        2,
        Retention {
            window: 15,
            closed_buckets: 2,
        },
        NOW,
    )
    .await;
    server.ingest(fixture()).await;
    let summed_policy = request(StatisticType::PacketCount, StatisticsGroupBy::Policy, false);
    let results = statistics(&server, summed_policy.clone()).await;
    let all: Vec<(Identity, Columns)> = policy_packets()
        .iter()
        .map(|(id, columns)| (id.clone(), summed(columns)))
        .collect();
    assert_results(&results, &all, &summed_policy, &[]);

    // b0 leaves: F1's first bucket and F4 (so the audit policy and gate's EndOfTier part).
    server.advance_clock(15).await;
    let results = statistics(&server, summed_policy.clone()).await;
    assert_results(
        &results,
        &[
            (
                web(),
                cols(
                    1,
                    &[
                        (ALLOWED_IN, &[20]),
                        (ALLOWED_OUT, &[32]),
                        (DENIED_IN, &[5]),
                        (DENIED_OUT, &[6]),
                    ],
                ),
            ),
            (
                staged_web(),
                cols(1, &[(DENIED_IN, &[10]), (DENIED_OUT, &[12])]),
            ),
            (
                gate(),
                cols(
                    1,
                    &[
                        (DENIED_IN, &[5]),
                        (DENIED_OUT, &[6]),
                        (PASSED_IN, &[5]),
                        (PASSED_OUT, &[6]),
                    ],
                ),
            ),
        ],
        &summed_policy,
        &[],
    );
    // The rules too, on the axis of what is now retained (b1, b2, and the new current bucket).
    let series_rules = request(
        StatisticType::LiveConnectionCount,
        StatisticsGroupBy::PolicyRule,
        true,
    );
    let results = statistics(&server, series_rules.clone()).await;
    use RuleDirection::{Egress, Ingress};
    assert_results(
        &results,
        &[
            (
                rule(web(), Action::Allow, 1, Ingress),
                cols(3, &[(ALLOWED_IN, &[2, 0, 0])]),
            ),
            (
                rule(web(), Action::Allow, 1, Egress),
                cols(3, &[(ALLOWED_OUT, &[5, 6, 0])]),
            ),
            (
                rule(web(), Action::Allow, 3, Ingress),
                cols(3, &[(ALLOWED_IN, &[2, 0, 0])]),
            ),
            (
                rule(web(), Action::Deny, 2, Ingress),
                cols(3, &[(DENIED_IN, &[0, 4, 0])]),
            ),
            (
                rule(staged_web(), Action::Deny, 0, Egress),
                cols(3, &[(DENIED_OUT, &[5, 6, 0])]),
            ),
            (
                rule(gate(), Action::Deny, 2, Ingress),
                cols(3, &[(DENIED_IN, &[0, 4, 0])]),
            ),
            (
                rule(gate(), Action::Pass, 0, Ingress),
                cols(3, &[(PASSED_IN, &[0, 4, 0])]),
            ),
        ],
        &series_rules,
        &[B1, B2, B2 + 15],
    );

    // b1 leaves: only F2's and F3's b2 traffic remains.
    server.advance_clock(15).await;
    let results = statistics(&server, summed_policy.clone()).await;
    assert_results(
        &results,
        &[
            (
                web(),
                cols(
                    1,
                    &[
                        (ALLOWED_IN, &[7]),
                        (ALLOWED_OUT, &[8]),
                        (DENIED_IN, &[5]),
                        (DENIED_OUT, &[6]),
                    ],
                ),
            ),
            (
                staged_web(),
                cols(1, &[(DENIED_IN, &[7]), (DENIED_OUT, &[8])]),
            ),
            (
                gate(),
                cols(
                    1,
                    &[
                        (DENIED_IN, &[5]),
                        (DENIED_OUT, &[6]),
                        (PASSED_IN, &[5]),
                        (PASSED_OUT, &[6]),
                    ],
                ),
            ),
        ],
        &summed_policy,
        &[],
    );

    // Everything leaves: OK, no messages, at both levels.
    server.advance_clock(45).await;
    assert!(statistics(&server, summed_policy).await.is_empty());
    assert!(statistics(&server, series_rules).await.is_empty());
    common::assert_accounting(&server.state);
}
