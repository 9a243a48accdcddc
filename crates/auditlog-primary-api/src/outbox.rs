//! The outbox relay: publishes the mutation events that the data layer staged in
//! the `audit_outbox` table, in the order they were staged, and deletes them once
//! the transport confirmed them.
//!
//! One batch is one transaction: lock the outbox's state row, read the oldest
//! staged events, stamp them with the outbox's producer id and the next numbers of
//! its sequence (a [`Sequence`] resumed from the state row), publish (one
//! [`Publisher`] attempt, bounded in time like the emitter's), then delete exactly
//! those rows and save the sequence, and commit. A crash before the commit leaves
//! rows and sequence as they were, so the same events are published again with the
//! same numbers (the auditor stores each id once); a change rolled back never staged an event at all. The state-row lock
//! makes concurrent relays (several API processes on one database) take turns.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use auditlog_emit::{Publisher, Sequence, Transport, TransportError};
use auditlog_event::DataEvent;
use sqlx::{QueryBuilder, Row};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::db::on_db;
use crate::{AppDb, DataError, Recorder};

/// Most events published in one batch.
const BATCH: i64 = 1_000;
/// How often the outbox is looked at without a wake-up (rows staged by another
/// process on the same database wake nobody here).
const POLL: Duration = Duration::from_millis(250);
/// Longest wait for the transport to confirm one batch.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

const LOCK_STATE: &str = "SELECT producer_id, last_seq FROM audit_outbox_state WHERE id = 1";
const READ_STAGED: &str = "SELECT id, event FROM audit_outbox ORDER BY id LIMIT ?";
const SAVE_SEQ: &str = "UPDATE audit_outbox_state SET last_seq = ? WHERE id = 1";
const COUNT_STAGED: &str = "SELECT COUNT(*) FROM audit_outbox";

/// Why a batch was not relayed; it stays in the outbox and is tried again.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the outbox could not be read or updated: {0}")]
    Database(#[from] DataError),
    #[error("the transport did not confirm the batch: {0}")]
    Transport(#[from] TransportError),
}

impl From<sqlx::Error> for RelayError {
    fn from(err: sqlx::Error) -> Self {
        RelayError::Database(err.into())
    }
}

/// Counters of the relay.
#[derive(Debug, Default)]
pub struct RelayStats {
    published: AtomicU64,
    failed_attempts: AtomicU64,
}

impl RelayStats {
    /// Events published and removed from the outbox.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    /// Batches that failed and stayed in the outbox.
    pub fn failed_attempts(&self) -> u64 {
        self.failed_attempts.load(Ordering::Relaxed)
    }
}

/// Publishes staged mutation events.
#[derive(Clone)]
pub struct OutboxRelay {
    db: AppDb,
    /// Publishes each batch (bounded by [`PUBLISH_TIMEOUT`]) and paces retries.
    publisher: Publisher,
    ready: Arc<Notify>,
    stats: Arc<RelayStats>,
}

impl OutboxRelay {
    /// A relay for the outbox of `db`, woken by `recorder`'s commits.
    pub fn new(db: AppDb, transport: Arc<dyn Transport>, recorder: &Recorder) -> Self {
        OutboxRelay {
            db,
            publisher: Publisher::new(transport, PUBLISH_TIMEOUT),
            ready: recorder.outbox_ready(),
            stats: Arc::new(RelayStats::default()),
        }
    }

    pub fn stats(&self) -> Arc<RelayStats> {
        self.stats.clone()
    }

    /// Relays until `shutdown` completes, then keeps going for up to `grace` to
    /// empty the outbox; what is left stays there for the next start.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>, grace: Duration) {
        tokio::pin!(shutdown);
        loop {
            match self.relay_once().await {
                Ok(0) => {
                    self.publisher.confirmed();
                    tokio::select! {
                        _ = self.ready.notified() => {}
                        _ = tokio::time::sleep(POLL) => {}
                        _ = &mut shutdown => break,
                    }
                }
                Ok(_) => self.publisher.confirmed(),
                Err(err) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%err, retry_in_ms = self.publisher.retry_in().as_millis() as u64, "outbox batch not relayed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(self.publisher.take_retry()) => {}
                        _ = &mut shutdown => break,
                    }
                }
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match self.relay_once().await {
                Ok(0) => return,
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%err, "outbox not emptied yet at shutdown");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        match self.staged().await {
            Ok(left) if left > 0 => {
                tracing::warn!(
                    events = left,
                    "events left in the outbox for the next start"
                );
            }
            _ => {}
        }
    }

    /// Relays one batch; the number of events published (0: the outbox is empty).
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        let published = on_db!(self.db, writer, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let state = sqlx::query(dialect.select_for_update(LOCK_STATE))
                .fetch_one(&mut *tx)
                .await?;
            let producer_id: String = state.try_get("producer_id")?;
            let last_seq: i64 = state.try_get("last_seq")?;
            let mut sequence = Sequence::resume(producer_id, last_seq as u64);
            let rows = sqlx::query(dialect.sql(READ_STAGED))
                .bind(BATCH)
                .fetch_all(&mut *tx)
                .await?;
            if rows.is_empty() {
                tx.rollback().await?;
                0
            } else {
                let mut ids = Vec::with_capacity(rows.len());
                let mut events = Vec::with_capacity(rows.len());
                for row in &rows {
                    ids.push(row.try_get::<i64, _>("id")?);
                    let text: String = row.try_get("event")?;
                    let event = DataEvent::parse_json(&text, 0).map_err(|e| {
                        DataError::Database(format!("a staged event is unreadable: {e}"))
                    })?;
                    events.push(event);
                }
                // Every staged event takes the next number, whatever its JSON says.
                sequence.number(events.iter_mut());
                self.publisher.attempt(&events).await?;
                let mut delete = QueryBuilder::new("DELETE FROM audit_outbox WHERE id IN (");
                let mut list = delete.separated(", ");
                for id in &ids {
                    list.push_bind(*id);
                }
                delete.push(")");
                delete.build().execute(&mut *tx).await?;
                sqlx::query(dialect.sql(SAVE_SEQ))
                    .bind(sequence.last() as i64)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                events.len()
            }
        });
        self.stats
            .published
            .fetch_add(published as u64, Ordering::Relaxed);
        Ok(published)
    }

    /// Events staged and not yet relayed.
    pub async fn staged(&self) -> Result<i64, DataError> {
        Ok(on_db!(self.db, readers, |pool, dialect| {
            sqlx::query(dialect.sql(COUNT_STAGED))
                .fetch_one(pool)
                .await?
                .try_get::<i64, _>(0)?
        }))
    }
}
