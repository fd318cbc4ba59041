//! A tenant's policies compiled for evaluation: indexed by pattern so that a
//! call is tried only against the policies whose pattern can match it.
//!
//! Precedence: among matching enabled `enforce` policies the highest
//! priority wins; on a tie the most restrictive decision (deny > step_up >
//! modify > audit > allow). No match gives the organization's default.
//! `monitor` policies are ranked the same way, separately, and only say
//! what they would have decided.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::decision::{Decision, Mode};
use crate::pattern::{Shape, ToolPattern};

/// Why a condition could not be evaluated for a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConditionError(pub String);

/// A predicate over the call's context (CEL in the server). `Ctx` is
/// whatever the condition language reads: arguments, session, drift, time.
pub trait Condition<Ctx>: Send + Sync + fmt::Debug {
    fn holds(&self, context: &Ctx) -> Result<bool, ConditionError>;

    /// Whether the condition may read the named input. What cannot tell
    /// says it may.
    fn reads(&self, _input: &str) -> bool {
        true
    }
}

/// Which agents a policy applies to: any listed id or any listed tag. A
/// policy without a selector applies to every agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentSelector {
    pub ids: HashSet<String>,
    pub tags: HashSet<String>,
}

impl AgentSelector {
    pub fn selects(&self, call_agent: &str, alias: Option<&str>, agent_tags: &[String]) -> bool {
        self.ids.contains(call_agent)
            || alias.is_some_and(|a| self.ids.contains(a))
            || agent_tags.iter().any(|t| self.tags.contains(t))
    }
}

pub struct Policy<Ctx> {
    pub id: String,
    pub pattern: ToolPattern,
    pub agents: Option<AgentSelector>,
    pub condition: Option<Arc<dyn Condition<Ctx>>>,
    pub decision: Decision,
    pub priority: i32,
    pub mode: Mode,
    pub enabled: bool,
}

impl<Ctx> fmt::Debug for Policy<Ctx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("id", &self.id)
            .field("pattern", &self.pattern.as_str())
            .field("decision", &self.decision)
            .field("priority", &self.priority)
            .field("mode", &self.mode)
            .finish()
    }
}

/// The call being decided.
pub struct Call<'a, Ctx> {
    pub tool: &'a str,
    pub agent_id: &'a str,
    /// Another name of the agent selectors may use (its external id).
    pub agent_alias: Option<&'a str>,
    pub agent_tags: &'a [String],
    pub context: &'a Ctx,
}

/// The outcome, with the policies that led to it.
#[derive(Debug)]
pub struct Evaluation<'s, Ctx> {
    pub decision: Decision,
    /// The `enforce` policy that decided; none means the default applied.
    pub deciding: Option<&'s Policy<Ctx>>,
    /// Every matching `enforce` policy, strongest first.
    pub matched: Vec<&'s Policy<Ctx>>,
    /// Every matching `monitor` policy, strongest first.
    pub monitored: Vec<&'s Policy<Ctx>>,
    /// The decision had the monitor policies been enforced, by the same
    /// rules (failed conditions included); none without monitor policies.
    pub monitor_decision: Option<Decision>,
    /// Whether the monitor policies leave the enforce policies' winner as
    /// it is (none match above it): what happens to the call after the
    /// policies (an approval used, a suspension) then happens to the
    /// monitored outcome too.
    pub monitor_agrees: bool,
    /// Conditions that failed to evaluate. A failed condition counts as
    /// met or unmet, whichever makes the outcome more restrictive (unmet
    /// for an `allow` policy): an error never loosens the outcome.
    pub condition_errors: Vec<(&'s Policy<Ctx>, ConditionError)>,
}

/// Policy indices by the literal text a matching tool name must start with.
#[derive(Debug, Default)]
struct PrefixIndex {
    by_prefix: HashMap<String, Vec<u32>>,
    lengths: Vec<usize>,
}

impl PrefixIndex {
    fn insert(&mut self, prefix: &str, policy: u32) {
        self.by_prefix
            .entry(prefix.to_string())
            .or_default()
            .push(policy);
        if !self.lengths.contains(&prefix.len()) {
            self.lengths.push(prefix.len());
            self.lengths.sort_unstable();
        }
    }

    fn candidates<'a>(&'a self, tool: &'a str) -> impl Iterator<Item = u32> + 'a {
        self.lengths
            .iter()
            .take_while(move |len| **len <= tool.len())
            .filter(move |len| tool.is_char_boundary(**len))
            .filter_map(move |len| self.by_prefix.get(&tool[..*len]))
            .flatten()
            .copied()
    }
}

pub struct PolicySet<Ctx> {
    policies: Vec<Policy<Ctx>>,
    default: Decision,
    exact: HashMap<String, Vec<u32>>,
    prefixes: PrefixIndex,
    globs: PrefixIndex,
    everything: Vec<u32>,
}

impl<Ctx> PolicySet<Ctx> {
    /// Compiles the enabled policies; `default` applies when none matches.
    pub fn compile(policies: Vec<Policy<Ctx>>, default: Decision) -> Self {
        let policies: Vec<Policy<Ctx>> = policies.into_iter().filter(|p| p.enabled).collect();
        let mut set = PolicySet {
            default,
            exact: HashMap::new(),
            prefixes: PrefixIndex::default(),
            globs: PrefixIndex::default(),
            everything: Vec::new(),
            policies: Vec::new(),
        };
        for (i, policy) in policies.iter().enumerate() {
            let i = i as u32;
            let pattern = &policy.pattern;
            match pattern.shape() {
                Shape::Exact => set
                    .exact
                    .entry(pattern.as_str().to_string())
                    .or_default()
                    .push(i),
                Shape::Everything => set.everything.push(i),
                Shape::Prefix => set.prefixes.insert(pattern.literal_prefix(), i),
                Shape::Glob => set.globs.insert(pattern.literal_prefix(), i),
            }
        }
        set.policies = policies;
        set
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// A compiled policy by id.
    pub fn policy(&self, id: &str) -> Option<&Policy<Ctx>> {
        self.policies.iter().find(|p| p.id == id)
    }

    pub fn default_decision(&self) -> Decision {
        self.default
    }

    /// Indices of the policies whose pattern matches `tool`.
    fn pattern_matches<'a>(&'a self, tool: &'a str) -> impl Iterator<Item = u32> + 'a {
        let exact = self.exact.get(tool).into_iter().flatten().copied();
        let globs = self
            .globs
            .candidates(tool)
            .filter(move |i| self.policies[*i as usize].pattern.matches(tool));
        exact
            .chain(self.prefixes.candidates(tool))
            .chain(globs)
            .chain(self.everything.iter().copied())
    }

    /// The policies whose pattern and agent selector take in a call of
    /// `tool` by this agent, whatever their conditions would say: every
    /// policy that could decide such a call.
    pub fn candidates<'s>(
        &'s self,
        tool: &'s str,
        agent_id: &'s str,
        agent_alias: Option<&'s str>,
        agent_tags: &'s [String],
    ) -> impl Iterator<Item = &'s Policy<Ctx>> + 's {
        self.pattern_matches(tool)
            .map(|i| &self.policies[i as usize])
            .filter(move |p| {
                p.agents
                    .as_ref()
                    .is_none_or(|s| s.selects(agent_id, agent_alias, agent_tags))
            })
    }

    pub fn evaluate<'s>(&'s self, call: &Call<'_, Ctx>) -> Evaluation<'s, Ctx> {
        // Each matching enforce policy, and whether its condition failed.
        let mut matched: Vec<(&'s Policy<Ctx>, bool)> = Vec::new();
        let mut monitored = Vec::new();
        let mut condition_errors = Vec::new();
        for i in self.pattern_matches(call.tool) {
            let policy = &self.policies[i as usize];
            if let Some(selector) = &policy.agents {
                if !selector.selects(call.agent_id, call.agent_alias, call.agent_tags) {
                    continue;
                }
            }
            let mut failed = false;
            if let Some(condition) = &policy.condition {
                match condition.holds(call.context) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(err) => {
                        condition_errors.push((policy, err));
                        if policy.decision == Decision::Allow {
                            continue;
                        }
                        failed = true;
                    }
                }
            }
            match policy.mode {
                Mode::Enforce => matched.push((policy, failed)),
                Mode::Monitor => monitored.push((policy, failed)),
            }
        }
        let rank = |p: &&Policy<Ctx>| std::cmp::Reverse((p.priority, p.decision.restrictiveness()));
        matched.sort_by_key(|(p, _)| rank(p));
        monitored.sort_by_key(|(p, _)| rank(p));
        let (decision, deciding) = self.worst_case(&matched);
        // Had the monitor policies been enforced: the same rules over both.
        let monitor_outcome = (!monitored.is_empty()).then(|| {
            let mut both: Vec<(&'s Policy<Ctx>, bool)> =
                matched.iter().chain(&monitored).copied().collect();
            both.sort_by_key(|(p, _)| rank(p));
            self.worst_case(&both)
        });
        let monitor_agrees = monitor_outcome.is_none_or(|(would, winner)| {
            would == decision
                && match (winner, deciding) {
                    (Some(a), Some(b)) => std::ptr::eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
        });
        let monitor_decision = monitor_outcome.map(|(would, _)| would);
        let monitored: Vec<&'s Policy<Ctx>> = monitored.into_iter().map(|(p, _)| p).collect();
        let mut matched: Vec<&'s Policy<Ctx>> = matched.into_iter().map(|(p, _)| p).collect();
        // The deciding policy leads the list, as when no condition failed.
        if let Some(d) = deciding {
            if let Some(at) = matched.iter().position(|p| std::ptr::eq(*p, d)) {
                let d = matched.remove(at);
                matched.insert(0, d);
            }
        }
        Evaluation {
            decision,
            deciding,
            matched,
            monitored,
            monitor_decision,
            monitor_agrees,
            condition_errors,
        }
    }

    /// The outcome of the matching enforce policies (strongest first, each
    /// with whether its condition failed): the most restrictive outcome
    /// the calls' failed conditions could give, had each been met or not.
    /// Without failures, the strongest policy. A failed condition is one
    /// the caller's arguments can provoke, so it must never loosen the
    /// outcome: a failed `audit` above a `deny` does not lift the deny.
    ///
    /// A priority level wins in some world if nothing certain stands above
    /// it: the top level of the policies whose conditions held, and every
    /// level above it made of failed ones; the default too, when no policy
    /// certainly matched. Within a level every failed policy may be met.
    /// Of outcomes equally strict, the one of a policy that held stands.
    fn worst_case<'s>(
        &self,
        matched: &[(&'s Policy<Ctx>, bool)],
    ) -> (Decision, Option<&'s Policy<Ctx>>) {
        // Without the failed conditions: the strongest policy whose
        // condition held (the first), or the default.
        let certain = matched.iter().find(|(_, failed)| !failed).map(|(p, _)| *p);
        // A failed policy that could win (nothing certain above it) and is
        // stricter than that outcome: the strictest, the first among
        // equals. One only as strict as a policy that held (a failed
        // `modify` above a `modify` that applies) does not decide: the one
        // that held does, with its changes. Over the default, a failed
        // policy as strict decides, so that the reason names it.
        let mut stricter: Option<&'s Policy<Ctx>> = None;
        for (p, failed) in matched {
            if !*failed || certain.is_some_and(|c| p.priority < c.priority) {
                continue;
            }
            let outranks = match (stricter, certain) {
                (Some(s), _) => p.decision.restrictiveness() > s.decision.restrictiveness(),
                (None, Some(c)) => p.decision.restrictiveness() > c.decision.restrictiveness(),
                (None, None) => p.decision.restrictiveness() >= self.default.restrictiveness(),
            };
            if outranks {
                stricter = Some(p);
            }
        }
        match stricter.or(certain) {
            Some(p) => (p.decision, Some(p)),
            None => (self.default, None),
        }
    }
}
