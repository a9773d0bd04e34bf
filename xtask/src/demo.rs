//! The demo lab of `cargo xtask run`: a client, edge with XDP attached in
//! native mode, and three small backends, each in its own network
//! namespace, so a newcomer sees edge work with one command and nothing on
//! the host changes.
//!
//! ```text
//! edgelab-client ── veth ── edgelab-edge ── bridge ── edgelab-be1/2/3
//!   10.77.1.2/.3       10.77.1.1 │ 10.77.2.1            10.77.2.11-13:8000
//! ```

use anyhow::{Context, Result, bail};
use edge_tests::{backend::Backend, edge::Edge, lab::Lab};
use std::{
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

const TAG: &str = "edgelab";
const CLIENT: &str = "10.77.1.2";
const DENIED: &str = "10.77.1.3";
const EDGE_IP: &str = "10.77.1.1";
const LISTEN: &str = "10.77.1.1:8080";
const ADMIN: &str = "10.77.1.1:9100";
const BACKENDS: [(&str, &str); 3] = [
    ("be1", "10.77.2.11:8000"),
    ("be2", "10.77.2.12:8000"),
    ("be3", "10.77.2.13:8000"),
];

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn config() -> String {
    let backends: String = BACKENDS
        .iter()
        .map(|(_, a)| format!("      - address: {a}\n"))
        .collect();
    format!(
        "# Written by `cargo xtask run` for its demo lab.\n\
         xdp:\n  interfaces:\n    - name: l0\n      mode: native\n  deny:\n    - {DENIED}/32\n\
         listeners:\n  - name: web\n    address: {LISTEN}\n    pool: demo\n\
         pools:\n  - name: demo\n    algorithm: round_robin\n    backends:\n{backends}\
         admin:\n  address: {ADMIN}\n\
         server:\n  threads: 2\n  grace_period_seconds: 0\n"
    )
}

struct Demo {
    // Field order is drop order: edge first, then backends, then namespaces.
    edge: Edge,
    _backends: Vec<Backend>,
    lab: Lab,
    client: String,
}

fn up(bin: &Path, dir: &Path) -> Result<Demo> {
    let mut lab = Lab::fixed(TAG)?;
    let client = lab.host("client")?;
    let edge_ns = lab.host("edge")?;
    lab.link(&client, "c0", &edge_ns, "l0")?;
    lab.addr(&client, "c0", &format!("{CLIENT}/24"))?;
    lab.addr(&client, "c0", &format!("{DENIED}/24"))?;
    lab.addr(&edge_ns, "l0", &format!("{EDGE_IP}/24"))?;
    lab.route(&client, "10.77.2.0/24", EDGE_IP)?;
    lab.bridge(&edge_ns, "br0")?;
    lab.addr(&edge_ns, "br0", "10.77.2.1/24")?;
    let mut backends = Vec::new();
    for (i, (name, addr)) in BACKENDS.iter().enumerate() {
        let ns = lab.host(name)?;
        let port = format!("p{i}");
        lab.link(&ns, "eth0", &edge_ns, &port)?;
        lab.enslave(&edge_ns, &port, "br0")?;
        let ip = addr.split(':').next().unwrap_or_default();
        lab.addr(&ns, "eth0", &format!("{ip}/24"))?;
        lab.route(&ns, "10.77.1.0/24", "10.77.2.1")?;
        backends.push(Backend::start(name, Some(&ns), addr.parse()?)?);
    }
    let config_path = dir.join("edge.yaml");
    std::fs::write(&config_path, config())?;
    // SAFETY: only the test helpers read EDGE_BIN, later, on this thread.
    unsafe { std::env::set_var("EDGE_BIN", bin) };
    let mut edge = Edge::start(Some(&edge_ns), &config_path)?;
    edge.wait_ready(Some(&client), ADMIN.parse()?, Duration::from_secs(30))?;
    Ok(Demo {
        edge,
        _backends: backends,
        lab,
        client,
    })
}

/// `curl` from the client namespace; returns its stdout.
fn curl(client: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", client, "curl", "-sS", "--max-time", "5"])
        .args(args)
        .output()
        .context("running curl in the client namespace")?;
    if !out.status.success() {
        bail!(
            "curl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks the lab answers like the README says: curl through edge reaches
/// every backend in turn, the denied source cannot connect, metrics count.
fn check(demo: &Demo) -> Result<()> {
    let url = format!("http://{LISTEN}/");
    let mut seen = Vec::new();
    for _ in 0..BACKENDS.len() {
        let head = curl(&demo.client, &["-D", "-", "-o", "/dev/null", &url])?;
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
    let want: Vec<String> = BACKENDS.iter().map(|(n, _)| n.to_string()).collect();
    if seen != want {
        bail!("round robin should reach each backend once, reached {seen:?}");
    }
    if curl(
        &demo.client,
        &["--interface", DENIED, "--connect-timeout", "1", &url],
    )
    .is_ok()
    {
        bail!("the denied source {DENIED} connected");
    }
    let metrics = curl(&demo.client, &[&format!("http://{ADMIN}/metrics")])?;
    for needle in [
        "edge_xdp_packets_total{class=\"l7\"}",
        "edge_xdp_packets_total{class=\"denied\"}",
        "edge_http_requests_total{listener=\"web\",pool=\"demo\",status_class=\"2xx\"} 3",
    ] {
        if !metrics.contains(needle) {
            bail!("metrics lack {needle}:\n{metrics}");
        }
    }
    if demo.lab.xdp_mode(Some(&format!("{TAG}-edge")), "l0")? != Some("native") {
        bail!("XDP is not attached natively on l0");
    }
    Ok(())
}

/// Brings the lab up; with `check_only`, checks it and tears it down,
/// otherwise waits for Ctrl-C.
pub fn run(bin: &Path, check_only: bool) -> Result<()> {
    crate::require_root("the demo lab")?;
    let dir = tempfile::tempdir()?;
    let mut demo = up(bin, dir.path())?;
    check(&demo).with_context(|| format!("lab check; edge log:\n{}", demo.edge.log_text()))?;
    if check_only {
        demo.edge.stop(Duration::from_secs(15))?;
        println!("xtask: the demo lab answered as documented");
        return Ok(());
    }
    let c = &demo.client;
    println!(
        "\nedge is running in a lab of network namespaces ({TAG}-*), XDP attached natively on l0.\n\
         \n  curl through edge (round robin over be1, be2, be3):\n    ip netns exec {c} curl -i http://{LISTEN}/\n\
         \n  from the denied source {DENIED} (dropped in XDP, times out):\n    ip netns exec {c} curl --interface {DENIED} --connect-timeout 2 http://{LISTEN}/\n\
         \n  Prometheus metrics:\n    ip netns exec {c} curl http://{ADMIN}/metrics\n\
         \n  configuration: {}\n  edge log:      {}\n\nCtrl-C tears it all down.",
        dir.path().join("edge.yaml").display(),
        dir.path().join("edge.log").display(),
    );
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
    Ok(())
}
