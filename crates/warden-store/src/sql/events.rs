//! The durable event log: events numbered in commit order, read back in
//! that order by consumers (the search index) that keep their cursors here,
//! and removed when their organization's retention has passed.
//!
//! Sequence numbers come from one counter row that every append moves
//! first. On PostgreSQL the row stays locked until the appending
//! transaction commits, so appends commit in sequence order and a rolled
//! back append returns its numbers: a consumer reading `seq > cursor` never
//! passes a gap that a still-open transaction would fill.

use warden_core::time::Millis;
use warden_core::Tenant;

use crate::db::{Db, Step, Value};
use crate::{EventAppend, IdempotentAnswer, LoggedEvent, StoreError, StoreResult};

/// Rows per INSERT statement: few round trips, well under both backends'
/// parameter limits.
const ROWS_PER_STATEMENT: usize = 250;

/// The steps that append `events`: the counter first, then the rows.
pub(crate) fn append_steps(events: &[&EventAppend]) -> Vec<Step> {
    let n = events.len() as i64;
    let mut steps = Vec::with_capacity(1 + events.len().div_ceil(ROWS_PER_STATEMENT));
    steps.push(Step::query(
        "UPDATE event_log_head SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq",
        vec![n.into()],
    ));
    for (chunk_index, chunk) in events.chunks(ROWS_PER_STATEMENT).enumerate() {
        let mut sql = String::from(
            "INSERT INTO events (seq, org_id, environment, id, occurred_at, body) VALUES ",
        );
        let mut args: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
        for (i, event) in chunk.iter().enumerate() {
            let k = (chunk_index * ROWS_PER_STATEMENT + i) as i64;
            let p = args.len();
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "((SELECT last_seq FROM event_log_head WHERE id = 1) - ${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6
            ));
            args.push((n - 1 - k).into());
            args.push((&event.tenant.org_id).into());
            args.push(event.tenant.environment.as_str().into());
            args.push((&event.id).into());
            args.push(event.occurred_at.into());
            args.push((&event.body).into());
        }
        steps.push(Step::execute(sql, args));
    }
    steps
}

/// Appends the events in one transaction; returns the last sequence number.
pub(crate) async fn append(
    db: &dyn Db,
    events: &[EventAppend],
    answer: Option<&IdempotentAnswer>,
) -> StoreResult<i64> {
    if events.is_empty() {
        return head(db).await;
    }
    let mut steps = append_steps(&events.iter().collect::<Vec<_>>());
    steps.extend(
        answer
            .map(|a| super::idempotency::finish_step(&a.tenant, &a.key, a.status, &a.sealed_body)),
    );
    let outcomes = db
        .transaction(steps)
        .await?
        .ok_or_else(|| StoreError::Corrupt("event append abandoned".into()))?;
    let rows = outcomes
        .into_iter()
        .next()
        .map(|o| o.rows())
        .unwrap_or_default();
    rows.first()
        .ok_or_else(|| StoreError::Corrupt("no event log head".into()))?
        .int("last_seq")
}

pub(crate) async fn head(db: &dyn Db) -> StoreResult<i64> {
    db.query("SELECT last_seq FROM event_log_head WHERE id = 1", vec![])
        .await?
        .first()
        .ok_or_else(|| StoreError::Corrupt("no event log head".into()))?
        .int("last_seq")
}

pub(crate) async fn after(db: &dyn Db, after: i64, limit: i64) -> StoreResult<Vec<LoggedEvent>> {
    db.query(
        "SELECT seq, org_id, environment, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
        vec![after.into(), limit.into()],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(LoggedEvent {
            seq: row.int("seq")?,
            tenant: row.tenant()?,
            body: row.text("body")?,
        })
    })
    .collect()
}

pub(crate) async fn count(db: &dyn Db, tenant: &Tenant) -> StoreResult<i64> {
    db.query(
        "SELECT COUNT(*) AS n FROM events WHERE org_id = $1 AND environment = $2",
        vec![(&tenant.org_id).into(), tenant.environment.as_str().into()],
    )
    .await?
    .first()
    .ok_or_else(|| StoreError::Corrupt("no count".into()))?
    .int("n")
}

pub(crate) async fn expire(db: &dyn Db, org_id: &str, before: Millis) -> StoreResult<u64> {
    db.execute(
        "DELETE FROM events WHERE org_id = $1 AND occurred_at < $2",
        vec![org_id.into(), before.into()],
    )
    .await
}

pub(crate) async fn cursor(db: &dyn Db, name: &str) -> StoreResult<Option<i64>> {
    db.query(
        "SELECT position FROM consumer_cursors WHERE name = $1",
        vec![name.into()],
    )
    .await?
    .first()
    .map(|r| r.int("position"))
    .transpose()
}

/// The step that moves consumer `name` to `position`.
pub(crate) fn cursor_step(name: &str, position: i64, now: Millis) -> Step {
    Step::execute(
        "INSERT INTO consumer_cursors (name, position, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET position = $2, updated_at = $3",
        vec![name.into(), position.into(), now.into()],
    )
}

pub(crate) async fn set_cursor(
    db: &dyn Db,
    name: &str,
    position: Option<i64>,
    now: Millis,
) -> StoreResult<()> {
    match position {
        Some(position) => {
            let step = cursor_step(name, position, now);
            db.execute(&step.sql, step.args).await?;
        }
        None => {
            db.execute(
                "DELETE FROM consumer_cursors WHERE name = $1",
                vec![name.into()],
            )
            .await?;
        }
    }
    Ok(())
}

pub(crate) async fn org_setting(
    db: &dyn Db,
    org_id: &str,
    name: &str,
) -> StoreResult<Option<String>> {
    db.query(
        "SELECT value FROM org_settings WHERE org_id = $1 AND name = $2",
        vec![org_id.into(), name.into()],
    )
    .await?
    .first()
    .map(|r| r.text("value"))
    .transpose()
}

pub(crate) async fn orgs_with_setting(
    db: &dyn Db,
    name: &str,
) -> StoreResult<Vec<(String, String)>> {
    db.query(
        "SELECT org_id, value FROM org_settings WHERE name = $1 ORDER BY org_id",
        vec![name.into()],
    )
    .await?
    .iter()
    .map(|r| Ok((r.text("org_id")?, r.text("value")?)))
    .collect()
}

/// Sets (or, with `None`, removes) an organization setting.
pub(crate) fn org_setting_step(org_id: &str, name: &str, value: Option<&str>, now: Millis) -> Step {
    match value {
        Some(value) => Step::execute(
            "INSERT INTO org_settings (org_id, name, value, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (org_id, name) DO UPDATE SET value = $3, updated_at = $4",
            vec![org_id.into(), name.into(), value.into(), now.into()],
        ),
        None => Step::execute(
            "DELETE FROM org_settings WHERE org_id = $1 AND name = $2",
            vec![org_id.into(), name.into()],
        ),
    }
}
