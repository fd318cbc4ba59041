//! A request's CPU-heavy work (inflating and parsing an upload of
//! thousands of events, serializing them, walking the audit chain) run
//! where it does not hold a request worker: the runtime has one worker a
//! core, and work that never awaits keeps every request queued behind it
//! waiting, any organization's and the health probes' included. Moved
//! aside, it shares the cores with them instead.

use std::future::Future;

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work` with the current worker's queue handed to another thread
/// meanwhile; where that cannot be done (a single-threaded runtime, none
/// at all), runs it in place.
pub fn off_workers<R>(work: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// [`off_workers`] for a future whose work is mostly its own CPU (the
/// embedded store reads on the calling thread): it is driven to its end
/// there.
pub async fn off_workers_async<F: Future>(work: F) -> F::Output {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(work))
        }
        _ => work.await,
    }
}
