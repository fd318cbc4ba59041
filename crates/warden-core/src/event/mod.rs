//! Telemetry events: the one model every input (the API, JSON logs, syslog,
//! agents' decisions) is mapped to before it is stored and indexed
//! (docs/events.md).

pub mod decision;
pub mod flatten;
pub mod framing;
pub mod input;
pub mod syslog;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time::Millis;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    Agent,
    Syslog,
    Json,
    Api,
}

impl EventSource {
    pub const ALL: [EventSource; 4] = [
        EventSource::Agent,
        EventSource::Syslog,
        EventSource::Json,
        EventSource::Api,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Agent => "agent",
            EventSource::Syslog => "syslog",
            EventSource::Json => "json",
            EventSource::Api => "api",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Five levels, as analysts triage them. Ordered: `Info` is the lowest.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Lowest first; the index is the severity's rank.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn rank(self) -> u64 {
        self as u64
    }

    pub fn from_rank(rank: u64) -> Option<Self> {
        Self::ALL.get(rank as usize).copied()
    }

    /// Warden's own names, plus the level names logging libraries and
    /// syslog use (`error`, `warning`, `emerg`, `debug`, …), any case.
    pub fn parse_loose(text: &str) -> Option<Self> {
        let lower = text.trim().to_ascii_lowercase();
        Some(match lower.as_str() {
            "critical" | "crit" | "fatal" | "emerg" | "emergency" | "alert" | "panic"
            | "dpanic" => Severity::Critical,
            "high" | "error" | "err" | "severe" => Severity::High,
            "medium" | "warn" | "warning" => Severity::Medium,
            "low" | "notice" => Severity::Low,
            "info" | "informational" | "information" | "debug" | "trace" | "verbose" => {
                Severity::Info
            }
            _ => return None,
        })
    }

    /// Syslog's numeric severities 0 (emergency) to 7 (debug).
    pub fn from_syslog_level(level: u8) -> Self {
        match level {
            0..=2 => Severity::Critical,
            3 => Severity::High,
            4 => Severity::Medium,
            5 => Severity::Low,
            _ => Severity::Info,
        }
    }
}

/// One event, as stored and as searched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    /// When it happened, by its source's clock.
    #[serde(with = "rfc3339")]
    pub timestamp: Millis,
    /// When Warden acknowledged it.
    #[serde(with = "rfc3339")]
    pub received_at: Millis,
    pub source: EventSource,
    pub host: Option<String>,
    pub program: Option<String>,
    pub severity: Severity,
    pub message: String,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Everything else the input carried, searchable by dotted name.
    #[serde(default)]
    pub fields: Map<String, Value>,
}

impl Event {
    /// The stored text (compact JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event always serializes")
    }
}

/// Limits that keep one event's cost bounded.
pub mod limits {
    /// Events in one batch.
    pub const MAX_BATCH_EVENTS: usize = 10_000;
    /// Bytes of one request body (batch or, per line, NDJSON).
    pub const MAX_BATCH_BYTES: usize = 10 * 1024 * 1024;
    /// Bytes of one event's JSON.
    pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
    /// Characters of `host`, `program`, `agent_id`, `session_id`, a tag.
    pub const MAX_KEYWORD_CHARS: usize = 512;
    pub const MAX_TAGS: usize = 64;
    /// Flattened field names per event, and their nesting.
    pub const MAX_FIELDS: usize = 1_000;
    pub const MAX_FIELD_DEPTH: usize = 16;
    pub const MAX_FIELD_NAME_CHARS: usize = 256;
}

mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::time::{parse_rfc3339, to_rfc3339, Millis};

    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_rfc3339(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        let text = String::deserialize(d)?;
        parse_rfc3339(&text).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time"))
    }
}
