//! Warden's persistence. One [`Store`] trait over everything the services
//! keep; [`SqlStore`] implements it for SQLite (embedded default) and
//! PostgreSQL (scale-out), through the small [`db`] seam that each backend
//! implements. No SQL exists outside this crate.
//!
//! Architecture invariant: every tenant-owned query filters by organization
//! and environment, taken from a [`Tenant`] the caller got from a credential.

mod db;
mod error;
mod migrate;
mod postgres;
mod sql;
mod sqlite;

use async_trait::async_trait;
use warden_core::agent::{Agent, AgentFilter};
use warden_core::api_key::ApiKey;
use warden_core::org::Organization;
use warden_core::page::{Page, PageRequest};
use warden_core::time::Millis;
use warden_core::Tenant;

pub use error::{StoreError, StoreResult};
pub use sql::{create_private_dir, Backend, SqlStore};

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
    /// Marks a key revoked; false when no such active key exists.
    async fn revoke_api_key(&self, tenant: &Tenant, id: &str, at: Millis) -> StoreResult<bool>;
    /// Replaces a key's secret, keeping the old digest valid until
    /// `previous_valid_until`.
    async fn rotate_api_key(
        &self,
        tenant: &Tenant,
        id: &str,
        new_digest: &str,
        last_four: &str,
        previous_valid_until: Option<Millis>,
        at: Millis,
    ) -> StoreResult<Option<ApiKey>>;
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
