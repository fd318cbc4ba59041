//! Telemetry: events in (the API, NDJSON logs, syslog, the Thoth SDK,
//! decisions), the durable event log, the search index fed from it, and
//! retention (docs/events.md, docs/query-language.md).

pub mod handoff;
pub mod indexer;
pub mod ingest;
pub mod ndjson;
pub mod retention;
pub mod search;
pub mod syslog;
pub mod syslog_tcp;

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;
use warden_search::EventIndex;
use warden_store::Store;

/// The telemetry services a server shares between requests.
pub struct Telemetry {
    pub store: Arc<dyn Store>,
    pub index: Arc<EventIndex>,
    /// Wakes the indexer when this process appended events.
    pub appended: Arc<Notify>,
    /// Those events, in memory, for the indexer.
    pub handoff: Arc<handoff::Handoff>,
    /// The log position the index has made searchable.
    pub searchable: tokio::sync::watch::Sender<i64>,
    /// How far the index trails this process's acknowledgments.
    pub health: Arc<IndexHealth>,
    /// Retention removals (organization, before, through) this process's
    /// index has forgotten (`retention::apply_removals`).
    pub applied_removals: std::sync::Mutex<std::collections::HashSet<(String, i64, i64)>>,
}

/// What `/metrics` says of the index: how far it trails what this process
/// acknowledged, and how often acknowledgments waited for it. An operator
/// sees from it whether the one-second promise holds, and when ingest is
/// being slowed to keep it.
#[derive(Default)]
pub struct IndexHealth {
    /// The highest log position this process acknowledged.
    acknowledged: AtomicI64,
    /// Acknowledgments that waited for the index (back-pressure).
    pub waits: Counter,
    /// Time those acknowledgments spent waiting.
    pub waited_seconds: Counter<f64, AtomicU64>,
    /// Set while the indexer fails and retries: nothing new becomes
    /// searchable until it recovers, which readiness reports.
    failing: std::sync::atomic::AtomicBool,
    /// Set once a search found the index damaged on disk: it stays so
    /// until a rebuild (`warden reindex`).
    damaged: std::sync::atomic::AtomicBool,
}

/// Marks the index failing for as long as it lives.
pub struct Failing<'a>(&'a IndexHealth);

impl Drop for Failing<'_> {
    fn drop(&mut self) {
        self.0.failing.store(false, Ordering::Relaxed);
    }
}

impl IndexHealth {
    pub fn failing(&self) -> Failing<'_> {
        self.failing.store(true, Ordering::Relaxed);
        Failing(self)
    }

    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub fn mark_damaged(&self) {
        self.damaged.store(true, Ordering::Relaxed);
    }

    pub fn is_damaged(&self) -> bool {
        self.damaged.load(Ordering::Relaxed)
    }

    /// Events this process acknowledged that its index does not yet
    /// return, given the position the index has made searchable.
    pub fn unsearchable(&self, searchable: i64) -> i64 {
        (self.acknowledged.load(Ordering::Relaxed) - searchable).max(0)
    }
}

/// Most events this process lets stand between what it acknowledged and
/// what its index has made searchable. Indexing runs only on time that
/// requests leave idle (`warden_search::background`), so under sustained
/// ingest this is what it clears in well under a second (measured: the
/// last events searchable 0.3–0.6 s after the last 202 on two cores; 10,000
/// took the same ingest rate as 15,000 and leaves more of the second for
/// large batches and a busy machine).
/// Past it, acknowledgments wait for the index (back-pressure), so that an
/// acknowledged event is searchable within a second even under sustained
/// ingest faster than the index.
const MAX_UNSEARCHABLE: i64 = 10_000;
/// Longest an acknowledgment waits for the index; the events are durable
/// either way.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What an appender of events holds to hand them to this process's
/// indexer in memory, and to wait while the index falls too far behind.
#[derive(Clone)]
pub struct IndexFeed {
    handoff: Arc<handoff::Handoff>,
    appended: Arc<Notify>,
    searchable: tokio::sync::watch::Receiver<i64>,
    health: Arc<IndexHealth>,
}

impl IndexFeed {
    /// Offers committed events to the indexer and wakes it.
    pub fn hand_over(&self, batch: handoff::Appended) {
        self.handoff.offer(batch);
        self.appended.notify_one();
    }

    /// Offers committed events without waking the indexer: for a trickle
    /// of small batches (decisions), which it takes together on its next
    /// round, within its commit spacing, rather than one wake-up each.
    pub fn leave(&self, batch: handoff::Appended) {
        self.handoff.offer(batch);
    }

    /// Waits while more than [`MAX_UNSEARCHABLE`] events up to
    /// `last_seq` are not yet searchable (at most [`MAX_WAIT`]):
    /// back-pressure, so that an acknowledged event is searchable within
    /// a second however fast events come.
    pub async fn keep_up(&self, last_seq: i64) {
        self.keep_up_within(last_seq, MAX_WAIT).await;
    }

    /// As [`Self::keep_up`], waiting at most `longest`: a decision waits
    /// only briefly, so that another tenant's flood of events (or of
    /// syslog, which needs no key) cannot hold up every agent's calls.
    pub async fn keep_up_within(&self, last_seq: i64, longest: std::time::Duration) {
        self.health
            .acknowledged
            .fetch_max(last_seq, Ordering::Relaxed);
        let caught_up = |at: &i64| last_seq - *at <= MAX_UNSEARCHABLE;
        if caught_up(&self.searchable.borrow()) {
            return;
        }
        let began = std::time::Instant::now();
        let mut searchable = self.searchable.clone();
        let _ = tokio::time::timeout(longest, searchable.wait_for(caught_up)).await;
        self.health.waits.inc();
        self.health
            .waited_seconds
            .inc_by(began.elapsed().as_secs_f64());
    }
}

impl Telemetry {
    /// The feed into this process's indexer.
    pub fn feed(&self) -> IndexFeed {
        IndexFeed {
            handoff: self.handoff.clone(),
            appended: self.appended.clone(),
            searchable: self.searchable.subscribe(),
            health: self.health.clone(),
        }
    }

    /// Opens (or creates) the index under `index_dir`, built by
    /// `writer_threads` threads.
    pub fn open(
        store: Arc<dyn Store>,
        index_dir: &Path,
        writer_threads: usize,
    ) -> Result<Self, String> {
        let index = EventIndex::open(index_dir, writer_threads).map_err(|e| e.to_string())?;
        Ok(Telemetry {
            store,
            index: Arc::new(index),
            appended: Arc::new(Notify::new()),
            handoff: Arc::new(handoff::Handoff::default()),
            searchable: tokio::sync::watch::Sender::new(0),
            health: Arc::default(),
            applied_removals: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(searchable: &tokio::sync::watch::Sender<i64>) -> IndexFeed {
        IndexFeed {
            handoff: Arc::default(),
            appended: Arc::new(Notify::new()),
            searchable: searchable.subscribe(),
            health: Arc::default(),
        }
    }

    #[tokio::test]
    async fn an_acknowledgment_waits_only_while_the_index_trails_too_far() {
        let searchable = tokio::sync::watch::Sender::new(0);
        let feed = feed(&searchable);

        feed.keep_up(MAX_UNSEARCHABLE).await;
        assert_eq!(feed.health.waits.get(), 0, "within the bound: no wait");
        assert_eq!(feed.health.unsearchable(0), MAX_UNSEARCHABLE);

        let last = MAX_UNSEARCHABLE + 5_000;
        let waiting = tokio::spawn({
            let feed = feed.clone();
            async move { feed.keep_up(last).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "past the bound it waits");
        searchable.send_replace(4_999);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "one event too many still waits");
        searchable.send_replace(5_000);
        waiting.await.unwrap();

        assert_eq!(feed.health.waits.get(), 1);
        assert!(feed.health.waited_seconds.get() > 0.0);
        assert_eq!(feed.health.unsearchable(5_000), MAX_UNSEARCHABLE);
        assert_eq!(feed.health.unsearchable(last), 0);
        assert_eq!(feed.health.unsearchable(last + 10), 0, "never negative");
    }
}
