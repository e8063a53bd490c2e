//! The `--rate` cap: one pacer shared by every node, a generic cell rate algorithm (a token
//! bucket without a refill task) that allows a burst of about 10 ms worth of updates.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Spaces sends so that all nodes together stay under a rate.
#[derive(Debug)]
pub struct Pacer {
    period: Duration,
    tolerance: Duration,
    /// The theoretical arrival time of the next send.
    next: Mutex<Instant>,
}

impl Pacer {
    /// A pacer for `rate` updates per second (at least one).
    pub fn new(rate: u32, now: Instant) -> Pacer {
        let rate = rate.max(1);
        let period = Duration::from_secs(1) / rate;
        Pacer {
            period,
            tolerance: period * (rate / 100).max(1),
            next: Mutex::new(now),
        }
    }

    /// When the next send may go: `now` or earlier means at once.
    pub fn ready_at(&self) -> Instant {
        let next = *self.next.lock();
        next.checked_sub(self.tolerance).unwrap_or(next)
    }

    /// Accounts for one send at `now`.
    pub fn take(&self, now: Instant) {
        let mut next = self.next.lock();
        *next = (*next).max(now) + self.period;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_are_spaced_by_the_period_after_a_small_burst() {
        let start = Instant::now();
        let pacer = Pacer::new(1000, start);
        let mut sent = 0;
        let mut now = start;
        // Simulate 100 ms of a sender that goes whenever allowed.
        while now < start + Duration::from_millis(100) {
            if pacer.ready_at() <= now {
                pacer.take(now);
                sent += 1;
            } else {
                now = pacer.ready_at();
            }
        }
        assert!((100..=111).contains(&sent), "sent {sent}");
    }
}
