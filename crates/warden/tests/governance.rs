//! Agent governance through the real binary: policies and their versions,
//! decisions and their precedence, monitor mode, modify, bound keys,
//! discovered agents, step-up holds, the audit log's hash chain, drift.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Backend, CrashLoad, Warden};
use serde_json::{json, Value};

fn policy(api: &Api, body: Value) -> String {
    let r = api.post("/api/v1/policies", &body);
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["data"]["id"].as_str().unwrap().to_string()
}

/// Holds `call` (a step-up), approves the hold, and gives the call again
/// with its hold token: the redemption.
fn approved_redemption(api: &Api, call: &Value) -> Value {
    let held = enforce(api, call.clone());
    let token = held["hold_token"].clone();
    // The hold this decision made (its answer names it), not the first
    // pending one: another held in the same millisecond may list before it.
    let hold = held["hold_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no hold in {held}"));
    let r = api.post(&format!("/api/v1/holds/{hold}/approve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let mut redeem = call.clone();
    redeem["hold_token"] = token;
    redeem
}

/// Approves the first hold of the pending list.
fn approve_first_pending(api: &Api) {
    let hold = api.get("/api/v1/holds?status=pending").body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api.post(&format!("/api/v1/holds/{hold}/approve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
}

/// A hold poll as the Thoth SDK makes it (its own path and header).
fn thoth_poll(api: &Api, key: &str, token: &str) -> Value {
    let r = api.raw(
        "GET",
        &format!("/v1/enforce/hold/{token}"),
        Vec::new(),
        &[("x-api-key", key)],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

fn listed_priority(api: &Api, id: &str) -> Value {
    api.get(&format!("/api/v1/policies/{id}")).body["data"]["priority"].clone()
}

fn enforce(api: &Api, body: Value) -> Value {
    let r = api.post("/api/v1/enforce", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"].clone()
}

fn decision(api: &Api, agent: &str, tool: &str, args: Value) -> String {
    enforce(
        api,
        json!({"agent_id": agent, "tool_name": tool, "tool_args": args}),
    )["decision"]
        .as_str()
        .unwrap()
        .to_string()
}

fn audit_count(api: &Api) -> usize {
    let r = api.get("/api/v1/audit/verify");
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"]["records_checked"].as_u64().unwrap() as usize
}

fn policies_are_versioned_audited_and_checked(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let id = policy(
        &api,
        json!({"name": "no shell", "action_pattern": "shell.*", "decision": "deny",
               "description": "agents never run shell commands"}),
    );
    let r = api.patch(
        &format!("/api/v1/policies/{id}"),
        &json!({"priority": 50, "description": null}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["version"], 2);
    assert_eq!(r.body["data"]["priority"], 50);
    assert!(r.body["data"]["description"].is_null());

    // Bad input: field and position, and nothing stored.
    let before = audit_count(&api);
    let cases = [
        (
            json!({"name": "g", "action_pattern": "pay[ments", "decision": "deny"}),
            "action_pattern",
            Some(4),
        ),
        (
            json!({"name": "c", "action_pattern": "*", "decision": "deny", "condition": "args.amount >"}),
            "condition",
            None,
        ),
        (
            json!({"name": "c", "action_pattern": "*", "decision": "deny", "condition": "args.a == 1 && amount > 5"}),
            "condition",
            Some(16),
        ),
        (
            json!({"name": "c", "action_pattern": "*", "decision": "deny", "condition": "tool > 5"}),
            "condition",
            Some(6),
        ),
        (
            json!({"name": "c", "action_pattern": "*", "decision": "deny", "condition": "agent.nmae == 'x'"}),
            "condition",
            Some(6),
        ),
        (
            json!({"name": "c", "action_pattern": "*", "decision": "deny", "condition": "1 + 2"}),
            "condition",
            None,
        ),
        (
            json!({"name": "c", "action_pattern": "*", "decision": "deny", "condition": "args.n > int('abc')"}),
            "condition",
            Some(10),
        ),
        (
            json!({"name": "m", "action_pattern": "*", "decision": "modify"}),
            "modify",
            None,
        ),
        (
            json!({"name": "m", "action_pattern": "*", "decision": "modify", "modify": {"redact": ["a..b"]}}),
            "modify.redact[0]",
            Some(3),
        ),
        (
            json!({"name": "m", "action_pattern": "*", "decision": "allow", "modify": {"redact": ["a"]}}),
            "modify",
            None,
        ),
        (
            json!({"name": "p", "action_pattern": "*", "decision": "allow", "priority": 2_000_000}),
            "priority",
            None,
        ),
        // The nested objects are objects only, not their fields in a row.
        (
            json!({"name": "a", "action_pattern": "*", "decision": "deny",
                   "agents": [["billing-bot"], []]}),
            "agents",
            None,
        ),
        (
            json!({"name": "m", "action_pattern": "*", "decision": "modify", "modify": [["a"], {}]}),
            "modify",
            None,
        ),
        (
            json!({"name": "no shell", "action_pattern": "*", "decision": "allow"}),
            "name",
            None,
        ),
    ];
    for (body, field, column) in cases {
        let r = api.post("/api/v1/policies", &body);
        assert!(r.status == 400 || r.status == 409, "{body}: {}", r.text);
        let err = &r.body["error"];
        assert_eq!(err["field"], field, "{body}: {}", r.text);
        if let Some(col) = column {
            assert_eq!(err["position"]["column"], col, "{body}: {}", r.text);
            assert_eq!(err["position"]["line"], 1);
        }
    }
    let r = api.patch(
        &format!("/api/v1/policies/{id}"),
        &json!({"condition": "nope("}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    for field in ["agents", "modify"] {
        let r = api.patch(
            &format!("/api/v1/policies/{id}"),
            &json!({ field: [["a"], []] }),
        );
        let err = r.error(400, "invalid_request");
        assert_eq!(err["field"], field, "{}", r.text);
        assert!(r.text.contains("expected an object"), "{}", r.text);
    }
    // A field with no empty value cannot be set to null.
    for field in ["name", "decision", "priority", "enabled"] {
        let r = api.patch(&format!("/api/v1/policies/{id}"), &json!({ field: null }));
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            field,
            "{}",
            r.text
        );
    }
    // A change that changes nothing is no new version and no audit record.
    for same in [json!({}), json!({"priority": listed_priority(&api, &id)})] {
        let r = api.patch(&format!("/api/v1/policies/{id}"), &same);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["data"]["version"], 2, "{same}: {}", r.text);
    }
    assert_eq!(audit_count(&api), before, "refused changes are not audited");
    let listed = api.get("/api/v1/policies");
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        listed.body["data"][0]["version"], 2,
        "a refused PATCH changed nothing"
    );

    assert_eq!(api.delete(&format!("/api/v1/policies/{id}")).status, 204);
    assert_eq!(api.get(&format!("/api/v1/policies/{id}")).status, 404);
    let v = api.get(&format!("/api/v1/policies/{id}/versions"));
    assert_eq!(v.status, 200, "{}", v.text);
    let versions = v.body["data"].as_array().unwrap();
    let changes: Vec<&str> = versions
        .iter()
        .map(|v| v["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["deleted", "updated", "created"]);
    assert!(versions
        .iter()
        .all(|v| v["changed_by"].as_str().unwrap().starts_with("key_")));
    assert_eq!(
        versions[2]["policy"]["description"],
        "agents never run shell commands"
    );
    assert_eq!(
        api.get("/api/v1/policies/pol_000000000000000000000000/versions")
            .status,
        404
    );
    // Every change is in the audit log.
    let log = api.get("/api/v1/audit?kind=policy_change");
    assert_eq!(
        log.body["data"].as_array().unwrap().len(),
        3,
        "{}",
        log.text
    );
}

fn precedence_monitor_and_the_default(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    policy(
        &api,
        json!({"name": "payments ok", "action_pattern": "payments.*", "decision": "allow", "priority": 5}),
    );
    let transfer_deny = policy(
        &api,
        json!({"name": "no transfers", "action_pattern": "payments.transfer", "decision": "deny", "priority": 5}),
    );
    let big = policy(
        &api,
        json!({"name": "big payments", "action_pattern": "payments.*", "decision": "step_up",
        "priority": 10, "condition": "args.amount > 1000"}),
    );
    let monitor = policy(
        &api,
        json!({"name": "watch files", "action_pattern": "fs.*", "decision": "deny", "mode": "monitor"}),
    );
    policy(
        &api,
        json!({"name": "off", "action_pattern": "*", "decision": "deny", "priority": 100, "enabled": false}),
    );

    // A tie at priority 5: the most restrictive wins.
    let d = enforce(
        &api,
        json!({"agent_id": "bot", "tool_name": "payments.transfer", "tool_args": {"amount": 5}}),
    );
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["matched_policy_ids"][0], transfer_deny);
    assert_eq!(d["matched_policy_ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        decision(&api, "bot", "payments.refund", json!({"amount": 5})),
        "allow"
    );
    // The higher priority wins over both, when its condition holds.
    let d = enforce(
        &api,
        json!({"agent_id": "bot", "tool_name": "payments.transfer", "tool_args": {"amount": 5000}}),
    );
    assert_eq!(d["decision"], "step_up");
    assert_eq!(d["matched_policy_ids"][0], big);
    assert!(d["hold_token"].as_str().unwrap().starts_with("hold_"));
    // The answer names the hold people resolve, as the pending list does.
    let hold_id = d["hold_id"].as_str().unwrap();
    let held = api.get(&format!("/api/v1/holds/{hold_id}"));
    assert_eq!(held.status, 200, "{}", held.text);
    assert_eq!(
        held.body["data"]["audit_id"], d["audit_id"],
        "{}",
        held.text
    );
    // Latency is whole microseconds, written as such.
    let latency = d["latency_ms"].to_string();
    assert!(
        latency.split('.').nth(1).is_none_or(|f| f.len() <= 3),
        "{latency}"
    );
    // Monitor: recorded as what would have happened, outcome unchanged.
    let d = enforce(
        &api,
        json!({"agent_id": "bot", "tool_name": "fs.read", "tool_args": {"path": "/etc/passwd"}}),
    );
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(d["monitor_decision"], "deny");
    // The reason does not say that nothing matched.
    assert_eq!(
        d["reason"],
        "no enforce policy matched (monitor policies matched and would decide deny); \
         the default decision allow applies",
        "{d}"
    );
    let rec = api.get(&format!(
        "/api/v1/audit/{}",
        d["audit_id"].as_str().unwrap()
    ));
    assert_eq!(rec.body["data"]["monitored"][0]["policy_id"], monitor);
    assert_eq!(rec.body["data"]["decision"], "allow");
    // No match: the organization's default.
    assert_eq!(decision(&api, "bot", "mail.send", json!({})), "allow");
    let r = api.patch(
        "/api/v1/policy-settings",
        &json!({"default_decision": "deny"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(decision(&api, "bot", "mail.send", json!({})), "deny");
    // An unknown or a modify default is refused; the choices offered are
    // the ones a default can take.
    for wrong in ["maybe", "modify"] {
        let r = api.patch(
            "/api/v1/policy-settings",
            &json!({"default_decision": wrong}),
        );
        let e = r.error(400, "invalid_request");
        assert_eq!(e["field"], "default_decision", "{wrong}");
        let message = e["message"].as_str().unwrap();
        assert!(message.contains("step_up"), "{message}");
        let offered = message.split("expected").nth(1).unwrap_or_default();
        assert!(!offered.contains("modify"), "{message}");
    }
    let r = api.patch(
        "/api/v1/policy-settings",
        &json!({"default_decision": null}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "default_decision");
    assert_eq!(decision(&api, "bot", "mail.send", json!({})), "deny");
    // Suspended agents are denied whatever the policies say.
    let agent = api.create_agent("suspended-one");
    api.patch(
        &format!("/api/v1/agents/{agent}"),
        &json!({"status": "suspended"}),
    );
    let d = enforce(
        &api,
        json!({"agent_id": agent, "tool_name": "payments.refund", "tool_args": {"amount": 1}}),
    );
    assert_eq!(d["decision"], "deny");
    assert!(d["reason"].as_str().unwrap().contains("suspended"));

    // Where the monitor policies leave the winner as it is, what happens
    // after the policies (a suspension, an approval used or refused)
    // happens to the monitored outcome too.
    policy(
        &api,
        json!({"name": "watch all", "action_pattern": "*", "decision": "audit",
        "mode": "monitor", "priority": -100}),
    );
    let d = enforce(
        &api,
        json!({"agent_id": agent, "tool_name": "payments.refund", "tool_args": {"amount": 1}}),
    );
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(d["monitor_decision"], "deny", "{d}");
    let call = json!({"agent_id": "bot", "tool_name": "payments.transfer",
        "tool_args": {"amount": 5000}});
    let held = enforce(&api, call.clone());
    assert_eq!(held["monitor_decision"], "step_up", "{held}");
    let r = api.post(
        &format!(
            "/api/v1/holds/{}/approve",
            held["hold_id"].as_str().unwrap()
        ),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let mut redeem = call.clone();
    redeem["hold_token"] = held["hold_token"].clone();
    let used = enforce(&api, redeem.clone());
    assert_eq!(used["decision"], "allow", "{used}");
    assert_eq!(used["monitor_decision"], "allow", "{used}");
    let rec = api.get(&format!(
        "/api/v1/audit/{}",
        used["audit_id"].as_str().unwrap()
    ));
    assert_eq!(
        rec.body["data"]["detail"]["monitor_decision"], "allow",
        "{}",
        rec.text
    );
    let again = enforce(&api, redeem);
    assert_eq!(again["decision"], "deny", "{again}");
    assert_eq!(again["monitor_decision"], "deny", "{again}");
    // A monitor policy that would win keeps its own outcome.
    let d = enforce(
        &api,
        json!({"agent_id": "bot", "tool_name": "fs.read", "tool_args": {}}),
    );
    assert_eq!(d["monitor_decision"], "deny", "{d}");
}

/// An agent chooses its arguments' types: a condition that fails on them,
/// or a comparison of another type, never gets it a looser outcome.
fn failed_conditions_and_types_never_loosen(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    // A `modify` whose condition fails (the agent sent the amount as text)
    // above one that holds: the one that holds decides, and the failed
    // one's redaction applies too, as it would had its condition held.
    policy(
        &api,
        json!({"name": "redact card on big", "action_pattern": "ledger.pay", "decision": "modify",
               "priority": 10, "condition": "args.amount > 100", "modify": {"redact": ["card"]}}),
    );
    policy(
        &api,
        json!({"name": "tag all", "action_pattern": "ledger.pay", "decision": "modify",
               "modify": {"set": {"reviewed": true}}}),
    );
    for amount in [json!(5000), json!("5000")] {
        let d = enforce(
            &api,
            json!({"agent_id": "payer", "tool_name": "ledger.pay",
                   "tool_args": {"amount": amount, "card": "4111111111111111"}}),
        );
        assert_eq!(d["decision"], "modify", "{d}");
        assert_eq!(
            d["modified_tool_args"]["card"], "[REDACTED]",
            "{amount}: {d}"
        );
    }
    // Equality is strict about types: "42" is not let past a deny on 42,
    // nor hidden behind a decoy of the expected type.
    policy(
        &api,
        json!({"name": "no account 42", "action_pattern": "acct.*", "decision": "deny",
               "condition": "42 in args.accounts || args.account == 42"}),
    );
    for args in [
        json!({"accounts": [], "account": "42"}),
        json!({"accounts": [7, "42"], "account": 1}),
        json!({"accounts": [42], "account": 1}),
    ] {
        let d = enforce(
            &api,
            json!({"agent_id": "payer", "tool_name": "acct.close", "tool_args": args}),
        );
        assert_eq!(d["decision"], "deny", "{args}: {d}");
    }
    let d = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "acct.close",
               "tool_args": {"accounts": [7], "account": 1}}),
    );
    assert_eq!(d["decision"], "allow", "{d}");

    // A failed `modify` above a step-up: the approved call runs with its
    // changes, so the SDK's poll cannot run it and says to submit it again.
    policy(
        &api,
        json!({"name": "redact card over 100", "action_pattern": "pay.*", "decision": "modify",
               "priority": 10, "condition": "args.amount > 100", "modify": {"redact": ["card"]}}),
    );
    policy(
        &api,
        json!({"name": "approve pay", "action_pattern": "pay.*", "decision": "step_up", "priority": 5}),
    );
    let call = json!({"agent_id": "payer", "tool_name": "pay.x",
                      "tool_args": {"amount": "500", "card": "4111"}});
    let redeem = approved_redemption(&api, &call);
    let token = redeem["hold_token"].as_str().unwrap();
    let r = thoth_poll(&api, &t.live_key, token);
    assert_eq!(r["resolution"], "BLOCK", "{r}");
    let d = enforce(&api, redeem.clone());
    assert_eq!(d["decision"], "modify", "{d}");
    assert_eq!(d["modified_tool_args"]["card"], "[REDACTED]", "{d}");

    // Under the default decision `step_up`, likewise.
    let r = api.patch(
        "/api/v1/policy-settings",
        &json!({"default_decision": "step_up"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    policy(
        &api,
        json!({"name": "redact vault card", "action_pattern": "vault.*", "decision": "modify",
               "condition": "args.amount > 100", "modify": {"redact": ["card"]}}),
    );
    let call = json!({"agent_id": "payer", "tool_name": "vault.x",
                      "tool_args": {"amount": "500", "card": "4111"}});
    let held = enforce(&api, call.clone());
    assert!(
        held["reason"]
            .as_str()
            .unwrap()
            .contains("conditions failed"),
        "{held}"
    );
    let redeem = approved_redemption(&api, &call);
    let r = thoth_poll(&api, &t.live_key, redeem["hold_token"].as_str().unwrap());
    assert_eq!(r["resolution"], "BLOCK", "{r}");
    let d = enforce(&api, redeem);
    assert_eq!(d["modified_tool_args"]["card"], "[REDACTED]", "{d}");
}

fn modify_redaction_and_dry_runs(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let mask = policy(
        &api,
        json!({"name": "mask cards", "action_pattern": "payments.charge", "decision": "modify",
        "modify": {"redact": ["card.number"], "set": {"mode": "dry_run", "limits.max": 100}}}),
    );
    policy(
        &api,
        json!({"name": "keep secrets out", "action_pattern": "*", "decision": "audit",
        "audit_redact": ["api_token", "*.password"]}),
    );
    let d = enforce(
        &api,
        json!({"agent_id": "shop", "tool_name": "payments.charge",
        "tool_args": {"card": {"number": "4111111111111111", "exp": "12/30"}, "mode": "live",
                      "api_token": "tok_live_secret", "user": {"password": "hunter2"}}}),
    );
    assert_eq!(d["decision"], "modify");
    let m = &d["modified_tool_args"];
    assert_eq!(m["card"]["number"], "[REDACTED]");
    assert_eq!(m["card"]["exp"], "12/30");
    assert_eq!(m["mode"], "dry_run");
    assert_eq!(m["limits"]["max"], 100);
    // Redacted before storage: the secrets are nowhere in the database.
    let stored = backend.sql("SELECT record FROM audit_log");
    for secret in ["4111111111111111", "tok_live_secret", "hunter2"] {
        assert!(!stored.contains(secret), "{secret} reached the audit log");
    }
    let rec = api.get(&format!(
        "/api/v1/audit/{}",
        d["audit_id"].as_str().unwrap()
    ));
    assert_eq!(rec.body["data"]["arguments"]["api_token"], "[REDACTED]");
    assert_eq!(
        rec.body["data"]["arguments"]["user"]["password"],
        "[REDACTED]"
    );
    assert_eq!(rec.body["data"]["arguments"]["card"]["exp"], "12/30");
    // Nor through a condition's error that quotes a redacted value, as
    // it is, escaped, or transformed.
    let kv = policy(
        &api,
        json!({"name": "kv", "action_pattern": "kv.get", "decision": "deny",
               "audit_redact": ["password"],
               "condition": "context[args.password.upperAscii()] == 1 || context[args.password] == 2"}),
    );
    let d = enforce(
        &api,
        json!({"agent_id": "shop", "tool_name": "kv.get", "tool_args": {"password": "supersecret\"99\\x"}}),
    );
    // The answer says the deciding condition failed rather than held.
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(
        d["reason"].as_str().unwrap().contains("failed to evaluate"),
        "{d}"
    );
    let rec = api.get(&format!(
        "/api/v1/audit/{}",
        d["audit_id"].as_str().unwrap()
    ));
    let errors = &rec.body["data"]["detail"]["condition_errors"];
    assert_eq!(errors[0]["policy_id"], kv, "{errors}");
    assert!(
        errors[0]["error"].as_str().unwrap().contains("withheld"),
        "{errors}"
    );
    let stored = backend.sql("SELECT record FROM audit_log").to_lowercase()
        + &backend.sql("SELECT body FROM events").to_lowercase();
    assert!(!stored.contains("supersecret"), "the secret was stored");
    assert!(api.delete(&format!("/api/v1/policies/{kv}")).status < 300);
    // The caller's context, by the fields a policy names: kept out of the
    // record (and out of a condition's error that could quote it), while
    // the condition still reads it as sent.
    let by_context = policy(
        &api,
        json!({"name": "session secrets", "action_pattern": "crm.*", "decision": "deny",
               "audit_redact_context": ["session_token", "headers.*"],
               "condition": "context.session_token.startsWith('ctx-')"}),
    );
    let d = enforce(
        &api,
        json!({"agent_id": "shop", "tool_name": "crm.read",
               "context": {"session_token": "ctx-SECRET-7", "headers": {"authorization": "Bearer ctx-SECRET-8"},
                           "tenant": "acme"}}),
    );
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(d["matched_policy_ids"][0], json!(by_context), "{d}");
    let rec = api.get(&format!(
        "/api/v1/audit/{}",
        d["audit_id"].as_str().unwrap()
    ));
    let context = &rec.body["data"]["detail"]["context"];
    assert_eq!(context["session_token"], "[REDACTED]", "{context}");
    assert_eq!(
        context["headers"]["authorization"], "[REDACTED]",
        "{context}"
    );
    assert_eq!(context["tenant"], "acme", "{context}");
    let d = enforce(
        &api,
        json!({"agent_id": "shop", "tool_name": "crm.read",
               "context": {"session_token": 7, "headers": {"authorization": "Bearer ctx-SECRET-9"}}}),
    );
    let rec = api.get(&format!(
        "/api/v1/audit/{}",
        d["audit_id"].as_str().unwrap()
    ));
    let errors = &rec.body["data"]["detail"]["condition_errors"];
    assert!(
        errors[0]["error"].as_str().unwrap().contains("withheld"),
        "{errors}"
    );
    let stored =
        backend.sql("SELECT record FROM audit_log") + &backend.sql("SELECT body FROM events");
    assert!(
        !stored.contains("ctx-SECRET"),
        "the context's secret was stored"
    );
    let r = api.post(
        "/api/v1/policies",
        &json!({"name": "bad", "action_pattern": "*", "decision": "allow",
                "audit_redact_context": ["ok", "**.token"]}),
    );
    assert_eq!(
        r.error(400, "invalid_request")["field"],
        "audit_redact_context[1]",
        "{}",
        r.text
    );
    assert!(api.delete(&format!("/api/v1/policies/{by_context}")).status < 300);
    // Redaction does not wait for a condition to hold: a policy that names
    // a field redacts it in every call its pattern takes in.
    let conditional = policy(
        &api,
        json!({"name": "big exports", "action_pattern": "db.export", "decision": "deny",
               "audit_redact": ["dsn", "conn.dsn"], "condition": "args.rows > 1000"}),
    );
    // `conn` is JSON encoded twice: a tool decoding it twice reads the DSN.
    let twice =
        serde_json::Value::String(json!({"dsn": "postgres://admin:pw-SECRET-43@db"}).to_string())
            .to_string();
    let d = enforce(
        &api,
        json!({"agent_id": "shop", "tool_name": "db.export",
               "tool_args": {"rows": 5, "dsn": "postgres://admin:pw-SECRET-42@db", "conn": twice}}),
    );
    // Its condition did not hold: the catch-all audit policy decided.
    assert_eq!(d["decision"], "audit", "{d}");
    assert!(!d["matched_policy_ids"].to_string().contains(&conditional));
    let rec = api.get(&format!(
        "/api/v1/audit/{}",
        d["audit_id"].as_str().unwrap()
    ));
    assert_eq!(rec.body["data"]["arguments"]["dsn"], "[REDACTED]");
    assert_eq!(rec.body["data"]["arguments"]["rows"], 5);
    let conn: serde_json::Value =
        serde_json::from_str(rec.body["data"]["arguments"]["conn"].as_str().unwrap()).unwrap();
    let conn: serde_json::Value = serde_json::from_str(conn.as_str().unwrap()).unwrap();
    assert_eq!(conn, json!({"dsn": "[REDACTED]"}));
    assert!(!backend
        .sql("SELECT record FROM audit_log")
        .contains("pw-SECRET-42"));
    assert!(!backend
        .sql("SELECT body FROM events")
        .contains("pw-SECRET-42"));
    let stored =
        backend.sql("SELECT record FROM audit_log") + &backend.sql("SELECT body FROM events");
    assert!(
        !stored.contains("pw-SECRET-43"),
        "a twice-encoded secret was stored"
    );
    assert!(
        api.delete(&format!("/api/v1/policies/{conditional}"))
            .status
            < 300
    );

    // A dry run records nothing.
    let before = audit_count(&api);
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"tool_name": "payments.charge",
        "tool_args": {"card": {"number": "1"}}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["decision"], "modify");
    assert_eq!(r.body["data"]["matched"].as_array().unwrap().len(), 2);
    assert!(r.body["data"]["matched"][0]["why"]
        .as_str()
        .unwrap()
        .contains("payments.charge"));
    let r = api.post("/api/v1/policies/test", &json!({"tool_name": "payments.charge",
        "tool_args": {"amount": 9000},
        "policy": {"name": "proposed", "action_pattern": "payments.*", "decision": "deny", "priority": 9,
                   "condition": "args.amount > 5000"}}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["decision"], "deny");
    assert_eq!(r.body["data"]["deciding_policy_id"], "proposed");
    assert!(r.body["data"]["name_taken_by"].is_null(), "{}", r.text);
    // Alone, the proposed policy is all there is.
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"tool_name": "payments.charge", "only_proposed": true,
        "policy": {"name": "proposed", "action_pattern": "mail.*", "decision": "deny"}}),
    );
    assert_eq!(r.body["data"]["decision"], "allow", "{}", r.text);
    assert!(r.body["data"]["matched"].as_array().unwrap().is_empty());
    // A change that cannot be made denies the call, said as any decision
    // is, then why.
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"tool_name": "payments.charge", "only_proposed": true,
        "tool_args": {"payload": "{\"a\": 1,}"},
        "policy": {"name": "stars", "action_pattern": "payments.*", "decision": "modify",
                   "modify": {"set": {"payload.*": 1}}}}),
    );
    assert_eq!(r.body["data"]["decision"], "deny", "{}", r.text);
    let reason = r.body["data"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("policy \"stars\" (proposed) decided modify, but a `*` assignment"),
        "{reason}"
    );
    // Fractions are read exactly: the fast float parser was one unit off
    // in the last place, so a condition saw another number than was sent.
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"tool_name": "z.t", "only_proposed": true,
        "tool_args": {"n": 4_503_599_627_370_495.5_f64},
        "policy": {"name": "p", "action_pattern": "z.*", "decision": "deny",
                   "condition": "args.n > 4503599627370495.0"}}),
    );
    assert_eq!(r.body["data"]["decision"], "deny", "{}", r.text);
    // Replacing an existing policy leaves it out.
    let r = api.post("/api/v1/policies/test", &json!({"tool_name": "payments.charge", "replaces": mask,
        "policy": {"name": "mask cards", "action_pattern": "payments.charge", "decision": "step_up"}}));
    assert_eq!(r.body["data"]["decision"], "step_up", "{}", r.text);
    assert!(r.body["data"]["matched"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["id"] != mask.as_str()));
    // Its own name is free to the policy it replaces, not to a new one:
    // creating that would be a 409, which the dry run says.
    assert!(r.body["data"]["name_taken_by"].is_null(), "{}", r.text);
    let r = api.post("/api/v1/policies/test", &json!({"tool_name": "payments.charge",
        "only_proposed": true,
        "policy": {"name": "mask cards", "action_pattern": "payments.charge", "decision": "step_up"}}));
    assert_eq!(r.body["data"]["name_taken_by"], mask.as_str(), "{}", r.text);
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"tool_name": "x",
        "policy": {"name": "p", "action_pattern": "*", "decision": "deny", "condition": "bogus"}}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["field"], "policy.condition");
    // An agent not yet discovered is tested with an id of the form its
    // first call gets, so a condition on that form decides as the call.
    for agent in [Some("not-yet-seen-bot"), None] {
        let mut call = json!({"tool_name": "idform.x", "only_proposed": true,
            "policy": {"name": "p", "action_pattern": "idform.*", "decision": "deny",
                       "condition": "agent.id.startsWith('agt_')"}});
        if let Some(agent) = agent {
            call["agent_id"] = json!(agent);
        }
        let r = api.post("/api/v1/policies/test", &call);
        assert_eq!(r.body["data"]["decision"], "deny", "{agent:?}: {}", r.text);
    }
    // Replacing a policy that does not exist, or a replacement or a lone
    // test without a proposed policy, is refused rather than ignored.
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"tool_name": "x", "replaces": "pol_000000000000000000000000",
        "policy": {"name": "p", "action_pattern": "*", "decision": "deny"}}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "replaces");
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"tool_name": "x", "replaces": mask}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "replaces");
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"tool_name": "x", "only_proposed": true}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "only_proposed");
    assert_eq!(audit_count(&api), before);
    assert_eq!(
        api.get("/api/v1/policies").body["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A modify policy turned into a deny drops its change; sending a
    // change with another decision is still refused.
    let r = api.patch(
        &format!("/api/v1/policies/{mask}"),
        &json!({"decision": "deny", "modify": {"redact": ["x"]}}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "modify");
    let r = api.patch(
        &format!("/api/v1/policies/{mask}"),
        &json!({"decision": "deny"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["decision"], "deny");
    assert!(r.body["data"]["modify"].is_null(), "{}", r.text);

    // Two `modify` policies of the same priority both apply, in the order
    // they matched: one sets, the other redacts.
    let tie_sets = policy(
        &api,
        json!({"name": "tie sets", "action_pattern": "crm.update", "decision": "modify",
        "modify": {"set": {"b": 2}}}),
    );
    policy(
        &api,
        json!({"name": "tie redacts", "action_pattern": "crm.update", "decision": "modify",
        "modify": {"redact": ["a"]}}),
    );
    let body = json!({"agent_id": "shop", "tool_name": "crm.update", "tool_args": {"a": "secret"}});
    let d = enforce(&api, body.clone());
    assert_eq!(d["decision"], "modify");
    assert_eq!(
        d["modified_tool_args"],
        json!({"a": "[REDACTED]", "b": 2}),
        "{d}"
    );
    let r = api.post("/api/v1/policies/test", &body);
    assert_eq!(
        r.body["data"]["modified_tool_args"],
        json!({"a": "[REDACTED]", "b": 2}),
        "{}",
        r.text
    );
    // A proposed change to the first keeps its place, as a PATCH would:
    // the later policy's redaction still comes after its assignment.
    let mut proposal = body.clone();
    proposal["policy"] = json!({"name": "tie sets", "action_pattern": "crm.update",
        "decision": "modify", "modify": {"set": {"a": "shown"}}});
    proposal["replaces"] = json!(tie_sets);
    let r = api.post("/api/v1/policies/test", &proposal);
    assert_eq!(
        r.body["data"]["modified_tool_args"],
        json!({"a": "[REDACTED]"}),
        "{}",
        r.text
    );
}

fn bound_keys_and_discovered_agents(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let r = api.post(
        "/api/v1/agents",
        &json!({"name": "billing", "external_id": "billing-bot", "tags": ["finance"]}),
    );
    let billing = r.body["data"]["id"].as_str().unwrap().to_string();
    // An external id is counted in characters wherever it is taken: one
    // of 150 two-byte letters registers, enforces and filters.
    let wide = "\u{e9}".repeat(150);
    let r = api.post(
        "/api/v1/agents",
        &json!({"name": "wide", "external_id": wide}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": wide, "tool_name": "files.read"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.get(&format!(
        "/api/v1/audit?agent_id=%20{}%20",
        "%C3%A9".repeat(150)
    ));
    assert_eq!(r.status, 200, "{}", r.text);
    // Its registration and its decision.
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2, "{}", r.text);
    // One character more is refused on every route, naming `agent_id`.
    let wider = "\u{e9}".repeat(201);
    for path in ["/api/v1/enforce", "/v1/enforce", "/api/v1/policies/test"] {
        let r = api.post(path, &json!({"agent_id": wider, "tool_name": "files.read"}));
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert!(r.text.contains("agent_id"), "{path}: {}", r.text);
        assert!(!r.text.contains("external_id"), "{path}: {}", r.text);
    }
    // So are a tool name, a session and a user, as the document's
    // `maxLength` counts: 256 and 200 two-byte characters are taken, one
    // more is refused naming the field.
    let taken = json!({"agent_id": wide, "tool_name": "\u{e9}".repeat(256),
        "session_id": "\u{e9}".repeat(200), "user_id": "\u{e9}".repeat(200)});
    for path in ["/api/v1/enforce", "/api/v1/policies/test"] {
        let r = api.post(path, &taken);
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        for (field, max) in [("tool_name", 256), ("session_id", 200), ("user_id", 200)] {
            let mut body = taken.clone();
            body[field] = json!("\u{e9}".repeat(max + 1));
            let r = api.post(path, &body);
            assert_eq!(r.error(400, "invalid_request")["field"], field, "{path}");
        }
    }
    let other = api.create_agent("other");
    // Bound, even an admin key neither sees policies nor resolves holds
    // (naming those scopes on a bound key is refused outright).
    let (bound_id, bound) = api.create_key(json!({"name": "billing sdk", "scopes": ["admin"],
        "agent_id": billing}));
    let sdk = api.with_key(&bound);
    policy(
        &api,
        json!({"name": "finance needs approval", "action_pattern": "ledger.*", "decision": "step_up",
        "agents": {"tags": ["finance"]}}),
    );
    policy(
        &api,
        json!({"name": "new bot blocked", "action_pattern": "*", "decision": "deny",
        "agents": {"ids": ["stranger-bot"]}}),
    );

    // Where no key bound to an agent may ever act (policies, resolving
    // holds), even an admin one is refused before its request is read.
    for (method, path, body) in [
        ("POST", "/api/v1/policies", json!({"bogus": 1})),
        ("GET", "/api/v1/policies?bogus=1", Value::Null),
        ("POST", "/api/v1/policies/test", json!({})),
        ("PATCH", "/api/v1/policy-settings", json!({"bogus": 1})),
        ("POST", "/api/v1/holds/hld_x/approve", json!({"bogus": 1})),
        ("PUT", "/api/v1/events/retention", json!({"bogus": 1})),
        ("POST", "/api/v1/agents", json!({"bogus": 1})),
        ("GET", "/api/v1/audit/verify?bogus=1", Value::Null),
    ] {
        let body = (!body.is_null()).then_some(&body);
        let r = sdk.send(method, path, body, &[]);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
        assert!(r.body["error"]["field"].is_string(), "{}", r.text);
    }

    let r = sdk.send(
        "DELETE",
        &format!("/api/v1/agents/{billing}"),
        Some(&json!({"bogus": 1})),
        &[],
    );
    assert_eq!(r.status, 403, "{}", r.text);
    // A test key may not change retention, which removes live events.
    let r = w.api(&t.test_key).send(
        "PUT",
        "/api/v1/events/retention",
        Some(&json!({"bogus": 1})),
        &[],
    );
    assert_eq!(
        r.error(403, "forbidden")["field"],
        "environment",
        "{}",
        r.text
    );

    // As itself, by Warden id or external id.
    assert_eq!(decision(&sdk, &billing, "mail.send", json!({})), "allow");
    let d = enforce(
        &sdk,
        json!({"agent_id": "billing-bot", "tool_name": "ledger.post"}),
    );
    assert_eq!(d["decision"], "step_up");
    assert_eq!(d["agent_id"], billing);
    // Never as another agent, registered or not.
    let r = sdk.post(
        "/api/v1/enforce",
        &json!({"agent_id": other, "tool_name": "mail.send"}),
    );
    assert_eq!(r.error(403, "forbidden")["field"], "agent_id");
    let r = sdk.post(
        "/api/v1/enforce",
        &json!({"agent_id": "someone-new", "tool_name": "mail.send"}),
    );
    assert_eq!(r.error(403, "forbidden")["field"], "agent_id");
    // A credential given as the name is refused as no name may hold one,
    // before the binding is looked at, and never written to the log.
    let r = sdk.post(
        "/api/v1/enforce",
        &json!({"agent_id": t.live_key, "tool_name": "mail.send"}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "agent_id");
    // Each attempt is in the server's log with the key that made it.
    let log = std::fs::read_to_string(common::log_path(&backend.data_dir(0))).unwrap();
    let attempts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tried to enforce as another agent"))
        .collect();
    assert_eq!(attempts.len(), 2, "{log}");
    assert!(attempts
        .iter()
        .all(|l| l.contains(&bound_id) && l.contains(&billing)));
    assert!(attempts[0].contains(&other), "{}", attempts[0]);
    assert!(attempts[1].contains("someone-new"), "{}", attempts[1]);
    assert!(!log.contains(&t.live_key[9..]));
    // A user or session that only looks like another is refused, as the
    // person approving a hold reads them.
    for (field, value) in [
        ("user_id", "alice\u{202e}eci"),
        ("session_id", "s\u{200b}1"),
    ] {
        let mut call = json!({"agent_id": "billing-bot", "tool_name": "mail.send"});
        call[field] = json!(value);
        let r = sdk.post("/api/v1/enforce", &call);
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            field,
            "{}",
            r.text
        );
    }
    // Each such refusal is in the server's log with the key and the field
    // (nothing was decided, so no record holds it), never the text sent.
    let log = std::fs::read_to_string(common::log_path(&backend.data_dir(0))).unwrap();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("named its call in a form Warden does not take"))
        .collect();
    for field in ["agent_id", "user_id", "session_id"] {
        assert!(
            refused
                .iter()
                .any(|l| l.contains(&bound_id) && l.contains(&format!("field=\"{field}\""))),
            "{field}: {refused:?}"
        );
    }
    assert!(!log.contains("alice") && !log.contains(&t.live_key[9..]));
    // No policies, no approvals.
    sdk.get("/api/v1/policies").error(403, "forbidden");
    sdk.post("/api/v1/policies/test", &json!({"tool_name": "x"}))
        .error(403, "forbidden");
    let holds = api.get("/api/v1/holds?status=pending");
    let hold = holds.body["data"][0]["id"].as_str().unwrap().to_string();
    sdk.post(&format!("/api/v1/holds/{hold}/approve"), &json!({}))
        .error(403, "forbidden");
    assert_eq!(
        api.get(&format!("/api/v1/holds/{hold}")).body["data"]["status"],
        "pending"
    );

    // Tested before its first call, an unknown agent is decided as the
    // discovered agent it would become, and nothing is registered; an
    // unknown Warden id is not found.
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"agent_id": "stranger-bot", "tool_name": "mail.send"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["decision"], "deny", "{}", r.text);
    assert!(api.get("/api/v1/agents?status=discovered").body["data"]
        .as_array()
        .unwrap()
        .is_empty());
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"agent_id": "agt_000000000000000000000000", "tool_name": "mail.send"}),
    );
    assert_eq!(r.error(404, "not_found")["field"], "agent_id");

    // An unknown agent is discovered, and policies can select it.
    let d = enforce(
        &api,
        json!({"agent_id": "stranger-bot", "tool_name": "mail.send"}),
    );
    assert_eq!(d["decision"], "deny", "{d}");
    let found = api.get("/api/v1/agents?status=discovered");
    let list = found.body["data"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{}", found.text);
    assert_eq!(list[0]["external_id"], "stranger-bot");
    assert_eq!(list[0]["id"], d["agent_id"]);
    // Asking again finds the same agent.
    enforce(
        &api,
        json!({"agent_id": "stranger-bot", "tool_name": "mail.send"}),
    );
    assert_eq!(
        api.get("/api/v1/agents?status=discovered").body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A selector names agents as they are found: an external id with
    // spaces around it, or a Warden id in capitals, still selects.
    let upper = d["agent_id"].as_str().unwrap().to_ascii_uppercase();
    for (tool, id) in [("sel.a", " stranger-bot "), ("sel.b", upper.as_str())] {
        policy(
            &api,
            json!({"name": format!("select {tool}"), "action_pattern": tool, "decision": "deny",
                   "agents": {"ids": [id]}}),
        );
        let d = enforce(&api, json!({"agent_id": "stranger-bot", "tool_name": tool}));
        assert_eq!(d["decision"], "deny", "{id}: {d}");
    }
    // A Warden id in capitals names the agent everywhere, as in selectors.
    let d = enforce(&api, json!({"agent_id": upper, "tool_name": "sel.b"}));
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(api.get(&format!("/api/v1/agents/{upper}")).status, 200);
    // An id with whitespace around it is refused, and discovers nothing.
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "  spaced  ", "tool_name": "mail.send"}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "agent_id");
    // An external id as long as allowed is discovered too, its name cut
    // to names' 200 characters.
    let long = "x".repeat(200);
    let d = enforce(&api, json!({"agent_id": long, "tool_name": "mail.send"}));
    assert_eq!(d["decision"], "allow");
    let name = api
        .get(&format!(
            "/api/v1/agents/{}",
            d["agent_id"].as_str().unwrap()
        ))
        .body["data"]["name"]
        .as_str()
        .unwrap()
        .chars()
        .count();
    assert_eq!(name, 200);
    // A Warden id that does not exist is not discovered; the answer names
    // the field, on the Thoth route too.
    for route in ["/api/v1/enforce", "/v1/enforce"] {
        let r = api.post(
            route,
            &json!({"agent_id": "agt_000000000000000000000000", "tool_name": "x"}),
        );
        assert_eq!(r.error(404, "not_found")["field"], "agent_id", "{route}");
    }
    // A hold token is held to the rules of the ids beside it; an empty
    // one is refused, not recorded as an unknown token's denial.
    for token in ["", "a\u{0}b", "hold_\u{202E}x", "x".repeat(201).as_str()] {
        let r = api.post(
            "/api/v1/enforce",
            &json!({"agent_id": "a", "tool_name": "x", "hold_token": token}),
        );
        assert_eq!(r.error(400, "invalid_request")["field"], "hold_token");
    }
    let recorded = api.get("/api/v1/audit?action=x");
    assert_eq!(recorded.body["data"], json!([]), "{}", recorded.text);
    // Bad input names its field.
    api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "a", "tool_name": ""}),
    )
    .error(400, "invalid_request");
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "a", "tool_name": "x", "tool_args": [1]}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "tool_args");
}

fn hold_until(api: &Api, token: &str, wait: u64) -> Value {
    let r = api.get(&format!("/api/v1/enforce/hold/{token}?wait={wait}"));
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"].clone()
}

/// A Thoth SDK call of `erase-bot` in `session` with the SDK's list of the
/// session's calls.
fn listed_call(api: &Api, tool: &str, session: &str, list: Value) -> common::Reply {
    api.post(
        "/v1/enforce",
        &json!({"agent_id": "erase-bot", "tool_name": tool, "session_id": session,
                "session_tool_calls": list}),
    )
}

/// The hold a decision made, once denied because its policy changed.
fn denied_for_change(api: &Api, decision: &Value) -> Value {
    let r = api.get(&format!(
        "/api/v1/holds/{}",
        decision["hold_id"].as_str().unwrap()
    ));
    let hold = r.body["data"].clone();
    assert_eq!(hold["status"], "denied", "{}", r.text);
    assert!(
        hold["comment"]
            .as_str()
            .unwrap()
            .contains("the policy that held the call changed"),
        "{}",
        r.text
    );
    hold
}

fn holds_resolve_once_expire_and_are_single_use(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let wire = policy(
        &api,
        json!({"name": "wire", "action_pattern": "payments.wire", "decision": "step_up"}),
    );
    policy(
        &api,
        json!({"name": "quick", "action_pattern": "payments.quick", "decision": "step_up",
        "step_up_timeout_seconds": 1}),
    );
    let args = json!({"amount": 700, "to": "DE00"});

    // Approval wakes the long-polling agent.
    let d = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "payments.wire", "tool_args": args}),
    );
    let token = d["hold_token"].as_str().unwrap().to_string();
    let pending = api.get("/api/v1/holds?status=pending");
    let hold = pending.body["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(hold_until(&api, &token, 0)["status"], "pending");
    // The approver sees the call it is asked about, in the queue as in
    // the hold itself.
    let one = api.get(&format!("/api/v1/holds/{hold}"));
    assert_eq!(one.body["data"]["arguments"], args, "{}", one.text);
    assert_eq!(
        pending.body["data"][0]["arguments"], args,
        "{}",
        pending.text
    );
    let approver = api.clone_with_key();
    let waker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        approver.post(
            &format!("/api/v1/holds/{hold}/approve"),
            &json!({"comment": "checked the invoice"}),
        )
    });
    let started = Instant::now();
    let state = hold_until(&api, &token, 10);
    let waited = started.elapsed();
    let approved = waker.join().unwrap();
    assert_eq!(approved.status, 200, "{}", approved.text);
    // The approval's answer shows the call, as the hold itself does.
    assert_eq!(
        approved.body["data"]["arguments"], args,
        "{}",
        approved.text
    );
    assert_eq!(state["status"], "approved");
    assert_eq!(state["resolved"], true);
    assert_eq!(state["resolution"], "allow");
    assert_eq!(state["comment"], "checked the invoice");
    assert!(
        waited < Duration::from_secs(5),
        "the poll returned on approval, not at its limit"
    );
    let hold = approved.body["data"]["id"].as_str().unwrap().to_string();
    // Deleting an agent denies the holds it left pending (no one could
    // use an approval), audited as any denial, with its poll woken.
    let short = enforce(
        &api,
        json!({"agent_id": "short-lived", "tool_name": "payments.wire", "tool_args": args}),
    );
    let short_agent = short["agent_id"].as_str().unwrap();
    let orphan = api.get(&format!(
        "/api/v1/holds?status=pending&agent_id={short_agent}"
    ));
    let orphan = orphan.body["data"][0]["id"].as_str().unwrap().to_string();
    let r = api.delete(&format!("/api/v1/agents/{short_agent}"));
    assert_eq!(r.status, 204, "{}", r.text);
    let r = api.get(&format!("/api/v1/holds/{orphan}"));
    assert_eq!(r.body["data"]["status"], "denied", "{}", r.text);
    assert_eq!(
        r.body["data"]["comment"], "the agent that made the call was deleted",
        "{}",
        r.text
    );
    assert_eq!(r.body["data"]["arguments"], args, "{}", r.text);
    let short_token = short["hold_token"].as_str().unwrap();
    assert_eq!(hold_until(&api, short_token, 0)["status"], "denied");
    // Changing the policy that held a call denies the holds it made
    // before (an approval of them could never be used); a hold made under
    // the new version waits for its approver.
    let edited = policy(
        &api,
        json!({"name": "edited", "action_pattern": "payments.edited", "decision": "step_up"}),
    );
    let before = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "payments.edited", "tool_args": args}),
    );
    let r = api.patch(
        &format!("/api/v1/policies/{edited}"),
        &json!({"description": "reworded"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let after = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "payments.edited", "tool_args": args}),
    );
    // Denied by the key that changed the policy.
    let denied = denied_for_change(&api, &before);
    assert!(
        denied["decided_by"].as_str().unwrap().starts_with("key_"),
        "{denied}"
    );
    assert_eq!(
        hold_until(&api, before["hold_token"].as_str().unwrap(), 0)["status"],
        "denied"
    );
    let r = api.get(&format!(
        "/api/v1/holds/{}",
        after["hold_id"].as_str().unwrap()
    ));
    assert_eq!(r.body["data"]["status"], "pending", "{}", r.text);
    // Disabling it does the same for the hold made under the last version.
    let r = api.patch(
        &format!("/api/v1/policies/{edited}"),
        &json!({"enabled": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.get(&format!(
        "/api/v1/holds/{}",
        after["hold_id"].as_str().unwrap()
    ));
    assert_eq!(r.body["data"]["status"], "denied", "{}", r.text);
    // A change the server did not make itself (another replica's, or one
    // whose request stopped before denying every hold) is found by the
    // background sweep, which denies the hold within seconds.
    let swept = policy(
        &api,
        json!({"name": "swept", "action_pattern": "payments.swept", "decision": "step_up"}),
    );
    let held = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "payments.swept", "tool_args": args}),
    );
    backend.sql(&format!(
        "UPDATE policies SET version = 2, document = replace(document, '\"version\":1', \
         '\"version\":2') WHERE id = '{swept}'"
    ));
    // Approving it is refused whether or not the sweep came first: no
    // approval of it could be used.
    let r = api.post(
        &format!(
            "/api/v1/holds/{}/approve",
            held["hold_id"].as_str().unwrap()
        ),
        &json!({}),
    );
    r.error(409, "conflict");
    let state = hold_until(&api, held["hold_token"].as_str().unwrap(), 10);
    assert_eq!(state["status"], "denied", "{state}");
    assert_eq!(denied_for_change(&api, &held)["decided_by"], "system");
    // Deleting the policy that held a call denies its pending hold too.
    let doomed = policy(
        &api,
        json!({"name": "doomed", "action_pattern": "payments.doomed", "decision": "step_up"}),
    );
    let held = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "payments.doomed", "tool_args": args}),
    );
    let r = api.delete(&format!("/api/v1/policies/{doomed}"));
    assert_eq!(r.status, 204, "{}", r.text);
    let r = api.get(&format!(
        "/api/v1/holds/{}",
        held["hold_id"].as_str().unwrap()
    ));
    assert_eq!(r.body["data"]["status"], "denied", "{}", r.text);
    assert_eq!(
        r.body["data"]["comment"], "the policy that held the call was deleted",
        "{}",
        r.text
    );
    let pending = api.get(&format!(
        "/api/v1/holds?status=pending&agent_id={short_agent}"
    ));
    assert_eq!(pending.body["data"], json!([]), "{}", pending.text);
    let records = api.get(&format!(
        "/api/v1/audit?kind=hold_resolution&agent_id={short_agent}"
    ));
    assert_eq!(
        records.body["data"][0]["hold_id"], orphan,
        "{}",
        records.text
    );
    assert_eq!(
        records.body["data"][0]["decision"], "deny",
        "{}",
        records.text
    );
    for resolve in ["approve", "deny"] {
        api.post(&format!("/api/v1/holds/{orphan}/{resolve}"), &json!({}))
            .error(409, "conflict");
    }
    // Resolved once.
    api.post(&format!("/api/v1/holds/{hold}/deny"), &json!({}))
        .error(409, "conflict");
    // The approval runs exactly that call, once.
    let other_args = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "payments.wire",
        "tool_args": {"amount": 70000, "to": "DE00"}, "hold_token": token}),
    );
    assert_eq!(other_args["decision"], "deny", "{other_args}");
    // Nor the same arguments in another session or for another user: the
    // hold was asked for with neither.
    for elsewhere in [
        json!({"session_id": "s-other"}),
        json!({"user_id": "mallory"}),
    ] {
        let mut call = json!({"agent_id": "payer", "tool_name": "payments.wire",
            "tool_args": args, "hold_token": token});
        call.as_object_mut()
            .unwrap()
            .extend(elsewhere.as_object().unwrap().clone());
        let r = enforce(&api, call);
        assert_eq!(r["decision"], "deny", "{elsewhere}: {r}");
        assert!(
            r["reason"].as_str().unwrap().contains("session or user"),
            "{r}"
        );
    }
    let used = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "payments.wire", "tool_args": args, "hold_token": token}),
    );
    assert_eq!(used["decision"], "allow", "{used}");
    // Both decisions' audit records name the hold: the one that made it
    // and the one that used its approval.
    for audit_id in [&d["audit_id"], &used["audit_id"]] {
        let r = api.get(&format!("/api/v1/audit/{}", audit_id.as_str().unwrap()));
        assert_eq!(r.body["data"]["hold_id"], hold.as_str(), "{}", r.text);
    }
    // The hold's whole story by its id: the decision that made it, its
    // approval, the calls its token could not run, and the one it ran.
    let story = api.get(&format!("/api/v1/audit?hold_id={hold}&direction=asc"));
    let story = story.body["data"].as_array().unwrap();
    let kinds: Vec<&str> = story.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[..2], ["decision", "hold_resolution"], "{story:?}");
    assert_eq!(story.last().unwrap()["decision"], "allow", "{story:?}");
    assert!(story.iter().all(|r| r["hold_id"] == hold.as_str()));
    let again = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "payments.wire", "tool_args": args, "hold_token": token}),
    );
    assert_eq!(again["decision"], "deny");
    assert!(again["reason"].as_str().unwrap().contains("already used"));

    // An approval given under one version of the policy does not run the
    // call once the policy has changed.
    let call =
        json!({"agent_id": "payer", "tool_name": "payments.wire", "tool_args": {"amount": 8}});
    let redeem = approved_redemption(&api, &call);
    let r = api.patch(
        &format!("/api/v1/policies/{wire}"),
        &json!({"description": "tightened"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let stale = enforce(&api, redeem);
    assert_eq!(stale["decision"], "deny", "{stale}");
    // The change withdrew the unused approval: the hold reads `expired`,
    // and its story says who withdrew it and why.
    assert!(
        stale["reason"]
            .as_str()
            .unwrap()
            .contains("withdrawn before it was used"),
        "{stale}"
    );
    let withdrawn = stale["hold_id"].as_str().unwrap();
    let held = api.get(&format!("/api/v1/holds/{withdrawn}"));
    assert_eq!(held.body["data"]["status"], "expired", "{}", held.text);
    let story = api.get(&format!(
        "/api/v1/audit?hold_id={withdrawn}&kind=hold_resolution"
    ));
    assert!(
        story.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["detail"]["approval_withdrawn"].is_string()),
        "{}",
        story.text
    );

    // A Thoth SDK agent runs the call when its poll says ALLOW: that poll
    // uses the approval, so the token cannot run the call a second time.
    let call =
        json!({"agent_id": "payer", "tool_name": "payments.wire", "tool_args": {"amount": 7}});
    let redeem = approved_redemption(&api, &call);
    let token = redeem["hold_token"].as_str().unwrap().to_string();
    let before = audit_count(&api);
    // A `HEAD` (a proxy's or a monitor's check) reads no answer, so it
    // does not use the approval.
    let head = api.send("HEAD", &format!("/v1/enforce/hold/{token}"), None, &[]);
    assert_eq!(head.status, 200, "{}", head.text);
    assert_eq!(audit_count(&api), before);
    let r = thoth_poll(&api, &t.live_key, &token);
    assert_eq!(r["resolution"], "ALLOW", "{r}");
    // The use is audited as a decision naming the hold.
    assert_eq!(audit_count(&api), before + 1);
    let last = api.get("/api/v1/audit?kind=decision&limit=1").body["data"][0].clone();
    assert_eq!(last["decision"], "allow", "{last}");
    assert_eq!(last["tool"], "payments.wire", "{last}");
    assert!(
        last["hold_id"]
            .as_str()
            .is_some_and(|h| h.starts_with("hld_")),
        "{last}"
    );
    // A second poll does not run it again.
    let r = thoth_poll(&api, &t.live_key, &token);
    assert_eq!(r["resolution"], "BLOCK", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("already used"),
        "{r}"
    );
    let used = enforce(&api, redeem);
    assert_eq!(used["decision"], "deny", "{used}");
    assert!(
        used["reason"].as_str().unwrap().contains("already used"),
        "{used}"
    );
    // Nor does a poll after a re-submission used the approval.
    let redeem = approved_redemption(&api, &call);
    let token = redeem["hold_token"].as_str().unwrap().to_string();
    assert_eq!(enforce(&api, redeem)["decision"], "allow");
    let r = thoth_poll(&api, &t.live_key, &token);
    assert_eq!(r["resolution"], "BLOCK", "{r}");

    // Calls racing to redeem one approval: one runs, every other gets a
    // decision (deny, already used), none an error.
    let call =
        json!({"agent_id": "payer", "tool_name": "payments.wire", "tool_args": {"amount": 9}});
    let redeem = approved_redemption(&api, &call);
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (api, body) = (api.clone_with_key(), redeem.clone());
            std::thread::spawn(move || api.post("/api/v1/enforce", &body))
        })
        .collect();
    let mut decisions: Vec<String> = racers
        .into_iter()
        .map(|t| {
            let r = t.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.text);
            let reason = r.body["data"]["reason"].as_str().unwrap().to_string();
            let decision = r.body["data"]["decision"].as_str().unwrap().to_string();
            assert!(
                decision == "allow" || reason.contains("already used"),
                "{reason}"
            );
            decision
        })
        .collect();
    decisions.sort();
    assert_eq!(
        decisions,
        ["allow", "deny", "deny", "deny", "deny", "deny", "deny", "deny"]
    );

    // Denial with a comment.
    let d = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "payments.wire", "tool_args": args}),
    );
    let token2 = d["hold_token"].as_str().unwrap().to_string();
    let hold2 = api.get("/api/v1/holds?status=pending").body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A comment that would reorder itself where it is shown is refused,
    // naming the character; line breaks and tabs are text.
    for bad in [
        "ok \u{202e}devorppa",
        "bell\u{7}",
        "ok\u{200b}",
        "ok\rDENIED",
        "\u{e0041}x",
    ] {
        let r = api.post(
            &format!("/api/v1/holds/{hold2}/deny"),
            &json!({ "comment": bad }),
        );
        let e = r.error(400, "invalid_request");
        assert_eq!(e["field"], "comment", "{}", r.text);
        assert!(e["message"].as_str().unwrap().contains("U+"), "{}", r.text);
    }
    let r = api.post(
        &format!("/api/v1/holds/{hold2}/deny"),
        &json!({"comment": "not expected:\r\n\tno invoice"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["comment"], "not expected:\n\tno invoice");
    assert_eq!(hold_until(&api, &token2, 0)["resolution"], "deny");

    // Expiry resolves as denied, and is audited.
    let d = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "payments.quick", "tool_args": args}),
    );
    let token3 = d["hold_token"].as_str().unwrap().to_string();
    // Past its expiry, before the sweep that audits it as after, the hold
    // is listed as expired, not pending, as a read of it says.
    let quick = d["hold_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1_020));
    let listed = |status: &str| {
        let r = api.get(&format!("/api/v1/holds?status={status}&limit=200"));
        let ids: Vec<Value> = r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].clone())
            .collect();
        ids.contains(&json!(quick))
    };
    assert!(!listed("pending"));
    assert!(listed("expired"));
    let state = hold_until(&api, &token3, 5);
    assert_eq!(state["status"], "expired", "{state}");
    assert_eq!(state["resolution"], "deny");
    let log = api.get("/api/v1/audit?kind=hold_resolution");
    let statuses: Vec<&str> = log.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["detail"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            // The deleted policy's hold, the swept one, the approval the
            // description's edit withdrew, the changed policy's two, the
            // deleted agent's.
            "expired", "denied", "approved", "approved", "approved", "expired", "approved",
            "denied", "denied", "denied", "denied", "denied", "approved"
        ],
        "{}",
        log.text
    );
    assert_eq!(api.get("/api/v1/enforce/hold/hold_nope").status, 404);
    for wait in ["31", "-1"] {
        let out = api.get(&format!("/api/v1/enforce/hold/{token3}?wait={wait}"));
        let err = out.error(400, "invalid_request");
        assert_eq!(err["field"], "wait", "{wait}");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains("from 0 to 30"), "{wait}: {message}");
    }
    // Another organization sees none of it.
    let other = backend.create_org("Other", &[]);
    let stranger = w.api(&other.live_key);
    assert_eq!(
        stranger
            .get(&format!("/api/v1/enforce/hold/{token3}"))
            .status,
        404
    );
    assert_eq!(stranger.get(&format!("/api/v1/holds/{hold}")).status, 404);
    assert_eq!(
        stranger.get("/api/v1/audit").body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // A hold made by the default decision (no policy) is redeemed too.
    let r = api.patch(
        "/api/v1/policy-settings",
        &json!({"default_decision": "step_up"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let call = json!({"agent_id": "payer", "tool_name": "mail.send", "tool_args": {"to": "x"},
                      "user_id": "u-42"});
    let redeem = approved_redemption(&api, &call);
    let token = redeem["hold_token"].as_str().unwrap().to_string();
    assert!(hold_until(&api, &token, 0)["redeemed_at"].is_null());
    let ran = enforce(&api, redeem);
    assert_eq!(ran["decision"], "allow", "{ran}");
    // The poll says the approval was used.
    assert!(hold_until(&api, &token, 0)["redeemed_at"].is_string());
    // Its views name no policy rather than an empty one.
    let held = api.get("/api/v1/holds?limit=1").body["data"][0].clone();
    assert!(held["policy_id"].is_null(), "{held}");
    let resolved = api.get("/api/v1/audit?kind=hold_resolution&limit=1").body["data"][0].clone();
    assert_eq!(resolved["matched_policy_ids"], json!([]), "{resolved}");
    assert!(resolved["policy_id"].is_null(), "{resolved}");
    // The resolution names the user the held call was made for, as the
    // hold does.
    assert_eq!(resolved["user_id"], "u-42", "{resolved}");
    assert_eq!(held["user_id"], "u-42", "{held}");

    // The default has no versions: a change of it denies its pending
    // holds and withdraws its unused approvals, so that going back to
    // step_up does not make an approval given before good again.
    let unused = approved_redemption(&api, &call);
    let pending = enforce(&api, call.clone())["hold_token"]
        .as_str()
        .unwrap()
        .to_string();
    let set_default = |d: &str| {
        let r = api.patch("/api/v1/policy-settings", &json!({"default_decision": d}));
        assert_eq!(r.status, 200, "{}", r.text);
    };
    set_default("deny");
    assert_eq!(hold_until(&api, &pending, 0)["status"], "denied");
    let withdrawn = hold_until(&api, unused["hold_token"].as_str().unwrap(), 0);
    assert_eq!(withdrawn["status"], "expired", "{withdrawn}");
    set_default("step_up");
    let refused = enforce(&api, unused);
    assert_eq!(refused["decision"], "deny", "{refused}");
    assert!(
        refused["reason"].as_str().unwrap().contains("withdrawn"),
        "{refused}"
    );
    let lapse = api.get("/api/v1/audit?kind=hold_resolution&limit=5").body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["detail"]["approval_withdrawn"].is_string())
        .cloned()
        .expect("the withdrawal is recorded");
    assert_eq!(lapse["decision"], "deny", "{lapse}");
    assert!(lapse["detail"]["approval_lapsed"].is_null(), "{lapse}");
    // A hold the default made after it changed (on a replica that had not
    // seen the change yet; here the change is written under this one) is
    // denied by the sweep.
    let late = enforce(&api, call.clone())["hold_token"]
        .as_str()
        .unwrap()
        .to_string();
    backend.sql(
        "UPDATE tenant_settings SET value = 'deny' WHERE name = 'default_decision' \
         AND environment = 'live'",
    );
    let swept = hold_until(&api, &late, 5);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut swept = swept;
    while swept["status"] == "pending" && std::time::Instant::now() < deadline {
        swept = hold_until(&api, &late, 2);
    }
    assert_eq!(swept["status"], "denied", "{swept}");
    backend.sql(
        "UPDATE tenant_settings SET value = 'step_up' WHERE name = 'default_decision' \
         AND environment = 'live'",
    );

    // A denial reaches the SDK said as one, the approver's words after it.
    let token = enforce(&api, call.clone())["hold_token"].clone();
    let token = token.as_str().unwrap().to_string();
    let hold = api.get("/api/v1/holds?status=pending").body["data"][0]["id"].clone();
    let r = api.post(
        &format!("/api/v1/holds/{}/deny", hold.as_str().unwrap()),
        &json!({"comment": "no"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = thoth_poll(&api, &t.live_key, &token);
    assert_eq!(r["resolution"], "BLOCK", "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("step-up denied by key_") && reason.ends_with(": no"),
        "{r}"
    );

    // Shutdown answers a long-poll at once, with the hold as it is,
    // rather than waiting out its 30 s (`terminate` gives up after 20).
    let d = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "payments.wire", "tool_args": {"n": 1}}),
    );
    let token = d["hold_token"].as_str().unwrap().to_string();
    let poller = api.clone_with_key();
    let poll =
        std::thread::spawn(move || poller.get(&format!("/api/v1/enforce/hold/{token}?wait=30")));
    std::thread::sleep(Duration::from_millis(300));
    assert!(w.terminate().success());
    let answered = poll.join().unwrap();
    assert_eq!(answered.status, 200, "{}", answered.text);
    assert_eq!(answered.body["data"]["status"], "pending");
}

fn audit_filters_and_chain_verification(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let no_shell = policy(
        &api,
        json!({"name": "no shell", "action_pattern": "shell.*", "decision": "deny"}),
    );
    let started = warden_time_now();
    for i in 0..6 {
        let tool = if i % 2 == 0 {
            "shell.exec"
        } else {
            "files.read"
        };
        enforce(
            &api,
            json!({"agent_id": "a1", "tool_name": tool, "session_id": format!("s{}", i % 3)}),
        );
    }
    enforce(
        &api,
        json!({"agent_id": "a2", "tool_name": "files.read", "user_id": "u-7"}),
    );
    let count = |q: &str| {
        let r = api.get(&format!("/api/v1/audit?limit=200&{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        r.body["data"].as_array().unwrap().len()
    };
    let a1 = api.get("/api/v1/agents?status=discovered").body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["external_id"] == "a1")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(count(&format!("agent_id={a1}")), 6);
    // The agent's own external id works as a filter too, as in enforce.
    assert_eq!(count("agent_id=a1"), 6);
    // A name no agent has is said, not answered with an empty page that
    // would read as "no activity"; a Warden id finds a deleted agent's.
    let r = api.get("/api/v1/audit?agent_id=nobody");
    assert_eq!(r.error(400, "invalid_request")["field"], "agent_id");
    assert_eq!(count("agent_id=agt_000000000000000000000000"), 0);
    assert_eq!(count("action=shell.*"), 3);
    assert_eq!(count("action=*.read"), 4);
    // Case counts, as in policies' patterns, on either store.
    assert_eq!(count("action=SHELL.*"), 0);
    assert_eq!(count("action=*.READ"), 0);
    assert_eq!(count("decision=deny"), 3);
    assert_eq!(count("session_id=s1"), 2);
    // Fields no column copies are read from the hashed text.
    assert_eq!(count("user_id=u-7"), 1);
    assert_eq!(count("user_id=u-8"), 0);
    assert_eq!(count(&format!("policy_id={no_shell}&kind=decision")), 3);
    let actor = api.get("/api/v1/audit?limit=1").body["data"][0]["actor"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(count(&format!("actor={actor}")), 8);
    assert_eq!(count("actor=system"), 0);
    assert_eq!(count("hold_id=hld_none"), 0);
    for empty in [
        "session_id=",
        "action=",
        "session_id=%20",
        "user_id=",
        "actor=",
        "policy_id=",
        "hold_id=",
    ] {
        let r = api.get(&format!("/api/v1/audit?{empty}"));
        let field = empty.split('=').next().unwrap();
        assert_eq!(r.error(400, "invalid_request")["field"], field, "{empty}");
    }
    // A threshold of 0 filters nothing: the policy's creation (no score)
    // is in the list beside the seven decisions.
    assert_eq!(count(""), 8);
    assert_eq!(count("min_drift=0"), 8);
    assert_eq!(count("min_drift=0&kind=decision"), 7);
    // A cursor resumes only its own filters (the page's size aside):
    // under others it would skip what they find before its place.
    let first = api.get("/api/v1/audit?agent_id=a1&limit=2");
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let rest = api.get(&format!(
        "/api/v1/audit?limit=10&agent_id=a1&cursor={cursor}"
    ));
    assert_eq!(
        rest.body["data"].as_array().unwrap().len(),
        4,
        "{}",
        rest.text
    );
    let other = api.get(&format!(
        "/api/v1/audit?agent_id=a2&limit=2&cursor={cursor}"
    ));
    assert_eq!(
        other.error(400, "invalid_request")["field"],
        "cursor",
        "{}",
        other.text
    );
    assert_eq!(count(&format!("from={started}&kind=decision")), 7);
    assert_eq!(count("to=2000-01-01T00:00:00Z"), 0);
    api.get("/api/v1/audit?min_drift=2")
        .error(400, "invalid_request");
    api.get("/api/v1/audit?from=yesterday")
        .error(400, "invalid_request");
    // Times written as search takes them: relative, a date, seconds.
    assert_eq!(count("from=now-1h&kind=decision"), 7);
    assert_eq!(count("to=now-1h"), 0);
    assert_eq!(count("to=2000-01-01"), 0);
    assert_eq!(count("from=946684800&kind=decision"), 7);
    let r = api.get("/api/v1/audit?from=2026-12-05T00:00:00Z&to=2026-12-04T00:00:00Z");
    assert_eq!(r.error(400, "invalid_request")["field"], "to");
    // Pages walk the whole log without repeats.
    let first = api.get("/api/v1/audit?limit=3");
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = api.get(&format!("/api/v1/audit?limit=3&cursor={cursor}"));
    assert!(
        second.body["data"][0]["sequence"].as_i64() < first.body["data"][2]["sequence"].as_i64()
    );

    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], true, "{}", v.text);
    assert_eq!(v.body["data"]["records_checked"], 8);
    // An auditor recomputes the chain from the API alone, as the docs
    // give it: SHA-256 of the previous hash's hex, the sequence and the
    // canonical text's length as big-endian u64s, and the text.
    let page = api.get("/api/v1/audit?limit=200&direction=asc&canonical=true");
    assert_eq!(page.status, 200, "{}", page.text);
    let mut previous = "0".repeat(64);
    for (i, r) in page.body["data"].as_array().unwrap().iter().enumerate() {
        let text = r["canonical"].as_str().expect("the canonical text");
        let sequence = r["sequence"].as_u64().unwrap();
        assert_eq!(sequence, i as u64 + 1);
        assert_eq!(r["previous_hash"], previous.as_str());
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(previous.as_bytes());
        h.update(sequence.to_be_bytes());
        h.update((text.len() as u64).to_be_bytes());
        h.update(text.as_bytes());
        previous = hex::encode(h.finalize());
        assert_eq!(r["hash"], previous.as_str(), "{r}");
        // The text is the view's record: its id, kind and time in ms.
        let hashed: Value = serde_json::from_str(text).unwrap();
        assert_eq!(hashed["id"], r["id"]);
        assert_eq!(hashed["kind"], r["kind"]);
        assert_eq!(hashed["arguments"], r["arguments"]);
        let one = api.get(&format!(
            "/api/v1/audit/{}?canonical=true",
            r["id"].as_str().unwrap()
        ));
        assert_eq!(one.body["data"]["canonical"], text);
    }
    assert_eq!(v.body["data"]["head_hash"], previous.as_str());
    // Without the parameter the text is left out.
    let plain = api.get("/api/v1/audit?limit=1");
    assert!(
        plain.body["data"][0].get("canonical").is_none(),
        "{}",
        plain.text
    );
    // An edit made directly in the database is named by its sequence.
    let target = backend.sql("SELECT id FROM audit_log WHERE sequence = 4 AND decision = 'deny'");
    let target = target.trim().to_string();
    assert!(
        target.starts_with("aud_"),
        "sequence 4 is a denial: {target}"
    );
    backend.sql(
        "UPDATE audit_log SET record = replace(record, '\"decision\":\"deny\"', '\"decision\":\"allow\"'), \
         decision = 'allow' WHERE sequence = 4",
    );
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], false, "{}", v.text);
    assert_eq!(v.body["data"]["first_break"]["sequence"], 4);
    assert_eq!(v.body["data"]["first_break"]["audit_id"], target.as_str());
    // Editing only the filtered column is caught too.
    backend.sql(
        "UPDATE audit_log SET record = replace(record, '\"decision\":\"allow\"', '\"decision\":\"deny\"'), \
         decision = 'deny' WHERE sequence = 4",
    );
    assert_eq!(api.get("/api/v1/audit/verify").body["data"]["valid"], true);
    backend.sql("UPDATE audit_log SET decision = 'allow' WHERE sequence = 6");
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["first_break"]["sequence"], 6, "{}", v.text);
    backend.sql("UPDATE audit_log SET decision = 'deny' WHERE sequence = 6");
    if !backend.is_postgres() {
        // SQLite keeps text in a whole-number column: verify still names
        // the record, and its chain can still be read.
        for (column, edited) in [("at", "'yesterday'"), ("drift_micros", "'abc'")] {
            let row = "FROM audit_log WHERE environment = 'live' AND sequence = 6";
            let kept = backend.sql(&format!("SELECT quote({column}) {row}"));
            backend.sql(&format!(
                "UPDATE audit_log SET {column} = {edited} WHERE rowid = (SELECT rowid {row})"
            ));
            let v = api.get("/api/v1/audit/verify");
            assert_eq!(v.status, 200, "{column}: {}", v.text);
            assert_eq!(
                v.body["data"]["first_break"]["sequence"], 6,
                "{column}: {}",
                v.text
            );
            assert_eq!(api.get("/api/v1/audit?limit=200").status, 200, "{column}");
            backend.sql(&format!(
                "UPDATE audit_log SET {column} = {} WHERE rowid = (SELECT rowid {row})",
                kept.trim()
            ));
            assert_eq!(
                api.get("/api/v1/audit/verify").body["data"]["valid"],
                true,
                "{column}"
            );
        }
        let moved =
            backend.sql("SELECT id FROM audit_log WHERE environment = 'live' AND sequence = 5");
        backend.sql(
            "UPDATE audit_log SET sequence = 'five' WHERE environment = 'live' AND sequence = 5",
        );
        let v = api.get("/api/v1/audit/verify");
        assert_eq!(v.status, 200, "{}", v.text);
        assert_eq!(v.body["data"]["valid"], false, "{}", v.text);
        assert_eq!(v.body["data"]["first_break"]["sequence"], 6, "{}", v.text);
        let listed = api.get("/api/v1/audit?limit=200");
        assert_eq!(listed.status, 200, "{}", listed.text);
        assert_eq!(
            api.get(&format!("/api/v1/audit/{}", moved.trim())).status,
            200
        );
        backend.sql("UPDATE audit_log SET sequence = 5 WHERE sequence = 'five'");
        assert_eq!(api.get("/api/v1/audit/verify").body["data"]["valid"], true);
        // A copy slipped in between two records, numbered 6.5, is named by
        // its own id, not read as the 6 it is not.
        backend.sql(
            "INSERT INTO audit_log (org_id, environment, sequence, id, kind, at, agent_id, tool, \
             decision, session_id, drift_micros, record, previous_hash, hash) \
             SELECT org_id, environment, 6.5, 'aud_half00000000000000000', kind, at, agent_id, \
             tool, decision, session_id, drift_micros, record, previous_hash, hash FROM audit_log \
             WHERE environment = 'live' AND sequence = 6",
        );
        let v = api.get("/api/v1/audit/verify");
        assert_eq!(
            v.body["data"]["first_break"]["audit_id"], "aud_half00000000000000000",
            "{}",
            v.text
        );
        backend.sql("DELETE FROM audit_log WHERE id = 'aud_half00000000000000000'");
        assert_eq!(api.get("/api/v1/audit/verify").body["data"]["valid"], true);
    }
    // A row forged before the chain's first record is named too.
    backend.sql(
        "INSERT INTO audit_log (org_id, environment, sequence, id, kind, at, agent_id, tool, \
         decision, session_id, drift_micros, record, previous_hash, hash, seal) \
         SELECT org_id, environment, 0, 'aud_forged0000000000000000', kind, at, agent_id, tool, \
         decision, session_id, drift_micros, record, previous_hash, hash, seal FROM audit_log \
         WHERE environment = 'live' AND sequence = 6 LIMIT 1",
    );
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], false, "{}", v.text);
    assert_eq!(v.body["data"]["first_break"]["sequence"], 0, "{}", v.text);
    assert_eq!(
        v.body["data"]["first_break"]["audit_id"], "aud_forged0000000000000000",
        "{}",
        v.text
    );
    backend.sql("DELETE FROM audit_log WHERE sequence = 0");
    // A head that no longer holds the last record's hash names that record.
    let last = backend
        .sql("SELECT sequence || ' ' || id FROM audit_log WHERE environment = 'live' ORDER BY sequence DESC LIMIT 1")
        .trim()
        .to_string();
    let (last_sequence, last_id) = last.split_once(' ').unwrap();
    backend.sql(
        "UPDATE audit_heads SET hash = (CASE WHEN substr(hash, 1, 2) = '00' THEN 'ff' ELSE '00' END) \
         || substr(hash, 3) WHERE environment = 'live'",
    );
    let v = api.get("/api/v1/audit/verify");
    let b = &v.body["data"]["first_break"];
    assert_eq!(b["sequence"].to_string(), last_sequence, "{}", v.text);
    assert_eq!(b["audit_id"], last_id, "{}", v.text);
    assert!(b["reason"].as_str().unwrap().contains("head"), "{}", v.text);
    // No record is chained onto an edited head, so putting it back mends
    // the chain: the writes meanwhile are internal errors.
    let write = || {
        api.post(
            "/api/v1/enforce",
            &json!({"agent_id": "head-bot", "tool_name": "files.read"}),
        )
    };
    assert_eq!(write().status, 500);
    // An agent a refused call would have discovered is not left behind
    // without a record of its discovery.
    let ghost = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "ghost-bot", "tool_name": "files.read"}),
    );
    assert_eq!(ghost.status, 500, "{}", ghost.text);
    let ghost = api.get("/api/v1/agents/ghost-bot");
    assert_eq!(ghost.status, 404, "{}", ghost.text);
    // Readiness says this replica refuses the chain's writes.
    let ready = api.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.body["status"], "degraded", "{}", ready.text);
    assert_eq!(
        ready.body["checks"]["audit_chain"], "head_edited",
        "{}",
        ready.text
    );
    let restore = format!(
        "UPDATE audit_heads SET sequence = {last_sequence}, hash = (SELECT hash FROM audit_log WHERE environment = 'live' AND sequence = {last_sequence}) WHERE environment = 'live'"
    );
    backend.sql(&restore);
    assert_eq!(api.get("/api/v1/audit/verify").body["data"]["valid"], true);
    backend.sql("UPDATE audit_heads SET sequence = sequence + 5 WHERE environment = 'live'");
    assert_eq!(write().status, 500);
    backend.sql(&restore);
    assert_eq!(api.get("/api/v1/audit/verify").body["data"]["valid"], true);
    // A head moved back behind its records is the store's fault, not the
    // caller's: a write that would chain onto it is an internal error,
    // never a conflict naming a field the request did not have.
    let head = backend
        .sql("SELECT sequence || ' ' || hash FROM audit_heads WHERE environment = 'live'")
        .trim()
        .to_string();
    let (head_sequence, head_hash) = head.split_once(' ').unwrap();
    let previous = backend
        .sql(&format!(
            "SELECT hash FROM audit_log WHERE environment = 'live' AND sequence = {head_sequence} - 1"
        ))
        .trim()
        .to_string();
    backend.sql(&format!(
        "UPDATE audit_heads SET sequence = sequence - 1, hash = '{previous}' WHERE environment = 'live'"
    ));
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "head-bot", "tool_name": "files.read"}),
    );
    assert_eq!(r.status, 500, "{}", r.text);
    // Verify counts only the records up to the head as checked.
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(
        v.body["data"]["records_checked"].to_string(),
        (head_sequence.parse::<i64>().unwrap() - 1).to_string(),
        "{}",
        v.text
    );
    backend.sql(&format!(
        "UPDATE audit_heads SET sequence = {head_sequence}, hash = '{head_hash}' WHERE environment = 'live'"
    ));
    assert_eq!(api.get("/api/v1/audit/verify").body["data"]["valid"], true);
    // The head put back, writes go on and readiness says so.
    assert_eq!(write().status, 200);
    let ready = api.get("/readyz");
    assert_eq!(ready.body["checks"]["audit_chain"], "ok", "{}", ready.text);
    assert_eq!(ready.body["status"], "ready", "{}", ready.text);
    // A head copied out earlier is an anchor: a chain cut back past it,
    // or rebuilt from before it, is consistent in itself but fails it.
    let v = api.get("/api/v1/audit/verify").body["data"].clone();
    let (anchor_sequence, anchor_hash) = (
        v["head_sequence"].as_i64().unwrap(),
        v["head_hash"].as_str().unwrap().to_string(),
    );
    assert_eq!(anchor_hash.len(), 64, "{v}");
    let anchored = || {
        api.get(&format!(
            "/api/v1/audit/verify?anchor_sequence={anchor_sequence}&anchor_hash={anchor_hash}"
        ))
        .body["data"]
            .clone()
    };
    assert_eq!(anchored()["valid"], true);
    backend.sql(&format!(
        "DELETE FROM audit_log WHERE environment = 'live' AND sequence = {anchor_sequence}"
    ));
    backend.sql(&format!(
        "UPDATE audit_heads SET sequence = {anchor_sequence} - 1, hash = (SELECT hash FROM audit_log \
         WHERE environment = 'live' AND sequence = {anchor_sequence} - 1) WHERE environment = 'live'"
    ));
    let cut = api.get("/api/v1/audit/verify").body["data"].clone();
    assert_eq!(cut["valid"], true, "{cut}");
    let cut = anchored();
    assert_eq!(cut["valid"], false, "{cut}");
    assert_eq!(cut["first_break"]["sequence"], anchor_sequence, "{cut}");
    assert!(cut["first_break"]["audit_id"].is_null(), "{cut}");
    assert!(cut["head_hash"].is_null(), "{cut}");
    let rewritten = write();
    assert_eq!(rewritten.status, 200, "{}", rewritten.text);
    let v = anchored();
    assert_eq!(v["first_break"]["sequence"], anchor_sequence, "{v}");
    // Only the records before the break count as checked.
    assert_eq!(v["records_checked"], anchor_sequence - 1, "{v}");
    assert_eq!(
        v["first_break"]["audit_id"], rewritten.body["data"]["audit_id"],
        "{v}"
    );
    assert!(
        v["first_break"]["reason"]
            .as_str()
            .unwrap()
            .contains("rewritten"),
        "{v}"
    );
    for (query, field) in [
        ("anchor_sequence=3", "anchor_hash"),
        ("anchor_hash=abc&anchor_sequence=3", "anchor_hash"),
        ("anchor_sequence=0&anchor_hash=", "anchor_sequence"),
    ] {
        let r = api.get(&format!("/api/v1/audit/verify?{query}"));
        assert_eq!(r.error(400, "invalid_request")["field"], field, "{query}");
    }
    // A record whose stored form no longer parses is named by verify, and
    // shown by its columns, marked unreadable, wherever it is read: the
    // list pages past it, and its agent's calls go on, after a restart too.
    let damaged = backend
        .sql("SELECT id FROM audit_log WHERE sequence = 5")
        .trim()
        .to_string();
    backend.sql("UPDATE audit_log SET record = 'not json' WHERE sequence = 5");
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["first_break"]["sequence"], 5, "{}", v.text);
    let listed = api.get("/api/v1/audit?limit=100");
    assert_eq!(listed.status, 200, "{}", listed.text);
    let shown = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == damaged.as_str())
        .cloned()
        .unwrap();
    assert!(shown["detail"]["unreadable"].is_string(), "{shown}");
    let one = api.get(&format!("/api/v1/audit/{damaged}"));
    assert_eq!(one.status, 200, "{}", one.text);
    let agent = shown["agent_id"].as_str().unwrap().to_string();
    drop(api);
    assert!(w.terminate().success());
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let d = enforce(&api, json!({"agent_id": agent, "tool_name": "files.read"}));
    assert_eq!(d["decision"], "allow");
    // Removing a record breaks the chain at the next one.
    backend.sql("DELETE FROM audit_log WHERE sequence = 2");
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["first_break"]["sequence"], 3, "{}", v.text);
    // A head edited while no server ran is told by readiness from the
    // start, before any write is refused for it.
    drop(api);
    assert!(w.terminate().success());
    backend.sql(
        "UPDATE audit_heads SET hash = (CASE WHEN substr(hash, 1, 2) = '00' THEN 'ff' ELSE '00' END) \
         || substr(hash, 3) WHERE environment = 'live'",
    );
    let w = Warden::start(backend, &[]);
    let chain = || w.anonymous().get("/readyz").body["checks"]["audit_chain"].clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while chain() != "head_edited" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(chain(), "head_edited");
}

/// A second ago, as the API writes times.
fn warden_time_now() -> String {
    warden_core::time::to_rfc3339(warden_core::time::now_ms() - 1000)
}

fn drift_rises_on_a_burst_and_falls_back(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let call = |tool: &str| {
        enforce(
            &api,
            json!({"agent_id": "steady", "tool_name": tool, "session_id": "s",
            "tool_args": {"path": "/srv/data", "limit": 10}}),
        )["drift"]
            .clone()
    };
    let mut last = Value::Null;
    for _ in 0..40 {
        call("files.read");
        last = call("files.write");
    }
    assert_eq!(last["learning"], false);
    let steady = last["score"].as_f64().unwrap();
    let burst: Vec<f64> = ["shell.exec", "net.scan", "creds.dump", "s3.delete_bucket"]
        .iter()
        .map(|tool| call(tool)["score"].as_f64().unwrap())
        .collect();
    let peak = burst.iter().cloned().fold(0.0, f64::max);
    assert!(
        peak > steady + 0.4,
        "the burst of unseen tools raised the score: {steady} -> {burst:?}"
    );
    let first_burst = call("shell.exec");
    assert!(
        first_burst["new_tool"].as_f64().unwrap() < 1.0,
        "seen once, no longer new"
    );
    let mut back = 1.0;
    for _ in 0..5 {
        call("files.read");
        back = call("files.write")["score"].as_f64().unwrap();
    }
    assert!(
        back < peak / 2.0,
        "the score fell back: peak {peak}, then {back}"
    );

    // The profile is persisted and can be rebuilt from the audit log.
    let agent = enforce(
        &api,
        json!({"agent_id": "steady", "tool_name": "files.read"}),
    )["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = api.get(&format!("/api/v1/agents/{agent}/drift"));
    assert_eq!(before.status, 200, "{}", before.text);
    let calls = before.body["data"]["calls"].as_u64().unwrap();
    assert!(calls >= 96, "{}", before.text);
    // What every part is scored against is shown: the steps between
    // tools, each tool's argument names, the current rate's window.
    let profile = &before.body["data"];
    let step = profile["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["from"] == "files.read" && t["to"] == "files.write")
        .unwrap_or_else(|| panic!("{profile}"));
    assert!(step["calls"].as_u64().unwrap() >= 40, "{step}");
    let read = profile["argument_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tool"] == "files.read")
        .unwrap_or_else(|| panic!("{profile}"));
    assert_eq!(read["keys"], json!(["limit", "path"]));
    assert_eq!(
        profile["recent_calls"].as_array().unwrap().len(),
        8,
        "{profile}"
    );
    let rebuilt = api.post(&format!("/api/v1/agents/{agent}/drift/rebuild"), &json!({}));
    assert_eq!(rebuilt.status, 200, "{}", rebuilt.text);
    assert_eq!(rebuilt.body["data"]["calls"].as_u64().unwrap(), calls);
    assert_eq!(rebuilt.body["data"]["tools"][0]["tool"], "files.read");
    // Concurrent calls commit in one order and are learned in another:
    // every one still counts, as the audit log's rebuild counts it.
    let busy = backend.create_unthrottled_org("Busy");
    let busy_api = w.api(&busy.live_key);
    let racer = enforce(
        &busy_api,
        json!({"agent_id": "racer", "tool_name": "web.search"}),
    )["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (base, key) = (w.base.clone(), busy.live_key.clone());
            std::thread::spawn(move || {
                let api = common::Api::new(&base, &key);
                for _ in 0..25 {
                    enforce(
                        &api,
                        json!({"agent_id": "racer", "tool_name": "web.search"}),
                    );
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let live = busy_api.get(&format!("/api/v1/agents/{racer}/drift"));
    assert_eq!(live.body["data"]["calls"], 201, "{}", live.text);
    let rebuilt = busy_api.post(&format!("/api/v1/agents/{racer}/drift/rebuild"), &json!({}));
    assert_eq!(rebuilt.body["data"]["calls"], 201, "{}", rebuilt.text);
    // A rebuilt profile is saved, at shutdown at the latest, with no call
    // after the rebuild.
    assert_eq!(w.terminate().code(), Some(0));
    let saved = backend.sql(&format!(
        "SELECT COUNT(*) FROM drift_profiles WHERE agent_id = '{racer}'"
    ));
    assert_eq!(saved.trim(), "1", "the rebuilt profile was not saved");
    let w = Warden::start(backend, &[]);

    let w = w.crash_and_restart(&backend.data_dir(0));
    let after = w
        .api(&t.live_key)
        .get(&format!("/api/v1/agents/{agent}/drift"));
    assert_eq!(
        after.body["data"]["calls"].as_u64().unwrap(),
        calls,
        "{}",
        after.text
    );
}

/// A denied or held call is scored but not learned: retrying a call that
/// a rule on drift denied meets the same score and the same rule. A held
/// call is learned once its approval is used.
fn denied_and_held_calls_are_not_learned(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let mut agent = String::new();
    for i in 0..60 {
        let tool = if i % 2 == 0 {
            "files.read"
        } else {
            "files.write"
        };
        let d = enforce(
            &api,
            json!({"agent_id": "steady", "tool_name": tool, "tool_args": {"path": "/srv"}}),
        );
        agent = d["agent_id"].as_str().unwrap().to_string();
    }
    let calls = |api: &common::Api| -> u64 {
        let r = api.get(&format!("/api/v1/agents/{agent}/drift"));
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["data"]["calls"].as_u64().unwrap()
    };
    assert_eq!(calls(&api), 60);
    // The rule of docs/policies.md's example.
    policy(
        &api,
        json!({"name": "drifting", "action_pattern": "*", "decision": "deny", "priority": 10,
               "condition": "drift.score > 0.6 && !drift.learning"}),
    );
    let mut scores = Vec::new();
    for _ in 0..4 {
        let d = enforce(
            &api,
            json!({"agent_id": "steady", "tool_name": "creds.dump", "tool_args": {"target": "dc01"}}),
        );
        assert_eq!(d["decision"], "deny", "a retry got through: {d}");
        assert_eq!(d["drift"]["new_tool"], 1.0, "{d}");
        scores.push(d["drift"]["score"].as_f64().unwrap());
    }
    // The same score each time, but for the rate part, which moves with
    // the clock between retries.
    assert!(
        scores
            .iter()
            .all(|s| *s > 0.6 && (s - scores[0]).abs() < 0.05),
        "{scores:?}"
    );
    assert_eq!(calls(&api), 60, "denied calls were learned");
    // A held call is learned when its approval is used (here by the
    // SDK's poll), once.
    policy(
        &api,
        json!({"name": "vault", "action_pattern": "vault.*", "decision": "step_up", "priority": 20}),
    );
    let held = enforce(
        &api,
        json!({"agent_id": "steady", "tool_name": "vault.read"}),
    );
    assert_eq!(held["decision"], "step_up", "{held}");
    assert_eq!(calls(&api), 60, "a held call was learned");
    approve_first_pending(&api);
    let token = held["hold_token"].as_str().unwrap();
    assert_eq!(thoth_poll(&api, &t.live_key, token)["resolution"], "ALLOW");
    assert_eq!(calls(&api), 61, "the approved call ran and was learned");
    // The audit log's rebuild learns the same calls, through the same
    // record, though a denied call was recorded after it.
    let d = enforce(
        &api,
        json!({"agent_id": "steady", "tool_name": "creds.dump", "tool_args": {"target": "dc01"}}),
    );
    assert_eq!(d["decision"], "deny", "{d}");
    let live = api.get(&format!("/api/v1/agents/{agent}/drift")).body["data"].clone();
    let rebuilt = api.post(&format!("/api/v1/agents/{agent}/drift/rebuild"), &json!({}));
    assert_eq!(rebuilt.status, 200, "{}", rebuilt.text);
    assert_eq!(rebuilt.body["data"]["calls"], 61, "{}", rebuilt.text);
    assert_eq!(
        rebuilt.body["data"]["audit_sequence"], live["audit_sequence"],
        "{live}"
    );
    let tools: Vec<&str> = rebuilt.body["data"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tool"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"vault.read") && !tools.contains(&"creds.dump"),
        "{tools:?}"
    );
    // Denials edited in the database to read as allowed (text and column)
    // break their hashes: a rebuild, or a load after the profile is gone,
    // does not learn them, so the tool stays new to drift.
    backend.sql(
        "UPDATE audit_log SET record = replace(record, '\"decision\":\"deny\"', '\"decision\":\"allow\"'), \
         decision = 'allow' WHERE tool = 'creds.dump'",
    );
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], false, "{}", v.text);
    let rebuilt = api.post(&format!("/api/v1/agents/{agent}/drift/rebuild"), &json!({}));
    assert_eq!(rebuilt.status, 200, "{}", rebuilt.text);
    assert_eq!(rebuilt.body["data"]["calls"], 61, "{}", rebuilt.text);
    let d = enforce(
        &api,
        json!({"agent_id": "steady", "tool_name": "creds.dump", "tool_args": {"target": "dc01"}}),
    );
    assert_eq!(
        d["drift"]["new_tool"], 1.0,
        "an edited record was learned: {d}"
    );
    // A record moved to another agent by its column alone (its text, and
    // so its hash, untouched) teaches that agent nothing either.
    let other = enforce(
        &api,
        json!({"agent_id": "other-bot", "tool_name": "files.read"}),
    )["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    backend.sql(&format!(
        "UPDATE audit_log SET agent_id = '{other}' WHERE tool = 'files.write' \
         AND agent_id = '{agent}'"
    ));
    let rebuilt = api.post(&format!("/api/v1/agents/{other}/drift/rebuild"), &json!({}));
    assert_eq!(rebuilt.status, 200, "{}", rebuilt.text);
    let tools = rebuilt.body["data"]["tools"].to_string();
    assert!(!tools.contains("files.write"), "{tools}");
}

fn audit_survives_kill_9_under_load(backend: &Backend) {
    backend.init();
    let t = backend.create_unthrottled_org("Load");
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    policy(
        &api,
        json!({"name": "hold big", "action_pattern": "pay.*", "decision": "step_up",
        "condition": "args.n % 5 == 0"}),
    );
    let load = CrashLoad::start(
        &w.base,
        &t.live_key,
        4,
        "/api/v1/enforce",
        200,
        "/data/audit_id",
        |w, n| json!({"agent_id": format!("agent-{w}"), "tool_name": "pay.send", "tool_args": {"n": n}}),
    );
    std::thread::sleep(Duration::from_millis(800));
    // Verified while decisions keep coming, the chain is valid: records
    // appended during the walk are walked too, not taken for a break.
    for _ in 0..5 {
        let v = api.get("/api/v1/audit/verify");
        assert_eq!(v.body["data"]["valid"], true, "{}", v.text);
        assert!(v.body["data"]["records_checked"].as_i64() >= Some(1));
    }
    let w = w.crash_and_restart(&backend.data_dir(0));
    let acked = load.acknowledged();
    assert!(acked.len() > 20, "the load ran ({} decisions)", acked.len());
    let api = w.api(&t.live_key);
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| api.get(&format!("/api/v1/audit/{id}")).status != 200)
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged decisions lost: {lost:?}",
        lost.len()
    );
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], true, "{}", v.text);
    // The chain goes on after the restart.
    enforce(
        &api,
        json!({"agent_id": "agent-0", "tool_name": "pay.send", "tool_args": {"n": 1}}),
    );
    assert_eq!(api.get("/api/v1/audit/verify").body["data"]["valid"], true);
}

/// Ways around the rules that a careful outsider tries: replaying a
/// decision, an agent posing as another by id, a name clash stopping
/// discovery, unaudited default changes, conditions that cost the square of
/// the call, filters a bound key ignores, approvals used long after.
fn decisions_cannot_be_replayed_impersonated_or_made_costly(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);

    // A whole number past 64 bits would reach policies, the hold's digest
    // and the audit record rounded: two accounts would look the same.
    for path in ["/api/v1/enforce", "/v1/enforce"] {
        let r = api.json_text(
            "POST",
            path,
            r#"{"agent_id": "big-bot", "tool_name": "pay.x", "tool_args": {"to": 12345678901234567890123}}"#,
        );
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert_eq!(r.body["error"]["position"]["column"], 67, "{}", r.text);
        assert!(r.text.contains("64 bits"), "{}", r.text);
    }
    // Digits in a body that is not JSON at all are the parser's to name,
    // not a number past 64 bits.
    for body in [
        r#"{"tool_args": {"a": -1-2}}"#,
        "{'agent_id': 'fz-1796553425-4'}",
    ] {
        let r = api.json_text("POST", "/api/v1/enforce", body);
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("malformed JSON"),
            "{body}: {}",
            r.text
        );
    }
    let r = api.json_text(
        "POST",
        "/api/v1/enforce",
        r#"{"agent_id": "big-bot", "tool_name": "pay.x", "tool_args": {"to": "12345678901234567890123", "n": 18446744073709551615}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text);

    // A body nested almost as deep as the parser goes would be decided
    // and then leave a record that no read (the audit list, verify) could
    // parse again: it is refused at the first level too deep.
    let nested = |levels: usize| {
        format!(
            r#"{{"agent_id": "deep-bot", "tool_name": "deep.x", "context": {}{{}}{}}}"#,
            r#"{"a": "#.repeat(levels - 1),
            "}".repeat(levels - 1)
        )
    };
    for path in ["/api/v1/enforce", "/v1/enforce"] {
        let r = api.json_text("POST", path, nested(126));
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert!(r.text.contains("64 levels"), "{}", r.text);
        // `{` of the body, then the context's 63 levels: the 65th opens here.
        let column =
            r#"{"agent_id": "deep-bot", "tool_name": "deep.x", "context": "#.len() + 6 * 63 + 1;
        assert_eq!(r.body["error"]["position"]["column"], column, "{}", r.text);
    }
    let before = audit_count(&api);
    let d = enforce(&api, serde_json::from_str(&nested(63)).unwrap());
    assert_eq!(d["decision"], "allow");
    let r = api.get(&format!(
        "/api/v1/audit/{}",
        d["audit_id"].as_str().unwrap()
    ));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(api.get("/api/v1/audit").status, 200);
    let verify = api.get("/api/v1/audit/verify");
    assert_eq!(verify.body["data"]["valid"], true, "{}", verify.text);
    assert_eq!(audit_count(&api), before + 1);
    let deep_path = vec!["a"; 33].join(".");
    let r = api.post(
        "/api/v1/policies",
        &json!({"name": "deep set", "action_pattern": "deep.*", "decision": "modify", "modify": {"set": {deep_path: 1}}}),
    );
    assert_eq!(
        r.error(400, "invalid_request")["position"]["column"],
        65,
        "{}",
        r.text
    );

    // A tool name that would look like another (invisible characters,
    // blank, padded) escapes every pattern written for that name: refused.
    for name in [
        "\u{200b}shell.exec",
        "shell\u{ad}.exec",
        "\u{feff}shell.exec",
        "shell\u{202e}.exec",
        " ",
        "shell.exec ",
        "she\u{301}ll.exec",
    ] {
        let r = api.post(
            "/api/v1/enforce",
            &json!({"agent_id": "name-bot", "tool_name": name}),
        );
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            "tool_name",
            "{name:?}"
        );
    }

    // Nor may an agent's name, external id or tags, a selector or a
    // policy's name: each would look like another's and escape the
    // selectors written for it. Nothing is registered or written.
    let agents_before = api.get("/api/v1/agents?limit=200").body["data"]
        .as_array()
        .unwrap()
        .len();
    let policies_before = api.get("/api/v1/policies?limit=200").body["data"]
        .as_array()
        .unwrap()
        .len();
    let refused: [(&str, &str, Value, &str); 7] = [
        (
            "POST",
            "/api/v1/enforce",
            json!({"agent_id": "name-bot\u{200b}", "tool_name": "fs.read"}),
            "agent_id",
        ),
        (
            "POST",
            "/api/v1/agents",
            json!({"name": "name\u{202e}bot"}),
            "name",
        ),
        (
            "POST",
            "/api/v1/agents",
            json!({"name": "twin-bot", "external_id": "ext\u{2060}"}),
            "external_id",
        ),
        (
            "POST",
            "/api/v1/agents",
            json!({"name": "tag-bot", "tags": ["prod", "pci\u{200d}"]}),
            "tags[1]",
        ),
        (
            "POST",
            "/api/v1/policies",
            json!({"name": "big\u{200b}transfers", "action_pattern": "*", "decision": "deny"}),
            "name",
        ),
        (
            "POST",
            "/api/v1/policies",
            json!({"name": "sel ids", "action_pattern": "*", "decision": "deny", "agents": {"ids": ["name-bot\u{feff}"]}}),
            "agents.ids[0]",
        ),
        (
            "POST",
            "/api/v1/policies",
            json!({"name": "sel tags", "action_pattern": "*", "decision": "deny", "agents": {"tags": ["pci\u{ad}"]}}),
            "agents.tags[0]",
        ),
    ];
    for (method, path, body, field) in refused {
        let r = api.send(method, path, Some(&body), &[]);
        let error = r.error(400, "invalid_request");
        assert_eq!(error["field"], field, "{body}: {}", r.text);
        assert!(
            error["message"].as_str().unwrap().contains("invisible"),
            "{}",
            r.text
        );
    }
    let count = |path: &str| api.get(path).body["data"].as_array().unwrap().len();
    assert_eq!(count("/api/v1/agents?limit=200"), agents_before);
    assert_eq!(count("/api/v1/policies?limit=200"), policies_before);

    // A pattern with a space other than the plain one (a no-break space
    // pasted from a page) would never match, as tool names refuse it:
    // refused when created, changed or proposed, at its position.
    let plain = api.post(
        "/api/v1/policies",
        &json!({"name": "no mail", "action_pattern": "send email", "decision": "deny"}),
    );
    assert_eq!(plain.status, 201, "{}", plain.text);
    let plain_id = plain.body["data"]["id"].as_str().unwrap().to_string();
    // So would one with a decomposed letter (`e` and U+0301 for `é`).
    for pattern in [
        "send\u{a0}email",
        "send\u{2009}email",
        "send\u{3000}email",
        "sende\u{301}mail",
    ] {
        let attempts = [
            (
                "action_pattern",
                api.post(
                    "/api/v1/policies",
                    &json!({"name": "pasted", "action_pattern": pattern, "decision": "deny"}),
                ),
            ),
            (
                "action_pattern",
                api.patch(
                    &format!("/api/v1/policies/{plain_id}"),
                    &json!({"action_pattern": pattern}),
                ),
            ),
            (
                "policy.action_pattern",
                api.post(
                    "/api/v1/policies/test",
                    &json!({"tool_name": "send email", "only_proposed": true,
                    "policy": {"name": "pasted", "action_pattern": pattern, "decision": "deny"}}),
                ),
            ),
        ];
        for (field, r) in attempts {
            let error = r.error(400, "invalid_request");
            assert_eq!(error["field"], field, "{}", r.text);
            let column = if pattern.contains('\u{301}') { 6 } else { 5 };
            assert_eq!(error["position"]["column"], column, "{}", r.text);
        }
        let r = api.post(
            "/api/v1/enforce",
            &json!({"agent_id": "name-bot", "tool_name": pattern}),
        );
        assert_eq!(r.error(400, "invalid_request")["field"], "tool_name");
    }
    // A filter naming an agent no agent may be says why.
    for path in ["/api/v1/audit", "/api/v1/holds"] {
        let r = api.get(&format!("{path}?agent_id=cafe%CC%81-bot"));
        let e = r.error(400, "invalid_request");
        assert_eq!(e["field"], "agent_id", "{}", r.text);
        assert!(e["message"].as_str().unwrap().contains("NFC"), "{}", r.text);
    }
    let r = api.get(&format!("/api/v1/policies/{plain_id}"));
    assert_eq!(r.body["data"]["action_pattern"], "send email");
    assert_eq!(r.body["data"]["version"], 1, "{}", r.text);
    assert_eq!(count("/api/v1/policies?limit=200"), policies_before + 1);
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "name-bot", "tool_name": "send email"}),
    );
    assert_eq!(r.body["data"]["decision"], "deny", "{}", r.text);
    let r = api.delete(&format!("/api/v1/policies/{plain_id}"));
    assert!(r.status < 300, "{}", r.text);

    // An Idempotency-Key never replays a decision: the agent was suspended
    // in between, so the second call is denied and audited afresh.
    let call = json!({"agent_id": "idem-bot", "tool_name": "idem.x", "tool_args": {"a": 1}});
    let key = [("Idempotency-Key", "same-key")];
    let first = api.send("POST", "/api/v1/enforce", Some(&call), &key);
    assert_eq!(first.body["data"]["decision"], "allow", "{}", first.text);
    let agent = first.body["data"]["agent_id"].as_str().unwrap().to_string();
    let r = api.patch(
        &format!("/api/v1/agents/{agent}"),
        &json!({"status": "suspended"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let again = api.send("POST", "/api/v1/enforce", Some(&call), &key);
    assert_eq!(again.body["data"]["decision"], "deny", "{}", again.text);
    assert_ne!(
        again.body["data"]["audit_id"],
        first.body["data"]["audit_id"]
    );
    assert!(again.header("Idempotent-Replayed").is_none());
    // Nor a dry run: it answers for the policies as they are now.
    let probe = json!({"agent_id": "idem-probe", "tool_name": "idem.y"});
    let dry = api.send("POST", "/api/v1/policies/test", Some(&probe), &key);
    assert_eq!(dry.body["data"]["decision"], "allow", "{}", dry.text);
    policy(
        &api,
        json!({"name": "idem deny", "action_pattern": "idem.y", "decision": "deny"}),
    );
    let dry = api.send("POST", "/api/v1/policies/test", Some(&probe), &key);
    assert_eq!(dry.body["data"]["decision"], "deny", "{}", dry.text);
    assert!(dry.header("Idempotent-Replayed").is_none());
    let thoth = api.send(
        "POST",
        "/v1/enforce",
        Some(&json!({"agent_id": "idem-bot", "tool_name": "idem.x", "tool_args": {"a": 1}})),
        &key,
    );
    assert_eq!(thoth.status, 200, "{}", thoth.text);
    assert_eq!(thoth.body["decision"], "BLOCK", "{}", thoth.text);

    // No external id may take the form of a Warden id.
    let r = api.post(
        "/api/v1/agents",
        &json!({"name": "shadow", "external_id": agent}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "external_id");

    // A taken name does not stop discovery; a dry run reads the name the
    // first call will give, the agent's id added.
    api.create_agent("discovered: clash-bot");
    let named = |condition: &str| {
        let r = api.post(
            "/api/v1/policies/test",
            &json!({"agent_id": "clash-bot", "tool_name": "r.x", "only_proposed": true,
                    "policy": {"name": "by name", "action_pattern": "r.*", "decision": "deny",
                               "condition": condition}}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["data"]["decision"].as_str().unwrap().to_string()
    };
    assert_eq!(named("agent.name == 'discovered: clash-bot'"), "allow");
    assert_eq!(
        named("agent.name == 'discovered: clash-bot (' + agent.id + ')'"),
        "deny"
    );
    let d = enforce(&api, json!({"agent_id": "clash-bot", "tool_name": "r.x"}));
    assert_eq!(d["decision"], "allow");
    let found = api.get(&format!(
        "/api/v1/agents/{}",
        d["agent_id"].as_str().unwrap()
    ));
    assert_eq!(
        found.body["data"]["external_id"], "clash-bot",
        "{}",
        found.text
    );
    assert_eq!(
        enforce(&api, json!({"agent_id": "clash-bot", "tool_name": "r.x"}))["agent_id"],
        d["agent_id"]
    );
    for n in [189, 190, 200] {
        let long = "M".repeat(n);
        assert_eq!(
            enforce(&api, json!({"agent_id": long, "tool_name": "r.x"}))["decision"],
            "allow"
        );
    }

    // Changing the default decision is audited, once per real change.
    let before = audit_count(&api);
    for decision in ["deny", "deny", "allow"] {
        let r = api.patch(
            "/api/v1/policy-settings",
            &json!({"default_decision": decision}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(audit_count(&api), before + 2);
    // Racing requests for one change audit it once.
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let api = api.clone_with_key();
            std::thread::spawn(move || {
                api.patch(
                    "/api/v1/policy-settings",
                    &json!({"default_decision": "step_up"}),
                )
            })
        })
        .collect();
    for racer in racers {
        let r = racer.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(audit_count(&api), before + 3);
    let r = api.patch(
        "/api/v1/policy-settings",
        &json!({"default_decision": "allow"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(audit_count(&api), before + 4);
    let changes = api.get("/api/v1/audit?kind=policy_change&limit=2");
    let newest = &changes.body["data"][0];
    assert_eq!(
        newest["detail"]["change"], "default_decision",
        "{}",
        changes.text
    );
    assert_eq!(
        (&newest["detail"]["from"], &newest["detail"]["to"]),
        (&json!("step_up"), &json!("allow"))
    );

    // Whole JSON numbers are ints: arithmetic works, nothing fails closed.
    policy(
        &api,
        json!({"name": "even", "action_pattern": "ar.y", "decision": "deny", "condition": "args.n % 2 == 0 && args.n * 2 > 5"}),
    );
    assert_eq!(decision(&api, "ar-bot", "ar.y", json!({"n": 3})), "allow");
    assert_eq!(decision(&api, "ar-bot", "ar.y", json!({"n": 4})), "deny");
    // A condition whose cost would grow with the square of the call.
    for condition in [
        "args.items.all(a, args.items.all(b, a == b || true))",
        "args.items.all(a, a in args.allowed)",
        "args.a.map(i, args.b).exists(l, l.exists(t, t == 1))",
        "args.l.map(x, args.s + args.s).size() > 0",
        // An agent's own regex, replacement or separator.
        "args.s.matches(args.p)",
        "args.s.replace('a', args.t) == ''",
        "args.s.split('').join(args.s) == ''",
        // A pattern whose program alone is too large, or a string that
        // could grow far beyond the call.
        "args.s.matches('(?:a|aa){0,3000}b')",
        "args.s.replace('', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx') != ''",
    ] {
        let r = api.post(
            "/api/v1/policies",
            &json!({"name": "costly", "action_pattern": "*", "decision": "deny", "condition": condition}),
        );
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            "condition",
            "{condition}"
        );
    }
    // A selector naming nobody.
    let r = api.post(
        "/api/v1/policies",
        &json!({"name": "nobody", "action_pattern": "*", "decision": "deny", "agents": {"ids": [], "tags": []}}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "agents");

    // A key bound to an agent cannot filter for another; bad globs are named.
    let billing = api.create_agent("billing");
    let (_, bound) = api.create_key(json!({"name": "billing sdk", "scopes": ["enforce", "audit.read", "holds.read"], "agent_id": billing}));
    let sdk = api.with_key(&bound);
    let r = sdk.get(&format!("/api/v1/audit?agent_id={agent}"));
    assert_eq!(r.error(403, "forbidden")["field"], "agent_id");
    // Whether the other agent exists or not: the answer tells nothing.
    for path in [
        "/api/v1/holds?agent_id=clash-bot",
        "/api/v1/holds?agent_id=no-such-bot",
        "/api/v1/audit?agent_id=no-such-bot",
    ] {
        let r = sdk.get(path);
        assert_eq!(r.error(403, "forbidden")["field"], "agent_id", "{path}");
    }
    assert_eq!(
        sdk.get(&format!("/api/v1/audit?agent_id={billing}")).status,
        200
    );
    let r = api.get("/api/v1/audit?action=a%5Bb");
    assert_eq!(r.error(400, "invalid_request")["field"], "action");
    for path in ["/api/v1/audit?agent_id=", "/api/v1/holds?agent_id=%20"] {
        assert_eq!(
            api.get(path).error(400, "invalid_request")["field"],
            "agent_id"
        );
    }

    // An approval lasts as long as the hold could wait for it.
    policy(
        &api,
        json!({"name": "quick approval", "action_pattern": "quick.pay", "decision": "step_up", "step_up_timeout_seconds": 1}),
    );
    let redeem = approved_redemption(
        &api,
        &json!({"agent_id": "quick-bot", "tool_name": "quick.pay"}),
    );
    let token = redeem["hold_token"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(2_200));
    // Neither poll lets the old approval through: the Thoth SDK would run
    // the call on an ALLOW, so it gets BLOCK, and the approval stays unused.
    let native = api.get(&format!("/api/v1/enforce/hold/{token}"));
    assert_eq!(native.status, 200, "{}", native.text);
    assert_eq!(native.body["data"]["status"], "expired", "{}", native.text);
    assert_eq!(native.body["data"]["resolution"], "deny", "{}", native.text);
    let thoth = thoth_poll(&api, &t.live_key, &token);
    assert_eq!(thoth["resolution"], "BLOCK", "{thoth}");
    assert_eq!(thoth["status"], "expired", "{thoth}");
    // The holds API reads it the same way, in its filters too, and says
    // when the approval lapsed.
    let approved = api.get("/api/v1/holds?status=approved&agent_id=quick-bot");
    assert_eq!(approved.body["data"], json!([]), "{}", approved.text);
    let expired = api.get("/api/v1/holds?status=expired&agent_id=quick-bot");
    let listed = &expired.body["data"][0];
    assert_eq!(listed["status"], "expired", "{}", expired.text);
    let lapsed = listed["approval_expires_at"].as_str().unwrap();
    assert!(
        lapsed > listed["decided_at"].as_str().unwrap()
            && lapsed > listed["expires_at"].as_str().unwrap(),
        "{listed}"
    );
    let one = api.get(&format!("/api/v1/holds/{}", listed["id"].as_str().unwrap()));
    assert_eq!(one.body["data"]["status"], "expired", "{}", one.text);
    // Approving it again is refused in the same words.
    let again = api.post(
        &format!("/api/v1/holds/{}/approve", listed["id"].as_str().unwrap()),
        &json!({"comment": "again"}),
    );
    let err = again.error(409, "conflict");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("approval expired before it was used"),
        "{}",
        again.text
    );
    let late = enforce(&api, redeem);
    assert_eq!(late["decision"], "deny", "{late}");
    assert!(
        late["reason"]
            .as_str()
            .unwrap()
            .contains("expired before it was used"),
        "{late}"
    );
    // The lapse is audited once, by the background sweep: the approval
    // is not the log's last word on a call that never ran.
    let hold_id = listed["id"].as_str().unwrap().to_string();
    let lapse_records = || -> Vec<Value> {
        let r = api.get("/api/v1/audit?kind=hold_resolution&limit=200");
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rec| rec["hold_id"] == hold_id.as_str())
            .filter(|rec| rec["detail"]["approval_lapsed"] == true)
            .cloned()
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lapse_records().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    let records = lapse_records();
    assert_eq!(records.len(), 1, "{records:?}");
    let rec = &records[0];
    assert_eq!(rec["decision"], "deny", "{rec}");
    assert_eq!(rec["actor"], "system", "{rec}");
    assert_eq!(rec["detail"]["approved_by"], listed["decided_by"], "{rec}");
    // The hold still says who approved it, and reads as before.
    let one = api.get(&format!("/api/v1/holds/{hold_id}"));
    assert_eq!(one.body["data"]["status"], "expired", "{}", one.text);
    assert_eq!(
        one.body["data"]["decided_by"], listed["decided_by"],
        "{}",
        one.text
    );
    assert_eq!(
        one.body["data"]["approval_expires_at"], listed["approval_expires_at"],
        "{}",
        one.text
    );
    let thoth = thoth_poll(&api, &t.live_key, &token);
    assert_eq!(thoth["resolution"], "BLOCK", "{thoth}");
    assert!(
        thoth["reason"]
            .as_str()
            .unwrap()
            .contains("approval expired"),
        "{thoth}"
    );
    // The filters read the stored lapse as they read the computed one.
    let approved = api.get("/api/v1/holds?status=approved&agent_id=quick-bot");
    assert_eq!(approved.body["data"], json!([]), "{}", approved.text);
    let expired = api.get("/api/v1/holds?status=expired&agent_id=quick-bot");
    assert_eq!(
        expired.body["data"][0]["id"],
        hold_id.as_str(),
        "{}",
        expired.text
    );
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], true, "{}", v.text);
}

/// The Thoth SDK runs the call on its poll's ALLOW without asking again,
/// so that poll applies what changed since the approval, as a
/// re-submission of the call would be decided.
fn thoth_poll_checks_what_changed_since_the_approval(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let held = policy(
        &api,
        json!({"name": "held", "action_pattern": "vault.*", "decision": "step_up", "priority": 10}),
    );
    // A conditional deny that outranks it but was there, unchanged, when
    // the calls were held: its condition did not hold for them.
    policy(
        &api,
        json!({"name": "big reads", "action_pattern": "vault.*", "decision": "deny", "priority": 50,
               "condition": "has(args.bulk) && args.bulk == true"}),
    );
    // Quarantine by tag, with a condition; nobody is tagged yet.
    policy(
        &api,
        json!({"name": "quarantine", "action_pattern": "*", "decision": "deny", "priority": 60,
               "agents": {"tags": ["quarantine"]}, "condition": "tool != 'never'"}),
    );
    let approve = |agent: &str, tool: &str| -> String {
        let redeem = approved_redemption(&api, &json!({"agent_id": agent, "tool_name": tool}));
        redeem["hold_token"].as_str().unwrap().to_string()
    };
    let poll = |token: &str| thoth_poll(&api, &t.live_key, token);
    // The poll answers BLOCK, its reason naming why.
    let blocks = |token: &str, because: &str| {
        let r = poll(token);
        assert_eq!(r["resolution"], "BLOCK", "{r}");
        assert!(r["reason"].as_str().unwrap().contains(because), "{r}");
    };

    // Nothing changed: ALLOW.
    let token = approve("steady-bot", "vault.read");
    let r = poll(&token);
    assert_eq!(r["resolution"], "ALLOW", "{r}");

    // The agent was suspended after the approval.
    let rogue = api.create_agent("rogue-bot");
    let token = approve(&rogue, "vault.read");
    let r = api.patch(
        &format!("/api/v1/agents/{rogue}"),
        &json!({"status": "suspended"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    blocks(&token, "suspended");

    // A deny that outranks the holding policy was added since, even one
    // with a condition the poll cannot evaluate.
    let token = approve("steady-bot", "vault.list");
    let late_deny = policy(
        &api,
        json!({"name": "freeze", "action_pattern": "vault.*", "decision": "deny", "priority": 20,
               "condition": "tool.startsWith('vault.')"}),
    );
    blocks(&token, &late_deny);
    // Still BLOCK on a retried poll, and the approval was not used.
    assert_eq!(poll(&token)["resolution"], "BLOCK");
    let r = api.delete(&format!("/api/v1/policies/{late_deny}"));
    assert!(r.status < 300, "{}", r.text);
    // With the freeze lifted, the approval stands again.
    assert_eq!(poll(&token)["resolution"], "ALLOW");

    // The agent was quarantined by a tag after the approval: the policy's
    // condition was never evaluated for it, so it counts.
    let tagged = api.create_agent("tagged-bot");
    let token = approve(&tagged, "vault.read");
    let r = api.patch(
        &format!("/api/v1/agents/{tagged}"),
        &json!({"tags": ["quarantine"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(poll(&token)["resolution"], "BLOCK");

    // The holding policy itself changed.
    let token = approve("steady-bot", "vault.write");
    let r = api.patch(
        &format!("/api/v1/policies/{held}"),
        &json!({"priority": 11}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    blocks(&token, "changed");

    // Deleted.
    let token = approve("steady-bot", "vault.erase");
    let r = api.delete(&format!("/api/v1/policies/{held}"));
    assert!(r.status < 300, "{}", r.text);
    assert_eq!(poll(&token)["resolution"], "BLOCK");
    // A `modify` tied with a step-up still changes the call once it is
    // approved: the approval lets the call run, not skip the redaction.
    policy(
        &api,
        json!({"name": "strip password", "action_pattern": "http.*", "decision": "modify", "priority": 5,
               "modify": {"redact": ["password"], "set": {"proxy": "egress"}}}),
    );
    policy(
        &api,
        json!({"name": "approve posts", "action_pattern": "http.post", "decision": "step_up", "priority": 5}),
    );
    let call = json!({"agent_id": "web-bot", "tool_name": "http.post",
                      "tool_args": {"url": "https://x.example", "password": "hunter2"}});
    let redeem = approved_redemption(&api, &call);
    let d = enforce(&api, redeem.clone());
    assert_eq!(d["decision"], "modify", "{d}");
    assert_eq!(d["modified_tool_args"]["password"], "[REDACTED]", "{d}");
    assert_eq!(d["modified_tool_args"]["proxy"], "egress", "{d}");
    assert_eq!(d["modified_tool_args"]["url"], "https://x.example", "{d}");
    assert!(
        d["reason"].as_str().unwrap().contains("step-up approved"),
        "{d}"
    );
    // The SDK's poll cannot pass changed arguments on: it blocks, and says
    // how the call can run.
    let redeem = approved_redemption(&api, &call);
    blocks(redeem["hold_token"].as_str().unwrap(), "hold token");
    let d = enforce(&api, redeem);
    assert_eq!(d["decision"], "modify", "{d}");
    // A conditional `modify`, unchanged since the hold, that did not match
    // the held call changes nothing: the poll lets the approval through.
    policy(
        &api,
        json!({"name": "tag big", "action_pattern": "cond.*", "decision": "modify", "priority": 7,
               "condition": "args.x > 5", "modify": {"set": {"big": true}}}),
    );
    policy(
        &api,
        json!({"name": "approve cond", "action_pattern": "cond.*", "decision": "step_up", "priority": 7}),
    );
    std::thread::sleep(Duration::from_millis(20));
    for (x, answer) in [(1, "ALLOW"), (9, "BLOCK")] {
        let call = json!({"agent_id": "cond-bot", "tool_name": "cond.a", "tool_args": {"x": x}});
        let redeem = approved_redemption(&api, &call);
        let r = poll(redeem["hold_token"].as_str().unwrap());
        assert_eq!(r["resolution"], answer, "x = {x}: {r}");
    }
    // The poll's use of the approval records what ran, as the held call
    // was recorded.
    let used = api.get("/api/v1/audit?agent_id=cond-bot&decision=allow&kind=decision");
    let used = &used.body["data"][0];
    assert_eq!(used["detail"]["used_by"], "poll", "{used}");
    assert_eq!(used["arguments"]["x"], 1, "{used}");
    // Under the names the SDK and the policies know, as the held call was.
    assert_eq!(used["detail"]["external_agent_id"], "cond-bot", "{used}");
    let held = api.get(&format!(
        "/api/v1/audit/{}",
        used["detail"]["decision_audit_id"].as_str().unwrap()
    ));
    let held_matched = &held.body["data"]["matched_policy_ids"];
    assert!(
        !held_matched.as_array().unwrap().is_empty(),
        "{}",
        held.text
    );
    assert_eq!(&used["matched_policy_ids"], held_matched, "{used}");

    // A deny above the hold whose condition reads the session, unchanged
    // since the hold: the session moves on while the call waits, and the
    // approved call runs after what came since, so what was judged then
    // does not stand. The poll blocks; submitted again, the call is
    // decided in full.
    policy(
        &api,
        json!({"name": "held send", "action_pattern": "mail.send", "decision": "step_up", "priority": 1}),
    );
    policy(
        &api,
        json!({"name": "no send after reads", "action_pattern": "mail.send", "decision": "deny",
               "priority": 5, "condition": "'crm.read' in session.tools"}),
    );
    std::thread::sleep(Duration::from_millis(20));
    let call = json!({"agent_id": "mail-bot", "tool_name": "mail.send", "session_id": "m1"});
    let redeem = approved_redemption(&api, &call);
    let read = enforce(
        &api,
        json!({"agent_id": "mail-bot", "tool_name": "crm.read", "session_id": "m1"}),
    );
    assert_eq!(read["decision"], "allow", "{read}");
    blocks(redeem["hold_token"].as_str().unwrap(), "session");
    let d = enforce(&api, redeem);
    assert_eq!(d["decision"], "deny", "{d}");

    // The holding policy must still take the call in: not once its
    // selector no longer selects the agent, nor when its own condition
    // reads what moved on. The call would fall to the deny below.
    policy(
        &api,
        json!({"name": "nobody else wires", "action_pattern": "wire.*", "decision": "deny"}),
    );
    policy(
        &api,
        json!({"name": "trusted wire", "action_pattern": "wire.send", "decision": "step_up",
               "priority": 10, "agents": {"tags": ["trusted"]}}),
    );
    policy(
        &api,
        json!({"name": "wire after a lookup", "action_pattern": "wire.later", "decision": "step_up",
               "priority": 10, "condition": "session.previous_tool == 'iban.lookup'"}),
    );
    let r = api.post(
        "/api/v1/agents",
        &json!({"name": "wirer", "external_id": "wirer", "tags": ["trusted"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let wirer = r.body["data"]["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(20));
    let token = approve("wirer", "wire.send");
    let r = api.patch(&format!("/api/v1/agents/{wirer}"), &json!({"tags": []}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = poll(&token);
    assert_eq!(r["resolution"], "BLOCK", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("no longer applies"),
        "{r}"
    );
    let lookup = json!({"agent_id": "lookup-bot", "tool_name": "iban.lookup", "session_id": "w1"});
    assert_eq!(enforce(&api, lookup)["decision"], "allow");
    let call = json!({"agent_id": "lookup-bot", "tool_name": "wire.later", "session_id": "w1"});
    let redeem = approved_redemption(&api, &call);
    let other = json!({"agent_id": "lookup-bot", "tool_name": "docs.read", "session_id": "w1"});
    assert_eq!(enforce(&api, other)["decision"], "allow");
    let r = poll(redeem["hold_token"].as_str().unwrap());
    assert_eq!(r["resolution"], "BLOCK", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("held the call reads"),
        "{r}"
    );
    assert_eq!(enforce(&api, redeem)["decision"], "deny");
    // An ALLOW says who approved it, the approver's words after that.
    policy(
        &api,
        json!({"name": "approve notes", "action_pattern": "notes.read", "decision": "step_up"}),
    );
    let token = approve("steady-bot", "notes.read");
    let r = poll(&token);
    assert_eq!(r["resolution"], "ALLOW", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .starts_with("step-up approved by "),
        "{r}"
    );
    // An edit of the agent stands in the way only of a holding condition
    // that reads the agent.
    policy(
        &api,
        json!({"name": "big payments", "action_pattern": "pay.big", "decision": "step_up",
               "condition": "args.amount > 1000"}),
    );
    policy(
        &api,
        json!({"name": "tagged payments", "action_pattern": "pay.tagged", "decision": "step_up",
               "condition": "args.amount > 1000 && !('vip' in agent.tags)"}),
    );
    // A guard above them, over the arguments alone: it did not hold then.
    policy(
        &api,
        json!({"name": "huge payments", "action_pattern": "pay.*", "decision": "deny",
               "priority": 10, "condition": "args.amount > 1000000"}),
    );
    // What policies select and read (tags, status, names) counts; the
    // description does not.
    for (tool, edit, stands) in [
        ("pay.big", json!({"description": "first"}), true),
        ("pay.tagged", json!({"description": "second"}), true),
        ("pay.tagged", json!({"tags": ["ops"]}), false),
    ] {
        let call = json!({"agent_id": "pay-bot", "tool_name": tool, "tool_args": {"amount": 5000}});
        let redeem = approved_redemption(&api, &call);
        std::thread::sleep(Duration::from_millis(20));
        let r = api.patch("/api/v1/agents/pay-bot", &edit);
        assert_eq!(r.status, 200, "{}", r.text);
        let r = poll(redeem["hold_token"].as_str().unwrap());
        if stands {
            assert_eq!(r["resolution"], "ALLOW", "{r}");
        } else {
            assert_eq!(r["resolution"], "BLOCK", "{r}");
            let reason = r["reason"].as_str().unwrap();
            assert!(reason.contains("the agent, which changed"), "{r}");
        }
    }
    // A suspension since the hold blocks, though lifted before the poll;
    // the same tags in another order change nothing.
    let call =
        json!({"agent_id": "pay-bot", "tool_name": "pay.big", "tool_args": {"amount": 5000}});
    for (edits, stands) in [
        (
            vec![json!({"tags": ["b", "a"]}), json!({"tags": ["a", "b"]})],
            false,
        ),
        (vec![json!({"tags": ["b", "a"]})], true),
        (
            vec![json!({"status": "suspended"}), json!({"status": "active"})],
            false,
        ),
    ] {
        let redeem = approved_redemption(&api, &call);
        std::thread::sleep(Duration::from_millis(20));
        for edit in &edits {
            let r = api.patch("/api/v1/agents/pay-bot", edit);
            assert_eq!(r.status, 200, "{}", r.text);
        }
        let r = poll(redeem["hold_token"].as_str().unwrap());
        let expected = if stands { "ALLOW" } else { "BLOCK" };
        assert_eq!(r["resolution"], expected, "{edits:?}: {r}");
    }
    // A re-submission answers as the poll does (suspended meanwhile,
    // though active again: ask again), and its record names the hold.
    let redeem = approved_redemption(&api, &call);
    std::thread::sleep(Duration::from_millis(20));
    for status in ["suspended", "active"] {
        let r = api.patch("/api/v1/agents/pay-bot", &json!({"status": status}));
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let d = enforce(&api, redeem.clone());
    assert_eq!(d["decision"], "deny", "{d}");
    // The suspension withdrew the approval.
    assert!(d["reason"].as_str().unwrap().contains("withdrawn"), "{d}");
    // A call no policy holds, sent with the token, is decided afresh; its
    // record still names the hold its token could not use.
    let mut other = redeem.clone();
    other["tool_name"] = json!("notes.read");
    let afresh = enforce(&api, other);
    assert_ne!(afresh["decision"], "step_up", "{afresh}");
    for decision in [&d, &afresh] {
        let rec = api.get(&format!(
            "/api/v1/audit/{}",
            decision["audit_id"].as_str().unwrap()
        ));
        assert!(
            rec.body["data"]["hold_id"]
                .as_str()
                .is_some_and(|h| h.starts_with("hld_")),
            "{}",
            rec.text
        );
    }
    // Suspending the agent denies the calls it left waiting.
    let waiting = enforce(&api, call.clone());
    let r = api.patch("/api/v1/agents/pay-bot", &json!({"status": "suspended"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.get(&format!(
        "/api/v1/holds/{}",
        waiting["hold_id"].as_str().unwrap()
    ));
    assert_eq!(r.body["data"]["status"], "denied", "{}", r.text);
    assert_eq!(
        r.body["data"]["comment"], "the agent that made the call was suspended",
        "{}",
        r.text
    );
    let r = api.patch("/api/v1/agents/pay-bot", &json!({"status": "active"}));
    assert_eq!(r.status, 200, "{}", r.text);

    // A key revoked while its poll waits gets no answer, not at the end of
    // its wait either: the poll ends soon after the revocation, long
    // before its wait is up. The revocation denied the held call, so no
    // approval of it can be given, nor used by a key that stands.
    for native in [false, true] {
        let (key_id, key) = api.create_key(json!({"name": "poller", "scopes": ["enforce"]}));
        let agent = w.api(&key);
        let call = json!({"agent_id": "steady-bot", "tool_name": "notes.read",
                          "tool_args": {"native": native}});
        let d = enforce(&agent, call.clone());
        let token = d["hold_token"].as_str().unwrap().to_string();
        let started = std::time::Instant::now();
        let waiting = std::thread::spawn(move || {
            let path = if native {
                format!("/api/v1/enforce/hold/{token}?wait=30")
            } else {
                format!("/v1/enforce/hold/{token}?wait=30")
            };
            agent.raw("GET", &path, Vec::new(), &[("x-api-key", key.as_str())])
        });
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            api.delete(&format!("/api/v1/api-keys/{key_id}")).status,
            204
        );
        let hold = d["hold_id"].as_str().unwrap();
        api.post(&format!("/api/v1/holds/{hold}/approve"), &json!({}))
            .error(409, "conflict");
        let answered = waiting.join().unwrap();
        assert_eq!(answered.status, 401, "{}", answered.text);
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "ended by its wait"
        );
        let r = api.get(&format!("/api/v1/holds/{hold}"));
        assert_eq!(r.body["data"]["status"], "denied", "{}", r.text);
        let mut redeem = call;
        redeem["hold_token"] = d["hold_token"].clone();
        assert_eq!(enforce(&api, redeem)["decision"], "deny");
    }

    // A client that gave up its SDK poll before the approval came spends
    // nothing: the approval waits for a poll that is read.
    let d = enforce(
        &api,
        json!({"agent_id": "steady-bot", "tool_name": "notes.read", "tool_args": {"gave_up": true}}),
    );
    let token = d["hold_token"].as_str().unwrap();
    let addr = w.base.trim_start_matches("http://").to_string();
    let mut client = std::net::TcpStream::connect(&addr).unwrap();
    let request = format!(
        "GET /v1/enforce/hold/{token}?wait=30 HTTP/1.1\r\nHost: {addr}\r\nX-Api-Key: {}\r\n\r\n",
        t.live_key
    );
    std::io::Write::write_all(&mut client, request.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(client);
    approve_first_pending(&api);
    std::thread::sleep(Duration::from_millis(1_500));
    let hold = d["hold_id"].as_str().unwrap();
    let held = api.get(&format!("/api/v1/holds/{hold}"));
    assert!(held.body["data"]["redeemed_at"].is_null(), "{}", held.text);
    let r = thoth_poll(&api, &t.live_key, token);
    assert_eq!(r["resolution"], "ALLOW", "{r}");
    let r = thoth_poll(&api, &t.live_key, token);
    assert_eq!(r["resolution"], "BLOCK", "{r}");
}

fn sessions_redaction_and_changes_stay_within_bounds(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    // An empty account of the session from the Thoth SDK does not erase
    // the calls Warden saw in it.
    policy(
        &api,
        json!({"name": "no egress after reads", "action_pattern": "http.post", "decision": "deny",
               "condition": "'db.read' in session.tools"}),
    );
    enforce(
        &api,
        json!({"agent_id": "erase-bot", "tool_name": "db.read", "session_id": "e1"}),
    );
    let r = listed_call(&api, "http.post", "e1", json!([]));
    assert_eq!(r.body["decision"], "BLOCK", "{}", r.text);
    // Nor does an account that leaves it out: what Warden saw is added,
    // and the record says the history was the caller's and what it left
    // out.
    let r = listed_call(&api, "http.post", "e1", json!(["fs.read", "http.post"]));
    assert_eq!(r.body["decision"], "BLOCK", "{}", r.text);
    let record = api.get(&format!(
        "/api/v1/audit/{}",
        r.body["violation_id"].as_str().unwrap()
    ));
    let detail = &record.body["data"]["detail"];
    assert_eq!(detail["session_tools_from"], "caller", "{}", record.text);
    assert_eq!(
        detail["session_tools_unreported"],
        json!(["db.read"]),
        "{}",
        record.text
    );
    // Nor does an honest-looking list padded past the 200 entries kept:
    // the entries kept are the ones judged.
    let mut padded = vec![json!("db.read")];
    padded.extend((0..100).flat_map(|_| [json!("fs.read"), json!("kb.search")]));
    let r = listed_call(&api, "http.post", "e1", json!(padded));
    assert_eq!(r.body["decision"], "BLOCK", "{}", r.text);
    // A list's count is never below the calls Warden saw run.
    policy(
        &api,
        json!({"name": "budget", "action_pattern": "budget.*", "decision": "deny",
               "condition": "session.calls >= 20"}),
    );
    for _ in 0..25 {
        enforce(
            &api,
            json!({"agent_id": "erase-bot", "tool_name": "fs.read", "session_id": "e3"}),
        );
    }
    let r = listed_call(&api, "budget.spend", "e3", json!(["fs.read"]));
    assert_eq!(r.body["decision"], "BLOCK", "{}", r.text);
    // Nor below the list's own length past the 200 entries kept (the
    // SDK counts the calls of every replica).
    policy(
        &api,
        json!({"name": "long budget", "action_pattern": "bulk.*", "decision": "deny",
               "condition": "session.calls >= 250"}),
    );
    let long: Vec<String> = (0..260).map(|i| format!("other.{i}")).collect();
    let r = listed_call(&api, "bulk.spend", "e4", json!(long));
    assert_eq!(r.body["decision"], "BLOCK", "{}", r.text);
    // The SDK lists every run of a tool: a list holding a repeated call
    // fewer times than Warden saw it run leaves calls out.
    policy(
        &api,
        json!({"name": "twice", "action_pattern": "pay.transfer", "decision": "deny",
               "condition": "size(session.tools.filter(t, t == 'pay.transfer')) >= 2"}),
    );
    for list in [json!([]), json!(["pay.transfer"])] {
        let r = listed_call(&api, "pay.transfer", "e5", list);
        assert_eq!(r.body["decision"], "ALLOW", "{}", r.text);
    }
    let r = listed_call(&api, "pay.transfer", "e5", json!(["pay.transfer"]));
    assert_eq!(r.body["decision"], "BLOCK", "{}", r.text);
    // A call the SDK did not record (its tool raised) beside the calls it
    // did: Warden's record is merged in, no call counted twice.
    policy(
        &api,
        json!({"name": "thrice", "action_pattern": "rep.x", "decision": "deny",
               "condition": "size(session.tools.filter(t, t == 'rep.x')) >= 3"}),
    );
    let thoth = |list: Value| listed_call(&api, "rep.x", "e6", list);
    assert_eq!(thoth(json!([])).body["decision"], "ALLOW");
    assert_eq!(thoth(json!(["rep.x"])).body["decision"], "ALLOW");
    enforce(
        &api,
        json!({"agent_id": "erase-bot", "tool_name": "fail.tool", "session_id": "e6"}),
    );
    // The SDK's list after two runs, the pending repeat left out.
    let r = thoth(json!(["rep.x", "rep.x"]));
    assert_eq!(r.body["decision"], "ALLOW", "{}", r.text);
    let record = api.get(&format!(
        "/api/v1/audit/{}",
        r.body["violation_id"].as_str().unwrap()
    ));
    assert_eq!(
        record.body["data"]["detail"]["session_tools_unreported"],
        json!(["rep.x", "rep.x", "fail.tool"]),
        "{}",
        record.text
    );
    policy(
        &api,
        json!({"name": "no post after a read", "action_pattern": "http.post", "decision": "deny",
               "condition": "session.previous_tool == 'db.read'"}),
    );
    for tool in ["db.read", "fs.list", "db.read"] {
        enforce(
            &api,
            json!({"agent_id": "erase-bot", "tool_name": tool, "session_id": "e2"}),
        );
    }
    // A list that stops short of Warden's last call, or reorders its
    // calls, has Warden's record added after it: the previous tool is
    // Warden's.
    for list in [
        json!(["db.read", "fs.list"]),
        json!(["fs.list", "db.read", "fs.list"]),
    ] {
        let r = listed_call(&api, "http.post", "e2", list.clone());
        assert_eq!(r.body["decision"], "BLOCK", "{list}: {}", r.text);
    }
    // An honest list, with a call of another replica in it, stands.
    let r = listed_call(
        &api,
        "kb.search",
        "e2",
        json!(["db.read", "fs.list", "crm.read", "db.read"]),
    );
    let record = api.get(&format!(
        "/api/v1/audit/{}",
        r.body["violation_id"].as_str().unwrap()
    ));
    let detail = &record.body["data"]["detail"];
    assert_eq!(detail["previous_tool"], "db.read", "{}", record.text);
    assert!(
        detail.get("session_tools_unreported").is_none(),
        "{}",
        record.text
    );
    // An approved call whose policy no longer holds it is decided afresh;
    // the record still names the hold whose approval it did not need.
    let held = policy(
        &api,
        json!({"name": "held sends", "action_pattern": "held.send", "decision": "step_up"}),
    );
    let call = json!({"agent_id": "erase-bot", "tool_name": "held.send", "tool_args": {"n": 1}});
    let redeem = approved_redemption(&api, &call);
    let r = api.patch(
        &format!("/api/v1/policies/{held}"),
        &json!({"enabled": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let d = enforce(&api, redeem);
    let record = api.get(&format!(
        "/api/v1/audit/{}",
        d["audit_id"].as_str().unwrap()
    ));
    assert!(
        record.body["data"]["hold_id"]
            .as_str()
            .is_some_and(|h| h.starts_with("hld_")),
        "{}",
        record.text
    );
    policy(
        &api,
        json!({"name": "no exfil", "action_pattern": "http.*", "decision": "deny",
               "condition": "session.previous_tool == 'db.read'"}),
    );

    // The Thoth SDK sends its whole session: the latest calls count.
    let mut history = vec![json!("kb.search"); 250];
    history.push(json!("db.read"));
    let thoth = |history: &Vec<Value>| {
        api.send(
            "POST",
            "/v1/enforce",
            Some(
                &json!({"agent_id": "long-session", "tool_name": "http.post",
                         "session_tool_calls": history}),
            ),
            &[],
        )
    };
    let r = thoth(&history);
    assert_eq!(r.body["decision"], "BLOCK", "{}", r.text);
    // Each entry is held to the rules of a tool name.
    history[3] = json!("x".repeat(300));
    let r = thoth(&history);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.body["error"]["field"], "session_tool_calls[3]",
        "{}",
        r.text
    );

    // The SDK does not list a call again when it repeats the last one:
    // the second `probe` in a row reads the first as its previous tool.
    policy(
        &api,
        json!({"name": "one probe", "action_pattern": "probe", "decision": "deny",
               "condition": "session.previous_tool == 'probe'"}),
    );
    let probe = || {
        api.send(
            "POST",
            "/v1/enforce",
            Some(
                &json!({"agent_id": "prober", "tool_name": "probe", "session_id": "p1",
                         "session_tool_calls": ["probe"]}),
            ),
            &[],
        )
        .body["decision"]
            .clone()
    };
    assert_eq!(probe(), "ALLOW");
    assert_eq!(probe(), "BLOCK");

    // A session is each agent's own: another agent's call in the same
    // session id does not become this one's previous tool.
    let call = |agent: &str, tool: &str| {
        enforce(
            &api,
            json!({"agent_id": agent, "tool_name": tool, "session_id": "shared"}),
        )["decision"]
            .clone()
    };
    assert_eq!(call("reader-bot", "db.read"), "allow");
    assert_eq!(call("poster-bot", "http.post"), "allow");
    assert_eq!(call("reader-bot", "http.post"), "deny");
    let also = |api: &Api, agent: &str, tool: &str, session: &str| {
        enforce(
            api,
            json!({"agent_id": agent, "tool_name": tool, "session_id": session}),
        )["decision"]
            .clone()
    };
    assert_eq!(also(&api, "reader-bot", "db.read", "across"), "allow");

    // A restart keeps each agent's recent sessions: they are rebuilt from
    // the audit log when the agent's profile is loaded.
    let w = w.crash_and_restart(&backend.data_dir(0));
    let api = w.api(&t.live_key);
    assert_eq!(also(&api, "reader-bot", "http.post", "across"), "deny");
    // A denied call did not run: it is not the previous tool of the
    // session, so trying again meets the same rule, also after a restart.
    assert_eq!(also(&api, "reader-bot", "http.post", "across"), "deny");
    let w = w.crash_and_restart(&backend.data_dir(0));
    let api = w.api(&t.live_key);
    assert_eq!(also(&api, "reader-bot", "http.post", "across"), "deny");
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"agent_id": "poster-bot", "tool_name": "http.get", "session_id": "shared"}),
    );
    assert_eq!(r.body["data"]["decision"], "allow", "{}", r.text);

    // A disabled policy still keeps the fields it names out of storage.
    let pin = policy(
        &api,
        json!({"name": "pin", "action_pattern": "bank.pay", "decision": "deny",
               "audit_redact": ["pin"]}),
    );
    let r = api.patch(
        &format!("/api/v1/policies/{pin}"),
        &json!({"enabled": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let d = enforce(
        &api,
        json!({"agent_id": "payer", "tool_name": "bank.pay", "tool_args": {"pin": "1234"}}),
    );
    assert_eq!(d["decision"], "allow");
    let stored = api.get(&format!(
        "/api/v1/audit/{}",
        d["audit_id"].as_str().unwrap()
    ));
    assert_eq!(
        stored.body["data"]["arguments"]["pin"], "[REDACTED]",
        "{}",
        stored.text
    );
    // As a value anywhere (ids and hashes are hex, and may hold the
    // digits by chance).
    assert!(!stored.text.contains("\"1234\""), "{}", stored.text);

    // A `*` assignment cannot multiply the arguments without bound: the
    // call is denied rather than answered with the change half made.
    policy(
        &api,
        json!({"name": "stamp", "action_pattern": "amp", "decision": "modify",
               "modify": {"set": {"*.x": "y".repeat(10_000)}}}),
    );
    let few: serde_json::Map<String, Value> =
        (0..10).map(|i| (format!("k{i}"), json!({}))).collect();
    let d = enforce(
        &api,
        json!({"agent_id": "amp-bot", "tool_name": "amp", "tool_args": few}),
    );
    assert_eq!(d["decision"], "modify", "{d}");
    assert_eq!(
        d["modified_tool_args"]["k9"]["x"].as_str().unwrap().len(),
        10_000
    );
    let many: serde_json::Map<String, Value> =
        (0..2_000).map(|i| (format!("k{i}"), json!({}))).collect();
    let d = enforce(
        &api,
        json!({"agent_id": "amp-bot", "tool_name": "amp", "tool_args": many}),
    );
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("more than"), "{d}");
    assert!(d["modified_tool_args"].is_null(), "{d}");
    // Nor can an agent hide the entries from a `*` assignment in JSON text
    // a lenient parser reads but strict JSON does not: the call is denied.
    policy(
        &api,
        json!({"name": "cap price", "action_pattern": "shop.order", "decision": "modify",
               "modify": {"set": {"items.*.price": 0}}}),
    );
    let order = |items: &str| {
        enforce(
            &api,
            json!({"agent_id": "amp-bot", "tool_name": "shop.order", "tool_args": {"items": items}}),
        )
    };
    let strict = order(r#"[{"price":5000}]"#);
    assert_eq!(strict["decision"], "modify", "{strict}");
    assert_eq!(strict["modified_tool_args"]["items"], r#"[{"price":0}]"#);
    for loose in [
        r#"[{"price":5000,"note":NaN}]"#,
        r#"[{"price":0,"price":5000}]"#,
    ] {
        let d = order(loose);
        assert_eq!(d["decision"], "deny", "{loose}: {d}");
        assert!(
            d["reason"].as_str().unwrap().contains("not strict JSON"),
            "{d}"
        );
        assert!(d["modified_tool_args"].is_null(), "{d}");
    }
    let sets: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("f{i}"), json!(1))).collect();
    let r = api.post(
        "/api/v1/policies",
        &json!({"name": "many sets", "action_pattern": "x", "decision": "modify",
                "modify": {"set": sets}}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "modify.set");

    // A long chain of operators is a 400 naming the condition, not a
    // crashed server.
    let chain = format!("{} > 0", vec!["1"; 1500].join("+"));
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"tool_name": "x", "only_proposed": true,
                "policy": {"name": "p", "action_pattern": "*", "decision": "deny", "condition": chain}}),
    );
    assert_eq!(
        r.error(400, "invalid_request")["field"],
        "policy.condition",
        "{}",
        r.text
    );
    assert_eq!(api.get("/api/v1/policies").status, 200);

    // Arguments that name a key twice could read one way to a policy and
    // another to the tool: refused, naming the key.
    let r = api.json_text("POST", "/api/v1/enforce", br#"{"agent_id": "payer", "tool_name": "bank.pay", "tool_args": {"amount": 5, "amount": 5000}}"#);
    assert_eq!(
        r.error(400, "invalid_request")["field"],
        "tool_args.amount",
        "{}",
        r.text
    );
    // The Thoth SDK's other fields reach policies as `context`, and a
    // policy's `modify.set` is enforced as written: both refuse a repeat.
    let r = api.json_text("POST", "/v1/enforce", br#"{"agent_id": "payer", "tool_name": "bank.pay", "environment": "prod", "environment": "dev"}"#);
    assert_eq!(
        r.error(400, "invalid_request")["field"],
        "environment",
        "{}",
        r.text
    );
    let r = api.json_text("POST", "/api/v1/policies", br#"{"name": "twice", "action_pattern": "x", "decision": "modify", "modify": {"set": {"limit": {"max": 1, "max": 1000000}}}}"#);
    assert_eq!(
        r.error(400, "invalid_request")["field"],
        "modify.set.limit.max",
        "{}",
        r.text
    );

    // A dry run for an agent never seen scores it as its first call
    // would: learning, with a new tool.
    let r = api.post(
        "/api/v1/policies/test",
        &json!({"agent_id": "fresh-agent-9", "tool_name": "x.y", "tool_args": {"a": 1}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["drift"]["learning"], true, "{}", r.text);
    assert_eq!(r.body["data"]["drift"]["new_tool"], 1.0, "{}", r.text);

    // `min_drift` compares the exact score.
    let record = &api.get("/api/v1/audit?agent_id=payer").body["data"][0];
    let score = record["drift"]["score"].as_f64().unwrap();
    let at = |min: f64| api.get(&format!("/api/v1/audit?agent_id=payer&min_drift={min}"));
    assert_eq!(at(score).body["data"].as_array().unwrap().len(), 1);
    assert_eq!(at(score + 1e-9).body["data"].as_array().unwrap().len(), 0);
}

/// Registering, changing and deleting an agent through the API is in the
/// audit chain, with what changed: status, tags and names are what
/// policies select, so a suspension lifted or a rename is on record.
fn agent_changes_are_audited(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let bot = api.create_agent("pay-bot");
    api.create_agent("taken");
    let r = api.patch(
        &format!("/api/v1/agents/{bot}"),
        &json!({"status": "suspended", "tags": ["pci"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // A change that is refused (the name is taken) records nothing, and
    // one that changes nothing records nothing.
    let r = api.patch(&format!("/api/v1/agents/{bot}"), &json!({"name": "taken"}));
    assert_eq!(r.error(409, "conflict")["field"], "name", "{}", r.text);
    let r = api.patch(
        &format!("/api/v1/agents/{bot}"),
        &json!({"status": "suspended"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (_, bound) =
        api.create_key(json!({"name": "bot key", "scopes": ["agents.read"], "agent_id": bot}));
    assert_eq!(w.api(&bound).get("/api/v1/agents").status, 200);
    let r = api.delete(&format!("/api/v1/agents/{bot}"));
    assert_eq!(r.status, 204, "{}", r.text);
    api.delete(&format!("/api/v1/agents/{bot}"))
        .error(404, "not_found");
    // Its bound key went with it, at once on this replica.
    w.api(&bound)
        .get("/api/v1/agents")
        .error(401, "unauthorized");

    let log = api.get(&format!("/api/v1/audit?kind=agent_change&agent_id={bot}"));
    let records = log.body["data"].as_array().unwrap();
    let changes: Vec<&str> = records
        .iter()
        .map(|r| r["detail"]["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["deleted", "updated", "created"], "{}", log.text);
    let updated = &records[1];
    assert_eq!(updated["actor"], records[0]["actor"]);
    assert_eq!(
        updated["detail"]["changed"],
        json!({"status": {"from": "active", "to": "suspended"}, "tags": {"from": [], "to": ["pci"]}}),
        "{}",
        log.text
    );
    assert_eq!(records[2]["detail"]["agent"]["name"], "pay-bot");
    assert_eq!(records[0]["detail"]["agent"]["status"], "suspended");
    // The deletion names the keys it revoked.
    let key_id = api.get("/api/v1/api-keys").body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "bot key")
        .unwrap()["id"]
        .clone();
    assert_eq!(
        records[0]["detail"]["revoked_keys"],
        json!([key_id]),
        "{}",
        log.text
    );
    let all = api.get("/api/v1/audit?kind=agent_change");
    assert_eq!(
        all.body["data"].as_array().unwrap().len(),
        4,
        "{}",
        all.text
    );
    // And each revocation has its own `key_change` record, as a key
    // revoked through the API does.
    let keys = api.get("/api/v1/audit?kind=key_change");
    let revoked: Vec<&Value> = keys.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["detail"]["change"] == "revoked")
        .collect();
    assert_eq!(revoked.len(), 1, "{}", keys.text);
    assert_eq!(revoked[0]["detail"]["key"]["id"], key_id, "{}", keys.text);
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], true, "{}", v.text);
    // The four agent changes, the bound key's creation and its revocation.
    assert_eq!(v.body["data"]["records_checked"], 6);
}

/// Minting, rotating and revoking keys and changing the event retention
/// are in the audit chain: who may act, and how long evidence is kept.
fn key_and_retention_changes_are_audited(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let r = api.post(
        "/api/v1/api-keys",
        &json!({"name": "ci", "scopes": ["events.write"], "allowed_cidrs": ["10.0.0.0/8"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["data"]["id"].as_str().unwrap().to_string();
    let first = r.body["data"]["key"].as_str().unwrap().to_string();
    let r = api.post(
        &format!("/api/v1/api-keys/{id}/rotate"),
        &json!({"grace_period_seconds": 60}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let second = r.body["data"]["key"].as_str().unwrap().to_string();
    assert_eq!(api.delete(&format!("/api/v1/api-keys/{id}")).status, 204);
    // Refused changes record nothing.
    api.delete(&format!("/api/v1/api-keys/{id}"))
        .error(422, "unprocessable");
    let r = api.post(&format!("/api/v1/api-keys/{id}/rotate"), &json!({}));
    assert_eq!(r.status, 422, "{}", r.text);
    // A test key minted by the live admin is recorded in the test chain.
    let r = api.post(
        "/api/v1/api-keys",
        &json!({"name": "sandbox", "scopes": ["agents.read"], "environment": "test"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);

    let log = api.get("/api/v1/audit?kind=key_change");
    let records = log.body["data"].as_array().unwrap();
    let changes: Vec<&str> = records
        .iter()
        .map(|r| r["detail"]["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["revoked", "rotated", "created"], "{}", log.text);
    for r in records {
        assert_eq!(r["detail"]["key"]["id"], id.as_str(), "{r}");
        assert_eq!(r["detail"]["key"]["allowed_cidrs"], json!(["10.0.0.0/8"]));
        assert_eq!(r["actor"], records[0]["actor"]);
    }
    assert_eq!(records[1]["detail"]["grace_period_seconds"], 60);
    // No secret, nor a part of one, is on record.
    for secret in [&first, &second] {
        assert!(!log.text.contains(&secret[9..]), "{}", log.text);
    }
    let test_log = w.api(&t.test_key).get("/api/v1/audit?kind=key_change");
    assert_eq!(
        test_log.body["data"][0]["detail"]["key"]["name"], "sandbox",
        "{}",
        test_log.text
    );

    for days in [json!(30), json!(30), json!(null)] {
        let r = api.send(
            "PUT",
            "/api/v1/events/retention",
            Some(&json!({"retention_days": days})),
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let log = api.get("/api/v1/audit?kind=setting_change");
    let records = log.body["data"].as_array().unwrap();
    // Setting what is already set records nothing.
    assert_eq!(records.len(), 2, "{}", log.text);
    assert_eq!(records[0]["detail"]["from"], 30);
    assert_eq!(records[0]["detail"]["to"], Value::Null);
    assert_eq!(records[1]["detail"]["from"], Value::Null);
    assert_eq!(records[1]["detail"]["to"], 30);
    assert_eq!(records[1]["detail"]["change"], "event_retention_days");
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], true, "{}", v.text);
    assert_eq!(v.body["data"]["records_checked"], 5, "{}", v.text);
}

/// An agent discovered by a call whose decision was never recorded (the
/// process stopped between storing the agent and committing the record)
/// is taken back once older than any decision in flight could be; a
/// discovered agent with its record, a registered agent and a discovery
/// still within that time stay.
fn unrecorded_discoveries_are_taken_back(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "recorded-bot", "tool_name": "fs.read"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let recorded = r.body["data"]["agent_id"].as_str().unwrap().to_string();
    let registered = api.create_agent("quiet-bot");
    assert_eq!(w.terminate().code(), Some(0));

    // As a crash leaves them: one discovered two minutes ago, one just now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    backend.sql(&format!(
        "UPDATE agents SET created_at = created_at - 120000 WHERE org_id = '{}'",
        t.org_id
    ));
    for (id, name, at) in [
        ("agt_00000000000000000000a001", "lost-bot", now - 120_000),
        ("agt_00000000000000000000a002", "fresh-bot", now),
    ] {
        backend.sql(&format!(
            "INSERT INTO agents (id, org_id, environment, name, description, owner, framework, \
             external_id, tags, status, metadata, revision, created_at, updated_at) VALUES \
             ('{id}', '{org}', 'live', 'discovered: {name}', NULL, NULL, NULL, '{name}', '[]', \
             'discovered', '{{}}', 1, {at}, {at})",
            org = t.org_id
        ));
    }

    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let deadline = Instant::now() + Duration::from_secs(30);
    while api
        .get("/api/v1/agents/agt_00000000000000000000a001")
        .status
        != 404
    {
        assert!(
            Instant::now() < deadline,
            "the unrecorded discovery was never taken back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for kept in [
        recorded.as_str(),
        registered.as_str(),
        "agt_00000000000000000000a002",
    ] {
        let r = api.get(&format!("/api/v1/agents/{kept}"));
        assert_eq!(r.status, 200, "{kept}: {}", r.text);
    }
    // Its name is free: the next call discovers it afresh, recorded.
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "lost-bot", "tool_name": "fs.read"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let again = r.body["data"]["agent_id"].as_str().unwrap().to_string();
    assert_ne!(again, "agt_00000000000000000000a001");
    let audit = api.get(&format!("/api/v1/audit?agent_id={again}"));
    assert_eq!(
        audit.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        audit.text
    );
}

/// An anchor that does not match is named even when the walk finds a
/// later break: the earlier rewrite is the one the anchor exists to catch.
fn a_failed_anchor_comes_before_a_later_break(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    for _ in 0..6 {
        enforce(
            &api,
            json!({"agent_id": "anchored", "tool_name": "files.read"}),
        );
    }
    let second = api.get("/api/v1/audit?direction=asc&limit=2").body["data"][1]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    backend.sql("UPDATE audit_log SET tool = 'zzz' WHERE environment = 'live' AND sequence = 5");
    let verify = |query: &str| {
        let r = api.get(&format!("/api/v1/audit/verify?{query}"));
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["data"].clone()
    };
    let walked = verify("");
    assert_eq!(walked["first_break"]["sequence"], 5, "{walked}");
    assert_eq!(walked["records_checked"], 4, "{walked}");
    let matching = verify(&format!("anchor_sequence=2&anchor_hash={second}"));
    assert_eq!(matching["first_break"]["sequence"], 5, "{matching}");
    let wrong = verify(&format!("anchor_sequence=2&anchor_hash={}", "0".repeat(64)));
    assert_eq!(wrong["valid"], false, "{wrong}");
    assert_eq!(wrong["first_break"]["sequence"], 2, "{wrong}");
    assert_eq!(wrong["records_checked"], 1, "{wrong}");
}

/// Runs `first` and `second` at the same moment; their statuses.
fn race(first: impl FnOnce() -> u16 + Send, second: impl FnOnce() -> u16 + Send) -> (u16, u16) {
    let gate = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            gate.wait();
            first()
        });
        let b = scope.spawn(|| {
            gate.wait();
            second()
        });
        (a.join().unwrap(), b.join().unwrap())
    })
}

/// The approval of `hold` and `change` sent together; each answered as a
/// race allows (done, or a 409 for the one that came second).
fn approval_racing(api: &Api, hold: &str, change: impl FnOnce() -> u16 + Send) {
    let (s1, s2) = race(change, || {
        api.post(&format!("/api/v1/holds/{hold}/approve"), &json!({}))
            .status
    });
    for s in [s1, s2] {
        assert!(s == 200 || s == 204 || s == 409, "status {s}");
    }
}

/// Every record of the tenant's live chain, oldest first.
fn whole_log(api: &Api) -> Vec<Value> {
    let mut records = Vec::new();
    let mut path = "/api/v1/audit?direction=asc&limit=200".to_string();
    loop {
        let page = api.get(&path);
        assert_eq!(page.status, 200, "{}", page.text);
        records.extend(page.body["data"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/audit?direction=asc&limit=200&cursor={c}"),
            None => return records,
        }
    }
}

/// A suspension, a deletion or a policy change racing the approval of a
/// hold, or the call that uses it: whichever commits first, the chain
/// never records an approval given or used after the change that ended
/// it (the store checks the approval in the transaction that gives or
/// uses it).
fn approvals_never_outlive_a_racing_change(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let ok = |s: u16| assert!(s == 200 || s == 204 || s == 409, "status {s}");
    let mut rounds = Vec::new();
    for round in 0..12 {
        let tool = format!("race{round}.pay");
        let rule = policy(
            &api,
            json!({"name": format!("race {round}"), "action_pattern": format!("race{round}.*"),
                   "decision": "step_up"}),
        );
        // The use of an approval, racing its agent's suspension.
        let user = api.create_agent(&format!("user-{round}"));
        let call = json!({"agent_id": user, "tool_name": tool, "tool_args": {"n": round}});
        let held = enforce(&api, call.clone());
        let used = held["hold_id"].as_str().unwrap().to_string();
        let r = api.post(&format!("/api/v1/holds/{used}/approve"), &json!({}));
        assert_eq!(r.status, 200, "{}", r.text);
        let mut again = call;
        again["hold_token"] = held["hold_token"].clone();
        let (s1, s2) = race(
            || {
                api.patch(
                    &format!("/api/v1/agents/{user}"),
                    &json!({"status": "suspended"}),
                )
                .status
            },
            || api.post("/api/v1/enforce", &again).status,
        );
        ok(s1);
        ok(s2);
        // An approval, racing a change of the policy that held the call.
        let other = api.create_agent(&format!("approved-{round}"));
        let held = enforce(&api, json!({"agent_id": other, "tool_name": tool}));
        let changed = held["hold_id"].as_str().unwrap().to_string();
        approval_racing(&api, &changed, || {
            api.patch(
                &format!("/api/v1/policies/{rule}"),
                &json!({"description": format!("edited in round {round}")}),
            )
            .status
        });
        // An approval, racing its agent's deletion.
        let doomed = api.create_agent(&format!("deleted-{round}"));
        let held = enforce(&api, json!({"agent_id": doomed, "tool_name": tool}));
        let deleted = held["hold_id"].as_str().unwrap().to_string();
        approval_racing(&api, &deleted, || {
            api.delete(&format!("/api/v1/agents/{doomed}")).status
        });
        // An approval, racing the revocation of the key that made the
        // call; another key of the agent then tries it.
        let held_by = api.create_agent(&format!("keyed-{round}"));
        let (key_id, key) = api.create_key(
            json!({"name": format!("k{round}"), "scopes": ["enforce"], "agent_id": held_by}),
        );
        let (_, spare) = api.create_key(
            json!({"name": format!("k{round} 2"), "scopes": ["enforce"], "agent_id": held_by}),
        );
        let call = json!({"agent_id": held_by, "tool_name": tool});
        let held = enforce(&w.api(&key), call.clone());
        let keyed = held["hold_id"].as_str().unwrap().to_string();
        approval_racing(&api, &keyed, || {
            api.delete(&format!("/api/v1/api-keys/{key_id}")).status
        });
        let mut again = call;
        again["hold_token"] = held["hold_token"].clone();
        let tried = enforce(&w.api(&spare), again);
        assert_eq!(tried["decision"], "deny", "round {round}: {tried}");
        rounds.push((user, used, rule, changed, doomed, deleted));
    }
    let log = whole_log(&api);
    let seq = |r: &Value| r["sequence"].as_i64().unwrap();
    // The last change recorded of an agent or a policy: the racing one.
    let last_change = |kind: &str, field: &str, id: &str| {
        log.iter()
            .filter(|r| r["kind"] == kind && r[field] == id)
            .map(seq)
            .max()
            .unwrap_or_else(|| panic!("no {kind} of {id}"))
    };
    let approval = |hold: &str| {
        log.iter()
            .find(|r| {
                r["kind"] == "hold_resolution" && r["hold_id"] == hold && r["decision"] == "allow"
            })
            .map(seq)
    };
    for (user, used, rule, changed, doomed, deleted) in &rounds {
        let suspended = last_change("agent_change", "agent_id", user);
        let redemptions: Vec<i64> = log
            .iter()
            .filter(|r| r["detail"]["redeemed_hold_id"] == used.as_str())
            .map(seq)
            .collect();
        assert!(redemptions.len() <= 1, "{redemptions:?}");
        for s in redemptions {
            assert!(
                s < suspended,
                "hold {used} used at {s}, after the suspension at {suspended}"
            );
        }
        let edited = last_change("policy_change", "policy_id", rule);
        if let Some(s) = approval(changed) {
            assert!(
                s < edited,
                "hold {changed} approved at {s}, after its policy's change at {edited}"
            );
        }
        let gone = last_change("agent_change", "agent_id", doomed);
        if let Some(s) = approval(deleted) {
            assert!(
                s < gone,
                "hold {deleted} approved at {s}, after its agent's deletion at {gone}"
            );
        }
    }
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], true, "{}", v.text);
}

/// Approvals used at the last moment of their time, by a poll and a
/// re-sent call together: the store checks the time again where it
/// records the use, so no use is recorded after the approval's end,
/// however late after its request's own check the use commits.
fn no_approval_is_used_after_its_time(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    policy(
        &api,
        json!({"name": "late", "action_pattern": "late.*", "decision": "step_up",
               "step_up_timeout_seconds": 1}),
    );
    let bot = api.create_agent("late-bot");
    let ms = |text: &str| warden_core::time::parse_rfc3339(text).unwrap();
    let mut ends = std::collections::HashMap::new();
    for round in 0..8 {
        let call = json!({"agent_id": bot, "tool_name": "late.pay", "tool_args": {"n": round}});
        let held = enforce(&api, call.clone());
        let id = held["hold_id"].as_str().unwrap().to_string();
        let r = api.post(&format!("/api/v1/holds/{id}/approve"), &json!({}));
        assert_eq!(r.status, 200, "{}", r.text);
        let end = ms(r.body["data"]["approval_expires_at"].as_str().unwrap());
        ends.insert(id, end);
        // Both leave a few milliseconds before the end (a scheduling
        // point, not a measure: what is checked is the records' order).
        let now = warden_core::time::now_ms();
        let lead = 2 + round % 4;
        if end - lead > now {
            std::thread::sleep(Duration::from_millis((end - lead - now) as u64));
        }
        let token = held["hold_token"].as_str().unwrap();
        let mut again = call;
        again["hold_token"] = held["hold_token"].clone();
        let (s1, s2) = race(
            || thoth_poll(&api, &t.live_key, token)["resolved"].is_boolean() as u16 * 200,
            || api.post("/api/v1/enforce", &again).status,
        );
        assert_eq!(s1, 200);
        assert!(s2 == 200 || s2 == 409, "status {s2}");
    }
    for record in whole_log(&api) {
        let Some(hold) = record["detail"]["redeemed_hold_id"].as_str() else {
            continue;
        };
        let at = ms(record["at"].as_str().unwrap());
        assert!(
            at <= ends[hold],
            "hold {hold} used at {at}, after its approval's end at {}",
            ends[hold]
        );
    }
}

/// A `step_up` policy over `wire.*`, an agent and two `enforce` keys bound
/// to it: (agent id, first key's id, first key, second key).
fn wire_bot_with_two_keys(api: &Api) -> (String, String, String, String) {
    policy(
        api,
        json!({"name": "wires", "action_pattern": "wire.*", "decision": "step_up"}),
    );
    let bot = api.create_agent("wire-bot");
    let (first_id, first) =
        api.create_key(json!({"name": "sdk", "scopes": ["enforce"], "agent_id": bot}));
    let (_, second) =
        api.create_key(json!({"name": "sdk 2", "scopes": ["enforce"], "agent_id": bot}));
    (bot, first_id, first, second)
}

/// A key's revocation stored in its row alone: the instant before the
/// revocation's own withdrawal of its calls' approvals runs.
fn revoke_in_the_row(backend: &Backend, key_id: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    backend.sql(&format!(
        "UPDATE api_keys SET revoked_at = {now} WHERE id = '{key_id}'"
    ));
}

/// The instant between a key's revocation and its withdrawal of the
/// approvals of calls it made (the revocation stored in the key's row
/// only, as when an approval races it): an approval given then is
/// refused, and one given before is not used by another key of the agent.
fn an_approval_racing_its_keys_revocation_is_not_used(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let (bot, revoked_id, revoked, other) = wire_bot_with_two_keys(&api);
    let (revoked, other) = (w.api(&revoked), w.api(&other));
    let call = |n: i64| json!({"agent_id": bot, "tool_name": "wire.send", "tool_args": {"n": n}});
    let unapproved = enforce(&revoked, call(1));
    let approved = enforce(&revoked, call(2));
    let approved_id = approved["hold_id"].as_str().unwrap();
    let r = api.post(&format!("/api/v1/holds/{approved_id}/approve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    revoke_in_the_row(backend, &revoked_id);
    let id = unapproved["hold_id"].as_str().unwrap();
    let r = api.post(&format!("/api/v1/holds/{id}/approve"), &json!({}));
    assert!(
        r.error(409, "conflict")["message"]
            .as_str()
            .unwrap()
            .contains("the key that made the call was revoked"),
        "{}",
        r.text
    );
    let mut again = call(2);
    again["hold_token"] = approved["hold_token"].clone();
    let used = enforce(&other, again);
    assert_eq!(used["decision"], "deny", "{used}");
    let allowed = api.get("/api/v1/audit?kind=decision&decision=allow&action=wire.*");
    assert_eq!(allowed.body["data"], json!([]), "{}", allowed.text);
    // A call recorded just after its agent's suspension, which the
    // suspension's own denials missed (here: the status set in the row).
    let other_bot = api.create_agent("wire-bot 2");
    let left = enforce(
        &api,
        json!({"agent_id": other_bot, "tool_name": "wire.send"}),
    );
    backend.sql(&format!(
        "UPDATE agents SET status = 'suspended' WHERE id = '{other_bot}'"
    ));
    // The sweep denies both pending holds no approval could be used for.
    for (hold, why) in [
        (&unapproved, "the key that made the call was revoked"),
        (
            &left,
            "the agent that made the call was suspended or deleted",
        ),
    ] {
        let id = hold["hold_id"].as_str().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let state = loop {
            let state = api.get(&format!("/api/v1/holds/{id}")).body["data"].clone();
            if state["status"] != "pending" || std::time::Instant::now() > deadline {
                break state;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(state["status"], "denied", "{state}");
        assert_eq!(state["decided_by"], "system", "{state}");
        assert_eq!(state["comment"], why, "{state}");
    }
}

/// Holds made before holds kept their call's key: the migration copies
/// the key from each call's record, and one that names none (made by a
/// replica of the earlier release still running after the migration) is
/// judged by its record's key when used: neither approval runs once that
/// key is revoked.
fn holds_made_before_their_key_was_kept_are_judged_by_their_record(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let (bot, revoked_id, revoked, other_key) = wire_bot_with_two_keys(&api);
    let revoked = w.api(&revoked);
    let call = |n: i64| json!({"agent_id": bot, "tool_name": "wire.send", "tool_args": {"n": n}});
    let held: Vec<Value> = (1..=2).map(|n| enforce(&revoked, call(n))).collect();
    for h in &held {
        let id = h["hold_id"].as_str().unwrap();
        let r = api.post(&format!("/api/v1/holds/{id}/approve"), &json!({}));
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert!(w.terminate().success());
    // The store as the earlier release left it.
    let version = if backend.is_postgres() { 7 } else { 8 };
    backend.sql("ALTER TABLE holds DROP COLUMN key_id");
    backend.sql(&format!(
        "DELETE FROM schema_migrations WHERE version = {version}"
    ));
    let w = Warden::start(backend, &[]);
    let (api, other) = (w.api(&t.live_key), w.api(&other_key));
    let (old, by_replica) = (
        held[0]["hold_id"].as_str().unwrap(),
        held[1]["hold_id"].as_str().unwrap(),
    );
    let copied = backend.sql(&format!("SELECT key_id FROM holds WHERE id = '{old}'"));
    assert_eq!(copied.trim(), revoked_id);
    backend.sql(&format!(
        "UPDATE holds SET key_id = NULL WHERE id = '{by_replica}'"
    ));
    revoke_in_the_row(backend, &revoked_id);
    for (n, h) in held.iter().enumerate() {
        let mut again = call(n as i64 + 1);
        again["hold_token"] = h["hold_token"].clone();
        let used = enforce(&other, again);
        assert_eq!(used["decision"], "deny", "{used}");
    }
    let allowed = api.get("/api/v1/audit?kind=decision&decision=allow&action=wire.*");
    assert_eq!(allowed.body["data"], json!([]), "{}", allowed.text);
}

/// A key revoked while calls it made wait for a person: those holds are
/// denied and their unused approvals withdrawn, so no other key of the
/// agent can use them. Registering a discovered agent is no containment:
/// its approval stands.
fn holds_of_a_revoked_key_and_of_a_registered_discovery(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    policy(
        &api,
        json!({"name": "wires", "action_pattern": "wire.*", "decision": "step_up"}),
    );
    let bot = api.create_agent("wire-bot");
    let (key_id, key) =
        api.create_key(json!({"name": "sdk", "scopes": ["enforce"], "agent_id": bot}));
    let sdk = w.api(&key);
    let pending = enforce(
        &sdk,
        json!({"agent_id": bot, "tool_name": "wire.send", "tool_args": {"n": 1}}),
    );
    let approved = enforce(
        &sdk,
        json!({"agent_id": bot, "tool_name": "wire.send", "tool_args": {"n": 2}}),
    );
    let approved_id = approved["hold_id"].as_str().unwrap();
    let r = api.post(&format!("/api/v1/holds/{approved_id}/approve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    // A hold another key made stands.
    let (_, other_key) =
        api.create_key(json!({"name": "sdk 2", "scopes": ["enforce"], "agent_id": bot}));
    let other = w.api(&other_key);
    let kept = enforce(
        &other,
        json!({"agent_id": bot, "tool_name": "wire.send", "tool_args": {"n": 3}}),
    );

    let r = api.delete(&format!("/api/v1/api-keys/{key_id}"));
    assert_eq!(r.status, 204, "{}", r.text);
    let status = |hold: &Value| {
        let id = hold["hold_id"].as_str().unwrap();
        api.get(&format!("/api/v1/holds/{id}")).body["data"]["status"].clone()
    };
    assert_eq!(status(&pending), "denied");
    assert_eq!(status(&approved), "expired");
    assert_eq!(status(&kept), "pending");
    let id = pending["hold_id"].as_str().unwrap();
    api.post(&format!("/api/v1/holds/{id}/approve"), &json!({}))
        .error(409, "conflict");
    // Another key of the agent cannot use the withdrawn approval.
    let used = enforce(
        &other,
        json!({"agent_id": bot, "tool_name": "wire.send", "tool_args": {"n": 2},
               "hold_token": approved["hold_token"]}),
    );
    assert_eq!(used["decision"], "deny", "{used}");
    let story = api.get(&format!("/api/v1/audit?hold_id={id}&kind=hold_resolution"));
    assert!(
        story
            .text
            .contains("the key that made the call was revoked"),
        "{}",
        story.text
    );

    // Another agent's hold token is not known to a call of this agent, as
    // its poll is not found: the hold's state is not told.
    let foreign = enforce(
        &api,
        json!({"agent_id": "found-bot", "tool_name": "wire.send", "tool_args": {"n": 3},
               "hold_token": kept["hold_token"]}),
    );
    assert_eq!(foreign["decision"], "deny", "{foreign}");
    assert!(
        foreign["reason"]
            .as_str()
            .unwrap()
            .contains("the hold token is not known"),
        "{foreign}"
    );

    // A discovered agent registered while its call waits: the approval
    // given after is used.
    let call = json!({"agent_id": "found-bot", "tool_name": "wire.send"});
    let held = enforce(&api, call.clone());
    let found = held["agent_id"].as_str().unwrap();
    let r = api.patch(
        &format!("/api/v1/agents/{found}"),
        &json!({"status": "active"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let id = held["hold_id"].as_str().unwrap();
    let r = api.post(&format!("/api/v1/holds/{id}/approve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let mut again = call;
    again["hold_token"] = held["hold_token"].clone();
    let used = enforce(&api, again);
    assert_eq!(used["decision"], "allow", "{used}");

    // An approval whose policy changed with no request to withdraw it (an
    // older release's change, here written under the server) is withdrawn
    // by the background sweep.
    let rule = policy(
        &api,
        json!({"name": "old wires", "action_pattern": "old.*", "decision": "step_up"}),
    );
    let held = enforce(
        &api,
        json!({"agent_id": "found-bot", "tool_name": "old.send"}),
    );
    let id = held["hold_id"].as_str().unwrap();
    let r = api.post(&format!("/api/v1/holds/{id}/approve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    backend.sql(&format!(
        "UPDATE policies SET version = version + 1 WHERE id = '{rule}'"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s = api.get(&format!("/api/v1/holds/{id}")).body["data"]["status"].clone();
        if s != "approved" || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, "expired");
    let story = api.get(&format!("/api/v1/audit?hold_id={id}&kind=hold_resolution"));
    let withdrawal = story.body["data"][0].clone();
    assert_eq!(withdrawal["actor"], "system", "{}", story.text);
    assert!(
        withdrawal["detail"]["approval_withdrawn"].is_string(),
        "{}",
        story.text
    );
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], true, "{}", v.text);
}

/// A scheduled check walks only what was appended since its last answer:
/// from the anchor's record, which must still hold the anchor's hash.
fn verification_from_an_anchor(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let call = |i: usize| {
        enforce(
            &api,
            json!({"agent_id": "anchor-bot", "tool_name": format!("files.read{i}")}),
        )
    };
    for i in 0..4 {
        call(i);
    }
    let v = api.get("/api/v1/audit/verify").body["data"].clone();
    let (anchor, hash) = (
        v["head_sequence"].as_i64().unwrap(),
        v["head_hash"].as_str().unwrap().to_string(),
    );
    for i in 4..9 {
        call(i);
    }
    let from = |hash: &str| {
        let r = api.get(&format!(
            "/api/v1/audit/verify?anchor_sequence={anchor}&anchor_hash={hash}&from_anchor=true"
        ));
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["data"].clone()
    };
    let full = api.get("/api/v1/audit/verify").body["data"].clone();
    let head = full["head_sequence"].as_i64().unwrap();
    let since = from(&hash);
    assert_eq!(since["valid"], true, "{since}");
    assert_eq!(since["records_checked"], head - anchor + 1, "{since}");
    assert_eq!(since["head_hash"], full["head_hash"], "{since}");
    // Another hash at the anchor: the chain was rewritten there or before.
    let other = from(&"0".repeat(64));
    assert_eq!(other["valid"], false, "{other}");
    assert_eq!(other["first_break"]["sequence"], anchor, "{other}");
    assert_eq!(other["records_checked"], 0, "{other}");
    // A record before the anchor is the full walk's to find; one after it
    // is found from the anchor, the records before it counted.
    backend.sql(
        "UPDATE audit_log SET record = 'not json' WHERE environment = 'live' AND sequence = 2",
    );
    assert_eq!(from(&hash)["valid"], true);
    let v = api.get("/api/v1/audit/verify").body["data"].clone();
    assert_eq!(v["first_break"]["sequence"], 2, "{v}");
    backend.sql(&format!(
        "UPDATE audit_log SET record = 'not json' WHERE environment = 'live' AND sequence = {}",
        anchor + 2
    ));
    let since = from(&hash);
    assert_eq!(since["first_break"]["sequence"], anchor + 2, "{since}");
    assert_eq!(since["records_checked"], 2, "{since}");
    assert!(since["head_hash"].is_null(), "{since}");
    // The anchor's own record checked against its content.
    backend.sql(&format!(
        "UPDATE audit_log SET record = 'not json' WHERE environment = 'live' AND sequence = {anchor}"
    ));
    let since = from(&hash);
    assert_eq!(since["first_break"]["sequence"], anchor, "{since}");
    assert_eq!(since["records_checked"], 0, "{since}");
    let r = api.get("/api/v1/audit/verify?from_anchor=true");
    assert_eq!(r.error(400, "invalid_request")["field"], "from_anchor");
}

/// Calls of one session sent at once are decided one at a time, each on
/// the session as the calls before left it; a session counts every call
/// that ran, and keeps the latest 200 tools.
fn calls_of_a_session_are_decided_in_turn(backend: &Backend) {
    backend.init();
    let t = backend.create_unthrottled_org("Turns");
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    policy(
        &api,
        json!({"name": "once", "action_pattern": "once.pay", "decision": "deny",
        "condition": "'once.pay' in session.tools"}),
    );
    policy(
        &api,
        json!({"name": "no mail after crm", "action_pattern": "mail.send", "decision": "deny",
        "condition": "'crm.read' in session.tools"}),
    );
    policy(
        &api,
        json!({"name": "cap", "action_pattern": "cap.*", "decision": "deny",
        "condition": "session.calls >= 210"}),
    );
    let clients: Vec<Api> = (0..4).map(|_| api.clone_with_key()).collect();
    for round in 0..8 {
        let barrier = std::sync::Barrier::new(clients.len());
        let allowed = std::thread::scope(|s| {
            let runs: Vec<_> = clients
                .iter()
                .map(|c| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        enforce(
                            c,
                            json!({"agent_id": "turn-bot", "tool_name": "once.pay",
                            "session_id": format!("pay-{round}")}),
                        )["decision"]
                            == "allow"
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().unwrap())
                .filter(|allowed| *allowed)
                .count()
        });
        assert_eq!(
            allowed, 1,
            "round {round}: the first call of the session only"
        );
    }
    let call = |tool: &str| {
        enforce(
            &api,
            json!({"agent_id": "turn-bot", "tool_name": tool, "session_id": "long"}),
        )["decision"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(call("crm.read"), "allow");
    for i in 0..150 {
        assert_eq!(call(&format!("noise.{i}")), "allow");
    }
    assert_eq!(
        call("mail.send"),
        "deny",
        "crm.read is among the latest 200"
    );
    for i in 150..208 {
        assert_eq!(call(&format!("noise.{i}")), "allow");
    }
    // 209 calls ran: the next is the 210th; then the cap holds.
    assert_eq!(call("cap.a"), "allow");
    assert_eq!(call("cap.b"), "deny");
}

/// A suspension withdraws the agent's unused approvals however many of
/// its approvals were used before: a first page of used ones (listed
/// oldest first) once hid the unused ones after it.
fn used_approvals_do_not_hide_an_unused_one(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    policy(
        &api,
        json!({"name": "hold pay", "action_pattern": "pay.*", "decision": "step_up"}),
    );
    let agent = api.create_agent("payer");
    // 210 approvals used long ago, written as an older run would have left
    // them.
    backend.sql(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 210) \
         INSERT INTO holds (id, token_digest, org_id, environment, audit_id, agent_id, tool, \
         args_sha256, policy_id, policy_version, session_id, status, created_at, expires_at, \
         decided_by, decided_at, comment, redeemed_at) SELECT 'hld_used' || i, 'used' || i, \
         '{org}', 'live', 'aud_used' || i, '{agent}', 'pay.send', '', '', 1, NULL, 'approved', \
         1000 + i, 9000000000000, 'key_x', 2000 + i, NULL, 3000 + i FROM n",
        org = t.org_id
    ));
    let call = json!({"agent_id": agent, "tool_name": "pay.send", "tool_args": {"n": 1}});
    let unused = approved_redemption(&api, &call);
    let token = unused["hold_token"].as_str().unwrap();
    assert_eq!(hold_until(&api, token, 0)["status"], "approved");
    let r = api.patch(
        &format!("/api/v1/agents/{agent}"),
        &json!({"status": "suspended"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // Withdrawn by the suspension's own request.
    assert_eq!(hold_until(&api, token, 0)["status"], "expired");
}

/// An approval re-submitted after another rule came to hold the call (a
/// policy added above the one approved) is denied, says which rule holds
/// it now, and its record names the hold, as `?hold_id=` finds it.
fn a_rule_that_outranks_the_approved_one_is_named(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    policy(
        &api,
        json!({"name": "held", "action_pattern": "repro.x", "decision": "step_up"}),
    );
    let call = json!({"agent_id": "outranked-bot", "tool_name": "repro.x", "tool_args": {"a": 1}});
    let redeem = approved_redemption(&api, &call);
    let above = policy(
        &api,
        json!({"name": "above", "action_pattern": "repro.*", "decision": "step_up", "priority": 5}),
    );
    let d = enforce(&api, redeem);
    assert_eq!(d["decision"], "deny", "{d}");
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains("another rule holds the call"), "{d}");
    assert!(reason.contains(&above), "{d}");
    let rec = api.get(&format!(
        "/api/v1/audit/{}",
        d["audit_id"].as_str().unwrap()
    ));
    let hold = rec.body["data"]["hold_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(hold.starts_with("hld_"), "{}", rec.text);
    let listed = api.get(&format!("/api/v1/audit?hold_id={hold}"));
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(
        ids.contains(&d["audit_id"].as_str().unwrap()),
        "{}",
        listed.text
    );
}

/// An agent change made harmless in the database (its record edited) is
/// believed no more than a suspension: the approval given before it is
/// not used. Before, the edited record's "description changed" let the
/// approved call run.
fn an_edited_agent_change_withdraws_the_approval(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    policy(
        &api,
        json!({"name": "vault", "action_pattern": "vault.*", "decision": "step_up"}),
    );
    let held = enforce(
        &api,
        json!({"agent_id": "edited-bot", "tool_name": "vault.read"}),
    );
    assert_eq!(held["decision"], "step_up", "{held}");
    let agent = held["agent_id"].as_str().unwrap().to_string();
    approve_first_pending(&api);
    let r = api.patch(
        &format!("/api/v1/agents/{agent}"),
        &json!({"description": "harmless words"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    backend.sql(
        "UPDATE audit_log SET record = replace(record, 'harmless words', 'other words') \
         WHERE kind = 'agent_change' AND record LIKE '%harmless words%'",
    );
    // Its hash recomputed as the docs give it, the record is consistent
    // in itself; only its seal, which needs the master key, tells.
    let page = api.get("/api/v1/audit?kind=agent_change&limit=200&canonical=true");
    let edited = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["canonical"].as_str().unwrap().contains("other words"))
        .unwrap_or_else(|| panic!("{}", page.text))
        .clone();
    let sequence = edited["sequence"].as_u64().unwrap();
    let hash = warden_core::audit_chain::link_hash(
        edited["previous_hash"].as_str().unwrap(),
        sequence,
        edited["canonical"].as_str().unwrap().as_bytes(),
    );
    backend.sql(&format!(
        "UPDATE audit_log SET hash = '{hash}' WHERE id = '{}'",
        edited["id"].as_str().unwrap()
    ));
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(
        v.body["data"]["first_break"]["sequence"], sequence,
        "{}",
        v.text
    );
    let token = held["hold_token"].as_str().unwrap();
    let poll = thoth_poll(&api, &t.live_key, token);
    assert_eq!(poll["resolution"], "BLOCK", "{poll}");
}

/// A database writer who rewrites a record and recomputes the chain from
/// it to its end, head included, leaves a chain consistent in itself:
/// without the master key its records' seals are wrong, and verify names
/// the first rewritten record. A record stored without a seal (by a
/// release before seals) is sealed at the server's start.
fn a_chain_rewritten_in_the_database_is_named_by_its_seals(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    policy(
        &api,
        json!({"name": "no shell", "action_pattern": "shell.*", "decision": "deny"}),
    );
    for i in 0..6 {
        let tool = if i % 2 == 0 {
            "shell.exec"
        } else {
            "files.read"
        };
        enforce(&api, json!({"agent_id": "sealed-bot", "tool_name": tool}));
    }
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], true, "{}", v.text);
    let page = api.get("/api/v1/audit?limit=200&direction=asc&canonical=true");
    let records = page.body["data"].as_array().unwrap().clone();
    let last = records.len() as u64;
    assert!(last >= 7, "{}", page.text);
    let chain = format!("org_id = '{}' AND environment = 'live'", t.org_id);
    // Every record carries a seal, and a removed one is named.
    let unsealed = backend.sql(&format!(
        "SELECT count(*) FROM audit_log WHERE {chain} AND (seal IS NULL OR length(seal) <> 64)"
    ));
    assert_eq!(unsealed.trim(), "0");
    let kept = backend.sql(&format!(
        "SELECT seal FROM audit_log WHERE {chain} AND sequence = 2"
    ));
    if backend.is_postgres() {
        // PostgreSQL refuses a record without a seal (a replica of a
        // release before seals still writing); an insider drops that
        // constraint first.
        backend.sql(&format!(
            "DO $$ BEGIN UPDATE audit_log SET seal = NULL WHERE {chain} AND sequence = 2; \
             RAISE EXCEPTION 'a seal was removed'; \
             EXCEPTION WHEN check_violation THEN NULL; END $$"
        ));
        backend.sql("ALTER TABLE audit_log DROP CONSTRAINT audit_log_sealed");
    }
    backend.sql(&format!(
        "UPDATE audit_log SET seal = NULL WHERE {chain} AND sequence = 2"
    ));
    let v = api.get("/api/v1/audit/verify");
    let b = &v.body["data"]["first_break"];
    assert_eq!(b["sequence"], 2, "{}", v.text);
    assert!(
        b["reason"].as_str().unwrap().contains("no seal"),
        "{}",
        v.text
    );
    assert_eq!(v.body["data"]["records_checked"], 1, "{}", v.text);
    backend.sql(&format!(
        "UPDATE audit_log SET seal = '{}' WHERE {chain} AND sequence = 2",
        kept.trim()
    ));
    assert_eq!(api.get("/api/v1/audit/verify").body["data"]["valid"], true);
    // The first denial becomes an allowance; it and every record after it
    // are hashed again as the docs give the hash, and the head moved.
    let target = records
        .iter()
        .find(|r| r["decision"] == "deny")
        .expect("a denial");
    let from = target["sequence"].as_u64().unwrap();
    let mut previous = records[from as usize - 2]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    for r in &records[from as usize - 1..] {
        let sequence = r["sequence"].as_u64().unwrap();
        let mut text = r["canonical"].as_str().unwrap().to_string();
        if sequence == from {
            text = text.replace("\"decision\":\"deny\"", "\"decision\":\"allow\"");
        }
        let hash = warden_core::audit_chain::link_hash(&previous, sequence, text.as_bytes());
        let decision = if sequence == from {
            ", decision = 'allow'"
        } else {
            ""
        };
        backend.sql(&format!(
            "UPDATE audit_log SET record = '{}', previous_hash = '{previous}', hash = '{hash}'{decision} \
             WHERE {chain} AND sequence = {sequence}",
            text.replace('\'', "''")
        ));
        previous = hash;
    }
    backend.sql(&format!(
        "UPDATE audit_heads SET hash = '{previous}' WHERE {chain}"
    ));
    let v = api.get("/api/v1/audit/verify");
    let b = &v.body["data"]["first_break"];
    assert_eq!(v.body["data"]["valid"], false, "{}", v.text);
    assert_eq!(b["sequence"], from, "{}", v.text);
    assert_eq!(b["audit_id"], target["id"], "{}", v.text);
    assert!(
        b["reason"]
            .as_str()
            .unwrap()
            .contains("seal does not match"),
        "{}",
        v.text
    );
    assert_eq!(v.body["data"]["records_checked"], from - 1, "{}", v.text);
    // A seal removed is not given again at a restart: that would vouch
    // for the rewrite. Nor when the store's mark of being sealed is
    // removed too, while other records keep their seals.
    backend.sql(&format!(
        "UPDATE audit_log SET seal = NULL WHERE {chain} AND sequence >= {from}"
    ));
    let w = w.crash_and_restart(&backend.data_dir(0));
    let api = w.api(&t.live_key);
    let named = |api: &Api| {
        let v = api.get("/api/v1/audit/verify");
        assert_eq!(
            v.body["data"]["first_break"]["sequence"], from,
            "{}",
            v.text
        );
        assert!(
            v.body["data"]["first_break"]["reason"]
                .as_str()
                .unwrap()
                .contains("no seal"),
            "{}",
            v.text
        );
    };
    named(&api);
    // The operator's `warden audit seal` runs as the upgrade: with
    // SQLite, its server stopped (a running one keeps the data
    // directory's lock).
    let out = backend.cli(&["audit", "seal"]);
    if !backend.is_postgres() {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("in use"),
            "{out:?}"
        );
    }
    let run = |w: Warden| -> (std::process::Output, Warden) {
        if backend.is_postgres() {
            let out = backend.cli(&["audit", "seal", "--json"]);
            (out, w)
        } else {
            assert!(w.terminate().success());
            let out = backend.cli(&["audit", "seal", "--json"]);
            (out, Warden::start(backend, &[]))
        }
    };
    let refused = |w: Warden, why: &str| -> Warden {
        let (out, w) = run(w);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(
            said.contains("nothing was sealed") && said.contains(why),
            "{said}"
        );
        named(&w.api(&t.live_key));
        w
    };
    // Refused for a store marked sealed, and, its mark removed, for
    // records written after the store's schema began to seal.
    let w = refused(w, "was sealed before");
    backend.sql("DELETE FROM server_settings WHERE name = 'audit_seals'");
    // (A minute past the migration is taken for replicas' clocks: this
    // store's schema is set two minutes back, as a store's older than its
    // records is.)
    let version = seals_migration(backend);
    backend.sql(&format!(
        "UPDATE schema_migrations SET applied_at = applied_at - 120000 WHERE version = {version}"
    ));
    let w = refused(w, "written after this store's schema began to seal");
    // A store made to look like one of a release before seals (no record
    // sealed, no mark, its records older than the migration that brought
    // seals) is not sealed by a start: that would vouch for the rewrite.
    backend.sql(&format!(
        "UPDATE schema_migrations SET applied_at = (SELECT max(at) + 1 FROM audit_log) \
         WHERE version = {version}"
    ));
    backend.sql("UPDATE audit_log SET seal = NULL");
    let w = w.crash_and_restart(&backend.data_dir(0));
    let v = w.api(&t.live_key).get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["first_break"]["sequence"], 1, "{}", v.text);
    // Only the operator's `warden audit seal`, as the upgrade from such a
    // release, seals it (its rewritten records too: they predate the
    // sealing, as a forgery made before an upgrade would), reports every
    // chain's head to compare with anchors, marks it sealed, and new
    // records chain on.
    let (out, w) = run(w);
    let sealed = seal_report(&out);
    assert_eq!(sealed["sealed"], last, "{sealed}");
    assert_eq!(sealed["chains"][0]["head_sequence"], last, "{sealed}");
    let (out, w) = run(w);
    let api = w.api(&t.live_key);
    let again = seal_report(&out);
    assert_eq!(again["sealed"], 0, "{again}");
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], true, "{}", v.text);
    assert_eq!(v.body["data"]["records_checked"], last, "{}", v.text);
    enforce(
        &api,
        json!({"agent_id": "sealed-bot", "tool_name": "files.read"}),
    );
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["records_checked"], last + 1, "{}", v.text);
    let unsealed = backend.sql(&format!(
        "SELECT count(*) FROM audit_log WHERE {chain} AND seal IS NULL"
    ));
    assert_eq!(unsealed.trim(), "0");
}

/// An approval written only in the holds table (its working copy), with
/// no sealed record of who gave it, runs no call: neither the Thoth poll
/// nor a re-submission with the hold's token uses it.
fn an_approval_written_only_in_the_holds_table_is_not_used(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    policy(
        &api,
        json!({"name": "vault", "action_pattern": "vault.*", "decision": "step_up"}),
    );
    let call = json!({"agent_id": "forged-bot", "tool_name": "vault.read"});
    let held = enforce(&api, call.clone());
    assert_eq!(held["decision"], "step_up", "{held}");
    let token = held["hold_token"].as_str().unwrap().to_string();
    let forge = |hold_token: &str| {
        let hold = api.get(&format!("/api/v1/enforce/hold/{hold_token}"));
        let id = hold.body["data"]["hold_id"]
            .as_str()
            .or(hold.body["data"]["id"].as_str())
            .map(str::to_string);
        backend.sql(&format!(
            "UPDATE holds SET status = 'approved', decided_by = 'key_nobody', \
             decided_at = created_at + 1 WHERE {}",
            match id {
                Some(id) => format!("id = '{id}'"),
                None => "status = 'pending'".to_string(),
            }
        ));
    };
    forge(&token);
    let poll = thoth_poll(&api, &t.live_key, &token);
    assert_ne!(poll["resolution"], "ALLOW", "{poll}");
    assert!(poll.to_string().contains("no sealed record"), "{poll}");
    let held = enforce(&api, call.clone());
    let token = held["hold_token"].as_str().unwrap().to_string();
    forge(&token);
    let mut again = call.clone();
    again["hold_token"] = json!(token);
    let r = enforce(&api, again);
    assert_ne!(r["decision"], "allow", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("no sealed record"),
        "{r}"
    );
    // A hold made to take another's sealed approval (renamed to its id,
    // its decision copied) or another tool is refused too.
    let newest = || {
        backend
            .sql("SELECT id FROM holds ORDER BY created_at DESC, id DESC LIMIT 1")
            .trim()
            .to_string()
    };
    let approved = enforce(&api, call.clone());
    let approved_id = newest();
    approve_first_pending(&api);
    let other =
        json!({"agent_id": "forged-bot", "tool_name": "vault.write", "tool_args": {"big": 1}});
    let pending = enforce(&api, other.clone());
    let pending_id = newest();
    backend.sql(&format!(
        "UPDATE holds SET id = '{pending_id}x' WHERE id = '{pending_id}'"
    ));
    backend.sql(&format!(
        "UPDATE holds SET status = 'approved', \
         decided_by = (SELECT decided_by FROM holds WHERE id = '{approved_id}'), \
         decided_at = (SELECT decided_at FROM holds WHERE id = '{approved_id}') \
         WHERE id = '{pending_id}x'"
    ));
    backend.sql(&format!("DELETE FROM holds WHERE id = '{approved_id}'"));
    backend.sql(&format!(
        "UPDATE holds SET id = '{approved_id}' WHERE id = '{pending_id}x'"
    ));
    let mut again = other;
    again["hold_token"] = pending["hold_token"].clone();
    let r = enforce(&api, again);
    assert_ne!(r["decision"], "allow", "{r}");
    let _ = approved;
    let held = enforce(&api, call.clone());
    let held_id = newest();
    approve_first_pending(&api);
    backend.sql(&format!(
        "UPDATE holds SET tool = 'vault.write' WHERE id = '{held_id}'"
    ));
    let r = enforce(
        &api,
        json!({"agent_id": "forged-bot", "tool_name": "vault.write",
               "hold_token": held["hold_token"]}),
    );
    assert_ne!(r["decision"], "allow", "{r}");
    // Approved through the API, the same call runs.
    let held = enforce(&api, call.clone());
    let token = held["hold_token"].as_str().unwrap().to_string();
    approve_first_pending(&api);
    let mut again = call;
    again["hold_token"] = json!(token);
    assert_eq!(enforce(&api, again)["decision"], "allow");
}

/// What a successful `warden audit seal --json` reports.
fn seal_report(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The schema version that began sealing audit records.
fn seals_migration(backend: &Backend) -> i64 {
    if backend.is_postgres() {
        6
    } else {
        7
    }
}

/// A store of the release before seals (its schema taken back here) is
/// migrated and sealed by `warden audit seal`, run as the upgrade with
/// the servers stopped: every record verifies after it.
fn audit_seal_upgrades_a_store_from_before_seals(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    for i in 0..5 {
        enforce(
            &api,
            json!({"agent_id": "old-bot", "tool_name": format!("files.read{i}")}),
        );
    }
    assert!(w.terminate().success());
    if backend.is_postgres() {
        backend.sql("ALTER TABLE audit_log DROP CONSTRAINT audit_log_sealed");
    }
    let version = seals_migration(backend);
    backend.sql("DROP INDEX audit_log_unsealed");
    backend.sql("ALTER TABLE audit_log DROP COLUMN seal");
    backend.sql(&format!(
        "DELETE FROM schema_migrations WHERE version = {version}"
    ));
    backend.sql("DELETE FROM server_settings WHERE name = 'audit_seals'");
    let sealed = seal_report(&backend.cli(&["audit", "seal", "--json"]));
    assert_eq!(sealed["sealed"], 5, "{sealed}");
    let w = Warden::start(backend, &[]);
    let v = w.api(&t.live_key).get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], true, "{}", v.text);
    assert_eq!(v.body["data"]["records_checked"], 5, "{}", v.text);
}

on_every_backend!(
    audit_seal_upgrades_a_store_from_before_seals,
    an_approval_written_only_in_the_holds_table_is_not_used,
    a_chain_rewritten_in_the_database_is_named_by_its_seals,
    an_edited_agent_change_withdraws_the_approval,
    a_rule_that_outranks_the_approved_one_is_named,
    used_approvals_do_not_hide_an_unused_one,
    calls_of_a_session_are_decided_in_turn,
    verification_from_an_anchor,
    holds_of_a_revoked_key_and_of_a_registered_discovery,
    an_approval_racing_its_keys_revocation_is_not_used,
    holds_made_before_their_key_was_kept_are_judged_by_their_record,
    no_approval_is_used_after_its_time,
    approvals_never_outlive_a_racing_change,
    a_failed_anchor_comes_before_a_later_break,
    unrecorded_discoveries_are_taken_back,
    agent_changes_are_audited,
    failed_conditions_and_types_never_loosen,
    key_and_retention_changes_are_audited,
    policies_are_versioned_audited_and_checked,
    precedence_monitor_and_the_default,
    modify_redaction_and_dry_runs,
    bound_keys_and_discovered_agents,
    holds_resolve_once_expire_and_are_single_use,
    audit_filters_and_chain_verification,
    drift_rises_on_a_burst_and_falls_back,
    denied_and_held_calls_are_not_learned,
    audit_survives_kill_9_under_load,
    decisions_cannot_be_replayed_impersonated_or_made_costly,
    thoth_poll_checks_what_changed_since_the_approval,
    sessions_redaction_and_changes_stay_within_bounds,
);
