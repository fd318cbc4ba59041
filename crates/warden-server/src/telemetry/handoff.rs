//! Events this process just appended, handed to its indexer in memory so
//! that it need not read them back from the store and parse them again.
//! The log stays the truth: the indexer takes a batch only when it starts
//! exactly at its cursor, and reads the store for everything else (other
//! replicas' events, batches dropped when it lags).

use std::collections::BTreeMap;
use std::sync::Mutex;

use warden_core::event::Event;
use warden_core::Tenant;

/// Most events held for the indexer; past this, batches are dropped and
/// the indexer reads them from the store.
pub const MAX_HELD: usize = 50_000;

/// A committed append: its first sequence number, events and their text.
pub struct Appended {
    pub first_seq: i64,
    pub tenant: Tenant,
    pub events: Vec<Event>,
    pub bodies: Vec<String>,
}

#[derive(Default)]
pub struct Handoff {
    pending: Mutex<(BTreeMap<i64, Appended>, usize)>,
}

impl Handoff {
    pub fn offer(&self, batch: Appended) {
        let mut guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (pending, held) = &mut *guard;
        if *held + batch.events.len() <= MAX_HELD {
            *held += batch.events.len();
            pending.insert(batch.first_seq, batch);
        }
    }

    /// The batch that starts at `next`, forgetting any that start before.
    fn take(&self, next: i64) -> Option<Appended> {
        let mut guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (pending, held) = &mut *guard;
        while let Some(entry) = pending.first_entry() {
            if *entry.key() > next {
                return None;
            }
            let batch = entry.remove();
            *held -= batch.events.len();
            if batch.first_seq == next {
                return Some(batch);
            }
        }
        None
    }

    /// The batches that follow each other from `next`, up to about `most`
    /// events, forgetting any that start before `next`.
    pub fn take_run(&self, next: i64, most: usize) -> Vec<Appended> {
        let mut run = Vec::new();
        let mut next = next;
        let mut events = 0;
        while events < most {
            let Some(batch) = self.take(next) else { break };
            next = batch.first_seq + batch.events.len() as i64;
            events += batch.events.len();
            run.push(batch);
        }
        run
    }

    /// Where the first held batch starts.
    pub fn first_held(&self) -> Option<i64> {
        let guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.keys().next().copied()
    }
}

/// Events numbered from `first_seq`, in order, cut into runs of one
/// tenant each.
pub fn by_tenant(
    first_seq: i64,
    events: impl IntoIterator<Item = ((Tenant, Event), String)>,
) -> Vec<Appended> {
    let mut runs: Vec<Appended> = Vec::new();
    for (next_seq, ((tenant, event), body)) in (first_seq..).zip(events) {
        match runs.last_mut() {
            Some(run) if run.tenant == tenant => {
                run.events.push(event);
                run.bodies.push(body);
            }
            _ => runs.push(Appended {
                first_seq: next_seq,
                tenant,
                events: vec![event],
                bodies: vec![body],
            }),
        }
    }
    runs
}
