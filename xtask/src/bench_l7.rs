//! `cargo xtask bench l7`: edge against nginx and HAProxy as L7 reverse
//! proxies, configured alike, in front of one shared origin, all on
//! 127.0.0.1.
//!
//! One run measures, for each proxy, requests/s and p50/p99 latency with
//! wrk for: a small proxied response, a 64 KiB proxied response, a cache
//! hit, and HTTPS (TLS terminated by the proxy, keep-alive). A case edge's
//! configuration does not support yet (its `edge check` fails) is reported
//! as n/a and the run goes on.
//!
//! CPUs: every proxy runs one worker pinned to CPU 0 (all its threads: the
//! worker and any helper share that core), so the comparison is core for
//! core. The origin and wrk share CPU 1. On this 2-core machine more
//! workers than free cores would measure scheduler contention, not the
//! proxy. Each proxy's share of the work per request is then on CPU 0, and
//! the client side's (wrk plus origin) on CPU 1; wrk straight to the origin
//! measures what CPU 1 can drive at most, printed as the harness ceiling.

mod configs;
mod proc;
mod report;
mod wrk;

use crate::toolchain;
use anyhow::{Context, Result, bail};
use configs::{EdgeKind, Listeners, Ports};
use proc::Proc;
use report::{Cell, Report, Row};
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};
use wrk::Load;

/// What the benchmark runs: the proxies, the load generator, the
/// certificate tool and the probe.
const PACKAGES: &[&str] = &["nginx", "haproxy", "wrk", "openssl", "curl"];
/// The measured load of every cell.
const LOAD: Load = Load {
    threads: 1,
    connections: 50,
    duration: Duration::from_secs(10),
};
/// Run before each measurement (same load), so connections, upstream pools,
/// TLS sessions and caches are warm.
const WARMUP: Duration = Duration::from_secs(2);
/// How long a server may take to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this share of a cache-hit cell's requests may reach the origin
/// before the cell is flagged as not measuring hits.
const MAX_MISS_RATIO: f64 = 0.001;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
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
}

const SMALL: u64 = configs::SMALL_BODY.len() as u64;
const CASES: [Case; 4] = [
    Case {
        name: "proxied, 13 B response",
        path: configs::SMALL_PATH,
        https: false,
        cached: false,
        body_len: SMALL,
        edge: EdgeKind::Plain,
    },
    Case {
        name: "proxied, 64 KiB response",
        path: configs::LARGE_PATH,
        https: false,
        cached: false,
        body_len: configs::LARGE_SIZE as u64,
        edge: EdgeKind::Plain,
    },
    Case {
        name: "cache hit, 13 B response",
        path: configs::CACHED_PATH,
        https: false,
        cached: true,
        body_len: SMALL,
        edge: EdgeKind::Cache,
    },
    Case {
        name: "HTTPS (TLS 1.3, keep-alive), 13 B",
        path: configs::SMALL_PATH,
        https: true,
        cached: false,
        body_len: SMALL,
        edge: EdgeKind::Tls,
    },
];

/// Which CPUs (taskset lists) each side runs on; `None`: not pinned.
struct Cpus {
    proxy: Option<String>,
    origin: Option<String>,
    wrk: Option<String>,
}

impl Cpus {
    fn for_machine(n: usize) -> Self {
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

    fn describe(&self) -> String {
        let show = |c: &Option<String>| c.as_deref().unwrap_or("any").to_string();
        format!(
            "proxy on CPU {}, origin on CPU {}, wrk on CPU {}",
            show(&self.proxy),
            show(&self.origin),
            show(&self.wrk)
        )
    }
}

/// Installs what is missing, builds edge (release), runs every case, prints
/// the table and writes it to `target/bench/l7.md`.
pub fn run(root: &Path) -> Result<()> {
    toolchain::ensure_packages(PACKAGES)?;
    let edge_bin = crate::build(root, true)?;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
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
        let url = format!("http://127.0.0.1:{}{path}", bench.ports.origin);
        println!("xtask: measuring the harness ceiling, {what}");
        let cell = bench.measure_origin(&url, len)?;
        ceiling.push((format!("origin, {what}"), cell));
    }

    let mut rows = Vec::new();
    for case in &CASES {
        let cells = [
            bench.edge_cell(case)?,
            bench.proxy_cell(1, case)?,
            bench.proxy_cell(2, case)?,
        ];
        rows.push(Row {
            case: case.name.to_string(),
            cells,
        });
    }
    drop(bench);

    facts.push(("load average at end".into(), loadavg()));
    let report = Report {
        facts,
        method: method(&cpus),
        ceiling,
        rows,
    };
    let md = report::render(&report);
    println!("\n{md}");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out = target.join("bench").join("l7.md");
    std::fs::create_dir_all(out.parent().context("no parent")?)?;
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    println!("xtask: wrote {}", out.display());
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
    /// nginx and HAProxy, or why they did not start (their cells fail).
    others: [Option<Result<Proc, String>>; 3],
    origin: Proc,
}

impl<'a> Bench<'a> {
    /// Writes the certificate and configurations, starts the origin, nginx
    /// and HAProxy, and waits for each to answer.
    fn start(dir: &'a Path, edge_bin: &'a Path, cpus: &'a Cpus) -> Result<Self> {
        let ports = allocate_ports()?;
        let (cert, key, pem) = certificate(dir)?;

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
            &configs::origin(&origin_prefix, ports.origin),
            cpus.origin.as_deref(),
        )?;
        let url = format!("http://127.0.0.1:{}{}", ports.origin, configs::SMALL_PATH);
        wait_answers(&mut origin, &url, SMALL)?;

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
        let haproxy = cfg
            .to_str()
            .context("temporary path is not UTF-8")
            .and_then(|cfg| {
                Proc::spawn(
                    "haproxy",
                    cpus.proxy.as_deref(),
                    Path::new("haproxy"),
                    &["-db", "-f", cfg],
                    &dir.join("haproxy.log"),
                    libc::SIGTERM,
                )
            })
            .and_then(|mut p| {
                wait_answers(
                    &mut p,
                    &plain_url(ports.haproxy.plain, configs::SMALL_PATH),
                    SMALL,
                )?;
                Ok(p)
            });
        interrupted()?;
        Ok(Self {
            dir,
            edge_bin,
            cpus,
            ports,
            others: [
                None,
                Some(nginx.map_err(|e| format!("{e:#}"))),
                Some(haproxy.map_err(|e| format!("{e:#}"))),
            ],
            origin,
        })
    }

    fn listeners(&self, proxy: usize) -> Listeners {
        [self.ports.edge, self.ports.nginx, self.ports.haproxy][proxy]
    }

    fn url(&self, proxy: usize, case: &Case) -> String {
        let l = self.listeners(proxy);
        match (case.https, case.cached) {
            (true, _) => format!("https://127.0.0.1:{}{}", l.tls, case.path),
            (false, true) => plain_url(l.cache, case.path),
            (false, false) => plain_url(l.plain, case.path),
        }
    }

    /// edge's cell: its configuration for the case is checked first; one
    /// it rejects makes the cell n/a. Otherwise edge runs for this case only.
    fn edge_cell(&mut self, case: &Case) -> Result<Cell> {
        interrupted()?;
        let config = self.dir.join(case.edge.file_name());
        std::fs::write(&config, configs::edge(case.edge, &self.ports))?;
        if let Some(first) = self.edge_check(&config)? {
            println!("xtask: edge, {}: n/a ({first})", case.name);
            return Ok(Cell::NotApplicable(format!("edge check: {first}")));
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
        let url = self.url(0, case);
        if let Err(e) = wait_answers(&mut edge, &url, case.body_len) {
            interrupted()?;
            return Ok(Cell::Failed(format!("{e:#}")));
        }
        let cell = self.measure(&mut edge, "edge", case, &url);
        edge.stop();
        cell
    }

    /// nginx's (1) or HAProxy's (2) cell.
    fn proxy_cell(&mut self, proxy: usize, case: &Case) -> Result<Cell> {
        interrupted()?;
        let url = self.url(proxy, case);
        let name = report::PROXIES[proxy];
        let mut slot = self.others[proxy].take();
        let cell = match &mut slot {
            Some(Ok(p)) => self.measure(p, name, case, &url),
            Some(Err(e)) => Ok(Cell::Failed(format!("{name} did not start: {e}"))),
            None => Ok(Cell::Failed(format!("{name} is not running"))),
        };
        self.others[proxy] = slot;
        cell
    }

    /// wrk straight to the origin.
    fn measure_origin(&mut self, url: &str, body_len: u64) -> Result<Cell> {
        let case = Case {
            name: "origin",
            path: "",
            https: false,
            cached: false,
            body_len,
            edge: EdgeKind::Plain,
        };
        let log = self.dir.join("wrk.log");
        let cpus = self.cpus.wrk.as_deref();
        run_cell(&mut self.origin, "origin", &case, url, cpus, &log, || Ok(0))
    }

    /// Warms up and measures `url` through `server`; checks the origin saw
    /// (next to) none of a cache case's requests.
    fn measure(&mut self, server: &mut Proc, name: &str, case: &Case, url: &str) -> Result<Cell> {
        println!("xtask: measuring {name}, {}", case.name);
        let log = self.dir.join("wrk.log");
        let cached_log = self.dir.join("origin").join("cached.log");
        let origin_requests = || -> Result<u64> {
            let text = std::fs::read_to_string(&cached_log)?;
            Ok(text.lines().count() as u64)
        };
        let cell = run_cell(
            server,
            name,
            case,
            url,
            self.cpus.wrk.as_deref(),
            &log,
            origin_requests,
        )?;
        self.origin.check_running()?;
        Ok(cell)
    }

    /// `edge check FILE`: `None` if accepted, else its first error line
    /// (the file named without the temporary directory).
    fn edge_check(&self, config: &Path) -> Result<Option<String>> {
        let out = Command::new(self.edge_bin)
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
        let dir = format!("{}/", self.dir.display());
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("rejected, no message")
            .replace(&dir, "");
        Ok(Some(first))
    }
}

/// Checks the response, warms up, measures, and turns what went wrong in
/// the cell (not the run) into a failed cell. `origin_requests` counts the
/// requests the origin has seen for the cached path.
fn run_cell(
    server: &mut Proc,
    name: &str,
    case: &Case,
    url: &str,
    wrk_cpus: Option<&str>,
    log: &Path,
    origin_requests: impl Fn() -> Result<u64>,
) -> Result<Cell> {
    let mut attempt = || -> Result<Cell> {
        // A cache case's first request fills the cache; the second is a hit.
        let probes = if case.cached { 2 } else { 1 };
        for _ in 0..probes {
            expect(url, case.body_len)?;
        }
        wrk::run(url, wrk_cpus, LOAD.for_time(WARMUP), log)?;
        server.check_running()?;
        let before = origin_requests()?;
        let m = wrk::run(url, wrk_cpus, LOAD, log)?;
        server.check_running()?;
        let misses = origin_requests()? - before;
        let mut notes = m.errors.clone();
        if case.cached && misses as f64 > m.requests as f64 * MAX_MISS_RATIO {
            notes.push(format!(
                "{misses} of {} requests reached the origin: not cache hits",
                m.requests
            ));
        }
        println!(
            "xtask:   {:.0} requests/s, p50 {:.0} µs, p99 {:.0} µs{}",
            m.rps,
            m.p50_us,
            m.p99_us,
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            }
        );
        Ok(Cell::Done(m, notes))
    };
    match attempt() {
        Ok(cell) => Ok(cell),
        Err(e) => {
            // Ctrl-C ends the run; anything else ends only this cell.
            interrupted()?;
            println!("xtask:   {name} failed: {e:#}");
            Ok(Cell::Failed(format!("{e:#}")))
        }
    }
}

fn plain_url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// Ten distinct free loopback ports. Between this and the servers binding
/// them another program could take one; the server's start then fails and
/// says which.
fn allocate_ports() -> Result<Ports> {
    let sockets: Vec<TcpListener> = (0..10)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    let p: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()?;
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
fn start_nginx(name: &str, prefix: &Path, conf: &str, cpus: Option<&str>) -> Result<Proc> {
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
    edge_tests::wait::until(&format!("{url} to answer"), START_TIMEOUT, || {
        interrupted()?;
        server.check_running()?;
        Ok(expect(url, len).ok())
    })
}

/// One GET with curl (TLS unverified: the certificate is self-signed);
/// fails unless the answer is 200 with a body of `len` bytes.
fn expect(url: &str, len: u64) -> Result<()> {
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "5", "-o", "/dev/null"])
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
fn first_line(program: &str, args: &[&str]) -> String {
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

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn machine_facts(root: &Path, edge_bin: &Path, nproc: usize) -> Vec<(String, String)> {
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
self-signed ECDSA P-256 certificate made at bench time with `openssl`, then proxies plain HTTP. wrk \
keeps its connections open, so this is steady-state encryption, not handshakes.
- wrk: {t} thread, {c} keep-alive connections (a closed loop: each connection has one request in \
flight), {d} s per cell after a {w} s warm-up; latency as wrk measures it (`--latency`). Cells run \
case by case, the three proxies back to back, so a disturbance hits neighbours alike.
- A cell shows n/a when edge's configuration for it does not pass `edge check` yet.
- The machine is shared: other builds running at the same time move the numbers; compare \
within a row.
",
        layout = cpus.describe(),
        t = LOAD.threads,
        c = LOAD.connections,
        d = LOAD.duration.as_secs(),
        w = WARMUP.as_secs(),
    )
}
