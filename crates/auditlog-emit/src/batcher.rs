//! The emitter's background task: moves events from the queue (or the spill) to the
//! transport, one batch at a time, in order. A batch lingers to fill (up to
//! [`EmitterConfig::linger`]), is numbered as its events leave the queue, and is
//! published through a [`Publisher`] until the transport confirms it. What the
//! task does while the transport lags or is down (holding events, the spill file,
//! giving up at shutdown) is in `spilling`.

mod spilling;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use auditlog_event::DataEvent;
use auditlog_transport::{Backoff, Transport, TransportError};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::emitter::{EmitterConfig, EmitterStats};
use crate::publisher::{Publisher, Sequence};
use crate::queue::{Doorbell, QueueReceiver};
use crate::reporting::metric_names;
use crate::spill::Spill;

/// The background task: moves events from the queue (or the spill) to the
/// transport, one batch at a time, in order.
pub(crate) struct Batcher {
    receiver: QueueReceiver,
    /// The queue's doorbell, waited on while the task does something else.
    doorbell: Doorbell,
    stop: watch::Receiver<bool>,
    /// Publishes each batch, bounded by `config.publish_timeout`, and paces retries.
    publisher: Publisher,
    config: EmitterConfig,
    stats: Arc<EmitterStats>,
    /// The spill, shared with the blocking thread that does its I/O (one operation
    /// at a time: the batcher awaits each before the next).
    spill: Option<Arc<Mutex<Spill>>>,
    /// Events taken off the queue while a batch was in flight (only with a spill):
    /// newer than the spill's backlog, older than what is still queued.
    pending: Vec<DataEvent>,
    /// Size of `pending` at which it is written to the spill while an attempt runs
    /// (after a failed one, it is written at once).
    high_water: usize,
    /// Most events `pending` takes while the spill is busy; past it they wait in
    /// the queue.
    max_held: usize,
    /// The producer's numbering. Events are numbered here, as they leave the
    /// queue, so that `emit` stays a bare enqueue and the numbers follow the
    /// queue's order exactly.
    sequence: Option<Sequence>,
}

/// The batch being delivered, and where it came from.
struct Head {
    events: Vec<DataEvent>,
    /// Spill offset to confirm once delivered, when the batch came from the spill.
    spill_end: Option<u64>,
}

impl Batcher {
    /// The task for the queue `receiver`, with the spill file of
    /// `config.spill_dir` opened (it fails only if that cannot be done).
    pub(crate) fn new(
        receiver: QueueReceiver,
        stop: watch::Receiver<bool>,
        transport: Arc<dyn Transport>,
        stats: Arc<EmitterStats>,
        config: EmitterConfig,
    ) -> std::io::Result<Batcher> {
        let spill = config
            .spill_dir
            .as_deref()
            .map(Spill::open)
            .transpose()?
            .map(|spill| Arc::new(Mutex::new(spill)));
        Ok(Batcher {
            doorbell: receiver.doorbell(),
            receiver,
            stop,
            publisher: Publisher::new(transport, config.publish_timeout),
            stats,
            spill,
            sequence: config.producer_id.clone().map(Sequence::new),
            pending: Vec::new(),
            high_water: config.queue_capacity.max(2) / 2,
            max_held: config.queue_capacity.max(2),
            config,
        })
    }

    pub(crate) async fn run(mut self) {
        let mut head = Head {
            events: Vec::with_capacity(self.config.max_batch),
            spill_end: None,
        };
        let mut stopping = false;
        let mut deadline: Option<Instant> = None;
        loop {
            if head.events.is_empty() && !self.fill(&mut head, &mut stopping).await {
                break;
            }
            if head.events.is_empty() {
                continue;
            }
            self.stats
                .in_flight
                .store(head.events.len() as u64, Ordering::Relaxed);
            match self.publish(&head.events).await {
                Ok(()) => {
                    self.delivered(&mut head).await;
                    self.publisher.confirmed();
                    continue;
                }
                Err(err) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%err, events = head.events.len(), retry_in_ms = self.publisher.retry_in().as_millis() as u64, "audit batch not delivered; retrying");
                }
            }
            stopping |= *self.stop.borrow();
            if stopping {
                let now = Instant::now();
                let deadline = *deadline.get_or_insert(now + self.config.shutdown_grace);
                if now + self.publisher.retry_in() > deadline {
                    self.give_up(&mut head).await;
                    continue;
                }
            }
            let pause = self.publisher.take_retry();
            self.wait_spilling(pause).await;
        }
        self.stats.in_flight.store(0, Ordering::Relaxed);
    }

    /// Takes the next batch: the spill's backlog first (strict order), then the
    /// queue. Returns `false` when there is nothing more to do, ever.
    async fn fill(&mut self, head: &mut Head, stopping: &mut bool) -> bool {
        if self.spill_has_backlog() {
            // Whatever waits in memory is newer than the backlog: it goes behind it.
            self.spill_pending_and_queued().await;
            let max = self.config.max_batch;
            let Some(read) = self.on_spill(move |spill| spill.read_chunk(max)).await else {
                return true;
            };
            match read {
                Ok(chunk) => {
                    if chunk.unreadable > 0 {
                        self.stats
                            .dropped
                            .fetch_add(chunk.unreadable, Ordering::Relaxed);
                    }
                    head.events = chunk.events;
                    if head.events.is_empty() {
                        self.confirm_spill(chunk.end).await;
                    } else {
                        head.spill_end = Some(chunk.end);
                    }
                }
                Err(err) => {
                    tracing::error!(%err, "the spill file cannot be read; retrying");
                    tokio::time::sleep(Backoff::MAX).await;
                }
            }
            return true;
        }
        let max = self.config.max_batch;
        if !self.pending.is_empty() {
            let take = self.pending.len().min(max);
            head.events.extend(self.pending.drain(..take));
        } else if *stopping {
            // Shutdown: take what is left, without waiting for more.
            self.take_queued(&mut head.events, max);
            self.stamp(&mut head.events);
            return !head.events.is_empty();
        } else {
            self.receive(&mut head.events, max, stopping).await;
        }
        if self.pending.is_empty() && !*stopping {
            self.linger(head, stopping).await;
        }
        self.stamp(&mut head.events);
        true
    }

    /// Tops the batch up from the queue until it is full or `linger` has passed.
    /// Under load this turns many small deliveries (each a commit on the auditor's
    /// side) into few large ones. The queue is emptied whenever the doorbell rings,
    /// so it cannot fill while the batch waits, and once more at the deadline.
    async fn linger(&mut self, head: &mut Head, stopping: &mut bool) {
        let max = self.config.max_batch;
        let until = Instant::now() + self.config.linger;
        let doorbell = self.doorbell.clone();
        loop {
            self.take_queued(&mut head.events, max);
            if head.events.len() >= max {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => {
                    self.take_queued(&mut head.events, max);
                    return;
                }
                () = doorbell.rung() => {}
                () = stopped(&mut self.stop) => {
                    *stopping = true;
                    self.receiver.close();
                    return;
                }
            }
        }
    }

    /// Waits for the queue to bring events (at most `room`, appended to `events`).
    /// Sets `stopping` once the task is stopping: asked to, or every `Emitter`
    /// handle is gone.
    async fn receive(&mut self, events: &mut Vec<DataEvent>, room: usize, stopping: &mut bool) {
        tokio::select! {
            received = self.receiver.recv_many(events, room) => *stopping |= received == 0,
            () = stopped(&mut self.stop) => {
                *stopping = true;
                self.receiver.close();
            }
        }
    }

    /// Moves queued events to `events`, without waiting, until it holds `max`.
    fn take_queued(&mut self, events: &mut Vec<DataEvent>, max: usize) {
        self.receiver.take(events, max);
    }

    /// Up to `max` queued events, taken without waiting and numbered.
    fn take_numbered(&mut self, max: usize) -> Vec<DataEvent> {
        let mut events = Vec::new();
        self.take_queued(&mut events, max);
        self.stamp(&mut events);
        events
    }

    /// One publish attempt, bounded in time. With a spill, events emitted while it
    /// waits are taken off the queue whenever the doorbell rings (and spilled past
    /// the high-water mark) so that `emit` never finds the queue full.
    async fn publish(&mut self, events: &[DataEvent]) -> Result<(), TransportError> {
        let attempt = self.publisher.attempt(events);
        tokio::pin!(attempt);
        let doorbell = self.doorbell.clone();
        loop {
            tokio::select! {
                outcome = &mut attempt => return outcome,
                () = doorbell.rung(), if self.spill.is_some() => self.hold_queued().await,
            }
        }
    }

    /// Numbers the events that just left the queue (those not numbered yet).
    fn stamp(&mut self, events: &mut [DataEvent]) {
        if let Some(sequence) = self.sequence.as_mut() {
            sequence.number(events.iter_mut().filter(|e| e.producer_seq.is_none()));
        }
    }

    async fn delivered(&mut self, head: &mut Head) {
        self.stats
            .delivered
            .fetch_add(head.events.len() as u64, Ordering::Relaxed);
        metrics::histogram!(metric_names::BATCH_SIZE).record(head.events.len() as f64);
        head.events.clear();
        self.stats.in_flight.store(0, Ordering::Relaxed);
        if let Some(end) = head.spill_end.take() {
            self.confirm_spill(end).await;
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the task handle is gone: nobody can ask any more, so stop too.
    if stop.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use auditlog_event::DataEvent;

    use crate::test_support::{Flaky, event};
    use crate::{Emitter, EmitterConfig, EmitterTask, Transport, TransportError};

    #[tokio::test]
    async fn shutdown_delivers_everything_emitted_in_order() {
        let transport = Arc::new(Flaky::default());
        let (emitter, task) = Emitter::start(transport.clone(), EmitterConfig::default()).unwrap();
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
    async fn events_are_stamped_with_the_producer_and_a_gapless_sequence() {
        let transport = Arc::new(Flaky::default());
        let config = EmitterConfig {
            producer_id: Some("api/test".into()),
            ..EmitterConfig::default()
        };
        let (emitter, task) = Emitter::start(transport.clone(), config).unwrap();
        for n in 0..100 {
            emitter.clone().emit(event(n));
        }
        task.shutdown().await;
        let received = transport.received.lock().unwrap();
        let seqs: Vec<u64> = received.iter().filter_map(|e| e.producer_seq).collect();
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
        assert!(
            received
                .iter()
                .all(|e| e.producer_id.as_deref() == Some("api/test"))
        );
    }

    #[tokio::test]
    async fn a_failing_transport_is_retried_until_it_confirms() {
        let transport = Arc::new(Flaky {
            failures: AtomicUsize::new(3),
            ..Flaky::default()
        });
        let (emitter, task) = Emitter::start(transport.clone(), EmitterConfig::default()).unwrap();
        emitter.emit(event(1));
        let stats = task.shutdown().await;
        assert_eq!(transport.received.lock().unwrap().len(), 1);
        assert_eq!(stats.failed_attempts(), 3);
        assert_eq!(stats.dropped(), 0);
    }

    /// A transport that records the size of each batch.
    #[derive(Default)]
    struct Sizes(Mutex<Vec<usize>>);

    #[async_trait]
    impl Transport for Sizes {
        async fn publish(&self, batch: &[DataEvent]) -> Result<(), TransportError> {
            self.0.lock().unwrap().push(batch.len());
            Ok(())
        }
    }

    /// An emitter whose batches linger `linger`, sending to a [`Sizes`].
    fn lingering(linger: Duration) -> (Arc<Sizes>, Emitter, EmitterTask) {
        let transport = Arc::new(Sizes::default());
        let config = EmitterConfig {
            linger,
            ..EmitterConfig::default()
        };
        let (emitter, task) = Emitter::start(transport.clone(), config).unwrap();
        (transport, emitter, task)
    }

    #[tokio::test]
    async fn events_emitted_close_together_travel_in_one_batch() {
        let (transport, emitter, task) = lingering(Duration::from_millis(500));
        for n in 0..10 {
            emitter.emit(event(n));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(*transport.0.lock().unwrap(), [10]);
        assert_eq!(
            emitter.stats().delivered(),
            10,
            "sent once the linger passed"
        );
        task.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_out_the_linger() {
        let (_transport, emitter, task) = lingering(Duration::from_secs(3_600));
        emitter.emit(event(1));
        tokio::task::yield_now().await;
        let stats = tokio::time::timeout(Duration::from_secs(10), task.shutdown())
            .await
            .expect("shutdown waited for the linger");
        assert_eq!(stats.delivered(), 1);
    }

    #[tokio::test]
    async fn a_lingering_batch_takes_queued_events_once_a_batch_worth_is_there_not_one_by_one() {
        let transport = Arc::new(Sizes::default());
        let config = EmitterConfig {
            linger: Duration::from_secs(3_600),
            max_batch: 100,
            queue_capacity: 1_000,
            ..EmitterConfig::default()
        };
        let (emitter, task) = Emitter::start(transport.clone(), config).unwrap();
        emitter.emit(event(0));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(emitter.queued(), 0, "the first event starts a batch");
        for n in 1..50 {
            emitter.emit(event(n));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            emitter.queued(),
            49,
            "single events woke the lingering task"
        );
        for n in 50..150 {
            emitter.emit(event(n));
        }
        let full = async {
            while transport.0.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), full)
            .await
            .expect("a full batch waited for the linger");
        assert_eq!(*transport.0.lock().unwrap(), [100]);
        let stats = task.shutdown().await;
        assert_eq!(*transport.0.lock().unwrap(), [100, 50]);
        assert_eq!(stats.delivered(), 150);
    }
}
