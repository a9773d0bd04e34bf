//! The retry budget: retries may add at most `budget_percent` of the recent
//! request rate (plus a small floor), so that retries cannot multiply the
//! load on a pool that is already failing — Envoy's retry budget and
//! Finagle's RetryBudget work the same way.

use super::window::Window;
use std::{sync::Mutex, time::Duration, time::Instant};

/// The length of the window the budget is computed over.
const WINDOW: Duration = Duration::from_secs(10);

/// One pool's retry budget.
pub struct RetryBudget {
    percent: u64,
    min_per_window: u64,
    epoch: Instant,
    /// (requests, retries) per second.
    window: Mutex<Window>,
}

impl RetryBudget {
    /// A budget of `percent` of requests, at least `min_per_window` per 10 s.
    pub fn new(percent: u32, min_per_window: u32) -> Self {
        Self {
            percent: u64::from(percent),
            min_per_window: u64::from(min_per_window),
            epoch: Instant::now(),
            window: Mutex::new(Window::new(WINDOW)),
        }
    }

    fn sec(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    /// Counts a request (first attempts only).
    pub fn on_request(&self) {
        let sec = self.sec();
        if let Ok(mut w) = self.window.lock() {
            w.add(sec, 1, 0);
        }
    }

    /// Takes one retry from the budget, if there is one left.
    pub fn try_retry(&self) -> bool {
        self.try_retry_at(self.sec())
    }

    fn try_retry_at(&self, sec: u64) -> bool {
        let Ok(mut w) = self.window.lock() else {
            return false;
        };
        let (requests, retries) = w.sums(sec);
        let allowed = (requests * self.percent / 100).max(self.min_per_window);
        if retries < allowed {
            w.add(sec, 0, 1);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_then_ratio() {
        let b = RetryBudget::new(20, 2);
        assert!(b.try_retry_at(0));
        assert!(b.try_retry_at(0));
        assert!(!b.try_retry_at(0));
        if let Ok(mut w) = b.window.lock() {
            w.add(1, 100, 0);
        }
        // 100 requests at 20%: 20 retries in all, 2 already taken.
        let granted = (0..50).filter(|_| b.try_retry_at(1)).count();
        assert_eq!(granted, 18);
        // Ten seconds later the window has moved on: back to the floor.
        assert!(b.try_retry_at(12));
    }
}
