//! Active health checks: each checked pool owns one task that probes every
//! backend each interval (HTTP GET, gRPC health check or TCP connect,
//! bounded by the timeout)
//! and flips its health after `rise` successes or `fall` failures in a row.
//!
//! The task holds its pool only weakly between rounds and the pool aborts
//! it when dropped, so a reload that replaces or removes a pool stops its
//! checks; a replacement pool's task starts from each carried-over
//! backend's current health.

use super::pool::UpstreamPool;
use crate::{
    config::CheckKind,
    health::{TlsProbe, Tracker, probe},
};
use std::sync::{Arc, Weak};
use tokio::{runtime::Handle, task::JoinSet};

/// Starts `pool`'s health checks on `handle`, if it has any; the pool owns
/// the task from then on.
pub fn start(pool: &Arc<UpstreamPool>, handle: &Handle) {
    if pool.config.health_check.is_none() {
        return;
    }
    let task = handle.spawn(check_pool(Arc::downgrade(pool)));
    pool.own_health_task(task.abort_handle());
}

async fn check_pool(weak: Weak<UpstreamPool>) {
    let Some(pool) = weak.upgrade() else { return };
    let Some(check) = pool.config.health_check.clone() else {
        return;
    };
    let h2 = matches!(check.kind, CheckKind::Grpc { .. });
    let tls = match pool
        .config
        .tls
        .as_ref()
        .map(|t| TlsProbe::new(t, h2))
        .transpose()
    {
        Ok(tls) => tls.map(Arc::new),
        Err(e) => {
            tracing::error!(pool = %pool.name, "health checks disabled: {e}");
            return;
        }
    };
    let mut trackers: Vec<Tracker> = pool
        .backends()
        .iter()
        .map(|b| Tracker::starting(b.healthy()))
        .collect();
    drop(pool);
    let mut interval = tokio::time::interval(check.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(pool) = weak.upgrade() else { return };
        let mut probes = JoinSet::new();
        for (i, b) in pool.backends().iter().enumerate() {
            let (addr, kind, timeout, tls) =
                (b.address, check.kind.clone(), check.timeout, tls.clone());
            probes.spawn(async move { (i, probe(addr, &kind, timeout, tls.as_deref()).await) });
        }
        while let Some(Ok((i, result))) = probes.join_next().await {
            let Some(tracker) = trackers.get_mut(i) else {
                continue;
            };
            let Some(up) = tracker.observe(result.is_ok(), check.rise, check.fall) else {
                continue;
            };
            if let Err(why) = &result {
                tracing::debug!(pool = %pool.name, backend = %pool.backends()[i].address, "health check: {why}");
            }
            pool.set_health(i, up);
        }
    }
}
