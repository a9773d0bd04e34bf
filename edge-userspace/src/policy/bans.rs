//! L7 verdicts enforced in the kernel: a source that keeps being refused
//! (N answers with a listed status within a window) is banned for a
//! while. The ban goes into the XDP program's ban map, so the source's
//! packets are dropped before the stack sees them, for every listener and
//! VIP; edge also refuses its requests itself, which covers listeners on
//! interfaces without XDP and connections opened before the ban.
//!
//! Bans expire by themselves (the XDP program ignores an expired entry;
//! a sweeper removes it), are bounded in number, never touch the
//! `never` prefixes, and are listed and lifted through the admin endpoint.

use crate::{config::gateway::BanConfig, metrics};
use parking_lot::Mutex;
use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroUsize,
    sync::{
        Arc, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// How often expired bans are swept from the maps.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Sources whose strikes are remembered at once.
const STRIKE_ENTRIES: usize = 100_000;

/// The kernel's ban map, as the daemon gives it.
pub trait BanMap: Send + Sync {
    /// Bans `ip` for `time` from now.
    fn ban(&self, ip: IpAddr, time: Duration) -> Result<(), String>;
    /// Lifts `ip`'s ban.
    fn unban(&self, ip: IpAddr) -> Result<(), String>;
    /// Every standing ban in the map, with the time it has left (a
    /// restarted edge adopts them); expired entries are removed on the way.
    fn entries(&self) -> Result<Vec<(IpAddr, Duration)>, String>;
}

/// Strikes and bans.
pub struct Bans {
    config: arc_swap::ArcSwapOption<BanConfig>,
    strikes: Mutex<lru::LruCache<IpAddr, (u32, Instant)>>,
    active: Mutex<HashMap<IpAddr, Instant>>,
    /// A copy of `active` that requests read without a lock (bans change
    /// rarely; requests look on every request while any ban stands).
    snapshot: arc_swap::ArcSwap<HashMap<IpAddr, Instant>>,
    /// `active.len()`, read without the lock on every request.
    count: AtomicUsize,
    map: Option<Arc<dyn BanMap>>,
    sweeper: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Bans {
    fn drop(&mut self) {
        if let Some(t) = self.sweeper.lock().take() {
            t.abort();
        }
    }
}

/// One ban, for the admin listing.
#[derive(Debug, serde::Serialize)]
pub struct Listed {
    /// The source.
    pub address: String,
    /// Seconds left.
    pub expires_in: u64,
}

impl Bans {
    /// Bans written into `map` (when edge runs XDP); the sweeper runs on
    /// `handle`. Bans already in the map (left by the edge before a
    /// restart) are adopted.
    pub fn start(map: Option<Arc<dyn BanMap>>, handle: &tokio::runtime::Handle) -> Arc<Self> {
        let bans = Arc::new(Self {
            config: arc_swap::ArcSwapOption::empty(),
            strikes: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(STRIKE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
            active: Mutex::new(HashMap::new()),
            snapshot: arc_swap::ArcSwap::from_pointee(HashMap::new()),
            count: AtomicUsize::new(0),
            map,
            sweeper: Mutex::new(None),
        });
        bans.adopt();
        let weak = Arc::downgrade(&bans);
        let task = handle.spawn(sweep_loop(weak));
        *bans.sweeper.lock() = Some(task.abort_handle());
        bans
    }

    /// Takes the bans in the kernel map this process does not know of (an
    /// earlier edge's, or the old process's during an upgrade), and lets
    /// the map drop its expired entries.
    fn adopt(&self) {
        let Some(map) = &self.map else { return };
        match map.entries() {
            Ok(list) => {
                let now = Instant::now();
                let mut active = self.active.lock();
                for (ip, left) in list {
                    active.entry(ip).or_insert(now + left);
                }
                self.publish(&active);
            }
            Err(e) => {
                metrics::ban_error();
                tracing::warn!("cannot read the bans in the kernel: {e}");
            }
        }
    }

    /// Takes the settings of a new generation (`None`: no new bans; the
    /// standing ones run out).
    pub fn configure(&self, config: Option<BanConfig>) {
        self.config.store(config.map(Arc::new));
    }

    /// Whether any ban stands (a lock-free test for the request path).
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// Whether answers are being counted towards bans.
    pub fn counting(&self) -> bool {
        self.config.load().is_some()
    }

    /// Whether `ip` is banned now.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let ip = ip.to_canonical();
        self.snapshot
            .load()
            .get(&ip)
            .is_some_and(|until| Instant::now() < *until)
    }

    /// Makes `active` what requests see.
    fn publish(&self, active: &HashMap<IpAddr, Instant>) {
        self.snapshot.store(Arc::new(active.clone()));
        self.count.store(active.len(), Ordering::Release);
    }

    /// Counts an answer with `status` to `ip`; bans it when it is the
    /// configured number within the window, in the kernel too when `ip` is
    /// the packets' source (`kernel`), not an address a trusted proxy
    /// vouched for.
    pub fn record(&self, ip: IpAddr, status: u16, kernel: bool) {
        let ip = ip.to_canonical();
        let Some(cfg) = self.config.load_full() else {
            return;
        };
        if !cfg.statuses.contains(&status) || cfg.never.iter().any(|n| n.contains(&ip)) {
            return;
        }
        let now = Instant::now();
        let strikes = {
            let mut table = self.strikes.lock();
            let entry = table.get_or_insert_mut(ip, || (0, now));
            if now.duration_since(entry.1) > cfg.within {
                *entry = (0, now);
            }
            entry.0 += 1;
            entry.0
        };
        if strikes < cfg.after || self.is_banned(ip) {
            return;
        }
        self.strikes.lock().pop(&ip);
        {
            let mut active = self.active.lock();
            if active.len() >= cfg.max {
                metrics::ban_refused();
                tracing::warn!(%ip, max = cfg.max, "ban not placed: the ban list is full");
                return;
            }
            active.insert(ip, now + cfg.ban_for);
            self.publish(&active);
        }
        if kernel
            && let Some(map) = &self.map
            && let Err(e) = map.ban(ip, cfg.ban_for)
        {
            metrics::ban_error();
            tracing::warn!(%ip, "cannot write the ban into the kernel: {e}");
        }
        metrics::ban_placed();
        tracing::warn!(%ip, seconds = cfg.ban_for.as_secs(), strikes, "source banned");
    }

    /// The standing bans.
    pub fn list(&self) -> Vec<Listed> {
        let now = Instant::now();
        let mut out: Vec<Listed> = self
            .active
            .lock()
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(ip, until)| Listed {
                address: ip.to_string(),
                expires_in: until.duration_since(now).as_secs_f64().ceil() as u64,
            })
            .collect();
        out.sort_by(|a, b| a.address.cmp(&b.address));
        out
    }

    /// Lifts `ip`'s ban; whether there was one.
    pub fn lift(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let was = {
            let mut active = self.active.lock();
            let was = active.remove(&ip).is_some();
            self.publish(&active);
            was
        };
        self.strikes.lock().pop(&ip);
        if let Some(map) = &self.map
            && let Err(e) = map.unban(ip)
        {
            metrics::ban_error();
            tracing::warn!(%ip, "cannot remove the ban from the kernel: {e}");
        }
        was
    }

    fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<IpAddr> = {
            let mut active = self.active.lock();
            let expired: Vec<IpAddr> = active
                .iter()
                .filter(|(_, until)| **until <= now)
                .map(|(ip, _)| *ip)
                .collect();
            for ip in &expired {
                active.remove(ip);
            }
            if !expired.is_empty() {
                self.publish(&active);
            }
            metrics::bans_active(active.len());
            expired
        };
        for ip in expired {
            if let Some(map) = &self.map
                && let Err(e) = map.unban(ip)
            {
                metrics::ban_error();
                tracing::warn!(%ip, "cannot remove an expired ban from the kernel: {e}");
            }
            tracing::info!(%ip, "ban expired");
        }
    }
}

/// Sweeps between two looks at the whole kernel map.
const ADOPT_EVERY: u32 = 30;

async fn sweep_loop(weak: Weak<Bans>) {
    let mut n = 0u32;
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(bans) = weak.upgrade() else { return };
        bans.sweep();
        n += 1;
        if n.is_multiple_of(ADOPT_EVERY) {
            bans.adopt();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(after: u32) -> BanConfig {
        BanConfig {
            after,
            within: Duration::from_secs(60),
            ban_for: Duration::from_secs(600),
            statuses: vec![401, 403, 429],
            max: 2,
            never: vec!["10.0.0.0/8".parse().unwrap()],
        }
    }

    #[tokio::test]
    async fn strikes_ban_within_bounds_and_never_the_operators_networks() {
        let bans = Bans::start(None, &tokio::runtime::Handle::current());
        bans.configure(Some(config(3)));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        bans.record(a, 401, true);
        bans.record(a, 200, true);
        bans.record(a, 429, true);
        assert!(!bans.is_banned(a));
        bans.record(a, 403, true);
        assert!(bans.is_banned(a));
        let office: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..10 {
            bans.record(office, 401, true);
        }
        assert!(!bans.is_banned(office));
        // Bounded: a third source is not banned while two are.
        for ip in ["192.0.2.2", "192.0.2.3"] {
            for _ in 0..3 {
                bans.record(ip.parse().unwrap(), 401, true);
            }
        }
        assert_eq!(bans.list().len(), 2);
        assert!(bans.lift(a));
        assert!(!bans.is_banned(a));
        // An IPv4 client on a dual-stack socket is the same source.
        let mapped: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        assert!(bans.is_banned(mapped));
    }
}
