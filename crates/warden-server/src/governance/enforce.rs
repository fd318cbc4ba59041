//! The decision on one tool call: who is asking, what the policies say,
//! how far the call drifts, the audit record, and a hold for step-up.

use std::time::Instant;

use serde_json::{json, Value};
use warden_core::agent::{Agent, AgentChanges, AgentStatus};
use warden_core::audit::{AuditKind, AuditRecord, MonitoredOutcome};
use warden_core::event::syslog::{may_hold_credential_in, scrub_credentials_in};
use warden_core::hold::{self, Hold, HoldStatus};
use warden_core::id::{new_id, new_time_ordered_id, prefix};
use warden_core::time::now_ms;
use warden_core::Error;
use warden_policy::drift::{DriftScore, Observation};
use warden_policy::{CallFacts, ConditionInput, Decision};
use warden_store::Companion;

use super::audit_log::AppendError;
use super::drift::{argument_keys, SessionSoFar};
use super::engine::TenantPolicies;
use super::holds::append_error;
use super::Governance;
use crate::auth::Principal;
use crate::services::ServiceResult;

pub const MAX_TOOL_NAME: usize = 256;

/// What a decision's audit record keeps of a condition's error when the
/// call carried redacted arguments or context: the error's own text could
/// quote them.
pub const WITHHELD_ERROR: &str =
    "the condition failed to evaluate; its message is withheld because the call had redacted arguments or context";

/// A call an agent is about to make.
#[derive(Debug, Clone, Default)]
pub struct CallRequest {
    /// The agent's Warden id or its `external_id`.
    pub agent: String,
    pub tool: String,
    pub args: Option<Value>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub context: Option<Value>,
    /// Redeems an approved step-up hold for this exact call.
    pub hold_token: Option<String>,
    /// Tools called earlier in the session, as the caller counts them.
    pub session_tools: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: Decision,
    pub reason: String,
    pub matched_policy_ids: Vec<String>,
    pub hold_token: Option<String>,
    pub hold_id: Option<String>,
    pub hold_expires_at: Option<i64>,
    pub modified_tool_args: Option<Value>,
    pub drift: DriftScore,
    pub audit_id: String,
    pub agent_id: String,
    pub latency_ms: f64,
    /// What the `monitor` policies would have decided, when one matched.
    pub monitor_decision: Option<Decision>,
    pub step_up_timeout_seconds: Option<u32>,
}

/// Lengths are counted in characters, as the API's documented
/// `maxLength` counts them (and agent ids are counted).
fn check_text(value: &str, field: &str, max: usize) -> Result<(), Error> {
    if value.is_empty() || value.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    warden_core::agent::refuse_control(value, field)
}

/// A tool name as patterns match it: no invisible characters, and not
/// blank or padded with spaces.
pub(crate) fn check_tool_name(value: &str, field: &str) -> Result<(), Error> {
    check_text(value, field, MAX_TOOL_NAME)?;
    warden_core::agent::visible(value, field)?;
    warden_core::agent::refuse_padding(value, field)
}

impl CallRequest {
    pub fn validate(&self) -> Result<(), Error> {
        // An unknown id registers an agent by that name: one with an
        // invisible character would look like a registered agent while
        // escaping every selector written for it.
        warden_core::agent::check_reference(&self.agent, "agent_id")?;
        check_tool_name(&self.tool, "tool_name")?;
        // The caller's own account of the session (the Thoth SDK sends its
        // whole history): each entry becomes `session.tools` and drift's
        // transition, so each is held to the rules of a tool name.
        for (i, tool) in self.session_tools.iter().flatten().enumerate() {
            check_tool_name(tool, &format!("session_tool_calls[{i}]"))?;
        }
        // Shown to the person approving a hold and used as audit filters:
        // a session or user that only looks like another is refused.
        if let Some(s) = &self.session_id {
            check_text(s, "session_id", 200)?;
            warden_core::agent::visible(s, "session_id")?;
        }
        if let Some(u) = &self.user_id {
            check_text(u, "user_id", 200)?;
            warden_core::agent::visible(u, "user_id")?;
        }
        // Held to the rules of the ids beside it, though a token that
        // names no hold is only looked up (and denied when a policy holds
        // the call).
        if let Some(t) = self.hold_token.as_deref().filter(|t| !t.is_empty()) {
            check_text(t, "hold_token", 200)?;
            if let Some(c) = t.chars().find(|c| !c.is_ascii_graphic()) {
                return Err(Error::invalid(
                    "hold_token",
                    format!(
                        "hold_token must be visible ASCII without spaces, as Warden hands it out \
                         (U+{:04X})",
                        c as u32
                    ),
                ));
            }
        }
        for (field, v) in [("tool_args", &self.args), ("context", &self.context)] {
            if let Some(v) = v {
                if !(v.is_object() || v.is_null()) {
                    return Err(Error::invalid(
                        field,
                        format!("{field} must be a JSON object"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Finds the calling agent, registering an unknown one as `discovered`.
async fn resolve_agent(
    g: &Governance,
    principal: &Principal,
    reference: &str,
    fresh: bool,
) -> ServiceResult<(Agent, bool)> {
    let tenant = principal.tenant();
    let mut discovered = false;
    let found = if fresh {
        g.agents
            .find_fresh(g.store.as_ref(), &tenant, reference)
            .await?
    } else {
        g.agents.find(g.store.as_ref(), &tenant, reference).await?
    };
    let agent = match found {
        Some(a) => a,
        None if principal.agent_id.is_some() => {
            log_impersonation(principal, reference);
            return Err(Error::forbidden_field(
                "agent_id",
                "a key bound to an agent enforces only as that agent",
            )
            .into());
        }
        None if looks_like_agent_id(reference) => return Err(Error::NotFound("agent").into()),
        None => {
            discovered = true;
            discover(g, &tenant, reference, Discovery::Enforcement).await?
        }
    };
    if let Some(bound) = &principal.agent_id {
        if *bound != agent.id {
            log_impersonation(principal, reference);
            return Err(Error::forbidden_field(
                "agent_id",
                "a key bound to an agent enforces only as that agent",
            )
            .into());
        }
    }
    Ok((agent, discovered))
}

/// Says in the server's log that a key bound to one agent tried to enforce
/// as another: the refusal writes no audit record (nothing was decided), but
/// a stolen agent key probing for others is what an operator must see. The
/// name asked for is the caller's text: credentials are taken out and it is
/// quoted escaped, so it cannot forge log lines.
fn log_impersonation(principal: &Principal, reference: &str) {
    let asked = crate::http::error::without_credentials(reference.to_string());
    tracing::warn!(
        org_id = %principal.org_id,
        environment = principal.environment.as_str(),
        key_id = %principal.key_id,
        bound_agent = principal.agent_id.as_deref().unwrap_or_default(),
        asked_agent = ?asked,
        "refused: a key bound to an agent tried to enforce as another agent"
    );
}

/// Says in the server's log that a call was refused for how it names
/// itself (a tool, session or agent name with an invisible character, a
/// padded name): nothing was decided, so no record holds it, and an agent
/// trying a look-alike name to slip past a policy is what an operator must
/// see. The message is Warden's own (it names the character by code
/// point), never the caller's text.
fn log_refused_call(principal: &Principal, refused: &Error) {
    let (field, why) = match refused {
        Error::Invalid { field, message } => (field.as_str(), message.as_str()),
        _ => ("", ""),
    };
    tracing::warn!(
        org_id = %principal.org_id,
        environment = principal.environment.as_str(),
        key_id = %principal.key_id,
        bound_agent = principal.agent_id.as_deref().unwrap_or_default(),
        field,
        why,
        "refused: an enforcement request named its call in a form Warden does not take"
    );
}

/// Takes back an agent this call discovered, when the decision that was
/// to record its discovery could not be written (the chain's head edited,
/// the store failing): otherwise it would stand with no record of how it
/// came. Left alone if any record names it meanwhile.
async fn undo_discovery(
    g: &Governance,
    tenant: &warden_core::Tenant,
    reference: &str,
    agent: &Agent,
) {
    let filter = warden_core::audit::AuditFilter {
        agent_id: Some(agent.id.clone()),
        ..Default::default()
    };
    let page = warden_core::page::PageRequest::newest_records(1);
    let recorded = match g.store.list_audit(tenant, &filter, &page).await {
        Ok(found) => !found.items.is_empty(),
        Err(_) => true,
    };
    if !recorded && g.store.delete_agent(tenant, &agent.id).await.is_ok() {
        g.agents.remember(tenant, reference, None);
    }
}

pub use warden_core::agent::looks_like_agent_id;

/// The agent an unknown `reference` would become on its first call:
/// registered as `discovered`, under that external id, and named as that
/// call would name it (its id added when the plain name is taken), so a
/// dry run's conditions read the name the real call will have. Not stored.
pub async fn discovered_agent(
    g: &Governance,
    tenant: &warden_core::Tenant,
    reference: &str,
) -> ServiceResult<Agent> {
    let agent = discovered_named(reference, false, Discovery::Enforcement)?;
    if !g.store.agent_name_taken(tenant, &agent.name).await? {
        return Ok(agent);
    }
    Ok(discovered_named(reference, true, Discovery::Enforcement)?)
}

/// What made Warden discover an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery<'a> {
    /// Its first enforcement request, whose decision record says so.
    Enforcement,
    /// Its first event (the Thoth SDK's events), sent by the key with
    /// this id: an `agent_change` record of its own.
    Event { actor: &'a str },
}

/// A discovered agent's name: `discovered: <external id>`, cut to fit
/// names' 200 characters. `with_id` adds the agent's own id, for when
/// that name is taken (by a registered agent, or by a longer external id
/// sharing the cut part), so that discovery never fails on a name.
fn discovered_named(reference: &str, with_id: bool, how: Discovery) -> Result<Agent, Error> {
    let first = match how {
        Discovery::Enforcement => "enforcement request",
        Discovery::Event { .. } => "event",
    };
    let changes = AgentChanges {
        // Named below, once the id is known.
        name: Some("discovered".into()),
        external_id: Some(Some(reference.to_string())),
        status: Some(AgentStatus::Discovered),
        description: Some(Some(format!("Registered by Warden on its first {first}"))),
        ..Default::default()
    };
    let mut agent = Agent::create(changes, now_ms())?;
    agent.name = if with_id {
        format!(
            "discovered: {} ({})",
            // 200 in all: "discovered: " (12), " (", the id (28), ")".
            reference.chars().take(157).collect::<String>(),
            agent.id
        )
    } else {
        format!(
            "discovered: {}",
            // 200 in all with "discovered: " (12).
            reference.chars().take(188).collect::<String>()
        )
    };
    Ok(agent)
}

pub(crate) async fn discover(
    g: &Governance,
    tenant: &warden_core::Tenant,
    reference: &str,
    how: Discovery<'_>,
) -> ServiceResult<Agent> {
    for with_id in [false, true] {
        let agent = discovered_named(reference, with_id, how)?;
        let stored = match how {
            Discovery::Enforcement => g.store.insert_agent(tenant, &agent).await,
            Discovery::Event { actor } => {
                let record = AuditRecord {
                    agent_id: Some(agent.id.clone()),
                    reason: Some("agent discovered by its first event".into()),
                    detail: json!({"change": "discovered", "external_id": reference}),
                    ..AuditRecord::change(AuditKind::AgentChange, actor, now_ms())
                };
                let companion = Some(Companion::CreateAgent(agent.clone()));
                match g.audit.append(tenant.clone(), record, companion).await {
                    Ok(_) => Ok(()),
                    Err(AppendError::Store(e)) => Err(e),
                    Err(e) => return Err(append_error(e)),
                }
            }
        };
        match stored {
            Ok(()) => {
                g.agents.remember(tenant, reference, Some(agent.clone()));
                return Ok(agent);
            }
            // Another request discovered it first, or the name is taken.
            Err(warden_store::StoreError::Conflict { .. }) => {
                if let Some(found) = g
                    .agents
                    .find_fresh(g.store.as_ref(), tenant, reference)
                    .await?
                {
                    return Ok(found);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflict("the discovered agent's name is taken".into()).into())
}

/// What conditions read of a call by `agent`.
pub fn call_facts(
    agent: &Agent,
    call: &CallRequest,
    args: Value,
    context: Value,
    session: SessionSoFar,
    drift: DriftScore,
    now_ms: i64,
) -> CallFacts {
    CallFacts {
        tool: call.tool.clone(),
        args,
        agent_id: agent.id.clone(),
        agent_name: agent.name.clone(),
        agent_external_id: agent.external_id.clone(),
        agent_status: agent.status.as_str().into(),
        agent_tags: agent.tags.clone(),
        session_id: call.session_id.clone(),
        user_id: call.user_id.clone(),
        previous_tool: session.tools.last().cloned(),
        session_calls: session.calls,
        session_tools: session.tools,
        context,
        drift,
        now_ms,
    }
}

/// Decides a call, records it durably, and answers.
pub async fn enforce(
    g: &Governance,
    principal: &Principal,
    call: CallRequest,
) -> ServiceResult<Verdict> {
    // Calls redeeming the same approved hold race: exactly one commits its
    // redemption. Each other call is decided again, and now finds the
    // approval used: it gets a decision (deny, "already used"), as a later
    // re-submission would, rather than an error. Only such calls keep a
    // copy for the second try.
    let again = call.hold_token.is_some().then(|| call.clone());
    let mut outcome = decide_and_record(g, principal, call).await?;
    if let (Err(HoldTaken), Some(call)) = (&outcome, again) {
        outcome = decide_and_record(g, principal, call).await?;
    }
    outcome.map_err(|HoldTaken| {
        Error::Conflict(
            "the hold's approval was used by another call, or its agent, the key that made the \
             call or the rule that held the call changed meanwhile; ask again"
                .into(),
        )
        .into()
    })
}

/// Another call redeemed the hold between the check and the commit.
struct HoldTaken;

/// Whether `seen` runs inside `list` in its order, every call counted:
/// the Thoth SDK lists each call that ran, a repeated one each time (it
/// leaves out only the pending call when it repeats the last), so a list
/// that holds a run of one tool fewer times than Warden saw it leaves
/// calls out.
fn in_order(seen: &[String], list: &[String]) -> bool {
    let mut listed = list.iter();
    seen.iter().all(|tool| listed.any(|l| l == tool))
}

/// The caller's list and Warden's record of a session in one history: each
/// call of either once (the calls both hold in the same order counted
/// once, so a call the SDK did not record, such as one whose tool raised,
/// does not count the others twice), in the order both give, Warden's
/// last call last (the previous tool is what Warden saw).
fn merged(list: &[String], seen: &[String]) -> Vec<String> {
    let (n, m) = (list.len(), seen.len());
    // Longest common subsequence of every pair of prefixes.
    let mut common = vec![vec![0u16; m + 1]; n + 1];
    for i in 1..=n {
        for j in 1..=m {
            common[i][j] = if list[i - 1] == seen[j - 1] {
                common[i - 1][j - 1] + 1
            } else {
                common[i - 1][j].max(common[i][j - 1])
            };
        }
    }
    // Built from the end; on a tie Warden's call goes later.
    let mut reversed: Vec<&String> = Vec::with_capacity(n + m);
    let (mut i, mut j) = (n, m);
    while i > 0 || j > 0 {
        if i > 0 && j > 0 && list[i - 1] == seen[j - 1] {
            i -= 1;
            j -= 1;
            reversed.push(&seen[j]);
        } else if j == 0 || (i > 0 && common[i - 1][j] > common[i][j - 1]) {
            i -= 1;
            reversed.push(&list[i]);
        } else {
            j -= 1;
            reversed.push(&seen[j]);
        }
    }
    let mut out: Vec<String> = reversed.into_iter().rev().cloned().collect();
    if let Some(last) = seen.last() {
        if out.last() != Some(last) {
            if let Some(at) = out.iter().rposition(|t| t == last) {
                let tool = out.remove(at);
                out.push(tool);
            }
        }
    }
    out
}

/// Most of a caller's session history a call keeps: its latest calls.
pub const CALLER_SESSION_TOOLS: usize = 200;

/// The arguments as the deciding `modify` policies change them: the
/// deciding one and every other `modify` of the same priority, in the
/// order they matched (so two tied policies, one redacting and one
/// setting, both apply). A change that cannot be made (one that would
/// write more than the bound into them, as a `*` path copies its value
/// into every entry the agent sends; a `*` path into JSON text that is not
/// strict JSON) is not applied, and the call is denied: the policy asked
/// for the call to run only changed.
pub fn apply_change(
    policies: &TenantPolicies,
    change_from: &[String],
    args: &Value,
    decision: &mut Decision,
    reason: &mut String,
    work: &warden_policy::ChangeWork,
) -> Option<Value> {
    let mut changed: Option<Value> = None;
    for policy_id in change_from {
        let Some((name, change)) = policies
            .facts
            .get(policy_id)
            .and_then(|f| Some((&f.name, f.change.as_ref()?)))
        else {
            continue;
        };
        match change.apply_within(changed.as_ref().unwrap_or(args), work) {
            Ok(next) => changed = Some(next),
            Err(failed) => {
                *decision = Decision::Deny;
                *reason = format!(
                    "policy \"{name}\" ({policy_id}) decided modify, but {failed}; the call is denied"
                );
                return None;
            }
        }
    }
    changed
}

async fn decide_and_record(
    g: &Governance,
    principal: &Principal,
    call: CallRequest,
) -> ServiceResult<Result<Verdict, HoldTaken>> {
    let started = Instant::now();
    if let Err(refused) = call.validate() {
        log_refused_call(principal, &refused);
        return Err(refused.into());
    }
    let tenant = principal.tenant();
    // A call that uses an approval is decided on the state as stored now:
    // a suspension or a policy change made on another replica a moment
    // ago must stop it, as the Thoth poll's check does.
    let redeeming = call.hold_token.is_some();
    let (agent, discovered) = resolve_agent(g, principal, &call.agent, redeeming).await?;
    let now = now_ms();
    let args = call
        .args
        .clone()
        .filter(|v| !v.is_null())
        .unwrap_or_else(|| json!({}));
    let context = call
        .context
        .clone()
        .filter(|v| !v.is_null())
        .unwrap_or_else(|| json!({}));

    // Loaded first: loading rebuilds the agent's recent sessions.
    g.drift.ensure_loaded(&tenant, &agent.id).await?;
    // The policies as this replica holds them: whether one reads the
    // session, and (unless an approval is used) what decides the call.
    let cached = g.engine.policies(&tenant).await?;
    let reads_session = cached.reads_session;
    // The session's turn, kept until this call has joined it (or not),
    // where a policy reads the session.
    let _turn = if reads_session {
        g.sessions
            .turn(&tenant, &agent.id, call.session_id.as_deref())
            .await
    } else {
        None
    };
    // The session's earlier tools: the caller's list when it sends one
    // (without the current call), else what this replica saw.
    // Tools this replica saw in the session that the caller's account left
    // out, added to it (and named in the record).
    let mut unreported: Vec<String> = Vec::new();
    // Where the history came from, for the record: the caller's list, or
    // Warden's own record when the list was empty.
    let mut history_from = "caller";
    let session = match (&call.session_tools, &call.session_id) {
        (Some(list), session) => {
            let seen = session
                .as_deref()
                .map(|s| g.drift.session(&tenant, &agent.id, s))
                .unwrap_or_default();
            let mut list = list.as_slice();
            // The Thoth SDK lists the current call too, unless it repeats
            // the last one: a last entry naming this tool is this call,
            // unless this tool was also the session's last call here.
            if list.last() == Some(&call.tool) && seen.tools.last() != Some(&call.tool) {
                list = &list[..list.len() - 1];
            }
            if list.is_empty() && !seen.tools.is_empty() {
                // An empty account of a session Warden saw calls in would
                // erase them (hiding a `db.read` from "no `http.*` after
                // `db.read`"): Warden's own record stands.
                history_from = "warden";
                seen
            } else {
                // The most recent calls: the previous tool is the last one.
                let latest = &list[list.len().saturating_sub(CALLER_SESSION_TOOLS)..];
                let mut tools = latest.to_vec();
                // What Warden saw itself stands beside the agent's account.
                // An honest list holds Warden's calls in the order they
                // ran (with the calls of other replicas between them), and
                // is taken as it is. One that does not (leaving a call out,
                // stopping short of the last, reordering them) has Warden's
                // record added after it, so that the rules on what ran, on
                // how often and on the previous tool read Warden's calls.
                // Judged on the entries kept: a list padded past the
                // bound would otherwise push Warden's calls out of it.
                if !in_order(&seen.tools, latest) {
                    tools = merged(latest, &seen.tools);
                    unreported = seen.tools;
                    // The latest 200, Warden's last call last.
                    tools.drain(..tools.len().saturating_sub(CALLER_SESSION_TOOLS));
                }
                // The caller counts calls across replicas, past the
                // entries kept; what this replica saw run is the least
                // there were.
                SessionSoFar {
                    tools,
                    calls: (list.len() as u64).max(seen.calls),
                }
            }
        }
        (None, Some(s)) if reads_session => g.drift.session(&tenant, &agent.id, s),
        (None, Some(s)) => g.drift.session_tail(&tenant, &agent.id, s),
        (None, None) => SessionSoFar::default(),
    };
    let previous_tool = session.tools.last().cloned();
    let keys = argument_keys(&args);
    let observation = Observation {
        tool: &call.tool,
        previous_tool: previous_tool.as_deref(),
        arg_keys: &keys,
        at_ms: now,
    };
    let drift = g.drift.score(&tenant, &agent.id, &observation);

    // A call that uses an approval reads the policies afresh: the approval
    // was given under one version of one policy.
    let policies = if redeeming {
        g.engine.current(&tenant).await?
    } else {
        cached
    };
    let facts = call_facts(&agent, &call, args, context, session, drift, now);
    let (outcome, facts) = decide_with(&policies, &agent, &call, facts);
    let CallFacts {
        args,
        context,
        drift,
        ..
    } = facts;

    // A redeemed hold turns a step-up into the approved call, once.
    let mut companion = None;
    let mut decision = outcome.decision;
    let mut reason = outcome.reason.clone();
    let mut redeemed: Option<Hold> = None;
    // The agent's own hold whose token could not run the call.
    let mut tried: Option<String> = None;
    if let Some(token) = &call.hold_token {
        // As a hold records them: no deciding policy (the default decision)
        // is the empty id at version 0.
        let deciding = outcome.deciding.clone().unwrap_or_default();
        let deciding_version = policies.facts.get(&deciding).map_or(0, |f| f.version);
        match redeem(
            g,
            &tenant,
            token,
            &agent,
            &call.tool,
            &covered(&call, &args, &context),
        )
        .await?
        {
            // The approval was given under one version of one policy: if the
            // rule that holds the call is another now, or was changed, the
            // person approved something else and must be asked again.
            Ok(h)
                if decision == Decision::StepUp
                    && (deciding != h.policy_id || deciding_version != h.policy_version) =>
            {
                decision = Decision::Deny;
                reason = if deciding == h.policy_id {
                    format!(
                        "the policy that held the call changed since the call was held (hold {}); \
                         ask again",
                        h.id
                    )
                } else {
                    // Another rule (one added, or raised above it) holds
                    // the call now: the approver saw another.
                    let holding = if deciding.is_empty() {
                        "the default decision".to_string()
                    } else {
                        format!("policy {deciding}")
                    };
                    format!(
                        "another rule holds the call since it was held ({holding}, not the one \
                         approved) (hold {}); ask again",
                        h.id
                    )
                };
                tried = Some(h.id);
            }
            Ok(h) if decision == Decision::StepUp => {
                decision = Decision::Allow;
                reason = format!(
                    "step-up approved by {} (hold {})",
                    h.decided_by.clone().unwrap_or_default(),
                    h.id
                );
                // The use's time, taken after the approval's own check: the
                // store refuses it past the approval's end.
                companion = Some(Companion::RedeemHold {
                    hold_id: h.id.clone(),
                    at: now_ms(),
                });
                redeemed = Some(h);
            }
            // An approval the call did not need (no policy holds it now),
            // left unused; the record names its hold.
            Ok(h) => tried = Some(h.id),
            Err(refused) if decision == Decision::StepUp => {
                decision = Decision::Deny;
                reason = match &refused.hold_id {
                    Some(id) => format!("{} (hold {id})", refused.why),
                    None => refused.why,
                };
                tried = refused.hold_id;
            }
            // Decided afresh, as a call without a token is; its record
            // still names the hold its token could not use.
            Err(refused) => tried = refused.hold_id,
        }
    }

    // The approved call runs with the changes of the `modify` policies tied
    // with the one that held it.
    if redeemed.is_some() && decision == Decision::Allow && !outcome.change_from.is_empty() {
        decision = Decision::Modify;
        reason = format!(
            "{reason}; its arguments changed by policy {}",
            outcome.change_from.join(", ")
        );
    }
    // The call's changes and redactions share one bound on their work.
    let work = warden_policy::ChangeWork::default();
    let modified_tool_args = match decision {
        Decision::Modify => apply_change(
            &policies,
            &outcome.change_from,
            &args,
            &mut decision,
            &mut reason,
            &work,
        ),
        _ => None,
    };

    // Arguments as stored: what any policy that takes in the call names
    // redacted.
    let redactions = policies.redactions(
        &call.tool,
        &agent.id,
        agent.external_id.as_deref(),
        &agent.tags,
    );
    let redact = |value: &Value| {
        let mut v = value.clone();
        for path in &redactions.arguments {
            path.redact_within(&mut v, &work);
        }
        v
    };
    // A Warden key or token in a call is taken out wherever it is: the
    // record is read by every key with `audit.read`, and its event by every
    // key with `events.read`.
    let mut stored_args = redact(&args);
    scrub_credentials_in(&mut stored_args);
    // The caller's context as stored, copied only when a policy names a
    // field of it or it may hold a credential (the hold's digest below
    // covers it as sent).
    let stored_context =
        (!redactions.context.is_empty() || may_hold_credential_in(&context)).then(|| {
            let mut v = context.clone();
            for path in &redactions.context {
                path.redact_within(&mut v, &work);
            }
            scrub_credentials_in(&mut v);
            v
        });
    let context_redacted = stored_context.as_ref().is_some_and(|v| *v != context);

    let audit_id = new_time_ordered_id(prefix::AUDIT);
    let mut hold_token = None;
    let mut hold_expires_at = None;
    let mut step_up_timeout = None;
    // The hold this decision made, the one whose approval it used, or the
    // one its token named but could not use.
    let mut hold_id = redeemed.as_ref().map(|h| h.id.clone()).or(tried);
    if decision == Decision::StepUp && redeemed.is_none() {
        let policy_id = outcome.deciding.clone().unwrap_or_default();
        let facts = policies.facts.get(&policy_id);
        let timeout = facts.map_or(warden_core::policy::DEFAULT_STEP_UP_TIMEOUT_SECONDS, |f| {
            f.step_up_timeout_seconds
        });
        let token = hold::mint_token();
        let h = Hold {
            id: new_id(prefix::HOLD),
            token_digest: hold::token_digest(&token),
            audit_id: audit_id.clone(),
            agent_id: agent.id.clone(),
            tool: call.tool.clone(),
            args_sha256: hold::call_digest(&token, &covered(&call, &args, &context)),
            policy_id,
            policy_version: facts.map_or(0, |f| f.version),
            session_id: call.session_id.clone(),
            status: HoldStatus::Pending,
            created_at: now,
            expires_at: now + i64::from(timeout) * 1000,
            decided_by: None,
            decided_at: None,
            comment: None,
            redeemed_at: None,
            key_id: Some(principal.key_id.clone()),
        };
        hold_expires_at = Some(h.expires_at);
        step_up_timeout = Some(timeout);
        hold_id = Some(h.id.clone());
        reason = format!("{reason}; held for approval (hold {})", h.id);
        hold_token = Some(token);
        companion = Some(Companion::InsertHold(h));
    }

    let mut detail = json!({
        "previous_tool": previous_tool,
        "agent_status": agent.status.as_str(),
    });
    if call.session_tools.is_some() {
        // The history came from the caller: say so, and what Warden saw
        // that the caller's account did not hold in order.
        detail["session_tools_from"] = json!(history_from);
        if !unreported.is_empty() {
            detail["session_tools_unreported"] = json!(unreported);
        }
    }
    let stored_context = stored_context.unwrap_or(context);
    if !stored_context.as_object().is_some_and(|m| m.is_empty()) {
        detail["context"] = stored_context;
    }
    // The name the agent goes by, for its decision's event as for the
    // events it sends (`external_agent_id`).
    if let Some(name) = &agent.external_id {
        detail["external_agent_id"] = json!(name);
    }
    // An approval used or refused, or a change that could not be made,
    // would have happened to the monitored outcome as well when the
    // monitor policies leave the winner as it is.
    let monitor_decision = outcome.monitor_decision.map(|would| {
        if outcome.monitor_agrees {
            decision
        } else {
            would
        }
    });
    if let Some(d) = monitor_decision {
        detail["monitor_decision"] = json!(d.as_str());
    }
    if !outcome.condition_errors.is_empty() {
        // An error's text may quote an argument's or the context's value,
        // escaped or transformed (`upperAscii`): when any was redacted,
        // the text is withheld rather than searched for every form of it.
        let withheld = context_redacted || stored_args != args;
        let errors: Vec<Value> = outcome
            .condition_errors
            .iter()
            .map(|e| {
                let mut e = e.clone();
                if let Some(text) = e.get_mut("error").filter(|_| withheld) {
                    *text = json!(WITHHELD_ERROR);
                }
                e
            })
            .collect();
        detail["condition_errors"] = json!(errors);
    }
    if let Some(m) = &modified_tool_args {
        let mut stored = redact(m);
        scrub_credentials_in(&mut stored);
        detail["modified_arguments"] = stored;
    }
    if let Some(h) = &redeemed {
        detail["redeemed_hold_id"] = json!(h.id);
    }
    let record = AuditRecord {
        id: audit_id.clone(),
        kind: AuditKind::Decision,
        at: now,
        actor: principal.key_id.clone(),
        agent_id: Some(agent.id.clone()),
        tool: Some(call.tool.clone()),
        arguments: Some(stored_args),
        decision: Some(decision.as_str().into()),
        reason: Some(reason.clone()),
        matched_policy_ids: outcome.matched.clone(),
        monitored: outcome.monitored.clone(),
        drift: Some(drift.clone()),
        session_id: call.session_id.clone(),
        user_id: call.user_id.clone(),
        latency_us: Some(started.elapsed().as_micros() as i64),
        hold_id: hold_id.clone(),
        policy_id: outcome.deciding.clone(),
        policy_version: outcome
            .deciding
            .as_ref()
            .and_then(|id| policies.facts.get(id))
            .map(|f| f.version),
        detail,
    };
    let chained = match g.audit.append(tenant.clone(), record, companion).await {
        Ok(chained) => chained,
        Err(super::audit_log::AppendError::Precondition) => return Ok(Err(HoldTaken)),
        Err(other) => {
            if discovered {
                undo_discovery(g, &tenant, &call.agent, &agent).await;
            }
            return Err(append_error(other));
        }
    };
    // Only a call that runs is learned, by the profile and its session's
    // history: a denied or held call learned would make itself familiar,
    // so that retrying it would pass a rule on drift (or on what may follow
    // what) that stopped it. A held call is learned when its approval is
    // used.
    if runs(decision) {
        g.drift.observe(
            &tenant,
            &agent.id,
            call.session_id.as_deref(),
            &observation,
            chained.sequence,
        );
    }

    Ok(Ok(Verdict {
        decision,
        reason,
        matched_policy_ids: outcome.matched,
        hold_token,
        hold_id,
        hold_expires_at,
        modified_tool_args,
        drift,
        audit_id,
        agent_id: agent.id,
        // Whole microseconds: a double of milliseconds multiplied out
        // would print as `1.3036809999999999`.
        latency_ms: started.elapsed().as_micros() as f64 / 1000.0,
        monitor_decision,
        step_up_timeout_seconds: step_up_timeout,
    }))
}

/// What a hold's approval covers of this call.
fn covered<'a>(
    call: &'a CallRequest,
    args: &'a Value,
    context: &'a Value,
) -> hold::CoveredCall<'a> {
    hold::CoveredCall {
        args,
        context,
        session_id: call.session_id.as_deref(),
        user_id: call.user_id.as_deref(),
    }
}

/// Why a hold token cannot run the call, and the hold it names when that
/// is the calling agent's own (so that the decision's record names it).
struct Refused {
    hold_id: Option<String>,
    why: String,
}

/// Checks a hold token against the call.
async fn redeem(
    g: &Governance,
    tenant: &warden_core::Tenant,
    token: &str,
    agent: &Agent,
    tool: &str,
    covered: &hold::CoveredCall<'_>,
) -> ServiceResult<Result<Hold, Refused>> {
    let Some(h) = g
        .store
        .hold_by_token(tenant, &hold::token_digest(token))
        .await?
    else {
        return Ok(Err(Refused {
            hold_id: None,
            why: "the hold token is not known".into(),
        }));
    };
    // Another agent's hold is told as one that does not exist, as its
    // poll answers 404 to this agent: its state is that agent's business.
    if h.agent_id != agent.id {
        return Ok(Err(Refused {
            hold_id: None,
            why: "the hold token is not known".into(),
        }));
    }
    let now = now_ms();
    let why = if h.approval_expired(now) {
        Some(format!(
            "the hold's approval {}; ask again",
            h.approval_end(now)
        ))
    } else if h.status != HoldStatus::Approved {
        Some(format!("the hold is {}, not approved", h.status.as_str()))
    } else if h.redeemed_at.is_some() {
        Some("the hold's approval was already used".into())
    } else if h.tool != tool {
        Some("the hold covers another call (another tool)".into())
    } else if h.args_sha256 != hold::call_digest(token, covered) {
        Some(
            if hold::differs_only_in_number_form(token, covered, &h.args_sha256) {
                "the hold covers this call with its numbers written otherwise: a whole number \
                 and the same number with a fraction or an exponent (5000, and 5000.0 or 5e3) \
                 are different arguments; send them as the held call did"
            } else {
                "the hold covers another call (its arguments, context, session or user differ)"
            }
            .into(),
        )
    } else if !super::holds::approved_on_record(g, tenant, &h).await? {
        Some(super::holds::NO_APPROVAL_ON_RECORD.into())
    } else if super::holds::caller_revoked(g, tenant, &h).await? {
        Some(super::holds::caller_revoked_reason())
    } else if super::holds::status_changed_since(g, tenant, agent, h.created_at).await? {
        // As the Thoth poll answers: an agent suspended while its call
        // waited (even if active again) asks again.
        Some(
            "the agent's status changed since the call was held (it was suspended, or changed \
             in ways its records do not show); ask again"
                .into(),
        )
    } else {
        None
    };
    Ok(match why {
        Some(why) => Err(Refused {
            hold_id: (h.agent_id == agent.id).then(|| h.id.clone()),
            why,
        }),
        None => Ok(h),
    })
}

/// What the policies decide, before holds are considered.
pub struct Outcome {
    pub decision: Decision,
    pub reason: String,
    /// The deciding `enforce` policy.
    pub deciding: Option<String>,
    /// The policies whose changes a `modify` applies, in order.
    pub change_from: Vec<String>,
    pub matched: Vec<String>,
    pub monitored: Vec<MonitoredOutcome>,
    pub monitor_decision: Option<Decision>,
    /// The monitor policies leave the outcome to the enforce policies (or
    /// the agent is suspended): whatever happens to the call after the
    /// policies happens to the monitored outcome too.
    pub monitor_agrees: bool,
    pub condition_errors: Vec<Value>,
}

/// Decides with the facts lent to the conditions, and gives them back.
pub fn decide_with(
    policies: &TenantPolicies,
    agent: &Agent,
    call: &CallRequest,
    facts: CallFacts,
) -> (Outcome, CallFacts) {
    let input = ConditionInput::new(facts);
    // Conditions that loop over a large call's data can run for hundreds
    // of milliseconds: such a call's evaluation hands its worker's other
    // requests (readiness probes included) to another thread first.
    let heavy =
        input.collection_sizes().1 > HEAVY_CALL_ELEMENTS || input.text_bytes() > HEAVY_CALL_TEXT;
    let outcome =
        crate::heavy_work::off_workers_if(heavy, || decide(policies, agent, call, &input));
    (outcome, input.into_facts())
}

/// Elements (of lists and maps, in the arguments and context together)
/// past which a call's evaluation may be long enough to hold up others.
const HEAVY_CALL_ELEMENTS: usize = 1_000;

/// Bytes of text in a call past which its evaluation may be as long
/// (sixteen splits of a 1 MB argument took 0.64 s).
const HEAVY_CALL_TEXT: usize = 64 * 1024;

pub fn decide(
    policies: &TenantPolicies,
    agent: &Agent,
    call: &CallRequest,
    input: &ConditionInput,
) -> Outcome {
    let eval = policies.set.evaluate(&warden_policy::Call {
        tool: &call.tool,
        agent_id: &agent.id,
        agent_alias: agent.external_id.as_deref(),
        agent_tags: &agent.tags,
        context: input,
    });
    let name = |id: &str| {
        policies
            .facts
            .get(id)
            .map_or(String::new(), |f| f.name.clone())
    };
    let matched: Vec<String> = eval.matched.iter().map(|p| p.id.clone()).collect();
    let monitored: Vec<MonitoredOutcome> = eval
        .monitored
        .iter()
        .map(|p| MonitoredOutcome {
            policy_id: p.id.clone(),
            decision: p.decision.as_str().into(),
        })
        .collect();
    let suspended = agent.status == AgentStatus::Suspended;
    // Monitor mode: what the outcome would be if monitored policies were
    // enforced; a suspended agent is denied whatever they say.
    let monitor_decision =
        eval.monitor_decision
            .map(|would| if suspended { Decision::Deny } else { would });
    let condition_errors: Vec<Value> = eval
        .condition_errors
        .iter()
        .map(|(p, e)| json!({"policy_id": p.id, "error": e.0}))
        .collect();
    let (decision, reason, deciding) = if suspended {
        (Decision::Deny, "the agent is suspended".to_string(), None)
    } else {
        match eval.deciding {
            Some(p) => {
                // A failed condition decides only where that is stricter:
                // say so, or the reason reads as if the condition held.
                let failed = if eval.condition_errors.iter().any(|(e, _)| e.id == p.id) {
                    " (its condition failed to evaluate and counts as met where that is stricter; \
                     see condition_errors: in the audit record's detail, or in a test's answer)"
                } else {
                    ""
                };
                (
                    p.decision,
                    format!(
                        "policy \"{}\" ({}) decided {}{failed}",
                        name(&p.id),
                        p.id,
                        p.decision.as_str()
                    ),
                    Some(p.id.clone()),
                )
            }
            None if !eval.condition_errors.is_empty() => (
                eval.decision,
                format!(
                    "no policy decided (conditions failed to evaluate; see condition_errors: in the \
                     audit record's detail, or in a test's answer); the default decision {} applies",
                    eval.decision.as_str()
                ),
                None,
            ),
            None => (
                eval.decision,
                match eval.monitor_decision {
                    // Monitor policies matched: say so, or the reason
                    // would contradict `matched` and `monitor_decision`.
                    Some(would) => format!(
                        "no enforce policy matched (monitor policies matched and would decide {}); \
                         the default decision {} applies",
                        would.as_str(),
                        eval.decision.as_str()
                    ),
                    None => format!(
                        "no policy matched; the default decision {} applies",
                        eval.decision.as_str()
                    ),
                },
                None,
            ),
        }
    };
    Outcome {
        decision,
        reason,
        // A step-up's tied `modify` policies change the call it holds, once
        // approved: the approval lets the call run, not skip its changes.
        // So do the changes of a `modify` above it whose condition failed:
        // met, it would have changed the call, and an agent must not drop
        // a redaction by the type it sends. Applied lowest priority first,
        // then in creation order, so the strongest policy's value stands.
        // Under the default decision (a `step_up`), every failed `modify`.
        change_from: match eval.deciding.map(|d| d.priority) {
            floor if matches!(decision, Decision::Modify | Decision::StepUp) => {
                let failed: std::collections::HashSet<&str> = eval
                    .condition_errors
                    .iter()
                    .map(|(p, _)| p.id.as_str())
                    .collect();
                let mut changes: Vec<(i32, i64, String)> = eval
                    .matched
                    .iter()
                    .filter(|p| p.decision == Decision::Modify)
                    .filter(|p| {
                        let failed = failed.contains(p.id.as_str());
                        match floor {
                            Some(floor) => p.priority == floor || (p.priority > floor && failed),
                            None => failed,
                        }
                    })
                    .map(|p| {
                        let created = policies.facts.get(&p.id).map_or(0, |f| f.created_at);
                        (p.priority, created, p.id.clone())
                    })
                    .collect();
                changes.sort();
                changes.into_iter().map(|(_, _, id)| id).collect()
            }
            _ => Vec::new(),
        },
        deciding,
        matched,
        monitored,
        monitor_decision,
        monitor_agrees: eval.monitor_agrees || suspended,
        condition_errors,
    }
}

/// Whether a decision lets the call run (a `step_up` runs only once
/// approved, as a decision of its own).
pub fn runs(decision: Decision) -> bool {
    matches!(
        decision,
        Decision::Allow | Decision::Audit | Decision::Modify
    )
}

#[cfg(test)]
mod tests {
    use super::merged;

    fn tools(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_list_and_warden_s_record_merge_without_counting_a_call_twice() {
        // The SDK did not record a call whose tool raised.
        let m = merged(&tools(&["x", "x"]), &tools(&["x", "x", "f"]));
        assert_eq!(m, tools(&["x", "x", "f"]));
        // A call of another process of the session, and this one's.
        let m = merged(&tools(&["x"]), &tools(&["x", "x"]));
        assert_eq!(m, tools(&["x", "x"]));
        // A list that leaves Warden's call out, or reorders them: Warden's
        // last call is the previous tool.
        let m = merged(&tools(&["a", "c"]), &tools(&["a", "db.read"]));
        assert_eq!(m.last().unwrap(), "db.read");
        assert_eq!(m.len(), 3);
        let m = merged(&tools(&["b", "a"]), &tools(&["a", "b"]));
        assert_eq!(m.last().unwrap(), "b");
        assert_eq!(m.len(), 3);
        // An empty side gives the other.
        assert_eq!(merged(&[], &tools(&["a"])), tools(&["a"]));
    }
}
