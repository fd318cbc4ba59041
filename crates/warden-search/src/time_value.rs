//! Time values in queries: what an analyst types, read as a span
//! `[from, to)` in milliseconds so that a day or a minute used as a bound
//! covers all of itself.

use chrono::{NaiveDate, NaiveDateTime};
use warden_core::time::{epoch_integer_to_millis, epoch_number_to_millis, parse_rfc3339, Millis};

/// RFC 3339 (to the millisecond), a date (`2026-11-24`, a whole UTC day),
/// a minute without zone (`2026-11-24T10:00`, UTC), a number since 1970
/// (seconds, milliseconds, microseconds or nanoseconds, by magnitude),
/// `now`, or `now-15m` / `now+1h` with units s, m, h, d, w.
pub fn parse_time_value(text: &str, now: Millis) -> Option<(Millis, Millis)> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("now") {
        if rest.is_empty() {
            return Some((now, now + 1));
        }
        let (sign, amount) = match rest.as_bytes()[0] {
            b'-' => (-1, &rest[1..]),
            b'+' => (1, &rest[1..]),
            _ => return None,
        };
        // A span too long to count in milliseconds reaches past either
        // end of time, where the caller clamps it.
        let too_long = || {
            let unit = amount.chars().last()?;
            let digits = &amount[..amount.len() - unit.len_utf8()];
            let whole = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            (whole && "smhdw".contains(unit)).then_some(i64::MAX)
        };
        let span = parse_span(amount).or_else(too_long)?;
        let at = now.saturating_add(sign * span);
        return Some((at, at.saturating_add(1)));
    }
    if let Some(ms) = parse_rfc3339(text) {
        return Some((ms, ms + 1));
    }
    // An offset without its colon (`+0200`), as ingest reads it.
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(text, format) {
            let ms = t.timestamp_millis();
            return Some((ms, ms + 1));
        }
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
        return Some((start, start + 86_400_000));
    }
    // A space for the `T` too, as RFC 3339 allows and databases write.
    for (format, span) in [
        ("%Y-%m-%dT%H:%M:%S", 1_000),
        ("%Y-%m-%dT%H:%M", 60_000),
        // With a fraction, as without: UTC, to the millisecond.
        ("%Y-%m-%dT%H:%M:%S%.f", 1),
        ("%Y-%m-%d %H:%M:%S", 1_000),
        ("%Y-%m-%d %H:%M", 60_000),
        ("%Y-%m-%d %H:%M:%S%.f", 1),
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            let start = t.and_utc().timestamp_millis();
            return Some((start, start + span));
        }
    }
    if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
        // By magnitude, as ingest reads a number: seconds (a whole second
        // as a bound), milliseconds, microseconds or nanoseconds.
        let (ms, span) = match text.parse::<u64>() {
            Ok(whole) => epoch_integer_to_millis(whole),
            Err(_) => epoch_number_to_millis(text.parse().ok()?)?,
        };
        return Some((ms, ms + span));
    }
    // With a fraction (`time.time()` in Python): by magnitude too, to the
    // millisecond.
    if let Some((whole, fraction)) = text.split_once('.') {
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if digits(whole) && digits(fraction) {
            let (ms, _) = epoch_number_to_millis(text.parse().ok()?)?;
            return Some((ms, ms + 1));
        }
    }
    None
}

/// `15m`, `2h`, `1d`: a count and a unit (s, m, h, d, w), in milliseconds.
pub fn parse_span(text: &str) -> Option<i64> {
    let unit = text.chars().last()?;
    let n: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let ms = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 604_800_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_analysts_type() {
        let now = parse_rfc3339("2026-11-24T12:00:00Z").unwrap();
        assert_eq!(
            parse_time_value("now-1h", now),
            Some((now - 3_600_000, now - 3_599_999))
        );
        let (from, to) = parse_time_value("2026-11-24", now).unwrap();
        assert_eq!(
            (from, to - from),
            (parse_rfc3339("2026-11-24T00:00:00Z").unwrap(), 86_400_000)
        );
        assert_eq!(
            parse_time_value("2026-11-24T10:00:00.5Z", now).map(|s| s.0),
            parse_rfc3339("2026-11-24T10:00:00.500Z")
        );
        // Without a zone, read as UTC, with a fraction too.
        assert_eq!(
            parse_time_value("2026-11-24T10:00:00.350", now),
            Some((now - 7_199_650, now - 7_199_649))
        );
        assert_eq!(
            parse_time_value("2026-11-24T10:00:00", now),
            Some((now - 7_200_000, now - 7_199_000))
        );
        // A space for the `T`, and an offset without its colon.
        assert_eq!(
            parse_time_value("2026-11-24 10:00:00", now),
            Some((now - 7_200_000, now - 7_199_000))
        );
        assert_eq!(
            parse_time_value("2026-11-24 10:00", now),
            Some((now - 7_200_000, now - 7_140_000))
        );
        assert_eq!(
            parse_time_value("2026-11-24T12:00:00+0200", now),
            Some((now - 7_200_000, now - 7_199_999))
        );
        assert_eq!(
            parse_time_value("2026-11-24 12:00:00.250-0100", now),
            Some((now + 3_600_250, now + 3_600_251))
        );
        assert_eq!(parse_time_value("yesterday", now), None);
        assert_eq!(parse_time_value("now-5y", now), None);
        assert_eq!(
            parse_time_value("1796403600.5", now),
            Some((1_796_403_600_500, 1_796_403_600_501))
        );
        assert_eq!(
            parse_time_value("1796256001002000000", now),
            Some((1_796_256_001_002, 1_796_256_001_003))
        );
        // Past either end of what a millisecond count holds: that end.
        assert_eq!(
            parse_time_value("now-1000000000000000000d", now).map(|s| s.0),
            Some(now - i64::MAX)
        );
        assert_eq!(
            parse_time_value("now+99999999999999999999999w", now).map(|s| s.0),
            Some(i64::MAX)
        );
    }
}
