//! The seam between Warden's SQL and a database driver. Every store method
//! is written once against [`Db`]: a query text with `$n` placeholders, its
//! values, and rows decoded by column name. SQLite (rusqlite) and PostgreSQL
//! (sqlx) each implement these few primitives.

use async_trait::async_trait;

use crate::{StoreError, StoreResult};

/// A bound value. Nulls are typed so that PostgreSQL can infer parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Some(v.to_string()))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(Some(v.clone()))
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Value::Text(v)
    }
}

impl From<&Option<String>> for Value {
    fn from(v: &Option<String>) -> Self {
        Value::Text(v.clone())
    }
}

/// A fetched row, read by column name.
#[derive(Debug, Clone)]
pub struct Row {
    pub(crate) columns: std::sync::Arc<[String]>,
    pub(crate) values: Vec<Value>,
}

impl Row {
    fn value(&self, name: &str) -> StoreResult<&Value> {
        self.columns
            .iter()
            .position(|c| c == name)
            .map(|i| &self.values[i])
            .ok_or_else(|| StoreError::Corrupt(format!("no column {name}")))
    }

    pub fn opt_text(&self, name: &str) -> StoreResult<Option<String>> {
        match self.value(name)? {
            Value::Text(v) => Ok(v.clone()),
            Value::Int(None) => Ok(None),
            Value::Int(Some(_)) => Err(StoreError::Corrupt(format!("column {name} is not text"))),
        }
    }

    pub fn text(&self, name: &str) -> StoreResult<String> {
        self.opt_text(name)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {name} is null")))
    }

    pub fn opt_int(&self, name: &str) -> StoreResult<Option<i64>> {
        match self.value(name)? {
            Value::Int(v) => Ok(*v),
            Value::Text(None) => Ok(None),
            Value::Text(Some(_)) => Err(StoreError::Corrupt(format!(
                "column {name} is not an integer"
            ))),
        }
    }

    pub fn int(&self, name: &str) -> StoreResult<i64> {
        self.opt_int(name)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {name} is null")))
    }

    /// The tenant a row of a table read across tenants belongs to, from
    /// its `org_id` and `environment` columns.
    pub fn tenant(&self) -> StoreResult<warden_core::Tenant> {
        let env = self.text("environment")?;
        Ok(warden_core::Tenant {
            org_id: self.text("org_id")?,
            environment: env
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("environment `{env}`")))?,
        })
    }
}

/// One statement of a transaction.
#[derive(Debug, Clone)]
pub struct Step {
    pub sql: String,
    pub args: Vec<Value>,
    /// Return the rows (a SELECT, or a statement with RETURNING).
    pub fetch: bool,
    /// Abandon the whole transaction if this step touches no row.
    pub required: bool,
}

impl Step {
    pub fn execute(sql: impl Into<String>, args: Vec<Value>) -> Self {
        Step {
            sql: sql.into(),
            args,
            fetch: false,
            required: false,
        }
    }

    pub fn query(sql: impl Into<String>, args: Vec<Value>) -> Self {
        Step {
            fetch: true,
            ..Step::execute(sql, args)
        }
    }

    /// Marks the step as a precondition of the transaction.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
}

/// What one step produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    Changed(u64),
    Rows(Vec<Row>),
}

impl Outcome {
    /// Whether a transaction's steps changed any row.
    pub(crate) fn any_changed(outcomes: &Option<Vec<Outcome>>) -> bool {
        outcomes
            .iter()
            .flatten()
            .any(|o| matches!(o, Outcome::Changed(n) if *n > 0))
    }

    pub fn changed(&self) -> u64 {
        match self {
            Outcome::Changed(n) => *n,
            Outcome::Rows(rows) => rows.len() as u64,
        }
    }

    pub fn rows(self) -> Vec<Row> {
        match self {
            Outcome::Rows(rows) => rows,
            Outcome::Changed(_) => Vec::new(),
        }
    }
}

#[async_trait]
pub trait Db: Send + Sync + 'static {
    async fn query(&self, sql: &str, args: Vec<Value>) -> StoreResult<Vec<Row>>;
    async fn execute(&self, sql: &str, args: Vec<Value>) -> StoreResult<u64>;
    /// Runs the steps atomically. `None` when a required step touched no
    /// row: then nothing was changed.
    async fn transaction(&self, steps: Vec<Step>) -> StoreResult<Option<Vec<Outcome>>>;
    async fn close(&self);
    /// Whether the database was found damaged on disk: readiness then
    /// says so, and no more is written to it.
    fn damaged(&self) -> bool {
        false
    }
    /// Whether the last write found the disk full: readiness says so.
    fn disk_full(&self) -> bool {
        false
    }
}

/// `Conflict` errors from a driver carry the database's message; this names
/// the first of `fields` it mentions.
pub(crate) fn name_conflict(err: StoreError, fields: &[&str]) -> StoreError {
    match err {
        StoreError::Conflict { field: text } => {
            let field = fields
                .iter()
                .find(|f| text.contains(*f))
                .or(fields.first())
                .map(|f| f.to_string())
                .unwrap_or(text);
            StoreError::Conflict { field }
        }
        other => other,
    }
}
