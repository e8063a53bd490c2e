//! Property test of the workers' flow index: a List filtered by namespace (answered from the
//! index) returns exactly the rows of the unfiltered List that match the filter, in the same
//! order, while flows are added, expire out of retention and come back, with one and with two
//! workers.

mod common;

use common::{case_runtime, exact, flow, key, TestServer, NOW, WINDOW};
use eddy::proto::{Filter, FlowListRequest, FlowResult, StringMatch};
use eddy::retention::Retention;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

/// Namespaces flows are drawn from: "-" also answers to "Global" (SPEC §5.2).
const NAMESPACES: [&str; 4] = ["alpha", "beta", "gamma", "-"];
/// Namespaces filters ask for: some stored, an alias, one never stored.
const WANTED: [&str; 5] = ["alpha", "beta", "-", "Global", "missing"];
const NAMES: [&str; 2] = ["api", "db"];
const PROTOCOLS: [&str; 2] = ["tcp", "udp"];
const CLOSED_BUCKETS: i64 = 3;

/// One update: indexes into the domains and how many buckets before now it starts.
#[derive(Clone, Debug)]
struct Update {
    source_namespace: usize,
    dest_namespace: usize,
    name: usize,
    protocol: usize,
    buckets_back: i64,
    packets: i64,
}

#[derive(Clone, Debug)]
enum Op {
    Ingest(Vec<Update>),
    /// Moves the clock by this many windows: flows whose buckets all left retention expire.
    Advance(i64),
}

/// A namespace filter of one or both fields, maybe with a protocol the index does not answer.
#[derive(Clone, Debug)]
struct Wanted {
    dest: Vec<usize>,
    source: Vec<usize>,
    protocol: Option<usize>,
}

fn update() -> impl Strategy<Value = Update> {
    (
        0..4usize,
        0..4usize,
        0..2usize,
        0..2usize,
        1..=CLOSED_BUCKETS,
        1..5i64,
    )
        .prop_map(
            |(source_namespace, dest_namespace, name, protocol, buckets_back, packets)| Update {
                source_namespace,
                dest_namespace,
                name,
                protocol,
                buckets_back,
                packets,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::collection::vec(update(), 1..12).prop_map(Op::Ingest),
        1 => (1..=CLOSED_BUCKETS + 1).prop_map(Op::Advance),
    ]
}

fn wanted() -> impl Strategy<Value = Wanted> {
    let namespaces = prop::collection::vec(0..WANTED.len(), 0..3);
    (namespaces.clone(), namespaces, prop::option::of(0..2usize))
        .prop_filter("a namespace is constrained", |(dest, source, _)| {
            !dest.is_empty() || !source.is_empty()
        })
        .prop_map(|(dest, source, protocol)| Wanted {
            dest,
            source,
            protocol,
        })
}

fn matches_namespace(wanted: &[usize], stored: &str) -> bool {
    wanted.is_empty()
        || wanted.iter().any(|index| {
            let wanted = WANTED[*index];
            wanted == stored || (wanted == "Global" && stored == "-")
        })
}

impl Wanted {
    fn filter(&self) -> Filter {
        let matches = |indexes: &[usize]| -> Vec<StringMatch> {
            indexes.iter().map(|index| exact(WANTED[*index])).collect()
        };
        Filter {
            dest_namespaces: matches(&self.dest),
            source_namespaces: matches(&self.source),
            protocols: self
                .protocol
                .map(|protocol| vec![exact(PROTOCOLS[protocol])])
                .unwrap_or_default(),
            ..Filter::default()
        }
    }

    fn keeps(&self, result: &FlowResult) -> bool {
        let key = common::key_of(result);
        matches_namespace(&self.dest, &key.dest_namespace)
            && matches_namespace(&self.source, &key.source_namespace)
            && self
                .protocol
                .is_none_or(|protocol| key.proto == PROTOCOLS[protocol])
    }
}

async fn list(server: &TestServer, filter: Option<Filter>) -> (Vec<FlowResult>, i64) {
    let page = server
        .flows()
        .list(FlowListRequest {
            filter,
            ..FlowListRequest::default()
        })
        .await
        .expect("List succeeds")
        .into_inner();
    let total = page.meta.expect("a page has metadata").total_results;
    (page.flows, total)
}

fn flow_of(update: &Update, now: i64) -> eddy::proto::Flow {
    let name = NAMES[update.name];
    let mut key = key(
        (NAMESPACES[update.source_namespace], name),
        (NAMESPACES[update.dest_namespace], name),
    );
    key.proto = PROTOCOLS[update.protocol].into();
    let start = now - now.rem_euclid(WINDOW) - update.buckets_back * WINDOW;
    flow(key, start, update.packets)
}

fn run_case(workers: usize, ops: Vec<Op>, filters: Vec<Wanted>) -> Result<(), TestCaseError> {
    let runtime = case_runtime()?;
    runtime.block_on(async move {
        let retention = Retention {
            window: WINDOW,
            closed_buckets: CLOSED_BUCKETS,
        };
        let server = TestServer::start_with(workers, retention, NOW).await;
        let mut now = NOW;
        for op in ops {
            match op {
                Op::Ingest(updates) => {
                    let flows = updates.iter().map(|update| flow_of(update, now)).collect();
                    server.ingest(flows).await;
                }
                Op::Advance(windows) => {
                    now += windows * WINDOW;
                    server.advance_clock(windows * WINDOW).await;
                }
            }
            let (all, _) = list(&server, None).await;
            for wanted in &filters {
                let expected: Vec<&FlowResult> =
                    all.iter().filter(|result| wanted.keeps(result)).collect();
                let (filtered, total) = list(&server, Some(wanted.filter())).await;
                prop_assert_eq!(filtered.iter().collect::<Vec<_>>(), expected.clone());
                prop_assert_eq!(total, expected.len() as i64);
            }
        }
        Ok(())
    })
}

fn case() -> impl Strategy<Value = (Vec<Op>, Vec<Wanted>)> {
    (
        prop::collection::vec(op(), 1..10),
        prop::collection::vec(wanted(), 1..4),
    )
}

proptest! {
    #![proptest_config(Config { cases: 24, ..Config::default() })]

    #[test]
    fn a_list_filtered_through_the_index_equals_the_unfiltered_list_filtered_with_one_worker(
        (ops, filters) in case()
    ) {
        run_case(1, ops, filters)?;
    }

    #[test]
    fn a_list_filtered_through_the_index_equals_the_unfiltered_list_filtered_with_two_workers(
        (ops, filters) in case()
    ) {
        run_case(2, ops, filters)?;
    }
}
