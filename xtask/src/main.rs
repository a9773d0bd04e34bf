//! `cargo xtask build | load | unload | run | test | lint | install | deb | bench | fuzz`: the project's
//! developer and operator commands. Each installs what it needs first.

mod bench_gateway;
mod bench_l7;
mod bench_xdp;
mod demo;
mod fuzz;
mod package;
mod scale_lab;
mod toolchain;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run and test edge")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the eBPF toolchain if missing; build the XDP object and `edge`.
    Build {
        /// Build the debug profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Attach the XDP program to an interface on its own (pinned; survives exit).
    Load {
        /// Interface name.
        #[arg(long)]
        iface: String,
        /// Attach mode.
        #[arg(long, value_enum, default_value_t = Mode::Native)]
        mode: Mode,
        /// Fill the deny list and L7 ports from this configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// `xdp` (the fast path) or `decap` (backend-side decapsulation).
        #[arg(long, default_value = "xdp")]
        program: String,
        /// With `--program decap`: an allowed outer source; may be repeated.
        #[arg(long = "source")]
        sources: Vec<String>,
    },
    /// Detach an XDP program attached with `load`.
    Unload {
        /// Interface name (what `load` attached).
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        iface: Option<String>,
        /// The configuration an `edge run` ran: removes what it left pinned.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run edge: with --config on this host as configured; without, in a
    /// self-contained demo lab of network namespaces (Ctrl-C tears it down).
    Run {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// With --config: use the debug build (the demo lab always does).
        #[arg(long)]
        debug: bool,
        /// Bring the lab up, check it answers, and tear it down.
        #[arg(long, conflicts_with = "config")]
        check: bool,
        /// The scale-out lab instead: a router (BIRD, ECMP) in front of
        /// this many edge hosts announcing one VIP by BGP.
        #[arg(long, conflicts_with = "config")]
        hosts: Option<usize>,
    },
    /// Run every test: unit, kernel (BPF_PROG_TEST_RUN), network labs, a
    /// check of the `run` lab, and a short run of each fuzz target.
    Test,
    /// cargo fmt --check and clippy -D warnings, for every crate.
    Lint,
    /// Build and install edge as a systemd service: PREFIX/bin/edge, the
    /// unit, and /etc/edge/edge.yaml if there is none (root, unless
    /// --destdir).
    Install(package::InstallOptions),
    /// Build the release binary and a Debian package of it (binary, unit,
    /// /etc/edge/edge.yaml as a conffile); prints its path.
    Deb(package::DebOptions),
    /// The packaging step of `test` alone: the unit under systemd-analyze,
    /// the .deb in a scratch dpkg root, install --destdir.
    #[command(hide = true)]
    PackageCheck,
    /// Run the cargo-fuzz targets (tests/fuzz) for a bounded time each.
    Fuzz(fuzz::Options),
    /// The gRPC origin `bench l7` starts (an h2c echo server).
    #[command(hide = true)]
    GrpcOrigin {
        /// Where to listen.
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// Benchmarks (need root; install what they need; print and write a report).
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// edge vs a bare Pingora proxy vs nginx vs HAProxy as L7 proxies on
    /// loopback: proxied small and 64 KiB responses, cache hit, HTTPS
    /// (wrk), unary gRPC (h2load), TCP proxying with a connection per
    /// request, HTTP/2 (h2c), 100 and 1000 connections and memory per idle
    /// connection, with CPU time, allocations and system calls per
    /// request; writes target/bench/l7.md.
    L7 {
        /// Which rows to measure.
        #[arg(long, value_enum, default_value = "all")]
        rows: bench_l7::Rows,
    },
    /// The API gateway's policies on loopback (wrk): plain proxying against
    /// API key, JWT RS256/ES256, local and Redis rate limits, next to
    /// HAProxy's jwt_verify and stick-table, and a JSON body
    /// transformation, XML to JSON of 10 KB and a three-call aggregation;
    /// writes target/bench/gateway.md.
    Gateway,
    /// The L4 XDP path: TestRun per packet, then end to end in the DSR lab
    /// beside nftables DNAT and HAProxy.
    Xdp(bench_xdp::Options),
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Native,
    Generic,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Generic => "generic",
        }
    }
}

fn main() -> std::process::ExitCode {
    match dispatch(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let root = root()?;
    match cli.command {
        Cmd::Build { debug } => {
            let bin = build(&root, !debug)?;
            println!("xtask: built {}", bin.display());
            Ok(())
        }
        Cmd::Load {
            iface,
            mode,
            config,
            program,
            sources,
        } => {
            let mut cmd = Command::new(build(&root, true)?);
            cmd.args(["load", "--iface", &iface, "--mode", mode.as_str()]);
            cmd.args(["--program", &program]);
            for s in &sources {
                cmd.args(["--source", s]);
            }
            if let Some(c) = config {
                cmd.arg("--config").arg(c);
            }
            run_status(&mut cmd)
        }
        Cmd::Unload { iface, config } => {
            let mut cmd = Command::new(build(&root, true)?);
            cmd.arg("unload");
            match (iface, config) {
                (Some(iface), _) => cmd.args(["--iface", &iface]),
                (None, Some(config)) => cmd.arg("--config").arg(config),
                (None, None) => bail!("cargo xtask unload: name --iface or --config"),
            };
            run_status(&mut cmd)
        }
        Cmd::Run {
            config: Some(config),
            debug,
            ..
        } => {
            let bin = build(&root, !debug)?;
            // Replace this process, so signals reach edge directly.
            let err = Command::new(bin)
                .arg("run")
                .arg("--config")
                .arg(config)
                .exec();
            Err(err).context("starting edge")
        }
        Cmd::Run {
            config: None,
            check,
            hosts: Some(hosts),
            ..
        } => scale_lab::run(&build_profile(&root, "dev")?, hosts, check),
        Cmd::Run {
            config: None,
            check,
            ..
        } => {
            // The lab needs edge's behaviour, not its speed: the debug
            // build takes about half as long from scratch as the release
            // one (measured in the README's "First run"), and is the one
            // `cargo xtask test` builds too.
            let bin = build_profile(&root, "dev")?;
            demo::run(&bin, check)
        }
        Cmd::Test => test(&root),
        Cmd::Lint => lint(&root),
        Cmd::Install(opts) => package::install(&root, &opts),
        Cmd::Deb(opts) => package::deb(&root, &opts),
        Cmd::PackageCheck => package::check(&root, &build(&root, false)?),
        Cmd::Fuzz(opts) => fuzz::run(&root, &opts),
        Cmd::Bench {
            which: Bench::L7 { rows },
        } => bench_l7::run(&root, rows),
        Cmd::GrpcOrigin { listen } => bench_l7::grpc_origin::serve(listen),
        Cmd::Bench {
            which: Bench::Gateway,
        } => bench_gateway::run(&root),
        Cmd::Bench {
            which: Bench::Xdp(opts),
        } => bench_xdp::run(&root, &opts),
    }
}

/// The workspace root (xtask's parent directory).
fn root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run_status(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Ensures the toolchain, builds `edge` (and with it the XDP object), and
/// returns the binary's path.
fn build(root: &Path, release: bool) -> Result<PathBuf> {
    build_profile(root, if release { "release" } else { "dev" })
}

/// Like [`build`], with cargo profile `profile` (`dev`, `release`, `demo`).
fn build_profile(root: &Path, profile: &str) -> Result<PathBuf> {
    toolchain::ensure()?;
    let target = target_dir(root);
    let dir = match profile {
        "dev" => "debug",
        other => other,
    };
    let bin = target.join(dir).join("edge");
    if !bin.exists() {
        // The first build compiles a few hundred crates and the XDP
        // program: say so, or it looks stuck.
        println!(
            "xtask: building edge ({profile} profile) for the first time: several minutes on \
             two cores; cargo shows its progress below"
        );
    }
    let started = std::time::Instant::now();
    run_status(cargo().current_dir(root).args([
        "build",
        "--package",
        "edge-userspace",
        "--bin",
        "edge",
        "--profile",
        profile,
    ]))?;
    if started.elapsed() > std::time::Duration::from_secs(30) {
        println!(
            "xtask: built {} in {:.0?}",
            bin.display(),
            started.elapsed()
        );
    }
    Ok(bin)
}

/// What `bench l7` runs, built release with the `alloc-count` feature
/// (mimalloc counting its allocations): `edge`, unless `edge` names a
/// binary to measure instead, and the bare Pingora example. Returns both
/// paths. Afterwards target/release/edge is that counting build until the
/// next plain `build` puts the other back (cargo keeps the artifacts of
/// both feature sets).
fn build_bench(root: &Path, edge: Option<PathBuf>) -> Result<(PathBuf, PathBuf)> {
    toolchain::ensure()?;
    let release = target_dir(root).join("release");
    let mut cmd = cargo();
    cmd.current_dir(root).args([
        "build",
        "--package",
        "edge-userspace",
        "--profile",
        "release",
        "--features",
        "alloc-count",
        "--example",
        "bare_pingora",
    ]);
    if edge.is_none() {
        cmd.args(["--bin", "edge"]);
    }
    let started = std::time::Instant::now();
    run_status(&mut cmd)?;
    if started.elapsed() > std::time::Duration::from_secs(30) {
        println!(
            "xtask: built the benchmark's binaries in {:.0?}",
            started.elapsed()
        );
    }
    let edge = edge.unwrap_or_else(|| release.join("edge"));
    Ok((edge, release.join("examples").join("bare_pingora")))
}

/// Cargo's target directory.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (BPF, XDP and network namespaces); run it as root");
    }
    Ok(())
}

/// Counts from cargo's `test result:` lines.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Tally {
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(what)) = (words.next(), words.next())
                && let Ok(n) = n.parse::<u64>()
            {
                match what {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    "ignored" => self.ignored += n,
                    _ => {}
                }
            }
        }
    }
}

/// Runs `cargo test` with `args`, echoing its output and tallying results.
fn cargo_test(root: &Path, args: &[&str], tally: &mut Tally) -> Result<bool> {
    use std::io::{BufRead, BufReader};
    let mut child = cargo()
        .current_dir(root)
        .arg("test")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            tally.add_line(&line);
        }
    }
    Ok(child.wait()?.success())
}

fn test(root: &Path) -> Result<()> {
    require_root("cargo xtask test")?;
    let started = std::time::Instant::now();
    // What only the tests use (a browser, promtool), so that the first
    // `cargo xtask run` does not wait for them.
    toolchain::ensure_packages(toolchain::TEST_PACKAGES)?;
    // The integration tests run the debug `edge` binary.
    let bin = build(root, false)?;
    let mut tally = Tally::default();
    let mut ok = cargo_test(root, &["--no-fail-fast"], &mut tally)?;
    // The kernel crate is not a default member: its host-side tests.
    ok &= cargo_test(root, &["--package", "edge-ebpf", "--lib"], &mut tally)?;
    println!("\nxtask: checking the `cargo xtask run` lab");
    match demo::run(&bin, true) {
        Ok(()) => tally.passed += 1,
        Err(e) => {
            eprintln!("lab check failed: {e:#}");
            tally.failed += 1;
            ok = false;
        }
    }
    println!("\nxtask: checking the `cargo xtask run --hosts 2` lab");
    match scale_lab::run(&bin, 2, true) {
        Ok(()) => tally.passed += 1,
        Err(e) => {
            eprintln!("scale-out lab check failed: {e:#}");
            tally.failed += 1;
            ok = false;
        }
    }
    println!("\nxtask: checking the systemd unit and the Debian package");
    match package::check(root, &bin) {
        Ok(()) => tally.passed += 1,
        Err(e) => {
            eprintln!("packaging check failed: {e:#}");
            tally.failed += 1;
            ok = false;
        }
    }
    println!(
        "\nxtask: fuzz smoke run, {} s per target",
        fuzz::SMOKE_SECONDS
    );
    match fuzz::smoke(root) {
        Ok((passed, failed)) => {
            tally.passed += passed;
            tally.failed += failed;
            ok &= failed == 0;
        }
        Err(e) => {
            eprintln!("fuzz smoke run failed: {e:#}");
            tally.failed += 1;
            ok = false;
        }
    }
    println!(
        "\nxtask test finished in {:.0?}\ntests: {} passed, {} failed, {} skipped",
        started.elapsed(),
        tally.passed,
        tally.failed,
        tally.ignored
    );
    if !ok {
        bail!("some tests failed");
    }
    Ok(())
}

fn lint(root: &Path) -> Result<()> {
    toolchain::ensure()?;
    run_status(
        cargo()
            .current_dir(root)
            .args(["fmt", "--all", "--", "--check"]),
    )?;
    run_status(cargo().current_dir(root).args([
        "clippy",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The kernel crate is not a default member; its program also builds
    // for the host (an empty main) so that clippy sees it.
    run_status(cargo().current_dir(root).args([
        "clippy",
        "--package",
        "edge-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}
