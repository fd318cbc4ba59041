//! The one error type. Every problem carries a position, what the parser
//! expected and what it found, so the HTTP layer can answer with a 400 that
//! points at the exact character without parsing our message text.

/// Why a query was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct ParseError {
    /// 1-based character (not byte) column in the query where the problem is.
    pub position: usize,
    /// What was expected there, e.g. "a term, a phrase or '('"; or the limit broken.
    pub expected: String,
    /// What was found: e.g. "')'", "end of query", "'TO'".
    pub found: String,
    /// A whole sentence for humans, e.g. "expected a term, a phrase or '(' but found ')'".
    pub message: String,
}

/// What the parser wants where a clause has to start.
pub(crate) const CLAUSE_START: &str = "a term, a phrase or '('";
/// How the end of the text is named in `found`.
pub(crate) const END: &str = "end of query";

impl ParseError {
    /// An "expected X but found Y" error at the 0-based character index `at`.
    /// (Internally everything counts from 0; only the error and the AST are 1-based.)
    pub(crate) fn new(at: usize, expected: impl Into<String>, found: impl Into<String>) -> Self {
        let expected = expected.into();
        let found = found.into();
        let message = format!("expected {expected} but found {found}");
        ParseError {
            position: at.saturating_add(1),
            expected,
            found,
            message,
        }
    }

    /// Replaces the generic sentence where a more helpful one exists.
    pub(crate) fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

/// Quotes a character for `found`; whitespace is named, since `' '` is hard to read.
pub(crate) fn quote_char(c: char) -> String {
    if c.is_whitespace() {
        "whitespace".to_string()
    } else {
        format!("'{c}'")
    }
}

/// Quotes a stretch of the query for `found`, shortened so that a long term
/// does not swamp the message.
pub(crate) fn quote_text(text: &[char]) -> String {
    const SHOWN: usize = 30;
    let mut s: String = text.iter().take(SHOWN).collect();
    if text.len() > SHOWN {
        s.push('…');
    }
    format!("'{s}'")
}

/// Quotes an optional character: `None` is the end of the query.
pub(crate) fn quote_opt(c: Option<char>) -> String {
    c.map_or_else(|| END.to_string(), quote_char)
}
