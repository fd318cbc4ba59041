//! The argument types of the standard functions a condition may call. The
//! `cel` crate checks them only when a call runs, and a call that does not
//! fit fails there: written once in a policy, such a condition would fail
//! on every call (counting as met for a `deny`, never for an `allow`). So
//! a call whose known types fit none of its function's forms is refused
//! when the policy is written, as is a literal `timestamp` or `duration`
//! that does not parse. Types not known before the call (`args.x`) fit
//! every form.

use cel::common::ast::{CallExpr, Expr, LiteralValue};

use crate::condition::Kind;
use Kind::{Bool, Bytes, Double, Duration, Int, List, Map, String as Str, Timestamp, Type, UInt};

/// One form of a function: called on a value of a kind (`None`: called
/// alone, `size(x)`) with arguments of these kinds.
struct Form {
    on: Option<Kind>,
    args: &'static [Kind],
}

const fn on(kind: Kind, args: &'static [Kind]) -> Form {
    Form {
        on: Some(kind),
        args,
    }
}

const fn alone(args: &'static [Kind]) -> Form {
    Form { on: None, args }
}

/// The forms of the functions checked here; others are not.
fn forms(name: &str) -> Option<&'static [Form]> {
    const TEXT_TEST: &[Form] = &[on(Str, &[Str])];
    const MATCHES: &[Form] = &[on(Str, &[Str]), alone(&[Str, Str])];
    const SIZE: &[Form] = &[
        on(Str, &[]),
        on(Bytes, &[]),
        on(List, &[]),
        on(Map, &[]),
        alone(&[Str]),
        alone(&[Bytes]),
        alone(&[List]),
        alone(&[Map]),
    ];
    const TEXT_ONLY: &[Form] = &[on(Str, &[])];
    const CLOCK: &[Form] = &[on(Timestamp, &[]), on(Timestamp, &[Str])];
    // A duration reads its own length in these units.
    const TIME_OR_LENGTH: &[Form] = &[on(Timestamp, &[]), on(Timestamp, &[Str]), on(Duration, &[])];
    const CHAR_AT: &[Form] = &[on(Str, &[Int])];
    const INDEX_OF: &[Form] = &[on(Str, &[Str]), on(Str, &[Str, Int])];
    const REPLACE: &[Form] = &[on(Str, &[Str, Str]), on(Str, &[Str, Str, Int])];
    const SPLIT: &[Form] = &[on(Str, &[Str]), on(Str, &[Str, Int])];
    const SUBSTRING: &[Form] = &[on(Str, &[Int]), on(Str, &[Int, Int])];
    const JOIN: &[Form] = &[on(List, &[]), on(List, &[Str])];
    const TIMESTAMP: &[Form] = &[alone(&[Str]), alone(&[Timestamp]), alone(&[Int])];
    const DURATION: &[Form] = &[alone(&[Str]), alone(&[Duration])];
    const TYPE: &[Form] = &[alone(&[Kind::Dyn])];
    // The conversions the engine runs: a time reads as whole seconds, and
    // nothing else converts a time or a length of time to a number.
    const TO_INT: &[Form] = &[
        alone(&[Int]),
        alone(&[UInt]),
        alone(&[Double]),
        alone(&[Str]),
        alone(&[Timestamp]),
    ];
    const TO_NUMBER: &[Form] = &[
        alone(&[Int]),
        alone(&[UInt]),
        alone(&[Double]),
        alone(&[Str]),
    ];
    const TO_BOOL: &[Form] = &[alone(&[Bool]), alone(&[Str])];
    const TO_BYTES: &[Form] = &[alone(&[Bytes]), alone(&[Str])];
    Some(match name {
        "contains" | "startsWith" | "endsWith" => TEXT_TEST,
        "matches" => MATCHES,
        "size" => SIZE,
        "lowerAscii" | "upperAscii" | "trim" | "reverse" => TEXT_ONLY,
        "getFullYear" | "getMonth" | "getDate" | "getDayOfMonth" | "getDayOfYear"
        | "getDayOfWeek" => CLOCK,
        "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds" => TIME_OR_LENGTH,
        "charAt" => CHAR_AT,
        "indexOf" | "lastIndexOf" => INDEX_OF,
        "replace" => REPLACE,
        "split" => SPLIT,
        "substring" => SUBSTRING,
        "join" => JOIN,
        "timestamp" => TIMESTAMP,
        "duration" => DURATION,
        "type" => TYPE,
        "int" => TO_INT,
        "uint" | "double" => TO_NUMBER,
        "bool" => TO_BOOL,
        "bytes" => TO_BYTES,
        _ => return None,
    })
}

/// Why a call of `name` on `target` with `args` fits none of its forms.
pub fn mismatch(name: &str, target: Option<Kind>, args: &[Kind]) -> Option<String> {
    let forms = forms(name)?;
    let fits = |form: &Form| {
        let on = match (form.on, target) {
            (None, None) => true,
            (Some(want), Some(have)) => have.may_be(want),
            _ => false,
        };
        // An unsigned count where an index is asked runs too.
        let arg_fits = |want: Kind, have: Kind| have.may_be(want) || (want == Int && have == UInt);
        on && form.args.len() == args.len()
            && form.args.iter().zip(args).all(|(w, h)| arg_fits(*w, *h))
    };
    if forms.iter().any(fits) {
        return None;
    }
    let shown = |kinds: &[Kind]| {
        kinds
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let call = |on: Option<Kind>, args: &[Kind]| match on {
        Some(on) => format!("{on}.{name}({})", shown(args)),
        None => format!("{name}({})", shown(args)),
    };
    let known: Vec<String> = forms
        .iter()
        .filter(|f| f.on != Some(Type))
        .map(|f| call(f.on, f.args))
        .collect();
    Some(format!(
        "no form of `{name}` takes {}; it is called as {}",
        call(target, args),
        known.join(" or ")
    ))
}

/// Why a literal given to `timestamp` or `duration` cannot be one.
pub fn bad_literal(name: &str, call: &CallExpr) -> Option<String> {
    let [arg] = &call.args[..] else { return None };
    let Expr::Literal(LiteralValue::String(text)) = &arg.expr else {
        return None;
    };
    let text = text.inner();
    match name {
        "timestamp" if chrono::DateTime::parse_from_rfc3339(text).is_err() => Some(format!(
            "`{text}` is not an RFC 3339 time (such as 2026-01-31T09:00:00Z)"
        )),
        "duration" if !is_duration(text) => Some(format!(
            "`{text}` is not a duration (such as 90s, 1h30m or 1.5h; units h, m, s, ms, us, ns)"
        )),
        _ => None,
    }
}

/// CEL's duration text: an optional sign, then numbers each with a unit.
fn is_duration(text: &str) -> bool {
    static FORM: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(h|ms|m|s|us|ns))+$")
            .expect("a valid pattern")
    });
    text == "0" || FORM.is_match(text)
}

#[cfg(test)]
mod tests {
    use crate::CelCondition;

    #[test]
    fn calls_that_fit_no_form_are_refused_when_written() {
        for source in [
            "tool.startsWith(1)",
            "size(1) > 0",
            "tool.matches(1)",
            "tool.contains(true)",
            "now.getHours(1) > 2",
            "tool.lowerAscii(1) == 'a'",
            "agent.status == 1",
            "agent.name == 1",
            "type(args.x) == 'int'",
            "timestamp('nope') < now",
            "duration('xx') > duration('1s')",
            "tool.substring('a') == ''",
            "['a'].join(1) == ''",
            "now.startsWith('a')",
            "duration('1s') > 1",
            "duration('1s') + 1 > duration('1s')",
            "size(duration('1s')) > 0",
            "(now - now) > now",
            "now - duration('1h') > duration('1h')",
            "now - now > 5",
            "duration('1h') * 2 > duration('1h')",
            "duration('1h').getFullYear() > 0",
            // The engine negates no duration.
            "-duration('1h') < duration('0s')",
            "-(now - timestamp(args.since)) < duration('0s')",
            // Two times do not add.
            "now + now > now",
            // The engine reads no `µs`: spelled `us`.
            "duration('2µs') > duration('1us')",
            // Not in the engine: unknown functions.
            "max(args.a, 1) > 0",
            "min(args.a, 1) > 0",
            "args.s.quote() != ''",
            // Conversions the engine does not run.
            "double(now) > 0.0",
            "uint(now) > 0u",
            "int(now - timestamp(args.since)) > 60",
            "double(now - timestamp(args.since)) > 1.0",
            "bool(now)",
            "bytes(now) == b''",
        ] {
            let e = CelCondition::compile(source).expect_err(source);
            assert!(e.column >= 1, "{source}: {e}");
        }
        let e = CelCondition::compile("tool.startsWith(1)").unwrap_err();
        assert!(e.message.contains("string.startsWith(string)"), "{e}");
    }

    #[test]
    fn time_arithmetic_that_compiles_also_runs() {
        use crate::set::Condition;
        use crate::{CallFacts, ConditionInput};
        for source in [
            "now - timestamp('2026-01-01T00:00:00Z') > duration('24h')",
            "now + duration('1h') > now",
            "duration('2h') - duration('1h') == duration('1h')",
            "duration('90m').getHours() == 1",
            "now - timestamp(args.since) > duration('1h')",
        ] {
            let c = CelCondition::compile(source).unwrap();
            let facts = CallFacts {
                args: serde_json::json!({"since": "2026-01-01T00:00:00Z"}),
                now_ms: 1_800_000_000_000,
                ..Default::default()
            };
            assert_eq!(c.holds(&ConditionInput::new(facts)), Ok(true), "{source}");
        }
    }

    #[test]
    fn calls_that_fit_a_form_still_compile() {
        for source in [
            "tool.startsWith('db.')",
            "args.path.startsWith('/etc')",
            "size(args.items) > 3 && args.items.size() < 10",
            "size(tool) < 30",
            "matches(tool, '^db')",
            "tool.matches('^db')",
            "now.getHours() >= 9 && now.getHours('Europe/Paris') < 18",
            "now.getDayOfWeek() < 6",
            "tool.substring(0, 3) == 'db.' && tool.substring(1) != ''",
            "tool.indexOf('.') > 0 && tool.lastIndexOf('.', 5) >= 0",
            "tool.replace('.', '/') != '' && tool.replace('.', '/', 1) != ''",
            "tool.split('.').size() > 1 && tool.split('.', 2)[0] == 'db'",
            "agent.tags.join(',') != '' && agent.tags.join() != ''",
            "tool.charAt(0) == 'd'",
            "type(args.x) == int && type(args.y) == string",
            "timestamp('2026-01-31T09:00:00Z') < now",
            "now - timestamp(args.since) > duration('1h30m')",
            "duration('-1.5h') < duration('90s') && duration('0') == duration('0s')",
            "agent.status == 'active' && agent.external_id == null",
            "args.n.size() > 0",
            "now - timestamp('2026-01-01T00:00:00Z') > duration('24h')",
            "now + duration('1h') > now && duration('1h') + now > now",
            "now - duration('30m') < now",
            "duration('2h') - duration('1h') == duration('1h')",
            "(now - timestamp(args.since)).getHours() < 24",
            "now - args.since > duration('1h') || args.at - now < duration('1h')",
            "args.flag > false && true >= args.flag",
            // Conversions the engine runs, on values known or not.
            "int(now) > 0 && int(args.n) > 1 && int(args.s) > 0 && uint(args.n) > 1u",
            "double(args.n) > 1.0 && double(size(tool)) > 1.0 && int(2.5) == 2",
            "bool(args.flag) && bytes(tool) != b'' && string(now) != ''",
            // Arithmetic on the variables of loops over literals.
            "[1, 2].exists(a, args.items.exists(i, i.n == a + 1))",
            "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33].exists(a, a + 1 == 5)",
            "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10].exists(a, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].exists(b, a + b == 0))",
        ] {
            assert!(
                CelCondition::compile(source).is_ok(),
                "{source}: {:?}",
                CelCondition::compile(source).err()
            );
        }
    }
}
