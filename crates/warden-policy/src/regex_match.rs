//! `matches` with each pattern compiled once.
//!
//! The `cel` crate compiles a `matches` pattern on every evaluation: a
//! pattern with Unicode classes (`\w`) costs most of a millisecond each
//! time, on every call a policy sees. Conditions are parsed with a macro
//! that turns `x.matches(p)` and `matches(x, p)` into [`MATCHES_FN`], a
//! function that keeps compiled patterns in a bounded process-wide cache.
//! Its name cannot be written in a condition, so only the macro reaches it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use cel::common::ast::{CallExpr, Expr};
use cel::common::types::{CelBool, CelString, STRING_TYPE};
use cel::common::value::CowVal;
use cel::parser::Macro;
use cel::{Env, ExecutionError};
use regex::Regex;

/// The function `matches` calls are parsed into.
pub const MATCHES_FN: &str = "@matches";

/// The largest compiled program a pattern may make: a regex's run time
/// grows with its program times the text.
pub const MAX_PATTERN_PROGRAM: usize = 256 * 1024;

/// Patterns kept compiled at once. Literal patterns are few; a stored
/// condition that builds patterns from a call's data could make many, and
/// past this many the cache starts over rather than grow.
const MAX_CACHED_PATTERNS: usize = 4_096;

static PATTERNS: LazyLock<RwLock<HashMap<String, Arc<Regex>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// Compiles a pattern under the program bound.
pub fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_PATTERN_PROGRAM)
        .build()
}

/// A regex error in one line: its last, which says what is wrong.
pub fn describe(why: &regex::Error) -> String {
    match why {
        regex::Error::CompiledTooBig(limit) => format!(
            "the pattern compiles to a program over {limit} bytes: a regex's cost grows with \
             its program times the text; simplify it (fewer or smaller repetition counts)"
        ),
        other => {
            let text = other.to_string();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            format!(
                "the pattern is not a valid regex: {}",
                last.trim().trim_start_matches("error: ")
            )
        }
    }
}

fn cached(pattern: &str) -> Result<Arc<Regex>, regex::Error> {
    if let Some(regex) = PATTERNS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(pattern)
    {
        return Ok(regex.clone());
    }
    let regex = Arc::new(compile(pattern)?);
    let mut patterns = PATTERNS.write().unwrap_or_else(|e| e.into_inner());
    if patterns.len() >= MAX_CACHED_PATTERNS {
        patterns.clear();
    }
    patterns.insert(pattern.to_string(), regex.clone());
    Ok(regex)
}

/// `text.matches(pattern)`, as the standard library defines it.
fn matches<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [text, pattern] = &args[..] else {
        return Err(ExecutionError::function_error(
            "matches",
            format!("takes a text and a pattern, not {} values", args.len()),
        ));
    };
    let (Some(text), Some(pattern)) = (
        text.downcast_ref::<CelString>(),
        pattern.downcast_ref::<CelString>(),
    ) else {
        return Err(ExecutionError::function_error(
            "matches",
            "applies to a string, with a string pattern",
        ));
    };
    let regex = cached(pattern.inner())
        .map_err(|why| ExecutionError::function_error("matches", describe(&why)))?;
    Ok(CowVal::owned(CelBool::from(regex.is_match(text.inner()))))
}

/// The call `matches` is parsed into: the text, then the pattern.
fn call(args: Vec<cel::IdedExpr>) -> Expr {
    Expr::Call(CallExpr {
        func_name: MATCHES_FN.into(),
        target: None,
        args,
    })
}

/// Registers the macros and the function they call.
pub fn register(env: &mut Env) {
    env.add_macro(Macro::receiver("matches", 1, |helper, target, args| {
        let Some(text) = target.take() else {
            return Ok(None);
        };
        let pattern = std::mem::take(args);
        Ok(Some(helper.next_expr(call(
            std::iter::once(text).chain(pattern).collect(),
        ))))
    }))
    .expect("the receiver macro registers once");
    env.add_macro(Macro::global("matches", 2, |helper, _, args| {
        Ok(Some(helper.next_expr(call(std::mem::take(args)))))
    }))
    .expect("the global macro registers once");
    env.add_overload(
        MATCHES_FN,
        "warden_matches_string",
        vec![STRING_TYPE, STRING_TYPE],
        matches,
    )
    .expect("the function registers once");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_reach_the_cache_in_both_forms() {
        use crate::{CallFacts, CelCondition, Condition, ConditionInput};
        let input = ConditionInput::new(CallFacts {
            args: serde_json::json!({"cmd": "rm -rf /", "n": 5}),
            ..Default::default()
        });
        for (source, pattern, holds) in [
            ("args.cmd.matches('^rm -rf [/]$')", "^rm -rf [/]$", true),
            ("matches(args.cmd, '^ls( |$)')", "^ls( |$)", false),
        ] {
            let condition = CelCondition::compile(source).unwrap();
            assert_eq!(condition.holds(&input), Ok(holds), "{source}");
            let cache = PATTERNS.read().unwrap();
            assert!(cache.contains_key(pattern), "{source}");
        }
        // A text that is not a string is an error, as in the standard library.
        let condition = CelCondition::compile("args.n.matches('5')").unwrap();
        assert!(condition.holds(&input).is_err());
    }

    #[test]
    fn a_pattern_is_compiled_once_and_bounded() {
        let first = cached("^a+b$").unwrap();
        let again = cached("^a+b$").unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert!(matches!(
            cached("(?:a|aa){0,3000}b"),
            Err(regex::Error::CompiledTooBig(_))
        ));
        assert_eq!(
            describe(&compile("(foo").unwrap_err()),
            "the pattern is not a valid regex: unclosed group"
        );
    }
}
