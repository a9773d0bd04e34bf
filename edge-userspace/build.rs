//! Builds the XDP object (edge-ebpf) for bpfel-unknown-none and leaves it in
//! OUT_DIR, where `dataplane::object` embeds it.
//!
//! The kernel side needs nightly features (`-Z build-std=core`) and a rustc
//! whose LLVM matches bpf-linker's. The machine's rustup nightly has no
//! rust-src, so this uses Debian's rustc-web (Rust 1.96 on LLVM 22) with
//! RUSTC_BOOTSTRAP; `cargo xtask build` installs it, and bpf-linker, when
//! missing. EDGE_BPF_CARGO / EDGE_BPF_RUSTC point elsewhere if needed.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, exit},
};

const PACKAGE: &str = "edge-ebpf";
const BINARIES: [&str; 2] = ["edge-xdp", "edge-decap"];
const TARGET: &str = "bpfel-unknown-none";

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_else(|| fail("OUT_DIR not set")));
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| fail("CARGO_MANIFEST_DIR not set")),
    );
    let root = manifest_dir
        .parent()
        .unwrap_or_else(|| fail("edge-userspace has no parent directory"))
        .to_path_buf();

    for path in ["edge-ebpf", "edge-common", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    for var in ["EDGE_BPF_CARGO", "EDGE_BPF_RUSTC", "CARGO_TARGET_DIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let cargo = tool("EDGE_BPF_CARGO", "/usr/bin/cargo");
    let rustc = tool("EDGE_BPF_RUSTC", "/usr/bin/rustc");
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("bpf");

    // Misaligned accesses allowed: a header field read from the packet is
    // one load instead of one per byte (LLVM 22's BPF backend; about 10%
    // of a conntrack hit). The verifier takes misaligned packet and map
    // accesses on x86-64 (efficient unaligned access; the object is built
    // for it) but never misaligned stack accesses,
    // which the program's stack values avoid (see `LpmKey` in edge-ebpf)
    // and which every load of the program in the tests would reject.
    let rustflags = [
        "--cfg=bpf_target_arch=\"x86_64\"",
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
        "-Clink-arg=--cpu-features=+allows-misaligned-mem-access",
    ]
    .join("\x1f");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "--locked", "--package", PACKAGE])
        .args(BINARIES.iter().flat_map(|b| ["--bin", b]))
        .args(["--target", TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .env("RUSTC", &rustc)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    // The outer build's compiler settings belong to the host build.
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTUP_TOOLCHAIN",
        "CARGO_ENCODED_RUSTDOCFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {}: {e}", cargo.display())));
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        fail(&format!("building the XDP object failed ({:?})", cmd));
    }
    for bin in BINARIES {
        let built = target_dir.join(TARGET).join("release").join(bin);
        let dest = out_dir.join(bin);
        if let Err(e) = std::fs::copy(&built, &dest) {
            fail(&format!(
                "cannot copy {} to {}: {e}",
                built.display(),
                dest.display()
            ));
        }
    }
}

fn tool(var: &str, default: &str) -> PathBuf {
    let path = env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    if !Path::new(&path).exists() {
        fail(&format!(
            "{} is missing: the XDP program needs Debian's rustc-web toolchain and bpf-linker. \
             Run `cargo xtask build` once; it installs them (or set {var}).",
            path.display()
        ));
    }
    path
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    exit(1)
}
