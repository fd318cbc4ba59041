//! Times are kept as milliseconds since the Unix epoch and shown as RFC 3339
//! in UTC with milliseconds, as the API conventions require.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub fn now_ms() -> Millis {
    Utc::now().timestamp_millis()
}

/// `2026-03-01T12:00:00.000Z`.
pub fn to_rfc3339(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time with any offset; `None` when it is not one.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| millis_of(&t))
}

/// A time in milliseconds since 1970; a leap second (`23:59:60`) is the
/// last millisecond of the second before it, as Java's `Instant` reads
/// it, so that it stays in its own day instead of chrono's next second.
pub fn millis_of<Tz: chrono::TimeZone>(t: &DateTime<Tz>) -> Millis {
    use chrono::Timelike;
    if t.nanosecond() >= 1_000_000_000 {
        t.timestamp() * 1_000 + 999
    } else {
        t.timestamp_millis()
    }
}

/// A number of seconds, milliseconds, microseconds or nanoseconds since
/// 1970, told apart by magnitude (seconds below 10^11, that is until the
/// year 5138; milliseconds below 10^14; and so on), in milliseconds with
/// how many milliseconds the number's unit spans (1,000 for seconds, else
/// 1). `None` for a negative or non-finite number.
pub fn epoch_number_to_millis(x: f64) -> Option<(Millis, Millis)> {
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    Some(if x < 1e11 {
        ((x * 1e3) as i64, 1_000)
    } else if x < 1e14 {
        (x as i64, 1)
    } else if x < 1e17 {
        ((x / 1e3) as i64, 1)
    } else {
        ((x / 1e6) as i64, 1)
    })
}

/// [`epoch_number_to_millis`] for a whole number, exactly: a nanosecond
/// count past 2^53 would not survive a double (1796256001002000000 ns
/// would read as …001 ms).
pub fn epoch_integer_to_millis(x: u64) -> (Millis, Millis) {
    let x = x as i128;
    let (ms, span) = if x < 100_000_000_000 {
        (x * 1_000, 1_000)
    } else if x < 100_000_000_000_000 {
        (x, 1)
    } else if x < 100_000_000_000_000_000 {
        (x / 1_000, 1)
    } else {
        (x / 1_000_000, 1)
    };
    (ms as Millis, span)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_leap_second_stays_in_its_day() {
        let leap = super::parse_rfc3339("2016-12-31T23:59:60Z").unwrap();
        assert_eq!(super::to_rfc3339(leap), "2016-12-31T23:59:59.999Z");
        let leap = super::parse_rfc3339("2016-12-31T23:59:60.5+00:00").unwrap();
        assert_eq!(super::to_rfc3339(leap), "2016-12-31T23:59:59.999Z");
    }
    use super::*;

    #[test]
    fn round_trips_with_milliseconds() {
        let ms = parse_rfc3339("2026-03-01T12:00:00.123+01:00").unwrap();
        assert_eq!(to_rfc3339(ms), "2026-03-01T11:00:00.123Z");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn whole_epoch_numbers_are_exact_at_every_magnitude() {
        let ms = 1_796_256_001_002;
        for (x, span) in [
            (1_796_256_001, 1_000),
            (1_796_256_001_002, 1),
            (1_796_256_001_002_999, 1),
            (1_796_256_001_002_000_000, 1),
            (1_796_256_001_002_999_999, 1),
        ] {
            let expected = if span == 1_000 { 1_796_256_001_000 } else { ms };
            assert_eq!(epoch_integer_to_millis(x), (expected, span), "{x}");
        }
    }
}
