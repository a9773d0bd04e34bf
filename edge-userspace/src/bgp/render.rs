//! The BIRD 2 configuration edge writes: a pure function of the `bgp:`
//! section and the addresses to announce.
//!
//! The same input gives the same bytes (routes sorted, no duplicates), so
//! the announcer can compare texts to skip reconfigurations that would
//! change nothing. Every value written is a number or an address edge
//! parsed: nothing from the configuration reaches the file as free text.

use crate::config::BgpConfig;
use std::{fmt::Write as _, net::IpAddr};

/// The name of the static protocol holding the IPv4 routes.
pub const STATIC_V4: &str = "edge_vips4";
/// The name of the static protocol holding the IPv6 routes.
pub const STATIC_V6: &str = "edge_vips6";
/// What the name of each neighbour's BGP protocol starts with; the
/// neighbour's address follows (see [`peer_protocol`]).
pub const PEER_PROTOCOL_PREFIX: &str = "edge_peer_";

/// The name of the BGP protocol of the neighbour at `addr`:
/// `edge_peer_10_0_0_1`, `edge_peer_2001_db8__1`.
///
/// Named by address, not by position: BIRD restarts a session whose
/// protocol is renamed, so removing or reordering neighbours must leave
/// the others' names alone. BIRD names are letters, digits and `_`: the
/// `.` and `:` of the address become `_`. The text is the canonical
/// (RFC 5952) form, so each address has one name; an IPv4-mapped IPv6
/// address is written in hex (`::ffff:a00:1`), as its dotted form would
/// give the name of another address (`::ffff:10:0:0:1`). The longest name
/// (an IPv6 address of 39 characters) is 49 characters, under BIRD's
/// limit of 64.
pub fn peer_protocol(addr: IpAddr) -> String {
    let text = match addr {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(_) => {
                let s = a.segments();
                format!("::ffff:{:x}:{:x}", s[6], s[7])
            }
            None => a.to_string(),
        },
        IpAddr::V4(a) => a.to_string(),
    };
    let mut name = String::with_capacity(PEER_PROTOCOL_PREFIX.len() + text.len());
    name.push_str(PEER_PROTOCOL_PREFIX);
    name.extend(
        text.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    name
}

/// The host prefix of `addr`: `10.77.9.1/32`, `fd00::1/128`.
pub fn prefix(addr: &IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// The addresses of `wanted` some session would carry (a neighbour of
/// their family exists), sorted and without duplicates: what the file
/// [`render`] writes for them announces.
pub fn announceable(cfg: &BgpConfig, wanted: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = wanted.iter().copied().filter(|a| cfg.carries(*a)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The complete BIRD 2 configuration announcing `announced` (host routes)
/// to the neighbours of `cfg`. Addresses of a family no neighbour has are
/// left out (see [`announceable`]).
pub fn render(cfg: &BgpConfig, announced: &[IpAddr]) -> String {
    let routes = announceable(cfg, announced);
    let has_v4 = cfg.neighbors.iter().any(|n| n.address.is_ipv4());
    let has_v6 = cfg.neighbors.iter().any(|n| n.address.is_ipv6());
    let mut out = String::new();
    out.push_str("# Written by edge: rewritten on every change, do not edit.\n");
    // `write!` into a String cannot fail; the results are ignored.
    let _ = writeln!(out, "router id {};", cfg.router_id);
    out.push('\n');
    // BIRD needs the device protocol to know the interfaces the sessions
    // and next hops are on.
    out.push_str("protocol device edge_device {\n  scan time 10;\n}\n");
    for (present, name, channel, v4) in [
        (has_v4, STATIC_V4, "ipv4", true),
        (has_v6, STATIC_V6, "ipv6", false),
    ] {
        if !present {
            continue;
        }
        out.push('\n');
        let _ = writeln!(out, "protocol static {name} {{");
        let _ = writeln!(out, "  {channel};");
        // Blackhole: the routes exist only to be exported. This file
        // configures no kernel protocol, so BIRD installs none of them;
        // and were an including bird.conf to export them to the kernel,
        // the host's own addresses are delivered by the local table first.
        for r in routes.iter().filter(|r| r.is_ipv4() == v4) {
            let _ = writeln!(out, "  route {} blackhole;", prefix(r));
        }
        out.push_str("}\n");
    }
    let hold = cfg.hold_time.as_secs();
    let keepalive = cfg.keepalive().as_secs();
    let retry = cfg.connect_retry.as_secs();
    for n in &cfg.neighbors {
        let (channel, source) = if n.address.is_ipv4() {
            ("ipv4", STATIC_V4)
        } else {
            ("ipv6", STATIC_V6)
        };
        out.push('\n');
        let _ = writeln!(out, "protocol bgp {} {{", peer_protocol(n.address));
        match n.source_address {
            Some(local) => {
                let _ = writeln!(out, "  local {local} as {};", cfg.local_as);
            }
            None => {
                let _ = writeln!(out, "  local as {};", cfg.local_as);
            }
        }
        let _ = writeln!(out, "  neighbor {} as {};", n.address, n.remote_as);
        let _ = writeln!(out, "  hold time {hold};");
        let _ = writeln!(out, "  keepalive time {keepalive};");
        let _ = writeln!(out, "  connect retry time {retry};");
        // A session that fails comes back quickly: the VIPs of a healthy
        // host must not stay withdrawn for BIRD's default minute.
        out.push_str("  connect delay time 1;\n");
        out.push_str("  error wait time 1, 30;\n");
        let _ = writeln!(out, "  {channel} {{");
        out.push_str("    import none;\n");
        out.push_str("    export filter {\n");
        let _ = writeln!(out, "      if proto = \"{source}\" then {{");
        for (a, b) in &cfg.communities {
            let _ = writeln!(out, "        bgp_community.add(({a},{b}));");
        }
        out.push_str("        accept;\n");
        out.push_str("      }\n");
        out.push_str("      reject;\n");
        out.push_str("    };\n");
        if let Some(nh) = cfg
            .next_hop
            .filter(|nh| nh.is_ipv4() == n.address.is_ipv4())
        {
            let _ = writeln!(out, "    next hop address {nh};");
        }
        out.push_str("  };\n");
        out.push_str("}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::bgp::Neighbor;
    use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

    fn cfg() -> BgpConfig {
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
                    remote_as: 65002,
                    source_address: Some("fd00::11".parse().unwrap()),
                },
            ],
            communities: vec![(65000, 100), (65000, 200)],
            next_hop: Some("10.0.0.11".parse().unwrap()),
            hold_time: Duration::from_secs(9),
            connect_retry: Duration::from_secs(5),
            listener_addresses: vec![],
            bird_config: PathBuf::from("/run/edge/bird.conf"),
            bird_socket: PathBuf::from("/run/bird/bird.ctl"),
        }
    }

    const EXPECTED: &str = r#"# Written by edge: rewritten on every change, do not edit.
router id 10.0.0.11;

protocol device edge_device {
  scan time 10;
}

protocol static edge_vips4 {
  ipv4;
  route 10.77.9.1/32 blackhole;
  route 10.77.9.2/32 blackhole;
}

protocol static edge_vips6 {
  ipv6;
  route fd00:77::1/128 blackhole;
}

protocol bgp edge_peer_10_0_0_1 {
  local as 65001;
  neighbor 10.0.0.1 as 65000;
  hold time 9;
  keepalive time 3;
  connect retry time 5;
  connect delay time 1;
  error wait time 1, 30;
  ipv4 {
    import none;
    export filter {
      if proto = "edge_vips4" then {
        bgp_community.add((65000,100));
        bgp_community.add((65000,200));
        accept;
      }
      reject;
    };
    next hop address 10.0.0.11;
  };
}

protocol bgp edge_peer_fd00__1 {
  local fd00::11 as 65001;
  neighbor fd00::1 as 65002;
  hold time 9;
  keepalive time 3;
  connect retry time 5;
  connect delay time 1;
  error wait time 1, 30;
  ipv6 {
    import none;
    export filter {
      if proto = "edge_vips6" then {
        bgp_community.add((65000,100));
        bgp_community.add((65000,200));
        accept;
      }
      reject;
    };
  };
}
"#;

    #[test]
    fn the_file_for_a_small_config() {
        let routes: Vec<IpAddr> = ["10.77.9.2", "fd00:77::1", "10.77.9.1", "10.77.9.2"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(render(&cfg(), &routes), EXPECTED);
    }

    #[test]
    fn the_same_set_in_any_order_gives_the_same_bytes() {
        let a: Vec<IpAddr> = vec!["10.77.9.1".parse().unwrap(), "10.77.9.2".parse().unwrap()];
        let b: Vec<IpAddr> = vec![a[1], a[0], a[1]];
        assert_eq!(render(&cfg(), &a), render(&cfg(), &b));
    }

    #[test]
    fn an_ipv4_only_config_has_no_ipv6_protocol_and_drops_ipv6_routes() {
        let mut c = cfg();
        c.neighbors.truncate(1);
        c.communities.clear();
        c.next_hop = None;
        let routes: Vec<IpAddr> = vec!["fd00:77::1".parse().unwrap()];
        let text = render(&c, &routes);
        assert!(!text.contains("edge_vips6"), "{text}");
        assert!(!text.contains("fd00:77::1"), "{text}");
        assert!(
            text.contains("protocol static edge_vips4 {\n  ipv4;\n}\n"),
            "{text}"
        );
        assert!(
            text.contains("      if proto = \"edge_vips4\" then {\n        accept;\n      }\n"),
            "{text}"
        );
        assert!(!text.contains("next hop"), "{text}");
        assert_eq!(announceable(&c, &routes), Vec::<IpAddr>::new());
    }

    #[test]
    fn removing_or_reordering_neighbours_keeps_the_others_names() {
        let mut c = cfg();
        let both = render(&c, &[]);
        c.neighbors.reverse();
        let reversed = render(&c, &[]);
        c.neighbors.retain(|n| n.address.is_ipv6());
        let one = render(&c, &[]);
        for text in [&both, &reversed, &one] {
            assert!(
                text.contains("protocol bgp edge_peer_fd00__1 {\n"),
                "{text}"
            );
        }
        assert!(
            reversed.contains("protocol bgp edge_peer_10_0_0_1 {\n"),
            "{reversed}"
        );
        assert!(!one.contains("edge_peer_10_0_0_1"), "{one}");
    }

    #[test]
    fn peer_protocol_names() {
        let name = |a: &str| peer_protocol(a.parse().unwrap());
        assert_eq!(name("10.0.0.1"), "edge_peer_10_0_0_1");
        assert_eq!(name("2001:db8::1"), "edge_peer_2001_db8__1");
        assert_eq!(
            name("2001:db8:1:2:3:4:5:6"),
            "edge_peer_2001_db8_1_2_3_4_5_6"
        );
        // Two addresses whose dotted and hex forms would share a name.
        assert_eq!(name("::ffff:10.0.0.1"), "edge_peer___ffff_a00_1");
        assert_eq!(name("::ffff:10:0:0:1"), "edge_peer___ffff_10_0_0_1");
        let longest = name("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(longest.len(), 49);
        assert!(
            longest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        );
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix(&"10.77.9.1".parse().unwrap()), "10.77.9.1/32");
        assert_eq!(prefix(&"fd00::1".parse().unwrap()), "fd00::1/128");
    }
}
