//! `/api/v1/policies`: policies over agents' tool calls, their versions, a
//! dry run, and the default decision.

use axum::extract::RawQuery;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use warden_core::page::PageRequest;
use warden_core::policy::{AgentsSpec, ModifySpec, PolicyChanges, PolicyRecord, PolicyVersion};

use super::wire::{not_null, nullable, object_only, time, FromObject, SortDirection};
use crate::auth::Principal;
use crate::governance::policies as service;
use crate::http::envelope::{created, ok, ApiData, ApiList, DataEnvelope, ListEnvelope};
use crate::http::error::ApiResult;
use crate::http::extract::{ApiQuery, ResourceId, UniqueJson};
use crate::http::sealed_cursor::{filtered, SealedCursors};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DecisionName {
    Allow,
    Deny,
    StepUp,
    Audit,
    Modify,
}

impl DecisionName {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionName::Allow => "allow",
            DecisionName::Deny => "deny",
            DecisionName::StepUp => "step_up",
            DecisionName::Audit => "audit",
            DecisionName::Modify => "modify",
        }
    }
}

impl From<warden_policy::Decision> for DecisionName {
    fn from(d: warden_policy::Decision) -> Self {
        use warden_policy::Decision as D;
        match d {
            D::Allow => DecisionName::Allow,
            D::Deny => DecisionName::Deny,
            D::StepUp => DecisionName::StepUp,
            D::Audit => DecisionName::Audit,
            D::Modify => DecisionName::Modify,
        }
    }
}

impl From<DecisionName> for warden_policy::Decision {
    fn from(d: DecisionName) -> Self {
        use warden_policy::Decision as D;
        match d {
            DecisionName::Allow => D::Allow,
            DecisionName::Deny => D::Deny,
            DecisionName::StepUp => D::StepUp,
            DecisionName::Audit => D::Audit,
            DecisionName::Modify => D::Modify,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    Enforce,
    Monitor,
}

impl ModeName {
    fn as_str(self) -> &'static str {
        match self {
            ModeName::Enforce => "enforce",
            ModeName::Monitor => "monitor",
        }
    }
}

/// Which agents a policy applies to: any listed id (Warden id or external
/// id) or any listed tag.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct AgentsSelector {
    #[serde(default)]
    #[schema(max_items = 500)]
    pub ids: Vec<String>,
    #[serde(default)]
    #[schema(max_items = 50)]
    pub tags: Vec<String>,
}

/// For `modify`: argument fields to redact, then to set, by dotted path
/// (`card.number`, `items.0.token`, `*.password`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct ModifyChange {
    #[serde(default)]
    pub redact: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub set: Map<String, Value>,
}

/// Both nested objects are read from an object only (`wire::object_only`).
macro_rules! object_only {
    ($($name:ident),*) => {$(
        impl<'de> FromObject<'de> for $name {
            fn from_fields<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                $name::deserialize(de)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                object_only(de)
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                $name::serialize(self, ser)
            }
        }
    )*};
}
object_only!(AgentsSelector, ModifyChange);

/// A policy over agents' tool calls.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    #[schema(example = "pol_0f3b5c2e9d8a7b6c5d4e3f2a")]
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// A glob over tool names: `payments.*`, `fs.write`, `*`.
    pub action_pattern: String,
    pub agents: Option<AgentsSelector>,
    /// A CEL expression over `tool`, `args`, `agent`, `session`, `context`,
    /// `drift`, `now`.
    pub condition: Option<String>,
    pub decision: DecisionName,
    pub modify: Option<ModifyChange>,
    /// Argument fields kept out of the audit log whenever the policy matches.
    pub audit_redact: Vec<String>,
    /// Fields of the caller's `context` kept out of the audit log likewise.
    pub audit_redact_context: Vec<String>,
    pub priority: i32,
    pub mode: ModeName,
    pub enabled: bool,
    pub step_up_timeout_seconds: u32,
    /// Counts the policy's changes from 1.
    pub version: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The key that made the latest change.
    pub updated_by: String,
}

fn parse_enum<T: for<'de> Deserialize<'de>>(s: &str) -> Option<T> {
    serde_json::from_value(Value::String(s.to_string())).ok()
}

impl From<PolicyRecord> for PolicyView {
    fn from(p: PolicyRecord) -> Self {
        PolicyView {
            id: p.id,
            name: p.name,
            description: p.description,
            action_pattern: p.action_pattern,
            agents: p.agents.map(|a| AgentsSelector {
                ids: a.ids,
                tags: a.tags,
            }),
            condition: p.condition,
            decision: parse_enum(&p.decision).unwrap_or(DecisionName::Deny),
            modify: p.modify.map(|m| ModifyChange {
                redact: m.redact,
                set: m.set,
            }),
            audit_redact: p.audit_redact,
            audit_redact_context: p.audit_redact_context,
            priority: p.priority,
            mode: parse_enum(&p.mode).unwrap_or(ModeName::Enforce),
            enabled: p.enabled,
            step_up_timeout_seconds: p.step_up_timeout_seconds,
            version: p.version,
            created_at: time(p.created_at),
            updated_at: time(p.updated_at),
            updated_by: p.updated_by,
        }
    }
}

/// A new policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicy {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(min_length = 1, max_length = 256, example = "payments.*")]
    pub action_pattern: String,
    pub agents: Option<AgentsSelector>,
    #[schema(max_length = 4096, example = "args.amount > 1000")]
    pub condition: Option<String>,
    pub decision: DecisionName,
    /// Required when `decision` is `modify`, refused otherwise.
    pub modify: Option<ModifyChange>,
    #[schema(max_items = 100)]
    pub audit_redact: Option<Vec<String>>,
    /// Fields of the caller's `context` (paths as in `audit_redact`)
    /// stored as `[REDACTED]` in the audit record.
    #[schema(max_items = 100)]
    pub audit_redact_context: Option<Vec<String>>,
    /// Higher wins; -1,000,000 to 1,000,000 (default 0).
    #[schema(minimum = -1000000, maximum = 1000000)]
    pub priority: Option<i32>,
    /// `enforce` (default) or `monitor`.
    pub mode: Option<ModeName>,
    /// Default true.
    pub enabled: Option<bool>,
    /// How long a step-up hold waits for approval (default 900).
    #[schema(minimum = 1, maximum = 604800)]
    pub step_up_timeout_seconds: Option<u32>,
}

/// A change to a policy: absent fields stay; `null` clears `description`,
/// `agents`, `condition` and `modify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    #[schema(nullable = false, min_length = 1, max_length = 200)]
    #[serde(default, deserialize_with = "not_null")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    pub description: Option<Option<String>>,
    #[schema(nullable = false, min_length = 1, max_length = 256)]
    #[serde(default, deserialize_with = "not_null")]
    pub action_pattern: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<AgentsSelector>)]
    pub agents: Option<Option<AgentsSelector>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 4096)]
    pub condition: Option<Option<String>>,
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "not_null")]
    pub decision: Option<DecisionName>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<ModifyChange>)]
    pub modify: Option<Option<ModifyChange>>,
    #[schema(nullable = false, max_items = 100)]
    #[serde(default, deserialize_with = "not_null")]
    pub audit_redact: Option<Vec<String>>,
    #[schema(nullable = false, max_items = 100)]
    #[serde(default, deserialize_with = "not_null")]
    pub audit_redact_context: Option<Vec<String>>,
    #[schema(nullable = false, minimum = -1000000, maximum = 1000000)]
    #[serde(default, deserialize_with = "not_null")]
    pub priority: Option<i32>,
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "not_null")]
    pub mode: Option<ModeName>,
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "not_null")]
    pub enabled: Option<bool>,
    #[schema(nullable = false, minimum = 1, maximum = 604800)]
    #[serde(default, deserialize_with = "not_null")]
    pub step_up_timeout_seconds: Option<u32>,
}

fn agents_spec(a: AgentsSelector) -> AgentsSpec {
    AgentsSpec {
        ids: a.ids,
        tags: a.tags,
    }
}

fn modify_spec(m: ModifyChange) -> ModifySpec {
    ModifySpec {
        redact: m.redact,
        set: m.set,
    }
}

impl From<CreatePolicy> for PolicyChanges {
    fn from(b: CreatePolicy) -> Self {
        PolicyChanges {
            name: Some(b.name),
            description: Some(b.description),
            action_pattern: Some(b.action_pattern),
            agents: Some(b.agents.map(agents_spec)),
            condition: Some(b.condition),
            decision: Some(b.decision.as_str().into()),
            modify: Some(b.modify.map(modify_spec)),
            audit_redact: b.audit_redact,
            audit_redact_context: b.audit_redact_context,
            priority: b.priority,
            mode: b.mode.map(|m| m.as_str().into()),
            enabled: b.enabled,
            step_up_timeout_seconds: b.step_up_timeout_seconds,
        }
    }
}

impl From<UpdatePolicy> for PolicyChanges {
    fn from(b: UpdatePolicy) -> Self {
        PolicyChanges {
            name: b.name,
            description: b.description,
            action_pattern: b.action_pattern,
            agents: b.agents.map(|a| a.map(agents_spec)),
            condition: b.condition,
            decision: b.decision.map(|d| d.as_str().into()),
            modify: b.modify.map(|m| m.map(modify_spec)),
            audit_redact: b.audit_redact,
            audit_redact_context: b.audit_redact_context,
            priority: b.priority,
            mode: b.mode.map(|m| m.as_str().into()),
            enabled: b.enabled,
            step_up_timeout_seconds: b.step_up_timeout_seconds,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicySort {
    CreatedAt,
    Name,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListPolicies {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    pub sort: Option<PolicySort>,
    pub direction: Option<SortDirection>,
    pub enabled: Option<bool>,
}

/// List policies.
#[utoipa::path(get, path = "/api/v1/policies", tag = "policies", params(ListPolicies),
    responses((status = 200, description = "A page of policies", body = ListEnvelope<PolicyView>)),
    security(("bearer" = ["policies.read"])))]
pub async fn list_policies(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListPolicies>,
    RawQuery(raw): RawQuery,
) -> ApiResult<ApiList<PolicyView>> {
    principal.require("policies.read")?;
    let sort = q.sort.map(|s| match s {
        PolicySort::CreatedAt => "created_at",
        PolicySort::Name => "name",
    });
    let cursors = SealedCursors::new(
        &state.master,
        &principal.tenant(),
        &filtered("policies", raw.as_deref()),
    );
    let page = PageRequest::new(
        q.limit,
        cursors.open_opt(q.cursor.as_deref())?.as_deref(),
        sort,
        q.direction.map(Into::into),
        &["created_at", "name"],
    )?;
    let page = service::list(&state.governance, &principal, q.enabled, page).await?;
    Ok(ApiList(
        page.items.into_iter().map(PolicyView::from).collect(),
        cursors.seal_opt(page.next_cursor),
    ))
}

/// Create a policy.
#[utoipa::path(post, path = "/api/v1/policies", tag = "policies", request_body = CreatePolicy,
    responses(
        (status = 201, description = "The new policy", body = DataEnvelope<PolicyView>),
        (status = 409, description = "The name is taken", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["policies.write"])))]
pub async fn create_policy(
    State(state): State<AppState>,
    principal: Principal,
    UniqueJson(body): UniqueJson<CreatePolicy>,
) -> ApiResult<ApiData<PolicyView>> {
    principal.require("policies.write")?;
    let policy = service::create(&state.governance, &principal, body.into()).await?;
    Ok(created(policy.into()))
}

/// Get a policy.
#[utoipa::path(get, path = "/api/v1/policies/{id}", tag = "policies",
    params(("id" = String, Path, description = "Policy id")),
    responses(
        (status = 200, description = "The policy", body = DataEnvelope<PolicyView>),
        (status = 404, description = "No such policy", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["policies.read"])))]
pub async fn get_policy(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
) -> ApiResult<ApiData<PolicyView>> {
    principal.require("policies.read")?;
    Ok(ok(service::get(&state.governance, &principal, &id)
        .await?
        .into()))
}

/// Change a policy; the change is versioned and audited.
#[utoipa::path(patch, path = "/api/v1/policies/{id}", tag = "policies", request_body = UpdatePolicy,
    params(("id" = String, Path, description = "Policy id")),
    responses(
        (status = 200, description = "The changed policy", body = DataEnvelope<PolicyView>),
        (status = 404, description = "No such policy", body = crate::http::error::ErrorEnvelope),
        (status = 409, description = "The name is taken", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["policies.write"])))]
pub async fn update_policy(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
    UniqueJson(body): UniqueJson<UpdatePolicy>,
) -> ApiResult<ApiData<PolicyView>> {
    principal.require("policies.write")?;
    let policy = service::update(&state.governance, &principal, &id, body.into()).await?;
    Ok(ok(policy.into()))
}

/// Delete a policy; its versions stay.
#[utoipa::path(delete, path = "/api/v1/policies/{id}", tag = "policies",
    params(("id" = String, Path, description = "Policy id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such policy", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["policies.write"])))]
pub async fn delete_policy(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
) -> ApiResult<StatusCode> {
    principal.require("policies.write")?;
    service::delete(&state.governance, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One version of a policy: the whole policy after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyVersionView {
    pub policy_id: String,
    pub version: i64,
    /// `created`, `updated` or `deleted`.
    #[schema(value_type = PolicyChangeName)]
    pub change: String,
    /// The key that made the change.
    pub changed_by: String,
    #[schema(format = DateTime)]
    pub changed_at: String,
    pub policy: PolicyView,
}

impl From<PolicyVersion> for PolicyVersionView {
    fn from(v: PolicyVersion) -> Self {
        PolicyVersionView {
            policy_id: v.policy_id,
            version: v.version,
            change: v.change,
            changed_by: v.changed_by,
            changed_at: time(v.changed_at),
            policy: v.policy.into(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListVersions {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// `desc` (default, newest first) or `asc`.
    pub direction: Option<SortDirection>,
}

/// A policy's versions, newest first; kept after deletion.
#[utoipa::path(get, path = "/api/v1/policies/{id}/versions", tag = "policies",
    params(("id" = String, Path, description = "Policy id"), ListVersions),
    responses(
        (status = 200, description = "A page of versions", body = ListEnvelope<PolicyVersionView>),
        (status = 404, description = "No such policy", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["policies.read"])))]
pub async fn list_policy_versions(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
    ApiQuery(q): ApiQuery<ListVersions>,
    RawQuery(raw): RawQuery,
) -> ApiResult<ApiList<PolicyVersionView>> {
    principal.require("policies.read")?;
    let cursors = SealedCursors::new(
        &state.master,
        &principal.tenant(),
        &filtered(&format!("policies/{id}/versions"), raw.as_deref()),
    );
    let page = PageRequest::new(
        q.limit,
        cursors.open_opt(q.cursor.as_deref())?.as_deref(),
        None,
        q.direction.map(Into::into),
        &["version"],
    )?;
    let page = service::versions(&state.governance, &principal, &id, page).await?;
    Ok(ApiList(
        page.items
            .into_iter()
            .map(PolicyVersionView::from)
            .collect(),
        cursors.seal_opt(page.next_cursor),
    ))
}

/// What a policy version records, as the document names it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Names the values in the OpenAPI document only.
pub enum PolicyChangeName {
    Created,
    Updated,
    Deleted,
}
