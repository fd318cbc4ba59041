//! PostgreSQL through sqlx: the scale-out backend, shared by every replica.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow, PgSslMode};
use sqlx::query::Query;
use sqlx::{Column, PgPool, Postgres, Row as _, TypeInfo};

use crate::db::{Db, Outcome, Row, Step, Value};
use crate::{StoreError, StoreResult};

pub struct PostgresDb {
    pool: PgPool,
    disk_full: crate::error::DiskFull,
}

/// Longest a statement waits for a row another session holds.
const LOCK_TIMEOUT: &str = "5s";
/// Longest a session may sit idle inside a transaction before the
/// database ends it and releases its locks.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "15s";
/// Longest a request's reads or transaction wait for the database. A
/// network that stops carrying bytes leaves a connection open with no
/// error (the database ends its side of the transaction, unheard), so
/// without this bound a request in flight would wait as long as the
/// stall; past it the request answers 503. It is above the waits the
/// database itself ends (`lock_timeout`, `IDLE_IN_TRANSACTION_TIMEOUT`).
const REQUEST_DEADLINE: Duration = Duration::from_secs(20);

/// `work`, or `Unavailable` once [`REQUEST_DEADLINE`] has passed.
async fn within_deadline<T>(
    work: impl std::future::Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    match tokio::time::timeout(REQUEST_DEADLINE, work).await {
        Ok(done) => done,
        Err(_) => Err(StoreError::Unavailable(format!(
            "PostgreSQL did not answer within {} s",
            REQUEST_DEADLINE.as_secs()
        ))),
    }
}

impl PostgresDb {
    /// Connects and applies `migrations` under an advisory lock, so that
    /// replicas starting together apply each migration once.
    pub async fn connect(url: &str, migrations: &[(i64, &str)]) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse().map_err(map_err)?;
        // This build speaks to PostgreSQL without TLS (no TLS library in
        // the binary): a URL that demands it is refused in those words.
        if matches!(
            options.get_ssl_mode(),
            PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
        ) {
            return Err(StoreError::Unavailable(
                "this build of Warden connects to PostgreSQL without TLS, and the URL's sslmode \
                 requires it: reach the database over a local socket, loopback or a private \
                 network (or a TLS tunnel), and leave sslmode out or set it to prefer or disable"
                    .into(),
            ));
        }
        // A replica that stops in the middle of a transaction (a paused
        // VM, a cut network) holds the rows every append locks: the
        // database ends its transaction after a while, and a replica
        // waiting on it answers 503 rather than waiting without end.
        let options = options.options([
            ("lock_timeout", LOCK_TIMEOUT),
            (
                "idle_in_transaction_session_timeout",
                IDLE_IN_TRANSACTION_TIMEOUT,
            ),
        ]);
        // One connection first, so that a refusal is named for what it is
        // (the pool would only say it timed out waiting).
        let probe = tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::ConnectOptions::connect(&options),
        )
        .await;
        let reached = |why: String| {
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL at {}:{}: {why}",
                options.get_host(),
                options.get_port()
            ))
        };
        match probe {
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
            }
            Ok(Err(e)) => return Err(reached(e.to_string())),
            Err(_) => return Err(reached("no answer within 10 s".into())),
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            // With the database out of reach a request answers 503 within
            // this, as one waiting on a held lock does (`lock_timeout`).
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(map_err)?;
        crate::migrate::apply_postgres(&pool, migrations).await?;
        Ok(PostgresDb {
            pool,
            disk_full: Default::default(),
        })
    }
}

fn bind<'q>(
    mut q: Query<'q, Postgres, PgArguments>,
    args: &[Value],
) -> Query<'q, Postgres, PgArguments> {
    for arg in args {
        q = match arg {
            Value::Int(v) => q.bind(*v),
            Value::Text(v) => q.bind(v.clone()),
        };
    }
    q
}

fn decode(rows: Vec<PgRow>) -> StoreResult<Vec<Row>> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let columns: Arc<[String]> = first
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let kinds: Vec<String> = first
        .columns()
        .iter()
        .map(|c| c.type_info().name().to_string())
        .collect();
    rows.iter()
        .map(|row| {
            let values = kinds
                .iter()
                .enumerate()
                .map(|(i, kind)| {
                    Ok(match kind.as_str() {
                        "INT8" => Value::Int(row.try_get::<Option<i64>, _>(i).map_err(map_err)?),
                        "INT4" => Value::Int(
                            row.try_get::<Option<i32>, _>(i)
                                .map_err(map_err)?
                                .map(i64::from),
                        ),
                        "INT2" => Value::Int(
                            row.try_get::<Option<i16>, _>(i)
                                .map_err(map_err)?
                                .map(i64::from),
                        ),
                        "BOOL" => Value::Int(
                            row.try_get::<Option<bool>, _>(i)
                                .map_err(map_err)?
                                .map(i64::from),
                        ),
                        "TEXT" | "VARCHAR" | "NAME" | "BPCHAR" => {
                            Value::Text(row.try_get::<Option<String>, _>(i).map_err(map_err)?)
                        }
                        other => {
                            return Err(StoreError::Corrupt(format!(
                                "unexpected column type {other}"
                            )))
                        }
                    })
                })
                .collect::<StoreResult<Vec<Value>>>()?;
            Ok(Row {
                columns: columns.clone(),
                values,
            })
        })
        .collect()
}

#[async_trait]
impl Db for PostgresDb {
    async fn query(&self, sql: &str, args: Vec<Value>) -> StoreResult<Vec<Row>> {
        let rows = within_deadline(async {
            bind(sqlx::query(sql), &args)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)
        })
        .await?;
        decode(rows)
    }

    async fn execute(&self, sql: &str, args: Vec<Value>) -> StoreResult<u64> {
        let done = bind(sqlx::query(sql), &args)
            .execute(&self.pool)
            .await
            .map_err(map_err)
            .map(|done| done.rows_affected());
        self.disk_full.noted(done, |changed| *changed > 0)
    }

    /// Bounded by [`REQUEST_DEADLINE`]: a transaction given up there is
    /// rolled back by the database (its session idles past
    /// `IDLE_IN_TRANSACTION_TIMEOUT`), unless its commit had already
    /// reached it; a 503 may so have been stored, never a 2xx lost.
    async fn transaction(&self, steps: Vec<Step>) -> StoreResult<Option<Vec<Outcome>>> {
        self.disk_full.noted(
            within_deadline(self.transaction_unbounded(steps)).await,
            Outcome::any_changed,
        )
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn disk_full(&self) -> bool {
        self.disk_full.is_full()
    }
}

impl PostgresDb {
    async fn transaction_unbounded(&self, steps: Vec<Step>) -> StoreResult<Option<Vec<Outcome>>> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let mut outcomes = Vec::with_capacity(steps.len());
        for step in &steps {
            let q = bind(sqlx::query(&step.sql), &step.args);
            let outcome = if step.fetch {
                Outcome::Rows(decode(q.fetch_all(&mut *tx).await.map_err(map_err)?)?)
            } else {
                Outcome::Changed(q.execute(&mut *tx).await.map_err(map_err)?.rows_affected())
            };
            if step.required && outcome.changed() == 0 {
                tx.rollback().await.map_err(map_err)?;
                return Ok(None);
            }
            outcomes.push(outcome);
        }
        tx.commit().await.map_err(map_err)?;
        Ok(Some(outcomes))
    }
}

pub(crate) fn map_err(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db)
            if matches!(db.code().as_deref(), Some("22021") | Some("22P05")) =>
        {
            StoreError::Rejected("text values must not contain NUL characters".into())
        }
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
            field: format!("{} {}", db.message(), db.constraint().unwrap_or_default()),
        },
        // 55P03: a lock not granted within `lock_timeout`; 25P03: the
        // session idled in its transaction past the limit; 57014: canceled.
        sqlx::Error::Database(db)
            if matches!(db.code().as_deref(), Some("55P03" | "25P03" | "57014")) =>
        {
            StoreError::Unavailable(format!(
                "{} (another replica may hold the rows this needs)",
                db.message()
            ))
        }
        // The server went away under the connection: class 08 (connection
        // exceptions), 57P01–57P05 (shut down, restarting, idle session
        // ended), 53300 (too many connections). A retry finds it back.
        sqlx::Error::Database(db) if db.code().as_deref().is_some_and(connection_lost) => {
            StoreError::Unavailable(db.message().to_string())
        }
        // 53100: disk_full.
        sqlx::Error::Database(db) if db.code().as_deref() == Some("53100") => {
            StoreError::Full(db.message().to_string())
        }
        // XX001, XX002: the server read a damaged data or index page.
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("XX001" | "XX002")) => {
            StoreError::Damaged(db.message().to_string())
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        _ => StoreError::Database(err.to_string()),
    }
}

/// SQLSTATEs that say the connection or the server is gone, not the query.
fn connection_lost(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "57P05" | "53300")
}

#[cfg(test)]
mod tests {
    use super::connection_lost;

    #[test]
    fn a_lost_connection_is_told_from_a_failed_query() {
        for code in [
            "08000", "08003", "08006", "57P01", "57P02", "57P03", "53300",
        ] {
            assert!(connection_lost(code), "{code}");
        }
        for code in ["23505", "42P01", "22021", "40001", "55P03"] {
            assert!(!connection_lost(code), "{code}");
        }
    }
}
