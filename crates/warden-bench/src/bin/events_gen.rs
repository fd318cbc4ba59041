//! `events-gen`: the events of the telemetry benchmark (`bench/telemetry.sh`),
//! written once to files so that Warden and PostgreSQL load exactly the same
//! events and generating them never limits either.
//!
//! A fixed-seed mix of what a security team sends: sshd, sudo and cron
//! lines from syslog, nginx access logs, and AI agents' tool calls, with
//! severities skewed the way real logs are (mostly `info`). Timestamps run
//! through a window of `--hours` ending at `--end`, in order with a little
//! jitter, as logs arrive. The same seed, count, window and batch size give
//! the same bytes.
//!
//! Formats: `batch` (one JSON array of `--batch-size` events per line, the
//! body of `POST /api/v1/events/batch`), `ndjson` (one event per line) and
//! `pg-copy` (rows for PostgreSQL's `COPY ... FROM STDIN` in text format:
//! `ts, host, program, severity, message, fields`; `source`, `agent_id` and
//! `session_id`, which that table has no column for, go into `fields`).

use chrono::{DateTime, Datelike, Timelike, Utc};
use std::io::{self, BufWriter, Write};

use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Format {
    Batch,
    Ndjson,
    PgCopy,
}

#[derive(Parser)]
#[command(
    name = "events-gen",
    about = "Writes realistic security events to stdout"
)]
struct Args {
    /// Events to write.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Length of the time window, in hours.
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    /// End of the window (exclusive): RFC 3339 or milliseconds since 1970; default now.
    #[arg(long)]
    end: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Batch)]
    format: Format,
    /// Events per line in the batch format.
    #[arg(long, default_value_t = 1000)]
    batch_size: u64,
    /// Bytes of text added to each event's message, as a stack trace or
    /// a tool's output would (words of a Java trace, with an object id in
    /// every line): for large events, 0 for none.
    #[arg(long, default_value_t = 0)]
    pad_bytes: usize,
}

/// A field value: the generator's events hold only these.
enum Val {
    Str(String),
    Int(i64),
    /// Thousandths, written with three decimals.
    Milli(i64),
    Obj(Vec<(&'static str, Val)>),
}

struct Event {
    ts: i64,
    source: &'static str,
    host: String,
    program: &'static str,
    severity: &'static str,
    message: String,
    agent_id: Option<String>,
    session_id: Option<String>,
    fields: Vec<(&'static str, Val)>,
}

/// What a stack trace is made of.
const TRACE_WORDS: &[&str] = &[
    "at",
    "java.lang.Thread.run",
    "org.apache.catalina.core.StandardWrapperValve.invoke",
    "com.example.payments.LedgerService.post",
    "sun.reflect.NativeMethodAccessorImpl",
    "Caused",
    "by:",
    "java.sql.SQLTransientConnectionException:",
    "timeout",
    "after",
    "30000ms",
    "connection",
    "pool",
    "HikariPool-1",
    "is",
    "not",
    "available",
    "io.netty.channel.AbstractChannelHandlerContext.invokeChannelRead",
    "...",
    "more",
    "java.util.concurrent.ThreadPoolExecutor$Worker.run",
    "(Native",
    "Method)",
];

/// Lengthens `message` by about `bytes`, a line of trace words at a time,
/// each line ending in an object id of its own (a new term for the index).
fn pad(rng: &mut StdRng, message: &mut String, bytes: usize) {
    let target = message.len() + bytes;
    while message.len() < target {
        message.push_str("\n\t");
        for _ in 0..6 {
            let word: &&str = pick(rng, TRACE_WORDS);
            message.push_str(word);
            message.push(' ');
        }
        message.push_str(&format!("@{:08x}", rng.gen::<u32>()));
    }
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// One of `items` by weight.
fn weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen_range(0..total);
    for (item, w) in items {
        if x < *w {
            return *item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

const USERS: &[(&str, u32)] = &[
    ("root", 30),
    ("admin", 8),
    ("alice", 10),
    ("bob", 8),
    ("carol", 6),
    ("deploy", 8),
    ("ubuntu", 6),
    ("oracle", 3),
    ("postgres", 4),
    ("test", 4),
    ("git", 4),
    ("sysadmin", 3),
    ("jenkins", 4),
    ("webmin", 2),
];
const STAFF: &[&str] = &["alice", "bob", "carol", "deploy", "jenkins"];
const ATTACKER_NETS: &[u8] = &[45, 61, 91, 103, 116, 185, 193, 218, 222];

fn internal_ip(rng: &mut StdRng) -> String {
    format!(
        "10.{}.{}.{}",
        rng.gen_range(0..4),
        rng.gen_range(0..=255),
        rng.gen_range(1..=254)
    )
}

fn external_ip(rng: &mut StdRng) -> String {
    format!(
        "{}.{}.{}.{}",
        pick(rng, ATTACKER_NETS),
        rng.gen_range(0..=255),
        rng.gen_range(0..=255),
        rng.gen_range(1..=254)
    )
}

fn uid(user: &str) -> i64 {
    match user {
        "root" => 0,
        "postgres" => 114,
        _ => 1000 + user.len() as i64 * 7,
    }
}

fn syslog(rng: &mut StdRng, ts: i64) -> Event {
    let host = if rng.gen_bool(0.6) {
        format!("web-{:02}", rng.gen_range(1..=24))
    } else {
        format!("db-{:02}", rng.gen_range(1..=8))
    };
    let pid = Val::Int(rng.gen_range(300..65_000));
    let program = weighted(rng, &[("sshd", 70), ("sudo", 15), ("CRON", 15)]);
    let mut severity = "info";
    let mut fields = Vec::with_capacity(5);
    let message = match program {
        "sshd" => {
            let port = rng.gen_range(32_768..61_000);
            let kind = weighted(
                rng,
                &[
                    ("failed", 35),
                    ("invalid", 15),
                    ("accepted", 20),
                    ("session", 20),
                    ("disconnected", 10),
                ],
            );
            let (user, ip) = match kind {
                "accepted" | "session" => (*pick(rng, STAFF), internal_ip(rng)),
                _ => (weighted(rng, USERS), external_ip(rng)),
            };
            let message = match kind {
                "failed" => {
                    severity = weighted(
                        rng,
                        &[("low", 50), ("medium", 40), ("high", 9), ("critical", 1)],
                    );
                    let invalid = if STAFF.contains(&user) || user == "root" {
                        ""
                    } else {
                        "invalid user "
                    };
                    format!("Failed password for {invalid}{user} from {ip} port {port} ssh2")
                }
                "invalid" => {
                    severity = "low";
                    format!("Invalid user {user} from {ip} port {port}")
                }
                "accepted" => {
                    let key: String = (0..12)
                        .map(|_| {
                            *pick(
                                rng,
                                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                            ) as char
                        })
                        .collect();
                    let how = weighted(rng, &[("publickey", 8), ("password", 2)]);
                    format!("Accepted {how} for {user} from {ip} port {port} ssh2: ED25519 SHA256:{key}")
                }
                "session" => {
                    let what = if rng.gen_bool(0.5) {
                        "opened"
                    } else {
                        "closed"
                    };
                    format!(
                        "pam_unix(sshd:session): session {what} for user {user}(uid={}) by (uid=0)",
                        uid(user)
                    )
                }
                _ => format!(
                    "Disconnected from authenticating user {user} {ip} port {port} [preauth]"
                ),
            };
            fields.push(("user", Val::Str(user.into())));
            fields.push(("src_ip", Val::Str(ip)));
            fields.push(("port", Val::Int(port)));
            fields.push(("facility", Val::Str("auth".into())));
            message
        }
        "sudo" => {
            let user = *pick(rng, STAFF);
            let tty = rng.gen_range(0..6);
            let kind = weighted(rng, &[("ok", 80), ("authfail", 15), ("attempts", 5)]);
            fields.push(("user", Val::Str(user.into())));
            fields.push(("facility", Val::Str("authpriv".into())));
            match kind {
                "ok" => {
                    let command = pick(
                        rng,
                        &[
                            "/usr/bin/systemctl restart nginx",
                            "/usr/bin/apt-get upgrade -y",
                            "/usr/bin/journalctl -u sshd",
                            "/bin/cat /var/log/auth.log",
                        ],
                    );
                    format!(
                        "{user} : TTY=pts/{tty} ; PWD=/home/{user} ; USER=root ; COMMAND={command}"
                    )
                }
                "authfail" => {
                    severity = "medium";
                    format!(
                        "pam_unix(sudo:auth): authentication failure; logname={user} uid={} euid=0 tty=/dev/pts/{tty} ruser={user} rhost=  user={user}",
                        uid(user)
                    )
                }
                _ => {
                    severity = "high";
                    format!("{user} : 3 incorrect password attempts ; TTY=pts/{tty} ; PWD=/home/{user} ; USER=root ; COMMAND=/bin/bash")
                }
            }
        }
        _ => {
            let user = *pick(rng, &["root", "root", "www-data", "postgres"]);
            fields.push(("user", Val::Str(user.into())));
            fields.push(("facility", Val::Str("cron".into())));
            if rng.gen_bool(0.5) {
                format!(
                    "pam_unix(cron:session): session opened for user {user}(uid={}) by (uid=0)",
                    uid(user)
                )
            } else {
                let job = pick(
                    rng,
                    &[
                        "/usr/local/bin/backup.sh --incremental",
                        "test -x /usr/sbin/anacron || run-parts /etc/cron.daily",
                        "/usr/lib/php/sessionclean",
                    ],
                );
                format!("({user}) CMD ({job})")
            }
        }
    };
    fields.push(("pid", pid));
    Event {
        ts,
        source: "syslog",
        host,
        program,
        severity,
        message,
        agent_id: None,
        session_id: None,
        fields,
    }
}

const UAS: &[(&str, u32)] = &[
    ("Mozilla/5.0 Firefox/132.0", 40),
    ("Mozilla/5.0 Safari/605.1", 20),
    ("curl/8.5.0", 10),
    ("python-requests/2.32.3", 10),
    ("kube-probe/1.31", 10),
    ("Go-http-client/1.1", 5),
    ("sqlmap/1.8", 5),
];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn access_log(rng: &mut StdRng, ts: i64) -> Event {
    let host = format!("web-{:02}", rng.gen_range(1..=24));
    let scanner = rng.gen_bool(0.04);
    let (ip, method, path, status) = if scanner {
        let path = pick(
            rng,
            &[
                "/wp-admin/setup.php",
                "/.env",
                "/phpmyadmin/index.php",
                "/admin/login",
                "/cgi-bin/luci",
            ],
        );
        let status = weighted(rng, &[(404, 80), (403, 15), (500, 5)]);
        (external_ip(rng), "GET", (*path).to_string(), status)
    } else {
        let method = weighted(rng, &[("GET", 80), ("POST", 15), ("PUT", 3), ("DELETE", 2)]);
        let path = match rng.gen_range(0..10) {
            0..=3 => format!("/api/v1/orders/{}", rng.gen_range(1_000..99_999)),
            4 => format!("/static/app.{:08x}.js", rng.gen::<u32>()),
            5 => "/login".to_string(),
            6 => "/healthz".to_string(),
            7 => format!("/api/v1/users/{}/cart", rng.gen_range(1..50_000)),
            _ => format!("/search?q=item{}", rng.gen_range(1..500)),
        };
        let status = weighted(
            rng,
            &[
                (200, 800),
                (304, 70),
                (301, 20),
                (302, 10),
                (400, 10),
                (401, 20),
                (404, 30),
                (499, 10),
                (500, 15),
                (502, 10),
                (503, 5),
            ],
        );
        (internal_ip(rng), method, path, status)
    };
    let severity = match status {
        500.. => weighted(rng, &[("medium", 70), ("high", 25), ("critical", 5)]),
        400.. => "low",
        _ => "info",
    };
    let bytes: i64 = if status == 304 {
        0
    } else {
        rng.gen_range(0..60_000)
    };
    let ua = weighted(rng, UAS);
    let duration_micros: i64 = if status >= 500 {
        rng.gen_range(50_000..5_000_000)
    } else {
        rng.gen_range(200..200_000)
    };
    let (y, mo, d, h, mi, s, _) = civil(ts);
    let message = format!(
        "{ip} - - [{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000] \"{method} {path} HTTP/1.1\" {status} {bytes} \"-\" \"{ua}\"",
        MONTHS[(mo - 1) as usize]
    );
    Event {
        ts,
        source: "json",
        host,
        program: "nginx",
        severity,
        message,
        agent_id: None,
        session_id: None,
        fields: vec![
            ("method", Val::Str(method.into())),
            ("path", Val::Str(path)),
            ("status", Val::Int(status)),
            ("bytes", Val::Int(bytes)),
            ("src_ip", Val::Str(ip)),
            ("user_agent", Val::Str(ua.into())),
            ("duration_ms", Val::Milli(duration_micros)),
        ],
    }
}

const AGENTS: &[&str] = &[
    "support-bot",
    "billing-agent",
    "code-review",
    "data-analyst",
    "ops-runner",
    "sales-assist",
];

fn tool_call(rng: &mut StdRng, ts: i64) -> Event {
    let name = *pick(rng, AGENTS);
    let n = rng.gen_range(1..=4);
    let agent_id = format!("agt_{name}-{n:02}");
    let session_id = format!("ses_{:012x}", rng.gen::<u64>() & 0xffff_ffff_ffff);
    let (tool, key, arg) = match rng.gen_range(0..6) {
        0 => (
            "fs.read_file",
            "path",
            format!(
                "/srv/reports/q{}-{}.csv",
                rng.gen_range(1..=4),
                rng.gen_range(1..300)
            ),
        ),
        1 => (
            "fs.write_file",
            "path",
            format!("/srv/out/result-{}.json", rng.gen_range(1..10_000)),
        ),
        2 => (
            "http.get",
            "url",
            format!(
                "https://api.example.com/items/{}",
                rng.gen_range(1..100_000)
            ),
        ),
        3 => (
            "db.query",
            "query",
            format!(
                "SELECT * FROM orders WHERE id = {}",
                rng.gen_range(1..50_000)
            ),
        ),
        4 => (
            "shell.exec",
            "command",
            (*pick(
                rng,
                &["ls -la /tmp", "cat /etc/passwd", "df -h", "git status"],
            ))
            .to_string(),
        ),
        _ => (
            "email.send",
            "to",
            format!("customer{}@example.com", rng.gen_range(1..50_000)),
        ),
    };
    let decision = weighted(
        rng,
        &[("allow", 85), ("deny", 7), ("step_up", 5), ("modify", 3)],
    );
    let drift_milli: i64 = if rng.gen_bool(0.03) {
        rng.gen_range(800..1000)
    } else {
        rng.gen_range(0..400)
    };
    let severity = match decision {
        _ if drift_milli >= 800 => "high",
        "deny" => "medium",
        "step_up" | "modify" => "low",
        _ => "info",
    };
    let message = format!("agent {name}-{n:02} called {tool}: {decision}");
    Event {
        ts,
        source: "agent",
        host: format!("agent-runner-{:02}", rng.gen_range(1..=6)),
        program: "agent-gateway",
        severity,
        message,
        agent_id: Some(agent_id),
        session_id: Some(session_id),
        fields: vec![
            ("tool", Val::Str(tool.into())),
            ("decision", Val::Str(decision.into())),
            ("args", Val::Obj(vec![(key, Val::Str(arg))])),
            ("user_id", Val::Str(format!("u{}", rng.gen_range(1..5_000)))),
            ("drift_score", Val::Milli(drift_milli)),
        ],
    }
}

/// Year, month, day, hour, minute, second, millisecond of `ms` (UTC).
fn civil(ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).expect("a time within chrono's range");
    (
        i64::from(t.year()),
        i64::from(t.month()),
        i64::from(t.day()),
        i64::from(t.hour()),
        i64::from(t.minute()),
        i64::from(t.second()),
        ms.rem_euclid(1000),
    )
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping, written straight into the line.
    serde_json::to_writer(&mut *out, s).expect("a string serializes");
}

fn json_val(out: &mut Vec<u8>, v: &Val) {
    match v {
        Val::Str(s) => json_str(out, s),
        Val::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Val::Milli(n) => {
            let _ = write!(out, "{}.{:03}", n / 1000, n % 1000);
        }
        Val::Obj(items) => json_obj(out, items, &[]),
    }
}

fn json_obj(out: &mut Vec<u8>, items: &[(&'static str, Val)], extra: &[(&str, &str)]) {
    out.push(b'{');
    let mut first = true;
    for (k, v) in extra {
        if !first {
            out.push(b',');
        }
        first = false;
        json_str(out, k);
        out.push(b':');
        json_str(out, v);
    }
    for (k, v) in items {
        if !first {
            out.push(b',');
        }
        first = false;
        json_str(out, k);
        out.push(b':');
        json_val(out, v);
    }
    out.push(b'}');
}

/// The event as `POST /api/v1/events/batch` takes it.
fn write_json(out: &mut Vec<u8>, e: &Event) {
    let (y, mo, d, h, mi, s, ms) = civil(e.ts);
    let _ = write!(
        out,
        "{{\"timestamp\":\"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z\",\"source\":\"{}\",\"host\":",
        e.source
    );
    json_str(out, &e.host);
    out.extend_from_slice(b",\"program\":");
    json_str(out, e.program);
    let _ = write!(out, ",\"severity\":\"{}\",\"message\":", e.severity);
    json_str(out, &e.message);
    if let Some(a) = &e.agent_id {
        out.extend_from_slice(b",\"agent_id\":");
        json_str(out, a);
    }
    if let Some(s) = &e.session_id {
        out.extend_from_slice(b",\"session_id\":");
        json_str(out, s);
    }
    out.extend_from_slice(b",\"fields\":");
    json_obj(out, &e.fields, &[]);
    out.push(b'}');
}

/// Text for COPY's text format: backslash, tab, newline and carriage
/// return escaped.
fn copy_text(out: &mut Vec<u8>, s: &[u8]) {
    // Bytes: these ASCII bytes never occur inside a UTF-8 sequence.
    for &b in s {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b => out.push(b),
        }
    }
}

fn write_copy(out: &mut Vec<u8>, e: &Event, scratch: &mut Vec<u8>) {
    let (y, mo, d, h, mi, s, ms) = civil(e.ts);
    let _ = write!(
        out,
        "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03}+00\t"
    );
    copy_text(out, e.host.as_bytes());
    out.push(b'\t');
    copy_text(out, e.program.as_bytes());
    out.push(b'\t');
    out.extend_from_slice(e.severity.as_bytes());
    out.push(b'\t');
    copy_text(out, e.message.as_bytes());
    out.push(b'\t');
    scratch.clear();
    let mut extra = vec![("source", e.source)];
    if let Some(a) = &e.agent_id {
        extra.push(("agent_id", a));
    }
    if let Some(s) = &e.session_id {
        extra.push(("session_id", s));
    }
    json_obj(scratch, &e.fields, &extra);
    copy_text(out, scratch);
    out.push(b'\n');
}

fn parse_end(text: Option<&str>) -> Result<i64, String> {
    match text {
        None => Ok(warden_core::time::now_ms()),
        Some(t) => t
            .parse::<i64>()
            .ok()
            .or_else(|| warden_core::time::parse_rfc3339(t))
            .ok_or_else(|| format!("--end {t:?} is not RFC 3339 or milliseconds")),
    }
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let end = match parse_end(args.end.as_deref()) {
        Ok(end) => end,
        Err(message) => {
            eprintln!("events-gen: {message}");
            std::process::exit(2);
        }
    };
    let window = (args.hours * 3_600_000.0) as i64;
    if window <= 0 || args.batch_size == 0 {
        eprintln!("events-gen: --hours and --batch-size must be positive");
        std::process::exit(2);
    }
    let start = end - window;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let stdout = io::stdout();
    let mut writer = BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut line = Vec::with_capacity(1 << 20);
    let mut scratch = Vec::with_capacity(512);
    for i in 0..args.count {
        // In order through the window, up to a second early or late.
        let base = start + (i as i128 * window as i128 / args.count as i128) as i64;
        let ts = (base + rng.gen_range(-1000..=1000)).clamp(start, end - 1);
        let mut event = match rng.gen_range(0..100) {
            0..=44 => syslog(&mut rng, ts),
            45..=84 => access_log(&mut rng, ts),
            _ => tool_call(&mut rng, ts),
        };
        pad(&mut rng, &mut event.message, args.pad_bytes);
        match args.format {
            Format::Batch => {
                let in_batch = i % args.batch_size;
                line.push(if in_batch == 0 { b'[' } else { b',' });
                write_json(&mut line, &event);
                if in_batch == args.batch_size - 1 || i == args.count - 1 {
                    line.extend_from_slice(b"]\n");
                }
            }
            Format::Ndjson => {
                write_json(&mut line, &event);
                line.push(b'\n');
            }
            Format::PgCopy => write_copy(&mut line, &event, &mut scratch),
        }
        if line.len() >= 1 << 16 {
            writer.write_all(&line)?;
            line.clear();
        }
    }
    writer.write_all(&line)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_matches_rfc3339() {
        for ms in [0, 1_764_000_000_123, 951_782_400_000, 4_102_444_799_999] {
            let (y, mo, d, h, mi, s, m) = civil(ms);
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{m:03}Z");
            assert_eq!(text, warden_core::time::to_rfc3339(ms));
        }
    }

    #[test]
    fn copy_escapes_backslashes_and_controls() {
        let mut out = Vec::new();
        copy_text(&mut out, b"a\\b\tc\nd\"");
        assert_eq!(out, b"a\\\\b\\tc\\nd\"");
    }
}
