//! Retention: an organization's `retention_days` removes its events whose
//! time is older than that from the store and from this process's index,
//! as Splunk ages its buckets by event time.

use std::time::Duration;

use warden_core::time::now_ms;

use super::Telemetry;

/// The organization setting's name.
pub const SETTING: &str = "event_retention_days";
/// Longest retention one may set: ten years.
pub const MAX_DAYS: i64 = 3_650;

impl Telemetry {
    /// Removes every organization's expired events; returns how many left
    /// the store.
    pub async fn apply_retention(&self) -> Result<u64, String> {
        let mut removed = 0;
        for (org_id, value) in self
            .store
            .orgs_with_setting(SETTING)
            .await
            .map_err(|e| e.to_string())?
        {
            let Ok(days) = value.parse::<i64>() else {
                continue;
            };
            removed += self.expire_org(&org_id, days).await?;
        }
        Ok(removed)
    }

    /// Removes an organization's events older than `days` from the store
    /// and this process's index; returns how many left the store.
    pub async fn expire_org(&self, org_id: &str, days: i64) -> Result<u64, String> {
        let before = now_ms() - days * 86_400_000;
        let removed = self
            .store
            .expire_events(org_id, before)
            .await
            .map_err(|e| e.to_string())?;
        // Events acknowledged before the removal that the index has yet
        // to take would come back with it: the index first catches up
        // with the log as it is now (briefly, if it can), then forgets.
        if let Ok(head) = self.store.event_log_head().await {
            let mut searchable = self.searchable.subscribe();
            let _ = tokio::time::timeout(CATCH_UP, searchable.wait_for(|at| *at >= head)).await;
        }
        let (index, org_id) = (self.index.clone(), org_id.to_string());
        tokio::task::spawn_blocking(move || index.expire(&org_id, before))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(removed)
    }
}

/// Longest a removal waits for the index to take what the log holds.
const CATCH_UP: Duration = Duration::from_secs(5);

/// How often a replica reads the organizations' settings to see a change
/// (the replica that took it has applied it already).
const SETTINGS_POLL: Duration = Duration::from_secs(2);

/// Applies retention at start, every `every`, and when a setting changes,
/// through this replica or another.
pub async fn run(telemetry: std::sync::Arc<Telemetry>, every: Duration) {
    let settings = || async {
        telemetry
            .store
            .orgs_with_setting(SETTING)
            .await
            .map(|mut s| {
                s.sort();
                s
            })
            .ok()
    };
    loop {
        let seen = settings().await;
        match telemetry.apply_retention().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "retention removed expired events"),
            Err(err) => tracing::warn!(error = %err, "retention failed"),
        }
        let due = tokio::time::Instant::now() + every;
        while tokio::time::Instant::now() < due {
            let left = due.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::sleep(SETTINGS_POLL.min(left)).await;
            if settings().await != seen {
                break;
            }
        }
    }
}
