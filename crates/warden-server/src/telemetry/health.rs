//! How far the search index trails what this process acknowledged, and
//! how much it may trail before acknowledgments wait (back-pressure): the
//! one-second searchable promise, kept however fast and however large
//! events come and whatever else the machine is doing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

/// The share of the one-second promise the index's backlog may take:
/// acknowledgments wait while the unsearchable events are more than the
/// index makes searchable in this long. Indexing runs only on time that
/// requests leave idle (`warden_search::background`), so what it clears in
/// this long is measured as it goes ([`IndexHealth::note_commit`]), not
/// assumed.
const BACKLOG_WITHIN: Duration = Duration::from_millis(500);
/// An acknowledgment also waits while an event acknowledged longer ago
/// than this is still unsearchable: the index has fallen behind its
/// measured pace (searches or other work took its time), and letting more
/// in would only lengthen the wait of everything behind. Above the usual
/// commit spacing (500 ms), so a trickle never waits for it.
pub const STALE_AFTER: Duration = Duration::from_millis(700);
/// What indexing an event costs beyond its text, in bytes of text the
/// index takes in the same time (its document, fields and commit share).
/// Work is counted in these units so that a pace measured on ordinary
/// events of a few hundred bytes still bounds a backlog of 64 KiB events.
const PER_EVENT_WORK: u64 = 512;
/// The backlog allowed before the index's pace is known: about 10,000
/// ordinary events, which two cores clear in about a third of a second on
/// the time requests leave the indexer.
const INITIAL_WORK: u64 = 8 << 20;
/// The least ever allowed once the pace is known (a busy machine, or
/// events of tens of KiB each, can bring the pace very low).
const MIN_WORK: u64 = 256 << 10;
/// The most ever allowed, whatever the pace: what the indexer is handed
/// in memory ([`super::handoff::MAX_HELD_WORK`]), so that a backlog within
/// the bound is never read back from the store.
const MAX_WORK: u64 = super::handoff::MAX_HELD_WORK;
/// The most events ever allowed, for the same reason.
const MAX_EVENTS: i64 = super::handoff::MAX_HELD as i64;
/// Events a commit must have made searchable for its pace to count when
/// the indexer caught up before it: a trickle's commits say how often
/// events come, not how fast the index goes. A commit the indexer reached
/// without ever catching up counts whatever it held.
pub const PACE_SAMPLE_EVENTS: usize = 2_000;
/// The same in work: a commit of a few hundred large events says how fast
/// the index takes them, and back-pressure keeps the indexer from ever
/// falling behind long enough to count otherwise (a pace measured on
/// ordinary events then stayed, and allowed seconds of large ones).
pub const PACE_SAMPLE_WORK: u64 = 2 << 20;
/// Acknowledgments close together share one entry of the age ledger.
const COALESCE: Duration = Duration::from_millis(5);
/// Entries the age ledger keeps at most (a stalled index under a flood
/// of decisions); past it, new acknowledgments join the newest entry.
const MAX_LEDGER: usize = 100_000;
/// Least time between two warnings that the index trails.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// The work of indexing an event whose stored text is `body_len` bytes.
pub fn work(body_len: usize) -> u64 {
    body_len as u64 + PER_EVENT_WORK
}

/// What `/metrics` says of the index, and what back-pressure decides on:
/// how far it trails what this process acknowledged, how fast it goes, and
/// how often acknowledgments waited for it.
#[derive(Default)]
pub struct IndexHealth {
    /// The highest log position this process acknowledged.
    acknowledged: AtomicI64,
    /// Acknowledgments that waited for the index (back-pressure).
    pub waits: Counter,
    /// Time those acknowledgments spent waiting.
    pub waited_seconds: Counter<f64, AtomicU64>,
    /// Steps or commits of the indexer that failed (it went back to its
    /// saved position each time).
    pub failures: Counter,
    /// Set while the indexer fails and retries: nothing new becomes
    /// searchable until it recovers, which readiness reports.
    failing: AtomicBool,
    /// Set once a search found the index damaged on disk: it stays so
    /// until a rebuild (`warden reindex`).
    damaged: AtomicBool,
    /// Set from the start while the index replays what the log held then
    /// and it did not (after a crash, a lost or new index directory):
    /// searches miss those events until it is done.
    catching_up: AtomicBool,
    /// Work a second ([`work`]) the index has been making searchable while
    /// busy (a moving average; 0 until measured).
    pace: AtomicU64,
    /// The work of an event appended lately (a moving average).
    work_per_event: AtomicU64,
    /// What this process appended that its index does not yet return.
    ledger: Mutex<Ledger>,
    last_warning: Mutex<Option<Instant>>,
}

/// Appends not yet searchable, oldest first: (the highest position in
/// the entry, when its first append was handed to the indexer, its work);
/// appends close together share an entry.
#[derive(Default)]
struct Ledger {
    entries: VecDeque<(i64, Instant, u64)>,
    work: u64,
    /// Work admitted ([`IndexHealth::try_admit`]) and not yet appended.
    reserved: u64,
}

impl Ledger {
    /// Forgets what the index returns up to `searchable`.
    fn clear_through(&mut self, searchable: i64) {
        while let Some(&(seq, _, work)) = self.entries.front() {
            if seq > searchable {
                break;
            }
            self.work -= work;
            self.entries.pop_front();
        }
    }
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

    /// Says the index has a replay of the log ahead of it.
    pub fn start_catching_up(&self) {
        self.catching_up.store(true, Ordering::Relaxed);
    }

    pub fn is_catching_up(&self) -> bool {
        self.catching_up.load(Ordering::Relaxed)
    }

    /// The indexer found nothing more in the log and has committed all it
    /// read: the replay is over, whatever position it stopped at (retention
    /// may have removed the log's last events before they were indexed, so
    /// the replay's debt is forgiven rather than left to age). Returns
    /// whether a replay was under way.
    pub fn caught_up(&self) -> bool {
        let was = self.catching_up.swap(false, Ordering::Relaxed);
        if was {
            let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
            // The replay's entry is the one that owes no work.
            ledger.entries.retain(|(_, _, work)| *work != 0);
        }
        was
    }

    /// Counts a commit of `events` costing `work`, made searchable `cycle`
    /// after the indexer began on them (the commit included), into the
    /// index's pace when it says how fast the index goes: the indexer
    /// stayed `behind` (always more to read) until it, or it held at least
    /// [`PACE_SAMPLE_EVENTS`] or [`PACE_SAMPLE_WORK`].
    pub fn note_commit(&self, events: usize, work: u64, cycle: Duration, behind: bool) {
        let sample_size = events >= PACE_SAMPLE_EVENTS || work >= PACE_SAMPLE_WORK;
        if events == 0 || cycle.is_zero() || !(behind || sample_size) {
            return;
        }
        let sample = work as f64 / cycle.as_secs_f64();
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

    /// Notes an append of `events` up to `last_seq`, costing `work`,
    /// handed to the indexer now: it is owed to the index until the index
    /// returns `last_seq`.
    pub fn note_appended(&self, last_seq: i64, events: usize, work: u64) {
        if events == 0 {
            return;
        }
        let each = work / events as u64;
        let before = self.work_per_event.load(Ordering::Relaxed);
        let average = if before == 0 {
            each
        } else {
            (before * 7 + each * 3) / 10
        };
        self.work_per_event.store(average.max(1), Ordering::Relaxed);

        let now = Instant::now();
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.work += work;
        let full = ledger.entries.len() >= MAX_LEDGER;
        match ledger.entries.back_mut() {
            Some((seq, since, owed)) if full || now.duration_since(*since) < COALESCE => {
                *seq = (*seq).max(last_seq);
                *owed += work;
            }
            _ => ledger.entries.push_back((last_seq, now, work)),
        }
    }

    /// Work the index may owe before acknowledgments wait: what it makes
    /// searchable in [`BACKLOG_WITHIN`] at its measured pace.
    pub fn allowed_work(&self) -> u64 {
        match self.pace.load(Ordering::Relaxed) {
            0 => INITIAL_WORK,
            pace => ((pace as f64 * BACKLOG_WITHIN.as_secs_f64()) as u64).clamp(MIN_WORK, MAX_WORK),
        }
    }

    /// The same in events of the size appended lately: what bounds a
    /// backlog whose events this process did not append (a replay after a
    /// start, another replica's events).
    pub fn allowance(&self) -> i64 {
        let each = self.work_per_event.load(Ordering::Relaxed).max(work(0));
        ((self.allowed_work() / each) as i64).clamp(1, MAX_EVENTS)
    }

    /// Counts the log's events up to `head` as owed to the index since
    /// `since` (the process's start): what it must index again (a replay
    /// after a crash) shows in [`Self::unsearchable`] and [`Self::lag`]
    /// like a backlog of this process's own, though not in its work (the
    /// events' sizes are not known without reading them).
    pub fn note_log_head(&self, head: i64, since: Instant) {
        self.acknowledged.fetch_max(head, Ordering::Relaxed);
        // The oldest debt there is: before anything appended since.
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.entries.push_front((head, since, 0));
    }

    /// The log was restored under the running process, its head now at
    /// `head`: what this process appended before lies at positions the
    /// log has given back, so its debts are forgotten (or they would hold
    /// every acknowledgment until the log grew past them), and the index
    /// owes the restored log from now.
    pub fn log_restored(&self, head: i64) {
        self.acknowledged.store(head, Ordering::Relaxed);
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.entries.clear();
        ledger.work = 0;
        ledger.entries.push_front((head, Instant::now(), 0));
    }

    /// Notes events up to `last_seq` acknowledged (or about to be).
    pub fn note_acknowledged(&self, last_seq: i64) {
        self.acknowledged.fetch_max(last_seq, Ordering::Relaxed);
    }

    /// The work of what this process appended that the index does not
    /// return, given the position it has made searchable.
    pub fn unsearchable_work(&self, searchable: i64) -> u64 {
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.clear_through(searchable);
        ledger.work
    }

    /// Admits an append of `work` when what the index owes, with what
    /// others were admitted to append, leaves room for it within
    /// [`Self::allowed_work`] (or owes nothing: a batch larger than the
    /// bound goes alone), and reserves its room; `force` admits it
    /// whatever is owed (it waited the longest allowed). Admitting before
    /// the append, not after, keeps the batches in flight inside the
    /// bound: after it, each client's last batch (up to 10 MiB) was
    /// appended before it waited, and four of them held seconds of work.
    pub fn try_admit(&self, searchable: i64, work: u64, force: bool) -> bool {
        let allowed = self.allowed_work();
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.clear_through(searchable);
        let owed = ledger.work + ledger.reserved;
        let fits = owed == 0 || owed + work <= allowed;
        if fits || force {
            ledger.reserved += work;
        }
        fits || force
    }

    /// Gives back the room [`Self::try_admit`] reserved, once the append
    /// is in the ledger (or failed).
    pub fn release(&self, work: u64) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.reserved = ledger.reserved.saturating_sub(work);
    }

    /// When the oldest append the index does not yet return was handed to
    /// it, given the position it has made searchable.
    pub fn oldest_unsearchable(&self, searchable: i64) -> Option<Instant> {
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.clear_through(searchable);
        ledger.entries.front().map(|(_, since, _)| *since)
    }

    /// Whether the index, at `searchable`, owes more work than `allowed`
    /// or, given `began`, an append handed over before `began` minus
    /// [`STALE_AFTER`]: what holds an acknowledgment back, read under one
    /// lock.
    pub fn owes_too_much(&self, searchable: i64, allowed: u64, began: Option<Instant>) -> bool {
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.clear_through(searchable);
        let stale = |since: Instant| began.is_some_and(|began| since + STALE_AFTER < began);
        ledger.work > allowed
            || ledger
                .entries
                .front()
                .is_some_and(|(_, since, _)| stale(*since))
    }

    /// Whether an append handed over before `began` minus [`STALE_AFTER`]
    /// is still unsearchable.
    pub fn trails_since_before(&self, searchable: i64, began: Instant) -> bool {
        self.owes_too_much(searchable, u64::MAX, Some(began))
    }

    /// How long the oldest append the index does not yet return has
    /// waited (zero when it returns them all).
    pub fn lag(&self, searchable: i64) -> Duration {
        self.oldest_unsearchable(searchable)
            .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Events this process acknowledged (or found in the log on start)
    /// that its index does not yet return, given the position the index
    /// has made searchable.
    pub fn unsearchable(&self, searchable: i64) -> i64 {
        (self.acknowledged.load(Ordering::Relaxed) - searchable).max(0)
    }

    /// Says in the log, at most every [`WARN_EVERY`], that an
    /// acknowledgment waited as long as it may: the index trails far
    /// behind (a replay, a starved machine), though nothing is lost.
    pub fn warn_trailing(&self, searchable: i64, waited: Duration) {
        let now = Instant::now();
        {
            let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
                return;
            }
            *last = Some(now);
        }
        tracing::warn!(
            unsearchable_events = self.unsearchable(searchable),
            oldest_unsearchable_seconds = self.lag(searchable).as_secs_f64(),
            waited_seconds = waited.as_secs_f64(),
            "the search index trails acknowledged events; acknowledgments wait for it (the events are durable)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDINARY: u64 = 300;

    #[test]
    fn a_replay_on_start_counts_as_unsearchable_and_owed_since_the_start() {
        let health = IndexHealth::default();
        let start = Instant::now() - Duration::from_secs(6);
        health.note_appended(25_001, 1, 100);
        health.note_log_head(25_000, start);
        assert_eq!(health.unsearchable(20_000), 5_000);
        assert_eq!(health.oldest_unsearchable(20_000), Some(start));
        assert!(health.lag(20_000) >= Duration::from_secs(6));
        assert_eq!(health.unsearchable_work(20_000), 100, "sizes unknown");
        assert!(health.oldest_unsearchable(25_000).unwrap() > start);
        health.note_log_head(10, start);
        assert_eq!(health.unsearchable(20_000), 5_000, "never moves back");
        assert!(health.oldest_unsearchable(25_001).is_none());
    }

    #[test]
    fn a_replay_ends_when_the_log_has_nothing_more() {
        let health = IndexHealth::default();
        let start = Instant::now() - Duration::from_secs(6);
        health.note_log_head(500, start);
        health.start_catching_up();
        health.note_appended(501, 1, 100);
        assert!(health.is_catching_up());
        // Retention removed the log's last events before they were
        // indexed: the position stays short of the head, and the replay
        // still ends, its debt forgiven; this process's own append stays.
        assert!(health.caught_up());
        assert!(!health.is_catching_up());
        assert!(health.oldest_unsearchable(400).unwrap() > start);
        assert_eq!(health.unsearchable_work(400), 100);
        assert!(!health.caught_up(), "told once");
    }

    #[test]
    fn the_allowance_follows_the_pace_the_index_keeps() {
        let second = Duration::from_secs(1);
        let health = IndexHealth::default();
        let each = work(ORDINARY as usize);
        health.note_appended(1_000, 1_000, 1_000 * each);
        assert_eq!(health.allowed_work(), INITIAL_WORK, "unmeasured");
        assert_eq!(health.allowance(), (INITIAL_WORK / each) as i64);

        health.note_commit(20_000, 20_000 * each, second, false);
        assert_eq!(health.allowance(), 10_000, "half a second at 20,000/s");
        assert_eq!(health.allowed_work(), 10_000 * each);

        health.note_commit(1_999, 1_999 * each, Duration::from_millis(1), false);
        assert_eq!(
            health.allowance(),
            10_000,
            "a trickle's commit says nothing"
        );

        // Slower commits pull it down: a busy machine.
        for _ in 0..40 {
            health.note_commit(2_000, 2_000 * each, second, false);
        }
        assert_eq!(health.allowance(), 1_000);
        // An indexer that never caught up counts however few it held.
        for _ in 0..40 {
            health.note_commit(1_000, 1_000 * each, second, true);
        }
        assert_eq!(health.allowance(), 500);
        for _ in 0..40 {
            health.note_commit(10, 10 * each, second, true);
        }
        assert_eq!(health.allowed_work(), MIN_WORK, "the floor");

        for _ in 0..40 {
            health.note_commit(10_000_000, 10_000_000 * each, second, true);
        }
        assert_eq!(health.allowed_work(), MAX_WORK, "capped");
        assert_eq!(health.allowance(), (MAX_WORK / each) as i64);
    }

    #[test]
    fn large_events_fill_the_backlog_sooner() {
        let health = IndexHealth::default();
        let ordinary = work(ORDINARY as usize);
        health.note_appended(1_000, 1_000, 1_000 * ordinary);
        // 40,000 ordinary events a second: half a second's work allowed.
        health.note_commit(40_000, 40_000 * ordinary, Duration::from_secs(1), true);
        let allowed = health.allowed_work();
        assert_eq!(allowed, 20_000 * ordinary);
        assert_eq!(health.unsearchable_work(0), 1_000 * ordinary);

        // Appends apart, each in an entry of its own.
        let large = work(64 << 10);
        std::thread::sleep(COALESCE * 2);
        health.note_appended(1_100, 100, 100 * large);
        assert!(health.unsearchable_work(0) <= allowed);
        std::thread::sleep(COALESCE * 2);
        health.note_appended(1_250, 150, 150 * large);
        assert!(
            health.unsearchable_work(0) > allowed,
            "250 events of 64 KiB"
        );
        assert!(health.unsearchable_work(1_000) > allowed);
        assert_eq!(health.unsearchable_work(1_100), 150 * large);
        assert_eq!(health.unsearchable_work(1_250), 0);
        // A backlog of events not appended here is bounded in events of
        // the size appended lately.
        assert!(health.allowance() < 1_000, "{}", health.allowance());

        // Forty large events make a commit that counts, though the
        // indexer caught up before it: the pace follows them down.
        for _ in 0..60 {
            health.note_commit(40, 40 * large, Duration::from_secs(1), false);
        }
        assert_eq!(health.allowed_work(), 20 * large);
    }

    #[test]
    fn appends_are_admitted_while_they_fit_and_one_at_a_time_when_large() {
        let health = IndexHealth::default();
        let allowed = health.allowed_work();
        assert!(health.try_admit(0, allowed / 2, false));
        assert!(health.try_admit(0, allowed / 2, false), "exactly the bound");
        assert!(!health.try_admit(0, 1, false), "reserved room counts");
        health.release(allowed / 2);
        health.note_appended(100, 100, allowed / 2);
        health.release(allowed / 2);
        std::thread::sleep(COALESCE * 2); // an entry of its own
        health.note_appended(200, 100, allowed / 2);
        assert!(!health.try_admit(100, allowed, false), "half still owed");
        assert!(health.try_admit(100, allowed / 2, false));
        health.release(allowed / 2);
        // A batch larger than the bound goes when nothing is owed.
        assert!(!health.try_admit(199, allowed * 2, false));
        assert!(health.try_admit(200, allowed * 2, false));
        assert!(!health.try_admit(200, 1, false), "it fills the room");
        assert!(health.try_admit(200, 1, true), "unless forced");
    }

    #[test]
    fn the_ledger_says_how_long_the_oldest_append_waits() {
        let health = IndexHealth::default();
        assert!(health.oldest_unsearchable(0).is_none());
        let before = Instant::now();
        health.note_appended(10, 1, 100);
        std::thread::sleep(COALESCE * 2);
        let second = Instant::now();
        health.note_appended(20, 1, 100);
        health.note_appended(15, 1, 100); // out of order: joins the newest entry
        let oldest = health.oldest_unsearchable(0).unwrap();
        assert!(oldest >= before && oldest < second);
        assert_eq!(health.oldest_unsearchable(9), Some(oldest), "10 still owed");
        assert_eq!(health.unsearchable_work(9), 300);
        let next = health.oldest_unsearchable(10).unwrap();
        assert!(next >= second, "the first entry is searchable");
        assert_eq!(health.unsearchable_work(10), 200);
        assert_eq!(health.oldest_unsearchable(19), Some(next), "20 owed");
        assert!(health.oldest_unsearchable(20).is_none());
        assert_eq!(health.unsearchable_work(20), 0);

        health.note_acknowledged(20);
        assert_eq!(health.unsearchable(12), 8);

        health.note_appended(30, 1, 100);
        let later = Instant::now() + STALE_AFTER + Duration::from_millis(1);
        assert!(health.trails_since_before(20, later));
        assert!(!health.trails_since_before(20, Instant::now()));
        assert!(!health.trails_since_before(30, later));
    }
}
