//! How far the workers' views have come: each worker publishes the first tick its views do
//! not yet reflect, and wakes the controller, which holds ingest back until the engine has
//! caught up (see [`crate::worker::controller`]).

use std::sync::atomic::{AtomicU64, Ordering};

use eddy_dataflows::model::Tick;

/// The workers' frontiers and the controller's wake-up call.
pub struct Progress {
    frontiers: Vec<AtomicU64>,
    wake: flume::Sender<()>,
}

impl Progress {
    /// Progress for `workers` workers, all at tick 0, and the receiver that wakes the
    /// controller when one of them advances.
    pub fn new(workers: usize) -> (Progress, flume::Receiver<()>) {
        let (wake, woken) = flume::bounded(1);
        let frontiers = (0..workers).map(|_| AtomicU64::new(0)).collect();
        (Progress { frontiers, wake }, woken)
    }

    /// Worker `worker`'s views reflect every tick before `frontier`.
    pub fn advanced(&self, worker: usize, frontier: Tick) {
        if let Some(slot) = self.frontiers.get(worker) {
            slot.fetch_max(frontier, Ordering::Release);
            // A full channel already holds a wake-up the controller has not seen.
            let _ = self.wake.try_send(());
        }
    }

    /// The first tick some worker's views do not yet reflect: every tick before it is in
    /// every view.
    pub fn reflected(&self) -> Tick {
        self.frontiers
            .iter()
            .map(|frontier| frontier.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_worker_sets_what_is_reflected() {
        let (progress, woken) = Progress::new(2);
        assert_eq!(progress.reflected(), 0);
        progress.advanced(0, 5);
        assert_eq!(progress.reflected(), 0);
        progress.advanced(1, 3);
        assert_eq!(progress.reflected(), 3);
        progress.advanced(1, 2);
        assert_eq!(progress.reflected(), 3);
        assert_eq!(woken.try_recv(), Ok(()));
        assert!(woken.try_recv().is_err());
    }
}
