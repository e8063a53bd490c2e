//! The engine's inputs on one worker, and the one way records enter them: every update (or
//! retraction) goes to the input of every registered view ([`ViewFeed`]), which derives its
//! own rows from it, so all views stay consistent. Each view consolidates its rows as it
//! chooses (per batch, or across the tick) and hands them over when the tick closes
//! ([`EngineInputs::advance_to`]). The policy rule changes of each ingest batch reach every
//! view's input too; the policy statistics view is the one that keeps them.

use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::worker::Worker;

use crate::model::{FlowRecord, PolicyRule, Tick, TraceId};
use crate::views::registry::ViewFeed;
use crate::views::{Views, REGISTERED};

/// The inputs of every registered view on one worker.
pub struct EngineInputs {
    /// The inputs of the registered views, each deriving its rows from every record.
    feeds: Vec<Box<dyn ViewFeed>>,
    /// The tick updates are inserted at.
    tick: Tick,
}

impl EngineInputs {
    /// Builds the dataflow with every view on `worker` and returns its inputs and views.
    pub fn build(worker: &mut Worker, probe: &ProbeHandle<Tick>) -> (EngineInputs, Views) {
        worker.dataflow(|scope| {
            let (feeds, registered): (Vec<_>, Vec<_>) = REGISTERED
                .iter()
                .map(|view| {
                    let built = view.build(scope, probe);
                    (built.feed, built.reader)
                })
                .unzip();
            let mut views = Views { registered };
            views.hand_out_flows();
            (EngineInputs { feeds, tick: 0 }, views)
        })
    }

    /// Inserts a batch of updates into every input.
    pub fn insert<'a>(&mut self, records: impl IntoIterator<Item = &'a FlowRecord>) {
        for record in records {
            for feed in &mut self.feeds {
                feed.note(record);
            }
        }
    }

    /// Inserts retractions (records with negative counts, of rows already held).
    pub fn retract(&mut self, records: &[FlowRecord]) {
        for record in records {
            for feed in &mut self.feeds {
                feed.note(record);
            }
        }
    }

    /// Adds the distinct rules of newly seen traces: every worker holds every trace's rules,
    /// and they must arrive before (or with, ahead of) the trace's first record.
    pub fn insert_rules(&mut self, rules: &[(TraceId, PolicyRule)]) {
        if !rules.is_empty() {
            for feed in &mut self.feeds {
                feed.insert_rules(rules);
            }
        }
    }

    /// Forgets the rules of traces no retained flow uses any more.
    pub fn retract_rules(&mut self, rules: &[(TraceId, PolicyRule)]) {
        if !rules.is_empty() {
            for feed in &mut self.feeds {
                feed.retract_rules(rules);
            }
        }
    }

    /// The tick updates are inserted at.
    pub fn time(&self) -> Tick {
        self.tick
    }

    /// Closes every tick before `tick` on every input, each handing over its open tick's
    /// rows first.
    pub fn advance_to(&mut self, tick: Tick) {
        if tick > self.tick {
            self.tick = tick;
            for feed in &mut self.feeds {
                feed.advance_to(tick);
            }
        }
    }
}
