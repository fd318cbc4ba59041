//! `warden audit seal`: the one sealing of a store made by a release
//! before seals, asked for by the operator who upgraded it. It is never
//! done on its own: a store made to look like one from before seals
//! (every seal and the store's mark removed in the database) would have
//! whatever a writer of the database put there sealed.

use warden_core::{Environment, Tenant};
use warden_server::governance::seals;
use warden_server::services::secrets;

use crate::cli::AuditSealArgs;

pub async fn seal(args: AuditSealArgs) -> Result<(), String> {
    // Run as the upgrade, with the servers stopped: a store of the
    // release before is migrated here, so that no server writes sealed
    // records (or learns drift without the older ones) before it is sealed.
    // The embedded store's server must be stopped (its data directory's
    // lock); a replica of either release may run on PostgreSQL, whose
    // schema refuses an older replica's unsealed records once migrated.
    crate::store::examine(&args.store, crate::store::Opening::Maintenance).await?;
    let _stopped = match args.store.database_url {
        None => Some(crate::data_dir_lock::hold(&args.store.data_dir)?),
        Some(_) => None,
    };
    let opened = crate::store::open(&args.store, crate::store::Opening::Maintenance).await?;
    let store = opened.store.as_ref();
    let result = async {
        secrets::verify_master_key(store, &opened.master).await?;
        let sealed = seals::seal_unsealed_store(store, &opened.master.chain_sealer()).await?;
        Ok::<_, String>((sealed, heads(store).await?))
    }
    .await;
    store.close().await;
    let (sealed, chains) = result?;
    let text = if args.json {
        format!(
            "{}\n",
            serde_json::json!({ "sealed": sealed, "chains": chains })
        )
    } else {
        let mut text = if sealed == 0 {
            "No audit record was without a seal; the store is marked sealed.\n".to_string()
        } else {
            format!("Sealed {sealed} audit records; the store is marked sealed.\n")
        };
        if chains.is_empty() {
            text.push_str("The store holds no audit record yet: no chain to compare.\n");
        } else {
            text.push_str("Compare each chain's head with a copy kept elsewhere (an anchor):\n");
        }
        for c in &chains {
            text.push_str(&format!(
                "  {} {}: head_sequence {} head_hash {}\n",
                c["organization_id"].as_str().unwrap_or_default(),
                c["environment"].as_str().unwrap_or_default(),
                c["head_sequence"],
                c["head_hash"].as_str().unwrap_or_default()
            ));
        }
        text
    };
    super::say(&text, "the records were sealed, but the report")
}

/// Every chain's head as sealed: what the operator compares with anchors
/// copied out before, since what was sealed is what stood in the store.
async fn heads(store: &dyn warden_store::Store) -> Result<Vec<serde_json::Value>, String> {
    let mut chains = Vec::new();
    for org in store
        .list_organizations()
        .await
        .map_err(|e| e.to_string())?
    {
        for environment in [Environment::Live, Environment::Test] {
            let tenant = Tenant {
                org_id: org.id.clone(),
                environment,
            };
            let (sequence, hash) = store.audit_head(&tenant).await.map_err(|e| e.to_string())?;
            if sequence > 0 {
                chains.push(serde_json::json!({
                    "organization_id": org.id,
                    "environment": environment.as_str(),
                    "head_sequence": sequence,
                    "head_hash": hash,
                }));
            }
        }
    }
    Ok(chains)
}
