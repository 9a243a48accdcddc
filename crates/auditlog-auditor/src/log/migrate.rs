//! The one-time move of a store written by earlier releases, whose integrity was a
//! hash chain (`auditlog_store::legacy`), into the Merkle tree: the chain is checked
//! once by its own rules (each row hashes to its entry, each entry follows the one
//! before, the newest signed head matches the chain and its signature), the old head
//! is recorded in the store, and the sealer then seals every event into the tree
//! from the first. A chain that fails its check stops the sealer instead: sealing
//! over it would sign what was tampered with.

use std::path::Path;

use auditlog_store::legacy::{ZERO_HASH, chain_hash, head_message, leaf_hash};
use auditlog_store::{AuditStore, EventRow, Migration, to_hex};

use super::sealer::SealError;

/// Rows and chain entries read per statement.
const PAGE: u32 = 1_000;

/// Problems named in the halt message at most.
const NAMED: usize = 5;

/// Checks and records the earlier chain if the store has one and the tree is
/// still empty; does nothing otherwise. `data_dir` holds the token key that signed
/// the old heads.
pub async fn migrate_if_needed(store: &dyn AuditStore, data_dir: &Path) -> Result<(), SealError> {
    if store.tree_size().await? > 0 || store.migration().await?.is_some() {
        return Ok(());
    }
    let first = store.legacy_chain_after(0, 1).await?;
    if first.is_empty() {
        return Ok(());
    }
    tracing::info!("checking the hash chain of an earlier release before sealing into the tree");
    let check = check_chain(store).await?;
    let head = store.legacy_head().await?;
    let mut problems = check.problems;
    if let Some(head) = &head {
        let message = head_message(&head.head, head.signed_at);
        let pinned = auditlog_auth::KeyPair::load(data_dir)
            .ok()
            .flatten()
            .and_then(|keys| keys.public_key_hex().ok());
        let key = pinned.unwrap_or_else(|| head.public_key.clone());
        let valid = auditlog_store::from_hex(&key).is_some_and(|key| {
            auditlog_auth::keys::verify_signature(&key, message.as_bytes(), &head.signature)
        });
        if !valid {
            problems.push(format!(
                "the signed head at seq {} does not verify with the token key",
                head.head.seq
            ));
        }
        if head.head.size > check.size
            || (head.head.size == check.size && head.head.chain_hash != check.chain_hash)
        {
            problems.push(format!(
                "the signed head (size {}) does not match the chain (size {})",
                head.head.size, check.size
            ));
        }
    }
    if !problems.is_empty() {
        let total = problems.len();
        problems.truncate(NAMED);
        return Err(SealError::Halted(format!(
            "the hash chain of the earlier release fails its own check ({total} problem(s): {}); \
             nothing was moved into the tree",
            problems.join("; ")
        )));
    }
    store
        .save_migration(&Migration {
            migrated_at: auditlog_event::now_ms(),
            chain_size: check.size,
            chain_seq: check.seq,
            chain_hash: to_hex(&check.chain_hash),
            signed_head: head.map(|h| head_message(&h.head, h.signed_at)),
            outcome: "ok".into(),
        })
        .await?;
    tracing::info!(
        entries = check.size,
        "the earlier hash chain checks out; its head is recorded and its events are sealed into \
         the tree"
    );
    Ok(())
}

/// What walking the old chain found.
struct ChainCheck {
    size: i64,
    seq: i64,
    chain_hash: [u8; 32],
    problems: Vec<String>,
}

/// Walks the chain and the rows together in `seq` order.
async fn check_chain(store: &dyn AuditStore) -> Result<ChainCheck, SealError> {
    let mut check = ChainCheck {
        size: 0,
        seq: 0,
        chain_hash: ZERO_HASH,
        problems: Vec::new(),
    };
    let mut rows: Vec<EventRow> = Vec::new();
    let mut row_after = 0;
    let mut entry_after = 0;
    loop {
        let entries = store.legacy_chain_after(entry_after, PAGE).await?;
        let Some(last) = entries.last() else {
            break;
        };
        entry_after = last.seq;
        for entry in entries {
            // Rows up to this entry's seq: any before it were never chained.
            while rows.last().is_none_or(|row| row.seq < entry.seq) {
                let page = store.rows_after(row_after, PAGE).await?;
                let Some(last_row) = page.last() else {
                    break;
                };
                row_after = last_row.seq;
                rows.extend(page);
            }
            let position = rows.partition_point(|row| row.seq < entry.seq);
            for skipped in rows.drain(..position) {
                check.problems.push(format!(
                    "row {} (seq {}) is not in the chain",
                    skipped.id, skipped.seq
                ));
            }
            let row = rows.first().filter(|row| row.seq == entry.seq);
            match row {
                None => check.problems.push(format!(
                    "event {} (seq {}) was removed",
                    entry.id, entry.seq
                )),
                Some(row) => {
                    let leaf = leaf_hash(row.id, row.seq, row.timestamp, &row.body);
                    if row.id != entry.id || leaf != entry.leaf_hash {
                        check.problems.push(format!(
                            "event {} (seq {}) was altered",
                            entry.id, entry.seq
                        ));
                    }
                }
            }
            if row.is_some() {
                rows.remove(0);
            }
            check.size += 1;
            if entry.position != check.size
                || entry.chain_hash != chain_hash(&check.chain_hash, &entry.leaf_hash)
            {
                check.problems.push(format!(
                    "the chain entry at seq {} does not follow the one before",
                    entry.seq
                ));
            }
            check.chain_hash = entry.chain_hash;
            check.seq = entry.seq;
        }
    }
    Ok(check)
}
