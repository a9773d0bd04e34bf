//! `cargo xtask run --hosts N`: the scale-out lab for a newcomer. A router
//! running BIRD spreads the VIP's flows by ECMP over N edge hosts, each
//! announcing the VIP by BGP through its own BIRD and balancing it in XDP
//! to three DSR backends (the lab of `edge_tests::ecmp`, with fixed,
//! readable namespace names). Ctrl-C tears it down.

use anyhow::{Context, Result, ensure};
use edge_tests::{
    ecmp::{self, EcmpLab, EcmpPlan, HostOptions},
    edge::Edge,
    http,
    lab::Lab,
    netns, wait,
};
use std::{
    collections::HashMap,
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

/// Namespace prefix: `edge-scale-client`, `edge-scale-router`, `edge-scale-h0`...
const TAG: &str = "edge-scale";
const BACKENDS: &[&str] = &["be1", "be2", "be3"];
const DEADLINE: Duration = Duration::from_secs(30);
/// New connections of the check: each host and backend must take some.
const CHECK_CONNECTIONS: usize = 60;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The running lab: edge on every host, stopped and unloaded when dropped
/// (before the lab's namespaces go).
struct Scale {
    bin: std::path::PathBuf,
    edges: Vec<Option<Edge>>,
    lab: EcmpLab,
}

impl Drop for Scale {
    fn drop(&mut self) {
        self.forget();
    }
}

impl Scale {
    /// Stops every edge and unloads its kernel side (the lab does not come
    /// back, so nothing is kept for a next process).
    fn forget(&mut self) {
        let bin = self.bin.clone();
        for (i, e) in self.edges.iter_mut().enumerate() {
            let Some(mut e) = e.take() else { continue };
            let _ = e.stop(Duration::from_secs(15));
            let out = Command::new("ip")
                .args(["netns", "exec", &self.lab.hosts[i]])
                .arg(&bin)
                .args(["unload", "--config"])
                .arg(self.lab.host_config(i))
                .output();
            if let Ok(out) = out
                && !out.status.success()
            {
                eprintln!(
                    "xtask: edge unload on host {i}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
}

fn up(bin: &Path, hosts: usize, lab: Lab) -> Result<Scale> {
    let plan = EcmpPlan {
        hosts,
        backends: BACKENDS,
    };
    let lab = EcmpLab::build_in(lab, plan, bin)?;
    let mut scale = Scale {
        bin: bin.to_path_buf(),
        edges: Vec::new(),
        lab,
    };
    let opts = HostOptions::all(&plan);
    for i in 0..hosts {
        let config = scale.lab.write_config(i, &opts)?;
        // Kept before it is waited on: a start that fails is still
        // stopped and unloaded with the lab.
        scale.edges.push(Some(Edge::start_bin(
            bin,
            Some(&scale.lab.hosts[i]),
            &config,
        )?));
        if let Some(Some(e)) = scale.edges.last_mut() {
            e.wait_ready(Some(&scale.lab.client), ecmp::admin(i), DEADLINE)
                .with_context(|| format!("edge on host {i}"))?;
        }
    }
    let all: Vec<usize> = (0..hosts).collect();
    scale
        .lab
        .wait_paths(&all, DEADLINE)
        .context("waiting for every host's announcement")?;
    Ok(scale)
}

/// New connections reach every host and every backend.
fn check(scale: &Scale) -> Result<()> {
    let mut per_backend: HashMap<String, usize> = HashMap::new();
    for n in 0..CHECK_CONNECTIONS {
        let r = netns::run_in(&scale.lab.client, || http::get(ecmp::vip_addr(), "/"))
            .with_context(|| format!("new connection {n} to the VIP"))?;
        let b = r.header("x-backend").unwrap_or("?").to_string();
        *per_backend.entry(b).or_default() += 1;
    }
    for name in BACKENDS {
        ensure!(
            per_backend.get(*name).copied().unwrap_or(0) > 0,
            "{name} took none of {CHECK_CONNECTIONS} connections: {per_backend:?}"
        );
    }
    for i in 0..scale.edges.len() {
        let admin = ecmp::admin(i);
        // The kernel's counters reach the metrics once a second.
        wait::until(&format!("host {i} to count new flows"), DEADLINE, || {
            let m = netns::run_in(&scale.lab.client, move || http::get(admin, "/metrics"))?.text();
            let flows: f64 = m
                .lines()
                .filter(|l| l.starts_with("edge_l4_new_flows_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            Ok((flows > 0.0).then_some(()))
        })?;
    }
    println!("xtask: {CHECK_CONNECTIONS} new connections over the hosts: {per_backend:?}");
    Ok(())
}

fn guide(scale: &Scale, bin: &Path) -> String {
    let lab = &scale.lab;
    let bin = bin.display();
    let mut hosts = String::new();
    for (i, ns) in lab.hosts.iter().enumerate() {
        hosts.push_str(&format!(
            "  host {i}: namespace {ns}, {ip}, admin http://{admin}/ (from the client), \
             BIRD socket {sock}\n",
            ip = ecmp::host_ip(i),
            admin = ecmp::admin(i),
            sock = lab.host_bird_socket(i).display(),
        ));
    }
    format!(
        "\nThe scale-out lab is up: a router (BIRD, ECMP) in front of {n} edge hosts, each \
         announcing {vip} by BGP and balancing it in XDP to {backends} DSR backends.\n\
         {hosts}\n\
         Try:\n\
         \x20 ip netns exec {client} curl -s http://{vip}/          # a backend answers (X-Backend)\n\
         \x20 ip -n {router} route show {vip}                       # one next hop per host\n\
         \x20 birdc -s {sock0} show route all                       # what host 0 announces\n\
         \x20 ip netns exec {client} {bin} ctl --admin http://{admin0} drain-host --deadline 30s\n\
         \x20                                                        # host 0 withdraws, its flows move, it stops\n\
         Files (configurations, BIRD files and logs): {dir}\n\
         Ctrl-C tears the lab down.\n",
        n = lab.hosts.len(),
        vip = ecmp::VIP,
        backends = BACKENDS.len(),
        client = lab.client,
        router = lab.router,
        sock0 = lab.host_bird_socket(0).display(),
        admin0 = ecmp::admin(0),
        dir = lab.dir().display(),
    )
}

/// Brings the lab up with `hosts` edge hosts; with `check_only`, checks
/// that flows reach every host and backend and tears it down, otherwise
/// waits for Ctrl-C.
pub fn run(bin: &Path, hosts: usize, check_only: bool) -> Result<()> {
    crate::require_root("the scale-out lab")?;
    ensure!((1..=9).contains(&hosts), "--hosts takes 1 to 9");
    crate::toolchain::ensure_packages(&["bird2", "ethtool", "iproute2"])?;
    // Ctrl-C from the start: the bring-up takes seconds, and a lab
    // interrupted then is torn down like one that ran. (Not for the check
    // inside `cargo xtask test`, which Ctrl-C must still stop.)
    if !check_only {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        }
    }
    // The check gets namespaces of its own, so that `cargo xtask test`
    // never deletes a lab a developer has up under the fixed names.
    let lab = if check_only {
        Lab::new()?
    } else {
        Lab::fixed(TAG)?
    };
    let mut scale = up(bin, hosts, lab)?;
    if STOP.load(Ordering::SeqCst) {
        println!("\nxtask: interrupted: tearing the lab down");
        return Ok(());
    }
    if let Err(e) = check(&scale) {
        let logs: String = scale.edges.iter().flatten().map(Edge::log_text).collect();
        scale.forget();
        return Err(e.context(format!("lab check; edge logs:\n{logs}")));
    }
    if check_only {
        scale.forget();
        println!("xtask: the scale-out lab answered as documented");
        return Ok(());
    }
    println!("{}", guide(&scale, bin));
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("\nxtask: tearing the lab down");
    scale.forget();
    Ok(())
}
