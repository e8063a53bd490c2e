//! The engine's input sessions on one worker, and the one way records enter them: every
//! update (or retraction) goes into the flow rows as a fixed-size row (its key noted once in the
//! worker's key store), and into the hint rows and the counters by trace after consolidation
//! across the batch, so all views stay consistent.

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::input::Input;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::worker::Worker;

use crate::keys::FlowKeys;
use crate::model::{FlowRecord, PolicyRule, Stats, Tick, TraceId};
use crate::traces::{FlowRowsInput, HintRowsInput, TraceFlowsInput, TraceRulesInput};
use crate::views::registry::ViewFeed;
use crate::views::{hints, policy_stats, Inputs, Views, REGISTERED};

/// The input sessions of one worker, plus scratch space reused across batches.
pub struct EngineInputs {
    rows: FlowRowsInput,
    hint_rows: HintRowsInput,
    trace_flows: TraceFlowsInput,
    trace_rules: TraceRulesInput,
    hint_scratch: Vec<(hints::HintRow, isize)>,
    trace_scratch: Vec<(policy_stats::TraceFlow, Stats)>,
    /// The inputs of the registered views, each deriving its rows from every record.
    registered: Vec<Box<dyn ViewFeed>>,
}

impl EngineInputs {
    /// Builds the dataflow with every view on `worker` and returns its inputs and views.
    pub fn build(worker: &mut Worker, probe: &ProbeHandle<Tick>) -> (EngineInputs, Views) {
        worker.dataflow(|scope| {
            let (rows_input, rows) = scope.new_collection();
            let (hint_input, hint_rows) = scope.new_collection();
            let (trace_flows_input, trace_flows) = scope.new_collection();
            let (rules_input, trace_rules) = scope.new_collection();
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
                    trace_flows,
                    trace_rules,
                },
                probe,
            );
            views.registered = readers;
            let inputs = EngineInputs {
                rows: rows_input,
                hint_rows: hint_input,
                trace_flows: trace_flows_input,
                trace_rules: rules_input,
                hint_scratch: Vec::new(),
                trace_scratch: Vec::new(),
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
            self.trace_scratch.push(policy_stats::trace_flow_of(record));
            for view in &mut self.registered {
                view.note(record);
            }
        }
        for view in &mut self.registered {
            view.end_batch();
        }
        consolidate(&mut self.hint_scratch);
        for (row, count) in self.hint_scratch.drain(..) {
            self.hint_rows.update(row, count);
        }
        consolidate(&mut self.trace_scratch);
        for (row, stats) in self.trace_scratch.drain(..) {
            self.trace_flows.update(row, stats);
        }
    }

    /// Inserts the distinct rules of newly seen traces.
    pub fn insert_rules(&mut self, rules: &[(TraceId, PolicyRule)]) {
        for rule in rules {
            self.trace_rules.insert(*rule);
        }
    }

    /// Retracts the rules of traces no retained flow uses any more.
    pub fn retract_rules(&mut self, rules: &[(TraceId, PolicyRule)]) {
        for rule in rules {
            self.trace_rules.remove(*rule);
        }
    }

    /// The tick updates are inserted at.
    pub fn time(&self) -> Tick {
        *self.rows.time()
    }

    /// Closes every tick before `tick` on every input.
    pub fn advance_to(&mut self, tick: Tick) {
        if tick > self.time() {
            self.rows.advance_to(tick);
            self.rows.flush();
            self.hint_rows.advance_to(tick);
            self.hint_rows.flush();
            self.trace_flows.advance_to(tick);
            self.trace_flows.flush();
            self.trace_rules.advance_to(tick);
            self.trace_rules.flush();
            for view in &mut self.registered {
                view.advance_to(tick);
            }
        }
    }
}
