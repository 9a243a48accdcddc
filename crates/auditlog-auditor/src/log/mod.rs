//! The verifiable log on the auditor's side: the sealer, which appends what the
//! store committed to its RFC 9162 Merkle tree and signs C2SP checkpoints of it
//! ([`sealer`]), the checkpoint key and the files kept beside it ([`identity`]),
//! the one-time move of a store from the earlier hash chain into the tree
//! ([`migrate`]), and the routes that serve checkpoints, tiles and proofs
//! (`routes`). The formats and arithmetic are `auditlog-tlog`'s.
//!
//! The checkpoint key is not the token key: `log-ed25519.pem` in the data
//! directory. Whoever can edit the database but not read that directory can rewrite
//! rows and even recompute the whole tree, but cannot sign the result, and the
//! sealer refuses to sign over it (it checks the tree against the last checkpoint
//! it signed, which it keeps beside the key).

pub mod identity;
pub mod migrate;
pub(crate) mod routes;
pub mod sealer;

pub use identity::{LogIdentity, LogIdentityError};
pub use sealer::{SEAL_EVERY, SealError, Sealer, SealerStatus, run_sealer};

use auditlog_store::{AuditStore, StoreError};
use auditlog_tlog::{Hash, Plan, ProofError, Read};

/// The root of the store's tree at `size` leaves, from its stored hashes.
pub async fn root_at(store: &dyn AuditStore, size: u64) -> Result<Hash, TreeError> {
    let hashes = plan_hashes(store, &Plan::root(size)).await?;
    hashes
        .first()
        .copied()
        .ok_or(TreeError::Proof(ProofError::MissingHashes {
            level: 0,
            start: 0,
            want: 1,
            got: 0,
        }))
}

/// A plan's hashes (a root or a proof) from the store.
pub async fn plan_hashes(store: &dyn AuditStore, plan: &Plan) -> Result<Vec<Hash>, TreeError> {
    let reads: Vec<Read> = plan.reads();
    let read = if reads.is_empty() {
        Vec::new()
    } else {
        store.tree_hashes(&reads).await?
    };
    Ok(plan.hashes(&read)?)
}

/// Why the tree could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored tree is incomplete: {0}")]
    Proof(#[from] ProofError),
}

/// `readiness` plus a check that the sealer has not stopped over a changed log.
pub fn sealer_check(
    readiness: auditlog_http::health::Readiness,
    status: SealerStatus,
) -> auditlog_http::health::Readiness {
    readiness.with_check(
        "sealer",
        "the stored log is not what this auditor signed: run `auditlog verify` to see what \
         changed, and restart the auditor once it is dealt with",
        move || {
            let status = status.clone();
            async move { status.halted().map_or(Ok(()), Err) }
        },
    )
}
