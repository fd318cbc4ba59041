//! Malformed queries: each must fail at the right column, saying what was
//! expected and what was found.

use warden_query::{
    parse, ParseError, MAX_CLAUSES, MAX_DEPTH, MAX_QUERY_BYTES, MAX_TERM_CHARS, MAX_WILDCARDS,
};

const CLAUSE: &str = "a term, a phrase or '('";
const END: &str = "end of query";

/// (input, position, text in `expected`, text in `found`)
fn cases() -> Vec<(String, usize, &'static str, &'static str)> {
    let rows: Vec<(&str, usize, &str, &str)> = vec![
        // Structure.
        ("(a OR b", 8, "')'", END),
        ("x:(a", 5, "')'", END),
        ("é(", 3, CLAUSE, END),
        ("a OR", 5, CLAUSE, END),
        ("a AND", 6, CLAUSE, END),
        ("a &&", 5, CLAUSE, END),
        ("AND a", 1, CLAUSE, "'AND'"),
        ("AND(x)", 1, CLAUSE, "'AND'"),
        ("OR a", 1, CLAUSE, "'OR'"),
        ("|| a", 1, CLAUSE, "'||'"),
        ("a AND AND b", 7, CLAUSE, "'AND'"),
        ("a OR OR b", 6, CLAUSE, "'OR'"),
        ("a AND OR b", 7, CLAUSE, "'OR'"),
        ("a AND )", 7, CLAUSE, "')'"),
        ("NOT", 4, CLAUSE, END),
        ("a NOT", 6, CLAUSE, END),
        ("-", 2, CLAUSE, END),
        ("+", 2, CLAUSE, END),
        ("--a", 2, CLAUSE, "'-'"),
        ("+-a", 2, CLAUSE, "'-'"),
        ("-NOT a", 2, CLAUSE, "'NOT'"),
        (")", 1, CLAUSE, "')'"),
        ("é)", 2, "end of query", "')'"),
        ("a)", 2, "end of query", "')'"),
        ("(a))", 4, "end of query", "')'"),
        ("()", 2, CLAUSE, "')'"),
        // SQL's operators after a field.
        ("status:<>5", 8, "a value after 'status:'", "'<>'"),
        ("status:!=500", 8, "a value after 'status:'", "'!='"),
        ("status: =500", 9, "a value after 'status:'", "'='"),
        ("status:(!=500) st", 9, "a value in 'status:( … )'", "'!='"),
        ("status:(a OR =500)", 14, "a value in 'status:( … )'", "'='"),
        ("status:(<>500)", 9, "a value after '<'", "'<>'"),
        ("status:<=>500", 8, "a value after '<='", "'<=>'"),
        ("status:>==500", 8, "a value after '>='", "'>=='"),
        ("f:()", 4, CLAUSE, "')'"),
        ("]", 1, CLAUSE, "']'"),
        ("a }", 3, CLAUSE, "'}'"),
        // Fields and values.
        ("field:", 7, "a value after 'field:'", END),
        ("field:   ", 10, "a value after 'field:'", END),
        ("f:)", 3, "a value after 'f:'", "')'"),
        ("(f:)", 4, "a value after 'f:'", "')'"),
        ("f:]", 3, "a value after 'f:'", "']'"),
        ("f:AND", 3, "a value after 'f:'", "'AND'"),
        ("f:OR x", 3, "a value after 'f:'", "'OR'"),
        ("f:&&", 3, "a value after 'f:'", "'&&'"),
        ("*:x", 1, "'*:*'", "'*:'"),
        ("*:", 1, "'*:*'", "'*:'"),
        ("_exists_:", 10, "a value", END),
        ("_exists_:a*", 10, "a field name", "'a*'"),
        ("_exists_:\"a\"", 10, "a field name", "'\"a\"'"),
        ("_exists_:(a)", 10, "a field name", "'('"),
        ("_exists_:1a", 10, "a field name", "'1a'"),
        // Ranges.
        ("field:[1 TO ]", 13, "an upper bound", "']'"),
        ("field:[1 TO]", 12, "an upper bound", "']'"),
        ("field:[1 TO", 12, "an upper bound", END),
        ("field:[1 2]", 10, "'TO'", "'2'"),
        ("field:[1]", 9, "'TO'", "']'"),
        ("field:[1 to 2]", 10, "'TO'", "'to'"),
        ("field:[1 TO 2", 14, "']' or '}'", END),
        ("field:[1 TO 2 3]", 15, "']' or '}'", "'3'"),
        ("field:[1 TO 2)", 15, "']' or '}'", END),
        ("f:[]", 4, "a lower bound", "']'"),
        ("f:[", 4, "a lower bound", END),
        ("f:[TO 5]", 4, "a lower bound", "'TO'"),
        ("f:[\"a TO b]", 12, "'\"' to close", END),
        ("f:[a\\", 5, "a character after", END),
        ("f:>", 4, "a value after '>'", END),
        ("f:<=", 5, "a value after '<='", END),
        ("f:> 5", 4, "a value after '>'", "whitespace"),
        ("f:>)", 4, "a value after '>'", "')'"),
        (">5", 1, "a field", "'>5'"),
        ("<=5", 1, "a field", "'<=5'"),
        ("<script>", 1, "a field", "'<script>'"),
        ("[1 TO 2]", 1, "a field", "'[1 TO 2]'"),
        ("x {a TO b}", 3, "a field", "'{a TO b}'"),
        ("(>5)", 2, "a field", "'>5'"),
        // Phrases and escapes.
        ("\"unterminated", 14, "'\"' to close", END),
        ("a \"b", 5, "'\"' to close", END),
        ("\"a\\\"", 5, "'\"' to close", END),
        ("\"\"", 1, "a non-empty phrase", "'\"\"'"),
        ("a \"\" b", 3, "a non-empty phrase", "'\"\"'"),
        ("a\\", 2, "a character after '\\'", END),
        ("\\", 1, "a character after '\\'", END),
        ("f:a\\", 4, "a character after '\\'", END),
        // Unsupported Lucene features.
        ("name~2", 5, "without '~'", "'~'"),
        ("name~", 5, "without '~'", "'~'"),
        ("~x", 1, CLAUSE, "'~'"),
        ("\"a b\"~2", 6, "without '~'", "'~'"),
        ("f:\"a b\"~2", 8, "without '~'", "'~'"),
        ("x^3", 2, "without '^'", "'^'"),
        ("\"x\"^3", 4, CLAUSE, "'^'"),
        ("(a)^2", 4, CLAUSE, "'^'"),
        ("f:[1 TO 2]^2", 11, CLAUSE, "'^'"),
        ("/re/", 1, CLAUSE, "'/'"),
        ("a /re/", 3, CLAUSE, "'/'"),
        ("path:/etc/passwd", 6, "a value after 'path:'", "'/'"),
        ("f:~x", 3, "a value after 'f:'", "'~'"),
        ("f:^x", 3, "a value after 'f:'", "'^'"),
    ];
    let mut cases: Vec<(String, usize, &str, &str)> = rows
        .into_iter()
        .map(|(q, p, e, f)| (q.to_string(), p, e, f))
        .collect();

    // Limits.
    let too_big = "a".repeat(MAX_QUERY_BYTES + 1);
    cases.push((
        too_big,
        MAX_QUERY_BYTES + 1,
        "at most 4096 bytes",
        "a query of 4097 bytes",
    ));
    // Two-byte characters: the 2049th is the first that does not fit.
    let too_big_unicode = "é".repeat(MAX_QUERY_BYTES / 2 + 1);
    cases.push((
        too_big_unicode,
        MAX_QUERY_BYTES / 2 + 1,
        "at most 4096 bytes",
        "4098 bytes",
    ));

    let deep = format!(
        "{}a{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    cases.push((deep, MAX_DEPTH + 1, "levels of nesting", "'('"));
    let nots = format!("{}a", "NOT ".repeat(MAX_DEPTH + 1));
    cases.push((nots, 4 * MAX_DEPTH + 1, "levels of nesting", "'NOT'"));
    let mixed = format!("{}-a", "-(".repeat(MAX_DEPTH / 2));
    cases.push((mixed, MAX_DEPTH + 1, "levels of nesting", "'-'"));
    let bangs = format!("{}a", "!".repeat(MAX_DEPTH + 1));
    cases.push((bangs, MAX_DEPTH + 1, "levels of nesting", "'!'"));

    let clauses = vec!["a"; MAX_CLAUSES + 1].join(" ");
    cases.push((clauses, 2 * MAX_CLAUSES + 1, "at most 256 clauses", "257"));
    let scoped = format!("f:({})", vec!["a"; MAX_CLAUSES + 1].join(" "));
    cases.push((scoped, 2 * MAX_CLAUSES + 4, "at most 256 clauses", "257"));

    let wildcards = "a*".repeat(MAX_WILDCARDS + 1);
    cases.push((
        wildcards,
        2 * MAX_WILDCARDS + 2,
        "at most 16 wildcards",
        "17",
    ));
    let ones = format!("f:{}", "?".repeat(MAX_WILDCARDS + 1));
    cases.push((ones, MAX_WILDCARDS + 3, "at most 16 wildcards", "17"));
    // Field names with wildcards, refused where the wildcard is.
    cases.push(("geo.*:FR".into(), 5, "without wildcards", "'*'"));
    cases.push(("a AND fields.c?:x".into(), 15, "without wildcards", "'?'"));
    // Terms that read a whole dictionary: the fifth is refused where it
    // starts; trailing wildcards (`b*`) do not count.
    cases.push((
        "*a OR b* OR ?c OR user:*d OR e* OR *f OR *g".into(),
        42,
        "at most 4 terms that start with a wildcard",
        "number 5",
    ));

    // Wildcard terms of any kind: the 33rd is refused where it starts.
    let many = vec!["l*"; 33].join(" OR ");
    cases.push((many, 32 * 6 + 1, "at most 32 wildcard terms", "number 33"));

    let long = "x".repeat(MAX_TERM_CHARS + 1);
    cases.push((
        long.clone(),
        MAX_TERM_CHARS + 1,
        "at most 1024 characters",
        "longer",
    ));
    cases.push((
        format!("\"{long}\""),
        MAX_TERM_CHARS + 2,
        "at most 1024 characters",
        "longer",
    ));
    cases.push((
        format!("f:[{long} TO b]"),
        MAX_TERM_CHARS + 4,
        "at most 1024 characters",
        "longer",
    ));
    cases.push((
        format!("f:>{long}"),
        MAX_TERM_CHARS + 4,
        "at most 1024 characters",
        "longer",
    ));
    cases
}

#[test]
fn malformed_queries_fail_at_the_right_place() {
    let mut failures = Vec::new();
    for (input, position, expected, found) in cases() {
        let shown: String = input.chars().take(60).collect();
        match parse(&input) {
            Err(e) if e.position == position && e.expected.contains(expected) && e.found.contains(found) => {}
            got => failures.push(format!(
                "{shown:?}\n  wanted position {position}, expected ~{expected:?}, found ~{found:?}\n  got {got:?}"
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
fn every_error_reads_as_a_sentence_with_its_position() {
    for (input, ..) in cases() {
        let Err(e) = parse(&input) else {
            panic!("{input:?} parsed")
        };
        assert!(!e.message.is_empty() && !e.expected.is_empty() && !e.found.is_empty());
        assert_eq!(
            e.to_string(),
            format!("{} at position {}", e.message, e.position)
        );
    }
}

#[test]
fn messages_name_the_problem() {
    let message = |q: &str| parse(q).map(|_| ()).unwrap_err().message;

    assert_eq!(
        parse(")").unwrap_err(),
        ParseError {
            position: 1,
            expected: "a term, a phrase or '('".into(),
            found: "')'".into(),
            message: "expected a term, a phrase or '(' but found ')'".into(),
        }
    );
    assert_eq!(
        parse("(a OR b").unwrap_err().message,
        "expected ')' to close the '(' at position 1 but found end of query"
    );
    assert!(message("/re/")
        .starts_with("regular expressions (/…/) are not supported; use wildcards * and ?"));
    assert!(message("name~2").starts_with("fuzzy searches"));
    assert!(message("\"a b\"~2").starts_with("proximity searches"));
    assert!(message("x^3").starts_with("boosts"));
    assert!(message("status:!=500").contains("'-field:value' or 'NOT field:value'"));
    assert!(message("status:=500").contains("'field:>=value' compares"));
    assert!(message(">5").starts_with("a range needs a field"));
    assert!(message("f:[1 2]").contains("'TO' (uppercase)"));
    assert!(message("\"abc").contains("phrase that starts at position 1"));
    assert!(message("f:[1 TO 2").contains("range that starts at position 3"));
    assert!(message(&"a".repeat(5000)).contains("5000 bytes"));
    assert!(message("f:AND").contains("quote it"));
}

/// Deep inputs are refused by the size or depth limit, before any
/// recursion could overflow the stack (how fast is for benchmarks).
#[test]
fn deep_inputs_are_refused_by_a_limit_without_overflowing_the_stack() {
    let inputs = [
        "(".repeat(100_000),
        "NOT ".repeat(100_000),
        "-".repeat(100_000),
        "!".repeat(100_000),
        // Within the size limit, so they reach the parser's depth check.
        "(".repeat(MAX_QUERY_BYTES),
        "NOT ".repeat(MAX_QUERY_BYTES / 4),
        "!".repeat(MAX_QUERY_BYTES),
        "-(".repeat(MAX_QUERY_BYTES / 2),
        format!("{}a", "f:(".repeat(MAX_QUERY_BYTES / 3)),
    ];
    for input in inputs {
        let result = parse(&input);
        assert!(result.is_err(), "{:?}… parsed", &input[..10]);
        let message = result.unwrap_err().message;
        assert!(
            message.contains("the limit is") || message.contains("levels deep"),
            "{:?}… refused by something other than a limit: {message}",
            &input[..10]
        );
    }
}
