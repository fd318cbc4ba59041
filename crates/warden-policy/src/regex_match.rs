//! `matches` with each pattern compiled once, at a bounded cost.
//!
//! The `cel` crate compiles a `matches` pattern on every evaluation: a
//! pattern with Unicode classes (`\w`) costs most of a millisecond each
//! time, on every call a policy sees. Conditions are parsed with a macro
//! that turns `x.matches(p)` and `matches(x, p)` into [`MATCHES_FN`], a
//! function that keeps compiled patterns in a bounded process-wide cache.
//! Its name cannot be written in a condition, so only the macro reaches it.
//!
//! The `regex` crate's search costs at worst the text's length times the
//! pattern's states: within [`MAX_SEARCH_STEPS`] it answers. Beyond, a
//! lazy DFA searches, in time linear in the text; some patterns
//! (`a[ab]{300}c`) make a DFA state for nearly every byte, the lazy DFA
//! then gives up, and the condition fails to evaluate, which never
//! loosens a decision.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use cel::common::ast::{CallExpr, Expr};
use cel::common::types::{CelBool, CelString, STRING_TYPE};
use cel::common::value::CowVal;
use cel::parser::Macro;
use cel::{Env, ExecutionError};
use regex::Regex;
use regex_automata::hybrid::dfa::{Cache, Config as LazyConfig, DFA};
use regex_automata::nfa::thompson;
use regex_automata::Input;

/// The function `matches` calls are parsed into.
pub const MATCHES_FN: &str = "@matches";

/// The largest compiled program a pattern may make: a regex's run time
/// grows with its program times the text.
pub const MAX_PATTERN_PROGRAM: usize = 256 * 1024;

/// Patterns kept compiled at once. Literal patterns are few; a stored
/// condition that builds patterns from a call's data could make many, and
/// past this many the cache starts over rather than grow.
const MAX_CACHED_PATTERNS: usize = 4_096;

/// The most text bytes times pattern states the `regex` crate's own
/// search may cost (about a tenth of a second); past it, the lazy DFA
/// searches instead.
pub const MAX_SEARCH_STEPS: usize = 30_000_000;

/// The lazy DFA's memory for states, per search in flight.
const LAZY_CACHE_BYTES: usize = 1 << 20;

/// Lazy DFA caches kept per pattern for reuse (each grows to at most
/// [`LAZY_CACHE_BYTES`], and only over long texts).
const SPARE_CACHES: usize = 2;

/// The time all of one call's regex searches may take together, over every
/// condition it meets: past it, a further search is an evaluation error.
/// Each search is bounded on its own; this bounds how many run.
pub const CALL_SEARCH_TIME: Duration = Duration::from_millis(250);

thread_local! {
    /// Search time left to the call whose conditions this thread runs.
    static SEARCH_TIME_LEFT: Cell<Duration> = const { Cell::new(CALL_SEARCH_TIME) };
}

/// Runs `evaluate` with the search time `left` (nanoseconds) holds, and
/// puts back what it did not use.
pub fn with_search_time<R>(left: &AtomicU64, evaluate: impl FnOnce() -> R) -> R {
    let given = Duration::from_nanos(left.load(Ordering::Relaxed));
    let outer = SEARCH_TIME_LEFT.with(|t| t.replace(given));
    let result = evaluate();
    let unused = SEARCH_TIME_LEFT.with(|t| t.replace(outer));
    left.store(unused.as_nanos() as u64, Ordering::Relaxed);
    result
}

/// A search timed against the call's search time.
fn timed<R>(search: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
    let left = SEARCH_TIME_LEFT.with(Cell::get);
    if left.is_zero() {
        return Err(format!(
            "this call's regex searches took their {} ms: the conditions' patterns over \
             these arguments cost too much together",
            CALL_SEARCH_TIME.as_millis()
        ));
    }
    let started = Instant::now();
    let result = search();
    SEARCH_TIME_LEFT.with(|t| t.set(left.saturating_sub(started.elapsed())));
    result
}

/// A pattern, compiled for both searches.
struct Pattern {
    full: Regex,
    /// `None` when the pattern needs what a lazy DFA cannot do.
    lazy: Option<DFA>,
    /// The pattern's NFA states: the bounded search costs this per byte.
    states: usize,
    caches: Mutex<Vec<Cache>>,
}

static PATTERNS: LazyLock<RwLock<HashMap<String, Arc<Pattern>>>> =
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
             its program times the text; simplify it (fewer or smaller repetition counts; \
             Unicode classes such as \\w and \\d are large, so repeat the ASCII ones: \
             (?-u:\\w) or [A-Za-z0-9_])"
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

impl Pattern {
    fn new(pattern: &str) -> Result<Self, regex::Error> {
        let full = compile(pattern)?;
        let lazy = DFA::builder()
            .configure(
                LazyConfig::new()
                    .cache_capacity(LAZY_CACHE_BYTES)
                    .minimum_cache_clear_count(Some(3))
                    .minimum_bytes_per_state(Some(10))
                    // Unicode `\b` works until the text leaves ASCII; the
                    // search then quits and the bounded one takes over.
                    .unicode_word_boundary(true),
            )
            .thompson(thompson::Config::new().nfa_size_limit(Some(MAX_PATTERN_PROGRAM)))
            .build(pattern)
            .ok();
        let states = match &lazy {
            Some(dfa) => dfa.get_nfa().states().len(),
            None => thompson::Compiler::new()
                .build(pattern)
                .map_or(MAX_PATTERN_PROGRAM, |nfa| nfa.states().len()),
        };
        Ok(Pattern {
            full,
            lazy,
            states,
            caches: Mutex::new(Vec::new()),
        })
    }

    fn is_match(&self, text: &str) -> Result<bool, String> {
        // Within the bound, the `regex` crate's own engines (with their
        // literal shortcuts) answer: the common case, a short argument.
        let steps = text.len().saturating_mul(self.states.max(1));
        if steps <= MAX_SEARCH_STEPS {
            return Ok(self.full.is_match(text));
        }
        if let Some(dfa) = &self.lazy {
            let spare = self.caches.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut cache = spare.unwrap_or_else(|| dfa.create_cache());
            // A cache the search gave up on is dropped, not reused.
            if let Ok(found) = dfa.try_search_fwd(&mut cache, &Input::new(text).earliest(true)) {
                let mut caches = self.caches.lock().unwrap_or_else(|e| e.into_inner());
                if caches.len() < SPARE_CACHES {
                    caches.push(cache);
                }
                return Ok(found.is_some());
            }
        }
        Err(format!(
            "the pattern is too costly to run over a text of {} bytes: its {} states \
             times the text exceed {MAX_SEARCH_STEPS} steps (simplify the pattern, \
             above all its counted repetitions)",
            text.len(),
            self.states
        ))
    }
}

fn cached(pattern: &str) -> Result<Arc<Pattern>, regex::Error> {
    if let Some(compiled) = PATTERNS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(pattern)
    {
        return Ok(compiled.clone());
    }
    let compiled = Arc::new(Pattern::new(pattern)?);
    let mut patterns = PATTERNS.write().unwrap_or_else(|e| e.into_inner());
    if patterns.len() >= MAX_CACHED_PATTERNS {
        patterns.clear();
    }
    patterns.insert(pattern.to_string(), compiled.clone());
    Ok(compiled)
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
    let compiled = cached(pattern.inner())
        .map_err(|why| ExecutionError::function_error("matches", describe(&why)))?;
    let found = timed(|| compiled.is_match(text.inner()))
        .map_err(|why| ExecutionError::function_error("matches", why))?;
    Ok(CowVal::owned(CelBool::from(found)))
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
    fn both_searches_agree_and_the_costly_one_is_bounded() {
        for (pattern, text, found) in [
            ("^rm\\s+-rf", "rm  -rf /", true),
            ("(?i)\\bpassword\\b", "the PASSWORD is", true),
            ("(?i)\\bpassword\\b", "passwords", false),
            // Past ASCII, Unicode `\b` leaves the lazy DFA.
            ("\\bmot\\b", "le mot de passe é", true),
            ("\\bmot\\b", "moté", false),
            ("AKIA[0-9A-Z]{16}", "key=AKIAABCDEFGHIJKLMNOP", true),
        ] {
            let p = Pattern::new(pattern).unwrap();
            assert_eq!(p.is_match(text), Ok(found), "{pattern} over {text}");
            assert_eq!(p.full.is_match(text), found, "{pattern} over {text}");
        }
        // A pattern whose DFA has a state per byte: on a short text the
        // search finishes; on a long one it is refused, quickly.
        let p = Pattern::new("a[ab]{300}c").unwrap();
        let short: String = (0..2_000)
            .map(|i| if i % 3 == 0 { 'a' } else { 'b' })
            .collect();
        assert_eq!(p.is_match(&short), Ok(false));
        // Random `a`s and `b`s (xorshift): no structure for the DFA to reuse.
        let mut x = 0x2545_f491_u32;
        let long: String = (0..1_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if x & 1 == 1 {
                    'a'
                } else {
                    'b'
                }
            })
            .collect();
        let refused = p.is_match(&long).unwrap_err();
        assert!(refused.contains("too costly"), "{refused}");
        // A long text the lazy DFA handles is answered in full.
        let key = Pattern::new("AKIA[0-9A-Z]{16}").unwrap();
        let haystack = "b".repeat(3_000_000) + " AKIAABCDEFGHIJKLMNOP";
        assert!(haystack.len() * key.states > MAX_SEARCH_STEPS);
        assert_eq!(key.is_match(&haystack), Ok(true));
        assert_eq!(key.is_match(&haystack[..3_000_000]), Ok(false));
        // A search after a refusal starts afresh.
        assert_eq!(p.is_match("a"), Ok(false));
        let hit = format!("a{}c", "b".repeat(300));
        assert_eq!(p.is_match(&hit), Ok(true));
    }

    #[test]
    fn a_call_has_one_search_time_for_all_its_searches() {
        use crate::{CallFacts, CelCondition, Condition, ConditionInput};
        let input = ConditionInput::new(CallFacts {
            args: serde_json::json!({"cmd": "rm -rf /"}),
            ..Default::default()
        });
        let condition = CelCondition::compile("args.cmd.matches('^rm ')").unwrap();
        assert_eq!(condition.holds(&input), Ok(true));
        // Spent: every further search of the call is refused.
        input.spend_search_time();
        let refused = condition.holds(&input).unwrap_err();
        assert!(refused.0.contains("regex searches took"), "{refused:?}");
        // Another call has its own.
        let other = ConditionInput::new(input.facts.clone());
        assert_eq!(condition.holds(&other), Ok(true));
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
