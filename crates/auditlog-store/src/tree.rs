//! What the store keeps of the log's Merkle tree (the arithmetic and formats are
//! `auditlog-tlog`'s): one leaf entry per sealed event (`audit_leaves`: leaf index,
//! the event's `seq` and id, its leaf hash), the hashes of complete subtrees at the
//! tile levels 8, 16, … (`audit_nodes`), every signed checkpoint
//! (`audit_checkpoints`), and the record of the one-time migration from the hash
//! chain of earlier releases (`audit_migrations`).
//!
//! A leaf's bytes are not stored: they are rebuilt from the event's row
//! ([`auditlog_tlog::leaf_bytes`] of its body, `seq` and `received_at`), so that a
//! row changed behind the auditor's back no longer matches its stored leaf hash.
//!
//! Leaf indexes are handed out without gaps in `seq` order, so the tree's size is
//! the last index + 1; the level-0 hashes of a [`auditlog_tlog::Read`] are the
//! leaves' stored hashes, the others come from `audit_nodes`. Every backend's
//! schema declares these tables, and `sql/tree.rs` holds the statements on them.

use auditlog_tlog::Hash;
use uuid::Uuid;

/// What one [`crate::AuditStore::seal`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealOutcome {
    /// Leaves appended by this call.
    pub sealed: u64,
    /// Leaves in the tree after it.
    pub size: u64,
    /// The tree's root after it.
    pub root: Hash,
}

/// A sealed leaf's entry in `audit_leaves`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafEntry {
    /// 0-based position in the tree.
    pub index: u64,
    /// The sealed event's `seq` when it was sealed.
    pub seq: i64,
    /// The sealed event's id when it was sealed, so that a removed row can be named.
    pub id: Uuid,
    /// The leaf hash stored when it was sealed.
    pub hash: Hash,
}

/// A sealed leaf with its bytes rebuilt from the event's row as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub entry: LeafEntry,
    /// [`auditlog_tlog::leaf_bytes`] of the row: what a client hashes.
    pub bytes: String,
}

/// One row of `audit_events`, every column as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub seq: i64,
    pub id: Uuid,
    pub action: String,
    pub timestamp: i64,
    pub actor_type: String,
    pub actor_id: String,
    pub target_type: String,
    pub target_id: String,
    pub received_at: i64,
    pub body: String,
    pub producer_id: Option<String>,
    pub producer_seq: Option<i64>,
    /// The tenant column: `None` for the default tenant.
    pub tenant_id: Option<String>,
    /// The object key columns, on a backend that indexes by them (SQLite); `None`
    /// on the others.
    pub object_keys: Option<ObjectKeys>,
}

/// The `actor_key` and `target_key` columns of a row ([`crate::object_key`]), each
/// `None` when NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectKeys {
    pub actor: Option<i64>,
    pub target: Option<i64>,
}

impl EventRow {
    /// The row's leaf bytes.
    pub fn leaf(&self) -> String {
        auditlog_tlog::leaf_bytes(&self.body, self.seq, self.received_at)
    }
}

/// A signed checkpoint as kept in `audit_checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The tree size it signs.
    pub size: u64,
    /// The whole signed note (C2SP `tlog-checkpoint` body and signature lines).
    pub note: String,
    /// When it was signed, ms since the Unix epoch.
    pub signed_at: i64,
}

/// The record of moving a store from the earlier releases' hash chain into the
/// tree, kept once: the chain was checked by its own rules first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// When it happened, ms since the Unix epoch.
    pub migrated_at: i64,
    /// Entries in the old chain.
    pub chain_size: i64,
    /// The old chain's last sealed `seq`.
    pub chain_seq: i64,
    /// The old chain's last chain hash, lower-case hex.
    pub chain_hash: String,
    /// The old chain's newest signed head as its signed text, if there was one.
    pub signed_head: Option<String>,
    /// What the check found, one line: "ok" or the problems.
    pub outcome: String,
}
