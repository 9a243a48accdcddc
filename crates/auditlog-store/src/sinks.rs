//! What the store keeps of the log streams (sinks): one row per sink with its
//! definition, its cursor and its delivery lease. The definition is JSON that the
//! store keeps as text without reading it (the auditor's `sinks` module owns its
//! meaning); the cursor is a position in the log's `seq` order; the lease names
//! the one auditor that delivers the sink now, so that several auditors sharing a
//! store do not deliver it at once.
//!
//! The lease is a row lock by time, not a database session as the sealer role
//! is: an auditor takes it when it is free or expired and renews it well before
//! it expires, and a cursor only moves for the lease's holder. The times are the
//! auditors' own clocks, so their clocks must agree to within a fraction of the
//! lease's length.

/// One sink as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRecord {
    /// The sink's name, unique in the store.
    pub name: String,
    /// The sink's definition (JSON), as the caller gave it.
    pub definition: String,
    /// The `seq` of the last event delivered (or passed over by the sink's
    /// filter): delivery resumes after it. 0 before the first event.
    pub cursor: i64,
    /// When the definition was last written, ms since the Unix epoch.
    pub updated_at: i64,
    /// Who holds the delivery lease (an auditor's id), if anyone ever took it.
    pub lease_holder: Option<String>,
    /// When the lease ends unless renewed, ms since the Unix epoch.
    pub lease_until: i64,
}
