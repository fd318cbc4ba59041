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

/// One GCRA step: given the stored arrival time, returns the new one (when
/// the request is allowed) and the verdict. Under one limit the stored time
/// is never past `now + capacity`; one that is was set under a stricter
/// limit since raised (a plan changed): it counts as a bucket with one
/// request left under the new limit, not as the old limit's longer debt.
pub fn step(tat: Option<u64>, now: u64, limit: RateLimit) -> (Option<u64>, Verdict) {
    let interval = interval_micros(limit);
    let capacity = interval * u64::from(limit.burst.max(1));
    let mut tat = tat.unwrap_or(now).max(now);
    if tat > now + capacity {
        tat = now + capacity - interval;
    }
    let new_tat = tat + interval;
    let used = new_tat - now;
    if used > capacity {
        let wait = used - capacity;
        let verdict = Verdict {
            allowed: false,
            limit: limit.per_minute,
            remaining: 0,
            reset_at: tat.div_ceil(1_000_000),
            retry_after: wait.div_ceil(1_000_000).max(1),
        };
        return (None, verdict);
    }
    let verdict = Verdict {
        allowed: true,
        limit: limit.per_minute,
        remaining: ((capacity - used) / interval) as u32,
        reset_at: new_tat.div_ceil(1_000_000),
        retry_after: 0,
    };
    (Some(new_tat), verdict)
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
        // One interval later exactly one more request fits.
        let later = now + interval_micros(limit);
        let (next, v) = step(tat, later, limit);
        assert!(v.allowed);
        assert!(!step(next, later, limit).1.allowed);
    }

    #[test]
    fn a_raised_limit_ends_the_old_limits_debt() {
        let starter = RateLimit {
            per_minute: 60,
            burst: 10,
        };
        let enterprise = RateLimit {
            per_minute: 6_000,
            burst: 200,
        };
        let now = 1_000_000_000;
        let mut tat = None;
        for _ in 0..10 {
            tat = step(tat, now, starter).0;
        }
        assert!(!step(tat, now, starter).1.allowed);
        // Under the raised limit one request fits at once, then its rate.
        let (next, v) = step(tat, now, enterprise);
        assert!(v.allowed);
        assert_eq!(v.remaining, 0);
        assert!(!step(next, now, enterprise).1.allowed);
        assert!(
            step(next, now + interval_micros(enterprise), enterprise)
                .1
                .allowed
        );
        // A limit lowered keeps the debt the bucket has.
        let mut tat = None;
        for _ in 0..200 {
            tat = step(tat, now, enterprise).0;
        }
        assert!(step(tat, now, starter).1.allowed);
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
