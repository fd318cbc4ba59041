//! The audit log's records. A record's canonical text (its JSON without
//! the chain fields) is what the hash chain covers, so the stored text is
//! the record: the indexed columns beside it are copies for filtering, and
//! verification checks that they still agree with it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_policy::drift::DriftScore;

use crate::time::Millis;
use crate::Tenant;

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Decision,
    HoldResolution,
    PolicyChange,
    /// An agent registered, changed or deleted through the API: what
    /// policies select (status, tags, names) is part of the record.
    AgentChange,
    /// An API key minted, rotated or revoked: who may act, and how.
    KeyChange,
    /// An organization setting changed (event retention, its name or plan).
    SettingChange,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Decision => "decision",
            AuditKind::HoldResolution => "hold_resolution",
            AuditKind::PolicyChange => "policy_change",
            AuditKind::AgentChange => "agent_change",
            AuditKind::KeyChange => "key_change",
            AuditKind::SettingChange => "setting_change",
        }
    }
}

/// What a `monitor` policy would have decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitoredOutcome {
    pub policy_id: String,
    pub decision: String,
}

/// One audit record, as hashed and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: String,
    pub kind: AuditKind,
    pub at: Millis,
    /// The key that made the request, or `cli` for a change made at the
    /// host's console (`warden keys`).
    pub actor: String,
    pub agent_id: Option<String>,
    pub tool: Option<String>,
    /// The call's arguments, with redacted fields replaced.
    pub arguments: Option<Value>,
    pub decision: Option<String>,
    pub reason: Option<String>,
    #[serde(default)]
    pub matched_policy_ids: Vec<String>,
    #[serde(default)]
    pub monitored: Vec<MonitoredOutcome>,
    pub drift: Option<DriftScore>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    /// Microseconds from the request's arrival to the decision.
    pub latency_us: Option<i64>,
    pub hold_id: Option<String>,
    pub policy_id: Option<String>,
    pub policy_version: Option<i64>,
    /// The rest of the context: the previous tool in the session, the
    /// caller's context object, a hold's comment, a policy's new text.
    #[serde(default)]
    pub detail: Value,
}

impl AuditRecord {
    /// A record of a change someone made (a policy, a setting, an agent):
    /// who and when, a fresh id, and nothing else filled in yet.
    pub fn change(kind: AuditKind, actor: &str, at: Millis) -> Self {
        AuditRecord {
            id: crate::id::new_time_ordered_id(crate::id::prefix::AUDIT),
            kind,
            at,
            actor: actor.to_string(),
            agent_id: None,
            tool: None,
            arguments: None,
            decision: None,
            reason: None,
            matched_policy_ids: vec![],
            monitored: vec![],
            drift: None,
            session_id: None,
            user_id: None,
            latency_us: None,
            hold_id: None,
            policy_id: None,
            policy_version: None,
            detail: Value::Object(Default::default()),
        }
    }

    /// The bytes the chain hashes: the record's JSON.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).expect("an audit record always serializes")
    }

    /// The drift score in millionths, as stored for `min_drift` filters.
    pub fn drift_micros(&self) -> Option<i64> {
        self.drift
            .as_ref()
            .map(|d| (d.score * 1_000_000.0).round() as i64)
    }
}

/// A record with its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainedRecord {
    pub sequence: i64,
    pub previous_hash: String,
    pub hash: String,
    /// The master key's seal of the record's place and hash
    /// ([`crate::secret::ChainSealer`]); none on a record stored before
    /// seals were (the server seals those at its start) or stripped since.
    pub seal: Option<String>,
    pub canonical: String,
    pub record: AuditRecord,
}

impl ChainedRecord {
    /// Whether the record's content still matches its hash, and its seal
    /// (of `tenant`'s chain) the hash. What is derived from records
    /// (decisions' events, drift profiles, what an approval outlives) takes
    /// only these: a row edited in the database, its hash recomputed or
    /// not, would otherwise pass its edit on, where
    /// `GET /api/v1/audit/verify` names it.
    /// A row whose stored text no longer parses is read from its columns,
    /// which no hash covers: it never vouches.
    pub fn vouched(&self, tenant: &Tenant, sealer: &crate::secret::ChainSealer) -> bool {
        self.record.detail.get("unreadable").is_none()
            && crate::audit_chain::link_hash(
                &self.previous_hash,
                self.sequence as u64,
                self.canonical.as_bytes(),
            ) == self.hash
            && self.seal.as_deref().is_some_and(|seal| {
                sealer.vouches(
                    &tenant.org_id,
                    tenant.environment,
                    self.sequence,
                    &self.hash,
                    seal,
                )
            })
    }
}

/// Filters of `GET /api/v1/audit`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub agent_id: Option<String>,
    /// A tool glob, `*` and `?` as in action patterns.
    pub action: Option<String>,
    pub decision: Option<String>,
    pub session_id: Option<String>,
    pub kind: Option<AuditKind>,
    pub min_drift_micros: Option<i64>,
    pub from: Option<Millis>,
    pub to: Option<Millis>,
    /// Read from each record's hashed text (no column holds them).
    pub user_id: Option<String>,
    pub actor: Option<String>,
    pub policy_id: Option<String>,
    pub hold_id: Option<String>,
}
