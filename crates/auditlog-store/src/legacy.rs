//! The hash chain of earlier releases, kept only to migrate a store written by them
//! (see [`crate::tree::Migration`]): the old rules, so that the chain is checked
//! once by them before its events are sealed into the Merkle tree.
//!
//! - `leaf_hash  = SHA-256(0x00 || id (16 bytes) || seq (8 bytes BE) || timestamp (8 bytes BE) || body)`
//! - `chain_hash = SHA-256(0x01 || previous chain_hash || leaf_hash)`, the previous of
//!   the first entry being 32 zero bytes.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The chain hash before the first entry.
pub const ZERO_HASH: Hash = [0; 32];

/// One sealed event: its place in the chain and its hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    /// The event's `seq` when it was sealed.
    pub seq: i64,
    /// 1-based position in the chain (seqs may have gaps; positions do not).
    pub position: i64,
    /// The event's id when it was sealed, so that a removed row can be named.
    pub id: Uuid,
    pub leaf_hash: Hash,
    pub chain_hash: Hash,
}

/// The end of the chain: the last sealed `seq`, how many entries the chain holds and
/// its last chain hash. An empty chain is `seq` 0, size 0, [`ZERO_HASH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainHead {
    pub seq: i64,
    pub size: i64,
    pub chain_hash: Hash,
}

/// A chain head signed by an auditor's key, kept in the store so that `verify` can
/// check the chain against it (an administrator who rewrites rows and recomputes the
/// chain cannot forge the signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    pub head: ChainHead,
    /// When it was signed, ms since the Unix epoch.
    pub signed_at: i64,
    /// The signing key's id (the JWT `kid` of the same key).
    pub key_id: String,
    /// The Ed25519 public key, 32 bytes as hex.
    pub public_key: String,
    /// Ed25519 signature over [`head_message`].
    pub signature: Vec<u8>,
}

/// The leaf hash of one stored row.
pub fn leaf_hash(id: Uuid, seq: i64, timestamp: i64, body: &str) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(id.as_bytes());
    hasher.update(seq.to_be_bytes());
    hasher.update(timestamp.to_be_bytes());
    hasher.update(body.as_bytes());
    hasher.finalize().into()
}

/// The chain hash following `prev` with `leaf`.
pub fn chain_hash(prev: &Hash, leaf: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(prev);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// The exact text a head signature covers:
/// `auditlog-head:v1:<seq>:<size>:<chain hash hex>:<signed_at>`.
pub fn head_message(head: &ChainHead, signed_at: i64) -> String {
    format!(
        "auditlog-head:v1:{}:{}:{}:{signed_at}",
        head.seq,
        head.size,
        to_hex(&head.chain_hash)
    )
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Reads hex (either case); `None` for anything else.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaf_hash_is_sha256_of_a_zero_byte_and_the_canonical_row() {
        let id = Uuid::from_bytes([7; 16]);
        let mut canonical = vec![0x00];
        canonical.extend_from_slice(&[7; 16]);
        canonical.extend_from_slice(&3_i64.to_be_bytes());
        canonical.extend_from_slice(&1000_i64.to_be_bytes());
        canonical.extend_from_slice(b"{}");

        let expected: Hash = Sha256::digest(&canonical).into();

        assert_eq!(leaf_hash(id, 3, 1000, "{}"), expected);
    }

    #[test]
    fn the_chain_hash_is_sha256_of_a_one_byte_the_previous_and_the_leaf() {
        let mut input = vec![0x01];
        input.extend_from_slice(&ZERO_HASH);
        input.extend_from_slice(&[9; 32]);

        let expected: Hash = Sha256::digest(&input).into();

        assert_eq!(chain_hash(&ZERO_HASH, &[9; 32]), expected);
    }

    #[test]
    fn a_known_vector_keeps_its_hash() {
        // SHA-256 of the single byte 0x00 followed by 32 zero bytes of id/seq/ts
        // and an empty body: pinned so that a change of the canonical form shows.
        let leaf = leaf_hash(Uuid::nil(), 0, 0, "");
        assert_eq!(
            to_hex(&leaf),
            to_hex(&Sha256::digest([0u8; 33]).into_iter().collect::<Vec<_>>())
        );
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(to_hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(from_hex("00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }

    #[test]
    fn the_signed_message_names_every_field_of_the_head() {
        let head = ChainHead {
            seq: 12,
            size: 10,
            chain_hash: [0xab; 32],
        };
        assert_eq!(
            head_message(&head, 99),
            format!("auditlog-head:v1:12:10:{}:99", "ab".repeat(32))
        );
    }
}
