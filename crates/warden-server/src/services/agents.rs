//! The agent registry. A key bound to one agent sees and changes only that
//! agent: others answer as if they did not exist.

use warden_core::agent::{Agent, AgentChanges, AgentFilter};
use warden_core::page::{Page, PageRequest};
use warden_core::time::now_ms;
use warden_core::Error;
use warden_store::Store;

use super::ServiceResult;
use crate::auth::Principal;

fn visible(principal: &Principal, id: &str) -> bool {
    principal
        .agent_id
        .as_deref()
        .is_none_or(|bound| bound == id)
}

pub async fn create(
    store: &dyn Store,
    principal: &Principal,
    changes: AgentChanges,
) -> ServiceResult<Agent> {
    if principal.agent_id.is_some() {
        return Err(
            Error::Forbidden("a key bound to an agent cannot register agents".into()).into(),
        );
    }
    let agent = Agent::create(changes, now_ms())?;
    store.insert_agent(&principal.tenant(), &agent).await?;
    Ok(agent)
}

pub async fn get(store: &dyn Store, principal: &Principal, id: &str) -> ServiceResult<Agent> {
    if !visible(principal, id) {
        return Err(Error::NotFound("agent").into());
    }
    store
        .get_agent(&principal.tenant(), id)
        .await?
        .ok_or_else(|| Error::NotFound("agent").into())
}

pub async fn list(
    store: &dyn Store,
    principal: &Principal,
    mut filter: AgentFilter,
    page: PageRequest,
) -> ServiceResult<Page<Agent>> {
    filter.only_id = principal.agent_id.clone();
    Ok(store
        .list_agents(&principal.tenant(), &filter, &page)
        .await?)
}

pub async fn update(
    store: &dyn Store,
    principal: &Principal,
    id: &str,
    changes: AgentChanges,
) -> ServiceResult<Agent> {
    let mut agent = get(store, principal, id).await?;
    agent.apply(changes, now_ms())?;
    if !store.update_agent(&principal.tenant(), &agent).await? {
        return Err(Error::NotFound("agent").into());
    }
    Ok(agent)
}

pub async fn delete(store: &dyn Store, principal: &Principal, id: &str) -> ServiceResult<()> {
    if !visible(principal, id) || !store.delete_agent(&principal.tenant(), id).await? {
        return Err(Error::NotFound("agent").into());
    }
    Ok(())
}
