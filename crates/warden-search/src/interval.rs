//! Histogram intervals: chosen from the range so that a chart has enough
//! bars to show a shape and few enough to read.

/// Widths an analyst recognises, in milliseconds.
const NICE: &[i64] = &[
    1_000,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    600_000,
    1_800_000,
    3_600_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    604_800_000,
    2_592_000_000,
];

/// Most bars a chosen interval gives.
pub const TARGET_BUCKETS: i64 = 100;
/// Most bars a caller's own interval may give.
pub const MAX_BUCKETS: i64 = 10_000;

/// The smallest nice width that cuts `[from, to)` into at most
/// [`TARGET_BUCKETS`] bars; past the widest, a whole number of the widest
/// (30 days), so that no range, however long, gives more bars.
pub fn choose(from: i64, to: i64) -> i64 {
    let span = to.saturating_sub(from).max(1);
    let widest = *NICE.last().expect("nice widths");
    let fits = |w: i64| bars(from, to, w) <= TARGET_BUCKETS;
    NICE.iter().copied().find(|w| fits(*w)).unwrap_or_else(|| {
        let mut w = ceil_div(ceil_div(span, TARGET_BUCKETS), widest) * widest;
        // Off the edges by one bar: a wider multiple takes it back
        // (bars shrink as the width grows, so this ends within a few).
        while !fits(w) {
            w += widest;
        }
        w
    })
}

/// Bars of width `w` that `[from, to)` touches: bars start at whole
/// multiples of `w`, so a range that does not start on one touches one
/// more than its length alone needs.
pub fn bars(from: i64, to: i64, w: i64) -> i64 {
    let last = to.saturating_sub(1).max(from);
    last.div_euclid(w) - from.div_euclid(w) + 1
}

/// `a / b` rounded up, for positive `a` and `b`.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// `30s`, `5m`, `1h`, `1d`, `1w` or plain milliseconds.
pub fn parse(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return (ms > 0).then_some(ms);
    }
    crate::time_value::parse_span(text).filter(|ms| *ms > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_gets_half_hours_and_an_hour_gets_minutes() {
        assert_eq!(choose(0, 86_400_000), 1_800_000);
        assert_eq!(choose(0, 3_600_000), 60_000);
        // A year gets weeks, ten years 60 days; ten thousand years still
        // about 100 bars.
        assert_eq!(choose(0, 365 * 86_400_000), 604_800_000);
        assert_eq!(choose(0, 3650 * 86_400_000), 2 * 2_592_000_000);
        let (from, to) = (-62_135_596_800_000, 253_402_300_799_999);
        let w = choose(from, to);
        assert_eq!(w % 2_592_000_000, 0);
        let touched = bars(from, to, w);
        assert!((90..=TARGET_BUCKETS).contains(&touched), "{touched}");
        // A range off the bars' edges touches one more bar: 100 s from
        // half a second gets 5 s bars, not 101 bars of one.
        assert_eq!(choose(500, 100_500), 5_000);
        assert_eq!(choose(0, 100_000), 1_000);
        for (from, to) in [(500, 3_000_500), (1_234_567, 86_400_000 * 3 + 17)] {
            assert!(bars(from, to, choose(from, to)) <= TARGET_BUCKETS);
        }
        assert_eq!(parse("5m"), Some(300_000));
        assert_eq!(parse("0s"), None);
        assert_eq!(parse("fast"), None);
    }
}
