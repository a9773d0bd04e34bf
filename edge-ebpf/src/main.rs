//! edge's XDP program: classify, count, drop denied sources, balance L4
//! services (conntrack, Maglev, IPIP/IP6IP6 encapsulation), pass the rest.
//!
//! The decisions live in host-testable modules of `edge_ebpf` (classify,
//! hash, token, encap); this file binds them to the XDP context and the
//! maps. The one dereference of packet memory is `edge_ebpf::xdp::XdpBuf`.
//!
//! The program only runs in the kernel; the host build (an empty `main`)
//! exists so that clippy can check this file.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    helpers::{bpf_ktime_get_ns, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    macros::{map, xdp},
    maps::{Array, DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use edge_common::{
    BanValue, Counters, DEFAULT_CONNTRACK_CAPACITY, DenyValue, FAMILY_V4, FAMILY_V6, FlowKey,
    FlowState, IPPROTO_TCP, IfaceDef, L4Counters, L4Event, L4Settings, MAX_BANS, MAX_DENY_ENTRIES,
    MAX_IFACES, MAX_L4_SERVICES, MAX_L7_PORTS, MAX_REALS, MAX_RING_SIZE, MAX_SYN_SOURCES, MAX_VIPS,
    PacketClass, PortKey, REAL_FLAG_UP, RealDef, SETTINGS_SYN_BUDGET, SourceKey, TOO_BIG_BURST,
    TOO_BIG_RATE, TokenBucket, VIP_FLAG_SOURCE_HASH, VipKey, VipMeta,
    filter::{self, PORT_ALL, SOURCE_ALL},
    ring_entries, ring_index,
};
use edge_ebpf::{
    PacketBuf,
    classify::{Action, Balance, Tables, Verdict, classify_into, same_vip},
    encap::{self, Outer},
    hash,
    parse::{ETH_HLEN, IPV4_MIN_HLEN, IPV6_HLEN, IpAddrs, MAX_L2_HLEN, VLAN_HLEN},
    token, toobig,
    xdp::XdpBuf,
};

// Each map's name is its static's name, which must match the constant of
// the same name in edge-common; a test checks the built object for each.
// Sizes marked "loader" are set by the daemon at load time.
#[map]
static EDGE_CLASS_STATS: PerCpuArray<Counters> =
    PerCpuArray::with_max_entries(PacketClass::COUNT, 0);

#[map]
static EDGE_DENY_V4: LpmTrie<[u8; 4], DenyValue> = LpmTrie::with_max_entries(MAX_DENY_ENTRIES, 0);

#[map]
static EDGE_DENY_V6: LpmTrie<[u8; 16], DenyValue> = LpmTrie::with_max_entries(MAX_DENY_ENTRIES, 0);

#[map]
static EDGE_BANS_V4: HashMap<[u8; 4], BanValue> = HashMap::with_max_entries(MAX_BANS, 0);

#[map]
static EDGE_BANS_V6: HashMap<[u8; 16], BanValue> = HashMap::with_max_entries(MAX_BANS, 0);

#[map]
static EDGE_L7_PORTS: HashMap<PortKey, u8> = HashMap::with_max_entries(MAX_L7_PORTS, 0);

#[map]
static EDGE_VIPS: HashMap<VipKey, VipMeta> = HashMap::with_max_entries(MAX_VIPS, 0);

// The pre-filters of the deny tries, the ban maps, the VIPs and the L7
// ports (edge_common::filter): two array lookups per packet instead of a
// trie walk and two or three hash lookups.
#[map]
static EDGE_FILTER: Array<u64> = Array::with_max_entries(filter::WORDS, 0);

#[map]
static EDGE_REALS: Array<RealDef> = Array::with_max_entries(MAX_REALS, 0);

// Loader: sized to the configured services.
#[map]
static EDGE_RINGS: Array<u32> = Array::with_max_entries(ring_entries(MAX_L4_SERVICES), 0);

// Loader: `l4.conntrack_capacity`. One value per flow, seen by every CPU:
// a per-CPU value was only on the CPU that took the SYN, so a flow whose
// next packet came in on another CPU (a veth follows the sender's CPU, a
// NIC's RSS can be re-steered) was re-picked from the Maglev table, and
// after a table change could land on another backend and break.
// BPF_F_NO_COMMON_LRU (2): an LRU list per CPU, so that an insert into a
// full table evicts from this CPU's list without the lock the CPUs share
// otherwise (about 8% of a new flow's time with a million entries).
#[map]
static EDGE_CONNTRACK: LruHashMap<edge_common::FlowKey, FlowState> =
    LruHashMap::with_max_entries(DEFAULT_CONNTRACK_CAPACITY, 2);

// The VIP each service id belongs to now, for the conntrack-first hit
// (see edge_common::l4, "Connection tracking").
#[map]
static EDGE_SERVICES: Array<VipKey> = Array::with_max_entries(MAX_L4_SERVICES, 0);

#[map]
static EDGE_VIP_STATS: PerCpuArray<L4Counters> = PerCpuArray::with_max_entries(MAX_L4_SERVICES, 0);

#[map]
static EDGE_REAL_STATS: PerCpuArray<L4Counters> = PerCpuArray::with_max_entries(MAX_REALS, 0);

#[map]
static EDGE_L4_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(L4Event::COUNT, 0);

// Shared across CPUs on purpose: a per-CPU budget would multiply the
// allowance by the CPU count. Racing updates may lose a refill or a take,
// which only blurs the rate slightly.
#[map]
static EDGE_SYN_BUDGET: LruHashMap<SourceKey, TokenBucket> =
    LruHashMap::with_max_entries(MAX_SYN_SOURCES, 0);

// The verdict of the packet being processed: too big for the BPF stack
// beside the parser's temporaries. Not part of the daemon's interface.
#[map]
static EDGE_SCRATCH: PerCpuArray<Verdict> = PerCpuArray::with_max_entries(1, 0);

// This CPU's budget of ICMP too-big replies; per CPU on purpose (no shared
// cache line on the path of a flood). Not part of the daemon's interface.
#[map]
static EDGE_TOO_BIG_BUDGET: PerCpuArray<TokenBucket> = PerCpuArray::with_max_entries(1, 0);

#[map]
static EDGE_L4_SETTINGS: Array<L4Settings> = Array::with_max_entries(1, 0);

#[map]
static EDGE_IFACES: HashMap<u32, IfaceDef> = HashMap::with_max_entries(MAX_IFACES, 0);

#[map]
static EDGE_TX_PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_IFACES, 0);

/// The maps, as the classifier's lookups.
struct Maps;

/// An LPM trie key placed so that its address bytes are 8-byte aligned on
/// the stack: aya's `Key` is packed, and the program is built with
/// misaligned accesses allowed (packet reads in one load rather than one
/// per byte), which the verifier accepts for packet and map memory but
/// never for the stack.
#[repr(C, align(8))]
struct LpmKey<K> {
    _pad: u32,
    key: Key<K>,
}

impl<K> LpmKey<K> {
    #[inline(always)]
    fn new(prefix_len: u32, data: K) -> Self {
        Self {
            _pad: 0,
            key: Key::new(prefix_len, data),
        }
    }
}

/// The bits of `slot` (`all` of them, so that every lookup runs, if its
/// word were missing, which an object built from this tree never has).
#[inline(always)]
fn filter_bits(slot: filter::Slot, all: u64) -> u64 {
    match EDGE_FILTER.get(slot.index) {
        Some(word) => slot.bits(*word, all),
        None => all,
    }
}

impl Tables for Maps {
    #[inline(always)]
    fn source_filter(&self, addrs: &IpAddrs) -> u64 {
        let slot = match *addrs {
            IpAddrs::V4 { src, .. } => filter::source_v4(u16::from_be_bytes([src[0], src[1]])),
            IpAddrs::V6 { src, .. } => filter::source_v6(u16::from_be_bytes([src[0], src[1]])),
        };
        // Ban bits are never written (see `filter::BANS`): `banned` asks
        // the ban word instead.
        filter_bits(slot, SOURCE_ALL) | filter::SOURCE_BAN
    }

    #[inline(always)]
    fn port_filter(&self, port: u16) -> u64 {
        filter_bits(filter::port(port), PORT_ALL)
    }

    #[inline(always)]
    fn denied(&self, addrs: &IpAddrs) -> bool {
        match *addrs {
            IpAddrs::V4 { src, .. } => EDGE_DENY_V4.get(&LpmKey::new(32, src).key).is_some(),
            IpAddrs::V6 { src, .. } => EDGE_DENY_V6.get(&LpmKey::new(128, src).key).is_some(),
        }
    }

    #[inline(always)]
    fn banned(&self, addrs: &IpAddrs) -> bool {
        // No ban anywhere (the ban word is zero): skip the hash lookup,
        // which every packet for a VIP or a listener would pay otherwise.
        if matches!(EDGE_FILTER.get(filter::BANS), Some(0)) {
            return false;
        }
        // SAFETY: the pointers came from successful lookups; BanValue is
        // plain data, copied out at once.
        let ban = match *addrs {
            IpAddrs::V4 { src, .. } => EDGE_BANS_V4.get_ptr(src).map(|b| unsafe { *b }),
            IpAddrs::V6 { src, .. } => EDGE_BANS_V6.get_ptr(src).map(|b| unsafe { *b }),
        };
        // An expired entry is ignored until the daemon sweeps it.
        // SAFETY: a helper without arguments.
        ban.is_some_and(|b| unsafe { bpf_ktime_get_ns() } < b.expires_ns)
    }

    #[inline(always)]
    fn vip(&self, key: &VipKey) -> Option<VipMeta> {
        // SAFETY: the pointer came from a successful lookup; VipMeta is
        // plain data, copied out at once.
        EDGE_VIPS.get_ptr(key).map(|m| unsafe { *m })
    }

    #[inline(always)]
    fn is_l7_port(&self, key: &PortKey) -> bool {
        EDGE_L7_PORTS.get_ptr(key).is_some()
    }

    #[inline(always)]
    fn flow(&self, flow: &FlowKey) -> Option<FlowState> {
        // SAFETY: a value from a successful lookup, read at once (an update
        // replaces the element; the old one stays readable until RCU frees it).
        EDGE_CONNTRACK.get_ptr(flow).map(|s| unsafe { *s })
    }

    #[inline(always)]
    fn serves(&self, id: u32, flow: &FlowKey) -> bool {
        EDGE_SERVICES.get(id).is_some_and(|key| same_vip(key, flow))
    }

    #[inline(always)]
    fn real_up(&self, id: u32) -> bool {
        real_up(id)
    }
}

#[xdp]
pub fn edge_xdp(ctx: XdpContext) -> u32 {
    let buf = XdpBuf(&ctx);
    let len = buf.len() as u64;
    let Some(verdict) = EDGE_SCRATCH.get_ptr_mut(0) else {
        // Cannot happen with a well-built object; if it does, the packet
        // goes to the stack unexamined, and both counters say so.
        count(&ctx, PacketClass::Other, len);
        event(L4Event::NoScratch);
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's slot of a per-CPU array, from a successful lookup;
    // nothing else runs on this CPU while the program does.
    let verdict = unsafe { &mut *verdict };
    classify_into(&buf, &Maps, verdict);
    count(&ctx, verdict.class, len);
    if let Some(e) = verdict.event {
        event(e);
    }
    match verdict.action {
        Action::Pass => xdp_action::XDP_PASS,
        Action::Drop => xdp_action::XDP_DROP,
        Action::Balance => balance(ctx.ctx, &verdict.balance, len),
    }
}

/// Forwards a VIP packet: the too-big check, then the real's pick, then
/// the encapsulation, with the settings looked up once for all three.
#[inline(always)]
fn balance(raw: *mut xdp_md, b: &Balance, len: u64) -> u32 {
    let Some(settings) = EDGE_L4_SETTINGS.get(0) else {
        // An array's only slot: cannot be missing from a well-built object.
        event(L4Event::NoBackend);
        return xdp_action::XDP_PASS;
    };
    // Checked before a backend is picked: a packet answered here creates
    // no flow and is not counted as forwarded.
    if toobig::exceeds(b.ip_len, overhead(b.v6), settings.mtu) {
        return too_big(raw, b, settings.mtu);
    }
    match pick(b, settings, len) {
        Ok(real) => forward(raw, b, settings, real),
        Err(action) => action,
    }
}

/// Bytes the tunnel adds to an IPv6 (or IPv4) packet.
#[inline(always)]
fn overhead(v6: bool) -> u32 {
    if v6 {
        IPV6_HLEN as u32
    } else {
        IPV4_MIN_HLEN as u32
    }
}

/// The L2 length of a verdict restated as a constant: the verdict lives in
/// map memory, where the verifier cannot see that it is 14, 18 or 22.
#[inline(always)]
fn l2_len_of(b: &Balance) -> usize {
    if b.l2_len == MAX_L2_HLEN {
        MAX_L2_HLEN
    } else if b.l2_len == ETH_HLEN + VLAN_HLEN {
        ETH_HLEN + VLAN_HLEN
    } else {
        ETH_HLEN
    }
}

/// Answers a VIP packet too big for the egress `mtu` (zero: the default)
/// with ICMP "fragmentation needed" / ICMPv6 "packet too big", back out of
/// the ingress interface; or drops it when it gets no answer (see
/// [`toobig`]).
#[inline(never)]
fn too_big(raw: *mut xdp_md, b: &Balance, mtu: u32) -> u32 {
    let ctx = &XdpContext::new(raw);
    let mtu = if mtu == 0 {
        edge_common::DEFAULT_MTU
    } else {
        mtu
    };
    let l2_len = l2_len_of(b);
    let reply = if b.icmp {
        None
    } else {
        toobig::reply(
            &XdpBuf(ctx),
            l2_len,
            b.v6,
            mtu.saturating_sub(overhead(b.v6)),
        )
    };
    let Some(reply) = reply else {
        event(L4Event::TooBigDropped);
        return xdp_action::XDP_DROP;
    };
    if !too_big_budget() {
        event(L4Event::TooBigRateLimited);
        return xdp_action::XDP_DROP;
    }
    let keep = l2_len + reply.quote();
    let cut = XdpBuf(ctx).len().saturating_sub(keep) as i32;
    // SAFETY: the helpers check the new bounds against the buffer and fail
    // cleanly; packet pointers are re-read after each (see XdpBuf::at).
    if unsafe { bpf_xdp_adjust_tail(raw, -cut) } != 0
        || unsafe { bpf_xdp_adjust_head(raw, -(reply.headroom() as i32)) } != 0
    {
        event(L4Event::TooBigDropped);
        return xdp_action::XDP_DROP;
    }
    let mut buf = XdpBuf(ctx);
    if toobig::write(&mut buf, &reply).is_none() {
        event(L4Event::TooBigDropped);
        return xdp_action::XDP_DROP;
    }
    event(L4Event::TooBigReplied);
    xdp_action::XDP_TX
}

/// The benchmark's baseline: the cheapest program there is.
#[xdp]
pub fn edge_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Finds the flow's real (conntrack, else Maglev: the live table, or for a
/// TCP packet other than a SYN the previous one while it is trusted, see
/// [`previous_pick`]) and counts the packet; `Err` carries the action when
/// it cannot be balanced.
///
/// The classifier, this and [`forward`] are separate BPF functions called
/// one after the other: a BPF call chain has 512 bytes of stack, which all
/// three inlined together would exceed.
///
/// The flow key is handed to the conntrack map where it lies, in the
/// verdict (a map value, which the helpers take as a key), not copied.
#[inline(never)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "by value, the 40-byte key would be copied to the stack for each map call"
)]
fn pick(b: &Balance, settings: &L4Settings, len: u64) -> Result<u32, u32> {
    let mut new_flow = false;
    let mut lru_miss = false;
    let mut pick = 0u32;
    // A TCP SYN opens a flow: it skips the conntrack lookup (a miss, on the
    // new-flow path) and takes the Maglev pick, which it then remembers, as
    // Katran does. A retransmitted SYN gets the same pick from the same
    // table; after a table change it starts afresh on the new owner.
    let syn = b.flow.proto == IPPROTO_TCP && !b.mid_flow && !b.icmp;
    let state = if b.ct_checked {
        // The classifier looked already (and on a hit vouched for the
        // entry: its service is this VIP's, its real is up).
        Some(b.ct)
    } else if syn {
        None
    } else {
        Maps.flow(&b.flow)
    };
    // An entry written for another service (its VIP's id was reused by a
    // reload) is a miss: the flow is re-picked from this service's table.
    if let Some(state) = state
        && state.service == b.meta.id
    {
        pick = state.real;
    }
    if !b.hit && !real_up(pick) {
        if b.icmp {
            // An error about a flow this CPU never saw: still goes to the
            // flow's Maglev backend, without creating state.
        } else if b.mid_flow {
            lru_miss = true;
        } else {
            new_flow = true;
        }
        if !b.icmp && settings.flags & SETTINGS_SYN_BUDGET != 0 && !within_budget(&b.flow, settings)
        {
            event(L4Event::SynBudgetDropped);
            return Err(xdp_action::XDP_DROP);
        }
        let size = b.meta.ring_size;
        if size == 0 {
            event(L4Event::NoBackend);
            return Err(xdp_action::XDP_PASS);
        }
        let source_only = b.meta.flags & VIP_FLAG_SOURCE_HASH != 0;
        // One hash for both tables: `hash::slot` is this hash modulo the
        // table size.
        let h = hash::flow_hash(&b.flow, source_only);
        pick = match EDGE_RINGS.get(ring_index(b.meta.id, b.meta.generation, h % size)) {
            Some(id) => *id,
            None => 0,
        };
        // A TCP packet in the middle of a flow this host does not know:
        // behind ECMP, a flow another host (same tables) established
        // before the last table change; its backend is the previous
        // table's, if that is still up. A SYN starts afresh on the live
        // table, and UDP has no flow start to tell the two apart.
        if b.mid_flow && !b.icmp && b.flow.proto == IPPROTO_TCP {
            let prev = previous_pick(&b.meta, h);
            if prev != pick && real_up(prev) {
                pick = prev;
                event(L4Event::SecondChance);
            }
        }
        if !real_up(pick) {
            event(L4Event::NoBackend);
            return Err(xdp_action::XDP_PASS);
        }
        // On failure (map full is impossible for an LRU) the flow is simply
        // re-picked next time: same table, same answer.
        if !b.icmp
            && EDGE_CONNTRACK
                .insert(
                    &b.flow,
                    FlowState {
                        real: pick,
                        service: b.meta.id,
                    },
                    0,
                )
                .is_err()
        {
            event(L4Event::MapUpdateFailed);
        }
    }
    add(&EDGE_VIP_STATS, b.meta.id, len, new_flow, lru_miss);
    add(&EDGE_REAL_STATS, pick, len, new_flow, lru_miss);
    Ok(pick)
}

/// The real the previous table (the idle half, see
/// [`VipMeta::prev_ring_size`]) gives the flow of hash `h`, while the
/// daemon still trusts it; 0 (no backend) otherwise. The clock is read
/// only here, on a mid-flow miss of a service that has a previous table.
#[inline(always)]
fn previous_pick(meta: &VipMeta, h: u32) -> u32 {
    let size = meta.prev_ring_size;
    // Zero: no previous table. Beyond a half, slots would reach into the
    // next half (another service's); the daemon never writes that, but
    // the kernel does not take it on trust.
    if size == 0 || size > MAX_RING_SIZE {
        return 0;
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    if unsafe { bpf_ktime_get_ns() } >= meta.prev_until_ns {
        return 0;
    }
    match EDGE_RINGS.get(ring_index(meta.id, meta.generation ^ 1, h % size)) {
        Some(id) => *id,
        None => 0,
    }
}

/// Whether real `id` exists and is up.
#[inline(always)]
fn real_up(id: u32) -> bool {
    if id == 0 {
        return false;
    }
    match EDGE_REALS.get(id) {
        Some(real) => real.family != 0 && real.flags & REAL_FLAG_UP != 0,
        None => false,
    }
}

/// Takes a token from this CPU's budget of ICMP too-big replies. A zeroed
/// bucket (the first use) starts full.
#[inline(always)]
fn too_big_budget() -> bool {
    let Some(bucket) = EDGE_TOO_BIG_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot of a per-CPU array, from a successful lookup.
    let bucket = unsafe { &mut *bucket };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if bucket.last_ns == 0 {
        *bucket = token::first(now, TOO_BIG_BURST);
        return true;
    }
    token::take(bucket, now, TOO_BIG_RATE, TOO_BIG_BURST)
}

/// Takes a token from the flow source's bucket.
#[inline(always)]
fn within_budget(flow: &edge_common::FlowKey, settings: &L4Settings) -> bool {
    let key = SourceKey {
        addr: flow.src,
        family: flow.family,
        _pad: [0; 3],
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    match EDGE_SYN_BUDGET.get_ptr_mut(key) {
        Some(bucket) => {
            // SAFETY: the pointer came from a successful lookup; see the
            // map's comment on concurrent updates.
            let bucket = unsafe { &mut *bucket };
            token::take(bucket, now, settings.syn_rate, settings.syn_burst)
        }
        None => {
            if EDGE_SYN_BUDGET
                .insert(key, token::first(now, settings.syn_burst), 0)
                .is_err()
            {
                event(L4Event::MapUpdateFailed);
            }
            settings.syn_burst > 0
        }
    }
}

/// Encapsulates towards real `id` and transmits. The context travels as
/// its raw pointer, which stays in a register.
#[inline(never)]
fn forward(raw: *mut xdp_md, b: &Balance, settings: &L4Settings, id: u32) -> u32 {
    let ctx = &XdpContext::new(raw);
    let Some(real) = EDGE_REALS.get(id) else {
        event(L4Event::NoBackend);
        return xdp_action::XDP_PASS;
    };
    let buf = XdpBuf(ctx);
    let l2_len = l2_len_of(b);
    let Some(inner) = encap::inner(&buf, l2_len, b.v6) else {
        event(L4Event::EncapFailed);
        return xdp_action::XDP_DROP;
    };
    let outer = match (b.v6, real.family) {
        (false, FAMILY_V4) => Outer::V4 {
            src: settings.source_v4,
            dst: [real.addr[0], real.addr[1], real.addr[2], real.addr[3]],
        },
        (true, FAMILY_V6) => Outer::V6 {
            src: settings.source_v6,
            dst: real.addr,
        },
        _ => {
            event(L4Event::EncapFailed);
            return xdp_action::XDP_DROP;
        }
    };
    let ingress = ctx.ingress_ifindex() as u32;
    let redirect = real.ifindex != 0 && real.ifindex != ingress;
    let egress = if redirect { real.ifindex } else { ingress };
    let frame_dst = inner.dst_mac;
    // Transmitting back out of the ingress interface, a unicast frame was
    // addressed to that interface: its destination MAC is the interface's,
    // and no lookup is needed (Katran does the same).
    let src_mac = if !redirect && frame_dst[0] & 1 == 0 {
        frame_dst
    } else {
        match EDGE_IFACES.get_ptr(egress) {
            // SAFETY: the pointer came from a successful lookup; plain data.
            Some(i) => unsafe { (*i).mac },
            None if !redirect => frame_dst,
            None => {
                event(L4Event::NoEgress);
                return xdp_action::XDP_DROP;
            }
        }
    };
    let grow = outer.len() as i32;
    // SAFETY: the helper checks the headroom itself and fails cleanly.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        event(L4Event::EncapFailed);
        return xdp_action::XDP_DROP;
    }
    let mut buf = XdpBuf(ctx);
    if encap::write(&mut buf, &inner, &outer, real.mac, src_mac).is_none() {
        event(L4Event::EncapFailed);
        return xdp_action::XDP_DROP;
    }
    if redirect {
        event(L4Event::Redirected);
        return match EDGE_TX_PORTS.redirect(real.ifindex, 0) {
            Ok(action) => action,
            Err(_) => {
                event(L4Event::NoEgress);
                xdp_action::XDP_DROP
            }
        };
    }
    xdp_action::XDP_TX
}

#[inline(always)]
fn add(map: &PerCpuArray<L4Counters>, index: u32, bytes: u64, new_flow: bool, lru_miss: bool) {
    if let Some(c) = map.get_ptr_mut(index) {
        // SAFETY: a per-CPU array slot is only touched by this CPU, and the
        // pointer came from a successful lookup.
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += bytes;
        c.new_flows += u64::from(new_flow);
        c.lru_misses += u64::from(lru_miss);
    }
}

#[inline(always)]
fn event(e: L4Event) {
    if let Some(c) = EDGE_L4_EVENTS.get_ptr_mut(e.index()) {
        // SAFETY: per-CPU slot, from a successful lookup.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn count(ctx: &XdpContext, class: PacketClass, bytes: u64) {
    match EDGE_CLASS_STATS.get_ptr_mut(class.index()) {
        Some(counters) => {
            // SAFETY: a per-CPU array slot is only touched by this CPU, and
            // the pointer came from a successful lookup.
            let counters = unsafe { &mut *counters };
            counters.packets += 1;
            counters.bytes += bytes;
        }
        // Only possible if the map were sized wrong: worth a log line.
        None => aya_log_ebpf::error!(ctx, "edge: no stats slot for class {}", class.index()),
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
