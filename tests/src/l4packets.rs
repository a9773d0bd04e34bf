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
/// optionally VLAN-tagged, carrying [`PAYLOAD`].
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
    tcp_with(smac, dmac, vlan, src, dst, sport, dport, flags, PAYLOAD)
}

/// Like [`tcp`], carrying `payload` (IPv4 with DF set, as etherparse
/// builds it).
#[allow(clippy::too_many_arguments)]
pub fn tcp_with(
    smac: [u8; 6],
    dmac: [u8; 6],
    vlan: Option<u16>,
    src: Ip,
    dst: Ip,
    sport: u16,
    dport: u16,
    flags: Tcp,
    payload: &[u8],
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
            t.write(&mut out, payload).expect("write to Vec");
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

/// The frame edge sends for `frame` (untagged or with up to two VLAN tags):
/// the same L2 header with MACs `smac → dmac`, an outer IPv4 header
/// `outer_src → outer_dst` (protocol 4, TTL 64, ID 0, DF set, TOS copied),
/// and the original IP packet.
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
    h.dont_fragment = true;
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

/// The length of `frame`'s L2 header: 14, plus 4 per VLAN tag (802.1Q or
/// 802.1ad), at most two.
pub fn l2_len(frame: &[u8]) -> usize {
    let mut len = 14;
    while len < 22 && matches!(frame[len - 2..len], [0x81, 0x00] | [0x88, 0xa8]) {
        len += 4;
    }
    len
}

/// `frame` (untagged) with VLAN tags inserted after its MACs, outermost
/// first: `(TPID, VLAN id)` each (0x8100 for 802.1Q, 0x88a8 for 802.1ad).
pub fn with_tags(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (tpid, vid) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&vid.to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// `frame` (untagged IPv4) with the DF bit cleared and the header checksum
/// recomputed.
pub fn without_df(frame: &[u8]) -> Vec<u8> {
    let (mut h, rest) = Ipv4Header::from_slice(&frame[14..]).expect("an IPv4 frame");
    h.dont_fragment = false;
    h.header_checksum = h.calc_header_checksum();
    let mut out = frame[..14].to_vec();
    h.write(&mut out).expect("write to Vec");
    out.extend_from_slice(rest);
    out
}

/// `frame` (untagged IPv6) with `n` empty destination-options headers
/// inserted after the fixed header, then, if `fragment` is given, a
/// fragment header (offset in 8-byte units, more-fragments).
pub fn with_v6_ext(frame: &[u8], n: usize, fragment: Option<(u16, bool)>) -> Vec<u8> {
    const DEST_OPTS: u8 = 60;
    const FRAGMENT: u8 = 44;
    let transport = frame[14 + 6];
    let mut chain = Vec::new();
    let mut next_headers = vec![DEST_OPTS; n];
    if fragment.is_some() {
        next_headers.push(FRAGMENT);
    }
    next_headers.push(transport);
    for (i, _) in (0..n).enumerate() {
        // Next header, length 0 (8 bytes), a PadN option of four bytes.
        chain.extend_from_slice(&[next_headers[i + 1], 0, 1, 4, 0, 0, 0, 0]);
    }
    if let Some((offset, more)) = fragment {
        let frag = (offset << 3) | u16::from(more);
        chain.extend_from_slice(&[transport, 0]);
        chain.extend_from_slice(&frag.to_be_bytes());
        chain.extend_from_slice(&[0, 0, 0, 7]);
    }
    let mut out = frame[..14 + 40].to_vec();
    out[14 + 6] = next_headers[0];
    let payload = u16::from_be_bytes([out[18], out[19]]) + chain.len() as u16;
    out[18..20].copy_from_slice(&payload.to_be_bytes());
    out.extend_from_slice(&chain);
    out.extend_from_slice(&frame[14 + 40..]);
    out
}

/// Bytes of the offending IP packet an ICMP "fragmentation needed" from
/// edge quotes (Katran's size).
pub const TOO_BIG_QUOTE_V4: usize = 84;
/// Bytes an ICMPv6 "packet too big" from edge quotes (Katran's size).
pub const TOO_BIG_QUOTE_V6: usize = 248;

/// The ICMP error edge answers an oversized client `frame` with: back
/// out of the same L2 header with the MACs swapped, from the VIP to the
/// client (TTL 64, ID 0, DF set, TOS 0), "fragmentation needed" with
/// `mtu` (IPv4) or "packet too big" with `mtu` (IPv6), quoting the first
/// bytes of the client's IP packet.
pub fn too_big_reply(frame: &[u8], mtu: u32) -> Vec<u8> {
    let l2 = l2_len(frame);
    let ip = &frame[l2..];
    let mut out = frame[..l2].to_vec();
    out[..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&frame[..6]);
    let mut rest = Vec::new();
    if ip[0] >> 4 == 4 {
        let (src, dst): ([u8; 4], [u8; 4]) = (
            ip[12..16].try_into().expect("4 bytes"),
            ip[16..20].try_into().expect("4 bytes"),
        );
        PacketBuilder::ip(etherparse::IpHeaders::Ipv4(
            Ipv4Header::new(0, TTL, IpNumber::ICMP, dst, src).expect("header"),
            Default::default(),
        ))
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            icmpv4::DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: mtu as u16,
            },
        ))
        .write(&mut rest, &ip[..TOO_BIG_QUOTE_V4])
        .expect("write to Vec");
    } else {
        let (src, dst): ([u8; 16], [u8; 16]) = (
            ip[8..24].try_into().expect("16 bytes"),
            ip[24..40].try_into().expect("16 bytes"),
        );
        PacketBuilder::ip(etherparse::IpHeaders::Ipv6(
            Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: 0,
                next_header: IpNumber::IPV6_ICMP,
                hop_limit: TTL,
                source: dst,
                destination: src,
            },
            Default::default(),
        ))
        .icmpv6(Icmpv6Type::PacketTooBig { mtu })
        .write(&mut rest, &ip[..TOO_BIG_QUOTE_V6])
        .expect("write to Vec");
    }
    out.extend_from_slice(&rest);
    out
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
