//! `indexOf` and `lastIndexOf` in time linear in the text. The `cel`
//! crate compares the needle at every position of the text, a cost of
//! their product: a 4 KB needle over a 1 MB argument took 0.1 s per call,
//! and an agent chooses the argument. These calls are parsed into
//! functions that search with the standard library's two-way search and
//! answer the same code-point indexes and errors.

use cel::common::ast::{CallExpr, Expr};
use cel::common::types::{CelInt, CelString, INT_TYPE, STRING_TYPE};
use cel::common::value::CowVal;
use cel::parser::Macro;
use cel::{Env, ExecutionError};

/// The functions `indexOf` and `lastIndexOf` calls are parsed into.
pub const INDEX_OF_FN: &str = "@indexOf";
pub const LAST_INDEX_OF_FN: &str = "@lastIndexOf";

fn out_of_range(function: &str, at: i64) -> ExecutionError {
    ExecutionError::function_error(function, format!("index out of range: {at}"))
}

/// The byte offset of code point `n` of `text` (its length past the end).
fn byte_of(text: &str, n: usize) -> usize {
    text.char_indices().nth(n).map_or(text.len(), |(at, _)| at)
}

fn strings<'a>(
    function: &str,
    args: &'a [CowVal<'_, '_>],
) -> Result<(&'a str, &'a str, Option<i64>), ExecutionError> {
    let text = |v: &'a CowVal<'_, '_>| {
        v.downcast_ref::<CelString>()
            .map(|s| s.inner())
            .ok_or_else(|| ExecutionError::function_error(function, "takes strings"))
    };
    match args {
        [this, needle] => Ok((text(this)?, text(needle)?, None)),
        [this, needle, offset] => {
            let offset = offset
                .downcast_ref::<CelInt>()
                .map(|i| *i.inner())
                .ok_or_else(|| ExecutionError::function_error(function, "takes an int offset"))?;
            Ok((text(this)?, text(needle)?, Some(offset)))
        }
        _ => Err(ExecutionError::invalid_argument_count(2, args.len())),
    }
}

/// The code-point index of the first `needle` at or after `offset`.
fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (text, needle, offset) = strings("indexOf", &args)?;
    let from = match offset {
        None => 0,
        Some(at) => {
            let len = text.chars().count() as i64;
            if at < 0 {
                return Err(out_of_range("indexOf", at));
            }
            if needle.is_empty() {
                return Ok(CowVal::owned(CelInt::from(at.min(len))));
            }
            if at >= len {
                return Err(out_of_range("indexOf", at));
            }
            at as usize
        }
    };
    let start = byte_of(text, from);
    let found = text[start..].find(needle).map_or(-1, |at| {
        (from + text[start..start + at].chars().count()) as i64
    });
    Ok(CowVal::owned(CelInt::from(found)))
}

/// The code-point index of the last `needle` that starts at or before
/// `offset` (the end of the text without one).
fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (text, needle, offset) = strings("lastIndexOf", &args)?;
    let len = text.chars().count();
    let until = match offset {
        None => len,
        Some(at) => {
            if at < 0 {
                return Err(out_of_range("lastIndexOf", at));
            }
            if needle.is_empty() {
                return Ok(CowVal::owned(CelInt::from(at.min(len as i64))));
            }
            if at >= len as i64 {
                return Err(out_of_range("lastIndexOf", at));
            }
            at as usize
        }
    };
    // An occurrence starting at or before `until` ends by this point.
    let end = byte_of(text, until.saturating_add(needle.chars().count()));
    let found = text[..end]
        .rfind(needle)
        .map_or(-1, |at| text[..at].chars().count() as i64);
    Ok(CowVal::owned(CelInt::from(found)))
}

fn receiver_macro(env: &mut Env, name: &'static str, into: &'static str, argc: usize) {
    env.add_macro(Macro::receiver(name, argc, move |helper, target, args| {
        let Some(text) = target.take() else {
            return Ok(None);
        };
        Ok(Some(helper.next_expr(Expr::Call(CallExpr {
            func_name: into.into(),
            target: Some(Box::new(text)),
            args: std::mem::take(args),
        }))))
    }))
    .expect("the receiver macro registers once");
}

/// Registers the macros and the functions they call.
pub fn register(env: &mut Env) {
    type Search = for<'b, 'v> fn(Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError>;
    let searches: [(&'static str, &'static str, Search); 2] = [
        ("indexOf", INDEX_OF_FN, index_of),
        ("lastIndexOf", LAST_INDEX_OF_FN, last_index_of),
    ];
    for (name, into, function) in searches {
        receiver_macro(env, name, into, 1);
        receiver_macro(env, name, into, 2);
        env.add_member_overload(
            into,
            &format!("warden_{name}_string"),
            STRING_TYPE,
            vec![STRING_TYPE],
            function,
        )
        .expect("the function registers once");
        env.add_member_overload(
            into,
            &format!("warden_{name}_string_int"),
            STRING_TYPE,
            vec![STRING_TYPE, INT_TYPE],
            function,
        )
        .expect("the function registers once");
    }
}

#[cfg(test)]
mod tests {
    use crate::set::Condition;
    use crate::test_support::holds;
    use crate::{CallFacts, CelCondition, ConditionInput};

    fn value(source: &str, s: &str) -> bool {
        holds(source, serde_json::json!({ "s": s }))
    }

    #[test]
    fn answers_as_the_strings_extension_does_in_linear_time() {
        let s = "héllo wörld héllo";
        for source in [
            "args.s.indexOf('héllo') == 0",
            "args.s.indexOf('héllo', 1) == 12",
            "args.s.indexOf('wörld') == 6",
            "args.s.indexOf('nope') == -1",
            "args.s.indexOf('') == 0",
            "args.s.indexOf('', 3) == 3",
            "args.s.lastIndexOf('héllo') == 12",
            "args.s.lastIndexOf('héllo', 11) == 0",
            "args.s.lastIndexOf('héllo', 12) == 12",
            "args.s.lastIndexOf('') == 17",
            "args.s.lastIndexOf('nope') == -1",
            "args.s.lastIndexOf('ö', 16) == 7",
        ] {
            assert!(value(source, s), "{source}");
        }
        // Offsets outside the text are errors, as in the extension.
        let facts = CallFacts {
            args: serde_json::json!({ "s": "abc" }),
            ..Default::default()
        };
        for source in [
            "args.s.indexOf('a', 3) == 0",
            "args.s.lastIndexOf('a', -1) == 0",
        ] {
            let c = CelCondition::compile(source).unwrap();
            assert!(
                c.holds(&ConditionInput::new(facts.clone())).is_err(),
                "{source}"
            );
        }
        // A long needle over a long text: linear, not their product.
        let text = "a".repeat(800_000);
        let needle = format!("{}b", "a".repeat(3_900));
        assert!(value(&format!("args.s.indexOf('{needle}') == -1"), &text));
        assert!(value(
            &format!("args.s.lastIndexOf('{needle}') == -1"),
            &text
        ));
    }
}
