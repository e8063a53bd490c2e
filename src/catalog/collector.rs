//! The catalog collector: at every epoch end it removes the strings, label sets and traces
//! (with their rules) that no retained flow has used at two epoch ends in a row, so pods that
//! come and go, and policies that change, do not fill the catalog's tables and memory follows
//! what is retained (SPEC §12.4).
//!
//! Safety of removal. A round begins with the catalog gate held exclusively, and only briefly:
//! every ingest batch holds the gate shared from its first intern until it is handed to the
//! engine, so while the collector holds it no batch is between the two. Under the gate the
//! collector starts a new round on every table (noting how far ids go; interns from now on
//! stamp their entry with the round) and queues its used-ids read behind every batch handed so
//! far; it then releases the gate and waits for the answer. So an id below the mark that the
//! answer does not show is either used by nobody, or was interned again after the round began
//! and carries the round's stamp: removal, under the table's lock, skips stamped entries, and a
//! value interned after its removal gets a new id (ids are never reused). Requiring two rounds
//! in a row covers answers read just before a row expired and turned into text just after.
//!
//! A removed trace's rules leave the rules table; those the engine holds are retracted from it
//! (no retained flow uses the trace, so the policy statistics do not change). Strings named by
//! the rules of a trace are kept while the trace is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use eddy_dataflows::queries::used_ids::IdMarks;

use crate::catalog::Catalog;
use crate::worker::protocol::IngestBatch;
use crate::worker::{Engine, EngineStopped};

/// Entries the collector removed, by table.
#[derive(Debug, Default)]
pub struct CollectorCounters {
    /// Strings removed.
    pub strings: AtomicU64,
    /// Label sets removed.
    pub label_sets: AtomicU64,
    /// Traces removed.
    pub traces: AtomicU64,
    /// Trace rules removed (with their traces).
    pub trace_rules: AtomicU64,
}

/// The ids found unused at one epoch end, ascending.
#[derive(Debug, Default)]
struct Unused {
    strings: Vec<u32>,
    label_sets: Vec<u32>,
    traces: Vec<u32>,
}

/// The ids in both ascending lists.
fn in_both(earlier: &[u32], now: &[u32]) -> Vec<u32> {
    let mut both = Vec::new();
    let mut earlier = earlier.iter().peekable();
    for id in now {
        while earlier.next_if(|e| *e < id).is_some() {}
        if earlier.peek() == Some(&id) {
            both.push(*id);
        }
    }
    both
}

/// Removes what no retained flow used at this epoch end nor at the one before.
pub struct CatalogCollector {
    engine: Engine,
    catalog: Arc<Catalog>,
    previous: Unused,
}

impl CatalogCollector {
    /// A collector with nothing seen yet.
    pub fn new(engine: Engine, catalog: Arc<Catalog>) -> Self {
        CatalogCollector {
            engine,
            catalog,
            previous: Unused::default(),
        }
    }

    /// Collects at every epoch end until the engine stops.
    pub async fn run(mut self) {
        let mut epochs = self.engine.epochs();
        while epochs.changed().await.is_ok() {
            if self.collect().await.is_err() {
                return;
            }
        }
    }

    /// One round: finds the unused ids and removes those that were unused last round too and
    /// have not been interned since this round began.
    pub async fn collect(&mut self) -> Result<(), EngineStopped> {
        let catalog = &self.catalog;
        let (round, marks, read) = {
            let _gate = catalog.gate.write().await;
            let (round, marks) = catalog.begin_round();
            let marks = IdMarks {
                strings: marks.strings,
                label_sets: marks.label_sets,
                traces: marks.traces,
            };
            (round, marks, self.engine.ask_used_ids(marks).await?)
        };
        let mut used = read.gather().await?;
        catalog.rules.for_each_string(|id| used.strings.insert(id));
        let now = Unused {
            strings: catalog
                .symbols
                .table()
                .ids_below(marks.strings, |id| !used.strings.contains(id)),
            label_sets: catalog
                .label_sets
                .ids_below(marks.label_sets, |id| !used.label_sets.contains(id)),
            traces: catalog
                .traces
                .ids_below(marks.traces, |id| !used.traces.contains(id)),
        };
        let removed = &catalog.removed;
        let strings = in_both(&self.previous.strings, &now.strings);
        let count = catalog.symbols.table().remove_unused(&strings, round).len();
        removed.strings.fetch_add(count as u64, Ordering::Relaxed);
        let label_sets = in_both(&self.previous.label_sets, &now.label_sets);
        let count = catalog.label_sets.remove_unused(&label_sets, round).len();
        removed
            .label_sets
            .fetch_add(count as u64, Ordering::Relaxed);
        let traces = in_both(&self.previous.traces, &now.traces);
        let traces = catalog.traces.remove_unused(&traces, round);
        removed
            .traces
            .fetch_add(traces.len() as u64, Ordering::Relaxed);
        let (dropped, retired) = catalog.rules.remove(&traces);
        removed
            .trace_rules
            .fetch_add(dropped as u64, Ordering::Relaxed);
        self.previous = now;
        self.engine
            .ingest(IngestBatch {
                retired_rules: retired,
                ..IngestBatch::default()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_both_keeps_the_common_ids_in_order() {
        assert_eq!(in_both(&[1, 3, 5, 9], &[2, 3, 4, 5, 10]), vec![3, 5]);
        assert_eq!(in_both(&[], &[1, 2]), Vec::<u32>::new());
        assert_eq!(in_both(&[1, 2], &[]), Vec::<u32>::new());
    }
}
