//! Holds whose agent or policy was deleted, or whose policy changed: their
//! calls can never be approved (an approval checks the agent, and the
//! policy at the version that held the call), and they would otherwise
//! wait in approvers' queues until they expire. Each is denied, audited as any
//! denial, its poll woken. A hold that cannot be resolved now stays
//! pending and expires as usual.

use warden_core::hold::{HoldFilter, HoldStatus};
use warden_core::page::{Direction, PageRequest, MAX_LIMIT};
use warden_core::time::now_ms;

use super::holds::Denier;
use super::Governance;
use crate::auth::Principal;

/// The comment on a hold denied because its policy changed.
pub const POLICY_CHANGED: &str =
    "the policy that held the call changed, so no approval could be used; ask again";

/// Whose pending holds are left without a way to be approved.
#[derive(Clone, Copy)]
pub enum Orphans<'a> {
    OfAgent(&'a str),
    OfSuspendedAgent(&'a str),
    OfPolicy(&'a str),
    /// The policy's holds made under versions before this one.
    OfChangedPolicy(&'a str, i64),
}

impl Orphans<'_> {
    /// The comment each denial carries, shown to the agent.
    fn why(self) -> &'static str {
        match self {
            Orphans::OfAgent(_) => "the agent that made the call was deleted",
            Orphans::OfSuspendedAgent(_) => "the agent that made the call was suspended",
            Orphans::OfPolicy(_) => "the policy that held the call was deleted",
            Orphans::OfChangedPolicy(..) => POLICY_CHANGED,
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
    let (agent_id, policy_id, before_version) = match orphans {
        Orphans::OfAgent(id) | Orphans::OfSuspendedAgent(id) => (Some(id.to_string()), None, None),
        Orphans::OfPolicy(id) => (None, Some(id.to_string()), None),
        Orphans::OfChangedPolicy(id, version) => (None, Some(id.to_string()), Some(version)),
    };
    loop {
        let filter = HoldFilter {
            status: Some(HoldStatus::Pending),
            agent_id: agent_id.clone(),
            policy_id: policy_id.clone(),
            now: now_ms(),
        };
        let page = PageRequest {
            limit: MAX_LIMIT,
            sort: "created_at".into(),
            direction: Direction::Asc,
            after: None,
        };
        let pending = match g.store.list_holds(&tenant, &filter, &page).await {
            // Holds the changed policy made since stand.
            Ok(found) => found
                .items
                .into_iter()
                .filter(|h| before_version.is_none_or(|v| h.policy_version < v))
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(error = %e, "listing the holds left without an agent or policy failed");
                return;
            }
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
        // A policy's further pages are the sweep's.
        if !denied_any || !matches!(orphans, Orphans::OfAgent(_) | Orphans::OfSuspendedAgent(_)) {
            return;
        }
    }
}
