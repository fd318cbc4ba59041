//! Organizations and the one-time installation of the first one.

use warden_core::api_key::ApiKey;
use warden_core::org::{Organization, RateLimit};

use super::{keys, parse, Backend};
use crate::db::{Db, Row, Step};
use crate::{StoreError, StoreResult};

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

/// The advisory lock that orders, on PostgreSQL, every transaction that
/// gives an organization its name: each then sees the names committed
/// before it (SQLite's transactions are one at a time already).
const NAMES_LOCK: i64 = 0x5741_5244_4e41_4d45; // "WARDNAME"

fn names_lock(backend: Backend) -> Option<Step> {
    (backend == Backend::Postgres).then(|| {
        Step::query(
            "SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock($1)) AS l",
            vec![NAMES_LOCK.into()],
        )
    })
}

/// No other organization is called `$n` (case aside, as the database
/// folds it; the console also compares whole Unicode case first).
fn name_free(n: usize, other_than: usize) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM organizations o WHERE lower(o.name) = lower(${n}) \
         AND o.id <> ${other_than})"
    )
}

fn insert_steps(backend: Backend, org: &Organization, keys_: &[ApiKey]) -> Vec<Step> {
    let mut steps: Vec<Step> = names_lock(backend).into_iter().collect();
    steps.push(
        Step::execute(
            format!(
                "INSERT INTO organizations ({COLUMNS}) SELECT $1, $2, $3, $4, $5, $6 WHERE {}",
                name_free(2, 1)
            ),
            vec![
                (&org.id).into(),
                (&org.name).into(),
                org.plan.as_str().into(),
                i64::from(org.rate_limit.per_minute).into(),
                i64::from(org.rate_limit.burst).into(),
                org.created_at.into(),
            ],
        )
        .required(),
    );
    steps.extend(keys_.iter().map(keys::insert_step));
    steps
}

/// An organization's name, plan and limit as `now` gives them, only while
/// it is still as `was` (a change made meanwhile is not overwritten) and
/// its new name is free; required.
pub(crate) fn update_steps(backend: Backend, was: &Organization, now: &Organization) -> Vec<Step> {
    let mut steps: Vec<Step> = names_lock(backend).into_iter().collect();
    steps.push(
        Step::execute(
            format!(
                "UPDATE organizations SET name = $1, plan = $2, rate_limit_per_minute = $3, \
                 rate_limit_burst = $4 WHERE id = $5 AND name = $6 AND plan = $7 \
                 AND rate_limit_per_minute = $8 AND rate_limit_burst = $9 \
                 AND (lower($1) = lower($6) OR {})",
                name_free(1, 5)
            ),
            vec![
                (&now.name).into(),
                now.plan.as_str().into(),
                i64::from(now.rate_limit.per_minute).into(),
                i64::from(now.rate_limit.burst).into(),
                (&now.id).into(),
                (&was.name).into(),
                was.plan.as_str().into(),
                i64::from(was.rate_limit.per_minute).into(),
                i64::from(was.rate_limit.burst).into(),
            ],
        )
        .required(),
    );
    steps
}

pub(crate) async fn is_initialized(db: &dyn Db) -> StoreResult<bool> {
    let rows = db
        .query("SELECT COUNT(*) AS n FROM installation", vec![])
        .await?;
    Ok(rows.first().map(|r| r.int("n")).transpose()?.unwrap_or(0) > 0)
}

pub(crate) async fn initialize(
    db: &dyn Db,
    backend: Backend,
    org: &Organization,
    keys_: &[ApiKey],
) -> StoreResult<bool> {
    let mut steps = vec![Step::execute(
        "INSERT INTO installation (id, first_org_id, installed_at) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO NOTHING",
        vec![(&org.id).into(), org.created_at.into()],
    )
    .required()];
    steps.extend(insert_steps(backend, org, keys_));
    Ok(db.transaction(steps).await?.is_some())
}

/// Another organization of the name (case aside) is a conflict on `name`.
pub(crate) async fn create(
    db: &dyn Db,
    backend: Backend,
    org: &Organization,
    keys_: &[ApiKey],
) -> StoreResult<()> {
    match db.transaction(insert_steps(backend, org, keys_)).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::Conflict {
            field: "name".into(),
        }),
    }
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
