//! Walks of the word dictionary that stop midway. A leading wildcard or an
//! address span reads every word its field holds, and over millions of
//! distinct words one segment alone takes seconds: checking between
//! segments would let such a search run on long after its caller went
//! away or its time ran out. The automaton that drives the walk asks
//! every so often whether to stop; a walk cut short leaves the search
//! incomplete, which [`crate::run::collect`] then refuses to answer with.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use tantivy::query::{AutomatonWeight, EnableScoring, Query, Weight};
use tantivy::schema::Field;
use tantivy_fst::Automaton;

use crate::run::Stop;

/// Steps of a walk between two looks at the clock: a look costs about as
/// much as a few hundred steps.
const STEPS_BETWEEN_LOOKS: u32 = 1024;

thread_local! {
    static STEPS: Cell<u32> = const { Cell::new(0) };
}

/// `inner`, matching nothing more once its search must stop.
struct Stoppable<A> {
    inner: Arc<A>,
    stop: Stop,
}

impl<A: Automaton> Automaton for Stoppable<A> {
    type State = A::State;

    fn start(&self) -> A::State {
        self.inner.start()
    }

    fn is_match(&self, state: &A::State) -> bool {
        self.inner.is_match(state)
    }

    fn can_match(&self, state: &A::State) -> bool {
        if self.stop.stopped() {
            return false;
        }
        let look = STEPS.with(|steps| {
            let n = steps.get().wrapping_add(1);
            steps.set(n);
            n % STEPS_BETWEEN_LOOKS == 0
        });
        if look && self.stop.now() {
            return false;
        }
        self.inner.can_match(state)
    }

    fn accept(&self, state: &A::State, byte: u8) -> A::State {
        self.inner.accept(state, byte)
    }
}

/// The terms of `field` that `automaton` accepts, walked under `stop`.
pub struct StoppableQuery<A> {
    field: Field,
    automaton: Arc<A>,
    stop: Stop,
}

impl<A> StoppableQuery<A> {
    pub fn new(field: Field, automaton: A, stop: Stop) -> Self {
        StoppableQuery {
            field,
            automaton: Arc::new(automaton),
            stop,
        }
    }
}

impl<A> Clone for StoppableQuery<A> {
    fn clone(&self) -> Self {
        StoppableQuery {
            field: self.field,
            automaton: self.automaton.clone(),
            stop: self.stop.clone(),
        }
    }
}

impl<A: fmt::Debug> fmt::Debug for StoppableQuery<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoppableQuery")
            .field("field", &self.field)
            .field("automaton", &self.automaton)
            .finish()
    }
}

impl<A> Query for StoppableQuery<A>
where
    A: Automaton + fmt::Debug + Send + Sync + 'static,
    A::State: Clone,
{
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(AutomatonWeight::new(
            self.field,
            Stoppable {
                inner: self.automaton.clone(),
                stop: self.stop.clone(),
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tantivy::query::Query;
    use tantivy::schema::{Schema, STRING};
    use tantivy::{doc, Index};
    use tantivy_fst::Regex;

    use super::StoppableQuery;
    use crate::run::{Abandoned, Stop};

    /// One segment of 20,000 distinct words: a leading wildcard walks them all.
    fn words() -> (Index, tantivy::schema::Field) {
        let mut schema = Schema::builder();
        let word = schema.add_text_field("word", STRING);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for i in 0..20_000 {
            writer
                .add_document(doc!(word => format!("w{i:05}a")))
                .unwrap();
        }
        writer.commit().unwrap();
        (index, word)
    }

    fn count(index: &Index, query: &dyn Query) -> usize {
        query.count(&index.reader().unwrap().searcher()).unwrap()
    }

    #[test]
    fn a_walk_runs_whole_within_its_time() {
        let (index, word) = words();
        let stop = Stop::new(&Abandoned::default(), Some(Duration::from_secs(3600)));
        let query = StoppableQuery::new(word, Regex::new(".*a").unwrap(), stop.clone());
        assert_eq!(count(&index, &query), 20_000);
        assert!(!stop.ran_out());
    }

    #[test]
    fn a_walk_stops_midway_once_its_time_is_spent() {
        let (index, word) = words();
        // A budget already spent: the walk ends at its first look, within
        // the segment, and says so.
        let stop = Stop::until(&Abandoned::default(), Instant::now(), Duration::ZERO);
        let query = StoppableQuery::new(word, Regex::new(".*a").unwrap(), stop.clone());
        let found = count(&index, &query);
        assert!(found < 20_000, "found {found}");
        assert!(stop.ran_out());
    }

    #[test]
    fn a_walk_stops_midway_once_its_caller_is_gone() {
        let (index, word) = words();
        let abandoned = Abandoned::default();
        let stop = Stop::new(&abandoned, None);
        abandoned.set();
        let query = StoppableQuery::new(word, Regex::new(".*a").unwrap(), stop.clone());
        assert_eq!(count(&index, &query), 0);
        assert!(!stop.ran_out());
    }
}
