//! The event index on disk: one per process, fed from the event log in
//! sequence order, searched by every request.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tantivy::directory::MmapDirectory;
use tantivy::indexer::UserOperation;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use warden_core::event::Event;

use crate::analyzer::{MessageAnalyzer, MESSAGE_ANALYZER};
use crate::background::at_indexing_priority;
use crate::collect::{Buckets, EventCollector};
use crate::document::document;
use crate::schema::{kv_term, tenant_term, Fields};
use crate::translate::Translator;
use crate::{SearchError, SearchRequest, SearchResult};

/// One event of the log, as the index takes it in.
pub struct Logged<'a> {
    pub seq: u64,
    pub org_id: &'a str,
    pub environment: &'a str,
    pub event: &'a Event,
    /// The event's JSON, which search returns.
    pub json: &'a str,
}

/// Segments this large are merged no further. A merge takes up to eight
/// segments below it, so no merge reads (through the memory map, which
/// counts in the process's resident memory) more than about 1.2 million
/// events' worth of segments, and 10 million events rest in about
/// seventeen (measured: 474 MiB peak resident, `BENCHMARKS.md`).
const MERGED_NO_FURTHER: usize = 150_000;

/// Tantivy's log merge policy, with merges bounded by [`MERGED_NO_FURTHER`].
fn merge_policy() -> Box<tantivy::indexer::LogMergePolicy> {
    let mut policy = tantivy::indexer::LogMergePolicy::default();
    policy.set_max_docs_before_merge(MERGED_NO_FURTHER);
    Box::new(policy)
}

/// Memory the writer may fill before it writes a segment.
const WRITER_MEMORY: usize = 192 * 1024 * 1024;
/// The file that names this index, so its cursor in the store is its own.
const ID_FILE: &str = "warden-index-id";
/// The file that says how this index cuts and places what it holds.
const FORMAT_FILE: &str = "warden-index-format";
/// Raised whenever the same event would be indexed differently (the
/// analyzer's terms or positions, the fields): an index of another format
/// answers some queries wrongly, so it is emptied and built again from the
/// log under a new id (whose cursor starts at the beginning).
/// 2: each part of a word takes its own position; pieces of words indexed.
/// 3: a word too long to index whole keeps its pieces and parts.
/// 4: numbers keep whole values past 2^53; numbers sent as text indexed.
/// 5: a number's distance from its double takes one byte when none.
const FORMAT: &str = "5";

/// Threads that build the index unless told otherwise: half the cores,
/// one to four. The other half serve requests and commit events; each
/// writer thread makes its own segment at every commit, so fewer threads
/// mean fewer, larger segments and less merging (on two cores, one thread
/// took the same ingest rate with about 14% less CPU than two).
pub fn default_writer_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 4)
}

pub struct EventIndex {
    fields: Fields,
    index: Index,
    reader: IndexReader,
    /// Empty after a rollback that could not start a new writer: tantivy
    /// has then released the directory lock with the writer it failed to
    /// build, and the next `rollback` opens a fresh one.
    writer: Mutex<Option<IndexWriter>>,
    writer_threads: usize,
    /// Threads one search walks its segments on (see `run`).
    search_threads: usize,
    /// The log position the index's last commit holds everything up to,
    /// saved in the commit itself; -1 when an older index did not save it.
    position: std::sync::atomic::AtomicI64,
    id: String,
    dir: PathBuf,
}

fn index_err(err: tantivy::TantivyError) -> SearchError {
    SearchError::Index(err.to_string())
}

/// Why an index did not open: its files are damaged, or anything else
/// (another process holds it, the machine is out of files).
enum Opening {
    Damaged(String),
    Failed(SearchError),
}

impl Opening {
    fn into_error(self) -> SearchError {
        match self {
            Opening::Damaged(why) => SearchError::Index(why),
            Opening::Failed(e) => e,
        }
    }
}

/// An index that did not open, said with its directory: the operator
/// must know which path to mend (a permission, a disk).
fn placed(dir: &Path, e: SearchError) -> SearchError {
    match e {
        SearchError::Index(why) if !why.contains(&dir.display().to_string()) => {
            let hint = if why.contains("Permission denied") {
                " (is the data directory writable by this user?)"
            } else {
                ""
            };
            SearchError::Index(format!("{}: {why}{hint}", dir.display()))
        }
        e => e,
    }
}

impl From<SearchError> for Opening {
    fn from(e: SearchError) -> Self {
        Opening::Failed(e)
    }
}

/// Sorts an error met while opening: damage only when the files
/// themselves are wrong, never for a shortage (files, memory, space) or a
/// permission, which a rebuild would not cure.
fn opening(err: tantivy::TantivyError) -> Opening {
    use std::io::ErrorKind;
    use tantivy::directory::error::OpenReadError;
    use tantivy::TantivyError as E;
    let bad_bytes = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::InvalidData | ErrorKind::UnexpectedEof | ErrorKind::NotFound
        )
    };
    let damaged = match &err {
        E::DataCorruption(_)
        | E::IncompatibleIndex(_)
        | E::SchemaError(_)
        | E::DeserializeError(_)
        | E::FieldNotFound(_) => true,
        E::OpenReadError(OpenReadError::FileDoesNotExist(_))
        | E::OpenReadError(OpenReadError::IncompatibleIndex(_)) => true,
        E::OpenReadError(OpenReadError::IoError { io_error, .. }) => bad_bytes(io_error),
        E::IoError(e) => bad_bytes(e),
        _ => false,
    };
    if damaged {
        Opening::Damaged(err.to_string())
    } else {
        Opening::Failed(index_err(err))
    }
}

/// Times a damaged index is set aside before its error stands.
const SET_ASIDE_ATTEMPTS: usize = 3;

impl EventIndex {
    /// Opens the index in `dir`, creating it if needed. Fails when another
    /// process holds it (one writer per index).
    /// An index whose files are damaged (a truncated segment, a mangled
    /// `meta.json`) is moved aside to `<dir>.damaged-<time>` and started
    /// anew under a new name, so the indexer builds it again from the log:
    /// the index is a copy of the log, and must not keep the server down.
    pub fn open(dir: &Path, writer_threads: usize) -> Result<Self, SearchError> {
        // A failed open can leave tantivy's threads behind for a moment,
        // writing by path into the directory started anew: such a start
        // is set aside in turn, a few times.
        for attempt in 0..SET_ASIDE_ATTEMPTS {
            match Self::open_catching(dir, writer_threads) {
                Err(Opening::Damaged(why)) if attempt + 1 < SET_ASIDE_ATTEMPTS => {
                    let aside = PathBuf::from(format!(
                        "{}.damaged-{}-{attempt}",
                        dir.display(),
                        warden_core::time::now_ms()
                    ));
                    tracing::error!(
                        dir = %dir.display(),
                        aside = %aside.display(),
                        error = %why,
                        "the search index is damaged; it is moved aside and built again from the event log"
                    );
                    std::fs::rename(dir, &aside).map_err(|e| {
                        SearchError::Index(format!(
                            "the search index is damaged ({why}) and could not be moved aside: {e}"
                        ))
                    })?;
                    std::thread::sleep(std::time::Duration::from_millis(50 * attempt as u64));
                }
                other => return other.map_err(|e| placed(dir, e.into_error())),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Opens as is; tantivy asserts on some damaged files (a segment file
    /// cut to a few bytes) instead of answering an error: that panic is
    /// damage too.
    fn open_catching(dir: &Path, writer_threads: usize) -> Result<Self, Opening> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::open_as_is(dir, writer_threads)
        }))
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "opening the index panicked".into());
            Err(Opening::Damaged(why))
        })
    }

    fn open_as_is(dir: &Path, writer_threads: usize) -> Result<Self, Opening> {
        std::fs::create_dir_all(dir).map_err(|e| SearchError::Index(e.to_string()))?;
        let fields = Fields::new();
        let directory = MmapDirectory::open(dir).map_err(|e| SearchError::Index(e.to_string()))?;
        let index = Index::open_or_create(directory, fields.schema.clone()).map_err(opening)?;
        index
            .tokenizers()
            .register(MESSAGE_ANALYZER, MessageAnalyzer);
        // The writer's threads build the index below request handling.
        let writer_threads = writer_threads.clamp(1, 8);
        let writer =
            at_indexing_priority(|| index.writer_with_num_threads(writer_threads, WRITER_MEMORY))
                .map_err(|e| match e {
                tantivy::TantivyError::LockFailure(
                    tantivy::directory::error::LockError::IoError(io),
                    _,
                ) => {
                    // Not another process: the lock file cannot be made
                    // (permissions, a read-only disk, a missing directory).
                    SearchError::Index(format!(
                        "the index's lock file in {} cannot be created: {io}",
                        dir.display()
                    ))
                }
                tantivy::TantivyError::LockFailure(..) => {
                    SearchError::Busy(dir.display().to_string())
                }
                other => opening(other).into_error(),
            })?;
        writer.set_merge_policy(merge_policy());
        let writer = Mutex::new(Some(writer));
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(opening)?;
        let io = |e: std::io::Error| SearchError::Index(e.to_string());
        let id_path = dir.join(ID_FILE);
        let format_path = dir.join(FORMAT_FILE);
        let stale = std::fs::read_to_string(&format_path)
            .map(|f| f.trim() != FORMAT)
            .unwrap_or(true);
        let kept_id = std::fs::read_to_string(&id_path)
            .ok()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty());
        let id = match kept_id {
            Some(id) if !stale => id,
            kept => {
                if kept.is_some() {
                    tracing::warn!(
                        dir = %dir.display(),
                        "the search index was built by another version; rebuilding it from the event log"
                    );
                }
                let mut slot = writer.lock().unwrap_or_else(|p| p.into_inner());
                let writer = slot.as_mut().expect("a writer was just opened");
                writer.delete_all_documents().map_err(index_err)?;
                writer.commit().map_err(index_err)?;
                reader.reload().map_err(index_err)?;
                let id = warden_core::id::new_id("idx");
                std::fs::write(&id_path, &id).map_err(io)?;
                std::fs::write(&format_path, FORMAT).map_err(io)?;
                id
            }
        };
        // An index with no segment holds nothing of the log (its
        // `meta.json` was lost, say): position 0, whatever the stored
        // cursor says. One with segments but no saved position predates it.
        let metas = index.load_metas().map_err(opening)?;
        let position = match metas.payload.and_then(|p| p.parse().ok()) {
            Some(p) => p,
            None if metas.segments.is_empty() => 0,
            None => -1,
        };
        Ok(EventIndex {
            fields,
            index,
            reader,
            writer,
            writer_threads,
            // A search walks its segments on every core: one analyst's
            // query over millions of events answers in a fraction of the
            // time.
            position: std::sync::atomic::AtomicI64::new(position),
            search_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .clamp(1, 4),
            id,
            dir: dir.to_path_buf(),
        })
    }

    /// This index's name, unique per data directory: its consumer cursor
    /// in the store is `index:<id>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Names this index anew, so that its position in the log starts
    /// over under a name no other copy of this directory shares: for a
    /// rebuild, which may run on a copied or restored data directory.
    pub fn rename(&mut self) -> Result<(), SearchError> {
        let id = warden_core::id::new_id("idx");
        std::fs::write(self.dir.join(ID_FILE), &id)
            .map_err(|e| SearchError::Index(e.to_string()))?;
        self.id = id;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<IndexWriter>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `work` on the writer; an error while there is none (a failed
    /// rollback), which sends the indexer back to `rollback`.
    fn with_writer<T>(
        &self,
        work: impl FnOnce(&mut IndexWriter) -> tantivy::Result<T>,
    ) -> Result<T, SearchError> {
        let mut slot = self.slot();
        let writer = slot
            .as_mut()
            .ok_or_else(|| SearchError::Index("the index writer is being restarted".into()))?;
        work(writer).map_err(index_err)
    }

    /// Adds a logged event; visible to searches after the next commit.
    pub fn add(
        &self,
        seq: u64,
        org_id: &str,
        environment: &str,
        event: &Event,
        json: &str,
    ) -> Result<(), SearchError> {
        self.add_batch(std::iter::once(Logged {
            seq,
            org_id,
            environment,
            event,
            json,
        }))
    }

    /// Adds logged events in one hand-over to the writer's thread, which
    /// a document at a time would wake once per event.
    pub fn add_batch<'a>(
        &self,
        events: impl IntoIterator<Item = Logged<'a>>,
    ) -> Result<(), SearchError> {
        let adds: Vec<UserOperation> = events
            .into_iter()
            .map(|e| {
                UserOperation::Add(document(
                    &self.fields,
                    e.seq,
                    e.org_id,
                    e.environment,
                    e.event,
                    e.json,
                ))
            })
            .collect();
        if !adds.is_empty() {
            self.with_writer(|writer| writer.run(adds))?;
        }
        Ok(())
    }

    /// Makes everything added so far durable and searchable.
    pub fn commit(&self) -> Result<(), SearchError> {
        let position = self.position.load(std::sync::atomic::Ordering::Relaxed);
        // A commit starts the writer's next indexing threads from here.
        at_indexing_priority(|| {
            self.with_writer(|writer| {
                let mut prepared = writer.prepare_commit()?;
                if position >= 0 {
                    prepared.set_payload(&position.to_string());
                }
                prepared.commit()
            })
        })?;
        self.reader.reload().map_err(index_err)
    }

    /// Commits everything added, which holds the log up to `position`.
    pub fn commit_at(&self, position: i64) -> Result<(), SearchError> {
        self.position
            .store(position, std::sync::atomic::Ordering::Relaxed);
        self.commit()
    }

    /// The log position the index's last commit holds everything up to,
    /// if it saved one. An index copied from elsewhere, or restored from
    /// an older snapshot, says here how far it really got.
    pub fn committed_position(&self) -> Option<i64> {
        let p = self.position.load(std::sync::atomic::Ordering::Relaxed);
        (p >= 0).then_some(p)
    }

    /// Drops everything added since the last commit and restarts the
    /// writer's threads: after a failed commit or add, the writer may have
    /// lost documents it had accepted.
    /// When the writer cannot be restarted (no file can be opened, say),
    /// it is dropped and a later call opens a new one.
    pub fn rollback(&self) -> Result<(), SearchError> {
        let mut guard = self.slot();
        let slot: &mut Option<IndexWriter> = &mut guard;
        at_indexing_priority(|| match slot.as_mut() {
            Some(writer) => writer.rollback().map(|_| ()).map_err(|err| {
                // tantivy gave the directory lock to the writer it failed
                // to build, and dropped both: this one can never commit.
                *slot = None;
                index_err(err)
            }),
            None => {
                let writer = self
                    .index
                    .writer_with_num_threads(self.writer_threads, WRITER_MEMORY)
                    .map_err(index_err)?;
                writer.set_merge_policy(merge_policy());
                *slot = Some(writer);
                Ok(())
            }
        })
    }

    /// Removes events after `seq`: those committed to the index after its
    /// cursor was last saved, which the log will deliver again.
    pub fn forget_after(&self, seq: u64) -> Result<(), SearchError> {
        let query = RangeQuery::new(
            Bound::Excluded(Term::from_field_u64(self.fields.seq, seq)),
            Bound::Unbounded,
        );
        self.with_writer(|writer| writer.delete_query(Box::new(query)))?;
        self.commit_at(seq as i64)
    }

    /// Removes an organization's events whose time is before `before`
    /// (those at log positions up to `through`, when given).
    pub fn expire(
        &self,
        org_id: &str,
        before: i64,
        through: Option<u64>,
    ) -> Result<(), SearchError> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.org, org_id),
                    IndexRecordOption::Basic,
                )),
            ),
            (
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Unbounded,
                    Bound::Excluded(Term::from_field_i64(self.fields.timestamp, before)),
                )),
            ),
        ];
        // Only events the log held up to `through`: one appended since
        // (an old event sent after the retention was lifted) stays.
        if let Some(through) = through {
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Unbounded,
                    Bound::Included(Term::from_field_u64(self.fields.seq, through)),
                )),
            ));
        }
        let query = BooleanQuery::new(clauses);
        self.with_writer(|writer| writer.delete_query(Box::new(query)))?;
        self.commit()
    }

    /// Stops the writer and waits for its merge threads, which would
    /// otherwise go on writing into the directory for a moment.
    pub fn close(self) -> Result<(), SearchError> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        match writer {
            Some(writer) => writer.wait_merging_threads().map_err(index_err),
            None => Ok(()),
        }
    }

    /// The id of the event the index holds at log position `seq`, if
    /// any: whether the index was built from the log it now follows.
    pub fn id_at(&self, seq: u64) -> Result<Option<String>, SearchError> {
        let searcher = self.reader.searcher();
        let at = Term::from_field_u64(self.fields.seq, seq);
        let query = RangeQuery::new(Bound::Included(at.clone()), Bound::Included(at));
        let found = searcher
            .search(&query, &tantivy::collector::DocSetCollector)
            .map_err(index_err)?;
        let Some(address) = found.into_iter().next() else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher
            .doc(address)
            .map_err(|e| SearchError::Damaged(e.to_string()))?;
        Ok(doc
            .get_first(self.fields.source)
            .and_then(|v| v.as_bytes())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_string)))
    }

    /// Events in the index (all tenants); for status and tests.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn search(&self, request: &SearchRequest) -> Result<SearchResult, SearchError> {
        let stop = crate::run::Stop::new(&request.abandoned, request.time_limit);
        self.search_until(request, stop)
    }

    /// The search, stopped midway by `stop`.
    fn search_until(
        &self,
        request: &SearchRequest,
        stop: crate::run::Stop,
    ) -> Result<SearchResult, SearchError> {
        crate::translate::refuse_mixed_comparisons(&request.query)?;
        let user = Translator::new(&self.fields, request.now)
            .stopping(stop.clone())
            .translate(&request.query)?;
        let mut clauses = vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(
                        self.fields.tenant,
                        &tenant_term(&request.org_id, &request.environment),
                    ),
                    IndexRecordOption::Basic,
                )) as Box<dyn Query>,
            ),
            (
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_i64(
                        self.fields.timestamp,
                        request.from.max(request.not_before.unwrap_or(i64::MIN)),
                    )),
                    Bound::Excluded(Term::from_field_i64(self.fields.timestamp, request.to)),
                )),
            ),
            (Occur::Must, user),
        ];
        if let Some(agent) = &request.agent_id {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.kv, &kv_term("agent_id", agent)),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        let query = BooleanQuery::new(clauses);
        // No interval: no histogram.
        let (first, interval, count) = if request.interval <= 0 {
            (request.from, 0, 0)
        } else {
            let interval = request.interval;
            let first = request.from.div_euclid(interval) * interval;
            let count = crate::interval::bars(request.from, request.to, interval).max(0) as usize;
            (first, interval, count)
        };
        let collector = EventCollector {
            limit: request.limit,
            order: request.order,
            after: request.after,
            buckets: Buckets {
                from: first,
                interval,
                count,
            },
        };
        let searcher = self.reader.searcher();
        let collected =
            crate::run::collect(&searcher, &query, &collector, self.search_threads, &stop)?;
        let mut events = Vec::with_capacity(collected.page.len());
        let (mut bytes, mut cut_short) = (0, false);
        for (position, address) in collected.page {
            if bytes >= request.max_page_bytes && !events.is_empty() {
                cut_short = true;
                break;
            }
            // A stored event that cannot be read back is damage on disk
            // (the doc store's blocks are read only here, not at opening).
            let doc: TantivyDocument = searcher
                .doc(address)
                .map_err(|e| SearchError::Damaged(e.to_string()))?;
            let json = doc
                .get_first(self.fields.source)
                .and_then(|v| v.as_bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            bytes += json.len();
            events.push((position, json));
        }
        let histogram = collected
            .histogram
            .into_iter()
            .enumerate()
            .map(|(i, counts)| (first + i as i64 * interval, counts))
            .collect();
        Ok(SearchResult {
            total: collected.total,
            histogram,
            events,
            cut_short,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{Order, Position};
    use warden_core::event::{EventSource, Severity};

    const SEVERITIES: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// Event `seq` at `timestamp`: `event {seq}` from `sshd` or `cron`.
    fn event_at(seq: u64, timestamp: i64) -> Event {
        Event {
            id: format!("evt_{seq}"),
            timestamp,
            received_at: timestamp,
            source: EventSource::Api,
            host: None,
            program: Some(
                if seq.is_multiple_of(3) {
                    "sshd"
                } else {
                    "cron"
                }
                .into(),
            ),
            severity: SEVERITIES[(seq % 5) as usize],
            message: format!("event {seq}"),
            agent_id: None,
            session_id: None,
            tags: Vec::new(),
            fields: Default::default(),
        }
    }

    /// 3,000 events over five segments, their times out of order and often
    /// equal, so that pages cross segments, ties and the collector's pruning.
    fn filled(dir: &Path) -> (EventIndex, Vec<Position>) {
        let index = EventIndex::open(dir, 2).unwrap();
        let mut positions = Vec::new();
        for seq in 1..=3_000u64 {
            let timestamp = 1_000_000 + ((seq * 7_919) % 97) as i64 * 1_000;
            let event = event_at(seq, timestamp);
            index
                .add(seq, "org_a", "live", &event, &event.to_json())
                .unwrap();
            positions.push(Position { timestamp, seq });
            if seq % 600 == 0 {
                index.commit().unwrap();
            }
        }
        (index, positions)
    }

    fn request(query: &str, order: Order, limit: usize, after: Option<Position>) -> SearchRequest {
        SearchRequest {
            org_id: "org_a".into(),
            environment: "live".into(),
            query: warden_query::parse(query).unwrap(),
            agent_id: None,
            from: 0,
            to: 2_000_000,
            not_before: None,
            limit,
            max_page_bytes: usize::MAX,
            order,
            after,
            interval: 10_000,
            now: 0,
            abandoned: Default::default(),
            time_limit: None,
        }
    }

    #[test]
    fn pages_visit_every_match_once_in_order_with_exact_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (index, positions) = filled(dir.path());
        for (query, keep) in [
            ("", (|_: u64| true) as fn(u64) -> bool),
            ("program:sshd", |seq| seq % 3 == 0),
        ] {
            let mut expected: Vec<Position> =
                positions.iter().copied().filter(|p| keep(p.seq)).collect();
            expected.sort_by_key(|p| std::cmp::Reverse((p.timestamp, p.seq)));
            for order in [Order::NewestFirst, Order::OldestFirst] {
                let mut want = expected.clone();
                if order == Order::OldestFirst {
                    want.reverse();
                }
                for limit in [1, 7, 250] {
                    let (mut seen, mut after) = (Vec::<Position>::new(), None);
                    loop {
                        let result = index.search(&request(query, order, limit, after)).unwrap();
                        assert_eq!(result.total, want.len() as u64, "{query}");
                        let counted: u64 = result
                            .histogram
                            .iter()
                            .map(|(_, b)| b.iter().sum::<u64>())
                            .sum();
                        assert_eq!(counted, result.total, "histogram sums to the total");
                        let page: Vec<Position> = result.events.iter().map(|(p, _)| *p).collect();
                        assert!(page.len() <= limit);
                        seen.extend(&page);
                        match page.last() {
                            Some(last) if page.len() == limit => after = Some(*last),
                            _ => break,
                        }
                    }
                    assert_eq!(seen, want, "{query} {order:?} limit {limit}");
                }
            }
        }
    }

    /// A wildcard term that spans words (`size=5*`) is sought as its words
    /// in a row, the wildcard matching the last; a wildcard before the
    /// last word is refused, naming the term; a last word matching more
    /// words than the bound is refused at the term, not answered short.
    #[test]
    fn wildcard_terms_spanning_words() {
        let dir = tempfile::tempdir().unwrap();
        let index = EventIndex::open(dir.path(), 1).unwrap();
        let messages = [
            "upload size=5120 from 'Invoice-2026.pdf'",
            "upload size=6400 then 5 more",
            "exe=/usr/bin/python3.11 pid=42 #12 mailto <alice.smith@example.com>",
            "size 5 is not size=5",
        ];
        let add = |seq: u64, message: String| {
            let event = Event {
                id: format!("evt_{seq}"),
                message,
                program: None,
                severity: Severity::Info,
                ..event_at(seq, 1_000_000)
            };
            index
                .add(seq, "org_a", "live", &event, &event.to_json())
                .unwrap();
        };
        for (i, message) in messages.iter().enumerate() {
            add(i as u64 + 1, message.to_string());
        }
        index.commit().unwrap();
        let total = |query: &str| {
            index
                .search(&request(query, Order::NewestFirst, 10, None))
                .map(|r| r.total)
        };
        for (query, want) in [
            ("size=5*", 2),
            ("size=51*", 1),
            ("size=6*", 1),
            ("size=5", 1),
            ("'Invoic*", 1),
            ("from 'invoice-20*", 1),
            ("exe=/usr/bin/python3*", 1),
            ("exe=bin/py*", 1),
            ("pid=4?", 1),
            ("#1*", 1),
            ("alice.smith@example.com>*", 0),
            ("mailto>alice.smith@ex*", 1),
            ("alice.smith@ex*", 1),
            ("size=*", 3),
        ] {
            let found = index
                .search(&request(query, Order::NewestFirst, 10, None))
                .unwrap();
            let ids: Vec<u64> = found.events.iter().map(|(p, _)| p.seq).collect();
            assert_eq!(found.total, want, "{query}: {ids:?}");
        }
        match total("siz*=5") {
            Err(SearchError::Query { position, message }) => {
                assert_eq!(position, 1);
                assert!(message.contains("within one word"), "{message}");
            }
            other => panic!("siz*=5: {other:?}"),
        }
        // Terms whose last word starts with a wildcard read every word:
        // four in a query at most, as terms of several pieces.
        assert_eq!(total("a=*1 OR b=*2 OR c=*3 OR d=*4").unwrap(), 0);
        match total("a=*1 OR b=*2 OR c=*3 OR d=*4 OR e=*5") {
            Err(SearchError::Query { position, message }) => {
                assert_eq!(position, 33);
                assert!(message.contains("read every word"), "{message}");
            }
            other => panic!("five: {other:?}"),
        }
        // More words than the bound after `size`: refused at the term.
        // Exactly the bound is taken.
        let words: Vec<String> = (0..crate::translate::MAX_WILDCARD_WORDS)
            .map(|i| format!("x{i}"))
            .collect();
        add(6, format!("size {}", words.join(" ")));
        index.commit().unwrap();
        assert_eq!(total("size=x*").unwrap(), 1);
        let words: Vec<String> = (0..crate::translate::MAX_WILDCARD_WORDS + 10)
            .map(|i| format!("w{i}"))
            .collect();
        add(5, format!("size {}", words.join(" ")));
        index.commit().unwrap();
        match total("size=w*") {
            Err(SearchError::Query { position, message }) => {
                assert_eq!(position, 1);
                assert!(
                    message.contains("more than 16384 distinct words"),
                    "{message}"
                );
            }
            other => panic!("size=w*: {other:?}"),
        }
        assert_eq!(total("size=5*").unwrap(), 2);
    }

    /// Cuts every file of `suffix` in `dir` to half, or to `to` bytes.
    fn truncate(dir: &Path, suffix: &str, to: Option<u64>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().ends_with(suffix) {
                let len = std::fs::metadata(&path).unwrap().len();
                let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                file.set_len(to.unwrap_or(len / 2)).unwrap();
            }
        }
    }

    #[test]
    fn a_damaged_index_is_set_aside_and_started_anew() {
        // A segment file cut to five bytes makes tantivy assert.
        for (damage, to) in [(".idx", None), (".idx", Some(5)), ("meta.json", None)] {
            let data = tempfile::tempdir().unwrap();
            let dir = data.path().join("index");
            let (index, _) = filled(&dir);
            index.commit_at(3_000).unwrap();
            let first_id = index.id().to_string();
            index.close().unwrap();
            truncate(&dir, damage, to);
            let index = EventIndex::open(&dir, 1).unwrap();
            assert_eq!(index.len(), 0, "{damage}");
            // A new name, so its position in the log starts at the beginning.
            assert_ne!(index.id(), first_id, "{damage}");
            assert_eq!(index.committed_position(), Some(0), "{damage}");
            let kept: Vec<String> = std::fs::read_dir(data.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("index.damaged-"))
                .collect();
            // Once, or again if the failed open's threads wrote into the
            // new start before they ended.
            assert!(
                !kept.is_empty(),
                "{damage}: the damaged files are kept aside: {kept:?}"
            );
        }
    }

    #[test]
    fn an_index_without_a_commit_holds_nothing_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = filled(dir.path());
        index.commit_at(3_000).unwrap();
        let id = index.id().to_string();
        // Closed, not dropped: a merge still running would write the
        // index's meta.json again after it is removed.
        index.close().unwrap();
        std::fs::remove_file(dir.path().join("meta.json")).unwrap();
        let index = EventIndex::open(dir.path(), 1).unwrap();
        assert_eq!((index.id(), index.len()), (id.as_str(), 0));
        assert_eq!(index.committed_position(), Some(0));
    }

    #[test]
    fn an_index_of_another_format_is_emptied_under_a_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = filled(dir.path());
        let first_id = index.id().to_string();
        assert_eq!(index.len(), 3_000);
        drop(index);
        // Reopened as it is: the same index, the same id.
        let index = EventIndex::open(dir.path(), 1).unwrap();
        assert_eq!((index.id(), index.len()), (first_id.as_str(), 3_000));
        drop(index);
        // Built by an older version (format 1 had no format file): it
        // starts empty under a new id, so its cursor starts over and the
        // indexer builds it again from the log.
        std::fs::remove_file(dir.path().join(FORMAT_FILE)).unwrap();
        let index = EventIndex::open(dir.path(), 1).unwrap();
        assert_eq!(index.len(), 0);
        assert_ne!(index.id(), first_id);
        let rebuilt_id = index.id().to_string();
        drop(index);
        let index = EventIndex::open(dir.path(), 1).unwrap();
        assert_eq!(index.id(), rebuilt_id, "rebuilt once, not at every start");
    }

    #[test]
    fn the_histogram_breaks_down_by_severity() {
        let dir = tempfile::tempdir().unwrap();
        let (index, positions) = filled(dir.path());
        let result = index
            .search(&request("", Order::NewestFirst, 0, None))
            .unwrap();
        assert!(result.events.is_empty());
        let mut by_rank = [0u64; 5];
        for (_, counts) in &result.histogram {
            for (rank, n) in counts.iter().enumerate() {
                by_rank[rank] += n;
            }
        }
        // One severity in five of the events each.
        assert_eq!(by_rank, [600; 5]);
        assert_eq!(result.total, positions.len() as u64);
    }

    #[test]
    fn a_writer_that_cannot_restart_is_replaced_later() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = filled(dir.path());
        index.commit().unwrap();
        let event = |seq: u64| Event {
            id: format!("evt_late_{seq}"),
            timestamp: 1_000_000,
            received_at: 1_000_000,
            source: EventSource::Api,
            host: None,
            program: Some("late".into()),
            severity: Severity::Info,
            message: format!("late {seq}"),
            agent_id: None,
            session_id: None,
            tags: Vec::new(),
            fields: Default::default(),
        };
        let late = event(3_001);
        index
            .add(3_001, "org_a", "live", &late, &late.to_json())
            .unwrap();
        // The writer's metadata cannot be read (as when no file can be
        // opened): restarting it fails, twice, without a panic.
        let meta = dir.path().join("meta.json");
        let kept = dir.path().join("meta.json.kept");
        std::fs::rename(&meta, &kept).unwrap();
        std::fs::create_dir(&meta).unwrap();
        assert!(index.rollback().is_err());
        assert!(index.rollback().is_err());
        assert!(index
            .add(3_001, "org_a", "live", &late, &late.to_json())
            .is_err());
        // Readable again: a new writer, from the last commit.
        std::fs::remove_dir(&meta).unwrap();
        std::fs::rename(&kept, &meta).unwrap();
        index.rollback().unwrap();
        let again = event(3_002);
        index
            .add(3_002, "org_a", "live", &again, &again.to_json())
            .unwrap();
        index.commit().unwrap();
        let found = index
            .search(&request("program:late", Order::NewestFirst, 10, None))
            .unwrap();
        assert_eq!(
            found.total, 1,
            "the rolled-back event is gone, the new one is in"
        );
        assert_eq!(index.len(), 3_001);
    }

    #[test]
    fn a_search_past_its_time_limit_stops_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = filled(dir.path());
        let mut spent = request("*ven*", Order::NewestFirst, 10, None);
        spent.time_limit = Some(std::time::Duration::ZERO);
        assert!(matches!(
            index.search(&spent),
            Err(SearchError::TimedOut { seconds: 0 })
        ));
        let mut ample = request("*ven*", Order::NewestFirst, 10, None);
        ample.time_limit = Some(std::time::Duration::from_secs(3600));
        assert_eq!(index.search(&ample).unwrap().total, 3_000);
    }

    #[test]
    fn a_search_stopped_within_a_walk_of_words_is_not_answered() {
        let dir = tempfile::tempdir().unwrap();
        let index = EventIndex::open(dir.path(), 1).unwrap();
        // One segment of 5,000 distinct words.
        for seq in 1..=5_000u64 {
            let mut event = event_at(seq, 1_000_000);
            event.message = format!("w{seq:05}x");
            index
                .add(seq, "org_a", "live", &event, &event.to_json())
                .unwrap();
        }
        index.commit().unwrap();
        let walk = request("*x", Order::NewestFirst, 10, None);
        assert_eq!(index.search(&walk).unwrap().total, 5_000);
        // The limit is found spent at the second look at the clock: the
        // first is before the segment, the second within its words.
        assert!(matches!(
            index.search_until(&walk, crate::run::Stop::after_looks(2)),
            Err(SearchError::TimedOut { .. })
        ));
    }

    #[test]
    fn an_abandoned_search_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = filled(dir.path());
        let abandoned = request("", Order::NewestFirst, 10, None);
        abandoned.abandoned.set();
        assert!(matches!(
            index.search(&abandoned),
            Err(SearchError::Abandoned)
        ));
        // A guard dropped before its search finishes sets the flag.
        let mut dropped = request("", Order::NewestFirst, 10, None);
        drop(crate::run::Guard::new(&dropped.abandoned));
        assert!(index.search(&dropped).is_err());
        dropped.abandoned = Default::default();
        let finished = crate::run::Guard::new(&dropped.abandoned);
        finished.finish();
        assert_eq!(index.search(&dropped).unwrap().total, 3_000);
    }
}
