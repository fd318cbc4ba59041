//! The API conventions on the agent registry, through the real binary:
//! envelope, field errors, 415/413, pagination, sort, filters, idempotency.

mod common;

use common::{Backend, Warden};
use serde_json::{json, Value};

fn agents_count(api: &common::Api) -> usize {
    api.agent_ids().len()
}

fn envelope_and_crud(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);

    let r = api.post(
        "/api/v1/agents",
        &json!({"name": "billing-bot", "description": "Pays invoices", "owner": "payments",
                "framework": "langchain", "tags": ["Prod", "pci", "prod"], "metadata": {"tier": 1}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let agent = &r.body["data"];
    let id = agent["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("agt_"));
    assert_eq!(agent["tags"], json!(["prod", "pci"]));
    assert_eq!(agent["status"], "active");
    assert_eq!(agent["metadata"], json!({"tier": 1}));
    let created = agent["created_at"].as_str().unwrap();
    assert_eq!(
        created.len(),
        "2026-03-01T12:00:00.000Z".len(),
        "RFC 3339 with milliseconds: {created}"
    );
    assert!(created.ends_with('Z'));
    let meta = &r.body["meta"];
    assert_eq!(meta["request_id"].as_str(), r.header("x-request-id"));
    assert!(meta["timestamp"].as_str().unwrap().ends_with('Z'));

    let r = api.get(&format!("/api/v1/agents/{id}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"]["name"], "billing-bot");

    let r = api.patch(
        &format!("/api/v1/agents/{id}"),
        &json!({"status": "suspended", "description": null, "tags": ["ops"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["status"], "suspended");
    assert_eq!(r.body["data"]["description"], json!(null));
    assert_eq!(r.body["data"]["owner"], "payments");
    assert_eq!(r.body["data"]["tags"], json!(["ops"]));
    let r = api.get(&format!("/api/v1/agents/{id}"));
    assert_eq!(
        r.body["data"]["status"], "suspended",
        "the change is stored"
    );

    let r = api.delete(&format!("/api/v1/agents/{id}"));
    assert_eq!(r.status, 204);
    api.get(&format!("/api/v1/agents/{id}"))
        .error(404, "not_found");
    api.delete(&format!("/api/v1/agents/{id}"))
        .error(404, "not_found");
    // By its external id too, as it is read and changed.
    let r = api.post(
        "/api/v1/agents",
        &json!({"name": "by alias", "external_id": "alias-bot"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(api.delete("/api/v1/agents/alias-bot").status, 204);
    api.get("/api/v1/agents/alias-bot").error(404, "not_found");
}

fn bad_input_changes_nothing(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    api.create_agent("existing");

    // Unknown field: named.
    let r = api.post("/api/v1/agents", &json!({"name": "a", "nmae": "typo"}));
    assert_eq!(r.error(400, "invalid_request")["field"], "nmae");
    // Missing required field: named.
    let r = api.post("/api/v1/agents", &json!({"description": "no name"}));
    assert_eq!(r.error(400, "invalid_request")["field"], "name");
    // Wrong type inside a list: the element is named.
    let r = api.post("/api/v1/agents", &json!({"name": "a", "tags": ["ok", 5]}));
    assert_eq!(r.error(400, "invalid_request")["field"], "tags[1]");
    // Bad enumeration: the allowed values are listed.
    let r = api.post("/api/v1/agents", &json!({"name": "a", "status": "paused"}));
    let err = r.error(400, "invalid_request");
    assert_eq!(err["field"], "status");
    assert!(
        err["message"].as_str().unwrap().contains("suspended"),
        "{}",
        r.text
    );
    // A field a change cannot empty refuses `null`, naming it; metadata
    // that names a key twice is refused, naming the key.
    let existing = api.get("/api/v1/agents").body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (body, field) in [
        (json!({"name": null}), "name"),
        (json!({"tags": null}), "tags"),
        (json!({"status": null}), "status"),
        (json!({"metadata": null}), "metadata"),
    ] {
        let r = api.patch(&format!("/api/v1/agents/{existing}"), &body);
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            field,
            "{}",
            r.text
        );
    }
    let r = api.json_text(
        "POST",
        "/api/v1/agents",
        br#"{"name": "twice", "metadata": {"team": "a", "team": "b"}}"#,
    );
    assert_eq!(
        r.error(400, "invalid_request")["field"],
        "metadata.team",
        "{}",
        r.text
    );
    // Malformed JSON: the position.
    let r = api.json_text("POST", "/api/v1/agents", b"{\n  \"name\": }");
    let err = r.error(400, "invalid_request");
    assert_eq!(err["position"], json!({"line": 2, "column": 11}));
    // An empty document ends at line 1, column 1: positions are 1-based.
    let r = api.json_text("POST", "/api/v1/agents", Vec::new());
    let err = r.error(400, "invalid_request");
    assert_eq!(
        err["position"],
        json!({"line": 1, "column": 1}),
        "{}",
        r.text
    );
    // A body must be an object: serde would read a struct from the array
    // of its fields, or from `[]` when every field may be left out.
    for (method, path, body) in [
        ("POST", "/api/v1/agents", json!(["from an array"])),
        ("PATCH", "/api/v1/policy-settings", json!([])),
        ("POST", "/api/v1/agents", json!("text")),
    ] {
        let r = api.send(method, path, Some(&body), &[]);
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            "body",
            "{path}: {}",
            r.text
        );
    }
    // Not JSON at all: 415.
    api.raw(
        "POST",
        "/api/v1/agents",
        b"name=a".to_vec(),
        &[("content-type", "application/x-www-form-urlencoded")],
    )
    .error(415, "unsupported_media_type");
    api.raw("POST", "/api/v1/agents", b"{\"name\":\"a\"}".to_vec(), &[])
        .error(415, "unsupported_media_type");
    // JSON is UTF-8: a body declared in another charset is refused, not
    // misread; UTF-8 named in any spelling is taken.
    for (path, content_type) in [
        ("/api/v1/agents", "application/json; charset=utf-16"),
        ("/api/v1/agents", "application/json;charset=\"ISO-8859-1\""),
        ("/api/v1/events/batch", "application/json; charset=utf-32"),
        (
            "/api/v1/events/ndjson",
            "application/x-ndjson; charset=latin1",
        ),
    ] {
        let r = api.raw(
            "POST",
            path,
            b"{\"name\":\"charset\"}".to_vec(),
            &[("content-type", content_type)],
        );
        let message = r.error(415, "unsupported_media_type")["message"].clone();
        assert!(
            message.as_str().is_some_and(|m| m.contains("UTF-8")),
            "{path} {content_type}: {}",
            r.text
        );
    }
    for (i, content_type) in [
        "application/json; charset=UTF-8",
        "application/json; charset=\"utf8\"",
        "application/json; charset=US-ASCII",
    ]
    .into_iter()
    .enumerate()
    {
        let r = api.raw(
            "POST",
            "/api/v1/agents",
            format!("{{\"name\":\"utf8-{i}\"}}").into_bytes(),
            &[("content-type", content_type)],
        );
        assert_eq!(r.status, 201, "{content_type}: {}", r.text);
        // Taken, then removed: the count below is of what failed requests made.
        let id = r.body["data"]["id"].as_str().unwrap().to_string();
        assert_eq!(api.delete(&format!("/api/v1/agents/{id}")).status, 204);
    }
    // Too large: 413.
    let big = format!(
        "{{\"name\": \"a\", \"description\": \"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    api.json_text("POST", "/api/v1/agents", big.into_bytes())
        .error(413, "payload_too_large");
    // A rule of the domain: the field is named.
    let r = api.post("/api/v1/agents", &json!({"name": "  "}));
    assert_eq!(r.error(400, "invalid_request")["field"], "name");
    // Duplicate name: 409 naming it.
    let r = api.post("/api/v1/agents", &json!({"name": "existing"}));
    assert_eq!(r.error(409, "conflict")["field"], "name");
    // Bad query parameters: named.
    let r = api.get("/api/v1/agents?limit=0");
    assert_eq!(r.error(400, "invalid_request")["field"], "limit");
    let r = api.get("/api/v1/agents?limit=abc");
    assert_eq!(r.error(400, "invalid_request")["field"], "limit");
    // In words a caller reads, not the parser's.
    for (query, field, said) in [
        ("/api/v1/agents?limit=-1", "limit", "whole number"),
        ("/api/v1/agents?limit=", "limit", "empty"),
        (
            "/api/v1/agents?limit=99999999999999999999",
            "limit",
            "too large",
        ),
        ("/api/v1/audit?min_drift=", "min_drift", "give a number"),
        (
            "/api/v1/audit?min_drift=high",
            "min_drift",
            "must be a number",
        ),
        ("/api/v1/policies?enabled=1", "enabled", "`true` or `false`"),
    ] {
        let e = api.get(query).error(400, "invalid_request").clone();
        assert_eq!(e["field"], field, "{query}");
        assert!(
            e["message"].as_str().unwrap().contains(said),
            "{query}: {e}"
        );
    }

    let r = api.get("/api/v1/agents?sort=owner");
    assert_eq!(r.error(400, "invalid_request")["field"], "sort");
    let r = api.get("/api/v1/agents?colour=red");
    assert_eq!(r.error(400, "invalid_request")["field"], "colour");
    let r = api.get("/api/v1/agents?cursor=garbage");
    assert_eq!(r.error(400, "invalid_request")["field"], "cursor");
    // Unknown routes and methods answer in the envelope too.
    api.get("/api/v1/nothing-here").error(404, "not_found");
    api.send("PUT", "/api/v1/agents", None, &[])
        .error(405, "method_not_allowed");

    // NUL characters (which PostgreSQL cannot store as text) are refused.
    let r = api.post(
        "/api/v1/agents",
        &json!({"name": "n", "description": "a\u{0}b"}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "description");
    let r = api.get("/api/v1/agents?search=%00");
    assert_eq!(r.error(400, "invalid_request")["field"], "search");
    // Bytes that are not UTF-8, and a parameter given twice, are named.
    let r = api.get("/api/v1/agents?search=%FF%FE");
    assert_eq!(r.error(400, "invalid_request")["field"], "search");
    // A body in an encoding the route does not read is not taken for JSON.
    let r = api.raw(
        "POST",
        "/api/v1/agents",
        br#"{"name": "encoded"}"#.to_vec(),
        &[
            ("content-type", "application/json"),
            ("content-encoding", "br"),
        ],
    );
    assert_eq!(
        r.error(415, "unsupported_media_type")["field"],
        "Content-Encoding"
    );
    // Bytes that are not UTF-8 are said to be so, where they are.
    let r = api.raw(
        "POST",
        "/api/v1/agents",
        b"{\"name\": \"bad\xff\"}".to_vec(),
        &[("content-type", "application/json")],
    );
    assert!(
        r.error(400, "invalid_request")["message"]
            .as_str()
            .unwrap()
            .contains("UTF-8"),
        "{}",
        r.text
    );
    // Longer than anything it could match (it was a 500: the database's
    // LIKE refuses a pattern of 50,000 characters).
    let r = api.get(&format!("/api/v1/agents?search={}", "a".repeat(50_000)));
    assert_eq!(r.error(400, "invalid_request")["field"], "search");
    assert_eq!(
        api.get(&format!("/api/v1/agents?search={}", "a".repeat(2_000)))
            .status,
        200
    );
    let r = api.get("/api/v1/agents?status=active&status=discovered");
    assert_eq!(
        r.error(400, "invalid_request")["field"],
        "status",
        "{}",
        r.text
    );
    api.get("/api/v1/agents/agt%00x")
        .error(400, "invalid_request");
    let r = api.post(
        "/api/v1/api-keys",
        &json!({"name": "k", "scopes": ["agents.read"], "agent_id": "a\u{0}"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    // A key sent by mistake where an error quotes the request is not shown
    // again: as a parameter's name, as a value, inside a field's name.
    let key = &t.live_key;
    // Its secret alone, as a paste that lost the prefix leaves it.
    let secret = key.trim_start_matches("wdn_live_");
    for r in [
        api.get(&format!("/api/v1/agents?dn_live_{secret}=1")),
        api.post("/api/v1/agents", &json!({"name": "a", "status": secret})),
    ] {
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(!r.text.contains(secret), "{}", r.text);
    }
    for r in [
        api.get(&format!("/api/v1/agents?{key}=1")),
        api.get(&format!("/api/v1/events?from={key}")),
        api.get(&format!("/api/v1/audit?agent_id={key}")),
        api.post("/api/v1/agents", &json!({"name": "a", key.as_str(): 1})),
        api.post("/api/v1/agents", &json!({"name": "a", "status": key})),
    ] {
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(!r.text.contains(key.as_str()), "{}", r.text);
        // Echoed taken out, or refused as a name that holds a key.
        assert!(
            r.text.contains("[REDACTED]") || r.text.contains("holds a Warden key"),
            "{}",
            r.text
        );
    }
    // Nor a token, alone or two written together, nor a piece of one.
    let r = api.post("/api/v1/auth/token", &json!({"api_key": key}));
    let token = r.body["data"]["token"].as_str().unwrap().to_string();
    let signature = token.rsplit('.').next().unwrap().to_string();
    let twice = format!("{token}_{token}");
    for r in [
        api.get(&format!("/api/v1/agents?sort={twice}")),
        api.post("/api/v1/agents", &json!({"name": "a", twice.as_str(): 1})),
        api.json_text(
            "POST",
            "/api/v1/events/batch",
            format!(r#"[{{"fields": {{"{token}": 1, "{token}": 2}}}}]"#).as_bytes(),
        ),
    ] {
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(!r.text.contains(&signature), "{}", r.text);
    }

    assert_eq!(agents_count(&api), 1, "no failed request created anything");
}

fn pagination_sort_and_filters(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let names = ["delta", "alpha", "echo", "charlie", "bravo"];
    for (i, name) in names.iter().enumerate() {
        let tags = if i % 2 == 0 {
            json!(["even"])
        } else {
            json!(["odd"])
        };
        let status = if *name == "echo" {
            "suspended"
        } else {
            "active"
        };
        let r = api.post(
            "/api/v1/agents",
            &json!({"name": name, "tags": tags, "status": status, "description": format!("The {name} agent")}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // Walk pages of two by name: every agent once, in order.
    let mut seen = Vec::new();
    let mut path = "/api/v1/agents?limit=2&sort=name&direction=asc".to_string();
    loop {
        let r = api.get(&path);
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.body["data"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|a| a["name"].as_str().unwrap().to_string()));
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/agents?limit=2&sort=name&direction=asc&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["alpha", "bravo", "charlie", "delta", "echo"]);
    // Unknown query parameters are refused on every route, those that
    // read none included, and change nothing.
    let agent = api.get("/api/v1/agents?limit=1").body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (path, field) in [
        (format!("/api/v1/agents/{agent}?foo=1"), "foo"),
        (format!("/api/v1/agents/{agent}/drift?x"), "x"),
        ("/api/v1/audit/verify?full=true".to_string(), "full"),
        ("/api/v1/policy-settings?foo=1".to_string(), "foo"),
        ("/api/v1/agents?limit=2&lmit=3".to_string(), "lmit"),
        ("/healthz?verbose=1".to_string(), "verbose"),
    ] {
        let r = api.get(&path);
        assert_eq!(r.error(400, "invalid_request")["field"], field, "{path}");
    }
    // A body sent to a route that reads none is refused, not ignored.
    for (method, path) in [
        ("POST", format!("/api/v1/agents/{agent}/drift/rebuild")),
        ("DELETE", format!("/api/v1/agents/{agent}")),
    ] {
        let r = api.send(method, &path, Some(&json!({"x": 1})), &[]);
        assert_eq!(r.error(400, "invalid_request")["field"], "body", "{path}");
    }
    assert_eq!(
        api.get(&format!("/api/v1/agents/{agent}")).status,
        200,
        "the refused DELETE changed nothing"
    );
    // Routes whose body is optional take `null` as none.
    let (key_id, _) = api.create_key(json!({"name": "rotated", "scopes": ["agents.read"]}));
    let r = api.raw(
        "POST",
        &format!("/api/v1/api-keys/{key_id}/rotate"),
        b"null".to_vec(),
        &[("content-type", "application/json")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.post(
        "/api/v1/policies",
        &json!({"name": "hold all", "action_pattern": "hold.me", "decision": "step_up"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": agent, "tool_name": "hold.me"}),
    );
    assert_eq!(r.body["data"]["decision"], "step_up", "{}", r.text);
    let hold = api.get("/api/v1/holds?status=pending").body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api.raw(
        "POST",
        &format!("/api/v1/holds/{hold}/approve"),
        b"null".to_vec(),
        &[("content-type", "application/json")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // What says nothing is taken as no body, however it is spaced.
    for body in ["{ }", " null ", ""] {
        let r = api.raw(
            "POST",
            &format!("/api/v1/agents/{agent}/drift/rebuild"),
            body.as_bytes().to_vec(),
            &[("content-type", "application/json")],
        );
        assert_eq!(r.status, 200, "{body:?}: {}", r.text);
    }
    let r = api.patch(
        &format!("/api/v1/agents/{agent}?dry_run=true"),
        &json!({"description": "changed"}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "dry_run");
    assert_ne!(
        api.get(&format!("/api/v1/agents/{agent}")).body["data"]["description"],
        "changed"
    );
    // A cursor is bound to its sort.
    let r = api.get("/api/v1/agents?limit=2&sort=name");
    let cursor = r.body["next_cursor"].as_str().unwrap().to_string();
    let r = api.get(&format!(
        "/api/v1/agents?limit=2&sort=created_at&cursor={cursor}"
    ));
    assert_eq!(r.error(400, "invalid_request")["field"], "cursor");
    // The default order given outright on a later page is the same order.
    let r = api.get("/api/v1/agents?limit=1");
    let cursor = r.body["next_cursor"].as_str().unwrap().to_string();
    let r = api.get(&format!(
        "/api/v1/agents?limit=1&direction=desc&sort=created_at&cursor={cursor}"
    ));
    assert_eq!(r.status, 200, "{}", r.text);
    // And to its list: sealed, it cannot be carried to another list or
    // made up from what a cursor would hold.
    let r = api.get(&format!("/api/v1/api-keys?cursor={cursor}"));
    assert_eq!(r.error(400, "invalid_request")["field"], "cursor");
    let r = api.get(&format!("/api/v1/audit?cursor={cursor}"));
    assert_eq!(r.error(400, "invalid_request")["field"], "cursor");
    use base64::Engine;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({"s": "created_at", "d": "desc", "v": 9_999_999_999_999i64, "i": "agt_zzz"})
            .to_string(),
    );
    let r = api.get(&format!("/api/v1/agents?cursor={forged}"));
    assert_eq!(r.error(400, "invalid_request")["field"], "cursor");
    // Default: newest first, ties broken by id.
    let r = api.get("/api/v1/agents");
    let keys: Vec<(String, String)> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["created_at"].as_str().unwrap().to_string(),
                a["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(keys.len(), 5);
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "newest first: {keys:?}"
    );
    assert_eq!(r.body["next_cursor"], json!(null));
    // Filters.
    let r = api.get("/api/v1/agents?status=suspended");
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["data"][0]["name"], "echo");
    let r = api.get("/api/v1/agents?tag=odd&sort=name");
    let odd: Vec<_> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(odd, ["alpha", "charlie"]);
    // Held to the rules of a tag: plain spaces trimmed as on writing, a
    // no-break space named rather than answered with an empty list.
    let r = api.get("/api/v1/agents?tag=%20ODD%20");
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2, "{}", r.text);
    for empty in ["", "%20%20"] {
        let r = api.get(&format!("/api/v1/agents?tag={empty}"));
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            "tag",
            "{}",
            r.text
        );
    }
    let r = api.get("/api/v1/agents?tag=odd%C2%A0");
    let e = r.error(400, "invalid_request");
    assert_eq!(e["field"], "tag");
    assert!(e["message"].as_str().unwrap().contains("U+00A0"), "{e}");
    let r = api.get("/api/v1/agents?search=CHAR");
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    let r = api.get("/api/v1/agents?search=the%20bravo%20agent");
    assert_eq!(
        r.body["data"][0]["name"], "bravo",
        "search covers the description"
    );
    let r = api.get("/api/v1/agents?search=%25");
    assert_eq!(
        r.body["data"].as_array().unwrap().len(),
        0,
        "% is a literal, not a wildcard"
    );
}

fn unicode_search_and_concurrent_changes(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    api.create_agent("École-bot");
    let r = api.get("/api/v1/agents?search=%C3%A9cole");
    assert_eq!(
        r.body["data"].as_array().unwrap().len(),
        1,
        "case-insensitive beyond ASCII: {}",
        r.text
    );

    // Concurrent changes to different fields both survive.
    let id = api.create_agent("contended");
    for round in 0..10 {
        let (base, key) = (w.base.clone(), t.live_key.clone());
        let path = format!("/api/v1/agents/{id}");
        let owner = std::thread::spawn({
            let (base, key, path) = (base.clone(), key.clone(), path.clone());
            move || {
                let api = common::Api::new(&base, &key);
                api.patch(&path, &json!({"owner": format!("owner-{round}")}))
                    .status
            }
        });
        let framework = std::thread::spawn(move || {
            let api = common::Api::new(&base, &key);
            api.patch(&path, &json!({"framework": format!("fw-{round}")}))
                .status
        });
        assert_eq!(
            (owner.join().unwrap(), framework.join().unwrap()),
            (200, 200)
        );
        let agent = api.get(&format!("/api/v1/agents/{id}")).body["data"].clone();
        assert_eq!(
            agent["owner"],
            format!("owner-{round}"),
            "round {round}: {agent}"
        );
        assert_eq!(
            agent["framework"],
            format!("fw-{round}"),
            "round {round}: {agent}"
        );
    }
}

fn idempotency_keys(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let body = json!({"name": "once"});
    let first = api.send(
        "POST",
        "/api/v1/agents",
        Some(&body),
        &[("Idempotency-Key", "k-1")],
    );
    assert_eq!(first.status, 201, "{}", first.text);
    let again = api.send(
        "POST",
        "/api/v1/agents",
        Some(&body),
        &[("Idempotency-Key", "k-1")],
    );
    assert_eq!(again.status, 201);
    assert_eq!(
        again.body["data"], first.body["data"],
        "the first response is replayed"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other = api.send(
        "POST",
        "/api/v1/agents",
        Some(&json!({"name": "twice"})),
        &[("Idempotency-Key", "k-1")],
    );
    assert_eq!(other.error(409, "conflict")["field"], "Idempotency-Key");
    assert_eq!(other.header("retry-after"), None, "retrying cannot help");
    assert_eq!(agents_count(&api), 1);
    // A claim whose request has not ended (as a crash leaves it): worth
    // retrying, and said so.
    backend.sql(
        "UPDATE idempotency_keys SET status_code = NULL, response_body = NULL \
         WHERE idempotency_key LIKE '%:k-1'",
    );
    let running = api.send(
        "POST",
        "/api/v1/agents",
        Some(&body),
        &[("Idempotency-Key", "k-1")],
    );
    let e = running.error(409, "conflict");
    assert_eq!(e["field"], "Idempotency-Key");
    assert!(
        e["message"].as_str().unwrap().contains("still in progress"),
        "{e}"
    );
    assert_eq!(running.header("retry-after"), Some("1"));
    assert_eq!(agents_count(&api), 1);
    // Two keys in one request: refused, nothing made.
    let twice = api.send(
        "POST",
        "/api/v1/agents",
        Some(&json!({"name": "two keys"})),
        &[("Idempotency-Key", "k-a"), ("Idempotency-Key", "k-b")],
    );
    assert_eq!(
        twice.error(400, "invalid_request")["field"],
        "Idempotency-Key"
    );
    assert_eq!(agents_count(&api), 1);
    // A failed request does not burn the key.
    let bad = api.send(
        "POST",
        "/api/v1/agents",
        Some(&json!({"nmae": "x"})),
        &[("Idempotency-Key", "k-2")],
    );
    assert_eq!(bad.status, 400);
    let fixed = api.send(
        "POST",
        "/api/v1/agents",
        Some(&json!({"nmae": "x"})),
        &[("Idempotency-Key", "k-2")],
    );
    assert_eq!(
        fixed.status, 400,
        "failures are not replayed but re-evaluated"
    );
    let ok = api.send(
        "POST",
        "/api/v1/agents",
        Some(&json!({"name": "x"})),
        &[("Idempotency-Key", "k-2")],
    );
    assert_eq!(ok.status, 201, "{}", ok.text);
    // Keys are per tenant: the test environment may reuse one.
    let test_api = w.api(&t.test_key);
    let r = test_api.send(
        "POST",
        "/api/v1/agents",
        Some(&json!({"name": "test-side"})),
        &[("Idempotency-Key", "k-1")],
    );
    assert_eq!(r.status, 201);
    assert_ne!(r.body["data"]["id"], first.body["data"]["id"]);
    // A key keeps the route's own body limit: the event routes take more
    // than the 1 MiB of the others, with a key as without.
    let events: Vec<Value> = (0..6_000)
        .map(|i| json!({"message": format!("idempotent batch event {i} {}", "x".repeat(200))}))
        .collect();
    let batch = Value::Array(events);
    assert!(batch.to_string().len() > 1 << 20);
    let send = || {
        api.send(
            "POST",
            "/api/v1/events/batch",
            Some(&batch),
            &[("Idempotency-Key", "big-batch")],
        )
    };
    let sent = send();
    assert_eq!(sent.status, 202, "{}", sent.text);
    let replayed = send();
    assert_eq!(replayed.status, 202, "{}", replayed.text);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.body["data"]["ids"], sent.body["data"]["ids"]);
    let lines: String = (0..6_000)
        .map(|i| format!("{{\"msg\": \"idempotent line {i} {}\"}}\n", "y".repeat(200)))
        .collect();
    assert!(lines.len() > 1 << 20);
    let r = api.raw(
        "POST",
        "/api/v1/events/ndjson",
        lines.into_bytes(),
        &[
            ("content-type", "application/x-ndjson"),
            ("Idempotency-Key", "big-lines"),
        ],
    );
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["data"]["accepted"], 6_000);
}

fn openapi_and_reference(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let anon = w.anonymous();
    let r = anon.get("/api/v1/openapi.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["openapi"], "3.1.0");
    // Log lines are raw text: `application/json` with a string schema
    // would tell a generated client to send one JSON-encoded string.
    let ndjson = &r.body["paths"]["/api/v1/events/ndjson"]["post"]["requestBody"]["content"];
    assert!(ndjson.get("application/x-ndjson").is_some(), "{ndjson}");
    assert!(ndjson.get("application/json").is_none(), "{ndjson}");
    // The headers answers carry are declared, for generated clients.
    let agents = &r.body["paths"]["/api/v1/agents"]["get"]["responses"];
    for (status, header) in [
        ("200", "X-Request-Id"),
        ("200", "X-RateLimit-Remaining"),
        ("429", "Retry-After"),
        ("429", "Retry-After-Ms"),
        ("401", "WWW-Authenticate"),
    ] {
        assert!(
            agents[status]["headers"].get(header).is_some(),
            "{status} {header}: {agents}"
        );
    }
    // A creation's Idempotency-Key still running is worth retrying.
    let conflict = &r.body["paths"]["/api/v1/agents"]["post"]["responses"]["409"]["headers"];
    assert!(conflict.get("Retry-After").is_some(), "{conflict}");
    let created = &r.body["paths"]["/api/v1/agents"]["post"]["responses"]["201"]["headers"];
    assert!(created.get("Idempotent-Replayed").is_some(), "{created}");
    // Every answer says how browsers and caches treat it: API answers
    // (an error, a secret's creation included) are never stored, sniffed
    // or framed; the reference page loads only its own files.
    let minted = w.api(&t.live_key).post(
        "/api/v1/api-keys",
        &json!({"name": "headers", "scopes": ["agents.read"]}),
    );
    assert_eq!(minted.status, 201, "{}", minted.text);
    for r in [
        anon.get("/healthz"),
        anon.get("/api/v1/agents"),
        anon.get("/api/v1/no-such-route"),
        minted,
    ] {
        assert_eq!(r.header("cache-control"), Some("no-store"), "{}", r.text);
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'")
        );
    }
    let page = anon.get("/docs/");
    assert_eq!(page.status, 200, "{}", page.text);
    let policy = page.header("content-security-policy").unwrap_or_default();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    // A page the reference does not have: the standard envelope.
    let missing = anon.get("/docs/no-such-page.js");
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert_eq!(
        missing.body["error"]["code"], "not_found",
        "{}",
        missing.text
    );
    assert!(missing.body["error"]["request_id"].is_string());
    let paths = r.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/agents",
        "/api/v1/agents/{id}",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{id}",
        "/api/v1/api-keys/{id}/rotate",
        "/api/v1/auth/token",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} documented");
    }
    // The document says what the routes do: a change may not send null
    // tags, retention must be given, a batch may be wrapped, and a key
    // may come in `X-Api-Key` as well as Bearer.
    let schemas = &r.body["components"]["schemas"];
    assert_eq!(
        schemas["UpdateAgent"]["properties"]["tags"]["type"],
        "array"
    );
    assert_eq!(
        schemas["CreateAgent"]["properties"]["tags"]["type"],
        json!(["array", "null"])
    );
    assert_eq!(
        schemas["SetRetention"]["required"],
        json!(["retention_days"])
    );
    let batch = r.body["paths"]["/api/v1/events/batch"]["post"]["requestBody"].to_string();
    assert!(batch.contains("EventBatch"), "{batch}");
    assert_eq!(
        schemas["EventBatch"]["oneOf"].as_array().map(Vec::len),
        Some(2)
    );
    // So may the SDK's, and its decisions are an enumeration; lengths
    // are characters, as `maxLength` counts them, on both call routes.
    let sdk = r.body["paths"]["/v1/events/batch"]["post"]["requestBody"].to_string();
    assert!(sdk.contains("ThothEventBatch"), "{sdk}");
    assert_eq!(
        schemas["ThothEventBatch"]["oneOf"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        schemas["ThothDecisionName"]["enum"],
        json!(["ALLOW", "BLOCK", "STEP_UP", "MODIFY"])
    );
    for field in ["session_id", "user_id"] {
        assert_eq!(
            schemas["PolicyTest"]["properties"][field]["maxLength"], 200,
            "{field}"
        );
    }
    assert_eq!(schemas["ItemError"]["properties"]["line"]["minimum"], 1);
    // A generated client's base URL is where it read the document.
    assert_eq!(r.body["servers"][0]["url"], "/");
    assert!(r.body["components"]["securitySchemes"]["api_key"].is_object());
    let security = r.body["paths"]["/api/v1/agents"]["get"]["security"].to_string();
    assert!(
        security.contains("api_key") && security.contains("bearer"),
        "{security}"
    );
    let post = &r.body["paths"]["/api/v1/agents"]["post"];
    for status in ["201", "400", "401", "403", "409", "413", "415", "429"] {
        assert!(
            post["responses"].get(status).is_some(),
            "POST /api/v1/agents documents {status}"
        );
    }
    // Every POST but enforcement, its dry run and search takes an Idempotency-Key.
    let header_names = |path: &str| -> Vec<String> {
        r.body["paths"][path]["post"]["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| p["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(header_names("/api/v1/agents").contains(&"Idempotency-Key".to_string()));
    for path in [
        "/api/v1/enforce",
        "/v1/enforce",
        "/api/v1/policies/test",
        "/api/v1/siem/search",
    ] {
        assert!(
            !header_names(path).contains(&"Idempotency-Key".to_string()),
            "{path}"
        );
    }
    // A field the server refuses as null is not documented as nullable,
    // and limits are the server's own.
    let update = &r.body["components"]["schemas"]["UpdatePolicy"]["properties"];
    for field in [
        "name",
        "action_pattern",
        "decision",
        "priority",
        "enabled",
        "mode",
    ] {
        let shown = update[field].to_string();
        assert!(!shown.contains("null"), "UpdatePolicy.{field}: {shown}");
    }
    assert!(update["condition"].to_string().contains("null"));
    let create = &r.body["components"]["schemas"]["CreatePolicy"]["properties"];
    assert_eq!(create["action_pattern"]["maxLength"], 256);
    let enforce = &schemas["EnforceRequest"]["properties"];
    assert_eq!(enforce["tool_name"]["minLength"], 1);
    assert_eq!(enforce["agent_id"]["maxLength"], 200);
    // Times are text or a number since 1970, as the server reads them.
    let search = schemas["SearchBody"]["properties"]["from_time"].to_string();
    assert!(search.contains("TimeValue"), "{search}");
    let time = schemas["TimeValue"]["oneOf"].to_string();
    assert!(time.contains("string") && time.contains("number"), "{time}");
    // Lists always carry next_cursor (null on the last page).
    let list = &schemas["ListEnvelope_AgentView"]["required"];
    assert!(list.to_string().contains("next_cursor"), "{list}");
    let verify = r.body["paths"]["/api/v1/audit/verify"]["get"]["parameters"].to_string();
    assert!(verify.contains("{64}"), "{verify}");
    let token = &r.body["paths"]["/api/v1/auth/token"]["post"]["responses"]["200"]["headers"];
    assert!(token.get("X-RateLimit-Remaining").is_some(), "{token}");
    let docs = reqwest::blocking::get(format!("{}/docs/", w.base)).unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().unwrap().to_lowercase().contains("swagger"));
    // Operations endpoints need no credentials.
    assert_eq!(anon.get("/healthz").status, 200);
    assert_eq!(anon.get("/readyz").body["status"], "ready");
}

/// Sends raw HTTP/1.1 requests on one keep-alive connection and reads
/// each answer's head and body (answers here carry a Content-Length).
struct RawConnection(std::io::BufReader<std::net::TcpStream>);

impl RawConnection {
    fn open(base: &str) -> Self {
        let stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        RawConnection(std::io::BufReader::new(stream))
    }

    /// The answer's status line and lower-cased headers.
    fn send(&mut self, request: &str) -> (String, Vec<(String, String)>) {
        let (status, headers, _) = self.send_full(request);
        (status, headers)
    }

    /// The answer's status line, lower-cased headers and body.
    fn send_full(&mut self, request: &str) -> (String, Vec<(String, String)>, Value) {
        use std::io::{BufRead, Read, Write};
        self.0.get_mut().write_all(request.as_bytes()).unwrap();
        let mut status = String::new();
        self.0.read_line(&mut status).unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.0.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_lowercase(), value.trim().to_lowercase()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).unwrap();
        (
            status,
            headers,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }
}

/// Framing HTTP/1.1 forbids, or that Warden does not read, is answered
/// before any route; a body declared past the limit is refused before a
/// client waiting for `100 Continue` is asked for it; a body that stops
/// arriving is given up; every 401 names its scheme.
fn framing_is_checked_before_routes(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &["--header-timeout-seconds", "2"]);
    let key = &t.live_key;
    let header = |headers: &[(String, String)], name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let call = r#"{"agent_id":"fr","tool_name":"a.b"}"#;
    let post = |extra: &str, body: &str| {
        format!(
            "POST /api/v1/enforce HTTP/1.1\r\n{extra}Authorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    for (hosts, count) in [("", 0), ("Host: a\r\nHost: b\r\n", 2)] {
        let (status, _, body) = RawConnection::open(&w.base).send_full(&post(hosts, call));
        assert!(status.contains("400"), "{count} hosts: {status}");
        assert_eq!(body["error"]["field"], "Host", "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&count.to_string()));
    }
    let (status, _, body) = RawConnection::open(&w.base).send_full(&format!(
        "POST /api/v1/enforce HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
         {:x}\r\n{call}\r\n0\r\n\r\n",
        call.len()
    ));
    assert!(status.contains("501"), "{status}");
    assert_eq!(body["error"]["code"], "not_implemented", "{body}");
    assert_eq!(body["error"]["field"], "Transfer-Encoding", "{body}");
    // `chunked` twice, a body's type or encoding given twice: refused,
    // naming the header.
    for (extra, field) in [
        ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding"),
        ("Transfer-Encoding: chunked, chunked\r\n", "Transfer-Encoding"),
        ("Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n", "Content-Type"),
        ("Transfer-Encoding: chunked\r\nContent-Encoding: identity\r\nContent-Encoding: gzip\r\n", "Content-Encoding"),
    ] {
        let (status, _, body) = RawConnection::open(&w.base).send_full(&format!(
            "POST /api/v1/enforce HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\n{extra}\r\n{:x}\r\n{call}\r\n0\r\n\r\n",
            call.len()
        ));
        assert!(status.contains("400"), "{extra}: {status}");
        assert_eq!(body["error"]["field"], field, "{extra}: {body}");
    }
    // A body whose chunking is broken: the answer says the connection
    // closes, in words of the request's own.
    let (status, headers, body) = RawConnection::open(&w.base).send_full(&format!(
        "POST /api/v1/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    ));
    assert!(status.contains("400"), "{status}");
    assert_eq!(header(&headers, "connection").as_deref(), Some("close"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the request body could not be read"),
        "{message}"
    );
    // A path parameter is named as the route names it.
    let (status, _, body) = RawConnection::open(&w.base).send_full(&format!(
        "GET /api/v1/enforce/hold/%FF HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
    ));
    assert!(status.contains("400"), "{status}");
    assert_eq!(body["error"]["field"], "token", "{body}");
    // An Idempotency-Key of visible characters only.
    let (status, _, body) = RawConnection::open(&w.base).send_full(&format!(
        "POST /api/v1/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Idempotency-Key: a\tb\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{{\"name\":\"i\"}}"
    ));
    assert!(status.contains("400"), "{status}");
    assert_eq!(body["error"]["field"], "Idempotency-Key", "{body}");
    // Plain chunked is read.
    let (status, _, body) = RawConnection::open(&w.base).send_full(&format!(
        "POST /api/v1/enforce HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{call}\r\n0\r\n\r\n",
        call.len()
    ));
    assert!(status.contains("200"), "{status} {body}");
    // Declared past the limit, with a client waiting to be asked: the 413
    // comes first, never a `100 Continue`; on the event batch route too.
    for (path, length) in [
        ("/api/v1/enforce", 2 << 20),
        ("/api/v1/events/batch", 11 << 20),
        ("/api/v1/agents", 2 << 20),
    ] {
        let (status, headers, body) = RawConnection::open(&w.base).send_full(&format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {length}\r\n\r\n"
        ));
        assert!(status.contains("413"), "{path}: {status}");
        assert_eq!(body["error"]["code"], "payload_too_large", "{path}: {body}");
        assert_eq!(header(&headers, "connection").as_deref(), Some("close"));
    }
    // A route that takes no body refuses one declared past what says
    // nothing from its headers: no `100 Continue`, no wait for the body.
    for request in [
        "DELETE /api/v1/agents/agt_00000000000000000000000000 HTTP/1.1",
        "POST /api/v1/agents/agt_00000000000000000000000000/drift/rebuild HTTP/1.1",
    ] {
        let (status, headers, body) = RawConnection::open(&w.base).send_full(&format!(
            "{request}\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 5000000000\r\n\r\n"
        ));
        assert!(status.contains("400"), "{request}: {status}");
        assert_eq!(body["error"]["field"], "body", "{request}: {body}");
        assert_eq!(header(&headers, "connection").as_deref(), Some("close"));
    }
    // Before an `Idempotency-Key` would read it too.
    let (status, _, body) = RawConnection::open(&w.base).send_full(&format!(
        "POST /api/v1/agents/agt_00000000000000000000000000/drift/rebuild HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {key}\r\nIdempotency-Key: rebuild-1\r\n\
         Expect: 100-continue\r\nContent-Length: 5000000000\r\n\r\n"
    ));
    assert!(status.contains("400"), "{status}");
    assert_eq!(body["error"]["field"], "body", "{body}");
    // Up to 1 KiB of what says nothing is taken as none; a byte more is a
    // body, whether declared with a length or sent chunked.
    let blank = " ".repeat(1024);
    let (status, _, body) = RawConnection::open(&w.base).send_full(&format!(
        "DELETE /api/v1/agents/agt_00000000000000000000000000 HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {key}\r\nContent-Length: 1024\r\n\r\n{blank}"
    ));
    assert!(status.contains("404"), "{status} {body}");
    let (status, _, body) = RawConnection::open(&w.base).send_full(&format!(
        "DELETE /api/v1/agents/agt_00000000000000000000000000 HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {key}\r\nContent-Length: 1025\r\n\r\n{blank} "
    ));
    assert!(status.contains("400"), "{status}");
    assert_eq!(body["error"]["field"], "body", "{body}");
    let (status, _, body) = RawConnection::open(&w.base).send_full(&format!(
        "DELETE /api/v1/agents/agt_00000000000000000000000000 HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n{blank} \r\n0\r\n\r\n"
    ));
    assert!(status.contains("400"), "{status}");
    assert_eq!(body["error"]["field"], "body", "{body}");
    // A body that stops arriving is refused after the deadline.
    let mut stalled = RawConnection::open(&w.base);
    let (status, _, body) = stalled.send_full(&format!(
        "POST /api/v1/enforce HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"agent_id\":"
    ));
    assert!(status.contains("400"), "{status}");
    assert_eq!(body["error"]["field"], "body", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stalled"),
        "{body}"
    );
    // Every 401 names the scheme it would take.
    for credential in ["", "Authorization: Bearer wdn_live_not_a_key\r\n"] {
        let (status, headers, _) = RawConnection::open(&w.base).send_full(&format!(
            "GET /api/v1/agents HTTP/1.1\r\nHost: x\r\n{credential}\r\n"
        ));
        assert!(status.contains("401"), "{status}");
        assert_eq!(
            header(&headers, "www-authenticate").as_deref(),
            Some("bearer realm=\"warden\""),
            "{headers:?}"
        );
    }
}

fn early_answers_are_read_whatever_the_body(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let request = |path: &str, key: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let closes = |headers: &[(String, String)]| {
        headers
            .iter()
            .any(|(n, v)| n == "connection" && v == "close")
    };
    let call = r#"{"agent_id":"bp","tool_name":"a.b","tool_args":{}}"#;
    // Refused before the body is read (a bad key, an unknown route): the
    // rest of the body is read and dropped, and the connection serves the
    // next request.
    let mut kept = RawConnection::open(&w.base);
    for (path, key, code) in [
        ("/api/v1/enforce", "wdn_live_not_a_key", "401"),
        ("/api/v1/no-such-route", t.live_key.as_str(), "404"),
        ("/api/v1/enforce", t.live_key.as_str(), "200"),
    ] {
        let (status, headers) = kept.send(&request(path, key, call));
        assert!(status.contains(code), "{path}: {status}");
        assert!(!closes(&headers), "{path}: {headers:?}");
    }
    // A client that writes its whole body before reading (as Python's
    // http.client does) reads the answer to a large one: 8 MiB of events
    // sent with a bad key, past what the socket buffers hold.
    let events = format!("[{}]", vec![r#"{"message":"x"}"#; 8 << 16].join(","));
    assert!(events.len() > 8 << 20);
    let mut big = RawConnection::open(&w.base);
    let (status, headers) = big.send(&request(
        "/api/v1/events/batch",
        "wdn_live_not_a_key",
        &events,
    ));
    assert!(status.contains("401"), "{status}");
    assert!(!closes(&headers), "{headers:?}");
    // A client waiting for `100 Continue` before it sends its body is
    // answered at once, and not asked for the body.
    let mut waiting = RawConnection::open(&w.base);
    let (status, headers) = waiting.send(
        "POST /api/v1/enforce HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wdn_live_not_a_key\r\n\
         Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 2097152\r\n\r\n",
    );
    assert!(status.contains("401"), "{status}");
    assert!(closes(&headers), "{headers:?}");
    // A body declared past what is read on its behalf is not read: the
    // answer says the connection closes.
    let mut closing = RawConnection::open(&w.base);
    let (status, headers) = closing.send(&format!(
        "POST /api/v1/enforce HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wdn_live_not_a_key\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{call}",
        64 << 20
    ));
    assert!(status.contains("401"), "{status}");
    assert!(closes(&headers), "{headers:?}");
}

on_every_backend!(
    framing_is_checked_before_routes,
    early_answers_are_read_whatever_the_body,
    envelope_and_crud,
    bad_input_changes_nothing,
    pagination_sort_and_filters,
    idempotency_keys,
    unicode_search_and_concurrent_changes,
    openapi_and_reference,
);
