//! Header parsers: Ethernet (with up to two VLAN tags: 802.1Q, or QinQ),
//! IPv4 (with options), IPv6 (with a bounded walk over extension headers),
//! TCP and UDP.
//!
//! Each parser takes the offset of its header and returns what the next
//! layer needs; none of them trusts a length field without checking it
//! against the packet.

use crate::PacketBuf;
use edge_common::{IPPROTO_TCP, IPPROTO_UDP};

/// Length of an Ethernet header without VLAN tags.
pub const ETH_HLEN: usize = 14;
/// Length of one 802.1Q / 802.1ad tag.
pub const VLAN_HLEN: usize = 4;
/// EtherType of IPv4.
pub const ETH_P_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// EtherType of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of an 802.1ad (service) VLAN tag.
pub const ETH_P_8021AD: u16 = 0x88A8;
/// Minimum IPv4 header length.
pub const IPV4_MIN_HLEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HLEN: usize = 40;
/// Minimum TCP header length.
pub const TCP_MIN_HLEN: usize = 20;
/// UDP header length.
pub const UDP_HLEN: usize = 8;
/// Most VLAN tags parsed (an 802.1ad service tag and an 802.1Q customer
/// tag); a frame with more is [`ParseError::Unsupported`].
pub const MAX_VLAN_TAGS: usize = 2;
/// Longest L2 header parsed: Ethernet and [`MAX_VLAN_TAGS`] tags.
pub const MAX_L2_HLEN: usize = ETH_HLEN + MAX_VLAN_TAGS * VLAN_HLEN;
/// How many IPv6 extension headers are skipped before giving up on finding
/// the transport header; bounds the loop for the verifier. A chain longer
/// than this is reported as [`Fragment::Unknown`].
pub const MAX_IPV6_EXT_HEADERS: usize = 4;

const IPV6_EXT_HOP_BY_HOP: u8 = 0;
const IPV6_EXT_ROUTING: u8 = 43;
const IPV6_EXT_FRAGMENT: u8 = 44;
const IPV6_EXT_AUTH: u8 = 51;
const IPV6_EXT_DEST_OPTS: u8 = 60;
const IPV6_EXT_MOBILITY: u8 = 135;
const IPV6_EXT_HIP: u8 = 139;
const IPV6_EXT_SHIM6: u8 = 140;
const IPV6_EXT_EXPERIMENT1: u8 = 253;
const IPV6_EXT_EXPERIMENT2: u8 = 254;

/// The protocol layer a parse error happened at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Ethernet header, including a VLAN tag.
    Ethernet,
    /// IPv4 header and options.
    Ipv4,
    /// IPv6 header and extension headers.
    Ipv6,
    /// TCP header.
    Tcp,
    /// UDP header.
    Udp,
}

/// Why a packet could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The packet ends inside this layer's header.
    Truncated(Layer),
    /// This layer's header contradicts itself (bad version, length field).
    Invalid(Layer),
    /// This layer goes on beyond what edge parses (a third VLAN tag): the
    /// network header was never reached.
    Unsupported(Layer),
}

/// What follows the Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ethernet {
    /// EtherType of the payload, after the VLAN tags if there were any.
    pub ether_type: u16,
    /// The VLAN ID of the innermost tag, if the frame carried one.
    pub vlan: Option<u16>,
    /// Offset of the network header.
    pub l3_offset: usize,
}

/// Source and destination addresses, in network byte order.
///
/// `repr(u64)` puts the addresses at offset 8, 8-byte aligned wherever the
/// value lies: the program is built with misaligned accesses allowed, so
/// the compiler may copy the addresses in 64-bit words, and the verifier
/// refuses a misaligned stack access (with the default layout, the
/// addresses began at offset 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum IpAddrs {
    /// IPv4 addresses.
    V4 {
        /// Source address.
        src: [u8; 4],
        /// Destination address.
        dst: [u8; 4],
    },
    /// IPv6 addresses.
    V6 {
        /// Source address.
        src: [u8; 16],
        /// Destination address.
        dst: [u8; 16],
    },
}

/// Where a packet stands in a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment.
    No,
    /// The first fragment: it carries the transport header.
    First,
    /// A later fragment: no transport header.
    Later,
    /// The IPv6 extension header chain goes on beyond the parser's walk:
    /// neither the fragment state nor the transport header is known.
    Unknown,
}

/// A parsed network header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpHeader {
    /// Source and destination.
    pub addrs: IpAddrs,
    /// Transport protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Offset of the transport header.
    pub l4_offset: usize,
    /// Fragmentation state.
    pub fragment: Fragment,
    /// Length of the IP packet, header included, from its length field
    /// (checked against the frame, which may be longer: Ethernet padding).
    pub len: u32,
}

/// Transport ports, host byte order, and the TCP flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// Source port.
    pub src: u16,
    /// Destination port.
    pub dst: u16,
    /// The TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK
    /// 0x10, ...); zero for UDP.
    pub flags: u8,
}

/// Parses the Ethernet header and up to [`MAX_VLAN_TAGS`] VLAN tags
/// (802.1Q or 802.1ad, in any order).
pub fn ethernet<P: PacketBuf + ?Sized>(p: &P) -> Result<Ethernet, ParseError> {
    let truncated = ParseError::Truncated(Layer::Ethernet);
    let mut ether_type = p.be16_at(12).ok_or(truncated)?;
    let mut vlan = None;
    let mut l3_offset = ETH_HLEN;
    // Unrolled by hand: one read of a whole tag per step, at an offset the
    // verifier sees as a constant.
    if is_vlan(ether_type) {
        let tag = p.le32_at(ETH_HLEN).ok_or(truncated)?;
        vlan = Some(tci_vid(tag));
        ether_type = tag_ether_type(tag);
        l3_offset = ETH_HLEN + VLAN_HLEN;
        if is_vlan(ether_type) {
            let tag = p.le32_at(ETH_HLEN + VLAN_HLEN).ok_or(truncated)?;
            vlan = Some(tci_vid(tag));
            ether_type = tag_ether_type(tag);
            l3_offset = MAX_L2_HLEN;
            if is_vlan(ether_type) {
                return Err(ParseError::Unsupported(Layer::Ethernet));
            }
        }
    }
    Ok(Ethernet {
        ether_type,
        vlan,
        l3_offset,
    })
}

#[inline(always)]
fn is_vlan(ether_type: u16) -> bool {
    ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD
}

/// The VLAN ID of a tag read as a little-endian word (TCI in bytes 0-1).
#[inline(always)]
fn tci_vid(tag: u32) -> u16 {
    u16::from_be_bytes([tag as u8, (tag >> 8) as u8]) & 0x0fff
}

/// The EtherType after a tag read as a little-endian word (bytes 2-3).
#[inline(always)]
fn tag_ether_type(tag: u32) -> u16 {
    u16::from_be_bytes([(tag >> 16) as u8, (tag >> 24) as u8])
}

/// Byte `i` (0-7) of a little-endian word: the packet's byte at the word's
/// offset plus `i`.
#[inline(always)]
const fn byte(word: u64, i: u32) -> u8 {
    (word >> (8 * i)) as u8
}

/// The big-endian `u16` at bytes `i` and `i + 1` of a little-endian word.
#[inline(always)]
const fn be16(word: u64, i: u32) -> u16 {
    u16::from_be_bytes([byte(word, i), byte(word, i + 1)])
}

/// Parses an IPv4 header (with options) at `off`.
///
/// Three loads (bytes 0-7, 8-11, 12-19) rather than twenty: each is checked
/// against the packet's end, all before any field is looked at, so a short
/// header is `Truncated` whatever its first bytes say.
pub fn ipv4<P: PacketBuf + ?Sized>(p: &P, off: usize) -> Result<IpHeader, ParseError> {
    let truncated = ParseError::Truncated(Layer::Ipv4);
    // Version/IHL, TOS, total length, ID, flags and fragment offset.
    let w0 = p.le64_at(off).ok_or(truncated)?;
    // TTL, protocol, checksum.
    let w1 = p.le32_at(off + 8).ok_or(truncated)?;
    // Source and destination.
    let addrs = p.le64_at(off + 12).ok_or(truncated)?;
    let invalid = ParseError::Invalid(Layer::Ipv4);
    let ver_ihl = byte(w0, 0);
    if ver_ihl >> 4 != 4 {
        return Err(invalid);
    }
    let hlen = usize::from(ver_ihl & 0x0f) * 4;
    let total = usize::from(be16(w0, 2));
    if hlen < IPV4_MIN_HLEN || total < hlen {
        return Err(invalid);
    }
    // Options must be present in full; the total length may not exceed what
    // arrived (Ethernet padding may make the frame longer, never shorter).
    // Both are length comparisons: nothing past the fixed header is read.
    let len = p.len();
    if off + hlen > len || off + total > len {
        return Err(truncated);
    }
    let frag = be16(w0, 6);
    let more_fragments = frag & 0x2000 != 0;
    let frag_offset = frag & 0x1fff;
    let fragment = if frag_offset != 0 {
        Fragment::Later
    } else if more_fragments {
        Fragment::First
    } else {
        Fragment::No
    };
    Ok(IpHeader {
        addrs: IpAddrs::V4 {
            src: (addrs as u32).to_le_bytes(),
            dst: ((addrs >> 32) as u32).to_le_bytes(),
        },
        proto: (w1 >> 8) as u8,
        l4_offset: off + hlen,
        fragment,
        len: total as u32,
    })
}

/// Sixteen bytes from two little-endian words (bytes 0-7, then 8-15).
#[inline(always)]
fn bytes16(lo: u64, hi: u64) -> [u8; 16] {
    (u128::from(lo) | (u128::from(hi) << 64)).to_le_bytes()
}

/// Parses an IPv6 header at `off`, skipping up to [`MAX_IPV6_EXT_HEADERS`]
/// extension headers (hop-by-hop, routing, fragment, authentication,
/// destination options, mobility, HIP, shim6, experimental). A chain that
/// goes on beyond them gives [`Fragment::Unknown`], with `proto` the type
/// of the first header not walked.
pub fn ipv6<P: PacketBuf + ?Sized>(p: &P, off: usize) -> Result<IpHeader, ParseError> {
    let truncated = ParseError::Truncated(Layer::Ipv6);
    // Version, traffic class, flow label, payload length, next header, hop
    // limit.
    let fixed = p.le64_at(off).ok_or(truncated)?;
    if byte(fixed, 0) >> 4 != 6 {
        return Err(ParseError::Invalid(Layer::Ipv6));
    }
    let payload = usize::from(be16(fixed, 4));
    if off + IPV6_HLEN + payload > p.len() {
        return Err(truncated);
    }
    let src = bytes16(
        p.le64_at(off + 8).ok_or(truncated)?,
        p.le64_at(off + 16).ok_or(truncated)?,
    );
    let dst = bytes16(
        p.le64_at(off + 24).ok_or(truncated)?,
        p.le64_at(off + 32).ok_or(truncated)?,
    );
    let mut next = byte(fixed, 6);
    let mut l4_offset = off + IPV6_HLEN;
    let mut fragment = Fragment::No;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPV6_EXT_HOP_BY_HOP | IPV6_EXT_ROUTING | IPV6_EXT_DEST_OPTS | IPV6_EXT_MOBILITY
            | IPV6_EXT_HIP | IPV6_EXT_SHIM6 | IPV6_EXT_EXPERIMENT1 | IPV6_EXT_EXPERIMENT2 => {
                // Next header, then the length in 8-byte units.
                let ext = p.le16_at(l4_offset).ok_or(truncated)?;
                next = ext as u8;
                l4_offset += (usize::from(ext >> 8) + 1) * 8;
            }
            // The authentication header counts its length in 4-byte units.
            IPV6_EXT_AUTH => {
                let ext = p.le16_at(l4_offset).ok_or(truncated)?;
                next = ext as u8;
                l4_offset += (usize::from(ext >> 8) + 2) * 4;
            }
            IPV6_EXT_FRAGMENT => {
                let ext = p.le64_at(l4_offset).ok_or(truncated)?;
                next = byte(ext, 0);
                l4_offset += 8;
                let frag = be16(ext, 2);
                if frag >> 3 != 0 {
                    fragment = Fragment::Later;
                    break;
                }
                if frag & 1 != 0 {
                    fragment = Fragment::First;
                }
            }
            _ => break,
        }
    }
    if fragment != Fragment::Later && is_ipv6_ext(next) {
        fragment = Fragment::Unknown;
    }
    Ok(IpHeader {
        addrs: IpAddrs::V6 { src, dst },
        proto: next,
        l4_offset,
        fragment,
        len: (IPV6_HLEN + payload) as u32,
    })
}

/// Whether `next` is an IPv6 extension header the walk follows.
#[inline(always)]
fn is_ipv6_ext(next: u8) -> bool {
    matches!(
        next,
        IPV6_EXT_HOP_BY_HOP
            | IPV6_EXT_ROUTING
            | IPV6_EXT_FRAGMENT
            | IPV6_EXT_AUTH
            | IPV6_EXT_DEST_OPTS
            | IPV6_EXT_MOBILITY
            | IPV6_EXT_HIP
            | IPV6_EXT_SHIM6
            | IPV6_EXT_EXPERIMENT1
            | IPV6_EXT_EXPERIMENT2
    )
}

/// Parses the TCP or UDP header of `ip`; `Ok(None)` for other protocols, for
/// later fragments (which carry no transport header) and for packets whose
/// extension headers were not walked to the end.
pub fn ports<P: PacketBuf + ?Sized>(p: &P, ip: &IpHeader) -> Result<Option<Ports>, ParseError> {
    if ip.fragment == Fragment::Later || ip.fragment == Fragment::Unknown {
        return Ok(None);
    }
    let off = ip.l4_offset;
    match ip.proto {
        IPPROTO_TCP => {
            let truncated = ParseError::Truncated(Layer::Tcp);
            // The ports, then bytes 12-19 (data offset, flags, window,
            // checksum, urgent pointer): together the whole fixed header,
            // as a 20-byte read would need. In increasing order, so that no
            // check implies a later one (LLVM could drop that one, and the
            // verifier would then have to prove an access from another
            // pointer's check).
            let head = p.le32_at(off).ok_or(truncated)?;
            let tail = p.le64_at(off + 12).ok_or(truncated)?;
            let hlen = usize::from(byte(tail, 0) >> 4) * 4;
            if hlen < TCP_MIN_HLEN {
                return Err(ParseError::Invalid(Layer::Tcp));
            }
            // Options present in full: a length comparison, no read.
            if off + hlen > p.len() {
                return Err(truncated);
            }
            Ok(Some(Ports {
                src: be16(u64::from(head), 0),
                dst: be16(u64::from(head), 2),
                flags: byte(tail, 1),
            }))
        }
        IPPROTO_UDP => {
            let h = p.le64_at(off).ok_or(ParseError::Truncated(Layer::Udp))?;
            Ok(Some(Ports {
                src: be16(h, 0),
                dst: be16(h, 2),
                flags: 0,
            }))
        }
        _ => Ok(None),
    }
}
