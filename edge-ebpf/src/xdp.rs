//! The XDP context as a [`PacketBuf`]: the one place that dereferences
//! packet memory, for reading and for writing, shared by both programs.

use crate::{PacketBuf, PacketBufMut};
use aya_ebpf::{helpers::bpf_csum_diff, programs::XdpContext};

/// The packet behind an XDP context.
pub struct XdpBuf<'a>(pub &'a XdpContext);

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

    /// With `bpf_csum_diff` over the packet itself, as Katran does: a loop
    /// of reads has its bounds checks merged by LLVM into arithmetic the
    /// verifier cannot follow.
    #[inline(always)]
    fn sum16<const N: usize>(&self, offset: usize) -> Option<u16> {
        let start = self.0.data();
        let end = self.0.data_end();
        if start + offset + N > end {
            return None;
        }
        // SAFETY: the helper only reads [start + offset, start + offset + N),
        // inside the packet as checked just above; no `from` buffer.
        let sum = unsafe {
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                (start + offset) as *mut u32,
                N as u32,
                0,
            )
        };
        if sum < 0 {
            return None;
        }
        // A 32-bit sum of the words as the CPU reads them (little-endian):
        // folded, it is the big-endian sum with its bytes swapped.
        let mut s = sum as u64;
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        Some((s as u16).swap_bytes())
    }
}

impl PacketBufMut for XdpBuf<'_> {
    #[inline(always)]
    fn write<const N: usize>(&mut self, offset: usize, bytes: [u8; N]) -> Option<()> {
        // Re-read on every write: bpf_xdp_adjust_head moves `data`, and the
        // verifier forgets every packet pointer derived before the call.
        let start = self.0.data();
        let end = self.0.data_end();
        if start + offset + N > end {
            return None;
        }
        // SAFETY: as in `bytes`: the N bytes at start + offset are inside
        // the packet, which XDP programs may write; no alignment needed.
        unsafe { core::ptr::write_unaligned((start + offset) as *mut [u8; N], bytes) };
        Some(())
    }
}
