//! A condition with a regex: Warden's (each pattern compiled once, then
//! kept; a lazy DFA first, the exact search only within a bound) beside
//! the same expression in the `cel` crate's own standard library, which
//! compiles the pattern on every evaluation and always searches to the
//! end. Two patterns over a short argument: one of ASCII classes, one with
//! Unicode word classes (`\w`), whose compiled program is far larger. And
//! one pattern whose DFA needs a state for nearly every byte
//! (`a[ab]{300}c`) over a megabyte of random `a`s and `b`s: Warden's
//! answer is a condition error (its bound), the reference's the search.

use std::hint::black_box;
use std::sync::Arc;

use cel::{Context, Env, Program, Value};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use serde_json::json;
use warden_policy::{CallFacts, CelCondition, Condition, ConditionInput};

const CONDITIONS: [(&str, &str); 2] = [
    ("ascii", r"args.cmd.matches('^rm\\s+-rf\\s+/')"),
    (
        "unicode_words",
        r"args.email.matches(r'^[\w.+-]+@[\w-]+\.[\w.]+$')",
    ),
];

/// A megabyte of random `a`s and `b`s (xorshift, fixed seed).
fn random_ab() -> String {
    let mut x = 0x2545_f491_u32;
    (0..1_000_000)
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
        .collect()
}

fn facts(blob: bool) -> CallFacts {
    let args = if blob {
        json!({"blob": random_ab()})
    } else {
        json!({"cmd": "ls -la /srv/data", "email": "dana.ops@example.com"})
    };
    CallFacts {
        args,
        ..Default::default()
    }
}

/// The reference: the stdlib's `matches`, with the arguments as a variable.
fn reference(source: &str, blob: bool) -> (Program, Context<'static, 'static>) {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("the strings extension registers once");
    let program = env.compile(source).expect("the reference compiles");
    let mut context = Context::with_env(Arc::new(env));
    let args = cel::to_value(facts(blob).args).expect("the arguments convert");
    context.add_variable_from_value("args", args);
    (program, context)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("regex_condition");
    for (name, source) in CONDITIONS {
        let condition = CelCondition::compile(source).expect("the condition compiles");
        let call = facts(false);
        assert_eq!(
            condition.holds(&ConditionInput::new(call.clone())),
            Ok(name == "unicode_words")
        );
        // A call's input each time: a call's searches share one search
        // time, and its variables are converted once per call.
        group.bench_function(BenchmarkId::new("warden", name), |b| {
            b.iter_batched(
                || ConditionInput::new(call.clone()),
                |input| black_box(condition.holds(&input)),
                BatchSize::SmallInput,
            )
        });
        let (program, context) = reference(source, false);
        assert_eq!(
            program.execute(&context),
            Ok(Value::Bool(name == "unicode_words"))
        );
        group.bench_function(BenchmarkId::new("cel_stdlib", name), |b| {
            b.iter(|| black_box(program.execute(black_box(&context))))
        });
    }
    // The state explosion: few samples, each search takes seconds in the
    // reference.
    group.sample_size(10);
    let source = "args.blob.matches('a[ab]{300}c')";
    let condition = CelCondition::compile(source).expect("the condition compiles");
    let call = facts(true);
    assert!(
        condition.holds(&ConditionInput::new(call.clone())).is_err(),
        "Warden refuses the search"
    );
    group.bench_function(BenchmarkId::new("warden", "dfa_explosion_1mb"), |b| {
        b.iter_batched(
            || ConditionInput::new(call.clone()),
            |input| black_box(condition.holds(&input)),
            BatchSize::LargeInput,
        )
    });
    let (program, context) = reference(source, true);
    assert_eq!(program.execute(&context), Ok(Value::Bool(false)));
    group.bench_function(BenchmarkId::new("cel_stdlib", "dfa_explosion_1mb"), |b| {
        b.iter(|| black_box(program.execute(black_box(&context))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
