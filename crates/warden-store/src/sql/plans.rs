//! The plans each database makes for reads that must not walk an agent's
//! whole history: PostgreSQL's as a prepared statement's generic plan (the
//! one a connection settles on after a few runs, made without the values),
//! SQLite's as it plans every statement, without the values either.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sqlx::{Connection, Executor};
use warden_core::audit::{AuditFilter, AuditKind};
use warden_core::page::{Direction, PageRequest};
use warden_core::tenant::Environment;
use warden_core::Tenant;

use super::{audit, Backend};
use crate::db::{Db, Outcome, Row, Step, Value};
use crate::postgres::PostgresDb;
use crate::sqlite::SqliteDb;
use crate::StoreResult;

/// Passes each statement on, keeping the text and values of the reads.
struct Recorder {
    inner: Arc<dyn Db>,
    reads: Mutex<Vec<(String, Vec<Value>)>>,
}

#[async_trait]
impl Db for Recorder {
    async fn query(&self, sql: &str, args: Vec<Value>) -> StoreResult<Vec<Row>> {
        self.reads
            .lock()
            .unwrap()
            .push((sql.to_string(), args.clone()));
        self.inner.query(sql, args).await
    }
    async fn execute(&self, sql: &str, args: Vec<Value>) -> StoreResult<u64> {
        self.inner.execute(sql, args).await
    }
    async fn transaction(&self, steps: Vec<Step>) -> StoreResult<Option<Vec<Outcome>>> {
        self.inner.transaction(steps).await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

fn tenant() -> Tenant {
    Tenant {
        org_id: "org_plans".into(),
        environment: Environment::Live,
    }
}

/// The read that judges a held call's approval: the agent's changes since
/// the call was held, newest first.
async fn agent_changes_read(db: Arc<dyn Db>, backend: Backend) -> (String, Vec<Value>) {
    let recorder = Recorder {
        inner: db,
        reads: Mutex::new(Vec::new()),
    };
    let filter = AuditFilter {
        agent_id: Some("agt_busy".into()),
        kind: Some(AuditKind::AgentChange),
        from: Some(1_000_000),
        ..Default::default()
    };
    let page = PageRequest {
        limit: 50,
        sort: "sequence".into(),
        direction: Direction::Desc,
        after: None,
    };
    audit::list(&recorder, backend, &tenant(), &filter, &page)
        .await
        .unwrap();
    let mut reads = recorder.reads.into_inner().unwrap();
    assert_eq!(reads.len(), 1, "{reads:?}");
    reads.pop().unwrap()
}

/// A busy agent's history: many decisions, a few changes.
const HISTORY: &str = "INSERT INTO audit_log (org_id, environment, sequence, id, kind, at, \
     agent_id, tool, decision, session_id, drift_micros, record, previous_hash, hash) \
     SELECT 'org_plans', 'live', n, 'aud_' || n, \
     CASE WHEN n % 500 = 0 THEN 'agent_change' ELSE 'decision' END, 1000000 + n, \
     'agt_busy', 'crm.read', 'allow', 's', 0, '{}', '', '' FROM numbers";

#[tokio::test]
async fn an_agents_changes_are_read_by_their_own_index_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db: Arc<dyn Db> =
        Arc::new(SqliteDb::open(&dir.path().join("w.db"), crate::migrate::SQLITE).unwrap());
    db.execute(
        &format!(
            "WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers \
             WHERE n < 5000) {HISTORY}"
        ),
        vec![],
    )
    .await
    .unwrap();
    let (sql, args) = agent_changes_read(db.clone(), Backend::Sqlite).await;
    let plan: Vec<String> = db
        .query(&format!("EXPLAIN QUERY PLAN {sql}"), args)
        .await
        .unwrap()
        .iter()
        .map(|r| r.text("detail").unwrap())
        .collect();
    assert!(
        plan.iter().any(|d| d.contains("audit_log_agent_changes")),
        "{sql}\n{plan:?}"
    );
    db.close().await;
}

#[tokio::test]
#[ignore = "needs a PostgreSQL server in WARDEN_TEST_DATABASE_URL"]
async fn an_agents_changes_are_read_by_their_own_index_on_postgres() {
    let admin_url = std::env::var("WARDEN_TEST_DATABASE_URL")
        .expect("WARDEN_TEST_DATABASE_URL must name a PostgreSQL server");
    let name = format!("warden_plans_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.execute(sql.as_str()).await.unwrap();
    }
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let db: Arc<dyn Db> = Arc::new(
        PostgresDb::connect(&url, crate::migrate::POSTGRES)
            .await
            .unwrap(),
    );
    db.execute(
        &format!("WITH numbers(n) AS (SELECT generate_series(1, 20000)) {HISTORY}"),
        vec![],
    )
    .await
    .unwrap();
    db.execute("ANALYZE audit_log", vec![]).await.unwrap();
    let (sql, args) = agent_changes_read(db.clone(), Backend::Postgres).await;
    // The generic plan, as a prepared statement run often gets it.
    let values: Vec<String> = args
        .iter()
        .map(|v| match v {
            Value::Int(Some(i)) => i.to_string(),
            Value::Text(Some(s)) => format!("'{}'", s.replace('\'', "''")),
            Value::Int(None) | Value::Text(None) => "NULL".into(),
        })
        .collect();
    let steps = vec![
        Step::execute("SET LOCAL plan_cache_mode = force_generic_plan", vec![]),
        Step::execute(format!("PREPARE agent_changes AS {sql}"), vec![]),
        Step::query(
            format!("EXPLAIN EXECUTE agent_changes({})", values.join(", ")),
            vec![],
        ),
        Step::execute("DEALLOCATE agent_changes", vec![]),
    ];
    let outcomes = db.transaction(steps).await.unwrap().unwrap();
    let plan: Vec<String> = outcomes
        .into_iter()
        .nth(2)
        .unwrap()
        .rows()
        .iter()
        .map(|r| r.text("QUERY PLAN").unwrap())
        .collect();
    db.close().await;
    let drop = format!("DROP DATABASE {name} WITH (FORCE)");
    admin.execute(drop.as_str()).await.unwrap();
    assert!(
        plan.iter().any(|d| d.contains("audit_log_agent_changes")),
        "{sql}\n{plan:?}"
    );
}
