//! Tamper evidence for the audit log: each record carries its sequence
//! number, the hash of the record before it and its own hash, so that
//! editing, removing or reordering any record breaks the chain from there on.
//!
//! A record's hash is SHA-256 over the previous hash, the sequence number
//! and the record's canonical bytes (the caller's stable serialization, for
//! instance JSON with sorted keys).

use sha2::{Digest, Sha256};

/// The "previous hash" of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash that links a record to its predecessor.
pub fn link_hash(previous_hash: &str, sequence: u64, canonical: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous_hash.as_bytes());
    hasher.update(sequence.to_be_bytes());
    hasher.update((canonical.len() as u64).to_be_bytes());
    hasher.update(canonical);
    hex::encode(hasher.finalize())
}

/// One stored record as the verifier reads it.
#[derive(Debug, Clone, Copy)]
pub struct StoredLink<'a> {
    pub sequence: u64,
    pub previous_hash: &'a str,
    pub hash: &'a str,
    pub canonical: &'a [u8],
}

/// Where and why a chain stops being consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The first record that does not match.
    pub sequence: u64,
    pub reason: &'static str,
}

/// A walk along a chain from its first record, one record at a time, so
/// that a caller can page through a long chain without holding it.
#[derive(Debug, Clone)]
pub struct ChainWalk {
    expected_previous: String,
    checked: u64,
}

impl Default for ChainWalk {
    fn default() -> Self {
        ChainWalk {
            expected_previous: GENESIS.to_string(),
            checked: 0,
        }
    }
}

impl ChainWalk {
    /// A walk that goes on after record `sequence`, taken as sound, whose
    /// hash is `hash`: the records before an anchor were checked when it
    /// was taken.
    pub fn after(sequence: u64, hash: &str) -> Self {
        ChainWalk {
            expected_previous: hash.to_string(),
            checked: sequence,
        }
    }

    /// Checks the next record: its position, its link to the record
    /// before, and its content against its hash.
    pub fn check(&mut self, record: StoredLink<'_>) -> Result<(), ChainBreak> {
        let fail = |reason| {
            Err(ChainBreak {
                sequence: record.sequence,
                reason,
            })
        };
        if record.sequence != self.checked + 1 {
            return fail("a record is missing or out of order before this one");
        }
        if record.previous_hash != self.expected_previous {
            return fail("the previous hash does not match the record before");
        }
        let hash = link_hash(record.previous_hash, record.sequence, record.canonical);
        if !crate::secret::digests_match(&hash, record.hash) {
            return fail("the record's content does not match its hash");
        }
        self.expected_previous = hash;
        self.checked = record.sequence;
        Ok(())
    }

    /// Records checked so far; also the sequence number of the last.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The hash of the last record checked (the genesis value before any).
    pub fn last_hash(&self) -> &str {
        &self.expected_previous
    }
}

/// Walks records in sequence order from the start of a chain; names the
/// first record whose content, predecessor or position does not match.
pub fn verify<'a>(records: impl IntoIterator<Item = StoredLink<'a>>) -> Result<u64, ChainBreak> {
    let mut walk = ChainWalk::default();
    for record in records {
        walk.check(record)?;
    }
    Ok(walk.checked())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(contents: &[&str]) -> Vec<(u64, String, String, Vec<u8>)> {
        let mut previous = GENESIS.to_string();
        contents
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let sequence = i as u64 + 1;
                let hash = link_hash(&previous, sequence, body.as_bytes());
                let row = (
                    sequence,
                    previous.clone(),
                    hash.clone(),
                    body.as_bytes().to_vec(),
                );
                previous = hash;
                row
            })
            .collect()
    }

    fn links(rows: &[(u64, String, String, Vec<u8>)]) -> Vec<StoredLink<'_>> {
        rows.iter()
            .map(|(sequence, previous, hash, canonical)| StoredLink {
                sequence: *sequence,
                previous_hash: previous,
                hash,
                canonical,
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let rows = chain(&["a", "b", "c"]);
        assert_eq!(verify(links(&rows)), Ok(3));
    }

    #[test]
    fn an_edit_is_named_at_the_edited_record() {
        let mut rows = chain(&[r#"{"decision":"deny"}"#, r#"{"decision":"allow"}"#, "c"]);
        rows[1].3 = br#"{"decision":"deny"}"#.to_vec();
        let err = verify(links(&rows)).unwrap_err();
        assert_eq!(err.sequence, 2);
        assert_eq!(err.reason, "the record's content does not match its hash");
    }

    #[test]
    fn a_removed_or_rehashed_record_is_caught() {
        let mut rows = chain(&["a", "b", "c", "d"]);
        rows.remove(1);
        assert_eq!(verify(links(&rows)).unwrap_err().sequence, 3);

        // Recomputing one record's hash after editing it still breaks the next link.
        let mut rows = chain(&["a", "b", "c"]);
        rows[1].3 = b"B".to_vec();
        rows[1].2 = link_hash(&rows[1].1, 2, b"B");
        let err = verify(links(&rows)).unwrap_err();
        assert_eq!(
            (err.sequence, err.reason),
            (3, "the previous hash does not match the record before")
        );
    }
}
