//! The plans each database makes for reads that must not walk an agent's
//! whole history: PostgreSQL's as a prepared statement's generic plan (the
//! one a connection settles on after a few runs, made without the values),
//! SQLite's as it plans every statement, without the values either.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sqlx::{Connection, Executor};
use warden_core::audit::{AuditFilter, AuditKind};
use warden_core::hold::HoldStatus;
use warden_core::page::{Direction, PageRequest};
use warden_core::tenant::Environment;
use warden_core::Tenant;

use super::{audit, holds, Backend};
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
     agent_id, tool, decision, session_id, drift_micros, record, previous_hash, hash, seal) \
     SELECT 'org_plans', 'live', n, 'aud_' || n, \
     CASE WHEN n % 500 = 0 THEN 'agent_change' ELSE 'decision' END, 1000000 + n, \
     'agt_busy', 'crm.read', 'allow', 's', 0, '{}', '', '', '' FROM numbers";

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

/// Holds of one tenant: most approved and used, some denied or pending, a
/// few approvals not used yet.
const HOLDS: &str = "INSERT INTO holds (id, token_digest, org_id, environment, audit_id, \
     agent_id, tool, args_sha256, policy_id, policy_version, session_id, status, created_at, \
     expires_at, decided_at, redeemed_at) SELECT 'hld_' || n, 'tok_' || n, 'org_plans', 'live', \
     'aud_' || n, 'agt_busy', 'crm.read', '', '', 0, NULL, \
     CASE n % 4 WHEN 0 THEN 'pending' WHEN 1 THEN 'denied' ELSE 'approved' END, n, n + 1000, \
     n, CASE WHEN n % 4 >= 2 AND n % 100 <> 2 THEN n END FROM numbers";

/// The reads and writes of one row that must go in by their own index,
/// each with the indexes that bound it (an approval's use and lapse may go
/// through the partial index of approvals not used yet).
async fn lookups(db: Arc<dyn Db>) -> Vec<(String, Vec<Value>, &'static [&'static str])> {
    let recorded = |db: Arc<dyn Db>| Recorder {
        inner: db,
        reads: Mutex::new(Vec::new()),
    };
    let mut out: Vec<(String, Vec<Value>, &'static [&'static str])> = Vec::new();
    let (sql, args) = agent_changes_read(db.clone(), Backend::Postgres).await;
    out.push((sql, args, &["audit_log_agent_changes"]));
    let r = recorded(db.clone());
    audit::get(&r, &tenant(), "aud_7").await.unwrap();
    let r = r.reads.into_inner().unwrap().pop().unwrap();
    out.push((r.0, r.1, &["audit_log_id_key"]));
    let r = recorded(db.clone());
    holds::get(&r, &tenant(), "hld_7").await.unwrap();
    let r = r.reads.into_inner().unwrap().pop().unwrap();
    out.push((r.0, r.1, &["holds_pkey"]));
    let r = recorded(db);
    holds::by_token(&r, &tenant(), "tok_7").await.unwrap();
    let r = r.reads.into_inner().unwrap().pop().unwrap();
    out.push((r.0, r.1, &["holds_token_digest_key"]));
    let resolve = holds::resolve_step(&tenant(), "hld_8", HoldStatus::Approved, &None, 5, &None);
    out.push((resolve.sql, resolve.args, &["holds_pkey"]));
    let unused: &[&str] = &["holds_pkey", "holds_unused_approvals"];
    for step in [
        holds::redeem_step(&tenant(), "hld_102", 5),
        holds::lapse_step(&tenant(), "hld_102"),
    ] {
        out.push((step.sql, step.args, unused));
    }
    out
}

/// PostgreSQL's generic plan of `sql`, as a prepared statement run often
/// gets it.
async fn generic_plan(db: &dyn Db, sql: &str, args: &[Value]) -> Vec<String> {
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
        Step::execute(format!("PREPARE probed AS {sql}"), vec![]),
        Step::query(
            format!("EXPLAIN EXECUTE probed({})", values.join(", ")),
            vec![],
        ),
        Step::execute("DEALLOCATE probed", vec![]),
    ];
    let outcomes = db.transaction(steps).await.unwrap().unwrap();
    outcomes
        .into_iter()
        .nth(2)
        .unwrap()
        .rows()
        .iter()
        .map(|r| r.text("QUERY PLAN").unwrap())
        .collect()
}

/// Before the tables' first analyze (or with autovacuum off, when none
/// comes) and after it, every lookup of one row goes in by its own index
/// rather than walk the tenant's audit log or holds.
#[tokio::test]
#[ignore = "needs a PostgreSQL server in WARDEN_TEST_DATABASE_URL"]
async fn lookups_of_one_row_take_their_own_index_on_postgres() {
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
    for (fill, rows) in [(HISTORY, 20_000), (HOLDS, 5_000)] {
        let sql = format!("WITH numbers(n) AS (SELECT generate_series(1, {rows})) {fill}");
        db.execute(&sql, vec![]).await.unwrap();
    }
    let mut wrong = Vec::new();
    for analyzed in [false, true] {
        if analyzed {
            db.execute("ANALYZE", vec![]).await.unwrap();
        }
        for (sql, args, indexes) in lookups(db.clone()).await {
            let plan = generic_plan(db.as_ref(), &sql, &args).await;
            let scans: Vec<&String> = plan
                .iter()
                .filter(|l| {
                    l.contains("Scan") && (l.contains(" on holds") || l.contains(" on audit_log"))
                })
                .collect();
            let bounded = !scans.is_empty()
                && scans
                    .iter()
                    .all(|l| indexes.iter().any(|i| l.contains(&format!("using {i} "))));
            if !bounded {
                wrong.push(format!("analyzed: {analyzed}\n{sql}\n{}", plan.join("\n")));
            }
        }
    }
    db.close().await;
    let drop = format!("DROP DATABASE {name} WITH (FORCE)");
    admin.execute(drop.as_str()).await.unwrap();
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
