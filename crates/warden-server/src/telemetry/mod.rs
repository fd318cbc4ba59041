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
    /// Events a second the index has been making searchable while busy
    /// (a moving average; 0 until measured).
    pace: AtomicU64,
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

    /// Counts a commit of `events`, made searchable `cycle` after the
    /// indexer began on them (the commit included), into the index's pace
    /// when it says how fast the index goes: the indexer stayed `behind`
    /// (always more to read) until it, or it held at least
    /// [`PACE_SAMPLE_EVENTS`].
    pub fn note_commit(&self, events: usize, cycle: std::time::Duration, behind: bool) {
        if events == 0 || cycle.is_zero() || !(behind || events >= PACE_SAMPLE_EVENTS) {
            return;
        }
        let sample = events as f64 / cycle.as_secs_f64();
        let before = self.pace.load(Ordering::Relaxed) as f64;
        // Recent commits weigh most; the first sets it.
        let pace = if before == 0.0 {
            sample
        } else {
            0.7 * before + 0.3 * sample
        };
        // At least 1: 0 means not yet measured.
        self.pace.store((pace as u64).max(1), Ordering::Relaxed);
    }

    /// Unsearchable events allowed before acknowledgments wait: what the
    /// index clears in [`BACKLOG_WITHIN`] at its measured pace.
    pub fn allowance(&self) -> i64 {
        let pace = self.pace.load(Ordering::Relaxed);
        if pace == 0 {
            return INITIAL_UNSEARCHABLE;
        }
        ((pace as f64 * BACKLOG_WITHIN.as_secs_f64()) as i64)
            .clamp(MIN_UNSEARCHABLE, MAX_UNSEARCHABLE)
    }

    /// Counts the log's events up to `head` as owed to the index: on
    /// start, what it must index again (a replay after a crash) shows in
    /// [`Self::unsearchable`] like a backlog of this process's own.
    pub fn note_log_head(&self, head: i64) {
        self.acknowledged.fetch_max(head, Ordering::Relaxed);
    }

    /// Events this process acknowledged (or found in the log on start)
    /// that its index does not yet return, given the position the index
    /// has made searchable.
    pub fn unsearchable(&self, searchable: i64) -> i64 {
        (self.acknowledged.load(Ordering::Relaxed) - searchable).max(0)
    }
}

/// The share of the one-second promise the index's backlog may take:
/// acknowledgments wait while more events are unsearchable than the
/// index makes searchable in this long (back-pressure), so an
/// acknowledged event is searchable within a second even under ingest
/// faster than the index. Indexing runs only on time that requests leave
/// idle (`warden_search::background`), so what it clears in this long is
/// measured as it goes ([`IndexHealth::note_commit`]), not assumed.
const BACKLOG_WITHIN: std::time::Duration = std::time::Duration::from_millis(500);
/// The backlog allowed before the index's pace is known (measured on two
/// cores: cleared in about a third of a second, on the time requests leave
/// the indexer).
const INITIAL_UNSEARCHABLE: i64 = 10_000;
/// The least ever allowed once the pace is known: an index slowed by large
/// events (tens of KiB each) or a busy machine clears few events a second,
/// and a bound in the thousands would then hold seconds of them.
const MIN_UNSEARCHABLE: i64 = 100;
/// The most ever allowed, whatever the pace: what the indexer is handed
/// in memory, so that a backlog within the bound is never read back from
/// the store.
const MAX_UNSEARCHABLE: i64 = handoff::MAX_HELD as i64;
/// Events a commit must have made searchable for its pace to count when
/// the indexer caught up before it: a trickle's commits say how often
/// events come, not how fast the index goes. A commit the indexer reached
/// without ever catching up counts whatever it held.
pub const PACE_SAMPLE_EVENTS: usize = 2_000;
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

    /// Waits while more events up to `last_seq` are not yet searchable
    /// than [`IndexHealth::allowance`] (at most [`MAX_WAIT`]):
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
        let allowed = self.health.allowance();
        let caught_up = |at: &i64| last_seq - *at <= allowed;
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

        feed.keep_up(INITIAL_UNSEARCHABLE).await;
        assert_eq!(feed.health.waits.get(), 0, "within the bound: no wait");
        assert_eq!(feed.health.unsearchable(0), INITIAL_UNSEARCHABLE);

        let last = INITIAL_UNSEARCHABLE + 5_000;
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
        assert_eq!(feed.health.unsearchable(5_000), INITIAL_UNSEARCHABLE);
        assert_eq!(feed.health.unsearchable(last), 0);
        assert_eq!(feed.health.unsearchable(last + 10), 0, "never negative");
    }

    #[test]
    fn a_replay_on_start_counts_as_unsearchable() {
        let health = IndexHealth::default();
        health.note_log_head(25_000);
        assert_eq!(health.unsearchable(20_000), 5_000);
        health.note_log_head(10);
        assert_eq!(health.unsearchable(20_000), 5_000, "never moves back");
    }

    #[test]
    fn the_allowance_follows_the_pace_the_index_keeps() {
        let second = std::time::Duration::from_secs(1);
        let health = IndexHealth::default();
        assert_eq!(health.allowance(), INITIAL_UNSEARCHABLE, "unmeasured");

        health.note_commit(60_000, second, false);
        assert_eq!(health.allowance(), 30_000, "half a second at 60,000/s");

        health.note_commit(1_999, std::time::Duration::from_millis(1), false);
        assert_eq!(
            health.allowance(),
            30_000,
            "a trickle's commit says nothing"
        );

        // Slower commits pull it down: large events, or a busy machine.
        for _ in 0..30 {
            health.note_commit(2_000, second, false);
        }
        assert_eq!(health.allowance(), 1_000);
        // An indexer that never caught up counts however few it held.
        for _ in 0..30 {
            health.note_commit(300, second, true);
        }
        assert_eq!(health.allowance(), 150);
        for _ in 0..30 {
            health.note_commit(10, second, true);
        }
        assert_eq!(health.allowance(), MIN_UNSEARCHABLE, "the floor");

        for _ in 0..30 {
            health.note_commit(10_000_000, second, true);
        }
        assert_eq!(health.allowance(), MAX_UNSEARCHABLE, "capped");
    }

    #[tokio::test]
    async fn a_faster_index_lets_more_stand_unsearchable_before_waiting() {
        let searchable = tokio::sync::watch::Sender::new(0);
        let feed = feed(&searchable);
        feed.health
            .note_commit(80_000, std::time::Duration::from_secs(1), false);
        feed.keep_up(40_000).await;
        assert_eq!(feed.health.waits.get(), 0, "within 40,000: no wait");

        let waiting = tokio::spawn({
            let feed = feed.clone();
            async move { feed.keep_up(40_001).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "one past it waits");
        searchable.send_replace(1);
        waiting.await.unwrap();
        assert_eq!(feed.health.waits.get(), 1);
    }
}
