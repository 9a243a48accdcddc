//! How long committed events waited for a signed checkpoint, read back from the
//! store after a run: whichever process sealed it (the embedded run's sealer or a
//! separate `auditlog auditor`), the store keeps every leaf and every checkpoint
//! with its signing time, so the figures need nothing from the sealer itself.

use std::collections::VecDeque;

use anyhow::{Context, Result};
use auditlog_store::{AuditStore, StoredCheckpoint};

use crate::stats::{Histogram, Percentiles};

/// Leaves read per statement: a page of rows with their bodies, a few MiB.
const LEAF_PAGE: u64 = 10_000;
/// Checkpoints read per statement.
const CHECKPOINT_PAGE: u32 = 1_000;

/// The lag of a run's events, from commit to the first checkpoint that covers them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointLag {
    /// The run's events found sealed (leaves committed at or after the run began).
    pub sealed: u64,
    /// Of those, the ones no stored checkpoint covers (yet).
    pub uncovered: u64,
    /// `signed_at` of the first checkpoint covering each leaf minus the leaf's
    /// `receivedAt` (its commit time), in ms; a clock that stepped back counts 0.
    pub lag_ms: Percentiles,
    /// The same over the leaves committed at or after `later_ms` (see
    /// [`checkpoint_lag`]).
    pub later_lag_ms: Percentiles,
    /// When the checkpoint covering the last of them was signed (ms since the Unix
    /// epoch): the moment the run's events were all in the signed log.
    pub last_signed_at: Option<i64>,
}

/// The lag of every sealed leaf from index `from_index` on whose event was
/// committed at or after `since_ms` (so rows a store held before the run do not
/// count), and separately of those committed at or after `later_ms` (a phase of
/// the run), reading leaves and checkpoints a page at a time: memory stays bounded
/// by a page and by the number of distinct lags in ms.
pub async fn checkpoint_lag(
    store: &dyn AuditStore,
    from_index: u64,
    since_ms: i64,
    later_ms: i64,
) -> Result<CheckpointLag> {
    let end = store.tree_size().await?;
    let mut checkpoints = Checkpoints::new(from_index);
    let mut histogram = Histogram::default();
    let mut later = Histogram::default();
    let mut lag = CheckpointLag::default();
    let mut start = from_index;
    while start < end {
        let page_end = (start + LEAF_PAGE).min(end);
        for leaf in store.leaves(start, page_end).await? {
            let index = leaf.entry.index;
            let committed = received_at(&leaf.bytes)
                .with_context(|| format!("leaf {index} has no receivedAt: {}", leaf.bytes))?;
            if committed < since_ms {
                continue;
            }
            lag.sealed += 1;
            match checkpoints.covering(store, index).await? {
                Some(checkpoint) => {
                    let ms = u64::try_from(checkpoint.signed_at - committed).unwrap_or(0);
                    histogram.record(ms);
                    if committed >= later_ms {
                        later.record(ms);
                    }
                    lag.last_signed_at = Some(checkpoint.signed_at);
                }
                None => lag.uncovered += 1,
            }
        }
        start = page_end;
    }
    lag.lag_ms = histogram.percentiles();
    lag.later_lag_ms = later.percentiles();
    Ok(lag)
}

/// The stored checkpoints in ascending size, read a page at a time as the leaves
/// they cover come by.
struct Checkpoints {
    queue: VecDeque<StoredCheckpoint>,
    /// The largest size read so far: the next page starts above it.
    after: u64,
    exhausted: bool,
}

impl Checkpoints {
    fn new(from_index: u64) -> Self {
        Checkpoints {
            queue: VecDeque::new(),
            after: from_index,
            exhausted: false,
        }
    }

    /// The first checkpoint whose tree holds leaf `index` (size above it), if one
    /// is stored. Indexes must come in ascending order.
    async fn covering(
        &mut self,
        store: &dyn AuditStore,
        index: u64,
    ) -> Result<Option<&StoredCheckpoint>> {
        loop {
            match self.queue.front() {
                Some(checkpoint) if checkpoint.size > index => break,
                // Too small for this leaf, so for every later one.
                Some(_) => {
                    self.queue.pop_front();
                }
                None if self.exhausted => break,
                None => {
                    let page = store.checkpoints_after(self.after, CHECKPOINT_PAGE).await?;
                    match page.last() {
                        Some(last) => self.after = last.size,
                        None => self.exhausted = true,
                    }
                    self.queue.extend(page);
                }
            }
        }
        Ok(self.queue.front())
    }
}

/// The `receivedAt` a leaf ends with (`auditlog_tlog::leaf_bytes` appends it last).
pub fn received_at(leaf: &str) -> Option<i64> {
    let (_, tail) = leaf
        .trim_end()
        .strip_suffix('}')?
        .rsplit_once("\"receivedAt\":")?;
    tail.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_gives_its_commit_time() {
        let leaf = auditlog_tlog::leaf_bytes(r#"{"id":"x","meta":{"receivedAt":1}}"#, 7, 1_700);

        assert_eq!(received_at(&leaf), Some(1_700));
        assert_eq!(received_at(r#"{"id":"x"}"#), None);
    }

    /// The latest commit time among the first `end` leaves.
    async fn last_commit(store: &dyn AuditStore, end: u64) -> i64 {
        let leaves = store.leaves(0, end).await.unwrap();
        leaves
            .iter()
            .filter_map(|leaf| received_at(&leaf.bytes))
            .max()
            .unwrap()
    }

    async fn sign(store: &dyn AuditStore, size: u64, signed_at: i64) {
        let checkpoint = StoredCheckpoint {
            size,
            note: format!("checkpoint {size}"),
            signed_at,
        };
        store.save_checkpoint(&checkpoint).await.unwrap();
    }

    #[tokio::test]
    async fn each_leaf_waits_for_the_first_checkpoint_that_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = auditlog_store::open(&url).await.unwrap();
        let workload = crate::workload::Workload::new(0.5);
        let events: Vec<_> = (0..6)
            .map(|n| workload.event(n, 1_700_000_000_000))
            .collect();
        store.insert_batch(&events).await.unwrap();
        // Leaves 0–2 are signed 100 ms after the last of them was committed, 3–4
        // 300 ms after theirs, and leaf 5 is sealed but not signed.
        store.seal(3).await.unwrap();
        let first = last_commit(&*store, 3).await + 100;
        sign(&*store, 3, first).await;
        store.seal(2).await.unwrap();
        let second = last_commit(&*store, 5).await + 300;
        sign(&*store, 5, second).await;
        store.seal(1).await.unwrap();
        let leaves = store.leaves(0, 6).await.unwrap();
        let lag_of = |index: usize, signed_at: i64| {
            (signed_at - received_at(&leaves[index].bytes).unwrap()) as u64
        };
        let mut expected: Vec<u64> = (0..3).map(|i| lag_of(i, first)).collect();
        expected.extend((3..5).map(|i| lag_of(i, second)));

        let lag = checkpoint_lag(&*store, 0, 0, i64::MAX).await.unwrap();
        let later = checkpoint_lag(&*store, 0, 0, 0).await.unwrap();
        let before_the_run = checkpoint_lag(&*store, 0, i64::MAX, 0).await.unwrap();

        assert_eq!((lag.sealed, lag.uncovered), (6, 1));
        assert_eq!(lag.lag_ms, crate::stats::percentiles(expected));
        assert_eq!(lag.last_signed_at, Some(second));
        assert_eq!(
            lag.later_lag_ms,
            Percentiles::default(),
            "none is that late"
        );
        assert_eq!(later.later_lag_ms, lag.lag_ms, "all are later than 0");
        assert_eq!(
            before_the_run,
            CheckpointLag::default(),
            "events committed before the run do not count"
        );
    }
}
