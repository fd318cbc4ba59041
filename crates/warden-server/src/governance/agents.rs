//! Agents as the decision path sees them, kept for [`TTL`] so that a call
//! does not read the registry: a change made through this replica's API is
//! seen at once, one made elsewhere within the TTL (as with API keys).

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
    by_reference: Mutex<HashMap<(Tenant, String), (Instant, Agent)>>,
}

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
                return Ok(Some(agent.clone()));
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
        let key = (tenant.clone(), reference.to_string());
        let found = store.find_agent(tenant, reference).await?;
        if let Some(agent) = &found {
            let mut map = self.by_reference.lock().unwrap();
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(key, (Instant::now(), agent.clone()));
        }
        Ok(found)
    }

    /// Forgets a tenant's agents after a change through the API.
    pub fn forget_tenant(&self, tenant: &Tenant) {
        self.by_reference
            .lock()
            .unwrap()
            .retain(|(t, _), _| t != tenant);
    }
}
