//! Each search walks the index's segments on threads of its own. A pool
//! shared by every search would queue one tenant's quick search behind
//! another's costly one; threads of its own leave the sharing of the
//! cores to the kernel. A search whose caller went away stops before its
//! next segment.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tantivy::collector::Collector;
use tantivy::query::{EnableScoring, Query};
use tantivy::Searcher;

use crate::SearchError;

/// Set when nobody waits for the search any more (its request ended).
#[derive(Debug, Clone, Default)]
pub struct Abandoned(Arc<AtomicBool>);

impl Abandoned {
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sets the flag when dropped before [`Guard::finish`]: held by the
/// request, so a client that disconnects stops its search.
pub struct Guard(Option<Abandoned>);

impl Guard {
    pub fn new(abandoned: &Abandoned) -> Self {
        Guard(Some(abandoned.clone()))
    }

    pub fn finish(mut self) {
        self.0 = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(abandoned) = self.0.take() {
            abandoned.set();
        }
    }
}

/// Collects `query` over every segment on up to `threads` threads, each
/// taking the next segment left.
pub fn collect<C: Collector>(
    searcher: &Searcher,
    query: &dyn Query,
    collector: &C,
    threads: usize,
    abandoned: &Abandoned,
) -> Result<C::Fruit, SearchError> {
    let err = |e: tantivy::TantivyError| SearchError::Index(e.to_string());
    let scoring = if collector.requires_scoring() {
        EnableScoring::enabled_from_searcher(searcher)
    } else {
        EnableScoring::disabled_from_searcher(searcher)
    };
    let weight = query.weight(scoring).map_err(err)?;
    let segments = searcher.segment_readers();
    let next = AtomicUsize::new(0);
    let fruits = Mutex::new(Vec::with_capacity(segments.len()));
    let failure = Mutex::new(None);
    let work = || loop {
        let ord = next.fetch_add(1, Ordering::Relaxed);
        let Some(segment) = segments.get(ord) else {
            return;
        };
        if abandoned.is_set() {
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(SearchError::Abandoned);
            return;
        }
        match collector.collect_segment(weight.as_ref(), ord as u32, segment) {
            Ok(fruit) => fruits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((ord, fruit)),
            Err(e) => {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(err(e));
                next.store(segments.len(), Ordering::Relaxed);
                return;
            }
        }
    };
    let helpers = threads.clamp(1, segments.len().max(1)) - 1;
    std::thread::scope(|scope| {
        for _ in 0..helpers {
            // A thread that cannot start leaves its share to the others.
            let _ = std::thread::Builder::new()
                .name("warden-search".into())
                .spawn_scoped(scope, work);
        }
        work();
    });
    if let Some(failure) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(failure);
    }
    let mut fruits = fruits.into_inner().unwrap_or_else(|p| p.into_inner());
    fruits.sort_by_key(|(ord, _)| *ord);
    collector
        .merge_fruits(fruits.into_iter().map(|(_, fruit)| fruit).collect())
        .map_err(err)
}
