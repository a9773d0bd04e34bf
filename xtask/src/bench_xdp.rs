//! `cargo xtask bench xdp`: the L4 fast path measured two ways.
//!
//! 1. Per packet, through BPF_PROG_TEST_RUN: `cargo bench -p edge-tests
//!    --bench xdp_testrun` (the L4 engineer's micro-benchmark).
//! 2. End to end in the DSR lab (`edge_tests::dsr`): wrk from the client
//!    namespace to the VIP, new connections per second (`Connection:
//!    close`) and requests per second over long keep-alive connections,
//!    through
//!    - no load balancer at all: the client's own kernel spreads its
//!      connections over the three backends (an ECMP route to the VIP
//!      hashed on the 5-tuple), the baseline the others add to,
//!    - edge's XDP path (IPIP, direct server return),
//!    - an nftables DNAT load balancer (`numgen random` over the same
//!      backends, the kernel's own L4 balancing as kube-proxy's nftables
//!      mode does it; answers route back through the LB host to be
//!      un-NATed),
//!    - HAProxy in TCP mode on the LB host.
//!
//! Every figure is the median of `--rounds` rounds with its spread. A
//! round measures every path once, each set up from scratch and removed
//! afterwards; the order of the paths rotates from round to round and the
//! two loads swap, so no path is always the first (cold) or the last
//! (after the others' leftovers), and changes in the machine's other load
//! spread over all of them. What else keeps the rounds comparable, each
//! once a cause of swings from run to run:
//! - Ports and TIME_WAIT: every new connection takes a client port towards
//!   the VIP, and through HAProxy a port of the LB host towards a backend.
//!   Whichever side closes first keeps the pair in TIME_WAIT for 60 s;
//!   with a namespace's default 28 232 ports and no reuse, a few cells of
//!   thousands of connections a second leave connect() scanning ever
//!   longer for a free pair, and the path measured next paid for those
//!   before it. The client and the LB host run with HAProxy's recommended
//!   settings (see `paths::tune`).
//! - Leftover state: nftables' conntrack table is emptied before each of
//!   its cells, and edge starts afresh each round (an empty flow table),
//!   so neither measures another cell's connections; edge's XDP program
//!   must be gone from the interface before the next path is measured.
//! - The baseline goes to the same three backends at the same address as
//!   the load balancers do, not to one backend, so "over the baseline"
//!   is what the load balancer adds and nothing else.
//! - BPF statistics (their clock reads) are on for every cell alike, not
//!   only edge's: the decapsulators run XDP in every cell.
//!
//! CPU is measured per cell, per request, two ways. The lab's CPU: user +
//! system time of wrk, of this process, of the backends' processes, of the
//! LB's process (edge or HAProxy) and of the `ksoftirqd` threads. This
//! kernel charges softirq work (where XDP and netfilter run) to the task it
//! interrupts, so this total covers the whole lab without counting what
//! other users of the machine run; what they ran meanwhile is reported
//! beside it. The LB's own CPU: for edge, the XDP program's run time from
//! the kernel's BPF statistics; for HAProxy, its process time; nftables
//! has no process of its own, so only the lab total minus the baseline's
//! shows its cost.
//!
//! The report is printed and written to `target/bench/xdp.md`.

mod counters;
mod cpu;
mod paths;
mod report;

use crate::{
    bench_l7::{
        self,
        wrk::{self, Measurement},
    },
    build, cargo, require_root, run_status, toolchain,
};
use anyhow::{Context, Result, bail};
use clap::Args;
use counters::NsCounters;
use cpu::{EdgeCpu, LbCpu, NoLbCpu, ProcessCpu};
use edge_tests::{
    dsr::{DsrLab, DsrPlan},
    http,
    lab::output,
    netns,
    process::Process,
    wait,
};
use report::{Sample, Slot};
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

/// Debian packages the end-to-end benchmark runs (`conntrack` empties
/// nftables' connection table between cells).
const PACKAGES: &[&str] = &["wrk", "haproxy", "nftables", "conntrack"];
const PLAN: DsrPlan<'static> = DsrPlan {
    client_net: "10.77.1",
    backend_net: "10.77.2",
    vip: Ipv4Addr::new(10, 77, 0, 100),
    port: 80,
    backends: &["be1", "be2", "be3"],
    net6: None,
};
const HAPROXY: &str = "/usr/sbin/haproxy";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Seconds of the same load before each measured cell: ARP, the client's
/// port choice, conntrack and the backends' threads settle first.
const WARMUP_SECS: u64 = 1;
/// Above this share of the machine's CPU going to other work during a
/// cell, the cell is flagged: its rate and latency say more about the
/// machine than about the path.
const BUSY_MACHINE: f64 = 0.25;

/// Options of `cargo xtask bench xdp`.
#[derive(Args, Clone, Debug)]
pub struct Options {
    /// Seconds of load per cell.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub duration: u64,
    /// Concurrent wrk connections (wrk holds a descriptor for each, within
    /// the usual limit of 1024 open files).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub connections: u32,
    /// Rounds: each measures every path once, in an order rotated from
    /// round to round; the report shows each figure's median over the
    /// rounds and its spread (three or more for a spread worth reading).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
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
    /// No load balancer: the client's own route spreads its connections
    /// over the backends.
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
    // edge's release build also runs the decapsulators, which are part of
    // the lab in every cell whichever paths `--only` picks: without them
    // a subset would measure another lab than a full run (no XDP on the
    // backends' and the switch port's veths, which then copy no packets),
    // and its figures would not compare with a full run's.
    let bin = build(root, true)?;
    // From here on Ctrl-C and SIGTERM only mark the run as interrupted: it
    // stops before the next cell, and the guards below remove every
    // namespace, process and nftables table on the way out.
    bench_l7::catch_signals();
    println!("\nxtask: building the DSR lab");
    let mut lab = DsrLab::build(PLAN)?;
    paths::tune(&lab)?;
    lab.start_decaps(&bin)?;
    let logs = tempfile::tempdir()?;
    let backends = paths::http_backends(&mut lab, logs.path())?;
    let mut rig = Rig { backends, lab };
    let machine = machine();
    // The decapsulators run XDP in every cell: with the statistics on for
    // all of them, every path pays their clock reads alike (they stop
    // when the descriptor closes, even if this process dies).
    let stats = cpu::enable_bpf_stats()?;
    let mut samples = Vec::new();
    for round in 0..opts.rounds {
        let order = round_order(&lbs, round);
        let loads = round_loads(round);
        let names: Vec<&str> = order.iter().map(|l| l.label()).collect();
        println!(
            "xtask: round {}/{}: {}",
            round + 1,
            opts.rounds,
            names.join(", ")
        );
        for (position, &lb) in order.iter().enumerate() {
            let slot = Slot {
                round,
                position,
                lb,
            };
            println!("xtask: measuring {}", lb.label());
            let measured = measure_lb(&rig, &bin, slot, loads, opts)
                .with_context(|| format!("measuring {} in round {}", lb.label(), round + 1))?;
            samples.extend(measured);
        }
        rig.lab.check_decaps()?;
    }
    drop(stats);
    drop(rig);
    let md = format!("{machine}\n\n{}", report::render(&samples, &lbs, opts));
    bench_l7::write_report(root, "xdp.md", &md)
}

/// The paths in round `round`'s order: `lbs` rotated left by the round's
/// number, so each path takes its turn at each place.
fn round_order(lbs: &[Lb], round: u32) -> Vec<Lb> {
    let mut order = lbs.to_vec();
    if !order.is_empty() {
        let by = round as usize % order.len();
        order.rotate_left(by);
    }
    order
}

/// The loads in round `round`'s order: swapped every other round, so
/// neither always runs right after the other's leftovers.
fn round_loads(round: u32) -> [Load; 2] {
    let [a, b] = Load::ALL;
    if round.is_multiple_of(2) {
        [a, b]
    } else {
        [b, a]
    }
}

/// What the numbers were measured on: date, CPU, kernel, the load the
/// machine carried before the run (others' work shares the CPUs), and the
/// host's conntrack limits (global, shared by every namespace).
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
    let sysctl = |name: &str| {
        let v = read(&format!("/proc/sys/net/netfilter/{name}"));
        if v.trim().is_empty() {
            "n/a".to_string()
        } else {
            v.trim().to_string()
        }
    };
    format!(
        "{date}; {cpus} × {model}; Linux {}; load average before the run {}; \
         nf_conntrack_max {}, nf_conntrack_buckets {}",
        read("/proc/sys/kernel/osrelease").trim(),
        load.join(" "),
        sysctl("nf_conntrack_max"),
        sysctl("nf_conntrack_buckets"),
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

/// Sets `slot`'s path up from scratch, measures `loads` through it in that
/// order, and removes it again.
fn measure_lb(
    rig: &Rig,
    bin: &Path,
    slot: Slot,
    loads: [Load; 2],
    opts: &Options,
) -> Result<Vec<Sample>> {
    let lab = &rig.lab;
    let dir = tempfile::tempdir()?;
    let mut samples = Vec::new();
    match slot.lb {
        Lb::Direct => {
            let _route = paths::Direct::start(lab)?;
            for load in loads {
                samples.push(cell(rig, slot, load, opts, &mut NoLbCpu)?);
            }
        }
        Lb::Edge => {
            let mut edge = paths::start_edge(lab, bin, dir.path())?;
            let mut cpu = EdgeCpu::new(&edge)?;
            for load in loads {
                samples.push(cell(rig, slot, load, opts, &mut cpu)?);
            }
            edge.stop(Duration::from_secs(15))?;
            paths::wait_xdp_gone(lab)?;
        }
        Lb::Nftables => {
            let nft = paths::Nftables::start(lab)?;
            for load in loads {
                nft.flush_conntrack()?;
                samples.push(cell(rig, slot, load, opts, &mut NoLbCpu)?);
            }
        }
        Lb::Haproxy => {
            let haproxy = paths::Haproxy::start(lab, dir.path())?;
            let mut cpu = ProcessCpu(haproxy.pid()?);
            for load in loads {
                samples.push(cell(rig, slot, load, opts, &mut cpu)?);
            }
        }
    }
    Ok(samples)
}

/// Warms the VIP up, then runs one wrk cell and measures CPU and the
/// namespaces' counters around it.
fn cell(
    rig: &Rig,
    slot: Slot,
    load: Load,
    opts: &Options,
    lb_cpu: &mut dyn LbCpu,
) -> Result<Sample> {
    bench_l7::interrupted()?;
    let lab = &rig.lab;
    let target = PLAN.vip_addr();
    let pids = rig.backend_pids();
    wait_answers(lab, target)?;
    wrk(lab, target, load, WARMUP_SECS, opts.connections)?;
    let client_before = NsCounters::read(&lab.client)?;
    let lb_host_before = NsCounters::read(&lab.edge)?;
    let machine_before = cpu::machine_ticks()?;
    let (lab_before, lb_before) = (cpu::lab_cpu_ticks(&pids)?, lb_cpu.sample()?);
    let started = Instant::now();
    let result = wrk(lab, target, load, opts.duration, opts.connections)?;
    let wall = started.elapsed();
    let (lab_after, lb_after) = (cpu::lab_cpu_ticks(&pids)?, lb_cpu.sample()?);
    let machine_after = cpu::machine_ticks()?;
    let client_after = NsCounters::read(&lab.client)?;
    let lb_host_after = NsCounters::read(&lab.edge)?;
    if result.requests == 0 {
        bail!("wrk completed no request through {}", slot.lb.label());
    }
    let requests = result.requests as f64;
    let per_req = |ns: f64| ns / 1000.0 / requests;
    let lab_ticks =
        (lab_after + lb_after.process_ticks).saturating_sub(lab_before + lb_before.process_ticks);
    let lb_cpu_us = match (lb_before.own_ns, lb_after.own_ns) {
        (Some(a), Some(b)) => Some(per_req(b.saturating_sub(a) as f64)),
        _ => None,
    };
    let others = cpu::others_share(
        machine_after.busy.saturating_sub(machine_before.busy),
        lab_ticks,
        machine_after.cpus,
        wall,
    );
    let syn_retrans = client_after
        .syn_retrans
        .saturating_sub(client_before.syn_retrans)
        + lb_host_after
            .syn_retrans
            .saturating_sub(lb_host_before.syn_retrans);
    let mut notes = Vec::new();
    if !result.errors.is_empty() {
        notes.push(format!("wrk: {}", result.errors.join(", ")));
    }
    if others > BUSY_MACHINE {
        notes.push(format!(
            "{:.0}% of the machine's CPU went to other work meanwhile",
            others * 100.0
        ));
    }
    if let (Some(a), Some(b)) = (
        lb_host_before.conntrack_drops,
        lb_host_after.conntrack_drops,
    ) && b > a
    {
        notes.push(format!(
            "conntrack dropped or failed to insert {} packets on the LB host",
            b - a
        ));
    }
    if let (Some(count), Some(max)) = (lb_host_after.conntrack, counters::conntrack_max())
        && slot.lb == Lb::Nftables
        && count.saturating_mul(10) >= max.saturating_mul(9)
    {
        notes.push(format!(
            "conntrack table {count} of nf_conntrack_max {max}: near full"
        ));
    }
    let lab_cpu_us = per_req(lab_ticks as f64 * cpu::tick_ns());
    let conntrack = match (slot.lb, lb_host_after.conntrack) {
        (Lb::Nftables, Some(n)) => format!("  conntrack {n}"),
        _ => String::new(),
    };
    println!(
        "  {:<24} {:>9.0}/s  p50 {:>8}  p99 {:>8}  errors {}  SYN retransmits {}  \
         lab {:.1} µs/req  others {:.0}%  TIME_WAIT client {} LB {}{conntrack}",
        load.label(),
        result.rps,
        fmt_us(result.p50_us),
        fmt_us(result.p99_us),
        result.failed,
        syn_retrans,
        lab_cpu_us,
        others * 100.0,
        client_after.time_wait,
        lb_host_after.time_wait,
    );
    Ok(Sample {
        slot,
        load,
        wrk: result,
        lab_cpu_us,
        lb_cpu_us,
        others,
        syn_retrans,
        notes,
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

    #[test]
    fn rounds_rotate_the_paths_and_swap_the_loads() {
        let all = Lb::ALL.to_vec();
        assert_eq!(round_order(&all, 0), all);
        assert_eq!(
            round_order(&all, 1),
            [Lb::Edge, Lb::Nftables, Lb::Haproxy, Lb::Direct]
        );
        assert_eq!(round_order(&all, 4), all);
        // Every path takes every place once in as many rounds as paths.
        for place in 0..all.len() {
            let seen: Vec<Lb> = (0..4).map(|r| round_order(&all, r)[place]).collect();
            assert!(all.iter().all(|lb| seen.contains(lb)), "{seen:?}");
        }
        assert!(round_order(&[], 3).is_empty());
        assert_eq!(round_loads(0), Load::ALL);
        assert_eq!(round_loads(1), [Load::KeepAlive, Load::NewConnections]);
        assert_eq!(round_loads(2), Load::ALL);
    }
}
