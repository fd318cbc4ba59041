//! Each tenant's policies compiled once per change. A replica learns of
//! changes made elsewhere by comparing the stored generation counter at
//! most once per [`RECHECK`]; changes made here take effect at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use warden_core::policy::{CompiledPolicy, KnownConditions, PolicyRecord};
use warden_core::Tenant;
use warden_policy::{ArgChange, ArgPath, ConditionInput, Decision, Policy, PolicySet};
use warden_store::{Store, StoreError};

/// How stale another replica's view of the policies may be.
pub const RECHECK: Duration = Duration::from_secs(1);
/// The tenant setting holding the default decision.
pub const DEFAULT_DECISION: &str = "default_decision";

/// What the engine needs beside the compiled set, by policy id.
pub struct PolicyFacts {
    pub name: String,
    pub version: i64,
    pub change: Option<ArgChange>,
    pub audit_redact: Vec<ArgPath>,
    pub audit_redact_context: Vec<ArgPath>,
    pub step_up_timeout_seconds: u32,
    pub decision: Decision,
    /// When the policy last changed: a hold's approval given before it
    /// did not see it.
    pub updated_at: i64,
    /// When it was created: tied `modify` policies apply in this order.
    pub created_at: i64,
}

pub struct TenantPolicies {
    pub set: PolicySet<ConditionInput>,
    pub facts: HashMap<String, PolicyFacts>,
    /// Disabled policies that name fields to redact: disabling a policy
    /// stops its decision, not the keeping of its secrets out of storage.
    disabled: Vec<Policy<ConditionInput>>,
    /// The conditions compiled, by source, for the next compilation.
    conditions: KnownConditions,
    /// Whether a condition of an enabled policy names `session`: only then
    /// are a session's calls decided one at a time (`session_order`).
    pub reads_session: bool,
    generation: i64,
    checked: RwLock<Instant>,
}

impl TenantPolicies {
    /// Compiles stored policies; one that no longer compiles (stored by an
    /// older version) is left out and logged rather than failing them all.
    /// Conditions the `previous` compilation holds are taken from it.
    pub fn compile(
        records: Vec<PolicyRecord>,
        default: Decision,
        generation: i64,
        previous: Option<&TenantPolicies>,
    ) -> Self {
        let mut policies = Vec::with_capacity(records.len());
        let mut facts = HashMap::with_capacity(records.len());
        let mut disabled = Vec::new();
        let empty = KnownConditions::new();
        let known = previous.map_or(&empty, |p| &p.conditions);
        let mut conditions = KnownConditions::new();
        let mut reads_session = false;
        for record in records {
            match record.compile_reusing(known) {
                Ok(CompiledPolicy {
                    policy,
                    change,
                    audit_redact,
                    audit_redact_context,
                }) => {
                    if let (Some(src), Some(c)) = (&record.condition, &policy.condition) {
                        conditions.insert(src.clone(), c.clone());
                    }
                    let redacts = !audit_redact.is_empty()
                        || !audit_redact_context.is_empty()
                        || change.as_ref().is_some_and(|c| !c.redact.is_empty());
                    facts.insert(
                        record.id.clone(),
                        PolicyFacts {
                            name: record.name.clone(),
                            version: record.version,
                            change,
                            audit_redact,
                            audit_redact_context,
                            step_up_timeout_seconds: record.step_up_timeout_seconds,
                            decision: policy.decision,
                            updated_at: record.updated_at,
                            created_at: record.created_at,
                        },
                    );
                    if policy.enabled {
                        reads_session |= record.condition.as_deref().is_some_and(names_session);
                        policies.push(policy);
                    } else if redacts {
                        disabled.push(policy);
                    }
                }
                Err(e) => {
                    tracing::error!(policy = %record.id, error = %e, "stored policy does not compile; skipped")
                }
            }
        }
        TenantPolicies {
            set: PolicySet::compile(policies, default),
            facts,
            disabled,
            conditions,
            reads_session,
            generation,
            checked: RwLock::new(Instant::now()),
        }
    }

    /// The paths redacted wherever a call of `tool` by this agent is
    /// stored: in its arguments, those named by the `audit_redact` and
    /// `modify.redact`, and in the caller's context, those named by the
    /// `audit_redact_context` of every policy whose pattern and selector
    /// take the call in, whatever
    /// its condition, mode or `enabled` (a secret is as secret when the
    /// condition did not hold, or the policy was switched off).
    pub fn redactions(
        &self,
        tool: &str,
        agent_id: &str,
        agent_alias: Option<&str>,
        agent_tags: &[String],
    ) -> Redactions<'_> {
        let mut paths = Redactions::default();
        let disabled = self.disabled.iter().filter(|p| {
            p.pattern.matches(tool)
                && p.agents
                    .as_ref()
                    .is_none_or(|s| s.selects(agent_id, agent_alias, agent_tags))
        });
        for p in self
            .set
            .candidates(tool, agent_id, agent_alias, agent_tags)
            .chain(disabled)
        {
            if let Some(facts) = self.facts.get(&p.id) {
                paths.arguments.extend(facts.audit_redact.iter());
                if let (Decision::Modify, Some(change)) = (facts.decision, &facts.change) {
                    paths.arguments.extend(change.redact.iter());
                }
                paths.context.extend(facts.audit_redact_context.iter());
            }
        }
        paths
    }
}

/// The paths a call's stored record redacts ([`TenantPolicies::redactions`]).
#[derive(Default)]
pub struct Redactions<'a> {
    /// In its arguments (`audit_redact`, `modify.redact`).
    pub arguments: Vec<&'a ArgPath>,
    /// In the caller's context (`audit_redact_context`).
    pub context: Vec<&'a ArgPath>,
}

pub struct PolicyEngine {
    store: Arc<dyn Store>,
    tenants: RwLock<HashMap<Tenant, Arc<TenantPolicies>>>,
}

impl PolicyEngine {
    pub fn new(store: Arc<dyn Store>) -> Self {
        PolicyEngine {
            store,
            tenants: RwLock::new(HashMap::new()),
        }
    }

    /// The tenant's compiled policies, recompiled if they changed.
    pub async fn policies(&self, tenant: &Tenant) -> Result<Arc<TenantPolicies>, StoreError> {
        let cached = self.tenants.read().unwrap().get(tenant).cloned();
        if let Some(c) = &cached {
            if c.checked.read().unwrap().elapsed() < RECHECK {
                return Ok(c.clone());
            }
            let generation = self.store.policy_generation(tenant).await?;
            if generation == c.generation {
                *c.checked.write().unwrap() = Instant::now();
                return Ok(c.clone());
            }
        }
        self.load(tenant).await
    }

    /// The tenant's compiled policies as the store has them now, even if
    /// another replica changed them within the last [`RECHECK`].
    pub async fn current(&self, tenant: &Tenant) -> Result<Arc<TenantPolicies>, StoreError> {
        let cached = self.tenants.read().unwrap().get(tenant).cloned();
        match cached {
            Some(c) if c.generation == self.store.policy_generation(tenant).await? => Ok(c),
            _ => self.load(tenant).await,
        }
    }

    /// Recompiles now: after a change made by this process.
    pub async fn load(&self, tenant: &Tenant) -> Result<Arc<TenantPolicies>, StoreError> {
        let generation = self.store.policy_generation(tenant).await?;
        let default = self.default_decision(tenant).await?;
        let records = self.store.all_policies(tenant).await?;
        let previous = self.tenants.read().unwrap().get(tenant).cloned();
        let compiled = Arc::new(TenantPolicies::compile(
            records,
            default,
            generation,
            previous.as_deref(),
        ));
        self.tenants
            .write()
            .unwrap()
            .insert(tenant.clone(), compiled.clone());
        Ok(compiled)
    }

    pub async fn default_decision(&self, tenant: &Tenant) -> Result<Decision, StoreError> {
        Ok(self
            .store
            .tenant_setting(tenant, DEFAULT_DECISION)
            .await?
            .and_then(|d| d.parse().ok())
            .unwrap_or(Decision::Allow))
    }
}

/// Whether a condition's text names the `session` variable: a word of its
/// own (a string or a field of that name counts too, which only costs a
/// wait). CEL reads a variable only by naming it.
fn names_session(condition: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    condition.match_indices("session").any(|(at, _)| {
        let before = condition[..at].chars().next_back();
        let after = condition[at + "session".len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

#[cfg(test)]
mod tests {
    use super::names_session;

    #[test]
    fn a_condition_names_session_as_a_word() {
        for reads in [
            "'crm.read' in session.tools",
            "session.calls > 3",
            "size(session['tools']) > 1",
            "(session).previous_tool == 'a'",
        ] {
            assert!(names_session(reads), "{reads}");
        }
        for not in [
            "args.session_id == 'a'",
            "context.sessions > 1",
            "tool == 'x'",
        ] {
            assert!(!names_session(not), "{not}");
        }
    }
}
