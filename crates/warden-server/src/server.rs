//! Start-up and shutdown of the HTTP server with its background work.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::TcpListener;
use warden_core::secret::MasterKey;
use warden_core::{Environment, Tenant};
use warden_store::Store;

use crate::auth::KeyRing;
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimiter, RedisBuckets};
use crate::services::secrets;
use crate::state::{AppState, Shared};
use crate::telemetry::syslog::{SyslogListeners, SyslogRouting};
use crate::telemetry::Telemetry;

/// Settings of `warden serve` beyond the store.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub redis_url: Option<String>,
    /// What every Redis key starts with (`warden:` unless told).
    pub redis_key_prefix: String,
    pub trusted_proxies: Vec<IpNet>,
    /// Where this process keeps its search index.
    pub index_dir: PathBuf,
    /// Threads that build the search index.
    pub index_threads: usize,
    pub syslog: SyslogConfig,
    /// How long an HTTP client has to send a request's headers, idle time
    /// before them included (see `http_listener`).
    pub header_timeout: std::time::Duration,
    /// The most time one search may take.
    pub search_time_limit: std::time::Duration,
}

/// The syslog listeners: addresses, and the organization whose `live`
/// environment receives messages that carry no ingest key.
#[derive(Debug, Clone, Default)]
pub struct SyslogConfig {
    pub udp: Option<String>,
    pub tcp: Option<String>,
    pub org_id: Option<String>,
    /// Most TCP connections open at once (see `telemetry::syslog_tcp`).
    pub tcp_connections: usize,
}

pub struct Server {
    state: AppState,
    listener: TcpListener,
    syslog: SyslogConfig,
    syslog_addrs: Option<SyslogListeners>,
    header_timeout: std::time::Duration,
}

impl Server {
    /// Checks the master key, loads the signing key, binds the listener.
    pub async fn build(
        store: Arc<dyn Store>,
        master: &MasterKey,
        config: ServerConfig,
    ) -> Result<Self, String> {
        if let Some(limit) = crate::open_files::raise_to_hard_limit() {
            tracing::info!(limit, "open files allowed");
        }
        secrets::verify_master_key(store.as_ref(), master).await?;
        let tokens = secrets::token_issuer(store.as_ref(), master).await?;
        crate::governance::seals::check_at_start(store.as_ref(), &master.chain_sealer()).await?;
        let redis = config
            .redis_url
            .as_deref()
            .map(|url| RedisBuckets::new(url, &config.redis_key_prefix))
            .transpose()?;
        if let Some(r) = &redis {
            r.refuse_wrong_settings().await?;
            r.spawn_connector();
        }
        let mut telemetry =
            Telemetry::open(store.clone(), &config.index_dir, config.index_threads)?;
        telemetry.search_time_limit = config.search_time_limit;
        let telemetry = Arc::new(telemetry);
        let commit_times = crate::governance::audit_log::CommitTimes::default();
        let metrics = Metrics::new(redis.is_some(), &telemetry.health, &commit_times);
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        if let Some(org_id) = &config.syslog.org_id {
            if store
                .get_organization(org_id)
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err(format!("--syslog-org: no organization {org_id}"));
            }
        }
        let state = AppState::new(Shared {
            keys: KeyRing::new(store.clone(), master.key_pepper(), tokens),
            store: store.clone(),
            limiter: RateLimiter::new(redis),
            metrics,
            trusted_proxies: config.trusted_proxies,
            master: master.clone(),
            governance: Arc::new(crate::governance::Governance::start(
                store.clone(),
                telemetry.feed(),
                commit_times,
                master.chain_sealer(),
            )),
            telemetry,
        });
        Ok(Server {
            state,
            listener,
            syslog: config.syslog,
            syslog_addrs: None,
            header_timeout: config.header_timeout,
        })
    }

    /// Binds the syslog listeners, if any were asked for.
    pub async fn start_syslog(&mut self) -> Result<Option<&SyslogListeners>, String> {
        if self.syslog.udp.is_none() && self.syslog.tcp.is_none() {
            return Ok(None);
        }
        let routing = SyslogRouting {
            default_tenant: self.syslog.org_id.clone().map(|org_id| Tenant {
                org_id,
                environment: Environment::Live,
            }),
            state: self.state.clone(),
        };
        let listeners = crate::telemetry::syslog::start(
            self.state.telemetry.clone(),
            routing,
            self.syslog.udp.as_deref(),
            self.syslog.tcp.as_deref(),
            self.syslog.tcp_connections,
        )
        .await?;
        self.syslog_addrs = Some(listeners);
        Ok(self.syslog_addrs.as_ref())
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests,
    /// stores the syslog messages already read, flushes key usage and
    /// closes the store.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let state = self.state.clone();
        let syslog = self.syslog_addrs.take();
        let stop_syslog = syslog.as_ref().map(SyslogListeners::stopper);
        let background = tokio::spawn(background_work(state.clone()));
        let upkeep = tokio::spawn(governance_upkeep(state.clone()));
        let telemetry = &state.telemetry;
        let indexer = tokio::spawn(crate::telemetry::indexer::run(
            telemetry.store.clone(),
            telemetry.index.clone(),
            telemetry.appended.clone(),
            telemetry.handoff.clone(),
            telemetry.searchable.clone(),
            telemetry.health.clone(),
            telemetry.committing.clone(),
        ));
        let retention = tokio::spawn(crate::telemetry::retention::run(
            telemetry.clone(),
            Duration::from_secs(60),
        ));
        let app = crate::routes::router(state.clone());
        // Long-polls on holds are in-flight requests too: they answer at
        // once when shutdown begins, instead of holding it up to 30 s.
        let began = Arc::new(tokio::sync::Notify::new());
        let shutdown = {
            let state = state.clone();
            let began = began.clone();
            async move {
                shutdown.await;
                if let Some(stop_syslog) = stop_syslog {
                    stop_syslog();
                }
                state.governance.waiters.close();
                began.notify_one();
            }
        };
        let serving = async {
            crate::http_listener::serve(self.listener, app, self.header_timeout, shutdown).await;
            Ok::<(), std::io::Error>(())
        };
        // In-flight requests get a while to finish; one that a client
        // stalls (an upload that stops sending) does not hold the process.
        let drained = async {
            began.notified().await;
            tokio::time::sleep(DRAIN).await;
        };
        let served = tokio::select! {
            served = serving => served.map_err(|e| format!("server error: {e}")),
            () = drained => {
                tracing::warn!(
                    seconds = DRAIN.as_secs(),
                    "connections still open after the shutdown's drain time (requests in flight, or clients that had not finished sending one); stopping without them"
                );
                Ok(())
            }
        };
        // Syslog messages already read are stored before the store closes.
        if let Some(syslog) = syslog {
            syslog.finish(SYSLOG_DRAIN).await;
        }
        background.abort();
        upkeep.abort();
        indexer.abort();
        let closing = async {
            // A commit under way saves its position before the store closes.
            let _settled = state.telemetry.committing.lock().await;
            retention.abort();
            state.governance.drift.save_all().await;
            state.keys.flush_usage().await;
            state.store.close().await;
        };
        // A database that stopped answering does not hold the process:
        // what is left unsaved is rebuilt on the next start (drift
        // profiles from the audit log, the index from its saved position).
        if tokio::time::timeout(CLOSE, closing).await.is_err() {
            tracing::warn!(
                seconds = CLOSE.as_secs(),
                "the store did not finish closing; stopping without it (drift profiles and the index's position are rebuilt on the next start)"
            );
        }
        served
    }
}

/// How long a shutdown waits for in-flight requests.
const DRAIN: Duration = Duration::from_secs(10);
/// How long it then waits for the store to save and close.
const CLOSE: Duration = Duration::from_secs(10);
/// How much longer it waits for the syslog messages read before it to be
/// stored (they have been storing since it began): a service manager's
/// usual stop timeout (systemd's 90 s) leaves room for both.
const SYSLOG_DRAIN: Duration = Duration::from_secs(20);

/// Expires step-up holds (every second), saves drift profiles, and takes
/// back discovered agents whose first decision was never recorded (every
/// half minute).
async fn governance_upkeep(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        state.governance.upkeep().await;
        if ticks.is_multiple_of(30) {
            crate::governance::unrecorded_discoveries::take_back(&state.governance).await;
        }
        ticks += 1;
    }
}

/// Periodic chores: writing keys' last use, forgetting old idempotency records.
async fn background_work(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        state.keys.flush_usage().await;
        ticks += 1;
        if ticks % 1800 == 1 {
            let before = warden_core::time::now_ms() - crate::idempotency::RETENTION_MS;
            if let Err(err) = state.store.purge_idempotency(before).await {
                tracing::warn!(error = %err, "could not purge idempotency records");
            }
        }
    }
}
