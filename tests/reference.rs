//! Property tests: every incremental view, read through gRPC, against a from-scratch reference.
//!
//! Each case starts a real server (manual clock, window 15 s, 3 or 30 closed buckets), then
//! runs random operations over a small domain so that keys, labels and buckets collide:
//! - ingest a batch on a new `Connect` stream: shuffled policy hits, absent and empty traces,
//!   duplicate and reordered labels, start times from below retention to beyond the future
//!   bucket, some invalid updates (SPEC §9.3);
//! - replay an earlier batch (de-duplicated within 6 minutes from one peer, SPEC §9.4);
//! - a bulk batch with every key in every retained bucket (runs the workers' top-k cut);
//! - move the clock by multiples of the window and not, past retention, past the dedup
//!   horizon (expiry, SPEC §2.3).
//!
//! After every operation it compares with `reference/model.rs`: List over every retained
//! bucket, List with the default range, List with `aggregation_interval = 2W`, a filtered,
//! sorted and paged List over a random time range, and FilterHints of every type, unfiltered
//! (the hints view) and filtered (a scan of the flows view), and Statistics.List of a random
//! type, grouping, policy match and time series (the policy statistics view). Rows,
//! counters, labels, bounds, order, totals and ids (one per key, stable while retained) must
//! all match. Every property runs with one and with two engine workers.
//!
//! `EDDY_PROPTEST_CASES=n` sets the number of cases per property (default 24) for long
//! sweeps, e.g. `EDDY_PROPTEST_CASES=2000 cargo test --test reference`.

#[path = "reference/check.rs"]
mod check;
mod common;
#[path = "reference/domain.rs"]
mod domain;
#[path = "reference/gen.rs"]
mod gen;
#[path = "reference/model.rs"]
mod model;
#[path = "reference/semantics.rs"]
mod semantics;
#[path = "reference/stats.rs"]
mod stats;

use common::{case_runtime, TestServer, NOW};
use eddy::proto::Flow;
use eddy::retention::Retention;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

use crate::check::{check_all, Ids};
use crate::domain::{bulk, Case, Op, W};
use crate::gen::case;
use crate::model::Model;

const DEFAULT_CASES: u32 = 24;

fn config() -> Config {
    let cases = std::env::var("EDDY_PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

/// Runs one case on a fresh server with `workers` workers.
fn run_case(workers: usize, case: Case) -> Result<(), TestCaseError> {
    let runtime = case_runtime()?;
    runtime.block_on(async move {
        let retention = Retention {
            window: W,
            closed_buckets: case.closed_buckets,
        };
        let server = TestServer::start_with(workers, retention, NOW).await;
        let mut model = Model::new(W, case.closed_buckets, NOW);
        let mut ids = Ids::default();
        let mut sent: Vec<Vec<Flow>> = Vec::new();
        for (op, query) in &case.ops {
            let updates = match op {
                Op::Ingest(updates) => updates.clone(),
                Op::Bulk(seed) => bulk(*seed, case.keys.len(), case.closed_buckets),
                Op::Replay(which) => {
                    if let Some(flows) = sent.get(which % sent.len().max(1)).cloned() {
                        flows.iter().for_each(|flow| model.ingest(flow));
                        server.ingest(flows).await;
                    }
                    Vec::new()
                }
                Op::Advance(step) => {
                    let seconds = step.seconds(case.closed_buckets);
                    model.advance(seconds);
                    server.advance_clock(seconds).await;
                    Vec::new()
                }
            };
            if !updates.is_empty() {
                let flows: Vec<Flow> = updates
                    .iter()
                    .map(|u| u.flow(&case.keys, case.closed_buckets, model.now))
                    .collect();
                flows.iter().for_each(|flow| model.ingest(flow));
                server.ingest(flows.clone()).await;
                sent.push(flows);
            }
            check_all(&server, &model, &mut ids, query).await?;
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn views_match_the_reference_with_one_worker(case in case()) {
        run_case(1, case)?;
    }

    #[test]
    fn views_match_the_reference_with_two_workers(case in case()) {
        run_case(2, case)?;
    }
}
