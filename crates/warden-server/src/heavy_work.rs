//! A request's CPU-heavy work (inflating and parsing an upload of
//! thousands of events, serializing them, walking the audit chain,
//! conditions looping over a large call) run where it does not hold a
//! request worker: the runtime has one worker a core, and work that never
//! awaits keeps every request queued behind it waiting, any
//! organization's and the health probes' included. Moved aside, it shares
//! the cores with them instead.

use std::future::Future;

use tokio::runtime::{Handle, RuntimeFlavor};

/// Events past which mapping or serializing a request's events is heavy
/// work (thousands take milliseconds).
pub const HEAVY_EVENTS: usize = 256;

/// The runtime whose worker can hand its queue to another thread; `None`
/// on a single-threaded runtime or outside one, where work runs in place.
fn worker_pool() -> Option<Handle> {
    Handle::try_current()
        .ok()
        .filter(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
}

/// Runs `work` with the current worker's queue handed to another thread
/// meanwhile, where it can be.
pub fn off_workers<R>(work: impl FnOnce() -> R) -> R {
    match worker_pool() {
        Some(_) => tokio::task::block_in_place(work),
        None => work(),
    }
}

/// [`off_workers`] when `heavy`; in place otherwise (the hand-off costs
/// a thread's wake-up, more than light work).
pub fn off_workers_if<R>(heavy: bool, work: impl FnOnce() -> R) -> R {
    if heavy {
        off_workers(work)
    } else {
        work()
    }
}

/// [`off_workers`] for a future whose work is mostly its own CPU (the
/// embedded store reads on the calling thread): it is driven to its end
/// there.
pub async fn off_workers_async<F: Future>(work: F) -> F::Output {
    match worker_pool() {
        Some(handle) => tokio::task::block_in_place(|| handle.block_on(work)),
        None => work.await,
    }
}
