//! Gateway state that outlives one generation of the configuration.

use super::{auth::Consumers, jwt::KeySet, ratelimit::LocalLimit, redis::RedisStore};
use crate::config::{Config, gateway::RateLimitPolicy};
use parking_lot::Mutex;
use std::{
    collections::HashMap,
    sync::{Arc, Weak},
};
use tokio::runtime::Handle;

/// State kept across reloads, by name: a chain of the next generation
/// takes what a chain of the previous one left, when its settings are
/// the same.
pub struct Shared {
    handle: Handle,
    limits: Mutex<HashMap<(String, String, String), Weak<LocalLimit>>>,
    concurrency: Mutex<HashMap<(String, String), Weak<super::concurrency::Table>>>,
    key_sets: Mutex<HashMap<String, Weak<KeySet>>>,
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
            redis: Mutex::default(),
            basic_cache: Arc::new(super::auth::VerifiedCache::new()),
        })
    }

    /// The bans.
    pub fn bans(&self) -> Arc<super::bans::Bans> {
        Arc::clone(&self.bans)
    }

    /// What the chains of `config` compile against.
    pub fn generation(self: &Arc<Self>, config: &Config) -> anyhow::Result<Generation> {
        let redis = {
            let mut slot = self.redis.lock();
            match (&config.gateway.redis, slot.as_ref()) {
                (None, _) => *slot = None,
                (Some(c), Some(live)) if live.config() == c => {}
                (Some(c), _) => *slot = Some(Arc::new(RedisStore::new(c.clone())?)),
            }
            slot.clone()
        };
        self.bans.configure(config.gateway.bans.clone());
        // Entries whose owners are gone (a removed route's limits).
        self.limits.lock().retain(|_, w| w.strong_count() > 0);
        self.concurrency.lock().retain(|_, w| w.strong_count() > 0);
        self.key_sets.lock().retain(|_, w| w.strong_count() > 0);
        Ok(Generation {
            consumers: Arc::new(Consumers::new(&config.consumers)),
            shared: Arc::clone(self),
            redis,
            max_keys: config.gateway.max_limit_keys,
        })
    }
}

/// What one generation's chains are compiled with.
pub struct Generation {
    /// The consumers of this generation.
    pub consumers: Arc<Consumers>,
    shared: Arc<Shared>,
    /// The shared rate-limit store, if configured.
    pub redis: Option<Arc<RedisStore>>,
    /// Keys each local limit remembers.
    pub max_keys: usize,
}

impl Generation {
    /// The counters of limit `p` of `route` on `listener`: the previous
    /// generation's if its settings are the same, else new ones.
    pub fn local_limit(&self, listener: &str, route: &str, p: &RateLimitPolicy) -> Arc<LocalLimit> {
        let id = (listener.to_string(), route.to_string(), p.name.clone());
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

    /// The in-flight table of `route` on `listener`.
    pub fn concurrency_table(&self, listener: &str, route: &str) -> Arc<super::concurrency::Table> {
        let id = (listener.to_string(), route.to_string());
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

    /// The cache of recently verified Basic credentials.
    pub fn basic_cache(&self) -> Arc<super::auth::VerifiedCache> {
        Arc::clone(&self.shared.basic_cache)
    }
}
