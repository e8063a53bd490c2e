//! The arrangements' batcher alone, on rows shaped as the flows view's (flow id, bucket, label
//! pair, tick, counters), no dataflow around it: differential's merge batcher against Eddy's
//! sorting batcher (`eddy_dataflows::tick_batcher`), each fed the same ticks of rows in
//! containers of 1,024 and asked for each tick's batch when it closes. A toy figure
//! (synthetic rows with random flow ids, as the realistic workload's hashed ids are, not the
//! realistic workload's updates), no engine figure and no target: it isolates the cost the
//! engine bench cannot tell apart from its noise.
//!
//! `cargo bench --bench batcher` runs ticks of 16,384 and 131,072 rows (a serving and a bulk
//! tick per worker), 2,097,152 rows each, alternating the two batchers three times.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::time::Instant;

use differential_dataflow::batcher::{Batcher, Extract};
use differential_dataflow::trace::implementations::spine_fueled::SpineBatch;
use differential_dataflow::trace::implementations::ValBatcher;
use eddy_dataflows::model::{Bucket, FlowId, LabelPair, Stats, Tick};
use eddy_dataflows::tick_batcher::ValSorter;
use timely::progress::Antichain;

type Update = ((FlowId, (Bucket, LabelPair)), Tick, Stats);

const ROWS: usize = 2_097_152;
const CONTAINER: usize = 1024;

/// The rows of each tick, in containers as the exchange delivers them.
fn ticks(tick_rows: usize) -> Vec<Vec<Vec<Update>>> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..ROWS / tick_rows)
        .map(|tick| {
            let rows: Vec<Update> = (0..tick_rows)
                .map(|_| {
                    let id = next();
                    let bucket = 1_700_000_000 + 15 * (id % 4) as i64;
                    let stats = Stats {
                        records: 1,
                        packets_in: (id % 2000) as i64,
                        bytes_out: (id % 9000) as i64,
                        ..Stats::default()
                    };
                    ((id, (bucket, (7, 9))), tick as Tick, stats)
                })
                .collect();
            rows.chunks(CONTAINER).map(<[Update]>::to_vec).collect()
        })
        .collect()
}

/// Seconds to insert and seal every tick with `batcher`, and the updates sealed.
fn run<B>(mut batcher: B, ticks: &[Vec<Vec<Update>>]) -> (f64, usize)
where
    B: Batcher<Vec<Update>> + Extract<Time = Tick>,
    B::Output: SpineBatch,
{
    let mut sealed = 0;
    let started = Instant::now();
    for (tick, containers) in ticks.iter().enumerate() {
        for container in containers {
            let mut container = container.clone();
            batcher.insert(&mut container);
        }
        let upper = Antichain::from_elem(tick as Tick + 1);
        let (batch, _) = batcher.extract(upper.borrow());
        sealed += batch.map_or(0, |batch| SpineBatch::len(&batch));
    }
    (started.elapsed().as_secs_f64(), sealed)
}

fn main() {
    println!("A toy figure: synthetic flow-shaped rows, no realistic updates, no target.");
    println!("| tick rows | batcher | ns per row, each run | rows sealed |");
    println!("|---|---|---|---|");
    for tick_rows in [16_384usize, 131_072] {
        let ticks = ticks(tick_rows);
        let mut merge = Vec::new();
        let mut sorting = Vec::new();
        let mut sealed = (0, 0);
        for _ in 0..3 {
            let (seconds, rows) = run(ValBatcher::new(None, 0), &ticks);
            merge.push(seconds * 1e9 / ROWS as f64);
            sealed.0 = rows;
            let (seconds, rows) = run(ValSorter::new(None, 0), &ticks);
            sorting.push(seconds * 1e9 / ROWS as f64);
            sealed.1 = rows;
        }
        let show = |runs: &[f64]| {
            runs.iter()
                .map(|ns| format!("{ns:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "| {tick_rows} | merge (differential) | {} | {} |",
            show(&merge),
            sealed.0
        );
        println!(
            "| {tick_rows} | sorting (Eddy) | {} | {} |",
            show(&sorting),
            sealed.1
        );
    }
}
