//! The audit log writer: one task per process chains records and commits
//! them in batches. While a batch commits the next gathers, so a record
//! costs a share of one transaction, and the response to the request that
//! made it waits until it is on disk.
//!
//! Each tenant's chain head is kept in memory; the store moves the stored
//! head only from where this process saw it, so another replica's append
//! makes the batch fail as a whole. Then the records are committed one by
//! one with a fresh head, which also isolates a record whose companion
//! write cannot be made (a hold already resolved, a policy changed).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use warden_core::audit::{AuditRecord, ChainedRecord};
use warden_core::audit_chain::link_hash;
use warden_core::Tenant;
use warden_store::{AuditAppend, Companion, Store, StoreError};

/// Most records per transaction.
const MAX_BATCH: usize = 1_024;
/// Attempts of one record when other writers keep moving its chain.
const ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The companion write's precondition failed; nothing was written.
    #[error("the change conflicts with the current state")]
    Precondition,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit writer stopped")]
    Stopped,
}

struct Pending {
    tenant: Tenant,
    record: AuditRecord,
    companion: Option<Companion>,
    reply: oneshot::Sender<Result<ChainedRecord, AppendError>>,
}

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Pending>,
}

impl AuditLog {
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(store, rx));
        AuditLog { tx }
    }

    /// Appends a record (with what must commit with it); returns once it is
    /// durable, with its place in the chain.
    pub async fn append(
        &self,
        tenant: Tenant,
        record: AuditRecord,
        companion: Option<Companion>,
    ) -> Result<ChainedRecord, AppendError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                tenant,
                record,
                companion,
                reply,
            })
            .map_err(|_| AppendError::Stopped)?;
        rx.await.map_err(|_| AppendError::Stopped)?
    }
}

type Heads = HashMap<Tenant, (i64, String)>;

async fn head_of(
    store: &dyn Store,
    heads: &mut Heads,
    tenant: &Tenant,
) -> Result<(i64, String), StoreError> {
    if let Some(h) = heads.get(tenant) {
        return Ok(h.clone());
    }
    let h = store.audit_head(tenant).await?;
    heads.insert(tenant.clone(), h.clone());
    Ok(h)
}

fn link(record: &AuditRecord, head: &(i64, String)) -> ChainedRecord {
    let canonical = record.canonical();
    let sequence = head.0 + 1;
    ChainedRecord {
        sequence,
        hash: link_hash(&head.1, sequence as u64, canonical.as_bytes()),
        previous_hash: head.1.clone(),
        canonical,
        record: record.clone(),
    }
}

async fn writer(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut heads = Heads::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        commit_batch(store.as_ref(), &mut heads, batch).await;
    }
}

async fn commit_batch(store: &dyn Store, heads: &mut Heads, batch: Vec<Pending>) {
    // Chain the whole batch on a copy of the heads.
    let mut next = Heads::new();
    let mut appends = Vec::with_capacity(batch.len());
    for p in &batch {
        let head = match next.get(&p.tenant) {
            Some(h) => h.clone(),
            None => match head_of(store, heads, &p.tenant).await {
                Ok(h) => h,
                Err(_) => {
                    appends.clear();
                    break;
                }
            },
        };
        let chained = link(&p.record, &head);
        next.insert(p.tenant.clone(), (chained.sequence, chained.hash.clone()));
        appends.push(AuditAppend {
            tenant: p.tenant.clone(),
            link: chained,
            companion: p.companion.clone(),
        });
    }
    if appends.len() == batch.len() {
        if let Ok(true) = store.append_audit(&appends).await {
            heads.extend(next);
            for (p, a) in batch.into_iter().zip(appends) {
                let _ = p.reply.send(Ok(a.link));
            }
            return;
        }
    }
    // Something in the batch failed: forget the heads it used and commit
    // its records one at a time.
    for p in &batch {
        heads.remove(&p.tenant);
    }
    for p in batch {
        let result = commit_one(store, heads, &p).await;
        let _ = p.reply.send(result);
    }
}

async fn commit_one(
    store: &dyn Store,
    heads: &mut Heads,
    p: &Pending,
) -> Result<ChainedRecord, AppendError> {
    for _ in 0..ATTEMPTS {
        let head = head_of(store, heads, &p.tenant).await?;
        let chained = link(&p.record, &head);
        let append = AuditAppend {
            tenant: p.tenant.clone(),
            link: chained.clone(),
            companion: p.companion.clone(),
        };
        match store.append_audit(std::slice::from_ref(&append)).await {
            Ok(true) => {
                heads.insert(p.tenant.clone(), (chained.sequence, chained.hash.clone()));
                return Ok(chained);
            }
            Ok(false) => {
                // Did the chain move (another writer), or did the companion
                // fail? Only the first is worth another attempt.
                heads.remove(&p.tenant);
                let stored = head_of(store, heads, &p.tenant).await?;
                if stored == head {
                    return Err(AppendError::Precondition);
                }
            }
            Err(e) => {
                heads.remove(&p.tenant);
                return Err(e.into());
            }
        }
    }
    Err(AppendError::Store(StoreError::Unavailable(
        "the audit chain kept moving; retry".into(),
    )))
}
