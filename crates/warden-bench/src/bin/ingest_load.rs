//! `ingest-load`: how fast `warden serve` takes events, and how soon after
//! the last acknowledgement they can all be found.
//!
//! Posts pre-generated batches (`events-gen --format batch`, one JSON array
//! per line) to `POST /api/v1/events/batch` from `--connections` threads,
//! each with its own keep-alive connection, so the file is read while the
//! run goes and no time goes to making events. A `202` means every event of
//! the batch is committed, so the rate is the durable rate: events
//! acknowledged over the time from the first request to the last `202`.
//! Indexing runs behind the commit, so the run then polls
//! `POST /api/v1/siem/search` (empty query, `limit` 0, every 20 ms) until
//! the exact total over the window counts every event sent plus
//! `--already`: the time from the last `202` to that answer is the
//! searchable lag. While the batches go, a probe posts one marked event
//! at a time on its own connection and searches for it until found: the
//! time from its `202` to that answer is the lag under sustained ingest.
//! With `--searchers`, threads search the window with costly queries the
//! whole time, so the lag is measured while analysts compete with the
//! index for the CPU. Prints one JSON object.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "ingest-load",
    about = "Posts event batches to Warden and measures the rate and the searchable lag"
)]
struct Args {
    /// A file of batches, one JSON array per line.
    file: String,
    #[arg(long, default_value = "http://127.0.0.1:18085")]
    url: String,
    /// A key with events.write and events.read.
    #[arg(long)]
    key: String,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Lines of the file to pass over first.
    #[arg(long, default_value_t = 0)]
    skip_lines: u64,
    /// Lines to send at most (after --skip-lines).
    #[arg(long)]
    max_lines: Option<u64>,
    /// The window the events fall in (RFC 3339), searched for the total.
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    /// Events of the window already in Warden before this run.
    #[arg(long, default_value_t = 0)]
    already: u64,
    /// Time between the end of one probe and the next, in milliseconds.
    #[arg(long, default_value_t = 100)]
    probe_every_ms: u64,
    /// Threads searching the window the whole run, one costly query after
    /// another (leading wildcards, phrases, NOT, each with its histogram),
    /// as analysts at work would: they compete with the index for the CPU.
    #[arg(long, default_value_t = 0)]
    searchers: usize,
    /// Give up waiting for the events to be searchable after this many seconds.
    #[arg(long, default_value_t = 600)]
    searchable_timeout: u64,
}

/// The lines still to send, shared by the workers.
struct Source {
    reader: BufReader<File>,
    left: u64,
}

impl Source {
    fn next_line(&mut self) -> Option<Vec<u8>> {
        if self.left == 0 {
            return None;
        }
        let mut line = Vec::with_capacity(400 * 1024);
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                self.left -= 1;
                while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    line.pop();
                }
                Some(line)
            }
            Err(err) => panic!("reading the batches: {err}"),
        }
    }
}

#[derive(Default)]
struct WorkerResult {
    latencies_us: Vec<u64>,
    accepted: u64,
    requests: u64,
    failures: u64,
    first_error: Option<String>,
    first_start: Option<Instant>,
    last_202: Option<Instant>,
}

fn worker(args: &Args, source: &Mutex<Source>) -> WorkerResult {
    let client = client(300);
    let url = format!("{}/api/v1/events/batch", args.url.trim_end_matches('/'));
    let auth = format!("Bearer {}", args.key);
    let mut out = WorkerResult::default();
    loop {
        let Some(body) = source.lock().expect("the source").next_line() else {
            break;
        };
        if body.is_empty() {
            continue;
        }
        let started = Instant::now();
        out.first_start.get_or_insert(started);
        let response = client
            .post(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(body)
            .send();
        out.requests += 1;
        let (status, text) = match response {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().unwrap_or_default())
            }
            Err(err) => (0, err.to_string()),
        };
        let done = Instant::now();
        out.latencies_us
            .push(done.duration_since(started).as_micros() as u64);
        if status == 202 {
            out.last_202 = Some(done);
            let accepted = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["data"]["accepted"].as_u64())
                .unwrap_or(0);
            out.accepted += accepted;
        } else {
            out.failures += 1;
            if out.first_error.is_none() {
                let cut: String = text.chars().take(2000).collect();
                out.first_error = Some(format!("status {status}: {cut}"));
            }
        }
    }
    out
}

/// A client keeping one connection alive, giving up on a request after
/// `timeout_s` seconds.
fn client(timeout_s: u64) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(timeout_s))
        .pool_max_idle_per_host(1)
        .build()
        .expect("an HTTP client")
}

/// The exact total a search answers, if it answers.
fn search_total(
    client: &reqwest::blocking::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> Option<u64> {
    client
        .post(url)
        .bearer_auth(key)
        .json(body)
        .send()
        .and_then(|r| r.json::<Value>())
        .ok()
        .and_then(|v| v["data"]["total"].as_u64())
}

/// What the probe saw: each marked event's lag from its `202` to a search
/// that finds it, in microseconds.
#[derive(Default)]
struct ProbeResult {
    lags_us: Vec<u64>,
    accepted: u64,
    lost: u64,
}

/// Posts one marked event (timed at the window's start, so the total
/// counts it) and searches for it every 5 ms, until `done` is set.
fn probe(args: &Args, done: &std::sync::atomic::AtomicBool) -> ProbeResult {
    let client = client(60);
    let base = args.url.trim_end_matches('/');
    let (batch_url, search_url) = (
        format!("{base}/api/v1/events/batch"),
        format!("{base}/api/v1/siem/search"),
    );
    let mut out = ProbeResult::default();
    let run = std::process::id();
    let mut n = 0u64;
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let marker = format!("probe{run}x{n}");
        let event = json!([{"timestamp": args.from, "message": marker, "program": "ingest-probe"}]);
        let acked = client
            .post(&batch_url)
            .bearer_auth(&args.key)
            .json(&event)
            .send()
            .is_ok_and(|r| r.status().as_u16() == 202);
        if !acked {
            std::thread::sleep(Duration::from_millis(args.probe_every_ms));
            continue;
        }
        let at = Instant::now();
        out.accepted += 1;
        let query =
            json!({"query": marker, "from_time": args.from, "to_time": args.to, "limit": 0});
        let found = loop {
            if search_total(&client, &search_url, &args.key, &query) == Some(1) {
                break true;
            }
            if at.elapsed() > Duration::from_secs(30) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if found {
            out.lags_us.push(at.elapsed().as_micros() as u64);
        } else {
            out.lost += 1;
        }
        std::thread::sleep(Duration::from_millis(args.probe_every_ms));
    }
    out
}

/// What analysts search for while events come in: each over the whole
/// window, with its histogram.
const COSTLY_QUERIES: &[&str] = &[
    "*admin*",
    "message:*fail* AND NOT severity:info",
    "\"accepted password\" OR \"invalid user\"",
    "program:sshd AND -user:root",
    "*timeout* OR *denied*",
];

/// Searches one costly query after another until `done` is set; the
/// time each took, in microseconds.
fn searcher(args: &Args, first: usize, done: &std::sync::atomic::AtomicBool) -> Vec<u64> {
    let client = client(60);
    let url = format!("{}/api/v1/siem/search", args.url.trim_end_matches('/'));
    let mut took = Vec::new();
    for query in COSTLY_QUERIES.iter().cycle().skip(first) {
        if done.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let body =
            json!({"query": query, "from_time": args.from, "to_time": args.to, "limit": 100});
        let began = Instant::now();
        if search_total(&client, &url, &args.key, &body).is_some() {
            took.push(began.elapsed().as_micros() as u64);
        }
    }
    took
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let args = Args::parse();
    let file = File::open(&args.file).unwrap_or_else(|e| {
        eprintln!("ingest-load: {}: {e}", args.file);
        std::process::exit(2)
    });
    let mut reader = BufReader::with_capacity(4 << 20, file);
    let mut skip = Vec::new();
    for _ in 0..args.skip_lines {
        skip.clear();
        if reader.read_until(b'\n', &mut skip).unwrap_or(0) == 0 {
            break;
        }
    }
    let source = Arc::new(Mutex::new(Source {
        reader,
        left: args.max_lines.unwrap_or(u64::MAX),
    }));
    let args = Arc::new(args);
    let probing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (args, probing) = (args.clone(), probing.clone());
        std::thread::spawn(move || probe(&args, &probing))
    };
    let searchers: Vec<_> = (0..args.searchers)
        .map(|n| {
            let (args, probing) = (args.clone(), probing.clone());
            std::thread::spawn(move || searcher(&args, n, &probing))
        })
        .collect();
    let handles: Vec<_> = (0..args.connections.max(1))
        .map(|_| {
            let (args, source) = (args.clone(), source.clone());
            std::thread::spawn(move || worker(&args, &source))
        })
        .collect();
    let results: Vec<WorkerResult> = handles
        .into_iter()
        .map(|h| h.join().expect("a worker"))
        .collect();
    probing.store(true, std::sync::atomic::Ordering::Relaxed);
    let probed = prober.join().expect("the probe");
    let mut searches: Vec<u64> = searchers
        .into_iter()
        .flat_map(|h| h.join().expect("a searcher"))
        .collect();
    searches.sort_unstable();
    let mut probe_lags = probed.lags_us.clone();
    probe_lags.sort_unstable();

    let mut latencies: Vec<u64> = results
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let accepted: u64 = results.iter().map(|r| r.accepted).sum();
    let requests: u64 = results.iter().map(|r| r.requests).sum();
    let failures: u64 = results.iter().map(|r| r.failures).sum();
    let first_error = results.iter().find_map(|r| r.first_error.clone());
    let first_start = results.iter().filter_map(|r| r.first_start).min();
    let last_202 = results.iter().filter_map(|r| r.last_202).max();
    let elapsed = match (first_start, last_202) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    if let Some(err) = &first_error {
        eprintln!("ingest-load: first error: {err}");
    }

    // Searchable: poll the exact total until it counts every event.
    let target = accepted + probed.accepted + args.already;
    let client = client(120);
    let url = format!("{}/api/v1/siem/search", args.url.trim_end_matches('/'));
    let body = json!({"query": "", "from_time": args.from, "to_time": args.to, "limit": 0});
    let deadline = Instant::now() + Duration::from_secs(args.searchable_timeout);
    let mut polls = 0u64;
    let mut last_total = 0u64;
    let mut last_poll_ms = 0.0;
    let mut searchable_ms: Option<f64> = None;
    while let Some(last) = last_202.filter(|_| Instant::now() < deadline) {
        let sent = Instant::now();
        let total = search_total(&client, &url, &args.key, &body);
        polls += 1;
        last_poll_ms = sent.elapsed().as_secs_f64() * 1000.0;
        if let Some(total) = total {
            last_total = total;
            if total >= target {
                let at = Instant::now();
                searchable_ms = Some(at.duration_since(last).as_secs_f64() * 1000.0);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if searchable_ms.is_none() {
        eprintln!(
            "ingest-load: the search total reached {last_total} of {target} before the timeout"
        );
    }

    let ms = |us: u64| us as f64 / 1000.0;
    let report = json!({
        "connections": args.connections,
        "requests": requests,
        "events_accepted": accepted,
        "failures": failures,
        "first_error": first_error,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "events_per_s": if elapsed > 0.0 { (accepted as f64 / elapsed).round() } else { 0.0 },
        "request_p50_ms": ms(percentile(&latencies, 50.0)),
        "request_p99_ms": ms(percentile(&latencies, 99.0)),
        "request_max_ms": ms(latencies.last().copied().unwrap_or(0)),
        "search_total_expected": target,
        "search_total_seen": last_total,
        "searchable_lag_ms": searchable_ms.map(|m| (m * 10.0).round() / 10.0),
        "searchable_polls": polls,
        "probes_accepted": probed.accepted,
        "probes": probe_lags.len(),
        "probes_not_found": probed.lost,
        "probe_lag_p50_ms": ms(percentile(&probe_lags, 50.0)),
        "probe_lag_p99_ms": ms(percentile(&probe_lags, 99.0)),
        "probe_lag_max_ms": ms(probe_lags.last().copied().unwrap_or(0)),
        "last_poll_ms": (last_poll_ms * 10.0_f64).round() / 10.0,
        "searchers": args.searchers,
        "searches": searches.len(),
        "search_p50_ms": ms(percentile(&searches, 50.0)),
        "search_p99_ms": ms(percentile(&searches, 99.0)),
    });
    println!("{report}");
    if failures > 0 || searchable_ms.is_none() || probed.lost > 0 {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
