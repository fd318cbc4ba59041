//! `/api/v1/policy-settings`: what happens when no policy matches.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::policies::DecisionName;
use crate::auth::Principal;
use crate::governance::policies::ensure_unbound;
use crate::http::envelope::{ok, ApiData, DataEnvelope};
use crate::http::error::ApiResult;
use crate::http::extract::ApiJson;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicySettings {
    /// The decision when no enabled policy matches (`allow` out of the box).
    pub default_decision: DecisionName,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicySettings {
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "super::wire::not_null")]
    pub default_decision: Option<DefaultDecisionName>,
}

/// The decisions a default can be: `modify` has no change to make.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DefaultDecisionName {
    Allow,
    Deny,
    StepUp,
    Audit,
}

impl From<DefaultDecisionName> for warden_policy::Decision {
    fn from(d: DefaultDecisionName) -> Self {
        match d {
            DefaultDecisionName::Allow => Self::Allow,
            DefaultDecisionName::Deny => Self::Deny,
            DefaultDecisionName::StepUp => Self::StepUp,
            DefaultDecisionName::Audit => Self::Audit,
        }
    }
}

/// This environment's policy settings.
#[utoipa::path(get, path = "/api/v1/policy-settings", tag = "policies",
    responses((status = 200, description = "The settings", body = DataEnvelope<PolicySettings>)),
    security(("bearer" = ["policies.read"])))]
pub async fn get_policy_settings(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<ApiData<PolicySettings>> {
    principal.require("policies.read")?;
    ensure_unbound(&principal)?;
    let d = state
        .governance
        .engine
        .default_decision(&principal.tenant())
        .await?;
    Ok(ok(PolicySettings {
        default_decision: d.into(),
    }))
}

/// Change the policy settings.
#[utoipa::path(patch, path = "/api/v1/policy-settings", tag = "policies", request_body = UpdatePolicySettings,
    responses((status = 200, description = "The settings", body = DataEnvelope<PolicySettings>)),
    security(("bearer" = ["policies.write"])))]
pub async fn update_policy_settings(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<UpdatePolicySettings>,
) -> ApiResult<ApiData<PolicySettings>> {
    principal.require("policies.write")?;
    ensure_unbound(&principal)?;
    let tenant = principal.tenant();
    let g = &state.governance;
    if let Some(d) = body.default_decision {
        crate::governance::policies::set_default_decision(g, &principal, d.into()).await?;
    }
    let d = g.engine.default_decision(&tenant).await?;
    Ok(ok(PolicySettings {
        default_decision: d.into(),
    }))
}
