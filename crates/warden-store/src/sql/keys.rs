//! API keys: stored by digest only.

use warden_core::api_key::{parse_cidr, ApiKey};
use warden_core::page::{Page, PageRequest, SortValue};
use warden_core::scope::ScopeSet;
use warden_core::time::Millis;
use warden_core::Tenant;

use super::builder::SqlBuilder;
use super::{paging, parse};
use crate::db::{Db, Row, Step, Value};
use crate::{KeyRotation, StoreError, StoreResult};

const COLUMNS: &str = "id, org_id, environment, name, last_four, secret_digest, previous_digest, \
     previous_valid_until, scopes, agent_id, allowed_cidrs, expires_at, created_at, last_used_at, \
     revoked_at, rotated_at";

fn json_list(row: &Row, name: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(&row.text(name)?)
        .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

fn from_row(row: &Row) -> StoreResult<ApiKey> {
    let scopes = ScopeSet::parse(&json_list(row, "scopes")?)
        .map_err(|e| StoreError::Corrupt(format!("scopes: {e}")))?;
    let allowed_cidrs = json_list(row, "allowed_cidrs")?
        .iter()
        .map(|c| parse_cidr(c).ok_or_else(|| StoreError::Corrupt(format!("cidr `{c}`"))))
        .collect::<StoreResult<_>>()?;
    Ok(ApiKey {
        id: row.text("id")?,
        org_id: row.text("org_id")?,
        environment: parse(row, "environment")?,
        name: row.text("name")?,
        last_four: row.text("last_four")?,
        secret_digest: row.text("secret_digest")?,
        previous_digest: row.opt_text("previous_digest")?,
        previous_valid_until: row.opt_int("previous_valid_until")?,
        scopes,
        agent_id: row.opt_text("agent_id")?,
        allowed_cidrs,
        expires_at: row.opt_int("expires_at")?,
        created_at: row.int("created_at")?,
        last_used_at: row.opt_int("last_used_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        rotated_at: row.opt_int("rotated_at")?,
    })
}

fn tenant_args(tenant: &Tenant) -> [Value; 2] {
    [(&tenant.org_id).into(), tenant.environment.as_str().into()]
}

pub(crate) fn insert_step(key: &ApiKey) -> Step {
    let cidrs: Vec<String> = key.allowed_cidrs.iter().map(|n| n.to_string()).collect();
    Step::execute(
        format!(
            "INSERT INTO api_keys ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ),
        vec![
            (&key.id).into(),
            (&key.org_id).into(),
            key.environment.as_str().into(),
            (&key.name).into(),
            (&key.last_four).into(),
            (&key.secret_digest).into(),
            (&key.previous_digest).into(),
            key.previous_valid_until.into(),
            serde_json::to_string(&key.scopes.names())
                .unwrap_or_default()
                .into(),
            (&key.agent_id).into(),
            serde_json::to_string(&cidrs).unwrap_or_default().into(),
            key.expires_at.into(),
            key.created_at.into(),
            key.last_used_at.into(),
            key.revoked_at.into(),
            key.rotated_at.into(),
        ],
    )
}

pub(crate) async fn insert(db: &dyn Db, key: &ApiKey) -> StoreResult<()> {
    db.transaction(vec![insert_step(key)]).await?;
    Ok(())
}

async fn one(db: &dyn Db, sql: &str, args: Vec<Value>) -> StoreResult<Option<ApiKey>> {
    db.query(sql, args).await?.first().map(from_row).transpose()
}

pub(crate) async fn find_by_digest(db: &dyn Db, digest: &str) -> StoreResult<Option<ApiKey>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE secret_digest = $1 \
         UNION ALL SELECT {COLUMNS} FROM api_keys WHERE previous_digest = $1 LIMIT 1"
    );
    one(db, &sql, vec![digest.into()]).await
}

pub(crate) async fn find(db: &dyn Db, id: &str) -> StoreResult<Option<ApiKey>> {
    one(
        db,
        &format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1"),
        vec![id.into()],
    )
    .await
}

pub(crate) async fn get(db: &dyn Db, tenant: &Tenant, id: &str) -> StoreResult<Option<ApiKey>> {
    let [org, env] = tenant_args(tenant);
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE id = $1 AND org_id = $2 AND environment = $3"
    );
    one(db, &sql, vec![id.into(), org, env]).await
}

pub(crate) async fn list(
    db: &dyn Db,
    tenant: &Tenant,
    agent_id: Option<&str>,
    page: &PageRequest,
) -> StoreResult<Page<ApiKey>> {
    let mut q = SqlBuilder::new(&format!("SELECT {COLUMNS} FROM api_keys WHERE org_id = "));
    q.bind(&tenant.org_id)
        .push(" AND environment = ")
        .bind(tenant.environment.as_str());
    if let Some(agent_id) = agent_id {
        q.push(" AND agent_id = ").bind(agent_id);
    }
    let rows = paging::fetch(db, q, page, &["created_at"]).await?;
    paging::finish(rows, page, from_row, |k| {
        (SortValue::Int(k.created_at), k.id.clone())
    })
}

/// Revokes a key that is not revoked yet.
pub(crate) fn revoke_step(tenant: &Tenant, id: &str, at: Millis) -> Step {
    let [org, env] = tenant_args(tenant);
    Step::execute(
        "UPDATE api_keys SET revoked_at = $1 \
         WHERE id = $2 AND org_id = $3 AND environment = $4 AND revoked_at IS NULL",
        vec![at.into(), id.into(), org, env],
    )
    .required()
}

/// Gives a key that is not revoked a new secret digest, keeping the old
/// one until `rotation.previous_valid_until` when that is set.
pub(crate) fn rotate_step(tenant: &Tenant, rotation: &KeyRotation) -> Step {
    let [org, env] = tenant_args(tenant);
    let keep_previous: i64 = rotation.previous_valid_until.is_some().into();
    Step::execute(
        "UPDATE api_keys SET previous_digest = CASE WHEN $1 = 1 THEN secret_digest ELSE NULL END, \
         previous_valid_until = $2, secret_digest = $3, last_four = $4, rotated_at = $5 \
         WHERE id = $6 AND org_id = $7 AND environment = $8 AND revoked_at IS NULL \
         AND secret_digest = $9",
        vec![
            keep_previous.into(),
            rotation.previous_valid_until.into(),
            (&rotation.new_digest).into(),
            (&rotation.last_four).into(),
            rotation.at.into(),
            (&rotation.id).into(),
            org,
            env,
            (&rotation.replaces_digest).into(),
        ],
    )
    .required()
}

pub(crate) async fn record_use(db: &dyn Db, uses: &[(String, Millis)]) -> StoreResult<()> {
    if uses.is_empty() {
        return Ok(());
    }
    // Rows locked in one order by every replica: two flushes of the same
    // keys in different orders deadlock on PostgreSQL.
    let mut ordered: Vec<&(String, Millis)> = uses.iter().collect();
    ordered.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let steps = ordered
        .into_iter()
        .map(|(id, at)| {
            Step::execute(
                "UPDATE api_keys SET last_used_at = $1 \
                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                vec![(*at).into(), id.into()],
            )
        })
        .collect();
    db.transaction(steps).await?;
    Ok(())
}
