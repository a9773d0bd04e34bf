//! The pools of one generation, by name.
//!
//! A pool whose configuration did not change is the same object in the next
//! generation (same health task, same state); a changed one is rebuilt with
//! the previous one's state carried over by backend address
//! ([`UpstreamPool::new`]); a removed one lives on only in the requests that
//! still hold it.

use crate::{config::Config, upstream::UpstreamPool, upstream::health};
use anyhow::{Context, Result};
use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    sync::Arc,
};
use tokio::runtime::Handle;

/// The pools of one generation.
#[derive(Clone, Default)]
pub struct Pools {
    by_name: HashMap<String, Arc<UpstreamPool>>,
    /// Pool names in file order.
    order: Vec<String>,
    /// Pools this generation built (not carried over unchanged): their
    /// health checks start when the generation goes live.
    fresh: Vec<Arc<UpstreamPool>>,
}

impl Pools {
    /// The pools of `config`, reusing or carrying over those of `previous`;
    /// backends in `drained` (pool name, address) are drained.
    pub fn build(
        config: &Config,
        previous: &Pools,
        drained: &BTreeSet<(String, SocketAddr)>,
    ) -> Result<Self> {
        let mut out = Pools::default();
        for p in &config.pools {
            let old = previous.by_name.get(&p.name);
            let pool = match old {
                Some(old) if old.config == *p => Arc::clone(old),
                _ => {
                    let pool = Arc::new(
                        UpstreamPool::new(p, old.map(|o| o.as_ref()))
                            .with_context(|| format!("pool {}", p.name))?,
                    );
                    out.fresh.push(Arc::clone(&pool));
                    pool
                }
            };
            // A backend removed and added again is a new object: the
            // operator's drain outlives it.
            for b in &p.backends {
                if drained.contains(&(p.name.clone(), b.address)) {
                    pool.set_drained(b.address, true);
                }
            }
            out.order.push(p.name.clone());
            out.by_name.insert(p.name.clone(), pool);
        }
        Ok(out)
    }

    /// Every pool, in file order.
    pub fn all(&self) -> Vec<Arc<UpstreamPool>> {
        self.order
            .iter()
            .filter_map(|n| self.by_name.get(n).cloned())
            .collect()
    }

    /// The pool named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<UpstreamPool>> {
        self.by_name.get(name).cloned()
    }

    /// Makes this generation live: starts the health checks of the pools it
    /// built on `handle`, and stops those of the pools of `previous` it
    /// replaced or removed (requests still holding those finish on them
    /// without checks).
    pub fn go_live(&mut self, previous: &Pools, handle: &Handle) {
        for pool in self.fresh.drain(..) {
            health::start(&pool, handle);
        }
        for (name, old) in &previous.by_name {
            let kept = self.by_name.get(name).is_some_and(|p| Arc::ptr_eq(p, old));
            if !kept {
                old.stop_health_checks();
            }
        }
    }
}
