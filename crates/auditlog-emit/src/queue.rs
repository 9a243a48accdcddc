//! The bounded queue between `emit` and the batching task, and its doorbell.
//!
//! The queue is a ring of slots allocated once, when the emitter starts (the
//! standard library's bounded channel), so that `emit` never allocates. Tokio's
//! channel, used before, grows a list of 32-slot blocks and frees the blocks it
//! emptied; under a burst one `emit` in 32 allocated a block (about 10 KB of
//! 304-byte events) and the first writes to its fresh pages page-faulted, and those
//! calls made most of `emit`'s p99 (BENCHMARKS.md, "emit under a burst"). The price
//! is memory held from the start: one event's room per slot, about 20 MB for the
//! default 65 536.
//!
//! On top of the channel this module keeps what the channel does not offer: how
//! many events are queued (for the doorbell and the metrics), closing the queue to
//! new events while the task still takes the ones in it, and waking the task: when
//! a batch's worth is queued, or, while it waits with nothing to do, when the first
//! event comes or the last sender is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};

use auditlog_event::DataEvent;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use uuid::Uuid;

/// A queue of `capacity` events whose doorbell rings once `ring_at` are queued.
pub(crate) fn queue(capacity: usize, ring_at: usize) -> (QueueSender, QueueReceiver) {
    let (sender, receiver) = sync_channel(capacity);
    let shared = Arc::new(Shared {
        len: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        senders_gone: AtomicBool::new(false),
        notify: Notify::new(),
        ring_at: AtomicUsize::new(ring_at),
        batch_ring_at: ring_at,
    });
    (
        QueueSender {
            sender,
            shared: shared.clone(),
        },
        QueueReceiver { receiver, shared },
    )
}

/// What both ends share.
///
/// The orderings are `SeqCst` where a wake-up depends on them: `push` counts its
/// event in `len` and then reads `ring_at`; the task, before it sleeps, sets
/// `ring_at` and then reads `len`. One of the two sees the other's write, so an
/// event cannot arrive unseen while the task falls asleep.
#[derive(Debug)]
struct Shared {
    /// Events counted by `push` and not yet taken. An event is counted before it
    /// enters the channel, so this is never below what the channel holds: the task
    /// knows of an event still on its way in, and waits for it instead of missing it.
    len: AtomicUsize,
    /// No new events: set at shutdown. Those already counted are still taken.
    closed: AtomicBool,
    /// Every sender is gone: no event can come any more.
    senders_gone: AtomicBool,
    notify: Notify,
    /// Queued events at which `push` rings: `batch_ring_at`, or 1 while the task
    /// waits for any event.
    ring_at: AtomicUsize,
    batch_ring_at: usize,
}

/// The sending end, shared by every clone of an `Emitter`.
#[derive(Debug)]
pub(crate) struct QueueSender {
    sender: SyncSender<DataEvent>,
    shared: Arc<Shared>,
}

impl QueueSender {
    /// Queues `event` without waiting, ringing the doorbell when enough are queued.
    /// When the queue is full or closed the event is dropped and its id returned.
    pub(crate) fn push(&self, event: DataEvent) -> Result<(), Uuid> {
        let shared = &*self.shared;
        let queued = shared.len.fetch_add(1, SeqCst) + 1;
        if shared.closed.load(SeqCst) {
            shared.len.fetch_sub(1, SeqCst);
            return Err(event.id);
        }
        if let Err(TrySendError::Full(event) | TrySendError::Disconnected(event)) =
            self.sender.try_send(event)
        {
            shared.len.fetch_sub(1, SeqCst);
            return Err(event.id);
        }
        if queued >= shared.ring_at.load(SeqCst) {
            shared.notify.notify_one();
        }
        Ok(())
    }

    /// Events queued (and being queued right now).
    pub(crate) fn len(&self) -> usize {
        self.shared.len.load(SeqCst)
    }
}

impl Drop for QueueSender {
    /// Tells a task waiting for events that none will come.
    fn drop(&mut self) {
        self.shared.senders_gone.store(true, SeqCst);
        self.shared.notify.notify_one();
    }
}

/// The batching task's end.
#[derive(Debug)]
pub(crate) struct QueueReceiver {
    receiver: Receiver<DataEvent>,
    shared: Arc<Shared>,
}

impl QueueReceiver {
    /// Moves queued events to `events`, without waiting, until it holds `max`;
    /// returns how many it moved.
    pub(crate) fn take(&mut self, events: &mut Vec<DataEvent>, max: usize) -> usize {
        let receiver = &self.receiver;
        let before = events.len();
        while events.len() < max {
            match receiver.try_recv() {
                Ok(event) => events.push(event),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    // Once closed, an event counted but still on its way in is
                    // waited for (its `push` is a few instructions from done), so
                    // that the last take at shutdown misses nothing.
                    let counted = self.shared.len.load(SeqCst) > events.len() - before;
                    if self.shared.closed.load(SeqCst) && counted {
                        std::thread::yield_now();
                        continue;
                    }
                    break;
                }
            }
        }
        let taken = events.len() - before;
        if taken > 0 {
            self.shared.len.fetch_sub(taken, SeqCst);
        }
        taken
    }

    /// Waits for at least one event, then takes up to `room` (appended to
    /// `events`). 0 once none can come any more: every sender is gone, or the
    /// queue is closed, and nothing is left in it.
    pub(crate) async fn recv_many(&mut self, events: &mut Vec<DataEvent>, room: usize) -> usize {
        loop {
            let max = events.len() + room;
            let taken = self.take(events, max);
            if taken > 0 {
                return taken;
            }
            let shared = self.shared.clone();
            let nothing_more = || {
                (shared.closed.load(SeqCst) || shared.senders_gone.load(SeqCst))
                    && shared.len.load(SeqCst) == 0
            };
            if nothing_more() {
                return 0;
            }
            // Ring at the first event while there is nothing else to do; back to a
            // batch's worth when this wait ends, however it ends.
            let _first = RingAtFirst::new(&shared);
            if shared.len.load(SeqCst) > 0 {
                // Counted but not in the channel yet: it is a moment away.
                tokio::task::yield_now().await;
                continue;
            }
            if nothing_more() {
                return 0;
            }
            shared.notify.notified().await;
        }
    }

    /// Refuses new events from now on; those already queued can still be taken.
    pub(crate) fn close(&mut self) {
        self.shared.closed.store(true, SeqCst);
    }

    /// The doorbell, to wait on while doing something else.
    pub(crate) fn doorbell(&self) -> Doorbell {
        Doorbell(self.shared.clone())
    }

    /// A reading of the queue's length that does not keep the queue open.
    pub(crate) fn depth(&self) -> QueueDepth {
        QueueDepth(self.shared.clone())
    }
}

/// Rings when a batch's worth is queued (or, during [`QueueReceiver::recv_many`],
/// the first event). While the task lingers, publishes, backs off or writes the
/// spill it waits on this rather than on the queue: a task woken by every event
/// is one scheduling per request, which cost the audited API a measurable share
/// of its throughput.
#[derive(Debug, Clone)]
pub(crate) struct Doorbell(Arc<Shared>);

impl Doorbell {
    /// Completes at the next ring (at once if one came since the last wait).
    pub(crate) fn rung(&self) -> Notified<'_> {
        self.0.notify.notified()
    }
}

/// See [`QueueReceiver::depth`].
#[derive(Debug, Clone)]
pub(crate) struct QueueDepth(Arc<Shared>);

impl QueueDepth {
    pub(crate) fn get(&self) -> usize {
        self.0.len.load(SeqCst)
    }
}

/// `push` rings at the first queued event while this lives.
struct RingAtFirst<'a>(&'a Shared);

impl<'a> RingAtFirst<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.ring_at.store(1, SeqCst);
        RingAtFirst(shared)
    }
}

impl Drop for RingAtFirst<'_> {
    fn drop(&mut self) {
        self.0.ring_at.store(self.0.batch_ring_at, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_support::event;

    #[test]
    fn a_full_queue_gives_the_event_back() {
        let (sender, mut receiver) = queue(2, 2);
        assert!(sender.push(event(1)).is_ok());
        assert!(sender.push(event(2)).is_ok());
        let refused = event(3);
        assert_eq!(sender.push(refused.clone()), Err(refused.id));
        assert_eq!(sender.len(), 2);
        let mut events = Vec::new();
        assert_eq!(receiver.take(&mut events, 10), 2);
        assert_eq!(sender.len(), 0);
    }

    #[test]
    fn a_closed_queue_refuses_new_events_but_gives_up_those_it_holds() {
        let (sender, mut receiver) = queue(4, 4);
        sender.push(event(1)).unwrap();
        receiver.close();
        assert!(sender.push(event(2)).is_err());
        let mut events = Vec::new();
        assert_eq!(receiver.take(&mut events, 10), 1);
        assert_eq!(events[0].timestamp, 1);
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_by_the_first_event_though_the_doorbell_rings_later() {
        let (sender, mut receiver) = queue(100, 50);
        let waiting = tokio::spawn(async move {
            let mut events = Vec::new();
            receiver.recv_many(&mut events, 10).await;
            events.len()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        sender.push(event(1)).unwrap();
        let taken = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(taken.unwrap().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_waiting_task_learns_that_every_sender_is_gone() {
        let (sender, mut receiver) = queue(100, 50);
        let waiting = tokio::spawn(async move {
            let mut events = Vec::new();
            receiver.recv_many(&mut events, 10).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(sender);
        let taken = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(taken.unwrap().unwrap(), 0);
    }
}
