//! The transport contract: what carries audit events from producers to the auditor,
//! seen from both ends.
//!
//! - The producing half: a [`Transport`] takes a batch of events and answers `Ok`
//!   only once the receiving side has taken responsibility for all of them
//!   ([`TransportError`] otherwise: the producer keeps the batch and retries).
//! - The consuming half: an [`Inbox`] hands the auditor [`InboxMessage`]s, each
//!   acknowledged only after the store committed its events.
//! - [`embedded`]: both halves of the in-process transport `auditlog up` uses.
//! - [`Backoff`]: the one retry pace (50 ms doubling to 5 s) of everything that
//!   retries a transport or a store.
//!
//! It is a crate of its own because both sides need it and neither may own it: the
//! auditor consumes from an [`Inbox`] but must not link the producer SDK
//! (`auditlog-emit`, with its emitter, spill file and HTTP client), and a transport
//! such as `auditlog-amqp` implements both halves without depending on either the
//! SDK or the auditor. A new transport is a crate that implements [`Transport`] for
//! its publishing side and [`Inbox`]/[`InboxMessage`] for its consuming side, and
//! depends on this crate alone among auditlog's.

mod backoff;
pub mod embedded;

pub use backoff::Backoff;

use async_trait::async_trait;
use auditlog_event::DataEvent;

/// Errors a transport reports. Every one means "not confirmed": the batch is retried.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The receiving side could not be reached or did not answer in time.
    #[error("the transport is unavailable: {0}")]
    Unavailable(String),
    /// The receiving side answered but did not take the batch (e.g. its store
    /// failed); says why.
    #[error("the receiver refused the batch: {0}")]
    Refused(String),
}

/// Carries batches of events to the auditor.
///
/// A producer (the SDK's emitter, the outbox relay) calls [`Transport::publish`] a
/// batch at a time and retries a batch until it gets `Ok`; so `Ok` must mean the
/// receiver has the whole batch. A transport of your own, here one that keeps
/// batches in memory:
///
/// ```
/// use std::sync::Mutex;
///
/// use async_trait::async_trait;
/// use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
/// use auditlog_transport::{Transport, TransportError};
///
/// #[derive(Default)]
/// struct Kept(Mutex<Vec<DataEvent>>);
///
/// #[async_trait]
/// impl Transport for Kept {
///     async fn publish(&self, batch: &[DataEvent]) -> Result<(), TransportError> {
///         let mut kept = self
///             .0
///             .lock()
///             .map_err(|_| TransportError::Unavailable("poisoned".into()))?;
///         kept.extend_from_slice(batch);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let kept = Kept::default();
/// let users = ObjectType::parse("actorType", "users")?;
/// let event = DataEvent::new(
///     Action::Deleted,
///     ObjectRef::new(users.clone(), 1),
///     ObjectRef::new(users, 2),
///     1_764_300_000_000,
/// );
/// kept.publish(&[event]).await?;
/// assert_eq!(kept.0.lock().unwrap()[0].action, Action::Deleted);
/// # Ok(())
/// # }
/// ```
///
/// `auditlog-emit`'s documentation shows one handed to an `Emitter`.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Delivers a batch. `Ok` means the receiving side has taken responsibility for
    /// every event in it (for the embedded and HTTP transports: they are committed).
    async fn publish(&self, batch: &[DataEvent]) -> Result<(), TransportError>;

    /// Whether a publish could succeed now (the broker or auditor answers), for
    /// readiness checks; cheap, and without sending events. In-process transports
    /// are always ready.
    async fn probe(&self) -> Result<(), TransportError> {
        Ok(())
    }
}

/// Where the auditor's events come from: one implementation per transport (the
/// [`embedded`] receiver here, `auditlog-amqp`'s consumer in its crate).
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

/// Who delivered a message to the auditor, as far as its transport can tell, and
/// over which transport: the auditor records both on every event of the message
/// (`ingestedBy`, `via`) and binds producer ids to `principal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// `services/api` for the in-process channel of `auditlog up`, `amqp/<user>`
    /// for a RabbitMQ message whose `user-id` the broker validated, `amqp` for
    /// one without.
    pub principal: String,
    /// The transport's name: `embedded`, `amqp`.
    pub via: &'static str,
}

/// One message of events, acknowledged once they are stored.
#[async_trait]
pub trait InboxMessage: Send {
    fn take_events(&mut self) -> Vec<DataEvent>;

    /// Who delivered this message.
    fn sender(&self) -> Sender;

    /// Events of this message the auditor will not store, each with the reason
    /// (e.g. its producer id belongs to another sender). A transport with a
    /// dead-letter queue puts them there; by default they are logged. Called
    /// before the message is acknowledged.
    async fn refuse(&mut self, refused: Vec<(DataEvent, String)>) {
        for (event, reason) in refused {
            tracing::error!(id = %event.id, %reason, "an event was refused and dropped");
        }
    }

    async fn ack(self);

    /// Acknowledges messages whose events were committed together. A transport
    /// that can acknowledge many at once (RabbitMQ's `multiple` flag) overrides it.
    async fn ack_all(messages: Vec<Self>)
    where
        Self: Sized,
    {
        for message in messages {
            message.ack().await;
        }
    }

    /// Whether nobody waits for the acknowledgement any more (then retrying a
    /// failing store for it is pointless: its producer kept the events).
    fn abandoned(&self) -> bool {
        false
    }
}
