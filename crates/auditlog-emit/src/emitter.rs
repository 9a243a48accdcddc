//! The emitter handle and its batching task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use auditlog_event::DataEvent;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::Transport;

/// Tuning of an emitter.
#[derive(Debug, Clone)]
pub struct EmitterConfig {
    /// Events the in-memory queue holds before `emit` has to drop.
    pub queue_capacity: usize,
    /// Most events handed to the transport at once.
    pub max_batch: usize,
    /// How long shutdown keeps retrying an unconfirmed batch before giving up.
    pub shutdown_grace: Duration,
}

impl Default for EmitterConfig {
    fn default() -> Self {
        EmitterConfig {
            queue_capacity: 65_536,
            max_batch: 1_000,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Counters of what happened to emitted events.
#[derive(Debug, Default)]
pub struct EmitterStats {
    emitted: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    failed_attempts: AtomicU64,
}

impl EmitterStats {
    /// Events accepted by `emit`.
    pub fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Relaxed)
    }
    /// Events the transport confirmed.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    /// Events lost because the queue was full or shutdown ran out of time.
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

/// The cheap, cloneable handle producers call.
#[derive(Debug, Clone)]
pub struct Emitter {
    queue: mpsc::Sender<DataEvent>,
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
    /// Starts the batching task on the current Tokio runtime.
    pub fn start(transport: Arc<dyn Transport>, config: EmitterConfig) -> (Emitter, EmitterTask) {
        let (queue, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(EmitterStats::default());
        let handle = tokio::spawn(run(receiver, stop_rx, transport, config, stats.clone()));
        (
            Emitter {
                queue,
                stats: stats.clone(),
            },
            EmitterTask {
                stop,
                handle,
                stats,
            },
        )
    }

    /// Enqueues an event. Never blocks and never does I/O; if the queue is full the
    /// event is counted as dropped and logged.
    pub fn emit(&self, event: DataEvent) {
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = self.queue.try_send(event) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            let event = match err {
                mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
            };
            tracing::error!(event_id = %event.id, "audit event dropped: emitter queue full or closed");
        }
    }

    pub fn stats(&self) -> &EmitterStats {
        &self.stats
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

    pub fn stats(&self) -> &EmitterStats {
        &self.stats
    }
}

async fn run(
    mut receiver: mpsc::Receiver<DataEvent>,
    mut stop: watch::Receiver<bool>,
    transport: Arc<dyn Transport>,
    config: EmitterConfig,
    stats: Arc<EmitterStats>,
) {
    let mut batch = Vec::with_capacity(config.max_batch);
    let mut retry = Retry {
        stop: stop.clone(),
        grace: config.shutdown_grace,
        deadline: None,
    };
    loop {
        tokio::select! {
            received = receiver.recv_many(&mut batch, config.max_batch) => {
                if received == 0 {
                    break; // every Emitter handle is gone
                }
                deliver(&*transport, &mut batch, &stats, &mut retry).await;
            }
            _ = stopped(&mut stop) => break,
        }
    }
    // Deliver what was emitted before shutdown.
    receiver.close();
    while receiver.recv_many(&mut batch, config.max_batch).await > 0 {
        deliver(&*transport, &mut batch, &stats, &mut retry).await;
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the task handle is gone: nobody can ask any more, so stop too.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// When to stop retrying: never while running; `grace` after shutdown was asked for.
struct Retry {
    stop: watch::Receiver<bool>,
    grace: Duration,
    deadline: Option<tokio::time::Instant>,
}

impl Retry {
    fn gives_up_before(&mut self, wait: Duration) -> bool {
        let now = tokio::time::Instant::now();
        if self.deadline.is_none() && *self.stop.borrow() {
            self.deadline = Some(now + self.grace);
        }
        self.deadline.is_some_and(|deadline| now + wait > deadline)
    }
}

/// Publishes `batch` until the transport confirms it, or until shutdown's grace runs
/// out (then the batch is counted as dropped).
async fn deliver(
    transport: &dyn Transport,
    batch: &mut Vec<DataEvent>,
    stats: &EmitterStats,
    retry: &mut Retry,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match transport.publish(batch).await {
            Ok(()) => {
                stats
                    .delivered
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
                return;
            }
            Err(err) => {
                stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%err, events = batch.len(), retry_in_ms = backoff.as_millis() as u64, "audit batch not delivered; retrying");
            }
        }
        if retry.gives_up_before(backoff) {
            stats
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::error!(
                events = batch.len(),
                "audit batch abandoned at shutdown: transport unavailable"
            );
            batch.clear();
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TransportError;
    use async_trait::async_trait;
    use auditlog_event::{Action, ObjectRef, ObjectType};
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    /// A transport that fails its first `failures` calls, then records batches.
    #[derive(Default)]
    struct Flaky {
        failures: AtomicUsize,
        received: Mutex<Vec<DataEvent>>,
    }

    #[async_trait]
    impl Transport for Flaky {
        async fn publish(&self, batch: &[DataEvent]) -> Result<(), TransportError> {
            if self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(TransportError::Unavailable("down".into()));
            }
            self.received.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }
    }

    fn event(n: i64) -> DataEvent {
        let users = ObjectType::parse("actorType", "users").unwrap();
        DataEvent::new(
            Action::Viewed,
            ObjectRef::new(users.clone(), 1),
            ObjectRef::new(users, n),
            n,
        )
    }

    #[tokio::test]
    async fn shutdown_delivers_everything_emitted_in_order() {
        let transport = Arc::new(Flaky::default());
        let (emitter, task) = Emitter::start(transport.clone(), EmitterConfig::default());
        for n in 0..5_000 {
            emitter.emit(event(n));
        }
        let stats = task.shutdown().await;
        let received = transport.received.lock().unwrap();
        assert_eq!(received.len(), 5_000);
        assert!(
            received
                .iter()
                .enumerate()
                .all(|(i, e)| e.timestamp == i as i64)
        );
        assert_eq!(stats.delivered(), 5_000);
        assert_eq!(stats.dropped(), 0);
    }

    #[tokio::test]
    async fn a_failing_transport_is_retried_until_it_confirms() {
        let transport = Arc::new(Flaky {
            failures: AtomicUsize::new(3),
            ..Flaky::default()
        });
        let (emitter, task) = Emitter::start(transport.clone(), EmitterConfig::default());
        emitter.emit(event(1));
        let stats = task.shutdown().await;
        assert_eq!(transport.received.lock().unwrap().len(), 1);
        assert_eq!(stats.failed_attempts(), 3);
        assert_eq!(stats.dropped(), 0);
    }

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
        };
        let (emitter, task) = Emitter::start(transport, config);
        for n in 0..100 {
            emitter.emit(event(n));
        }
        assert!(emitter.stats().dropped() > 0);
        let stats = task.shutdown().await;
        assert_eq!(stats.delivered(), 0);
        assert_eq!(stats.dropped(), 100);
    }
}
