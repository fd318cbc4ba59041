//! Putting a copy of a SQLite store in place of a data directory's own.
//!
//! Copying the file by hand leaves the replaced store's `warden.db-wal`
//! beside it (a server stopped by `kill -9` or a power cut keeps one), and
//! SQLite replays a WAL onto whatever file it finds: the copy comes back
//! with the newer state's pages mixed in, malformed or silently not
//! restored at all. A restore therefore checks the copy, writes it whole
//! under another name, removes the WAL and its index, and only then
//! renames the copy into place.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::{StoreError, StoreResult};

/// What a restore put in place.
#[derive(Debug)]
pub struct Restored {
    /// Bytes of the store now in place.
    pub bytes: u64,
    /// Whether a WAL of the replaced store was removed.
    pub removed_wal: bool,
}

/// Replaces `data_dir/warden.db` with a consistent copy of `copy` (read
/// through SQLite, so a copy with its own WAL beside it counts whole).
/// Nothing in the data directory changes unless the copy reads as a whole
/// Warden store and holds each of `settings` as given where it holds the
/// setting at all (the master key's check value: a copy set up under
/// another key would not start). The caller makes sure no server runs on
/// the directory.
pub fn restore_sqlite(
    data_dir: &Path,
    copy: &Path,
    settings: &[(&str, &str)],
) -> StoreResult<Restored> {
    // What a restore stopped midway (a kill, a full disk) left is removed
    // first, and what this one leaves when it fails, so that a refusal
    // means the directory is as it was.
    if data_dir.is_dir() {
        remove_leftovers(data_dir)?;
    }
    let restored = restore_into(data_dir, copy, settings);
    if restored.is_err() && data_dir.is_dir() {
        let _ = remove_leftovers(data_dir);
    }
    restored
}

/// The files a restore writes beside the store before its rename.
const LEFTOVERS: &[&str] = &[
    "warden.db.restoring",
    "warden.db.restoring-journal",
    "warden.db.restoring-wal",
    "warden.db.restoring-shm",
    "warden.db.restoring-source",
    "warden.db.restoring-source-wal",
    "warden.db.restoring-source-shm",
    "warden.db.restoring-source-journal",
];

fn remove_leftovers(data_dir: &Path) -> StoreResult<()> {
    for name in LEFTOVERS {
        remove_if_present(&data_dir.join(name))?;
    }
    Ok(())
}

fn restore_into(data_dir: &Path, copy: &Path, settings: &[(&str, &str)]) -> StoreResult<Restored> {
    let target = data_dir.join("warden.db");
    let shown = copy.display();
    if !copy.is_file() {
        return Err(StoreError::Rejected(format!("{shown} is not a file")));
    }
    if let (Ok(a), Ok(b)) = (copy.canonicalize(), target.canonicalize()) {
        if a == b {
            return Err(StoreError::Rejected(format!(
                "{shown} is the data directory's own store; restore from a copy"
            )));
        }
    }
    crate::create_private_dir(data_dir)?;
    // A copy with a WAL beside it is read from a copy of both in the data
    // directory: SQLite reads a WAL only where it may write its index
    // (`-shm`), which a read-only mount does not allow.
    let staged = Staged::new(data_dir, copy)?;
    let source = open_copy(staged.path().unwrap_or(copy), shown.to_string())?;
    let check: String = source
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|e| StoreError::Rejected(format!("{shown} cannot be read: {e}")))?;
    if check != "ok" {
        let (first, more) = crate::sqlite::first_finding(&check);
        return Err(StoreError::Rejected(format!(
            "{shown} is damaged: SQLite's check says {first}{}",
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        )));
    }
    let migrations: rusqlite::Result<i64> =
        source.query_row("SELECT COUNT(*) FROM schema_migrations", [], |row| {
            row.get(0)
        });
    if !matches!(migrations, Ok(n) if n > 0) {
        return Err(StoreError::Rejected(format!(
            "{shown} is not a Warden store (it records no Warden schema)"
        )));
    }

    // Absolute: SQLite reads a relative name beginning `file:` as a URI.
    let incoming = std::path::absolute(data_dir.join("warden.db.restoring"))
        .map_err(|e| StoreError::Rejected(format!("{}: {e}", data_dir.display())))?;
    remove_if_present(&incoming)?;
    let fail = |e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!("cannot write {}: {e}", incoming.display()))
    };
    source
        .execute("VACUUM INTO ?1", [incoming.display().to_string()])
        .map_err(|e| fail(&e))?;
    drop(source);
    drop(staged);
    let file = std::fs::File::open(&incoming).map_err(|e| fail(&e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fail(&e))?;
    }
    drop(file);
    // Brought up to this binary's schema and held to it: a copy from a
    // newer Warden, or one that lacks a table (a made-up schema record, a
    // table dropped), is refused before the store it would replace goes.
    if let Err(err) = whole_store(&incoming, settings) {
        let _ = std::fs::remove_file(&incoming);
        return Err(match err {
            StoreError::Rejected(why) => StoreError::Rejected(format!("{shown}: {why}")),
            other => {
                StoreError::Rejected(format!("{shown} cannot be brought to this schema: {other}"))
            }
        });
    }
    let file = std::fs::File::open(&incoming).map_err(|e| fail(&e))?;
    file.sync_all().map_err(|e| fail(&e))?;
    let bytes = file.metadata().map_err(|e| fail(&e))?.len();
    drop(file);

    // The replaced store's WAL and its index go first: a crash between
    // here and the rename leaves the old file without them, as a clean
    // stop does, never the copy with a WAL that is not its own.
    let removed_wal = remove_if_present(&data_dir.join("warden.db-wal"))?;
    remove_if_present(&data_dir.join("warden.db-shm"))?;
    remove_if_present(&crate::sqlite::damage_marker(&target))?;
    std::fs::rename(&incoming, &target).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot move the copy into {}: {e}",
            target.display()
        ))
    })?;
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(Restored { bytes, removed_wal })
}

/// Opens a copy to read. Without a WAL beside it, SQLite is told the file
/// cannot change (`immutable`), so that a copy on a read-only mount opens
/// and nothing (no `-shm`) is made beside it; with one, it is opened as a
/// database, so that what the WAL holds counts.
fn open_copy(copy: &Path, shown: String) -> StoreResult<Connection> {
    let wal = Path::new(&format!("{}-wal", copy.display())).exists();
    let opened = if wal {
        Connection::open_with_flags(
            copy,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    } else {
        let path = copy
            .canonicalize()
            .map_err(|e| StoreError::Rejected(format!("{shown} cannot be opened: {e}")))?;
        let escaped: String = path
            .display()
            .to_string()
            .chars()
            .map(|c| match c {
                '%' | '?' | '#' => format!("%{:02X}", c as u32),
                c => c.to_string(),
            })
            .collect();
        Connection::open_with_flags(
            format!("file:{escaped}?immutable=1"),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
    };
    opened.map_err(|e| StoreError::Rejected(format!("{shown} cannot be opened: {e}")))
}

/// Migrates the incoming copy to this binary's schema and checks that it
/// has every table a store made by this binary has.
fn whole_store(incoming: &Path, settings: &[(&str, &str)]) -> StoreResult<()> {
    let mut conn = Connection::open(incoming).map_err(crate::sqlite::map_err)?;
    for (name, expected) in settings {
        let held: Option<String> = conn
            .query_row(
                "SELECT value FROM server_settings WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .ok();
        match held {
            Some(held) if held == *expected => {}
            Some(_) => {
                return Err(StoreError::Rejected(format!(
                    "its {name} differs from this data directory's: the copy was set up with \
                     another master key (give that key with --master-key, or put its master.key \
                     file in the data directory)"
                )))
            }
            // Every store records it at its first start: one without it
            // cannot be told to open with this directory's key, and its
            // keys would all be refused if it did not.
            None => {
                return Err(StoreError::Rejected(format!(
                    "it records no {name}, so whether this directory's master key opens it \
                     cannot be told"
                )))
            }
        }
    }
    crate::migrate::apply_sqlite(&mut conn, crate::migrate::SQLITE)?;
    let mut fresh = Connection::open_in_memory().map_err(crate::sqlite::map_err)?;
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        crate::migrate::apply_sqlite(&mut fresh, crate::migrate::SQLITE)
    })?;
    // Every table, index, trigger and view as this binary defines it, and
    // nothing else: a dropped column, an added trigger (one that undoes a
    // revocation, say) or table is not a store this binary made.
    let schema = |c: &Connection| -> StoreResult<Vec<(String, String, String)>> {
        let mut stmt = c
            .prepare(
                "SELECT type, name, COALESCE(sql, '') FROM sqlite_master \
                 WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
            )
            .map_err(crate::sqlite::map_err)?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(crate::sqlite::map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(crate::sqlite::map_err)?;
        Ok(rows)
    };
    let (have, want) = (schema(&conn)?, schema(&fresh)?);
    let missing: Vec<&str> = want
        .iter()
        .filter(|w| !have.iter().any(|h| h.0 == w.0 && h.1 == w.1))
        .map(|w| w.1.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::Rejected(format!(
            "not a whole Warden store: it lacks {}",
            missing.join(", ")
        )));
    }
    let differing: Vec<String> = have
        .iter()
        .filter(|h| !want.contains(h))
        .map(|h| format!("{} {}", h.0, h.1))
        .collect();
    if !differing.is_empty() {
        return Err(StoreError::Rejected(format!(
            "not a Warden store as this binary makes it: {} not as this binary makes them",
            differing.join(", ")
        )));
    }
    Ok(())
}

/// A copy and its WAL, copied into the data directory to be read there.
struct Staged {
    path: Option<std::path::PathBuf>,
}

impl Staged {
    fn new(data_dir: &Path, copy: &Path) -> StoreResult<Self> {
        let wal = std::path::PathBuf::from(format!("{}-wal", copy.display()));
        if !wal.exists() {
            return Ok(Staged { path: None });
        }
        let staged = data_dir.join("warden.db.restoring-source");
        let staged_wal = std::path::PathBuf::from(format!("{}-wal", staged.display()));
        for leftover in [&staged, &staged_wal] {
            remove_if_present(leftover)?;
        }
        remove_if_present(&std::path::PathBuf::from(format!(
            "{}-shm",
            staged.display()
        )))?;
        let copy_file = |from: &Path, to: &Path| {
            std::fs::copy(from, to).map_err(|e| {
                StoreError::Rejected(format!("cannot copy {} to read it: {e}", from.display()))
            })
        };
        copy_file(copy, &staged)?;
        copy_file(&wal, &staged_wal)?;
        #[cfg(unix)]
        for file in [&staged, &staged_wal] {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600));
        }
        Ok(Staged { path: Some(staged) })
    }

    fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
}

/// Removes a file; whether there was one.
fn remove_if_present(path: &Path) -> StoreResult<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Warden store with rows (server settings named `row:…`) to tell
    /// copies apart.
    fn store(path: &Path, rows: &[&str]) -> Connection {
        let mut conn = Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        crate::migrate::apply_sqlite(&mut conn, crate::migrate::SQLITE).unwrap();
        conn.execute_batch(
            "INSERT OR IGNORE INTO server_settings VALUES ('master_key_check', 'k1', 0);",
        )
        .unwrap();
        for row in rows {
            add(&conn, row);
        }
        conn
    }

    fn add(conn: &Connection, row: &str) {
        conn.execute(
            "INSERT INTO server_settings VALUES (?1, '', 0)",
            [format!("row:{row}")],
        )
        .unwrap();
    }

    fn rows(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT substr(name, 5) FROM server_settings WHERE name LIKE 'row:%' ORDER BY rowid")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn the_replaced_stores_wal_never_reaches_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let copy = dir.path().join("copy.db");
        drop(store(&copy, &["then"]));
        // A store whose newest rows are only in its WAL, as after kill -9:
        // the connection is leaked so that nothing checkpoints it.
        let live = store(&data.join("warden.db"), &["then", "later"]);
        live.execute_batch("PRAGMA wal_autocheckpoint = 0").unwrap();
        add(&live, "only in the wal");
        std::mem::forget(live);
        assert!(data.join("warden.db-wal").exists());

        let restored = restore_sqlite(&data, &copy, &[("master_key_check", "k1")]).unwrap();
        assert!(restored.removed_wal);
        assert_eq!(rows(&data.join("warden.db")), ["then"]);
        assert!(!data.join("warden.db.restoring").exists());

        // A copy with a WAL of its own beside it counts whole, read from a
        // staged copy that does not outlast the restore.
        let with_wal = dir.path().join("with-wal.db");
        let open = store(&with_wal, &["first"]);
        open.execute_batch("PRAGMA wal_autocheckpoint = 0").unwrap();
        add(&open, "in its wal");
        std::mem::forget(open);
        assert!(dir.path().join("with-wal.db-wal").exists());
        restore_sqlite(&data, &with_wal, &[("master_key_check", "k1")]).unwrap();
        assert_eq!(rows(&data.join("warden.db")), ["first", "in its wal"]);
        let left: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("restoring"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_copy_that_is_not_a_whole_warden_store_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        drop(store(&data.join("warden.db"), &["kept"]));
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE x (a INT)")
            .unwrap();
        let torn = dir.path().join("torn.db");
        std::fs::write(&torn, b"SQLite format 3\0 and then nothing").unwrap();
        // A made-up schema record, and a whole store but for one table.
        let made_up = dir.path().join("made-up.db");
        let claimed: Vec<String> = crate::migrate::SQLITE
            .iter()
            .map(|(v, _)| format!("({v}, 'x')"))
            .collect();
        Connection::open(&made_up)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT); \
                 INSERT INTO schema_migrations VALUES {};",
                claimed.join(", ")
            ))
            .unwrap();
        let lacking = dir.path().join("lacking.db");
        store(&lacking, &[])
            .execute_batch("DROP TABLE audit_log")
            .unwrap();
        let other_key = dir.path().join("other-key.db");
        drop(store(&other_key, &[]));
        let no_key = dir.path().join("no-key.db");
        store(&no_key, &[])
            .execute_batch("DELETE FROM server_settings WHERE name = 'master_key_check'")
            .unwrap();
        let triggered = dir.path().join("triggered.db");
        store(&triggered, &[])
            .execute_batch(
                "CREATE TRIGGER unrevoke AFTER UPDATE ON api_keys BEGIN \
                 UPDATE api_keys SET revoked_at = NULL; END",
            )
            .unwrap();
        let narrowed = dir.path().join("narrowed.db");
        store(&narrowed, &[])
            .execute_batch("ALTER TABLE agents DROP COLUMN owner")
            .unwrap();
        for (copy, expected) in [
            (&other, "not a Warden store"),
            (&torn, ""),
            (&made_up, "lacks"),
            (&lacking, "lacks audit_log"),
            (&data.join("warden.db"), "own store"),
            (&dir.path().join("missing.db"), "not a file"),
        ] {
            let err = restore_sqlite(&data, copy, &[]).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
        let key = [("master_key_check", "k2")];
        let err = restore_sqlite(&data, &other_key, &key).unwrap_err();
        assert!(err.to_string().contains("another master key"), "{err}");
        let err = restore_sqlite(&data, &no_key, &key).unwrap_err();
        assert!(
            err.to_string().contains("records no master_key_check"),
            "{err}"
        );
        for (copy, named) in [
            (&triggered, "trigger unrevoke"),
            (&narrowed, "table agents"),
        ] {
            let err = restore_sqlite(&data, copy, &[]).unwrap_err();
            assert!(err.to_string().contains(named), "{err}");
        }
        assert!(!data.join("warden.db.restoring").exists());
        assert_eq!(rows(&data.join("warden.db")), ["kept"]);
    }
}
