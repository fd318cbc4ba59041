//! Each search walks the index's segments on threads of its own. A pool
//! shared by every search would queue one tenant's quick search behind
//! another's costly one; threads of its own leave the sharing of the
//! cores to the kernel. A search whose caller went away, or whose time
//! is spent, stops before its next segment, and within a segment where it
//! walks the word dictionary (see [`crate::stoppable`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// What ends a search before its end: its caller gone, or the time it may
/// take spent. A search stopped midway is incomplete, and answers with
/// neither its counts nor its page.
#[derive(Debug, Clone)]
pub struct Stop {
    abandoned: Abandoned,
    deadline: Option<Instant>,
    limit: Duration,
    ran_out: Arc<AtomicBool>,
    /// Looks at the clock left before the limit counts as spent, in
    /// tests, which must not depend on how fast the machine is.
    #[cfg(test)]
    looks_left: Option<Arc<std::sync::atomic::AtomicU32>>,
}

impl Stop {
    /// From now, for at most `limit` (`None`: no bound but the caller).
    pub fn new(abandoned: &Abandoned, limit: Option<Duration>) -> Self {
        match limit {
            Some(limit) => Self::until(abandoned, Instant::now() + limit, limit),
            None => Stop {
                abandoned: abandoned.clone(),
                deadline: None,
                limit: Duration::ZERO,
                ran_out: Arc::default(),
                #[cfg(test)]
                looks_left: None,
            },
        }
    }

    /// A limit spent at the `looks`-th look at the clock, whenever that is.
    #[cfg(test)]
    pub(crate) fn after_looks(looks: u32) -> Self {
        Stop {
            looks_left: Some(Arc::new(std::sync::atomic::AtomicU32::new(looks))),
            ..Self::new(&Abandoned::default(), None)
        }
    }

    /// Until `deadline`, the end of a time limit of `limit`.
    pub fn until(abandoned: &Abandoned, deadline: Instant, limit: Duration) -> Self {
        Stop {
            abandoned: abandoned.clone(),
            deadline: Some(deadline),
            limit,
            ran_out: Arc::default(),
            #[cfg(test)]
            looks_left: None,
        }
    }

    /// Whether the search was told to stop, without looking at the clock.
    pub(crate) fn stopped(&self) -> bool {
        self.abandoned.is_set() || self.ran_out.load(Ordering::Relaxed)
    }

    /// Whether the search must stop now; a time limit found spent is kept.
    pub(crate) fn now(&self) -> bool {
        if self.stopped() {
            return true;
        }
        #[cfg(test)]
        if let Some(left) = &self.looks_left {
            let spent = left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .map_or(true, |before| before <= 1);
            self.ran_out.store(spent, Ordering::Relaxed);
            return spent;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.ran_out.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Whether the search ran out of time.
    pub fn ran_out(&self) -> bool {
        self.ran_out.load(Ordering::Relaxed)
    }

    fn failure(&self) -> SearchError {
        if self.ran_out() {
            SearchError::TimedOut {
                seconds: self.limit.as_secs(),
            }
        } else {
            SearchError::Abandoned
        }
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
    stop: &Stop,
) -> Result<C::Fruit, SearchError> {
    let err = failure_of;
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
        if stop.now() {
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop.failure());
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
    // A walk of the dictionary cut short within a segment left it
    // incomplete.
    if stop.stopped() {
        return Err(stop.failure());
    }
    let mut fruits = fruits.into_inner().unwrap_or_else(|p| p.into_inner());
    fruits.sort_by_key(|(ord, _)| *ord);
    collector
        .merge_fruits(fruits.into_iter().map(|(_, fruit)| fruit).collect())
        .map_err(err)
}

/// A search's failure: a bound the query passed once it met the index
/// (marked by the translation with the term's position) is the query's,
/// anything else the index's.
fn failure_of(e: tantivy::TantivyError) -> SearchError {
    if let tantivy::TantivyError::InvalidArgument(message) = &e {
        if let Some((position, message)) = message
            .strip_prefix(crate::translate::EXPANSIONS_MARK)
            .and_then(|rest| rest.split_once('\u{0}'))
        {
            if let Ok(position) = position.parse() {
                return SearchError::Query {
                    position,
                    message: message.to_string(),
                };
            }
        }
    }
    SearchError::Index(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tantivy::collector::Count;
    use tantivy::query::{AllQuery, AllScorer, EnableScoring, Explanation, Query, Scorer, Weight};
    use tantivy::schema::{Schema, STORED, STRING};
    use tantivy::{doc, DocId, Index, Score, SegmentReader};

    use super::{collect, Abandoned, Stop};

    /// A query whose every segment takes a while (another tenant's costly
    /// search), counting the segments it has finished.
    #[derive(Debug, Clone)]
    struct Slow(Duration, Arc<AtomicUsize>);

    struct SlowWeight(Duration, Arc<AtomicUsize>);

    impl Query for Slow {
        fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
            Ok(Box::new(SlowWeight(self.0, self.1.clone())))
        }
    }

    impl Weight for SlowWeight {
        fn scorer(&self, reader: &SegmentReader, _: Score) -> tantivy::Result<Box<dyn Scorer>> {
            std::thread::sleep(self.0);
            self.1.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(AllScorer::new(reader.max_doc())))
        }

        fn explain(&self, _: &SegmentReader, _: DocId) -> tantivy::Result<Explanation> {
            Ok(Explanation::new("slow", 1.0))
        }
    }

    fn unbounded() -> Stop {
        Stop::new(&Abandoned::default(), None)
    }

    /// An index of `n` segments of one word each.
    fn segments(n: usize) -> tantivy::Searcher {
        let mut schema = Schema::builder();
        let word = schema.add_text_field("word", STRING | STORED);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for i in 0..n {
            writer.add_document(doc!(word => format!("w{i}"))).unwrap();
            writer.commit().unwrap();
        }
        index.reader().unwrap().searcher()
    }

    #[test]
    fn a_search_past_its_time_stops_before_its_next_segment() {
        let searcher = segments(3);
        let finished = Arc::new(AtomicUsize::new(0));
        // The limit is found spent at the look before the second segment.
        let query = Slow(Duration::ZERO, finished.clone());
        let stop = Stop::after_looks(2);
        let failed = collect(&searcher, &query, &Count, 1, &stop).unwrap_err();
        assert!(
            matches!(failed, crate::SearchError::TimedOut { .. }),
            "{failed:?}"
        );
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_quick_search_does_not_wait_for_a_slow_one() {
        // Segments enough to keep every thread of a shared pool busy.
        let searcher = segments(4);
        assert_eq!(searcher.segment_readers().len(), 4);
        let finished = Arc::new(AtomicUsize::new(0));
        let slow = {
            let query = Slow(Duration::from_secs(2), finished.clone());
            let searcher = searcher.clone();
            std::thread::spawn(move || collect(&searcher, &query, &Count, 2, &unbounded()).unwrap())
        };
        std::thread::sleep(Duration::from_millis(200));
        let quick = collect(&searcher, &AllQuery, &Count, 2, &unbounded()).unwrap();
        assert_eq!(quick, 4);
        // Answered before the slow search finished any of its segments:
        // it did not queue behind them.
        assert_eq!(
            finished.load(Ordering::SeqCst),
            0,
            "the quick search waited"
        );
        assert_eq!(slow.join().unwrap(), 4);
    }
}
