//! Opening the store a command names: PostgreSQL by URL, else SQLite in the
//! data directory.

use std::sync::Arc;

use warden_core::secret::MasterKey;
use warden_store::{BeforeMigrating, SqlStore, Store};

use crate::cli::StoreArgs;

pub struct Opened {
    pub store: Arc<dyn Store>,
    pub master: MasterKey,
}

/// Refuses a data directory that holds no SQLite store (with no database
/// URL given). Only `init` and `serve` make a store: another command on
/// such a directory is a mistyped `--data-dir`, said as one rather than
/// answered from a new, empty store (or index) left behind.
pub fn none_here(args: &StoreArgs) -> Result<(), String> {
    let not_a_directory = args.data_dir.exists() && !args.data_dir.is_dir();
    if args.database_url.is_none() && !not_a_directory && !args.data_dir.join("warden.db").exists()
    {
        return Err(format!(
            "no Warden store in {}: give the data directory of one (--data-dir, \
             WARDEN_DATA_DIR), or make one with `warden init`",
            args.data_dir.display()
        ));
    }
    Ok(())
}

/// The store flags that name `args`'s store again in a command shown to
/// the operator (a database URL is not repeated: it may hold a password).
pub fn flags(args: &StoreArgs) -> String {
    let mut flags = match &args.database_url {
        Some(_) => " --database-url <the same URL>".to_string(),
        None => format!(
            " --data-dir {}",
            shell_word(&args.data_dir.display().to_string())
        ),
    };
    // A key given as a flag (not by the variable, which the next command
    // reads too) must be given again; never shown.
    if args.master_key.is_some() && std::env::var_os("WARDEN_MASTER_KEY").is_none() {
        flags.push_str(" --master-key <the same key>");
    }
    flags
}

/// `text` as one word of a shell command: quoted unless it is plain.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-+=:@%,".contains(c));
    match plain {
        true => text.to_string(),
        false => format!("'{}'", text.replace('\'', r"'\''")),
    }
}

/// What a command opens the store for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// `serve`: may make a store, its key file, and migrate an older one.
    Serve,
    /// `init`: may make a store and its key file; an older release's
    /// store is left for `serve` to migrate.
    Init,
    /// `reindex`, run with the servers stopped (as a restore's procedure
    /// asks): a store, migrated if an older release made it (a backup
    /// restored from before an upgrade), never made.
    Maintenance,
    /// Every other command: a store as this release made it, or nothing.
    Console,
}

impl Opening {
    fn makes_a_store(self) -> bool {
        matches!(self, Opening::Serve | Opening::Init)
    }

    fn migrates(self) -> bool {
        matches!(self, Opening::Serve | Opening::Maintenance)
    }
}

/// Opens the store and its master key for `opening`.
pub async fn open(args: &StoreArgs, opening: Opening) -> Result<Opened, String> {
    let create_key = opening.makes_a_store();
    // A malformed key given outright is refused before any store is made.
    let given = match args.master_key.as_deref() {
        Some(text) => Some(crate::master_key::load(Some(text), &args.data_dir, false)?.0),
        None => None,
    };
    // What the database holds, read before anything is made or changed,
    // with the master key's check value it was set up with.
    let before = examine(args, opening).await?;
    if opening == Opening::Serve && before.autovacuum_off {
        // Said by servers; console commands leave it to them.
        tracing::warn!(
            "PostgreSQL's autovacuum is off: Warden's tables are not analyzed, and vacuumed \
             only against wraparound, unless you run VACUUM ANALYZE on a schedule"
        );
    }
    // Before SQLite opens the database: it gives a new WAL the database
    // file's mode. With PostgreSQL the directory holds the index.
    warden_store::keep_private(&args.data_dir).map_err(|e| e.to_string())?;
    // The key is checked before anything is migrated: a start refused for
    // another key leaves the store as the release that made it can open.
    let known = match &given {
        Some(key) => Some(key.clone()),
        None if args.data_dir.join("master.key").exists() => {
            Some(crate::master_key::load(None, &args.data_dir, false)?.0)
        }
        None => None,
    };
    match (&known, &before.setting) {
        (Some(key), Some(check)) if *check != key.check_value() => {
            return Err(warden_server::services::secrets::ANOTHER_KEY.into());
        }
        // A store set up with a key, and none given: refused before the
        // open migrates it, as another key is.
        (None, Some(_)) => return Err(no_key_given(&args.data_dir)),
        _ => {}
    }
    let store = match &args.database_url {
        Some(url) => SqlStore::open(url).await,
        None => SqlStore::open_sqlite(&args.data_dir).await,
    }
    .map_err(|e| format!("cannot open the store: {e}"))?;
    let master = match given {
        Some(key) => key,
        None => {
            // A key file is made only for a store set up by no key yet.
            let set_up = warden_server::services::secrets::has_master_key(&store).await?;
            let file = args.data_dir.join("master.key");
            if set_up && !file.exists() {
                return Err(no_key_given(&args.data_dir));
            }
            let (key, made) = crate::master_key::load(None, &args.data_dir, create_key && !set_up)?;
            if made {
                // Claimed at once: replicas started together on a new
                // database each make a key, and only one can be the
                // store's. The others remove theirs, so that no data
                // directory keeps a key the store will never take; only
                // the file this start made, only for that refusal (a
                // passing error of the store removes nothing).
                match warden_server::services::secrets::verify_master_key(&store, &key).await {
                    Ok(()) => {}
                    Err(refused) if refused == warden_server::services::secrets::ANOTHER_KEY => {
                        let ours = crate::master_key::load(None, &args.data_dir, false)
                            .is_ok_and(|(k, _)| k.check_value() == key.check_value());
                        if ours {
                            let _ = std::fs::remove_file(&file);
                        }
                        return Err(format!(
                            "{refused}; another replica set this database up with its own key \
                             a moment ago, and the new {} was removed",
                            file.display()
                        ));
                    }
                    Err(failed) => return Err(failed),
                }
            }
            key
        }
    };
    Ok(Opened {
        store: Arc::new(store),
        master,
    })
}

/// Reads, changing nothing, what the database holds, and refuses what
/// `opening` may not open: no store (but for `serve` and `init`), another
/// application's data, an older release's store (but for `serve` and
/// `reindex`), a file SQLite does not read.
pub async fn examine(args: &StoreArgs, opening: Opening) -> Result<BeforeMigrating, String> {
    let create_key = opening.makes_a_store();
    if !create_key {
        none_here(args)?;
    }
    let sqlite_file = args.data_dir.join("warden.db");
    let before = warden_store::before_migrating(
        args.database_url.as_deref(),
        &args.data_dir,
        warden_server::services::secrets::KEY_CHECK,
    )
    .await
    .map_err(|e| format!("cannot open the store: {e}"))?;
    // (A data directory that is a file is said below, as one.)
    let database_there = args.database_url.is_some() || sqlite_file.is_file();
    if create_key && before.foreign {
        // Warden's tables would go beside another application's record
        // of its migrations, or into its file: refused before anything
        // is made.
        return Err(match &args.database_url {
            Some(_) => "this database holds another application's schema_migrations table: \
                        give Warden a database of its own"
                .into(),
            None => format!(
                "{} is not a Warden store (it holds another application's tables): give \
                 Warden a data directory of its own",
                sqlite_file.display()
            ),
        });
    }
    if !create_key && database_there && before.holds_store == Some(false) {
        // Another application's database, or an empty one: a command
        // that makes no store leaves it as it was.
        return Err(match &args.database_url {
            Some(_) => "no Warden store in this database: give the URL of one \
                        (--database-url, WARDEN_DATABASE_URL), or make one there with \
                        `warden init`"
                .into(),
            None => format!(
                "{} is not a Warden store: give the data directory of one (--data-dir, \
                 WARDEN_DATA_DIR)",
                sqlite_file.display()
            ),
        });
    }
    // Only `serve` migrates (and `reindex`, run with the servers
    // stopped): another command of a newer release run on an older
    // release's store (to look at it, under a server of that release
    // still running) would commit it, and every replica, to this release,
    // refused by the older one from then on.
    let backend = match args.database_url {
        Some(_) => warden_store::Backend::Postgres,
        None => warden_store::Backend::Sqlite,
    };
    let known = warden_store::schema_version(backend);
    if let Some(older) = before.schema.filter(|v| !opening.migrates() && *v < known) {
        return Err(match opening {
            Opening::Init => format!(
                "the store was made by an older release (schema version {older}, this \
                 release's {known}); nothing was changed: upgrade it (see Upgrades and \
                 rollback in the docs: {UPGRADE})"
            ),
            _ => format!(
                "the store's schema is at version {older}, older than this release's \
                 ({known}): this command does not migrate it; run it with the release that \
                 made the store, or upgrade the store first (see Upgrades and rollback in the \
                 docs: {UPGRADE})"
            ),
        });
    }
    if before.not_a_database {
        return Err(format!(
            "{} is not a SQLite database (another program's file, or a store damaged beyond \
             reading: restore it from a backup, see Backup and restore in the docs): nothing \
             was changed",
            sqlite_file.display()
        ));
    }
    if args.database_url.is_none() && sqlite_file.exists() && !sqlite_file.is_file() {
        return Err(format!(
            "{} is not a file: nothing was changed",
            sqlite_file.display()
        ));
    }
    Ok(before)
}

/// The refusal of a store set up with a master key when none is given.
fn no_key_given(data_dir: &std::path::Path) -> String {
    format!(
        "this store was set up with a master key that is not given here: set \
         WARDEN_MASTER_KEY (or --master-key) to it, or put its master.key file at {}",
        data_dir.join("master.key").display()
    )
}

/// How a store of an older release is upgraded, as errors say it.
const UPGRADE: &str = "from a release before audit seals, this release's `warden audit seal` \
     with the servers stopped; otherwise this release's `warden serve` on it";

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn a_path_in_a_hint_is_one_shell_word() {
        assert_eq!(shell_word("/var/lib/warden"), "/var/lib/warden");
        assert_eq!(shell_word("s p a c e"), "'s p a c e'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
