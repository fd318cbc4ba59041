//! Per-organization rate limits (GCRA). Buckets live in this process, or in
//! Redis when configured so that every replica shares one limit. When Redis
//! cannot be reached the limiter falls back to local buckets, says so in
//! `/readyz` and `/metrics`, and never fails a request for it.

mod gcra;
mod redis_bucket;

use std::collections::HashMap;
use std::sync::Mutex;

use warden_core::org::RateLimit;

pub use gcra::Verdict;
pub use redis_bucket::RedisBuckets;

use crate::metrics::Metrics;

/// Where the limits are kept right now, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterState {
    Local,
    Redis,
    /// Redis is configured but unreachable: local buckets stand in.
    RedisFallback,
}

pub struct RateLimiter {
    local: Mutex<HashMap<String, gcra::Bucket>>,
    redis: Option<RedisBuckets>,
}

impl RateLimiter {
    pub fn new(redis: Option<RedisBuckets>) -> Self {
        RateLimiter {
            local: Mutex::default(),
            redis,
        }
    }

    pub fn state(&self) -> LimiterState {
        match &self.redis {
            None => LimiterState::Local,
            Some(r) if r.is_up() => LimiterState::Redis,
            Some(_) => LimiterState::RedisFallback,
        }
    }

    pub fn redis(&self) -> Option<&RedisBuckets> {
        self.redis.as_ref()
    }

    /// Takes one request from the organization's bucket.
    pub async fn check(&self, org_id: &str, limit: RateLimit, metrics: &Metrics) -> Verdict {
        if let Some(redis) = &self.redis {
            // Whether Redis answered is kept by `RedisBuckets` itself;
            // `/metrics` reads it there at each scrape.
            match redis.check(org_id, limit).await {
                Some(verdict) => return verdict,
                None => metrics.rate_limit_fallback(),
            }
        }
        self.check_local(org_id, limit)
    }

    fn check_local(&self, org_id: &str, limit: RateLimit) -> Verdict {
        let now = gcra::now_micros();
        let mut buckets = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let tat = buckets.get(org_id).copied();
        let (new_tat, verdict) = gcra::step(tat, now, limit);
        match (new_tat, buckets.get_mut(org_id)) {
            (Some(t), Some(slot)) => *slot = t,
            (Some(t), None) => {
                buckets.insert(org_id.to_string(), t);
            }
            (None, _) => {}
        }
        verdict
    }
}
