//! The consume loop: takes messages from a transport's [`Inbox`], merges what is
//! waiting into one store transaction, and acknowledges each message only after
//! the store committed it. A store failure is retried with backoff; nothing is
//! acknowledged early and nothing is dropped while its producer still waits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use auditlog_amqp::{AmqpConsumer, AmqpMessage};
use auditlog_emit::embedded::{Delivery, EmbeddedReceiver};
use auditlog_event::DataEvent;
use auditlog_store::AuditStore;

use crate::commit::{Via, insert_measured};

/// Most events committed in one transaction.
const MAX_EVENTS_PER_COMMIT: usize = 20_000;

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
