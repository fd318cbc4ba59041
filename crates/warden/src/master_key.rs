//! Finding the master key: the flag or environment variable, else a `0600`
//! file in the data directory, created on first use.

use std::fs;
use std::io::Write;
use std::path::Path;

use warden_core::secret::MasterKey;

const FILE: &str = "master.key";

pub fn load(explicit: Option<&str>, data_dir: &Path, create: bool) -> Result<MasterKey, String> {
    if let Some(text) = explicit {
        return MasterKey::parse(text).ok_or_else(|| {
            "the master key (--master-key or WARDEN_MASTER_KEY) must be 32 bytes \
             as 64 hex characters or base64"
                .into()
        });
    }
    let path = data_dir.join(FILE);
    if path.exists() {
        let text = fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return MasterKey::parse(&text)
            .ok_or_else(|| format!("{} does not hold a valid master key", path.display()));
    }
    if !create {
        return Err(format!(
            "no master key: set WARDEN_MASTER_KEY or run `warden init` to create {}",
            path.display()
        ));
    }
    warden_store::create_private_dir(data_dir).map_err(|e| e.to_string())?;
    let key = MasterKey::generate();
    // Written whole under another name and then linked into place, so that
    // a command starting beside this one reads the whole key or none; the
    // first of two made at once is the one both use.
    let draft = data_dir.join(format!("{FILE}.{}.new", std::process::id()));
    let written = write_private(&draft, key.to_hex().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", draft.display()))
        .and_then(|()| match fs::hard_link(&draft, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(format!("cannot create {}: {e}", path.display())),
        });
    let _ = fs::remove_file(&draft);
    if !written? {
        return load(None, data_dir, false);
    }
    Ok(key)
}

/// A new file only its owner may read, synced to disk.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
