//! What every producer of this SDK does between its events and a [`Transport`]:
//! numbering the events of one producer ([`Sequence`]), and publishing a batch with
//! each attempt bounded in time and failures retried at the shared [`Backoff`]
//! pace ([`Publisher`]). The emitter's batching task and the primary API's outbox
//! relay both publish through these, each deciding itself *when* a batch is
//! numbered and what a failure does to it (the emitter spills; the relay leaves the
//! rows in its outbox).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use auditlog_event::DataEvent;
use auditlog_transport::{Backoff, Transport, TransportError};

/// A producer's id and the last number of its sequence handed out. The auditor
/// checks each producer's numbers for holes (`/api/producers`), so every event the
/// producer sends must take the next number, exactly once.
///
/// ```
/// use auditlog_emit::Sequence;
/// # use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
/// # let users = ObjectType::parse("actorType", "users").unwrap();
/// # let viewed = || DataEvent::new(Action::Viewed, ObjectRef::new(users.clone(), 1), ObjectRef::new(users.clone(), 2), 0);
///
/// // Numbers 1 and 2 were handed out before (a relay reads this from its database).
/// let mut sequence = Sequence::resume("billing-outbox/1".into(), 2);
/// let mut batch = vec![viewed(), viewed()];
/// sequence.number(batch.iter_mut());
/// assert_eq!(batch[0].producer_seq, Some(3));
/// assert_eq!(batch[1].producer_id.as_deref(), Some("billing-outbox/1"));
/// assert_eq!(sequence.last(), 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    producer_id: String,
    last: u64,
}

impl Sequence {
    /// A producer that has sent nothing yet: its first event is number 1.
    pub fn new(producer_id: String) -> Self {
        Sequence::resume(producer_id, 0)
    }

    /// A producer whose numbers up to `last` were handed out already.
    pub fn resume(producer_id: String, last: u64) -> Self {
        Sequence { producer_id, last }
    }

    /// Stamps each event, in order, with the producer id and the next number.
    pub fn number<'a>(&mut self, events: impl IntoIterator<Item = &'a mut DataEvent>) {
        for event in events {
            self.last += 1;
            event.producer_id = Some(self.producer_id.clone());
            event.producer_seq = Some(self.last);
        }
    }

    /// The last number handed out (0 before the first).
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// Publishes batches to a transport: one attempt at a time, each given up on after
/// a timeout (a transport that never answers must not stall its producer for
/// ever), and the pause before a retry growing at the [`Backoff`] pace until a
/// batch goes through.
///
/// The caller owns the loop: it calls [`Publisher::attempt`], and after it
/// [`Publisher::confirmed`] or, to retry, waits [`Publisher::take_retry`]. That is
/// what lets the emitter keep emptying its queue while an attempt runs, and the
/// relay publish inside its database transaction.
#[derive(Clone)]
pub struct Publisher {
    transport: Arc<dyn Transport>,
    /// Longest wait for one attempt's confirmation.
    timeout: Duration,
    backoff: Backoff,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Publishes to `transport`, waiting at most `timeout` for each confirmation.
    pub fn new(transport: Arc<dyn Transport>, timeout: Duration) -> Self {
        Publisher {
            transport,
            timeout,
            backoff: Backoff::default(),
        }
    }

    /// One attempt to publish `batch`; no confirmation within the timeout counts as
    /// [`TransportError::Unavailable`]. The future holds no borrow of the publisher,
    /// so the caller may go on with its other work while it runs.
    pub fn attempt<'a>(
        &self,
        batch: &'a [DataEvent],
    ) -> impl Future<Output = Result<(), TransportError>> + Send + use<'a> {
        let transport = self.transport.clone();
        let timeout = self.timeout;
        async move {
            tokio::time::timeout(timeout, transport.publish(batch))
                .await
                .unwrap_or_else(|_| {
                    Err(TransportError::Unavailable(
                        "no confirmation in time".into(),
                    ))
                })
        }
    }

    /// A batch went through: the next failure is retried after the shortest pause.
    pub fn confirmed(&mut self) {
        self.backoff.reset();
    }

    /// How long the next retry will wait, without counting it (for logs, and for
    /// deciding whether there is still time for it).
    pub fn retry_in(&self) -> Duration {
        self.backoff.pause()
    }

    /// The pause to wait before retrying now; the one after it is longer.
    pub fn take_retry(&mut self) -> Duration {
        self.backoff.next_pause()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::event;
    use async_trait::async_trait;

    #[test]
    fn a_new_sequence_numbers_from_one_without_holes() {
        let mut sequence = Sequence::new("api/1".into());
        let mut events: Vec<_> = (0..3).map(event).collect();
        sequence.number(events.iter_mut().take(2));
        sequence.number(events.iter_mut().skip(2));
        let numbers: Vec<_> = events.iter().map(|e| e.producer_seq).collect();
        assert_eq!(numbers, [Some(1), Some(2), Some(3)]);
        assert_eq!(sequence.last(), 3);
    }

    /// A transport that never answers.
    struct Silent;

    #[async_trait]
    impl Transport for Silent {
        async fn publish(&self, _: &[DataEvent]) -> Result<(), TransportError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn an_attempt_without_confirmation_in_time_is_unavailable() {
        let publisher = Publisher::new(Arc::new(Silent), Duration::from_millis(10));
        let outcome = publisher.attempt(&[event(1)]).await;
        assert!(matches!(outcome, Err(TransportError::Unavailable(_))));
    }

    #[test]
    fn retries_slow_down_until_a_batch_is_confirmed() {
        let mut publisher = Publisher::new(Arc::new(Silent), Duration::from_secs(30));
        assert_eq!(publisher.take_retry(), Backoff::FIRST);
        assert_eq!(publisher.retry_in(), Backoff::FIRST * 2);
        publisher.confirmed();
        assert_eq!(publisher.retry_in(), Backoff::FIRST);
    }
}
