//! `/api/v1/audit`: the tamper-evident record of every decision, hold
//! resolution and policy change.

use axum::extract::RawQuery;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use warden_core::audit::{AuditFilter, AuditKind, ChainedRecord, MonitoredOutcome};
use warden_core::page::PageRequest;

use super::enforce::DriftView;
use super::policies::DecisionName;
use super::wire::{agent_filter, parse_time_bound, time, SortDirection};
use crate::auth::Principal;
use crate::governance::verify;
use crate::http::envelope::{ok, ApiData, ApiList, DataEnvelope, ListEnvelope};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiQuery, ResourceId};
use crate::http::sealed_cursor::{filtered, SealedCursors};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuditKindName {
    Decision,
    HoldResolution,
    PolicyChange,
    AgentChange,
    KeyChange,
    SettingChange,
}

impl From<AuditKind> for AuditKindName {
    fn from(k: AuditKind) -> Self {
        match k {
            AuditKind::Decision => AuditKindName::Decision,
            AuditKind::HoldResolution => AuditKindName::HoldResolution,
            AuditKind::PolicyChange => AuditKindName::PolicyChange,
            AuditKind::AgentChange => AuditKindName::AgentChange,
            AuditKind::KeyChange => AuditKindName::KeyChange,
            AuditKind::SettingChange => AuditKindName::SettingChange,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MonitoredView {
    pub policy_id: String,
    pub decision: String,
}

/// One audit record with its place in the hash chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    #[schema(example = "aud_0f3b5c2e9d8a7b6c5d4e3f2a")]
    pub id: String,
    pub sequence: i64,
    pub kind: AuditKindName,
    #[schema(format = DateTime)]
    pub at: String,
    /// The key that made the request, or `cli` for a change made at the
    /// host's console (`warden keys`).
    pub actor: String,
    pub agent_id: Option<String>,
    pub tool: Option<String>,
    /// The call's arguments with redacted fields replaced by `[REDACTED]`.
    #[schema(value_type = Option<Object>)]
    pub arguments: Option<Value>,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub matched_policy_ids: Vec<String>,
    /// What `monitor` policies would have decided.
    pub monitored: Vec<MonitoredView>,
    pub drift: Option<DriftView>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub latency_us: Option<i64>,
    pub hold_id: Option<String>,
    pub policy_id: Option<String>,
    pub policy_version: Option<i64>,
    /// The behavioural context: previous tool in the session, the caller's
    /// context, a hold's comment, a policy's text.
    #[schema(value_type = Object)]
    pub detail: Value,
    pub previous_hash: String,
    pub hash: String,
    /// With `?canonical=true`: the record's canonical JSON exactly as it
    /// was hashed (`docs/enforcement.md`), for an auditor to recompute
    /// `hash` without rebuilding the text from this view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical: Option<String>,
}

impl AuditView {
    /// The view, with its canonical text when `canonical` is asked for.
    fn of(c: ChainedRecord, canonical: bool) -> Self {
        let text = canonical.then(|| c.canonical.clone());
        AuditView {
            canonical: text,
            ..c.into()
        }
    }
}

impl From<ChainedRecord> for AuditView {
    fn from(c: ChainedRecord) -> Self {
        let r = c.record;
        AuditView {
            id: r.id,
            sequence: c.sequence,
            kind: r.kind.into(),
            at: time(r.at),
            actor: r.actor,
            agent_id: r.agent_id,
            tool: r.tool,
            arguments: r.arguments,
            decision: r.decision,
            reason: r.reason,
            matched_policy_ids: r.matched_policy_ids,
            monitored: r
                .monitored
                .into_iter()
                .map(
                    |MonitoredOutcome {
                         policy_id,
                         decision,
                     }| MonitoredView {
                        policy_id,
                        decision,
                    },
                )
                .collect(),
            drift: r.drift.map(Into::into),
            session_id: r.session_id,
            user_id: r.user_id,
            latency_us: r.latency_us,
            hold_id: r.hold_id,
            policy_id: r.policy_id,
            policy_version: r.policy_version,
            detail: r.detail,
            previous_hash: c.previous_hash,
            hash: c.hash,
            canonical: None,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListAudit {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// `desc` (default, newest first) or `asc`.
    pub direction: Option<SortDirection>,
    pub agent_id: Option<String>,
    /// A tool glob: `payments.*`.
    pub action: Option<String>,
    pub decision: Option<DecisionName>,
    pub session_id: Option<String>,
    pub kind: Option<AuditKindName>,
    /// Only records whose drift score is at least this (0 to 1; 0 filters
    /// nothing, above 0 keeps only scored records, which are decisions).
    #[param(minimum = 0, maximum = 1)]
    pub min_drift: Option<f64>,
    /// From this time, inclusive (RFC 3339, a date, a number since 1970, or `now-1h`).
    #[param(min_length = 1)]
    pub from: Option<String>,
    /// Before this time, exclusive (written as `from`).
    #[param(min_length = 1)]
    pub to: Option<String>,
    /// The user a call was made for (`user_id` as enforcement took it).
    #[param(min_length = 1, max_length = 200)]
    pub user_id: Option<String>,
    /// Who the record names as acting: a key's id, or `system`.
    #[param(min_length = 1, max_length = 200)]
    pub actor: Option<String>,
    /// The policy that decided (or the one a change is about).
    #[param(min_length = 1, max_length = 200)]
    pub policy_id: Option<String>,
    /// The hold a decision made or used, or a resolution resolved.
    #[param(min_length = 1, max_length = 200)]
    pub hold_id: Option<String>,
    /// Adds each record's canonical JSON as hashed (`canonical`).
    pub canonical: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetAudit {
    /// Adds the record's canonical JSON as hashed (`canonical`).
    pub canonical: Option<bool>,
}

/// Search the audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(ListAudit),
    responses((status = 200, description = "A page of audit records", body = ListEnvelope<AuditView>)),
    security(("bearer" = ["audit.read"])))]
pub async fn list_audit(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListAudit>,
    RawQuery(raw): RawQuery,
) -> ApiResult<ApiList<AuditView>> {
    principal.require("audit.read")?;
    let cursors = SealedCursors::new(
        &state.master,
        &principal.tenant(),
        &filtered("audit", raw.as_deref()),
    );
    let page = PageRequest::new(
        q.limit,
        cursors.open_opt(q.cursor.as_deref())?.as_deref(),
        None,
        q.direction.map(Into::into),
        &["sequence"],
    )?;
    if let Some(d) = q.min_drift {
        if !(0.0..=1.0).contains(&d) {
            return Err(ApiError::invalid(
                "min_drift",
                "min_drift is between 0 and 1",
            ));
        }
    }
    if let Some(a) = &q.action {
        // The same globs as policies' action_pattern, refused the same way.
        if let Err(e) = warden_policy::ToolPattern::parse(a) {
            return Err(ApiError::invalid("action", format!("action: {e}")));
        }
    }
    let agent_id = agent_filter(&state, &principal, q.agent_id).await?;
    // An empty filter is a mistake (a variable left unset), refused as
    // `agent_id=` is, rather than a filter that matches nothing.
    // Names matched exactly, each at most what enforcement and ids take
    // (a tool glob is bounded as tool names are, by its pattern).
    let exact = [
        ("session_id", &q.session_id),
        ("user_id", &q.user_id),
        ("actor", &q.actor),
        ("policy_id", &q.policy_id),
        ("hold_id", &q.hold_id),
    ];
    for (field, value) in std::iter::once(("action", &q.action)).chain(exact) {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(ApiError::invalid(
                field,
                format!("{field} must not be empty"),
            ));
        }
    }
    for (field, value) in exact {
        if value.as_deref().is_some_and(|v| v.chars().count() > 200) {
            return Err(ApiError::invalid(
                field,
                format!("{field} must be at most 200 characters"),
            ));
        }
    }
    // A threshold of 0 is no filter (a console's slider at rest): every
    // record passes, those without a score (hold resolutions, changes)
    // too; above 0 only the records scored at least that.
    let min_drift = q.min_drift.filter(|d| *d > 0.0);
    let filter = AuditFilter {
        agent_id,
        action: q.action,
        decision: q.decision.map(|d| d.as_str().to_string()),
        session_id: q.session_id,
        kind: q.kind.map(|k| match k {
            AuditKindName::Decision => AuditKind::Decision,
            AuditKindName::HoldResolution => AuditKind::HoldResolution,
            AuditKindName::PolicyChange => AuditKind::PolicyChange,
            AuditKindName::AgentChange => AuditKind::AgentChange,
            AuditKindName::KeyChange => AuditKind::KeyChange,
            AuditKindName::SettingChange => AuditKind::SettingChange,
        }),
        // Scores are stored in millionths: the store returns every record
        // that may reach the threshold, and the exact score decides below.
        min_drift_micros: min_drift.map(|d| (d * 1_000_000.0).floor() as i64),
        from: parse_time_bound("from", q.from.as_deref())?,
        to: parse_time_bound("to", q.to.as_deref())?,
        user_id: q.user_id,
        actor: q.actor,
        policy_id: q.policy_id,
        hold_id: q.hold_id,
    };
    if let (Some(from), Some(to)) = (filter.from, filter.to) {
        if from >= to {
            return Err(ApiError::invalid("to", "to must be after from"));
        }
    }
    let page = state
        .store
        .list_audit(&principal.tenant(), &filter, &page)
        .await?;
    let reaches = |r: &ChainedRecord| {
        min_drift.is_none_or(|min| r.record.drift.as_ref().is_some_and(|d| d.score >= min))
    };
    Ok(ApiList(
        page.items
            .into_iter()
            .filter(reaches)
            .map(|r| AuditView::of(r, q.canonical.unwrap_or(false)))
            .collect(),
        cursors.seal_opt(page.next_cursor),
    ))
}

/// One audit record with its full behavioural context.
#[utoipa::path(get, path = "/api/v1/audit/{id}", tag = "audit",
    params(("id" = String, Path, description = "Audit record id"), GetAudit),
    responses(
        (status = 200, description = "The record", body = DataEnvelope<AuditView>),
        (status = 404, description = "No such record", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["audit.read"])))]
pub async fn get_audit(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
    ApiQuery(q): ApiQuery<GetAudit>,
) -> ApiResult<ApiData<AuditView>> {
    principal.require("audit.read")?;
    let record = state
        .store
        .get_audit(&principal.tenant(), &id)
        .await?
        .filter(|r| {
            principal
                .agent_id
                .as_deref()
                .is_none_or(|a| r.record.agent_id.as_deref() == Some(a))
        })
        .ok_or_else(|| ApiError::not_found("audit record"))?;
    Ok(ok(AuditView::of(record, q.canonical.unwrap_or(false))))
}

/// Where the chain first stops matching.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainBreakView {
    pub sequence: i64,
    /// Null where no record stands at the break (records missing at the
    /// end, or past the head).
    pub audit_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationView {
    /// True when every record matches its hash and its predecessor.
    pub valid: bool,
    pub records_checked: i64,
    /// The sequence number of the chain's last record.
    pub head_sequence: i64,
    /// The last record's hash, where the chain is valid: kept elsewhere
    /// with `head_sequence`, it is an anchor to verify against later.
    pub head_hash: Option<String>,
    pub first_break: Option<ChainBreakView>,
}

/// An anchor copied out of an earlier verification.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// A sequence number whose hash was kept elsewhere (with `anchor_hash`).
    #[param(minimum = 1)]
    pub anchor_sequence: Option<i64>,
    /// The hash kept for `anchor_sequence` (64 hexadecimal digits).
    #[param(pattern = "^[0-9a-fA-F]{64}$")]
    pub anchor_hash: Option<String>,
    /// Walk from the anchor's record rather than the first: a scheduled
    /// check that passes the last answer's head as its anchor reads only
    /// what was appended since.
    pub from_anchor: Option<bool>,
}

/// Re-walk this environment's audit chain and name the first record that
/// does not match.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", params(VerifyQuery),
    responses((status = 200, description = "The verification", body = DataEnvelope<VerificationView>)),
    security(("bearer" = ["audit.read"])))]
pub async fn verify_audit(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> ApiResult<ApiData<VerificationView>> {
    principal.require("audit.read")?;
    if principal.agent_id.is_some() {
        return Err(ApiError::forbidden(
            "a key bound to an agent cannot verify the whole chain",
        ));
    }
    let from_anchor = q.from_anchor.unwrap_or(false);
    let anchor = anchor(q)?;
    if from_anchor && anchor.is_none() {
        return Err(ApiError::invalid(
            "from_anchor",
            "from_anchor needs anchor_sequence and anchor_hash: the record to walk from",
        ));
    }
    let tenant = principal.tenant();
    let from = anchor.as_ref().filter(|_| from_anchor);
    let sealer = state.master.chain_sealer();
    let mut v = verify::verify(state.store.as_ref(), &tenant, from, &sealer).await?;
    if let (Some(anchor), None) = (&anchor, from) {
        verify::check_anchor(state.store.as_ref(), &tenant, anchor, &mut v).await?;
    }
    Ok(ok(VerificationView {
        valid: v.first_break.is_none(),
        records_checked: v.records_checked,
        head_sequence: v.head_sequence,
        head_hash: v.head_hash,
        first_break: v.first_break.map(|b| ChainBreakView {
            sequence: b.sequence,
            audit_id: b.audit_id,
            reason: b.reason.to_string(),
        }),
    }))
}

/// The anchor of a verification: both parameters or neither.
fn anchor(q: VerifyQuery) -> Result<Option<verify::Anchor>, ApiError> {
    match (q.anchor_sequence, q.anchor_hash) {
        (None, None) => Ok(None),
        (Some(sequence), Some(hash)) => {
            if sequence < 1 {
                return Err(ApiError::invalid(
                    "anchor_sequence",
                    "anchor_sequence is a record's sequence number, 1 or more",
                ));
            }
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::invalid(
                    "anchor_hash",
                    "anchor_hash is a record's hash: 64 hexadecimal digits",
                ));
            }
            Ok(Some(verify::Anchor { sequence, hash }))
        }
        (Some(_), None) => Err(ApiError::invalid(
            "anchor_hash",
            "anchor_hash is required with anchor_sequence",
        )),
        (None, Some(_)) => Err(ApiError::invalid(
            "anchor_sequence",
            "anchor_sequence is required with anchor_hash",
        )),
    }
}
