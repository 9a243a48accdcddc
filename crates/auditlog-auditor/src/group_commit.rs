//! Group commit of the auditor's own `audit.read` events ([`ReadCommits`]).
//!
//! Every answered read must have its event durable in the store first
//! (`reads::record_read`). One commit per read made every reader queue behind one
//! writer, a commit (and an fsync, on SQLite) each. Here a reader hands its event
//! to one writer task and waits for the outcome of the commit that holds it; the
//! writer commits everything that arrived while the previous commit ran, in one
//! transaction. Under load a commit holds as many reads as came in during the
//! last one, so the commits per second stay what the store can do while the
//! reads per second grow with the batch.
//!
//! What does not change: a read is answered only after the commit holding its
//! event returned `Ok` (the store's own durability: SQLite's WAL with
//! `synchronous = FULL`, or the server's commit). If that commit fails, every
//! read in it gets the error (and is answered 503); nothing is retried behind the
//! reader's back, and nothing is dropped: the queue is bounded, and when it is
//! full a reader waits for room (its request's time limit still applies).
//!
//! Why a writer of its own, not the consume loop's: ingested batches are
//! retried until they commit and are up to 20 000 events, while a read wants an
//! answer now, success or failure. Sharing a transaction would make a read wait
//! behind a large ingest batch, or an ingest batch fail with a read. On SQLite
//! both writers share the store's one write connection anyway, so the commits
//! interleave rather than contend.

use std::sync::{Arc, OnceLock};

use auditlog_event::DataEvent;
use auditlog_store::{AuditStore, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::commit::{Via, insert_measured};

/// Most reads' events in one commit. A commit of this many small rows takes a
/// few milliseconds; more would only make the readers in it wait longer.
const MAX_EVENTS_PER_COMMIT: usize = 2_048;

/// Reads whose events wait for a commit, at most; past it a reader waits for
/// room. Four commits' worth, so that the queue never limits a store that keeps
/// up, and memory stays bounded (an event is well under a kilobyte) if it does
/// not.
const QUEUE_CAPACITY: usize = 4 * MAX_EVENTS_PER_COMMIT;

/// Why a read's event was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordError {
    /// The commit holding the event failed; every read in it gets this error.
    #[error("the store did not commit it: {0}")]
    NotCommitted(#[source] Arc<StoreError>),
    /// The writer task is gone (the service is stopping, or it panicked).
    #[error("the auditor's writer of read records has stopped")]
    WriterStopped,
}

/// One read's event and where its commit's outcome goes.
type Waiting = (DataEvent, oneshot::Sender<Result<(), RecordError>>);

/// A cheap, cloneable handle on the writer that commits the `audit.read` events
/// of many reads at once.
#[derive(Clone)]
pub struct ReadCommits {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn AuditStore>,
    /// The writer's queue, made (and the writer spawned) by the first read, so
    /// that the writer runs on the runtime that serves the reads: in
    /// `auditlog up`, the auditor's own (lower-priority) runtime.
    queue: OnceLock<mpsc::Sender<Waiting>>,
}

impl ReadCommits {
    /// A writer into `store`. The writer task starts with the first read and
    /// ends once every handle is dropped and the events queued are committed.
    pub fn new(store: Arc<dyn AuditStore>) -> Self {
        ReadCommits {
            inner: Arc::new(Inner {
                store,
                queue: OnceLock::new(),
            }),
        }
    }

    /// Commits `event` with the events of other reads waiting now, and returns
    /// once that commit is durable (`Ok`) or failed. Must be called within a
    /// Tokio runtime (every request handler is).
    pub async fn commit(&self, event: DataEvent) -> Result<(), RecordError> {
        let queue = self.inner.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
            tokio::spawn(write(self.inner.store.clone(), receiver));
            sender
        });
        let (committed, outcome) = oneshot::channel();
        queue
            .send((event, committed))
            .await
            .map_err(|_| RecordError::WriterStopped)?;
        outcome.await.unwrap_or(Err(RecordError::WriterStopped))
    }
}

/// The writer: takes everything waiting (up to [`MAX_EVENTS_PER_COMMIT`]),
/// commits it in one transaction and tells each reader the outcome. While it
/// commits, the next batch gathers in the queue.
async fn write(store: Arc<dyn AuditStore>, mut queue: mpsc::Receiver<Waiting>) {
    let mut waiting = Vec::with_capacity(MAX_EVENTS_PER_COMMIT);
    while queue.recv_many(&mut waiting, MAX_EVENTS_PER_COMMIT).await > 0 {
        let (events, readers): (Vec<DataEvent>, Vec<_>) = waiting.drain(..).unzip();
        let outcome = match insert_measured(&*store, &events, Via::Auditor).await {
            Ok(_) => Ok(()),
            Err(err) => {
                tracing::error!(%err, reads = events.len(), "the records of reads could not be committed; those reads are refused");
                Err(RecordError::NotCommitted(Arc::new(err)))
            }
        };
        for reader in readers {
            // A reader that went away (its client hung up) no longer needs it.
            let _ = reader.send(outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use auditlog_event::{Action, ObjectRef, ObjectType};
    use auditlog_store::EventQuery;

    fn read_event(n: i64) -> DataEvent {
        let kind = |name: &str| ObjectType::parse("actorType", name).unwrap();
        DataEvent::new(
            Action::Viewed,
            ObjectRef::new(kind("users"), n),
            ObjectRef::new(kind("data-events"), 0),
            auditlog_event::now_ms(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_read_told_its_event_is_committed_finds_it_stored() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = auditlog_store::open(&url).await.unwrap();
        let commits = ReadCommits::new(store.clone());

        // Act: 500 reads at once.
        let reads: Vec<_> = (0..500)
            .map(|n| {
                let commits = commits.clone();
                tokio::spawn(async move { commits.commit(read_event(n)).await })
            })
            .collect();
        let mut answered = 0;
        for read in reads {
            read.await.unwrap().unwrap();
            answered += 1;
        }

        // Assert
        let stored = store.count(&EventQuery::default()).await.unwrap();
        assert_eq!((answered, stored), (500, 500));
    }
}
