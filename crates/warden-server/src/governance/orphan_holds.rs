//! Holds whose agent or policy was deleted, or whose policy (or the
//! default decision that held them) changed: their calls can never be
//! approved (an approval checks the agent, and the policy at the version
//! that held the call), and they would otherwise wait in approvers'
//! queues until they expire. Each is denied, audited as any denial, its
//! poll woken. A hold that cannot be resolved now expires as usual.
//! An approval such a hold was given and has not used is withdrawn (the
//! hold reads `expired`, with a record saying why), so that its views and
//! polls do not say `approved` for what no call could use; the store's
//! check of an approval at use refuses it anyway. The default decision has
//! no versions for an approval to be checked against, so its withdrawal
//! is also what keeps the default going back from making it good again.

use warden_core::hold::{HoldFilter, HoldStatus};
use warden_core::page::{Direction, PageRequest, MAX_LIMIT};
use warden_core::time::now_ms;

use super::holds::Denier;
use super::Governance;
use crate::auth::Principal;

/// The comment on a hold denied because its policy changed.
pub const POLICY_CHANGED: &str =
    "the policy that held the call changed, so no approval could be used; ask again";

/// The comment on a hold denied because the default decision that held
/// it changed.
pub const DEFAULT_CHANGED: &str =
    "the default decision that held the call changed, so no approval could be used; ask again";

/// The comment on a hold denied because the key that made its call was
/// revoked.
pub const KEY_REVOKED: &str = "the key that made the call was revoked";

/// Whose pending holds are left without a way to be approved.
#[derive(Clone, Copy)]
pub enum Orphans<'a> {
    OfAgent(&'a str),
    OfSuspendedAgent(&'a str),
    OfPolicy(&'a str),
    /// The policy's holds made under versions before this one.
    OfChangedPolicy(&'a str, i64),
    /// Holds the default decision made, after it changed.
    OfDefaultDecision,
    /// Holds of calls made with a key since revoked: whoever held the key
    /// may not be who the agent's owners trust, so its held calls are not
    /// left for an approver (nor for another key of the agent to use).
    OfRevokedKey(&'a str),
}

impl Orphans<'_> {
    /// The comment each denial carries, shown to the agent.
    fn why(self) -> &'static str {
        match self {
            Orphans::OfAgent(_) => "the agent that made the call was deleted",
            Orphans::OfSuspendedAgent(_) => "the agent that made the call was suspended",
            Orphans::OfPolicy(_) => "the policy that held the call was deleted",
            Orphans::OfChangedPolicy(..) => POLICY_CHANGED,
            Orphans::OfDefaultDecision => DEFAULT_CHANGED,
            Orphans::OfRevokedKey(_) => KEY_REVOKED,
        }
    }
}

/// Denies the pending holds of a deleted agent or policy, or those a
/// policy made before it changed. A policy's are denied a page at a time
/// here, the first page only: the request that changed it answers
/// without waiting on thousands, and the background sweep
/// (`holds::expire_due`) denies the rest.
pub async fn deny_orphaned_holds(g: &Governance, principal: &Principal, orphans: Orphans<'_>) {
    let tenant = principal.tenant();
    let orphaned = Orphaned::of(orphans);
    withdraw_approvals(g, principal, orphans, &orphaned).await;
    loop {
        let Some(pending) = orphaned.first_page(g, &tenant, HoldStatus::Pending).await else {
            return;
        };
        if pending.is_empty() {
            return;
        }
        // A round that denies none (each resolved by someone else, or
        // refused) ends it: what is left expires as usual.
        let denier = Denier {
            store: g.store.as_ref(),
            audit: &g.audit,
            waiters: &g.waiters,
            actor: &principal.key_id,
            comment: orphans.why(),
        };
        let outcomes = denier
            .deny_each(pending.into_iter().map(|h| (tenant.clone(), h)).collect())
            .await;
        if outcomes.iter().any(Result::is_err) {
            return;
        }
        let denied_any = outcomes.contains(&Ok(true));
        // A policy's further pages are the sweep's (which finds them by
        // their version); the default has none, so its are all denied here.
        let all_here = matches!(
            orphans,
            Orphans::OfAgent(_)
                | Orphans::OfSuspendedAgent(_)
                | Orphans::OfDefaultDecision
                | Orphans::OfRevokedKey(_)
        );
        if !denied_any || !all_here {
            return;
        }
    }
}

/// Which holds [`Orphans`] names: an agent's, or a policy's (under
/// versions before one), the default's being the empty policy id.
struct Orphaned {
    agent_id: Option<String>,
    policy_id: Option<String>,
    before_version: Option<i64>,
    /// The key whose calls they held (the key named by each hold's
    /// decision record).
    key_id: Option<String>,
}

impl Orphaned {
    fn of(orphans: Orphans<'_>) -> Self {
        let (agent_id, policy_id, before_version) = match orphans {
            Orphans::OfAgent(id) | Orphans::OfSuspendedAgent(id) => {
                (Some(id.to_string()), None, None)
            }
            Orphans::OfPolicy(id) => (None, Some(id.to_string()), None),
            Orphans::OfChangedPolicy(id, version) => (None, Some(id.to_string()), Some(version)),
            Orphans::OfDefaultDecision => (None, Some(String::new()), None),
            Orphans::OfRevokedKey(_) => (None, None, None),
        };
        let key_id = match orphans {
            Orphans::OfRevokedKey(key) => Some(key.to_string()),
            _ => None,
        };
        Orphaned {
            agent_id,
            policy_id,
            before_version,
            key_id,
        }
    }

    /// The first page of such holds in `status` (`None`, logged, when
    /// they cannot be listed).
    async fn first_page(
        &self,
        g: &Governance,
        tenant: &warden_core::Tenant,
        status: HoldStatus,
    ) -> Option<Vec<warden_core::hold::Hold>> {
        // Approvals used are left as they are: listing only the unused
        // ones, a first page of used ones cannot hide those after it.
        let filter = HoldFilter {
            status: Some(status),
            agent_id: self.agent_id.clone(),
            policy_id: self.policy_id.clone(),
            unused: status == HoldStatus::Approved,
            now: now_ms(),
        };
        let page = PageRequest {
            limit: MAX_LIMIT,
            sort: "created_at".into(),
            direction: Direction::Asc,
            after: None,
        };
        let listed = match g.store.list_holds(tenant, &filter, &page).await {
            // Holds the changed policy made since stand.
            Ok(found) => found
                .items
                .into_iter()
                .filter(|h| self.before_version.is_none_or(|v| h.policy_version < v)),
            Err(e) => {
                tracing::warn!(error = %e, "listing the holds left without an agent or policy failed");
                return None;
            }
        };
        let Some(key) = &self.key_id else {
            return Some(listed.collect());
        };
        let mut made_with_key = Vec::new();
        for hold in listed {
            let held =
                super::holds::held_record(g.store.as_ref(), g.audit.sealer(), tenant, &hold).await;
            match held {
                // A record not believed (or gone) cannot clear its hold of
                // the key: its approval is withdrawn too.
                Ok(decision) if decision.as_ref().is_none_or(|d| d.actor == *key) => {
                    made_with_key.push(hold)
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading a held call's record failed");
                    return None;
                }
            }
        }
        Some(made_with_key)
    }
}

/// Withdraws every unused approval of the holds `orphans` names, a page at
/// a time, until a page withdraws none.
async fn withdraw_approvals(
    g: &Governance,
    principal: &Principal,
    orphans: Orphans<'_>,
    orphaned: &Orphaned,
) {
    let tenant = principal.tenant();
    loop {
        let Some(approved) = orphaned.first_page(g, &tenant, HoldStatus::Approved).await else {
            return;
        };
        let mut withdrawn_any = false;
        for hold in approved.into_iter().filter(|h| h.redeemed_at.is_none()) {
            let why = (principal.key_id.as_str(), orphans.why());
            match super::holds::record_lapse(g.store.as_ref(), &g.audit, &tenant, &hold, Some(why))
                .await
            {
                Ok(()) => withdrawn_any = true,
                Err(e) => {
                    tracing::warn!(error = %e, hold_id = %hold.id, "withdrawing an approval no call could use failed");
                }
            }
        }
        if !withdrawn_any {
            return;
        }
    }
}
