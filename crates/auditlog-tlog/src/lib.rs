//! The verifiable log's formats and arithmetic, with no I/O: what the store, the
//! auditor's sealer and routes, `auditlog verify` and any outside client agree on.
//!
//! - [`tree`]: the RFC 9162 §2.1 Merkle tree — leaf and interior hashes, which
//!   stored hashes a root or proof needs ([`Plan`]), the sealer's right edge
//!   ([`Frontier`]), and the client-side checks of inclusion and consistency proofs.
//! - [`note`]: C2SP `tlog-checkpoint` bodies, C2SP `signed-note` Ed25519 signatures
//!   and note verifier keys.
//! - [`tiles`]: C2SP `tlog-tiles` paths and entry bundles.
//! - [`leaf`]: the exact bytes of one event's leaf.
//!
//! The store keeps the hashes at levels 0, 8, 16, … (the rows of tlog-tiles' hash
//! tiles); every other complete subtree is computed from at most 128 of those.

pub mod leaf;
pub mod note;
pub mod tiles;
pub mod tree;

pub use leaf::{MAX_LEAF_BYTES, leaf_bytes};
pub use note::{Checkpoint, NoteError, NoteSignature, SignedNote, Verifier, key_hash, sign_note};
pub use tiles::{TILE_HEIGHT, TILE_WIDTH, TilePath, entry_bundle, parse_entry_bundle};
pub use tree::{
    EMPTY_ROOT, Frontier, Hash, Node, Plan, ProofError, Read, leaf_hash, node_hash,
    verify_consistency, verify_inclusion,
};

/// Standard base64 with padding, the encoding of every hash and signature in
/// checkpoints, notes and proofs.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads standard base64; `None` for anything else.
pub fn from_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}
