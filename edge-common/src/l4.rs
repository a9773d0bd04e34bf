//! The L4 balancer's maps: reals, Maglev rings, connection tracking,
//! counters, the SYN budget and forwarding settings.
//!
//! # Maglev rings: one big array, double-buffered
//! Every service owns two halves of [`MAP_RINGS`], each [`MAX_RING_SIZE`]
//! slots long, at `(id * 2 + generation % 2) * MAX_RING_SIZE`. A service's
//! own table size M (a prime ≤ [`MAX_RING_SIZE`]) uses the first M slots of
//! a half. The daemon writes the idle half in full and then flips
//! [`VipMeta::generation`] in one `EDGE_VIPS` update; packets see either
//! the old table or the new one, never a mix, and the program stays
//! attached. A flat array was chosen over an array of maps because a lookup
//! is one array access (no inner-map indirection, which the verifier and
//! aya-ebpf 0.2 handle less well), and because the loader sizes it to the
//! configured service count at load time (`set_max_entries`), so unused
//! capacity costs no memory.
//!
//! After a flip the idle half still holds the table that was live until
//! then. For a while ([`VipMeta::prev_until_ns`], `l4.second_chance`) the
//! daemon names it in [`VipMeta::prev_ring_size`], and a TCP packet other
//! than a SYN with no usable conntrack entry goes to its backend there
//! when that is up and differs from the live pick ([`L4Event::SecondChance`]):
//! behind an ECMP router every host computes the same tables, so a flow
//! the router moves to this host was most likely established under the
//! previous table if the table changed recently. Before it writes the idle
//! half again, the daemon clears `prev_ring_size`, so a half being
//! rewritten is never consulted.
//!
//! # Connection tracking
//! [`MAP_CONNTRACK`] is an LRU hash from [`FlowKey`] to the real chosen
//! for the flow, one value seen by every CPU (a flow's packets need not all
//! come in on one CPU), with an LRU list per CPU (`BPF_F_NO_COMMON_LRU`).
//! A table change leaves it alone, so established
//! flows keep their backend; a real marked down ([`REAL_FLAG_UP`] clear) is
//! not trusted from the LRU and its flows are re-picked from the ring.
//! The key is always the whole 5-tuple, also for source-hashed services
//! (whose Maglev hash ignores the client port): a key without the port
//! would make all of a client's connections one entry, and the first new
//! connection after a table change (a SYN skips the lookup and overwrites
//! the entry) would move every established one to the new owner.
//!
//! A packet to a VIP port other than a TCP SYN looks conntrack up first,
//! before the VIP map: a hit needs only the entry's service id and real,
//! so the VIP lookup (a second hash, of a 20-byte key) is skipped. What
//! the VIP lookup used to vouch for, that the entry's service is still
//! this VIP's, [`MAP_SERVICES`] says instead: the entry is used when
//! `EDGE_SERVICES[service]` is the packet's VIP key and its real is up.
//! The daemon writes a service's slot after its VIP entry; it clears the
//! slot before the VIP entry goes or when the VIP's id changes, and an id
//! that moves to another VIP has its slot overwritten; every reload, and
//! every second, it also clears any slot the VIP map does not back (what
//! the old process of an upgrade can leave just after the hand-over). So
//! a removed VIP or a reused id does not match. Anything else (no entry, another service's,
//! a real that is down) takes the full path, which judges the entry
//! exactly as before. A slot is written while the kernel may read it, so
//! a read could see a mix of the old and new key; it would have to equal
//! the packet's VIP exactly to matter.

/// Array of [`RealDef`], indexed by real id; id 0 is never used, so a
/// zeroed ring slot means "no backend".
pub const MAP_REALS: &str = "EDGE_REALS";
/// Array of `u32` real ids: the Maglev rings (see the module docs).
pub const MAP_RINGS: &str = "EDGE_RINGS";
/// Per-CPU LRU hash [`FlowKey`] → [`FlowState`].
pub const MAP_CONNTRACK: &str = "EDGE_CONNTRACK";
/// Per-CPU array of [`L4Counters`], indexed by [`VipMeta::id`].
pub const MAP_VIP_STATS: &str = "EDGE_VIP_STATS";
/// Per-CPU array of [`L4Counters`], indexed by real id.
pub const MAP_REAL_STATS: &str = "EDGE_REAL_STATS";
/// Per-CPU array of `u64`, indexed by [`L4Event`].
pub const MAP_L4_EVENTS: &str = "EDGE_L4_EVENTS";
/// LRU hash [`SourceKey`] → [`TokenBucket`]: the per-source new-flow budget.
pub const MAP_SYN_BUDGET: &str = "EDGE_SYN_BUDGET";
/// Array of one [`L4Settings`].
pub const MAP_L4_SETTINGS: &str = "EDGE_L4_SETTINGS";
/// Hash ifindex (`u32`) → [`IfaceDef`]: the MAC of each interface edge
/// transmits on.
pub const MAP_IFACES: &str = "EDGE_IFACES";
/// Devmap-hash keyed by ifindex, for `XDP_REDIRECT` to another interface.
pub const MAP_TX_PORTS: &str = "EDGE_TX_PORTS";
/// Array of [`crate::VipKey`], indexed by [`crate::VipMeta::id`]: the VIP
/// each service id belongs to now, zeroed for an unused id (see
/// "Connection tracking" in the module docs).
pub const MAP_SERVICES: &str = "EDGE_SERVICES";

/// Name of the decapsulation program (in the decap object).
pub const PROGRAM_DECAP: &str = "edge_decap";
/// Name of the trivial XDP_PASS program, the benchmark's baseline.
pub const PROGRAM_PASS: &str = "edge_pass";
/// Hash of allowed outer IPv4 sources (`[u8; 4]` → `u8`) for decap.
pub const MAP_DECAP_V4: &str = "EDGE_DECAP_V4";
/// Hash of allowed outer IPv6 sources (`[u8; 16]` → `u8`) for decap.
pub const MAP_DECAP_V6: &str = "EDGE_DECAP_V6";
/// Per-CPU array of [`crate::Counters`], indexed by [`DecapEvent`].
pub const MAP_DECAP_STATS: &str = "EDGE_DECAP_STATS";
/// Every map of the decap object.
pub const DECAP_MAPS: [&str; 3] = [MAP_DECAP_V4, MAP_DECAP_V6, MAP_DECAP_STATS];

/// Most L4 services (VIP:port/proto); bounds [`VipMeta::id`].
pub const MAX_L4_SERVICES: u32 = 64;
/// Largest Maglev table; each ring half has this many slots.
pub const MAX_RING_SIZE: u32 = 65_537;
/// Default Maglev table size (a prime).
pub const DEFAULT_RING_SIZE: u32 = 65_537;
/// Capacity of [`MAP_REALS`] (and of the per-real counters); ids start at 1.
pub const MAX_REALS: u32 = 4_096;
/// Default conntrack capacity: flows in [`MAP_CONNTRACK`], all CPUs
/// together, each CPU's LRU list holding an equal share. What an entry
/// costs the kernel, preallocated at load: an element of about 96 bytes
/// (header, the 40-byte key, the 8-byte value) and 16 bytes of hash bucket
/// (buckets are the capacity rounded up to a power of two): about 112
/// bytes. 65 536 entries are 7 MiB; 1 048 576 are 112 MiB.
pub const DEFAULT_CONNTRACK_CAPACITY: u32 = 65_536;
/// Capacity of the SYN budget's LRU.
pub const MAX_SYN_SOURCES: u32 = 65_536;
/// Capacity of [`MAP_IFACES`] and [`MAP_TX_PORTS`].
pub const MAX_IFACES: u32 = 64;
/// Capacity of each decap allow map.
pub const MAX_DECAP_SOURCES: u32 = 64;

/// [`VipMeta::flags`]: hash on the source address only (not the 5-tuple).
pub const VIP_FLAG_SOURCE_HASH: u32 = 1;
/// [`VipMeta::flags`]: an address marker (port 0, proto 0) saying that
/// some service lives on this address; fragments and ICMP errors to it are
/// recognised through it.
pub const VIP_FLAG_ADDRESS: u32 = 2;

/// [`RealDef::flags`]: the real passes its health check; flows remembered
/// in conntrack for a real without it are re-picked.
pub const REAL_FLAG_UP: u8 = 1;

/// [`L4Settings::flags`]: the SYN budget is on.
pub const SETTINGS_SYN_BUDGET: u32 = 1;

/// The egress MTU the kernel assumes while [`L4Settings::mtu`] is zero
/// (Ethernet's).
pub const DEFAULT_MTU: u32 = 1_500;
/// ICMP "too big" replies each CPU may send per second: enough for every
/// client of a busy service to learn its path MTU within seconds, little
/// enough that a flood of spoofed oversized packets does not turn edge
/// into a reflector at line rate (Linux rate-limits the same ICMP types).
pub const TOO_BIG_RATE: u32 = 1_000;
/// Replies each CPU may send in a burst, above [`TOO_BIG_RATE`].
pub const TOO_BIG_BURST: u32 = 100;

/// The smallest MTU the daemon writes into [`L4Settings::mtu`]: IPv4's
/// minimum datagram size every host must accept (RFC 791). Below it the
/// quote of an ICMP "fragmentation needed" could be longer than the packet.
pub const MIN_MTU: u32 = 576;

/// IANA protocol number for ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IANA protocol number for IPv4-in-IP encapsulation.
pub const IPPROTO_IPIP: u8 = 4;
/// IANA protocol number for IPv6-in-IP encapsulation.
pub const IPPROTO_IPV6: u8 = 41;
/// IANA protocol number for ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// Nano-tokens per token in [`TokenBucket::nanotokens`]: refilling at
/// `rate` per second adds `rate` nano-tokens per elapsed nanosecond, so no
/// division is needed on the fast path.
pub const NANOTOKENS_PER_TOKEN: u64 = 1_000_000_000;

/// The flat index of `slot` in the live half of service `id`'s rings.
pub const fn ring_index(id: u32, generation: u32, slot: u32) -> u32 {
    (id * 2 + (generation & 1)) * MAX_RING_SIZE + slot
}

/// Entries [`MAP_RINGS`] needs for `services` services.
pub const fn ring_entries(services: u32) -> u32 {
    services * 2 * MAX_RING_SIZE
}

/// Value of [`MAP_REALS`]: where a backend is and how to reach it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealDef {
    /// Address bytes, network order; IPv4 in the first four bytes.
    pub addr: [u8; 16],
    /// Next-hop MAC (the real's own on a shared L2 segment).
    pub mac: [u8; 6],
    /// [`crate::FAMILY_V4`] or [`crate::FAMILY_V6`]; zero: unused slot.
    pub family: u8,
    /// `REAL_FLAG_*` bits.
    pub flags: u8,
    /// Interface to transmit on; zero or the ingress interface: `XDP_TX`,
    /// any other: `XDP_REDIRECT` through [`MAP_TX_PORTS`].
    pub ifindex: u32,
}

/// Key of [`MAP_CONNTRACK`]: a flow as the client sent it.
///
/// Aligned to 8 (its layout is the same as at 2, and its size a multiple
/// of 8): the BPF compiler may then write its addresses in 64-bit words
/// and read them in 32-bit ones (the hash) instead of bytes and halves.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Client address (IPv4 in the first four bytes).
    pub src: [u8; 16],
    /// VIP address.
    pub dst: [u8; 16],
    /// Client port, host order (kept for source-hashed services too: see
    /// the module docs).
    pub src_port: u16,
    /// VIP port, host order.
    pub dst_port: u16,
    /// IANA protocol number.
    pub proto: u8,
    /// Address family tag.
    pub family: u8,
    /// Explicit padding, always zero.
    pub _pad: [u8; 2],
}

/// Value of [`MAP_CONNTRACK`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    /// The real id the flow goes to.
    pub real: u32,
    /// The service the flow belongs to. The hit path uses the entry only
    /// when this is the id of the VIP the packet is for: a service id that
    /// a configuration change gives to another VIP never sends that VIP's
    /// flows to the old service's real. (A real id reused within the same
    /// service is not caught by this.)
    pub service: u32,
}

/// Counters of one service or one real, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L4Counters {
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded, as received (before encapsulation).
    pub bytes: u64,
    /// Flows that started here: conntrack misses on a TCP SYN or any UDP
    /// packet, and ICMP errors with no remembered flow.
    pub new_flows: u64,
    /// Conntrack misses on a TCP packet other than a SYN: a flow this CPU
    /// never saw or the LRU evicted (too small a table, or a reshuffle).
    pub lru_misses: u64,
}

/// Key of [`MAP_SYN_BUDGET`]: a client address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceKey {
    /// Address bytes, IPv4 in the first four.
    pub addr: [u8; 16],
    /// Address family tag.
    pub family: u8,
    /// Explicit padding, always zero.
    pub _pad: [u8; 3],
}

/// Value of [`MAP_SYN_BUDGET`]: a token bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    /// Tokens left, in units of 1/[`NANOTOKENS_PER_TOKEN`].
    pub nanotokens: u64,
    /// `bpf_ktime_get_ns` of the last refill.
    pub last_ns: u64,
}

/// Value of [`MAP_L4_SETTINGS`] (one entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L4Settings {
    /// Outer source of IPIP packets.
    pub source_v4: [u8; 4],
    /// Outer source of IP6IP6 packets.
    pub source_v6: [u8; 16],
    /// New flows per second per source, when the budget is on.
    pub syn_rate: u32,
    /// Bucket depth, in new flows.
    pub syn_burst: u32,
    /// `SETTINGS_*` bits.
    pub flags: u32,
    /// The smallest MTU of the interfaces edge transmits on (layer 3 bytes,
    /// as `ip link` shows it); zero: [`DEFAULT_MTU`]. An encapsulated
    /// packet longer than this is answered with ICMP "fragmentation needed"
    /// / ICMPv6 "packet too big" instead of being handed to a driver that
    /// would drop it silently.
    pub mtu: u32,
}

/// Value of [`MAP_IFACES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceDef {
    /// The interface's MAC: the source MAC of what edge sends on it.
    pub mac: [u8; 6],
    /// Explicit padding, always zero.
    pub _pad: [u8; 2],
}

/// Things the L4 path counts besides per-service traffic; the index into
/// [`MAP_L4_EVENTS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Event {
    /// An IP fragment to a VIP address: dropped (a later fragment carries
    /// no ports, so it cannot be steered to the first one's backend).
    FragmentDropped = 0,
    /// An ICMP/ICMPv6 error about a VIP flow, sent to the flow's backend.
    IcmpForwarded = 1,
    /// A packet to a service without a table or backend: passed up.
    NoBackend = 2,
    /// A new flow over its source's SYN budget: dropped.
    SynBudgetDropped = 3,
    /// `bpf_xdp_adjust_head` failed or the rewrite did not fit: dropped.
    EncapFailed = 4,
    /// The real's interface has no MAC or devmap entry: dropped.
    NoEgress = 5,
    /// A VIP packet redirected to another interface.
    Redirected = 6,
    /// A VIP packet too big for the egress MTU once encapsulated, answered
    /// with ICMP "fragmentation needed" / ICMPv6 "packet too big" (`XDP_TX`).
    TooBigReplied = 7,
    /// A VIP packet too big for the egress MTU that gets no ICMP answer:
    /// IPv4 without DF (its sender does not do path MTU discovery, and
    /// edge drops fragments to VIPs anyway), an ICMP error (never answered
    /// with another), or a packet shorter than the quote: dropped.
    TooBigDropped = 8,
    /// An IPv6 packet to a VIP address whose extension headers go on
    /// beyond what the parser walks: its fragment state and transport are
    /// unknown, so it is dropped.
    ExtHeadersDropped = 9,
    /// The program's per-CPU scratch slot was missing (a build or load
    /// bug): the packet was passed unclassified, counted as "other".
    NoScratch = 10,
    /// A conntrack or SYN-budget insert failed: the flow is not
    /// remembered (it is re-picked from the same table next time).
    MapUpdateFailed = 11,
    /// A VIP packet too big for the egress MTU, over this CPU's budget of
    /// ICMP replies ([`TOO_BIG_RATE`], [`TOO_BIG_BURST`]): dropped
    /// unanswered (its sender retransmits and gets a reply later).
    TooBigRateLimited = 12,
    /// A TCP packet other than a SYN with no usable conntrack entry went
    /// to the previous table's backend (see [`crate::VipMeta::prev_ring_size`]),
    /// which differed from the live table's pick and was up.
    SecondChance = 13,
}

impl L4Event {
    /// Number of events, the length of [`MAP_L4_EVENTS`].
    pub const COUNT: u32 = 14;
    /// Every event, in index order.
    pub const ALL: [L4Event; Self::COUNT as usize] = [
        L4Event::FragmentDropped,
        L4Event::IcmpForwarded,
        L4Event::NoBackend,
        L4Event::SynBudgetDropped,
        L4Event::EncapFailed,
        L4Event::NoEgress,
        L4Event::Redirected,
        L4Event::TooBigReplied,
        L4Event::TooBigDropped,
        L4Event::ExtHeadersDropped,
        L4Event::NoScratch,
        L4Event::MapUpdateFailed,
        L4Event::TooBigRateLimited,
        L4Event::SecondChance,
    ];

    /// The label used in metrics.
    pub const fn name(self) -> &'static str {
        match self {
            L4Event::FragmentDropped => "fragment_dropped",
            L4Event::IcmpForwarded => "icmp_forwarded",
            L4Event::NoBackend => "no_backend",
            L4Event::SynBudgetDropped => "syn_budget_dropped",
            L4Event::EncapFailed => "encap_failed",
            L4Event::NoEgress => "no_egress",
            L4Event::Redirected => "redirected",
            L4Event::TooBigReplied => "too_big_replied",
            L4Event::TooBigDropped => "too_big_dropped",
            L4Event::ExtHeadersDropped => "ext_headers_dropped",
            L4Event::NoScratch => "no_scratch",
            L4Event::MapUpdateFailed => "map_update_failed",
            L4Event::TooBigRateLimited => "too_big_rate_limited",
            L4Event::SecondChance => "second_chance",
        }
    }

    /// The index in [`MAP_L4_EVENTS`].
    pub const fn index(self) -> u32 {
        self as u32
    }
}

/// What the decap program did; the index into [`MAP_DECAP_STATS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapEvent {
    /// Outer header stripped, inner packet passed.
    Decapsulated = 0,
    /// A tunnel packet from a source not allowed: passed unchanged.
    NotAllowed = 1,
    /// Anything else: passed unchanged.
    Other = 2,
    /// The inner packet was unreadable or the strip failed: passed unchanged.
    Malformed = 3,
}

impl DecapEvent {
    /// Number of events.
    pub const COUNT: u32 = 4;
    /// Every event, in index order.
    pub const ALL: [DecapEvent; Self::COUNT as usize] = [
        DecapEvent::Decapsulated,
        DecapEvent::NotAllowed,
        DecapEvent::Other,
        DecapEvent::Malformed,
    ];

    /// The label used in metrics.
    pub const fn name(self) -> &'static str {
        match self {
            DecapEvent::Decapsulated => "decapsulated",
            DecapEvent::NotAllowed => "not_allowed",
            DecapEvent::Other => "other",
            DecapEvent::Malformed => "malformed",
        }
    }

    /// The index in [`MAP_DECAP_STATS`].
    pub const fn index(self) -> u32 {
        self as u32
    }
}
