//! A condition's run-time failure in a policy author's words.
//!
//! The engine's own text shows its Rust forms (`Int(5000)`,
//! `String("a")`, `'_>_'`), which nobody wrote in a condition; these say
//! the same with CEL's type names and the operators as written, as the
//! write-time checker does.

use cel::{ExecutionError, Value};

/// The failure as a policy's author would say it.
pub fn describe(err: &ExecutionError) -> String {
    match err {
        ExecutionError::NoSuchOverload(overload) => {
            let types = overload.argument_types().join(", ");
            let numbers = overload
                .argument_types()
                .iter()
                .all(|t| matches!(t.as_str(), "int" | "uint" | "double"));
            match operator(overload.function()) {
                // Numbers always order, but for NaN (`double('NaN')`, a
                // JSON argument cannot hold one): `<` and the like fail
                // on it rather than answer.
                Some(op @ ("<" | "<=" | ">" | ">=")) if numbers => format!(
                    "`{op}` compared NaN (not a number), which is neither less nor more than \
                     any number"
                ),
                Some(op) => format!("no operator `{op}` for ({types})"),
                None if overload.is_member_function() => {
                    let (target, rest) = overload
                        .argument_types()
                        .split_first()
                        .map(|(t, rest)| (t.as_str(), rest.join(", ")))
                        .unwrap_or(("", String::new()));
                    format!(
                        "no method `{}` on {target} taking ({rest})",
                        overload.function()
                    )
                }
                None => format!(
                    "no function `{}` taking ({types})",
                    overload.function().trim_start_matches('@')
                ),
            }
        }
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => format!(
            "no operator `{}` for ({}, {})",
            arithmetic(op),
            type_name(a),
            type_name(b)
        ),
        ExecutionError::Overflow("negate", a, _) => {
            format!("-{} overflows its type", shown(a))
        }
        ExecutionError::Overflow(op, a, b) => format!(
            "{} {} {} overflows its type",
            shown(a),
            arithmetic(op),
            shown(b)
        ),
        ExecutionError::DivisionByZero(a) => format!("{} / 0 divides by zero", shown(a)),
        ExecutionError::RemainderByZero(a) => format!("{} % 0 divides by zero", shown(a)),
        ExecutionError::IndexOutOfBounds(at) => {
            format!("index {} is outside the list", shown(at))
        }
        ExecutionError::DuplicateKey(key) => {
            format!("the map literal names the key {} twice", shown(key))
        }
        ExecutionError::NoSuchKey(key) => format!("no such key: `{key}`"),
        ExecutionError::ValuesNotComparable(a, b) => {
            format!("{} cannot be compared with {}", a_type(a), a_type(b))
        }
        ExecutionError::UnsupportedIndex(at, on) => {
            format!("{} cannot be indexed by {}", a_type(on), a_type(at))
        }
        ExecutionError::UnsupportedKeyType(key) => {
            format!("{} cannot be a map's key", a_type(key))
        }
        ExecutionError::NotSupportedAsMethod { method, target } => {
            format!("`{method}` is not a method of {}", type_name(target))
        }
        ExecutionError::UnsupportedTargetType { target } => {
            format!("not defined on {}", a_type(target))
        }
        ExecutionError::UndeclaredReference(name) => format!("`{name}` is not defined"),
        ExecutionError::FunctionError { function, message } => {
            let function = function.trim_start_matches('@');
            // Warden's own functions (strict `==`) name themselves.
            if message.starts_with(&format!("`{function}`")) {
                return message.clone();
            }
            format!("`{function}`: {}", plain_conversion(function, message))
        }
        other => other.to_string(),
    }
}

/// The engine's words for text a conversion could not read (`Parsing
/// Error: Error { input: "xx", code: Float }`), said as what it takes.
fn plain_conversion<'m>(function: &str, message: &'m str) -> std::borrow::Cow<'m, str> {
    let parse_failed = message.contains("Parsing Error") || message.contains("parse error");
    match function {
        "duration" if parse_failed => {
            "the text is not a duration (such as `90s`, `1h30m` or `1.5h`)".into()
        }
        "int" | "uint" if parse_failed => "the text is not a whole number".into(),
        "double" if parse_failed => "the text is not a number".into(),
        _ => message.into(),
    }
}

/// `_>_` as written, `>`; `None` for a named function.
fn operator(function: &str) -> Option<&str> {
    let op = match function {
        "_[_]" => "[]",
        "_?_:_" => "?:",
        "!_" => "!",
        "-_" => "-",
        "@in" => "in",
        _ => function.strip_prefix('_')?.strip_suffix('_')?,
    };
    Some(op)
}

/// The engine's names for arithmetic, as written.
fn arithmetic(op: &str) -> &str {
    match op {
        "add" => "+",
        "sub" => "-",
        "mul" => "*",
        "div" => "/",
        "rem" => "%",
        other => other,
    }
}

/// CEL's name for a value's type.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Function(..) => "function",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "bool",
        Value::Duration(_) => "duration",
        Value::Timestamp(_) => "timestamp",
        Value::Opaque(_) | Value::Struct(_) => "message",
        Value::Null => "null",
    }
}

/// A value's type with its article: `an int`, `a string`.
pub(crate) fn a_type(value: &Value) -> String {
    let name = type_name(value);
    // `a uint`: said "you-int".
    let article = if name.starts_with(['a', 'e', 'i', 'o']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// A short literal for a value: numbers and short text as written, others
/// by their type (a value from the call may be long, or a secret).
fn shown(value: &Value) -> String {
    match value {
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => format!("{u}u"),
        Value::Float(f) => format!("{f:?}"),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::String(s) if s.chars().count() <= 32 => {
            serde_json::Value::String(s.to_string()).to_string()
        }
        other => a_type(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(source: &str) -> String {
        let program = cel::Program::compile(source).unwrap();
        let ctx = cel::Context::default();
        describe(&program.execute(&ctx).unwrap_err())
    }

    #[test]
    fn failures_read_as_conditions_are_written() {
        assert_eq!(
            failure("{'a': 1, 'a': 2}.size() == 1"),
            "the map literal names the key \"a\" twice"
        );
        assert_eq!(failure("[1, 2][5] == 1"), "index 5 is outside the list");
        assert_eq!(failure("[1][-1] == 1"), "index -1 is outside the list");
        assert_eq!(
            failure("duration('xx') > duration('1s')"),
            "`duration`: the text is not a duration (such as `90s`, `1h30m` or `1.5h`)"
        );
        assert_eq!(
            failure("int('abc') > 1"),
            "`int`: the text is not a whole number"
        );
        assert_eq!(
            failure("5000 - 1.0 > 0.0"),
            "no operator `-` for (int, double)"
        );
        assert_eq!(failure("'x' > 3"), "no operator `>` for (string, int)");
        let nan = failure("double('NaN') > 5.0");
        assert!(nan.contains("compared NaN"), "{nan}");
        for text in [
            failure("{'a': 1, 'a': 2}.size() == 1"),
            failure("[1, 2][5] == 1"),
            failure("5000 - 1.0 > 0.0"),
        ] {
            assert!(
                !text.contains("Int(") && !text.contains("String("),
                "{text}"
            );
        }
    }
}
