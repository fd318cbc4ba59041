//! Scopes: what a credential may do. `<resource>.read` and `<resource>.write`
//! for each resource, `enforce` for the decision hot path, `admin` for all.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Resources that carry a `.read` and a `.write` scope. Later surfaces use
/// the ones they own; the catalogue is fixed so that keys minted today keep
/// their meaning.
pub const RESOURCES: &[&str] = &[
    "agents",
    "policies",
    "holds",
    "audit",
    "events",
    "rules",
    "alerts",
    "incidents",
    "intel",
    "compliance",
    "risks",
    "assets",
    "reports",
    "webhooks",
    "keys",
    "organization",
];

/// Scopes that stand alone, beside the per-resource ones. `events.ingest`
/// sends events and reads none: the key a log shipper or a syslog sender
/// carries (often in a configuration file on many hosts) should not also
/// open the organization's whole event store to whoever finds it.
pub const STANDALONE: &[&str] = &["enforce", INGEST, "admin"];

/// Sending events without reading them; `events.write` implies it.
pub const INGEST: &str = "events.ingest";

/// One validated scope name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);

impl Scope {
    pub const ADMIN: &'static str = "admin";

    /// Every scope Warden knows, in a stable order.
    pub fn catalogue() -> Vec<String> {
        let mut all: Vec<String> = RESOURCES
            .iter()
            .flat_map(|r| [format!("{r}.read"), format!("{r}.write")])
            .collect();
        all.extend(STANDALONE.iter().map(|s| s.to_string()));
        all
    }

    pub fn parse(name: &str) -> Option<Scope> {
        let known = STANDALONE.contains(&name)
            || name.split_once('.').is_some_and(|(res, op)| {
                RESOURCES.contains(&res) && (op == "read" || op == "write")
            });
        known.then(|| Scope(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Scope::parse(&value).ok_or_else(|| format!("unknown scope `{value}`"))
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The scopes a credential holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    pub fn admin() -> Self {
        ScopeSet(BTreeSet::from([Scope(Scope::ADMIN.to_string())]))
    }

    /// Parses a list of names; the error names the first unknown one and
    /// lists the allowed ones.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> crate::Result<Self> {
        let mut set = BTreeSet::new();
        for (i, name) in names.iter().enumerate() {
            let name = name.as_ref();
            let scope = Scope::parse(name).ok_or_else(|| {
                crate::Error::invalid(
                    format!("scopes[{i}]"),
                    format!(
                        "unknown scope `{name}`; allowed: {}",
                        Scope::catalogue().join(", ")
                    ),
                )
            })?;
            set.insert(scope);
        }
        Ok(ScopeSet(set))
    }

    pub fn is_admin(&self) -> bool {
        self.0.iter().any(|s| s.0 == Scope::ADMIN)
    }

    /// Whether this set grants `scope`; `admin` grants everything,
    /// `x.write` implies `x.read`, and `events.write` implies
    /// `events.ingest` (the reverse holds for neither).
    pub fn allows(&self, scope: &str) -> bool {
        if self.is_admin() || self.0.iter().any(|s| s.0 == scope) {
            return true;
        }
        if scope == INGEST {
            return self.allows("events.write");
        }
        match scope.strip_suffix(".read") {
            Some(resource) => self.0.iter().any(|s| s.0 == format!("{resource}.write")),
            None => false,
        }
    }

    /// Whether every scope of `other` is granted by this set, so that a key
    /// can never mint a key stronger than itself.
    pub fn covers<'a>(&self, other: &'a ScopeSet) -> Option<&'a Scope> {
        other.0.iter().find(|s| !self.allows(s.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|s| s.0.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_allows_everything_and_write_implies_read() {
        assert!(ScopeSet::admin().allows("agents.write"));
        let set = ScopeSet::parse(&["agents.write"]).unwrap();
        assert!(set.allows("agents.read"));
        assert!(!set.allows("keys.write"));
        assert!(!set.allows("admin"));
    }

    #[test]
    fn ingest_sends_events_and_reads_none() {
        let shipper = ScopeSet::parse(&["events.ingest"]).unwrap();
        assert!(shipper.allows("events.ingest"));
        assert!(!shipper.allows("events.read"));
        assert!(!shipper.allows("events.write"));
        let writer = ScopeSet::parse(&["events.write"]).unwrap();
        assert!(writer.allows("events.ingest"));
        assert!(writer.covers(&shipper).is_none(), "a writer mints shippers");
        assert!(shipper.covers(&writer).is_some());
        assert!(ScopeSet::admin().allows("events.ingest"));
        assert!(!ScopeSet::parse(&["agents.write"])
            .unwrap()
            .allows("events.ingest"));
    }

    #[test]
    fn unknown_scope_names_its_position() {
        let err = ScopeSet::parse(&["agents.read", "agents.delete"]).unwrap_err();
        assert!(matches!(err, crate::Error::Invalid { ref field, .. } if field == "scopes[1]"));
    }

    #[test]
    fn covers_reports_the_first_missing_scope() {
        let caller = ScopeSet::parse(&["keys.write", "agents.read"]).unwrap();
        let wanted = ScopeSet::parse(&["agents.read", "agents.write"]).unwrap();
        assert_eq!(caller.covers(&wanted).unwrap().as_str(), "agents.write");
        assert!(ScopeSet::admin().covers(&wanted).is_none());
    }
}
