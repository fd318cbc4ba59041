//! `/api/v1/enforce`: the decision on a tool call, the agent's view of a
//! step-up hold, and the dry run of `/api/v1/policies/test`.

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Extension;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use warden_core::hold::{self, Hold, HoldStatus};
use warden_core::time::now_ms;
use warden_core::Error;
use warden_policy::drift::{DriftScore, Observation};
use warden_policy::CallFacts;

use super::policies::{CreatePolicy, DecisionName};
use super::wire::opt_time;
use crate::auth::Principal;
use crate::governance::enforce::{self as service, CallRequest, Verdict};
use crate::governance::engine::TenantPolicies;
use crate::governance::holds::{expire_if_due, MAX_WAIT_SECONDS};
use crate::http::envelope::{ok, ApiData, DataEnvelope};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery, ResourceId, UniqueJson};
use crate::http::peer::PeerLink;
use crate::http::unique_keys::unique_keys;
use crate::state::AppState;

/// A tool call an agent is about to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnforceRequest {
    /// The agent's Warden id or its own `external_id`. An unknown external
    /// id registers a `discovered` agent.
    #[schema(example = "billing-bot", min_length = 1, max_length = 200)]
    pub agent_id: String,
    /// 1 to 256 characters.
    #[schema(example = "payments.transfer", min_length = 1, max_length = 256)]
    pub tool_name: String,
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "unique_keys")]
    pub tool_args: Option<Value>,
    /// 1 to 200 characters, kept as sent (case and spaces count).
    #[schema(min_length = 1, max_length = 200)]
    pub session_id: Option<String>,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub user_id: Option<String>,
    /// Anything else policies may read as `context`.
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "unique_keys")]
    pub context: Option<Value>,
    /// Redeems an approved step-up hold for exactly this call, once.
    #[schema(min_length = 1, max_length = 200)]
    pub hold_token: Option<String>,
}

/// The parts of the drift score, each 0 to 1.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftView {
    pub score: f64,
    /// True until the agent has enough history; the score is then 0.
    pub learning: bool,
    pub new_tool: f64,
    pub unusual_transition: f64,
    pub unusual_rate: f64,
    pub unusual_hour: f64,
    pub new_argument_keys: f64,
}

impl From<DriftScore> for DriftView {
    fn from(d: DriftScore) -> Self {
        DriftView {
            score: d.score,
            learning: d.learning,
            new_tool: d.new_tool,
            unusual_transition: d.unusual_transition,
            unusual_rate: d.unusual_rate,
            unusual_hour: d.unusual_hour,
            new_argument_keys: d.new_argument_keys,
        }
    }
}

/// The decision, already durable in the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnforceResponse {
    pub decision: DecisionName,
    pub reason: String,
    pub matched_policy_ids: Vec<String>,
    /// For `step_up`: poll `GET /api/v1/enforce/hold/{hold_token}`.
    pub hold_token: Option<String>,
    /// For `step_up`: the hold's id, which people approve or deny it by
    /// (`POST /api/v1/holds/{hold_id}/approve`); the agent polls by token.
    pub hold_id: Option<String>,
    #[schema(format = DateTime)]
    pub hold_expires_at: Option<String>,
    /// For `modify`: the arguments to call the tool with.
    #[schema(value_type = Option<Object>)]
    pub modified_tool_args: Option<Value>,
    pub drift_score: f64,
    pub drift: DriftView,
    /// The agent's Warden id.
    pub agent_id: String,
    pub audit_id: String,
    /// From the request's arrival to the durable audit record.
    pub latency_ms: f64,
    /// What `monitor` policies would have decided, when one matched.
    pub monitor_decision: Option<DecisionName>,
}

impl From<Verdict> for EnforceResponse {
    fn from(v: Verdict) -> Self {
        EnforceResponse {
            decision: v.decision.into(),
            reason: v.reason,
            matched_policy_ids: v.matched_policy_ids,
            hold_token: v.hold_token,
            hold_id: v.hold_id,
            hold_expires_at: opt_time(v.hold_expires_at),
            modified_tool_args: v.modified_tool_args,
            drift_score: v.drift.score,
            drift: v.drift.into(),
            agent_id: v.agent_id,
            audit_id: v.audit_id,
            latency_ms: v.latency_ms,
            monitor_decision: v.monitor_decision.map(Into::into),
        }
    }
}

/// Decide a tool call before the agent runs it.
#[utoipa::path(post, path = "/api/v1/enforce", tag = "enforcement", request_body = EnforceRequest,
    responses(
        (status = 200, description = "The decision, recorded", body = DataEnvelope<EnforceResponse>),
        (status = 403, description = "A bound key asked for another agent", body = crate::http::error::ErrorEnvelope),
        (status = 404, description = "No agent has this Warden id (`agt_…`); an unknown external id is discovered instead", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["enforce"])))]
pub async fn enforce(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<EnforceRequest>,
) -> ApiResult<ApiData<EnforceResponse>> {
    principal.require("enforce")?;
    // Empty is not a token: refused as the ids beside it are, rather
    // than looked up and recorded as an unknown token's denial. (The Thoth
    // adapter keeps the lookup, for clients that send one empty.)
    if body.hold_token.as_deref() == Some("") {
        return Err(ApiError::invalid(
            "hold_token",
            "hold_token must be 1 to 200 characters; leave it out when the call has none",
        ));
    }
    let call = CallRequest {
        agent: body.agent_id,
        tool: body.tool_name,
        args: body.tool_args,
        session_id: body.session_id,
        user_id: body.user_id,
        context: body.context,
        hold_token: body.hold_token,
        session_tools: None,
    };
    let verdict = service::enforce(&state.governance, &principal, call)
        .await
        .map_err(agent_named)?;
    Ok(ok(verdict.into()))
}

/// An `agt_…` id that names no agent is the request's `agent_id`, as
/// `policies/test` says.
pub(crate) fn agent_named(e: crate::services::ServiceError) -> ApiError {
    match e {
        crate::services::ServiceError::Domain(warden_core::Error::NotFound("agent")) => {
            ApiError::not_found("agent").with_field("agent_id")
        }
        other => other.into(),
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatusName {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl From<HoldStatus> for HoldStatusName {
    fn from(s: HoldStatus) -> Self {
        match s {
            HoldStatus::Pending => HoldStatusName::Pending,
            HoldStatus::Approved => HoldStatusName::Approved,
            HoldStatus::Denied => HoldStatusName::Denied,
            HoldStatus::Expired => HoldStatusName::Expired,
        }
    }
}

/// A hold as its agent sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldState {
    pub status: HoldStatusName,
    pub resolved: bool,
    /// `allow` once approved, `deny` once denied or expired.
    pub resolution: Option<DecisionName>,
    pub decided_by: Option<String>,
    #[schema(format = DateTime)]
    pub decided_at: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// For an approved hold: when the approval, if not used by then,
    /// stops counting (the status then reads `expired`).
    #[schema(format = DateTime)]
    pub approval_expires_at: Option<String>,
    /// When the approved call was made (the approval is single-use: a
    /// later re-submission is denied). Null until then.
    #[schema(format = DateTime)]
    pub redeemed_at: Option<String>,
    pub comment: Option<String>,
}

/// The hold as a poll sees it at `now` (an approval that expired unused
/// reads as expired: re-submitting the call would be denied).
pub fn hold_state(h: &Hold, now: i64) -> HoldState {
    let status = h.status_at(now);
    let resolution = match status {
        HoldStatus::Pending => None,
        HoldStatus::Approved => Some(DecisionName::Allow),
        HoldStatus::Denied | HoldStatus::Expired => Some(DecisionName::Deny),
    };
    HoldState {
        status: status.into(),
        resolved: status != HoldStatus::Pending,
        resolution,
        decided_by: h.decided_by.clone(),
        decided_at: opt_time(h.decided_at),
        expires_at: super::wire::time(h.expires_at),
        approval_expires_at: opt_time(h.approval_expires_at()),
        redeemed_at: opt_time(h.redeemed_at),
        comment: h.comment.clone(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for a resolution, 0 to 30 (default 0: answer now).
    #[param(minimum = 0, maximum = 30)]
    pub wait: Option<i64>,
}

/// A hold as a poll found it.
pub struct Polled {
    pub hold: Hold,
    /// The client went away while the poll waited: nobody reads the answer,
    /// so nothing may be spent on it.
    pub abandoned: bool,
}

/// Reads a hold by its token, waiting up to `wait` for it to resolve (and
/// no longer once `peer` has hung up).
pub async fn poll_hold(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    peer: Option<Extension<PeerLink>>,
    token: &str,
    wait: Option<i64>,
) -> Result<Polled, ApiError> {
    principal.require("enforce")?;
    let (g, admitted) = (&state.governance, (&state.keys, headers));
    let peer = peer.map(|Extension(link)| link);
    // Read as signed so that `-1` is told the range, not "a whole number".
    let Some(wait) = wait
        .unwrap_or(0)
        .try_into()
        .ok()
        .filter(|w| *w <= MAX_WAIT_SECONDS)
    else {
        return Err(ApiError::invalid(
            "wait",
            format!("wait is a number of seconds from 0 to {MAX_WAIT_SECONDS}"),
        ));
    };
    let tenant = principal.tenant();
    let digest = hold::token_digest(token);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut waited = false;
    loop {
        let found = g
            .store
            .hold_by_token(&tenant, &digest)
            .await
            .map_err(ApiError::from)?;
        let Some(h) = found else {
            return Err(ApiError::not_found("hold"));
        };
        if principal
            .agent_id
            .as_deref()
            .is_some_and(|a| a != h.agent_id)
        {
            return Err(ApiError::not_found("hold"));
        }
        if waited {
            let (keys, headers) = admitted;
            keys.still_admits(headers, principal).await?;
        }
        let h = expire_if_due(g.store.as_ref(), &g.audit, &g.waiters, &tenant, h).await?;
        let now = tokio::time::Instant::now();
        let abandoned = waited && peer.is_some_and(|p| p.hung_up());
        if h.status != HoldStatus::Pending || now >= deadline || g.waiters.closing() || abandoned {
            return Ok(Polled { hold: h, abandoned });
        }
        let until_expiry = Duration::from_millis((h.expires_at - now_ms()).max(0) as u64 + 5);
        let still_pending = || async {
            matches!(
                g.store.hold_by_token(&tenant, &digest).await,
                Ok(Some(current)) if current.status == HoldStatus::Pending
            )
        };
        // Woken by the resolution, or by the waiters' fallback re-read
        // (every 250 ms), after which the key is checked again: a revoked
        // key's poll ends within about a second.
        g.waiters
            .wait(&h.id, (deadline - now).min(until_expiry), still_pending)
            .await;
        waited = true;
    }
}

/// A step-up hold's state; `?wait=N` long-polls until it resolves.
#[utoipa::path(get, path = "/api/v1/enforce/hold/{token}", tag = "enforcement",
    params(("token" = String, Path, description = "The hold token from the decision"), WaitQuery),
    responses(
        (status = 200, description = "The hold", body = DataEnvelope<HoldState>),
        (status = 404, description = "No such hold", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["enforce"])))]
pub async fn get_hold_by_token(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    peer: Option<Extension<PeerLink>>,
    ResourceId(token): ResourceId,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<ApiData<HoldState>> {
    let polled = poll_hold(&state, &principal, &headers, peer, &token, q.wait).await?;
    Ok(ok(hold_state(&polled.hold, warden_core::time::now_ms())))
}

/// A hypothetical call and, optionally, a proposed policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTest {
    /// An existing agent's id or external id; omitted, an agent with no
    /// id or tags.
    #[schema(min_length = 1, max_length = 200)]
    pub agent_id: Option<String>,
    #[schema(min_length = 1, max_length = 256)]
    pub tool_name: String,
    #[schema(value_type = Option<Object>)]
    pub tool_args: Option<Value>,
    /// 1 to 200 characters, as on `POST /api/v1/enforce`.
    #[schema(min_length = 1, max_length = 200)]
    pub session_id: Option<String>,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub user_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    /// Evaluated beside the current policies (or alone with `only_proposed`).
    pub policy: Option<CreatePolicy>,
    /// Replace this existing policy by the proposed one.
    pub replaces: Option<String>,
    /// Evaluate the proposed policy alone.
    #[serde(default)]
    pub only_proposed: bool,
}

/// A policy that matched, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatchedPolicy {
    /// `proposed` for the proposed policy.
    pub id: String,
    pub name: String,
    pub decision: DecisionName,
    pub priority: i32,
    /// `enforce` or `monitor`.
    #[schema(value_type = super::policies::ModeName)]
    pub mode: String,
    pub why: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyTestResult {
    pub decision: DecisionName,
    pub reason: String,
    pub deciding_policy_id: Option<String>,
    /// Matching policies, strongest first: `enforce` ones, then `monitor`.
    pub matched: Vec<MatchedPolicy>,
    pub monitor_decision: Option<DecisionName>,
    pub default_decision: DecisionName,
    #[schema(value_type = Option<Object>)]
    pub modified_tool_args: Option<Value>,
    pub drift: DriftView,
    /// Conditions that failed to evaluate for this call.
    #[schema(value_type = Vec<Object>)]
    pub condition_errors: Vec<Value>,
    /// The policy that already has the proposed policy's name (other than
    /// the one it `replaces`): creating the proposal as it is would be a
    /// 409, though it can be evaluated.
    pub name_taken_by: Option<String>,
}

/// Evaluate a hypothetical call without recording anything.
#[utoipa::path(post, path = "/api/v1/policies/test", tag = "policies", request_body = PolicyTest,
    responses(
        (status = 200, description = "What would be decided, and why", body = DataEnvelope<PolicyTestResult>),
        (status = 404, description = "No agent has this Warden id (`agt_…`), or no policy the one to replace", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["policies.read"])))]
pub async fn test_policies(
    State(state): State<AppState>,
    principal: Principal,
    UniqueJson(body): UniqueJson<PolicyTest>,
) -> ApiResult<ApiData<PolicyTestResult>> {
    principal.require("policies.read")?;
    crate::governance::policies::ensure_unbound(&principal)?;
    let g = &state.governance;
    let tenant = principal.tenant();
    if let Some(reference) = &body.agent_id {
        warden_core::agent::check_reference(reference, "agent_id")?;
    }
    let found = match &body.agent_id {
        Some(reference) => g
            .store
            .find_agent(&tenant, reference)
            .await
            .map_err(ApiError::from)?,
        None => None,
    };
    let registered = found.is_some();
    let agent = match (found, &body.agent_id) {
        (Some(agent), _) => agent,
        (None, Some(reference)) if service::looks_like_agent_id(reference) => {
            return Err(ApiError::not_found("agent").with_field("agent_id"))
        }
        // An unknown external id is tested as the discovered agent its
        // first real call would register, with an `agt_…` id of its own as
        // that call would get (conditions may read it); no id at all, as a
        // nameless hypothetical one. Neither is registered, nor has a
        // drift profile.
        (None, reference) => match reference {
            Some(reference) => service::discovered_agent(g, &tenant, reference).await?,
            None => warden_core::agent::Agent::create(
                warden_core::agent::AgentChanges {
                    name: Some("hypothetical".into()),
                    ..Default::default()
                },
                now_ms(),
            )?,
        },
    };
    let call = CallRequest {
        agent: body
            .agent_id
            .clone()
            .unwrap_or_else(|| "hypothetical".into()),
        tool: body.tool_name.clone(),
        args: body.tool_args.clone(),
        session_id: body.session_id.clone(),
        user_id: body.user_id.clone(),
        context: body.context.clone(),
        hold_token: None,
        session_tools: None,
    };
    call.validate()?;
    // The policies to evaluate against.
    let default = g
        .engine
        .default_decision(&tenant)
        .await
        .map_err(ApiError::from)?;
    if body.policy.is_none() {
        // Both only make sense beside a proposed policy; silently testing
        // the current set instead would mislead.
        if body.replaces.is_some() {
            return Err(ApiError::invalid(
                "replaces",
                "replaces names the policy a proposed `policy` replaces; no policy was given",
            ));
        }
        if body.only_proposed {
            return Err(ApiError::invalid(
                "only_proposed",
                "only_proposed evaluates a proposed `policy` alone; no policy was given",
            ));
        }
    }
    let mut proposed_record = None;
    let mut name_taken_by = None;
    let policies = match body.policy {
        None => g.engine.policies(&tenant).await.map_err(ApiError::from)?,
        Some(p) => {
            let mut record = warden_core::policy::PolicyRecord::create(
                p.into(),
                "proposed".into(),
                &principal.key_id,
                now_ms(),
            )
            .map_err(|e| prefix_field(e, "policy"))?;
            let existing = g
                .store
                .all_policies(&tenant)
                .await
                .map_err(ApiError::from)?;
            name_taken_by = existing
                .iter()
                .find(|r| r.name == record.name && body.replaces.as_ref() != Some(&r.id))
                .map(|r| r.id.clone());
            let mut records = if body.only_proposed {
                Vec::new()
            } else {
                existing
            };
            if let Some(replaced) = &body.replaces {
                match records.iter().position(|r| &r.id == replaced) {
                    // A change keeps the policy's place among ties (they
                    // apply in the order policies were created).
                    Some(at) => record.created_at = records.remove(at).created_at,
                    None if !body.only_proposed => {
                        return Err(ApiError::invalid(
                            "replaces",
                            format!("no policy {replaced} to replace"),
                        ))
                    }
                    None => {}
                }
            }
            records.push(record.clone());
            proposed_record = Some(record);
            // The current set's conditions are taken as compiled.
            let current = g.engine.policies(&tenant).await.map_err(ApiError::from)?;
            std::sync::Arc::new(TenantPolicies::compile(
                records,
                default,
                -1,
                Some(&current),
            ))
        }
    };
    let args = call
        .args
        .clone()
        .filter(|v| !v.is_null())
        .unwrap_or_else(|| serde_json::json!({}));
    // An agent not yet registered scores as its first call would: with an
    // empty profile (learning, every tool and argument new). Loading
    // rebuilds its recent sessions, so it comes first.
    if registered {
        g.drift
            .ensure_loaded(&tenant, &agent.id)
            .await
            .map_err(ApiError::from)?;
    }
    let session = body
        .session_id
        .as_deref()
        .map(|s| g.drift.session(&tenant, &agent.id, s))
        .unwrap_or_default();
    let keys = crate::governance::drift::argument_keys(&args);
    let drift = g.drift.score(
        &tenant,
        &agent.id,
        &Observation {
            tool: &call.tool,
            previous_tool: session.tools.last().map(String::as_str),
            arg_keys: &keys,
            at_ms: now_ms(),
        },
    );
    let context = call.context.clone().unwrap_or(Value::Null);
    let facts = service::call_facts(&agent, &call, args, context, session, drift, now_ms());
    let (outcome, CallFacts { args, drift, .. }) =
        service::decide_with(&policies, &agent, &call, facts);
    let errored: std::collections::HashSet<String> = outcome
        .condition_errors
        .iter()
        .filter_map(|e| e["policy_id"].as_str().map(str::to_string))
        .collect();
    let describe = |id: &str| -> Option<MatchedPolicy> {
        let facts = policies.facts.get(id)?;
        let record_pattern = proposed_record
            .as_ref()
            .filter(|r| r.id == id)
            .map(|r| r.action_pattern.clone());
        let (priority, mode, pattern, has_condition, has_selector) =
            policy_summary(&policies, id, record_pattern);
        let mut why = format!("`{pattern}` matches `{}`", call.tool);
        if has_selector {
            why.push_str("; the agent selector includes the agent");
        }
        if errored.contains(id) {
            // A failed condition counts as met where that is stricter:
            // say so rather than claim it held.
            why.push_str(
                "; the condition failed to evaluate and counts as met where that is stricter (see condition_errors)",
            );
        } else if has_condition {
            why.push_str("; the condition held");
        }
        Some(MatchedPolicy {
            id: id.to_string(),
            name: facts.name.clone(),
            decision: facts.decision.into(),
            priority,
            mode,
            why,
        })
    };
    let mut matched: Vec<MatchedPolicy> = outcome
        .matched
        .iter()
        .filter_map(|id| describe(id))
        .collect();
    matched.extend(
        outcome
            .monitored
            .iter()
            .filter_map(|m| describe(&m.policy_id)),
    );
    let mut decision = outcome.decision;
    let mut reason = outcome.reason;
    let modified_tool_args = service::apply_change(
        &policies,
        &outcome.change_from,
        &args,
        &mut decision,
        &mut reason,
        &warden_policy::ChangeWork::default(),
    );
    Ok(ok(PolicyTestResult {
        decision: decision.into(),
        reason,
        deciding_policy_id: outcome.deciding,
        matched,
        monitor_decision: outcome.monitor_decision.map(Into::into),
        default_decision: default.into(),
        modified_tool_args,
        drift: drift.into(),
        condition_errors: outcome.condition_errors,
        name_taken_by,
    }))
}

/// Priority, mode, pattern and whether a condition and selector exist.
fn policy_summary(
    policies: &TenantPolicies,
    id: &str,
    pattern: Option<String>,
) -> (i32, String, String, bool, bool) {
    match policies.set.policy(id) {
        Some(p) => (
            p.priority,
            p.mode.as_str().to_string(),
            pattern.unwrap_or_else(|| p.pattern.as_str().to_string()),
            p.condition.is_some(),
            p.agents.is_some(),
        ),
        None => (
            0,
            "enforce".into(),
            pattern.unwrap_or_default(),
            false,
            false,
        ),
    }
}

fn prefix_field(e: Error, prefix: &str) -> ApiError {
    match e {
        Error::Invalid { field, message } => Error::Invalid {
            field: format!("{prefix}.{field}"),
            message,
        },
        Error::InvalidAt {
            field,
            message,
            line,
            column,
        } => Error::InvalidAt {
            field: format!("{prefix}.{field}"),
            message,
            line,
            column,
        },
        other => other,
    }
    .into()
}
