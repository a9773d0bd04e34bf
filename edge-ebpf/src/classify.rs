//! The fast path's decision for one packet: which class it is and what to do.
//!
//! The order is fixed and cheap-first: a packet edge cannot read as IP goes
//! up the stack (except a frame with more VLAN tags than edge parses: its
//! source is unknown, so it could dodge the deny list, and it is dropped);
//! a denied source is dropped before its transport header is even looked
//! at; then the destination decides between an L4 virtual service, an L7
//! listener and everything else.
//!
//! Most packets skip the costly lookups: the pre-filter words of
//! [`edge_common::filter`] say, for the source's /16 and the destination
//! port, whether the deny list, the bans, the VIPs or the L7 ports could
//! match at all ([`Tables::source_filter`], [`Tables::port_filter`]); a
//! clear bit skips that lookup, a set bit leaves the decision to it, so
//! the outcome is the lookups' own.
//!
//! A packet to a VIP port other than a TCP SYN looks conntrack up before
//! the VIP map, and an entry the service map vouches for is a hit without
//! the VIP lookup (see `edge_common::l4`, "Connection tracking"). The price
//! is a conntrack miss for every other such packet to a VIP's port
//! (protocol included) on an address that is no VIP: the host's own (an
//! L7 listener on the VIPs' port, say) or traffic routed through, before
//! it goes up the stack.
//!
//! For the L4 path: a fragment to a VIP address is dropped (and counted):
//! later fragments carry no ports, so they could not follow the first to
//! its backend (Katran drops them too), and so is an IPv6 packet whose
//! extension headers go on beyond the parser's walk (it may be a fragment);
//! an ICMP error about a VIP flow is balanced like the flow it quotes (see
//! [`crate::icmp`]).

use crate::{
    PacketBuf, icmp,
    parse::{self, ETH_P_IPV4, ETH_P_IPV6, Fragment, IpAddrs, IpHeader, ParseError},
};
use edge_common::{
    FAMILY_V4, FAMILY_V6, FlowKey, FlowState, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, L4Event,
    PacketClass, PortKey, VipKey, VipMeta,
    filter::{
        PORT_ALL, PORT_L7_TCP, PORT_VIP_TCP, PORT_VIP_UDP, SOURCE_ALL, SOURCE_BAN, SOURCE_DENY,
    },
};

/// TCP flag bits.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// What the program does with the packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Action {
    /// Hand it to the kernel stack.
    #[default]
    Pass,
    /// Drop it here.
    Drop,
    /// Send it to a backend of an L4 service, as [`Verdict::balance`] says.
    Balance,
}

/// A packet for an L4 service: everything the forwarding step needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    /// The service.
    pub meta: VipMeta,
    /// The flow, as the client sends it (for ICMP errors: the quoted flow
    /// reversed), ports included also for source-hashed services: it is
    /// the conntrack key, and the hash leaves the client port out itself.
    pub flow: FlowKey,
    /// Offset of the IP header (the L2 header's length).
    pub l2_len: usize,
    /// Whether the packet is IPv6.
    pub v6: bool,
    /// A TCP packet that does not open a connection: a conntrack miss on it
    /// is an LRU miss, not a new flow.
    pub mid_flow: bool,
    /// An ICMP error about the flow: forwarded, but never creates state.
    pub icmp: bool,
    /// Length of the IP packet (header and payload, without Ethernet
    /// padding), for the egress MTU check.
    pub ip_len: u32,
    /// Whether the classifier already looked the flow up in conntrack
    /// (every packet to a VIP port but a TCP SYN or an ICMP error): the
    /// balancer then judges `ct` instead of looking again.
    pub ct_checked: bool,
    /// What that lookup found (zeroed: nothing).
    pub ct: FlowState,
    /// A conntrack hit the classifier vouched for (its service owns this
    /// VIP, its real is up): the packet goes to `ct.real`. The VIP map was
    /// not read, so of `meta` only `id` is this packet's; the other fields
    /// may be an earlier packet's and are not read on a hit.
    pub hit: bool,
}

/// The outcome for one packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The class the packet is counted under.
    pub class: PacketClass,
    /// What to do with it.
    pub action: Action,
    /// Why parsing stopped, for malformed packets.
    pub error: Option<ParseError>,
    /// An L4 event to count, if any.
    pub event: Option<L4Event>,
    /// For [`Action::Balance`]: the service and flow. Not cleared between
    /// packets (see [`classify_into`]): on other actions, and in `meta`
    /// beyond its id on a hit ([`Balance::hit`]), it may hold an earlier
    /// packet's values.
    pub balance: Balance,
}

/// The lookups the decision needs; the kernel answers them from BPF maps,
/// tests from plain data.
pub trait Tables {
    /// Which source lookups could match the source of `addrs`: the
    /// [`SOURCE_DENY`] and [`SOURCE_BAN`] bits of its pre-filter slot; a
    /// clear bit skips [`Tables::denied`] or [`Tables::banned`]. The default
    /// (no pre-filter) has them all run.
    fn source_filter(&self, _addrs: &IpAddrs) -> u64 {
        SOURCE_ALL
    }
    /// Which destination lookups could match port `port`: the
    /// [`PORT_VIP_TCP`], [`PORT_VIP_UDP`] and [`PORT_L7_TCP`] bits of its
    /// pre-filter slot; a clear bit skips [`Tables::vip`] or
    /// [`Tables::is_l7_port`]. The default (no pre-filter) has them all run.
    fn port_filter(&self, _port: u16) -> u64 {
        PORT_ALL
    }
    /// Whether the source address falls in a denied prefix.
    fn denied(&self, addrs: &IpAddrs) -> bool;
    /// Whether the source address is banned (by L7 verdicts) right now.
    fn banned(&self, _addrs: &IpAddrs) -> bool {
        false
    }
    /// The L4 virtual service at `key`, if there is one.
    fn vip(&self, key: &VipKey) -> Option<VipMeta>;
    /// Whether the destination port belongs to an L7 listener.
    fn is_l7_port(&self, key: &PortKey) -> bool;
    /// The conntrack entry of `flow`, if any. The default (no conntrack)
    /// leaves every flow to the balancer.
    fn flow(&self, _flow: &FlowKey) -> Option<FlowState> {
        None
    }
    /// Whether service `id` is the one at `flow`'s VIP now (see
    /// [`same_vip`]).
    fn serves(&self, _id: u32, _flow: &FlowKey) -> bool {
        false
    }
    /// Whether real `id` exists and is up.
    fn real_up(&self, _id: u32) -> bool {
        false
    }
}

/// Classifies one packet.
pub fn classify<P: PacketBuf + ?Sized, T: Tables>(p: &P, tables: &T) -> Verdict {
    let mut v = Verdict::default();
    classify_into(p, tables, &mut v);
    v
}

/// Classifies one packet into `v`.
///
/// `class`, `action`, `error` and `event` are always written; `balance` is
/// written in full only for [`Action::Balance`] (otherwise it may keep an
/// earlier packet's values), so that the kernel does not clear the whole
/// verdict (a byte-by-byte `memset` in BPF) on every packet.
///
/// The kernel keeps the verdict in a per-CPU scratch map rather than on
/// the stack, and this runs as its own BPF function: a BPF call chain has
/// 512 bytes of stack, and the parsed addresses alone are spilled byte by
/// byte around every map lookup.
#[inline(never)]
pub fn classify_into<P: PacketBuf + ?Sized, T: Tables>(p: &P, tables: &T, v: &mut Verdict) {
    v.class = PacketClass::Other;
    v.action = Action::Pass;
    v.error = None;
    v.event = None;
    let eth = match parse::ethernet(p) {
        Ok(eth) => eth,
        Err(e @ ParseError::Unsupported(_)) => {
            v.class = PacketClass::Unparsed;
            v.action = Action::Drop;
            v.error = Some(e);
            return;
        }
        Err(e) => return malformed(v, e),
    };
    let ip = match eth.ether_type {
        ETH_P_IPV4 => parse::ipv4(p, eth.l3_offset),
        ETH_P_IPV6 => parse::ipv6(p, eth.l3_offset),
        _ => return,
    };
    let ip = match ip {
        Ok(ip) => ip,
        Err(e) => return malformed(v, e),
    };
    let source = tables.source_filter(&ip.addrs);
    if source & SOURCE_DENY != 0 && tables.denied(&ip.addrs) {
        v.class = PacketClass::Denied;
        v.action = Action::Drop;
        return;
    }
    v.balance.l2_len = eth.l3_offset;
    v.balance.v6 = eth.ether_type == ETH_P_IPV6;
    v.balance.ip_len = ip.len;
    if ip.fragment != Fragment::No && tables.vip(&address_key(&ip)).is_some() {
        if banned_source(tables, source, &ip) {
            return banned(v);
        }
        v.class = PacketClass::Vip;
        v.action = Action::Drop;
        v.event = Some(if ip.fragment == Fragment::Unknown {
            L4Event::ExtHeadersDropped
        } else {
            L4Event::FragmentDropped
        });
        return;
    }
    if ip.proto == IPPROTO_ICMP || ip.proto == IPPROTO_ICMPV6 {
        if let Some(e) = icmp::error_flow(p, &ip)
            && let Some(meta) = tables.vip(&e.vip)
        {
            if banned_source(tables, source, &ip) {
                return banned(v);
            }
            v.class = PacketClass::Vip;
            v.action = Action::Balance;
            v.event = Some(L4Event::IcmpForwarded);
            v.balance.meta = meta;
            v.balance.flow = e.flow;
            v.balance.mid_flow = false;
            v.balance.icmp = true;
            v.balance.ct_checked = false;
            v.balance.hit = false;
        }
        return;
    }
    let ports = match parse::ports(p, &ip) {
        Ok(Some(ports)) => ports,
        Ok(None) => return,
        Err(e) => return malformed(v, e),
    };
    // `ports` is only TCP or UDP.
    let tcp = ip.proto == IPPROTO_TCP;
    let port = tables.port_filter(ports.dst);
    let vip_bit = if tcp { PORT_VIP_TCP } else { PORT_VIP_UDP };
    if port & vip_bit != 0 {
        let mid_flow = tcp && (ports.flags & TCP_SYN == 0 || ports.flags & TCP_ACK != 0);
        fill_flow(&ip, ports.src, ports.dst, &mut v.balance.flow);
        v.balance.mid_flow = mid_flow;
        v.balance.icmp = false;
        v.balance.ct = FlowState::default();
        v.balance.hit = false;
        // Conntrack first (see edge_common::l4, "Connection tracking"),
        // except for a SYN, which the balancer sends to the live table
        // whatever conntrack says.
        v.balance.ct_checked = !tcp || mid_flow;
        if v.balance.ct_checked
            && let Some(state) = tables.flow(&v.balance.flow)
        {
            v.balance.ct = state;
            if tables.serves(state.service, &v.balance.flow) && tables.real_up(state.real) {
                if banned_source(tables, source, &ip) {
                    return banned(v);
                }
                v.class = PacketClass::Vip;
                v.action = Action::Balance;
                // Only the id: clearing the rest of `meta` would be a
                // call to BPF's byte-by-byte `memset` on every hit.
                v.balance.meta.id = state.service;
                v.balance.hit = true;
                return;
            }
        }
        if let Some(meta) = tables.vip(&vip_key(&ip, ports.dst)) {
            if banned_source(tables, source, &ip) {
                return banned(v);
            }
            v.class = PacketClass::Vip;
            v.action = Action::Balance;
            v.balance.meta = meta;
            return;
        }
    }
    // L7 listeners are TCP: the daemon writes no other protocol's ports.
    if tcp && port & PORT_L7_TCP != 0 && tables.is_l7_port(&PortKey::new(ports.dst, ip.proto)) {
        if banned_source(tables, source, &ip) {
            return banned(v);
        }
        v.class = PacketClass::L7;
    }
}

/// Whether the source of `ip` is banned, asked only of packets for edge's
/// listeners and VIPs; `source` is its pre-filter bits.
#[inline(always)]
fn banned_source<T: Tables>(tables: &T, source: u64, ip: &IpHeader) -> bool {
    source & SOURCE_BAN != 0 && tables.banned(&ip.addrs)
}

// A banned source loses only what it came for, edge's listeners and VIPs:
// replies to edge's own connections (a backend, Redis, a key server) and
// the host's other traffic from that address still pass.
#[inline(always)]
fn banned(v: &mut Verdict) {
    v.class = PacketClass::Banned;
    v.action = Action::Drop;
}

// Malformed packets are passed: the kernel stack is the authority on
// traffic edge does not own, and it drops and counts bad headers itself.
#[inline(always)]
fn malformed(v: &mut Verdict, error: ParseError) {
    v.class = PacketClass::Malformed;
    v.error = Some(error);
}

/// Whether `key` is the VIP `flow` is addressed to: its address, port,
/// protocol and family. Compared as integers, because BPF has no `memcmp`.
#[inline(always)]
pub fn same_vip(key: &VipKey, flow: &FlowKey) -> bool {
    u128::from_ne_bytes(key.addr) == u128::from_ne_bytes(flow.dst)
        && key.port == flow.dst_port
        && key.proto == flow.proto
        && key.family == flow.family
}

/// The VIP key a packet's destination would have.
pub fn vip_key(ip: &IpHeader, dst_port: u16) -> VipKey {
    match ip.addrs {
        IpAddrs::V4 { dst, .. } => VipKey::v4(dst, dst_port, ip.proto),
        IpAddrs::V6 { dst, .. } => VipKey::v6(dst, dst_port, ip.proto),
    }
}

/// The address marker key of a packet's destination: port 0, protocol 0.
pub fn address_key(ip: &IpHeader) -> VipKey {
    match ip.addrs {
        IpAddrs::V4 { dst, .. } => VipKey::v4(dst, 0, 0),
        IpAddrs::V6 { dst, .. } => VipKey::v6(dst, 0, 0),
    }
}

/// The conntrack key of a packet.
pub fn flow_key(ip: &IpHeader, src_port: u16, dst_port: u16) -> FlowKey {
    let mut key = FlowKey::default();
    fill_flow(ip, src_port, dst_port, &mut key);
    key
}

/// Writes every field of the conntrack key of a packet into `key`.
#[inline(always)]
fn fill_flow(ip: &IpHeader, src_port: u16, dst_port: u16, key: &mut FlowKey) {
    key.src_port = src_port;
    key.dst_port = dst_port;
    key.proto = ip.proto;
    key._pad = [0; 2];
    match ip.addrs {
        IpAddrs::V4 { src, dst } => {
            key.src = widen_v4(src);
            key.dst = widen_v4(dst);
            key.family = FAMILY_V4;
        }
        IpAddrs::V6 { src, dst } => {
            key.src = src;
            key.dst = dst;
            key.family = FAMILY_V6;
        }
    }
}

/// An IPv4 address in the first four bytes of sixteen, the rest zero.
///
/// Written as a zero extension so that BPF gets two 64-bit stores, not a
/// call to the byte-by-byte `memset`.
#[inline(always)]
fn widen_v4(a: [u8; 4]) -> [u8; 16] {
    u128::from(u32::from_le_bytes(a)).to_le_bytes()
}
