//! The consume loop: takes batches from the embedded transport, merges what is
//! waiting into one store transaction, and acknowledges each batch only after the
//! store committed it. A store failure is retried with backoff; nothing is
//! acknowledged early and nothing is dropped while its producer still waits.

use std::sync::Arc;
use std::time::Duration;

use auditlog_emit::embedded::{Delivery, EmbeddedReceiver};
use auditlog_store::AuditStore;

/// Most events committed in one transaction.
const MAX_EVENTS_PER_COMMIT: usize = 5_000;

/// Runs until every producer handle of `receiver` is gone and all their batches are
/// stored.
pub async fn run(mut receiver: EmbeddedReceiver, store: Arc<dyn AuditStore>) {
    let mut pending: Vec<Delivery> = Vec::new();
    while let Some(mut first) = receiver.recv().await {
        let mut events = std::mem::take(&mut first.events);
        pending.push(first);
        // Merge batches already waiting, so a busy producer gets one commit for many.
        while events.len() < MAX_EVENTS_PER_COMMIT {
            match receiver.try_recv() {
                Some(mut next) => {
                    events.append(&mut next.events);
                    pending.push(next);
                }
                None => break,
            }
        }
        store_with_retry(&*store, &events, &pending).await;
        for delivery in pending.drain(..) {
            delivery.ack();
        }
    }
}

async fn store_with_retry(
    store: &dyn AuditStore,
    events: &[auditlog_event::DataEvent],
    waiting: &[Delivery],
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.insert_batch(events).await {
            Ok(outcome) => {
                tracing::debug!(
                    inserted = outcome.inserted,
                    duplicates = outcome.duplicates,
                    "batch stored"
                );
                return;
            }
            Err(err) => {
                if waiting.iter().all(Delivery::producer_gave_up) {
                    tracing::error!(%err, events = events.len(), "store unavailable and the producer stopped waiting; it keeps the batch");
                    return;
                }
                tracing::warn!(%err, events = events.len(), retry_in_ms = backoff.as_millis() as u64, "store insert failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
