//! The agent registry. A key bound to one agent sees and changes only that
//! agent: others answer as if they did not exist. Registering, changing
//! and deleting an agent through the API is audited in the same
//! transaction: status, tags and names are what policies select.

use serde_json::{json, Map, Value};
use warden_core::agent::{Agent, AgentChanges, AgentFilter, AgentStatus};
use warden_core::audit::{AuditKind, AuditRecord};
use warden_core::page::{Page, PageRequest};
use warden_core::time::{now_ms, to_rfc3339};
use warden_core::Error;
use warden_store::{Companion, Store};

use super::ServiceResult;
use crate::auth::Principal;
use crate::governance::audit_log::AppendError;
use crate::governance::holds::append_error;
use crate::governance::orphan_holds::{deny_orphaned_holds, Orphans};
use crate::governance::Governance;

/// How often an update is retried when another one wins the race.
const UPDATE_ATTEMPTS: usize = 5;

fn visible(principal: &Principal, id: &str) -> bool {
    principal
        .agent_id
        .as_deref()
        .is_none_or(|bound| bound == id)
}

pub async fn create(
    g: &Governance,
    principal: &Principal,
    changes: AgentChanges,
) -> ServiceResult<Agent> {
    if principal.agent_id.is_some() {
        return Err(
            Error::Forbidden("a key bound to an agent cannot register agents".into()).into(),
        );
    }
    let agent = Agent::create(changes, now_ms())?;
    let record = change_record(
        principal,
        &agent,
        "created",
        json!({"agent": shown(&agent)}),
    );
    g.audit
        .append(
            principal.tenant(),
            record,
            Some(Companion::CreateAgent(agent.clone())),
        )
        .await
        .map_err(append_error)?;
    Ok(agent)
}

/// An agent as a change record shows it, times in RFC 3339.
fn shown(agent: &Agent) -> Value {
    json!({
        "id": agent.id,
        "name": agent.name,
        "description": agent.description,
        "owner": agent.owner,
        "framework": agent.framework,
        "external_id": agent.external_id,
        "tags": agent.tags,
        "status": agent.status.as_str(),
        "metadata": agent.metadata,
        "created_at": to_rfc3339(agent.created_at),
        "updated_at": to_rfc3339(agent.updated_at),
    })
}

/// The fields an update changed, each with what it was and is now.
fn changed(before: &Agent, after: &Agent) -> Map<String, Value> {
    let (was, now) = (shown(before), shown(after));
    let mut out = Map::new();
    for field in [
        "name",
        "description",
        "owner",
        "framework",
        "external_id",
        "tags",
        "status",
        "metadata",
    ] {
        // Tags are a set: the same tags in another order are no change.
        let same = match field {
            "tags" => sorted(&was[field]) == sorted(&now[field]),
            _ => was[field] == now[field],
        };
        if !same {
            out.insert(field.into(), json!({"from": was[field], "to": now[field]}));
        }
    }
    out
}

fn sorted(tags: &Value) -> Vec<String> {
    let mut tags: Vec<String> = tags
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.to_string())
        .collect();
    tags.sort();
    tags
}

fn change_record(principal: &Principal, agent: &Agent, change: &str, detail: Value) -> AuditRecord {
    let mut detail = detail;
    detail["change"] = json!(change);
    AuditRecord {
        agent_id: Some(agent.id.clone()),
        reason: Some(format!("agent {change}")),
        detail,
        ..AuditRecord::change(AuditKind::AgentChange, &principal.key_id, now_ms())
    }
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
    g: &Governance,
    principal: &Principal,
    id: &str,
    changes: AgentChanges,
) -> ServiceResult<Agent> {
    // What policies select and conditions read (status, tags, external_id,
    // name) is the security team's to set: an agent that could change it
    // could step out from under a policy aimed at it. Another agent is
    // not found for such a key, whatever the change names.
    if principal.agent_id.is_some() {
        get(&*g.store, principal, id).await?;
        let given = |field: &str| match field {
            "status" => changes.status.is_some(),
            "tags" => changes.tags.is_some(),
            "external_id" => changes.external_id.is_some(),
            "name" => changes.name.is_some(),
            _ => false,
        };
        if let Some(field) = GOVERNED_FIELDS.iter().find(|f| given(f)) {
            return Err(Error::forbidden_field(
                *field,
                format!(
                    "a key bound to an agent cannot change that agent's {field} (policies select and read it)"
                ),
            )
            .into());
        }
    }
    // Read, change, write if nobody wrote in between; else start over.
    for _ in 0..UPDATE_ATTEMPTS {
        let before = get(&*g.store, principal, id).await?;
        let mut agent = before.clone();
        agent.apply(changes.clone(), now_ms())?;
        let fields = changed(&before, &agent);
        if fields.is_empty() {
            // Nothing to record: the agent is as asked.
            return Ok(before);
        }
        let record = change_record(principal, &agent, "updated", json!({"changed": fields}));
        match g
            .audit
            .append(
                principal.tenant(),
                record,
                Some(Companion::UpdateAgent(agent.clone())),
            )
            .await
        {
            Ok(_) => {
                agent.revision += 1;
                // Suspending an agent contains it: no call it left waiting
                // is approved meanwhile.
                if agent.status == AgentStatus::Suspended && before.status != AgentStatus::Suspended
                {
                    deny_orphaned_holds(g, principal, Orphans::OfSuspendedAgent(&agent.id)).await;
                }
                return Ok(agent);
            }
            Err(AppendError::Precondition) => continue,
            Err(e) => return Err(append_error(e)),
        }
    }
    Err(Error::Conflict("the agent kept changing while being updated; retry".into()).into())
}

/// Deletes an agent named by its Warden id or its external id, as it is
/// read and changed.
/// Returns the deleted agent's Warden id (its bound keys were revoked).
pub async fn delete(
    g: &Governance,
    principal: &Principal,
    reference: &str,
) -> ServiceResult<String> {
    if principal.agent_id.is_some() {
        return Err(Error::Forbidden("a key bound to an agent cannot delete agents".into()).into());
    }
    let agent = get(&*g.store, principal, reference).await?;
    let revoked = bound_keys(g.store.as_ref(), principal, &agent.id).await?;
    let ids: Vec<&str> = revoked.iter().map(|k| k.id.as_str()).collect();
    let record = change_record(
        principal,
        &agent,
        "deleted",
        json!({"agent": shown(&agent), "revoked_keys": ids}),
    );
    match g
        .audit
        .append(
            principal.tenant(),
            record,
            Some(Companion::DeleteAgent {
                id: agent.id.clone(),
                at: now_ms(),
            }),
        )
        .await
    {
        Ok(_) => {
            // Each revocation in its own record too, so that a listing of
            // `key_change` records shows it; the deletion's record, in the
            // same commit as the revocations, names them all.
            for key in &revoked {
                let record = super::api_keys::key_record(
                    &principal.key_id,
                    key,
                    "revoked",
                    json!({"cause": "the agent it was bound to was deleted"}),
                );
                if let Err(err) = g.audit.append(principal.tenant(), record, None).await {
                    tracing::warn!(key_id = %key.id, error = ?err,
                        "the revocation of a deleted agent's key has no record of its own");
                }
            }
            let orphans = Orphans::OfAgent(&agent.id);
            deny_orphaned_holds(g, principal, orphans).await;
            Ok(agent.id)
        }
        // Deleted meanwhile by another request, which recorded it.
        Err(AppendError::Precondition) => Err(Error::NotFound("agent").into()),
        Err(e) => Err(append_error(e)),
    }
}

/// What policies select and conditions read of an agent: the security
/// team's to set, and what an approval given before it changed depends on.
pub const GOVERNED_FIELDS: [&str; 4] = ["status", "tags", "external_id", "name"];

/// The keys bound to an agent that are not revoked yet: deleting the
/// agent revokes them, and its record names them.
async fn bound_keys(
    store: &dyn Store,
    principal: &Principal,
    agent_id: &str,
) -> ServiceResult<Vec<warden_core::api_key::ApiKey>> {
    let mut page = PageRequest {
        limit: 200,
        sort: "created_at".into(),
        direction: warden_core::page::Direction::Asc,
        after: None,
    };
    let mut ids = Vec::new();
    loop {
        let found = store
            .list_api_keys(&principal.tenant(), Some(agent_id), &page)
            .await?;
        ids.extend(found.items.into_iter().filter(|k| k.revoked_at.is_none()));
        match found
            .next_cursor
            .as_deref()
            .map(warden_core::page::Cursor::decode)
        {
            Some(Ok(cursor)) => page.after = Some(cursor),
            _ => return Ok(ids),
        }
    }
}
