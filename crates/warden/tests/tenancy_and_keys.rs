//! Tenancy, scoped keys, token exchange, revocation and key secrecy, through
//! the real binary.

mod common;

use common::{Backend, Reply, Warden};
use serde_json::json;

fn tenants_and_environments_are_isolated(backend: &Backend) {
    let a = backend.init();
    let b = backend.create_org("Other Corp", &["--plan", "enterprise"]);
    let w = Warden::start(backend, &[]);
    let a_live = w.api(&a.live_key);
    let a_test = w.api(&a.test_key);
    let b_live = w.api(&b.live_key);

    let id = a_live.create_agent("shared-name");
    // Another organization: 404, exactly like a missing id.
    let theirs = b_live.get(&format!("/api/v1/agents/{id}"));
    let missing = b_live.get("/api/v1/agents/agt_000000000000000000000000");
    assert_eq!(
        theirs.error(404, "not_found")["message"],
        missing.error(404, "not_found")["message"]
    );
    b_live
        .patch(&format!("/api/v1/agents/{id}"), &json!({"name": "stolen"}))
        .error(404, "not_found");
    b_live
        .delete(&format!("/api/v1/agents/{id}"))
        .error(404, "not_found");
    assert!(b_live.agent_ids().is_empty());
    // The other environment of the same organization sees nothing either.
    a_test
        .get(&format!("/api/v1/agents/{id}"))
        .error(404, "not_found");
    assert!(a_test.agent_ids().is_empty());
    // Names are unique per tenant only.
    b_live.create_agent("shared-name");
    a_test.create_agent("shared-name");
    assert_eq!(a_live.agent_ids(), vec![id.clone()]);
    assert_eq!(
        a_live.get(&format!("/api/v1/agents/{id}")).body["data"]["name"],
        "shared-name"
    );
    // Keys too.
    let (key_id, _) = a_live.create_key(json!({"name": "ci", "scopes": ["agents.read"]}));
    b_live
        .get(&format!("/api/v1/api-keys/{key_id}"))
        .error(404, "not_found");
    a_test
        .get(&format!("/api/v1/api-keys/{key_id}"))
        .error(404, "not_found");
    b_live
        .delete(&format!("/api/v1/api-keys/{key_id}"))
        .error(404, "not_found");
    assert_eq!(
        a_live.get(&format!("/api/v1/api-keys/{key_id}")).body["data"]["status"],
        "active"
    );
    // An audit record and a hold, read by their ids and the hold's token
    // (looked up by key alone, the tenant compared after): another
    // organization's key and the other environment's find neither, and
    // cannot resolve the hold.
    let r = a_live.post(
        "/api/v1/policies",
        &json!({"name": "hold", "action_pattern": "pay.*", "decision": "step_up"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = a_live.post(
        "/api/v1/enforce",
        &json!({"agent_id": id, "tool_name": "pay.send", "tool_args": {"n": 1}}),
    );
    assert_eq!(r.body["data"]["decision"], "step_up", "{}", r.text);
    let audit_id = r.body["data"]["audit_id"].as_str().unwrap().to_string();
    let token = r.body["data"]["hold_token"].as_str().unwrap().to_string();
    let hold_id = r.body["data"]["hold_id"].as_str().unwrap().to_string();
    for other in [&b_live, &a_test] {
        other
            .get(&format!("/api/v1/audit/{audit_id}"))
            .error(404, "not_found");
        other
            .get(&format!("/api/v1/holds/{hold_id}"))
            .error(404, "not_found");
        other
            .get(&format!("/api/v1/enforce/hold/{token}"))
            .error(404, "not_found");
        for verb in ["approve", "deny"] {
            other
                .post(&format!("/api/v1/holds/{hold_id}/{verb}"), &json!({}))
                .error(404, "not_found");
        }
    }
    let hold = a_live.get(&format!("/api/v1/holds/{hold_id}"));
    assert_eq!(hold.body["data"]["status"], "pending", "{}", hold.text);
    assert_eq!(a_live.get(&format!("/api/v1/audit/{audit_id}")).status, 200);
}

fn scopes_are_enforced(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let admin = w.api(&t.live_key);
    let agent_id = admin.create_agent("one");

    let (_, reader) = admin.create_key(json!({"name": "reader", "scopes": ["agents.read"]}));
    let reader = w.api(&reader);
    assert_eq!(
        reader.get(&format!("/api/v1/agents/{agent_id}")).status,
        200
    );
    let r = reader.post("/api/v1/agents", &json!({"name": "two"}));
    let err = r.error(403, "forbidden");
    assert!(
        err["message"].as_str().unwrap().contains("agents.write"),
        "{}",
        r.text
    );
    assert_eq!(err["field"], "agents.write");
    // Whatever the body: a key without the scope learns nothing of what
    // the route would take.
    for (method, path, body) in [
        ("POST", "/api/v1/agents".to_string(), json!({"zzz": 1})),
        (
            "PATCH",
            format!("/api/v1/agents/{agent_id}"),
            json!({"tags": null}),
        ),
        ("POST", "/api/v1/policies".to_string(), json!({})),
        ("POST", "/api/v1/policies/test".to_string(), json!({"x": 1})),
        ("POST", "/api/v1/api-keys".to_string(), json!({"zzz": 1})),
        ("POST", "/api/v1/enforce".to_string(), json!({})),
        ("POST", "/v1/enforce".to_string(), json!({})),
        ("POST", "/api/v1/siem/search".to_string(), json!({"zzz": 1})),
        ("PUT", "/api/v1/events/retention".to_string(), json!({})),
    ] {
        let r = reader.send(method, &path, Some(&body), &[]);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
        assert!(
            r.body["error"]["field"].is_string(),
            "{method} {path}: {}",
            r.text
        );
    }
    let r = reader.send("POST", "/v1/events/batch", Some(&json!({"zzz": 1})), &[]);
    let err = r.error(403, "forbidden");
    assert_eq!(
        err["message"], "this operation needs the `events.ingest` or `enforce` scope",
        "{}",
        r.text
    );
    reader
        .delete(&format!("/api/v1/agents/{agent_id}"))
        .error(403, "forbidden");
    let r = reader.get("/api/v1/api-keys");
    assert!(r.error(403, "forbidden")["message"]
        .as_str()
        .unwrap()
        .contains("keys.read"));

    // A key can only grant what it holds.
    let (_, minter) =
        admin.create_key(json!({"name": "minter", "scopes": ["keys.write", "agents.read"]}));
    let minter = w.api(&minter);
    minter.create_key(json!({"name": "ok", "scopes": ["agents.read"]}));
    let r = minter.post(
        "/api/v1/api-keys",
        &json!({"name": "escalate", "scopes": ["agents.write"]}),
    );
    let err = r.error(403, "forbidden");
    assert!(err["message"].as_str().unwrap().contains("agents.write"));
    assert_eq!(err["field"], "scopes", "{}", r.text);
    minter
        .post(
            "/api/v1/api-keys",
            &json!({"name": "escalate", "scopes": ["admin"]}),
        )
        .error(403, "forbidden");
    // Managing keys never reaches a stronger key: no rotating or revoking
    // the admin key (a rotation would hand out its new secret).
    let admin_id = admin.get("/api/v1/api-keys?limit=200").body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "live admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = minter.post(&format!("/api/v1/api-keys/{admin_id}/rotate"), &json!({}));
    assert!(r.error(403, "forbidden")["message"]
        .as_str()
        .unwrap()
        .contains("admin"));
    assert!(r.body["data"].get("key").is_none());
    minter
        .delete(&format!("/api/v1/api-keys/{admin_id}"))
        .error(403, "forbidden");
    assert_eq!(
        admin.get("/api/v1/agents").status,
        200,
        "the admin key still works"
    );
    let (own_id, _) = minter.create_key(json!({"name": "mine", "scopes": ["agents.read"]}));
    assert_eq!(
        minter
            .post(&format!("/api/v1/api-keys/{own_id}/rotate"), &json!({}))
            .status,
        200
    );
    assert_eq!(
        minter.delete(&format!("/api/v1/api-keys/{own_id}")).status,
        204
    );
    // Only admin crosses environments.
    minter
        .post(
            "/api/v1/api-keys",
            &json!({"name": "x", "scopes": ["agents.read"], "environment": "test"}),
        )
        .error(403, "forbidden");
    let (test_key_id, test_secret) =
        admin.create_key(json!({"name": "t", "scopes": ["agents.read"], "environment": "test"}));
    assert!(test_secret.starts_with("wdn_test_"));
    // Never the other way: a test admin key makes no live key.
    let r = w.api(&t.test_key).post(
        "/api/v1/api-keys",
        &json!({"name": "escalate", "scopes": ["admin"], "environment": "live"}),
    );
    assert_eq!(
        r.error(403, "forbidden")["field"],
        "environment",
        "{}",
        r.text
    );
    admin
        .get(&format!("/api/v1/api-keys/{test_key_id}"))
        .error(404, "not_found");
    // Unknown scopes are named with the allowed ones.
    let r = admin.post(
        "/api/v1/api-keys",
        &json!({"name": "x", "scopes": ["agents.read", "agents.delete"]}),
    );
    let err = r.error(400, "invalid_request");
    assert_eq!(err["field"], "scopes[1]");
    assert!(err["message"].as_str().unwrap().contains("agents.write"));
    // Missing and bad credentials: 401.
    let anon = w.anonymous();
    let r = anon.get("/api/v1/agents");
    r.error(401, "unauthorized");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"warden\"")
    );
    anon.with_key("wdn_live_notakeyatall")
        .get("/api/v1/agents")
        .error(401, "unauthorized");
    anon.with_key(&format!("wdn_live_{}", "A".repeat(43)))
        .get("/api/v1/agents")
        .error(401, "unauthorized");
    let r = anon.send(
        "GET",
        "/api/v1/agents",
        None,
        &[("x-api-key", t.live_key.as_str())],
    );
    assert_eq!(r.status, 200, "X-Api-Key is accepted as well as Bearer");
    // `Bearer ` written into X-Api-Key is named as the mistake it is.
    let r = anon.send(
        "GET",
        "/api/v1/agents",
        None,
        &[("x-api-key", format!("Bearer {}", t.live_key).as_str())],
    );
    let e = r.error(401, "unauthorized");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not alone in the credential"),
        "{e}"
    );
    for buried in [
        format!("Token {}", t.live_key),
        format!("\"{}\"", t.live_key),
    ] {
        let r = anon.send(
            "GET",
            "/api/v1/agents",
            None,
            &[("x-api-key", buried.as_str())],
        );
        let e = r.error(401, "unauthorized");
        assert!(e["message"].as_str().unwrap().contains("not alone"), "{e}");
    }
    // A credential header sent twice is refused: a proxy reading the last
    // copy and Warden the first would disagree on who calls.
    for header in ["authorization", "x-api-key"] {
        let value = if header == "authorization" {
            format!("Bearer {}", t.live_key)
        } else {
            t.live_key.clone()
        };
        let r = anon.send(
            "GET",
            "/api/v1/agents",
            None,
            &[(header, value.as_str()), (header, value.as_str())],
        );
        // Named as the header is written, whatever the client's case.
        let named = if header == "authorization" {
            "Authorization"
        } else {
            "X-Api-Key"
        };
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            named,
            "{}",
            r.text
        );
    }
    // A proxy's Basic credential, or an empty header, does not hide it.
    for authorization in ["Basic dXNlcjpwYXNz", ""] {
        let r = anon.send(
            "GET",
            "/api/v1/agents",
            None,
            &[
                ("authorization", authorization),
                ("x-api-key", t.live_key.as_str()),
            ],
        );
        assert_eq!(r.status, 200, "{authorization:?}: {}", r.text);
    }
}

fn keys_are_secret_revocable_and_rotatable(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let admin = w.api(&t.live_key);
    let r = admin.post(
        "/api/v1/api-keys",
        &json!({"name": "ci", "scopes": ["agents.read"], "expires_at": "2099-01-01T00:00:00Z"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let key = r.body["data"].clone();
    let secret = key["key"].as_str().unwrap().to_string();
    let id = key["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("wdn_live_") && secret.len() == 9 + 43);
    assert_eq!(key["prefix"], "wdn_live_");
    assert_eq!(
        key["last_four"].as_str().unwrap(),
        &secret[secret.len() - 4..]
    );
    assert_eq!(key["expires_at"], "2099-01-01T00:00:00.000Z");

    // Listing and reading never show the secret.
    let listed = admin.get("/api/v1/api-keys");
    assert_eq!(listed.status, 200);
    assert!(!listed.text.contains(&secret[9..]), "list leaks the secret");
    assert_eq!(
        listed.body["data"].as_array().unwrap().len(),
        2,
        "the live admin key and this one"
    );
    let one = admin.get(&format!("/api/v1/api-keys/{id}"));
    assert!(one.body["data"].get("key").is_none());
    assert!(!one.text.contains(&secret[9..]));
    // The store holds no plaintext key.
    let user = w.api(&secret);
    assert_eq!(user.get("/api/v1/agents").status, 200);
    let raw = backend.raw_contents();
    for plain in [&secret, &t.live_key, &t.test_key] {
        assert!(
            !raw.contains(&plain[9..]),
            "the store holds a plaintext key"
        );
    }

    // Use is recorded (in batches, within seconds).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let seen = admin.get(&format!("/api/v1/api-keys/{id}"));
        if seen.body["data"]["last_used_at"].is_string() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "last_used_at never set: {}",
            seen.text
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Rotation with a grace period: both secrets work, then only the new.
    let token_of = |secret: &str| -> String {
        let r = admin.post("/api/v1/auth/token", &json!({"api_key": secret}));
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["data"]["token"].as_str().unwrap().to_string()
    };
    let first_token = token_of(&secret);
    let r = admin.post(
        &format!("/api/v1/api-keys/{id}/rotate"),
        &json!({"grace_period_seconds": 3600}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let rotated = r.body["data"]["key"].as_str().unwrap().to_string();
    assert_ne!(rotated, secret);
    assert_eq!(r.body["data"]["id"], id.as_str());
    assert_eq!(w.api(&rotated).get("/api/v1/agents").status, 200);
    assert_eq!(
        user.get("/api/v1/agents").status,
        200,
        "old secret works during the grace period"
    );
    // Tokens of either secret work during the grace period too.
    assert_eq!(w.api(&first_token).get("/api/v1/agents").status, 200);
    let rotated_token = token_of(&rotated);
    let r = admin.send("POST", &format!("/api/v1/api-keys/{id}/rotate"), None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let newest = r.body["data"]["key"].as_str().unwrap().to_string();
    w.api(&rotated)
        .get("/api/v1/agents")
        .error(401, "unauthorized");
    assert_eq!(w.api(&newest).get("/api/v1/agents").status, 200);
    // A rotation without grace ends the tokens of the secrets it replaced
    // (a leaked secret's token must not outlive the rotation that answers
    // the leak); the new secret's tokens work.
    for token in [&first_token, &rotated_token] {
        let r = w.api(token).get("/api/v1/agents");
        assert!(
            r.error(401, "unauthorized")["message"]
                .as_str()
                .unwrap()
                .contains("rotated"),
            "{}",
            r.text
        );
    }
    assert_eq!(w.api(&token_of(&newest)).get("/api/v1/agents").status, 200);

    // An idempotent creation is replayed only to the key that made it, and
    // the recorded response (which holds the secret) is not stored in clear.
    let body = json!({"name": "replayable", "scopes": ["agents.read"]});
    let first = admin.send(
        "POST",
        "/api/v1/api-keys",
        Some(&body),
        &[("Idempotency-Key", "mint-1")],
    );
    assert_eq!(first.status, 201, "{}", first.text);
    let minted = first.body["data"]["key"].as_str().unwrap().to_string();
    let again = admin.send(
        "POST",
        "/api/v1/api-keys",
        Some(&body),
        &[("Idempotency-Key", "mint-1")],
    );
    assert_eq!(again.body["data"]["key"].as_str(), Some(minted.as_str()));
    assert!(
        !backend.raw_contents().contains(&minted[9..]),
        "a recorded response holds a secret in clear"
    );
    let (_, other_admin) = admin.create_key(json!({"name": "second admin", "scopes": ["admin"]}));
    let other = w.api(&other_admin).send(
        "POST",
        "/api/v1/api-keys",
        Some(&body),
        &[("Idempotency-Key", "mint-1")],
    );
    assert_eq!(other.status, 201);
    assert_ne!(
        other.body["data"]["key"].as_str(),
        Some(minted.as_str()),
        "another key never gets the replay"
    );

    // Revocation: the next request is refused, tokens included.
    let token = admin.post("/api/v1/auth/token", &json!({"api_key": newest}));
    assert_eq!(token.status, 200, "{}", token.text);
    let token = token.body["data"]["token"].as_str().unwrap().to_string();
    assert_eq!(w.api(&token).get("/api/v1/agents").status, 200);
    assert_eq!(admin.delete(&format!("/api/v1/api-keys/{id}")).status, 204);
    let r = w.api(&newest).get("/api/v1/agents");
    assert!(r.error(401, "unauthorized")["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    w.api(&token)
        .get("/api/v1/agents")
        .error(401, "unauthorized");
    admin
        .delete(&format!("/api/v1/api-keys/{id}"))
        .error(422, "unprocessable");
    assert_eq!(
        admin.get(&format!("/api/v1/api-keys/{id}")).body["data"]["status"],
        "revoked"
    );
    w.anonymous()
        .post("/api/v1/auth/token", &json!({"api_key": newest}))
        .error(401, "unauthorized");
}

fn token_exchange(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let admin = w.api(&t.live_key);
    let id = admin.create_agent("a");
    let (_, reader) = admin.create_key(json!({"name": "reader", "scopes": ["agents.read"]}));
    let anon = w.anonymous();
    let r = anon.post("/api/v1/auth/token", &json!({"api_key": reader}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["token_type"], "Bearer");
    assert_eq!(r.body["data"]["expires_in"], 3600);
    assert!(r.header("x-ratelimit-limit").is_some());
    let token = r.body["data"]["token"].as_str().unwrap().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let as_token = w.api(&token);
    assert_eq!(as_token.get(&format!("/api/v1/agents/{id}")).status, 200);
    let r = as_token.post("/api/v1/agents", &json!({"name": "b"}));
    assert!(r.error(403, "forbidden")["message"]
        .as_str()
        .unwrap()
        .contains("agents.write"));
    // The token carries its tenant: the test environment sees nothing of live.
    let test_token = anon
        .post("/api/v1/auth/token", &json!({"api_key": t.test_key}))
        .body["data"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    w.api(&test_token)
        .get(&format!("/api/v1/agents/{id}"))
        .error(404, "not_found");
    // Forged or garbled tokens and bad bodies.
    let mut forged = token.clone();
    forged.replace_range(forged.len() - 6.., "AAAAAA");
    w.api(&forged)
        .get("/api/v1/agents")
        .error(401, "unauthorized");
    anon.post("/api/v1/auth/token", &json!({"api_key": "nope"}))
        .error(401, "unauthorized");
    let r = anon.post("/api/v1/auth/token", &json!({"key": reader}));
    assert_eq!(r.error(400, "invalid_request")["field"], "key");
}

fn network_limits_and_agent_binding(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &["--trusted-proxy", "127.0.0.1/32"]);
    let admin = w.api(&t.live_key);
    let (_, office_key) = admin.create_key(
        json!({"name": "office", "scopes": ["agents.read"], "allowed_cidrs": ["10.0.0.0/8"]}),
    );
    let office = w.api(&office_key);
    let anon = w.anonymous();
    let r = office.get("/api/v1/agents");
    assert!(r.error(403, "forbidden")["message"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1"));
    // Behind the trusted proxy, the forwarded address counts.
    let r = office.send(
        "GET",
        "/api/v1/agents",
        None,
        &[("x-forwarded-for", "10.1.2.3")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = office.send(
        "GET",
        "/api/v1/agents",
        None,
        &[("x-forwarded-for", "192.0.2.1")],
    );
    r.error(403, "forbidden");
    // Refusals for the address take nothing from the organization's
    // bucket: the admin key's remaining count moves by its own requests.
    let remaining = |r: &Reply| -> i64 {
        r.header("x-ratelimit-remaining")
            .expect("the limit headers")
            .parse()
            .unwrap()
    };
    let before = remaining(&admin.get("/api/v1/agents"));
    for _ in 0..5 {
        let r = office.get("/api/v1/agents");
        r.error(403, "forbidden");
        assert!(r.header("x-ratelimit-remaining").is_none());
        anon.post("/api/v1/auth/token", &json!({"api_key": office_key}))
            .error(403, "forbidden");
    }
    let after = remaining(&admin.get("/api/v1/agents"));
    assert!(
        after >= before - 1,
        "refusals for the address spent the budget: {before} then {after}"
    );
    // A key refused for its network is not marked used: a witness key used
    // after it shows the usage was written.
    let (refused_id, refused) = admin.create_key(
        json!({"name": "elsewhere", "scopes": ["agents.read"], "allowed_cidrs": ["10.0.0.0/8"]}),
    );
    let (witness_id, witness) =
        admin.create_key(json!({"name": "witness", "scopes": ["agents.read"]}));
    w.api(&refused)
        .get("/api/v1/agents")
        .error(403, "forbidden");
    assert_eq!(w.api(&witness).get("/api/v1/agents").status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !admin.get(&format!("/api/v1/api-keys/{witness_id}")).body["data"]["last_used_at"]
        .is_string()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the witness key's use was never written"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let refused_key = admin.get(&format!("/api/v1/api-keys/{refused_id}"));
    assert!(
        refused_key.body["data"]["last_used_at"].is_null(),
        "a key refused for its network counts as used: {}",
        refused_key.text
    );
    // A spoofed entry cannot be reached past one the proxy wrote unreadably.
    let r = office.send(
        "GET",
        "/api/v1/agents",
        None,
        &[("x-forwarded-for", "10.1.2.3, unknown")],
    );
    r.error(403, "forbidden");
    let r = admin.post(
        "/api/v1/api-keys",
        &json!({"name": "x", "scopes": ["agents.read"], "allowed_cidrs": ["not-a-range"]}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "allowed_cidrs[0]");
    // A name that would look like another in every listing is refused.
    for name in [
        "ci\u{200b}deploy",
        "ci\u{2800}",
        "ci\u{fffe}",
        "ci\u{a0}deploy",
    ] {
        let r = admin.post(
            "/api/v1/api-keys",
            &json!({"name": name, "scopes": ["agents.read"]}),
        );
        assert_eq!(r.error(400, "invalid_request")["field"], "name");
    }
    // A key that would reach past its creator is forbidden, the field
    // naming what reaches too far; so is managing a stronger key.
    let r = admin.post(
        "/api/v1/api-keys",
        &json!({"name": "minter", "scopes": ["keys.write", "agents.read"],
                "expires_at": "2099-01-01T00:00:00Z", "allowed_cidrs": ["127.0.0.0/8"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let minter = w.api(r.body["data"]["key"].as_str().unwrap());
    for (body, field) in [
        (json!({"name": "w", "scopes": ["agents.write"]}), "scopes"),
        (
            json!({"name": "w", "scopes": ["agents.read"], "expires_at": "2099-06-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "w", "scopes": ["agents.read"], "allowed_cidrs": ["0.0.0.0/0"]}),
            "allowed_cidrs[0]",
        ),
    ] {
        let r = minter.post("/api/v1/api-keys", &body);
        assert_eq!(r.error(403, "forbidden")["field"], field, "{body}");
    }
    let (strong_id, _) = admin.create_key(json!({"name": "strong", "scopes": ["agents.write"]}));
    let r = minter.delete(&format!("/api/v1/api-keys/{strong_id}"));
    assert_eq!(r.error(403, "forbidden")["field"], "scopes");

    // A key bound to an agent sees only that agent and registers none.
    let mine = admin.create_agent("mine");
    let other = admin.create_agent("other");
    let (_, bound) = admin.create_key(
        json!({"name": "sdk", "scopes": ["agents.read", "agents.write", "keys.read"], "agent_id": mine}),
    );
    let bound = w.api(&bound);
    assert_eq!(bound.agent_ids(), vec![mine.clone()]);
    assert_eq!(bound.get(&format!("/api/v1/agents/{mine}")).status, 200);
    bound
        .get(&format!("/api/v1/agents/{other}"))
        .error(404, "not_found");
    // Another agent is not found whatever the change names.
    for change in [json!({"description": "x"}), json!({"status": "suspended"})] {
        bound
            .patch(&format!("/api/v1/agents/{other}"), &change)
            .error(404, "not_found");
    }
    bound
        .post("/api/v1/agents", &json!({"name": "new"}))
        .error(403, "forbidden");
    // It cannot lift its own suspension, nor delete itself.
    bound
        .patch(
            &format!("/api/v1/agents/{mine}"),
            &json!({"status": "active"}),
        )
        .error(403, "forbidden");
    // Nor step out from under a policy aimed at it.
    for (change, field) in [
        (json!({"tags": []}), "tags"),
        (json!({"external_id": "someone-else"}), "external_id"),
        (json!({"name": "innocent"}), "name"),
    ] {
        let r = bound.patch(&format!("/api/v1/agents/{mine}"), &change);
        assert_eq!(r.error(403, "forbidden")["field"], field);
    }
    bound
        .delete(&format!("/api/v1/agents/{mine}"))
        .error(403, "forbidden");
    assert_eq!(
        bound
            .patch(
                &format!("/api/v1/agents/{mine}"),
                &json!({"description": "mine"})
            )
            .status,
        200
    );
    // It sees only keys bound to the same agent: itself.
    let keys = bound.get("/api/v1/api-keys?limit=200");
    let names: Vec<_> = keys.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sdk"]);
    let r = admin.post(
        "/api/v1/api-keys",
        &json!({"name": "x", "scopes": ["agents.read"], "agent_id": "agt_missing"}),
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "agent_id");
    // Scopes a bound key could never use are refused by name, not minted
    // to fail with a 403 at every use.
    for dead in ["policies.read", "policies.write", "holds.write"] {
        let r = admin.post(
            "/api/v1/api-keys",
            &json!({"name": "x", "scopes": ["enforce", dead], "agent_id": mine}),
        );
        let e = r.error(400, "invalid_request");
        assert_eq!(e["field"], "scopes", "{}", r.text);
        assert!(e["message"].as_str().unwrap().contains(dead), "{}", r.text);
    }
    // An agent may be named by its external id, as enforcement takes it;
    // the key is bound to its Warden id.
    let r = admin.post(
        "/api/v1/agents",
        &json!({"name": "by-external", "external_id": "ext-sdk"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let agent = r.body["data"]["id"].as_str().unwrap().to_string();
    // Read by its external id too, as enforcement names it.
    let r = admin.get("/api/v1/agents/ext-sdk");
    assert_eq!(r.body["data"]["id"], agent.as_str(), "{}", r.text);
    let r = admin.get("/api/v1/agents/ext-sdk/drift");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = admin.post(
        "/api/v1/api-keys",
        &json!({"name": "ext", "scopes": ["enforce", "keys.write"], "agent_id": "ext-sdk"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["agent_id"], agent.as_str(), "{}", r.text);
    // That key names its own agent the same way.
    let bound = w.api(r.body["data"]["key"].as_str().unwrap());
    let r = bound.post(
        "/api/v1/api-keys",
        &json!({"name": "ext 2", "scopes": ["enforce"], "agent_id": "ext-sdk"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["agent_id"], agent.as_str(), "{}", r.text);
    // A key bound to another agent does not see it by that name either.
    let other_bound = w.api(&key_for(&admin, &mine));
    other_bound
        .get("/api/v1/agents/ext-sdk")
        .error(404, "not_found");
}

/// A key bound to `agent` that may read agents.
fn key_for(admin: &common::Api, agent: &str) -> String {
    admin
        .create_key(json!({"name": format!("bound to {agent}"), "scopes": ["agents.read"], "agent_id": agent}))
        .1
}

/// A console command that must succeed; its output.
fn cli_ok(backend: &Backend, args: &[&str]) -> std::process::Output {
    let out = backend.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn operator_key_commands(backend: &Backend) {
    let t = backend.init();
    let out = cli_ok(
        backend,
        &[
            "keys",
            "create",
            "--org",
            &t.org_id,
            "--name",
            "ops",
            "--scope",
            "agents.read",
            "--json",
        ],
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    let out = backend.cli(&["keys", "list", "--org", &t.org_id, "--json"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listed.contains(&id) && !listed.contains(&secret[9..]));
    // A mistyped organization is said, not listed as having no keys.
    let out = backend.cli(&["keys", "list", "--org", "org_nonexistent"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no organization"));
    // Under `--json` the error is one JSON object too, on standard error,
    // and standard output stays empty.
    let out = backend.cli(&["keys", "list", "--org", "org_nonexistent", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{out:?}");
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no organization"),
        "{error}"
    );
    let w = Warden::start(backend, &[]);
    assert_eq!(w.api(&secret).get("/api/v1/agents").status, 200);
    let out = cli_ok(backend, &["keys", "revoke", &id, "--json"]);
    let revoked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(revoked["id"], id.as_str());
    assert_eq!(revoked["name"], "ops");
    assert_eq!(revoked["revoked"], true);
    // Revoking it again is refused, in JSON as asked.
    let out = backend.cli(&["keys", "revoke", &id, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already revoked"),
        "{error}"
    );
    // A running server refuses it within a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.api(&secret)
        .get("/api/v1/agents")
        .error(401, "unauthorized");
    // The console's listing says when, as the API's does.
    let out = backend.cli(&["keys", "list", "--org", &t.org_id, "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let revoked = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert!(revoked["rotated_at"].is_null(), "{revoked}");
    let out = backend.cli(&[
        "keys",
        "create",
        "--org",
        &t.org_id,
        "--name",
        "bad",
        "--scope",
        "agents.fly",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("agents.fly"));
    // As through the API, a bound key cannot be given scopes it can never use.
    let agent = w.api(&t.live_key).create_agent("cli-bot");
    let out = backend.cli(&[
        "keys",
        "create",
        "--org",
        &t.org_id,
        "--name",
        "dead",
        "--scope",
        "enforce,holds.write",
        "--agent-id",
        &agent,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds.write"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The console's changes are in the key's chain, by `cli`, and the
    // running server's own appends chain on after them.
    let api = w.api(&t.live_key);
    let log = api.get("/api/v1/audit?kind=key_change");
    let records = log.body["data"].as_array().unwrap();
    let changes: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["detail"]["change"].as_str().unwrap(),
                r["detail"]["key"]["id"].as_str().unwrap(),
                r["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("revoked", id.as_str(), "cli"),
            ("created", id.as_str(), "cli")
        ],
        "{}",
        log.text
    );
    assert_eq!(
        records[1]["detail"]["key"]["scopes"],
        json!(["agents.read"])
    );
    assert!(!log.text.contains(&secret[9..]), "{}", log.text);
    api.create_agent("after-cli");
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["data"]["valid"], true, "{}", v.text);
    console_rotation(backend, &w, &t, &id);
}

/// `warden keys rotate`: the new secret works at once; the old one is
/// kept through a grace period and refused within a second without one;
/// the text listing shows a key's limits.
fn console_rotation(backend: &Backend, w: &Warden, t: &common::Tenant, revoked_id: &str) {
    let org = t.org_id.as_str();
    let out = cli_ok(
        backend,
        &[
            "keys",
            "create",
            "--org",
            org,
            "--name",
            "rot",
            "--scope",
            "agents.read",
            "--allowed-cidr",
            "127.0.0.0/8",
            "--expires-at",
            "2030-01-01T00:00:00Z",
            "--json",
        ],
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let first = created["key"].as_str().unwrap().to_string();
    let out = backend.cli(&["keys", "list", "--org", org]);
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(&id))
        .map(str::to_string)
        .unwrap();
    assert!(line.contains("from 127.0.0.0/8"), "{line}");
    assert!(line.contains("expires 2030-01-01T00:00:00"), "{line}");

    let out = cli_ok(
        backend,
        &[
            "keys",
            "rotate",
            &id,
            "--grace-period-seconds",
            "600",
            "--json",
        ],
    );
    let rotated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(rotated["id"], id.as_str());
    assert!(rotated["rotated_at"].is_string(), "{rotated}");
    assert!(rotated["previous_valid_until"].is_string(), "{rotated}");
    // The grace period shows wherever the key does, while it runs.
    let until = rotated["previous_valid_until"]
        .as_str()
        .unwrap()
        .to_string();
    let out = cli_ok(backend, &["keys", "list", "--org", org]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains(&format!("previous secret until {until}")),
        "{said}"
    );
    let shown = w.api(&t.live_key).get(&format!("/api/v1/api-keys/{id}"));
    assert_eq!(
        shown.body["data"]["previous_valid_until"],
        until.as_str(),
        "{}",
        shown.text
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(w.api(&first).get("/api/v1/agents").status, 200);
    assert_eq!(w.api(&second).get("/api/v1/agents").status, 200);

    // Without a grace period the secret before is refused; rotating again
    // ends the earlier grace period too.
    let out = cli_ok(backend, &["keys", "rotate", &id]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let third = said
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("wdn_live_"))
        .unwrap()
        .to_string();
    assert!(said.contains("shown once"), "{said}");
    let shown = w.api(&t.live_key).get(&format!("/api/v1/api-keys/{id}"));
    assert!(
        shown.body["data"]["previous_valid_until"].is_null(),
        "{}",
        shown.text
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.api(&first)
        .get("/api/v1/agents")
        .error(401, "unauthorized");
    w.api(&second)
        .get("/api/v1/agents")
        .error(401, "unauthorized");
    assert_eq!(w.api(&third).get("/api/v1/agents").status, 200);

    for (args, says) in [
        (
            vec!["keys", "rotate", &id, "--grace-period-seconds", "604801"],
            "--grace-period-seconds",
        ),
        (vec!["keys", "rotate", revoked_id], "revoked"),
        (vec!["keys", "rotate", "key_nonexistent"], "no key"),
    ] {
        let out = backend.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // Each rotation is the key's record, by `cli`, never with a secret.
    let log = w.api(&t.live_key).get("/api/v1/audit?kind=key_change");
    let rotations: Vec<&serde_json::Value> = log.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["detail"]["key"]["id"] == id.as_str() && r["detail"]["change"] == "rotated")
        .collect();
    assert_eq!(rotations.len(), 2, "{}", log.text);
    assert!(
        rotations.iter().all(|r| r["actor"] == "cli"),
        "{}",
        log.text
    );
    for secret in [&first, &second, &third] {
        assert!(!log.text.contains(&secret[9..]), "{}", log.text);
    }
}

/// A key minted for an agent while the agent is being deleted either is
/// refused or is revoked with the others: none outlives its agent.
fn no_key_outlives_its_agent(backend: &Backend) {
    backend.init();
    // Limits far above the race, so that no request is refused for them.
    let t = backend.create_org(
        "Race",
        &[
            "--plan",
            "custom",
            "--rate-limit-per-minute",
            "6000000",
            "--burst",
            "1000000",
        ],
    );
    let w = Warden::start(backend, &[]);
    let admin = w.api(&t.live_key);
    for round in 0..3 {
        let agent = admin.create_agent(&format!("doomed-{round}"));
        let (_, own) = admin.create_key(json!({"name": "own", "agent_id": agent,
            "scopes": ["keys.write", "events.write"]}));
        let minter = w.api(&own);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        minter.post(
                            "/api/v1/api-keys",
                            &json!({"name": "child", "scopes": ["events.write"]}),
                        );
                    }
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            let deleted = admin.delete(&format!("/api/v1/agents/{agent}"));
            std::thread::sleep(std::time::Duration::from_millis(100));
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(deleted.status, 204, "{}", deleted.text);
        });
        let mut path = "/api/v1/api-keys?limit=200".to_string();
        loop {
            let page = admin.get(&path);
            for key in page.body["data"].as_array().unwrap() {
                if key["agent_id"] == agent.as_str() {
                    assert_eq!(key["status"], "revoked", "{key}");
                    // Never revoked before it was minted (RFC 3339 in UTC
                    // with milliseconds sorts as text).
                    let (made, ended) = (key["created_at"].as_str(), key["revoked_at"].as_str());
                    assert!(ended >= made, "{key}");
                }
            }
            match page.body["next_cursor"].as_str() {
                Some(c) => path = format!("/api/v1/api-keys?limit=200&cursor={c}"),
                None => break,
            }
        }
    }
}

/// Rotations of one key at once: each answer with a secret is a rotation
/// that applied to the secret it read; one that lost the race is a 409 and
/// hands out no secret that never worked.
fn concurrent_rotations(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let admin = w.api(&t.live_key);
    let (id, _) = admin.create_key(json!({"name": "raced", "scopes": ["agents.read"]}));
    let mut lost = 0;
    for _ in 0..20 {
        let gate = std::sync::Barrier::new(4);
        let answers: Vec<(u16, serde_json::Value)> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let api = w.api(&t.live_key);
                        gate.wait();
                        let r = api.post(&format!("/api/v1/api-keys/{id}/rotate"), &json!({}));
                        (r.status, r.body)
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let mut secrets = Vec::new();
        for (status, body) in &answers {
            match status {
                200 => secrets.push(body["data"]["key"].as_str().unwrap().to_string()),
                409 => {
                    lost += 1;
                    let said = body["error"]["message"].as_str().unwrap();
                    assert!(said.contains("rotated meanwhile"), "{body}");
                }
                other => panic!("{other}: {body}"),
            }
        }
        assert!(!secrets.is_empty(), "{answers:?}");
        // Without a grace period exactly one secret is the key now, and it
        // is one that was handed out.
        let working: Vec<&String> = secrets
            .iter()
            .filter(|s| w.api(s).get("/api/v1/agents").status == 200)
            .collect();
        assert_eq!(working.len(), 1, "{answers:?}");
    }
    assert!(lost > 0, "no rotation lost a race in 20 rounds of four");
}

/// A start refused for another master key migrates nothing: the store is
/// left as the release that made it can open it (here: its last migration
/// taken back, as an older release's store would be).
fn another_master_key_migrates_nothing(backend: &Backend) {
    backend.init();
    let last = backend.sql("SELECT MAX(version) FROM schema_migrations");
    let last = last.trim();
    backend.sql(&format!(
        "DELETE FROM schema_migrations WHERE version = {last}"
    ));
    let other = "cd".repeat(32);
    let out = backend.cli_with_env(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("WARDEN_MASTER_KEY", other.as_str())],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another master key"),
        "{out:?}"
    );
    let now = backend.sql("SELECT MAX(version) FROM schema_migrations");
    assert_ne!(now.trim(), last, "the refused start migrated the store");
    // No key given at all (kept away from the data directory, and not
    // in this shell) is refused before migrating too, by the upgrade's
    // command as by a start.
    for args in [
        &["serve", "--listen", "127.0.0.1:0"][..],
        &["audit", "seal"],
    ] {
        let out = backend.cli_without_master_key(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not given here"),
            "{args:?}: {out:?}"
        );
        let now = backend.sql("SELECT MAX(version) FROM schema_migrations");
        assert_ne!(now.trim(), last, "{args:?} migrated the store");
    }
}

/// A secret the console cannot show (standard output full, its reader
/// gone) is said with what was saved and how to mend it, in an error and
/// exit 1, not a panic; and a key past its expiry is not given a secret
/// that could never work, by the console or the API.
fn secrets_that_cannot_be_shown(backend: &Backend) {
    let t = backend.init();
    let full = || std::fs::File::create("/dev/full").unwrap().into();
    let create = [
        "keys",
        "create",
        "--org",
        &t.org_id,
        "--name",
        "lost",
        "--scope",
        "agents.read",
    ];
    let out = backend.cli_to(&create, full());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let id = err
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .unwrap_or_else(|| panic!("{err}"))
        .to_string();
    assert!(
        err.contains("was created, but its secret could not be written"),
        "{err}"
    );
    assert!(err.contains(&format!("warden keys revoke {id}")), "{err}");
    let listed = cli_ok(backend, &["keys", "list", "--org", &t.org_id]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));

    let out = backend.cli_to(&["keys", "rotate", &id], full());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("key {id} was rotated, but its new secret")),
        "{err}"
    );
    assert!(err.contains("rotate it again"), "{err}");

    let out = backend.cli_to(&["org", "create", "second", "--json"], full());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("admin keys could not be written"), "{err}");
    // The other commands' answers: an error, after what was done all the
    // same; never a panic.
    for (args, says) in [
        (vec!["org", "list"], "could not write to standard output"),
        (
            vec!["keys", "list", "--org", &t.org_id],
            "could not write to standard output",
        ),
        (
            vec!["keys", "revoke", &id],
            "was revoked, but its confirmation could not be written",
        ),
    ] {
        let out = backend.cli_to(&args, full());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(says) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    // A first start shows the new organization's admin keys: one that
    // cannot is told, and stops, rather than serve with keys nobody saw.
    let fresh = if backend.is_postgres() {
        Backend::postgres()
    } else {
        Backend::sqlite()
    };
    let out = fresh.cli_to(&["serve", "--listen", "127.0.0.1:0"], full());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("admin keys could not be written"), "{err}");

    // A grace period that would outlive the key ends with it.
    let hour = warden_core::time::to_rfc3339(warden_core::time::now_ms() + 3_600_000);
    let out = cli_ok(
        backend,
        &[
            "keys",
            "create",
            "--org",
            &t.org_id,
            "--name",
            "hour",
            "--scope",
            "agents.read",
            "--expires-at",
            &hour,
            "--json",
        ],
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = cli_ok(
        backend,
        &[
            "keys",
            "rotate",
            made["id"].as_str().unwrap(),
            "--grace-period-seconds",
            "604800",
            "--json",
        ],
    );
    let rotated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        rotated["previous_valid_until"], made["expires_at"],
        "{rotated}"
    );

    // Keys that expire in a moment, made by the console and by the API.
    let soon = warden_core::time::to_rfc3339(warden_core::time::now_ms() + 1500);
    let out = cli_ok(
        backend,
        &[
            "keys",
            "create",
            "--org",
            &t.org_id,
            "--name",
            "brief",
            "--scope",
            "agents.read",
            "--expires-at",
            &soon,
            "--json",
        ],
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_console = made["id"].as_str().unwrap().to_string();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let r = api.post(
        "/api/v1/api-keys",
        &serde_json::json!({"name": "brief", "scopes": ["agents.read"], "expires_at": soon}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let by_api = r.body["data"]["id"].as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(2000));
    let out = backend.cli(&["keys", "rotate", &by_console]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("expired at") && err.contains("create another"),
        "{err}"
    );
    let r = api.post(
        &format!("/api/v1/api-keys/{by_api}/rotate"),
        &serde_json::json!({}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("expired at"), "{}", r.text);
    // Neither refusal changed the key or recorded a rotation.
    let log = api.get("/api/v1/audit?kind=key_change");
    assert!(
        !log.body["data"].as_array().unwrap().iter().any(|r| {
            r["detail"]["change"] == "rotated"
                && (r["detail"]["key"]["id"] == by_api.as_str()
                    || r["detail"]["key"]["id"] == by_console.as_str())
        }),
        "{}",
        log.text
    );
}

/// The Thoth SDK configured with only an event ingest token sends it
/// alone, in its own header, to its events route: it authenticates there
/// as the key it is, and nowhere else.
fn thoth_event_ingest_token(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let admin = w.api(&t.live_key);
    let (_, ingest) = admin.create_key(json!({"name": "sdk events", "scopes": ["events.ingest"]}));
    let anonymous = w.anonymous();
    let event = json!([{"event_id": "e1", "agent_id": "thoth-agent", "session_id": "s1",
        "event_type": "TOOL_CALL_PRE", "tool_name": "search", "content": "ingest token event"}]);
    let body = serde_json::to_vec(&event).unwrap();
    let token = [
        ("content-type", "application/json"),
        ("X-Thoth-Event-Ingest-Token", ingest.as_str()),
    ];
    let r = anonymous.raw("POST", "/v1/events/batch", body.clone(), &token);
    assert_eq!(r.status, 202, "{}", r.text);
    let stored = loop {
        let r = admin.post(
            "/api/v1/siem/search",
            &json!({"query": "\"ingest token event\""}),
        );
        if r.body["data"]["total"] == 1 {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let stored = &stored.body["data"]["events"][0];
    assert_eq!(
        stored["fields"]["external_agent_id"], "thoth-agent",
        "{stored}"
    );
    // Nowhere else, even on a route its scope would pass.
    let r = anonymous.raw("POST", "/api/v1/events/batch", body.clone(), &token);
    r.error(401, "unauthorized");
    // Not a key: refused as any credential would be.
    let bogus = [
        ("content-type", "application/json"),
        ("X-Thoth-Event-Ingest-Token", "wdn_live_bogus"),
    ];
    anonymous
        .raw("POST", "/v1/events/batch", body.clone(), &bogus)
        .error(401, "unauthorized");
    // Beside an API key, the key wins: a reader's key is refused for its
    // scope whatever token rides along; an empty `X-Api-Key` hides nothing.
    let (_, reader) = admin.create_key(json!({"name": "reader", "scopes": ["agents.read"]}));
    let both = [token[0], token[1], ("X-Api-Key", reader.as_str())];
    let r = anonymous.raw("POST", "/v1/events/batch", body.clone(), &both);
    r.error(403, "forbidden");
    let empty = [token[0], token[1], ("X-Api-Key", "")];
    let r = anonymous.raw("POST", "/v1/events/batch", body.clone(), &empty);
    assert_eq!(r.status, 202, "{}", r.text);
    // Sent twice, it is refused, as the other credential headers are.
    let twice = [token[0], token[1], token[1]];
    let r = anonymous.raw("POST", "/v1/events/batch", body, &twice);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["field"], "X-Thoth-Event-Ingest-Token");
}

on_every_backend!(
    thoth_event_ingest_token,
    secrets_that_cannot_be_shown,
    another_master_key_migrates_nothing,
    concurrent_rotations,
    tenants_and_environments_are_isolated,
    no_key_outlives_its_agent,
    scopes_are_enforced,
    keys_are_secret_revocable_and_rotatable,
    token_exchange,
    network_limits_and_agent_binding,
    operator_key_commands,
);
