//! The batcher of Eddy's arrangements: a tick's updates are kept as they arrive and sorted
//! once when the tick closes, instead of differential's merge batcher, which sorts them in
//! small chunks and merges the chunks pairwise (each update copied once per merge level).
//!
//! Eddy's times are ticks (totally ordered), each tick's updates are bounded by the tick size
//! (`--tick-records`, or recovery's bulk ticks), and the views' feeds already sum most derived
//! rows per tick, so holding a tick unconsolidated until it closes costs no more memory than
//! the tick's updates themselves. A close is then one sort and one pass that sums equal
//! updates, and the batch is built from that one sorted run.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use differential_dataflow::batcher::merge::Sealer;
use differential_dataflow::batcher::{Batcher, Extract};
use differential_dataflow::consolidation::consolidate_updates;
use differential_dataflow::difference::Semigroup;
use differential_dataflow::logging::Logger;
use differential_dataflow::trace::implementations::{KeyBuilder, ValBuilder};
use timely::progress::frontier::{Antichain, AntichainRef};
use timely::progress::Timestamp;

/// The updates every sorting batcher of this process holds (every arrangement on every
/// worker), waiting for their tick to close. Bounded by the open tick: its records
/// (`--tick-records`, or recovery's bulk ticks) times the rows each view derives from a record,
/// fewer once the feeds sum them per tick. Exported as `eddy_engine_batcher_held_updates`.
static HELD_UPDATES: AtomicUsize = AtomicUsize::new(0);

/// How many updates the sorting batchers of this process hold (see [`HELD_UPDATES`]).
pub fn held_updates() -> usize {
    HELD_UPDATES.load(Ordering::Relaxed)
}

/// The batcher of a `ValSpine<K, V, T, R>`.
pub type ValSorter<K, V, T, R> = SortingBatcher<(K, V), T, R, ValBuilder<K, V, T, R>>;

/// The batcher of a `KeySpine<K, T, R>`.
pub type KeySorter<K, T, R> = SortingBatcher<(K, ()), T, R, KeyBuilder<K, T, R>>;

/// Updates `(data, time, diff)` held until their time closes, then sorted, summed and sealed
/// by `S` into one batch.
pub struct SortingBatcher<D, T, R, S> {
    /// Every update not yet extracted, in arrival order (moved out of the containers that
    /// bring them, which their senders reuse).
    pending: Vec<(D, T, R)>,
    /// The lower bound of the times in `pending`, as of the last extraction.
    frontier: Antichain<T>,
    sealer: PhantomData<S>,
}

impl<D, T, R, S> SortingBatcher<D, T, R, S> {
    /// An empty batcher; the signature `arrange_core` asks of a batcher's constructor (this
    /// batcher logs no sizes).
    pub fn new(_logger: Option<Logger>, _operator_id: usize) -> Self {
        SortingBatcher {
            pending: Vec::new(),
            frontier: Antichain::new(),
            sealer: PhantomData,
        }
    }
}

impl<D, T, R, S> Batcher<Vec<(D, T, R)>> for SortingBatcher<D, T, R, S>
where
    D: Ord,
    T: Timestamp,
    R: Semigroup,
    S: Sealer<Vec<(D, T, R)>>,
{
    fn insert(&mut self, container: &mut Vec<(D, T, R)>) {
        HELD_UPDATES.fetch_add(container.len(), Ordering::Relaxed);
        self.pending.append(container);
    }
}

impl<D, T, R, S> Extract for SortingBatcher<D, T, R, S>
where
    D: Ord,
    T: Timestamp,
    R: Semigroup,
    S: Sealer<Vec<(D, T, R)>>,
{
    type Time = T;
    type Output = S::Output;

    fn extract<'a>(
        &'a mut self,
        upper: AntichainRef<'_, T>,
    ) -> (Option<S::Output>, AntichainRef<'a, T>) {
        let mut readied = if self
            .pending
            .iter()
            .all(|(_, time, _)| !upper.less_equal(time))
        {
            // The next tick is about as large as this one: room for it at once, rather than
            // growing by doubling.
            let room = Vec::with_capacity(self.pending.len());
            std::mem::replace(&mut self.pending, room)
        } else {
            let (kept, readied) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|(_, time, _)| upper.less_equal(time));
            self.pending = kept;
            readied
        };
        HELD_UPDATES.fetch_sub(readied.len(), Ordering::Relaxed);
        self.frontier.clear();
        for (_, time, _) in &self.pending {
            self.frontier.insert_ref(time);
        }
        consolidate_updates(&mut readied);
        let batch = if readied.is_empty() {
            None
        } else {
            S::seal(&mut vec![readied])
        };
        (batch, self.frontier.borrow())
    }
}

impl<D, T, R, S> Drop for SortingBatcher<D, T, R, S> {
    fn drop(&mut self) {
        HELD_UPDATES.fetch_sub(self.pending.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use differential_dataflow::trace::{Cursor, Navigable};
    use proptest::prelude::*;

    use super::*;

    type Update = ((u8, u8), u64, i64);
    type Tested = ValSorter<u8, u8, u64, i64>;

    /// The batch's updates, `(key, val, time) -> diff`.
    fn contents(
        batch: &<ValBuilder<u8, u8, u64, i64> as Sealer<Vec<Update>>>::Output,
    ) -> BTreeMap<(u8, u8, u64), i64> {
        let mut cursor = batch.cursor();
        let mut seen = BTreeMap::new();
        while let Some(key) = cursor.get_key(batch) {
            while let Some(val) = cursor.get_val(batch) {
                cursor.map_times(batch, |time, diff| {
                    *seen.entry((*key, *val, *time)).or_insert(0) += *diff;
                });
                cursor.step_val(batch);
            }
            cursor.step_key(batch);
        }
        seen
    }

    proptest! {
        /// Each extraction seals exactly the updates before `upper`, summed, zero sums left
        /// out; later times stay held, bound the reported frontier and are counted as held.
        #[test]
        fn extraction_seals_the_summed_updates_before_upper(
            containers in prop::collection::vec(
                prop::collection::vec(((0u8..4, 0u8..3), 0u64..6, -2i64..3), 0..20),
                0..6,
            ),
            uppers in prop::collection::vec(0u64..8, 1..4),
        ) {
            // No other test of this crate builds a batcher: the process-wide count is this
            // batcher's.
            let counted_before = held_updates();
            let mut batcher = Tested::new(None, 0);
            let mut held: Vec<Update> = Vec::new();
            for mut container in containers {
                held.extend(container.iter().copied());
                batcher.insert(&mut container);
            }
            let mut uppers = uppers;
            uppers.sort_unstable();
            for upper in uppers {
                let mut expected: BTreeMap<(u8, u8, u64), i64> = BTreeMap::new();
                for ((key, val), time, diff) in held.iter().filter(|(_, time, _)| *time < upper) {
                    *expected.entry((*key, *val, *time)).or_insert(0) += diff;
                }
                expected.retain(|_, diff| *diff != 0);
                held.retain(|(_, time, _)| *time >= upper);
                let bound = Antichain::from_elem(upper);
                let (batch, frontier) = batcher.extract(bound.borrow());
                let lowest = held.iter().map(|(_, time, _)| *time).min();
                prop_assert_eq!(&frontier[..], lowest.as_slice());
                let sealed = batch.as_ref().map(contents).unwrap_or_default();
                prop_assert_eq!(sealed, expected);
                prop_assert_eq!(held_updates() - counted_before, held.len());
            }
            drop(batcher);
            prop_assert_eq!(held_updates(), counted_before, "a dropped batcher holds nothing");
        }
    }
}
