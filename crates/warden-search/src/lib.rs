//! Warden's event search engine: a tantivy index of the event log,
//! searched with the search language (`warden-query`), answering exact
//! totals and severity histograms in one pass. No HTTP, no store: the
//! server feeds it from the log and keeps its cursor.

pub mod address;
pub mod analyzer;
pub mod background;
pub mod collect;
pub mod document;
pub mod index;
pub mod interval;
pub mod run;
pub mod schema;
pub mod stoppable;
pub mod time_value;
pub mod translate;

pub use collect::{Breakdown, Order, Position};
pub use index::{default_writer_threads, EventIndex};
pub use time_value::parse_time_value;

use warden_core::time::Millis;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query is well-formed but cannot run as written.
    #[error("{message}")]
    Query { position: usize, message: String },
    /// Another process holds the index.
    #[error("the index in {0} is in use by another process")]
    Busy(String),
    #[error("index: {0}")]
    Index(String),
    /// A file of the index cannot be read as written: it was damaged on
    /// disk, and only a rebuild from the log mends it.
    #[error("the search index is damaged: {0}")]
    Damaged(String),
    /// Nobody waits for the search any more.
    #[error("the search was abandoned by its caller")]
    Abandoned,
    /// The search ran past its time limit, and stopped.
    #[error("the search ran past its time limit of {seconds} s and was stopped")]
    TimedOut { seconds: u64 },
}

/// One search, already parsed and bounded by the caller.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub org_id: String,
    pub environment: String,
    pub query: warden_query::Query,
    /// Only this agent's events: a key bound to an agent sees no others.
    pub agent_id: Option<String>,
    /// Event time range, `[from, to)`.
    pub from: Millis,
    pub to: Millis,
    /// The organization's retention: older events are never returned,
    /// though the sweep that removes them may not have come yet.
    pub not_before: Option<Millis>,
    pub limit: usize,
    /// The most bytes of stored events a page reads: past it the page ends
    /// early (`SearchResult::cut_short`), so that large events cannot make
    /// one answer hold gigabytes.
    pub max_page_bytes: usize,
    pub order: Order,
    /// The last event of the previous page.
    pub after: Option<Position>,
    /// Histogram bucket width in milliseconds.
    pub interval: i64,
    /// The request's time, for `now` in the query.
    pub now: Millis,
    /// Set when the caller stops waiting: the search stops too.
    pub abandoned: run::Abandoned,
    /// The most time the search may take (`None`: no bound).
    pub time_limit: Option<std::time::Duration>,
}

#[derive(Debug)]
pub struct SearchResult {
    pub total: u64,
    /// Bucket start and its severity counts, oldest first.
    pub histogram: Vec<(Millis, Breakdown)>,
    /// The page: each event's position and stored JSON.
    pub events: Vec<(Position, String)>,
    /// The page ended at `max_page_bytes`, before `limit`: more follow.
    pub cut_short: bool,
}
