//! SQLite through rusqlite.
//!
//! Reads run inline on the calling thread, on a connection lent from a
//! shared pool ([`Readers`]): an indexed read takes microseconds, far less
//! than handing it to another thread and back. Writes go to one writer
//! thread (SQLite has one writer anyway), which commits whatever jobs are
//! waiting as one transaction, each
//! in its own savepoint: one fsync covers many requests (group commit), and a
//! failing job rolls back alone. A job is answered only after its COMMIT.
//!
//! Two helper threads keep both paths short. The checkpointer copies the WAL
//! back into the database (PASSIVE, every 100 ms), so that no commit waits
//! for a checkpoint. The anchor holds a read lock on the newest WAL read
//! mark, renewed every 20 ms: readers in this process that share the mark
//! then take the lock without a system call. Once the WAL holds 32 MiB of
//! frames the writer starts it over between two groups (see [`WalBound`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::db::{Db, Outcome, Row, Step, Value};
use crate::{StoreError, StoreResult};

/// `case_sensitive_like`: `LIKE` compares case as PostgreSQL's does, so a
/// tool glob filter means the same on either store. `temp_store`: the
/// statement journals, sorts and transient indexes of a query are kept in
/// memory, never in a temporary file each opens, which a process out of
/// files could not have (every write then failed).
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON; PRAGMA case_sensitive_like = ON; PRAGMA temp_store = MEMORY;";
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most jobs one commit covers.
const GROUP_LIMIT: usize = 1024;

thread_local! {
    /// Column names by statement text, so that a read allocates them once.
    static COLUMNS: RefCell<HashMap<String, Arc<[String]>>> = RefCell::new(HashMap::new());
    /// Frames in the WAL after the last commit on this thread's writer
    /// connection, as SQLite reports them to its WAL hook.
    static WAL_FRAMES: Cell<i64> = const { Cell::new(0) };
}

/// The writer connection's WAL hook: SQLite calls it after each commit.
fn note_wal_frames(_wal: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(i64::from(frames));
    Ok(())
}

fn column_names(sql: &str, stmt: &rusqlite::CachedStatement<'_>) -> Arc<[String]> {
    COLUMNS.with(|cell| {
        if let Some(columns) = cell.borrow().get(sql) {
            return columns.clone();
        }
        let columns: Arc<[String]> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        cell.borrow_mut().insert(sql.to_string(), columns.clone());
        columns
    })
}

/// Read connections, lent to whichever thread reads. Kept per thread, each
/// thread the runtime starts (a worker handing its queue aside for heavy
/// work starts one) would open its own, paying the open and the files, and
/// a read would fail outright once the process could open no more files;
/// lent from here, a read then waits for a connection already open
/// (asynchronously: the request worker serves other requests meanwhile).
#[derive(Default)]
struct Readers {
    idle: Mutex<Vec<Connection>>,
    /// Woken when a connection comes back.
    returned: tokio::sync::Notify,
    /// Connections open, lent or idle.
    open: AtomicU64,
}

/// Idle read connections kept; more are closed as they come back.
const IDLE_READERS: usize = 16;

impl Readers {
    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection, a new one, or, when none can be opened, the
    /// first one given back within the busy timeout.
    async fn lend(&self, path: &Path) -> StoreResult<Lent<'_>> {
        self.lend_with(|| {
            open_connection(path)
                .and_then(|conn| conn.execute_batch("PRAGMA query_only = ON;").map(|_| conn))
        })
        .await
    }

    async fn lend_with(
        &self,
        open: impl FnOnce() -> rusqlite::Result<Connection>,
    ) -> StoreResult<Lent<'_>> {
        if let Some(conn) = self.idle().pop() {
            return Ok(Lent::of(self, conn));
        }
        let err = match open() {
            Ok(conn) => {
                self.open.fetch_add(1, Ordering::Relaxed);
                return Ok(Lent::of(self, conn));
            }
            Err(err) => err,
        };
        if self.open.load(Ordering::Relaxed) == 0 {
            return Err(map_err(err));
        }
        static WAITED: warden_core::log_pace::SharedPaced =
            warden_core::log_pace::SharedPaced::new();
        if let Some(unlogged) = WAITED.due() {
            tracing::warn!(error = %err, unlogged, "cannot open another read connection; waiting for one in use");
        }
        let deadline = tokio::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            // Registered before the look, so a return between the two wakes it.
            let returned = self.returned.notified();
            let mut returned = std::pin::pin!(returned);
            returned.as_mut().enable();
            if let Some(conn) = self.idle().pop() {
                return Ok(Lent::of(self, conn));
            }
            if tokio::time::timeout_at(deadline, returned).await.is_err() {
                return Err(map_err(err));
            }
        }
    }
}

/// A read connection on loan, given back when dropped.
struct Lent<'a> {
    readers: &'a Readers,
    conn: Option<Connection>,
}

impl<'a> Lent<'a> {
    fn of(readers: &'a Readers, conn: Connection) -> Self {
        Lent {
            readers,
            conn: Some(conn),
        }
    }
}

impl std::ops::Deref for Lent<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("lent until dropped")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut idle = self.readers.idle();
        if idle.len() < IDLE_READERS {
            idle.push(conn);
            drop(idle);
            self.readers.returned.notify_one();
        } else {
            drop(idle);
            self.readers.open.fetch_sub(1, Ordering::Relaxed);
            drop(conn);
        }
    }
}

type Reply = tokio::sync::oneshot::Sender<StoreResult<Option<Vec<Outcome>>>>;

struct Job {
    steps: Vec<Step>,
    reply: Reply,
}

pub struct SqliteDb {
    path: PathBuf,
    readers: Readers,
    jobs: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Set to stop the checkpointer and the anchor.
    helpers_stop: Arc<AtomicBool>,
    helpers: Mutex<Vec<JoinHandle<()>>>,
    /// RESTART checkpoints the writer has run.
    wal_restarts: Arc<AtomicU64>,
    /// Set once a read, write or checkpoint found the file malformed:
    /// writing on into a damaged B-tree would acknowledge data that may
    /// not be read back, and can spread the damage.
    damaged: Arc<AtomicBool>,
    disk_full: crate::error::DiskFull,
}

const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// Past this many bytes of frames the WAL starts over, holding writers for
/// a moment.
const WAL_LIMIT: u64 = 32 * 1024 * 1024;
const ANCHOR_RENEW: Duration = Duration::from_millis(20);
/// Longest a restart waits for the checkpointer's pass ahead of it.
const PASS_WAIT: Duration = Duration::from_millis(200);
/// How long after a restart that found a reader the next is tried.
const RESTART_RETRY: Duration = Duration::from_millis(20);

/// Runs `tick` every `period` until `stop` is set (and the thread unparked).
fn every(
    name: &str,
    period: Duration,
    stop: Arc<AtomicBool>,
    mut tick: impl FnMut() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                tick();
                std::thread::park_timeout(period);
            }
        })
}

/// Tells the anchor to let go of its read lock, and when it has.
#[derive(Default)]
struct AnchorControl {
    step_aside: AtomicBool,
    released: AtomicBool,
}

fn start_helpers(
    path: &Path,
    stop: Arc<AtomicBool>,
    damaged: Arc<AtomicBool>,
) -> StoreResult<Helpers> {
    let db = path.to_path_buf();
    let checkpointer = open_connection(path).map_err(map_err)?;
    let anchor = open_connection(path).map_err(map_err)?;
    anchor
        .execute_batch("PRAGMA query_only = ON;")
        .map_err(map_err)?;
    let spawn_err =
        |e: std::io::Error| StoreError::Unavailable(format!("cannot start a store thread: {e}"));
    let control = Arc::new(AnchorControl::default());

    let anchor_control = control.clone();
    let mut holding = false;
    let hold = every(
        "warden-sqlite-anchor",
        ANCHOR_RENEW,
        stop.clone(),
        move || {
            if holding {
                let _ = anchor.execute_batch("COMMIT");
                holding = false;
            }
            if anchor_control.step_aside.load(Ordering::Acquire) {
                anchor_control.released.store(true, Ordering::Release);
                return;
            }
            anchor_control.released.store(false, Ordering::Release);
            holding = anchor
                .execute_batch("BEGIN")
                .and_then(|_| {
                    anchor.query_row("SELECT COUNT(*) FROM schema_migrations", [], |_| Ok(()))
                })
                .is_ok();
        },
    )
    .map_err(spawn_err)?;

    let anchor_thread = hold.thread().clone();
    let passes = Arc::new(AtomicU64::new(0));
    let passes_done = passes.clone();
    // It runs ten times a second: a damaged file would fill the log.
    let mut failures = warden_core::log_pace::Paced::default();
    let checkpoint = every(
        "warden-sqlite-checkpoint",
        CHECKPOINT_EVERY,
        stop,
        move || {
            if let Err(err) =
                checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            {
                let err = map_err(err);
                if let StoreError::Damaged(why) = &err {
                    mark_damaged(&damaged, &db, why);
                }
                if let Some(unlogged) = failures.due() {
                    tracing::warn!(error = %err, unlogged, "WAL checkpoint failed");
                }
            }
            passes_done.fetch_add(1, Ordering::Release);
        },
    )
    .map_err(spawn_err)?;
    let checkpointer_thread = checkpoint.thread().clone();
    Ok(Helpers {
        threads: vec![checkpoint, hold],
        anchor: control,
        anchor_thread,
        checkpoints: passes,
        checkpointer_thread,
    })
}

/// The file beside the database that says it was found damaged: kept
/// across restarts, so that a server started again on the same file
/// checks it whole before taking writes, rather than forgetting.
pub(crate) fn damage_marker(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}.damaged", db.display()))
}

/// Marks the store damaged, once: the flag, the marker file, one error.
fn mark_damaged(flag: &AtomicBool, db: &Path, why: &str) {
    if flag.swap(true, Ordering::AcqRel) {
        return;
    }
    tracing::error!(error = %why,
        "the store is damaged and takes no more writes; restore it (see the operations guide)");
    let marker = damage_marker(db);
    if let Err(err) = std::fs::write(&marker, format!("{why}\n")) {
        tracing::warn!(error = %err, path = %marker.display(), "cannot write the damage marker");
    }
}

/// The first finding of a `quick_check` that failed, and how many more:
/// SQLite heads its findings with the schema's name (`*** in database
/// main ***`), which names nothing.
pub(crate) fn first_finding(check: &str) -> (&str, usize) {
    let mut findings = check.lines().filter(|l| !l.starts_with("***"));
    let first = findings.next().unwrap_or(check);
    (first, findings.count())
}

/// At open, a store marked damaged is checked whole (SQLite's
/// `quick_check`, which reads every page): still damaged, it opens as
/// damaged; whole again (repaired or replaced by hand), the mark goes.
fn damaged_at_open(conn: &Connection, db: &Path) -> bool {
    let marker = damage_marker(db);
    if !marker.exists() {
        return false;
    }
    let check = conn
        .query_row("PRAGMA quick_check", [], |row| row.get::<_, String>(0))
        .unwrap_or_else(|e| e.to_string());
    if check == "ok" {
        tracing::info!(path = %marker.display(),
            "the store was marked damaged and now checks whole; mark removed");
        let _ = std::fs::remove_file(&marker);
        return false;
    }
    let (first, more) = first_finding(&check);
    tracing::error!(error = %first, more_findings = more, path = %marker.display(),
        "the store was found damaged before and still is: it takes no writes; restore it \
         (warden restore, see the operations guide)");
    true
}

/// The helper threads, and what the writer needs to ask the anchor aside.
struct Helpers {
    threads: Vec<JoinHandle<()>>,
    anchor: Arc<AnchorControl>,
    anchor_thread: std::thread::Thread,
    /// PASSIVE checkpoint passes the checkpointer has finished.
    checkpoints: Arc<AtomicU64>,
    checkpointer_thread: std::thread::Thread,
}

/// Starts the WAL over once it passes its limit. Under steady writes the
/// PASSIVE checkpoints never quite catch up and the WAL would never start
/// over on its own; the writer itself runs a RESTART checkpoint between
/// groups (it holds the write lock already, so nothing waits in a busy
/// handler), after the anchor has let go of its read lock. Every write
/// waits while it runs, so it should find little to copy: once the WAL is
/// past its limit the anchor lets go and the checkpointer is asked for a
/// pass right away, and the restart follows that pass (or 200 ms at
/// most), copying only the groups committed since. It never waits for a
/// reader either: one still on an older snapshot makes it give up and try
/// again 20 ms later. The file keeps its size: later commits overwrite it
/// instead of growing it.
///
/// Because the file keeps its size, its length says nothing about what the
/// WAL holds: the measure is the frame count SQLite reports after each
/// commit (its WAL hook), which starts again from zero after a restart.
struct WalBound {
    limit: u64,
    page_size: u64,
    /// RESTART checkpoints run, for the tests and the close-down log.
    restarts: Arc<AtomicU64>,
    /// No restart is tried before this (after one found a reader).
    next_try: std::time::Instant,
    anchor: Arc<AnchorControl>,
    anchor_thread: std::thread::Thread,
    checkpoints: Arc<AtomicU64>,
    checkpointer_thread: std::thread::Thread,
    /// The checkpointer's pass count when it was asked for a pass ahead
    /// of a restart, and when.
    asked: Option<(u64, std::time::Instant)>,
    /// Failed restarts repeat with every group on a full disk: logged
    /// at a pace.
    restart_failures: warden_core::log_pace::Paced,
}

impl WalBound {
    fn enforce(&mut self, conn: &Connection) {
        let held = u64::try_from(WAL_FRAMES.get()).unwrap_or(0) * self.page_size;
        let now = std::time::Instant::now();
        if held <= self.limit || now < self.next_try {
            return;
        }
        // A restart copies whatever the checkpointer has not, while every
        // write waits: first let the checkpointer make a pass off this
        // thread, so that only the last groups remain to copy.
        let passes = self.checkpoints.load(Ordering::Acquire);
        match self.asked {
            None => {
                // The anchor lets go first, so that the pass can copy up to
                // the newest commit.
                self.asked = Some((passes, now));
                self.anchor.step_aside.store(true, Ordering::Release);
                self.anchor_thread.unpark();
                self.checkpointer_thread.unpark();
                return;
            }
            Some((asked, at)) if passes <= asked && now < at + PASS_WAIT => return,
            Some(_) => self.asked = None,
        }
        self.anchor.step_aside.store(true, Ordering::Release);
        self.anchor_thread.unpark();
        let deadline = std::time::Instant::now() + Duration::from_millis(100);
        while !self.anchor.released.load(Ordering::Acquire) && std::time::Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        // Never wait for a reader here: every decision waits behind the
        // writer. Without a busy handler a RESTART that finds a reader on
        // an older snapshot copies what it can and answers busy (1 in the
        // first column); it is tried again a little later.
        let _ = conn.busy_timeout(Duration::ZERO);
        let restart = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
            row.get::<_, i64>(0)
        });
        let _ = conn.busy_timeout(BUSY_TIMEOUT);
        match restart {
            Ok(0) => {
                WAL_FRAMES.set(0);
                self.restarts.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => self.next_try = std::time::Instant::now() + RESTART_RETRY,
            Err(err) => {
                if let Some(unlogged) = self.restart_failures.due() {
                    tracing::warn!(error = %err, unlogged, "WAL restart failed");
                }
                self.next_try = std::time::Instant::now() + RESTART_RETRY;
            }
        }
        self.anchor.step_aside.store(false, Ordering::Release);
        self.anchor_thread.unpark();
    }
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(PRAGMAS)?;
    // SQLite's own lower() folds ASCII only; searches promise Unicode, as
    // PostgreSQL gives.
    conn.create_scalar_function(
        "lower",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(ctx.get::<Option<String>>(0)?.map(|s| s.to_lowercase())),
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteDb {
    /// Opens the database, applies `migrations` and starts the writer.
    pub fn open(path: &Path, migrations: &[(i64, &str)]) -> StoreResult<Self> {
        Self::open_with_wal_limit(path, migrations, WAL_LIMIT)
    }

    fn open_with_wal_limit(
        path: &Path,
        migrations: &[(i64, &str)],
        wal_limit: u64,
    ) -> StoreResult<Self> {
        let mut conn = open_connection(path).map_err(map_err)?;
        crate::migrate::apply_sqlite(&mut conn, migrations)?;
        // Checkpoints run on their own thread, never inside a commit. The
        // hook is set after the pragma, which would replace it.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(map_err)?;
        conn.wal_hook(Some(note_wal_frames));
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .map_err(map_err)?;
        let restarts = Arc::new(AtomicU64::new(0));
        let helpers_stop = Arc::new(AtomicBool::new(false));
        let damaged = Arc::new(AtomicBool::new(damaged_at_open(&conn, path)));
        let Helpers {
            threads: helpers,
            anchor,
            anchor_thread,
            checkpoints,
            checkpointer_thread,
        } = start_helpers(path, helpers_stop.clone(), damaged.clone())?;
        let bound = WalBound {
            limit: wal_limit,
            page_size: u64::try_from(page_size).unwrap_or(4096),
            restarts: restarts.clone(),
            next_try: std::time::Instant::now(),
            anchor,
            anchor_thread,
            checkpoints,
            checkpointer_thread,
            asked: None,
            restart_failures: Default::default(),
        };
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("warden-sqlite-writer".into())
            .spawn(move || write_loop(conn, rx, bound))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(SqliteDb {
            path: path.to_path_buf(),
            readers: Readers::default(),
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            helpers_stop,
            helpers: Mutex::new(helpers),
            wal_restarts: restarts,
            damaged,
            disk_full: Default::default(),
        })
    }

    /// Remembers damage a result shows.
    fn noted<T>(&self, result: StoreResult<T>) -> StoreResult<T> {
        if let Err(StoreError::Damaged(why)) = &result {
            mark_damaged(&self.damaged, &self.path, why);
        }
        result
    }

    async fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let reader = self.readers.lend(&self.path).await?;
        self.noted(f(&reader).map_err(map_err))
    }

    async fn write(&self, steps: Vec<Step>) -> StoreResult<Option<Vec<Outcome>>> {
        if self.damaged.load(Ordering::Acquire) {
            return Err(StoreError::Damaged(format!(
                "a read, write or checkpoint found the database file malformed ({} is kept \
                 beside it); it takes no writes until restored with `warden restore` (see the \
                 operations guide)",
                damage_marker(&self.path).display()
            )));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        {
            let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            let sender = jobs
                .as_ref()
                .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
            sender
                .send(Job { steps, reply })
                .map_err(|_| StoreError::Unavailable("the writer stopped".into()))?;
        }
        let written = answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))?;
        self.disk_full
            .noted(self.noted(written), Outcome::any_changed)
    }
}

#[async_trait]
impl Db for SqliteDb {
    async fn query(&self, sql: &str, args: Vec<Value>) -> StoreResult<Vec<Row>> {
        self.read(|conn| fetch(conn, sql, &args)).await
    }

    async fn execute(&self, sql: &str, args: Vec<Value>) -> StoreResult<u64> {
        let outcome = self.write(vec![Step::execute(sql, args)]).await?;
        Ok(outcome
            .and_then(|o| o.first().map(Outcome::changed))
            .unwrap_or(0))
    }

    async fn transaction(&self, steps: Vec<Step>) -> StoreResult<Option<Vec<Outcome>>> {
        self.write(steps).await
    }

    fn damaged(&self) -> bool {
        self.damaged.load(Ordering::Acquire)
    }

    fn disk_full(&self) -> bool {
        self.disk_full.is_full()
    }

    async fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.helpers_stop.store(true, Ordering::Release);
        let mut threads: Vec<JoinHandle<()>> = self
            .helpers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for thread in &threads {
            thread.thread().unpark();
        }
        threads.extend(self.writer.lock().unwrap_or_else(|e| e.into_inner()).take());
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        tracing::debug!(
            restarts = self.wal_restarts.load(Ordering::Relaxed),
            "SQLite store closed"
        );
    }
}

/// Binds `args` to `$1…$n`. SQLite numbers named parameters by their first
/// appearance, so `$n` is parameter n exactly when the text introduces them
/// in order, which every query of this crate does; a statement that breaks
/// the rule is refused rather than bound wrongly.
fn bind(stmt: &mut rusqlite::CachedStatement<'_>, args: &[Value]) -> rusqlite::Result<()> {
    if stmt.parameter_count() != args.len() {
        return Err(rusqlite::Error::InvalidParameterCount(
            args.len(),
            stmt.parameter_count(),
        ));
    }
    if cfg!(debug_assertions) {
        for i in 1..=args.len() {
            if stmt.parameter_name(i) != Some(format!("${i}").as_str()) {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "parameter {i} is not ${i}"
                )));
            }
        }
    }
    for (i, arg) in args.iter().enumerate() {
        match arg {
            Value::Int(v) => stmt.raw_bind_parameter(i + 1, v)?,
            Value::Text(v) => stmt.raw_bind_parameter(i + 1, v)?,
        }
    }
    Ok(())
}

fn fetch(conn: &Connection, sql: &str, args: &[Value]) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, args)?;
    let columns = column_names(sql, &stmt);
    let width = columns.len();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => Value::Int(None),
                ValueRef::Integer(n) => Value::Int(Some(n)),
                // Warden writes no REAL; a whole one (an edit's `11.0`)
                // is the number, any other reads as text, so that a
                // whole-number column edited to hold it is refused as
                // not one rather than read as a number it is not.
                ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
                    Value::Int(Some(f as i64))
                }
                ValueRef::Real(f) => Value::Text(Some(f.to_string())),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Value::Text(Some(String::from_utf8_lossy(t).into_owned()))
                }
            });
        }
        out.push(Row {
            columns: columns.clone(),
            values,
        });
    }
    Ok(out)
}

fn run(conn: &Connection, step: &Step) -> rusqlite::Result<Outcome> {
    if step.fetch {
        return fetch(conn, &step.sql, &step.args).map(Outcome::Rows);
    }
    let mut stmt = conn.prepare_cached(&step.sql)?;
    bind(&mut stmt, &step.args)?;
    stmt.raw_execute().map(|n| Outcome::Changed(n as u64))
}

/// Runs a job's steps; `None` when a required step touched nothing.
fn run_job(conn: &Connection, steps: &[Step]) -> StoreResult<Option<Vec<Outcome>>> {
    let mut outcomes = Vec::with_capacity(steps.len());
    for step in steps {
        let outcome = run(conn, step).map_err(map_err)?;
        if step.required && outcome.changed() == 0 {
            return Ok(None);
        }
        outcomes.push(outcome);
    }
    Ok(Some(outcomes))
}

fn write_loop(conn: Connection, jobs: Receiver<Job>, mut bound: WalBound) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP_LIMIT {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_group(&conn, batch);
        bound.enforce(&conn);
    }
}

/// One transaction for the whole group, one savepoint per job (none when
/// the group is a single job: the transaction itself is its savepoint).
fn commit_group(conn: &Connection, batch: Vec<Job>) {
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = map_err(err);
        for job in batch {
            let _ = job.reply.send(Err(unavailable_like(&err)));
        }
        return;
    }
    // A job whose caller stopped waiting (a request the client gave up, a
    // task the shutdown stopped) is not run: nobody was or will be told
    // it was stored, and a shutdown that counted it lost must not find it
    // stored after all. One that already began runs to its end.
    let mut batch = batch;
    batch.retain(|job| !job.reply.is_closed());
    if batch.is_empty() {
        let _ = conn.execute_batch("ROLLBACK");
        return;
    }
    let alone = batch.len() == 1;
    let mut results = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    while let Some(job) = jobs.next() {
        let result = if alone {
            run_job(conn, &job.steps)
        } else {
            run_in_savepoint(conn, &job.steps)
        };
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O
            // error): nothing of the group is stored; run nothing more.
            let rolled_back = match &result {
                Err(StoreError::Full(why)) => StoreError::Full(why.clone()),
                _ => StoreError::Unavailable("the database rolled back the transaction".into()),
            };
            results.push((job.reply, result));
            for (reply, _) in results {
                let _ = reply.send(Err(unavailable_like(&rolled_back)));
            }
            for job in jobs {
                let _ = job.reply.send(Err(unavailable_like(&rolled_back)));
            }
            return;
        }
        results.push((job.reply, result));
    }
    let end = if alone && !matches!(results[0].1, Ok(Some(_))) {
        "ROLLBACK"
    } else {
        "COMMIT"
    };
    if let Err(err) = conn.execute_batch(end) {
        let _ = conn.execute_batch("ROLLBACK");
        let err = map_err(err);
        for (reply, _) in results {
            let _ = reply.send(Err(unavailable_like(&err)));
        }
        return;
    }
    for (reply, result) in results {
        let _ = reply.send(result);
    }
}

fn run_in_savepoint(conn: &Connection, steps: &[Step]) -> StoreResult<Option<Vec<Outcome>>> {
    conn.execute_batch("SAVEPOINT job").map_err(map_err)?;
    let result = run_job(conn, steps);
    let end = if matches!(result, Ok(Some(_))) {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    match conn.execute_batch(end) {
        Ok(()) => result,
        // SQLite rolled the whole transaction back with the job's failure
        // (a full disk): the savepoint is gone, and the job's error says
        // why. Were it still open, the job's first steps would stay in
        // it: the whole group is rolled back, and the caller fails it.
        Err(err) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(result.err().unwrap_or_else(|| map_err(err)))
        }
    }
}

/// A failure of the whole group, told to each of its jobs: damage as
/// damage, a full disk as a full disk, anything else as the store being
/// unavailable.
fn unavailable_like(err: &StoreError) -> StoreError {
    match err {
        StoreError::Damaged(why) => StoreError::Damaged(why.clone()),
        StoreError::Full(why) => StoreError::Full(why.clone()),
        StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

pub(crate) fn map_err(err: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, message) = &err {
        let text = message.clone().unwrap_or_else(|| failure.to_string());
        return match failure.code {
            ErrorCode::ConstraintViolation
                if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Conflict { field: text }
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Unavailable(text),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreError::Damaged(text),
            ErrorCode::DiskFull => StoreError::Full(text),
            // No file could be opened (the process's limit): it passes.
            ErrorCode::CannotOpen => StoreError::Unavailable(text),
            _ => StoreError::Database(text),
        };
    }
    StoreError::Database(err.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, SqliteDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open(
            &dir.path().join("t.db"),
            &[(1, "CREATE TABLE t (a BIGINT, b TEXT)")],
        )
        .unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn threads_reading_one_after_another_share_one_connection() {
        let (_dir, db) = db();
        let db = Arc::new(db);
        for _ in 0..8 {
            let db = db.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime
                    .block_on(db.query("SELECT COUNT(*) AS n FROM t", vec![]))
                    .unwrap()
            })
            .join()
            .unwrap();
        }
        assert_eq!(db.readers.open.load(Ordering::Relaxed), 1);
        // Two reads at once hold two.
        let held = db.readers.lend(&db.path).await.unwrap();
        db.query("SELECT 1 AS one", vec![]).await.unwrap();
        drop(held);
        assert_eq!(db.readers.open.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_read_that_cannot_open_a_connection_waits_for_one_in_use() {
        let (_dir, db) = db();
        let held = db.readers.lend(&db.path).await.unwrap();
        let no_files = || {
            Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some("too many open files".into()),
            ))
        };
        let (waited, ()) = tokio::join!(
            async { db.readers.lend_with(no_files).await.map(|_| ()) },
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(held);
            }
        );
        assert!(waited.is_ok(), "the read got the connection given back");
        assert_eq!(db.readers.open.load(Ordering::Relaxed), 1);
        // With none open at all, the failure is the answer at once, and
        // it passes (503, not 500).
        let (_dir, fresh) = self::db();
        let refused = fresh.readers.lend_with(no_files).await.map(|_| ());
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{refused:?}"
        );
    }

    /// SQLite's page limit on the writer's connection stands for a full
    /// disk: a write past it fails with `SQLITE_FULL`, as on a disk with
    /// no space left.
    pub(crate) async fn limit_pages(db: &dyn Db, pages: i64) {
        db.transaction(vec![Step::query(
            format!("PRAGMA max_page_count = {pages}"),
            vec![],
        )])
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_full_disk_is_told_as_such_until_a_write_goes_through() {
        let (_dir, db) = db();
        db.execute("INSERT INTO t (a, b) VALUES (1, 'x')", vec![])
            .await
            .unwrap();
        let pages = db
            .read(|conn| conn.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        limit_pages(&db, pages).await;
        let big = || {
            Step::execute(
                "INSERT INTO t (a, b) VALUES (2, $1)",
                vec!["y".repeat(64 * 1024).into()],
            )
        };
        // Alone, and in a group with another job that fits.
        let alone = db.transaction(vec![big()]).await;
        assert!(matches!(alone, Err(StoreError::Full(_))), "{alone:?}");
        assert!(db.disk_full());
        let (grouped, small) = tokio::join!(
            db.transaction(vec![big()]),
            db.execute("UPDATE t SET b = 'z' WHERE a = 1", vec![])
        );
        assert!(matches!(grouped, Err(StoreError::Full(_))), "{grouped:?}");
        // Whether it shared the group or not, the small change is told
        // what became of it.
        assert!(
            matches!(small, Ok(1) | Err(StoreError::Full(_))),
            "{small:?}"
        );
        // Reads still work, and nothing of the refused writes is there.
        let rows = db
            .read(|conn| {
                conn.query_row("SELECT COUNT(*) FROM t WHERE a = 2", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .await
            .unwrap();
        assert_eq!(rows, 0);
        // The small change may have cleared the mark, having stored
        // something: refused again, marked again.
        let again = db.transaction(vec![big()]).await;
        assert!(matches!(again, Err(StoreError::Full(_))), "{again:?}");
        assert!(db.disk_full());
        // A write that changes nothing says nothing of the space.
        db.execute("DELETE FROM t WHERE a = 99", vec![])
            .await
            .unwrap();
        assert!(db.disk_full());
        // Space again: the next write that stores something clears it.
        limit_pages(&db, 1 << 30).await;
        assert!(db.disk_full(), "a pragma stores nothing");
        db.transaction(vec![big()]).await.unwrap();
        assert!(!db.disk_full());
    }

    #[tokio::test]
    async fn a_damaged_file_is_noticed_and_takes_no_more_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let migrations = [(1, "CREATE TABLE t (a BIGINT, b TEXT)")];
        let db = SqliteDb::open(&path, &migrations).unwrap();
        let steps = (0..2000i64)
            .map(|i| {
                Step::execute(
                    "INSERT INTO t (a, b) VALUES ($1, $2)",
                    vec![i.into(), "x".repeat(200).into()],
                )
            })
            .collect();
        db.transaction(steps).await.unwrap();
        db.close().await;
        // Everything in the file itself, whatever the checkpointer had
        // copied back before the close.
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        // The table's last pages overwritten, as a torn copy or a stale
        // WAL replayed onto another file would leave them.
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        assert!(len > 80 * 4096, "the rows are in the file: {len} bytes");
        bytes[len - 40 * 4096..].fill(0xA5);
        std::fs::write(&path, bytes).unwrap();

        let db = SqliteDb::open(&path, &migrations).unwrap();
        assert!(!db.damaged(), "nothing has read the damaged pages yet");
        let read = db.query("SELECT SUM(LENGTH(b)) AS n FROM t", vec![]).await;
        assert!(matches!(read, Err(StoreError::Damaged(_))), "{read:?}");
        assert!(db.damaged());
        // Nothing more is written, even where the pages are whole.
        let write = db
            .execute(
                "INSERT INTO t (a, b) VALUES ($1, $2)",
                vec![1.into(), "y".into()],
            )
            .await;
        assert!(matches!(write, Err(StoreError::Damaged(_))), "{write:?}");
        db.close().await;
        // A restart does not forget it: the file is checked whole first.
        assert!(damage_marker(&path).exists());
        let db = SqliteDb::open(&path, &migrations).unwrap();
        assert!(db.damaged(), "still damaged after a restart");
        db.close().await;
        // Once the file checks whole again, the mark goes.
        std::fs::remove_file(&path).unwrap();
        let db = SqliteDb::open(&path, &migrations).unwrap();
        assert!(!db.damaged());
        assert!(!damage_marker(&path).exists());
        db.close().await;
    }

    #[tokio::test]
    async fn numbered_parameters_bind_in_order_and_repeat() {
        let (_dir, db) = db();
        db.execute(
            "INSERT INTO t (a, b) VALUES ($1, $2)",
            vec![7.into(), "x".into()],
        )
        .await
        .unwrap();
        let rows = db
            .query(
                "SELECT a, b FROM t WHERE a = $1 AND (b = $2 OR a = $1)",
                vec![7.into(), "y".into()],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].text("b").unwrap(), "x");
        // A REAL is a number only when whole.
        let rows = db
            .query("SELECT 11.0 AS whole, 11.5 AS part", vec![])
            .await
            .unwrap();
        assert_eq!(rows[0].int("whole").unwrap(), 11);
        assert!(rows[0].int("part").is_err());
        // Out of order: refused, never bound to the wrong value.
        assert!(db
            .query(
                "SELECT a FROM t WHERE b = $2 AND a = $1",
                vec![7.into(), "x".into()]
            )
            .await
            .is_err());
        db.close().await;
    }

    #[tokio::test]
    async fn the_wal_stays_bounded_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let limit = 256 * 1024;
        let db = SqliteDb::open_with_wal_limit(
            &path,
            &[(1, "CREATE TABLE t (a BIGINT, b TEXT)")],
            limit,
        )
        .unwrap();
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let mut largest = 0;
        for i in 0..3000i64 {
            let filler = "x".repeat(500);
            db.execute(
                "INSERT INTO t (a, b) VALUES ($1, $2)",
                vec![i.into(), filler.into()],
            )
            .await
            .unwrap();
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
        // 3,000 commits write far more than the limit; the WAL starts over
        // instead of growing (a checkpointer pass past the limit at most).
        assert!(largest < 4 * limit, "the WAL grew to {largest} bytes");
        // ...and only when it is full: each commit of one row writes at
        // most a few pages, so the restarts are bounded by the bytes
        // written over the limit, not one per commit, which is what a
        // measure fooled by the file's kept size would run.
        let restarts = db.wal_restarts.load(Ordering::Relaxed);
        let most = 3000 * 3 * 4096 / limit;
        assert!(restarts >= 1, "the WAL never started over");
        assert!(
            restarts <= most,
            "{restarts} restarts for 3,000 commits (at most {most})"
        );
        let rows = db
            .query("SELECT COUNT(*) AS n FROM t", vec![])
            .await
            .unwrap();
        assert_eq!(rows[0].int("n").unwrap(), 3000);
        db.close().await;
    }

    #[tokio::test]
    async fn a_failing_job_rolls_back_alone() {
        let (_dir, db) = db();
        let done = db
            .transaction(vec![
                Step::execute("INSERT INTO t (a) VALUES ($1)", vec![1.into()]),
                Step::execute("UPDATE t SET b = 'z' WHERE a = $1", vec![99.into()]).required(),
            ])
            .await
            .unwrap();
        assert!(done.is_none(), "a required step touched nothing");
        assert!(db
            .query("SELECT a FROM t", vec![])
            .await
            .unwrap()
            .is_empty());
        db.close().await;
    }
}
