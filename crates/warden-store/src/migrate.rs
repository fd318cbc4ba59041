//! Schema migrations, one ordered list per backend, applied at start-up.

use sqlx::{Connection, Executor, PgPool};

use crate::StoreResult;

/// The migrations that began sealing audit records: the upgrade's
/// sealing reads when they were applied.
pub(crate) const SQLITE_SEALS: i64 = 7;
pub(crate) const POSTGRES_SEALS: i64 = 6;

pub(crate) const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_core.sql")),
    (2, include_str!("../migrations/sqlite/0002_governance.sql")),
    (3, include_str!("../migrations/sqlite/0003_events.sql")),
    (
        4,
        include_str!("../migrations/sqlite/0004_decision_events.sql"),
    ),
    (
        5,
        include_str!("../migrations/sqlite/0005_unused_approvals.sql"),
    ),
    (
        6,
        include_str!("../migrations/sqlite/0006_agent_changes.sql"),
    ),
    (
        SQLITE_SEALS,
        include_str!("../migrations/sqlite/0007_audit_seals.sql"),
    ),
    (8, include_str!("../migrations/sqlite/0008_hold_keys.sql")),
];
pub(crate) const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_core.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_governance.sql"),
    ),
    (3, include_str!("../migrations/postgres/0003_events.sql")),
    (
        4,
        include_str!("../migrations/postgres/0004_unused_approvals.sql"),
    ),
    (
        5,
        include_str!("../migrations/postgres/0005_agent_changes.sql"),
    ),
    (
        POSTGRES_SEALS,
        include_str!("../migrations/postgres/0006_audit_seals.sql"),
    ),
    (7, include_str!("../migrations/postgres/0007_hold_keys.sql")),
];

const CREATE: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

/// Refuses a schema migrated past what this binary knows: a newer replica
/// upgraded the shared database, and an older one serving it could write
/// what the new schema no longer means.
fn refuse_newer(applied: &[i64], list: &[(i64, &str)]) -> StoreResult<()> {
    let known = list.iter().map(|(v, _)| *v).max().unwrap_or(0);
    match applied.iter().copied().filter(|v| *v > known).max() {
        Some(newest) => Err(crate::StoreError::Rejected(format!(
            "the database's schema is at version {newest}, newer than this binary knows \
             (up to {known}): a newer Warden migrated it; run that version on every replica"
        ))),
        None => Ok(()),
    }
}

pub(crate) fn apply_sqlite(
    conn: &mut rusqlite::Connection,
    list: &[(i64, &str)],
) -> StoreResult<()> {
    let sql_err = |e: rusqlite::Error| crate::StoreError::Database(e.to_string());
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql_err)?;
    tx.execute_batch(CREATE).map_err(sql_err)?;
    let applied: Vec<i64> = tx
        .prepare("SELECT version FROM schema_migrations")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()
        })
        .map_err(sql_err)?;
    refuse_newer(&applied, list)?;
    for (version, sql) in list {
        if applied.contains(version) {
            continue;
        }
        tx.execute_batch(sql).map_err(sql_err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            [*version, warden_core::time::now_ms()],
        )
        .map_err(sql_err)?;
        tracing::info!(version, backend = "sqlite", "applied schema migration");
    }
    tx.commit().map_err(sql_err)
}

/// Applies pending migrations while holding an advisory lock, on one
/// connection taken out of the pool.
pub(crate) async fn apply_postgres(pool: &PgPool, list: &[(i64, &str)]) -> StoreResult<()> {
    use crate::postgres::map_err;
    let mut conn = pool.acquire().await.map_err(map_err)?.detach();
    // Replicas starting together wait for the first one's migrations,
    // however long they take.
    conn.execute("SET lock_timeout = 0")
        .await
        .map_err(map_err)?;
    conn.execute("SELECT pg_advisory_lock(72430001)")
        .await
        .map_err(map_err)?;
    let result = async {
        conn.execute(CREATE).await.map_err(map_err)?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&mut conn)
            .await
            .map_err(map_err)?;
        refuse_newer(&applied, list)?;
        for (version, sql) in list {
            if applied.contains(version) {
                continue;
            }
            let mut tx = conn.begin().await.map_err(map_err)?;
            tx.execute(sqlx::raw_sql(sql)).await.map_err(map_err)?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(warden_core::time::now_ms())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            tracing::info!(version, backend = "postgres", "applied schema migration");
        }
        Ok(())
    }
    .await;
    let _ = conn.execute("SELECT pg_advisory_unlock(72430001)").await;
    let _ = conn.close().await;
    result
}
