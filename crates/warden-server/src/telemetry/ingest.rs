//! Appending validated events to the durable log. A 2xx is sent only after
//! the append committed.

use warden_core::event::Event;
use warden_core::Tenant;
use warden_store::{EventAppend, StoreError};

use super::Telemetry;

impl Telemetry {
    /// Appends `events` for `tenant` in one transaction and wakes the
    /// indexer; returns once they are on disk.
    pub async fn append(&self, tenant: &Tenant, events: &[Event]) -> Result<i64, StoreError> {
        let rows: Vec<EventAppend> = events
            .iter()
            .map(|event| EventAppend {
                tenant: tenant.clone(),
                id: event.id.clone(),
                occurred_at: event.timestamp,
                body: event.to_json(),
            })
            .collect();
        let last = self.store.append_events(&rows).await?;
        self.appended.notify_one();
        Ok(last)
    }
}
