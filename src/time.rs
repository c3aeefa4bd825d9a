//! Time in the pipeline, defined once: every instant is an `i64` count of microseconds since
//! the Unix epoch, UTC (what the reader converts every timestamp unit to), and a date stands
//! for its midnight UTC. This module owns the units, the range of event times accepted, the
//! conversions between dates, days and microseconds, and the grammar of dates and spans as
//! written in flags and config (`2025-12-31`, `90d`, `13w`, `12h`). What a bad value means is
//! the caller's to say (config keys and flags name themselves: `config::ConfigError`).

use chrono::{Duration, NaiveDate};

/// Microseconds per second.
pub const SECOND_US: i64 = 1_000_000;
/// Microseconds per hour.
pub const HOUR_US: i64 = 3_600 * SECOND_US;
/// Microseconds per day (UTC days: no leap seconds, as in Arrow and Parquet).
pub const DAY_US: i64 = 24 * HOUR_US;
/// Days per week.
pub const WEEK_DAYS: i64 = 7;
/// Minutes per day.
pub const MINUTES_PER_DAY: f64 = 1_440.0;
/// 365.25 / 12: days per month of the CLV discounting (config `btyd.days_per_month`).
pub const DAYS_PER_MONTH: f64 = 30.4375;

/// Earliest accepted event time: 1900-01-01T00:00:00Z.
pub const MIN_TIME_US: i64 = -25_567 * DAY_US;
/// First rejected event time: 2200-01-01T00:00:00Z.
pub const MAX_TIME_US: i64 = 84_006 * DAY_US;

/// The Unix epoch as a date.
const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    // Evaluated at compile time: an invalid constant date fails the build.
    None => panic!("invalid epoch"),
};

/// µs since the epoch of a date's midnight UTC.
pub fn date_us(d: NaiveDate) -> i64 {
    i64::from(days_since_epoch(d)) * DAY_US
}

/// Days since 1970-01-01 (Arrow's `Date32`).
pub fn days_since_epoch(d: NaiveDate) -> i32 {
    (d - EPOCH).num_days() as i32
}

/// The date of a µs timestamp (UTC).
pub fn date_of_us(us: i64) -> NaiveDate {
    EPOCH + Duration::days(us.div_euclid(DAY_US))
}

/// A date written `YYYY-MM-DD` (surrounding spaces ignored).
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

/// A span written as a whole number with an optional one-letter unit (`90d`, `13w`, `12h`;
/// case and spaces ignored), in the units of `units` (`(suffix, size)` pairs); a bare number
/// is in units of size `bare`. `None` when the text is not such a number or the product
/// overflows; the range is the caller's to check.
pub fn parse_span(text: &str, units: &[(char, i64)], bare: i64) -> Option<i64> {
    let t = text.trim().to_ascii_lowercase();
    let (num, size) = units
        .iter()
        .find_map(|&(suffix, size)| t.strip_suffix(suffix).map(|n| (n, size)))
        .unwrap_or((t.as_str(), bare));
    num.trim().parse::<i64>().ok()?.checked_mul(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_microseconds() {
        let d = NaiveDate::from_ymd_opt(1998, 7, 1).unwrap_or_default();
        assert_eq!(date_of_us(date_us(d)), d);
        assert_eq!(
            days_since_epoch(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap_or_default()),
            1
        );
        // Before the epoch a time belongs to the day it falls in, not the next one.
        assert_eq!(
            date_of_us(-1),
            NaiveDate::from_ymd_opt(1969, 12, 31).unwrap_or_default()
        );
        assert_eq!(
            date_us(NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or_default()),
            MIN_TIME_US
        );
        assert_eq!(
            date_us(NaiveDate::from_ymd_opt(2200, 1, 1).unwrap_or_default()),
            MAX_TIME_US
        );
        assert_eq!(
            parse_date(" 2025-12-31 "),
            NaiveDate::from_ymd_opt(2025, 12, 31)
        );
        assert_eq!(parse_date("2025-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn spans() {
        let days = [('d', 1), ('w', WEEK_DAYS)];
        assert_eq!(parse_span("90d", &days, 1), Some(90));
        assert_eq!(parse_span(" 13W ", &days, 1), Some(91));
        assert_eq!(parse_span("273", &days, 1), Some(273));
        assert_eq!(parse_span("-2d", &days, 1), Some(-2));
        assert_eq!(parse_span("3m", &days, 1), None);
        assert_eq!(parse_span("1 day", &days, 1), None);
        assert_eq!(parse_span("d", &days, 1), None);
        let us = [('h', HOUR_US), ('d', DAY_US)];
        assert_eq!(parse_span("12h", &us, DAY_US), Some(12 * HOUR_US));
        assert_eq!(parse_span("2", &us, DAY_US), Some(2 * DAY_US));
        assert_eq!(parse_span("9223372036854775807d", &us, DAY_US), None);
    }
}
