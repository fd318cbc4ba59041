//! Creating organizations with their first admin keys: at installation, and
//! later from the host's console.

use warden_core::api_key::ApiKey;
use warden_core::org::{Organization, Plan, RateLimit};
use warden_core::scope::ScopeSet;
use warden_core::secret::{mint_key, KeyPepper};
use warden_core::time::now_ms;
use warden_core::Environment;
use warden_store::Store;

use super::ServiceResult;

/// A new organization and the two admin key secrets, shown once.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub organization: Organization,
    pub live_key: String,
    pub test_key: String,
}

fn admin_keys(pepper: &KeyPepper, org_id: &str) -> (Vec<ApiKey>, String, String) {
    let now = now_ms();
    let mut records = Vec::new();
    let mut secrets = Vec::new();
    for environment in Environment::ALL {
        let secret = mint_key(environment, pepper);
        records.push(ApiKey {
            id: warden_core::id::new_id(warden_core::id::prefix::API_KEY),
            org_id: org_id.to_string(),
            environment,
            name: format!("{environment} admin"),
            last_four: secret.last_four,
            secret_digest: secret.digest,
            previous_digest: None,
            previous_valid_until: None,
            scopes: ScopeSet::admin(),
            agent_id: None,
            allowed_cidrs: vec![],
            expires_at: None,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
            rotated_at: None,
        });
        secrets.push(secret.plaintext);
    }
    let test = secrets.pop().unwrap_or_default();
    let live = secrets.pop().unwrap_or_default();
    (records, live, test)
}

fn tenant(
    pepper: &KeyPepper,
    name: &str,
    plan: Plan,
    custom: Option<RateLimit>,
) -> ServiceResult<(NewTenant, Vec<ApiKey>)> {
    let organization = Organization::new(name, plan, custom)?;
    let (records, live_key, test_key) = admin_keys(pepper, &organization.id);
    Ok((
        NewTenant {
            organization,
            live_key,
            test_key,
        },
        records,
    ))
}

/// Sets up the first organization unless the store already has one;
/// `None` means it was already initialized and nothing changed.
pub async fn initialize(
    store: &dyn Store,
    pepper: &KeyPepper,
    name: &str,
    plan: Plan,
) -> ServiceResult<Option<NewTenant>> {
    let (new, records) = tenant(pepper, name, plan, None)?;
    let created = store.initialize(&new.organization, &records).await?;
    Ok(created.then_some(new))
}

/// A further organization (tenant) with its admin keys.
pub async fn create_organization(
    store: &dyn Store,
    pepper: &KeyPepper,
    name: &str,
    plan: Plan,
    custom: Option<RateLimit>,
) -> ServiceResult<NewTenant> {
    let (new, records) = tenant(pepper, name, plan, custom)?;
    store
        .create_organization(&new.organization, &records)
        .await?;
    Ok(new)
}
