//! The protocol rows of `cargo xtask bench l7`:
//! - unary gRPC calls through each proxy: h2load (h2c, 50 connections, one
//!   call in flight on each) to edge (an `h2c` pool), nginx (`grpc_pass`)
//!   and HAProxy (`proto h2` both sides), all in front of one gRPC origin
//!   ([`super::grpc_origin`]);
//! - TCP proxying, a new connection per request: wrk with `Connection:
//!   close` through edge (`mode: tcp`), nginx (`stream`) and HAProxy
//!   (`mode tcp`) to the HTTP origin, so each request is one proxied
//!   connection.
//!
//! Same pinning as the HTTP rows: each proxy one worker on the proxy CPU,
//! the load generator and the origins on the other. The bare Pingora
//! example has neither an HTTP/2 upstream nor a TCP mode: its cells are
//! n/a.

use super::{
    ALLOC_COUNT_ENV, Cpus, LOAD, Measured, ROUNDS, RunCtx, START_TIMEOUT, WARMUP, configs,
    interrupted, plain_url, poll,
    proc::Proc,
    report::{self, COUNT, Cell, Counts, EDGE, PINGORA, Row, Sample},
    window,
    wrk::{self, Measurement},
};
use anyhow::{Context, Result, bail};
use std::{
    ffi::OsStr,
    net::{SocketAddr, TcpStream},
    path::Path,
    time::Duration,
};

/// What this part runs besides the HTTP rows' tools.
pub(crate) const PACKAGES: &[&str] = &["nghttp2-client", "libnginx-mod-stream"];
/// The gRPC method called, and its request: one length-prefixed message
/// of 13 bytes, like the small HTTP body.
const METHOD: &str = "/bench.Echo/Unary";
const MESSAGE: &[u8] = b"hello, world\n";
/// The request headers of a gRPC call.
const GRPC_HEADERS: &[&str] = &["content-type: application/grpc", "te: trailers"];
/// The gRPC row's name.
pub(crate) const GRPC_ROW: &str = "gRPC unary (h2c), 13 B message";
/// The TCP row's name.
pub(crate) const TCP_ROW: &str = "TCP, new connection per request, 13 B";
/// Why the bare Pingora proxy has no cell in these rows.
const NO_GRPC: &str = "the bare Pingora example proxies to HTTP/1.1 upstreams only";
const NO_TCP: &str = "the bare Pingora example has no TCP mode";
/// The nginx stream module Debian's libnginx-mod-stream installs.
const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// The listening ports of this part.
#[derive(Clone, Copy)]
struct Ports {
    grpc_origin: u16,
    http_origin: u16,
    /// (gRPC, TCP) of each proxy in [`report::PROXIES`] order; none for
    /// bare Pingora.
    proxies: [Option<(u16, u16)>; COUNT],
}

/// The two rows, measured.
pub(crate) fn rows(dir: &Path, edge_bin: &Path, cpus: &Cpus, http_origin: u16) -> Result<Vec<Row>> {
    let p = super::free_ports(7)?;
    let ports = Ports {
        grpc_origin: p[0],
        http_origin,
        proxies: [
            Some((p[1], p[2])),
            None,
            Some((p[3], p[4])),
            Some((p[5], p[6])),
        ],
    };
    let dir = dir.join("protocols");
    std::fs::create_dir_all(dir.join("nginx").join("tmp"))?;
    let body = dir.join("request.bin");
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(MESSAGE.len() as u32).to_be_bytes());
    framed.extend_from_slice(MESSAGE);
    std::fs::write(&body, &framed)?;
    let alloc_file = dir.join("edge.allocs");

    let exe = std::env::current_exe().context("finding xtask's own binary")?;
    let listen = format!("127.0.0.1:{}", ports.grpc_origin);
    let mut origin = Proc::spawn(
        "grpc-origin",
        cpus.origin.as_deref(),
        &exe,
        &["grpc-origin", "--listen", &listen],
        &dir.join("grpc-origin.log"),
        libc::SIGKILL,
    )?;
    wait_accepts(&mut origin, ports.grpc_origin)?;

    let mut servers: [Option<Result<Proc>>; COUNT] = [
        Some(start_edge(&dir, edge_bin, cpus, &ports, &alloc_file)),
        None,
        Some(start_nginx(&dir, cpus, &ports)),
        Some(start_haproxy(&dir, cpus, &ports)),
    ];
    let mut out = Vec::new();
    for (name, grpc) in [(GRPC_ROW, true), (TCP_ROW, false)] {
        let mut samples: [Vec<Sample>; COUNT] = Default::default();
        let mut counts: [Vec<Counts>; COUNT] = Default::default();
        let mut fixed: [Option<Cell>; COUNT] = Default::default();
        let no_pingora = if grpc { NO_GRPC } else { NO_TCP };
        fixed[PINGORA] = Some(Cell::NotApplicable(no_pingora.into()));
        for round in 1..=ROUNDS {
            for (i, slot) in servers.iter_mut().enumerate() {
                if fixed[i].is_some() {
                    continue;
                }
                let proxy = report::PROXIES[i];
                let (server, (g, t)) = match (slot, ports.proxies[i]) {
                    (Some(Ok(server)), Some(ports)) => (server, ports),
                    (Some(Err(e)), _) => {
                        fixed[i] = Some(Cell::Failed(format!("{proxy} did not start: {e:#}")));
                        continue;
                    }
                    _ => {
                        fixed[i] = Some(Cell::Failed(format!("{proxy} is not set up")));
                        continue;
                    }
                };
                println!("xtask: {proxy}, {name}, run {round}/{ROUNDS}");
                let ctx = RunCtx {
                    cpus,
                    dir: &dir,
                    alloc_file: (i == EDGE).then_some(alloc_file.as_path()),
                    count_syscalls: true,
                };
                let result = if grpc {
                    measure_grpc(server, g, &ctx, &body)
                } else {
                    measure_tcp(server, t, &ctx)
                };
                match result {
                    Ok(m) => {
                        super::print_measured(&m);
                        samples[i].push(m.sample);
                        counts[i].push(m.counts);
                    }
                    Err(e) => {
                        interrupted()?;
                        println!("xtask:   {proxy} failed: {e:#}");
                        fixed[i] = Some(Cell::Failed(format!("{e:#}")));
                    }
                }
                origin.check_running()?;
            }
        }
        out.push(super::row(name, fixed, samples, counts));
    }
    for s in servers.iter_mut().flatten().flatten() {
        s.stop();
    }
    Ok(out)
}

/// Waits until something accepts on 127.0.0.1:`port` while `server` runs.
fn wait_accepts(server: &mut Proc, port: u16) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    poll(&format!("{addr} to accept"), START_TIMEOUT, || {
        interrupted()?;
        server.check_running()?;
        Ok(
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(drop),
        )
    })
}

/// edge with a gRPC and a TCP listener, publishing its allocation count
/// to `alloc_file`.
fn start_edge(
    dir: &Path,
    edge_bin: &Path,
    cpus: &Cpus,
    ports: &Ports,
    alloc_file: &Path,
) -> Result<Proc> {
    let (g, t) = ports.proxies[EDGE].context("no ports for edge")?;
    let config = dir.join("edge-protocols.yaml");
    std::fs::write(
        &config,
        format!(
            "# Written by `cargo xtask bench l7`.
listeners:
  - name: grpc
    address: 127.0.0.1:{g}
    routes:
      - name: grpc
        match: {{ grpc: {{ service: bench.Echo }} }}
        proxy: {{ pool: grpc }}
  - name: tcp
    address: 127.0.0.1:{t}
    mode: tcp
    pool: origin
pools:
  - name: grpc
    protocol: h2c
    backends:
      - address: 127.0.0.1:{go}
  - name: origin
    backends:
      - address: 127.0.0.1:{ho}
server:
  threads: 1
",
            go = ports.grpc_origin,
            ho = ports.http_origin,
        ),
    )?;
    let config = config.to_str().context("temporary path is not UTF-8")?;
    let env: [(&str, &OsStr); 1] = [(ALLOC_COUNT_ENV, alloc_file.as_os_str())];
    let mut edge = Proc::spawn_with_env(
        "edge",
        cpus.proxy.as_deref(),
        edge_bin,
        &["run", "--config", config],
        &env,
        &dir.join("edge.log"),
        libc::SIGINT,
    )?;
    wait_accepts(&mut edge, g)?;
    wait_accepts(&mut edge, t)?;
    Ok(edge)
}

fn start_nginx(dir: &Path, cpus: &Cpus, ports: &Ports) -> Result<Proc> {
    if !Path::new(NGINX_STREAM_MODULE).exists() {
        bail!("{NGINX_STREAM_MODULE} is missing (Debian package libnginx-mod-stream)");
    }
    let (g, t) = ports.proxies[2].context("no ports for nginx")?;
    let prefix = dir.join("nginx");
    let conf = format!(
        "load_module {NGINX_STREAM_MODULE};
{head}http {{
    access_log off;
    tcp_nodelay on;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
{temp}    upstream grpc_origin {{
        server 127.0.0.1:{go};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{g} http2;
        location / {{
            grpc_pass grpc://grpc_origin;
        }}
    }}
}}
stream {{
    server {{
        listen 127.0.0.1:{t};
        proxy_connect_timeout 5s;
        proxy_pass 127.0.0.1:{ho};
    }}
}}
",
        head = configs::nginx_head(&prefix),
        temp = configs::nginx_temp_paths(&prefix),
        go = ports.grpc_origin,
        ho = ports.http_origin,
    );
    let mut nginx = super::start_nginx("nginx", &prefix, &conf, cpus.proxy.as_deref())?;
    wait_accepts(&mut nginx, g)?;
    wait_accepts(&mut nginx, t)?;
    Ok(nginx)
}

fn start_haproxy(dir: &Path, cpus: &Cpus, ports: &Ports) -> Result<Proc> {
    let (g, t) = ports.proxies[3].context("no ports for HAProxy")?;
    let cfg = dir.join("haproxy-protocols.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global
    nbthread 1
    maxconn 8192

{defaults}
frontend grpc
    bind 127.0.0.1:{g} proto h2
    default_backend grpc_origin

backend grpc_origin
    server o 127.0.0.1:{go} proto h2

listen tcp
    mode tcp
    bind 127.0.0.1:{t}
    server o 127.0.0.1:{ho}
",
            defaults = configs::haproxy_defaults(),
            go = ports.grpc_origin,
            ho = ports.http_origin,
        ),
    )?;
    let mut haproxy = super::spawn_haproxy(&cfg, cpus.proxy.as_deref(), &dir.join("haproxy.log"))?;
    wait_accepts(&mut haproxy, g)?;
    wait_accepts(&mut haproxy, t)?;
    Ok(haproxy)
}

/// One gRPC run: a check call, a warm-up, then h2load for [`LOAD`]'s
/// time in a [`window`].
fn measure_grpc(server: &mut Proc, port: u16, ctx: &RunCtx<'_>, body: &Path) -> Result<Measured> {
    let url = format!("http://127.0.0.1:{port}{METHOD}");
    let run = H2Load {
        url: &url,
        body: Some(body),
        headers: GRPC_HEADERS,
    };
    let check = h2load(&run, ctx.cpus, ctx.dir, Some(1), Duration::ZERO)?;
    if check.requests != 1 || check.failed > 0 {
        bail!("the check call failed: {:?}", check.errors);
    }
    h2load(&run, ctx.cpus, ctx.dir, None, WARMUP)?;
    server.check_running()?;
    window(server, ctx, || {
        h2load(&run, ctx.cpus, ctx.dir, None, LOAD.duration)
    })
}

/// One TCP run: a check request, a warm-up, then wrk with `Connection:
/// close` (every request a new connection through the proxy) in a
/// [`window`].
fn measure_tcp(server: &mut Proc, port: u16, ctx: &RunCtx<'_>) -> Result<Measured> {
    let url = plain_url(port, configs::SMALL_PATH);
    let close = ["Connection: close".to_string()];
    super::expect_with(&url, &close, super::SMALL)?;
    let log = ctx.dir.join("wrk.log");
    let wrk_cpus = ctx.cpus.wrk.as_deref();
    wrk::run_with_headers(&url, &close, wrk_cpus, LOAD.for_time(WARMUP), &log)?;
    server.check_running()?;
    window(server, ctx, || {
        wrk::run_with_headers(&url, &close, wrk_cpus, LOAD, &log)
    })
}

/// What h2load asks for.
pub(crate) struct H2Load<'a> {
    /// `http://` (h2c, prior knowledge) URL.
    pub(crate) url: &'a str,
    /// A file to send as each request's body (which makes it a POST).
    pub(crate) body: Option<&'a Path>,
    /// Request headers, `name: value`.
    pub(crate) headers: &'a [&'a str],
}

/// Runs h2load on `run`: `count` requests on one connection, or
/// [`LOAD`]'s connections for `duration`; one stream in flight on each
/// connection either way. Latencies come from its per-request log.
pub(crate) fn h2load(
    run: &H2Load<'_>,
    cpus: &Cpus,
    dir: &Path,
    count: Option<u64>,
    duration: Duration,
) -> Result<Measurement> {
    let log = dir.join("h2load.out");
    let requests_log = dir.join("h2load-requests.tsv");
    let requests_log_s = requests_log
        .to_str()
        .context("temporary path is not UTF-8")?
        .to_string();
    let amount = match count {
        Some(n) => vec!["-n".to_string(), n.to_string()],
        None => vec!["-D".to_string(), duration.as_secs().max(1).to_string()],
    };
    let connections = if count.is_some() { 1 } else { LOAD.connections };
    let mut args: Vec<String> = vec![
        "-t".into(),
        "1".into(),
        "-c".into(),
        connections.to_string(),
        "-m".into(),
        "1".into(),
    ];
    if let Some(body) = run.body {
        args.push("-d".into());
        args.push(
            body.to_str()
                .context("temporary path is not UTF-8")?
                .to_string(),
        );
    }
    for header in run.headers {
        args.push("-H".into());
        args.push((*header).to_string());
    }
    args.push(format!("--log-file={requests_log_s}"));
    args.extend(amount);
    args.push(run.url.to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = Proc::spawn(
        "h2load",
        cpus.wrk.as_deref(),
        Path::new("h2load"),
        &refs,
        &log,
        libc::SIGINT,
    )?;
    let bound = duration + Duration::from_secs(20);
    let status = poll("h2load to finish", bound, || {
        interrupted()?;
        child.try_wait()
    })?;
    let text = child.log_text();
    if !status.success() {
        bail!("h2load {} exited with {status}:\n{text}", args.join(" "));
    }
    let latencies = std::fs::read_to_string(&requests_log).unwrap_or_default();
    parse(&text, &latencies).with_context(|| format!("reading h2load's report:\n{text}"))
}

/// Reads h2load's summary (`finished in 10.00s, 1234.56 req/s`,
/// `requests: N total, N started, N done, N succeeded, N failed, ...`)
/// and its per-request log (start, status, microseconds).
fn parse(text: &str, requests: &str) -> Result<Measurement> {
    let mut rps = None;
    let mut done = None;
    let mut failed = 0;
    let mut errors = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            let v = rest
                .split(',')
                .nth(1)
                .and_then(|s| s.trim().strip_suffix(" req/s"))
                .context("req/s")?;
            rps = Some(v.trim().parse::<f64>().context("req/s")?);
        } else if let Some(rest) = line.strip_prefix("requests:") {
            for part in rest.split(',') {
                let mut words = part.split_whitespace();
                let (Some(n), Some(what)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().context("request count")?;
                match what {
                    "succeeded" => done = Some(n),
                    "failed" | "errored" | "timeout" if n > 0 => {
                        failed += n;
                        errors.push(format!("{n} {what}"));
                    }
                    _ => {}
                }
            }
        }
    }
    let mut micros: Vec<f64> = requests
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse::<f64>().ok())
        .collect();
    micros.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        micros
            .get(((micros.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    match (rps, done) {
        (Some(rps), Some(requests)) => Ok(Measurement {
            rps,
            p50_us: pct(0.5),
            p99_us: pct(0.99),
            requests,
            errors,
            failed,
            non_2xx: 0,
        }),
        _ => bail!("no req/s or request count in h2load's output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_h2load_report() {
        let text = "finished in 10.00s, 25431.50 req/s, 2.23MB/s
requests: 254315 total, 254315 started, 254315 done, 254310 succeeded, 5 failed, 5 errored, 0 timeout
status codes: 254315 2xx, 0 3xx, 0 4xx, 0 5xx
";
        let log = "1\t200\t100\n2\t200\t300\n3\t200\t200\n";
        let m = parse(text, log).unwrap();
        assert_eq!(m.rps, 25431.5);
        assert_eq!(m.requests, 254_310);
        assert_eq!(m.failed, 10);
        assert_eq!((m.p50_us, m.p99_us), (200.0, 300.0));
        assert!(parse("nothing", "").is_err());
    }
}
