//! The agent registry: the AI agents a security team governs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time::Millis;
use crate::{Error, Result};

/// Whether an agent may act. Suspended agents are denied by enforcement;
/// `discovered` agents were first seen asking for a decision, not
/// registered, and are governed by policy like active ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Active,
    Suspended,
    Discovered,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
            AgentStatus::Discovered => "discovered",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(AgentStatus::Active),
            "suspended" => Some(AgentStatus::Suspended),
            "discovered" => Some(AgentStatus::Discovered),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub framework: Option<String>,
    /// The agent's own stable identifier, as its SDK is configured.
    pub external_id: Option<String>,
    pub tags: Vec<String>,
    pub status: AgentStatus,
    pub metadata: Map<String, Value>,
    /// How many times the stored record was written; the store refuses an
    /// update made from an older revision.
    pub revision: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Limits that keep one agent record small and its fields searchable.
pub const MAX_NAME: usize = 200;
pub const MAX_DESCRIPTION: usize = 2_000;
pub const MAX_SHORT_FIELD: usize = 200;
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG: usize = 64;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The fields a change may set; `None` leaves a field alone, `Some(None)`
/// clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct AgentChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub owner: Option<Option<String>>,
    pub framework: Option<Option<String>>,
    pub external_id: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub status: Option<AgentStatus>,
    pub metadata: Option<Map<String, Value>>,
}

impl Agent {
    /// A new agent from validated changes; `name` is required.
    pub fn create(changes: AgentChanges, now: Millis) -> Result<Agent> {
        let Some(name) = changes.name.clone() else {
            return Err(Error::invalid("name", "name is required"));
        };
        let mut agent = Agent {
            id: crate::id::new_id(crate::id::prefix::AGENT),
            name,
            description: None,
            owner: None,
            framework: None,
            external_id: None,
            tags: vec![],
            status: AgentStatus::Active,
            metadata: Map::new(),
            revision: 1,
            created_at: now,
            updated_at: now,
        };
        agent.apply(changes, now)?;
        Ok(agent)
    }

    /// Applies a validated change.
    pub fn apply(&mut self, changes: AgentChanges, now: Millis) -> Result<()> {
        if let Some(name) = changes.name {
            self.name = text(name, "name", MAX_NAME)?;
        }
        if let Some(v) = changes.description {
            self.description = optional_text(v, "description", MAX_DESCRIPTION)?;
        }
        if let Some(v) = changes.owner {
            self.owner = optional_text(v, "owner", MAX_SHORT_FIELD)?;
        }
        if let Some(v) = changes.framework {
            self.framework = optional_text(v, "framework", MAX_SHORT_FIELD)?;
        }
        if let Some(v) = changes.external_id {
            let external_id = optional_text(v, "external_id", MAX_SHORT_FIELD)?;
            // A call names its agent by either id, so an external id shaped
            // like a Warden id could stand in for another agent.
            if external_id.as_deref().is_some_and(looks_like_agent_id) {
                return Err(Error::invalid(
                    "external_id",
                    "external_id must not have the form of a Warden agent id (agt_ and 24 hex digits)",
                ));
            }
            self.external_id = external_id;
        }
        if let Some(tags) = changes.tags {
            self.tags = validate_tags(tags)?;
        }
        if let Some(status) = changes.status {
            self.status = status;
        }
        if let Some(metadata) = changes.metadata {
            let size = serde_json::to_vec(&metadata)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > MAX_METADATA_BYTES {
                return Err(Error::invalid(
                    "metadata",
                    format!("metadata must be at most {MAX_METADATA_BYTES} bytes of JSON"),
                ));
            }
            let shown = Value::Object(metadata.clone());
            check_shown_text(&shown, "metadata")?;
            refuse_credential_in(&shown, "metadata")?;
            self.metadata = metadata;
        }
        self.updated_at = now;
        Ok(())
    }
}

/// Whether `s` has the form of a Warden agent id (`agt_` and 24 hex
/// digits, in any case, so that a look-alike is refused too), as opposed
/// to an agent's own external id.
pub fn looks_like_agent_id(s: &str) -> bool {
    s.len() == 28
        && s.is_char_boundary(4)
        && s[..4].eq_ignore_ascii_case("agt_")
        && s[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// An agent as a call, a filter or an event names it (its Warden id or
/// external id): 1 to 200 characters, as external ids are written, and
/// held to the naming rules; spaces around it are refused, since agents
/// are registered under trimmed names and such a name would be discovered
/// once and never found again.
pub fn check_reference(value: &str, field: &str) -> Result<()> {
    if value.is_empty() || value.chars().count() > 200 {
        return Err(Error::invalid(
            field,
            format!("{field} must be 1 to 200 characters"),
        ));
    }
    refuse_control(value, field)?;
    visible(value, field)?;
    refuse_padding(value, field)
}

/// Refuses a name with whitespace at either end, where it is matched as
/// sent (a tool name by patterns, an agent by its registered name).
pub fn refuse_padding(value: &str, field: &str) -> Result<()> {
    if value.trim() != value {
        return Err(Error::invalid(
            field,
            format!("{field} must not begin or end with whitespace"),
        ));
    }
    Ok(())
}

/// Refuses a control character, naming its code point.
pub fn refuse_control(value: &str, field: &str) -> Result<()> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(Error::invalid(
            field,
            format!(
                "{field} must not contain control characters (U+{:04X})",
                c as u32
            ),
        )),
        None => Ok(()),
    }
}

pub(crate) fn text(value: String, field: &str, max: usize) -> Result<String> {
    // Only plain spaces are trimmed: another space or a line break at an
    // end is refused below, as it is inside a name.
    let value = value.trim_matches(' ').to_string();
    if value.is_empty() {
        return Err(Error::invalid(field, format!("{field} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    refuse_control(&value, field)?;
    visible(&value, field)?;
    Ok(value)
}

/// Refuses characters that show as nothing or turn the text around them
/// (as tool names do): a name, external id or tag holding one looks like
/// another in every listing and log, and escapes the selectors written
/// for the name it imitates.
pub fn visible(value: &str, field: &str) -> Result<()> {
    // Also blanks that are not spaces (braille's) and noncharacters, as
    // event keywords refuse them; and spaces other than the plain one (a
    // no-break space), which look like it and make another name.
    if let Some(c) = value.chars().find(|c| c.is_whitespace() && *c != ' ') {
        return Err(Error::invalid(
            field,
            format!(
                "{field} must not contain U+{:04X}, a space other than the plain one \
                 (U+0020): it looks like one and makes another name",
                c as u32
            ),
        ));
    }
    if let Some((at, c)) = warden_policy::pattern::first_decomposed(value) {
        return Err(Error::invalid(
            field,
            format!(
                "{field} must be in Unicode's composed form (NFC): U+{:04X} at character {at} \
                 makes a second name that looks like the composed one; send the name in NFC",
                c as u32
            ),
        ));
    }
    if let Some(c) = value.chars().find(|c| crate::event::input::unseen(*c)) {
        return Err(Error::invalid(
            field,
            format!(
                "{field} must not contain invisible or direction-changing characters (U+{:04X})",
                c as u32
            ),
        ));
    }
    refuse_credential(value, field)
}

/// Refuses JSON (a policy's values to set, its paths) holding a Warden
/// key or token in any text or key; names the field and, for a text, its
/// path (a key holding one is not quoted).
pub fn refuse_credential_in(value: &Value, field: &str) -> Result<()> {
    if !crate::event::syslog::may_hold_credential_in(value) {
        return Ok(());
    }
    match value {
        Value::String(text) => refuse_credential(text, field),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| refuse_credential_in(item, &format!("{field}[{i}]"))),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            if crate::event::syslog::without_credentials(key).is_some() {
                return Err(Error::invalid(
                    field,
                    format!(
                        "a key of {field} holds a Warden key or token, which would be shown \
                         to everyone who reads it: send keys only as credentials"
                    ),
                ));
            }
            refuse_credential_in(item, &format!("{field}.{key}"))
        }),
        _ => Ok(()),
    }
}

/// Refuses text that holds a Warden key or token. Names, descriptions,
/// metadata and policies are shown to everyone who lists them and copied
/// into the audit log, whose chain keeps them for good: a key pasted into
/// one would be read there.
pub fn refuse_credential(value: &str, field: &str) -> Result<()> {
    if crate::event::syslog::without_credentials(value).is_some() {
        return Err(Error::invalid(
            field,
            format!(
                "{field} holds a Warden key or token, which would be shown to everyone \
                 who reads it: send keys only as credentials"
            ),
        ));
    }
    Ok(())
}

pub(crate) fn optional_text(
    value: Option<String>,
    field: &str,
    max: usize,
) -> Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) if field != "description" && v.chars().any(char::is_control) => {
            refuse_control(&v, field).map(|_| None)
        }
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) if field == "description" => {
            // Shown in listings, consoles and the audit log's copy of a
            // change: line breaks and tabs are text, but an escape
            // sequence, a character that reorders what follows (U+202E)
            // or one that hides is not.
            let v = v.replace("\r\n", "\n");
            if v.chars().count() > max {
                return Err(Error::invalid(
                    field,
                    format!("{field} must be at most {max} characters"),
                ));
            }
            refuse_credential(&v, field)?;
            if let Some((at, c)) = crate::event::input::unfit_in_shown_text(&v) {
                return Err(Error::invalid(
                    field,
                    format!(
                        "{field} must not contain control, invisible or direction-changing \
                         characters (U+{:04X} at character {}); line breaks and tabs are kept",
                        c as u32,
                        at + 1
                    ),
                ));
            }
            Ok(Some(v))
        }
        Some(v) if v.contains('\0') => Err(Error::invalid(
            field,
            format!("{field} must not contain NUL characters"),
        )),
        Some(v) => text(v, field, max).map(Some),
    }
}

/// Refuses, in the keys and text of shown JSON (an agent's metadata), what
/// hides or rewrites what a console shows: control characters other than
/// line breaks and tabs (a terminal's escape sequences) and characters
/// that show as nothing or reorder what follows. Names the path.
fn check_shown_text(value: &Value, path: &str) -> Result<()> {
    let unfit = crate::event::input::unfit_in_shown_text;
    let refuse = |field: &str, (at, c): (usize, char)| {
        Error::invalid(
            field,
            format!(
                "{field} must not contain control, invisible or direction-changing characters \
                 (U+{:04X} at character {})",
                c as u32,
                at + 1
            ),
        )
    };
    match value {
        Value::String(text) => match unfit(text) {
            Some(found) => Err(refuse(path, found)),
            None => Ok(()),
        },
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_shown_text(item, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            let field = format!("{path}.{key}");
            match unfit(key) {
                // The key itself is not fit to name a field: its parent is
                // named, and the key quoted escaped.
                Some((at, c)) => Err(Error::invalid(
                    path,
                    format!(
                        "the key {key:?} of {path} must not contain control, invisible or \
                         direction-changing characters (U+{:04X} at character {})",
                        c as u32,
                        at + 1
                    ),
                )),
                None => check_shown_text(item, &field),
            }
        }),
        _ => Ok(()),
    }
}

/// Tags are trimmed, lower-cased and de-duplicated, in the order given.
pub(crate) fn validate_tags(tags: Vec<String>) -> Result<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid("tags", format!("at most {MAX_TAGS} tags")));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, tag) in tags.into_iter().enumerate() {
        let field = format!("tags[{i}]");
        let tag = text(tag, &field, MAX_TAG)?.to_lowercase();
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

/// List filters for agents.
#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    pub status: Option<AgentStatus>,
    pub tag: Option<String>,
    /// Case-insensitive substring of name or description.
    pub search: Option<String>,
    /// Restricts the list to one agent (for keys bound to an agent).
    pub only_id: Option<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_agent_id_look_alike_is_one_in_any_case() {
        assert!(super::looks_like_agent_id("agt_0123456789abcdef01234567"));
        assert!(super::looks_like_agent_id("AGT_0123456789ABCDEF01234567"));
        assert!(!super::looks_like_agent_id("agt_0123456789abcdef0123456"));
        assert!(!super::looks_like_agent_id("agt_0123456789abcdef0123456g"));
        assert!(!super::looks_like_agent_id("billing-bot"));
    }

    use super::*;

    #[test]
    fn an_agent_refuses_a_warden_key_in_its_description_and_metadata() {
        let key = "wdn_test_Q2v8mXr4Tn6bW1yZk3Hc9Lp5Df7Gs0Ja2Ue4Vi6Oq8Rt";
        let apply = |changes: AgentChanges| {
            let mut agent = Agent::create(
                AgentChanges {
                    name: Some("a".into()),
                    ..Default::default()
                },
                0,
            )
            .unwrap();
            agent.apply(changes, 1)
        };
        let metadata = |m: Value| AgentChanges {
            metadata: m.as_object().cloned(),
            ..Default::default()
        };
        let cases = [
            (
                AgentChanges {
                    description: Some(Some(format!("key {key}"))),
                    ..Default::default()
                },
                "description",
            ),
            (
                metadata(serde_json::json!({"k": {"v": [key]}})),
                "metadata.k.v[0]",
            ),
            (metadata(serde_json::json!({key: "v"})), "metadata"),
        ];
        for (changes, field) in cases {
            let err = apply(changes).expect_err(field);
            let Error::Invalid { field: named, .. } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(named, field, "{err:?}");
            assert!(!err.to_string().contains(key), "{err}");
        }
        assert!(apply(metadata(serde_json::json!({"wdn_live_region": "eu"}))).is_ok());
    }

    #[test]
    fn metadata_refuses_what_hides_or_rewrites_a_console() {
        let with = |m: Value| {
            let mut agent = Agent::create(
                AgentChanges {
                    name: Some("a".into()),
                    ..Default::default()
                },
                0,
            )
            .unwrap();
            let changes = AgentChanges {
                metadata: m.as_object().cloned(),
                ..Default::default()
            };
            agent.apply(changes, 1).map(|_| agent.metadata)
        };
        assert!(with(
            serde_json::json!({"team": "pay\nments", "n": [1, "x\ty"], "👨\u{200d}👩": 1})
        )
        .is_ok());
        for (bad, field, code) in [
            (
                serde_json::json!({"k": "v\u{1b}[2J"}),
                "metadata.k",
                "U+001B",
            ),
            (serde_json::json!({"k\u{202e}": "v"}), "metadata", "U+202E"),
            (
                serde_json::json!({"a": [{"b": "x\u{0}"}]}),
                "metadata.a[0].b",
                "U+0000",
            ),
            (
                serde_json::json!({"a": "\u{200b}x"}),
                "metadata.a",
                "U+200B",
            ),
        ] {
            let e = with(bad.clone()).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(code), "{bad}: {text}");
            let named = match &e {
                Error::Invalid { field, .. } => field.clone(),
                other => panic!("{other:?}"),
            };
            assert_eq!(named, field, "{bad}: {text}");
        }
    }

    #[test]
    fn descriptions_keep_lines_and_refuse_what_hides_or_reorders() {
        let described = |d: &str| optional_text(Some(d.into()), "description", 2000);
        assert_eq!(
            described("pays\r\ninvoices\tweekly 👨\u{200d}👩").unwrap(),
            Some("pays\ninvoices\tweekly 👨\u{200d}👩".into())
        );
        for (bad, code) in [
            ("approve \u{1b}[31mALL", "U+001B at character 9"),
            ("x \u{202e}evil", "U+202E at character 3"),
            ("bell\u{7}", "U+0007"),
            ("a\rb", "U+000D"),
            ("zero\u{200b}width", "U+200B"),
            ("nul\u{0}", "U+0000 at character 4"),
        ] {
            let e = described(bad).unwrap_err().to_string();
            assert!(e.contains(code), "{bad:?}: {e}");
        }
    }

    #[test]
    fn names_refuse_decomposed_letters() {
        assert_eq!(
            text("caf\u{e9}-bot".into(), "name", 200).unwrap(),
            "caf\u{e9}-bot"
        );
        let e = text("cafe\u{301}-bot".into(), "name", 200)
            .unwrap_err()
            .to_string();
        assert!(e.contains("U+0301 at character 5"), "{e}");
    }

    #[test]
    fn names_refuse_spaces_that_are_not_the_plain_one() {
        for name in [
            "billing\u{a0}bot",
            "billing\u{2009}bot",
            "billing\u{3000}bot",
        ] {
            let e = text(name.into(), "name", 200).unwrap_err().to_string();
            assert!(e.contains("plain one (U+0020)"), "{name:?}: {e}");
        }
        assert_eq!(
            text(" billing bot ".into(), "name", 200).unwrap(),
            "billing bot"
        );
    }

    #[test]
    fn create_requires_a_name_and_normalizes_tags() {
        assert!(Agent::create(AgentChanges::default(), 0).is_err());
        let agent = Agent::create(
            AgentChanges {
                name: Some("  billing-bot ".into()),
                tags: Some(vec!["Prod".into(), "prod".into(), "pci".into()]),
                ..Default::default()
            },
            7,
        )
        .unwrap();
        assert_eq!(agent.name, "billing-bot");
        assert_eq!(agent.tags, vec!["prod", "pci"]);
        assert_eq!(agent.status, AgentStatus::Active);
        assert!(agent.id.starts_with("agt_"));
    }

    #[test]
    fn bad_fields_are_named() {
        let err = Agent::create(
            AgentChanges {
                name: Some("a".into()),
                tags: Some(vec!["ok".into(), " ".into()]),
                ..Default::default()
            },
            0,
        )
        .unwrap_err();
        assert_eq!(err, Error::invalid("tags[1]", "tags[1] must not be empty"));
    }

    #[test]
    fn only_plain_spaces_are_trimmed_from_names() {
        let named = |name: &str| {
            Agent::create(
                AgentChanges {
                    name: Some(name.into()),
                    ..Default::default()
                },
                0,
            )
        };
        assert_eq!(named("  billing-bot ").unwrap().name, "billing-bot");
        for name in ["billing-bot\u{a0}", "\u{2003}billing-bot", "billing-bot\n"] {
            let err = named(name).expect_err(name);
            assert!(
                matches!(&err, Error::Invalid { field, .. } if field == "name"),
                "{err:?}"
            );
        }
    }
}
