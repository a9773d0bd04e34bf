//! The flow hash that picks a Maglev slot.
//!
//! MurmurHash3's 32-bit block mix over the ten words of a [`FlowKey`]: a
//! fixed number of multiply/rotate steps (no loop bound for the verifier to
//! doubt, no table), with full avalanche from the finaliser, so that
//! neighbouring client ports spread evenly over the ring.

use edge_common::FlowKey;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;
/// Seed of the hash; fixed, so that every CPU and every restart agree.
pub const SEED: u32 = 0x6564_6765; // "edge"

#[inline(always)]
fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn finish(mut h: u32, len: u32) -> u32 {
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
fn word(b: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The hash of `flow`; with `source_only` (a source-hashed service) the
/// client port is left out, so all of a client's flows share a slot. The
/// key itself keeps the port: it is also the conntrack key.
#[inline(always)]
pub fn flow_hash(flow: &FlowKey, source_only: bool) -> u32 {
    let src_port = if source_only { 0 } else { flow.src_port };
    let mut h = SEED;
    h = mix(h, word(&flow.src, 0));
    h = mix(h, word(&flow.src, 4));
    h = mix(h, word(&flow.src, 8));
    h = mix(h, word(&flow.src, 12));
    h = mix(h, word(&flow.dst, 0));
    h = mix(h, word(&flow.dst, 4));
    h = mix(h, word(&flow.dst, 8));
    h = mix(h, word(&flow.dst, 12));
    h = mix(h, u32::from(src_port) << 16 | u32::from(flow.dst_port));
    h = mix(h, u32::from(flow.proto) << 8 | u32::from(flow.family));
    finish(h, 40)
}

/// The Maglev slot of `flow` in a table of `size` slots (`size` > 0); see
/// [`flow_hash`] for `source_only`.
#[inline(always)]
pub fn slot(flow: &FlowKey, source_only: bool, size: u32) -> u32 {
    flow_hash(flow, source_only) % size
}
