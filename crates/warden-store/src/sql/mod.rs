//! The SQL implementation of [`Store`](crate::Store), one code path for both
//! backends through sqlx's `Any` driver. Queries use `$n` placeholders, which
//! PostgreSQL and SQLite both accept; types are limited to TEXT and BIGINT so
//! that both decode alike. Migrations are kept per backend.

mod agents;
mod builder;
mod idempotency;
mod keys;
mod migrate;
mod orgs;
mod paging;
mod settings;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor};
use warden_core::agent::{Agent, AgentFilter};
use warden_core::api_key::ApiKey;
use warden_core::org::Organization;
use warden_core::page::{Page, PageRequest};
use warden_core::time::Millis;
use warden_core::Tenant;

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
///
/// SQLite allows one writer at a time, so writes go through a one-connection
/// pool (no `SQLITE_BUSY` between our own writers) and reads through a wider
/// one. PostgreSQL uses one pool for both.
pub struct SqlStore {
    backend: Backend,
    reader: AnyPool,
    writer: AnyPool,
}

const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

impl SqlStore {
    /// Opens (creating if needed) `warden.db` in `data_dir`.
    pub async fn open_sqlite(data_dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Corrupt(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("warden.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::open(&url).await
    }

    /// Opens a `postgres://` or `sqlite://` URL and brings its schema up to date.
    pub async fn open(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Corrupt(
                "database URL must start with postgres:// or sqlite:".into(),
            ));
        };
        let options = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            conn.execute(sqlx::raw_sql(SQLITE_PRAGMAS)).await?;
                        }
                        Ok(())
                    })
                })
        };
        let store = match backend {
            Backend::Sqlite => {
                let writer = options(1).connect(url).await?;
                let reader = options(4).connect(url).await?;
                SqlStore {
                    backend,
                    reader,
                    writer,
                }
            }
            Backend::Postgres => {
                let pool = options(16).connect(url).await?;
                SqlStore {
                    backend,
                    reader: pool.clone(),
                    writer: pool,
                }
            }
        };
        migrate::run(&store.writer, backend).await?;
        Ok(store)
    }
}

/// Reads a column, turning a decode failure into a store error.
pub(crate) fn col<T>(row: &AnyRow, name: &str) -> StoreResult<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    row.try_get::<T, _>(name).map_err(StoreError::from)
}

/// Parses a stored enumeration value.
pub(crate) fn parse_col<T: FromStr>(row: &AnyRow, name: &str) -> StoreResult<T> {
    let text: String = col(row, name)?;
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("column {name} holds `{text}`")))
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    async fn is_initialized(&self) -> StoreResult<bool> {
        orgs::is_initialized(&self.reader).await
    }

    async fn initialize(&self, org: &Organization, keys: &[ApiKey]) -> StoreResult<bool> {
        orgs::initialize(&self.writer, org, keys).await
    }

    async fn server_setting(&self, name: &str) -> StoreResult<Option<String>> {
        settings::get(&self.reader, name).await
    }

    async fn server_setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String> {
        settings::get_or_insert(&self.writer, name, value).await
    }

    async fn create_organization(&self, org: &Organization, keys: &[ApiKey]) -> StoreResult<()> {
        orgs::create(&self.writer, org, keys).await
    }

    async fn get_organization(&self, id: &str) -> StoreResult<Option<Organization>> {
        orgs::get(&self.reader, id).await
    }

    async fn list_organizations(&self) -> StoreResult<Vec<Organization>> {
        orgs::list(&self.reader).await
    }

    async fn insert_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        keys::insert(&self.writer, key).await
    }

    async fn find_api_key_by_digest(&self, digest: &str) -> StoreResult<Option<ApiKey>> {
        keys::find_by_digest(&self.reader, digest).await
    }

    async fn find_api_key(&self, id: &str) -> StoreResult<Option<ApiKey>> {
        keys::find(&self.reader, id).await
    }

    async fn get_api_key(&self, tenant: &Tenant, id: &str) -> StoreResult<Option<ApiKey>> {
        keys::get(&self.reader, tenant, id).await
    }

    async fn list_api_keys(
        &self,
        tenant: &Tenant,
        page: &PageRequest,
    ) -> StoreResult<Page<ApiKey>> {
        keys::list(&self.reader, tenant, page).await
    }

    async fn revoke_api_key(&self, tenant: &Tenant, id: &str, at: Millis) -> StoreResult<bool> {
        keys::revoke(&self.writer, tenant, id, at).await
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
            &self.writer,
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
        keys::record_use(&self.writer, uses).await
    }

    async fn insert_agent(&self, tenant: &Tenant, agent: &Agent) -> StoreResult<()> {
        agents::insert(&self.writer, tenant, agent).await
    }

    async fn get_agent(&self, tenant: &Tenant, id: &str) -> StoreResult<Option<Agent>> {
        agents::get(&self.reader, tenant, id).await
    }

    async fn list_agents(
        &self,
        tenant: &Tenant,
        filter: &AgentFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Agent>> {
        agents::list(&self.reader, tenant, filter, page).await
    }

    async fn update_agent(&self, tenant: &Tenant, agent: &Agent) -> StoreResult<bool> {
        agents::update(&self.writer, tenant, agent).await
    }

    async fn delete_agent(&self, tenant: &Tenant, id: &str) -> StoreResult<bool> {
        agents::delete(&self.writer, tenant, id).await
    }

    async fn begin_idempotent(
        &self,
        tenant: &Tenant,
        key: &str,
        fingerprint: &str,
        now: Millis,
        expired_before: Millis,
    ) -> StoreResult<IdempotencyState> {
        idempotency::begin(&self.writer, tenant, key, fingerprint, now, expired_before).await
    }

    async fn finish_idempotent(
        &self,
        tenant: &Tenant,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()> {
        idempotency::finish(&self.writer, tenant, key, status, body).await
    }

    async fn abandon_idempotent(&self, tenant: &Tenant, key: &str) -> StoreResult<()> {
        idempotency::abandon(&self.writer, tenant, key).await
    }

    async fn purge_idempotency(&self, before: Millis) -> StoreResult<u64> {
        idempotency::purge(&self.writer, before).await
    }
}
