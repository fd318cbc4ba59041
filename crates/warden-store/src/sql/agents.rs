//! The agent registry. Tags are kept twice: as JSON on the row for reading,
//! and in `agent_tags` for indexed filtering on both backends.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Connection};
use warden_core::agent::{Agent, AgentFilter, AgentStatus};
use warden_core::page::{Page, PageRequest, SortValue};
use warden_core::Tenant;

use super::builder::{like_contains, SqlBuilder};
use super::{col, paging};
use crate::error::conflict_or;
use crate::{StoreError, StoreResult};

const COLUMNS: &str =
    "id, name, description, owner, framework, external_id, tags, status, metadata, \
     created_at, updated_at";
const UNIQUE_FIELDS: &[&str] = &["external_id", "name"];

fn from_row(row: &AnyRow) -> StoreResult<Agent> {
    let tags: String = col(row, "tags")?;
    let metadata: String = col(row, "metadata")?;
    let status: String = col(row, "status")?;
    Ok(Agent {
        id: col(row, "id")?,
        name: col(row, "name")?,
        description: col(row, "description")?,
        owner: col(row, "owner")?,
        framework: col(row, "framework")?,
        external_id: col(row, "external_id")?,
        tags: serde_json::from_str(&tags).map_err(|e| StoreError::Corrupt(format!("tags: {e}")))?,
        status: AgentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("agent status `{status}`")))?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| StoreError::Corrupt(format!("metadata: {e}")))?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

async fn write_tags(conn: &mut sqlx::AnyConnection, agent: &Agent) -> StoreResult<()> {
    sqlx::query("DELETE FROM agent_tags WHERE agent_id = $1")
        .bind(&agent.id)
        .execute(&mut *conn)
        .await?;
    for tag in &agent.tags {
        sqlx::query("INSERT INTO agent_tags (agent_id, tag) VALUES ($1, $2)")
            .bind(&agent.id)
            .bind(tag)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(crate) async fn insert(pool: &AnyPool, tenant: &Tenant, agent: &Agent) -> StoreResult<()> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query(&format!(
        "INSERT INTO agents (org_id, environment, {COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&tenant.org_id)
    .bind(tenant.environment.as_str())
    .bind(&agent.id)
    .bind(&agent.name)
    .bind(agent.description.clone())
    .bind(agent.owner.clone())
    .bind(agent.framework.clone())
    .bind(agent.external_id.clone())
    .bind(serde_json::to_string(&agent.tags).unwrap_or_default())
    .bind(agent.status.as_str())
    .bind(serde_json::Value::Object(agent.metadata.clone()).to_string())
    .bind(agent.created_at)
    .bind(agent.updated_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| conflict_or(e, UNIQUE_FIELDS))?;
    write_tags(&mut tx, agent).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn get(pool: &AnyPool, tenant: &Tenant, id: &str) -> StoreResult<Option<Agent>> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM agents WHERE id = $1 AND org_id = $2 AND environment = $3"
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
    filter: &AgentFilter,
    page: &PageRequest,
) -> StoreResult<Page<Agent>> {
    let mut q = SqlBuilder::new(&format!("SELECT {COLUMNS} FROM agents WHERE org_id = "));
    q.text(&tenant.org_id)
        .push(" AND environment = ")
        .text(tenant.environment.as_str());
    if let Some(id) = &filter.only_id {
        q.push(" AND id = ").text(id);
    }
    if let Some(status) = filter.status {
        q.push(" AND status = ").text(status.as_str());
    }
    if let Some(tag) = &filter.tag {
        q.push(" AND id IN (SELECT agent_id FROM agent_tags WHERE tag = ")
            .text(&tag.to_lowercase())
            .push(")");
    }
    if let Some(search) = &filter.search {
        let pattern = like_contains(search);
        q.push(" AND (lower(name) LIKE ")
            .text(&pattern)
            .push(" ESCAPE '\\' OR lower(COALESCE(description, '')) LIKE ")
            .text(&pattern)
            .push(" ESCAPE '\\')");
    }
    let rows = paging::fetch(pool, &mut q, page, &["created_at", "name"]).await?;
    paging::finish(rows, page, from_row, |a| {
        let value = match page.sort.as_str() {
            "name" => SortValue::Text(a.name.clone()),
            _ => SortValue::Int(a.created_at),
        };
        (value, a.id.clone())
    })
}

pub(crate) async fn update(pool: &AnyPool, tenant: &Tenant, agent: &Agent) -> StoreResult<bool> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let done = sqlx::query(
        "UPDATE agents SET name = $1, description = $2, owner = $3, framework = $4, \
         external_id = $5, tags = $6, status = $7, metadata = $8, updated_at = $9 \
         WHERE id = $10 AND org_id = $11 AND environment = $12",
    )
    .bind(&agent.name)
    .bind(agent.description.clone())
    .bind(agent.owner.clone())
    .bind(agent.framework.clone())
    .bind(agent.external_id.clone())
    .bind(serde_json::to_string(&agent.tags).unwrap_or_default())
    .bind(agent.status.as_str())
    .bind(serde_json::Value::Object(agent.metadata.clone()).to_string())
    .bind(agent.updated_at)
    .bind(&agent.id)
    .bind(&tenant.org_id)
    .bind(tenant.environment.as_str())
    .execute(&mut *tx)
    .await
    .map_err(|e| conflict_or(e, UNIQUE_FIELDS))?
    .rows_affected();
    if done == 0 {
        return Ok(false);
    }
    write_tags(&mut tx, agent).await?;
    tx.commit().await?;
    Ok(true)
}

pub(crate) async fn delete(pool: &AnyPool, tenant: &Tenant, id: &str) -> StoreResult<bool> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let done = sqlx::query("DELETE FROM agents WHERE id = $1 AND org_id = $2 AND environment = $3")
        .bind(id)
        .bind(&tenant.org_id)
        .bind(tenant.environment.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if done == 1 {
        sqlx::query("DELETE FROM agent_tags WHERE agent_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(done == 1)
}
