//! Test kit: runs the real `warden` binary against SQLite or a real
//! PostgreSQL database, and talks to it over HTTP like any client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_warden");
/// Shared by every process of one test so that replicas agree.
pub const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Where a test's state lives: a fresh SQLite data dir, or a fresh
/// database on the PostgreSQL server named by `WARDEN_TEST_DATABASE_URL`.
pub struct Backend {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
    admin_url: Option<String>,
    db_name: Option<String>,
}

impl Backend {
    pub fn sqlite() -> Backend {
        Backend {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url: None,
            admin_url: None,
            db_name: None,
        }
    }

    pub fn postgres() -> Backend {
        let admin = std::env::var("WARDEN_TEST_DATABASE_URL")
            .expect("WARDEN_TEST_DATABASE_URL must name a PostgreSQL server for this test");
        let name = format!("warden_test_{}", random_suffix());
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin.clone());
        Backend {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url: Some(format!("{base}/{name}")),
            admin_url: Some(admin),
            db_name: Some(name),
        }
    }

    /// The same database reached at `database_url` (a proxy in front of
    /// it), with data dirs of its own; dropping it leaves the database.
    pub fn via(&self, database_url: String) -> Backend {
        Backend {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url: Some(database_url),
            admin_url: None,
            db_name: None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.is_some()
    }

    /// A data dir for one replica (each replica has its own).
    pub fn data_dir(&self, replica: usize) -> PathBuf {
        self.dir.path().join(format!("replica{replica}"))
    }

    /// Store arguments for the CLI, for replica 0.
    pub fn store_args(&self) -> Vec<String> {
        self.store_args_for(0)
    }

    pub fn store_args_for(&self, replica: usize) -> Vec<String> {
        let mut args = vec![
            "--data-dir".to_string(),
            self.data_dir(replica).display().to_string(),
        ];
        if let Some(url) = &self.database_url {
            args.push("--database-url".into());
            args.push(url.clone());
        }
        args
    }

    /// Runs a `warden` command against this backend.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_env(args, &[])
    }

    /// The command line with its standard output sent to `stdout` (a full
    /// device, a closed pipe); standard error captured.
    #[allow(dead_code)]
    pub fn cli_to(&self, args: &[&str], stdout: std::process::Stdio) -> Output {
        self.command(args)
            .stdout(stdout)
            .output()
            .expect("run warden")
    }

    /// The command line, ended by `kill -9` if it runs longer than
    /// `longest` (a `serve` that should have been refused).
    #[allow(dead_code)]
    pub fn cli_within(&self, args: &[&str], longest: Duration) -> Output {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run warden");
        let deadline = Instant::now() + longest;
        while child.try_wait().expect("wait for warden").is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait_with_output().expect("warden's output")
    }

    /// The command line with extra environment variables.
    pub fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args)
            .envs(env.iter().copied())
            .output()
            .expect("run warden")
    }

    /// The command line without the tests' master key: as a first start
    /// runs, making its own.
    pub fn cli_without_master_key(&self, args: &[&str]) -> Output {
        self.command(args)
            .env_remove("WARDEN_MASTER_KEY")
            .output()
            .expect("run warden")
    }

    /// `warden ARGS` on this backend's store, with the tests' master key.
    fn command(&self, args: &[&str]) -> Command {
        let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        full.extend(self.store_args());
        let mut command = Command::new(BIN);
        command
            .args(&full)
            .env("WARDEN_MASTER_KEY", MASTER_KEY)
            .env_remove("RUST_LOG")
            .env_remove("WARDEN_JSON");
        command
    }

    /// `warden init --json`, parsed.
    pub fn init(&self) -> Tenant {
        let out = self.cli(&["init", "--json"]);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tenant::from_json(&out.stdout)
    }

    /// `warden org create NAME --json` with extra flags, parsed.
    /// An organization whose rate limit a load test does not reach.
    pub fn create_unthrottled_org(&self, name: &str) -> Tenant {
        self.create_org(
            name,
            &[
                "--plan",
                "custom",
                "--rate-limit-per-minute",
                "10000000",
                "--burst",
                "1000000",
            ],
        )
    }

    pub fn create_org(&self, name: &str, extra: &[&str]) -> Tenant {
        let mut args = vec!["org", "create", name, "--json"];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "org create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tenant::from_json(&out.stdout)
    }

    /// Runs SQL directly against the store's database, as an intruder
    /// with access to the database would.
    pub fn sql(&self, sql: &str) -> String {
        match &self.database_url {
            Some(url) => psql(url, sql),
            None => {
                let db = self.data_dir(0).join("warden.db");
                let script = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1],timeout=10)\nfor r in c.execute(sys.argv[2]):\n    print('|'.join(str(x) for x in r))\nc.commit()";
                let out = Command::new("python3")
                    .args(["-c", script, &db.display().to_string(), sql])
                    .output()
                    .expect("python3 runs");
                assert!(
                    out.status.success(),
                    "sqlite3: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        }
    }

    /// Every byte the store holds, as text, to look for secrets in.
    pub fn raw_contents(&self) -> String {
        match &self.database_url {
            Some(url) => psql(
                url,
                "SELECT * FROM api_keys; SELECT * FROM server_settings; SELECT * FROM agents; \
                 SELECT * FROM idempotency_keys;",
            ),
            None => {
                let mut all = Vec::new();
                for entry in std::fs::read_dir(self.data_dir(0))
                    .expect("data dir")
                    .flatten()
                {
                    if entry.file_name().to_string_lossy().starts_with("warden.db") {
                        all.extend(std::fs::read(entry.path()).unwrap_or_default());
                    }
                }
                String::from_utf8_lossy(&all).into_owned()
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let (Some(admin), Some(name)) = (&self.admin_url, &self.db_name) {
            let _ = Command::new("psql")
                .args([
                    admin.as_str(),
                    "-q",
                    "-c",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .output();
        }
    }
}

pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            url,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("psql must be installed for the PostgreSQL suite");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Unique within a run (a counter: two tests may read one clock tick) and
/// across runs (the process id and the time).
pub fn random_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}_{}_{n}", std::process::id(), nanos)
}

/// An organization and its two admin keys, as `init --json` prints them.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub org_id: String,
    pub live_key: String,
    pub test_key: String,
}

impl Tenant {
    pub fn from_json(stdout: &[u8]) -> Tenant {
        let text = String::from_utf8_lossy(stdout);
        let v: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("not one JSON object: {e}: {text}"));
        Tenant {
            org_id: v["organization_id"].as_str().unwrap().to_string(),
            live_key: v["live_key"].as_str().unwrap().to_string(),
            test_key: v["test_key"].as_str().unwrap().to_string(),
        }
    }
}

/// Where the harness keeps a replica's standard error: beside its data dir,
/// so that the server creates the data dir itself.
pub fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.with_extension("log")
}

/// A running `warden serve`.
pub struct Warden {
    child: Child,
    pub base: String,
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Warden {
    /// Starts replica 0 of `backend` with extra `serve` flags.
    pub fn start(backend: &Backend, extra: &[&str]) -> Warden {
        Self::start_replica(backend, 0, extra, &[])
    }

    pub fn start_replica(
        backend: &Backend,
        replica: usize,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Warden {
        let mut args = vec!["serve".to_string(), "--listen".into(), "127.0.0.1:0".into()];
        args.extend(backend.store_args_for(replica));
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        envs.push(("WARDEN_MASTER_KEY".into(), MASTER_KEY.into()));
        Self::spawn(args, envs, &backend.data_dir(replica))
    }

    fn spawn(args: Vec<String>, envs: Vec<(String, String)>, data_dir: &Path) -> Warden {
        let log_path = log_path(data_dir);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let mut child = Command::new(BIN)
            .args(&args)
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn warden serve");
        let stdout = child.stdout.take().expect("stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The last line of the start-up banner.
                let base = line
                    .strip_prefix("API reference: ")
                    .and_then(|r| r.trim().strip_suffix("/docs"))
                    .map(str::to_string);
                sink.lock().unwrap().push(line);
                if let Some(base) = base {
                    let _ = tx.send(base);
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("warden serve did not start; log:\n{log}");
            }
        };
        Warden {
            child,
            base,
            stdout: lines,
            args,
            envs,
        }
    }

    pub fn api(&self, key: &str) -> Api {
        Api {
            base: self.base.clone(),
            key: Some(key.to_string()),
            http: client(),
        }
    }

    pub fn anonymous(&self) -> Api {
        Api {
            base: self.base.clone(),
            key: None,
            http: client(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.terminate_within(Duration::from_secs(20))
    }

    /// SIGTERM, then waits up to `longest` for the process to exit.
    pub fn terminate_within(mut self, longest: Duration) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + longest;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "warden did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills with -9 and starts again on the same store.
    /// `kill -9`, then `between` on the stopped store, then a restart.
    pub fn crash_look_and_restart<R>(
        self,
        data_dir: &Path,
        between: impl FnOnce() -> R,
    ) -> (Warden, R) {
        let args = self.args.clone();
        let envs = self.envs.clone();
        self.kill9();
        let seen = between();
        (Self::spawn(args, envs, data_dir), seen)
    }

    pub fn crash_and_restart(self, data_dir: &Path) -> Warden {
        let args = self.args.clone();
        let envs = self.envs.clone();
        self.kill9();
        Self::spawn(args, envs, data_dir)
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// A response as a test sees it.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the error envelope with `code`, and returns its `error` object.
    pub fn error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        let err = &self.body["error"];
        assert_eq!(err["code"], code, "body: {}", self.text);
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "message: {}",
            self.text
        );
        assert!(err["request_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("req_")));
        assert_eq!(self.header("x-request-id"), err["request_id"].as_str());
        err
    }
}

pub struct Api {
    pub base: String,
    pub key: Option<String>,
    http: reqwest::blocking::Client,
}

impl Api {
    pub fn new(base: &str, key: &str) -> Api {
        Api {
            base: base.to_string(),
            key: Some(key.to_string()),
            http: client(),
        }
    }

    pub fn with_key(&self, key: &str) -> Api {
        Api {
            base: self.base.clone(),
            key: Some(key.to_string()),
            http: client(),
        }
    }

    /// Another client with the same key, for another thread.
    pub fn clone_with_key(&self) -> Api {
        self.with_key(self.key.as_deref().expect("a key"))
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::reply(req.send().expect("request"))
    }

    /// A JSON body sent as written: for bodies a `Value` cannot hold (a
    /// key named twice, a byte-order mark, malformed JSON).
    pub fn json_text(&self, method: &str, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.raw(
            method,
            path,
            body.into(),
            &[("content-type", "application/json")],
        )
    }

    pub fn raw(&self, method: &str, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .body(body);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::reply(req.send().expect("request"))
    }

    fn reply(resp: reqwest::blocking::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, &[])
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.send("POST", path, Some(body), &[])
    }

    pub fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send("PATCH", path, Some(body), &[])
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, None, &[])
    }

    /// Creates an agent and returns its id.
    pub fn create_agent(&self, name: &str) -> String {
        let r = self.post("/api/v1/agents", &serde_json::json!({ "name": name }));
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["data"]["id"].as_str().unwrap().to_string()
    }

    /// Creates a key with `scopes` and returns (id, secret).
    pub fn create_key(&self, body: Value) -> (String, String) {
        let r = self.post("/api/v1/api-keys", &body);
        assert_eq!(r.status, 201, "{}", r.text);
        (
            r.body["data"]["id"].as_str().unwrap().to_string(),
            r.body["data"]["key"].as_str().unwrap().to_string(),
        )
    }

    /// Every agent id visible to this key, walking all pages.
    pub fn agent_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut path = "/api/v1/agents?limit=200".to_string();
        loop {
            let r = self.get(&path);
            assert_eq!(r.status, 200, "{}", r.text);
            for a in r.body["data"].as_array().unwrap() {
                ids.push(a["id"].as_str().unwrap().to_string());
            }
            match r.body["next_cursor"].as_str() {
                Some(c) => path = format!("/api/v1/agents?limit=200&cursor={c}"),
                None => return ids,
            }
        }
    }
}

/// Generates one test per backend: SQLite always, PostgreSQL when CI
/// provides a server.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&$crate::common::Backend::sqlite()) })*
        }
        mod postgres {
            $(
                #[test]
                #[ignore = "needs PostgreSQL: set WARDEN_TEST_DATABASE_URL"]
                fn $name() { super::$name(&$crate::common::Backend::postgres()) }
            )*
        }
    };
}

/// Writers posting as fast as they can while the server is killed: the
/// ids of every acknowledged write, to look for after a restart.
pub struct CrashLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writers: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl CrashLoad {
    /// `writers` threads POST `body(writer, n)` to `path`; a reply with
    /// `status` is acknowledged, and the string at `id_pointer` (a JSON
    /// pointer) in its body is kept.
    pub fn start(
        base: &str,
        key: &str,
        writers: usize,
        path: &'static str,
        status: u16,
        id_pointer: &'static str,
        body: fn(usize, usize) -> Value,
    ) -> CrashLoad {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers = (0..writers)
            .map(|w| {
                let (key, base, stop) = (key.to_string(), base.to_string(), stop.clone());
                std::thread::spawn(move || {
                    let http = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(5))
                        .build()
                        .unwrap();
                    let mut acked = Vec::new();
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n += 1;
                        let sent = http
                            .post(format!("{base}{path}"))
                            .bearer_auth(&key)
                            .json(&body(w, n))
                            .send();
                        match sent {
                            Ok(r) if r.status().as_u16() == status => {
                                let reply: Value = r.json().unwrap();
                                acked.push(
                                    reply
                                        .pointer(id_pointer)
                                        .unwrap()
                                        .as_str()
                                        .unwrap()
                                        .to_string(),
                                );
                            }
                            Ok(r) => panic!("unexpected status {}", r.status()),
                            // The server died under the request.
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        CrashLoad { stop, writers }
    }

    /// Stops the writers; the ids they had acknowledged.
    pub fn acknowledged(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.writers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    }
}

/// Another process holding `db`'s SQLite write lock (`BEGIN IMMEDIATE`)
/// until it is killed; returns once the lock is held.
#[allow(dead_code)]
pub fn hold_write_lock(db: &std::path::Path) -> std::process::Child {
    let hold = "import sqlite3,sys,time\nc=sqlite3.connect(sys.argv[1],isolation_level=None)\nc.execute('BEGIN IMMEDIATE')\nprint('held',flush=True)\ntime.sleep(120)";
    let mut holder = Command::new("python3")
        .args(["-c", hold, &db.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut held = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().expect("piped")),
        &mut held,
    )
    .expect("the holder answers");
    assert_eq!(held.trim(), "held");
    holder
}

/// A process's hard limit on open files, as `/proc` shows it.
pub fn open_files_hard_limit(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .unwrap()
        .to_string()
}

/// Sets a process's open-files limit, `SOFT:HARD`, as `prlimit` does.
pub fn set_open_files_limit(pid: u32, limit: &str) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}")])
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success());
}

/// The lowest descriptor number a process has free: a new file takes it,
/// so with the soft limit there no file can be opened.
pub fn lowest_free_descriptor(pid: u32) -> usize {
    let open: std::collections::BTreeSet<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !open.contains(n)).unwrap()
}
