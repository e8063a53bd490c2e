//! The change log a bucketed view keeps on one worker for its subscribers: the updates of
//! every batch its arrangement built on this worker, with their ticks. A read of the changes
//! takes the entries of the ticks the arrangement already holds; the rest wait for the next
//! read. While nobody subscribes, entries are dropped as soon as the views reflect their
//! tick, so the log holds at most the ticks still in flight.

use std::cell::RefCell;
use std::rc::Rc;

use crate::model::Tick;

/// The updates of a view's arrangement on one worker, with their ticks.
#[derive(Debug)]
pub struct ChangeLog<R, M> {
    recording: bool,
    entries: Vec<(Tick, R, M)>,
}

impl<R, M> Default for ChangeLog<R, M> {
    fn default() -> Self {
        ChangeLog {
            recording: false,
            entries: Vec::new(),
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
}
