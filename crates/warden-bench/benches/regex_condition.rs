//! A condition with a regex: Warden's (each pattern compiled once, then
//! kept) beside the same expression in the `cel` crate's own standard
//! library, which compiles the pattern on every evaluation. Two patterns:
//! one of ASCII classes, one with Unicode word classes (`\w`), whose
//! compiled program is far larger.

use std::hint::black_box;
use std::sync::Arc;

use cel::{Context, Env, Program, Value};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::json;
use warden_policy::{CallFacts, CelCondition, Condition, ConditionInput};

const CONDITIONS: [(&str, &str); 2] = [
    ("ascii", r"args.cmd.matches('^rm\\s+-rf\\s+/')"),
    (
        "unicode_words",
        r"args.email.matches(r'^[\w.+-]+@[\w-]+\.[\w.]+$')",
    ),
];

fn facts() -> CallFacts {
    CallFacts {
        args: json!({"cmd": "ls -la /srv/data", "email": "dana.ops@example.com"}),
        ..Default::default()
    }
}

/// The reference: the stdlib's `matches`, with the arguments as a variable.
fn reference(source: &str) -> (Program, Context<'static, 'static>) {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("the strings extension registers once");
    let program = env.compile(source).expect("the reference compiles");
    let mut context = Context::with_env(Arc::new(env));
    let args = cel::to_value(facts().args).expect("the arguments convert");
    context.add_variable_from_value("args", args);
    (program, context)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("regex_condition");
    for (name, source) in CONDITIONS {
        let condition = CelCondition::compile(source).expect("the condition compiles");
        let input = ConditionInput::new(facts());
        assert_eq!(condition.holds(&input), Ok(name == "unicode_words"));
        group.bench_function(BenchmarkId::new("warden", name), |b| {
            b.iter(|| black_box(condition.holds(black_box(&input))))
        });
        let (program, context) = reference(source);
        assert_eq!(
            program.execute(&context),
            Ok(Value::Bool(name == "unicode_words"))
        );
        group.bench_function(BenchmarkId::new("cel_stdlib", name), |b| {
            b.iter(|| black_box(program.execute(black_box(&context))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
