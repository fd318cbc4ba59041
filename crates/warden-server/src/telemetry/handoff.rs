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
/// Most work ([`super::health::work`], about bytes of text) held for the
/// indexer, so that large events cannot pile up in memory.
pub const MAX_HELD_WORK: u64 = 32 << 20;

/// A committed append: its first sequence number, events and their text.
pub struct Appended {
    pub first_seq: i64,
    pub tenant: Tenant,
    pub events: Vec<Event>,
    pub bodies: Vec<String>,
}

impl Appended {
    /// What indexing these events costs ([`super::health::work`]).
    pub fn work(&self) -> u64 {
        self.bodies
            .iter()
            .map(|body| super::health::work(body.len()))
            .sum()
    }
}

/// What is held: the batches by first position, their events and work.
#[derive(Default)]
struct Held {
    batches: BTreeMap<i64, (Appended, u64)>,
    events: usize,
    work: u64,
}

#[derive(Default)]
pub struct Handoff {
    pending: Mutex<Held>,
}

impl Handoff {
    /// Holds `batch` (costing `work`) for the indexer, unless that would
    /// hold too much; then the indexer reads it from the store.
    pub fn offer(&self, batch: Appended, work: u64) {
        let mut held = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if held.events + batch.events.len() <= MAX_HELD && held.work + work <= MAX_HELD_WORK {
            held.events += batch.events.len();
            held.work += work;
            held.batches.insert(batch.first_seq, (batch, work));
        }
    }

    /// The batch that starts at `next`, forgetting any that start before.
    fn take(&self, next: i64) -> Option<(Appended, u64)> {
        let mut held = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(entry) = held.batches.first_entry() {
            if *entry.key() > next {
                return None;
            }
            let (batch, work) = entry.remove();
            held.events -= batch.events.len();
            held.work -= work;
            if batch.first_seq == next {
                return Some((batch, work));
            }
        }
        None
    }

    /// The batches that follow each other from `next`, up to about `most`
    /// events or `most_work`, forgetting any that start before `next`;
    /// with their work.
    pub fn take_run(&self, next: i64, most: usize, most_work: u64) -> (Vec<Appended>, u64) {
        let mut run = Vec::new();
        let mut next = next;
        let (mut events, mut work) = (0, 0);
        while events < most && work < most_work {
            let Some((batch, cost)) = self.take(next) else {
                break;
            };
            next = batch.first_seq + batch.events.len() as i64;
            events += batch.events.len();
            work += cost;
            run.push(batch);
        }
        (run, work)
    }

    /// Where the first held batch starts.
    pub fn first_held(&self) -> Option<i64> {
        let held = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        held.batches.keys().next().copied()
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
