//! Newline-delimited JSON logs, read as the body streams in: chunks are
//! inflated (gzip) and cut into lines as they arrive, each line is mapped
//! to an event at once, and only the events are kept, never the body.

use std::io::Write;

use flate2::write::MultiGzDecoder;
use serde_json::Value;
use warden_core::event::input::{parse_event, Dialect};
use warden_core::event::limits::MAX_EVENT_BYTES;
use warden_core::event::Event;
use warden_core::id::{new_time_ordered_id, prefix};
use warden_core::time::Millis;

use crate::http::error::ItemError;
use crate::http::unique_keys::UniqueKeys;

/// Most bytes of log text one request may carry, after inflating.
pub const MAX_NDJSON_BYTES: usize = 64 * 1024 * 1024;
/// Most lines (events) one request may carry.
pub const MAX_NDJSON_EVENTS: usize = 100_000;
/// Bad lines reported before the rest are only counted.
const MAX_REPORTED: usize = 100;

#[derive(Debug)]
pub enum NdjsonError {
    /// The body inflates past [`MAX_NDJSON_BYTES`] or holds too many lines.
    TooLarge(String),
    /// The gzip stream is broken.
    Gzip(String),
    /// The body said to be gzip does not begin as gzip does.
    NotGzip,
}

/// How every gzip member begins (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A line without what is not its text: a `\r` before its newline, and a
/// byte-order mark, as some editors and Windows tools write, at the start
/// of the body or of each file when several are concatenated (JSON never
/// starts with one, so it is dropped from any line).
fn line_text(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    crate::http::extract::without_bom(raw)
}

fn too_long() -> String {
    format!("longer than {MAX_EVENT_BYTES} bytes")
}

pub struct NdjsonReader {
    /// Several gzip members one after another (`cat a.gz b.gz`) are one
    /// stream, as `zcat` reads them.
    gzip: Option<MultiGzDecoder<Vec<u8>>>,
    /// The first bytes of a gzip body, until they show it begins as gzip.
    gzip_start: Vec<u8>,
    pending: Vec<u8>,
    /// Inside a line already refused for its length, up to its newline.
    skipping: bool,
    line: usize,
    total_bytes: usize,
    /// Values of the events kept so far, for what they hold in memory.
    values: usize,
    received_at: Millis,
    pub events: Vec<Event>,
    pub errors: Vec<ItemError>,
    pub bad_lines: usize,
}

impl NdjsonReader {
    pub fn new(gzip: bool, received_at: Millis) -> Self {
        NdjsonReader {
            gzip: gzip.then(|| MultiGzDecoder::new(Vec::new())),
            gzip_start: Vec::new(),
            pending: Vec::new(),
            skipping: false,
            line: 0,
            total_bytes: 0,
            values: 0,
            received_at,
            events: Vec::new(),
            errors: Vec::new(),
            bad_lines: 0,
        }
    }

    /// The body's bytes read so far, inflated.
    pub fn bytes_read(&self) -> usize {
        self.total_bytes
    }

    /// What the upload holds in memory so far: its text, and its events
    /// as parsed ([`held_bytes`]).
    pub fn held_bytes(&self) -> usize {
        held_bytes(self.total_bytes, self.values)
    }

    /// Bytes of a line not yet ended, which [`NdjsonReader::finish`] parses.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Takes the next chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), NdjsonError> {
        if self.gzip.is_none() {
            return self.text(chunk);
        }
        // A step at a time, each handed on before the next: one step
        // inflates at most tens of KiB, so a small chunk of a gzip bomb
        // never becomes hundreds of MB in memory, and the size limit stops
        // it as the limit is passed.
        if self.gzip_start.len() < GZIP_MAGIC.len() {
            let wanted = GZIP_MAGIC.len() - self.gzip_start.len();
            self.gzip_start
                .extend_from_slice(&chunk[..wanted.min(chunk.len())]);
            if !GZIP_MAGIC.starts_with(&self.gzip_start) {
                return Err(NdjsonError::NotGzip);
            }
        }
        let mut rest = chunk;
        while !rest.is_empty() {
            let Some(decoder) = self.gzip.as_mut() else {
                break;
            };
            let taken = decoder
                .write(rest)
                .map_err(|e| NdjsonError::Gzip(e.to_string()))?;
            let inflated = std::mem::take(decoder.get_mut());
            self.text(&inflated)?;
            if taken == 0 && inflated.is_empty() {
                return Err(NdjsonError::Gzip(
                    "the gzip stream stops before the body ends".into(),
                ));
            }
            rest = &rest[taken..];
        }
        Ok(())
    }

    /// The body ended.
    pub fn finish(&mut self) -> Result<(), NdjsonError> {
        // An empty body said to be gzip does not begin as gzip either.
        if self.gzip.is_some() && self.gzip_start.is_empty() {
            return Err(NdjsonError::NotGzip);
        }
        if let Some(mut decoder) = self.gzip.take() {
            decoder
                .try_finish()
                .map_err(|e| NdjsonError::Gzip(e.to_string()))?;
            let inflated = std::mem::take(decoder.get_mut());
            self.text(&inflated)?;
        }
        let rest = std::mem::take(&mut self.pending);
        self.one_line(&rest);
        // The last line counts whether or not a newline ends it.
        self.check_line_count()
    }

    fn check_line_count(&self) -> Result<(), NdjsonError> {
        if self.events.len() + self.bad_lines > MAX_NDJSON_EVENTS {
            return Err(NdjsonError::TooLarge(format!(
                "more than {MAX_NDJSON_EVENTS} lines; send them in several requests"
            )));
        }
        Ok(())
    }

    fn text(&mut self, bytes: &[u8]) -> Result<(), NdjsonError> {
        self.total_bytes += bytes.len();
        if self.total_bytes > MAX_NDJSON_BYTES {
            return Err(NdjsonError::TooLarge(format!(
                "the logs are larger than {MAX_NDJSON_BYTES} bytes (after inflating); send them in several requests"
            )));
        }
        let mut start = 0;
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                if self.skipping {
                    // The end of a line already refused for its length.
                    self.skipping = false;
                } else if self.pending.is_empty() {
                    self.one_line(&bytes[start..i]);
                } else {
                    self.pending.extend_from_slice(&bytes[start..i]);
                    let line = std::mem::take(&mut self.pending);
                    self.one_line(&line);
                }
                start = i + 1;
                self.check_line_count()?;
            }
        }
        if !self.skipping {
            self.pending.extend_from_slice(&bytes[start..]);
            // A line past the limit is a bad line like any other, however
            // long: listed, and the rest of it read past without keeping it.
            // Its text is counted as `one_line` will read it, so the same
            // bytes pass or not wherever the body was cut into chunks.
            if line_text(&self.pending).len() > MAX_EVENT_BYTES {
                self.pending.clear();
                self.line += 1;
                self.bad(String::new(), too_long());
                self.skipping = true;
            }
        }
        Ok(())
    }

    fn one_line(&mut self, raw: &[u8]) {
        if std::mem::take(&mut self.skipping) {
            // The unended last line, already refused.
            return;
        }
        self.line += 1;
        let raw = line_text(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        if raw.len() > MAX_EVENT_BYTES {
            self.bad(String::new(), too_long());
            return;
        }
        let value: Value = match serde_json::from_slice(raw) {
            Ok(UniqueKeys(value)) => value,
            Err(err) if err.is_data() => {
                // Well-formed JSON with a key named twice: named by its
                // path, as a batch names it (serde's own place is the end
                // of the object that holds it, on a line it counts as 1).
                let place = warden_policy::unique_keys::repeated_keys(raw)
                    .ok()
                    .and_then(|(_, found)| found.into_iter().next())
                    .unwrap_or_else(|| without_place(&err));
                let field = warden_core::event::input::model_path(
                    warden_core::event::input::Dialect::JsonLog,
                    &place,
                );
                self.bad(field, format!("the line names `{place}` twice"));
                return;
            }
            Err(err) => {
                // serde counts lines inside the one line: only the column
                // says where. Its words for a lone surrogate escape and for
                // bytes that are not UTF-8 name where it stopped reading.
                let said = without_place(&err);
                let said = if said.contains("surrogate") || said.contains("hex escape") {
                    "a \\u escape of half a UTF-16 surrogate pair without its other half \
                     is not a character"
                        .to_string()
                } else if said.contains("invalid unicode code point") {
                    "the line is not UTF-8 (JSON is UTF-8; send text in that encoding)".to_string()
                } else {
                    said
                };
                self.bad(
                    String::new(),
                    format!("not JSON: {said} at column {}", err.column()),
                );
                return;
            }
        };
        match parse_event(
            value,
            Dialect::JsonLog,
            new_time_ordered_id(prefix::EVENT),
            self.received_at,
        ) {
            Ok(event) => {
                self.values += MODEL_VALUES + event.fields.values().map(values_in).sum::<usize>();
                self.events.push(event)
            }
            Err(err) => self.bad(err.field, err.message),
        }
    }

    fn bad(&mut self, field: String, message: String) {
        self.bad_lines += 1;
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(ItemError {
                index: None,
                line: Some(self.line),
                field,
                message,
            });
        }
    }
}

/// Memory a parsed value holds beyond its text: its name, its place in
/// its object and its own allocation. Measured: uploads of 60-value lines
/// held about 110 bytes a value over their text (four 63 MiB uploads, 2.9 GB
/// resident), eleven times the text, where counting the text alone let
/// them past the upload budget.
pub const VALUE_BYTES: usize = 112;
/// The event model's own values (id, times, source, severity, …).
const MODEL_VALUES: usize = 8;

/// What an upload of `text_bytes` whose events hold `values` values takes
/// in memory, as the upload budget counts it.
pub fn held_bytes(text_bytes: usize, values: usize) -> usize {
    text_bytes.saturating_add(values.saturating_mul(VALUE_BYTES))
}

/// The values in a JSON value: each scalar, and each object or list.
pub fn values_in(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(values_in).sum::<usize>(),
        Value::Array(items) => 1 + items.iter().map(values_in).sum::<usize>(),
        _ => 1,
    }
}

/// A serde error's message without its ` at line L column C` suffix.
fn without_place(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_names_its_column_not_a_line_of_its_own() {
        let err = serde_json::from_str::<serde_json::Value>(r#"{"msg": oops}"#).unwrap_err();
        assert_eq!(without_place(&err), "expected value");
        assert_eq!(err.column(), 9);
    }

    #[test]
    fn lone_surrogates_and_other_encodings_are_named_for_what_they_are() {
        let mut r = NdjsonReader::new(false, 1);
        r.push(b"{\"msg\":\"cut \\ud83d here\"}\n{\"msg\":\"caf\xe9\"}\n")
            .unwrap();
        r.finish().unwrap();
        assert_eq!(r.bad_lines, 2);
        assert!(
            r.errors[0].message.contains("surrogate"),
            "{}",
            r.errors[0].message
        );
        assert!(
            r.errors[1].message.contains("not UTF-8"),
            "{}",
            r.errors[1].message
        );
    }

    #[test]
    fn lines_split_anywhere_in_the_stream_are_read_whole() {
        let text = b"{\"msg\":\"one\",\"level\":\"error\"}\n\n{\"message\":\"two\"}\r\n{\"msg\":\"three\"}";
        for cut in 0..text.len() {
            let mut r = NdjsonReader::new(false, 1);
            r.push(&text[..cut]).unwrap();
            r.push(&text[cut..]).unwrap();
            r.finish().unwrap();
            let messages: Vec<&str> = r.events.iter().map(|e| e.message.as_str()).collect();
            assert_eq!(messages, vec!["one", "two", "three"], "cut at {cut}");
        }
    }

    #[test]
    fn the_last_line_counts_without_a_newline() {
        let body = "{\"msg\": \"x\"}\n".repeat(MAX_NDJSON_EVENTS) + "{\"msg\": \"last\"}";
        let mut reader = NdjsonReader::new(false, 0);
        reader.push(body.as_bytes()).unwrap();
        assert!(matches!(reader.finish(), Err(NdjsonError::TooLarge(_))));
        let mut reader = NdjsonReader::new(false, 0);
        reader
            .push(&body.as_bytes()[..body.rfind('\n').unwrap() + 1])
            .unwrap();
        assert!(reader.finish().is_ok());
    }

    #[test]
    fn a_key_named_twice_is_a_bad_line_naming_it() {
        let mut r = NdjsonReader::new(false, 1);
        r.push(b"{\"msg\":\"ok\"}\n{\"msg\":\"a\",\"user\":\"x\",\"user\":\"y\"}\n")
            .unwrap();
        r.finish().unwrap();
        assert_eq!(r.bad_lines, 1);
        assert_eq!(r.errors[0].line, Some(2));
        assert_eq!(r.errors[0].field, "fields.user");
        assert_eq!(r.errors[0].message, "the line names `user` twice");
        // Deeper, the key is named by its path, as a batch names it, and
        // never by serde's place in the line (which it counts as line 1).
        let mut r = NdjsonReader::new(false, 1);
        r.push(b"{\"msg\":\"ok\"}\n{\"msg\":\"a\",\"fields\":{\"a\":[{\"c\":1,\"c\":2}]}}\n")
            .unwrap();
        r.finish().unwrap();
        assert_eq!(r.errors[0].line, Some(2));
        assert_eq!(r.errors[0].field, "fields.fields.a[0].c");
        assert!(
            !r.errors[0].message.contains("line 1"),
            "{}",
            r.errors[0].message
        );
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        let mut r = NdjsonReader::new(false, 1);
        r.push(b"{\"msg\":\"ok\"}\nnot json\n[1]\n{\"tags\":[true]}\n")
            .unwrap();
        r.finish().unwrap();
        let lines: Vec<(Option<usize>, &str)> = r
            .errors
            .iter()
            .map(|e| (e.line, e.field.as_str()))
            .collect();
        assert_eq!(
            lines,
            vec![(Some(2), ""), (Some(3), ""), (Some(4), "tags[0]")]
        );
    }

    #[test]
    fn a_line_of_the_limit_is_taken_wherever_the_body_is_cut() {
        let mut line = b"{\"p\":\"".to_vec();
        line.extend(std::iter::repeat_n(b'x', MAX_EVENT_BYTES - line.len() - 2));
        line.extend(b"\"}");
        assert_eq!(line.len(), MAX_EVENT_BYTES);
        let mut body = "\u{feff}".as_bytes().to_vec();
        body.extend(&line);
        body.extend(b"\r\n{\"msg\":\"ok\"}\r\n");
        for cut in [
            1,
            3,
            4,
            MAX_EVENT_BYTES,
            MAX_EVENT_BYTES + 3,
            MAX_EVENT_BYTES + 4,
            MAX_EVENT_BYTES + 5,
        ] {
            let mut r = NdjsonReader::new(false, 1);
            r.push(&body[..cut]).unwrap();
            r.push(&body[cut..]).unwrap();
            r.finish().unwrap();
            assert!(r.errors.is_empty(), "cut at {cut}: {:?}", r.errors);
            assert_eq!(r.events.len(), 2, "cut at {cut}");
        }
    }

    #[test]
    fn a_line_too_long_is_a_bad_line_however_long_and_however_it_arrives() {
        for length in [MAX_EVENT_BYTES + 10, 3 * MAX_EVENT_BYTES] {
            for ended in [true, false] {
                let mut body = b"{\"msg\":\"a\"}\n{\"p\":\"".to_vec();
                body.extend(std::iter::repeat_n(b'x', length));
                body.extend(b"\"}");
                if ended {
                    body.extend(b"\n{\"msg\":\"c\"}\n");
                }
                for chunk_size in [7_000, 1 << 20, body.len()] {
                    let mut r = NdjsonReader::new(false, 1);
                    for chunk in body.chunks(chunk_size) {
                        r.push(chunk).unwrap();
                    }
                    r.finish().unwrap();
                    let case = format!("{length} bytes, ended {ended}, chunks of {chunk_size}");
                    assert_eq!(r.errors.len(), 1, "{case}: {:?}", r.errors);
                    assert_eq!(r.errors[0].line, Some(2), "{case}");
                    assert!(r.errors[0].message.contains("longer than"), "{case}");
                    assert_eq!(r.events.len(), if ended { 2 } else { 1 }, "{case}");
                }
            }
        }
    }

    #[test]
    fn gzip_is_inflated_as_it_arrives() {
        use flate2::write::GzEncoder;
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
        for i in 0..500 {
            writeln!(enc, "{{\"msg\":\"line {i}\"}}").unwrap();
        }
        let gz = enc.finish().unwrap();
        let mut r = NdjsonReader::new(true, 1);
        for chunk in gz.chunks(7) {
            r.push(chunk).unwrap();
        }
        r.finish().unwrap();
        assert_eq!(r.events.len(), 500);
        assert_eq!(r.events[499].message, "line 499");
        // Plain text said to be gzip is named as not gzip, whether its
        // first byte comes alone or not.
        for chunks in [&[&b"garbage"[..]][..], &[&b"\x1f"[..], &b"x{}"[..]]] {
            let mut r = NdjsonReader::new(true, 1);
            let failed = chunks.iter().find_map(|c| r.push(c).err());
            assert!(matches!(failed, Some(NdjsonError::NotGzip)), "{failed:?}");
        }
        let mut empty = NdjsonReader::new(true, 1);
        assert!(matches!(empty.finish(), Err(NdjsonError::NotGzip)));
    }

    #[test]
    fn a_gzip_bomb_is_refused_as_it_inflates_not_after() {
        use flate2::write::GzEncoder;
        // 80 members of 1 MiB of zeros each: about 80 KiB that inflate to
        // 80 MiB, past the limit, all in one chunk of the body.
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        let member = enc.finish().unwrap();
        let bomb = member.repeat(80);
        assert!(bomb.len() < 200 * 1024, "{} bytes", bomb.len());
        let mut r = NdjsonReader::new(true, 1);
        let refused = r.push(&bomb);
        assert!(
            matches!(refused, Err(NdjsonError::TooLarge(_))),
            "{refused:?}"
        );
        // Inflating stopped at the limit: nothing near the 80 MiB the
        // chunk holds was inflated before the refusal.
        assert!(
            r.total_bytes <= MAX_NDJSON_BYTES + 256 * 1024,
            "{} bytes inflated",
            r.total_bytes
        );
    }

    #[test]
    fn concatenated_gzip_members_and_a_byte_order_mark_are_read() {
        use flate2::write::GzEncoder;
        let member = |text: &str| {
            let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(text.as_bytes()).unwrap();
            enc.finish().unwrap()
        };
        // `cat first.gz second.gz`, arriving in small chunks.
        let mut body = member("\u{feff}{\"msg\":\"first\"}\n");
        body.extend(member("{\"msg\":\"second\"}\n"));
        let mut r = NdjsonReader::new(true, 1);
        for chunk in body.chunks(5) {
            r.push(chunk).unwrap();
        }
        r.finish().unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let messages: Vec<&str> = r.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["first", "second"]);
    }
}
