//! The real Thoth Python SDK (`aten-thoth`) against a running `warden
//! serve`: an allowed call runs, a denied one raises the SDK's policy
//! violation, a step-up waits until it is approved through Warden's own
//! API, and a modify changes the arguments the tool receives.
//!
//! Needs a Python with the SDK: `WARDEN_TEST_THOTH_PYTHON=/path/to/python`
//! (`.ci/run` installs it in a virtual environment).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Warden};
use serde_json::{json, Value};

fn sdk_agent_runs_against_warden(backend: &Backend) {
    let python = std::env::var("WARDEN_TEST_THOTH_PYTHON")
        .expect("WARDEN_TEST_THOTH_PYTHON must name a Python with aten-thoth installed");
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    for body in [
        json!({"name": "no drops", "action_pattern": "db.drop_*", "decision": "deny"}),
        json!({"name": "wires need a person", "action_pattern": "payments.*", "decision": "step_up",
               "condition": "args.amount > 10000 && context.tenant_id == 'acme'"}),
        json!({"name": "mail stays internal", "action_pattern": "mail.send", "decision": "modify",
               "modify": {"set": {"to": "security-review@example.com"}, "redact": ["body"]}}),
    ] {
        let r = api.post("/api/v1/policies", &body);
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let (_, sdk_key) = api.create_key(json!({"name": "support-bot sdk", "scopes": ["enforce"]}));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/thoth_agent.py");
    let mut agent = Command::new(python)
        .arg(script)
        .env("THOTH_API_URL", &w.base)
        .env("THOTH_API_KEY", &sdk_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");

    // Approve the step-up through Warden's own API once it is pending.
    let deadline = Instant::now() + Duration::from_secs(30);
    let hold = loop {
        let r = api.get("/api/v1/holds?status=pending");
        if let Some(h) = r.body["data"].as_array().and_then(|a| a.first()) {
            break h.clone();
        }
        assert!(Instant::now() < deadline, "no hold appeared");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(hold["tool"], "payments.wire");
    // The agent is still waiting: it has not received the wire.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the SDK waits for the approval"
    );
    let id = hold["id"].as_str().unwrap();
    let r = api.post(
        &format!("/api/v1/holds/{id}/approve"),
        &json!({"comment": "expected payout"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);

    let status = wait_for(&mut agent, Duration::from_secs(60));
    let mut out = String::new();
    agent
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status, "the SDK agent failed: {err}");
    let result: Value = serde_json::from_str(out.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {out} {err}"));

    assert_eq!(result["allowed"], "3 documents");
    assert_eq!(result["received"]["search_docs"]["query"], "access control");
    assert_eq!(result["denied"]["raised"], true, "{result}");
    assert!(result["denied"]["reason"]
        .as_str()
        .unwrap()
        .contains("no drops"));
    assert!(
        result["received"].get("db.drop_table").is_none(),
        "a denied tool never ran"
    );
    assert_eq!(result["step_up"], "wired");
    assert_eq!(result["received"]["payments.wire"]["amount"], 25000);
    assert_eq!(
        result["received"]["mail.send"]["to"],
        "security-review@example.com"
    );
    assert_eq!(result["received"]["mail.send"]["body"], "[REDACTED]");

    // The SDK's decisions are Warden's: discovered agent, audited, chained.
    let agents = api.get("/api/v1/agents?status=discovered");
    assert_eq!(agents.body["data"][0]["external_id"], "support-bot");
    let log = api.get("/api/v1/audit?kind=decision&limit=200");
    let decisions: Vec<&str> = log.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    for d in ["allow", "deny", "step_up", "modify"] {
        assert!(decisions.contains(&d), "{d} audited: {decisions:?}");
    }
    assert_eq!(log.body["data"][0]["user_id"], "alice");
    assert_eq!(api.get("/api/v1/audit/verify").body["data"]["valid"], true);

    // The SDK's own telemetry (sent to /v1/events/batch as the agent ran,
    // flushed at its exit) is searchable beside the decisions' events.
    let agent_id = agents.body["data"][0]["id"].as_str().unwrap().to_string();
    let search = |query: &str| {
        let r = api.post(
            "/api/v1/siem/search",
            &json!({"query": query, "limit": 100}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["data"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let sdk_events = loop {
        let found = search("program:thoth AND tool:search_docs");
        if found["total"].as_u64().unwrap() > 0 || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(sdk_events["total"].as_u64().unwrap() > 0, "{sdk_events}");
    let event = &sdk_events["events"][0];
    assert_eq!(event["source"], "agent");
    assert_eq!(event["agent_id"], agent_id.as_str());
    assert_eq!(event["fields"]["external_agent_id"], "support-bot");
    assert_eq!(event["fields"]["user_id"], "alice");
    assert!(event["fields"]["event_type"]
        .as_str()
        .unwrap()
        .starts_with("TOOL_CALL"));
    let denied = search(&format!(
        "program:warden AND agent_id:{agent_id} AND decision:deny"
    ));
    assert_eq!(denied["total"], 1, "{denied}");
    assert_eq!(denied["events"][0]["fields"]["tool"], "db.drop_table");
}

fn wait_for(child: &mut std::process::Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs the Thoth SDK: set WARDEN_TEST_THOTH_PYTHON"]
fn thoth_sdk_on_sqlite() {
    sdk_agent_runs_against_warden(&Backend::sqlite());
}

#[test]
#[ignore = "needs the Thoth SDK and PostgreSQL: set WARDEN_TEST_THOTH_PYTHON and WARDEN_TEST_DATABASE_URL"]
fn thoth_sdk_on_postgres() {
    sdk_agent_runs_against_warden(&Backend::postgres());
}
