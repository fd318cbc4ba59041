//! The Thoth SDK's wire format over the same enforcement service, so that
//! agents instrumented with `aten-thoth` work by pointing `THOTH_API_URL`
//! at Warden: `POST /v1/enforce` and `GET /v1/enforce/hold/{token}`,
//! answered without the envelope, decisions in capitals.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use warden_policy::Decision;

use super::enforce::{poll_hold, WaitQuery};
use crate::auth::Principal;
use crate::governance::enforce::{self as service, CallRequest};
use crate::http::error::ApiResult;
use crate::http::extract::{ApiJson, ApiQuery, ResourceId};
use crate::state::AppState;

/// The Thoth SDK's enforcement request. Fields Warden has no use for as
/// such (`tenant_id`, `approved_scope`, `enforcement_mode`, `environment`,
/// `session_intent`, `enforcement_trace_id`) reach policies as `context`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ThothEnforceRequest {
    pub agent_id: String,
    pub tool_name: String,
    #[schema(value_type = Option<Object>)]
    pub tool_args: Option<Value>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    /// The session's tools so far, the current one last.
    pub session_tool_calls: Option<Vec<String>>,
    pub hold_token: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub rest: Map<String, Value>,
}

/// `ALLOW`, `BLOCK`, `STEP_UP` or `MODIFY` (an `audit` decision allows).
#[derive(Debug, Serialize, ToSchema)]
pub struct ThothDecision {
    #[schema(example = "ALLOW")]
    pub decision: String,
    pub reason: String,
    pub hold_token: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub modified_tool_args: Option<Value>,
    pub matched_rule_ids: Vec<String>,
    pub policy_references: Vec<String>,
    /// The drift score.
    pub risk_score: f64,
    pub latency_ms: f64,
    /// The audit record's id.
    pub violation_id: String,
    pub step_up_timeout_seconds: Option<u32>,
    pub authorization_decision: String,
}

fn thoth_name(d: Decision) -> &'static str {
    match d {
        Decision::Allow | Decision::Audit => "ALLOW",
        Decision::Deny => "BLOCK",
        Decision::StepUp => "STEP_UP",
        Decision::Modify => "MODIFY",
    }
}

/// Decide a tool call (Thoth SDK format).
#[utoipa::path(post, path = "/v1/enforce", tag = "thoth", request_body = ThothEnforceRequest,
    responses((status = 200, description = "The decision, recorded", body = ThothDecision)),
    security(("bearer" = ["enforce"])))]
pub async fn thoth_enforce(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<ThothEnforceRequest>,
) -> ApiResult<Json<ThothDecision>> {
    principal.require("enforce")?;
    let context = (!body.rest.is_empty()).then_some(Value::Object(body.rest));
    let call = CallRequest {
        agent: body.agent_id,
        tool: body.tool_name,
        args: body.tool_args,
        session_id: body.session_id,
        user_id: body.user_id,
        context,
        hold_token: body.hold_token,
        session_tools: body.session_tool_calls,
    };
    let v = service::enforce(&state.governance, &principal, call).await?;
    let name = thoth_name(v.decision);
    Ok(Json(ThothDecision {
        decision: name.into(),
        reason: v.reason,
        hold_token: v.hold_token,
        modified_tool_args: v.modified_tool_args,
        policy_references: v.matched_policy_ids.clone(),
        matched_rule_ids: v.matched_policy_ids,
        risk_score: v.drift.score,
        latency_ms: v.latency_ms,
        violation_id: v.audit_id,
        step_up_timeout_seconds: v.step_up_timeout_seconds,
        authorization_decision: name.into(),
    }))
}

/// A hold as the Thoth SDK polls it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThothHold {
    pub resolved: bool,
    /// `ALLOW` or `BLOCK` once resolved.
    pub resolution: Option<String>,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
}

/// Poll a step-up hold (Thoth SDK format); `?wait=N` long-polls.
#[utoipa::path(get, path = "/v1/enforce/hold/{token}", tag = "thoth",
    params(("token" = String, Path, description = "The hold token"), WaitQuery),
    responses(
        (status = 200, description = "The hold", body = ThothHold),
        (status = 404, description = "No such hold", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["enforce"])))]
pub async fn thoth_hold(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(token): ResourceId,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<ThothHold>> {
    let h = poll_hold(&state.governance, &principal, &token, q.wait).await?;
    let state = super::enforce::hold_state(&h);
    Ok(Json(ThothHold {
        resolved: state.resolved,
        resolution: state.resolution.map(|r| {
            if r == super::policies::DecisionName::Allow {
                "ALLOW"
            } else {
                "BLOCK"
            }
            .to_string()
        }),
        status: h.status.as_str().into(),
        reason: h.comment.clone().or_else(|| {
            (h.status == warden_core::hold::HoldStatus::Expired)
                .then(|| "step-up expired without an approval".to_string())
        }),
        decided_by: h.decided_by,
    }))
}
