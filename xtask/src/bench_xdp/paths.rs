//! The lab's settings, its HTTP backends, and what stands between the
//! client and the backends in each cell: each path is set up afresh for
//! its turn in a round and removed on drop, however the round ends.

use super::{HAPROXY, PLAN, READY_TIMEOUT};
use anyhow::{Context, Result};
use edge_tests::{
    dsr::{self, DsrLab, HealthCheck, ReturnPath},
    edge::Edge,
    http,
    lab::{ip, output},
    netns,
    process::Process,
    wait,
};
use std::{net::SocketAddr, path::Path, process::Command};

const NFT_TABLE: &str = "edgebench";
/// Ephemeral ports of the client and of the LB host: the range HAProxy's
/// documentation recommends for a busy proxy ("makes use of 64000 source
/// ports"), instead of a namespace's default 32768–60999.
pub(super) const PORT_RANGE: &str = "1024 65023";

/// Settings of the lab's namespaces that keep every path's cells alike;
/// they go with the namespaces.
///
/// The `Connection: close` load opens thousands of connections a second
/// from the client to the VIP, and through HAProxy as many from the LB
/// host to the backends. Whichever side closes first (a race between the
/// backend's close and wrk's) keeps the address pair in TIME_WAIT for
/// 60 s. With the default 28 232 ports and TIME_WAIT reuse only on
/// loopback, a few cells use the pairs up: connect() scans ever longer for
/// a free one, then fails, and each path paid for the TIME_WAIT its
/// predecessors left (HAProxy, measured last, once made 580 connections/s
/// against 6 100 in another run). Both namespaces therefore run as
/// HAProxy's documentation advises for a proxy above a few hundred
/// connections a second, and as load generators run: the wide port range
/// and `tcp_tw_reuse = 1` (a client may reuse a pair in TIME_WAIT after a
/// second, made safe by TCP timestamps, on by default). Nothing here
/// shortens TIME_WAIT or makes HAProxy reset its connections (`option
/// nolinger`): the work a path does per connection stays what it is in
/// production.
pub(super) fn tune(lab: &DsrLab) -> Result<()> {
    for ns in [&lab.client, &lab.edge] {
        dsr::sysctl(ns, "net.ipv4.ip_local_port_range", PORT_RANGE)?;
        dsr::sysctl(ns, "net.ipv4.tcp_tw_reuse", "1")?;
    }
    // The baseline's route picks a backend per connection (see Direct)
    // only if its hash covers the ports.
    dsr::sysctl(&lab.client, "net.ipv4.fib_multipath_hash_policy", "1")?;
    Ok(())
}

/// Replaces the lab's test backends (a thread per connection: their
/// thread start-ups would dominate what is measured) by HAProxy in HTTP
/// mode answering `200` with `X-Backend` from memory, one thread each, on
/// the same `0.0.0.0:<port>`.
pub(super) fn http_backends(lab: &mut DsrLab, dir: &Path) -> Result<Vec<Process>> {
    let mut servers = Vec::new();
    for (i, name) in PLAN.backends.iter().enumerate() {
        lab.stop_backend(i);
        let config = format!(
            "global\n  maxconn 4096\n  nbthread 1\n\
             defaults\n  mode http\n  timeout client 30s\n  timeout connect 5s\n  timeout server 30s\n\
             frontend web\n  bind :{}\n  \
             http-request return status 200 content-type text/plain string \"{name}\\n\" hdr X-Backend {name}\n",
            PLAN.port
        );
        let path = dir.join(format!("{name}.cfg"));
        std::fs::write(&path, config)?;
        let args = ["-db".as_ref(), "-f".as_ref(), path.as_os_str()];
        let mut p = Process::spawn(
            &format!("haproxy backend {name}"),
            Some(&lab.backend_ns[i]),
            Path::new(HAPROXY),
            &args,
            &dir.join(format!("{name}.log")),
        )?;
        let target = SocketAddr::new(PLAN.backend_ip(i), PLAN.port);
        let client = lab.client.clone();
        wait::until(&format!("backend {name} to answer"), READY_TIMEOUT, || {
            p.check_running()?;
            let r = netns::run_in(&client, move || http::get(target, "/"));
            Ok(r.ok().filter(|m| m.status() == Some(200)).map(|_| ()))
        })?;
        servers.push(p);
    }
    Ok(servers)
}

/// The baseline without a load balancer: the client's own kernel spreads
/// its connections to the VIP over the backends, with an ECMP route whose
/// hash covers the 5-tuple. The same three backends answer on the same
/// address (the VIP on their `lo`) as behind every load balancer, straight
/// back to the client, so the baseline differs from the paths only by what
/// a load balancer adds. (One backend alone ran hotter and so cheaper per
/// request than three sharing the load, which shifted every path's "over
/// the baseline" by the same amount and pushed their ratios towards 1.)
/// The VIP's usual route, through edge's host, comes back on drop.
pub(super) struct Direct<'a> {
    lab: &'a DsrLab,
}

impl<'a> Direct<'a> {
    /// Routes the client's VIP straight to the backends.
    pub(super) fn start(lab: &'a DsrLab) -> Result<Self> {
        lab.set_return_path(ReturnPath::Direct)?;
        let vip = format!("{}/32", PLAN.vip);
        let hops: Vec<String> = (0..PLAN.backends.len())
            .map(|i| PLAN.backend_ip(i).to_string())
            .collect();
        let mut args = vec!["-n", lab.client.as_str(), "route", "replace", vip.as_str()];
        for hop in &hops {
            args.extend(["nexthop", "via", hop.as_str()]);
        }
        let this = Self { lab };
        ip(&args).context("routing the client's VIP to the backends")?;
        Ok(this)
    }
}

impl Drop for Direct<'_> {
    fn drop(&mut self) {
        let vip = format!("{}/32", PLAN.vip);
        let via = PLAN.edge_front_ip().to_string();
        if let Err(e) = ip(&[
            "-n",
            &self.lab.client,
            "route",
            "replace",
            &vip,
            "via",
            &via,
        ]) {
            eprintln!("routing the client's VIP through edge again: {e:#}");
        }
    }
}

/// Starts edge with the lab's L4 service and waits until it balances.
pub(super) fn start_edge(lab: &DsrLab, bin: &Path, dir: &Path) -> Result<Edge> {
    lab.set_return_path(ReturnPath::Direct)?;
    let config = dir.join("edge.yaml");
    let health = HealthCheck {
        interval: "1s",
        timeout: "500ms",
        rise: 1,
        fall: 2,
    };
    std::fs::write(&config, PLAN.edge_config(Some(health)))?;
    let mut edge = Edge::start_bin(bin, Some(&lab.edge), &config)?;
    edge.wait_ready(Some(&lab.client), PLAN.admin(), READY_TIMEOUT)?;
    let client = lab.client.clone();
    wait::until("every backend to be healthy", READY_TIMEOUT, || {
        let admin = PLAN.admin();
        let m = netns::run_in(&client, move || http::get(admin, "/metrics"))?.text();
        let healthy = (0..PLAN.backends.len())
            .all(|i| dsr::backend_healthy(&m, "web", PLAN.backend_ip(i)) == Some(true));
        Ok(healthy.then_some(()))
    })
    .with_context(|| format!("edge log:\n{}", edge.log_text()))?;
    Ok(edge)
}

/// Waits until no XDP program is left on edge's interface once edge has
/// stopped: one left there would take the VIP's packets in the next
/// path's cells, which would then measure edge again.
pub(super) fn wait_xdp_gone(lab: &DsrLab) -> Result<()> {
    wait::until(
        "edge's XDP program to leave its interface",
        READY_TIMEOUT,
        || {
            let mode = lab.lab.xdp_mode(Some(&lab.edge), dsr::EDGE_IFACE)?;
            Ok(mode.is_none().then_some(()))
        },
    )
}

/// Empties conntrack's table in namespace `ns`.
fn flush_conntrack(ns: &str) -> Result<()> {
    output(Command::new("ip").args(["netns", "exec", ns, "conntrack", "-F"]))
        .with_context(|| format!("emptying conntrack's table in {ns}"))?;
    Ok(())
}

/// The nftables DNAT load balancer in edge's namespace; removed on drop,
/// with the connections conntrack tracked for it.
pub(super) struct Nftables<'a> {
    lab: &'a DsrLab,
}

impl<'a> Nftables<'a> {
    /// Loads the table, forwards, and routes the backends' answers back
    /// through edge's host.
    pub(super) fn start(lab: &'a DsrLab) -> Result<Self> {
        let targets: Vec<String> = (0..PLAN.backends.len())
            .map(|i| format!("{i} : {}", PLAN.backend_ip(i)))
            .collect();
        // kube-proxy's nftables mode picks an endpoint with
        // `numgen random mod N` and DNATs to it; conntrack un-NATs answers.
        let rules = format!(
            "table ip {NFT_TABLE} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
             ip daddr {} tcp dport {} dnat to numgen random mod {} map {{ {} }}\n  }}\n}}\n",
            PLAN.vip,
            PLAN.port,
            PLAN.backends.len(),
            targets.join(", ")
        );
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), rules)?;
        // Built first, so that a failure below still undoes what was done.
        let this = Self { lab };
        lab.set_edge_forwarding(true)?;
        lab.set_return_path(ReturnPath::ViaEdge)?;
        output(
            Command::new("ip")
                .args(["netns", "exec", &lab.edge, "nft", "-f"])
                .arg(file.path()),
        )?;
        Ok(this)
    }

    /// Empties conntrack's table before a cell. Its entries outlive the
    /// cell that made them (120 s in TIME_WAIT): without this, each cell
    /// would start with as many entries as the ones before it left, which
    /// lengthen the hash chains every packet walks and, on a host with a
    /// smaller `nf_conntrack_max`, fill the table until new connections'
    /// packets are dropped.
    pub(super) fn flush_conntrack(&self) -> Result<()> {
        flush_conntrack(&self.lab.edge)
    }
}

impl Drop for Nftables<'_> {
    fn drop(&mut self) {
        let lab = self.lab;
        let _ = output(Command::new("ip").args([
            "netns", "exec", &lab.edge, "nft", "delete", "table", "ip", NFT_TABLE,
        ]));
        if let Err(e) = flush_conntrack(&lab.edge)
            .and_then(|()| lab.set_edge_forwarding(false))
            .and_then(|()| lab.set_return_path(ReturnPath::Direct))
        {
            eprintln!("removing the nftables load balancer: {e:#}");
        }
    }
}

/// HAProxy in TCP mode in edge's namespace, on the VIP (added to edge's
/// `lo` for it); stopped and removed on drop. It reaches the backends
/// from edge's one address on their subnet, with the namespace's wide
/// port range and TIME_WAIT reuse ([`tune`]): three backends' worth of
/// about 64 000 ports each, more than its connection rate needs, so no
/// `source` address list.
pub(super) struct Haproxy<'a> {
    lab: &'a DsrLab,
    process: Process,
}

impl<'a> Haproxy<'a> {
    /// Starts HAProxy and waits until it answers on the VIP.
    pub(super) fn start(lab: &'a DsrLab, dir: &Path) -> Result<Self> {
        let servers: String = (0..PLAN.backends.len())
            .map(|i| {
                format!(
                    "  server {} {}:{}\n",
                    PLAN.backends[i],
                    PLAN.backend_ip(i),
                    PLAN.port
                )
            })
            .collect();
        let config = format!(
            "global\n  maxconn 4096\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend vip\n  bind {}\n  default_backend pool\n\
             backend pool\n  balance roundrobin\n{servers}",
            PLAN.vip_addr()
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config)?;
        let vip = format!("{}/32", PLAN.vip);
        lab.lab.addr(&lab.edge, "lo", &vip)?;
        let haproxy = Path::new(HAPROXY);
        let args = ["-db".as_ref(), "-f".as_ref(), path.as_os_str()];
        let process = match Process::spawn(
            "haproxy",
            Some(&lab.edge),
            haproxy,
            &args,
            &dir.join("haproxy.log"),
        ) {
            Ok(p) => p,
            Err(e) => {
                let _ = ip(&["-n", &lab.edge, "addr", "del", &vip, "dev", "lo"]);
                return Err(e);
            }
        };
        let mut this = Self { lab, process };
        let client = lab.client.clone();
        wait::until("haproxy to answer on the VIP", READY_TIMEOUT, || {
            this.process.check_running()?;
            let vip = PLAN.vip_addr();
            let r = netns::run_in(&client, move || http::get(vip, "/"));
            Ok(r.ok().map(|_| ()))
        })?;
        Ok(this)
    }

    /// HAProxy's PID.
    pub(super) fn pid(&self) -> Result<u32> {
        self.process.pid().context("haproxy is not running")
    }
}

impl Drop for Haproxy<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.process.stop() {
            eprintln!("stopping haproxy: {e:#}");
        }
        let vip = format!("{}/32", PLAN.vip);
        if let Err(e) = ip(&["-n", &self.lab.edge, "addr", "del", &vip, "dev", "lo"]) {
            eprintln!("removing the VIP from edge's lo: {e:#}");
        }
    }
}
