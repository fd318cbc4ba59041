//! One process at a time in a data directory: `serve`, `reindex` and
//! `restore` each hold an exclusive lock on it for as long as they run.
//!
//! The search index's own lock used to be the only guard, and it lives in
//! `index/`: with that directory lost under a running server, a restore
//! could replace the store the server still wrote to (its writes then went
//! to a file without a name) and a second server could start beside it.
//! Two locks are held, and the kernel lets go of both when the process
//! ends, however it ends: one on the directory's own handle (`flock`),
//! which no file removed inside it can take away, and one on the file
//! `warden.lock` in it, opened for writing, which NFS carries between
//! hosts (where a directory's `flock` stays on one host, or is refused).

use std::fs::File;
use std::path::Path;

/// The lock file's name in the data directory.
const LOCK_FILE: &str = "warden.lock";

/// Held while the command runs; dropped, the locks are let go.
#[derive(Debug)]
pub struct DataDirLock {
    _dir: Option<File>,
    _file: Option<File>,
}

impl DataDirLock {
    /// Removes the directory, if it holds nothing but the lock file: for a
    /// command that made it and failed, while it still holds the lock (no
    /// other command can have begun in it).
    pub fn remove_if_empty(&self, data_dir: &Path) {
        let only_the_lock = std::fs::read_dir(data_dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .all(|e| e.file_name() == LOCK_FILE)
            })
            .unwrap_or(false);
        if only_the_lock {
            let _ = std::fs::remove_file(data_dir.join(LOCK_FILE));
            let _ = std::fs::remove_dir(data_dir);
        }
    }
}

/// Takes the data directory's locks, or says which directory is in use.
pub fn hold(data_dir: &Path) -> Result<DataDirLock, String> {
    let dir = File::open(data_dir)
        .map_err(|e| format!("cannot open the data directory {}: {e}", data_dir.display()))?;
    let dir = match dir.try_lock() {
        Ok(()) => Some(dir),
        Err(std::fs::TryLockError::WouldBlock) => return Err(in_use(data_dir)),
        // A filesystem that locks no directory: the file stands alone.
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::debug!(error = %e, "the data directory itself cannot be locked");
            None
        }
    };
    let file = match hold_file(data_dir) {
        Ok(file) => Some(file),
        Err(Held::InUse) => return Err(in_use(data_dir)),
        // A filesystem that locks no file (NFSv3 without its lock
        // daemon): the directory's lock stands alone, where it was taken.
        Err(Held::Unlockable(why)) if dir.is_some() => {
            tracing::warn!(
                error = %why,
                "warden.lock cannot be held; the data directory's own lock stands alone \
                 (it does not reach other hosts on a network filesystem)"
            );
            None
        }
        Err(Held::Unlockable(why)) => return Err(why),
    };
    Ok(DataDirLock {
        _dir: dir,
        _file: file,
    })
}

/// Why the lock file was not held.
enum Held {
    InUse,
    Unlockable(String),
}

/// The lock on `warden.lock`, opened for writing (NFS needs a file open
/// for writing to lock it exclusively).
fn hold_file(data_dir: &Path) -> Result<File, Held> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Held::Unlockable(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Held::InUse),
        Err(std::fs::TryLockError::Error(e)) => Err(Held::Unlockable(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

fn in_use(data_dir: &Path) -> String {
    format!(
        "the data directory {} is in use by another Warden process: stop `warden serve` \
         (or the `reindex` or `restore`) on it first; each replica needs a data \
         directory of its own",
        data_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = hold(dir.path()).unwrap();
        let refused = hold(dir.path()).unwrap_err();
        assert!(
            refused.contains("in use by another Warden process"),
            "{refused}"
        );
        // Files removed inside it take nothing away: the directory's own
        // lock still holds.
        std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        assert!(hold(dir.path()).is_err());
        drop(first);
        assert!(hold(dir.path()).is_ok());
    }

    #[test]
    fn the_lock_file_holds_alone() {
        let dir = tempfile::tempdir().unwrap();
        let first = hold_file(dir.path()).ok().unwrap();
        let refused = hold(dir.path()).unwrap_err();
        assert!(
            refused.contains("in use by another Warden process"),
            "{refused}"
        );
        drop(first);
        assert!(hold(dir.path()).is_ok());
    }

    #[test]
    fn only_an_empty_directory_is_removed() {
        let parent = tempfile::tempdir().unwrap();
        let made = parent.path().join("made");
        std::fs::create_dir(&made).unwrap();
        let lock = hold(&made).unwrap();
        std::fs::write(made.join("warden.db"), b"x").unwrap();
        lock.remove_if_empty(&made);
        assert!(made.join("warden.db").exists());
        std::fs::remove_file(made.join("warden.db")).unwrap();
        lock.remove_if_empty(&made);
        assert!(!made.exists());
    }
}
