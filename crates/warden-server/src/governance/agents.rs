//! Agents as the decision path and ingest see them, found or not, kept
//! for [`TTL`] so that a call does not read the registry: a change made
//! through this replica's API is seen at once, one made elsewhere within
//! the TTL (as with API keys).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use warden_core::agent::Agent;
use warden_core::Tenant;
use warden_store::{Store, StoreError};

pub const TTL: Duration = Duration::from_millis(900);
/// Entries kept before the cache starts over.
const CAPACITY: usize = 100_000;

#[derive(Default)]
pub struct AgentCache {
    /// What the registry said of a reference, found or not: a log naming
    /// agents Warden has not met would otherwise cost a read per batch.
    by_reference: Mutex<HashMap<(Tenant, String), Looked>>,
}

/// When a reference was looked up, and the agent it named, if any.
type Looked = (Instant, Option<Agent>);

impl AgentCache {
    /// The agent whose id or external id is `reference`.
    pub async fn find(
        &self,
        store: &dyn Store,
        tenant: &Tenant,
        reference: &str,
    ) -> Result<Option<Agent>, StoreError> {
        let key = (tenant.clone(), reference.to_string());
        if let Some((at, agent)) = self.by_reference.lock().unwrap().get(&key) {
            if at.elapsed() < TTL {
                return Ok(agent.clone());
            }
        }
        self.find_fresh(store, tenant, reference).await
    }

    /// The agent as the registry has it now, even if another replica
    /// changed it within the TTL: for a call that uses an approval, which
    /// a suspension made anywhere must stop at once.
    pub async fn find_fresh(
        &self,
        store: &dyn Store,
        tenant: &Tenant,
        reference: &str,
    ) -> Result<Option<Agent>, StoreError> {
        let found = store.find_agent(tenant, reference).await?;
        self.remember(tenant, reference, found.clone());
        Ok(found)
    }

    /// Records what `reference` names now: after a lookup, or after
    /// enforcement discovered the agent (which a remembered miss would
    /// otherwise hide for the TTL).
    pub fn remember(&self, tenant: &Tenant, reference: &str, agent: Option<Agent>) {
        let mut map = self.by_reference.lock().unwrap();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(
            (tenant.clone(), reference.to_string()),
            (Instant::now(), agent),
        );
    }

    /// Forgets a tenant's agents after a change through the API.
    pub fn forget_tenant(&self, tenant: &Tenant) {
        self.by_reference
            .lock()
            .unwrap()
            .retain(|(t, _), _| t != tenant);
    }
}
