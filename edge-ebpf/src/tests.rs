//! Host tests of the parsers and the decision, over byte slices.

use crate::{
    classify::{Action, Tables, classify},
    parse::{self, Fragment, IpAddrs, Layer, ParseError},
};
use edge_common::{PacketClass, PortKey, VipKey, VipMeta};
use edge_tests::packets::{Builder, L4, arp};

const C4: [u8; 4] = [192, 0, 2, 1];
const H4: [u8; 4] = [10, 0, 0, 1];
const C6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const H6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// Tables for tests: 8080/tcp is L7, C4 is denied when `deny` is set.
#[derive(Default)]
struct T {
    deny: bool,
    vip: Option<VipKey>,
}

impl Tables for T {
    fn denied(&self, addrs: &IpAddrs) -> bool {
        self.deny && matches!(addrs, IpAddrs::V4 { src, .. } if *src == C4)
    }
    fn vip(&self, key: &VipKey) -> Option<VipMeta> {
        (self.vip.as_ref() == Some(key)).then(VipMeta::default)
    }
    fn is_l7_port(&self, key: &PortKey) -> bool {
        *key == PortKey::new(8080, edge_common::IPPROTO_TCP)
    }
}

fn class(p: &[u8]) -> PacketClass {
    classify(p, &T::default()).class
}

#[test]
fn ethernet_shorter_than_its_header_is_malformed() {
    for len in 0..14 {
        let v = classify(&arp()[..len], &T::default());
        assert_eq!(v.class, PacketClass::Malformed, "len {len}");
        assert_eq!(v.error, Some(ParseError::Truncated(Layer::Ethernet)));
        assert_eq!(v.action, Action::Pass);
    }
}

#[test]
fn every_prefix_of_a_valid_packet_is_handled() {
    // No prefix may panic or be read past its end; each shorter than the
    // full TCP header is malformed.
    let full = Builder::new().vlan(3).v4(C4, H4, L4::Tcp(1, 8080));
    let tcp_end = 18 + 20 + 20;
    for len in 0..full.len() {
        let mut p = full[..len].to_vec();
        if len >= 18 + 20 {
            let total = (len - 18) as u16;
            p[18 + 2..18 + 4].copy_from_slice(&total.to_be_bytes());
        }
        let v = classify(&p[..], &T::default());
        if len < tcp_end {
            assert_eq!(v.class, PacketClass::Malformed, "len {len}");
        } else {
            assert_eq!(v.class, PacketClass::L7, "len {len}");
        }
    }
}

#[test]
fn vlan_tag_is_skipped() {
    let p = Builder::new().vlan(100).v4(C4, H4, L4::Tcp(1, 8080));
    let eth = parse::ethernet(&p[..]).unwrap();
    assert_eq!(eth.vlan, Some(100));
    assert_eq!(eth.l3_offset, 18);
    assert_eq!(class(&p), PacketClass::L7);
}

#[test]
fn ipv4_fields() {
    let p = Builder::new()
        .ipv4_options(&[1, 1, 1, 1])
        .v4(C4, H4, L4::Udp(53, 5353));
    let ip = parse::ipv4(&p[..], 14).unwrap();
    assert_eq!(ip.addrs, IpAddrs::V4 { src: C4, dst: H4 });
    assert_eq!(ip.proto, edge_common::IPPROTO_UDP);
    assert_eq!(ip.l4_offset, 14 + 24);
    assert_eq!(ip.fragment, Fragment::No);
    let ports = parse::ports(&p[..], &ip).unwrap().unwrap();
    assert_eq!((ports.src, ports.dst), (53, 5353));
}

#[test]
fn bad_ipv4_headers_are_invalid() {
    let good = Builder::new().v4(C4, H4, L4::Tcp(1, 8080));
    let mut version = good.clone();
    version[14] = 0x55;
    let mut ihl = good.clone();
    ihl[14] = 0x44;
    let mut total = good.clone();
    total[16..18].copy_from_slice(&10u16.to_be_bytes());
    for p in [version, ihl, total] {
        assert_eq!(
            classify(&p[..], &T::default()).error,
            Some(ParseError::Invalid(Layer::Ipv4))
        );
    }
}

#[test]
fn bad_tcp_data_offset_is_invalid() {
    let mut p = Builder::new().v4(C4, H4, L4::Tcp(1, 8080));
    p[14 + 20 + 12] = 0x40;
    assert_eq!(
        classify(&p[..], &T::default()).error,
        Some(ParseError::Invalid(Layer::Tcp))
    );
}

#[test]
fn ipv4_fragments() {
    let mut first = Builder::new().v4(C4, H4, L4::Tcp(1, 8080));
    first[20] = 0x20; // MF, offset 0
    assert_eq!(
        parse::ipv4(&first[..], 14).unwrap().fragment,
        Fragment::First
    );
    assert_eq!(class(&first), PacketClass::L7);
    let mut later = first.clone();
    later[21] = 0x10; // offset 16 * 8
    assert_eq!(
        parse::ipv4(&later[..], 14).unwrap().fragment,
        Fragment::Later
    );
    // No transport header in a later fragment: not attributable to a port.
    assert_eq!(class(&later), PacketClass::Other);
}

/// Inserts an IPv6 extension header (`ext`, whose first byte is patched to
/// the original next header) right after the fixed header.
fn with_ext(p: &[u8], ext_type: u8, ext: &[u8]) -> Vec<u8> {
    let mut out = p[..14 + 40].to_vec();
    let next = out[14 + 6];
    out[14 + 6] = ext_type;
    let mut ext = ext.to_vec();
    ext[0] = next;
    out.extend_from_slice(&ext);
    out.extend_from_slice(&p[14 + 40..]);
    let payload = (out.len() - 14 - 40) as u16;
    out[14 + 4..14 + 6].copy_from_slice(&payload.to_be_bytes());
    out
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let p = Builder::new().v6(C6, H6, L4::Tcp(1, 8080));
    let hop = with_ext(&p, 0, &[0, 0, 1, 4, 0, 0, 0, 0]);
    let ip = parse::ipv6(&hop[..], 14).unwrap();
    assert_eq!(ip.proto, edge_common::IPPROTO_TCP);
    assert_eq!(ip.l4_offset, 14 + 48);
    assert_eq!(class(&hop), PacketClass::L7);
    let two = with_ext(&hop, 60, &[0, 0, 1, 4, 0, 0, 0, 0]);
    assert_eq!(class(&two), PacketClass::L7);
}

#[test]
fn ipv6_fragments() {
    let p = Builder::new().v6(C6, H6, L4::Tcp(1, 8080));
    let first = with_ext(&p, 44, &[0, 0, 0, 1, 0, 0, 0, 9]);
    let ip = parse::ipv6(&first[..], 14).unwrap();
    assert_eq!(ip.fragment, Fragment::First);
    assert_eq!(class(&first), PacketClass::L7);
    let later = with_ext(&p, 44, &[0, 0, 0, 0x08, 0, 0, 0, 9]);
    assert_eq!(
        parse::ipv6(&later[..], 14).unwrap().fragment,
        Fragment::Later
    );
    assert_eq!(class(&later), PacketClass::Other);
}

#[test]
fn truncated_extension_header_is_malformed() {
    let p = Builder::new().v6(C6, H6, L4::Tcp(1, 8080));
    let hop = with_ext(&p, 0, &[0, 0, 1, 4, 0, 0, 0, 0]);
    let mut cut = hop[..14 + 40 + 1].to_vec();
    cut[14 + 4..14 + 6].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(
        classify(&cut[..], &T::default()).error,
        Some(ParseError::Truncated(Layer::Ipv6))
    );
}

#[test]
fn deny_comes_before_the_transport_header() {
    let p = Builder::new().v4(C4, H4, L4::Tcp(1, 8080));
    let t = T {
        deny: true,
        ..T::default()
    };
    let v = classify(&p[..], &t);
    assert_eq!((v.class, v.action), (PacketClass::Denied, Action::Drop));
}

/// Tables where C6 is banned.
struct Banned;

impl Tables for Banned {
    fn denied(&self, _: &IpAddrs) -> bool {
        false
    }
    fn banned(&self, addrs: &IpAddrs) -> bool {
        matches!(addrs, IpAddrs::V6 { src, .. } if *src == C6)
    }
    fn vip(&self, _: &VipKey) -> Option<VipMeta> {
        None
    }
    fn is_l7_port(&self, key: &PortKey) -> bool {
        *key == PortKey::new(8080, edge_common::IPPROTO_TCP)
    }
}

#[test]
fn a_banned_source_loses_the_listeners_and_nothing_else() {
    let p = Builder::new().v6(C6, H6, L4::Tcp(1, 8080));
    let v = classify(&p[..], &Banned);
    assert_eq!((v.class, v.action), (PacketClass::Banned, Action::Drop));
    // Another source to the listener, and the banned one elsewhere (a
    // reply to a connection of edge's own, SSH): passed.
    let p = Builder::new().v6(H6, C6, L4::Tcp(1, 8080));
    assert_eq!(classify(&p[..], &Banned).class, PacketClass::L7);
    let p = Builder::new().v6(C6, H6, L4::Tcp(6379, 40000));
    assert_eq!(classify(&p[..], &Banned).action, Action::Pass);
}

#[test]
fn vip_wins_over_l7_port() {
    let p = Builder::new().v4(C4, H4, L4::Tcp(1, 8080));
    let t = T {
        vip: Some(VipKey::v4(H4, 8080, edge_common::IPPROTO_TCP)),
        ..T::default()
    };
    assert_eq!(classify(&p[..], &t).class, PacketClass::Vip);
}

#[test]
fn two_vlan_tags_are_parsed_and_a_third_is_unsupported() {
    let p = Builder::new().v4(C4, H4, L4::Tcp(1, 8080));
    let qinq = edge_tests::l4packets::with_tags(&p, &[(0x88a8, 100), (0x8100, 42)]);
    let eth = parse::ethernet(&qinq[..]).unwrap();
    assert_eq!(
        (eth.ether_type, eth.vlan, eth.l3_offset),
        (0x0800, Some(42), 22)
    );
    assert_eq!(class(&qinq), PacketClass::L7);
    // The deny list sees through both tags.
    let t = T {
        deny: true,
        ..T::default()
    };
    let v = classify(&qinq[..], &t);
    assert_eq!((v.class, v.action), (PacketClass::Denied, Action::Drop));
    // A third tag: the source is unknown, so nothing is passed unchecked.
    let three = edge_tests::l4packets::with_tags(&p, &[(0x88a8, 1), (0x8100, 2), (0x8100, 3)]);
    let v = classify(&three[..], &T::default());
    assert_eq!((v.class, v.action), (PacketClass::Unparsed, Action::Drop));
    assert_eq!(v.error, Some(ParseError::Unsupported(Layer::Ethernet)));
    // A second tag cut short is truncated, as the first one is.
    assert_eq!(
        parse::ethernet(&qinq[..20]),
        Err(ParseError::Truncated(Layer::Ethernet))
    );
}

#[test]
fn ipv6_chains_longer_than_the_walk_have_an_unknown_fragment_state() {
    let p = Builder::new().v6(C6, H6, L4::Tcp(1, 8080));
    let four = edge_tests::l4packets::with_v6_ext(&p, 4, None);
    let ip = parse::ipv6(&four[..], 14).unwrap();
    assert_eq!(
        (ip.proto, ip.fragment),
        (edge_common::IPPROTO_TCP, Fragment::No)
    );
    assert_eq!(class(&four), PacketClass::L7);
    let five = edge_tests::l4packets::with_v6_ext(&p, 4, Some((0, false)));
    let ip = parse::ipv6(&five[..], 14).unwrap();
    assert_eq!(ip.fragment, Fragment::Unknown);
    assert_eq!(parse::ports(&five[..], &ip), Ok(None));
    // Not to a VIP: passed, to the kernel, which owns it.
    assert_eq!(class(&five), PacketClass::Other);
    // An authentication header counts in 4-byte units.
    let mut ah = with_ext(&p, 51, &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    ah[14 + 40 + 1] = 1;
    let ip = parse::ipv6(&ah[..], 14).unwrap();
    assert_eq!(
        (ip.proto, ip.l4_offset),
        (edge_common::IPPROTO_TCP, 14 + 40 + 12)
    );
}

#[test]
fn ip_len_is_the_header_length_field_not_the_frame() {
    let mut p = Builder::new().v4(C4, H4, L4::Tcp(1, 8080));
    let len = p.len() - 14;
    p.extend_from_slice(&[0; 6]); // Ethernet padding
    assert_eq!(parse::ipv4(&p[..], 14).unwrap().len as usize, len);
    let p6 = Builder::new().v6(C6, H6, L4::Tcp(1, 8080));
    assert_eq!(
        parse::ipv6(&p6[..], 14).unwrap().len as usize,
        p6.len() - 14
    );
}

#[test]
fn sum16_is_the_rfc_1071_sum() {
    // RFC 1071's example bytes, then padded to a multiple of four.
    let b = [0x00u8, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(crate::PacketBuf::sum16::<8>(&b[..], 0), Some(0xddf2));
    assert_eq!(crate::PacketBuf::sum16::<8>(&b[..], 1), None);
}

/// Tables whose deny list, ban list, VIP and L7 port all match C4 / H4:8080,
/// behind the given pre-filter bits; each lookup made is counted.
struct Filtered {
    source: u64,
    port: u64,
    lookups: std::cell::Cell<u32>,
}

impl Filtered {
    fn new(source: u64, port: u64) -> Self {
        Self {
            source,
            port,
            lookups: std::cell::Cell::new(0),
        }
    }

    fn looked_up(&self) -> bool {
        self.lookups.set(self.lookups.get() + 1);
        true
    }
}

impl Tables for Filtered {
    fn source_filter(&self, _: &IpAddrs) -> u64 {
        self.source
    }
    fn port_filter(&self, port: u16) -> u64 {
        assert_eq!(port, 8080, "the filter is asked about the destination port");
        self.port
    }
    fn denied(&self, _: &IpAddrs) -> bool {
        self.looked_up()
    }
    fn banned(&self, _: &IpAddrs) -> bool {
        self.looked_up()
    }
    fn vip(&self, _: &VipKey) -> Option<VipMeta> {
        self.looked_up().then(VipMeta::default)
    }
    fn is_l7_port(&self, _: &PortKey) -> bool {
        self.looked_up()
    }
}

#[test]
fn clear_filter_bits_skip_their_lookups_and_set_ones_leave_the_decision_to_them() {
    use edge_common::filter::{
        PORT_ALL, PORT_L7_TCP, PORT_VIP_TCP, PORT_VIP_UDP, SOURCE_ALL, SOURCE_BAN, SOURCE_DENY,
    };
    let tcp = Builder::new().v4(C4, H4, L4::Tcp(1, 8080));
    let udp = Builder::new().v4(C4, H4, L4::Udp(1, 8080));
    let run = |p: &[u8], source, port| {
        let t = Filtered::new(source, port);
        let v = classify(p, &t);
        (v.class, t.lookups.get())
    };
    // Nothing could match: no lookup at all.
    assert_eq!(run(&tcp[..], 0, 0), (PacketClass::Other, 0));
    // Every bit set: the lookups decide, as without a filter.
    assert_eq!(
        run(&tcp[..], SOURCE_ALL, PORT_ALL),
        (PacketClass::Denied, 1)
    );
    // Only the bit of each check that could match.
    assert_eq!(run(&tcp[..], SOURCE_DENY, 0), (PacketClass::Denied, 1));
    assert_eq!(run(&tcp[..], SOURCE_BAN, 0), (PacketClass::Other, 0));
    assert_eq!(run(&tcp[..], 0, PORT_VIP_TCP), (PacketClass::Vip, 1));
    assert_eq!(
        run(&tcp[..], SOURCE_BAN, PORT_VIP_TCP),
        (PacketClass::Banned, 2)
    );
    assert_eq!(run(&tcp[..], 0, PORT_L7_TCP), (PacketClass::L7, 1));
    assert_eq!(
        run(&tcp[..], SOURCE_BAN, PORT_L7_TCP),
        (PacketClass::Banned, 2)
    );
    // Each protocol has its own VIP bit, and L7 listeners are TCP.
    assert_eq!(run(&tcp[..], 0, PORT_VIP_UDP), (PacketClass::Other, 0));
    assert_eq!(
        run(&udp[..], 0, PORT_VIP_TCP | PORT_L7_TCP),
        (PacketClass::Other, 0)
    );
    assert_eq!(run(&udp[..], 0, PORT_VIP_UDP), (PacketClass::Vip, 1));
}

#[test]
fn tcp_flags_come_with_the_ports() {
    let syn = Builder::new().v4(C4, H4, L4::Tcp(1, 8080));
    let ip = parse::ipv4(&syn[..], 14).unwrap();
    let ports = parse::ports(&syn[..], &ip).unwrap().unwrap();
    assert_eq!((ports.src, ports.dst, ports.flags), (1, 8080, 0x02));
    let udp = Builder::new().v4(C4, H4, L4::Udp(53, 5353));
    let ip = parse::ipv4(&udp[..], 14).unwrap();
    assert_eq!(parse::ports(&udp[..], &ip).unwrap().unwrap().flags, 0);
}

#[test]
fn word_reads_are_the_bytes_in_memory_order() {
    use crate::PacketBuf;
    let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
    assert_eq!(b[..].le16_at(1), Some(0x0302));
    assert_eq!(b[..].be16_at(1), Some(0x0203));
    assert_eq!(b[..].le32_at(0), Some(0x0403_0201));
    assert_eq!(b[..].le64_at(1), Some(0x0908_0706_0504_0302));
    assert_eq!(b[..].le64_at(2), None);
    let mut w = [0u8; 8];
    crate::PacketBufMut::write_le32(&mut w[..], 2, 0x0403_0201).unwrap();
    assert_eq!(w, [0, 0, 1, 2, 3, 4, 0, 0]);
    assert_eq!(crate::PacketBufMut::write_le64(&mut w[..], 1, 0), None);
}
