//! `warden reindex`: rebuild this data directory's search index from the
//! event log in the store.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use warden_search::EventIndex;
use warden_server::telemetry::indexer;

use crate::cli::{ReindexArgs, StoreArgs};

pub async fn run(args: ReindexArgs) -> Result<(), String> {
    // The store is looked at first, changing nothing (a directory or
    // database that holds none is left as it was), then the index, whose
    // lock tells whether a server runs here, then the store is opened.
    crate::store::examine(&args.store, crate::store::Opening::Maintenance).await?;
    warden_store::create_private_dir(&args.store.data_dir).map_err(|e| e.to_string())?;
    let _running = crate::data_dir_lock::hold(&args.store.data_dir)?;
    let index = open_index(&args.store.data_dir)?;
    let rebuilt = rebuild(index, &args.store).await?;
    let text = if args.json {
        format!("{}\n", rebuilt.json())
    } else {
        rebuilt.text()
    };
    super::say(&text, "the index was rebuilt, but the report")
}

/// What a rebuild of the index did.
pub struct Rebuilt {
    events: u64,
    log_position: i64,
    seconds: f64,
}

impl Rebuilt {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "events": self.events,
            "log_position": self.log_position,
            "seconds": (self.seconds * 10.0).round() / 10.0,
        })
    }

    pub fn text(&self) -> String {
        format!(
            "Reindexed {} events (log position {}) in {:.1} s\n",
            self.events, self.log_position, self.seconds
        )
    }
}

/// Opens the data directory's index, which also tells whether a server
/// runs on the directory: `serve` holds the index's lock.
pub fn open_index(data_dir: &Path) -> Result<EventIndex, String> {
    let dir = data_dir.join("index");
    // `serve` is stopped: every core may build the index.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    EventIndex::open(&dir, cores.clamp(1, 8)).map_err(|e| match e {
        warden_search::SearchError::Busy(_) => format!(
            "the index in {} is in use: stop `warden serve` (or the other `warden reindex`) \
             on this data directory first",
            dir.display()
        ),
        other => other.to_string(),
    })
}

/// Builds `index` again from the store's event log.
pub async fn rebuild(mut index: EventIndex, store: &StoreArgs) -> Result<Rebuilt, String> {
    let opened = crate::store::open(store, crate::store::Opening::Maintenance).await?;
    // A data directory copied from another replica, or restored from a
    // snapshot, shares or rewinds the name its position in the log is
    // kept under: the rebuilt index takes a name of its own.
    index.rename().map_err(|e| e.to_string())?;
    let index = Arc::new(index);
    let started = Instant::now();
    let last = indexer::rebuild(opened.store.as_ref(), &index).await;
    opened.store.close().await;
    Ok(Rebuilt {
        events: index.len(),
        log_position: last?,
        seconds: started.elapsed().as_secs_f64(),
    })
}
