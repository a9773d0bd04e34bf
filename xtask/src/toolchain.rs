//! Installs what building edge needs, once; a quick, silent no-op when all
//! of it is there.
//!
//! The XDP program needs nightly features (`-Z build-std=core`) from a rustc
//! whose LLVM matches bpf-linker's. This machine's rustup nightly has no
//! rust-src and cannot fetch it, so edge uses Debian's rustc-web (Rust 1.96
//! on LLVM 22, library source in /usr/src/rustc-1.96.0) with
//! RUSTC_BOOTSTRAP, and bpf-linker 0.13 built against Debian's LLVM 22.

use anyhow::{Context, Result, bail};
use std::{path::PathBuf, process::Command};

/// Debian packages: the kernel-side toolchain, what the build needs
/// (Debian's OpenSSL, which edge links: see `.cargo/config.toml`), and
/// what the demo lab uses (ip, curl, ethtool). What only the tests need is
/// in [`TEST_PACKAGES`], so a first `cargo xtask run` does not wait for it.
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "llvm-22-dev",
    "cmake",
    "libssl-dev",
    "pkg-config",
    "iproute2",
    "curl",
    "ethtool",
];
/// What `cargo xtask test` needs beyond [`PACKAGES`]: the Redis server the
/// gateway's shared rate-limit and TCP-listener tests start; gRPC and
/// protobuf for Debian's Python and protoc (the gRPC and transcoding
/// tests' backends, clients and descriptor sets); the nginx and HAProxy
/// the PROXY protocol tests put behind and in front of edge; a browser and
/// its WebDriver for the status page's test; promtool for the alert rules;
/// systemd-analyze and dpkg's helpers for the unit and package checks.
pub const TEST_PACKAGES: &[&str] = &[
    "redis-server",
    // The scale-out lab's BGP daemon (router and edge hosts).
    "bird2",
    "python3-grpcio",
    "python3-protobuf",
    "protobuf-compiler",
    "libprotobuf-dev",
    "nginx",
    "haproxy",
    "chromium",
    "chromium-driver",
    "prometheus",
    "systemd",
    "init-system-helpers",
];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// For `cargo xtask fuzz` and the suite's fuzz smoke run.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Debian's rustc, which builds the kernel side (see edge-userspace/build.rs).
const BPF_RUSTC: &str = "/usr/bin/rustc";

/// Installs whatever is missing.
pub fn ensure() -> Result<()> {
    add_cargo_bin_to_path();
    ensure_packages(PACKAGES)?;
    ensure_rust_src()?;
    ensure_bpf_linker()
}

/// Installs those of `packages` (Debian package names) that are missing,
/// saying which; silent when all are there.
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing Debian packages: {}", missing.join(" "));
    require_root()?;
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"ii"))
}

fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("installing Debian packages needs root (apt-get); run cargo xtask as root");
    }
    Ok(())
}

/// Runs apt-get quietly; its output is shown only if it fails.
fn apt(args: &[&str]) -> Result<()> {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .context("running apt-get")?;
    if !out.status.success() {
        bail!(
            "apt-get {} failed with {}:\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `-Z build-std` looks for the library source under the sysroot.
fn ensure_rust_src() -> Result<()> {
    let out = Command::new(BPF_RUSTC)
        .args(["--print", "sysroot"])
        .output()
        .with_context(|| format!("running {BPF_RUSTC}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let link = sysroot.join("lib/rustlib/src/rust");
    if link.join("library/core").exists() {
        return Ok(());
    }
    let source = std::fs::read_dir("/usr/src")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("library/core").exists())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("rustc-"))
        })
        .max()
        .context("no Rust library source under /usr/src (package rust-web-src)")?;
    println!("xtask: linking {} -> {}", link.display(), source.display());
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link)?;
    }
    std::os::unix::fs::symlink(&source, &link)
        .with_context(|| format!("linking {}", link.display()))
}

fn ensure_bpf_linker() -> Result<()> {
    let current = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = &current
        && String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION)
    {
        return Ok(());
    }
    println!(
        "xtask: installing bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes, once)"
    );
    // Its default feature wants LLVM 23, which Debian does not package.
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed with {status}");
    }
    Ok(())
}

/// cargo-fuzz, and the C++ compiler libFuzzer is built with; the fuzz
/// targets build on the stable toolchain (see `fuzz.rs`).
pub fn ensure_cargo_fuzz() -> Result<()> {
    add_cargo_bin_to_path();
    ensure_packages(&["g++"])?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let current = Command::new(&cargo).args(["fuzz", "--version"]).output();
    if let Ok(out) = &current
        && out.status.success()
        && String::from_utf8_lossy(&out.stdout).contains(CARGO_FUZZ_VERSION)
    {
        return Ok(());
    }
    println!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (a minute, once)");
    let status = Command::new(&cargo)
        .args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
        ])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed with {status}");
    }
    Ok(())
}

/// bpf-linker lands in cargo's bin directory; make sure the nested builds
/// find it even where that directory is not on PATH.
fn add_cargo_bin_to_path() {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(bin) = home.map(|h| h.join("bin")) else {
        return;
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|p| p == bin) {
        return;
    }
    let joined = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path)));
    if let Ok(joined) = joined {
        // SAFETY: xtask is single-threaded at this point; nothing else reads
        // the environment concurrently.
        unsafe { std::env::set_var("PATH", joined) };
    }
}
