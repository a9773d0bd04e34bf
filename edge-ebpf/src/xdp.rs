//! The XDP context as a [`PacketBuf`]: the one place that dereferences
//! packet memory, for reading and for writing, shared by both programs.

use crate::{PacketBuf, PacketBufMut};
use aya_ebpf::{helpers::bpf_csum_diff, programs::XdpContext};

/// The packet behind an XDP context.
pub struct XdpBuf<'a>(pub &'a XdpContext);

/// What moves between the packet and the program in one access: a
/// fixed-width integer or a byte array, of which every bit pattern is a
/// valid value. Sealed: nothing else may be read out of packet memory.
pub trait Plain: Copy + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
    impl<const N: usize> Sealed for [u8; N] {}
}

impl Plain for u8 {}
impl Plain for u16 {}
impl Plain for u32 {}
impl Plain for u64 {}
impl<const N: usize> Plain for [u8; N] {}

impl XdpBuf<'_> {
    /// The address of the `T` at `offset`, if it lies inside the packet.
    ///
    /// Packet pointers are re-read on every access: `bpf_xdp_adjust_head`
    /// moves `data`, and the verifier forgets every packet pointer derived
    /// before a helper call. The comparison is on packet pointers, the form
    /// the verifier tracks, right before the access it guards.
    #[inline(always)]
    fn at<T: Plain>(&self, offset: usize) -> Option<usize> {
        let start = self.0.data();
        let end = self.0.data_end();
        if start + offset + core::mem::size_of::<T>() > end {
            return None;
        }
        Some(start + offset)
    }

    /// The `T` at `offset`.
    #[inline(always)]
    fn load<T: Plain>(&self, offset: usize) -> Option<T> {
        let p = self.at::<T>(offset)?;
        // SAFETY: the size_of::<T>() bytes at `p` lie inside the packet
        // (`at` checked them against data_end), which an XDP program may
        // read, and `T` is plain data (`Plain`): any bytes are a valid `T`.
        // Unaligned: packet offsets are not aligned (the IPv4 addresses sit
        // at 26 and 30 behind an Ethernet header), and an aligned read of a
        // misaligned pointer is undefined behaviour that LLVM exploits (it
        // turned one into arithmetic on the packet pointer, which the
        // verifier refused). The BPF target makes it one load per byte.
        Some(unsafe { core::ptr::read_unaligned(p as *const T) })
    }

    /// Writes `v` at `offset`.
    #[inline(always)]
    fn store<T: Plain>(&mut self, offset: usize, v: T) -> Option<()> {
        let p = self.at::<T>(offset)?;
        // SAFETY: as in `load`: the bytes at `p` are inside the packet,
        // which XDP programs may write; unaligned for the same reason.
        unsafe { core::ptr::write_unaligned(p as *mut T, v) };
        Some(())
    }
}

impl PacketBuf for XdpBuf<'_> {
    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.load::<[u8; N]>(offset)
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.0.data_end() - self.0.data()
    }

    #[inline(always)]
    fn u8_at(&self, offset: usize) -> Option<u8> {
        self.load::<u8>(offset)
    }

    #[inline(always)]
    fn be16_at(&self, offset: usize) -> Option<u16> {
        self.load::<u16>(offset).map(u16::from_be)
    }

    #[inline(always)]
    fn le16_at(&self, offset: usize) -> Option<u16> {
        self.load::<u16>(offset).map(u16::from_le)
    }

    #[inline(always)]
    fn le32_at(&self, offset: usize) -> Option<u32> {
        self.load::<u32>(offset).map(u32::from_le)
    }

    #[inline(always)]
    fn le64_at(&self, offset: usize) -> Option<u64> {
        self.load::<u64>(offset).map(u64::from_le)
    }

    /// With `bpf_csum_diff` over the packet itself, as Katran does: a loop
    /// of reads has its bounds checks merged by LLVM into arithmetic the
    /// verifier cannot follow.
    #[inline(always)]
    fn sum16<const N: usize>(&self, offset: usize) -> Option<u16> {
        let p = self.at::<[u8; N]>(offset)?;
        // SAFETY: the helper only reads [p, p + N), inside the packet as
        // `at` checked just above; no `from` buffer.
        let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, p as *mut u32, N as u32, 0) };
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
        self.store(offset, bytes)
    }

    #[inline(always)]
    fn write_le16(&mut self, offset: usize, v: u16) -> Option<()> {
        self.store(offset, v.to_le())
    }

    #[inline(always)]
    fn write_le32(&mut self, offset: usize, v: u32) -> Option<()> {
        self.store(offset, v.to_le())
    }

    #[inline(always)]
    fn write_le64(&mut self, offset: usize, v: u64) -> Option<()> {
        self.store(offset, v.to_le())
    }
}
