//! A production in-memory [`Storage`] for pingora-cache: a byte-bounded
//! store whose objects are removed when the eviction manager evicts them.
//!
//! - Objects are kept per primary key with their Vary variants beside them,
//!   so a PURGE of a URL removes every variant at once.
//! - A body is admitted only when complete (no partial reads): concurrent
//!   misses wait on the cache lock for the first fetch instead.
//! - Every stored object has an entry ID; the eviction manager tracks
//!   `(key, id)`, so evicting an old generation can never remove the fresh
//!   object that replaced it, and a replaced generation is untracked at once.
//! - Weights count the body, the serialized metadata and an estimate of
//!   the parsed headers, so `max_size` bounds what the store really holds.
//! - The response header is parsed once, when stored: a hit clones it
//!   instead of decompressing and parsing the stored bytes each time (a
//!   hit's `CacheMeta` is rebuilt from its small serialized internal part
//!   and a constant, tiny header, which the clone then replaces).
//! - A fresh object that does not vary can also be read without any
//!   `CacheMeta` at all ([`MemoryStorage::fresh_hit`]): its freshness and
//!   age come from times kept beside it, for the proxy's fresh-hit path.

use crate::metrics;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use pingora::cache::{
    CacheEntryId, CacheKey, CacheMeta,
    eviction::{CacheEntryKey, CacheEntryKeyRef, EvictionManager},
    key::{CacheHashKey, CompactCacheKey, HashBinary},
    storage::{
        HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
        PurgeType, Storage,
    },
    trace::SpanHandle,
};
use pingora::{Error, ErrorType, Result, http::ResponseHeader};
use std::{
    any::Any,
    collections::HashMap,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

/// Shards of the index, to spread lock contention across keys.
const SHARDS: usize = 16;

/// One stored response.
struct Object {
    id: CacheEntryId,
    key: CompactCacheKey,
    /// The primary key's text (namespace, host, path and query), which the
    /// hashed `key` no longer has: what purge by prefix matches.
    url: Arc<[u8]>,
    meta: Stored,
    body: Bytes,
}

impl Object {
    fn weight(&self) -> usize {
        self.body.len() + self.meta.weight + self.url.len()
    }

    fn entry_key(&self) -> CacheEntryKeyRef<'_> {
        CacheEntryKeyRef::Identified {
            key: &self.key,
            id: self.id,
        }
    }
}

/// A response's `CacheMeta` as the store keeps it.
struct Stored {
    /// The internal part of `CacheMeta::serialize()` (times, variance).
    internal: Vec<u8>,
    header: Header,
    /// What the two cost the store: the internal bytes, and the header's
    /// serialized bytes or an estimate of its parsed memory.
    weight: usize,
    /// Until when the response is fresh and what its age counts from, as
    /// pingora-cache reads them from the stored `CacheMeta`; `None` when
    /// a hit must go through pingora-cache (the header is kept serialized,
    /// or the response varies).
    times: Option<Times>,
}

/// A stored response's freshness times, read from the `CacheMeta` a hit
/// would get (after its serialization round trip, to the nanosecond).
#[derive(Clone, Copy)]
struct Times {
    /// `CacheMeta::fresh_until`: fresh while now is not after it.
    fresh_until: SystemTime,
    /// `CacheMeta::epoch`: the response's age is now minus this.
    epoch: SystemTime,
}

/// A fresh stored response, as [`MemoryStorage::fresh_hit`] hands it out.
pub struct FreshHit {
    /// The stored response header, as the upstream's (less hop-by-hop
    /// fields) with no `Age`.
    pub header: ResponseHeader,
    /// How old the response is (`CacheMeta::age`).
    pub age: std::time::Duration,
    /// The whole stored body.
    pub body: Bytes,
}

/// A stored response header.
enum Header {
    /// Parsed once, when stored, from the bytes pingora serialized: exactly
    /// what a hit used to get from them. A hit clones it.
    Parsed(Box<ResponseHeader>),
    /// As pingora serializes it (zstd), parsed on every hit as before: a
    /// header of more than [`MAX_PARSED_FIELDS`] fields, whose parsed form
    /// would cost the store several times its bytes, or one that does not
    /// parse back (a hit then fails, and pingora goes upstream, as before;
    /// refusing the miss instead would fail the client's request).
    Serialized(Vec<u8>),
}

/// Headers with more fields than this are kept serialized.
const MAX_PARSED_FIELDS: usize = 64;
/// Memory a parsed header field costs beside its name and value, from the
/// layouts of http 1.x and pingora-http: its bucket in the header map
/// (about 104 bytes) and in the case map (about 96), its index slots, and
/// three or four small heap blocks (the value, the case-preserved name, a
/// non-standard name, their shared handles) of at least 32 bytes each.
/// Rounded up: the weight must not undercount what the store holds.
const FIELD_OVERHEAD: usize = 400;
/// Memory a parsed header costs beside its fields (the two maps, the
/// response head); an estimate, rounded up.
const HEADER_OVERHEAD: usize = 512;

impl Stored {
    fn of(meta: &CacheMeta) -> Result<Self> {
        let (internal, bytes) = meta.serialize()?;
        let parsed = if meta.headers().len() <= MAX_PARSED_FIELDS {
            CacheMeta::deserialize(&internal, &bytes).ok().map(|m| {
                // A varying response is served from its variant's slot,
                // which only pingora-cache's lookup finds.
                let varies = super::policy::vary_names(m.headers()).next().is_some();
                let times = (!varies).then(|| Times {
                    fresh_until: m.fresh_until(),
                    epoch: m.epoch(),
                });
                (m.response_header_copy(), times)
            })
        } else {
            None
        };
        let (parsed, times) = parsed.unzip();
        let times = times.flatten();
        let (header, header_weight) = match parsed {
            Some(header) => {
                let fields: usize = header
                    .headers
                    .iter()
                    .map(|(name, value)| name.as_str().len() + value.len() + FIELD_OVERHEAD)
                    .sum();
                (Header::Parsed(Box::new(header)), fields + HEADER_OVERHEAD)
            }
            None => {
                let weight = bytes.len();
                (Header::Serialized(bytes), weight)
            }
        };
        Ok(Self {
            weight: internal.len() + header_weight,
            internal,
            header,
            times,
        })
    }

    /// The `CacheMeta` a hit hands to pingora-cache.
    fn meta(&self) -> Result<CacheMeta> {
        match &self.header {
            Header::Parsed(header) => {
                let mut meta = CacheMeta::deserialize(&self.internal, placeholder()?)?;
                *meta.response_header_mut() = ResponseHeader::clone(header);
                Ok(meta)
            }
            Header::Serialized(bytes) => CacheMeta::deserialize(&self.internal, bytes),
        }
    }
}

/// A serialized minimal header, parsed on every hit in place of the
/// stored one (which then replaces it): pingora-cache builds a
/// `CacheMeta` from bytes only. Made once, by pingora's own serializer, so
/// that it matches its compression dictionary.
fn placeholder() -> Result<&'static [u8]> {
    static PLACEHOLDER: OnceLock<Vec<u8>> = OnceLock::new();
    if let Some(bytes) = PLACEHOLDER.get() {
        return Ok(bytes);
    }
    let header = ResponseHeader::build(200, Some(0))?;
    let meta = CacheMeta::new(SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH, 0, 0, header);
    let (_, bytes) = meta.serialize()?;
    Ok(PLACEHOLDER.get_or_init(|| bytes))
}

/// The variants of one primary key: `None` is the primary slot.
type Variants = Vec<(Option<HashBinary>, Arc<Object>)>;

/// The in-memory store. Create one per process and leak it: pingora-cache
/// wants `&'static` storage.
pub struct MemoryStorage {
    shards: [RwLock<HashMap<HashBinary, Variants>>; SHARDS],
    eviction: &'static (dyn EvictionManager + Sync),
    max_object_size: usize,
    next_id: AtomicU64,
    bytes: AtomicU64,
    objects: AtomicU64,
}

impl MemoryStorage {
    /// A store whose objects `eviction` tracks; bodies larger than
    /// `max_object_size` are refused.
    pub fn new(eviction: &'static (dyn EvictionManager + Sync), max_object_size: usize) -> Self {
        Self {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
            eviction,
            max_object_size,
            next_id: AtomicU64::new(1),
            bytes: AtomicU64::new(0),
            objects: AtomicU64::new(0),
        }
    }

    /// Bytes held (bodies and metadata).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Objects held, variants counted separately.
    pub fn objects(&self) -> u64 {
        self.objects.load(Ordering::Relaxed)
    }

    fn shard(&self, primary: &HashBinary) -> &RwLock<HashMap<HashBinary, Variants>> {
        &self.shards[primary[0] as usize % SHARDS]
    }

    fn find(&self, primary: &HashBinary, variance: Option<HashBinary>) -> Option<Arc<Object>> {
        self.shard(primary)
            .read()
            .get(primary)?
            .iter()
            .find(|(v, _)| *v == variance)
            .map(|(_, o)| o.clone())
    }

    /// The response stored for `key`'s primary slot when it is fresh at
    /// `now`, does not vary and has its header parsed; else `None`, and
    /// pingora-cache's lookup decides. Counts the access for the eviction
    /// manager, as pingora-cache does on a hit.
    pub fn fresh_hit(&self, key: &CacheKey, now: SystemTime) -> Option<FreshHit> {
        let object = self.find(&key.primary_bin(), None)?;
        let times = object.meta.times?;
        // pingora-cache's `is_fresh`: fresh until and including `fresh_until`.
        if times.fresh_until < now {
            return None;
        }
        let Header::Parsed(header) = &object.meta.header else {
            return None;
        };
        let entry = CacheEntryKey::identified(object.key.clone(), object.id);
        self.eviction
            .access(&entry, object.weight(), times.fresh_until);
        Some(FreshHit {
            header: ResponseHeader::clone(header),
            // `CacheMeta::age` reads the clock again; now is as good.
            age: now.duration_since(times.epoch).unwrap_or_default(),
            body: object.body.clone(),
        })
    }

    fn account_added(&self, o: &Object) {
        self.bytes.fetch_add(o.weight() as u64, Ordering::Relaxed);
        self.objects.fetch_add(1, Ordering::Relaxed);
        self.publish();
    }

    fn account_removed(&self, o: &Object) {
        self.bytes.fetch_sub(o.weight() as u64, Ordering::Relaxed);
        self.objects.fetch_sub(1, Ordering::Relaxed);
        self.publish();
    }

    fn publish(&self) {
        metrics::cache_stored(self.bytes(), self.objects());
    }

    /// Stores a complete object, replacing (and untracking) any previous
    /// generation of the same key and variant.
    fn insert(&self, variance: Option<HashBinary>, object: Object) {
        let object = Arc::new(object);
        self.account_added(&object);
        let old = {
            let mut shard = self.shard(&object.key.primary).write();
            let variants = shard.entry(object.key.primary).or_default();
            match variants.iter_mut().find(|(v, _)| *v == variance) {
                Some((_, slot)) => Some(std::mem::replace(slot, object)),
                None => {
                    variants.push((variance, object));
                    None
                }
            }
        };
        if let Some(old) = old {
            self.eviction.remove(old.entry_key());
            self.account_removed(&old);
        }
    }

    /// Removes the objects of `primary` that `pick` selects.
    fn remove_where(
        &self,
        primary: &HashBinary,
        pick: impl Fn(Option<HashBinary>, &Object) -> bool,
    ) -> Vec<Arc<Object>> {
        let mut shard = self.shard(primary).write();
        let Some(variants) = shard.get_mut(primary) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        variants.retain(|(v, o)| {
            if pick(*v, o) {
                removed.push(o.clone());
                false
            } else {
                true
            }
        });
        if variants.is_empty() {
            shard.remove(primary);
        }
        drop(shard);
        for o in &removed {
            self.account_removed(o);
        }
        removed
    }

    /// Removes exactly the object `entry` names (key, variant and ID).
    fn remove_exact(&self, entry: &CacheEntryKey) -> usize {
        let key = entry.key();
        let id = entry.entry_id();
        let variance = key.variance_bin();
        self.remove_where(&key.primary, |v, o| v == variance && Some(o.id) == id)
            .len()
    }

    /// Removes objects the eviction manager gave up (already untracked).
    fn evict(&self, evicted: &[CacheEntryKey]) {
        let removed: usize = evicted.iter().map(|e| self.remove_exact(e)).sum();
        if removed > 0 {
            metrics::cache_evicted(removed as u64);
        }
    }

    /// Removes every object whose primary key text starts with `prefix`;
    /// returns how many went. It walks the whole store, a shard at a time
    /// (each shard's lookups wait meanwhile): an operator's action, not a
    /// request's.
    pub fn purge_prefix(&self, prefix: &[u8]) -> usize {
        let mut removed = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.write();
            shard.retain(|_, variants| {
                variants.retain(|(_, o)| {
                    let gone = o.url.starts_with(prefix);
                    if gone {
                        removed.push(o.clone());
                    }
                    !gone
                });
                !variants.is_empty()
            });
        }
        for o in &removed {
            self.account_removed(o);
            self.eviction.remove(o.entry_key());
        }
        removed.len()
    }

    /// Removes every variant stored for `key`'s primary key (the key's own
    /// variance is ignored). Returns how many objects went.
    pub fn purge_all_variants(&self, key: &CompactCacheKey) -> usize {
        let removed = self.remove_where(&key.primary, |_, _| true);
        for o in &removed {
            self.eviction.remove(o.entry_key());
        }
        removed.len()
    }

    fn as_static(&'static self) -> &'static (dyn Storage + Sync) {
        self
    }
}

fn variance_of(key: &impl CacheHashKey) -> Option<HashBinary> {
    key.variance_bin()
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(object) = self.find(&key.primary_bin(), variance_of(key)) else {
            return Ok(None);
        };
        let meta = object.meta.meta()?;
        let end = object.body.len();
        Ok(Some((
            meta,
            Box::new(Hit {
                object,
                start: 0,
                end,
                done: false,
            }),
        )))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Ok(Box::new(Miss {
            store: self,
            id: CacheEntryId::new(self.next_id.fetch_add(1, Ordering::Relaxed)),
            key: key.to_compact(),
            url: Arc::from(key.primary_key()),
            variance: variance_of(key),
            meta: Stored::of(meta)?,
            body: BytesMut::new(),
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let key = target.key();
        match target {
            PurgeTarget::Exact(entry) => {
                let removed = self.remove_exact(entry);
                if removed == 0 {
                    return Ok(PurgeOutcome::NotFound);
                }
                if matches!(purge_type, PurgeType::Eviction) {
                    metrics::cache_evicted(removed as u64);
                }
                Ok(PurgeOutcome::Purged(None))
            }
            // An invalidation names a URL: every Vary variant goes with it.
            // The primary slot's ID is returned for pingora to untrack; the
            // other variants are untracked here.
            PurgeTarget::Active(_) => {
                let variance = key.variance_bin();
                let removed = self.remove_where(&key.primary, |_, _| true);
                let mut own = None;
                for o in &removed {
                    let mine = o.key.variance_bin() == variance;
                    if mine && own.is_none() {
                        own = Some(o.id);
                    } else {
                        self.eviction.remove(o.entry_key());
                    }
                }
                match (removed.is_empty(), own) {
                    (true, _) => Ok(PurgeOutcome::NotFound),
                    (false, Some(id)) => Ok(PurgeOutcome::Purged(Some(id))),
                    // Only other variants were stored: they are untracked
                    // above, and there is no ID of the target's own to give.
                    (false, None) => Ok(PurgeOutcome::Purged(None)),
                }
            }
        }
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let primary = key.primary_bin();
        let variance = variance_of(key);
        let meta_fresh_until = meta.fresh_until();
        let meta = Stored::of(meta)?;
        let mut shard = self.shard(&primary).write();
        let Some((_, slot)) = shard
            .get_mut(&primary)
            .and_then(|vs| vs.iter_mut().find(|(v, _)| *v == variance))
        else {
            return Ok(false);
        };
        // Same ID and body: the eviction manager keeps tracking this entry.
        let updated = Arc::new(Object {
            id: slot.id,
            key: slot.key.clone(),
            url: Arc::clone(&slot.url),
            meta,
            body: slot.body.clone(),
        });
        let old = std::mem::replace(slot, updated.clone());
        drop(shard);
        self.bytes
            .fetch_add(updated.weight() as u64, Ordering::Relaxed);
        self.bytes.fetch_sub(old.weight() as u64, Ordering::Relaxed);
        self.publish();
        // Re-admitting updates the tracked weight to the new headers'; if
        // that pushes the store over its bound, evict here and now.
        let entry = CacheEntryKey::identified(updated.key.clone(), updated.id);
        let evicted = self
            .eviction
            .admit(entry, updated.weight(), meta_fresh_until);
        self.evict(&evicted);
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Reads a stored body; supports ranges.
struct Hit {
    object: Arc<Object>,
    start: usize,
    end: usize,
    done: bool,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.object.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.object.body.len();
        if start >= len {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start out of range {start} >= {len}"),
            );
        }
        self.start = start;
        self.end = end.map_or(len, |e| e.min(len)).max(start);
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.object.weight()
    }

    fn entry_id(&self) -> Option<CacheEntryId> {
        Some(self.object.id)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Collects a response body; stores it on `finish` (a miss handler dropped
/// unfinished stores nothing).
struct Miss {
    store: &'static MemoryStorage,
    id: CacheEntryId,
    key: CompactCacheKey,
    url: Arc<[u8]>,
    variance: Option<HashBinary>,
    meta: Stored,
    body: BytesMut,
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.body.len() + data.len() > self.store.max_object_size {
            return Error::e_explain(
                ErrorType::InternalError,
                format!(
                    "response body exceeds max_object_size ({} bytes)",
                    self.store.max_object_size
                ),
            );
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let object = Object {
            id: self.id,
            key: self.key,
            url: self.url,
            meta: self.meta,
            body: self.body.freeze(),
        };
        let weight = object.weight();
        self.store.insert(self.variance, object);
        Ok(MissFinishType::Created(weight))
    }

    fn entry_id(&self) -> Option<CacheEntryId> {
        Some(self.id)
    }
}

/// The store as pingora-cache takes it.
pub fn as_storage(store: &'static MemoryStorage) -> &'static (dyn Storage + Sync) {
    store.as_static()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::eviction::{CacheEntryKey, lru};
    use pingora::http::ResponseHeader;
    use std::time::{Duration, SystemTime};

    fn trace() -> SpanHandle {
        pingora::cache::trace::Span::inactive().handle()
    }

    fn store(limit: usize) -> &'static MemoryStorage {
        let eviction: &'static lru::Manager<1> =
            Box::leak(Box::new(lru::Manager::with_capacity(limit, 16)));
        Box::leak(Box::new(MemoryStorage::new(eviction, 1 << 20)))
    }

    fn meta() -> CacheMeta {
        let now = SystemTime::now();
        let header = ResponseHeader::build(200, None).unwrap();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header)
    }

    /// Writes `body` under `key` the way pingora-cache does on a miss:
    /// miss handler, finish, admission, purge of what the manager evicts.
    async fn fill(s: &'static MemoryStorage, key: &CacheKey, body: &'static [u8]) {
        let trace = trace();
        let mut miss = s.get_miss_handler(key, &meta(), &trace).await.unwrap();
        let id = miss.entry_id();
        miss.write_body(Bytes::from_static(body), true)
            .await
            .unwrap();
        let MissFinishType::Created(size) = miss.finish().await.unwrap() else {
            panic!("created");
        };
        let entry = CacheEntryKey::from_entry_id(key.to_compact(), id);
        for evicted in s.eviction.admit(entry, size, SystemTime::now()) {
            s.purge(PurgeTarget::Exact(&evicted), PurgeType::Eviction, &trace)
                .await
                .unwrap();
        }
    }

    /// Stores a one-byte body under `key` with `meta`, without admission.
    async fn store_one_byte(s: &'static MemoryStorage, key: &CacheKey, meta: &CacheMeta) {
        let mut miss = s.get_miss_handler(key, meta, &trace()).await.unwrap();
        miss.write_body(Bytes::from_static(b"x"), true)
            .await
            .unwrap();
        miss.finish().await.unwrap();
    }

    async fn body(s: &'static MemoryStorage, key: &CacheKey) -> Option<Bytes> {
        let (_, mut hit) = s.lookup(key, &trace()).await.unwrap()?;
        hit.read_body().await.unwrap()
    }

    #[tokio::test]
    async fn stores_replaces_and_untracks_old_generations() {
        let s = store(1 << 20);
        let key = CacheKey::new("a", "");
        assert!(body(s, &key).await.is_none());
        fill(s, &key, b"one").await;
        assert_eq!(body(s, &key).await.as_deref(), Some(&b"one"[..]));
        fill(s, &key, b"two!").await;
        assert_eq!(body(s, &key).await.as_deref(), Some(&b"two!"[..]));
        assert_eq!(s.objects(), 1);
        assert_eq!(
            s.eviction.total_items(),
            1,
            "the replaced generation is untracked"
        );
        assert_eq!(s.eviction.total_size() as u64, s.bytes());
    }

    #[tokio::test]
    async fn a_hit_gets_the_meta_the_stored_bytes_would_give_without_parsing_them() {
        let s = store(1 << 20);
        let key = CacheKey::new("h", "");
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut header = ResponseHeader::build(203, None).unwrap();
        header.append_header("X-Mixed-Case", "one").unwrap();
        header.append_header("cache-control", "max-age=60").unwrap();
        header.append_header("X-Mixed-Case", "two").unwrap();
        let mut meta = CacheMeta::new(created + Duration::from_secs(60), created, 7, 9, header);
        meta.set_variance_key([3; 16]);
        let trace = trace();
        store_one_byte(s, &key, &meta).await;

        let (ser_internal, ser_header) = meta.serialize().unwrap();
        let want = CacheMeta::deserialize(&ser_internal, &ser_header).unwrap();
        let (got, _) = s.lookup(&key, &trace).await.unwrap().unwrap();
        assert_eq!(got.serialize().unwrap(), want.serialize().unwrap());
        let mut wire = Vec::new();
        got.response_header().header_to_h1_wire(&mut wire);
        let mut want_wire = Vec::new();
        want.response_header().header_to_h1_wire(&mut want_wire);
        assert_eq!(wire, want_wire, "names' case and order kept");
        assert_eq!(got.response_header().status, 203);
        assert_eq!((got.created(), got.updated()), (created, created));
        assert_eq!(got.stale_while_revalidate_sec(), 7);
        assert_eq!(got.variance(), Some([3; 16]));
        let (head, want_head) = (got.response_header(), want.response_header());
        assert_eq!(head.version, want_head.version);
        assert_eq!(head.get_reason_phrase(), want_head.get_reason_phrase());
        // The parsed header is weighed: more than body, key and internal
        // bytes alone.
        assert!(s.bytes() as usize > 1 + ser_internal.len() + 3 * FIELD_OVERHEAD);

        // Hits share nothing: a change to one hit's header is not the next's.
        let (mut first, _) = s.lookup(&key, &trace).await.unwrap().unwrap();
        first
            .response_header_mut()
            .insert_header("age", "5")
            .unwrap();
        let (second, _) = s.lookup(&key, &trace).await.unwrap().unwrap();
        assert!(second.response_header().headers.get("age").is_none());
        assert_eq!(second.serialize().unwrap(), want.serialize().unwrap());
    }

    #[tokio::test]
    async fn a_revalidation_serves_the_new_header_and_reweighs_the_object() {
        let s = store(1 << 20);
        let key = CacheKey::new("r", "");
        fill(s, &key, b"body").await;
        let before = s.bytes();
        let (mut meta, _) = s.lookup(&key, &trace()).await.unwrap().unwrap();
        meta.response_header_mut()
            .insert_header("x-revalidated", "a-longer-value-than-before")
            .unwrap();
        assert!(s.update_meta(&key, &meta, &trace()).await.unwrap());
        let (got, _) = s.lookup(&key, &trace()).await.unwrap().unwrap();
        assert_eq!(
            got.response_header().headers.get("x-revalidated").unwrap(),
            "a-longer-value-than-before"
        );
        assert!(s.bytes() > before, "the new field is weighed");
        assert_eq!(s.eviction.total_size() as u64, s.bytes());
        assert_eq!(body(s, &key).await.as_deref(), Some(&b"body"[..]));
    }

    #[tokio::test]
    async fn a_header_of_many_fields_stays_serialized_and_is_weighed_as_such() {
        let s = store(1 << 20);
        let key = CacheKey::new("many", "");
        let mut header = ResponseHeader::build(200, None).unwrap();
        for i in 0..=MAX_PARSED_FIELDS {
            header.append_header(format!("x-f{i}"), "v").unwrap();
        }
        let now = SystemTime::now();
        let meta = CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header);
        let stored = Stored::of(&meta).unwrap();
        let (internal, bytes) = meta.serialize().unwrap();
        assert!(matches!(stored.header, Header::Serialized(_)));
        assert_eq!(stored.weight, internal.len() + bytes.len());
        let trace = trace();
        store_one_byte(s, &key, &meta).await;
        let (got, _) = s.lookup(&key, &trace).await.unwrap().unwrap();
        assert_eq!(got.serialize().unwrap(), (internal, bytes));
    }

    #[tokio::test]
    async fn eviction_removes_the_least_recently_used_objects() {
        let s = store(3 * 1024);
        const KB: &[u8] = &[b'x'; 1000];
        let keys: Vec<CacheKey> = (0..6).map(|i| CacheKey::new(format!("k{i}"), "")).collect();
        for k in &keys {
            fill(s, k, KB).await;
        }
        assert!(s.bytes() <= 3 * 1024, "{} bytes held", s.bytes());
        assert!(body(s, &keys[0]).await.is_none());
        assert!(body(s, &keys[5]).await.is_some());
        assert_eq!(s.eviction.total_size() as u64, s.bytes());
    }

    #[tokio::test]
    async fn invalidation_removes_every_variant() {
        let s = store(1 << 20);
        let primary = CacheKey::new("v", "");
        let mut variant = CacheKey::new("v", "");
        variant.set_variance_key([7; 16]);
        fill(s, &primary, b"first").await;
        fill(s, &variant, b"second").await;
        assert_eq!(s.objects(), 2);
        let out = s
            .purge(
                PurgeTarget::Active(&primary.to_compact()),
                PurgeType::Invalidation,
                &trace(),
            )
            .await
            .unwrap();
        let PurgeOutcome::Purged(Some(id)) = out else {
            panic!("{out:?}");
        };
        // pingora-cache untracks the target itself; the variant is ours.
        s.eviction.remove(CacheEntryKeyRef::from_entry_id(
            &primary.to_compact(),
            Some(id),
        ));
        assert_eq!(s.objects(), 0);
        assert_eq!(s.bytes(), 0);
        assert_eq!(s.eviction.total_items(), 0);
        assert!(body(s, &variant).await.is_none());
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        let eviction: &'static lru::Manager<1> =
            Box::leak(Box::new(lru::Manager::with_capacity(1 << 20, 16)));
        let s: &'static MemoryStorage = Box::leak(Box::new(MemoryStorage::new(eviction, 4)));
        let trace = trace();
        let key = CacheKey::new("big", "");
        let mut miss = s.get_miss_handler(&key, &meta(), &trace).await.unwrap();
        assert!(
            miss.write_body(Bytes::from_static(b"12345"), true)
                .await
                .is_err()
        );
        drop(miss);
        assert!(body(s, &key).await.is_none());
    }

    #[tokio::test]
    async fn fresh_hits_are_fresh_unvaried_parsed_primary_objects() {
        let s = store(1 << 20);
        let now = SystemTime::now();
        let meta_with = |fields: &[(String, &str)]| {
            let mut header = ResponseHeader::build(200, None).unwrap();
            for (k, v) in fields {
                header.append_header(k.clone(), *v).unwrap();
            }
            // Stored 30 s ago, fresh for 60 s from then.
            let stored = now - Duration::from_secs(30);
            CacheMeta::new(stored + Duration::from_secs(60), stored, 0, 0, header)
        };
        let plain = CacheKey::new("plain", "");
        store_one_byte(s, &plain, &meta_with(&[("X-A".into(), "1")])).await;
        let hit = s.fresh_hit(&plain, now).expect("a fresh hit");
        assert_eq!(hit.header.headers["x-a"], "1");
        assert_eq!(hit.body, Bytes::from_static(b"x"));
        assert_eq!(hit.age.as_secs(), 30);
        // Fresh up to and including its last instant, as pingora-cache.
        assert!(s.fresh_hit(&plain, now + Duration::from_secs(30)).is_some());
        assert!(s.fresh_hit(&plain, now + Duration::from_secs(31)).is_none());

        let varies = CacheKey::new("varies", "");
        store_one_byte(s, &varies, &meta_with(&[("Vary".into(), "Accept")])).await;
        assert!(s.fresh_hit(&varies, now).is_none());

        let mut variant = CacheKey::new("variant", "");
        variant.set_variance_key(*b"0123456789abcdef");
        store_one_byte(s, &variant, &meta_with(&[])).await;
        assert!(s.fresh_hit(&CacheKey::new("variant", ""), now).is_none());

        // Kept serialized: only pingora-cache's lookup reads it.
        let fields: Vec<(String, &str)> = (0..=MAX_PARSED_FIELDS)
            .map(|i| (format!("x-f{i}"), "v"))
            .collect();
        let large = CacheKey::new("large", "");
        store_one_byte(s, &large, &meta_with(&fields)).await;
        assert!(s.fresh_hit(&large, now).is_none());
        assert!(body(s, &large).await.is_some());

        assert!(s.fresh_hit(&CacheKey::new("absent", ""), now).is_none());
        s.purge_all_variants(&plain.to_compact());
        assert!(s.fresh_hit(&plain, now).is_none());
    }
}
