//! What the admin API shows of a pool's recent traffic: per backend, the
//! attempts and failures of the last [`SECONDS`] seconds; per pool, a
//! latency histogram over the same span.
//!
//! Lock-free and fixed-size: a ring of one-second slots of atomic counters,
//! each stamped with the second it counts. A slot whose stamp is old is
//! reset by the first writer of a new second; a reader skips stale slots.
//! Two writers racing on a reset can lose a few counts of that second,
//! which a status page can afford and the request path's cost (a few
//! relaxed atomics, no lock) is why.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// Seconds the recent figures cover.
pub const SECONDS: u64 = 10;

/// Upper bounds (ms) of the latency buckets; one more bucket holds the rest.
pub const LATENCY_BOUNDS_MS: [f64; 20] = [
    0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 25.0, 50.0, 75.0, 100.0, 150.0, 250.0, 500.0, 1000.0,
    2500.0, 5000.0, 10000.0, 30000.0,
];
const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Seconds since `epoch`, the clock of every slot.
fn second(epoch: Instant) -> u64 {
    epoch.elapsed().as_secs()
}

/// Stamps mark slot `second + 1`, so that 0 means "never written".
fn claim(stamp: &AtomicU64, now: u64, clear: impl FnOnce()) {
    let mark = now + 1;
    let seen = stamp.load(Ordering::Relaxed);
    if seen != mark
        && stamp
            .compare_exchange(seen, mark, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    {
        clear();
    }
}

fn fresh(stamp: &AtomicU64, now: u64) -> bool {
    let mark = stamp.load(Ordering::Relaxed);
    mark != 0 && mark - 1 + SECONDS > now
}

/// Attempts and failures of the last [`SECONDS`] seconds.
#[derive(Debug)]
pub struct Outcomes {
    epoch: Instant,
    slots: [(AtomicU64, AtomicU64, AtomicU64); SECONDS as usize],
    attempts_total: AtomicU64,
    failures_total: AtomicU64,
}

impl Outcomes {
    /// Empty, counting seconds from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            slots: std::array::from_fn(|_| {
                (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0))
            }),
            attempts_total: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
        }
    }

    /// Counts one attempt that ended, and whether it failed.
    pub fn record(&self, failed: bool) {
        self.attempts_total.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures_total.fetch_add(1, Ordering::Relaxed);
        }
        let now = second(self.epoch);
        let (stamp, attempts, failures) = &self.slots[(now % SECONDS) as usize];
        claim(stamp, now, || {
            attempts.store(0, Ordering::Relaxed);
            failures.store(0, Ordering::Relaxed);
        });
        attempts.fetch_add(1, Ordering::Relaxed);
        if failed {
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Attempts and failures since the start.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.attempts_total.load(Ordering::Relaxed),
            self.failures_total.load(Ordering::Relaxed),
        )
    }

    /// Failures per attempt over the last [`SECONDS`] seconds (0 when none).
    pub fn recent_error_ratio(&self) -> f64 {
        let now = second(self.epoch);
        let (mut n, mut failed) = (0u64, 0u64);
        for (stamp, attempts, failures) in &self.slots {
            if fresh(stamp, now) {
                n += attempts.load(Ordering::Relaxed);
                failed += failures.load(Ordering::Relaxed);
            }
        }
        if n == 0 {
            0.0
        } else {
            (failed.min(n)) as f64 / n as f64
        }
    }
}

/// Percentiles of the last [`SECONDS`] seconds' latencies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percentiles {
    /// Median, ms.
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// How many latencies they come from.
    pub count: u64,
}

/// A latency histogram of the last [`SECONDS`] seconds.
#[derive(Debug)]
pub struct Latency {
    epoch: Instant,
    stamps: [AtomicU64; SECONDS as usize],
    counts: [[AtomicU64; BUCKETS]; SECONDS as usize],
}

impl Latency {
    /// Empty, counting seconds from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            stamps: std::array::from_fn(|_| AtomicU64::new(0)),
            counts: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// Counts one latency.
    pub fn record(&self, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BUCKETS - 1);
        let now = second(self.epoch);
        let slot = (now % SECONDS) as usize;
        let counts = &self.counts[slot];
        claim(&self.stamps[slot], now, || {
            for c in counts {
                c.store(0, Ordering::Relaxed);
            }
        });
        counts[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The percentiles, each the upper bound of the bucket it falls in
    /// (the last bucket reports the largest bound); `None` without data.
    pub fn percentiles(&self) -> Option<Percentiles> {
        let now = second(self.epoch);
        let mut sum = [0u64; BUCKETS];
        for (stamp, counts) in self.stamps.iter().zip(&self.counts) {
            if fresh(stamp, now) {
                for (s, c) in sum.iter_mut().zip(counts) {
                    *s += c.load(Ordering::Relaxed);
                }
            }
        }
        let count: u64 = sum.iter().sum();
        if count == 0 {
            return None;
        }
        let at = |q: f64| {
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in sum.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return LATENCY_BOUNDS_MS[i.min(LATENCY_BOUNDS_MS.len() - 1)];
                }
            }
            LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1]
        };
        Some(Percentiles {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_ratio_counts_recent_attempts_only() {
        let o = Outcomes::new(Instant::now());
        assert_eq!(o.recent_error_ratio(), 0.0);
        for i in 0..10 {
            o.record(i % 5 == 0);
        }
        assert!((o.recent_error_ratio() - 0.2).abs() < 1e-9);
        assert_eq!(o.totals(), (10, 2));
        // Slots older than the span are skipped.
        let old = Outcomes::new(Instant::now() - Duration::from_secs(3 * SECONDS));
        old.slots[0].0.store(1, Ordering::Relaxed);
        old.slots[0].1.store(5, Ordering::Relaxed);
        old.slots[0].2.store(5, Ordering::Relaxed);
        assert_eq!(old.recent_error_ratio(), 0.0);
    }

    #[test]
    fn percentiles_come_from_the_buckets() {
        let l = Latency::new(Instant::now());
        assert_eq!(l.percentiles(), None);
        for _ in 0..90 {
            l.record(Duration::from_micros(800));
        }
        for _ in 0..9 {
            l.record(Duration::from_millis(20));
        }
        l.record(Duration::from_secs(120));
        let p = l.percentiles().unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.count), (1.0, 1.0, 25.0, 100));
    }
}
