//! Step-up holds. Resolution and redemption are conditional updates, so a
//! hold is resolved once and an approval is used once, whatever races.

use warden_core::hold::{Abandoned, Hold, HoldFilter, HoldStatus};
use warden_core::page::{Page, PageRequest, SortValue};
use warden_core::time::Millis;
use warden_core::Tenant;

use super::builder::SqlBuilder;
use super::by_key;
use super::paging;
use crate::db::{Db, Row, Step, Value};
use crate::{StoreError, StoreResult};

const COLUMNS: &str = "id, token_digest, audit_id, agent_id, tool, args_sha256, policy_id, \
    policy_version, session_id, status, created_at, expires_at, decided_by, decided_at, comment, \
    redeemed_at, key_id";

fn decode(row: &Row) -> StoreResult<Hold> {
    let status = row.text("status")?;
    Ok(Hold {
        id: row.text("id")?,
        token_digest: row.text("token_digest")?,
        audit_id: row.text("audit_id")?,
        agent_id: row.text("agent_id")?,
        tool: row.text("tool")?,
        args_sha256: row.text("args_sha256")?,
        policy_id: row.text("policy_id")?,
        policy_version: row.int("policy_version")?,
        session_id: row.opt_text("session_id")?,
        status: HoldStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("hold status `{status}`")))?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        decided_by: row.opt_text("decided_by")?,
        decided_at: row.opt_int("decided_at")?,
        comment: row.opt_text("comment")?,
        redeemed_at: row.opt_int("redeemed_at")?,
        key_id: row.opt_text("key_id")?,
    })
}

pub(crate) fn insert_step(tenant: &Tenant, h: &Hold) -> Step {
    Step::execute(
        format!(
            "INSERT INTO holds (org_id, environment, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, \
             $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        ),
        vec![
            (&tenant.org_id).into(),
            tenant.environment.as_str().into(),
            (&h.id).into(),
            (&h.token_digest).into(),
            (&h.audit_id).into(),
            (&h.agent_id).into(),
            (&h.tool).into(),
            (&h.args_sha256).into(),
            (&h.policy_id).into(),
            h.policy_version.into(),
            (&h.session_id).into(),
            h.status.as_str().into(),
            h.created_at.into(),
            h.expires_at.into(),
            (&h.decided_by).into(),
            h.decided_at.into(),
            (&h.comment).into(),
            h.redeemed_at.into(),
            (&h.key_id).into(),
        ],
    )
}

/// An approval stands only while the held call's agent exists and is not
/// suspended, the key that made the call is not revoked, and the rule
/// that held it is as it was (the policy at the hold's version; for the
/// default decision, `step_up` set before the hold). Checked in the
/// transaction that gives or uses the approval, after the chain's head
/// has moved: a suspension, deletion, revocation or policy change
/// recorded earlier in the chain is always seen, on any replica.
const APPROVAL_STANDS: &str = concat!(
    agent_stands!(),
    " AND (holds.key_id IS NULL OR ",
    key_stands!(),
    ") AND ",
    rule_stands!()
);

/// The held call's agent exists and is not suspended.
macro_rules! agent_stands {
    () => {
        "EXISTS (SELECT 1 FROM agents a WHERE a.id = holds.agent_id \
         AND a.org_id = holds.org_id AND a.environment = holds.environment \
         AND a.status <> 'suspended')"
    };
}
use agent_stands;

/// The key the hold names is not revoked.
macro_rules! key_stands {
    () => {
        "EXISTS (SELECT 1 FROM api_keys k WHERE k.id = holds.key_id AND k.revoked_at IS NULL)"
    };
}
use key_stands;

/// The rule that held the call is as it was.
macro_rules! rule_stands {
    () => {
        "((holds.policy_id <> '' AND EXISTS (SELECT 1 FROM policies p \
         WHERE p.id = holds.policy_id AND p.org_id = holds.org_id \
         AND p.environment = holds.environment AND p.version = holds.policy_version)) \
         OR (holds.policy_id = '' AND EXISTS (SELECT 1 FROM tenant_settings s \
         WHERE s.org_id = holds.org_id AND s.environment = holds.environment \
         AND s.name = 'default_decision' AND s.value = 'step_up' \
         AND s.updated_at <= holds.created_at)))"
    };
}
use rule_stands;

/// Resolves a hold that is still pending; an approval only while it
/// [stands](APPROVAL_STANDS).
pub(crate) fn resolve_step(
    tenant: &Tenant,
    id: &str,
    status: HoldStatus,
    decided_by: &Option<String>,
    decided_at: Millis,
    comment: &Option<String>,
) -> Step {
    let mut sql = format!(
        "UPDATE holds SET status = $1, decided_by = $2, decided_at = $3, comment = $4 \
         WHERE id = $5 AND {} AND status = 'pending'",
        by_key::same_tenant(6, 7)
    );
    if status == HoldStatus::Approved {
        sql.push_str(" AND ");
        sql.push_str(APPROVAL_STANDS);
    }
    Step::execute(
        sql,
        vec![
            status.as_str().into(),
            decided_by.into(),
            decided_at.into(),
            comment.into(),
            id.into(),
            (&tenant.org_id).into(),
            tenant.environment.as_str().into(),
        ],
    )
    .required()
}

/// Marks an approved hold used; only once, only while the approval
/// [stands](APPROVAL_STANDS), and only at a time (`$1`, the use's record's)
/// within the approval's own: a request checked just before the end would
/// otherwise record its use after it.
fn redeem_sql() -> String {
    format!(
        "UPDATE holds SET redeemed_at = $1 WHERE id = $2 AND {} \
         AND status = 'approved' AND redeemed_at IS NULL \
         AND $1 <= decided_at + (expires_at - created_at) AND {APPROVAL_STANDS}",
        by_key::same_tenant(3, 4)
    )
}

fn redeem_args(tenant: &Tenant, id: &str, at: Millis) -> Vec<Value> {
    vec![
        at.into(),
        id.into(),
        (&tenant.org_id).into(),
        tenant.environment.as_str().into(),
    ]
}

pub(crate) fn redeem_step(tenant: &Tenant, id: &str, at: Millis) -> Step {
    Step::execute(redeem_sql(), redeem_args(tenant, id, at)).required()
}

pub(crate) async fn get(db: &dyn Db, tenant: &Tenant, id: &str) -> StoreResult<Option<Hold>> {
    by_key::tenant_row(db, "holds", COLUMNS, "id", id, tenant)
        .await?
        .as_ref()
        .map(decode)
        .transpose()
}

pub(crate) async fn by_token(
    db: &dyn Db,
    tenant: &Tenant,
    digest: &str,
) -> StoreResult<Option<Hold>> {
    by_key::tenant_row(db, "holds", COLUMNS, "token_digest", digest, tenant)
        .await?
        .as_ref()
        .map(decode)
        .transpose()
}

pub(crate) async fn list(
    db: &dyn Db,
    tenant: &Tenant,
    filter: &HoldFilter,
    page: &PageRequest,
) -> StoreResult<Page<Hold>> {
    let mut q = SqlBuilder::new(&format!("SELECT {COLUMNS} FROM holds WHERE org_id = "));
    q.bind(&tenant.org_id)
        .push(" AND environment = ")
        .bind(tenant.environment.as_str());
    // An approval unused past its own deadline, and a hold pending past
    // its expiry that the sweep has not reached yet, read as expired
    // (`Hold::status_at`).
    const APPROVAL_LAPSED: &str = "status = 'approved' AND redeemed_at IS NULL \
         AND decided_at + (expires_at - created_at) < ";
    match filter.status {
        Some(HoldStatus::Approved) => {
            q.push(" AND status = 'approved' AND NOT (")
                .push(APPROVAL_LAPSED)
                .bind(filter.now)
                .push(")");
            if filter.unused {
                q.push(" AND redeemed_at IS NULL");
            }
        }
        Some(HoldStatus::Pending) => {
            q.push(" AND status = 'pending' AND expires_at > ")
                .bind(filter.now);
        }
        Some(HoldStatus::Expired) => {
            q.push(" AND (status = 'expired' OR (")
                .push(APPROVAL_LAPSED)
                .bind(filter.now)
                .push(") OR (status = 'pending' AND expires_at <= ")
                .bind(filter.now)
                .push("))");
        }
        Some(status) => {
            q.push(" AND status = ").bind(status.as_str());
        }
        None => {}
    }
    if let Some(agent) = &filter.agent_id {
        q.push(" AND agent_id = ").bind(agent);
    }
    if let Some(policy) = &filter.policy_id {
        q.push(" AND policy_id = ").bind(policy);
    }
    let rows = paging::fetch(db, q, page, &["created_at"]).await?;
    paging::finish(rows, page, decode, |h| {
        (SortValue::Int(h.created_at), h.id.clone())
    })
}

/// Marks an approval that lapsed unused; only while it is one.
pub(crate) fn lapse_step(tenant: &Tenant, id: &str) -> Step {
    Step::execute(
        format!(
            "UPDATE holds SET status = 'expired' WHERE id = $1 AND {} \
             AND status = 'approved' AND redeemed_at IS NULL",
            by_key::same_tenant(2, 3)
        ),
        vec![
            id.into(),
            (&tenant.org_id).into(),
            tenant.environment.as_str().into(),
        ],
    )
    .required()
}

/// Pending holds past their expiry, in any tenant.
pub(crate) async fn expired(
    db: &dyn Db,
    now: Millis,
    limit: i64,
) -> StoreResult<Vec<(Tenant, Hold)>> {
    let due = "status = 'pending' AND expires_at <= $1 ORDER BY expires_at";
    tenant_holds(db, due, now, limit).await
}

/// Approvals unused past their own deadline (`Hold::approval_expired`),
/// in any tenant; read through the index of unused approvals.
pub(crate) async fn lapsed_approvals(
    db: &dyn Db,
    now: Millis,
    limit: i64,
) -> StoreResult<Vec<(Tenant, Hold)>> {
    let lapsed = "status = 'approved' AND redeemed_at IS NULL \
         AND decided_at + (expires_at - created_at) < $1 ORDER BY decided_at";
    tenant_holds(db, lapsed, now, limit).await
}

/// Pending holds, not yet due, whose policy is not at the version that
/// held the call any more (a hold of the default decision names none),
/// in any tenant; read through the index of pending holds.
pub(crate) async fn outdated(
    db: &dyn Db,
    now: Millis,
    limit: i64,
) -> StoreResult<Vec<(Tenant, Hold)>> {
    // A policy's holds under another version than its own, and the
    // default's while the default is not `step_up` (a replica that had
    // not yet seen a change made them after it).
    let outdated = "status = 'pending' AND expires_at > $1 AND ((policy_id <> '' \
         AND NOT EXISTS (SELECT 1 FROM policies p WHERE p.id = holds.policy_id \
         AND p.version = holds.policy_version)) OR (policy_id = '' AND NOT EXISTS \
         (SELECT 1 FROM tenant_settings s WHERE s.org_id = holds.org_id \
         AND s.environment = holds.environment AND s.name = 'default_decision' \
         AND s.value = 'step_up'))) ORDER BY expires_at";
    let mut found = tenant_holds(db, outdated, now, limit).await?;
    // And unused approvals that no longer stand (a change's request that
    // stopped before withdrawing them, an older release that did not):
    // read through the partial index of unused approvals.
    let left = limit - found.len() as i64;
    if left > 0 {
        let stale = format!(
            "status = 'approved' AND redeemed_at IS NULL AND decided_at <= $1 \
             AND NOT ({APPROVAL_STANDS}) ORDER BY decided_at"
        );
        found.extend(tenant_holds(db, &stale, now, left).await?);
    }
    Ok(found)
}

/// The held call's agent is suspended or gone.
const AGENT_GONE: &str = concat!("NOT ", agent_stands!());
/// The key that made the held call is revoked (or gone).
const KEY_REVOKED: &str = concat!("holds.key_id IS NOT NULL AND NOT ", key_stands!());

/// Pending holds, not yet due, that no approval could be used for
/// whatever their policy, in any tenant: a call recorded just after its
/// agent's suspension or deletion or its key's revocation, which that
/// change's own denials did not see. Read through the index of pending
/// holds.
pub(crate) async fn abandoned(
    db: &dyn Db,
    now: Millis,
    limit: i64,
) -> StoreResult<Vec<(Tenant, Hold, Abandoned)>> {
    let mut found = Vec::new();
    for (filter, why) in [
        (AGENT_GONE.to_string(), Abandoned::Agent),
        (
            format!("{KEY_REVOKED} AND NOT {AGENT_GONE}"),
            Abandoned::Key,
        ),
    ] {
        let left = limit - found.len() as i64;
        if left <= 0 {
            break;
        }
        let filter =
            format!("status = 'pending' AND expires_at > $1 AND {filter} ORDER BY expires_at");
        let holds = tenant_holds(db, &filter, now, left).await?;
        found.extend(holds.into_iter().map(|(tenant, hold)| (tenant, hold, why)));
    }
    Ok(found)
}

/// Holds of any tenant where `filter` (given `now` as `$1`) holds.
async fn tenant_holds(
    db: &dyn Db,
    filter: &str,
    now: Millis,
    limit: i64,
) -> StoreResult<Vec<(Tenant, Hold)>> {
    let sql = format!("SELECT org_id, environment, {COLUMNS} FROM holds WHERE {filter} LIMIT $2");
    let rows = db.query(&sql, vec![now.into(), limit.into()]).await?;
    rows.iter()
        .map(|row| Ok((row.tenant()?, decode(row)?)))
        .collect()
}
