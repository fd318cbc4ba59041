//! Server-wide settings: written once, read by every replica.

use sqlx::AnyPool;

use crate::StoreResult;

pub(crate) async fn get(pool: &AnyPool, name: &str) -> StoreResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM server_settings WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?,
    )
}

pub(crate) async fn get_or_insert(pool: &AnyPool, name: &str, value: &str) -> StoreResult<String> {
    sqlx::query(
        "INSERT INTO server_settings (name, value, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(value)
    .bind(warden_core::time::now_ms())
    .execute(pool)
    .await?;
    Ok(get(pool, name).await?.unwrap_or_else(|| value.to_string()))
}
