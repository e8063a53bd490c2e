//! Human time for the command line: durations (`15s`, `10m`, `1m30s`), `--since`/`--until`
//! values (a duration ago or an RFC 3339 timestamp), and timestamps shown back to a person
//! (`2023-11-14T22:15:00Z`, `3m ago`), and the `--since`/`--until` flags. No clock is read here.

/// The command line's durations are the server's: one parser for every flag (see
/// [`crate::duration`]).
pub use crate::duration::parse as parse_duration;

/// A point in time given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeArg {
    /// So many whole seconds before the server's "now".
    Ago(i64),
    /// An absolute Unix time in seconds.
    At(i64),
}

impl TimeArg {
    /// The request encoding (SPEC §2.5): negative is relative to the server's now.
    pub fn to_request(self) -> i64 {
        match self {
            TimeArg::Ago(seconds) => -seconds,
            TimeArg::At(unix) => unix,
        }
    }
}

/// Parses `--since`/`--until`: a positive duration ago (`10m`) or an RFC 3339 timestamp.
pub fn parse_time_arg(text: &str) -> Result<TimeArg, String> {
    let text = text.trim();
    if text.contains('T') || text.contains('t') || text.matches('-').count() >= 2 {
        let unix = parse_rfc3339(text)?;
        if unix <= 0 {
            return Err(format!("`{text}` is not after 1970-01-01T00:00:00Z"));
        }
        return Ok(TimeArg::At(unix));
    }
    let ago = parse_duration(text).map_err(|_| {
        format!("`{text}` is neither a duration like 10m nor an RFC 3339 time like 2024-05-01T12:00:00Z")
    })?;
    let seconds = i64::try_from(ago.as_secs()).map_err(|_| format!("`{text}` is too long ago"))?;
    if seconds == 0 {
        return Err(format!("`{text}` must be at least one second ago"));
    }
    Ok(TimeArg::Ago(seconds))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01: the inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn number(text: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|value| range.contains(value))
}

/// Parses `2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.5+02:00` or `2024-05-01 12:00:00z`
/// into whole Unix seconds (fractions are dropped).
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not an RFC 3339 time like 2024-05-01T12:00:00Z");
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let (date, rest) = text.split_at(10);
    let rest = &rest[1..];
    let mut date_parts = date.split('-');
    let year = date_parts.next().and_then(|p| number(p, 0..=9999));
    let month = date_parts.next().and_then(|p| number(p, 1..=12));
    let day = date_parts.next().and_then(|p| number(p, 1..=31));
    let (Some(year), Some(month), Some(day), None) = (year, month, day, date_parts.next()) else {
        return Err(bad());
    };
    let hour = number(rest.get(0..2).unwrap_or(""), 0..=23);
    let minute = number(rest.get(3..5).unwrap_or(""), 0..=59);
    let second = number(rest.get(6..8).unwrap_or(""), 0..=60);
    let (Some(hour), Some(minute), Some(second)) = (hour, minute, second) else {
        return Err(bad());
    };
    if rest.get(2..3) != Some(":") || rest.get(5..6) != Some(":") {
        return Err(bad());
    }
    let mut zone = &rest[8..];
    if let Some(fraction) = zone.strip_prefix('.') {
        let digits = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if digits == 0 {
            return Err(bad());
        }
        zone = &fraction[digits..];
    }
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = match zone.get(0..1) {
                Some("+") => 1,
                Some("-") => -1,
                _ => return Err(bad()),
            };
            let hours = number(zone.get(1..3).unwrap_or(""), 0..=23);
            let minutes = number(zone.get(4..6).unwrap_or(""), 0..=59);
            match (hours, minutes, zone.get(3..4), zone.len()) {
                (Some(h), Some(m), Some(":"), 6) => sign * (h * 3600 + m * 60),
                _ => return Err(bad()),
            }
        }
    };
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Formats Unix seconds as RFC 3339 in UTC, e.g. `2023-11-14T22:15:00Z`.
pub fn format_rfc3339(unix: i64) -> String {
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    let seconds = unix.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

/// A short span such as `45s`, `12m`, `3h5m` or `2d`.
pub fn format_span(seconds: i64) -> String {
    let seconds = seconds.abs();
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m", seconds / 60),
        3600..=86_399 if seconds % 3600 >= 60 => {
            format!("{}h{}m", seconds / 3600, seconds % 3600 / 60)
        }
        3600..=86_399 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// `when` relative to `now`: `12s ago`, `3m ago`, `in 10s`, or `now`.
pub fn format_ago(when: i64, now: i64) -> String {
    let delta = now - when;
    match delta {
        0 => "now".into(),
        d if d > 0 => format!("{} ago", format_span(d)),
        d => format!("in {}", format_span(d)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn durations_are_the_shared_parser_with_go_forms() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn time_args_are_relative_or_absolute() {
        assert_eq!(parse_time_arg("10m"), Ok(TimeArg::Ago(600)));
        assert_eq!(TimeArg::Ago(600).to_request(), -600);
        assert_eq!(
            parse_time_arg("2023-11-14T22:13:20Z"),
            Ok(TimeArg::At(1_700_000_000))
        );
        assert!(parse_time_arg("0s").is_err());
        assert!(parse_time_arg("yesterday").is_err());
        assert!(parse_time_arg("1960-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn rfc3339_handles_offsets_fractions_and_rejects_junk() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.75Z"), Ok(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-15T00:13:20+02:00"),
            Ok(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14 21:13:20-01:00"),
            Ok(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00z"), Ok(1_709_164_800));
        for junk in [
            "2023-11-14",
            "2023-13-14T00:00:00Z",
            "2023-11-14T25:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20+0200",
            "2023-11-14T22:13:20.Z",
            "2023-1x-14T22:13:20Z",
        ] {
            assert!(parse_rfc3339(junk).is_err(), "{junk} must be rejected");
        }
    }

    #[test]
    fn formatting_round_trips_and_reads_naturally() {
        for unix in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&format_rfc3339(unix)), Ok(unix));
        }
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_ago(100, 112), "12s ago");
        assert_eq!(format_ago(0, 180), "3m ago");
        assert_eq!(format_ago(0, 3600 + 300), "1h5m ago");
        assert_eq!(format_ago(0, 7200), "2h ago");
        assert_eq!(format_ago(0, 3 * 86_400), "3d ago");
        assert_eq!(format_ago(110, 100), "in 10s");
        assert_eq!(format_ago(5, 5), "now");
    }
}

/// `--since` and `--until` for calls that take a time range (SPEC §2.5).
#[derive(Clone, Copy, Debug, Default, clap::Args)]
#[command(next_help_heading = "Time range")]
pub struct RangeArgs {
    /// Start of the range: a duration ago (`10m`) or an RFC 3339 time [default: the oldest data].
    #[arg(long, value_name = "WHEN", value_parser = parse_time_arg)]
    pub since: Option<TimeArg>,
    /// End of the range: a duration ago (`2m`) or an RFC 3339 time [default: now].
    #[arg(long, value_name = "WHEN", value_parser = parse_time_arg)]
    pub until: Option<TimeArg>,
}

impl RangeArgs {
    /// `start_time_gte`: 0 (the oldest retained data) when not given.
    pub fn gte(&self) -> i64 {
        self.since.map_or(0, TimeArg::to_request)
    }

    /// `start_time_lt`: 0 (the server's now) when not given.
    pub fn lt(&self) -> i64 {
        self.until.map_or(0, TimeArg::to_request)
    }
}
