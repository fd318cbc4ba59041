//! JSON inputs mapped to [`Event`]: events posted to the API, and JSON log
//! lines (NDJSON) with the field names logging libraries use.

use chrono::DateTime;
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use super::decision::DECISION_PROGRAM;
use super::limits::{MAX_KEYWORD_CHARS, MAX_TAGS};
use super::{flatten, Event, EventSource, Severity};
use crate::time::{parse_rfc3339, Millis};

/// What is wrong with one input and where, relative to the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How strictly an input's well-known names are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `POST /api/v1/events/batch`: the event model's own names; a known
    /// name with a value of the wrong kind is an error.
    Api,
    /// A JSON log line: common logging names (`@timestamp`, `level`, `msg`,
    /// …) are mapped; a level Warden does not know stays in `fields`.
    JsonLog,
}

/// The event model's name for a place in an input object (`m.x` is
/// `fields.m.x`), as errors name fields: a name of the model stays as it
/// is, and so does a place in the API's own `fields` object; anything else
/// is kept in `fields`.
pub fn model_path(dialect: Dialect, place: &str) -> String {
    let first = place.split(['.', '[']).next().unwrap_or(place);
    let whole = first.len() == place.len();
    let model = named(dialect, first).is_some()
        || matches!(first, "agent_id" | "session_id" | "tags")
        || (dialect == Dialect::Api && matches!(first, "id" | "received_at" | "source"));
    if (model && whole) || (dialect == Dialect::Api && first == "fields") {
        place.to_string()
    } else {
        format!("fields.{place}")
    }
}

/// Maps one JSON object to an event with the id and arrival time Warden
/// gives it.
pub fn parse_event(
    value: Value,
    dialect: Dialect,
    id: String,
    received_at: Millis,
) -> Result<Event, FieldError> {
    let Value::Object(object) = value else {
        return Err(FieldError::new("", "an event must be a JSON object"));
    };
    let mut event = Event {
        id,
        timestamp: received_at,
        received_at,
        source: match dialect {
            Dialect::Api => EventSource::Api,
            Dialect::JsonLog => EventSource::Json,
        },
        host: None,
        program: None,
        severity: Severity::Info,
        message: String::new(),
        agent_id: None,
        session_id: None,
        tags: Vec::new(),
        fields: Map::new(),
    };
    let mut extra = Map::new();
    // The `fields` object of the API's model, merged after the top level.
    let mut given_fields: Option<Map<String, Value>> = None;
    let mut severity_given = false;
    let mut time_given = false;
    // A name that maps to a field another name present maps to first
    // (`msg` beside `message`) is kept under its own name in `fields`.
    let shadowed: Vec<String> = object
        .iter()
        .filter(|(key, value)| !value.is_null() && shadowed(dialect, key, &object))
        .map(|(key, _)| key.clone())
        .collect();
    for (key, value) in object {
        if value.is_null() {
            // A name of the model given `null` is absent; any other name
            // keeps its `null` in `fields`, as one inside `fields` does.
            let model = named(dialect, &key).is_some()
                || matches!(key.as_str(), "agent_id" | "session_id" | "tags")
                || (dialect == Dialect::Api
                    && matches!(key.as_str(), "id" | "received_at" | "source" | "fields"));
            if !model {
                extra.insert(key, value);
            }
            continue;
        }
        if shadowed.contains(&key) {
            extra.insert(key, value);
            continue;
        }
        match (dialect, key.as_str(), named(dialect, &key)) {
            (Dialect::Api, "id" | "received_at", _) => {
                return Err(FieldError::new(key, "is assigned by Warden"));
            }
            (_, _, Some(Named::Timestamp)) => {
                let read = match dialect {
                    Dialect::Api => parse_time(&value),
                    Dialect::JsonLog => parse_log_time(&value),
                };
                match read {
                    Some(ms) => {
                        event.timestamp = ms;
                        time_given = true;
                    }
                    // A log line's time Warden cannot read (`"time": "-"`)
                    // stays in `fields`, as an unknown level does, and the
                    // line keeps its arrival time: one odd line does not
                    // cost its whole upload.
                    None if dialect == Dialect::JsonLog => {
                        extra.insert(key, value);
                    }
                    None => {
                        return Err(FieldError::new(
                            &key,
                            "must be an RFC 3339 time or a number of seconds, milliseconds, microseconds or nanoseconds since 1970",
                        ))
                    }
                }
            }
            (Dialect::Api, "source", _) => {
                event.source = value.as_str().and_then(EventSource::parse).ok_or_else(|| {
                    FieldError::new(&key, "must be one of agent, syslog, json, api")
                })?;
            }
            (_, _, Some(Named::Severity)) => match value
                .as_str()
                .and_then(Severity::parse_loose)
                .or_else(|| journald_priority(&key, &value))
                .or_else(|| numeric_level(dialect, &key, &value))
            {
                Some(severity) => {
                    event.severity = severity;
                    severity_given = true;
                    // pino's and bunyan's numbers stay searchable as
                    // they were written (`fields.level:>=50`).
                    if value.is_number() && matches!(key.as_str(), "level" | "log.level") {
                        extra.insert(key, value);
                    }
                }
                None if dialect == Dialect::JsonLog => {
                    extra.insert(key, value);
                }
                None => {
                    return Err(FieldError::new(
                        &key,
                        "must be one of critical, high, medium, low, info (or a level name docs/events.md lists, such as error or warning)",
                    ))
                }
            },
            (_, _, Some(Named::Message)) => match value {
                // Docker's json-file and Fluent Bit end `log` with the
                // line's newline.
                Value::String(text) if key == "log" => {
                    let line = text.strip_suffix('\n').unwrap_or(&text);
                    event.message = line.strip_suffix('\r').unwrap_or(line).to_string();
                }
                Value::String(text) => event.message = text,
                // journald writes a message holding bytes that are not
                // printable as an array of them.
                Value::Array(bytes) if key == "MESSAGE" => {
                    event.message = match journald_bytes(&bytes) {
                        Some(text) => text,
                        None => Value::Array(bytes).to_string(),
                    };
                }
                // structlog's `event` is its message; Elastic's `event`
                // and `log` objects are not one.
                other if key == "event" || key == "log" => {
                    extra.insert(key, other);
                }
                other if dialect == Dialect::JsonLog => event.message = other.to_string(),
                _ => return Err(FieldError::new(&key, "must be a string")),
            },
            // Elastic Common Schema (Filebeat, Elastic Agent) writes
            // `host` and `service` as objects: their `name` is the host or
            // program, and the whole object stays in `fields`.
            (Dialect::JsonLog, _, Some(named @ (Named::Host | Named::Program)))
                if value.is_object() =>
            {
                let name = ["name", "hostname"]
                    .iter()
                    .find_map(|n| value.get(*n).and_then(Value::as_str))
                    .map(|name| name.trim().to_string())
                    .filter(|name| !name.is_empty());
                if let Some(name) = name {
                    check_keyword(&format!("{key}.name"), &name)?;
                    match named {
                        Named::Host => event.host = Some(name),
                        _ => event.program = Some(name),
                    }
                }
                extra.insert(key, value);
            }
            // ecs-logging writes the objects' names as dotted keys; they
            // give the host and program when `host` and `service` do not,
            // and stay in `fields` under their own names.
            (Dialect::JsonLog, "host.name" | "service.name", _) if value.is_string() => {
                let slot = if key == "host.name" {
                    &mut event.host
                } else {
                    &mut event.program
                };
                if let Some(name) = keyword(dialect, &key, value.clone())? {
                    slot.get_or_insert(name);
                }
                extra.insert(key, value);
            }
            // An empty value is none, and takes no other name's place.
            (_, _, Some(Named::Host)) => {
                if let Some(v) = keyword(dialect, &key, value)? {
                    event.host = Some(v);
                }
            }
            (_, _, Some(Named::Program)) => {
                if let Some(v) = keyword(dialect, &key, value)? {
                    event.program = Some(v);
                }
            }
            (_, "agent_id", _) => event.agent_id = keyword(dialect, &key, value)?,
            (_, "session_id", _) => event.session_id = keyword(dialect, &key, value)?,
            (_, "tags", _) => event.tags = tags(dialect, value)?,
            (Dialect::Api, "fields", _) => match value {
                Value::Object(map) => given_fields = Some(map),
                _ => return Err(FieldError::new("fields", "must be a JSON object")),
            },
            _ => {
                extra.insert(key, value);
            }
        }
    }
    for (key, value) in given_fields.unwrap_or_default() {
        if extra.contains_key(&key) {
            return Err(FieldError::new(
                &key,
                format!(
                    "is given both at the top level and in fields (fields.{key}); give it once"
                ),
            ));
        }
        extra.insert(key, value);
    }
    // Times other tools write under their own names (Fluent Bit's `date`,
    // CloudTrail's `eventTime`, Serilog's `@t`, …) when no name of the
    // model gave one, and only when they read as a time: they also stay in
    // `fields`.
    if dialect == Dialect::JsonLog && !time_given {
        if let Some(ms) = LOG_TIME_FALLBACKS
            .iter()
            .find_map(|name| extra.get(*name).and_then(parse_log_time))
        {
            event.timestamp = ms;
        }
    }
    // A log line's level nested as `{"log": {"level": …}}` (Elastic Common
    // Schema) when no other name gave one.
    if dialect == Dialect::JsonLog && !severity_given {
        if let Some(severity) =
            extra
                .get("log")
                .and_then(|log| log.get("level"))
                .and_then(|level| {
                    level
                        .as_str()
                        .and_then(Severity::parse_loose)
                        .or_else(|| numeric_level(dialect, "level", level))
                })
        {
            event.severity = severity;
        }
    }
    // Decision events are Warden's own record of what it decided: an
    // ingested event may not pass for one.
    if event.source == EventSource::Agent
        && event
            .program
            .as_deref()
            .is_some_and(|p| looks_like(p, DECISION_PROGRAM))
    {
        return Err(FieldError::new(
            "program",
            format!("`{DECISION_PROGRAM}` with source `agent` marks Warden's own decision events; use another program name"),
        ));
    }
    flatten::check(&extra)
        .map_err(|(path, message)| FieldError::new(format!("fields.{path}"), message))?;
    event.fields = extra;
    Ok(event)
}

/// Whether `text` reads as `word` to a person: case, compatibility forms
/// (`ＷＡＲＤＥＮ`, `𝐰𝐚𝐫𝐝𝐞𝐧`, `ⓦ`), confusable letters of other scripts
/// (Cyrillic `а`), accents, and everything that is not a letter or digit
/// (spaces, controls, invisible characters) set aside, as Unicode's
/// confusable detection (UTS #39) compares them.
fn looks_like(text: &str, word: &str) -> bool {
    // The confusables table maps capitals to capitals (Greek `Ν` to `N`)
    // and small letters to small ones (`ν` to `v`): the text is read both
    // as written and in small letters, and either reading counts.
    fn seen(text: &str) -> String {
        let folded: String = text.nfkd().map(small_capital).collect();
        unicode_security::skeleton(&folded)
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    }
    let word = seen(word);
    seen(text) == word || seen(&text.to_lowercase()) == word
}

/// The Latin small capitals (`ᴡᴀʀᴅᴇɴ`), which neither compatibility
/// forms nor the confusables table fold to their letters.
fn small_capital(c: char) -> char {
    const SMALL: [(char, char); 24] = [
        ('\u{1D00}', 'a'),
        ('\u{0299}', 'b'),
        ('\u{1D04}', 'c'),
        ('\u{1D05}', 'd'),
        ('\u{1D07}', 'e'),
        ('\u{A730}', 'f'),
        ('\u{0262}', 'g'),
        ('\u{029C}', 'h'),
        ('\u{026A}', 'i'),
        ('\u{1D0A}', 'j'),
        ('\u{1D0B}', 'k'),
        ('\u{029F}', 'l'),
        ('\u{1D0D}', 'm'),
        ('\u{0274}', 'n'),
        ('\u{1D0F}', 'o'),
        ('\u{1D18}', 'p'),
        ('\u{0280}', 'r'),
        ('\u{A731}', 's'),
        ('\u{1D1B}', 't'),
        ('\u{1D1C}', 'u'),
        ('\u{1D20}', 'v'),
        ('\u{1D21}', 'w'),
        ('\u{028F}', 'y'),
        ('\u{1D22}', 'z'),
    ];
    SMALL
        .iter()
        .find(|(small, _)| *small == c)
        .map_or(c, |(_, letter)| *letter)
}

/// The model's fields that an input may give under several names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Timestamp,
    Severity,
    Message,
    Host,
    Program,
}

/// The names each such field is read from, first name first.
fn names_of(dialect: Dialect) -> [(Named, &'static [&'static str]); 5] {
    match dialect {
        Dialect::Api => [
            (Named::Timestamp, &["timestamp", "@timestamp", "time"]),
            (Named::Severity, &["severity", "level"]),
            (Named::Message, &["message", "msg"]),
            (Named::Host, &["host"]),
            (Named::Program, &["program"]),
        ],
        // Besides the common names: journald's export (`journalctl -o
        // json`), python-json-logger's and structlog's.
        Dialect::JsonLog => [
            (
                Named::Timestamp,
                &[
                    "timestamp",
                    "@timestamp",
                    "time",
                    "ts",
                    "__REALTIME_TIMESTAMP",
                    "asctime",
                ],
            ),
            (
                Named::Severity,
                // Serilog's compact JSON (`@l`).
                &[
                    "severity",
                    "level",
                    "log.level",
                    "levelname",
                    "PRIORITY",
                    "@l",
                    // rsyslog's `%jsonmesg%`: syslog's level 0 to 7.
                    "syslogseverity",
                ],
            ),
            (
                Named::Message,
                // GELF's `short_message`; Serilog's compact JSON, the
                // rendered message (`@m`), then its template (`@mt`).
                &[
                    "message",
                    "msg",
                    "MESSAGE",
                    "event",
                    "log",
                    "short_message",
                    "@m",
                    "@mt",
                ],
            ),
            // syslog-ng's `format-json` writes its macros' names (`HOST`,
            // `PROGRAM`), rsyslog's `%jsonmesg%` its properties'
            // (`programname`, `app-name`).
            (Named::Host, &["host", "hostname", "_HOSTNAME", "HOST"]),
            (
                Named::Program,
                // Vector's syslog source names RFC 5424's field `appname`.
                &[
                    "program",
                    "app",
                    "service",
                    "SYSLOG_IDENTIFIER",
                    "appname",
                    "PROGRAM",
                    "programname",
                    "app-name",
                ],
            ),
        ],
    }
}

/// Other tools' names for a log line's time, read in this order when no
/// name of the model gave one.
const LOG_TIME_FALLBACKS: [&str; 10] = [
    "date",
    // syslog-ng's `format-json` (`ISODATE`), rsyslog's `%jsonmesg%`.
    "ISODATE",
    "timereported",
    "@t",
    "eventTime",
    "time_iso8601",
    "requestReceivedTimestamp",
    "EventTime",
    "TimeCreated",
    "datetime",
];

/// The field `key` names, with the names that field is read from.
fn named_with(dialect: Dialect, key: &str) -> Option<(Named, &'static [&'static str])> {
    names_of(dialect)
        .into_iter()
        .find(|(_, names)| names.contains(&key))
}

fn named(dialect: Dialect, key: &str) -> Option<Named> {
    named_with(dialect, key).map(|(field, _)| field)
}

/// Whether an earlier name of the field `key` names is present in `object`.
fn shadowed(dialect: Dialect, key: &str, object: &Map<String, Value>) -> bool {
    named_with(dialect, key).is_some_and(|(named, names)| {
        names
            .iter()
            .take_while(|name| **name != key)
            .any(|name| object.get(*name).is_some_and(|v| takes(dialect, named, v)))
    })
}

/// Whether a value under one of `named`'s names gives that field. A log
/// line's level Warden does not know (`"severity": "30"`) gives none: it
/// stays in `fields`, and a later name (`level`) may give the severity.
fn takes(dialect: Dialect, named: Named, value: &Value) -> bool {
    match (dialect, named) {
        _ if value.is_null() => false,
        (Dialect::JsonLog, Named::Severity) => {
            value.as_str().and_then(Severity::parse_loose).is_some()
        }
        (Dialect::JsonLog, Named::Message) => !value.is_object(),
        (Dialect::JsonLog, Named::Timestamp) => parse_log_time(value).is_some(),
        _ => true,
    }
}

/// A keyword's text, `None` when empty: an empty host or tag is no value
/// (`_exists_:host` would find it, and no query could name it), as a
/// shipper's `""` for "unknown" means. A log line's number (`"host": 5`)
/// is read as its text; the API's own model wants a string.
fn keyword(dialect: Dialect, field: &str, value: Value) -> Result<Option<String>, FieldError> {
    let text = match value {
        // Log lines pad values (`"host": "web-01 "`, a level's tab): the
        // spaces around a log line's keyword are not part of it.
        Value::String(text) if dialect == Dialect::JsonLog => text.trim().to_string(),
        Value::String(text) => text,
        Value::Number(n) if dialect == Dialect::JsonLog => n.to_string(),
        _ => return Err(FieldError::new(field, "must be a string")),
    };
    check_keyword(field, &text)?;
    Ok((!text.is_empty()).then_some(text))
}

/// A log line's numeric `level`: syslog's 0 to 7, as GELF writes it, or
/// pino's and bunyan's (10 trace, 20 debug, 30 info, 40 warn, 50 error,
/// 60 fatal).
fn numeric_level(dialect: Dialect, key: &str, value: &Value) -> Option<Severity> {
    if dialect != Dialect::JsonLog || !matches!(key, "level" | "log.level") {
        return None;
    }
    // A whole number however it is written (`3`, `3.0`, `5e1`).
    let number = value.as_f64().filter(|n| n.fract() == 0.0 && *n >= 0.0)?;
    match number as u64 {
        // Syslog's levels, as GELF (Graylog) writes them.
        level @ 0..=7 => Some(Severity::from_syslog_level(level as u8)),
        10 | 20 | 30 => Some(Severity::Info),
        40 => Some(Severity::Medium),
        50 => Some(Severity::High),
        60 => Some(Severity::Critical),
        _ => None,
    }
}

/// journald's message as an array of bytes, read as UTF-8 (bytes that
/// are not shown as U+FFFD).
fn journald_bytes(bytes: &[Value]) -> Option<String> {
    let bytes: Option<Vec<u8>> = bytes
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect();
    Some(String::from_utf8_lossy(&bytes?).into_owned())
}

/// Keywords are matched whole (`agent_id:billing-bot`): one holding a
/// character that shows as nothing or as a plain space, or turns the text
/// around it, looks like another in every listing and escapes the searches
/// written for it, as agents' names and tags would (`docs/enforcement.md`).
pub fn check_keyword(field: &str, text: &str) -> Result<(), FieldError> {
    if text.chars().count() > MAX_KEYWORD_CHARS {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_KEYWORD_CHARS} characters"),
        ));
    }
    if let Some(c) = text.chars().find(|c| unfit_in_keyword(*c)) {
        return Err(FieldError::new(
            field,
            format!(
                "must not contain control, invisible, blank or direction-changing characters, \
                 nor spaces other than U+0020 (U+{:04X})",
                c as u32
            ),
        ));
    }
    if text.starts_with(' ') || text.ends_with(' ') {
        return Err(FieldError::new(field, "must not begin or end with a space"));
    }
    Ok(())
}

/// Controls, invisible and direction-changing characters, spaces other
/// than the plain one (no-break, ideographic, hair), blanks that are not
/// spaces (braille's, interlinear annotation marks) and noncharacters.
pub(crate) fn unfit_in_keyword(c: char) -> bool {
    c.is_control() || (c.is_whitespace() && c != ' ') || unseen(c)
}

/// A character that shows as nothing, or as something else, where text is
/// read: invisible and direction-changing characters, blanks that are not
/// spaces (braille's, interlinear annotation marks) and noncharacters.
/// Text with one looks like text without it.
pub fn unseen(c: char) -> bool {
    warden_policy::pattern::unseen(c)
}

/// The first character of free text shown to people (a hold's comment, a
/// description, an agent's metadata) that does not belong there, with its
/// index in characters: a control character other than a line break or a
/// tab (a terminal's escape sequence; a lone carriage return, which
/// overwrites what came before it), or one [`unseen_in_text`] finds (text
/// that reorders itself, or hides).
pub fn unfit_in_shown_text(text: &str) -> Option<(usize, char)> {
    text.chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\t'))
        .or_else(|| unseen_in_text(text))
}

/// The first character of free text (a comment, a query) that is
/// [`unseen`] where it stands, with its index in characters. Some such
/// characters belong to what they join: the joiners between letters of
/// scripts that need them (Persian's U+200C, Indic conjuncts) and in
/// emoji (👨‍👩‍👧), variation selectors after a symbol or a CJK ideograph
/// (❤️, keycaps' 1️⃣, 葛󠄀), and the tag characters of a flag (🏴 and its
/// tags). Next to plain ASCII, at either end, or doubled, they hide.
pub fn unseen_in_text(text: &str) -> Option<(usize, char)> {
    let chars: Vec<char> = text.chars().collect();
    let foreign = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_some_and(|c| !c.is_ascii() && !c.is_whitespace() && !unseen(*c))
    };
    let mut in_flag = false;
    for (i, &c) in chars.iter().enumerate() {
        let before = i.checked_sub(1);
        let fits = match c as u32 {
            // Zero-width non-joiner and joiner, between two characters of
            // another script or two emoji.
            0x200C | 0x200D => foreign(before) && foreign(Some(i + 1)),
            // Variation selectors, after a symbol, an ideograph, or a
            // keycap's digit, `#` or `*`.
            0xFE00..=0xFE0F | 0xE0100..=0xE01EF => {
                foreign(before)
                    || before
                        .and_then(|b| chars.get(b))
                        .is_some_and(|p| p.is_ascii_digit() || matches!(p, '#' | '*'))
            }
            // A flag's tags follow 🏴 and end with U+E007F.
            0xE0020..=0xE007F => {
                let opens = before.and_then(|b| chars.get(b)) == Some(&'\u{1F3F4}');
                let ok = in_flag || opens;
                in_flag = ok && c != '\u{E007F}';
                ok
            }
            _ => !unseen(c),
        };
        if !(0xE0020..=0xE007F).contains(&(c as u32)) {
            in_flag = false;
        }
        if !fits {
            return Some((i, c));
        }
    }
    None
}

/// Tags: an array of strings (in a log line, numbers read as their text,
/// and one alone as one tag).
fn tags(dialect: Dialect, value: Value) -> Result<Vec<String>, FieldError> {
    let items = match value {
        one @ (Value::String(_) | Value::Number(_)) if dialect == Dialect::JsonLog => vec![one],
        Value::Array(items) => items,
        _ => return Err(FieldError::new("tags", "must be an array of strings")),
    };
    if items.len() > MAX_TAGS {
        return Err(FieldError::new(
            "tags",
            format!("holds at most {MAX_TAGS} tags"),
        ));
    }
    let mut kept = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        kept.extend(keyword(dialect, &format!("tags[{i}]"), item)?);
    }
    Ok(kept)
}

/// The last millisecond of the year 9999: times run from 1970 to 9999,
/// what RFC 3339 can show.
const MAX_TIME_MS: Millis = 253_402_300_799_999;

/// RFC 3339, or a number since 1970 read by its magnitude: seconds,
/// milliseconds, microseconds or nanoseconds.
pub fn parse_time(value: &Value) -> Option<Millis> {
    let ms = match value {
        Value::String(text) => parse_rfc3339(text)?,
        Value::Number(n) => match n.as_u64() {
            Some(whole) => crate::time::epoch_integer_to_millis(whole).0,
            None => crate::time::epoch_number_to_millis(n.as_f64()?)?.0,
        },
        _ => return None,
    };
    within_years(ms)
}

/// `ms` if it falls in the years 1970 to 9999.
fn within_years(ms: Millis) -> Option<Millis> {
    (0..=MAX_TIME_MS)
        .contains(&ms)
        .then_some(ms)
        .filter(|ms| DateTime::from_timestamp_millis(*ms).is_some())
}

/// journald's `PRIORITY`: syslog's level 0 to 7, as a string.
fn journald_priority(key: &str, value: &Value) -> Option<Severity> {
    let level: u8 = match value {
        Value::String(text) => text.trim().parse().ok()?,
        // A whole number however it is written (`3`, `3.0`).
        number => {
            let n = number
                .as_f64()
                .filter(|n| n.fract() == 0.0 && (0.0..=7.0).contains(n))?;
            n as u8
        }
    };
    (matches!(key, "PRIORITY" | "syslogseverity") && level <= 7)
        .then(|| Severity::from_syslog_level(level))
}

/// A log line's time, read as [`parse_time`] does and also in the shapes
/// loggers write: a number in a string (journald's microseconds), a space
/// for the `T`, a comma before the fraction (Python's `asctime`), an
/// offset without its colon (`+0000`), or no zone at all (read as UTC,
/// as syslog's RFC 3164 times are).
pub fn parse_log_time(value: &Value) -> Option<Millis> {
    if let Some(ms) = parse_time(value) {
        return Some(ms);
    }
    let text = value.as_str()?.trim();
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if digits(text) {
        return within_years(crate::time::epoch_integer_to_millis(text.parse().ok()?).0);
    }
    if text
        .split_once('.')
        .is_some_and(|(whole, fraction)| digits(whole) && digits(fraction))
    {
        return within_years(crate::time::epoch_number_to_millis(text.parse().ok()?)?.0);
    }
    let text = text.replacen(',', ".", 1);
    if let Some(ms) = parse_rfc3339(&text) {
        return within_years(ms);
    }
    // The last is the Common Log Format's (`05/Dec/2026:10:07:00 +0000`,
    // nginx's `$time_local`).
    let ms = [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%d/%b/%Y:%H:%M:%S %z",
    ]
    .iter()
    .find_map(|format| DateTime::parse_from_str(&text, format).ok())
    .map(|t| crate::time::millis_of(&t))
    .or_else(|| {
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .find_map(|format| chrono::NaiveDateTime::parse_from_str(&text, format).ok())
            .map(|t| crate::time::millis_of(&t.and_utc()))
    })?;
    within_years(ms)
}

#[cfg(test)]
mod tests {

    #[test]
    fn joiners_and_selectors_are_text_where_they_join() {
        for fine in [
            "نمی\u{200c}دانم",
            "👨\u{200d}👩\u{200d}👧",
            "❤\u{fe0f}",
            "1\u{fe0f}\u{20e3}",
            "葛\u{e0100}",
            "🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}",
            "plain text, é, 日本語, עברית",
        ] {
            assert_eq!(unseen_in_text(fine), None, "{fine:?}");
        }
        for (hidden, at) in [
            ("a\u{200d}b", 1),
            ("ab\u{200d}", 2),
            ("a\u{fe0f}b", 1),
            ("\u{e0041}x", 0),
            ("x\u{200b}", 1),
            ("ok\u{2800}", 2),
            ("\u{13430}", 0),
            ("❤\u{fe0f}\u{fe0f}", 2),
        ] {
            assert_eq!(
                unseen_in_text(hidden).map(|(i, _)| i),
                Some(at),
                "{hidden:?}"
            );
        }
    }
    use super::*;
    use serde_json::json;

    fn api(value: Value) -> Result<Event, FieldError> {
        parse_event(value, Dialect::Api, "evt_1".into(), 1_000)
    }

    #[test]
    fn an_api_event_maps_its_names_and_keeps_the_rest_as_fields() {
        let e = api(json!({
            "timestamp": "2026-11-01T10:00:00Z", "host": "web-1", "severity": "high",
            "message": "Failed password for root", "tags": ["ssh"], "user": "root",
            "fields": {"geo": {"country": "FR"}}
        }))
        .unwrap();
        assert_eq!(e.timestamp, parse_rfc3339("2026-11-01T10:00:00Z").unwrap());
        assert_eq!(e.source, EventSource::Api);
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.fields["user"], json!("root"));
        assert_eq!(e.fields["geo"]["country"], json!("FR"));
        assert_eq!(e.received_at, 1_000);
    }

    #[test]
    fn a_null_outside_the_model_is_kept_in_fields() {
        let e =
            api(json!({"message": "m", "host": null, "d": null, "fields": {"a": null}})).unwrap();
        assert_eq!(e.host, None);
        assert_eq!(e.fields.get("d"), Some(&Value::Null));
        assert_eq!(e.fields.get("a"), Some(&Value::Null));
        assert!(!e.fields.contains_key("host"));
        let e = parse_event(
            json!({"msg": "m", "level": null, "z": null, "source": null}),
            Dialect::JsonLog,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!(e.fields.get("z"), Some(&Value::Null));
        assert_eq!(e.fields.get("source"), Some(&Value::Null));
        assert!(!e.fields.contains_key("level"));
    }

    #[test]
    fn a_second_name_for_a_field_is_kept_not_dropped() {
        let e = api(json!({
            "message": "m-primary", "msg": "m-alias",
            "timestamp": "2020-05-01T00:00:00Z", "@timestamp": "2021-05-01T00:00:00Z",
            "severity": "info", "level": "error"
        }))
        .unwrap();
        assert_eq!(e.message, "m-primary");
        assert_eq!(e.timestamp, parse_rfc3339("2020-05-01T00:00:00Z").unwrap());
        assert_eq!(e.severity, Severity::Info);
        assert_eq!(e.fields["msg"], json!("m-alias"));
        assert_eq!(e.fields["@timestamp"], json!("2021-05-01T00:00:00Z"));
        assert_eq!(e.fields["level"], json!("error"));
        // The same name at the top level and in `fields` is refused.
        let err = api(json!({"fields": {"x": 1}, "x": 2})).unwrap_err();
        assert_eq!(err.field, "x");
        // In a log line too, whichever order the names come in.
        let e = parse_event(
            json!({"msg": "m1", "message": "m2", "host": "h-a", "hostname": "h-b"}),
            Dialect::JsonLog,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!((e.message.as_str(), e.host.as_deref()), ("m2", Some("h-a")));
        assert_eq!(
            (&e.fields["msg"], &e.fields["hostname"]),
            (&json!("m1"), &json!("h-b"))
        );
        // Elastic Common Schema's nested level.
        let e = parse_event(
            json!({"log": {"level": "error"}}),
            Dialect::JsonLog,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.fields["log"]["level"], json!("error"));
    }

    #[test]
    fn api_events_are_strict_about_known_names() {
        assert_eq!(
            api(json!({"severity": "loud"})).unwrap_err().field,
            "severity"
        );
        assert_eq!(
            api(json!({"timestamp": "soon"})).unwrap_err().field,
            "timestamp"
        );
        assert_eq!(api(json!({"tags": [1]})).unwrap_err().field, "tags[0]");
        for (field, value) in [
            ("agent_id", json!("bot\u{200B}")),
            ("host", json!("h\u{0000}x")),
            ("session_id", json!("s\u{202E}1")),
            ("program", json!("app\n")),
            ("agent_id", json!("bot1\u{2800}")),
            ("agent_id", json!("bot\u{00A0}1")),
            ("host", json!("h\u{3000}")),
            ("host", json!("h\u{FFF9}")),
            ("host", json!("h\u{FFFE}")),
        ] {
            let err = api(json!({field: value})).unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.message.contains("invisible"), "{}", err.message);
        }
        for value in ["bot1 ", " bot1"] {
            let err = api(json!({"agent_id": value})).unwrap_err();
            assert!(err.message.contains("begin or end"), "{}", err.message);
        }
        assert!(api(json!({"agent_id": "billing bot", "tags": ["needs review", "東京"]})).is_ok());
        assert_eq!(
            api(json!({"tags": ["ok", "a\u{200B}"]})).unwrap_err().field,
            "tags[1]"
        );
        assert_eq!(api(json!({"tags": "one"})).unwrap_err().field, "tags");
        assert_eq!(api(json!({"host": 5})).unwrap_err().field, "host");
        assert_eq!(
            api(json!({"session_id": 7})).unwrap_err().field,
            "session_id"
        );
        assert_eq!(api(json!({"program": true})).unwrap_err().field, "program");
        assert_eq!(api(json!({"id": "x"})).unwrap_err().field, "id");
        assert_eq!(api(json!({"source": "kafka"})).unwrap_err().field, "source");
        // No ingested event passes for a decision event.
        for program in [
            "warden",
            "Warden ",
            "WARDEN",
            "ＷＡＲＤＥＮ",
            "war\u{200B}den",
            "\u{FEFF}warden",
            // Other scripts' letters, controls, fillers, marks, styled forms.
            "w\u{0430}rden",
            "ward\u{0435}n",
            "warden\u{0000}",
            "warden\u{0001}",
            "warden\u{007F}",
            "warden\u{E0020}",
            "warden\u{3164}",
            "warden\u{FE0F}",
            "warde\u{0301}n",
            "\u{1D430}\u{1D41A}\u{1D42B}\u{1D41D}\u{1D41E}\u{1D427}",
            "\u{1D21}\u{1D00}\u{0280}\u{1D05}\u{1D07}\u{0274}",
            "\u{24E6}\u{24D0}\u{24E1}\u{24D3}\u{24D4}\u{24DD}",
            // Capitals of other scripts: Greek Epsilon and Nu, Cherokee.
            "WARD\u{0395}N",
            "WARDE\u{039D}",
            "WAR\u{13A0}EN",
            "\u{13B3}\u{13AA}\u{13A1}\u{13A0}\u{13AC}N",
        ] {
            let e = api(json!({"source": "agent", "program": program})).unwrap_err();
            assert_eq!(e.field, "program", "{program}");
        }
        assert!(api(json!({"source": "api", "program": "warden"})).is_ok());
        assert!(api(json!({"source": "agent", "program": "warden-sdk"})).is_ok());
        assert!(api(json!({"source": "agent", "program": "wardens"})).is_ok());
        assert!(api(json!({"source": "agent", "program": "garden"})).is_ok());
        assert_eq!(api(json!("text")).unwrap_err().field, "");
    }

    #[test]
    fn log_line_tags_read_numbers_as_text() {
        let log = |v: Value| parse_event(v, Dialect::JsonLog, "evt_3".into(), 5);
        assert_eq!(log(json!({"tags": [1, "a"]})).unwrap().tags, ["1", "a"]);
        assert_eq!(log(json!({"tags": 7})).unwrap().tags, ["7"]);
        assert_eq!(log(json!({"tags": [true]})).unwrap_err().field, "tags[0]");
    }

    #[test]
    fn log_lines_map_common_names_leniently() {
        let e = parse_event(
            json!({"@timestamp": 1_762_000_000, "level": "WARN", "msg": "disk", "hostname": "db", "source": "10.0.0.1"}),
            Dialect::JsonLog,
            "evt_2".into(),
            5,
        )
        .unwrap();
        assert_eq!(e.timestamp, 1_762_000_000_000);
        assert_eq!(e.severity, Severity::Medium);
        assert_eq!(e.host.as_deref(), Some("db"));
        assert_eq!(e.source, EventSource::Json);
        assert_eq!(e.fields["source"], json!("10.0.0.1"));
        let e = parse_event(
            json!({"host": 5, "tags": "web"}),
            Dialect::JsonLog,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!(e.host.as_deref(), Some("5"));
        assert_eq!(e.tags, ["web"]);
        // Elastic Common Schema's objects: their name, and all of them kept.
        let e = parse_event(
            json!({"message": "x", "host": {"name": "web1", "ip": ["10.0.0.1"]}, "service": {"name": "api"}}),
            Dialect::JsonLog,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!(e.host.as_deref(), Some("web1"));
        assert_eq!(e.program.as_deref(), Some("api"));
        assert_eq!(e.fields["host"]["ip"][0], "10.0.0.1");
        let e = parse_event(
            json!({"host": {"hostname": "db1"}}),
            Dialect::JsonLog,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!(e.host.as_deref(), Some("db1"));
        let e = parse_event(json!({"level": 35}), Dialect::JsonLog, "e".into(), 5).unwrap();
        assert_eq!(e.fields["level"], json!(35));
        // pino's and bunyan's numbers are read, and kept as written.
        for (level, severity) in [
            (30, Severity::Info),
            (50, Severity::High),
            (60, Severity::Critical),
        ] {
            let e = parse_event(json!({"level": level}), Dialect::JsonLog, "e".into(), 5).unwrap();
            assert_eq!((e.severity, &e.fields["level"]), (severity, &json!(level)));
        }
        // GELF (Graylog's format): its message, its syslog level, its
        // time in seconds; its own fields stay.
        let e = parse_event(
            json!({"version": "1.1", "host": "gelf-host", "short_message": "Z04 disk full",
                   "full_message": "trace", "level": 3, "timestamp": 1796472000.25, "_app": "x"}),
            Dialect::JsonLog,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!(e.message, "Z04 disk full");
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.timestamp, 1_796_472_000_250);
        assert_eq!(e.host.as_deref(), Some("gelf-host"));
        assert_eq!(
            (&e.fields["_app"], &e.fields["level"]),
            (&json!("x"), &json!(3))
        );
        for (level, severity) in [(json!(3.0), Severity::High), (json!(5e1), Severity::High)] {
            let e = parse_event(json!({"level": level}), Dialect::JsonLog, "e".into(), 5).unwrap();
            assert_eq!(e.severity, severity, "{level}");
        }
        // Serilog's compact JSON and Vector's syslog records.
        let e = parse_event(
            json!({"@t": "2026-12-06T10:00:00Z", "@mt": "User {u} in", "@m": "User ann in",
                   "@l": "Warning", "u": "ann"}),
            Dialect::JsonLog,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!(
            (e.message.as_str(), e.severity),
            ("User ann in", Severity::Medium)
        );
        assert_eq!(e.fields["@mt"], "User {u} in");
        let e = parse_event(
            json!({"appname": "sshd", "hostname": "h1", "message": "m"}),
            Dialect::JsonLog,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!(e.program.as_deref(), Some("sshd"));
        // The forwarders' own JSON: syslog-ng's `format-json --scope
        // rfc5424` and rsyslog's `%jsonmesg%`.
        let read = |line: Value| {
            let e = parse_event(line, Dialect::JsonLog, "e".into(), 5).unwrap();
            (e.host, e.program, e.timestamp, e.severity)
        };
        let syslog_ng = json!({"PROGRAM": "sshd", "PRIORITY": "warning", "PID": "42",
            "MESSAGE": "Failed", "ISODATE": "2026-12-06T11:00:00+01:00", "HOST": "web-01"});
        let rsyslog = json!({"msg": " Failed", "hostname": "db-01", "programname": "sudo",
            "syslogseverity": "3", "timereported": "2026-12-06T10:00:00.250Z"});
        let named = |host: &str, program: &str| (Some(host.to_string()), Some(program.to_string()));
        let (host, program, at, severity) = read(syslog_ng);
        assert_eq!(
            ((host, program), at, severity),
            (named("web-01", "sshd"), 1_796_551_200_000, Severity::Medium)
        );
        let (host, program, at, severity) = read(rsyslog);
        assert_eq!(
            ((host, program), at, severity),
            (named("db-01", "sudo"), 1_796_551_200_250, Severity::High)
        );
        // ecs-logging's dotted names give the host and program, and stay.
        let e = parse_event(
            json!({"host.name": "petclinic-01", "service.name": "petclinic", "message": "m"}),
            Dialect::JsonLog,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!(e.host.as_deref(), Some("petclinic-01"));
        assert_eq!(e.program.as_deref(), Some("petclinic"));
        assert_eq!(e.fields["host.name"], "petclinic-01");
        // A level Warden does not know does not hide one it knows.
        let e = parse_event(
            json!({"severity": "30", "level": "error"}),
            Dialect::JsonLog,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.fields["severity"], json!("30"));
        assert!(!e.fields.contains_key("level"), "{:?}", e.fields);
        // A known first name still wins, and the second stays a field.
        let e = parse_event(
            json!({"severity": "low", "level": "error"}),
            Dialect::JsonLog,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!(e.severity, Severity::Low);
        assert_eq!(e.fields["level"], json!("error"));
    }

    #[test]
    fn journald_structlog_and_python_json_logger_lines_map() {
        let log = |v: Value| parse_event(v, Dialect::JsonLog, "e".into(), 5).unwrap();
        let e = log(json!({
            "__REALTIME_TIMESTAMP": "1796378418123456", "PRIORITY": "3",
            "MESSAGE": "Failed password for root", "_HOSTNAME": "db-01",
            "SYSLOG_IDENTIFIER": "sshd", "_PID": "811"
        }));
        assert_eq!(e.timestamp, 1_796_378_418_123);
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.message, "Failed password for root");
        assert_eq!(e.host.as_deref(), Some("db-01"));
        assert_eq!(e.program.as_deref(), Some("sshd"));
        assert_eq!(e.fields["_PID"], json!("811"));
        // As a number too.
        let e = log(json!({"PRIORITY": 0, "MESSAGE": "m"}));
        assert_eq!(e.severity, Severity::Critical);
        assert!(!e.fields.contains_key("PRIORITY"), "{:?}", e.fields);
        let e = log(json!({"event": "user logged in", "level": "warning", "user": "a"}));
        assert_eq!(
            (e.message.as_str(), e.severity),
            ("user logged in", Severity::Medium)
        );
        let e = log(
            json!({"asctime": "2026-12-04 10:00:00,123", "levelname": "ERROR",
                           "message": "boom"}),
        );
        assert_eq!(
            e.timestamp,
            parse_rfc3339("2026-12-04T10:00:00.123Z").unwrap()
        );
        assert_eq!(e.severity, Severity::High);
        // Elastic's `event` object is not a message.
        let e = log(json!({"message": "m", "event": {"category": "auth"}}));
        assert_eq!(e.message, "m");
        assert_eq!(e.fields["event"]["category"], json!("auth"));
        let e = log(json!({"event": {"category": "auth"}}));
        assert_eq!(e.message, "");
        assert_eq!(e.fields["event"]["category"], json!("auth"));
        for (text, expected) in [
            ("1796385618", "2026-12-04T12:00:18Z"),
            ("2026-12-04T12:00:18+0000", "2026-12-04T12:00:18Z"),
            ("2026-12-04T13:00:18+0100", "2026-12-04T12:00:18Z"),
            ("2026-12-04T12:00:18", "2026-12-04T12:00:18Z"),
            ("2026-12-04 12:00:18.5", "2026-12-04T12:00:18.500Z"),
            ("2026-12-04T12:00:18,250Z", "2026-12-04T12:00:18.250Z"),
            ("2026-12-04 12:00:18,250Z", "2026-12-04T12:00:18.250Z"),
        ] {
            assert_eq!(
                parse_log_time(&json!(text)),
                parse_rfc3339(expected),
                "{text}"
            );
        }
        assert_eq!(parse_log_time(&json!("yesterday")), None);
        // The batch API keeps to RFC 3339 and numbers.
        assert!(api(json!({"timestamp": "2026-12-04 12:00:18"})).is_err());
    }

    #[test]
    fn epoch_numbers_are_read_by_magnitude() {
        let s = parse_time(&json!(1_700_000_000)).unwrap();
        assert_eq!(parse_time(&json!(1_700_000_000_000i64)), Some(s));
        assert_eq!(parse_time(&json!(1_700_000_000_000_000i64)), Some(s));
        assert_eq!(parse_time(&json!(-5)), None);
        // Nanoseconds past 2^53 are read exactly, not through a double.
        for ns in [1_796_256_001_002_000_000u64, 1_796_256_001_002_999_999] {
            assert_eq!(parse_time(&json!(ns)), Some(1_796_256_001_002), "{ns}");
        }
    }

    #[test]
    fn shippers_lines_map_without_losing_the_upload() {
        let log = |v: Value| parse_event(v, Dialect::JsonLog, "e".into(), 5).unwrap();
        // Docker's json-file driver and Fluent Bit: the text is `log`, with
        // its newline; Fluent Bit's time is `date`.
        let e = log(json!({"log": "Error: ECONNRESET\n", "stream": "stderr",
                           "time": "2026-12-05T10:00:00.123456789Z"}));
        assert_eq!(e.message, "Error: ECONNRESET");
        assert_eq!(e.timestamp, 1_796_464_800_123);
        let e = log(json!({"date": 1_796_464_808.5, "log": "fluent\r\n"}));
        assert_eq!(
            (e.message.as_str(), e.timestamp),
            ("fluent", 1_796_464_808_500)
        );
        assert_eq!(e.fields["date"], json!(1_796_464_808.5));
        // Elastic's `log` object is no message, and still gives the level.
        let e = log(json!({"log": {"level": "error"}, "message": "m"}));
        assert_eq!((e.message.as_str(), e.severity), ("m", Severity::High));
        // Numbers too, nested or dotted, as `level` reads them.
        let e = log(json!({"log": {"level": 3}, "message": "m"}));
        assert_eq!(e.severity, Severity::High);
        let e = log(json!({"log.level": 50, "message": "m"}));
        assert_eq!(e.severity, Severity::High);
        let e = log(json!({"log": {"level": "warn"}}));
        assert_eq!((e.message.as_str(), e.severity), ("", Severity::Medium));
        // zap's development panic.
        assert_eq!(log(json!({"level": "dpanic"})).severity, Severity::Critical);
        // journald's message as bytes.
        let e = log(json!({"MESSAGE": [69, 88, 84, 52, 7, 32, 111, 107]}));
        assert_eq!(e.message, "EXT4\u{7} ok");
        // Padded keywords are trimmed; a time that cannot be read stays in
        // `fields`, the line keeping its arrival time.
        let e = log(
            json!({"host": "web-01 ", "service": "billing\n", "tags": ["a", "b\t"],
                           "time": "-", "msg": "x"}),
        );
        assert_eq!(e.host.as_deref(), Some("web-01"));
        assert_eq!(e.program.as_deref(), Some("billing"));
        assert_eq!(e.tags, ["a", "b"]);
        assert_eq!((e.timestamp, &e.fields["time"]), (5, &json!("-")));
        // A later name gives the time an unreadable one could not; nginx's
        // `$time_local` reads.
        let e = log(json!({"timestamp": "", "time": "05/Dec/2026:10:07:00 +0000"}));
        assert_eq!(e.timestamp, 1_796_465_220_000);
        // The event API stays strict.
        let api = |v: Value| parse_event(v, Dialect::Api, "e".into(), 5);
        assert_eq!(
            api(json!({"timestamp": "-"})).unwrap_err().field,
            "timestamp"
        );
        assert_eq!(api(json!({"host": "web-01 "})).unwrap_err().field, "host");
    }
}
