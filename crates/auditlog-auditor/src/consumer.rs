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
use crate::intake::{Delivered, Intake};

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
    let intake = Intake::new(store.clone());
    let mut pending: Vec<I::Message> = Vec::new();
    loop {
        let first = tokio::select! {
            message = inbox.recv() => message,
            _ = &mut shutdown => None,
        };
        let Some(mut first) = first else { break };
        let mut batches = vec![first.take_events()];
        let mut merged = batches[0].len();
        pending.push(first);
        // Merge messages already waiting, so a busy producer gets one commit for many.
        while merged < MAX_EVENTS_PER_COMMIT {
            match inbox.try_recv().await {
                Some(mut next) => {
                    let events = next.take_events();
                    merged += events.len();
                    batches.push(events);
                    pending.push(next);
                }
                None => break,
            }
        }
        let Some(events) = vet_with_retry(&intake, &mut pending, batches).await else {
            pending.clear();
            continue;
        };
        if store_with_retry(&*store, &events, &pending).await {
            I::Message::ack_all(std::mem::take(&mut pending)).await;
        } else {
            pending.clear();
        }
    }
    inbox.close().await;
}

/// The events of each message its sender may deliver, with the auditor's
/// receipt; the others are refused to their message (dead-lettered, on RabbitMQ)
/// before it is acknowledged. `None` when every producer stopped waiting while
/// the store could not be asked who holds a producer id.
async fn vet_with_retry<M: InboxMessage>(
    intake: &Intake,
    messages: &mut [M],
    batches: Vec<Vec<DataEvent>>,
) -> Option<Vec<DataEvent>> {
    let mut accepted = Vec::with_capacity(batches.iter().map(Vec::len).sum());
    for (message, mut events) in messages.iter_mut().zip(batches) {
        let sender = message.sender();
        // Services publish on the transports, rights events included; who may
        // publish there at all is the broker's (or the process's) decision.
        let delivered = Delivered {
            by: sender.principal,
            via: sender.via,
            may_publish_rights: true,
            tenant: None,
        };
        let mut backoff = Backoff::default();
        loop {
            match intake.vet(events, &delivered).await {
                Ok((mut ok, refused)) => {
                    if !refused.is_empty() {
                        let refused = refused.into_iter().map(|r| (r.event, r.reason)).collect();
                        message.refuse(refused).await;
                    }
                    accepted.append(&mut ok);
                    break;
                }
                Err((back, err)) => {
                    if message.abandoned() {
                        tracing::error!(%err, "store unavailable and the producer stopped waiting; it keeps the batch");
                        return None;
                    }
                    tracing::warn!(%err, retry_in_ms = backoff.pause().as_millis() as u64, "could not check producer ids; retrying");
                    tokio::time::sleep(backoff.next_pause()).await;
                    events = back;
                }
            }
        }
    }
    Some(accepted)
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
