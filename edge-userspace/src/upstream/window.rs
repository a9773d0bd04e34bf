//! A sliding window of counters, the basis of the circuit breaker's error
//! ratio and the retry budget.
//!
//! The window keeps at most [`MAX_BUCKETS`] buckets whatever its length:
//! one per second up to a minute, then each covering an equal share of the
//! window. Its memory is O(buckets), never O(seconds): an hour-long window
//! is 60 buckets of a minute, not 3600 counters.

use std::time::Duration;

/// Most buckets a window keeps: a minute of one-second buckets, and a
/// resolution of 1/60 of the window beyond.
pub const MAX_BUCKETS: u64 = 60;

/// Counts of two kinds of events over the last `len` seconds.
#[derive(Debug)]
pub struct Window {
    /// (bucket number, a, b) per slot; a slot is stale when its bucket
    /// number is old. Bucket number = second / `width`.
    slots: Vec<(u64, u64, u64)>,
    /// Seconds each bucket covers (at least 1).
    width: u64,
}

impl Window {
    /// A window `len` long (at least one second), of at most
    /// [`MAX_BUCKETS`] buckets: it covers `len` rounded up to whole buckets.
    pub fn new(len: Duration) -> Self {
        let secs = len.as_secs().max(1);
        let width = secs.div_ceil(MAX_BUCKETS);
        let buckets = secs.div_ceil(width);
        Self {
            // At most MAX_BUCKETS, so the conversion cannot truncate.
            slots: vec![(u64::MAX, 0, 0); buckets as usize],
            width,
        }
    }

    fn slot(&mut self, now_sec: u64) -> &mut (u64, u64, u64) {
        let bucket = now_sec / self.width;
        let n = self.slots.len() as u64;
        let slot = &mut self.slots[(bucket % n) as usize];
        if slot.0 != bucket {
            *slot = (bucket, 0, 0);
        }
        slot
    }

    /// Adds to the counters of second `now_sec`.
    pub fn add(&mut self, now_sec: u64, a: u64, b: u64) {
        let slot = self.slot(now_sec);
        slot.1 = slot.1.saturating_add(a);
        slot.2 = slot.2.saturating_add(b);
    }

    /// The sums over the window ending at `now_sec`.
    pub fn sums(&self, now_sec: u64) -> (u64, u64) {
        let n = self.slots.len() as u64;
        let now = now_sec / self.width;
        self.slots
            .iter()
            .filter(|(s, _, _)| *s != u64::MAX && *s <= now && now - *s < n)
            .fold((0, 0), |(a, b), (_, x, y)| {
                (a.saturating_add(*x), b.saturating_add(*y))
            })
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.slots.fill((u64::MAX, 0, 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slides() {
        let mut w = Window::new(Duration::from_secs(3));
        w.add(10, 1, 0);
        w.add(11, 1, 1);
        w.add(12, 1, 0);
        assert_eq!(w.sums(12), (3, 1));
        assert_eq!(w.sums(13), (2, 1));
        w.add(14, 5, 5);
        assert_eq!(w.sums(14), (6, 5));
        assert_eq!(w.sums(20), (0, 0));
    }

    #[test]
    fn a_long_window_costs_a_fixed_number_of_buckets() {
        // Checked from the shortest up, so that an implementation with a
        // counter per second fails here before it allocates gigabytes.
        for hours in [1, 24, 100_000] {
            let w = Window::new(Duration::from_secs(hours * 3600));
            assert!(
                w.slots.len() <= 60,
                "a {hours}h window has {} buckets",
                w.slots.len()
            );
        }
    }

    #[test]
    fn wide_buckets_still_slide() {
        // 2 minutes: 60 buckets of 2 s.
        let mut w = Window::new(Duration::from_secs(120));
        assert_eq!(w.slots.len(), 60);
        w.add(0, 1, 1);
        w.add(1, 1, 0);
        w.add(60, 1, 0);
        assert_eq!(w.sums(119), (3, 1));
        assert_eq!(w.sums(120), (1, 0));
        assert_eq!(w.sums(300), (0, 0));
        // 61 s: buckets of 2 s, 31 of them (62 s covered, not 120).
        assert_eq!(Window::new(Duration::from_secs(61)).slots.len(), 31);
    }
}
