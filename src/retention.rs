//! Bucket arithmetic and the retention window (SPEC §2): which buckets exist now.

use eddy_dataflows::model::Bucket;

/// The aggregation window and how many closed buckets are retained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The bucket width W, in seconds (at least 1).
    pub window: i64,
    /// How many closed buckets are kept (R, at least 1).
    pub closed_buckets: i64,
}

impl Retention {
    /// The start of the bucket holding Unix second `t`: `B(t)`.
    pub fn bucket_of(&self, t: i64) -> Bucket {
        t - t.rem_euclid(self.window)
    }

    /// The oldest retained bucket at time `now`.
    pub fn oldest(&self, now: i64) -> Bucket {
        self.bucket_of(now) - self.closed_buckets * self.window
    }

    /// The newest bucket accepted at time `now`: the one after the current (clock skew).
    pub fn newest(&self, now: i64) -> Bucket {
        self.bucket_of(now) + self.window
    }

    /// Whether a flow starting at `start_time` is stored at time `now` (SPEC §2.4).
    pub fn accepts(&self, start_time: i64, now: i64) -> bool {
        let bucket = self.bucket_of(start_time);
        start_time > 0 && bucket >= self.oldest(now) && bucket <= self.newest(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_bounds_follow_spec_2() {
        let retention = Retention {
            window: 15,
            closed_buckets: 240,
        };
        assert_eq!(retention.bucket_of(1_000_007), 1_000_005);
        assert_eq!(retention.oldest(1_000_007), 1_000_005 - 3600);
        assert_eq!(retention.newest(1_000_007), 1_000_020);
        assert!(retention.accepts(1_000_020, 1_000_007));
        assert!(!retention.accepts(1_000_035, 1_000_007));
        assert!(retention.accepts(1_000_005 - 3600, 1_000_007));
        assert!(!retention.accepts(1_000_004 - 3600, 1_000_007));
        assert!(!retention.accepts(0, 1_000_007));
    }
}
