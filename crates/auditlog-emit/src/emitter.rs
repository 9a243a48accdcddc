//! The emitter handle ([`Emitter`]), its tuning ([`EmitterConfig`]), its counters
//! ([`EmitterStats`]) and the handle on its running task ([`EmitterTask`]); see the
//! crate documentation for a whole example. What the task does is in `batcher`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use auditlog_event::DataEvent;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Transport;
use crate::batcher::Batcher;
use crate::queue::{QueueSender, queue};

/// Tuning of an emitter. The defaults suit a service emitting thousands of events
/// a second; a producer that must not lose events across a crash or a long outage
/// sets a spill directory, and one whose completeness the auditor should check
/// sets a producer id:
///
/// ```
/// use auditlog_emit::{EmitterConfig, new_producer_id};
///
/// let config = EmitterConfig {
///     spill_dir: Some(std::env::temp_dir().join("billing-audit-spill")),
///     producer_id: Some(new_producer_id("billing")),
///     ..EmitterConfig::default()
/// };
/// assert_eq!(config.max_batch, 5_000);
/// ```
#[derive(Debug, Clone)]
pub struct EmitterConfig {
    /// Events the in-memory queue holds. Once a delivery has failed, the background
    /// task moves what arrives to the spill file at once; while an attempt is only
    /// slow, it holds arrivals up to half of this before spilling them. With no
    /// spill, a full queue makes `emit` drop.
    /// The queue's slots are allocated when the emitter starts, so that `emit`
    /// never allocates: about 310 bytes each, 20 MB at the default.
    /// While the spill file is being written, the task goes on emptying the queue
    /// into memory (each time a batch's worth is queued), up to as many events
    /// again: at most about twice this many events (plus the batch in flight) are
    /// held in memory.
    pub queue_capacity: usize,
    /// Most events handed to the transport at once.
    pub max_batch: usize,
    /// How long a batch that is not full waits for more events before it is sent.
    /// Zero sends whatever is queued at once: the lowest latency, but under load
    /// many small batches, each a separate commit for the auditor.
    pub linger: Duration,
    /// How long shutdown keeps retrying an unconfirmed batch before giving up
    /// (without a spill) or spilling it for the next start (with one).
    pub shutdown_grace: Duration,
    /// Longest wait for one publish to be confirmed before it counts as failed.
    pub publish_timeout: Duration,
    /// Directory of the spill file. `None` is the drop policy: events that do not
    /// fit in memory are dropped and counted.
    pub spill_dir: Option<PathBuf>,
    /// When set, every event is stamped with this producer id and the next number
    /// of its sequence (1, 2, 3…), so the auditor can prove none went missing.
    pub producer_id: Option<String>,
}

impl Default for EmitterConfig {
    fn default() -> Self {
        EmitterConfig {
            queue_capacity: 65_536,
            max_batch: 5_000,
            linger: Duration::from_millis(20),
            shutdown_grace: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(30),
            spill_dir: None,
            producer_id: None,
        }
    }
}

/// Counters of what happened to emitted events, shared by an [`Emitter`] and its
/// [`EmitterTask`]; read at any time, final once [`EmitterTask::shutdown`] returned.
#[derive(Debug, Default)]
pub struct EmitterStats {
    pub(crate) emitted: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) failed_attempts: AtomicU64,
    pub(crate) spilled: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) spill_backlog_bytes: AtomicU64,
}

impl EmitterStats {
    /// Events written to the spill file (they are delivered later).
    pub fn spilled(&self) -> u64 {
        self.spilled.load(Ordering::Relaxed)
    }
    /// Events of the batch being published right now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
    /// Bytes of events waiting in the spill file.
    pub fn spill_backlog_bytes(&self) -> u64 {
        self.spill_backlog_bytes.load(Ordering::Relaxed)
    }
    /// Events accepted by `emit`.
    pub fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Relaxed)
    }
    /// Events the transport confirmed.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    /// Events lost because the queue was full or shutdown ran out of time with no
    /// spill configured. Stays 0 unless the drop policy was chosen.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Publish attempts that failed and were retried.
    pub fn failed_attempts(&self) -> u64 {
        self.failed_attempts.load(Ordering::Relaxed)
    }
    /// Accepted but not yet confirmed.
    pub fn pending(&self) -> u64 {
        self.emitted()
            .saturating_sub(self.delivered())
            .saturating_sub(self.dropped())
    }
}

/// The cheap, cloneable handle producers call: clone it into every part of the
/// service that audits. [`Emitter::emit`] only enqueues; the [`EmitterTask`]
/// started with it delivers. The crate documentation has a whole example.
#[derive(Debug, Clone)]
pub struct Emitter {
    /// The queue's sending end; `emit` rings its doorbell once a batch's worth is
    /// queued (see `queue::Doorbell`).
    queue: Arc<QueueSender>,
    stats: Arc<EmitterStats>,
}

/// The running batching task; [`EmitterTask::shutdown`] drains it.
#[derive(Debug)]
pub struct EmitterTask {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
    stats: Arc<EmitterStats>,
}

impl Emitter {
    /// Starts the batching task on the current Tokio runtime. With a spill
    /// directory, events a previous run left there are delivered first.
    ///
    /// Fails only when the spill directory or file cannot be created or read.
    pub fn start(
        transport: Arc<dyn Transport>,
        config: EmitterConfig,
    ) -> Result<(Emitter, EmitterTask), std::io::Error> {
        // The doorbell rings at a full batch's worth, but well before the queue is
        // full: the task then has three quarters of the queue's room to come and
        // empty it.
        let (queue, receiver) = queue(
            config.queue_capacity.max(2),
            config.max_batch.min(config.queue_capacity / 4).max(1),
        );
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(EmitterStats::default());
        let depth = receiver.depth();
        let batcher = Batcher::new(receiver, stop_rx, transport, stats.clone(), config)?;
        let handle = tokio::spawn(crate::reporting::run_reporting(
            batcher.run(),
            stats.clone(),
            depth,
        ));
        Ok((
            Emitter {
                queue: Arc::new(queue),
                stats: stats.clone(),
            },
            EmitterTask {
                stop,
                handle,
                stats,
            },
        ))
    }

    /// Enqueues an event. Never blocks and never does I/O; if the queue is full the
    /// event is counted as dropped and logged.
    pub fn emit(&self, event: DataEvent) {
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        if let Err(id) = self.queue.push(event) {
            self.dropped(id);
        }
    }

    #[cold]
    fn dropped(&self, event_id: uuid::Uuid) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::error!(%event_id, "audit event dropped: emitter queue full or closed");
    }

    /// What happened to this emitter's events so far.
    pub fn stats(&self) -> &EmitterStats {
        &self.stats
    }

    /// Events waiting in the in-memory queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

impl EmitterTask {
    /// Stops taking new batches from a live queue, delivers everything already
    /// emitted (retrying for up to the configured grace), then ends.
    pub async fn shutdown(self) -> Arc<EmitterStats> {
        let _ = self.stop.send(true);
        if let Err(err) = self.handle.await {
            tracing::error!(%err, "emitter task failed");
        }
        self.stats
    }

    /// What happened to the emitter's events so far (the same counters as
    /// [`Emitter::stats`]).
    pub fn stats(&self) -> &EmitterStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::test_support::{Flaky, event};

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let transport = Arc::new(Flaky {
            failures: AtomicUsize::new(usize::MAX),
            ..Flaky::default()
        });
        let config = EmitterConfig {
            queue_capacity: 4,
            max_batch: 1,
            shutdown_grace: Duration::from_millis(10),
            ..EmitterConfig::default()
        };
        let (emitter, task) = Emitter::start(transport, config).unwrap();
        for n in 0..100 {
            emitter.emit(event(n));
        }
        assert!(emitter.stats().dropped() > 0);
        let stats = task.shutdown().await;
        assert_eq!(stats.delivered(), 0);
        assert_eq!(stats.dropped(), 100);
    }
}
