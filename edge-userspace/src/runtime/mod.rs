//! The compiled, swappable form of the configuration, and reload.
//!
//! Each L7 listener serves from a [`ListenerRuntime`] held behind an atomic
//! swap ([`Listeners`]). A request loads the runtime once when it starts
//! and every later phase reads that snapshot: its route, pool and policies
//! are `Arc`s inside it, so a reload in the middle of a request changes
//! nothing for that request. [`reload::Reloader`] builds the next
//! generation from the file and swaps every listener's runtime in, with the
//! deny list and L4 services changed in the maps ([`kernel`]), or keeps the
//! running one and says why.

pub mod control;
pub mod drains;
pub mod kernel;
mod pools;
pub mod reload;
mod restart;
pub mod upgrade;

pub use pools::Pools;
pub use reload::{KernelApply, ReloadError, Reloader};

use crate::{
    cache,
    config::{CachePolicy, CompressionPolicy, Listener, Route},
    proxy::tls::SniCertificates,
    upstream::UpstreamPool,
};
use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use std::{collections::HashMap, sync::Arc};

/// One listener's compiled configuration.
pub struct ListenerRuntime {
    /// The configuration generation this runtime belongs to.
    pub generation: u64,
    /// The listener's settings. Its `routes` are moved into [`Self::routes`].
    pub config: Listener,
    /// Routes in file order, each with what it needs resolved.
    pub routes: Vec<Arc<RouteRuntime>>,
    /// The certificates a TLS listener's handshakes choose from.
    pub certificates: Option<SniCertificates>,
    /// The process cache with this listener's policy, if caching is set up.
    pub cache: Option<cache::ListenerCache>,
    /// Sources banned by L7 verdicts (shared by every listener).
    pub bans: Arc<crate::policy::bans::Bans>,
    /// A stream listener's pools.
    pub stream: Option<StreamRuntime>,
}

/// A stream listener's pools, resolved.
pub struct StreamRuntime {
    /// TCP: its pool; TLS passthrough: the default pool.
    pub pool: Option<Arc<UpstreamPool>>,
    /// TLS passthrough: server names to pools, in file order.
    pub sni: Vec<(Vec<crate::config::HostMatch>, Arc<UpstreamPool>)>,
}

impl StreamRuntime {
    /// The pool for a connection asking for server `name` (lower case):
    /// an exact name first, then the longest wildcard suffix, then the
    /// default pool.
    pub fn pool_for(&self, name: Option<&str>) -> Option<&Arc<UpstreamPool>> {
        let Some(name) = name else {
            return self.pool.as_ref();
        };
        let mut best: Option<(usize, &Arc<UpstreamPool>)> = None;
        for (names, pool) in &self.sni {
            for m in names {
                let rank = match m {
                    crate::config::HostMatch::Exact(n) if n == name => usize::MAX,
                    crate::config::HostMatch::Suffix(s)
                        if name.len() > s.len() && name.ends_with(s.as_str()) =>
                    {
                        s.len()
                    }
                    _ => continue,
                };
                if best.is_none_or(|(r, _)| rank > r) {
                    best = Some((rank, pool));
                }
            }
        }
        best.map(|(_, p)| p).or(self.pool.as_ref())
    }
}

/// One route, compiled.
pub struct RouteRuntime {
    /// The route's conditions and action.
    pub route: Route,
    /// Its name, as a metric label.
    pub name: Arc<str>,
    /// The pool a proxying route sends to.
    pub pool: Option<Arc<UpstreamPool>>,
    /// Its cache policy (its own or the listener's).
    pub cache: Option<Arc<CachePolicy>>,
    /// Its response compression (its own or the listener's).
    pub compression: Option<Arc<CompressionPolicy>>,
    /// Its gateway policies; `None`: it has none and pays nothing.
    pub policies: Option<crate::policy::Chain>,
    /// Its traffic split.
    pub split: Option<crate::traffic::split::Split>,
    /// Its mirror.
    pub mirror: Option<crate::traffic::mirror::Mirror>,
    /// Its aggregation, for an `aggregate` route.
    pub aggregate: Option<crate::traffic::aggregate::Aggregator>,
    /// Its path regex, whose named captures fill path templates.
    pub path_regex: Option<regex::Regex>,
    /// Its own cache key namespace, when a request's URL alone does not
    /// tell its route (header, query or media-type conditions):
    /// another route's answer for the same URL must not be served for it.
    pub cache_namespace: Option<Arc<str>>,
    /// Its REST→gRPC bindings, for a transcoding route.
    pub transcoder: Option<Arc<crate::transcode::Transcoder>>,
    /// Its request metrics, registered once.
    pub metrics: crate::metrics::RouteHandles,
}

impl ListenerRuntime {
    /// Compiles listener `l` of generation `generation`: resolves each
    /// route's pool in `pools`, compiles its policies against `gateway`
    /// and loads the certificates.
    pub fn compile(
        l: &Listener,
        pools: &Pools,
        process_cache: Option<&'static cache::Cache>,
        generation: u64,
        gateway: &crate::policy::Generation,
    ) -> Result<Self> {
        let listener_name: Arc<str> = Arc::from(l.name.as_str());
        let routes = l
            .routes
            .iter()
            .map(|r| {
                let pool = match &r.action {
                    crate::config::Action::Proxy { pool, .. } => Some(
                        pools
                            .get(pool)
                            .with_context(|| format!("route {}: no pool {pool}", r.name))?,
                    ),
                    _ => None,
                };
                let policies =
                    crate::policy::Chain::compile(&l.name, &r.name, &r.policies, gateway)
                        .with_context(|| format!("route {}: its policies", r.name))?;
                let name: Arc<str> = Arc::from(r.name.as_str());
                let pool_named = |p: &str| {
                    pools
                        .get(p)
                        .with_context(|| format!("route {}: no pool {p}", r.name))
                };
                let split = if r.shaping.split.is_empty() {
                    None
                } else {
                    let rules = r
                        .shaping
                        .split
                        .iter()
                        .map(|rule| Ok((rule.clone(), pool_named(&rule.pool)?)))
                        .collect::<Result<Vec<_>>>()?;
                    Some(crate::traffic::split::Split::new(rules))
                };
                let mirror = match &r.shaping.mirror {
                    Some(m) => Some(crate::traffic::mirror::Mirror::new(
                        m.clone(),
                        pool_named(&m.pool)?,
                        Arc::clone(&name),
                    )),
                    None => None,
                };
                let path_regex = match &r.matcher.path {
                    Some(crate::config::PathMatch::Regex(p)) => Some(p.0.clone()),
                    _ => None,
                };
                let aggregate = match &r.action {
                    crate::config::Action::Aggregate(a) => {
                        let call_pools = a
                            .calls
                            .iter()
                            .map(|c| pool_named(&c.pool))
                            .collect::<Result<Vec<_>>>()?;
                        Some(crate::traffic::aggregate::Aggregator::new(
                            Arc::clone(&name),
                            a.clone(),
                            call_pools,
                            path_regex.clone(),
                        ))
                    }
                    _ => None,
                };
                let transcoder = match &r.transcode {
                    Some(t) => Some(Arc::new(
                        crate::transcode::Transcoder::load(&t.descriptor_set, &t.services)
                            .with_context(|| format!("route {}: its transcoding", r.name))?,
                    )),
                    None => None,
                };
                let m = &r.matcher;
                let cache_namespace =
                    (!m.headers.is_empty() || !m.query.is_empty() || m.accept_param.is_some())
                        .then(|| Arc::from(format!("{}/{}", l.name, r.name)));
                let metrics = crate::metrics::RouteHandles::new(
                    &listener_name,
                    &name,
                    &pool
                        .as_ref()
                        .map_or_else(|| Arc::from(crate::metrics::NONE), |p| Arc::clone(&p.name)),
                );
                Ok(Arc::new(RouteRuntime {
                    metrics,
                    transcoder,
                    cache_namespace,
                    policies,
                    split,
                    mirror,
                    aggregate,
                    path_regex,
                    name,
                    pool,
                    cache: r.cache.clone().map(Arc::new),
                    compression: r.compression.clone().map(Arc::new),
                    route: r.clone(),
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        let certificates = l
            .transport
            .tls
            .as_ref()
            .map(SniCertificates::load)
            .transpose()
            .with_context(|| format!("listener {}: loading its certificates", l.name))?;
        let stream = match &l.stream {
            Some(s) => {
                let named = |p: &str| {
                    pools
                        .get(p)
                        .with_context(|| format!("listener {}: no pool {p}", l.name))
                };
                Some(StreamRuntime {
                    pool: s.pool.as_deref().map(named).transpose()?,
                    sni: s
                        .sni
                        .iter()
                        .map(|(names, p)| Ok((names.clone(), named(p)?)))
                        .collect::<Result<Vec<_>>>()?,
                })
            }
            None => None,
        };
        let mut config = l.clone();
        config.routes = Vec::new();
        Ok(Self {
            stream,
            generation,
            cache: process_cache.map(|c| cache::ListenerCache {
                cache: c,
                policy: l.cache.clone().map(Arc::new),
                namespace: Arc::from(l.name.as_str()),
            }),
            config,
            routes,
            certificates,
            bans: gateway.bans(),
        })
    }
}

/// Every listener's swappable runtime, by listener name.
pub type Listeners = HashMap<String, Arc<ArcSwap<ListenerRuntime>>>;
