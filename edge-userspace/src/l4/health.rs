//! L4 health checks: the shared probe ([`crate::health`]) with an L4
//! service's settings.

use crate::config::{
    CheckKind,
    l4::{HealthCheck, HealthCheckKind},
};
pub use crate::health::Tracker;
use std::net::SocketAddr;

/// Runs one check of `addr` within `hc.timeout`; `Err` says why it failed.
pub async fn probe(addr: SocketAddr, hc: &HealthCheck) -> Result<(), String> {
    let kind = match hc.kind {
        HealthCheckKind::Tcp => CheckKind::Tcp,
        HealthCheckKind::Http => CheckKind::Http {
            path: hc.path.clone(),
            host: Some(addr.ip().to_string()),
            statuses: vec![hc.expected_status],
        },
    };
    crate::health::probe(addr, &kind, hc.timeout, None).await
}
