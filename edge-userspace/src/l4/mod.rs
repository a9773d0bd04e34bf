//! The L4 balancer's control plane: Maglev tables, backend health, next-hop
//! resolution, and the maps that carry them to the XDP program.

pub mod control;
pub mod health;
pub mod maglev;
pub mod neigh;
pub mod plan;
pub mod service;

pub use control::Controller;
pub use service::L4Background;

use crate::{
    config::{Config, l4::L4Config},
    dataplane::{Dataplane, LoadOptions},
};
use std::sync::Arc;

/// The map sizes `cfg` needs, with room for reloads to add services: twice
/// those configured, at least [`MIN_SERVICE_ROOM`] (each costs 2 × 65537 ×
/// 4 bytes of ring), at most `MAX_L4_SERVICES`.
pub fn load_options(cfg: &L4Config, pin: Option<crate::dataplane::PinAt>) -> LoadOptions {
    let services = (cfg.services.len() as u32).saturating_mul(2);
    LoadOptions {
        conntrack_capacity: cfg.conntrack_capacity,
        l4_services: services.clamp(MIN_SERVICE_ROOM, edge_common::MAX_L4_SERVICES),
        pin,
    }
}

/// The fewest services the ring map is sized for.
pub const MIN_SERVICE_ROOM: u32 = 8;

/// Installs the `l4:` section into `dp`'s maps; returns the background
/// service that keeps it up to date (health checks, metrics) and the handle
/// reloads apply a new `l4:` section through.
/// `drained`: the L4 drains an earlier process saved, out of the tables
/// from the first write on.
pub fn start(
    dp: &Dataplane,
    config: &Config,
    drained: &[(String, std::net::IpAddr)],
) -> anyhow::Result<(L4Background, L4Reload)> {
    let interfaces: Vec<String> = config
        .xdp
        .interfaces
        .iter()
        .map(|i| i.name.clone())
        .collect();
    let controller = Controller::install(dp.l4_shared(), &config.l4, &interfaces, drained)?;
    let (changes, watch) = tokio::sync::watch::channel(0);
    Ok((
        L4Background::new(Arc::clone(&controller), watch),
        L4Reload {
            controller,
            changes,
        },
    ))
}

/// Applies a reloaded `l4:` section to the running controller.
pub struct L4Reload {
    controller: Arc<Controller>,
    changes: tokio::sync::watch::Sender<u64>,
}

impl L4Reload {
    /// The controller, shared.
    pub fn controller(&self) -> Arc<Controller> {
        Arc::clone(&self.controller)
    }

    /// Makes `cfg` live in the maps (see [`Controller::apply`]) and restarts
    /// the health checks from it.
    pub fn apply(&self, cfg: &L4Config) -> anyhow::Result<()> {
        self.controller.apply(cfg)?;
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }
}
