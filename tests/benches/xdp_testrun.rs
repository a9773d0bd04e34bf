//! Nanoseconds per packet through BPF_PROG_TEST_RUN for the XDP program's
//! main paths, beside a trivial XDP_PASS program measured the same way.
//!
//! Method (Katran's tester does the same): `repeat` = 1 on every call,
//! because with `repeat` > 1 the kernel re-runs the program on the frame it
//! already rewrote (the second run would see an IPIP packet); many calls
//! (`EDGE_BENCH_CALLS`, default 100 000) per trial, averaging the
//! kernel-reported duration; the thread pinned to one CPU; several trials
//! (`EDGE_BENCH_TRIALS`, default 5), reporting the median and minimum of
//! the trial means (and, as a figure robust to preemption on a busy
//! machine, the median single call). Every call's return code and output
//! frame are checked,
//! outside the timed region (the kernel times only the program).
//!
//! The connection table is production-sized: `EDGE_BENCH_CONNTRACK`
//! entries (default 1 048 576; Katran's default is 8 M split over its
//! forwarding cores, about 1 M per core). New flows are timed twice:
//! first into the empty table (e), where an insert takes an entry off this
//! CPU's free list, as in a table with room; then (b), after the table has
//! been filled with that many new flows and an eighth more, so that every
//! insert evicts, as on a balancer whose table is full. The
//! per-CPU LRU costs 112 + 8 × CPUs bytes per entry (see
//! `edge_common::DEFAULT_CONNTRACK_CAPACITY`): 128 MiB at 1 M on 2 CPUs.
//!
//! Targets are multiples of the trivial program's median in the same run
//! (Katran, measured the same way: 2.5–3.3× for a hit, 11–12.6× for a new
//! flow, 2.2–2.5× for non-VIP traffic).
//!
//! Run: `cargo bench -p edge-tests --bench xdp_testrun` (as root).

use aya::programs::{TestRun, TestRunOptions, Xdp};
use edge_common::PROGRAM_PASS;
use edge_tests::l4packets::{Ip, Tcp, ipip, tcp};
use edge_userspace::{
    config,
    dataplane::{Dataplane, LoadOptions},
    l4::plan,
};
use std::{net::IpAddr, path::Path, time::Duration};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 1];
const EDGE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xee, 1];
const CLIENT: [u8; 4] = [192, 0, 2, 10];
const DENIED: [u8; 4] = [203, 0, 113, 5];
const VIP: [u8; 4] = [10, 77, 0, 100];
const HOST: [u8; 4] = [10, 77, 0, 1];
const SOURCE: [u8; 4] = [10, 77, 2, 1];
const REALS: [[u8; 4]; 3] = [[10, 77, 2, 11], [10, 77, 2, 12], [10, 77, 2, 13]];

/// Connection table entries unless `EDGE_BENCH_CONNTRACK` says otherwise.
const CONNTRACK: u32 = 1 << 20;

/// Production-like: a 65 537-slot Maglev table over three backends, a deny
/// list, an L7 port; the connection table is sized apart ([`CONNTRACK`]).
const CONFIG: &str = "
xdp:
  interfaces: [{ name: eth0 }]
  deny: [203.0.113.0/24, 198.51.100.0/24, 2001:db8:bad::/48]
listeners: [{ name: web, address: '0.0.0.0:8080', pool: p }]
pools: [{ name: p, backends: [{ address: '127.0.0.1:9' }] }]
l4:
  forwarding: { source_v4: 10.77.2.1 }
  services:
    - name: web
      vip: 10.77.0.100
      port: 80
      backends: [{ address: 10.77.2.11 }, { address: 10.77.2.12 }, { address: 10.77.2.13 }]
";

fn real_mac(a: [u8; 4]) -> [u8; 6] {
    [0x02, 0, 0, 0, 0xbb, a[3]]
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pin_cpu() -> usize {
    // SAFETY: sched_getcpu has no preconditions; the cpu_set_t is zeroed
    // and only written through CPU_SET within its bounds.
    unsafe {
        let cpu = libc::sched_getcpu().max(0) as usize;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            panic!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
        cpu
    }
}

fn load(conntrack: u32) -> Dataplane {
    let cfg = config::parse(CONFIG, Path::new("bench.yaml")).expect("bench config");
    let mut dp = Dataplane::load_with(&LoadOptions {
        pin: None,
        conntrack_capacity: conntrack,
        l4_services: 1,
    })
    .expect("load the XDP object (run as root)");
    dp.tables().set_deny(&cfg.xdp.deny).expect("deny list");
    dp.tables().set_l7_ports(&cfg.l7_ports()).expect("L7 ports");
    let p = plan::plan(&cfg.l4, &Default::default(), edge_common::MAX_L4_SERVICES).expect("plan");
    let mut m = dp.l4();
    m.set_settings(&p.settings).expect("settings");
    for svc in &p.services {
        for real in &svc.backends {
            let IpAddr::V4(a) = real.address else {
                unreachable!("IPv4 backends")
            };
            let def = plan::real_def(real.address, real_mac(a.octets()), 0, true);
            m.set_real(real.id, &def).expect("real");
        }
        m.write_ring(svc.id, 0, &svc.ring(&vec![true; svc.backends.len()]))
            .expect("ring");
        m.set_vip(&svc.key, &svc.meta(0, plan::PrevTable::NONE))
            .expect("vip");
    }
    for marker in &p.markers {
        m.set_vip(marker, &plan::marker_meta()).expect("marker");
    }
    drop(m);
    dp
}

/// One timed call: the kernel's duration, the action and the output.
fn call(program: &Xdp, input: &[u8], out: &mut [u8]) -> (Duration, u32, usize) {
    let r = program
        .test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(out),
            repeat: 1,
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    (r.duration, r.return_value, r.data_size_out as usize)
}

/// How one path's calls are made and checked.
trait Workload {
    /// The frame of call `i`.
    fn input(&mut self, i: u32) -> &[u8];
    /// Checks call `i`'s result.
    fn check(&self, i: u32, action: u32, out: &[u8]);
}

/// The same frame every call; a fixed expected action and output.
struct Fixed {
    frame: Vec<u8>,
    action: u32,
    output: Vec<u8>,
}

impl Workload for Fixed {
    fn input(&mut self, _: u32) -> &[u8] {
        &self.frame
    }
    fn check(&self, i: u32, action: u32, out: &[u8]) {
        assert_eq!(action, self.action, "call {i}: action");
        assert_eq!(out, &self.output[..], "call {i}: output");
    }
}

/// A new flow every call: the client address and port step through a
/// space far larger than the conntrack, as a stream of new clients would
/// (each `n` below 2^28 is its own source address and port).
struct Fresh {
    frame: Vec<u8>,
    trial: u32,
}

impl Fresh {
    fn set(&mut self, i: u32) {
        let n = self.trial.wrapping_mul(7_919_u32 << 8) ^ i;
        // 100.64.0.0/10 sources (never denied), ports from 1024.
        let src = [
            100,
            64 | ((n >> 22) & 0x3f) as u8,
            (n >> 14) as u8,
            (n >> 6) as u8,
        ];
        let port = 1024 + (n & 0x3f) as u16 * 997 % 64000;
        self.frame[26..30].copy_from_slice(&src);
        self.frame[34..36].copy_from_slice(&port.to_be_bytes());
    }
}

impl Workload for Fresh {
    fn input(&mut self, i: u32) -> &[u8] {
        self.set(i);
        &self.frame
    }
    fn check(&self, i: u32, action: u32, out: &[u8]) {
        assert_eq!(action, XDP_TX, "call {i}: action");
        let dst: [u8; 4] = out[14 + 16..14 + 20].try_into().expect("outer header");
        assert!(REALS.contains(&dst), "call {i}: outer destination {dst:?}");
        assert_eq!(
            out,
            &ipip(&self.frame, EDGE_MAC, real_mac(dst), SOURCE, dst)[..],
            "call {i}: output"
        );
    }
}

/// Mean kernel ns per packet over `calls` calls of `path`; every call's
/// duration is also appended to `per_call`.
fn trial(program: &Xdp, path: &mut dyn Workload, calls: u32, per_call: &mut Vec<u64>) -> f64 {
    let mut out = vec![0u8; 512];
    let mut total = Duration::ZERO;
    for i in 0..calls {
        let input = path.input(i).to_vec();
        let (d, action, len) = call(program, &input, &mut out);
        total += d;
        per_call.push(d.as_nanos() as u64);
        path.check(i, action, &out[..len]);
    }
    total.as_nanos() as f64 / f64::from(calls)
}

/// Fills the connection table: `flows` new flows, none of them timed,
/// each checked for its action only. The trial numbers of [`Fresh`] start
/// at 1, so the timed flows are others.
fn fill(program: &Xdp, syn: &[u8], flows: u32) {
    let mut filler = Fresh {
        frame: syn.to_vec(),
        trial: 0,
    };
    let mut out = vec![0u8; 512];
    for i in 0..flows {
        let (_, action, _) = call(program, filler.input(i), &mut out);
        assert_eq!(action, XDP_TX, "filling the connection table: flow {i}");
    }
}

struct Row {
    name: &'static str,
    median: f64,
    min: f64,
    /// The median single call: robust to the preemptions a busy machine
    /// adds to a few calls (which the means include).
    p50: f64,
    /// The most the median may be, as a multiple of the trivial program's.
    target: Option<f64>,
}

fn row(
    name: &'static str,
    mut means: Vec<f64>,
    mut per_call: Vec<u64>,
    target: Option<f64>,
) -> Row {
    means.sort_by(f64::total_cmp);
    per_call.sort_unstable();
    Row {
        name,
        median: means[means.len() / 2],
        min: means[0],
        p50: per_call[per_call.len() / 2] as f64,
        target,
    }
}

fn measure(
    program: &Xdp,
    name: &'static str,
    path: &mut dyn Workload,
    calls: u32,
    trials: u32,
    target: Option<f64>,
) -> Row {
    let mut per_call = Vec::new();
    let means = (0..trials)
        .map(|_| trial(program, path, calls, &mut per_call))
        .collect();
    row(name, means, per_call, target)
}

fn main() {
    let calls = env("EDGE_BENCH_CALLS", 100_000);
    let trials = env("EDGE_BENCH_TRIALS", 5).max(1);
    let conntrack = env("EDGE_BENCH_CONNTRACK", CONNTRACK).max(1);
    // `EDGE_BENCH_ONLY=a` (or `b`, `c`, `d`, several letters) times only
    // those paths beside the trivial program: for `perf record`, so that a
    // profile holds one path's samples.
    let only = std::env::var("EDGE_BENCH_ONLY").unwrap_or_else(|_| "abcde".into());
    let wanted = |path: char| only.contains(path);
    let cpu = pin_cpu();
    let mut dp = load(conntrack);

    let ack = tcp(
        ROUTER_MAC,
        EDGE_MAC,
        None,
        Ip::V4(CLIENT),
        Ip::V4(VIP),
        40000,
        80,
        Tcp::Ack,
    );
    let syn = tcp(
        ROUTER_MAC,
        EDGE_MAC,
        None,
        Ip::V4(CLIENT),
        Ip::V4(VIP),
        40000,
        80,
        Tcp::Syn,
    );
    let other = tcp(
        ROUTER_MAC,
        EDGE_MAC,
        None,
        Ip::V4(CLIENT),
        Ip::V4(HOST),
        40000,
        22,
        Tcp::Syn,
    );
    let denied = tcp(
        ROUTER_MAC,
        EDGE_MAC,
        None,
        Ip::V4(DENIED),
        Ip::V4(VIP),
        40000,
        80,
        Tcp::Syn,
    );

    // A new flow into a table with room first, while the table is empty:
    // the method (a production-sized table that does not evict on
    // every insert). Each CPU's LRU list has its share of the free
    // entries, so at most that share is inserted from this CPU.
    let roomy = wanted('e').then(|| {
        let cpus = aya::util::nr_cpus().map_or(1, |n| n.max(1)) as u32;
        let share = conntrack / cpus;
        let per_trial = calls.min(share / trials).max(1);
        let mut fresh = Fresh {
            frame: syn.clone(),
            trial: 0,
        };
        let program = dp.program().expect("program");
        let mut means = Vec::new();
        let mut per_call = Vec::new();
        for t in 0..trials {
            // Other flows than (b)'s: trial numbers past its own.
            fresh.trial = trials + t + 1;
            means.push(trial(program, &mut fresh, per_trial, &mut per_call));
        }
        row(
            "(e) new flow, table with room (no evict)",
            means,
            per_call,
            Some(10.0),
        )
    });

    // Fill the connection table first, so that the hit path's flow, made
    // next, is the most recent entry (the LRU keeps it).
    let flows = conntrack.saturating_add(conntrack / 8);
    let started = std::time::Instant::now();
    fill(dp.program().expect("program"), &syn, flows);
    println!(
        "connection table: {conntrack} entries, filled with {flows} new flows in {:.1?}",
        started.elapsed()
    );

    // Establish the flow the hit path uses, and learn its backend.
    let mut out = vec![0u8; 512];
    let (_, action, len) = call(dp.program().expect("program"), &syn, &mut out);
    assert_eq!(action, XDP_TX, "warm-up SYN");
    let real: [u8; 4] = out[14 + 16..14 + 20].try_into().expect("outer header");
    assert!(REALS.contains(&real));
    assert_eq!(
        out[..len],
        ipip(&syn, EDGE_MAC, real_mac(real), SOURCE, real)[..]
    );

    let mut hit = Fixed {
        output: ipip(&ack, EDGE_MAC, real_mac(real), SOURCE, real),
        frame: ack,
        action: XDP_TX,
    };
    let mut fresh = Fresh {
        frame: syn.clone(),
        trial: 0,
    };
    let mut pass = Fixed {
        output: other.clone(),
        frame: other.clone(),
        action: XDP_PASS,
    };
    let mut drop = Fixed {
        output: denied.clone(),
        frame: denied,
        action: XDP_DROP,
    };
    let mut trivial = Fixed {
        output: other.clone(),
        frame: other,
        action: XDP_PASS,
    };

    println!(
        "edge XDP through BPF_PROG_TEST_RUN: {calls} calls x {trials} trials per path, \
         repeat = 1, pinned to CPU {cpu}; kernel-reported ns per packet"
    );
    let mut rows = Vec::new();
    {
        let baseline = dp.extra_program(PROGRAM_PASS).expect("edge_pass");
        rows.push(measure(
            baseline,
            "trivial XDP_PASS (edge_pass)",
            &mut trivial,
            calls,
            trials,
            None,
        ));
    }
    let program = dp.program().expect("program");
    if wanted('a') {
        rows.push(measure(
            program,
            "(a) conntrack hit -> IPIP, XDP_TX",
            &mut hit,
            calls,
            trials,
            Some(2.5),
        ));
    }
    if wanted('b') {
        let mut means = Vec::new();
        let mut per_call = Vec::new();
        for t in 0..trials {
            fresh.trial = t + 1;
            means.push(trial(program, &mut fresh, calls, &mut per_call));
        }
        rows.push(row(
            "(b) new flow, full table (evicts)",
            means,
            per_call,
            Some(10.0),
        ));
    }
    rows.extend(roomy);
    if wanted('c') {
        rows.push(measure(
            program,
            "(c) non-VIP, XDP_PASS",
            &mut pass,
            calls,
            trials,
            Some(2.0),
        ));
    }
    if wanted('d') {
        rows.push(measure(
            program,
            "(d) denied source, XDP_DROP",
            &mut drop,
            calls,
            trials,
            None,
        ));
    }

    let base = rows[0].median.max(1.0);
    println!();
    println!(
        "| {:<40} | {:>10} | {:>10} | {:>14} | {:>12} | {:>12} |",
        "path", "median ns", "min ns", "median/trivial", "per-call p50", "target"
    );
    println!(
        "|{:-<42}|{:-<12}|{:-<12}|{:-<16}|{:-<14}|{:-<14}|",
        "", "", "", "", "", ""
    );
    for r in &rows {
        let target = match r.target {
            Some(t) if r.median / base <= t => format!("<={t:.1}x ok"),
            Some(t) => format!("<={t:.1}x MISS"),
            None => String::new(),
        };
        println!(
            "| {:<40} | {:>10.1} | {:>10.1} | {:>13.2}x | {:>12.0} | {:>12} |",
            r.name,
            r.median,
            r.min,
            r.median / base,
            r.p50,
            target
        );
    }
}
