//! Prometheus metrics: requests and latency by route and status, the
//! state of the shared rate-limit store, what became of syslog messages,
//! and how far the search index trails acknowledged events.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::AppState;
use crate::telemetry::IndexHealth;

// Labels are static strings and integers so that counting a request
// allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

/// What became of a syslog message: `stored`, `malformed` (unparseable or
/// badly framed), `unrouted` (no organization, or an unusable key),
/// `lost` (the store refused it after retries, or its TCP sender had not
/// finished it at shutdown) or `dropped_by_kernel` (a UDP datagram the
/// socket's full buffer discarded).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyslogLabels {
    outcome: &'static str,
}

/// Route templates seen so far. They are the router's own paths, a fixed
/// handful, so each is leaked once and then shared.
static ROUTES: std::sync::LazyLock<RwLock<HashMap<String, &'static str>>> =
    std::sync::LazyLock::new(Default::default);

fn intern(route: &str) -> &'static str {
    if let Some(r) = ROUTES.read().unwrap_or_else(|e| e.into_inner()).get(route) {
        return r;
    }
    let mut routes = ROUTES.write().unwrap_or_else(|e| e.into_inner());
    routes
        .entry(route.to_string())
        .or_insert_with(|| Box::leak(route.to_string().into_boxed_str()))
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    redis_up: Gauge,
    rate_limited: Counter,
    fallback: Counter,
    syslog_refused: Counter,
    syslog: Family<SyslogLabels, Counter>,
    searchable: Gauge,
    unsearchable: Gauge,
    unsearchable_for: Gauge<f64, std::sync::atomic::AtomicU64>,
    unsearchable_bytes: Gauge,
    backlog_allowed: Gauge,
    backlog_allowed_bytes: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
}

impl Metrics {
    pub fn new(
        redis_configured: bool,
        index: &IndexHealth,
        audit: &crate::governance::audit_log::CommitTimes,
    ) -> Arc<Self> {
        let mut registry = Registry::default();
        // Which build answers: replicas of a rolling upgrade told apart.
        registry.register(
            "warden_build",
            "The release and the commit this server was built from",
            prometheus_client::metrics::info::Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", crate::COMMIT),
            ]),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let redis_up = Gauge::default();
        let rate_limited = Counter::default();
        let fallback = Counter::default();
        let syslog = Family::<SyslogLabels, Counter>::default();
        // Every outcome shows from the start, so that an alert on one
        // (`lost`) has a series before the first.
        for outcome in [
            "stored",
            "malformed",
            "unrouted",
            "lost",
            "dropped_by_kernel",
        ] {
            drop(syslog.get_or_create(&SyslogLabels { outcome }));
        }
        let syslog_refused = Counter::default();
        registry.register(
            "warden_syslog_connections_refused",
            "Syslog TCP connections closed at once because the most allowed were open",
            syslog_refused.clone(),
        );
        registry.register(
            "warden_syslog_messages",
            "Syslog messages by outcome: stored, malformed, unrouted, lost, dropped_by_kernel",
            syslog.clone(),
        );
        registry.register(
            "warden_http_requests",
            "HTTP requests by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "warden_http_request_duration_seconds",
            "HTTP request latency by method, route template and status",
            latency.clone(),
        );
        registry.register(
            "warden_rate_limited",
            "Requests refused with 429",
            rate_limited.clone(),
        );
        let searchable = Gauge::default();
        let unsearchable = Gauge::default();
        let backlog_allowed = Gauge::default();
        let unsearchable_for = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let unsearchable_bytes = Gauge::default();
        let backlog_allowed_bytes = Gauge::default();
        registry.register(
            "warden_index_searchable_position",
            "Event log position up to which this replica's search index answers",
            searchable.clone(),
        );
        registry.register(
            "warden_index_unsearchable_events",
            "Events this replica acknowledged that its search index does not yet return",
            unsearchable.clone(),
        );
        registry.register(
            "warden_index_unsearchable_oldest_seconds",
            "How long the oldest event this replica acknowledged and its search index does not yet return has waited (0 when none)",
            unsearchable_for.clone(),
        );
        registry.register(
            "warden_index_unsearchable_bytes",
            "The indexing work this replica appended that its search index does not yet return: bytes of event text, plus 512 an event",
            unsearchable_bytes.clone(),
        );
        registry.register(
            "warden_index_backlog_allowed_bytes",
            "The indexing work (bytes of event text, plus 512 an event) allowed unsearchable before acknowledgments wait: what the index makes searchable in half a second at its measured pace",
            backlog_allowed_bytes.clone(),
        );
        registry.register(
            "warden_index_backlog_allowed_events",
            "Unsearchable events this replica allows before acknowledgments wait: the work allowed, in events of the size appended lately",
            backlog_allowed.clone(),
        );
        registry.register(
            "warden_index_failures",
            "Steps or commits of the search indexer that failed; each time it goes back to its saved position and indexes again from the log",
            index.failures.clone(),
        );
        let (open_fds, max_fds) = (Gauge::default(), Gauge::default());
        registry.register(
            "warden_process_open_fds",
            "File descriptors the process holds (connections, store and index files)",
            open_fds.clone(),
        );
        registry.register(
            "warden_process_max_fds",
            "The process's limit on open file descriptors (its soft limit)",
            max_fds.clone(),
        );
        registry.register(
            "warden_index_backpressure_waits",
            "Acknowledgments that waited for the search index to catch up",
            index.waits.clone(),
        );
        registry.register(
            "warden_index_backpressure_wait_seconds",
            "Time acknowledgments spent waiting for the search index",
            index.waited_seconds.clone(),
        );
        registry.register(
            "warden_audit_commit_seconds",
            "Time each batch of audit records (decisions, changes, with their events) took to commit durably, the sync to disk included",
            audit.seconds.clone(),
        );
        registry.register(
            "warden_audit_commit_records",
            "Audit records per committed batch",
            audit.records.clone(),
        );
        registry.register(
            "warden_audit_queued_seconds",
            "Time each audit record waited for its batch to start committing (behind the batch before it)",
            audit.queued_seconds.clone(),
        );
        if redis_configured {
            registry.register(
                "warden_redis_up",
                "1 when the shared rate-limit store (Redis) answers, 0 while local buckets stand in",
                redis_up.clone(),
            );
            registry.register(
                "warden_rate_limit_fallback",
                "Rate-limit decisions made locally because Redis could not answer",
                fallback.clone(),
            );
        }
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            redis_up,
            rate_limited,
            fallback,
            syslog_refused,
            syslog,
            searchable,
            unsearchable,
            unsearchable_for,
            unsearchable_bytes,
            backlog_allowed,
            backlog_allowed_bytes,
            open_fds,
            max_fds,
        })
    }

    /// Reads the process's descriptors and their limit, just before a
    /// scrape renders them.
    pub fn set_process(&self) {
        // The listing's own descriptor is among those it lists.
        if let Ok(listing) = std::fs::read_dir("/proc/self/fd") {
            let open = listing.count().saturating_sub(1);
            self.open_fds.set(i64::try_from(open).unwrap_or(i64::MAX));
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            self.max_fds
                .set(i64::try_from(limit.rlim_cur).unwrap_or(i64::MAX));
        }
    }

    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }

    pub fn rate_limit_fallback(&self) {
        self.fallback.inc();
    }

    /// Counts `n` syslog messages under `outcome` (see [`SyslogLabels`]):
    /// syslog cannot answer its sender, so this is where drops show.
    pub fn syslog_messages(&self, outcome: &'static str, n: u64) {
        self.syslog
            .get_or_create(&SyslogLabels { outcome })
            .inc_by(n);
    }

    pub fn syslog_connections_refused(&self) {
        self.syslog_refused.inc();
    }

    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// Records where the index stands, just before a scrape renders it.
    pub fn set_index(&self, searchable: i64, index: &IndexHealth) {
        self.searchable.set(searchable);
        self.unsearchable.set(index.unsearchable(searchable));
        self.unsearchable_for
            .set(index.lag(searchable).as_secs_f64());
        self.backlog_allowed.set(index.allowance());
        self.unsearchable_bytes
            .set(index.unsearchable_work(searchable) as i64);
        self.backlog_allowed_bytes.set(index.allowed_work() as i64);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Counts and times every request under its route template, so that ids in
/// paths never multiply the series.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_name(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| intern(p.as_str()))
        .unwrap_or("unmatched");
    let response = next.run(req).await;
    let status = response.status();
    let elapsed = started.elapsed();
    let metrics = &state.metrics;
    let labels = RequestLabels {
        method,
        route,
        status: status.as_u16(),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .latency
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // A store out of reach or a full disk refuses every write at
        // once: one line a minute with the count, not one a request (the
        // answer names the cause, and its own paced line says it).
        static UNAVAILABLE: warden_core::log_pace::SharedPaced =
            warden_core::log_pace::SharedPaced::new();
        if let Some(unlogged) = UNAVAILABLE.due() {
            tracing::error!(
                status = status.as_u16(),
                latency_us = elapsed.as_micros() as u64,
                unlogged,
                "request failed"
            );
        }
    } else if status.is_server_error() {
        tracing::error!(
            status = status.as_u16(),
            latency_us = elapsed.as_micros() as u64,
            "request failed"
        );
    } else {
        tracing::debug!(
            status = status.as_u16(),
            latency_us = elapsed.as_micros() as u64,
            "request served"
        );
    }
    response
}
