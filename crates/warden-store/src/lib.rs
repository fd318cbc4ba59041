//! Warden's persistence. One [`Store`] trait over everything the services
//! keep; [`SqlStore`] implements it for SQLite (embedded default) and
//! PostgreSQL (scale-out), through the small [`db`] seam that each backend
//! implements. No SQL exists outside this crate.
//!
//! Architecture invariant: every tenant-owned query filters by organization
//! and environment, taken from a [`Tenant`] the caller got from a credential.

mod backup;
mod db;
mod error;
mod migrate;
mod postgres;
mod restore;
mod sql;
mod sqlite;

use async_trait::async_trait;
use warden_core::agent::{Agent, AgentFilter};
use warden_core::api_key::ApiKey;
use warden_core::audit::{AuditFilter, ChainedRecord};
use warden_core::hold::{Hold, HoldFilter, HoldStatus};
use warden_core::org::Organization;
use warden_core::page::{Page, PageRequest};
use warden_core::policy::{PolicyRecord, PolicyVersion};
use warden_core::time::Millis;
use warden_core::Tenant;

pub use backup::{backup_sqlite, BackedUp};
pub use error::{StoreError, StoreResult};
pub use restore::{restore_sqlite, Restored};
pub use sql::{
    before_migrating, create_private_dir, keep_private, schema_version, Backend, BeforeMigrating,
    IndexedColumns, SqlStore,
};

/// A write that commits with an audit record or not at all.
#[derive(Debug, Clone)]
pub enum Companion {
    InsertHold(Hold),
    /// Resolves a hold that is still pending.
    ResolveHold {
        hold_id: String,
        status: HoldStatus,
        decided_by: Option<String>,
        decided_at: Millis,
        comment: Option<String>,
    },
    /// Uses an approved hold's approval; once.
    RedeemHold {
        hold_id: String,
        at: Millis,
    },
    /// Marks an approval that lapsed unused: the hold becomes `expired`,
    /// keeping who approved it; only while it is approved and unused.
    LapseApproval {
        hold_id: String,
    },
    CreatePolicy(PolicyRecord),
    /// Writes the policy if the stored one is at `version - 1`.
    UpdatePolicy(PolicyRecord),
    /// Deletes the policy if the stored one is at `version - 1`.
    DeletePolicy(PolicyRecord),
    /// Sets a setting the policy engine reads (bumps the generation), if
    /// it still has the value `was` (`None`: not set).
    SetTenantSetting {
        name: String,
        value: String,
        was: Option<String>,
        at: Millis,
    },
    /// Registers an agent (its name and external id must be free).
    CreateAgent(Agent),
    /// Writes the agent if the stored one is still at its `revision`.
    UpdateAgent(Agent),
    /// Deletes the agent, which must exist, and revokes its bound keys.
    DeleteAgent {
        id: String,
        at: Millis,
    },
    /// Stores a newly minted key (its digest only).
    InsertApiKey(ApiKey),
    /// Revokes a key that is not revoked yet.
    RevokeApiKey {
        id: String,
        at: Millis,
    },
    /// Gives a key that is not revoked a new secret.
    RotateApiKey(KeyRotation),
    /// Sets an organization-wide setting (`None` removes it).
    SetOrgSetting {
        name: String,
        value: Option<String>,
        at: Millis,
    },
    /// Writes an organization's name, plan and rate limit, if it is still
    /// as `was` and no other organization holds the new name (case aside).
    UpdateOrganization {
        was: Organization,
        now: Organization,
    },
}

/// A key's new secret digest; the old one stays valid until
/// `previous_valid_until` when that is set.
#[derive(Debug, Clone)]
pub struct KeyRotation {
    pub id: String,
    pub new_digest: String,
    /// The digest this rotation replaces: a rotation committed meanwhile
    /// by another request makes this one fail its precondition.
    pub replaces_digest: String,
    pub last_four: String,
    pub previous_valid_until: Option<Millis>,
    pub at: Millis,
}

/// One record for a tenant's chain, with what commits with it.
#[derive(Debug, Clone)]
pub struct AuditAppend {
    pub tenant: Tenant,
    pub link: ChainedRecord,
    pub companion: Option<Companion>,
    /// The record as a telemetry event, appended to the event log in the
    /// same transaction (a decision is also an agent event).
    pub event: Option<EventAppend>,
}

/// An audit record stored without a seal, as its columns read: what its
/// seal is made of.
#[derive(Debug, Clone)]
pub struct UnsealedRecord {
    pub id: String,
    pub org_id: String,
    pub environment: String,
    pub sequence: i64,
    pub hash: String,
}

/// A committed audit append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCommitted {
    /// The sequence number of the last event appended with the records
    /// (their decisions' agent events, numbered in batch order); `None`
    /// when none was.
    pub last_event_seq: Option<i64>,
}

/// The answer to a request made with an `Idempotency-Key`, recorded in
/// the transaction that makes the change it answers: a crash after the
/// commit and before the answer leaves the answer for the retry to
/// replay, rather than a claim that lets the retry run twice.
#[derive(Debug, Clone)]
pub struct IdempotentAnswer {
    pub tenant: Tenant,
    /// The key as claimed (the API key's id and the header's value).
    pub key: String,
    pub status: u16,
    /// The answer's body, sealed under the master key.
    pub sealed_body: String,
}

/// An event for the durable event log.
#[derive(Debug, Clone)]
pub struct EventAppend {
    pub tenant: Tenant,
    pub id: String,
    /// The event's own time (`timestamp`): retention goes by it.
    pub occurred_at: Millis,
    /// The event's JSON (`warden_core::event::Event`).
    pub body: String,
}

/// An event read back from the log with its sequence number.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: i64,
    pub tenant: Tenant,
    pub body: String,
}

/// What a retried request with an `Idempotency-Key` finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyState {
    /// First use of the key: the caller runs the request and records it.
    Fresh,
    /// An earlier request with this key finished: replay its response.
    Completed { status: u16, body: String },
    /// An earlier request with this key is still running.
    InProgress,
    /// The key was used with another request body.
    Mismatch,
}

/// Everything Warden persists. Writes return only once committed to disk.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Whether the store answers; for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Waits for in-flight work and closes connections.
    async fn close(&self);

    async fn is_initialized(&self) -> StoreResult<bool>;
    /// Creates the first organization and its keys, unless another process
    /// already initialized the store; returns whether this call did it.
    async fn initialize(&self, org: &Organization, keys: &[ApiKey]) -> StoreResult<bool>;
    /// A server-wide setting (the master key check value, the sealed token
    /// signing key).
    async fn server_setting(&self, name: &str) -> StoreResult<Option<String>>;
    /// Stores `value` unless the setting exists; returns what is stored, so
    /// that replicas racing at start-up agree.
    async fn server_setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String>;

    async fn create_organization(&self, org: &Organization, keys: &[ApiKey]) -> StoreResult<()>;
    async fn get_organization(&self, id: &str) -> StoreResult<Option<Organization>>;
    async fn list_organizations(&self) -> StoreResult<Vec<Organization>>;

    async fn insert_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// The key whose current or grace-period digest is `digest`, in any tenant.
    async fn find_api_key_by_digest(&self, digest: &str) -> StoreResult<Option<ApiKey>>;
    /// A key by id in any tenant: for token checks and host operators.
    async fn find_api_key(&self, id: &str) -> StoreResult<Option<ApiKey>>;
    async fn get_api_key(&self, tenant: &Tenant, id: &str) -> StoreResult<Option<ApiKey>>;
    /// Keys of the tenant, or only those bound to `agent_id` when given.
    async fn list_api_keys(
        &self,
        tenant: &Tenant,
        agent_id: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<Page<ApiKey>>;
    async fn record_key_use(&self, uses: &[(String, Millis)]) -> StoreResult<()>;

    async fn insert_agent(&self, tenant: &Tenant, agent: &Agent) -> StoreResult<()>;
    async fn get_agent(&self, tenant: &Tenant, id: &str) -> StoreResult<Option<Agent>>;
    async fn list_agents(
        &self,
        tenant: &Tenant,
        filter: &AgentFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Agent>>;
    /// Writes `agent` if the stored record is still at `agent.revision`;
    /// false when it is not (changed meanwhile, or gone).
    async fn update_agent(&self, tenant: &Tenant, agent: &Agent) -> StoreResult<bool>;
    async fn delete_agent(&self, tenant: &Tenant, id: &str) -> StoreResult<bool>;
    /// Discovered agents, in any tenant, created before `before`, that no
    /// audit record names: their first decision was never recorded (the
    /// process stopped between the two). Each with its external id.
    async fn unrecorded_discoveries(
        &self,
        before: Millis,
        limit: i64,
    ) -> StoreResult<Vec<(Tenant, String, Option<String>)>>;
    /// Deletes agent `id` if it is still a discovered agent that no audit
    /// record names; false if it is not (recorded, changed or gone).
    async fn delete_unrecorded_discovery(&self, tenant: &Tenant, id: &str) -> StoreResult<bool>;

    /// The agent whose id or `external_id` is `reference`.
    async fn find_agent(&self, tenant: &Tenant, reference: &str) -> StoreResult<Option<Agent>>;

    /// Whether an agent of the tenant has exactly this name, as the
    /// unique constraint compares names.
    async fn agent_name_taken(&self, tenant: &Tenant, name: &str) -> StoreResult<bool>;

    async fn get_policy(&self, tenant: &Tenant, id: &str) -> StoreResult<Option<PolicyRecord>>;
    async fn list_policies(
        &self,
        tenant: &Tenant,
        enabled: Option<bool>,
        page: &PageRequest,
    ) -> StoreResult<Page<PolicyRecord>>;
    async fn all_policies(&self, tenant: &Tenant) -> StoreResult<Vec<PolicyRecord>>;
    async fn count_policies(&self, tenant: &Tenant) -> StoreResult<i64>;
    async fn policy_versions(
        &self,
        tenant: &Tenant,
        policy_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<PolicyVersion>>;
    /// A counter bumped by every change of the tenant's policies or
    /// policy settings; replicas compare it to know when to recompile.
    async fn policy_generation(&self, tenant: &Tenant) -> StoreResult<i64>;
    async fn tenant_setting(&self, tenant: &Tenant, name: &str) -> StoreResult<Option<String>>;

    /// Appends records to their tenants' chains with their companions, all
    /// or nothing; `None` when a precondition failed and nothing was written.
    async fn append_audit(&self, batch: &[AuditAppend]) -> StoreResult<Option<AuditCommitted>>;
    /// Whether decisions' agent events are appended after their records
    /// commit, from the audit log (SQLite, written by one process), rather
    /// than in the same transaction (PostgreSQL, shared by replicas).
    fn derives_decision_events(&self) -> bool {
        false
    }
    /// Audit records committed after row `after`, in commit order, at most
    /// `limit`, each with its row number and its tenant and record (`None`:
    /// a row that no longer reads as one). Only where [`Store::derives_decision_events`].
    async fn audit_committed_after(
        &self,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, Option<(Tenant, ChainedRecord)>)>>;
    /// Appends events derived from committed records and moves consumer
    /// `cursor` to `position`, in one transaction; the last sequence
    /// number when any event was appended.
    async fn append_derived_events(
        &self,
        events: &[EventAppend],
        cursor: &str,
        position: i64,
    ) -> StoreResult<Option<i64>>;
    /// Appends events in one transaction, numbered in commit order, with
    /// the answer to the request that sent them when it carried an
    /// `Idempotency-Key`; returns the last sequence number.
    async fn append_events(
        &self,
        events: &[EventAppend],
        answer: Option<&IdempotentAnswer>,
    ) -> StoreResult<i64>;
    /// The last sequence number handed out.
    async fn event_log_head(&self) -> StoreResult<i64>;
    /// Events after `after`, in sequence order, at most `limit`.
    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<LoggedEvent>>;
    async fn count_events(&self, tenant: &Tenant) -> StoreResult<i64>;
    /// Removes an organization's events whose own time is before `before`.
    async fn expire_events(&self, org_id: &str, before: Millis) -> StoreResult<u64>;
    /// A log consumer's position (the last sequence number it processed).
    async fn consumer_cursor(&self, name: &str) -> StoreResult<Option<i64>>;
    /// Moves a consumer's position; `None` forgets it.
    async fn set_consumer_cursor(&self, name: &str, position: Option<i64>) -> StoreResult<()>;
    async fn org_setting(&self, org_id: &str, name: &str) -> StoreResult<Option<String>>;
    /// Every organization that has the setting, with its value.
    async fn orgs_with_setting(&self, name: &str) -> StoreResult<Vec<(String, String)>>;
    /// Sets (`None`: removes) an organization setting that is Warden's own
    /// bookkeeping, not a change someone makes (those go with an audit
    /// record, `Companion::SetOrgSetting`).
    async fn set_org_setting(
        &self,
        org_id: &str,
        name: &str,
        value: Option<&str>,
    ) -> StoreResult<()>;

    /// The last sequence number and hash of a tenant's chain.
    async fn audit_head(&self, tenant: &Tenant) -> StoreResult<(i64, String)>;
    async fn get_audit(&self, tenant: &Tenant, id: &str) -> StoreResult<Option<ChainedRecord>>;
    async fn list_audit(
        &self,
        tenant: &Tenant,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<ChainedRecord>>;
    /// Up to `limit` audit records of any chain stored without a seal.
    async fn unsealed_audit(&self, limit: i64) -> StoreResult<Vec<UnsealedRecord>>;
    /// When the schema began to seal records (its migration's time), and
    /// the time of the newest audit record without a seal.
    async fn audit_seal_times(&self) -> StoreResult<(Option<i64>, Option<i64>)>;
    /// Stores seals (`(audit id, seal)`) on records that have none;
    /// answers how many it stored.
    async fn seal_audit(&self, seals: &[(String, String)]) -> StoreResult<u64>;
    /// Up to `limit` records after sequence `after`, in order, with the
    /// columns stored beside them.
    async fn audit_chain_after(
        &self,
        tenant: &Tenant,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(ChainedRecord, IndexedColumns)>>;
    async fn agent_decisions_after(
        &self,
        tenant: &Tenant,
        agent_id: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChainedRecord>>;

    async fn get_hold(&self, tenant: &Tenant, id: &str) -> StoreResult<Option<Hold>>;
    async fn hold_by_token(&self, tenant: &Tenant, digest: &str) -> StoreResult<Option<Hold>>;
    async fn list_holds(
        &self,
        tenant: &Tenant,
        filter: &HoldFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Hold>>;
    async fn expired_holds(&self, now: Millis, limit: i64) -> StoreResult<Vec<(Tenant, Hold)>>;
    /// Approved holds whose approval lapsed unused by `now`, in any tenant.
    async fn lapsed_approvals(&self, now: Millis, limit: i64) -> StoreResult<Vec<(Tenant, Hold)>>;
    /// Pending holds, not yet due, whose policy is no longer at the version
    /// that held the call (changed, disabled or deleted), in any tenant.
    async fn outdated_holds(&self, now: Millis, limit: i64) -> StoreResult<Vec<(Tenant, Hold)>>;
    /// Pending holds, not yet due, whose agent is suspended or gone, or
    /// whose call's key is revoked, in any tenant, with which it is.
    async fn abandoned_holds(
        &self,
        now: Millis,
        limit: i64,
    ) -> StoreResult<Vec<(Tenant, Hold, warden_core::hold::Abandoned)>>;

    async fn drift_profile(
        &self,
        tenant: &Tenant,
        agent_id: &str,
    ) -> StoreResult<Option<(i64, String)>>;
    /// Saves (tenant, agent, sequence, profile JSON) snapshots.
    async fn save_drift_profiles(
        &self,
        snapshots: &[(Tenant, String, i64, String)],
        now: Millis,
    ) -> StoreResult<()>;
    async fn delete_drift_profile(&self, tenant: &Tenant, agent_id: &str) -> StoreResult<()>;

    /// Claims an idempotency key; records older than `expired_before`, and
    /// claims left unfinished for a minute, are forgotten first.
    async fn begin_idempotent(
        &self,
        tenant: &Tenant,
        key: &str,
        fingerprint: &str,
        now: Millis,
        expired_before: Millis,
    ) -> StoreResult<IdempotencyState>;
    async fn finish_idempotent(
        &self,
        tenant: &Tenant,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()>;
    async fn abandon_idempotent(&self, tenant: &Tenant, key: &str) -> StoreResult<()>;
    async fn purge_idempotency(&self, before: Millis) -> StoreResult<u64>;
}
