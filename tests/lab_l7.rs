//! The first packet-to-response slice in a real network lab:
//!
//! ```text
//! client ns ── veth ── edge ns (XDP native on `l0`, edge proxy) ── bridge ── be1, be2
//! 10.201.1.2/.3         10.201.1.1 │ 10.201.2.1                          10.201.2.11/.12
//! ```
//!
//! Real HTTP requests go through the L7 proxy to two backends in round
//! robin; the XDP counters and the Prometheus output are checked; a source
//! on the deny list cannot even connect while its neighbour can; and edge
//! detaches XDP when it stops.

use anyhow::Result;
use edge_tests::{
    edge::Edge,
    http,
    lab::Lab,
    netns,
    proxy::sample,
    topology::{self, EDGE_IFACE, Plan},
    wait,
};
use std::{collections::HashMap, net::SocketAddr, time::Duration};

const PLAN: Plan<'static> = Plan {
    client_net: "10.201.1",
    backend_net: "10.201.2",
    backends: &["be1", "be2"],
};
const REQUESTS: usize = 6;

fn scrape(client: &str) -> Result<String> {
    let admin: SocketAddr = PLAN.admin();
    let m = netns::run_in(client, move || http::get(admin, "/metrics"))?;
    Ok(m.text())
}

#[test]
fn l7_proxy_round_robin_xdp_counters_and_deny_list() -> Result<()> {
    let topo = topology::build(Lab::new()?, &PLAN)?;
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("edge.yaml");
    std::fs::write(
        &config_path,
        PLAN.edge_config("app", 1, &["2001:db8:bad::/48"]),
    )?;

    let mut edge = Edge::start(Some(&topo.edge), &config_path)?;
    edge.wait_ready(Some(&topo.client), PLAN.admin(), Duration::from_secs(30))?;
    assert_eq!(
        topo.lab.xdp_mode(Some(&topo.edge), EDGE_IFACE)?,
        Some("native"),
        "XDP attached natively on l0"
    );

    // Real HTTP through the proxy: each backend in turn.
    let listen = PLAN.listen();
    let mut order = Vec::new();
    for _ in 0..REQUESTS {
        let resp = netns::run_in(&topo.client, move || http::get(listen, "/hello"))?;
        assert_eq!(resp.status(), Some(200), "response: {resp:?}");
        let body = resp.text();
        let xff = format!("x-forwarded-for: {}", PLAN.client_ip());
        assert!(body.contains(&xff), "XFF in {body}");
        assert!(body.contains("x-forwarded-proto: http"), "XFP in {body}");
        order.push(resp.header("x-backend").unwrap_or("?").to_string());
    }
    for pair in order.windows(2) {
        assert_ne!(pair[0], pair[1], "round robin alternates: {order:?}");
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for b in &order {
        *counts.entry(b.as_str()).or_default() += 1;
    }
    for b in &topo.backends {
        assert_eq!(counts.get(b.name()), Some(&(REQUESTS / 2)), "{order:?}");
        assert_eq!(b.requests(), REQUESTS / 2);
    }

    // The denied source's SYNs die in XDP; its neighbour connects.
    let denied_ip = PLAN.second_client_ip();
    let refused = netns::run_in(&topo.client, move || {
        Ok(http::connect_from(denied_ip, listen, Duration::from_millis(1500)).is_err())
    })?;
    assert!(refused, "a denied source must not connect");
    let client_ip = PLAN.client_ip();
    let ok = netns::run_in(&topo.client, move || {
        http::get_from(client_ip, listen, "/", Duration::from_secs(5))
    })?;
    assert_eq!(ok.status(), Some(200));

    // Counters: XDP classes and L7 statuses, as Prometheus shows them.
    let metrics = wait::until(
        "metrics to show the traffic",
        Duration::from_secs(10),
        || {
            let m = scrape(&topo.client)?;
            let l7 = sample(&m, "edge_xdp_packets_total{class=\"l7\"}").unwrap_or(0.0);
            let denied = sample(&m, "edge_xdp_packets_total{class=\"denied\"}").unwrap_or(0.0);
            let ok = sample(
                &m,
                "edge_http_requests_total{listener=\"web\",route=\"default\",pool=\"app\",status_class=\"2xx\"}",
            )
            .unwrap_or(0.0);
            Ok((l7 > 0.0 && denied >= 1.0 && ok >= (REQUESTS + 1) as f64).then_some(m))
        },
    )?;
    // Each request is at least a SYN, the request and the ACKs: several
    // L7 packets per request, and the bytes to go with them.
    let l7 = sample(&metrics, "edge_xdp_packets_total{class=\"l7\"}").unwrap_or(0.0);
    assert!(l7 >= (3 * REQUESTS) as f64, "l7 packets {l7}\n{metrics}");
    let l7_bytes = sample(&metrics, "edge_xdp_bytes_total{class=\"l7\"}").unwrap_or(0.0);
    assert!(
        l7_bytes >= l7 * 54.0,
        "l7 bytes {l7_bytes} for {l7} packets"
    );
    assert_eq!(
        sample(
            &metrics,
            "edge_http_requests_total{listener=\"web\",route=\"default\",pool=\"app\",status_class=\"2xx\"}"
        ),
        Some((REQUESTS + 1) as f64),
        "{metrics}"
    );
    assert!(
        metrics.contains("edge_xdp_attached{interface=\"l0\",mode=\"native\"} 1"),
        "{metrics}"
    );

    // SIGTERM: edge exits cleanly and takes XDP with it.
    assert_eq!(
        edge.stop(Duration::from_secs(15))?,
        Some(0),
        "log:\n{}",
        edge.log_text()
    );
    assert_eq!(
        topo.lab.xdp_mode(Some(&topo.edge), EDGE_IFACE)?,
        None,
        "XDP detached on exit"
    );
    Ok(())
}

const BAN_PLAN: Plan<'static> = Plan {
    client_net: "10.204.1",
    backend_net: "10.204.2",
    backends: &["be1"],
};

/// edge in the lab with a route that wants an API key and bans a source
/// after three refusals, for `ban_for`; the first client address (the
/// one admin requests come from) is never banned.
fn ban_config(ban_for: &str) -> String {
    let p = &BAN_PLAN;
    format!(
        "\
xdp:
  interfaces: [{{name: {EDGE_IFACE}, mode: native}}]
consumers:
  - name: alice
    api_keys: [{{key: alice-key-0123456789}}]
gateway:
  bans: {{after: 3, within: 1m, ban_for: {ban_for}, never: ['{never}/32']}}
listeners:
  - name: web
    address: {listen}
    pool: app
    policies:
      auth: {{api_key: {{}}}}
pools:
  - name: app
    backends: [{{address: {backend}}}]
admin:
  address: {admin}
  allow: ['{client_net}.0/24']
server: {{threads: 1, grace_period_seconds: 0}}
",
        never = p.client_ip(),
        listen = p.listen(),
        backend = p.backend_addr(0),
        admin = p.admin(),
        client_net = p.client_net,
    )
}

/// Four challenges (no key: 401, not counted) and then three refusals
/// that count (a wrong key: 401) from one source.
fn strike_three(client: &str, from: std::net::IpAddr, listen: SocketAddr) -> Result<()> {
    use std::io::Write;
    // Challenges first (no key at all): they never ban, however many.
    for _ in 0..4 {
        let resp = netns::run_in(client, move || {
            http::get_from(from, listen, "/", Duration::from_secs(5))
        })?;
        assert_eq!(resp.status(), Some(401), "{resp:?}");
    }
    for _ in 0..3 {
        let resp = netns::run_in(client, move || {
            let mut s = http::connect_from(from, listen, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                s,
                "GET / HTTP/1.1\r\nHost: {listen}\r\napikey: wrong-key-0123456789\r\nConnection: close\r\n\r\n"
            )?;
            http::read_message(&mut std::io::BufReader::new(s))?
                .ok_or_else(|| anyhow::anyhow!("no answer"))
        })?;
        assert_eq!(resp.status(), Some(401), "{resp:?}");
    }
    Ok(())
}

fn connects(client: &str, from: std::net::IpAddr, listen: SocketAddr) -> Result<bool> {
    netns::run_in(client, move || {
        Ok(http::connect_from(from, listen, Duration::from_millis(700)).is_ok())
    })
}

#[test]
fn a_source_that_keeps_failing_is_banned_in_xdp_listed_lifted_and_expires() -> Result<()> {
    let topo = topology::build(Lab::new()?, &BAN_PLAN)?;
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("edge.yaml");
    std::fs::write(&config_path, ban_config("1h"))?;
    let mut edge = Edge::start(Some(&topo.edge), &config_path)?;
    edge.wait_ready(
        Some(&topo.client),
        BAN_PLAN.admin(),
        Duration::from_secs(30),
    )?;
    let (listen, admin) = (BAN_PLAN.listen(), BAN_PLAN.admin());
    let offender = BAN_PLAN.second_client_ip();
    let office = BAN_PLAN.client_ip();

    // The operator's own address fails as often, and is never banned.
    for _ in 0..2 {
        strike_three(&topo.client, office, listen)?;
    }
    assert!(connects(&topo.client, office, listen)?);

    // Three refusals: the source's SYNs now die in XDP.
    // The ban is placed when the third answer is logged, just after it
    // is sent.
    strike_three(&topo.client, offender, listen)?;
    wait::until("the source to be banned", Duration::from_secs(5), || {
        Ok((!connects(&topo.client, offender, listen)?).then_some(()))
    })
    .map_err(|e| anyhow::anyhow!("{e}\nlog:\n{}", edge.log_text()))?;
    assert!(
        connects(&topo.client, office, listen)?,
        "its neighbour still does"
    );
    assert!(
        connects(&topo.client, offender, admin)?,
        "a ban takes the listeners and VIPs, not the host's other ports"
    );
    let listed = netns::run_in(&topo.client, move || http::get(admin, "/bans"))?;
    assert_eq!(listed.status(), Some(200));
    assert!(
        listed
            .text()
            .contains(&format!("\"address\":\"{offender}\"")),
        "{}",
        listed.text()
    );
    let metrics = netns::run_in(&topo.client, move || http::get(admin, "/metrics"))?.text();
    assert!(
        sample(&metrics, "edge_xdp_packets_total{class=\"banned\"}").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "edge_bans_total"), Some(1.0), "{metrics}");

    // A reload keeps the standing ban.
    let reload = netns::run_in(&topo.client, move || {
        http::request(admin, "POST", "/reload", &[])
    })?;
    assert_eq!(reload.status(), Some(200), "{reload:?}");
    assert!(
        !connects(&topo.client, offender, listen)?,
        "a reload must not lift a ban"
    );

    // Lifted through the admin endpoint: it connects again at once.
    let path = format!("/bans/{offender}");
    let lifted = netns::run_in(&topo.client, move || {
        http::request(admin, "DELETE", &path, &[])
    })?;
    assert_eq!(lifted.status(), Some(200), "{lifted:?}");
    assert!(connects(&topo.client, offender, listen)?);

    // A short ban, placed by a reload's new settings, runs out by itself.
    std::fs::write(&config_path, ban_config("2s"))?;
    let reload = netns::run_in(&topo.client, move || {
        http::request(admin, "POST", "/reload", &[])
    })?;
    assert_eq!(reload.status(), Some(200), "{reload:?}");
    strike_three(&topo.client, offender, listen)?;
    wait::until(
        "the source to be banned again",
        Duration::from_secs(5),
        || Ok((!connects(&topo.client, offender, listen)?).then_some(())),
    )?;
    wait::until("the ban to expire", Duration::from_secs(15), || {
        Ok(connects(&topo.client, offender, listen)?.then_some(()))
    })?;
    wait::until(
        "the expired ban to leave the list",
        Duration::from_secs(10),
        || {
            let listed = netns::run_in(&topo.client, move || http::get(admin, "/bans"))?;
            Ok((!listed.text().contains(&offender.to_string())).then_some(()))
        },
    )?;

    assert_eq!(
        edge.stop(Duration::from_secs(15))?,
        Some(0),
        "log:\n{}",
        edge.log_text()
    );
    Ok(())
}
