//! Telemetry: events in (the API, NDJSON logs, syslog, the Thoth SDK,
//! decisions), the durable event log, the search index fed from it, and
//! retention (docs/events.md, docs/query-language.md).

pub mod handoff;
pub mod health;
pub mod indexer;
pub mod ingest;
pub mod ndjson;
pub mod retention;
pub mod search;
pub mod syslog;
pub mod syslog_tcp;
pub mod syslog_udp;

use std::path::Path;
use std::sync::Arc;

pub use health::IndexHealth;
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
    /// Held by the indexer's commit, from the index's commit to its saved
    /// position: a shutdown takes it before closing the store, so a stop
    /// never leaves the index past its saved position.
    pub committing: Arc<tokio::sync::Mutex<()>>,
    /// The most time one search may take: past it the search stops and
    /// is answered 422 (`warden serve --search-timeout-seconds`).
    pub search_time_limit: std::time::Duration,
}

/// A search's time limit unless told otherwise: as long as the HTTP
/// clients of the usual search consoles wait.
pub const DEFAULT_SEARCH_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

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
        self.leave(batch);
        self.appended.notify_one();
    }

    /// Offers committed events without waking the indexer: for a trickle
    /// of small batches (decisions), which it takes together on its next
    /// round, within its commit spacing, rather than one wake-up each.
    pub fn leave(&self, batch: handoff::Appended) {
        let work = batch.work();
        let events = batch.events.len();
        let last_seq = batch.first_seq + events as i64 - 1;
        self.health.note_appended(last_seq, events, work);
        self.handoff.offer(batch, work);
    }

    /// Waits (at most [`MAX_WAIT`]) until an append of `work` fits in the
    /// room the index leaves ([`IndexHealth::try_admit`]), unless it is
    /// small beside the bound ([`SMALL_SHARE`]); the room stays
    /// reserved until the returned guard is dropped, after the append is
    /// handed over (or failed).
    /// As [`Self::admit`], without waiting: the room is taken whatever the
    /// index owes (for appends nobody waits an answer for, at shutdown).
    pub fn admit_now(&self, work: u64) -> Admitted {
        let health = &self.health;
        if work.saturating_mul(SMALL_SHARE) <= health.allowed_work() {
            return Admitted {
                health: health.clone(),
                work: 0,
            };
        }
        health.try_admit(*self.searchable.borrow(), work, true);
        Admitted {
            health: health.clone(),
            work,
        }
    }

    pub async fn admit(&self, work: u64) -> Admitted {
        let health = &self.health;
        if work.saturating_mul(SMALL_SHARE) <= health.allowed_work() {
            // Small beside the bound: written at once, and waits after
            // (`keep_up`), as a stream of them keeps the index busiest.
            return Admitted {
                health: health.clone(),
                work: 0,
            };
        }
        let admitted = Admitted {
            health: health.clone(),
            work,
        };
        if health.try_admit(*self.searchable.borrow(), work, false) {
            return admitted;
        }
        let began = std::time::Instant::now();
        let mut searchable = self.searchable.clone();
        loop {
            let waited = began.elapsed();
            let force = waited >= MAX_WAIT;
            if health.try_admit(*searchable.borrow_and_update(), work, force) {
                health.waits.inc();
                health.waited_seconds.inc_by(waited.as_secs_f64());
                if force {
                    health.warn_trailing(*searchable.borrow(), waited);
                }
                return admitted;
            }
            // The index moves on, or room reserved by another is given
            // back (an append that failed moves nothing): look again.
            let _ = tokio::time::timeout(ADMIT_POLL, searchable.changed()).await;
        }
    }

    /// Waits (at most [`MAX_WAIT`]) while the index owes more work than
    /// [`IndexHealth::allowed_work`] (or more events up to `last_seq` than
    /// [`IndexHealth::allowance`]), or while an append handed to it over
    /// [`health::STALE_AFTER`] ago is not searchable yet:
    /// back-pressure, so that an acknowledged event is searchable within
    /// a second however fast events come and however the index is slowed.
    pub async fn keep_up(&self, last_seq: i64) {
        self.wait_for_index(last_seq, MAX_WAIT, true).await;
    }

    /// As [`Self::keep_up`] on the backlog's size alone, waiting at most
    /// `longest`: a decision waits only briefly, so that another tenant's
    /// flood of events (or of syslog, which needs no key) cannot hold up
    /// every agent's calls.
    pub async fn keep_up_within(&self, last_seq: i64, longest: std::time::Duration) {
        self.wait_for_index(last_seq, longest, false).await;
    }

    async fn wait_for_index(&self, last_seq: i64, longest: std::time::Duration, by_age: bool) {
        let began = std::time::Instant::now();
        let health = &self.health;
        health.note_acknowledged(last_seq);
        let (allowed, allowed_work) = (health.allowance(), health.allowed_work());
        let stale_before = by_age.then_some(began);
        let caught_up = |at: &i64| {
            last_seq - *at <= allowed && !health.owes_too_much(*at, allowed_work, stale_before)
        };
        if caught_up(&self.searchable.borrow()) {
            return;
        }
        let mut searchable = self.searchable.clone();
        let timed_out = tokio::time::timeout(longest, searchable.wait_for(caught_up))
            .await
            .is_err();
        let waited = began.elapsed();
        health.waits.inc();
        health.waited_seconds.inc_by(waited.as_secs_f64());
        if timed_out && longest >= MAX_WAIT {
            health.warn_trailing(*self.searchable.borrow(), waited);
        }
    }
}

/// Room reserved for an append until it is in the ledger.
pub struct Admitted {
    health: Arc<IndexHealth>,
    work: u64,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.health.release(self.work);
    }
}

/// An append whose work is at most this share of the bound is written
/// without waiting for room: batches of ordinary events (under a MiB) stay
/// small beside the bound, and waiting before their write left the index
/// idle between them (12% fewer events a second for 20% more CPU, in
/// smaller commits, with no lag to gain: BENCHMARKS.md).
const SMALL_SHARE: u64 = 4;
/// How often a waiting append looks again for room, besides when the
/// index moves on.
const ADMIT_POLL: std::time::Duration = std::time::Duration::from_millis(20);

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
            committing: Default::default(),
            search_time_limit: DEFAULT_SEARCH_TIME_LIMIT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` events from `first_seq`, each `body_len` bytes of stored text.
    fn appended(first_seq: i64, n: usize, body_len: usize) -> handoff::Appended {
        let event: warden_core::event::Event = serde_json::from_value(serde_json::json!({
            "id": "e", "timestamp": "2026-01-01T00:00:00Z",
            "received_at": "2026-01-01T00:00:00Z", "source": "api",
            "severity": "info", "message": "m"}))
        .unwrap();
        handoff::Appended {
            first_seq,
            tenant: warden_core::Tenant {
                org_id: "org".into(),
                environment: warden_core::tenant::Environment::Live,
            },
            events: vec![event; n],
            bodies: vec!["x".repeat(body_len); n],
        }
    }

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
        let bound = feed.health.allowance();

        feed.keep_up(bound).await;
        assert_eq!(feed.health.waits.get(), 0, "within the bound: no wait");
        assert_eq!(feed.health.unsearchable(0), bound);

        let last = bound + 5_000;
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
        assert_eq!(feed.health.unsearchable(5_000), bound);
        assert_eq!(feed.health.unsearchable(last), 0);
        assert_eq!(feed.health.unsearchable(last + 10), 0, "never negative");
    }

    #[tokio::test]
    async fn a_faster_index_lets_more_stand_unsearchable_before_waiting() {
        let searchable = tokio::sync::watch::Sender::new(0);
        let feed = feed(&searchable);
        let ordinary = health::work(0);
        feed.health.note_commit(
            80_000,
            80_000 * ordinary,
            std::time::Duration::from_secs(1),
            false,
        );
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

    #[tokio::test]
    async fn an_acknowledgment_waits_while_an_older_one_stays_unsearchable() {
        let searchable = tokio::sync::watch::Sender::new(0);
        let feed = feed(&searchable);
        feed.hand_over(appended(1, 1, 300));
        feed.keep_up(1).await;
        feed.hand_over(appended(2, 1, 300));
        feed.keep_up(2).await;
        assert_eq!(feed.health.waits.get(), 0, "nothing old is owed yet");

        // Positions up to 2 owed for longer than allowed (as the log found
        // at start-up is, since then), without the test waiting it out.
        let long_ago = std::time::Instant::now() - health::STALE_AFTER * 2;
        feed.health.note_log_head(2, long_ago);
        feed.hand_over(appended(3, 1, 300));
        let waiting = tokio::spawn({
            let feed = feed.clone();
            async move { feed.keep_up(3).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "within the bound, but stale: it waits"
        );

        // A decision waits on the backlog's size alone.
        feed.leave(appended(4, 1, 300));
        feed.keep_up_within(4, std::time::Duration::from_secs(5))
            .await;
        assert_eq!(feed.health.waits.get(), 0);

        searchable.send_replace(1);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "2 is as old, and still owed");
        searchable.send_replace(2);
        waiting.await.unwrap();
        assert_eq!(feed.health.waits.get(), 1);
        assert!(feed.health.oldest_unsearchable(2).is_some(), "3 and 4 owed");
    }

    #[tokio::test]
    async fn a_few_large_events_wait_as_many_small_ones_would() {
        let searchable = tokio::sync::watch::Sender::new(0);
        let feed = feed(&searchable);
        feed.hand_over(appended(1, 1_000, 300));
        feed.keep_up(1_000).await;
        searchable.send_replace(1_000);
        // Nine events of a mebibyte: more work than allowed unmeasured
        // (8 MiB), though fewer events than allowed.
        feed.hand_over(appended(1_001, 9, 1 << 20));
        assert!(feed.health.allowance() > 9, "{}", feed.health.allowance());
        let waiting = tokio::spawn({
            let feed = feed.clone();
            async move { feed.keep_up(1_009).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "9 MiB owed: it waits");
        searchable.send_replace(1_009);
        waiting.await.unwrap();
        assert_eq!(feed.health.waits.get(), 1);
        assert_eq!(feed.health.unsearchable_work(1_009), 0);
    }

    #[tokio::test]
    async fn an_append_waits_for_room_before_it_is_written() {
        let searchable = tokio::sync::watch::Sender::new(0);
        let feed = feed(&searchable);
        let six = 6 << 20;
        let first = feed.admit(six).await;
        let second = tokio::spawn({
            let feed = feed.clone();
            async move { feed.admit(six).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the room is reserved");
        drop(first); // its append failed: the room is given back
        let second = second.await.unwrap();

        // Appended: owed until searchable.
        feed.hand_over(appended(1, 6, 1 << 20));
        drop(second);
        let third = tokio::spawn({
            let feed = feed.clone();
            async move { feed.admit(six).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "6 MiB owed");
        searchable.send_replace(6);
        drop(third.await.unwrap());
        assert_eq!(feed.health.waits.get(), 2);
    }
}
