//! The consumer that builds this process's search index from the event
//! log. Its cursor lives in the store under the index's own name; on start
//! it removes from the index whatever lies past the cursor (committed to
//! the index after the cursor was last saved), so every event is indexed
//! exactly once however the process stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_core::event::Event;
use warden_search::background::IndexingThread;
use warden_search::index::Logged;
use warden_search::EventIndex;
use warden_store::{LoggedEvent, Store};

use super::handoff::{Appended, Handoff};

/// Most events read from the log, or taken from the hand-over, at a time.
const BATCH: i64 = 5_000;
/// Events read from the log at a time to begin with: what a read takes
/// then grows, read by read, as its events prove small ([`ReadSize`]).
const FIRST_READ: i64 = 100;
/// Most work ([`super::health::work`], about bytes of text) taken from
/// the hand-over at a time, so that a step of large events stays short.
const STEP_WORK: u64 = 4 << 20;
/// How long indexed events may wait to become searchable. A trickle of
/// events (decisions at a few thousand a second) waits this long too: a
/// commit for every few events would cost a segment, its merges and an
/// fsync each.
const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// The least time between commits when the indexer has caught up with a
/// stream: acknowledgments may be waiting for it (back-pressure), so it
/// makes what it indexed searchable sooner.
const BUSY_COMMIT_GAP: Duration = Duration::from_millis(250);
/// Events indexed since the last commit that make it a stream (and its
/// commit a measure of the index's pace).
const BUSY: usize = super::health::PACE_SAMPLE_EVENTS;
/// The same in work: a few hundred large events make a stream too.
const BUSY_WORK: u64 = super::health::PACE_SAMPLE_WORK;
/// How often an idle indexer looks for events appended by other replicas.
const POLL: Duration = Duration::from_millis(100);

/// How often an idle indexer asks whether the store still holds the
/// position it saved (see `run`).
const LOOK_BACK: Duration = Duration::from_secs(1);

pub fn cursor_name(index: &EventIndex) -> String {
    format!("index:{}", index.id())
}

/// How many events to read from the log at a time: up to [`STEP_WORK`]
/// of the size the last read's events were, so that a replay of events of
/// a mebibyte each never holds gigabytes in memory (a read is parsed
/// whole), starting small and at most doubling from one read to the next.
struct ReadSize {
    limit: i64,
}

impl ReadSize {
    fn new() -> Self {
        ReadSize { limit: FIRST_READ }
    }

    /// Learns from a read of `events` events of `bytes` bytes in all.
    fn observed(&mut self, events: usize, bytes: usize) {
        if events == 0 {
            return;
        }
        let each = (bytes / events).max(1) as u64 + super::health::work(0);
        let fits = (STEP_WORK / each).max(1) as i64;
        self.limit = fits.min(self.limit * 2).min(BATCH);
    }
}

/// Follows the log for as long as the process runs.
pub async fn run(
    store: Arc<dyn Store>,
    index: Arc<EventIndex>,
    appended: Arc<tokio::sync::Notify>,
    handoff: Arc<Handoff>,
    searchable: tokio::sync::watch::Sender<i64>,
    health: Arc<super::IndexHealth>,
    committing: Arc<tokio::sync::Mutex<()>>,
) {
    let started = Instant::now();
    // Until the cut below is done the index answers up to the lower of
    // its own last commit and the stored cursor: so say from the start,
    // rather than nothing.
    if let Ok(Some(stored)) = store.consumer_cursor(&cursor_name(&index)).await {
        let held = index.committed_position().unwrap_or(stored);
        searchable.send_replace(stored.min(held).max(0));
    }
    // What the index must catch up with (a replay after a crash) shows
    // in /metrics and readiness from the start, owed since then.
    let head = match store.event_log_head().await {
        Ok(head) => {
            health.note_log_head(head, started);
            if head > *searchable.borrow() {
                health.start_catching_up();
            }
            Some(head)
        }
        Err(err) => {
            tracing::warn!(error = %err, "search indexer cannot read the log's head");
            None
        }
    };
    let mut not_started = warden_core::log_pace::Paced::default();
    let mut start_failing = None;
    let mut cursor = loop {
        match resume(store.as_ref(), &index, Resumption::Start).await {
            Ok(cursor) => {
                drop(start_failing.take());
                searchable.send_replace(cursor);
                break cursor;
            }
            Err(err) => {
                // Readiness says so: the index is not merely behind.
                start_failing.get_or_insert_with(|| health.failing());
                if let Some(unlogged) = not_started.due() {
                    tracing::error!(error = %err, unlogged,
                        "search indexer cannot start; retrying every second");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let replay = head.map_or(0, |head| head - cursor);
    if replay > 0 {
        tracing::info!(
            events = replay,
            "replaying events of the log into the search index: searches miss them until it is done (/readyz says catching_up)"
        );
    } else {
        // The index held all of it after all (its own last commit).
        health.caught_up();
    }
    // Documents are built below request handling (see `background`).
    let indexing = loop {
        match IndexingThread::start("warden-indexer") {
            Ok(thread) => break thread,
            Err(err) => {
                tracing::error!(error = %err, "search indexer cannot start its thread; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut read_size = ReadSize::new();
    let mut indexed_since_commit = 0usize;
    // Their work, for the index's pace.
    let mut work_since_commit = 0u64;
    let mut last_commit = Instant::now();
    // When the indexer began on what its next commit makes searchable:
    // the pace counts the work since then, not the idle time before it.
    let mut working_since = Instant::now();
    // Whether the indexer has had more to read at every step since the
    // last commit: then that commit says how fast the index goes.
    let mut behind = true;
    let mut unreadable = warden_core::log_pace::Paced::default();
    let mut unsaved = warden_core::log_pace::Paced::default();
    let mut failures = Failures::default();
    // The position this process last saved, and when the store was last
    // asked whether it still holds it.
    let mut saved: Option<i64> = None;
    let mut last_look = Instant::now();
    loop {
        if indexed_since_commit == 0 {
            working_since = Instant::now();
        }
        // This process's own appends come in memory when they start at
        // the cursor; anything else is read from the log.
        let (run, run_work) = handoff.take_run(cursor + 1, BATCH as usize, STEP_WORK);
        let idle = if let Some(last) = run.last() {
            let last_seq = last.first_seq + last.events.len() as i64 - 1;
            let events: usize = run.iter().map(|a| a.events.len()).sum();
            let idx = index.clone();
            let step = move || add_appended(&idx, &run);
            if let Err(err) = off_runtime(&indexing, step).await {
                cursor = recover(store.as_ref(), &index, &health, &err, &mut failures).await;
                (indexed_since_commit, work_since_commit) = (0, 0);
                continue;
            }
            cursor = last_seq;
            indexed_since_commit += events;
            work_since_commit += run_work;
            false
        } else {
            // Read before the log: a batch held now was committed before
            // the read below began, and so was every event before it.
            let held_before = handoff.first_held().filter(|first| *first > cursor + 1);
            let limit = match held_before {
                Some(first) => (first - cursor - 1).min(read_size.limit),
                None => read_size.limit,
            };
            let batch = match store.events_after(cursor, limit).await {
                Ok(batch) => {
                    unreadable.reset();
                    batch
                }
                Err(err) => {
                    if let Some(unlogged) = unreadable.due() {
                        tracing::warn!(error = %err, unlogged,
                            "search indexer cannot read the event log; retrying every second");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let held = handoff.first_held();
            if batch.is_empty() {
                if let Some(first) = held_before {
                    // Events before a committed batch are committed too (one
                    // counter, moved in order), and were before the read
                    // began: an empty read means retention removed them.
                    // A batch held only after the read says nothing of
                    // what another replica committed meanwhile.
                    cursor = first - 1;
                    continue;
                }
            }
            let idle = (batch.len() as i64) < limit && held.is_none();
            if let Some(last) = batch.last() {
                let last_seq = last.seq;
                let events = batch.len();
                let bytes: usize = batch.iter().map(|logged| logged.body.len()).sum();
                read_size.observed(batch.len(), bytes);
                let work = bytes as u64 + super::health::work(0) * events as u64;
                let idx = index.clone();
                if let Err(err) = off_runtime(&indexing, move || add_all(&idx, &batch)).await {
                    cursor = recover(store.as_ref(), &index, &health, &err, &mut failures).await;
                    (indexed_since_commit, work_since_commit) = (0, 0);
                    continue;
                }
                cursor = last_seq;
                indexed_since_commit += events;
                work_since_commit += work;
            }
            idle
        };
        behind &= !idle;
        let since = last_commit.elapsed();
        // Caught up with a stream: sooner than the usual spacing.
        let stream = indexed_since_commit >= BUSY || work_since_commit >= BUSY_WORK;
        let gap = if idle && stream {
            BUSY_COMMIT_GAP
        } else {
            COMMIT_EVERY
        };
        let due = since >= gap;
        let commit_now = indexed_since_commit > 0 && due;
        // Before each commit, and once a second while idle.
        if commit_now || (idle && last_look.elapsed() >= LOOK_BACK) {
            last_look = Instant::now();
            if let Some(why) = restored_under(store.as_ref(), &index, saved).await {
                cursor = recover(store.as_ref(), &index, &health, &why, &mut failures).await;
                (indexed_since_commit, work_since_commit, saved) = (0, 0, None);
                searchable.send_replace(cursor);
                if let Ok(head) = store.event_log_head().await {
                    health.log_restored(head);
                }
                continue;
            }
        }
        if commit_now {
            // On a task of its own, holding `committing`: a shutdown that
            // stops this loop lets the commit save its position first.
            let guard = committing.clone().lock_owned().await;
            let (s, idx) = (store.clone(), index.clone());
            let outcome = tokio::spawn(async move {
                let outcome = commit(s.as_ref(), &idx, cursor).await;
                drop(guard);
                outcome
            })
            .await
            .unwrap_or_else(|e| Err(CommitError::Index(e.to_string())));
            let committed = match outcome {
                // The index holds the events and says so itself: searches
                // see them. Its position in the store is saved with a
                // later commit; until then a restart indexes them again.
                Err(CommitError::CursorNotSaved(err)) => {
                    if let Some(unlogged) = unsaved.due() {
                        tracing::warn!(error = %err, unlogged,
                            "the search index committed but its position could not be saved; \
                             it is saved with a later commit");
                    }
                    Ok(())
                }
                Err(CommitError::Index(err)) => Err(err),
                Ok(()) => {
                    unsaved.reset();
                    saved = Some(cursor);
                    Ok(())
                }
            };
            match committed {
                Ok(()) => {
                    failures.cleared();
                    // Behind for a moment (a trickle's one step before a
                    // due commit) says nothing of the pace.
                    let cycle = working_since.elapsed();
                    let measured = behind && cycle >= BUSY_COMMIT_GAP;
                    health.note_commit(indexed_since_commit, work_since_commit, cycle, measured);
                    indexed_since_commit = 0;
                    work_since_commit = 0;
                    behind = true;
                    last_commit = Instant::now();
                    searchable.send_replace(cursor);
                }
                Err(err) => {
                    // The writer may have dropped documents it had taken:
                    // back to the last saved cursor, and read them again.
                    cursor = recover(store.as_ref(), &index, &health, &err, &mut failures).await;
                    (indexed_since_commit, work_since_commit) = (0, 0);
                    continue;
                }
            }
        }
        // Past the head the log had at the start, or nothing more to read
        // with all of it committed (retention may have taken the last).
        let replayed = head.is_some_and(|head| *searchable.borrow() >= head)
            || (idle && indexed_since_commit == 0);
        if replayed && health.is_catching_up() && health.caught_up() {
            tracing::info!(
                events = replay,
                seconds = started.elapsed().as_secs_f64(),
                "the search index caught up with the event log"
            );
        }
        if idle {
            // Wake for new events, or when the pending commit falls due.
            let wait = if indexed_since_commit > 0 {
                gap.saturating_sub(last_commit.elapsed())
            } else {
                POLL
            };
            let _ = tokio::time::timeout(wait, appended.notified()).await;
        }
    }
}

/// Why the index must go back to the store's saved position: a database
/// restored under the running server (a `pg_restore`) takes that position
/// back with the log, and the index would keep events the log no longer
/// holds and skip those appended at positions it had passed. `None` while
/// the store holds the position this process last saved (`saved`).
async fn restored_under(
    store: &dyn Store,
    index: &EventIndex,
    saved: Option<i64>,
) -> Option<String> {
    let ours = saved?;
    let stored = store
        .consumer_cursor(&cursor_name(index))
        .await
        .ok()?
        .unwrap_or(0);
    (stored < ours).then(|| {
        format!(
            "the store's saved position of this index went back from {ours} to {stored}: the \
             database was restored under the running server (stop every server before a \
             restore); taking out what the restored log does not hold and indexing from there \
             again"
        )
    })
}

/// The stored cursor, with the index cut back to it. An index whose own
/// last commit says it holds less (a data dir restored from a snapshot,
/// or copied from another replica) goes on from there instead.
pub async fn resume(
    store: &dyn Store,
    index: &Arc<EventIndex>,
    when: Resumption,
) -> Result<i64, String> {
    let stored = store
        .consumer_cursor(&cursor_name(index))
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or(0);
    let cursor = match index.committed_position() {
        Some(held) if held < stored => {
            tracing::warn!(
                stored,
                held,
                "the search index holds less of the log than its saved position (restored or copied?); indexing the rest again"
            );
            held
        }
        Some(held) if held > stored => {
            match when {
                Resumption::Start => tracing::warn!(
                    stored,
                    held,
                    "the search index holds events past its saved position (a stop before the position was saved, or a store restored from an older copy); taking them out and indexing from the log again"
                ),
                // The failed commit itself got that far.
                Resumption::AfterFailure => tracing::debug!(
                    stored,
                    held,
                    "the failed commit left events past the saved position; taking them out"
                ),
            }
            stored
        }
        _ => stored,
    };
    let idx = index.clone();
    tokio::task::spawn_blocking(move || idx.forget_after(cursor.max(0) as u64))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if cursor > 0 && !same_history(store, index, cursor).await? {
        tracing::warn!(
            position = cursor,
            "the search index was built from another history of the event log (a store restored or copied apart from its index); building it again from the log"
        );
        let idx = index.clone();
        tokio::task::spawn_blocking(move || idx.forget_after(0))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        return Ok(0);
    }
    Ok(cursor)
}

/// Whether the index holds, at its position, the event the log holds
/// there: positions alone agree for a store restored under an index of
/// another history (a copied data dir beside a restored database). True
/// when either has no event there (retention may have removed it).
async fn same_history(
    store: &dyn Store,
    index: &Arc<EventIndex>,
    cursor: i64,
) -> Result<bool, String> {
    let logged = store
        .events_after(cursor - 1, 1)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|e| e.seq == cursor)
        .and_then(|e| serde_json::from_str::<serde_json::Value>(&e.body).ok())
        .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_string));
    let idx = index.clone();
    let indexed = tokio::task::spawn_blocking(move || idx.id_at(cursor as u64))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(match (logged, indexed) {
        (Some(logged), Some(indexed)) => logged == indexed,
        _ => true,
    })
}

/// When [`resume`] runs: what an index past its saved position means.
#[derive(Clone, Copy)]
pub enum Resumption {
    /// At start-up: a stop before the position was saved, or a store
    /// restored from an older copy.
    Start,
    /// After a failed step or commit, whose own work it may be.
    AfterFailure,
}

/// The indexer's failures since its last commit, for its pace and its
/// log: while files or disk space run out every attempt fails at once,
/// and recovering at once would log hundreds of lines a second. Each
/// recovery in a row waits twice as long as the last (from 100 ms, up to
/// 5 s), and one line in a while says how many were not logged.
#[derive(Default)]
struct Failures {
    in_a_row: u32,
    log: warden_core::log_pace::Paced,
}

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

impl Failures {
    /// Counts one, and how long to wait before recovering from it (none
    /// for the first).
    fn another(&mut self) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        match self.in_a_row {
            1 => Duration::ZERO,
            n => FIRST_PAUSE
                .saturating_mul(1 << (n - 2).min(6))
                .min(LONGEST_PAUSE),
        }
    }

    /// A commit went through: the next failure is a first one again, while
    /// the log's pace is kept (failures between successes, as when files
    /// run short, are still logged once a minute with the count since).
    fn cleared(&mut self) {
        self.in_a_row = 0;
    }
}

/// Why a commit did not complete.
pub enum CommitError {
    /// The index did not commit: what its writer took may be lost.
    Index(String),
    /// The index committed (its own last commit records the position) but
    /// the store did not save the position: nothing is lost, and going
    /// back to the saved one would take committed events out again.
    CursorNotSaved(String),
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommitError::Index(why) | CommitError::CursorNotSaved(why) => f.write_str(why),
        }
    }
}

/// Index first, cursor second: a crash between the two leaves events
/// past the cursor, which `resume` removes.
pub async fn commit(
    store: &dyn Store,
    index: &Arc<EventIndex>,
    cursor: i64,
) -> Result<(), CommitError> {
    let idx = index.clone();
    tokio::task::spawn_blocking(move || idx.commit_at(cursor))
        .await
        .map_err(|e| CommitError::Index(e.to_string()))?
        .map_err(|e| CommitError::Index(e.to_string()))?;
    store
        .set_consumer_cursor(&cursor_name(index), Some(cursor))
        .await
        .map_err(|e| CommitError::CursorNotSaved(e.to_string()))
}

/// After a step or commit failed: drops what the writer took since its
/// last commit and goes back to the saved cursor (removing anything
/// committed past it), retrying until the index answers. Returns the
/// cursor to read on from; nothing acknowledged is skipped, nothing is
/// indexed twice.
async fn recover(
    store: &dyn Store,
    index: &Arc<EventIndex>,
    health: &super::IndexHealth,
    why: &str,
    failures: &mut Failures,
) -> i64 {
    health.failures.inc();
    let pause = failures.another();
    if let Some(unlogged) = failures.log.due() {
        tracing::error!(error = %why, unlogged, in_a_row = failures.in_a_row,
            "search indexer failed; going back to its saved cursor");
    }
    let _failing = health.failing();
    tokio::time::sleep(pause).await;
    loop {
        let idx = index.clone();
        let rolled_back = tokio::task::spawn_blocking(move || idx.rollback()).await;
        let outcome = match rolled_back {
            Ok(Ok(())) => resume(store, index, Resumption::AfterFailure).await,
            Ok(Err(err)) => Err(err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match outcome {
            Ok(cursor) => return cursor,
            Err(err) => {
                // Another failure in the row: counted, and waited for
                // as the others.
                health.failures.inc();
                let pause = failures.another();
                if let Some(unlogged) = failures.log.due() {
                    tracing::error!(error = %err, unlogged, "search indexer cannot recover yet; retrying");
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Runs a step on a thread below requests (the indexing priority); an
/// error when the step failed, panicked or the thread has stopped.
pub(crate) async fn off_runtime<T: Send + 'static>(
    indexing: &IndexingThread,
    step: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    let submitted = indexing.submit(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(step))
            .unwrap_or_else(|_| Err("an indexing step panicked".into()));
        let _ = done.send(result);
    });
    if !submitted {
        return Err("the indexing thread has stopped".into());
    }
    outcome
        .await
        .unwrap_or_else(|_| Err("the indexing thread has stopped".into()))
}

/// Adds a run of this process's appends in one hand-over to the writer;
/// an error when the writer refuses it (its threads have failed), which
/// takes the run back to the log.
fn add_appended(index: &EventIndex, run: &[Appended]) -> Result<(), String> {
    let events = run.iter().flat_map(|appended| {
        appended
            .events
            .iter()
            .zip(&appended.bodies)
            .enumerate()
            .map(|(i, (event, body))| Logged {
                seq: (appended.first_seq + i as i64) as u64,
                org_id: &appended.tenant.org_id,
                environment: appended.tenant.environment.as_str(),
                event,
                json: body,
            })
    });
    index.add_batch(events).map_err(|e| e.to_string())
}

/// Adds events read from the log; one that does not parse is skipped (it
/// never will), a writer that refuses one is an error.
pub fn add_all(index: &EventIndex, batch: &[LoggedEvent]) -> Result<(), String> {
    let parsed: Vec<(&LoggedEvent, Event)> = batch
        .iter()
        .filter_map(|logged| match serde_json::from_str(&logged.body) {
            Ok(event) => Some((logged, event)),
            Err(err) => {
                tracing::error!(seq = logged.seq, error = %err, "an event in the log does not parse; not indexed");
                None
            }
        })
        .collect();
    let events = parsed.iter().map(|(logged, event)| Logged {
        seq: logged.seq as u64,
        org_id: &logged.tenant.org_id,
        environment: logged.tenant.environment.as_str(),
        event,
        json: &logged.body,
    });
    index.add_batch(events).map_err(|e| e.to_string())
}

/// Indexes the whole log from the start into an empty index and saves the
/// cursor; `warden reindex`.
pub async fn rebuild(store: &dyn Store, index: &Arc<EventIndex>) -> Result<i64, String> {
    store
        .set_consumer_cursor(&cursor_name(index), None)
        .await
        .map_err(|e| e.to_string())?;
    let idx = index.clone();
    tokio::task::spawn_blocking(move || idx.forget_after(0))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut cursor = 0;
    let mut read_size = ReadSize::new();
    loop {
        let batch = store
            .events_after(cursor, read_size.limit)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = batch.last() else { break };
        cursor = last.seq;
        read_size.observed(batch.len(), batch.iter().map(|e| e.body.len()).sum());
        let idx = index.clone();
        tokio::task::spawn_blocking(move || add_all(&idx, &batch))
            .await
            .map_err(|e| e.to_string())??;
    }
    commit(store, index, cursor)
        .await
        .map_err(|e| e.to_string())?;
    Ok(cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_between_successes_keep_the_logs_pace() {
        let mut failures = Failures::default();
        assert_eq!(failures.another(), Duration::ZERO);
        assert_eq!(failures.log.due(), Some(0));
        assert_eq!(failures.another(), FIRST_PAUSE);
        failures.cleared();
        // A first failure again, waiting for nothing, but not logged
        // within the minute: counted for the next line.
        assert_eq!(failures.another(), Duration::ZERO);
        assert_eq!(failures.log.due(), None);
        assert_eq!(failures.log.due(), None);
    }

    #[test]
    fn reads_grow_while_events_are_small_and_shrink_for_large_ones() {
        let mut read = ReadSize::new();
        assert_eq!(read.limit, FIRST_READ);
        let mut limits = Vec::new();
        for _ in 0..8 {
            read.observed(read.limit as usize, read.limit as usize * 300);
            limits.push(read.limit);
        }
        assert_eq!(limits, [200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000]);

        // Events of a mebibyte: three at a time, never gigabytes.
        read.observed(5_000, 5_000 << 20);
        assert_eq!(read.limit, 3);
        read.observed(3, 3 << 20);
        assert_eq!(read.limit, 3);
        read.observed(0, 0);
        assert_eq!(read.limit, 3, "an empty read says nothing");
    }
}
