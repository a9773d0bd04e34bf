//! Packets for the L4 fixtures, built with etherparse so that the expected
//! outputs share no code with the encapsulation they check: client packets
//! to a VIP (TCP with chosen flags, UDP, ICMP errors, fragments, tunnels),
//! and the IPIP / IP6IP6 frames edge should send for them.

use etherparse::{
    EtherType, Ethernet2Header, Icmpv4Type, Icmpv6Type, IpNumber, Ipv4Header, Ipv6FlowLabel,
    Ipv6Header, PacketBuilder, VlanId, icmpv4,
};

/// TTL / hop limit of client packets.
pub const TTL: u8 = 64;
/// Payload of every packet.
pub const PAYLOAD: &[u8] = b"edge-l4";

/// TCP flags of a client packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tcp {
    /// A connection opener.
    Syn,
    /// A mid-flow segment.
    Ack,
}

/// An IP address of either family, as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ip {
    /// IPv4.
    V4([u8; 4]),
    /// IPv6.
    V6([u8; 16]),
}

/// A TCP packet `src:sport → dst:dport` between MACs `smac → dmac`,
/// optionally VLAN-tagged.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    smac: [u8; 6],
    dmac: [u8; 6],
    vlan: Option<u16>,
    src: Ip,
    dst: Ip,
    sport: u16,
    dport: u16,
    flags: Tcp,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(smac, dmac);
    let mut out = Vec::new();
    macro_rules! finish {
        ($ip:expr) => {{
            let t = $ip.tcp(sport, dport, 1000, 64240);
            let t = match flags {
                Tcp::Syn => t.syn(),
                Tcp::Ack => t.ack(1),
            };
            t.write(&mut out, PAYLOAD).expect("write to Vec");
        }};
    }
    match (vlan, src, dst) {
        (None, Ip::V4(s), Ip::V4(d)) => finish!(b.ipv4(s, d, TTL)),
        (None, Ip::V6(s), Ip::V6(d)) => finish!(b.ipv6(s, d, TTL)),
        (Some(v), Ip::V4(s), Ip::V4(d)) => {
            finish!(
                b.single_vlan(VlanId::try_new(v).expect("vlan id"))
                    .ipv4(s, d, TTL)
            )
        }
        (Some(v), Ip::V6(s), Ip::V6(d)) => {
            finish!(
                b.single_vlan(VlanId::try_new(v).expect("vlan id"))
                    .ipv6(s, d, TTL)
            )
        }
        _ => panic!("mixed address families"),
    }
    out
}

/// A UDP packet.
pub fn udp(smac: [u8; 6], dmac: [u8; 6], src: Ip, dst: Ip, sport: u16, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(smac, dmac);
    let mut out = Vec::new();
    match (src, dst) {
        (Ip::V4(s), Ip::V4(d)) => b.ipv4(s, d, TTL).udp(sport, dport).write(&mut out, PAYLOAD),
        (Ip::V6(s), Ip::V6(d)) => b.ipv6(s, d, TTL).udp(sport, dport).write(&mut out, PAYLOAD),
        _ => panic!("mixed address families"),
    }
    .expect("write to Vec");
    out
}

/// The IP part (no Ethernet header) of `frame`.
pub fn ip_part(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

/// An ICMPv4 "fragmentation needed" from `router` to `vip`, quoting
/// `quoted` (an IP packet that left `vip`).
pub fn icmp4_frag_needed(
    smac: [u8; 6],
    dmac: [u8; 6],
    router: [u8; 4],
    vip: [u8; 4],
    quoted: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv4(router, vip, TTL)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ))
        .write(&mut out, quoted)
        .expect("write to Vec");
    out
}

/// An ICMPv4 echo request.
pub fn icmp4_echo(smac: [u8; 6], dmac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src, dst, TTL)
        .icmpv4_echo_request(1, 1)
        .write(&mut out, PAYLOAD)
        .expect("write to Vec");
    out
}

/// An ICMPv6 "packet too big" from `router` to `vip`, quoting `quoted`.
pub fn icmp6_too_big(
    smac: [u8; 6],
    dmac: [u8; 6],
    router: [u8; 16],
    vip: [u8; 16],
    quoted: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv6(router, vip, TTL)
        .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut out, quoted)
        .expect("write to Vec");
    out
}

/// The frame edge sends for `frame` (untagged or with one VLAN tag):
/// the same L2 header with MACs `smac → dmac`, an outer IPv4 header
/// `outer_src → outer_dst` (protocol 4, TTL 64, no DF, TOS copied), and the
/// original IP packet.
pub fn ipip(
    frame: &[u8],
    smac: [u8; 6],
    dmac: [u8; 6],
    outer_src: [u8; 4],
    outer_dst: [u8; 4],
) -> Vec<u8> {
    let l2 = l2_len(frame);
    let inner = &frame[l2..];
    let mut h = Ipv4Header::new(inner.len() as u16, 64, IpNumber::IPV4, outer_src, outer_dst)
        .expect("outer header");
    h.dont_fragment = false;
    h.dscp = etherparse::IpDscp::try_new(inner[1] >> 2).expect("dscp");
    h.ecn = etherparse::IpEcn::try_new(inner[1] & 3).expect("ecn");
    let mut out = l2_header(frame, smac, dmac);
    h.write(&mut out).expect("write to Vec");
    out.extend_from_slice(inner);
    out
}

/// Like [`ipip`] for IPv6: outer next header 41, hop limit 64, traffic
/// class copied, flow label 0.
pub fn ip6ip6(
    frame: &[u8],
    smac: [u8; 6],
    dmac: [u8; 6],
    outer_src: [u8; 16],
    outer_dst: [u8; 16],
) -> Vec<u8> {
    let l2 = l2_len(frame);
    let inner = &frame[l2..];
    let h = Ipv6Header {
        traffic_class: (inner[0] << 4) | (inner[1] >> 4),
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: inner.len() as u16,
        next_header: IpNumber::IPV6,
        hop_limit: 64,
        source: outer_src,
        destination: outer_dst,
    };
    let mut out = l2_header(frame, smac, dmac);
    h.write(&mut out).expect("write to Vec");
    out.extend_from_slice(inner);
    out
}

fn l2_len(frame: &[u8]) -> usize {
    if frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    }
}

fn l2_header(frame: &[u8], smac: [u8; 6], dmac: [u8; 6]) -> Vec<u8> {
    let l2 = l2_len(frame);
    let mut out = Vec::new();
    let et = u16::from_be_bytes([frame[12], frame[13]]);
    Ethernet2Header {
        source: smac,
        destination: dmac,
        ether_type: EtherType(et),
    }
    .write(&mut out)
    .expect("write to Vec");
    out.extend_from_slice(&frame[14..l2]);
    out
}

/// What the decap program should leave of a tunnel frame: its L2 header
/// with the inner EtherType, then the inner packet.
pub fn decapsulated(tunnel: &[u8], outer_len: usize, inner_ether_type: u16) -> Vec<u8> {
    let l2 = l2_len(tunnel);
    let mut out = tunnel[..l2].to_vec();
    out[l2 - 2..l2].copy_from_slice(&inner_ether_type.to_be_bytes());
    out.extend_from_slice(&tunnel[l2 + outer_len..]);
    out
}
