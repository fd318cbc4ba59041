//! Recursive descent over the lexer's tokens, with Lucene's precedence:
//!
//! ```text
//! query   := <empty> | or EOF
//! or      := and (OR and)*
//! and     := unary ([AND] unary)*          juxtaposition is AND
//! unary   := NOT unary | '-' primary | '+' primary | primary
//! primary := '(' or ')' | field ':' value | field ':' '(' or ')' | term | phrase | range | '*:*'
//! ```
//!
//! Recursion happens only through groups and NOT, and both pass through
//! [`Parser::enter`], which refuses to go deeper than [`MAX_DEPTH`]: the
//! stack stays small whatever the input.

use crate::ast::{MatchValue, Piece, Query};
use crate::error::{quote_text, ParseError, CLAUSE_START, END};
use crate::lexer::{is_field_name, Kind, Lexer, Token};
use crate::{MAX_CLAUSES, MAX_DEPTH, MAX_LEADING_WILDCARD_TERMS, MAX_WILDCARD_TERMS};

/// Parses the whole query.
pub(crate) fn parse(chars: &[char]) -> Result<Query, ParseError> {
    let mut p = Parser {
        lexer: Lexer::new(chars),
        chars,
        peeked: None,
        depth: 0,
        clauses: 0,
        scans: 0,
        wildcards: 0,
    };
    if p.peek()?.kind == Kind::Eof {
        return Ok(Query::All);
    }
    let query = p.or(None)?;
    let tok = p.bump()?;
    match tok.kind {
        Kind::Eof => Ok(query),
        Kind::RParen => {
            Err(ParseError::new(tok.start, END, "')'")
                .with_message("found ')' without a matching '('"))
        }
        _ => Err(ParseError::new(tok.start, END, p.found(&tok))),
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    chars: &'a [char],
    peeked: Option<Token>,
    /// Groups and NOTs currently open.
    depth: usize,
    /// Leaves produced so far.
    clauses: usize,
    /// Terms so far that start with a wildcard.
    scans: usize,
    /// Wildcard terms so far (see [`MAX_WILDCARD_TERMS`]).
    wildcards: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<&Token, ParseError> {
        let tok = match self.peeked.take() {
            Some(t) => t,
            None => self.lexer.next_token()?,
        };
        Ok(self.peeked.insert(tok))
    }

    fn bump(&mut self) -> Result<Token, ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next_token(),
        }
    }

    /// How a token is named in `found`.
    fn found(&self, tok: &Token) -> String {
        if tok.kind == Kind::Eof {
            END.to_string()
        } else {
            quote_text(self.chars.get(tok.start..tok.end).unwrap_or_default())
        }
    }

    fn expected_clause(&self, tok: &Token) -> ParseError {
        ParseError::new(tok.start, CLAUSE_START, self.found(tok))
    }

    /// Opens a group or NOT at `tok`, refusing nesting beyond [`MAX_DEPTH`].
    fn enter(&mut self, tok: &Token) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::new(
                tok.start,
                format!("at most {MAX_DEPTH} levels of nesting"),
                format!("level {} at {}", self.depth, self.found(tok)),
            )
            .with_message(format!(
                "the query nests groups and NOTs more than {MAX_DEPTH} levels deep"
            )));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Counts a leaf starting at the 0-based index `at`, refusing more than [`MAX_CLAUSES`].
    fn leaf(&mut self, at: usize, query: Query) -> Result<Query, ParseError> {
        count(
            &mut self.clauses,
            MAX_CLAUSES,
            at,
            "clauses",
            "clause",
            "; split it into several searches",
        )?;
        if let Query::Match {
            value: MatchValue::Wildcard(pieces),
            ..
        } = &query
        {
            count(
                &mut self.wildcards,
                MAX_WILDCARD_TERMS,
                at,
                "wildcard terms",
                "wildcard term",
                " (each reads the words it can match); split it into several searches",
            )?;
            // A term that starts with a wildcard has no prefix to narrow the
            // field's dictionary by: it walks every word the field holds.
            if matches!(pieces.first(), Some(Piece::AnyChars | Piece::OneChar)) {
                count(
                    &mut self.scans,
                    MAX_LEADING_WILDCARD_TERMS,
                    at,
                    "terms that start with a wildcard",
                    "such term",
                    " (each reads every word of its field); split it into several searches \
                     or give the terms a first letter",
                )?;
            }
        }
        Ok(query)
    }

    fn or(&mut self, scope: Option<&str>) -> Result<Query, ParseError> {
        let mut items = vec![self.and(scope)?];
        while self.peek()?.kind == Kind::Or {
            self.bump()?;
            items.push(self.and(scope)?);
        }
        Ok(Query::or_of(items))
    }

    fn and(&mut self, scope: Option<&str>) -> Result<Query, ParseError> {
        let mut items = vec![self.unary(scope)?];
        loop {
            match self.peek()?.kind {
                Kind::Or | Kind::RParen | Kind::Eof => break,
                Kind::And => {
                    self.bump()?;
                    items.push(self.unary(scope)?);
                }
                // Anything else starts a clause (or is an error `unary` reports): implicit AND.
                _ => items.push(self.unary(scope)?),
            }
        }
        Ok(Query::and_of(items))
    }

    fn unary(&mut self, scope: Option<&str>) -> Result<Query, ParseError> {
        match self.peek()?.kind {
            Kind::Not => {
                let tok = self.bump()?;
                self.enter(&tok)?;
                let inner = self.unary(scope)?;
                self.leave();
                Ok(Query::Not(Box::new(inner)))
            }
            Kind::Minus => {
                let tok = self.bump()?;
                self.enter(&tok)?;
                let inner = self.primary(scope)?;
                self.leave();
                Ok(Query::Not(Box::new(inner)))
            }
            Kind::Plus => {
                self.bump()?;
                self.primary(scope)
            }
            _ => self.primary(scope),
        }
    }

    /// A group, a field clause or a leaf. `scope` is the field of an
    /// enclosing `field:( … )`, given to clauses that name no field.
    fn primary(&mut self, scope: Option<&str>) -> Result<Query, ParseError> {
        let tok = self.bump()?;
        let at = tok.start;
        let position = at + 1;
        match tok.kind {
            Kind::LParen => self.group(&tok, scope),
            Kind::Field(ref name) => {
                let name = name.clone();
                self.fielded(name, &tok)
            }
            Kind::MatchAll => self.leaf(at, Query::All),
            // `field:(=500)`, `field:(!=500)`: SQL's habits inside a
            // field's group, refused as after `field:`.
            Kind::Value(_) if scope.is_some() && self.chars.get(at) == Some(&'=') => {
                let negated = at > 0 && self.chars.get(at - 1) == Some(&'!');
                let (from, op) = if negated { (at - 1, "!=") } else { (at, "=") };
                Err(crate::lexer::not_an_operator(
                    from,
                    op,
                    &format!("a value in '{}:( … )'", scope.unwrap_or_default()),
                ))
            }
            Kind::Value(value) => {
                let query = match (scope, value) {
                    (None, v) if is_match_all(&v) => Query::All,
                    (Some(f), v) if is_match_all(&v) => Query::Exists {
                        field: f.to_string(),
                        position,
                    },
                    (field, value) => Query::Match {
                        field: field.map(str::to_string),
                        value,
                        position,
                    },
                };
                self.leaf(at, query)
            }
            Kind::Range { lower, upper } => match scope {
                Some(field) => {
                    let query = Query::Range {
                        field: field.to_string(),
                        lower,
                        upper,
                        position,
                    };
                    self.leaf(at, query)
                }
                None => Err(ParseError::new(
                    at,
                    "a field before the range",
                    quote_text(self.chars.get(at..tok.end).unwrap_or_default()),
                )
                .with_message(
                    "a range needs a field, e.g. 'port:[1 TO 1024]' or 'port:>1024'; \
                         quote a value to search for text that starts with '<', '>', '[' or '{'",
                )),
            },
            _ => Err(self.expected_clause(&tok)),
        }
    }

    /// `( … )`; `open` is the `(` token.
    fn group(&mut self, open: &Token, scope: Option<&str>) -> Result<Query, ParseError> {
        self.enter(open)?;
        let query = self.or(scope)?;
        let close = self.bump()?;
        if close.kind != Kind::RParen {
            let found = self.found(&close);
            return Err(
                ParseError::new(close.start, "')'", &found).with_message(format!(
                    "expected ')' to close the '(' at position {} but found {found}",
                    open.start + 1
                )),
            );
        }
        self.leave();
        Ok(query)
    }

    /// What follows `name:`; `field_tok` is the `name:` token.
    fn fielded(&mut self, name: String, field_tok: &Token) -> Result<Query, ParseError> {
        let at = field_tok.start;
        let position = at + 1;
        let tok = self.bump()?;
        if name == "_exists_" {
            return match tok.kind {
                Kind::Value(MatchValue::Term(field)) if is_field_name(&field) => {
                    self.leaf(at, Query::Exists { field, position })
                }
                _ => Err(ParseError::new(
                    tok.start,
                    "a field name after '_exists_:'",
                    self.found(&tok),
                )),
            };
        }
        match tok.kind {
            Kind::LParen => self.group(&tok, Some(&name)),
            Kind::Value(value) if is_match_all(&value) => self.leaf(
                at,
                Query::Exists {
                    field: name,
                    position,
                },
            ),
            Kind::Value(value) => self.leaf(
                at,
                Query::Match {
                    field: Some(name),
                    value,
                    position,
                },
            ),
            Kind::Range { lower, upper } => self.leaf(
                at,
                Query::Range {
                    field: name,
                    lower,
                    upper,
                    position,
                },
            ),
            // The lexer always follows `name:` with one of the above.
            _ => Err(ParseError::new(
                tok.start,
                format!("a value after '{name}:'"),
                self.found(&tok),
            )),
        }
    }
}

/// A term that is only `*` (after collapsing `**`).
fn is_match_all(value: &MatchValue) -> bool {
    matches!(value, MatchValue::Wildcard(p) if p.as_slice() == [Piece::AnyChars])
}

/// Counts one more of something a query may hold at most `max` of,
/// refusing the one past it where it starts (`at`).
fn count(
    counter: &mut usize,
    max: usize,
    at: usize,
    plural: &str,
    one: &str,
    advice: &str,
) -> Result<(), ParseError> {
    *counter += 1;
    if *counter <= max {
        return Ok(());
    }
    Err(ParseError::new(
        at,
        format!("at most {max} {plural}"),
        format!("{one} number {counter}"),
    )
    .with_message(format!("the query has more than {max} {plural}{advice}")))
}
