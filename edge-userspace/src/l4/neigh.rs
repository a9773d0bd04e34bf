//! Next-hop MACs and egress interfaces for reals, from the kernel's routing
//! and neighbour tables (through iproute2, which every host edge runs on has).
//!
//! A real on the local segment whose MAC the kernel has not learned yet is
//! resolved by sending it one UDP datagram (to the discard port), which
//! makes the kernel ARP / solicit for it; the neighbour table is then
//! polled until the deadline.

use anyhow::{Context, Result, bail};
use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

/// How a real is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Egress interface name.
    pub dev: String,
    /// Its ifindex.
    pub ifindex: u32,
    /// The next hop's MAC.
    pub mac: [u8; 6],
}

/// Where `addr` is routed: `(dev, gateway)`, parsed from `ip route get`.
pub fn parse_route_get(text: &str) -> Option<(String, Option<IpAddr>)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let after = |key: &str| {
        words
            .windows(2)
            .find(|w| w[0] == key)
            .map(|w| w[1].to_string())
    };
    let dev = after("dev")?;
    let via = after("via").and_then(|v| v.parse().ok());
    Some((dev, via))
}

/// The MAC in an `ip neigh show` line, unless the entry is unusable.
pub fn parse_neigh(text: &str) -> Option<[u8; 6]> {
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.iter().any(|w| *w == "FAILED" || *w == "INCOMPLETE") {
            continue;
        }
        if let Some(w) = words.windows(2).find(|w| w[0] == "lladdr") {
            return crate::config::l4::parse_mac(w[1]);
        }
    }
    None
}

fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An interface's ifindex and MAC, from sysfs.
pub fn interface(dev: &str) -> Result<(u32, [u8; 6])> {
    let base = std::path::Path::new("/sys/class/net").join(dev);
    let ifindex = std::fs::read_to_string(base.join("ifindex"))
        .with_context(|| format!("interface {dev}: no ifindex"))?
        .trim()
        .parse()
        .with_context(|| format!("interface {dev}: bad ifindex"))?;
    let text = std::fs::read_to_string(base.join("address"))
        .with_context(|| format!("interface {dev}: no MAC address"))?;
    let mac = crate::config::l4::parse_mac(text.trim())
        .with_context(|| format!("interface {dev}: bad MAC address {text:?}"))?;
    Ok((ifindex, mac))
}

/// An interface's MTU (layer 3 bytes), from sysfs.
pub fn mtu(dev: &str) -> Result<u32> {
    let path = std::path::Path::new("/sys/class/net").join(dev).join("mtu");
    std::fs::read_to_string(&path)
        .with_context(|| format!("interface {dev}: no MTU ({})", path.display()))?
        .trim()
        .parse()
        .with_context(|| format!("interface {dev}: bad MTU in {}", path.display()))
}

/// Resolves how to reach `addr`: its egress interface and the next hop's
/// MAC (`fixed_mac` if given), waiting at most `deadline` for the kernel to
/// resolve the neighbour.
pub fn resolve(addr: IpAddr, fixed_mac: Option<[u8; 6]>, deadline: Duration) -> Result<Route> {
    let text = ip(&["-o", "route", "get", &addr.to_string()])?;
    let (dev, via) =
        parse_route_get(&text).with_context(|| format!("no route to backend {addr}: {text}"))?;
    let (ifindex, _) = interface(&dev)?;
    if let Some(mac) = fixed_mac {
        return Ok(Route { dev, ifindex, mac });
    }
    let hop = via.unwrap_or(addr);
    let hop_s = hop.to_string();
    let until = Instant::now() + deadline;
    let mut poked = false;
    loop {
        let text = ip(&["neigh", "show", "to", &hop_s, "dev", &dev])?;
        if let Some(mac) = parse_neigh(&text) {
            return Ok(Route { dev, ifindex, mac });
        }
        if !poked {
            poke(hop);
            poked = true;
        }
        if Instant::now() >= until {
            bail!(
                "the next hop {hop} of backend {addr} (on {dev}) has no MAC in the neighbour \
                 table after {deadline:?}: is it up? (or set l4.forwarding.next_hop_mac)"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes the kernel resolve `hop` by sending it one empty datagram.
fn poke(hop: IpAddr) {
    let bind: SocketAddr = if hop.is_ipv4() {
        "0.0.0.0:0"
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    if let Ok(sock) = UdpSocket::bind(bind) {
        // Port 9 is discard; the datagram's only job is the ARP / ND it
        // triggers, so a send error changes nothing.
        let _ = sock.send_to(&[], SocketAddr::new(hop, 9));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_get_lines() {
        assert_eq!(
            parse_route_get("10.77.2.11 dev br0 src 10.77.2.1 uid 0 \\    cache "),
            Some(("br0".into(), None))
        );
        assert_eq!(
            parse_route_get("192.0.2.9 via 10.0.0.1 dev eth0 src 10.0.0.5 uid 0"),
            Some(("eth0".into(), Some("10.0.0.1".parse().unwrap())))
        );
        assert_eq!(parse_route_get("unreachable"), None);
    }

    #[test]
    fn neigh_lines() {
        assert_eq!(
            parse_neigh("10.77.2.11 lladdr 02:00:00:00:02:0b REACHABLE\n"),
            Some([2, 0, 0, 0, 2, 0x0b])
        );
        assert_eq!(parse_neigh("10.77.2.11  INCOMPLETE\n"), None);
        assert_eq!(
            parse_neigh("10.77.2.11 lladdr 02:00:00:00:02:0b FAILED\n"),
            None
        );
        assert_eq!(parse_neigh(""), None);
    }
}
