//! Gateway state that outlives one generation of the configuration.

use super::{auth::Consumers, jwt::KeySet, ratelimit::LocalLimit, redis::RedisStore};
use crate::config::{Config, gateway::RateLimitPolicy};
use parking_lot::Mutex;
use std::{
    collections::HashMap,
    sync::{Arc, Weak},
};
use tokio::runtime::Handle;

/// Listener, route scope, limit name, settings.
type LimitId = (String, String, String, String);

/// State kept across reloads, by name: a chain of the next generation
/// takes what a chain of the previous one left, when its settings are
/// the same.
pub struct Shared {
    handle: Handle,
    /// By listener, route (or the listener's own), name and settings: a
    /// generation with other settings gets its own counters and leaves the
    /// running one's alone, should its reload fail.
    limits: Mutex<HashMap<LimitId, Weak<LocalLimit>>>,
    concurrency: Mutex<HashMap<(String, String), Weak<super::concurrency::Table>>>,
    key_sets: Mutex<HashMap<String, Weak<KeySet>>>,
    introspectors: Mutex<HashMap<String, Weak<super::introspect::Introspector>>>,
    redis: Mutex<Option<Arc<RedisStore>>>,
    basic_cache: Arc<super::auth::VerifiedCache>,
    bans: Arc<super::bans::Bans>,
}

impl Shared {
    /// Empty state; background work (key set refreshes, ban sweeps)
    /// runs on `handle`; bans go into `ban_map` when edge runs XDP.
    pub fn new(handle: Handle, ban_map: Option<Arc<dyn super::bans::BanMap>>) -> Arc<Self> {
        Arc::new(Self {
            bans: super::bans::Bans::start(ban_map, &handle),
            handle,
            limits: Mutex::default(),
            concurrency: Mutex::default(),
            key_sets: Mutex::default(),
            introspectors: Mutex::default(),
            redis: Mutex::default(),
            basic_cache: Arc::new(super::auth::VerifiedCache::new()),
        })
    }

    /// The bans.
    pub fn bans(&self) -> Arc<super::bans::Bans> {
        Arc::clone(&self.bans)
    }

    /// What the chains of `config` compile against. Nothing live changes
    /// until [`Shared::commit`]: a reload that fails later leaves the
    /// running generation as it was.
    pub fn generation(self: &Arc<Self>, config: &Config) -> anyhow::Result<Generation> {
        let redis = match (&config.gateway.redis, self.redis.lock().as_ref()) {
            (None, _) => None,
            (Some(c), Some(live)) if live.config() == c => Some(Arc::clone(live)),
            (Some(c), _) => Some(Arc::new(RedisStore::new(c.clone(), &self.handle)?)),
        };
        // Entries whose owners are gone (a removed route's limits).
        self.limits.lock().retain(|_, w| w.strong_count() > 0);
        self.concurrency.lock().retain(|_, w| w.strong_count() > 0);
        self.key_sets.lock().retain(|_, w| w.strong_count() > 0);
        self.introspectors
            .lock()
            .retain(|_, w| w.strong_count() > 0);
        Ok(Generation {
            consumers: Arc::new(Consumers::new(&config.consumers)),
            shared: Arc::clone(self),
            redis,
            bans: config.gateway.bans.clone(),
            max_keys: config.gateway.max_limit_keys,
        })
    }

    /// Makes `generation`'s process-wide settings live (its ban settings,
    /// its Redis store), once its runtimes are about to be swapped in.
    pub fn commit(&self, generation: &Generation) {
        *self.redis.lock() = generation.redis.clone();
        self.bans.configure(generation.bans.clone());
    }
}

/// What one generation's chains are compiled with.
pub struct Generation {
    /// The consumers of this generation.
    pub consumers: Arc<Consumers>,
    shared: Arc<Shared>,
    /// The shared rate-limit store, if configured.
    pub redis: Option<Arc<RedisStore>>,
    /// The ban settings.
    bans: Option<crate::config::gateway::BanConfig>,
    /// Keys each local limit remembers.
    pub max_keys: usize,
}

impl Generation {
    /// The counters of limit `p` of `route` on `listener` (the listener's
    /// own for a listener's limit): the previous generation's if its
    /// settings are the same, else new ones.
    pub fn local_limit(&self, listener: &str, route: &str, p: &RateLimitPolicy) -> Arc<LocalLimit> {
        let settings = format!("{}/{:?}/{:?}/{}", p.limit, p.window, p.key, self.max_keys);
        let id = (
            listener.to_string(),
            scoped(route, p.scope),
            p.name.clone(),
            settings,
        );
        let mut limits = self.shared.limits.lock();
        if let Some(live) = limits.get(&id).and_then(Weak::upgrade)
            && live.same_settings(p, self.max_keys)
        {
            return live;
        }
        let fresh = Arc::new(LocalLimit::new(p, self.max_keys));
        limits.insert(id, Arc::downgrade(&fresh));
        fresh
    }

    /// The in-flight table of `route` on `listener` (the listener's own
    /// for a listener's bound).
    pub fn concurrency_table(
        &self,
        listener: &str,
        route: &str,
        scope: crate::config::gateway::Scope,
    ) -> Arc<super::concurrency::Table> {
        let id = (listener.to_string(), scoped(route, scope));
        let mut tables = self.shared.concurrency.lock();
        if let Some(live) = tables.get(&id).and_then(Weak::upgrade) {
            return live;
        }
        let fresh = Arc::new(super::concurrency::Table::new(self.max_keys));
        tables.insert(id, Arc::downgrade(&fresh));
        fresh
    }

    /// The key set fetched from `source`, shared by every route naming
    /// the same URL and settings; its refresh task starts with it.
    pub fn key_set(&self, source: &crate::config::gateway::JwksSource) -> Arc<KeySet> {
        let id = format!(
            "{}|{:?}|{:?}|{:?}",
            source.url, source.refresh, source.min_refetch, source.timeout
        );
        let mut sets = self.shared.key_sets.lock();
        if let Some(live) = sets.get(&id).and_then(Weak::upgrade) {
            return live;
        }
        let fresh = KeySet::start(source.clone(), &self.shared.handle);
        sets.insert(id, Arc::downgrade(&fresh));
        fresh
    }

    /// The bans.
    pub fn bans(&self) -> Arc<super::bans::Bans> {
        self.shared.bans()
    }

    /// The introspection client of `cfg`, with its cache, shared by every
    /// route with the same settings and kept across reloads.
    pub fn introspector(
        &self,
        cfg: &crate::config::gateway::IntrospectionAuth,
    ) -> Arc<super::introspect::Introspector> {
        // The secret is part of the settings, not of the name shown
        // anywhere: hash it into the key.
        let id = format!(
            "{}|{}|{:x}|{:?}|{:?}|{}|{:?}|{}",
            cfg.url,
            cfg.client_id,
            {
                use std::hash::{BuildHasher, BuildHasherDefault};
                BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                    .hash_one(&cfg.client_secret)
            },
            cfg.timeout,
            cfg.cache_for,
            cfg.cache_entries,
            cfg.consumer_claim,
            cfg.hide_credentials
        );
        let mut all = self.shared.introspectors.lock();
        if let Some(live) = all.get(&id).and_then(Weak::upgrade) {
            return live;
        }
        let fresh = Arc::new(super::introspect::Introspector::new(cfg));
        all.insert(id, Arc::downgrade(&fresh));
        fresh
    }

    /// The cache of recently verified Basic credentials.
    pub fn basic_cache(&self) -> Arc<super::auth::VerifiedCache> {
        Arc::clone(&self.shared.basic_cache)
    }
}

/// The route part of a state's name: the route's, or the listener's own
/// for what counts across its routes (the prefixes keep a route from
/// ever naming the listener's entry).
pub fn scoped(route: &str, scope: crate::config::gateway::Scope) -> String {
    match scope {
        crate::config::gateway::Scope::Listener => "listener".to_string(),
        crate::config::gateway::Scope::Route => format!("route={route}"),
    }
}
