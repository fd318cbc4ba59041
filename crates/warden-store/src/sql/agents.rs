//! The agent registry. Tags are kept twice: as JSON on the row for reading,
//! and in `agent_tags` for indexed filtering on both backends.

use warden_core::agent::{Agent, AgentFilter, AgentStatus};
use warden_core::page::{Page, PageRequest, SortValue};
use warden_core::time::Millis;
use warden_core::Tenant;

use super::builder::{like_contains, SqlBuilder};
use super::paging;
use crate::db::{name_conflict, Db, Row, Step, Value};
use crate::{StoreError, StoreResult};

const COLUMNS: &str =
    "id, name, description, owner, framework, external_id, tags, status, metadata, \
     revision, created_at, updated_at";
const UNIQUE_FIELDS: &[&str] = &["external_id", "name"];

fn from_row(row: &Row) -> StoreResult<Agent> {
    let status = row.text("status")?;
    Ok(Agent {
        id: row.text("id")?,
        name: row.text("name")?,
        description: row.opt_text("description")?,
        owner: row.opt_text("owner")?,
        framework: row.opt_text("framework")?,
        external_id: row.opt_text("external_id")?,
        tags: serde_json::from_str(&row.text("tags")?)
            .map_err(|e| StoreError::Corrupt(format!("tags: {e}")))?,
        status: AgentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("agent status `{status}`")))?,
        metadata: serde_json::from_str(&row.text("metadata")?)
            .map_err(|e| StoreError::Corrupt(format!("metadata: {e}")))?,
        revision: row.int("revision")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

/// Steps that write an agent's tags; `replace` first drops the old ones.
fn tag_steps(agent: &Agent, replace: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    if replace {
        steps.push(Step::execute(
            "DELETE FROM agent_tags WHERE agent_id = $1",
            vec![(&agent.id).into()],
        ));
    }
    steps.extend(agent.tags.iter().map(|tag| {
        Step::execute(
            "INSERT INTO agent_tags (agent_id, tag) VALUES ($1, $2)",
            vec![(&agent.id).into(), tag.into()],
        )
    }));
    steps
}

fn tags_json(agent: &Agent) -> Value {
    serde_json::to_string(&agent.tags)
        .unwrap_or_default()
        .into()
}

fn metadata_json(agent: &Agent) -> Value {
    serde_json::Value::Object(agent.metadata.clone())
        .to_string()
        .into()
}

pub(crate) fn insert_steps(tenant: &Tenant, agent: &Agent) -> Vec<Step> {
    let mut steps = vec![Step::execute(
        format!(
            "INSERT INTO agents (org_id, environment, {COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ),
        vec![
            (&tenant.org_id).into(),
            tenant.environment.as_str().into(),
            (&agent.id).into(),
            (&agent.name).into(),
            (&agent.description).into(),
            (&agent.owner).into(),
            (&agent.framework).into(),
            (&agent.external_id).into(),
            tags_json(agent),
            agent.status.as_str().into(),
            metadata_json(agent),
            agent.revision.into(),
            agent.created_at.into(),
            agent.updated_at.into(),
        ],
    )];
    steps.extend(tag_steps(agent, false));
    steps
}

pub(crate) async fn insert(db: &dyn Db, tenant: &Tenant, agent: &Agent) -> StoreResult<()> {
    db.transaction(insert_steps(tenant, agent))
        .await
        .map_err(|e| name_conflict(e, UNIQUE_FIELDS))?;
    Ok(())
}

pub(crate) async fn get(db: &dyn Db, tenant: &Tenant, id: &str) -> StoreResult<Option<Agent>> {
    db.query(
        &format!("SELECT {COLUMNS} FROM agents WHERE id = $1 AND org_id = $2 AND environment = $3"),
        vec![
            id.into(),
            (&tenant.org_id).into(),
            tenant.environment.as_str().into(),
        ],
    )
    .await?
    .first()
    .map(from_row)
    .transpose()
}

pub(crate) async fn find(
    db: &dyn Db,
    tenant: &Tenant,
    reference: &str,
) -> StoreResult<Option<Agent>> {
    // Warden ids are lower case; one pasted in capitals names the same
    // agent (no external id has the shape of a Warden id).
    let lowered;
    let reference = if warden_core::agent::looks_like_agent_id(reference) {
        lowered = reference.to_ascii_lowercase();
        lowered.as_str()
    } else {
        reference
    };
    db.query(
        &format!(
            "SELECT {COLUMNS} FROM agents WHERE org_id = $1 AND environment = $2 \
             AND (id = $3 OR external_id = $3) ORDER BY CASE WHEN id = $3 THEN 0 ELSE 1 END LIMIT 1"
        ),
        vec![
            (&tenant.org_id).into(),
            tenant.environment.as_str().into(),
            reference.into(),
        ],
    )
    .await?
    .first()
    .map(from_row)
    .transpose()
}

/// One read of the unique index on names: exact, as the constraint
/// compares them (no case folding, which differs between the backends).
pub(crate) async fn name_taken(db: &dyn Db, tenant: &Tenant, name: &str) -> StoreResult<bool> {
    Ok(!db
        .query(
            "SELECT id FROM agents WHERE org_id = $1 AND environment = $2 AND name = $3 LIMIT 1",
            vec![
                (&tenant.org_id).into(),
                tenant.environment.as_str().into(),
                name.into(),
            ],
        )
        .await?
        .is_empty())
}

pub(crate) async fn list(
    db: &dyn Db,
    tenant: &Tenant,
    filter: &AgentFilter,
    page: &PageRequest,
) -> StoreResult<Page<Agent>> {
    let mut q = SqlBuilder::new(&format!("SELECT {COLUMNS} FROM agents WHERE org_id = "));
    q.bind(&tenant.org_id)
        .push(" AND environment = ")
        .bind(tenant.environment.as_str());
    if let Some(id) = &filter.only_id {
        q.push(" AND id = ").bind(id);
    }
    if let Some(status) = filter.status {
        q.push(" AND status = ").bind(status.as_str());
    }
    if let Some(tag) = &filter.tag {
        q.push(" AND id IN (SELECT agent_id FROM agent_tags WHERE tag = ")
            .bind(tag.to_lowercase())
            .push(")");
    }
    if let Some(search) = &filter.search {
        let pattern = like_contains(search);
        q.push(" AND (lower(name) LIKE ")
            .bind(&pattern)
            .push(" ESCAPE '\\' OR lower(COALESCE(description, '')) LIKE ")
            .bind(&pattern)
            .push(" ESCAPE '\\')");
    }
    let rows = paging::fetch(db, q, page, &["created_at", "name"]).await?;
    paging::finish(rows, page, from_row, |a| {
        let value = match page.sort.as_str() {
            "name" => SortValue::Text(a.name.clone()),
            _ => SortValue::Int(a.created_at),
        };
        (value, a.id.clone())
    })
}

pub(crate) fn update_steps(tenant: &Tenant, agent: &Agent) -> Vec<Step> {
    let mut steps = vec![Step::execute(
        "UPDATE agents SET name = $1, description = $2, owner = $3, framework = $4, \
         external_id = $5, tags = $6, status = $7, metadata = $8, updated_at = $9, \
         revision = revision + 1 \
         WHERE id = $10 AND org_id = $11 AND environment = $12 AND revision = $13",
        vec![
            (&agent.name).into(),
            (&agent.description).into(),
            (&agent.owner).into(),
            (&agent.framework).into(),
            (&agent.external_id).into(),
            tags_json(agent),
            agent.status.as_str().into(),
            metadata_json(agent),
            agent.updated_at.into(),
            (&agent.id).into(),
            (&tenant.org_id).into(),
            tenant.environment.as_str().into(),
            agent.revision.into(),
        ],
    )
    .required()];
    steps.extend(tag_steps(agent, true));
    steps
}

pub(crate) async fn update(db: &dyn Db, tenant: &Tenant, agent: &Agent) -> StoreResult<bool> {
    let done = db
        .transaction(update_steps(tenant, agent))
        .await
        .map_err(|e| name_conflict(e, UNIQUE_FIELDS))?;
    Ok(done.is_some())
}

/// Deletes the agent and revokes the keys bound to it (at `at`): a key
/// bound to an agent that is gone would act for nobody.
/// Requires the agent to exist and holds its row until the transaction
/// ends (an update that changes nothing still locks the row on
/// PostgreSQL; SQLite runs one writer at a time): a key bound to it cannot
/// commit beside its deletion and outlive it unrevoked.
pub(crate) fn hold_step(tenant: &Tenant, id: &str) -> Step {
    Step::execute(
        "UPDATE agents SET revision = revision WHERE id = $1 AND org_id = $2 AND environment = $3",
        vec![
            id.into(),
            (&tenant.org_id).into(),
            tenant.environment.as_str().into(),
        ],
    )
    .required()
}

pub(crate) fn delete_steps(tenant: &Tenant, id: &str, at: Millis) -> Vec<Step> {
    delete_steps_if(tenant, id, at, "")
}

/// The steps of an agent's deletion, made only where `condition` (on the
/// agent's row as `a`, beginning with `AND`) holds as well.
fn delete_steps_if(tenant: &Tenant, id: &str, at: Millis, condition: &str) -> Vec<Step> {
    vec![
        Step::execute(
            format!(
                "DELETE FROM agents AS a WHERE a.id = $1 AND a.org_id = $2 \
                 AND a.environment = $3{condition}"
            ),
            vec![
                id.into(),
                (&tenant.org_id).into(),
                tenant.environment.as_str().into(),
            ],
        )
        .required(),
        Step::execute(
            "DELETE FROM agent_tags WHERE agent_id = $1",
            vec![id.into()],
        ),
        // Never before a key's own creation: one minted on another replica
        // while this deletion waited for the agent's row is revoked as of
        // its minting.
        Step::execute(
            "UPDATE api_keys SET revoked_at = CASE WHEN created_at > $1 THEN created_at ELSE $1 END \
             WHERE agent_id = $2 AND org_id = $3 AND environment = $4 AND revoked_at IS NULL",
            vec![
                at.into(),
                id.into(),
                (&tenant.org_id).into(),
                tenant.environment.as_str().into(),
            ],
        ),
    ]
}

pub(crate) async fn delete(db: &dyn Db, tenant: &Tenant, id: &str) -> StoreResult<bool> {
    let done = db
        .transaction(delete_steps(tenant, id, warden_core::time::now_ms()))
        .await?;
    Ok(done.is_some())
}

/// No audit record of the agent's tenant names it (read through the
/// audit log's index by agent).
const UNRECORDED: &str = "NOT EXISTS (SELECT 1 FROM audit_log l WHERE l.org_id = a.org_id \
     AND l.environment = a.environment AND l.agent_id = a.id)";

pub(crate) async fn unrecorded_discoveries(
    db: &dyn Db,
    before: Millis,
    limit: i64,
) -> StoreResult<Vec<(Tenant, String, Option<String>)>> {
    let sql = format!(
        "SELECT a.org_id, a.environment, a.id, a.external_id FROM agents a \
         WHERE a.status = 'discovered' AND a.created_at < $1 AND {UNRECORDED} LIMIT $2"
    );
    let rows = db.query(&sql, vec![before.into(), limit.into()]).await?;
    rows.iter()
        .map(|row| Ok((row.tenant()?, row.text("id")?, row.opt_text("external_id")?)))
        .collect()
}

pub(crate) async fn delete_unrecorded_discovery(
    db: &dyn Db,
    tenant: &Tenant,
    id: &str,
) -> StoreResult<bool> {
    let steps = delete_steps_if(
        tenant,
        id,
        warden_core::time::now_ms(),
        &format!(" AND a.status = 'discovered' AND {UNRECORDED}"),
    );
    let done = db.transaction(steps).await?;
    Ok(done.is_some())
}
