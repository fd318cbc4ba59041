//! GCRA buckets in Redis: two keys per organization (its time, and the
//! interval of the limit that wrote it), updated by one atomic script using
//! Redis's own clock, so replicas with skewed clocks agree.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use warden_core::org::RateLimit;

use super::gcra::{interval_micros, now_micros, Verdict};

const SCRIPT: &str = r#"
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
local written = tonumber(redis.call('GET', KEYS[2]) or interval)
if written ~= interval and tat > now then
  tat = now + math.min(math.floor((tat - now) * interval / written), capacity)
end
if tat < now then tat = now end
local new_tat = tat + interval
local used = new_tat - now
if used > capacity then
  return {'0', '0', string.format('%.0f', tat), string.format('%.0f', used - capacity)}
end
local ttl = string.format('%.0f', math.ceil(used / 1000) + 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
redis.call('SET', KEYS[2], string.format('%.0f', interval), 'PX', ttl)
return {'1', string.format('%.0f', math.floor((capacity - used) / interval)), string.format('%.0f', new_tat), '0'}
"#;

/// How long a Redis call may take before the request falls back to local
/// buckets, and how long Redis is then left alone.
const CALL_TIMEOUT: Duration = Duration::from_millis(100);
const BACKOFF_MICROS: u64 = 1_000_000;

struct Inner {
    client: redis::Client,
    /// Where the client connects (`host:port/db`, never a password), for
    /// the log: an operator running several Redis servers needs to know
    /// which one is meant.
    address: String,
    /// What every key starts with.
    prefix: String,
    manager: RwLock<Option<ConnectionManager>>,
    up: AtomicBool,
    /// Redis answered, and refused Warden (a password, a database, a
    /// user not allowed to run the script): not an outage, and said so.
    refused: AtomicBool,
    skip_until: AtomicU64,
    script: redis::Script,
}

#[derive(Clone)]
pub struct RedisBuckets(Arc<Inner>);

impl RedisBuckets {
    /// Parses the URL; connecting happens in the background so that a server
    /// starts even while Redis is down.
    /// `prefix` starts every key (`warden:`).
    pub fn new(url: &str, prefix: &str) -> Result<Self, String> {
        if url.trim_start().to_ascii_lowercase().starts_with("rediss:") {
            return Err("--redis-url: this build of Warden connects to Redis without TLS \
                 (`rediss://`): use `redis://` over loopback or a private network (or a TLS tunnel)"
                .into());
        }
        // Not the URL itself, nor the client's text of it: it may hold a
        // password.
        let client = redis::Client::open(url).map_err(|_| {
            "--redis-url: not a Redis URL; expected redis://[user:password@]host[:port][/db]"
                .to_string()
        })?;
        let info = client.get_connection_info();
        let address = format!("{}/{}", info.addr, info.redis.db);
        Ok(RedisBuckets(Arc::new(Inner {
            client,
            address,
            prefix: prefix.to_string(),
            manager: RwLock::new(None),
            up: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            skip_until: AtomicU64::new(0),
            script: redis::Script::new(SCRIPT),
        })))
    }

    /// Refuses a setting Redis itself turns down (a wrong password, a
    /// database it does not have, a user not allowed to run the rate-limit
    /// script): unlike an outage, it never mends, and
    /// every replica would serve on local limits for good. A Redis that
    /// cannot be reached is left to the connector (the documented
    /// fallback).
    pub async fn refuse_wrong_settings(&self) -> Result<(), String> {
        let attempt = async {
            let mut conn = self.0.client.get_multiplexed_async_connection().await?;
            self.probe(&mut conn).await
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Err(err)) if refuses_settings(&err) => Err(format!(
                "--redis-url: Redis at {} refused this setting: {} (check the password, \
                 the database number and the user's permissions to run scripts)",
                self.0.address,
                // The client writes its error kind after a dash.
                err.to_string().replace("- ", ": ")
            )),
            _ => Ok(()),
        }
    }

    /// Keeps a connection: tries every second while there is none, at
    /// start or after Redis refused Warden (the connection manager mends an
    /// outage by itself, but keeps the refused credentials: a password
    /// put right needs a new connection). A connection counts once the
    /// rate-limit script runs on it.
    pub fn spawn_connector(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut connected_once = false;
            loop {
                if this.manager().is_none() {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Duration::from_millis(500))
                        .set_response_timeout(CALL_TIMEOUT)
                        .set_number_of_retries(1);
                    let attempt = async {
                        let mut manager =
                            ConnectionManager::new_with_config(this.0.client.clone(), config)
                                .await?;
                        this.probe(&mut manager).await.map(|()| manager)
                    };
                    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                        Ok(Ok(manager)) => {
                            *this.0.manager.write().unwrap_or_else(|e| e.into_inner()) =
                                Some(manager);
                            if connected_once {
                                this.mark_up();
                            } else {
                                connected_once = true;
                                this.0.refused.store(false, Ordering::Relaxed);
                                this.0.up.store(true, Ordering::Relaxed);
                                tracing::info!(redis = %this.0.address, "connected to Redis for shared rate limits");
                            }
                        }
                        Ok(Err(err)) if refuses_settings(&err) => this.mark_down(Some(&err)),
                        failed => {
                            this.0.up.store(false, Ordering::Relaxed);
                            this.0.refused.store(false, Ordering::Relaxed);
                            let error = match failed {
                                Ok(Err(err)) => err.to_string(),
                                _ => "no answer within 2 s".into(),
                            };
                            tracing::warn!(redis = %this.0.address, error, "Redis unreachable; using local rate limits");
                        }
                    }
                } else if !this.is_up() {
                    // After an outage, tried every second whether or not
                    // a request comes: an idle replica finds Redis back
                    // (and its connection mended) before its next request.
                    this.ping().await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    pub fn is_up(&self) -> bool {
        self.0.up.load(Ordering::Relaxed)
    }

    fn manager(&self) -> Option<ConnectionManager> {
        self.0
            .manager
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Notes Redis answering; says so in the log when it had not.
    fn mark_up(&self) {
        self.0.refused.store(false, Ordering::Relaxed);
        // Requests use Redis again at once, not when the pause a failed
        // call set runs out.
        self.0.skip_until.store(0, Ordering::Relaxed);
        if !self.0.up.swap(true, Ordering::Relaxed) {
            tracing::info!(redis = %self.0.address, "Redis answers again; rate limits are shared across replicas");
        }
    }

    /// Notes Redis failing a call, and why: an outage is a warning, an
    /// answer refusing Warden an error naming the refusal (it does not
    /// mend by itself).
    fn mark_down(&self, err: Option<&redis::RedisError>) {
        let was_up = self.0.up.swap(false, Ordering::Relaxed);
        match err.filter(|e| refuses_settings(e)) {
            Some(err) => {
                if !self.0.refused.swap(true, Ordering::Relaxed) {
                    tracing::error!(redis = %self.0.address, error = %err, "Redis refused Warden's setting (password, database or permissions); falling back to local rate limits");
                }
                // A new connection, once the setting is put right: the
                // connector makes it.
                *self.0.manager.write().unwrap_or_else(|e| e.into_inner()) = None;
            }
            None => {
                self.0.refused.store(false, Ordering::Relaxed);
                if was_up {
                    // Redis's own answer when it gave one (out of memory,
                    // busy loading), so that an operator sees why.
                    match err {
                        Some(err) => {
                            tracing::warn!(redis = %self.0.address, error = %err, "Redis unreachable or failing; falling back to local rate limits")
                        }
                        None => {
                            tracing::warn!(redis = %self.0.address, "Redis unreachable; falling back to local rate limits")
                        }
                    }
                }
            }
        }
        self.0
            .skip_until
            .store(now_micros() + BACKOFF_MICROS, Ordering::Relaxed);
    }

    /// The script on a bucket's keys: its time, and the interval of the
    /// limit it was written under (a time written by a release before
    /// the second key is read as this limit's).
    fn invocation(&self, bucket: &str) -> redis::ScriptInvocation<'_> {
        let mut invocation = self
            .0
            .script
            .key(format!("{}ratelimit:{bucket}", self.0.prefix));
        invocation.key(format!("{}ratelimit:{bucket}:interval", self.0.prefix));
        invocation
    }

    /// Runs the rate-limit script on a key of its own, as a request
    /// would: a user allowed to connect but not to run scripts, or to
    /// write Warden's keys, fails here as every request would.
    async fn probe<C: redis::aio::ConnectionLike>(&self, conn: &mut C) -> redis::RedisResult<()> {
        let mut invocation = self.invocation("readiness-probe");
        invocation.arg(1u64).arg(u64::from(u32::MAX));
        invocation.invoke_async::<Vec<String>>(conn).await.map(drop)
    }

    /// Whether Redis runs the rate-limit script now.
    pub async fn ping(&self) -> bool {
        let Some(mut conn) = self.manager() else {
            return false;
        };
        let mut answer = tokio::time::timeout(CALL_TIMEOUT, self.probe(&mut conn)).await;
        // A dropped connection is made again by the manager: once more.
        if matches!(&answer, Ok(Err(err)) if dropped(err)) {
            answer = tokio::time::timeout(CALL_TIMEOUT, self.probe(&mut conn)).await;
        }
        match answer {
            Ok(Ok(())) => {
                self.mark_up();
                true
            }
            Ok(Err(err)) => {
                self.mark_down(Some(&err));
                false
            }
            Err(_) => {
                self.mark_down(None);
                false
            }
        }
    }

    /// Whether Redis's last answer refused Warden rather than failed to come.
    pub fn is_refused(&self) -> bool {
        self.0.refused.load(Ordering::Relaxed)
    }

    /// Takes one request from the shared bucket; `None` when Redis cannot
    /// answer now and the caller must decide locally.
    pub async fn check(&self, org_id: &str, limit: RateLimit) -> Option<Verdict> {
        if now_micros() < self.0.skip_until.load(Ordering::Relaxed) {
            return None;
        }
        let mut conn = self.manager()?;
        let interval = interval_micros(limit);
        let capacity = interval * u64::from(limit.burst.max(1));
        let mut invocation = self.invocation(org_id);
        invocation.arg(interval).arg(capacity);
        let started = std::time::Instant::now();
        let mut reply = tokio::time::timeout(
            CALL_TIMEOUT,
            invocation.invoke_async::<Vec<String>>(&mut conn),
        )
        .await;
        // A connection Redis dropped (a restart) is found by the first call
        // that uses it, long after Redis is back: the manager connects
        // again, and the call is made once more on the new connection,
        // within the same bound, rather than decided locally.
        if matches!(&reply, Ok(Err(err)) if dropped(err)) {
            let left = CALL_TIMEOUT.saturating_sub(started.elapsed());
            reply = tokio::time::timeout(left, invocation.invoke_async(&mut conn)).await;
        }
        let fields: Vec<u64> = match reply {
            Ok(Ok(fields)) => fields.iter().filter_map(|f| f.parse().ok()).collect(),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "Redis rate limit call failed");
                self.mark_down(Some(&err));
                return None;
            }
            Err(_) => {
                self.mark_down(None);
                return None;
            }
        };
        let [allowed, remaining, tat, wait] = fields[..] else {
            self.mark_down(None);
            return None;
        };
        self.mark_up();
        let (retry_after, retry_after_ms) = if allowed == 1 {
            (0, 0)
        } else {
            super::gcra::waits(wait)
        };
        Some(Verdict {
            allowed: allowed == 1,
            limit: limit.per_minute,
            remaining: remaining as u32,
            reset_at: tat.div_ceil(1_000_000),
            retry_after,
            retry_after_ms,
        })
    }
}

/// A connection Redis closed (a restart): the manager makes a new one for
/// the next call, so one more is worth making at once.
fn dropped(err: &redis::RedisError) -> bool {
    err.is_connection_dropped() || err.is_io_error()
}

/// An answer of Redis's own that a retry cannot change: its password or
/// database refused, a password it asks for and was not given, or a user
/// not allowed to run the script or write Warden's keys.
fn refuses_settings(err: &redis::RedisError) -> bool {
    let said = err.to_string();
    err.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
        || said.contains("refused to switch database")
        // An ACL that lets the script run but not the commands it runs.
        || said.contains("can't run this command")
        || said.contains("No permissions")
}
