//! The installation's server-side secrets: a check that this process holds
//! the master key the database was set up with, and the token signing key,
//! sealed under the master key and shared by every replica.

use warden_core::secret::MasterKey;
use warden_store::Store;

use crate::auth::TokenIssuer;

/// The server setting holding the master key's check value.
pub const KEY_CHECK: &str = "master_key_check";

/// The refusal of a master key other than the store's.
pub const ANOTHER_KEY: &str = "this database was set up with another master key: start every \
     replica with the same master key (--master-key or WARDEN_MASTER_KEY, or the same master.key \
     file)";
const TOKEN_KEY: &str = "token_signing_key";

/// Refuses to go on with a master key other than the one the database
/// knows; otherwise every stored key would silently stop working.
/// Whether the store was already set up with a master key: a new key
/// file must not be made for it (it would hold a key that cannot be the
/// one the store was set up with).
pub async fn has_master_key(store: &dyn Store) -> Result<bool, String> {
    Ok(store
        .server_setting(KEY_CHECK)
        .await
        .map_err(|e| e.to_string())?
        .is_some())
}

pub async fn verify_master_key(store: &dyn Store, master: &MasterKey) -> Result<(), String> {
    let expected = master.check_value();
    let stored = store
        .server_setting_or_insert(KEY_CHECK, &expected)
        .await
        .map_err(|e| e.to_string())?;
    if stored != expected {
        return Err(ANOTHER_KEY.into());
    }
    Ok(())
}

/// The token issuer, creating and storing its key on first start.
pub async fn token_issuer(store: &dyn Store, master: &MasterKey) -> Result<TokenIssuer, String> {
    let candidate = master.seal(&TokenIssuer::generate_key());
    let sealed = store
        .server_setting_or_insert(TOKEN_KEY, &candidate)
        .await
        .map_err(|e| e.to_string())?;
    let pkcs8 = master
        .open(&sealed)
        .ok_or("the token signing key cannot be opened with this master key")?;
    TokenIssuer::from_pkcs8(&pkcs8)
}
