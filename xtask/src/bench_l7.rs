//! `cargo xtask bench l7`: edge against nginx and HAProxy as L7 reverse
//! proxies, configured alike, in front of one shared origin, all on
//! 127.0.0.1.
//!
//! One run measures, for each proxy, requests/s, p50/p99 latency (wrk) and
//! CPU time per request for: a small proxied response, a 64 KiB proxied
//! response, a cache hit, and HTTPS (TLS terminated by the proxy,
//! keep-alive). A case edge's configuration does not support yet (its
//! `edge check` fails) is reported as n/a and the run goes on.
//!
//! CPUs: every proxy runs one worker pinned to CPU 0 (all its threads: the
//! worker and any helper share that core), so the comparison is core for
//! core. The origin and wrk share CPU 1. On this 2-core machine more
//! workers than free cores would measure scheduler contention, not the
//! proxy. Each proxy's share of the work per request is then on CPU 0, and
//! the client side's (wrk plus origin) on CPU 1; wrk straight to the origin
//! measures what CPU 1 can drive at most, printed as the harness ceiling.

pub(crate) mod configs;
pub(crate) mod grpc_origin;
pub(crate) mod proc;
mod protocols;
pub(crate) mod report;
pub(crate) mod wrk;

use crate::toolchain;
use anyhow::{Context, Result, bail};
use configs::{EdgeKind, Listeners, Ports};
use proc::Proc;
use report::{Cell, Report, Row, Sample};
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};
use wrk::Load;

/// What the benchmark runs: the proxies, the load generator, the
/// certificate tool and the probe.
const PACKAGES: &[&str] = &["nginx", "haproxy", "wrk", "openssl", "curl"];
/// The measured load of every cell.
pub(crate) const LOAD: Load = Load {
    threads: 1,
    connections: 50,
    duration: Duration::from_secs(10),
};
/// Runs per cell, the proxies taking turns; a cell shows medians.
pub(crate) const ROUNDS: usize = 3;
/// Run before each measurement (same load), so connections, upstream pools,
/// TLS sessions and caches are warm.
pub(crate) const WARMUP: Duration = Duration::from_secs(2);
/// How often [`poll`] looks.
const POLL: Duration = Duration::from_millis(20);
/// How long a server may take to answer after it starts.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this share of a cache-hit cell's requests may reach the origin
/// before the cell is flagged as not measuring hits.
const MAX_MISS_RATIO: f64 = 0.001;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// From now on Ctrl-C and SIGTERM only set a flag that [`interrupted`]
/// reports, so that the benchmark can unwind and stop what it started.
pub(crate) fn catch_signals() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Prints a benchmark's report and writes it to `target/bench/<name>`.
pub(crate) fn write_report(root: &Path, name: &str, md: &str) -> Result<()> {
    println!("\n{md}");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out = target.join("bench").join(name);
    std::fs::create_dir_all(out.parent().context("no parent")?)?;
    std::fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
    println!("xtask: wrote {}", out.display());
    Ok(())
}

/// Fails once Ctrl-C or SIGTERM has arrived, so that the benchmark unwinds
/// and its guards stop every process and remove the temporary directory.
pub(crate) fn interrupted() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// One row of the table.
struct Case {
    name: &'static str,
    path: &'static str,
    https: bool,
    cached: bool,
    body_len: u64,
    edge: EdgeKind,
    /// Every request on a new connection (`Connection: close`): for TLS,
    /// a full handshake each.
    close: bool,
}

/// The small body's length.
pub(crate) const SMALL: u64 = configs::SMALL_BODY.len() as u64;
const CASES: [Case; 5] = [
    Case {
        name: "proxied, 13 B response",
        path: configs::SMALL_PATH,
        https: false,
        cached: false,
        body_len: SMALL,
        edge: EdgeKind::Plain,
        close: false,
    },
    Case {
        name: "proxied, 64 KiB response",
        path: configs::LARGE_PATH,
        https: false,
        cached: false,
        body_len: configs::LARGE_SIZE as u64,
        edge: EdgeKind::Plain,
        close: false,
    },
    Case {
        name: "cache hit, 13 B response",
        path: configs::CACHED_PATH,
        https: false,
        cached: true,
        body_len: SMALL,
        edge: EdgeKind::Cache,
        close: false,
    },
    Case {
        name: "HTTPS (TLS 1.3, keep-alive), 13 B",
        path: configs::SMALL_PATH,
        https: true,
        cached: false,
        body_len: SMALL,
        edge: EdgeKind::Tls,
        close: false,
    },
    Case {
        name: "HTTPS, a TLS 1.3 handshake per request, 13 B",
        path: configs::SMALL_PATH,
        https: true,
        cached: false,
        body_len: SMALL,
        edge: EdgeKind::Tls,
        close: true,
    },
];

/// Which CPUs (taskset lists) each side runs on; `None`: not pinned.
pub(crate) struct Cpus {
    /// The proxy under test (all its threads).
    pub(crate) proxy: Option<String>,
    /// The origin (and, in `bench gateway`, Redis).
    pub(crate) origin: Option<String>,
    /// wrk.
    pub(crate) wrk: Option<String>,
}

impl Cpus {
    /// The layout for a machine of `n` CPUs.
    pub(crate) fn for_machine(n: usize) -> Self {
        match n {
            0 | 1 => Self {
                proxy: None,
                origin: None,
                wrk: None,
            },
            2 => Self {
                proxy: Some("0".into()),
                origin: Some("1".into()),
                wrk: Some("1".into()),
            },
            n => Self {
                proxy: Some("0".into()),
                origin: Some("1".into()),
                wrk: Some(format!("2-{}", n - 1)),
            },
        }
    }

    /// For the report.
    pub(crate) fn describe(&self) -> String {
        let show = |c: &Option<String>| c.as_deref().unwrap_or("any").to_string();
        format!(
            "proxy on CPU {}, origin on CPU {}, wrk on CPU {}",
            show(&self.proxy),
            show(&self.origin),
            show(&self.wrk)
        )
    }
}

/// Which rows `bench l7` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Rows {
    /// Every row.
    All,
    /// The HTTP rows (proxied, cache hit, HTTPS).
    Http,
    /// The gRPC and TCP rows.
    Protocols,
    /// The two HTTPS rows (keep-alive, and a handshake per request).
    Tls,
}

/// Installs what is missing, builds edge (release), runs the cases of
/// `rows`, prints the table and writes it to `target/bench/l7.md`.
pub fn run(root: &Path, rows: Rows) -> Result<()> {
    toolchain::ensure_packages(PACKAGES)?;
    toolchain::ensure_packages(protocols::PACKAGES)?;
    // EDGE_BENCH_BIN measures a given build instead (another OpenSSL,
    // another profile), the other proxies as the yardstick.
    let edge_bin = match std::env::var_os("EDGE_BENCH_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => crate::build(root, true)?,
    };
    catch_signals();
    let nproc = std::thread::available_parallelism().map_or(1, usize::from);
    let cpus = Cpus::for_machine(nproc);
    let mut facts = machine_facts(root, &edge_bin, nproc);

    // Declared first, dropped last: every process is stopped before the
    // directory goes.
    let dir = tempfile::Builder::new()
        .prefix("edge-bench-l7-")
        .tempdir()?;
    let mut bench = Bench::start(dir.path(), &edge_bin, &cpus)?;
    println!("xtask: {}", cpus.describe());

    let mut ceiling = Vec::new();
    for (what, path, len) in [
        ("13 B", configs::SMALL_PATH, SMALL),
        ("64 KiB", configs::LARGE_PATH, configs::LARGE_SIZE as u64),
    ] {
        let url = plain_url(bench.ports.origin, path);
        println!("xtask: measuring the harness ceiling, {what}");
        let cell = match bench.measure_origin(&url, len) {
            Ok(sample) => Cell::Done(sample),
            Err(e) => {
                interrupted()?;
                Cell::Failed(format!("{e:#}"))
            }
        };
        ceiling.push((format!("origin, {what}"), cell));
    }

    let which = rows;
    let mut rows = Vec::new();
    if which != Rows::Protocols {
        for case in CASES.iter().filter(|c| which != Rows::Tls || c.https) {
            rows.push(Row {
                case: case.name.to_string(),
                cells: bench.case(case)?,
            });
        }
    }
    if matches!(which, Rows::All | Rows::Protocols) {
        rows.extend(protocols::rows(
            dir.path(),
            &edge_bin,
            &cpus,
            bench.ports.origin,
        )?);
    }
    drop(bench);

    facts.push(("load average at end".into(), loadavg()));
    let report = Report {
        facts,
        method: method(&cpus),
        ceiling,
        rows,
    };
    write_report(root, "l7.md", &report::render(&report))?;
    if report.rows.iter().any(Row::failed) {
        bail!("some cells failed (see the table)");
    }
    Ok(())
}

/// The running servers and what the cells need to reach them.
struct Bench<'a> {
    dir: &'a Path,
    edge_bin: &'a Path,
    cpus: &'a Cpus,
    ports: Ports,
    // Field order is drop order: the proxies stop before their origin.
    /// The proxies in [`report::PROXIES`] order; edge runs for one case at
    /// a time, nginx and HAProxy throughout.
    proxies: [Option<Proc>; 3],
    /// Why a proxy is not running.
    not_running: [Option<String>; 3],
    origin: Proc,
}

impl<'a> Bench<'a> {
    /// Writes the certificate and configurations, starts the origin, nginx
    /// and HAProxy, and waits for each to answer. nginx or HAProxy failing
    /// to start fails their cells, not the run.
    fn start(dir: &'a Path, edge_bin: &'a Path, cpus: &'a Cpus) -> Result<Self> {
        let ports = allocate_ports()?;
        let (cert, key, pem) = certificate(dir)?;
        let origin = start_origin(dir, ports.origin, cpus.origin.as_deref())?;

        let nginx_prefix = dir.join("nginx");
        std::fs::create_dir_all(nginx_prefix.join("tmp"))?;
        let nginx = start_nginx(
            "nginx",
            &nginx_prefix,
            &configs::nginx(&nginx_prefix, &ports, &cert, &key),
            cpus.proxy.as_deref(),
        )
        .and_then(|mut p| {
            wait_answers(
                &mut p,
                &plain_url(ports.nginx.plain, configs::SMALL_PATH),
                SMALL,
            )?;
            Ok(p)
        });

        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, configs::haproxy(&ports, &pem))?;
        let haproxy = spawn_haproxy(&cfg, cpus.proxy.as_deref(), &dir.join("haproxy.log"))
            .and_then(|mut p| {
                wait_answers(
                    &mut p,
                    &plain_url(ports.haproxy.plain, configs::SMALL_PATH),
                    SMALL,
                )?;
                Ok(p)
            });
        interrupted()?;
        let mut bench = Self {
            dir,
            edge_bin,
            cpus,
            ports,
            proxies: [None, None, None],
            not_running: [None, None, None],
            origin,
        };
        for (i, started) in [(1, nginx), (2, haproxy)] {
            match started {
                Ok(p) => bench.proxies[i] = Some(p),
                Err(e) => {
                    let name = report::PROXIES[i];
                    println!("xtask: {name} did not start: {e:#}");
                    bench.not_running[i] = Some(format!("{name} did not start: {e:#}"));
                }
            }
        }
        Ok(bench)
    }

    fn url(&self, proxy: usize, case: &Case) -> String {
        let l = [self.ports.edge, self.ports.nginx, self.ports.haproxy][proxy];
        match (case.https, case.cached) {
            (true, _) => format!("https://127.0.0.1:{}{}", l.tls, case.path),
            (false, true) => plain_url(l.cache, case.path),
            (false, false) => plain_url(l.plain, case.path),
        }
    }

    /// One row: edge started with its configuration for the case (unless
    /// `edge check` rejects it), then [`ROUNDS`] rounds of edge, nginx,
    /// HAProxy back to back; each cell gives medians over its runs. A
    /// proxy that fails a run is not run again for this case.
    fn case(&mut self, case: &Case) -> Result<[Cell; 3]> {
        let mut fixed: [Option<Cell>; 3] = [None, None, None];
        match self.start_edge(case)? {
            Ok(edge) => self.proxies[0] = Some(edge),
            Err(cell) => fixed[0] = Some(cell),
        }
        for (i, why) in self.not_running.iter().enumerate().skip(1) {
            if let Some(why) = why {
                fixed[i] = Some(Cell::Failed(why.clone()));
            }
        }
        let mut samples: [Vec<Sample>; 3] = Default::default();
        for round in 1..=ROUNDS {
            for proxy in 0..3 {
                if fixed[proxy].is_some() {
                    continue;
                }
                let name = report::PROXIES[proxy];
                println!("xtask: {name}, {}, run {round}/{ROUNDS}", case.name);
                let url = self.url(proxy, case);
                let result = match self.proxies[proxy].as_mut() {
                    Some(server) => measure(server, case, &url, self.cpus, self.dir),
                    None => Err(anyhow::anyhow!("{name} is not running")),
                };
                match result {
                    Ok(sample) => samples[proxy].push(sample),
                    Err(e) => {
                        // Ctrl-C ends the run; anything else this cell.
                        interrupted()?;
                        println!("xtask:   {name} failed: {e:#}");
                        fixed[proxy] = Some(Cell::Failed(format!("{e:#}")));
                    }
                }
                self.origin.check_running()?;
            }
        }
        if let Some(mut edge) = self.proxies[0].take() {
            edge.stop();
        }
        let cells = fixed
            .into_iter()
            .zip(samples)
            .map(|(fixed, samples)| {
                fixed
                    .or_else(|| Cell::median(samples))
                    .unwrap_or_else(|| Cell::Failed("no run".into()))
            })
            .collect::<Vec<_>>();
        cells
            .try_into()
            .map_err(|_| anyhow::anyhow!("three proxies, three cells"))
    }

    /// Starts edge with its configuration for `case`, checked first: a
    /// configuration edge rejects makes its cell n/a; one it accepts but
    /// then fails to serve makes it failed.
    fn start_edge(&self, case: &Case) -> Result<Result<Proc, Cell>> {
        interrupted()?;
        let config = self.dir.join(case.edge.file_name());
        std::fs::write(&config, configs::edge(case.edge, &self.ports))?;
        if let Some(first) = self.edge_check(&config)? {
            println!("xtask: edge, {}: n/a ({first})", case.name);
            return Ok(Err(Cell::NotApplicable(format!("edge check: {first}"))));
        }
        let config = config.to_str().context("temporary path is not UTF-8")?;
        let mut edge = Proc::spawn(
            "edge",
            self.cpus.proxy.as_deref(),
            self.edge_bin,
            &["run", "--config", config],
            &self.dir.join("edge.log"),
            // SIGINT stops at once; SIGTERM would wait out the drain period.
            libc::SIGINT,
        )?;
        if let Err(e) = wait_answers(&mut edge, &self.url(0, case), case.body_len) {
            interrupted()?;
            return Ok(Err(Cell::Failed(format!("{e:#}"))));
        }
        Ok(Ok(edge))
    }

    /// wrk straight to the origin, once.
    fn measure_origin(&mut self, url: &str, body_len: u64) -> Result<Sample> {
        let case = Case {
            name: "origin",
            path: "",
            https: false,
            cached: false,
            body_len,
            edge: EdgeKind::Plain,
            close: false,
        };
        measure(&mut self.origin, &case, url, self.cpus, self.dir)
    }

    /// See [`edge_check`].
    fn edge_check(&self, config: &Path) -> Result<Option<String>> {
        edge_check(self.edge_bin, self.dir, config)
    }
}

/// `edge check FILE`: `None` if accepted, else its first error line
/// (the file named without the temporary directory `dir`).
pub(crate) fn edge_check(edge_bin: &Path, dir: &Path, config: &Path) -> Result<Option<String>> {
    let out = Command::new(edge_bin)
        .arg("check")
        .arg(config)
        .output()
        .context("running edge check")?;
    if out.status.success() {
        return Ok(None);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let dir = format!("{}/", dir.display());
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("rejected, no message")
        .replace(&dir, "");
    Ok(Some(first))
}

/// The origin: nginx (see [`configs::origin`]) under `dir/origin`, with
/// its 64 KiB file and its log of cached-path requests, started on `port`
/// pinned to `cpus`, and answering.
pub(crate) fn start_origin(dir: &Path, port: u16, cpus: Option<&str>) -> Result<Proc> {
    let origin_prefix = dir.join("origin");
    std::fs::create_dir_all(origin_prefix.join("www"))?;
    let large: Vec<u8> = (0..configs::LARGE_SIZE)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz012345"[i % 32])
        .collect();
    std::fs::write(origin_prefix.join("www").join("64k"), large)?;
    std::fs::write(origin_prefix.join("cached.log"), "")?;
    let mut origin = start_nginx(
        "origin",
        &origin_prefix,
        &configs::origin(&origin_prefix, port),
        cpus,
    )?;
    wait_answers(&mut origin, &plain_url(port, configs::SMALL_PATH), SMALL)?;
    Ok(origin)
}

/// One run of `case` through `server` at `url`: checks the response, warms
/// up, measures with wrk, and accounts `server`'s CPU time. For a cache
/// case, checks that (next to) none of the measured requests reached the
/// origin, which logs exactly those.
fn measure(server: &mut Proc, case: &Case, url: &str, cpus: &Cpus, dir: &Path) -> Result<Sample> {
    let wrk_cpus = cpus.wrk.as_deref();
    let log = dir.join("wrk.log");
    let cached_log = dir.join("origin").join("cached.log");
    let origin_requests = || -> Result<u64> {
        let text = std::fs::read_to_string(&cached_log)?;
        Ok(text.lines().count() as u64)
    };
    // A cache case's first request may fill the cache; the second is a hit.
    let probes = if case.cached { 2 } else { 1 };
    for _ in 0..probes {
        expect(url, case.body_len)?;
    }
    let headers: Vec<String> = if case.close {
        vec!["Connection: close".to_string()]
    } else {
        Vec::new()
    };
    wrk::run_with_headers(url, &headers, wrk_cpus, LOAD.for_time(WARMUP), &log)?;
    server.check_running()?;

    let misses_before = origin_requests()?;
    let cpu_before = server.cpu_time()?;
    let started = Instant::now();
    let m = wrk::run_with_headers(url, &headers, wrk_cpus, LOAD, &log)?;
    let wall = started.elapsed();
    let cpu = server.cpu_time()?.saturating_sub(cpu_before);
    server.check_running()?;
    let misses = origin_requests()?.saturating_sub(misses_before);

    let mut notes = m.errors.clone();
    if case.cached && misses as f64 > m.requests as f64 * MAX_MISS_RATIO {
        notes.push(format!(
            "{misses} of {} requests reached the origin: not cache hits",
            m.requests
        ));
    }
    let sample = Sample {
        cpu_us_per_request: cpu.as_secs_f64() * 1e6 / m.requests.max(1) as f64,
        cpu_busy: cpu.as_secs_f64() / wall.as_secs_f64(),
        wrk: m,
        notes,
    };
    print_sample(&sample);
    Ok(sample)
}

/// HAProxy in the foreground (`-db`) with configuration `cfg`, pinned to
/// `cpus`, its output in `log`; stopped by SIGTERM.
pub(crate) fn spawn_haproxy(cfg: &Path, cpus: Option<&str>, log: &Path) -> Result<Proc> {
    let cfg = cfg.to_str().context("temporary path is not UTF-8")?;
    Proc::spawn(
        "haproxy",
        cpus,
        Path::new("haproxy"),
        &["-db", "-f", cfg],
        log,
        libc::SIGTERM,
    )
}

/// One measured run's figures, as the run goes.
pub(crate) fn print_sample(sample: &Sample) {
    println!(
        "xtask:   {:.0} requests/s, p50 {:.0} µs, p99 {:.0} µs, {:.1} µs CPU/request, {:.0}% busy{}",
        sample.wrk.rps,
        sample.wrk.p50_us,
        sample.wrk.p99_us,
        sample.cpu_us_per_request,
        sample.cpu_busy * 100.0,
        if sample.notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", sample.notes.join("; "))
        }
    );
}

/// `http://127.0.0.1:PORT/PATH`.
pub(crate) fn plain_url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// Ten distinct free loopback ports, below the kernel's ephemeral range.
/// Outgoing connections (wrk's, the proxies' to the origin) take their
/// local ports from that range, so a port picked there could be theirs by
/// the time a server binds it; below it only explicit binds compete.
fn allocate_ports() -> Result<Ports> {
    let p = free_ports(10)?;
    let three = |i: usize| Listeners {
        plain: p[i],
        cache: p[i + 1],
        tls: p[i + 2],
    };
    Ok(Ports {
        origin: p[0],
        edge: three(1),
        nginx: three(4),
        haproxy: three(7),
    })
}

/// `n` distinct free loopback ports, below the kernel's ephemeral range
/// (see [`allocate_ports`]).
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>> {
    const LOWEST: u16 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let span = u32::from(ephemeral_low.saturating_sub(LOWEST).max(1));
    // Start somewhere that depends on the PID, so that two runs at once
    // look in different places.
    let start = std::process::id() % span;
    // Held until all are chosen, so that they are distinct.
    let mut held = Vec::new();
    for i in 0..span {
        let Ok(port) = u16::try_from(u32::from(LOWEST) + (start + i) % span) else {
            continue;
        };
        if let Ok(socket) = TcpListener::bind(("127.0.0.1", port)) {
            held.push((port, socket));
            if held.len() == n {
                break;
            }
        }
    }
    let p: Vec<u16> = held.iter().map(|(port, _)| *port).collect();
    if p.len() < n {
        bail!("fewer than {n} free loopback ports between {LOWEST} and {ephemeral_low}");
    }
    Ok(p)
}

/// A self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost,
/// made now: `cert.pem`, `key.pem`, and both in `haproxy.pem`.
fn certificate(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let (cert, key, pem) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("haproxy.pem"),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!(
            "openssl req failed with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let both = std::fs::read_to_string(&cert)? + &std::fs::read_to_string(&key)?;
    std::fs::write(&pem, both)?;
    Ok((cert, key, pem))
}

/// Writes `conf` into `prefix` and starts nginx on it in the foreground.
pub(crate) fn start_nginx(
    name: &str,
    prefix: &Path,
    conf: &str,
    cpus: Option<&str>,
) -> Result<Proc> {
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let p = |path: &Path| -> Result<String> {
        Ok(path
            .to_str()
            .context("temporary path is not UTF-8")?
            .to_string())
    };
    let (prefix_s, conf_s, err_s) = (
        format!("{}/", p(prefix)?),
        p(&conf_path)?,
        p(&prefix.join("error.log"))?,
    );
    // -e: nginx opens its default error log before reading the
    // configuration; keep even that inside the prefix.
    Proc::spawn(
        name,
        cpus,
        Path::new("nginx"),
        &["-e", &err_s, "-p", &prefix_s, "-c", &conf_s],
        &prefix.join("stderr.log"),
        // nginx's fast shutdown: the master stops its worker, then exits.
        libc::SIGTERM,
    )
}

/// Waits until `url` answers 200 with a body of `len` bytes, failing early
/// (with its log) if the server exits.
fn wait_answers(server: &mut Proc, url: &str, len: u64) -> Result<()> {
    poll(&format!("{url} to answer"), START_TIMEOUT, || {
        interrupted()?;
        server.check_running()?;
        Ok(expect(url, len).ok())
    })
}

/// [`wait_answers`], each request with `headers` (`Name: value`); a
/// failure says what the last request got (a 401: the credential was
/// refused).
pub(crate) fn wait_answers_with(
    server: &mut Proc,
    url: &str,
    headers: &[String],
    len: u64,
) -> Result<()> {
    wait_until_answers(server, url, || expect_with(url, headers, len))
}

/// Polls `check` (one request to `url`) until it passes, while `server`
/// runs; a failure says what the last request got.
pub(crate) fn wait_until_answers(
    server: &mut Proc,
    url: &str,
    mut check: impl FnMut() -> Result<()>,
) -> Result<()> {
    let mut last: Option<String> = None;
    let waited = poll(&format!("{url} to answer"), START_TIMEOUT, || {
        interrupted()?;
        server.check_running()?;
        match check() {
            Ok(()) => Ok(Some(())),
            Err(e) => {
                last = Some(format!("{e:#}"));
                Ok(None)
            }
        }
    });
    match (waited, last) {
        (Ok(()), _) => Ok(()),
        (Err(e), Some(last)) => Err(anyhow::anyhow!("{e:#} (last try: {last})")),
        (Err(e), None) => Err(e),
    }
}

/// Polls `probe` until it returns `Some`; fails after `timeout`, or at
/// once when the probe fails (Ctrl-C, a server that exited), unlike
/// `edge_tests::wait::until`, which retries errors until its deadline.
pub(crate) fn poll<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// One GET with curl (TLS unverified: the certificate is self-signed);
/// fails unless the answer is 200 with a body of `len` bytes.
fn expect(url: &str, len: u64) -> Result<()> {
    expect_with(url, &[], len)
}

/// [`expect`] with request `headers` (`Name: value`).
pub(crate) fn expect_with(url: &str, headers: &[String], len: u64) -> Result<()> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-k", "--max-time", "5", "-o", "/dev/null"]);
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    let out = cmd
        .args(["-w", "%{http_code} %{size_download}", url])
        .output()
        .context("running curl")?;
    let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if got != format!("200 {len}") {
        bail!(
            "GET {url}: expected \"200 {len}\" (status, body bytes), got {got:?} {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// First non-empty line a command prints (stdout or stderr), or "unknown".
pub(crate) fn first_line(program: &str, args: &[&str]) -> String {
    let Ok(out) = Command::new(program).args(args).output() else {
        return "unknown".into();
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Date, machine, load, and the versions of edge and the tools, for the
/// report.
pub(crate) fn machine_facts(root: &Path, edge_bin: &Path, nproc: usize) -> Vec<(String, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let commit = first_line(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "describe",
            "--always",
            "--dirty",
        ],
    );
    let edge = first_line(&edge_bin.display().to_string(), &["--version"]);
    let wrk = first_line("wrk", &["-v"]);
    let wrk = wrk
        .split("Copyright")
        .next()
        .unwrap_or(&wrk)
        .trim()
        .to_string();
    vec![
        (
            "date".into(),
            first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        ),
        (
            "machine".into(),
            format!("{nproc} CPUs ({cpu}), Linux {kernel}"),
        ),
        ("load average at start".into(), loadavg()),
        (
            "edge".into(),
            format!("{edge} (release build, commit {commit})"),
        ),
        ("nginx".into(), first_line("nginx", &["-v"])),
        ("haproxy".into(), first_line("haproxy", &["-v"])),
        ("wrk".into(), wrk),
        ("OpenSSL".into(), first_line("openssl", &["version"])),
    ]
}

/// How it was measured, for the report.
fn method(cpus: &Cpus) -> String {
    format!(
        "## How it was measured

- Everything on 127.0.0.1. One origin (nginx, 1 worker) serves a 13-byte body, a 64 KiB file, \
and the 13-byte body with `Cache-Control: max-age=3600` for the cache case.
- Each proxy runs 1 worker (edge `server.threads: 1`, nginx `worker_processes 1`, HAProxy \
`nbthread 1`), with all its threads pinned to one CPU: {layout}.
- Equivalent configuration: keep-alive to clients and to the origin (nginx `keepalive 64` upstream \
pool, HAProxy `http-reuse always`, edge's Pingora connection pool), X-Forwarded-For/-Proto added, \
no access log, connect timeout 5 s and read/write/idle 60 s where the proxy has the setting \
(edge: Pingora's defaults until pool timeouts land), nginx response buffers large enough that \
64 KiB stays in memory.
- Cache: edge's in-memory cache, nginx `proxy_cache` (files under a temporary directory, served \
from the page cache), HAProxy's in-memory small-object `cache`. Each cell checks that (next to) \
no measured request reached the origin.
- HTTPS: the proxy terminates TLS (1.2 minimum; wrk and the servers negotiate TLS 1.3) with one \
self-signed ECDSA P-256 certificate made at bench time with `openssl`, then proxies plain HTTP. In \
the keep-alive row wrk keeps its connections open, so it measures steady-state encryption; in the \
handshake row every request carries `Connection: close`, so each is a new connection and a full \
TLS 1.3 handshake (wrk resumes no session).
- wrk: {t} thread, {c} keep-alive connections (a closed loop: each connection has one request in \
flight), {d} s per run after a {w} s warm-up; latency as wrk measures it (`--latency`). Each figure \
is the median of {rounds} runs; the runs go round-robin over the three proxies, \
case by case, so a disturbance hits neighbours alike.
- Every benchmark process (origin, proxies, wrk) runs at nice {nice}, the same for all, so other \
work on the machine disturbs it less. CPU time per request is the proxy's user + system time \
(all its processes and threads) over the measured run, divided by the requests wrk completed.
- gRPC: h2load (h2c, 1 thread, {c} connections, one call in flight on each, the same times) calls a unary method with a 13-byte message; the origin (`cargo xtask grpc-origin`, one thread, on the origin's CPU) echoes it with `grpc-status: 0`. edge: a gRPC route to an `h2c` pool; nginx: `listen ... http2` and `grpc_pass` to an upstream with `keepalive 64`; HAProxy: `proto h2` on the bind and the server line. Latency percentiles come from h2load's per-request log.
- TCP: wrk sends `Connection: close`, so each request is a new TCP connection through the proxy's TCP mode (edge `mode: tcp`, nginx `stream`, HAProxy `mode tcp`) to the HTTP origin: requests/s are proxied connections/s, CPU per request is per connection.
- A cell shows n/a when edge's configuration for it does not pass `edge check` yet.
- The machine is shared: other builds running at the same time move the numbers; compare \
within a row.
",
        layout = cpus.describe(),
        t = LOAD.threads,
        c = LOAD.connections,
        d = LOAD.duration.as_secs(),
        w = WARMUP.as_secs(),
        rounds = ROUNDS,
        nice = proc::NICENESS,
    )
}
