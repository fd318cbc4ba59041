//! Calls of one session, decided one at a time.
//!
//! A policy on what ran earlier in a session (`'crm.read' in
//! session.tools`) reads the session as the calls before left it, and a
//! call joins it only once its record is committed. Two calls of one
//! session decided side by side would each read the session without the
//! other: parallel tool calls could then do together what either rule
//! forbids after the other. So a call of a session holds that session's
//! turn from reading it until it has joined it. Sessions share a fixed set
//! of turns by hash, so memory stays bounded; two sessions that share a
//! turn only wait for each other. The order is this process's: calls of
//! one session sent to two replicas at once are not ordered.

use std::hash::BuildHasher;

use tokio::sync::{Mutex, MutexGuard};
use warden_core::Tenant;

/// Turns shared by every session: enough that unrelated sessions rarely
/// share one while a few hundred calls are in flight.
const TURNS: usize = 4096;

pub struct SessionOrder {
    turns: Box<[Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for SessionOrder {
    fn default() -> Self {
        SessionOrder {
            turns: (0..TURNS).map(|_| Mutex::new(())).collect(),
            hasher: Default::default(),
        }
    }
}

impl SessionOrder {
    /// Waits for the session's turn; the call keeps it until the guard
    /// drops. `None` for a call of no session.
    pub async fn turn(
        &self,
        tenant: &Tenant,
        agent_id: &str,
        session_id: Option<&str>,
    ) -> Option<MutexGuard<'_, ()>> {
        let session_id = session_id?;
        let at = self.hasher.hash_one((
            &tenant.org_id,
            tenant.environment.as_str(),
            agent_id,
            session_id,
        )) as usize
            % self.turns.len();
        Some(self.turns[at].lock().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn tenant() -> Tenant {
        Tenant {
            org_id: "org_a".into(),
            environment: warden_core::Environment::Live,
        }
    }

    #[tokio::test]
    async fn a_session_waits_for_its_own_turn_only() {
        let order = Arc::new(SessionOrder::default());
        let held = order.turn(&tenant(), "agt_1", Some("s1")).await.unwrap();
        // Another call of the same session waits while the turn is held.
        let o = order.clone();
        let waiting = tokio::spawn(async move {
            let _t = o.turn(&tenant(), "agt_1", Some("s1")).await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        // Calls of no session never wait.
        assert!(order.turn(&tenant(), "agt_1", None).await.is_none());
        drop(held);
        waiting.await.unwrap();
    }
}
