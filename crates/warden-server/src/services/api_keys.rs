//! API keys through the API: minted under the grantor's limits, listed
//! without secrets, revoked and rotated.

use warden_core::api_key::{authorize_grant, authorize_management, ApiKey, KeyRequest};
use warden_core::page::{Page, PageRequest};
use warden_core::time::{now_ms, Millis};
use warden_core::{Error, Tenant};
use warden_store::Store;

use super::ServiceResult;
use crate::auth::{KeyRing, Principal};

/// Longest rotation grace period: a week.
pub const MAX_GRACE_SECS: u32 = 7 * 24 * 3600;

/// A key with its secret, which exists only in this response.
pub struct MintedKey {
    pub key: ApiKey,
    pub secret: String,
}

pub async fn create(
    store: &dyn Store,
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
                    "no agent `{reference}` in the {} environment",
                    grant.environment
                ),
            )
            .into());
        };
        grant.agent_id = Some(agent.id);
    }
    let secret = keys.mint(grant.environment);
    let key = ApiKey::issue(&principal.org_id, grant, &secret, now);
    store.insert_api_key(&key).await?;
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
    keys: &KeyRing,
    principal: &Principal,
    id: &str,
) -> ServiceResult<()> {
    let existing = get(store, principal, id).await?;
    authorize_management(&principal.grantor(), &existing)?;
    if existing.revoked_at.is_some()
        || !store
            .revoke_api_key(&principal.tenant(), id, now_ms())
            .await?
    {
        return Err(Error::Unprocessable("the key is already revoked".into()).into());
    }
    keys.evict(id);
    Ok(())
}

/// Gives a key a new secret; the old one keeps working for `grace_secs`.
pub async fn rotate(
    store: &dyn Store,
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
    if existing.revoked_at.is_some() {
        return Err(Error::Unprocessable("a revoked key cannot be rotated".into()).into());
    }
    let now = now_ms();
    let previous_valid_until: Option<Millis> =
        (grace_secs > 0).then(|| now + i64::from(grace_secs) * 1000);
    let secret = keys.mint(existing.environment);
    let key = store
        .rotate_api_key(
            &tenant,
            id,
            &secret.digest,
            &secret.last_four,
            previous_valid_until,
            now,
        )
        .await?
        .ok_or(Error::NotFound("API key"))?;
    keys.evict(id);
    Ok(MintedKey {
        key,
        secret: secret.plaintext,
    })
}
