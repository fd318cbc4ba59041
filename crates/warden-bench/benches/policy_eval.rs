//! Policy evaluation alone: one decision over 100, 1,000, 10,000 and
//! 100,000 policies of a realistic mix, in Warden's engine and, beside it,
//! the same policies written for Cedar.
//!
//! The mix, per namespace of tools (one namespace per five policies, so a
//! larger set covers more tools rather than piling onto the same ones):
//! an exact tool with a numeric condition, a namespace prefix, a glob
//! inside the namespace, an exact tool selected by agent tag, and an exact
//! tool in `monitor` mode with a drift condition. Every 100th policy is a
//! `*` rule with a tag selector. The call is a tool in a namespace in the
//! middle of the set, from an agent with two tags, with arguments.
//!
//! Cedar has no glob over action names: prefixes are action groups (the
//! natural Cedar model) and globs are `like` over the tool name in the
//! context; conditions are `when` clauses over the context and the
//! principal's tags.

use std::hint::black_box;
use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet as CedarSet, Request};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::{json, Value};
use warden_core::policy::{PolicyChanges, PolicyRecord};
use warden_policy::drift::DriftScore;
use warden_policy::{Call, CallFacts, ConditionInput, Decision, PolicySet};

const SIZES: [usize; 4] = [100, 1_000, 10_000, 100_000];
const VERBS: [&str; 5] = ["read", "write", "delete", "list", "export"];

struct Spec {
    pattern: String,
    condition: Option<String>,
    tags: Option<String>,
    decision: &'static str,
    monitor: bool,
}

/// The `i`th policy of the mix.
fn spec(i: usize) -> Spec {
    let ns = i / 5;
    let verb = VERBS[ns % VERBS.len()];
    if i % 100 == 99 {
        return Spec {
            pattern: "*".into(),
            condition: None,
            tags: Some(format!("team{}", i % 7)),
            decision: "audit",
            monitor: false,
        };
    }
    match i % 5 {
        0 => Spec {
            pattern: format!("ns{ns}.{verb}"),
            condition: Some(format!("args.amount > {}", 100 + ns % 900)),
            tags: None,
            decision: "step_up",
            monitor: false,
        },
        1 => Spec {
            pattern: format!("ns{ns}.*"),
            condition: None,
            tags: None,
            decision: "allow",
            monitor: false,
        },
        2 => Spec {
            pattern: format!("ns{ns}.*_admin"),
            condition: None,
            tags: None,
            decision: "deny",
            monitor: false,
        },
        3 => Spec {
            pattern: format!("ns{ns}.delete"),
            condition: None,
            tags: Some("prod".into()),
            decision: "deny",
            monitor: false,
        },
        _ => Spec {
            pattern: format!("ns{ns}.export"),
            condition: Some("drift.score > 0.5".into()),
            tags: None,
            decision: "deny",
            monitor: true,
        },
    }
}

fn warden_set(n: usize) -> PolicySet<ConditionInput> {
    let policies = (0..n)
        .map(|i| {
            let s = spec(i);
            let record = PolicyRecord::create(
                PolicyChanges {
                    name: Some(format!("p{i}")),
                    action_pattern: Some(s.pattern),
                    condition: Some(s.condition),
                    agents: Some(s.tags.map(|t| warden_core::policy::AgentsSpec {
                        ids: vec![],
                        tags: vec![t],
                    })),
                    decision: Some(s.decision.into()),
                    mode: Some(if s.monitor { "monitor" } else { "enforce" }.into()),
                    priority: Some((i % 10) as i32),
                    ..Default::default()
                },
                format!("pol_{i}"),
                "bench",
                0,
            )
            .expect("the mix compiles");
            record.compile().expect("compiles").policy
        })
        .collect();
    PolicySet::compile(policies, Decision::Allow)
}

fn cedar_set(n: usize) -> CedarSet {
    let mut src = String::with_capacity(n * 120);
    for i in 0..n {
        let s = spec(i);
        let effect = if s.decision == "allow" || s.decision == "audit" {
            "permit"
        } else {
            "forbid"
        };
        let action = if s.pattern == "*" {
            "action".to_string()
        } else if let Some(ns) = s.pattern.strip_suffix(".*") {
            format!("action in Action::\"{ns}\"")
        } else if s.pattern.contains('*') {
            let ns = s.pattern.split('.').next().unwrap();
            format!("action in Action::\"{ns}\"")
        } else {
            format!("action == Action::\"{}\"", s.pattern)
        };
        let mut when = Vec::new();
        if s.pattern.contains("*_admin") {
            when.push(format!("context.tool like \"{}\"", s.pattern));
        }
        if let Some(c) = &s.condition {
            when.push(
                c.replace("args.amount", "context.amount")
                    .replace("drift.score > 0.5", "context.drift_permille > 500"),
            );
        }
        if let Some(t) = &s.tags {
            when.push(format!("principal.tags.contains(\"{t}\")"));
        }
        let when = if when.is_empty() {
            String::new()
        } else {
            format!(" when {{ {} }}", when.join(" && "))
        };
        src.push_str(&format!(
            "@id(\"p{i}\")\n{effect}(principal, {action}, resource){when};\n"
        ));
    }
    CedarSet::from_str(&src).expect("the Cedar policies parse")
}

/// The call: the middle namespace, its `write` tool... its verb.
fn call_tool(n: usize) -> String {
    let ns = (n / 5) / 2;
    format!("ns{ns}.{}", VERBS[ns % VERBS.len()])
}

fn cedar_entities(n: usize) -> Entities {
    // Each tool belongs to its namespace's action group.
    let ns = (n / 5) / 2;
    let tool = call_tool(n);
    let json = json!([
        {"uid": {"type": "Agent", "id": "agt_1"}, "attrs": {"tags": ["prod", "team3"]}, "parents": []},
        {"uid": {"type": "Action", "id": tool}, "attrs": {}, "parents": [{"type": "Action", "id": format!("ns{ns}")}]},
        {"uid": {"type": "Action", "id": format!("ns{ns}")}, "attrs": {}, "parents": []},
        {"uid": {"type": "Tool", "id": "call"}, "attrs": {}, "parents": []}
    ]);
    Entities::from_json_value(json, None).expect("entities")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_evaluation");
    let args = json!({"amount": 2500, "currency": "EUR", "to": "DE89370400440532013000"});
    let tags = vec!["prod".to_string(), "team3".to_string()];
    for n in SIZES {
        let tool = call_tool(n);
        let set = warden_set(n);
        group.bench_with_input(BenchmarkId::new("warden", n), &n, |b, _| {
            b.iter(|| {
                let input = ConditionInput::new(CallFacts {
                    tool: tool.clone(),
                    args: args.clone(),
                    agent_id: "agt_1".into(),
                    agent_tags: tags.clone(),
                    agent_status: "active".into(),
                    drift: DriftScore {
                        score: 0.2,
                        ..Default::default()
                    },
                    now_ms: 1_700_000_000_000,
                    ..Default::default()
                });
                let eval = set.evaluate(&Call {
                    tool: black_box(&tool),
                    agent_id: "agt_1",
                    agent_alias: None,
                    agent_tags: &tags,
                    context: &input,
                });
                black_box((eval.decision, eval.matched.len()));
            })
        });
        let cedar = cedar_set(n);
        let entities = cedar_entities(n);
        let authorizer = Authorizer::new();
        let principal = EntityUid::from_str("Agent::\"agt_1\"").unwrap();
        let action = EntityUid::from_str(&format!("Action::\"{tool}\"")).unwrap();
        let resource = EntityUid::from_str("Tool::\"call\"").unwrap();
        group.bench_with_input(BenchmarkId::new("cedar", n), &n, |b, _| {
            b.iter(|| {
                let context = Context::from_json_value(
                    json!({"tool": tool, "amount": 2500, "drift_permille": 200}),
                    None,
                )
                .unwrap();
                let request = Request::new(
                    principal.clone(),
                    action.clone(),
                    resource.clone(),
                    context,
                    None,
                )
                .unwrap();
                black_box(
                    authorizer
                        .is_authorized(&request, &cedar, &entities)
                        .decision(),
                );
            })
        });
    }
    group.finish();
}

fn sanity(_: &mut Criterion) {
    // Both engines see the same call the same way: a matching step-up
    // (Warden) is a forbid in Cedar, since Cedar has no step-up.
    let n = 1_000;
    let set = warden_set(n);
    let tool = call_tool(n);
    let tags = vec!["prod".to_string(), "team3".to_string()];
    let input = ConditionInput::new(CallFacts {
        tool: tool.clone(),
        args: json!({"amount": 2500}),
        agent_tags: tags.clone(),
        ..Default::default()
    });
    let eval = set.evaluate(&Call {
        tool: &tool,
        agent_id: "agt_1",
        agent_alias: None,
        agent_tags: &tags,
        context: &input,
    });
    assert!(
        !eval.matched.is_empty(),
        "the call matches policies of the mix"
    );
    let _: Value = json!(eval.decision.as_str());
}

criterion_group!(benches, sanity, bench);
criterion_main!(benches);
