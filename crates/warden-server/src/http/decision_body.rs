//! What a body that a decision or a change reads may not hold, found in
//! one pass over its bytes (outside strings):
//!
//! - Whole numbers past 64 bits. JSON allows any length of digits, but the
//!   parser keeps such a number only as the nearest double, so
//!   `12345678901234567890123` and `12345678901234567890999` would arrive
//!   as the same value: a policy, a hold's digest of the arguments and the
//!   audit record would all see another number than the agent sent.
//! - Nesting past [`MAX_DEPTH`]. A decision keeps the call's arguments and
//!   context inside its audit record, a few levels below the top, and every
//!   later read of that record (the audit list, the hold an approver looks
//!   at, verify, a drift rebuild) parses it again under the parser's own
//!   limit of 128 levels. A body nested almost that deep would be decided
//!   and then become a record nobody can read, and one verify calls broken.

/// Most levels of arrays and objects such a body may nest, the body
/// itself counted as the first.
pub const MAX_DEPTH: usize = 64;

/// Why a body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A whole number (no fraction, no exponent) outside both `i64` and
    /// `u64`.
    InexactInteger,
    /// A `[` or `{` opening a level past the limit.
    TooDeep,
}

/// The byte offset of the first thing the body may not hold, nesting
/// counted against `max_depth`; `None` if there is none.
pub fn first_refusal(json: &[u8], max_depth: usize) -> Option<(usize, Refusal)> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Some((i, Refusal::TooDeep));
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < json.len()
                    && matches!(json[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let token = &json[start..i];
                let whole = !token.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
                // Not a number at all (`-` alone): the parser names that.
                let number = token.iter().any(u8::is_ascii_digit);
                if whole && number && !fits_64_bits(token) {
                    return Some((start, Refusal::InexactInteger));
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn fits_64_bits(token: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(token) else {
        return true;
    };
    text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok()
}

/// Line and column (1-based, in characters) of a byte offset.
pub fn line_and_column(json: &[u8], offset: usize) -> (usize, usize) {
    let before = String::from_utf8_lossy(&json[..offset.min(json.len())]).into_owned();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_inexact_integer(json: &[u8]) -> Option<usize> {
        match first_refusal(json, usize::MAX) {
            Some((at, Refusal::InexactInteger)) => Some(at),
            _ => None,
        }
    }

    fn first_too_deep(json: &[u8], limit: usize) -> Option<usize> {
        match first_refusal(json, limit) {
            Some((at, Refusal::TooDeep)) => Some(at),
            _ => None,
        }
    }

    #[test]
    fn only_whole_numbers_past_64_bits_are_found() {
        for (json, found) in [
            (r#"{"a": 12345678901234567890123}"#, Some(6)),
            (r#"{"a": -}"#, None),
            (r#"{"a": -9223372036854775809}"#, Some(6)),
            (
                r#"{"a": [1, 18446744073709551615, 18446744073709551616]}"#,
                Some(32),
            ),
            (
                r#"{"a": 18446744073709551615, "b": -9223372036854775808}"#,
                None,
            ),
            (r#"{"a": 1.2345678901234567890123e22, "b": 1e400}"#, None),
            (
                r#"{"a": "12345678901234567890123", "b\"99999999999999999999": 1}"#,
                None,
            ),
        ] {
            assert_eq!(first_inexact_integer(json.as_bytes()), found, "{json}");
        }
        assert_eq!(line_and_column(b"{\n  \"a\": 1", 9), (2, 8));
    }

    #[test]
    fn the_first_bracket_past_the_limit_is_found() {
        assert_eq!(first_too_deep(br#"{"a": [1, {"b": 2}]}"#, 3), None);
        assert_eq!(first_too_deep(br#"{"a": [1, {"b": 2}]}"#, 2), Some(10));
        // Brackets inside strings, escaped quotes included, do not count.
        assert_eq!(first_too_deep(br#"{"a": "[[[{{\"[["}"#, 1), None);
        // Levels closed before count no more.
        assert_eq!(first_too_deep(br#"[[1], [2], [[3]]]"#, 2), Some(12));
    }
}
