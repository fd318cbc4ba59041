//! Seals for audit records stored before seals were: given at start-up,
//! before the server answers, once per store. A mark made with the key
//! then says the store is sealed, and from then on a record without a
//! seal is left for verify to name: sealing it would vouch for whatever
//! a writer of the database put there.

use std::str::FromStr;

use warden_core::secret::{digests_match, ChainSealer};
use warden_core::Environment;
use warden_store::{Store, UnsealedRecord};

/// Records sealed in one transaction.
const BATCH: i64 = 2_000;

/// What no seal can vouch for: given to a record whose chain or place no
/// longer reads as one (edited in the database), so that it is not found
/// again; verify names it.
const UNSEALABLE: &str = "";

/// The server setting that holds the sealed store's mark.
const SEALED_MARK: &str = "audit_seals";

/// Seals the records of a store that was never sealed (of a release
/// before seals, or a copy of one restored), then marks it sealed;
/// answers how many it sealed. A record already tampered with is sealed
/// as it stands: its hash still fails to match its content, which verify
/// names as before. A store marked sealed, or whose mark was removed
/// while some of its records carry seals, has nothing sealed.
pub async fn seal_stored_records(store: &dyn Store, sealer: &ChainSealer) -> Result<u64, String> {
    let failed = |e: warden_store::StoreError| format!("cannot seal the audit records: {e}");
    let mark = sealer.sealed_store_mark();
    let marked = store.server_setting(SEALED_MARK).await.map_err(failed)?;
    if marked.as_deref().is_some_and(|m| digests_match(m, &mark)) {
        return Ok(0);
    }
    let unsealed = !store.unsealed_audit(1).await.map_err(failed)?.is_empty();
    if unsealed && store.any_sealed_audit().await.map_err(failed)? {
        tracing::error!(
            "audit records without a seal stand beside sealed ones, and the store's mark of \
             being sealed is gone or not this master key's: they are not sealed; \
             GET /api/v1/audit/verify names them"
        );
        return Ok(0);
    }
    let sealed = seal_all(store, sealer).await?;
    store
        .server_setting_or_insert(SEALED_MARK, &mark)
        .await
        .map_err(failed)?;
    Ok(sealed)
}

async fn seal_all(store: &dyn Store, sealer: &ChainSealer) -> Result<u64, String> {
    let mut sealed = 0u64;
    // The first record of the last batch, when none of it could be sealed.
    let mut stuck: Option<String> = None;
    loop {
        let unsealed = store
            .unsealed_audit(BATCH)
            .await
            .map_err(|e| format!("cannot read the audit records to seal: {e}"))?;
        if unsealed.is_empty() {
            break;
        }
        let seals: Vec<(String, String)> = unsealed
            .iter()
            .map(|r| (r.id.clone(), seal_of(sealer, r)))
            .collect();
        let stored = store
            .seal_audit(&seals)
            .await
            .map_err(|e| format!("cannot seal the audit records: {e}"))?;
        // Records another replica sealed meanwhile are counted by it, and
        // the next batch is another; the same batch again, of which none
        // could be sealed (an id edited to another type), would be found
        // forever: those are left for verify to name.
        if stored == 0 {
            let first = unsealed.first().map(|r| r.id.clone());
            if stuck.is_some() && stuck == first {
                tracing::warn!(
                    records = unsealed.len(),
                    "audit records without a seal cannot be sealed (edited in the database); \
                     GET /api/v1/audit/verify names where the chain breaks"
                );
                break;
            }
            stuck = first;
            continue;
        }
        stuck = None;
        sealed += stored;
        if sealed >= 100_000 && sealed % 100_000 < stored {
            tracing::info!(sealed, "sealing audit records stored before seals");
        }
    }
    if sealed > 0 {
        tracing::info!(sealed, "sealed audit records stored before seals");
    }
    Ok(sealed)
}

fn seal_of(sealer: &ChainSealer, r: &UnsealedRecord) -> String {
    match Environment::from_str(&r.environment) {
        Ok(environment) if r.sequence != i64::MAX => {
            sealer.seal(&r.org_id, environment, r.sequence, &r.hash)
        }
        _ => UNSEALABLE.to_string(),
    }
}
