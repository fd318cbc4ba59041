//! Decisions' agent events, appended to the event log after their audit
//! records commit, in runs, where the store allows it (SQLite: one process
//! writes it). A decision's own commit then writes its record alone, and
//! its answer waits for neither the event's rows nor the index: together
//! they were a quarter of a decision's CPU (`BENCHMARKS.md`).
//!
//! The events are derived from the committed records, so none is lost: the
//! cursor of the last record published moves in the same transaction as
//! the events it published, and a process that stops between a record's
//! commit and its event's picks up from the cursor when it starts again.
//! Reading the records and making their events runs on a thread below
//! requests (the index's priority); only the append is the store writer's.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use warden_core::audit::ChainedRecord;
use warden_core::event::decision::decision_event;
use warden_core::event::Event;
use warden_core::secret::ChainSealer;
use warden_core::Tenant;
use warden_search::background::IndexingThread;
use warden_store::{EventAppend, Store, StoreError, StoreResult};

use crate::telemetry::handoff::by_tenant;
use crate::telemetry::indexer::off_runtime;
use crate::telemetry::IndexFeed;

/// The event log consumer cursor: the last audit row published.
const CURSOR: &str = "decision-events";
/// How long a run gathers after the first commit wakes it. A run's reads
/// and its transaction hold up the decisions queued behind them: at
/// 2,000 decisions/s runs 100 ms apart raised the p99 from 2.5 to 4.3 ms,
/// 500 ms apart to 14 ms; 25 ms apart kept it (`BENCHMARKS.md`).
const GATHER: Duration = Duration::from_millis(25);
/// Most records read and published in one transaction: short enough that
/// a decision's or an approval's commit queued behind one waits a
/// millisecond or two, not the tens a backlog of thousands would take.
const RUN: i64 = 256;
/// How often the publisher looks without being woken (records another
/// path committed; a wake-up lost to a failed run).
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// Wakes the publisher when records commit.
#[derive(Clone)]
pub struct DecisionEvents {
    committed: Arc<Notify>,
}

impl DecisionEvents {
    /// Starts the publisher when `store` derives decisions' events; `None`
    /// when it appends them with their records.
    pub fn start(store: Arc<dyn Store>, feed: IndexFeed, sealer: ChainSealer) -> Option<Self> {
        if !store.derives_decision_events() {
            return None;
        }
        let committed = Arc::new(Notify::new());
        tokio::spawn(publisher(store, feed, committed.clone(), sealer));
        Some(DecisionEvents { committed })
    }

    /// Records were committed: their events are due.
    pub fn committed(&self) {
        self.committed.notify_one();
    }
}

async fn publisher(
    store: Arc<dyn Store>,
    feed: IndexFeed,
    committed: Arc<Notify>,
    sealer: ChainSealer,
) {
    let below = loop {
        match IndexingThread::start("warden-publish") {
            Ok(thread) => break thread,
            Err(err) => {
                tracing::error!(error = %err, "the decisions' events cannot start their thread; retrying");
                tokio::time::sleep(IDLE_LOOK).await;
            }
        }
    };
    let mut cursor = None;
    let mut failures = warden_core::log_pace::Paced::default();
    loop {
        // First what a stop left unpublished; then a run per wake-up.
        if cursor.is_some() {
            let _ = tokio::time::timeout(IDLE_LOOK, committed.notified()).await;
            tokio::time::sleep(GATHER).await;
        }
        match publish(&store, &below, &feed, &mut cursor, &sealer).await {
            Ok(_) => failures.reset(),
            Err(err) => {
                if let Some(unlogged) = failures.due() {
                    tracing::warn!(error = %err, unlogged,
                        "publishing decisions' events failed; retrying");
                }
                tokio::time::sleep(IDLE_LOOK).await;
            }
        }
    }
}

/// A run read and made into events, below requests.
struct Run {
    last_row: i64,
    whole: bool,
    appends: Vec<EventAppend>,
    events: Vec<(Tenant, Event)>,
}

/// Reads the records committed after row `after` and makes their events,
/// on a thread below requests: decoding and checking records and writing
/// events is the publisher's CPU, which a decision should not wait behind.
async fn read_run(
    below: &IndexingThread,
    store: &Arc<dyn Store>,
    after: i64,
    sealer: &ChainSealer,
) -> StoreResult<Option<Run>> {
    let store = store.clone();
    let sealer = sealer.clone();
    let runtime = tokio::runtime::Handle::current();
    off_runtime(below, move || {
        let records = runtime
            .block_on(store.audit_committed_after(after, RUN))
            .map_err(|e| e.to_string())?;
        Ok(make_events(records, &sealer))
    })
    .await
    .map_err(StoreError::Unavailable)
}

fn make_events(
    records: Vec<(i64, Option<(Tenant, ChainedRecord)>)>,
    sealer: &ChainSealer,
) -> Option<Run> {
    let last_row = records.last().map(|(row, _)| *row)?;
    let whole = records.len() as i64 == RUN;
    let mut appends = Vec::new();
    let mut events = Vec::new();
    for (row, read) in records {
        // Search shows only what the chain vouches for: a row that no
        // longer reads as a record, or whose content no longer matches its
        // hash (edited in the database), gets no event, and says so;
        // `GET /api/v1/audit/verify` names it.
        let Some((tenant, chained)) = read.filter(|(t, c)| c.vouched(t, sealer)) else {
            tracing::error!(
                audit_row = row,
                "an audit record does not match its hash or its seal: no event is published for it"
            );
            continue;
        };
        let Some(event) = decision_event(&chained.record) else {
            continue;
        };
        appends.push(EventAppend {
            tenant: tenant.clone(),
            id: event.id.clone(),
            occurred_at: event.timestamp,
            body: event.to_json(),
        });
        events.push((tenant, event));
    }
    Some(Run {
        last_row,
        whole,
        appends,
        events,
    })
}

/// Publishes every record committed after the cursor, a run at a time.
async fn publish(
    store: &Arc<dyn Store>,
    below: &IndexingThread,
    feed: &IndexFeed,
    cursor: &mut Option<i64>,
    sealer: &ChainSealer,
) -> StoreResult<()> {
    let mut after = match *cursor {
        Some(at) => at,
        None => store.consumer_cursor(CURSOR).await?.unwrap_or(0),
    };
    *cursor = Some(after);
    loop {
        let Some(run) = read_run(below, store, after, sealer).await? else {
            return Ok(());
        };
        let last_seq = store
            .append_derived_events(&run.appends, CURSOR, run.last_row)
            .await?;
        after = run.last_row;
        *cursor = Some(after);
        if let Some(last) = last_seq {
            let first = last - run.appends.len() as i64 + 1;
            let bodies = run.appends.into_iter().map(|a| a.body);
            for appended in by_tenant(first, run.events.into_iter().zip(bodies)) {
                feed.hand_over(appended);
            }
            // Runs no faster than the index takes them: the records are
            // durable whatever the lag.
            feed.keep_up(last).await;
        }
        if !run.whole {
            return Ok(());
        }
    }
}
