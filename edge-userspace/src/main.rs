//! The `edge` binary; see `edge --help`.

use std::process::ExitCode;

// A proxy allocates and frees many small buffers per request (headers,
// body chunks); glibc's allocator spent about 13% of edge's time in the L7
// benchmark, and mimalloc's thread-local free lists cut that markedly.
#[cfg(not(feature = "alloc-count"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The same allocator, counting allocations for `cargo xtask bench l7`.
#[cfg(feature = "alloc-count")]
#[global_allocator]
static GLOBAL: edge_userspace::alloc_count::CountingAlloc =
    edge_userspace::alloc_count::CountingAlloc;

fn main() -> ExitCode {
    #[cfg(feature = "alloc-count")]
    edge_userspace::alloc_count::start_reporter();
    match edge_userspace::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` keeps the whole context chain on one line, without the
            // backtrace an anyhow Debug print would add.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
