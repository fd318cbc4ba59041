//! `/api/v1/agents/{id}/drift`: what an agent's behavioural profile has
//! learned, and rebuilding it from the audit log.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::http::envelope::{ok, ApiData, DataEnvelope};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::ResourceId;
use crate::services::agents as agents_service;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolCount {
    pub tool: String,
    pub calls: u64,
}

/// How often `to` followed `from` in a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransitionCount {
    pub from: String,
    pub to: String,
    pub calls: u64,
}

/// The argument names seen for a tool.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolArguments {
    pub tool: String,
    pub keys: Vec<String>,
}

/// An agent's learned behaviour: everything its drift parts are scored
/// against, so that a score can be checked by hand.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftProfileView {
    pub agent_id: String,
    /// Calls learned from.
    pub calls: u64,
    /// True until the agent has enough history for scores to count.
    pub learning: bool,
    /// Tools by how often they were called, most first.
    pub tools: Vec<ToolCount>,
    /// The long-run call rate.
    pub baseline_per_minute: Option<f64>,
    /// Calls per hour of the day, UTC, from 00 to 23.
    pub hours: Vec<u64>,
    /// Steps from one tool to the next in a session, by `from`, most
    /// first (`unusual_transition`).
    pub transitions: Vec<TransitionCount>,
    /// Argument names seen per tool (`new_argument_keys`).
    pub argument_keys: Vec<ToolArguments>,
    /// Times of the latest calls learned, oldest first: with the call
    /// being scored, the current rate's window (`unusual_rate`).
    pub recent_calls: Vec<String>,
    /// The audit sequence of the last call learned.
    pub audit_sequence: i64,
}

async fn view(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<DriftProfileView, ApiError> {
    let g = &state.governance;
    let tenant = principal.tenant();
    g.drift.ensure_loaded(&tenant, id).await?;
    let s = g
        .drift
        .summary(&tenant, id)
        .ok_or_else(|| ApiError::not_found("drift profile"))?;
    Ok(DriftProfileView {
        agent_id: id.to_string(),
        calls: s.calls,
        learning: s.learning,
        tools: s
            .tools
            .into_iter()
            .map(|(tool, calls)| ToolCount { tool, calls })
            .collect(),
        baseline_per_minute: s.baseline_per_minute,
        hours: s.hours.to_vec(),
        transitions: s
            .transitions
            .into_iter()
            .map(|(from, to, calls)| TransitionCount { from, to, calls })
            .collect(),
        argument_keys: s
            .argument_keys
            .into_iter()
            .map(|(tool, keys)| ToolArguments { tool, keys })
            .collect(),
        recent_calls: s.recent.into_iter().map(super::wire::time).collect(),
        audit_sequence: s.sequence,
    })
}

/// An agent's drift profile.
#[utoipa::path(get, path = "/api/v1/agents/{id}/drift", tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "The profile", body = DataEnvelope<DriftProfileView>),
        (status = 404, description = "No such agent", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["agents.read"])))]
pub async fn get_drift_profile(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
) -> ApiResult<ApiData<DriftProfileView>> {
    principal.require("agents.read")?;
    let agent = agents_service::get(state.store.as_ref(), &principal, &id).await?;
    Ok(ok(view(&state, &principal, &agent.id).await?))
}

/// Forget an agent's profile and rebuild it from the audit log.
#[utoipa::path(post, path = "/api/v1/agents/{id}/drift/rebuild", tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "The rebuilt profile", body = DataEnvelope<DriftProfileView>),
        (status = 404, description = "No such agent", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["agents.write"])))]
pub async fn rebuild_drift_profile(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
) -> ApiResult<ApiData<DriftProfileView>> {
    principal.require("agents.write")?;
    let agent = agents_service::get(state.store.as_ref(), &principal, &id).await?;
    state
        .governance
        .drift
        .rebuild(&principal.tenant(), &agent.id)
        .await?;
    Ok(ok(view(&state, &principal, &agent.id).await?))
}
