//! edge's XDP program: classify, count, drop denied sources, pass the rest.
//!
//! The decision lives in the host-testable `edge_ebpf::classify`; this file
//! only binds it to the XDP context and the maps. The one dereference of
//! packet memory is [`XdpBuf::bytes`].
//!
//! The program only runs in the kernel; the host build (an empty `main`)
//! exists so that clippy can check this file.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use edge_common::{
    Counters, DenyValue, MAX_DENY_ENTRIES, MAX_L7_PORTS, MAX_VIPS, PacketClass, PortKey, VipKey,
    VipMeta,
};
use edge_ebpf::{
    PacketBuf,
    classify::{Action, Tables, classify},
    parse::IpAddrs,
};

// Each map's name is its static's name, which must match the constant of
// the same name in edge-common; a test checks the built object for each.
#[map]
static EDGE_CLASS_STATS: PerCpuArray<Counters> =
    PerCpuArray::with_max_entries(PacketClass::COUNT, 0);

#[map]
static EDGE_DENY_V4: LpmTrie<[u8; 4], DenyValue> = LpmTrie::with_max_entries(MAX_DENY_ENTRIES, 0);

#[map]
static EDGE_DENY_V6: LpmTrie<[u8; 16], DenyValue> = LpmTrie::with_max_entries(MAX_DENY_ENTRIES, 0);

#[map]
static EDGE_L7_PORTS: HashMap<PortKey, u8> = HashMap::with_max_entries(MAX_L7_PORTS, 0);

#[map]
static EDGE_VIPS: HashMap<VipKey, VipMeta> = HashMap::with_max_entries(MAX_VIPS, 0);

/// The packet behind an XDP context.
struct XdpBuf<'a>(&'a XdpContext);

impl PacketBuf for XdpBuf<'_> {
    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let start = self.0.data();
        let end = self.0.data_end();
        // The comparison is on packet pointers, the form the verifier tracks.
        if start + offset + N > end {
            return None;
        }
        // SAFETY: [start + offset, start + offset + N) lies inside the packet,
        // checked just above; [u8; N] has no alignment or validity demands.
        Some(unsafe { core::ptr::read_unaligned((start + offset) as *const [u8; N]) })
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.0.data_end() - self.0.data()
    }
}

/// The maps, as the classifier's lookups.
struct Maps;

impl Tables for Maps {
    #[inline(always)]
    fn denied(&self, addrs: &IpAddrs) -> bool {
        match *addrs {
            IpAddrs::V4 { src, .. } => EDGE_DENY_V4.get(Key::new(32, src)).is_some(),
            IpAddrs::V6 { src, .. } => EDGE_DENY_V6.get(Key::new(128, src)).is_some(),
        }
    }

    #[inline(always)]
    fn is_vip(&self, key: &VipKey) -> bool {
        EDGE_VIPS.get_ptr(key).is_some()
    }

    #[inline(always)]
    fn is_l7_port(&self, key: &PortKey) -> bool {
        EDGE_L7_PORTS.get_ptr(key).is_some()
    }
}

#[xdp]
pub fn edge_xdp(ctx: XdpContext) -> u32 {
    let buf = XdpBuf(&ctx);
    let verdict = classify(&buf, &Maps);
    count(&ctx, verdict.class, buf.len() as u64);
    match verdict.action {
        Action::Pass => xdp_action::XDP_PASS,
        Action::Drop => xdp_action::XDP_DROP,
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
