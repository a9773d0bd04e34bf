//! A sliding window of per-second counters, the basis of the circuit
//! breaker's error ratio and the retry budget.

use std::time::Duration;

/// Counts of two kinds of events over the last `len` seconds.
#[derive(Debug)]
pub struct Window {
    /// (second, a, b) per slot; a slot is stale when its second is old.
    slots: Vec<(u64, u64, u64)>,
}

impl Window {
    /// A window `len` long (at least one second).
    pub fn new(len: Duration) -> Self {
        let secs = len.as_secs().max(1) as usize;
        Self {
            slots: vec![(u64::MAX, 0, 0); secs],
        }
    }

    fn slot(&mut self, now_sec: u64) -> &mut (u64, u64, u64) {
        let n = self.slots.len();
        let slot = &mut self.slots[(now_sec % n as u64) as usize];
        if slot.0 != now_sec {
            *slot = (now_sec, 0, 0);
        }
        slot
    }

    /// Adds to the counters of second `now_sec`.
    pub fn add(&mut self, now_sec: u64, a: u64, b: u64) {
        let slot = self.slot(now_sec);
        slot.1 += a;
        slot.2 += b;
    }

    /// The sums over the window ending at `now_sec`.
    pub fn sums(&self, now_sec: u64) -> (u64, u64) {
        let n = self.slots.len() as u64;
        self.slots
            .iter()
            .filter(|(s, _, _)| *s != u64::MAX && *s <= now_sec && now_sec - *s < n)
            .fold((0, 0), |(a, b), (_, x, y)| (a + x, b + y))
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
}
