//! `warden backup`: a consistent copy of this data directory's SQLite
//! store, taken while its server runs, for `warden restore`.

use crate::cli::BackupArgs;

pub async fn run(args: BackupArgs) -> Result<(), String> {
    if args.store.database_url.is_some() {
        return Err(
            "`warden backup` copies the embedded SQLite store; with PostgreSQL, use pg_dump \
             (it reads one moment while the replicas run), and keep the master key apart"
                .into(),
        );
    }
    let data_dir = args.store.data_dir.clone();
    let to = args.to.clone();
    let backed_up =
        tokio::task::spawn_blocking(move || warden_store::backup_sqlite(&data_dir, &to))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    let store = args.store.data_dir.join("warden.db");
    let text = if args.json {
        let doc = serde_json::json!({
            "backup": args.to.display().to_string(),
            "store": store.display().to_string(),
            "bytes": backed_up.bytes,
            "audit_records": backed_up.audit_records,
            "events": backed_up.events,
        });
        format!("{doc}\n")
    } else {
        format!(
            "Backed up {} to {} ({} bytes: {} audit records, {} events)\n\
             The master key is not in it: keep {} (or the key given as \
             WARDEN_MASTER_KEY) apart, as a secret; a restore needs it.\n",
            store.display(),
            args.to.display(),
            backed_up.bytes,
            backed_up.audit_records,
            backed_up.events,
            args.store.data_dir.join("master.key").display(),
        )
    };
    super::say(&text, "the backup was written, but its report")
}
