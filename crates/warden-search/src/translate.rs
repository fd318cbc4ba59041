//! The search language's AST as tantivy queries. Field names resolve to
//! the index's fields (`schema`); keyword matches fold case unless quoted.

use std::ops::Bound as StdBound;

use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, InvertedIndexRangeQuery, Occur, PhraseQuery, Query,
    RangeQuery, RegexPhraseQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::Term;
use warden_core::event::Severity;
use warden_core::time::Millis;
use warden_query::{Bound, MatchValue, Piece, Query as Ast};

use crate::address::{self, AddressSpan, Spanned};
use crate::analyzer::{
    parts_across_pieces, parts_of, separates_pieces, separates_words, trimmed, word_span, words,
};
use crate::run::Stop;
use crate::schema::{
    field_name, fraction_past_doubles, is_number_text, kv_term, num_term, Fields, NumKey,
    ALWAYS_PRESENT, MAX_KEYWORD_BYTES, NAME_END,
};
use crate::stoppable::StoppableQuery;
use crate::time_value::parse_time_value;
use crate::SearchError;

/// Where a query's field name points.
enum Target {
    Message,
    Time(TimeField),
    Severity,
    Keyword(String),
}

fn resolve(name: Option<&str>) -> Target {
    match name {
        None | Some("message") | Some("msg") => Target::Message,
        Some("timestamp") | Some("@timestamp") => Target::Time(TimeField::Timestamp),
        Some("received_at") => Target::Time(TimeField::ReceivedAt),
        Some("severity") | Some("level") => Target::Severity,
        Some(top @ ("id" | "source" | "host" | "program" | "agent_id" | "session_id" | "tags")) => {
            Target::Keyword(top.to_string())
        }
        Some(other) => Target::Keyword(field_name(other.strip_prefix("fields.").unwrap_or(other))),
    }
}

#[derive(Clone, Copy)]
enum TimeField {
    Timestamp,
    ReceivedAt,
}

impl TimeField {
    fn name(self) -> &'static str {
        match self {
            TimeField::Timestamp => "timestamp",
            TimeField::ReceivedAt => "received_at",
        }
    }

    fn field(self, fields: &Fields) -> Field {
        match self {
            TimeField::Timestamp => fields.timestamp,
            TimeField::ReceivedAt => fields.received_at,
        }
    }
}

pub struct Translator<'a> {
    pub fields: &'a Fields,
    /// The request's time, for `now` in time values.
    pub now: Millis,
    /// Wildcard terms so far that read the whole word dictionary because
    /// they may start inside a word (see [`MAX_INNER_WILDCARDS`]).
    inner_wildcards: std::cell::Cell<usize>,
    /// Blocks and spans of addresses so far (see [`MAX_ADDRESS_WALKS`]).
    address_walks: std::cell::Cell<usize>,
    /// Ranges over a field's values so far (see [`MAX_VALUE_RANGES`]).
    value_ranges: std::cell::Cell<usize>,
    /// What stops the walks of the word dictionary midway.
    stop: Stop,
}

/// Most ranges over a keyword field's values (text, numbers or
/// addresses) in one query: each reads every distinct value between its
/// bounds, which may be every value the field holds in every tenant's
/// events (227 text ranges over 300,000 distinct user names took 12.7 s).
/// Ranges over `timestamp`, `received_at` and `severity` read columns,
/// not values, and are not counted.
pub const MAX_VALUE_RANGES: usize = 8;

/// Most blocks and spans of addresses in one query: each reads every
/// distinct value of its field, as a leading wildcard does, and is
/// bounded alike.
pub const MAX_ADDRESS_WALKS: usize = 4;

/// Most wildcard terms of several pieces (`etc/passw*`) in one query: such
/// a term may start at any piece of a longer word (`/etc/passwd`), so like
/// a leading wildcard it reads every word of the message dictionary.
pub const MAX_INNER_WILDCARDS: usize = 4;

type Boxed = Box<dyn Query>;

impl<'a> Translator<'a> {
    pub fn new(fields: &'a Fields, now: Millis) -> Self {
        Translator {
            fields,
            now,
            inner_wildcards: std::cell::Cell::new(0),
            address_walks: std::cell::Cell::new(0),
            value_ranges: std::cell::Cell::new(0),
            stop: Stop::new(&Default::default(), None),
        }
    }

    /// Walks of the word dictionary (wildcards, address spans) stop
    /// midway under `stop`.
    pub fn stopping(mut self, stop: Stop) -> Self {
        self.stop = stop;
        self
    }

    pub fn translate(&self, ast: &Ast) -> Result<Boxed, SearchError> {
        Ok(match ast {
            Ast::All => Box::new(AllQuery),
            Ast::Match {
                field,
                value,
                position,
            } => self.matching(field.as_deref(), value, *position)?,
            Ast::Range {
                field,
                lower,
                upper,
                position,
            } => self.range(field, lower, upper, *position)?,
            Ast::Exists { field, position } => self.exists(field, *position)?,
            Ast::And(children) => {
                let mut clauses = Vec::with_capacity(children.len() + 1);
                for child in children {
                    match child {
                        Ast::Not(inner) => clauses.push((Occur::MustNot, self.translate(inner)?)),
                        other => clauses.push((Occur::Must, self.translate(other)?)),
                    }
                }
                if clauses.iter().all(|(occur, _)| *occur == Occur::MustNot) {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            Ast::Or(children) => Box::new(BooleanQuery::new(
                children
                    .iter()
                    .map(|c| Ok((Occur::Should, self.translate(c)?)))
                    .collect::<Result<Vec<_>, SearchError>>()?,
            )),
            Ast::Not(inner) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery) as Boxed),
                (Occur::MustNot, self.translate(inner)?),
            ])),
        })
    }

    fn matching(
        &self,
        field: Option<&str>,
        value: &MatchValue,
        position: usize,
    ) -> Result<Boxed, SearchError> {
        let f = self.fields;
        match (resolve(field), value) {
            (Target::Message, MatchValue::Term(text) | MatchValue::Phrase(text)) => {
                // As an empty phrase is refused: punctuation and spaces
                // alone are no word of the message, and would find nothing.
                if words(text).is_empty() {
                    return Err(no_word(text, position, false));
                }
                Ok(self.message_words(text))
            }
            (Target::Message, MatchValue::Wildcard(pieces)) => {
                let mut words = wildcard_words(pieces);
                // `;*` or `.*`: the punctuation is cut away and a lone
                // wildcard would be left, finding every event.
                let literal = |w: &Vec<Piece>| w.iter().any(|p| matches!(p, Piece::Literal(_)));
                if !words.iter().any(literal)
                    && pieces.iter().any(|p| matches!(p, Piece::Literal(_)))
                {
                    return Err(no_word(&wildcard_text(pieces), position, true));
                }
                let Some(pieces) = words.pop() else {
                    return Ok(Box::new(EmptyQuery));
                };
                if let Some(at) = words.iter().position(|w| !is_literal(w)) {
                    return Err(SearchError::Query {
                        position,
                        message: format!(
                            "a wildcard applies within one word, and word {} of this term has one \
                             before the punctuation that ends it: put wildcards in the term's last \
                             word only",
                            at + 1
                        ),
                    });
                }
                let pieces = &pieces[..];
                let mut pattern = wildcard_regex(pieces, true);
                // Terms that read the whole dictionary: one whose last word
                // starts with a wildcard after other words (`a=*00*`; a
                // lone leading wildcard is bounded by the parser), and one
                // of several pieces (below).
                let starts_wild = !matches!(pieces.first(), Some(Piece::Literal(_)));
                let several_pieces = matches!(
                    pieces.first(),
                    Some(Piece::Literal(first)) if first.contains(separates_pieces)
                );
                if (starts_wild && !words.is_empty()) || several_pieces {
                    let seen = self.inner_wildcards.get() + 1;
                    if seen > MAX_INNER_WILDCARDS {
                        return Err(SearchError::Query {
                            position,
                            message: format!(
                                "at most {MAX_INNER_WILDCARDS} wildcard terms that read every word \
                                 (of several pieces, such as etc/passw*, or of several words whose \
                                 last starts with a wildcard, such as a=*00*) in one query"
                            ),
                        });
                    }
                    self.inner_wildcards.set(seen);
                }
                // A term of several pieces may be a run of pieces inside a
                // longer word, which is indexed whole: it may follow any
                // text that ends a piece (`etc/passw*` in `/etc/passwd`).
                if several_pieces {
                    // Every character that cuts pieces is ASCII.
                    let cuts: String = (0u8..128)
                        .map(char::from)
                        .filter(|c| separates_pieces(*c))
                        .map(|c| escape(&c.to_string()))
                        .collect();
                    pattern = format!("(?:.*[{cuts}])?{pattern}");
                }
                if words.is_empty() {
                    return self.regex(&pattern, f.message, position);
                }
                Ok(self.words_then_wildcard(&words, pattern, position))
            }
            (Target::Keyword(name), MatchValue::Phrase(text)) => self.or_addresses_in(
                &name,
                text,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.kv, &kv_term(&name, text)),
                    IndexRecordOption::Basic,
                )),
                position,
            ),
            (Target::Keyword(name), MatchValue::Term(text)) => {
                // Text without case is one exact term; text with case
                // (`1E3` as much as `root`) matches whatever its case.
                let exact = || -> Boxed {
                    Box::new(TermQuery::new(
                        Term::from_field_text(f.kv, &kv_term(&name, text)),
                        IndexRecordOption::Basic,
                    ))
                };
                let text_clause: Boxed = if text.to_lowercase() == text.to_uppercase() {
                    exact()
                } else {
                    let pattern = format!("{}\\x01(?i:{})", escape(&name), escape(cut(text)));
                    // A value too long for a case-folding automaton (past
                    // a few hundred letters: a token, a blob) is matched
                    // as typed, case included.
                    self.regex(&pattern, f.kv, position)
                        .unwrap_or_else(|_| exact())
                };
                // A number also finds the values equal to it, as a range
                // does: `n:1.0` finds 1, `f:1.50` finds 1.5. A leading
                // zero (`zip:02134`) keeps the value text, as it does for
                // values indexed.
                // A fraction past 2^52 equals no value (every one there is whole).
                let key = NumKey::parse(text)
                    .filter(|_| is_number_text(text) && fraction_past_doubles(text).is_none());
                Ok(match key {
                    Some(key) => Box::new(BooleanQuery::new(vec![
                        (Occur::Should, text_clause),
                        (
                            Occur::Should,
                            Box::new(TermQuery::new(
                                Term::from_field_bytes(f.num, &num_term(&name, key)),
                                IndexRecordOption::Basic,
                            )),
                        ),
                    ])),
                    None => self.or_addresses_in(&name, text, text_clause, position)?,
                })
            }
            (Target::Keyword(name), MatchValue::Wildcard(pieces)) => {
                let pattern = format!(
                    "{}\\x01(?i:{})",
                    escape(&name),
                    wildcard_regex(pieces, false)
                );
                self.regex(&pattern, f.kv, position)
            }
            (Target::Severity, MatchValue::Term(text) | MatchValue::Phrase(text)) => {
                let severity = Severity::parse_loose(text).ok_or_else(|| SearchError::Query {
                    position,
                    message: format!(
                        "`{text}` is not a severity; use critical, high, medium, low or info"
                    ),
                })?;
                Ok(Box::new(TermQuery::new(
                    Term::from_field_u64(f.severity, severity.rank()),
                    IndexRecordOption::Basic,
                )))
            }
            (Target::Severity, MatchValue::Wildcard(pieces)) => {
                let pattern = format!("severity\\x01(?i:{})", wildcard_regex(pieces, false));
                self.regex(&pattern, f.kv, position)
            }
            (Target::Time(time), MatchValue::Term(text) | MatchValue::Phrase(text)) => {
                let (from, to) = parse_time_value(text, self.now)
                    .ok_or_else(|| time_error(time.name(), text, position))?;
                let field = time.field(f);
                Ok(Box::new(RangeQuery::new(
                    StdBound::Included(Term::from_field_i64(field, from)),
                    StdBound::Excluded(Term::from_field_i64(field, to)),
                )))
            }
            (Target::Time(time), MatchValue::Wildcard(_)) => Err(SearchError::Query {
                position,
                message: format!(
                    "`{0}` is a time; use a range such as {0}:>now-1h",
                    time.name()
                ),
            }),
        }
    }

    /// Words of a bare term or phrase in `message`: one word is a term
    /// query, several a phrase of whole words, each at the position the
    /// analyzer gives it (a word of several parts takes several).
    /// A word of several pieces (`etc/passwd`) may be a run of pieces
    /// inside a longer word (`/etc/passwd`) that is indexed only whole and
    /// by piece, and a lone word of several parts (`example.com`) a run of
    /// parts inside a longer piece (`evil.example.com`): it is sought as its
    /// parts, following each other (alone, also as the whole term, which is
    /// exact and cheap).
    fn message_words(&self, text: &str) -> Boxed {
        let term = |word: &str| Term::from_field_text(self.fields.message, word);
        let found = words(text);
        if let [(_, _, word)] = &found[..] {
            let whole: Boxed = Box::new(TermQuery::new(term(word), IndexRecordOption::Basic));
            return match parts_of(word) {
                Some(parts) if parts.len() > 1 => {
                    let parts = parts
                        .iter()
                        .enumerate()
                        .map(|(i, p)| (i, term(p)))
                        .collect();
                    Box::new(BooleanQuery::new(vec![
                        (Occur::Should, whole),
                        (Occur::Should, Box::new(PhraseQuery::new_with_offset(parts))),
                    ]))
                }
                _ => whole,
            };
        }
        let mut terms: Vec<(usize, Term)> = Vec::new();
        let mut position = 0;
        for (_, _, word) in found {
            match parts_across_pieces(&word) {
                Some(parts) => {
                    for (i, part) in parts.iter().enumerate() {
                        terms.push((position + i, term(part)));
                    }
                }
                None => terms.push((position, term(&word))),
            }
            position += word_span(&word);
        }
        match terms.len() {
            0 => Box::new(EmptyQuery),
            1 => Box::new(TermQuery::new(
                terms.pop().expect("one term").1,
                IndexRecordOption::Basic,
            )),
            _ => Box::new(PhraseQuery::new_with_offset(terms)),
        }
    }

    /// A wildcard term that spans words (`size=5*`, `exe=/usr/bin/py*`):
    /// its literal words in a row, as a phrase of them is sought, then a
    /// word the wildcard matches, at the position that follows them.
    fn words_then_wildcard(&self, words: &[Vec<Piece>], last: String, position: usize) -> Boxed {
        let mut terms: Vec<(usize, String)> = Vec::new();
        let mut at = 0;
        for word in words {
            let word = literal_text(word);
            match parts_across_pieces(&word) {
                Some(parts) => {
                    for (i, part) in parts.iter().enumerate() {
                        terms.push((at + i, format!("(?s){}", escape(part))));
                    }
                }
                None => terms.push((at, format!("(?s){}", escape(&word)))),
            }
            at += word_span(&word);
        }
        terms.push((at, format!("(?s){last}")));
        // tantivy bounds the words of all the phrase's terms together:
        // each literal word is one.
        let literal = u32::try_from(terms.len() - 1).unwrap_or(u32::MAX);
        let mut phrase = RegexPhraseQuery::new_with_offset(self.fields.message, terms);
        phrase.set_max_expansions(MAX_WILDCARD_WORDS.saturating_add(literal));
        Box::new(Expansions { phrase, position })
    }

    /// The values of `name` that are addresses in `span`: a walk of every
    /// value of the name.
    fn addresses(&self, field: Field, name: &str, span: AddressSpan) -> Boxed {
        Box::new(StoppableQuery::new(
            field,
            address::InSpan::new(name, span),
            self.stop.clone(),
        ))
    }

    /// A wildcard's automaton. `.` matches newlines too (`(?s)`): a
    /// multi-line value (a stack trace, a script) is one value to a
    /// wildcard, as it is to an exact match. The automaton's size is
    /// bounded, and a long fixed text (about 976 bytes) reaches the bound
    /// with a single wildcard: the refusal says both causes.
    fn regex(&self, pattern: &str, field: Field, position: usize) -> Result<Boxed, SearchError> {
        tantivy_fst::Regex::new(&format!("(?s){pattern}"))
            .map(|regex| Box::new(StoppableQuery::new(field, regex, self.stop.clone())) as Boxed)
            .map_err(|_| SearchError::Query {
                position,
                message: "this wildcard term is too large to search: shorten its fixed text or use fewer wildcards"
                    .into(),
            })
    }

    /// A value written as a block of addresses (`10.0.0.0/8`) finds the
    /// addresses in it as well as itself (a rule's field may hold the
    /// block); an address finds itself however a log wrote it.
    fn or_addresses_in(
        &self,
        name: &str,
        text: &str,
        itself: Boxed,
        position: usize,
    ) -> Result<Boxed, SearchError> {
        let kv = self.fields.kv;
        let mut clauses = vec![(Occur::Should, itself)];
        if let Some(span) = AddressSpan::of_block(text) {
            self.address_walk(position)?;
            clauses.push((Occur::Should, self.addresses(kv, name, span)));
        }
        // Hex digits in any case (`::ffff:A00:eb`): each spelling matched
        // as the field's keyword terms are without quotes.
        let mut spellings = address::spellings(text);
        spellings.retain(|s| *s == s.to_lowercase());
        for spelling in spellings {
            let pattern = format!("{}\\x01(?i:{})", escape(name), escape(&spelling));
            clauses.push((Occur::Should, self.regex(&pattern, kv, position)?));
        }
        if clauses.len() == 1 {
            return Ok(clauses.remove(0).1);
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    /// Counts a block or span of addresses, which reads every value of
    /// its field (see [`MAX_ADDRESS_WALKS`]).
    fn address_walk(&self, position: usize) -> Result<(), SearchError> {
        counted(&self.address_walks, MAX_ADDRESS_WALKS, position, || {
            format!(
                "at most {MAX_ADDRESS_WALKS} blocks or spans of addresses (such as \
                 src_ip:10.0.0.0/8 or src_ip:[10.0.0.1 TO 10.0.0.9]) in one query: each \
                 reads every value of its field; split it into several searches"
            )
        })
    }

    /// Counts a range over a keyword field's values (see
    /// [`MAX_VALUE_RANGES`]).
    fn value_range(&self, position: usize) -> Result<(), SearchError> {
        counted(&self.value_ranges, MAX_VALUE_RANGES, position, || {
            format!(
                "at most {MAX_VALUE_RANGES} ranges over a field's values (such as \
                 user:[a TO m] or status:>=500) in one query: each reads every value \
                 between its bounds; split it into several searches"
            )
        })
    }

    fn range(
        &self,
        field: &str,
        lower: &Bound,
        upper: &Bound,
        position: usize,
    ) -> Result<Boxed, SearchError> {
        let f = self.fields;
        // Open at both ends, a range says only that the field has a value
        // (Lucene's `field:[* TO *]`), whatever its type.
        if matches!((lower, upper), (Bound::Unbounded, Bound::Unbounded)) {
            return self.exists(field, position);
        }
        match resolve(Some(field)) {
            Target::Message => Err(SearchError::Query {
                position,
                message: "`message` is text; ranges apply to numbers, times and keyword fields"
                    .into(),
            }),
            Target::Time(time) => {
                let (field, name) = (time.field(f), time.name());
                let bound = |b: &Bound, upper: bool| -> Result<StdBound<Term>, SearchError> {
                    Ok(match b {
                        Bound::Unbounded => StdBound::Unbounded,
                        Bound::Included(text) | Bound::Excluded(text) => {
                            let (from, to) = parse_time_value(text, self.now)
                                .ok_or_else(|| time_error(name, text, position))?;
                            // A day or a minute as a bound covers all of it.
                            let inclusive = matches!(b, Bound::Included(_));
                            match (upper, inclusive) {
                                (false, true) => {
                                    StdBound::Included(Term::from_field_i64(field, from))
                                }
                                (false, false) => {
                                    StdBound::Included(Term::from_field_i64(field, to))
                                }
                                (true, true) => StdBound::Excluded(Term::from_field_i64(field, to)),
                                (true, false) => {
                                    StdBound::Excluded(Term::from_field_i64(field, from))
                                }
                            }
                        }
                    })
                };
                Ok(fast_range(bound(lower, false)?, bound(upper, true)?))
            }
            Target::Severity => {
                let bound = |b: &Bound| -> Result<StdBound<Term>, SearchError> {
                    let rank = |text: &str| {
                        Severity::parse_loose(text)
                            .map(|s| Term::from_field_u64(f.severity, s.rank()))
                            .ok_or_else(|| SearchError::Query {
                                position,
                                message: format!("`{text}` is not a severity; use critical, high, medium, low or info"),
                            })
                    };
                    Ok(match b {
                        Bound::Unbounded => StdBound::Unbounded,
                        Bound::Included(t) => StdBound::Included(rank(t)?),
                        Bound::Excluded(t) => StdBound::Excluded(rank(t)?),
                    })
                };
                Ok(fast_range(bound(lower)?, bound(upper)?))
            }
            Target::Keyword(name) => {
                self.value_range(position)?;
                // A number past f64's range (`1e400`) is still a number:
                // as a bound it is beyond every value.
                if let (Some(lo), Some(hi)) = (bound_number(lower), bound_number(upper)) {
                    // Past 2^52 every value is whole: a bound with a
                    // fraction there is the whole number on its inner side.
                    let snap = |b: &Bound, lower_side: bool| match b {
                        Bound::Included(t) | Bound::Excluded(t) => match fraction_past_doubles(t) {
                            Some(floor) => Bound::Included(
                                if lower_side { floor + 1 } else { floor }.to_string(),
                            ),
                            None => b.clone(),
                        },
                        Bound::Unbounded => Bound::Unbounded,
                    };
                    let (lower, upper) = (&snap(lower, true), &snap(upper, false));
                    if lo == Some(f64::INFINITY) || hi == Some(f64::NEG_INFINITY) {
                        return Ok(Box::new(EmptyQuery));
                    }
                    let (lo, hi) = (lo.filter(|x| x.is_finite()), hi.filter(|x| x.is_finite()));
                    let (lower, upper) = (
                        if lo.is_some() {
                            lower
                        } else {
                            &Bound::Unbounded
                        },
                        if hi.is_some() {
                            upper
                        } else {
                            &Bound::Unbounded
                        },
                    );
                    let mut prefix = name.as_bytes().to_vec();
                    prefix.push(NAME_END as u8);
                    // A finite bound's text is a number (`lo`, `hi`).
                    let term = |t: &str| {
                        let key = NumKey::parse(t).unwrap_or(NumKey::of_f64(0.0));
                        Term::from_field_bytes(f.num, &num_term(&name, key))
                    };
                    let lower = match (lower, lo) {
                        (Bound::Included(t), Some(_)) => StdBound::Included(term(t)),
                        (Bound::Excluded(t), Some(_)) => StdBound::Excluded(term(t)),
                        _ => StdBound::Included(Term::from_field_bytes(f.num, &prefix)),
                    };
                    let upper = match (upper, hi) {
                        (Bound::Included(t), Some(_)) => StdBound::Included(term(t)),
                        (Bound::Excluded(t), Some(_)) => StdBound::Excluded(term(t)),
                        _ => {
                            let mut end = prefix.clone();
                            *end.last_mut().expect("prefix ends with the separator") += 1;
                            StdBound::Excluded(Term::from_field_bytes(f.num, &end))
                        }
                    };
                    return Ok(Box::new(InvertedIndexRangeQuery::new(lower, upper)));
                }
                // Addresses compare as addresses (`10.0.0.10` after
                // `10.0.0.9`), not as the text that writes them.
                if let Some(spanned) = AddressSpan::between(given(lower), given(upper)) {
                    return Ok(match spanned {
                        Spanned::Span(span) => {
                            self.address_walk(position)?;
                            self.addresses(f.kv, &name, span)
                        }
                        Spanned::Nothing => Box::new(EmptyQuery),
                    });
                }
                // Text bounds compare as text, case included.
                let text = |b: &Bound| match b {
                    Bound::Unbounded => None,
                    Bound::Included(t) | Bound::Excluded(t) => Some(t.clone()),
                };
                let lower = match (lower, text(lower)) {
                    (Bound::Included(_), Some(t)) => {
                        StdBound::Included(Term::from_field_text(f.kv, &kv_term(&name, &t)))
                    }
                    (Bound::Excluded(_), Some(t)) => {
                        StdBound::Excluded(Term::from_field_text(f.kv, &kv_term(&name, &t)))
                    }
                    _ => StdBound::Included(Term::from_field_text(f.kv, &kv_term(&name, ""))),
                };
                let upper = match (upper, text(upper)) {
                    (Bound::Included(_), Some(t)) => {
                        StdBound::Included(Term::from_field_text(f.kv, &kv_term(&name, &t)))
                    }
                    (Bound::Excluded(_), Some(t)) => {
                        StdBound::Excluded(Term::from_field_text(f.kv, &kv_term(&name, &t)))
                    }
                    _ => StdBound::Excluded(Term::from_field_text(f.kv, &format!("{name}\u{2}"))),
                };
                Ok(Box::new(InvertedIndexRangeQuery::new(lower, upper)))
            }
        }
    }

    fn exists(&self, field: &str, _position: usize) -> Result<Boxed, SearchError> {
        // `fields` itself: the event has any further field (a flattened
        // field named `fields` is `fields.fields`).
        if field == "fields" {
            return Ok(Box::new(TermQuery::new(
                Term::from_field_text(self.fields.exists, "fields"),
                IndexRecordOption::Basic,
            )));
        }
        let name = match resolve(Some(field)) {
            Target::Message => "message".to_string(),
            Target::Time(..) | Target::Severity => return Ok(Box::new(AllQuery)),
            Target::Keyword(name) if ALWAYS_PRESENT.contains(&name.as_str()) => {
                return Ok(Box::new(AllQuery))
            }
            Target::Keyword(name) => name,
        };
        Ok(Box::new(TermQuery::new(
            Term::from_field_text(self.fields.exists, &name),
            IndexRecordOption::Basic,
        )))
    }
}

/// Counts one more costly clause against `most` a query, refusing the
/// one past it at its position.
fn counted(
    seen: &std::cell::Cell<usize>,
    most: usize,
    position: usize,
    message: impl FnOnce() -> String,
) -> Result<(), SearchError> {
    if seen.get() >= most {
        return Err(SearchError::Query {
            position,
            message: message(),
        });
    }
    seen.set(seen.get() + 1);
    Ok(())
}

/// A range's bound as text and whether it is included.
fn given(bound: &Bound) -> Option<(&str, bool)> {
    match bound {
        Bound::Unbounded => None,
        Bound::Included(t) => Some((t.as_str(), true)),
        Bound::Excluded(t) => Some((t.as_str(), false)),
    }
}

/// A range over a fast field; an unbounded side still needs a term that
/// names the field and its type.
fn fast_range(lower: StdBound<Term>, upper: StdBound<Term>) -> Boxed {
    match (&lower, &upper) {
        (StdBound::Unbounded, StdBound::Unbounded) => Box::new(AllQuery),
        _ => Box::new(RangeQuery::new(lower, upper)),
    }
}

/// A bound as a number: `Some(Some(x))` for one, `Some(None)` for an open
/// end, `None` for text. Written as JSON writes a number: `02134` and `+1`
/// are text, as values so written are.
fn bound_number(b: &Bound) -> Option<Option<f64>> {
    match b {
        Bound::Unbounded => Some(None),
        Bound::Included(t) | Bound::Excluded(t) if is_number_text(t) => {
            t.parse::<f64>().ok().filter(|x| !x.is_nan()).map(Some)
        }
        Bound::Included(_) | Bound::Excluded(_) => None,
    }
}

/// Refuses a query that compares one keyword field with a number and,
/// anywhere else in it, with text that is not one (`latency_ms:>=100 AND
/// NOT latency_ms:>=2OO`, `fields.n:>=1 OR n:<abc`): the text comparison
/// is almost always a typo for a number, and would quietly compare text.
/// Fields are compared by the name the index knows them by
/// (`fields.geo.country` is `geo.country`).
pub fn refuse_mixed_comparisons(query: &Ast) -> Result<(), SearchError> {
    let mut numeric: Vec<(String, String)> = Vec::new();
    let mut textual: Vec<(String, String, usize)> = Vec::new();
    let mut pending = vec![query];
    while let Some(node) = pending.pop() {
        match node {
            Ast::And(children) | Ast::Or(children) => pending.extend(children.iter()),
            Ast::Not(inner) => pending.push(inner),
            Ast::Range {
                field,
                lower,
                upper,
                position,
            } => {
                let Target::Keyword(name) = resolve(Some(field)) else {
                    continue;
                };
                for bound in [lower, upper] {
                    match (bound_number(bound), given(bound)) {
                        (Some(Some(_)), Some((text, _))) => {
                            numeric.push((name.clone(), text.to_string()))
                        }
                        (None, Some((text, _))) => {
                            textual.push((name.clone(), text.to_string(), *position))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // The first text bound in the query's order that meets a number.
    textual.sort_by_key(|(_, _, position)| *position);
    for (name, text, position) in textual {
        if let Some((_, number)) = numeric.iter().find(|(n, _)| *n == name) {
            return Err(SearchError::Query {
                position,
                message: format!(
                    "`{name}` is compared here with `{}`, which is not a number, and in this \
                     query with the number {} too: a number is compared with numbers only \
                     (numbers are written as JSON writes them: 1, -0.5, 2e3; not +1, .5 or \
                     1.); correct the bound",
                    cut(&text),
                    cut(number)
                ),
            });
        }
    }
    Ok(())
}

/// A bare term or phrase of punctuation and spaces alone; a wildcard
/// term (`;*`) is suggested as written, since quotes would make its `*`
/// a character.
fn no_word(text: &str, position: usize, wildcard: bool) -> SearchError {
    let instead = if wildcard {
        text.to_string()
    } else {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    };
    SearchError::Query {
        position,
        message: format!(
            "`{}` holds no word to find in the message (punctuation and spaces are not \
             indexed there); search a field for it instead, such as program:{}",
            cut(text),
            cut(&instead)
        ),
    }
}

/// A wildcard term as it can be written again: its literal `*`, `?` and
/// backslashes escaped.
fn wildcard_text(pieces: &[Piece]) -> String {
    let mut text = String::new();
    for piece in pieces {
        match piece {
            Piece::Literal(literal) => {
                for c in literal.chars() {
                    if matches!(c, '*' | '?' | '\\') {
                        text.push('\\');
                    }
                    text.push(c);
                }
            }
            Piece::AnyChars => text.push('*'),
            Piece::OneChar => text.push('?'),
        }
    }
    text
}

fn time_error(name: &str, text: &str, position: usize) -> SearchError {
    SearchError::Query {
        position,
        message: format!(
            "`{text}` is not a time for `{name}`; use RFC 3339 (2026-11-24T10:00:00Z), a date (2026-11-24), a number since 1970 (seconds to nanoseconds; no earlier time), or now-15m"
        ),
    }
}

fn cut(text: &str) -> &str {
    let mut end = text.len().min(MAX_KEYWORD_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Escapes the characters the regex syntax gives a meaning.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '.'
                | '+'
                | '*'
                | '?'
                | '('
                | ')'
                | '|'
                | '['
                | ']'
                | '{'
                | '}'
                | '^'
                | '$'
                | '#'
                | '&'
                | '-'
                | '~'
        ) {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            out.push_str(&format!("\\x{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Most words a wildcard that follows other words (`size=5*`) may match
/// in one segment of the index: each is read with its positions.
pub const MAX_WILDCARD_WORDS: u32 = 16_384;

/// Marks an error of [`Expansions`] for the search's caller: the query's
/// position follows it, then a NUL, then the message.
pub(crate) const EXPANSIONS_MARK: &str = "warden:expansions@";

/// A phrase whose last word is a wildcard, whose error past
/// [`MAX_WILDCARD_WORDS`] names the term's position in the query.
#[derive(Clone, Debug)]
struct Expansions {
    phrase: RegexPhraseQuery,
    position: usize,
}

impl Query for Expansions {
    fn weight(
        &self,
        scoring: tantivy::query::EnableScoring<'_>,
    ) -> tantivy::Result<Box<dyn tantivy::query::Weight>> {
        Ok(Box::new(ExpansionsWeight {
            inner: self.phrase.weight(scoring)?,
            position: self.position,
        }))
    }
}

struct ExpansionsWeight {
    inner: Box<dyn tantivy::query::Weight>,
    position: usize,
}

impl ExpansionsWeight {
    fn named<T>(&self, result: tantivy::Result<T>) -> tantivy::Result<T> {
        result.map_err(|e| match e {
            tantivy::TantivyError::InvalidArgument(m) if m.contains("max expansions") => {
                tantivy::TantivyError::InvalidArgument(format!(
                    "{EXPANSIONS_MARK}{}\u{0}the wildcard in this term's last word matches more than \
                     {MAX_WILDCARD_WORDS} distinct words of the index; give it more letters",
                    self.position
                ))
            }
            other => other,
        })
    }
}

impl tantivy::query::Weight for ExpansionsWeight {
    fn scorer(
        &self,
        reader: &tantivy::SegmentReader,
        boost: tantivy::Score,
    ) -> tantivy::Result<Box<dyn tantivy::query::Scorer>> {
        self.named(self.inner.scorer(reader, boost))
    }

    fn explain(
        &self,
        reader: &tantivy::SegmentReader,
        doc: tantivy::DocId,
    ) -> tantivy::Result<tantivy::query::Explanation> {
        self.named(self.inner.explain(reader, doc))
    }
}

/// The words a wildcard term spans, cut as the analyzer cuts text: at
/// spaces and punctuation such as `=` and `,`, with the punctuation that
/// ends a sentence trimmed from each (wildcards are never cut or
/// trimmed). Literal text is lowercased, as words are indexed.
fn wildcard_words(pieces: &[Piece]) -> Vec<Vec<Piece>> {
    let mut words: Vec<Vec<Piece>> = vec![Vec::new()];
    let push_char = |word: &mut Vec<Piece>, c: char| match word.last_mut() {
        Some(Piece::Literal(text)) => text.push(c),
        _ => word.push(Piece::Literal(c.to_string())),
    };
    for piece in pieces {
        match piece {
            Piece::Literal(text) => {
                for c in text.chars() {
                    if separates_words(c) {
                        words.push(Vec::new());
                    } else {
                        push_char(words.last_mut().expect("a word"), c);
                    }
                }
            }
            wildcard => words.last_mut().expect("a word").push(wildcard.clone()),
        }
    }
    words
        .into_iter()
        .filter_map(|mut word| {
            if let Some(Piece::Literal(text)) = word.first_mut() {
                *text = text.trim_start_matches(trimmed).to_string();
            }
            if let Some(Piece::Literal(text)) = word.last_mut() {
                *text = text.trim_end_matches(trimmed).to_string();
            }
            word.retain(|p| !matches!(p, Piece::Literal(t) if t.is_empty()));
            for p in word.iter_mut() {
                if let Piece::Literal(text) = p {
                    *text = text.to_lowercase();
                }
            }
            (!word.is_empty()).then_some(word)
        })
        .collect()
}

fn is_literal(word: &[Piece]) -> bool {
    word.iter().all(|p| matches!(p, Piece::Literal(_)))
}

fn literal_text(word: &[Piece]) -> String {
    word.iter()
        .map(|p| match p {
            Piece::Literal(text) => text.as_str(),
            _ => "",
        })
        .collect()
}

fn wildcard_regex(pieces: &[Piece], lowercase: bool) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Literal(text) if lowercase => out.push_str(&escape(&text.to_lowercase())),
            Piece::Literal(text) => out.push_str(&escape(text)),
            Piece::AnyChars => out.push_str(".*"),
            Piece::OneChar => out.push('.'),
        }
    }
    out
}
