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
    let source = open_copy(copy)?;
    let check: String = source
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|e| match crate::sqlite::map_err(e) {
            StoreError::Damaged(why) => StoreError::Damaged(format!("{shown}: {why}")),
            other => StoreError::Rejected(format!("{shown} cannot be read: {other}")),
        })?;
    if check != "ok" {
        return Err(StoreError::Damaged(format!(
            "{shown} fails SQLite's check: {check}"
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

    crate::create_private_dir(data_dir)?;
    let incoming = data_dir.join("warden.db.restoring");
    remove_if_present(&incoming)?;
    let fail = |e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!("cannot write {}: {e}", incoming.display()))
    };
    source
        .execute("VACUUM INTO ?1", [incoming.display().to_string()])
        .map_err(|e| fail(&e))?;
    drop(source);
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
            other => other,
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
fn open_copy(copy: &Path) -> StoreResult<Connection> {
    let shown = copy.display();
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
        if held.is_some_and(|held| held != *expected) {
            return Err(StoreError::Rejected(format!(
                "its {name} differs from this data directory's: the copy was set up with \
                 another master key (give that key with --master-key, or put its master.key \
                 file in the data directory)"
            )));
        }
    }
    crate::migrate::apply_sqlite(&mut conn, crate::migrate::SQLITE)?;
    let mut fresh = Connection::open_in_memory().map_err(crate::sqlite::map_err)?;
    crate::migrate::apply_sqlite(&mut fresh, crate::migrate::SQLITE)?;
    let tables = |c: &Connection| -> StoreResult<Vec<String>> {
        let mut stmt = c
            .prepare(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'index') ORDER BY name",
            )
            .map_err(crate::sqlite::map_err)?;
        let names = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(crate::sqlite::map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(crate::sqlite::map_err)?;
        Ok(names)
    };
    let have = tables(&conn)?;
    let missing: Vec<String> = tables(&fresh)?
        .into_iter()
        .filter(|name| !have.contains(name))
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::Rejected(format!(
            "not a whole Warden store: it lacks {}",
            missing.join(", ")
        )));
    }
    Ok(())
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

    /// A Warden store with a table of rows to tell copies apart.
    fn store(path: &Path, rows: &[&str]) -> Connection {
        let mut conn = Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        crate::migrate::apply_sqlite(&mut conn, crate::migrate::SQLITE).unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS t (b TEXT); INSERT OR IGNORE INTO server_settings \
             VALUES ('master_key_check', 'k1', 0);",
        )
        .unwrap();
        for row in rows {
            conn.execute("INSERT INTO t VALUES (?1)", [row]).unwrap();
        }
        conn
    }

    fn rows(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn.prepare("SELECT b FROM t ORDER BY rowid").unwrap();
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
        live.execute("INSERT INTO t VALUES ('only in the wal')", [])
            .unwrap();
        std::mem::forget(live);
        assert!(data.join("warden.db-wal").exists());

        let restored = restore_sqlite(&data, &copy, &[("master_key_check", "k1")]).unwrap();
        assert!(restored.removed_wal);
        assert_eq!(rows(&data.join("warden.db")), ["then"]);
        assert!(!data.join("warden.db.restoring").exists());
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
        Connection::open(&made_up)
            .unwrap()
            .execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT); \
                 INSERT INTO schema_migrations VALUES (1, 'x'), (2, 'x'), (3, 'x'), (4, 'x'), \
                 (5, 'x');",
            )
            .unwrap();
        let lacking = dir.path().join("lacking.db");
        store(&lacking, &[])
            .execute_batch("DROP TABLE audit_log")
            .unwrap();
        let other_key = dir.path().join("other-key.db");
        drop(store(&other_key, &[]));
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
        let err = restore_sqlite(&data, &other_key, &[("master_key_check", "k2")]).unwrap_err();
        assert!(err.to_string().contains("another master key"), "{err}");
        assert!(!data.join("warden.db.restoring").exists());
        assert_eq!(rows(&data.join("warden.db")), ["kept"]);
    }
}
