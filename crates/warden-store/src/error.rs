//! Store errors: conflicts the caller can act on, and everything else, which
//! is internal and never shown to a client.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; `field` names the clashing field.
    #[error("{field} is already taken")]
    Conflict { field: String },
    /// The schema or stored data does not match what this binary expects.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    /// The database refused a value as text (PostgreSQL and NUL bytes).
    #[error("{0}")]
    Rejected(String),
    /// The database cannot be reached, is busy past its timeout, or has no
    /// free connection.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The data directory cannot be made or kept as the store needs it
    /// (a file where the directory should be, a mode that cannot be made
    /// private): the operator's to mend, not the database's.
    #[error("{0}")]
    DataDir(String),
    /// The database file is damaged on disk (SQLite's "malformed" or "not
    /// a database", PostgreSQL's data or index corruption): a SQLite store
    /// takes no more writes once it has seen this.
    #[error("the store is damaged: {0}")]
    Damaged(String),
    /// The disk holding the database is full (SQLite's `SQLITE_FULL`,
    /// PostgreSQL's `disk_full`): nothing of the write was stored, and
    /// retrying helps only once an operator frees space.
    #[error("the disk holding the store is full: {0}")]
    Full(String),
    #[error("database error: {0}")]
    Database(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether the last write found the disk full, for readiness: set by a
/// write that failed so, cleared by the next that stored something (one
/// that changed no row, a retention pass with nothing to remove, says
/// nothing of the space).
#[derive(Debug, Default)]
pub(crate) struct DiskFull(std::sync::atomic::AtomicBool);

impl DiskFull {
    /// Notes what a write's result says of the disk, and passes it on;
    /// `stored` tells a result that changed rows.
    pub fn noted<T>(
        &self,
        result: StoreResult<T>,
        stored: impl FnOnce(&T) -> bool,
    ) -> StoreResult<T> {
        use std::sync::atomic::Ordering;
        match &result {
            Ok(done) if stored(done) => self.0.store(false, Ordering::Relaxed),
            Err(StoreError::Full(_)) => self.0.store(true, Ordering::Relaxed),
            _ => {}
        }
        result
    }

    pub fn is_full(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
