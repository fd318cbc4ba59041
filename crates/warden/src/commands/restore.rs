//! `warden restore`: put a copy of a SQLite store in place of this data
//! directory's own, then build its search index again from it.

use crate::cli::RestoreArgs;

pub async fn run(args: RestoreArgs) -> Result<(), String> {
    if args.store.database_url.is_some() {
        return Err(
            "`warden restore` restores the embedded SQLite store; with PostgreSQL, \
                    restore with pg_restore while every replica is stopped, then run \
                    `warden reindex` on each replica's data directory"
                .into(),
        );
    }
    let data_dir = args.store.data_dir.clone();
    // The key the restored store will be opened with: a copy set up under
    // another one is refused before anything changes (or is made).
    let master = crate::master_key::load(args.store.master_key.as_deref(), &data_dir, false)
        .map(|(key, _)| key)
        .map_err(|e| {
            let keyless = args.store.master_key.is_none() && !data_dir.join("master.key").exists();
            if keyless {
                format!(
                    "nothing was changed: no master key to open the copy with; give the key \
                     the copy was set up with (--master-key or WARDEN_MASTER_KEY), or put its \
                     master.key file in {}",
                    data_dir.display()
                )
            } else {
                format!("nothing was changed: {e}")
            }
        })?;
    let made_dir = !data_dir.exists();
    warden_store::create_private_dir(&data_dir).map_err(|e| e.to_string())?;
    // No server or other command may have the store open while it is
    // replaced, whatever state its index is in.
    let running = crate::data_dir_lock::hold(&data_dir)?;
    // Held until the index is built again: no server can start on the
    // directory meanwhile, and none may run on it now. One this restore
    // made is taken away again if the copy is refused.
    let index_dir = data_dir.join("index");
    let made_index = !index_dir.exists();
    let index = super::reindex::open_index(&data_dir).inspect_err(|_| {
        if made_dir {
            running.remove_if_empty(&data_dir);
        }
    })?;
    let from = args.from.clone();
    let dir = data_dir.clone();
    let restored = tokio::task::spawn_blocking(move || {
        let check = master.check_value();
        let settings = [(warden_server::services::secrets::KEY_CHECK, check.as_str())];
        warden_store::restore_sqlite(&dir, &from, &settings)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| format!("nothing was changed: {e}")));
    let restored = match restored {
        Ok(restored) => restored,
        Err(refused) => {
            if made_index {
                drop(index);
                let _ = std::fs::remove_dir_all(&index_dir);
            }
            // "Nothing was changed": a directory this restore made goes
            // too (only while empty).
            if made_dir {
                running.remove_if_empty(&data_dir);
            }
            return Err(refused);
        }
    };
    let store = data_dir.join("warden.db");
    let said = format!(
        "Restored {} into {} ({} bytes{})\n",
        args.from.display(),
        store.display(),
        restored.bytes,
        if restored.removed_wal {
            "; the replaced store's WAL was removed"
        } else {
            ""
        }
    );
    if !args.json {
        super::tell(&said);
    }
    let rebuilt = super::reindex::rebuild(index, &args.store)
        .await
        .map_err(|e| {
            format!(
                "{} was restored into {}, but the index could not be rebuilt ({e}): run \
                 `warden reindex` before `warden serve`",
                args.from.display(),
                store.display()
            )
        })?;
    let text = if args.json {
        let doc = serde_json::json!({
            "restored_from": args.from.display().to_string(),
            "store": store.display().to_string(),
            "bytes": restored.bytes,
            "removed_wal": restored.removed_wal,
            "index": rebuilt.json(),
        });
        format!("{doc}\n")
    } else {
        rebuilt.text()
    };
    super::say(
        &text,
        "the store was restored and the index rebuilt, but the report",
    )
}
