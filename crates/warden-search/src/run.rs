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

    use super::{collect, Abandoned};

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

    #[test]
    fn a_quick_search_does_not_wait_for_a_slow_one() {
        let mut schema = Schema::builder();
        let word = schema.add_text_field("word", STRING | STORED);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        // Segments enough to keep every thread of a shared pool busy.
        for i in 0..4 {
            writer.add_document(doc!(word => format!("w{i}"))).unwrap();
            writer.commit().unwrap();
        }
        let searcher = index.reader().unwrap().searcher();
        assert_eq!(searcher.segment_readers().len(), 4);
        let finished = Arc::new(AtomicUsize::new(0));
        let slow = {
            let query = Slow(Duration::from_secs(2), finished.clone());
            let searcher = searcher.clone();
            std::thread::spawn(move || {
                collect(&searcher, &query, &Count, 2, &Abandoned::default()).unwrap()
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let quick = collect(&searcher, &AllQuery, &Count, 2, &Abandoned::default()).unwrap();
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
