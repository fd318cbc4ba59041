//! Whole numbers past 64 bits. JSON allows any length of digits, but the
//! parser keeps such a number only as the nearest double, so
//! `12345678901234567890123` and `12345678901234567890999` would arrive
//! as the same value: a policy, a hold's digest of the arguments and the
//! audit record would all see another number than the agent sent. Bodies
//! that a decision reads are refused with such a number instead.

/// The byte offset of the first whole number (no fraction, no exponent)
/// outside both `i64` and `u64`, outside strings; `None` if there is none.
pub fn first_inexact_integer(json: &[u8]) -> Option<usize> {
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
                    return Some(start);
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
}
