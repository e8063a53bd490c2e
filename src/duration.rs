//! The one duration parser of every flag and environment variable, server and CLI alike.
//!
//! It reads Go's `time.ParseDuration` forms, so Goldmane's settings carry over unchanged
//! (`1m30s`, `1m0s`, `1h0m0s`, `1.5h`, `500ms`), humantime's (`15s`, `2d`, `1h 30m`), and a
//! bare number as seconds (`90`). Parsing is humantime's; this wrapper adds the bare number,
//! Go's optional leading `+`, and a clear refusal of negative values. Overflow is an error,
//! never a wrapped value.

use std::time::Duration;

/// Parses a duration; zero is allowed (callers that need a positive value check it).
///
/// ```
/// use std::time::Duration;
/// use eddy::duration::parse;
/// assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
/// assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let bad = |why: &str| format!("`{text}` is not a duration like 15s, 1m30s or 500ms: {why}");
    if trimmed.starts_with('-') {
        return Err(format!(
            "`{text}` is negative: a duration here is 0 or more"
        ));
    }
    let unsigned = trimmed.strip_prefix('+').unwrap_or(trimmed);
    if unsigned.is_empty() {
        return Err(bad("it is empty"));
    }
    if unsigned.bytes().all(|byte| byte.is_ascii_digit()) {
        return unsigned
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| bad("the number is too large"));
    }
    humantime::parse_duration(unsigned).map_err(|error| bad(&error.to_string()))
}

/// A duration in whole seconds as an `i64`, for the server's windows; `setting` names the
/// flag and variable in the message (e.g. `--aggregation-window (AGGREGATION_WINDOW)`).
pub fn whole_seconds(duration: Duration, setting: &str) -> Result<i64, String> {
    if duration.subsec_nanos() != 0 {
        return Err(format!("{setting} must be whole seconds, not {duration:?}"));
    }
    i64::try_from(duration.as_secs())
        .map_err(|_| format!("{setting} is too long: {}s", duration.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(text: &str) -> Result<u64, String> {
        parse(text).map(|duration| duration.as_secs())
    }

    #[test]
    fn go_forms_parse_as_go_reads_them() {
        assert_eq!(seconds("1m30s"), Ok(90));
        assert_eq!(seconds("1m0s"), Ok(60));
        assert_eq!(seconds("1h0m0s"), Ok(3600));
        assert_eq!(seconds("1.5h"), Ok(5400));
        assert_eq!(seconds("+15s"), Ok(15));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2us"), Ok(Duration::from_micros(2)));
    }

    #[test]
    fn eddy_forms_keep_their_meaning() {
        assert_eq!(seconds("15s"), Ok(15));
        assert_eq!(seconds("90"), Ok(90));
        assert_eq!(seconds(" 5m "), Ok(300));
        assert_eq!(seconds("2d"), Ok(172_800));
        assert_eq!(seconds("1h30m"), Ok(5400));
        assert_eq!(seconds("1h 30m"), Ok(5400));
        assert_eq!(seconds("0s"), Ok(0));
        assert_eq!(seconds("0"), Ok(0));
    }

    #[test]
    fn junk_negative_and_overflowing_values_are_refused() {
        for junk in [
            "", "  ", "+", "m", "15x", "1e3s", "fifteen", "1.5", "-5s", "-1m30s",
        ] {
            assert!(parse(junk).is_err(), "`{junk}` must be refused");
        }
        assert_eq!(
            parse("-5s"),
            Err("`-5s` is negative: a duration here is 0 or more".to_string())
        );
        assert!(parse("99999999999999999999").is_err());
        assert!(parse("99999999999999999999d").is_err());
        assert!(parse("18446744073709551615d").is_err());
    }

    #[test]
    fn whole_seconds_refuse_fractions_and_name_the_setting() {
        let setting = "--aggregation-window (AGGREGATION_WINDOW)";
        assert_eq!(whole_seconds(Duration::from_secs(90), setting), Ok(90));
        assert_eq!(
            whole_seconds(Duration::from_millis(1500), setting),
            Err(
                "--aggregation-window (AGGREGATION_WINDOW) must be whole seconds, not 1.5s"
                    .to_string()
            )
        );
        assert_eq!(
            whole_seconds(Duration::from_secs(u64::MAX), setting),
            Err(format!(
                "--aggregation-window (AGGREGATION_WINDOW) is too long: {}s",
                u64::MAX
            ))
        );
    }
}
