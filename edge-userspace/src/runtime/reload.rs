//! Reload: read the file, check it completely, build the next generation,
//! and swap it in whole — or keep the running one and report every error.
//!
//! SIGHUP, `edge reload` (the control socket) and `POST /reload` on the
//! admin endpoint all call [`Reloader::reload`]; reloads are serialised.

use super::{
    ListenerRuntime, Listeners, Pools,
    restart::{self, Fixed},
};
use crate::{
    cache,
    config::{self, Config, ConfigError, Diagnostic},
    metrics,
};
use anyhow::Context;
use arc_swap::ArcSwap;
use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};
use tokio::runtime::Handle;

/// Why a reload kept the running configuration.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read or is not a valid configuration.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// The file is valid, but changes what only a new process can apply
    /// (each change with where it is): `edge reload` then upgrades.
    #[error("{0}")]
    NeedsUpgrade(ConfigError),
    /// The file is valid but could not be made live (a certificate or CA
    /// file that changed on disk since it was checked, more L4 services
    /// than the maps hold, a map update).
    #[error("{}: {why:#}", file.display())]
    Apply {
        /// The file.
        file: PathBuf,
        /// What failed.
        why: anyhow::Error,
    },
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The generation now live.
    pub generation: u64,
    /// Warnings the check found (rendered with the file name).
    pub warnings: Vec<String>,
}

impl Applied {
    /// The warnings, one a line, each ending in a newline.
    pub fn warning_lines(&self) -> String {
        self.warnings.iter().map(|w| format!("{w}\n")).collect()
    }
}

/// Applies what a reload changes in the kernel's maps.
pub trait KernelApply: Send + Sync {
    /// Makes `next`'s kernel side live in place of `running`'s; on error
    /// the VIPs still point at their old tables.
    fn apply(&self, running: &Config, next: &Config) -> anyhow::Result<()>;
}

/// The live generation.
struct Live {
    config: Config,
    pools: Pools,
    generation: u64,
}

/// Why a drain through the admin API did nothing.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// No pool of that name in the live configuration.
    #[error("no pool {0}")]
    NoPool(String),
    /// A new process has taken over: drain through it.
    #[error("this edge has handed over to a new process: drain through that one")]
    HandedOver,
    /// As many drains as edge keeps are in place.
    #[error("{MAX_DRAINS} backends are drained already: undrain some first")]
    TooMany,
    /// The pool has no backend at that address.
    #[error("pool {pool} has no backend {address}")]
    NoBackend {
        /// The pool.
        pool: String,
        /// The address asked for.
        address: SocketAddr,
    },
}

/// Called with the new configuration after a reload that changed its
/// `bgp:` section made it live.
pub type OnApplied = Box<dyn Fn(&Config) + Send + Sync>;

/// Most drains kept (backends drained through the admin API, including
/// those that have since left the file).
pub const MAX_DRAINS: usize = 4096;

/// What the admin API shows of the live generation.
pub struct LiveView {
    /// Its number.
    pub generation: u64,
    /// Its configuration.
    pub config: Config,
    /// The text it was read from.
    pub text: Arc<str>,
    /// Its pools, in file order.
    pub pools: Vec<Arc<crate::upstream::UpstreamPool>>,
}

/// Owns the live configuration and makes new ones live.
pub struct Reloader {
    path: PathBuf,
    handle: Handle,
    cache: Option<&'static cache::Cache>,
    listeners: Listeners,
    kernel: Option<Box<dyn KernelApply>>,
    /// Gateway state kept across generations (rate-limit counters, key
    /// sets).
    gateway: Arc<crate::policy::Shared>,
    live: Mutex<Live>,
    /// Backends drained through the admin API (pool, address): kept
    /// across reloads until undrained.
    drained: Mutex<BTreeSet<(String, SocketAddr)>>,
    /// The live generation as the admin API reads it, without the live
    /// lock (a reload holds that for seconds when next hops resolve).
    view: ArcSwap<LiveView>,
    /// Set once a new process has taken over: this one changes nothing.
    retired: std::sync::atomic::AtomicBool,
    /// Told of each new `bgp:` section (the BGP announcer, which starts
    /// after the reloader).
    on_applied: std::sync::OnceLock<OnApplied>,
}

impl Reloader {
    /// Compiles generation 1 from `config` (read from `path`, whose text was
    /// `text`); the pools' health checks run on `handle`; reloads change
    /// the kernel's maps through `kernel`.
    pub fn start(
        path: &Path,
        config: Config,
        text: String,
        handle: Handle,
        cache: Option<&'static cache::Cache>,
        kernel: Option<Box<dyn KernelApply>>,
        ban_map: Option<Arc<dyn crate::policy::bans::BanMap>>,
    ) -> anyhow::Result<Self> {
        let mut pools = Pools::build(&config, &Pools::default(), &BTreeSet::new())?;
        let text: Arc<str> = text.into();
        let gateway = crate::policy::Shared::new(handle.clone(), ban_map);
        let policies = gateway.generation(&config)?;
        let mut listeners = Listeners::new();
        for l in &config.listeners {
            let rt = ListenerRuntime::compile(l, &pools, cache, 1, &policies)?;
            listeners.insert(l.name.clone(), Arc::new(ArcSwap::from_pointee(rt)));
        }
        gateway.commit(&policies);
        pools.go_live(&Pools::default(), &handle);
        metrics::config_generation(1);
        Ok(Self {
            // Absolute, so a reload reads the same file whatever the
            // working directory has become.
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            handle,
            cache,
            listeners,
            kernel,
            gateway,
            retired: std::sync::atomic::AtomicBool::new(false),
            on_applied: std::sync::OnceLock::new(),
            drained: Mutex::new(BTreeSet::new()),
            view: ArcSwap::from_pointee(LiveView {
                generation: 1,
                config: config.clone(),
                text: Arc::clone(&text),
                pools: pools.all(),
            }),
            live: Mutex::new(Live {
                config,
                pools,
                generation: 1,
            }),
        })
    }

    /// The sources banned by L7 verdicts.
    pub fn bans(&self) -> Arc<crate::policy::bans::Bans> {
        self.gateway.bans()
    }

    /// Listener `name`'s swappable runtime.
    pub fn listener(&self, name: &str) -> Option<Arc<ArcSwap<ListenerRuntime>>> {
        self.listeners.get(name).cloned()
    }

    /// Refuses every reload from now on: a new process has taken over the
    /// configuration and the kernel's maps.
    pub fn retire(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Calls `hook` with the new configuration after each reload that
    /// changes the `bgp:` section (the BGP announcer takes it); set once,
    /// a second hook is ignored.
    pub fn on_applied(&self, hook: OnApplied) {
        if self.on_applied.set(hook).is_err() {
            tracing::warn!("a reload hook was set twice: the first one stays");
        }
    }

    /// The live generation.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live generation, for the admin API.
    pub fn view(&self) -> Arc<LiveView> {
        self.view.load_full()
    }

    /// Drains saved by an earlier process (see [`super::drains`]): each
    /// is recorded, and applied to its backend if the file has it.
    pub fn restore_drains(&self, saved: &[(String, SocketAddr)]) {
        let live = self.lock();
        let mut set = self.drained.lock().unwrap_or_else(PoisonError::into_inner);
        for (pool, address) in saved.iter().take(MAX_DRAINS) {
            let applied = live
                .pools
                .get(pool)
                .is_some_and(|p| p.set_drained(*address, true));
            if !applied {
                tracing::info!(
                    pool = %pool,
                    backend = %address,
                    "a saved drain names no backend of the file: kept, for when it comes back \
                     (undrain lifts it)"
                );
            }
            set.insert((pool.clone(), *address));
        }
    }

    /// Every drain in force (pool, address), for the drains file.
    pub fn drained(&self) -> Vec<(String, SocketAddr)> {
        self.drained
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// The configuration file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drains (`true`) or undrains backend `address` of pool `pool`: it
    /// takes no new requests until undrained, across reloads.
    pub fn set_drained(
        &self,
        pool: &str,
        address: SocketAddr,
        drained: bool,
    ) -> Result<(), DrainError> {
        // The live lock first, as a reload takes it: a reload cannot build
        // pools between the check and the record.
        let live = self.lock();
        // The new process read the drains file when it took over; a drain
        // here would change nothing it serves, and overwrite its file.
        if self.retired.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(DrainError::HandedOver);
        }
        let mut set = self.drained.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (pool.to_string(), address);
        if drained && set.len() >= MAX_DRAINS && !set.contains(&key) {
            return Err(DrainError::TooMany);
        }
        let found = match live.pools.get(pool) {
            Some(p) => p.set_drained(address, drained),
            None => false,
        };
        if !found {
            // A drain of a backend that has left the file can still be
            // lifted (it would come back drained); nothing else can be
            // done to a backend that is not there.
            if !drained && set.remove(&key) {
                return Ok(());
            }
            return Err(match live.pools.get(pool) {
                None => DrainError::NoPool(pool.to_string()),
                Some(_) => DrainError::NoBackend {
                    pool: pool.to_string(),
                    address,
                },
            });
        }
        if drained {
            set.insert(key);
        } else {
            set.remove(&key);
        }
        Ok(())
    }

    /// Reads the file again and makes it live, or keeps the running
    /// configuration and returns why; `trigger` names what asked (for the
    /// log). Blocking: it reads files and writes maps.
    pub fn reload(&self, trigger: &str) -> Result<Applied, ReloadError> {
        let mut live = self.lock();
        // A retired edge (handed over) is no longer the service's main
        // process: it must not speak for the service.
        let speak = !self.retired.load(std::sync::atomic::Ordering::SeqCst);
        if speak {
            crate::notify::reloading();
        }
        let result = self.next_generation(&mut live);
        if speak {
            crate::notify::reloaded(live.generation);
        }
        match &result {
            // Logged before counted: whoever watches the counter (a test,
            // an operator's script) then finds the reason in the log.
            Ok(applied) => {
                for w in &applied.warnings {
                    tracing::warn!("{w}");
                }
                tracing::info!(
                    trigger,
                    generation = applied.generation,
                    "configuration reloaded in place: the new generation's routes, pools, \
                     backends, certificates, deny list and L4 services are live"
                );
                metrics::config_generation(applied.generation);
                metrics::config_reload(true);
            }
            Err(e) => {
                tracing::error!(
                    trigger,
                    generation = live.generation,
                    "configuration reload refused; the running configuration stays:\n{e}"
                );
                metrics::config_reload(false);
                // The refused generation's consumers got usage entries
                // when it was built: only the live ones stay.
                crate::policy::usage::retain(live.config.consumers.iter().map(|c| c.name.as_str()));
            }
        }
        result
    }

    fn next_generation(&self, live: &mut Live) -> Result<Applied, ReloadError> {
        if self.retired.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ReloadError::Apply {
                file: self.path.clone(),
                why: anyhow::anyhow!(
                    "this edge has handed over to a new process and drains: reload that one"
                ),
            });
        }
        let text = config::read(&self.path)?;
        let checked = config::check_text(&text, &self.path)?;
        let next = checked.config;
        let fixed = restart::fixed_changes(&live.config, &next);
        if !fixed.is_empty() {
            return Err(ReloadError::NeedsUpgrade(self.fixed_error(&text, fixed)));
        }
        let apply = |why: anyhow::Error| ReloadError::Apply {
            file: self.path.clone(),
            why,
        };
        let generation = live.generation + 1;
        let drained = self
            .drained
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut pools = Pools::build(&next, &live.pools, &drained).map_err(apply)?;
        let policies = self.gateway.generation(&next).map_err(apply)?;
        let mut runtimes = Vec::with_capacity(next.listeners.len());
        for l in &next.listeners {
            let rt = ListenerRuntime::compile(l, &pools, self.cache, generation, &policies)
                .map_err(apply)?;
            let slot = self
                .listeners
                .get(&l.name)
                .with_context(|| format!("listener {} is not running", l.name))
                .map_err(apply)?;
            runtimes.push((Arc::clone(slot), Arc::new(rt)));
        }
        // The kernel side last before the swap: if it fails, no listener
        // has the new generation.
        if let Some(kernel) = &self.kernel {
            kernel.apply(&live.config, &next).map_err(apply)?;
        }
        self.gateway.commit(&policies);
        for (slot, rt) in runtimes {
            slot.store(rt);
        }
        pools.go_live(&live.pools, &self.handle);
        crate::policy::usage::retain(next.consumers.iter().map(|c| c.name.as_str()));
        let text: Arc<str> = text.into();
        let bgp_changed = live.config.bgp != next.bgp;
        self.view.store(Arc::new(LiveView {
            generation,
            config: next.clone(),
            text: Arc::clone(&text),
            pools: pools.all(),
        }));
        *live = Live {
            config: next,
            pools,
            generation,
        };
        // After the swap: the announcer follows the generation now live.
        if bgp_changed && let Some(hook) = self.on_applied.get() {
            hook(&live.config);
        }
        Ok(Applied {
            generation,
            warnings: checked
                .warnings
                .iter()
                .map(|w| w.warning_in(&self.path).to_string())
                .collect(),
        })
    }

    fn fixed_error(&self, text: &str, fixed: Vec<Fixed>) -> ConfigError {
        ConfigError::Invalid {
            file: self.path.clone(),
            diagnostics: fixed
                .into_iter()
                .map(|f| Diagnostic {
                    position: config::locate(text, &f.path),
                    path: f.path,
                    message: f.message,
                })
                .collect(),
        }
    }
}
