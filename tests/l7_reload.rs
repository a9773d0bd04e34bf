//! Live changes on the L7 side, through a real edge on loopback: reloads by
//! SIGHUP, `edge reload` and `POST /reload` under load (keep-alive, new
//! connections and TLS handshakes) lose no request and take effect; a bad
//! file by any path keeps the running configuration and says where it is
//! wrong; a pool carried over keeps its backends' health; what only a
//! restart can change is refused.

use anyhow::{Context, Result, bail, ensure};
use edge_tests::{
    backend::Backend,
    edge::Edge,
    http,
    loopback::{self, Endpoints},
    process::{Adopted, upgraded_pid},
    proxy::{refusing_port, sample},
    tls::{self, Ca, ClientOptions},
    wait,
};
use openssl::x509::X509;
use std::{
    io::{BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// How a test asks edge to reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Sighup,
    Cli,
    Admin,
}

const TRIGGERS: [Trigger; 3] = [Trigger::Sighup, Trigger::Cli, Trigger::Admin];

/// A running edge whose configuration file the test rewrites.
struct Live {
    edge: Edge,
    at: Endpoints,
    dir: tempfile::TempDir,
}

impl Live {
    fn start(dir: tempfile::TempDir, at: Endpoints, yaml: &str) -> Result<Self> {
        let edge = loopback::start_edge(dir.path(), yaml, &at)
            .with_context(|| format!("config:\n{yaml}"))?;
        Ok(Self { edge, at, dir })
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("edge.yaml")
    }

    /// Replaces the configuration file whole (a rename, so a reload never
    /// reads half of it).
    fn write(&self, yaml: &str) -> Result<()> {
        let tmp = self.dir.path().join("edge.yaml.new");
        std::fs::write(&tmp, yaml)?;
        std::fs::rename(&tmp, self.config())?;
        Ok(())
    }

    fn metrics(&self) -> Result<String> {
        Ok(http::get(self.at.admin, "/metrics")?.text())
    }

    fn generation(&self) -> Result<f64> {
        sample(&self.metrics()?, "edge_config_generation ").context("no generation gauge")
    }

    fn reloads(&self, result: &str) -> Result<f64> {
        let prefix = format!("edge_config_reloads_total{{result=\"{result}\"}} ");
        sample(&self.metrics()?, &prefix).with_context(|| format!("no {prefix}"))
    }

    /// Asks for a reload by `trigger` and waits until it has been decided;
    /// returns whether it was applied and what edge answered (for SIGHUP,
    /// which has no answer, the log).
    fn reload(&self, trigger: Trigger) -> Result<(bool, String)> {
        let (ok_before, err_before) = (self.reloads("ok")?, self.reloads("error")?);
        let log_before = self.edge.log_text().len();
        let answer = match trigger {
            Trigger::Sighup => {
                let pid = self.edge.pid().context("edge is not running")?;
                // SAFETY: kill(2) on the PID of the edge this test started
                // and has not reaped.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
                None
            }
            Trigger::Cli => {
                let out = Command::new(edge_tests::edge::binary()?)
                    .arg("reload")
                    .arg("--config")
                    .arg(self.config())
                    .output()?;
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                Some((out.status.success(), text))
            }
            Trigger::Admin => {
                let m = http::request(self.at.admin, "POST", "/reload", &[])?;
                Some((m.status() == Some(200), m.text()))
            }
        };
        let decided = wait::until("the reload to be counted", Duration::from_secs(20), || {
            let (ok, err) = (self.reloads("ok")?, self.reloads("error")?);
            Ok((ok + err > ok_before + err_before).then_some(ok > ok_before))
        })?;
        let (applied, text) = match answer {
            Some((applied, text)) => (applied, text),
            // The log is a file another process writes: wait for the
            // decision's line rather than read whatever is there now.
            None => (
                decided,
                wait::until("the reload's log line", Duration::from_secs(10), || {
                    let log = self.edge.log_text();
                    let tail = log.get(log_before..).unwrap_or_default();
                    Ok(tail
                        .contains("configuration reload")
                        .then(|| tail.to_string()))
                })?,
            ),
        };
        ensure!(
            applied == decided,
            "{trigger:?} answered {applied} but the counters say {decided}: {text}"
        );
        Ok((applied, text))
    }
}

/// One listener config: `which` answers `body` itself, `/app` goes to pool
/// `app` of `app_backends`, and a TLS listener serves certificate `cert`.
fn config(at: &Endpoints, body: &str, app_backends: &[SocketAddr], cert: &str) -> String {
    let backends: Vec<String> = app_backends
        .iter()
        .map(|a| format!("{{address: {a}}}"))
        .collect();
    format!(
        "\
listeners:
  - name: web
    address: {web}
    routes:
      - name: which
        match: {{path: {{exact: /which}}}}
        respond: {{status: 200, body: \"{body}\"}}
      - name: app
        match: {{path: {{prefix: /app}}}}
        proxy: {{pool: app}}
  - name: secure
    address: {secure}
    routes:
      - name: which
        match: {{path: {{exact: /which}}}}
        respond: {{status: 200, body: \"{body}\"}}
    tls:
      certificates: [{{cert: {cert}.pem, key: {cert}.key}}]
pools:
  - name: app
    backends: [{backends}]
admin: {{address: {admin}}}
server: {{threads: 2, grace_period_seconds: 1}}
",
        web = at.listeners[0],
        secure = at.listeners[1],
        admin = at.admin,
        backends = backends.join(", "),
    )
}

/// What the load clients counted.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    /// Requests sent again on a new connection because a kept-alive one
    /// was closed before any byte of their response: what HTTP clients do
    /// (RFC 9112 §9.3.1) for an idempotent request. Not failures.
    retried: AtomicUsize,
}

/// Sends requests on one keep-alive connection (a new one only when edge
/// closes it between requests) until `stop`.
fn keepalive_client(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let paths = ["/which", "/app/x"];
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut reused = false;
    let mut n = 0usize;
    // Bounded in time (stop) and in count.
    while !stop.load(Ordering::Relaxed) && n < 400_000 {
        n += 1;
        if conn.is_none() {
            let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
                eprintln!("keep-alive: connection refused");
                tally.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let Ok(r) = s.try_clone() else { continue };
            conn = Some((s, BufReader::new(r)));
            reused = false;
        }
        let Some((s, r)) = conn.as_mut() else {
            continue;
        };
        let path = paths[n % 2];
        let req = format!("GET {path} HTTP/1.1\r\nHost: reload.test\r\n\r\n");
        // Whether the request failed only because a kept-alive connection
        // was closed under it: unsent (the write failed), or no byte of an
        // answer (EOF or reset before the status line).
        let (answer, closed_under_it) = match s.write_all(req.as_bytes()) {
            Ok(()) => match http::read_message(r) {
                Ok(None) => (Ok(None), true),
                Err(e) => {
                    let reset = e
                        .downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset);
                    (Err(e), reset)
                }
                ok => (ok, false),
            },
            Err(e) => (Err(e.into()), true),
        };
        match answer {
            Ok(Some(m)) if m.status() == Some(200) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                reused = true;
                if m.header("connection") == Some("close") {
                    conn = None;
                }
            }
            // Sent again on a new connection, as HTTP clients do for an
            // idempotent request (RFC 9112 §9.3.1).
            _ if reused && closed_under_it => {
                tally.retried.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
            other => {
                eprintln!("keep-alive {path}: {other:?}");
                tally.failed.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
}

/// One new connection per request until `stop`.
fn new_connection_client(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) && n < 100_000 {
        n += 1;
        let path = if n.is_multiple_of(2) {
            "/which"
        } else {
            "/app/y"
        };
        match http::get(addr, path) {
            Ok(m) if m.status() == Some(200) => tally.ok.fetch_add(1, Ordering::Relaxed),
            other => {
                eprintln!("new connection {path}: {other:?}");
                tally.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// TLS handshakes and a request each until `stop`.
fn tls_client(addr: SocketAddr, ca: &X509, stop: &AtomicBool, tally: &Tally) {
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) && n < 50_000 {
        n += 1;
        let r = tls::connect(addr, ca, &ClientOptions::default())
            .and_then(|s| tls::get(s, "secure.test", "/which"));
        match r {
            Ok(m) if m.status() == Some(200) => tally.ok.fetch_add(1, Ordering::Relaxed),
            other => {
                eprintln!("tls: {other:?}");
                tally.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Two keep-alive clients and one new-connection client on `web`, and one
/// TLS client on `secure`, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    clients: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(web: SocketAddr, secure: SocketAddr, ca: &X509) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let clients = (0..4)
            .map(|kind| {
                let (stop, tally, trust) = (stop.clone(), tally.clone(), ca.clone());
                thread::spawn(move || match kind {
                    0 | 1 => keepalive_client(web, &stop, &tally),
                    2 => new_connection_client(web, &stop, &tally),
                    _ => tls_client(secure, &trust, &stop, &tally),
                })
            })
            .collect();
        Self {
            stop,
            tally,
            clients,
        }
    }

    /// Stops the clients: requests answered, failed, and sent again.
    fn stop(self) -> (usize, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            let _ = c.join();
        }
        let t = &self.tally;
        (
            t.ok.load(Ordering::Relaxed),
            t.failed.load(Ordering::Relaxed),
            t.retried.load(Ordering::Relaxed),
        )
    }
}

/// The common name of the certificate the TLS listener serves now.
fn served_name(addr: SocketAddr, ca: &Ca) -> Result<String> {
    let s = tls::connect(addr, &ca.cert, &ClientOptions::default())?;
    let cert = tls::served_certificate(&s)?;
    tls::common_name(&cert).context("no common name")
}

fn write_certificates(dir: &Path) -> Result<Ca> {
    let ca = Ca::new("reload test CA")?;
    ca.issue("gen-a", &["secure.test"])?.write(dir, "a")?;
    ca.issue("gen-b", &["secure.test"])?.write(dir, "b")?;
    Ok(ca)
}

fn backend(name: &str) -> Result<Backend> {
    Backend::start(name, None, "127.0.0.1:0".parse()?)
}

#[test]
fn reloads_under_load_lose_no_request_and_take_effect() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = write_certificates(dir.path())?;
    let (a, b) = (backend("a")?, backend("b")?);
    let at = loopback::endpoints(2);
    let file_a = config(&at, "A", &[a.addr()], "a");
    let file_b = config(&at, "B", &[b.addr(), a.addr()], "b");
    let live = Live::start(dir, at.clone(), &file_a)?;
    let (web, secure) = (at.listeners[0], at.listeners[1]);

    let load = Load::start(web, secure, &ca.cert);

    let started = Instant::now();
    let mut reloads = 0usize;
    let mut result = Ok(());
    // One reload a second for 20 s, alternating the files and the triggers.
    while started.elapsed() < Duration::from_secs(20) {
        let next_is_b = reloads.is_multiple_of(2);
        let trigger = TRIGGERS[reloads % 3];
        let step = (|| -> Result<()> {
            live.write(if next_is_b { &file_b } else { &file_a })?;
            let (applied, text) = live.reload(trigger)?;
            ensure!(applied, "{trigger:?} reload refused: {text}");
            let want = if next_is_b { "B" } else { "A" };
            let got = http::get(web, "/which")?.text();
            ensure!(
                got == want,
                "after {trigger:?}: /which says {got:?}, want {want:?}"
            );
            let backend = http::get(web, "/app/z")?;
            let names: &[&str] = if next_is_b { &["b", "a"] } else { &["a"] };
            let served = backend.header("x-backend").unwrap_or_default().to_string();
            ensure!(
                names.contains(&served.as_str()),
                "after {trigger:?}: /app served by {served:?}, want one of {names:?}"
            );
            let cn = served_name(secure, &ca)?;
            let want_cn = if next_is_b { "gen-b" } else { "gen-a" };
            ensure!(
                cn == want_cn,
                "after {trigger:?}: certificate {cn}, want {want_cn}"
            );
            Ok(())
        })();
        reloads += 1;
        if let Err(e) = step {
            result = Err(e);
            break;
        }
        // About one reload a second: the checks above take some of it.
        thread::sleep(Duration::from_millis(800));
    }
    let (ok, failed, retried) = load.stop();
    eprintln!("{reloads} reloads, {ok} requests answered, {failed} failed, {retried} sent again");
    if let Err(e) = result {
        bail!("{e:#}\nedge log:\n{}", live.edge.log_text());
    }
    ensure!(reloads >= 15, "only {reloads} reloads in 20 s");
    ensure!(ok > 1000, "only {ok} requests in 20 s");
    ensure!(failed == 0, "{failed} of {} requests failed", ok + failed);
    // A reload closes no connection: nothing needed sending again.
    ensure!(
        retried == 0,
        "{retried} requests were sent again after a reload"
    );
    ensure!(
        live.generation()? == (reloads + 1) as f64,
        "generation {} after {reloads} reloads",
        live.generation()?
    );
    Ok(())
}

use edge_tests::edge::{line_of, reports_line};

/// edge serving file A (body "A", backend `a`, certificate `a`): the
/// running edge, the file's text and the backend.
fn serving_a() -> Result<(Live, String, Backend)> {
    let dir = tempfile::tempdir()?;
    write_certificates(dir.path())?;
    let a = backend("a")?;
    let at = loopback::endpoints(2);
    let good = config(&at, "A", &[a.addr()], "a");
    let live = Live::start(dir, at, &good)?;
    Ok((live, good, a))
}

#[test]
fn a_bad_file_by_any_path_keeps_the_running_configuration() -> Result<()> {
    let (live, good, _a) = serving_a()?;
    let at = live.at.clone();
    let web = at.listeners[0];
    // Each bad file, and the line its error must point at.
    let syntax = good.replace(
        "        respond: {status: 200, body: \"A\"}\n      - name: app",
        "        respond: {status: 200, body: \"A\"\n      - name: app",
    );
    let unknown = good.replace("  - name: secure\n", "  - name: secure\n    colour: blue\n");
    let undefined = good.replace("proxy: {pool: app}", "proxy: {pool: nowhere}");
    let missing = good.replace("cert: a.pem", "cert: missing.pem");
    let cases = [
        ("a syntax error", syntax.clone(), None),
        (
            "an unknown key",
            unknown.clone(),
            Some(line_of(&unknown, "colour")?),
        ),
        (
            "a route to an undefined pool",
            undefined.clone(),
            Some(line_of(&undefined, "nowhere")?),
        ),
        (
            "a missing certificate",
            missing.clone(),
            Some(line_of(&missing, "missing.pem")?),
        ),
    ];
    let file = live.config();
    for (what, text, line) in &cases {
        ensure!(text != &good, "the {what} case changed nothing");
        for trigger in TRIGGERS {
            live.write(text)?;
            let (applied, answer) = live.reload(trigger)?;
            ensure!(!applied, "{what} by {trigger:?} was applied");
            let located = match line {
                Some(line) => reports_line(&answer, &file, *line),
                None => answer.contains(&format!("{}:", file.display())),
            };
            ensure!(
                located,
                "{what} by {trigger:?}: the answer does not say where (line {line:?}):\n{answer}"
            );
            ensure!(
                live.generation()? == 1.0,
                "{what} by {trigger:?} moved the generation"
            );
            let m = http::get(web, "/which")?;
            ensure!(
                m.status() == Some(200) && m.text() == "A",
                "{what} by {trigger:?}: the running configuration stopped serving: {m:?}"
            );
            ensure!(live.edge.pid().is_some() && live.reloads("ok")? == 0.0);
        }
    }
    ensure!(live.reloads("error")? == (cases.len() * TRIGGERS.len()) as f64);
    // The good file again: applied, generation 2.
    live.write(&good.replace("body: \"A\"", "body: \"A2\""))?;
    let (applied, answer) = live.reload(Trigger::Cli)?;
    ensure!(applied, "the good file was refused: {answer}");
    ensure!(live.generation()? == 2.0);
    ensure!(http::get(web, "/which")?.text() == "A2");
    Ok(())
}

#[test]
fn a_reload_that_keeps_a_pool_keeps_its_backends_health() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let a = backend("a")?;
    let (_refusing, down) = refusing_port()?;
    let at = loopback::endpoints(1);
    // fall 3 at 1 s: a backend that started afresh as healthy would take
    // requests for at least two seconds before its checks took it out.
    let file = |connect: &str| {
        format!(
            "\
listeners:
  - name: web
    address: {web}
    pool: app
pools:
  - name: app
    backends: [{{address: {a}}}, {{address: {down}}}]
    health_check: {{type: tcp, interval: 1s, timeout: 500ms, rise: 1, fall: 3}}
    timeouts: {{connect: {connect}}}
admin: {{address: {admin}}}
server: {{threads: 2, grace_period_seconds: 1}}
",
            web = at.listeners[0],
            a = a.addr(),
            admin = at.admin
        )
    };
    let live = Live::start(dir, at.clone(), &file("2s"))?;
    let gauge = format!("edge_upstream_backend_healthy{{pool=\"app\",backend=\"{down}\"}} ");
    wait::until(
        "the refusing backend to be marked down",
        Duration::from_secs(15),
        || Ok((sample(&live.metrics()?, &gauge) == Some(0.0)).then_some(())),
    )?;
    // A changed pool (another connect timeout) is rebuilt, with its
    // backends' state carried over.
    live.write(&file("3s"))?;
    let (applied, answer) = live.reload(Trigger::Admin)?;
    ensure!(applied, "refused: {answer}");
    for i in 0..20 {
        let m = http::get(at.listeners[0], "/")?;
        ensure!(
            m.status() == Some(200) && m.header("x-backend") == Some("a"),
            "request {i} after the reload: {m:?}"
        );
    }
    ensure!(sample(&live.metrics()?, &gauge) == Some(0.0));
    Ok(())
}

#[test]
fn what_only_a_new_process_can_change_is_refused_in_place_with_where_it_is() -> Result<()> {
    let (live, good, _a) = serving_a()?;
    let at = live.at.clone();
    let moved = SocketAddr::new(at.listeners[0].ip(), at.listeners[0].port() + 10);
    let text = good.replacen(
        &format!("address: {}", at.listeners[0]),
        &format!("address: {moved}"),
        1,
    );
    live.write(&text)?;
    let line = line_of(&text, &moved.to_string())?;
    // SIGHUP and POST /reload change in place only; `edge reload` would
    // upgrade (see the upgrade test).
    for trigger in [Trigger::Sighup, Trigger::Admin] {
        let (applied, answer) = live.reload(trigger)?;
        ensure!(!applied, "{trigger:?}: a new listener address was applied");
        ensure!(
            reports_line(&answer, &live.config(), line) && answer.contains("graceful upgrade"),
            "{trigger:?}: the answer does not say where and what to do:\n{answer}"
        );
        ensure!(http::get(at.listeners[0], "/which")?.text() == "A");
    }
    Ok(())
}

#[test]
fn a_graceful_upgrade_under_load_refuses_no_connection_and_fails_no_request() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = write_certificates(dir.path())?;
    let a = backend("a")?;
    let at = loopback::endpoints(2);
    let file = config(&at, "A", &[a.addr()], "a");
    let mut live = Live::start(dir, at.clone(), &file)?;
    let (web, secure) = (at.listeners[0], at.listeners[1]);
    let old = live.edge.pid().context("edge is not running")?;
    let load = Load::start(web, secure, &ca.cert);
    let mut new = None;
    let result = (|| -> Result<()> {
        // Load on the old process first.
        wait::until("requests to be answered", Duration::from_secs(10), || {
            Ok((http::get(web, "/which")?.text() == "A").then_some(()))
        })?;
        // Another thread count only a new process can have: `edge reload`
        // upgrades. The new process logs where `edge reload` writes.
        live.write(
            &file
                .replace("threads: 2", "threads: 1")
                .replace("body: \"A\"", "body: \"U\""),
        )?;
        let log = live.dir.path().join("upgrade.log");
        let out = Command::new(edge_tests::edge::binary()?)
            .arg("reload")
            .arg("--config")
            .arg(live.config())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(live.dir.path().join("upgrade.err"))?)
            .status()?;
        let said = std::fs::read_to_string(&log)?
            + &std::fs::read_to_string(live.dir.path().join("upgrade.err"))?;
        let pid = upgraded_pid(&said).with_context(|| format!("no new PID in:\n{said}"))?;
        new = Some(Adopted(pid));
        ensure!(out.success(), "edge reload failed:\n{said}");
        ensure!(pid != old, "the PID did not change");
        ensure!(
            said.contains("threads"),
            "the reason for the upgrade is not said:\n{said}"
        );
        wait::until("the new process to answer", Duration::from_secs(20), || {
            Ok((http::get(web, "/which")?.text() == "U").then_some(()))
        })?;
        // The old process drains and exits by itself, while the load goes on.
        let code = live.edge.wait_exit(Duration::from_secs(30))?;
        ensure!(code == Some(0), "the old edge exited with {code:?}");
        // The new process owns the control socket: a reload in place.
        live.write(
            &file
                .replace("threads: 2", "threads: 1")
                .replace("body: \"A\"", "body: \"U2\""),
        )?;
        let out = Command::new(edge_tests::edge::binary()?)
            .arg("reload")
            .arg("--config")
            .arg(live.config())
            .output()?;
        ensure!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("in place"),
            "a reload after the upgrade: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(http::get(web, "/which")?.text() == "U2");
        Ok(())
    })();
    let (ok, failed, retried) = load.stop();
    eprintln!("upgrade under load: {ok} requests answered, {failed} failed, {retried} sent again");
    let logs = format!(
        "old edge:\n{}\nnew edge:\n{}",
        live.edge.log_text(),
        std::fs::read_to_string(live.dir.path().join("upgrade.err")).unwrap_or_default()
    );
    drop(new);
    result.with_context(|| logs.clone())?;
    ensure!(ok > 100, "only {ok} requests");
    ensure!(
        failed == 0,
        "{failed} of {} requests failed\n{logs}",
        ok + failed
    );
    Ok(())
}

#[test]
fn a_second_edge_on_the_same_configuration_is_refused() -> Result<()> {
    let (live, _good, _a) = serving_a()?;
    let mut second = Edge::start(None, &live.config())?;
    let code = second.wait_exit(Duration::from_secs(20))?;
    let log = second.log_text();
    ensure!(
        code == Some(1) && log.contains("another edge runs"),
        "a second edge on {} was not refused (exit {code:?}):\n{log}",
        live.config().display()
    );
    // The first one serves on.
    ensure!(http::get(live.at.listeners[0], "/which")?.text() == "A");
    Ok(())
}
