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
/// Warden store. The caller makes sure no server runs on the directory.
pub fn restore_sqlite(data_dir: &Path, copy: &Path) -> StoreResult<Restored> {
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
    let source = Connection::open_with_flags(
        copy,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Rejected(format!("{shown} cannot be opened: {e}")))?;
    let check: String = source
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|e| StoreError::Damaged(format!("{shown}: {e}")))?;
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
            "{shown} is not a Warden store (it has no schema_migrations table)"
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
    file.sync_all().map_err(|e| fail(&e))?;
    let bytes = file.metadata().map_err(|e| fail(&e))?.len();
    drop(file);

    // The replaced store's WAL and its index go first: a crash between
    // here and the rename leaves the old file without them, as a clean
    // stop does, never the copy with a WAL that is not its own.
    let removed_wal = remove_if_present(&data_dir.join("warden.db-wal"))?;
    remove_if_present(&data_dir.join("warden.db-shm"))?;
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

    fn store(path: &Path, rows: &[&str]) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS schema_migrations (v INT); \
             INSERT INTO schema_migrations VALUES (1); CREATE TABLE IF NOT EXISTS t (b TEXT);",
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

        let restored = restore_sqlite(&data, &copy).unwrap();
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
        for (copy, expected) in [
            (&other, "not a Warden store"),
            (&torn, ""),
            (&data.join("warden.db"), "own store"),
            (&dir.path().join("missing.db"), "not a file"),
        ] {
            let err = restore_sqlite(&data, copy).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
        assert_eq!(rows(&data.join("warden.db")), ["kept"]);
    }
}
