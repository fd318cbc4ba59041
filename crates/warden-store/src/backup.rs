//! A consistent copy of a SQLite store, taken while its server runs.
//!
//! Copying `warden.db` and its WAL by hand while a server writes can catch
//! a checkpoint between the two files; SQLite's own copy (`VACUUM INTO`)
//! reads one moment of the store inside a read transaction, so the copy is
//! whole, compacted, and holds no WAL of its own. `warden restore` takes it
//! back.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::{StoreError, StoreResult};

/// What a backup wrote.
#[derive(Debug)]
pub struct BackedUp {
    /// Bytes of the copy.
    pub bytes: u64,
    /// Audit records in the copy (every organization's).
    pub audit_records: u64,
    /// Events in the copy (every organization's).
    pub events: u64,
}

/// Writes a consistent copy of `data_dir/warden.db` to `to`, a file that
/// must not exist yet (a backup never overwrites one). The copy is written
/// under a temporary name beside it, readable by its owner alone, synced,
/// read back, and only then given its name (a hard link, which never
/// replaces a file): a backup stopped midway leaves no file by that name.
/// A copy that fails is removed.
pub fn backup_sqlite(data_dir: &Path, to: &Path) -> StoreResult<BackedUp> {
    // Absolute: SQLite reads a relative name beginning `file:` as a URI.
    let store = std::path::absolute(data_dir.join("warden.db"))
        .map_err(|e| StoreError::Rejected(format!("{}: {e}", data_dir.display())))?;
    if !store.is_file() {
        return Err(StoreError::Rejected(format!(
            "{} holds no Warden store (no warden.db)",
            data_dir.display()
        )));
    }
    let source = Connection::open_with_flags(
        &store,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Rejected(format!("{} cannot be opened: {e}", store.display())))?;
    // A server's commit holds the write lock for milliseconds; a copy's
    // read never waits for it in WAL mode, but the first look at a store
    // being checkpointed can.
    source
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(crate::sqlite::map_err)?;
    let migrations: rusqlite::Result<i64> =
        source.query_row("SELECT COUNT(*) FROM schema_migrations", [], |row| {
            row.get(0)
        });
    match migrations {
        Ok(n) if n > 0 => {}
        Err(e) if damaged(&e) => return Err(damaged_store(&store, &e)),
        Err(e) if !e.to_string().contains("no such table") => {
            return Err(StoreError::Unavailable(format!(
                "cannot read {}: {e}",
                store.display()
            )))
        }
        _ => {
            return Err(StoreError::Rejected(format!(
                "{} is not a Warden store (it records no Warden schema)",
                store.display()
            )))
        }
    }
    let to = outside(data_dir, to)?;
    if std::fs::symlink_metadata(&to).is_ok() {
        return Err(exists(&to));
    }
    let partial = partial_name(&to);
    reserve(&partial)?;
    let written = copy_into(&source, &store, &partial).and_then(|backed_up| {
        // Linked, so that a name taken meanwhile is not replaced. Where
        // the filesystem has no hard links (FAT, some network shares),
        // copied into a file made new, which is no more replacing.
        match std::fs::hard_link(&partial, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists(&to)),
            Err(_) => copy_new(&partial, &to)?,
        }
        sync_dir(&to);
        Ok(backed_up)
    });
    let _ = std::fs::remove_file(&partial);
    let _ = std::fs::remove_file(format!("{}-journal", partial.display()));
    written
}

/// Where a backup is written before it is complete: beside its name (on
/// its filesystem), hidden, and this run's own (a process id alone
/// repeats: a container's first process is always 1).
fn partial_name(to: &Path) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    to.with_file_name(format!(
        ".warden-backup.{}-{nanos:09}.partial",
        std::process::id()
    ))
}

/// Copies `from` into `to`, made new (refused if it exists meanwhile),
/// private, and synced; a copy that fails is removed.
fn copy_new(from: &Path, to: &Path) -> StoreResult<()> {
    let fail = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            exists(to)
        } else {
            StoreError::Unavailable(format!("cannot write {}: {e}", to.display()))
        }
    };
    let mut target = new_private_file(to).map_err(fail)?;
    let copied = std::fs::File::open(from)
        .and_then(|mut source| std::io::copy(&mut source, &mut target))
        .and_then(|_| target.sync_all());
    if let Err(e) = copied {
        let _ = std::fs::remove_file(to);
        return Err(fail(e));
    }
    Ok(())
}

fn exists(to: &Path) -> StoreError {
    StoreError::Rejected(format!(
        "{} exists: a backup is written to a new file, never over one",
        to.display()
    ))
}

/// SQLite's word for a file it cannot read as a database, or one whose
/// pages do not hold together.
fn damaged(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

fn damaged_store(store: &Path, e: &rusqlite::Error) -> StoreError {
    StoreError::Rejected(format!(
        "{} cannot be copied: it is not a SQLite database or is damaged ({e}); restore it \
         from an earlier backup (docs/operations.md, \"Backup and restore\")",
        store.display()
    ))
}

fn sync_dir(file: &Path) {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
}

/// The backup's path made absolute, outside the data directory: a copy
/// inside it would go with the directory it is meant to outlive (and a
/// restore clears names of its own there). Absolute, SQLite never reads
/// it as a `file:` URI; in UTF-8, it is the path SQLite is given.
fn outside(data_dir: &Path, to: &Path) -> StoreResult<std::path::PathBuf> {
    let shown = to.display();
    let name = to
        .file_name()
        .ok_or_else(|| StoreError::Rejected(format!("{shown} names no file")))?;
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().map_err(|e| {
        StoreError::Rejected(format!("cannot write {shown}: {}: {e}", parent.display()))
    })?;
    let data_dir = data_dir
        .canonicalize()
        .map_err(|e| StoreError::Rejected(format!("cannot read {}: {e}", data_dir.display())))?;
    if parent.starts_with(&data_dir) {
        return Err(StoreError::Rejected(format!(
            "{shown} is inside the data directory {}: keep a backup outside it",
            data_dir.display()
        )));
    }
    let path = parent.join(name);
    if path.to_str().is_none() {
        return Err(StoreError::Rejected(format!(
            "{shown} is not valid UTF-8: name the backup in UTF-8"
        )));
    }
    Ok(path)
}

/// Creates the file a copy is written into, empty and private, so that no
/// other user can read the copy at any moment (SQLite writes into an empty
/// file it is given).
fn reserve(to: &Path) -> StoreResult<()> {
    new_private_file(to)
        .map(drop)
        .map_err(|e| StoreError::Rejected(format!("cannot create {}: {e}", to.display())))
}

/// A file made new (refused if the name is taken), its owner's alone.
fn new_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn copy_into(source: &Connection, store: &Path, to: &Path) -> StoreResult<BackedUp> {
    let fail = |e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!("cannot write {}: {e}", to.display()))
    };
    let path = to.to_str().ok_or_else(|| fail(&"not valid UTF-8"))?;
    source.execute("VACUUM INTO ?1", [path]).map_err(|e| {
        if damaged(&e) {
            damaged_store(store, &e)
        } else {
            fail(&e)
        }
    })?;
    let file = std::fs::File::open(to).map_err(|e| fail(&e))?;
    file.sync_all().map_err(|e| fail(&e))?;
    let bytes = file.metadata().map_err(|e| fail(&e))?.len();
    drop(file);
    // Read back from the file written, not the store: what the report
    // counts is what a restore will find.
    let copy = Connection::open_with_flags(
        to,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| fail(&e))?;
    let count = |table: &str| -> StoreResult<u64> {
        copy.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
            row.get::<_, i64>(0)
        })
        .map(|n| n.max(0) as u64)
        .map_err(|e| StoreError::Unavailable(format!("cannot read back {}: {e}", to.display())))
    };
    Ok(BackedUp {
        bytes,
        audit_records: count("audit_log")?,
        events: count("events")?,
    })
}
