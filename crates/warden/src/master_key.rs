//! Finding the master key: the flag or environment variable, else a `0600`
//! file in the data directory, created on first use.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use warden_core::secret::MasterKey;

const FILE: &str = "master.key";

/// The master key given outright, else the data directory's file; made
/// there when `create` and there is none. The flag tells whether this
/// call made the file (a start beside another may find the other's).
pub fn load(
    explicit: Option<&str>,
    data_dir: &Path,
    create: bool,
) -> Result<(MasterKey, bool), String> {
    if let Some(text) = explicit {
        let key = MasterKey::parse(text).ok_or_else(|| {
            "the master key (--master-key or WARDEN_MASTER_KEY) must be 32 bytes \
             as 64 hex characters or base64"
                .to_string()
        })?;
        return Ok((key, false));
    }
    let path = data_dir.join(FILE);
    if path.exists() {
        return Ok((read(&path)?, false));
    }
    if !create {
        return Err(format!(
            "no master key: set WARDEN_MASTER_KEY or run `warden init` to create {}",
            path.display()
        ));
    }
    warden_store::create_private_dir(data_dir).map_err(|e| e.to_string())?;
    let key = MasterKey::generate();
    // Written whole under a name of its own and then put in place unless a
    // file is there, so that a command starting beside this one reads the
    // whole key or none; the first of two made at once is the one both use.
    let mut draft = tempfile::Builder::new()
        .prefix(".master.key.")
        .tempfile_in(data_dir)
        .map_err(|e| format!("cannot write a master key in {}: {e}", data_dir.display()))?;
    draft
        .write_all(key.to_hex().as_bytes())
        .and_then(|()| draft.as_file().sync_all())
        .map_err(|e| format!("cannot write a master key in {}: {e}", data_dir.display()))?;
    match draft.persist_noclobber(&path) {
        Ok(_) => Ok((key, true)),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok((read(&path)?, false)),
        Err(e) => Err(format!("cannot create {}: {}", path.display(), e.error)),
    }
}

fn read(path: &Path) -> Result<MasterKey, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    MasterKey::parse(&text)
        .ok_or_else(|| format!("{} does not hold a valid master key", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts made at once on one directory: one makes the file, every one
    /// uses its key.
    #[test]
    fn starts_made_at_once_share_the_first_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let made: Vec<(String, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load(None, &data, true).unwrap()))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    let (key, created) = h.join().unwrap();
                    (key.check_value(), created)
                })
                .collect()
        });
        assert_eq!(
            made.iter().filter(|(_, created)| *created).count(),
            1,
            "{made:?}"
        );
        assert!(
            made.iter().all(|(check, _)| *check == made[0].0),
            "{made:?}"
        );
        let left: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from(FILE)],
            "drafts left behind"
        );
    }
}
