//! One pass over the matching events that yields everything a search
//! answers: the exact total, the histogram with its severity breakdown,
//! and the page of events in time order after the cursor.

use std::cmp::Reverse;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, Column, ColumnValues};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

/// Newest first is what an analyst reads; oldest first replays a story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// Where a page ends: the last event's time and log sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub timestamp: i64,
    pub seq: u64,
}

impl Position {
    /// Larger is earlier in the page's order.
    fn rank(self, order: Order) -> i128 {
        let key = ((self.timestamp as i128) << 64) | self.seq as i128;
        match order {
            Order::NewestFirst => key,
            Order::OldestFirst => -key,
        }
    }
}

/// Buckets of `interval` milliseconds from `from`.
#[derive(Debug, Clone, Copy)]
pub struct Buckets {
    pub from: i64,
    pub interval: i64,
    pub count: usize,
}

pub struct EventCollector {
    pub limit: usize,
    pub order: Order,
    pub after: Option<Position>,
    pub buckets: Buckets,
}

/// Severity counts, indexed by rank.
pub type Breakdown = [u64; 5];

#[derive(Debug, Default)]
pub struct Collected {
    pub total: u64,
    pub histogram: Vec<Breakdown>,
    /// The page, best first.
    pub page: Vec<(Position, DocAddress)>,
}

pub struct EventSegmentCollector {
    segment: SegmentOrdinal,
    limit: usize,
    order: Order,
    after: Option<i128>,
    buckets: Buckets,
    timestamp: Arc<dyn ColumnValues<i64>>,
    seq: Arc<dyn ColumnValues<u64>>,
    severity: Arc<dyn ColumnValues<u64>>,
    total: u64,
    histogram: Vec<Breakdown>,
    /// Candidates for the page: every event ranked above `threshold`,
    /// pruned to the best `limit` whenever it grows to `PRUNE_AT` times that.
    candidates: Vec<(i128, DocId)>,
    /// The lowest rank kept at the last pruning; nothing at or below it can
    /// reach the page.
    threshold: Option<i128>,
    /// Column values of the block being collected, reused between blocks.
    times: Vec<i64>,
    severities: Vec<u64>,
    picked: Vec<DocId>,
    picked_times: Vec<i64>,
    seqs: Vec<u64>,
}

/// How far the candidates may grow, in pages, before they are pruned: a
/// bounded buffer with a rising threshold, so that events arriving in time
/// order (the common case) cost a push each rather than a heap update.
const PRUNE_AT: usize = 4;

/// A column's values by document. Every event has each of these fields, so
/// the column is full and is read directly, without its index.
fn by_doc<T>(column: Column<T>, default: T) -> Arc<dyn ColumnValues<T>>
where
    T: PartialOrd + Copy + std::fmt::Debug + Send + Sync + 'static,
{
    if column.get_cardinality() == Cardinality::Full {
        column.values
    } else {
        column.first_or_default_col(default)
    }
}

impl Collector for EventCollector {
    type Fruit = Collected;
    type Child = EventSegmentCollector;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<EventSegmentCollector> {
        let fast = reader.fast_fields();
        Ok(EventSegmentCollector {
            segment,
            limit: self.limit,
            order: self.order,
            after: self.after.map(|p| p.rank(self.order)),
            buckets: self.buckets,
            timestamp: by_doc(fast.i64("timestamp")?, 0),
            seq: by_doc(fast.u64("seq")?, 0),
            severity: by_doc(fast.u64("severity")?, 0),
            total: 0,
            histogram: vec![[0; 5]; self.buckets.count],
            candidates: Vec::new(),
            threshold: None,
            times: Vec::new(),
            severities: Vec::new(),
            picked: Vec::new(),
            picked_times: Vec::new(),
            seqs: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Collected>) -> tantivy::Result<Collected> {
        let mut out = Collected {
            total: 0,
            histogram: vec![[0; 5]; self.buckets.count],
            page: Vec::new(),
        };
        for fruit in fruits {
            out.total += fruit.total;
            for (into, from) in out.histogram.iter_mut().zip(fruit.histogram) {
                for (a, b) in into.iter_mut().zip(from) {
                    *a += b;
                }
            }
            out.page.extend(fruit.page);
        }
        out.page
            .sort_by_key(|(position, _)| Reverse(position.rank(self.order)));
        out.page.truncate(self.limit);
        Ok(out)
    }
}

impl EventSegmentCollector {
    fn count(&mut self, timestamp: i64, severity: u64) {
        let offset = timestamp - self.buckets.from;
        if offset >= 0 {
            let bucket = (offset / self.buckets.interval) as usize;
            if let Some(counts) = self.histogram.get_mut(bucket) {
                counts[(severity as usize).min(4)] += 1;
            }
        }
    }

    /// Whether an event of this time could still reach the page, whatever
    /// its sequence number: most events are ruled out before it is read.
    fn may_enter(&self, timestamp: i64) -> bool {
        let Some(threshold) = self.threshold else {
            return true;
        };
        let best_seq = match self.order {
            Order::NewestFirst => u64::MAX,
            Order::OldestFirst => 0,
        };
        Position {
            timestamp,
            seq: best_seq,
        }
        .rank(self.order)
            > threshold
    }

    fn admit(&mut self, doc: DocId, position: Position) {
        let rank = position.rank(self.order);
        if self.after.is_some_and(|after| rank >= after)
            || self.threshold.is_some_and(|threshold| rank <= threshold)
        {
            return;
        }
        self.candidates.push((rank, doc));
        if self.candidates.len() >= self.limit * PRUNE_AT {
            self.prune();
        }
    }

    /// Keeps the best `limit` candidates and raises the threshold to the
    /// lowest of them.
    fn prune(&mut self) {
        if self.candidates.len() > self.limit {
            self.candidates
                .select_nth_unstable_by_key(self.limit - 1, |(rank, _)| Reverse(*rank));
            self.candidates.truncate(self.limit);
        }
        if self.candidates.len() == self.limit {
            self.threshold = self.candidates.iter().map(|(rank, _)| *rank).min();
        }
    }
}

impl SegmentCollector for EventSegmentCollector {
    type Fruit = Collected;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.total += 1;
        let timestamp = self.timestamp.get_val(doc);
        if self.buckets.interval > 0 {
            let severity = self.severity.get_val(doc);
            self.count(timestamp, severity);
        }
        if self.limit > 0 && self.may_enter(timestamp) {
            let seq = self.seq.get_val(doc);
            self.admit(doc, Position { timestamp, seq });
        }
    }

    /// Blocks of matches (what tantivy hands over when nothing is scored
    /// and nothing deleted) read their columns in one call each.
    fn collect_block(&mut self, docs: &[DocId]) {
        let n = docs.len();
        self.total += n as u64;
        let mut times = std::mem::take(&mut self.times);
        times.resize(n, 0);
        self.timestamp.get_vals(docs, &mut times);
        if self.buckets.interval > 0 {
            let mut severities = std::mem::take(&mut self.severities);
            severities.resize(n, 0);
            self.severity.get_vals(docs, &mut severities);
            for (timestamp, severity) in times.iter().zip(&severities) {
                self.count(*timestamp, *severity);
            }
            self.severities = severities;
        }
        if self.limit > 0 {
            // Sequence numbers only for the events that could enter.
            let (mut picked, mut picked_times, mut seqs) = (
                std::mem::take(&mut self.picked),
                std::mem::take(&mut self.picked_times),
                std::mem::take(&mut self.seqs),
            );
            picked.clear();
            picked_times.clear();
            for (doc, timestamp) in docs.iter().zip(&times) {
                if self.may_enter(*timestamp) {
                    picked.push(*doc);
                    picked_times.push(*timestamp);
                }
            }
            seqs.resize(picked.len(), 0);
            self.seq.get_vals(&picked, &mut seqs);
            for ((doc, timestamp), seq) in picked.iter().zip(&picked_times).zip(&seqs) {
                self.admit(
                    *doc,
                    Position {
                        timestamp: *timestamp,
                        seq: *seq,
                    },
                );
            }
            (self.picked, self.picked_times, self.seqs) = (picked, picked_times, seqs);
        }
        self.times = times;
    }

    fn harvest(mut self) -> Collected {
        self.prune();
        let segment = self.segment;
        let timestamp = self.timestamp;
        let seq = self.seq;
        let page = self
            .candidates
            .into_iter()
            .map(|(_, doc)| {
                (
                    Position {
                        timestamp: timestamp.get_val(doc),
                        seq: seq.get_val(doc),
                    },
                    DocAddress::new(segment, doc),
                )
            })
            .collect();
        Collected {
            total: self.total,
            histogram: self.histogram,
            page,
        }
    }
}
