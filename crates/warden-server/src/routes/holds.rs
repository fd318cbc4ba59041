//! `/api/v1/holds`: step-up holds awaiting a person's decision.

use axum::extract::RawQuery;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warden_core::event::input::unfit_in_shown_text;
use warden_core::hold::{Hold, HoldFilter, HoldStatus};
use warden_core::page::PageRequest;
use warden_core::time::now_ms;
use warden_core::Error;

use super::enforce::HoldStatusName;
use super::wire::{agent_filter, opt_time, time, SortDirection};
use crate::auth::Principal;
use crate::governance::holds::{expire_if_due, resolve, Resolution, MAX_COMMENT};
use crate::http::envelope::{ok, ApiData, ApiList, DataEnvelope, ListEnvelope};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiQuery, OptionalJson, ResourceId};
use crate::http::sealed_cursor::{filtered, SealedCursors};
use crate::state::AppState;

/// A step-up hold: one call waiting for approval.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldView {
    #[schema(example = "hld_0f3b5c2e9d8a7b6c5d4e3f2a")]
    pub id: String,
    pub status: HoldStatusName,
    pub agent_id: String,
    pub tool: String,
    /// SHA-256 of the hold token and the call's arguments: the hold covers
    /// exactly this call, and only the token's holder can test arguments
    /// against it.
    pub args_sha256: String,
    /// The policy that held the call; null when the default decision did.
    pub policy_id: Option<String>,
    pub policy_version: i64,
    pub session_id: Option<String>,
    /// The audit record of the decision that created the hold.
    pub audit_id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the hold stops waiting for a person.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// For an approved hold: when the approval, if not used by then,
    /// stops counting (the status then reads `expired`).
    #[schema(format = DateTime)]
    pub approval_expires_at: Option<String>,
    pub decided_by: Option<String>,
    #[schema(format = DateTime)]
    pub decided_at: Option<String>,
    pub comment: Option<String>,
    /// When an approval was used to run the call.
    #[schema(format = DateTime)]
    pub redeemed_at: Option<String>,
    /// The call's arguments as its audit record keeps them (the fields
    /// policies redact, redacted), so that an approver sees what they
    /// approve, in lists as in `GET /api/v1/holds/{id}`. Null when the
    /// decision's record cannot be read.
    #[schema(value_type = Option<Object>)]
    pub arguments: Option<serde_json::Value>,
    /// The user the call was made for, as its audit record keeps it (the
    /// approval covers the call for that user only).
    pub user_id: Option<String>,
}

impl HoldView {
    /// The hold as it stands at `now`: an approval that expired unused
    /// reads as expired, as the polls report it.
    pub fn at(h: Hold, now: i64) -> Self {
        HoldView {
            status: h.status_at(now).into(),
            approval_expires_at: opt_time(h.approval_expires_at()),
            id: h.id,
            agent_id: h.agent_id,
            tool: h.tool,
            args_sha256: h.args_sha256,
            policy_id: (!h.policy_id.is_empty()).then_some(h.policy_id),
            policy_version: h.policy_version,
            session_id: h.session_id,
            audit_id: h.audit_id,
            created_at: time(h.created_at),
            expires_at: time(h.expires_at),
            decided_by: h.decided_by,
            decided_at: opt_time(h.decided_at),
            comment: h.comment,
            redeemed_at: opt_time(h.redeemed_at),
            arguments: None,
            user_id: None,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListHolds {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    pub direction: Option<SortDirection>,
    pub status: Option<HoldStatusName>,
    pub agent_id: Option<String>,
}

fn status(s: HoldStatusName) -> HoldStatus {
    match s {
        HoldStatusName::Pending => HoldStatus::Pending,
        HoldStatusName::Approved => HoldStatus::Approved,
        HoldStatusName::Denied => HoldStatus::Denied,
        HoldStatusName::Expired => HoldStatus::Expired,
    }
}

/// List holds, newest first.
#[utoipa::path(get, path = "/api/v1/holds", tag = "holds", params(ListHolds),
    responses((status = 200, description = "A page of holds", body = ListEnvelope<HoldView>)),
    security(("bearer" = ["holds.read"])))]
pub async fn list_holds(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListHolds>,
    RawQuery(raw): RawQuery,
) -> ApiResult<ApiList<HoldView>> {
    principal.require("holds.read")?;
    let cursors = SealedCursors::new(
        &state.master,
        &principal.tenant(),
        &filtered("holds", raw.as_deref()),
    );
    let page = PageRequest::new(
        q.limit,
        cursors.open_opt(q.cursor.as_deref())?.as_deref(),
        None,
        q.direction.map(Into::into),
        &["created_at"],
    )?;
    let agent_id = agent_filter(&state, &principal, q.agent_id).await?;
    let now = now_ms();
    let filter = HoldFilter {
        status: q.status.map(status),
        agent_id,
        policy_id: None,
        unused: false,
        now,
    };
    let page = state
        .store
        .list_holds(&principal.tenant(), &filter, &page)
        .await?;
    // An approver works from this list: each hold shows the call it is
    // about (at most a page's 200 lookups by key).
    let mut views = Vec::with_capacity(page.items.len());
    for hold in page.items {
        views.push(view_with_arguments(&state, &principal, hold, now).await?);
    }
    Ok(ApiList(views, cursors.seal_opt(page.next_cursor)))
}

async fn find(state: &AppState, principal: &Principal, id: &str) -> Result<Hold, ApiError> {
    let g = &state.governance;
    let tenant = principal.tenant();
    let h = state
        .store
        .get_hold(&tenant, id)
        .await?
        .filter(|h| {
            principal
                .agent_id
                .as_deref()
                .is_none_or(|a| a == h.agent_id)
        })
        .ok_or_else(|| ApiError::not_found("hold"))?;
    Ok(expire_if_due(g.store.as_ref(), &g.audit, &g.waiters, &tenant, h).await?)
}

/// Get a hold.
#[utoipa::path(get, path = "/api/v1/holds/{id}", tag = "holds",
    params(("id" = String, Path, description = "Hold id")),
    responses(
        (status = 200, description = "The hold", body = DataEnvelope<HoldView>),
        (status = 404, description = "No such hold", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["holds.read"])))]
pub async fn get_hold(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
) -> ApiResult<ApiData<HoldView>> {
    principal.require("holds.read")?;
    let hold = find(&state, &principal, &id).await?;
    Ok(ok(
        view_with_arguments(&state, &principal, hold, now_ms()).await?
    ))
}

/// A hold as shown to a person, with the call's arguments as its audit
/// record keeps them (redacted), so that an approver sees what they
/// approve.
async fn view_with_arguments(
    state: &AppState,
    principal: &Principal,
    hold: Hold,
    now: i64,
) -> Result<HoldView, ApiError> {
    let decision = state
        .store
        .get_audit(&principal.tenant(), &hold.audit_id)
        .await?;
    let mut view = HoldView::at(hold, now);
    if let Some(r) = decision {
        view.arguments = r.record.arguments;
        view.user_id = r.record.user_id;
    }
    Ok(view)
}

/// A person's decision on a hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldDecision {
    /// Why; kept with the hold and in the audit log.
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

async fn decide(
    state: &AppState,
    principal: &Principal,
    id: &str,
    body: Option<HoldDecision>,
    outcome: HoldStatus,
) -> Result<Hold, ApiError> {
    principal.require("holds.write")?;
    if principal.agent_id.is_some() {
        return Err(
            Error::Forbidden("a key bound to an agent can never resolve a hold".into()).into(),
        );
    }
    // A Warden key or token pasted into a comment is taken out: the
    // comment is shown to the agent and kept in the audit log.
    let comment = body
        .and_then(|b| b.comment)
        .map(|c| c.trim().replace("\r\n", "\n"))
        .map(|c| warden_core::event::syslog::without_credentials(&c).unwrap_or(c))
        .filter(|c| !c.is_empty());
    if let Some(c) = &comment {
        if c.chars().count() > MAX_COMMENT {
            return Err(ApiError::invalid(
                "comment",
                format!("comment is at most {MAX_COMMENT} characters"),
            ));
        }
        // A comment is shown to the agent (in its hold's reason) and in the
        // audit log: text that reorders itself there (`U+202E`), hides (a
        // zero-width space, tag characters an LLM reads and a person does
        // not) or overwrites itself (a lone carriage return) could make a
        // denial read as an approval. Line breaks (`\r\n` kept as `\n`) and
        // tabs are plain text.
        if let Some((at, ch)) = unfit_in_shown_text(c) {
            return Err(ApiError::invalid(
                "comment",
                format!(
                    "comment must not contain control, invisible or direction-changing \
                     characters (U+{:04X} at character {}); line breaks and tabs are kept",
                    ch as u32,
                    at + 1
                ),
            ));
        }
    }
    let h = find(state, principal, id).await?;
    let g = &state.governance;
    // An approval for an agent that is gone could never be used: say so,
    // rather than approve what only a new agent of the same name could
    // try (and be refused).
    if outcome == HoldStatus::Approved
        && h.status == HoldStatus::Pending
        && g.store
            .get_agent(&principal.tenant(), &h.agent_id)
            .await?
            .is_none()
    {
        return Err(Error::Conflict(
            "the agent that made this call was deleted; the hold can only be denied".into(),
        )
        .into());
    }
    // Nor could an approval of a call held under a policy that changed
    // since (the sweep denies such holds within seconds; this one was
    // asked about first).
    if outcome == HoldStatus::Approved && h.status == HoldStatus::Pending && !h.policy_id.is_empty()
    {
        let current = g
            .store
            .get_policy(&principal.tenant(), &h.policy_id)
            .await?
            .map(|p| p.version);
        if current != Some(h.policy_version) {
            return Err(Error::Conflict(
                "the policy that held this call changed since (or was deleted); an approval \
                 could never be used: the hold can only be denied, and the agent asks again"
                    .into(),
            )
            .into());
        }
    }
    let resolution = Resolution {
        status: outcome,
        decided_by: Some(principal.key_id.clone()),
        comment,
    };
    Ok(resolve(
        g.store.as_ref(),
        &g.audit,
        &g.waiters,
        &principal.tenant(),
        &h,
        resolution,
        &principal.key_id,
    )
    .await?)
}

/// Approve a pending hold: its agent may run the call, once.
#[utoipa::path(post, path = "/api/v1/holds/{id}/approve", tag = "holds", request_body(content = Option<HoldDecision>),
    params(("id" = String, Path, description = "Hold id")),
    responses(
        (status = 200, description = "The approved hold", body = DataEnvelope<HoldView>),
        (status = 404, description = "No such hold", body = crate::http::error::ErrorEnvelope),
        (status = 409, description = "The hold is already resolved", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["holds.write"])))]
pub async fn approve_hold(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
    OptionalJson(body): OptionalJson<HoldDecision>,
) -> ApiResult<ApiData<HoldView>> {
    let h = decide(&state, &principal, &id, body, HoldStatus::Approved).await?;
    Ok(ok(
        view_with_arguments(&state, &principal, h, now_ms()).await?
    ))
}

/// Deny a pending hold.
#[utoipa::path(post, path = "/api/v1/holds/{id}/deny", tag = "holds", request_body(content = Option<HoldDecision>),
    params(("id" = String, Path, description = "Hold id")),
    responses(
        (status = 200, description = "The denied hold", body = DataEnvelope<HoldView>),
        (status = 404, description = "No such hold", body = crate::http::error::ErrorEnvelope),
        (status = 409, description = "The hold is already resolved", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["holds.write"])))]
pub async fn deny_hold(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
    OptionalJson(body): OptionalJson<HoldDecision>,
) -> ApiResult<ApiData<HoldView>> {
    let h = decide(&state, &principal, &id, body, HoldStatus::Denied).await?;
    Ok(ok(
        view_with_arguments(&state, &principal, h, now_ms()).await?
    ))
}
