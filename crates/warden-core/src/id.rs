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
    pub const EVENT: &str = "evt";
}

/// An identifier that sorts by creation time: 48 bits of milliseconds then
/// 48 random bits, in the same 24 hex digits as [`new_id`]. For records
/// written in order at high rates (audit records), whose index then grows
/// at its end instead of touching a random page per insert.
pub fn new_time_ordered_id(prefix: &str) -> String {
    let ms = crate::time::now_ms().max(0) as u64 & 0xFFFF_FFFF_FFFF;
    let mut bytes = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}_{ms:012x}{}", hex::encode(bytes))
}

/// A new random identifier such as `agt_5f0c1a…`.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}
