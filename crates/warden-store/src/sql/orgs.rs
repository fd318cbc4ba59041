//! Organizations and the one-time installation of the first one.

use sqlx::any::AnyRow;
use sqlx::AnyPool;
use warden_core::api_key::ApiKey;
use warden_core::org::{Organization, RateLimit};

use super::{col, keys, parse_col};
use crate::StoreResult;

const COLUMNS: &str = "id, name, plan, rate_limit_per_minute, rate_limit_burst, created_at";

fn from_row(row: &AnyRow) -> StoreResult<Organization> {
    Ok(Organization {
        id: col(row, "id")?,
        name: col(row, "name")?,
        plan: parse_col(row, "plan")?,
        rate_limit: RateLimit {
            per_minute: col::<i64>(row, "rate_limit_per_minute")? as u32,
            burst: col::<i64>(row, "rate_limit_burst")? as u32,
        },
        created_at: col(row, "created_at")?,
    })
}

pub(crate) async fn is_initialized(pool: &AnyPool) -> StoreResult<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM installation")
        .fetch_one(pool)
        .await?;
    Ok(n > 0)
}

async fn insert_org(
    conn: &mut sqlx::AnyConnection,
    org: &Organization,
    keys_: &[ApiKey],
) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO organizations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(&org.id)
    .bind(&org.name)
    .bind(org.plan.as_str())
    .bind(i64::from(org.rate_limit.per_minute))
    .bind(i64::from(org.rate_limit.burst))
    .bind(org.created_at)
    .execute(&mut *conn)
    .await?;
    for key in keys_ {
        keys::insert_with(&mut *conn, key).await?;
    }
    Ok(())
}

pub(crate) async fn initialize(
    pool: &AnyPool,
    org: &Organization,
    keys_: &[ApiKey],
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    let claimed = sqlx::query(
        "INSERT INTO installation (id, first_org_id, installed_at) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&org.id)
    .bind(org.created_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    insert_org(&mut tx, org, keys_).await?;
    tx.commit().await?;
    Ok(true)
}

pub(crate) async fn create(
    pool: &AnyPool,
    org: &Organization,
    keys_: &[ApiKey],
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    insert_org(&mut tx, org, keys_).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn get(pool: &AnyPool, id: &str) -> StoreResult<Option<Organization>> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM organizations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub(crate) async fn list(pool: &AnyPool) -> StoreResult<Vec<Organization>> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM organizations ORDER BY created_at, id"
    ))
    .fetch_all(pool)
    .await?
    .iter()
    .map(from_row)
    .collect()
}
