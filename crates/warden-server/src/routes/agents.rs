//! `/api/v1/agents`: the agent registry.

use axum::extract::RawQuery;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use warden_core::agent::{Agent, AgentChanges, AgentFilter, AgentStatus};
use warden_core::page::PageRequest;

use super::wire::{not_null, nullable, time, SortDirection};
use crate::auth::Principal;
use crate::http::envelope::{created, ok, ApiData, ApiList, DataEnvelope, ListEnvelope};
use crate::http::error::ApiResult;
use crate::http::extract::{ApiJson, ApiQuery, ResourceId};
use crate::http::sealed_cursor::{filtered, SealedCursors};
use crate::http::unique_keys::{unique_object, unique_object_not_null};
use crate::services::agents as service;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatusName {
    Active,
    Suspended,
    Discovered,
}

impl From<AgentStatusName> for AgentStatus {
    fn from(s: AgentStatusName) -> Self {
        match s {
            AgentStatusName::Active => AgentStatus::Active,
            AgentStatusName::Suspended => AgentStatus::Suspended,
            AgentStatusName::Discovered => AgentStatus::Discovered,
        }
    }
}

impl From<AgentStatus> for AgentStatusName {
    fn from(s: AgentStatus) -> Self {
        match s {
            AgentStatus::Active => AgentStatusName::Active,
            AgentStatus::Suspended => AgentStatusName::Suspended,
            AgentStatus::Discovered => AgentStatusName::Discovered,
        }
    }
}

/// A registered AI agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    #[schema(example = "agt_0f3b5c2e9d8a7b6c5d4e3f2a")]
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// The person or team answerable for the agent.
    pub owner: Option<String>,
    /// The agent framework, e.g. `langchain`, `openai`, `custom`.
    pub framework: Option<String>,
    /// The agent's own identifier, as its SDK is configured; unique in the
    /// environment.
    pub external_id: Option<String>,
    pub tags: Vec<String>,
    pub status: AgentStatusName,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<Agent> for AgentView {
    fn from(a: Agent) -> Self {
        AgentView {
            id: a.id,
            name: a.name,
            description: a.description,
            owner: a.owner,
            framework: a.framework,
            external_id: a.external_id,
            tags: a.tags,
            status: a.status.into(),
            metadata: a.metadata,
            created_at: time(a.created_at),
            updated_at: time(a.updated_at),
        }
    }
}

/// A new agent. Names are unique in the environment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    /// 1 to 200 characters, not only blanks, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// Up to 2,000 characters.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub owner: Option<String>,
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub framework: Option<String>,
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub external_id: Option<String>,
    /// Up to 50 tags of 1 to 64 characters; stored lower-case.
    #[schema(max_items = 50)]
    pub tags: Option<Vec<String>>,
    /// `active` unless given.
    pub status: Option<AgentStatusName>,
    /// Any JSON object up to 16 KiB.
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "unique_object")]
    pub metadata: Option<Map<String, Value>>,
}

/// A change to an agent: absent fields stay as they are; `null` clears
/// `description`, `owner`, `framework` and `external_id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        nullable = false
    )]
    #[serde(default, deserialize_with = "not_null")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub owner: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub framework: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub external_id: Option<Option<String>>,
    #[schema(max_items = 50, nullable = false)]
    #[serde(default, deserialize_with = "not_null")]
    pub tags: Option<Vec<String>>,
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "not_null")]
    pub status: Option<AgentStatusName>,
    #[schema(value_type = Object)]
    #[serde(default, deserialize_with = "unique_object_not_null")]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentSort {
    CreatedAt,
    Name,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListAgents {
    /// Page size, 1 to 200 (default 25).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// `created_at` (default, newest first) or `name`.
    pub sort: Option<AgentSort>,
    pub direction: Option<SortDirection>,
    pub status: Option<AgentStatusName>,
    /// Only agents carrying this tag.
    pub tag: Option<String>,
    /// Case-insensitive text in the name or description.
    pub search: Option<String>,
}

impl From<CreateAgent> for AgentChanges {
    fn from(b: CreateAgent) -> Self {
        AgentChanges {
            name: Some(b.name),
            description: Some(b.description),
            owner: Some(b.owner),
            framework: Some(b.framework),
            external_id: Some(b.external_id),
            tags: b.tags,
            status: b.status.map(Into::into),
            metadata: b.metadata,
        }
    }
}

impl From<UpdateAgent> for AgentChanges {
    fn from(b: UpdateAgent) -> Self {
        AgentChanges {
            name: b.name,
            description: b.description,
            owner: b.owner,
            framework: b.framework,
            external_id: b.external_id,
            tags: b.tags,
            status: b.status.map(Into::into),
            metadata: b.metadata,
        }
    }
}

/// List agents.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", params(ListAgents),
    responses((status = 200, description = "A page of agents", body = ListEnvelope<AgentView>)),
    security(("bearer" = ["agents.read"])))]
pub async fn list_agents(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListAgents>,
    RawQuery(raw): RawQuery,
) -> ApiResult<ApiList<AgentView>> {
    principal.require("agents.read")?;
    // Nothing longer can match: names and descriptions are bounded, and a
    // pattern tens of thousands of characters long is more than the
    // database's LIKE takes.
    let longest = [
        ("search", &q.search, warden_core::agent::MAX_DESCRIPTION),
        ("tag", &q.tag, 64),
    ];
    for (field, value, max) in longest {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(crate::http::error::ApiError::invalid(
                field,
                format!("{field} is at most {max} characters"),
            ));
        }
    }
    let sort = q.sort.map(|s| match s {
        AgentSort::CreatedAt => "created_at",
        AgentSort::Name => "name",
    });
    let cursors = SealedCursors::new(
        &state.master,
        &principal.tenant(),
        &filtered("agents", raw.as_deref()),
    );
    let page = PageRequest::new(
        q.limit,
        cursors.open_opt(q.cursor.as_deref())?.as_deref(),
        sort,
        q.direction.map(Into::into),
        &["created_at", "name"],
    )?;
    // Held to the rules tags are written under, so a tag with a space
    // other than the plain one is a 400 naming it, not an empty list.
    let tag = q.tag.map(|t| t.trim_matches(' ').to_string());
    if let Some(tag) = &tag {
        if tag.is_empty() {
            return Err(crate::http::error::ApiError::invalid(
                "tag",
                "tag must name a tag; leave it out to list agents of every tag",
            ));
        }
        warden_core::agent::refuse_control(tag, "tag")?;
        warden_core::agent::visible(tag, "tag")?;
    }
    let filter = AgentFilter {
        status: q.status.map(Into::into),
        tag,
        search: q.search,
        only_id: None,
    };
    let page = service::list(state.store.as_ref(), &principal, filter, page).await?;
    Ok(ApiList(
        page.items.into_iter().map(AgentView::from).collect(),
        cursors.seal_opt(page.next_cursor),
    ))
}

/// Register an agent.
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", request_body = CreateAgent,
    responses(
        (status = 201, description = "The registered agent", body = DataEnvelope<AgentView>),
        (status = 409, description = "The name or external_id is taken", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["agents.write"])))]
pub async fn create_agent(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateAgent>,
) -> ApiResult<ApiData<AgentView>> {
    principal.require("agents.write")?;
    let agent = service::create(&state.governance, &principal, body.into()).await?;
    // A lookup of its name that found nothing a moment ago is stale now.
    state.governance.agents.forget_tenant(&principal.tenant());
    Ok(created(agent.into()))
}

/// Get an agent.
#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent's Warden id or its external_id")),
    responses(
        (status = 200, description = "The agent", body = DataEnvelope<AgentView>),
        (status = 404, description = "No such agent", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["agents.read"])))]
pub async fn get_agent(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
) -> ApiResult<ApiData<AgentView>> {
    principal.require("agents.read")?;
    let agent = service::get(state.store.as_ref(), &principal, &id).await?;
    Ok(ok(agent.into()))
}

/// Change an agent.
#[utoipa::path(patch, path = "/api/v1/agents/{id}", tag = "agents", request_body = UpdateAgent,
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "The changed agent", body = DataEnvelope<AgentView>),
        (status = 404, description = "No such agent", body = crate::http::error::ErrorEnvelope),
        (status = 409, description = "The name or external_id is taken", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["agents.write"])))]
pub async fn update_agent(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
    ApiJson(body): ApiJson<UpdateAgent>,
) -> ApiResult<ApiData<AgentView>> {
    principal.require("agents.write")?;
    let agent = service::update(&state.governance, &principal, &id, body.into()).await?;
    state.governance.agents.forget_tenant(&principal.tenant());
    Ok(ok(agent.into()))
}

/// Delete an agent.
#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent's Warden id or its external id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such agent", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["agents.write"])))]
pub async fn delete_agent(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
) -> ApiResult<StatusCode> {
    principal.require("agents.write")?;
    let deleted = service::delete(&state.governance, &principal, &id).await?;
    state.governance.agents.forget_tenant(&principal.tenant());
    // Its bound keys were revoked with it: refused here from now on.
    state.keys.evict_bound_to(&deleted);
    Ok(StatusCode::NO_CONTENT)
}
