//! Every commit of events to the store, whatever brought them (the consume loop,
//! HTTP ingest, or the auditor's own records of reads), goes through
//! [`insert_measured`], which records the store's metrics: the store itself knows
//! nothing of them. Its own module so that ingest and the read recording do not
//! depend on the consume loop.

use std::time::Instant;

use auditlog_event::{DataEvent, now_ms};
use auditlog_store::{AuditStore, InsertOutcome, StoreError};

/// Events newly committed to the store, by `via` (`transport`, `http`, or
/// `auditor` for its own records of reads); events already stored (redeliveries)
/// are not counted again.
pub const EVENTS_STORED: &str = "auditlog_auditor_events_stored_total";
/// Events that were already stored when they arrived again, by `via`.
pub const EVENTS_DUPLICATE: &str = "auditlog_auditor_events_duplicate_total";
/// Time of one successful `insert_batch` (its transaction up to the commit), by `via`.
pub const COMMIT_DURATION: &str = "auditlog_auditor_store_commit_duration_seconds";
/// Events per committed batch, by `via`.
pub const COMMIT_BATCH_SIZE: &str = "auditlog_auditor_commit_batch_size";
/// Failed inserts (each retried by the consume loop, or answered 503 by ingest).
pub const STORE_FAILURES: &str = "auditlog_auditor_store_failures_total";
/// Now minus each event's own timestamp when it is committed: how far the log
/// is behind its producers (a producer's clock skew shows here too).
pub const EVENT_LAG: &str = "auditlog_auditor_event_lag_seconds";

/// Gives the store's metrics their `# HELP` text and unit.
pub(crate) fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        EVENTS_STORED,
        Unit::Count,
        "Events newly committed to the store, by via (transport, http, auditor); redeliveries are not counted again"
    );
    describe_counter!(
        EVENTS_DUPLICATE,
        Unit::Count,
        "Events that were already stored when they arrived again, by via"
    );
    describe_histogram!(
        COMMIT_DURATION,
        Unit::Seconds,
        "Time of one successful insert transaction up to its commit, by via"
    );
    describe_histogram!(
        COMMIT_BATCH_SIZE,
        Unit::Count,
        "Events per committed batch, by via"
    );
    describe_counter!(
        STORE_FAILURES,
        Unit::Count,
        "Failed inserts, by via (the consume loop retries them; ingest answers 503)"
    );
    describe_histogram!(
        EVENT_LAG,
        Unit::Seconds,
        "Commit time minus each event's own timestamp: how far the log is behind its producers, by via"
    );
}

/// How a batch reached the store, as the `via` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The consume loop (embedded channel or RabbitMQ).
    Transport,
    /// `POST /api/data-events`.
    Http,
    /// The auditor's own `audit.read` records of reads of the log.
    Auditor,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::Transport => "transport",
            Via::Http => "http",
            Via::Auditor => "auditor",
        }
    }
}

/// `store.insert_batch(events)`, recording its duration, outcome and the events'
/// lag in the metrics.
pub async fn insert_measured(
    store: &dyn AuditStore,
    events: &[DataEvent],
    via: Via,
) -> Result<InsertOutcome, StoreError> {
    let started = Instant::now();
    let result = store.insert_batch(events).await;
    let elapsed = started.elapsed().as_secs_f64();
    let via = via.label();
    match &result {
        Ok(outcome) => {
            metrics::histogram!(COMMIT_DURATION, "via" => via).record(elapsed);
            metrics::histogram!(COMMIT_BATCH_SIZE, "via" => via).record(events.len() as f64);
            metrics::counter!(EVENTS_STORED, "via" => via).increment(outcome.inserted);
            metrics::counter!(EVENTS_DUPLICATE, "via" => via).increment(outcome.duplicates);
            let lag = metrics::histogram!(EVENT_LAG, "via" => via);
            let now = now_ms();
            for event in events {
                lag.record(now.saturating_sub(event.timestamp).max(0) as f64 / 1000.0);
            }
        }
        Err(_) => metrics::counter!(STORE_FAILURES, "via" => via).increment(1),
    }
    result
}
