//! Active health checks: a background task per checked pool probes every
//! backend each interval (HTTP GET or TCP connect, bounded by the timeout)
//! and flips its health after `rise` successes or `fall` failures in a row.

use super::pool::UpstreamPool;
use crate::health::{TlsProbe, Tracker, probe};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use tokio::task::JoinSet;

/// The health checker of the pools that have `health_check`.
pub struct HealthChecker {
    pools: Vec<Arc<UpstreamPool>>,
}

impl HealthChecker {
    /// Checks those of `pools` that configure it.
    pub fn new(pools: &[Arc<UpstreamPool>]) -> Option<Self> {
        let pools: Vec<_> = pools
            .iter()
            .filter(|p| p.config.health_check.is_some())
            .cloned()
            .collect();
        (!pools.is_empty()).then_some(Self { pools })
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tasks = JoinSet::new();
        for pool in &self.pools {
            tasks.spawn(check_pool(pool.clone()));
        }
        let _ = shutdown.changed().await;
        tasks.abort_all();
    }
}

async fn check_pool(pool: Arc<UpstreamPool>) {
    let Some(check) = pool.config.health_check.clone() else {
        return;
    };
    let tls = match pool.config.tls.as_ref().map(TlsProbe::new).transpose() {
        Ok(tls) => tls.map(Arc::new),
        Err(e) => {
            tracing::error!(pool = %pool.name, "health checks disabled: {e}");
            return;
        }
    };
    let mut trackers = vec![Tracker::new(); pool.backends().len()];
    let mut interval = tokio::time::interval(check.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let mut probes = JoinSet::new();
        for (i, b) in pool.backends().iter().enumerate() {
            let (addr, kind, timeout, tls) =
                (b.address, check.kind.clone(), check.timeout, tls.clone());
            probes.spawn(async move { (i, probe(addr, &kind, timeout, tls.as_deref()).await) });
        }
        while let Some(Ok((i, result))) = probes.join_next().await {
            let Some(up) = trackers[i].observe(result.is_ok(), check.rise, check.fall) else {
                continue;
            };
            if let Err(why) = &result {
                tracing::debug!(pool = %pool.name, backend = %pool.backends()[i].address, "health check: {why}");
            }
            pool.set_health(i, up);
        }
    }
}
