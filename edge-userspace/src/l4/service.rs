//! The L4 background service of `edge run`: health checks, next-hop
//! retries and the counter export, until shutdown. A reload restarts the
//! health checks from the new plan, each from its backend's health.

use super::{control::Controller, health};
use async_trait::async_trait;
use pingora::{server::ShutdownWatch, services::background::BackgroundService};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinSet};

/// How often the kernel's L4 counters are copied into the metrics.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(1);
/// How often unresolved next hops are retried.
pub const RESOLVE_RETRY: Duration = Duration::from_secs(2);

/// Runs the L4 controller's periodic work.
pub struct L4Background {
    controller: Arc<Controller>,
    /// Bumped by each applied reload: the health checks restart then.
    changes: watch::Receiver<u64>,
}

impl L4Background {
    /// The service for `controller`; a value sent on `changes` (after a
    /// reload) restarts the health checks from the controller's new plan.
    pub fn new(controller: Arc<Controller>, changes: watch::Receiver<u64>) -> Self {
        Self {
            controller,
            changes,
        }
    }
}

/// Starts one health-check task per checked backend of `controller`, each
/// from the backend's health now.
fn start_checks(controller: &Arc<Controller>) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for c in controller.checked_backends() {
        let controller = Arc::clone(controller);
        tasks.spawn(async move {
            let hc = c.check;
            let target = SocketAddr::new(c.address, hc.port);
            let mut tracker = health::Tracker::starting(c.healthy);
            let mut tick = tokio::time::interval(hc.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let result = health::probe(target, &hc).await;
                if let Err(why) = &result {
                    tracing::debug!(service = %c.name, backend = %target, "health check failed: {why}");
                }
                if let Some(up) = tracker.observe(result.is_ok(), hc.rise, hc.fall) {
                    if let Err(why) = &result {
                        tracing::warn!(service = %c.name, backend = %target, "backend down: {why}");
                    }
                    let ctl = Arc::clone(&controller);
                    let (service, address) = (c.service, c.address);
                    let done =
                        tokio::task::spawn_blocking(move || ctl.set_healthy(service, address, up))
                            .await;
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!("{e:#}"),
                        Err(e) => tracing::error!("health update task: {e}"),
                    }
                }
            }
        });
    }
    tasks
}

#[async_trait]
impl BackgroundService for L4Background {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut checks = start_checks(&self.controller);
        let mut changes = self.changes.clone();
        let mut upkeep = tokio::task::JoinSet::new();
        let controller = Arc::clone(&self.controller);
        upkeep.spawn(async move {
            let mut tick = tokio::time::interval(METRICS_INTERVAL);
            let mut since_retry = Duration::ZERO;
            loop {
                tick.tick().await;
                let c = Arc::clone(&controller);
                let retry = since_retry >= RESOLVE_RETRY && controller.unresolved();
                since_retry = if retry {
                    Duration::ZERO
                } else {
                    since_retry + METRICS_INTERVAL
                };
                let _ = tokio::task::spawn_blocking(move || {
                    if retry {
                        c.retry_routes(Duration::from_millis(500));
                    }
                    c.repair_services();
                    c.refresh_metrics();
                })
                .await;
            }
        });
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The reloader is gone: keep the checks as they are.
                        let _ = shutdown.changed().await;
                        break;
                    }
                    checks.shutdown().await;
                    checks = start_checks(&self.controller);
                }
            }
        }
        checks.shutdown().await;
        upkeep.shutdown().await;
    }
}
