//! The catalog collector: at every epoch end it removes the strings and label sets that no
//! retained flow has used at two epoch ends in a row, so pods that come and go do not fill the
//! interner tables and memory follows what is retained.
//!
//! Safety of removal: the collector takes the catalog gate exclusively while it notes how far
//! ids go and reads which ids the retained flows use; ingest holds the gate shared from its
//! first intern until its batch is handed over, so an id below the mark that no flow uses is
//! used by nobody. Requiring two epochs in a row covers answers read just before a row
//! expired and turned into text just after. Strings of policy rules stay while their trace
//! does (traces are never removed). Ids are never reused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::worker::{Engine, EngineStopped};

/// Entries the collector removed, by table.
#[derive(Debug, Default)]
pub struct CollectorCounters {
    /// Strings removed.
    pub strings: AtomicU64,
    /// Label sets removed.
    pub label_sets: AtomicU64,
}

/// The ids found unused at one epoch end, ascending.
#[derive(Debug, Default)]
struct Unused {
    strings: Vec<u32>,
    label_sets: Vec<u32>,
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

    /// One round: finds the unused ids and removes those that were unused last round too.
    pub async fn collect(&mut self) -> Result<(), EngineStopped> {
        let catalog = &self.catalog;
        let (strings_below, label_sets_below, mut used) = {
            let _gate = catalog.gate.write().await;
            let strings_below = catalog.symbols.next_id();
            let label_sets_below = catalog.label_sets.next_id();
            let used = self
                .engine
                .used_ids(strings_below, label_sets_below)
                .await?;
            (strings_below, label_sets_below, used)
        };
        catalog.for_each_rule_string(|id| used.strings.insert(id));
        let now = Unused {
            strings: catalog
                .symbols
                .ids_below(strings_below, |id| !used.strings.contains(id)),
            label_sets: catalog
                .label_sets
                .ids_below(label_sets_below, |id| !used.label_sets.contains(id)),
        };
        let strings = in_both(&self.previous.strings, &now.strings);
        let label_sets = in_both(&self.previous.label_sets, &now.label_sets);
        let removed = catalog.symbols.remove_unused(&strings);
        catalog
            .removed
            .strings
            .fetch_add(removed as u64, Ordering::Relaxed);
        let removed = catalog.label_sets.remove_unused(&label_sets);
        catalog
            .removed
            .label_sets
            .fetch_add(removed as u64, Ordering::Relaxed);
        self.previous = now;
        Ok(())
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
