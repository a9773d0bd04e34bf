//! `cargo xtask bench xdp`: the L4 fast path measured two ways.
//!
//! 1. Per packet, through BPF_PROG_TEST_RUN: `cargo bench -p edge-tests
//!    --bench xdp_testrun` (the L4 engineer's micro-benchmark).
//! 2. End to end in the DSR lab (`edge_tests::dsr`), side by side in one
//!    run: wrk from the client namespace, new connections per second
//!    (`Connection: close`) and requests per second over long keep-alive
//!    connections, through
//!    - no load balancer at all (the client straight to one backend: the
//!      baseline the others add to),
//!    - edge's XDP path (IPIP, direct server return),
//!    - an nftables DNAT load balancer (`numgen random` over the same
//!      backends, the kernel's own L4 balancing as kube-proxy's nftables
//!      mode does it; answers route back through the LB host to be
//!      un-NATed),
//!    - HAProxy in TCP mode on the LB host.
//!
//! CPU is measured per cell, per request, two ways. The lab's CPU: user +
//! system time of wrk, of this process (the backends are its threads), of
//! the LB's process (edge or HAProxy) and of the `ksoftirqd` threads. This
//! kernel charges softirq work (where XDP and netfilter run) to the task it
//! interrupts, so this total covers the whole lab without counting what
//! other users of the machine run. The LB's own CPU: for edge, the XDP
//! program's run time from the kernel's BPF statistics (enabled through a
//! BPF_ENABLE_STATS descriptor only while edge's cells run); for HAProxy,
//! its process time; nftables has no process of its own, so only the lab
//! total minus the baseline's shows its cost.

use crate::{
    bench_l7::wrk::{self, Measurement},
    build, cargo, require_root, run_status, toolchain,
};
use anyhow::{Context, Result, bail};
use clap::Args;
use edge_tests::{
    dsr::{self, DsrLab, DsrPlan, HealthCheck, ReturnPath},
    edge::Edge,
    http,
    lab::{ip, output},
    netns,
    process::Process,
    wait,
};
use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    os::fd::{FromRawFd, OwnedFd},
    path::Path,
    process::Command,
    time::Duration,
};

/// Debian packages the end-to-end benchmark runs.
const PACKAGES: &[&str] = &["wrk", "haproxy", "nftables"];
const PLAN: DsrPlan<'static> = DsrPlan {
    client_net: "10.77.1",
    backend_net: "10.77.2",
    vip: Ipv4Addr::new(10, 77, 0, 100),
    port: 80,
    backends: &["be1", "be2", "be3"],
    net6: None,
};
const NFT_TABLE: &str = "edgebench";
const HAPROXY: &str = "/usr/sbin/haproxy";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `cargo xtask bench xdp`.
#[derive(Args, Clone, Debug)]
pub struct Options {
    /// Seconds of load per cell.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub duration: u64,
    /// Concurrent wrk connections.
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// Skip the TestRun micro-benchmark.
    #[arg(long)]
    pub no_testrun: bool,
    /// Measure only these load balancers (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Lb>,
}

/// What stands between the client and the backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lb {
    /// No load balancer: the client straight to one backend.
    Direct,
    /// edge's XDP path.
    Edge,
    /// nftables DNAT.
    Nftables,
    /// HAProxy in TCP mode.
    Haproxy,
}

impl Lb {
    const ALL: [Lb; 4] = [Lb::Direct, Lb::Edge, Lb::Nftables, Lb::Haproxy];

    fn label(self) -> &'static str {
        match self {
            Lb::Direct => "none (direct)",
            Lb::Edge => "edge XDP (DSR)",
            Lb::Nftables => "nftables DNAT",
            Lb::Haproxy => "HAProxy tcp",
        }
    }
}

/// The two loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    /// One request per connection.
    NewConnections,
    /// Many requests per connection.
    KeepAlive,
}

impl Load {
    const ALL: [Load; 2] = [Load::NewConnections, Load::KeepAlive];

    fn label(self) -> &'static str {
        match self {
            Load::NewConnections => "new connections/s",
            Load::KeepAlive => "requests/s (keep-alive)",
        }
    }
}

/// One measured cell.
#[derive(Clone, Debug)]
struct Cell {
    lb: Lb,
    load: Load,
    wrk: Measurement,
    /// CPU of the whole lab per request, microseconds.
    lab_cpu_us: f64,
    /// CPU of the LB itself per request, microseconds, where measurable.
    lb_cpu_us: Option<f64>,
}

/// Runs the benchmark.
pub fn run(root: &Path, opts: &Options) -> Result<()> {
    require_root("cargo xtask bench xdp")?;
    toolchain::ensure_packages(PACKAGES)?;
    if !opts.no_testrun {
        testrun(root)?;
    }
    let lbs: Vec<Lb> = if opts.only.is_empty() {
        Lb::ALL.to_vec()
    } else {
        Lb::ALL
            .into_iter()
            .filter(|l| opts.only.contains(l))
            .collect()
    };
    // Only edge's cells need edge (release build) and its decapsulators.
    let bin = if lbs.contains(&Lb::Edge) {
        Some(build(root, true)?)
    } else {
        None
    };
    println!("\nxtask: building the DSR lab");
    let mut lab = DsrLab::build(PLAN)?;
    if let Some(bin) = &bin {
        lab.start_decaps(bin)?;
    }
    let logs = tempfile::tempdir()?;
    let backends = http_backends(&mut lab, logs.path())?;
    let mut lab = Rig { backends, lab };
    let machine = machine();
    let mut cells = Vec::new();
    for &lb in &lbs {
        println!("xtask: measuring {}", lb.label());
        let cell = measure_lb(&mut lab, bin.as_deref(), lb, opts)
            .with_context(|| format!("measuring {}", lb.label()))?;
        cells.extend(cell);
    }
    lab.lab.check_decaps()?;
    drop(lab);
    let table = report(&cells, opts);
    println!("\n{machine}\n\n{table}");
    Ok(())
}

/// What the numbers were measured on: date, CPU, kernel, and the load the
/// machine carried before the run (others' work shares the CPUs).
fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let loadavg = read("/proc/loadavg");
    let load: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    format!(
        "{date}; {cpus} × {model}; Linux {}; load average before the run {}",
        read("/proc/sys/kernel/osrelease").trim(),
        load.join(" ")
    )
}

/// The TestRun micro-benchmark, if this tree has it.
fn testrun(root: &Path) -> Result<()> {
    let manifest = std::fs::read_to_string(root.join("tests/Cargo.toml"))?;
    if !manifest.contains("\"xdp_testrun\"") {
        println!(
            "xtask: the TestRun micro-benchmark (cargo bench -p edge-tests --bench xdp_testrun) \
             is missing from this tree; skipping it"
        );
        return Ok(());
    }
    println!("xtask: TestRun micro-benchmark");
    run_status(cargo().current_dir(root).args([
        "bench",
        "-p",
        "edge-tests",
        "--bench",
        "xdp_testrun",
    ]))
}

/// Sets `lb` up, measures both loads through it, tears it down.
fn measure_lb(rig: &mut Rig, bin: Option<&Path>, lb: Lb, opts: &Options) -> Result<Vec<Cell>> {
    let lab = &rig.lab;
    let dir = tempfile::tempdir()?;
    let target = match lb {
        Lb::Direct => SocketAddr::new(PLAN.backend_ip(0), PLAN.port),
        _ => PLAN.vip_addr(),
    };
    let mut cells = Vec::new();
    match lb {
        Lb::Direct => {
            for load in Load::ALL {
                cells.push(cell(rig, lb, load, target, opts, &mut NoLbCpu)?);
            }
        }
        Lb::Edge => {
            let bin = bin.context("edge was not built")?;
            let mut edge = start_edge(lab, bin, dir.path())?;
            let mut cpu = EdgeCpu::new(&edge)?;
            for load in Load::ALL {
                cells.push(cell(rig, lb, load, target, opts, &mut cpu)?);
            }
            drop(cpu);
            edge.stop(Duration::from_secs(15))?;
        }
        Lb::Nftables => {
            let _nft = Nftables::start(lab)?;
            for load in Load::ALL {
                cells.push(cell(rig, lb, load, target, opts, &mut NoLbCpu)?);
            }
        }
        Lb::Haproxy => {
            let haproxy = Haproxy::start(lab, dir.path())?;
            let mut cpu = ProcessCpu(haproxy.pid()?);
            for load in Load::ALL {
                cells.push(cell(rig, lb, load, target, opts, &mut cpu)?);
            }
        }
    }
    Ok(cells)
}

/// Warms `target` up, then runs one wrk cell and measures CPU around it.
fn cell(
    rig: &Rig,
    lb: Lb,
    load: Load,
    target: SocketAddr,
    opts: &Options,
    lb_cpu: &mut dyn LbCpu,
) -> Result<Cell> {
    let lab = &rig.lab;
    let pids = rig.backend_pids();
    wait_answers(lab, target)?;
    // A second of load first: ARP, conntrack and the backends' threads
    // settle before anything is timed.
    wrk(lab, target, load, 1, opts.connections)?;
    let (lab_before, lb_before) = (lab_cpu_ticks(&pids)?, lb_cpu.sample()?);
    let result = wrk(lab, target, load, opts.duration, opts.connections)?;
    let (lab_after, lb_after) = (lab_cpu_ticks(&pids)?, lb_cpu.sample()?);
    if result.requests == 0 {
        bail!("wrk completed no request through {}", lb.label());
    }
    let requests = result.requests as f64;
    let per_req = |ns: f64| ns / 1000.0 / requests;
    let lab_ticks =
        (lab_after + lb_after.process_ticks).saturating_sub(lab_before + lb_before.process_ticks);
    let lb_cpu_us = match (lb_before.own_ns, lb_after.own_ns) {
        (Some(a), Some(b)) => Some(per_req(b.saturating_sub(a) as f64)),
        _ => None,
    };
    println!(
        "  {:<24} {:>9.0}/s  p50 {:>8}  p99 {:>8}  errors {}",
        load.label(),
        result.rps,
        fmt_us(result.p50_us),
        fmt_us(result.p99_us),
        result.failed
    );
    Ok(Cell {
        lb,
        load,
        wrk: result,
        lab_cpu_us: per_req(lab_ticks as f64 * tick_ns()),
        lb_cpu_us,
    })
}

/// Waits until one plain request to `target` from the client succeeds.
fn wait_answers(lab: &DsrLab, target: SocketAddr) -> Result<()> {
    let client = lab.client.clone();
    wait::until(
        &format!("{target} to answer the client"),
        READY_TIMEOUT,
        || {
            let r = netns::run_in(&client, move || http::get(target, "/"));
            Ok(r.ok().filter(|m| m.status() == Some(200)).map(|_| ()))
        },
    )
}

/// Runs wrk in the client namespace for `secs` seconds.
fn wrk(
    lab: &DsrLab,
    target: SocketAddr,
    load: Load,
    secs: u64,
    connections: u32,
) -> Result<Measurement> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.client, "wrk", "--latency", "-t", "1"])
        .arg("-c")
        .arg(connections.to_string())
        .arg("-d")
        .arg(format!("{secs}s"));
    if load == Load::NewConnections {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(format!("http://{target}/"));
    let out = output(&mut cmd)?;
    wrk::parse(&out).with_context(|| format!("reading wrk's output:\n{out}"))
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{us:.0}us")
    }
}

/// Nanoseconds per clock tick of /proc/<pid>/stat.
fn tick_ns() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1e9 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// utime + stime of process `pid` (all its threads, living and dead), in
/// clock ticks.
fn process_ticks(pid: &str) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields follow its last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// CPU ticks of the lab so far, but for the LB's process: the backends'
/// processes (`backends`), this process, its reaped children (each
/// finished wrk), and every ksoftirqd thread.
fn lab_cpu_ticks(backends: &[u32]) -> Result<u64> {
    let mut ticks = process_ticks("self")?;
    for pid in backends {
        ticks += process_ticks(&pid.to_string())?;
    }
    ticks += children_ticks();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.starts_with("ksoftirqd/") {
            ticks += process_ticks(pid).unwrap_or(0);
        }
    }
    Ok(ticks)
}

/// User + system time of reaped children, in clock ticks.
fn children_ticks() -> u64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    ((us(ru.ru_utime) + us(ru.ru_stime)) * 1e3 / tick_ns()) as u64
}

/// The CPU an LB has used so far.
struct LbSample {
    /// User + system time of its process (if any), in clock ticks.
    process_ticks: u64,
    /// What the LB itself has used, in nanoseconds, where measurable.
    own_ns: Option<u64>,
}

/// Samples the CPU an LB has used.
trait LbCpu {
    fn sample(&mut self) -> Result<LbSample>;
}

/// No process of its own to measure.
struct NoLbCpu;

impl LbCpu for NoLbCpu {
    fn sample(&mut self) -> Result<LbSample> {
        Ok(LbSample {
            process_ticks: 0,
            own_ns: None,
        })
    }
}

/// A process's user + system time.
struct ProcessCpu(u32);

impl LbCpu for ProcessCpu {
    fn sample(&mut self) -> Result<LbSample> {
        let ticks = process_ticks(&self.0.to_string())?;
        Ok(LbSample {
            process_ticks: ticks,
            own_ns: Some((ticks as f64 * tick_ns()) as u64),
        })
    }
}

/// edge's XDP program run time (BPF statistics), while the descriptor
/// that enables the statistics is open; the daemon's own process time
/// counts in the lab's total.
struct EdgeCpu {
    pid: u32,
    _stats: OwnedFd,
}

impl EdgeCpu {
    fn new(edge: &Edge) -> Result<Self> {
        let pid = edge.pid().context("edge is not running")?;
        Ok(Self {
            pid,
            _stats: enable_bpf_stats()?,
        })
    }
}

impl LbCpu for EdgeCpu {
    fn sample(&mut self) -> Result<LbSample> {
        Ok(LbSample {
            process_ticks: process_ticks(&self.pid.to_string())?,
            own_ns: Some(xdp_run_time_ns(self.pid)?),
        })
    }
}

/// BPF_ENABLE_STATS: the kernel times every BPF program run while the
/// returned descriptor is open (and stops when it closes, even if this
/// process dies).
fn enable_bpf_stats() -> Result<OwnedFd> {
    const BPF_ENABLE_STATS: libc::c_long = 32;
    const BPF_STATS_RUN_TIME: u32 = 0;
    let attr: [u32; 4] = [BPF_STATS_RUN_TIME, 0, 0, 0];
    // SAFETY: bpf(2) reads `size_of_val(&attr)` bytes from a valid buffer.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_ENABLE_STATS,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        bail!("BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Total run time of the XDP programs process `pid` holds, from the
/// fdinfo of its BPF program descriptors.
fn xdp_run_time_ns(pid: u32) -> Result<u64> {
    const BPF_PROG_TYPE_XDP: &str = "6";
    let mut seen = Vec::new();
    let mut total = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))?.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        if field("prog_type:").as_deref() != Some(BPF_PROG_TYPE_XDP) {
            continue;
        }
        let id = field("prog_id:");
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        total += field("run_time_ns:")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// The lab and the HTTP servers the benchmark runs on its backends.
struct Rig {
    // Field order is drop order: servers stop before the lab goes.
    backends: Vec<Process>,
    lab: DsrLab,
}

impl Rig {
    fn backend_pids(&self) -> Vec<u32> {
        self.backends.iter().filter_map(Process::pid).collect()
    }
}

/// Replaces the lab's test backends (a thread per connection: their
/// thread start-ups would dominate what is measured) by HAProxy in HTTP
/// mode answering `200` with `X-Backend` from memory, one thread each, on
/// the same `0.0.0.0:<port>`.
fn http_backends(lab: &mut DsrLab, dir: &Path) -> Result<Vec<Process>> {
    let mut servers = Vec::new();
    for (i, name) in PLAN.backends.iter().enumerate() {
        lab.stop_backend(i);
        let config = format!(
            "global\n  maxconn 4096\n  nbthread 1\n\
             defaults\n  mode http\n  timeout client 30s\n  timeout connect 5s\n  timeout server 30s\n\
             frontend web\n  bind :{}\n  \
             http-request return status 200 content-type text/plain string \"{name}\\n\" hdr X-Backend {name}\n",
            PLAN.port
        );
        let path = dir.join(format!("{name}.cfg"));
        std::fs::write(&path, config)?;
        let args = ["-db".as_ref(), "-f".as_ref(), path.as_os_str()];
        let mut p = Process::spawn(
            &format!("haproxy backend {name}"),
            Some(&lab.backend_ns[i]),
            Path::new(HAPROXY),
            &args,
            &dir.join(format!("{name}.log")),
        )?;
        let target = SocketAddr::new(PLAN.backend_ip(i), PLAN.port);
        let client = lab.client.clone();
        wait::until(&format!("backend {name} to answer"), READY_TIMEOUT, || {
            p.check_running()?;
            let r = netns::run_in(&client, move || http::get(target, "/"));
            Ok(r.ok().filter(|m| m.status() == Some(200)).map(|_| ()))
        })?;
        servers.push(p);
    }
    Ok(servers)
}

/// Starts edge with the lab's L4 service and waits until it balances.
fn start_edge(lab: &DsrLab, bin: &Path, dir: &Path) -> Result<Edge> {
    lab.set_return_path(ReturnPath::Direct)?;
    let config = dir.join("edge.yaml");
    let health = HealthCheck {
        interval: "1s",
        timeout: "500ms",
        rise: 1,
        fall: 2,
    };
    std::fs::write(&config, PLAN.edge_config(Some(health)))?;
    let mut edge = Edge::start_bin(bin, Some(&lab.edge), &config)?;
    edge.wait_ready(Some(&lab.client), PLAN.admin(), READY_TIMEOUT)?;
    let client = lab.client.clone();
    wait::until("every backend to be healthy", READY_TIMEOUT, || {
        let admin = PLAN.admin();
        let m = netns::run_in(&client, move || http::get(admin, "/metrics"))?.text();
        let healthy = (0..PLAN.backends.len())
            .all(|i| dsr::backend_healthy(&m, "web", PLAN.backend_ip(i)) == Some(true));
        Ok(healthy.then_some(()))
    })
    .with_context(|| format!("edge log:\n{}", edge.log_text()))?;
    Ok(edge)
}

/// The nftables DNAT load balancer in edge's namespace; removed on drop.
struct Nftables<'a> {
    lab: &'a DsrLab,
}

impl<'a> Nftables<'a> {
    fn start(lab: &'a DsrLab) -> Result<Self> {
        let targets: Vec<String> = (0..PLAN.backends.len())
            .map(|i| format!("{i} : {}", PLAN.backend_ip(i)))
            .collect();
        // kube-proxy's nftables mode picks an endpoint with
        // `numgen random mod N` and DNATs to it; conntrack un-NATs answers.
        let rules = format!(
            "table ip {NFT_TABLE} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
             ip daddr {} tcp dport {} dnat to numgen random mod {} map {{ {} }}\n  }}\n}}\n",
            PLAN.vip,
            PLAN.port,
            PLAN.backends.len(),
            targets.join(", ")
        );
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), rules)?;
        lab.set_edge_forwarding(true)?;
        lab.set_return_path(ReturnPath::ViaEdge)?;
        let this = Self { lab };
        output(
            Command::new("ip")
                .args(["netns", "exec", &lab.edge, "nft", "-f"])
                .arg(file.path()),
        )?;
        Ok(this)
    }
}

impl Drop for Nftables<'_> {
    fn drop(&mut self) {
        let lab = self.lab;
        let _ = output(Command::new("ip").args([
            "netns", "exec", &lab.edge, "nft", "delete", "table", "ip", NFT_TABLE,
        ]));
        if let Err(e) = lab
            .set_edge_forwarding(false)
            .and_then(|()| lab.set_return_path(ReturnPath::Direct))
        {
            eprintln!("removing the nftables load balancer: {e:#}");
        }
    }
}

/// HAProxy in TCP mode in edge's namespace, on the VIP (added to edge's
/// `lo` for it); stopped and removed on drop.
struct Haproxy<'a> {
    lab: &'a DsrLab,
    process: Process,
}

impl<'a> Haproxy<'a> {
    fn start(lab: &'a DsrLab, dir: &Path) -> Result<Self> {
        let servers: String = (0..PLAN.backends.len())
            .map(|i| {
                format!(
                    "  server {} {}:{}\n",
                    PLAN.backends[i],
                    PLAN.backend_ip(i),
                    PLAN.port
                )
            })
            .collect();
        let config = format!(
            "global\n  maxconn 4096\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend vip\n  bind {}\n  default_backend pool\n\
             backend pool\n  balance roundrobin\n{servers}",
            PLAN.vip_addr()
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config)?;
        let vip = format!("{}/32", PLAN.vip);
        lab.lab.addr(&lab.edge, "lo", &vip)?;
        let haproxy = Path::new(HAPROXY);
        let args = ["-db".as_ref(), "-f".as_ref(), path.as_os_str()];
        let process = match Process::spawn(
            "haproxy",
            Some(&lab.edge),
            haproxy,
            &args,
            &dir.join("haproxy.log"),
        ) {
            Ok(p) => p,
            Err(e) => {
                let _ = ip(&["-n", &lab.edge, "addr", "del", &vip, "dev", "lo"]);
                return Err(e);
            }
        };
        let mut this = Self { lab, process };
        let client = lab.client.clone();
        wait::until("haproxy to answer on the VIP", READY_TIMEOUT, || {
            this.process.check_running()?;
            let vip = PLAN.vip_addr();
            let r = netns::run_in(&client, move || http::get(vip, "/"));
            Ok(r.ok().map(|_| ()))
        })?;
        Ok(this)
    }

    fn pid(&self) -> Result<u32> {
        self.process.pid().context("haproxy is not running")
    }
}

impl Drop for Haproxy<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.process.stop() {
            eprintln!("stopping haproxy: {e:#}");
        }
        let vip = format!("{}/32", PLAN.vip);
        if let Err(e) = ip(&["-n", &self.lab.edge, "addr", "del", &vip, "dev", "lo"]) {
            eprintln!("removing the VIP from edge's lo: {e:#}");
        }
    }
}

/// The results as a Markdown table, with ratios and what was measured.
fn report(cells: &[Cell], opts: &Options) -> String {
    let find = |lb: Lb, load: Load| cells.iter().find(|c| c.lb == lb && c.load == load);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "wrk -t1 -c{} -d{}s from the client namespace, {} backends; CPU per request in microseconds",
        opts.connections,
        opts.duration,
        PLAN.backends.len()
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| load | through | rate | p50 | p99 | errors | lab CPU µs/req | LB's own CPU µs/req |"
    );
    let _ = writeln!(t, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for load in Load::ALL {
        for c in cells.iter().filter(|c| c.load == load) {
            let own = match (c.lb, c.lb_cpu_us) {
                (Lb::Edge, Some(v)) => format!("{v:.2} (XDP program)"),
                (Lb::Haproxy, Some(v)) => format!("{v:.2} (process)"),
                (Lb::Nftables, _) => "in softirq, see lab".to_string(),
                _ => "–".to_string(),
            };
            let _ = writeln!(
                t,
                "| {} | {} | {:.0}/s | {} | {} | {} | {:.1} | {own} |",
                load.label(),
                c.lb.label(),
                c.wrk.rps,
                fmt_us(c.wrk.p50_us),
                fmt_us(c.wrk.p99_us),
                c.wrk.failed,
                c.lab_cpu_us,
            );
        }
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| load | ratio | rate | p99 | lab CPU per request | lab CPU over baseline per request |"
    );
    let _ = writeln!(t, "| --- | --- | ---: | ---: | ---: | ---: |");
    for load in Load::ALL {
        let base = find(Lb::Direct, load);
        let Some(edge) = find(Lb::Edge, load) else {
            continue;
        };
        for other in [Lb::Nftables, Lb::Haproxy] {
            let Some(o) = find(other, load) else {
                continue;
            };
            let over = match base {
                Some(b) => {
                    let (e, o) = (edge.lab_cpu_us - b.lab_cpu_us, o.lab_cpu_us - b.lab_cpu_us);
                    if o > 0.0 {
                        format!("{:.2} ({e:.1} vs {o:.1} µs)", e / o)
                    } else {
                        format!("{e:.1} vs {o:.1} µs")
                    }
                }
                None => "–".to_string(),
            };
            let _ = writeln!(
                t,
                "| {} | edge / {} | {:.2} | {:.2} | {:.2} | {over} |",
                load.label(),
                other.label(),
                edge.wrk.rps / o.wrk.rps,
                edge.wrk.p99_us / o.wrk.p99_us,
                edge.lab_cpu_us / o.lab_cpu_us,
            );
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() -> Result<()> {
        let out = "Running 2s test @ http://10.77.0.100:80/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.27ms  512.59us  12.00ms   80.00%
    Req/Sec    25.18k     1.62k   27.30k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.50ms
     90%    2.00ms
     99%    3.10ms
  50111 requests in 2.00s, 9.17MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:  25055.50
Transfer/sec:      4.58MB
";
        let r = wrk::parse(out)?;
        assert_eq!(r.requests, 50111);
        assert_eq!(r.failed, 9);
        assert!((r.rps - 25055.5).abs() < 1e-6);
        assert!((r.p50_us - 812.0).abs() < 1e-6);
        assert!((r.p99_us - 3100.0).abs() < 1e-6);
        Ok(())
    }
}
