//! Aggregation, traffic splitting and mirroring through a real edge on
//! loopback, with real clients and real backends:
//!
//! - `aggregate` routes call several pools in parallel and merge the JSON
//!   answers (under a `group`, or at the top level) after `target`,
//!   `allow`/`deny` and `mapping`; the path template takes the route's
//!   regex captures, only allow-listed client headers go upstream; a slow,
//!   failing or non-JSON call leaves the others' answer with
//!   `X-Edge-Completed: false` and `X-Edge-Failed`; all failing is a 502;
//!   a client going away cancels the calls; each call is counted.
//! - `split` sends a percentage to a canary pool (sticky by a header when
//!   asked), requests matching a header condition to a beta pool, and a
//!   reload changes the percentage in place.
//! - `mirror` sends copies to a shadow pool without the client ever waiting
//!   for it, whether the shadow is slow or down, and never more than
//!   `max_in_flight` copies at once.
//!
//! The backends that must do something particular (answer JSON late, 500,
//! text, hold a request and notice when edge closes its connection, count
//! how many requests they hold at once) are written here on std::net and
//! threads; the shared echo [`Backend`] plays the plain pools.

use anyhow::{Context, Result, ensure};
use edge_tests::{
    backend::Backend,
    edge::Edge,
    http::{self, Message},
    loopback::{Endpoints, endpoints, start_edge},
    metrics::metric,
    proxy::refusing_port,
    wait,
};
use serde_json::{Value, json};
use std::{
    collections::{BTreeSet, HashMap},
    io::{BufReader, ErrorKind, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(10);
/// How often the local upstreams look at their stop flag and their peer.
const STEP: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------
// edge, its configuration and what it answered
// ---------------------------------------------------------------------

/// A running edge with its configuration directory; stops when dropped.
struct Live {
    edge: Edge,
    at: Endpoints,
    dir: tempfile::TempDir,
}

impl Live {
    /// Starts edge with one listener `web` holding `routes` (YAML lines
    /// indented for `listeners[0].routes`) and `pools` (see [`pool`]).
    fn start(routes: &str, pools: &[String]) -> Result<Self> {
        let at = endpoints(1);
        let dir = tempfile::tempdir()?;
        let text = yaml(&at, routes, pools);
        let edge =
            start_edge(dir.path(), &text, &at).with_context(|| format!("config:\n{text}"))?;
        Ok(Self { edge, at, dir })
    }

    /// The listener.
    fn addr(&self) -> SocketAddr {
        self.at.listeners[0]
    }

    /// `method path` with extra header fields and a body, on a new
    /// connection.
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Message> {
        http::send(self.addr(), method, path, headers, body)
    }

    /// `GET path` with extra header fields, on a new connection.
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Message> {
        http::request(self.addr(), "GET", path, headers)
    }

    fn metrics(&self) -> Result<String> {
        Ok(http::get(self.at.admin, "/metrics")?.text())
    }

    /// Replaces the configuration file whole (a rename, so a reload never
    /// reads half of it) and reloads through `POST /reload`, which answers
    /// once the new configuration is live.
    fn reload(&self, routes: &str, pools: &[String]) -> Result<()> {
        let config = self.dir.path().join("edge.yaml");
        let tmp = self.dir.path().join("edge.yaml.new");
        std::fs::write(&tmp, yaml(&self.at, routes, pools))?;
        std::fs::rename(&tmp, &config)?;
        let m = http::request(self.at.admin, "POST", "/reload", &[])?;
        ensure!(m.status() == Some(200), "reload refused:\n{}", show(&m));
        Ok(())
    }

    /// Waits until `probe` holds, failing with edge's log if it never does.
    fn wait_for<T>(&self, what: &str, probe: impl FnMut() -> Result<Option<T>>) -> Result<T> {
        wait::until(what, DEADLINE, probe)
            .map_err(|e| e.context(format!("edge log:\n{}", self.edge.log_text())))
    }

    /// Waits until sample `name` with `labels` satisfies `want`.
    fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        want: impl Fn(f64) -> bool,
    ) -> Result<f64> {
        edge_tests::metrics::wait_metric(|| self.metrics(), name, labels, DEADLINE, want)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // The test harness shows this only when the test fails.
        eprintln!(
            "--- edge log ({}) ---\n{}",
            self.addr(),
            self.edge.log_text()
        );
    }
}

/// The whole configuration: one listener `web` with `routes`, the `pools`.
fn yaml(at: &Endpoints, routes: &str, pools: &[String]) -> String {
    format!(
        "\
listeners:
  - name: web
    address: '{listener}'
    routes:
{routes}pools:
{pools}admin: {{address: '{admin}'}}
server: {{threads: 2, grace_period_seconds: 0}}
",
        listener = at.listeners[0],
        admin = at.admin,
        pools = pools.concat(),
    )
}

/// Pool `name` of the backends at `addrs`.
fn pool(name: &str, addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{address: '{a}'}}"))
        .collect();
    format!("  - name: {name}\n    backends: [{}]\n", list.join(", "))
}

/// A response, readable in a failure message.
fn show(m: &Message) -> String {
    let mut s = format!("{}\n", m.start);
    for (k, v) in &m.headers {
        s.push_str(&format!("{k}: {v}\n"));
    }
    s.push('\n');
    s.push_str(&m.text());
    s
}

/// The JSON body of an aggregation's answer, after checking its status
/// and content type.
fn json_answer(m: &Message, status: u16) -> Result<Value> {
    ensure!(
        m.status() == Some(status),
        "expected {status}, got:\n{}",
        show(m)
    );
    ensure!(
        m.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "the answer is JSON:\n{}",
        show(m)
    );
    serde_json::from_slice(&m.body).with_context(|| show(m))
}

/// The call names in `X-Edge-Failed` (empty when absent).
fn failed_calls(m: &Message) -> BTreeSet<String> {
    m.header("x-edge-failed")
        .map(|v| {
            v.split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// A set of names, for comparisons.
fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The member names of a JSON object (empty for anything else).
fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The method of a request.
fn method_of(req: &Message) -> &str {
    req.start.split_whitespace().next().unwrap_or("")
}

/// The request target (path and query) of a request.
fn target_of(req: &Message) -> &str {
    req.start.split_whitespace().nth(1).unwrap_or("")
}

/// What an upstream received, as JSON: method, target and header fields.
fn seen(req: &Message) -> Value {
    let headers: serde_json::Map<String, Value> = req
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({"method": method_of(req), "path": target_of(req), "headers": headers})
}

// ---------------------------------------------------------------------
// local upstreams: answer as told, hold requests, notice cancellations
// ---------------------------------------------------------------------

/// What a local upstream answers to one request.
#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    /// The request is held this long before the answer, while the upstream
    /// watches whether edge closes the connection.
    hold: Duration,
}

impl Reply {
    /// `200 application/json` with `v`.
    fn json(v: &Value) -> Self {
        Self {
            status: 200,
            content_type: "application/json".into(),
            body: v.to_string().into_bytes(),
            hold: Duration::ZERO,
        }
    }

    /// `200 text/plain` with `body`.
    fn text(body: &str) -> Self {
        Self {
            status: 200,
            content_type: "text/plain".into(),
            body: body.as_bytes().to_vec(),
            hold: Duration::ZERO,
        }
    }

    fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    fn held(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }
}

/// One request as a local upstream received it.
#[derive(Clone, Debug)]
struct Arrival {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Arrival {
    /// The first value of header `name` (names are lower-cased).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a request an upstream received ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The upstream wrote its answer.
    Answered,
    /// The peer (edge) closed the connection first: EOF, reset, or a failed
    /// write.
    Closed,
}

/// The end of one request: how, and how long after it arrived.
#[derive(Clone, Copy, Debug)]
struct Ended {
    outcome: Outcome,
    after: Duration,
}

type ReplyFn = Box<dyn Fn(&Message) -> Reply + Send + Sync>;

struct UpShared {
    reply: ReplyFn,
    stop: AtomicBool,
    arrivals: Mutex<Vec<Arrival>>,
    ended: Mutex<Vec<Ended>>,
    /// Requests received and not yet answered or abandoned.
    in_flight: AtomicUsize,
    /// The most `in_flight` ever was.
    max_in_flight: AtomicUsize,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

/// A local HTTP/1.1 upstream on 127.0.0.1 that answers with `reply`,
/// records what it received and how each request ended. Every thread it
/// runs stops (promptly: waits are in [`STEP`]s) and is joined on drop.
struct Upstream {
    addr: SocketAddr,
    shared: Arc<UpShared>,
    accept: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(reply: impl Fn(&Message) -> Reply + Send + Sync + 'static) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(UpShared {
            reply: Box::new(reply),
            stop: AtomicBool::new(false),
            arrivals: Mutex::new(Vec::new()),
            ended: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            connections: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = shared.clone();
            thread::spawn(move || accept_loop(&listener, &shared))
        };
        Ok(Self {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Always the same JSON answer.
    fn json(v: Value) -> Result<Self> {
        Self::start(move |_| Reply::json(&v))
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn arrivals(&self) -> Vec<Arrival> {
        lock(&self.shared.arrivals).clone()
    }

    fn count(&self) -> usize {
        lock(&self.shared.arrivals).len()
    }

    fn ended(&self) -> Vec<Ended> {
        lock(&self.shared.ended).clone()
    }

    fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for t in connections {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `fd` becomes readable (data, EOF or an error) within `timeout`.
fn readable(fd: &impl AsRawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a descriptor the caller keeps open for
    // the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    n > 0 && pfd.revents != 0
}

fn accept_loop(listener: &TcpListener, shared: &Arc<UpShared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = shared.clone();
                let t = thread::spawn(move || {
                    let _ = serve(stream, &s);
                });
                lock(&shared.connections).push(t);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                readable(listener, STEP);
            }
            Err(_) => thread::sleep(STEP),
        }
    }
}

/// How holding a request ended.
enum Held {
    /// The hold time passed: answer.
    Done,
    /// The peer closed the connection.
    Closed,
    /// The upstream is being dropped.
    Stopped,
}

/// Holds a request for `hold`, watching for the peer closing the
/// connection (EOF or reset seen by peeking, so nothing is consumed).
fn hold(stream: &TcpStream, hold: Duration, stop: &AtomicBool) -> Held {
    let start = Instant::now();
    // A peer that sent more bytes keeps the socket readable: from then on
    // the hold only waits.
    let mut more_data = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Held::Stopped;
        }
        let left = hold.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Held::Done;
        }
        let step = left.min(STEP);
        if more_data {
            thread::sleep(step);
            continue;
        }
        if readable(stream, step) {
            let mut byte = [0u8; 1];
            match stream.peek(&mut byte) {
                Ok(0) => return Held::Closed,
                Ok(_) => more_data = true,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Held::Closed,
            }
        }
    }
}

fn serve(stream: TcpStream, shared: &UpShared) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        // Between requests: wait for the next one, or stop.
        while reader.buffer().is_empty() && !readable(&stream, STEP) {
            if shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(req) = http::read_message(&mut reader)? else {
            return Ok(());
        };
        let arrived = Instant::now();
        lock(&shared.arrivals).push(Arrival {
            method: method_of(&req).to_string(),
            target: target_of(&req).to_string(),
            headers: req.headers.clone(),
            body: req.body.clone(),
        });
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let reply = (shared.reply)(&req);
        let held = hold(&stream, reply.hold, &shared.stop);
        // Counted out before the answer is written, so edge can never see
        // an answer while the request still counts here.
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        let end = |outcome| {
            lock(&shared.ended).push(Ended {
                outcome,
                after: arrived.elapsed(),
            });
        };
        match held {
            Held::Stopped => return Ok(()),
            Held::Closed => {
                end(Outcome::Closed);
                return Ok(());
            }
            Held::Done => {}
        }
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            reply.status,
            if reply.status == 200 { "OK" } else { "Status" },
            reply.content_type,
            reply.body.len()
        );
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&reply.body);
        if writer.write_all(&out).is_err() {
            end(Outcome::Closed);
            return Ok(());
        }
        end(Outcome::Answered);
        if close {
            return Ok(());
        }
    }
}

fn echo_backend(name: &str) -> Result<Backend> {
    Backend::start(name, None, "127.0.0.1:0".parse()?)
}

// ---------------------------------------------------------------------
// aggregation
// ---------------------------------------------------------------------

#[test]
fn aggregation_merges_groups_and_top_level_with_target_allow_deny_and_mapping() -> Result<()> {
    let users = Upstream::start(|req| {
        Reply::json(&json!({
            "data": {
                "name": "Ann",
                "email": "ann@example.com",
                "password": "hunter2",
                "seen": seen(req),
            },
            "meta": {"page": 1},
        }))
    })?;
    let orders = Upstream::start(|req| {
        Reply::json(&json!({
            "orders": [{"id": 1}, {"id": 2}],
            "total": 2,
            "internal": "do not show",
            "seen": seen(req),
        }))
    })?;
    let prefs = Upstream::start(|req| {
        Reply::json(&json!({
            "theme": "dark",
            "lang": "en",
            "secret_flag": true,
            "prefs_seen": seen(req),
        }))
    })?;
    let routes = r#"      - name: dashboard
        match: {path: {regex: '^/dashboard/(?P<id>[0-9]+)$'}}
        aggregate:
          timeout: 5s
          calls:
            - name: user
              pool: users
              path: '/users/{id}'
              group: user
              target: data
              allow: [name, email, seen]
              mapping: {name: full_name}
              headers: [authorization, accept-language]
            - name: orders
              pool: orders
              path: '/users/{id}/orders'
              group: orders
              deny: [internal]
              headers: [accept-language]
            - name: prefs
              pool: prefs
              path: '/prefs/{id}'
              deny: [secret_flag]
              mapping: {theme: ui_theme}
"#;
    let edge = Live::start(
        routes,
        &[
            pool("users", &[users.addr()]),
            pool("orders", &[orders.addr()]),
            pool("prefs", &[prefs.addr()]),
        ],
    )?;
    let m = edge.get(
        "/dashboard/42?debug=1",
        &[
            ("Authorization", "Bearer t0k3n"),
            ("Accept-Language", "fr-CH"),
            ("Cookie", "session=abc"),
            ("X-Secret", "s3cr3t"),
            ("User-Agent", "agg-test/1"),
        ],
    )?;
    let body = json_answer(&m, 200)?;
    ensure!(
        m.header("x-edge-completed") == Some("true"),
        "every call answered:\n{}",
        show(&m)
    );
    ensure!(
        m.header("x-edge-failed").is_none(),
        "nothing failed:\n{}",
        show(&m)
    );

    // The merged document: two groups, one object merged at the top.
    ensure!(
        keys(&body) == names(&["user", "orders", "ui_theme", "lang", "prefs_seen"]),
        "top-level members: {body:#}"
    );
    // target (data), then allow (name, email, seen), then mapping.
    let user = &body["user"];
    ensure!(
        keys(user) == names(&["full_name", "email", "seen"]),
        "user: {user:#}"
    );
    ensure!(
        user["full_name"] == "Ann" && user["email"] == "ann@example.com",
        "user: {user:#}"
    );
    // deny (internal) keeps the rest as it was.
    let orders_part = &body["orders"];
    ensure!(
        keys(orders_part) == names(&["orders", "total", "seen"]),
        "orders: {orders_part:#}"
    );
    ensure!(
        orders_part["orders"] == json!([{"id": 1}, {"id": 2}]) && orders_part["total"] == 2,
        "orders: {orders_part:#}"
    );
    // Top-level merge with deny and mapping.
    ensure!(
        body["ui_theme"] == "dark" && body["lang"] == "en",
        "{body:#}"
    );

    // The path template took the regex capture; the client's query string
    // is not forwarded; each call got a GET.
    let user_seen = &user["seen"];
    ensure!(
        user_seen["method"] == "GET" && user_seen["path"] == "/users/42",
        "{user_seen:#}"
    );
    ensure!(
        orders_part["seen"]["path"] == "/users/42/orders",
        "{orders_part:#}"
    );
    ensure!(body["prefs_seen"]["path"] == "/prefs/42", "{body:#}");

    // Only the allow-listed client headers reached each backend (as the
    // backends themselves recorded them, and as they echoed them).
    let (u, o, p) = (users.arrivals(), orders.arrivals(), prefs.arrivals());
    ensure!(
        u.len() == 1 && o.len() == 1 && p.len() == 1,
        "one call each: {u:?} {o:?} {p:?}"
    );
    let (u, o, p) = (&u[0], &o[0], &p[0]);
    ensure!(
        u.header("authorization") == Some("Bearer t0k3n")
            && u.header("accept-language") == Some("fr-CH"),
        "users should get authorization and accept-language: {u:?}"
    );
    ensure!(
        user_seen["headers"]["authorization"] == "Bearer t0k3n",
        "{user_seen:#}"
    );
    ensure!(
        o.header("accept-language") == Some("fr-CH") && o.header("authorization").is_none(),
        "orders should get accept-language only: {o:?}"
    );
    ensure!(
        p.header("accept-language").is_none() && p.header("authorization").is_none(),
        "prefs forwards no client header: {p:?}"
    );
    for a in [u, o, p] {
        ensure!(
            a.header("cookie").is_none()
                && a.header("x-secret").is_none()
                && a.header("user-agent") != Some("agg-test/1"),
            "a header that is not allow-listed went upstream: {a:?}"
        );
        ensure!(!a.target.contains("debug"), "query forwarded: {a:?}");
    }
    Ok(())
}

#[test]
fn a_slow_and_a_failing_call_leave_the_rest_within_the_timeout() -> Result<()> {
    /// Longer than any timeout below: the answers must come before it.
    const SLOW: Duration = Duration::from_secs(4);
    let good = Upstream::json(json!({"ok": true, "items": [1, 2, 3]}))?;
    let slow = Upstream::start(|_| Reply::json(&json!({"late": true})).held(SLOW))?;
    let broken = Upstream::start(|_| Reply::json(&json!({"error": "boom"})).status(500))?;
    let routes = r#"      - name: dash
        match: {path: {regex: '^/dash/(?P<id>[0-9]+)$'}}
        aggregate:
          timeout: 2s
          calls:
            - {name: good, pool: good, path: '/good/{id}', group: good}
            - {name: slow, pool: slow, path: '/slow/{id}', group: slow, timeout: 500ms}
            - {name: broken, pool: broken, path: '/broken/{id}', group: broken}
      - name: whole
        match: {path: {regex: '^/whole/(?P<id>[0-9]+)$'}}
        aggregate:
          timeout: 1s
          calls:
            - {name: good, pool: good, path: '/good/{id}', group: good}
            - {name: slow, pool: slow, path: '/slow/{id}', group: slow}
"#;
    let edge = Live::start(
        routes,
        &[
            pool("good", &[good.addr()]),
            pool("slow", &[slow.addr()]),
            pool("broken", &[broken.addr()]),
        ],
    )?;

    // The slow call is cut by its own timeout (500ms), the 500 fails at once.
    let started = Instant::now();
    let m = edge.get("/dash/7", &[])?;
    let took = started.elapsed();
    let body = json_answer(&m, 200)?;
    ensure!(
        took < Duration::from_secs(2),
        "the answer took {took:?}: more than the aggregation timeout (2s)"
    );
    ensure!(
        m.header("x-edge-completed") == Some("false"),
        "two calls failed:\n{}",
        show(&m)
    );
    ensure!(
        failed_calls(&m) == names(&["slow", "broken"]),
        "X-Edge-Failed should name exactly slow and broken:\n{}",
        show(&m)
    );
    ensure!(
        body["good"] == json!({"ok": true, "items": [1, 2, 3]}),
        "{body:#}"
    );
    for failed in ["slow", "broken"] {
        ensure!(
            body.get(failed).is_none_or(Value::is_null),
            "a failed call has no part in the answer: {body:#}"
        );
    }
    ensure!(
        slow.count() == 1 && broken.count() == 1,
        "each called once (no retries configured)"
    );

    // Without a call timeout, the aggregation's (1s) cuts the slow call.
    let started = Instant::now();
    let m = edge.get("/whole/7", &[])?;
    let took = started.elapsed();
    let body = json_answer(&m, 200)?;
    ensure!(
        took < SLOW - Duration::from_secs(1),
        "the answer took {took:?}: the 1s aggregation timeout should cut the {SLOW:?} call"
    );
    ensure!(
        m.header("x-edge-completed") == Some("false"),
        "{}",
        show(&m)
    );
    ensure!(failed_calls(&m) == names(&["slow"]), "{}", show(&m));
    ensure!(body["good"]["ok"] == true, "{body:#}");
    Ok(())
}

#[test]
fn every_call_failing_is_a_502_listing_them_all() -> Result<()> {
    let broken = Upstream::start(|_| Reply::json(&json!({"error": "boom"})).status(500))?;
    let missing = Upstream::start(|_| Reply::json(&json!({"error": "no such"})).status(404))?;
    let slow =
        Upstream::start(|_| Reply::json(&json!({"late": true})).held(Duration::from_secs(4)))?;
    let (_refusing, refused) = refusing_port()?;
    let routes = r#"      - name: all-bad
        match: {path: {regex: '^/bad/(?P<id>[0-9]+)$'}}
        aggregate:
          timeout: 3s
          calls:
            - {name: broken, pool: broken, path: '/b/{id}', group: broken}
            - {name: missing, pool: missing, path: '/m/{id}', group: missing}
            - {name: slow, pool: slow, path: '/s/{id}', group: slow, timeout: 300ms}
            - {name: down, pool: down, path: '/d/{id}', group: down}
"#;
    let edge = Live::start(
        routes,
        &[
            pool("broken", &[broken.addr()]),
            pool("missing", &[missing.addr()]),
            pool("slow", &[slow.addr()]),
            pool("down", &[refused]),
        ],
    )?;
    let started = Instant::now();
    let m = edge.get("/bad/1", &[])?;
    ensure!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let body = json_answer(&m, 502)?;
    ensure!(
        body["message"] == "every upstream call failed",
        "{}",
        show(&m)
    );
    let failed: BTreeSet<String> = body["failed"]
        .as_array()
        .with_context(|| format!("`failed` is a list: {}", show(&m)))?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    ensure!(
        failed == names(&["broken", "missing", "slow", "down"]),
        "`failed` should list every call: {}",
        show(&m)
    );
    ensure!(
        body["failed"].as_array().map(Vec::len) == Some(4),
        "each call listed once: {}",
        show(&m)
    );
    Ok(())
}

#[test]
fn a_non_json_answer_or_a_non_object_merged_at_the_top_counts_as_failed() -> Result<()> {
    let good = Upstream::json(json!({"name": "Ann"}))?;
    let text = Upstream::start(|_| Reply::text("hello, this is not JSON"))?;
    let list = Upstream::json(json!([1, 2, 3]))?;
    let routes = r#"      - name: mixed
        match: {path: {regex: '^/mixed/(?P<id>[0-9]+)$'}}
        aggregate:
          timeout: 3s
          calls:
            - {name: good, pool: good, path: '/g/{id}', group: good}
            - {name: text, pool: text, path: '/t/{id}', group: text}
            - {name: list, pool: list, path: '/l/{id}'}
"#;
    let edge = Live::start(
        routes,
        &[
            pool("good", &[good.addr()]),
            pool("text", &[text.addr()]),
            pool("list", &[list.addr()]),
        ],
    )?;
    let m = edge.get("/mixed/3", &[])?;
    let body = json_answer(&m, 200)?;
    ensure!(
        m.header("x-edge-completed") == Some("false"),
        "{}",
        show(&m)
    );
    ensure!(
        failed_calls(&m) == names(&["text", "list"]),
        "text/plain and a top-level array both fail:\n{}",
        show(&m)
    );
    ensure!(body["good"] == json!({"name": "Ann"}), "{body:#}");
    ensure!(
        body.get("text").is_none_or(Value::is_null),
        "the text call has no part in the answer: {body:#}"
    );
    ensure!(
        text.count() == 1 && list.count() == 1,
        "both were called once"
    );
    Ok(())
}

#[test]
fn a_client_that_goes_away_cancels_the_calls() -> Result<()> {
    /// How long the backends hold each request.
    const HOLD: Duration = Duration::from_secs(3);
    let a = Upstream::start(|_| Reply::json(&json!({"a": 1})).held(HOLD))?;
    let b = Upstream::start(|_| Reply::json(&json!({"b": 2})).held(HOLD))?;
    let routes = r#"      - name: held
        match: {path: {regex: '^/held/(?P<id>[0-9]+)$'}}
        aggregate:
          timeout: 8s
          calls:
            - {name: a, pool: a, path: '/a/{id}', group: a}
            - {name: b, pool: b, path: '/b/{id}', group: b}
"#;
    let edge = Live::start(routes, &[pool("a", &[a.addr()]), pool("b", &[b.addr()])])?;

    let mut client = TcpStream::connect_timeout(&edge.addr(), Duration::from_secs(5))?;
    client.write_all(b"GET /held/1 HTTP/1.1\r\nHost: agg.test\r\n\r\n")?;
    edge.wait_for("both backends to hold the request", || {
        Ok((a.count() == 1 && b.count() == 1).then_some(()))
    })?;
    // The client goes away while both calls are held.
    drop(client);

    // Well before the hold ends, edge has closed both connections.
    let ended = wait::until(
        "edge to close both held connections",
        Duration::from_millis(2500),
        || {
            let (ea, eb) = (a.ended(), b.ended());
            Ok((!ea.is_empty() && !eb.is_empty()).then_some((ea, eb)))
        },
    )
    .map_err(|e| {
        e.context(format!(
            "ended so far: a {:?}, b {:?}; edge log:\n{}",
            a.ended(),
            b.ended(),
            edge.edge.log_text()
        ))
    })?;
    for (name, ends) in [("a", ended.0), ("b", ended.1)] {
        ensure!(ends.len() == 1, "{name}: {ends:?}");
        let end = ends[0];
        ensure!(
            end.outcome == Outcome::Closed,
            "{name}'s call should have been cancelled, not answered: {end:?}"
        );
        ensure!(
            end.after < HOLD - Duration::from_millis(500),
            "{name}'s connection closed only {:?} after the request came",
            end.after
        );
    }
    ensure!(a.count() == 1 && b.count() == 1, "no call was sent again");
    ensure!(
        edge.edge.pid().is_some() && http::get(edge.at.admin, "/healthz")?.status() == Some(200),
        "edge still serves"
    );
    Ok(())
}

#[test]
fn aggregate_calls_are_counted_by_route_call_and_result() -> Result<()> {
    let profiles = Upstream::json(json!({"name": "Ann"}))?;
    let flaky = Upstream::start(|_| Reply::json(&json!({"error": "boom"})).status(500))?;
    // Neither call has a name: one is named by its group, the other by
    // its pool.
    let routes = r#"      - name: stats
        match: {path: {regex: '^/stats/(?P<id>[0-9]+)$'}}
        aggregate:
          timeout: 3s
          calls:
            - {pool: profiles, path: '/p/{id}', group: profile}
            - {pool: flaky, path: '/f/{id}'}
"#;
    let edge = Live::start(
        routes,
        &[
            pool("profiles", &[profiles.addr()]),
            pool("flaky", &[flaky.addr()]),
        ],
    )?;
    for i in 0..3 {
        let m = edge.get(&format!("/stats/{i}"), &[])?;
        let body = json_answer(&m, 200)?;
        ensure!(body["profile"]["name"] == "Ann", "{body:#}");
        ensure!(failed_calls(&m) == names(&["flaky"]), "{}", show(&m));
    }
    let name = "edge_aggregate_calls_total";
    edge.wait_metric(
        name,
        &[("route", "stats"), ("call", "profile"), ("result", "ok")],
        |v| v == 3.0,
    )?;
    edge.wait_metric(
        name,
        &[("route", "stats"), ("call", "flaky"), ("result", "error")],
        |v| v == 3.0,
    )?;
    let text = edge.metrics()?;
    for (call, result) in [("profile", "error"), ("flaky", "ok")] {
        let v = metric(
            &text,
            name,
            &[("route", "stats"), ("call", call), ("result", result)],
        );
        ensure!(
            v.is_none_or(|v| v == 0.0),
            "{call} {result} should not count: {v:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------
// traffic split
// ---------------------------------------------------------------------

/// Which backend answered `GET path` with `headers`, after checking it
/// was a 200.
fn served_by(edge: &Live, path: &str, headers: &[(&str, &str)]) -> Result<String> {
    let m = edge.get(path, headers)?;
    ensure!(m.status() == Some(200), "{path}: {}", show(&m));
    Ok(m.header("x-backend").unwrap_or("-").to_string())
}

/// The split routes, with `percent` going to the canary on `/app`.
fn split_routes(percent: u32) -> String {
    format!(
        r#"      - name: app
        match: {{path: {{prefix: /app}}}}
        proxy: {{pool: stable}}
        split:
          - pool: beta
            header: {{name: x-beta, value: "1"}}
          - pool: canary
            percent: {percent}
      - name: sticky
        match: {{path: {{prefix: /sticky}}}}
        proxy: {{pool: stable}}
        split:
          - pool: canary
            percent: 20
            sticky: 'header:x-user'
"#
    )
}

#[test]
fn split_by_percent_by_header_sticky_and_changed_by_a_reload() -> Result<()> {
    let (stable, canary, beta) = (
        echo_backend("stable")?,
        echo_backend("canary")?,
        echo_backend("beta")?,
    );
    let pools = [
        pool("stable", &[stable.addr()]),
        pool("canary", &[canary.addr()]),
        pool("beta", &[beta.addr()]),
    ];
    let mut edge = Live::start(&split_routes(20), &pools)?;
    let pid = edge.edge.pid().context("edge is not running")?;

    // 20% to the canary: 500 requests, binomial sd ~ 9, so 20% ± 6% is
    // more than 3 sd either side.
    const N: usize = 500;
    let mut by: HashMap<String, usize> = HashMap::new();
    for i in 0..N {
        *by.entry(served_by(&edge, &format!("/app/{i}"), &[])?)
            .or_default() += 1;
    }
    let to_canary = by.get("canary").copied().unwrap_or(0);
    let to_stable = by.get("stable").copied().unwrap_or(0);
    ensure!(
        to_canary + to_stable == N,
        "only stable and canary serve requests without x-beta: {by:?}"
    );
    ensure!(
        (70..=130).contains(&to_canary),
        "20% of {N} should go to the canary (70..=130): {by:?}"
    );

    // The header condition comes first: every such request goes to beta;
    // another value does not match it.
    for i in 0..20 {
        let who = served_by(&edge, &format!("/app/b{i}"), &[("X-Beta", "1")])?;
        ensure!(who == "beta", "request {i} with x-beta: 1 went to {who}");
    }
    // These still draw their share: count those the canary took.
    let mut more_to_canary = 0;
    for i in 0..5 {
        let who = served_by(&edge, &format!("/app/n{i}"), &[("X-Beta", "2")])?;
        ensure!(who != "beta", "request {i} with x-beta: 2 went to beta");
        more_to_canary += usize::from(who == "canary");
    }
    edge.wait_metric(
        "edge_split_requests_total",
        &[("route", "app"), ("pool", "canary")],
        |v| v == (to_canary + more_to_canary) as f64,
    )?;
    edge.wait_metric(
        "edge_split_requests_total",
        &[("route", "app"), ("pool", "beta")],
        |v| v == 20.0,
    )?;

    // Sticky by x-user: each user stays on one side, and about a fifth of
    // the users are on the canary.
    let mut homes: HashMap<String, String> = HashMap::new();
    for round in 0..5 {
        for user in 0..50 {
            let id = format!("user-{user}");
            let who = served_by(&edge, "/sticky/x", &[("X-User", &id)])?;
            let home = homes.entry(id.clone()).or_insert_with(|| who.clone());
            ensure!(
                *home == who,
                "{id} moved from {home} to {who} in round {round}"
            );
        }
    }
    let on_canary = homes.values().filter(|h| *h == "canary").count();
    ensure!(
        homes.values().all(|h| h == "canary" || h == "stable"),
        "{homes:?}"
    );
    ensure!(
        (3..=20).contains(&on_canary),
        "about 20% of 50 users should be on the canary: {on_canary}"
    );

    // A reload to 100%: everything goes to the canary, same process.
    edge.reload(&split_routes(100), &pools)?;
    ensure!(edge.edge.pid() == Some(pid), "the reload kept the process");
    for i in 0..50 {
        let who = served_by(&edge, &format!("/app/r{i}"), &[])?;
        ensure!(
            who == "canary",
            "after the reload, request {i} went to {who}"
        );
    }
    let who = served_by(&edge, "/app/rb", &[("X-Beta", "1")])?;
    ensure!(
        who == "beta",
        "the header condition still comes first: {who}"
    );
    ensure!(
        edge.edge.pid() == Some(pid) && edge.edge.exit_status().is_none(),
        "edge was not restarted"
    );
    Ok(())
}

// ---------------------------------------------------------------------
// mirroring
// ---------------------------------------------------------------------

#[test]
fn mirror_sends_copies_and_a_slow_shadow_never_slows_the_client() -> Result<()> {
    let real = echo_backend("real")?;
    let shadow = Upstream::json(json!({"shadow": true}))?;
    // Each copy held 5 s: far longer than any client may wait.
    let sleepy =
        Upstream::start(|_| Reply::json(&json!({"shadow": "late"})).held(Duration::from_secs(5)))?;
    let routes = r#"      - name: copied
        match: {path: {prefix: /copied}}
        proxy: {pool: real}
        mirror: {pool: shadow, max_body: 1KiB}
      - name: slowshadow
        match: {path: {prefix: /slowshadow}}
        proxy: {pool: real}
        mirror: {pool: sleepy, max_in_flight: 32}
"#;
    let edge = Live::start(
        routes,
        &[
            pool("real", &[real.addr()]),
            pool("shadow", &[shadow.addr()]),
            pool("sleepy", &[sleepy.addr()]),
        ],
    )?;

    // Copies carry the method, the path with its query, and the body.
    let sent: [(&str, &str, &[u8]); 4] = [
        ("GET", "/copied/a?x=1", b"".as_slice()),
        ("POST", "/copied/items", br#"{"n":1}"#.as_slice()),
        ("PUT", "/copied/items/7", b"plain text body".as_slice()),
        ("DELETE", "/copied/items/7", b"".as_slice()),
    ];
    for (method, path, body) in sent {
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        let m = edge.send(method, path, headers, body)?;
        ensure!(
            m.status() == Some(200) && m.header("x-backend") == Some("real"),
            "{method} {path}: the client's answer comes from the real pool:\n{}",
            show(&m)
        );
    }
    let copies = edge.wait_for("the shadow to get 4 copies", || {
        let a = shadow.arrivals();
        Ok((a.len() >= 4).then_some(a))
    })?;
    for (method, path, body) in sent {
        ensure!(
            copies
                .iter()
                .any(|c| c.method == method && c.target == path && c.body == body),
            "no copy of {method} {path} with its body among {copies:?}"
        );
    }

    // A body over the mirror's max_body reaches the real pool, not the shadow.
    let before = real.requests();
    let big = vec![b'x'; 2048];
    let m = edge.send("POST", "/copied/big", &[], &big)?;
    ensure!(
        m.status() == Some(200) && m.header("x-backend") == Some("real"),
        "{}",
        show(&m)
    );
    ensure!(
        real.requests() == before + 1,
        "the real pool got the big POST"
    );
    // A later request's copy arriving says the big one's would have by now.
    edge.get("/copied/after", &[])?;
    edge.wait_for("the shadow to get the copy of /copied/after", || {
        Ok(shadow
            .arrivals()
            .iter()
            .any(|c| c.target == "/copied/after")
            .then_some(()))
    })?;
    ensure!(
        !shadow.arrivals().iter().any(|c| c.target == "/copied/big"),
        "a body over max_body was mirrored"
    );

    // A shadow that takes 5 s per request: every client answer is quick
    // and from the real pool.
    for i in 0..20 {
        let started = Instant::now();
        let m = edge.get(&format!("/slowshadow/{i}"), &[])?;
        let took = started.elapsed();
        ensure!(
            m.status() == Some(200) && m.header("x-backend") == Some("real"),
            "request {i}:\n{}",
            show(&m)
        );
        ensure!(
            took < Duration::from_secs(1),
            "request {i} took {took:?} with a slow shadow"
        );
    }
    edge.wait_for("the slow shadow to get all 20 copies", || {
        Ok((sleepy.count() == 20).then_some(()))
    })?;
    Ok(())
}

#[test]
fn a_shadow_that_is_down_changes_nothing_for_the_client() -> Result<()> {
    let real = echo_backend("real")?;
    let (_refusing, refused) = refusing_port()?;
    let routes = r#"      - name: copied
        match: {path: {prefix: /copied}}
        proxy: {pool: real}
        mirror: {pool: gone}
"#;
    let edge = Live::start(
        routes,
        &[pool("real", &[real.addr()]), pool("gone", &[refused])],
    )?;
    for i in 0..10 {
        let started = Instant::now();
        let m = if i % 2 == 0 {
            edge.get(&format!("/copied/{i}"), &[])?
        } else {
            edge.send("POST", &format!("/copied/{i}"), &[], b"payload")?
        };
        let took = started.elapsed();
        ensure!(
            m.status() == Some(200) && m.header("x-backend") == Some("real"),
            "request {i}:\n{}",
            show(&m)
        );
        ensure!(took < Duration::from_secs(1), "request {i} took {took:?}");
        let line = m.text().lines().next().unwrap_or_default().to_string();
        let method = if i % 2 == 0 { "GET" } else { "POST" };
        ensure!(
            line.starts_with(&format!("{method} /copied/{i} ")),
            "the real pool got {line:?}"
        );
    }
    ensure!(
        real.requests() == 10,
        "the real pool got every request once"
    );
    edge.wait_metric(
        "edge_mirror_requests_total",
        &[("route", "copied"), ("result", "error")],
        |v| v > 0.0,
    )?;
    Ok(())
}

#[test]
fn mirror_max_in_flight_caps_the_copies_and_skips_the_rest() -> Result<()> {
    /// How long the shadow blocks each copy: longer than the burst below,
    /// shorter than the mirror timeout, so no copy leaves the table early.
    const BLOCK: Duration = Duration::from_secs(4);
    let real = echo_backend("real")?;
    let shadow = Upstream::start(|_| Reply::json(&json!({"shadow": true})).held(BLOCK))?;
    let routes = r#"      - name: capped
        match: {path: {prefix: /capped}}
        proxy: {pool: real}
        mirror: {pool: shadow, max_in_flight: 2, timeout: 6s}
"#;
    let edge = Live::start(
        routes,
        &[
            pool("real", &[real.addr()]),
            pool("shadow", &[shadow.addr()]),
        ],
    )?;
    let burst = Instant::now();
    for i in 0..10 {
        let started = Instant::now();
        let m = edge.get(&format!("/capped/{i}"), &[])?;
        let took = started.elapsed();
        ensure!(
            m.status() == Some(200) && m.header("x-backend") == Some("real"),
            "request {i}:\n{}",
            show(&m)
        );
        ensure!(took < Duration::from_secs(1), "request {i} took {took:?}");
    }
    edge.wait_for("the shadow to hold two copies", || {
        Ok((shadow.in_flight() == 2).then_some(()))
    })?;
    ensure!(
        shadow.max_in_flight() <= 2,
        "the shadow saw {} copies at once with max_in_flight 2",
        shadow.max_in_flight()
    );
    if burst.elapsed() < BLOCK {
        // Nothing left the table yet: only the first two copies went out.
        ensure!(
            shadow.count() == 2,
            "{} copies reached the shadow while two were held",
            shadow.count()
        );
    }
    edge.wait_metric(
        "edge_mirror_requests_total",
        &[("route", "capped"), ("result", "skipped")],
        |v| v > 0.0,
    )?;
    ensure!(real.requests() == 10, "the real pool got every request");
    ensure!(
        shadow.max_in_flight() <= 2,
        "the shadow saw {} copies at once",
        shadow.max_in_flight()
    );
    Ok(())
}

// ---------------------------------------------------------------------
// regressions: what edge adds to its calls and copies
// ---------------------------------------------------------------------

#[test]
fn aggregation_calls_carry_edge_loop_mark_and_via() -> Result<()> {
    let users = Upstream::json(json!({"name": "Ann"}))?;
    let orders = Upstream::json(json!({"total": 2}))?;
    // Neither allow-list names cdn-loop or via.
    let routes = r#"      - name: marked
        match: {path: {regex: '^/marked/(?P<id>[0-9]+)$'}}
        aggregate:
          timeout: 3s
          calls:
            - {name: user, pool: users, path: '/users/{id}', group: user, headers: [accept-language]}
            - {name: orders, pool: orders, path: '/orders/{id}', group: orders}
"#;
    let edge = Live::start(
        routes,
        &[
            pool("users", &[users.addr()]),
            pool("orders", &[orders.addr()]),
        ],
    )?;
    let m = edge.get("/marked/5", &[("Accept-Language", "fr-CH")])?;
    let body = json_answer(&m, 200)?;
    ensure!(
        m.header("x-edge-completed") == Some("true"),
        "every call answered:\n{}",
        show(&m)
    );
    ensure!(
        body["user"]["name"] == "Ann" && body["orders"]["total"] == 2,
        "{body:#}"
    );
    for (name, upstream) in [("user", &users), ("orders", &orders)] {
        let arrivals = upstream.arrivals();
        ensure!(arrivals.len() == 1, "{name}: one call: {arrivals:?}");
        let a = &arrivals[0];
        let marked = a
            .headers
            .iter()
            .filter(|(k, _)| k == "cdn-loop")
            .flat_map(|(_, v)| v.split(','))
            .any(|entry| entry.trim().starts_with("edge-"));
        ensure!(
            marked,
            "{name}: the call carries no cdn-loop mark of edge's: {a:?}"
        );
        ensure!(
            a.header("via").is_some_and(|v| v.contains("edge")),
            "{name}: the call carries no Via naming edge: {a:?}"
        );
    }
    ensure!(
        users.arrivals()[0].header("accept-language") == Some("fr-CH"),
        "the allow-listed field still goes: {:?}",
        users.arrivals()
    );
    Ok(())
}

#[test]
fn mirror_copies_carry_no_credentials_unless_kept() -> Result<()> {
    let real = echo_backend("real")?;
    let shadow = Upstream::json(json!({"shadow": true}))?;
    let routes = r#"      - name: stripped
        match: {path: {prefix: /stripped}}
        proxy: {pool: real}
        mirror: {pool: shadow}
      - name: kept
        match: {path: {prefix: /kept}}
        proxy: {pool: real}
        mirror: {pool: shadow, credentials: keep}
"#;
    let edge = Live::start(
        routes,
        &[
            pool("real", &[real.addr()]),
            pool("shadow", &[shadow.addr()]),
        ],
    )?;
    let sent = [
        ("Authorization", "Bearer t0k3n"),
        ("Cookie", "session=abc"),
        ("X-Trace", "t-1"),
    ];
    // The client's answer comes from the real pool, which gets the
    // credentials; then the shadow's copy of the request.
    let copy_of = |path: &str| -> Result<Arrival> {
        let m = edge.get(path, &sent)?;
        ensure!(
            m.status() == Some(200) && m.header("x-backend") == Some("real"),
            "{path}:\n{}",
            show(&m)
        );
        let echoed = m.text();
        ensure!(
            echoed.contains("authorization: Bearer t0k3n")
                && echoed.contains("cookie: session=abc"),
            "{path}: the real pool gets the credentials:\n{echoed}"
        );
        edge.wait_for(&format!("the shadow to get the copy of {path}"), || {
            Ok(shadow.arrivals().into_iter().find(|a| a.target == path))
        })
    };

    let copy = copy_of("/stripped/1")?;
    ensure!(
        copy.header("authorization").is_none()
            && copy.header("cookie").is_none()
            && copy.header("proxy-authorization").is_none(),
        "a copy carries the client's credentials by default: {copy:?}"
    );
    ensure!(
        copy.header("x-trace") == Some("t-1"),
        "other fields are still copied: {copy:?}"
    );

    let copy = copy_of("/kept/1")?;
    ensure!(
        copy.header("authorization") == Some("Bearer t0k3n")
            && copy.header("cookie") == Some("session=abc"),
        "credentials: keep copies them: {copy:?}"
    );
    ensure!(copy.header("x-trace") == Some("t-1"), "{copy:?}");
    Ok(())
}
