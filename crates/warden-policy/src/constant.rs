//! Parts of a condition built only of the author's literals give the same
//! value on every call. One that fails (`int('abc')`, `1 / 0`, a zone
//! that does not exist, a map literal with a key twice) would fail on
//! every call, so it is refused when the policy is written.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, MapExpr, StructExpr};
use cel::{Context, Env, IdedExpr};

use crate::regex_match;

/// The innermost part of `root` that reads nothing of the call and fails
/// whenever it runs, with the engine's reason.
pub fn always_failing<'e>(env: &Arc<Env>, root: &'e IdedExpr) -> Option<(&'e IdedExpr, String)> {
    let ctx = Context::with_env(env.clone());
    // Children before their parents, so the first failure found is the
    // innermost: `1 / 0`, not `1 / 0 == 1`.
    let mut order: Vec<&IdedExpr> = Vec::new();
    let mut stack = vec![(root, false)];
    while let Some((e, visited)) = stack.pop() {
        if visited {
            order.push(e);
            continue;
        }
        stack.push((e, true));
        for child in children(e).into_iter().rev() {
            stack.push((child, false));
        }
    }
    // The variables each part reads that nothing inside it binds: a part
    // that reads none (a loop over literals reading only its own
    // variables included) gives the same value on every call.
    let mut free: HashMap<u64, Option<HashSet<String>>> = HashMap::new();
    let mut constant: HashMap<u64, bool> = HashMap::new();
    for e in order {
        let of = |c: &IdedExpr| free.get(&c.id).cloned().flatten();
        let reads: Option<HashSet<String>> = match &e.expr {
            Expr::Literal(_) => Some(HashSet::new()),
            Expr::Ident(name) => Some(HashSet::from([name.clone()])),
            // Messages and the unparsed are never evaluated here.
            Expr::Struct(_) | Expr::Unspecified => None,
            Expr::Comprehension(c) => {
                let own = [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)];
                let mut reads = HashSet::new();
                for (part, binds) in [
                    (&c.iter_range, false),
                    (&c.accu_init, false),
                    (&c.loop_cond, true),
                    (&c.loop_step, true),
                    (&c.result, true),
                ] {
                    let Some(part_reads) = of(part) else {
                        reads.insert(String::new());
                        continue;
                    };
                    reads.extend(
                        part_reads
                            .into_iter()
                            .filter(|v| !(binds && own.contains(&Some(v)))),
                    );
                }
                Some(reads)
            }
            _ => children(e).iter().try_fold(HashSet::new(), |mut all, c| {
                all.extend(of(c)?);
                Some(all)
            }),
        };
        let is_constant = reads.as_ref().is_some_and(HashSet::is_empty);
        free.insert(e.id, reads);
        constant.insert(e.id, is_constant);
        if let Some(why) = unknown_zone(&ctx, e, &constant) {
            return Some((e, why));
        }
        if !is_constant || matches!(e.expr, Expr::Literal(_)) {
            continue;
        }
        let budget = AtomicU64::new(regex_match::CALL_SEARCH_TIME.as_nanos() as u64);
        if let Err(err) = regex_match::with_search_time(&budget, || ctx.resolve(e)) {
            return Some((e, crate::failure::describe(&err)));
        }
    }
    None
}

/// The accessors of a time that take a zone.
const ZONED: &[&str] = &[
    "getFullYear",
    "getMonth",
    "getDayOfYear",
    "getDayOfMonth",
    "getDate",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
];

/// A zone given as literals to an accessor of a time read from the call
/// (`now.getHours('Mars/Olympus')`): the same zone on a fixed time says
/// whether the engine knows it.
fn unknown_zone(ctx: &Context, e: &IdedExpr, constant: &HashMap<u64, bool>) -> Option<String> {
    let Expr::Call(call) = &e.expr else {
        return None;
    };
    let [zone] = &call.args[..] else {
        return None;
    };
    if call.target.is_none()
        || !ZONED.contains(&call.func_name.as_str())
        || !constant.get(&zone.id).copied().unwrap_or(false)
    {
        return None;
    }
    let zone = ctx.resolve(zone).ok()?;
    let probe = cel::Program::compile("timestamp('2000-01-01T00:00:00Z').getHours(zone)").ok()?;
    let mut scope = ctx.new_inner_scope();
    scope.add_variable_from_value("zone", zone);
    probe
        .execute(&scope)
        .err()
        .map(|err| crate::failure::describe(&err))
}

/// An expression's operands, in the order they are written.
pub(crate) fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Call(call) => call.target.iter().map(|t| &**t).chain(&call.args).collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Select(select) => vec![&select.operand],
        Expr::Map(MapExpr { entries }) | Expr::Struct(StructExpr { entries, .. }) => entries
            .iter()
            .flat_map(|entry| match &entry.expr {
                EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
                EntryExpr::StructField(f) => vec![&f.value],
            })
            .collect(),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}
