//! The agent registry. A key bound to one agent sees and changes only that
//! agent: others answer as if they did not exist.

use warden_core::agent::{Agent, AgentChanges, AgentFilter};
use warden_core::page::{Page, PageRequest};
use warden_core::time::now_ms;
use warden_core::Error;
use warden_store::Store;

use super::ServiceResult;
use crate::auth::Principal;

/// How often an update is retried when another one wins the race.
const UPDATE_ATTEMPTS: usize = 5;

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

/// An agent by its Warden id or its `external_id`, as enforcement names it.
pub async fn get(
    store: &dyn Store,
    principal: &Principal,
    reference: &str,
) -> ServiceResult<Agent> {
    let agent = store
        .find_agent(&principal.tenant(), reference)
        .await?
        .ok_or(Error::NotFound("agent"))?;
    if !visible(principal, &agent.id) {
        return Err(Error::NotFound("agent").into());
    }
    Ok(agent)
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
    // What policies select and conditions read (status, tags, external_id,
    // name) is the security team's to set: an agent that could change it
    // could step out from under a policy aimed at it.
    if principal.agent_id.is_some() {
        let governed = [
            ("status", changes.status.is_some()),
            ("tags", changes.tags.is_some()),
            ("external_id", changes.external_id.is_some()),
            ("name", changes.name.is_some()),
        ];
        if let Some((field, _)) = governed.iter().find(|(_, given)| *given) {
            return Err(Error::Forbidden(format!(
                "a key bound to an agent cannot change that agent's {field} (policies select and read it)"
            ))
            .into());
        }
    }
    // Read, change, write if nobody wrote in between; else start over.
    for _ in 0..UPDATE_ATTEMPTS {
        let mut agent = get(store, principal, id).await?;
        agent.apply(changes.clone(), now_ms())?;
        if store.update_agent(&principal.tenant(), &agent).await? {
            agent.revision += 1;
            return Ok(agent);
        }
    }
    Err(Error::Conflict("the agent kept changing while being updated; retry".into()).into())
}

/// Deletes an agent named by its Warden id or its external id, as it is
/// read and changed.
pub async fn delete(
    store: &dyn Store,
    principal: &Principal,
    reference: &str,
) -> ServiceResult<()> {
    if principal.agent_id.is_some() {
        return Err(Error::Forbidden("a key bound to an agent cannot delete agents".into()).into());
    }
    let agent = get(store, principal, reference).await?;
    if !store.delete_agent(&principal.tenant(), &agent.id).await? {
        return Err(Error::NotFound("agent").into());
    }
    Ok(())
}
