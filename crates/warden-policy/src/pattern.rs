//! Tool-name patterns: `fs.write`, `payments.*`, `*`, `db.?ead`.
//!
//! `*` matches any run of characters (dots included), `?` exactly one;
//! everything else matches itself, case-sensitively. Brackets, braces,
//! `!` and `\` are reserved so that a pattern means the same tomorrow.

/// Longest pattern accepted, in characters: as long as a tool name may
/// be, so that any tool can be named exactly.
pub const MAX_LEN: usize = 256;
const RESERVED: &[char] = &['[', ']', '{', '}', '!', '\\'];

/// Why a pattern was refused; `position` is the 1-based character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {position})")]
pub struct PatternError {
    pub position: usize,
    pub message: String,
}

/// How a pattern can be looked up without trying it against every name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// No wildcard: the name itself.
    Exact,
    /// `*` alone: every name.
    Everything,
    /// A literal followed by one trailing `*`.
    Prefix,
    /// Anything else; `literal_prefix` narrows the candidates.
    Glob,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPattern {
    text: String,
    shape: Shape,
    /// The characters before the first wildcard.
    prefix_len: usize,
}

impl ToolPattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError {
                position: 1,
                message: "the pattern is empty".into(),
            });
        }
        let last = text.chars().count();
        for (i, c) in text.chars().enumerate() {
            let position = i + 1;
            // Characters, as tool names are counted: a longer pattern
            // would never match.
            if position > MAX_LEN {
                return Err(PatternError {
                    position,
                    message: format!(
                        "the pattern is longer than {MAX_LEN} characters, which no tool name is"
                    ),
                });
            }
            if c.is_control() {
                return Err(PatternError {
                    position,
                    message: "control characters cannot appear in a pattern".into(),
                });
            }
            // Only the plain space, as tool names hold only it: a no-break
            // space pasted from a page would never match. Before the
            // invisible ones, so that a separator such as U+2028 is called
            // a space here as in a tool name.
            if c.is_whitespace() && c != ' ' {
                return Err(PatternError {
                    position,
                    message: format!(
                        "U+{:04X} is a space other than the plain one (U+0020), which no tool \
                         name holds, so the pattern would never match",
                        c as u32
                    ),
                });
            }
            if unseen(c) {
                return Err(PatternError {
                    position,
                    message: format!(
                        "invisible or direction-changing characters (U+{:04X}) cannot appear in a \
                         pattern: no tool name holds one, so it would never match",
                        c as u32
                    ),
                });
            }
            // Inside, as in tool names (`send email`); around it, as no
            // tool name has it.
            if c.is_whitespace() && (position == 1 || position == last) {
                return Err(PatternError {
                    position,
                    message: "a pattern cannot begin or end with whitespace".into(),
                });
            }
            if RESERVED.contains(&c) {
                return Err(PatternError {
                    position,
                    message: format!("`{c}` is reserved; patterns use `*` and `?`"),
                });
            }
        }
        if let Some((position, c)) = first_decomposed(text) {
            return Err(PatternError {
                position,
                message: format!(
                    "U+{:04X} leaves the pattern out of Unicode's composed form (NFC), which \
                     tool names are in, so it would never match; write the pattern in NFC",
                    c as u32
                ),
            });
        }
        let first_wildcard = text.find(['*', '?']);
        let prefix_len = first_wildcard.unwrap_or(text.len());
        let shape = match first_wildcard {
            None => Shape::Exact,
            Some(_) if text == "*" => Shape::Everything,
            Some(i) if i == text.len() - 1 && text.ends_with('*') => Shape::Prefix,
            Some(_) => Shape::Glob,
        };
        Ok(ToolPattern {
            text: text.to_string(),
            shape,
            prefix_len,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The literal text before the first wildcard (the whole pattern when
    /// there is none).
    pub fn literal_prefix(&self) -> &str {
        &self.text[..self.prefix_len]
    }

    pub fn matches(&self, name: &str) -> bool {
        match self.shape {
            Shape::Exact => self.text == name,
            Shape::Everything => true,
            Shape::Prefix => name.starts_with(self.literal_prefix()),
            Shape::Glob => wildcard_match(self.text.as_bytes(), name.as_bytes()),
        }
    }
}

fn char_len(text: &[u8], at: usize) -> usize {
    match text[at] {
        b if b < 0x80 => 1,
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        _ => 2,
    }
}

/// Greedy matching with one backtrack point (the last `*`): linear in
/// practice and never exponential. `?` consumes one whole UTF-8 character.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'?' {
            p += 1;
            n += char_len(name, n);
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            let next = star_n + char_len(name, star_n);
            star = Some((star_p, next));
            p = star_p + 1;
            n = next;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// The first character (1-based position) at which `text` leaves Unicode's
/// composed form (NFC): a decomposed `é` (`e` and U+0301) looks like the
/// composed one and is another name, which would escape the patterns and
/// selectors written for it.
pub fn first_decomposed(text: &str) -> Option<(usize, char)> {
    if unicode_normalization::is_nfc(text) {
        return None;
    }
    text.char_indices()
        .enumerate()
        .find(|(_, (at, c))| !unicode_normalization::is_nfc(&text[..at + c.len_utf8()]))
        .map(|(i, (_, c))| (i + 1, c))
}

/// Characters that show as nothing, or turn the text around them, while
/// still being part of a name (Unicode's default-ignorable code points,
/// bidirectional controls, line and paragraph separators). Tool names may
/// not hold them (they would look like another name in every log and
/// escape the patterns written for it), and so neither may patterns.
pub fn invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// A character that shows as nothing, or as something else, where text is
/// read: [`invisible`] ones, blanks that are not spaces (braille's, the
/// interlinear annotation marks, the object replacement character) and
/// noncharacters. Text with one looks like text without it.
pub fn unseen(c: char) -> bool {
    invisible(c)
        || matches!(c as u32, 0x2800 | 0xFFF9..=0xFFFC | 0xFDD0..=0xFDEF | 0x13430..=0x1343F)
        || (c as u32) & 0xFFFE == 0xFFFE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_refused_with_their_position() {
        let e = ToolPattern::parse("fs\u{200b}.*").unwrap_err();
        assert_eq!(e.position, 3);
        assert!(e.message.contains("U+200B"), "{}", e.message);
        assert!(ToolPattern::parse("\u{ad}x").is_err());
        for space in ['\u{a0}', '\u{2002}', '\u{2009}', '\u{202f}', '\u{3000}'] {
            let e = ToolPattern::parse(&format!("send{space}email")).unwrap_err();
            assert_eq!(e.position, 5, "{space:?}");
            assert!(e.message.contains("plain one (U+0020)"), "{}", e.message);
        }
        assert!(ToolPattern::parse("send email").is_ok());
        // A separator is a space here, as in a tool name's message.
        let e = ToolPattern::parse("send\u{2028}email").unwrap_err();
        assert!(e.message.contains("plain one (U+0020)"), "{}", e.message);
        // Decomposed letters: the composed form only.
        assert!(ToolPattern::parse("r\u{e9}sum\u{e9}.*").is_ok());
        let e = ToolPattern::parse("re\u{301}sume.*").unwrap_err();
        assert_eq!(e.position, 3, "{}", e.message);
        assert!(e.message.contains("U+0301"), "{}", e.message);
        assert_eq!(first_decomposed("\u{2126}hm"), Some((1, '\u{2126}')));
        assert_eq!(first_decomposed("caf\u{e9}"), None);
        assert!(ToolPattern::parse("ツール.*").is_ok());
    }

    fn matches(pattern: &str, name: &str) -> bool {
        ToolPattern::parse(pattern).unwrap().matches(name)
    }

    #[test]
    fn table_of_matches() {
        let cases = [
            ("fs.write", "fs.write", true),
            ("fs.write", "fs.writes", false),
            ("payments.*", "payments.refund", true),
            ("payments.*", "payments.", true),
            ("payments.*", "payment.refund", false),
            ("*", "anything.at.all", true),
            ("*.delete", "db.users.delete", true),
            ("*.delete", "db.users.deleted", false),
            ("db.?ead", "db.read", true),
            ("db.?ead", "db.rread", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("caf?", "café", true),
            ("FS.write", "fs.write", false),
            ("send email", "send email", true),
            ("send email", "send\u{a0}email", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(matches(pattern, name), expected, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn refusals_name_the_character() {
        let err = ToolPattern::parse("fs.[rw]ite").unwrap_err();
        assert_eq!(err.position, 4);
        let err = ToolPattern::parse("fs.\twrite").unwrap_err();
        assert_eq!(err.position, 4);
        assert_eq!(ToolPattern::parse(" fs.write").unwrap_err().position, 1);
        assert_eq!(ToolPattern::parse("fs.write ").unwrap_err().position, 9);
        assert_eq!(ToolPattern::parse("").unwrap_err().position, 1);
        assert_eq!(
            ToolPattern::parse(&"a".repeat(257)).unwrap_err().position,
            257
        );
        // Counted in characters, as tool names are (and as the API's
        // `maxLength` counts): 256 two-byte characters are one pattern.
        assert!(ToolPattern::parse(&"é".repeat(256)).is_ok());
        assert_eq!(
            ToolPattern::parse(&"é".repeat(257)).unwrap_err().position,
            257
        );
    }

    #[test]
    fn shapes_are_recognized() {
        let shape = |p: &str| ToolPattern::parse(p).unwrap().shape().clone();
        assert_eq!(shape("fs.write"), Shape::Exact);
        assert_eq!(shape("*"), Shape::Everything);
        assert_eq!(shape("payments.*"), Shape::Prefix);
        assert_eq!(shape("payments.*.refund"), Shape::Glob);
        assert_eq!(
            ToolPattern::parse("pay*.x").unwrap().literal_prefix(),
            "pay"
        );
    }
}
