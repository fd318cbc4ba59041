//! Organizations and the one-time installation of the first one.

use warden_core::api_key::ApiKey;
use warden_core::org::{Organization, RateLimit};

use super::{keys, parse};
use crate::db::{Db, Row, Step};
use crate::StoreResult;

const COLUMNS: &str = "id, name, plan, rate_limit_per_minute, rate_limit_burst, created_at";

fn from_row(row: &Row) -> StoreResult<Organization> {
    Ok(Organization {
        id: row.text("id")?,
        name: row.text("name")?,
        plan: parse(row, "plan")?,
        rate_limit: RateLimit {
            per_minute: row.int("rate_limit_per_minute")? as u32,
            burst: row.int("rate_limit_burst")? as u32,
        },
        created_at: row.int("created_at")?,
    })
}

fn insert_steps(org: &Organization, keys_: &[ApiKey]) -> Vec<Step> {
    let mut steps = vec![Step::execute(
        format!("INSERT INTO organizations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        vec![
            (&org.id).into(),
            (&org.name).into(),
            org.plan.as_str().into(),
            i64::from(org.rate_limit.per_minute).into(),
            i64::from(org.rate_limit.burst).into(),
            org.created_at.into(),
        ],
    )];
    steps.extend(keys_.iter().map(keys::insert_step));
    steps
}

/// An organization's name, plan and limit as given; required to find it.
pub(crate) fn update_step(org: &Organization) -> Step {
    Step::execute(
        "UPDATE organizations SET name = $1, plan = $2, rate_limit_per_minute = $3, \
         rate_limit_burst = $4 WHERE id = $5",
        vec![
            (&org.name).into(),
            org.plan.as_str().into(),
            i64::from(org.rate_limit.per_minute).into(),
            i64::from(org.rate_limit.burst).into(),
            (&org.id).into(),
        ],
    )
    .required()
}

pub(crate) async fn is_initialized(db: &dyn Db) -> StoreResult<bool> {
    let rows = db
        .query("SELECT COUNT(*) AS n FROM installation", vec![])
        .await?;
    Ok(rows.first().map(|r| r.int("n")).transpose()?.unwrap_or(0) > 0)
}

pub(crate) async fn initialize(
    db: &dyn Db,
    org: &Organization,
    keys_: &[ApiKey],
) -> StoreResult<bool> {
    let mut steps = vec![Step::execute(
        "INSERT INTO installation (id, first_org_id, installed_at) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO NOTHING",
        vec![(&org.id).into(), org.created_at.into()],
    )
    .required()];
    steps.extend(insert_steps(org, keys_));
    Ok(db.transaction(steps).await?.is_some())
}

pub(crate) async fn create(db: &dyn Db, org: &Organization, keys_: &[ApiKey]) -> StoreResult<()> {
    db.transaction(insert_steps(org, keys_)).await?;
    Ok(())
}

pub(crate) async fn get(db: &dyn Db, id: &str) -> StoreResult<Option<Organization>> {
    let rows = db
        .query(
            &format!("SELECT {COLUMNS} FROM organizations WHERE id = $1"),
            vec![id.into()],
        )
        .await?;
    rows.first().map(from_row).transpose()
}

pub(crate) async fn list(db: &dyn Db) -> StoreResult<Vec<Organization>> {
    let rows = db
        .query(
            &format!("SELECT {COLUMNS} FROM organizations ORDER BY created_at, id"),
            vec![],
        )
        .await?;
    rows.iter().map(from_row).collect()
}
