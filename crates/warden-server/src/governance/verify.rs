//! Re-walks a tenant's audit chain from its first record.

use warden_core::audit_chain::{link_hash, GENESIS};
use warden_core::secret::digests_match;
use warden_core::Tenant;
use warden_store::{Store, StoreError};

const PAGE: i64 = 2_000;

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
    let mut expected_previous = GENESIS.to_string();
    let mut expected_sequence = 1i64;
    let mut checked = 0i64;
    loop {
        let rows = store
            .audit_chain_after(tenant, expected_sequence - 1, PAGE)
            .await?;
        let done = (rows.len() as i64) < PAGE;
        for (r, columns) in rows {
            let fail = |reason| {
                Ok(Verification {
                    records_checked: checked,
                    head_sequence,
                    first_break: Some(Break {
                        sequence: r.sequence,
                        audit_id: columns.id.clone(),
                        reason,
                    }),
                })
            };
            if r.sequence != expected_sequence {
                return fail("a record is missing before this one");
            }
            if r.previous_hash != expected_previous {
                return fail("its previous hash is not the hash of the record before");
            }
            let hash = link_hash(&r.previous_hash, r.sequence as u64, r.canonical.as_bytes());
            if !digests_match(&hash, &r.hash) {
                return fail("its content does not match its hash");
            }
            if !columns.agree_with(&r.record) {
                return fail("its indexed columns differ from the hashed record");
            }
            expected_previous = hash;
            expected_sequence += 1;
            checked += 1;
        }
        if done {
            break;
        }
    }
    // Records removed from the end leave the head pointing past them.
    let last = expected_sequence - 1;
    if last != head_sequence || (last > 0 && !digests_match(&expected_previous, &head_hash)) {
        return Ok(Verification {
            records_checked: checked,
            head_sequence,
            first_break: Some(Break {
                sequence: last + 1,
                audit_id: String::new(),
                reason: "records are missing at the end of the chain",
            }),
        });
    }
    Ok(Verification {
        records_checked: checked,
        head_sequence,
        first_break: None,
    })
}
