//! The engine through its public API: precedence, modes, selectors,
//! conditions, and the index agreeing with a plain scan.

use std::collections::HashSet;
use std::sync::Arc;

use warden_policy::{
    AgentSelector, Call, Condition, ConditionError, Decision, Mode, Policy, PolicySet, ToolPattern,
};

/// The test context: a number the conditions compare against.
#[derive(Debug)]
struct Amount(i64);

#[derive(Debug)]
struct Over(i64);

impl Condition<Amount> for Over {
    fn holds(&self, context: &Amount) -> Result<bool, ConditionError> {
        if context.0 < 0 {
            return Err(ConditionError("amount is negative".into()));
        }
        Ok(context.0 > self.0)
    }
}

/// A condition that evaluates and never holds.
#[derive(Debug)]
struct Never;

impl Condition<Amount> for Never {
    fn holds(&self, _: &Amount) -> Result<bool, ConditionError> {
        Ok(false)
    }
}

fn policy(id: &str, pattern: &str, decision: Decision, priority: i32) -> Policy<Amount> {
    Policy {
        id: id.into(),
        pattern: ToolPattern::parse(pattern).unwrap(),
        agents: None,
        condition: None,
        decision,
        priority,
        mode: Mode::Enforce,
        enabled: true,
    }
}

fn decide(set: &PolicySet<Amount>, tool: &str, amount: i64) -> (Decision, Option<String>) {
    let context = Amount(amount);
    let call = Call {
        tool,
        agent_id: "agt_1",
        agent_alias: None,
        agent_tags: &["prod".to_string()],
        context: &context,
    };
    let e = set.evaluate(&call);
    (e.decision, e.deciding.map(|p| p.id.clone()))
}

#[test]
fn highest_priority_wins_then_the_most_restrictive() {
    let set = PolicySet::compile(
        vec![
            policy("allow-all", "*", Decision::Allow, 0),
            policy("audit-payments", "payments.*", Decision::Audit, 10),
            policy("deny-refund", "payments.refund", Decision::Deny, 10),
            policy("step-refund", "payments.refund", Decision::StepUp, 10),
            policy("allow-refund-high", "payments.refund", Decision::Allow, 20),
            policy("modify-writes", "fs.write", Decision::Modify, 5),
            policy("deny-writes-low", "fs.*", Decision::Deny, 1),
        ],
        Decision::Deny,
    );
    assert_eq!(
        decide(&set, "payments.refund", 0),
        (Decision::Allow, Some("allow-refund-high".into()))
    );
    assert_eq!(
        decide(&set, "payments.charge", 0),
        (Decision::Audit, Some("audit-payments".into()))
    );
    assert_eq!(
        decide(&set, "fs.write", 0),
        (Decision::Modify, Some("modify-writes".into()))
    );
    assert_eq!(
        decide(&set, "fs.read", 0),
        (Decision::Deny, Some("deny-writes-low".into()))
    );
    assert_eq!(
        decide(&set, "mail.send", 0),
        (Decision::Allow, Some("allow-all".into()))
    );

    // On a tie the most restrictive decision wins, whatever the order.
    let tie = PolicySet::compile(
        vec![
            policy("a", "x", Decision::Allow, 3),
            policy("s", "x", Decision::StepUp, 3),
            policy("m", "x", Decision::Modify, 3),
            policy("d", "x", Decision::Deny, 3),
            policy("u", "x", Decision::Audit, 3),
        ],
        Decision::Allow,
    );
    assert_eq!(decide(&tie, "x", 0), (Decision::Deny, Some("d".into())));
}

#[test]
fn no_match_gives_the_default() {
    let set = PolicySet::compile(
        vec![policy("p", "fs.*", Decision::Deny, 0)],
        Decision::Allow,
    );
    assert_eq!(decide(&set, "mail.send", 0), (Decision::Allow, None));
    let strict = PolicySet::compile(Vec::new(), Decision::Deny);
    assert_eq!(decide(&strict, "anything", 0), (Decision::Deny, None));
}

#[test]
fn monitor_policies_record_but_do_not_decide() {
    let mut watch = policy("watch", "payments.*", Decision::Deny, 100);
    watch.mode = Mode::Monitor;
    let set = PolicySet::compile(
        vec![watch, policy("allow", "*", Decision::Allow, 0)],
        Decision::Deny,
    );
    let context = Amount(0);
    let e = set.evaluate(&Call {
        tool: "payments.charge",
        agent_id: "a",
        agent_alias: None,
        agent_tags: &[],
        context: &context,
    });
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(
        e.monitored.first().map(|p| p.decision),
        Some(Decision::Deny),
        "what it would have done"
    );
    assert_eq!(e.monitor_decision, Some(Decision::Deny));

    // Had they been enforced, by the same rules: a failed monitor `audit`
    // above a monitor `deny` leaves the deny, as it would if enforced.
    let monitor = |id: &str, decision, priority, failing: bool| {
        let mut p = policy(id, "payments.*", decision, priority);
        p.mode = Mode::Monitor;
        if failing {
            p.condition = Some(Arc::new(Over(100)) as Arc<dyn Condition<Amount> + Send + Sync>);
        }
        p
    };
    for (policies, default, expected) in [
        (
            vec![
                monitor("audit", Decision::Audit, 10, true),
                monitor("deny", Decision::Deny, 0, false),
            ],
            Decision::Allow,
            Decision::Deny,
        ),
        (
            vec![monitor("audit", Decision::Audit, 10, true)],
            Decision::Deny,
            Decision::Deny,
        ),
        (
            vec![monitor("audit", Decision::Audit, 10, false)],
            Decision::Deny,
            Decision::Audit,
        ),
    ] {
        let set = PolicySet::compile(policies, default);
        let e = set.evaluate(&Call {
            tool: "payments.charge",
            agent_id: "a",
            agent_alias: None,
            agent_tags: &[],
            context: &Amount(-1),
        });
        assert_eq!(e.decision, default);
        assert_eq!(e.monitor_decision, Some(expected));
    }
}

#[test]
fn selectors_disabled_policies_and_conditions() {
    let mut for_tagged = policy("tagged", "*", Decision::Deny, 5);
    for_tagged.agents = Some(AgentSelector {
        ids: HashSet::new(),
        tags: HashSet::from(["prod".to_string()]),
    });
    let mut for_other = policy("other-agent", "*", Decision::StepUp, 9);
    for_other.agents = Some(AgentSelector {
        ids: HashSet::from(["agt_2".to_string()]),
        tags: HashSet::new(),
    });
    let mut off = policy("off", "*", Decision::Deny, 50);
    off.enabled = false;
    let mut big = policy("big-refunds", "payments.refund", Decision::StepUp, 7);
    big.condition = Some(Arc::new(Over(1000)));
    let set = PolicySet::compile(vec![for_tagged, for_other, off, big], Decision::Allow);
    assert_eq!(set.len(), 3, "disabled policies are not compiled");
    assert_eq!(
        decide(&set, "payments.refund", 5000),
        (Decision::StepUp, Some("big-refunds".into()))
    );
    assert_eq!(
        decide(&set, "payments.refund", 10),
        (Decision::Deny, Some("tagged".into()))
    );
}

#[test]
fn a_failing_condition_never_loosens_the_outcome() {
    let mut step = policy("step", "payments.*", Decision::StepUp, 5);
    step.condition = Some(Arc::new(Over(100)));
    let mut allow = policy("allow", "payments.*", Decision::Allow, 9);
    allow.condition = Some(Arc::new(Over(100)));
    let set = PolicySet::compile(vec![step, allow], Decision::Allow);
    let context = Amount(-1);
    let e = set.evaluate(&Call {
        tool: "payments.charge",
        agent_id: "a",
        agent_alias: None,
        agent_tags: &[],
        context: &context,
    });
    assert_eq!(e.decision, Decision::StepUp);
    assert_eq!(e.condition_errors.len(), 2);
}

#[test]
fn a_failing_condition_does_not_lift_a_deny_below_it() {
    let failing = |id: &str, decision, priority| {
        let mut p = policy(id, "payout.*", decision, priority);
        p.condition = Some(Arc::new(Over(100)) as Arc<dyn Condition<Amount> + Send + Sync>);
        p
    };
    // A failed audit, modify or step_up above a deny that certainly holds.
    for loose in [Decision::Audit, Decision::Modify, Decision::StepUp] {
        let set = PolicySet::compile(
            vec![
                policy("deny", "payout.*", Decision::Deny, 0),
                failing("loose", loose, 10),
            ],
            Decision::Allow,
        );
        assert_eq!(
            decide(&set, "payout.send", -1),
            (Decision::Deny, Some("deny".into()))
        );
        // Where the condition evaluates, it decides as written.
        assert_eq!(decide(&set, "payout.send", 500).0, loose);
        assert_eq!(decide(&set, "payout.send", 5).0, Decision::Deny);
    }
    // Above the organization's default deny.
    let set = PolicySet::compile(vec![failing("audit", Decision::Audit, 0)], Decision::Deny);
    assert_eq!(decide(&set, "payout.send", -1), (Decision::Deny, None));
    // A failed deny below a policy that certainly holds cannot win in any
    // case, so it does not decide.
    let set = PolicySet::compile(
        vec![
            policy("audit", "payout.*", Decision::Audit, 10),
            failing("deny", Decision::Deny, 0),
        ],
        Decision::Allow,
    );
    assert_eq!(
        decide(&set, "payout.send", -1),
        (Decision::Audit, Some("audit".into()))
    );
    // A failed `modify` above a `modify` that holds: as strict, so the one
    // that held decides (its changes apply, not the failed one's).
    let set = PolicySet::compile(
        vec![
            policy("row cap", "payout.*", Decision::Modify, 0),
            failing("tag", Decision::Modify, 10),
        ],
        Decision::Allow,
    );
    assert_eq!(
        decide(&set, "payout.send", -1),
        (Decision::Modify, Some("row cap".into()))
    );
    assert_eq!(
        decide(&set, "payout.send", 500),
        (Decision::Modify, Some("tag".into()))
    );
}

#[test]
fn a_failing_condition_gives_the_worst_case_of_every_outcome() {
    // Against every way the failed conditions could have come out.
    let decisions = Decision::ALL;
    let mut rng = Lcg(7);
    for _ in 0..2_000 {
        let n = 1 + rng.next(5);
        let mut specs = Vec::new();
        for i in 0..n {
            let decision = decisions[rng.next(5)];
            let priority = rng.next(3) as i32;
            // 0: no condition, 1: a condition that fails, 2: one that is unmet.
            let condition = rng.next(3);
            specs.push((format!("p{i}"), decision, priority, condition));
        }
        let default = decisions[rng.next(5)];
        let build = |world: usize| {
            let mut policies = Vec::new();
            let mut failed = 0;
            for (id, decision, priority, condition) in &specs {
                let mut p = policy(id, "t.*", *decision, *priority);
                match condition {
                    1 if *decision != Decision::Allow => {
                        let met = world >> failed & 1 == 1;
                        failed += 1;
                        if !met {
                            continue;
                        }
                    }
                    1 | 2 => continue,
                    _ => {}
                }
                p.condition = None;
                policies.push(p);
            }
            PolicySet::compile(policies, default)
        };
        let failing = specs
            .iter()
            .filter(|(_, d, _, c)| *c == 1 && *d != Decision::Allow)
            .count();
        let worst = (0..1usize << failing)
            .map(|world| decide(&build(world), "t.x", 0).0)
            .max_by_key(|d| d.restrictiveness())
            .unwrap();
        let mut policies = Vec::new();
        for (id, decision, priority, condition) in &specs {
            let mut p = policy(id, "t.*", *decision, *priority);
            match condition {
                1 => p.condition = Some(Arc::new(Over(0))),
                2 => p.condition = Some(Arc::new(Never)),
                _ => {}
            }
            policies.push(p);
        }
        let actual = decide(&PolicySet::compile(policies, default), "t.x", -1).0;
        assert_eq!(actual, worst, "{specs:?}, default {default:?}");
    }
}

/// A small deterministic generator, so the comparison covers many shapes
/// without a random-number dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

#[test]
fn the_index_agrees_with_a_plain_scan() {
    let parts = ["fs", "db", "payments", "mail", "web", "shell"];
    let verbs = ["read", "write", "delete", "refund", "send", "exec"];
    let mut rng = Lcg(7);
    let mut policies = Vec::new();
    for i in 0..2000 {
        let (p, v) = (parts[rng.next(parts.len())], verbs[rng.next(verbs.len())]);
        let pattern = match rng.next(7) {
            0 => format!("{p}.{v}"),
            1 => format!("{p}.*"),
            2 => "*".to_string(),
            3 => format!("*.{v}"),
            4 => format!("{p}.?{}", &v[1..]),
            5 => format!("{}*", &p[..1]),
            _ => format!("{p}*{}", &v[v.len() - 2..]),
        };
        let decision = Decision::ALL[rng.next(5)];
        policies.push(policy(
            &format!("p{i}"),
            &pattern,
            decision,
            rng.next(20) as i32,
        ));
    }
    let patterns: Vec<(String, i32, Decision)> = policies
        .iter()
        .map(|p| (p.pattern.as_str().to_string(), p.priority, p.decision))
        .collect();
    let set = PolicySet::compile(policies, Decision::Allow);
    for p in parts {
        for v in verbs {
            let tool = format!("{p}.{v}");
            let scan = patterns
                .iter()
                .filter(|(pattern, _, _)| ToolPattern::parse(pattern).unwrap().matches(&tool))
                .map(|(_, priority, decision)| (*priority, decision.restrictiveness()))
                .max();
            let context = Amount(0);
            let e = set.evaluate(&Call {
                tool: &tool,
                agent_id: "a",
                agent_alias: None,
                agent_tags: &[],
                context: &context,
            });
            let indexed = e
                .deciding
                .map(|p| (p.priority, p.decision.restrictiveness()));
            assert_eq!(indexed, scan, "{tool}");
            let scanned = patterns
                .iter()
                .filter(|(pattern, _, _)| ToolPattern::parse(pattern).unwrap().matches(&tool))
                .count();
            assert_eq!(
                e.matched.len(),
                scanned,
                "{tool}: every matching policy is found once"
            );
        }
    }
}
