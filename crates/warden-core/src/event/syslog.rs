//! Syslog (RFC 5424 and RFC 3164) mapped to [`Event`].
//!
//! One datagram or one TCP frame (see [`super::framing`]) is one message.
//! The format is detected per message: RFC 5424 first, then RFC 3164, both
//! read by `syslog_loose`; Warden reads the `<PRI>` itself so that a bad one
//! is an error rather than text, and a line without one is a bare message
//! (RFC 3164 §4.3.3: priority 13, user.notice, the whole line as text).
//!
//! The structured-data element `[warden@32473 token="…"]` carries the ingest
//! API key that routes the message to its organization. It is returned
//! beside the event and never kept in it.

use std::fmt;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde_json::{Map, Value};
use syslog_loose::{IncompleteDate, Message, Variant};

use super::limits::MAX_KEYWORD_CHARS;
use super::{flatten, Event, EventSource, Severity};
use crate::time::Millis;

/// Bytes of one syslog message, as received.
pub const MAX_SYSLOG_BYTES: usize = 64 * 1024;

/// The structured-data element that carries an ingest API key:
/// `[warden@32473 token="wdn_…"]`.
pub const WARDEN_SD_ID: &str = "warden@32473";
const TOKEN_PARAM: &str = "token";

/// The priority of a message sent without `<PRI>`: user.notice.
const BARE_PRIORITY: u8 = 13;
const MAX_PRIORITY: u16 = 191;
const DAY_MS: i64 = 86_400_000;
/// 9999-12-31T23:59:59.999Z, the last time RFC 3339 can show.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Syslog's severity keywords, by level.
const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Syslog's facility keywords, by number (rsyslog's names).
const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Why one syslog message was refused; never carries the message's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyslogError {
    #[error("the syslog message is empty")]
    Empty,
    #[error("the syslog message is not valid UTF-8 (at byte {offset})")]
    NotUtf8 { offset: usize },
    #[error("the syslog message is {len} bytes, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("the syslog message contains a NUL byte (at byte {offset})")]
    NulByte { offset: usize },
    #[error("the syslog priority must be `<` and 1 to 3 digits then `>`, such as `<13>`")]
    MalformedPriority,
    #[error("the syslog priority {value} is out of range (0 to 191)")]
    PriorityOutOfRange { value: u16 },
    #[error("the syslog message carries more than one `warden@32473` token")]
    ConflictingTokens,
    #[error("the syslog message's `warden@32473` element has no `token` parameter")]
    MissingToken,
    #[error("{path}: {message}")]
    Fields { path: String, message: String },
}

/// One parsed message: the event, and the ingest API key it carried in
/// `[warden@32473 token="…"]`, if any. `Debug` shows no credential.
#[derive(Clone, PartialEq)]
pub struct SyslogMessage {
    pub event: Event,
    pub token: Option<String>,
    /// Warden keys and tokens the message held without being routed by
    /// them (in a misquoted element, a mistyped id, the text), already
    /// taken out of the event: the listener checks them, since one that is
    /// valid for another organization means the message was meant for it.
    /// At most [`MAX_UNROUTED_CREDENTIALS`].
    pub unrouted_credentials: Vec<String>,
}

/// Most credentials of one message checked: the first ones.
pub const MAX_UNROUTED_CREDENTIALS: usize = 4;

impl fmt::Debug for SyslogMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyslogMessage")
            .field("event", &self.event)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("unrouted_credentials", &self.unrouted_credentials.len())
            .finish()
    }
}

/// Maps one syslog message (a datagram or a TCP frame) to an event with the
/// id and arrival time Warden gives it.
pub fn parse(bytes: &[u8], id: String, received_at: Millis) -> Result<SyslogMessage, SyslogError> {
    if bytes.len() > MAX_SYSLOG_BYTES {
        return Err(SyslogError::TooLong {
            len: bytes.len(),
            max: MAX_SYSLOG_BYTES,
        });
    }
    let raw = std::str::from_utf8(bytes).map_err(|e| SyslogError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    // Senders end frames with `\n`, `\r\n` or NUL; some start with a BOM.
    let trimmed = raw.trim_end_matches(|c: char| c.is_whitespace() || c == '\0');
    let text = trimmed.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
    if text.is_empty() {
        return Err(SyslogError::Empty);
    }
    if let Some(at) = text.find('\0') {
        return Err(SyslogError::NulByte {
            offset: trimmed.len() - text.len() + at,
        });
    }

    let (priority, rest) = match text.strip_prefix('<') {
        Some(after) => {
            let (priority, rest) = split_priority(after)?;
            (priority, Some(rest))
        }
        None => (BARE_PRIORITY, None),
    };
    let level = priority & 7;
    let facility = priority >> 3;

    let mut event = Event {
        id,
        timestamp: received_at,
        received_at,
        source: EventSource::Syslog,
        host: None,
        program: None,
        severity: Severity::from_syslog_level(level),
        message: String::new(),
        agent_id: None,
        session_id: None,
        tags: Vec::new(),
        fields: Map::new(),
    };
    let mut syslog = Map::new();
    syslog.insert("severity".into(), LEVELS[usize::from(level)].into());
    syslog.insert("facility".into(), FACILITIES[usize::from(facility)].into());
    let mut token = None;

    match rest {
        None => event.message = clean_message(text),
        Some(rest) if rest.trim().is_empty() => return Err(SyslogError::Empty),
        Some(rest) => {
            let rewritten = rewrite_3164_time(rest);
            let (text, fraction_ms) = match &rewritten {
                Some((text, ms)) => (text.as_str(), *ms),
                None => (rest, 0),
            };
            match syslog_loose::parse_message_with_year_exact_tz(
                text,
                year_resolver(received_at),
                Some(Utc),
                Variant::Either,
            ) {
                // A time rewritten into a shape the parser reads that still
                // does not read (`Feb 29` of a year without one): the header
                // cannot be read, and the message is kept whole, as sent.
                Ok(message) if rewritten.is_some() && message.timestamp.is_none() => {
                    event.message = clean_message(rest.trim_start());
                }
                Ok(message) => {
                    let timed = matches!(message.protocol, syslog_loose::Protocol::RFC3164)
                        && message.timestamp.is_some();
                    token = map_message(message, text, &mut event, &mut syslog)?;
                    if timed && event.timestamp != received_at {
                        event.timestamp = (event.timestamp + fraction_ms).min(MAX_TIME_MS);
                    }
                }
                // Text after a valid `<PRI>` but no header `syslog_loose` knows
                // (kept as sent, a rewritten time too).
                Err(_) => event.message = clean_message(rest.trim_start()),
            }
        }
    }

    event.fields.insert("syslog".into(), Value::Object(syslog));
    // Structured data the index cannot hold as fields (a name longer than
    // a field's name may be, say) is kept as its JSON text instead of
    // costing the whole message.
    if flatten::check(&event.fields).is_err() {
        if let Some(sd) = event.fields.remove("sd") {
            if let Some(Value::Object(syslog)) = event.fields.get_mut("syslog") {
                syslog.insert("sd_unparsed".into(), Value::String(sd.to_string()));
            }
        }
    }
    flatten::check(&event.fields).map_err(|(path, message)| SyslogError::Fields {
        path: format!("fields.{path}"),
        message,
    })?;
    // A credential that did not route the message may have been meant to
    // route it somewhere (a misquoted element, `token='…'`, a mistyped id,
    // RFC 3164, which has no structured data), or be text an attacker
    // chose (`Invalid user wdn_live_x`): the listener checks each, and
    // drops the message only for one valid in another organization.
    let credential = holds_warden_credential(text);
    let unrouted_credentials = if token.is_none() && credential {
        credentials_in(text)
    } else {
        Vec::new()
    };
    // The element was recognized and removed above; if its id is still
    // somewhere in the event, it was malformed (or is only text that
    // mentions it) and may hold a key's secret: the secret is taken out
    // and the message kept, so that mentioning the id hides nothing.
    if credential || mentions_warden_id(text) || text.contains(JWT_START) {
        scrub_event(&mut event);
    }
    Ok(SyslogMessage {
        event,
        token,
        unrouted_credentials,
    })
}

/// The Warden keys (from their prefix, as far as a key's characters go)
/// and Warden tokens in `text`, the first [`MAX_UNROUTED_CREDENTIALS`].
fn credentials_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while !rest.is_empty() && found.len() < MAX_UNROUTED_CREDENTIALS {
        if let Some(key) = key_at(rest) {
            // As the key ring reads it: the prefix as Warden writes it.
            found.push(format!("{}{}", key.prefix, &rest[key.body..key.end]));
            rest = &rest[key.end..];
        } else if let Some(len) = warden_token_len(rest) {
            found.push(rest[..len].to_string());
            rest = &rest[len..];
        } else {
            let c = rest.chars().next().unwrap_or_default();
            rest = &rest[c.len_utf8()..];
        }
    }
    found
}

/// How Warden's API keys begin: a word shaped like one is a credential
/// sent to the wrong place (a mistyped element id, the message text), and
/// is never stored, wherever it is in a message.
pub const KEY_PREFIXES: [&str; 2] = ["wdn_live_", "wdn_test_"];

/// A key at the start of some text, as [`key_at`] finds it.
struct KeyAt {
    prefix: &'static str,
    /// Where the part after the prefix starts, and where the key ends.
    body: usize,
    end: usize,
}

/// Fewest base-62 characters after a prefix that make a key: a key's
/// 43, or a copy cut short that still shows this many. One that shows
/// fewer leaves at least 27 characters (160 bits) unseen, so it is no
/// credential; and names such as `wdn_live_region` or
/// `WDN_TEST_HARNESS` are kept as written, where taking them out would
/// merge distinct names into one.
pub const KEY_MIN_SHOWN: usize = 16;

/// The key prefix `text` starts with, and where its body starts. The
/// prefix is read in any case and with its underscores percent-encoded
/// (`WDN_LIVE_`, `wdn%5Flive%5F`), as a log that upper-cases or
/// URL-encodes what it records writes it.
fn prefix_at(text: &str) -> Option<(&'static str, usize)> {
    let bytes = text.as_bytes();
    KEY_PREFIXES.iter().find_map(|prefix| {
        let mut at = 0;
        for want in prefix.bytes() {
            let encoded = || {
                want == b'_'
                    && bytes.get(at) == Some(&b'%')
                    && bytes
                        .get(at + 1..at + 3)
                        .is_some_and(|hex| hex.eq_ignore_ascii_case(b"5f"))
            };
            match bytes.get(at) {
                Some(b) if b.eq_ignore_ascii_case(&want) => at += 1,
                Some(_) if encoded() => at += 3,
                _ => return None,
            }
        }
        Some((*prefix, at))
    })
}

/// The key `text` starts with, if it does: a prefix, then at least
/// [`KEY_MIN_SHOWN`] base-62 characters, taken to the last, or to where
/// another key's prefix begins (two keys written together are two keys,
/// the second's secret not left behind the first's). One line break
/// after the prefix, with the spaces around it, is skipped: a log line
/// wrapped there still shows the whole secret (a word after a plain space
/// is a word).
fn key_at(text: &str) -> Option<KeyAt> {
    let (prefix, at) = prefix_at(text)?;
    let gap = text.len()
        - at
        - text[at..]
            .trim_start_matches(|c: char| c.is_ascii_whitespace())
            .len();
    let at = if text[at..at + gap].matches('\n').count() == 1 {
        at + gap
    } else {
        at
    };
    let run = text[at..]
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(text.len() - at);
    let body_len = (1..run)
        .find(|&i| prefix_at(&text[at + i..]).is_some())
        .unwrap_or(run);
    if body_len < KEY_MIN_SHOWN {
        return None;
    }
    Some(KeyAt {
        prefix,
        body: at,
        end: at + body_len,
    })
}

/// What replaces a secret taken out of a message.
const SCRUBBED: &str = "[REDACTED]";

fn scrub_event(event: &mut Event) {
    event.message = scrub_secrets(&event.message);
    for text in [&mut event.host, &mut event.program].into_iter().flatten() {
        *text = scrub_secrets(text);
    }
    for value in event.fields.values_mut() {
        scrub_value(value);
    }
}

fn scrub_value(value: &mut Value) {
    match value {
        Value::String(s) => *s = scrub_secrets(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        Value::Object(map) => {
            // Names too: an element id or a parameter name may be a key.
            let mut renamed = Vec::new();
            for (name, mut v) in std::mem::take(map) {
                if name.eq_ignore_ascii_case("token") {
                    v = Value::String(SCRUBBED.into());
                } else {
                    scrub_value(&mut v);
                }
                match scrub_secrets(&name) {
                    scrubbed if scrubbed != name => renamed.push((scrubbed, v)),
                    _ => {
                        map.insert(name, v);
                    }
                }
            }
            insert_renamed(map, renamed);
        }
        _ => {}
    }
}

/// `text` with the value of every `token=` and every word shaped like a
/// Warden key replaced (for a message that mentions the element's id: its
/// parts may have landed in any field; for an error that quotes what its
/// request sent).
pub fn scrub_secrets(text: &str) -> String {
    scrub(text, true)
}

/// `text` with every word shaped like a Warden key, and every Warden
/// token, replaced; `None` when it holds neither.
pub fn without_credentials(text: &str) -> Option<String> {
    if !may_hold_credential(text) {
        return None;
    }
    let scrubbed = scrub(text, false);
    (scrubbed != text).then_some(scrubbed)
}

/// A quick look for the beginnings of a Warden key or token (`wdn` in any
/// case, `eyJ`), so that text without them costs one pass over its bytes.
fn may_hold_credential(text: &str) -> bool {
    text.as_bytes().windows(3).any(|w| {
        w.eq_ignore_ascii_case(b"wdn") || w == JWT_START.as_bytes() || w == &HOLD_START[..3]
    })
}

/// How a hold token begins; it goes on with 64 hexadecimal digits.
const HOLD_START: &[u8; 5] = b"hold_";

/// The shortest run of hexadecimal digits after `hold_` taken for a hold
/// token (a real one has 64): a copy cut this short still leaves 128 bits
/// unseen, and words such as `hold_time` stay.
const HOLD_MIN_HEX: usize = 32;

/// The length of the hold token `text` starts with, if it does: a bearer
/// secret that only the agent holds (a call's approval is redeemed with
/// it), so one written into arguments, context or a log is taken out as a
/// key is, to the end of its run of digits whatever follows (another
/// token, a word).
fn hold_token_len(text: &str) -> Option<usize> {
    let rest = text.as_bytes().strip_prefix(HOLD_START.as_slice())?;
    let hex = rest
        .iter()
        .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        .count();
    (hex >= HOLD_MIN_HEX).then_some(HOLD_START.len() + hex)
}

/// Whether any text of a JSON value, object keys included, may hold a
/// Warden credential (a quick look: a false answer is certain).
pub fn may_hold_credential_in(value: &Value) -> bool {
    match value {
        Value::String(s) => may_hold_credential(s),
        Value::Array(items) => items.iter().any(may_hold_credential_in),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| may_hold_credential(k) || may_hold_credential_in(v)),
        _ => false,
    }
}

/// Takes Warden keys and tokens out of every text of a JSON value, its
/// object keys included; a value without any is left untouched.
pub fn scrub_credentials_in(value: &mut Value) {
    if !may_hold_credential_in(value) {
        return;
    }
    match value {
        Value::String(s) => {
            if let Some(scrubbed) = without_credentials(s) {
                *s = scrubbed;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub_credentials_in),
        Value::Object(map) => {
            let mut renamed = Vec::new();
            for (name, mut v) in std::mem::take(map) {
                scrub_credentials_in(&mut v);
                match without_credentials(&name) {
                    Some(scrubbed) => renamed.push((scrubbed, v)),
                    None => {
                        map.insert(name, v);
                    }
                }
            }
            insert_renamed(map, renamed);
        }
        _ => {}
    }
}

/// Puts back the entries whose names a credential was taken out of, after
/// the names kept as sent: two names that differ only in their keys, or
/// one that now reads as a name already there, each keep their value, the
/// later ones numbered (`[REDACTED] (2)`), rather than one overwriting
/// another.
fn insert_renamed(map: &mut Map<String, Value>, renamed: Vec<(String, Value)>) {
    for (name, v) in renamed {
        let mut candidate = name.clone();
        let mut n = 1;
        while map.contains_key(&candidate) {
            n += 1;
            candidate = format!("{name} ({n})");
        }
        map.insert(candidate, v);
    }
}

/// Takes Warden keys and tokens out of every text an event carries: a
/// credential an agent or a program wrote into a log line would otherwise
/// be stored, and shown to every key that reads events.
pub fn scrub_event_credentials(event: &mut Event) {
    let mut texts: Vec<&mut String> = vec![&mut event.message];
    texts.extend(
        [
            &mut event.host,
            &mut event.program,
            &mut event.agent_id,
            &mut event.session_id,
        ]
        .into_iter()
        .flatten(),
    );
    texts.extend(event.tags.iter_mut());
    for text in texts {
        if let Some(scrubbed) = without_credentials(text) {
            *text = scrubbed;
        }
    }
    // Taken and put back whole, not copied; the scrub looks before it
    // changes anything.
    let mut fields = Value::Object(std::mem::take(&mut event.fields));
    scrub_credentials_in(&mut fields);
    if let Value::Object(map) = fields {
        event.fields = map;
    }
}

/// Replaces Warden keys and tokens, and with `assignments` the value of
/// every `token=` too.
fn scrub(text: &str, assignments: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let assigned = if assignments {
            assignment_at(rest, &[TOKEN_PARAM], false)
        } else {
            None
        };
        if let Some(value_at) = assigned {
            out.push_str(&rest[..value_at]);
            out.push_str(SCRUBBED);
            rest = &rest[value_at + assigned_len(&rest[value_at..])..];
            continue;
        }
        if let Some(len) = warden_token_len(rest).or_else(|| hold_token_len(rest)) {
            out.push_str(SCRUBBED);
            rest = &rest[len..];
            continue;
        }
        if let Some(key) = key_at(rest) {
            out.push_str(SCRUBBED);
            rest = &rest[key.end..];
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// How every JWT begins: `{"` in base64url.
const JWT_START: &str = "eyJ";

/// The length of the Warden token (`POST /api/v1/auth/token`: a JWT whose
/// issuer is `warden`) `text` starts with, if it does. A token is as good
/// as its key for an hour, so one sent to syslog is taken out wherever it
/// is, as a key is.
fn warden_token_len(text: &str) -> Option<usize> {
    use base64::Engine;
    if !text.starts_with(JWT_START) {
        return None;
    }
    // Each of the three parts is read only as far as a Warden token's can
    // reach: a message of `eyJeyJ…` costs a bounded read at each start,
    // not a read to the end of the message.
    let b = text.as_bytes();
    let part = |from: usize, most: usize| {
        b[from..]
            .iter()
            .take(most + 1)
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
            .count()
    };
    let header = part(0, MAX_JWT_HEADER);
    if header > MAX_JWT_HEADER || b.get(header) != Some(&b'.') {
        return None;
    }
    let from = header + 1;
    let payload = part(from, MAX_JWT_PART);
    if payload == 0 || payload > MAX_JWT_PART || b.get(from + payload) != Some(&b'.') {
        return None;
    }
    let signature_at = from + payload + 1;
    let signature = part(signature_at, MAX_JWT_PART);
    if signature > MAX_JWT_PART {
        return None;
    }
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&text[from..from + payload])
        .ok()?;
    let claims: Value = serde_json::from_slice(&claims).ok()?;
    (claims.get("iss").and_then(Value::as_str) == Some("warden"))
        .then_some(signature_at + signature)
}

/// The longest header (`{"typ":"JWT","alg":"EdDSA"}` is 36 characters) and
/// payload or signature a Warden token is looked for with.
const MAX_JWT_HEADER: usize = 256;
const MAX_JWT_PART: usize = 4096;

/// Where the value begins if `text` starts with an assignment to one of
/// `names` (in any case; with `suffixed`, also with more of a name after
/// it: `secret_key`, `password_hash`): then, the name quoted or not
/// (`"token": "…"`, as JSON writes it, escaped too), `=` or `:` with
/// spaces around it or not, or `=>` (Ruby, PHP) and `:=`.
pub fn assignment_at(text: &str, names: &[&str], suffixed: bool) -> Option<usize> {
    let name = names.iter().find(|name| {
        text.get(..name.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(name))
    })?;
    let mut after = &text[name.len()..];
    if suffixed {
        let more = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(after.len());
        after = &after[more..];
    }
    let after = after
        .strip_prefix("\\\"")
        .or_else(|| after.strip_prefix(['"', '\'']))
        .unwrap_or(after);
    let spaced = after.trim_start_matches([' ', '\t']);
    let rest = spaced.strip_prefix(['=', ':'])?;
    let rest = rest.strip_prefix(['>', '=']).unwrap_or(rest);
    let value = rest.trim_start_matches([' ', '\t']);
    (!value.is_empty()).then_some(text.len() - value.len())
}

/// How long the value at the start of `value` is, as an assignment gives
/// it: quoted (in quotes escaped or not, or backticks) to its closing
/// quote, past escaped ones, and before the surrounding text's own quotes
/// (an error's backticks, a JSON string's `"`); unclosed, or not quoted, to
/// where a word, a list, a query string or a bracket ends (`a=1&token=S&b=2`
/// keeps `&b=2`).
pub fn assigned_len(value: &str) -> usize {
    let word = |v: &str| {
        v.find(|c: char| {
            c.is_whitespace() || matches!(c, ']' | ',' | ';' | '&' | '}' | ')' | '"' | '\'' | '`')
        })
        .unwrap_or(v.len())
    };
    let quoted = |open: &str, closers: &[char]| -> Option<usize> {
        let inner = value.strip_prefix(open)?;
        let escaped = open.starts_with('\\');
        let mut at = 0;
        while let Some(c) = inner[at..].chars().next() {
            if inner[at..].starts_with(open) {
                return Some(open.len() + at + open.len());
            }
            if c == '\\' && !escaped {
                // An escaped character inside the quotes (`\"`).
                at += 1 + inner[at + 1..].chars().next().map_or(0, char::len_utf8);
                continue;
            }
            if closers.contains(&c) {
                return Some(open.len() + at);
            }
            at += c.len_utf8();
        }
        Some(open.len() + word(inner))
    };
    quoted("\\\"", &['`'])
        .or_else(|| quoted("\\'", &['`', '"']))
        .or_else(|| quoted("\"", &['`']))
        .or_else(|| quoted("'", &['"', '`']))
        .or_else(|| quoted("`", &[]))
        .unwrap_or_else(|| word(value))
}

/// Whether `text` holds a word shaped like a Warden key, or a Warden token.
fn holds_warden_credential(text: &str) -> bool {
    (0..text.len()).any(|at| text.is_char_boundary(at) && key_at(&text[at..]).is_some())
        || text
            .match_indices(JWT_START)
            .any(|(at, _)| warden_token_len(&text[at..]).is_some())
}

/// Whether `text` holds the token element's id, in any case.
fn mentions_warden_id(text: &str) -> bool {
    let (name, number) = WARDEN_SD_ID.split_at(WARDEN_SD_ID.len() - "@32473".len());
    text.match_indices(number).any(|(at, _)| {
        at >= name.len()
            && text
                .get(at - name.len()..at)
                .is_some_and(|before| before.eq_ignore_ascii_case(name))
    })
}

/// Reads `13>…` (after the `<`): the priority and the text after `>`.
fn split_priority(after: &str) -> Result<(u8, &str), SyslogError> {
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if !(1..=3).contains(&digits) || after.as_bytes().get(digits) != Some(&b'>') {
        return Err(SyslogError::MalformedPriority);
    }
    let value: u16 = after[..digits]
        .parse()
        .map_err(|_| SyslogError::MalformedPriority)?;
    if value > MAX_PRIORITY {
        return Err(SyslogError::PriorityOutOfRange { value });
    }
    Ok((value as u8, &after[digits + 1..]))
}

/// An RFC 3164 time in a shape the parser does not read, rewritten to one
/// it does, with the milliseconds it cannot hold returned apart:
/// - a fraction of a second (`Dec  5 23:01:02.456`, or `,456`; Cisco IOS
///   writes `23:01:02.456:` with `service timestamps log datetime msec`),
///   which the parser would take for the host, is taken out;
/// - a leap second's `60` is read as `59` and 999 milliseconds;
/// - a zone letter right after the time (`23:01:02Z`) is dropped: the
///   time is read as UTC anyway;
/// - a year after the time (`Dec  5 23:01:02 2019 host1`), which the
///   parser would take for the host, is moved before it, where it reads
///   one (`Dec  5 2019 23:01:02 host1`).
fn rewrite_3164_time(rest: &str) -> Option<(String, Millis)> {
    let b = rest.as_bytes();
    let month = b.get(..4)?;
    if !(month[0].is_ascii_uppercase()
        && month[1].is_ascii_lowercase()
        && month[2].is_ascii_lowercase()
        && month[3] == b' ')
    {
        return None;
    }
    // The day, space-padded (`Dec  5`) or not (`Dec 5`, `Dec 05`).
    let mut at = 4;
    while b.get(at) == Some(&b' ') {
        at += 1;
    }
    let day = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=2).contains(&day) || b.get(at + day) != Some(&b' ') {
        return None;
    }
    at += day + 1;
    // A year before the time, which the parser reads: kept where it is.
    let year_before = b
        .get(at..at + 5)
        .is_some_and(|y| y[4] == b' ' && y[..4].iter().all(u8::is_ascii_digit));
    if year_before {
        at += 5;
    }
    let clock = b.get(at..at + 8)?;
    let shape = clock.iter().enumerate().all(|(i, c)| {
        if i == 2 || i == 5 {
            *c == b':'
        } else {
            c.is_ascii_digit()
        }
    });
    if !shape {
        return None;
    }
    // A leap second (`23:59:60`), which the parser refuses, is the last
    // millisecond of the second before it, as in RFC 3339 times.
    let leap = &clock[6..8] == b"60";
    let mut ms = if leap { 999 } else { 0 };
    let mut changed = leap;
    // Where the text after the time, as the parser is to read it, starts.
    let mut after = at + 8;
    if matches!(b.get(after), Some(b'.' | b',')) {
        let start = after + 1;
        let digits = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        // A space after it, a zone letter, or Cisco's colon
        // (`23:01:02.456: %SYS-5-…`), which the parser reads as it reads
        // `23:01:02: %SYS-5-…`.
        if !(1..=9).contains(&digits)
            || !matches!(b.get(start + digits), Some(b' ' | b':' | b'Z' | b'z'))
        {
            return None;
        }
        if !leap {
            ms = format!("{:0<3}", &rest[start..start + digits.min(3)])
                .parse()
                .ok()?;
        }
        after = start + digits;
        changed = true;
    }
    // `Z` before the host, or before Cisco's colon.
    if matches!(b.get(after), Some(b'Z' | b'z')) && matches!(b.get(after + 1), Some(b' ' | b':')) {
        after += 1;
        changed = true;
    }
    // Cisco's `show-timezone` in UTC (`23:01:02.456 UTC: %SYS-5-…`), which
    // the parser would take for the program.
    if matches!(b.get(after..after + 5), Some(b" UTC:" | b" GMT:")) {
        after += 4;
        changed = true;
    }
    let year = b
        .get(after..after + 6)
        .filter(|_| !year_before)
        .filter(|y| y[0] == b' ' && y[5] == b' ' && y[1..5].iter().all(u8::is_ascii_digit))
        .map(|_| &rest[after + 1..after + 5])
        .filter(|y| ("1970".."3000").contains(y));
    if year.is_some() {
        after += 5;
        changed = true;
    }
    if !changed {
        return None;
    }
    let seconds = if leap { "59" } else { &rest[at + 6..at + 8] };
    let year = year.map(|y| format!("{y} ")).unwrap_or_default();
    let text = format!(
        "{}{year}{}{seconds}{}",
        &rest[..at],
        &rest[at..at + 6],
        &rest[after..]
    );
    Some((text, ms))
}

/// RFC 3164 times have no year: the year Warden received the message in,
/// or the one before when that would put the message more than a day in
/// the future (December's messages read in January); 29 February, the
/// last leap year up to it. They are read as UTC.
fn year_resolver(received_at: Millis) -> impl Fn(IncompleteDate) -> i32 + Copy {
    move |(month, day, hour, minute, second)| {
        // The latest year up to `year` in which the date exists.
        let holding = |mut year: i32| {
            while (month, day) == (2, 29) && chrono::NaiveDate::from_ymd_opt(year, 2, 29).is_none()
            {
                year -= 1;
            }
            year
        };
        let year = holding(
            DateTime::from_timestamp_millis(received_at)
                .unwrap_or_default()
                .year(),
        );
        match Utc
            .with_ymd_and_hms(year, month, day, hour, minute, second)
            .single()
        {
            Some(time) if time.timestamp_millis() > received_at.saturating_add(DAY_MS) => {
                holding(year - 1)
            }
            _ => year,
        }
    }
}

/// Copies a parsed message's header, structured data and text into the
/// event; returns the ingest token it carried.
fn map_message(
    message: Message<&str>,
    raw: &str,
    event: &mut Event,
    syslog: &mut Map<String, Value>,
) -> Result<Option<String>, SyslogError> {
    let unparsed = unparsed_structured_data(raw, &message);
    // RFC 3164 has no structured data: bracketed text after the tag is the
    // message's own (`[req id="abc"] handled`), and routes nothing.
    let text_3164 = match message.protocol {
        syslog_loose::Protocol::RFC3164 => message
            .structured_data
            .first()
            .and_then(|element| offset_in(raw, element.id))
            .and_then(|id_at| raw[..id_at].rfind('['))
            .map(|start| raw[start..].to_string()),
        _ => None,
    };
    if let Some(sent) = message.timestamp {
        let sent_ms = crate::time::millis_of(&sent);
        // An RFC 3164 year is the sender's text (`Dec  5 3000 23:01:02`):
        // read as one only from 1970 to 2999, as after the time.
        let year_read = matches!(message.protocol, syslog_loose::Protocol::RFC3164)
            .then(|| sent.year())
            .is_none_or(|year| year <= 2999);
        if year_read && (0..=MAX_TIME_MS).contains(&sent_ms) {
            event.timestamp = sent_ms;
        } else {
            // Outside 1970 to 9999 the event keeps its arrival time, and
            // the sender's own time is kept beside it rather than lost.
            syslog.insert("timestamp_out_of_range".into(), sent.to_rfc3339().into());
        }
    }
    if let Some((host, content)) = untagged_3164(raw, &message) {
        event.host = host.and_then(|h| keyword(h, "host", syslog));
        event.message = clean_message(content);
        return Ok(None);
    }
    if let Some((tag, text)) = tag_read_as_host(raw, &message) {
        event.program = keyword(tag, "program", syslog);
        event.message = clean_message(text);
        return Ok(None);
    }
    event.host = present(message.hostname).and_then(|h| keyword(h, "host", syslog));
    event.program = present(message.appname).and_then(|p| keyword(p, "program", syslog));
    if let Some(procid) = message.procid {
        let pid = procid.to_string();
        if pid != "-" {
            event.fields.insert("pid".into(), pid.into());
        }
    }
    if let Some(msgid) = present(message.msgid) {
        syslog.insert("msgid".into(), msgid.into());
    }

    if let Some(text) = text_3164 {
        event.message = clean_message(&text);
        return Ok(None);
    }
    let mut token: Option<String> = None;
    let mut routed = false;
    let mut sd = Map::new();
    for element in &message.structured_data {
        if element.id.eq_ignore_ascii_case(WARDEN_SD_ID) {
            // The whole element stays out of the event, whatever it holds;
            // its parameter is read in any case, as its id is.
            routed = true;
            for (name, value) in element.params() {
                if !name.eq_ignore_ascii_case(TOKEN_PARAM) {
                    continue;
                }
                match &token {
                    Some(seen) if *seen != value => return Err(SyslogError::ConflictingTokens),
                    _ => token = Some(value),
                }
            }
            continue;
        }
        let Value::Object(params) = sd
            .entry(element.id.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
        else {
            unreachable!("structured-data elements are objects");
        };
        for (name, value) in element.params() {
            add_param(params, name, value);
        }
    }
    // A message that asks to be routed and names no key goes nowhere,
    // rather than to the listener's own organization.
    if routed && token.is_none() {
        return Err(SyslogError::MissingToken);
    }
    if !sd.is_empty() {
        event.fields.insert("sd".into(), Value::Object(sd));
    }
    if let Some(unparsed) = unparsed {
        syslog.insert("sd_unparsed".into(), clean_message(unparsed).into());
    }
    event.message = clean_message(message.msg);
    Ok(token)
}

/// An RFC 3164 message with no tag: bracketed text where the tag would be
/// (`host1 [ERROR] disk full`) ends a tag at its `[` in RFC 3164's
/// grammar, so the parser reads it as a process id, or as a tag of `[a`,
/// or even as the host. It is the message's own text: the host (if any)
/// and everything after it, with no program.
fn untagged_3164<'a>(
    raw: &'a str,
    message: &Message<&'a str>,
) -> Option<(Option<&'a str>, &'a str)> {
    if !matches!(message.protocol, syslog_loose::Protocol::RFC3164) {
        return None;
    }
    let host = message.hostname?;
    let host_at = offset_in(raw, host)?;
    if host.starts_with('[') {
        return Some((None, &raw[host_at..]));
    }
    match (message.appname, &message.procid) {
        (None | Some(""), Some(_)) => {}
        (Some(tag), _) if tag.starts_with('[') => {}
        _ => return None,
    }
    Some((Some(host), raw[host_at + host.len()..].trim_start()))
}

/// An RFC 3164 message with a tag and no host (`noprog: text`, as
/// `logger --rfc3164` without a hostname sends, or `cron:text` with no
/// space): the parser takes the tag for the host. A word ending in `:`, or
/// holding one after a tag's letters, is a tag and the start of the text:
/// a host name has no `:` (an IPv6 address, which has, is left as a host).
/// The tag and the text after its `:`.
fn tag_read_as_host<'a>(raw: &'a str, message: &Message<&'a str>) -> Option<(&'a str, &'a str)> {
    if !matches!(message.protocol, syslog_loose::Protocol::RFC3164) {
        return None;
    }
    let host = message.hostname?;
    let at = offset_in(raw, host)?;
    let after = at + host.len();
    let bare = present(message.appname).is_none() && message.procid.is_none();
    if bare && raw[after..].starts_with(':') {
        return Some((host, raw[after + 1..].trim_start()));
    }
    let colon = host.find(':')?;
    let tag = &host[..colon];
    let is_tag = tag.starts_with(|c: char| c.is_ascii_alphabetic())
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    (is_tag && (bare || colon + 1 < host.len()) && host.parse::<std::net::Ipv6Addr>().is_err())
        .then(|| (tag, raw[at + colon + 1..].trim_start()))
}

/// Where `part`, a slice of `whole`, starts in it.
fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (at + part.len() <= whole.len() && whole.is_char_boundary(at)).then_some(at)
}

/// Structured data the parser could not read (single quotes, a value
/// without quotes, a bracket left open): it reads no element and starts
/// the text after it, so the bracketed part would vanish. It is kept as
/// written instead, from its first `[` up to the text.
fn unparsed_structured_data<'a>(raw: &'a str, message: &Message<&str>) -> Option<&'a str> {
    if !matches!(message.protocol, syslog_loose::Protocol::RFC5424(_)) {
        return None;
    }
    let text_at = (message.msg.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    // VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, then the data.
    let mut header = raw.get(..text_at)?.trim_start();
    for _ in 0..6 {
        let end = header.find(' ')?;
        header = header[end..].trim_start();
    }
    let sd = header.trim_end();
    // Kept when the parser read fewer elements than the text opens: it
    // drops an element it cannot read (and may read the others).
    (!sd.is_empty() && sd != "-" && elements_opened(sd) > message.structured_data.len())
        .then_some(sd)
}

/// How many elements structured data opens: each `[` outside a value
/// (values are double-quoted, with `\"` and `\]` escaped) and outside
/// another element.
fn elements_opened(sd: &str) -> usize {
    let (mut opened, mut inside, mut quoted, mut escaped) = (0, false, false, false);
    for c in sd.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if inside => quoted = !quoted,
            '[' if !inside => {
                inside = true;
                opened += 1;
            }
            ']' if inside && !quoted => inside = false,
            _ => {}
        }
    }
    opened
}

/// A repeated parameter becomes an array of its values, in order.
fn add_param(params: &mut Map<String, Value>, name: &str, value: String) {
    match params.get_mut(name) {
        None => {
            params.insert(name.to_string(), Value::String(value));
        }
        Some(Value::Array(values)) => values.push(Value::String(value)),
        Some(first) => {
            let first = first.take();
            params.insert(
                name.to_string(),
                Value::Array(vec![first, Value::String(value)]),
            );
        }
    }
}

/// A header field, `None` for the nil value `-`.
fn present(field: Option<&str>) -> Option<&str> {
    field.filter(|f| !f.is_empty() && *f != "-")
}

/// Host and program names are cut to the keyword limit rather than refused,
/// and cleared of the characters the API routes refuse in keywords
/// (controls, invisible and direction-changing ones, other spaces): a
/// sender cannot be answered, and `web-01` with a zero-width space after
/// it would look like `web-01` in every listing while escaping
/// `host:web-01`. The name as sent is kept beside it
/// (`syslog.<name>_as_sent`); one with nothing else is no name.
fn keyword(text: &str, name: &str, syslog: &mut Map<String, Value>) -> Option<String> {
    let cut = |t: &str| match t.char_indices().nth(MAX_KEYWORD_CHARS) {
        Some((end, _)) => t[..end].to_string(),
        None => t.to_string(),
    };
    if !text.chars().any(crate::event::input::unfit_in_keyword) {
        return Some(cut(text));
    }
    syslog.insert(format!("{name}_as_sent"), cut(text).into());
    let cleaned: String = text
        .chars()
        .filter(|c| !crate::event::input::unfit_in_keyword(*c))
        .collect();
    // What is left may be the nil value (`-` with a zero-width space).
    present(Some(cleaned.trim_matches(' '))).map(cut)
}

/// The MSG part without RFC 5424's BOM and without line ends.
fn clean_message(msg: &str) -> String {
    msg.strip_prefix('\u{FEFF}')
        .unwrap_or(msg)
        .trim_end_matches(['\r', '\n', '\0'])
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;
    use serde_json::json;

    /// 2026-11-24T12:00:00Z.
    fn now() -> Millis {
        parse_rfc3339("2026-11-24T12:00:00Z").unwrap()
    }

    fn ok(line: &str) -> SyslogMessage {
        parse(line.as_bytes(), "evt_1".into(), now()).unwrap()
    }

    fn err(bytes: &[u8]) -> SyslogError {
        parse(bytes, "evt_1".into(), now()).unwrap_err()
    }

    fn time(text: &str) -> Millis {
        parse_rfc3339(text).unwrap()
    }

    #[test]
    fn a_key_is_its_prefix_and_at_least_sixteen_key_characters() {
        let key = "wdn_live_Q2v8mXr4Tn6bW1yZk3Hc9Lp5Df7Gs0Ja2Ue4Vi6Oq8Rt";
        // Words that only begin like a key are kept as written.
        for kept in [
            "wdn_live_region",
            "WDN_TEST_HARNESS",
            "wdn_live_rotation_bot",
            "/opt/wdn_live_agent/bin",
            "rotate wdn_live_ keys",
            "rotate wdn_live_\nkeys",
            "prefix wdn_live_ AuthenticationMiddlewareFactory",
            "prefix wdn_live_\n\nAuthenticationMiddlewareFactory",
            "wdn_live_abc-def-ghi-jkl-mno-pqr",
        ] {
            assert_eq!(without_credentials(kept), None, "{kept}");
        }
        // A line broken after the prefix still shows the secret.
        for broken in [
            format!("k {}\n{}", &key[..9], &key[9..]),
            format!("k {}\r\n  {}", &key[..9], &key[9..]),
        ] {
            assert_eq!(
                without_credentials(&broken).as_deref(),
                Some("k [REDACTED]"),
                "{broken}"
            );
        }
        // A key, or a copy cut short that still shows sixteen characters,
        // is taken out to its last key character.
        assert_eq!(
            without_credentials(&format!("k={key}-x")).as_deref(),
            Some("k=[REDACTED]-x")
        );
        assert_eq!(
            without_credentials(&format!("{}.", &key[..9 + 16])).as_deref(),
            Some("[REDACTED].")
        );
        assert_eq!(without_credentials(&key[..9 + 15]), None);
        // Keys written together are each taken out: no second secret left
        // behind the first (a cut-short first, an encoded second, too).
        let second = "wdn_test_8DvhbRWZiLAvtuly1JG83UQDi9FyC4merd50PiHg3HS";
        let encoded = second.replace('_', "%5F");
        for glued in [
            format!("{key}{second}"),
            format!("x{}{second}", &key[..9 + 21]),
            format!("{key}{encoded}"),
            format!("wdn_live_abc{second}"),
        ] {
            let scrubbed = without_credentials(&glued).unwrap();
            assert!(!scrubbed.contains("8Dvhb"), "{glued} -> {scrubbed}");
            assert!(!scrubbed.contains("Q2v8m"), "{glued} -> {scrubbed}");
        }
    }

    #[test]
    fn names_that_lose_a_key_keep_their_values_apart() {
        let a = "wdn_live_Q2v8mXr4Tn6bW1yZk3Hc9Lp5Df7Gs0Ja2Ue4Vi6Oq8Rt";
        let b = "WDN_TEST_Z9y8x7w6v5u4t3s2r1q0p9o8n7m6l5k4j3i2h1g0f9e8d";
        let mut value = serde_json::json!({
            "[REDACTED]": "as sent",
            a: 1,
            b: 2,
            "nested": {format!("x {a}"): "one", format!("x {b}"): "two"},
        });
        scrub_credentials_in(&mut value);
        let text = value.to_string();
        assert!(!text.contains("Q2v8") && !text.contains("Z9y8"), "{text}");
        let map = value.as_object().unwrap();
        assert_eq!(map["[REDACTED]"], "as sent");
        let mut moved: Vec<&Value> = vec![&map["[REDACTED] (2)"], &map["[REDACTED] (3)"]];
        moved.sort_by_key(|v| v.as_i64());
        assert_eq!(moved, [&serde_json::json!(1), &serde_json::json!(2)]);
        let nested = map["nested"].as_object().unwrap();
        assert_eq!(nested.len(), 2, "{nested:?}");
        // Syslog's structured data too.
        let m = ok(&format!(r#"<13>1 - h app - - [x@1 {a}="1" {b}="2"] m"#));
        let text = m.event.to_json();
        assert!(text.contains("[REDACTED] (2)"), "{text}");
    }

    #[test]
    fn hold_tokens_are_taken_out_and_words_like_them_kept() {
        let token = format!("hold_{}", "0123456789abcdef".repeat(4));
        let said = format!("waiting on {token}, then {token}.");
        assert_eq!(
            without_credentials(&said).as_deref(),
            Some("waiting on [REDACTED], then [REDACTED].")
        );
        // A copy cut to 32 digits still goes, as do tokens glued to a word
        // or to each other; shorter runs and other words stay.
        let cut = format!("hold_{}", "0123456789abcdef".repeat(2));
        assert_eq!(without_credentials(&cut).as_deref(), Some("[REDACTED]"));
        assert_eq!(
            without_credentials(&format!("{token}xyz{token}{token}")).as_deref(),
            Some("[REDACTED]xyz[REDACTED][REDACTED]")
        );
        for kept in [
            "hold_time=5".to_string(),
            "hold_0123456789abcdef".to_string(),
            "HOLD_0123456789abcdef0123456789abcdef".to_string(),
        ] {
            assert_eq!(without_credentials(&kept), None, "{kept}");
        }
        let mut args = serde_json::json!({"note": {"pending": token.clone()}, token.clone(): 1});
        scrub_credentials_in(&mut args);
        assert_eq!(
            args,
            serde_json::json!({"note": {"pending": "[REDACTED]"}, "[REDACTED]": 1})
        );
    }

    #[test]
    fn warden_tokens_are_taken_out_wherever_they_are() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(r#"{"typ":"JWT","alg":"EdDSA"}"#),
            b64(r#"{"iss":"warden","sub":"key_1","org":"org_2"}"#)
        );
        // One that does not route its message is taken out of it and
        // handed to the listener, which checks whose it is.
        for line in [
            format!(r#"<13>1 - h app - - [warden@32474 token="{token}"] typo"#),
            format!("<13>1 - h app - - - bearer {token} in text"),
            format!("<13>Nov 24 10:00:00 host1 app: Authorization: Bearer {token}"),
        ] {
            let m = ok(&line);
            assert_eq!(m.unrouted_credentials, vec![token.clone()], "{line}");
            let json = serde_json::to_string(&m.event).unwrap();
            assert!(!json.contains(&token[40..]), "{line}: {json}");
            assert!(!format!("{m:?}").contains(&token[40..]));
        }
        // A routed message keeps none in its text or other elements.
        for line in [
            format!(
                r#"<13>1 - h app - - [warden@32473 token="wdn_live_R1xxxxxxxxxxxxxxxxxx"][x@1 t="{token}"] m"#
            ),
            format!(
                r#"<13>1 - h app - - [warden@32473 token="wdn_live_R1xxxxxxxxxxxxxxxxxx"] bearer {token} x"#
            ),
        ] {
            let m = ok(&line);
            assert_eq!(m.token.as_deref(), Some("wdn_live_R1xxxxxxxxxxxxxxxxxx"));
            let json = serde_json::to_string(&m.event).unwrap();
            assert!(!json.contains(&token[40..]), "{line}: {json}");
            assert!(json.contains("[REDACTED]"), "{line}: {json}");
        }
        // A message made of token beginnings is read once through, and
        // kept: it holds no token.
        let run = format!("<13>1 - h app - - - {}", "eyJ".repeat(20_000));
        assert_eq!(ok(&run).event.message.len(), 60_000);
        let dotted = format!("<13>1 - h app - - - {}", "eyJ.".repeat(15_000));
        assert!(ok(&dotted).event.message.starts_with("eyJ.eyJ."));
        // Another issuer's token is another system's business.
        let other = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"iss":"https://idp.example"}"#)
        );
        let m = ok(&format!("<13>1 - h app - - - bearer {other}"));
        assert!(m.event.message.contains(&other));
    }

    #[test]
    fn structured_data_the_parser_cannot_read_is_kept() {
        for (line, kept) in [
            (
                r#"<13>1 2026-12-04T12:00:00Z h6 app - - [ex@1 a='b' c="d"] single quoted"#,
                r#"[ex@1 a='b' c="d"]"#,
            ),
            (
                r#"<13>1 2026-12-04T12:00:00Z h6 app - - [ex@1 a=bare] unquoted"#,
                "[ex@1 a=bare]",
            ),
        ] {
            let m = ok(line);
            let json = serde_json::to_string(&m.event.fields).unwrap();
            assert_eq!(
                m.event.fields["syslog"]["sd_unparsed"], kept,
                "{line}: {json}"
            );
        }
        // An unreadable element beside readable ones (the routing
        // element, say) is kept too: the parser drops it alone.
        for (line, bad) in [
            (
                r#"<13>1 2026-12-04T12:00:00Z h app - - [x@1 a="ok"][y@1 b='bad'] second bad"#,
                "[y@1 b='bad']",
            ),
            (
                r#"<13>1 2026-12-04T12:00:00Z h app - - [x@1 a="ok" b='bad'] mixed"#,
                "b='bad'",
            ),
        ] {
            let m = ok(line);
            let kept = m.event.fields["syslog"]["sd_unparsed"]
                .as_str()
                .unwrap_or_default();
            assert!(kept.contains(bad), "{line}: {kept}");
        }
        // Beside the routing element: routed, kept, and the key not kept.
        let m = ok(
            r#"<13>1 2026-12-04T12:00:00Z h app - - [warden@32473 token="wdn_live_Key9xxxxxxxxxxxxxxxx"][x@1 a='hello'] routed"#,
        );
        assert_eq!(m.token.as_deref(), Some("wdn_live_Key9xxxxxxxxxxxxxxxx"));
        let kept = m.event.fields["syslog"]["sd_unparsed"].as_str().unwrap();
        assert!(
            kept.contains("[x@1 a='hello']") && !kept.contains("Key9"),
            "{kept}"
        );
        let m =
            ok(r#"<13>1 2026-12-04T12:00:00Z h app - - [x@1 a="a \"quoted\" ]"][y@1 b="c"] fine"#);
        assert!(
            m.event.fields["syslog"].get("sd_unparsed").is_none(),
            "{:?}",
            m.event.fields
        );
        // An element whose name no field may carry is kept as text.
        let long = "a".repeat(300);
        let m = ok(&format!(
            r#"<13>1 2026-12-04T12:00:00Z h app - - [{long} k="v"] long id"#
        ));
        let kept = m.event.fields["syslog"]["sd_unparsed"].as_str().unwrap();
        assert!(kept.contains(&long) && kept.contains("\"v\""), "{kept}");
        assert_eq!(m.event.message, "long id");
        // Read elements leave nothing unparsed.
        let m = ok(r#"<13>1 2026-12-04T12:00:00Z h app - - [ex@1 c="d"] fine"#);
        assert!(m.event.fields["syslog"].get("sd_unparsed").is_none());
        assert_eq!(m.event.fields["sd"]["ex@1"]["c"], "d");
    }

    #[test]
    fn rfc3164_reads_a_tag_without_a_host_as_the_program() {
        let m = ok("<13>Dec  4 11:40:02 noprog: no host cid u3");
        assert_eq!(m.event.host, None);
        assert_eq!(m.event.program.as_deref(), Some("noprog"));
        assert_eq!(m.event.message, "no host cid u3");
        // With a host, or a pid, as before.
        let m = ok("<13>Dec  4 11:40:02 web-1 app: text");
        assert_eq!(
            (m.event.host.as_deref(), m.event.program.as_deref()),
            (Some("web-1"), Some("app"))
        );
        // A tag glued to its text.
        let m = ok("<13>Dec  4 11:40:02 cron:sl10 nospace");
        assert_eq!(
            (m.event.host.as_deref(), m.event.program.as_deref()),
            (None, Some("cron"))
        );
        assert_eq!(m.event.message, "sl10 nospace");
        // An IPv6 host stays a host.
        let m = ok("<13>Dec  4 11:40:02 fe80::1 app: text");
        assert_eq!(m.event.host.as_deref(), Some("fe80::1"));
        let m = ok("<38>Dec  4 11:43:00 sshd[123]: accepted");
        assert_eq!(
            (m.event.host.as_deref(), m.event.program.as_deref()),
            (None, Some("sshd"))
        );
    }

    #[test]
    fn host_and_program_are_cleared_of_what_keywords_refuse() {
        for (line, host, program, host_sent, program_sent) in [
            (
                "<14>Dec  6 10:08:00 web-01\u{200b} sshd[1]: E01",
                Some("web-01"),
                Some("sshd"),
                Some("web-01\u{200b}"),
                None,
            ),
            (
                "<14>1 2026-12-06T10:08:01Z web-01\u{202e} ssh\u{200b}d 1 - - E02",
                Some("web-01"),
                Some("sshd"),
                Some("web-01\u{202e}"),
                Some("ssh\u{200b}d"),
            ),
            (
                "<14>Dec  6 10:08:02 web-01\u{1b} sshd: E03",
                Some("web-01"),
                Some("sshd"),
                Some("web-01\u{1b}"),
                None,
            ),
            (
                "<14>1 2026-12-06T10:08:01Z \u{200b} app 1 - - E04",
                None,
                Some("app"),
                Some("\u{200b}"),
                None,
            ),
            (
                "<14>Dec  6 10:08:02 web-01 sshd: E05",
                Some("web-01"),
                Some("sshd"),
                None,
                None,
            ),
            (
                "<14>1 2026-12-06T10:08:01Z -\u{200b} app 1 - - E06",
                None,
                Some("app"),
                Some("-\u{200b}"),
                None,
            ),
        ] {
            let m = ok(line);
            assert_eq!(m.event.host.as_deref(), host, "{line}");
            assert_eq!(m.event.program.as_deref(), program, "{line}");
            let syslog = &m.event.fields["syslog"];
            assert_eq!(
                syslog.get("host_as_sent").and_then(|v| v.as_str()),
                host_sent,
                "{line}"
            );
            assert_eq!(
                syslog.get("program_as_sent").and_then(|v| v.as_str()),
                program_sent,
                "{line}"
            );
            for keyword in [&m.event.host, &m.event.program].into_iter().flatten() {
                crate::event::input::check_keyword("host", keyword).unwrap();
            }
        }
    }

    #[test]
    fn rfc3164_keeps_bracketed_text_in_its_message() {
        let m = ok(r#"<14>Dec  4 10:00:00 host myapp: [req id="abc"] zk5 handled"#);
        assert_eq!(m.event.message, r#"[req id="abc"] zk5 handled"#);
        assert_eq!(m.event.program.as_deref(), Some("myapp"));
        assert!(m.event.fields.get("sd").is_none(), "{:?}", m.event.fields);
        let m = ok(r#"<14>Dec  4 10:00:00 host myapp: [a b="c"][d e="f"] tail"#);
        assert_eq!(m.event.message, r#"[a b="c"][d e="f"] tail"#);
        // With no tag, bracketed text is neither a process id, a tag nor
        // a host.
        for (line, host, text) in [
            (
                "<13>Dec  4 10:00:04 host1 [ERROR] disk full",
                Some("host1"),
                "[ERROR] disk full",
            ),
            (
                "<13>Dec  4 10:00:04 host1 [12345] v3x",
                Some("host1"),
                "[12345] v3x",
            ),
            (
                r#"<13>Dec  4 10:00:04 host1 [foo bar="1"] no tag"#,
                Some("host1"),
                r#"[foo bar="1"] no tag"#,
            ),
            (
                "<13>Dec  4 10:00:04 [ERROR] no host",
                None,
                "[ERROR] no host",
            ),
        ] {
            let m = ok(line);
            assert_eq!(m.event.host.as_deref(), host, "{line}");
            assert_eq!(m.event.program, None, "{line}");
            assert_eq!(m.event.message, text, "{line}");
            assert!(m.event.fields.get("pid").is_none(), "{line}");
        }
        // A tag stays a tag.
        let m = ok("<13>Dec  4 10:00:04 host1 app[12]: [ERROR] x");
        assert_eq!(m.event.program.as_deref(), Some("app"));
        assert_eq!(m.event.message, "[ERROR] x");
    }

    #[test]
    fn logger_rfc5424_maps_header_and_structured_data() {
        let m = ok(
            r#"<13>1 2026-11-24T10:00:00.123456+00:00 host1 myapp 1234 - [timeQuality tzKnown="1" isSynced="0"] hello world"#,
        );
        let e = &m.event;
        assert_eq!(m.token, None);
        assert_eq!(e.id, "evt_1");
        assert_eq!(e.source, EventSource::Syslog);
        assert_eq!(e.timestamp, time("2026-11-24T10:00:00.123Z"));
        assert_eq!(e.received_at, now());
        assert_eq!(e.host.as_deref(), Some("host1"));
        assert_eq!(e.program.as_deref(), Some("myapp"));
        assert_eq!(e.severity, Severity::Low);
        assert_eq!(e.message, "hello world");
        assert_eq!(
            Value::Object(e.fields.clone()),
            json!({
                "pid": "1234",
                "syslog": {"severity": "notice", "facility": "user"},
                "sd": {"timeQuality": {"tzKnown": "1", "isSynced": "0"}}
            })
        );
    }

    #[test]
    fn the_warden_token_is_returned_and_kept_out_of_the_event() {
        let m = ok(
            r#"<13>1 2026-11-24T10:00:00.123456+00:00 host1 myapp 1234 - [timeQuality tzKnown="1" isSynced="0"][warden@32473 token="wdn_abc"] hello world"#,
        );
        assert_eq!(m.token.as_deref(), Some("wdn_abc"));
        assert_eq!(m.event.message, "hello world");
        assert_eq!(
            m.event.fields["sd"],
            json!({"timeQuality": {"tzKnown": "1", "isSynced": "0"}})
        );
        let stored = m.event.to_json();
        assert!(!stored.contains("wdn_abc") && !stored.contains("warden@"));
        assert!(!format!("{m:?}").contains("wdn_abc"));

        // Alone, first, with other parameters, or repeated with one value.
        let m = ok(
            r#"<14>1 2026-11-24T10:00:00Z h app - - [warden@32473 token="wdn_x" note="n"][a b="c"] hi"#,
        );
        assert_eq!(m.token.as_deref(), Some("wdn_x"));
        assert_eq!(m.event.fields["sd"], json!({"a": {"b": "c"}}));
        assert!(!m.event.to_json().contains("note"));
        let m = ok(r#"<14>1 - h app - - [warden@32473 token="wdn_x" token="wdn_x"] hi"#);
        assert_eq!(m.token.as_deref(), Some("wdn_x"));
        assert!(!m.event.fields.contains_key("sd"));
        // Escapes in the value are undone.
        let m = ok(r#"<14>1 - h app - - [warden@32473 token="wdn_a\"b\]c"] hi"#);
        assert_eq!(m.token.as_deref(), Some(r#"wdn_a"b]c"#));
    }

    #[test]
    fn a_malformed_or_ambiguous_token_element_is_refused() {
        assert_eq!(
            err(br#"<14>1 - h app - - [warden@32473 token="a"][warden@32473 token="b"] hi"#),
            SyslogError::ConflictingTokens
        );
        // Not recognized as structured data (misquoted, in RFC 3164, out
        // of place), an element or a key that routes nothing keeps the
        // message with every credential and token value taken out; the
        // keys are handed to the listener, which drops the message only
        // for a key valid in another organization.
        for line in [
            r#"<13>Nov 24 10:00:00 host1 root: hi [warden@32473 token=wdn_abc]"#,
            r#"<13>1 2026-11-24T10:00:00Z host1 app - - [a b="c"] [warden@32473 token="wdn_abc"] hi"#,
            r#"<13>1 yesterday host1 app - - [warden@32473 token="wdn_abc"] hi"#,
            r#"<13>Nov 24 10:00:00 [warden@32473 token="wdn_abc"] hi"#,
            r#"[warden@32473 token="wdn_abc"] hi"#,
            r#"<13>1 - h app - - - hi [WARDEN@32473 token="wdn_x"] and wdn_live_Secret1xxxxxxxxxxxxx"#,
            // A key-shaped word is never kept, even where nothing names
            // the element: in another element, or in the text.
            r#"<13>1 - h app - - [warden@32474 token="wdn_test_Typo1xxxxxxxxxxxxxxx"] hi"#,
            r#"<13>1 - h app - - [ex@1 token="wdn_live_Other2xxxxxxxxxxxxxx"] hi"#,
            "<13>Nov 24 10:00:00 host1 app: key is wdn_live_InText3xxxxxxxxxxxxx ok",
            // As an element id, or a parameter's name.
            r#"<14>1 - h app 1 - [wdn_live_SdId4xxxxxxxxxxxxxxx k="v"][w@1 wdn_live_Name5xxxxxxxxxxxxxxx="v"] m"#,
            r#"<13>1 - h app - - [warden@32473 token=wdn_live_Unquoted6xxxxxxxxxxx] m"#,
            r#"<13>1 - h app - - [warden@32473 token='wdn_live_Single7xxxxxxxxxxxxx'] m"#,
            r#"<13>Nov 24 10:00:00 h1 app: [warden@32473 token="wdn_live_Rfc3164xxxxxxxxxxxxx"] m"#,
        ] {
            let m = ok(line);
            assert!(m.token.is_none(), "{line}");
            let key_shaped = line.contains("wdn_live_") || line.contains("wdn_test_");
            assert_eq!(!m.unrouted_credentials.is_empty(), key_shaped, "{line}");
            assert!(
                m.unrouted_credentials.iter().all(|c| c.starts_with("wdn_")),
                "{line}"
            );
            let json = m.event.to_json();
            assert!(!json.contains("wdn_"), "{line}: {json}");
            assert!(json.contains("[REDACTED]"), "{line}: {json}");
        }
        // Text an attacker chose keeps the message, the key-shaped word
        // taken out: `Invalid user wdn_live_xxxxxxxxxxxxxxxxxxxx` is not a way to go unseen.
        let m =
            ok("<38>Nov 24 10:00:00 host1 sshd[1]: Invalid user wdn_live_abcxxxxxxxxxxxxxxxxx from 198.51.100.7");
        assert_eq!(m.event.message, "Invalid user [REDACTED] from 198.51.100.7");
        assert_eq!(
            m.unrouted_credentials,
            vec!["wdn_live_abcxxxxxxxxxxxxxxxxx".to_string()]
        );
        let m = ok("<13>1 - h app - - - mywdn_test_filexxxxxxxxxxxxxxxx.txt");
        assert_eq!(
            m.unrouted_credentials,
            vec!["wdn_test_filexxxxxxxxxxxxxxxx".to_string()]
        );
        // Upper-cased or URL-encoded, a key is still one: taken out, and
        // checked as the key it stands for.
        let m = ok("<13>1 - h app - - - user=WDN_LIVE_Body1xxxxxxxxxxxxxxx q=wdn%5flive%5FBody2xxxxxxxxxxxxxxx&x=1");
        assert_eq!(m.event.message, "user=[REDACTED] q=[REDACTED]&x=1");
        assert_eq!(
            m.unrouted_credentials,
            vec![
                "wdn_live_Body1xxxxxxxxxxxxxxx".to_string(),
                "wdn_live_Body2xxxxxxxxxxxxxxx".to_string()
            ]
        );
        let m = ok(r#"<13>1 - h app - - - warden@32473 token=\"s3cret\" next"#);
        assert_eq!(m.event.message, "warden@32473 token=[REDACTED] next");
        // An element with no credential in it keeps its message, its
        // token's value taken out.
        let m = ok(r#"<13>1 - h app - - [WARDEN@32473 token=unquoted] m"#);
        assert!(m.unrouted_credentials.is_empty());
        assert!(
            !m.event.to_json().contains("unquoted"),
            "{}",
            m.event.to_json()
        );
        // A routed message keeps no other key, wherever it is.
        for line in [
            r#"<13>1 - h app - - [warden@32473 token="wdn_live_R1xxxxxxxxxxxxxxxxxx"] hi wdn_live_Secret1xxxxxxxxxxxxx"#,
            r#"<13>1 - h app - - [warden@32473 token="wdn_live_R1xxxxxxxxxxxxxxxxxx"][ex@1 token="wdn_test_Other2xxxxxxxxxxxxxx"] hi"#,
            r#"<14>1 - h app 1 - [warden@32473 token="wdn_live_R1xxxxxxxxxxxxxxxxxx"][w@1 wdn_live_Name5xxxxxxxxxxxxxxx="v"] m"#,
        ] {
            let m = ok(line);
            assert_eq!(m.token.as_deref(), Some("wdn_live_R1xxxxxxxxxxxxxxxxxx"));
            let json = m.event.to_json();
            assert!(!json.contains("wdn_"), "{line}: {json}");
            assert!(json.contains("[REDACTED]"), "{line}: {json}");
        }
        // A token assignment in any spelling loses its value.
        for line in [
            "<13>1 - h app - - - warden@32473 Token = SECRET1 next",
            "<13>1 - h app - - - warden@32473 token:SECRET1 next",
            "<13>1 - h app - - - warden@32473 TOKEN: 'SECRET1 x' next",
            "<13>1 - h app - - - warden@32473 token=SECRET1,next",
            r#"<13>1 - h app - - - warden@32473 {"token": "SECRET1", "next": 1}"#,
            "<13>1 - h app - - - warden@32473 {'token':'SECRET1'} next",
            "<13>1 - h app - - - warden@32473 GET /x?a=1&token=SECRET1&next=2",
            r#"<13>1 - h app - - - warden@32473 {"token": "ab\"cdSECRET1TAIL", "next": 1}"#,
            r#"<13>1 - h app - - - warden@32473 :token => "SECRET1" next"#,
        ] {
            let json = ok(line).event.to_json();
            assert!(!json.contains("SECRET1"), "{line}: {json}");
            assert!(json.contains("next"), "{line}: {json}");
        }
        // A query string keeps what follows the token.
        let m = ok("<13>1 - h app - - - warden@32473 a=1&token=SECRET1&b=2");
        assert_eq!(m.event.message, "warden@32473 a=1&token=[REDACTED]&b=2");
        // Text that only names tokens keeps its words.
        let json = ok("<13>1 - h app - - - warden@32473 tokens expire; token")
            .event
            .to_json();
        assert!(json.contains("tokens expire; token"), "{json}");
        let m = ok(
            "<38>Nov 24 10:00:00 host1 sshd[1]: Invalid user warden@32473 from 10.0.0.9 port 4242",
        );
        assert_eq!(
            m.event.message,
            "Invalid user warden@32473 from 10.0.0.9 port 4242"
        );
        // The id in another case is still the token element, and the
        // parameter in another case still its token.
        let m = ok(r#"<14>1 - h app - - [Warden@32473 token="wdn_x"] hi"#);
        assert_eq!(m.token.as_deref(), Some("wdn_x"));
        let m = ok(r#"<14>1 - h app - - [warden@32473 TOKEN="wdn_y"] hi"#);
        assert_eq!(m.token.as_deref(), Some("wdn_y"));
        // The element without a token routes nowhere.
        assert!(matches!(
            err(br#"<14>1 - h app - - [warden@32473 key="wdn_z"] hi"#),
            SyslogError::MissingToken
        ));
        assert!(!m.event.fields.contains_key("sd"));
        // A broken element that syslog_loose drops keeps the message, its
        // token's value taken out.
        let m = ok(r#"<13>1 - host1 app - - [warden@32473 token=abc] hi"#);
        assert!(m.token.is_none() && m.unrouted_credentials.is_empty());
        assert!(!m.event.to_json().contains("abc"), "{}", m.event.to_json());
    }

    #[test]
    fn logger_rfc3164_with_a_pid() {
        let m = ok("<38>Nov 24 10:00:00 host1 sshd[4242]: Failed password for root from 10.0.0.5 port 22 ssh2");
        let e = &m.event;
        assert_eq!(e.timestamp, time("2026-11-24T10:00:00Z"));
        assert_eq!(e.host.as_deref(), Some("host1"));
        assert_eq!(e.program.as_deref(), Some("sshd"));
        assert_eq!(e.severity, Severity::Info);
        assert_eq!(
            e.message,
            "Failed password for root from 10.0.0.5 port 22 ssh2"
        );
        assert_eq!(
            Value::Object(e.fields.clone()),
            json!({"pid": "4242", "syslog": {"severity": "info", "facility": "auth"}})
        );
    }

    #[test]
    fn logger_rfc3164_without_a_pid() {
        let m = ok("<13>Nov 24 10:00:00 host1 root: hello\n");
        let e = &m.event;
        assert_eq!(e.host.as_deref(), Some("host1"));
        assert_eq!(e.program.as_deref(), Some("root"));
        assert_eq!(e.message, "hello");
        assert_eq!(e.severity, Severity::Low);
        assert!(!e.fields.contains_key("pid"));
        assert_eq!(e.fields["syslog"]["facility"], json!("user"));
    }

    #[test]
    fn auth_err_is_high() {
        let m = ok("<35>Nov 24 10:00:00 host1 su: FAILED SU (to root) alice on pts/0");
        assert_eq!(m.event.severity, Severity::High);
        assert_eq!(
            m.event.fields["syslog"],
            json!({"severity": "err", "facility": "auth"})
        );
    }

    #[test]
    fn every_priority_maps_to_keywords() {
        let cases = [
            (0, "kern", "emerg", Severity::Critical),
            (10, "user", "crit", Severity::Critical),
            (84, "authpriv", "warning", Severity::Medium),
            (105, "security", "alert", Severity::Critical),
            (112, "console", "emerg", Severity::Critical),
            (127, "solaris-cron", "debug", Severity::Info),
            (134, "local0", "info", Severity::Info),
            (191, "local7", "debug", Severity::Info),
        ];
        for (pri, facility, level, severity) in cases {
            let m = ok(&format!("<{pri}>Nov 24 10:00:00 host1 app: x"));
            assert_eq!(m.event.severity, severity, "{pri}");
            assert_eq!(
                m.event.fields["syslog"],
                json!({"severity": level, "facility": facility}),
                "{pri}"
            );
        }
    }

    #[test]
    fn rfc5424_nil_values_and_msgid() {
        let m =
            ok("<165>1 2003-10-11T22:14:15.003Z - - - ID47 - \u{FEFF}An application event\r\n\0");
        let e = &m.event;
        assert_eq!(e.timestamp, time("2003-10-11T22:14:15.003Z"));
        assert_eq!(e.host, None);
        assert_eq!(e.program, None);
        assert_eq!(e.message, "An application event");
        assert_eq!(
            Value::Object(e.fields.clone()),
            json!({"syslog": {"severity": "notice", "facility": "local4", "msgid": "ID47"}})
        );
        // A nil timestamp is the arrival time; an offset is honored.
        let m = ok("<165>1 - host app - - - x");
        assert_eq!(m.event.timestamp, now());
        let m = ok("<165>1 2026-11-24T10:00:00+02:00 host app - - - x");
        assert_eq!(m.event.timestamp, time("2026-11-24T08:00:00Z"));
    }

    #[test]
    fn repeated_parameters_become_arrays() {
        let m = ok(
            r#"<14>1 - h app - - [origin ip="10.0.0.1" ip="10.0.0.2" ip="10.0.0.3" software="x"][meta] hi"#,
        );
        assert_eq!(
            m.event.fields["sd"],
            json!({
                "origin": {"ip": ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "software": "x"},
                "meta": {}
            })
        );
    }

    #[test]
    fn rfc3164_years_come_from_the_arrival_time() {
        let at = |line: &str, received: &str| {
            parse(line.as_bytes(), "e".into(), time(received))
                .unwrap()
                .event
                .timestamp
        };
        // December read in January is last year's.
        assert_eq!(
            at("<13>Dec 31 23:59:00 h app: x", "2027-01-01T00:10:00Z"),
            time("2026-12-31T23:59:00Z")
        );
        // A clock a few hours ahead stays this year.
        assert_eq!(
            at("<13>Nov 24 20:00:00 h app: x", "2026-11-24T12:00:00Z"),
            time("2026-11-24T20:00:00Z")
        );
        // More than a day ahead is last year's.
        assert_eq!(
            at("<13>Nov 26 10:00:00 h app: x", "2026-11-24T12:00:00Z"),
            time("2025-11-26T10:00:00Z")
        );
        assert_eq!(
            at("<13>Jan  5 15:33:03 h app: x", "2027-01-06T00:00:00Z"),
            time("2027-01-05T15:33:03Z")
        );
        // 29 February outside a leap year: the last one that had it.
        assert_eq!(
            at("<13>Feb 29 00:00:00 h app: x", "2026-11-24T12:00:00Z"),
            time("2024-02-29T00:00:00Z")
        );
        assert_eq!(
            at("<13>Feb 29 08:00:00 h app: x", "2028-02-29T09:00:00Z"),
            time("2028-02-29T08:00:00Z")
        );
        // More than a day ahead of 28 February 2028: the leap year before.
        assert_eq!(
            at("<13>Feb 29 08:00:00 h app: x", "2028-02-27T00:00:00Z"),
            time("2024-02-29T08:00:00Z")
        );
    }

    #[test]
    fn rfc3164_times_with_a_fraction_keep_their_header() {
        // Cisco IOS with `service timestamps log datetime msec`.
        let m = ok("<189>Nov 24 11:01:02.456 rtr1 %SYS-5-CONFIG_I: Configured from console");
        assert_eq!(m.event.timestamp, time("2026-11-24T11:01:02.456Z"));
        assert_eq!(m.event.host.as_deref(), Some("rtr1"));
        assert_eq!(m.event.program.as_deref(), Some("%SYS-5-CONFIG_I"));
        assert_eq!(m.event.message, "Configured from console");
        // Microseconds are cut to milliseconds; one digit is tenths.
        let m = ok("<13>Nov  4 10:00:00.123456 h3 app[7]: text");
        assert_eq!(m.event.timestamp, time("2026-11-04T10:00:00.123Z"));
        assert_eq!(
            (m.event.host.as_deref(), m.event.program.as_deref()),
            (Some("h3"), Some("app"))
        );
        assert_eq!(m.event.fields["pid"], "7");
        assert_eq!(
            ok("<13>Nov 4 10:00:00.5 h3 app: text").event.timestamp,
            time("2026-11-04T10:00:00.500Z")
        );
        // Not a fraction of the time: the text is left as it came.
        let m = ok("<13>Nov  4 10:00:00 h3 app: 1.5 s");
        assert_eq!(m.event.timestamp, time("2026-11-04T10:00:00Z"));
        assert_eq!(m.event.message, "1.5 s");
        let m = ok("<13>Nov  4 10:00:00.x h3 app: text");
        assert_eq!(m.event.host, None);
        // Cisco's colon after the time, with a fraction as without one;
        // a decimal comma.
        for line in [
            "<189>Nov 24 11:01:02.456: %SYS-5-CONFIG_I: Configured",
            "<189>Nov 24 11:01:02,456: %SYS-5-CONFIG_I: Configured",
        ] {
            let m = ok(line);
            assert_eq!(
                m.event.timestamp,
                time("2026-11-24T11:01:02.456Z"),
                "{line}"
            );
            assert_eq!(
                m.event.program.as_deref(),
                Some("%SYS-5-CONFIG_I"),
                "{line}"
            );
            assert_eq!(m.event.message, "Configured", "{line}");
        }
        let m = ok("<189>Nov 24 11:01:02: %SYS-5-CONFIG_I: Configured");
        assert_eq!(m.event.program.as_deref(), Some("%SYS-5-CONFIG_I"));
        // A leap second, with a fraction or not, is the last millisecond
        // of the second before it; the header is read as usual.
        for line in [
            "<13>Jun 30 23:59:60.5 host1 app: leap",
            "<13>Jun 30 23:59:60 host1 app: leap",
        ] {
            let m = ok(line);
            assert_eq!(
                m.event.timestamp,
                time("2026-06-30T23:59:59.999Z"),
                "{line}"
            );
            assert_eq!(m.event.host.as_deref(), Some("host1"), "{line}");
            assert_eq!(m.event.program.as_deref(), Some("app"), "{line}");
            assert_eq!(m.event.message, "leap", "{line}");
        }
        // A year after the time, a zone letter: the header is read.
        for (line, at) in [
            (
                "<13>Dec  5 23:01:02 2019 host32 app: c32",
                "2019-12-05T23:01:02Z",
            ),
            (
                "<13>Dec  5 2019 23:01:02 host32 app: c32",
                "2019-12-05T23:01:02Z",
            ),
            (
                "<13>Dec  5 23:01:02Z host32 app: c32",
                "2025-12-05T23:01:02Z",
            ),
            (
                "<13>Dec  5 23:01:02.123Z host32 app: c32",
                "2025-12-05T23:01:02.123Z",
            ),
            (
                "<13>Dec  5 23:01:02.123Z 2024 host32 app: c32",
                "2024-12-05T23:01:02.123Z",
            ),
            (
                "<13>Dec  5 2019 23:01:02Z host32 app: c32",
                "2019-12-05T23:01:02Z",
            ),
            (
                "<13>Dec  5 2019 23:01:02.5z host32 app: c32",
                "2019-12-05T23:01:02.500Z",
            ),
        ] {
            let m = ok(line);
            assert_eq!(m.event.timestamp, time(at), "{line}");
            assert_eq!(m.event.host.as_deref(), Some("host32"), "{line}");
            assert_eq!(m.event.program.as_deref(), Some("app"), "{line}");
            assert_eq!(m.event.message, "c32", "{line}");
        }
        // A date that does not exist keeps its header as it was sent.
        let m = ok("<13>Feb 29 10:00:00.5 2019 host1 app: badleap");
        assert_eq!(m.event.message, "Feb 29 10:00:00.5 2019 host1 app: badleap");
        // Cisco's `show-timezone` in UTC, with milliseconds or without.
        for line in [
            "<189>Nov 24 11:01:02.456 UTC: %SYS-5-CONFIG_I: Configured",
            "<189>Nov 24 11:01:02 GMT: %SYS-5-CONFIG_I: Configured",
        ] {
            let m = ok(line);
            assert_eq!(
                m.event.program.as_deref(),
                Some("%SYS-5-CONFIG_I"),
                "{line}"
            );
            assert_eq!(m.event.message, "Configured", "{line}");
        }
        assert_eq!(
            ok("<189>Nov 24 11:01:02.456 UTC: %SYS-5-CONFIG_I: x")
                .event
                .timestamp,
            time("2026-11-24T11:01:02.456Z")
        );
        // Cisco's colon after a zone letter.
        let m = ok("<189>Nov 24 11:01:02Z: %SYS-5-CONFIG_I: Configured");
        assert_eq!(m.event.program.as_deref(), Some("%SYS-5-CONFIG_I"));
        assert_eq!(m.event.message, "Configured");
        // A number after the time that is no year stays the host.
        let m = ok("<13>Dec  5 23:01:02 1234 app: c32");
        assert_eq!(m.event.host.as_deref(), Some("1234"));
    }

    #[test]
    fn a_time_outside_the_event_range_is_kept_beside_the_arrival_time() {
        let m = ok("<14>1 1969-12-31T23:59:59Z h app - - - before 1970");
        assert_eq!(m.event.timestamp, now());
        assert_eq!(
            m.event.fields["syslog"]["timestamp_out_of_range"],
            "1969-12-31T23:59:59+00:00"
        );
        // An RFC 3164 year before the time is read from 1970 to 2999 only,
        // as after it: a later one keeps the arrival time.
        for year in ["3000", "9999"] {
            let m = ok(&format!("<14>Dec  5 {year} 23:01:02 host1 app: far"));
            assert_eq!(m.event.timestamp, now(), "{year}");
            assert_eq!(
                m.event.fields["syslog"]["timestamp_out_of_range"],
                format!("{year}-12-05T23:01:02+00:00")
            );
        }
        let m = ok("<14>Dec  5 2999 23:01:02 host1 app: far");
        assert_ne!(m.event.timestamp, now());
    }

    #[test]
    fn a_bare_line_is_user_notice() {
        let m = ok("  kernel: link eth0 is down\r\n");
        let e = &m.event;
        assert_eq!(e.message, "kernel: link eth0 is down");
        assert_eq!(e.severity, Severity::Low);
        assert_eq!(e.timestamp, now());
        assert_eq!(e.host, None);
        assert_eq!(e.program, None);
        assert_eq!(
            Value::Object(e.fields.clone()),
            json!({"syslog": {"severity": "notice", "facility": "user"}})
        );
        // Even when it looks like a header, the whole line is the text.
        let m = ok("Nov 24 10:00:00 host1 sshd[1]: x");
        assert_eq!(m.event.message, "Nov 24 10:00:00 host1 sshd[1]: x");
    }

    #[test]
    fn text_after_a_priority_without_a_header_is_the_message() {
        let m = ok("<3>disk failure on /dev/sda");
        assert_eq!(m.event.message, "disk failure on /dev/sda");
        assert_eq!(m.event.severity, Severity::High);
        assert_eq!(m.event.timestamp, now());
        assert_eq!(m.event.fields["syslog"]["facility"], json!("kern"));
    }

    #[test]
    fn long_host_names_are_cut_to_the_keyword_limit() {
        let host = "h".repeat(MAX_KEYWORD_CHARS + 10);
        let m = ok(&format!("<13>1 - {host} app - - - x"));
        assert_eq!(m.event.host.unwrap().len(), MAX_KEYWORD_CHARS);
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(err(b""), SyslogError::Empty);
        assert_eq!(err(b" \r\n\0"), SyslogError::Empty);
        assert_eq!(err(b"<13>"), SyslogError::Empty);
        assert_eq!(err(b"<13>  \n"), SyslogError::Empty);
        assert_eq!(
            err(b"<13>Nov 24 10:00:00 h app: caf\xe9"),
            SyslogError::NotUtf8 { offset: 30 }
        );
        assert_eq!(err(b"<13>hello\0world"), SyslogError::NulByte { offset: 9 });
        assert_eq!(err(b"\0<13>hello"), SyslogError::NulByte { offset: 0 });
        for bad in [
            "<abc>x", "<>x", "<13", "<1000>x", "<-1>x", "<13 >x", "< 13>x", "<html>",
        ] {
            assert_eq!(err(bad.as_bytes()), SyslogError::MalformedPriority, "{bad}");
        }
        assert_eq!(
            err(b"<999>x"),
            SyslogError::PriorityOutOfRange { value: 999 }
        );
        assert_eq!(
            err(b"<192>x"),
            SyslogError::PriorityOutOfRange { value: 192 }
        );
        assert!(parse(b"<191>x", "e".into(), 0).is_ok());
        assert!(parse(b"<0>x", "e".into(), 0).is_ok());

        let mut long = b"<13>".to_vec();
        long.resize(MAX_SYSLOG_BYTES + 1, b'a');
        assert_eq!(
            err(&long),
            SyslogError::TooLong {
                len: MAX_SYSLOG_BYTES + 1,
                max: MAX_SYSLOG_BYTES
            }
        );
        long.pop();
        assert!(parse(&long, "e".into(), 0).is_ok());
    }

    #[test]
    fn too_many_structured_values_are_kept_as_text() {
        let params: String = (0..1_001).map(|i| format!(" p{i}=\"v\"")).collect();
        let line = format!("<13>1 - h app - - [big{params}] x");
        let m = ok(&line);
        assert!(m.event.fields.get("sd").is_none());
        let kept = m.event.fields["syslog"]["sd_unparsed"].as_str().unwrap();
        assert!(kept.contains("p1000"), "{kept}");
        assert_eq!(m.event.message, "x");
    }

    #[test]
    fn errors_read_clearly() {
        assert_eq!(
            SyslogError::PriorityOutOfRange { value: 999 }.to_string(),
            "the syslog priority 999 is out of range (0 to 191)"
        );
        assert_eq!(
            SyslogError::TooLong {
                len: 70_000,
                max: MAX_SYSLOG_BYTES
            }
            .to_string(),
            "the syslog message is 70000 bytes, more than the limit of 65536"
        );
    }
}
