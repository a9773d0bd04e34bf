//! The L4 lab: direct server return on one L2 segment, shared by the L4
//! network test and `cargo xtask bench xdp`.
//!
//! ```text
//!                      namespace `sw`: bridge br0
//!            ┌──────────────┬────────┴───────┬───────────────┐
//!  client c0 10.77.1.2   edge l0 10.77.1.1   be1..3 eth0 10.77.2.11..13
//!  VIP via 10.77.1.1      + 10.77.2.1        VIP 10.77.0.100/32 on lo
//!                         (XDP, one arm)     edge decap on eth0
//! ```
//!
//! edge is a one-armed load balancer, as Katran is: a packet to the VIP
//! enters edge's `l0`, leaves it again encapsulated in IPIP (outer source
//! [`DsrPlan::edge_ip`]) towards a backend's MAC, and the backend's answer
//! goes straight to the client across the bridge ([`ReturnPath::Direct`]).
//! With [`DsrPlan::net6`] the same runs over IPv6 (IP6IP6) beside it.
//! Every backend serves HTTP on all its addresses (`0.0.0.0:<port>`, or
//! `[::]:<port>` when the plan has IPv6), so on the VIP and on its own
//! address (which health checks and the NAT/proxy load balancers of
//! the benchmark use).
//!
//! edge's port on the switch runs an XDP program that passes everything
//! (see [`DsrLab::start_decaps`]), without which the kernel would not
//! deliver what edge sends with XDP_TX.
//!
//! The segment's MTU is raised to make room for the outer header, except
//! on the client, whose TCP segments therefore always fit encapsulated.

use crate::{
    backend::Backend,
    lab::{Lab, ip, output},
    netns,
    process::Process,
    wait,
};
use anyhow::{Context, Result};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    process::Command,
    time::Duration,
};

/// edge's interface, where its XDP program attaches.
pub const EDGE_IFACE: &str = "l0";
/// Each backend's interface, where edge's decapsulator attaches.
pub const BACKEND_IFACE: &str = "eth0";
/// Port of edge's admin endpoint (on [`DsrPlan::edge_front_ip`]).
pub const ADMIN_PORT: u16 = 9100;
/// MTU of the segment behind the client: room for an IPIP or IP6IP6 header.
const SEGMENT_MTU: &str = "1600";
/// How long a decapsulator gets to attach.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
/// edge's port on the switch, where edge's XDP_TX frames arrive.
const SWITCH_EDGE_PORT: &str = "s-e";
/// An outer source that never occurs in the lab (TEST-NET-1): edge's
/// decapsulator told to accept only it passes every packet unchanged.
const NO_SOURCE: &str = "192.0.2.1";

/// Addressing of the lab: two /24s on one segment, given by their first
/// three octets, and the virtual service.
#[derive(Clone, Copy, Debug)]
pub struct DsrPlan<'a> {
    /// The client's /24, e.g. `"10.77.1"`.
    pub client_net: &'a str,
    /// The backends' /24, e.g. `"10.77.2"`.
    pub backend_net: &'a str,
    /// The virtual IP every backend owns on `lo`.
    pub vip: Ipv4Addr,
    /// The service's TCP port (every backend serves HTTP on it).
    pub port: u16,
    /// Backend names (and namespace suffixes).
    pub backends: &'a [&'a str],
    /// IPv6 as well, under this /32-ish prefix, e.g. `"fd00:77"`: the
    /// client on `<net6>:1::2/64`, edge on `<net6>:1::1` and `<net6>:2::1`,
    /// backends on `<net6>:2::11..`, the IPv6 VIP `<net6>::100` (service
    /// `web6` on the same port, IP6IP6).
    pub net6: Option<&'a str>,
}

/// A TCP health check for [`DsrPlan::edge_config`].
#[derive(Clone, Copy, Debug)]
pub struct HealthCheck<'a> {
    /// e.g. `"200ms"`.
    pub interval: &'a str,
    /// e.g. `"200ms"`.
    pub timeout: &'a str,
    /// Successes before a backend is healthy again.
    pub rise: u32,
    /// Failures before a backend is taken out.
    pub fall: u32,
}

impl DsrPlan<'_> {
    fn ip(net: &str, host: u8) -> IpAddr {
        format!("{net}.{host}")
            .parse()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    /// The client's address.
    pub fn client_ip(&self) -> IpAddr {
        Self::ip(self.client_net, 2)
    }

    /// edge's address on the client's subnet: the client's route to the VIP.
    pub fn edge_front_ip(&self) -> IpAddr {
        Self::ip(self.client_net, 1)
    }

    /// edge's address on the backends' subnet: the outer source of its
    /// IPIP packets, the source of its health checks.
    pub fn edge_ip(&self) -> IpAddr {
        Self::ip(self.backend_net, 1)
    }

    /// Address of backend `i`.
    pub fn backend_ip(&self, i: usize) -> IpAddr {
        Self::ip(self.backend_net, 11 + i as u8)
    }

    /// The virtual service, `VIP:port`.
    pub fn vip_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.vip), self.port)
    }

    fn ip6(&self, subnet: u8, host: &str) -> Option<IpAddr> {
        format!("{}:{subnet}::{host}", self.net6?).parse().ok()
    }

    /// The client's IPv6 address.
    pub fn client_ip6(&self) -> Option<IpAddr> {
        self.ip6(1, "2")
    }

    /// edge's IPv6 address on the client's subnet.
    pub fn edge_front_ip6(&self) -> Option<IpAddr> {
        self.ip6(1, "1")
    }

    /// edge's IPv6 address on the backends' subnet: the outer source of
    /// its IP6IP6 packets.
    pub fn edge_ip6(&self) -> Option<IpAddr> {
        self.ip6(2, "1")
    }

    /// IPv6 address of backend `i`.
    pub fn backend_ip6(&self, i: usize) -> Option<IpAddr> {
        self.ip6(2, &format!("{}", 11 + i))
    }

    /// The IPv6 virtual service, `[VIP6]:port`.
    pub fn vip6_addr(&self) -> Option<SocketAddr> {
        let vip: IpAddr = format!("{}::100", self.net6?).parse().ok()?;
        Some(SocketAddr::new(vip, self.port))
    }

    /// edge's admin endpoint (reachable from the client).
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::new(self.edge_front_ip(), ADMIN_PORT)
    }

    /// An edge configuration: XDP native on [`EDGE_IFACE`], L4 service
    /// `web` on the VIP (and `web6` on the IPv6 VIP) over every backend
    /// with equal weights, optionally health-checked over TCP, and the
    /// admin endpoint.
    pub fn edge_config(&self, health: Option<HealthCheck<'_>>) -> String {
        let health = health.map_or(String::new(), |h| {
            format!(
                "      health_check:\n        type: tcp\n        port: {}\n        interval: {}\n        timeout: {}\n        rise: {}\n        fall: {}\n",
                self.port, h.interval, h.timeout, h.rise, h.fall
            )
        });
        let service = |name: &str, vip: IpAddr, backends: &mut dyn Iterator<Item = IpAddr>| {
            let backends: String = backends
                .map(|b| format!("        - address: {b}\n"))
                .collect();
            format!(
                "    - name: {name}\n      vip: {vip}\n      port: {}\n      protocol: tcp\n      backends:\n{backends}{health}",
                self.port
            )
        };
        let n = self.backends.len();
        let mut services = service(
            "web",
            IpAddr::V4(self.vip),
            &mut (0..n).map(|i| self.backend_ip(i)),
        );
        let mut sources = format!("    source_v4: {}\n", self.edge_ip());
        if let (Some(vip6), Some(src6)) = (self.vip6_addr(), self.edge_ip6()) {
            let mut v6 = (0..n).filter_map(|i| self.backend_ip6(i));
            services.push_str(&service("web6", vip6.ip(), &mut v6));
            sources.push_str(&format!("    source_v6: {src6}\n"));
        }
        format!(
            "xdp:\n  interfaces:\n    - name: {EDGE_IFACE}\n      mode: native\n\
             l4:\n  forwarding:\n{sources}  services:\n{services}\
             admin:\n  address: {}\n",
            self.admin()
        )
    }
}

/// How backends route their answers to the client's subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnPath {
    /// Straight to the client across the segment: direct server return.
    Direct,
    /// Through edge's host ([`DsrPlan::edge_ip`]), as a NAT load balancer
    /// needs to translate the answers back.
    ViaEdge,
}

/// A built DSR lab with its backends serving.
pub struct DsrLab {
    // Field order is drop order: processes stop before namespaces go.
    decaps: Vec<Option<Process>>,
    switch_pass: Option<Process>,
    backends: Vec<Option<Backend>>,
    /// The namespaces.
    pub lab: Lab,
    /// The client's namespace.
    pub client: String,
    /// edge's namespace.
    pub edge: String,
    /// The switch's namespace (the bridge).
    pub switch: String,
    /// The backends' namespaces, in plan order.
    pub backend_ns: Vec<String>,
    plan: DsrPlan<'static>,
    logs: tempfile::TempDir,
}

/// Sets sysctl `key` (dotted, as `sysctl` takes it) to `value` in `ns`.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let value = value.to_string();
    // /proc/sys/net shows the namespace of the thread that opens it.
    netns::run_in(ns, move || {
        std::fs::write(&path, value).with_context(|| format!("writing {path}"))
    })
}

impl DsrLab {
    /// Builds `plan` in a new [`Lab`] and starts an HTTP backend in each
    /// backend namespace. Answers return directly; no decapsulator runs yet
    /// (see [`DsrLab::start_decaps`]).
    pub fn build(plan: DsrPlan<'static>) -> Result<Self> {
        Self::build_in(Lab::new()?, plan)
    }

    /// Like [`DsrLab::build`], in `lab`: e.g. a [`Lab::fixed`] one, whose
    /// namespaces have readable names (the demo lab of `cargo xtask run`).
    pub fn build_in(mut lab: Lab, plan: DsrPlan<'static>) -> Result<Self> {
        let client = lab.host("client")?;
        let edge = lab.host("edge")?;
        let switch = lab.host("sw")?;
        lab.bridge(&switch, "br0")?;

        lab.link(&client, "c0", &switch, "s-c")?;
        lab.enslave(&switch, "s-c", "br0")?;
        lab.addr(&client, "c0", &format!("{}/24", plan.client_ip()))?;
        let vip_route = format!("{}/32", plan.vip);
        lab.route(&client, &vip_route, &plan.edge_front_ip().to_string())?;
        // The backends' subnet is on the same segment: their answers and
        // the direct baseline of the benchmark need no router.
        ip(&[
            "-n",
            &client,
            "route",
            "add",
            &format!("{}.0/24", plan.backend_net),
            "dev",
            "c0",
        ])?;
        if let (Some(me), Some(edge6), Some(vip6)) =
            (plan.client_ip6(), plan.edge_front_ip6(), plan.vip6_addr())
        {
            lab.addr(&client, "c0", &format!("{me}/64"))?;
            lab.route(&client, &format!("{}/128", vip6.ip()), &edge6.to_string())?;
            let net = format!("{}:2::/64", plan.net6.unwrap_or_default());
            ip(&["-n", &client, "-6", "route", "add", &net, "dev", "c0"])?;
        }
        // The client's veth leaves TCP checksums to "hardware" that never
        // computes them (the receiving veth trusts them). XDP sees only
        // bytes: a packet edge sends on with XDP_TX reaches the backend
        // with the partial checksum, which its stack rejects. Real NICs
        // fill checksums in before the wire; here the client's kernel must.
        output(
            Command::new("ip").args(["netns", "exec", &client, "ethtool", "-K", "c0", "tx", "off"]),
        )
        .context("turning checksum offload off on the client (is ethtool installed?)")?;
        for key in ["all", "c0"] {
            // A NAT load balancer forwarding out of the interface the
            // packet came in on would otherwise talk the client into
            // sending to the backend directly.
            sysctl(
                &client,
                &format!("net.ipv4.conf.{key}.accept_redirects"),
                "0",
            )?;
            sysctl(&client, &format!("net.ipv4.conf.{key}.rp_filter"), "0")?;
        }

        lab.link(&edge, EDGE_IFACE, &switch, SWITCH_EDGE_PORT)?;
        lab.enslave(&switch, SWITCH_EDGE_PORT, "br0")?;
        lab.addr(&edge, EDGE_IFACE, &format!("{}/24", plan.edge_front_ip()))?;
        lab.addr(&edge, EDGE_IFACE, &format!("{}/24", plan.edge_ip()))?;
        for a in [plan.edge_front_ip6(), plan.edge_ip6()]
            .into_iter()
            .flatten()
        {
            lab.addr(&edge, EDGE_IFACE, &format!("{a}/64"))?;
        }
        set_mtu(&edge, EDGE_IFACE)?;
        set_mtu(&switch, SWITCH_EDGE_PORT)?;
        for key in ["all", EDGE_IFACE] {
            sysctl(&edge, &format!("net.ipv4.conf.{key}.send_redirects"), "0")?;
            sysctl(&edge, &format!("net.ipv4.conf.{key}.rp_filter"), "0")?;
        }
        let mut backend_ns = Vec::new();
        let mut backends = Vec::new();
        for (i, name) in plan.backends.iter().enumerate() {
            let ns = lab.host(name)?;
            let port = format!("s-{i}");
            lab.link(&ns, BACKEND_IFACE, &switch, &port)?;
            lab.enslave(&switch, &port, "br0")?;
            set_mtu(&ns, BACKEND_IFACE)?;
            set_mtu(&switch, &port)?;
            lab.addr(&ns, BACKEND_IFACE, &format!("{}/24", plan.backend_ip(i)))?;
            lab.addr(&ns, "lo", &format!("{}/32", plan.vip))?;
            if let (Some(me), Some(vip6)) = (plan.backend_ip6(i), plan.vip6_addr()) {
                // IPv6 answers neighbour solicitations only for addresses
                // of the interface asked, so the VIP on lo stays quiet.
                lab.addr(&ns, BACKEND_IFACE, &format!("{me}/64"))?;
                lab.addr(&ns, "lo", &format!("{}/128", vip6.ip()))?;
                let net = format!("{}:1::/64", plan.net6.unwrap_or_default());
                ip(&["-n", &ns, "-6", "route", "add", &net, "dev", BACKEND_IFACE])?;
            }
            // The VIP on lo must not be answered for or announced on the
            // segment (the client reaches it through edge), and packets
            // to it arrive on eth0 from sources routed elsewhere.
            sysctl(&ns, "net.ipv4.conf.all.arp_ignore", "1")?;
            sysctl(&ns, "net.ipv4.conf.all.arp_announce", "2")?;
            for key in ["all", "lo", BACKEND_IFACE] {
                sysctl(&ns, &format!("net.ipv4.conf.{key}.rp_filter"), "0")?;
            }
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                &format!("{}.0/24", plan.client_net),
                "dev",
                BACKEND_IFACE,
            ])?;
            backends.push(Some(start_backend(
                name,
                &ns,
                plan.port,
                plan.net6.is_some(),
            )?));
            backend_ns.push(ns);
        }
        Ok(Self {
            decaps: plan.backends.iter().map(|_| None).collect(),
            switch_pass: None,
            backends,
            lab,
            client,
            edge,
            switch,
            backend_ns,
            plan,
            logs: tempfile::tempdir()?,
        })
    }

    /// The plan the lab was built from.
    pub fn plan(&self) -> &DsrPlan<'static> {
        &self.plan
    }

    /// Backend `i`'s HTTP server, while it runs.
    pub fn backend(&self, i: usize) -> Option<&Backend> {
        self.backends.get(i).and_then(Option::as_ref)
    }

    /// Stops backend `i`'s HTTP server: connections to its port are
    /// refused from now on.
    pub fn stop_backend(&mut self, i: usize) {
        if let Some(b) = self.backends.get_mut(i) {
            *b = None;
        }
    }

    /// Starts backend `i`'s HTTP server again.
    pub fn restart_backend(&mut self, i: usize) -> Result<()> {
        let name = self.plan.backends.get(i).context("no such backend")?;
        let b = start_backend(
            name,
            &self.backend_ns[i],
            self.plan.port,
            self.plan.net6.is_some(),
        )?;
        self.backends[i] = Some(b);
        Ok(())
    }

    /// Runs `<edge_bin> decap` on every backend's [`BACKEND_IFACE`] (native
    /// mode), accepting IPIP from [`DsrPlan::edge_ip`], and waits until
    /// each has attached.
    ///
    /// Also attaches an XDP program that passes everything to edge's port
    /// on the switch: a frame edge's XDP program sends back out of its veth
    /// (XDP_TX) goes straight into the peer's XDP receive ring, which the
    /// kernel only drains when the peer runs an XDP program (with GRO on
    /// instead, frames wait in the ring until unrelated traffic arrives).
    /// edge's decapsulator accepting only a source that never occurs is
    /// such a program, with nothing else to install.
    pub fn start_decaps(&mut self, edge_bin: &Path) -> Result<()> {
        if self.switch_pass.is_none() {
            let switch = self.switch.clone();
            let none = [NO_SOURCE.to_string()];
            let p = self.decap(edge_bin, &switch, SWITCH_EDGE_PORT, &none, "switch-pass")?;
            self.switch_pass = Some(p);
        }
        for i in 0..self.backend_ns.len() {
            if self.decaps[i].is_some() {
                continue;
            }
            let ns = self.backend_ns[i].clone();
            let sources: Vec<String> = std::iter::once(self.plan.edge_ip())
                .chain(self.plan.edge_ip6())
                .map(|a| a.to_string())
                .collect();
            let p = self.decap(
                edge_bin,
                &ns,
                BACKEND_IFACE,
                &sources,
                &format!("decap-{i}"),
            )?;
            self.decaps[i] = Some(p);
        }
        Ok(())
    }

    /// Runs `edge decap` on `ns`/`iface` accepting `sources`, and waits
    /// until it has attached.
    fn decap(
        &self,
        edge_bin: &Path,
        ns: &str,
        iface: &str,
        sources: &[String],
        log: &str,
    ) -> Result<Process> {
        let log = self.logs.path().join(format!("{log}.log"));
        start_decap(&self.lab, edge_bin, ns, iface, sources, &log)
    }

    /// Stops backend `i`'s decapsulator (SIGTERM; it detaches).
    pub fn stop_decap(&mut self, i: usize) -> Result<()> {
        if let Some(mut p) = self.decaps.get_mut(i).and_then(Option::take) {
            p.stop()?;
        }
        Ok(())
    }

    /// Fails, with its log, if a decapsulator has exited.
    pub fn check_decaps(&mut self) -> Result<()> {
        for p in self
            .decaps
            .iter_mut()
            .flatten()
            .chain(self.switch_pass.as_mut())
        {
            p.check_running()?;
        }
        Ok(())
    }

    /// Routes every backend's answers to the client's subnet per `path`.
    pub fn set_return_path(&self, path: ReturnPath) -> Result<()> {
        let dest = format!("{}.0/24", self.plan.client_net);
        let via = self.plan.edge_ip().to_string();
        for ns in &self.backend_ns {
            match path {
                ReturnPath::Direct => {
                    ip(&["-n", ns, "route", "replace", &dest, "dev", BACKEND_IFACE])?
                }
                ReturnPath::ViaEdge => ip(&["-n", ns, "route", "replace", &dest, "via", &via])?,
            };
        }
        Ok(())
    }

    /// Turns IPv4 forwarding on or off in edge's namespace (only the NAT
    /// load balancer of the benchmark forwards; edge's XDP path does not
    /// need it).
    pub fn set_edge_forwarding(&self, on: bool) -> Result<()> {
        sysctl(
            &self.edge,
            "net.ipv4.ip_forward",
            if on { "1" } else { "0" },
        )
    }
}

/// Runs `<edge_bin> decap` on `ns`/`iface` (native mode) accepting outer
/// sources `sources`, logging to `log`, and waits until it has attached.
/// Accepting only a source that never occurs makes it an XDP program that
/// passes everything (see [`DsrLab::start_decaps`]).
pub fn start_decap(
    lab: &Lab,
    edge_bin: &Path,
    ns: &str,
    iface: &str,
    sources: &[String],
    log: &Path,
) -> Result<Process> {
    let mut args = vec!["decap", "--iface", iface, "--mode", "native"];
    for s in sources {
        args.extend(["--source", s.as_str()]);
    }
    let mut p = Process::spawn(
        &format!("edge decap in {ns}"),
        Some(ns),
        edge_bin,
        &args,
        log,
    )?;
    wait::until(
        &format!("edge decap to attach on {ns}/{iface}"),
        ATTACH_TIMEOUT,
        || {
            p.check_running()?;
            Ok(lab.xdp_mode(Some(ns), iface)?.map(|_| ()))
        },
    )?;
    Ok(p)
}

fn set_mtu(ns: &str, iface: &str) -> Result<()> {
    ip(&["-n", ns, "link", "set", "dev", iface, "mtu", SEGMENT_MTU])?;
    Ok(())
}

/// Starts backend `name` on every address of `ns` (`[::]` takes IPv4
/// too, as v4-mapped addresses, unless `net.ipv6.bindv6only` is set).
fn start_backend(name: &str, ns: &str, port: u16, ipv6: bool) -> Result<Backend> {
    let any = if ipv6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    Backend::start(name, Some(ns), SocketAddr::new(any, port))
}

pub use crate::proxy::sample;

/// `edge_l4_backend_healthy` of `backend` in `service`, if exported. The
/// backend label may be the address alone or `address:port`.
pub fn backend_healthy(metrics: &str, service: &str, backend: IpAddr) -> Option<bool> {
    let prefix = format!("edge_l4_backend_healthy{{service=\"{service}\",backend=\"{backend}");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .find(|l| {
            let rest = &l[prefix.len()..];
            rest.starts_with('"') || rest.starts_with(':')
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v == 1.0)
}
