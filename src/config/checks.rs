//! Start-up checks of `eddy serve`'s windows (SPEC §12.7): each returns one line naming the
//! setting at fault. The aggregation window is from 1 s to 1 h, retention keeps at most
//! [`MAX_RETAINED_BUCKETS`], and the emitter's delay plus its window is shorter than retention.
//! Every sum is checked, so a huge value is refused instead of wrapping.

use std::time::Duration;

use crate::duration::whole_seconds;
use crate::retention::Retention;

/// The aggregation window's flag and variable.
pub const WINDOW: &str = "--aggregation-window (AGGREGATION_WINDOW)";
/// The retention's flag and variable.
pub const RETENTION: &str = "--retention (EDDY_RETENTION)";
/// The emitter window's flag and variable.
pub const EMITTER_WINDOW: &str = "--emitter-aggregation-window (EMITTER_AGGREGATION_WINDOW)";
/// The emitter delay's flag and variable.
pub const EMIT_AFTER: &str = "--emit-after-seconds (EMIT_AFTER_SECONDS)";

/// The narrowest aggregation window, in seconds.
pub const MIN_WINDOW: i64 = 1;
/// The widest aggregation window, in seconds.
pub const MAX_WINDOW: i64 = 3600;
/// The most closed buckets retention may keep.
pub const MAX_RETAINED_BUCKETS: i64 = 100_000;

/// The retention `window` and `retention` describe: whole seconds, a window from 1 s to 1 h,
/// at least one and at most [`MAX_RETAINED_BUCKETS`] closed buckets.
pub fn retention(window: Duration, retention: Duration) -> Result<Retention, String> {
    let width = whole_seconds(window, WINDOW)?;
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&width) {
        return Err(format!("{WINDOW} must be from 1s to 1h, not {width}s"));
    }
    let kept = whole_seconds(retention, RETENTION)?;
    if kept < width {
        return Err(format!(
            "{RETENTION} ({kept}s) must be at least one {WINDOW} ({width}s)"
        ));
    }
    let closed_buckets = kept / width;
    if closed_buckets > MAX_RETAINED_BUCKETS {
        return Err(format!(
            "{RETENTION} ({kept}s) keeps {closed_buckets} buckets of {width}s; at most \
             {MAX_RETAINED_BUCKETS} are allowed: shorten it or widen {WINDOW}"
        ));
    }
    Ok(Retention {
        window: width,
        closed_buckets,
    })
}

/// The emitter's window width in seconds: a positive multiple of the aggregation window,
/// which with `emit_after` seconds of delay ends inside retention.
pub fn emitter_width(
    retention: &Retention,
    emitter_window: Duration,
    emit_after: u32,
) -> Result<i64, String> {
    let width = whole_seconds(emitter_window, EMITTER_WINDOW)?;
    let window = retention.window;
    if width <= 0 || width % window != 0 {
        return Err(format!(
            "{EMITTER_WINDOW} ({width}s) must be a positive multiple of {WINDOW} ({window}s)"
        ));
    }
    let kept = retention.closed_buckets.saturating_mul(window);
    let reach = width.checked_add(i64::from(emit_after));
    if reach.is_none_or(|reach| reach >= kept) {
        return Err(format!(
            "{EMIT_AFTER} ({emit_after}s) plus {EMITTER_WINDOW} ({width}s) must be shorter \
             than {RETENTION} ({kept}s), or windows leave retention before they are sent"
        ));
    }
    Ok(width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(value: u64) -> Duration {
        Duration::from_secs(value)
    }

    #[test]
    fn windows_from_one_second_to_one_hour_are_accepted() {
        assert_eq!(
            retention(seconds(15), seconds(3600)),
            Ok(Retention {
                window: 15,
                closed_buckets: 240
            })
        );
        assert_eq!(
            retention(seconds(1), seconds(100_000)),
            Ok(Retention {
                window: 1,
                closed_buckets: 100_000
            })
        );
        assert_eq!(
            retention(seconds(3600), seconds(86_400)),
            Ok(Retention {
                window: 3600,
                closed_buckets: 24
            })
        );
    }

    #[test]
    fn bad_windows_are_refused_with_the_setting_named() {
        assert_eq!(
            retention(seconds(0), seconds(3600)),
            Err("--aggregation-window (AGGREGATION_WINDOW) must be from 1s to 1h, not 0s".into())
        );
        assert_eq!(
            retention(seconds(7200), seconds(86_400)),
            Err(
                "--aggregation-window (AGGREGATION_WINDOW) must be from 1s to 1h, not 7200s".into()
            )
        );
        assert_eq!(
            retention(Duration::from_millis(1500), seconds(3600)),
            Err("--aggregation-window (AGGREGATION_WINDOW) must be whole seconds, not 1.5s".into())
        );
        assert_eq!(
            retention(seconds(15), seconds(10)),
            Err("--retention (EDDY_RETENTION) (10s) must be at least one \
                 --aggregation-window (AGGREGATION_WINDOW) (15s)"
                .into())
        );
    }

    #[test]
    fn retention_keeps_at_most_the_bucket_limit_even_for_huge_values() {
        assert_eq!(
            retention(seconds(1), seconds(100_001)),
            Err(
                "--retention (EDDY_RETENTION) (100001s) keeps 100001 buckets of 1s; \
                 at most 100000 are allowed: shorten it or widen \
                 --aggregation-window (AGGREGATION_WINDOW)"
                    .into()
            )
        );
        let huge = retention(seconds(15), seconds(i64::MAX.unsigned_abs()));
        assert!(
            huge.as_ref()
                .is_err_and(|error| error.contains("keeps 614891469123651720 buckets")),
            "{huge:?}"
        );
        assert!(retention(seconds(15), seconds(u64::MAX))
            .is_err_and(|error| error.starts_with("--retention (EDDY_RETENTION) is too long")));
    }

    #[test]
    fn the_emitter_window_is_a_multiple_that_ends_inside_retention() {
        let hour = Retention {
            window: 15,
            closed_buckets: 240,
        };
        assert_eq!(emitter_width(&hour, seconds(300), 30), Ok(300));
        assert_eq!(emitter_width(&hour, seconds(3570), 29), Ok(3570));
        assert_eq!(
            emitter_width(&hour, seconds(3570), 30),
            Err("--emit-after-seconds (EMIT_AFTER_SECONDS) (30s) plus \
                 --emitter-aggregation-window (EMITTER_AGGREGATION_WINDOW) (3570s) must be \
                 shorter than --retention (EDDY_RETENTION) (3600s), or windows leave retention \
                 before they are sent"
                .into())
        );
        assert_eq!(
            emitter_width(&hour, seconds(100), 30),
            Err(
                "--emitter-aggregation-window (EMITTER_AGGREGATION_WINDOW) (100s) must be \
                 a positive multiple of --aggregation-window (AGGREGATION_WINDOW) (15s)"
                    .into()
            )
        );
        assert!(emitter_width(&hour, seconds(0), 30).is_err());
        let huge = seconds((i64::MAX - i64::MAX % 15).unsigned_abs());
        assert!(emitter_width(&hour, huge, u32::MAX)
            .is_err_and(|error| error.contains("must be shorter than")));
    }
}
