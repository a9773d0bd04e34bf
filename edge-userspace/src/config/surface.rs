//! The YAML file as written: serde structs that mirror the document.
//!
//! Unknown keys are errors everywhere (`deny_unknown_fields`): a typo must not
//! silently fall back to a default. Addresses and prefixes stay strings here;
//! `validate` parses them so that every bad value is reported at once, each
//! with its own line and column.

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// The kernel fast path.
    #[serde(default)]
    pub xdp: Option<Xdp>,
    /// L4 services balanced in XDP.
    #[serde(default)]
    pub l4: Option<super::l4::Surface>,
    /// L7 listeners.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Upstream pools.
    #[serde(default)]
    pub pools: Vec<Pool>,
    /// The admin endpoint (Prometheus metrics, health).
    #[serde(default)]
    pub admin: Option<Admin>,
    /// Process-wide settings.
    #[serde(default)]
    pub server: Option<Server>,
}

/// `xdp:`: where the XDP program runs and what it drops.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Xdp {
    /// Interfaces to attach to.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Source prefixes (CIDR) dropped before anything else.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// `xdp.interfaces[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// Attach mode.
    #[serde(default)]
    pub mode: XdpMode,
    /// Whether a failed native attach may fall back to generic mode.
    #[serde(default)]
    pub fallback_to_generic: bool,
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum XdpMode {
    /// In the driver, before an skb exists (the fast one).
    #[default]
    Native,
    /// In the generic network stack: works on any device, much slower.
    Generic,
}

impl XdpMode {
    /// The name used in the YAML file.
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

/// `listeners[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Unique name, used in metrics.
    pub name: String,
    /// `IP:port` to listen on.
    pub address: String,
    /// Name of the pool requests go to.
    pub pool: String,
}

/// `pools[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Unique name.
    pub name: String,
    /// Load-balancing algorithm.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Backends.
    pub backends: Vec<Backend>,
}

/// Load-balancing algorithms.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each backend in turn.
    #[default]
    RoundRobin,
}

impl Algorithm {
    /// The name used in the YAML file.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
        }
    }
}

/// `pools[].backends[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// `IP:port` of the backend.
    pub address: String,
}

/// `admin:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// `IP:port` serving `/metrics` and `/healthz`.
    pub address: String,
}

/// `server:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Worker threads per listener service; defaults to the number of CPUs.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Seconds to keep serving in-flight requests after SIGTERM.
    #[serde(default)]
    pub grace_period_seconds: Option<u64>,
}
