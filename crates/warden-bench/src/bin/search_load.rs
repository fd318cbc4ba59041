//! `search-load`: what an analyst waits for, per kind of query.
//!
//! Runs each query class of the telemetry benchmark `--repeat` times, one
//! request at a time after `--warmup` runs, against
//! `POST /api/v1/siem/search` over the benchmark's window with the histogram
//! the server picks for it (30-minute buckets for a day) and a page of
//! `--limit` events: the whole answer an analyst's screen needs. Latency is
//! measured here, at the client, so it includes HTTP and JSON; the
//! server's own `query_time_ms` is reported beside it. `total` is each
//! query's exact hit count, to compare with the PostgreSQL reference.
//! Prints one JSON object.

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

/// The classes, with queries on fields `events-gen` produces.
const CLASSES: &[(&str, &str)] = &[
    ("term", "failed"),
    ("field AND field", "program:sshd AND user:root"),
    ("phrase", "\"failed password\""),
    ("leading wildcard", "user:*min"),
    ("numeric range", "status:[500 TO 599]"),
    ("NOT", "program:nginx NOT status:200"),
];

#[derive(Parser)]
#[command(
    name = "search-load",
    about = "Times each query class of the telemetry benchmark"
)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:18085")]
    url: String,
    /// A key with events.read.
    #[arg(long)]
    key: String,
    /// The window searched (RFC 3339).
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    #[arg(long, default_value_t = 50)]
    repeat: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn main() {
    let args = Args::parse();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client");
    let url = format!("{}/api/v1/siem/search", args.url.trim_end_matches('/'));
    let mut classes = Vec::new();
    let mut failed = false;
    for (name, query) in CLASSES {
        let body = json!({
            "query": query, "from_time": args.from, "to_time": args.to, "limit": args.limit,
        });
        let mut client_ms = Vec::with_capacity(args.repeat);
        let mut server_ms = Vec::with_capacity(args.repeat);
        let mut totals = Vec::new();
        let mut returned = 0;
        let mut buckets = 0;
        let mut error = None;
        for run in 0..args.warmup + args.repeat {
            let started = Instant::now();
            let answer = client
                .post(&url)
                .bearer_auth(&args.key)
                .json(&body)
                .send()
                .and_then(|r| {
                    let status = r.status();
                    r.text().map(|t| (status, t))
                });
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            let value = match answer {
                Ok((status, text)) if status.as_u16() == 200 => {
                    serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
                }
                Ok((status, text)) => {
                    error.get_or_insert(format!("status {status}: {text}"));
                    continue;
                }
                Err(err) => {
                    error.get_or_insert(err.to_string());
                    continue;
                }
            };
            let data = &value["data"];
            if run < args.warmup {
                continue;
            }
            client_ms.push(elapsed);
            server_ms.push(data["query_time_ms"].as_f64().unwrap_or(0.0));
            let total = data["total"].as_u64().unwrap_or(0);
            if !totals.contains(&total) {
                totals.push(total);
            }
            returned = data["events"].as_array().map_or(0, |e| e.len());
            buckets = data["histogram"].as_array().map_or(0, |h| h.len());
        }
        if let Some(err) = &error {
            eprintln!("search-load: {name} ({query}): {err}");
            failed = true;
        }
        client_ms.sort_by(f64::total_cmp);
        server_ms.sort_by(f64::total_cmp);
        classes.push(json!({
            "class": name,
            "query": query,
            "runs": client_ms.len(),
            "p50_ms": round3(percentile(&client_ms, 50.0)),
            "p99_ms": round3(percentile(&client_ms, 99.0)),
            "max_ms": round3(client_ms.last().copied().unwrap_or(0.0)),
            "server_p50_ms": round3(percentile(&server_ms, 50.0)),
            // One value unless events arrived during the runs.
            "total": totals.first().copied().unwrap_or(0),
            "totals_seen": totals.len(),
            "returned": returned,
            "histogram_buckets": buckets,
            "error": error,
        }));
    }
    println!(
        "{}",
        json!({"from": args.from, "to": args.to, "limit": args.limit, "classes": classes})
    );
    if failed {
        std::process::exit(1);
    }
}
