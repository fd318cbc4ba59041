//! Every enforcement decision is also an agent event, so that what agents
//! do is searchable beside everything else.

use serde_json::{json, Map, Value};

use super::{flatten, Event, EventSource, Severity};
use crate::audit::{AuditKind, AuditRecord};
use crate::id::{new_time_ordered_id, prefix};

/// The `program` of decision events; with source `agent`, no ingested
/// event may carry it.
pub const DECISION_PROGRAM: &str = "warden";

/// How loud a decision is in a security team's triage.
fn severity(decision: &str, drift: f64) -> Severity {
    let by_decision = match decision {
        "deny" => Severity::Medium,
        "step_up" | "modify" => Severity::Low,
        _ => Severity::Info,
    };
    let by_drift = if drift >= 0.8 {
        Severity::High
    } else if drift >= 0.5 {
        Severity::Medium
    } else {
        Severity::Info
    };
    by_decision.max(by_drift)
}

/// The agent event for a decision record; `None` for other records.
pub fn decision_event(record: &AuditRecord) -> Option<Event> {
    if record.kind != AuditKind::Decision {
        return None;
    }
    let decision = record.decision.clone().unwrap_or_default();
    let tool = record.tool.clone().unwrap_or_default();
    let agent = record.agent_id.clone().unwrap_or_default();
    let drift = record.drift.as_ref().map(|d| d.score).unwrap_or(0.0);
    let mut fields = Map::new();
    fields.insert("tool".into(), json!(tool));
    fields.insert("decision".into(), json!(decision));
    fields.insert("audit_id".into(), json!(record.id));
    // As the audit record has it: a decision without a score (a poll's use
    // of an approval) has none here either.
    if let Some(scored) = &record.drift {
        fields.insert("drift_score".into(), json!(scored.score));
        // Its parts, searchable as `drift.new_tool:1` and the like.
        if let Ok(parts @ Value::Object(_)) = serde_json::to_value(scored) {
            fields.insert("drift".into(), parts);
        }
    }
    fields.insert(
        "matched_policy_ids".into(),
        json!(record.matched_policy_ids),
    );
    // Who asked (the key), which policy decided and at which version, and
    // the monitor-mode policies that matched: an investigation pivots on
    // each, as it does in the audit log.
    fields.insert("actor".into(), json!(record.actor));
    if let Some(policy) = &record.policy_id {
        fields.insert("policy_id".into(), json!(policy));
    }
    if let Some(version) = record.policy_version {
        fields.insert("policy_version".into(), json!(version));
    }
    if !record.monitored.is_empty() {
        let ids: Vec<&str> = record
            .monitored
            .iter()
            .map(|m| m.policy_id.as_str())
            .collect();
        fields.insert("monitored_policy_ids".into(), json!(ids));
    }
    for (name, value) in [
        ("reason", &record.reason),
        ("user_id", &record.user_id),
        ("hold_id", &record.hold_id),
    ] {
        if let Some(value) = value {
            fields.insert(name.into(), json!(value));
        }
    }
    if let Some(latency) = record.latency_us {
        fields.insert("latency_us".into(), json!(latency));
    }
    // The name the agent goes by, and what the monitor-mode policies
    // would have decided (`monitor_decision:deny` finds what a rule being
    // tried out would stop).
    for name in ["external_agent_id", "monitor_decision"] {
        if let Some(value) = record.detail.get(name).filter(|v| v.is_string()) {
            fields.insert(name.into(), value.clone());
        }
    }
    // The arguments as stored in the audit log (redacted), when they fit
    // the limits every event keeps.
    if let Some(args @ Value::Object(_)) = &record.arguments {
        let mut candidate = Map::new();
        candidate.insert("args".into(), args.clone());
        if flatten::check(&candidate).is_ok() {
            fields.extend(candidate);
        } else {
            // Said, not silently missing: a call could otherwise keep its
            // arguments out of search with one name no event can hold.
            fields.insert("args_withheld".into(), Value::Bool(true));
        }
    }
    let reason = record
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    // The name the agent goes by beside its id, so that a bare term of
    // that name finds its decisions. It and the tool's name are the
    // caller's own text, quoted so that neither can pass for the words
    // around it (a tool named `x: allow: step-up approved by …`).
    let agent = match record
        .detail
        .get("external_agent_id")
        .and_then(Value::as_str)
    {
        Some(name) => format!("{agent} ({})", Value::from(name)),
        None => agent.to_string(),
    };
    let tool = Value::from(tool.as_str());
    Some(Event {
        id: new_time_ordered_id(prefix::EVENT),
        timestamp: record.at,
        received_at: record.at,
        source: EventSource::Agent,
        host: None,
        program: Some(DECISION_PROGRAM.into()),
        severity: severity(&decision, drift),
        message: format!("agent {agent} called {tool}: {decision}{reason}"),
        agent_id: record.agent_id.clone(),
        session_id: record.session_id.clone(),
        tags: vec!["decision".into(), decision],
        fields,
    })
}
