//! The change log a view keeps on one worker for its subscribers: while someone subscribes,
//! the updates of every batch its arrangement built on this worker, with their ticks. A read
//! of the changes takes the entries of the ticks the arrangement already holds; the rest wait
//! for the next read. Once nobody subscribes, entries are dropped as soon as the views reflect
//! their tick.
//!
//! While nobody subscribes a view notes no update: it tells the log how far the batches it
//! skipped went ([`ChangeLog::skip_through`]), and a snapshot then reads the arrangement
//! through those ticks ([`ChangeLog::snapshot_before`]), so no skipped update is missing from
//! the snapshot nor counted again as a change.

use std::cell::RefCell;
use std::rc::Rc;

use crate::model::Tick;

/// The updates of a view's arrangement on one worker, with their ticks.
#[derive(Debug)]
pub struct ChangeLog<R, M> {
    recording: bool,
    entries: Vec<(Tick, R, M)>,
    skipped_before: Tick,
}

impl<R, M> Default for ChangeLog<R, M> {
    fn default() -> Self {
        ChangeLog {
            recording: false,
            entries: Vec::new(),
            skipped_before: 0,
        }
    }
}

/// A change log shared by a view's input and its reader (both on one worker's thread).
pub type SharedLog<R, M> = Rc<RefCell<ChangeLog<R, M>>>;

impl<R: Clone, M: Clone> ChangeLog<R, M> {
    /// Notes an update of `row` at `tick`.
    pub fn record(&mut self, tick: Tick, row: R, measures: M) {
        self.entries.push((tick, row, measures));
    }

    /// Whether changes are kept until read.
    pub fn set_recording(&mut self, recording: bool) {
        self.recording = recording;
    }

    /// Whether changes are kept until read (a view that skips its batches while nobody
    /// subscribes notes them only then).
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Notes that a batch of updates at ticks before the frontier `upper` (a span's upper;
    /// empty: no tick after it) was not noted.
    pub fn skip_through(&mut self, upper: &[Tick]) {
        let upper = upper.iter().copied().max().unwrap_or(Tick::MAX);
        self.skipped_before = self.skipped_before.max(upper);
    }

    /// The ticks a snapshot asked for at `before` must read: those before `before`, and every
    /// tick of a skipped batch (in the arrangement already, and in no later change).
    pub fn snapshot_before(&self, before: Tick) -> Tick {
        before.max(self.skipped_before)
    }

    /// Takes the rows sent at ticks before `before`.
    pub fn take_before(&mut self, before: Tick) -> Vec<(R, M)> {
        let mut taken = Vec::new();
        self.entries.retain(|(tick, row, measures)| {
            let take = *tick < before;
            if take {
                taken.push((row.clone(), measures.clone()));
            }
            !take
        });
        taken
    }

    /// The rows sent at `tick` or later, still in the log.
    pub fn from_tick(&self, tick: Tick) -> impl Iterator<Item = (&R, &M)> {
        self.entries
            .iter()
            .filter(move |(at, _, _)| *at >= tick)
            .map(|(_, row, measures)| (row, measures))
    }

    /// Drops the rows sent before `tick` unless changes are being recorded.
    pub fn forget_before(&mut self, tick: Tick) {
        if !self.recording {
            self.entries.retain(|(at, _, _)| *at >= tick);
        }
    }

    /// How many rows the log holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the log holds no row.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_take_the_reflected_ticks_and_idle_logs_forget_them() {
        let mut log: ChangeLog<u32, i64> = ChangeLog::default();
        log.record(1, 7, 2);
        log.record(3, 7, -2);
        log.record(1, 8, 1);
        log.forget_before(2);
        assert_eq!(
            log.len(),
            1,
            "not recording: tick 1 is dropped once reflected"
        );
        log.set_recording(true);
        log.record(4, 9, 5);
        log.forget_before(5);
        assert_eq!(log.len(), 2, "recording: nothing is dropped");
        assert_eq!(log.take_before(4), vec![(7, -2)]);
        assert_eq!(log.take_before(5), vec![(9, 5)]);
        assert!(log.is_empty());
    }

    #[test]
    fn a_snapshot_reads_through_the_skipped_batches() {
        let mut log: ChangeLog<u32, i64> = ChangeLog::default();
        assert_eq!(log.snapshot_before(3), 3);
        log.skip_through(&[5]);
        log.skip_through(&[4]);
        assert_eq!(log.snapshot_before(3), 5);
        assert_eq!(log.snapshot_before(7), 7);
        log.skip_through(&[]);
        assert_eq!(log.snapshot_before(7), Tick::MAX);
    }
}
