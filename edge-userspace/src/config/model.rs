//! The validated configuration: what the rest of edge reads. Every address is
//! parsed, every reference resolved; nothing downstream sees raw YAML.

use ipnet::IpNet;
use std::net::SocketAddr;

pub use super::surface::{Algorithm, XdpMode};

/// A checked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The kernel fast path.
    pub xdp: XdpConfig,
    /// L4 services balanced in XDP.
    pub l4: super::l4::L4Config,
    /// L7 listeners.
    pub listeners: Vec<Listener>,
    /// Upstream pools; listeners refer to them by index.
    pub pools: Vec<Pool>,
    /// Admin endpoint, if any.
    pub admin: Option<SocketAddr>,
    /// Process-wide settings.
    pub server: ServerConfig,
}

/// The XDP program's settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct XdpConfig {
    /// Interfaces to attach to.
    pub interfaces: Vec<Interface>,
    /// Denied source prefixes, host bits clear.
    pub deny: Vec<IpNet>,
}

/// One interface the XDP program runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Requested attach mode.
    pub mode: XdpMode,
    /// Whether native may fall back to generic.
    pub fallback_to_generic: bool,
}

/// One L7 listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Unique name.
    pub name: String,
    /// Address to bind.
    pub address: SocketAddr,
    /// Index into [`Config::pools`].
    pub pool: usize,
}

/// One upstream pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Unique name.
    pub name: String,
    /// Selection algorithm.
    pub algorithm: Algorithm,
    /// Backend addresses, at least one.
    pub backends: Vec<SocketAddr>,
}

/// Process-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Worker threads per service.
    pub threads: usize,
    /// Seconds of grace after SIGTERM.
    pub grace_period_seconds: u64,
}

impl Config {
    /// The TCP ports the L7 listeners own, which the XDP program passes up.
    pub fn l7_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.listeners.iter().map(|l| l.address.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// A one-paragraph summary for `edge check` and the start-up log.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for l in &self.listeners {
            let pool = &self.pools[l.pool];
            out.push_str(&format!(
                "listener {} on {} -> pool {} ({}, {} backend{})\n",
                l.name,
                l.address,
                pool.name,
                pool.algorithm.as_str(),
                pool.backends.len(),
                if pool.backends.len() == 1 { "" } else { "s" }
            ));
        }
        for i in &self.xdp.interfaces {
            out.push_str(&format!(
                "xdp on {} ({}{})\n",
                i.name,
                i.mode.as_str(),
                if i.fallback_to_generic {
                    ", may fall back to generic"
                } else {
                    ""
                }
            ));
        }
        out.push_str(&format!("deny list: {} prefixes\n", self.xdp.deny.len()));
        for s in &self.l4.services {
            out.push_str(&format!(
                "l4 service {} on {} port {}/{} -> {} backend{} (maglev {})\n",
                s.name,
                s.vip,
                s.port,
                s.protocol.as_str(),
                s.backends.len(),
                if s.backends.len() == 1 { "" } else { "s" },
                s.table_size
            ));
        }
        match self.admin {
            Some(a) => out.push_str(&format!("admin (metrics) on http://{a}/metrics\n")),
            None => out.push_str("admin endpoint: off\n"),
        }
        out
    }
}
