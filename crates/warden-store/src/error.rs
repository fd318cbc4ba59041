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
    /// The database cannot be reached or has no free connection.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(err.to_string())
            }
            other => StoreError::Database(other),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Maps a unique violation to a conflict naming the field whose constraint
/// name or message mentions it.
pub(crate) fn conflict_or(err: sqlx::Error, fields: &[&str]) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            let text = format!("{} {}", db.message(), db.constraint().unwrap_or_default());
            let field = fields
                .iter()
                .find(|f| text.contains(*f))
                .or(fields.first())
                .map(|f| f.to_string())
                .unwrap_or_else(|| "id".into());
            return StoreError::Conflict { field };
        }
    }
    StoreError::from(err)
}
