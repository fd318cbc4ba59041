//! `warden org create|list`.

use warden_server::services::{bootstrap, secrets};

use crate::cli::{OrgCreateArgs, OrgListArgs};

pub async fn create(args: OrgCreateArgs) -> Result<(), String> {
    let custom = super::custom_limit(args.rate_limit_per_minute, args.burst)?;
    super::check_organization(&args.name, "NAME", super::plan(args.plan), custom)?;
    let opened = crate::store::open(&args.store, crate::store::Opening::Console).await?;
    let store = opened.store.as_ref();
    if !store.is_initialized().await.map_err(|e| e.to_string())? {
        store.close().await;
        return Err("the store is not initialized: run `warden init` first".into());
    }
    secrets::verify_master_key(store, &opened.master).await?;
    let result = bootstrap::create_organization(
        store,
        &opened.master.key_pepper(),
        &args.name,
        super::plan(args.plan),
        custom,
    )
    .await;
    store.close().await;
    let tenant = result.map_err(|e| e.to_string())?;
    super::print_tenant("Created", &tenant, args.json, &args.store)
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
        let list: Vec<_> = orgs
            .iter()
            .map(|o| {
                serde_json::json!({
                    "id": o.id, "name": o.name, "plan": o.plan.as_str(),
                    "rate_limit_per_minute": o.rate_limit.per_minute, "burst": o.rate_limit.burst,
                    "created_at": warden_core::time::to_rfc3339(o.created_at),
                })
            })
            .collect();
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
