//! Secrets: API keys (shown once, stored only as an HMAC under a pepper) and
//! sealing of secrets Warden must read back later (AES-256-GCM under the
//! master key).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::Environment;

type HmacSha256 = Hmac<Sha256>;

/// Characters of randomness in a key: 43 base-62 characters carry 256 bits.
pub const KEY_RANDOM_LEN: usize = 43;

/// The server's root secret. Everything else (the API key pepper, sealed
/// secrets) derives from it, so replicas sharing one database must share it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        MasterKey(bytes)
    }

    /// Accepts 32 bytes as 64 hex characters or base64.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let bytes = hex::decode(text).ok().or_else(|| B64.decode(text).ok())?;
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        Some(MasterKey(bytes))
    }

    /// The form written to a key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The pepper under which API keys are hashed.
    pub fn key_pepper(&self) -> KeyPepper {
        KeyPepper(self.derive("warden/api-key-pepper/v1"))
    }

    /// The key that seals each audit record's place in its chain.
    pub fn chain_sealer(&self) -> ChainSealer {
        ChainSealer(self.derive("warden/audit-seal/v1"))
    }

    /// A public fingerprint stored with the database so that a replica
    /// started with another master key refuses to run instead of rejecting
    /// every key.
    pub fn check_value(&self) -> String {
        hex::encode(&self.derive("warden/key-check/v1")[..16])
    }

    /// Encrypts `plaintext` (AES-256-GCM, random nonce); base64 of nonce and
    /// ciphertext.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let cipher = Aes256Gcm::new_from_slice(&self.derive("warden/seal/v1")).expect("32 bytes");
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("AES-GCM encryption does not fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        B64.encode(out)
    }

    /// Decrypts what [`MasterKey::seal`] produced; `None` when it was sealed
    /// under another key or altered.
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        let raw = B64.decode(sealed).ok()?;
        if raw.len() < 12 {
            return None;
        }
        let cipher = Aes256Gcm::new_from_slice(&self.derive("warden/seal/v1")).ok()?;
        cipher
            .decrypt(Nonce::from_slice(&raw[..12]), &raw[12..])
            .ok()
    }
}

/// The secret mixed into every API key hash.
#[derive(Clone)]
pub struct KeyPepper([u8; 32]);

impl KeyPepper {
    /// Hex HMAC-SHA256 of a presented key: the only form ever stored.
    pub fn digest(&self, key: &str) -> String {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Seals audit records: an HMAC over a record's chain, place and hash.
/// The hash chain alone can be rebuilt consistently by anyone who can
/// write the database; a seal can be made only with the master key, which
/// the database does not hold.
#[derive(Clone)]
pub struct ChainSealer([u8; 32]);

impl std::fmt::Debug for ChainSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainSealer(<redacted>)")
    }
}

impl ChainSealer {
    /// Hex HMAC-SHA256 of the chain (organization and environment), the
    /// record's sequence number and its hash, each length-prefixed.
    pub fn seal(
        &self,
        org_id: &str,
        environment: Environment,
        sequence: i64,
        hash: &str,
    ) -> String {
        keyed_digest(
            &self.0,
            &[org_id.as_bytes(), environment.as_str().as_bytes()],
            sequence,
            hash,
        )
    }

    /// The mark a store's settings keep once its records were sealed: made
    /// with the key, so that it cannot be written without it.
    pub fn sealed_store_mark(&self) -> String {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"warden/audit-seals/store-sealed");
        hex::encode(mac.finalize().into_bytes())
    }

    /// Hex HMAC-SHA256, under a key of its own derived from this one, of a
    /// drift profile's snapshot: the agent's chain and id, the sequence it
    /// learned through, and its text. A snapshot is derived from sealed
    /// records; without its own seal, one edited in the database would be
    /// believed where the records it stands for would not.
    pub fn seal_snapshot(
        &self,
        org_id: &str,
        environment: Environment,
        agent_id: &str,
        sequence: i64,
        text: &str,
    ) -> String {
        let mut key = <HmacSha256 as Mac>::new_from_slice(&self.0).expect("any key length");
        key.update(b"warden/drift-snapshot/v1");
        keyed_digest(
            &key.finalize().into_bytes(),
            &[
                org_id.as_bytes(),
                environment.as_str().as_bytes(),
                agent_id.as_bytes(),
            ],
            sequence,
            text,
        )
    }

    /// Whether `seal` is this key's seal of the record's place.
    pub fn vouches(
        &self,
        org_id: &str,
        environment: Environment,
        sequence: i64,
        hash: &str,
        seal: &str,
    ) -> bool {
        digests_match(&self.seal(org_id, environment, sequence, hash), seal)
    }
}

/// Hex HMAC-SHA256 under `key` of `parts`, then `sequence`, then `tail`,
/// every part and the tail length-prefixed so that no two inputs run
/// together.
fn keyed_digest(key: &[u8], parts: &[&[u8]], sequence: i64, tail: &str) -> String {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.update(&sequence.to_be_bytes());
    mac.update(&(tail.len() as u64).to_be_bytes());
    mac.update(tail.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Compares two digests without leaking where they differ.
pub fn digests_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A freshly minted API key; the plaintext exists only until it is shown.
pub struct NewKeySecret {
    pub plaintext: String,
    pub digest: String,
    pub last_four: String,
}

/// The prefix of a key in `environment`: it tells the environment at a glance
/// and lets secret scanners find leaked keys.
pub fn key_prefix(environment: Environment) -> &'static str {
    match environment {
        Environment::Live => "wdn_live_",
        Environment::Test => "wdn_test_",
    }
}

pub fn mint_key(environment: Environment, pepper: &KeyPepper) -> NewKeySecret {
    let random = Alphanumeric.sample_string(&mut rand::thread_rng(), KEY_RANDOM_LEN);
    let plaintext = format!("{}{random}", key_prefix(environment));
    NewKeySecret {
        digest: pepper.digest(&plaintext),
        last_four: random[KEY_RANDOM_LEN - 4..].to_string(),
        plaintext,
    }
}

/// The environment a presented string claims, when it has the shape of a
/// Warden key; anything else is not a key.
pub fn parse_key_shape(presented: &str) -> Option<Environment> {
    let (env, rest) = if let Some(rest) = presented.strip_prefix("wdn_live_") {
        (Environment::Live, rest)
    } else {
        (Environment::Test, presented.strip_prefix("wdn_test_")?)
    };
    (rest.len() == KEY_RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_binds_its_chain_place_and_hash_to_the_master_key() {
        let master = MasterKey::generate();
        let sealer = master.chain_sealer();
        let hash = "ab".repeat(32);
        let seal = sealer.seal("org_a", Environment::Live, 7, &hash);
        assert_eq!(seal.len(), 64);
        assert!(sealer.vouches("org_a", Environment::Live, 7, &hash, &seal));
        // Another chain, place, hash or key: not vouched for.
        assert!(!sealer.vouches("org_b", Environment::Live, 7, &hash, &seal));
        assert!(!sealer.vouches("org_a", Environment::Test, 7, &hash, &seal));
        assert!(!sealer.vouches("org_a", Environment::Live, 8, &hash, &seal));
        assert!(!sealer.vouches("org_a", Environment::Live, 7, &"cd".repeat(32), &seal));
        let other = MasterKey::generate().chain_sealer();
        assert!(!other.vouches("org_a", Environment::Live, 7, &hash, &seal));
        // The parts are length-prefixed: moving a character between the
        // organization and the environment changes the seal.
        assert_ne!(
            sealer.seal("org_a", Environment::Live, 7, &hash),
            sealer.seal("org_al", Environment::Live, 7, &hash)
        );
    }

    #[test]
    fn minted_keys_have_the_documented_shape() {
        let pepper = MasterKey::generate().key_pepper();
        let key = mint_key(Environment::Test, &pepper);
        assert!(key.plaintext.starts_with("wdn_test_"));
        assert_eq!(parse_key_shape(&key.plaintext), Some(Environment::Test));
        assert!(key.plaintext.ends_with(&key.last_four));
        assert_eq!(pepper.digest(&key.plaintext), key.digest);
        assert!(!key.digest.contains(&key.plaintext[9..]));
        assert_eq!(parse_key_shape("wdn_live_short"), None);
    }

    #[test]
    fn digest_depends_on_the_pepper() {
        let a = MasterKey::generate().key_pepper();
        let b = MasterKey::generate().key_pepper();
        assert_ne!(a.digest("wdn_live_x"), b.digest("wdn_live_x"));
        assert!(digests_match(&a.digest("k"), &a.digest("k")));
    }

    #[test]
    fn sealing_round_trips_and_detects_another_key() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"signing key");
        assert_eq!(key.open(&sealed).unwrap(), b"signing key");
        assert!(MasterKey::generate().open(&sealed).is_none());
        let parsed = MasterKey::parse(&key.to_hex()).unwrap();
        assert_eq!(parsed.check_value(), key.check_value());
    }
}
