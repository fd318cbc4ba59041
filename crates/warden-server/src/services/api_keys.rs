//! API keys through the API: minted under the grantor's limits, listed
//! without secrets, revoked and rotated. Minting, revoking and rotating
//! are audited in the key's chain, in the same transaction: who may act
//! is as much a security decision as a policy.

use serde_json::{json, Value};
use warden_core::api_key::{authorize_grant, authorize_management, ApiKey, KeyRequest};
use warden_core::audit::{AuditKind, AuditRecord};
use warden_core::page::{Page, PageRequest};
use warden_core::secret::NewKeySecret;
use warden_core::time::{now_ms, to_rfc3339, Millis};
use warden_core::{Error, Tenant};
use warden_store::{Companion, KeyRotation, Store};

use super::ServiceResult;
use crate::auth::{KeyRing, Principal};
use crate::governance::audit_log::{AppendError, AuditLog};
use crate::governance::holds::append_error;

/// A rotation of `existing` to `secret` by `actor`, at `now`: its audit
/// record and what commits with it, the same through the API and at the
/// console. The old secret stays valid `grace_secs` seconds.
pub fn rotation(
    actor: &str,
    existing: &ApiKey,
    secret: &NewKeySecret,
    grace_secs: u32,
    now: Millis,
) -> (AuditRecord, KeyRotation) {
    // No secret of the key outlives the key: a grace period past its
    // expiry ends with it.
    let previous_valid_until = (grace_secs > 0).then(|| {
        let end = now + i64::from(grace_secs) * 1000;
        existing.expires_at.map_or(end, |expiry| end.min(expiry))
    });
    let record = key_record(
        actor,
        existing,
        "rotated",
        json!({
            "grace_period_seconds": grace_secs,
            "previous_valid_until": previous_valid_until.map(to_rfc3339),
        }),
    );
    let rotation = KeyRotation {
        id: existing.id.clone(),
        new_digest: secret.digest.clone(),
        replaces_digest: existing.secret_digest.clone(),
        last_four: secret.last_four.clone(),
        previous_valid_until,
        at: now,
    };
    (record, rotation)
}

/// The audit record of a change to `key` made by `actor` (a key id, or
/// `cli` for the host's console): what the key may do, never its secret.
pub fn key_record(actor: &str, key: &ApiKey, change: &str, extra: Value) -> AuditRecord {
    let mut detail = json!({
        "change": change,
        "key": {
            "id": key.id,
            "name": key.name,
            "environment": key.environment.as_str(),
            "scopes": key.scopes.names(),
            "agent_id": key.agent_id,
            "allowed_cidrs": key.allowed_cidrs.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "expires_at": key.expires_at.map(to_rfc3339),
        },
    });
    if let (Some(detail), Value::Object(extra)) = (detail.as_object_mut(), extra) {
        detail.extend(extra);
    }
    AuditRecord {
        agent_id: key.agent_id.clone(),
        reason: Some(format!("API key {} ({}) {change}", key.id, key.name)),
        detail,
        ..AuditRecord::change(AuditKind::KeyChange, actor, now_ms())
    }
}

/// Longest rotation grace period: a week.
pub const MAX_GRACE_SECS: u32 = 7 * 24 * 3600;

/// A key with its secret, which exists only in this response.
pub struct MintedKey {
    pub key: ApiKey,
    pub secret: String,
}

pub async fn create(
    store: &dyn Store,
    audit: &AuditLog,
    keys: &KeyRing,
    principal: &Principal,
    request: KeyRequest,
) -> ServiceResult<MintedKey> {
    let now = now_ms();
    let mut request = request;
    // A key bound to an agent may name its own agent by its external id.
    if let (Some(bound), Some(reference)) = (&principal.agent_id, &request.agent_id) {
        if reference != bound {
            let found = store.find_agent(&principal.tenant(), reference).await?;
            if found.is_some_and(|agent| &agent.id == bound) {
                request.agent_id = Some(bound.clone());
            }
        }
    }
    let mut grant = authorize_grant(&principal.grantor(), request, now)?;
    let tenant = Tenant {
        org_id: principal.org_id.clone(),
        environment: grant.environment,
    };
    if let Some(reference) = &grant.agent_id {
        // The agent's Warden id or its external id, as enforcement takes
        // it; the key is bound to the Warden id.
        let Some(agent) = store.find_agent(&tenant, reference).await? else {
            return Err(Error::invalid(
                "agent_id",
                format!(
                    // Quoted escaped: the name is the caller's text.
                    "no agent {reference:?} in the {} environment",
                    grant.environment
                ),
            )
            .into());
        };
        grant.agent_id = Some(agent.id);
    }
    let secret = keys.mint(grant.environment);
    let key = ApiKey::issue(&principal.org_id, grant, &secret, now);
    let record = key_record(&principal.key_id, &key, "created", json!({}));
    match audit
        .append(tenant, record, Some(Companion::InsertApiKey(key.clone())))
        .await
    {
        Ok(_) => {}
        // The agent it is bound to was deleted meanwhile.
        Err(AppendError::Precondition) => {
            return Err(Error::invalid(
                "agent_id",
                "the agent was deleted while the key was being minted",
            )
            .into())
        }
        Err(e) => return Err(append_error(e)),
    }
    Ok(MintedKey {
        key,
        secret: secret.plaintext,
    })
}

/// A key of the caller's tenant; a key bound to an agent sees only keys
/// bound to the same agent.
pub async fn get(store: &dyn Store, principal: &Principal, id: &str) -> ServiceResult<ApiKey> {
    store
        .get_api_key(&principal.tenant(), id)
        .await?
        .filter(|k| principal.agent_id.is_none() || k.agent_id == principal.agent_id)
        .ok_or_else(|| Error::NotFound("API key").into())
}

pub async fn list(
    store: &dyn Store,
    principal: &Principal,
    page: PageRequest,
) -> ServiceResult<Page<ApiKey>> {
    Ok(store
        .list_api_keys(&principal.tenant(), principal.agent_id.as_deref(), &page)
        .await?)
}

/// Revokes a key; this replica forgets it at once, the others within a second.
pub async fn revoke(
    store: &dyn Store,
    audit: &AuditLog,
    keys: &KeyRing,
    principal: &Principal,
    id: &str,
) -> ServiceResult<()> {
    let existing = get(store, principal, id).await?;
    authorize_management(&principal.grantor(), &existing)?;
    let already = || Error::Unprocessable("the key is already revoked".into()).into();
    if existing.revoked_at.is_some() {
        return Err(already());
    }
    let record = key_record(&principal.key_id, &existing, "revoked", json!({}));
    let companion = Companion::RevokeApiKey {
        id: existing.id.clone(),
        at: record.at,
    };
    match audit
        .append(principal.tenant(), record, Some(companion))
        .await
    {
        Ok(_) => {}
        // Revoked meanwhile by another request, which recorded it.
        Err(AppendError::Precondition) => return Err(already()),
        Err(e) => return Err(append_error(e)),
    }
    keys.evict(id);
    Ok(())
}

/// Gives a key a new secret; the old one keeps working for `grace_secs`.
pub async fn rotate(
    store: &dyn Store,
    audit: &AuditLog,
    keys: &KeyRing,
    principal: &Principal,
    id: &str,
    grace_secs: u32,
) -> ServiceResult<MintedKey> {
    if grace_secs > MAX_GRACE_SECS {
        return Err(Error::invalid(
            "grace_period_seconds",
            format!("grace_period_seconds must be at most {MAX_GRACE_SECS}"),
        )
        .into());
    }
    let tenant = principal.tenant();
    let existing = get(store, principal, id).await?;
    authorize_management(&principal.grantor(), &existing)?;
    let revoked = || Error::Unprocessable("a revoked key cannot be rotated".into()).into();
    if existing.revoked_at.is_some() {
        return Err(revoked());
    }
    if let Some(expired) = existing.expires_at.filter(|at| *at <= now_ms()) {
        return Err(Error::Unprocessable(format!(
            "the key expired at {} and cannot be rotated (a new secret would never work); \
             create another",
            to_rfc3339(expired)
        ))
        .into());
    }
    let secret = keys.mint(existing.environment);
    let (record, rotation) = rotation(&principal.key_id, &existing, &secret, grace_secs, now_ms());
    match audit
        .append(
            tenant.clone(),
            record,
            Some(Companion::RotateApiKey(rotation)),
        )
        .await
    {
        Ok(_) => {}
        // Revoked or rotated meanwhile by another request.
        Err(AppendError::Precondition) => {
            return match store.get_api_key(&tenant, id).await? {
                Some(k) if k.revoked_at.is_none() => Err(Error::Conflict(
                    "the key was rotated meanwhile by another request, which has its new secret"
                        .into(),
                )
                .into()),
                _ => Err(revoked()),
            }
        }
        Err(e) => return Err(append_error(e)),
    }
    keys.evict(id);
    let key = store
        .get_api_key(&tenant, id)
        .await?
        .ok_or(Error::NotFound("API key"))?;
    Ok(MintedKey {
        key,
        secret: secret.plaintext,
    })
}
