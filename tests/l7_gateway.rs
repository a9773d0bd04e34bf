//! The API gateway's policy chain (ip → cors → auth → authorize →
//! rate_limits → concurrency), with real clients against a real edge on
//! loopback and the echo backend showing what edge forwarded:
//!
//! - API keys (header or query), Basic and JWTs identify consumers; the
//!   service gets `X-Consumer-*` headers (never the client's own copies)
//!   and, with `hide_credentials`, not the credential; the first credential
//!   present decides, a wrong one is 401 with the right challenges, none is
//!   the anonymous consumer or 401.
//! - JWTs are checked for signature, algorithm (no `none`, no HS256 made
//!   with an RSA public key), `exp`, `nbf`, issuer, audience and `kid`, from
//!   the header, a cookie or the query; keys come from the file or from a
//!   JWKS URL that rotates, fetched again for an unknown `kid` no more often
//!   than `min_refetch`, and 503 while it was never fetched.
//! - Authorization rules (deny first, then allow) by consumer, group,
//!   scope and claim; address allow/deny lists, behind trusted proxies too.
//! - CORS preflights answered by edge, never by the service.
//! - Rate limits (GCRA, burst = limit) per address, consumer, header or
//!   route, their headers, counts kept across a reload, and shared by two
//!   edges through a real Redis that, once gone, lets requests through or
//!   not as `on_error` says.
//! - A bound on requests in flight.
//! - Refusals and consumers in the metrics, consumers in the access log.
//!
//! Tokens are signed here with OpenSSL, not with the library edge verifies
//! them with, so a bug shared by both sides cannot hide.

use anyhow::{Context, Result, anyhow, ensure};
use edge_tests::{
    backend::{Backend, Handler, Response, echo},
    edge::Edge,
    http::{self, Message},
    loopback::{Endpoints, endpoints, start_edge},
    redis::Redis,
    wait,
};
use openssl::{
    ec::{EcGroup, EcKey},
    ecdsa::EcdsaSig,
    hash::MessageDigest,
    nid::Nid,
    pkey::{PKey, Private},
    rsa::Rsa,
    sign::Signer,
};
use serde_json::{Value, json};
use std::{
    io::{BufReader, Write},
    net::{IpAddr, SocketAddr},
    process::{Command, Stdio},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

const ALICE_KEY: &str = "alice-key-0123456789";
const BOB_KEY: &str = "bob-key-0123456789";
const CAROL_KEY: &str = "carol-key-0123456789";
const HS_SECRET: &str = "an-hmac-secret-of-at-least-32-bytes-for-tests";
const ISSUER: &str = "https://issuer.test";
/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------
// edge, its configuration and what it answered
// ---------------------------------------------------------------------

/// A running edge with its configuration directory; stops when dropped.
struct Gw {
    edge: Edge,
    at: Endpoints,
    dir: tempfile::TempDir,
}

impl Gw {
    fn start(dir: tempfile::TempDir, at: Endpoints, yaml: &str) -> Result<Self> {
        let edge = start_edge(dir.path(), yaml, &at).with_context(|| format!("config:\n{yaml}"))?;
        Ok(Self { edge, at, dir })
    }

    /// The first listener.
    fn addr(&self) -> SocketAddr {
        self.at.listeners[0]
    }

    /// `GET path` with extra header fields, on a new connection.
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Message> {
        http::request(self.addr(), "GET", path, headers)
    }

    fn metrics(&self) -> Result<String> {
        Ok(http::get(self.at.admin, "/metrics")?.text())
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

impl Drop for Gw {
    fn drop(&mut self) {
        // The test harness shows this only when the test fails.
        eprintln!(
            "--- edge log ({}) ---\n{}",
            self.addr(),
            self.edge.log_text()
        );
    }
}

/// A configuration with one listener `web` whose routes all proxy to pool
/// `app` of `backend`. `top` (whole lines) goes first: consumers, gateway,
/// access log. `listener_extra` (lines indented by four spaces) goes into
/// the listener: trusted proxies, listener policies.
fn yaml(
    at: &Endpoints,
    top: &str,
    listener_extra: &str,
    routes: &[String],
    backend: SocketAddr,
) -> String {
    format!(
        "\
{top}listeners:
  - name: web
    address: '{listener}'
{listener_extra}    routes:
{routes}pools:
  - name: app
    backends: [{{address: '{backend}'}}]
admin: {{address: '{admin}'}}
server: {{threads: 2}}
",
        listener = at.listeners[0],
        admin = at.admin,
        routes = routes.concat(),
    )
}

/// A route `name` proxying paths under `prefix` to pool `app`, with
/// `policies` given as one YAML flow mapping.
fn route(name: &str, prefix: &str, policies: &str) -> String {
    format!(
        "      - name: {name}\n        match: {{path: {{prefix: {prefix}}}}}\n        proxy: {{pool: app}}\n        policies: {policies}\n"
    )
}

/// `GET path` from source address `from` (any 127/8 address works on
/// loopback), with extra header fields.
fn request_from(
    from: IpAddr,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Message> {
    let mut s = http::connect_from(from, addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    http::read_message(&mut BufReader::new(s))?.context("closed without a response")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("a literal address")
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

fn expect_ok(m: &Message) -> Result<()> {
    ensure!(m.status() == Some(200), "expected 200, got:\n{}", show(m));
    Ok(())
}

/// A refusal: `status`, a JSON body `{"message": message}`.
fn expect_refusal(m: &Message, status: u16, message: &str) -> Result<()> {
    ensure!(
        m.status() == Some(status),
        "expected {status}, got:\n{}",
        show(m)
    );
    ensure!(
        m.header("content-type") == Some("application/json"),
        "a refusal is JSON:\n{}",
        show(m)
    );
    let body: Value = serde_json::from_slice(&m.body).with_context(|| show(m))?;
    ensure!(
        body["message"] == message,
        "expected message {message:?}:\n{}",
        show(m)
    );
    Ok(())
}

/// A 401 for a bad token: an RFC 6750 `invalid_token` challenge whose
/// description mentions `keyword`.
fn expect_invalid_token(m: &Message, keyword: &str) -> Result<()> {
    ensure!(m.status() == Some(401), "expected 401, got:\n{}", show(m));
    ensure!(
        m.header("content-type") == Some("application/json"),
        "a refusal is JSON:\n{}",
        show(m)
    );
    let challenge = answer_headers(m, "www-authenticate")
        .into_iter()
        .find(|c| c.starts_with("Bearer "))
        .with_context(|| format!("no Bearer challenge:\n{}", show(m)))?;
    ensure!(
        challenge
            .starts_with("Bearer realm=\"edge\", error=\"invalid_token\", error_description=\""),
        "challenge {challenge:?}"
    );
    ensure!(
        challenge.to_lowercase().contains(keyword),
        "the challenge should say {keyword:?}: {challenge:?}"
    );
    Ok(())
}

/// Every value of header `name` of an answer.
fn answer_headers(m: &Message, name: &str) -> Vec<String> {
    m.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

/// Every value of header `name` in the request the echo backend received.
fn upstream(m: &Message, name: &str) -> Vec<String> {
    m.text()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_string())
        .collect()
}

/// The request line the echo backend received.
fn upstream_line(m: &Message) -> String {
    m.text().lines().next().unwrap_or_default().to_string()
}

/// Whether the answer varies on Origin.
fn varies_on_origin(m: &Message) -> bool {
    answer_headers(m, "vary").iter().any(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("origin"))
    })
}

/// `RateLimit: "name";r=R;t=T` as (name, R, T).
fn ratelimit_state(m: &Message) -> Option<(String, u64, u64)> {
    let v = m.header("ratelimit")?;
    let mut parts = v.split(';');
    let name = parts.next()?.trim().trim_matches('"').to_string();
    let (mut r, mut t) = (None, None);
    for p in parts {
        match p.trim().split_once('=') {
            Some(("r", n)) => r = n.parse().ok(),
            Some(("t", n)) => t = n.parse().ok(),
            _ => {}
        }
    }
    Some((name, r?, t?))
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        openssl::base64::encode_block(format!("{user}:{password}").as_bytes())
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// What `edge hash ARGS` prints for `secret` on its standard input.
fn edge_hash(secret: &str, args: &[&str]) -> Result<String> {
    let mut child = Command::new(edge_tests::edge::binary()?)
        .arg("hash")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting edge hash")?;
    {
        let mut stdin = child.stdin.take().context("edge hash has no stdin")?;
        stdin.write_all(secret.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "edge hash {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

// ---------------------------------------------------------------------
// tokens
// ---------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn b64url(bytes: &[u8]) -> String {
    openssl::base64::encode_block(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// What signs a token.
enum Signing<'a> {
    Rsa(&'a PKey<Private>),
    Ec(&'a EcKey<Private>),
    Hmac(&'a [u8]),
    /// An empty signature (`alg: none`).
    Unsigned,
}

/// A compact JWS with header `{"alg": alg, "typ": "JWT", "kid": kid}`:
/// the algorithm named is whatever the test says, whatever signs it.
fn jwt(alg: &str, kid: Option<&str>, claims: &Value, key: Signing<'_>) -> Result<String> {
    let mut header = json!({"alg": alg, "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = match key {
        Signing::Rsa(k) => {
            let mut s = Signer::new(MessageDigest::sha256(), k)?;
            s.update(input.as_bytes())?;
            s.sign_to_vec()?
        }
        Signing::Hmac(secret) => {
            let k = PKey::hmac(secret)?;
            let mut s = Signer::new(MessageDigest::sha256(), &k)?;
            s.update(input.as_bytes())?;
            s.sign_to_vec()?
        }
        Signing::Ec(k) => {
            // JWS wants r and s side by side (RFC 7518 §3.4), not DER.
            let sig = EcdsaSig::sign(&openssl::sha::sha256(input.as_bytes()), k)?;
            let mut raw = sig.r().to_vec_padded(32)?;
            raw.extend(sig.s().to_vec_padded(32)?);
            raw
        }
        Signing::Unsigned => Vec::new(),
    };
    Ok(format!("{input}.{}", b64url(&signature)))
}

/// Claims of `sub` that the routes with issuer and audience checks accept,
/// valid for ten minutes; `extra` adds or replaces claims.
fn claims(sub: &str, extra: Value) -> Value {
    let mut c = json!({"sub": sub, "iss": ISSUER, "aud": "api", "iat": now(), "exp": now() + 600});
    if let (Some(map), Value::Object(extra)) = (c.as_object_mut(), extra) {
        map.extend(extra);
    }
    c
}

/// `claims` without claim `name`.
fn without(mut c: Value, name: &str) -> Value {
    if let Some(map) = c.as_object_mut() {
        map.remove(name);
    }
    c
}

fn rsa_key() -> Result<PKey<Private>> {
    Ok(PKey::from_rsa(Rsa::generate(2048)?)?)
}

fn ec_key() -> Result<EcKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(EcKey::generate(&group)?)
}

/// `-----BEGIN PUBLIC KEY-----` of an RSA key.
fn public_pem(k: &PKey<Private>) -> Result<String> {
    Ok(String::from_utf8(k.public_key_to_pem()?)?)
}

/// The JWK of an RSA signing key.
fn rsa_jwk(k: &PKey<Private>, kid: &str) -> Result<Value> {
    let rsa = k.rsa()?;
    Ok(json!({
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": b64url(&rsa.n().to_vec()),
        "e": b64url(&rsa.e().to_vec()),
    }))
}

/// A JWKS document served over HTTP, which the test may change; every
/// fetch is a request to its backend.
struct JwksServer {
    backend: Backend,
    doc: Arc<Mutex<String>>,
}

impl JwksServer {
    fn start(doc: &Value) -> Result<Self> {
        let shared = Arc::new(Mutex::new(doc.to_string()));
        let served = Arc::clone(&shared);
        let handler: Handler = Arc::new(move |_: &Message| {
            let body = served.lock().map(|g| String::clone(&g)).unwrap_or_default();
            Response::new(200, body).header("Content-Type", "application/json")
        });
        let backend = Backend::start_with("jwks", None, "127.0.0.1:0".parse()?, handler)?;
        Ok(Self {
            backend,
            doc: shared,
        })
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.backend.addr())
    }

    fn set(&self, doc: &Value) {
        if let Ok(mut g) = self.doc.lock() {
            *g = doc.to_string();
        }
    }

    /// Fetches so far.
    fn fetches(&self) -> usize {
        self.backend.requests()
    }
}

// ---------------------------------------------------------------------
// authentication: API keys, Basic, anonymous; authorization by group
// ---------------------------------------------------------------------

#[test]
fn api_keys_and_basic_identify_consumers_and_stay_hidden_from_the_service() -> Result<()> {
    let backend = Backend::start("be", None, "127.0.0.1:0".parse()?)?;
    // The file holds no usable secret: a SHA-256 and a bcrypt hash, both
    // made by `edge hash`.
    let alice_sha = edge_hash(ALICE_KEY, &["--api-key"])?;
    ensure!(
        alice_sha.len() == 64 && alice_sha.bytes().all(|b| b.is_ascii_hexdigit()),
        "edge hash --api-key printed {alice_sha:?}"
    );
    let alice_hash = edge_hash("alice-pass", &["--cost", "4"])?;
    ensure!(
        alice_hash.starts_with("$2"),
        "edge hash printed {alice_hash:?}"
    );
    let dir = tempfile::tempdir()?;
    let access_log = dir.path().join("access.log");
    let at = endpoints(1);
    let top = format!(
        "\
access_log: {{path: '{log}'}}
consumers:
  - name: alice
    groups: [ops, admins]
    api_keys: [{{sha256: '{alice_sha}'}}]
    basic: {{password_hash: '{alice_hash}'}}
  - name: bob
    groups: [readers]
    api_keys: [{{key: {BOB_KEY}}}]
  - name: carol
    api_keys: [{{key: {CAROL_KEY}}}]
  - name: guest
",
        log = access_log.display()
    );
    let routes = [
        route(
            "keys",
            "/keys",
            "{auth: {api_key: {header: apikey, query: apikey, hide_credentials: true}, basic: {}}}",
        ),
        route(
            "multi",
            "/multi",
            &"{auth: {api_key: {}, jwt: {keys: [{algorithm: HS256, secret: 'SECRET'}]}, basic: {}}}"
                .replace("SECRET", HS_SECRET),
        ),
        route("open", "/open", "{auth: {api_key: {}, anonymous: guest}}"),
        route("hidden", "/hidden", "{auth: {basic: {hide_credentials: true}}}"),
        route(
            "staff",
            "/staff",
            "{auth: {api_key: {}}, authorize: {deny: [{consumers: [bob]}], allow: [{groups: [admins, readers]}]}}",
        ),
    ];
    let gw = Gw::start(
        dir,
        at.clone(),
        &yaml(&at, &top, "", &routes, backend.addr()),
    )?;
    let mut alice_ok = 0u32;

    // A key in the header; the client's own identity headers are dropped.
    let r = gw.get(
        "/keys/orders",
        &[
            ("apikey", ALICE_KEY),
            ("X-Consumer-Username", "mallory"),
            ("X-Consumer-Groups", "root"),
            ("X-Credential-Identifier", "forged"),
            ("X-Anonymous-Consumer", "true"),
        ],
    )?;
    expect_ok(&r)?;
    alice_ok += 1;
    let s = show(&r);
    assert_eq!(upstream(&r, "x-consumer-username"), ["alice"], "{s}");
    assert_eq!(
        upstream(&r, "x-consumer-groups"),
        ["admins,ops"],
        "sorted: {s}"
    );
    assert_eq!(upstream(&r, "x-credential-identifier"), ["api_key"], "{s}");
    assert!(upstream(&r, "x-anonymous-consumer").is_empty(), "{s}");
    assert!(upstream(&r, "apikey").is_empty(), "hidden: {s}");

    // A key in the query: removed, the other parameters kept in order.
    let r = gw.get(
        &format!("/keys/orders?page=2&apikey={BOB_KEY}&sort=asc"),
        &[],
    )?;
    expect_ok(&r)?;
    assert_eq!(
        upstream_line(&r),
        "GET /keys/orders?page=2&sort=asc HTTP/1.1",
        "{}",
        show(&r)
    );
    assert_eq!(upstream(&r, "x-consumer-username"), ["bob"]);
    assert_eq!(upstream(&r, "x-consumer-groups"), ["readers"]);
    let r = gw.get(&format!("/keys/orders?apikey={BOB_KEY}"), &[])?;
    expect_ok(&r)?;
    assert_eq!(
        upstream_line(&r),
        "GET /keys/orders HTTP/1.1",
        "{}",
        show(&r)
    );

    // A consumer without groups: no groups header, not even the client's.
    let r = gw.get(
        "/keys",
        &[("apikey", CAROL_KEY), ("X-Consumer-Groups", "admins")],
    )?;
    expect_ok(&r)?;
    assert_eq!(upstream(&r, "x-consumer-username"), ["carol"]);
    assert!(upstream(&r, "x-consumer-groups").is_empty(), "{}", show(&r));

    // A wrong key: 401, a challenge per accepted type.
    let before = backend.requests();
    let r = gw.get("/keys", &[("apikey", "not-a-key-0123456789")])?;
    expect_refusal(&r, 401, "Invalid authentication credentials")?;
    assert_eq!(
        answer_headers(&r, "www-authenticate"),
        [
            "Key realm=\"edge\"",
            "Basic realm=\"edge\", charset=\"UTF-8\""
        ],
        "{}",
        show(&r)
    );

    // Basic, with the Authorization header passed on (not hidden here).
    let alice_basic = basic("alice", "alice-pass");
    let r = gw.get("/keys", &[("Authorization", &alice_basic)])?;
    expect_ok(&r)?;
    alice_ok += 1;
    assert_eq!(upstream(&r, "x-consumer-username"), ["alice"]);
    assert_eq!(upstream(&r, "x-credential-identifier"), ["basic:alice"]);
    assert_eq!(upstream(&r, "authorization"), [alice_basic.as_str()]);
    for wrong in [basic("alice", "wrong-pass"), basic("mallory", "alice-pass")] {
        let r = gw.get("/keys", &[("Authorization", &wrong)])?;
        expect_refusal(&r, 401, "Invalid authentication credentials")?;
    }

    // The first credential present decides: a wrong key is not saved by a
    // right password, a right key is not spoiled by a wrong password.
    let r = gw.get(
        "/keys",
        &[
            ("apikey", "not-a-key-0123456789"),
            ("Authorization", &alice_basic),
        ],
    )?;
    expect_refusal(&r, 401, "Invalid authentication credentials")?;
    let r = gw.get(
        "/keys",
        &[
            ("apikey", ALICE_KEY),
            ("Authorization", &basic("alice", "wrong-pass")),
        ],
    )?;
    expect_ok(&r)?;
    alice_ok += 1;
    assert_eq!(upstream(&r, "x-credential-identifier"), ["api_key"]);
    ensure!(
        backend.requests() == before + 2,
        "only the two accepted requests went upstream"
    );

    // No credential at all: 401 with one challenge per accepted type.
    let r = gw.get("/multi", &[])?;
    expect_refusal(&r, 401, "No credentials found in request")?;
    assert_eq!(
        answer_headers(&r, "www-authenticate"),
        [
            "Key realm=\"edge\"",
            "Bearer realm=\"edge\"",
            "Basic realm=\"edge\", charset=\"UTF-8\""
        ],
        "{}",
        show(&r)
    );
    // A token without a consumer claim identifies no consumer.
    let token = jwt(
        "HS256",
        None,
        &claims("whoever", json!({})),
        Signing::Hmac(HS_SECRET.as_bytes()),
    )?;
    let r = gw.get("/multi", &[("Authorization", &bearer(&token))])?;
    expect_ok(&r)?;
    assert_eq!(
        upstream(&r, "x-credential-identifier"),
        ["jwt"],
        "{}",
        show(&r)
    );
    assert!(
        upstream(&r, "x-consumer-username").is_empty(),
        "{}",
        show(&r)
    );
    let r = gw.get("/multi", &[("Authorization", "Bearer garbage")])?;
    expect_invalid_token(&r, "malformed")?;
    let r = gw.get(
        "/multi",
        &[
            ("apikey", "not-a-key-0123456789"),
            ("Authorization", &bearer(&token)),
        ],
    )?;
    expect_refusal(&r, 401, "Invalid authentication credentials")?;

    // The anonymous consumer, only for requests without any credential.
    let r = gw.get("/open", &[])?;
    expect_ok(&r)?;
    assert_eq!(
        upstream(&r, "x-consumer-username"),
        ["guest"],
        "{}",
        show(&r)
    );
    assert_eq!(upstream(&r, "x-anonymous-consumer"), ["true"]);
    assert!(upstream(&r, "x-credential-identifier").is_empty());
    let r = gw.get(
        "/open",
        &[("apikey", BOB_KEY), ("X-Anonymous-Consumer", "true")],
    )?;
    expect_ok(&r)?;
    assert_eq!(upstream(&r, "x-consumer-username"), ["bob"]);
    assert!(
        upstream(&r, "x-anonymous-consumer").is_empty(),
        "{}",
        show(&r)
    );
    let r = gw.get("/open", &[("apikey", "not-a-key-0123456789")])?;
    expect_refusal(&r, 401, "Invalid authentication credentials")?;

    // hide_credentials for Basic: no Authorization upstream.
    let r = gw.get("/hidden", &[("Authorization", &alice_basic)])?;
    expect_ok(&r)?;
    alice_ok += 1;
    assert_eq!(upstream(&r, "x-credential-identifier"), ["basic:alice"]);
    assert!(upstream(&r, "authorization").is_empty(), "{}", show(&r));

    // Authorization: deny rules first, then some allow rule must match.
    let r = gw.get("/staff", &[("apikey", ALICE_KEY)])?;
    expect_ok(&r)?;
    alice_ok += 1;
    for key in [BOB_KEY, CAROL_KEY] {
        let r = gw.get("/staff", &[("apikey", key)])?;
        expect_refusal(&r, 403, "You cannot consume this service")?;
        // No token identified the caller: no insufficient_scope challenge.
        assert!(
            answer_headers(&r, "www-authenticate").is_empty(),
            "{}",
            show(&r)
        );
    }

    // Metrics: refusals by listener, route, policy and reason; requests by
    // consumer and status class.
    let rejections = "edge_policy_rejections_total";
    gw.wait_metric(
        rejections,
        &[
            ("listener", "web"),
            ("policy", "auth"),
            ("reason", "missing"),
            ("route", "multi"),
        ],
        |v| v == 1.0,
    )?;
    gw.wait_metric(
        rejections,
        &[
            ("policy", "authorize"),
            ("reason", "denied"),
            ("route", "staff"),
        ],
        |v| v == 1.0,
    )?;
    gw.wait_metric(
        rejections,
        &[
            ("policy", "authorize"),
            ("reason", "not_allowed"),
            ("route", "staff"),
        ],
        |v| v == 1.0,
    )?;
    gw.wait_metric(
        "edge_consumer_requests_total",
        &[("consumer", "alice"), ("status", "2xx")],
        |v| v == f64::from(alice_ok),
    )?;
    gw.wait_metric(
        "edge_consumer_requests_total",
        &[("consumer", "bob"), ("status", "4xx")],
        |v| v >= 1.0,
    )?;
    gw.wait_metric(
        "edge_consumer_requests_total",
        &[("consumer", "guest"), ("status", "2xx")],
        |v| v == 1.0,
    )?;

    // The access log names the consumer, and none for a refused stranger.
    let entries = || -> Vec<Value> {
        std::fs::read_to_string(&access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let alice = gw.wait_for("an access log line of alice on /staff", || {
        Ok(entries()
            .into_iter()
            .find(|e| e["consumer"] == "alice" && e["path"] == "/staff"))
    })?;
    assert_eq!(alice["status"], 200, "{alice}");
    assert_eq!(alice["route"], "staff", "{alice}");
    let stranger = gw.wait_for("an access log line of the refusal on /multi", || {
        Ok(entries()
            .into_iter()
            .find(|e| e["path"] == "/multi" && e["status"] == 401))
    })?;
    assert!(stranger["consumer"].is_null(), "{stranger}");
    Ok(())
}

// ---------------------------------------------------------------------
// JWTs with keys from the file
// ---------------------------------------------------------------------

#[test]
fn jwts_are_checked_for_signature_algorithm_time_issuer_and_audience() -> Result<()> {
    let backend = Backend::start("be", None, "127.0.0.1:0".parse()?)?;
    let rsa = rsa_key()?;
    let other_rsa = rsa_key()?;
    let ec = ec_key()?;
    let rsa_pub = public_pem(&rsa)?;
    let ec_pub = String::from_utf8(ec.public_key_to_pem()?)?;

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("rsa1.pem"), &rsa_pub)?;
    let at = endpoints(1);
    let top = "\
consumers:
  - name: alice
    groups: [admins]
  - name: bob
";
    // An RSA key from a file, an EC key inline (a JSON string is a YAML
    // double-quoted one), an HMAC secret without a kid.
    let keys = "[{kid: rsa1, algorithm: RS256, pem_file: rsa1.pem}, \
                {kid: ec1, algorithm: ES256, public_key: EC_PEM}, \
                {algorithm: HS256, secret: 'SECRET'}]"
        .replace("SECRET", HS_SECRET)
        .replace("EC_PEM", &serde_json::to_string(&ec_pub)?);
    let main = "{auth: {jwt: {keys: KEYS, issuers: ['ISSUER'], audiences: [api], leeway: 0s, \
                from: [header, 'cookie:jwt', 'query:jwt'], consumer_claim: sub, \
                forward_claims: {tenant: X-Tenant}}}}"
        .replace("ISSUER", ISSUER)
        .replace("KEYS", &keys);
    let routes = [
        route("jwt", "/jwt", &main),
        route(
            "rsa-only",
            "/rsa-only",
            "{auth: {jwt: {keys: [{kid: rsa1, algorithm: RS256, pem_file: rsa1.pem}], \
             consumer_claim: sub, hide_credentials: true}}}",
        ),
        route(
            "scoped",
            "/scoped",
            "{auth: {jwt: {keys: [{kid: rsa1, algorithm: RS256, pem_file: rsa1.pem}], consumer_claim: sub}}, \
             authorize: {deny: [{claim: {name: tenant, equals: blocked}}], \
             allow: [{scope: 'reports:read'}, {consumers: [bob]}]}}",
        ),
    ];
    let gw = Gw::start(
        dir,
        at.clone(),
        &yaml(&at, top, "", &routes, backend.addr()),
    )?;
    let rs = |c: &Value| jwt("RS256", Some("rsa1"), c, Signing::Rsa(&rsa));

    // RS256 from the file: the consumer from `sub`, a claim forwarded (the
    // client's own X-Tenant replaced), the token passed on.
    let good = rs(&claims("alice", json!({"tenant": "acme"})))?;
    let r = gw.get(
        "/jwt/a",
        &[
            ("Authorization", &bearer(&good)),
            ("X-Tenant", "evil"),
            ("X-Consumer-Username", "mallory"),
        ],
    )?;
    expect_ok(&r)?;
    let s = show(&r);
    assert_eq!(upstream(&r, "x-consumer-username"), ["alice"], "{s}");
    assert_eq!(upstream(&r, "x-consumer-groups"), ["admins"], "{s}");
    assert_eq!(upstream(&r, "x-credential-identifier"), ["jwt:rsa1"], "{s}");
    assert_eq!(upstream(&r, "x-tenant"), ["acme"], "{s}");
    assert_eq!(upstream(&r, "authorization"), [bearer(&good)], "{s}");

    // ES256 with an inline key; HS256 with a key without kid.
    let r = gw.get(
        "/jwt/b",
        &[(
            "Authorization",
            &bearer(&jwt(
                "ES256",
                Some("ec1"),
                &claims("bob", json!({})),
                Signing::Ec(&ec),
            )?),
        )],
    )?;
    expect_ok(&r)?;
    assert_eq!(upstream(&r, "x-consumer-username"), ["bob"], "{}", show(&r));
    assert_eq!(upstream(&r, "x-credential-identifier"), ["jwt:ec1"]);
    assert!(upstream(&r, "x-consumer-groups").is_empty(), "{}", show(&r));
    assert!(upstream(&r, "x-tenant").is_empty(), "no claim, no header");
    let hs = jwt(
        "HS256",
        None,
        &claims("alice", json!({})),
        Signing::Hmac(HS_SECRET.as_bytes()),
    )?;
    let r = gw.get("/jwt/c", &[("Authorization", &bearer(&hs))])?;
    expect_ok(&r)?;
    assert_eq!(
        upstream(&r, "x-credential-identifier"),
        ["jwt"],
        "{}",
        show(&r)
    );

    // From a cookie and from the query.
    let r = gw.get("/jwt/d", &[("Cookie", &format!("theme=dark; jwt={good}"))])?;
    expect_ok(&r)?;
    assert_eq!(upstream(&r, "x-consumer-username"), ["alice"]);
    let r = gw.get(&format!("/jwt/e?jwt={good}&keep=1"), &[])?;
    expect_ok(&r)?;
    assert_eq!(upstream(&r, "x-consumer-username"), ["alice"]);
    assert!(upstream_line(&r).contains("keep=1"), "{}", show(&r));

    // Bad tokens: 401 with an invalid_token challenge saying why; none
    // reaches the service.
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        ensure!(parts.len() == 3, "a JWS has three parts: {good}");
        let forged = claims("bob", json!({"tenant": "acme"}));
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(forged.to_string().as_bytes()),
            parts[2]
        )
    };
    let cases: Vec<(&str, String)> = vec![
        // leeway: 0s on this route.
        ("expired", rs(&claims("alice", json!({"exp": now() - 30})))?),
        (
            "expired",
            rs(&claims("alice", json!({"exp": now() - 3600})))?,
        ),
        (
            "not valid yet",
            rs(&claims("alice", json!({"nbf": now() + 3600})))?,
        ),
        (
            "issuer",
            rs(&claims("alice", json!({"iss": "https://evil.test"})))?,
        ),
        (
            "audience",
            rs(&claims("alice", json!({"aud": "other-api"})))?,
        ),
        (
            "signature",
            jwt(
                "RS256",
                Some("rsa1"),
                &claims("alice", json!({})),
                Signing::Rsa(&other_rsa),
            )?,
        ),
        ("signature", tampered),
        // `exp` is required; so are `iss` and `aud` where the route names
        // issuers and audiences.
        ("claim", rs(&without(claims("alice", json!({})), "exp"))?),
        ("issuer", rs(&without(claims("alice", json!({})), "iss"))?),
        ("audience", rs(&without(claims("alice", json!({})), "aud"))?),
        ("consumer", rs(&claims("mallory", json!({})))?),
        ("malformed", "not-a-token".to_string()),
        // alg: none (no signature at all): refused, whatever it is called.
        (
            "",
            jwt("none", None, &claims("alice", json!({})), Signing::Unsigned)?,
        ),
        (
            "",
            jwt(
                "none",
                Some("rsa1"),
                &claims("alice", json!({})),
                Signing::Unsigned,
            )?,
        ),
    ];
    let before = backend.requests();
    for (keyword, token) in &cases {
        let r = gw.get("/jwt/x", &[("Authorization", &bearer(token))])?;
        expect_invalid_token(&r, keyword).with_context(|| format!("case {keyword:?}: {token}"))?;
    }
    ensure!(
        backend.requests() == before,
        "a bad token reached the service"
    );

    // A route with only the RSA key: an HS256 token whose HMAC secret is
    // that RSA public key (algorithm confusion) is refused, as is an ES256
    // token naming it, a token without a kid and one naming an unknown kid.
    let confused = jwt(
        "HS256",
        Some("rsa1"),
        &claims("alice", json!({})),
        Signing::Hmac(rsa_pub.as_bytes()),
    )?;
    let r = gw.get("/rsa-only", &[("Authorization", &bearer(&confused))])?;
    expect_invalid_token(&r, "algorithm")?;
    let es_as_rsa = jwt(
        "ES256",
        Some("rsa1"),
        &claims("alice", json!({})),
        Signing::Ec(&ec),
    )?;
    let r = gw.get("/rsa-only", &[("Authorization", &bearer(&es_as_rsa))])?;
    expect_invalid_token(&r, "algorithm")?;
    let confused_no_kid = jwt(
        "HS256",
        None,
        &claims("alice", json!({})),
        Signing::Hmac(rsa_pub.as_bytes()),
    )?;
    let r = gw.get("/rsa-only", &[("Authorization", &bearer(&confused_no_kid))])?;
    expect_invalid_token(&r, "")?;
    let unknown_kid = jwt(
        "RS256",
        Some("nope"),
        &claims("alice", json!({})),
        Signing::Rsa(&rsa),
    )?;
    let r = gw.get("/rsa-only", &[("Authorization", &bearer(&unknown_kid))])?;
    expect_invalid_token(&r, "unknown")?;
    ensure!(
        backend.requests() == before,
        "a bad token reached the service"
    );
    // hide_credentials: the token stays at edge.
    let r = gw.get("/rsa-only", &[("Authorization", &bearer(&good))])?;
    expect_ok(&r)?;
    assert_eq!(upstream(&r, "x-consumer-username"), ["alice"]);
    assert!(upstream(&r, "authorization").is_empty(), "{}", show(&r));

    // Authorization on claims: a scope, a consumer, a denied claim value.
    let with = |extra: Value| rs(&claims("alice", extra));
    let r = gw.get(
        "/scoped",
        &[(
            "Authorization",
            &bearer(&with(
                json!({"scope": "reports:read other", "tenant": "acme"}),
            )?),
        )],
    )?;
    expect_ok(&r)?;
    let r = gw.get(
        "/scoped",
        &[(
            "Authorization",
            &bearer(&with(json!({"scp": ["reports:read"]}))?),
        )],
    )?;
    expect_ok(&r)?;
    for extra in [
        json!({"scope": "reports:write"}),
        json!({"scope": "reports:read", "tenant": "blocked"}),
    ] {
        let r = gw.get(
            "/scoped",
            &[("Authorization", &bearer(&with(extra.clone())?))],
        )?;
        expect_refusal(&r, 403, "You cannot consume this service")
            .with_context(|| format!("claims {extra}"))?;
        assert_eq!(
            answer_headers(&r, "www-authenticate"),
            ["Bearer error=\"insufficient_scope\""],
            "{}",
            show(&r)
        );
    }
    let r = gw.get(
        "/scoped",
        &[("Authorization", &bearer(&rs(&claims("bob", json!({})))?))],
    )?;
    expect_ok(&r)?;
    // The default leeway (60 s) forgives a token expired 30 s ago.
    let r = gw.get(
        "/scoped",
        &[(
            "Authorization",
            &bearer(&with(json!({"scope": "reports:read", "exp": now() - 30}))?),
        )],
    )?;
    expect_ok(&r)?;

    let rejections = "edge_policy_rejections_total";
    gw.wait_metric(
        rejections,
        &[("policy", "auth"), ("reason", "expired"), ("route", "jwt")],
        |v| v == 2.0,
    )?;
    gw.wait_metric(
        rejections,
        &[
            ("policy", "auth"),
            ("reason", "algorithm"),
            ("route", "rsa-only"),
        ],
        |v| v == 2.0,
    )?;
    gw.wait_metric(
        rejections,
        &[("policy", "authorize"), ("route", "scoped")],
        |v| v >= 1.0,
    )?;
    Ok(())
}

// ---------------------------------------------------------------------
// JWTs with keys from a JWKS URL
// ---------------------------------------------------------------------

#[test]
fn jwks_keys_are_fetched_rotated_and_refetched_at_a_bounded_rate() -> Result<()> {
    let backend = Backend::start("be", None, "127.0.0.1:0".parse()?)?;
    let (k1, k2, s1) = (rsa_key()?, rsa_key()?, rsa_key()?);
    let rotating = JwksServer::start(&json!({"keys": [rsa_jwk(&k1, "k1")?]}))?;
    let steady = JwksServer::start(&json!({"keys": [rsa_jwk(&s1, "s1")?]}))?;
    // A key set server that never answers: bound, not listening.
    let (_held, refused) = edge_tests::proxy::refusing_port()?;

    let jwks = |url: &str, min_refetch: &str| {
        "{auth: {jwt: {jwks: {url: 'URL', min_refetch: MIN}}}}"
            .replace("URL", url)
            .replace("MIN", min_refetch)
    };
    let at = endpoints(1);
    let routes = [
        route("rot", "/rot", &jwks(&rotating.url(), "100ms")),
        route("steady", "/steady", &jwks(&steady.url(), "1h")),
        route(
            "down",
            "/down",
            &jwks(&format!("http://{refused}/jwks.json"), "1h"),
        ),
    ];
    let gw = Gw::start(
        tempfile::tempdir()?,
        at.clone(),
        &yaml(&at, "", "", &routes, backend.addr()),
    )?;
    let any = claims("someone", json!({}));
    let passes = |path: &str, token: &str| -> Result<Option<Message>> {
        let r = gw.get(path, &[("Authorization", &bearer(token))])?;
        Ok((r.status() == Some(200)).then_some(r))
    };

    // The set is fetched in the background from the start.
    let t1 = jwt("RS256", Some("k1"), &any, Signing::Rsa(&k1))?;
    let r = gw.wait_for("a token signed by k1 to pass", || passes("/rot", &t1))?;
    assert_eq!(
        upstream(&r, "x-credential-identifier"),
        ["jwt:k1"],
        "{}",
        show(&r)
    );

    // Rotation: the server now has k2 only. A token naming k2 makes edge
    // fetch again (once min_refetch has passed since the last fetch).
    rotating.set(&json!({"keys": [rsa_jwk(&k2, "k2")?]}));
    let t2 = jwt("RS256", Some("k2"), &any, Signing::Rsa(&k2))?;
    let r = gw.wait_for("a token signed by the new key k2 to pass", || {
        passes("/rot", &t2)
    })?;
    assert_eq!(
        upstream(&r, "x-credential-identifier"),
        ["jwt:k2"],
        "{}",
        show(&r)
    );
    // k1 left the set: its tokens no longer pass.
    let r = gw.get("/rot", &[("Authorization", &bearer(&t1))])?;
    expect_invalid_token(&r, "unknown")?;

    // Unknown kids do not make edge hammer the key server: with
    // min_refetch 1h, a burst of them costs at most one fetch.
    let ts = jwt("RS256", Some("s1"), &any, Signing::Rsa(&s1))?;
    gw.wait_for("a token signed by s1 to pass", || passes("/steady", &ts))?;
    let fetched = steady.fetches();
    ensure!(fetched >= 1, "the steady set was never fetched");
    let unknown = jwt("RS256", Some("k9"), &any, Signing::Rsa(&s1))?;
    for _ in 0..5 {
        let r = gw.get("/steady", &[("Authorization", &bearer(&unknown))])?;
        expect_invalid_token(&r, "unknown")?;
    }
    let after = steady.fetches();
    ensure!(
        after <= fetched + 1,
        "5 tokens with an unknown kid within min_refetch caused {} fetches",
        after - fetched
    );
    // The known key still works.
    expect_ok(&gw.get("/steady", &[("Authorization", &bearer(&ts))])?)?;

    // A set that was never fetched: edge cannot judge the token (503, its
    // fault, not the client's), rather than calling it invalid.
    let r = gw.get("/down", &[("Authorization", &bearer(&t1))])?;
    ensure!(r.status() == Some(503), "expected 503:\n{}", show(&r));
    ensure!(
        r.header("content-type") == Some("application/json"),
        "{}",
        show(&r)
    );
    ensure!(r.header("retry-after").is_some(), "{}", show(&r));
    gw.wait_metric("edge_jwks_fetches_total", &[("result", "error")], |v| {
        v >= 1.0
    })?;
    Ok(())
}

// ---------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------

#[test]
fn cors_preflights_are_answered_by_edge_and_allowed_origins_may_read_answers() -> Result<()> {
    let backend = Backend::start("be", None, "127.0.0.1:0".parse()?)?;
    let at = endpoints(1);
    let top = format!("consumers:\n  - name: bob\n    api_keys: [{{key: {BOB_KEY}}}]\n");
    let routes = [
        route(
            "api",
            "/api",
            "{cors: {origins: ['https://app.example.com', 'https://*.example.org'], \
             origin_regex: ['https://[a-z]+\\.partner\\.test'], methods: [GET, PUT], \
             headers: [x-token], expose_headers: [ratelimit], credentials: true, max_age: 10m}, \
             auth: {api_key: {}}}",
        ),
        route(
            "public",
            "/public",
            "{cors: {origins: ['*'], preflight_refusal_status: 400}}",
        ),
    ];
    let gw = Gw::start(
        tempfile::tempdir()?,
        at.clone(),
        &yaml(&at, &top, "", &routes, backend.addr()),
    )?;
    let preflight = |path: &str, origin: &str, method: &str, headers: Option<&str>| {
        let mut h = vec![
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
        ];
        if let Some(v) = headers {
            h.push(("Access-Control-Request-Headers", v));
        }
        http::request(gw.addr(), "OPTIONS", path, &h)
    };
    let app = "https://app.example.com";
    let before = backend.requests();

    // Allowed: 204 from edge, no credentials asked for (CORS runs before
    // auth; browsers send none with a preflight).
    let r = preflight("/api/items", app, "PUT", Some("X-Token"))?;
    let s = show(&r);
    assert_eq!(r.status(), Some(204), "{s}");
    assert_eq!(r.header("access-control-allow-origin"), Some(app), "{s}");
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, PUT"),
        "{s}"
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("x-token"),
        "{s}"
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"), "{s}");
    assert_eq!(
        r.header("access-control-allow-credentials"),
        Some("true"),
        "{s}"
    );
    assert!(varies_on_origin(&r), "{s}");
    // A wildcard label (one or more), and a regular expression, anchored.
    for origin in [
        "https://shop.example.org",
        "https://a.b.example.org",
        "https://acme.partner.test",
    ] {
        let r = preflight("/api/items", origin, "GET", None)?;
        assert_eq!(r.status(), Some(204), "{origin}: {}", show(&r));
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    }

    // Refused: another origin, method or header; no CORS fields at all.
    for (origin, method, headers) in [
        ("https://evil.example.net", "GET", None),
        ("https://example.org", "GET", None),
        ("http://app.example.com", "GET", None),
        ("https://acme.partner.test.evil.net", "GET", None),
        (app, "DELETE", None),
        (app, "PUT", Some("x-token, x-other")),
    ] {
        let r = preflight("/api/items", origin, method, headers)?;
        expect_refusal(&r, 403, "CORS preflight refused")
            .with_context(|| format!("{origin} {method} {headers:?}"))?;
        assert!(
            r.header("access-control-allow-origin").is_none(),
            "{}",
            show(&r)
        );
    }

    // Any origin without credentials: `*`; a refusal status of choice.
    let r = preflight("/public", "https://anyone.test", "GET", None)?;
    assert_eq!(r.status(), Some(204), "{}", show(&r));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("access-control-allow-credentials").is_none());
    let r = preflight("/public", "https://anyone.test", "DELETE", None)?;
    assert_eq!(r.status(), Some(400), "{}", show(&r));
    assert!(
        r.header("access-control-allow-origin").is_none(),
        "{}",
        show(&r)
    );

    ensure!(
        backend.requests() == before,
        "a preflight reached the service"
    );

    // Actual requests: an allowed origin may read the answer...
    let r = gw.get("/api/items", &[("Origin", app), ("apikey", BOB_KEY)])?;
    expect_ok(&r)?;
    let s = show(&r);
    assert_eq!(r.header("access-control-allow-origin"), Some(app), "{s}");
    assert_eq!(
        r.header("access-control-allow-credentials"),
        Some("true"),
        "{s}"
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("ratelimit"),
        "{s}"
    );
    assert!(varies_on_origin(&r), "{s}");
    // ... and why it was refused.
    let r = gw.get("/api/items", &[("Origin", app)])?;
    expect_refusal(&r, 401, "No credentials found in request")?;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(app),
        "{}",
        show(&r)
    );
    // Another origin is served all the same, but may not read it.
    let r = gw.get(
        "/api/items",
        &[("Origin", "https://evil.example.net"), ("apikey", BOB_KEY)],
    )?;
    expect_ok(&r)?;
    assert!(
        r.header("access-control-allow-origin").is_none(),
        "{}",
        show(&r)
    );
    assert!(varies_on_origin(&r), "{}", show(&r));
    let r = gw.get("/public/x", &[("Origin", "https://anyone.test")])?;
    expect_ok(&r)?;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // OPTIONS without Access-Control-Request-Method is no preflight: it
    // goes to the service.
    let r = http::request(
        gw.addr(),
        "OPTIONS",
        "/public/x",
        &[("Origin", "https://anyone.test")],
    )?;
    expect_ok(&r)?;
    assert!(
        upstream_line(&r).starts_with("OPTIONS /public/x "),
        "{}",
        show(&r)
    );
    ensure!(
        backend.requests() == before + 4,
        "the four actual requests, and only they, went upstream"
    );
    gw.wait_metric(
        "edge_policy_rejections_total",
        &[("policy", "cors"), ("reason", "origin"), ("route", "api")],
        |v| v == 4.0,
    )?;
    Ok(())
}

// ---------------------------------------------------------------------
// client addresses
// ---------------------------------------------------------------------

#[test]
fn address_rules_decide_first_and_trust_forwarded_for_only_from_trusted_proxies() -> Result<()> {
    let backend = Backend::start("be", None, "127.0.0.1:0".parse()?)?;
    let at = endpoints(2);
    let (web, behind) = (at.listeners[0], at.listeners[1]);
    let routes_web = [
        route(
            "deny",
            "/deny",
            "{ip: {deny: ['127.0.0.66/32']}, auth: {api_key: {}}}",
        ),
        route("allow", "/allow", "{ip: {allow: ['127.0.0.1/32']}}"),
    ]
    .concat();
    let routes_behind = [
        route(
            "limited",
            "/limited",
            "{rate_limits: [{name: per-client, key: client_ip, limit: 1, window: 1h}]}",
        ),
        route(
            "exempt",
            "/exempt",
            "{inherit: false, rate_limits: [{name: exempt, key: route, limit: 100, window: 1h}]}",
        ),
    ]
    .concat();
    let config = format!(
        "\
consumers:
  - name: bob
    api_keys: [{{key: {BOB_KEY}}}]
listeners:
  - name: web
    address: '{web}'
    routes:
{routes_web}  - name: behind
    address: '{behind}'
    trusted_proxies: ['127.0.0.0/8']
    policies: {{ip: {{deny: ['203.0.113.0/24']}}}}
    routes:
{routes_behind}pools:
  - name: app
    backends: [{{address: '{backend}'}}]
admin: {{address: '{admin}'}}
server: {{threads: 2}}
",
        backend = backend.addr(),
        admin = at.admin,
    );
    let gw = Gw::start(tempfile::tempdir()?, at.clone(), &config)?;
    let (one, two, bad) = (ip("127.0.0.1"), ip("127.0.0.2"), ip("127.0.0.66"));

    // A denied address is refused before it is asked for credentials.
    let r = request_from(bad, web, "/deny", &[])?;
    ensure!(r.status() == Some(403), "{}", show(&r));
    ensure!(
        r.header("content-type") == Some("application/json"),
        "{}",
        show(&r)
    );
    let r = request_from(bad, web, "/deny", &[("apikey", BOB_KEY)])?;
    ensure!(r.status() == Some(403), "{}", show(&r));
    let r = request_from(one, web, "/deny", &[])?;
    expect_refusal(&r, 401, "No credentials found in request")?;
    // A peer that is no trusted proxy cannot claim another address.
    let r = request_from(
        one,
        web,
        "/deny",
        &[("apikey", BOB_KEY), ("X-Forwarded-For", "127.0.0.66")],
    )?;
    expect_ok(&r)?;
    let r = request_from(
        bad,
        web,
        "/deny",
        &[("apikey", BOB_KEY), ("X-Forwarded-For", "127.0.0.1")],
    )?;
    ensure!(r.status() == Some(403), "{}", show(&r));
    // An allow list keeps everyone else out.
    expect_ok(&request_from(one, web, "/allow", &[])?)?;
    let r = request_from(two, web, "/allow", &[])?;
    ensure!(r.status() == Some(403), "{}", show(&r));

    // Behind trusted proxies the client is the right-most untrusted entry
    // of X-Forwarded-For, for the listener's address rules (inherited)...
    let xff = |v: &'static str| [("X-Forwarded-For", v)];
    let r = request_from(one, behind, "/limited", &xff("203.0.113.7"))?;
    ensure!(r.status() == Some(403), "{}", show(&r));
    let r = request_from(one, behind, "/limited", &xff("198.51.100.1, 203.0.113.7"))?;
    ensure!(r.status() == Some(403), "{}", show(&r));
    // (a claim left of an untrusted entry is nobody's word)
    let r = request_from(one, behind, "/limited", &xff("203.0.113.7, 198.51.100.1"))?;
    expect_ok(&r)?;
    // ... and for limits per client address (the refusals above, by an
    // earlier policy, used none).
    let r = request_from(one, behind, "/limited", &xff("198.51.100.1"))?;
    expect_refusal(&r, 429, "API rate limit exceeded")?;
    expect_ok(&request_from(
        one,
        behind,
        "/limited",
        &xff("198.51.100.2"),
    )?)?;
    expect_ok(&request_from(
        two,
        behind,
        "/limited",
        &xff("198.51.100.3, 127.0.0.9"),
    )?)?;
    let r = request_from(two, behind, "/limited", &xff("198.51.100.3"))?;
    expect_refusal(&r, 429, "API rate limit exceeded")?;
    // inherit: false drops the listener's address rules.
    expect_ok(&request_from(one, behind, "/exempt", &xff("203.0.113.7"))?)?;

    gw.wait_metric(
        "edge_policy_rejections_total",
        &[
            ("listener", "behind"),
            ("policy", "ip"),
            ("reason", "denied"),
            ("route", "limited"),
        ],
        |v| v == 2.0,
    )?;
    gw.wait_metric(
        "edge_policy_rejections_total",
        &[("listener", "web"), ("policy", "ip"), ("route", "deny")],
        |v| v == 3.0,
    )?;
    Ok(())
}

// ---------------------------------------------------------------------
// rate limits, kept across a reload
// ---------------------------------------------------------------------

/// The rate-limit test's configuration: `tenant_limit` for the per-tenant
/// limit; `added` adds a route that answers by itself.
fn limits_config(at: &Endpoints, backend: SocketAddr, tenant_limit: u32, added: bool) -> String {
    let top = format!(
        "\
consumers:
  - name: alice
    groups: [admins]
    api_keys: [{{key: {ALICE_KEY}}}]
  - name: bob
    groups: [readers]
    api_keys: [{{key: {BOB_KEY}}}]
"
    );
    let listener =
        "    policies: {rate_limits: [{name: site, key: client_ip, limit: 1000, window: 1h}]}\n";
    let mut routes = vec![
        route(
            "ip",
            "/ip",
            "{rate_limits: [{name: per-ip, key: client_ip, limit: 3, window: 1h}]}",
        ),
        route(
            "consumer",
            "/consumer",
            "{auth: {api_key: {}}, rate_limits: [{name: per-consumer, key: consumer, limit: 2, window: 1h}], \
             rate_limit_headers: x-ratelimit}",
        ),
        route(
            "tenant",
            "/tenant",
            &"{rate_limits: [{name: per-tenant, key: 'header:X-Tenant', limit: LIMIT, window: 1h}], \
              rate_limit_headers: none}"
                .replace("LIMIT", &tenant_limit.to_string()),
        ),
        route(
            "bare",
            "/bare",
            "{inherit: false, rate_limits: [{name: bare, key: route, limit: 5, window: 1m}]}",
        ),
        route(
            "admins",
            "/admins",
            "{auth: {api_key: {}}, authorize: {allow: [{groups: [admins]}]}, \
             rate_limits: [{name: admins-only, key: route, limit: 1, window: 1h}]}",
        ),
    ];
    if added {
        routes.push(
            "      - name: added\n        match: {path: {exact: /added}}\n        respond: {status: 200, body: \"added\"}\n"
                .to_string(),
        );
    }
    yaml(at, &top, listener, &routes, backend)
}

#[test]
fn rate_limits_count_per_key_answer_429_and_keep_their_counts_across_a_reload() -> Result<()> {
    let backend = Backend::start("be", None, "127.0.0.1:0".parse()?)?;
    let at = endpoints(1);
    let gw = Gw::start(
        tempfile::tempdir()?,
        at.clone(),
        &limits_config(&at, backend.addr(), 1, false),
    )?;
    let addr = gw.addr();
    let (one, two) = (ip("127.0.0.1"), ip("127.0.0.2"));

    // limit 3 per hour, burst 3: three pass, the state in the draft
    // headers (the listener's limit and the route's, the tightest named).
    for left in [2u64, 1, 0] {
        let r = request_from(one, addr, "/ip", &[])?;
        expect_ok(&r)?;
        let s = show(&r);
        let (name, remaining, reset) = ratelimit_state(&r).with_context(|| s.clone())?;
        ensure!(
            name == "per-ip" && remaining == left,
            "r={left} expected: {s}"
        );
        ensure!((1..=3600).contains(&reset), "t out of range: {s}");
        ensure!(
            r.header("ratelimit-policy") == Some("\"site\";q=1000;w=3600, \"per-ip\";q=3;w=3600"),
            "{s}"
        );
    }
    let before = backend.requests();
    let r = request_from(one, addr, "/ip", &[])?;
    expect_refusal(&r, 429, "API rate limit exceeded")?;
    let retry: u64 = r
        .header("retry-after")
        .with_context(|| show(&r))?
        .parse()
        .with_context(|| show(&r))?;
    ensure!(retry >= 1, "{}", show(&r));
    ensure!(
        ratelimit_state(&r).is_some_and(|(n, left, _)| n == "per-ip" && left == 0),
        "{}",
        show(&r)
    );
    ensure!(backend.requests() == before, "a 429 went upstream");
    // Another address has its own count.
    let r = request_from(two, addr, "/ip", &[])?;
    expect_ok(&r)?;
    ensure!(
        ratelimit_state(&r).is_some_and(|(_, left, _)| left == 2),
        "{}",
        show(&r)
    );

    // Per consumer, X-RateLimit-* headers. Refusals by auth come first and
    // use nothing.
    for _ in 0..3 {
        expect_refusal(
            &gw.get("/consumer", &[])?,
            401,
            "No credentials found in request",
        )?;
    }
    for left in ["1", "0"] {
        let r = gw.get("/consumer", &[("apikey", ALICE_KEY)])?;
        expect_ok(&r)?;
        let s = show(&r);
        assert_eq!(r.header("x-ratelimit-limit"), Some("2"), "{s}");
        assert_eq!(r.header("x-ratelimit-remaining"), Some(left), "{s}");
        let reset: u64 = r.header("x-ratelimit-reset").context(s.clone())?.parse()?;
        ensure!((1..=3600).contains(&reset), "{s}");
        ensure!(r.header("ratelimit").is_none(), "one style only: {s}");
    }
    let r = gw.get("/consumer", &[("apikey", ALICE_KEY)])?;
    expect_refusal(&r, 429, "API rate limit exceeded")?;
    let r = gw.get("/consumer", &[("apikey", BOB_KEY)])?;
    expect_ok(&r)?;
    assert_eq!(r.header("x-ratelimit-remaining"), Some("1"), "{}", show(&r));

    // Per header value, no rate-limit headers (429 still says when).
    let tenant = |v: &'static str| [("X-Tenant", v)];
    let r = gw.get("/tenant", &tenant("a"))?;
    expect_ok(&r)?;
    for h in ["ratelimit", "ratelimit-policy", "x-ratelimit-limit"] {
        ensure!(r.header(h).is_none(), "{h}: {}", show(&r));
    }
    let r = gw.get("/tenant", &tenant("a"))?;
    expect_refusal(&r, 429, "API rate limit exceeded")?;
    ensure!(r.header("retry-after").is_some(), "{}", show(&r));
    expect_ok(&gw.get("/tenant", &tenant("b"))?)?;

    // inherit: false: only the route's own limit.
    let r = gw.get("/bare", &[])?;
    expect_ok(&r)?;
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"bare\";q=5;w=60"),
        "{}",
        show(&r)
    );

    // Refusals by authorization come before limits too.
    for _ in 0..3 {
        expect_refusal(
            &gw.get("/admins", &[("apikey", BOB_KEY)])?,
            403,
            "You cannot consume this service",
        )?;
    }
    expect_ok(&gw.get("/admins", &[("apikey", ALICE_KEY)])?)?;
    expect_refusal(
        &gw.get("/admins", &[("apikey", ALICE_KEY)])?,
        429,
        "API rate limit exceeded",
    )?;

    // A reload that adds a route and changes the tenant limit only.
    let config = gw.dir.path().join("edge.yaml");
    let next = gw.dir.path().join("edge.yaml.new");
    std::fs::write(&next, limits_config(&at, backend.addr(), 2, true))?;
    std::fs::rename(&next, &config)?;
    let out = Command::new(edge_tests::edge::binary()?)
        .arg("reload")
        .arg("--config")
        .arg(&config)
        .output()?;
    ensure!(
        out.status.success(),
        "edge reload failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    gw.wait_for("the reloaded configuration's new route", || {
        Ok(gw
            .get("/added", &[])
            .ok()
            .filter(|r| r.status() == Some(200)))
    })?;

    // Unchanged limits kept their counts...
    let r = request_from(one, addr, "/ip", &[])?;
    expect_refusal(&r, 429, "API rate limit exceeded").context("per-ip after the reload")?;
    let r = request_from(two, addr, "/ip", &[])?;
    expect_ok(&r)?;
    ensure!(
        ratelimit_state(&r).is_some_and(|(_, left, _)| left == 1),
        "{}",
        show(&r)
    );
    expect_refusal(
        &gw.get("/consumer", &[("apikey", ALICE_KEY)])?,
        429,
        "API rate limit exceeded",
    )
    .context("per-consumer after the reload")?;
    expect_refusal(
        &gw.get("/admins", &[("apikey", ALICE_KEY)])?,
        429,
        "API rate limit exceeded",
    )
    .context("admins-only after the reload")?;
    // ... a changed one starts afresh.
    expect_ok(&gw.get("/tenant", &tenant("a"))?).context("per-tenant, now 2 an hour")?;

    gw.wait_metric(
        "edge_policy_rejections_total",
        &[
            ("policy", "rate_limit"),
            ("reason", "exceeded"),
            ("route", "ip"),
        ],
        |v| v == 2.0,
    )?;
    Ok(())
}

// ---------------------------------------------------------------------
// requests in flight
// ---------------------------------------------------------------------

/// Holds requests at the backend until opened (at most 20 s, so that a
/// failed test cannot hang).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
    arrived: AtomicUsize,
}

impl Gate {
    fn pass(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            open = match self.changed.wait_timeout(open, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_all();
    }

    fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }
}

/// Opens the gate when dropped, so that nothing stays held.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

#[test]
fn a_concurrency_bound_refuses_requests_beyond_it_until_one_ends() -> Result<()> {
    let gate = Arc::new(Gate::default());
    let held = Arc::clone(&gate);
    let handler: Handler = Arc::new(move |req: &Message| {
        held.pass();
        echo(req)
    });
    let backend = Backend::start_with("slow", None, "127.0.0.1:0".parse()?, handler)?;
    let at = endpoints(1);
    let routes = [route(
        "slow",
        "/slow",
        "{concurrency: {key: route, max: 1}}",
    )];
    let gw = Gw::start(
        tempfile::tempdir()?,
        at.clone(),
        &yaml(&at, "", "", &routes, backend.addr()),
    )?;
    // Dropped before edge and the backend: nothing stays held.
    let _release = OpenOnDrop(Arc::clone(&gate));

    let addr = gw.addr();
    let first = std::thread::spawn(move || http::request(addr, "GET", "/slow/first", &[]));
    gw.wait_for("the first request to reach the service", || {
        Ok((gate.arrived() == 1).then_some(()))
    })?;
    let r = gw.get("/slow/second", &[])?;
    expect_refusal(&r, 429, "Too many requests in flight")?;
    ensure!(r.header("retry-after").is_some(), "{}", show(&r));
    ensure!(
        gate.arrived() == 1,
        "the refused request reached the service"
    );

    gate.open();
    let r = first
        .join()
        .map_err(|_| anyhow!("the first client panicked"))??;
    expect_ok(&r)?;
    // Its place is free once it has ended.
    gw.wait_for("a new request to pass once the first has ended", || {
        let r = gw.get("/slow/third", &[])?;
        Ok((r.status() == Some(200)).then_some(()))
    })?;
    gw.wait_metric(
        "edge_policy_rejections_total",
        &[
            ("policy", "concurrency"),
            ("reason", "exceeded"),
            ("route", "slow"),
        ],
        |v| v >= 1.0,
    )?;
    Ok(())
}

// ---------------------------------------------------------------------
// limits shared through Redis
// ---------------------------------------------------------------------

#[test]
fn redis_limits_are_shared_by_edges_and_fail_open_or_closed_without_it() -> Result<()> {
    let backend = Backend::start("be", None, "127.0.0.1:0".parse()?)?;
    let mut redis = Redis::start()?;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    // Two edges, the same listener, route and limit: the same counter.
    let start = |on_error: &str| -> Result<Gw> {
        let at = endpoints(1);
        let top =
            format!("gateway:\n  redis: {{url: '{url}', timeout: 500ms, on_error: {on_error}}}\n");
        let routes = [route(
            "shared",
            "/shared",
            "{rate_limits: [{name: shared, key: route, limit: 4, window: 1h, store: redis}]}",
        )];
        Gw::start(
            tempfile::tempdir()?,
            at.clone(),
            &yaml(&at, &top, "", &routes, backend.addr()),
        )
    };
    let open = start("open")?;
    let closed = start("closed")?;

    // Two through each pass, counting down one shared budget of four.
    let mut left = Vec::new();
    for gw in [&open, &open, &closed, &closed] {
        let r = gw.get("/shared", &[])?;
        expect_ok(&r)?;
        left.push(ratelimit_state(&r).map(|(_, remaining, _)| remaining));
    }
    ensure!(
        left == [Some(3), Some(2), Some(1), Some(0)],
        "RateLimit r= through the two edges: {left:?}"
    );
    // The fifth, through either, is refused.
    for gw in [&open, &closed] {
        let r = gw.get("/shared", &[])?;
        expect_refusal(&r, 429, "API rate limit exceeded")?;
        ensure!(r.header("retry-after").is_some(), "{}", show(&r));
    }

    // Redis gone: on_error open lets requests through, closed refuses them.
    redis.stop()?;
    open.wait_for("requests to pass without Redis (on_error: open)", || {
        let r = open.get("/shared", &[])?;
        Ok((r.status() == Some(200)).then_some(()))
    })?;
    let r = closed.wait_for(
        "requests to get 503 without Redis (on_error: closed)",
        || {
            let r = closed.get("/shared", &[])?;
            Ok((r.status() == Some(503)).then_some(r))
        },
    )?;
    expect_refusal(&r, 503, "Rate limits cannot be checked right now")?;
    for gw in [&open, &closed] {
        gw.wait_metric(
            "edge_ratelimit_store_errors_total",
            &[("store", "redis")],
            |v| v >= 1.0,
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------
// OAuth2 token introspection
// ---------------------------------------------------------------------

/// An RFC 7662 endpoint: `good` is active (alice, scope `read`), `revoked`
/// is not; a request without edge's client credentials gets 401.
fn introspection_server() -> Result<Backend> {
    let creds = format!(
        "Basic {}",
        openssl::base64::encode_block(b"edge:introspection-secret")
    );
    let handler: Handler = Arc::new(move |req: &Message| {
        if req.header("authorization") != Some(creds.as_str()) {
            return Response::new(401, "{}");
        }
        let body = req.text();
        let token = body
            .split('&')
            .find_map(|p| p.strip_prefix("token="))
            .unwrap_or("");
        let answer = match token {
            "good" => {
                json!({"active": true, "username": "alice", "scope": "read", "exp": now() + 600})
            }
            "writer" => {
                json!({"active": true, "username": "alice", "scope": "write", "exp": now() + 600})
            }
            _ => json!({"active": false}),
        };
        Response::new(200, answer.to_string()).header("Content-Type", "application/json")
    });
    Backend::start_with("introspect", None, "127.0.0.1:0".parse()?, handler)
}

#[test]
fn opaque_tokens_are_introspected_cached_and_a_revoked_one_is_refused() -> Result<()> {
    let backend = Backend::start("be", None, "127.0.0.1:0".parse()?)?;
    let server = introspection_server()?;
    let (_held, refused) = edge_tests::proxy::refusing_port()?;
    let at = endpoints(1);
    let intro = |url: &str, secret: &str| {
        format!(
            "{{auth: {{introspection: {{url: '{url}', client_id: edge, client_secret: {secret}, consumer_claim: username, hide_credentials: true}}}}, authorize: {{allow: [{{scope: read}}]}}}}"
        )
    };
    let url = format!("http://{}/introspect", server.addr());
    let routes = [
        route(
            "partners",
            "/partners",
            &intro(&url, "introspection-secret"),
        ),
        route("badcreds", "/badcreds", &intro(&url, "wrong")),
        route(
            "down",
            "/down",
            &intro(&format!("http://{refused}/introspect"), "x"),
        ),
    ];
    let top = "consumers:\n  - name: alice\n";
    let gw = Gw::start(
        tempfile::tempdir()?,
        at.clone(),
        &yaml(&at, top, "", &routes, backend.addr()),
    )?;

    let ok = gw.get("/partners/x", &[("Authorization", &bearer("good"))])?;
    expect_ok(&ok)?;
    assert_eq!(
        upstream(&ok, "x-consumer-username"),
        ["alice"],
        "{}",
        show(&ok)
    );
    assert_eq!(
        upstream(&ok, "x-credential-identifier"),
        ["introspection"],
        "{}",
        show(&ok)
    );
    assert!(
        upstream(&ok, "authorization").is_empty(),
        "hide_credentials keeps the token from the service:\n{}",
        show(&ok)
    );
    // A second request with the same token is answered from the cache.
    let asked = server.requests();
    expect_ok(&gw.get("/partners/x", &[("Authorization", &bearer("good"))])?)?;
    assert_eq!(server.requests(), asked, "the answer was cached");

    let revoked = gw.get("/partners/x", &[("Authorization", &bearer("revoked"))])?;
    expect_invalid_token(&revoked, "not active")?;
    // Active, but without the scope the route asks for.
    let writer = gw.get("/partners/x", &[("Authorization", &bearer("writer"))])?;
    expect_refusal(&writer, 403, "You cannot consume this service")?;
    // The server refuses edge's credentials, or is down: edge cannot
    // check the token, which is not the client's fault.
    let bad = gw.get("/badcreds/x", &[("Authorization", &bearer("good"))])?;
    assert_eq!(bad.status(), Some(503), "{}", show(&bad));
    let down = gw.get("/down/x", &[("Authorization", &bearer("good"))])?;
    assert_eq!(down.status(), Some(503), "{}", show(&down));
    assert_eq!(
        backend.requests(),
        2,
        "only the two good requests reached the service"
    );
    Ok(())
}

// ---------------------------------------------------------------------
// A request counts against all of a route's limits or against none
// ---------------------------------------------------------------------

/// `big` (3 per hour, per route) is checked before `small` (1 per hour,
/// per tenant): a request `small` refuses must give back what `big` took,
/// so that after a, a (refused), b and c, it is d that `big` refuses.
fn all_or_nothing(gw: &Gw, path: &str) -> Result<()> {
    let tenant = |t: &str| gw.get(path, &[("X-Tenant", t)]);
    expect_ok(&tenant("a")?)?;
    let r = tenant("a")?;
    expect_refusal(&r, 429, "API rate limit exceeded")?;
    ensure!(
        ratelimit_state(&r).is_some_and(|(name, _, _)| name == "small"),
        "small refuses the second request of a:\n{}",
        show(&r)
    );
    // Had the refused request used `big`, c would already be refused.
    expect_ok(&tenant("b")?)?;
    expect_ok(&tenant("c")?)?;
    let r = tenant("d")?;
    expect_refusal(&r, 429, "API rate limit exceeded")?;
    ensure!(
        ratelimit_state(&r).is_some_and(|(name, _, _)| name == "big"),
        "big refuses d, after a, b and c:\n{}",
        show(&r)
    );
    Ok(())
}

#[test]
fn a_request_a_later_limit_refuses_is_not_counted_by_the_earlier_ones() -> Result<()> {
    let backend = Backend::start("be", None, "127.0.0.1:0".parse()?)?;
    let mut redis = Redis::start()?;
    let at = endpoints(1);
    let limits = |store: &str| {
        format!(
            "{{rate_limits: [{{name: big, key: route, limit: 3, window: 1h, store: {store}}}, \
             {{name: small, key: 'header:X-Tenant', limit: 1, window: 1h, store: {store}}}]}}"
        )
    };
    let routes = [
        route("local", "/local", &limits("local")),
        route("shared", "/shared", &limits("redis")),
    ];
    let top = format!(
        "gateway:\n  redis: {{url: 'redis://127.0.0.1:{}', timeout: 500ms}}\n",
        redis.port
    );
    let gw = Gw::start(
        tempfile::tempdir()?,
        at.clone(),
        &yaml(&at, &top, "", &routes, backend.addr()),
    )?;
    all_or_nothing(&gw, "/local/x")?;
    all_or_nothing(&gw, "/shared/x")?;
    redis.stop()?;
    Ok(())
}

// ---------------------------------------------------------------------
// What the service says and what the client slips in
// ---------------------------------------------------------------------

#[test]
fn the_services_cors_and_limit_fields_and_unchecked_credentials_do_not_pass() -> Result<()> {
    // A service that opens itself to every origin and reports its own
    // limit state.
    let handler: Handler = Arc::new(|req: &Message| {
        echo(req)
            .header("Access-Control-Allow-Origin", "*")
            .header("RateLimit", "\"svc\";r=99;t=1")
    });
    let backend = Backend::start_with("be", None, "127.0.0.1:0".parse()?, handler)?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("access.log");
    let at = endpoints(1);
    let top = format!(
        "access_log: {{path: '{}'}}\nconsumers:\n  - name: alice\n    api_keys: [{{key: {ALICE_KEY}}}]\n",
        log.display()
    );
    let policies = format!(
        "{{cors: {{origins: ['https://app.test']}}, auth: {{api_key: {{query: apikey}}, \
         jwt: {{keys: [{{algorithm: HS256, secret: '{HS_SECRET}'}}]}}}}, \
         rate_limits: [{{name: mine, key: consumer, limit: 100, window: 1h}}]}}"
    );
    let routes = [route("api", "/api", &policies)];
    let gw = Gw::start(
        dir,
        at.clone(),
        &yaml(&at, &top, "", &routes, backend.addr()),
    )?;

    let r = gw.get(
        "/api/x",
        &[
            ("Origin", "https://evil.test"),
            ("apikey", ALICE_KEY),
            ("Authorization", "Bearer forged.token.here"),
            ("X_Consumer_Username", "mallory"),
        ],
    )?;
    expect_ok(&r)?;
    assert!(
        answer_headers(&r, "access-control-allow-origin").is_empty(),
        "the service's `*` must not open the route to a refused origin:\n{}",
        show(&r)
    );
    let limits = answer_headers(&r, "ratelimit");
    assert_eq!(limits.len(), 1, "{}", show(&r));
    assert!(limits[0].starts_with("\"mine\";r=99;"), "{limits:?}");
    assert!(
        upstream(&r, "authorization").is_empty(),
        "a token edge did not check must not reach the service:\n{}",
        show(&r)
    );
    assert!(
        upstream(&r, "x_consumer_username").is_empty(),
        "{}",
        show(&r)
    );
    assert_eq!(upstream(&r, "x-consumer-username"), ["alice"]);

    // An allowed origin gets edge's field, once.
    let r = gw.get(
        "/api/x",
        &[("Origin", "https://app.test"), ("apikey", ALICE_KEY)],
    )?;
    expect_ok(&r)?;
    assert_eq!(
        answer_headers(&r, "access-control-allow-origin"),
        ["https://app.test"],
        "{}",
        show(&r)
    );

    // A key in the query is not written to the access log.
    expect_ok(&gw.get(&format!("/api/q?a=1&apikey={ALICE_KEY}"), &[])?)?;
    let text = gw.wait_for("the access log line of /api/q", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        Ok(text.contains("/api/q").then_some(text))
    })?;
    assert!(!text.contains(ALICE_KEY), "{text}");
    assert!(text.contains("/api/q?a=1&apikey=REDACTED"), "{text}");
    Ok(())
}
