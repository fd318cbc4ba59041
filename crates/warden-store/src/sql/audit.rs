//! The hash-chained audit log. Appends are batches: each carries the
//! records of one or more tenants' chains, any writes that must commit with
//! them (a hold, a policy change), and moves each chain's head only if it
//! is still where the appender saw it, so that two writers (replicas) can
//! never fork a chain.

use warden_core::audit::{AuditFilter, AuditKind, AuditRecord, ChainedRecord};
use warden_core::audit_chain::GENESIS;
use warden_core::page::{Page, PageRequest, SortValue};
use warden_core::Tenant;

use super::builder::SqlBuilder;
use super::by_key;
use super::Backend;
use super::{agents, events, holds, keys, orgs, paging, policies};
use crate::db::{name_conflict, Db, Row, Step, Value};
use crate::{
    AuditAppend, AuditCommitted, Companion, EventAppend, StoreError, StoreResult, UnsealedRecord,
};

const COLUMNS: &str = "sequence, record, previous_hash, hash, seal";
/// What a read for the API selects: the record, and the columns kept
/// beside it, which stand in for a record that no longer parses.
const READ_COLUMNS: &str =
    "sequence, record, previous_hash, hash, seal, id, kind, at, agent_id, tool, decision, session_id";

/// What a whole-number column edited in the database to hold something
/// else reads as: SQLite keeps whatever a statement gives an INTEGER
/// column (`'eleven'`). No record holds this value, so a record with such
/// a column is listed (sorted past the others, as SQLite sorts text after
/// numbers), and its columns disagree with its hashed text, which verify
/// names, rather than every read of its chain failing.
const EDITED_NUMBER: i64 = i64::MAX;

/// An audit row's whole-number column, or [`EDITED_NUMBER`] for one that
/// does not hold a whole number.
fn tolerant_int(row: &Row, name: &str) -> StoreResult<Option<i64>> {
    match row.opt_int(name) {
        Err(StoreError::Corrupt(_)) => Ok(Some(EDITED_NUMBER)),
        other => other,
    }
}

fn sequence_of(row: &Row) -> StoreResult<i64> {
    Ok(tolerant_int(row, "sequence")?.unwrap_or(EDITED_NUMBER))
}

/// A record's seal; one edited to something other than text is no seal.
fn seal_of(row: &Row) -> Option<String> {
    row.opt_text("seal").ok().flatten()
}

fn decode(row: &Row) -> StoreResult<ChainedRecord> {
    let canonical = row.text("record")?;
    let record: AuditRecord = serde_json::from_str(&canonical)
        .map_err(|e| StoreError::Corrupt(format!("audit record: {e}")))?;
    Ok(ChainedRecord {
        sequence: sequence_of(row)?,
        previous_hash: row.text("previous_hash")?,
        hash: row.text("hash")?,
        seal: seal_of(row),
        canonical,
        record,
    })
}

/// A record as the API reads it. One whose stored form no longer parses
/// (edited in the database) is shown by the columns kept beside it,
/// marked unreadable, rather than failing every page, lookup and drift
/// rebuild it is part of; verify names it as where the chain breaks.
fn decode_read(row: &Row) -> StoreResult<ChainedRecord> {
    let why = match decode(row) {
        Err(StoreError::Corrupt(why)) => why,
        other => return other,
    };
    let mut record = unreadable();
    record.id = row.text("id")?;
    record.kind = match row.text("kind")?.as_str() {
        "hold_resolution" => AuditKind::HoldResolution,
        "policy_change" => AuditKind::PolicyChange,
        "agent_change" => AuditKind::AgentChange,
        "key_change" => AuditKind::KeyChange,
        "setting_change" => AuditKind::SettingChange,
        _ => AuditKind::Decision,
    };
    record.at = tolerant_int(row, "at")?.unwrap_or(EDITED_NUMBER);
    record.agent_id = row.opt_text("agent_id")?;
    record.tool = row.opt_text("tool")?;
    record.decision = row.opt_text("decision")?;
    record.session_id = row.opt_text("session_id")?;
    record.reason = Some(
        "this record's stored form cannot be read; GET /api/v1/audit/verify says where the chain breaks"
            .into(),
    );
    record.detail = serde_json::json!({ "unreadable": why });
    Ok(ChainedRecord {
        sequence: sequence_of(row)?,
        previous_hash: row.text("previous_hash")?,
        hash: row.text("hash")?,
        seal: seal_of(row),
        canonical: row.text("record")?,
        record,
    })
}

fn companion_steps(backend: Backend, tenant: &Tenant, companion: &Companion) -> Vec<Step> {
    match companion {
        Companion::InsertHold(hold) => vec![holds::insert_step(tenant, hold)],
        Companion::ResolveHold {
            hold_id,
            status,
            decided_by,
            decided_at,
            comment,
        } => vec![holds::resolve_step(
            tenant,
            hold_id,
            *status,
            decided_by,
            *decided_at,
            comment,
        )],
        Companion::RedeemHold { hold_id, at } => vec![holds::redeem_step(tenant, hold_id, *at)],
        Companion::LapseApproval { hold_id } => vec![holds::lapse_step(tenant, hold_id)],
        Companion::CreatePolicy(record) => policies::insert_steps(tenant, record),
        Companion::UpdatePolicy(record) => policies::update_steps(tenant, record),
        Companion::DeletePolicy(record) => policies::delete_steps(tenant, record),
        Companion::SetTenantSetting {
            name,
            value,
            was,
            at,
        } => policies::setting_steps(tenant, name, value, was.as_deref(), *at),
        Companion::CreateAgent(agent) => agents::insert_steps(tenant, agent),
        Companion::UpdateAgent(agent) => agents::update_steps(tenant, agent),
        Companion::DeleteAgent { id, at } => agents::delete_steps(tenant, id, *at),
        Companion::InsertApiKey(key) => {
            let mut steps = Vec::new();
            if let Some(agent_id) = &key.agent_id {
                steps.push(agents::hold_step(tenant, agent_id));
            }
            steps.push(keys::insert_step(key));
            steps
        }
        Companion::RevokeApiKey { id, at } => vec![keys::revoke_step(tenant, id, *at)],
        Companion::RotateApiKey(rotation) => vec![keys::rotate_step(tenant, rotation)],
        Companion::UpdateOrganization { was, now } => orgs::update_steps(backend, was, now),
        Companion::SetOrgSetting { name, value, at } => vec![events::org_setting_step(
            &tenant.org_id,
            name,
            value.as_deref(),
            *at,
        )],
    }
}

/// Appends the batch atomically; `None` when a precondition failed (a
/// chain head moved, a hold was already resolved, a policy changed
/// meanwhile): then nothing was written.
pub(crate) async fn append(
    db: &dyn Db,
    backend: Backend,
    batch: &[AuditAppend],
) -> StoreResult<Option<AuditCommitted>> {
    // Chain heads: (tenant, first record, last record) in order of appearance.
    let mut heads: Vec<(&Tenant, &ChainedRecord, &ChainedRecord)> = Vec::new();
    for entry in batch {
        match heads.iter_mut().find(|(t, _, _)| **t == entry.tenant) {
            Some(head) => head.2 = &entry.link,
            None => heads.push((&entry.tenant, &entry.link, &entry.link)),
        }
    }
    let mut steps = Vec::with_capacity(batch.len() * 2 + heads.len() * 2);
    // The heads move first: on PostgreSQL another writer's transaction on
    // the same chain holds the head row until it commits, after which this
    // update finds the head moved and the whole batch is abandoned, before
    // any record could collide with that writer's.
    for (tenant, first, last) in heads {
        let org: Value = (&tenant.org_id).into();
        let env: Value = tenant.environment.as_str().into();
        if first.sequence == 1 {
            steps.push(Step::execute(
                "INSERT INTO audit_heads (org_id, environment, sequence, hash) \
                 VALUES ($1, $2, 0, $3) ON CONFLICT (org_id, environment) DO NOTHING",
                vec![org.clone(), env.clone(), GENESIS.into()],
            ));
        }
        steps.push(
            Step::execute(
                "UPDATE audit_heads SET sequence = $1, hash = $2 \
                 WHERE org_id = $3 AND environment = $4 AND sequence = $5 AND hash = $6",
                vec![
                    last.sequence.into(),
                    (&last.hash).into(),
                    org,
                    env,
                    (first.sequence - 1).into(),
                    (&first.previous_hash).into(),
                ],
            )
            .required(),
        );
    }
    for entry in batch {
        let link = &entry.link;
        let r = &link.record;
        steps.push(Step::execute(
            "INSERT INTO audit_log (org_id, environment, sequence, id, kind, at, agent_id, tool, \
             decision, session_id, drift_micros, record, previous_hash, hash, seal) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            vec![
                (&entry.tenant.org_id).into(),
                entry.tenant.environment.as_str().into(),
                link.sequence.into(),
                (&r.id).into(),
                r.kind.as_str().into(),
                r.at.into(),
                (&r.agent_id).into(),
                (&r.tool).into(),
                (&r.decision).into(),
                (&r.session_id).into(),
                r.drift_micros().into(),
                (&link.canonical).into(),
                (&link.previous_hash).into(),
                (&link.hash).into(),
                (&link.seal).into(),
            ],
        ));
        if let Some(companion) = &entry.companion {
            steps.extend(companion_steps(backend, &entry.tenant, companion));
        }
    }
    let events: Vec<&EventAppend> = batch.iter().filter_map(|e| e.event.as_ref()).collect();
    // The event counter's step answers the last sequence number.
    let counter_step = (!events.is_empty()).then_some(steps.len());
    if !events.is_empty() {
        steps.extend(super::events::append_steps(&events));
    }
    let done = db.transaction(steps).await.map_err(|e| match e {
        // The chain's own rows clash only when its head is behind its
        // records (the head row edited or removed): no client's doing.
        StoreError::Conflict { field } if field.contains("audit_") => StoreError::Corrupt(format!(
            "the audit chain's head is behind its records ({field}); \
                 GET /api/v1/audit/verify names where the chain breaks"
        )),
        other => name_conflict(other, &["name", "external_id"]),
    })?;
    let Some(outcomes) = done else {
        return Ok(None);
    };
    let last_event_seq = match counter_step {
        Some(step) => Some(
            outcomes
                .into_iter()
                .nth(step)
                .map(|o| o.rows())
                .unwrap_or_default()
                .first()
                .ok_or_else(|| StoreError::Corrupt("no event log head".into()))?
                .int("last_seq")?,
        ),
        None => None,
    };
    Ok(Some(AuditCommitted { last_event_seq }))
}

/// The chain's last sequence number and hash; (0, GENESIS) when empty.
pub(crate) async fn head(db: &dyn Db, tenant: &Tenant) -> StoreResult<(i64, String)> {
    let rows = db
        .query(
            "SELECT sequence, hash FROM audit_heads WHERE org_id = $1 AND environment = $2",
            vec![(&tenant.org_id).into(), tenant.environment.as_str().into()],
        )
        .await?;
    match rows.first() {
        Some(row) => Ok((row.int("sequence")?, row.text("hash")?)),
        None => Ok((0, GENESIS.to_string())),
    }
}

/// Records after the audit log's row `after`, in the order they were
/// committed (SQLite's row numbers; one process writes a SQLite store), at
/// most `limit`: each with its row number, and its tenant and record, or
/// `None` for a row that no longer reads as one (skipped by the reader,
/// not stopped at).
pub(crate) async fn committed_after(
    db: &dyn Db,
    after: i64,
    limit: i64,
) -> StoreResult<Vec<(i64, Option<(Tenant, ChainedRecord)>)>> {
    let rows = db
        .query(
            &format!(
                "SELECT rowid AS row_number, org_id, environment, {COLUMNS} FROM audit_log \
                 WHERE rowid > $1 ORDER BY rowid LIMIT $2"
            ),
            vec![after.into(), limit.into()],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let read = || -> Option<(Tenant, ChainedRecord)> {
                let tenant = Tenant {
                    org_id: row.text("org_id").ok()?,
                    environment: row.text("environment").ok()?.parse().ok()?,
                };
                Some((tenant, decode(row).ok()?))
            };
            Ok((row.int("row_number")?, read()))
        })
        .collect()
}

/// Appends events derived from committed records and moves the cursor of
/// what they were derived from, in one transaction: each is appended once.
pub(crate) async fn append_derived(
    db: &dyn Db,
    events: &[EventAppend],
    cursor: &str,
    position: i64,
    now: warden_core::time::Millis,
) -> StoreResult<Option<i64>> {
    let refs: Vec<&EventAppend> = events.iter().collect();
    let mut steps = if refs.is_empty() {
        Vec::new()
    } else {
        events::append_steps(&refs)
    };
    steps.push(events::cursor_step(cursor, position, now));
    let outcomes = db
        .transaction(steps)
        .await?
        .ok_or_else(|| StoreError::Corrupt("derived events: no outcome".into()))?;
    if refs.is_empty() {
        return Ok(None);
    }
    let last = outcomes
        .into_iter()
        .next()
        .map(|o| o.rows())
        .unwrap_or_default()
        .first()
        .ok_or_else(|| StoreError::Corrupt("no event log head".into()))?
        .int("last_seq")?;
    Ok(Some(last))
}

pub(crate) async fn get(
    db: &dyn Db,
    tenant: &Tenant,
    id: &str,
) -> StoreResult<Option<ChainedRecord>> {
    by_key::tenant_row(db, "audit_log", READ_COLUMNS, "id", id, tenant)
        .await?
        .as_ref()
        .map(decode_read)
        .transpose()
}

/// A tool glob as a `LIKE` pattern.
fn glob_to_like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

pub(crate) async fn list(
    db: &dyn Db,
    backend: Backend,
    tenant: &Tenant,
    filter: &AuditFilter,
    page: &PageRequest,
) -> StoreResult<Page<ChainedRecord>> {
    let mut q = SqlBuilder::new(&format!(
        "SELECT {READ_COLUMNS} FROM audit_log WHERE org_id = "
    ));
    q.bind(&tenant.org_id)
        .push(" AND environment = ")
        .bind(tenant.environment.as_str());
    if let Some(v) = &filter.agent_id {
        q.push(" AND agent_id = ").bind(v);
    }
    if let Some(v) = &filter.action {
        q.push(" AND tool LIKE ")
            .bind(glob_to_like(v))
            .push(" ESCAPE '\\'");
    }
    if let Some(v) = &filter.decision {
        q.push(" AND decision = ").bind(v);
    }
    if let Some(v) = &filter.session_id {
        q.push(" AND session_id = ").bind(v);
    }
    if let Some(kind) = filter.kind {
        // Written into the text, not bound: a plan made for any value (as
        // PostgreSQL's generic plans are) cannot use an index kept for one
        // kind, and would walk an agent's whole history for its few
        // changes. The kinds are this crate's own words.
        q.push(&format!(" AND kind = '{}'", kind.as_str()));
    }
    if let Some(v) = filter.min_drift_micros {
        q.push(" AND drift_micros >= ").bind(v);
    }
    if let Some(v) = filter.from {
        q.push(" AND at >= ").bind(v);
    }
    if let Some(v) = filter.to {
        q.push(" AND at < ").bind(v);
    }
    // Fields no column copies, read from the hashed text itself (each
    // record's JSON parsed as the scan passes it).
    for (field, value) in [
        ("user_id", &filter.user_id),
        ("actor", &filter.actor),
        ("policy_id", &filter.policy_id),
        ("hold_id", &filter.hold_id),
    ] {
        if let Some(v) = value {
            let read = match backend {
                Backend::Sqlite => format!(" AND json_extract(record, '$.{field}') = "),
                Backend::Postgres => format!(" AND (record::jsonb ->> '{field}') = "),
            };
            q.push(&read).bind(v);
        }
    }
    let rows = paging::fetch_unique(db, q, page, "sequence").await?;
    paging::finish(rows, page, decode_read, |r| {
        (SortValue::Int(r.sequence), r.sequence.to_string())
    })
}

/// Up to `limit` records stored without a seal (by a release before
/// seals, or stripped since), found by their own partial index.
pub(crate) async fn unsealed(db: &dyn Db, limit: i64) -> StoreResult<Vec<UnsealedRecord>> {
    let rows = db
        .query(
            "SELECT id, org_id, environment, sequence, hash FROM audit_log \
             WHERE seal IS NULL ORDER BY id LIMIT $1",
            vec![limit.into()],
        )
        .await?;
    // Columns edited to another type (SQLite keeps what it is given) are
    // read as what no seal can vouch for, and a record whose id is not
    // text cannot be named to seal it: verify names such a record.
    rows.iter()
        .filter(|row| row.text("id").is_ok())
        .map(|row| {
            Ok(UnsealedRecord {
                id: row.text("id")?,
                org_id: row.text("org_id").unwrap_or_default(),
                environment: row.text("environment").unwrap_or_default(),
                sequence: sequence_of(row)?,
                hash: row.text("hash").unwrap_or_default(),
            })
        })
        .collect()
}

/// When the store's schema began to seal records (the migration that
/// added seals), and the time of the newest record without a seal.
pub(crate) async fn seal_times(
    db: &dyn Db,
    backend: Backend,
) -> StoreResult<(Option<i64>, Option<i64>)> {
    let version = match backend {
        Backend::Sqlite => crate::migrate::SQLITE_SEALS,
        Backend::Postgres => crate::migrate::POSTGRES_SEALS,
    };
    let since = db
        .query(
            "SELECT applied_at FROM schema_migrations WHERE version = $1",
            vec![version.into()],
        )
        .await?
        .first()
        .map(|row| row.opt_int("applied_at"))
        .transpose()?
        .flatten();
    let newest = db
        .query(
            "SELECT max(at) AS newest FROM audit_log WHERE seal IS NULL",
            vec![],
        )
        .await?
        .first()
        .map(|row| row.opt_int("newest"))
        .transpose()?
        .flatten();
    Ok((since, newest))
}

/// Gives records their seals, in one transaction; a record sealed
/// meanwhile (by another replica at its start) keeps its own. Answers how
/// many were sealed.
pub(crate) async fn seal(db: &dyn Db, seals: &[(String, String)]) -> StoreResult<u64> {
    let steps = seals
        .iter()
        .map(|(id, seal)| {
            Step::execute(
                "UPDATE audit_log SET seal = $1 WHERE id = $2 AND seal IS NULL",
                vec![seal.into(), id.into()],
            )
        })
        .collect();
    let outcomes = db.transaction(steps).await?.unwrap_or_default();
    Ok(outcomes.iter().map(|o| o.changed()).sum())
}

/// Records of the chain after `after`, in order, for verification.
pub(crate) async fn chain_after(
    db: &dyn Db,
    tenant: &Tenant,
    after: i64,
    limit: i64,
) -> StoreResult<Vec<(ChainedRecord, IndexedColumns)>> {
    let rows = db
        .query(
            &format!(
                "SELECT {COLUMNS}, id, kind, at, agent_id, tool, decision, session_id, drift_micros \
                 FROM audit_log WHERE org_id = $1 AND environment = $2 AND sequence > $3 \
                 ORDER BY sequence LIMIT $4"
            ),
            vec![
                (&tenant.org_id).into(),
                tenant.environment.as_str().into(),
                after.into(),
                limit.into(),
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let chained = match decode(row) {
                Ok(c) => c,
                // An unreadable record still takes its place in the walk:
                // its hash will not match.
                Err(_) => ChainedRecord {
                    sequence: sequence_of(row)?,
                    previous_hash: row.text("previous_hash")?,
                    hash: row.text("hash")?,
                    seal: seal_of(row),
                    canonical: row.text("record")?,
                    record: unreadable(),
                },
            };
            Ok((
                chained,
                IndexedColumns {
                    id: row.text("id")?,
                    kind: row.text("kind")?,
                    at: tolerant_int(row, "at")?.unwrap_or(EDITED_NUMBER),
                    agent_id: row.opt_text("agent_id")?,
                    tool: row.opt_text("tool")?,
                    decision: row.opt_text("decision")?,
                    session_id: row.opt_text("session_id")?,
                    drift_micros: tolerant_int(row, "drift_micros")?,
                },
            ))
        })
        .collect()
}

fn unreadable() -> AuditRecord {
    AuditRecord {
        id: String::new(),
        detail: serde_json::Value::Null,
        ..AuditRecord::change(AuditKind::Decision, "", 0)
    }
}

/// The columns stored beside a record for filtering.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedColumns {
    pub id: String,
    pub kind: String,
    pub at: i64,
    pub agent_id: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<String>,
    pub session_id: Option<String>,
    pub drift_micros: Option<i64>,
}

impl IndexedColumns {
    /// Whether the columns still say what the record says.
    pub fn agree_with(&self, r: &AuditRecord) -> bool {
        self.id == r.id
            && self.kind == r.kind.as_str()
            && self.at == r.at
            && self.agent_id == r.agent_id
            && self.tool == r.tool
            && self.decision == r.decision
            && self.session_id == r.session_id
            && self.drift_micros == r.drift_micros()
    }
}

/// Decision records of one agent after `after`, in order, for rebuilding
/// its drift profile.
pub(crate) async fn agent_decisions_after(
    db: &dyn Db,
    tenant: &Tenant,
    agent_id: &str,
    after: i64,
    limit: i64,
) -> StoreResult<Vec<ChainedRecord>> {
    db.query(
        &format!(
            "SELECT {READ_COLUMNS} FROM audit_log WHERE org_id = $1 AND environment = $2 \
             AND agent_id = $3 AND kind = 'decision' AND sequence > $4 ORDER BY sequence LIMIT $5"
        ),
        vec![
            (&tenant.org_id).into(),
            tenant.environment.as_str().into(),
            agent_id.into(),
            after.into(),
            limit.into(),
        ],
    )
    .await?
    .iter()
    .map(decode_read)
    .collect()
}
