//! The admin API and `edge ctl` against a real edge on loopback: the JSON
//! views of pools, backends and listeners; drain and undrain taking a
//! backend out of rotation and back, across a reload; access control on
//! changes; the configuration with its secrets redacted; and the service
//! manager's readiness protocol (`READY=1` only once the listeners accept,
//! `RELOADING=1`, `STOPPING=1`).

use anyhow::{Context, Result, bail, ensure};
use edge_tests::{
    backend::Backend,
    edge::{Edge, binary},
    http::{self, Message},
    loopback, wait,
};
use serde_json::Value;
use std::{
    collections::HashMap,
    net::SocketAddr,
    os::unix::net::UnixDatagram,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

const DEADLINE: Duration = Duration::from_secs(15);
const TOKEN: &str = "ops-admin-test-token";

/// A pool named `app-v2` (a name `edge ctl` must carry into a URL as it
/// is) of `backends`.
fn config(listen: SocketAddr, admin: SocketAddr, backends: &[&Backend], timeout: &str) -> String {
    let backends = backends
        .iter()
        .map(|b| format!("{{address: {}}}", b.addr()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "listeners:\n  - name: web\n    address: {listen}\n    pool: app-v2\n\
         pools:\n  - name: app-v2\n    backends: [{backends}]\n    \
         timeouts: {{ connect: {timeout} }}\n    \
         health_check: {{ path: /, interval: 200ms, timeout: 200ms, rise: 1, fall: 1 }}\n\
         admin:\n  address: {admin}\n  token: {TOKEN}\n\
         server:\n  threads: 2\n  grace_period_seconds: 0\n"
    )
}

fn json(m: &Message) -> Result<Value> {
    serde_json::from_slice(&m.body).with_context(|| format!("not JSON: {}", m.text()))
}

fn get_json(admin: SocketAddr, path: &str) -> Result<Value> {
    let m = http::get(admin, path)?;
    ensure!(m.status() == Some(200), "GET {path}: {}", m.text());
    json(&m)
}

/// `edge ctl ARGS` against `admin`; its stdout, or why it failed.
fn ctl(admin: SocketAddr, args: &[&str], token: Option<&str>) -> Result<String> {
    let mut cmd = Command::new(binary()?);
    cmd.arg("ctl")
        .arg("--admin")
        .arg(format!("http://{admin}"))
        .args(args)
        .env_remove("EDGE_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("EDGE_ADMIN_TOKEN", t);
    }
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "edge ctl {args:?} failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// Who served `n` GETs.
fn spread(listen: SocketAddr, n: usize) -> Result<HashMap<String, usize>> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let r = http::get(listen, "/")?;
        ensure!(r.status() == Some(200), "{}", r.text());
        *out.entry(r.header("x-backend").unwrap_or("-").to_string())
            .or_default() += 1;
    }
    Ok(out)
}

/// `edge ctl VERB app-v2 ADDRESS` (drain or undrain) with the token.
fn pool_ctl(admin: SocketAddr, verb: &str, address: SocketAddr) -> Result<String> {
    ctl(admin, &[verb, "app-v2", &address.to_string()], Some(TOKEN))
}

/// Backend `address` is shown draining, and backend `b` takes every new
/// request.
fn assert_drained(admin: SocketAddr, listen: SocketAddr, address: SocketAddr) -> Result<()> {
    let s = get_json(admin, "/api/status")?;
    assert_eq!(state_of(&s, address), Some("draining".into()), "{s}");
    assert_eq!(spread(listen, 10)?, HashMap::from([("b".into(), 10)]));
    Ok(())
}

/// The state `status` gives the backend at `address`.
fn state_of(status: &Value, address: SocketAddr) -> Option<Value> {
    backend_of(status, address).map(|b| b["state"].clone())
}

fn backend_of(status: &Value, address: SocketAddr) -> Option<&Value> {
    status["pools"][0]["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == address.to_string())
}

/// Edge's endpoints and two backends, a and b, beside its listener.
fn two_backends() -> Result<(loopback::Endpoints, Backend, Backend)> {
    let at = loopback::endpoints(1);
    let listen = at.listeners[0];
    let a = Backend::start("a", None, SocketAddr::new(listen.ip(), listen.port() + 11))?;
    let b = Backend::start("b", None, SocketAddr::new(listen.ip(), listen.port() + 12))?;
    Ok((at, a, b))
}

#[test]
fn the_api_shows_backends_and_drains_them_across_a_reload() -> Result<()> {
    let (at, a, b) = two_backends()?;
    let (listen, admin) = (at.listeners[0], at.admin);
    let dir = tempfile::tempdir()?;
    let _cleanup = RemoveOnDrop(edge_userspace::runtime::drains::path_for(
        &dir.path().join("edge.yaml"),
    )?);
    let yaml = config(listen, admin, &[&a, &b], "1s");
    let edge = loopback::start_edge(dir.path(), &yaml, &at)?;

    // Both backends, healthy, with the listener.
    wait::until("both backends healthy", DEADLINE, || {
        let s = get_json(admin, "/api/status")?;
        Ok([a.addr(), b.addr()]
            .iter()
            .all(|x| backend_of(&s, *x).is_some_and(|b| b["state"] == "healthy"))
            .then_some(()))
    })?;
    let status = get_json(admin, "/api/status")?;
    assert_eq!(status["generation"], 1);
    assert_eq!(status["listeners"][0]["name"], "web");
    assert_eq!(status["listeners"][0]["kind"], "http");
    assert_eq!(status["pools"][0]["name"], "app-v2");
    assert_eq!(status["pools"][0]["breaker"], Value::Null);
    assert_eq!(status["services"], Value::Array(vec![]));

    assert_eq!(spread(listen, 10)?.len(), 2);
    let status = get_json(admin, "/api/status")?;
    assert_eq!(status["pools"][0]["requests_total"], 10, "{status}");
    assert!(
        status["pools"][0]["latency_ms"]["p99"].is_number(),
        "{status}"
    );
    assert!(status["listeners"][0]["connections_total"].as_u64() >= Some(10));

    // A change needs the token: 401 without it, nothing drained.
    let m = http::request(
        admin,
        "POST",
        &format!("/api/pools/app-v2/backends/{}/drain", a.addr()),
        &[],
    )?;
    assert_eq!(m.status(), Some(401), "{}", m.text());
    // A browser page of another origin cannot make a change, token or not.
    let bearer = format!("Bearer {TOKEN}");
    let m = http::request(
        admin,
        "POST",
        &format!("/api/pools/app-v2/backends/{}/drain", a.addr()),
        &[
            ("authorization", &bearer),
            ("origin", "http://evil.example"),
        ],
    )?;
    assert_eq!(m.status(), Some(403), "{}", m.text());
    let err = ctl(admin, &["drain", "app-v2", &a.addr().to_string()], None).unwrap_err();
    assert!(format!("{err:#}").contains("401"), "{err:#}");
    assert_eq!(spread(listen, 4)?.len(), 2);

    // Drained: shown as such, and no new request reaches it.
    let said = pool_ctl(admin, "drain", a.addr())?;
    assert!(said.contains("drained"), "{said}");
    let status = get_json(admin, "/api/pools")?;
    let drained = status["pools"][0]["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|x| x["address"] == a.addr().to_string()))
        .context("backend a listed")?;
    assert_eq!(drained["state"], "draining");
    assert_eq!(drained["drained"], true);
    assert_eq!(spread(listen, 10)?, HashMap::from([("b".into(), 10)]));
    let table = ctl(admin, &["backends"], None)?;
    assert!(
        table
            .lines()
            .any(|l| l.contains(&a.addr().to_string()) && l.contains("draining")),
        "{table}"
    );

    // A reload that rebuilds the pool keeps the drain.
    let reload_with = |backends: &[&Backend], timeout: &str| -> Result<String> {
        std::fs::write(
            dir.path().join("edge.yaml"),
            config(listen, admin, backends, timeout),
        )?;
        ctl(admin, &["reload"], Some(TOKEN))
    };
    let said = reload_with(&[&a, &b], "2s")?;
    assert!(said.contains("generation 2"), "{said}");
    assert_eq!(spread(listen, 10)?, HashMap::from([("b".into(), 10)]));
    let s = get_json(admin, "/api/status")?;
    assert_eq!(s["generation"], 2);
    assert_eq!(state_of(&s, a.addr()), Some("draining".into()));
    // So do one that removes the backend and one that adds it back (a new
    // backend object: the drain is remembered by pool and address).
    reload_with(&[&b], "2s")?;
    let said = reload_with(&[&a, &b], "2s")?;
    assert!(said.contains("generation 4"), "{said}");
    assert_drained(admin, listen, a.addr())?;

    // Undrained: back in rotation.
    pool_ctl(admin, "undrain", a.addr())?;
    assert_eq!(spread(listen, 10)?.len(), 2);

    // Unknown pools and bad addresses say why.
    let m = http::send(
        admin,
        "POST",
        &format!("/api/pools/nope/backends/{}/drain", a.addr()),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        b"",
    )?;
    assert_eq!(m.status(), Some(404));
    assert!(json(&m)?["error"].as_str().unwrap_or("").contains("nope"));
    let m = http::send(
        admin,
        "POST",
        "/api/pools/app-v2/backends/not-an-address/drain",
        &[("authorization", &format!("Bearer {TOKEN}"))],
        b"",
    )?;
    assert_eq!(m.status(), Some(400), "{}", m.text());

    // The configuration, without its secret.
    let m = http::get(admin, "/api/config")?;
    assert_eq!(m.status(), Some(200));
    assert!(!m.text().contains(TOKEN), "the token leaked: {}", m.text());
    let c = json(&m)?;
    assert_eq!(c["config"]["admin"]["token"], "<redacted>");
    assert_eq!(c["config"]["pools"][0]["name"], "app-v2");
    assert_eq!(c["generation"], 4);

    // The status page, and `edge ctl status` in both forms.
    let page = http::get(admin, "/")?;
    assert_eq!(page.status(), Some(200));
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.header("content-type")
    );
    let table = ctl(admin, &["status"], None)?;
    assert!(
        table.contains("generation 4") && table.contains("app-v2"),
        "{table}"
    );
    let v: Value = serde_json::from_str(&ctl(admin, &["status", "--json"], None)?)?;
    assert_eq!(v["pools"][0]["name"], "app-v2");
    assert!(
        edge.log_text().contains("admin change"),
        "changes are logged"
    );
    Ok(())
}

/// Receives datagrams on a socket the test owns, as systemd would.
struct Manager {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Manager {
    fn bind(path: &Path) -> Result<Self> {
        let socket = UnixDatagram::bind(path)?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Self {
            socket,
            seen: Vec::new(),
        })
    }

    /// Waits for a message containing `line`; returns when it came.
    fn expect(&mut self, line: &str) -> Result<Instant> {
        // As long as the suite gives an edge to get ready on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 4096];
        loop {
            if Instant::now() > deadline {
                bail!("no {line:?} from edge; it sent {:?}", self.seen);
            }
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(|l| l == line) {
                    return Ok(Instant::now());
                }
            }
        }
    }
}

#[test]
fn edge_tells_the_service_manager_when_it_is_ready_reloads_and_stops() -> Result<()> {
    let (at, a, b) = two_backends()?;
    let (listen, admin) = (at.listeners[0], at.admin);
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("edge.yaml");
    std::fs::write(&config_path, config(listen, admin, &[&a, &b], "1s"))?;
    let notify = dir.path().join("notify.sock");
    let mut manager = Manager::bind(&notify)?;
    let notify_text = notify.to_string_lossy().into_owned();
    let mut edge = Edge::start_env(
        &binary()?,
        None,
        &config_path,
        &[("NOTIFY_SOCKET", &notify_text)],
    )?;
    manager.expect("READY=1")?;
    // Ready means serving: the first request after it is answered.
    let r = http::get(listen, "/")?;
    assert_eq!(r.status(), Some(200), "{}", r.text());
    assert!(http::get(admin, "/healthz")?.status() == Some(200));

    let pid = edge.pid().context("edge's pid")?;
    // SAFETY: kill has no memory preconditions; the PID is our child's.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    manager.expect("RELOADING=1")?;
    manager.expect("READY=1")?;
    let reloading = manager
        .seen
        .iter()
        .find(|m| m.contains("RELOADING=1"))
        .cloned()
        .unwrap_or_default();
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    manager.expect("STOPPING=1")?;
    edge.wait_exit(DEADLINE)?;
    Ok(())
}

#[test]
fn consumers_usage_is_listed_and_kept_across_a_reload() -> Result<()> {
    let at = loopback::endpoints(1);
    let (listen, admin) = (at.listeners[0], at.admin);
    let a = Backend::start("a", None, SocketAddr::new(listen.ip(), listen.port() + 11))?;
    let yaml = |extra: &str| {
        format!(
            "consumers:\n  - name: alice\n    api_keys: [{{key: alice-key-0123456789}}]\n\
             {extra}\
             listeners:\n  - name: web\n    address: {listen}\n    routes:\n      - name: api\n        \
             match: {{ path: {{ prefix: / }} }}\n        \
             policies: {{ auth: {{ api_key: {{ header: apikey }} }} }}\n        \
             proxy: {{ pool: app }}\n\
             pools:\n  - name: app\n    backends: [{{address: {}}}]\n\
             admin:\n  address: {admin}\n\
             server:\n  threads: 2\n  grace_period_seconds: 0\n",
            a.addr()
        )
    };
    let dir = tempfile::tempdir()?;
    let _edge = loopback::start_edge(dir.path(), &yaml(""), &at)?;
    for _ in 0..3 {
        let r = http::request(listen, "GET", "/", &[("apikey", "alice-key-0123456789")])?;
        assert_eq!(r.status(), Some(200), "{}", r.text());
    }
    let r = http::get(listen, "/")?;
    assert_eq!(r.status(), Some(401));
    let alice = |v: &Value| {
        v["consumers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == "alice").cloned())
    };
    // Usage is counted once the request is logged, after its answer.
    let v = wait::until("alice's 3 requests counted", DEADLINE, || {
        let v = get_json(admin, "/api/consumers")?;
        Ok(alice(&v)
            .is_some_and(|a| a["requests"]["2xx"] == 3)
            .then_some(v))
    })?;
    let a_usage = alice(&v).context("alice listed")?;
    assert_eq!(a_usage["requests_total"], 3, "{v}");
    assert!(
        !v.to_string().contains("alice-key-0123456789"),
        "the key leaked: {v}"
    );
    // A reload adding a consumer keeps alice's counts.
    std::fs::write(
        dir.path().join("edge.yaml"),
        yaml("  - name: bob\n    api_keys: [{key: bob-key-0123456789}]\n"),
    )?;
    let m = http::request(admin, "POST", "/api/reload", &[])?;
    assert_eq!(m.status(), Some(200), "{}", m.text());
    let v = get_json(admin, "/api/consumers")?;
    assert_eq!(
        alice(&v).context("alice listed")?["requests_total"],
        3,
        "{v}"
    );
    assert!(
        v["consumers"].as_array().is_some_and(|cs| cs
            .iter()
            .any(|c| c["name"] == "bob" && c["requests_total"] == 0)),
        "{v}"
    );
    Ok(())
}

#[test]
fn changes_from_a_peer_outside_admin_allow_are_refused() -> Result<()> {
    let at = loopback::endpoints(1);
    let (listen, admin) = (at.listeners[0], at.admin);
    let a = Backend::start("a", None, SocketAddr::new(listen.ip(), listen.port() + 11))?;
    let yaml = config(listen, admin, &[&a], "1s")
        .replace("  token: ", "  allow: [192.0.2.0/24]\n  token: ");
    let dir = tempfile::tempdir()?;
    let _edge = loopback::start_edge(dir.path(), &yaml, &at)?;
    let bearer = format!("Bearer {TOKEN}");
    let m = http::request(admin, "POST", "/api/reload", &[("authorization", &bearer)])?;
    assert_eq!(m.status(), Some(403), "{}", m.text());
    let m = http::request(
        admin,
        "POST",
        &format!("/api/pools/app-v2/backends/{}/drain", a.addr()),
        &[("authorization", &bearer)],
    )?;
    assert_eq!(m.status(), Some(403), "{}", m.text());
    // Reads stay open.
    let s = get_json(admin, "/api/status")?;
    assert_eq!(s["generation"], 1);
    assert_eq!(
        backend_of(&s, a.addr()).map(|b| b["drained"].clone()),
        Some(Value::Bool(false))
    );
    Ok(())
}

/// Removes a file when dropped (the drains file a test's edge left).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn drains_outlive_a_restart() -> Result<()> {
    let (at, a, b) = two_backends()?;
    let (listen, admin) = (at.listeners[0], at.admin);
    let dir = tempfile::tempdir()?;
    let yaml = config(listen, admin, &[&a, &b], "1s");
    let saved = edge_userspace::runtime::drains::path_for(&dir.path().join("edge.yaml"))?;
    let _cleanup = RemoveOnDrop(saved.clone());
    let mut edge = loopback::start_edge(dir.path(), &yaml, &at)?;
    pool_ctl(admin, "drain", a.addr())?;
    assert_eq!(spread(listen, 6)?, HashMap::from([("b".into(), 6)]));
    edge.stop(DEADLINE)?;
    drop(edge);

    // The next edge on this configuration starts with the drain.
    let _edge = loopback::start_edge(dir.path(), &yaml, &at)?;
    assert_drained(admin, listen, a.addr())?;
    pool_ctl(admin, "undrain", a.addr())?;
    let text = std::fs::read_to_string(&saved)?;
    assert!(!text.contains(&a.addr().to_string()), "{text}");
    assert_eq!(spread(listen, 10)?.len(), 2);
    Ok(())
}
