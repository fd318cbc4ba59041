//! Policies over agents' tool calls, as stored and versioned. The engine
//! (`warden-policy`) compiles them; this module validates a policy so that
//! only one that compiles is ever stored.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warden_policy::{
    AgentSelector, ArgChange, ArgPath, CelCondition, ConditionInput, Decision, Mode, Policy,
    ToolPattern,
};

use crate::agent::{optional_text, refuse_credential, refuse_credential_in, text};
use crate::time::Millis;
use crate::{Error, Result};

pub const MAX_NAME: usize = 200;
pub const MAX_DESCRIPTION: usize = 2_000;
pub const MAX_SELECTED: usize = 500;
pub const MAX_PRIORITY: i32 = 1_000_000;
/// Step-up holds expire after this unless the policy says otherwise.
pub const DEFAULT_STEP_UP_TIMEOUT_SECONDS: u32 = 15 * 60;
pub const MAX_STEP_UP_TIMEOUT_SECONDS: u32 = 7 * 24 * 3600;
/// Most policies per tenant: keeps one tenant's compiled set bounded.
pub const MAX_POLICIES: usize = 200_000;

/// Which agents a policy applies to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsSpec {
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// For `modify`: fields to redact, then fields to set, by path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModifySpec {
    #[serde(default)]
    pub redact: Vec<String>,
    #[serde(default)]
    pub set: Map<String, Value>,
}

/// A policy as stored. `version` counts its changes from 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub action_pattern: String,
    pub agents: Option<AgentsSpec>,
    pub condition: Option<String>,
    pub decision: String,
    pub modify: Option<ModifySpec>,
    /// Argument fields kept out of the audit log whenever this policy
    /// matches a call.
    #[serde(default)]
    pub audit_redact: Vec<String>,
    /// Fields of the caller's `context` kept out of the audit log in the
    /// same way.
    #[serde(default)]
    pub audit_redact_context: Vec<String>,
    pub priority: i32,
    pub mode: String,
    pub enabled: bool,
    pub step_up_timeout_seconds: u32,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The key that made the latest change.
    pub updated_by: String,
}

/// The fields a create or change may set; `None` leaves a field alone,
/// `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct PolicyChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub action_pattern: Option<String>,
    pub agents: Option<Option<AgentsSpec>>,
    pub condition: Option<Option<String>>,
    pub decision: Option<String>,
    pub modify: Option<Option<ModifySpec>>,
    pub audit_redact: Option<Vec<String>>,
    pub audit_redact_context: Option<Vec<String>>,
    pub priority: Option<i32>,
    pub mode: Option<String>,
    pub enabled: Option<bool>,
    pub step_up_timeout_seconds: Option<u32>,
}

/// A policy checked and compiled for the engine.
pub struct CompiledPolicy {
    pub policy: Policy<ConditionInput>,
    pub change: Option<ArgChange>,
    pub audit_redact: Vec<ArgPath>,
    pub audit_redact_context: Vec<ArgPath>,
}

impl PolicyRecord {
    /// A new policy from changes; `name`, `action_pattern` and `decision`
    /// are required.
    pub fn create(changes: PolicyChanges, id: String, by: &str, now: Millis) -> Result<Self> {
        for (field, missing) in [
            ("name", changes.name.is_none()),
            ("action_pattern", changes.action_pattern.is_none()),
            ("decision", changes.decision.is_none()),
        ] {
            if missing {
                return Err(Error::invalid(field, format!("{field} is required")));
            }
        }
        let mut record = PolicyRecord {
            id,
            name: String::new(),
            description: None,
            action_pattern: String::new(),
            agents: None,
            condition: None,
            decision: String::new(),
            modify: None,
            audit_redact: Vec::new(),
            audit_redact_context: Vec::new(),
            priority: 0,
            mode: Mode::Enforce.as_str().into(),
            enabled: true,
            step_up_timeout_seconds: DEFAULT_STEP_UP_TIMEOUT_SECONDS,
            version: 0,
            created_at: now,
            updated_at: now,
            updated_by: by.to_string(),
        };
        record.apply(changes, by, now)?;
        Ok(record)
    }

    /// Applies a change and checks the result compiles; bumps the version.
    pub fn apply(&mut self, c: PolicyChanges, by: &str, now: Millis) -> Result<()> {
        if let Some(v) = c.name {
            self.name = text(v, "name", MAX_NAME)?;
        }
        if let Some(v) = c.description {
            self.description = optional_text(v, "description", MAX_DESCRIPTION)?;
        }
        if let Some(v) = c.action_pattern {
            refuse_credential(&v, "action_pattern")?;
            self.action_pattern = v;
        }
        if let Some(v) = c.agents {
            // A selector that names nobody would make a policy that never
            // applies, silently; leaving it out is how to select everyone.
            if v.as_ref()
                .is_some_and(|a| a.ids.is_empty() && a.tags.is_empty())
            {
                return Err(Error::invalid(
                    "agents",
                    "agents must list at least one id or tag; leave it out (or null) to apply to every agent",
                ));
            }
            self.agents = v;
        }
        if let Some(v) = c.condition {
            if let Some(src) = &v {
                refuse_credential(src, "condition")?;
            }
            self.condition = v;
        }
        if let Some(v) = c.decision {
            // A policy that stops modifying drops its change unless the
            // same request sends one (which is then refused).
            if v != "modify" && c.modify.is_none() {
                self.modify = None;
            }
            self.decision = v;
        }
        if let Some(v) = c.modify {
            if let Some(spec) = &v {
                check_paths(listed(&spec.redact, "modify.redact"))?;
                // The values set are data, and a key holding a credential
                // is named by `modify.set` alone (never quoted).
                refuse_credential_in(&Value::Object(spec.set.clone()), "modify.set")?;
                check_paths(
                    spec.set
                        .keys()
                        .map(|path| (format!("modify.set.{path}"), path.as_str())),
                )?;
            }
            self.modify = v;
        }
        if let Some(v) = c.audit_redact {
            check_paths(listed(&v, "audit_redact"))?;
            self.audit_redact = v;
        }
        if let Some(v) = c.audit_redact_context {
            check_paths(listed(&v, "audit_redact_context"))?;
            self.audit_redact_context = v;
        }
        if let Some(v) = c.priority {
            if v.abs() > MAX_PRIORITY {
                return Err(Error::invalid(
                    "priority",
                    format!("priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"),
                ));
            }
            self.priority = v;
        }
        if let Some(v) = c.mode {
            self.mode = v;
        }
        if let Some(v) = c.enabled {
            self.enabled = v;
        }
        if let Some(v) = c.step_up_timeout_seconds {
            if v == 0 || v > MAX_STEP_UP_TIMEOUT_SECONDS {
                return Err(Error::invalid(
                    "step_up_timeout_seconds",
                    format!("step_up_timeout_seconds must be 1 to {MAX_STEP_UP_TIMEOUT_SECONDS}"),
                ));
            }
            self.step_up_timeout_seconds = v;
        }
        if let Some(agents) = &mut self.agents {
            agents.tags = crate::agent::validate_tags(std::mem::take(&mut agents.tags))
                .map_err(|e| rename_field(e, "agents.tags"))?;
            if agents.ids.len() > MAX_SELECTED {
                return Err(Error::invalid(
                    "agents.ids",
                    format!("at most {MAX_SELECTED} agent ids"),
                ));
            }
            for (i, id) in agents.ids.iter_mut().enumerate() {
                // As agents are registered and enforcement finds them: an
                // external id without plain spaces around it, a Warden id
                // in lower case. Kept as written, neither could ever
                // select an agent. Other spaces are refused below.
                *id = id.trim_matches(' ').to_string();
                if crate::agent::looks_like_agent_id(id) {
                    *id = id.to_ascii_lowercase();
                }
                let field = format!("agents.ids[{i}]");
                if id.is_empty() || id.chars().count() > 200 {
                    return Err(Error::invalid(
                        &field,
                        format!(
                            "{field} must be an agent id or external id of 1 to 200 characters"
                        ),
                    ));
                }
                if let Some(c) = id.chars().find(|c| c.is_control()) {
                    return Err(Error::invalid(
                        &field,
                        format!(
                            "{field} must not contain control characters (U+{:04X})",
                            c as u32
                        ),
                    ));
                }
                crate::agent::visible(id, &format!("agents.ids[{i}]"))?;
            }
        }
        self.compile_as(Written::Now, &KnownConditions::new())?;
        self.version += 1;
        self.updated_at = now;
        self.updated_by = by.to_string();
        Ok(())
    }

    /// Builds the engine's policy from a stored one: the checks a policy
    /// passed when it was written, less the cost rules that came after
    /// some were stored (a stored policy that stopped loading would stop
    /// enforcing).
    pub fn compile(&self) -> Result<CompiledPolicy> {
        self.compile_as(Written::Before, &KnownConditions::new())
    }

    /// As [`Self::compile`], taking the condition from `known` when its
    /// source is there: a change to one policy of thousands recompiles
    /// one condition, not all of them.
    pub fn compile_reusing(&self, known: &KnownConditions) -> Result<CompiledPolicy> {
        self.compile_as(Written::Before, known)
    }

    /// Checks every part and builds the engine's policy.
    fn compile_as(&self, written: Written, known: &KnownConditions) -> Result<CompiledPolicy> {
        let pattern = ToolPattern::parse(&self.action_pattern).map_err(|e| Error::InvalidAt {
            field: "action_pattern".into(),
            message: e.to_string(),
            line: 1,
            column: e.position,
        })?;
        let decision: Decision = self.decision.parse().map_err(|_| {
            Error::invalid(
                "decision",
                "decision must be allow, deny, step_up, audit or modify",
            )
        })?;
        let mode: Mode = self
            .mode
            .parse()
            .map_err(|_| Error::invalid("mode", "mode must be enforce or monitor"))?;
        // A stored condition compiles the same from the same source.
        let reused = match (&self.condition, written) {
            (Some(src), Written::Before) => known.get(src).cloned(),
            _ => None,
        };
        let condition = match &self.condition {
            _ if reused.is_some() => reused,
            None => None,
            Some(src) => {
                let compiled = match written {
                    Written::Now => CelCondition::compile(src),
                    Written::Before => CelCondition::compile_stored(src),
                }
                .map_err(|e| Error::InvalidAt {
                    field: "condition".into(),
                    message: e.message,
                    line: e.line,
                    column: e.column,
                })?;
                Some(std::sync::Arc::new(compiled)
                    as std::sync::Arc<
                        dyn warden_policy::Condition<ConditionInput>,
                    >)
            }
        };
        let change = match (&self.modify, decision) {
            (Some(spec), Decision::Modify) => Some(compile_change(spec)?),
            (None, Decision::Modify) => {
                return Err(Error::invalid(
                    "modify",
                    "a modify policy says what to change: {\"redact\": [paths], \"set\": {path: value}}",
                ))
            }
            (Some(_), _) => {
                return Err(Error::invalid(
                    "modify",
                    "modify applies only to policies whose decision is modify",
                ))
            }
            (None, _) => None,
        };
        let audit_redact = paths(&self.audit_redact, "audit_redact")?;
        let audit_redact_context = paths(&self.audit_redact_context, "audit_redact_context")?;
        let agents = self.agents.as_ref().map(|a| AgentSelector {
            ids: a.ids.iter().cloned().collect(),
            tags: a.tags.iter().cloned().collect(),
        });
        Ok(CompiledPolicy {
            policy: Policy {
                id: self.id.clone(),
                pattern,
                agents,
                condition,
                decision,
                priority: self.priority,
                mode,
                enabled: self.enabled,
            },
            change,
            audit_redact,
            audit_redact_context,
        })
    }
}

/// Checks the paths a policy is written with, each named by its field:
/// none holds a Warden key (`refuse_credential`), and no segment is a
/// signed number (`tokens.-1`, `items.+1`): read as Python reads it, `-1`
/// would be the last element, but a path's number counts from the first,
/// so `-1` names a literal key and leaves the element it seems to cover
/// in the clear (or, to `set`, turns the array into an object).
fn check_paths<'a>(paths: impl Iterator<Item = (String, &'a str)>) -> Result<()> {
    for (field, path) in paths {
        refuse_credential(path, &field)?;
        let mut column = 1;
        for segment in path.split('.') {
            let signed = segment.len() > 1
                && segment.starts_with(['-', '+'])
                && segment[1..].bytes().all(|b| b.is_ascii_digit());
            if signed {
                return Err(Error::InvalidAt {
                    field,
                    message: format!(
                        "`{segment}` is not an index: a path's numbers count from the first \
                         element (0), and a signed one names a literal key"
                    ),
                    line: 1,
                    column,
                });
            }
            column += segment.chars().count() + 1;
        }
    }
    Ok(())
}

/// A list's paths, each named by its place (`audit_redact[1]`).
fn listed<'a>(paths: &'a [String], field: &'a str) -> impl Iterator<Item = (String, &'a str)> {
    paths
        .iter()
        .enumerate()
        .map(move |(i, path)| (format!("{field}[{i}]"), path.as_str()))
}

fn rename_field(e: Error, prefix: &str) -> Error {
    match e {
        Error::Invalid { field, message } => Error::Invalid {
            message: message.replacen(&field, &field.replacen("tags", prefix, 1), 1),
            field: field.replacen("tags", prefix, 1),
        },
        other => other,
    }
}

fn paths(list: &[String], field: &str) -> Result<Vec<ArgPath>> {
    if list.len() > warden_policy::modify::MAX_PATHS {
        return Err(Error::invalid(
            field,
            format!("at most {} paths", warden_policy::modify::MAX_PATHS),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            ArgPath::parse(p).map_err(|e| Error::InvalidAt {
                field: format!("{field}[{i}]"),
                message: e.message,
                line: 1,
                column: e.position,
            })
        })
        .collect()
}

/// Compiled conditions by their source, as stored policies compile them.
pub type KnownConditions =
    std::collections::HashMap<String, std::sync::Arc<dyn warden_policy::Condition<ConditionInput>>>;

/// Whether a policy is being written now or was stored before.
#[derive(Clone, Copy)]
enum Written {
    Now,
    Before,
}

/// Most JSON a `modify.set` may hold, over all its values: assignments
/// are small fixed values (a flag, a limit, a placeholder).
pub const MAX_SET_VALUES_BYTES: usize = 64 * 1024;

fn compile_change(spec: &ModifySpec) -> Result<ArgChange> {
    let redact = paths(&spec.redact, "modify.redact")?;
    if spec.set.len() > warden_policy::modify::MAX_PATHS {
        return Err(Error::invalid(
            "modify.set",
            format!("at most {} paths", warden_policy::modify::MAX_PATHS),
        ));
    }
    let mut set = Vec::with_capacity(spec.set.len());
    let mut total = 0;
    for (path, value) in &spec.set {
        total += serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
        if total > MAX_SET_VALUES_BYTES {
            return Err(Error::invalid(
                format!("modify.set.{path}"),
                format!("the values set are at most {MAX_SET_VALUES_BYTES} bytes of JSON in all"),
            ));
        }
        let parsed = ArgPath::parse(path).map_err(|e| Error::InvalidAt {
            field: format!("modify.set.{path}"),
            message: e.message,
            line: 1,
            column: e.position,
        })?;
        set.push((parsed, value.clone()));
    }
    let change = ArgChange { redact, set };
    if change.is_empty() {
        return Err(Error::invalid(
            "modify",
            "a modify policy redacts or sets at least one field",
        ));
    }
    Ok(change)
}

/// A stored version of a policy: the whole policy after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub policy_id: String,
    pub version: i64,
    /// `created`, `updated` or `deleted`.
    pub change: String,
    pub changed_by: String,
    pub changed_at: Millis,
    pub policy: PolicyRecord,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_policy_loads_under_the_rules_it_was_written_with() {
        let changes = PolicyChanges {
            name: Some("no secrets in text".into()),
            action_pattern: Some("chat.*".into()),
            decision: Some("deny".into()),
            ..Default::default()
        };
        let mut record = PolicyRecord::create(changes, "pol_1".into(), "key_1", 0).unwrap();
        // A condition written before the cost rules existed.
        let costly = "args.items.exists(a, args.text.contains(a))";
        record.condition = Some(costly.into());
        assert!(record.compile().is_ok(), "a stored policy keeps enforcing");
        // Writing it again is checked under today's rules.
        let err = record
            .apply(
                PolicyChanges {
                    description: Some(Some("edited".into())),
                    ..Default::default()
                },
                "key_1",
                1,
            )
            .expect_err("the cost rules apply when the policy is written");
        assert!(
            matches!(&err, Error::InvalidAt { field, .. } if field == "condition"),
            "{err:?}"
        );
    }

    #[test]
    fn a_policy_refuses_a_warden_key_in_any_text_it_keeps() {
        let key = "wdn_live_Q2v8mXr4Tn6bW1yZk3Hc9Lp5Df7Gs0Ja2Ue4Vi6Oq8Rt";
        let base = || PolicyChanges {
            name: Some("checked".into()),
            action_pattern: Some("payments.*".into()),
            decision: Some("modify".into()),
            modify: Some(Some(ModifySpec {
                redact: vec!["card".into()],
                set: Map::new(),
            })),
            ..Default::default()
        };
        let set = |path: &str, value: Value| {
            let mut set = Map::new();
            set.insert(path.into(), value);
            Some(Some(ModifySpec {
                redact: vec![],
                set,
            }))
        };
        let cases: Vec<(PolicyChanges, &str)> = vec![
            (
                PolicyChanges {
                    description: Some(Some(format!("rotated {key}"))),
                    ..base()
                },
                "description",
            ),
            (
                PolicyChanges {
                    action_pattern: Some(key.into()),
                    ..base()
                },
                "action_pattern",
            ),
            (
                PolicyChanges {
                    condition: Some(Some(format!("args.k == \"{key}\""))),
                    ..base()
                },
                "condition",
            ),
            (
                PolicyChanges {
                    modify: set("auth", Value::String(key.into())),
                    ..base()
                },
                "modify.set.auth",
            ),
            (
                PolicyChanges {
                    modify: set("h", serde_json::json!({"a": [key]})),
                    ..base()
                },
                "modify.set.h.a[0]",
            ),
            (
                PolicyChanges {
                    modify: set(key, Value::Bool(true)),
                    ..base()
                },
                "modify.set",
            ),
            (
                PolicyChanges {
                    audit_redact: Some(vec!["x".into(), key.into()]),
                    ..base()
                },
                "audit_redact[1]",
            ),
        ];
        for (changes, field) in cases {
            let err = PolicyRecord::create(changes, "pol_1".into(), "key_1", 0).expect_err(field);
            let Error::Invalid { field: named, .. } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(named, field, "{err:?}");
            assert!(!err.to_string().contains(key), "{err}");
        }
        // A signed index names a literal key, not an element from the end.
        for (changes, field, column) in [
            (
                PolicyChanges {
                    audit_redact: Some(vec!["a".into(), "tokens.-1".into()]),
                    ..base()
                },
                "audit_redact[1]",
                8,
            ),
            (
                PolicyChanges {
                    modify: set("items.+1.qty", Value::from(1)),
                    ..base()
                },
                "modify.set.items.+1.qty",
                7,
            ),
        ] {
            let err = PolicyRecord::create(changes, "pol_1".into(), "key_1", 0).unwrap_err();
            let Error::InvalidAt {
                field: named,
                column: at,
                ..
            } = &err
            else {
                panic!("{err:?}")
            };
            assert_eq!((named.as_str(), *at), (field, column), "{err:?}");
        }
        // A word that only begins like a key is no key.
        let kept = PolicyChanges {
            description: Some(Some("rotates wdn_live_ keys for wdn_test_harness".into())),
            ..base()
        };
        assert!(PolicyRecord::create(kept, "pol_1".into(), "key_1", 0).is_ok());
    }

    fn with_selector(ids: &[&str], tags: &[&str]) -> Result<PolicyRecord> {
        let changes = PolicyChanges {
            name: Some("selected".into()),
            action_pattern: Some("*".into()),
            decision: Some("deny".into()),
            agents: Some(Some(AgentsSpec {
                ids: ids.iter().map(|s| s.to_string()).collect(),
                tags: tags.iter().map(|s| s.to_string()).collect(),
            })),
            ..Default::default()
        };
        PolicyRecord::create(changes, "pol_1".into(), "key_1", 0)
    }

    #[test]
    fn selectors_trim_plain_spaces_and_refuse_others_by_their_field() {
        // Counted in characters, as external ids are.
        assert!(with_selector(&[&"\u{e9}".repeat(200)], &[]).is_ok());
        assert!(with_selector(&[&"\u{e9}".repeat(201)], &[]).is_err());
        match with_selector(&["ext-a1\t"], &[]).unwrap_err() {
            Error::Invalid { message, .. } => assert!(message.contains("U+0009"), "{message}"),
            other => panic!("{other:?}"),
        }
        let record = with_selector(&[" billing-bot "], &[" Prod "]).unwrap();
        let agents = record.agents.unwrap();
        assert_eq!(agents.ids, ["billing-bot"]);
        assert_eq!(agents.tags, ["prod"]);
        for (ids, tags, field) in [
            (&["billing-bot\u{a0}"][..], &[][..], "agents.ids[0]"),
            (&[], &["ok", "prod\u{3000}"], "agents.tags[1]"),
            (&[], &["prod\n"], "agents.tags[0]"),
        ] {
            match with_selector(ids, tags).unwrap_err() {
                Error::Invalid { field: f, message } => {
                    assert_eq!(f, field);
                    assert!(message.starts_with(field), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
