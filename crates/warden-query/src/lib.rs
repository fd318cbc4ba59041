//! The search language (docs/query-language.md): Lucene's query syntax as
//! analysts know it from Elasticsearch and Graylog, parsed into an AST with
//! positions. Another crate turns the AST into engine queries.
//!
//! Pure and defensive: queries come straight from users, so parsing never
//! panics, never recurses without bound and runs in time linear in the text;
//! the limits below bound what a single query can cost the engine.
//!
//! Two deliberate departures from Lucene: the default operator is AND
//! (`a b` = `a AND b`, as in Splunk and Quickwit; OR finds too much in logs),
//! and the Lucene features we do not support (regular expressions, fuzzy and
//! proximity search, boosts) are errors rather than silently read as text.

mod ast;
mod error;
mod lexer;
mod parser;

pub use ast::{Bound, MatchValue, Piece, Query};
pub use error::ParseError;

/// Longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Deepest nesting of parentheses / groups / NOT chains.
pub const MAX_DEPTH: usize = 32;
/// Most leaf nodes (Match, Range, Exists, and `*`) in one query.
pub const MAX_CLAUSES: usize = 256;
/// Most terms that start with a wildcard (`*admin`, `?oot`) in one query:
/// each reads the whole dictionary of its field.
pub const MAX_LEADING_WILDCARD_TERMS: usize = 4;
/// Most wildcard terms (`adm*`, `?oot`, `*admin`) in one query: each walks
/// the words of its field that it can match and reads their postings, so
/// 256 of `l*` over 100,000 distinct words cost seconds of both cores.
pub const MAX_WILDCARD_TERMS: usize = 32;
/// Most wildcard pieces (`*` or `?`; `**` counts once) in one term.
pub const MAX_WILDCARDS: usize = 16;
/// Most characters in one term, phrase or range bound (after escapes):
/// as many as a keyword value is indexed by (its first 1,024 bytes), so
/// that every stored keyword (up to 512 characters) and field value can
/// be asked for whole.
pub const MAX_TERM_CHARS: usize = 1_024;

/// Parses a query. An empty or whitespace-only query is [`Query::All`].
///
/// Errors carry the 1-based character position of the problem, what was
/// expected there and what was found.
pub fn parse(text: &str) -> Result<Query, ParseError> {
    if text.len() > MAX_QUERY_BYTES {
        // The first character that does not fit entirely within the limit.
        let fits = text
            .char_indices()
            .take_while(|(i, c)| i + c.len_utf8() <= MAX_QUERY_BYTES)
            .count();
        return Err(ParseError::new(
            fits,
            format!("at most {MAX_QUERY_BYTES} bytes"),
            format!("a query of {} bytes", text.len()),
        )
        .with_message(format!(
            "the query is {} bytes long; the limit is {MAX_QUERY_BYTES} bytes",
            text.len()
        )));
    }
    let chars: Vec<char> = text.chars().collect();
    parser::parse(&chars)
}
