//! Discovered agents whose first decision was never recorded. Enforcement
//! stores a discovered agent before its decision's record commits (the
//! decision is evaluated for that agent, and concurrent first calls agree
//! on one agent); a process stopped between the two (`kill -9`, a lost
//! machine) leaves an agent that no record accounts for, and no caller was
//! answered for it. A sweep takes each such agent back once it is older
//! than any decision in flight could be, as a failed append does at once.

use std::time::Duration;

use warden_core::time::now_ms;

use super::Governance;

/// How old an unrecorded discovered agent must be before it is taken
/// back: a decision in flight on any replica commits well within it.
pub const GRACE: Duration = Duration::from_secs(60);
/// Agents looked at per sweep.
const PER_SWEEP: i64 = 500;

/// Takes back discovered agents that no audit record names, past
/// [`GRACE`]; returns how many.
pub async fn take_back(g: &Governance) -> usize {
    let before = now_ms() - GRACE.as_millis() as i64;
    let found = match g.store.unrecorded_discoveries(before, PER_SWEEP).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "listing discovered agents without a record failed");
            return 0;
        }
    };
    let mut taken = 0;
    for (tenant, id, external_id) in found {
        match g.store.delete_unrecorded_discovery(&tenant, &id).await {
            Ok(true) => {
                taken += 1;
                g.agents.forget_tenant(&tenant);
                tracing::warn!(
                    agent_id = %id,
                    external_id = external_id.as_deref().unwrap_or_default(),
                    org_id = %tenant.org_id,
                    "took back a discovered agent whose first decision was never recorded (the process stopped between the two)"
                );
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, agent_id = %id, "taking back a discovered agent without a record failed")
            }
        }
    }
    taken
}
