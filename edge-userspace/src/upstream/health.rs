//! Active health checks: a background task per checked pool probes every
//! backend each interval (HTTP GET or TCP connect, bounded by the timeout)
//! and flips its health after `rise` successes or `fall` failures in a row.

use super::pool::UpstreamPool;
use crate::config::{CheckKind, HealthCheck};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::{net::SocketAddr, sync::Arc};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
};

/// Longest status line a check reads.
const MAX_STATUS_LINE: usize = 1024;

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
    let n = pool.backends().len();
    // Consecutive results: positive successes, negative failures.
    let mut streak = vec![0i64; n];
    let mut interval = tokio::time::interval(check.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let mut probes = JoinSet::new();
        for (i, b) in pool.backends().iter().enumerate() {
            let (addr, check) = (b.address, check.clone());
            probes.spawn(async move { (i, probe(addr, &check).await) });
        }
        while let Some(Ok((i, result))) = probes.join_next().await {
            let s = &mut streak[i];
            *s = match (&result, *s) {
                (Ok(()), s) if s > 0 => s + 1,
                (Ok(()), _) => 1,
                (Err(_), s) if s < 0 => s - 1,
                (Err(_), _) => -1,
            };
            let healthy = pool.backends()[i].healthy();
            if !healthy && *s >= i64::from(check.rise) {
                pool.set_health(i, true);
            } else if healthy && -*s >= i64::from(check.fall) {
                if let Err(why) = &result {
                    tracing::debug!(pool = %pool.name, backend = %pool.backends()[i].address, "health check: {why}");
                }
                pool.set_health(i, false);
            }
        }
    }
}

/// One probe of `addr`.
pub async fn probe(addr: SocketAddr, check: &HealthCheck) -> Result<(), String> {
    match tokio::time::timeout(check.timeout, probe_inner(addr, &check.kind)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {:?}", check.timeout)),
    }
}

async fn probe_inner(addr: SocketAddr, kind: &CheckKind) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let CheckKind::Http {
        path,
        host,
        statuses,
    } = kind
    else {
        return Ok(());
    };
    let host = host.clone().unwrap_or_else(|| addr.to_string());
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: edge-health-check\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < MAX_STATUS_LINE {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP response: {:?}",
                line.lines().next().unwrap_or("")
            )
        })?;
    let ok = if statuses.is_empty() {
        (200..400).contains(&status)
    } else {
        statuses.contains(&status)
    };
    if ok {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}
