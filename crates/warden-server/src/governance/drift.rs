//! Agents' behavioural profiles in memory. A profile is loaded on an
//! agent's first call from its stored snapshot, then brought up to date by
//! replaying the audit log's later decisions; snapshots are saved in the
//! background. The audit log is the source: a profile can always be
//! rebuilt from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use warden_core::audit::{AuditFilter, AuditKind, AuditRecord, ChainedRecord};
use warden_core::event::syslog::without_credentials;
use warden_core::page::{Cursor, PageRequest};
use warden_core::secret::ChainSealer;
use warden_core::time::{now_ms, Millis};
use warden_core::Tenant;
use warden_policy::drift::{DriftScore, Observation, Profile};
use warden_store::{Store, StoreError};

/// Sessions idle this long are forgotten.
const SESSION_IDLE_MS: i64 = 3_600_000;
/// Most tools remembered per session: as many as the Thoth SDK's list
/// may give (`enforce::CALLER_SESSION_TOOLS`).
const SESSION_TOOLS: usize = 200;
const REPLAY_PAGE: i64 = 1_000;
/// How much of an agent's latest history rebuilds its sessions when its
/// profile is loaded: pages of decisions, newest first.
const SESSION_REBUILD_PAGE: u32 = 1_000;
const SESSION_REBUILD_PAGES: usize = 5;
/// Least time between two snapshots of one agent's profile. A snapshot
/// only shortens the replay of the audit log when the profile is next
/// loaded, so saving it every few seconds would buy little: each save
/// copies the profile and writes a row of up to a few hundred kilobytes
/// through the store's single writer, between decisions.
const SNAPSHOT_EVERY_MS: i64 = 30_000;

struct AgentDrift {
    profile: Profile,
    /// The highest audit sequence folded in.
    sequence: i64,
    /// The last sequence the load replayed from the log: a live call at or
    /// below it is already in the profile. Live calls above it are learned
    /// whatever order they arrive in, since concurrent decisions commit in
    /// one order and report back in another.
    loaded_through: i64,
    dirty: bool,
    /// When its snapshot was last taken, or the profile loaded.
    saved_at: Millis,
}

#[derive(Default, Clone)]
pub struct SessionTrail {
    pub tools: Vec<String>,
    /// Every call that ran in the session, the ones no longer listed too.
    pub calls: u64,
    last_seen: Millis,
}

/// A session as a call finds it.
#[derive(Debug, Default, Clone)]
pub struct SessionSoFar {
    /// The latest tools, oldest first.
    pub tools: Vec<String>,
    pub calls: u64,
}

impl SessionTrail {
    /// Adds a call, keeping the latest [`SESSION_TOOLS`].
    fn push(&mut self, tool: &str, at: Millis) {
        self.tools.push(tool.to_string());
        self.calls += 1;
        if self.tools.len() > SESSION_TOOLS {
            self.tools.remove(0);
        }
        self.last_seen = at;
    }
}

type AgentKey = (Tenant, String);

/// A session as one agent lived it: an agent's policies and drift read
/// only its own calls, so another agent (another key) sharing the session
/// id cannot change them.
type SessionKey = (Tenant, String, String);

/// What a profile has learned, for people.
#[derive(Debug, Clone)]
pub struct ProfileSummary {
    pub calls: u64,
    pub learning: bool,
    /// Tools by how often they were called, most first.
    pub tools: Vec<(String, u64)>,
    pub baseline_per_minute: Option<f64>,
    /// Calls per hour of the day (UTC).
    pub hours: [u64; 24],
    /// (previous tool, tool, count), by previous tool, most first.
    pub transitions: Vec<(String, String, u64)>,
    /// Each tool's argument names, sorted, by tool.
    pub argument_keys: Vec<(String, Vec<String>)>,
    /// The latest calls' times, oldest first: the current rate's window.
    pub recent: Vec<i64>,
    /// The audit sequence of the last call learned.
    pub sequence: i64,
}

pub struct DriftBook {
    store: Arc<dyn Store>,
    /// Checks the seals of the records profiles learn from.
    sealer: ChainSealer,
    agents: Mutex<HashMap<AgentKey, AgentDrift>>,
    sessions: Mutex<HashMap<SessionKey, SessionTrail>>,
    loading: tokio::sync::Mutex<()>,
}

/// Longest argument name drift keeps, in bytes: the profile bounds how
/// many names it learns, and this how long each is, so that calls cannot
/// grow a profile (or its saved snapshot) by sending huge names.
pub const MAX_ARGUMENT_NAME: usize = 128;

/// The argument keys drift compares: the top-level names, each with any
/// Warden key or token in it replaced (a profile is kept, saved and shown
/// to `agents.read`, as the audit record's names are redacted), then cut
/// at [`MAX_ARGUMENT_NAME`] bytes.
pub fn argument_keys(args: &serde_json::Value) -> Vec<String> {
    let serde_json::Value::Object(map) = args else {
        return Vec::new();
    };
    let mut keys: Vec<String> = Vec::with_capacity(map.len());
    let mut renamed = false;
    for name in map.keys() {
        let mut k = redacted_name(name);
        let mut cut = k.len().min(MAX_ARGUMENT_NAME);
        while !k.is_char_boundary(cut) {
            cut -= 1;
        }
        k.truncate(cut);
        renamed |= k != *name;
        keys.push(k);
    }
    // An object's names are distinct; two that lose a credential (or
    // share their first bytes) become one name, live and when replayed
    // from the audit log alike. Sorted rather than scanned: a call may
    // carry as many names as its body holds. The usual call renames none
    // and pays nothing.
    if renamed {
        keys.sort_unstable();
        keys.dedup();
    }
    keys
}

/// A name with any Warden key or token in it replaced. The audit log
/// keeps names that lost one apart as `[REDACTED] (2)`, `[REDACTED] (3)`:
/// drift counts them as the one name a live call learns.
fn redacted_name(name: &str) -> String {
    if let Some(n) = name.strip_prefix(REDACTED) {
        let numbered = n
            .strip_prefix(" (")
            .and_then(|n| n.strip_suffix(')'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if n.is_empty() || numbered {
            return REDACTED.to_string();
        }
    }
    without_credentials_or_as_is(name)
}

const REDACTED: &str = "[REDACTED]";

fn without_credentials_or_as_is(name: &str) -> String {
    without_credentials(name).unwrap_or_else(|| name.to_string())
}

/// Takes Warden keys and tokens out of every name a profile saved by an
/// earlier release learned as it was sent (tools, transitions, argument
/// names); whether there was one.
fn scrub_names(profile: &mut Profile) -> bool {
    let holds = |n: &String| without_credentials(n).is_some();
    let found = profile.tools.keys().any(holds)
        || profile.after.keys().any(holds)
        || profile
            .transitions
            .keys()
            .any(|(a, b)| holds(a) || holds(b))
        || profile
            .argument_keys
            .iter()
            .any(|(tool, names)| holds(tool) || names.iter().any(holds));
    if !found {
        return false;
    }
    let name = |n: String| without_credentials(&n).unwrap_or(n);
    let merge = |map: &mut HashMap<String, u64>| {
        for (k, v) in std::mem::take(map) {
            *map.entry(name(k)).or_default() += v;
        }
    };
    merge(&mut profile.tools);
    merge(&mut profile.after);
    for ((a, b), v) in std::mem::take(&mut profile.transitions) {
        *profile.transitions.entry((name(a), name(b))).or_default() += v;
    }
    for (tool, names) in std::mem::take(&mut profile.argument_keys) {
        profile
            .argument_keys
            .entry(name(tool))
            .or_default()
            .extend(names.into_iter().map(name));
    }
    true
}

impl DriftBook {
    pub fn new(store: Arc<dyn Store>, sealer: ChainSealer) -> Self {
        DriftBook {
            store,
            sealer,
            agents: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// Makes sure the agent's profile is in memory and up to date.
    pub async fn ensure_loaded(&self, tenant: &Tenant, agent_id: &str) -> Result<(), StoreError> {
        let key = (tenant.clone(), agent_id.to_string());
        if self.agents.lock().unwrap().contains_key(&key) {
            return Ok(());
        }
        let _guard = self.loading.lock().await;
        if self.agents.lock().unwrap().contains_key(&key) {
            return Ok(());
        }
        let mut scrubbed = false;
        let snapshot = self.store.drift_profile(tenant, agent_id).await?;
        let stored = snapshot.is_some();
        let vouched =
            snapshot.and_then(|(seq, text)| self.vouched_snapshot(tenant, agent_id, seq, text));
        if stored && vouched.is_none() {
            // Removed, so that the profile rebuilt from the log replaces it
            // whatever sequence it claims: a save never goes back past one.
            self.store.delete_drift_profile(tenant, agent_id).await?;
        }
        let (mut sequence, mut profile) = match vouched {
            Some((seq, json)) => match serde_json::from_str::<Profile>(&json) {
                Ok(mut p) => {
                    scrubbed = scrub_names(&mut p);
                    (seq, p)
                }
                Err(_) => (0, Profile::default()),
            },
            None => (0, Profile::default()),
        };
        let snapshot_sequence = sequence;
        // The last call learned, as live profiles count it; `sequence` is
        // how far the replay read (denied and held calls included).
        let mut learned_through = sequence;
        let by = self.vouching(tenant, agent_id);
        loop {
            let records = self
                .store
                .agent_decisions_after(tenant, agent_id, sequence, REPLAY_PAGE)
                .await?;
            for r in &records {
                if fold(&mut profile, &by, r) {
                    learned_through = r.sequence;
                }
                sequence = r.sequence;
            }
            if (records.len() as i64) < REPLAY_PAGE {
                break;
            }
            // The embedded store reads on this worker: a long history
            // gives way between pages, as a verification does.
            tokio::task::yield_now().await;
        }
        let sessions = self
            .recent_sessions(tenant, agent_id, snapshot_sequence)
            .await?;
        self.agents.lock().unwrap().insert(
            key,
            AgentDrift {
                profile,
                sequence: learned_through,
                loaded_through: sequence,
                // Calls learned past the snapshot (all of them after a
                // rebuild) are saved with the next snapshots, so the next
                // load need not replay them again.
                // A scrubbed snapshot is saved again (over its own
                // sequence), so that the store keeps no credential either.
                dirty: learned_through > snapshot_sequence || scrubbed,
                saved_at: now_ms(),
            },
        );
        let mut known = self.sessions.lock().unwrap();
        for (session, trail) in sessions {
            // Calls this process made meanwhile are the newer account.
            known
                .entry((tenant.clone(), agent_id.to_string(), session))
                .or_insert(trail);
        }
        Ok(())
    }

    /// The agent's sessions active within the idle time, rebuilt from its
    /// latest decisions in the audit log, so that a restart does not
    /// empty `session.tools` and `session.previous_tool`.
    /// Records past `replayed_after` were read by the replay before it,
    /// which logged any it could not vouch for.
    async fn recent_sessions(
        &self,
        tenant: &Tenant,
        agent_id: &str,
        replayed_after: i64,
    ) -> Result<HashMap<String, SessionTrail>, StoreError> {
        let filter = AuditFilter {
            agent_id: Some(agent_id.to_string()),
            kind: Some(AuditKind::Decision),
            from: Some(now_ms() - SESSION_IDLE_MS),
            ..Default::default()
        };
        let mut page = PageRequest::newest_records(SESSION_REBUILD_PAGE);
        let mut newest_first: Vec<ChainedRecord> = Vec::new();
        for _ in 0..SESSION_REBUILD_PAGES {
            let found = self.store.list_audit(tenant, &filter, &page).await?;
            newest_first.extend(found.items);
            match found.next_cursor.as_deref().map(Cursor::decode) {
                Some(Ok(cursor)) => page.after = Some(cursor),
                _ => break,
            }
        }
        let mut sessions: HashMap<String, SessionTrail> = HashMap::new();
        let by = self.vouching(tenant, agent_id);
        for r in newest_first.iter().rev() {
            let vouched = if r.sequence > replayed_after {
                vouched_quietly(&by, r)
            } else {
                vouched_for(&by, r)
            };
            if !vouched {
                continue;
            }
            let (Some(session), Some(tool)) = (&r.record.session_id, &r.record.tool) else {
                continue;
            };
            // A denied or held call did not run (an approved one ran as
            // the decision that used the approval).
            let ran = r.record.decision.as_deref().and_then(|d| d.parse().ok());
            if !ran.is_some_and(super::enforce::runs) {
                continue;
            }
            sessions
                .entry(session.clone())
                .or_default()
                .push(&without_credentials_or_as_is(tool), r.record.at);
        }
        Ok(sessions)
    }

    /// The agent's previous tools in a session, oldest first.
    pub fn session(&self, tenant: &Tenant, agent_id: &str, session_id: &str) -> SessionSoFar {
        self.session_within(tenant, agent_id, session_id, SESSION_TOOLS)
    }

    /// The session with only its last tool (the previous tool, for drift):
    /// what a call needs where no policy reads the session, without
    /// copying up to [`SESSION_TOOLS`] names each time.
    pub fn session_tail(&self, tenant: &Tenant, agent_id: &str, session_id: &str) -> SessionSoFar {
        self.session_within(tenant, agent_id, session_id, 1)
    }

    fn session_within(
        &self,
        tenant: &Tenant,
        agent_id: &str,
        session_id: &str,
        latest: usize,
    ) -> SessionSoFar {
        self.sessions
            .lock()
            .unwrap()
            .get(&(tenant.clone(), agent_id.to_string(), session_id.to_string()))
            .map(|s| SessionSoFar {
                tools: s.tools[s.tools.len().saturating_sub(latest)..].to_vec(),
                calls: s.calls,
            })
            .unwrap_or_default()
    }

    /// Scores a call without learning from it.
    pub fn score(&self, tenant: &Tenant, agent_id: &str, call: &Observation<'_>) -> DriftScore {
        let agents = self.agents.lock().unwrap();
        match agents.get(&(tenant.clone(), agent_id.to_string())) {
            Some(a) => a.profile.score(call),
            None => Profile::default().score(call),
        }
    }

    /// Learns from a call recorded at `sequence`, and remembers it in its
    /// session.
    pub fn observe(
        &self,
        tenant: &Tenant,
        agent_id: &str,
        session_id: Option<&str>,
        call: &Observation<'_>,
        sequence: i64,
    ) {
        {
            let mut agents = self.agents.lock().unwrap();
            let entry = agents
                .entry((tenant.clone(), agent_id.to_string()))
                .or_insert_with(|| AgentDrift {
                    profile: Profile::default(),
                    sequence: 0,
                    loaded_through: 0,
                    dirty: false,
                    saved_at: now_ms(),
                });
            if sequence > entry.loaded_through {
                entry.profile.observe(call);
                entry.sequence = entry.sequence.max(sequence);
                entry.dirty = true;
            }
        }
        if let Some(session) = session_id {
            self.remember_in_session(tenant, agent_id, session, call.tool, call.at_ms);
        }
    }

    /// Adds a call that ran to its session's history.
    pub fn remember_in_session(
        &self,
        tenant: &Tenant,
        agent_id: &str,
        session_id: &str,
        tool: &str,
        at_ms: i64,
    ) {
        let mut sessions = self.sessions.lock().unwrap();
        sessions
            .entry((tenant.clone(), agent_id.to_string(), session_id.to_string()))
            .or_default()
            .push(tool, at_ms);
    }

    /// A snapshot as stored: its seal, a newline, its JSON.
    fn sealed_snapshot(
        &self,
        tenant: &Tenant,
        agent_id: &str,
        sequence: i64,
        json: &str,
    ) -> String {
        let seal =
            self.sealer
                .seal_snapshot(&tenant.org_id, tenant.environment, agent_id, sequence, json);
        format!("{seal}\n{json}")
    }

    /// The JSON of a stored snapshot whose seal holds; none for one
    /// without (saved by a release before snapshots were sealed, or
    /// edited in the database), whose profile is then rebuilt from the
    /// audit log's sealed records.
    fn vouched_snapshot(
        &self,
        tenant: &Tenant,
        agent_id: &str,
        sequence: i64,
        text: String,
    ) -> Option<(i64, String)> {
        let vouched = text.split_once('\n').filter(|(seal, json)| {
            let expected = self.sealer.seal_snapshot(
                &tenant.org_id,
                tenant.environment,
                agent_id,
                sequence,
                json,
            );
            warden_core::secret::digests_match(&expected, seal)
        });
        match vouched {
            Some((_, json)) => Some((sequence, json.to_string())),
            None => {
                tracing::warn!(
                    agent_id,
                    "a drift profile's snapshot does not carry its seal: the profile is rebuilt \
                     from the audit log"
                );
                None
            }
        }
    }

    fn vouching<'a>(&'a self, tenant: &'a Tenant, agent_id: &'a str) -> Vouching<'a> {
        Vouching {
            tenant,
            agent_id,
            sealer: &self.sealer,
        }
    }

    /// Forgets an agent's profile and rebuilds it from the audit log.
    pub async fn rebuild(&self, tenant: &Tenant, agent_id: &str) -> Result<u64, StoreError> {
        self.store.delete_drift_profile(tenant, agent_id).await?;
        self.agents
            .lock()
            .unwrap()
            .remove(&(tenant.clone(), agent_id.to_string()));
        self.ensure_loaded(tenant, agent_id).await?;
        let calls = self
            .agents
            .lock()
            .unwrap()
            .get(&(tenant.clone(), agent_id.to_string()))
            .map_or(0, |a| a.profile.calls);
        Ok(calls)
    }

    /// What the profile has learned of an agent, if it is in memory.
    pub fn summary(&self, tenant: &Tenant, agent_id: &str) -> Option<ProfileSummary> {
        let agents = self.agents.lock().unwrap();
        agents
            .get(&(tenant.clone(), agent_id.to_string()))
            .map(|a| {
                let mut tools: Vec<(String, u64)> = a
                    .profile
                    .tools
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                tools.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let mut transitions: Vec<(String, String, u64)> = a
                    .profile
                    .transitions
                    .iter()
                    .map(|((from, to), n)| (from.clone(), to.clone(), *n))
                    .collect();
                transitions.sort_by(|x, y| x.0.cmp(&y.0).then(y.2.cmp(&x.2)).then(x.1.cmp(&y.1)));
                let mut argument_keys: Vec<(String, Vec<String>)> = a
                    .profile
                    .argument_keys
                    .iter()
                    .map(|(tool, keys)| {
                        let mut keys: Vec<String> = keys.iter().cloned().collect();
                        keys.sort();
                        (tool.clone(), keys)
                    })
                    .collect();
                argument_keys.sort();
                ProfileSummary {
                    calls: a.profile.calls,
                    learning: a.profile.calls < warden_policy::drift::LEARNING_CALLS,
                    tools,
                    baseline_per_minute: a.profile.baseline_per_minute,
                    hours: a.profile.hours,
                    transitions,
                    argument_keys,
                    recent: a.profile.recent.iter().copied().collect(),
                    sequence: a.sequence,
                }
            })
    }

    /// Saves changed profiles and forgets idle sessions.
    pub async fn flush(&self) {
        self.save_snapshots(now_ms() - SNAPSHOT_EVERY_MS).await;
        let cutoff = now_ms() - SESSION_IDLE_MS;
        self.sessions
            .lock()
            .unwrap()
            .retain(|_, s| s.last_seen >= cutoff);
    }

    /// Saves every changed profile, however recently saved: at shutdown.
    pub async fn save_all(&self) {
        self.save_snapshots(Millis::MAX).await;
    }

    /// Saves the changed profiles last saved before `due`. They are copied
    /// under the lock that decisions take and serialized outside it.
    async fn save_snapshots(&self, due: Millis) {
        let now = now_ms();
        let copies: Vec<(Tenant, String, i64, Profile)> = {
            let mut agents = self.agents.lock().unwrap();
            agents
                .iter_mut()
                .filter(|(_, a)| a.dirty && a.saved_at <= due)
                .map(|((tenant, agent), a)| {
                    a.dirty = false;
                    a.saved_at = now;
                    (tenant.clone(), agent.clone(), a.sequence, a.profile.clone())
                })
                .collect()
        };
        let snapshots: Vec<(Tenant, String, i64, String)> = copies
            .into_iter()
            .filter_map(|(tenant, agent, sequence, profile)| {
                serde_json::to_string(&profile).ok().map(|json| {
                    let sealed = self.sealed_snapshot(&tenant, &agent, sequence, &json);
                    (tenant, agent, sequence, sealed)
                })
            })
            .collect();
        if !snapshots.is_empty() {
            if let Err(e) = self.store.save_drift_profiles(&snapshots, now_ms()).await {
                tracing::warn!(error = %e, "saving drift profiles failed; they are rebuilt from the audit log");
            }
        }
    }
}

/// A call as its decision record keeps it, read the same way when a
/// record is learned live (a held call run by its poll) and in a rebuild.
pub struct RecordedCall {
    tool: String,
    previous_tool: Option<String>,
    arg_keys: Vec<String>,
    at_ms: i64,
}

impl RecordedCall {
    /// `None` for a record of no tool call.
    pub fn of(record: &AuditRecord) -> Option<Self> {
        Some(RecordedCall {
            // Names a release before names were refused could record.
            tool: without_credentials_or_as_is(record.tool.as_deref()?),
            previous_tool: record
                .detail
                .get("previous_tool")
                .and_then(|v| v.as_str())
                .map(without_credentials_or_as_is),
            arg_keys: record
                .arguments
                .as_ref()
                .map(argument_keys)
                .unwrap_or_default(),
            at_ms: record.at,
        })
    }

    pub fn observation(&self) -> Observation<'_> {
        Observation {
            tool: &self.tool,
            previous_tool: self.previous_tool.as_deref(),
            arg_keys: &self.arg_keys,
            at_ms: self.at_ms,
        }
    }
}

/// Whether a stored record may teach `agent_id`'s profile: its content
/// matches its hash and names that agent. A row edited in the database
/// (a denied call made to look allowed, a record moved to another agent
/// by its column) would otherwise make a tool look familiar to drift; it
/// is left out and logged, as `GET /api/v1/audit/verify` names it.
fn vouched_for(by: &Vouching, r: &ChainedRecord) -> bool {
    if vouched_quietly(by, r) {
        return true;
    }
    let agent_id = by.agent_id;
    tracing::error!(
        sequence = r.sequence,
        agent_id,
        "an audit record does not match its hash, its seal or its agent: drift does not learn from it"
    );
    false
}

/// `vouched_for` without the log line: for a record the replay of the
/// same load has read (and logged) already.
fn vouched_quietly(by: &Vouching, r: &ChainedRecord) -> bool {
    r.vouched(by.tenant, by.sealer) && r.record.agent_id.as_deref() == Some(by.agent_id)
}

/// What a record must match to teach an agent's profile: that agent, in
/// that chain, sealed with this key.
struct Vouching<'a> {
    tenant: &'a Tenant,
    agent_id: &'a str,
    sealer: &'a ChainSealer,
}

/// Learns from a stored decision record; false when it is not learned.
fn fold(profile: &mut Profile, by: &Vouching, r: &ChainedRecord) -> bool {
    if !vouched_for(by, r) {
        return false;
    }
    // Only calls that ran are learned, as live: not a denied or held call
    // (a poll's use of an approval is the held call running).
    let ran = r.record.decision.as_deref().and_then(|d| d.parse().ok());
    if !ran.is_some_and(super::enforce::runs) {
        return false;
    }
    match RecordedCall::of(&r.record) {
        Some(call) => {
            profile.observe(&call.observation());
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_lose_a_credential_are_one_name_live_and_replayed() {
        let key = format!("wdn_live_{}", "a".repeat(43));
        let other = format!("wdn_test_{}", "b".repeat(43));
        let mut live = argument_keys(&serde_json::json!({"ok": 1, key: 2, other: 3}));
        live.sort();
        assert_eq!(live, ["[REDACTED]", "ok"]);
        // As the audit record keeps them.
        let stored = serde_json::json!({"ok": 1, "[REDACTED]": 2, "[REDACTED] (2)": 3});
        let mut replayed = argument_keys(&stored);
        replayed.sort();
        assert_eq!(replayed, live);
        // A name that only begins so is its own.
        let own = argument_keys(&serde_json::json!({"[REDACTED] (x)": 1}));
        assert_eq!(own, ["[REDACTED] (x)"]);
    }
}
