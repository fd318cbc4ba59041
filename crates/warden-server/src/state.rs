//! What every handler shares.

use std::sync::Arc;

use ipnet::IpNet;
use warden_core::secret::MasterKey;
use warden_store::Store;

use crate::auth::KeyRing;
use crate::governance::Governance;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::telemetry::Telemetry;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Arc<dyn Store>,
    pub keys: KeyRing,
    pub limiter: RateLimiter,
    pub metrics: Arc<Metrics>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Seals what the server keeps but must not store in the clear
    /// (recorded responses that may carry a new key's secret).
    pub master: MasterKey,
    /// Policies, decisions, holds, the audit log and drift.
    pub governance: Arc<Governance>,
    /// Event ingest, the event log's index, search and retention.
    pub telemetry: Arc<Telemetry>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
