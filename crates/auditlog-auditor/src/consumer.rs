//! The consume loop: takes messages from a transport's [`Inbox`], merges what is
//! waiting into one store transaction, and acknowledges each message only after
//! the store committed it. A store failure is retried with backoff; nothing is
//! acknowledged early and nothing is dropped while its producer still waits.
//!
//! The loop is generic over [`auditlog_transport::Inbox`], so the auditor links no
//! transport: the binary hands it the embedded receiver or RabbitMQ's consumer.

use std::future::Future;
use std::sync::Arc;

use auditlog_event::DataEvent;
use auditlog_store::AuditStore;
use auditlog_transport::{Backoff, Inbox, InboxMessage};

use crate::commit::{Via, insert_measured};

/// Most events committed in one transaction.
const MAX_EVENTS_PER_COMMIT: usize = 20_000;

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
    let mut backoff = Backoff::default();
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
                tracing::warn!(%err, events = events.len(), retry_in_ms = backoff.pause().as_millis() as u64, "store insert failed; retrying");
                tokio::time::sleep(backoff.next_pause()).await;
            }
        }
    }
}
