//! Telemetry through the real binary: events in (batch, NDJSON, syslog from
//! the real `logger`, decisions), the durable log and its index across
//! `kill -9` and `warden reindex`, the search language operator by
//! operator, exact totals and histograms, retention, tenant isolation, and
//! bad input refused whole.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use common::{log_path, Api, Backend, CrashLoad, Warden};
use serde_json::{json, Value};

fn ingest(api: &Api, events: Value) -> Vec<String> {
    let r = api.post("/api/v1/events/batch", &events);
    assert_eq!(r.status, 202, "{}", r.text);
    let ids: Vec<String> = r.body["data"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(r.body["data"]["accepted"], ids.len());
    ids
}

/// Log lines as a shipper sends them to `POST /api/v1/events/ndjson`.
fn post_ndjson(api: &Api, body: Vec<u8>) -> common::Reply {
    api.raw(
        "POST",
        "/api/v1/events/ndjson",
        body,
        &[("content-type", "application/x-ndjson")],
    )
}

fn search(api: &Api, body: Value) -> Value {
    let r = api.post("/api/v1/siem/search", &body);
    assert_eq!(r.status, 200, "{body}: {}", r.text);
    r.body["data"].clone()
}

fn total(api: &Api, query: &str) -> u64 {
    search(api, json!({"query": query, "limit": 0}))["total"]
        .as_u64()
        .unwrap()
}

/// Polls until `query` finds `expected` events: indexing is asynchronous
/// (the log is durable at the 2xx, the index follows within a second).
fn wait_total(api: &Api, query: &str, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = total(api, query);
        if n == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{query}` finds {n} events, expected {expected}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn names(api: &Api, query: &str) -> BTreeSet<String> {
    let data = search(
        api,
        json!({"query": query, "limit": 1000, "from_time": "now-2d"}),
    );
    data["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fields"]["name"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn ago(ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    rfc3339(now - ms)
}

fn rfc3339(ms: i64) -> String {
    warden_core::time::to_rfc3339(ms)
}

fn store_count(backend: &Backend, org: &str) -> u64 {
    backend
        .sql(&format!(
            "SELECT COUNT(*) FROM events WHERE org_id = '{org}'"
        ))
        .trim()
        .parse()
        .unwrap()
}

/// The fixed events the operator table searches, each named by `name`.
fn corpus() -> Value {
    json!([
        {"timestamp": ago(60_000), "host": "web-01", "program": "sshd", "severity": "high",
         "message": "Failed password for root from 10.0.0.5 port 22 ssh2", "tags": ["auth", "ssh"],
         "name": "a", "user": "root", "status": 401, "geo": {"country": "FR"}, "src_ip": "10.0.0.5"},
        {"timestamp": ago(120_000), "host": "web-02", "program": "sshd", "severity": "info",
         "message": "Accepted publickey for alice from 10.0.0.7", "tags": ["auth"],
         "name": "b", "user": "alice", "status": 200, "src_ip": "10.0.0.7"},
        {"timestamp": ago(180_000), "host": "db-01", "program": "nginx", "severity": "medium",
         "message": "GET /admin/login HTTP/1.1 500", "name": "c", "user": "Administrator",
         "path": "/admin/login", "status": 500, "bytes": 1234, "src_ip": "192.168.1.20",
         "rule": "10.0.0.0/8"},
        {"timestamp": ago(240_000), "host": "db-01", "program": "nginx", "severity": "low",
         "message": "GET /index.html HTTP/1.1 200", "name": "d", "status": 200, "bytes": 10,
         "code": "1E3", "stack": "Traceback\nValueError", "referer": "-",
         "acct": 9007199254740992_u64, "src_ip": "2001:DB8::1"},
        {"timestamp": ago(3 * 3_600_000), "source": "agent", "program": "cron", "severity": "critical",
         "message": "disk failure on /dev/sda", "agent_id": "agt_x", "session_id": "s1",
         "fields": {"name": "e", "geo": {"country": "DE"}, "src_ip": "::ffff:10.1.2.3"}}
    ])
}

fn every_operator_of_the_language(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    ingest(&api, corpus());
    wait_total(&api, "", 5);
    let cases: &[(&str, &str)] = &[
        ("failed", "a"),
        ("FAILED", "a"),
        ("\"failed password\"", "a"),
        ("\"password failed\"", ""),
        ("10.0.0.5", "a"),
        ("admin", "c"),
        ("\"/dev/sda\"", "e"),
        // Runs of pieces inside a longer word, as a term or in a phrase.
        ("dev/sda", "e"),
        ("admin/login", "c"),
        ("\"GET admin/login\"", "c"),
        ("\"on dev/sda\"", "e"),
        ("login/admin", ""),
        // A wildcard term of several pieces starts at any piece.
        ("dev/sd*", "e"),
        ("admin/log?n", "c"),
        ("etc/*", ""),
        ("*ssword", "a"),
        ("fail*", "ae"),
        ("failur?", "e"),
        ("f?iled", "a"),
        ("program:sshd", "ab"),
        ("program:SSHD", "ab"),
        ("program:\"sshd\"", "ab"),
        ("program:\"SSHD\"", ""),
        ("user:ROOT", "a"),
        ("program:sshd AND user:root", "a"),
        ("program:sshd && user:root", "a"),
        ("program:sshd user:root", "a"),
        ("program:sshd OR program:cron", "abe"),
        ("program:sshd || program:cron", "abe"),
        ("program:sshd -user:root", "b"),
        ("program:sshd NOT user:root", "b"),
        ("program:sshd !user:root", "b"),
        ("NOT program:sshd", "cde"),
        ("-program:sshd", "cde"),
        ("program:cron OR program:sshd user:root", "ae"),
        ("(program:cron OR program:sshd) user:root", "a"),
        ("program:nginx AND (status:500 OR bytes:10)", "cd"),
        ("program:(sshd OR cron)", "abe"),
        ("user:(root OR alice)", "ab"),
        ("user:*min*", "c"),
        ("user:adm?nistrator", "c"),
        ("user:*ice", "b"),
        ("host:db-*", "cd"),
        // A wildcard spans the lines of a multi-line value.
        ("stack:Traceback*", "d"),
        ("stack:*valueerror", "d"),
        ("stack:traceback?valueerror", "d"),
        // A lone `-` after `field:` is the value web logs write for none.
        ("referer:-", "d"),
        // Past 2^52 every value is whole: a fraction equals none, and as
        // a bound it is the whole number inside the range.
        ("acct:9007199254740992", "d"),
        ("acct:9007199254740992.5", ""),
        ("acct:>=9007199254740992.5", ""),
        ("acct:<9007199254740992.5", "d"),
        ("acct:[9007199254740991.5 TO 9007199254740991.9]", ""),
        ("acct:[9007199254740991.5 TO 9007199254740992.5]", "d"),
        ("status:500", "c"),
        ("status:>=400", "ac"),
        ("status:>400", "ac"),
        ("status:<300", "bd"),
        ("status:<=200", "bd"),
        ("status:[200 TO 401]", "abd"),
        ("status:{200 TO 500}", "a"),
        ("status:[401 TO *]", "ac"),
        ("bytes:>100", "c"),
        // Bounds past f64's range are beyond every value.
        ("status:>1e400", ""),
        ("status:[1e400 TO *]", ""),
        ("status:<1e400", "abcd"),
        ("status:>=-1e400", "abcd"),
        ("status:<-1e400", ""),
        ("_exists_:geo.country", "ae"),
        ("_exists_:geo", "ae"),
        ("_exists_:bytes", "cd"),
        ("_exists_:agent_id", "e"),
        ("_exists_:fields", "abcde"),
        ("bytes:*", "cd"),
        // Open at both ends, a range is `_exists_`, keyword fields too.
        ("user:[* TO *]", "abc"),
        ("geo:{* TO *}", "ae"),
        ("bytes:[* TO *]", "cd"),
        ("geo.country:fr", "a"),
        ("code:1e3", "d"),
        ("code:\"1e3\"", ""),
        ("fields.geo.country:DE", "e"),
        ("tags:ssh", "a"),
        ("tags:auth", "ab"),
        ("severity:high", "a"),
        ("severity:error", "a"),
        ("severity:>=medium", "ace"),
        ("agent_id:agt_x AND session_id:s1", "e"),
        ("source:agent", "e"),
        ("source:api", "abcd"),
        ("path:\"/admin/login\"", "c"),
        // Addresses: blocks and spans as addresses, an IPv4 address
        // written as IPv6 as the IPv4 one; a field holding a block
        // finds it too.
        ("src_ip:10.0.0.0/8", "abe"),
        ("src_ip:\"10.0.0.0/8\"", "abe"),
        ("src_ip:10.0.0.4/31", "a"),
        ("src_ip:10.0.0.0/33", ""),
        ("src_ip:[10.0.0.6 TO 10.0.0.10]", "b"),
        ("src_ip:{10.0.0.5 TO 10.0.0.7]", "b"),
        ("src_ip:>10.0.0.5", "bce"),
        ("src_ip:[10.0.0.9 TO 10.0.0.1]", ""),
        ("src_ip:\"2001:db8::/32\"", "d"),
        ("src_ip:2001\\:db8\\:\\:/32", "d"),
        ("src_ip:[2001\\:db8\\:\\:0 TO *]", "d"),
        ("rule:10.0.0.0/8", "c"),
        // An address finds itself however a log wrote it.
        ("src_ip:10.1.2.3", "e"),
        ("src_ip:\"2001:db8::1\"", "d"),
        ("src_ip:\"2001:Db8:0:0:0:0:0:1\"", "d"),
        ("src_ip:\"2001:0db8:0000:0000:0000:0000:0000:0001\"", "d"),
        ("src_ip:\"::ffff:10.0.0.0/104\"", "abe"),
        ("timestamp:<now-2h", "e"),
        ("timestamp:[now-2h TO now]", "abcd"),
        ("*", "abcde"),
        ("", "abcde"),
        ("nothing_matches_this", ""),
    ];
    let mut failures = Vec::new();
    for (query, expected) in cases {
        let got: String = names(&api, query).into_iter().collect();
        if got != *expected {
            failures.push(format!("`{query}`: got {got:?}, expected {expected:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Malformed: 400 with the position and what was expected.
    for (query, column) in [
        ("program:(sshd", 14),
        ("status:[1 TO", 13),
        ("a AND", 6),
        ("name~2", 5),
        ("timestamp:>soon", 1),
        ("severity:loud", 1),
        ("message:[a TO b]", 1),
        ("a/b* c/d* e/f* g/h* i/j*", 21),
        ("host:web-01\u{200b}", 12),
        ("\u{202e}sshd", 1),
        ("host:ab\u{fff9}c", 8),
        // Control characters: a NUL, a terminal's colour code, DEL.
        ("host:web-01\u{0}", 12),
        ("root\u{1b}[31m", 5),
        ("ro\u{7f}ot", 3),
        // The first of several such characters is named.
        ("ro\u{200b}ot\u{0}", 3),
        // A number beside text in a range (a letter O for a zero).
        ("latency_ms:[100 TO 2OO]", 1),
        ("x AND n:{abc TO 5]", 7),
        // Punctuation alone is no word of the message.
        ("\"==\"", 1),
        ("a OR ;", 6),
        // Nor with a wildcard, which would then find every event.
        (";*", 1),
        ("x AND .*", 7),
        // Comparisons of one field that must all hold, likewise.
        ("latency_ms:(>=100 AND <2OO)", 23),
        ("n:>=1 AND n:<abc", 11),
        // Anywhere in the query, under NOT or OR, by either spelling.
        ("latency_ms:>=100 AND NOT latency_ms:>=2OO", 26),
        ("fields.n:>=1 OR n:<abc", 17),
    ] {
        let r = api.post("/api/v1/siem/search", &json!({"query": query}));
        let e = r.error(400, "invalid_request");
        assert_eq!(e["field"], "query", "{query}: {}", r.text);
        assert_eq!(e["position"]["column"], column, "{query}: {}", r.text);
        assert!(
            e["message"].as_str().unwrap().contains("position"),
            "{}",
            r.text
        );
    }
    // A costly clause past its limit is refused at its own position.
    let refused_at = |query: &str, column: usize, says: &str| {
        let r = api.post("/api/v1/siem/search", &json!({"query": query}));
        let e = r.error(400, "invalid_request");
        assert_eq!(e["position"]["column"], column, "{}", r.text);
        assert!(e["message"].as_str().unwrap().contains(says), "{}", r.text);
    };
    // Blocks and spans of addresses read every value of their field: at
    // most four in a query, the fifth placed.
    let five = (1..=5)
        .map(|i| format!("src_ip:{i}.0.0.0/8"))
        .collect::<Vec<_>>()
        .join(" OR ");
    refused_at(&five, five.rfind("src_ip").unwrap() + 1, "at most 4 blocks");
    // So does a range over a keyword field's values (text or numbers): at
    // most eight in a query, the ninth placed; ranges over time and
    // severity read columns and are not counted.
    let ranges = |n: usize| {
        (0..n)
            .map(|i| match i % 2 {
                0 => format!("user:[a{i} TO z]"),
                _ => format!("status:>={i}00"),
            })
            .chain([
                "timestamp:>=now-1d".to_string(),
                "severity:>=low".to_string(),
            ])
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    let r = api.post("/api/v1/siem/search", &json!({"query": ranges(8)}));
    assert_eq!(r.status, 200, "{}", r.text);
    let nine = ranges(9);
    refused_at(
        &nine,
        nine.rfind("user:[a8").unwrap() + 1,
        "at most 8 ranges",
    );
    // A query over several lines is placed by line and column.
    let r = api.post("/api/v1/siem/search", &json!({"query": "a AND\n(b"}));
    let e = r.error(400, "invalid_request");
    assert_eq!(e["position"], json!({"line": 2, "column": 3}), "{}", r.text);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("(line 2, column 3)"),
        "{}",
        r.text
    );
    // No query, however costly, hangs the server.
    let wild = "*a*b*c*d*e*f*g*h*i*j*k*l*m*n*o*";
    let r = api.post("/api/v1/siem/search", &json!({"query": wild}));
    assert!(r.status == 200 || r.status == 400, "{}", r.text);
    let r = api.post("/api/v1/siem/search", &json!({"query": "(".repeat(5000)}));
    r.error(400, "invalid_request");
}

fn totals_histograms_and_pages_are_exact(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    // 3 hours, one bucket each: 10 high + 5 info, then 7 low, then 3 critical.
    let base = 1_780_000_000_000i64 - 1_780_000_000_000i64 % 3_600_000;
    let mut events = Vec::new();
    for i in 0..10 {
        events.push(json!({"timestamp": rfc3339(base + i * 1000), "severity": "high", "message": format!("h{i}")}));
    }
    for i in 0..5 {
        events.push(
            json!({"timestamp": rfc3339(base + 60_000 + i), "severity": "info", "message": "i"}),
        );
    }
    for i in 0..7 {
        events.push(
            json!({"timestamp": rfc3339(base + 3_600_000 + i), "severity": "low", "message": "l"}),
        );
    }
    let mut ids = ingest(&api, Value::Array(events));
    // The `{"events": [...]}` form.
    ids.extend(ingest(
        &api,
        json!({"events": [
            {"timestamp": rfc3339(base + 7_200_000), "severity": "critical", "message": "c"},
            {"timestamp": rfc3339(base + 7_200_001), "severity": "critical", "message": "c"},
            {"timestamp": rfc3339(base + 7_200_002), "severity": "critical", "message": "c"}
        ]}),
    ));
    let range = json!({"from_time": rfc3339(base), "to_time": rfc3339(base + 3 * 3_600_000)});
    let deadline = Instant::now() + Duration::from_secs(20);
    let data = loop {
        let mut body = range.clone();
        body["interval"] = json!("1h");
        body["limit"] = json!(10);
        let data = search(&api, body);
        if data["total"] == 25 || Instant::now() > deadline {
            break data;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(data["total"], 25, "{data}");
    assert_eq!(data["interval_ms"], 3_600_000);
    let histogram = data["histogram"].as_array().unwrap();
    assert_eq!(histogram.len(), 3, "{data}");
    let counts: Vec<u64> = histogram
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![15, 7, 3]);
    assert_eq!(histogram[0]["time"], rfc3339(base));
    assert_eq!(histogram[0]["breakdown"]["high"], 10);
    assert_eq!(histogram[0]["breakdown"]["info"], 5);
    assert_eq!(histogram[1]["breakdown"]["low"], 7);
    assert_eq!(histogram[2]["breakdown"]["critical"], 3);
    // Filtered: the histogram counts only matches, and sums to the total.
    let mut body = range.clone();
    body["query"] = json!("severity:high OR severity:critical");
    let data = search(&api, body);
    let sum: u64 = data["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!((data["total"].as_u64().unwrap(), sum), (13, 13));
    // The chosen interval for a day is 30 minutes.
    let data = search(&api, json!({"from_time": "now-24h", "limit": 0}));
    assert_eq!(data["interval_ms"], 1_800_000);
    // Times as JSON numbers (milliseconds), and buckets aligned to whole
    // intervals: a range starting mid-hour counts only from its start.
    let mid = json!({"from_time": base + 1_800_000, "to_time": base + 3 * 3_600_000, "interval": "1h", "limit": 0});
    let data = search(&api, mid);
    assert_eq!(data["total"], 10, "{data}");
    assert_eq!(data["from_time"], rfc3339(base + 1_800_000));
    assert_eq!(data["histogram"][0]["time"], rfc3339(base), "{data}");
    assert_eq!(data["histogram"][0]["count"], 0, "{data}");
    // Seconds, told from milliseconds by magnitude as ingest does.
    let (s_from, s_to) = ((base + 1_800_000) / 1000, (base + 3 * 3_600_000) / 1000);
    let data = search(
        &api,
        json!({"from_time": s_from, "to_time": s_to.to_string(), "limit": 0}),
    );
    assert_eq!(data["total"], 10, "{data}");
    assert_eq!(data["from_time"], rfc3339(s_from * 1000));
    // Seconds with a fraction, as Python's time.time() gives them.
    let fractional = search(
        &api,
        json!({"from_time": (s_from as f64) + 0.5, "limit": 0}),
    );
    assert_eq!(fractional["from_time"], rfc3339(s_from * 1000 + 500));
    let r = api.post("/api/v1/siem/search", &json!({"from_time": true}));
    assert_eq!(
        r.error(400, "invalid_request")["field"],
        "from_time",
        "{}",
        r.text
    );
    // The widest range still gets about 100 bars.
    let all = search(
        &api,
        json!({"from_time": "0001-01-01T00:00:00Z", "to_time": "9999-12-31T23:59:59Z", "limit": 0}),
    );
    let bars = all["histogram"].as_array().unwrap().len();
    assert!((90..=101).contains(&bars), "{bars}");
    assert_eq!(all["total"], 25);
    // Times past either end of what events can carry are those ends; an
    // interval as wide as i64 allows is one bar holding everything.
    let far = search(
        &api,
        json!({"from_time": "now-99999999999d", "to_time": "now+99999999d", "limit": 0,
               "interval": i64::MAX}),
    );
    assert_eq!(far["from_time"], "1970-01-01T00:00:00.000Z", "{far}");
    assert_eq!(far["to_time"], "9999-12-31T23:59:59.999Z", "{far}");
    assert_eq!(far["histogram"].as_array().unwrap().len(), 1, "{far}");
    assert_eq!(far["histogram"][0]["count"], 25, "{far}");
    // An event at the last millisecond an event may carry is found there.
    ingest(
        &api,
        json!([{"message": "at the end of time", "timestamp": "9999-12-31T23:59:59.999Z"}]),
    );
    let end = json!({"query": "\"end of time\"", "from_time": "9999-12-31T00:00:00Z",
                     "to_time": "now+99999999d", "limit": 1});
    let deadline = Instant::now() + Duration::from_secs(20);
    while search(&api, end.clone())["total"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the last millisecond is never found"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A range of just that millisecond finds it too.
    let last = search(
        &api,
        json!({"query": "\"end of time\"", "from_time": "9999-12-31T23:59:59.999Z",
               "to_time": "now+99999999d"}),
    );
    assert_eq!(last["total"], 1, "{last}");
    assert_eq!(last["histogram"][0]["count"], 1, "{last}");
    let early = search(&api, json!({"to_time": "1970-01-01T12:00:00Z", "limit": 0}));
    assert_eq!(early["from_time"], "1970-01-01T00:00:00.000Z", "{early}");
    let r = api.post("/api/v1/siem/search", &json!({"to_time": "now-9999999d"}));
    assert_eq!(
        r.error(400, "invalid_request")["field"],
        "to_time",
        "{}",
        r.text
    );
    // A caller's interval is held to 10,000 bars as they fall on the
    // clock, not as the range's length divides.
    let edge = |to: i64| {
        api.post(
            "/api/v1/siem/search",
            &json!({"from_time": base + 30_000, "to_time": to, "interval": "1m", "limit": 0}),
        )
    };
    assert_eq!(edge(base + 30_000 + 10_000 * 60_000 - 30_000).status, 200);
    assert_eq!(
        edge(base + 30_000 + 10_000 * 60_000).error(400, "invalid_request")["field"],
        "interval"
    );

    // Paging walks every event once, newest first, then oldest first.
    for (sort, first) in [("desc", "c"), ("asc", "h0")] {
        let mut seen = Vec::new();
        let mut cursor = Value::Null;
        let mut previous: Option<String> = None;
        loop {
            let mut body = range.clone();
            body["limit"] = json!(4);
            body["sort"] = json!(sort);
            body["cursor"] = cursor.clone();
            let data = search(&api, body);
            for e in data["events"].as_array().unwrap() {
                let ts = e["timestamp"].as_str().unwrap().to_string();
                if let Some(p) = &previous {
                    assert!(
                        if sort == "desc" { *p >= ts } else { *p <= ts },
                        "{sort}: {p} then {ts}"
                    );
                }
                previous = Some(ts);
                seen.push(e["id"].as_str().unwrap().to_string());
            }
            if seen.len() == 4 {
                let first_page = search(&api, {
                    let mut b = range.clone();
                    b["limit"] = json!(1);
                    b["sort"] = json!(sort);
                    b
                });
                assert_eq!(first_page["events"][0]["message"], first);
            }
            cursor = data["next_cursor"].clone();
            if cursor.is_null() {
                break;
            }
        }
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!((seen.len(), unique.len()), (25, 25), "{sort}");
        let all: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique, all);
    }
    // The quick search.
    let r = api.get(&format!(
        "/api/v1/events?query=severity:critical&from={}&to={}&limit=2",
        rfc3339(base),
        rfc3339(base + 3 * 3_600_000)
    ));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    let critical = r.body["next_cursor"].as_str().unwrap().to_string();
    let page = |query: &str| {
        api.get(&format!(
            "/api/v1/events?query={query}&from={}&to={}&limit=2&cursor={critical}",
            rfc3339(base),
            rfc3339(base + 3 * 3_600_000),
        ))
    };
    let r = page("severity:critical");
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{}", r.text);
    assert!(r.body["next_cursor"].is_null());
    // A cursor resumes only a search with its own query (spaces around
    // it aside): under another one it would skip that query's events.
    assert_eq!(page("%20severity:critical%20").status, 200);
    let r = page("severity:high");
    let err = r.error(400, "invalid_request");
    assert_eq!(err["field"], "cursor", "{}", r.text);
    assert!(
        err["message"].as_str().unwrap().contains("another query"),
        "{}",
        r.text
    );
    // A cursor resumes only a search in its own order.
    let mut body = range.clone();
    body["limit"] = json!(2);
    let newest_first = search(&api, body.clone())["next_cursor"].clone();
    body["sort"] = json!("asc");
    body["cursor"] = newest_first;
    let r = api.post("/api/v1/siem/search", &body);
    let err = r.error(400, "invalid_request");
    assert_eq!(err["field"], "cursor", "{}", r.text);
    assert!(
        err["message"].as_str().unwrap().contains("other order"),
        "{}",
        r.text
    );
    // Bad parameters are named.
    for (body, field) in [
        (json!({"from_time": "yesterday"}), "from_time"),
        (
            json!({"from_time": "now", "to_time": "now-1h"}),
            "from_time",
        ),
        (json!({"interval": "fast"}), "interval"),
        (
            json!({"interval": "1s", "from_time": "now-30d"}),
            "interval",
        ),
        (json!({"limit": 5000}), "limit"),
        (json!({"cursor": "not-a-cursor"}), "cursor"),
        (json!({"query": 5}), "query"),
        // Empty, rather than left out: refused, not read as absent.
        (json!({"cursor": ""}), "cursor"),
        (json!({"from_time": ""}), "from_time"),
        (json!({"to_time": " "}), "to_time"),
        (json!({"interval": ""}), "interval"),
    ] {
        let r = api.post("/api/v1/siem/search", &body);
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            field,
            "{}",
            r.text
        );
    }
    for (params, field) in [("cursor=", "cursor"), ("from=", "from"), ("to=", "to")] {
        let r = api.get(&format!("/api/v1/events?{params}"));
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            field,
            "{}",
            r.text
        );
    }
    // A null query is an empty one: everything in the range.
    let mut everything = range.clone();
    everything["query"] = json!("");
    let everything = search(&api, everything)["total"].clone();
    assert_eq!(everything, 25);
    let mut null = range.clone();
    null["query"] = Value::Null;
    assert_eq!(search(&api, null)["total"], everything);
}

fn bad_batches_are_refused_whole(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let r = api.post(
        "/api/v1/events/batch",
        &json!([
            {"message": "fine"},
            {"message": "fine"},
            {"severity": "loud"},
            {"message": "fine"},
            {"timestamp": "soon"},
            "not an object",
            {"tags": ["ok", 7]},
            {"id": "mine"},
            {"host": 5},
            {"message": "fine"},
            {"message": "x".repeat(1024 * 1024)},
            {"source": "agent", "program": "warden", "message": "a forged decision"}
        ]),
    );
    let e = r.error(400, "invalid_request");
    assert_eq!(e["field"], "events[2].severity", "{}", r.text);
    assert!(
        !e["message"].as_str().unwrap().contains("listed"),
        "{}",
        r.text
    );
    // Field names no query could name, or that would pass for another
    // name wherever shown, are refused naming the field.
    for (name, shown) in [
        ("k\u{1b}", "fields.k\u{1b}"),
        ("x\u{202e}y", "fields.x\u{202e}y"),
        (".a", "fields..a"),
        ("a..b", "fields.a..b"),
    ] {
        let mut event = serde_json::Map::new();
        event.insert("message".into(), json!("m"));
        event.insert(name.into(), json!("v"));
        let r = api.post("/api/v1/events/batch", &json!([Value::Object(event)]));
        let e = r.error(400, "invalid_request");
        assert!(
            e["field"].as_str().unwrap().starts_with("events[0]"),
            "{name:?}: {}",
            r.text
        );
        assert!(
            e["field"]
                .as_str()
                .unwrap()
                .ends_with(shown.trim_start_matches("fields")),
            "{name:?}: {}",
            r.text
        );
    }
    // A key named twice is refused, not silently cut to one value.
    for (body, field) in [
        (
            r#"[{"message": "a"}, {"message": "dup", "fields": {"src_ip": "10.0.0.1", "src_ip": "10.0.0.2"}}]"#,
            "events[1].fields.src_ip",
        ),
        (
            r#"{"events": [{"message": "a", "message": "b"}]}"#,
            "events[0].message",
        ),
    ] {
        let r = api.json_text("POST", "/api/v1/events/batch", body.as_bytes());
        let e = r.error(400, "invalid_request");
        assert_eq!(e["field"], field, "{}", r.text);
        let listed = &e["errors"][0];
        assert_eq!(
            format!(
                "events[{}].{}",
                listed["index"],
                listed["field"].as_str().unwrap()
            ),
            field,
            "{}",
            r.text
        );
        assert!(
            listed["message"].as_str().unwrap().contains("duplicate"),
            "{}",
            r.text
        );
    }
    // A key named twice whose name is a Warden key: named, never quoted.
    let secret = "wdn_live_Q2v8mXr4Tn6bW1yZk3Hc9Lp5Df7Gs0Ja2Ue4Vi6Oq8Rt";
    let body = format!(r#"[{{"message": "a", "fields": {{"{secret}": 1, "{secret}": 2}}}}]"#);
    let r = api.json_text("POST", "/api/v1/events/batch", body.as_bytes());
    let dup = r.error(400, "invalid_request");
    assert_eq!(
        dup["errors"][0]["message"], "duplicate field `[REDACTED]`",
        "{}",
        r.text
    );
    assert!(!r.text.contains("Q2v8"), "{}", r.text);
    // With a key named twice, every other bad event is listed too, in
    // order, so that one answer says all there is to mend.
    let r = api.json_text(
        "POST",
        "/api/v1/events/batch",
        br#"[{"message": "z", "severity": "loud"}, {"message": "x", "a": {"b": 1, "b": 1}}, {"message": "ok"}, {"message": "m", "message": "n"}]"#,
    );
    let every = r.error(400, "invalid_request");
    let listed: Vec<(u64, &str)> = every["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["index"].as_u64().unwrap(), x["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        vec![(0, "severity"), (1, "fields.a.b"), (3, "message")],
        "{}",
        r.text
    );
    assert!(
        every["message"]
            .as_str()
            .unwrap()
            .starts_with("3 of the batch's events"),
        "{}",
        r.text
    );
    // Past 100 bad events the list says it is not all of them.
    let many: Vec<Value> = (0..150).map(|_| json!({"message": 5})).collect();
    let r = api.post("/api/v1/events/batch", &Value::Array(many));
    let many = r.error(400, "invalid_request");
    assert_eq!(many["errors"].as_array().unwrap().len(), 100);
    let said = many["message"].as_str().unwrap();
    assert!(
        said.contains("150 of") && said.contains("the first 100 are listed"),
        "{said}"
    );
    let errors: Vec<(u64, String)> = e["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["index"].as_u64().unwrap(),
                x["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            (2, "severity".into()),
            (4, "timestamp".into()),
            (5, "".into()),
            (6, "tags[1]".into()),
            (7, "id".into()),
            (8, "host".into()),
            (10, "".into()),
            (11, "program".into())
        ]
    );
    let sizes = &e["errors"][6]["message"];
    assert!(sizes.as_str().unwrap().contains("1048576 bytes"), "{sizes}");
    // Too many events, too many bytes, not JSON, not an array, wrong type.
    let many: Vec<Value> = (0..10_001).map(|_| json!({"message": "x"})).collect();
    let r = api.post("/api/v1/events/batch", &Value::Array(many));
    assert_eq!(r.error(400, "invalid_request")["field"], "events");
    let big = format!("[{{\"message\": \"{}\"}}]", "x".repeat(11 * 1024 * 1024));
    let r = api.json_text("POST", "/api/v1/events/batch", big.into_bytes());
    r.error(413, "payload_too_large");
    let r = api.json_text("POST", "/api/v1/events/batch", b"[{\"message\": }]");
    assert_eq!(r.error(400, "invalid_request")["position"]["column"], 14);
    let r = api.post("/api/v1/events/batch", &json!({"message": "one"}));
    assert_eq!(r.error(400, "invalid_request")["field"], "events");
    let r = api.post("/api/v1/events/batch", &json!([]));
    r.error(400, "invalid_request");
    let r = api.raw(
        "POST",
        "/api/v1/events/batch",
        b"[]".to_vec(),
        &[("content-type", "text/plain")],
    );
    r.error(415, "unsupported_media_type");
    // A key without events.ingest (or events.write).
    let (_, reader) = api.create_key(json!({"name": "reader", "scopes": ["events.read"]}));
    let r = api
        .with_key(&reader)
        .post("/api/v1/events/batch", &json!([{"message": "x"}]));
    assert_eq!(r.error(403, "forbidden")["field"], "events.ingest");
    // Another encoding is a 415; gzip that inflates past the limit a 413;
    // a gzip body that is not gzip a 400.
    let json = [("content-type", "application/json")];
    let r = api.raw(
        "POST",
        "/api/v1/events/batch",
        b"[]".to_vec(),
        &[json[0], ("content-encoding", "br")],
    );
    assert_eq!(
        r.error(415, "unsupported_media_type")["field"],
        "Content-Encoding"
    );
    let gzip = |bytes: &[u8]| {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    };
    let bomb = gzip(format!("[{{\"message\": \"{}\"}}]", "x".repeat(11 << 20)).as_bytes());
    let r = api.raw(
        "POST",
        "/api/v1/events/batch",
        bomb,
        &[json[0], ("content-encoding", "gzip")],
    );
    r.error(413, "payload_too_large");
    let r = api.raw(
        "POST",
        "/api/v1/events/batch",
        b"[{}]".to_vec(),
        &[json[0], ("content-encoding", "gzip")],
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "body");
    // Nothing was stored.
    assert_eq!(store_count(backend, &t.org_id), 0);
    assert_eq!(total(&api, ""), 0);
    // A gzip batch is read like a plain one.
    let r = api.raw(
        "POST",
        "/api/v1/events/batch",
        gzip(br#"[{"message": "zipped one"}, {"message": "zipped two"}]"#),
        &[json[0], ("content-encoding", "gzip")],
    );
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["data"]["accepted"], 2);
    // A byte-order mark before the JSON is no error.
    let r = api.json_text(
        "POST",
        "/api/v1/events/batch",
        b"\xEF\xBB\xBF[{\"message\": \"after a byte-order mark\"}]",
    );
    assert_eq!(r.status, 202, "{}", r.text);
    // A shipper's key sends events on every route and reads none.
    let (_, shipper) = api.create_key(json!({"name": "shipper", "scopes": ["events.ingest"]}));
    let shipper = api.with_key(&shipper);
    let r = shipper.post("/api/v1/events/batch", &json!([{"message": "shipped one"}]));
    assert_eq!(r.status, 202, "{}", r.text);
    let shipped = r.body["data"]["ids"][0].as_str().unwrap().to_string();
    let r = post_ndjson(&shipper, b"{\"msg\": \"shipped two\"}\n".to_vec());
    assert_eq!(r.status, 202, "{}", r.text);
    let r = shipper.post(
        "/v1/events/batch",
        &json!([{"event_type": "tool_call", "agent_id": "shipped-bot", "tool_name": "shipped.three"}]),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    for (path, body) in [
        ("/api/v1/siem/search", Some(json!({"query": "shipped"}))),
        ("/api/v1/events?query=shipped", None),
        (&*format!("/api/v1/events/{shipped}"), None),
    ] {
        let r = match body {
            Some(body) => shipper.post(path, &body),
            None => shipper.get(path),
        };
        assert_eq!(r.error(403, "forbidden")["field"], "events.read", "{path}");
    }
    wait_total(&api, "shipped", 3);
}

fn ndjson_logs_stream_in_plain_or_gzip(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let at = ago(5_000);
    let lines = format!(
        "{{\"@timestamp\": \"{at}\", \"level\": \"ERROR\", \"msg\": \"payment failed\", \"host\": \"api-1\", \"order\": {{\"id\": 42}}}}\n\
         \n\
         {{\"time\": \"{at}\", \"level\": \"warn\", \"message\": \"slow query\", \"hostname\": \"db-1\", \"service\": \"billing\"}}\r\n\
         {{\"ts\": 1, \"level\": 30, \"msg\": \"numeric level kept\"}}"
    );
    let r = post_ndjson(&api, lines.clone().into_bytes());
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["data"]["accepted"], 3);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..2_000 {
        writeln!(
            gz,
            "{{\"msg\": \"gz line {i}\", \"level\": \"info\", \"seq\": {i}}}"
        )
        .unwrap();
    }
    let r = api.raw(
        "POST",
        "/api/v1/events/ndjson",
        gz.finish().unwrap(),
        &[
            ("content-type", "application/x-ndjson"),
            ("content-encoding", "gzip"),
        ],
    );
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["data"]["ids"].as_array().unwrap().len(), 2_000);
    wait_total(&api, "source:json", 2_003 - 1); // the line from 1970 is out of range
    let e = &search(&api, json!({"query": "\"payment failed\""}))["events"][0];
    assert_eq!(e["severity"], "high");
    assert_eq!(e["host"], "api-1");
    assert_eq!(e["timestamp"], at);
    assert_eq!(e["fields"]["order"]["id"], 42);
    assert_eq!(total(&api, "order.id:42 AND source:json"), 1);
    assert_eq!(
        total(&api, "program:billing AND host:db-1 AND severity:medium"),
        1
    );
    assert_eq!(total(&api, "seq:[100 TO 199]"), 100);
    let old = search(
        &api,
        json!({"query": "\"numeric level kept\"", "from_time": "1970-01-01"}),
    );
    assert_eq!(old["events"][0]["fields"]["level"], 30, "{old}");

    // Shippers' own shapes: Docker's and Fluent Bit's `log` is the text
    // (searchable by its words), Fluent Bit's `date` the time; a padded
    // host and a time nobody can read cost neither the line nor the upload.
    // Whole seconds and a half, which a double holds exactly.
    let second = warden_core::time::parse_rfc3339(&ago(1_000)).unwrap() / 1_000;
    let now_s = rfc3339(second * 1_000 + 500);
    let shippers = format!(
        "{{\"log\": \"Error: ECONNRESET socket hang up\\n\", \"stream\": \"stderr\", \"time\": \"{at}\"}}\n\
         {{\"date\": {second}.5, \"log\": \"fluentpanic in worker\\n\"}}\n\
         {{\"msg\": \"padded host line\", \"host\": \"web-01 \", \"time\": \"-\"}}\n",
    );
    let r = post_ndjson(&api, shippers.into_bytes());
    assert_eq!(r.status, 202, "{}", r.text);
    wait_total(&api, "ECONNRESET OR fluentpanic OR \"padded host line\"", 3);
    let docker = &search(&api, json!({"query": "ECONNRESET"}))["events"][0];
    assert_eq!(docker["message"], "Error: ECONNRESET socket hang up");
    assert_eq!(docker["timestamp"], at);
    let fluent = &search(&api, json!({"query": "fluentpanic"}))["events"][0];
    assert_eq!(fluent["timestamp"], now_s, "{fluent}");
    let padded = &search(&api, json!({"query": "host:web-01"}))["events"][0];
    assert_eq!(padded["fields"]["time"], "-", "{padded}");

    // A bad line refuses the whole request, naming each bad line.
    let before = store_count(backend, &t.org_id);
    let r = post_ndjson(
        &api,
        b"{\"msg\": \"ok\"}\nnot json\n{\"tags\": {\"a\": 1}}\n".to_vec(),
    );
    let e = r.error(400, "invalid_request");
    let lines: Vec<u64> = e["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3], "{}", r.text);
    let r = post_ndjson(&api, b"{\"msg\": \"ok\"}\nnot json\n".to_vec());
    let e = r.error(400, "invalid_request");
    assert_eq!(e["message"], "1 line is invalid; nothing was stored", "{e}");
    let r = api.raw(
        "POST",
        "/api/v1/events/ndjson",
        b"\x1f\x8b\x08garbage".to_vec(),
        &[("content-encoding", "gzip")],
    );
    r.error(400, "invalid_request");
    let r = api.raw(
        "POST",
        "/api/v1/events/ndjson",
        b"{}".to_vec(),
        &[("content-encoding", "br")],
    );
    let e = r.error(415, "unsupported_media_type");
    assert_eq!(e["field"], "Content-Encoding");
    assert!(e["message"].as_str().unwrap().contains("`br`"), "{e}");
    assert_eq!(store_count(backend, &t.org_id), before);
}

fn syslog_port(w: &Warden, proto: &str) -> String {
    let prefix = format!("Syslog ({proto}) on ");
    w.stdout
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            l.strip_prefix(&prefix)
                .map(|a| a.rsplit(':').next().unwrap().to_string())
        })
        .expect("syslog address printed")
}

/// RFC 5424 messages of two programs: over TCP, newline-framed, on one
/// connection then closed; and over UDP, a datagram each.
fn send_syslog(tcp: &str, udp: &str, over_tcp: (&str, usize), over_udp: (&str, usize)) {
    // No time of their own (`-`): they take their arrival time, inside
    // the searches' default window whenever the test runs.
    let line = |program: &str, i: usize| format!("<14>1 - h1 {program} - - - seq {i}");
    let mut bytes = Vec::new();
    for i in 0..over_tcp.1 {
        bytes.extend_from_slice(format!("{}\n", line(over_tcp.0, i)).as_bytes());
    }
    let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{tcp}")).unwrap();
    stream.write_all(&bytes).unwrap();
    drop(stream);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..over_udp.1 {
        let datagram = line(over_udp.0, i);
        socket
            .send_to(datagram.as_bytes(), format!("127.0.0.1:{udp}"))
            .unwrap();
    }
}

/// A server with both syslog listeners on ports of its choosing, for `org_id`.
fn start_with_syslog(backend: &Backend, org_id: &str) -> Warden {
    let args = [
        "--syslog-udp",
        "127.0.0.1:0",
        "--syslog-tcp",
        "127.0.0.1:0",
        "--syslog-org",
        org_id,
    ];
    Warden::start(backend, &args)
}

fn logger(args: &[&str]) {
    let out = std::process::Command::new("logger")
        .args(args)
        .output()
        .expect("util-linux logger");
    assert!(out.status.success(), "{out:?}");
}

/// An RFC 5424 message over UDP carrying an ingest key in Warden's
/// structured-data element.
fn logger_with_token(udp_port: &str, key: &str, tag: &str, message: &str) {
    logger_with_sd_param(udp_port, &format!("token=\"{key}\""), tag, message);
}

fn logger_with_sd_param(udp_port: &str, param: &str, tag: &str, message: &str) {
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        udp_port,
        "-d",
        "--rfc5424",
        "--sd-id",
        "warden@32473",
        "--sd-param",
        param,
        "-t",
        tag,
        message,
    ]);
}

fn syslog_from_the_real_logger(backend: &Backend) {
    let t = backend.init();
    let other = backend.create_org("Elsewhere", &[]);
    let w = start_with_syslog(backend, &t.org_id);
    let api = w.api(&t.live_key);
    let (udp, tcp) = (syslog_port(&w, "UDP"), syslog_port(&w, "TCP"));
    let host = ["-n", "127.0.0.1"];
    logger(&[
        host[0],
        host[1],
        "-P",
        &udp,
        "-d",
        "--rfc5424",
        "-t",
        "app5424u",
        "-p",
        "auth.err",
        "udp five four two four",
    ]);
    logger(&[
        host[0],
        host[1],
        "-P",
        &udp,
        "-d",
        "--rfc3164",
        "-t",
        "app3164u",
        "-p",
        "daemon.warning",
        "udp three one six four",
    ]);
    logger(&[
        host[0],
        host[1],
        "-P",
        &tcp,
        "-T",
        "--octet-count",
        "--rfc5424",
        "-t",
        "app5424t",
        "-p",
        "local0.crit",
        "tcp octet counted",
    ]);
    logger(&[
        host[0],
        host[1],
        "-P",
        &tcp,
        "-T",
        "--rfc3164",
        "-t",
        "app3164t",
        "-p",
        "user.info",
        "tcp newline framed",
    ]);
    // An ingest key in structured data routes to its own organization; a
    // key bound to an agent also stamps that agent on the event.
    logger_with_token(&udp, &other.live_key, "routed", "routed by key");
    let elsewhere = w.api(&other.live_key);
    let r = elsewhere.post(
        "/api/v1/agents",
        &json!({"name": "relay", "external_id": "relay-sdk"}),
    );
    let relay = r.body["data"]["id"].as_str().unwrap().to_string();
    // (A sender's key that sends and reads nothing routes as well.)
    let (_, relay_key) = elsewhere.create_key(json!({
        "name": "relay's key", "scopes": ["events.ingest"], "agent_id": relay,
    }));
    logger_with_token(&udp, &relay_key, "boundsys", "sent with a bound key");
    // The parameter in another case routes too; an element without a
    // token routes nowhere, not to the listener's own organization.
    let upper = format!("TOKEN=\"{}\"", other.live_key);
    logger_with_sd_param(&udp, &upper, "routedcase", "routed by key");
    let keyless = format!("key=\"{}\"", other.live_key);
    logger_with_sd_param(&udp, &keyless, "keyless", "asks to be routed");
    // Malformed messages are dropped.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(
            b"<999>1 - - - - - - bad priority",
            format!("127.0.0.1:{udp}"),
        )
        .unwrap();
    socket
        .send_to(b"<13>nul\0inside", format!("127.0.0.1:{udp}"))
        .unwrap();
    socket.send_to(b"   ", format!("127.0.0.1:{udp}")).unwrap();
    // A key that is not valid routes nowhere, not to the listener's default.
    logger_with_token(&udp, "wdn_live_not-a-key", "forged", "forged key");
    // Another organization's key that does not route its message (in an
    // element misquoted, or in RFC 3164) drops it: the message was meant
    // for that organization, not the listener's.
    let sshd_3164 = |text: &str| {
        logger(&[
            host[0],
            host[1],
            "-P",
            &udp,
            "-d",
            "--rfc3164",
            "-t",
            "sshd",
            text,
        ])
    };
    sshd_3164(&format!(
        "Invalid user x from 10.0.0.9 [warden@32473 token=\"{}\"]",
        other.live_key
    ));
    for quoted in [other.live_key.clone(), format!("'{}'", other.live_key)] {
        let line = format!("<13>1 - h1 misquoted - - [warden@32473 token={quoted}] unquoted");
        socket
            .send_to(line.as_bytes(), format!("127.0.0.1:{udp}"))
            .unwrap();
    }
    // Text that only mentions the element's id is kept, with any token
    // assignment in it taken out; so is text with a key-shaped word that
    // is no key (an attacker's chosen user name), the word taken out.
    sshd_3164("Invalid user warden@32473 from 10.0.0.9 token=leaked1");
    sshd_3164("Invalid user wdn_live_chosenUserName1234 from 10.0.0.7");
    // Names with characters keywords refuse are stored without them, as
    // sent beside.
    socket
        .send_to(
            "<14>1 - web-01\u{202e} clean\u{200b}app 1 - - cleared name".as_bytes(),
            format!("127.0.0.1:{udp}"),
        )
        .unwrap();
    logger(&[
        host[0],
        host[1],
        "-P",
        &udp,
        "-d",
        "--rfc5424",
        "-t",
        "last",
        "final message",
    ]);

    wait_total(&api, "source:syslog", 8);
    let chosen = search(&api, json!({"query": "program:sshd AND \"10.0.0.7\""}));
    assert_eq!(
        chosen["events"][0]["message"], "Invalid user [REDACTED] from 10.0.0.7",
        "{chosen}"
    );
    let cleared = search(&api, json!({"query": "host:web-01 AND program:cleanapp"}));
    assert_eq!(cleared["total"], 1, "{cleared}");
    assert_eq!(
        cleared["events"][0]["fields"]["syslog"]["host_as_sent"], "web-01\u{202e}",
        "{cleared}"
    );
    assert_eq!(total(&api, "_exists_:syslog.program_as_sent"), 1);
    let mention =
        search(&api, json!({"query": "program:sshd AND \"10.0.0.9\""}))["events"][0].clone();
    assert_eq!(
        mention["message"], "Invalid user warden@32473 from 10.0.0.9 token=[REDACTED]",
        "{mention}"
    );
    let get = |q: &str| search(&api, json!({"query": q}))["events"][0].clone();
    let e = get("program:app5424u");
    assert_eq!(e["message"], "udp five four two four");
    assert_eq!(e["severity"], "high");
    assert_eq!(e["fields"]["syslog"]["facility"], "auth");
    assert!(e["host"].is_string());
    let e = get("program:app3164u");
    assert_eq!(e["severity"], "medium");
    assert_eq!(e["fields"]["syslog"]["facility"], "daemon");
    assert_eq!(get("program:app5424t")["severity"], "critical");
    assert_eq!(get("program:app3164t")["message"], "tcp newline framed");
    assert_eq!(total(&api, "syslog.facility:local0"), 1);
    let leaked = search(
        &api,
        json!({"query": "bad OR nul OR routed OR forged OR program:keyless OR program:routedcase \
                         OR program:misquoted OR \"Invalid user x\""}),
    );
    assert_eq!(leaked["total"], 0, "{leaked}");

    wait_total(&elsewhere, "program:routed", 1);
    wait_total(&elsewhere, "program:boundsys", 1);
    wait_total(&elsewhere, "program:routedcase", 1);
    assert_eq!(total(&elsewhere, ""), 3);
    let bound = search(&elsewhere, json!({"query": "program:boundsys"}));
    assert_eq!(bound["events"][0]["agent_id"], relay, "{bound}");
    // With its external id, as the event batch stamps it.
    assert_eq!(
        bound["events"][0]["fields"]["external_agent_id"], "relay-sdk",
        "{bound}"
    );
    let unbound = search(&elsewhere, json!({"query": "program:routed"}));
    assert!(unbound["events"][0]["agent_id"].is_null(), "{unbound}");
    // The key travelled in the message but is stored nowhere.
    assert!(!backend.raw_contents().contains(&other.live_key));
    assert!(!backend.raw_contents().contains("leaked1"));
    assert!(!backend.raw_contents().contains("chosen1"));
    let log = std::fs::read_to_string(common::log_path(&backend.data_dir(0))).unwrap();
    assert_eq!(
        log.matches("held a Warden key or token of another tenant")
            .count(),
        3,
        "{log}"
    );
    assert!(!log.contains(&other.live_key[9..]));
    // Syslog cannot answer its sender; what was dropped shows in /metrics.
    // (The stored count moves just after the commit that made events
    // searchable, so it is read again briefly.)
    wait_metrics(
        &w,
        &[
            r#"warden_syslog_messages_total{outcome="malformed"} 4"#,
            r#"warden_syslog_messages_total{outcome="unrouted"} 4"#,
            r#"warden_syslog_messages_total{outcome="stored"} 11"#,
            // Shown before the first, for alerts on it.
            r#"warden_syslog_messages_total{outcome="lost"} 0"#,
        ],
    );

    // Open connections are bounded: one past the bound is closed at once,
    // and the listener goes on serving once some close.
    let connect = || std::net::TcpStream::connect(format!("127.0.0.1:{tcp}")).unwrap();
    let mut held: Vec<_> = (0..1_024).map(|_| connect()).collect();
    // Each has completed a message within the last 5 s (a malformed one,
    // dropped), so none is idle enough to make room (see
    // idle_syslog_connections_give_way…).
    for stream in &mut held {
        std::io::Write::write_all(stream, b"<999>held\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = connect();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut extra, &mut byte).ok(), Some(0));
    wait_metrics(&w, &["warden_syslog_connections_refused_total 1"]);
    held.truncate(10);
    std::thread::sleep(Duration::from_millis(200));
    let mut again = connect();
    std::io::Write::write_all(&mut again, b"<14>1 - h capped - - - after the bound\n").unwrap();
    drop(again);
    wait_total(&api, "program:capped", 1);
}

/// A metric's value in `/metrics` now.
fn metric(w: &Warden, name: &str) -> f64 {
    let metrics = w.anonymous().get("/metrics").text;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} not in {metrics}"))
        .parse()
        .unwrap()
}

/// Reads /metrics until every line in `expected` is in it (5 s at most):
/// index and syslog figures move just after the commit that made events
/// searchable.
fn wait_metrics(w: &Warden, expected: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let metrics = w.anonymous().get("/metrics").text;
        let missing: Vec<_> = expected
            .iter()
            .filter(|l| !metrics.lines().any(|m| m == **l))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing:?} not in {metrics}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// What analysts search for inside paths, URLs and addresses; names given
/// twice; rotated logs joined with `cat`; numbers by value; a syslog
/// connection that goes on after an over-long line.
fn pieces_aliases_joined_gzip_numbers_and_long_syslog_lines(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(
        backend,
        &["--syslog-tcp", "127.0.0.1:0", "--syslog-org", &t.org_id],
    );
    let api = w.api(&t.live_key);
    let at = ago(5_000);
    ingest(
        &api,
        json!([
            {"timestamp": at, "message": "spawned /tmp/evil.sh; GET https://evil.example.com/payload.bin from 192.168.1.10:8080 via C:\\Windows\\System32\\cmd.exe", "n": 1, "f": 1.5},
            {"timestamp": at, "message": "opened /etc/passwd from 10.0.0.5"},
            {"timestamp": at, "message": "m-primary", "msg": "m-alias", "severity": "info", "level": "error"},
            // Account numbers past 2^53, and numbers sent as text.
            {"timestamp": at, "message": "acct-a", "acct": 9007199254740993_u64, "code": "503", "zip": "02134"},
            {"timestamp": at, "message": "acct-b", "acct": 9007199254740992_u64, "code": "200", "zip": 2134,
             "app.kubernetes.io/name": "nginx"}
        ]),
    );
    for (query, expected) in [
        ("evil.sh", 1),
        ("evil.example.com", 1),
        ("payload.bin", 1),
        ("192.168.1.10", 1),
        ("cmd.exe", 1),
        ("\"etc passwd\"", 1),
        ("\"opened /etc/passwd from\"", 1),
        ("\"passwd from 10.0.0.5\"", 1),
        ("\"spawned /tmp/evil.sh\"", 1),
        ("\"etc from\"", 0),
        ("n:1.0 AND n:1e0 AND f:1.50", 1),
        // No number is written with a leading zero: text only, as values.
        ("n:01", 0),
        ("n:2", 0),
        // A dotted name inside a longer one: a parent domain, a subnet.
        ("example.com", 1),
        ("168.1.10", 1),
        ("10.0.0", 1),
        ("example.org", 0),
        // Whole numbers past 2^53 keep their digits.
        ("acct:9007199254740993", 1),
        ("acct:>9007199254740992", 1),
        ("acct:[9007199254740992 TO 9007199254740993}", 1),
        ("acct:>=9007199254740992", 2),
        // Text written as a JSON number is a number too; a postal code
        // with its leading zero stays text.
        ("code:>=500", 1),
        ("code:[200 TO 299]", 1),
        ("code:503.0", 1),
        ("zip:>1000", 1),
        ("zip:02134 AND message:acct-a", 1),
        ("zip:02134", 1),
        ("zip:2134 AND message:acct-b", 1),
        // So do range bounds: a range of postal codes compares text.
        ("zip:[02134 TO 02134]", 1),
        ("zip:[02134 TO 02134] AND message:acct-a", 1),
        ("n:+1", 0),
        // Kubernetes' label names, `/` and all.
        ("app.kubernetes.io/name:nginx", 1),
        ("_exists_:app.kubernetes.io/name", 1),
        // `msg` and `level` name message and severity in queries; the
        // names kept in `fields` are found under `fields.`.
        ("message:\"m-primary\" AND fields.msg:\"m-alias\" AND fields.level:error AND severity:info", 1),
    ] {
        wait_total(&api, query, expected);
    }
    // The same name at the top level and in `fields` is refused.
    let r = api.post(
        "/api/v1/events/batch",
        &json!([{"message": "x", "fields": {"x": 1}, "x": 2}]),
    );
    r.error(400, "invalid_request");
    assert_eq!(r.body["error"]["errors"][0]["field"], "x", "{}", r.text);

    // `cat first.gz second.gz`, with a byte-order mark.
    let member = |text: &str| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap()
    };
    let mut body = member("\u{feff}{\"msg\": \"rotated-one\"}\n");
    body.extend(member("\u{feff}{\"msg\": \"rotated-two\"}\n"));
    let r = api.raw(
        "POST",
        "/api/v1/events/ndjson",
        body,
        &[
            ("content-type", "application/x-ndjson"),
            ("content-encoding", "gzip"),
        ],
    );
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["data"]["accepted"], 2);
    wait_total(&api, "rotated-one OR rotated-two", 2);

    // Over TCP, a line over 64 KiB is skipped and counted; the message
    // after it on the same connection is stored.
    let tcp = syslog_port(&w, "TCP");
    let mut conn = std::net::TcpStream::connect(format!("127.0.0.1:{tcp}")).unwrap();
    let long = format!("<14>1 - h app - - - {}\n", "L".repeat(70_000));
    conn.write_all(long.as_bytes()).unwrap();
    conn.write_all(b"<14>1 - h app - - - after-the-long-line\n")
        .unwrap();
    drop(conn);
    // A counted frame cut short by its connection's end is counted.
    let mut conn = std::net::TcpStream::connect(format!("127.0.0.1:{tcp}")).unwrap();
    conn.write_all(b"200 <14>1 - h app - - - cut short")
        .unwrap();
    drop(conn);
    wait_total(&api, "after-the-long-line", 1);
    wait_metrics(
        &w,
        &[
            "warden_syslog_messages_total{outcome=\"malformed\"} 2",
            "warden_syslog_messages_total{outcome=\"stored\"} 1",
        ],
    );

    // A count far past any frame means the stream is not octet-counted:
    // the server closes it rather than silently skipping what follows.
    let mut conn = std::net::TcpStream::connect(format!("127.0.0.1:{tcp}")).unwrap();
    conn.write_all(b"99999999 <14>1 - h app - - - swallowed\n<14>1 - h app - - - next\n")
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    match std::io::Read::read(&mut conn, &mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the connection should be closed by the server: {other:?}"),
    }
    wait_metrics(
        &w,
        &["warden_syslog_messages_total{outcome=\"malformed\"} 3"],
    );
}

fn tenants_see_only_their_own_events(backend: &Backend) {
    let t = backend.init();
    let other = backend.create_org("Other", &[]);
    let w = Warden::start(backend, &[]);
    let (mine, theirs, test_env) = (
        w.api(&t.live_key),
        w.api(&other.live_key),
        w.api(&t.test_key),
    );
    ingest(
        &mine,
        json!([{"message": "shared word mine"}, {"message": "shared word mine"}]),
    );
    ingest(&theirs, json!([{"message": "shared word theirs"}]));
    ingest(&test_env, json!([{"message": "shared word test"}]));
    wait_total(&mine, "shared", 2);
    wait_total(&theirs, "shared", 1);
    wait_total(&test_env, "shared", 1);
    assert_eq!(total(&mine, "theirs OR test"), 0);
    assert_eq!(total(&theirs, "mine"), 0);
    // No query text reaches across: the filter is inside the engine.
    assert_eq!(total(&theirs, "mine OR NOT mine"), 1);
    assert_eq!(total(&theirs, "*"), 1);
    // A cursor says nothing of the log every tenant shares (its sequence
    // numbers would tell how much others ingest), and resumes only the
    // tenant's own search.
    let page = search(&mine, json!({"query": "shared", "limit": 1}));
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&cursor)
        .unwrap();
    // It was `d:<time>:<sequence>`; sealed, not even its tenant shows.
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.starts_with("d:") && !text.contains(&t.org_id),
        "a readable cursor: {text}"
    );
    let second = search(
        &mine,
        json!({"query": "shared", "limit": 1, "cursor": cursor}),
    );
    assert_eq!(second["events"].as_array().unwrap().len(), 1, "{second}");
    for other in [&theirs, &test_env] {
        let r = other.post(
            "/api/v1/siem/search",
            &json!({"query": "shared", "cursor": cursor}),
        );
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            "cursor",
            "{}",
            r.text
        );
    }
}

/// A costly search of one tenant does not hold up another's: each search
/// walks the index on threads of its own.
fn one_tenants_costly_search_does_not_queue_anothers(backend: &Backend) {
    let t = backend.init();
    let other = backend.create_unthrottled_org("Other");
    let w = Warden::start(backend, &[]);
    let (mine, theirs) = (w.api(&t.live_key), w.api(&other.live_key));
    ingest(&mine, json!([{"message": "root login"}]));
    let lines: String = (0..30_000)
        .map(|i| format!("{{\"message\": \"L{i}\"}}\n"))
        .collect();
    let r = post_ndjson(&theirs, lines.into_bytes());
    assert_eq!(r.status, 202, "{}", r.text);
    wait_total(&theirs, "", 30_000);
    wait_total(&mine, "root", 1);
    // As costly as the limits allow: 32 wildcard terms, each over every
    // word of the other tenant.
    let costly = vec!["l*"; 32].join(" OR ");
    // Several at once, so that a pool shared by every search would hold
    // work of theirs queued ahead of this tenant's.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let heavy: Vec<_> = (0..16)
        .map(|_| {
            let (base, key, done) = (w.base.clone(), other.live_key.clone(), done.clone());
            let costly = costly.clone();
            std::thread::spawn(move || {
                let api = common::Api::new(&base, &key);
                let r = api.post("/api/v1/siem/search", &json!({"query": costly, "limit": 0}));
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert_eq!(r.body["data"]["total"], 30_000, "{}", r.text);
            })
        })
        .collect();
    // Time for their queries to be parsed and reach the segments.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(total(&mine, "root"), 1);
    assert_eq!(
        done.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the other tenant's costly searches ran before this one answered"
    );
    for h in heavy {
        h.join().unwrap();
    }
}

fn one_event_by_id_and_keys_bound_to_an_agent(backend: &Backend) {
    let t = backend.init();
    let other = backend.create_org("Other", &[]);
    let w = Warden::start(backend, &[]);
    let admin = w.api(&t.live_key);
    let agent = admin.create_agent("scout");
    let (_, bound) = admin.create_key(json!({
        "name": "scout's key",
        "scopes": ["events.read", "events.write"],
        "agent_id": agent,
    }));
    let bound = w.api(&bound);
    let mine = ingest(
        &bound,
        json!([{"message": "recon step", "agent_id": "someone-else"}]),
    );
    let others = ingest(
        &admin,
        json!([{"message": "recon step"}, {"message": "recon step", "agent_id": "agt_other"}]),
    );
    wait_total(&admin, "recon", 3);

    // One event by id, whole.
    let r = admin.get(&format!("/api/v1/events/{}", mine[0]));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["id"], mine[0]);
    assert_eq!(r.body["data"]["message"], "recon step");
    // The bound key stamped its own agent, whatever the body said.
    assert_eq!(r.body["data"]["agent_id"], agent);
    // Another tenant's id, or an unknown one, is not found.
    w.api(&other.live_key)
        .get(&format!("/api/v1/events/{}", mine[0]))
        .error(404, "not_found");
    admin
        .get("/api/v1/events/evt_nothing")
        .error(404, "not_found");

    // A key bound to an agent searches only that agent's events.
    assert_eq!(total(&bound, "recon"), 1);
    assert_eq!(total(&bound, "recon OR NOT recon"), 1);
    let r = bound.get("/api/v1/events?query=recon");
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(
        bound.get(&format!("/api/v1/events/{}", mine[0])).status,
        200
    );
    for id in &others {
        bound
            .get(&format!("/api/v1/events/{id}"))
            .error(404, "not_found");
    }

    // A registered agent named in a log by its external id is named by
    // its Warden id, as decisions name it: its bound key finds the line.
    let r = admin.post(
        "/api/v1/agents",
        &json!({"name": "billing", "external_id": "billing-bot"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let billing = r.body["data"]["id"].as_str().unwrap().to_string();
    let (_, billing_key) = admin.create_key(
        json!({"name": "billing's key", "scopes": ["events.read", "events.write"], "agent_id": billing}),
    );
    ingest(
        &admin,
        json!([{"message": "invoice sent", "agent_id": "billing-bot"}, {"message": "invoice sent", "agent_id": "stranger-bot"},
               {"message": "invoice sent", "agent_id": "billing-bot", "external_agent_id": "innocent-bot"}]),
    );
    // Its bound key's events carry its external id too, whatever they say.
    ingest(
        &w.api(&billing_key),
        json!([{"message": "invoice sent", "external_agent_id": "innocent-bot"}]),
    );
    wait_total(&admin, "invoice", 4);
    assert_eq!(total(&admin, &format!("agent_id:{billing}")), 3);
    // The agent's name is Warden's to record, whatever the event says.
    assert_eq!(total(&admin, "external_agent_id:billing-bot"), 3);
    assert_eq!(total(&admin, "external_agent_id:innocent-bot"), 0);
    assert_eq!(total(&admin, "agent_id:stranger-bot"), 1);
    assert_eq!(total(&w.api(&billing_key), "invoice"), 3);
}

fn acknowledged_events_survive_kill_9(backend: &Backend) {
    backend.init();
    let t = backend.create_unthrottled_org("Crash");
    let w = Warden::start(backend, &[]);
    let load = CrashLoad::start(
        &w.base,
        &t.live_key,
        4,
        "/api/v1/events/batch",
        202,
        "/data/ids/0",
        |writer, n| {
            let batch: Vec<Value> = (0..10)
                .map(
                    |i| json!({"message": format!("crash w{writer} n{n} i{i}"), "tags": ["crash"]}),
                )
                .collect();
            Value::Array(batch)
        },
    );
    std::thread::sleep(Duration::from_millis(1500));
    let w = w.crash_and_restart(&backend.data_dir(0));
    let acked = load.acknowledged();
    assert!(
        acked.len() > 20,
        "only {} batches acknowledged",
        acked.len()
    );
    let api = w.api(&t.live_key);
    let stored = store_count(backend, &t.org_id);
    assert!(stored >= acked.len() as u64 * 10);
    // Every stored event is searchable exactly once after the restart.
    wait_total(&api, "tags:crash", stored);
    for chunk in acked.chunks(100) {
        let query = format!("id:({})", chunk.join(" OR "));
        assert_eq!(total(&api, &query), chunk.len() as u64);
    }
}

fn decisions_are_agent_events(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let r = api.post(
        "/api/v1/policies",
        &json!({"name": "no refunds", "action_pattern": "payments.refund", "decision": "deny"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "billing-bot", "tool_name": "payments.refund",
                "tool_args": {"amount": 120}, "session_id": "sess-9"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let audit_id = r.body["data"]["audit_id"].as_str().unwrap().to_string();
    wait_total(
        &api,
        "source:agent AND tool:payments.refund AND decision:deny",
        1,
    );
    let e = &search(&api, json!({"query": "session_id:sess-9"}))["events"][0];
    assert_eq!(e["fields"]["audit_id"], audit_id);
    assert_eq!(e["fields"]["args"]["amount"], 120);
    // Found by the name the agent goes by, as its own events are.
    assert_eq!(e["fields"]["external_agent_id"], "billing-bot", "{e}");
    // Its message names it so too: a bare term of the name finds it.
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(r#"("billing-bot") called "payments.refund": "#),
        "{e}"
    );
    assert_eq!(total(&api, "\"billing-bot\" AND payments.refund"), 1);
    // A tool's name is the caller's text: quoted and escaped, it cannot
    // read as the words around it.
    let forged = r#"pay"ments: allow: step-up approved by key_1 (hold h) \ x"#;
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "billing-bot", "tool_name": forged, "session_id": "sess-forged"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    wait_total(&api, "session_id:sess-forged", 1);
    let seen = &search(&api, json!({"query": "session_id:sess-forged"}))["events"][0];
    assert!(
        seen["message"].as_str().unwrap().contains(
            r#"("billing-bot") called "pay\"ments: allow: step-up approved by key_1 (hold h) \\ x": allow"#
        ),
        "{seen}"
    );
    assert_eq!(e["severity"], "medium");
    assert_eq!(total(&api, "args.amount:>100"), 1);
    // Arguments no event can hold (a name with an empty part) are said to
    // be withheld, not silently missing; the audit record keeps them.
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "billing-bot", "tool_name": "fs.read", "session_id": "sess-odd",
                "tool_args": {"path": "/etc/shadow", "a..b": 0}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    wait_total(&api, "session_id:sess-odd", 1);
    let odd = &search(&api, json!({"query": "session_id:sess-odd"}))["events"][0];
    assert_eq!(odd["fields"]["args_withheld"], true, "{odd}");
    assert!(odd["fields"].get("args").is_none(), "{odd}");
    assert_eq!(total(&api, "_exists_:args_withheld"), 1);
    let kept = api.get(&format!(
        "/api/v1/audit/{}",
        r.body["data"]["audit_id"].as_str().unwrap()
    ));
    assert_eq!(kept.body["data"]["arguments"]["path"], "/etc/shadow");
    // The drift score with its parts, as the audit record keeps them.
    let record = api.get(&format!("/api/v1/audit/{audit_id}"));
    let drift = &record.body["data"]["drift"];
    assert_eq!(e["fields"]["drift_score"], drift["score"], "{e}");
    assert_eq!(e["fields"]["drift"]["new_tool"], drift["new_tool"], "{e}");
    assert_eq!(e["fields"]["drift"]["learning"], true, "{e}");
    assert_eq!(total(&api, "drift.learning:true AND session_id:sess-9"), 1);
    // What a monitor-mode policy would have decided is searchable too.
    let r = api.post(
        "/api/v1/policies",
        &json!({"name": "try: no exports", "action_pattern": "payments.export",
                "decision": "deny", "mode": "monitor"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let monitor = r.body["data"]["id"].as_str().unwrap().to_string();
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "billing-bot", "tool_name": "payments.export", "session_id": "sess-10"}),
    );
    assert_eq!(r.body["data"]["decision"], "allow", "{}", r.text);
    assert_eq!(r.body["data"]["monitor_decision"], "deny", "{}", r.text);
    wait_total(&api, "monitor_decision:deny AND tool:payments.export", 1);
    assert_eq!(total(&api, "monitor_decision:deny"), 1);
    // So are the monitor policy's id, the key that asked, and the policy
    // that decided, as in the audit record.
    assert_eq!(total(&api, &format!("monitored_policy_ids:{monitor}")), 1);
    let record = api.get(&format!("/api/v1/audit/{audit_id}")).body["data"].clone();
    assert_eq!(e["fields"]["actor"], record["actor"], "{e}");
    assert_eq!(e["fields"]["policy_id"], record["policy_id"], "{e}");
    assert_eq!(
        e["fields"]["policy_version"], record["policy_version"],
        "{e}"
    );

    // The SDK's own tool events carry the arguments too: what policies
    // redact from audit records is redacted there before storage, for a
    // known agent and for one Warden has not met.
    let r = api.post(
        "/api/v1/policies",
        &json!({"name": "cards", "action_pattern": "pay.*", "decision": "audit",
                "audit_redact": ["card"], "condition": "args.amount > 1000000"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    for agent in ["billing-bot", "never-seen-bot"] {
        let event = json!({"event_type": "TOOL_CALL_PRE", "tool_name": "pay.charge",
            "agent_id": agent, "session_id": "sdk-sess", "content": "tool invocation requested",
            "metadata": {"tool_args": {"card": "SDKCARD9999", "amount": 5},
                         "tool_call": {"name": "pay.charge",
                                       "arguments": {"card": "SDKCARD9999", "amount": 5}}}});
        let r = api.post("/v1/events/batch", &json!([event]));
        assert_eq!(r.status, 202, "{}", r.text);
    }
    // Arguments sent as a JSON string, under OpenAI's `function`, in a
    // list of calls, or named only by the metadata's call.
    let shapes = json!([
        {"event_type": "TOOL_CALL_PRE", "tool_name": "pay.charge", "agent_id": "billing-bot",
         "session_id": "sdk-sess", "metadata": {"tool_args": "{\"card\": \"SDKCARD9999\"}"}},
        {"event_type": "TOOL_CALL_PRE", "agent_id": "billing-bot", "session_id": "sdk-sess",
         "metadata": {"tool_call": {"function": {"name": "pay.charge",
                      "arguments": "{\"card\": \"SDKCARD9999\"}"}}}},
        {"event_type": "TOOL_CALL_PRE", "tool_name": "other.tool", "agent_id": "billing-bot",
         "session_id": "sdk-sess", "metadata": {"tool_calls": [
             {"name": "pay.charge", "arguments": {"card": "SDKCARD9999"}}]}},
        // Python's json.dumps writes NaN: not JSON, so withheld whole.
        {"event_type": "TOOL_CALL_PRE", "tool_name": "pay.charge", "agent_id": "billing-bot",
         "session_id": "sdk-sess",
         "metadata": {"tool_args": "{\"amount\": NaN, \"card\": \"SDKCARD9999\"}"}}
    ]);
    let r = api.post("/v1/events/batch", &shapes);
    assert_eq!(r.status, 202, "{}", r.text);
    wait_total(&api, "session_id:sdk-sess", 6);
    // A tool name no policy can match (padded, or with an invisible
    // character) would carry its arguments past the redactions: refused
    // whole, as enforcement refuses it, naming the event and the field.
    for tool in [" pay.charge", "pay.charge ", "pay\u{200b}.charge"] {
        let event = json!({"event_type": "TOOL_CALL_PRE", "tool_name": tool, "agent_id": "billing-bot",
            "session_id": "sdk-sess-bad", "metadata": {"tool_args": {"card": "SDKCARD9999"}}});
        let r = api.post(
            "/v1/events/batch",
            &json!([{"event_type": "TOOL_CALL_POST"}, event]),
        );
        assert_eq!(r.status, 400, "{tool:?}: {}", r.text);
        assert!(r.text.contains("tool_name"), "{tool:?}: {}", r.text);
        assert!(r.text.contains("\"index\":1"), "{tool:?}: {}", r.text);
    }
    // So are the names of the calls its metadata describes (a top-level
    // tool of its own, a call named with a no-break space or decomposed
    // letters under it), naming the path; nothing is stored.
    for (metadata, field) in [
        (
            json!({"tool_call": {"name": "pay\u{a0}charge", "arguments": {"card": "SDKCARD9999"}}}),
            "metadata.tool_call.name",
        ),
        (
            json!({"tool_calls": [{"function": {"name": "pay.charge", "arguments": "{}"}},
                                  {"function": {"name": "pay.che\u{301}que", "arguments": "{\"card\": \"SDKCARD9999\"}"}}]}),
            "metadata.tool_calls[1].function.name",
        ),
        (
            json!({"tool_call": {"name": "pay.charge\u{200b}", "arguments": {"card": "SDKCARD9999"}}}),
            "metadata.tool_call.name",
        ),
    ] {
        let event = json!({"event_type": "TOOL_CALL_PRE", "tool_name": "llm.chat", "agent_id": "billing-bot",
            "session_id": "sdk-sess-bad", "metadata": metadata});
        let r = api.post("/v1/events/batch", &json!([event]));
        let e = r.error(400, "invalid_request");
        assert!(
            e["field"].as_str().unwrap().ends_with(field),
            "{field}: {}",
            r.text
        );
    }
    // Its keywords are held to the batch route's rules: an agent id with
    // an invisible character would escape `agent_id:billing-bot`.
    for (field, value) in [
        ("agent_id", "billing-bot\u{200b}"),
        ("session_id", "s\u{202e}1"),
        ("hostname", "h\u{7}x"),
        ("agent_id", "billing-bot "),
        ("agent_id", "cafe\u{301}-bot"),
        // Longer than any agent's name: it would escape discovery.
        ("agent_id", &"\u{e4}".repeat(201)),
    ] {
        let mut event = json!({"event_type": "TOOL_CALL_POST", "agent_id": "billing-bot"});
        event[field] = json!(value);
        let r = api.post("/v1/events/batch", &json!([event]));
        assert_eq!(r.status, 400, "{field} {value:?}: {}", r.text);
        assert!(r.text.contains(field), "{field}: {}", r.text);
    }
    // A long session's whole history, as the SDK sends it with every
    // event: its latest calls are kept, with the count, not the event lost.
    let history: Vec<String> = (0..5_000).map(|i| format!("kb.step{i}")).collect();
    let r = api.post(
        "/v1/events/batch",
        &json!([{"event_type": "TOOL_CALL_POST", "tool_name": "kb.search", "agent_id": "billing-bot",
                 "session_id": "long-sess", "session_tool_calls": history}]),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    wait_total(&api, "session_id:long-sess", 1);
    let e = &search(&api, json!({"query": "session_id:long-sess"}))["events"][0];
    assert_eq!(e["fields"]["session_tool_call_count"], 5_000, "{e}");
    let kept = e["fields"]["session_tool_calls"].as_array().unwrap();
    assert_eq!((kept.len(), kept[199].as_str()), (200, Some("kb.step4999")));
    // Arguments no event can hold (an empty name; 600 values, twice over
    // as the SDK copies them) are withheld and said to be, and the batch's
    // other events are stored with theirs.
    let ids: Vec<u32> = (0..600).collect();
    let odd_args = [json!({"path": "/etc/shadow", "": "x"}), json!({"ids": ids})];
    let mut batch = vec![
        json!({"event_type": "TOOL_CALL_POST", "tool_name": "fs.read",
        "agent_id": "billing-bot", "session_id": "odd-args",
        "metadata": {"tool_args": {"path": "/etc/hosts"}, "tool_call": {"name": "fs.read", "arguments": {"path": "/etc/hosts"}}}}),
    ];
    for args in &odd_args {
        batch.push(
            json!({"event_type": "TOOL_CALL_POST", "tool_name": "fs.read",
            "agent_id": "billing-bot", "session_id": "odd-args",
            "metadata": {"tool_args": args, "tool_call": {"name": "fs.read", "arguments": args}}}),
        );
    }
    let r = api.post("/v1/events/batch", &json!(batch));
    assert_eq!(r.status, 202, "{}", r.text);
    wait_total(&api, "session_id:odd-args", 3);
    assert_eq!(total(&api, "session_id:odd-args AND args_withheld:true"), 2);
    let kept = search(
        &api,
        json!({"query": "session_id:odd-args AND NOT _exists_:args_withheld"}),
    );
    let e = &kept["events"][0];
    assert_eq!(
        e["fields"]["metadata"]["tool_args"]["path"], "/etc/hosts",
        "{e}"
    );
    assert_eq!(
        total(&api, "session_id:odd-args AND _exists_:metadata.tool_args"),
        1
    );
    assert_eq!(
        total(
            &api,
            "session_id:odd-args AND _exists_:metadata.tool_call.arguments"
        ),
        1
    );
    assert_eq!(total(&api, "session_id:odd-args AND \"/etc/shadow\""), 0);
    assert_eq!(total(&api, "SDKCARD9999"), 0);
    assert_eq!(total(&api, "metadata.tool_args.card:SDKCARD9999"), 0);
    for e in search(
        &api,
        json!({"query": "session_id:sdk-sess AND _exists_:metadata.tool_call.arguments.card"}),
    )["events"]
        .as_array()
        .unwrap()
    {
        let metadata = &e["fields"]["metadata"];
        assert_eq!(metadata["tool_args"]["card"], "[REDACTED]", "{e}");
        assert_eq!(
            metadata["tool_call"]["arguments"]["card"], "[REDACTED]",
            "{e}"
        );
        assert_eq!(metadata["tool_args"]["amount"], 5, "{e}");
    }
    assert!(!backend
        .sql("SELECT body FROM events")
        .contains("SDKCARD9999"));
    // An agent's events before its first enforcement discover it, as
    // enforcement would: they carry its Warden id from the first one.
    let agents = api.get("/api/v1/agents?search=never-seen-bot");
    let id = agents.body["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(agents.body["data"][0]["status"], "discovered");
    assert_eq!(
        agents.body["data"][0]["description"],
        "Registered by Warden on its first event"
    );
    // The registry changed without a decision: the audit log says so.
    let log = api.get(&format!("/api/v1/audit?kind=agent_change&agent_id={id}"));
    assert_eq!(
        log.body["data"][0]["detail"]["change"], "discovered",
        "{}",
        log.text
    );
    assert_eq!(
        log.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        log.text
    );
    wait_total(
        &api,
        &format!("agent_id:{id} AND fields.external_agent_id:never-seen-bot"),
        1,
    );
}

/// Decisions' events reach the index in memory, numbered from what their
/// audit commit returned; ingests run beside them. Every event must be
/// indexed exactly once, and stay so after a `kill -9` (which drops what
/// lies past the index's cursor and reads it again by sequence number).
fn concurrent_decisions_and_ingests_are_each_indexed_once(backend: &Backend) {
    // 210 requests at once: past the default plan's burst of 200.
    backend.init();
    let t = backend.create_unthrottled_org("Crowd");
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    std::thread::scope(|scope| {
        for agent in 0..4 {
            let api = &api;
            scope.spawn(move || {
                for call in 0..50 {
                    let r = api.post(
                        "/api/v1/enforce",
                        &json!({"agent_id": format!("crowd-{agent}"), "tool_name": "fs.read",
                                "session_id": format!("crowd-{agent}"),
                                "tool_args": {"call": call}}),
                    );
                    assert_eq!(r.status, 200, "{}", r.text);
                }
            });
        }
        for writer in 0..2 {
            let api = &api;
            scope.spawn(move || {
                for batch in 0..5 {
                    let events: Vec<Value> = (0..20)
                        .map(|i| json!({"message": format!("beside w{writer} b{batch} i{i}")}))
                        .collect();
                    ingest(api, Value::Array(events));
                }
            });
        }
    });
    let decisions = "source:agent AND tool:fs.read";
    wait_total(&api, decisions, 200);
    wait_total(&api, "message:beside", 200);
    let audit_ids = |api: &Api| -> BTreeSet<String> {
        search(api, json!({"query": decisions, "limit": 200}))["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["fields"]["audit_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(audit_ids(&api).len(), 200, "each decision once");
    // The log holds exactly these 400 events; /metrics says the index
    // returns them all, and that no acknowledgment had to wait for it.
    wait_metrics(
        &w,
        &[
            "warden_index_searchable_position 400",
            "warden_index_unsearchable_events 0",
            "warden_index_backpressure_waits_total 0",
            "warden_index_unsearchable_oldest_seconds 0.0",
        ],
    );
    // Events of 64 KiB shrink the backlog allowed, counted in events (for
    // a backlog this process did not append), from the first batch of
    // them; what it did append is bounded by its work, in bytes.
    let ordinary = metric(&w, "warden_index_backlog_allowed_events");
    assert!(ordinary > 1_000.0, "{ordinary}");
    assert!(metric(&w, "warden_index_backlog_allowed_bytes") >= 256.0 * 1024.0);
    let large: Vec<Value> = (0..20)
        .map(|i| json!({"message": format!("large {i} {}", "word ".repeat(13_107))}))
        .collect();
    ingest(&api, Value::Array(large));
    let allowed = metric(&w, "warden_index_backlog_allowed_events");
    assert!(
        allowed * 2.0 < ordinary,
        "{allowed} events of 64 KiB, {ordinary} before"
    );
    wait_total(&api, "message:large", 20);
    wait_metrics(
        &w,
        &[
            "warden_index_unsearchable_bytes 0",
            "warden_index_unsearchable_oldest_seconds 0.0",
        ],
    );

    let w = w.crash_and_restart(&backend.data_dir(0));
    let api = w.api(&t.live_key);
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "crowd-0", "tool_name": "fs.read", "session_id": "crowd-0"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    wait_total(&api, decisions, 201);
    assert_eq!(total(&api, "message:beside"), 200);
    assert_eq!(
        audit_ids(&api).len(),
        200,
        "a page of 200 distinct decisions"
    );
}

/// Ten allowed calls of one agent's session.
fn decide_ten(api: &Api) {
    for call in 0..10 {
        let r = api.post(
            "/api/v1/enforce",
            &json!({"agent_id": "crash-bot", "tool_name": "fs.read",
                    "session_id": "crash", "tool_args": {"call": call}}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

/// On SQLite a decision's event is appended after its record commits, in
/// runs; a `kill -9` between the two leaves records without events, which
/// the restarted server publishes from the audit log, each exactly once.
/// (PostgreSQL commits each event with its record.)
fn decisions_committed_before_a_crash_get_their_events_once(backend: &Backend) {
    let t = backend.init();
    let mut w = Warden::start(backend, &[]);
    let mut decided = 0u64;
    let mut pending_at_a_crash = false;
    let mut edited_record = None;
    for _ in 0..5 {
        decide_ten(&w.api(&t.live_key));
        decided += 10;
        let (restarted, (logged, recorded, edited)) =
            w.crash_look_and_restart(&backend.data_dir(0), || {
                let count = |sql: &str| -> u64 { backend.sql(sql).trim().parse().unwrap() };
                let recorded = count(&format!(
                    "SELECT COUNT(*) FROM audit_log WHERE org_id = '{}' AND kind = 'decision'",
                    t.org_id
                ));
                let logged = store_count(backend, &t.org_id);
                // A record edited before its event is made (its content no
                // longer matches its hash) must get no event: search never
                // shows what the chain does not vouch for.
                let mut edited = None;
                if !backend.is_postgres() && logged < recorded {
                    let row = count("SELECT MAX(rowid) FROM audit_log");
                    backend.sql(&format!(
                        "UPDATE audit_log SET record = replace(record, 'fs.read', 'fs.edited') \
                         WHERE rowid = {row}"
                    ));
                    edited = Some(
                        backend
                            .sql(&format!("SELECT id FROM audit_log WHERE rowid = {row}"))
                            .trim()
                            .to_string(),
                    );
                }
                (logged, recorded, edited)
            });
        w = restarted;
        assert_eq!(recorded, decided, "every answered decision is recorded");
        assert!(logged <= decided);
        if backend.is_postgres() {
            assert_eq!(logged, decided, "each event commits with its record");
        }
        if logged < decided {
            pending_at_a_crash = true;
            edited_record = edited;
            break;
        }
    }
    assert!(
        pending_at_a_crash || backend.is_postgres(),
        "no crash came between a record and its event"
    );
    let api = w.api(&t.live_key);
    let published = decided - u64::from(edited_record.is_some());
    wait_total(&api, "source:agent AND tool:fs.read", published);
    assert_eq!(total(&api, "tool:fs.edited"), 0);
    assert_eq!(
        store_count(backend, &t.org_id),
        published,
        "each event once"
    );
    if let Some(id) = &edited_record {
        let log = std::fs::read_to_string(log_path(&backend.data_dir(0))).unwrap();
        assert!(log.contains("does not match its hash"), "{log}");
        let v = api.get("/api/v1/audit/verify");
        assert_eq!(
            v.body["data"]["first_break"]["audit_id"],
            id.as_str(),
            "{}",
            v.text
        );
    }
    let found = search(&api, json!({"query": "tool:fs.read", "limit": 200}));
    let audit_ids: BTreeSet<&str> = found["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fields"]["audit_id"].as_str().unwrap())
        .collect();
    assert_eq!(audit_ids.len() as u64, published, "one event per decision");
    if backend.is_postgres() {
        return;
    }
    // A row that no longer reads as a record at all (its environment
    // edited) holds up no later decision's event.
    let mut published = published;
    let mut w = w;
    for _ in 0..5 {
        decide_ten(&w.api(&t.live_key));
        let (restarted, edited) = w.crash_look_and_restart(&backend.data_dir(0), || {
            let published_up_to =
                "(SELECT position FROM consumer_cursors WHERE name = 'decision-events')";
            let pending: u64 = backend
                .sql(&format!(
                    "SELECT COUNT(*) FROM audit_log WHERE rowid > {published_up_to}"
                ))
                .trim()
                .parse()
                .unwrap();
            // Not the chain's last record: its head must stay whole.
            let edited = pending >= 2;
            if edited {
                backend.sql(&format!(
                    "UPDATE audit_log SET environment = 'elsewhere' WHERE rowid = \
                     (SELECT MIN(rowid) FROM audit_log WHERE rowid > {published_up_to})"
                ));
            }
            edited
        });
        w = restarted;
        published += 10 - u64::from(edited);
        if edited {
            break;
        }
    }
    let api = w.api(&t.live_key);
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "crash-bot", "tool_name": "fs.read", "session_id": "crash"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    wait_total(&api, "source:agent AND tool:fs.read", published + 1);
}

fn retention_removes_old_events(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    ingest(
        &api,
        json!([
            {"timestamp": ago(10 * 86_400_000), "message": "ancient"},
            {"timestamp": ago(3 * 86_400_000), "message": "old"},
            {"timestamp": ago(3_600_000), "message": "recent"}
        ]),
    );
    let all = json!({"from_time": "now-30d", "limit": 0});
    let deadline = Instant::now() + Duration::from_secs(20);
    while search(&api, all.clone())["total"] != 3 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = api.get("/api/v1/events/retention");
    assert!(r.body["data"]["retention_days"].is_null(), "{}", r.text);
    let r = api.json_text(
        "PUT",
        "/api/v1/events/retention",
        br#"{"retention_days": 0}"#,
    );
    assert_eq!(r.error(400, "invalid_request")["field"], "retention_days");
    // Left out is not "forever": null says that.
    let r = api.json_text("PUT", "/api/v1/events/retention", b"{}");
    assert_eq!(r.error(400, "invalid_request")["field"], "retention_days");
    let r = api.json_text(
        "PUT",
        "/api/v1/events/retention",
        br#"{"retention_days": 5}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // Out of the store and this replica's index before the answer.
    assert_eq!(search(&api, all.clone())["total"], 2);
    assert_eq!(store_count(backend, &t.org_id), 2);
    assert_eq!(total(&api, "ancient"), 0);
    assert_eq!(
        api.get("/api/v1/events/retention").body["data"]["retention_days"],
        5
    );
    // An event already past the setting when it arrives is not served
    // while it waits for the next sweep (it had been, for up to a minute).
    let ids = ingest(
        &api,
        json!([
            {"timestamp": ago(6 * 86_400_000), "message": "arrived expired"},
            {"message": "arrived fresh"}
        ]),
    );
    wait_total(&api, "arrived", 1);
    let expired = search(
        &api,
        json!({"query": "\"arrived expired\"", "from_time": "now-30d", "limit": 0}),
    );
    assert_eq!(expired["total"], 0, "{expired}");
    api.get(&format!("/api/v1/events/{}", ids[0]))
        .error(404, "not_found");
    assert_eq!(api.get(&format!("/api/v1/events/{}", ids[1])).status, 200);
    let r = api.get("/api/v1/events?query=arrived&from=now-30d");
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{}", r.text);
    // Retention removes live events of the whole organization: an admin
    // key bound to one agent, or a test key, may not change it.
    let agent = api.create_agent("retention-bot");
    let (_, bound) =
        api.create_key(json!({"name": "bound admin", "scopes": ["admin"], "agent_id": agent}));
    for key in [bound.as_str(), t.test_key.as_str()] {
        let r = w.api(key).json_text(
            "PUT",
            "/api/v1/events/retention",
            br#"{"retention_days": 1}"#,
        );
        assert_eq!(r.status, 403, "{}", r.text);
    }
    assert_eq!(search(&api, all.clone())["total"], 3);

    // Old events acknowledged just before a change, not yet indexed, do
    // not come back once it answers (the index took them after the
    // removal, and search found them for a while).
    let old: Vec<Value> = (0..10_000)
        .map(|i| json!({"timestamp": ago(4 * 86_400_000), "message": format!("late {i}")}))
        .collect();
    ingest(&api, Value::Array(old));
    let r = api.json_text(
        "PUT",
        "/api/v1/events/retention",
        br#"{"retention_days": 4}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    for _ in 0..10 {
        assert_eq!(search(&api, all.clone())["total"], 3);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn reindex_rebuilds_the_index_from_the_store(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let events: Vec<Value> = (0..300)
        .map(|i| json!({"message": format!("reindex me {i}"), "n": i}))
        .collect();
    ingest(&api, Value::Array(events));
    wait_total(&api, "reindex", 300);
    // While serving, the index is in use.
    let out = backend.cli(&["reindex"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{out:?}"
    );
    assert!(w.terminate().success());
    std::fs::remove_dir_all(backend.data_dir(0).join("index")).unwrap();
    let out = backend.cli(&["reindex"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Reindexed 300 events"),
        "{out:?}"
    );
    let out = backend.cli(&["reindex", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], 300, "{report}");
    assert!(report["log_position"].as_i64().unwrap() >= 300, "{report}");
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    assert_eq!(total(&api, "reindex"), 300);
    assert_eq!(total(&api, "n:[100 TO 199]"), 100);

    // An index restored from a snapshot taken before the last events:
    // its own last commit says how far it got, so the events after it
    // are indexed again, though the saved position is past them.
    assert!(w.terminate().success());
    let dir = backend.data_dir(0).join("index");
    let snapshot = backend.data_dir(0).with_extension("snapshot");
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        let status = std::process::Command::new("cp")
            .args(["-a", &from.display().to_string(), &to.display().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    copy(&dir, &snapshot);
    let id = |d: &std::path::Path| std::fs::read_to_string(d.join("warden-index-id")).unwrap();
    let before = id(&dir);
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    ingest(&api, json!([{"message": "after the snapshot"}]));
    wait_total(&api, "snapshot", 1);
    assert!(w.terminate().success());
    std::fs::remove_dir_all(&dir).unwrap();
    copy(&snapshot, &dir);
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    wait_total(&api, "snapshot", 1);
    assert_eq!(total(&api, ""), 301);
    // `reindex` names the index anew: a copy of this data dir started
    // beside it (a cloned replica) no longer shares its position.
    assert!(w.terminate().success());
    assert!(backend.cli(&["reindex"]).status.success());
    assert_ne!(id(&dir), before, "the rebuilt index has a name of its own");
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    assert_eq!(total(&api, ""), 301);

    // An index that lost its `meta.json` holds nothing: it is filled again
    // from the log, though the saved position says it was done.
    assert!(w.terminate().success());
    std::fs::remove_file(dir.join("meta.json")).unwrap();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    wait_total(&api, "", 301);
    // The replay is told in the log from its start to its end, and
    // readiness reads `ok` once it is over.
    let index_check = || w.anonymous().get("/readyz").body["checks"]["index"].clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while index_check() != "ok" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(index_check(), "ok");
    let log = std::fs::read_to_string(log_path(&backend.data_dir(0))).unwrap();
    let told = |what: &str| {
        log.lines()
            .rfind(|l| l.contains(what))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        told("replaying events of the log").contains("events=301"),
        "{log}"
    );
    assert!(
        told("caught up with the event log").contains("events=301"),
        "{log}"
    );
    // A damaged one does not keep the server down: it is set aside and
    // built again from the log.
    assert!(w.terminate().success());
    std::fs::write(dir.join("meta.json"), "garbage{").unwrap();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    wait_total(&api, "", 301);
    assert!(w.terminate().success());
    std::fs::write(dir.join("meta.json"), "garbage{").unwrap();
    assert!(backend.cli(&["reindex"]).status.success());
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    assert_eq!(total(&api, ""), 301);

    // Damage inside the stored events, which opening does not read: a
    // search that reads them says so (503, naming the cure) and readiness
    // turns degraded; `warden reindex` mends it.
    assert!(w.terminate().success());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "store") {
            let mut bytes = std::fs::read(&path).unwrap();
            let end = bytes.len() / 2;
            for b in bytes[100..end].iter_mut().step_by(3) {
                *b ^= 0x55;
            }
            std::fs::write(&path, bytes).unwrap();
        }
    }
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let r = api.post(
        "/api/v1/siem/search",
        &json!({"query": "", "from_time": "now-30d", "limit": 1000}),
    );
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("warden reindex"), "{}", r.text);
    let ready = w.anonymous().get("/readyz");
    assert_eq!(ready.body["checks"]["index"], "damaged", "{}", ready.text);
    assert_eq!(ready.body["status"], "degraded", "{}", ready.text);
    assert!(w.terminate().success());
    assert!(backend.cli(&["reindex"]).status.success());
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    let r = api.post(
        "/api/v1/siem/search",
        &json!({"query": "", "from_time": "now-30d", "limit": 1000}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["total"], 301);
}

fn the_index_recovers_from_failed_commits(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    ingest(&api, json!([{"message": "indexed before the limit"}]));
    wait_total(&api, "", 1);
    let hard = common::open_files_hard_limit(w.pid());
    // No file can be opened: the index cannot write a segment, while the
    // store (its files open) and this keep-alive connection still work.
    let open = common::lowest_free_descriptor(w.pid());
    common::set_open_files_limit(w.pid(), &format!("{open}:{hard}"));
    let mut acknowledged = 0;
    // Batches over 64 KiB, parsed with the worker's queue handed to
    // another thread: reads on threads started then use connections
    // already open.
    let padding = "p".repeat(1_400);
    for batch in 0..3 {
        let events: Vec<Value> = (0..50)
            .map(|i| json!({"message": format!("acknowledged while files ran out {batch} {i} {padding}")}))
            .collect();
        acknowledged += ingest(&api, Value::Array(events)).len() as u64;
        std::thread::sleep(Duration::from_millis(700));
    }
    // Long enough for recoveries to fail too: a writer that could not be
    // restarted is replaced once files can be opened again. Meanwhile
    // readiness says the index is failing.
    let readiness = |api: &common::Api| api.get("/readyz").body["checks"]["index"].clone();
    let deadline = Instant::now() + Duration::from_millis(3000);
    let mut seen_failing = false;
    while Instant::now() < deadline {
        seen_failing |= readiness(&api) == "failing";
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen_failing, "readiness never said the index was failing");
    common::set_open_files_limit(w.pid(), &format!("{hard}:{hard}"));
    // Each failure counted, not once an outage; the limit and the files
    // in use shown.
    let failures = metric(&w, "warden_index_failures_total");
    assert!(failures >= 2.0, "{failures}");
    assert_eq!(
        metric(&w, "warden_process_max_fds"),
        hard.parse::<f64>().unwrap()
    );
    assert!(metric(&w, "warden_process_open_fds") >= open as f64);
    // Every acknowledged event becomes searchable once, with no restart.
    wait_total(&api, "acknowledged", acknowledged);
    wait_total(&api, "", acknowledged + 1);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(total(&api, ""), acknowledged + 1);
    assert_eq!(readiness(&api), "ok");
    assert_eq!(api.get("/readyz").body["status"], "ready");
}

fn idle_syslog_connections_give_way_and_start_up_is_checked_first(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(
        backend,
        &[
            "--syslog-tcp",
            "127.0.0.1:0",
            "--syslog-org",
            &t.org_id,
            "--syslog-tcp-connections",
            "4",
        ],
    );
    let api = w.api(&t.live_key);
    let port = syslog_port(&w, "TCP");
    // Every slot held by a connection that sends a byte every half second
    // without ever finishing a message (before, a byte counted as
    // activity, so such dribbling held a slot for good; a connection that
    // never sends is idle either way).
    let dribbling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let dribblers: Vec<_> = (0..4)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
            let on = dribbling.clone();
            std::thread::spawn(move || {
                for byte in b"dribbling".iter().cycle() {
                    if !on.load(std::sync::atomic::Ordering::Relaxed)
                        || s.write_all(&[*byte]).is_err()
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(5_500));
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-T",
        "--rfc5424",
        "-t",
        "app",
        "let in after idle senders",
    ]);
    wait_total(&api, "\"let in after idle senders\"", 1);
    // The closed connection's unfinished line is not stored as a message
    // (it went through the same pipeline before the one let in).
    assert_eq!(total(&api, "dribbling*"), 0);
    dribbling.store(false, std::sync::atomic::Ordering::Relaxed);
    for d in dribblers {
        d.join().unwrap();
    }

    // On an empty store no organization id can be known yet: the server
    // refuses before it makes (and shows once) the first admin keys.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(common::BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--syslog-org",
            "org_nowhere",
            "--data-dir",
        ])
        .arg(&data)
        .env("WARDEN_MASTER_KEY", common::MASTER_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the store is empty"),
        "{out:?}"
    );
    // Nothing was bound to the store: it may still start with another
    // master key.
    let out = std::process::Command::new(common::BIN)
        .args(["init", "--json", "--data-dir"])
        .arg(&data)
        .env("WARDEN_MASTER_KEY", "ff".repeat(32))
        .output()
        .unwrap();
    assert!(out.status.success(), "the store was left empty: {out:?}");

    // A first start whose port is taken fails before it makes the admin
    // keys, which are shown once: the store is left empty for the next.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = std::process::Command::new(common::BIN)
        .args([
            "serve",
            "--listen",
            &taken.local_addr().unwrap().to_string(),
            "--data-dir",
        ])
        .arg(dir.path().join("second"))
        .env("WARDEN_MASTER_KEY", common::MASTER_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("live: "),
        "{out:?}"
    );
    let out = std::process::Command::new(common::BIN)
        .args(["init", "--json", "--data-dir"])
        .arg(dir.path().join("second"))
        .env("WARDEN_MASTER_KEY", common::MASTER_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "no keys were made: {out:?}");
}

/// Syslog messages read before a shutdown are stored before the process
/// exits: those a TCP sender had written, and datagrams in the socket.
fn syslog_read_before_a_shutdown_is_stored(backend: &Backend) {
    let t = backend.init();
    let w = start_with_syslog(backend, &t.org_id);
    let (udp, tcp) = (syslog_port(&w, "UDP"), syslog_port(&w, "TCP"));
    send_syslog(&tcp, &udp, ("shutdownt", 20_000), ("shutdownu", 200));
    let status = w.terminate();
    assert!(
        status.success(),
        "{status:?}: {}",
        std::fs::read_to_string(common::log_path(&backend.data_dir(0))).unwrap_or_default()
    );
    assert_eq!(
        store_count(backend, &t.org_id),
        20_200,
        "{}",
        std::fs::read_to_string(common::log_path(&backend.data_dir(0))).unwrap_or_default()
    );
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    wait_total(&api, "program:shutdownt", 20_000);
    wait_total(&api, "program:shutdownu", 200);
    // A stop during indexing saves the index's position with its last
    // commit: the restart finds nothing past it to take out again.
    let log = std::fs::read_to_string(common::log_path(&backend.data_dir(0))).unwrap();
    assert!(!log.contains("past its saved position"), "{log}");
}

/// A TCP sender that never pauses cannot keep the shutdown reading: what
/// it wrote before the SIGTERM is stored, the connection is then closed,
/// and nothing read is given up as lost.
fn syslog_from_a_steady_sender_survives_a_shutdown(backend: &Backend) {
    let t = backend.init();
    let w = start_with_syslog(backend, &t.org_id);
    let tcp = syslog_port(&w, "TCP");
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sender = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{tcp}")).unwrap();
            for i in 0.. {
                let line = format!("<14>1 - h1 steady - - - seq {i}\n");
                if stream.write_all(line.as_bytes()).is_err() {
                    return;
                }
                sent.store(i + 1, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    while sent.load(std::sync::atomic::Ordering::SeqCst) < 300 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = sent.load(std::sync::atomic::Ordering::SeqCst) as u64;
    let status = w.terminate_within(Duration::from_secs(90));
    sender.join().unwrap();
    let log = std::fs::read_to_string(common::log_path(&backend.data_dir(0))).unwrap();
    assert!(status.success(), "{status:?}: {log}");
    assert!(!log.contains("were not stored in time"), "{log}");
    let stored = store_count(backend, &t.org_id);
    assert!(
        stored >= before,
        "{stored} stored of {before} written before the SIGTERM"
    );
}

/// A store that cannot take syslog messages before the shutdown's time
/// runs out: what was read is counted lost, with its number in the log.
fn syslog_not_stored_in_time_is_counted_lost(backend: &Backend) {
    if backend.is_postgres() {
        return; // The store is held with SQLite's write lock.
    }
    let t = backend.init();
    let w = start_with_syslog(backend, &t.org_id);
    let (udp, tcp) = (syslog_port(&w, "UDP"), syslog_port(&w, "TCP"));
    // Another process holds the database's write lock.
    let db = backend.data_dir(0).join("warden.db");
    let mut holder = common::hold_write_lock(&db);
    // More than the queue holds: some are still in the socket when the
    // shutdown gives up, and are counted as they are read.
    send_syslog(&tcp, &udp, ("lockedt", 8_000), ("lockedu", 100));
    std::thread::sleep(Duration::from_millis(300));
    // The lock goes once the shutdown has given up and said so (not after
    // a fixed time, which a loaded machine may overrun: the messages would
    // then be stored), so that the process can close its store and exit.
    let log_file = common::log_path(&backend.data_dir(0));
    let release = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline
            && !std::fs::read_to_string(&log_file)
                .unwrap_or_default()
                .contains("were not stored in time")
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = holder.kill();
        let _ = holder.wait();
    });
    let status = w.terminate_within(Duration::from_secs(100));
    release.join().unwrap();
    let log = std::fs::read_to_string(common::log_path(&backend.data_dir(0))).unwrap();
    assert!(status.success(), "{status:?}: {log}");
    let lost = log
        .lines()
        .find(|l| l.contains("were not stored in time"))
        .unwrap_or_else(|| panic!("no loss logged: {log}"));
    assert!(lost.contains("lost=8100"), "{lost}");
    assert_eq!(store_count(backend, &t.org_id), 0);
}

/// A page of large events ends early, with a cursor, and the pages still
/// walk every event once.
fn large_events_page_by_bytes(backend: &Backend) {
    let t = backend.init();
    let w = Warden::start(backend, &[]);
    let api = w.api(&t.live_key);
    for batch in 0..3 {
        let events: Vec<Value> = (0..4)
            .map(|i| json!({"message": format!("bulky {batch} {i} {}", "x".repeat(900_000))}))
            .collect();
        ingest(&api, Value::Array(events));
    }
    wait_total(&api, "bulky", 12);
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({"query": "bulky", "limit": 100});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let page = search(&api, body);
        let events = page["events"].as_array().unwrap();
        assert!(!events.is_empty());
        assert!(
            events.len() < 12,
            "a page of {} events of 900 KB",
            events.len()
        );
        for e in events {
            assert!(seen.insert(e["id"].as_str().unwrap().to_string()));
        }
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 12);
    assert!(pages >= 2);
}

on_every_backend!(
    idle_syslog_connections_give_way_and_start_up_is_checked_first,
    large_events_page_by_bytes,
    syslog_not_stored_in_time_is_counted_lost,
    syslog_read_before_a_shutdown_is_stored,
    syslog_from_a_steady_sender_survives_a_shutdown,
    every_operator_of_the_language,
    totals_histograms_and_pages_are_exact,
    the_index_recovers_from_failed_commits,
    bad_batches_are_refused_whole,
    ndjson_logs_stream_in_plain_or_gzip,
    syslog_from_the_real_logger,
    pieces_aliases_joined_gzip_numbers_and_long_syslog_lines,
    tenants_see_only_their_own_events,
    one_tenants_costly_search_does_not_queue_anothers,
    one_event_by_id_and_keys_bound_to_an_agent,
    acknowledged_events_survive_kill_9,
    decisions_are_agent_events,
    concurrent_decisions_and_ingests_are_each_indexed_once,
    decisions_committed_before_a_crash_get_their_events_once,
    retention_removes_old_events,
    reindex_rebuilds_the_index_from_the_store,
);

/// Batches that stream in slowly hold their bodies until they end: the
/// uploads in progress share one budget (256 MiB), past which a batch is
/// answered 503 with `Retry-After` and nothing of it is stored; once the
/// slow ones go, batches are taken again.
#[test]
fn slow_batches_share_the_upload_memory() {
    let backend = Backend::sqlite();
    let t = backend.init();
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    let addr = w.base.trim_start_matches("http://").to_string();
    // 26 batches declared at 10 MiB, each sent but for its last KiB:
    // 260,000 KiB held, 2,144 KiB of the budget left.
    let chunk = vec![b' '; 1 << 20];
    let slow: Vec<std::net::TcpStream> = (0..26)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "POST /api/v1/events/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n[",
                t.live_key,
                10 << 20
            )
            .unwrap();
            let mut sent = 1;
            while sent + chunk.len() <= 10_000 * 1024 {
                s.write_all(&chunk).unwrap();
                sent += chunk.len();
            }
            s.write_all(&chunk[..10_000 * 1024 - sent]).unwrap();
            s
        })
        .collect();
    // A batch of 3 MiB no longer fits once the server has read them.
    let big = |tag: &str| {
        let events: Vec<Value> = (0..3)
            .map(|i| json!({"message": format!("{tag} {i} {}", "y".repeat(1_000_000))}))
            .collect();
        api.raw(
            "POST",
            "/api/v1/events/batch",
            serde_json::to_vec(&events).unwrap(),
            &[("content-type", "application/json")],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let r = big("refused");
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 202, "{}", r.text);
        assert!(
            Instant::now() < deadline,
            "no batch refused past the budget"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    refused.error(503, "unavailable");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("256 MiB"),
        "{}",
        refused.text
    );
    let stored_before = total(&api, "refused");
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = big("taken");
        if r.status == 202 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text);
        assert!(Instant::now() < deadline, "the budget never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_total(&api, "taken", 3);
    // The refused batch stored nothing.
    assert_eq!(total(&api, "refused"), stored_before);
}

/// An index built from another history of the log is built again at
/// start: a data dir copied, each copy then taking other events, and one
/// copy's index put beside the other's store (positions alike, events
/// not). Search then finds the store's events, never the index's.
#[test]
fn an_index_of_another_history_is_rebuilt() {
    let backend = Backend::sqlite();
    let t = backend.init();
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    ingest(
        &api,
        json!([{"message": "common one"}, {"message": "common two"}]),
    );
    wait_total(&api, "common", 2);
    assert_eq!(w.terminate().code(), Some(0));
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        let status = std::process::Command::new("cp")
            .args([
                "-a",
                &format!("{}/.", from.display()),
                &to.display().to_string(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let (a, b) = (backend.data_dir(0), backend.data_dir(1));
    std::fs::create_dir_all(&b).unwrap();
    copy(&a, &b);
    for (replica, word) in [(0, "alpha"), (1, "beta")] {
        let w = Warden::start_replica(&backend, replica, &[], &[]);
        let api = w.api(&t.live_key);
        let events: Vec<Value> = (0..3)
            .map(|i| json!({"message": format!("{word} {i}")}))
            .collect();
        ingest(&api, Value::Array(events));
        wait_total(&api, word, 3);
        assert_eq!(w.terminate().code(), Some(0));
    }
    // The first copy's index beside the second's store.
    std::fs::remove_dir_all(b.join("index")).unwrap();
    std::fs::create_dir_all(b.join("index")).unwrap();
    copy(&a.join("index"), &b.join("index"));
    let w = Warden::start_replica(&backend, 1, &[], &[]);
    let api = w.api(&t.live_key);
    wait_total(&api, "beta", 3);
    assert_eq!(total(&api, "alpha"), 0);
    assert_eq!(total(&api, ""), 5);
    let log = std::fs::read_to_string(log_path(&b)).unwrap();
    assert!(log.contains("another history of the event log"), "{log}");
}

/// A store restored from an older copy under an index that took events
/// since: the index takes out what it holds past the position the store
/// saved, with a warning, so search never finds events the store lost.
#[test]
fn an_index_past_a_restored_store_is_cut_back() {
    let backend = Backend::sqlite();
    let t = backend.init();
    let dir = backend.data_dir(0);
    let store_files = ["warden.db", "warden.db-wal", "warden.db-shm"];
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    ingest(
        &api,
        json!([{"message": "kept one"}, {"message": "kept two"}]),
    );
    wait_total(&api, "kept", 2);
    assert_eq!(w.terminate().code(), Some(0));
    let copy = dir.with_extension("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in store_files {
        if dir.join(f).exists() {
            std::fs::copy(dir.join(f), copy.join(f)).unwrap();
        }
    }
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    ingest(
        &api,
        json!([{"message": "ghost one"}, {"message": "ghost two"}]),
    );
    wait_total(&api, "ghost", 2);
    assert_eq!(w.terminate().code(), Some(0));
    for f in store_files {
        let _ = std::fs::remove_file(dir.join(f));
        if copy.join(f).exists() {
            std::fs::copy(copy.join(f), dir.join(f)).unwrap();
        }
    }
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    ingest(&api, json!([{"message": "after restore"}]));
    wait_total(&api, "restore", 1);
    assert_eq!(total(&api, "ghost"), 0);
    assert_eq!(total(&api, ""), 3);
    let log = std::fs::read_to_string(log_path(&dir)).unwrap();
    assert!(log.contains("past its saved position"), "{log}");
}

/// `n` events whose messages are `tag 0`, `tag 1`, …
fn numbered(tag: &str, n: usize) -> Value {
    (0..n)
        .map(|i| json!({"message": format!("{tag} {i}")}))
        .collect()
}

/// `warden restore` after a crash: the crashed store's WAL, which SQLite
/// would replay onto the copy, is removed; the copy's state comes back
/// whole, its chain verifies and search holds its events alone.
#[test]
fn restore_puts_a_copy_back_without_the_crashed_stores_wal() {
    let backend = Backend::sqlite();
    let t = backend.init();
    let data = backend.data_dir(0);
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    ingest(&api, numbered("copied", 100));
    wait_total(&api, "copied", 100);
    // Refused while a server runs on the directory.
    let copy = backend.dir.path().join("copy.db");
    let out = backend.cli(&["restore", "--from", &copy.display().to_string()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop `warden serve`"),
        "{out:?}"
    );
    assert!(w.terminate().success());
    std::fs::copy(data.join("warden.db"), &copy).unwrap();

    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    ingest(&api, numbered("later", 50));
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "after-the-copy", "tool_name": "fs.read"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    wait_total(&api, "later", 50);
    w.kill9();
    assert!(data.join("warden.db-wal").exists(), "a crash keeps the WAL");

    let out = backend.cli(&["restore", "--from", &copy.display().to_string(), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let told: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(told["removed_wal"], true, "{told}");
    assert_eq!(told["index"]["events"], 100, "{told}");

    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    assert_eq!(total(&api, "copied"), 100);
    assert_eq!(total(&api, "later"), 0);
    let r = api.get("/api/v1/agents/after-the-copy");
    assert_eq!(r.status, 404, "{}", r.text);
    let r = api.get("/api/v1/audit/verify");
    assert_eq!(r.body["data"]["valid"], true, "{}", r.text);
    let r = w.anonymous().get("/readyz");
    assert_eq!(r.body["checks"]["store"], "ok", "{}", r.text);
    assert!(w.terminate().success());

    // A copy that is not a whole store changes nothing.
    std::fs::write(&copy, b"SQLite format 3\0torn").unwrap();
    let out = backend.cli(&["restore", "--from", &copy.display().to_string()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing was changed"),
        "{out:?}"
    );
    // Nor does it leave anything in a new directory it was aimed at.
    let fresh = backend.dir.path().join("fresh");
    let out = std::process::Command::new(common::BIN)
        .args([
            "restore",
            "--from",
            &copy.display().to_string(),
            "--data-dir",
        ])
        .arg(&fresh)
        .env("WARDEN_MASTER_KEY", common::MASTER_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(!fresh.exists(), "{out:?}");
    let w = Warden::start(&backend, &[]);
    assert_eq!(total(&w.api(&t.live_key), "copied"), 100);
}

/// `warden backup` copies a store while its server runs: a new private
/// file, never over one, whose counts are what a restore brings back.
#[test]
fn backup_copies_a_running_store_that_restore_brings_back() {
    let backend = Backend::sqlite();
    let t = backend.init();
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    ingest(&api, numbered("copied", 100));
    for i in 0..3 {
        let r = api.post(
            "/api/v1/enforce",
            &json!({"agent_id": "before-the-copy", "tool_name": format!("fs.read{i}")}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    wait_total(&api, "copied", 100);
    wait_total(&api, "program:warden", 3);
    let copy = backend.dir.path().join("backup.db");
    let to = copy.display().to_string();
    let out = backend.cli(&["backup", "--to", &to, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let told: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(told["backup"], to.as_str(), "{told}");
    assert_eq!(told["events"], 103, "{told}");
    let records = told["audit_records"].as_u64().unwrap();
    assert!(records >= 3, "{told}");
    let bytes = std::fs::metadata(&copy).unwrap().len();
    assert_eq!(told["bytes"], bytes, "{told}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // Never over an existing file, and nothing is written on a refusal.
    ingest(&api, numbered("later", 50));
    let out = backend.cli(&["backup", "--to", &to]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never over one"),
        "{out:?}"
    );
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), bytes);
    // Nor inside the data directory, which it is meant to outlive.
    let inside = backend.data_dir(0).join("inside.db");
    let out = backend.cli(&["backup", "--to", &inside.display().to_string()]);
    assert!(!out.status.success(), "{out:?}");
    assert!(!inside.exists());
    // A relative name that reads as an SQLite URI is the file it names.
    let out = std::process::Command::new(common::BIN)
        .args(["backup", "--to", "file:copy.db", "--data-dir"])
        .arg(backend.data_dir(0))
        .current_dir(backend.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let literal = backend.dir.path().join("file:copy.db");
    assert!(std::fs::metadata(&literal).unwrap().len() > 0);
    assert!(!backend.dir.path().join("copy.db").exists());
    // Written under a name of its own until whole: none is left behind.
    let partial: Vec<_> = std::fs::read_dir(backend.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
    // A store SQLite cannot read is called damaged, not another's.
    let torn = backend.dir.path().join("torn");
    std::fs::create_dir(&torn).unwrap();
    std::fs::write(torn.join("warden.db"), vec![7u8; 8192]).unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["backup", "--to"])
        .arg(backend.dir.path().join("torn.db"))
        .arg("--data-dir")
        .arg(&torn)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is damaged"),
        "{out:?}"
    );
    assert!(!backend.dir.path().join("torn.db").exists());
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "after-the-copy", "tool_name": "fs.read"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    wait_total(&api, "later", 50);
    // PostgreSQL's copy is pg_dump's.
    let out = backend.cli(&[
        "backup",
        "--to",
        &backend.dir.path().join("pg.db").display().to_string(),
        "--database-url",
        "postgres://127.0.0.1:1/none",
    ]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pg_dump"),
        "{out:?}"
    );
    assert!(!backend.dir.path().join("pg.db").exists());
    assert!(w.terminate().success());

    let out = backend.cli(&["restore", "--from", &to, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let restored: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(restored["index"]["events"], 103, "{restored}");
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    assert_eq!(total(&api, "copied"), 100);
    assert_eq!(total(&api, "later"), 0);
    let r = api.get("/api/v1/agents/before-the-copy");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.get("/api/v1/agents/after-the-copy");
    assert_eq!(r.status, 404, "{}", r.text);
    let r = api.get("/api/v1/audit/verify");
    assert_eq!(r.body["data"]["valid"], true, "{}", r.text);
    assert!(w.terminate().success());
}

/// The data directory itself is held by its server, so a lost `index/`
/// (whose lock was once the only guard) lets no other process in: neither
/// a restore that would replace the store under it, nor a reindex, nor a
/// second server; what the server acknowledges afterwards stays.
#[test]
fn a_lost_index_lets_no_other_process_into_a_served_directory() {
    let backend = Backend::sqlite();
    let t = backend.init();
    let data = backend.data_dir(0);
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    let copy = backend.dir.path().join("copy.db");
    let out = backend.cli(&["backup", "--to", &copy.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    // The running indexer may write a file in it meanwhile (a commit, its
    // metadata): removed again until it is gone.
    let mut left = 50;
    while let Err(e) = std::fs::remove_dir_all(data.join("index")) {
        left -= 1;
        assert!(
            e.kind() == std::io::ErrorKind::DirectoryNotEmpty && left > 0,
            "{e}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = |out: &std::process::Output| {
        assert!(!out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("in use by another Warden process"),
            "{out:?}"
        );
    };
    refused(&backend.cli(&["restore", "--from", &copy.display().to_string()]));
    refused(&backend.cli(&["reindex"]));
    refused(&backend.cli_within(
        &["serve", "--listen", "127.0.0.1:0"],
        Duration::from_secs(20),
    ));
    let r = api.post("/api/v1/agents", &json!({"name": "after-the-loss"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["data"]["id"].as_str().unwrap().to_string();
    assert!(w.terminate().success());
    let w = Warden::start(&backend, &[]);
    let r = w.api(&t.live_key).get(&format!("/api/v1/agents/{id}"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(w.terminate().success());
}

/// The index commits but the store will not save its position (a damaged
/// store refuses writes; here a trigger refuses them): the events stay
/// searchable, totals hold still, and nothing is taken out and indexed
/// again in a loop.
#[test]
fn an_unsaved_index_position_takes_nothing_out_of_search() {
    let backend = Backend::sqlite();
    let t = backend.init();
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    ingest(&api, numbered("saved", 100));
    wait_total(&api, "saved", 100);
    backend.sql(
        "CREATE TRIGGER refuse_index_cursor BEFORE UPDATE ON consumer_cursors \
         WHEN OLD.name LIKE 'index:%' BEGIN SELECT RAISE(ABORT, 'refused for the test'); END",
    );
    for round in 0..3 {
        ingest(&api, numbered(&format!("unsaved{round}"), 50));
    }
    wait_total(&api, "unsaved0 OR unsaved1 OR unsaved2", 150);
    for _ in 0..20 {
        assert_eq!(total(&api, ""), 250);
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(log_path(&backend.data_dir(0))).unwrap();
    assert!(!log.contains("going back to its saved cursor"), "{log}");
    assert_eq!(
        log.matches("its position could not be saved").count(),
        1,
        "told once: {log}"
    );
    // Saved again with a later commit once the store takes it.
    backend.sql("DROP TRIGGER refuse_index_cursor");
    ingest(&api, numbered("later", 10));
    wait_total(&api, "later", 10);
    assert!(w.terminate().success());
    let w = Warden::start(&backend, &[]);
    assert_eq!(total(&w.api(&t.live_key), ""), 260);
}

/// A Warden key or token written into an event or a call is never stored:
/// every key that reads events or the audit log would see it.
#[test]
fn credentials_in_events_and_calls_are_not_stored() {
    let backend = Backend::sqlite();
    let t = backend.init();
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    let token = api.post("/api/v1/auth/token", &json!({"api_key": t.test_key}));
    let token = token.body["data"]["token"].as_str().unwrap().to_string();
    let key = t.test_key.clone();
    ingest(
        &api,
        json!([{"message": format!("agent env dump THOTH_API_KEY={key} done"),
                "tags": ["leak"], "session_id": format!("s-{key}"), "agent_id": format!("a-{token}"),
                "fields": {"env": {"TOKEN": token, "list": [format!("x{key}")]},
                           key.clone(): "as a name", "n": 1,
                           "glued": format!("{}{key}", t.live_key),
                           "wrapped": format!("{}\n{}", &key[..9], &key[9..])}}]),
    );
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "leaky-bot", "tool_name": "http.get",
                "tool_args": {"auth": key, "deep": [{"t": token}]},
                "context": {"note": format!("Bearer {key}")}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // A name holding one is refused: it would be shown wherever names are.
    for (field, value) in [
        ("agent_id", format!("bot-{key}")),
        ("session_id", key.clone()),
    ] {
        let mut call = json!({"agent_id": "leaky-bot", "tool_name": "http.get"});
        call[field] = json!(value);
        let r = api.post("/api/v1/enforce", &call);
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            field,
            "{}",
            r.text
        );
    }
    // A `modify` records the changed arguments without it; a hold's
    // comment is kept without it.
    let r = api.post(
        "/api/v1/policies",
        &json!({"name": "mod", "action_pattern": "mod.*", "decision": "modify",
                "modify": {"set": {"y": "z"}}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "leaky-bot", "tool_name": "mod.x", "tool_args": {"q": key}}),
    );
    assert_eq!(r.body["data"]["decision"], "modify", "{}", r.text);
    let r = api.post(
        "/api/v1/policies",
        &json!({"name": "hold", "action_pattern": "held.*", "decision": "step_up"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let held = api.post(
        "/api/v1/enforce",
        &json!({"agent_id": "leaky-bot", "tool_name": "held.x"}),
    );
    let hold_id = held.body["data"]["hold_id"].as_str().unwrap().to_string();
    let r = api.post(
        &format!("/api/v1/holds/{hold_id}/deny"),
        &json!({"comment": format!("no, and rotate {key}")}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"]["comment"], "no, and rotate [REDACTED]",
        "{}",
        r.text
    );
    // Whatever an agent or a policy keeps is refused with one, naming the
    // field and never quoting it: the audit log's copy of a change stays.
    let refused = [
        (
            "/api/v1/agents",
            json!({"name": "a1", "description": format!("key {key}")}),
            "description",
        ),
        (
            "/api/v1/agents",
            json!({"name": "a2", "metadata": {"t": token}}),
            "metadata.t",
        ),
        (
            "/api/v1/agents",
            json!({"name": "a3", "metadata": {key.clone(): "v"}}),
            "metadata",
        ),
        (
            "/api/v1/policies",
            json!({"name": "p1", "action_pattern": "x.*", "decision": "deny",
            "description": format!("d {key}")}),
            "description",
        ),
        (
            "/api/v1/policies",
            json!({"name": "p2", "action_pattern": "x.*", "decision": "deny",
            "condition": format!("args.k == \"{key}\"")}),
            "condition",
        ),
        (
            "/api/v1/policies",
            json!({"name": "p3", "action_pattern": key, "decision": "deny"}),
            "action_pattern",
        ),
        (
            "/api/v1/policies",
            json!({"name": "p4", "action_pattern": "m.*", "decision": "modify",
            "modify": {"set": {"auth": key}}}),
            "modify.set.auth",
        ),
    ];
    for (path, body, field) in refused {
        let r = api.post(path, &body);
        assert_eq!(
            r.error(400, "invalid_request")["field"],
            field,
            "{}",
            r.text
        );
        assert!(!r.text.contains(key.as_str()), "{}", r.text);
    }
    let policy = api.get("/api/v1/policies?limit=200");
    let id = policy.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mod")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api.patch(
        &format!("/api/v1/policies/{id}"),
        &json!({"description": format!("rotated {token}")}),
    );
    assert_eq!(
        r.error(400, "invalid_request")["field"],
        "description",
        "{}",
        r.text
    );
    // Names that lose a credential keep their values apart, and names that
    // only begin like a key are no key.
    let other = key.replacen("wdn_test_", "WDN_TEST_", 1);
    ingest(
        &api,
        json!([{"message": "apart", "tags": ["apart"],
                "fields": {"[REDACTED]": "as sent", key.clone(): "first", other: "second",
                           "wdn_live_region": "eu", "wdn_live_zone": "a"}}]),
    );
    wait_total(&api, "tags:leak", 1);
    wait_total(&api, "source:agent AND tool:http.get", 1);
    let found = search(&api, json!({"query": "tags:leak"}))["events"][0].clone();
    assert!(
        found["message"]
            .as_str()
            .unwrap()
            .contains("THOTH_API_KEY=[REDACTED] done"),
        "{found}"
    );
    wait_total(&api, "tags:apart", 1);
    let apart = search(&api, json!({"query": "tags:apart"}))["events"][0]["fields"].clone();
    assert_eq!(apart["[REDACTED]"], "as sent", "{apart}");
    let mut moved = [
        apart["[REDACTED] (2)"].clone(),
        apart["[REDACTED] (3)"].clone(),
    ];
    moved.sort_by_key(|v| v.to_string());
    assert_eq!(moved, [json!("first"), json!("second")], "{apart}");
    assert_eq!(apart["wdn_live_region"], "eu", "{apart}");
    assert_eq!(apart["wdn_live_zone"], "a", "{apart}");
    assert_eq!(
        search(&api, json!({"query": "wdn_live_region:eu"}))["total"],
        1
    );
    let audit = api.get("/api/v1/audit?kind=decision&action=http.get");
    let record = &audit.body["data"][0];
    assert_eq!(record["arguments"]["auth"], "[REDACTED]", "{record}");
    let audit = api.get("/api/v1/audit?kind=decision&action=mod.x");
    let record = &audit.body["data"][0];
    assert_eq!(
        record["detail"]["modified_arguments"]["q"], "[REDACTED]",
        "{record}"
    );
    // Nor does the agent's drift profile learn one as an argument's name
    // (it is shown to `agents.read` and saved).
    for _ in 0..2 {
        let r = api.post(
            "/api/v1/enforce",
            &json!({"agent_id": "leaky-bot", "tool_name": "http.get",
                    "tool_args": {key.clone(): 1, format!("x{token}"): 2}}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let drift = api.get("/api/v1/agents/leaky-bot/drift");
    assert_eq!(drift.status, 200, "{}", drift.text);
    assert!(drift.text.contains("[REDACTED]"), "{}", drift.text);
    for secret in [&key[9..], &token[token.len() - 20..]] {
        assert!(!drift.text.contains(secret), "{}", drift.text);
    }
    assert!(w.terminate().success());
    let stored = backend.raw_contents();
    for secret in [&key, &token, &t.live_key] {
        // Each key's secret, without its prefix: two written together
        // are both taken out.
        assert!(
            !stored.contains(&secret[9..]),
            "a credential reached the store"
        );
    }
    assert!(
        !stored.contains(&token[token.len() - 20..]),
        "a token reached the store"
    );
    // Text that only looks like the start of one is kept.
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    ingest(
        &api,
        json!([{"message": "wdn_ and eyJ alone stay", "tags": ["kept"]}]),
    );
    wait_total(&api, "tags:kept", 1);
    let kept = search(&api, json!({"query": "tags:kept"}))["events"][0].clone();
    assert_eq!(kept["message"], "wdn_ and eyJ alone stay", "{kept}");
}

/// A drift profile's snapshot edited in the database (here to hold keys
/// as names, as a release that learned them saved it) no longer carries
/// its seal: it is not believed, and the profile is rebuilt from the
/// audit log's sealed records and saved over it, never showing the keys.
#[test]
fn a_saved_profile_that_learned_a_key_is_scrubbed_as_it_loads() {
    let backend = Backend::sqlite();
    let t = backend.init();
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    for _ in 0..2 {
        let r = api.post(
            "/api/v1/enforce",
            &json!({"agent_id": "drifty", "tool_name": "fs.read",
                    "tool_args": {"learned_name": 1}}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert!(w.terminate().success());
    let fake = format!("wdn_live_{}", "Q".repeat(43));
    let fake_tool = format!("wdn_test_{}", "R".repeat(43));
    backend.sql(&format!(
        "UPDATE drift_profiles SET profile = \
         replace(replace(profile, 'learned_name', '{fake}'), 'fs.read', '{fake_tool}'), \
         sequence = 999999999"
    ));
    assert!(backend.raw_contents().contains(&fake));
    assert!(backend.raw_contents().contains(&fake_tool));
    let w = Warden::start(&backend, &[]);
    let drift = w.api(&t.live_key).get("/api/v1/agents/drifty/drift");
    assert_eq!(drift.status, 200, "{}", drift.text);
    for secret in [&fake, &fake_tool] {
        assert!(!drift.text.contains(secret.as_str()), "{}", drift.text);
    }
    // What the log holds, as it holds it.
    assert!(drift.text.contains("fs.read"), "{}", drift.text);
    assert!(drift.text.contains("learned_name"), "{}", drift.text);
    // And saved so, over the snapshot that held them, although it
    // claimed to have learned past every record.
    assert!(w.terminate().success());
    let kept = backend.sql(&format!(
        "SELECT count(*) FROM drift_profiles \
         WHERE profile LIKE '%{fake}%' OR profile LIKE '%{fake_tool}%'"
    ));
    assert_eq!(kept.trim(), "0");
}

/// Every keyword Warden keeps can be asked for whole (up to its 512
/// characters, and a field's value up to the 1,024 it is indexed by), and
/// an empty keyword is no value rather than one no query could name.
#[test]
fn long_keywords_are_searchable_and_empty_ones_are_none() {
    let backend = Backend::sqlite();
    let t = backend.init();
    let w = Warden::start(&backend, &[]);
    let api = w.api(&t.live_key);
    let program = "p".repeat(300);
    let tag = "t".repeat(512);
    let value = "v".repeat(1_000);
    ingest(
        &api,
        json!([
            {"message": "longkw", "program": program, "tags": [tag], "f": value},
            {"message": "emptykw", "host": "", "program": "", "session_id": "", "tags": ["", "kept"]},
        ]),
    );
    wait_total(&api, "longkw OR emptykw", 2);
    for query in [
        format!("program:{program}"),
        format!("tags:\"{tag}\""),
        format!("f:{value}"),
        format!("program:{}*", &program[..280]),
    ] {
        assert_eq!(total(&api, &query), 1, "{}", &query[..40]);
    }
    let empty = search(&api, json!({"query": "emptykw"}))["events"][0].clone();
    assert!(empty["host"].is_null(), "{empty}");
    assert!(empty["program"].is_null(), "{empty}");
    assert!(empty["session_id"].is_null(), "{empty}");
    assert_eq!(empty["tags"], json!(["kept"]), "{empty}");
    assert_eq!(total(&api, "emptykw AND _exists_:host"), 0);
}
