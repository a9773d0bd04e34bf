//! The standard L7 lab, shared by the network tests and `cargo xtask run`:
//!
//! ```text
//! client ── veth c0/l0 ── edge ── bridge br0 ── backend 1..n
//! <net>.2, <net>.3        <net>.1 │ <bnet>.1      <bnet>.11.. :8000
//! ```
//!
//! The client has two addresses so that one can be put on a deny list
//! while the other keeps working. Backends are [`Backend`]s, each in its
//! own namespace.

use crate::{backend::Backend, lab::Lab};
use anyhow::{Context, Result};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};

/// Port every backend listens on.
pub const BACKEND_PORT: u16 = 8000;
/// Port of edge's L7 listener.
pub const LISTEN_PORT: u16 = 8080;
/// Port of edge's admin endpoint.
pub const ADMIN_PORT: u16 = 9100;
/// Name of edge's interface towards the client, where XDP attaches.
pub const EDGE_IFACE: &str = "l0";

/// Addressing of the lab: two /24s given by their first three octets.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'a> {
    /// Client-side /24, e.g. `"10.201.1"`.
    pub client_net: &'a str,
    /// Backend-side /24, e.g. `"10.201.2"`.
    pub backend_net: &'a str,
    /// Backend names (and namespace suffixes).
    pub backends: &'a [&'a str],
}

impl Plan<'_> {
    fn ip(net: &str, host: u8) -> IpAddr {
        format!("{net}.{host}")
            .parse()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    /// edge's address on the client side.
    pub fn edge_ip(&self) -> IpAddr {
        Self::ip(self.client_net, 1)
    }

    /// The client's main address.
    pub fn client_ip(&self) -> IpAddr {
        Self::ip(self.client_net, 2)
    }

    /// The client's second address, for deny-list tests.
    pub fn second_client_ip(&self) -> IpAddr {
        Self::ip(self.client_net, 3)
    }

    /// Address of backend `i`.
    pub fn backend_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(Self::ip(self.backend_net, 11 + i as u8), BACKEND_PORT)
    }

    /// edge's L7 listener.
    pub fn listen(&self) -> SocketAddr {
        SocketAddr::new(self.edge_ip(), LISTEN_PORT)
    }

    /// edge's admin endpoint.
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::new(self.edge_ip(), ADMIN_PORT)
    }

    /// An edge configuration for this lab: XDP native on [`EDGE_IFACE`]
    /// denying the client's second address (and `extra_deny`), listener
    /// `web` on [`Plan::listen`] to pool `pool` over every backend in round
    /// robin, the admin endpoint, `threads` workers, no shutdown grace.
    pub fn edge_config(&self, pool: &str, threads: usize, extra_deny: &[&str]) -> String {
        let mut deny = format!("    - {}/32\n", self.second_client_ip());
        for d in extra_deny {
            deny.push_str(&format!("    - {d}\n"));
        }
        let backends: String = (0..self.backends.len())
            .map(|i| format!("      - address: {}\n", self.backend_addr(i)))
            .collect();
        format!(
            "xdp:\n  interfaces:\n    - name: {EDGE_IFACE}\n      mode: native\n  deny:\n{deny}\
             listeners:\n  - name: web\n    address: {}\n    pool: {pool}\n\
             pools:\n  - name: {pool}\n    algorithm: round_robin\n    backends:\n{backends}\
             admin:\n  address: {}\n\
             server:\n  threads: {threads}\n  grace_period_seconds: 0\n",
            self.listen(),
            self.admin()
        )
    }
}

/// A built lab with its backends running.
pub struct L7Lab {
    // Field order is drop order: backends stop before namespaces go.
    /// The backends, in plan order.
    pub backends: Vec<Backend>,
    /// The namespaces.
    pub lab: Lab,
    /// The client's namespace.
    pub client: String,
    /// edge's namespace.
    pub edge: String,
}

/// Builds `plan` inside `lab` and starts its backends.
pub fn build(mut lab: Lab, plan: &Plan<'_>) -> Result<L7Lab> {
    let client = lab.host("client")?;
    let edge = lab.host("edge")?;
    lab.link(&client, "c0", &edge, EDGE_IFACE)?;
    lab.addr(&client, "c0", &format!("{}/24", plan.client_ip()))?;
    lab.addr(&client, "c0", &format!("{}/24", plan.second_client_ip()))?;
    lab.addr(&edge, EDGE_IFACE, &format!("{}/24", plan.edge_ip()))?;
    let bridge_ip = format!("{}.1", plan.backend_net);
    lab.route(
        &client,
        &format!("{}.0/24", plan.backend_net),
        &plan.edge_ip().to_string(),
    )?;
    lab.bridge(&edge, "br0")?;
    lab.addr(&edge, "br0", &format!("{bridge_ip}/24"))?;
    let mut backends = Vec::new();
    for (i, name) in plan.backends.iter().enumerate() {
        let ns = lab.host(name)?;
        let port = format!("p{i}");
        lab.link(&ns, "eth0", &edge, &port)?;
        lab.enslave(&edge, &port, "br0")?;
        let addr = plan.backend_addr(i);
        lab.addr(&ns, "eth0", &format!("{}/24", addr.ip()))?;
        lab.route(&ns, &format!("{}.0/24", plan.client_net), &bridge_ip)?;
        backends.push(Backend::start(name, Some(&ns), addr)?);
    }
    Ok(L7Lab {
        backends,
        lab,
        client,
        edge,
    })
}

/// The backends (as JSON objects) of pool or L4 service `name` in the
/// admin API's `GET /api/status` answer `json`: `list` is `"pools"` or
/// `"services"`.
pub fn status_backends(json: &str, list: &str, name: &str) -> Result<Vec<Value>> {
    let status: Value = serde_json::from_str(json).with_context(|| format!("not JSON: {json}"))?;
    let entry = status
        .get(list)
        .and_then(Value::as_array)
        .with_context(|| format!("no {list:?} array in {json}"))?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        .with_context(|| format!("no {name:?} in {list:?} of {json}"))?;
    entry
        .get("backends")
        .and_then(Value::as_array)
        .cloned()
        .with_context(|| format!("{name:?} has no backends array in {json}"))
}

/// The `address` of every backend of pool or L4 service `name` in `GET
/// /api/status`'s answer `json` (see [`status_backends`]), sorted.
pub fn status_addresses(json: &str, list: &str, name: &str) -> Result<Vec<String>> {
    let mut out = status_backends(json, list, name)?
        .iter()
        .map(|b| {
            b.get("address")
                .and_then(Value::as_str)
                .map(str::to_string)
                .with_context(|| format!("a backend of {name:?} without an address: {b}"))
        })
        .collect::<Result<Vec<_>>>()?;
    out.sort();
    Ok(out)
}

/// Field `field` of backend `address` of pool or L4 service `name` in `GET
/// /api/status`'s answer `json`, as a boolean (`drained`, `healthy`).
pub fn status_backend_flag(
    json: &str,
    list: &str,
    name: &str,
    address: &str,
    field: &str,
) -> Result<bool> {
    let backends = status_backends(json, list, name)?;
    let b = backends
        .iter()
        .find(|b| b.get("address").and_then(Value::as_str) == Some(address))
        .with_context(|| format!("{name:?} has no backend {address} in {json}"))?;
    b.get(field)
        .and_then(Value::as_bool)
        .with_context(|| format!("backend {address} of {name:?} has no boolean {field:?}: {b}"))
}
