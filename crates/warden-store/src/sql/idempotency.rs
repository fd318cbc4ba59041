//! Idempotency records: the first response to a keyed POST, replayed to
//! retries for 24 hours.

use sqlx::{AnyPool, Connection, Row};
use warden_core::time::Millis;
use warden_core::Tenant;

use crate::{IdempotencyState, StoreResult};

pub(crate) async fn begin(
    pool: &AnyPool,
    tenant: &Tenant,
    key: &str,
    fingerprint: &str,
    now: Millis,
    expired_before: Millis,
) -> StoreResult<IdempotencyState> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let env = tenant.environment.as_str();
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE org_id = $1 AND environment = $2 \
         AND idempotency_key = $3 AND created_at < $4",
    )
    .bind(&tenant.org_id)
    .bind(env)
    .bind(key)
    .bind(expired_before)
    .execute(&mut *tx)
    .await?;
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (org_id, environment, idempotency_key, fingerprint, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, environment, idempotency_key) DO NOTHING",
    )
    .bind(&tenant.org_id)
    .bind(env)
    .bind(key)
    .bind(fingerprint)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let state = if claimed == 1 {
        IdempotencyState::Fresh
    } else {
        let row = sqlx::query(
            "SELECT fingerprint, status_code, response_body FROM idempotency_keys \
             WHERE org_id = $1 AND environment = $2 AND idempotency_key = $3",
        )
        .bind(&tenant.org_id)
        .bind(env)
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
        let stored: String = row.try_get("fingerprint")?;
        let status: Option<i64> = row.try_get("status_code")?;
        let body: Option<String> = row.try_get("response_body")?;
        match (stored == fingerprint, status, body) {
            (false, _, _) => IdempotencyState::Mismatch,
            (true, Some(status), Some(body)) => IdempotencyState::Completed {
                status: status as u16,
                body,
            },
            _ => IdempotencyState::InProgress,
        }
    };
    tx.commit().await?;
    Ok(state)
}

pub(crate) async fn finish(
    pool: &AnyPool,
    tenant: &Tenant,
    key: &str,
    status: u16,
    body: &str,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET status_code = $1, response_body = $2 \
         WHERE org_id = $3 AND environment = $4 AND idempotency_key = $5",
    )
    .bind(i64::from(status))
    .bind(body)
    .bind(&tenant.org_id)
    .bind(tenant.environment.as_str())
    .bind(key)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn abandon(pool: &AnyPool, tenant: &Tenant, key: &str) -> StoreResult<()> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE org_id = $1 AND environment = $2 \
         AND idempotency_key = $3 AND status_code IS NULL",
    )
    .bind(&tenant.org_id)
    .bind(tenant.environment.as_str())
    .bind(key)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn purge(pool: &AnyPool, before: Millis) -> StoreResult<u64> {
    Ok(
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
