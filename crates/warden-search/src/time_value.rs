//! Time values in queries: what an analyst types, read as a span
//! `[from, to)` in milliseconds so that a day or a minute used as a bound
//! covers all of itself. An instant written past the millisecond
//! (`…:00.0005Z`, `1796385618.0005`, a count of microseconds) is an empty
//! span at the next millisecond, however it is written: events carry whole
//! milliseconds, so those of its millisecond lie before it, whether it
//! opens a range or closes one.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike};
use warden_core::time::{epoch_integer_to_millis, millis_of, Millis};

/// An instant as a span: one millisecond, or empty at the next one when
/// written past the millisecond.
fn instant(ms: Millis, past_the_millisecond: bool) -> (Millis, Millis) {
    if past_the_millisecond {
        (ms + 1, ms + 1)
    } else {
        (ms, ms + 1)
    }
}

/// A parsed time's milliseconds, and whether it was written past them (a
/// leap second reads as the last millisecond of its minute, exactly).
fn of_datetime<Tz: chrono::TimeZone>(t: &DateTime<Tz>) -> (Millis, Millis) {
    let nanos = t.nanosecond();
    instant(
        millis_of(t),
        nanos < 1_000_000_000 && !nanos.is_multiple_of(1_000_000),
    )
}

/// A decimal number since 1970 (`1796385618.0005`), exactly: its unit told
/// by the magnitude of its whole part as ingest tells it (seconds below
/// 10^11, milliseconds below 10^14, microseconds below 10^17, else
/// nanoseconds), in milliseconds and whether anything is past them.
fn decimal_epoch(whole: &str, fraction: &str) -> Option<(Millis, bool)> {
    // Past what 128 bits count: past the end of time, where the caller
    // clamps it.
    let far = Some((Millis::MAX - 1, false));
    let Ok(w) = whole.parse::<u128>() else {
        return far;
    };
    // Nanoseconds in one unit.
    let unit: u128 = match w {
        w if w < 100_000_000_000 => 1_000_000_000,
        w if w < 100_000_000_000_000 => 1_000_000,
        w if w < 100_000_000_000_000_000 => 1_000,
        _ => 1,
    };
    let places = unit.ilog10() as usize;
    let kept = &fraction[..fraction.len().min(places)];
    let beyond = fraction[kept.len()..].bytes().any(|b| b != b'0');
    let part: u128 = if kept.is_empty() {
        0
    } else {
        kept.parse::<u128>().ok()? * 10u128.pow((places - kept.len()) as u32)
    };
    let Some(nanos) = w.checked_mul(unit).and_then(|n| n.checked_add(part)) else {
        return far;
    };
    match Millis::try_from(nanos / 1_000_000) {
        Ok(ms) if ms < Millis::MAX - 1 => Some((ms, beyond || !nanos.is_multiple_of(1_000_000))),
        _ => far,
    }
}

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
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(of_datetime(&t));
    }
    // An offset without its colon (`+0200`), as ingest reads it.
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(of_datetime(&t));
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
            let t = t.and_utc();
            if span == 1 {
                return Some(of_datetime(&t));
            }
            let start = t.timestamp_millis();
            return Some((start, start + span));
        }
    }
    if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
        // By magnitude, as ingest reads a number: seconds (a whole second
        // as a bound), milliseconds, microseconds or nanoseconds.
        return match text.parse::<u64>() {
            Ok(whole) if whole < 100_000_000_000_000 => {
                let (ms, span) = epoch_integer_to_millis(whole);
                Some((ms, ms + span))
            }
            _ => decimal_epoch(text, "").map(|(ms, past)| instant(ms, past)),
        };
    }
    // With a fraction (`time.time()` in Python): by magnitude too, exactly.
    if let Some((whole, fraction)) = text.split_once('.') {
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if digits(whole) && digits(fraction) {
            return decimal_epoch(whole, fraction).map(|(ms, past)| instant(ms, past));
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
    use warden_core::time::parse_rfc3339;

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
        // Past the millisecond, in any form: empty, at the next one, so
        // that `>=`, `>`, `<`, `<=` and ranges all count the events of its
        // own millisecond as before it.
        let ms = parse_rfc3339("2026-12-04T12:00:18.000Z").unwrap();
        for text in [
            "2026-12-04T12:00:18.0005Z",
            "2026-12-04T12:00:18.000000001+00:00",
            "2026-12-04 12:00:18.0005",
            "2026-12-04T12:00:18.0005+0000",
            "1796385618.0005",
            "1796385618000.5",
            "1796385618000500",
            "1796385618000000001",
        ] {
            assert_eq!(
                parse_time_value(text, now),
                Some((ms + 1, ms + 1)),
                "{text}"
            );
        }
        for text in [
            "1796385618.000",
            "1796385618000.000",
            "1796385618000000",
            "2026-12-04T12:00:18.000000Z",
        ] {
            assert_eq!(parse_time_value(text, now).map(|s| s.0), Some(ms), "{text}");
        }
        // A leap second is the last millisecond of its minute, exactly.
        assert_eq!(
            parse_time_value("2016-12-31T23:59:60.5Z", now),
            parse_time_value("2016-12-31T23:59:59.999Z", now)
        );
        assert_eq!(
            parse_time_value("9".repeat(60).as_str(), now).map(|s| s.0),
            Some(i64::MAX - 1)
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
