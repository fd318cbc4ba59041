//! Deterministic fuzzing: random text built from the language's own syntax
//! must never panic, errors must point inside the text (or just past it),
//! and accepted queries must come out well formed.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warden_query::{parse, MatchValue, Piece, Query, MAX_CLAUSES, MAX_DEPTH, MAX_WILDCARDS};

/// Fragments biased towards syntax, so that most inputs get past the first few characters.
const FRAGMENTS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "\\",
    ":",
    "*",
    "?",
    "-",
    "+",
    "!",
    "&",
    "&&",
    "|",
    "||",
    "^",
    "~",
    "/",
    ">",
    "<",
    "=",
    ">=",
    "<=",
    " AND ",
    " OR ",
    " NOT ",
    " TO ",
    "AND",
    "OR",
    "NOT",
    "TO",
    "_exists_",
    "_exists_:",
    "*:*",
    " ",
    " ",
    " ",
    "\t",
    "a",
    "b",
    "x",
    "foo",
    "root",
    "f:",
    "geo.country:",
    "@ts:",
    "1",
    "42",
    "2026-01-01T00:00:00Z",
    "é",
    "日本",
    "🔥",
    "\u{a0}",
    "\u{0}",
    "and",
    "to",
];

fn random_query(rng: &mut StdRng) -> String {
    let len = if rng.gen_ratio(1, 50) {
        rng.gen_range(0..400)
    } else {
        rng.gen_range(0..24)
    };
    let mut s = String::new();
    for _ in 0..len {
        if rng.gen_ratio(1, 20) {
            // An arbitrary character now and then.
            s.push(char::from_u32(rng.gen_range(0..0x3000)).unwrap_or('?'));
        } else {
            s.push_str(FRAGMENTS[rng.gen_range(0..FRAGMENTS.len())]);
        }
    }
    s
}

/// Checks the shape promised by the API: simplified And/Or, positions
/// inside the text, well-formed wildcards. Returns (leaves, depth).
fn check(q: &Query, chars: usize, input: &str) -> (usize, usize) {
    let in_text = |p: usize| assert!(p >= 1 && p <= chars, "position {p} outside {input:?}");
    match q {
        Query::All => (1, 0),
        Query::Match {
            value, position, ..
        } => {
            in_text(*position);
            match value {
                MatchValue::Term(t) | MatchValue::Phrase(t) => {
                    assert!(!t.is_empty(), "empty value from {input:?}")
                }
                MatchValue::Wildcard(pieces) => {
                    let wild = pieces
                        .iter()
                        .filter(|p| !matches!(p, Piece::Literal(_)))
                        .count();
                    assert!((1..=MAX_WILDCARDS).contains(&wild), "{input:?}");
                    for pair in pieces.windows(2) {
                        assert!(
                            !matches!(
                                pair,
                                [Piece::AnyChars, Piece::AnyChars]
                                    | [Piece::Literal(_), Piece::Literal(_)]
                            ),
                            "unmerged pieces from {input:?}"
                        );
                    }
                    for p in pieces {
                        assert!(!matches!(p, Piece::Literal(l) if l.is_empty()), "{input:?}");
                    }
                }
            }
            (1, 0)
        }
        Query::Range { position, .. } | Query::Exists { position, .. } => {
            in_text(*position);
            (1, 0)
        }
        Query::Not(inner) => {
            let (leaves, depth) = check(inner, chars, input);
            (leaves, depth + 1)
        }
        Query::And(items) | Query::Or(items) => {
            assert!(items.len() >= 2, "unsimplified {q:?} from {input:?}");
            let mut leaves = 0;
            let mut depth = 0;
            for item in items {
                let same = matches!(
                    (q, item),
                    (Query::And(_), Query::And(_)) | (Query::Or(_), Query::Or(_))
                );
                assert!(!same, "unflattened {q:?} from {input:?}");
                let (l, d) = check(item, chars, input);
                leaves += l;
                depth = depth.max(d);
            }
            (leaves, depth + 1)
        }
    }
}

#[test]
fn random_queries_never_panic_and_errors_point_into_the_text() {
    let mut rng = StdRng::seed_from_u64(0x5eed_7ae5);
    let mut accepted = 0usize;
    for _ in 0..200_000 {
        let input = random_query(&mut rng);
        let chars = input.chars().count();
        let result = catch_unwind(AssertUnwindSafe(|| parse(&input)));
        match result {
            Err(_) => panic!("parse panicked on {input:?}"),
            Ok(Ok(q)) => {
                accepted += 1;
                let (leaves, depth) = check(&q, chars, &input);
                assert!(leaves <= MAX_CLAUSES, "{input:?}");
                // Each level of the AST comes from a group or a NOT in the text.
                assert!(depth <= 2 * MAX_DEPTH + 2, "{input:?}");
            }
            Ok(Err(e)) => {
                assert!(
                    e.position >= 1 && e.position <= chars + 1,
                    "position {} outside 1..={} for {input:?}: {e}",
                    e.position,
                    chars + 1
                );
                assert!(!e.expected.is_empty() && !e.found.is_empty() && !e.message.is_empty());
            }
        }
    }
    // The alphabet should let a fair share through, or the test checks little.
    assert!(accepted > 10_000, "only {accepted} inputs parsed");
}

#[test]
fn parsing_is_deterministic() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..2_000 {
        let input = random_query(&mut rng);
        assert_eq!(parse(&input), parse(&input));
    }
}
