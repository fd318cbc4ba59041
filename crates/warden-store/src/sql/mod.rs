//! The SQL implementation of [`Store`](crate::Store): every method written
//! once against the [`Db`] seam, so SQLite and PostgreSQL run the same
//! queries. Queries use `$n` placeholders and only TEXT and BIGINT columns,
//! which both backends read alike.

mod agents;
mod audit;
mod builder;
mod by_key;
mod drift;
mod events;
mod holds;
mod idempotency;
mod keys;
mod orgs;
mod paging;
#[cfg(test)]
mod plans;
mod policies;
mod settings;

pub use audit::IndexedColumns;

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use warden_core::agent::{Agent, AgentFilter};
use warden_core::api_key::ApiKey;
use warden_core::audit::{AuditFilter, ChainedRecord};
use warden_core::hold::{Hold, HoldFilter};
use warden_core::org::Organization;
use warden_core::page::{Page, PageRequest};
use warden_core::policy::{PolicyRecord, PolicyVersion};
use warden_core::time::{now_ms, Millis};
use warden_core::Tenant;

use crate::db::{Db, Row};
use crate::postgres::PostgresDb;
use crate::sqlite::SqliteDb;
use crate::{
    AuditAppend, AuditCommitted, EventAppend, IdempotencyState, IdempotentAnswer, LoggedEvent,
    Store, StoreError, StoreResult, UnsealedRecord,
};

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
        let shown = path.display().to_string();
        let db = tokio::task::spawn_blocking(move || SqliteDb::open(&path, crate::migrate::SQLITE))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .map_err(|e| match e {
                StoreError::Database(why) | StoreError::Unavailable(why) => {
                    // A lock held past the wait is another process's write
                    // (a long `sqlite3` session, a backup), not permissions.
                    let hint = if why.contains("locked") || why.contains("busy") {
                        "another process holds the database's write lock: let it finish, \
                         then try again"
                    } else {
                        "is the data directory writable by this user?"
                    };
                    StoreError::Unavailable(format!("{shown}: {why} ({hint})"))
                }
                other => other,
            })?;
        Ok(SqlStore {
            backend: Backend::Sqlite,
            db: Box::new(db),
        })
    }

    /// Opens a `postgres://` URL and brings its schema up to date.
    pub async fn open(url: &str) -> StoreResult<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Rejected(
                "the database URL must start with postgres:// or postgresql:// \
                 (PostgreSQL is the only server database)"
                    .into(),
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
        return must_be_dir(dir);
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
        .map_err(|e| StoreError::DataDir(format!("cannot create {}: {e}", dir.display())))
}

/// Takes the data directory, its index directory, the master key and the
/// files SQLite keeps in it back to their owner alone when they were made
/// wider (a directory made beforehand, a database restored with `cp`
/// under umask 022): SQLite gives its WAL the database file's mode, and
/// the WAL holds every tenant's latest records.
pub fn keep_private(dir: &Path) -> StoreResult<()> {
    if dir.exists() {
        must_be_dir(dir)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let files = ["warden.db", "warden.db-wal", "warden.db-shm", "master.key"];
        let entries = [(dir.to_path_buf(), 0o700), (dir.join("index"), 0o700)]
            .into_iter()
            .chain(files.iter().map(|f| (dir.join(f), 0o600)));
        for (path, private) in entries {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                continue;
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & private))
                .map_err(|e| {
                    // Only the owner may change a mode: a directory of
                    // another user's is the problem to name.
                    let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                        " (it belongs to another user: give it to the user Warden runs as, \
                         with mode 700)"
                    } else {
                        ""
                    };
                    StoreError::DataDir(format!(
                        "{} is readable by other users (mode {mode:o}) and cannot be made private: {e}{hint}",
                        path.display()
                    ))
                })?;
            tracing::warn!(
                path = %path.display(),
                was = format!("{mode:o}"),
                now = format!("{:o}", mode & private),
                "made readable by its owner only"
            );
        }
    }
    Ok(())
}

/// Refuses a data directory that names something else (a file given by
/// mistake), before anything in it is made or its mode is changed.
fn must_be_dir(dir: &Path) -> StoreResult<()> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(StoreError::DataDir(format!(
        "the data directory {} exists and is not a directory",
        dir.display()
    )))
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
        if self.db.damaged() {
            return Err(StoreError::Damaged(
                "a read or write found the database file malformed".into(),
            ));
        }
        self.db.query("SELECT 1 AS one", vec![]).await?;
        if self.db.disk_full() {
            return Err(StoreError::Full(
                "the last write found no space left; reads still work".into(),
            ));
        }
        Ok(())
    }

    async fn close(&self) {
        self.db.close().await;
    }

    async fn is_initialized(&self) -> StoreResult<bool> {
        orgs::is_initialized(self.db.as_ref()).await
    }

    async fn initialize(&self, org: &Organization, keys: &[ApiKey]) -> StoreResult<bool> {
        orgs::initialize(self.db.as_ref(), self.backend, org, keys).await
    }

    async fn server_setting(&self, name: &str) -> StoreResult<Option<String>> {
        settings::get(self.db.as_ref(), name).await
    }

    async fn server_setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String> {
        settings::get_or_insert(self.db.as_ref(), name, value).await
    }

    async fn create_organization(&self, org: &Organization, keys: &[ApiKey]) -> StoreResult<()> {
        orgs::create(self.db.as_ref(), self.backend, org, keys).await
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

    async fn unrecorded_discoveries(
        &self,
        before: Millis,
        limit: i64,
    ) -> StoreResult<Vec<(Tenant, String, Option<String>)>> {
        agents::unrecorded_discoveries(self.db.as_ref(), before, limit).await
    }

    async fn delete_unrecorded_discovery(&self, tenant: &Tenant, id: &str) -> StoreResult<bool> {
        agents::delete_unrecorded_discovery(self.db.as_ref(), tenant, id).await
    }

    async fn find_agent(&self, tenant: &Tenant, reference: &str) -> StoreResult<Option<Agent>> {
        agents::find(self.db.as_ref(), tenant, reference).await
    }

    async fn agent_name_taken(&self, tenant: &Tenant, name: &str) -> StoreResult<bool> {
        agents::name_taken(self.db.as_ref(), tenant, name).await
    }

    async fn get_policy(&self, tenant: &Tenant, id: &str) -> StoreResult<Option<PolicyRecord>> {
        policies::get(self.db.as_ref(), tenant, id).await
    }

    async fn list_policies(
        &self,
        tenant: &Tenant,
        enabled: Option<bool>,
        page: &PageRequest,
    ) -> StoreResult<Page<PolicyRecord>> {
        policies::list(self.db.as_ref(), tenant, enabled, page).await
    }

    async fn all_policies(&self, tenant: &Tenant) -> StoreResult<Vec<PolicyRecord>> {
        policies::all(self.db.as_ref(), tenant).await
    }

    async fn count_policies(&self, tenant: &Tenant) -> StoreResult<i64> {
        policies::count(self.db.as_ref(), tenant).await
    }

    async fn policy_versions(
        &self,
        tenant: &Tenant,
        policy_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<PolicyVersion>> {
        policies::versions(self.db.as_ref(), tenant, policy_id, page).await
    }

    async fn policy_generation(&self, tenant: &Tenant) -> StoreResult<i64> {
        let value =
            policies::tenant_setting(self.db.as_ref(), tenant, policies::GENERATION).await?;
        Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    async fn tenant_setting(&self, tenant: &Tenant, name: &str) -> StoreResult<Option<String>> {
        policies::tenant_setting(self.db.as_ref(), tenant, name).await
    }

    async fn append_audit(&self, batch: &[AuditAppend]) -> StoreResult<Option<AuditCommitted>> {
        audit::append(self.db.as_ref(), self.backend, batch).await
    }

    fn derives_decision_events(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    async fn audit_committed_after(
        &self,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, Option<(Tenant, ChainedRecord)>)>> {
        audit::committed_after(self.db.as_ref(), after, limit).await
    }

    async fn append_derived_events(
        &self,
        events: &[EventAppend],
        cursor: &str,
        position: i64,
    ) -> StoreResult<Option<i64>> {
        audit::append_derived(self.db.as_ref(), events, cursor, position, now_ms()).await
    }

    async fn append_events(
        &self,
        events: &[EventAppend],
        answer: Option<&IdempotentAnswer>,
    ) -> StoreResult<i64> {
        events::append(self.db.as_ref(), events, answer).await
    }

    async fn event_log_head(&self) -> StoreResult<i64> {
        events::head(self.db.as_ref()).await
    }

    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<LoggedEvent>> {
        events::after(self.db.as_ref(), after, limit).await
    }

    async fn count_events(&self, tenant: &Tenant) -> StoreResult<i64> {
        events::count(self.db.as_ref(), tenant).await
    }

    async fn expire_events(&self, org_id: &str, before: Millis) -> StoreResult<u64> {
        events::expire(self.db.as_ref(), org_id, before).await
    }

    async fn consumer_cursor(&self, name: &str) -> StoreResult<Option<i64>> {
        events::cursor(self.db.as_ref(), name).await
    }

    async fn set_consumer_cursor(&self, name: &str, position: Option<i64>) -> StoreResult<()> {
        events::set_cursor(self.db.as_ref(), name, position, now_ms()).await
    }

    async fn org_setting(&self, org_id: &str, name: &str) -> StoreResult<Option<String>> {
        events::org_setting(self.db.as_ref(), org_id, name).await
    }

    async fn orgs_with_setting(&self, name: &str) -> StoreResult<Vec<(String, String)>> {
        events::orgs_with_setting(self.db.as_ref(), name).await
    }

    async fn set_org_setting(
        &self,
        org_id: &str,
        name: &str,
        value: Option<&str>,
    ) -> StoreResult<()> {
        let step = events::org_setting_step(org_id, name, value, now_ms());
        self.db.transaction(vec![step]).await?;
        Ok(())
    }

    async fn audit_head(&self, tenant: &Tenant) -> StoreResult<(i64, String)> {
        audit::head(self.db.as_ref(), tenant).await
    }

    async fn get_audit(&self, tenant: &Tenant, id: &str) -> StoreResult<Option<ChainedRecord>> {
        audit::get(self.db.as_ref(), tenant, id).await
    }

    async fn list_audit(
        &self,
        tenant: &Tenant,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<ChainedRecord>> {
        audit::list(self.db.as_ref(), self.backend, tenant, filter, page).await
    }

    async fn unsealed_audit(&self, limit: i64) -> StoreResult<Vec<UnsealedRecord>> {
        audit::unsealed(self.db.as_ref(), limit).await
    }

    async fn audit_seal_times(&self) -> StoreResult<(Option<i64>, Option<i64>)> {
        audit::seal_times(self.db.as_ref(), self.backend).await
    }

    async fn seal_audit(&self, seals: &[(String, String)]) -> StoreResult<u64> {
        audit::seal(self.db.as_ref(), seals).await
    }

    async fn audit_chain_after(
        &self,
        tenant: &Tenant,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(ChainedRecord, IndexedColumns)>> {
        audit::chain_after(self.db.as_ref(), tenant, after, limit).await
    }

    async fn agent_decisions_after(
        &self,
        tenant: &Tenant,
        agent_id: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChainedRecord>> {
        audit::agent_decisions_after(self.db.as_ref(), tenant, agent_id, after, limit).await
    }

    async fn get_hold(&self, tenant: &Tenant, id: &str) -> StoreResult<Option<Hold>> {
        holds::get(self.db.as_ref(), tenant, id).await
    }

    async fn hold_by_token(&self, tenant: &Tenant, digest: &str) -> StoreResult<Option<Hold>> {
        holds::by_token(self.db.as_ref(), tenant, digest).await
    }

    async fn list_holds(
        &self,
        tenant: &Tenant,
        filter: &HoldFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Hold>> {
        holds::list(self.db.as_ref(), tenant, filter, page).await
    }

    async fn expired_holds(&self, now: Millis, limit: i64) -> StoreResult<Vec<(Tenant, Hold)>> {
        holds::expired(self.db.as_ref(), now, limit).await
    }

    async fn lapsed_approvals(&self, now: Millis, limit: i64) -> StoreResult<Vec<(Tenant, Hold)>> {
        holds::lapsed_approvals(self.db.as_ref(), now, limit).await
    }

    async fn outdated_holds(&self, now: Millis, limit: i64) -> StoreResult<Vec<(Tenant, Hold)>> {
        holds::outdated(self.db.as_ref(), now, limit).await
    }

    async fn abandoned_holds(
        &self,
        now: Millis,
        limit: i64,
    ) -> StoreResult<Vec<(Tenant, Hold, warden_core::hold::Abandoned)>> {
        holds::abandoned(self.db.as_ref(), now, limit).await
    }

    async fn drift_profile(
        &self,
        tenant: &Tenant,
        agent_id: &str,
    ) -> StoreResult<Option<(i64, String)>> {
        drift::get(self.db.as_ref(), tenant, agent_id).await
    }

    async fn save_drift_profiles(
        &self,
        snapshots: &[(Tenant, String, i64, String)],
        now: Millis,
    ) -> StoreResult<()> {
        drift::save(self.db.as_ref(), snapshots, now).await
    }

    async fn delete_drift_profile(&self, tenant: &Tenant, agent_id: &str) -> StoreResult<()> {
        drift::delete(self.db.as_ref(), tenant, agent_id).await
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

/// What a database holds before this binary migrates anything, so that a
/// start refused for it (another master key) leaves an older release's
/// store as that release can still open it, and a command that makes no
/// store leaves a database that holds none as it was.
#[derive(Debug, Default)]
pub struct BeforeMigrating {
    /// Whether it holds a Warden store: a record of migrations of Warden's
    /// shape with at least one (an empty one is what a refused first
    /// migration leaves). `None` where it could not be read (said by the
    /// store's own open).
    pub holds_store: Option<bool>,
    /// Whether it holds another application's data where Warden's would
    /// go: a record of migrations of another shape, or (SQLite) tables in
    /// a `warden.db` that holds no store.
    pub foreign: bool,
    /// (SQLite) a `warden.db` that SQLite does not read as a database:
    /// another program's file, or a store damaged beyond reading.
    pub not_a_database: bool,
    /// The newest schema version migrated into it, if it holds a store.
    pub schema: Option<i64>,
    /// (PostgreSQL) the server neither vacuums nor analyzes on its own:
    /// the rows resolved holds leave behind then pile up in every index,
    /// and without statistics the planner may take slower paths as the
    /// tables grow.
    pub autovacuum_off: bool,
    /// The named server setting, if it holds one.
    pub setting: Option<String>,
}

/// The schema version this binary brings a store to.
pub fn schema_version(backend: Backend) -> i64 {
    let list = match backend {
        Backend::Sqlite => crate::migrate::SQLITE,
        Backend::Postgres => crate::migrate::POSTGRES,
    };
    list.iter().map(|(v, _)| *v).max().unwrap_or(0)
}

/// How many migrations a record of Warden's shape holds, and the newest.
const RECORD: &str =
    "SELECT COUNT(*), MAX(version) FROM (SELECT version, applied_at FROM schema_migrations) m";

impl BeforeMigrating {
    /// From a read of [`RECORD`] (`None` where no such table exists) and
    /// whether the database holds other tables (counted only where Warden
    /// needs a database of its own).
    fn from_record(record: Option<Result<(i64, Option<i64>), ()>>, tables: bool) -> Self {
        match record {
            Some(Ok((count, newest))) => BeforeMigrating {
                holds_store: Some(count > 0),
                foreign: count == 0 && tables,
                schema: newest.filter(|_| count > 0),
                ..Default::default()
            },
            Some(Err(())) => BeforeMigrating {
                holds_store: Some(false),
                foreign: true,
                ..Default::default()
            },
            None => BeforeMigrating {
                holds_store: Some(false),
                foreign: tables,
                ..Default::default()
            },
        }
    }
}

/// Reads [`BeforeMigrating`] with the server setting `name`.
pub async fn before_migrating(
    database_url: Option<&str>,
    data_dir: &Path,
    name: &str,
) -> StoreResult<BeforeMigrating> {
    const READ: &str = "SELECT value FROM server_settings WHERE name = $1";
    match database_url {
        Some(url) => {
            use sqlx::Connection as _;
            let connecting = sqlx::PgConnection::connect(url);
            let mut conn =
                match tokio::time::timeout(std::time::Duration::from_secs(10), connecting).await {
                    Ok(Ok(conn)) => conn,
                    // A refusal is said by the store's own open, with its
                    // words; a server that does not answer is said now,
                    // not waited for a second time by that open.
                    Ok(Err(_)) => return Ok(BeforeMigrating::default()),
                    Err(_) => {
                        let at = url
                            .parse::<sqlx::postgres::PgConnectOptions>()
                            .map(|o| format!(" at {}:{}", o.get_host(), o.get_port()))
                            .unwrap_or_default();
                        return Err(StoreError::Unavailable(format!(
                            "cannot connect to PostgreSQL{at}: no answer within 10 s"
                        )));
                    }
                };
            let (migrations, settings): (Option<String>, Option<String>) = sqlx::query_as(
                "SELECT to_regclass('schema_migrations')::text, \
                 to_regclass('server_settings')::text",
            )
            .fetch_one(&mut conn)
            .await
            .map_err(crate::postgres::map_err)?;
            let record = match migrations {
                Some(_) => match sqlx::query_as::<_, (i64, Option<i64>)>(RECORD)
                    .fetch_one(&mut conn)
                    .await
                {
                    Ok(found) => Some(Ok(found)),
                    // Another shape: a column missing, or of another type.
                    Err(sqlx::Error::Database(e))
                        if matches!(e.code().as_deref(), Some("42703" | "42883")) =>
                    {
                        Some(Err(()))
                    }
                    Err(sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => Some(Err(())),
                    Err(e) => return Err(crate::postgres::map_err(e)),
                },
                None => None,
            };
            let mut before = BeforeMigrating::from_record(record, false);
            before.autovacuum_off =
                sqlx::query_scalar::<_, String>("SELECT current_setting('autovacuum')")
                    .fetch_one(&mut conn)
                    .await
                    .is_ok_and(|on| on == "off");
            if before.holds_store == Some(true) && settings.is_some() {
                before.setting = sqlx::query_scalar(READ)
                    .bind(name)
                    .fetch_optional(&mut conn)
                    .await
                    .map_err(crate::postgres::map_err)?;
            }
            let _ = conn.close().await;
            Ok(before)
        }
        None => {
            let path = data_dir.join("warden.db");
            if !path.exists() {
                return Ok(BeforeMigrating {
                    holds_store: Some(false),
                    ..Default::default()
                });
            }
            let name = name.to_string();
            tokio::task::spawn_blocking(move || {
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
                let Ok(conn) = rusqlite::Connection::open_with_flags(&path, flags) else {
                    return BeforeMigrating::default();
                };
                let tables = conn.query_row(
                    "SELECT COUNT(CASE WHEN name <> 'schema_migrations' THEN 1 END), \
                     COUNT(CASE WHEN name = 'schema_migrations' THEN 1 END) \
                     FROM sqlite_master WHERE type = 'table'",
                    [],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)? > 0)),
                );
                let tables = match tables {
                    Ok(tables) => tables,
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == rusqlite::ErrorCode::NotADatabase =>
                    {
                        return BeforeMigrating {
                            not_a_database: true,
                            ..Default::default()
                        };
                    }
                    // Otherwise unreadable: said by the store's open.
                    Err(_) => return BeforeMigrating::default(),
                };
                let record = match tables.1 {
                    false => None,
                    true => {
                        // Warden's shape: the two columns it reads and writes.
                        let shaped = conn
                            .query_row(
                                "SELECT COUNT(*) FROM pragma_table_info('schema_migrations') \
                                 WHERE name IN ('version', 'applied_at')",
                                [],
                                |row| row.get::<_, i64>(0),
                            )
                            .map(|n| n == 2);
                        match shaped {
                            Ok(false) => Some(Err(())),
                            Ok(true) => match conn
                                .query_row(RECORD, [], |row| Ok((row.get(0)?, row.get(1)?)))
                            {
                                Ok(found) => Some(Ok(found)),
                                // Versions of another type: another tool's.
                                Err(
                                    rusqlite::Error::InvalidColumnType(..)
                                    | rusqlite::Error::FromSqlConversionFailure(..),
                                ) => Some(Err(())),
                                // Otherwise unreadable now: said by the store's open.
                                Err(_) => return BeforeMigrating::default(),
                            },
                            Err(_) => return BeforeMigrating::default(),
                        }
                    }
                };
                let mut before = BeforeMigrating::from_record(record, tables.0 > 0);
                if before.holds_store == Some(true) {
                    before.setting = conn
                        .query_row(READ, [name], |row| row.get::<_, String>(0))
                        .ok();
                }
                before
            })
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
        }
    }
}

#[cfg(test)]
mod disk_full_tests {
    use super::*;
    use crate::db::Value;
    use crate::sqlite::tests::limit_pages;

    #[tokio::test]
    async fn readiness_says_the_disk_is_full_until_a_write_goes_through() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_sqlite(dir.path()).await.unwrap();
        store.ping().await.unwrap();
        let pages = store.db.query("PRAGMA page_count", vec![]).await.unwrap()[0].values[0].clone();
        let Value::Int(Some(pages)) = pages else {
            panic!("{pages:?}")
        };
        limit_pages(store.db.as_ref(), pages).await;
        let big = "v".repeat(256 * 1024);
        let refused = store.server_setting_or_insert("big", &big).await;
        assert!(matches!(refused, Err(StoreError::Full(_))), "{refused:?}");
        assert!(matches!(store.ping().await, Err(StoreError::Full(_))));
        assert_eq!(store.server_setting("big").await.unwrap(), None);
        limit_pages(store.db.as_ref(), 1 << 30).await;
        assert!(matches!(store.ping().await, Err(StoreError::Full(_))));
        store.server_setting_or_insert("big", &big).await.unwrap();
        store.ping().await.unwrap();
    }
}
