//! Schema migrations, one ordered list per backend, applied at start-up.
//! On PostgreSQL an advisory lock keeps replicas starting together from
//! applying the same migration twice.

use sqlx::{AnyPool, Connection, Executor};

use super::Backend;
use crate::StoreResult;

const SQLITE: &[(i64, &str)] = &[(1, include_str!("../../migrations/sqlite/0001_core.sql"))];
const POSTGRES: &[(i64, &str)] = &[(1, include_str!("../../migrations/postgres/0001_core.sql"))];

const LOCK: &str = "DO $$ BEGIN PERFORM pg_advisory_lock(72430001); END $$";
const UNLOCK: &str = "DO $$ BEGIN PERFORM pg_advisory_unlock(72430001); END $$";

pub(crate) async fn run(pool: &AnyPool, backend: Backend) -> StoreResult<()> {
    let mut conn = pool.acquire().await?.detach();
    if backend == Backend::Postgres {
        conn.execute(sqlx::raw_sql(LOCK)).await?;
    }
    let result = apply(&mut conn, backend).await;
    if backend == Backend::Postgres {
        conn.execute(sqlx::raw_sql(UNLOCK)).await?;
    }
    conn.close().await?;
    result
}

async fn apply(conn: &mut sqlx::AnyConnection, backend: Backend) -> StoreResult<()> {
    conn.execute(sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    ))
    .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await?;
    let list = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    for (version, sql) in list {
        if applied.contains(version) {
            continue;
        }
        let mut tx = conn.begin().await?;
        tx.execute(sqlx::raw_sql(sql)).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(warden_core::time::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            version,
            backend = backend.as_str(),
            "applied schema migration"
        );
    }
    Ok(())
}
