//! Opening the store a command names: PostgreSQL by URL, else SQLite in the
//! data directory.

use std::sync::Arc;

use warden_core::secret::MasterKey;
use warden_store::{SqlStore, Store};

use crate::cli::StoreArgs;

pub struct Opened {
    pub store: Arc<dyn Store>,
    pub master: MasterKey,
}

/// Opens the store and its master key; `create_key` allows making a new
/// key file (for commands that may initialize).
pub async fn open(args: &StoreArgs, create_key: bool) -> Result<Opened, String> {
    let store = match &args.database_url {
        Some(url) => SqlStore::open(url).await,
        None => SqlStore::open_sqlite(&args.data_dir).await,
    }
    .map_err(|e| format!("cannot open the store: {e}"))?;
    let master = crate::master_key::load(args.master_key.as_deref(), &args.data_dir, create_key)?;
    Ok(Opened {
        store: Arc::new(store),
        master,
    })
}
