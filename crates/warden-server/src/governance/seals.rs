//! Seals for audit records stored before seals were, and the store's
//! mark of being sealed. Only the operator's `warden audit seal` seals
//! such records, once, right after an upgrade: a start never does, since
//! a store can be made to look like one from before seals (every seal and
//! the mark removed in the database), and sealing it would vouch for
//! whatever a writer of the database put there. The mark (made with the
//! key), and an unsealed record written after the schema began to seal,
//! make the command refuse.

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

/// How far past the seal migration's time an unsealed record may have been
/// written: the clocks of replicas of the earlier release may run ahead of
/// the migrating host's.
const CLOCK_SKEW_MS: i64 = 60_000;

/// The server setting that holds the sealed store's mark.
const SEALED_MARK: &str = "audit_seals";

/// What a start finds of the store's seals, for the log: a store with no
/// record unsealed is marked sealed (which only adds protection); one with
/// unsealed records is told of, never sealed here.
pub async fn check_at_start(store: &dyn Store, sealer: &ChainSealer) -> Result<(), String> {
    let failed = |e: warden_store::StoreError| format!("cannot read the audit records' seals: {e}");
    if store.unsealed_audit(1).await.map_err(failed)?.is_empty() {
        store
            .server_setting_or_insert(SEALED_MARK, &sealer.sealed_store_mark())
            .await
            .map_err(failed)?;
        return Ok(());
    }
    match why_not_sealable(store, sealer).await? {
        None => tracing::warn!(
            "audit records carry no seal: GET /api/v1/audit/verify names the first, and what is \
             derived from records leaves them out. If this store was just upgraded from a \
             release before seals, run `warden audit seal` once; if it ever had seals, they \
             were removed in the database: do not seal it, compare its chains' heads with \
             anchors copied out earlier"
        ),
        Some(refusal) => tracing::error!("audit records carry no seal: {}", refusal.why()),
    }
    Ok(())
}

/// Seals the records of a store that was never sealed (of a release
/// before seals, or a copy of one restored), then marks it sealed;
/// answers how many it sealed. A record already tampered with is sealed
/// as it stands: its hash still fails to match its content, which verify
/// names as before. A store marked sealed is refused: its seals were
/// removed since; so is one with a record unsealed that was written
/// after its schema began to seal. Records a server sealed meanwhile (it
/// ran before the command) stand beside them as in any upgrade, and a
/// run stopped midway is run again.
pub async fn seal_unsealed_store(store: &dyn Store, sealer: &ChainSealer) -> Result<u64, String> {
    let failed = |e: warden_store::StoreError| format!("cannot seal the audit records: {e}");
    if !store.unsealed_audit(1).await.map_err(failed)?.is_empty() {
        if let Some(refusal) = why_not_sealable(store, sealer).await? {
            return Err(format!("nothing was sealed: {}", refusal.why()));
        }
    }
    let sealed = seal_all(store, sealer).await?;
    store
        .server_setting_or_insert(SEALED_MARK, &sealer.sealed_store_mark())
        .await
        .map_err(failed)?;
    Ok(sealed)
}

/// Why a store's unsealed records must not be sealed.
enum Unsealable {
    /// The store is marked sealed.
    Marked,
    /// Some were written after the schema began to seal records.
    WrittenSince(i64),
    /// When the schema began to seal, or when they were written, cannot be
    /// read (the migration's row or a record's time edited).
    Unknown,
}

impl Unsealable {
    fn why(&self) -> String {
        let verify = "GET /api/v1/audit/verify names them";
        match self {
            Unsealable::Marked => format!(
                "the store was sealed before, so their seals were removed in the database \
                 since; {verify}"
            ),
            Unsealable::WrittenSince(since) => format!(
                "some were written after this store's schema began to seal records (at {}), so \
                 their seals were removed in the database since; {verify}",
                warden_core::time::to_rfc3339(*since)
            ),
            Unsealable::Unknown => format!(
                "when this store's schema began to seal records, or when they were written, \
                 cannot be read (edited in the database); {verify}"
            ),
        }
    }
}

/// Why a store's unsealed records must not be sealed, if they must not.
async fn why_not_sealable(
    store: &dyn Store,
    sealer: &ChainSealer,
) -> Result<Option<Unsealable>, String> {
    let failed = |e: warden_store::StoreError| format!("cannot read the audit records' seals: {e}");
    let marked = store.server_setting(SEALED_MARK).await.map_err(failed)?;
    if marked.is_some_and(|m| digests_match(&m, &sealer.sealed_store_mark())) {
        return Ok(Some(Unsealable::Marked));
    }
    // A time that cannot be read refuses, as a record newer than the
    // migration does; records up to a minute past it are taken as the
    // clocks of the last older replicas, not as tampering.
    let times = store.audit_seal_times().await;
    Ok(match times {
        Ok((Some(since), Some(newest))) if newest < since.saturating_add(CLOCK_SKEW_MS) => None,
        Ok((Some(since), Some(_))) => Some(Unsealable::WrittenSince(since)),
        Ok(_) | Err(warden_store::StoreError::Corrupt(_)) => Some(Unsealable::Unknown),
        Err(e) => return Err(failed(e)),
    })
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
