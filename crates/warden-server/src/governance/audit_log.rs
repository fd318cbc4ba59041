//! The audit log writer: one task per process chains records and commits
//! them in batches. While a batch commits the next gathers, so a record
//! costs a share of one transaction, and the response to the request that
//! made it waits until it is on disk.
//!
//! A decision's agent event commits with its record; once committed, the
//! events go to this process's indexer in memory, and an answer waits
//! while the index lags too far behind (as an ingest does).
//!
//! Each tenant's chain head is kept in memory; the store moves the stored
//! head only from where this process saw it, so another replica's append
//! makes the batch fail as a whole. Then the records are committed one by
//! one with a fresh head, which also isolates a record whose companion
//! write cannot be made (a hold already resolved, a policy changed).

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::{mpsc, oneshot};
use warden_core::audit::{AuditRecord, ChainedRecord};
use warden_core::audit_chain::link_hash;
use warden_core::event::decision::decision_event;
use warden_core::event::Event;
use warden_core::secret::ChainSealer;
use warden_core::{Environment, Tenant};
use warden_store::{AuditAppend, AuditCommitted, Companion, EventAppend, Store, StoreError};

use super::decision_events::DecisionEvents;
use crate::telemetry::handoff::by_tenant;
use crate::telemetry::IndexFeed;

/// Most records per transaction.
const MAX_BATCH: usize = 1_024;
/// Attempts of one record when other writers keep moving its chain.
const ATTEMPTS: usize = 50;
/// Attempts of a whole batch while other replicas keep moving its chains.
const BATCH_ATTEMPTS: usize = 50;

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
    /// A decision's agent event, committed with its record.
    event: Option<EventAppend>,
    /// The same event, for the indexer once committed.
    decision: Option<Event>,
    reply: oneshot::Sender<Result<Committed, AppendError>>,
    /// When the record was handed to the writer.
    sent: std::time::Instant,
}

/// A record in its chain, and the log position of the last event its
/// batch appended.
type Committed = (ChainedRecord, Option<i64>);

/// How long each batch took to commit, durably (the sync to disk
/// included), how many records it carried, and how long each record
/// waited for its batch to start (behind the batch committing before it):
/// a decision's latency is mostly that wait and its batch's commit, so
/// these say how much of it the store takes.
#[derive(Clone)]
pub struct CommitTimes {
    pub seconds: Histogram,
    pub records: Histogram,
    pub queued_seconds: Histogram,
}

impl Default for CommitTimes {
    fn default() -> Self {
        CommitTimes {
            // 50 µs to about 0.5 s, in steps of half again: fine enough
            // to set a commit's tail beside a decision's.
            seconds: Histogram::new(exponential_buckets(0.000_05, 1.5, 24)),
            // 1 to 1,024 records.
            records: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            queued_seconds: Histogram::new(exponential_buckets(0.000_05, 1.5, 24)),
        }
    }
}

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Pending>,
    feed: IndexFeed,
    /// Set where decisions' events are derived after their records commit
    /// (SQLite); otherwise each commits with its record.
    derived: Option<DecisionEvents>,
    sealer: ChainSealer,
}

impl AuditLog {
    /// Starts the writer, whose records are sealed by `sealer`.
    pub fn start(
        store: Arc<dyn Store>,
        feed: IndexFeed,
        times: CommitTimes,
        sealer: ChainSealer,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let derived = DecisionEvents::start(store.clone(), feed.clone(), sealer.clone());
        tokio::spawn(check_heads_at_start(store.clone()));
        tokio::spawn(writer(store, rx, feed.clone(), times, sealer.clone()));
        AuditLog {
            tx,
            feed,
            derived,
            sealer,
        }
    }

    /// The key the log seals its records with: what is derived from a
    /// record checks its seal with it.
    pub fn sealer(&self) -> &ChainSealer {
        &self.sealer
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
        let decision = match self.derived {
            Some(_) => None,
            None => decision_event(&record),
        };
        self.tx
            .send(Pending {
                event: decision.as_ref().map(|event| EventAppend {
                    tenant: tenant.clone(),
                    id: event.id.clone(),
                    occurred_at: event.timestamp,
                    body: event.to_json(),
                }),
                decision,
                tenant,
                record,
                companion,
                reply,
                sent: std::time::Instant::now(),
            })
            .map_err(|_| AppendError::Stopped)?;
        let (chained, last_event_seq) = rx.await.map_err(|_| AppendError::Stopped)??;
        if let Some(derived) = &self.derived {
            derived.committed();
        }
        if let Some(last) = last_event_seq {
            self.feed.keep_up_within(last, DECISION_WAIT).await;
        }
        Ok(chained)
    }
}

/// Longest a decision waits for the search index to catch up with its
/// event (back-pressure, as for ingest): at the rates decisions come the
/// index keeps up and nothing waits; under a flood of events from anyone
/// the decision answers after this, and its event becomes searchable when
/// the index gets to it.
const DECISION_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// The chains' heads as this writer knows them, and the key that seals
/// each record it links onto them.
struct Heads {
    known: HashMap<Tenant, (i64, String)>,
    sealer: ChainSealer,
}

impl Heads {
    fn new(sealer: &ChainSealer) -> Self {
        Heads {
            known: HashMap::new(),
            sealer: sealer.clone(),
        }
    }

    /// None known, sealed with the same key.
    fn fresh(&self) -> Self {
        Heads::new(&self.sealer)
    }

    fn get(&self, tenant: &Tenant) -> Option<&(i64, String)> {
        self.known.get(tenant)
    }

    fn insert(&mut self, tenant: Tenant, head: (i64, String)) {
        self.known.insert(tenant, head);
    }

    fn remove(&mut self, tenant: &Tenant) {
        self.known.remove(tenant);
    }

    fn clear(&mut self) {
        self.known.clear();
    }
}

async fn head_of(
    store: &dyn Store,
    heads: &mut Heads,
    tenant: &Tenant,
) -> Result<(i64, String), StoreError> {
    if let Some(h) = heads.get(tenant) {
        return Ok(h.clone());
    }
    let h = checked_head(store, tenant).await?;
    heads.insert(tenant.clone(), h.clone());
    Ok(h)
}

/// The stored head of a tenant's chain, once it is seen to name the
/// chain's last record: that record there with the head's hash, and none
/// after it that the head did not move past meanwhile. A head edited in
/// the database (another hash, a sequence moved either way) is refused, so
/// no record is chained onto it: the break stays where verify names it,
/// and putting the head back mends the chain.
async fn checked_head(store: &dyn Store, tenant: &Tenant) -> Result<(i64, String), StoreError> {
    let checked = checked_head_once(store, tenant).await;
    let mut refused = REFUSED_HEADS.lock().unwrap_or_else(|p| p.into_inner());
    match &checked {
        Err(StoreError::Corrupt(_)) => {
            refused.insert(tenant.clone());
        }
        Ok(_) => {
            refused.remove(tenant);
        }
        Err(_) => {}
    }
    checked
}

/// Chains whose stored head this process last found edited, and so
/// refuses to write to: `/readyz` reports them (as a count) until a write
/// finds the head put back.
static REFUSED_HEADS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<Tenant>>> =
    std::sync::LazyLock::new(Default::default);

/// Checks every chain's stored head once at start, so that `/readyz` and
/// the log tell of an edited head before a write is refused for it. Runs
/// beside the server: two reads a chain.
async fn check_heads_at_start(store: Arc<dyn Store>) {
    let orgs = match store.list_organizations().await {
        Ok(orgs) => orgs,
        Err(err) => {
            tracing::warn!(error = %err, "cannot list organizations to check their audit chains");
            return;
        }
    };
    for org in orgs {
        for environment in [Environment::Live, Environment::Test] {
            let tenant = Tenant {
                org_id: org.id.clone(),
                environment,
            };
            if let Err(StoreError::Corrupt(why)) = checked_head(store.as_ref(), &tenant).await {
                tracing::error!(org_id = %tenant.org_id, environment = %environment.as_str(),
                    "{why}; audited writes of this chain are refused until it is put back");
            }
        }
    }
}

/// How many chains this process refuses to write to for an edited head.
pub fn refused_heads() -> usize {
    REFUSED_HEADS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len()
}

async fn checked_head_once(
    store: &dyn Store,
    tenant: &Tenant,
) -> Result<(i64, String), StoreError> {
    let corrupt = |why: &str| {
        StoreError::Corrupt(format!(
            "the audit chain's head {why}; GET /api/v1/audit/verify names where the chain breaks"
        ))
    };
    for _ in 0..ATTEMPTS {
        let (sequence, hash) = store.audit_head(tenant).await?;
        let near = store
            .audit_chain_after(tenant, (sequence - 1).max(0), 2)
            .await?;
        if sequence > 0
            && !near
                .iter()
                .any(|(r, _)| r.sequence == sequence && r.hash == hash)
        {
            return Err(corrupt("does not match the record it names"));
        }
        if !near.iter().any(|(r, _)| r.sequence > sequence) {
            return Ok((sequence, hash));
        }
        // A record past the head: appended since the head was read (the
        // head moves in its transaction), or the head is behind.
        if store.audit_head(tenant).await?.0 == sequence {
            return Err(corrupt("is behind its records"));
        }
    }
    Err(StoreError::Unavailable(
        "the audit chain moved faster than its head could be read; try again".into(),
    ))
}

fn link(
    record: &AuditRecord,
    tenant: &Tenant,
    head: &(i64, String),
    sealer: &ChainSealer,
) -> ChainedRecord {
    let canonical = record.canonical();
    let sequence = head.0 + 1;
    let hash = link_hash(&head.1, sequence as u64, canonical.as_bytes());
    ChainedRecord {
        sequence,
        seal: Some(sealer.seal(&tenant.org_id, tenant.environment, sequence, &hash)),
        hash,
        previous_hash: head.1.clone(),
        canonical,
        record: record.clone(),
    }
}

/// What a batch's commit gives back: its outcome, and the appends it
/// wrote (the commit owns them while it runs, so they are not copied).
type Commit = (Result<Option<AuditCommitted>, StoreError>, Vec<AuditAppend>);

/// One batch on its way to the store, chained on the batches before it.
struct InFlight {
    batch: Vec<Pending>,
    commit: Committing,
}

/// A batch's commit, polled by the writer itself rather than spawned: the
/// store's answer then wakes the writer directly, one hand-over fewer on
/// every decision's way back. A panic in it fails the batch (`Err`), as a
/// spawned task's would, instead of stopping the writer.
struct Committing(std::pin::Pin<Box<dyn std::future::Future<Output = Commit> + Send>>);

impl std::future::Future for Committing {
    type Output = Result<Commit, ()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let commit = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit.as_mut().poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(done)) => std::task::Poll::Ready(Ok(done)),
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}

/// The links of a committed batch's appends, in batch order.
fn links(appends: Vec<AuditAppend>) -> Vec<ChainedRecord> {
    appends.into_iter().map(|a| a.link).collect()
}

/// Answers a committed batch, after handing its events to the indexer
/// (moved out of the batch: nothing else reads them once committed). The
/// events were numbered in batch order up to `last_event_seq`.
fn answer(
    feed: &IndexFeed,
    mut batch: Vec<Pending>,
    links: Vec<ChainedRecord>,
    committed: AuditCommitted,
) {
    let last = committed.last_event_seq;
    if let Some(last) = last {
        let mut events = Vec::new();
        for p in &mut batch {
            if let (Some(append), Some(event)) = (p.event.take(), p.decision.take()) {
                events.push(((p.tenant.clone(), event), append.body));
            }
        }
        let first = last - events.len() as i64 + 1;
        for run in by_tenant(first, events) {
            feed.leave(run);
        }
    }
    for (p, link) in batch.into_iter().zip(links) {
        let _ = p.reply.send(Ok((link, last)));
    }
}

/// How many batches may be committing at once. One: the next batch
/// gathers while one commits, so under load each commit carries every
/// record that arrived meanwhile. With SQLite, four batches in flight
/// (each its own job in the writer's group) cost the writer a third more
/// CPU and the closed loop a sixth of its decisions (`BENCHMARKS.md`);
/// PostgreSQL runs transactions side by side in any order, which a chain
/// cannot take.
const IN_FLIGHT: usize = 1;

async fn writer(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    feed: IndexFeed,
    times: CommitTimes,
    sealer: ChainSealer,
) {
    // Chain heads as they will be once every batch in flight commits.
    let mut heads = Heads::new(&sealer);
    let mut in_flight: std::collections::VecDeque<InFlight> = Default::default();
    let mut open = true;
    // Set when the store could not be reached (a lock another replica
    // holds, no connection), until a batch commits: meanwhile one batch
    // at a time finds out whether it is back, and the others are answered
    // at once instead of each waiting its turn at the lock.
    let mut unreachable = false;
    // Whether that refusal was a full disk (else the store out of reach).
    let mut disk_full = false;
    loop {
        if !open && in_flight.is_empty() {
            return;
        }
        let receive = open && (in_flight.len() < IN_FLIGHT || unreachable);
        tokio::select! {
            biased;
            done = async { (&mut in_flight.front_mut().unwrap().commit).await }, if !in_flight.is_empty() => {
                let front = in_flight.pop_front().unwrap();
                match done {
                    Ok((Ok(Some(committed)), appends)) => {
                        (unreachable, disk_full) = (false, false);
                        answer(&feed, front.batch, links(appends), committed);
                    }
                    other => {
                        // This batch wrote nothing, so every later batch,
                        // chained on it, fails too: wait for them, then
                        // commit all their records one at a time.
                        let mut failed = vec![front];
                        while let Some(mut next) = in_flight.pop_front() {
                            let _ = (&mut next.commit).await;
                            failed.push(next);
                        }
                        heads.clear();
                        let batch: Vec<Pending> = failed.into_iter().flat_map(|f| f.batch).collect();
                        let refused = match other {
                            Ok((Err(StoreError::Unavailable(why)), _)) => {
                                Some(StoreError::Unavailable(why))
                            }
                            // No space: one record at a time finds none either.
                            Ok((Err(StoreError::Full(why)), _)) => Some(StoreError::Full(why)),
                            _ => None,
                        };
                        if let Some(refused) = refused {
                            unreachable = true;
                            disk_full = matches!(refused, StoreError::Full(_));
                            // The store is out of reach (a lock another
                            // replica holds, no connection): trying each
                            // record again would make every request wait
                            // once more. They are answered now; nothing
                            // was written.
                            // So are those that queued while it waited:
                            // they would wait as long again.
                            let queued = std::iter::from_fn(|| rx.try_recv().ok());
                            for p in batch.into_iter().chain(queued) {
                                let refused = match &refused {
                                    StoreError::Full(why) => StoreError::Full(why.clone()),
                                    StoreError::Unavailable(why) => {
                                        StoreError::Unavailable(why.clone())
                                    }
                                    other => StoreError::Unavailable(other.to_string()),
                                };
                                let _ = p.reply.send(Err(AppendError::Store(refused)));
                            }
                            continue;
                        }
                        recommit(store.as_ref(), &feed, &mut heads, batch).await;
                    }
                }
            }
            first = rx.recv(), if receive => {
                let Some(first) = first else {
                    open = false;
                    continue;
                };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                if unreachable && !in_flight.is_empty() {
                    for p in batch {
                        let refused = if disk_full {
                            StoreError::Full(
                                "a batch is waiting to find out whether space is back".into(),
                            )
                        } else {
                            StoreError::Unavailable(
                                "the store is out of reach; a batch is waiting to find out \
                                 whether it is back"
                                    .into(),
                            )
                        };
                        let _ = p.reply.send(Err(AppendError::Store(refused)));
                    }
                    continue;
                }
                for p in &batch {
                    times.queued_seconds.observe(p.sent.elapsed().as_secs_f64());
                }
                match chain(store.as_ref(), &mut heads, &batch).await {
                    Some(appends) => {
                        let committing = store.clone();
                        let times = times.clone();
                        let commit = Committing(Box::pin(async move {
                            let began = std::time::Instant::now();
                            let committed = committing.append_audit(&appends).await;
                            times.seconds.observe(began.elapsed().as_secs_f64());
                            times.records.observe(appends.len() as f64);
                            (committed, appends)
                        }));
                        in_flight.push_back(InFlight { batch, commit });
                    }
                    None => {
                        // The heads could not be read: answer after the
                        // batches in flight, one record at a time.
                        while let Some(f) = in_flight.pop_front() {
                            if let Ok((Ok(Some(committed)), appends)) = f.commit.await {
                                answer(&feed, f.batch, links(appends), committed);
                            } else {
                                for p in f.batch {
                                    commit_one(store.as_ref(), &feed, &mut heads.fresh(), p).await;
                                }
                            }
                        }
                        heads.clear();
                        for p in batch {
                            commit_one(store.as_ref(), &feed, &mut heads, p).await;
                        }
                    }
                }
            }
        }
    }
}

/// Commits a batch that failed: re-chained on the stored heads as a whole
/// while other writers moved them (replicas appending to the same chain);
/// record by record once the heads stand still, which isolates a record
/// whose companion write cannot be made.
async fn recommit(store: &dyn Store, feed: &IndexFeed, heads: &mut Heads, batch: Vec<Pending>) {
    for attempt in 0..BATCH_ATTEMPTS {
        heads.clear();
        let Some(appends) = chain(store, heads, &batch).await else {
            break;
        };
        // The heads this attempt was chained on.
        let mut used: Vec<(Tenant, (i64, String))> = Vec::new();
        for a in &appends {
            if !used.iter().any(|(t, _)| *t == a.tenant) {
                used.push((
                    a.tenant.clone(),
                    (a.link.sequence - 1, a.link.previous_hash.clone()),
                ));
            }
        }
        match store.append_audit(&appends).await {
            Ok(Some(committed)) => {
                answer(feed, batch, links(appends), committed);
                return;
            }
            Ok(None) => {
                let mut moved = false;
                for (tenant, seen) in &used {
                    if store.audit_head(tenant).await.ok().as_ref() != Some(seen) {
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
                // Another writer won the race: a little jitter, then again.
                let pause = (attempt as u64 % 4) * 250 + rand::random::<u64>() % 500;
                tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
            }
            Err(_) => break,
        }
    }
    heads.clear();
    for p in batch {
        commit_one(store, feed, heads, p).await;
    }
}

/// Links a batch onto the heads, advancing them; `None` when a head could
/// not be read (the heads are then left as they were).
async fn chain(
    store: &dyn Store,
    heads: &mut Heads,
    batch: &[Pending],
) -> Option<Vec<AuditAppend>> {
    let mut next: HashMap<Tenant, (i64, String)> = HashMap::new();
    let mut appends = Vec::with_capacity(batch.len());
    for p in batch {
        let head = match next.get(&p.tenant) {
            Some(h) => h.clone(),
            None => head_of(store, heads, &p.tenant).await.ok()?,
        };
        let chained = link(&p.record, &p.tenant, &head, &heads.sealer);
        next.insert(p.tenant.clone(), (chained.sequence, chained.hash.clone()));
        appends.push(AuditAppend {
            tenant: p.tenant.clone(),
            link: chained,
            companion: p.companion.clone(),
            event: p.event.clone(),
        });
    }
    heads.known.extend(next);
    Some(appends)
}

/// Commits one record on its own and answers it.
async fn commit_one(store: &dyn Store, feed: &IndexFeed, heads: &mut Heads, p: Pending) {
    match try_one(store, heads, &p).await {
        Ok((link, committed)) => answer(feed, vec![p], vec![link], committed),
        Err(err) => {
            let _ = p.reply.send(Err(err));
        }
    }
}

async fn try_one(
    store: &dyn Store,
    heads: &mut Heads,
    p: &Pending,
) -> Result<(ChainedRecord, AuditCommitted), AppendError> {
    append_with_heads(store, heads, &p.tenant, &p.record, &p.companion, &p.event).await
}

/// Appends one record outside any running writer (the command line, on
/// the host's console): chained on the stored head, and again on a fresh
/// one while a running server moves it. A server whose batch then finds
/// its head moved re-chains it, as with a second replica.
pub async fn append_alone(
    store: &dyn Store,
    tenant: &Tenant,
    record: &AuditRecord,
    companion: Option<Companion>,
    sealer: &ChainSealer,
) -> Result<ChainedRecord, AppendError> {
    append_with_heads(
        store,
        &mut Heads::new(sealer),
        tenant,
        record,
        &companion,
        &None,
    )
    .await
    .map(|(chained, _)| chained)
}

async fn append_with_heads(
    store: &dyn Store,
    heads: &mut Heads,
    tenant: &Tenant,
    record: &AuditRecord,
    companion: &Option<Companion>,
    event: &Option<EventAppend>,
) -> Result<(ChainedRecord, AuditCommitted), AppendError> {
    for _ in 0..ATTEMPTS {
        let head = head_of(store, heads, tenant).await?;
        let chained = link(record, tenant, &head, &heads.sealer);
        let append = AuditAppend {
            tenant: tenant.clone(),
            link: chained.clone(),
            companion: companion.clone(),
            event: event.clone(),
        };
        match store.append_audit(std::slice::from_ref(&append)).await {
            Ok(Some(committed)) => {
                heads.insert(tenant.clone(), (chained.sequence, chained.hash.clone()));
                return Ok((chained, committed));
            }
            Ok(None) => {
                // Did the chain move (another writer), or did the companion
                // fail? Only the first is worth another attempt.
                heads.remove(tenant);
                let stored = head_of(store, heads, tenant).await?;
                if stored == head {
                    return Err(AppendError::Precondition);
                }
            }
            Err(e) => {
                heads.remove(tenant);
                return Err(e.into());
            }
        }
    }
    Err(AppendError::Store(StoreError::Unavailable(
        "the audit chain kept moving; retry".into(),
    )))
}
