//! How many unacknowledged messages the broker may push to the auditor. The
//! prefetch caps throughput at prefetch ÷ (time from delivery to ack), and memory
//! at prefetch × message size. One event per message (the prototype's producers)
//! wants thousands in flight so that commits are large; batches of thousands of
//! events per message (our emitters) want a handful, or a backlog would be
//! pushed into memory whole. So by default the consumer sizes it from what
//! arrives: enough messages for [`EVENTS_IN_FLIGHT`] events at the size of the
//! largest recent message, re-subscribing when that is far from the current one.

/// Events the broker may have pushed and not yet had acknowledged: two of the
/// auditor's largest commits, so that one batch gathers while the other commits.
pub const EVENTS_IN_FLIGHT: u32 = 40_000;
/// The prefetch before anything has arrived: safe for large messages.
pub const START: u16 = 64;
/// Bounds of the automatic prefetch.
pub const MIN: u16 = 8;
pub const MAX: u16 = 40_000;
/// Messages looked at before the prefetch may grow.
const WINDOW: u32 = 256;

/// The consumer's prefetch: fixed by the operator, or sized by [`PrefetchTuner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    Auto,
    Fixed(u16),
}

impl Prefetch {
    /// The prefetch to subscribe with first.
    pub fn initial(self) -> u16 {
        match self {
            Prefetch::Auto => START,
            Prefetch::Fixed(count) => count.max(1),
        }
    }
}

/// Watches the size of arriving messages and says when the prefetch should change.
#[derive(Debug, Clone)]
pub struct PrefetchTuner {
    current: u16,
    /// Largest message (in events) of the current window, and messages in it.
    largest: u32,
    seen: u32,
}

impl PrefetchTuner {
    pub fn new(current: u16) -> Self {
        PrefetchTuner {
            current,
            largest: 0,
            seen: 0,
        }
    }

    pub fn current(&self) -> u16 {
        self.current
    }

    /// Records a message of `events` events; returns the new prefetch when it
    /// should change. It shrinks at once when one message would make the events
    /// in flight far exceed [`EVENTS_IN_FLIGHT`], and grows only after a window of
    /// small messages, and by at least double, so that it does not flap.
    pub fn observe(&mut self, events: usize) -> Option<u16> {
        let events = u32::try_from(events).unwrap_or(u32::MAX).max(1);
        self.largest = self.largest.max(events);
        self.seen += 1;
        let wanted = fitting(self.largest);
        if wanted <= self.current / 2 {
            return Some(self.switch(wanted));
        }
        if self.seen < WINDOW {
            return None;
        }
        let grow = wanted >= self.current.saturating_mul(2);
        self.largest = 0;
        self.seen = 0;
        grow.then(|| self.switch(wanted))
    }

    fn switch(&mut self, to: u16) -> u16 {
        self.current = to;
        self.largest = 0;
        self.seen = 0;
        to
    }
}

/// Messages of `largest` events that fit [`EVENTS_IN_FLIGHT`], within bounds.
fn fitting(largest: u32) -> u16 {
    let count = (EVENTS_IN_FLIGHT / largest.max(1)).clamp(u32::from(MIN), u32::from(MAX));
    u16::try_from(count).unwrap_or(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_event_messages_raise_the_prefetch_after_a_window() {
        let mut tuner = PrefetchTuner::new(START);
        for _ in 0..WINDOW - 1 {
            assert_eq!(tuner.observe(1), None);
        }
        assert_eq!(tuner.observe(1), Some(MAX));
        assert_eq!(tuner.current(), MAX);
        for _ in 0..WINDOW * 3 {
            assert_eq!(tuner.observe(1), None, "no change once it fits");
        }
    }

    #[test]
    fn one_large_message_shrinks_it_at_once() {
        let mut tuner = PrefetchTuner::new(MAX);
        assert_eq!(tuner.observe(1), None);
        assert_eq!(tuner.observe(5_000), Some(8));
        assert_eq!(tuner.observe(5_000), None);
    }

    #[test]
    fn batches_of_a_hundred_settle_in_between() {
        let mut tuner = PrefetchTuner::new(START);
        let changes: Vec<u16> = (0..WINDOW * 4).filter_map(|_| tuner.observe(100)).collect();
        assert_eq!(changes, vec![400]);
    }

    #[test]
    fn a_mix_is_sized_for_its_largest_messages() {
        let mut tuner = PrefetchTuner::new(START);
        let changes: Vec<u16> = (0..WINDOW * 4)
            .filter_map(|n| tuner.observe(if n % 50 == 0 { 5_000 } else { 1 }))
            .collect();
        assert_eq!(changes, vec![MIN]);
    }

    #[test]
    fn a_fixed_prefetch_is_what_the_operator_said() {
        assert_eq!(Prefetch::Fixed(1_000).initial(), 1_000);
        assert_eq!(Prefetch::Fixed(0).initial(), 1);
        assert_eq!(Prefetch::Auto.initial(), START);
    }
}
