//! Property test: every registered view (`views::REGISTERED`), read through the generic query
//! on 1 and 2 timely workers, against its own from-scratch reference, after random inserts,
//! retractions and expiry.
//!
//! A retraction negates one retained (flow, bucket) row's whole accumulated value, and that row
//! takes no insert afterwards: the engine's `Stats` are exact only under that invariant (its
//! only retraction is expiry, of whole rows; see `model::Stats`), and expiry reads the flows
//! view. Retracting part of a row could leave the flows view with a row whose `records` sum to
//! zero dropped and its counters lost, so expiry would then under-retract the other views.
//!
//! Every worker holds the same policy rules for the keys' traces from the start, as the
//! engine's workers do, so the policy statistics view has rows to compare.
//!
//! Each case is planned first: the records each step inserts or retracts (records below the
//! retention floor dropped, as the engine does), each expiry's floor, and at each read a few
//! random queries per view built from the view's schema (a filter on any column, any sort
//! column and direction, a limit, per bucket or summed, a random range). The workers run the
//! plan as the engine's event loop does (each inserts the records of the flows it owns,
//! expiry retracts what a worker holds below the floor), advance a tick after every step and
//! compact; the merged answer of every worker must equal the reference on the records still
//! retained.
//!
//! Each worker also watches every view as a subscriber does: a snapshot at the first read,
//! then at every later read the changes since the one before (`ViewReader::changes`); the
//! snapshot plus every change so far, merged over the workers, must be the view's rows per
//! bucket, each once, at every read.
//!
//! `EDDY_PROPTEST_CASES=n` sets the number of cases (default 24).

use std::sync::{Arc, Mutex};

use eddy_dataflows::inputs::EngineInputs;
use eddy_dataflows::keys::owner_of;
use eddy_dataflows::model::{
    Bucket, BucketRange, FlowKey, FlowRecord, PolicyRule, StatLevel, Stats, Tick, TraceId,
};
use eddy_dataflows::queries::expire;
use eddy_dataflows::views::registry::{
    ColumnFilter, ColumnType, Row, Sort, Value, ViewQuery, Watch,
};
use eddy_dataflows::views::REGISTERED;
use proptest::prelude::*;
use proptest::test_runner::Config;
use timely::dataflow::operators::probe::Handle as ProbeHandle;

const W: i64 = 15;
/// A bucket boundary.
const BASE: Bucket = 1_700_000_100;
const BUCKETS: i64 = 5;
const KEYS: u32 = 9;

fn bucket(index: i64) -> Bucket {
    BASE + index * W
}

/// One update of key `index` in bucket `at`, label pair (0, 0), with `counters` and a record
/// count of 1.
fn update(index: u32, at: i64, counters: Stats) -> FlowRecord {
    FlowRecord {
        key: key(index),
        bucket: bucket(at),
        labels: (0, 0),
        stats: Stats {
            records: 1,
            ..counters
        },
    }
}

/// Key `index`: one of five connections (namespaces, names and port 53 or 443 from a small
/// domain, so rows collide), allowed for keys 0–4 and denied for 5–8 (so a connection's
/// action can change between buckets), over two protocols, each with its own trace
/// ([`rules`]).
fn key(index: u32) -> FlowKey {
    let connection = index % 5;
    FlowKey {
        id: u64::from(index) + 1,
        source_name: connection,
        source_namespace: connection % 3,
        source_type: 1,
        dest_name: 10 + connection,
        dest_namespace: connection / 3,
        dest_type: 1,
        dest_port: if connection.is_multiple_of(2) {
            53
        } else {
            443
        },
        dest_service_name: 0,
        dest_service_namespace: 0,
        dest_service_port_name: 0,
        dest_service_port: 0,
        proto: index % 3 / 2,
        reporter: 2,
        action: if index < 5 { 1 } else { 2 },
        trace: index,
    }
}

/// The policy rules of the keys' traces: key `k` has trace `k`, which hits a policy (listed
/// twice: a flow counts once per distinct rule) and one of its rules; odd traces' hits deny.
/// No two keys hit the same rule: the test retracts single flows, which is exact only for a
/// row that retraction removes whole (see `model::Stats`), and expiry, the engine's one
/// retraction, removes every flow of a bucket at once. Names and namespaces come from the
/// filters' small domain of string ids.
fn rules() -> Vec<(TraceId, PolicyRule)> {
    (0..KEYS)
        .flat_map(|trace| {
            let policy = PolicyRule {
                kind: 1,
                tier: 1,
                namespace: trace,
                name: trace % 4,
                action: 1 + (trace % 2) as i32,
                rule_index: 0,
                level: StatLevel::Policy,
            };
            let rule = PolicyRule {
                rule_index: i64::from(1 + trace % 3),
                level: StatLevel::Rule,
                ..policy
            };
            [(trace, policy), (trace, rule), (trace, policy)]
        })
        .collect()
}

/// One generated update: key, bucket and counters.
type UpdateSeed = (u32, i64, (i64, i64, i64, i64));

/// A query's random choices, turned into a query by a view's schema.
#[derive(Clone, Debug)]
struct QuerySeed {
    sort: usize,
    descending: bool,
    limit: Option<usize>,
    per_bucket: bool,
    range: (i64, i64),
    filter: Option<(usize, u32)>,
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Vec<UpdateSeed>),
    Retract(usize),
    Expire(i64),
    Read(Vec<QuerySeed>),
}

/// What the workers do at one step, already resolved.
#[derive(Clone, Debug)]
enum Step {
    Insert(Vec<FlowRecord>),
    Retract(Vec<FlowRecord>),
    Expire(Bucket),
    Read(Vec<(usize, ViewQuery)>),
    /// In one tick: retract records, retire their trace's rules, give the trace id new rules
    /// (a trace id reused after its retirement) and insert records under them.
    ReuseTrace {
        retracted: Vec<FlowRecord>,
        retired: Vec<(TraceId, PolicyRule)>,
        rules: Vec<(TraceId, PolicyRule)>,
        inserted: Vec<FlowRecord>,
    },
}

fn query_of(view: usize, seed: &QuerySeed) -> ViewQuery {
    let schema = REGISTERED[view].schema();
    let columns = schema.columns;
    let sort = Sort {
        column: seed.sort % columns.len(),
        descending: seed.descending,
    };
    let filters = seed
        .filter
        .map(|(column, value)| {
            let column = column % columns.len();
            let value = match columns[column].kind {
                ColumnType::String => Value::String(value % 4),
                ColumnType::Integer => Value::Integer(i64::from(value)),
                ColumnType::Float => Value::Float(f64::from(value)),
                ColumnType::Bool => Value::Bool(value % 2 == 0),
                ColumnType::Timestamp => Value::Timestamp(bucket(i64::from(value) % BUCKETS)),
            };
            vec![ColumnFilter { column, value }]
        })
        .unwrap_or_default();
    let (start, length) = seed.range;
    ViewQuery {
        range: BucketRange {
            gte: bucket(start),
            lt: bucket(start + length),
        },
        per_bucket: seed.per_bucket,
        window: W,
        filters,
        sort,
        limit: seed.limit,
        sort_is_string: columns[sort.column].kind == ColumnType::String,
    }
}

/// Every row of `view`, one per bucket, in its default order: what a subscriber holds.
fn all_rows(view: usize) -> ViewQuery {
    let schema = REGISTERED[view].schema();
    ViewQuery {
        range: BucketRange {
            gte: Bucket::MIN,
            lt: Bucket::MAX,
        },
        per_bucket: true,
        window: W,
        filters: Vec::new(),
        sort: schema.default_sort,
        limit: None,
        sort_is_string: false,
    }
}

/// Rows with their multiplicities, summed per distinct row, zeros dropped, in `view`'s order.
fn consolidated(view: usize, changes: impl IntoIterator<Item = (Row, i64)>) -> Vec<(Row, i64)> {
    let mut held: Vec<(Row, i64)> = Vec::new();
    for (row, count) in changes {
        match held.iter_mut().find(|(kept, _)| *kept == row) {
            Some((_, total)) => *total += count,
            None => held.push((row, count)),
        }
    }
    held.retain(|(_, count)| *count != 0);
    let query = all_rows(view);
    held.sort_by(|a, b| query.order(&a.0, &b.0));
    held
}

/// What every read expects: each query's rows, and each view's rows per bucket (each once).
type Expected = (Vec<Vec<Vec<Row>>>, Vec<Vec<Vec<(Row, i64)>>>);

/// Resolves the ops into steps and the expected answer of every read, from the reference.
fn plan(ops: &[Op]) -> (Vec<Step>, Expected) {
    let mut watched = Vec::new();
    let mut floor = Bucket::MIN;
    let mut retained: Vec<FlowRecord> = Vec::new();
    let mut closed: Vec<(u64, Bucket)> = Vec::new();
    let mut steps = Vec::new();
    let mut expected = Vec::new();
    for op in ops {
        let step = match op {
            Op::Insert(seeds) => {
                let records: Vec<FlowRecord> = seeds
                    .iter()
                    .map(
                        |&(index, at, (bytes_in, bytes_out, packets_in, packets_out))| FlowRecord {
                            key: key(index),
                            bucket: bucket(at),
                            labels: (0, 0),
                            stats: Stats {
                                records: 1,
                                bytes_in,
                                bytes_out,
                                packets_in,
                                packets_out,
                                ..Stats::default()
                            },
                        },
                    )
                    .filter(|record| record.bucket >= floor)
                    .filter(|record| !closed.contains(&(record.key.id, record.bucket)))
                    .collect();
                retained.extend(&records);
                Step::Insert(records)
            }
            Op::Retract(which) => {
                let mut rows: Vec<FlowRecord> = Vec::new();
                for record in &retained {
                    match rows.iter_mut().find(|row| {
                        (row.key.id, row.bucket, row.labels)
                            == (record.key.id, record.bucket, record.labels)
                    }) {
                        Some(row) => row.stats.add(&record.stats),
                        None => rows.push(*record),
                    }
                }
                rows.retain(|row| row.stats.records != 0);
                let retraction: Vec<FlowRecord> = match rows.len() {
                    0 => Vec::new(),
                    count => {
                        let row = rows[which % count];
                        closed.push((row.key.id, row.bucket));
                        vec![FlowRecord {
                            stats: row.stats.negated(),
                            ..row
                        }]
                    }
                };
                retained.extend(&retraction);
                Step::Retract(retraction)
            }
            Op::Expire(at) => {
                floor = floor.max(bucket(*at));
                retained.retain(|record| record.bucket >= floor);
                Step::Expire(floor)
            }
            Op::Read(seeds) => {
                let queries: Vec<(usize, ViewQuery)> = (0..REGISTERED.len())
                    .flat_map(|view| seeds.iter().map(move |seed| (view, query_of(view, seed))))
                    .collect();
                expected.push(
                    queries
                        .iter()
                        .map(|(view, query)| {
                            REGISTERED[*view].reference(&retained, &rules(), query)
                        })
                        .collect(),
                );
                watched.push(
                    (0..REGISTERED.len())
                        .map(|view| {
                            let rows =
                                REGISTERED[view].reference(&retained, &rules(), &all_rows(view));
                            consolidated(view, rows.into_iter().map(|row| (row, 1)))
                        })
                        .collect(),
                );
                Step::Read(queries)
            }
        };
        steps.push(step);
    }
    (steps, (expected, watched))
}

/// Every worker's answer to every read: (read number, query number, rows).
type Answers = Arc<Mutex<Vec<(usize, usize, Vec<Row>)>>>;

/// Every worker's watched rows at every read: (read number, view, rows with multiplicity).
type Watched = Arc<Mutex<Vec<(usize, usize, Vec<(Row, i64)>)>>>;

/// Runs the steps on `workers` workers and returns the merged answer of every read, and what
/// a subscriber to every view holds at every read.
fn run(workers: usize, steps: Vec<Step>) -> Expected {
    let steps = Arc::new(steps);
    let answers: Answers = Arc::default();
    let shared = answers.clone();
    let watched: Watched = Arc::default();
    let shared_watched = watched.clone();
    let plan = steps.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let probe = ProbeHandle::new();
        let (mut inputs, mut views) = EngineInputs::build(worker, &probe);
        inputs.insert_rules(&rules());
        let mine = |record: &&FlowRecord| owner_of(&record.key, peers) == index;
        let mut tick: Tick = 0;
        let mut reads = 0;
        let mut held: Vec<Vec<(Row, i64)>> = vec![Vec::new(); REGISTERED.len()];
        for step in plan.iter() {
            match step {
                Step::Insert(records) => inputs.insert(records.iter().filter(mine)),
                Step::Retract(records) => {
                    let owned: Vec<FlowRecord> = records.iter().filter(mine).copied().collect();
                    inputs.retract(&owned);
                }
                Step::Expire(floor) => expire::expire(&mut views, &mut inputs, *floor),
                Step::ReuseTrace {
                    retracted,
                    retired,
                    rules,
                    inserted,
                } => {
                    let owned: Vec<FlowRecord> = retracted.iter().filter(mine).copied().collect();
                    inputs.retract(&owned);
                    inputs.retract_rules(retired);
                    inputs.insert_rules(rules);
                    inputs.insert(inserted.iter().filter(mine));
                }
                Step::Read(queries) => {
                    for (at, (view, query)) in queries.iter().enumerate() {
                        let rows = views.registered[*view].read(query);
                        shared
                            .lock()
                            .expect("no worker panicked holding the answers")
                            .push((reads, at, rows));
                    }
                    for (view, held) in held.iter_mut().enumerate() {
                        let watch = if reads == 0 {
                            Watch::Snapshot
                        } else {
                            Watch::Changes
                        };
                        let changes = views.registered[view].changes(watch, W, tick);
                        match changes.snapshot {
                            Some(rows) => *held = rows.into_iter().map(|row| (row, 1)).collect(),
                            None => held.extend(changes.changes),
                        }
                        *held = consolidated(view, held.drain(..));
                        shared_watched
                            .lock()
                            .expect("no worker panicked holding the watched rows")
                            .push((reads, view, held.clone()));
                    }
                    reads += 1;
                }
            }
            tick += 1;
            inputs.advance_to(tick);
            while probe.less_than(&tick) {
                worker.step();
            }
            views.compact_to(tick);
        }
    })
    .expect("timely starts")
    .join()
    .into_iter()
    .for_each(|result| result.expect("every worker finished"));
    let answers = answers.lock().expect("the workers are done").clone();
    let watched = watched.lock().expect("the workers are done").clone();
    let reads = steps
        .iter()
        .filter(|step| matches!(step, Step::Read(_)))
        .count();
    let held = (0..reads)
        .map(|read| {
            (0..REGISTERED.len())
                .map(|view| {
                    consolidated(
                        view,
                        watched
                            .iter()
                            .filter(|(r, v, _)| *r == read && *v == view)
                            .flat_map(|(_, _, rows)| rows.iter().cloned()),
                    )
                })
                .collect()
        })
        .collect();
    let read = (0..reads)
        .map(|read| {
            let Some(Step::Read(queries)) = steps
                .iter()
                .filter(|step| matches!(step, Step::Read(_)))
                .nth(read)
            else {
                unreachable!("read {read} was counted among the steps")
            };
            queries
                .iter()
                .enumerate()
                .map(|(at, (_, query))| {
                    query.merge(
                        answers
                            .iter()
                            .filter(|(r, q, _)| *r == read && *q == at)
                            .map(|(_, _, rows)| rows.clone()),
                    )
                })
                .collect()
        })
        .collect();
    (read, held)
}

fn update_seed() -> impl Strategy<Value = UpdateSeed> {
    (
        0..KEYS,
        0..BUCKETS,
        (bytes(), 0i64..5000, 0i64..50, 0i64..50),
    )
}

/// Bytes of one update: mostly small, sometimes near `i32::MAX`, so that a few sums leave 32
/// bits and their flows are stored whole (`flow_rows`), updated and expired beside narrow ones.
fn bytes() -> impl Strategy<Value = i64> {
    let near_limit = i64::from(i32::MAX) - 5000..i64::from(i32::MAX);
    prop_oneof![9 => 0i64..5000, 1 => near_limit]
}

fn query_seed() -> impl Strategy<Value = QuerySeed> {
    (
        0usize..16,
        any::<bool>(),
        prop::option::of(1usize..5),
        any::<bool>(),
        (0i64..BUCKETS, 1i64..=BUCKETS),
        prop::option::of((0usize..16, 0u32..6)),
    )
        .prop_map(
            |(sort, descending, limit, per_bucket, range, filter)| QuerySeed {
                sort,
                descending,
                limit,
                per_bucket,
                range,
                filter,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(update_seed(), 1..12).prop_map(Op::Insert),
        1 => any::<usize>().prop_map(Op::Retract),
        1 => (1i64..BUCKETS).prop_map(Op::Expire),
        3 => prop::collection::vec(query_seed(), 1..4).prop_map(Op::Read),
    ]
}

fn config() -> Config {
    let cases = std::env::var("EDDY_PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(24);
    Config::with_cases(cases)
}

proptest! {
    #![proptest_config(config())]

    // SPEC §14.2: every view's Read, and its Subscribe snapshot plus changes, equal the
    // reference, whether the view keeps an arrangement or is read from the flows view
    // (policy_changes, `FromFlows`, whose connections must each live on one worker).
    #[test]
    fn every_registered_view_matches_its_reference(ops in prop::collection::vec(op(), 1..16)) {
        let (steps, expected) = plan(&ops);
        for workers in [1, 2] {
            let (answers, watched) = run(workers, steps.clone());
            prop_assert_eq!(&answers, &expected.0, "{} workers", workers);
            prop_assert_eq!(&watched, &expected.1, "{} workers, watched", workers);
        }
    }
}

/// A concrete case: two namespace pairs over two buckets, the top one by bytes first, then
/// the first bucket expired.
#[test]
fn top_talkers_sums_pairs_over_the_range_and_forgets_expired_buckets() {
    let record = |index: u32, at: i64, bytes_in: i64| {
        let counters = Stats {
            bytes_in,
            bytes_out: 1,
            packets_in: 2,
            packets_out: 3,
            ..Stats::default()
        };
        update(index, at, counters)
    };
    // Key 0 is the pair (0, 0), in two buckets; key 4 is (1, 1).
    let inserted = vec![record(0, 0, 100), record(0, 1, 50), record(4, 1, 120)];
    let query = ViewQuery {
        range: BucketRange {
            gte: bucket(0),
            lt: bucket(BUCKETS),
        },
        per_bucket: false,
        window: W,
        filters: Vec::new(),
        sort: REGISTERED[0].schema().default_sort,
        limit: Some(5),
        sort_is_string: false,
    };
    let steps = vec![
        Step::Insert(inserted),
        Step::Read(vec![(0, query.clone())]),
        Step::Expire(bucket(1)),
        Step::Read(vec![(0, query)]),
    ];
    let row = |pair: (u32, u32), bytes_in: i64, updates: i64| {
        vec![
            Value::String(pair.0),
            Value::String(pair.1),
            Value::Timestamp(bucket(0)),
            Value::Timestamp(bucket(BUCKETS)),
            Value::Integer(bytes_in + updates),
            Value::Integer(bytes_in),
            Value::Integer(updates),
            Value::Integer(5 * updates),
            Value::Integer(2 * updates),
            Value::Integer(3 * updates),
        ]
    };
    for workers in [1, 2] {
        let (answers, _) = run(workers, steps.clone());
        assert_eq!(
            answers,
            vec![
                vec![vec![row((0, 0), 150, 2), row((1, 1), 120, 1)]],
                vec![vec![row((1, 1), 120, 1), row((0, 0), 50, 1)]],
            ],
            "{workers} workers"
        );
    }
}

/// A concrete case of the policy statistics view's per-trace sums (SPEC §8): within one tick a
/// flow is retracted, its trace retired and the trace id given other rules (the catalog never
/// reuses an id; the view must not depend on it), and a flow inserted under them. The
/// retracted flow's sum is expanded with the rules it was inserted under, so only the new rules
/// hold counters afterwards, as the from-scratch reference says.
#[test]
fn policy_statistics_expand_a_reused_trace_with_the_rules_of_its_time() {
    const POLICY_STATS: usize = 5;
    assert_eq!(REGISTERED[POLICY_STATS].schema().name, "policy_stats");
    let record = |packets_in: i64| {
        update(
            0,
            0,
            Stats {
                packets_in,
                ..Stats::default()
            },
        )
    };
    let old = record(7);
    let retracted = FlowRecord {
        stats: old.stats.negated(),
        ..old
    };
    let retired: Vec<_> = rules()
        .into_iter()
        .filter(|(trace, _)| *trace == 0)
        .collect();
    let reused = vec![(
        0,
        PolicyRule {
            kind: 2,
            tier: 3,
            namespace: 4,
            name: 5,
            action: 2,
            rule_index: 1,
            level: StatLevel::Rule,
        },
    )];
    let new = record(11);
    let query = all_rows(POLICY_STATS);
    let steps = vec![
        Step::Insert(vec![old]),
        Step::ReuseTrace {
            retracted: vec![retracted],
            retired,
            rules: reused.clone(),
            inserted: vec![new],
        },
        Step::Read(vec![(POLICY_STATS, query.clone())]),
    ];
    let expected = REGISTERED[POLICY_STATS].reference(&[new], &reused, &query);
    assert_eq!(expected.len(), 1, "one row: the reused trace's one rule");
    for workers in [1, 2] {
        let (answers, _) = run(workers, steps.clone());
        assert_eq!(answers, vec![vec![expected.clone()]], "{workers} workers");
    }
}

/// A subscriber's changes read at a tick count only the updates before it, even when the
/// arrangement already holds later ones (a worker ahead of the frontier every worker reached):
/// the flows and policy statistics views sum their rows over the ticks before the read, so a
/// subscriber's deltas (SPEC §14.2) add up to the rows at one time.
#[test]
fn changes_count_only_the_ticks_before_the_read() {
    let record = |bytes_in: i64| {
        update(
            0,
            0,
            Stats {
                bytes_in,
                packets_in: 1,
                ..Stats::default()
            },
        )
    };
    let (first, second, third) = (record(1), record(10), record(100));
    let views = ["flows", "policy_stats"].map(|name| {
        REGISTERED
            .iter()
            .position(|view| view.schema().name == name)
            .expect("the view is registered")
    });
    let rows = |view: usize, records: &[FlowRecord]| {
        let rows = REGISTERED[view].reference(records, &rules(), &all_rows(view));
        assert!(!rows.is_empty(), "the flow has rows in the view");
        rows
    };
    let read = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut inputs, mut views_built) = EngineInputs::build(worker, &probe);
        inputs.insert_rules(&rules());
        let mut reads = Vec::new();
        for (tick, record) in [first, second, third].iter().enumerate() {
            if tick == 1 {
                for view in views {
                    views_built.registered[view].changes(Watch::Snapshot, W, 1);
                }
            }
            inputs.insert(std::iter::once(record));
            let next = tick as Tick + 1;
            inputs.advance_to(next);
            while probe.less_than(&next) {
                worker.step();
            }
        }
        // Every tick is in the arrangements; the reads stop before tick 2, then before 3.
        for before in [2, 3] {
            for view in views {
                let changes = views_built.registered[view].changes(Watch::Changes, W, before);
                reads.push(consolidated(view, changes.changes));
            }
        }
        reads
    });
    let changed = |view: usize, old: &[FlowRecord], new: &[FlowRecord]| {
        let old = rows(view, old).into_iter().map(|row| (row, -1));
        consolidated(
            view,
            old.chain(rows(view, new).into_iter().map(|row| (row, 1))),
        )
    };
    assert_eq!(
        read,
        vec![
            changed(views[0], &[first], &[first, second]),
            changed(views[1], &[first], &[first, second]),
            changed(views[0], &[first, second], &[first, second, third]),
            changed(views[1], &[first, second], &[first, second, third]),
        ]
    );
}

/// A subscription that starts after a view built batches nobody noted (SPEC §14.2): its
/// snapshot and the changes after it add up to the view's rows, each update counted once,
/// even an update at a tick the snapshot read stops before (a read the engine answers late).
/// Every registered view notes nothing while nobody subscribes, so this holds for each.
#[test]
fn a_snapshot_after_unnoted_batches_and_the_changes_after_it_add_up_to_the_rows() {
    // Keys 0 and 5 are one connection, allowed then denied, in buckets 0, 1 and 2.
    let counters = Stats {
        bytes_in: 7,
        packets_in: 1,
        ..Stats::default()
    };
    let records = [(0, 0), (5, 1), (0, 2)].map(|(index, at)| update(index, at, counters));
    let reads = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut inputs, mut views_built) = EngineInputs::build(worker, &probe);
        inputs.insert_rules(&rules());
        let mut reads = Vec::new();
        for (tick, record) in records.iter().enumerate() {
            if tick == 2 {
                // Ticks 0 and 1 are built and were noted by nobody; the snapshot is asked
                // before tick 1, as a read the engine answers late may be.
                for view in views_built.registered.iter_mut() {
                    let snapshot = view.changes(Watch::Snapshot, W, 1).snapshot;
                    reads.push(snapshot.expect("a snapshot read has a snapshot"));
                }
            }
            inputs.insert(std::iter::once(record));
            let next = tick as Tick + 1;
            inputs.advance_to(next);
            while probe.less_than(&next) {
                worker.step();
            }
        }
        let changes: Vec<Vec<(Row, i64)>> = views_built
            .registered
            .iter_mut()
            .map(|view| view.changes(Watch::Changes, W, 3).changes)
            .collect();
        (reads, changes)
    });
    let (snapshots, changes) = reads;
    let rows = |view: usize, records: &[FlowRecord]| {
        REGISTERED[view]
            .reference(records, &rules(), &all_rows(view))
            .into_iter()
            .map(|row| (row, 1))
    };
    for (view, definition) in REGISTERED.iter().enumerate() {
        let name = definition.schema().name;
        assert_ne!(
            rows(view, &records[..2]).len(),
            0,
            "{name} has rows for two records"
        );
        let snapshot = snapshots[view].iter().cloned().map(|row| (row, 1));
        assert_eq!(
            consolidated(view, snapshot.chain(changes[view].iter().cloned())),
            consolidated(view, rows(view, &records)),
            "{name}: snapshot and changes add up to the rows of the three records"
        );
    }
}
