//! Log streams: sinks that receive every event of the log, in log order, at
//! least once, each from its own cursor in the audit store.
//!
//! - [`definition`]: what a sink is (kind, receiver, filter, batching), parsed
//!   and checked from JSON;
//! - [`configured`]: the config file's `[[sinks]]`, applied at start;
//! - [`mod@format`]: the bytes each kind sends (Standard Webhooks signatures, Splunk
//!   HEC, Datadog, RFC 5424 syslog in octet-counted frames, NDJSON);
//! - [`destination`]: sending one batch to a receiver;
//! - [`files`]: the files sink's rotated NDJSON files;
//! - [`tls`]: rustls (with the `ring` provider) for HTTPS and syslog over TLS;
//! - [`runner`]: the auditor's [`Sinks`] handle, the supervisor and one delivery
//!   task per sink (lease, cursor, retries, status and metrics).
//!
//! It reads the store and speaks to receivers; it knows nothing of the
//! auditor's HTTP API, which manages sinks through [`Sinks`] and the store.

pub mod configured;
pub mod definition;
pub mod destination;
pub mod files;
pub mod format;
pub mod runner;
pub mod tls;

pub use definition::{SinkDefinition, SinkFilter, SinkKind, SinkName};
pub use destination::{Answer, DeliveryError};
pub use runner::{SinkStatus, Sinks, describe_metrics};

/// Errors of the sinks' own layer: definitions that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The definition (or name) is not one a sink can run with.
    #[error("{0}")]
    Invalid(String),
    /// The store could not be read or written (applying configured sinks).
    #[error("the store failed: {0}")]
    Store(String),
}
