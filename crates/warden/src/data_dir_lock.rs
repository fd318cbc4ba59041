//! One process at a time in a data directory: `serve`, `reindex` and
//! `restore` each hold an exclusive lock on the directory itself for as
//! long as they run.
//!
//! The search index's own lock used to be the only guard, and it lives in
//! `index/`: with that directory lost under a running server, a restore
//! could replace the store the server still wrote to (its writes then went
//! to a file without a name) and a second server could start beside it.
//! The lock is taken on the directory's own handle (`flock`), which no
//! file removed inside it can take away, and the kernel lets go of it when
//! the process ends, however it ends. A filesystem that locks no directory
//! (NFSv4 answers `ENOLCK`) gets a lock file, `warden.lock`, in it instead.

use std::fs::File;
use std::path::Path;

/// Held while the command runs; dropped, the lock is let go.
#[derive(Debug)]
pub struct DataDirLock {
    _held: File,
}

/// Takes the data directory's lock, or says which directory is in use.
pub fn hold(data_dir: &Path) -> Result<DataDirLock, String> {
    let dir = File::open(data_dir)
        .map_err(|e| format!("cannot open the data directory {}: {e}", data_dir.display()))?;
    match dir.try_lock() {
        Ok(()) => Ok(DataDirLock { _held: dir }),
        Err(std::fs::TryLockError::WouldBlock) => Err(in_use(data_dir)),
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::debug!(error = %e, "the data directory cannot be locked; using warden.lock");
            hold_file(data_dir)
        }
    }
}

/// The lock on a file in the directory, for filesystems that lock files
/// only (opened for writing, which NFS needs for an exclusive lock).
fn hold_file(data_dir: &Path) -> Result<DataDirLock, String> {
    let path = data_dir.join("warden.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _held: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(in_use(data_dir)),
        Err(std::fs::TryLockError::Error(e)) => Err(format!(
            "cannot lock the data directory {} (nor {}): {e}",
            data_dir.display(),
            path.display()
        )),
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
        // Files removed inside it take nothing away.
        std::fs::create_dir(dir.path().join("index")).unwrap();
        std::fs::remove_dir(dir.path().join("index")).unwrap();
        assert!(hold(dir.path()).is_err());
        drop(first);
        assert!(hold(dir.path()).is_ok());
    }

    #[test]
    fn the_lock_file_stands_in_alike() {
        let dir = tempfile::tempdir().unwrap();
        let first = hold_file(dir.path()).unwrap();
        let refused = hold_file(dir.path()).unwrap_err();
        assert!(
            refused.contains("in use by another Warden process"),
            "{refused}"
        );
        drop(first);
        assert!(hold_file(dir.path()).is_ok());
    }
}
