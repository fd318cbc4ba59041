//! Input → AST for every construct of the language.

use warden_query::{parse, Bound, MatchValue, Piece, Query};

// Small constructors so the table reads like the queries.

fn term(value: &str, position: usize) -> Query {
    Query::Match {
        field: None,
        value: MatchValue::Term(value.into()),
        position,
    }
}

fn fterm(field: &str, value: &str, position: usize) -> Query {
    Query::Match {
        field: Some(field.into()),
        value: MatchValue::Term(value.into()),
        position,
    }
}

fn phrase(field: Option<&str>, value: &str, position: usize) -> Query {
    Query::Match {
        field: field.map(Into::into),
        value: MatchValue::Phrase(value.into()),
        position,
    }
}

fn wild(field: Option<&str>, pieces: Vec<Piece>, position: usize) -> Query {
    Query::Match {
        field: field.map(Into::into),
        value: MatchValue::Wildcard(pieces),
        position,
    }
}

fn lit(s: &str) -> Piece {
    Piece::Literal(s.into())
}

const ANY: Piece = Piece::AnyChars;
const ONE: Piece = Piece::OneChar;

fn range(field: &str, lower: Bound, upper: Bound, position: usize) -> Query {
    Query::Range {
        field: field.into(),
        lower,
        upper,
        position,
    }
}

fn inc(s: &str) -> Bound {
    Bound::Included(s.into())
}

fn exc(s: &str) -> Bound {
    Bound::Excluded(s.into())
}

const UNB: Bound = Bound::Unbounded;

fn exists(field: &str, position: usize) -> Query {
    Query::Exists {
        field: field.into(),
        position,
    }
}

fn and(items: Vec<Query>) -> Query {
    Query::And(items)
}

fn or(items: Vec<Query>) -> Query {
    Query::Or(items)
}

fn not(q: Query) -> Query {
    Query::Not(Box::new(q))
}

fn cases() -> Vec<(&'static str, Query)> {
    vec![
        // Everything.
        ("", Query::All),
        ("   \t\n ", Query::All),
        ("*", Query::All),
        ("**", Query::All),
        ("*:*", Query::All),
        (" *:* ", Query::All),
        // Terms and phrases.
        ("root", term("root", 1)),
        ("  root  ", term("root", 3)),
        ("TO", term("TO", 1)),
        ("and", term("and", 1)),
        ("or not", and(vec![term("or", 1), term("not", 4)])),
        ("AND-thing", term("AND-thing", 1)),
        ("ANDROID", term("ANDROID", 1)),
        ("a-b", term("a-b", 1)),
        ("a+b!c", term("a+b!c", 1)),
        ("a&b", term("a&b", 1)),
        ("a&&b", term("a&&b", 1)),
        ("& |", and(vec![term("&", 1), term("|", 3)])),
        ("a/b", term("a/b", 1)),
        ("a[1]", term("a[1]", 1)),
        ("x=1", term("x=1", 1)),
        ("2026-01-01T10:00:00Z", term("2026-01-01T10:00:00Z", 1)),
        ("10.0.0.1", term("10.0.0.1", 1)),
        ("00:11:22", term("00:11:22", 1)),
        (":x", term(":x", 1)),
        ("_exists_", term("_exists_", 1)),
        ("\"failed password\"", phrase(None, "failed password", 1)),
        ("\"a (b) OR c:d *\"", phrase(None, "a (b) OR c:d *", 1)),
        ("\"say \\\"hi\\\"\"", phrase(None, "say \"hi\"", 1)),
        ("\"back\\\\slash\"", phrase(None, "back\\slash", 1)),
        ("\"C:\\Windows\\x\"", phrase(None, "C:\\Windows\\x", 1)),
        ("\"a\"b", and(vec![phrase(None, "a", 1), term("b", 4)])),
        // Escapes.
        ("\\*", term("*", 1)),
        ("a\\*b", term("a*b", 1)),
        ("\\(x\\)", term("(x)", 1)),
        ("a\\ b", term("a b", 1)),
        ("a\\:b", term("a:b", 1)),
        ("\\-a", term("-a", 1)),
        ("\\+a", term("+a", 1)),
        ("\\!a", term("!a", 1)),
        ("\\AND", term("AND", 1)),
        ("a\\\\b", term("a\\b", 1)),
        ("a\\~b\\^c", term("a~b^c", 1)),
        ("\\/etc", term("/etc", 1)),
        ("\\\"x", term("\"x", 1)),
        ("\\>5", term(">5", 1)),
        ("\\[x", term("[x", 1)),
        ("f:\\*", fterm("f", "*", 1)),
        // Fields.
        ("user:root", fterm("user", "root", 1)),
        ("user: root", fterm("user", "root", 1)),
        ("user:\"root user\"", phrase(Some("user"), "root user", 1)),
        ("geo.country:NZ", fterm("geo.country", "NZ", 1)),
        ("@timestamp:x", fterm("@timestamp", "x", 1)),
        ("_id:x", fterm("_id", "x", 1)),
        ("a-b.c_d@e:x", fterm("a-b.c_d@e", "x", 1)),
        ("mac:00:11:22", fterm("mac", "00:11:22", 1)),
        (
            "url:http://evil.example/x",
            fterm("url", "http://evil.example/x", 1),
        ),
        ("delta:-5", fterm("delta", "-5", 1)),
        ("referer:-", fterm("referer", "-", 1)),
        ("f:+", fterm("f", "+", 1)),
        ("f: !", fterm("f", "!", 1)),
        ("f:+x", fterm("f", "+x", 1)),
        ("f:!x", fterm("f", "!x", 1)),
        ("f:a\\ b", fterm("f", "a b", 1)),
        ("f:and", fterm("f", "and", 1)),
        ("f:TO", fterm("f", "TO", 1)),
        ("ville:Zürich", fterm("ville", "Zürich", 1)),
        ("x a:b", and(vec![term("x", 1), fterm("a", "b", 3)])),
        // Wildcards.
        ("adm*", wild(None, vec![lit("adm"), ANY], 1)),
        ("*admin", wild(None, vec![ANY, lit("admin")], 1)),
        ("ad*in", wild(None, vec![lit("ad"), ANY, lit("in")], 1)),
        ("adm?n", wild(None, vec![lit("adm"), ONE, lit("n")], 1)),
        ("?", wild(None, vec![ONE], 1)),
        ("*.exe", wild(None, vec![ANY, lit(".exe")], 1)),
        ("a**b", wild(None, vec![lit("a"), ANY, lit("b")], 1)),
        (
            "a*?*b",
            wild(None, vec![lit("a"), ANY, ONE, ANY, lit("b")], 1),
        ),
        ("a\\**", wild(None, vec![lit("a*"), ANY], 1)),
        ("file:*.exe", wild(Some("file"), vec![ANY, lit(".exe")], 1)),
        ("f:*:*", wild(Some("f"), vec![ANY, lit(":"), ANY], 1)),
        ("field:*", exists("field", 1)),
        ("field:**", exists("field", 1)),
        ("a field:*", and(vec![term("a", 1), exists("field", 3)])),
        // Exists.
        ("_exists_:geo.country", exists("geo.country", 1)),
        (
            "x _exists_:user",
            and(vec![term("x", 1), exists("user", 3)]),
        ),
        ("-_exists_:user", not(exists("user", 2))),
        // Ranges, all four bracket shapes.
        ("port:[1 TO 1024]", range("port", inc("1"), inc("1024"), 1)),
        ("port:{1 TO 1024}", range("port", exc("1"), exc("1024"), 1)),
        ("port:[1 TO 1024}", range("port", inc("1"), exc("1024"), 1)),
        ("port:{1 TO 1024]", range("port", exc("1"), inc("1024"), 1)),
        (
            "port:[ 1   TO   1024 ]",
            range("port", inc("1"), inc("1024"), 1),
        ),
        ("port:[* TO 1024]", range("port", UNB, inc("1024"), 1)),
        ("port:[1 TO *]", range("port", inc("1"), UNB, 1)),
        ("port:{* TO *}", range("port", UNB, UNB, 1)),
        (
            "name:[\"a b\" TO \"c d\"]",
            range("name", inc("a b"), inc("c d"), 1),
        ),
        ("name:[\"*\" TO z]", range("name", inc("*"), inc("z"), 1)),
        ("name:[a* TO b?]", range("name", inc("a*"), inc("b?"), 1)),
        (
            "name:[a\\ b TO c\\]]",
            range("name", inc("a b"), inc("c]"), 1),
        ),
        ("name:[TO TO TO]", range("name", inc("TO"), inc("TO"), 1)),
        (
            "time:[2026-01-01T00:00:00Z TO 2026-01-02T00:00:00Z]",
            range(
                "time",
                inc("2026-01-01T00:00:00Z"),
                inc("2026-01-02T00:00:00Z"),
                1,
            ),
        ),
        ("f:[a(b TO c)]", range("f", inc("a(b"), inc("c)"), 1)),
        // Comparisons.
        ("port:>5", range("port", exc("5"), UNB, 1)),
        ("port:>=5", range("port", inc("5"), UNB, 1)),
        ("port:<5", range("port", UNB, exc("5"), 1)),
        ("port:<=5", range("port", UNB, inc("5"), 1)),
        ("port:>-5", range("port", exc("-5"), UNB, 1)),
        ("port:>*", range("port", UNB, UNB, 1)),
        ("name:>\"a b\"", range("name", exc("a b"), UNB, 1)),
        ("p:>a*", range("p", exc("a*"), UNB, 1)),
        (
            "time:>=2026-01-01T10:00:00Z",
            range("time", inc("2026-01-01T10:00:00Z"), UNB, 1),
        ),
        ("(port:>5)", range("port", exc("5"), UNB, 2)),
        (
            "port:>5 port:<10",
            and(vec![
                range("port", exc("5"), UNB, 1),
                range("port", UNB, exc("10"), 9),
            ]),
        ),
        // Boolean operators.
        ("a AND b", and(vec![term("a", 1), term("b", 7)])),
        ("a && b", and(vec![term("a", 1), term("b", 6)])),
        ("a OR b", or(vec![term("a", 1), term("b", 6)])),
        ("a || b", or(vec![term("a", 1), term("b", 6)])),
        ("NOT a", not(term("a", 5))),
        ("!a", not(term("a", 2))),
        ("! a", not(term("a", 3))),
        ("NOT NOT a", not(not(term("a", 9)))),
        ("!!a", not(not(term("a", 3)))),
        ("a b", and(vec![term("a", 1), term("b", 3)])),
        ("a b c", and(vec![term("a", 1), term("b", 3), term("c", 5)])),
        (
            "a AND b c",
            and(vec![term("a", 1), term("b", 7), term("c", 9)]),
        ),
        (
            "a OR b OR c",
            or(vec![term("a", 1), term("b", 6), term("c", 11)]),
        ),
        ("a&&b && c", and(vec![term("a&&b", 1), term("c", 9)])),
        ("x AND(y)", and(vec![term("x", 1), term("y", 7)])),
        // Prefixes.
        ("-a", not(term("a", 2))),
        ("- a", not(term("a", 3))),
        ("+a", term("a", 2)),
        ("+a -b", and(vec![term("a", 2), not(term("b", 5))])),
        ("a -b", and(vec![term("a", 1), not(term("b", 4))])),
        ("a - b", and(vec![term("a", 1), not(term("b", 5))])),
        ("-user:root", not(fterm("user", "root", 2))),
        ("-(a b)", not(and(vec![term("a", 3), term("b", 5)]))),
        ("-\"a b\"", not(phrase(None, "a b", 2))),
        ("NOT -a", not(not(term("a", 6)))),
        ("+field:[1 TO 2]", range("field", inc("1"), inc("2"), 2)),
        ("-*", not(Query::All)),
        // Precedence.
        (
            "a OR b c",
            or(vec![term("a", 1), and(vec![term("b", 6), term("c", 8)])]),
        ),
        (
            "a AND b OR c",
            or(vec![and(vec![term("a", 1), term("b", 7)]), term("c", 12)]),
        ),
        (
            "a OR b AND c",
            or(vec![term("a", 1), and(vec![term("b", 6), term("c", 12)])]),
        ),
        ("NOT a AND b", and(vec![not(term("a", 5)), term("b", 11)])),
        ("NOT a OR b", or(vec![not(term("a", 5)), term("b", 10)])),
        ("a AND NOT b", and(vec![term("a", 1), not(term("b", 11))])),
        (
            "a -b OR c",
            or(vec![
                and(vec![term("a", 1), not(term("b", 4))]),
                term("c", 9),
            ]),
        ),
        (
            "a || b && c",
            or(vec![term("a", 1), and(vec![term("b", 6), term("c", 11)])]),
        ),
        (
            "(a OR b) c",
            and(vec![or(vec![term("a", 2), term("b", 7)]), term("c", 10)]),
        ),
        ("NOT (a OR b)", not(or(vec![term("a", 6), term("b", 11)]))),
        // Grouping and simplification.
        ("(a)", term("a", 2)),
        ("((a))", term("a", 3)),
        (
            "(a b) c",
            and(vec![term("a", 2), term("b", 4), term("c", 7)]),
        ),
        (
            "a (b c)",
            and(vec![term("a", 1), term("b", 4), term("c", 6)]),
        ),
        (
            "(a OR b) OR c",
            or(vec![term("a", 2), term("b", 7), term("c", 13)]),
        ),
        (
            "a OR (b OR c)",
            or(vec![term("a", 1), term("b", 7), term("c", 12)]),
        ),
        (
            "(a OR b)(c OR d)",
            and(vec![
                or(vec![term("a", 2), term("b", 7)]),
                or(vec![term("c", 10), term("d", 15)]),
            ]),
        ),
        ("a(b)", and(vec![term("a", 1), term("b", 3)])),
        ("(*)", Query::All),
        ("* AND a", and(vec![Query::All, term("a", 7)])),
        // Field-scoped groups.
        (
            "field:(a OR \"b c\" OR d*)",
            or(vec![
                fterm("field", "a", 8),
                phrase(Some("field"), "b c", 13),
                wild(Some("field"), vec![lit("d"), ANY], 22),
            ]),
        ),
        ("f:(a b)", and(vec![fterm("f", "a", 4), fterm("f", "b", 6)])),
        (
            "f:(a other:x)",
            and(vec![fterm("f", "a", 4), fterm("other", "x", 6)]),
        ),
        (
            "f:(a (b OR g:c))",
            and(vec![
                fterm("f", "a", 4),
                or(vec![fterm("f", "b", 7), fterm("g", "c", 12)]),
            ]),
        ),
        (
            "f:(a g:(b c))",
            and(vec![
                fterm("f", "a", 4),
                fterm("g", "b", 9),
                fterm("g", "c", 11),
            ]),
        ),
        (
            "-field:(a b)",
            not(and(vec![fterm("field", "a", 9), fterm("field", "b", 11)])),
        ),
        (
            "f:(a -b)",
            and(vec![fterm("f", "a", 4), not(fterm("f", "b", 7))]),
        ),
        (
            "status:(>=400 AND <500)",
            and(vec![
                range("status", inc("400"), UNB, 9),
                range("status", UNB, exc("500"), 19),
            ]),
        ),
        ("f:([1 TO 2])", range("f", inc("1"), inc("2"), 4)),
        ("f:(*)", exists("f", 4)),
        ("f:(*:*)", Query::All),
        ("f:(_exists_:g)", exists("g", 4)),
        ("f: (a)", fterm("f", "a", 5)),
        // Unicode: positions count characters, not bytes.
        ("é", term("é", 1)),
        ("é b", and(vec![term("é", 1), term("b", 3)])),
        ("日本 語", and(vec![term("日本", 1), term("語", 4)])),
        ("ü:x", fterm("ü", "x", 1)),
        ("é:[a TO b]", range("é", inc("a"), inc("b"), 1)),
        (
            "\"ça va\" ok",
            and(vec![phrase(None, "ça va", 1), term("ok", 9)]),
        ),
        (
            "🔥* x",
            and(vec![wild(None, vec![lit("🔥"), ANY], 1), term("x", 4)]),
        ),
        ("a\u{a0}b", and(vec![term("a", 1), term("b", 3)])),
    ]
}

#[test]
fn every_construct_parses_to_the_expected_ast() {
    let mut failures = Vec::new();
    for (input, expected) in cases() {
        match parse(input) {
            Ok(got) if got == expected => {}
            got => failures.push(format!(
                "{input:?}\n  expected {expected:?}\n  got      {got:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn limits_are_inclusive() {
    use warden_query::{MAX_CLAUSES, MAX_DEPTH, MAX_QUERY_BYTES, MAX_TERM_CHARS, MAX_WILDCARDS};

    let deep = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert_eq!(parse(&deep), Ok(term("a", MAX_DEPTH + 1)));

    let nots = format!("{}a", "NOT ".repeat(MAX_DEPTH));
    assert!(parse(&nots).is_ok());

    let many = vec!["a"; MAX_CLAUSES].join(" ");
    assert!(matches!(parse(&many), Ok(Query::And(v)) if v.len() == MAX_CLAUSES));

    let wildcards = "a*".repeat(MAX_WILDCARDS);
    assert!(parse(&wildcards).is_ok());

    let long = "x".repeat(MAX_TERM_CHARS);
    assert_eq!(parse(&long), Ok(term(&long, 1)));
    let long_phrase = format!("\"{long}\"");
    assert!(parse(&long_phrase).is_ok());

    let big = format!("a{}", " ".repeat(MAX_QUERY_BYTES - 1));
    assert_eq!(parse(&big), Ok(term("a", 1)));
}

#[test]
fn positions_are_one_based_character_columns() {
    // "é" is two bytes; the field clause still starts at column 3.
    assert_eq!(
        parse("é host:x"),
        Ok(and(vec![term("é", 1), fterm("host", "x", 3)]))
    );
}
