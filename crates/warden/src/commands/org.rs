//! `warden org create|list|update`.

use warden_core::audit::{AuditKind, AuditRecord};
use warden_core::org::{Organization, Plan, RateLimit};
use warden_core::secret::ChainSealer;
use warden_core::time::now_ms;
use warden_core::{Environment, Tenant};
use warden_server::governance::audit_log::{append_alone, AppendError};
use warden_server::services::{bootstrap, secrets, ServiceError};
use warden_store::{Companion, Store, StoreError};

use crate::cli::{OrgCreateArgs, OrgListArgs, OrgUpdateArgs};

/// The actor of changes made at the host's console, in audit records.
const OPERATOR: &str = "cli";

pub async fn create(args: OrgCreateArgs) -> Result<(), String> {
    let custom = super::custom_limit(args.rate_limit_per_minute, args.burst)?;
    super::check_organization(&args.name, "NAME", super::plan(args.plan), custom)?;
    let opened = crate::store::open(&args.store, crate::store::Opening::Console).await?;
    let store = opened.store.as_ref();
    if !store.is_initialized().await.map_err(|e| e.to_string())? {
        store.close().await;
        return Err("the store is not initialized: run `warden init` first".into());
    }
    if let Err(e) = secrets::verify_master_key(store, &opened.master).await {
        store.close().await;
        return Err(e);
    }
    if let Err(e) = name_free(store, &args.name, None).await {
        store.close().await;
        return Err(e);
    }
    let result = bootstrap::create_organization(
        store,
        &opened.master.key_pepper(),
        &args.name,
        super::plan(args.plan),
        custom,
    )
    .await;
    // Taken by a command that ran at the same moment: said as above.
    let result = match result {
        Err(ServiceError::Store(StoreError::Conflict { field })) if field == "name" => {
            Err(name_taken(store, &args.name, None).await)
        }
        other => other.map_err(|e| e.to_string()),
    };
    store.close().await;
    let tenant = result?;
    super::print_tenant("Created", &tenant, args.json, &args.store)
}

/// Why a name the database found taken is: the organization that holds it
/// where the console's comparison finds it, else the database's own
/// folding of case (PostgreSQL's reaches letters Rust's leaves apart).
async fn name_taken(store: &dyn Store, name: &str, except: Option<&str>) -> String {
    match name_free(store, name, except).await {
        Err(said) => said,
        Ok(()) => format!(
            "an organization's name is `{}` but for case, as the database compares names: give \
             another name",
            name.trim_matches(' ')
        ),
    }
}

/// Two organizations of one name (case aside) would read as one in every
/// listing: a name is taken once. `except` is the organization renamed.
async fn name_free(store: &dyn Store, name: &str, except: Option<&str>) -> Result<(), String> {
    let wanted = name.trim_matches(' ').to_lowercase();
    let orgs = store
        .list_organizations()
        .await
        .map_err(|e| e.to_string())?;
    match orgs
        .iter()
        .find(|o| Some(o.id.as_str()) != except && o.name.to_lowercase() == wanted)
    {
        Some(o) => Err(format!(
            "an organization named `{}` exists ({}): give another name",
            o.name, o.id
        )),
        None => Ok(()),
    }
}

fn describe(o: &Organization) -> serde_json::Value {
    serde_json::json!({
        "id": o.id, "name": o.name, "plan": o.plan.as_str(),
        "rate_limit_per_minute": o.rate_limit.per_minute, "burst": o.rate_limit.burst,
        "created_at": warden_core::time::to_rfc3339(o.created_at),
    })
}

/// The organization as the flags change it; the limits a custom plan
/// keeps when none are given.
fn changed(now: &Organization, args: &OrgUpdateArgs) -> Result<Organization, String> {
    let plan = args.plan.map(super::plan).unwrap_or(now.plan);
    let mut custom = super::custom_limit(args.rate_limit_per_minute, args.burst)?;
    if custom.is_none() && plan == Plan::Custom && now.plan == Plan::Custom {
        custom = Some(now.rate_limit);
    }
    let name = args.name.as_deref().unwrap_or(&now.name);
    let made = super::check_organization(name, "--name", plan, custom)?;
    Ok(Organization {
        id: now.id.clone(),
        created_at: now.created_at,
        ..made
    })
}

fn shown(o: &Organization) -> String {
    let RateLimit { per_minute, burst } = o.rate_limit;
    format!(
        "\"{}\", plan {} ({per_minute}/min, burst {burst})",
        o.name,
        o.plan.as_str()
    )
}

/// The flags name at least one change: the argument parser makes sure.
pub async fn update(args: OrgUpdateArgs) -> Result<(), String> {
    let opened = crate::store::open(&args.store, crate::store::Opening::Console).await?;
    let store = opened.store.as_ref();
    // The change's record is sealed with the master key: another key's
    // seal would be a break.
    let result = match secrets::verify_master_key(store, &opened.master).await {
        Ok(()) => apply_update(store, &args, &opened.master.chain_sealer()).await,
        Err(e) => Err(e),
    };
    store.close().await;
    let (org, was) = result?;
    let text = if args.json {
        let mut doc = describe(&org);
        doc["changed"] = serde_json::Value::Bool(org != was);
        format!("{doc}\n")
    } else if org == was {
        format!("Organization {} is unchanged: {}\n", org.id, shown(&org))
    } else {
        format!(
            "Updated organization {}: {}; running servers apply it within one second.\n",
            org.id,
            shown(&org)
        )
    };
    super::say(
        &text,
        &format!("organization {} was updated, but its confirmation", org.id),
    )
}

/// Tries of a change whose organization another command changed between
/// the read and the write.
const UPDATE_TRIES: usize = 5;

/// Writes the change with its audit record, in the organization's live
/// chain: a plan is what bounds every one of its keys. The change is
/// made on the organization as stored when it commits: one changed
/// meanwhile (another `org update`) is read again and the flags applied
/// to it, so that neither change is lost.
async fn apply_update(
    store: &dyn Store,
    args: &OrgUpdateArgs,
    sealer: &ChainSealer,
) -> Result<(Organization, Organization), String> {
    let gone = || format!("no organization `{}`", args.org_id);
    for _ in 0..UPDATE_TRIES {
        let was = store
            .get_organization(&args.org_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(gone)?;
        let org = changed(&was, args)?;
        if org == was {
            return Ok((org, was));
        }
        if org.name.to_lowercase() != was.name.to_lowercase() {
            name_free(store, &org.name, Some(&org.id)).await?;
        }
        match record_update(store, &was, &org, sealer).await {
            Ok(()) => return Ok((org, was)),
            // Changed meanwhile, or its new name taken: read again, and if
            // it is as it was, the name is what stood in the way.
            Err(AppendError::Precondition) => {
                let now = store
                    .get_organization(&args.org_id)
                    .await
                    .map_err(|e| e.to_string())?;
                if now.as_ref() == Some(&was) {
                    return Err(name_taken(store, &org.name, Some(&org.id)).await);
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "organization `{}` kept changing while this change was written; nothing was changed: \
         run the command again",
        args.org_id
    ))
}

async fn record_update(
    store: &dyn Store,
    was: &Organization,
    org: &Organization,
    sealer: &ChainSealer,
) -> Result<(), AppendError> {
    let record = AuditRecord {
        reason: Some(format!(
            "organization {} changed from {} to {}",
            org.id,
            shown(was),
            shown(org)
        )),
        detail: serde_json::json!({
            "change": "organization",
            "from": describe(was),
            "to": describe(org),
        }),
        ..AuditRecord::change(AuditKind::SettingChange, OPERATOR, now_ms())
    };
    let tenant = Tenant {
        org_id: org.id.clone(),
        environment: Environment::Live,
    };
    let companion = Companion::UpdateOrganization {
        was: was.clone(),
        now: org.clone(),
    };
    append_alone(store, &tenant, &record, Some(companion), sealer)
        .await
        .map(|_| ())
}

pub async fn list(args: OrgListArgs) -> Result<(), String> {
    let opened = crate::store::open(&args.store, crate::store::Opening::Console).await?;
    let orgs = opened
        .store
        .list_organizations()
        .await
        .map_err(|e| e.to_string());
    opened.store.close().await;
    let orgs = orgs?;
    let text = if args.json {
        let list: Vec<_> = orgs.iter().map(describe).collect();
        format!("{}\n", serde_json::Value::Array(list))
    } else {
        orgs.iter()
            .map(|o| {
                format!(
                    "{}  {}  {} ({}/min, burst {})\n",
                    o.id,
                    o.name,
                    o.plan.as_str(),
                    o.rate_limit.per_minute,
                    o.rate_limit.burst
                )
            })
            .collect()
    };
    super::say(&text, "")
}
