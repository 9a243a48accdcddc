//! The emitter's metrics: their names ([`metric_names`]), their descriptions
//! ([`describe_metrics`]), and the copying of an emitter's counters to the
//! `metrics` facade every [`METRICS_EVERY`], done by its task so that `emit` never
//! touches the facade.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::emitter::EmitterStats;
use crate::queue::QueueDepth;

/// Runs the batching task `run`, copying the counters to the `metrics` facade
/// every [`METRICS_EVERY`] and once more at the end.
pub(crate) async fn run_reporting(
    run: impl Future<Output = ()>,
    stats: Arc<EmitterStats>,
    queue: QueueDepth,
) {
    let mut published = Published::default();
    tokio::pin!(run);
    let mut ticker = tokio::time::interval(METRICS_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut run => break,
            _ = ticker.tick() => {
                published.publish(&stats, queue.get() as u64);
            }
        }
    }
    published.publish(&stats, 0);
}

/// How often the batching task copies its counters to the `metrics` facade.
/// `emit` itself only bumps an atomic: a facade call per event would cost a
/// registry lookup on the request path.
pub const METRICS_EVERY: Duration = Duration::from_secs(1);

/// Names of the emitter's metrics. They carry no labels: a process runs one
/// emitter per producer, and several emitters in one process add up.
pub mod metric_names {
    /// Events accepted by `emit`.
    pub const EMITTED: &str = "auditlog_emitter_events_emitted_total";
    /// Events the transport confirmed.
    pub const DELIVERED: &str = "auditlog_emitter_events_delivered_total";
    /// Events lost (full queue without a spill, or a spill that cannot be written).
    pub const DROPPED: &str = "auditlog_emitter_events_dropped_total";
    /// Events written to the spill file while the transport lagged or was down.
    pub const SPILLED: &str = "auditlog_emitter_events_spilled_total";
    /// Publish attempts that failed and were retried.
    pub const DELIVERY_FAILURES: &str = "auditlog_emitter_delivery_failures_total";
    /// Events in the in-memory queue.
    pub const QUEUED: &str = "auditlog_emitter_queue_events";
    /// Events accepted but not yet confirmed (queued, held, spilled or in flight).
    pub const PENDING: &str = "auditlog_emitter_events_pending";
    /// Bytes waiting in the spill file.
    pub const SPILL_BACKLOG: &str = "auditlog_emitter_spill_backlog_bytes";
    /// Events per batch the transport confirmed.
    pub const BATCH_SIZE: &str = "auditlog_emitter_batch_size";
}

/// The values last copied to the facade, so that each copy adds only the change.
#[derive(Debug, Default)]
struct Published {
    /// Whether every metric was registered yet: the first copy shows even the
    /// zeros, so that a scraper sees `dropped 0` rather than no series at all.
    registered: bool,
    emitted: u64,
    delivered: u64,
    dropped: u64,
    spilled: u64,
    failed_attempts: u64,
    queued: u64,
    pending: u64,
    spill_backlog_bytes: u64,
}

impl Published {
    fn publish(&mut self, stats: &EmitterStats, queued: u64) {
        use metric_names::*;
        let counters = [
            (EMITTED, stats.emitted(), &mut self.emitted),
            (DELIVERED, stats.delivered(), &mut self.delivered),
            (DROPPED, stats.dropped(), &mut self.dropped),
            (SPILLED, stats.spilled(), &mut self.spilled),
            (
                DELIVERY_FAILURES,
                stats.failed_attempts(),
                &mut self.failed_attempts,
            ),
        ];
        let first = !self.registered;
        self.registered = true;
        for (name, now, last) in counters {
            if now > *last || first {
                metrics::counter!(name).increment(now - *last);
                *last = now;
            }
        }
        let gauges = [
            (QUEUED, queued, &mut self.queued),
            (PENDING, stats.pending(), &mut self.pending),
            (
                SPILL_BACKLOG,
                stats.spill_backlog_bytes(),
                &mut self.spill_backlog_bytes,
            ),
        ];
        for (name, now, last) in gauges {
            if now != *last || first {
                // Changes, not values: several emitters in one process add up.
                metrics::gauge!(name).increment(now as f64 - *last as f64);
                *last = now;
            }
        }
    }
}

/// Gives the emitter's metrics their `# HELP` text and unit in the recorder that is
/// installed now: call it right after installing one (descriptions given before
/// are lost).
pub fn describe_metrics() {
    use metric_names::*;
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(EMITTED, Unit::Count, "Events handed to emit");
    describe_counter!(DELIVERED, Unit::Count, "Events the transport confirmed");
    describe_counter!(
        DROPPED,
        Unit::Count,
        "Events lost: a full queue without a spill file, or a spill file that could not be written"
    );
    describe_counter!(
        SPILLED,
        Unit::Count,
        "Events written to the spill file while the transport lagged or was down"
    );
    describe_counter!(
        DELIVERY_FAILURES,
        Unit::Count,
        "Publish attempts that failed and were retried"
    );
    describe_gauge!(QUEUED, Unit::Count, "Events in the in-memory queue");
    describe_gauge!(
        PENDING,
        Unit::Count,
        "Events accepted but not yet confirmed (queued, held, spilled or in flight)"
    );
    describe_gauge!(
        SPILL_BACKLOG,
        Unit::Bytes,
        "Bytes waiting in the spill file"
    );
    describe_histogram!(
        BATCH_SIZE,
        Unit::Count,
        "Events per batch the transport confirmed"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use crate::test_support::{Flaky, event};
    use crate::{Emitter, EmitterConfig};

    #[tokio::test]
    async fn the_counters_reach_the_metrics_facade_by_the_end_of_the_task() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Local to this thread, where the current-thread test runtime also runs
        // the batching task.
        let _guard = metrics::set_default_local_recorder(&recorder);
        let transport = Arc::new(Flaky {
            failures: AtomicUsize::new(2),
            ..Flaky::default()
        });
        let (emitter, task) = Emitter::start(transport, EmitterConfig::default()).unwrap();
        for n in 0..3 {
            emitter.emit(event(n));
        }
        task.shutdown().await;
        let text = handle.render();
        for line in [
            "auditlog_emitter_events_emitted_total 3",
            "auditlog_emitter_events_delivered_total 3",
            "auditlog_emitter_delivery_failures_total 2",
            "auditlog_emitter_events_dropped_total 0",
            "auditlog_emitter_events_spilled_total 0",
            "auditlog_emitter_events_pending 0",
            "auditlog_emitter_batch_size_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }
}
