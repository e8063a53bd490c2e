//! Derived rows of the open tick, summed by row as they arrive: how the hints view and the
//! bucketed views consolidate their input across a tick before it enters.
//!
//! Every update of a tick carries the same timestamp, so summing them first changes no view,
//! and the many updates of a tick that share a namespace, a trace or a namespace pair reach the
//! batchers and the merges as one row. The scratch space is a hash map summing each derived
//! row as it arrives (sorting it per batch cost more than the batchers' own sorts), so it
//! holds one entry per distinct derived row of the open tick.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};

use differential_dataflow::difference::{IsZero, Semigroup};
use rustc_hash::FxHasher;

/// Derived rows of the open tick, summed by row as they arrive.
pub struct Scratch<D, R> {
    rows: HashMap<D, R, BuildHasherDefault<FxHasher>>,
}

impl<D: Hash + Eq, R: Semigroup + IsZero> Default for Scratch<D, R> {
    fn default() -> Self {
        Scratch {
            rows: HashMap::default(),
        }
    }
}

impl<D: Hash + Eq, R: Semigroup + IsZero> Scratch<D, R> {
    /// Adds `rows` to the open tick's sums.
    pub fn extend(&mut self, rows: impl IntoIterator<Item = (D, R)>) {
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
    pub fn take(&mut self) -> impl Iterator<Item = (D, R)> + '_ {
        self.rows.drain().filter(|(_, diff)| !diff.is_zero())
    }
}
