//! Retention: an organization's `retention_days` removes its events whose
//! time is older than that from the store and from this process's index,
//! as Splunk ages its buckets by event time.

use std::time::Duration;

use warden_core::time::now_ms;

use super::Telemetry;

/// The organization setting's name.
pub const SETTING: &str = "event_retention_days";
/// The setting that records recent removals (a JSON list of `[before,
/// through]`), so that every replica's index forgets them.
pub const REMOVALS: &str = "event_retention_removals";
/// Removals kept per organization.
const KEPT_REMOVALS: usize = 32;
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
        let head = self.store.event_log_head().await.ok();
        if let Some(head) = head {
            let mut searchable = self.searchable.subscribe();
            let _ = tokio::time::timeout(CATCH_UP, searchable.wait_for(|at| *at >= head)).await;
        }
        if removed > 0 {
            // Other replicas' indexes forget them too, even if the setting
            // changes back before they read it.
            if let Some(head) = head {
                self.record_removal(org_id, before, head).await?;
            }
        }
        self.forget(org_id, before, None).await?;
        Ok(removed)
    }

    /// This process's index forgets an organization's events before
    /// `before` (up to log position `through`, when given).
    async fn forget(&self, org_id: &str, before: i64, through: Option<i64>) -> Result<(), String> {
        let (index, org_id) = (self.index.clone(), org_id.to_string());
        let through = through.map(|t| t.max(0) as u64);
        tokio::task::spawn_blocking(move || index.expire(&org_id, before, through))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Keeps, in the organization's settings, that events before `before`
    /// up to log position `through` left the store: the latest
    /// [`KEPT_REMOVALS`], for replicas that did not see the setting that
    /// removed them.
    async fn record_removal(&self, org_id: &str, before: i64, through: i64) -> Result<(), String> {
        let stored = self
            .store
            .org_setting(org_id, REMOVALS)
            .await
            .map_err(|e| e.to_string())?;
        let mut removals: Vec<(i64, i64)> = stored
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        removals.push((before, through));
        let excess = removals.len().saturating_sub(KEPT_REMOVALS);
        removals.drain(..excess);
        let text = serde_json::to_string(&removals).map_err(|e| e.to_string())?;
        self.store
            .set_org_setting(org_id, REMOVALS, Some(&text))
            .await
            .map_err(|e| e.to_string())?;
        self.applied_removals
            .lock()
            .unwrap()
            .insert((org_id.to_string(), before, through));
        Ok(())
    }

    /// Makes this process's index forget what other replicas' retention
    /// removed from the store, as each removal recorded it.
    pub async fn apply_removals(&self) -> Result<(), String> {
        let recorded = self
            .store
            .orgs_with_setting(REMOVALS)
            .await
            .map_err(|e| e.to_string())?;
        for (org_id, text) in recorded {
            let removals: Vec<(i64, i64)> = serde_json::from_str(&text).unwrap_or_default();
            for (before, through) in removals {
                let key = (org_id.clone(), before, through);
                if self.applied_removals.lock().unwrap().contains(&key) {
                    continue;
                }
                self.forget(&org_id, before, Some(through)).await?;
                self.applied_removals.lock().unwrap().insert(key);
            }
        }
        Ok(())
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
        let mut both = Vec::new();
        for name in [SETTING, REMOVALS] {
            let mut found = telemetry.store.orgs_with_setting(name).await.ok()?;
            found.sort();
            both.push(found);
        }
        Some(both)
    };
    loop {
        let seen = settings().await;
        match telemetry.apply_retention().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "retention removed expired events"),
            Err(err) => tracing::warn!(error = %err, "retention failed"),
        }
        if let Err(err) = telemetry.apply_removals().await {
            tracing::warn!(error = %err, "applying other replicas' removals failed");
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
