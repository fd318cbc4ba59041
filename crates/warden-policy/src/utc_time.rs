//! `timestamp(…)` in UTC. The `cel` crate keeps the offset a time was
//! written with, and its accessors (`getHours()`, `getDayOfWeek()`, …)
//! read the time in that offset; CEL reads them in UTC when no zone is
//! given. An agent writes its own arguments, so `"08:30:00+05:30"` would
//! pass a night-time rule that `"03:00:00Z"`, the same instant, does not.
//! `timestamp` calls are parsed into a function that returns the instant
//! in UTC, which every accessor then reads as the spec says.

use cel::common::ast::{CallExpr, Expr};
use cel::common::types::{CelInt, CelString, CelTimestamp, INT_TYPE, STRING_TYPE, TIMESTAMP_TYPE};
use cel::common::value::CowVal;
use cel::parser::Macro;
use cel::{Env, ExecutionError};
use chrono::{DateTime, FixedOffset, Utc};

/// The function `timestamp` calls are parsed into.
pub const TIMESTAMP_FN: &str = "@timestamp";

/// Years 1 to 9999, as CEL requires of a timestamp.
fn in_range(t: &DateTime<FixedOffset>) -> bool {
    (1..=9999).contains(&chrono::Datelike::year(&t.with_timezone(&Utc)))
}

fn utc(t: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    t.with_timezone(&Utc).fixed_offset()
}

fn timestamp<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let fail = |why: &str| ExecutionError::function_error("timestamp", why);
    let [value] = &args[..] else {
        return Err(fail("takes one value"));
    };
    let at = if let Some(text) = value.downcast_ref::<CelString>() {
        DateTime::parse_from_rfc3339(text.inner()).map_err(|_| {
            fail("the text is not an RFC 3339 time (such as `2026-01-01T00:00:00Z`)")
        })?
    } else if let Some(t) = value.downcast_ref::<CelTimestamp>() {
        *t.inner()
    } else if let Some(seconds) = value.downcast_ref::<CelInt>() {
        DateTime::from_timestamp(*seconds.inner(), 0)
            .ok_or_else(|| fail("timestamp out of range"))?
            .fixed_offset()
    } else {
        return Err(fail("takes a string, a timestamp or an int"));
    };
    if !in_range(&at) {
        return Err(fail("timestamp out of range"));
    }
    Ok(CowVal::owned(CelTimestamp::from(utc(at))))
}

/// Registers the macro and the function it calls.
pub fn register(env: &mut Env) {
    env.add_macro(Macro::global("timestamp", 1, |helper, _, args| {
        Ok(Some(helper.next_expr(Expr::Call(CallExpr {
            func_name: TIMESTAMP_FN.into(),
            target: None,
            args: std::mem::take(args),
        }))))
    }))
    .expect("the timestamp macro registers once");
    for (id, kind) in [
        ("warden_timestamp_string", STRING_TYPE),
        ("warden_timestamp_timestamp", TIMESTAMP_TYPE),
        ("warden_timestamp_int", INT_TYPE),
    ] {
        env.add_overload(TIMESTAMP_FN, id, vec![kind], timestamp)
            .expect("the function registers once");
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::holds;

    #[test]
    fn accessors_read_an_argument_s_time_in_utc_whatever_its_offset() {
        let night = "timestamp(args.at).getHours() < 6";
        for at in [
            "2026-01-02T03:00:00Z",
            "2026-01-02T08:30:00+05:30",
            "2026-01-01T22:00:00-05:00",
        ] {
            assert!(holds(night, serde_json::json!({ "at": at })), "{at}");
        }
        let json = serde_json::json!({"at": "2026-12-31T20:00:00-05:00"});
        assert!(holds(
            "timestamp(args.at).getFullYear() == 2027",
            json.clone()
        ));
        assert!(holds(
            "timestamp(args.at).getDayOfWeek() == 5",
            json.clone()
        ));
        assert!(holds(
            "(timestamp(args.at) + duration('1h')).getHours() == 2",
            json.clone()
        ));
        // A zone given to the accessor still applies.
        assert!(holds(
            "timestamp(args.at).getHours('America/New_York') == 20",
            json
        ));
        assert!(holds(
            "timestamp(1800000000) == timestamp('2027-01-15T08:00:00Z')",
            serde_json::json!({})
        ));
    }
}
