//! The producer SDK. An [`Emitter`] is a cheap, cloneable handle: [`Emitter::emit`]
//! puts the event on a bounded in-memory queue and returns at once, never doing I/O
//! and never waiting. One background task drains the queue in batches and hands
//! them to a [`Transport`], retrying with backoff until the transport confirms.
//!
//! Transports: [`embedded`] (in-process, to an auditor in the same process) and
//! [`http`] (the auditor's HTTP ingest, for separate processes); `auditlog-amqp`'s
//! publisher is a third. Anything else implements [`Transport`]. The transport
//! contract ([`Transport`], [`TransportError`], [`embedded`]) is defined in the
//! `auditlog-transport` crate, which the auditor shares without linking this SDK,
//! and re-exported here, so that a producer needs only this crate.
//!
//! The outbox relay of a service with a transactional outbox publishes through
//! the same [`Publisher`] and numbers its events with a [`Sequence`], as the
//! emitter's task does.
//!
//! # Emitting to an auditor in the same process
//!
//! The [`embedded`] transport hands batches to whatever holds its receiver (in
//! `auditlog up`, the auditor's consume loop, which acknowledges a batch once its
//! store committed it). Here the receiving side is played by a task that keeps
//! what arrives:
//!
//! ```
//! use std::sync::Arc;
//!
//! use auditlog_emit::{Emitter, EmitterConfig, embedded, new_producer_id};
//! use auditlog_event::{Action, DataEvent, ObjectId, ObjectRef, ObjectType};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (transport, mut receiver) = embedded::channel(16);
//! let auditor = tokio::spawn(async move {
//!     let mut arrived = Vec::new();
//!     while let Some(delivery) = receiver.recv().await {
//!         arrived.extend(delivery.events.iter().cloned());
//!         delivery.ack(); // a real auditor acknowledges after its commit
//!     }
//!     arrived
//! });
//!
//! let config = EmitterConfig {
//!     producer_id: Some(new_producer_id("billing")),
//!     ..EmitterConfig::default()
//! };
//! let (emitter, task) = Emitter::start(Arc::new(transport), config)?;
//!
//! // On the request path: build the event and enqueue it; `emit` never waits.
//! let actor = ObjectRef::new(ObjectType::parse("actorType", "users")?, 1);
//! let invoice = ObjectId::parse_text("targetId", "2024-17")?;
//! let target = ObjectRef::new(ObjectType::parse("targetType", "invoices")?, invoice);
//! let mut event = DataEvent::new(Action::Viewed, actor, target, 1_764_300_000_000);
//! event.request_id = Some("my-req-123".into());
//! emitter.emit(event.clone());
//!
//! // At shutdown: everything emitted is delivered before `shutdown` returns.
//! let stats = task.shutdown().await;
//! assert_eq!((stats.emitted(), stats.delivered(), stats.dropped()), (1, 1, 0));
//!
//! // The task has ended and dropped the transport, so the receiver ends too.
//! let arrived = auditor.await?;
//! assert_eq!(arrived.len(), 1);
//! assert_eq!(arrived[0].id, event.id);
//! assert_eq!(arrived[0].request_id.as_deref(), Some("my-req-123"));
//! // Numbered as this producer's first event, so a gap would show at the auditor.
//! assert_eq!(arrived[0].producer_seq, Some(1));
//! # Ok(())
//! # }
//! ```
//!
//! # A transport of your own
//!
//! Whatever implements [`Transport`] can carry an emitter's batches; here one that
//! keeps them in memory:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! use async_trait::async_trait;
//! use auditlog_emit::{Emitter, EmitterConfig, Transport, TransportError};
//! use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
//!
//! #[derive(Default)]
//! struct Kept(Mutex<Vec<DataEvent>>);
//!
//! #[async_trait]
//! impl Transport for Kept {
//!     async fn publish(&self, batch: &[DataEvent]) -> Result<(), TransportError> {
//!         let mut kept = self
//!             .0
//!             .lock()
//!             .map_err(|_| TransportError::Unavailable("poisoned".into()))?;
//!         kept.extend_from_slice(batch);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kept = Arc::new(Kept::default());
//! let (emitter, task) = Emitter::start(kept.clone(), EmitterConfig::default())?;
//! let users = ObjectType::parse("actorType", "users")?;
//! let event = DataEvent::new(
//!     Action::Deleted,
//!     ObjectRef::new(users.clone(), 1),
//!     ObjectRef::new(users, 2),
//!     1_764_300_000_000,
//! );
//! emitter.emit(event);
//! task.shutdown().await;
//! assert_eq!(kept.0.lock().unwrap()[0].action, Action::Deleted);
//! # Ok(())
//! # }
//! ```
//!
//! # Emitting to an auditor over HTTP
//!
//! A service of its own sends to the auditor's `POST /api/data-events` with a
//! service (or admin) token. With a spill directory, events the auditor cannot take
//! yet wait on disk instead of in memory, and survive a restart:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use auditlog_emit::http::HttpTransport;
//! use auditlog_emit::{Emitter, EmitterConfig, new_producer_id};
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! // Asked for each batch, so a token can be renewed while the service runs.
//! let token = std::env::var("AUDITLOG_TOKEN").ok();
//! let transport = HttpTransport::new("http://127.0.0.1:3001", Arc::new(move || token.clone()));
//! let config = EmitterConfig {
//!     spill_dir: Some("/var/lib/billing/audit-spill".into()),
//!     producer_id: Some(new_producer_id("billing")),
//!     ..EmitterConfig::default()
//! };
//! let (emitter, task) = Emitter::start(Arc::new(transport), config)?;
//! // … hand clones of `emitter` to the code that audits, and on shutdown:
//! # drop(emitter);
//! let stats = task.shutdown().await;
//! println!("{} delivered, {} kept for the next start", stats.delivered(), stats.pending());
//! # Ok(())
//! # }
//! ```

mod batcher;
mod emitter;
pub mod http;
mod publisher;
mod queue;
mod reporting;
mod spill;
#[cfg(test)]
mod test_support;

pub use auditlog_transport::{Transport, TransportError, embedded};
pub use emitter::{Emitter, EmitterConfig, EmitterStats, EmitterTask};
pub use publisher::{Publisher, Sequence};
pub use reporting::{METRICS_EVERY, describe_metrics, metric_names};

/// A producer id unique to this emitter instance: `<source>/<uuid v7>`. A restart
/// is a new producer whose sequence starts again at 1.
///
/// ```
/// let id = auditlog_emit::new_producer_id("billing");
/// assert!(id.starts_with("billing/"));
/// assert_ne!(id, auditlog_emit::new_producer_id("billing"));
/// ```
pub fn new_producer_id(source: &str) -> String {
    format!("{source}/{}", uuid::Uuid::now_v7())
}
