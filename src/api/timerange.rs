//! Request time bounds (SPEC §2.5, §2.6): normalise, validate, then clamp to retention.

use eddy_dataflows::model::BucketRange;

use crate::api::status::ApiError;
use crate::retention::Retention;

/// The selected buckets for `start_time_gte`/`start_time_lt` at time `now`.
///
/// `gte` 0 is the oldest retained bucket, `lt` 0 is `now`, negatives are relative to `now`.
/// `gte >= lt` after normalising is invalid; clamping to retention afterwards never is.
pub fn bucket_range(
    gte: i64,
    lt: i64,
    now: i64,
    retention: &Retention,
) -> Result<BucketRange, ApiError> {
    let oldest = retention.oldest(now);
    let gte = match gte {
        0 => oldest,
        relative if relative < 0 => now.saturating_add(relative),
        absolute => absolute,
    };
    let lt = match lt {
        0 => now,
        relative if relative < 0 => now.saturating_add(relative),
        absolute => absolute,
    };
    if gte >= lt {
        return Err(ApiError::invalid(
            "start_time_gte",
            format!("must be before start_time_lt (normalised: {gte} >= {lt})"),
        ));
    }
    let newest_end = retention.newest(now) + retention.window;
    Ok(BucketRange {
        gte: gte.max(oldest),
        lt: lt.min(newest_end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETENTION: Retention = Retention {
        window: 15,
        closed_buckets: 4,
    };

    #[test]
    fn zero_bounds_mean_oldest_and_now() {
        let range = bucket_range(0, 0, 1000, &RETENTION).expect("valid");
        assert_eq!(range, BucketRange { gte: 930, lt: 1000 });
    }

    #[test]
    fn relative_bounds_count_back_from_now() {
        let range = bucket_range(-30, -15, 1000, &RETENTION).expect("valid");
        assert_eq!(range, BucketRange { gte: 970, lt: 985 });
    }

    #[test]
    fn inverted_range_is_invalid_before_clamping() {
        assert!(bucket_range(2000, 1500, 1000, &RETENTION).is_err());
        assert!(bucket_range(-10, -10, 1000, &RETENTION).is_err());
        // Entirely older than retention: valid, clamped, selects nothing.
        let range = bucket_range(10, 20, 1000, &RETENTION).expect("valid");
        assert!(range.gte >= range.lt);
    }
}
