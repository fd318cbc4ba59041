//! API keys: stored by digest only.

use sqlx::any::AnyRow;
use sqlx::AnyPool;
use warden_core::api_key::{parse_cidr, ApiKey};
use warden_core::page::{Page, PageRequest};
use warden_core::scope::ScopeSet;
use warden_core::time::Millis;
use warden_core::Tenant;

use super::builder::SqlBuilder;
use super::paging;
use super::{col, parse_col};
use crate::{StoreError, StoreResult};

const COLUMNS: &str = "id, org_id, environment, name, last_four, secret_digest, previous_digest, \
     previous_valid_until, scopes, agent_id, allowed_cidrs, expires_at, created_at, last_used_at, \
     revoked_at, rotated_at";

fn json_list(row: &AnyRow, name: &str) -> StoreResult<Vec<String>> {
    let text: String = col(row, name)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

fn from_row(row: &AnyRow) -> StoreResult<ApiKey> {
    let scopes = ScopeSet::parse(&json_list(row, "scopes")?)
        .map_err(|e| StoreError::Corrupt(format!("scopes: {e}")))?;
    let allowed_cidrs = json_list(row, "allowed_cidrs")?
        .iter()
        .map(|c| parse_cidr(c).ok_or_else(|| StoreError::Corrupt(format!("cidr `{c}`"))))
        .collect::<StoreResult<_>>()?;
    Ok(ApiKey {
        id: col(row, "id")?,
        org_id: col(row, "org_id")?,
        environment: parse_col(row, "environment")?,
        name: col(row, "name")?,
        last_four: col(row, "last_four")?,
        secret_digest: col(row, "secret_digest")?,
        previous_digest: col(row, "previous_digest")?,
        previous_valid_until: col(row, "previous_valid_until")?,
        scopes,
        agent_id: col(row, "agent_id")?,
        allowed_cidrs,
        expires_at: col(row, "expires_at")?,
        created_at: col(row, "created_at")?,
        last_used_at: col(row, "last_used_at")?,
        revoked_at: col(row, "revoked_at")?,
        rotated_at: col(row, "rotated_at")?,
    })
}

pub(crate) async fn insert_with(conn: &mut sqlx::AnyConnection, key: &ApiKey) -> StoreResult<()> {
    let cidrs: Vec<String> = key.allowed_cidrs.iter().map(|n| n.to_string()).collect();
    sqlx::query(&format!(
        "INSERT INTO api_keys ({COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(&key.id)
    .bind(&key.org_id)
    .bind(key.environment.as_str())
    .bind(&key.name)
    .bind(&key.last_four)
    .bind(&key.secret_digest)
    .bind(key.previous_digest.clone())
    .bind(key.previous_valid_until)
    .bind(serde_json::to_string(&key.scopes.names()).unwrap_or_default())
    .bind(key.agent_id.clone())
    .bind(serde_json::to_string(&cidrs).unwrap_or_default())
    .bind(key.expires_at)
    .bind(key.created_at)
    .bind(key.last_used_at)
    .bind(key.revoked_at)
    .bind(key.rotated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn insert(pool: &AnyPool, key: &ApiKey) -> StoreResult<()> {
    let mut conn = pool.acquire().await?;
    insert_with(&mut conn, key).await
}

pub(crate) async fn find_by_digest(pool: &AnyPool, digest: &str) -> StoreResult<Option<ApiKey>> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE secret_digest = $1 \
         UNION ALL SELECT {COLUMNS} FROM api_keys WHERE previous_digest = $1 LIMIT 1"
    ))
    .bind(digest)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub(crate) async fn find(pool: &AnyPool, id: &str) -> StoreResult<Option<ApiKey>> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub(crate) async fn get(pool: &AnyPool, tenant: &Tenant, id: &str) -> StoreResult<Option<ApiKey>> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE id = $1 AND org_id = $2 AND environment = $3"
    ))
    .bind(id)
    .bind(&tenant.org_id)
    .bind(tenant.environment.as_str())
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub(crate) async fn list(
    pool: &AnyPool,
    tenant: &Tenant,
    page: &PageRequest,
) -> StoreResult<Page<ApiKey>> {
    let mut q = SqlBuilder::new(&format!("SELECT {COLUMNS} FROM api_keys WHERE org_id = "));
    q.text(&tenant.org_id)
        .push(" AND environment = ")
        .text(tenant.environment.as_str());
    let rows = paging::fetch(pool, &mut q, page, &["created_at"]).await?;
    paging::finish(rows, page, from_row, |k| {
        (
            warden_core::page::SortValue::Int(k.created_at),
            k.id.clone(),
        )
    })
}

pub(crate) async fn revoke(
    pool: &AnyPool,
    tenant: &Tenant,
    id: &str,
    at: Millis,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 \
         WHERE id = $2 AND org_id = $3 AND environment = $4 AND revoked_at IS NULL",
    )
    .bind(at)
    .bind(id)
    .bind(&tenant.org_id)
    .bind(tenant.environment.as_str())
    .execute(pool)
    .await?
    .rows_affected();
    Ok(done == 1)
}

pub(crate) async fn rotate(
    pool: &AnyPool,
    tenant: &Tenant,
    id: &str,
    new_digest: &str,
    last_four: &str,
    previous_valid_until: Option<Millis>,
    at: Millis,
) -> StoreResult<Option<ApiKey>> {
    let done = sqlx::query(
        "UPDATE api_keys SET previous_digest = CASE WHEN $1 IS NULL THEN NULL ELSE secret_digest END, \
         previous_valid_until = $1, secret_digest = $2, last_four = $3, rotated_at = $4 \
         WHERE id = $5 AND org_id = $6 AND environment = $7 AND revoked_at IS NULL",
    )
    .bind(previous_valid_until)
    .bind(new_digest)
    .bind(last_four)
    .bind(at)
    .bind(id)
    .bind(&tenant.org_id)
    .bind(tenant.environment.as_str())
    .execute(pool)
    .await?
    .rows_affected();
    if done == 0 {
        return Ok(None);
    }
    get(pool, tenant, id).await
}

pub(crate) async fn record_use(pool: &AnyPool, uses: &[(String, Millis)]) -> StoreResult<()> {
    if uses.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for (id, at) in uses {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 \
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
        )
        .bind(*at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
