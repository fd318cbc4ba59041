//! Re-walks a tenant's audit chain from its first record, a page at a time.

use warden_core::audit_chain::{ChainWalk, StoredLink};
use warden_core::secret::digests_match;
use warden_core::Tenant;
use warden_store::{Store, StoreError};

/// Most records a page reads, and the bytes of record text a page aims
/// at: a record can be near a megabyte (a call's arguments), so pages
/// shrink to what the records walked so far weigh.
const MAX_PAGE: i64 = 2_000;
const PAGE_BYTES: usize = 8 << 20;
const FIRST_PAGE: i64 = 64;

/// The first record that does not match, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Break {
    pub sequence: i64,
    pub audit_id: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    pub records_checked: i64,
    pub head_sequence: i64,
    pub first_break: Option<Break>,
}

pub async fn verify(store: &dyn Store, tenant: &Tenant) -> Result<Verification, StoreError> {
    let (head_sequence, head_hash) = store.audit_head(tenant).await?;
    let mut walk = ChainWalk::default();
    let outcome = |walk: &ChainWalk, first_break| Verification {
        records_checked: walk.checked() as i64,
        head_sequence,
        first_break,
    };
    let mut page = FIRST_PAGE;
    loop {
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
                Ok(()) if !columns.agree_with(&r.record) => (
                    Some("its indexed columns differ from the hashed record"),
                    walk.checked() - 1,
                ),
                Ok(()) => (None, walk.checked()),
            };
            if let Some(reason) = reason {
                return Ok(Verification {
                    records_checked: passed as i64,
                    head_sequence,
                    first_break: Some(Break {
                        sequence: r.sequence,
                        audit_id: columns.id,
                        reason,
                    }),
                });
            }
        }
        if done {
            break;
        }
    }
    // Records removed from the end leave the head pointing past them.
    let last = walk.checked() as i64;
    if last != head_sequence || (last > 0 && !digests_match(walk.last_hash(), &head_hash)) {
        return Ok(outcome(
            &walk,
            Some(Break {
                sequence: last + 1,
                audit_id: String::new(),
                reason: "records are missing at the end of the chain",
            }),
        ));
    }
    Ok(outcome(&walk, None))
}
