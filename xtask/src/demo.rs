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
use edge_tests::{
    edge::Edge,
    lab::{Lab, output},
    topology::{self, EDGE_IFACE, L7Lab, Plan},
};
use std::{
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

const TAG: &str = "edgelab";
const PLAN: Plan<'static> = Plan {
    client_net: "10.77.1",
    backend_net: "10.77.2",
    backends: &["be1", "be2", "be3"],
};
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Demo {
    // Field order is drop order: edge stops before the lab goes.
    edge: Edge,
    lab: L7Lab,
}

fn up(bin: &Path, dir: &Path) -> Result<Demo> {
    let lab = topology::build(Lab::fixed(TAG)?, &PLAN)?;
    let config_path = dir.join("edge.yaml");
    let config = format!(
        "# Written by `cargo xtask run` for its demo lab.\n{}",
        PLAN.edge_config("demo", 2, &[])
    );
    std::fs::write(&config_path, config)?;
    let mut edge = Edge::start_bin(bin, Some(&lab.edge), &config_path)?;
    edge.wait_ready(Some(&lab.client), PLAN.admin(), Duration::from_secs(30))?;
    Ok(Demo { edge, lab })
}

/// `curl` from the client namespace; returns its stdout.
fn curl(client: &str, args: &[&str]) -> Result<String> {
    output(
        Command::new("ip")
            .args(["netns", "exec", client, "curl", "-sS", "--max-time", "5"])
            .args(args),
    )
}

/// Checks the lab answers like the README says: curl through edge reaches
/// every backend in turn, the denied source cannot connect, metrics count.
fn check(demo: &Demo) -> Result<()> {
    let url = format!("http://{}/", PLAN.listen());
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
    let denied = PLAN.second_client_ip().to_string();
    let args = ["--interface", &denied, "--connect-timeout", "1", &url];
    if curl(&demo.lab.client, &args).is_ok() {
        bail!("the denied source {denied} connected");
    }
    let metrics = curl(
        &demo.lab.client,
        &[&format!("http://{}/metrics", PLAN.admin())],
    )?;
    for needle in [
        "edge_xdp_packets_total{class=\"l7\"}",
        "edge_xdp_packets_total{class=\"denied\"}",
        "edge_http_requests_total{listener=\"web\",route=\"default\",pool=\"demo\",status_class=\"2xx\"} 3",
    ] {
        if !metrics.contains(needle) {
            bail!("metrics lack {needle}:\n{metrics}");
        }
    }
    if demo.lab.lab.xdp_mode(Some(&demo.lab.edge), EDGE_IFACE)? != Some("native") {
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
    let c = &demo.lab.client;
    let denied = PLAN.second_client_ip();
    let (listen, admin) = (PLAN.listen(), PLAN.admin());
    println!(
        "\nedge is running in a lab of network namespaces ({TAG}-*), XDP attached natively on l0.\n\
         \n  curl through edge (round robin over be1, be2, be3):\n    ip netns exec {c} curl -i http://{listen}/\n\
         \n  from the denied source {denied} (dropped in XDP, times out):\n    ip netns exec {c} curl --interface {denied} --connect-timeout 2 http://{listen}/\n\
         \n  Prometheus metrics:\n    ip netns exec {c} curl http://{admin}/metrics\n\
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
