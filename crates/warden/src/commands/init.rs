//! `warden init`: the schema, the first organization, its admin keys.

use warden_server::services::bootstrap;
use warden_server::services::secrets;

use crate::cli::InitArgs;

pub async fn run(args: InitArgs) -> Result<(), String> {
    let plan = super::plan(args.plan);
    let custom = super::custom_limit(args.rate_limit_per_minute, args.burst)?;
    super::check_organization(&args.org_name, "--org-name", plan, custom)?;
    let opened = crate::store::open(&args.store, crate::store::Opening::Init).await?;
    let store = opened.store.as_ref();
    if store.is_initialized().await.map_err(|e| e.to_string())? {
        store.close().await;
        return Err("the store is already initialized; nothing was changed \
             (use `warden org create` for another organization)"
            .into());
    }
    secrets::verify_master_key(store, &opened.master).await?;
    let pepper = opened.master.key_pepper();
    let created = bootstrap::initialize(store, &pepper, &args.org_name, plan, custom)
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    let Some(tenant) = created else {
        return Err(
            "the store was initialized by another process meanwhile; nothing was changed".into(),
        );
    };
    super::print_tenant("Initialized", &tenant, args.json, &args.store)
}
