//! A pool at run time: its backends' live state (health, ejection, load),
//! its selector, circuit breaker, retry budget and upstream TLS.
//!
//! A reload builds a new `UpstreamPool` for a pool whose configuration
//! changed and hands it the previous one ([`UpstreamPool::new`]): backends
//! are carried over by address (their health, ejection and in-flight
//! counts are the same objects), and the breaker and retry budget when
//! their settings did not change. A backend the reload removes stays in
//! the previous pool, which requests that started before the reload still
//! hold: they finish on it, and the pool goes when the last one does.

use super::tls::UpstreamTlsPeer;
use super::{
    breaker::{Admission, Breaker, State},
    budget::RetryBudget,
    select::{PickInput, Selector},
    stats::{Latency, Outcomes, Percentiles},
};
use crate::{config::Pool, metrics};
use ::metrics as recorder;
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// Longest ejection, as a multiple of the configured ejection time.
const MAX_EJECTION_MULTIPLE: u32 = 10;

/// One backend's live state.
pub struct Backend {
    /// Its address.
    pub address: SocketAddr,
    /// Its address as a metric label.
    pub label: Arc<str>,
    healthy: AtomicBool,
    ejected_until_ms: AtomicU64,
    failures: AtomicU32,
    ejections: AtomicU32,
    active: AtomicUsize,
    /// Drained through the admin API: no new requests until undrained.
    drained: AtomicBool,
    /// Attempts that ended on it, and how.
    outcomes: Outcomes,
}

impl Backend {
    /// Whether the last health checks passed.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether it is drained (takes no new requests).
    pub fn drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }
}

/// One backend as the admin API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendState {
    /// Its address.
    pub address: SocketAddr,
    /// Its configured weight.
    pub weight: u32,
    /// Whether the last health checks passed.
    pub healthy: bool,
    /// Whether it is drained.
    pub drained: bool,
    /// How long its ejection has left.
    pub ejected_for: Option<Duration>,
    /// How many times it was ejected.
    pub ejections: u32,
    /// Requests in flight to it.
    pub in_flight: usize,
    /// Attempts that ended on it since it was added.
    pub requests: u64,
    /// Of those, failures.
    pub failures: u64,
    /// Failures per attempt over the last few seconds.
    pub error_ratio: f64,
}

impl BackendState {
    /// One word: draining, down, ejected or healthy (in that precedence).
    pub fn state(&self) -> &'static str {
        if self.drained {
            "draining"
        } else if !self.healthy {
            "down"
        } else if self.ejected_for.is_some() {
            "ejected"
        } else {
            "healthy"
        }
    }
}

/// A pool at run time.
pub struct UpstreamPool {
    /// Its name.
    pub name: Arc<str>,
    /// Its configuration.
    pub config: Pool,
    backends: Vec<Arc<Backend>>,
    selector: Selector,
    breaker: Option<Arc<Breaker>>,
    budget: Arc<RetryBudget>,
    /// TLS towards the backends, loaded; `None`: plain.
    pub tls: Option<UpstreamTlsPeer>,
    /// Ejection deadlines count from here; carried over with the backends.
    epoch: Instant,
    /// Recent attempt latencies; carried over.
    latency: Arc<Latency>,
    /// The time-to-head histogram, registered once.
    upstream_duration: recorder::Histogram,
    /// The pool's health-check task, stopped when the pool is dropped.
    health_task: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for UpstreamPool {
    fn drop(&mut self) {
        if let Some(task) = self.health_task.get_mut().take() {
            task.abort();
        }
    }
}

impl UpstreamPool {
    /// Builds the run-time pool for `config`, carrying over the state of
    /// `previous` (the same pool before a reload): backends by address,
    /// the breaker and the retry budget when their settings are unchanged.
    /// A new backend starts healthy, as at start-up (the pool's health
    /// check, if any, takes it out after `fall` failures).
    pub fn new(config: &Pool, previous: Option<&UpstreamPool>) -> anyhow::Result<Self> {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let backends = config
            .backends
            .iter()
            .map(|b| {
                if let Some(old) = previous.and_then(|p| p.backend_at(b.address)) {
                    return old;
                }
                let label: Arc<str> = Arc::from(b.address.to_string().as_str());
                metrics::backend_health(&name, &label, true);
                Arc::new(Backend {
                    address: b.address,
                    label,
                    healthy: AtomicBool::new(true),
                    ejected_until_ms: AtomicU64::new(0),
                    failures: AtomicU32::new(0),
                    ejections: AtomicU32::new(0),
                    active: AtomicUsize::new(0),
                    drained: AtomicBool::new(false),
                    outcomes: Outcomes::new(Instant::now()),
                })
            })
            .collect();
        let breaker = match (previous, &config.breaker) {
            (Some(p), Some(b)) if p.config.breaker.as_ref() == Some(b) => p.breaker.clone(),
            (_, Some(b)) => {
                metrics::breaker_state(&name, State::Closed);
                Some(Arc::new(Breaker::new(b.clone())))
            }
            (_, None) => None,
        };
        let budget = match previous {
            Some(p) if p.config.retries == config.retries => Arc::clone(&p.budget),
            _ => Arc::new(RetryBudget::new(
                config.retries.budget_percent,
                config.retries.min_per_window,
            )),
        };
        let tls = config.tls.as_ref().map(UpstreamTlsPeer::load).transpose()?;
        let pool = Self {
            upstream_duration: metrics::upstream_duration(&name),
            selector: Selector::new(config.algorithm, &config.backends),
            breaker,
            budget,
            tls,
            backends,
            name,
            config: config.clone(),
            epoch: previous.map_or_else(Instant::now, |p| p.epoch),
            latency: previous.map_or_else(
                || Arc::new(Latency::new(Instant::now())),
                |p| Arc::clone(&p.latency),
            ),
            health_task: parking_lot::Mutex::new(None),
        };
        // State that only the removed mechanism could undo would otherwise
        // stay for good: with no health check nothing marks a backend up
        // again, and with no outlier detection an ejection has no reason.
        for (i, b) in pool.backends.iter().enumerate() {
            if pool.config.health_check.is_none() && !b.healthy() {
                pool.set_health(i, true);
            }
            if pool.config.outlier.is_none() {
                b.ejected_until_ms.store(0, Ordering::Relaxed);
                b.failures.store(0, Ordering::Relaxed);
            }
        }
        Ok(pool)
    }

    /// The backend at `address`, shared.
    fn backend_at(&self, address: std::net::SocketAddr) -> Option<Arc<Backend>> {
        self.backends.iter().find(|b| b.address == address).cloned()
    }

    /// Gives the pool its health-check task, which it stops when dropped.
    pub fn own_health_task(&self, task: tokio::task::AbortHandle) {
        if let Some(old) = self.health_task.lock().replace(task) {
            old.abort();
        }
    }

    /// Stops the health checks (the pool was replaced by a reload).
    pub fn stop_health_checks(&self) {
        if let Some(task) = self.health_task.lock().take() {
            task.abort();
        }
    }

    /// The backends.
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn ejected(&self, b: &Backend, now_ms: u64) -> bool {
        b.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Picks a backend that is not in `tried`: a healthy, non-ejected one,
    /// or — when there is none — any of them, as Envoy's panic mode does,
    /// since refusing everything is worse than trying a suspect backend.
    /// A drained backend is never picked: the operator took it out.
    pub fn select(&self, input: PickInput<'_>, tried: &[usize]) -> Option<usize> {
        let now = self.now_ms();
        let untried = |i: &usize| !tried.contains(i) && !self.backends[*i].drained();
        let mut candidates: Vec<usize> = (0..self.backends.len())
            .filter(untried)
            .filter(|&i| self.backends[i].healthy() && !self.ejected(&self.backends[i], now))
            .collect();
        if candidates.is_empty() {
            candidates = (0..self.backends.len()).filter(untried).collect();
        }
        // Only the load-aware algorithms read it: no allocation for the
        // others.
        let active: Vec<usize> = if self.selector.uses_load() {
            self.backends
                .iter()
                .map(|b| b.active.load(Ordering::Relaxed))
                .collect()
        } else {
            Vec::new()
        };
        self.selector.pick(&candidates, &active, input)
    }

    /// Counts a request in flight to backend `i`; undone by [`Self::done`].
    pub fn start(&self, i: usize) {
        if let Some(b) = self.backends.get(i) {
            b.active.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends a request to backend `i` that was abandoned before an answer
    /// (the caller went away): counted neither way.
    pub fn release(&self, i: usize) {
        if let Some(b) = self.backends.get(i) {
            b.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Gives back an admission whose request was abandoned.
    pub fn cancel(&self, admission: Admission) {
        if let Some(b) = &self.breaker {
            b.cancel(admission);
        }
    }

    /// Ends a request to backend `i`, reporting whether it went well
    /// (a connect error or a 5xx is a failure) for outlier detection.
    pub fn done(&self, i: usize, success: bool) {
        let Some(b) = self.backends.get(i) else {
            return;
        };
        b.active.fetch_sub(1, Ordering::Relaxed);
        b.outcomes.record(!success);
        if success {
            b.failures.store(0, Ordering::Relaxed);
            return;
        }
        let Some(outlier) = &self.config.outlier else {
            return;
        };
        let failures = b.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < outlier.consecutive_failures {
            return;
        }
        let now = self.now_ms();
        let ejected_now = self
            .backends
            .iter()
            .filter(|o| self.ejected(o, now))
            .count();
        let allowed =
            (ejected_now + 1) * 100 <= outlier.max_ejected_percent as usize * self.backends.len();
        if !allowed || self.ejected(b, now) {
            return;
        }
        let n = b
            .ejections
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
            .min(MAX_EJECTION_MULTIPLE);
        // Saturating all the way: validation bounds ejection_time (at most
        // an hour), but an overflow here would panic on the request path.
        let duration = outlier.ejection_time.saturating_mul(n);
        let until = now.saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        b.ejected_until_ms.store(until, Ordering::Relaxed);
        b.failures.store(0, Ordering::Relaxed);
        metrics::ejection(&self.name, &b.label);
        tracing::warn!(
            pool = %self.name,
            backend = %b.address,
            failures,
            seconds = duration.as_secs_f64(),
            "backend ejected after consecutive failures"
        );
    }

    /// Sets backend `i`'s health from the active checks.
    pub fn set_health(&self, i: usize, healthy: bool) {
        let Some(b) = self.backends.get(i) else {
            return;
        };
        if b.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            metrics::backend_health(&self.name, &b.label, healthy);
            if healthy {
                tracing::info!(pool = %self.name, backend = %b.address, "backend healthy again");
            } else {
                tracing::warn!(pool = %self.name, backend = %b.address, "backend failed its health checks");
            }
        }
    }

    /// The circuit breaker's decision for a new request.
    pub fn admit(&self) -> Admission {
        self.budget.on_request();
        match &self.breaker {
            Some(b) => b.admit(),
            None => Admission::Allowed { probe: false },
        }
    }

    /// Reports a finished request to the circuit breaker.
    pub fn record(&self, admission: Admission, success: bool) {
        if let Some(b) = &self.breaker {
            let state = b.record(admission, success);
            metrics::breaker_state(&self.name, state);
        }
    }

    /// Whether another attempt is allowed after `attempts` so far.
    pub fn may_retry(&self, attempts: u32) -> bool {
        let allowed = attempts <= self.config.retries.attempts && self.budget.try_retry();
        if allowed {
            metrics::retry(&self.name);
        }
        allowed
    }

    /// Records a backend's time to response head, in seconds.
    pub fn record_upstream_duration(&self, seconds: f64) {
        self.upstream_duration.record(seconds);
    }

    /// Counts how long an attempt took, for the admin API's percentiles.
    pub fn observe_latency(&self, took: Duration) {
        self.latency.record(took);
    }

    /// Recent latency percentiles; `None` without recent attempts.
    pub fn latency(&self) -> Option<Percentiles> {
        self.latency.percentiles()
    }

    /// The breaker's state; `None` without a breaker.
    pub fn breaker_state(&self) -> Option<State> {
        self.breaker.as_ref().map(|b| b.state())
    }

    /// Drains (no new requests) or undrains the backend at `address`;
    /// false when the pool has none there.
    pub fn set_drained(&self, address: SocketAddr, drained: bool) -> bool {
        let Some(b) = self.backends.iter().find(|b| b.address == address) else {
            return false;
        };
        if b.drained.swap(drained, Ordering::Relaxed) != drained {
            tracing::info!(
                pool = %self.name,
                backend = %address,
                state = if drained { "drained" } else { "undrained" },
                "backend drain changed"
            );
        }
        true
    }

    /// Every backend's state, in file order.
    pub fn states(&self) -> Vec<BackendState> {
        self.backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (requests, failures) = b.outcomes.totals();
                BackendState {
                    address: b.address,
                    // This pool's own configuration's: the backend object
                    // may be shared with another generation's pool.
                    weight: self.config.backends.get(i).map_or(0, |c| c.weight),
                    healthy: b.healthy(),
                    drained: b.drained(),
                    ejected_for: self.ejected_for(i),
                    ejections: b.ejections.load(Ordering::Relaxed),
                    in_flight: b.active.load(Ordering::Relaxed),
                    requests,
                    failures,
                    error_ratio: b.outcomes.recent_error_ratio(),
                }
            })
            .collect()
    }

    /// How long the ejection of backend `i` has left, if any.
    pub fn ejected_for(&self, i: usize) -> Option<Duration> {
        let b = self.backends.get(i)?;
        let left = b
            .ejected_until_ms
            .load(Ordering::Relaxed)
            .checked_sub(self.now_ms())?;
        (left > 0).then(|| Duration::from_millis(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Outlier, Pool};

    fn pool(ejection_time: Duration) -> UpstreamPool {
        let backends = ["10.0.0.1:80", "10.0.0.2:80"]
            .iter()
            .map(|a| crate::config::BackendSpec {
                address: a.parse().unwrap(),
                weight: 1,
            })
            .collect();
        UpstreamPool::new(
            &Pool {
                name: "p".into(),
                algorithm: crate::config::Algorithm::RoundRobin,
                hash_key: Default::default(),
                backends,
                health_check: None,
                outlier: Some(Outlier {
                    consecutive_failures: 1,
                    ejection_time,
                    max_ejected_percent: 100,
                }),
                timeouts: Default::default(),
                retries: Default::default(),
                breaker: None,
                keepalive_idle: None,
                tls: None,
                protocol: Default::default(),
            },
            None,
        )
        .unwrap()
    }

    #[test]
    fn an_enormous_ejection_time_saturates_instead_of_overflowing() {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        // Its milliseconds do not fit a u64: truncated, they were 384 ms.
        let p = pool(Duration::from_secs(u64::MAX / 1000 + 1));
        p.start(0);
        p.done(0, false);
        assert!(p.ejected_for(0).is_some_and(|d| d > YEAR));
        assert!(p.ejected_for(1).is_none());
        // A sixth ejection multiplies the time by 6: that overflowed (a panic).
        let p = pool(Duration::from_secs(u64::MAX / 4));
        p.backends[0].ejections.store(5, Ordering::Relaxed);
        p.start(0);
        p.done(0, false);
        assert!(p.ejected_for(0).is_some_and(|d| d > YEAR));
    }

    #[test]
    fn a_rebuilt_pool_keeps_the_state_of_the_backends_it_keeps() {
        let old = pool(Duration::from_secs(30));
        old.set_health(1, false);
        old.start(0);
        old.done(0, false);
        old.start(0);
        let mut config = old.config.clone();
        config.health_check = Some(crate::config::HealthCheck {
            kind: crate::config::CheckKind::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 1,
            fall: 1,
        });
        config.backends.reverse();
        config.backends.push(crate::config::BackendSpec {
            address: "10.0.0.3:80".parse().unwrap(),
            weight: 1,
        });
        let new = UpstreamPool::new(&config, Some(&old)).unwrap();
        let at = |p: &UpstreamPool, a: &str| {
            let a: SocketAddr = a.parse().unwrap();
            p.backends().iter().position(|b| b.address == a).unwrap()
        };
        // Same objects, found by address whatever their position.
        let (one, two, three) = (
            at(&new, "10.0.0.1:80"),
            at(&new, "10.0.0.2:80"),
            at(&new, "10.0.0.3:80"),
        );
        assert!(!new.backends()[two].healthy(), "health carried over");
        assert!(new.ejected_for(one).is_some(), "ejection carried over");
        assert_eq!(new.backends()[one].active.load(Ordering::Relaxed), 1);
        // The old pool's request ends on the shared backend.
        old.done(0, true);
        assert_eq!(new.backends()[one].active.load(Ordering::Relaxed), 0);
        assert!(
            new.backends()[three].healthy(),
            "a new backend starts healthy"
        );
    }

    #[test]
    fn a_drained_backend_is_never_picked_not_even_in_panic_mode() {
        let p = pool(Duration::from_secs(30));
        let input = || PickInput {
            client: None,
            hash_key: &[],
        };
        let b0: SocketAddr = "10.0.0.1:80".parse().unwrap();
        assert!(p.set_drained(b0, true));
        assert!(!p.set_drained("10.0.0.9:80".parse().unwrap(), true));
        for _ in 0..10 {
            assert_eq!(p.select(input(), &[]), Some(1));
        }
        // The other one down: panic mode tries any backend, but not the
        // drained one; with it tried, there is none.
        p.set_health(1, false);
        assert_eq!(p.select(input(), &[]), Some(1));
        assert_eq!(p.select(input(), &[1]), None);
        assert_eq!(p.states()[0].state(), "draining");
        assert_eq!(p.states()[1].state(), "down");
        assert!(p.set_drained(b0, false));
        assert_eq!(p.select(input(), &[1]), Some(0));
    }

    #[test]
    fn an_ejection_lasts_the_ejection_time_then_grows() {
        let p = pool(Duration::from_secs(30));
        p.start(0);
        p.done(0, false);
        let first = p.ejected_for(0).unwrap();
        assert!(first <= Duration::from_secs(30) && first > Duration::from_secs(29));
        p.backends[0].ejected_until_ms.store(0, Ordering::Relaxed);
        p.start(0);
        p.done(0, false);
        let second = p.ejected_for(0).unwrap();
        assert!(second > Duration::from_secs(59), "{second:?}");
    }
}
