//! `cargo xtask bench l7`: edge against a bare Pingora proxy, nginx and
//! HAProxy as L7 reverse proxies, configured alike, in front of one shared
//! origin, all on 127.0.0.1.
//!
//! One run measures, for each proxy, requests/s, p50/p99 latency (wrk) and
//! CPU time, heap allocations (edge and bare Pingora) and system calls per
//! request for: a small proxied response, a 64 KiB proxied response, a
//! cache hit, and HTTPS (TLS terminated by the proxy, keep-alive); then
//! gRPC and TCP ([`protocols`]), and HTTP/2, many connections and memory
//! per idle connection ([`scale`]). A case edge's configuration does not
//! support yet (its `edge check` fails), or bare Pingora has no equivalent
//! of, is reported as n/a and the run goes on.
//!
//! The bare Pingora proxy (`edge-userspace/examples/bare_pingora.rs`) is
//! Pingora 0.9.1 with edge's allocator and none of edge's code: edge/pingora
//! is what edge adds, pingora/nginx what Pingora itself costs.
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
mod scale;
pub(crate) mod wrk;

use crate::toolchain;
use anyhow::{Context, Result, bail};
use configs::{EdgeKind, Listeners, Ports};
use proc::Proc;
use report::{COUNT, Cell, Counts, EDGE, PINGORA, Report, Row, Sample};
use std::{
    ffi::OsStr,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};
use wrk::{Load, Measurement};

/// What the benchmark runs: the proxies, the load generator, the
/// certificate tool, the probe and perf (system calls).
const PACKAGES: &[&str] = &["nginx", "haproxy", "wrk", "openssl", "curl", "linux-perf"];
/// The measured load of every cell.
pub(crate) const LOAD: Load = Load {
    threads: 1,
    connections: 50,
    duration: Duration::from_secs(10),
};
/// The environment variable naming the file where a build with the
/// `alloc-count` feature publishes its allocation count
/// (`edge_userspace::alloc_count::FILE_ENV`).
const ALLOC_COUNT_ENV: &str = "EDGE_ALLOC_COUNT_FILE";
/// How long counters get to settle around a measured run: perf to attach
/// before the load starts (it takes well under 100 ms), and the allocation
/// count (published every 50 ms) to show the end of the load.
const SETTLE: Duration = Duration::from_millis(200);
/// The perf event counted: entries into any system call.
const SYSCALL_EVENT: &str = "raw_syscalls:sys_enter";
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
    /// Why the bare Pingora proxy has no equivalent, if it has none.
    no_pingora: Option<&'static str>,
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
        no_pingora: None,
    },
    Case {
        name: "proxied, 64 KiB response",
        path: configs::LARGE_PATH,
        https: false,
        cached: false,
        body_len: configs::LARGE_SIZE as u64,
        edge: EdgeKind::Plain,
        close: false,
        no_pingora: None,
    },
    Case {
        name: "cache hit, 13 B response",
        path: configs::CACHED_PATH,
        https: false,
        cached: true,
        body_len: SMALL,
        edge: EdgeKind::Cache,
        close: false,
        no_pingora: Some("bare Pingora has no cache"),
    },
    Case {
        name: "HTTPS (TLS 1.3, keep-alive), 13 B",
        path: configs::SMALL_PATH,
        https: true,
        cached: false,
        body_len: SMALL,
        edge: EdgeKind::Tls,
        close: false,
        no_pingora: None,
    },
    Case {
        name: "HTTPS, a TLS 1.3 handshake per request, 13 B",
        path: configs::SMALL_PATH,
        https: true,
        cached: false,
        body_len: SMALL,
        edge: EdgeKind::Tls,
        close: true,
        no_pingora: None,
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
    /// HTTP/2 (h2c), 100 and 1000 connections, memory per idle connection.
    Scale,
}

/// Installs what is missing, builds edge and the bare Pingora proxy
/// (release, counting allocations), runs the cases of `rows`, prints the
/// tables and writes them to `target/bench/l7.md`.
pub fn run(root: &Path, rows: Rows) -> Result<()> {
    toolchain::ensure_packages(PACKAGES)?;
    toolchain::ensure_packages(protocols::PACKAGES)?;
    // EDGE_BENCH_BIN measures a given build instead (another OpenSSL,
    // another profile), the other proxies as the yardstick; without the
    // `alloc-count` feature its allocations show as "–".
    let given = std::env::var_os("EDGE_BENCH_BIN").map(PathBuf::from);
    let (edge_bin, pingora_bin) = crate::build_bench(root, given)?;
    catch_signals();
    // Before anything starts: every process inherits it.
    let nofile = match scale::raise_nofile() {
        Ok(n) => n,
        Err(e) => {
            println!("xtask: could not raise the open file limit: {e:#}");
            scale::current_nofile()
        }
    };
    let nproc = std::thread::available_parallelism().map_or(1, usize::from);
    let cpus = Cpus::for_machine(nproc);
    let mut facts = machine_facts(root, &edge_bin, nproc);
    facts.push((
        "bare Pingora".into(),
        "Pingora 0.9.1, the `bare_pingora` example of edge-userspace (release, mimalloc)".into(),
    ));
    facts.push(("perf".into(), first_line("perf", &["--version"])));
    facts.push(("h2load".into(), first_line("h2load", &["--version"])));
    facts.push(("open file limit".into(), nofile.to_string()));

    // Declared first, dropped last: every process is stopped before the
    // directory goes.
    let dir = tempfile::Builder::new()
        .prefix("edge-bench-l7-")
        .tempdir()?;
    let mut bench = Bench::start(dir.path(), &edge_bin, &pingora_bin, &cpus)?;
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
    let mut memory = Vec::new();
    if matches!(which, Rows::All | Rows::Http | Rows::Tls) {
        for case in CASES.iter().filter(|c| which != Rows::Tls || c.https) {
            rows.push(bench.case(case)?);
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
    if matches!(which, Rows::All | Rows::Scale) {
        let (scale_rows, idle) = scale::rows(&mut bench, nofile)?;
        rows.extend(scale_rows);
        memory.push(idle);
    }
    drop(bench);

    facts.push(("load average at end".into(), loadavg()));
    let report = Report {
        facts,
        method: method(&cpus),
        ceiling,
        rows,
        memory,
    };
    write_report(root, "l7.md", &report::render(&report))?;
    if report.failed() {
        bail!("some cells failed (see the tables)");
    }
    Ok(())
}

/// The running servers and what the cells need to reach them.
struct Bench<'a> {
    dir: &'a Path,
    edge_bin: &'a Path,
    cpus: &'a Cpus,
    ports: Ports,
    /// Where edge and bare Pingora publish their allocation counts (none
    /// for nginx and HAProxy).
    alloc_files: [Option<PathBuf>; COUNT],
    // Field order is drop order: the proxies stop before their origin.
    /// The proxies in [`report::PROXIES`] order; edge runs for one case at
    /// a time (or for all the scale rows), the others throughout.
    proxies: [Option<Proc>; COUNT],
    /// Why a proxy is not running.
    not_running: [Option<String>; COUNT],
    origin: Proc,
}

/// What a measured run needs besides its proxy: where to write, which CPUs
/// to use, and what to count.
struct RunCtx<'b> {
    cpus: &'b Cpus,
    dir: &'b Path,
    /// The proxy's allocation count file, if it publishes one.
    alloc_file: Option<&'b Path>,
    /// Whether to count the proxy's system calls (not the origin's in the
    /// ceiling runs).
    count_syscalls: bool,
}

/// One measured run: what the load generator saw, and the proxy's counts
/// per request.
struct Measured {
    sample: Sample,
    counts: Counts,
}

impl<'a> Bench<'a> {
    /// Writes the certificate and configurations, starts the origin, bare
    /// Pingora, nginx and HAProxy, and waits for each to answer. One of
    /// them failing to start fails its cells, not the run.
    fn start(
        dir: &'a Path,
        edge_bin: &'a Path,
        pingora_bin: &Path,
        cpus: &'a Cpus,
    ) -> Result<Self> {
        let ports = allocate_ports()?;
        let (cert, key, pem) = certificate(dir)?;
        let origin = start_origin(dir, ports.origin, cpus.origin.as_deref())?;
        let alloc_files = [
            Some(dir.join("edge.allocs")),
            Some(dir.join("pingora.allocs")),
            None,
            None,
        ];

        let pingora = start_pingora(
            pingora_bin,
            &ports,
            (cert.as_path(), key.as_path()),
            alloc_files[PINGORA].as_deref(),
            cpus.proxy.as_deref(),
            &dir.join("pingora.log"),
        )
        .and_then(|mut p| {
            wait_answers(
                &mut p,
                &plain_url(ports.pingora.plain, configs::SMALL_PATH),
                SMALL,
            )?;
            Ok(p)
        });

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
            alloc_files,
            proxies: Default::default(),
            not_running: Default::default(),
            origin,
        };
        for (i, started) in [(PINGORA, pingora), (2, nginx), (3, haproxy)] {
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

    /// One row of [`CASES`]: edge started with its configuration for the
    /// case (unless `edge check` rejects it), then [`Bench::rounds`].
    fn case(&mut self, case: &Case) -> Result<Row> {
        let mut preset: [Option<Cell>; COUNT] = Default::default();
        let url = case_url(&self.ports, EDGE, case);
        match self.start_edge(case.edge, case.name, &url, case.body_len)? {
            Ok(edge) => self.proxies[EDGE] = Some(edge),
            Err(cell) => preset[EDGE] = Some(cell),
        }
        if let Some(why) = case.no_pingora {
            preset[PINGORA] = Some(Cell::NotApplicable(why.into()));
        }
        let ports = self.ports;
        let row = self.rounds(case.name, preset, |server, proxy, ctx| {
            measure(server, case, &case_url(&ports, proxy, case), LOAD, ctx)
        });
        if let Some(mut edge) = self.proxies[EDGE].take() {
            edge.stop();
        }
        row
    }

    /// [`ROUNDS`] rounds of the proxies back to back for the row `name`,
    /// each run by `run` (its proxy, the proxy's column, [`RunCtx`]); each
    /// cell gives medians over its runs. A proxy with a `preset` cell (n/a,
    /// or edge failed to start) or not running is not run, and one that
    /// fails a run is not run again for this row.
    fn rounds(
        &mut self,
        name: &str,
        preset: [Option<Cell>; COUNT],
        mut run: impl FnMut(&mut Proc, usize, &RunCtx<'_>) -> Result<Measured>,
    ) -> Result<Row> {
        let mut fixed = preset;
        for (cell, why) in fixed.iter_mut().zip(&self.not_running) {
            if cell.is_none()
                && let Some(why) = why
            {
                *cell = Some(Cell::Failed(why.clone()));
            }
        }
        let mut samples: [Vec<Sample>; COUNT] = Default::default();
        let mut counts: [Vec<Counts>; COUNT] = Default::default();
        for round in 1..=ROUNDS {
            for proxy in 0..COUNT {
                if fixed[proxy].is_some() {
                    continue;
                }
                let who = report::PROXIES[proxy];
                println!("xtask: {who}, {name}, run {round}/{ROUNDS}");
                let ctx = RunCtx {
                    cpus: self.cpus,
                    dir: self.dir,
                    alloc_file: self.alloc_files[proxy].as_deref(),
                    count_syscalls: true,
                };
                let result = match self.proxies[proxy].as_mut() {
                    Some(server) => run(server, proxy, &ctx),
                    None => Err(anyhow::anyhow!("{who} is not running")),
                };
                match result {
                    Ok(m) => {
                        print_measured(&m);
                        samples[proxy].push(m.sample);
                        counts[proxy].push(m.counts);
                    }
                    Err(e) => {
                        // Ctrl-C ends the run; anything else this cell.
                        interrupted()?;
                        println!("xtask:   {who} failed: {e:#}");
                        fixed[proxy] = Some(Cell::Failed(format!("{e:#}")));
                    }
                }
                self.origin.check_running()?;
            }
        }
        Ok(row(name, fixed, samples, counts))
    }

    /// Starts edge with its configuration of `kind`, checked first, and
    /// waits until `url` answers with `body_len` bytes: a configuration
    /// edge rejects makes its cells n/a (`what` names them in the log); one
    /// it accepts but then fails to serve makes them failed.
    fn start_edge(
        &self,
        kind: EdgeKind,
        what: &str,
        url: &str,
        body_len: u64,
    ) -> Result<Result<Proc, Cell>> {
        interrupted()?;
        let config = self.dir.join(kind.file_name());
        std::fs::write(&config, configs::edge(kind, &self.ports))?;
        if let Some(first) = self.edge_check(&config)? {
            println!("xtask: edge, {what}: n/a ({first})");
            return Ok(Err(Cell::NotApplicable(format!("edge check: {first}"))));
        }
        let config = config.to_str().context("temporary path is not UTF-8")?;
        let alloc_file = self.alloc_files[EDGE].as_deref();
        if let Some(file) = alloc_file {
            // The previous edge's count must not pass for this one's, should
            // this build not publish one.
            let _ = std::fs::remove_file(file);
        }
        let env: Vec<(&str, &OsStr)> = alloc_file
            .map(|f| (ALLOC_COUNT_ENV, f.as_os_str()))
            .into_iter()
            .collect();
        let mut edge = Proc::spawn_with_env(
            "edge",
            self.cpus.proxy.as_deref(),
            self.edge_bin,
            &["run", "--config", config],
            &env,
            &self.dir.join("edge.log"),
            // SIGINT stops at once; SIGTERM would wait out the drain period.
            libc::SIGINT,
        )?;
        if let Err(e) = wait_answers(&mut edge, url, body_len) {
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
            no_pingora: None,
        };
        let ctx = RunCtx {
            cpus: self.cpus,
            dir: self.dir,
            alloc_file: None,
            count_syscalls: false,
        };
        let measured = measure(&mut self.origin, &case, url, LOAD, &ctx)?;
        print_measured(&measured);
        Ok(measured.sample)
    }

    /// See [`edge_check`].
    fn edge_check(&self, config: &Path) -> Result<Option<String>> {
        edge_check(self.edge_bin, self.dir, config)
    }
}

/// A row from its runs: each proxy's preset cell if it has one (n/a, or
/// failed), else the medians of its samples and counts.
fn row(
    name: &str,
    fixed: [Option<Cell>; COUNT],
    samples: [Vec<Sample>; COUNT],
    counts: [Vec<Counts>; COUNT],
) -> Row {
    let mut samples = samples.into_iter();
    let cells = fixed.map(|fixed| {
        let samples = samples.next().unwrap_or_default();
        fixed
            .or_else(|| Cell::median(samples))
            .unwrap_or_else(|| Cell::Failed("no run".into()))
    });
    Row {
        case: name.to_string(),
        cells,
        counts: counts.map(|c| Counts::median(&c)),
    }
}

/// Where `proxy` (a column of [`report::PROXIES`]) serves `case`.
fn case_url(ports: &Ports, proxy: usize, case: &Case) -> String {
    let l = ports.proxy(proxy);
    match (case.https, case.cached) {
        (true, _) => format!("https://127.0.0.1:{}{}", l.tls, case.path),
        (false, true) => plain_url(l.cache, case.path),
        (false, false) => plain_url(l.plain, case.path),
    }
}

/// The bare Pingora proxy (`edge-userspace/examples/bare_pingora.rs`):
/// plain and TLS listeners (certificate and key `tls`) in front of the
/// origin, publishing its allocation count to `alloc_file`, pinned to
/// `cpus`, its output in `log`; stopped by SIGINT (Pingora's fast
/// shutdown).
fn start_pingora(
    bin: &Path,
    ports: &Ports,
    tls: (&Path, &Path),
    alloc_file: Option<&Path>,
    cpus: Option<&str>,
    log: &Path,
) -> Result<Proc> {
    let l = ports.pingora;
    let listen = format!("127.0.0.1:{}", l.plain);
    let tls_listen = format!("127.0.0.1:{}", l.tls);
    let upstream = format!("127.0.0.1:{}", ports.origin);
    let args: &[&str] = &[
        "--listen",
        &listen,
        "--tls",
        &tls_listen,
        "--cert",
        utf8(tls.0)?,
        "--key",
        utf8(tls.1)?,
        "--upstream",
        &upstream,
    ];
    let env: Vec<(&str, &OsStr)> = alloc_file
        .map(|f| (ALLOC_COUNT_ENV, f.as_os_str()))
        .into_iter()
        .collect();
    Proc::spawn_with_env("pingora", cpus, bin, args, &env, log, libc::SIGINT)
}

/// A temporary path as text, for a command line.
fn utf8(path: &Path) -> Result<&str> {
    path.to_str().context("temporary path is not UTF-8")
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

/// One run of `case` through `server` at `url` under `load`: checks the
/// response, warms up, then measures with wrk in a [`window`]. For a cache
/// case, checks that (next to) none of the measured requests reached the
/// origin, which logs exactly those.
fn measure(
    server: &mut Proc,
    case: &Case,
    url: &str,
    load: Load,
    ctx: &RunCtx<'_>,
) -> Result<Measured> {
    let wrk_cpus = ctx.cpus.wrk.as_deref();
    let log = ctx.dir.join("wrk.log");
    let cached_log = ctx.dir.join("origin").join("cached.log");
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
    wrk::run_with_headers(url, &headers, wrk_cpus, load.for_time(WARMUP), &log)?;
    server.check_running()?;

    let misses_before = origin_requests()?;
    let mut measured = window(server, ctx, || {
        wrk::run_with_headers(url, &headers, wrk_cpus, load, &log)
    })?;
    let misses = origin_requests()?.saturating_sub(misses_before);
    let requests = measured.sample.wrk.requests;
    if case.cached && misses as f64 > requests as f64 * MAX_MISS_RATIO {
        measured.sample.notes.push(format!(
            "{misses} of {requests} requests reached the origin: not cache hits"
        ));
    }
    Ok(measured)
}

/// Runs `load` (the measured run) and accounts, over it, `server`'s CPU
/// time (all its processes and threads) and, as `ctx` asks, its system
/// calls (perf, attached [`SETTLE`] before the load and stopped when it
/// ends) and its allocations (the count file read [`SETTLE`] after the
/// warm-up and after the load, so that it shows both ends). Counting
/// problems become notes; the run fails only if the load fails or the
/// server exits.
fn window(
    server: &mut Proc,
    ctx: &RunCtx<'_>,
    load: impl FnOnce() -> Result<Measurement>,
) -> Result<Measured> {
    let mut notes = Vec::new();
    let perf = if ctx.count_syscalls {
        match Perf::attach(server, ctx) {
            Ok(perf) => Some(perf),
            Err(e) => {
                notes.push(format!("system calls not counted: {e:#}"));
                None
            }
        }
    } else {
        None
    };
    std::thread::sleep(SETTLE);
    let allocations_before = ctx.alloc_file.and_then(read_count);
    let cpu_before = server.cpu_time()?;
    let started = Instant::now();
    let m = load()?;
    let wall = started.elapsed();
    let cpu = server.cpu_time()?.saturating_sub(cpu_before);
    let syscalls = match perf.map(Perf::finish) {
        Some(Ok(n)) => Some(n),
        Some(Err(e)) => {
            notes.push(format!("system calls not counted: {e:#}"));
            None
        }
        None => None,
    };
    let allocations = match (allocations_before, ctx.alloc_file) {
        (Some(before), Some(file)) => {
            std::thread::sleep(SETTLE);
            read_count(file).map(|after| after.saturating_sub(before))
        }
        _ => None,
    };
    server.check_running()?;

    let requests = m.requests.max(1) as f64;
    let counts = Counts {
        allocations: allocations.map(|n| n as f64 / requests),
        syscalls: syscalls.map(|n| n as f64 / requests),
    };
    let mut all_notes = m.errors.clone();
    all_notes.extend(notes);
    Ok(Measured {
        sample: Sample {
            cpu_us_per_request: cpu.as_secs_f64() * 1e6 / requests,
            cpu_busy: cpu.as_secs_f64() / wall.as_secs_f64(),
            wrk: m,
            notes: all_notes,
        },
        counts,
    })
}

/// The allocation count a proxy published in `file`; `None` while there is
/// none (a build without the `alloc-count` feature never writes one).
fn read_count(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// `perf stat` counting [`SYSCALL_EVENT`] in every thread of a proxy's
/// processes, from [`Perf::attach`] until [`Perf::finish`].
struct Perf(Proc);

impl Perf {
    /// Starts perf on every process of `server` (nginx: master and
    /// worker), on the load generator's CPUs.
    fn attach(server: &Proc, ctx: &RunCtx<'_>) -> Result<Self> {
        let pids = server.pids()?;
        if pids.is_empty() {
            bail!("no process to count");
        }
        let list = pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let perf = Proc::spawn(
            "perf",
            ctx.cpus.wrk.as_deref(),
            Path::new("perf"),
            &["stat", "-e", SYSCALL_EVENT, "-x", ",", "-p", &list],
            &ctx.dir.join("perf.log"),
            // perf prints its counts when interrupted.
            libc::SIGINT,
        )?;
        Ok(Self(perf))
    }

    /// Stops perf and reads its count.
    fn finish(mut self) -> Result<u64> {
        self.0.stop();
        let text = self.0.log_text();
        parse_perf(&text).with_context(|| format!("perf said: {}", text.trim()))
    }
}

/// The count in `perf stat -x,` output, whose lines are
/// `COUNT,UNIT,EVENT,RUN_TIME,PERCENT,...` (COUNT is `<not counted>` when
/// perf could not count).
fn parse_perf(text: &str) -> Result<u64> {
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.get(2) == Some(&SYSCALL_EVENT) {
            let count = fields.first().copied().unwrap_or_default();
            return count
                .parse::<u64>()
                .with_context(|| format!("perf counted {count:?}"));
        }
    }
    bail!("no {SYSCALL_EVENT} line")
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

/// One measured run's figures and counts, as the run goes.
fn print_measured(m: &Measured) {
    print_sample(&m.sample);
    let Counts {
        allocations,
        syscalls,
    } = m.counts;
    let mut counted = Vec::new();
    if let Some(n) = allocations {
        counted.push(format!("{n:.1} allocations"));
    }
    if let Some(n) = syscalls {
        counted.push(format!("{n:.2} system calls"));
    }
    if !counted.is_empty() {
        println!("xtask:   {} per request", counted.join(", "));
    }
}

/// `http://127.0.0.1:PORT/PATH`.
pub(crate) fn plain_url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// The benchmark's distinct free loopback ports, below the kernel's
/// ephemeral range.
/// Outgoing connections (wrk's, the proxies' to the origin) take their
/// local ports from that range, so a port picked there could be theirs by
/// the time a server binds it; below it only explicit binds compete.
fn allocate_ports() -> Result<Ports> {
    let p = free_ports(15)?;
    // Plain, cache and TLS from `i`; h2c on a port of its own or, where
    // the proxy detects the HTTP/2 preface, the plain one.
    let listeners = |i: usize, h2c: Option<u16>| Listeners {
        plain: p[i],
        cache: p[i + 1],
        tls: p[i + 2],
        h2c: h2c.unwrap_or(p[i]),
    };
    Ok(Ports {
        origin: p[0],
        edge: listeners(1, None),
        pingora: listeners(4, None),
        nginx: listeners(7, Some(p[13])),
        haproxy: listeners(10, Some(p[14])),
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
- Four proxies: edge; **bare Pingora** (`pingora`), a Pingora 0.9.1 `ProxyHttp` with none of \
edge's code (`edge-userspace/examples/bare_pingora.rs`: round robin over its upstream, Pingora's \
default keep-alive pool, X-Forwarded-For/-Proto added in `upstream_request_filter`, h2c on its \
plain listener, TLS with ALPN h2 through Pingora's OpenSSL listener, `threads: 1`, edge's \
allocator), so that edge/pingora is what edge's own code costs and pingora/nginx what Pingora \
costs; nginx; HAProxy. Bare Pingora has no cache, no HTTP/2 upstream and no TCP mode: those \
cells are n/a.
- Each proxy runs 1 worker (edge `server.threads: 1`, bare Pingora `threads: 1`, nginx \
`worker_processes 1`, HAProxy `nbthread 1`), with all its threads pinned to one CPU: {layout}.
- Equivalent configuration: keep-alive to clients and to the origin (nginx `keepalive 64` upstream \
pool, HAProxy `http-reuse always`, edge's and bare Pingora's Pingora connection pool), \
X-Forwarded-For/-Proto added, no access log, connect timeout 5 s and read/write/idle 60 s where \
the proxy has the setting (edge and bare Pingora: Pingora's defaults until pool timeouts land), \
nginx response buffers large enough that 64 KiB stays in memory.
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
is the median of {rounds} runs; the runs go round-robin over the four proxies, \
case by case, so a disturbance hits neighbours alike.
- Every benchmark process (origin, proxies, wrk) runs at nice {nice}, the same for all, so other \
work on the machine disturbs it less. CPU time per request is the proxy's user + system time \
(all its processes and threads) over the measured run, divided by the requests wrk completed.
- Heap allocations per request (edge and bare Pingora only): both are built for the benchmark \
with the `alloc-count` feature, whose global allocator is mimalloc plus one relaxed atomic \
increment per allocation (alloc, alloc_zeroed, realloc) and a thread that writes the count to a \
file every 50 ms. The benchmark reads the file {settle} ms after the warm-up and {settle} ms after \
the measured run, and divides the difference by the requests wrk completed. nginx and HAProxy \
are not instrumented (n/a).
- System calls per request (every proxy): `perf stat -e {event} -x, -p PIDS` over all the \
proxy's processes (nginx: master and worker) and their threads, started {settle} ms before the \
measured run and stopped when it ends, divided by the requests completed. The tracepoint costs \
about 0.05 µs per system call, in every proxy's CPU time alike (measured with the nginx proxy \
on this kind of machine: 10.0–10.4 µs per request without perf, 10.4–10.5 µs with it, at 5.1 \
system calls per request; about 3%).
- The CPU table repeats edge's figures from the README (commits 66470bf and 688c360), measured \
before the Pingora column and the counters existed, so a regression shows beside them.
- gRPC: h2load (h2c, 1 thread, {c} connections, one call in flight on each, the same times) calls a unary method with a 13-byte message; the origin (`cargo xtask grpc-origin`, one thread, on the origin's CPU) echoes it with `grpc-status: 0`. edge: a gRPC route to an `h2c` pool; nginx: `listen ... http2` and `grpc_pass` to an upstream with `keepalive 64`; HAProxy: `proto h2` on the bind and the server line. Latency percentiles come from h2load's per-request log.
- TCP: wrk sends `Connection: close`, so each request is a new TCP connection through the proxy's TCP mode (edge `mode: tcp`, nginx `stream`, HAProxy `mode tcp`) to the HTTP origin: requests/s are proxied connections/s, CPU per request is per connection.
- HTTP/2 downstream: h2load over prior-knowledge h2c, 1 thread, {c} connections with one \
stream in flight on each (`-m 1`: the same concurrency as the first HTTP row, so the two differ \
only in the client's protocol), 13 B, the same times; upstream HTTP/1.1 as in the other rows. \
edge and bare Pingora detect the HTTP/2 preface on their plain listener; nginx 1.22 needs \
`listen ... http2` on a server of its own (h2c only), HAProxy a frontend with `bind ... proto h2`.
- 100 and 1000 connections: the first row's case with wrk `-c100` and `-c1000` (still 1 thread). \
Every proxy has room for {conns} connections (nginx `worker_connections`, HAProxy `maxconn` \
globally and on the frontends, with `no strict-limits` since HAProxy asks for two descriptors \
per connection, edge `limits.max_connections`; bare Pingora has no limit), and the benchmark \
raises its open file limit to {nofile} (or the hard limit, when it may not go further) before it \
starts anything, so every process inherits it.
- Memory per idle keep-alive connection: for each proxy in turn, after a {w} s wrk warm-up, \
the benchmark reads the proxy's resident memory (the sum of `VmRSS` over its processes), opens \
{idle} TCP connections to its plain listener one after the other (from 127.0.0.2, 127.0.0.3, … \
with {per_source} per address, so source ports never run short), sends `GET /small` on each and \
reads the whole answer, waits 1 s, reads the memory again and checks that the proxy closed none \
of them; the growth divided by the connections is the figure (fewer connections, and the row \
says how many, if the open file limit is lower). It is measured once per proxy, before the \
connection-count rows: allocators keep memory they have used, so a repeat would mostly reuse \
it.
- A cell shows n/a when edge's configuration for it does not pass `edge check` yet, or when \
bare Pingora has no equivalent.
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
        settle = SETTLE.as_millis(),
        event = SYSCALL_EVENT,
        conns = report::thousands(f64::from(configs::PROXY_CONNECTIONS)),
        nofile = scale::NOFILE,
        idle = report::thousands(scale::IDLE_CONNECTIONS as f64),
        per_source = report::thousands(scale::PER_SOURCE as f64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_previous_figure_names_a_row() {
        let names: Vec<&str> = CASES
            .iter()
            .map(|c| c.name)
            .chain([protocols::GRPC_ROW, protocols::TCP_ROW])
            .collect();
        for previous in &report::PREVIOUS {
            assert!(names.contains(&previous.case), "{}", previous.case);
        }
    }

    #[test]
    fn reads_perf_stat_csv() {
        let text = "100001,,raw_syscalls:sys_enter,17246460,100.00,,\n";
        assert_eq!(parse_perf(text).unwrap(), 100_001);
        let aggregated = "perf: interrupted\n 42 ,, raw_syscalls:sys_enter ,1,100.00,,\n";
        assert_eq!(parse_perf(aggregated).unwrap(), 42);
        let not_counted = "<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n";
        assert!(parse_perf(not_counted).is_err());
        assert!(parse_perf("").is_err());
    }

    #[test]
    fn every_proxy_has_its_listeners() {
        let ports = allocate_ports().unwrap();
        for proxy in 0..COUNT {
            let l = ports.proxy(proxy);
            assert_ne!(l.plain, l.tls, "{}", report::PROXIES[proxy]);
        }
        // edge and bare Pingora detect h2c on their plain listener; nginx
        // and HAProxy need a port of its own.
        assert_eq!(ports.edge.h2c, ports.edge.plain);
        assert_eq!(ports.pingora.h2c, ports.pingora.plain);
        assert_ne!(ports.nginx.h2c, ports.nginx.plain);
        assert_ne!(ports.haproxy.h2c, ports.haproxy.plain);
    }
}
