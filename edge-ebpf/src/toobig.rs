//! ICMP "fragmentation needed" / ICMPv6 "packet too big" for VIP packets
//! that no longer fit the egress MTU once encapsulated.
//!
//! With direct server return the tunnel adds 20 (IPIP) or 40 (IP6IP6)
//! bytes that the client cannot know about; a full-sized packet would be
//! handed to a driver that drops it without a word, and the connection
//! stalls. Like a router, and like Katran's `ICMP_TOOBIG_GENERATION`, edge
//! answers instead, from the VIP to the client, advertising the MTU minus
//! the tunnel's overhead, so the client's path MTU discovery settles on a
//! size that fits.
//!
//! The rules (Katran's, with the RFCs' corrections):
//! - the reply goes back out of the interface the packet came in on
//!   (`XDP_TX`), with the frame's MACs swapped and its VLAN tags kept;
//! - it quotes a fixed prefix of the client's IP packet: [`QUOTE_V4`]
//!   bytes for IPv4 (RFC 792 asks for the header and 8 bytes; RFC 1812 for
//!   as much as fits), [`QUOTE_V6`] for IPv6 (RFC 4443: as much as fits
//!   in 1280), so the reply is always much smaller than what it answers,
//!   and one reply per offending packet amplifies nothing;
//! - at most [`edge_common::TOO_BIG_RATE`] replies per second per CPU
//!   (burst [`edge_common::TOO_BIG_BURST`]), so that spoofed oversized
//!   packets cannot make edge a reflector at line rate (Katran has no such
//!   limit; Linux rate-limits these ICMP types too); over it, the packet is
//!   dropped and counted, and its sender's retransmission gets the reply;
//! - IPv4 only when the packet has DF set: without DF the sender leaves
//!   fragmentation to the network, does no path MTU discovery, and a
//!   router would fragment it; edge cannot send two frames from XDP, and
//!   drops fragments to VIPs anyway, so such a packet is dropped (and
//!   counted) rather than answered with an error its sender did not ask for;
//! - never in answer to an ICMP error (RFC 1122, RFC 4443 §2.4);
//! - the outer IPv4 header of the reply has TTL 64, ID 0, DF set (as edge's
//!   tunnel packets: see [`crate::encap`]); IPv6 hop limit 64, traffic class
//!   and flow label 0; checksums computed in full (RFC 1071; ICMPv6 over
//!   the pseudo-header);
//! - the advertised MTU is not raised to IPv6's 1280 minimum when the
//!   egress MTU less 40 is below it: RFC 8201 has the client clamp it.
//!
//! Everything here is pure: [`reply`] reads the packet and returns the
//! headers to write; the kernel trims the packet to the quote, makes room
//! in front and writes them with [`write`].

use crate::{
    PacketBuf, PacketBufMut,
    encap::{self, IPV4_DF, Tags},
    parse::{ETH_HLEN, IPV4_MIN_HLEN, IPV6_HLEN},
};
use edge_common::{IPPROTO_ICMP, IPPROTO_ICMPV6};

/// Bytes of the client's IPv4 packet a reply quotes (Katran's: a 98-byte
/// frame less its Ethernet header).
pub const QUOTE_V4: usize = 84;
/// Bytes of the client's IPv6 packet a reply quotes (Katran's: a 262-byte
/// frame less its Ethernet header).
pub const QUOTE_V6: usize = 248;
/// Length of an ICMP / ICMPv6 header.
pub const ICMP_HLEN: usize = 8;
/// Bytes a reply puts in front of the quote: IPv4 and ICMP headers.
pub const REPLY_V4_HLEN: usize = IPV4_MIN_HLEN + ICMP_HLEN;
/// Bytes a reply puts in front of the quote: IPv6 and ICMPv6 headers.
pub const REPLY_V6_HLEN: usize = IPV6_HLEN + ICMP_HLEN;
/// TTL / hop limit of a reply.
pub const REPLY_TTL: u8 = 64;

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;

/// Whether an IP packet of `ip_len` bytes, with `overhead` bytes of outer
/// header, exceeds the egress `mtu` (zero: [`edge_common::DEFAULT_MTU`]).
#[inline(always)]
pub fn exceeds(ip_len: u32, overhead: u32, mtu: u32) -> bool {
    let mtu = if mtu == 0 {
        edge_common::DEFAULT_MTU
    } else {
        mtu
    };
    ip_len + overhead > mtu
}

/// The IPv4 or IPv6 reply headers; the longer array, the IPv4 reply using
/// the first [`REPLY_V4_HLEN`] bytes.
pub type Headers = [u8; REPLY_V6_HLEN];

/// What [`write`] lays down in front of the quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The Ethernet header, MACs swapped.
    pub eth: [u8; ETH_HLEN],
    /// The frame's VLAN tags, kept.
    pub tags: Tags,
    /// Length of the L2 header: 14, 18 or 22.
    pub l2_len: usize,
    /// Whether it is an ICMPv6 reply.
    pub v6: bool,
    /// IP and ICMP headers ([`REPLY_V4_HLEN`] or [`REPLY_V6_HLEN`] bytes).
    pub headers: Headers,
}

impl Reply {
    /// Bytes the reply adds in front of the quote.
    #[inline(always)]
    pub const fn headroom(&self) -> usize {
        if self.v6 {
            REPLY_V6_HLEN
        } else {
            REPLY_V4_HLEN
        }
    }

    /// Bytes of the client's IP packet kept after the headers.
    #[inline(always)]
    pub const fn quote(&self) -> usize {
        if self.v6 { QUOTE_V6 } else { QUOTE_V4 }
    }
}

/// The reply to the packet in `p` (IP header at `l2_len`, `v6` or not),
/// advertising `mtu` (the egress MTU less the tunnel's overhead); `None`
/// when it gets none (see the module docs): IPv4 without DF, a packet
/// shorter than the quote, a frame to a group MAC.
#[inline(always)]
pub fn reply<P: PacketBuf + ?Sized>(p: &P, l2_len: usize, v6: bool, mtu: u32) -> Option<Reply> {
    let mut eth: [u8; ETH_HLEN] = p.bytes(0)?;
    // The reply's source MAC is the frame's destination: it must be edge's
    // own unicast address.
    if eth[0] & 1 != 0 {
        return None;
    }
    let tags = encap::read_tags(p, l2_len)?;
    let mut swapped = eth;
    swapped[..6].copy_from_slice(&eth[6..12]);
    swapped[6..12].copy_from_slice(&eth[..6]);
    eth = swapped;
    let headers = if v6 {
        reply_v6(p, l2_len, mtu)?
    } else {
        reply_v4(p, l2_len, mtu)?
    };
    Some(Reply {
        eth,
        tags,
        l2_len,
        v6,
        headers,
    })
}

#[inline(always)]
fn reply_v4<P: PacketBuf + ?Sized>(p: &P, l2_len: usize, mtu: u32) -> Option<Headers> {
    let ip: [u8; IPV4_MIN_HLEN] = p.bytes(l2_len)?;
    if u16::from_be_bytes([ip[6], ip[7]]) & IPV4_DF == 0 {
        return None;
    }
    let quote = u32::from(p.sum16::<QUOTE_V4>(l2_len)?);
    let total = ((REPLY_V4_HLEN + QUOTE_V4) as u16).to_be_bytes();
    let df = IPV4_DF.to_be_bytes();
    let mut h = [0u8; REPLY_V6_HLEN];
    let mut ipv4 = [
        0x45,
        0,
        total[0],
        total[1],
        0,
        0,
        df[0],
        df[1],
        REPLY_TTL,
        IPPROTO_ICMP,
        0,
        0,
        ip[16],
        ip[17],
        ip[18],
        ip[19],
        ip[12],
        ip[13],
        ip[14],
        ip[15],
    ];
    let sum = encap::ipv4_checksum(&ipv4).to_be_bytes();
    ipv4[10] = sum[0];
    ipv4[11] = sum[1];
    let mtu = (if mtu > 0xffff { 0xffff } else { mtu } as u16).to_be_bytes();
    let mut icmp = [
        ICMP_DEST_UNREACH,
        ICMP_FRAG_NEEDED,
        0,
        0,
        0,
        0,
        mtu[0],
        mtu[1],
    ];
    let sum = fold(quote + sum_words(&icmp)).to_be_bytes();
    icmp[2] = sum[0];
    icmp[3] = sum[1];
    h[..IPV4_MIN_HLEN].copy_from_slice(&ipv4);
    h[IPV4_MIN_HLEN..REPLY_V4_HLEN].copy_from_slice(&icmp);
    Some(h)
}

#[inline(always)]
fn reply_v6<P: PacketBuf + ?Sized>(p: &P, l2_len: usize, mtu: u32) -> Option<Headers> {
    let src: [u8; 16] = p.bytes(l2_len + 8)?;
    let dst: [u8; 16] = p.bytes(l2_len + 24)?;
    let quote = u32::from(p.sum16::<QUOTE_V6>(l2_len)?);
    let payload = (ICMP_HLEN + QUOTE_V6) as u16;
    let mut h = [0u8; REPLY_V6_HLEN];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&payload.to_be_bytes());
    h[6] = IPPROTO_ICMPV6;
    h[7] = REPLY_TTL;
    // From the VIP (the packet's destination) back to the client.
    h[8..24].copy_from_slice(&dst);
    h[24..40].copy_from_slice(&src);
    let mtu = mtu.to_be_bytes();
    let mut icmp = [ICMPV6_PKT_TOOBIG, 0, 0, 0, mtu[0], mtu[1], mtu[2], mtu[3]];
    // The pseudo-header: both addresses, the upper-layer length and the
    // next header (RFC 8200 §8.1).
    let pseudo = sum_words(&src) + sum_words(&dst) + u32::from(payload) + u32::from(IPPROTO_ICMPV6);
    let sum = fold(pseudo + quote + sum_words(&icmp)).to_be_bytes();
    icmp[2] = sum[0];
    icmp[3] = sum[1];
    h[IPV6_HLEN..].copy_from_slice(&icmp);
    Some(h)
}

#[inline(always)]
fn sum_words<const N: usize>(b: &[u8; N]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i + 1 < N {
        sum += u32::from(u16::from_be_bytes([b[i], b[i + 1]]));
        i += 2;
    }
    sum
}

/// Folds a sum to 16 bits and complements it (RFC 1071).
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Writes `r`'s L2 header and IP/ICMP headers at the start of `p`, which
/// the caller trimmed to `r.l2_len + r.quote()` bytes and then grew by
/// `r.headroom()` in front.
#[inline(always)]
pub fn write<P: PacketBufMut + ?Sized>(p: &mut P, r: &Reply) -> Option<()> {
    encap::write_l2_header(p, r.eth, &r.tags, r.l2_len)?;
    if r.v6 {
        p.write(r.l2_len, r.headers)
    } else {
        let mut h = [0u8; REPLY_V4_HLEN];
        h.copy_from_slice(&r.headers[..REPLY_V4_HLEN]);
        p.write(r.l2_len, h)
    }
}
