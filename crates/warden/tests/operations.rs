//! Operating Warden: initialization, shutdown, durability across `kill -9`,
//! rate limits, readiness and metrics, through the real binary.

mod common;

use std::time::Duration;

use common::{Backend, CrashLoad, Warden};
use serde_json::json;

fn init_prints_one_json_object_and_refuses_twice(backend: &Backend) {
    // Settings init refuses leave nothing behind, so a corrected init
    // starts clean (before, the store was made and left empty).
    for refused in [
        &["init", "--org-name", ""][..],
        &["init", "--org-name", "Evil\nfake_line\u{1b}[31mred"],
        &["init", "--org-name", "A\u{202e}B"],
        &["init", "--plan", "custom"],
        &["init", "--plan", "custom", "--burst", "5"],
        &["init", "--master-key", "abc"],
    ] {
        let out = backend.cli(refused);
        assert_eq!(out.status.code(), Some(1), "{refused:?}");
        if refused.contains(&"--org-name") {
            let told = String::from_utf8_lossy(&out.stderr);
            assert!(told.contains("--org-name: name must"), "{told}");
            assert!(!told.contains('\u{1b}'), "{told}");
        }
        if !backend.is_postgres() {
            assert!(
                !backend.data_dir(0).join("warden.db").exists(),
                "{refused:?} made a store"
            );
        }
    }
    let out = backend.cli(&["init", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Asked for JSON, a command's standard error holds its error alone:
    // no log line of the migrations it made.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = backend.cli(&["init", "--json"]);
    assert_eq!(again.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&again.stderr).unwrap();
    assert!(error["error"]["message"].is_string(), "{error}");
    // A URL that demands TLS, which this build does not speak, is refused
    // at start in those words.
    if !backend.is_postgres() {
        for tls in [
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--redis-url",
                "rediss://127.0.0.1:6379",
            ][..],
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                "postgres://postgres@127.0.0.1:5432/postgres?sslmode=require",
            ],
        ] {
            let refused = backend.cli(tls);
            assert_eq!(refused.status.code(), Some(1), "{tls:?}: {refused:?}");
            let said = String::from_utf8_lossy(&refused.stderr);
            assert!(said.contains("without TLS"), "{tls:?}: {said}");
        }
        // A URL that is not one is told what the form is, never echoed.
        let refused = backend.cli(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            "http://user:S3CRET@127.0.0.1:6379",
        ]);
        assert_eq!(refused.status.code(), Some(1), "{refused:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("expected redis://"), "{said}");
        assert!(!said.contains("S3CRET"), "{said}");
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(stdout.trim()).expect("exactly one JSON object");
    let mut fields: Vec<_> = doc.as_object().unwrap().keys().cloned().collect();
    fields.sort();
    assert_eq!(fields, ["live_key", "organization_id", "test_key"]);
    assert!(doc["live_key"].as_str().unwrap().starts_with("wdn_live_"));
    assert!(doc["test_key"].as_str().unwrap().starts_with("wdn_test_"));
    assert!(doc["organization_id"].as_str().unwrap().starts_with("org_"));

    let again = backend.cli(&["init", "--json"]);
    assert!(!again.status.success());
    assert!(again.stdout.is_empty());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialized"));
    let orgs = backend.cli(&["org", "list", "--json"]);
    let orgs: serde_json::Value = serde_json::from_slice(&orgs.stdout).unwrap();
    assert_eq!(
        orgs.as_array().unwrap().len(),
        1,
        "the second init changed nothing"
    );
    assert_eq!(orgs[0]["plan"], "enterprise", "{orgs}");
    // WARDEN_JSON takes the usual ways of saying yes and no.
    for yes in ["1", "true", "yes", "on"] {
        let out = backend.cli_with_env(&["org", "list"], &[("WARDEN_JSON", yes)]);
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("WARDEN_JSON={yes} printed no JSON: {e}"));
        assert_eq!(listed, orgs, "WARDEN_JSON={yes}");
    }
    for no in ["0", "false", "no", "off"] {
        let out = backend.cli_with_env(&["org", "list"], &[("WARDEN_JSON", no)]);
        assert!(out.status.success(), "WARDEN_JSON={no}");
        assert!(
            serde_json::from_slice::<serde_json::Value>(&out.stdout).is_err(),
            "WARDEN_JSON={no} printed JSON"
        );
    }
    let unclear = backend.cli_with_env(&["org", "list"], &[("WARDEN_JSON", "maybe")]);
    assert_eq!(unclear.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unclear.stderr).contains("maybe"));
    // The first keys still work.
    let w = Warden::start(backend, &[]);
    assert_eq!(
        w.api(doc["live_key"].as_str().unwrap())
            .get("/api/v1/agents")
            .status,
        200
    );
    assert!(
        w.stdout.lock().unwrap().iter().all(|l| !l.contains("wdn_")),
        "an initialized store prints no keys"
    );
}

fn serve_initializes_an_empty_store(backend: &Backend) {
    // An address in use is found before a new store's keys are made: they
    // are shown once, and a start that fails must not spend them.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    // Without a master key given, as a first start on a laptop runs.
    let refused = backend.cli_without_master_key(&["serve", "--listen", &address]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(!said.contains("live: "), "{said}");
    let why = String::from_utf8_lossy(&refused.stderr);
    // Two of its own addresses on one port are found as well.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().to_string();
    drop(free);
    let clash =
        backend.cli_without_master_key(&["serve", "--listen", &port, "--syslog-tcp", &port]);
    assert!(!clash.status.success());
    assert!(
        String::from_utf8_lossy(&clash.stderr).contains("cannot listen for syslog on tcp"),
        "{}",
        String::from_utf8_lossy(&clash.stderr)
    );
    assert!(
        why.contains(&format!("cannot listen on {address}")),
        "{why}"
    );
    // Nor does it make a store or a master key that a later start would
    // find: it fails before the store is opened.
    for made in ["warden.db", "master.key"] {
        let path = backend.data_dir(0).join(made);
        assert!(!path.exists(), "{} was left behind", path.display());
    }
    drop(taken);
    let w = Warden::start(backend, &[]);
    // With SQLite the server creates the data dir, for its owner only.
    #[cfg(unix)]
    if !backend.is_postgres() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::fs::metadata(backend.data_dir(0))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir & 0o777, 0o700, "the data dir is private");
    }
    let lines = w.stdout.lock().unwrap().clone();
    let live = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("live: "))
        .expect("serve prints the live admin key on first start")
        .to_string();
    assert!(
        lines.iter().any(|l| l.contains("/docs")),
        "and the API reference URL"
    );
    assert_eq!(w.api(&live).get("/api/v1/agents").status, 200);
    let again = backend.cli(&["init"]);
    assert!(!again.status.success(), "serve initialized it already");
}

fn sigterm_finishes_and_exits_zero(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    api.create_agent("before-shutdown");
    // An upload that stops sending does not hold the shutdown: it has a
    // drain time, well within `terminate`'s 20 s.
    let address = w.base.trim_start_matches("http://").to_string();
    let mut stalled = std::net::TcpStream::connect(&address).unwrap();
    let head = format!(
        "POST /api/v1/events/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[",
        t.live_key
    );
    std::io::Write::write_all(&mut stalled, head.as_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let status = w.terminate();
    assert_eq!(status.code(), Some(0));
    drop(stalled);
    let w = Warden::start(backend, &[]);
    assert_eq!(w.api(&t.live_key).agent_ids().len(), 1);
}

fn acknowledged_writes_survive_kill_9(backend: &Backend) {
    backend.init();
    let t = backend.create_unthrottled_org("Load");
    let w = Warden::start(backend, &[]);
    // Four writers create agents as fast as they can; the server is killed
    // while they run. Every 201 must be there after the restart.
    let load = CrashLoad::start(
        &w.base,
        &t.live_key,
        4,
        "/api/v1/agents",
        201,
        "/data/id",
        |w, n| json!({"name": format!("w{w}-{n}")}),
    );
    std::thread::sleep(Duration::from_millis(700));
    let w = w.crash_and_restart(&backend.data_dir(0));
    let acked = load.acknowledged();
    assert!(acked.len() > 10, "the load ran ({} writes)", acked.len());
    let stored: std::collections::HashSet<String> =
        w.api(&t.live_key).agent_ids().into_iter().collect();
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged agents lost: {lost:?}",
        lost.len()
    );
}

/// `warden org update`: a plan (its rate limit) and a name change at the
/// console, audited, and running servers apply them within a second; a
/// name is taken once.
fn an_organization_is_renamed_and_changes_plan(backend: &Backend) {
    backend.init();
    let org = backend.create_org("Growing Co", &[]);
    let w = Warden::start(backend, &[]);
    let api = w.api(&org.live_key);
    assert_eq!(
        api.get("/api/v1/agents").header("x-ratelimit-limit"),
        Some("60")
    );
    let refused = |args: &[&str], says: &str| {
        let out = backend.cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains(says), "{args:?}: {err}");
    };
    // One name, case aside, is one organization.
    refused(&["org", "create", "growing co"], "exists");
    // A change is named, or it is a usage error.
    let out = backend.cli(&["org", "update", &org.org_id]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    refused(
        &["org", "update", "org_nonexistent", "--plan", "professional"],
        "no organization",
    );
    // Limits of its own need the custom plan.
    refused(
        &[
            "org",
            "update",
            &org.org_id,
            "--rate-limit-per-minute",
            "5",
            "--burst",
            "5",
        ],
        "custom",
    );
    refused(&["org", "update", &org.org_id, "--name", " "], "--name");
    // Throttled under its plan, it is served once the raised plan applies.
    let mut throttled = false;
    for _ in 0..20 {
        if api.get("/api/v1/agents").status == 429 {
            throttled = true;
            break;
        }
    }
    assert!(throttled);
    let out = backend.cli(&[
        "org",
        "update",
        &org.org_id,
        "--plan",
        "professional",
        "--name",
        "Grown Co",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let changed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(changed["changed"], true);
    assert_eq!(changed["name"], "Grown Co");
    assert_eq!(changed["plan"], "professional");
    assert_eq!(changed["rate_limit_per_minute"], 600);
    // The running server applies it within a second, the starter plan's
    // ten seconds of debt ended.
    std::thread::sleep(Duration::from_millis(1100));
    let r = api.get("/api/v1/agents");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-ratelimit-limit"), Some("600"));
    // A custom limit, kept by a later rename.
    let out = backend.cli(&[
        "org",
        "update",
        &org.org_id,
        "--plan",
        "custom",
        "--rate-limit-per-minute",
        "6000",
        "--burst",
        "700",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = backend.cli(&["org", "update", &org.org_id, "--name", "Big Co", "--json"]);
    let changed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(changed["plan"], "custom", "{changed}");
    assert_eq!(changed["rate_limit_per_minute"], 6000);
    assert_eq!(changed["burst"], 700);
    // The same again changes nothing and records nothing.
    let out = backend.cli(&["org", "update", &org.org_id, "--name", "Big Co"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("unchanged"));
    let out = backend.cli(&["org", "update", &org.org_id, "--name", "Big Co", "--json"]);
    let same: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(same["changed"], false);
    // Each change is in the organization's live chain, by the console
    // (read once the custom limit applies: the bucket was emptied above).
    std::thread::sleep(Duration::from_millis(1100));
    let r = api.get("/api/v1/audit?kind=setting_change&actor=cli");
    assert_eq!(r.status, 200, "{}", r.text);
    let records = r.body["data"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{}", r.text);
    let reasons: Vec<&str> = records
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("plan starter (60/min, burst 10)")
                && r.contains("\"Grown Co\", plan professional")),
        "{reasons:?}"
    );
    assert_eq!(api.get("/api/v1/audit/verify").body["data"]["valid"], true);
    // The list says the new name; the old one is free again.
    let out = backend.cli(&["org", "list", "--json"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains("Big Co") && !listed.contains("Grown Co"),
        "{listed}"
    );
    backend.create_org("Growing Co", &[]);
    // Two updates at once both apply, whichever commits first, and each
    // record starts from what the one before it left.
    for round in 0..4 {
        let name = format!("Race {round}");
        let plan = ["professional", "enterprise"][round % 2];
        let (renamed, replanned) = std::thread::scope(|s| {
            let a = s.spawn(|| backend.cli(&["org", "update", &org.org_id, "--name", &name]));
            let b = s.spawn(|| backend.cli(&["org", "update", &org.org_id, "--plan", plan]));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(renamed.status.success(), "{renamed:?}");
        assert!(replanned.status.success(), "{replanned:?}");
        let out = backend.cli(&["org", "list", "--json"]);
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let now = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == org.org_id.as_str())
            .unwrap();
        assert_eq!(now["name"], name.as_str(), "{now}");
        assert_eq!(now["plan"], plan, "{now}");
    }
    let r = api.get("/api/v1/audit?kind=setting_change&actor=cli&limit=200");
    let mut records = r.body["data"].as_array().unwrap().clone();
    records.sort_by_key(|r| r["sequence"].as_i64().unwrap());
    for pair in records.windows(2) {
        assert_eq!(
            pair[1]["detail"]["from"], pair[0]["detail"]["to"],
            "{}",
            r.text
        );
    }
    assert_eq!(records.len(), 3 + 8, "{}", r.text);
    // Of a rename and a creation at once to one name (case aside), one
    // takes it.
    for round in 0..4 {
        let name = format!("Taken {round}");
        let lower = name.to_lowercase();
        let (renamed, created) = std::thread::scope(|s| {
            let a = s.spawn(|| backend.cli(&["org", "update", &org.org_id, "--name", &name]));
            let b = s.spawn(|| backend.cli(&["org", "create", &lower]));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!(
            u8::from(renamed.status.success()) + u8::from(created.status.success()),
            1,
            "{renamed:?} {created:?}"
        );
    }
    // Two names one but for case, made by a release before names were
    // taken once: each can still change its plan.
    let pair = backend.create_org("Pair", &[]);
    let other = backend.create_org("Pair two", &[]);
    backend.sql(&format!(
        "UPDATE organizations SET name = 'PAIR' WHERE id = '{}'",
        other.org_id
    ));
    for id in [&pair.org_id, &other.org_id] {
        let out = backend.cli(&["org", "update", id, "--plan", "professional"]);
        assert!(out.status.success(), "{out:?}");
    }
    // A name another organization takes is refused, case aside.
    refused(
        &["org", "update", &org.org_id, "--name", "GROWING co"],
        "exists",
    );
    drop(w);
}

fn rate_limits_refuse_and_change_nothing(backend: &Backend) {
    backend.init();
    let org = backend.create_org(
        "Tiny",
        &[
            "--plan",
            "custom",
            "--rate-limit-per-minute",
            "1",
            "--burst",
            "3",
        ],
    );
    let starter = backend.create_org("Starter Co", &[]);
    let w = Warden::start(backend, &[]);
    let api = w.api(&org.live_key);
    for expected_remaining in [2, 1, 0] {
        let r = api.get("/api/v1/agents");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ratelimit-limit"), Some("1"));
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some(expected_remaining.to_string().as_str())
        );
        let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!(reset > 1_700_000_000, "Unix seconds");
    }
    let r = api.post("/api/v1/agents", &json!({"name": "over-the-limit"}));
    r.error(429, "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // The same wait in milliseconds, which whole seconds round up.
    let retry_ms: u64 = r.header("retry-after-ms").unwrap().parse().unwrap();
    assert!(
        retry_ms > (retry - 1) * 1000 && retry_ms <= retry * 1000,
        "Retry-After-Ms {retry_ms} beside {retry} s"
    );
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    // The limit is the organization's, shared by both environments.
    w.api(&org.test_key)
        .get("/api/v1/agents")
        .error(429, "rate_limited");
    // Another organization is not affected, and the refused write did not happen.
    let other = w.api(&starter.live_key);
    let r = other.get("/api/v1/agents");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), Some("60"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("9"));
    assert!(
        !backend.raw_contents().contains("over-the-limit"),
        "the refused write was not stored"
    );
    let scraped = w.anonymous().get("/metrics");
    // Said to be what it is: the OpenMetrics text format (`# EOF`).
    assert_eq!(
        scraped.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(scraped.text.trim_end().ends_with("# EOF"));
    let metrics = scraped.text;
    assert!(metrics.contains("warden_rate_limited_total 2"), "{metrics}");
    // Which build answers, as `--version` says it.
    let build = format!(
        r#"warden_build_info{{version="{}",commit="{}"}} 1"#,
        env!("CARGO_PKG_VERSION"),
        built_from()
    );
    assert!(metrics.contains(&build), "{build} in {metrics}");
    assert!(metrics.contains(r#"route="/api/v1/agents",status="429""#));
    let out = backend.cli(&["org", "create", "Bad", "--plan", "custom"]);
    assert!(!out.status.success(), "custom needs limits");
    let out = backend.cli(&[
        "org",
        "create",
        "Bad",
        "--plan",
        "custom",
        "--rate-limit-per-minute",
        "60000001",
        "--burst",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("60000000"),
        "the bound is named"
    );
    let out = backend.cli(&[
        "org",
        "create",
        "Bad",
        "--plan",
        "starter",
        "--rate-limit-per-minute",
        "5",
        "--burst",
        "1",
    ]);
    assert!(
        !out.status.success(),
        "explicit limits need the custom plan"
    );
}

fn redis_unreachable_falls_back_to_local_limits(backend: &Backend) {
    let t = backend.init();
    // Nothing listens on port 1.
    let w = Warden::start(backend, &["--redis-url", "redis://127.0.0.1:1"]);
    let api = w.api(&t.live_key);
    for _ in 0..5 {
        let r = api.get("/api/v1/agents");
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.header("x-ratelimit-remaining").is_some());
    }
    let ready = w.anonymous().get("/readyz");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["status"], "degraded");
    assert_eq!(ready.body["checks"]["redis"], "unreachable");
    assert_eq!(ready.body["checks"]["rate_limits"], "local_fallback");
    let metrics = w.anonymous().get("/metrics").text;
    assert!(metrics.contains("warden_redis_up 0"), "{metrics}");
    assert!(metrics.contains("warden_rate_limit_fallback_total"));
}

fn metrics_and_request_ids(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &["--log-format", "json"]);
    let api = w.api(&t.live_key);
    let id = api.create_agent("m");
    api.get(&format!("/api/v1/agents/{id}"));
    let r = api.get("/api/v1/agents/agt_nope");
    let request_id = r.error(404, "not_found")["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let metrics = w.anonymous().get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains(
            r#"warden_http_requests_total{method="GET",route="/api/v1/agents/{id}",status="200"} 1"#
        ),
        "{}",
        metrics.text
    );
    assert!(metrics
        .text
        .contains(r#"route="/api/v1/agents/{id}",status="404""#));
    assert!(metrics
        .text
        .contains("warden_http_request_duration_seconds_bucket"));
    // Each audit batch's commit is timed and its records counted, and each
    // record's wait for its batch is timed: three decisions one after
    // another are at least three batches and three waits.
    let sample = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let before = w.anonymous().get("/metrics").text;
    for _ in 0..3 {
        let r = api.post(
            "/api/v1/enforce",
            &serde_json::json!({"agent_id": "m-bot", "tool_name": "files.read"}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let after = w.anonymous().get("/metrics").text;
    for name in [
        "warden_audit_commit_seconds_count",
        "warden_audit_commit_records_sum",
        "warden_audit_queued_seconds_count",
    ] {
        assert!(
            sample(&after, name) - sample(&before, name) >= 3.0,
            "{name}: {after}"
        );
    }
    assert!(sample(&after, "warden_audit_commit_seconds_sum") > 0.0);
    // Logs are JSON lines carrying request ids, and never a key.
    let status = w.terminate();
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(common::log_path(&backend.data_dir(0))).unwrap();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
    assert!(!log.contains(&t.live_key[9..]));
    let _ = request_id;
}

/// `--help` documents every variable but shows no value that may hold a
/// secret.
#[test]
fn help_never_shows_secrets_from_the_environment() {
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--help"])
        .env(
            "WARDEN_DATABASE_URL",
            "postgres://warden:db-secret@db/warden",
        )
        .env("WARDEN_REDIS_URL", "redis://:redis-secret@cache:6379")
        .env("WARDEN_MASTER_KEY", "ab".repeat(32))
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("WARDEN_DATABASE_URL") && help.contains("WARDEN_LISTEN"));
    for secret in ["db-secret", "redis-secret", &"ab".repeat(32)] {
        assert!(!help.contains(secret), "--help shows {secret}");
    }
}

/// Without WARDEN_MASTER_KEY the key lives in a private file, and a process
/// holding another key refuses to touch the store.
/// `warden ARGS --data-dir DATA` with the tests' master key.
fn console(args: &[&str], data: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(common::BIN);
    command
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("WARDEN_MASTER_KEY", common::MASTER_KEY);
    command
}

/// sqlx warns of a connection parameter it does not know with its value:
/// whatever level `RUST_LOG` sets, a secret there is never logged.
#[test]
fn a_database_url_secret_is_not_logged_at_any_level() {
    let dir = tempfile::tempdir().unwrap();
    for level in [
        "info",
        "debug",
        "warn",
        "sqlx=trace",
        "sqlx_postgres::options=warn",
    ] {
        let out = console(
            &[
                "org",
                "list",
                "--database-url",
                "postgres://postgres@127.0.0.1:1/x?sslpassword=Hunter2Pw&secret_token=Hunter3Pw",
            ],
            &dir.path().join("data"),
        )
        .env("RUST_LOG", level)
        .output()
        .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !said.contains("Hunter2Pw") && !said.contains("Hunter3Pw"),
            "{level}: {said}"
        );
    }
}

/// A console command other than `init` and `serve` on a directory with no
/// store says so, and leaves nothing there.
#[test]
fn console_commands_refuse_a_directory_without_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo");
    for args in [
        &["org", "list"][..],
        &["org", "create", "X"],
        &["keys", "list", "--org", "org_x"],
        &["reindex"],
    ] {
        let out = console(args, &typo).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains("no Warden store in"), "{args:?}: {said}");
        assert!(!typo.exists(), "{args:?} left something there");
    }
    // A start that fails takes away the directory it made, lock file and
    // all (PostgreSQL out of reach: nothing else was written there).
    let unreachable = || {
        console(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                "postgres://postgres@127.0.0.1:1/none",
            ],
            &typo,
        )
        .output()
        .unwrap()
    };
    let out = unreachable();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!typo.exists(), "serve left {typo:?}");
    // One it did not make stays, as it was.
    std::fs::create_dir(&typo).unwrap();
    let out = unreachable();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(typo.is_dir());
}

/// `--version` names the schema a store is brought to, as the store
/// records it: two builds of one version number are told apart.
#[test]
fn the_version_names_the_schema() {
    let out = std::process::Command::new(common::BIN)
        .arg("--version")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let sqlite: String = said
        .split("SQLite ")
        .nth(1)
        .unwrap_or_else(|| panic!("{said}"))
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(said.contains(", PostgreSQL "), "{said}");
    let backend = Backend::sqlite();
    backend.init();
    let stored = backend.sql("SELECT MAX(version) FROM schema_migrations");
    assert_eq!(stored.trim(), sqlite, "{said}");
    // And the commit the build was made from, as git names it.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|h| h.status.success());
    if let Some(head) = head {
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert_eq!(built_from(), head, "{said}");
    }
}

/// The commit `--version` names.
fn built_from() -> String {
    let out = std::process::Command::new(common::BIN)
        .arg("--version")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    said.split("(commit ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("{said}"))
        .to_string()
}

/// A PostgreSQL server that does not vacuum and analyze on its own is
/// named in the log at start, and only such a server.
fn a_server_without_autovacuum_is_named(backend: &Backend) {
    if !backend.is_postgres() {
        return;
    }
    backend.init();
    let w = Warden::start(backend, &[]);
    drop(w);
    let log = std::fs::read_to_string(common::log_path(&backend.data_dir(0))).unwrap();
    let off = backend.sql("SHOW autovacuum").trim() == "off";
    assert_eq!(log.contains("autovacuum is off"), off, "{log}");
    // A console command leaves it to the servers.
    let out = backend.cli(&["org", "list"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("autovacuum"),
        "{out:?}"
    );
}

/// A store of an older release is migrated only by `serve` (and by
/// `reindex`, run with the servers stopped): another command of this
/// release, `init` included (run to look, with a server of that release
/// still running), says so and leaves it at its version, so that the
/// older release can still start on it.
fn an_older_store_is_migrated_only_by_serve(backend: &Backend) {
    let t = backend.init();
    // The store as the release before the last migration left it.
    let last = backend.sql("SELECT MAX(version) FROM schema_migrations");
    let last = last.trim();
    backend.sql(&format!(
        "DELETE FROM schema_migrations WHERE version = {last}"
    ));
    for args in [
        &["org", "list"][..],
        &["keys", "list", "--org", &t.org_id],
        &[
            "keys",
            "create",
            "--org",
            &t.org_id,
            "--name",
            "n",
            "--scope",
            "agents.read",
        ],
    ] {
        let out = backend.cli(args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains("older than this release's")
                && said.contains("does not migrate it")
                && said.contains("warden audit seal"),
            "{args:?}: {said}"
        );
    }
    // `init` on it changes nothing either: it is initialized already.
    let out = backend.cli(&["init"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("made by an older release"), "{said}");
    let now = backend.sql("SELECT MAX(version) FROM schema_migrations");
    assert_ne!(now.trim(), last, "a console command migrated the store");
}

/// Another application's database, or an empty one, is left as it was by
/// every command that makes no store: nothing migrated into it, its
/// files' modes unchanged.
fn a_database_without_a_store_is_left_as_it_was(backend: &Backend) {
    std::fs::create_dir_all(backend.data_dir(0)).unwrap();
    backend.sql("CREATE TABLE customer_orders (id INTEGER PRIMARY KEY)");
    let file = backend.data_dir(0).join("warden.db");
    let mode = || {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&file)
            .map(|m| m.permissions().mode() & 0o777)
            .ok()
    };
    let before = mode();
    let says = if backend.is_postgres() {
        "no Warden store in this database"
    } else {
        "is not a Warden store"
    };
    for args in [
        &["org", "list"][..],
        &["org", "create", "X"],
        &["keys", "list", "--org", "org_x"],
        &["keys", "revoke", "key_x"],
    ] {
        let out = backend.cli(args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains(says), "{args:?}: {said}");
    }
    let tables = if backend.is_postgres() {
        "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'"
    } else {
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
    };
    assert_eq!(backend.sql(tables).trim(), "1");
    assert_eq!(mode(), before);
    // Another tool's record of its migrations: not a store to the console,
    // and no place for one to `init` and `serve`.
    backend.sql("CREATE TABLE schema_migrations (version INTEGER, dirty INTEGER)");
    backend.sql("INSERT INTO schema_migrations VALUES (5, 0)");
    for args in [&["org", "list"][..], &["reindex"]] {
        let out = backend.cli(args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains(says), "{args:?}: {said}");
    }
    for args in [&["init"][..], &["serve", "--listen", "127.0.0.1:0"]] {
        let out = backend.cli(args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains("another application's"), "{args:?}: {said}");
    }
    assert_eq!(backend.sql(tables).trim(), "2");
    assert_eq!(mode(), before);
    assert!(
        !backend.data_dir(0).join("index").exists(),
        "reindex made an index"
    );
}

/// A console command that waited its five seconds behind another
/// process's write lock says so, not that the directory may be unwritable.
#[test]
fn a_console_command_behind_another_writer_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(console(&["init"], &data).output().unwrap().status.success());
    let mut holder = common::hold_write_lock(&data.join("warden.db"));
    let out = console(&["org", "list"], &data).output().unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("another process holds the database's write lock"),
        "{said}"
    );
    assert!(!said.contains("writable"), "{said}");
    assert!(console(&["org", "list"], &data)
        .output()
        .unwrap()
        .status
        .success());
}

/// A standard error that cannot take the log or the last error line (a
/// full disk) changes nothing of what a command does or its exit code.
#[test]
fn a_standard_error_that_cannot_be_written_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let full = || std::fs::File::create("/dev/full").unwrap();
    let out = console(&["init", "--json"], &data)
        .env("RUST_LOG", "debug")
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(made["live_key"].is_string(), "{made}");
    let out = console(&["org", "list"], &dir.path().join("typo"))
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = console(&["serve", "--listen", "notanaddr"], &data)
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // Standard error a pipe whose reader is gone: the revocation is done
    // and said, not cut short by the first log line.
    let org = made["organization_id"].as_str().unwrap();
    let key = console(
        &[
            "keys",
            "create",
            "--org",
            org,
            "--name",
            "k",
            "--scope",
            "agents.read",
            "--json",
        ],
        &data,
    )
    .output()
    .unwrap();
    let key: serde_json::Value = serde_json::from_slice(&key.stdout).unwrap();
    let id = key["id"].as_str().unwrap();
    let mut revoke = console(&["keys", "revoke", id], &data)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(revoke.stderr.take());
    let out = revoke.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Revoked key"),
        "{out:?}"
    );
    let listed = console(&["keys", "list", "--org", org, "--json"], &data)
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let status = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .map(|k| k["status"].clone());
    assert_eq!(status, Some(serde_json::json!("revoked")), "{listed}");
}

/// A `warden.db` that is another program's is left as it was: a file
/// SQLite does not read is named as one, and one holding another
/// application's tables beside an empty record of migrations is no place
/// for `init`.
#[test]
fn another_programs_warden_db_is_left_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    std::fs::create_dir(&text).unwrap();
    std::fs::write(text.join("warden.db"), "hello\n".repeat(1000)).unwrap();
    std::fs::set_permissions(
        text.join("warden.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    for args in [
        &["keys", "list", "--org", "org_x"][..],
        &["reindex"],
        &["init"],
    ] {
        let out = console(args, &text).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains("is not a SQLite database"),
            "{args:?}: {said}"
        );
        let mode = std::fs::metadata(text.join("warden.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{args:?} changed the mode");
        assert!(!text.join("index").exists(), "{args:?} made an index");
    }
    // A directory where the file would be.
    let nested = dir.path().join("nested");
    std::fs::create_dir_all(nested.join("warden.db")).unwrap();
    std::fs::set_permissions(
        nested.join("warden.db"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let out = console(&["org", "list"], &nested).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("is not a file"), "{said}");
    let mode = std::fs::metadata(nested.join("warden.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "its mode changed");
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    let script = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nc.executescript('CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL); CREATE TABLE users (id INTEGER)')";
    let made = std::process::Command::new("python3")
        .args(["-c", script, &app.join("warden.db").display().to_string()])
        .status()
        .unwrap();
    assert!(made.success());
    let out = console(&["init"], &app).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("another application's"), "{said}");
}

/// A key pasted where an id, a name or an address goes is not echoed by
/// the console's errors, its usage errors included.
#[test]
fn console_errors_do_not_echo_a_pasted_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = "wdn_live_KI2fQ8mXr4Tn6bW1yZk3Hc9Lp5Df7Gs0Ja2Ue4VyepX";
    assert!(console(&["init"], &data).output().unwrap().status.success());
    for (args, code) in [
        (&["keys", "revoke", key][..], 1),
        (&["keys", "list", "--org", key], 1),
        (&["serve", "--listen", key], 2),
    ] {
        let out = console(args, &data).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {said}");
        assert!(!said.contains("KI2fQ8m"), "{args:?}: {said}");
        assert!(said.contains("[REDACTED]"), "{args:?}: {said}");
    }
    // Help still goes to standard output, whole.
    let out = console(&["keys", "--help"], &data).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoke"));
}

/// A malformed address or proxy range is a usage error (exit 2) that
/// makes nothing; a console command whose reader stops early ends quietly.
#[test]
fn malformed_flags_are_usage_errors_and_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for flags in [
        &["--listen", "notanaddr"][..],
        &["--listen", "127.0.0.1:99999"],
        &["--listen", "::1:8080"],
        &["--syslog-udp", "bad"],
        &["--syslog-tcp", "host: 514"],
        &["--trusted-proxy", "notacidr"],
        &["--trusted-proxy", "10.0.0.0/8,10.0.0.0/99"],
    ] {
        let out = console(&[&["serve"][..], flags].concat(), &data)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {out:?}");
        assert!(!data.exists(), "{flags:?} made a store");
    }
    let init = console(&["init", "--json"], &data).output().unwrap();
    assert!(init.status.success(), "{init:?}");
    let create = [
        "keys",
        "create",
        "--org",
        "org_x",
        "--name",
        "n",
        "--scope",
        "agents.read",
    ];
    for (flag, value) in [
        ("--expires-at", "tomorrow"),
        ("--expires-at", "2030-01-01"),
        ("--allowed-cidr", "999.1.1.1/8"),
        ("--allowed-cidr", "10.0.0.0/8,notacidr"),
    ] {
        let out = console(&[&create[..], &[flag, value]].concat(), &data)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {said}");
        assert!(said.contains(flag), "{flag} {value}: {said}");
    }
    let mut child = console(&["org", "list"], &data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command prints.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{out:?}");
}

#[test]
fn master_key_file_is_private_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str], key: Option<&str>| {
        let mut cmd = std::process::Command::new(common::BIN);
        cmd.args(args)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("WARDEN_MASTER_KEY");
        if let Some(key) = key {
            cmd.env("WARDEN_MASTER_KEY", key);
        }
        cmd.output().unwrap()
    };
    assert!(run(&["init", "--json"], None).status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("master.key")), 0o600);
        // In a directory others may list (made beforehand, as a service
        // manager or a volume does), the store is still Warden's alone.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = console(&["init", "--json"], &open).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        for entry in std::fs::read_dir(&open).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(
                mode(&path) & 0o077,
                0,
                "{} is readable by others",
                path.display()
            );
        }
        // A file given as the data directory by mistake is refused, and
        // left as it was.
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "mine").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        for command in [&["init", "--json"][..], &["org", "list"], &["serve"]] {
            let out = console(command, &file).output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{command:?}: {out:?}");
            let told = String::from_utf8_lossy(&out.stderr);
            assert!(told.contains("is not a directory"), "{command:?}: {out:?}");
            assert!(!told.contains("database unavailable"), "{told}");
            assert_eq!(mode(&file), 0o644, "{command:?} changed the file's mode");
            assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
        }
    }
    assert!(run(&["org", "create", "Second", "--json"], None)
        .status
        .success());
    let wrong = run(
        &["org", "create", "Third", "--json"],
        Some(&"ab".repeat(32)),
    );
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("another master key"));
    let orgs = run(&["org", "list", "--json"], None);
    let orgs: serde_json::Value = serde_json::from_slice(&orgs.stdout).unwrap();
    assert_eq!(
        orgs.as_array().unwrap().len(),
        2,
        "the refused command changed nothing"
    );
    // With its key file gone, the store is not given a new one: that key
    // could never open it.
    let key_file = data.join("master.key");
    std::fs::remove_file(&key_file).unwrap();
    let lost = run(&["init", "--json"], None);
    assert!(!lost.status.success());
    assert!(
        String::from_utf8_lossy(&lost.stderr).contains("set up with a master key"),
        "{lost:?}"
    );
    assert!(!key_file.exists(), "no new key file was written");
}

/// Reads until the server closes the connection: whether it did before
/// the read gives up (30 s, far past the deadlines the test sets; without
/// a deadline such a connection stays open for good).
fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn slow_and_idle_clients_are_disconnected(backend: &Backend) {
    use std::io::Write;
    use std::time::Duration;
    let t = backend.init();
    let w = Warden::start(backend, &["--header-timeout-seconds", "2"]);
    let address = w.base.trim_start_matches("http://").to_string();
    // A connection that never sends a byte.
    let mut silent = std::net::TcpStream::connect(&address).unwrap();
    // One that sends its headers a byte at a time, too slowly.
    let mut slow = std::net::TcpStream::connect(&address).unwrap();
    let dribble = std::thread::spawn(move || {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: yes" {
            if slow.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        slow
    });
    assert!(
        closed_by_server(&mut silent),
        "an idle connection stayed open"
    );
    let mut slow = dribble.join().unwrap();
    assert!(
        closed_by_server(&mut slow),
        "a slow client stayed connected"
    );
    // A client that half-closes after its request still gets the answer.
    let mut half = std::net::TcpStream::connect(&address).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    half.shutdown(std::net::Shutdown::Write).unwrap();
    half.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut half, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    // A request being answered is not timed: a long-poll still open past
    // the 2 s deadline is woken by the approval and answers it.
    let api = w.api(&t.live_key);
    let r = api.post(
        "/api/v1/policies",
        &serde_json::json!({"name": "hold", "action_pattern": "x.y", "decision": "step_up"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let d = api.post(
        "/api/v1/enforce",
        &serde_json::json!({"agent_id": "waiter", "tool_name": "x.y"}),
    );
    let token = d.body["data"]["hold_token"].as_str().unwrap().to_string();
    let hold = api.get("/api/v1/holds?status=pending").body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let approver = {
        let api = w.api(&t.live_key);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            api.post(
                &format!("/api/v1/holds/{hold}/approve"),
                &serde_json::json!({}),
            )
        })
    };
    let r = api.get(&format!("/api/v1/enforce/hold/{token}?wait=10"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["status"], "approved", "{}", r.text);
    assert_eq!(approver.join().unwrap().status, 200);
}

fn init_takes_a_custom_plan_and_restored_files_are_made_private(backend: &Backend) {
    let out = backend.cli(&[
        "init",
        "--json",
        "--plan",
        "custom",
        "--rate-limit-per-minute",
        "1200",
        "--burst",
        "30",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let orgs = backend.cli(&["org", "list", "--json"]);
    let orgs: serde_json::Value = serde_json::from_slice(&orgs.stdout).unwrap();
    assert_eq!(orgs[0]["plan"], "custom", "{orgs}");
    assert_eq!(orgs[0]["rate_limit_per_minute"], 1200, "{orgs}");
    // A data directory and database restored with a wider mode (a `cp`
    // under umask 022): SQLite would give its new WAL the database's mode.
    // The directory holds the search index with PostgreSQL too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        drop(Warden::start(backend, &[]));
        let dir = backend.data_dir(0);
        let set = |path: &std::path::Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(&dir, 0o777);
        set(&dir.join("index"), 0o755);
        if !backend.is_postgres() {
            set(&dir.join("warden.db"), 0o644);
            for wal in ["warden.db-wal", "warden.db-shm"] {
                let _ = std::fs::remove_file(dir.join(wal));
            }
        }
        let w = Warden::start(backend, &[]);
        let mode = |name: &str| {
            std::fs::metadata(dir.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(""), 0o700, "the data dir");
        assert_eq!(mode("index"), 0o700, "the index dir");
        if !backend.is_postgres() {
            for file in ["warden.db", "warden.db-wal", "warden.db-shm"] {
                assert_eq!(mode(file), 0o600, "{file}");
            }
        }
        drop(w);
    }
}

/// A store migrated by a newer Warden is refused by an older one, which
/// could write what the new schema no longer means; nothing is changed.
fn a_schema_newer_than_the_binary_is_refused(backend: &Backend) {
    let t = backend.init();
    backend.sql("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)");
    for args in [&["org", "list"][..], &["serve", "--listen", "127.0.0.1:0"]] {
        let out = backend.cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("schema is at version 99, newer than this binary knows"),
            "{args:?}: {stderr}"
        );
    }
    // The binary's own migrations (SQLite has one more) and the newer one.
    let known = if backend.is_postgres() { "8" } else { "9" };
    assert_eq!(
        backend.sql("SELECT COUNT(*) FROM schema_migrations").trim(),
        known
    );
    backend.sql("DELETE FROM schema_migrations WHERE version = 99");
    let out = backend.cli(&["org", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&t.org_id));
}

on_every_backend!(
    init_takes_a_custom_plan_and_restored_files_are_made_private,
    slow_and_idle_clients_are_disconnected,
    init_prints_one_json_object_and_refuses_twice,
    serve_initializes_an_empty_store,
    sigterm_finishes_and_exits_zero,
    acknowledged_writes_survive_kill_9,
    rate_limits_refuse_and_change_nothing,
    an_organization_is_renamed_and_changes_plan,
    redis_unreachable_falls_back_to_local_limits,
    metrics_and_request_ids,
    a_schema_newer_than_the_binary_is_refused,
    a_database_without_a_store_is_left_as_it_was,
    an_older_store_is_migrated_only_by_serve,
    a_server_without_autovacuum_is_named,
);

/// Past the process's open-files limit a new connection is answered 503
/// in the envelope, not left waiting in the kernel's queue until its
/// client gives up, while a connection already open is served, writes
/// included; once files are free again every connection is.
#[test]
fn a_connection_past_the_open_files_limit_is_answered_503() {
    use std::io::{Read, Write};
    let backend = Backend::sqlite();
    let t = backend.init();
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    let agent = api.create_agent("before the limit");
    // The index is open and has committed before the limit: a start
    // still opening its files would take the spare file's number in the
    // instant it is given up, and a file closed below the spare would
    // leave the limit under it (no turn-away can then answer).
    let r = api.post(
        "/api/v1/events/batch",
        &json!([{"message": "before the limit"}]),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = api.post(
            "/api/v1/siem/search",
            &json!({"query": "\"before the limit\"", "limit": 0}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        if r.body["data"]["total"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the event was never searchable"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let hard = common::open_files_hard_limit(w.pid());
    // No file can be opened: the limit at the lowest free number. The
    // index closes files as it merges: the limit follows it down.
    let at_the_limit = || {
        let lowest_free = common::lowest_free_descriptor(w.pid());
        common::set_open_files_limit(w.pid(), &format!("{lowest_free}:{hard}"));
    };
    let address = w.base.trim_start_matches("http://").to_string();
    // A request sent in parts, a pause between: the answer read whole.
    let answer_to = |parts: &[&[u8]]| {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        // A hang fails the test instead of holding it.
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(50));
            }
            // A write after the answer may fail; what was answered is read.
            if stream.write_all(part).is_err() {
                break;
            }
        }
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .expect("an answer, not a wait or a reset");
        answer
    };
    let health = || answer_to(&[b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
    // A body longer than what the answer reads of it first, then one
    // still arriving after the answer: closing the connection with bytes
    // unread resets it, and its client loses the answer.
    let events = serde_json::to_vec(&vec![json!({"message": "late"}); 2_000]).unwrap();
    let head = format!(
        "POST /api/v1/events/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        events.len()
    );
    let whole = [head.as_bytes(), &events].concat();
    let large_body = || answer_to(&[&whole]);
    let late_body = || answer_to(&[head.as_bytes(), &events[..100], &events[100..]]);
    // New connections, before the writes below give the index work it
    // retries at the limit (its retries open files too). The limit is
    // set once, while the spare is surely held: another thread of the
    // server failing to open a file may hold the spare's number for an
    // instant, and a limit lowered then would leave it above the limit.
    at_the_limit();
    for i in 0..6 {
        let answer = match i % 3 {
            0 => health(),
            1 => large_body(),
            _ => late_body(),
        };
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "unavailable", "{answer}");
        let id = body["error"]["request_id"].as_str().unwrap();
        assert!(answer.contains(&format!("x-request-id: {id}")), "{answer}");
        // The headers of every API answer.
        for header in ["x-content-type-options: nosniff", "cache-control: no-store"] {
            assert!(answer.contains(header), "{header}: {answer}");
        }
    }
    // The connection opened before: decisions, agents and events stored
    // (SQLite keeps no temporary file for them).
    for i in 0..20 {
        at_the_limit();
        let r = api.post(
            "/api/v1/enforce",
            &json!({"agent_id": agent, "tool_name": "db.query", "tool_args": {"i": i}}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        api.create_agent(&format!("during the limit {i}"));
        let events: Vec<serde_json::Value> = (0..50)
            .map(|k| json!({"message": format!("during the limit {i} {k}")}))
            .collect();
        let r = api.post("/api/v1/events/batch", &json!(events));
        assert_eq!(r.status, 202, "{}", r.text);
    }
    common::set_open_files_limit(w.pid(), &format!("{hard}:{hard}"));
    let answer = health();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
