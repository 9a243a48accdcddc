//! The sealer: after commit, appends what the store holds to the Merkle tree in
//! `seq` order ([`AuditStore::seal`]) and signs a checkpoint of each new size.
//!
//! It never signs a forgery. Before each signature it checks that the tree still
//! extends the last checkpoint it signed (kept in the journal beside the key,
//! independently of the store): the stored hashes must give that checkpoint's root
//! at its size, the leaves after it must follow without a gap, and the store's own
//! latest checkpoint must carry a valid signature of this log and agree with the
//! tree. On any mismatch it stops sealing for good, says what changed (log, the
//! `auditlog_log_sealer_halted` gauge, `/readyz`) and leaves the evidence as it is:
//! an operator must look before anything is signed again.
//!
//! Several auditors may share one store, but only one seals at a time: the one
//! holding the store's sealer role ([`AuditStore::sealer_role`], a lock held by a
//! database session of its own). The others ask for it every [`ROLE_EVERY`] and
//! take over within a second or two when its holder dies (its session closes) or
//! stops answering (the database ends its idle session after 10 s). They all sign
//! with the same log key, so the log goes on from the last checkpoint whoever
//! signed it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditlog_store::{AuditStore, SealerRole, StoreError, StoredCheckpoint};
use auditlog_tlog::{Checkpoint, Hash, Read, SignedNote, Verifier, base64};

use super::identity::{LogIdentity, LogIdentityError};
use super::{TreeError, migrate, root_at};

/// Events sealed per store transaction at most. A round keeps sealing only after
/// a full transaction, so this is well above what one commit of the consume loop
/// holds (up to 20 000 events): at 10 000, a round that had sealed exactly one
/// commit's 10 000 events took itself to be behind and waited for the next commit
/// before signing.
const SEAL_BATCH: u32 = 50_000;

/// Transactions per round at most (200 000 leaves), so that catching up on a large
/// unsealed store still signs a checkpoint (and notices shutdown) now and then.
const BATCHES_PER_ROUND: u32 = 4;

/// How often the sealer looks for newly stored events: a new event is in a signed
/// checkpoint within a fraction of a second.
pub const SEAL_EVERY: Duration = Duration::from_millis(200);

/// A round starts no new transaction after sealing this long, and signs what it
/// sealed: a sealer behind a steady load still signs about twice a second rather
/// than after [`BATCHES_PER_ROUND`] transactions (seconds), which every event in
/// them would have waited for.
const ROUND_SEALING: Duration = Duration::from_millis(500);

/// How often an auditor without the sealer role asks for it, and how often the
/// holder checks that it still has it (which also keeps its session from being
/// ended as idle).
pub const ROLE_EVERY: Duration = Duration::from_secs(1);

/// 1 while this auditor holds the sealer role (it alone seals), else 0.
pub const SEALER_ROLE: &str = "auditlog_log_sealer_role";
/// Leaves in the tree, as this auditor's sealer last saw it.
pub const TREE_SIZE: &str = "auditlog_log_tree_size";
/// The size of the last checkpoint this auditor signed.
pub const CHECKPOINT_SIZE: &str = "auditlog_log_checkpoint_size";
/// Sealing rounds that failed and will be retried.
pub const SEAL_FAILURES: &str = "auditlog_log_seal_failures_total";
/// 1 once the sealer has stopped because the stored log was changed.
pub const SEALER_HALTED: &str = "auditlog_log_sealer_halted";

/// Gives the sealer's metrics their `# HELP` text and unit.
pub(crate) fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_gauge!(TREE_SIZE, Unit::Count, "Leaves in the log's Merkle tree");
    describe_gauge!(
        CHECKPOINT_SIZE,
        Unit::Count,
        "Tree size of the last checkpoint this auditor signed"
    );
    describe_counter!(
        SEAL_FAILURES,
        Unit::Count,
        "Sealing rounds that failed (each is retried at the next tick)"
    );
    describe_gauge!(
        SEALER_ROLE,
        Unit::Count,
        "1 while this auditor holds the sealer role (one auditor of a shared store seals)"
    );
    describe_gauge!(
        SEALER_HALTED,
        Unit::Count,
        "1 when the sealer stopped signing because the stored log was changed"
    );
}

/// Why a round did not sign.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Worth retrying: the store or the disk failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] LogIdentityError),
    /// The stored log is not what this auditor signed: sealing stops.
    #[error("the sealer stopped: {0}")]
    Halted(String),
}

impl From<TreeError> for SealError {
    fn from(err: TreeError) -> Self {
        match err {
            TreeError::Store(err) => SealError::Store(err),
            TreeError::Proof(err) => SealError::Halted(format!(
                "the stored tree is missing hashes it had ({err}): leaves or nodes were removed"
            )),
        }
    }
}

/// Whether the sealer has stopped, and why: shared with `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct SealerStatus(Arc<Mutex<Option<String>>>);

impl SealerStatus {
    /// The reason the sealer stopped, if it did.
    pub fn halted(&self) -> Option<String> {
        self.0.lock().map(|reason| reason.clone()).unwrap_or(None)
    }

    fn halt(&self, reason: &str) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(reason.to_owned());
        }
    }
}

/// The last checkpoint this auditor knows it signed.
#[derive(Debug, Clone)]
struct Signed {
    checkpoint: Checkpoint,
}

/// One auditor's sealer over one store.
pub struct Sealer {
    store: Arc<dyn AuditStore>,
    identity: LogIdentity,
    status: SealerStatus,
    last: Option<Signed>,
    started: bool,
    /// The sealer role, while this auditor holds it.
    role: Option<Box<dyn SealerRole>>,
    /// When the role was last asked for or checked.
    role_seen: Option<Instant>,
}

impl Sealer {
    pub fn new(store: Arc<dyn AuditStore>, identity: LogIdentity, status: SealerStatus) -> Sealer {
        Sealer {
            store,
            identity,
            status,
            last: None,
            started: false,
            role: None,
            role_seen: None,
        }
    }

    /// Whether this auditor holds the sealer role now: asks for it, or checks that
    /// it still has it, at most every [`ROLE_EVERY`].
    pub async fn hold_role(&mut self) -> bool {
        if self
            .role_seen
            .is_some_and(|seen| seen.elapsed() < ROLE_EVERY)
        {
            return self.role.is_some();
        }
        self.role_seen = Some(Instant::now());
        match &mut self.role {
            Some(role) => {
                if let Err(err) = role.check().await {
                    tracing::warn!(%err, "lost the sealer role; another auditor may take it");
                    self.role = None;
                    metrics::gauge!(SEALER_ROLE).set(0.0);
                }
            }
            None => match self.store.sealer_role().await {
                Ok(Some(role)) => {
                    tracing::info!("this auditor now holds the sealer role: it seals the log");
                    self.role = Some(role);
                    metrics::gauge!(SEALER_ROLE).set(1.0);
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(%err, "could not ask for the sealer role; asking again");
                }
            },
        }
        self.role.is_some()
    }

    /// One round: seal what is there (up to `BATCHES_PER_ROUND` transactions, and
    /// none begun after `ROUND_SEALING`), and sign a checkpoint if the tree grew.
    /// Returns the tree's size.
    pub async fn round(&mut self) -> Result<u64, SealError> {
        if let Some(reason) = self.status.halted() {
            return Err(SealError::Halted(reason));
        }
        let result = self.seal_and_sign().await;
        if let Err(SealError::Halted(reason)) = &result {
            self.status.halt(reason);
            metrics::gauge!(SEALER_HALTED).set(1.0);
            tracing::error!(
                %reason,
                "the stored audit log is not what this auditor signed: no checkpoint will be \
                 signed until an operator has looked (run `auditlog verify`), then restart"
            );
        }
        result
    }

    async fn seal_and_sign(&mut self) -> Result<u64, SealError> {
        if !self.started {
            self.start().await?;
            self.started = true;
        }
        let mut outcome = None;
        let sealing = std::time::Instant::now();
        for _ in 0..BATCHES_PER_ROUND {
            let sealed = self.store.seal(SEAL_BATCH).await?;
            outcome = Some(sealed);
            if sealed.sealed < u64::from(SEAL_BATCH) || sealing.elapsed() >= ROUND_SEALING {
                break;
            }
        }
        let Some(outcome) = outcome else {
            return Ok(0);
        };
        metrics::gauge!(TREE_SIZE).set(outcome.size as f64);
        let signed_size = self.last.as_ref().map_or(0, |s| s.checkpoint.size);
        if outcome.size == 0 || outcome.size == signed_size {
            return Ok(outcome.size);
        }
        self.check_before_signing(outcome.size, &outcome.root)
            .await?;
        let checkpoint = Checkpoint {
            origin: self.identity.origin().to_owned(),
            size: outcome.size,
            root: outcome.root,
        };
        let note = self.identity.sign(&checkpoint)?;
        // The journal first: a checkpoint the store has and the journal lacks would
        // look like one this auditor never signed.
        self.identity.journal(&note)?;
        self.store_checkpoint(checkpoint.size, note).await?;
        metrics::gauge!(CHECKPOINT_SIZE).set(checkpoint.size as f64);
        self.last = Some(Signed { checkpoint });
        Ok(outcome.size)
    }

    /// Gives the store a checkpoint this auditor signed (and journaled).
    async fn store_checkpoint(&self, size: u64, note: String) -> Result<(), SealError> {
        let checkpoint = StoredCheckpoint {
            size,
            note,
            signed_at: auditlog_event::now_ms(),
        };
        Ok(self.store.save_checkpoint(&checkpoint).await?)
    }

    /// Once per process: move a store of the earlier chain into the tree, and pick
    /// up the last checkpoint this auditor signed (or, for a new data directory, the
    /// store's latest one, if this log's key signed it).
    async fn start(&mut self) -> Result<(), SealError> {
        migrate::migrate_if_needed(&*self.store, self.identity.dir()).await?;
        let trusted = self.identity.trusted()?;
        let journal = self.identity.last_signed()?;
        let stored = self.store.latest_checkpoint().await?;
        match (journal, stored) {
            (Some((checkpoint, note)), stored) => {
                // Signed and journaled, but the store never got it (a crash between
                // the two): give it now.
                if stored.as_ref().is_none_or(|s| s.size < checkpoint.size) {
                    self.store_checkpoint(checkpoint.size, note).await?;
                }
                self.last = Some(Signed { checkpoint });
            }
            (None, Some(stored)) => {
                let checkpoint = verified(&stored, &trusted)?;
                self.last = Some(Signed { checkpoint });
            }
            (None, None) => {}
        }
        if let Some(last) = &self.last {
            metrics::gauge!(CHECKPOINT_SIZE).set(last.checkpoint.size as f64);
        }
        Ok(())
    }

    /// The checks that keep the sealer from signing a forged or truncated tree.
    async fn check_before_signing(&mut self, size: u64, root: &Hash) -> Result<(), SealError> {
        let trusted = self.identity.trusted()?;
        // A checkpoint in the store newer than ours is another auditor's sharing this
        // log's key: it must verify, and then it is what the tree must extend.
        if let Some(stored) = self.store.latest_checkpoint().await? {
            let checkpoint = verified(&stored, &trusted)?;
            let known = self.last.as_ref().map_or(0, |s| s.checkpoint.size);
            if checkpoint.size > known {
                self.last = Some(Signed { checkpoint });
            } else if let Some(last) = &self.last
                && checkpoint.size == last.checkpoint.size
                && checkpoint.root != last.checkpoint.root
            {
                return Err(SealError::Halted(format!(
                    "the store's checkpoint of size {} has root {}, not the {} this log signed",
                    checkpoint.size,
                    base64(&checkpoint.root),
                    base64(&last.checkpoint.root)
                )));
            }
        }
        let from = match &self.last {
            None => 0,
            Some(last) => {
                let signed = &last.checkpoint;
                if size < signed.size {
                    return Err(SealError::Halted(format!(
                        "the tree has {size} leaves, fewer than the {} of the last signed \
                         checkpoint: leaves were removed",
                        signed.size
                    )));
                }
                let now = root_at(&*self.store, signed.size).await?;
                if now != signed.root {
                    return Err(SealError::Halted(format!(
                        "the first {} leaves of the stored tree hash to {}, not to the root {} \
                         of the last signed checkpoint: stored leaves or nodes were rewritten",
                        signed.size,
                        base64(&now),
                        base64(&signed.root)
                    )));
                }
                signed.size
            }
        };
        let new = self
            .store
            .tree_hashes(&[Read {
                level: 0,
                start: from,
                end: size,
            }])
            .await?;
        let present = new.first().map_or(0, |(_, hashes)| hashes.len() as u64);
        if present != size - from {
            return Err(SealError::Halted(format!(
                "leaf {} is missing: leaf indexes after the last signed checkpoint have a gap",
                from + present
            )));
        }
        let now = root_at(&*self.store, size).await?;
        if now != *root {
            return Err(SealError::Halted(format!(
                "the stored tree of {size} leaves hashes to {}, not to {} as sealed",
                base64(&now),
                base64(root)
            )));
        }
        Ok(())
    }
}

/// The checkpoint of a stored note whose signature is one of `trusted`'s.
fn verified(stored: &StoredCheckpoint, trusted: &[Verifier]) -> Result<Checkpoint, SealError> {
    let note = SignedNote::parse(&stored.note).map_err(|e| {
        SealError::Halted(format!(
            "the store's checkpoint of size {} is not a note: {e}",
            stored.size
        ))
    })?;
    if !trusted.iter().any(|key| note.verified_by(key)) {
        return Err(SealError::Halted(format!(
            "the store's checkpoint of size {} is not signed by this log's key (if another \
             auditor signs for this store, give it the same {})",
            stored.size,
            super::identity::LOG_KEY_FILE
        )));
    }
    let checkpoint = Checkpoint::parse(&note.text).map_err(|e| {
        SealError::Halted(format!(
            "the store's checkpoint of size {}: {e}",
            stored.size
        ))
    })?;
    if checkpoint.size != stored.size {
        return Err(SealError::Halted(format!(
            "the store files a checkpoint of size {} under size {}",
            checkpoint.size, stored.size
        )));
    }
    Ok(checkpoint)
}

/// Seals and signs every `interval` while this auditor holds the sealer role,
/// until `shutdown` completes (then once more). A failure of the store is logged
/// and retried at the next tick; a changed log stops signing for good (see the
/// module's documentation).
///
/// Spawn it next to the consume loop:
/// `tokio::spawn(run_sealer(Sealer::new(store, identity, status), SEAL_EVERY, shutdown))`.
pub async fn run_sealer(
    mut sealer: Sealer,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    metrics::gauge!(SEALER_HALTED).set(0.0);
    metrics::gauge!(SEALER_ROLE).set(0.0);
    loop {
        let stopping = tokio::select! {
            () = &mut shutdown => true,
            _ = ticker.tick() => false,
        };
        if !sealer.hold_role().await {
            if stopping {
                return;
            }
            continue;
        }
        match sealer.round().await {
            Ok(_) | Err(SealError::Halted(_)) => {}
            Err(err) => {
                metrics::counter!(SEAL_FAILURES).increment(1);
                tracing::warn!(%err, "sealing the audit log failed; retrying");
            }
        }
        if stopping {
            return;
        }
    }
}
