//! Step-up holds: resolution by a person, expiry, waking the agents that
//! long-poll for them, and the checks and the audited use of an approval
//! by a poll whose answer runs the call. A resolution made on this replica wakes its
//! pollers at once; pollers also re-read the store every
//! [`POLL_FALLBACK`] so that one made on another replica reaches them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Notify;
use warden_core::audit::{AuditKind, AuditRecord};
use warden_core::hold::{Hold, HoldStatus};
use warden_core::id::{new_time_ordered_id, prefix};
use warden_core::secret::ChainSealer;
use warden_core::time::now_ms;
use warden_core::{Error, Tenant};
use warden_store::{Companion, Store};

use super::audit_log::{AppendError, AuditLog};
use super::Governance;
use crate::services::{ServiceError, ServiceResult};

pub const POLL_FALLBACK: Duration = Duration::from_millis(250);
pub const MAX_WAIT_SECONDS: u64 = 30;
pub const MAX_COMMENT: usize = 2_000;

#[derive(Default)]
pub struct HoldWaiters {
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
    /// Set at shutdown: long-polls answer at once with the hold as it is,
    /// so that stopping the server does not wait out every poll.
    closing: std::sync::atomic::AtomicBool,
}

impl HoldWaiters {
    /// Wakes every long-poll and makes later ones answer at once.
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for (_, n) in self.waiting.lock().unwrap().drain() {
            n.notify_waiters();
        }
    }

    pub fn closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn notify_for(&self, hold_id: &str) -> Arc<Notify> {
        self.waiting
            .lock()
            .unwrap()
            .entry(hold_id.to_string())
            .or_default()
            .clone()
    }

    fn wake(&self, hold_id: &str) {
        if let Some(n) = self.waiting.lock().unwrap().remove(hold_id) {
            n.notify_waiters();
        }
    }

    /// Waits until `hold_id` may have changed, or `limit` passes. The
    /// waiter is registered before `still_pending` looks at the store, so
    /// a resolution between that look and the wait still wakes it.
    pub async fn wait<F, Fut>(&self, hold_id: &str, limit: Duration, still_pending: F)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let notify = self.notify_for(hold_id);
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.closing() && still_pending().await {
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(limit.min(POLL_FALLBACK)) => {}
            }
        }
        // Nobody else waits on it: forget it, so that holds resolved on
        // another replica leave nothing behind here.
        let mut waiting = self.waiting.lock().unwrap();
        if waiting
            .get(hold_id)
            .is_some_and(|n| Arc::ptr_eq(n, &notify) && Arc::strong_count(&notify) <= 2)
        {
            waiting.remove(hold_id);
        }
    }
}

/// How a person (or expiry) resolves a hold.
pub struct Resolution {
    pub status: HoldStatus,
    pub decided_by: Option<String>,
    pub comment: Option<String>,
}

/// The policy that held the call; `None` for the default decision (kept
/// as the empty id in the hold).
fn hold_policy(hold: &Hold) -> Option<String> {
    (!hold.policy_id.is_empty()).then(|| hold.policy_id.clone())
}

/// Why an approval was refused by the store's own check of it, made in
/// the transaction that gives or uses it.
fn no_longer_stands() -> String {
    format!(
        "meanwhile {}: no approval of this hold can be used",
        warden_core::hold::NO_LONGER_STANDS
    )
}

/// Why a hold can no longer be resolved, in the words its status is shown
/// with: an approval that lapsed unused reads as expired, as the hold and
/// its polls show it.
fn already(hold: &Hold, now: i64) -> String {
    match hold.status_at(now) {
        HoldStatus::Expired if hold.status == HoldStatus::Approved || hold.approval_lapsed() => {
            format!(
                "the hold was approved, and the approval {}",
                hold.approval_end(now)
            )
        }
        status => format!("the hold is already {}", status.as_str()),
    }
}

/// How the agent changed since a call was held, in what policies select
/// or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgentChange {
    None,
    /// Its tags, external id or name.
    Governed,
    /// Its status (suspended meanwhile, even if active again), or changes
    /// its records do not explain (many, or not an update).
    Status,
}

/// Whether the hold's approval stands on a sealed `hold_resolution` record
/// that approves this hold, made when the hold says it was decided: the
/// hold's row is a working copy, and an approval written only there (in
/// the database) must not run a call.
pub(super) async fn approved_on_record(
    g: &Governance,
    tenant: &Tenant,
    hold: &Hold,
) -> ServiceResult<bool> {
    use warden_core::audit::AuditFilter;
    let Some(at) = hold.decided_at else {
        return Ok(false);
    };
    let filter = AuditFilter {
        kind: Some(AuditKind::HoldResolution),
        hold_id: Some(hold.id.clone()),
        from: Some(at),
        to: Some(at.saturating_add(1)),
        ..Default::default()
    };
    let page = warden_core::page::PageRequest::newest_records(50);
    let found = g.store.list_audit(tenant, &filter, &page).await?;
    // The approval names the held call's record and arguments, so that a
    // hold renamed onto another's approval is told apart.
    let approves = |r: &warden_core::audit::ChainedRecord| {
        r.vouched(tenant, g.audit.sealer())
            && r.record.hold_id.as_deref() == Some(hold.id.as_str())
            && r.record.kind == AuditKind::HoldResolution
            && r.record.decision.as_deref() == Some("allow")
            && r.record.detail["decision_audit_id"] == hold.audit_id.as_str()
            && r.record.detail["args_sha256"] == hold.args_sha256.as_str()
    };
    if !found.items.iter().any(approves) {
        return Ok(false);
    }
    // And the held call's own record is the hold's.
    Ok(
        held_record(g.store.as_ref(), g.audit.sealer(), tenant, hold)
            .await?
            .is_some(),
    )
}

/// The held call's own record, when it is sealed and is the hold's: its
/// id, hold, agent and tool as the hold says. What is read from it (the
/// user, the arguments, the policies it matched) is believed only so; a
/// hold's row edited in the database to point elsewhere reads as none.
pub(super) async fn held_record(
    store: &dyn Store,
    sealer: &ChainSealer,
    tenant: &Tenant,
    hold: &Hold,
) -> ServiceResult<Option<AuditRecord>> {
    Ok(store
        .get_audit(tenant, &hold.audit_id)
        .await?
        .filter(|r| {
            r.vouched(tenant, sealer)
                && r.record.id == hold.audit_id
                && r.record.hold_id.as_deref() == Some(hold.id.as_str())
                && r.record.agent_id.as_deref() == Some(hold.agent_id.as_str())
                && r.record.tool.as_deref() == Some(hold.tool.as_str())
        })
        .map(|r| r.record))
}

/// Why an approval whose call's key was revoked is not used.
pub(super) fn caller_revoked_reason() -> String {
    format!("{}; ask again", super::orphan_holds::KEY_REVOKED)
}

/// Whether the key that made the held call was revoked (or is gone): its
/// approval no longer stands, as the store checks where the approval is
/// given or used. A hold that names no key (made by a replica of an
/// earlier release still running after the migration) is judged by the
/// key its call's sealed record names.
pub(super) async fn caller_revoked(
    g: &Governance,
    tenant: &Tenant,
    hold: &Hold,
) -> ServiceResult<bool> {
    let key = match &hold.key_id {
        Some(key) => key.clone(),
        None => match held_record(g.store.as_ref(), g.audit.sealer(), tenant, hold).await? {
            Some(record) if record.actor.starts_with("key_") => record.actor,
            _ => return Ok(false),
        },
    };
    Ok(g.store
        .get_api_key(tenant, &key)
        .await?
        .is_none_or(|k| k.revoked_at.is_some()))
}

/// Whether the agent's status changed since `since` (suspended meanwhile,
/// even if active again), as the poll that runs an approved call checks.
pub(super) async fn status_changed_since(
    g: &Governance,
    tenant: &Tenant,
    agent: &warden_core::agent::Agent,
    since: i64,
) -> ServiceResult<bool> {
    Ok(agent_change_since(g, tenant, agent, since).await? == AgentChange::Status)
}

/// How the agent changed since `since`, as its `agent_change` records say:
/// an edit of its description, owner, framework or metadata is none, and
/// leaves approvals standing.
async fn agent_change_since(
    g: &Governance,
    tenant: &Tenant,
    agent: &warden_core::agent::Agent,
    since: i64,
) -> ServiceResult<AgentChange> {
    use warden_core::audit::AuditFilter;
    if agent.updated_at <= since {
        return Ok(AgentChange::None);
    }
    let filter = AuditFilter {
        agent_id: Some(agent.id.clone()),
        kind: Some(AuditKind::AgentChange),
        from: Some(since),
        ..Default::default()
    };
    let page = warden_core::page::PageRequest::newest_records(50);
    let changes = g.store.list_audit(tenant, &filter, &page).await?;
    if changes.items.is_empty() || changes.next_cursor.is_some() {
        return Ok(AgentChange::Status);
    }
    let mut seen = AgentChange::None;
    for r in &changes.items {
        // A record edited in the database (a suspension made to read as
        // an edit of the description) counts as the worst change.
        // A record sealed but found by an edited column (another agent's
        // change given this agent's id) counts as the worst change too.
        if !r.vouched(tenant, g.audit.sealer()) || r.record.agent_id.as_deref() != Some(&agent.id) {
            return Ok(AgentChange::Status);
        }
        let detail = &r.record.detail;
        let updated = detail.get("change").and_then(|c| c.as_str()) == Some("updated");
        let Some(fields) = detail
            .get("changed")
            .and_then(|c| c.as_object())
            .filter(|_| updated)
        else {
            return Ok(AgentChange::Status);
        };
        // A suspension, or a return from one, is a containment: approvals
        // given before it are not used. Registering a discovered agent
        // (`discovered` to `active`) is not: it is judged as an edit of
        // what policies read.
        if let Some(status) = fields.get("status") {
            let contained = |v: &Value| v.as_str() == Some("suspended");
            if contained(&status["from"]) || contained(&status["to"]) {
                return Ok(AgentChange::Status);
            }
            seen = AgentChange::Governed;
        }
        let governed = crate::services::agents::GOVERNED_FIELDS;
        if fields.keys().any(|k| governed.contains(&k.as_str())) {
            seen = AgentChange::Governed;
        }
    }
    Ok(seen)
}

/// The user the held call was made for, as its decision recorded it, so
/// that the audit log filtered by that user shows what became of the hold.
async fn held_for(
    store: &dyn Store,
    audit: &AuditLog,
    tenant: &Tenant,
    hold: &Hold,
) -> ServiceResult<Option<String>> {
    Ok(held_record(store, audit.sealer(), tenant, hold)
        .await?
        .and_then(|r| r.user_id))
}

/// The audit record of what became of a hold: `(at, actor)` and
/// `(decision, reason)`.
fn resolution_record(
    hold: &Hold,
    (at, actor): (i64, &str),
    (decision, reason): (&str, &str),
    user_id: Option<String>,
    detail: Value,
) -> AuditRecord {
    AuditRecord {
        id: new_time_ordered_id(prefix::AUDIT),
        kind: AuditKind::HoldResolution,
        at,
        actor: actor.to_string(),
        agent_id: Some(hold.agent_id.clone()),
        tool: Some(hold.tool.clone()),
        arguments: None,
        decision: Some(decision.into()),
        reason: Some(reason.into()),
        matched_policy_ids: hold_policy(hold).into_iter().collect(),
        monitored: vec![],
        drift: None,
        session_id: hold.session_id.clone(),
        user_id,
        latency_us: None,
        hold_id: Some(hold.id.clone()),
        policy_id: hold_policy(hold),
        policy_version: hold_policy(hold).map(|_| hold.policy_version),
        detail,
    }
}

/// Resolves a pending hold and audits it in one transaction; 409 when it
/// is no longer pending.
pub async fn resolve(
    store: &dyn Store,
    audit: &AuditLog,
    waiters: &HoldWaiters,
    tenant: &Tenant,
    hold: &Hold,
    resolution: Resolution,
    actor: &str,
) -> ServiceResult<Hold> {
    let now = now_ms();
    if hold.status != HoldStatus::Pending {
        return Err(Error::Conflict(already(hold, now)).into());
    }
    let outcome = match resolution.status {
        HoldStatus::Approved => "allow",
        _ => "deny",
    };
    let user_id = held_for(store, audit, tenant, hold).await?;
    let reason = match resolution.status {
        HoldStatus::Approved => "step-up approved",
        HoldStatus::Denied => "step-up denied",
        _ => "step-up expired without an approval; denied",
    };
    let record = resolution_record(
        hold,
        (now, actor),
        (outcome, reason),
        user_id,
        json!({
            "status": resolution.status.as_str(),
            "comment": resolution.comment,
            "decision_audit_id": hold.audit_id,
            "args_sha256": hold.args_sha256,
        }),
    );
    let companion = Companion::ResolveHold {
        hold_id: hold.id.clone(),
        status: resolution.status,
        decided_by: resolution.decided_by.clone(),
        decided_at: now,
        comment: resolution.comment.clone(),
    };
    match audit.append(tenant.clone(), record, Some(companion)).await {
        Ok(_) => {}
        Err(AppendError::Precondition) => {
            let message = match store.get_hold(tenant, &hold.id).await? {
                // Still pending: the approval's own condition failed.
                Some(current) if current.status == HoldStatus::Pending => no_longer_stands(),
                Some(current) => already(&current, now_ms()),
                None => "the hold is already gone".into(),
            };
            return Err(Error::Conflict(message).into());
        }
        Err(e) => return Err(append_error(e)),
    }
    waiters.wake(&hold.id);
    Ok(Hold {
        status: resolution.status,
        decided_by: resolution.decided_by,
        decided_at: Some(now),
        comment: resolution.comment,
        ..hold.clone()
    })
}

pub fn append_error(e: AppendError) -> ServiceError {
    match e {
        AppendError::Store(s) => s.into(),
        AppendError::Precondition => {
            Error::Conflict("the change conflicts with the current state; retry".into()).into()
        }
        AppendError::Stopped => {
            warden_store::StoreError::Unavailable("audit writer stopped".into()).into()
        }
    }
}

/// Resolves a pending hold past its expiry as expired (a denial).
pub async fn expire_if_due(
    store: &dyn Store,
    audit: &AuditLog,
    waiters: &HoldWaiters,
    tenant: &Tenant,
    hold: Hold,
) -> ServiceResult<Hold> {
    if hold.status != HoldStatus::Pending || hold.expires_at > now_ms() {
        return Ok(hold);
    }
    let expired = Resolution {
        status: HoldStatus::Expired,
        decided_by: None,
        comment: None,
    };
    match resolve(store, audit, waiters, tenant, &hold, expired, "system").await {
        Ok(h) => Ok(h),
        // Someone resolved it first: read what they decided.
        Err(ServiceError::Domain(Error::Conflict(_))) => {
            Ok(store.get_hold(tenant, &hold.id).await?.unwrap_or(hold))
        }
        Err(e) => Err(e),
    }
}

/// Whether an approved hold may still run its call, for a poll that
/// answers "run it" without the call being decided again (the Thoth SDK's).
/// `Err` says why not: the agent was suspended or removed, the policy that
/// held the call changed, or a policy that outranks it and could decide
/// the call was added or changed since the hold was made. Conditions
/// cannot be evaluated here (the hold keeps only the arguments' digest),
/// so such a policy counts whatever its condition: the poll fails closed
/// and the agent asks again, to be decided in full.
/// Why an approval with no sealed record of it is not used.
pub(super) const NO_APPROVAL_ON_RECORD: &str =
    "the hold's approval has no sealed record of who gave it (GET /api/v1/audit/verify); ask again";

pub async fn approval_stands(
    g: &super::Governance,
    tenant: &Tenant,
    hold: &Hold,
) -> ServiceResult<Result<(), String>> {
    use warden_policy::{Decision, Mode};
    if !approved_on_record(g, tenant, hold).await? {
        return Ok(Err(NO_APPROVAL_ON_RECORD.into()));
    }
    if caller_revoked(g, tenant, hold).await? {
        return Ok(Err(caller_revoked_reason()));
    }
    let agent = match g.store.get_agent(tenant, &hold.agent_id).await? {
        Some(a) if a.status == warden_core::agent::AgentStatus::Suspended => {
            return Ok(Err("the agent was suspended since the call was held".into()))
        }
        Some(a) => a,
        None => return Ok(Err("the agent that made the call was deleted".into())),
    };
    let policies = g.engine.current(tenant).await?;
    // The rank of the rule that held the call: (priority, restrictiveness),
    // or below every policy for the default decision.
    let holding = if hold.policy_id.is_empty() {
        if policies.set.default_decision() != Decision::StepUp {
            return Ok(Err(
                "the default decision changed since the call was held; ask again".into(),
            ));
        }
        None
    } else {
        match (
            policies.set.policy(&hold.policy_id),
            policies.facts.get(&hold.policy_id),
        ) {
            (Some(p), Some(f))
                if f.version == hold.policy_version
                    && p.mode == Mode::Enforce
                    && p.decision == Decision::StepUp =>
            {
                Some((p.priority, p.decision.restrictiveness()))
            }
            _ => {
                return Ok(Err(
                    "the policy that held the call changed since the call was held; ask again"
                        .into(),
                ))
            }
        }
    };
    // The enforce policies that take in the held call's tool and agent.
    let candidates: Vec<_> = policies
        .set
        .candidates(
            &hold.tool,
            &agent.id,
            agent.external_id.as_deref(),
            &agent.tags,
        )
        .filter(|p| p.mode == Mode::Enforce)
        .collect();
    // A policy with a condition, unchanged since the hold was made, over
    // an agent unchanged since (its tags and names are what selectors
    // match), was evaluated for the held call: what it did then stands,
    // unless its condition reads what moves on while the call waits (the
    // session's later calls, the time): the approved call runs now, and
    // the condition cannot be judged again here without the arguments.
    let change = agent_change_since(g, tenant, &agent, hold.created_at).await?;
    if change == AgentChange::Status {
        return Ok(Err(
            "the agent's status changed since the call was held (it was suspended, or changed \
             in ways its records do not show); ask again"
                .into(),
        ));
    }
    let agent_changed = change != AgentChange::None;
    let unchanged = |p: &warden_policy::Policy<_>| {
        !agent_changed
            && policies
                .facts
                .get(&p.id)
                .is_some_and(|f| f.updated_at < hold.created_at)
    };
    let moves_on = |p: &warden_policy::Policy<_>| {
        p.condition
            .as_ref()
            .is_some_and(|c| c.reads("session") || c.reads("now"))
    };
    let judged_then =
        |p: &warden_policy::Policy<_>| p.condition.is_some() && unchanged(p) && !moves_on(p);
    // The holding policy must still take in the call, as a re-submission
    // would find: its selector still selecting the agent as it is now, and
    // its condition still standing as judged then (else the call may fall
    // to a lower `deny`, or the default).
    if let Some(held_by) = policies.set.policy(&hold.policy_id) {
        if !candidates.iter().any(|p| p.id == held_by.id) {
            return Ok(Err(
                "the policy that held the call no longer applies to the agent; ask again".into(),
            ));
        }
        // (Its version is the hold's, checked above: only the agent and
        // what moves on can have changed. It selected the agent then, and
        // does now, so an agent's change matters only to a condition that
        // reads the agent.)
        if let Some(condition) = &held_by.condition {
            let changed = [
                (agent_changed && condition.reads("agent")).then_some("the agent, which changed"),
                condition.reads("session").then_some("the session"),
                condition.reads("now").then_some("the time"),
            ];
            let changed: Vec<&str> = changed.into_iter().flatten().collect();
            if !changed.is_empty() {
                return Ok(Err(format!(
                    "the condition of the policy that held the call reads what may have changed \
                     since the call was held ({}); submit the call again with its hold token",
                    changed.join(", ")
                )));
            }
        }
    }
    let outranking = candidates
        .iter()
        .filter(|p| p.id != hold.policy_id)
        .filter(|p| holding.is_none_or(|h| (p.priority, p.decision.restrictiveness()) > h))
        // An allow or audit would let the call run anyway.
        .filter(|p| p.decision.restrictiveness() > Decision::Audit.restrictiveness())
        // One without a condition would have decided then; one judged
        // then did not hold (else it would have decided); else it counts.
        .find(|p| !judged_then(p));
    if let Some(p) = outranking {
        let why = if unchanged(p) && moves_on(p) {
            "reads the session or the time, which moved on since the hold, and could now decide the call"
        } else {
            "now outranks the one that held the call"
        };
        return Ok(Err(format!(
            "policy {} {why}; submit the call again with its hold token",
            p.id
        )));
    }
    // A `modify` tied with the holding policy changes the approved call's
    // arguments, which a poll's answer cannot carry: the call must be
    // submitted again with its hold token, and runs as changed. One judged
    // then counts only if it matched the held call (its decision's record
    // says); otherwise its condition cannot be judged without the
    // arguments, so it counts.
    // So does a `modify` above it (or any, under the default decision)
    // whose condition failed for the held call: its changes apply to the
    // approved call too (`docs/policies.md`), and its record matched it.
    let tied = candidates.iter().filter(|p| {
        p.decision == Decision::Modify && holding.is_none_or(|(priority, _)| p.priority >= priority)
    });
    // What the held call's decision matched: `None` until read, then
    // `Some(None)` when its record cannot be read (everything counts).
    let mut matched_then: Option<Option<Vec<String>>> = None;
    let mut changing = None;
    for p in tied {
        if judged_then(p) {
            if matched_then.is_none() {
                // A record not believed (or not read): every tied
                // `modify` counts.
                matched_then = Some(
                    held_record(g.store.as_ref(), g.audit.sealer(), tenant, hold)
                        .await?
                        .map(|r| r.matched_policy_ids),
                );
            }
            if let Some(Some(matched)) = &matched_then {
                if !matched.contains(&p.id) {
                    continue;
                }
            }
        }
        changing = Some(p);
        break;
    }
    Ok(match changing {
        Some(p) => Err(format!(
            "policy {} changes this call's arguments, which a poll cannot pass on; \
             submit the call again with its hold token",
            p.id
        )),
        None => Ok(()),
    })
}

/// Uses an approved hold's approval for a poll whose answer runs the call
/// (the Thoth SDK's): the use is a decision of its own, audited (and so an
/// agent event) in the same transaction that marks the approval used.
/// `Err` when the approval was used first by anything else.
pub async fn use_by_poll(
    g: &super::Governance,
    tenant: &Tenant,
    actor: &str,
    hold: &Hold,
) -> ServiceResult<Result<(), String>> {
    let now = now_ms();
    // What ran, as the held decision recorded it (redacted as stored), so
    // that the record of the run says so without following `hold_id`.
    // Only from a record that matches its hash: an edit copied into this
    // new, correctly chained record would pass verification.
    let held = held_record(g.store.as_ref(), g.audit.sealer(), tenant, hold).await?;
    let record = AuditRecord {
        id: new_time_ordered_id(prefix::AUDIT),
        kind: AuditKind::Decision,
        at: now,
        actor: actor.to_string(),
        agent_id: Some(hold.agent_id.clone()),
        tool: Some(hold.tool.clone()),
        arguments: held.as_ref().and_then(|r| r.arguments.clone()),
        decision: Some("allow".into()),
        reason: Some(format!(
            "step-up approved by {} (hold {}); the approval was used by the agent's poll",
            hold.decided_by.clone().unwrap_or_default(),
            hold.id
        )),
        matched_policy_ids: held
            .as_ref()
            .map(|r| r.matched_policy_ids.clone())
            .unwrap_or_default(),
        monitored: vec![],
        drift: None,
        session_id: hold.session_id.clone(),
        user_id: held.as_ref().and_then(|r| r.user_id.clone()),
        latency_us: None,
        hold_id: Some(hold.id.clone()),
        policy_id: hold_policy(hold),
        policy_version: hold_policy(hold).map(|_| hold.policy_version),
        detail: json!({
            "redeemed_hold_id": hold.id,
            "decision_audit_id": hold.audit_id,
            "used_by": "poll",
        }),
    };
    let mut record = record;
    // The tool called before it in its session, as the held call saw it:
    // what drift learns of this call, live and when rebuilt.
    if let Some(previous) = held
        .as_ref()
        .and_then(|r| r.detail.get("previous_tool"))
        .filter(|v| v.is_string())
    {
        record.detail["previous_tool"] = previous.clone();
    }
    let call = super::drift::RecordedCall::of(&record);
    // The agent's name as its SDK knows it, as on every decision record
    // (and so on the agent event searched by it).
    if let Some(external) = held
        .as_ref()
        .and_then(|r| r.detail.get("external_agent_id"))
    {
        record.detail["external_agent_id"] = external.clone();
    }
    let companion = Companion::RedeemHold {
        hold_id: hold.id.clone(),
        at: now,
    };
    // The call joins its session in the session's turn.
    let _turn = g
        .sessions
        .turn(tenant, &hold.agent_id, hold.session_id.as_deref())
        .await;
    match g
        .audit
        .append(tenant.clone(), record, Some(companion))
        .await
    {
        Ok(chained) => {
            // The call runs now: its agent's profile learns it (it was not
            // learned when held) and it joins its session's history.
            if let Some(call) = &call {
                g.drift.observe(
                    tenant,
                    &hold.agent_id,
                    hold.session_id.as_deref(),
                    &call.observation(),
                    chained.sequence,
                );
            }
            Ok(Ok(()))
        }
        // Used meanwhile, found lapsed by a sweep, or no longer standing:
        // said as it is.
        Err(AppendError::Precondition) => {
            let now = now_ms();
            let current = g.store.get_hold(tenant, &hold.id).await?;
            Ok(Err(match current {
                Some(h) if h.approval_expired(now) => {
                    format!("the approval {}; ask again", h.approval_end(now))
                }
                Some(h) if h.redeemed_at.is_none() && h.status == HoldStatus::Approved => {
                    format!("{}; ask again", no_longer_stands())
                }
                _ => "the hold's approval was already used".into(),
            }))
        }
        Err(e) => Err(append_error(e)),
    }
}

/// Expires every pending hold past its time, and audits every approval
/// that lapsed unused; run in the background.
pub async fn expire_due(store: &dyn Store, audit: &AuditLog, waiters: &HoldWaiters) {
    // Run every second: a store that refuses would log it as often.
    static UNLISTED: warden_core::log_pace::SharedPaced = warden_core::log_pace::SharedPaced::new();
    let due = match store.expired_holds(now_ms(), 100).await {
        Ok(d) => {
            UNLISTED.reset();
            d
        }
        Err(e) => {
            if let Some(unlogged) = UNLISTED.due() {
                tracing::warn!(error = %e, unlogged, "listing expired holds failed");
            }
            return;
        }
    };
    for (tenant, hold) in due {
        if let Err(e) = expire_if_due(store, audit, waiters, &tenant, hold).await {
            tracing::warn!(error = %e, "expiring a hold failed");
        }
    }
    let lapsed = match store.lapsed_approvals(now_ms(), 100).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "listing lapsed approvals failed");
            return;
        }
    };
    for (tenant, hold) in lapsed {
        if let Err(e) = record_lapse(store, audit, &tenant, &hold, None).await {
            tracing::warn!(error = %e, "recording a lapsed approval failed");
        }
    }
    deny_outdated(store, audit, waiters).await;
}

/// Most outdated holds one pass of the sweep denies.
const OUTDATED_PER_PASS: i64 = 1_000;

/// Denies pending holds whose policy changed since it held the call:
/// those the change's own request left (past its first page, or cut short
/// by a crash) and those another replica made under the old version
/// before it saw the change. No approval of them could be used.
async fn deny_outdated(store: &dyn Store, audit: &AuditLog, waiters: &HoldWaiters) {
    let outdated = match store.outdated_holds(now_ms(), OUTDATED_PER_PASS).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "listing holds of changed policies failed");
            return;
        }
    };
    let (approved, outdated): (Vec<_>, Vec<_>) = outdated
        .into_iter()
        .partition(|(_, h)| h.status == HoldStatus::Approved);
    // Unused approvals that no longer stand are withdrawn, as the change's
    // own request does.
    for (tenant, hold) in &approved {
        let why = format!(
            "{}, so no approval could be used; ask again",
            warden_core::hold::NO_LONGER_STANDS
        );
        if let Err(e) = record_lapse(store, audit, tenant, hold, Some(("system", &why))).await {
            tracing::warn!(error = %e, hold_id = %hold.id, "withdrawing an approval no call could use failed");
        }
    }
    let (of_default, of_policies): (Vec<_>, Vec<_>) = outdated
        .into_iter()
        .partition(|(_, h)| h.policy_id.is_empty());
    let sweep = Denier {
        store,
        audit,
        waiters,
        actor: "system",
        comment: "",
    };
    sweep
        .deny_with(of_policies, super::orphan_holds::POLICY_CHANGED)
        .await;
    sweep
        .deny_with(of_default, super::orphan_holds::DEFAULT_CHANGED)
        .await;
    deny_abandoned(&sweep).await;
}

/// Denies pending holds whose agent was suspended or deleted, or whose
/// call's key was revoked, after the call was held: a call recorded just
/// after such a change is left pending by the change's own denials, and
/// would wait in approvers' queues for an approval no call could use.
async fn deny_abandoned(sweep: &Denier<'_>) {
    use warden_core::hold::Abandoned;
    let abandoned = match sweep
        .store
        .abandoned_holds(now_ms(), OUTDATED_PER_PASS)
        .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "listing holds of suspended agents or revoked keys failed");
            return;
        }
    };
    for (why, comment) in [
        (
            Abandoned::Agent,
            "the agent that made the call was suspended or deleted",
        ),
        (Abandoned::Key, super::orphan_holds::KEY_REVOKED),
    ] {
        let holds: Vec<_> = abandoned
            .iter()
            .filter(|(_, _, w)| *w == why)
            .map(|(tenant, hold, _)| (tenant.clone(), hold.clone()))
            .collect();
        sweep.deny_with(holds, comment).await;
    }
}

/// Holds denied side by side, by the sweep and by a change's request.
const DENIALS_AT_ONCE: usize = 32;

/// Who denies holds that no approval could be used for, and why.
pub(super) struct Denier<'a> {
    pub store: &'a dyn Store,
    pub audit: &'a AuditLog,
    pub waiters: &'a HoldWaiters,
    /// The key (or `system`) named as having decided.
    pub actor: &'a str,
    /// The comment each denial carries, shown to the agent.
    pub comment: &'a str,
}

impl Denier<'_> {
    /// Denies each hold (if any) with `comment` instead of this denier's.
    async fn deny_with(&self, holds: Vec<(Tenant, Hold)>, comment: &str) {
        if holds.is_empty() {
            return;
        }
        Denier { comment, ..*self }.deny_each(holds).await;
    }

    /// Denies each hold, several at a time so that their records share
    /// the audit log's commits; per hold, whether it was denied here
    /// (`false`: resolved meanwhile by someone else), or `Err` when the
    /// denial failed (logged).
    pub async fn deny_each(&self, holds: Vec<(Tenant, Hold)>) -> Vec<Result<bool, ()>> {
        use futures_util::stream::{self, StreamExt};
        stream::iter(holds)
            .map(|(tenant, hold)| async move {
                let denied = Resolution {
                    status: HoldStatus::Denied,
                    decided_by: Some(self.actor.to_string()),
                    comment: Some(self.comment.to_string()),
                };
                let resolved = resolve(
                    self.store,
                    self.audit,
                    self.waiters,
                    &tenant,
                    &hold,
                    denied,
                    self.actor,
                )
                .await;
                match resolved {
                    Ok(_) => Ok(true),
                    Err(ServiceError::Domain(Error::Conflict(_))) => Ok(false),
                    Err(e) => {
                        tracing::warn!(error = %e, hold_id = %hold.id, "denying a hold no approval could be used for failed");
                        Err(())
                    }
                }
            })
            .buffer_unordered(DENIALS_AT_ONCE)
            .collect()
            .await
    }
}

/// Audits an approval that lapsed unused, and marks the hold `expired`,
/// in one transaction: the log then says that the approved call never
/// ran, rather than leaving the approval as its last word. A use or
/// another replica's sweep that came first leaves it as it is.
/// `withdrawn` is who took it back before its time, and why (its
/// agent or the rule that held it changed, so no call could use it).
pub(super) async fn record_lapse(
    store: &dyn Store,
    audit: &AuditLog,
    tenant: &Tenant,
    hold: &Hold,
    withdrawn: Option<(&str, &str)>,
) -> ServiceResult<()> {
    let user_id = held_for(store, audit, tenant, hold).await?;
    let (actor, reason) = match withdrawn {
        Some((actor, why)) => (
            actor,
            format!("the step-up approval was withdrawn before it was used: {why}; denied"),
        ),
        None => (
            "system",
            "the step-up approval expired before it was used; denied".to_string(),
        ),
    };
    let mut detail = json!({
        "status": HoldStatus::Expired.as_str(),
        "approved_by": hold.decided_by,
        "approved_at": hold.decided_at.map(warden_core::time::to_rfc3339),
        "decision_audit_id": hold.audit_id,
        "args_sha256": hold.args_sha256,
    });
    // A withdrawal is no lapse: it names why, and no expiry it never
    // reached.
    match withdrawn {
        Some((_, why)) => detail["approval_withdrawn"] = json!(why),
        None => {
            detail["approval_lapsed"] = json!(true);
            detail["approval_expired_at"] = json!(hold
                .approval_expires_at()
                .map(warden_core::time::to_rfc3339));
        }
    }
    let record = resolution_record(hold, (now_ms(), actor), ("deny", &reason), user_id, detail);
    let companion = Companion::LapseApproval {
        hold_id: hold.id.clone(),
    };
    match audit.append(tenant.clone(), record, Some(companion)).await {
        Ok(_) | Err(AppendError::Precondition) => Ok(()),
        Err(e) => Err(append_error(e)),
    }
}
