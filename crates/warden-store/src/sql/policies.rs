//! Policies, their versions and the per-tenant settings they depend on.
//! The policy itself is one JSON document; the columns beside it are what
//! lists sort and filter by.

use warden_core::page::{Page, PageRequest, SortValue};
use warden_core::policy::{PolicyRecord, PolicyVersion};
use warden_core::Tenant;

use super::builder::SqlBuilder;
use super::paging;
use crate::db::{Db, Row, Step, Value};
use crate::{StoreError, StoreResult};

/// The tenant setting bumped by every policy change.
pub(crate) const GENERATION: &str = "policy_generation";

fn decode(row: &Row) -> StoreResult<PolicyRecord> {
    serde_json::from_str(&row.text("document")?)
        .map_err(|e| StoreError::Corrupt(format!("policy document: {e}")))
}

fn document(record: &PolicyRecord) -> Value {
    serde_json::to_string(record).unwrap_or_default().into()
}

fn tenant_args(tenant: &Tenant) -> [Value; 2] {
    [(&tenant.org_id).into(), tenant.environment.as_str().into()]
}

fn generation_step(tenant: &Tenant, now: i64) -> Step {
    let [org, env] = tenant_args(tenant);
    Step::execute(
        "INSERT INTO tenant_settings (org_id, environment, name, value, updated_at) \
         VALUES ($1, $2, $3, '1', $4) \
         ON CONFLICT (org_id, environment, name) DO UPDATE \
         SET value = CAST(CAST(tenant_settings.value AS BIGINT) + 1 AS TEXT), updated_at = $4",
        vec![org, env, GENERATION.into(), now.into()],
    )
}

fn version_step(tenant: &Tenant, record: &PolicyRecord, change: &str) -> Step {
    let [org, env] = tenant_args(tenant);
    Step::execute(
        "INSERT INTO policy_versions \
         (policy_id, version, org_id, environment, change, changed_by, changed_at, document) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            (&record.id).into(),
            record.version.into(),
            org,
            env,
            change.into(),
            (&record.updated_by).into(),
            record.updated_at.into(),
            document(record),
        ],
    )
}

/// Steps that create a policy.
pub(crate) fn insert_steps(tenant: &Tenant, record: &PolicyRecord) -> Vec<Step> {
    let [org, env] = tenant_args(tenant);
    vec![
        Step::execute(
            "INSERT INTO policies (id, org_id, environment, name, enabled, priority, version, \
             document, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            vec![
                (&record.id).into(),
                org,
                env,
                (&record.name).into(),
                i64::from(record.enabled).into(),
                i64::from(record.priority).into(),
                record.version.into(),
                document(record),
                record.created_at.into(),
                record.updated_at.into(),
            ],
        ),
        version_step(tenant, record, "created"),
        generation_step(tenant, record.updated_at),
    ]
}

/// Steps that replace a policy still at `record.version - 1`.
pub(crate) fn update_steps(tenant: &Tenant, record: &PolicyRecord) -> Vec<Step> {
    let [org, env] = tenant_args(tenant);
    vec![
        Step::execute(
            "UPDATE policies SET name = $1, enabled = $2, priority = $3, version = $4, \
             document = $5, updated_at = $6 \
             WHERE id = $7 AND org_id = $8 AND environment = $9 AND version = $10",
            vec![
                (&record.name).into(),
                i64::from(record.enabled).into(),
                i64::from(record.priority).into(),
                record.version.into(),
                document(record),
                record.updated_at.into(),
                (&record.id).into(),
                org,
                env,
                (record.version - 1).into(),
            ],
        )
        .required(),
        version_step(tenant, record, "updated"),
        generation_step(tenant, record.updated_at),
    ]
}

/// Steps that delete a policy still at `record.version - 1`; the version
/// history keeps the deletion.
pub(crate) fn delete_steps(tenant: &Tenant, record: &PolicyRecord) -> Vec<Step> {
    let [org, env] = tenant_args(tenant);
    vec![
        Step::execute(
            "DELETE FROM policies WHERE id = $1 AND org_id = $2 AND environment = $3 \
             AND version = $4",
            vec![(&record.id).into(), org, env, (record.version - 1).into()],
        )
        .required(),
        version_step(tenant, record, "deleted"),
        generation_step(tenant, record.updated_at),
    ]
}

pub(crate) async fn get(
    db: &dyn Db,
    tenant: &Tenant,
    id: &str,
) -> StoreResult<Option<PolicyRecord>> {
    let [org, env] = tenant_args(tenant);
    db.query(
        "SELECT document FROM policies WHERE id = $1 AND org_id = $2 AND environment = $3",
        vec![id.into(), org, env],
    )
    .await?
    .first()
    .map(decode)
    .transpose()
}

pub(crate) async fn list(
    db: &dyn Db,
    tenant: &Tenant,
    enabled: Option<bool>,
    page: &PageRequest,
) -> StoreResult<Page<PolicyRecord>> {
    let mut q =
        SqlBuilder::new("SELECT id, name, created_at, document FROM policies WHERE org_id = ");
    q.bind(&tenant.org_id)
        .push(" AND environment = ")
        .bind(tenant.environment.as_str());
    if let Some(enabled) = enabled {
        q.push(" AND enabled = ").bind(i64::from(enabled));
    }
    let rows = paging::fetch(db, q, page, &["created_at", "name"]).await?;
    paging::finish(rows, page, decode, |p| {
        let value = match page.sort.as_str() {
            "name" => SortValue::Text(p.name.clone()),
            _ => SortValue::Int(p.created_at),
        };
        (value, p.id.clone())
    })
}

/// Every policy of the tenant, for compiling.
pub(crate) async fn all(db: &dyn Db, tenant: &Tenant) -> StoreResult<Vec<PolicyRecord>> {
    let [org, env] = tenant_args(tenant);
    db.query(
        "SELECT document FROM policies WHERE org_id = $1 AND environment = $2",
        vec![org, env],
    )
    .await?
    .iter()
    .map(decode)
    .collect()
}

pub(crate) async fn count(db: &dyn Db, tenant: &Tenant) -> StoreResult<i64> {
    let [org, env] = tenant_args(tenant);
    let rows = db
        .query(
            "SELECT COUNT(*) AS n FROM policies WHERE org_id = $1 AND environment = $2",
            vec![org, env],
        )
        .await?;
    rows.first().map_or(Ok(0), |r| r.int("n"))
}

pub(crate) async fn versions(
    db: &dyn Db,
    tenant: &Tenant,
    policy_id: &str,
    page: &PageRequest,
) -> StoreResult<Page<PolicyVersion>> {
    let mut q = SqlBuilder::new(
        "SELECT policy_id, version, change, changed_by, changed_at, document \
         FROM policy_versions WHERE policy_id = ",
    );
    q.bind(policy_id)
        .push(" AND org_id = ")
        .bind(&tenant.org_id)
        .push(" AND environment = ")
        .bind(tenant.environment.as_str());
    let rows = paging::fetch_unique(db, q, page, "version").await?;
    paging::finish(
        rows,
        page,
        |row| {
            Ok(PolicyVersion {
                policy_id: row.text("policy_id")?,
                version: row.int("version")?,
                change: row.text("change")?,
                changed_by: row.text("changed_by")?,
                changed_at: row.int("changed_at")?,
                policy: decode(row)?,
            })
        },
        |v| (SortValue::Int(v.version), v.version.to_string()),
    )
}

pub(crate) async fn tenant_setting(
    db: &dyn Db,
    tenant: &Tenant,
    name: &str,
) -> StoreResult<Option<String>> {
    let [org, env] = tenant_args(tenant);
    let rows = db
        .query(
            "SELECT value FROM tenant_settings WHERE org_id = $1 AND environment = $2 AND name = $3",
            vec![org, env, name.into()],
        )
        .await?;
    rows.first().map(|r| r.text("value")).transpose()
}

/// Sets a setting that still has the value `was` (`None`: not set); a
/// write raced by another touches no row and abandons the transaction.
pub(crate) fn setting_steps(
    tenant: &Tenant,
    name: &str,
    value: &str,
    was: Option<&str>,
    now: i64,
) -> Vec<Step> {
    let [org, env] = tenant_args(tenant);
    let was = Value::Text(was.map(str::to_string));
    vec![
        // A NULL `was` matches no stored value: then only the insert writes.
        Step::execute(
            "INSERT INTO tenant_settings (org_id, environment, name, value, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, environment, name) \
             DO UPDATE SET value = $4, updated_at = $5 WHERE tenant_settings.value = $6",
            vec![org, env, name.into(), value.into(), now.into(), was],
        )
        .required(),
        generation_step(tenant, now),
    ]
}
