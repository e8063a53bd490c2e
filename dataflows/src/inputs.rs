//! The engine's input sessions on one worker, and the one way records enter them: every
//! update (or retraction) goes into the flow rows as a fixed-size row (its key noted once in the
//! worker's key store), and into the hint rows and the counters per policy rule after
//! consolidation across the tick, so all views stay consistent.
//!
//! The derived rows (hints, counters per policy rule) wait in scratch space until the tick closes
//! ([`EngineInputs::advance_to`]): every update of a tick carries the same timestamp, so
//! summing them first changes no view, and the many updates of a tick that share a namespace,
//! a trace or a policy rule reach the batchers and the merges as one row. The scratch space
//! is a hash map summing each derived row as it arrives (sorting it per batch cost more than
//! the batchers' own sorts), so it holds one entry per distinct derived row of the open tick.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};

use differential_dataflow::difference::{IsZero, Semigroup};
use differential_dataflow::input::Input;
use rustc_hash::FxHasher;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::worker::Worker;

use crate::keys::FlowKeys;
use crate::model::{FlowRecord, PolicyRule, Stats, Tick, TraceId};
use crate::traces::{FlowRowsInput, HintRowsInput, StatRowsInput};
use crate::views::registry::ViewFeed;
use crate::views::{hints, policy_stats, Inputs, Views, REGISTERED};

/// The input sessions of one worker, plus scratch space reused across batches.
pub struct EngineInputs {
    rows: FlowRowsInput,
    hint_rows: HintRowsInput,
    stat_rows: StatRowsInput,
    /// Every trace's distinct rules: what an update's counters are expanded into.
    rules: policy_stats::TraceRules,
    hint_scratch: Scratch<hints::HintRow, isize>,
    stat_scratch: Scratch<policy_stats::StatRow, Stats>,
    /// The inputs of the registered views, each deriving its rows from every record.
    registered: Vec<Box<dyn ViewFeed>>,
}

/// Derived rows of the open tick, summed by row as they arrive.
struct Scratch<D, R> {
    rows: HashMap<D, R, BuildHasherDefault<FxHasher>>,
}

impl<D: Hash + Eq, R: Semigroup + IsZero> Scratch<D, R> {
    fn new() -> Self {
        Scratch {
            rows: HashMap::default(),
        }
    }

    fn extend(&mut self, rows: impl IntoIterator<Item = (D, R)>) {
        for (row, diff) in rows {
            match self.rows.entry(row) {
                Entry::Occupied(mut held) => held.get_mut().plus_equals(&diff),
                Entry::Vacant(room) => {
                    room.insert(diff);
                }
            }
        }
    }

    /// The open tick's rows, summed, leaving the scratch space empty. Its table is kept for
    /// the next tick (about one entry per distinct derived row of a tick): a fresh one each
    /// tick cost a page fault per page.
    fn take(&mut self) -> impl Iterator<Item = (D, R)> + '_ {
        self.rows.drain().filter(|(_, diff)| !diff.is_zero())
    }
}

impl EngineInputs {
    /// Builds the dataflow with every view on `worker` and returns its inputs and views.
    pub fn build(worker: &mut Worker, probe: &ProbeHandle<Tick>) -> (EngineInputs, Views) {
        worker.dataflow(|scope| {
            let (rows_input, rows) = scope.new_collection();
            let (hint_input, hint_rows) = scope.new_collection();
            let (stat_input, stat_rows) = scope.new_collection();
            let (feeds, readers): (Vec<_>, Vec<_>) = REGISTERED
                .iter()
                .map(|view| {
                    let built = view.build(scope, probe);
                    (built.feed, built.reader)
                })
                .unzip();
            let mut views = Views::build(
                Inputs {
                    rows,
                    hint_rows,
                    stat_rows,
                },
                probe,
            );
            views.registered = readers;
            let inputs = EngineInputs {
                rows: rows_input,
                hint_rows: hint_input,
                stat_rows: stat_input,
                rules: policy_stats::TraceRules::default(),
                hint_scratch: Scratch::new(),
                stat_scratch: Scratch::new(),
                registered: feeds,
            };
            (inputs, views)
        })
    }

    /// Inserts a batch of updates into every input and notes each flow's key in `keys`.
    pub fn insert<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a FlowRecord>,
        keys: &mut FlowKeys,
    ) {
        let tick = self.time();
        self.insert_rows(
            records
                .into_iter()
                .inspect(|record| keys.note(&record.key, tick)),
        );
    }

    /// Inserts retractions (records with negative counts, whose keys are already held).
    pub fn retract(&mut self, records: &[FlowRecord]) {
        self.insert_rows(records.iter());
    }

    fn insert_rows<'a>(&mut self, records: impl Iterator<Item = &'a FlowRecord>) {
        for record in records {
            self.rows.update(
                (record.key.id, (record.bucket, record.labels)),
                record.stats,
            );
            self.hint_scratch.extend(hints::rows_of(record));
            self.stat_scratch.extend(self.rules.rows_of(record));
            for view in &mut self.registered {
                view.note(record);
            }
        }
        for view in &mut self.registered {
            view.end_batch();
        }
    }

    /// Hands the open tick's derived rows, consolidated, to their input sessions.
    fn flush_derived(&mut self) {
        for (row, count) in self.hint_scratch.take() {
            self.hint_rows.update(row, count);
        }
        for (row, stats) in self.stat_scratch.take() {
            self.stat_rows.update(row, stats);
        }
    }

    /// Adds the distinct rules of newly seen traces: every worker holds every trace's rules,
    /// and they must arrive before (or with, ahead of) the trace's first record.
    pub fn insert_rules(&mut self, rules: &[(TraceId, PolicyRule)]) {
        self.rules.insert(rules);
    }

    /// Forgets the rules of traces no retained flow uses any more.
    pub fn retract_rules(&mut self, rules: &[(TraceId, PolicyRule)]) {
        self.rules.retract(rules);
    }

    /// The tick updates are inserted at.
    pub fn time(&self) -> Tick {
        *self.rows.time()
    }

    /// Closes every tick before `tick` on every input, handing over the open tick's derived
    /// rows first.
    pub fn advance_to(&mut self, tick: Tick) {
        if tick > self.time() {
            self.flush_derived();
            self.rows.advance_to(tick);
            self.rows.flush();
            self.hint_rows.advance_to(tick);
            self.hint_rows.flush();
            self.stat_rows.advance_to(tick);
            self.stat_rows.flush();
            for view in &mut self.registered {
                view.advance_to(tick);
            }
        }
    }
}
