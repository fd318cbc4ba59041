//! Policy changes: each is validated (it must compile), versioned and
//! audited in one transaction, and takes effect on this replica at once.

use serde_json::json;
use warden_core::audit::{AuditKind, AuditRecord};
use warden_core::id::{new_id, prefix};
use warden_core::page::{Page, PageRequest};
use warden_core::policy::{PolicyChanges, PolicyRecord, PolicyVersion, MAX_POLICIES};
use warden_core::time::now_ms;
use warden_core::{Error, Tenant};
use warden_store::Companion;

use super::audit_log::AppendError;
use super::engine::DEFAULT_DECISION;
use super::holds::append_error;
use super::orphan_holds::{deny_orphaned_holds, Orphans};
use super::Governance;
use crate::auth::Principal;
use crate::services::ServiceResult;

const UPDATE_ATTEMPTS: usize = 5;

/// Keys bound to an agent never see or change policies.
pub fn ensure_unbound(principal: &Principal) -> Result<(), Error> {
    if principal.agent_id.is_some() {
        return Err(Error::Forbidden(
            "a key bound to an agent cannot read or change policies".into(),
        ));
    }
    Ok(())
}

fn policy_change_record(principal: &Principal, record: &PolicyRecord, change: &str) -> AuditRecord {
    AuditRecord {
        reason: Some(format!("policy {change}")),
        policy_id: Some(record.id.clone()),
        policy_version: Some(record.version),
        detail: json!({"change": change, "policy": policy_detail(record)}),
        ..change_record(principal, record.updated_at)
    }
}

/// The policy as a change record shows it: its times in RFC 3339, as
/// everywhere else in the API.
fn policy_detail(record: &PolicyRecord) -> serde_json::Value {
    let mut detail = json!(record);
    for field in ["created_at", "updated_at"] {
        if let Some(ms) = detail[field].as_i64() {
            detail[field] = json!(warden_core::time::to_rfc3339(ms));
        }
    }
    detail
}

/// A policy-change record with nothing but who and when filled in.
fn change_record(principal: &Principal, at: i64) -> AuditRecord {
    AuditRecord::change(AuditKind::PolicyChange, &principal.key_id, at)
}

/// Changes the decision given when no policy matches. Like a policy
/// change, it is audited in the same transaction; setting the decision
/// already in force changes nothing and records nothing.
pub async fn set_default_decision(
    g: &Governance,
    principal: &Principal,
    decision: warden_policy::Decision,
) -> ServiceResult<()> {
    ensure_unbound(principal)?;
    let tenant = principal.tenant();
    let stored = g.store.tenant_setting(&tenant, DEFAULT_DECISION).await?;
    let current = g.engine.default_decision(&tenant).await?;
    if current == decision {
        return Ok(());
    }
    let at = now_ms();
    let (from, to) = (current.as_str(), decision.as_str());
    let audit = AuditRecord {
        reason: Some(format!("default decision changed from {from} to {to}")),
        detail: json!({"change": "default_decision", "from": from, "to": to}),
        ..change_record(principal, at)
    };
    let companion = Companion::SetTenantSetting {
        name: DEFAULT_DECISION.into(),
        value: to.into(),
        was: stored,
        at,
    };
    match g.audit.append(tenant.clone(), audit, Some(companion)).await {
        Ok(_) => {}
        // Another request changed it meanwhile, and audited its change:
        // done if it set the same decision, else the caller decides again.
        Err(AppendError::Precondition) => {
            if g.engine.default_decision(&tenant).await? != decision {
                return Err(Error::Conflict(
                    "the default decision changed meanwhile; read it and retry".into(),
                )
                .into());
            }
        }
        Err(e) => return Err(append_error(e)),
    }
    g.engine.load(&tenant).await?;
    // No approval given under the earlier default can be used under this
    // one: its holds are denied, its unused approvals withdrawn.
    deny_orphaned_holds(g, principal, Orphans::OfDefaultDecision).await;
    Ok(())
}

async fn commit(
    g: &Governance,
    principal: &Principal,
    tenant: &Tenant,
    record: &PolicyRecord,
    change: &str,
    companion: Companion,
) -> Result<(), AppendError> {
    let audit = policy_change_record(principal, record, change);
    g.audit
        .append(tenant.clone(), audit, Some(companion))
        .await?;
    // Recompile now so the next decision here sees the change.
    if let Err(e) = g.engine.load(tenant).await {
        tracing::warn!(error = %e, "recompiling policies failed; retried on the next decision");
    }
    Ok(())
}

pub async fn create(
    g: &Governance,
    principal: &Principal,
    changes: PolicyChanges,
) -> ServiceResult<PolicyRecord> {
    ensure_unbound(principal)?;
    let tenant = principal.tenant();
    if g.store.count_policies(&tenant).await? >= MAX_POLICIES as i64 {
        return Err(Error::Unprocessable(format!(
            "at most {MAX_POLICIES} policies per environment"
        ))
        .into());
    }
    let record =
        PolicyRecord::create(changes, new_id(prefix::POLICY), &principal.key_id, now_ms())?;
    commit(
        g,
        principal,
        &tenant,
        &record,
        "created",
        Companion::CreatePolicy(record.clone()),
    )
    .await
    .map_err(append_error)?;
    Ok(record)
}

pub async fn get(g: &Governance, principal: &Principal, id: &str) -> ServiceResult<PolicyRecord> {
    ensure_unbound(principal)?;
    g.store
        .get_policy(&principal.tenant(), id)
        .await?
        .ok_or_else(|| Error::NotFound("policy").into())
}

pub async fn list(
    g: &Governance,
    principal: &Principal,
    enabled: Option<bool>,
    page: PageRequest,
) -> ServiceResult<Page<PolicyRecord>> {
    ensure_unbound(principal)?;
    Ok(g.store
        .list_policies(&principal.tenant(), enabled, &page)
        .await?)
}

pub async fn update(
    g: &Governance,
    principal: &Principal,
    id: &str,
    changes: PolicyChanges,
) -> ServiceResult<PolicyRecord> {
    let tenant = principal.tenant();
    for _ in 0..UPDATE_ATTEMPTS {
        let current = get(g, principal, id).await?;
        let mut record = current.clone();
        record.apply(changes.clone(), &principal.key_id, now_ms())?;
        // A change that changes nothing is no new version and no audit
        // record: the history shows only real changes.
        let unchanged = PolicyRecord {
            version: current.version,
            updated_at: current.updated_at,
            updated_by: current.updated_by.clone(),
            ..record.clone()
        };
        if unchanged == current {
            return Ok(current);
        }
        match commit(
            g,
            principal,
            &tenant,
            &record,
            "updated",
            Companion::UpdatePolicy(record.clone()),
        )
        .await
        {
            Ok(()) => {
                deny_orphaned_holds(g, principal, Orphans::OfChangedPolicy(id, record.version))
                    .await;
                return Ok(record);
            }
            Err(AppendError::Precondition) => continue,
            Err(e) => return Err(append_error(e)),
        }
    }
    Err(Error::Conflict("the policy kept changing while being updated; retry".into()).into())
}

pub async fn delete(g: &Governance, principal: &Principal, id: &str) -> ServiceResult<()> {
    let tenant = principal.tenant();
    for _ in 0..UPDATE_ATTEMPTS {
        let mut record = get(g, principal, id).await?;
        record.version += 1;
        record.updated_at = now_ms();
        record.updated_by = principal.key_id.clone();
        match commit(
            g,
            principal,
            &tenant,
            &record,
            "deleted",
            Companion::DeletePolicy(record.clone()),
        )
        .await
        {
            Ok(()) => {
                let orphans = Orphans::OfPolicy(&record.id);
                deny_orphaned_holds(g, principal, orphans).await;
                return Ok(());
            }
            Err(AppendError::Precondition) => continue,
            Err(e) => return Err(append_error(e)),
        }
    }
    Err(Error::Conflict("the policy kept changing while being deleted; retry".into()).into())
}

pub async fn versions(
    g: &Governance,
    principal: &Principal,
    id: &str,
    page: PageRequest,
) -> ServiceResult<Page<PolicyVersion>> {
    ensure_unbound(principal)?;
    let tenant = principal.tenant();
    let page = g.store.policy_versions(&tenant, id, &page).await?;
    if page.items.is_empty() && page.next_cursor.is_none() {
        // No versions at all: no such policy here (never existed).
        return Err(Error::NotFound("policy").into());
    }
    Ok(page)
}
