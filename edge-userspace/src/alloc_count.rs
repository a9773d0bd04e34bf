//! Heap allocation counting for the benchmarks (`alloc-count` feature).
//!
//! [`CountingAlloc`] is mimalloc (edge's allocator) plus one relaxed atomic
//! increment per allocation, so that `cargo xtask bench l7` can report
//! allocations per request for edge and for a bare Pingora proxy built with
//! the same allocator. [`start_reporter`] publishes the count in a file the
//! benchmark reads before and after its measured window; nothing else reads
//! it. Release builds without the feature do not contain any of this.

use std::{
    alloc::{GlobalAlloc, Layout},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// The environment variable naming the file [`start_reporter`] writes.
pub const FILE_ENV: &str = "EDGE_ALLOC_COUNT_FILE";
/// How often [`start_reporter`] writes the count: a reader that waits three
/// periods after the load stops sees every allocation the load caused.
pub const REPORT_PERIOD: Duration = Duration::from_millis(50);

/// Allocations (alloc, alloc_zeroed and realloc calls) since the start.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// mimalloc, counting every allocation in a process-wide counter.
pub struct CountingAlloc;

// SAFETY: every method forwards to mimalloc's own implementation with the
// caller's arguments unchanged; the counter has no effect on memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Relaxed: a count read later, with no ordering to other memory.
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from mimalloc.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A realloc may move the block: as much work as an allocation, and
        // what a reader of "allocations per request" wants to see.
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, and
        // `ptr` came from mimalloc.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// Allocations counted so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// When [`FILE_ENV`] names a file, starts a thread that writes the count
/// there (decimal) every [`REPORT_PERIOD`], through a temporary file and a
/// rename so that a reader never sees a partial number. Without the
/// variable it does nothing. A write that fails is tried again at the next
/// period: the count is a benchmark aid, never a reason to stop serving.
pub fn start_reporter() {
    let Some(target) = std::env::var_os(FILE_ENV).map(PathBuf::from) else {
        return;
    };
    let mut temporary = target.clone().into_os_string();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let spawned = std::thread::Builder::new()
        .name("alloc-count".into())
        .spawn(move || {
            loop {
                // Best effort, see above.
                let _ = publish(&temporary, &target);
                std::thread::sleep(REPORT_PERIOD);
            }
        });
    if let Err(e) = spawned {
        eprintln!("alloc-count: cannot start the reporter thread: {e}");
    }
}

/// One write of the count. It allocates nothing itself (the number is
/// formatted on the stack; short paths go to the kernel from a stack
/// buffer), so the reporter does not add to what it reports.
fn publish(temporary: &Path, target: &Path) -> std::io::Result<()> {
    let mut digits = [0u8; 20];
    let text = decimal(allocations(), &mut digits);
    std::fs::write(temporary, text)?;
    std::fs::rename(temporary, target)
}

/// `n` in decimal, written at the end of `buf` (20 digits hold any u64).
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_numbers() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(1234567, &mut buf), b"1234567");
        assert_eq!(decimal(u64::MAX, &mut buf), u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn the_reporter_writes_the_count_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("count");
        let temporary = dir.path().join("count.tmp");
        publish(&temporary, &target).unwrap();
        let text = std::fs::read_to_string(&target).unwrap();
        assert!(text.parse::<u64>().is_ok(), "{text:?}");
        assert!(!temporary.exists());
    }
}
