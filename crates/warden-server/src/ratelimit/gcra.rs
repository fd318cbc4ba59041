//! The generic cell rate algorithm: one timestamp per bucket (the
//! theoretical arrival time), exact, and cheap to run atomically in Redis.

use warden_core::org::RateLimit;

/// The outcome of taking one request, with what the headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Requests per minute of the plan.
    pub limit: u32,
    /// Requests that could be made right now.
    pub remaining: u32,
    /// Unix seconds at which the bucket is full again.
    pub reset_at: u64,
    /// Seconds to wait before retrying (0 when allowed).
    pub retry_after: u64,
    /// The same wait in milliseconds (0 when allowed): at 100 requests a
    /// second, a whole second is a hundred times longer than needed.
    pub retry_after_ms: u64,
}

/// A refusal's wait, given in microseconds, in whole seconds and in
/// milliseconds, each rounded up and at least one.
pub fn waits(wait_micros: u64) -> (u64, u64) {
    (
        wait_micros.div_ceil(1_000_000).max(1),
        wait_micros.div_ceil(1_000).max(1),
    )
}

pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Microseconds between two requests at the sustained rate.
pub fn interval_micros(limit: RateLimit) -> u64 {
    (60_000_000 / u64::from(limit.per_minute.max(1))).max(1)
}

/// A bucket as kept: its theoretical arrival time, and the interval of the
/// limit it was written under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub tat: u64,
    pub interval: u64,
}

/// The bucket's arrival time in this limit's terms. Written under another
/// limit (a plan changed, or another replica that has not seen the change
/// yet), what it owes counts in requests, as many as it owed there, and at
/// most this limit's capacity: a plan raised for a throttled organization
/// serves it at once, a lowered one refuses until the requests fit, and
/// replicas holding the two limits for a moment share one count of
/// requests rather than each other's time.
fn carried(bucket: Bucket, now: u64, interval: u64, capacity: u64) -> u64 {
    if bucket.interval == interval || bucket.tat <= now {
        return bucket.tat;
    }
    let owed =
        u128::from(bucket.tat - now) * u128::from(interval) / u128::from(bucket.interval.max(1));
    now + u64::try_from(owed.min(u128::from(capacity))).unwrap_or(capacity)
}

/// One GCRA step: given the stored bucket, returns the new one (when the
/// request is allowed) and the verdict.
pub fn step(stored: Option<Bucket>, now: u64, limit: RateLimit) -> (Option<Bucket>, Verdict) {
    let interval = interval_micros(limit);
    let capacity = interval * u64::from(limit.burst.max(1));
    let tat = stored
        .map_or(now, |b| carried(b, now, interval, capacity))
        .max(now);
    let new_tat = tat + interval;
    let used = new_tat - now;
    if used > capacity {
        let (retry_after, retry_after_ms) = waits(used - capacity);
        let verdict = Verdict {
            allowed: false,
            limit: limit.per_minute,
            remaining: 0,
            reset_at: tat.div_ceil(1_000_000),
            retry_after,
            retry_after_ms,
        };
        return (None, verdict);
    }
    let verdict = Verdict {
        allowed: true,
        limit: limit.per_minute,
        remaining: ((capacity - used) / interval) as u32,
        reset_at: new_tat.div_ceil(1_000_000),
        retry_after: 0,
        retry_after_ms: 0,
    };
    (
        Some(Bucket {
            tat: new_tat,
            interval,
        }),
        verdict,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_the_rate() {
        let limit = RateLimit {
            per_minute: 60,
            burst: 10,
        };
        let now = 1_000_000_000;
        let mut tat = None;
        for i in 0..10 {
            let (next, v) = step(tat, now, limit);
            assert!(v.allowed, "request {i}");
            assert_eq!(v.remaining, 9 - i);
            tat = next;
        }
        let (_, v) = step(tat, now, limit);
        assert!(!v.allowed);
        assert_eq!(v.retry_after, 1);
        assert_eq!(v.retry_after_ms, 1_000);
        // At 100 a second, the wait is 10 ms (said as a whole second too).
        let fast = RateLimit {
            per_minute: 6_000,
            burst: 1,
        };
        let (taken, _) = step(None, now, fast);
        let (_, v) = step(taken, now + 1, fast);
        assert_eq!((v.allowed, v.retry_after, v.retry_after_ms), (false, 1, 10));
        // One interval later exactly one more request fits.
        let later = now + interval_micros(limit);
        let (next, v) = step(tat, later, limit);
        assert!(v.allowed);
        assert!(!step(next, later, limit).1.allowed);
    }

    const STARTER: RateLimit = RateLimit {
        per_minute: 60,
        burst: 10,
    };
    const ENTERPRISE: RateLimit = RateLimit {
        per_minute: 6_000,
        burst: 200,
    };

    /// Requests allowed from `bucket` at `now` under `limit` until one is refused.
    fn take_all(bucket: &mut Option<Bucket>, now: u64, limit: RateLimit) -> u32 {
        let mut taken = 0;
        loop {
            match step(*bucket, now, limit) {
                (Some(next), v) if v.allowed => {
                    *bucket = Some(next);
                    taken += 1;
                }
                _ => return taken,
            }
        }
    }

    #[test]
    fn a_changed_limit_carries_what_the_bucket_owes_in_requests() {
        let now = 1_000_000_000;
        let mut bucket = None;
        assert_eq!(take_all(&mut bucket, now, STARTER), 10);
        // Raised: the ten requests owed count as ten of the new burst.
        assert_eq!(take_all(&mut bucket.clone(), now, ENTERPRISE), 190);
        // Lowered: two hundred owed do not fit in ten; refused until the
        // old debt in the new terms is under the capacity.
        let mut bucket = None;
        assert_eq!(take_all(&mut bucket, now, ENTERPRISE), 200);
        assert_eq!(take_all(&mut bucket.clone(), now, STARTER), 0);
        let later = now + 2_000_000;
        assert_eq!(take_all(&mut bucket, later, STARTER), 10);
    }

    #[test]
    fn replicas_holding_two_limits_share_one_count() {
        // For the second a change takes to reach every replica, requests
        // alternate between one holding the old limit and one the new:
        // together they get no more than the more generous limit gives.
        let now = 1_000_000_000;
        for (old, new) in [(STARTER, ENTERPRISE), (ENTERPRISE, STARTER)] {
            let mut bucket = None;
            let mut allowed = 0;
            for i in 0..2_000u64 {
                let limit = if i % 2 == 0 { old } else { new };
                let (next, v) = step(bucket, now + i * 450, limit);
                if v.allowed {
                    bucket = next;
                    allowed += 1;
                }
            }
            // 0.9 s: the burst of 200 and 90 more at 100 a second.
            assert!(allowed <= 200 + 91, "{allowed}");
        }
    }

    #[test]
    fn the_highest_rate_still_has_an_interval() {
        let limit = RateLimit {
            per_minute: warden_core::org::MAX_PER_MINUTE,
            burst: 1,
        };
        assert_eq!(interval_micros(limit), 1);
        assert!(step(None, 5, limit).1.allowed);
    }
}
