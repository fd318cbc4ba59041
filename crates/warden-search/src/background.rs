//! Index building runs below request handling in the scheduler's order.
//!
//! Building the index is catch-up work: a decision must be answered within
//! a millisecond, an event only be searchable within a second. On one busy
//! core the two compete, and tantivy's writer threads (indexing, segment
//! flushes, merges) would otherwise take whole time slices from the
//! threads that answer requests, which shows as milliseconds of tail
//! latency on decisions. Every thread that builds the index runs in
//! Linux's `SCHED_IDLE` class instead: it gets the core whenever requests
//! leave it idle, and only a sliver while they keep it busy. Requests that
//! append faster than the index follows are slowed by the feed's
//! back-pressure, which leaves the indexer its idle time.
//!
//! Linux keeps the scheduling class per thread, and a thread starts with
//! its creator's, so the writer threads tantivy spawns inherit it from the
//! thread that creates the writer or starts its commit. Where the class
//! cannot be set, the thread falls back to a raised nice value. Elsewhere
//! this is a no-op: other systems apply such calls to the whole process.

use std::sync::mpsc;

/// The nice value of index-building threads where `SCHED_IDLE` is refused
/// (0 is normal, 19 the lowest): under contention such a thread gets about
/// a tenth of the share of a normal one.
pub const FALLBACK_NICE: i32 = 10;

/// Moves the calling thread to the idle scheduling class (or, failing
/// that, to [`FALLBACK_NICE`]); never raises its priority.
/// Irreversible without privileges: call it only on threads that build the
/// index for the rest of their life.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: these calls take plain integers and a parameter struct
        // that lives across the call; gettid names this thread.
        let tid = unsafe { libc::gettid() };
        let idle = libc::sched_param { sched_priority: 0 };
        if unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &idle) } == 0 {
            return;
        }
        let who = tid as libc::id_t;
        if unsafe { libc::getpriority(libc::PRIO_PROCESS, who) } >= FALLBACK_NICE {
            return;
        }
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, who, FALLBACK_NICE) } != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "cannot lower the indexing thread's priority"
            );
        }
    }
}

/// Runs `work` on a new thread at the indexing priority and waits for it;
/// threads it creates (tantivy's writer threads) keep that priority.
/// A panic in `work` resumes in the caller.
pub fn at_indexing_priority<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("warden-index-setup".into())
            .spawn_scoped(scope, || {
                lower_this_thread();
                work()
            })
            .expect("cannot start a thread");
        match handle.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

type Job = Box<dyn FnOnce() + Send>;

/// One long-lived thread at the indexing priority that runs the steps
/// given to it in order: turning logged events into documents and handing
/// them to the writer.
pub struct IndexingThread {
    jobs: mpsc::Sender<Job>,
}

impl IndexingThread {
    /// Starts the thread under `name` (what `top -H` and `/proc` show, cut
    /// to 15 bytes), so each user's CPU can be told apart.
    pub fn start(name: &str) -> std::io::Result<Self> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                lower_this_thread();
                while let Ok(job) = receiver.recv() {
                    job();
                }
            })?;
        Ok(IndexingThread { jobs })
    }

    /// Queues `job`; false when the thread has stopped.
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) -> bool {
        self.jobs.send(Box::new(job)).is_ok()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn policy_of_this_thread() -> i32 {
        // SAFETY: as above.
        unsafe { libc::sched_getscheduler(libc::gettid()) }
    }

    #[test]
    fn index_work_and_the_threads_it_starts_run_in_the_idle_class() {
        let before = policy_of_this_thread();
        assert_ne!(
            before,
            libc::SCHED_IDLE,
            "the test starts on a normal thread"
        );
        let (inner, outer) = at_indexing_priority(|| {
            let outer = policy_of_this_thread();
            let inner = std::thread::spawn(policy_of_this_thread).join().unwrap();
            (inner, outer)
        });
        assert_eq!(outer, libc::SCHED_IDLE);
        assert_eq!(
            inner,
            libc::SCHED_IDLE,
            "a thread started by index work inherits its class"
        );
        assert_eq!(
            policy_of_this_thread(),
            before,
            "the caller keeps its own class"
        );

        let thread = IndexingThread::start("warden-test").unwrap();
        let (tx, rx) = mpsc::channel();
        assert!(thread.submit(move || tx.send(policy_of_this_thread()).unwrap()));
        assert_eq!(rx.recv().unwrap(), libc::SCHED_IDLE);
    }
}
