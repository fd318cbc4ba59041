//! Query text → tokens, one at a time.
//!
//! The lexer is context-sensitive on purpose: whether `:` splits a field
//! from its value, whether `-` is a NOT or part of a value, and where a range
//! bound ends all depend on what came just before. Keeping that small state
//! here keeps the grammar in `parser.rs` to the boolean structure. Tokens are
//! produced on demand so the first error in the text is the one reported.
//!
//! Everything works on a `[char]` so positions are character columns, and
//! every loop advances by at least one character: lexing is linear.

use crate::ast::{Bound, MatchValue, Piece};
use crate::error::{quote_char, quote_opt, quote_text, ParseError, CLAUSE_START, END};
use crate::{MAX_TERM_CHARS, MAX_WILDCARDS};

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    LParen,
    RParen,
    /// `AND` or `&&`.
    And,
    /// `OR` or `||`.
    Or,
    /// `NOT` or `!`.
    Not,
    /// `-` before a clause.
    Minus,
    /// `+` before a clause.
    Plus,
    /// `name:`; a value token (or `(`) always follows.
    Field(String),
    /// A term, wildcard term or phrase.
    Value(MatchValue),
    /// `[a TO b]` and its shapes, or a comparison `>a`, `>=a`, `<a`, `<=a`.
    Range {
        lower: Bound,
        upper: Bound,
    },
    /// `*:*`.
    MatchAll,
    Eof,
}

/// A token and the characters `[start, end)` it came from.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) kind: Kind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

pub(crate) struct Lexer<'a> {
    chars: &'a [char],
    pos: usize,
    /// Set right after a `field:` token: the next token is that field's value.
    after_field: Option<String>,
}

/// Ends an unquoted term (and a comparison value).
fn ends_term(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"')
}

/// Ends an unquoted bound inside `[…]`: colons, parentheses and the like are fine there.
fn ends_range_bound(c: char) -> bool {
    c.is_whitespace() || matches!(c, ']' | '}' | '"')
}

/// May start a field name.
pub(crate) fn is_field_start(c: char) -> bool {
    c.is_alphabetic() || matches!(c, '_' | '@')
}

/// May continue a field name: `/` for Kubernetes' label names
/// (`kubernetes.labels.app.kubernetes.io/name`).
pub(crate) fn is_field_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '@' | '/')
}

/// Whether `s` is shaped like a field name.
pub(crate) fn is_field_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_field_start) && chars.all(is_field_char)
}

/// Lucene features we refuse rather than silently treat as text.
#[derive(Clone, Copy)]
enum Unsupported {
    Regex,
    Fuzzy,
    Proximity,
    Boost,
}

fn unsupported(at: usize, what: Unsupported, expected: &str) -> ParseError {
    let (found, message) = match what {
        Unsupported::Regex => (
            "'/'",
            "regular expressions (/…/) are not supported; use wildcards * and ?, \
             or quote a value that starts with '/'",
        ),
        Unsupported::Fuzzy => (
            "'~'",
            "fuzzy searches ('~') are not supported; use wildcards * and ?, \
             or escape the character as '\\~'",
        ),
        Unsupported::Proximity => (
            "'~'",
            "proximity searches (\"…\"~N) are not supported; \
             search for the phrase, or for the words with AND",
        ),
        Unsupported::Boost => (
            "'^'",
            "boosts ('^') are not supported; remove the boost, \
             or escape the character as '\\^'",
        ),
    };
    ParseError::new(at, expected, found).with_message(message)
}

fn too_long(at: usize) -> ParseError {
    ParseError::new(
        at,
        format!("at most {MAX_TERM_CHARS} characters in a term"),
        "a longer term",
    )
    .with_message(format!(
        "a term or phrase is longer than {MAX_TERM_CHARS} characters"
    ))
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(chars: &'a [char]) -> Self {
        Lexer {
            chars,
            pos: 0,
            after_field: None,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos.saturating_add(ahead)).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn token(&self, kind: Kind, start: usize) -> Token {
        Token {
            kind,
            start,
            end: self.pos,
        }
    }

    /// Whether the characters from `start` to here are exactly `word`.
    fn raw_is(&self, start: usize, word: &str) -> bool {
        self.chars
            .get(start..self.pos)
            .is_some_and(|s| s.iter().copied().eq(word.chars()))
    }

    pub(crate) fn next_token(&mut self) -> Result<Token, ParseError> {
        if let Some(field) = self.after_field.take() {
            return self.value(&field);
        }
        self.skip_ws();
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(self.token(Kind::Eof, start));
        };
        let kind = match c {
            '(' => {
                self.pos += 1;
                Kind::LParen
            }
            ')' => {
                self.pos += 1;
                Kind::RParen
            }
            '"' => Kind::Value(MatchValue::Phrase(self.phrase()?)),
            '&' if self.peek_at(1) == Some('&') => {
                self.pos += 2;
                Kind::And
            }
            '|' if self.peek_at(1) == Some('|') => {
                self.pos += 2;
                Kind::Or
            }
            '!' => {
                self.pos += 1;
                Kind::Not
            }
            '-' => {
                self.pos += 1;
                Kind::Minus
            }
            '+' => {
                self.pos += 1;
                Kind::Plus
            }
            // Without a field; the parser accepts these only inside `field:( … )`.
            '[' | '{' => self.range()?,
            '>' | '<' => self.comparison()?,
            ']' | '}' => {
                return Err(ParseError::new(start, CLAUSE_START, quote_char(c))
                    .with_message(format!("found '{c}' without a range to close")))
            }
            '/' => return Err(unsupported(start, Unsupported::Regex, CLAUSE_START)),
            '~' => return Err(unsupported(start, Unsupported::Fuzzy, CLAUSE_START)),
            '^' => return Err(unsupported(start, Unsupported::Boost, CLAUSE_START)),
            _ => return self.word(),
        };
        Ok(self.token(kind, start))
    }

    /// An unquoted word where a clause starts: `*:*`, a `field:` prefix,
    /// an operator word, or a term.
    fn word(&mut self) -> Result<Token, ParseError> {
        let start = self.pos;
        if self.peek() == Some('*') && self.peek_at(1) == Some(':') {
            if self.peek_at(2) == Some('*') && self.peek_at(3).is_none_or(ends_term) {
                self.pos += 3;
                return Ok(self.token(Kind::MatchAll, start));
            }
            return Err(
                ParseError::new(start, "'*:*' or a field name before ':'", "'*:'").with_message(
                    "'*:' is only understood in '*:*' (everything); \
                     to search every field, leave out '*:'",
                ),
            );
        }
        if self.peek().is_some_and(is_field_start) {
            let mut end = start + 1;
            while self.chars.get(end).copied().is_some_and(is_field_char) {
                end += 1;
            }
            // `geo.*:FR`: a field name with wildcards, which Lucene expands
            // to several fields; refused rather than read as a term.
            let mut wild_end = end;
            while self
                .chars
                .get(wild_end)
                .copied()
                .is_some_and(|c| is_field_char(c) || c == '*' || c == '?')
            {
                wild_end += 1;
            }
            if wild_end > end && self.chars.get(wild_end) == Some(&':') {
                return Err(ParseError::new(
                    start + (end - start),
                    "a field name without wildcards before ':'",
                    format!("'{}'", self.chars[end]),
                )
                .with_message(
                    "field names cannot hold wildcards (geo.*:FR); name each field, \
                     as in (geo.country:FR OR geo.city:FR)",
                ));
            }
            if self.chars.get(end) == Some(&':') {
                let name: String = self
                    .chars
                    .get(start..end)
                    .unwrap_or_default()
                    .iter()
                    .collect();
                self.pos = end + 1;
                self.after_field = Some(name.clone());
                return Ok(self.token(Kind::Field(name), start));
            }
        }
        let value = self.term()?;
        let kind = if self.raw_is(start, "AND") {
            Kind::And
        } else if self.raw_is(start, "OR") {
            Kind::Or
        } else if self.raw_is(start, "NOT") {
            Kind::Not
        } else {
            Kind::Value(value)
        };
        Ok(self.token(kind, start))
    }

    /// The value right after `field:` (whitespace allowed in between).
    /// Here `-`, `+` and `!` are ordinary characters (`delta:-5`, and a
    /// lone `referer:-`, the empty value of web logs): no operator can
    /// stand between a field and its value.
    fn value(&mut self, field: &str) -> Result<Token, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let expected = format!("a value after '{field}:'");
        let Some(c) = self.peek() else {
            return Err(ParseError::new(start, expected, END));
        };
        let kind = match c {
            '(' => {
                self.pos += 1;
                Kind::LParen
            }
            '"' => Kind::Value(MatchValue::Phrase(self.phrase()?)),
            '[' | '{' => self.range()?,
            '<' if self.peek_at(1) == Some('>') => {
                return Err(not_an_operator(start, "<>", &expected))
            }
            '!' if self.peek_at(1) == Some('=') => {
                return Err(not_an_operator(start, "!=", &expected))
            }
            '=' => return Err(not_an_operator(start, "=", &expected)),
            '>' | '<' => self.comparison()?,
            ')' | ']' | '}' => return Err(ParseError::new(start, expected, quote_char(c))),
            '/' => return Err(unsupported(start, Unsupported::Regex, &expected)),
            '~' => return Err(unsupported(start, Unsupported::Fuzzy, &expected)),
            '^' => return Err(unsupported(start, Unsupported::Boost, &expected)),
            _ => {
                let value = self.term()?;
                if let Some(op) = ["AND", "OR", "NOT", "&&", "||"]
                    .into_iter()
                    .find(|op| self.raw_is(start, op))
                {
                    return Err(
                        ParseError::new(start, &expected, format!("'{op}'")).with_message(format!(
                            "expected {expected} but found the operator '{op}'; \
                             quote it to search for the word"
                        )),
                    );
                }
                Kind::Value(value)
            }
        };
        Ok(self.token(kind, start))
    }

    /// An unquoted term: escapes resolved, wildcards split out.
    fn term(&mut self) -> Result<MatchValue, ParseError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut len = 0usize;
        let mut wildcards = 0usize;
        while let Some(c) = self.peek() {
            if ends_term(c) {
                break;
            }
            let at = self.pos;
            len += 1;
            if len > MAX_TERM_CHARS {
                return Err(too_long(at));
            }
            match c {
                '\\' => literal.push(self.escaped()?),
                '*' | '?' => {
                    self.pos += 1;
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    if c == '*' && pieces.last() == Some(&Piece::AnyChars) {
                        continue; // `**` is the same as `*`
                    }
                    wildcards += 1;
                    if wildcards > MAX_WILDCARDS {
                        return Err(ParseError::new(
                            at,
                            format!("at most {MAX_WILDCARDS} wildcards in a term"),
                            format!("wildcard number {wildcards}"),
                        )
                        .with_message(format!(
                            "a term has more than {MAX_WILDCARDS} wildcards (* or ?)"
                        )));
                    }
                    pieces.push(if c == '*' {
                        Piece::AnyChars
                    } else {
                        Piece::OneChar
                    });
                }
                '~' => return Err(unsupported(at, Unsupported::Fuzzy, "a term without '~'")),
                '^' => return Err(unsupported(at, Unsupported::Boost, "a term without '^'")),
                _ => {
                    self.pos += 1;
                    literal.push(c);
                }
            }
        }
        if pieces.is_empty() {
            return Ok(MatchValue::Term(literal));
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(MatchValue::Wildcard(pieces))
    }

    /// `\x` → `x`; a backslash at the very end is an error.
    fn escaped(&mut self) -> Result<char, ParseError> {
        match self.peek_at(1) {
            Some(c) => {
                self.pos += 2;
                Ok(c)
            }
            None => Err(
                ParseError::new(self.pos, "a character after '\\'", END).with_message(
                    "a '\\' at the end of the query escapes nothing; write '\\\\' for a backslash",
                ),
            ),
        }
    }

    /// `"…"`. Only `\"` and `\\` are escapes; any other backslash is kept,
    /// so `"C:\Windows"` means what it says.
    fn phrase(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut text = String::new();
        let mut len = 0usize;
        loop {
            let at = self.pos;
            let Some(c) = self.peek() else {
                return Err(
                    ParseError::new(at, "'\"' to close the phrase", END).with_message(format!(
                        "expected '\"' to close the phrase that starts at position {} \
                         but found end of query",
                        open + 1
                    )),
                );
            };
            if c == '"' {
                self.pos += 1;
                break;
            }
            let ch = match (c, self.peek_at(1)) {
                ('\\', Some(e @ ('"' | '\\'))) => {
                    self.pos += 2;
                    e
                }
                _ => {
                    self.pos += 1;
                    c
                }
            };
            len += 1;
            if len > MAX_TERM_CHARS {
                return Err(too_long(at));
            }
            text.push(ch);
        }
        if text.is_empty() {
            return Err(ParseError::new(open, "a non-empty phrase", "'\"\"'")
                .with_message("an empty phrase (\"\") matches nothing; remove it"));
        }
        if self.peek() == Some('~') {
            return Err(unsupported(
                self.pos,
                Unsupported::Proximity,
                "a phrase without '~'",
            ));
        }
        Ok(text)
    }

    /// `[a TO b]`, `{a TO b}`, `[a TO b}`, `{a TO b]`; the cursor is on the opening bracket.
    fn range(&mut self) -> Result<Kind, ParseError> {
        let open = self.pos;
        let lower_inclusive = self.peek() == Some('[');
        self.pos += 1;
        self.skip_ws();
        let lower_at = self.pos;
        let lower_quoted = self.peek() == Some('"');
        let lower = self.bound("a lower bound", ends_range_bound)?;
        self.skip_ws();
        let to_at = self.pos;
        while self.peek().is_some_and(|c| !ends_range_bound(c)) {
            self.pos += 1;
        }
        if !self.raw_is(to_at, "TO") {
            if !lower_quoted && lower.as_deref() == Some("TO") {
                return Err(ParseError::new(
                    lower_at,
                    "a lower bound ('*' for none)",
                    "'TO'",
                ));
            }
            let found = if self.pos > to_at {
                quote_text(self.chars.get(to_at..self.pos).unwrap_or_default())
            } else {
                quote_opt(self.peek())
            };
            return Err(ParseError::new(to_at, "'TO'", &found).with_message(format!(
                "expected 'TO' (uppercase) between the bounds of the range but found {found}"
            )));
        }
        self.skip_ws();
        let upper = self.bound("an upper bound", ends_range_bound)?;
        self.skip_ws();
        let upper_inclusive = match self.peek() {
            Some(']') => true,
            Some('}') => false,
            other => {
                let found = quote_opt(other);
                return Err(
                    ParseError::new(self.pos, "']' or '}'", &found).with_message(format!(
                        "expected ']' or '}}' to close the range that starts at position {} \
                         but found {found}",
                        open + 1
                    )),
                );
            }
        };
        self.pos += 1;
        Ok(Kind::Range {
            lower: make_bound(lower, lower_inclusive),
            upper: make_bound(upper, upper_inclusive),
        })
    }

    /// `>a`, `>=a`, `<a`, `<=a`; the cursor is on `>` or `<`. The value
    /// follows directly and runs to whitespace or a parenthesis.
    fn comparison(&mut self) -> Result<Kind, ParseError> {
        let start = self.pos;
        let greater = self.peek() == Some('>');
        self.pos += 1;
        let inclusive = self.peek() == Some('=');
        if inclusive {
            self.pos += 1;
        }
        let op: String = self
            .chars
            .get(start..self.pos)
            .unwrap_or_default()
            .iter()
            .collect();
        // `<>`, `<=>`, `>==`: SQL's habits, refused rather than compared
        // with text that starts with an operator.
        if let Some(c @ ('<' | '>' | '=')) = self.peek() {
            let written = format!("{op}{c}");
            return Err(not_an_operator(
                start,
                &written,
                &format!("a value after '{op}'"),
            ));
        }
        let value = self.bound(&format!("a value after '{op}'"), ends_term)?;
        let bound = make_bound(value, inclusive);
        Ok(if greater {
            Kind::Range {
                lower: bound,
                upper: Bound::Unbounded,
            }
        } else {
            Kind::Range {
                lower: Bound::Unbounded,
                upper: bound,
            }
        })
    }

    /// One bound of a range or comparison: a phrase, `*` (`None`: unbounded),
    /// or unquoted text up to a character for which `ends` holds.
    /// Wildcards, `~` and `^` have no meaning here and are kept as text.
    fn bound(&mut self, what: &str, ends: fn(char) -> bool) -> Result<Option<String>, ParseError> {
        match self.peek() {
            None => return Err(ParseError::new(self.pos, what, END)),
            Some('"') => return self.phrase().map(Some),
            Some(c) if ends(c) => return Err(ParseError::new(self.pos, what, quote_char(c))),
            Some('*') if self.peek_at(1).is_none_or(ends) => {
                self.pos += 1;
                return Ok(None);
            }
            Some(_) => {}
        }
        let mut text = String::new();
        let mut len = 0usize;
        while let Some(c) = self.peek() {
            if ends(c) {
                break;
            }
            let at = self.pos;
            len += 1;
            if len > MAX_TERM_CHARS {
                return Err(too_long(at));
            }
            if c == '\\' {
                text.push(self.escaped()?);
            } else {
                self.pos += 1;
                text.push(c);
            }
        }
        Ok(Some(text))
    }
}

fn make_bound(value: Option<String>, inclusive: bool) -> Bound {
    match value {
        None => Bound::Unbounded,
        Some(v) if inclusive => Bound::Included(v),
        Some(v) => Bound::Excluded(v),
    }
}

/// SQL's and KQL's habits after `field:` (`<>`, `!=`, `=`), which would
/// otherwise be read as text and quietly match something else.
pub(crate) fn not_an_operator(at: usize, op: &str, expected: &str) -> ParseError {
    let instead = match op {
        "=" => "'field:value' matches equal values (and 'field:>=value' compares)",
        _ => "'-field:value' or 'NOT field:value' excludes a value",
    };
    ParseError::new(at, expected, format!("'{op}'")).with_message(format!(
        "'{op}' is not an operator here: {instead}; quote the value to search for text that starts with '{op}'"
    ))
}
