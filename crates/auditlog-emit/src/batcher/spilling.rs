//! What the batching task does while the transport lags or is down: it keeps
//! taking events off the queue (so that `emit` never finds it full); while an
//! attempt is slow it holds them and writes them to the spill file past a
//! high-water mark, once an attempt has failed it writes them at once; it replays
//! the spill's backlog first once the transport is back, and at shutdown leaves on
//! disk (or counts as dropped, without a spill) what could not be delivered in
//! time. The spill's I/O runs on a blocking thread while the task goes on emptying
//! the queue.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use auditlog_event::DataEvent;
use tokio::time::Instant;

use super::{Batcher, Head};
use crate::spill::Spill;

impl Batcher {
    /// Waits `pause` before the next attempt, writing what is held and queued to
    /// the spill at once and then whenever the doorbell rings. The last attempt
    /// failed, so the transport is down or refusing: events kept in memory now
    /// would be lost if the process died during the outage, while on disk they
    /// survive it. Only the batch being retried stays in memory. (While an attempt
    /// is merely slow, `publish` holds arrivals in memory up to the high-water
    /// mark instead: the transport may yet take them.)
    pub(super) async fn wait_spilling(&mut self, pause: Duration) {
        let until = Instant::now() + pause;
        if self.spill.is_some() {
            self.spill_pending_and_queued().await;
        }
        let doorbell = self.doorbell.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                () = doorbell.rung(), if self.spill.is_some() => {
                    self.spill_pending_and_queued().await;
                }
            }
        }
    }

    /// Takes what is queued (up to the high-water mark) and keeps it with the events
    /// that arrived while an attempt runs, writing them to the spill once there are
    /// many: the attempt may yet succeed, and held events then go out next without
    /// a trip through the disk.
    pub(super) async fn hold_queued(&mut self) {
        let mut arrived = self.take_numbered(self.high_water);
        self.pending.append(&mut arrived);
        if self.pending.len() >= self.high_water {
            let events = std::mem::take(&mut self.pending);
            self.write_spill(events).await;
        }
    }

    /// Writes the held events, then everything queued, to the spill, in order.
    pub(super) async fn spill_pending_and_queued(&mut self) {
        let mut queued = self.take_numbered(usize::MAX);
        let mut events = std::mem::take(&mut self.pending);
        events.append(&mut queued);
        self.write_spill(events).await;
    }

    pub(super) fn spill_has_backlog(&self) -> bool {
        self.spill
            .as_deref()
            .is_some_and(|spill| locked(spill).has_backlog())
    }

    /// Runs `op` on the spill on a blocking thread (`None` without a spill). While
    /// the disk works, the queue is emptied into `pending` whenever the doorbell
    /// rings (up to `max_held`): a slow write or fsync must not leave `emit` a full queue, and
    /// the application's threads never wait for the disk.
    pub(super) async fn on_spill<T, F>(&mut self, op: F) -> Option<io::Result<T>>
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
                () = doorbell.rung(), if room > 0 => {
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

    pub(super) async fn confirm_spill(&mut self, end: u64) {
        if let Some(Err(err)) = self.on_spill(move |spill| spill.confirm(end)).await {
            // Delivered events may be replayed after a restart: harmless, the
            // auditor stores each id once.
            tracing::warn!(%err, "the spill cursor could not be saved");
        }
        self.record_backlog();
    }

    /// Shutdown ran out of time: keep the batch on disk for the next start, or,
    /// with no spill, count it as dropped.
    pub(super) async fn give_up(&mut self, head: &mut Head) {
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

/// The spill, whether or not a blocking operation on it panicked (its state is
/// a file offset and a length, each written whole).
fn locked(spill: &Mutex<Spill>) -> MutexGuard<'_, Spill> {
    spill.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use auditlog_event::DataEvent;

    use crate::test_support::event;
    use crate::{Emitter, EmitterConfig, EmitterTask, Transport, TransportError};

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
            // What is tested is the spill, not a race against a background task
            // that a loaded machine starves (in CI under a load of 12 the queue
            // filled and 1 008 events were dropped, as a full queue must): the
            // emitting side waits while the queue is half full.
            while emitter.queued() > 2_048 {
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
    async fn after_a_failed_attempt_what_arrives_goes_to_disk_at_once_not_into_memory() {
        let dir = tempfile::tempdir().unwrap();
        // The spill's mark is at 4 096 held events, far above what is emitted here:
        // holding them in memory until then would lose them all in a crash.
        let (transport, emitter, task) = start_down(EmitterConfig {
            queue_capacity: 8_192,
            max_batch: 100,
            ..spilling_config(dir.path())
        });
        let events: Vec<_> = (0..301).map(event).collect();
        // One event makes a batch of one that fails and is retried: it alone
        // stays in memory.
        emitter.emit(events[0].clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
        for e in &events[1..] {
            emitter.emit(e.clone());
        }
        let spilled = async {
            while emitter.stats().spilled() < 300 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(2), spilled)
            .await
            .expect("the events that arrived while the transport was down are on disk");
        transport.up.store(true, Ordering::SeqCst);
        let stats = task.shutdown().await;
        assert_eq!(stats.delivered(), 301);
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
