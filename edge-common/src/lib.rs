//! Types and names shared by edge's XDP program and its daemon.
//!
//! Everything here crosses the kernel/user boundary through BPF maps, so each
//! type is `#[repr(C)]`, uses fixed-width integers only, spells out its padding
//! and is zero-initialised by its constructors: the kernel hashes keys byte by
//! byte, and a stray padding byte would make two equal keys differ.
#![no_std]

/// Name of the XDP program in the object file (its function name).
pub const PROGRAM_XDP: &str = "edge_xdp";

/// Per-CPU array of [`Counters`], indexed by [`PacketClass`].
pub const MAP_CLASS_STATS: &str = "EDGE_CLASS_STATS";
/// LPM trie of denied IPv4 source prefixes: key `[u8; 4]`, value [`DenyValue`].
pub const MAP_DENY_V4: &str = "EDGE_DENY_V4";
/// LPM trie of denied IPv6 source prefixes: key `[u8; 16]`, value [`DenyValue`].
pub const MAP_DENY_V6: &str = "EDGE_DENY_V6";
/// Hash of the ports the L7 listeners own: key [`PortKey`], value `u8` (1).
pub const MAP_L7_PORTS: &str = "EDGE_L7_PORTS";
/// Hash of the L4 virtual services: key [`VipKey`], value [`VipMeta`].
pub const MAP_VIPS: &str = "EDGE_VIPS";
/// Hash of IPv4 sources banned by L7 verdicts: key `[u8; 4]`, value [`BanValue`].
pub const MAP_BANS_V4: &str = "EDGE_BANS_V4";
/// Hash of IPv6 sources banned by L7 verdicts: key `[u8; 16]`, value [`BanValue`].
pub const MAP_BANS_V6: &str = "EDGE_BANS_V6";
/// Array of [`filter::WORDS`] `u64`: the fast path's pre-filters of the
/// deny list, the bans, the VIPs and the L7 ports (see [`filter`]).
pub const MAP_FILTER: &str = "EDGE_FILTER";

/// The version of the maps' layout: their names, key and value types and
/// what they mean. `edge run` pins its maps in a directory named after it,
/// so a daemon never adopts maps of another layout; bump it whenever a map
/// or a type in this crate changes (the size tests below are a reminder).
pub const PIN_LAYOUT: u32 = 7;

/// Every map the daemon expects to find in the object.
/// `edge run` pins each of these (and its XDP links), and a later `edge
/// run` of the same layout adopts them.
pub const ALL_MAPS: [&str; 19] = [
    MAP_CLASS_STATS,
    MAP_DENY_V4,
    MAP_DENY_V6,
    MAP_BANS_V4,
    MAP_BANS_V6,
    MAP_L7_PORTS,
    MAP_VIPS,
    MAP_FILTER,
    l4::MAP_REALS,
    l4::MAP_RINGS,
    l4::MAP_CONNTRACK,
    l4::MAP_VIP_STATS,
    l4::MAP_REAL_STATS,
    l4::MAP_L4_EVENTS,
    l4::MAP_SYN_BUDGET,
    l4::MAP_L4_SETTINGS,
    l4::MAP_IFACES,
    l4::MAP_TX_PORTS,
    l4::MAP_SERVICES,
];

pub mod filter;
pub mod l4;
pub use l4::*;

/// Capacity of each deny-list trie.
pub const MAX_DENY_ENTRIES: u32 = 65_536;
/// Capacity of each ban map (the daemon's own bound may be lower).
pub const MAX_BANS: u32 = 65_536;
/// Capacity of the L7 port set.
pub const MAX_L7_PORTS: u32 = 1_024;
/// Capacity of the VIP table.
pub const MAX_VIPS: u32 = 4_096;

/// IANA protocol number for TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IANA protocol number for UDP.
pub const IPPROTO_UDP: u8 = 17;

/// Address family tags used in keys.
pub const FAMILY_V4: u8 = 4;
/// Address family tag for IPv6.
pub const FAMILY_V6: u8 = 6;

/// What the XDP program decided a packet is; the index into [`MAP_CLASS_STATS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PacketClass {
    /// Destination is an L4 virtual service (VIP:port/proto).
    Vip = 0,
    /// Destination port belongs to an L7 listener.
    L7 = 1,
    /// Anything else: non-IP, other protocols, host traffic.
    #[default]
    Other = 2,
    /// A header was truncated or inconsistent; the packet was passed to the
    /// kernel, which is the authority on traffic edge does not own.
    Malformed = 3,
    /// The source address matched the deny list; the packet was dropped.
    Denied = 4,
    /// More VLAN tags than edge parses (two): the source is unknown, so the
    /// deny list cannot be applied, and the packet was dropped.
    Unparsed = 5,
    /// The source is banned (L7 verdicts) until a time not yet reached;
    /// the packet was dropped.
    Banned = 6,
}

impl PacketClass {
    /// Number of classes, the length of [`MAP_CLASS_STATS`].
    pub const COUNT: u32 = 7;
    /// Every class, in index order.
    pub const ALL: [PacketClass; Self::COUNT as usize] = [
        PacketClass::Vip,
        PacketClass::L7,
        PacketClass::Other,
        PacketClass::Malformed,
        PacketClass::Denied,
        PacketClass::Unparsed,
        PacketClass::Banned,
    ];

    /// The label used in metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            PacketClass::Vip => "vip",
            PacketClass::L7 => "l7",
            PacketClass::Other => "other",
            PacketClass::Malformed => "malformed",
            PacketClass::Denied => "denied",
            PacketClass::Unparsed => "unparsed",
            PacketClass::Banned => "banned",
        }
    }

    /// The index of this class in [`MAP_CLASS_STATS`].
    pub const fn index(self) -> u32 {
        self as u32
    }
}

/// Packet and byte counters for one class on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen, counting from the Ethernet header.
    pub bytes: u64,
}

/// Value of a deny-list entry: which configured rule it came from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DenyValue {
    /// Index of the prefix in the configuration's deny list.
    pub rule: u32,
}

/// Value of a ban entry: when it ends.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BanValue {
    /// `CLOCK_MONOTONIC` time (what `bpf_ktime_get_ns` reads) at which
    /// the ban ends; the entry is ignored from then on.
    pub expires_ns: u64,
}

/// Key of [`MAP_L7_PORTS`]: a destination port (host byte order) and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortKey {
    /// Destination port, host byte order.
    pub port: u16,
    /// IANA protocol number.
    pub proto: u8,
    /// Explicit padding, always zero.
    pub _pad: u8,
}

impl PortKey {
    /// A zero-padded key.
    pub const fn new(port: u16, proto: u8) -> Self {
        Self {
            port,
            proto,
            _pad: 0,
        }
    }
}

/// Key of [`MAP_VIPS`]: destination address, port and protocol.
///
/// IPv4 addresses occupy the first four bytes of `addr`, the rest is zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// Address bytes in network order.
    pub addr: [u8; 16],
    /// Destination port, host byte order.
    pub port: u16,
    /// IANA protocol number.
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
}

impl VipKey {
    /// The key of an IPv4 service.
    pub const fn v4(addr: [u8; 4], port: u16, proto: u8) -> Self {
        // A zero extension rather than byte stores into a zeroed array: in
        // BPF the latter becomes a call to the byte-by-byte `memset`.
        Self {
            addr: (u32::from_le_bytes(addr) as u128).to_le_bytes(),
            port,
            proto,
            family: FAMILY_V4,
        }
    }

    /// The key of an IPv6 service.
    pub const fn v6(addr: [u8; 16], port: u16, proto: u8) -> Self {
        Self {
            addr,
            port,
            proto,
            family: FAMILY_V6,
        }
    }
}

/// Value of [`MAP_VIPS`]: what the fast path needs to know about a service.
///
/// The daemon replaces the whole value in one map update, so the kernel
/// always sees a ring size and generation that belong together.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipMeta {
    /// Index of the service in the daemon's table: its stats slot and its
    /// pair of Maglev rings (below [`MAX_L4_SERVICES`]).
    pub id: u32,
    /// `VIP_FLAG_*` bits.
    pub flags: u32,
    /// Maglev table size M (a prime, at most [`MAX_RING_SIZE`]); zero means
    /// no table yet, and the packet goes up the stack.
    pub ring_size: u32,
    /// Table generation; its lowest bit picks the live half of the
    /// double-buffered ring (see [`ring_index`]).
    pub generation: u32,
    /// Size of the previous table, the one in the idle half (generation
    /// `generation ^ 1`) that was live before the last flip; zero: none
    /// usable. A TCP packet other than a SYN with no usable conntrack
    /// entry goes to the previous table's backend when it is up and
    /// differs from the live table's pick: behind an ECMP router, a flow
    /// moved to this host from another one that has the same tables was
    /// established under the old table if that changed recently.
    pub prev_ring_size: u32,
    /// Explicit padding, always zero (aligns `prev_until_ns`).
    pub _pad: u32,
    /// `CLOCK_MONOTONIC` time (what `bpf_ktime_get_ns` reads) until which
    /// the previous table is trusted; from then on it is ignored.
    pub prev_until_ns: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is #[repr(C)], made of fixed-width integers with its
    // padding spelled out as fields, so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::DenyValue {}
    unsafe impl aya::Pod for super::BanValue {}
    unsafe impl aya::Pod for super::PortKey {}
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::VipMeta {}
    unsafe impl aya::Pod for super::RealDef {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowState {}
    unsafe impl aya::Pod for super::L4Counters {}
    unsafe impl aya::Pod for super::SourceKey {}
    unsafe impl aya::Pod for super::TokenBucket {}
    unsafe impl aya::Pod for super::L4Settings {}
    unsafe impl aya::Pod for super::IfaceDef {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Counters>(), 16);
        assert_eq!(size_of::<DenyValue>(), 4);
        assert_eq!(size_of::<BanValue>(), 8);
        assert_eq!(size_of::<PortKey>(), 4);
        assert_eq!(size_of::<VipKey>(), 20);
        assert_eq!(size_of::<VipMeta>(), 32);
        assert_eq!(size_of::<RealDef>(), 28);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<FlowState>(), 8);
        assert_eq!(size_of::<L4Counters>(), 32);
        assert_eq!(size_of::<SourceKey>(), 20);
        assert_eq!(size_of::<TokenBucket>(), 16);
        assert_eq!(size_of::<L4Settings>(), 36);
        assert_eq!(size_of::<IfaceDef>(), 8);
    }

    #[test]
    fn event_indices_are_dense() {
        for (i, e) in L4Event::ALL.iter().enumerate() {
            assert_eq!(e.index() as usize, i);
        }
        for (i, e) in DecapEvent::ALL.iter().enumerate() {
            assert_eq!(e.index() as usize, i);
        }
    }

    #[test]
    fn rings_do_not_overlap() {
        // The last slot of one half and the first of the next are adjacent.
        assert_eq!(ring_index(0, 0, MAX_RING_SIZE - 1) + 1, ring_index(0, 1, 0));
        assert_eq!(ring_index(0, 1, MAX_RING_SIZE - 1) + 1, ring_index(1, 0, 0));
        assert_eq!(
            ring_index(MAX_L4_SERVICES - 1, 1, MAX_RING_SIZE - 1) + 1,
            ring_entries(MAX_L4_SERVICES)
        );
        // Generations alternate halves.
        assert_eq!(ring_index(3, 2, 5), ring_index(3, 0, 5));
    }

    #[test]
    fn class_indices_are_dense() {
        for (i, class) in PacketClass::ALL.iter().enumerate() {
            assert_eq!(class.index() as usize, i);
        }
    }
}
