//! Start-up and shutdown of the HTTP server with its background work.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use ipnet::IpNet;
use tokio::net::TcpListener;
use warden_core::secret::MasterKey;
use warden_store::Store;

use crate::auth::KeyRing;
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimiter, RedisBuckets};
use crate::services::secrets;
use crate::state::{AppState, Shared};

/// Settings of `warden serve` beyond the store.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub redis_url: Option<String>,
    pub trusted_proxies: Vec<IpNet>,
}

pub struct Server {
    state: AppState,
    listener: TcpListener,
}

impl Server {
    /// Checks the master key, loads the signing key, binds the listener.
    pub async fn build(
        store: Arc<dyn Store>,
        master: &MasterKey,
        config: ServerConfig,
    ) -> Result<Self, String> {
        secrets::verify_master_key(store.as_ref(), master).await?;
        let tokens = secrets::token_issuer(store.as_ref(), master).await?;
        let redis = config
            .redis_url
            .as_deref()
            .map(RedisBuckets::new)
            .transpose()?;
        if let Some(r) = &redis {
            r.spawn_connector();
        }
        let metrics = Metrics::new(redis.is_some());
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let state = AppState::new(Shared {
            keys: KeyRing::new(store.clone(), master.key_pepper(), tokens),
            store: store.clone(),
            limiter: RateLimiter::new(redis),
            metrics,
            trusted_proxies: config.trusted_proxies,
            master: master.clone(),
            governance: Arc::new(crate::governance::Governance::start(store.clone())),
        });
        Ok(Server { state, listener })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests,
    /// flushes key usage and closes the store.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let state = self.state.clone();
        let background = tokio::spawn(background_work(state.clone()));
        let upkeep = tokio::spawn(governance_upkeep(state.clone()));
        let app = crate::routes::router(state.clone());
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("server error: {e}"));
        background.abort();
        upkeep.abort();
        state.governance.drift.flush().await;
        state.keys.flush_usage().await;
        state.store.close().await;
        served
    }
}

/// Expires step-up holds (every second) and saves drift profiles.
async fn governance_upkeep(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        state.governance.upkeep().await;
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
