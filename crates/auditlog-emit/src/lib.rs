//! The producer SDK. An [`Emitter`] is a cheap, cloneable handle: [`Emitter::emit`]
//! puts the event on a bounded in-memory queue and returns at once, never doing I/O
//! and never waiting. One background task drains the queue in batches and hands
//! them to a [`Transport`], retrying with backoff until the transport confirms.
//!
//! Transports: [`embedded`] (in-process, to an auditor in the same process) and
//! [`http`] (the auditor's HTTP ingest, for separate processes).

pub mod embedded;
mod emitter;
pub mod http;
mod spill;

pub use emitter::{Emitter, EmitterConfig, EmitterStats, EmitterTask};

use async_trait::async_trait;
use auditlog_event::DataEvent;

/// A producer id unique to this emitter instance: `<source>/<uuid v7>`. A restart
/// is a new producer whose sequence starts again at 1.
pub fn new_producer_id(source: &str) -> String {
    format!("{source}/{}", uuid::Uuid::now_v7())
}

/// Errors a transport reports. Every one means "not confirmed": the batch is retried.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the transport is unavailable: {0}")]
    Unavailable(String),
    #[error("the receiver refused the batch: {0}")]
    Refused(String),
}

/// Carries batches of events to the auditor.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Delivers a batch. `Ok` means the receiving side has taken responsibility for
    /// every event in it (for the embedded and HTTP transports: they are committed).
    async fn publish(&self, batch: &[DataEvent]) -> Result<(), TransportError>;
}
