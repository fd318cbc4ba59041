//! The index's fields and how event names map onto them.
//!
//! Every keyword value (the event's own keyword fields and each flattened
//! `fields` value) is one term of a single `kv` field, `name \u{1} value`,
//! case preserved: a field of any name is searchable without a schema
//! change, a query on one name walks only that name's terms, and case
//! folding happens at query time through an automaton, so quoted values
//! can still match exactly. Numbers are also terms of `num`, as
//! `name \u{1}` and eight bytes that sort like the number, for ranges.

use tantivy::schema::{
    BytesOptions, Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
    STORED, STRING,
};

use crate::analyzer::MESSAGE_ANALYZER;

/// Names every event has a value for.
pub const ALWAYS_PRESENT: &[&str] = &["id", "timestamp", "received_at", "source", "severity"];

/// Separates a name from its value inside a `kv` or `num` term.
pub const NAME_END: char = '\u{1}';

/// Longest keyword value indexed, in bytes; longer values are cut.
pub const MAX_KEYWORD_BYTES: usize = 1024;

/// The event model's own names. A flattened `fields` name whose first part
/// is one of these is indexed under `fields.` so it cannot shadow them.
pub const RESERVED: &[&str] = &[
    "id",
    "timestamp",
    "received_at",
    "source",
    "host",
    "program",
    "severity",
    "message",
    "agent_id",
    "session_id",
    "tags",
    "fields",
    "@timestamp",
    "msg",
    "level",
    "_exists_",
];

/// The indexed name of a flattened `fields` path.
pub fn field_name(path: &str) -> String {
    let first = path.split('.').next().unwrap_or(path);
    if RESERVED.contains(&first) {
        format!("fields.{path}")
    } else {
        path.to_string()
    }
}

#[derive(Clone)]
pub struct Fields {
    pub schema: Schema,
    /// The log's sequence number: resuming, and a stable order among equal times.
    pub seq: Field,
    /// `org_id/environment`: the tenant filter every search carries.
    pub tenant: Field,
    /// `org_id`: retention removes an organization's events.
    pub org: Field,
    /// Event time and arrival time, milliseconds since 1970.
    pub timestamp: Field,
    pub received_at: Field,
    /// Severity rank, 0 (info) to 4 (critical), for histograms and ranges.
    pub severity: Field,
    pub message: Field,
    pub kv: Field,
    pub num: Field,
    /// Names an event has a value for, for `_exists_`; the names every
    /// event has ([`ALWAYS_PRESENT`]) are left out.
    pub exists: Field,
    /// The event's JSON, returned by search.
    pub source: Field,
}

impl Fields {
    pub fn new() -> Self {
        let mut b = Schema::builder();
        // Values unique to nearly every event (sequence, times) are only
        // columns: ranges over them read the column, and leaving them out
        // of the term dictionary keeps segments cheap to build and merge.
        let fast = NumericOptions::default().set_fast();
        let seq = b.add_u64_field("seq", fast.clone());
        let tenant = b.add_text_field("tenant", STRING);
        let org = b.add_text_field("org", STRING);
        let timestamp = b.add_i64_field("timestamp", fast.clone());
        let received_at = b.add_i64_field("received_at", fast);
        let severity = b.add_u64_field(
            "severity",
            NumericOptions::default().set_indexed().set_fast(),
        );
        let message = b.add_text_field(
            "message",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(MESSAGE_ANALYZER)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            ),
        );
        let kv = b.add_text_field(
            "kv",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("raw")
                    .set_index_option(IndexRecordOption::Basic),
            ),
        );
        let num = b.add_bytes_field("num", BytesOptions::default().set_indexed());
        let exists = b.add_text_field("exists", STRING);
        let source = b.add_bytes_field("source", STORED);
        Fields {
            schema: b.build(),
            seq,
            tenant,
            org,
            timestamp,
            received_at,
            severity,
            message,
            kv,
            num,
            exists,
            source,
        }
    }
}

impl Default for Fields {
    fn default() -> Self {
        Self::new()
    }
}

/// `name \u{1} value`, the value cut at [`MAX_KEYWORD_BYTES`].
pub fn kv_term(name: &str, value: &str) -> String {
    let mut cut = value.len().min(MAX_KEYWORD_BYTES);
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut term = String::with_capacity(name.len() + 1 + cut);
    term.push_str(name);
    term.push(NAME_END);
    term.push_str(&value[..cut]);
    term
}

/// A number as the index orders and matches it: the nearest double, then
/// how far a whole number lies from it. A double holds whole numbers
/// exactly only up to 2^53, so 2^53 + 1 is its own value, just after
/// 2^53, and an account number matches only itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NumKey {
    nearest: f64,
    rest: i64,
}

impl NumKey {
    pub fn of_f64(x: f64) -> Self {
        NumKey {
            nearest: x,
            rest: 0,
        }
    }

    /// A whole number within 64 bits (signed or not).
    fn of_int(i: i128) -> Self {
        let nearest = i as f64;
        NumKey {
            nearest,
            rest: (i - nearest as i128) as i64,
        }
    }

    /// A JSON number; `None` for one beyond a double's range.
    pub fn of_json(n: &serde_json::Number) -> Option<Self> {
        if let Some(i) = n.as_i64() {
            return Some(Self::of_int(i.into()));
        }
        if let Some(u) = n.as_u64() {
            return Some(Self::of_int(u.into()));
        }
        n.as_f64().filter(|x| x.is_finite()).map(Self::of_f64)
    }

    /// A number written as text (a query's value, or a value sent as a
    /// string); `None` for text that is not one, or beyond a double.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(i) = text.parse::<i64>() {
            return Some(Self::of_int(i.into()));
        }
        if let Ok(u) = text.parse::<u64>() {
            return Some(Self::of_int(u.into()));
        }
        // A whole number written with a fraction or an exponent
        // (`9007199254740993.0`, `9.007199254740993e15`) is that whole
        // number, not its nearest double, which may be another one.
        if let Some(i) = whole_decimal(text)
            .filter(|i| (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(i))
        {
            return Some(Self::of_int(i));
        }
        text.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Self::of_f64)
    }
}

/// The whole number a decimal text (`12.0`, `1.5e3`, `-2E+2`) is exactly,
/// if it is one that 128 bits hold; `None` for a fraction or anything else.
fn whole_decimal(text: &str) -> Option<i128> {
    decimal(text).and_then(|(whole, fraction)| (!fraction).then_some(whole))
}

/// From 2^52 up a double holds only whole numbers, and whole numbers are
/// indexed exactly, so every number indexed there is whole: a decimal with a fraction that lies there
/// (`9007199254740992.5`) equals no value, and as a range's bound stands
/// for the whole number on its inner side. Returns the whole number just
/// below such a decimal; `None` for any other text.
pub fn fraction_past_doubles(text: &str) -> Option<i128> {
    const WHOLE: i128 = 1 << 52;
    let (truncated, fraction) = decimal(text)?;
    if !fraction {
        return None;
    }
    let floor = if text.starts_with('-') {
        truncated - 1
    } else {
        truncated
    };
    (!(-WHOLE..WHOLE).contains(&floor)).then_some(floor)
}

/// A decimal text's value truncated toward zero, if 128 bits hold it, and
/// whether it had a fraction beyond that.
fn decimal(text: &str) -> Option<(i128, bool)> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    // digits × 10^shift
    let shift = i64::from(exponent) - fraction.len() as i64;
    let (digits, dropped) = if shift < 0 {
        let cut = usize::try_from(-shift).ok()?;
        if cut > digits.len() {
            return Some((0, digits.bytes().any(|b| b != b'0')));
        }
        let (kept, dropped) = digits.split_at(digits.len() - cut);
        (kept.to_string(), dropped.bytes().any(|b| b != b'0'))
    } else {
        if digits.len() as i64 + shift > 39 {
            return None;
        }
        (format!("{digits}{}", "0".repeat(shift as usize)), false)
    };
    let value = if digits.is_empty() {
        0
    } else {
        digits.parse::<i128>().ok()?
    };
    Some((if negative { -value } else { value }, dropped))
}

/// Whether a text value is written exactly as a JSON number (`500`,
/// `-1.5`, `2e3`): log shippers often send numbers as strings, and such
/// values are indexed as numbers too. A leading zero (`02134`, a postal
/// code) or any other character keeps a value text only.
pub fn is_number_text(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let whole_start = i;
    let whole = digits(&mut i);
    if whole == 0 || (whole > 1 && b[whole_start] == b'0') {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len() && b.len() <= 64
}

/// `name \u{1}`, then eight bytes that order the nearest double, then the
/// whole number's distance from it: one byte when there is none (nearly
/// every number), else a sign byte and eight bytes, so that a distance
/// below zero sorts before none and one above zero after.
pub fn num_term(name: &str, value: NumKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 18);
    out.extend_from_slice(name.as_bytes());
    out.push(NAME_END as u8);
    out.extend_from_slice(&sortable(value.nearest).to_be_bytes());
    match value.rest.cmp(&0) {
        std::cmp::Ordering::Equal => out.push(0x80),
        std::cmp::Ordering::Greater => {
            out.push(0x81);
            out.extend_from_slice(&(value.rest as u64).to_be_bytes());
        }
        std::cmp::Ordering::Less => {
            out.push(0x7f);
            out.extend_from_slice(&(value.rest as u64).to_be_bytes());
        }
    }
    out
}

/// The IEEE 754 bits flipped so that unsigned order is numeric order.
fn sortable(value: f64) -> u64 {
    let value = if value == 0.0 { 0.0 } else { value };
    let bits = value.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

pub fn tenant_term(org_id: &str, environment: &str) -> String {
    format!("{org_id}/{environment}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_written_as_decimals_keep_every_digit() {
        for (text, whole) in [
            ("9007199254740993.0", Some(9_007_199_254_740_993)),
            ("9.007199254740993e15", Some(9_007_199_254_740_993)),
            ("-2E+2", Some(-200)),
            ("1.50e1", Some(15)),
            ("0.0", Some(0)),
            ("1.5", None),
            ("1e-1", None),
            ("12a", None),
            (".", None),
        ] {
            assert_eq!(whole_decimal(text), whole, "{text}");
        }
        assert_eq!(
            NumKey::parse("9007199254740993.0"),
            NumKey::parse("9007199254740993")
        );
        assert_ne!(
            NumKey::parse("9007199254740993.0"),
            NumKey::parse("9007199254740992")
        );
    }

    #[test]
    fn fractions_past_doubles_give_the_whole_number_below() {
        for (text, floor) in [
            ("9007199254740992.5", Some(9007199254740992)),
            ("9007199254740991.9", Some(9007199254740991)),
            ("4503599627370495.5", None),
            ("9007199254740993.000001", Some(9007199254740993)),
            ("-9007199254740993.5", Some(-9007199254740994)),
            ("9.0071992547409925e15", Some(9007199254740992)),
            ("9007199254740993.0", None),
            ("9007199254740993", None),
            ("1.5", None),
            ("abc", None),
        ] {
            assert_eq!(fraction_past_doubles(text), floor, "{text}");
        }
    }

    #[test]
    fn number_terms_sort_like_numbers() {
        let values = [
            "-9223372036854775808",
            "-9007199254740993",
            "-1e9",
            "-2.5",
            "0",
            "1e-9",
            "3",
            "500.5",
            "1e12",
            "9007199254740992",
            "9007199254740993",
            "9007199254740994",
            "9007199254740995",
            "9007199254740996",
            "9007199254740997",
            "9223372036854775807",
            "18446744073709551615",
            "1e300",
        ];
        let terms: Vec<Vec<u8>> = values
            .iter()
            .map(|v| num_term("x", NumKey::parse(v).unwrap()))
            .collect();
        for (pair, values) in terms.windows(2).zip(values.windows(2)) {
            assert!(
                pair[0] < pair[1],
                "{} sorts before {}",
                values[0],
                values[1]
            );
        }
        // Equal values are one term, however written.
        for same in [["1", "1.0"], ["1e3", "1000"], ["-0", "0.0"]] {
            assert_eq!(
                num_term("x", NumKey::parse(same[0]).unwrap()),
                num_term("x", NumKey::parse(same[1]).unwrap())
            );
        }
        let json: serde_json::Number = serde_json::from_str("9007199254740993").unwrap();
        assert_eq!(NumKey::of_json(&json), NumKey::parse("9007199254740993"));
    }

    #[test]
    fn only_json_shaped_text_is_a_number() {
        for yes in ["0", "500", "-1.5", "2e3", "1.25E-4", "-0"] {
            assert!(is_number_text(yes), "{yes}");
        }
        for no in [
            "", "-", "02134", "1.", ".5", "+5", "1e", "inf", "NaN", "5 ", "0x10", "1,000",
        ] {
            assert!(!is_number_text(no), "{no}");
        }
    }

    #[test]
    fn fields_cannot_shadow_the_model() {
        assert_eq!(field_name("user"), "user");
        assert_eq!(field_name("host.name"), "fields.host.name");
        assert_eq!(kv_term("user", "root"), "user\u{1}root");
    }
}
