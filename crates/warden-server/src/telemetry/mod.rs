//! Telemetry: events in (the API, NDJSON logs, syslog, the Thoth SDK,
//! decisions), the durable event log, the search index fed from it, and
//! retention (docs/events.md, docs/query-language.md).

pub mod handoff;
pub mod indexer;
pub mod ingest;
pub mod ndjson;
pub mod retention;
pub mod search;
pub mod syslog;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Notify;
use warden_search::EventIndex;
use warden_store::Store;

/// The telemetry services a server shares between requests.
pub struct Telemetry {
    pub store: Arc<dyn Store>,
    pub index: Arc<EventIndex>,
    /// Wakes the indexer when this process appended events.
    pub appended: Arc<Notify>,
    /// Those events, in memory, for the indexer.
    pub handoff: Arc<handoff::Handoff>,
    /// The log position the index has made searchable.
    pub searchable: tokio::sync::watch::Sender<i64>,
    /// Wakes retention when an organization's setting changed.
    pub retention_changed: Arc<Notify>,
}

impl Telemetry {
    /// Opens (or creates) the index under `index_dir`.
    pub fn open(store: Arc<dyn Store>, index_dir: &Path) -> Result<Self, String> {
        let index = EventIndex::open(index_dir).map_err(|e| e.to_string())?;
        Ok(Telemetry {
            store,
            index: Arc::new(index),
            appended: Arc::new(Notify::new()),
            handoff: Arc::new(handoff::Handoff::default()),
            searchable: tokio::sync::watch::Sender::new(0),
            retention_changed: Arc::new(Notify::new()),
        })
    }
}
