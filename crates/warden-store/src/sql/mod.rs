//! The SQL implementation of [`Store`](crate::Store): every method written
//! once against the [`Db`] seam, so SQLite and PostgreSQL run the same
//! queries. Queries use `$n` placeholders and only TEXT and BIGINT columns,
//! which both backends read alike.

mod agents;
mod builder;
mod idempotency;
mod keys;
mod orgs;
mod paging;
mod settings;

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use warden_core::agent::{Agent, AgentFilter};
use warden_core::api_key::ApiKey;
use warden_core::org::Organization;
use warden_core::page::{Page, PageRequest};
use warden_core::time::Millis;
use warden_core::Tenant;

use crate::db::{Db, Row};
use crate::postgres::PostgresDb;
use crate::sqlite::SqliteDb;
use crate::{IdempotencyState, Store, StoreError, StoreResult};

/// Which database a [`SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// SQLite or PostgreSQL behind one set of queries.
pub struct SqlStore {
    backend: Backend,
    db: Box<dyn Db>,
}

impl SqlStore {
    /// Opens (creating if needed) `warden.db` in `data_dir`.
    pub async fn open_sqlite(data_dir: &Path) -> StoreResult<Self> {
        create_private_dir(data_dir)?;
        let path = data_dir.join("warden.db");
        let db = tokio::task::spawn_blocking(move || SqliteDb::open(&path, crate::migrate::SQLITE))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        Ok(SqlStore {
            backend: Backend::Sqlite,
            db: Box::new(db),
        })
    }

    /// Opens a `postgres://` URL and brings its schema up to date.
    pub async fn open(url: &str) -> StoreResult<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Corrupt(
                "database URL must start with postgres://".into(),
            ));
        }
        let db = PostgresDb::connect(url, crate::migrate::POSTGRES).await?;
        Ok(SqlStore {
            backend: Backend::Postgres,
            db: Box::new(db),
        })
    }
}

/// Creates the data directory readable by its owner only; an existing one
/// is left as the operator set it.
pub fn create_private_dir(dir: &Path) -> StoreResult<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", dir.display())))
}

/// Parses a stored enumeration value.
pub(crate) fn parse<T: FromStr>(row: &Row, name: &str) -> StoreResult<T> {
    let text = row.text(name)?;
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("column {name} holds `{text}`")))
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db.query("SELECT 1 AS one", vec![]).await.map(|_| ())
    }

    async fn close(&self) {
        self.db.close().await;
    }

    async fn is_initialized(&self) -> StoreResult<bool> {
        orgs::is_initialized(self.db.as_ref()).await
    }

    async fn initialize(&self, org: &Organization, keys: &[ApiKey]) -> StoreResult<bool> {
        orgs::initialize(self.db.as_ref(), org, keys).await
    }

    async fn server_setting(&self, name: &str) -> StoreResult<Option<String>> {
        settings::get(self.db.as_ref(), name).await
    }

    async fn server_setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String> {
        settings::get_or_insert(self.db.as_ref(), name, value).await
    }

    async fn create_organization(&self, org: &Organization, keys: &[ApiKey]) -> StoreResult<()> {
        orgs::create(self.db.as_ref(), org, keys).await
    }

    async fn get_organization(&self, id: &str) -> StoreResult<Option<Organization>> {
        orgs::get(self.db.as_ref(), id).await
    }

    async fn list_organizations(&self) -> StoreResult<Vec<Organization>> {
        orgs::list(self.db.as_ref()).await
    }

    async fn insert_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        keys::insert(self.db.as_ref(), key).await
    }

    async fn find_api_key_by_digest(&self, digest: &str) -> StoreResult<Option<ApiKey>> {
        keys::find_by_digest(self.db.as_ref(), digest).await
    }

    async fn find_api_key(&self, id: &str) -> StoreResult<Option<ApiKey>> {
        keys::find(self.db.as_ref(), id).await
    }

    async fn get_api_key(&self, tenant: &Tenant, id: &str) -> StoreResult<Option<ApiKey>> {
        keys::get(self.db.as_ref(), tenant, id).await
    }

    async fn list_api_keys(
        &self,
        tenant: &Tenant,
        agent_id: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<Page<ApiKey>> {
        keys::list(self.db.as_ref(), tenant, agent_id, page).await
    }

    async fn revoke_api_key(&self, tenant: &Tenant, id: &str, at: Millis) -> StoreResult<bool> {
        keys::revoke(self.db.as_ref(), tenant, id, at).await
    }

    async fn rotate_api_key(
        &self,
        tenant: &Tenant,
        id: &str,
        new_digest: &str,
        last_four: &str,
        previous_valid_until: Option<Millis>,
        at: Millis,
    ) -> StoreResult<Option<ApiKey>> {
        keys::rotate(
            self.db.as_ref(),
            tenant,
            id,
            new_digest,
            last_four,
            previous_valid_until,
            at,
        )
        .await
    }

    async fn record_key_use(&self, uses: &[(String, Millis)]) -> StoreResult<()> {
        keys::record_use(self.db.as_ref(), uses).await
    }

    async fn insert_agent(&self, tenant: &Tenant, agent: &Agent) -> StoreResult<()> {
        agents::insert(self.db.as_ref(), tenant, agent).await
    }

    async fn get_agent(&self, tenant: &Tenant, id: &str) -> StoreResult<Option<Agent>> {
        agents::get(self.db.as_ref(), tenant, id).await
    }

    async fn list_agents(
        &self,
        tenant: &Tenant,
        filter: &AgentFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Agent>> {
        agents::list(self.db.as_ref(), tenant, filter, page).await
    }

    async fn update_agent(&self, tenant: &Tenant, agent: &Agent) -> StoreResult<bool> {
        agents::update(self.db.as_ref(), tenant, agent).await
    }

    async fn delete_agent(&self, tenant: &Tenant, id: &str) -> StoreResult<bool> {
        agents::delete(self.db.as_ref(), tenant, id).await
    }

    async fn begin_idempotent(
        &self,
        tenant: &Tenant,
        key: &str,
        fingerprint: &str,
        now: Millis,
        expired_before: Millis,
    ) -> StoreResult<IdempotencyState> {
        idempotency::begin(
            self.db.as_ref(),
            tenant,
            key,
            fingerprint,
            now,
            expired_before,
        )
        .await
    }

    async fn finish_idempotent(
        &self,
        tenant: &Tenant,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()> {
        idempotency::finish(self.db.as_ref(), tenant, key, status, body).await
    }

    async fn abandon_idempotent(&self, tenant: &Tenant, key: &str) -> StoreResult<()> {
        idempotency::abandon(self.db.as_ref(), tenant, key).await
    }

    async fn purge_idempotency(&self, before: Millis) -> StoreResult<u64> {
        idempotency::purge(self.db.as_ref(), before).await
    }
}
