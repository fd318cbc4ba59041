//! Opaque identifiers: a short type prefix (so a leaked id says what it is)
//! and 96 random bits.

use rand::RngCore;

/// Prefixes of the identifiers Warden hands out.
pub mod prefix {
    pub const ORGANIZATION: &str = "org";
    pub const AGENT: &str = "agt";
    pub const API_KEY: &str = "key";
    pub const REQUEST: &str = "req";
    pub const TOKEN: &str = "tok";
    pub const POLICY: &str = "pol";
    pub const AUDIT: &str = "aud";
    pub const HOLD: &str = "hld";
}

/// A new random identifier such as `agt_5f0c1a…`.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}
