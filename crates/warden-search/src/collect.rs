//! One pass over the matching events that yields everything a search
//! answers: the exact total, the histogram with its severity breakdown,
//! and the page of events in time order after the cursor.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::ColumnValues;
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
    top: BinaryHeap<Reverse<(i128, DocId)>>,
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
            timestamp: fast.i64("timestamp")?.first_or_default_col(0),
            seq: fast.u64("seq")?.first_or_default_col(0),
            severity: fast.u64("severity")?.first_or_default_col(0),
            total: 0,
            histogram: vec![[0; 5]; self.buckets.count],
            top: BinaryHeap::with_capacity(self.limit + 1),
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

impl SegmentCollector for EventSegmentCollector {
    type Fruit = Collected;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.total += 1;
        let timestamp = self.timestamp.get_val(doc);
        let offset = timestamp - self.buckets.from;
        if offset >= 0 && self.buckets.interval > 0 {
            let bucket = (offset / self.buckets.interval) as usize;
            if let Some(counts) = self.histogram.get_mut(bucket) {
                let rank = (self.severity.get_val(doc) as usize).min(4);
                counts[rank] += 1;
            }
        }
        if self.limit == 0 {
            return;
        }
        let position = Position {
            timestamp,
            seq: self.seq.get_val(doc),
        };
        let rank = position.rank(self.order);
        if self.after.is_some_and(|after| rank >= after) {
            return;
        }
        if self.top.len() < self.limit {
            self.top.push(Reverse((rank, doc)));
        } else if self
            .top
            .peek()
            .is_some_and(|Reverse((worst, _))| rank > *worst)
        {
            self.top.pop();
            self.top.push(Reverse((rank, doc)));
        }
    }

    fn harvest(self) -> Collected {
        let segment = self.segment;
        let timestamp = self.timestamp;
        let seq = self.seq;
        let page = self
            .top
            .into_iter()
            .map(|Reverse((_, doc))| {
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
