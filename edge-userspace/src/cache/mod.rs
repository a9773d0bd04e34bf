//! The HTTP cache: one process-wide store ([`Cache`]) and, per request, the
//! policy of its listener (or route) in [`RequestCache`].
//!
//! The proxy's `ProxyHttp` callbacks are one-liners calling the functions
//! in [`filters`]; the RFC 9111 decisions are in [`policy`] (with [`age`],
//! [`fields`] and the RFC 9213 [`targeted`] field), invalidation by unsafe
//! methods in [`invalidate`], the store in [`storage`], keys and Vary in
//! [`key`].
//!
//! Compression runs after the cache (in `response_filter`), so stored
//! objects are what the upstream sent and each client gets the encoding it
//! negotiated, also on hits.

pub mod admin;
pub mod age;
pub mod fields;
pub mod filters;
pub mod fresh;
pub mod invalidate;
pub mod key;
pub mod policy;
pub mod storage;
pub mod targeted;

use crate::config::{CacheConfig, CachePolicy};
use pingora::cache::{
    eviction::{EvictionManager, lru},
    lock::{CacheKeyLockImpl, CacheLock},
};
use pingora::http::ResponseHeader;
use std::{sync::Arc, time::SystemTime};
use storage::MemoryStorage;

/// Below this bound the store uses one exact LRU; above it, 16 shards so
/// that hits on different keys do not contend on one lock (the order of
/// eviction across shards is then approximate).
const SHARDED_FROM: u64 = 16 << 20;
/// Objects per LRU shard to preallocate for.
const LRU_CAPACITY_HINT: usize = 1024;
/// A raw-content zstd dictionary for pingora-cache's serialized response
/// headers (the store parses most back once and keeps them parsed, but
/// keeps large ones as serialized): typical field names and values make
/// small headers compress well.
const HEADER_DICTIONARY: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\
Date: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: text/html; charset=utf-8\r\n\
Content-Type: application/json\r\nContent-Type: text/plain\r\nContent-Type: image/\r\n\
Content-Length: \r\nCache-Control: public, max-age=\r\nCache-Control: s-maxage=\r\n\
Cache-Control: no-cache\r\nstale-while-revalidate=\r\nstale-if-error=\r\n\
Expires: \r\nLast-Modified: \r\nETag: \"\r\nETag: W/\"\r\nVary: Accept-Encoding\r\n\
Vary: Accept-Language\r\nContent-Encoding: gzip\r\nAccept-Ranges: bytes\r\n\
X-Content-Type-Options: nosniff\r\nStrict-Transport-Security: max-age=\r\n\
Access-Control-Allow-Origin: *\r\nX-Backend: \r\n\r\n";

/// The process-wide cache: store, eviction manager, lock and settings.
/// pingora-cache takes these as `&'static`, so one is built per process
/// with [`Cache::new`] and lives as long as it.
pub struct Cache {
    storage: &'static MemoryStorage,
    eviction: &'static (dyn EvictionManager + Sync),
    lock: &'static CacheKeyLockImpl,
    config: CacheConfig,
}

impl Cache {
    /// Builds the process's cache from `config` (leaked: it lives as long
    /// as the process, as pingora-cache requires).
    pub fn new(config: &CacheConfig) -> &'static Cache {
        // Ignored (false) if already set: one dictionary per process.
        pingora::cache::set_compression_dict_content(std::borrow::Cow::Borrowed(HEADER_DICTIONARY));
        let limit = usize::try_from(config.max_size).unwrap_or(usize::MAX);
        let eviction: &'static (dyn EvictionManager + Sync) = if config.max_size < SHARDED_FROM {
            Box::leak(Box::new(lru::Manager::<1>::with_capacity(
                limit,
                LRU_CAPACITY_HINT,
            )))
        } else {
            Box::leak(Box::new(lru::Manager::<16>::with_capacity(
                limit,
                LRU_CAPACITY_HINT,
            )))
        };
        let max_object = usize::try_from(config.max_object_size).unwrap_or(usize::MAX);
        let storage = Box::leak(Box::new(MemoryStorage::new(eviction, max_object)));
        let lock: &'static CacheKeyLockImpl =
            Box::leak(Box::new(CacheLock::new(config.lock_timeout)));
        Box::leak(Box::new(Cache {
            storage,
            eviction,
            lock,
            config: config.clone(),
        }))
    }

    /// The store's settings.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The store.
    pub fn storage(&self) -> &'static MemoryStorage {
        self.storage
    }

    /// Removes every object cached for `namespace` (a listener's name) and
    /// `host` whose path (and query) starts with `path_prefix`; returns
    /// how many went.
    pub fn purge_prefix(&self, namespace: &str, host: &str, path_prefix: &str) -> usize {
        self.storage
            .purge_prefix(&key::primary_prefix(namespace, host, path_prefix))
    }

    /// Removes every stored variant of `host` + `path_and_query` cached
    /// for `namespace` (a listener's name); returns how many objects went.
    pub fn purge(&self, namespace: &str, host: &str, path_and_query: &str) -> usize {
        let key = key::primary(namespace, host, path_and_query);
        self.storage.purge_all_variants(&key.to_compact())
    }
}

/// What one listener (later: route) caches with: the process cache, the
/// policy, and the namespace its keys live in.
#[derive(Clone)]
pub struct ListenerCache {
    /// The process-wide cache.
    pub cache: &'static Cache,
    /// The listener's default policy; routes may override per request.
    pub policy: Option<Arc<CachePolicy>>,
    /// Keys are prefixed with this (the listener's name), so that two
    /// listeners proxying different pools never share an entry.
    pub namespace: Arc<str>,
}

/// The cache state of one request, kept in the proxy's ctx.
#[derive(Default)]
pub struct RequestCache {
    /// The policy this request follows; the proxy sets it in
    /// `request_filter` (the listener's default, or a route's override).
    pub policy: Option<Arc<CachePolicy>>,
    /// The key namespace, if not the listener's (a route that must not
    /// share entries with the listener's other routes sets its own).
    pub namespace: Option<Arc<str>>,
    /// Why the request does not use the cache, if it does not.
    skip: Option<policy::Skip>,
    /// Whether the request carried Authorization (RFC 9111 §3.5).
    authorized: bool,
    /// Whether a gateway policy authenticated the caller (an API key
    /// counts as Authorization: one caller's answer is not another's).
    pub authenticated: bool,
    /// The status reported in the status header and metrics.
    status: Option<&'static str>,
    /// Whether the proxy answers from a fresh hit itself ([`fresh`]),
    /// without pingora-cache (whose phase then says nothing).
    fresh_hit: bool,
    /// When the request reached the cache: the start of the exchange its
    /// response's age is measured from (RFC 9111 §4.2.3).
    requested_at: Option<SystemTime>,
    /// The upstream's 304 to a revalidation, whose fields update the
    /// stored response (Pingora's own merge keeps only a few).
    not_modified: Option<Box<ResponseHeader>>,
}

impl RequestCache {
    /// The cache status of the response (`HIT`, `MISS`, ...), once known.
    pub fn status(&self) -> Option<&'static str> {
        self.status
    }
}
