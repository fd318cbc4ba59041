//! Appending validated events to the durable log. A 2xx is sent only after
//! the append committed.

use warden_core::event::syslog::scrub_event_credentials;
use warden_core::event::Event;
use warden_core::Tenant;
use warden_store::{EventAppend, IdempotentAnswer, StoreError};

use super::handoff::Appended;
use super::Telemetry;
use crate::auth::Principal;

/// A key bound to an agent speaks only for that agent, on every ingest
/// path (batch, NDJSON, the Thoth SDK's events, syslog's token).
pub fn bind_to_agent(principal: &Principal, events: &mut [Event]) {
    if let Some(agent) = &principal.agent_id {
        for event in events {
            event.agent_id = Some(agent.clone());
        }
    }
}

/// Names a registered agent on its event: its Warden id, and its external
/// id in `fields.external_agent_id`, which is Warden's to say (a value
/// sent under that name could make the event look like another agent's).
pub fn stamp_agent(event: &mut Event, id: &str, external_id: Option<&str>) {
    match external_id {
        Some(name) => event.fields.insert("external_agent_id".into(), name.into()),
        None => event.fields.remove("external_agent_id"),
    };
    event.agent_id = Some(id.to_string());
}

impl Telemetry {
    /// Appends `events` for `tenant` in one transaction (with the answer
    /// to a request made with an `Idempotency-Key`) once the index has
    /// room for them, hands them to the indexer and wakes it; returns
    /// their ids once they are on disk.
    pub async fn append(
        &self,
        tenant: &Tenant,
        events: Vec<Event>,
        answer: Option<&IdempotentAnswer>,
    ) -> Result<Vec<String>, StoreError> {
        self.append_paced(tenant, events, answer, true).await
    }

    /// As [`Self::append`], without waiting for the index before or after:
    /// for messages nobody waits an answer for, stored while the server
    /// stops (the index catches up from the log at the next start).
    pub async fn append_unpaced(
        &self,
        tenant: &Tenant,
        events: Vec<Event>,
    ) -> Result<Vec<String>, StoreError> {
        self.append_paced(tenant, events, None, false).await
    }

    async fn append_paced(
        &self,
        tenant: &Tenant,
        events: Vec<Event>,
        answer: Option<&IdempotentAnswer>,
        paced: bool,
    ) -> Result<Vec<String>, StoreError> {
        // A Warden key or token written into an event is never stored: every
        // key that reads events would see it.
        let mut events = events;
        let prepare = |events: &mut Vec<Event>| -> Vec<EventAppend> {
            events.iter_mut().for_each(scrub_event_credentials);
            events
                .iter()
                .map(|event| EventAppend {
                    tenant: tenant.clone(),
                    id: event.id.clone(),
                    occurred_at: event.timestamp,
                    body: event.to_json(),
                })
                .collect()
        };
        // Thousands of events take milliseconds to scrub and serialize.
        let heavy = events.len() >= crate::heavy_work::HEAVY_EVENTS;
        let mut rows = crate::heavy_work::off_workers_if(heavy, || prepare(&mut events));
        // Room in the index's backlog first, so that what clients have in
        // flight stays within what the index clears in half a second.
        let feed = self.feed();
        let work = rows.iter().map(|r| super::health::work(r.body.len())).sum();
        let admitted = if paced {
            feed.admit(work).await
        } else {
            feed.admit_now(work)
        };
        let last = self.store.append_events(&rows, answer).await?;
        let ids = events.iter().map(|e| e.id.clone()).collect();
        feed.hand_over(Appended {
            first_seq: last - events.len() as i64 + 1,
            tenant: tenant.clone(),
            bodies: rows.drain(..).map(|r| r.body).collect(),
            events,
        });
        drop(admitted);
        if paced {
            feed.keep_up(last).await;
        }
        Ok(ids)
    }
}
