//! Re-walks a tenant's audit chain from its first record (or from an
//! anchor), a page at a time.

use warden_core::audit::ChainedRecord;
use warden_core::audit_chain::{ChainWalk, StoredLink};
use warden_core::secret::{digests_match, ChainSealer};
use warden_core::Tenant;
use warden_store::{IndexedColumns, Store, StoreError};

use crate::heavy_work::off_workers_async;

/// A record as the walk reads it: its chained text and its filter columns.
type StoredRecord = (ChainedRecord, IndexedColumns);

/// Most records a page reads, and the bytes of record text a page aims
/// at: a record can be near a megabyte (a call's arguments), so pages
/// shrink to what the records walked so far weigh.
const MAX_PAGE: i64 = 500;
const PAGE_BYTES: usize = 8 << 20;
const FIRST_PAGE: i64 = 64;

/// The first record that does not match, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Break {
    pub sequence: i64,
    /// None where no record stands at the break (records missing at the end).
    pub audit_id: Option<String>,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    pub records_checked: i64,
    pub head_sequence: i64,
    /// The head's hash, where the chain is whole: a copy kept elsewhere
    /// is an anchor a later verification can be asked to check.
    pub head_hash: Option<String>,
    pub first_break: Option<Break>,
}

/// A record's sequence and hash as copied out of Warden earlier.
pub struct Anchor {
    pub sequence: i64,
    pub hash: String,
}

/// Rounds of catching up with records appended during the walk before
/// the answer says the chain is still growing too fast to finish.
const MAX_ROUNDS: usize = 1_000;

/// Walks the chain to its end, then reads the head: while records were
/// appended meanwhile (the head moves in their transaction, so the head
/// read after a page covers every record of that page), it walks on from
/// where it stopped. A head behind the walk, or a head the log cannot
/// reach, is a break; a chain that keeps growing is never one.
///
/// From an anchor (`from`), the walk starts at the anchor's record, which
/// must hold the anchor's hash, and counts only the records from there.
pub async fn verify(
    store: &dyn Store,
    tenant: &Tenant,
    from: Option<&Anchor>,
    sealer: &ChainSealer,
) -> Result<Verification, StoreError> {
    let mut walk = ChainWalk::default();
    // Records before the walk's start: not counted as checked.
    let before = from.map_or(0, |a| (a.sequence - 1).max(0) as u64);
    // The id of the last record walked: the head must match it.
    let mut last_id = None;
    let mut page = FIRST_PAGE;
    let broken = |passed: u64, head_sequence, sequence, audit_id, reason| Verification {
        records_checked: passed.saturating_sub(before) as i64,
        head_sequence,
        head_hash: None,
        first_break: Some(Break {
            sequence,
            audit_id,
            reason,
        }),
    };
    if let Some(anchor) = from {
        let at = anchor_record(store, tenant, anchor).await?;
        match at {
            Ok((r, _)) => {
                // The anchor's record is checked against its own hash
                // below, as any other; its link to the one before is the
                // anchor's to vouch for.
                walk = ChainWalk::after(before, &r.previous_hash);
            }
            Err((reason, audit_id)) => {
                let head = store.audit_head(tenant).await?.0;
                return Ok(broken(0, head, anchor.sequence, audit_id, reason));
            }
        }
    }
    // A record numbered before the chain's first (0 or below) lies
    // outside the walk, yet is listed and served like any other: it is a
    // break of its own, named before anything else (before an anchor,
    // it was named when the anchor was taken).
    if let Some((r, columns)) = store
        .audit_chain_after(tenant, i64::MIN, 1)
        .await?
        .into_iter()
        .find(|(r, _)| r.sequence < 1)
        .filter(|_| from.is_none())
    {
        let head = store.audit_head(tenant).await?.0;
        return Ok(broken(
            0,
            head,
            r.sequence,
            Some(columns.id),
            "a record is numbered before the chain's first (sequence 1)",
        ));
    }
    for _ in 0..MAX_ROUNDS {
        tokio::task::yield_now().await;
        // To the end of what is committed now.
        loop {
            // A page is read (the embedded store reads on the calling
            // thread) and hashed off the request workers, in one hand-off:
            // pages of large records take tens of milliseconds, and several
            // walks at once would otherwise hold every worker.
            let (done, first_break) = off_workers_async(async {
                let rows = store
                    .audit_chain_after(tenant, walk.checked() as i64, page)
                    .await?;
                let done = (rows.len() as i64) < page;
                let bytes: usize = rows.iter().map(|(r, _)| r.canonical.len()).sum();
                let per_record = (bytes / rows.len().max(1)).max(1);
                page = ((PAGE_BYTES / per_record) as i64).clamp(1, MAX_PAGE);
                for (r, columns) in rows {
                    let link = StoredLink {
                        sequence: r.sequence.max(0) as u64,
                        previous_hash: &r.previous_hash,
                        hash: &r.hash,
                        canonical: r.canonical.as_bytes(),
                    };
                    // Records that passed every check before this one.
                    let (reason, passed) = match walk.check(link) {
                        Err(broken) => (Some(broken.reason), walk.checked()),
                        // Its content matches its hash: a seal says the
                        // hash was made by a holder of the master key,
                        // not by whoever rewrote the record in the
                        // database and recomputed it.
                        Ok(()) => match seal_break(sealer, tenant, &r) {
                            Some(reason) => (Some(reason), walk.checked() - 1),
                            None if !columns.agree_with(&r.record) => (
                                Some("its indexed columns differ from the hashed record"),
                                walk.checked() - 1,
                            ),
                            None => (None, walk.checked()),
                        },
                    };
                    if let Some(reason) = reason {
                        return Ok((done, Some((passed, r.sequence, columns.id, reason))));
                    }
                    last_id = Some(columns.id);
                }
                Ok::<_, StoreError>((done, None))
            })
            .await?;
            if let Some((passed, sequence, audit_id, reason)) = first_break {
                let (head_sequence, _) = store.audit_head(tenant).await?;
                return Ok(broken(
                    passed,
                    head_sequence,
                    sequence,
                    Some(audit_id),
                    reason,
                ));
            }
            if done {
                break;
            }
            // The embedded store reads on the calling thread, so a walk
            // never waits and would keep its request worker (and the
            // requests queued behind it, any organization's) until its end:
            // it gives way after each page.
            tokio::task::yield_now().await;
        }
        let last = walk.checked() as i64;
        let (head_sequence, head_hash) = store.audit_head(tenant).await?;
        if last > head_sequence {
            // Records past the head were never appended through the chain.
            let first_past = store.audit_chain_after(tenant, head_sequence, 1).await?;
            // Those past the head did not pass: they are the break.
            return Ok(broken(
                walk.checked().min(head_sequence.max(0) as u64),
                head_sequence,
                head_sequence + 1,
                first_past.into_iter().next().map(|(_, columns)| columns.id),
                "records follow the chain's head",
            ));
        }
        if last == head_sequence {
            if last == 0 || digests_match(walk.last_hash(), &head_hash) {
                return Ok(Verification {
                    records_checked: last - before as i64,
                    head_sequence,
                    head_hash: (last > 0).then_some(head_hash),
                    first_break: None,
                });
            }
            // The last record matches its predecessor but not the head: the
            // head was edited, or the record was rewritten whole with its
            // hash recomputed. Either way the break is at that record.
            return Ok(broken(
                walk.checked() - 1,
                head_sequence,
                last,
                last_id,
                "the chain's head does not hold this record's hash",
            ));
        }
        // The head is ahead: appended during the walk, or removed from the
        // end. What it covers is committed, so a read that finds nothing
        // after the walk means removed.
        if store.audit_chain_after(tenant, last, 1).await?.is_empty() {
            return Ok(broken(
                walk.checked(),
                head_sequence,
                last + 1,
                None,
                "records are missing at the end of the chain",
            ));
        }
    }
    Err(StoreError::Unavailable(
        "the audit chain grew faster than it could be walked; try again".into(),
    ))
}

/// Why a record's seal does not vouch for its place and hash, if it does not.
fn seal_break(sealer: &ChainSealer, tenant: &Tenant, r: &ChainedRecord) -> Option<&'static str> {
    match &r.seal {
        None => Some(
            "the record carries no seal: it was not written through Warden, or its seal was removed",
        ),
        Some(seal)
            if !sealer.vouches(
                &tenant.org_id,
                tenant.environment,
                r.sequence,
                &r.hash,
                seal,
            ) =>
        {
            Some(
                "the record's seal does not match: its hash was not made by a server holding \
                 this store's master key",
            )
        }
        Some(_) => None,
    }
}

/// Checks a whole chain against an anchor copied out of it earlier: a
/// chain rebuilt from before the anchor, or cut back past it, is
/// consistent in itself, and only a copy kept elsewhere tells.
pub async fn check_anchor(
    store: &dyn Store,
    tenant: &Tenant,
    anchor: &Anchor,
    v: &mut Verification,
) -> Result<(), StoreError> {
    // A break the walk found at or before the anchor comes first; one
    // after it is preceded by the anchor's, if the anchor does not match.
    if v.first_break
        .as_ref()
        .is_some_and(|b| b.sequence <= anchor.sequence)
    {
        return Ok(());
    }
    let (reason, audit_id) = match anchor_record(store, tenant, anchor).await? {
        Ok(_) => return Ok(()),
        Err(why) => why,
    };
    v.head_hash = None;
    // The records before the break are those the walk found sound.
    v.records_checked = v.records_checked.min(anchor.sequence - 1).max(0);
    v.first_break = Some(Break {
        sequence: anchor.sequence,
        audit_id,
        reason,
    });
    Ok(())
}

/// The record at an anchor's sequence when it holds the anchor's hash;
/// otherwise why not, with the id of the record that stands there.
async fn anchor_record(
    store: &dyn Store,
    tenant: &Tenant,
    anchor: &Anchor,
) -> Result<Result<StoredRecord, (&'static str, Option<String>)>, StoreError> {
    let at = store
        .audit_chain_after(tenant, anchor.sequence - 1, 1)
        .await?
        .into_iter()
        .next()
        .filter(|(r, _)| r.sequence == anchor.sequence);
    Ok(match at {
        None => Err((
            "no record stands at the anchor's sequence: the chain was cut back before it",
            None,
        )),
        Some((r, columns)) if !digests_match(&r.hash, &anchor.hash.to_ascii_lowercase()) => Err((
            "the record at the anchor's sequence does not hold the anchor's hash: the chain was rewritten there or before",
            Some(columns.id),
        )),
        Some(found) => Ok(found),
    })
}
