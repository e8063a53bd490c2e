//! Property test for Statistics.List (SPEC §8, with §2.3-§2.6 time and retention, §3.2
//! canonical traces): the policy statistics view, read through gRPC, equals a from-scratch
//! reference computed here from the flows the test sent.
//!
//! Each case starts a real server (manual clock, W = 15 s, 3 closed buckets) and a pool of
//! random policy traces over a small domain: policies that differ only in kind, a Profile,
//! an unknown kind; EndOfTier hits with and without a trigger; actions Allow, Deny, Pass,
//! unspecified and unknown; repeated rules across enforced and pending. It then runs random
//! operations: batches of flows (random trace, reporter Src, Dst or unspecified, bucket from
//! below retention to beyond the future bucket, random counters) and clock advances that
//! expire buckets. After every operation, every statistic type x group-by x time_series with
//! the default range, plus one request with a random type, grouping, policy match and time
//! range, must equal the reference exactly: results, order, identities, columns and axis
//! (or `INVALID_ARGUMENT` where §2.5 says so). Runs with one and with two engine workers.
//!
//! Where §8 is silent the reference follows the server's documented reading: a hit whose
//! action is not Allow, Deny or Pass makes no result, and a result exists whenever some flow
//! in range contributes to it, even with all-zero counters.
//!
//! `EDDY_PROPTEST_CASES=n` sets the number of cases per property (default 64).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{case_runtime, key, TestServer, NOW};
use eddy::proto::{Flow, PolicyHit, PolicyMatch, PolicyTrace, StatisticsRequest, StatisticsResult};
use eddy::retention::Retention;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError};

const W: i64 = 15;
const CLOSED: i64 = 3;
const DEFAULT_CASES: u32 = 64;

const END_OF_TIER: i32 = 10;
const SRC: i32 = 1;
const INGRESS: i32 = 1;
const EGRESS: i32 = 2;

/// (kind, tier, namespace, name): two kinds share one name, a Profile, an unknown kind.
const POLICIES: [(i32, &str, &str, &str); 7] = [
    (1, "default", "shop", "web"),
    (1, "default", "shop", "api"),
    (2, "security", "", "gate"),
    (3, "default", "shop", "web"),
    (6, "default", "ops", "web"),
    (9, "", "", "kns.shop"),
    (42, "default", "shop", "web"),
];
const TIERS: [&str; 3] = ["default", "security", "audit"];
const DESTS: [&str; 3] = ["a", "b", "c"];

fn config() -> Config {
    let cases = std::env::var("EDDY_PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        max_shrink_iters: 1024,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The domain and its strategies
// ---------------------------------------------------------------------------------------------

fn action() -> impl Strategy<Value = i32> {
    prop_oneof![3 => select(vec![1, 2, 3]), 1 => select(vec![0, 7])]
}

fn rule_index() -> impl Strategy<Value = i64> {
    select(vec![-1i64, 0, 1, 2])
}

fn policy_hit(policy: usize, action: i32, rule_index: i64, policy_index: i64) -> PolicyHit {
    let (kind, tier, namespace, name) = POLICIES[policy];
    PolicyHit {
        kind,
        namespace: namespace.into(),
        name: name.into(),
        tier: tier.into(),
        action,
        policy_index,
        rule_index,
        trigger: None,
    }
}

fn hit() -> impl Strategy<Value = PolicyHit> {
    let plain = (0..POLICIES.len(), action(), rule_index(), 0..3i64)
        .prop_map(|(policy, action, rule, index)| policy_hit(policy, action, rule, index));
    let end_of_tier = (
        0..TIERS.len(),
        prop::option::of((0..POLICIES.len(), action(), rule_index())),
        action(),
        rule_index(),
        0..3i64,
    )
        .prop_map(
            |(tier, trigger, action, rule_index, policy_index)| PolicyHit {
                kind: END_OF_TIER,
                namespace: String::new(),
                name: String::new(),
                tier: TIERS[tier].into(),
                action,
                policy_index,
                rule_index,
                trigger: trigger
                    .map(|(policy, action, rule)| Box::new(policy_hit(policy, action, rule, 0))),
            },
        );
    prop_oneof![3 => plain, 1 => end_of_tier]
}

fn trace() -> impl Strategy<Value = PolicyTrace> {
    (vec(hit(), 0..4), vec(hit(), 0..3)).prop_map(|(enforced_policies, pending_policies)| {
        PolicyTrace {
            enforced_policies,
            pending_policies,
        }
    })
}

/// One flow: indices into the case's traces and [`DESTS`], a bucket relative to the current
/// one (from below retention to beyond the future bucket), a second in it, counters.
#[derive(Clone, Debug)]
struct FlowSpec {
    trace: usize,
    dest: usize,
    reporter: i32,
    bucket: i64,
    second: i64,
    /// packets in/out, bytes in/out, live connections.
    counters: [i64; 5],
}

fn flow_spec() -> impl Strategy<Value = FlowSpec> {
    (
        (0..8usize, 0..DESTS.len(), select(vec![0, 1, 1, 2, 2])),
        (-(CLOSED + 1)..=2i64, 0..W),
        prop::array::uniform5(0..20i64),
    )
        .prop_map(
            |((trace, dest, reporter), (bucket, second), counters)| FlowSpec {
                trace,
                dest,
                reporter,
                bucket,
                second,
                counters,
            },
        )
}

#[derive(Clone, Debug)]
enum Op {
    Ingest(Vec<FlowSpec>),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => vec(flow_spec(), 1..8).prop_map(Op::Ingest),
        1 => prop_oneof![0..W, Just(W), W..3 * W, Just(2 * W)].prop_map(Op::Advance),
    ]
}

/// A request time bound, made concrete against the clock when the request is sent.
#[derive(Clone, Copy, Debug)]
enum Bound {
    /// 0: the default (oldest bucket, or now).
    Zero,
    /// A negative, relative value.
    Relative(i64),
    /// `now + offset`, absolute.
    FromNow(i64),
}

impl Bound {
    fn value(self, now: i64) -> i64 {
        match self {
            Bound::Zero => 0,
            Bound::Relative(seconds) => -seconds,
            Bound::FromNow(offset) => now + offset,
        }
    }
}

fn bound() -> impl Strategy<Value = Bound> {
    prop_oneof![
        1 => Just(Bound::Zero),
        2 => (1..(CLOSED + 2) * W).prop_map(Bound::Relative),
        2 => (-(CLOSED + 2) * W..3 * W).prop_map(Bound::FromNow),
    ]
}

#[derive(Clone, Debug)]
struct QuerySpec {
    kind: i32,
    group_by: i32,
    time_series: bool,
    policy_match: Option<PolicyMatch>,
    gte: Bound,
    lt: Bound,
}

fn policy_match() -> impl Strategy<Value = PolicyMatch> {
    (
        select(vec![0, 0, 0, 1, 2, 3, 9, 10, 42]),
        select(vec!["", "", "default", "security", "audit"]),
        select(vec!["", "", "shop", "ops"]),
        select(vec!["", "", "web", "gate", "kns.shop", "nope"]),
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

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    (
        (0..3i32, 0..2i32, any::<bool>()),
        prop::option::of(policy_match()),
        (bound(), bound()),
    )
        .prop_map(
            |((kind, group_by, time_series), policy_match, (gte, lt))| QuerySpec {
                kind,
                group_by,
                time_series,
                policy_match,
                gte,
                lt,
            },
        )
}

#[derive(Clone, Debug)]
struct Case {
    traces: Vec<PolicyTrace>,
    ops: Vec<(Op, QuerySpec)>,
}

fn case() -> impl Strategy<Value = Case> {
    (vec(trace(), 8), vec((op(), query_spec()), 1..7))
        .prop_map(|(traces, ops)| Case { traces, ops })
}

// ---------------------------------------------------------------------------------------------
// The reference
// ---------------------------------------------------------------------------------------------

/// A flow the server stored.
struct Stored {
    bucket: i64,
    reporter: i32,
    trace: PolicyTrace,
    counters: [i64; 5],
}

struct Model {
    retention: Retention,
    now: i64,
    flows: Vec<Stored>,
    sent: i64,
}

/// A result's identity: tier, kind, namespace, name, action, rule, direction.
type Identity = (String, i32, String, String, i32, i64, i32);

/// Allowed in/out, denied in/out, passed in/out.
type Columns = [Vec<i64>; 6];

/// A result as compared: identity, (type, group-by), columns, axis.
type Compared = (Identity, (i32, i32), Columns, Vec<i64>);

impl Model {
    /// The flow for `spec`, recording it if the server will store it (SPEC §2.4).
    fn flow(&mut self, spec: &FlowSpec, traces: &[PolicyTrace]) -> Flow {
        let start = self.retention.bucket_of(self.now) + spec.bucket * W + spec.second;
        let trace = traces[spec.trace % traces.len()].clone();
        let mut k = key(("src", "client"), ("dst", DESTS[spec.dest]));
        k.reporter = spec.reporter;
        k.policies = Some(trace.clone());
        // A distinct end time per flow: no two updates are identical, so none is
        // de-duplicated (SPEC §9.4).
        self.sent += 1;
        let [packets_in, packets_out, bytes_in, bytes_out, live] = spec.counters;
        if self.retention.accepts(start, self.now) {
            self.flows.push(Stored {
                bucket: self.retention.bucket_of(start),
                reporter: spec.reporter,
                trace,
                counters: spec.counters,
            });
        }
        Flow {
            key: Some(k),
            start_time: start,
            end_time: start + self.sent,
            source_labels: vec![],
            dest_labels: vec![],
            packets_in,
            packets_out,
            bytes_in,
            bytes_out,
            num_connections_started: 1,
            num_connections_completed: 0,
            num_connections_live: live,
        }
    }

    /// The expected answer to `request`: `None` for `INVALID_ARGUMENT`.
    fn expected(&self, request: &StatisticsRequest) -> Option<Vec<Compared>> {
        if !(0..3).contains(&request.r#type) || !(0..2).contains(&request.group_by) {
            return None;
        }
        // SPEC §2.5: normalise, reject an empty range, then clamp.
        let now = self.now;
        let oldest = self.retention.oldest(now);
        let normalise = |value: i64, zero: i64| match value {
            0 => zero,
            relative if relative < 0 => now + relative,
            absolute => absolute,
        };
        let gte = normalise(request.start_time_gte, oldest);
        let lt = normalise(request.start_time_lt, now);
        if gte >= lt {
            return None;
        }
        let gte = gte.max(oldest);
        let lt = lt.min(self.retention.newest(now) + W);
        // SPEC §2.6: buckets whose start lies in [gte, lt).
        let selected: Vec<i64> = (self.retention.bucket_of(gte)..lt)
            .step_by(W as usize)
            .filter(|bucket| *bucket >= gte)
            .collect();
        let axis = if request.time_series {
            selected.clone()
        } else {
            Vec::new()
        };
        let width = axis.len().max(1);
        let by_rule = request.group_by == 1;
        let wanted = request.policy_match.clone().unwrap_or_default();
        let mut results: BTreeMap<Identity, Columns> = BTreeMap::new();
        for flow in &self.flows {
            let Some(slot) = selected.iter().position(|b| *b == flow.bucket) else {
                continue;
            };
            let slot = if request.time_series { slot } else { 0 };
            let direction = if flow.reporter == SRC {
                EGRESS
            } else {
                INGRESS
            };
            let [packets_in, packets_out, bytes_in, bytes_out, live] = flow.counters;
            let (value_in, value_out) = match request.r#type {
                0 => (packets_in, packets_out),
                1 => (bytes_in, bytes_out),
                _ if direction == INGRESS => (live, 0),
                _ => (0, live),
            };
            // SPEC §8.2: once per distinct (policy, action, rule, direction), or per distinct
            // (policy, action) at the policy level, over enforced and pending hits.
            let mut contributions = BTreeSet::new();
            for hit in flow
                .trace
                .enforced_policies
                .iter()
                .chain(&flow.trace.pending_policies)
            {
                let owner = match &hit.trigger {
                    Some(trigger) if hit.kind == END_OF_TIER => trigger.as_ref(),
                    _ => hit,
                };
                if !(1..=3).contains(&hit.action) {
                    continue;
                }
                let field = |wanted: &str, value: &str| wanted.is_empty() || wanted == value;
                let matches = (wanted.kind == 0 || wanted.kind == owner.kind)
                    && field(&wanted.tier, &owner.tier)
                    && field(&wanted.namespace, &owner.namespace)
                    && field(&wanted.name, &owner.name)
                    && (wanted.action == 0 || wanted.action == hit.action);
                if !matches {
                    continue;
                }
                let (rule, dir) = if by_rule {
                    (hit.rule_index, direction)
                } else {
                    (0, 0)
                };
                contributions.insert((
                    (
                        owner.tier.clone(),
                        owner.kind,
                        owner.namespace.clone(),
                        owner.name.clone(),
                        if by_rule { hit.action } else { 0 },
                        rule,
                        dir,
                    ),
                    hit.action,
                ));
            }
            for (identity, action) in contributions {
                let columns = results
                    .entry(identity)
                    .or_insert_with(|| std::array::from_fn(|_| vec![0; width]));
                let pair = ((action - 1) * 2) as usize;
                columns[pair][slot] += value_in;
                columns[pair + 1][slot] += value_out;
            }
        }
        Some(
            results
                .into_iter()
                .map(|(identity, columns)| {
                    (
                        identity,
                        (request.r#type, request.group_by),
                        columns,
                        axis.clone(),
                    )
                })
                .collect(),
        )
    }
}

fn compared(result: &StatisticsResult) -> Compared {
    let hit = result.policy.clone().unwrap_or_default();
    (
        (
            hit.tier,
            hit.kind,
            hit.namespace,
            hit.name,
            hit.action,
            hit.rule_index,
            result.direction,
        ),
        (result.r#type, result.group_by),
        [
            result.allowed_in.clone(),
            result.allowed_out.clone(),
            result.denied_in.clone(),
            result.denied_out.clone(),
            result.passed_in.clone(),
            result.passed_out.clone(),
        ],
        result.x.clone(),
    )
}

/// The server's answer: its results, or the status code it failed with.
async fn answer(
    server: &TestServer,
    request: StatisticsRequest,
) -> Result<Vec<Compared>, tonic::Code> {
    let mut stream = server
        .statistics()
        .list(request)
        .await
        .map_err(|status| status.code())?
        .into_inner();
    let mut results = Vec::new();
    while let Some(result) = stream.message().await.map_err(|status| status.code())? {
        results.push(compared(&result));
    }
    Ok(results)
}

async fn check(
    server: &TestServer,
    model: &Model,
    request: StatisticsRequest,
) -> Result<(), TestCaseError> {
    let got = answer(server, request.clone()).await;
    match model.expected(&request) {
        Some(expected) => prop_assert_eq!(
            got,
            Ok(expected),
            "{:?} at now {} (oldest bucket {})",
            request,
            model.now,
            model.retention.oldest(model.now)
        ),
        None => prop_assert_eq!(got, Err(tonic::Code::InvalidArgument), "{:?}", request),
    }
    Ok(())
}

fn run_case(workers: usize, case: Case) -> Result<(), TestCaseError> {
    let runtime = case_runtime()?;
    runtime.block_on(async move {
        let retention = Retention {
            window: W,
            closed_buckets: CLOSED,
        };
        let server = TestServer::start_with(workers, retention, NOW).await;
        let mut model = Model {
            retention,
            now: NOW,
            flows: Vec::new(),
            sent: 0,
        };
        for (op, query) in &case.ops {
            match op {
                Op::Ingest(specs) => {
                    let flows: Vec<Flow> = specs
                        .iter()
                        .map(|spec| model.flow(spec, &case.traces))
                        .collect();
                    server.ingest(flows).await;
                }
                Op::Advance(seconds) => {
                    model.now += seconds;
                    server.advance_clock(*seconds).await;
                }
            }
            for r#type in 0..3 {
                for group_by in 0..2 {
                    for time_series in [false, true] {
                        let request = StatisticsRequest {
                            r#type,
                            group_by,
                            time_series,
                            ..Default::default()
                        };
                        check(&server, &model, request).await?;
                    }
                }
            }
            let request = StatisticsRequest {
                start_time_gte: query.gte.value(model.now),
                start_time_lt: query.lt.value(model.now),
                r#type: query.kind,
                group_by: query.group_by,
                policy_match: query.policy_match.clone(),
                time_series: query.time_series,
            };
            check(&server, &model, request).await?;
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn statistics_match_the_reference_with_one_worker(case in case()) {
        run_case(1, case)?;
    }

    #[test]
    fn statistics_match_the_reference_with_two_workers(case in case()) {
        run_case(2, case)?;
    }
}
