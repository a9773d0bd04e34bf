//! edge's decapsulation XDP program, for backend hosts: strips the outer
//! IPIP / IP6IP6 header of packets from allowed edge sources and passes
//! the inner packet up; everything else passes unchanged.
//!
//! A separate object from the balancer on purpose: a backend loads only
//! this program and its three small maps, not the balancer's rings and
//! connection table. The parsing is `edge_ebpf::decap`, shared and
//! host-tested; packet memory is touched only through `XdpBuf`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_xdp_adjust_head,
    macros::{map, xdp},
    maps::{HashMap, PerCpuArray},
    programs::XdpContext,
};
use edge_common::{Counters, DecapEvent, MAX_DECAP_SOURCES};
use edge_ebpf::{
    PacketBuf,
    decap::{self, Plan, Sources},
    parse::IpAddrs,
    xdp::XdpBuf,
};

#[map]
static EDGE_DECAP_V4: HashMap<[u8; 4], u8> = HashMap::with_max_entries(MAX_DECAP_SOURCES, 0);

#[map]
static EDGE_DECAP_V6: HashMap<[u8; 16], u8> = HashMap::with_max_entries(MAX_DECAP_SOURCES, 0);

#[map]
static EDGE_DECAP_STATS: PerCpuArray<Counters> =
    PerCpuArray::with_max_entries(DecapEvent::COUNT, 0);

struct Allowed;

impl Sources for Allowed {
    #[inline(always)]
    fn allowed(&self, addrs: &IpAddrs) -> bool {
        match addrs {
            IpAddrs::V4 { src, .. } => EDGE_DECAP_V4.get_ptr(src).is_some(),
            IpAddrs::V6 { src, .. } => EDGE_DECAP_V6.get_ptr(src).is_some(),
        }
    }
}

#[xdp]
pub fn edge_decap(ctx: XdpContext) -> u32 {
    let buf = XdpBuf(&ctx);
    let len = buf.len() as u64;
    let strip = match decap::plan(&buf, &Allowed) {
        Plan::Pass(e) => {
            count(e, len);
            return xdp_action::XDP_PASS;
        }
        Plan::Strip(s) => s,
    };
    // SAFETY: the helper checks the new start against the packet itself.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, strip.outer_len as i32) } != 0 {
        count(DecapEvent::Malformed, len);
        return xdp_action::XDP_PASS;
    }
    let mut buf = XdpBuf(&ctx);
    if decap::write_l2(&mut buf, &strip).is_none() {
        // Cannot happen (the inner packet is longer than an L2 header), but
        // a half-written frame must not reach the stack.
        count(DecapEvent::Malformed, len);
        return xdp_action::XDP_DROP;
    }
    count(DecapEvent::Decapsulated, len);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn count(e: DecapEvent, bytes: u64) {
    if let Some(c) = EDGE_DECAP_STATS.get_ptr_mut(e.index()) {
        // SAFETY: per-CPU slot from a successful lookup.
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += bytes;
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
