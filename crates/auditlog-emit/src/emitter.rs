//! The emitter handle ([`Emitter`]), its tuning ([`EmitterConfig`]) and its
//! batching task ([`EmitterTask`]); see the crate documentation for a whole example.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use auditlog_event::DataEvent;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use auditlog_transport::Backoff;

use crate::spill::Spill;
use crate::{Transport, TransportError};

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
    /// Events the in-memory queue holds. Past half of it, the background task moves
    /// events to the spill file; with no spill, a full queue makes `emit` drop.
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
    emitted: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    failed_attempts: AtomicU64,
    spilled: AtomicU64,
    in_flight: AtomicU64,
    spill_backlog_bytes: AtomicU64,
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
    queue: mpsc::Sender<DataEvent>,
    stats: Arc<EmitterStats>,
    doorbell: Arc<Doorbell>,
}

/// How `emit` calls the batching task once enough events are queued. A task
/// waiting on the queue itself would be woken by every event: one scheduling of
/// the task per request, which cost the audited API a measurable share of its
/// throughput. While the task lingers, publishes, backs off or writes the spill it
/// waits on this instead, and takes the queued events in one go when it rings (or
/// when its own deadline or retry comes).
#[derive(Debug)]
struct Doorbell {
    notify: Notify,
    /// Queued events at which `emit` rings.
    ring_at: usize,
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
        let spill = config
            .spill_dir
            .as_deref()
            .map(Spill::open)
            .transpose()?
            .map(|spill| Arc::new(Mutex::new(spill)));
        let (queue, receiver) = mpsc::channel(config.queue_capacity.max(2));
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(EmitterStats::default());
        // A full batch's worth, but well before the queue is full: the task then
        // has three quarters of the queue's room to come and empty it.
        let doorbell = Arc::new(Doorbell {
            notify: Notify::new(),
            ring_at: config.max_batch.min(config.queue_capacity / 4).max(1),
        });
        let task = Batcher {
            receiver,
            doorbell: doorbell.clone(),
            stop: stop_rx,
            transport,
            stats: stats.clone(),
            spill,
            producer: config.producer_id.clone().map(|id| (id, 0)),
            pending: Vec::new(),
            high_water: config.queue_capacity.max(2) / 2,
            max_held: config.queue_capacity.max(2),
            config,
        };
        let handle = tokio::spawn(task.run_reporting(queue.downgrade()));
        Ok((
            Emitter {
                queue,
                stats: stats.clone(),
                doorbell,
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
        match self.queue.try_send(event) {
            Ok(()) => {
                if self.queued() >= self.doorbell.ring_at {
                    self.doorbell.notify.notify_one();
                }
            }
            Err(err) => self.dropped(err),
        }
    }

    #[cold]
    fn dropped(&self, err: mpsc::error::TrySendError<DataEvent>) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        let event = match err {
            mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
        };
        tracing::error!(event_id = %event.id, "audit event dropped: emitter queue full or closed");
    }

    /// What happened to this emitter's events so far.
    pub fn stats(&self) -> &EmitterStats {
        &self.stats
    }

    /// Events waiting in the in-memory queue.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
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

/// The background task: moves events from the queue (or the spill) to the
/// transport, one batch at a time, in order.
struct Batcher {
    receiver: mpsc::Receiver<DataEvent>,
    doorbell: Arc<Doorbell>,
    stop: watch::Receiver<bool>,
    transport: Arc<dyn Transport>,
    config: EmitterConfig,
    stats: Arc<EmitterStats>,
    /// The spill, shared with the blocking thread that does its I/O (one operation
    /// at a time: the batcher awaits each before the next).
    spill: Option<Arc<Mutex<Spill>>>,
    /// Events taken off the queue while a batch was in flight (only with a spill):
    /// newer than the spill's backlog, older than what is still queued.
    pending: Vec<DataEvent>,
    /// Size of `pending` at which it is written to the spill.
    high_water: usize,
    /// Most events `pending` takes while the spill is busy; past it they wait in
    /// the queue.
    max_held: usize,
    /// The producer id and the last sequence number handed out. Events are numbered
    /// here, as they leave the queue, so that `emit` stays a bare enqueue and the
    /// numbers follow the queue's order exactly.
    producer: Option<(String, u64)>,
}

/// The batch being delivered, and where it came from.
struct Head {
    events: Vec<DataEvent>,
    /// Spill offset to confirm once delivered, when the batch came from the spill.
    spill_end: Option<u64>,
}

impl Batcher {
    /// [`Batcher::run`], copying the counters to the `metrics` facade every
    /// [`METRICS_EVERY`] and once more at the end. `queue` measures the queue
    /// without keeping it open.
    async fn run_reporting(self, queue: mpsc::WeakSender<DataEvent>) {
        let stats = self.stats.clone();
        let mut published = Published::default();
        let run = self.run();
        tokio::pin!(run);
        let mut ticker = tokio::time::interval(METRICS_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut run => break,
                _ = ticker.tick() => {
                    let queued = queue
                        .upgrade()
                        .map_or(0, |q| (q.max_capacity() - q.capacity()) as u64);
                    published.publish(&stats, queued);
                }
            }
        }
        published.publish(&stats, 0);
    }

    async fn run(mut self) {
        let mut head = Head {
            events: Vec::with_capacity(self.config.max_batch),
            spill_end: None,
        };
        let mut stopping = false;
        let mut deadline: Option<Instant> = None;
        let mut backoff = Backoff::default();
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
                    backoff.reset();
                    continue;
                }
                Err(err) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%err, events = head.events.len(), retry_in_ms = backoff.pause().as_millis() as u64, "audit batch not delivered; retrying");
                }
            }
            stopping |= *self.stop.borrow();
            if stopping {
                let now = Instant::now();
                let deadline = *deadline.get_or_insert(now + self.config.shutdown_grace);
                if now + backoff.pause() > deadline {
                    self.give_up(&mut head).await;
                    continue;
                }
            }
            self.wait_spilling(backoff.next_pause()).await;
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
                () = doorbell.notify.notified() => {}
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
        while events.len() < max {
            match self.receiver.try_recv() {
                Ok(event) => events.push(event),
                Err(_) => break,
            }
        }
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
        let transport = self.transport.clone();
        let attempt = tokio::time::timeout(self.config.publish_timeout, transport.publish(events));
        tokio::pin!(attempt);
        let doorbell = self.doorbell.clone();
        loop {
            tokio::select! {
                outcome = &mut attempt => {
                    return outcome.unwrap_or_else(|_| {
                        Err(TransportError::Unavailable("no confirmation in time".into()))
                    });
                }
                () = doorbell.notify.notified(), if self.spill.is_some() => self.hold_queued().await,
            }
        }
    }

    /// Waits `pause` before the next attempt, emptying the queue at once and then
    /// whenever the doorbell rings. Emptying it at each retry, not only at the
    /// doorbell, means that while the transport is down what is held in memory
    /// reaches the spill as soon as it passes the high-water mark, however few
    /// events are still arriving.
    async fn wait_spilling(&mut self, pause: Duration) {
        let until = Instant::now() + pause;
        if self.spill.is_some() {
            self.hold_queued().await;
        }
        let doorbell = self.doorbell.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                () = doorbell.notify.notified(), if self.spill.is_some() => self.hold_queued().await,
            }
        }
    }

    /// Takes what is queued (up to the high-water mark) and keeps it with the events
    /// that arrived while the transport was busy or down, writing them to the spill
    /// once there are many.
    async fn hold_queued(&mut self) {
        let mut arrived = self.take_numbered(self.high_water);
        self.pending.append(&mut arrived);
        if self.pending.len() >= self.high_water {
            let events = std::mem::take(&mut self.pending);
            self.write_spill(events).await;
        }
    }

    /// Writes the held events, then everything queued, to the spill, in order.
    async fn spill_pending_and_queued(&mut self) {
        let mut queued = self.take_numbered(usize::MAX);
        let mut events = std::mem::take(&mut self.pending);
        events.append(&mut queued);
        self.write_spill(events).await;
    }

    fn spill_has_backlog(&self) -> bool {
        self.spill
            .as_deref()
            .is_some_and(|spill| locked(spill).has_backlog())
    }

    /// Runs `op` on the spill on a blocking thread (`None` without a spill). While
    /// the disk works, the queue is emptied into `pending` whenever the doorbell
    /// rings (up to `max_held`): a slow write or fsync must not leave `emit` a full queue, and
    /// the application's threads never wait for the disk.
    async fn on_spill<T, F>(&mut self, op: F) -> Option<io::Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Spill) -> io::Result<T> + Send + 'static,
    {
        let spill = self.spill.clone()?;
        let job = tokio::task::spawn_blocking(move || op(&mut locked(&spill)));
        tokio::pin!(job);
        let doorbell = self.doorbell.clone();
        loop {
            let room = self.max_held.saturating_sub(self.pending.len());
            tokio::select! {
                done = &mut job => return Some(done.unwrap_or_else(|err| Err(io::Error::other(err)))),
                () = doorbell.notify.notified(), if room > 0 => {
                    let mut arrived = self.take_numbered(room);
                    self.pending.append(&mut arrived);
                }
            }
        }
    }

    /// The spill's backlog, for the counters.
    fn record_backlog(&self) {
        if let Some(spill) = self.spill.as_deref() {
            let bytes = locked(spill).backlog_bytes();
            self.stats
                .spill_backlog_bytes
                .store(bytes, Ordering::Relaxed);
        }
    }

    /// Numbers the events that just left the queue (those not numbered yet).
    fn stamp(&mut self, events: &mut [DataEvent]) {
        let Some((id, last_seq)) = self.producer.as_mut() else {
            return;
        };
        for event in events.iter_mut().filter(|e| e.producer_seq.is_none()) {
            *last_seq += 1;
            event.producer_id = Some(id.clone());
            event.producer_seq = Some(*last_seq);
        }
    }

    async fn write_spill(&mut self, events: Vec<DataEvent>) {
        if events.is_empty() {
            return;
        }
        if self.spill.is_none() {
            self.pending = events;
            return;
        }
        let count = events.len();
        match self.on_spill(move |spill| spill.append(&events)).await {
            Some(Ok(())) => {
                self.stats
                    .spilled
                    .fetch_add(count as u64, Ordering::Relaxed);
                self.record_backlog();
            }
            Some(Err(err)) => {
                // The disk failed too: these events can go nowhere.
                tracing::error!(%err, events = count, "audit events dropped: the spill file cannot be written");
                self.stats
                    .dropped
                    .fetch_add(count as u64, Ordering::Relaxed);
            }
            None => {}
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

    async fn confirm_spill(&mut self, end: u64) {
        if let Some(Err(err)) = self.on_spill(move |spill| spill.confirm(end)).await {
            // Delivered events may be replayed after a restart: harmless, the
            // auditor stores each id once.
            tracing::warn!(%err, "the spill cursor could not be saved");
        }
        self.record_backlog();
    }

    /// Shutdown ran out of time: keep the batch on disk for the next start, or,
    /// with no spill, count it as dropped.
    async fn give_up(&mut self, head: &mut Head) {
        let count = head.events.len() as u64;
        if head.spill_end.take().is_some() {
            // Already on disk: it stays there and is replayed next time.
            head.events.clear();
            tracing::warn!(
                events = count,
                "audit batch left in the spill file for the next start"
            );
        } else if self.spill.is_some() {
            let events = std::mem::take(&mut head.events);
            self.write_spill(events).await;
            tracing::warn!(events = count, "audit batch spilled for the next start");
        } else {
            self.stats.dropped.fetch_add(count, Ordering::Relaxed);
            tracing::error!(
                events = count,
                "audit batch dropped at shutdown: transport unavailable and no spill configured"
            );
            head.events.clear();
        }
        self.stats.in_flight.store(0, Ordering::Relaxed);
        // Once the transport is given up on, everything still queued goes the same way.
        if self.spill.is_some() {
            self.spill_pending_and_queued().await;
            // The backlog is kept for the next start, not retried now.
            self.spill = None;
        }
    }
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

/// The spill, whether or not a blocking operation on it panicked (its state is
/// a file offset and a length, each written whole).
fn locked(spill: &Mutex<Spill>) -> MutexGuard<'_, Spill> {
    spill.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the task handle is gone: nobody can ask any more, so stop too.
    if stop.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
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

    /// A transport that is down until `up` is set, then records batches.
    #[derive(Default)]
    struct Switchable {
        up: std::sync::atomic::AtomicBool,
        received: Mutex<Vec<DataEvent>>,
    }

    #[async_trait]
    impl Transport for Switchable {
        async fn publish(&self, batch: &[DataEvent]) -> Result<(), TransportError> {
            if !self.up.load(Ordering::SeqCst) {
                return Err(TransportError::Unavailable("down".into()));
            }
            self.received.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }
    }

    fn spilling_config(dir: &std::path::Path) -> EmitterConfig {
        EmitterConfig {
            queue_capacity: 256,
            max_batch: 100,
            shutdown_grace: Duration::from_millis(200),
            spill_dir: Some(dir.to_owned()),
            ..EmitterConfig::default()
        }
    }

    /// An emitter on `config`, over a transport that starts down.
    fn start_down(config: EmitterConfig) -> (Arc<Switchable>, Emitter, EmitterTask) {
        let transport = Arc::new(Switchable::default());
        let (emitter, task) = Emitter::start(transport.clone(), config).unwrap();
        (transport, emitter, task)
    }

    #[tokio::test]
    async fn while_the_transport_is_down_events_spill_to_disk_and_arrive_in_order_later() {
        let dir = tempfile::tempdir().unwrap();
        let (transport, emitter, task) = start_down(EmitterConfig {
            queue_capacity: 4_096,
            ..spilling_config(dir.path())
        });
        let events: Vec<_> = (0..20_000).map(event).collect();
        for (n, e) in events.iter().enumerate() {
            emitter.emit(e.clone());
            if n % 200 == 0 {
                // 200 events a millisecond; the spill is written meanwhile, on
                // another thread, while the background task empties the queue each
                // time the doorbell rings.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(emitter.stats().dropped(), 0);
        assert!(
            emitter.stats().spilled() > 0,
            "the queue would have overflowed"
        );
        assert!(emitter.queued() <= 4_096);
        transport.up.store(true, Ordering::SeqCst);
        let stats = task.shutdown().await;
        assert_eq!(stats.dropped(), 0);
        assert_eq!(stats.delivered(), 20_000);
        assert_eq!(*transport.received.lock().unwrap(), events);
    }

    #[tokio::test]
    async fn while_the_transport_is_down_a_few_late_events_still_push_what_is_held_to_the_spill() {
        let dir = tempfile::tempdir().unwrap();
        // The doorbell rings at 256 queued events; 512 held go to the spill.
        let (transport, emitter, task) = start_down(EmitterConfig {
            queue_capacity: 1_024,
            max_batch: 1_000,
            ..spilling_config(dir.path())
        });
        let events: Vec<_> = (0..601).map(event).collect();
        // One event makes a batch of one that fails and is retried.
        emitter.emit(events[0].clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The doorbell rings for these: they are held, below the spill's mark.
        for e in &events[1..401] {
            emitter.emit(e.clone());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Fewer than the doorbell's worth: only the retries take these.
        for e in &events[401..] {
            emitter.emit(e.clone());
        }
        let spilled = async {
            while emitter.stats().spilled() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), spilled)
            .await
            .expect("600 events held with the transport down never reached the spill");
        transport.up.store(true, Ordering::SeqCst);
        let stats = task.shutdown().await;
        assert_eq!(stats.delivered(), 601);
        assert_eq!(*transport.received.lock().unwrap(), events);
    }

    #[tokio::test]
    async fn at_shutdown_with_the_transport_down_events_wait_on_disk_for_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (_down, emitter, task) = start_down(EmitterConfig {
            queue_capacity: 1_024,
            ..spilling_config(dir.path())
        });
        let events: Vec<_> = (0..500).map(event).collect();
        for e in &events {
            emitter.emit(e.clone());
        }
        let stats = task.shutdown().await;
        assert_eq!((stats.delivered(), stats.dropped()), (0, 0));

        let up = Arc::new(Switchable::default());
        up.up.store(true, Ordering::SeqCst);
        let (_emitter, task) = Emitter::start(up.clone(), spilling_config(dir.path())).unwrap();
        let stats = task.shutdown().await;
        assert_eq!(stats.delivered(), 500);
        let mut received = up.received.lock().unwrap().clone();
        received.sort_by_key(|e| e.timestamp);
        assert_eq!(received, events);
    }
}
