//! `==`, `!=` and `in` that fail on values of different types. CEL says
//! `42 == "42"` is false, so `args.account_id == 42` would not hold for
//! an agent that sends `"42"` (or `[42]`) to a tool that reads either as
//! 42: a `deny` written that way is dodged by choosing the argument's
//! type. Here such a comparison is an evaluation error instead, which
//! never loosens the outcome (`docs/policies.md`). Numbers of any kind
//! compare by value (`1 == 1.0`), and `null` compares with anything
//! (`args.x == null` asks whether it is null).
//!
//! Numbers of different kinds are compared exactly, for equality and for
//! order (`<`, `<=`, `>`, `>=`): the interpreter compares an `int` with a
//! `double` by turning the `int` into a double, so past 2^53 two different
//! numbers were equal (`9007199254740993 == 9007199254740992.0`), and an
//! account number sent as a double could dodge a `!=` written for it.
//!
//! The operators are built into the interpreter, so each condition's
//! syntax tree is rewritten to call these functions instead.

use cel::common::ast::{operators, EntryExpr, Expr, IdedExpr};
use std::cmp::Ordering;

use cel::common::types::{CelBool, DYN_TYPE};
use cel::common::value::CowVal;
use cel::objects::Key;
use cel::{Env, ExecutionError, Value};

use crate::failure::a_type;

const EQ_FN: &str = "warden_strict_eq";
const NE_FN: &str = "warden_strict_ne";
const IN_FN: &str = "warden_strict_in";
/// The order operators, each with the operator it stands for (named in
/// its errors, as the interpreter names it).
const ORDER_FNS: [(&str, &str); 4] = [
    (operators::LESS, "warden_exact_lt"),
    (operators::LESS_EQUALS, "warden_exact_le"),
    (operators::GREATER, "warden_exact_gt"),
    (operators::GREATER_EQUALS, "warden_exact_ge"),
];

/// Points every `==`, `!=` and `in` of `expr` at the strict functions.
pub fn rewrite(expr: &mut IdedExpr) {
    match &mut expr.expr {
        Expr::Call(call) => {
            let strict = match call.func_name.as_str() {
                operators::EQUALS => Some(EQ_FN),
                operators::NOT_EQUALS => Some(NE_FN),
                operators::IN => Some(IN_FN),
                op => ORDER_FNS
                    .iter()
                    .find(|(operator, _)| *operator == op)
                    .map(|(_, name)| *name),
            };
            if let Some(name) = strict {
                call.func_name = name.to_string();
            }
            if let Some(target) = &mut call.target {
                rewrite(target);
            }
            call.args.iter_mut().for_each(rewrite);
        }
        Expr::Comprehension(c) => {
            for part in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                rewrite(part);
            }
        }
        Expr::List(list) => list.elements.iter_mut().for_each(rewrite),
        Expr::Map(map) => map.entries.iter_mut().for_each(|e| match &mut e.expr {
            EntryExpr::MapEntry(entry) => {
                rewrite(&mut entry.key);
                rewrite(&mut entry.value);
            }
            EntryExpr::StructField(field) => rewrite(&mut field.value),
        }),
        Expr::Struct(s) => s.entries.iter_mut().for_each(|e| match &mut e.expr {
            EntryExpr::MapEntry(entry) => {
                rewrite(&mut entry.key);
                rewrite(&mut entry.value);
            }
            EntryExpr::StructField(field) => rewrite(&mut field.value),
        }),
        Expr::Select(select) => rewrite(&mut select.operand),
        _ => {}
    }
}

fn numeric(v: &Value) -> bool {
    matches!(v, Value::Int(_) | Value::UInt(_) | Value::Float(_))
}

/// Whether `a` and `b` are the same kind of value, as far as comparing
/// them means anything.
fn comparable(a: &Value, b: &Value) -> bool {
    matches!(a, Value::Null)
        || matches!(b, Value::Null)
        || (numeric(a) && numeric(b))
        || std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn mismatch(op: &str, a: &Value, b: &Value) -> String {
    format!(
        "`{op}` compares {} with {}: the call's value is not of the type the condition \
         expects",
        a_type(a),
        a_type(b)
    )
}

/// Equality that refuses values of different types, at any depth.
fn strict_eq(a: &Value, b: &Value) -> Result<bool, String> {
    if !comparable(a, b) {
        return Err(mismatch("==", a, b));
    }
    match (a, b) {
        (Value::List(x), Value::List(y)) => {
            let mut equal = x.len() == y.len();
            for (p, q) in x.iter().zip(y.iter()) {
                equal &= strict_eq(p, q)?;
            }
            Ok(equal)
        }
        (Value::Map(x), Value::Map(y)) => {
            let mut equal = x.map.len() == y.map.len();
            for (key, p) in x.map.iter() {
                match y.map.get(key) {
                    Some(q) => equal &= strict_eq(p, q)?,
                    None => equal = false,
                }
            }
            Ok(equal)
        }
        _ => Ok(match exact_order(a, b) {
            Some(order) => order == Some(Ordering::Equal),
            None => a == b,
        }),
    }
}

/// How a whole number lies against a double, exactly; `None` for NaN.
fn whole_against_double(n: i128, x: f64) -> Option<Ordering> {
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    const MINUS_TWO_63: f64 = -9_223_372_036_854_775_808.0;
    if x.is_nan() {
        return None;
    }
    // Past every int and uint; in between, the double's whole part fits
    // 128 bits exactly.
    if x >= TWO_64 {
        return Some(Ordering::Less);
    }
    if x < MINUS_TWO_63 {
        return Some(Ordering::Greater);
    }
    let whole = x.trunc();
    Some(n.cmp(&(whole as i128)).then_with(|| {
        let fraction = x - whole;
        if fraction > 0.0 {
            Ordering::Less
        } else if fraction < 0.0 {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }))
}

/// The order of a whole number and a double, exactly; `None` for any
/// other pair (the interpreter's own comparison is exact for those).
fn exact_order(a: &Value, b: &Value) -> Option<Option<Ordering>> {
    let whole = |v: &Value| match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        _ => None,
    };
    match (a, b) {
        (Value::Float(x), other) => {
            whole(other).map(|n| whole_against_double(n, *x).map(Ordering::reverse))
        }
        (other, Value::Float(x)) => whole(other).map(|n| whole_against_double(n, *x)),
        _ => None,
    }
}

/// `needle in haystack`: a list's elements or a map's keys, refusing a
/// needle of a kind none of them has.
fn strict_in(needle: &Value, haystack: &Value) -> Result<bool, String> {
    match haystack {
        Value::List(items) => {
            // An element equal to the needle answers; otherwise one of
            // another type fails the whole test, wherever it stands: a
            // decoy of the expected type beside it (`[7, "42"]`) must not
            // turn the error into "not in".
            let mut mismatched: Option<&Value> = None;
            for item in items.iter() {
                match strict_eq(needle, item) {
                    Ok(true) => return Ok(true),
                    Ok(false) => {}
                    Err(_) => {
                        mismatched.get_or_insert(item);
                    }
                }
            }
            match mismatched {
                Some(item) => Err(mismatch("in", needle, item)),
                None => Ok(false),
            }
        }
        Value::Map(map) => {
            // `null` compares with anything, and is no key.
            if map.map.is_empty() || matches!(needle, Value::Null) {
                return Ok(false);
            }
            let key = match needle {
                Value::Int(i) => Key::Int(*i),
                Value::UInt(u) => Key::Uint(*u),
                Value::Bool(b) => Key::Bool(*b),
                Value::String(s) => Key::String(s.clone()),
                other => {
                    return Err(format!(
                        "`in` looks up {} among a map's keys",
                        a_type(other)
                    ))
                }
            };
            let same_kind = |k: &Key| {
                matches!(
                    (k, &key),
                    (Key::Int(_) | Key::Uint(_), Key::Int(_) | Key::Uint(_))
                        | (Key::Bool(_), Key::Bool(_))
                        | (Key::String(_), Key::String(_))
                )
            };
            if !map.map.keys().any(same_kind) {
                return Err(format!(
                    "`in` looks up {} among a map's keys of another type",
                    a_type(needle)
                ));
            }
            Ok(map.map.contains_key(&key))
        }
        other => Err(format!("`in` needs a list or a map, not {}", a_type(other))),
    }
}

fn values<'b, 'v>(name: &str, args: &[CowVal<'b, 'v>]) -> Result<(Value, Value), ExecutionError> {
    let [a, b] = args else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let a = Value::try_from(a.as_ref()).map_err(|e| ExecutionError::function_error(name, e))?;
    let b = Value::try_from(b.as_ref()).map_err(|e| ExecutionError::function_error(name, e))?;
    Ok((a, b))
}

fn answer<'b, 'v>(
    name: &str,
    outcome: Result<bool, String>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    outcome
        .map(|b| CowVal::owned(CelBool::from(b)))
        .map_err(|why| ExecutionError::function_error(name, why))
}

fn eq<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = values("==", &args)?;
    answer("==", strict_eq(&a, &b))
}

fn ne<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = values("!=", &args)?;
    answer("!=", strict_eq(&a, &b).map(|equal| !equal))
}

fn contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (needle, haystack) = values("in", &args)?;
    answer("in", strict_in(&needle, &haystack))
}

/// `a op b` for an order operator: exact between whole numbers and
/// doubles, the interpreter's comparison for everything else (an error,
/// as the interpreter reports it, for values that do not order).
fn order<'b, 'v>(operator: &str, args: &[CowVal<'b, 'v>]) -> Result<Ordering, ExecutionError> {
    let [a, b] = args else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let unordered = || {
        ExecutionError::no_such_overload(
            operator,
            vec![
                a.as_ref().get_type().name().to_owned(),
                b.as_ref().get_type().name().to_owned(),
            ],
        )
    };
    // Only a whole number against a double is read into values (a cheap
    // copy of a number); text and the rest go to the interpreter as they are.
    let mixed = matches!(
        (a.as_ref().get_type().name(), b.as_ref().get_type().name()),
        ("int" | "uint", "double") | ("double", "int" | "uint")
    );
    if mixed {
        if let (Ok(x), Ok(y)) = (Value::try_from(a.as_ref()), Value::try_from(b.as_ref())) {
            if let Some(exact) = exact_order(&x, &y) {
                return exact.ok_or_else(unordered);
            }
        }
    }
    let comparer = a.as_ref().as_comparer().ok_or_else(unordered)?;
    match comparer.compare(b.as_ref()) {
        Ok(order) => Ok(order),
        Err(
            ExecutionError::NoSuchOverload(_)
            | ExecutionError::ValuesNotComparable(_, _)
            | ExecutionError::UnsupportedKeyType(_)
            | ExecutionError::UnexpectedType { .. },
        ) => Err(unordered()),
        Err(other) => Err(other),
    }
}

fn ordered<'b, 'v>(
    operator: &str,
    args: Vec<CowVal<'b, 'v>>,
    holds: fn(Ordering) -> bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let order = order(operator, &args)?;
    Ok(CowVal::owned(CelBool::from(holds(order))))
}

fn lt<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ordered(operators::LESS, args, |o| o == Ordering::Less)
}

fn le<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ordered(operators::LESS_EQUALS, args, |o| o != Ordering::Greater)
}

fn gt<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ordered(operators::GREATER, args, |o| o == Ordering::Greater)
}

fn ge<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ordered(operators::GREATER_EQUALS, args, |o| o != Ordering::Less)
}

/// Registers the strict functions the rewritten conditions call.
pub fn register(env: &mut Env) {
    type Compare = for<'b, 'v> fn(Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError>;
    let functions: [(&str, Compare); 7] = [
        (EQ_FN, eq),
        (NE_FN, ne),
        (IN_FN, contains),
        (ORDER_FNS[0].1, lt),
        (ORDER_FNS[1].1, le),
        (ORDER_FNS[2].1, gt),
        (ORDER_FNS[3].1, ge),
    ];
    for (name, function) in functions {
        env.add_overload(
            name,
            &format!("{name}_dyn"),
            vec![DYN_TYPE, DYN_TYPE],
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
    use serde_json::json;

    fn fails(source: &str, args: serde_json::Value) -> bool {
        let facts = CallFacts {
            args,
            ..Default::default()
        };
        CelCondition::compile(source)
            .unwrap()
            .holds(&ConditionInput::new(facts))
            .is_err()
    }

    #[test]
    fn whole_numbers_and_doubles_compare_exactly() {
        // Past 2^53 a double is not the int beside it: a `!=` written for
        // an account holds for the one next to it sent as a double.
        let sent = |n: &str| serde_json::from_str::<serde_json::Value>(n).unwrap();
        for (condition, n, expected) in [
            ("args.n != 9007199254740993", "9007199254740992.0", true),
            ("args.n == 9007199254740993", "9007199254740992.0", false),
            ("args.n == 9007199254740992", "9007199254740992.0", true),
            ("args.n > 9007199254740992.0", "9007199254740993", true),
            ("args.n >= 9007199254740992.0", "9007199254740993", true),
            ("args.n < 9007199254740992.0", "9007199254740993", false),
            ("args.n <= 9007199254740992.0", "9007199254740992", true),
            (
                "9223372036854775807 < args.n",
                "9223372036854775808.0",
                true,
            ),
            (
                "args.n > 9223372036854775807",
                "9223372036854775808.0",
                true,
            ),
            (
                "args.n == 1.8446744073709552e19",
                "18446744073709551615",
                false,
            ),
            (
                "args.n < 1.8446744073709552e19",
                "18446744073709551615",
                true,
            ),
            ("args.n > -9.3e18", "-9223372036854775808", true),
            ("args.n < 2.5", "2", true),
            ("args.n > 2.5", "3", true),
            ("args.n >= 2.0", "2", true),
            ("args.n > -2.5", "-2", true),
            ("args.n < -2.5", "-3", true),
            ("args.n == 1.0", "1", true),
            ("args.n < 10", "9.5", true),
            ("args.n > 'a'", "\"b\"", true),
            ("args.n < duration('2s')", "\"x\"", false),
        ] {
            let facts = CallFacts {
                args: json!({ "n": sent(n) }),
                ..Default::default()
            };
            let held = CelCondition::compile(condition)
                .unwrap()
                .holds(&ConditionInput::new(facts));
            match held {
                Ok(h) => assert_eq!(h, expected, "{condition} with {n}"),
                // Values that do not order fail, as the interpreter's do.
                Err(_) => assert!(
                    !expected && condition.contains("duration"),
                    "{condition} with {n}"
                ),
            }
        }
        assert!(fails("args.n < 1", json!({"n": "x"})));
    }

    #[test]
    fn a_value_of_another_type_fails_rather_than_compares_unequal() {
        assert!(holds("args.account_id == 42", json!({"account_id": 42})));
        for sent in [json!("42"), json!([42]), json!({"id": 42}), json!(true)] {
            assert!(
                fails("args.account_id == 42", json!({"account_id": sent})),
                "{sent}"
            );
            assert!(
                fails("args.account_id != 42", json!({"account_id": sent})),
                "{sent}"
            );
        }
        assert!(holds(
            "args.env in ['prod', 'production']",
            json!({"env": "prod"})
        ));
        assert!(!holds(
            "args.env in ['prod', 'production']",
            json!({"env": "dev"})
        ));
        assert!(fails(
            "args.env in ['prod', 'production']",
            json!({"env": ["prod"]})
        ));
        assert!(fails("args.ids == [42]", json!({"ids": ["42"]})));
        // A decoy of the expected type beside the mismatch does not hide it.
        for sent in [json!([7, "42"]), json!([null, "42"]), json!(["42", 7])] {
            assert!(fails("42 in args.ids", json!({"ids": sent})), "{sent}");
        }
        assert!(holds("42 in args.ids", json!({"ids": ["x", 42]})));
        assert!(!fails("'x' in args.m", json!({"m": {"1": 1}})));
        assert!(fails("1 in args.m", json!({"m": {"a": 1}})));
    }

    #[test]
    fn numbers_of_any_kind_and_null_still_compare() {
        assert!(holds("args.amount == 100", json!({"amount": 100.0})));
        assert!(holds("args.amount != 100", json!({"amount": 100.5})));
        assert!(holds("args.x == null", json!({"x": null})));
        assert!(holds("args.x != null", json!({"x": "set"})));
        assert!(holds("args.n in [1, 2, 3]", json!({"n": 2})));
        assert!(holds(
            "args.tags.exists_one(t, t == 'pci')",
            json!({"tags": ["pci", "x"]})
        ));
        assert!(holds("'k' in args.m", json!({"m": {"k": 1}})));
        assert!(!holds("args.x in {'a': 1}", json!({"x": null})));
        assert!(!holds("args.l in [[1], [2]]", json!({"l": [3]})));
    }
}
