//! The scale-out lab: a router spreads a VIP's flows by ECMP over several
//! edge hosts, each of which announces the VIP by BGP through its own BIRD
//! and balances the flows in XDP to the same DSR backends. Shared by the
//! scale-out tests and `cargo xtask run --hosts N`.
//!
//! ```text
//!   client 10.88.1.2 ── router (BIRD, AS 65000, ECMP) 10.88.1.1
//!                              │ 10.88.0.1
//!            ──────────────────┴──── bridge br0 (namespace `sw`) ─────────────
//!            │                  │                    │                 │
//!   edge h0 10.88.0.11   edge h1 10.88.0.12 ...   be1 10.88.0.21    be2 ...
//!   XDP on l0, BIRD       (AS 65001 each,          VIP 10.88.9.1/32 on lo,
//!   announcing the VIP    one session each)        edge decap on eth0
//! ```
//!
//! The router learns the VIP from every host that announces it and installs
//! one route with a next hop per host (BIRD's `merge paths`), hashing flows
//! over them by their 5-tuple (`fib_multipath_hash_policy=1`). A host
//! encapsulates in IPIP towards a backend's MAC (`XDP_TX` back onto the
//! segment); the backend answers the client directly through the router.
//! Every host runs the same configuration apart from its own addresses, so
//! every host has the same Maglev table: a flow the router moves to another
//! host still reaches its backend.
//!
//! BIRD runs in the foreground under [`Process`] (stopped by its PID). Each
//! host's BIRD starts on a stub file that edge overwrites with its own
//! (`bgp.bird.config`) before it asks BIRD to read it again.

use crate::{
    backend::Backend,
    dsr::sysctl,
    lab::{Lab, ip, output},
    netns,
    process::{Process, program},
    wait,
};
use anyhow::{Context, Result, bail};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

/// The segment shared by the router, the edge hosts and the backends.
pub const LAN: &str = "10.88.0";
/// The client's subnet, behind the router.
pub const CLIENT_NET: &str = "10.88.1";
/// The virtual IP every host announces and every backend owns on `lo`.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 88, 9, 1);
/// The service's TCP port.
pub const PORT: u16 = 80;
/// The address of each host's L7 listener (on `lo` of every host),
/// announced by BGP like the VIP (`bgp.listeners`).
pub const L7_VIP: Ipv4Addr = Ipv4Addr::new(10, 88, 9, 2);
/// The L7 listener's port.
pub const L7_PORT: u16 = 8080;
/// Port of each host's admin endpoint.
pub const ADMIN_PORT: u16 = 9100;
/// The router's AS.
pub const ROUTER_AS: u32 = 65_000;
/// The edge hosts' AS (one AS for the tier, as Katran's and Unimog's are).
pub const EDGE_AS: u32 = 65_001;
/// Each edge host's interface, where its XDP program attaches.
pub const HOST_IFACE: &str = "l0";
/// Each backend's interface, where edge's decapsulator attaches.
pub const BACKEND_IFACE: &str = "eth0";
/// MTU of the segment: room for the outer IPv4 header.
const SEGMENT_MTU: &str = "1600";
/// How long a decapsulator or BIRD gets to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// An outer source that never occurs (TEST-NET-1): a decapsulator that
/// accepts only it passes everything (see [`EcmpLab::build`]).
const NO_SOURCE: &str = "192.0.2.1";

/// The lab's shape.
#[derive(Clone, Copy, Debug)]
pub struct EcmpPlan {
    /// Edge hosts (1..=9).
    pub hosts: usize,
    /// Backend names (1..=9), which are also their `X-Backend` answers.
    pub backends: &'static [&'static str],
}

/// What differs between edge configurations in the tests.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// Indices of the backends in the service, in this order.
    pub backends: Vec<usize>,
    /// `l4.second_chance`, e.g. `"60s"` or `"0s"`.
    pub second_chance: String,
    /// TCP health check interval; `None`: no health check.
    pub health_interval: Option<String>,
    /// An L7 listener on [`L7_VIP`]:[`L7_PORT`] proxying to the backends,
    /// its address announced too.
    pub l7: bool,
    /// With `l7`: one rate limit of this many requests an hour on the
    /// listener's route, counted in the Redis at this address (shared by
    /// every host).
    pub shared_limit: Option<(SocketAddr, u32)>,
}

impl HostOptions {
    /// Every backend of `plan`, health-checked every 200 ms, the default
    /// second-chance window.
    pub fn all(plan: &EcmpPlan) -> Self {
        Self {
            backends: (0..plan.backends.len()).collect(),
            second_chance: "60s".into(),
            health_interval: Some("200ms".into()),
            l7: false,
            shared_limit: None,
        }
    }
}

fn lan_ip(host: usize) -> Ipv4Addr {
    let last = u8::try_from(host).unwrap_or(u8::MAX);
    match format!("{LAN}.{last}").parse() {
        Ok(a) => a,
        Err(_) => Ipv4Addr::UNSPECIFIED,
    }
}

/// The router's address on the segment: every host's BGP neighbour.
pub fn router_ip() -> Ipv4Addr {
    lan_ip(1)
}

/// Edge host `i`'s address (its router id and IPIP source).
pub fn host_ip(i: usize) -> Ipv4Addr {
    lan_ip(11 + i)
}

/// Backend `i`'s address.
pub fn backend_ip(i: usize) -> Ipv4Addr {
    lan_ip(21 + i)
}

/// The client's address.
pub fn client_ip() -> Ipv4Addr {
    Ipv4Addr::new(10, 88, 1, 2)
}

/// The virtual service.
pub fn vip_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(VIP), PORT)
}

/// The L7 listener every host can run.
pub fn l7_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(L7_VIP), L7_PORT)
}

/// Edge host `i`'s admin endpoint (reachable from the client).
pub fn admin(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(host_ip(i)), ADMIN_PORT)
}

/// A built lab: router with BIRD, hosts with BIRD (edge not started),
/// backends serving with their decapsulators.
pub struct EcmpLab {
    // Field order is drop order: processes stop before namespaces go, and
    // the directory (configurations, sockets, logs) goes last.
    decaps: Vec<Process>,
    switch_pass: Vec<Process>,
    host_birds: Vec<Process>,
    router_bird: Option<Process>,
    backends: Vec<Option<Backend>>,
    /// The namespaces.
    pub lab: Lab,
    /// The client's namespace.
    pub client: String,
    /// The router's namespace.
    pub router: String,
    /// Each edge host's namespace.
    pub hosts: Vec<String>,
    /// Each backend's namespace.
    pub backend_ns: Vec<String>,
    plan: EcmpPlan,
    dir: tempfile::TempDir,
}

impl EcmpLab {
    /// Builds `plan`: namespaces and links, the router's BIRD, every
    /// host's BIRD on a stub configuration, the backends and their
    /// decapsulators (`edge_bin decap`).
    pub fn build(plan: EcmpPlan, edge_bin: &Path) -> Result<Self> {
        Self::build_in(Lab::new()?, plan, edge_bin)
    }

    /// Like [`EcmpLab::build`], in `lab` (e.g. a [`Lab::fixed`] one).
    pub fn build_in(mut lab: Lab, plan: EcmpPlan, edge_bin: &Path) -> Result<Self> {
        if !(1..=9).contains(&plan.hosts) || !(1..=9).contains(&plan.backends.len()) {
            bail!("the lab has room for 1 to 9 hosts and 1 to 9 backends");
        }
        let bird = program("bird").context(
            "BIRD is not installed (Debian package bird2; `cargo xtask test` installs it)",
        )?;
        let client = lab.host("client")?;
        let router = lab.host("router")?;
        let switch = lab.host("sw")?;
        lab.bridge(&switch, "br0")?;

        // Client ── router.
        lab.link(&client, "c0", &router, "r-c")?;
        lab.addr(&client, "c0", &format!("{}/24", client_ip()))?;
        lab.addr(&router, "r-c", &format!("{CLIENT_NET}.1/24"))?;
        ip(&[
            "-n",
            &client,
            "route",
            "add",
            "default",
            "via",
            &format!("{CLIENT_NET}.1"),
        ])?;
        // XDP sees bytes: the client's kernel must fill TCP checksums in
        // (see the DSR lab), since the router forwards them untouched.
        output(
            Command::new("ip").args(["netns", "exec", &client, "ethtool", "-K", "c0", "tx", "off"]),
        )
        .context("turning checksum offload off on the client (is ethtool installed?)")?;

        // Router ── segment.
        lab.link(&router, "r-l", &switch, "s-r")?;
        lab.enslave(&switch, "s-r", "br0")?;
        set_mtu(&router, "r-l")?;
        set_mtu(&switch, "s-r")?;
        lab.addr(&router, "r-l", &format!("{}/24", router_ip()))?;
        sysctl(&router, "net.ipv4.ip_forward", "1")?;
        // Hash flows over the next hops by their 5-tuple, not addresses
        // alone: one client's connections spread over the hosts.
        sysctl(&router, "net.ipv4.fib_multipath_hash_policy", "1")?;
        for key in ["all", "default", "r-l", "r-c"] {
            sysctl(&router, &format!("net.ipv4.conf.{key}.rp_filter"), "0")?;
        }

        let dir = tempfile::tempdir()?;
        let mut hosts = Vec::new();
        for i in 0..plan.hosts {
            let ns = lab.host(&format!("h{i}"))?;
            join_segment(
                &lab,
                &switch,
                &ns,
                HOST_IFACE,
                &format!("s-h{i}"),
                host_ip(i),
            )?;
            // The L7 listener's address, which the router reaches through
            // BGP.
            hold_on_lo(&lab, &ns, L7_VIP)?;
            for key in ["all", HOST_IFACE] {
                sysctl(&ns, &format!("net.ipv4.conf.{key}.send_redirects"), "0")?;
                sysctl(&ns, &format!("net.ipv4.conf.{key}.rp_filter"), "0")?;
            }
            std::fs::create_dir_all(dir.path().join(format!("h{i}")))?;
            hosts.push(ns);
        }
        let mut backend_ns = Vec::new();
        let mut backends = Vec::new();
        for (i, name) in plan.backends.iter().enumerate() {
            let ns = lab.host(name)?;
            join_segment(
                &lab,
                &switch,
                &ns,
                BACKEND_IFACE,
                &format!("s-b{i}"),
                backend_ip(i),
            )?;
            hold_on_lo(&lab, &ns, VIP)?;
            for key in ["all", "lo", BACKEND_IFACE] {
                sysctl(&ns, &format!("net.ipv4.conf.{key}.rp_filter"), "0")?;
            }
            let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT);
            backends.push(Some(Backend::start(name, Some(&ns), any)?));
            backend_ns.push(ns);
        }

        let mut this = Self {
            decaps: Vec::new(),
            switch_pass: Vec::new(),
            host_birds: Vec::new(),
            router_bird: None,
            backends,
            lab,
            client,
            router,
            hosts,
            backend_ns,
            plan,
            dir,
        };
        // A frame a host sends back out of its veth with XDP_TX lands in
        // the peer's XDP receive ring, which the kernel drains only when
        // the peer runs an XDP program: edge's decapsulator accepting a
        // source that never occurs passes everything.
        for i in 0..plan.hosts {
            let p = this.decap(
                edge_bin,
                &switch,
                &format!("s-h{i}"),
                &[NO_SOURCE.into()],
                &format!("switch-pass-{i}"),
            )?;
            this.switch_pass.push(p);
        }
        let sources: Vec<String> = (0..plan.hosts).map(|i| host_ip(i).to_string()).collect();
        for i in 0..plan.backends.len() {
            let ns = this.backend_ns[i].clone();
            let p = this.decap(
                edge_bin,
                &ns,
                BACKEND_IFACE,
                &sources,
                &format!("decap-{i}"),
            )?;
            this.decaps.push(p);
        }
        this.router_bird = Some(this.start_router_bird(&bird)?);
        for i in 0..plan.hosts {
            let p = this.start_host_bird(&bird, i)?;
            this.host_birds.push(p);
        }
        Ok(this)
    }

    /// The plan the lab was built from.
    pub fn plan(&self) -> &EcmpPlan {
        &self.plan
    }

    /// The lab's working directory (configurations, sockets, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where host `i`'s edge configuration goes.
    pub fn host_config(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("h{i}/edge.yaml"))
    }

    /// The BIRD configuration file edge on host `i` writes.
    pub fn host_bird_config(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("h{i}/bird.conf"))
    }

    /// The control socket of host `i`'s BIRD.
    pub fn host_bird_socket(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("h{i}/bird.ctl"))
    }

    /// Host `i`'s edge configuration: XDP on [`HOST_IFACE`], L4 service
    /// `web` on the VIP, the admin endpoint open to changes from the lab,
    /// and BGP to the router with short timers.
    pub fn edge_config(&self, i: usize, opts: &HostOptions) -> String {
        let backends: String = opts
            .backends
            .iter()
            .map(|b| format!("        - address: {}\n", backend_ip(*b)))
            .collect();
        let health = opts.health_interval.as_deref().map_or(String::new(), |iv| {
            format!(
                "      health_check:\n        type: tcp\n        port: {PORT}\n        \
                 interval: {iv}\n        timeout: {iv}\n        rise: 2\n        fall: 2\n"
            )
        });
        let (l7, announce) = if opts.l7 {
            let pool: String = opts
                .backends
                .iter()
                .map(|b| format!("      - address: {}:{PORT}\n", backend_ip(*b)))
                .collect();
            let (target, gateway) = match opts.shared_limit {
                Some((redis, limit)) => (
                    format!(
                        "\n    routes:\n      - name: shared\n        \
                         match: {{path: {{prefix: /}}}}\n        proxy: {{pool: web7}}\n        \
                         policies: {{rate_limits: [{{name: shared, key: route, limit: {limit}, \
                         window: 1h, store: redis}}]}}\n"
                    ),
                    format!(
                        "gateway:\n  redis: {{url: 'redis://{redis}', timeout: 3s, \
                         on_error: closed}}\n"
                    ),
                ),
                None => ("\n    pool: web7\n".to_string(), String::new()),
            };
            (
                format!(
                    "listeners:\n  - name: web7\n    address: {}{target}\
                     pools:\n  - name: web7\n    backends:\n{pool}{gateway}",
                    l7_addr()
                ),
                "  listeners: [web7]\n",
            )
        } else {
            (String::new(), "")
        };
        format!(
            "{l7}xdp:\n  interfaces:\n    - name: {HOST_IFACE}\n      mode: native\n\
             l4:\n  second_chance: {sc}\n  forwarding:\n    source_v4: {me}\n  services:\n\
             \x20   - name: web\n      vip: {VIP}\n      port: {PORT}\n      protocol: tcp\n\
             \x20     backends:\n{backends}{health}\
             admin:\n  address: {admin}\n  allow: [\"{LAN}.0/24\", \"{CLIENT_NET}.0/24\"]\n\
             bgp:\n  router_id: {me}\n  local_as: {EDGE_AS}\n  neighbors:\n\
             \x20   - address: {router}\n      remote_as: {ROUTER_AS}\n\
             \x20 hold_time: 3s\n  connect_retry: 1s\n{announce}\
             \x20 bird:\n    config: {conf}\n    socket: {sock}\n",
            sc = opts.second_chance,
            me = host_ip(i),
            admin = admin(i),
            router = router_ip(),
            conf = self.host_bird_config(i).display(),
            sock = self.host_bird_socket(i).display(),
        )
    }

    /// Writes host `i`'s configuration for `opts`; returns its path.
    pub fn write_config(&self, i: usize, opts: &HostOptions) -> Result<PathBuf> {
        let path = self.host_config(i);
        std::fs::write(&path, self.edge_config(i, opts))?;
        Ok(path)
    }

    /// The router's next hops for the VIP now, sorted (empty: no route).
    pub fn router_paths(&self) -> Result<Vec<Ipv4Addr>> {
        self.router_paths_to(VIP)
    }

    /// The router's next hops for `addr`/32 now, sorted (empty: no route).
    pub fn router_paths_to(&self, addr: Ipv4Addr) -> Result<Vec<Ipv4Addr>> {
        let out = ip(&[
            "-n",
            &self.router,
            "-4",
            "route",
            "show",
            &format!("{addr}/32"),
        ])?;
        let mut hops: Vec<Ipv4Addr> = Vec::new();
        let words: Vec<&str> = out.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] == "via"
                && let Ok(a) = pair[1].parse()
            {
                hops.push(a);
            }
        }
        hops.sort();
        hops.dedup();
        Ok(hops)
    }

    /// Waits until the router's next hops for the VIP are exactly the
    /// addresses of `hosts`.
    pub fn wait_paths(&self, hosts: &[usize], timeout: Duration) -> Result<()> {
        self.wait_paths_to(VIP, hosts, timeout)
    }

    /// Waits until the router's next hops for `addr` are exactly the
    /// addresses of `hosts`.
    pub fn wait_paths_to(&self, addr: Ipv4Addr, hosts: &[usize], timeout: Duration) -> Result<()> {
        let mut want: Vec<Ipv4Addr> = hosts.iter().map(|h| host_ip(*h)).collect();
        want.sort();
        let what = format!("the router's next hops for {addr} to be {want:?}");
        wait::until(&what, timeout, || {
            let now = self.router_paths_to(addr)?;
            Ok((now == want).then_some(()))
        })
        .with_context(|| {
            format!(
                "router now: {:?}",
                self.router_paths_to(addr).unwrap_or_default()
            )
        })
    }

    /// Backend `i`'s HTTP server, while it runs.
    pub fn backend(&self, i: usize) -> Option<&Backend> {
        self.backends.get(i).and_then(Option::as_ref)
    }

    /// Stops backend `i`'s HTTP server (its health check fails from now).
    pub fn stop_backend(&mut self, i: usize) {
        if let Some(b) = self.backends.get_mut(i) {
            *b = None;
        }
    }

    /// Starts backend `i`'s HTTP server again.
    pub fn restart_backend(&mut self, i: usize) -> Result<()> {
        let name = self.plan.backends.get(i).context("no such backend")?;
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT);
        self.backends[i] = Some(Backend::start(name, Some(&self.backend_ns[i]), any)?);
        Ok(())
    }

    /// Fails, with its log, if a BIRD or a decapsulator has exited.
    pub fn check_daemons(&mut self) -> Result<()> {
        for p in self
            .decaps
            .iter_mut()
            .chain(self.switch_pass.iter_mut())
            .chain(self.host_birds.iter_mut())
            .chain(self.router_bird.as_mut())
        {
            p.check_running()?;
        }
        Ok(())
    }

    /// Runs `f` in the client's namespace.
    pub fn in_client<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        netns::run_in(&self.client, f)
    }

    fn start_router_bird(&self, bird: &Path) -> Result<Process> {
        let mut conf = format!(
            "log stderr all;\nrouter id {router};\nprotocol device {{ scan time 10; }}\n\
             # One route per prefix with a next hop per host that announces it.\n\
             protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on limit 16; }}\n\
             # Passive: a host's BIRD starts before edge gives it a session, and\n\
             # an active side would back off after the refusals, up to seconds.\n\
             template bgp edges {{\n  local {router} as {ROUTER_AS};\n  passive on;\n  hold time 3;\n  \
             keepalive time 1;\n  connect retry time 1;\n  connect delay time 1;\n  \
             error wait time 1, 5;\n  ipv4 {{ import all; export none; }};\n}}\n",
            router = router_ip()
        );
        for i in 0..self.plan.hosts {
            conf.push_str(&format!(
                "protocol bgp h{i} from edges {{ neighbor {} as {EDGE_AS}; }}\n",
                host_ip(i)
            ));
        }
        let path = self.dir.path().join("router-bird.conf");
        std::fs::write(&path, conf)?;
        let sock = self.dir.path().join("router-bird.ctl");
        self.bird(bird, &self.router.clone(), &path, &sock, "router-bird")
    }

    fn start_host_bird(&self, bird: &Path, i: usize) -> Result<Process> {
        // A stub until edge writes its own: BIRD needs a readable file to
        // start, and edge rewrites this one and has BIRD read it again.
        // Its device protocol is edge's (same name and settings), so the
        // first reconfiguration keeps it: replacing it would make BIRD
        // lose the neighbour until its next interface scan (10 s).
        let path = self.host_bird_config(i);
        std::fs::write(
            &path,
            format!(
                "router id {};\nprotocol device edge_device {{\n  scan time 10;\n}}\n",
                host_ip(i)
            ),
        )?;
        let sock = self.host_bird_socket(i);
        self.bird(
            bird,
            &self.hosts[i].clone(),
            &path,
            &sock,
            &format!("h{i}-bird"),
        )
    }

    /// Starts BIRD in the foreground in `ns` and waits for its socket.
    fn bird(&self, bird: &Path, ns: &str, conf: &Path, sock: &Path, log: &str) -> Result<Process> {
        let log = self.dir.path().join(format!("{log}.log"));
        let conf_s = conf.display().to_string();
        let sock_s = sock.display().to_string();
        let mut p = Process::spawn(
            &format!("bird in {ns}"),
            Some(ns),
            bird,
            &["-f", "-c", &conf_s, "-s", &sock_s],
            &log,
        )?;
        wait::until(&format!("BIRD's socket in {ns}"), START_TIMEOUT, || {
            p.check_running()?;
            Ok(sock.exists().then_some(()))
        })?;
        Ok(p)
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
        let log = self.dir.path().join(format!("{log}.log"));
        crate::dsr::start_decap(&self.lab, edge_bin, ns, iface, sources, &log)
    }
}

/// Puts `ns` on the segment: veth `iface` to the switch's `port` (in the
/// bridge), the segment's MTU on both ends, `addr`/24 on `iface`, and a
/// default route through the router.
fn join_segment(
    lab: &Lab,
    switch: &str,
    ns: &str,
    iface: &str,
    port: &str,
    addr: Ipv4Addr,
) -> Result<()> {
    lab.link(ns, iface, switch, port)?;
    lab.enslave(switch, port, "br0")?;
    set_mtu(ns, iface)?;
    set_mtu(switch, port)?;
    lab.addr(ns, iface, &format!("{addr}/24"))?;
    ip(&[
        "-n",
        ns,
        "route",
        "add",
        "default",
        "via",
        &router_ip().to_string(),
    ])?;
    Ok(())
}

/// Gives `ns` the shared address `addr` on `lo`, never answered for nor
/// announced on the segment (the router reaches it through BGP, or edge
/// through its tunnel).
fn hold_on_lo(lab: &Lab, ns: &str, addr: Ipv4Addr) -> Result<()> {
    lab.addr(ns, "lo", &format!("{addr}/32"))?;
    sysctl(ns, "net.ipv4.conf.all.arp_ignore", "1")?;
    sysctl(ns, "net.ipv4.conf.all.arp_announce", "2")
}

fn set_mtu(ns: &str, iface: &str) -> Result<()> {
    ip(&["-n", ns, "link", "set", "dev", iface, "mtu", SEGMENT_MTU])?;
    Ok(())
}
