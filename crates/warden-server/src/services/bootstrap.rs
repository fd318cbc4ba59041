//! Creating organizations with their first admin keys: at installation, and
//! later from the host's console.

use warden_core::api_key::{ApiKey, KeyGrant};
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
        let grant = KeyGrant {
            name: format!("{environment} admin"),
            scopes: ScopeSet::admin(),
            environment,
            expires_at: None,
            allowed_cidrs: vec![],
            agent_id: None,
        };
        records.push(ApiKey::issue(org_id, grant, &secret, now));
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
    custom: Option<RateLimit>,
) -> ServiceResult<Option<NewTenant>> {
    let (new, records) = tenant(pepper, name, plan, custom)?;
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
