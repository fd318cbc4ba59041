//! The parsed query. Values stay text: whether `5` is a number, a time or a
//! string is the engine's decision, which knows the field's type.

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Everything: empty/whitespace-only query, `*`, or `*:*`.
    All,
    /// `value`, `"a phrase"`, `val*e`, optionally scoped to a field.
    Match {
        field: Option<String>,
        value: MatchValue,
        position: usize,
    },
    /// `field:[a TO b]`, `field:{a TO b}`, mixed `[a TO b}`, `field:>a`, `>=`, `<`, `<=`.
    /// A bound of `*` is unbounded. Values are kept as text (the engine decides number vs time vs string).
    Range {
        field: String,
        lower: Bound,
        upper: Bound,
        position: usize,
    },
    /// `_exists_:field`
    Exists {
        field: String,
        position: usize,
    },
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
}

/// One end of a range.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Included(String),
    Excluded(String),
    Unbounded,
}

/// What a `Match` looks for.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchValue {
    /// Unquoted, no wildcard; escapes resolved.
    Term(String),
    /// Quoted ("…"); escapes (\" and \\) resolved. Quoting means "exact" to the engine.
    Phrase(String),
    /// Unquoted with at least one unescaped `*` or `?`.
    Wildcard(Vec<Piece>),
}

/// A part of a wildcard term.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Literal(String),
    /// `*`: any characters, including none.
    AnyChars,
    /// `?`: exactly one character.
    OneChar,
}

impl Query {
    /// `And` of the items, flattened one level (the items are already
    /// simplified) and collapsed when there is only one.
    pub(crate) fn and_of(items: Vec<Query>) -> Query {
        let mut out = Vec::with_capacity(items.len());
        for q in items {
            match q {
                Query::And(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        single(out).unwrap_or_else(Query::And)
    }

    /// `Or` of the items; same simplifications as [`Query::and_of`].
    pub(crate) fn or_of(items: Vec<Query>) -> Query {
        let mut out = Vec::with_capacity(items.len());
        for q in items {
            match q {
                Query::Or(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        single(out).unwrap_or_else(Query::Or)
    }
}

/// The only element, or the vector back when there is not exactly one.
fn single(mut items: Vec<Query>) -> Result<Query, Vec<Query>> {
    if items.len() == 1 {
        if let Some(q) = items.pop() {
            return Ok(q);
        }
    }
    Err(items)
}
