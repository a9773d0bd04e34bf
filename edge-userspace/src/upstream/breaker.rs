//! A circuit breaker per pool: when the error ratio over a sliding window
//! passes the threshold it opens and requests fail fast (503); after
//! `open_for` it lets a few probe requests through (half-open), which
//! close it when they all succeed or open it again when one fails.

use super::window::Window;
use crate::config::Breaker as Config;
use std::{sync::Mutex, time::Instant};

/// The breaker's state, as exported (0, 1, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Requests flow.
    Closed = 0,
    /// A few probes flow.
    HalfOpen = 1,
    /// Requests fail fast.
    Open = 2,
}

/// Whether a request may go upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes; `probe` when it is a half-open probe.
    Allowed {
        /// This request is a half-open probe.
        probe: bool,
    },
    /// No: the breaker is open.
    Rejected,
}

struct Inner {
    state: State,
    /// (requests, errors) per bucket of the window (a fixed number of
    /// buckets, whatever the window's length).
    window: Window,
    opened_at_ms: u64,
    probes_sent: u32,
    probes_ok: u32,
}

/// One pool's circuit breaker.
pub struct Breaker {
    config: Config,
    epoch: Instant,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: Config) -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: State::Closed,
                window: Window::new(config.window),
                opened_at_ms: 0,
                probes_sent: 0,
                probes_ok: 0,
            }),
            config,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The state as last decided (an open breaker whose `open_for` has run
    /// out turns half-open at the next request).
    pub fn state(&self) -> State {
        self.inner.lock().map_or(State::Closed, |i| i.state)
    }

    /// Decides for a new request.
    pub fn admit(&self) -> Admission {
        self.admit_at(self.now_ms())
    }

    /// Records a finished request.
    pub fn record(&self, admission: Admission, success: bool) -> State {
        self.record_at(self.now_ms(), admission, success)
    }

    fn tick(&self, inner: &mut Inner, now_ms: u64) {
        if inner.state == State::Open
            && now_ms.saturating_sub(inner.opened_at_ms)
                >= u64::try_from(self.config.open_for.as_millis()).unwrap_or(u64::MAX)
        {
            inner.state = State::HalfOpen;
            inner.probes_sent = 0;
            inner.probes_ok = 0;
        }
    }

    fn admit_at(&self, now_ms: u64) -> Admission {
        let Ok(mut inner) = self.inner.lock() else {
            return Admission::Allowed { probe: false };
        };
        self.tick(&mut inner, now_ms);
        match inner.state {
            State::Closed => Admission::Allowed { probe: false },
            State::Open => Admission::Rejected,
            State::HalfOpen if inner.probes_sent < self.config.half_open_requests => {
                inner.probes_sent += 1;
                Admission::Allowed { probe: true }
            }
            State::HalfOpen => Admission::Rejected,
        }
    }

    /// Gives back a half-open probe that never got an answer (its caller
    /// went away): neither a success nor a failure, and the next request
    /// may probe instead.
    pub fn cancel(&self, admission: Admission) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if matches!(admission, Admission::Allowed { probe: true }) && inner.state == State::HalfOpen
        {
            inner.probes_sent = inner.probes_sent.saturating_sub(1);
        }
    }

    fn record_at(&self, now_ms: u64, admission: Admission, success: bool) -> State {
        let Ok(mut inner) = self.inner.lock() else {
            return State::Closed;
        };
        let probe = matches!(admission, Admission::Allowed { probe: true });
        match inner.state {
            State::HalfOpen if probe => {
                if success {
                    inner.probes_ok += 1;
                    if inner.probes_ok >= self.config.half_open_requests {
                        inner.state = State::Closed;
                        inner.window.clear();
                    }
                } else {
                    inner.state = State::Open;
                    inner.opened_at_ms = now_ms;
                }
            }
            State::Closed => {
                let sec = now_ms / 1000;
                inner.window.add(sec, 1, u64::from(!success));
                let (requests, errors) = inner.window.sums(sec);
                if requests >= u64::from(self.config.min_requests)
                    && errors as f64 >= self.config.error_ratio * requests as f64
                {
                    inner.state = State::Open;
                    inner.opened_at_ms = now_ms;
                }
            }
            // Late answers of requests admitted before the state changed.
            _ => {}
        }
        inner.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn breaker() -> Breaker {
        Breaker::new(Config {
            error_ratio: 0.5,
            window: Duration::from_secs(10),
            min_requests: 4,
            open_for: Duration::from_secs(5),
            half_open_requests: 2,
        })
    }

    const OK: Admission = Admission::Allowed { probe: false };

    #[test]
    fn opens_on_ratio_then_half_opens_and_closes() {
        let b = breaker();
        assert_eq!(b.record_at(0, OK, true), State::Closed);
        assert_eq!(b.record_at(10, OK, false), State::Closed);
        assert_eq!(b.record_at(20, OK, true), State::Closed);
        // 4 requests, 2 errors: ratio 0.5 reached.
        assert_eq!(b.record_at(30, OK, false), State::Open);
        assert_eq!(b.admit_at(4_000), Admission::Rejected);
        let p1 = b.admit_at(5_100);
        let p2 = b.admit_at(5_100);
        assert_eq!(p1, Admission::Allowed { probe: true });
        assert_eq!(p2, Admission::Allowed { probe: true });
        assert_eq!(b.admit_at(5_100), Admission::Rejected);
        assert_eq!(b.record_at(5_200, p1, true), State::HalfOpen);
        assert_eq!(b.record_at(5_200, p2, true), State::Closed);
        assert_eq!(b.admit_at(5_300), OK);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = breaker();
        for t in 0..4 {
            b.record_at(t, OK, false);
        }
        let p = b.admit_at(6_000);
        assert_eq!(b.record_at(6_001, p, false), State::Open);
        assert_eq!(b.admit_at(7_000), Admission::Rejected);
    }

    #[test]
    fn an_hour_long_window_counts_the_whole_hour() {
        let b = Breaker::new(Config {
            window: Duration::from_secs(3600),
            ..breaker().config
        });
        // Two errors 50 minutes apart, two successes in between: 0.5.
        assert_eq!(b.record_at(0, OK, false), State::Closed);
        assert_eq!(b.record_at(1_000_000, OK, true), State::Closed);
        assert_eq!(b.record_at(2_000_000, OK, true), State::Closed);
        assert_eq!(b.record_at(3_000_000, OK, false), State::Open);
    }

    #[test]
    fn too_few_requests_never_open() {
        let b = breaker();
        for t in 0..3 {
            assert_eq!(b.record_at(t, OK, false), State::Closed);
        }
    }
}
