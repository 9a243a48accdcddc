//! The consume loop: takes messages from a transport's [`Inbox`], merges what is
//! waiting into one store transaction, and acknowledges each message only after
//! the store committed it. A store failure is retried with backoff; nothing is
//! acknowledged early and nothing is dropped while its producer still waits.
//!
//! Every commit of events, here or by HTTP ingest, goes through [`insert_measured`],
//! which records the store's metrics: the store itself knows nothing of them.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auditlog_amqp::{AmqpConsumer, AmqpMessage};
use auditlog_emit::embedded::{Delivery, EmbeddedReceiver};
use auditlog_event::{DataEvent, now_ms};
use auditlog_store::{AuditStore, InsertOutcome, StoreError};

/// Most events committed in one transaction.
const MAX_EVENTS_PER_COMMIT: usize = 20_000;

/// Events newly committed to the store, by `via` (`transport`, `http`, or
/// `auditor` for its own records of reads); events already stored (redeliveries)
/// are not counted again.
pub const EVENTS_STORED: &str = "auditlog_auditor_events_stored_total";
/// Events that were already stored when they arrived again, by `via`.
pub const EVENTS_DUPLICATE: &str = "auditlog_auditor_events_duplicate_total";
/// Time of one successful `insert_batch` (its transaction up to the commit), by `via`.
pub const COMMIT_DURATION: &str = "auditlog_auditor_store_commit_duration_seconds";
/// Events per committed batch, by `via`.
pub const COMMIT_BATCH_SIZE: &str = "auditlog_auditor_commit_batch_size";
/// Failed inserts (each retried by the consume loop, or answered 503 by ingest).
pub const STORE_FAILURES: &str = "auditlog_auditor_store_failures_total";
/// Now minus each event's own timestamp when it is committed: how far the log
/// is behind its producers (a producer's clock skew shows here too).
pub const EVENT_LAG: &str = "auditlog_auditor_event_lag_seconds";

/// Gives the store's metrics their `# HELP` text and unit.
pub(crate) fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        EVENTS_STORED,
        Unit::Count,
        "Events newly committed to the store, by via (transport, http, auditor); redeliveries are not counted again"
    );
    describe_counter!(
        EVENTS_DUPLICATE,
        Unit::Count,
        "Events that were already stored when they arrived again, by via"
    );
    describe_histogram!(
        COMMIT_DURATION,
        Unit::Seconds,
        "Time of one successful insert transaction up to its commit, by via"
    );
    describe_histogram!(
        COMMIT_BATCH_SIZE,
        Unit::Count,
        "Events per committed batch, by via"
    );
    describe_counter!(
        STORE_FAILURES,
        Unit::Count,
        "Failed inserts, by via (the consume loop retries them; ingest answers 503)"
    );
    describe_histogram!(
        EVENT_LAG,
        Unit::Seconds,
        "Commit time minus each event's own timestamp: how far the log is behind its producers, by via"
    );
}

/// How a batch reached the store, as the `via` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The consume loop (embedded channel or RabbitMQ).
    Transport,
    /// `POST /api/data-events`.
    Http,
    /// The auditor's own `audit.read` records of reads of the log.
    Auditor,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::Transport => "transport",
            Via::Http => "http",
            Via::Auditor => "auditor",
        }
    }
}

/// `store.insert_batch(events)`, recording its duration, outcome and the events'
/// lag in the metrics.
pub async fn insert_measured(
    store: &dyn AuditStore,
    events: &[DataEvent],
    via: Via,
) -> Result<InsertOutcome, StoreError> {
    let started = Instant::now();
    let result = store.insert_batch(events).await;
    let elapsed = started.elapsed().as_secs_f64();
    let via = via.label();
    match &result {
        Ok(outcome) => {
            metrics::histogram!(COMMIT_DURATION, "via" => via).record(elapsed);
            metrics::histogram!(COMMIT_BATCH_SIZE, "via" => via).record(events.len() as f64);
            metrics::counter!(EVENTS_STORED, "via" => via).increment(outcome.inserted);
            metrics::counter!(EVENTS_DUPLICATE, "via" => via).increment(outcome.duplicates);
            let lag = metrics::histogram!(EVENT_LAG, "via" => via);
            let now = now_ms();
            for event in events {
                lag.record(now.saturating_sub(event.timestamp).max(0) as f64 / 1000.0);
            }
        }
        Err(_) => metrics::counter!(STORE_FAILURES, "via" => via).increment(1),
    }
    result
}

/// Where the auditor's events come from: one implementation per transport.
#[async_trait]
pub trait Inbox: Send {
    type Message: InboxMessage;

    /// The next message; `None` when the inbox is closed for good.
    async fn recv(&mut self) -> Option<Self::Message>;

    /// A message that has already arrived, without waiting for one.
    async fn try_recv(&mut self) -> Option<Self::Message>;

    /// Stops receiving; messages not acknowledged go back to their producer.
    async fn close(self);
}

/// One message of events, acknowledged once they are stored.
#[async_trait]
pub trait InboxMessage: Send {
    fn take_events(&mut self) -> Vec<DataEvent>;

    async fn ack(self);

    /// Whether nobody waits for the acknowledgement any more (then retrying a
    /// failing store for it is pointless: its producer kept the events).
    fn abandoned(&self) -> bool {
        false
    }
}

/// Runs until the inbox closes or `shutdown` completes, then closes the inbox. A
/// commit in progress at shutdown is finished and acknowledged first.
pub async fn run<I: Inbox>(
    mut inbox: I,
    store: Arc<dyn AuditStore>,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    let mut pending: Vec<I::Message> = Vec::new();
    loop {
        let first = tokio::select! {
            message = inbox.recv() => message,
            _ = &mut shutdown => None,
        };
        let Some(mut first) = first else { break };
        let mut events = first.take_events();
        pending.push(first);
        // Merge messages already waiting, so a busy producer gets one commit for many.
        while events.len() < MAX_EVENTS_PER_COMMIT {
            match inbox.try_recv().await {
                Some(mut next) => {
                    events.append(&mut next.take_events());
                    pending.push(next);
                }
                None => break,
            }
        }
        if store_with_retry(&*store, &events, &pending).await {
            for message in pending.drain(..) {
                message.ack().await;
            }
        } else {
            pending.clear();
        }
    }
    inbox.close().await;
}

/// Inserts until the store commits (`true`), or until every producer stopped
/// waiting (`false`).
async fn store_with_retry<M: InboxMessage>(
    store: &dyn AuditStore,
    events: &[DataEvent],
    waiting: &[M],
) -> bool {
    let mut backoff = Duration::from_millis(50);
    loop {
        match insert_measured(store, events, Via::Transport).await {
            Ok(outcome) => {
                tracing::debug!(
                    inserted = outcome.inserted,
                    duplicates = outcome.duplicates,
                    "batch stored"
                );
                return true;
            }
            Err(err) => {
                if waiting.iter().all(InboxMessage::abandoned) {
                    tracing::error!(%err, events = events.len(), "store unavailable and the producer stopped waiting; it keeps the batch");
                    return false;
                }
                tracing::warn!(%err, events = events.len(), retry_in_ms = backoff.as_millis() as u64, "store insert failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[async_trait]
impl Inbox for EmbeddedReceiver {
    type Message = Delivery;

    async fn recv(&mut self) -> Option<Delivery> {
        EmbeddedReceiver::recv(self).await
    }

    async fn try_recv(&mut self) -> Option<Delivery> {
        EmbeddedReceiver::try_recv(self)
    }

    async fn close(mut self) {
        EmbeddedReceiver::close(&mut self);
    }
}

#[async_trait]
impl InboxMessage for Delivery {
    fn take_events(&mut self) -> Vec<DataEvent> {
        std::mem::take(&mut self.events)
    }

    async fn ack(self) {
        Delivery::ack(self);
    }

    fn abandoned(&self) -> bool {
        self.producer_gave_up()
    }
}

#[async_trait]
impl Inbox for AmqpConsumer {
    type Message = AmqpMessage;

    async fn recv(&mut self) -> Option<AmqpMessage> {
        Some(AmqpConsumer::recv(self).await)
    }

    async fn try_recv(&mut self) -> Option<AmqpMessage> {
        AmqpConsumer::try_recv(self).await
    }

    async fn close(self) {
        AmqpConsumer::close(self).await;
    }
}

#[async_trait]
impl InboxMessage for AmqpMessage {
    fn take_events(&mut self) -> Vec<DataEvent> {
        std::mem::take(&mut self.events)
    }

    async fn ack(self) {
        AmqpMessage::ack(self).await;
    }
}
