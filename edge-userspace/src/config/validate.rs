//! Surface structs → the internal model, collecting every error on the way.

use super::{
    error::Diagnostic,
    l7,
    locate::Locations,
    model::{
        ADMIN_ALLOW_DEFAULT, AdminConfig, Config, DEFAULT_BPFFS, Interface, LogTarget,
        ServerConfig, XdpConfig,
    },
    surface,
    units::{self, Quantity},
};
use ipnet::IpNet;
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;
/// Default grace period after SIGTERM, in seconds.
const DEFAULT_GRACE_SECONDS: u64 = 5;
/// Default number of idle upstream connections kept (Pingora's default).
const DEFAULT_UPSTREAM_KEEPALIVE: usize = 128;

/// Collects diagnostics while the surface is turned into the model; the
/// section validators in sibling modules share it.
pub(super) struct Validator<'a> {
    locations: &'a Locations,
    base_dir: &'a Path,
    diagnostics: Vec<Diagnostic>,
}

impl Validator<'_> {
    /// The directory relative paths in the file are resolved against.
    pub(super) fn base_dir(&self) -> &Path {
        self.base_dir
    }

    /// Reports `message` at the YAML node `path` (e.g. `pools[0].name`).
    pub(super) fn error(&mut self, path: String, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            position: self.locations.find(&path),
            path,
            message: message.into(),
        });
    }

    /// `line N` of `path`, for messages that point at a second place.
    pub(super) fn line_of(&self, path: &str) -> String {
        self.locations
            .find(path)
            .map_or_else(|| path.to_string(), |p| format!("line {}", p.line))
    }

    /// Parses `IP:port`, reporting a bad one.
    pub(super) fn socket_addr(&mut self, path: String, value: &str) -> Option<SocketAddr> {
        match value.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    path,
                    format!(
                        "bad address {value:?}: expected IP:port, such as 0.0.0.0:8080 or [::]:8080"
                    ),
                );
                None
            }
        }
    }

    /// Parses a duration such as `5s` (see [`units`](super::units)).
    pub(super) fn duration(&mut self, path: String, q: &Quantity) -> Option<Duration> {
        units::parse_duration(&q.0)
            .map_err(|e| self.error(path, e))
            .ok()
    }

    /// Parses a byte size such as `64KiB` (see [`units`](super::units)).
    pub(super) fn size(&mut self, path: String, q: &Quantity) -> Option<u64> {
        units::parse_size(&q.0)
            .map_err(|e| self.error(path, e))
            .ok()
    }

    /// Remembers `key` under `path`; reports `what` if it was already seen.
    pub(super) fn unique<K: std::hash::Hash + Eq>(
        &mut self,
        seen: &mut HashMap<K, String>,
        key: K,
        path: String,
        what: impl FnOnce() -> String,
    ) {
        if let Some(first) = seen.get(&key) {
            let msg = format!("{} (first defined at {})", what(), self.line_of(first));
            self.error(path, msg);
        } else {
            seen.insert(key, path);
        }
    }
}

/// Checks `file` and builds the model, or returns every problem found.
///
/// Relative paths in the file resolve against `base_dir`, the file's directory.
pub fn validate(
    file: &surface::File,
    locations: &Locations,
    base_dir: &Path,
) -> Result<Config, Vec<Diagnostic>> {
    let mut v = Validator {
        locations,
        base_dir,
        diagnostics: Vec::new(),
    };
    let xdp = xdp(&mut v, file.xdp.as_ref());
    let l4 = super::l4::validate(&mut v, file.l4.as_ref(), !xdp.interfaces.is_empty());
    let pools = l7::pools(&mut v, &file.pools);
    let cache = super::cache::store(&mut v, file.cache.as_ref());
    let consumers = super::gateway::validate::consumers(&mut v, &file.consumers);
    let gateway = super::gateway::validate::gateway(&mut v, file.gateway.as_ref());
    let listeners = l7::listeners(
        &mut v,
        &file.listeners,
        &pools,
        cache.is_some(),
        &consumers,
        &gateway,
    );
    let bgp = super::bgp::validate(&mut v, file.bgp.as_ref(), &file.listeners);
    let admin = file.admin.as_ref().and_then(|a| admin(&mut v, a));
    if let Some(admin) = admin.as_ref().map(|a| a.address) {
        for (i, l) in listeners.iter().enumerate() {
            if overlaps(admin, l.address) {
                v.error(
                    "admin.address".into(),
                    format!(
                        "{admin} overlaps listener {:?} on {} ({})",
                        l.name,
                        l.address,
                        v.line_of(&format!("listeners[{i}].address"))
                    ),
                );
            }
        }
    }
    let server = server(&mut v, file.server.as_ref());
    let access_log = file.access_log.as_ref().map(|a| match a.path.as_str() {
        "-" => LogTarget::Stdout,
        p => LogTarget::File(base_dir.join(p)),
    });
    if v.diagnostics.is_empty() {
        Ok(Config {
            xdp,
            l4,
            listeners,
            pools,
            admin,
            server,
            access_log,
            cache,
            consumers,
            gateway,
            bgp,
        })
    } else {
        let mut diagnostics = v.diagnostics;
        diagnostics.sort_by_key(|d| d.position.map(|p| (p.line, p.column)));
        Err(diagnostics)
    }
}

fn xdp(v: &mut Validator<'_>, xdp: Option<&surface::Xdp>) -> XdpConfig {
    let Some(xdp) = xdp else {
        return XdpConfig::default();
    };
    let mut names = HashMap::new();
    let mut interfaces = Vec::new();
    for (i, iface) in xdp.interfaces.iter().enumerate() {
        let path = format!("xdp.interfaces[{i}].name");
        if iface.name.is_empty() || iface.name.len() > MAX_IFNAME || iface.name.contains('/') {
            v.error(
                path,
                format!(
                    "bad interface name {:?}: 1 to {MAX_IFNAME} characters, no '/'",
                    iface.name
                ),
            );
            continue;
        }
        v.unique(&mut names, iface.name.clone(), path, || {
            format!("interface {:?} is listed twice", iface.name)
        });
        if iface.fallback_to_generic && iface.mode == surface::XdpMode::Generic {
            v.error(
                format!("xdp.interfaces[{i}].fallback_to_generic"),
                "fallback_to_generic only applies to mode: native",
            );
        }
        interfaces.push(Interface {
            name: iface.name.clone(),
            mode: iface.mode,
            fallback_to_generic: iface.fallback_to_generic,
        });
    }
    let mut deny = Vec::new();
    let mut seen = HashMap::new();
    for (i, cidr) in xdp.deny.iter().enumerate() {
        let path = format!("xdp.deny[{i}]");
        let Some(net) = parse_cidr(v, path.clone(), cidr) else {
            continue;
        };
        v.unique(&mut seen, net, path, || {
            format!("prefix {net} is listed twice")
        });
        deny.push(net);
    }
    let bpffs = match &xdp.bpffs {
        Some(path) if !path.starts_with('/') => {
            v.error(
                "xdp.bpffs".into(),
                format!("bpffs {path:?} must be an absolute path, such as /sys/fs/bpf"),
            );
            PathBuf::from(DEFAULT_BPFFS)
        }
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(DEFAULT_BPFFS),
    };
    XdpConfig {
        interfaces,
        deny,
        bpffs,
    }
}

pub(super) fn parse_cidr(v: &mut Validator<'_>, path: String, text: &str) -> Option<IpNet> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        // A bare address denies just that host.
        Err(_) => match text.parse::<IpAddr>() {
            Ok(addr) => IpNet::from(addr),
            Err(_) => {
                v.error(
                    path,
                    format!(
                        "bad CIDR {text:?}: expected an IPv4 or IPv6 prefix such as \
                         192.0.2.0/24 or 2001:db8::/32"
                    ),
                );
                return None;
            }
        },
    };
    if net.trunc() != net {
        v.error(
            path,
            format!(
                "CIDR {text:?} has host bits set: did you mean {}?",
                net.trunc()
            ),
        );
        return None;
    }
    Some(net)
}

/// Whether two bind addresses would conflict: same port, and the same IP or
/// a wildcard on either side (a `[::]` socket also takes IPv4 on Linux).
pub(super) fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() {
        return false;
    }
    let (ia, ib) = (a.ip(), b.ip());
    ia == ib
        || (ia.is_unspecified() && (ia.is_ipv6() || ib.is_ipv4()))
        || (ib.is_unspecified() && (ib.is_ipv6() || ia.is_ipv4()))
}

fn server(v: &mut Validator<'_>, server: Option<&surface::Server>) -> ServerConfig {
    let default_threads = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = match server.and_then(|s| s.threads) {
        Some(0) => {
            v.error("server.threads".into(), "threads must be at least 1");
            1
        }
        Some(n) => n,
        None => default_threads,
    };
    ServerConfig {
        threads,
        grace_period_seconds: server
            .and_then(|s| s.grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE_SECONDS),
        upstream_keepalive_pool_size: server
            .and_then(|s| s.upstream_keepalive_pool_size)
            .unwrap_or(DEFAULT_UPSTREAM_KEEPALIVE),
        work_stealing: server.and_then(|s| s.work_stealing).unwrap_or(true),
    }
}

/// Checks `admin:`.
fn admin(v: &mut Validator<'_>, a: &surface::Admin) -> Option<AdminConfig> {
    let address = v.socket_addr("admin.address".into(), &a.address);
    let allow = match &a.allow {
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, c)| parse_cidr(v, format!("admin.allow[{i}]"), c))
            .collect(),
        None => ADMIN_ALLOW_DEFAULT
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
    };
    let token = match &a.token {
        Some(t) if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) => {
            v.error(
                "admin.token".into(),
                "the token must be at least 16 visible ASCII characters",
            );
            None
        }
        t => t.clone(),
    };
    Some(AdminConfig {
        address: address?,
        allow,
        token,
    })
}
