//! How deep a body's arrays and objects nest. A decision keeps the call's
//! arguments and context inside its audit record, a few levels below the
//! top, and every later read of that record (the audit list, the hold an
//! approver looks at, verify, a drift rebuild) parses it again under the
//! parser's own limit of 128 levels. A body nested almost that deep would
//! be decided and then become a record nobody can read, and one that verify
//! calls broken. Bodies a decision or a change reads stay well below.

/// Most levels of arrays and objects a decision's or a change's body may
/// nest, the body itself counted as the first.
pub const MAX_DEPTH: usize = 64;

/// The byte offset of the first `[` or `{` that opens a level past
/// `limit`, outside strings; `None` if the document stays within it.
pub fn first_too_deep(json: &[u8], limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
