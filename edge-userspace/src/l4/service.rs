//! The L4 background service of `edge run`: health checks, next-hop
//! retries and the counter export, until shutdown.

use super::{control::Controller, health};
use crate::config::l4::L4Config;
use async_trait::async_trait;
use pingora::{server::ShutdownWatch, services::background::BackgroundService};
use std::{net::SocketAddr, sync::Arc, time::Duration};

/// How often the kernel's L4 counters are copied into the metrics.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(1);
/// How often unresolved next hops are retried.
pub const RESOLVE_RETRY: Duration = Duration::from_secs(2);

/// Runs the L4 controller's periodic work.
pub struct L4Background {
    controller: Arc<Controller>,
    config: L4Config,
}

impl L4Background {
    /// The service for `controller`, configured by `config`.
    pub fn new(controller: Arc<Controller>, config: L4Config) -> Self {
        Self { controller, config }
    }
}

#[async_trait]
impl BackgroundService for L4Background {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tasks = tokio::task::JoinSet::new();
        for (s, b, address) in self.controller.checked_backends(&self.config) {
            let Some(hc) = self.config.services[s].health_check.clone() else {
                continue;
            };
            let controller = Arc::clone(&self.controller);
            let name = self.config.services[s].name.clone();
            tasks.spawn(async move {
                let target = SocketAddr::new(address, hc.port);
                let mut tracker = health::Tracker::new();
                let mut tick = tokio::time::interval(hc.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let result = health::probe(target, &hc).await;
                    if let Err(why) = &result {
                        tracing::debug!(service = %name, backend = %target, "health check failed: {why}");
                    }
                    if let Some(up) = tracker.observe(result.is_ok(), hc.rise, hc.fall) {
                        if let Err(why) = &result {
                            tracing::warn!(service = %name, backend = %target, "backend down: {why}");
                        }
                        let c = Arc::clone(&controller);
                        let done =
                            tokio::task::spawn_blocking(move || c.set_healthy(s, b, up)).await;
                        match done {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::error!("{e:#}"),
                            Err(e) => tracing::error!("health update task: {e}"),
                        }
                    }
                }
            });
        }
        let controller = Arc::clone(&self.controller);
        tasks.spawn(async move {
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
                    c.refresh_metrics();
                })
                .await;
            }
        });
        let _ = shutdown.changed().await;
        tasks.shutdown().await;
    }
}
