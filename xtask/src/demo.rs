//! The demo lab of `cargo xtask run`: a client, edge with XDP attached in
//! native mode, and three small backends, each in its own network
//! namespace, on one L2 segment (the L4 lab of `edge_tests::dsr`), so a
//! newcomer sees both halves of edge work with one command:
//!
//! ```text
//!                         edgelab-sw: bridge br0 (one L2 segment)
//!          ┌────────────────────────┬───────┴───────────┬───────────────────────────┐
//!   edgelab-client c0         edgelab-edge l0             edgelab-be1 / be2 / be3 eth0
//!   10.77.1.2 (.3 denied)     10.77.1.1 + 10.77.2.1       10.77.2.11-13
//!   VIP 10.77.9.1 via edge    XDP native                  VIP 10.77.9.1/32 on lo
//!                             :8080 L7, :9100 admin       :80 (the VIP, L4), :8000 (L7 pool)
//!                             h0 10.77.3.2                edge decap on eth0
//!                              │
//!   this host: edgelab0 10.77.3.1 (veth; the admin endpoint from the host)
//! ```
//!
//! - L4: the VIP 10.77.9.1:80 is balanced in XDP over the backends by
//!   direct server return (IPIP; each backend runs `edge decap`).
//! - L7: the listener 10.77.1.1:8080, round robin over the backends'
//!   :8000; the client's second address is on the XDP deny list.
//! - Gateway: `/api` on the listener needs an API key and allows a few
//!   requests a second per consumer (401 / 200 / 429).
//! - Admin: on every address of edge's namespace, so also from the host
//!   over a veth pair: status page, API, metrics, `edge ctl`.
//!
//! The only thing on the host is that veth pair, deleted with the lab.

use anyhow::{Context, Result, bail, ensure};
use edge_tests::{
    backend::Backend,
    dsr::{self, DsrLab, DsrPlan, EDGE_IFACE},
    edge::Edge,
    http::{self, Message},
    lab::{Lab, ip, output},
    metrics::metric,
    netns,
    topology::{self, ADMIN_PORT, BACKEND_PORT, LISTEN_PORT},
    wait,
};
use std::{
    io::{BufReader, Read, Seek, SeekFrom, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

const TAG: &str = "edgelab";
const PLAN: DsrPlan<'static> = DsrPlan {
    client_net: "10.77.1",
    backend_net: "10.77.2",
    vip: Ipv4Addr::new(10, 77, 9, 1),
    port: 80,
    backends: &["be1", "be2", "be3"],
    net6: None,
};
/// The client's second address, on the XDP deny list.
const DENIED: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 3);
/// The host's end of the veth pair into edge's namespace.
const HOST_IF: &str = "edgelab0";
/// Its peer, in edge's namespace.
const HOST_PEER_IF: &str = "h0";
/// The host's address on that link (a /30).
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 3, 1);
/// edge's address on that link: the admin endpoint seen from the host.
const EDGE_HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 3, 2);
/// The L7 pool.
const POOL: &str = "app";
/// The L4 service.
const SERVICE: &str = "vip";
/// The gateway's consumer and its API key.
const CONSUMER: &str = "demo";
const API_KEY: &str = "demo-key-0123456789";
/// Requests a second (the burst) a consumer may make on `/api`.
const RATE: usize = 3;
/// Requests sent at once on `/api` to see 429.
const BURST: usize = 10;
/// New connections to the VIP; each backend must answer some. A backend
/// misses all of them with probability (2/3)^30 ≈ 5e-6.
const L4_CONNECTIONS: usize = 30;
/// Bound on every wait of the check.
const DEADLINE: Duration = Duration::from_secs(20);
/// Bound on one `edge ctl` run.
const CTL_TIMEOUT: Duration = Duration::from_secs(15);
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// edge's L7 listener.
fn listen() -> SocketAddr {
    SocketAddr::new(PLAN.edge_front_ip(), LISTEN_PORT)
}

/// The admin endpoint as the client sees it.
fn admin_lab() -> SocketAddr {
    SocketAddr::new(PLAN.edge_front_ip(), ADMIN_PORT)
}

/// The admin endpoint as this host sees it.
fn admin_host() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(EDGE_HOST_IP), ADMIN_PORT)
}

fn admin_url() -> String {
    format!("http://{}", admin_host())
}

/// Backend `i`'s L7 server.
fn backend_addr(i: usize) -> SocketAddr {
    SocketAddr::new(PLAN.backend_ip(i), BACKEND_PORT)
}

/// edge's configuration for the lab.
fn config() -> String {
    let n = PLAN.backends.len();
    let l4_backends: String = (0..n)
        .map(|i| format!("        - address: {}\n", PLAN.backend_ip(i)))
        .collect();
    let l7_backends: String = (0..n)
        .map(|i| format!("      - address: {}\n", backend_addr(i)))
        .collect();
    let (source, vip, port, listen) = (PLAN.edge_ip(), PLAN.vip, PLAN.port, listen());
    format!(
        r#"# Written by `cargo xtask run` for its demo lab.
xdp:
  interfaces:
    - name: {EDGE_IFACE}
      mode: native
  deny:
    - {DENIED}/32
l4:
  forwarding:
    source_v4: {source}
  services:
    - name: {SERVICE}
      vip: {vip}
      port: {port}
      protocol: tcp
      backends:
{l4_backends}      health_check:
        type: tcp
        port: {port}
        interval: 500ms
        timeout: 300ms
        rise: 2
        fall: 2
consumers:
  - name: {CONSUMER}
    api_keys:
      - key: {API_KEY}
listeners:
  - name: web
    address: {listen}
    pool: {POOL}
    routes:
      - name: api
        match: {{path: {{prefix: /api}}}}
        proxy: {{pool: {POOL}}}
        policies:
          auth:
            api_key: {{header: apikey, hide_credentials: true}}
          rate_limits:
            - {{name: per-consumer, key: consumer, limit: {RATE}, window: 1s}}
pools:
  - name: {POOL}
    algorithm: round_robin
    backends:
{l7_backends}admin:
  address: 0.0.0.0:{ADMIN_PORT}
  allow: [127.0.0.0/8, {HOST_IP}/32]
server:
  threads: 2
  grace_period_seconds: 0
"#
    )
}

/// A veth pair from this host into edge's namespace, so that the admin
/// endpoint (status page, API, `edge ctl`) is reachable from the host.
/// Deleted when dropped; deleting edge's namespace deletes it too.
struct HostLink;

impl HostLink {
    fn new(edge_ns: &str) -> Result<Self> {
        // One left by a killed run whose namespace still lives.
        if Path::new("/sys/class/net").join(HOST_IF).exists() {
            ip(&["link", "del", HOST_IF])?;
        }
        ip(&[
            "link",
            "add",
            HOST_IF,
            "type",
            "veth",
            "peer",
            "name",
            HOST_PEER_IF,
            "netns",
            edge_ns,
        ])?;
        let link = Self;
        ip(&["addr", "add", &format!("{HOST_IP}/30"), "dev", HOST_IF])?;
        ip(&["link", "set", HOST_IF, "up"])?;
        let edge_cidr = format!("{EDGE_HOST_IP}/30");
        ip(&[
            "-n",
            edge_ns,
            "addr",
            "add",
            &edge_cidr,
            "dev",
            HOST_PEER_IF,
        ])?;
        ip(&["-n", edge_ns, "link", "set", HOST_PEER_IF, "up"])?;
        Ok(link)
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        if Path::new("/sys/class/net").join(HOST_IF).exists()
            && let Err(e) = ip(&["link", "del", HOST_IF])
        {
            eprintln!("lab cleanup: {e:#}");
        }
    }
}

struct Demo {
    // Field order is drop order: edge stops first, then the L7 servers,
    // the host link, and the lab (decapsulators, L4 servers, namespaces).
    edge: Edge,
    /// edge's configuration file.
    config: std::path::PathBuf,
    _web: Vec<Backend>,
    _host: HostLink,
    lab: DsrLab,
}

fn up(bin: &Path, dir: &Path) -> Result<Demo> {
    let mut lab = DsrLab::build_in(Lab::fixed(TAG)?, PLAN)?;
    lab.lab.addr(&lab.client, "c0", &format!("{DENIED}/24"))?;
    let host = HostLink::new(&lab.edge)?;
    let web = PLAN
        .backends
        .iter()
        .enumerate()
        .map(|(i, name)| Backend::start(name, Some(&lab.backend_ns[i]), backend_addr(i)))
        .collect::<Result<Vec<_>>>()?;
    lab.start_decaps(bin)?;
    let config_path = dir.join("edge.yaml");
    std::fs::write(&config_path, config())?;
    let mut edge = Edge::start_bin(bin, Some(&lab.edge), &config_path)?;
    edge.wait_ready(Some(&lab.client), admin_lab(), Duration::from_secs(30))?;
    wait_l4_healthy(&lab.client).with_context(|| format!("edge log:\n{}", edge.log_text()))?;
    Ok(Demo {
        edge,
        config: config_path,
        _web: web,
        _host: host,
        lab,
    })
}

/// edge's metrics, scraped from the client's namespace.
fn scrape(client: &str) -> Result<String> {
    let admin = admin_lab();
    Ok(netns::run_in(client, move || http::get(admin, "/metrics"))?.text())
}

/// Waits until edge reports every L4 backend healthy.
fn wait_l4_healthy(client: &str) -> Result<()> {
    wait::until("every L4 backend to be healthy", DEADLINE, || {
        let m = scrape(client)?;
        let all = (0..PLAN.backends.len())
            .all(|i| dsr::backend_healthy(&m, SERVICE, PLAN.backend_ip(i)) == Some(true));
        Ok(all.then_some(()))
    })
}

/// `curl` from the client namespace; returns its stdout.
fn curl(client: &str, args: &[&str]) -> Result<String> {
    output(
        Command::new("ip")
            .args(["netns", "exec", client, "curl", "-sS", "--max-time", "5"])
            .args(args),
    )
}

/// `edge ctl --admin <the host's admin URL> ARGS...` run on this host, as
/// the guide prints it; returns what it printed.
fn ctl(bin: &Path, args: &[&str]) -> Result<String> {
    let what = format!("edge ctl {}", args.join(" "));
    let mut out = tempfile::tempfile()?;
    let mut child = Command::new(bin)
        .arg("ctl")
        .arg("--admin")
        .arg(admin_url())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?)
        .spawn()
        .with_context(|| format!("running {what}"))?;
    let status = match wait::until(&what, CTL_TIMEOUT, || Ok(child.try_wait()?)) {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let mut text = String::new();
    out.seek(SeekFrom::Start(0))?;
    out.read_to_string(&mut text)?;
    if !status.success() {
        bail!("{what} failed with {status}:\n{text}");
    }
    Ok(text)
}

/// Checks the lab answers like the guide says.
fn check(demo: &mut Demo, bin: &Path) -> Result<()> {
    check_l7(demo).context("the L7 listener")?;
    check_l4(demo).context("the L4 VIP")?;
    check_gateway(demo).context("the gateway route /api")?;
    check_metrics(demo).context("the metrics")?;
    check_admin(bin).context("the admin endpoint from this host")?;
    check_l4_drain(demo, bin).context("draining an L4 backend, across a restart")?;
    Ok(())
}

/// `edge ctl drain` of an L4 backend takes it out of the VIP's Maglev
/// table: new connections land on the others until it is undrained.
fn check_l4_drain(demo: &mut Demo, bin: &Path) -> Result<()> {
    let ip0 = PLAN.backend_ip(0).to_string();
    let name0 = PLAN.backends[0];
    let client = demo.lab.client.clone();
    let vip = PLAN.vip_addr();
    let answers = |n: usize| -> Result<Vec<String>> {
        let client = client.clone();
        netns::run_in(&client, move || {
            (0..n)
                .map(|_| {
                    let r = http::get(vip, "/")?;
                    Ok(r.header("x-backend").unwrap_or("-").to_string())
                })
                .collect::<Result<Vec<String>>>()
        })
    };
    ctl(bin, &["drain", SERVICE, &ip0])?;
    let admin = admin_host();
    let drained = || {
        wait::until(&format!("{ip0} of {SERVICE} drained"), DEADLINE, || {
            let text = http::get(admin, "/api/status")?.text();
            let got = topology::status_backend_flag(&text, "services", SERVICE, &ip0, "drained")?;
            Ok(got.then_some(()))
        })
    };
    drained()?;
    let seen = answers(L4_CONNECTIONS)?;
    ensure!(
        !seen.iter().any(|b| b == name0),
        "{name0} was drained but took new connections: {seen:?}"
    );
    // A new edge on this configuration takes the drain back (it adopts
    // the pinned tables and republishes them without the backend).
    demo.edge.stop(Duration::from_secs(15))?;
    demo.edge = Edge::start_bin(bin, Some(&demo.lab.edge), &demo.config)?;
    demo.edge
        .wait_ready(Some(&demo.lab.client), admin_lab(), Duration::from_secs(30))?;
    wait_l4_healthy(&demo.lab.client)?;
    drained()?;
    let seen = answers(L4_CONNECTIONS)?;
    ensure!(
        !seen.iter().any(|b| b == name0),
        "{name0} took new connections after a restart that should have kept its drain: {seen:?}"
    );
    ctl(bin, &["undrain", SERVICE, &ip0])?;
    wait::until(
        &format!("{name0} back in the VIP's table"),
        DEADLINE,
        || Ok(answers(10)?.iter().any(|b| b == name0).then_some(())),
    )?;
    Ok(())
}

/// curl through edge reaches every backend in turn; the denied source
/// cannot connect; XDP is attached natively.
fn check_l7(demo: &Demo) -> Result<()> {
    let url = format!("http://{}/", listen());
    let mut seen = Vec::new();
    for _ in 0..PLAN.backends.len() {
        let head = curl(&demo.lab.client, &["-D", "-", "-o", "/dev/null", &url])?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("unexpected response through edge:\n{head}");
        }
        let backend = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("x-backend: ")
                    .or_else(|| l.strip_prefix("X-Backend: "))
            })
            .context("no X-Backend header")?;
        seen.push(backend.trim().to_string());
    }
    seen.sort();
    let want: Vec<String> = PLAN.backends.iter().map(|n| n.to_string()).collect();
    if seen != want {
        bail!("round robin should reach each backend once, reached {seen:?}");
    }
    let denied = DENIED.to_string();
    let args = ["--interface", &denied, "--connect-timeout", "1", &url];
    if curl(&demo.lab.client, &args).is_ok() {
        bail!("the denied source {denied} connected");
    }
    if demo.lab.lab.xdp_mode(Some(&demo.lab.edge), EDGE_IFACE)? != Some("native") {
        bail!("XDP is not attached natively on {EDGE_IFACE}");
    }
    Ok(())
}

/// The VIP answers from every backend over new connections, edge counts
/// the flows in XDP, and the backend's socket joins the VIP to the client's
/// own address and port: the backend answers the client itself (DSR).
fn check_l4(demo: &mut Demo) -> Result<()> {
    demo.lab.check_decaps()?;
    let client = demo.lab.client.clone();
    let vip = PLAN.vip_addr();
    // The first connection may wait for edge to resolve a backend's MAC.
    wait::until("the VIP to answer through edge", DEADLINE, || {
        let r = netns::run_in(&client, move || http::get(vip, "/"));
        Ok(r.ok().filter(|m| m.status() == Some(200)).map(|_| ()))
    })?;
    let flows = |metrics: &str| -> Vec<f64> {
        (0..PLAN.backends.len())
            .map(|i| {
                let backend = PLAN.backend_ip(i).to_string();
                let labels = [("service", SERVICE), ("backend", backend.as_str())];
                metric(metrics, "edge_l4_new_flows_total", &labels).unwrap_or(0.0)
            })
            .collect()
    };
    let before: f64 = flows(&scrape(&client)?).iter().sum();
    let answered = netns::run_in(&client, move || {
        (0..L4_CONNECTIONS)
            .map(|i| {
                let resp =
                    http::get(vip, "/").with_context(|| format!("new connection {i} to {vip}"))?;
                if resp.status() != Some(200) {
                    bail!("new connection {i} to {vip}: status {:?}", resp.status());
                }
                resp.header("x-backend")
                    .map(str::to_string)
                    .context("no X-Backend header")
            })
            .collect::<Result<Vec<String>>>()
    })?;
    for name in PLAN.backends {
        if !answered.iter().any(|b| b == name) {
            bail!("{L4_CONNECTIONS} new connections to {vip} never reached {name}: {answered:?}");
        }
    }
    let mut last = Vec::new();
    wait::until(
        "edge_l4_new_flows_total to count the connections",
        DEADLINE,
        || {
            last = flows(&scrape(&client)?);
            let total: f64 = last.iter().sum();
            Ok(
                (total >= before + L4_CONNECTIONS as f64 && last.iter().all(|f| *f > 0.0))
                    .then_some(()),
            )
        },
    )
    .with_context(|| format!("edge_l4_new_flows_total by backend: {last:?}, before: {before}"))?;

    // One connection held open: the backend's socket is VIP ↔ client.
    let stream = netns::run_in(&client, move || {
        TcpStream::connect_timeout(&vip, Duration::from_secs(5))
            .with_context(|| format!("connecting to {vip}"))
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let client_end = SocketAddr::new(PLAN.client_ip(), stream.local_addr()?.port());
    let mut reader = BufReader::new(stream);
    let req = format!("GET / HTTP/1.1\r\nHost: {vip}\r\n\r\n");
    reader.get_mut().write_all(req.as_bytes())?;
    let resp = http::read_message(&mut reader)?
        .context("the VIP closed the connection without an answer")?;
    let name = resp.header("x-backend").context("no X-Backend header")?;
    let i = PLAN
        .backends
        .iter()
        .position(|b| *b == name)
        .with_context(|| format!("unknown backend {name:?}"))?;
    let ns = demo.lab.backend_ns[i].as_str();
    let sockets = output(Command::new("ip").args(["netns", "exec", ns, "ss", "-tn"]))?;
    let (local, peer) = (vip.to_string(), client_end.to_string());
    let found = sockets.lines().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words.contains(&local.as_str()) && words.contains(&peer.as_str())
    });
    if !found {
        bail!("{name} has no connection from {local} to the client's {peer}:\n{sockets}");
    }
    // ... and its route to the client does not go through edge.
    let route = ip(&["-n", ns, "route", "get", &PLAN.client_ip().to_string()])?;
    if route.contains(" via ") {
        bail!("{name} routes answers to the client through a gateway: {route}");
    }
    drop(reader);
    Ok(())
}

/// `/api`: 401 without a key or with a wrong one; with it, 200 (the
/// backend sees the consumer, not the key), then 429 past the burst.
fn check_gateway(demo: &Demo) -> Result<()> {
    let listen = listen();
    let (none, wrong, burst) = netns::run_in(&demo.lab.client, move || {
        let path = "/api/hello";
        let none = http::request(listen, "GET", path, &[])?;
        let wrong = http::request(listen, "GET", path, &[("apikey", "not-the-key")])?;
        let burst = (0..BURST)
            .map(|_| http::request(listen, "GET", path, &[("apikey", API_KEY)]))
            .collect::<Result<Vec<Message>>>()?;
        Ok((none, wrong, burst))
    })?;
    ensure!(
        none.status() == Some(401),
        "without a key: {:?}, not 401",
        none.start
    );
    ensure!(
        wrong.status() == Some(401),
        "with a wrong key: {:?}, not 401",
        wrong.start
    );
    let statuses: Vec<Option<u16>> = burst.iter().map(Message::status).collect();
    let first = &burst[0];
    ensure!(
        first.status() == Some(200),
        "with the key: {statuses:?}, the first not 200"
    );
    let body = first.text();
    ensure!(
        body.contains(&format!("x-consumer-username: {CONSUMER}")) && !body.contains(API_KEY),
        "the backend should see the consumer {CONSUMER} and not the key; it saw:\n{body}"
    );
    let expected = statuses.iter().all(|s| matches!(s, Some(200 | 429)));
    ensure!(expected, "with the key: {statuses:?}, not only 200 and 429");
    let limited = burst
        .iter()
        .find(|m| m.status() == Some(429))
        .with_context(|| format!("{BURST} requests at once were never limited: {statuses:?}"))?;
    ensure!(
        limited.header("retry-after").is_some(),
        "429 without Retry-After: {limited:?}"
    );
    Ok(())
}

/// The counters the guide points at.
fn check_metrics(demo: &Demo) -> Result<()> {
    let metrics = scrape(&demo.lab.client)?;
    for needle in [
        "edge_xdp_packets_total{class=\"l7\"}",
        "edge_xdp_packets_total{class=\"vip\"}",
        "edge_xdp_packets_total{class=\"denied\"}",
        "edge_http_requests_total{listener=\"web\",route=\"default\",pool=\"app\",status_class=\"2xx\"} 3",
    ] {
        if !metrics.contains(needle) {
            bail!("metrics lack {needle}:\n{metrics}");
        }
    }
    // Refusals are counted by policy (and reason): two without a valid
    // key, some over the rate.
    for (policy, at_least) in [("auth", 2.0), ("rate_limit", 1.0)] {
        let mut last = 0.0;
        wait::until(
            &format!("{policy} refusals to be counted"),
            DEADLINE,
            || {
                let text = scrape(&demo.lab.client)?;
                let labels = [("route", "api"), ("policy", policy)];
                last = sum_of(&text, "edge_policy_rejections_total", &labels);
                Ok((last >= at_least).then_some(()))
            },
        )
        .with_context(|| format!("edge_policy_rejections_total of {policy}: {last}"))?;
    }
    Ok(())
}

/// The sum of every sample of `name` carrying all of `labels`.
fn sum_of(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let head = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(head.as_str()))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// From this host: the status page, `/api/status` listing the pool's and
/// the service's backends, and `edge ctl` as printed (a drain and undrain
/// shown by `/api/status`).
fn check_admin(bin: &Path) -> Result<()> {
    let admin = admin_host();
    let page = http::get(admin, "/")?;
    ensure!(
        page.status() == Some(200),
        "GET / answered {:?}",
        page.start
    );
    let kind = page.header("content-type").unwrap_or_default();
    ensure!(
        kind.starts_with("text/html"),
        "GET / is {kind:?}, not text/html"
    );
    let status = http::get(admin, "/api/status")?;
    ensure!(
        status.status() == Some(200),
        "GET /api/status answered {:?}: {}",
        status.start,
        status.text()
    );
    let json = status.text();
    let n = PLAN.backends.len();
    let pool = topology::status_addresses(&json, "pools", POOL)?;
    let want: Vec<String> = (0..n).map(|i| backend_addr(i).to_string()).collect();
    ensure!(
        pool == want,
        "/api/status lists pool {POOL} as {pool:?}, not {want:?}"
    );
    let service = topology::status_addresses(&json, "services", SERVICE)?;
    let want: Vec<String> = (0..n).map(|i| PLAN.backend_ip(i).to_string()).collect();
    ensure!(
        service == want,
        "/api/status lists service {SERVICE} as {service:?}, not {want:?}"
    );

    ctl(bin, &["status"])?;
    ctl(bin, &["backends"])?;
    let b0 = backend_addr(0).to_string();
    let drained = |want: bool| {
        let mut last = String::new();
        wait::until(&format!("{b0} drained: {want}"), DEADLINE, || {
            last = http::get(admin, "/api/status")?.text();
            let got = topology::status_backend_flag(&last, "pools", POOL, &b0, "drained")?;
            Ok((got == want).then_some(()))
        })
        .with_context(|| format!("/api/status: {last}"))
    };
    ctl(bin, &["drain", POOL, &b0])?;
    drained(true)?;
    ctl(bin, &["undrain", POOL, &b0])?;
    drained(false)?;
    Ok(())
}

/// What to try, printed once the lab is up.
fn guide(demo: &Demo, bin: &Path, dir: &Path) -> String {
    let c = &demo.lab.client;
    let (listen, vip, admin) = (listen(), PLAN.vip_addr(), admin_url());
    let inside = admin_lab();
    let edge = bin.display();
    let (b0, ip0, source) = (backend_addr(0), PLAN.backend_ip(0), PLAN.edge_ip());
    let config = dir.join("edge.yaml");
    let log = dir.join("edge.log");
    let (config, log) = (config.display(), log.display());
    format!(
        r#"
edge is running in a lab of network namespaces ({TAG}-*), its XDP program attached natively on l0.

L4: the VIP {vip} is balanced in XDP (Maglev) over be1, be2, be3 by direct server return:
edge encapsulates each packet in IPIP, the backend's `edge decap --iface eth0 --source {source}`
takes the outer header off, and the backend answers the client straight across the segment.
  a new connection each time, landing on any backend:
    for i in 1 2 3 4 5 6; do ip netns exec {c} curl -si http://{vip}/ | grep -i x-backend; done
  the flows edge forwarded, by backend:
    curl -s {admin}/metrics | grep edge_l4_

L7: the listener {listen}, round robin over the backends' :{BACKEND_PORT}:
    ip netns exec {c} curl -i http://{listen}/
  from the denied source {DENIED} (dropped in XDP, times out):
    ip netns exec {c} curl --interface {DENIED} --connect-timeout 2 http://{listen}/

API gateway: /api needs an API key (header apikey) and allows {RATE} requests a second per consumer:
    ip netns exec {c} curl -i http://{listen}/api/hello                                  # 401
    ip netns exec {c} curl -i -H 'apikey: {API_KEY}' http://{listen}/api/hello   # 200
    ip netns exec {c} curl -s -o /dev/null -w '%{{http_code}}\n' -H 'apikey: {API_KEY}' 'http://{listen}/api/hello?n=[1-6]'   # 200 x{RATE}, then 429

Admin, from this host over the veth {HOST_IF} (inside the lab: http://{inside}):
  status page: {admin}/
    curl {admin}/api/status
    curl {admin}/metrics
    {edge} ctl --admin {admin} status
    {edge} ctl --admin {admin} backends
    {edge} ctl --admin {admin} drain {POOL} {b0}
    {edge} ctl --admin {admin} undrain {POOL} {b0}
    {edge} ctl --admin {admin} drain {SERVICE} {ip0}     # an L4 backend: no new flows
    {edge} ctl --admin {admin} undrain {SERVICE} {ip0}
    {edge} ctl --admin {admin} reload

configuration: {config}
edge log:      {log}

Ctrl-C tears it all down."#
    )
}

/// Brings the lab up; with `check_only`, checks it and tears it down,
/// otherwise waits for Ctrl-C.
pub fn run(bin: &Path, check_only: bool) -> Result<()> {
    crate::require_root("the demo lab")?;
    let dir = tempfile::tempdir()?;
    let mut demo = up(bin, dir.path())?;
    if let Err(e) = check(&mut demo, bin) {
        let log = demo.edge.log_text();
        let _ = demo.edge.stop(Duration::from_secs(15));
        forget(bin, &demo);
        return Err(e.context(format!("lab check; edge log:\n{log}")));
    }
    if check_only {
        demo.edge.stop(Duration::from_secs(15))?;
        forget(bin, &demo);
        println!("xtask: the demo lab answered as documented");
        return Ok(());
    }
    println!("{}", guide(&demo, bin, dir.path()));
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("\nxtask: tearing the lab down");
    let _ = demo.edge.stop(Duration::from_secs(15));
    forget(bin, &demo);
    Ok(())
}

/// `edge unload --config` for the lab's configuration once edge has
/// stopped: the drains it keeps for a next process (in /run/edge) and its
/// pins go, since the lab does not come back.
fn forget(bin: &Path, demo: &Demo) {
    let unloaded = Command::new("ip")
        .args(["netns", "exec", &demo.lab.edge])
        .arg(bin)
        .args(["unload", "--config"])
        .arg(&demo.config)
        .output();
    if let Ok(out) = unloaded
        && !out.status.success()
    {
        eprintln!(
            "xtask: edge unload --config {}: {}",
            demo.config.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}
