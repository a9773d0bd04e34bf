//! The `bgp:` section: the VIPs edge announces through BIRD 2.
//!
//! edge never speaks BGP itself: it writes a BIRD configuration file and
//! asks BIRD to re-read it (see [`crate::bgp`]). This module holds the
//! section's surface structs (as written), its model (what the announcer
//! reads) and the validation between them.

use super::{report::Report, surface, units::Quantity, validate::Validator};
use crate::runtime::control::SOCKET_DIR;
use serde::Deserialize;
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

/// Most BGP neighbours (sessions) in one configuration.
pub const MAX_NEIGHBORS: usize = 16;
/// Most communities added to every announced route.
pub const MAX_COMMUNITIES: usize = 32;
/// Default hold time (a keepalive every 3 s, a dead peer noticed in 9 s).
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(9);
/// Shortest hold time BGP allows (RFC 4271 §4.2; 0, "no keepalives", is not
/// offered: a host that withdraws by going away must be noticed).
pub const MIN_HOLD_TIME: Duration = Duration::from_secs(3);
/// Longest hold time BGP can carry (a 16-bit number of seconds).
pub const MAX_HOLD_TIME: Duration = Duration::from_secs(65_535);
/// Default time between connection attempts to a neighbour.
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(5);
/// Shortest connect retry accepted.
pub const MIN_CONNECT_RETRY: Duration = Duration::from_secs(1);
/// Longest connect retry accepted.
pub const MAX_CONNECT_RETRY: Duration = Duration::from_secs(3600);
/// Where BIRD 2 puts its control socket unless told otherwise.
pub const DEFAULT_BIRD_SOCKET: &str = "/run/bird/bird.ctl";
/// Longest path a unix socket address holds (`sun_path` is 108 bytes with
/// its terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;
/// Where the BIRD configuration file is best written: a directory BIRD
/// (which Debian runs as user `bird`) can read, which systemd's
/// `StateDirectory=edge` makes.
pub const SUGGESTED_BIRD_CONFIG: &str = "/var/lib/edge/bird.conf";

// ---------------------------------------------------------------- surface

/// `bgp:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpSurface {
    /// BIRD's router id: an IPv4 address, usually one of this host's.
    pub router_id: String,
    /// This host's AS number.
    pub local_as: u32,
    /// The BGP sessions.
    pub neighbors: Vec<NeighborSurface>,
    /// Standard communities `A:B` added to every announced route.
    #[serde(default)]
    pub communities: Vec<String>,
    /// The next hop announced instead of the session's local address.
    #[serde(default)]
    pub next_hop: Option<String>,
    /// The BGP hold time; default 9s.
    #[serde(default)]
    pub hold_time: Option<Quantity>,
    /// Time between connection attempts; default 5s.
    #[serde(default)]
    pub connect_retry: Option<Quantity>,
    /// L7 listeners whose bind address is announced too.
    #[serde(default)]
    pub listeners: Vec<String>,
    /// Where edge writes BIRD's configuration and how it reaches BIRD.
    pub bird: BirdSurface,
}

/// `bgp.neighbors[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborSurface {
    /// The peer's address.
    pub address: String,
    /// The peer's AS number.
    pub remote_as: u32,
    /// The local address of the session (BIRD's `local <ip>`).
    #[serde(default)]
    pub source_address: Option<String>,
}

/// `bgp.bird`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BirdSurface {
    /// The file edge writes (an absolute path).
    pub config: String,
    /// BIRD's control socket; default `/run/bird/bird.ctl`.
    #[serde(default)]
    pub socket: Option<String>,
}

// ------------------------------------------------------------------ model

/// The validated `bgp:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct BgpConfig {
    /// BIRD's router id.
    pub router_id: Ipv4Addr,
    /// This host's AS number.
    pub local_as: u32,
    /// The sessions, in file order (BIRD names each by its address:
    /// `edge_peer_10_0_0_1`, see [`crate::bgp::render::peer_protocol`]).
    pub neighbors: Vec<Neighbor>,
    /// Standard communities added to every announced route, in file order.
    pub communities: Vec<(u16, u16)>,
    /// The next hop announced on sessions of its address family, instead of
    /// the session's local address.
    pub next_hop: Option<IpAddr>,
    /// The BGP hold time, whole seconds (the keepalive is a third of it).
    pub hold_time: Duration,
    /// Time between connection attempts, whole seconds.
    pub connect_retry: Duration,
    /// The bind addresses of the listeners in `bgp.listeners`, announced
    /// while edge runs and the host is not drained (no duplicates).
    pub listener_addresses: Vec<IpAddr>,
    /// The BIRD configuration file edge writes.
    pub bird_config: PathBuf,
    /// BIRD's control socket.
    pub bird_socket: PathBuf,
}

/// One BGP session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// The peer's address; the session carries routes of its family only.
    pub address: IpAddr,
    /// The peer's AS number.
    pub remote_as: u32,
    /// The session's local address, if pinned (same family as `address`).
    pub source_address: Option<IpAddr>,
}

impl BgpConfig {
    /// The keepalive time: a third of the hold time, as BGP suggests.
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs((self.hold_time.as_secs() / 3).max(1))
    }

    /// Whether some neighbour has the address family of `addr`, i.e.
    /// whether a route to `addr` would be announced anywhere.
    pub fn carries(&self, addr: IpAddr) -> bool {
        self.neighbors
            .iter()
            .any(|n| n.address.is_ipv4() == addr.is_ipv4())
    }
}

// ------------------------------------------------------------- validation

/// Checks the `bgp:` section; `listeners` are the L7 listeners as written
/// (`bgp.listeners` refers to them by name; a listener whose own address
/// is bad was reported by the listener checks already).
pub(super) fn validate(
    v: &mut Validator<'_>,
    bgp: Option<&BgpSurface>,
    listeners: &[surface::Listener],
) -> Option<BgpConfig> {
    let b = bgp?;
    let mut ok = true;

    let router_id = match b.router_id.parse::<IpAddr>() {
        Ok(IpAddr::V4(id)) if !id.is_unspecified() => Some(id),
        Ok(IpAddr::V4(_)) => {
            v.error(
                "bgp.router_id".into(),
                "router_id 0.0.0.0 is not allowed: use one of this host's IPv4 addresses",
            );
            None
        }
        Ok(IpAddr::V6(_)) | Err(_) => {
            v.error(
                "bgp.router_id".into(),
                format!(
                    "bad router_id {:?}: expected an IPv4 address (BGP router ids are 32-bit \
                     numbers written as one, even on an IPv6-only host), usually one of this \
                     host's",
                    b.router_id
                ),
            );
            None
        }
    };

    if b.local_as == 0 {
        v.error(
            "bgp.local_as".into(),
            "local_as must be 1 to 4294967295 (AS 0 is reserved)",
        );
        ok = false;
    }

    // The neighbours that parsed stay in `neighbors` even when others did
    // not, so that the checks below (next_hop's family) still run.
    let (neighbors, neighbors_ok) = neighbors(v, &b.neighbors);
    ok &= neighbors_ok;

    let mut communities = Vec::new();
    if b.communities.len() > MAX_COMMUNITIES {
        v.error(
            "bgp.communities".into(),
            format!(
                "{} communities given; at most {MAX_COMMUNITIES}",
                b.communities.len()
            ),
        );
        ok = false;
    }
    let mut seen = HashMap::new();
    for (i, text) in b.communities.iter().enumerate() {
        let path = format!("bgp.communities[{i}]");
        match community(text) {
            Some(c) => {
                v.unique(&mut seen, c, path, || {
                    format!("community {text:?} is listed twice")
                });
                communities.push(c);
            }
            None => {
                v.error(
                    path,
                    format!(
                        "bad community {text:?}: expected a standard community A:B with A and \
                         B from 0 to 65535, such as \"65000:100\""
                    ),
                );
                ok = false;
            }
        }
    }

    let next_hop = b.next_hop.as_ref().and_then(|text| {
        // The routers send the VIPs' traffic to it: the same checks as a
        // session's address.
        let Some(addr) = peer_address(v, "bgp.next_hop".into(), "next_hop", text) else {
            ok = false;
            return None;
        };
        // A next hop of the other family could only be applied to no
        // session: say so rather than ignore it.
        if !neighbors.is_empty()
            && !neighbors
                .iter()
                .any(|n| n.address.is_ipv4() == addr.is_ipv4())
        {
            v.error(
                "bgp.next_hop".into(),
                format!(
                    "next_hop {addr} is {} but every neighbor is {}: it would apply to no \
                     session",
                    family(addr),
                    family(neighbors[0].address)
                ),
            );
            ok = false;
        }
        Some(addr)
    });

    let hold_time = seconds(
        v,
        "hold_time",
        b.hold_time.as_ref(),
        DEFAULT_HOLD_TIME,
        MIN_HOLD_TIME..=MAX_HOLD_TIME,
    );
    let connect_retry = seconds(
        v,
        "connect_retry",
        b.connect_retry.as_ref(),
        DEFAULT_CONNECT_RETRY,
        MIN_CONNECT_RETRY..=MAX_CONNECT_RETRY,
    );

    let listener_addresses = listener_addresses(v, &b.listeners, listeners, &neighbors);
    ok &= listener_addresses.is_some();

    let bird_config = absolute_path(v, "bgp.bird.config", &b.bird.config, "the file edge writes");
    let bird_socket = match &b.bird.socket {
        Some(s) => absolute_path(v, "bgp.bird.socket", s, "BIRD's control socket").and_then(|p| {
            if s.len() > MAX_SOCKET_PATH {
                v.error(
                    "bgp.bird.socket".into(),
                    format!(
                        "the socket path is {} bytes long; a unix socket path holds at most \
                         {MAX_SOCKET_PATH}",
                        s.len()
                    ),
                );
                None
            } else {
                Some(p)
            }
        }),
        None => Some(PathBuf::from(DEFAULT_BIRD_SOCKET)),
    };

    // Writing the file replaces whatever is at its path: were it BIRD's
    // socket, edge could never reach BIRD again.
    if let (Some(config), Some(socket)) = (&bird_config, &bird_socket)
        && config == socket
    {
        v.error(
            "bgp.bird.config".into(),
            format!(
                "{} is BIRD's control socket (bgp.bird.socket): writing the file would replace \
                 the socket and cut edge off from BIRD; give another file, such as \
                 {SUGGESTED_BIRD_CONFIG}",
                config.display()
            ),
        );
        ok = false;
    }

    if !ok {
        return None;
    }
    Some(BgpConfig {
        router_id: router_id?,
        local_as: b.local_as,
        neighbors,
        communities,
        next_hop,
        hold_time: hold_time?,
        connect_retry: connect_retry?,
        listener_addresses: listener_addresses?,
        bird_config: bird_config?,
        bird_socket: bird_socket?,
    })
}

/// Checks `bgp.neighbors`: those whose address parsed, and whether all
/// of them are right (each problem is reported).
fn neighbors(v: &mut Validator<'_>, list: &[NeighborSurface]) -> (Vec<Neighbor>, bool) {
    let mut ok = true;
    if list.is_empty() {
        v.error(
            "bgp.neighbors".into(),
            "give at least one neighbor: the router(s) edge's BIRD announces the VIPs to",
        );
        ok = false;
    } else if list.len() > MAX_NEIGHBORS {
        v.error(
            "bgp.neighbors".into(),
            format!("{} neighbors given; at most {MAX_NEIGHBORS}", list.len()),
        );
        ok = false;
    }
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for (i, n) in list.iter().enumerate() {
        let path = format!("bgp.neighbors[{i}]");
        let address = peer_address(v, format!("{path}.address"), "address", &n.address);
        if let Some(a) = address {
            v.unique(&mut seen, a, format!("{path}.address"), || {
                format!("neighbor {a} is listed twice")
            });
        }
        if n.remote_as == 0 {
            v.error(
                format!("{path}.remote_as"),
                "remote_as must be 1 to 4294967295 (AS 0 is reserved)",
            );
            ok = false;
        }
        let source_address = match &n.source_address {
            Some(text) => {
                let spath = format!("{path}.source_address");
                match peer_address(v, spath.clone(), "source_address", text) {
                    Some(s) => {
                        if let Some(a) = address
                            && a.is_ipv4() != s.is_ipv4()
                        {
                            v.error(
                                spath,
                                format!(
                                    "source_address {s} is {} but the neighbor {a} is {}: a \
                                     session has one address family",
                                    family(s),
                                    family(a)
                                ),
                            );
                            ok = false;
                        }
                        Some(s)
                    }
                    None => {
                        ok = false;
                        None
                    }
                }
            }
            None => None,
        };
        match address {
            Some(address) => out.push(Neighbor {
                address,
                remote_as: n.remote_as,
                source_address,
            }),
            None => ok = false,
        }
    }
    // A duplicate was reported through `unique`; make the section fail too.
    if out.len() != seen.len() {
        ok = false;
    }
    (out, ok)
}

/// Parses a session address: a unicast address BIRD can reach without
/// naming an interface.
fn peer_address(v: &mut Validator<'_>, path: String, what: &str, text: &str) -> Option<IpAddr> {
    let Ok(addr) = text.parse::<IpAddr>() else {
        let hint = if text.contains('/') {
            ": give a single address, not a prefix"
        } else if text.contains('%') {
            ": scoped (link-local) addresses are not supported, use a global address"
        } else if text.parse::<SocketAddr>().is_ok() {
            ": give the address without a port (BGP uses 179)"
        } else {
            ""
        };
        v.error(
            path,
            format!("bad {what} {text:?}: expected an IPv4 or IPv6 address{hint}"),
        );
        return None;
    };
    let unusable = match addr {
        IpAddr::V4(a) => {
            a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_link_local()
        }
        // Link-local needs an interface in BIRD, which edge does not write.
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast() || a.is_unicast_link_local(),
    };
    if unusable {
        v.error(
            path,
            format!(
                "{what} {addr} is not a usable unicast address: give one the session can \
                 reach without naming an interface (no 0.0.0.0, ::, multicast or link-local)"
            ),
        );
        return None;
    }
    Some(addr)
}

/// Parses a standard community `A:B`.
fn community(text: &str) -> Option<(u16, u16)> {
    let (a, b) = text.trim().split_once(':')?;
    // `u16::from_str` accepts a leading `+`; a community never has one.
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Checks a duration BIRD takes in whole seconds, within `range`.
fn seconds(
    v: &mut Validator<'_>,
    field: &str,
    value: Option<&Quantity>,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
) -> Option<Duration> {
    let Some(q) = value else {
        return Some(default);
    };
    let path = format!("bgp.{field}");
    let d = v.duration(path.clone(), q)?;
    if d.subsec_nanos() != 0 {
        v.error(
            path,
            format!("{field} {d:?} is not a whole number of seconds (BIRD counts in seconds)"),
        );
        return None;
    }
    if !range.contains(&d) {
        v.error(
            path,
            format!(
                "{field} must be {}s to {}s, not {}s",
                range.start().as_secs(),
                range.end().as_secs(),
                d.as_secs()
            ),
        );
        return None;
    }
    Some(d)
}

/// The bind addresses of the listeners `names` refers to, without
/// duplicates (listeners on one address and several ports are common);
/// each must be of the family of some session in `neighbors` (when any
/// parsed), or it would never be announced.
fn listener_addresses(
    v: &mut Validator<'_>,
    names: &[String],
    listeners: &[surface::Listener],
    neighbors: &[Neighbor],
) -> Option<Vec<IpAddr>> {
    let mut ok = true;
    let mut seen = HashMap::new();
    let mut out: Vec<IpAddr> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let path = format!("bgp.listeners[{i}]");
        v.unique(&mut seen, name.clone(), path.clone(), || {
            format!("listener {name:?} is listed twice")
        });
        let Some(l) = listeners.iter().find(|l| &l.name == name) else {
            let known: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
            v.error(
                path,
                format!(
                    "listener {name:?} is not defined (defined: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
            ok = false;
            continue;
        };
        // A bad address was reported by the listener checks.
        let Ok(bind) = l.address.parse::<SocketAddr>() else {
            ok = false;
            continue;
        };
        let ip = bind.ip();
        if !announceable(ip) {
            v.error(
                path,
                format!(
                    "listener {name:?} binds {bind}, which is not one address BGP can announce: \
                     give the listener a specific unicast address (such as 192.0.2.10:{}), or \
                     leave it out of bgp.listeners",
                    bind.port()
                ),
            );
            ok = false;
            continue;
        }
        if !neighbors.is_empty()
            && !neighbors
                .iter()
                .any(|n| n.address.is_ipv4() == ip.is_ipv4())
        {
            v.error(
                path,
                format!(
                    "listener {name:?} binds {bind}, an {} address, but every neighbor is {}: \
                     it would never be announced (add an {} neighbor)",
                    family(ip),
                    family(neighbors[0].address),
                    family(ip)
                ),
            );
            ok = false;
            continue;
        }
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    if seen.len() != names.len() {
        ok = false;
    }
    ok.then_some(out)
}

/// Whether `ip` is a specific unicast address worth a host route.
fn announceable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_link_local())
        }
        IpAddr::V6(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_unicast_link_local())
        }
    }
}

/// Checks an absolute file path with a file name (`what` says whose).
fn absolute_path(v: &mut Validator<'_>, path: &str, text: &str, what: &str) -> Option<PathBuf> {
    let p = Path::new(text);
    if !p.is_absolute() || p.file_name().is_none() || text.ends_with('/') || text.contains('\0') {
        v.error(
            path.into(),
            format!(
                "{text:?} must be an absolute file path ({what}), such as {}",
                if path.ends_with("socket") {
                    DEFAULT_BIRD_SOCKET
                } else {
                    SUGGESTED_BIRD_CONFIG
                }
            ),
        );
        return None;
    }
    Some(p.to_path_buf())
}

/// Warns about a checked `bgp:` section: a BIRD file under edge's private
/// directory, which BIRD cannot read.
pub(super) fn warnings(r: &mut Report<'_>, bgp: &BgpConfig) {
    // edge keeps SOCKET_DIR 0700 (its control sockets live there): BIRD,
    // which Debian runs as user `bird`, cannot read a file inside it.
    if bgp.bird_config.starts_with(SOCKET_DIR) {
        r.warn(
            "bgp.bird.config".into(),
            format!(
                "{} is under {SOCKET_DIR}, which edge keeps private (mode 0700): BIRD, which \
                 Debian runs as user bird, cannot read it; use a directory BIRD can read, such \
                 as {SUGGESTED_BIRD_CONFIG}",
                bgp.bird_config.display()
            ),
        );
    }
}

/// `IPv4` or `IPv6`, for messages.
fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, tests::errors};

    const HEAD: &str = "\
listeners:
  - name: web
    address: 10.77.9.2:80
    pool: app
  - name: any
    address: 0.0.0.0:8080
    pool: app
pools:
  - name: app
    backends: [{ address: 10.0.0.1:80 }]
";

    #[test]
    fn a_full_section_is_the_model() {
        let yaml = format!(
            "{HEAD}bgp:
  router_id: 10.0.0.11
  local_as: 65001
  neighbors:
    - address: 10.0.0.1
      remote_as: 65000
    - {{ address: 'fd00::1', remote_as: 65000, source_address: 'fd00::11' }}
  communities: [\"65000:100\", \"0:65535\"]
  next_hop: 10.0.0.11
  hold_time: 30s
  connect_retry: 2s
  listeners: [web]
  bird:
    config: /run/edge/bird.conf
"
        );
        let c = parse(&yaml, Path::new("edge.yaml")).unwrap();
        let b = c.bgp.unwrap();
        assert_eq!(
            b,
            BgpConfig {
                router_id: Ipv4Addr::new(10, 0, 0, 11),
                local_as: 65001,
                neighbors: vec![
                    Neighbor {
                        address: "10.0.0.1".parse().unwrap(),
                        remote_as: 65000,
                        source_address: None,
                    },
                    Neighbor {
                        address: "fd00::1".parse().unwrap(),
                        remote_as: 65000,
                        source_address: Some("fd00::11".parse().unwrap()),
                    },
                ],
                communities: vec![(65000, 100), (0, 65535)],
                next_hop: Some("10.0.0.11".parse().unwrap()),
                hold_time: Duration::from_secs(30),
                connect_retry: Duration::from_secs(2),
                listener_addresses: vec!["10.77.9.2".parse().unwrap()],
                bird_config: PathBuf::from("/run/edge/bird.conf"),
                bird_socket: PathBuf::from(DEFAULT_BIRD_SOCKET),
            }
        );
        assert_eq!(b.keepalive(), Duration::from_secs(10));
    }

    #[test]
    fn the_example_file_is_the_model() {
        let text = include_str!("../../../config/scale-out.yaml");
        let c = parse(text, Path::new("scale-out.yaml")).unwrap();
        let b = c.bgp.unwrap();
        assert_eq!(b.router_id, Ipv4Addr::new(10, 0, 0, 11));
        assert_eq!(b.local_as, 65001);
        assert_eq!(
            b.neighbors,
            [Neighbor {
                address: "10.0.0.1".parse().unwrap(),
                remote_as: 65000,
                source_address: Some("10.0.0.11".parse().unwrap()),
            }]
        );
        assert_eq!(b.communities, [(65000, 100)]);
        assert_eq!(
            b.listener_addresses,
            ["10.77.9.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(b.bird_config, PathBuf::from(SUGGESTED_BIRD_CONFIG));
        assert_eq!(b.bird_socket, PathBuf::from(DEFAULT_BIRD_SOCKET));
        assert!(warned(text).is_empty(), "{:?}", warned(text));
    }

    #[test]
    fn defaults() {
        let yaml = format!(
            "{HEAD}bgp:
  router_id: 10.0.0.11
  local_as: 4294967295
  neighbors: [{{ address: 10.0.0.1, remote_as: 65000 }}]
  bird: {{ config: /run/edge/bird.conf, socket: /var/run/bird.ctl }}
"
        );
        let b = parse(&yaml, Path::new("edge.yaml")).unwrap().bgp.unwrap();
        assert_eq!(b.hold_time, DEFAULT_HOLD_TIME);
        assert_eq!(b.keepalive(), Duration::from_secs(3));
        assert_eq!(b.connect_retry, DEFAULT_CONNECT_RETRY);
        assert_eq!(b.local_as, u32::MAX);
        assert!(b.communities.is_empty() && b.listener_addresses.is_empty());
        assert_eq!(b.bird_socket, PathBuf::from("/var/run/bird.ctl"));
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let yaml = format!(
            "{HEAD}bgp:
  router_id: 'fd00::1'
  local_as: 0
  neighbors:
    - {{ address: 10.0.0.1, remote_as: 65000 }}
    - {{ address: 10.0.0.1, remote_as: 0 }}
    - {{ address: 'fe80::1', remote_as: 65000 }}
    - {{ address: 10.0.0.2, remote_as: 65000, source_address: 'fd00::2' }}
  communities: [\"65000:100\", \"65536:1\"]
  next_hop: 'fd00::9'
  hold_time: 2s
  connect_retry: 1500ms
  listeners: [web, any, nope]
  bird: {{ config: bird.conf }}
"
        );
        assert_eq!(
            errors(&yaml),
            [
                "edge.yaml:12:14: bgp.router_id: bad router_id \"fd00::1\": expected an IPv4 address (BGP router ids are 32-bit numbers written as one, even on an IPv6-only host), usually one of this host's",
                "edge.yaml:13:13: bgp.local_as: local_as must be 1 to 4294967295 (AS 0 is reserved)",
                "edge.yaml:16:18: bgp.neighbors[1].address: neighbor 10.0.0.1 is listed twice (first defined at line 15)",
                "edge.yaml:16:39: bgp.neighbors[1].remote_as: remote_as must be 1 to 4294967295 (AS 0 is reserved)",
                "edge.yaml:17:18: bgp.neighbors[2].address: address fe80::1 is not a usable unicast address: give one the session can reach without naming an interface (no 0.0.0.0, ::, multicast or link-local)",
                "edge.yaml:18:62: bgp.neighbors[3].source_address: source_address fd00::2 is IPv6 but the neighbor 10.0.0.2 is IPv4: a session has one address family",
                "edge.yaml:19:30: bgp.communities[1]: bad community \"65536:1\": expected a standard community A:B with A and B from 0 to 65535, such as \"65000:100\"",
                "edge.yaml:20:13: bgp.next_hop: next_hop fd00::9 is IPv6 but every neighbor is IPv4: it would apply to no session",
                "edge.yaml:21:14: bgp.hold_time: hold_time must be 3s to 65535s, not 2s",
                "edge.yaml:22:18: bgp.connect_retry: connect_retry 1.5s is not a whole number of seconds (BIRD counts in seconds)",
                "edge.yaml:23:20: bgp.listeners[1]: listener \"any\" binds 0.0.0.0:8080, which is not one address BGP can announce: give the listener a specific unicast address (such as 192.0.2.10:8080), or leave it out of bgp.listeners",
                "edge.yaml:23:25: bgp.listeners[2]: listener \"nope\" is not defined (defined: web, any)",
                "edge.yaml:24:19: bgp.bird.config: \"bird.conf\" must be an absolute file path (the file edge writes), such as /var/lib/edge/bird.conf",
            ]
        );
    }

    #[test]
    fn neighbors_are_required_and_bounded() {
        let none = format!(
            "{HEAD}bgp:
  router_id: 10.0.0.11
  local_as: 65001
  neighbors: []
  bird: {{ config: /run/edge/bird.conf }}
"
        );
        assert_eq!(
            errors(&none),
            [
                "edge.yaml:14:14: bgp.neighbors: give at least one neighbor: the router(s) edge's BIRD announces the VIPs to"
            ]
        );
        let missing = format!(
            "{HEAD}bgp:
  router_id: 10.0.0.11
  local_as: 65001
  bird: {{ config: /run/edge/bird.conf }}
"
        );
        let e = errors(&missing);
        assert!(e[0].contains("missing field `neighbors`"), "{e:?}");
        let many: String = (1..=17)
            .map(|i| format!("    - {{ address: 10.0.1.{i}, remote_as: 65000 }}\n"))
            .collect();
        let yaml = format!(
            "{HEAD}bgp:
  router_id: 10.0.0.11
  local_as: 65001
  neighbors:
{many}  bird: {{ config: /run/edge/bird.conf }}
"
        );
        assert_eq!(
            errors(&yaml),
            ["edge.yaml:15:5: bgp.neighbors: 17 neighbors given; at most 16"]
        );
    }

    #[test]
    fn a_listener_no_session_carries_is_an_error() {
        let yaml = "\
listeners:
  - name: v6
    address: '[fd00:9::2]:80'
    pool: app
pools:
  - name: app
    backends: [{ address: 10.0.0.1:80 }]
bgp:
  router_id: 10.0.0.11
  local_as: 65001
  neighbors: [{ address: 10.0.0.1, remote_as: 65000 }]
  listeners: [v6]
  bird: { config: /run/edge/bird.conf }
";
        assert_eq!(
            errors(yaml),
            [
                "edge.yaml:12:15: bgp.listeners[0]: listener \"v6\" binds [fd00:9::2]:80, an IPv6 address, but every neighbor is IPv4: it would never be announced (add an IPv6 neighbor)"
            ]
        );
    }

    /// The warnings of the `bgp:` section of `yaml`, which must load.
    fn warned(yaml: &str) -> Vec<String> {
        let b = parse(yaml, Path::new("edge.yaml")).unwrap().bgp.unwrap();
        let locations = crate::config::locate::Locations::index(yaml);
        let mut r = Report::new(&locations);
        warnings(&mut r, &b);
        r.diagnostics
            .iter()
            .map(|d| d.warning_in(Path::new("edge.yaml")).to_string())
            .collect()
    }

    #[test]
    fn a_next_hop_must_be_a_usable_unicast_address() {
        for (next_hop, column, message) in [
            (
                "0.0.0.0",
                13,
                "next_hop 0.0.0.0 is not a usable unicast address",
            ),
            (
                "224.0.0.5",
                13,
                "next_hop 224.0.0.5 is not a usable unicast address",
            ),
            (
                "255.255.255.255",
                13,
                "next_hop 255.255.255.255 is not a usable unicast address",
            ),
            (
                "169.254.0.1",
                13,
                "next_hop 169.254.0.1 is not a usable unicast address",
            ),
            (
                "10.0.0.11/32",
                13,
                "bad next_hop \"10.0.0.11/32\": expected an IPv4 or IPv6 address: give a single \
                 address, not a prefix",
            ),
        ] {
            let yaml = format!(
                "{HEAD}bgp:
  router_id: 10.0.0.11
  local_as: 65001
  neighbors: [{{ address: 10.0.0.1, remote_as: 65000 }}]
  next_hop: '{next_hop}'
  bird: {{ config: {SUGGESTED_BIRD_CONFIG} }}
"
            );
            let e = errors(&yaml);
            assert_eq!(e.len(), 1, "{e:?}");
            let at = format!("edge.yaml:15:{column}: bgp.next_hop: {message}");
            assert!(e[0].starts_with(&at), "{e:?} does not start with {at}");
        }
        let v6 = format!(
            "{HEAD}bgp:
  router_id: 10.0.0.11
  local_as: 65001
  neighbors: [{{ address: 'fd00::1', remote_as: 65000 }}]
  next_hop: 'fe80::1'
  bird: {{ config: {SUGGESTED_BIRD_CONFIG} }}
"
        );
        assert_eq!(
            errors(&v6),
            [
                "edge.yaml:15:13: bgp.next_hop: next_hop fe80::1 is not a usable unicast address: give one the session can reach without naming an interface (no 0.0.0.0, ::, multicast or link-local)"
            ]
        );
    }

    #[test]
    fn the_file_must_not_be_birds_socket() {
        let given = format!(
            "{HEAD}bgp:
  router_id: 10.0.0.11
  local_as: 65001
  neighbors: [{{ address: 10.0.0.1, remote_as: 65000 }}]
  bird:
    config: /run/bird/bird.ctl
    socket: /run/bird/bird.ctl
"
        );
        let message = "bgp.bird.config: /run/bird/bird.ctl is BIRD's control socket (bgp.bird.socket): writing the file would replace the socket and cut edge off from BIRD; give another file, such as /var/lib/edge/bird.conf";
        assert_eq!(errors(&given), [format!("edge.yaml:16:13: {message}")]);
        // The default socket counts too.
        let default = format!(
            "{HEAD}bgp:
  router_id: 10.0.0.11
  local_as: 65001
  neighbors: [{{ address: 10.0.0.1, remote_as: 65000 }}]
  bird: {{ config: {DEFAULT_BIRD_SOCKET} }}
"
        );
        assert_eq!(errors(&default), [format!("edge.yaml:15:19: {message}")]);
    }

    #[test]
    fn a_file_under_edges_private_directory_is_a_warning() {
        let yaml = format!(
            "{HEAD}bgp:
  router_id: 10.0.0.11
  local_as: 65001
  neighbors: [{{ address: 10.0.0.1, remote_as: 65000 }}]
  bird:
    config: /run/edge/bird.conf
"
        );
        assert_eq!(
            warned(&yaml),
            [
                "edge.yaml:16:13: warning: bgp.bird.config: /run/edge/bird.conf is under /run/edge, which edge keeps private (mode 0700): BIRD, which Debian runs as user bird, cannot read it; use a directory BIRD can read, such as /var/lib/edge/bird.conf"
            ]
        );
        // A warning: the file loads.
        assert!(parse(&yaml, Path::new("edge.yaml")).is_ok());
        // A path that only starts with the same letters is elsewhere.
        let elsewhere = yaml.replace("/run/edge/bird.conf", "/run/edge-bird/bird.conf");
        assert!(warned(&elsewhere).is_empty());
    }

    #[test]
    fn communities_parse_strictly() {
        assert_eq!(community("65000:100"), Some((65000, 100)));
        assert_eq!(community("0:0"), Some((0, 0)));
        assert_eq!(community("+1:2"), None);
        assert_eq!(community("1:"), None);
        assert_eq!(community("1:2:3"), None);
        assert_eq!(community("70000:1"), None);
    }
}
