//! The Thoth SDK's wire format over the same enforcement service, so that
//! agents instrumented with `aten-thoth` work by pointing `THOTH_API_URL`
//! at Warden: `POST /v1/enforce` and `GET /v1/enforce/hold/{token}`,
//! answered without the envelope, decisions in capitals.

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::Extension;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use warden_policy::Decision;

use warden_core::event::flatten::check as check_fields;
use warden_core::event::input::{check_keyword, parse_time};
use warden_core::event::limits::MAX_BATCH_EVENTS;
use warden_core::event::{Event, EventSource, Severity};
use warden_core::hold::HoldStatus;
use warden_core::id::{new_time_ordered_id, prefix};
use warden_core::time::now_ms;

use super::enforce::{poll_hold, WaitQuery};
use super::events::{store_events, Accepted};
use crate::auth::Principal;
use crate::governance::enforce::{self as service, CallRequest};
use crate::governance::enforce::{discover, Discovery};
use crate::governance::holds::{approval_stands, use_by_poll};
use crate::http::envelope::ApiData;
use crate::http::error::ApiResult;
use crate::http::error::{ApiError, ItemError};
use crate::http::extract::{AnyJson, ApiQuery, ResourceId, UniqueJson};
use crate::http::peer::PeerLink;
use crate::http::unique_keys::UniqueKeys;
use crate::state::AppState;
use crate::telemetry::ingest::bind_to_agent;

/// The Thoth SDK's enforcement request. Fields Warden has no use for as
/// such (`tenant_id`, `approved_scope`, `enforcement_mode`, `environment`,
/// `session_intent`, `enforcement_trace_id`) reach policies as `context`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ThothEnforceRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub agent_id: String,
    #[schema(min_length = 1, max_length = 256)]
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
    #[schema(example = "ALLOW", value_type = ThothDecisionName)]
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

/// The Thoth SDK's decisions, for the document.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ThothDecisionName {
    Allow,
    Block,
    StepUp,
    Modify,
}

/// The SDK's batch as the document gives it: a JSON array of events, or
/// an object whose `events` is one.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum ThothEventBatch {
    Events(Vec<SdkEvent>),
    Wrapped(WrappedSdkEvents),
}

/// One of the SDK's events: a JSON object.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
#[schema(value_type = Object)]
pub struct SdkEvent(Value);

/// `{"events": […]}`.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct WrappedSdkEvents {
    events: Vec<SdkEvent>,
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
    responses(
        (status = 200, description = "The decision, recorded", body = ThothDecision),
        (status = 404, description = "No agent has this Warden id (`agt_…`)", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["enforce"])))]
pub async fn thoth_enforce(
    State(state): State<AppState>,
    principal: Principal,
    UniqueJson(body): UniqueJson<ThothEnforceRequest>,
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
    let v = service::enforce(&state.governance, &principal, call)
        .await
        .map_err(super::enforce::agent_named)?;
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
    #[schema(value_type = Option<ThothResolution>)]
    pub resolution: Option<String>,
    /// `pending`, `approved`, `denied` or `expired`.
    #[schema(value_type = super::enforce::HoldStatusName)]
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
    method: Method,
    headers: HeaderMap,
    peer: Option<Extension<PeerLink>>,
    ResourceId(token): ResourceId,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<ThothHold>> {
    let polled = poll_hold(&state, &principal, &headers, peer, &token, q.wait).await?;
    let h = polled.hold;
    // The SDK runs the call as soon as its poll answers ALLOW, without
    // asking again: that answer is the approval's one use, audited as a
    // decision. Once used, by a poll or by a re-submission of the call,
    // the approval answers BLOCK, so one approval never runs the call
    // twice. What happened since the approval (a suspension, a changed
    // policy) is checked first, as a re-submission would be decided. An
    // approval not used within the hold's timeout answers BLOCK and stays
    // unused.
    let now = now_ms();
    let status = h.status_at(now);
    let block = |why: String| {
        Json(ThothHold {
            resolved: true,
            resolution: Some("BLOCK".into()),
            status: status.as_str().into(),
            reason: Some(why),
            decided_by: h.decided_by.clone(),
        })
    };
    if status == HoldStatus::Approved && (polled.abandoned || method == Method::HEAD) {
        // The client that waited is gone, or asked for no answer (`HEAD`,
        // as a proxy's or a monitor's check does): the approval stays for
        // its next poll (or a re-submission) rather than being spent
        // unread.
        return Ok(Json(ThothHold {
            resolved: false,
            resolution: None,
            status: status.as_str().into(),
            reason: Some("approved; poll again to use the approval".into()),
            decided_by: h.decided_by.clone(),
        }));
    }
    if status == HoldStatus::Approved {
        if h.redeemed_at.is_some() {
            return Ok(block("the hold's approval was already used".into()));
        }
        let tenant = principal.tenant();
        let g = &state.governance;
        if let Err(why) = approval_stands(g, &tenant, &h).await? {
            return Ok(block(why));
        }
        if let Err(why) = use_by_poll(g, &tenant, &principal.key_id, &h).await? {
            return Ok(block(why));
        }
    }
    let state = super::enforce::hold_state(&h, now);
    let reason = if h.approval_expired(now) {
        Some(format!("the approval {}; ask again", h.approval_end(now)))
    } else if status == HoldStatus::Expired {
        Some("step-up expired without an approval".to_string())
    } else if matches!(status, HoldStatus::Denied | HoldStatus::Approved) {
        // Said as a decision, the approver's words quoted after it (never
        // alone: free text could read as the other resolution).
        let by = h.decided_by.as_deref().unwrap_or("an approver");
        let verb = if status == HoldStatus::Denied {
            "denied"
        } else {
            "approved"
        };
        Some(match h.comment.as_deref().filter(|c| !c.is_empty()) {
            Some(comment) => format!("step-up {verb} by {by}: {comment}"),
            None => format!("step-up {verb} by {by}"),
        })
    } else {
        None
    };
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
        status: status.as_str().into(),
        reason,
        decided_by: h.decided_by,
    }))
}

/// The SDK's tool events carry the call's arguments (`metadata.tool_args`
/// and `metadata.tool_call.arguments`; other SDKs nest them as OpenAI's
/// `function.arguments`, or list several `tool_calls`, and some send the
/// arguments as a JSON string): the fields policies redact from audit
/// records are redacted in each of these before storage, for the event's
/// tool and every tool its metadata names.
fn redact_tool_arguments(
    policies: &crate::governance::engine::TenantPolicies,
    event: &mut Event,
    agent_id: &str,
    alias: Option<&str>,
    tags: &[String],
) {
    fn names(call: &Value) -> Vec<String> {
        [call.get("name"), call.pointer("/function/name")]
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }
    let mut tools: Vec<String> = event
        .fields
        .get("tool")
        .and_then(Value::as_str)
        .map(str::to_string)
        .into_iter()
        .collect();
    if let Some(Value::Object(metadata)) = event.fields.get_mut("metadata") {
        for call in described_calls(metadata) {
            tools.extend(names(call));
        }
    }
    tools.sort();
    tools.dedup();
    let paths: Vec<&warden_policy::ArgPath> = tools
        .iter()
        .flat_map(|tool| policies.redactions(tool, agent_id, alias, tags).arguments)
        .collect();
    if paths.is_empty() {
        return;
    }
    // Arguments sent as a JSON string are redacted inside it by the paths
    // themselves (withheld whole when that cannot be done exactly).
    // The event's redactions share one bound on their work.
    let work = warden_policy::ChangeWork::default();
    let redact = |args: &mut Value| {
        for path in &paths {
            path.redact_within(args, &work);
        }
    };
    for key in ["tool_args", "arguments"] {
        if let Some(args) = event.fields.get_mut(key) {
            redact(args);
        }
    }
    if let Some(Value::Object(metadata)) = event.fields.get_mut("metadata") {
        if let Some(args) = metadata.get_mut("tool_args") {
            redact(args);
        }
        for call in described_calls(metadata) {
            for pointer in ["/arguments", "/function/arguments"] {
                if let Some(args) = call.pointer_mut(pointer) {
                    redact(args);
                }
            }
        }
    }
}

/// Where tool calls are described in a Thoth event's metadata: its own
/// call, and each of a list of them.
fn described_calls(metadata: &mut Map<String, Value>) -> Vec<&mut Value> {
    let mut found = Vec::new();
    for (name, value) in metadata.iter_mut() {
        match (name.as_str(), value) {
            ("tool_calls", Value::Array(items)) => found.extend(items.iter_mut()),
            ("tool_call", call) => found.push(call),
            _ => {}
        }
    }
    found
}

/// The names of the tool calls an event's metadata describes, with their
/// paths: `tool_call` and each of `tool_calls`, by `name` or OpenAI's
/// `function.name` (as [`redact_tool_arguments`] reads them).
fn described_tool_names(metadata: &Map<String, Value>) -> Vec<(String, &str)> {
    let mut calls: Vec<(String, &Value)> = Vec::new();
    if let Some(call) = metadata.get("tool_call") {
        calls.push(("metadata.tool_call".into(), call));
    }
    if let Some(Value::Array(items)) = metadata.get("tool_calls") {
        for (i, call) in items.iter().enumerate() {
            calls.push((format!("metadata.tool_calls[{i}]"), call));
        }
    }
    let mut names = Vec::new();
    for (path, call) in calls {
        for (pointer, suffix) in [("/name", "name"), ("/function/name", "function.name")] {
            if let Some(Value::String(name)) = call.pointer(pointer) {
                names.push((format!("{path}.{suffix}"), name.as_str()));
            }
        }
    }
    names
}

/// Takes the call's arguments out of a Thoth event's fields, wherever the
/// SDK or another framework puts them (as [`redact_tool_arguments`] finds
/// them), and marks the event `args_withheld`; false when it held none.
fn withhold_arguments(object: &mut Map<String, Value>) -> bool {
    let mut withheld = false;
    for key in ["tool_args", "arguments"] {
        withheld |= object.remove(key).is_some();
    }
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        withheld |= metadata.remove("tool_args").is_some();
        for call in described_calls(metadata) {
            if let Some(call) = call.as_object_mut() {
                withheld |= call.remove("arguments").is_some();
                if let Some(Value::Object(function)) = call.get_mut("function") {
                    withheld |= function.remove("arguments").is_some();
                }
            }
        }
    }
    if withheld {
        object.insert("args_withheld".into(), Value::Bool(true));
    }
    withheld
}

/// An event's refusal as its field and message (`field` when the error
/// names none).
fn field_error(field: &str) -> impl FnOnce(warden_core::Error) -> (String, String) + '_ {
    move |e| match e {
        warden_core::Error::Invalid { field, message } => (field, message),
        other => (field.to_string(), other.to_string()),
    }
}

/// Maps one of the SDK's `BehavioralEvent`s to an agent event.
fn thoth_event(value: Value, id: String, received_at: i64) -> Result<Event, (String, String)> {
    let Value::Object(mut object) = value else {
        return Err((String::new(), "an event must be a JSON object".into()));
    };
    let text =
        |object: &mut Map<String, Value>, name: &str| -> Result<Option<String>, (String, String)> {
            match object.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if name == "content" => Ok(Some(s)),
                // Stored as keywords (the tool name has its own rule), held
                // to the batch route's rules for them.
                Some(Value::String(s)) if name == "tool_name" => Ok(Some(s)),
                Some(Value::String(s)) => match check_keyword(name, &s) {
                    Ok(()) => Ok(Some(s)),
                    Err(e) => Err((e.field, e.message)),
                },
                Some(_) => Err((name.into(), "must be a string".into())),
            }
        };
    let timestamp = match object.remove("occurred_at") {
        None | Some(Value::Null) => received_at,
        Some(v) => parse_time(&v).ok_or_else(|| {
            (
                "occurred_at".to_string(),
                "must be an RFC 3339 time or a number since 1970 (seconds to nanoseconds), \
                 from 1970 to 9999"
                    .to_string(),
            )
        })?,
    };
    let event_type = text(&mut object, "event_type")?.unwrap_or_default();
    let tool = text(&mut object, "tool_name")?.unwrap_or_default();
    // Held to the rule enforcement holds a tool name to: policies (and the
    // redactions they name for the event's arguments) match such a name
    // only, so a padded or invisible-laden one would slip past them.
    let tool_name = |name: &str, field: &str| {
        crate::governance::enforce::check_tool_name(name, field).map_err(field_error(field))
    };
    if !tool.is_empty() {
        tool_name(&tool, "tool_name")?;
    }
    // So are the names of the calls its metadata describes: the
    // redactions for each call's arguments are found by its name.
    if let Some(Value::Object(metadata)) = object.get("metadata") {
        for (field, name) in described_tool_names(metadata) {
            tool_name(name, &field)?;
        }
    }
    let content = text(&mut object, "content")?.unwrap_or_default();
    let agent_id = text(&mut object, "agent_id")?;
    // Held to the rule for the agent ids a call names: the policies whose
    // selectors (and redactions) take in this agent find it by that name
    // only, so a decomposed spelling would pass them.
    if let Some(agent) = &agent_id {
        warden_core::agent::check_reference(agent, "agent_id").map_err(field_error("agent_id"))?;
    }
    let session_id = text(&mut object, "session_id")?;
    let host = text(&mut object, "hostname")?;
    // The key's organization decides the tenant; the chain fields are the
    // SDK's own and carry nothing to search.
    for ignored in [
        "tenant_id",
        "ttl",
        "ingested_at",
        "chain_index",
        "hash",
        "previous_hash",
        "signature",
    ] {
        object.remove(ignored);
    }
    if let Some(event_id) = object.remove("event_id") {
        object.insert("thoth_event_id".into(), event_id);
    }
    // The SDK sends a session's whole history with every event; a long
    // session would pass the fields' bounds and lose all its events. The
    // latest calls are kept, as enforcement keeps them, with the count.
    let limit = crate::governance::enforce::CALLER_SESSION_TOOLS;
    if let Some(Value::Array(history)) = object.get_mut("session_tool_calls") {
        if history.len() > limit {
            let total = history.len();
            history.drain(..total - limit);
            object.insert("session_tool_call_count".into(), Value::from(total));
        }
    }
    object.insert("event_type".into(), Value::String(event_type.clone()));
    if !tool.is_empty() {
        object.insert("tool".into(), Value::String(tool.clone()));
    }
    if let Err(refused) = check_fields(&object) {
        // Arguments are the caller's to shape: one that no event can hold
        // (an empty or overlong name, thousands of values) would lose this
        // event and, as the SDK sends them, the batch's other events. They
        // are withheld, and said to be, as decisions' events withhold them.
        // Refused for what stands without them, when that is still past
        // the bounds (the first error may lie in what was withheld).
        let still = if withhold_arguments(&mut object) {
            check_fields(&object).err()
        } else {
            Some(refused)
        };
        if let Some((path, message)) = still {
            return Err((format!("fields.{path}"), message));
        }
    }
    let message = if content.is_empty() {
        format!("{event_type} {tool}").trim().to_string()
    } else {
        content
    };
    Ok(Event {
        id,
        timestamp,
        received_at,
        source: EventSource::Agent,
        host,
        program: Some("thoth".into()),
        severity: if event_type == "TOOL_CALL_BLOCK" {
            Severity::Medium
        } else {
            Severity::Info
        },
        message,
        agent_id,
        session_id,
        tags: if event_type.is_empty() {
            Vec::new()
        } else {
            vec![event_type.to_ascii_lowercase()]
        },
        fields: object,
    })
}

/// Ingest the SDK's telemetry (Thoth SDK format).
///
/// A JSON array of the SDK's behavioural events (or an object whose
/// `events` is one), stored as agent events.
/// Needs `events.ingest` (or `events.write`), or `enforce` (the scope an instrumented agent's
/// key already has). An `agent_id` that is an agent's `external_id` is
/// stored as that agent's Warden id.
#[utoipa::path(post, path = "/v1/events/batch", tag = "thoth",
    request_body(content = ThothEventBatch, description = "The SDK's events"),
    responses((status = 202, description = "Every event is stored", body = crate::http::envelope::DataEnvelope<super::events::Accepted>)),
    security(("bearer" = ["events.ingest"]), ("bearer" = ["enforce"])))]
pub async fn thoth_events(
    State(state): State<AppState>,
    principal: Principal,
    claim: Option<axum::Extension<crate::idempotency::Claim>>,
    AnyJson(UniqueKeys(body)): AnyJson<UniqueKeys>,
) -> ApiResult<ApiData<Accepted>> {
    // An instrumented agent's key (`enforce`) sends its events too; a key
    // with neither is told of the ingest scope.
    if principal.require("enforce").is_err()
        && principal.require(warden_core::scope::INGEST).is_err()
    {
        return Err(ApiError::forbidden(
            "this operation needs the `events.ingest` or `enforce` scope",
        )
        .with_field("events.ingest"));
    }
    let items = match body {
        Value::Array(items) => items,
        Value::Object(mut o) if o.get("events").is_some_and(Value::is_array) => {
            match o.remove("events") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "events",
                "the body is a JSON array of events",
            ))
        }
    };
    if items.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::invalid(
            "events",
            format!("a batch holds at most {MAX_BATCH_EVENTS} events"),
        ));
    }
    let received_at = now_ms();
    let map = |items: Vec<Value>| {
        let mut events = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match thoth_event(item, new_time_ordered_id(prefix::EVENT), received_at) {
                Ok(event) => events.push(event),
                Err((field, message)) => errors.push(ItemError {
                    index: Some(index),
                    line: None,
                    field,
                    message,
                }),
            }
        }
        (events, errors)
    };
    // The SDK's batches are ten events; thousands are mapped aside.
    let heavy = items.len() >= crate::heavy_work::HEAVY_EVENTS;
    let (mut events, errors) = crate::heavy_work::off_workers_if(heavy, || map(items));
    if !errors.is_empty() {
        return Err(ApiError::invalid_items(
            format!(
                "{} of the batch's events are invalid; nothing was stored",
                errors.len()
            ),
            errors.len(),
            errors.into_iter().take(100).collect(),
        ));
    }
    // The SDK names agents by their external id; store Warden's id.
    let tenant = principal.tenant();
    let policies = state.governance.engine.policies(&tenant).await?;
    let mut known: std::collections::HashMap<String, Option<warden_core::agent::Agent>> =
        Default::default();
    for event in &mut events {
        // A key bound to an agent speaks for that agent whatever the event
        // says (below), and its policies' redactions are that agent's.
        let Some(reference) = principal.agent_id.clone().or(event.agent_id.clone()) else {
            redact_tool_arguments(&policies, event, "", None, &[]);
            continue;
        };
        if !known.contains_key(&reference) {
            let mut found = state.store.find_agent(&tenant, &reference).await?;
            // An agent's first events often arrive before its first
            // enforcement (the SDK sends both at once, or only events in
            // observe mode): it is discovered here as it would be there,
            // so every event of it carries its Warden id.
            if found.is_none()
                && principal.agent_id.is_none()
                && !crate::governance::enforce::looks_like_agent_id(&reference)
            {
                // A name no agent can carry (too long, say) stays as sent.
                let g = &state.governance;
                let how = Discovery::Event {
                    actor: &principal.key_id,
                };
                found = discover(g, &tenant, &reference, how).await.ok();
            }
            known.insert(reference.clone(), found);
        }
        match known.get(&reference) {
            Some(Some(agent)) => {
                if reference != agent.id {
                    event
                        .fields
                        .insert("external_agent_id".into(), Value::String(reference.clone()));
                }
                event.agent_id = Some(agent.id.clone());
                let alias = agent.external_id.as_deref();
                redact_tool_arguments(&policies, event, &agent.id, alias, &agent.tags);
            }
            // An agent Warden has not met yet: policies for every agent,
            // or naming this reference, still apply.
            _ => redact_tool_arguments(&policies, event, &reference, Some(&reference), &[]),
        }
    }
    bind_to_agent(&principal, &mut events);
    if events.is_empty() {
        return Ok(ApiData(
            axum::http::StatusCode::ACCEPTED,
            Accepted {
                accepted: 0,
                ids: Vec::new(),
            },
        ));
    }
    store_events(&state, &principal, events, claim.as_deref()).await
}

/// A resolved hold's answer in the SDK's words, as the document names it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
#[allow(dead_code)] // Names the values in the OpenAPI document only.
pub enum ThothResolution {
    Allow,
    Block,
}
