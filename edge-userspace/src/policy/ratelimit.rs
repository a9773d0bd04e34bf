//! Rate limits: GCRA (the generic cell rate algorithm, a token bucket
//! kept as one timestamp per key) counted in this process or in Redis.
//!
//! A limit of `limit` requests per `window` lets a burst of `limit`
//! through at once and then one request every `window / limit`. Local
//! counters are kept per key in a bounded LRU table: a flood of distinct
//! keys evicts the least recently seen ones (which start afresh) rather
//! than growing memory. A request counts against all of a route's limits
//! or none ([`check_all`]).

use super::{Generation, Outcome, Rejection, Request, redis::RedisStore};
use crate::{
    config::gateway::{LimitKey, LimitStore, RateLimitHeaders, RateLimitPolicy},
    metrics,
};
use parking_lot::Mutex;
use std::{
    hash::BuildHasher,
    num::NonZeroUsize,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

/// Shards of a local table (fewer lock collisions between threads).
const SHARDS: usize = 16;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Requests left right now.
    pub remaining: u64,
    /// Until the whole limit is available again.
    pub reset: Duration,
    /// Until the next request would be allowed (zero when allowed).
    pub retry_after: Duration,
}

/// One GCRA step at `now` (ns) over the stored theoretical arrival time
/// `tat`; times are scaled by `limit` so that the arithmetic is exact.
/// Returns the decision and the time to store (`None`: unchanged).
pub fn gcra(
    tat: Option<u128>,
    now: u128,
    limit: u32,
    window: Duration,
) -> (Decision, Option<u128>) {
    let limit = u128::from(limit.max(1));
    let step = window.as_nanos().max(1);
    let now_s = now * limit;
    let tau = step * (limit - 1);
    let tat = tat.unwrap_or(now_s).max(now_s);
    let used = tat - now_s;
    let ns = |scaled: u128| {
        Duration::from_nanos(u64::try_from(scaled.div_ceil(limit)).unwrap_or(u64::MAX))
    };
    if used > tau {
        return (
            Decision {
                allowed: false,
                remaining: 0,
                reset: ns(used),
                retry_after: ns(used - tau),
            },
            None,
        );
    }
    let next = tat + step;
    let used = next - now_s;
    let remaining = (tau + step - used) / step;
    (
        Decision {
            allowed: true,
            remaining: u64::try_from(remaining).unwrap_or(u64::MAX),
            reset: ns(used),
            retry_after: Duration::ZERO,
        },
        Some(next),
    )
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A local limit's counters.
pub struct LocalLimit {
    limit: u32,
    window: Duration,
    key: LimitKey,
    capacity: usize,
    hasher: std::collections::hash_map::RandomState,
    shards: Vec<Mutex<lru::LruCache<u64, u128>>>,
}

impl LocalLimit {
    /// Empty counters for `p`, remembering at most `max_keys` keys.
    pub fn new(p: &RateLimitPolicy, max_keys: usize) -> Self {
        let per_shard =
            NonZeroUsize::new(max_keys.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            limit: p.limit,
            window: p.window,
            key: p.key.clone(),
            capacity: max_keys,
            hasher: Default::default(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(lru::LruCache::new(per_shard)))
                .collect(),
        }
    }

    /// Whether these counters count what `p` asks (a reload that keeps a
    /// limit's settings keeps its counters).
    pub fn same_settings(&self, p: &RateLimitPolicy, max_keys: usize) -> bool {
        self.limit == p.limit
            && self.window == p.window
            && self.key == p.key
            && self.capacity == max_keys
    }

    /// One request of `key`; an allowed one returns the handle that
    /// gives it back ([`LocalLimit::refund`]).
    pub fn check(&self, key: &[u8]) -> (Decision, Option<u64>) {
        let h = self.hasher.hash_one(key);
        let now = epoch().elapsed().as_nanos();
        let shard = &self.shards[(h as usize) % SHARDS];
        let mut table = shard.lock();
        let (decision, next) = gcra(table.get(&h).copied(), now, self.limit, self.window);
        let Some(next) = next else {
            return (decision, None);
        };
        if table.push(h, next).is_some_and(|(old, _)| old != h) {
            metrics::ratelimit_evicted();
        }
        (decision, Some(h))
    }

    /// Gives back a request [`LocalLimit::check`] allowed (a later limit
    /// refused it): GCRA's step is exact, so this is as if it never came.
    pub fn refund(&self, h: u64) {
        let step = self.window.as_nanos().max(1);
        if let Some(tat) = self.shards[(h as usize) % SHARDS].lock().get_mut(&h) {
            *tat = tat.saturating_sub(step);
        }
    }
}

/// Where one limit counts.
enum Counter {
    Local(Arc<LocalLimit>),
    Redis(Arc<RedisStore>, String),
}

/// One compiled limit of a route.
pub struct Limit {
    policy: RateLimitPolicy,
    counter: Counter,
    /// `"name";q=10;w=60`, for `RateLimit-Policy`.
    draft_policy: String,
}

impl Limit {
    /// Compiles limit `p` of `route` on `listener`, taking its counters
    /// from `generation`.
    pub fn new(
        listener: &str,
        route: &str,
        p: &RateLimitPolicy,
        generation: &Generation,
    ) -> anyhow::Result<Self> {
        let counter = match p.store {
            LimitStore::Local => Counter::Local(generation.local_limit(listener, route, p)),
            LimitStore::Redis => {
                let store = generation.redis.clone().ok_or_else(|| {
                    anyhow::anyhow!("limit {} uses redis, which is not configured", p.name)
                })?;
                // The settings are part of the key: a changed limit starts
                // afresh, as a local one does.
                let prefix = format!(
                    "edge:rl:{listener}:{}:{}:{}:{}:{}:",
                    super::state::scoped(route, p.scope),
                    p.name,
                    p.limit,
                    p.window.as_millis(),
                    p.key.describe()
                );
                Counter::Redis(store, prefix)
            }
        };
        Ok(Self {
            draft_policy: format!(
                "\"{}\";q={};w={}",
                p.name,
                p.limit,
                p.window.as_secs().max(1)
            ),
            policy: p.clone(),
            counter,
        })
    }

    fn key(&self, req: &Request<'_>, route: &str, out: &Outcome) -> Vec<u8> {
        let ip = || match req.client {
            Some(ip) => format!("i:{}", super::client::limit_address(ip)).into_bytes(),
            None => b"i:".to_vec(),
        };
        match &self.policy.key {
            // Without a consumer, callers are told apart by address (as
            // Kong does).
            LimitKey::Consumer => match out.limit_consumer() {
                Some(c) => format!("c:{c}").into_bytes(),
                None => ip(),
            },
            LimitKey::ClientIp => ip(),
            LimitKey::Route => match self.policy.scope {
                crate::config::gateway::Scope::Listener => b"r:*".to_vec(),
                crate::config::gateway::Scope::Route => format!("r:{route}").into_bytes(),
            },
            LimitKey::Header(h) => {
                let mut k = b"h:".to_vec();
                if let Some(v) = req.head.headers.get(h.as_str()) {
                    k.extend_from_slice(v.as_bytes());
                }
                k
            }
        }
    }
}

/// Checks `limits`: the local ones in order, then every Redis one in one
/// atomic call. A request is counted by all of them or by none: a limit
/// that refuses gives back what the ones before it took. Adds the
/// rate-limit headers of `style` to `out`, or refuses with 429.
pub async fn check_all(
    limits: &[Limit],
    style: RateLimitHeaders,
    req: &Request<'_>,
    route: &str,
    out: &mut Outcome,
) -> Result<(), Rejection> {
    let mut decisions: Vec<(&Limit, Decision)> = Vec::with_capacity(limits.len());
    let mut taken: Vec<(&LocalLimit, u64)> = Vec::new();
    let refund = |taken: &[(&LocalLimit, u64)]| {
        for (l, h) in taken {
            l.refund(*h);
        }
    };
    let mut shared: Vec<(&Limit, String, Vec<u8>)> = Vec::new();
    let mut store: Option<&RedisStore> = None;
    for limit in limits {
        let key = limit.key(req, route, out);
        match &limit.counter {
            Counter::Local(l) => {
                let (decision, handle) = l.check(&key);
                if !decision.allowed {
                    refund(&taken);
                    return Err(refusal(style, limits, limit, decision));
                }
                if let Some(h) = handle {
                    taken.push((l.as_ref(), h));
                }
                decisions.push((limit, decision));
            }
            Counter::Redis(s, prefix) => {
                store = Some(s);
                shared.push((limit, prefix.clone(), key));
            }
        }
    }
    if let Some(store) = store {
        let batch: Vec<(&str, &[u8], &RateLimitPolicy)> = shared
            .iter()
            .map(|(l, prefix, key)| (prefix.as_str(), key.as_slice(), &l.policy))
            .collect();
        match store.check_many(&batch).await {
            Ok(answers) => {
                if let Some((limit, decision)) = shared
                    .iter()
                    .zip(&answers)
                    .find(|(_, d)| !d.allowed)
                    .map(|((l, _, _), d)| (*l, *d))
                {
                    refund(&taken);
                    return Err(refusal(style, limits, limit, decision));
                }
                decisions.extend(shared.iter().map(|(l, _, _)| *l).zip(answers));
            }
            Err(e) => {
                metrics::ratelimit_store_error();
                tracing::warn!(route, "rate-limit store: {e}");
                if !store.config().fail_open {
                    refund(&taken);
                    return Err(Rejection::new(
                        503,
                        "rate_limit",
                        "store_unavailable",
                        "Rate limits cannot be checked right now",
                    )
                    .with("retry-after", "1")
                    .no_strike());
                }
            }
        }
    }
    // The limit closest to refusing describes the state in the headers.
    if let Some((limit, decision)) = decisions.iter().min_by_key(|(_, d)| d.remaining) {
        if style != RateLimitHeaders::None {
            out.response_remove.extend(HEADER_NAMES);
        }
        headers(style, limits, limit, *decision, &mut out.response_headers);
    }
    Ok(())
}

fn refusal(style: RateLimitHeaders, all: &[Limit], limit: &Limit, d: Decision) -> Rejection {
    let secs = d.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut r = Rejection::new(429, "rate_limit", "exceeded", "API rate limit exceeded")
        .with("retry-after", secs.to_string());
    // A limit shared by many callers refuses whoever comes last.
    r.strike = matches!(limit.policy.key, LimitKey::Consumer | LimitKey::ClientIp);
    headers(style, all, limit, d, &mut r.headers);
    r
}

/// The rate-limit fields edge writes: an upstream's own are replaced.
pub const HEADER_NAMES: [&str; 5] = [
    "ratelimit-policy",
    "ratelimit",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

fn headers(
    style: RateLimitHeaders,
    all: &[Limit],
    limit: &Limit,
    d: Decision,
    out: &mut Vec<(String, String)>,
) {
    let reset = d.reset.as_secs_f64().ceil() as u64;
    match style {
        RateLimitHeaders::Draft => {
            let policies: Vec<&str> = all.iter().map(|l| l.draft_policy.as_str()).collect();
            out.push(("ratelimit-policy".into(), policies.join(", ")));
            out.push((
                "ratelimit".into(),
                format!("\"{}\";r={};t={reset}", limit.policy.name, d.remaining),
            ));
        }
        RateLimitHeaders::XRateLimit => {
            out.push(("x-ratelimit-limit".into(), limit.policy.limit.to_string()));
            out.push(("x-ratelimit-remaining".into(), d.remaining.to_string()));
            out.push(("x-ratelimit-reset".into(), reset.to_string()));
        }
        RateLimitHeaders::None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u128 = 1_000_000_000;

    #[test]
    fn a_burst_of_limit_passes_then_one_per_interval() {
        let w = Duration::from_secs(10);
        let mut tat = None;
        for i in 0..5 {
            let (d, next) = gcra(tat, 100 * S, 5, w);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
            tat = next;
        }
        let (d, next) = gcra(tat, 100 * S, 5, w);
        assert!(!d.allowed);
        assert_eq!(next, None);
        assert_eq!(d.retry_after, Duration::from_secs(2));
        assert_eq!(d.reset, Duration::from_secs(10));
        // One interval later exactly one more fits.
        let (d, next) = gcra(tat, 102 * S, 5, w);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!gcra(next, 102 * S, 5, w).0.allowed);
        // A full window later the whole burst is back.
        assert_eq!(gcra(next, 112 * S, 5, w).0.remaining, 4);
    }

    #[test]
    fn a_limit_of_one_allows_one_per_window() {
        let w = Duration::from_secs(3600);
        let (d, tat) = gcra(None, S, 1, w);
        assert!(d.allowed && d.remaining == 0);
        assert!(!gcra(tat, S + 3599 * S, 1, w).0.allowed);
        assert!(gcra(tat, S + 3600 * S, 1, w).0.allowed);
    }

    #[test]
    fn huge_limits_do_not_overflow() {
        let (d, _) = gcra(
            None,
            u64::MAX as u128,
            1_000_000_000,
            Duration::from_secs(86_400),
        );
        assert!(d.allowed);
    }

    #[test]
    fn a_refund_gives_the_request_back() {
        let p = RateLimitPolicy {
            name: "x".into(),
            key: LimitKey::ClientIp,
            limit: 2,
            window: Duration::from_secs(3600),
            store: LimitStore::Local,
            scope: crate::config::gateway::Scope::Route,
        };
        let l = LocalLimit::new(&p, 64);
        let (first, _) = l.check(b"k");
        assert!(first.allowed && first.remaining == 1);
        let (second, h) = l.check(b"k");
        assert!(second.allowed && second.remaining == 0);
        l.refund(h.unwrap());
        let (again, _) = l.check(b"k");
        assert!(again.allowed && again.remaining == 0, "{again:?}");
        assert!(!l.check(b"k").0.allowed);
    }

    #[test]
    fn the_table_is_bounded() {
        let p = RateLimitPolicy {
            name: "x".into(),
            key: LimitKey::ClientIp,
            limit: 1,
            window: Duration::from_secs(60),
            store: LimitStore::Local,
            scope: crate::config::gateway::Scope::Route,
        };
        let l = LocalLimit::new(&p, 64);
        for i in 0..10_000u32 {
            let _ = l.check(&i.to_be_bytes());
        }
        let held: usize = l.shards.iter().map(|s| s.lock().len()).sum();
        assert!(held <= 64, "{held}");
    }
}
