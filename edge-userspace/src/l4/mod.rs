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

/// The map sizes `cfg` needs.
pub fn load_options(cfg: &L4Config) -> LoadOptions {
    LoadOptions {
        conntrack_capacity: cfg.conntrack_capacity,
        l4_services: cfg.services.len() as u32,
    }
}

/// Installs the `l4:` section into `dp`'s maps and returns the background
/// service that keeps it up to date (health checks, metrics).
pub fn start(dp: &Dataplane, config: &Config) -> anyhow::Result<L4Background> {
    let interfaces: Vec<String> = config
        .xdp
        .interfaces
        .iter()
        .map(|i| i.name.clone())
        .collect();
    let controller = Controller::install(dp.l4_shared(), &config.l4, &interfaces)?;
    Ok(L4Background::new(controller, config.l4.clone()))
}
