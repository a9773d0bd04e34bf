//! The L4 fast path in a real network lab (`edge_tests::dsr`): edge's XDP
//! program, attached natively, balances TCP connections to a VIP over three
//! backends with Maglev, encapsulating in IPIP; the backends decapsulate
//! with `edge decap`, own the VIP on `lo` and answer the client directly.
//!
//! Checked: real HTTP over TCP through DSR; new connections spread over the
//! backends; when one backend's server stops, the health check takes it
//! out, new connections all succeed on the others, and keep-alive
//! connections opened before to the survivors carry on, on the same
//! backend; when it comes back, the health check returns it to service.
//! The same over IPv6 (IP6IP6): connections complete and spread.

use anyhow::{Context, Result, bail, ensure};
use edge_tests::{
    dsr::{self, DsrLab, DsrPlan, EDGE_IFACE, HealthCheck},
    edge::{self, Edge},
    http::{self, KeptAlive},
    netns,
    process::{Adopted, upgraded_pid},
    wait,
};
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

const PLAN: DsrPlan<'static> = DsrPlan {
    client_net: "10.77.1",
    backend_net: "10.77.2",
    vip: Ipv4Addr::new(10, 77, 0, 100),
    port: 80,
    backends: &["be1", "be2", "be3"],
    net6: Some("fd00:77"),
};
const HEALTH: HealthCheck<'static> = HealthCheck {
    interval: "200ms",
    timeout: "200ms",
    rise: 2,
    fall: 2,
};
/// New connections whose spread is checked. Each backend's count is
/// binomial (n = 120, p = 1/3: mean 40, σ ≈ 5.2); accepting 20..=60
/// (±3.9σ) makes a false failure rarer than 1 in 3000 runs.
const SPREAD_CONNECTIONS: usize = 120;
const SPREAD_MIN: usize = 20;
const SPREAD_MAX: usize = 60;
/// New connections after a backend is removed: all must succeed, none on
/// the removed backend, each survivor with at least a quarter.
const AFTER_CONNECTIONS: usize = 60;
/// Upper bound on connections opened to get a kept-alive one per backend.
const KEEPALIVE_ATTEMPTS: usize = 100;
const STOPPED: usize = 1;
/// New connections over IPv6: each backend's count is binomial (n = 60,
/// p = 1/3: mean 20, σ ≈ 3.7); at least 5 is 4σ below the mean.
const V6_CONNECTIONS: usize = 60;
const V6_MIN: usize = 5;
const DEADLINE: Duration = Duration::from_secs(20);

/// One request on a new connection to `vip`; the backend that answered.
fn one_request(client: &str, vip: SocketAddr) -> Result<String> {
    let resp = netns::run_in(client, move || http::get(vip, "/"))?;
    if resp.status() != Some(200) {
        bail!("status {:?}: {resp:?}", resp.status());
    }
    resp.header("x-backend")
        .map(str::to_string)
        .context("no X-Backend header")
}

/// `n` new connections to `vip`; how many each backend answered.
fn spread(client: &str, vip: SocketAddr, n: usize) -> Result<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    for i in 0..n {
        let b = one_request(client, vip).with_context(|| format!("new connection {i} to {vip}"))?;
        *counts.entry(b).or_insert(0) += 1;
    }
    Ok(counts)
}

fn scrape(client: &str) -> Result<String> {
    let admin = PLAN.admin();
    Ok(netns::run_in(client, move || http::get(admin, "/metrics"))?.text())
}

fn generation(metrics: &str) -> Option<f64> {
    dsr::sample(metrics, "edge_l4_maglev_generation{service=\"web\"}")
}

/// Waits until edge reports every backend of `service` (at `ips`) healthy.
fn wait_all_healthy(client: &str, service: &str, ips: &[IpAddr]) -> Result<()> {
    wait::until(
        &format!("every backend of {service} to be healthy"),
        DEADLINE,
        || {
            let m = scrape(client)?;
            let all = ips
                .iter()
                .all(|ip| dsr::backend_healthy(&m, service, *ip) == Some(true));
            Ok(all.then_some(()))
        },
    )
}

/// Waits until edge reports backend `i` healthy (or not) and, when
/// `after_generation` is given, has published a Maglev table newer than
/// it: the health gauge may change before the new table is live.
fn wait_health(client: &str, i: usize, healthy: bool, after_generation: Option<f64>) -> Result<()> {
    let ip = PLAN.backend_ip(i);
    wait::until(
        &format!(
            "edge_l4_backend_healthy of {ip} to be {} and the table republished",
            u8::from(healthy)
        ),
        DEADLINE,
        || {
            let m = scrape(client)?;
            let health = dsr::backend_healthy(&m, "web", ip) == Some(healthy);
            let table = match after_generation {
                Some(g) => generation(&m).is_some_and(|now| now > g),
                None => true,
            };
            Ok((health && table).then_some(()))
        },
    )
}

#[test]
fn dsr_balances_removes_a_dead_backend_and_keeps_live_connections() -> Result<()> {
    let bin = edge::binary()?;
    let mut lab = DsrLab::build(PLAN)?;
    lab.start_decaps(&bin)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("edge.yaml");
    std::fs::write(&config, PLAN.edge_config(Some(HEALTH)))?;
    // Declared after the lab: dropped (stopped) before it.
    let mut edge = Edge::start_bin(&bin, Some(&lab.edge), &config)?;
    let client = lab.client.clone();
    let result = (|| -> Result<()> {
        edge.wait_ready(Some(&client), PLAN.admin(), DEADLINE)?;
        ensure!(
            lab.lab.xdp_mode(Some(&lab.edge), EDGE_IFACE)? == Some("native"),
            "edge's XDP program is not attached natively on {EDGE_IFACE}"
        );
        let ips: Vec<IpAddr> = (0..PLAN.backends.len())
            .map(|i| PLAN.backend_ip(i))
            .collect();
        wait_all_healthy(&client, "web", &ips)?;

        if let Ok(secs) = std::env::var("HOLD") {
            std::thread::sleep(Duration::from_secs(secs.parse().unwrap_or(60)));
        }
        // Real TCP + HTTP through the XDP path and back directly.
        let counts = spread(&client, PLAN.vip_addr(), SPREAD_CONNECTIONS)?;
        for name in PLAN.backends {
            let n = counts.get(*name).copied().unwrap_or(0);
            ensure!(
                (SPREAD_MIN..=SPREAD_MAX).contains(&n),
                "{name} answered {n} of {SPREAD_CONNECTIONS} new connections, \
                 expected {SPREAD_MIN}..={SPREAD_MAX}: {counts:?}"
            );
        }
        // edge copies the kernel's counters into its metrics periodically.
        wait::until(
            "edge_l4_new_flows_total to count every connection",
            DEADLINE,
            || {
                let flows: f64 = scrape(&client)?
                    .lines()
                    .filter(|l| l.starts_with("edge_l4_new_flows_total{service=\"web\""))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum();
                Ok((flows >= SPREAD_CONNECTIONS as f64).then_some(()))
            },
        )?;

        // Keep-alive connections, at least one per backend.
        let mut kept: Vec<KeptAlive> = Vec::new();
        for _ in 0..KEEPALIVE_ATTEMPTS {
            if PLAN
                .backends
                .iter()
                .all(|b| kept.iter().any(|k| k.backend == *b))
            {
                break;
            }
            kept.push(KeptAlive::open(&client, PLAN.vip_addr())?);
        }
        for b in PLAN.backends {
            ensure!(
                kept.iter().any(|k| k.backend == *b),
                "no kept-alive connection reached {b} in {KEEPALIVE_ATTEMPTS} attempts"
            );
        }

        // A backend's server dies; its decapsulator and host stay up.
        let dead = PLAN.backends[STOPPED];
        let before = generation(&scrape(&client)?).context("no Maglev generation")?;
        lab.stop_backend(STOPPED);
        wait_health(&client, STOPPED, false, Some(before))?;
        let counts = spread(&client, PLAN.vip_addr(), AFTER_CONNECTIONS)
            .context("new connections after the health check removed a backend")?;
        ensure!(!counts.contains_key(dead), "{dead} is out: {counts:?}");
        for (i, name) in PLAN.backends.iter().enumerate() {
            if i != STOPPED {
                let n = counts.get(*name).copied().unwrap_or(0);
                ensure!(
                    n >= AFTER_CONNECTIONS / 4,
                    "{name} answered {n} of {AFTER_CONNECTIONS}: {counts:?}"
                );
            }
        }
        // Connections to the survivors live on, on the same backend.
        for k in kept.iter_mut().filter(|k| k.backend != dead) {
            let before = k.backend.clone();
            let now = k
                .request()
                .with_context(|| format!("kept-alive connection to {before}"))?;
            ensure!(
                now == before,
                "a kept-alive connection moved from {before} to {now}"
            );
        }

        // It comes back: the health check returns it to service.
        let before = generation(&scrape(&client)?).context("no Maglev generation")?;
        lab.restart_backend(STOPPED)?;
        wait_health(&client, STOPPED, true, Some(before))?;
        let counts = spread(&client, PLAN.vip_addr(), SPREAD_CONNECTIONS)?;
        ensure!(
            counts.get(dead).copied().unwrap_or(0) > 0,
            "{dead} is back in service: {counts:?}"
        );
        lab.check_decaps()?;

        let code = edge.stop(Duration::from_secs(15))?;
        ensure!(code == Some(0), "edge exited with {code:?}");
        ensure!(
            lab.lab.xdp_mode(Some(&lab.edge), EDGE_IFACE)?.is_none(),
            "XDP still attached after edge exited"
        );
        Ok(())
    })();
    result.with_context(|| format!("edge log:\n{}", edge.log_text()))
}

#[test]
fn dsr_over_ipv6_with_ip6ip6() -> Result<()> {
    let bin = edge::binary()?;
    let mut lab = DsrLab::build(PLAN)?;
    lab.start_decaps(&bin)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("edge.yaml");
    std::fs::write(&config, PLAN.edge_config(Some(HEALTH)))?;
    let mut edge = Edge::start_bin(&bin, Some(&lab.edge), &config)?;
    let client = lab.client.clone();
    let result = (|| -> Result<()> {
        edge.wait_ready(Some(&client), PLAN.admin(), DEADLINE)?;
        let ips: Vec<IpAddr> = (0..PLAN.backends.len())
            .filter_map(|i| PLAN.backend_ip6(i))
            .collect();
        wait_all_healthy(&client, "web6", &ips)?;
        let vip6 = PLAN.vip6_addr().context("the plan has no IPv6")?;
        let counts = spread(&client, vip6, V6_CONNECTIONS)?;
        for name in PLAN.backends {
            let n = counts.get(*name).copied().unwrap_or(0);
            ensure!(
                n >= V6_MIN,
                "{name} answered {n} of {V6_CONNECTIONS} IPv6 connections: {counts:?}"
            );
        }
        lab.check_decaps()?;
        Ok(())
    })();
    result.with_context(|| format!("edge log:\n{}", edge.log_text()))
}

/// Asks the edge running `config` to reload it; fails with edge's answer.
fn reload(config: &std::path::Path) -> Result<()> {
    let out = std::process::Command::new(edge::binary()?)
        .arg("reload")
        .arg("--config")
        .arg(config)
        .output()?;
    ensure!(
        out.status.success(),
        "edge reload: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The IPv4 service's backends in `config` as `(backend index, weight)`.
fn with_backends(plan: &DsrPlan<'_>, backends: &[(usize, u32)]) -> String {
    let full = plan.edge_config(Some(HEALTH));
    let all: String = (0..plan.backends.len())
        .map(|i| format!("        - address: {}\n", plan.backend_ip(i)))
        .collect();
    let chosen: String = backends
        .iter()
        .map(|(i, w)| {
            format!(
                "        - {{address: {}, weight: {w}}}\n",
                plan.backend_ip(*i)
            )
        })
        .collect();
    assert!(full.contains(&all), "the lab's configuration changed shape");
    full.replacen(&all, &chosen, 1)
}

/// New connections, one after another, until `stop`: each must succeed.
fn stream_of_new_connections(
    client: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut ok, mut failures) = (0, Vec::new());
        // Bounded by the flag and by count.
        for i in 0..200_000 {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            match one_request(&client, PLAN.vip_addr()) {
                Ok(_) => ok += 1,
                Err(e) => failures.push(format!("new connection {i}: {e:#}")),
            }
        }
        (ok, failures)
    })
}

#[test]
fn reloads_add_drain_and_remove_backends_without_breaking_a_flow() -> Result<()> {
    one_cpu()?;
    let bin = edge::binary()?;
    let mut lab = DsrLab::build(PLAN)?;
    lab.start_decaps(&bin)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("edge.yaml");
    std::fs::write(&config, with_backends(&PLAN, &[(0, 1), (1, 1)]))?;
    let mut edge = Edge::start_bin(&bin, Some(&lab.edge), &config)?;
    let client = lab.client.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut stream = None;
    let result = (|| -> Result<()> {
        edge.wait_ready(Some(&client), PLAN.admin(), DEADLINE)?;
        wait_all_healthy(&client, "web", &[PLAN.backend_ip(0), PLAN.backend_ip(1)])?;
        // Long-lived connections to be1 and be2, opened before any change.
        let mut kept: Vec<KeptAlive> = Vec::new();
        for _ in 0..KEEPALIVE_ATTEMPTS {
            if ["be1", "be2"]
                .iter()
                .all(|b| kept.iter().any(|k| k.backend == *b))
            {
                break;
            }
            kept.push(KeptAlive::open(&client, PLAN.vip_addr())?);
        }
        ensure!(
            ["be1", "be2"]
                .iter()
                .all(|b| kept.iter().any(|k| k.backend == *b)),
            "no kept-alive connection to each of be1 and be2"
        );
        stream = Some(stream_of_new_connections(client.clone(), stop.clone()));
        let still_there = |kept: &mut Vec<KeptAlive>, step: &str| -> Result<()> {
            for k in kept.iter_mut() {
                let before = k.backend.clone();
                let now = k
                    .request()
                    .with_context(|| format!("{step}: the connection to {before}"))?;
                ensure!(
                    now == before,
                    "{step}: a connection moved from {before} to {now}"
                );
            }
            Ok(())
        };

        // (1) be3 added.
        std::fs::write(&config, with_backends(&PLAN, &[(0, 1), (1, 1), (2, 1)]))?;
        reload(&config)?;
        let counts = spread(&client, PLAN.vip_addr(), AFTER_CONNECTIONS)?;
        ensure!(
            counts.get("be3").copied().unwrap_or(0) > 0,
            "be3 was added: {counts:?}"
        );
        still_there(&mut kept, "after adding be3")?;

        // (2) be1 drained (weight 0): no new flows, its flows carry on.
        std::fs::write(&config, with_backends(&PLAN, &[(0, 0), (1, 1), (2, 1)]))?;
        reload(&config)?;
        let counts = spread(&client, PLAN.vip_addr(), AFTER_CONNECTIONS)?;
        ensure!(!counts.contains_key("be1"), "be1 is drained: {counts:?}");
        still_there(&mut kept, "after draining be1")?;

        // (3) be2 removed: no new flows, its flows carry on.
        std::fs::write(&config, with_backends(&PLAN, &[(0, 0), (2, 1)]))?;
        reload(&config)?;
        let counts = spread(&client, PLAN.vip_addr(), AFTER_CONNECTIONS)?;
        ensure!(
            counts.keys().all(|b| b == "be3"),
            "only be3 takes new flows: {counts:?}"
        );
        still_there(&mut kept, "after removing be2")?;

        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failures) = stream
            .take()
            .context("no connection stream")?
            .join()
            .map_err(|_| anyhow::anyhow!("the connection stream panicked"))?;
        eprintln!(
            "new connections during the reloads: {ok} succeeded, {} failed",
            failures.len()
        );
        ensure!(
            failures.is_empty(),
            "{} of {} failed: {failures:?}",
            failures.len(),
            ok + failures.len()
        );
        ensure!(ok > 0, "no new connection was made during the reloads");
        lab.check_decaps()?;
        Ok(())
    })();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(s) = stream {
        let _ = s.join();
    }
    result.with_context(|| format!("edge log:\n{}", edge.log_text()))
}

/// A bpffs mounted for one test (edge pins there, so its pins outlive the
/// private mount namespace `ip netns exec` gives each edge); unmounted,
/// which also drops whatever is still pinned, when dropped.
struct Bpffs {
    dir: tempfile::TempDir,
}

impl Bpffs {
    fn mount() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(dir.path())
            .status()?;
        ensure!(
            status.success(),
            "mounting bpffs on {}",
            dir.path().display()
        );
        Ok(Self { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Keeps this thread, and the threads it starts from now on (the lab's
/// backends, the clients), on CPU 0. The connection table is per CPU, as
/// Katran's is: a flow must keep to one CPU, which a NIC's RSS does and a
/// veth does not (each packet is handled on the CPU that sent it). On one
/// CPU the whole path of a test's packets behaves as with RSS.
fn one_cpu() -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it, and
    // sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    ensure!(
        rc == 0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// The lab's configuration, health-checked, pinning under `bpffs`.
fn pinned_config(bpffs: &Bpffs) -> Result<String> {
    let text = PLAN.edge_config(Some(HEALTH));
    ensure!(
        text.starts_with("xdp:\n"),
        "the lab's configuration changed shape"
    );
    Ok(text.replacen(
        "xdp:\n",
        &format!("xdp:\n  bpffs: {}\n", bpffs.path().display()),
        1,
    ))
}

/// Stops edge with `signal` and waits for it to exit.
fn stop_with(edge: &mut Edge, signal: libc::c_int) -> Result<()> {
    let pid = edge.pid().context("edge is not running")?;
    // SAFETY: kill(2) on the PID of the edge this test started and has not
    // reaped.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
    edge.wait_exit(Duration::from_secs(15))?;
    Ok(())
}

#[test]
fn restarts_and_upgrades_keep_every_flow_and_unload_removes_what_is_pinned() -> Result<()> {
    one_cpu()?;
    let bin = edge::binary()?;
    let mut lab = DsrLab::build(PLAN)?;
    lab.start_decaps(&bin)?;
    let bpffs = Bpffs::mount()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("edge.yaml");
    std::fs::write(&config, pinned_config(&bpffs)?)?;
    let mut edge = Edge::start_bin(&bin, Some(&lab.edge), &config)?;
    let client = lab.client.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut stream = None;
    let mut logs = String::new();
    let result = (|| -> Result<()> {
        edge.wait_ready(Some(&client), PLAN.admin(), DEADLINE)?;
        let ips: Vec<IpAddr> = (0..PLAN.backends.len())
            .map(|i| PLAN.backend_ip(i))
            .collect();
        wait_all_healthy(&client, "web", &ips)?;
        let mut kept: Vec<KeptAlive> = Vec::new();
        for _ in 0..KEEPALIVE_ATTEMPTS {
            if PLAN
                .backends
                .iter()
                .all(|b| kept.iter().any(|k| k.backend == *b))
            {
                break;
            }
            kept.push(KeptAlive::open(&client, PLAN.vip_addr())?);
        }
        ensure!(
            PLAN.backends
                .iter()
                .all(|b| kept.iter().any(|k| k.backend == *b)),
            "no kept-alive connection to each backend"
        );
        stream = Some(stream_of_new_connections(client.clone(), stop.clone()));
        for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGKILL, "SIGKILL")] {
            stop_with(&mut edge, signal)?;
            logs.push_str(&edge.log_text());
            ensure!(
                lab.lab.xdp_mode(Some(&lab.edge), EDGE_IFACE)?.is_some(),
                "XDP left {EDGE_IFACE} when edge exited ({name})"
            );
            // With no daemon at all, the kernel keeps forwarding.
            for k in kept.iter_mut() {
                let before = k.backend.clone();
                let now = k.request().with_context(|| {
                    format!("the connection to {before} while edge is down ({name})")
                })?;
                ensure!(
                    now == before,
                    "{name}: a connection moved from {before} to {now}"
                );
            }
            edge = Edge::start_bin(&bin, Some(&lab.edge), &config)?;
            edge.wait_ready(Some(&client), PLAN.admin(), DEADLINE)?;
            let log = edge.log_text();
            ensure!(
                log.contains("adopted the pinned XDP maps")
                    && log.contains("replaced in place on the pinned link"),
                "the new edge did not adopt what was pinned ({name}):\n{log}"
            );
            for k in kept.iter_mut() {
                let before = k.backend.clone();
                let now = k.request().with_context(|| {
                    format!("the connection to {before} after the restart ({name})")
                })?;
                ensure!(
                    now == before,
                    "{name}: a connection moved from {before} to {now}"
                );
            }
            let counts = spread(&client, PLAN.vip_addr(), AFTER_CONNECTIONS)?;
            ensure!(
                counts.len() == PLAN.backends.len(),
                "after {name}: {counts:?}"
            );
        }
        // (c) a graceful upgrade, run where edge runs: the new process
        // adopts the maps and replaces the program in place; the old one
        // drains and exits.
        let log = dir.path().join("upgrade.log");
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &lab.edge])
            .arg(&bin)
            .args(["upgrade", "--config"])
            .arg(&config)
            .arg("--log")
            .arg(&log)
            .output()?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let new = Adopted(upgraded_pid(&said).with_context(|| format!("no PID in: {said}"))?);
        ensure!(out.status.success(), "edge upgrade: {said}");
        let code = edge.wait_exit(Duration::from_secs(30))?;
        ensure!(code == Some(0), "the old edge exited with {code:?}");
        let upgraded = std::fs::read_to_string(&log)?;
        logs.push_str(&upgraded);
        ensure!(
            upgraded.contains("adopted the pinned XDP maps")
                && upgraded.contains("replaced in place on the pinned link"),
            "the upgraded edge did not adopt what was pinned:\n{upgraded}"
        );
        for k in kept.iter_mut() {
            let before = k.backend.clone();
            let now = k
                .request()
                .with_context(|| format!("the connection to {before} after the upgrade"))?;
            ensure!(
                now == before,
                "upgrade: a connection moved from {before} to {now}"
            );
        }
        let counts = spread(&client, PLAN.vip_addr(), AFTER_CONNECTIONS)?;
        ensure!(
            counts.len() == PLAN.backends.len(),
            "after the upgrade: {counts:?}"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failures) = stream
            .take()
            .context("no connection stream")?
            .join()
            .map_err(|_| anyhow::anyhow!("the connection stream panicked"))?;
        eprintln!(
            "new connections across the restarts and the upgrade: {ok} succeeded, {} failed",
            failures.len()
        );
        ensure!(ok > 0, "no new connection was made");
        ensure!(
            failures.is_empty(),
            "{} of {} failed: {failures:?}",
            failures.len(),
            ok + failures.len()
        );

        // edge unload --config removes the program and the maps; the new
        // process goes first (SIGTERM: it leaves what is pinned).
        drop(new);
        let out = std::process::Command::new(&bin)
            .args(["unload", "--config"])
            .arg(&config)
            .output()?;
        ensure!(
            out.status.success(),
            "edge unload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            lab.lab.xdp_mode(Some(&lab.edge), EDGE_IFACE)?.is_none(),
            "XDP still attached after edge unload"
        );
        ensure!(
            !bpffs.path().join("edge").exists(),
            "edge unload left pins under {}",
            bpffs.path().display()
        );
        lab.check_decaps()?;
        Ok(())
    })();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(s) = stream {
        let _ = s.join();
    }
    logs.push_str(&edge.log_text());
    if let Ok(upgraded) = std::fs::read_to_string(dir.path().join("upgrade.log")) {
        logs.push_str("\n--- the upgraded edge ---\n");
        logs.push_str(&upgraded);
    }
    // Whatever happened, nothing stays pinned once the mount goes; the
    // program leaves the interface with it.
    drop(edge);
    drop(bpffs);
    result.with_context(|| format!("edge logs:\n{logs}"))
}

#[test]
fn source_hashed_flows_stay_put_when_the_table_changes() -> Result<()> {
    one_cpu()?;
    let bin = edge::binary()?;
    let mut lab = DsrLab::build(PLAN)?;
    lab.start_decaps(&bin)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("edge.yaml");
    // The IPv4 service hashes the client's address only: every connection
    // of the one client goes to one backend.
    let source_hashed = |backends: &[(usize, u32)]| {
        let text = with_backends(&PLAN, backends);
        assert!(
            text.contains("      protocol: tcp\n"),
            "the lab's configuration changed shape"
        );
        text.replacen(
            "      protocol: tcp\n",
            "      protocol: tcp\n      hash: source_ip\n",
            1,
        )
    };
    std::fs::write(&config, source_hashed(&[(0, 1), (1, 1), (2, 1)]))?;
    let mut edge = Edge::start_bin(&bin, Some(&lab.edge), &config)?;
    let client = lab.client.clone();
    let result = (|| -> Result<()> {
        edge.wait_ready(Some(&client), PLAN.admin(), DEADLINE)?;
        let ips: Vec<IpAddr> = (0..PLAN.backends.len())
            .map(|i| PLAN.backend_ip(i))
            .collect();
        wait_all_healthy(&client, "web", &ips)?;
        let mut kept: Vec<KeptAlive> = (0..4)
            .map(|_| KeptAlive::open(&client, PLAN.vip_addr()))
            .collect::<Result<_>>()?;
        let owner = kept[0].backend.clone();
        ensure!(
            kept.iter().all(|k| k.backend == owner),
            "source hashing sent one client to several backends"
        );
        // The client's backend is drained: its new connections go
        // elsewhere, its established ones stay.
        let index = PLAN
            .backends
            .iter()
            .position(|b| *b == owner)
            .context("an unknown backend")?;
        let weights: Vec<(usize, u32)> = (0..PLAN.backends.len())
            .map(|i| (i, u32::from(i != index)))
            .collect();
        std::fs::write(&config, source_hashed(&weights))?;
        reload(&config)?;
        let moved = one_request(&client, PLAN.vip_addr())?;
        ensure!(
            moved != owner,
            "a new connection still went to the drained {owner}"
        );
        for k in kept.iter_mut() {
            let now = k
                .request()
                .context("a connection of the client after the drain")?;
            ensure!(
                now == owner,
                "an established flow moved from {owner} to {now}"
            );
        }
        // A new connection opened now stays on the new backend too.
        let mut after = KeptAlive::open(&client, PLAN.vip_addr())?;
        ensure!(after.backend == moved, "the client's new flows split");
        ensure!(after.request()? == moved);
        for k in kept.iter_mut() {
            ensure!(
                k.request()? == owner,
                "an established flow moved after a new SYN"
            );
        }
        lab.check_decaps()?;
        Ok(())
    })();
    result.with_context(|| format!("edge log:\n{}", edge.log_text()))
}

#[test]
fn a_restart_keeps_a_down_backend_down() -> Result<()> {
    one_cpu()?;
    let bin = edge::binary()?;
    let mut lab = DsrLab::build(PLAN)?;
    lab.start_decaps(&bin)?;
    let bpffs = Bpffs::mount()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("edge.yaml");
    std::fs::write(&config, pinned_config(&bpffs)?)?;
    let mut edge = Edge::start_bin(&bin, Some(&lab.edge), &config)?;
    let client = lab.client.clone();
    let result = (|| -> Result<()> {
        edge.wait_ready(Some(&client), PLAN.admin(), DEADLINE)?;
        let ips: Vec<IpAddr> = (0..PLAN.backends.len())
            .map(|i| PLAN.backend_ip(i))
            .collect();
        wait_all_healthy(&client, "web", &ips)?;
        let before = generation(&scrape(&client)?).context("no Maglev generation")?;
        lab.stop_backend(STOPPED);
        wait_health(&client, STOPPED, false, Some(before))?;
        stop_with(&mut edge, libc::SIGTERM)?;
        edge = Edge::start_bin(&bin, Some(&lab.edge), &config)?;
        edge.wait_ready(Some(&client), PLAN.admin(), DEADLINE)?;
        // At once: a backend that started healthy would take about a third
        // of these until its checks failed again (and refuse them).
        let counts = spread(&client, PLAN.vip_addr(), AFTER_CONNECTIONS)
            .context("new connections right after the restart")?;
        let dead = PLAN.backends[STOPPED];
        ensure!(!counts.contains_key(dead), "{dead} is down: {counts:?}");
        ensure!(
            dsr::backend_healthy(&scrape(&client)?, "web", PLAN.backend_ip(STOPPED)) == Some(false),
            "the restarted edge reports {dead} healthy"
        );
        Ok(())
    })();
    drop(edge);
    drop(bpffs);
    result
}
