//! Agent governance: policies, the decision on each tool call, step-up
//! holds, the hash-chained audit log and behavioural drift.

pub mod agents;
pub mod audit_log;
pub mod decision_events;
pub mod drift;
pub mod enforce;
pub mod engine;
pub mod holds;
pub mod orphan_holds;
pub mod policies;
pub mod seals;
pub mod session_order;
pub mod unrecorded_discoveries;
pub mod verify;

use std::sync::Arc;

use warden_store::Store;

/// The governance services a server shares between requests.
pub struct Governance {
    pub store: Arc<dyn Store>,
    pub audit: audit_log::AuditLog,
    pub engine: engine::PolicyEngine,
    pub drift: drift::DriftBook,
    pub waiters: holds::HoldWaiters,
    pub agents: agents::AgentCache,
    pub sessions: session_order::SessionOrder,
}

impl Governance {
    /// Starts the audit writer, whose decisions' events go to `feed` and
    /// whose commits are timed in `commit_times` and whose records are
    /// sealed by `sealer`; needs a Tokio runtime.
    pub fn start(
        store: Arc<dyn Store>,
        feed: crate::telemetry::IndexFeed,
        commit_times: audit_log::CommitTimes,
        sealer: warden_core::secret::ChainSealer,
    ) -> Self {
        Governance {
            audit: audit_log::AuditLog::start(store.clone(), feed, commit_times, sealer.clone()),
            engine: engine::PolicyEngine::new(store.clone()),
            drift: drift::DriftBook::new(store.clone(), sealer.clone()),
            waiters: holds::HoldWaiters::default(),
            agents: agents::AgentCache::default(),
            sessions: session_order::SessionOrder::default(),
            store,
        }
    }

    /// Background upkeep: expire holds, save drift profiles.
    pub async fn upkeep(&self) {
        holds::expire_due(self.store.as_ref(), &self.audit, &self.waiters).await;
        self.drift.flush().await;
    }
}
