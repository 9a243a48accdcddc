//! The pace of retries against a transport or a store that fails: a short first
//! pause, so that a blip costs little, doubling up to a ceiling, so that a long
//! outage is not hammered, and back to the first pause after a success.

use std::time::Duration;

/// Pauses between retries: 50 ms, 100 ms, 200 ms … up to 5 s, until [`reset`].
/// It only counts; the caller sleeps (often in a `select!` with other work).
///
/// ```
/// use std::time::Duration;
///
/// use auditlog_transport::Backoff;
///
/// let mut backoff = Backoff::default();
/// assert_eq!(backoff.pause(), Duration::from_millis(50));
/// assert_eq!(backoff.next_pause(), Duration::from_millis(50));
/// assert_eq!(backoff.next_pause(), Duration::from_millis(100));
/// for _ in 0..10 {
///     backoff.next_pause();
/// }
/// assert_eq!(backoff.pause(), Duration::from_secs(5));
/// backoff.reset();
/// assert_eq!(backoff.pause(), Duration::from_millis(50));
/// ```
///
/// [`reset`]: Backoff::reset
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    /// The pause the next retry waits.
    current: Duration,
}

impl Backoff {
    /// The first pause of [`Backoff::default`].
    pub const FIRST: Duration = Duration::from_millis(50);
    /// The longest pause of [`Backoff::default`].
    pub const MAX: Duration = Duration::from_secs(5);

    /// Pauses from `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            current: first.min(max),
        }
    }

    /// The pause the next retry waits, without counting it.
    pub fn pause(&self) -> Duration {
        self.current
    }

    /// The pause to wait now; the one after it is twice as long (up to the maximum).
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.current;
        self.current = (pause * 2).min(self.max);
        pause
    }

    /// It worked: the next failure waits the first pause again.
    pub fn reset(&mut self) {
        self.current = self.first.min(self.max);
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Backoff::FIRST, Backoff::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_the_first_up_to_the_maximum() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let pauses: Vec<u128> = (0..5).map(|_| backoff.next_pause().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn looking_at_the_pause_does_not_count_it() {
        let backoff = Backoff::default();
        assert_eq!(backoff.pause(), backoff.pause());
    }

    #[test]
    fn a_reset_starts_again_from_the_first_pause() {
        let mut backoff = Backoff::default();
        backoff.next_pause();
        backoff.next_pause();
        backoff.reset();
        assert_eq!(backoff.next_pause(), Backoff::FIRST);
    }
}
