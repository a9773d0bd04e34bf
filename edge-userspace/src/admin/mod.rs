//! The admin endpoint: the status page (`GET /`), the JSON API under
//! `/api/` (the live configuration, pools, backends, L4 services, XDP, BGP;
//! reload, drain and undrain, draining the whole host), `/metrics`
//! (Prometheus text), `/healthz`,
//! cache purges, and `POST /reload` (the same reload as SIGHUP and `edge
//! reload`: 200 with the new generation, or 422 with every error while the
//! running configuration stays). The README's "Operations" section is the
//! reference.
//!
//! Reads are open to whoever reaches the address. Every request that
//! changes something (any method but GET and HEAD) must come from a peer
//! in `admin.allow` (loopback by default) and, when `admin.token` is set,
//! carry `Authorization: Bearer TOKEN`; each one is logged with who and
//! what.

pub mod api;
pub mod redact;

use crate::{
    cache,
    dataplane::{ClassStats, Dataplane},
    metrics,
    runtime::Reloader,
};
use async_trait::async_trait;
use http::{Response, StatusCode, header};
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use pingora::{apps::http_app::ServeHttp, protocols::http::ServerSession};
use serde_json::{Value, json};
use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// The status page: one file, no external assets.
const STATUS_PAGE: &str = include_str!("status.html");

/// Largest request body the admin API reads (a purge's JSON).
const MAX_BODY: usize = 16 * 1024;

/// Longest a host drain waits for BIRD to take the file without routes
/// before it answers: one exchange with BIRD after a pass that may be
/// under way, within `edge ctl`'s 10 s per step.
const HOST_WITHDRAW_DEADLINE: Duration =
    crate::bgp::bird::DEADLINE.saturating_add(Duration::from_secs(1));

/// Serves the admin routes.
pub struct Admin {
    prometheus: PrometheusHandle,
    xdp: Option<Arc<ClassStats>>,
    cache: Option<&'static cache::Cache>,
    allow: Vec<IpNet>,
    token: Option<String>,
    reloader: Option<Arc<Reloader>>,
    bans: Option<Arc<crate::policy::bans::Bans>>,
    l4: Option<Arc<OnceLock<crate::l4::L4Reload>>>,
    dataplane: Option<Arc<Mutex<Option<Dataplane>>>>,
    started: Instant,
    /// Where drains are saved for the next process.
    drains_file: Option<std::path::PathBuf>,
    /// Held from reading the drains to writing them, so that two changes
    /// at once cannot leave the older list in the file.
    saving: Arc<Mutex<()>>,
    /// The BGP announcer, once edge announces (never, without `bgp:`).
    bgp: Arc<OnceLock<Arc<crate::bgp::Announcer>>>,
    /// Set by a host drain from its start; cleared only if the withdrawal
    /// fails (the stop it leads to ends the process).
    host_draining: Arc<AtomicBool>,
}

/// What a drain or undrain needs, owned, to run off the async workers.
struct Drains {
    reloader: Option<Arc<Reloader>>,
    l4: Option<Arc<OnceLock<crate::l4::L4Reload>>>,
    file: Option<std::path::PathBuf>,
    saving: Arc<Mutex<()>>,
}

impl Drains {
    /// Drains or undrains an L7 pool's backend (`kind` "pools", address
    /// IP:port) or an L4 service's (`kind` "services", address IP).
    fn drain(&self, kind: &str, name: &str, address: &str, drained: bool) -> Response<Vec<u8>> {
        let decoded = percent_encoding::percent_decode_str(address).decode_utf8_lossy();
        let address = decoded.as_ref();
        let name_decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        let name = name_decoded.as_ref();
        if kind == "pools" {
            let Some(reloader) = &self.reloader else {
                return json_error(StatusCode::NOT_FOUND, format!("no pool {name}"));
            };
            let Ok(addr) = address.parse::<SocketAddr>() else {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    format!("{address}: a pool's backend is an IP:port (IPv6 as [addr]:port)"),
                );
            };
            return match reloader.set_drained(name, addr, drained) {
                Ok(()) => {
                    self.save();
                    reply_json(
                        StatusCode::OK,
                        &json!({ "pool": name, "address": addr.to_string(), "drained": drained }),
                    )
                }
                Err(
                    e @ (crate::runtime::reload::DrainError::TooMany
                    | crate::runtime::reload::DrainError::HandedOver),
                ) => json_error(StatusCode::CONFLICT, e),
                Err(e) => json_error(StatusCode::NOT_FOUND, e),
            };
        }
        let Ok(ip) = address.parse::<std::net::IpAddr>() else {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("{address}: an L4 service's backend is an IP address"),
            );
        };
        let Some(l4) = self.l4.as_ref().and_then(|l| l.get()) else {
            return json_error(StatusCode::NOT_FOUND, format!("no L4 service {name}"));
        };
        match l4.controller().set_drained(name, ip, drained) {
            Ok(true) => {
                self.save();
                reply_json(
                    StatusCode::OK,
                    &json!({ "service": name, "address": ip.to_string(), "drained": drained }),
                )
            }
            Ok(false) => json_error(
                StatusCode::NOT_FOUND,
                format!("no backend {ip} in L4 service {name}"),
            ),
            Err(e) => json_error(StatusCode::CONFLICT, format!("{e:#}")),
        }
    }

    /// Writes the drains in force to the drains file. A failure is logged:
    /// the drain holds in this process, and only a restart would lose it.
    fn save(&self) {
        let Some(file) = &self.file else {
            return;
        };
        let _saving = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        let saved = crate::runtime::drains::Saved {
            pools: self
                .reloader
                .as_ref()
                .map(|r| r.drained())
                .unwrap_or_default(),
            services: self
                .l4
                .as_ref()
                .and_then(|l| l.get())
                .map(|l| l.controller().drained())
                .unwrap_or_default(),
        };
        if let Err(e) = crate::runtime::drains::save(file, &saved) {
            tracing::error!("saving the drains: {e:#}; a restart would forget them");
        }
    }
}

impl Admin {
    /// An admin app rendering `prometheus`, refreshing `xdp` counters first.
    pub fn new(prometheus: PrometheusHandle, xdp: Option<Arc<ClassStats>>) -> Self {
        Self {
            prometheus,
            xdp,
            cache: None,
            allow: Vec::new(),
            token: None,
            reloader: None,
            bans: None,
            l4: None,
            dataplane: None,
            started: Instant::now(),
            drains_file: None,
            saving: Arc::new(Mutex::new(())),
            bgp: Arc::new(OnceLock::new()),
            host_draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Also shows the BGP announcer (`GET /api/bgp`, in `/api/status`) and
    /// drains the whole host (`POST /api/host/drain`); `bgp` is filled
    /// once edge announces.
    pub fn with_bgp(mut self, bgp: Arc<OnceLock<Arc<crate::bgp::Announcer>>>) -> Self {
        self.bgp = bgp;
        self
    }

    /// Saves every drain in `file` after each change, for the next process.
    pub fn with_drains_file(mut self, file: Option<std::path::PathBuf>) -> Self {
        self.drains_file = file;
        self
    }

    fn drains(&self) -> Drains {
        Drains {
            reloader: self.reloader.clone(),
            l4: self.l4.clone(),
            file: self.drains_file.clone(),
            saving: Arc::clone(&self.saving),
        }
    }

    /// Also shows the XDP program and L4 services, and drains L4 backends.
    pub fn with_kernel(
        mut self,
        dataplane: Arc<Mutex<Option<Dataplane>>>,
        l4: Arc<OnceLock<crate::l4::L4Reload>>,
    ) -> Self {
        self.dataplane = Some(dataplane);
        self.l4 = Some(l4);
        self
    }

    /// Who may make changes: peers in `allow`, with `token` when set.
    pub fn with_access(mut self, allow: Vec<IpNet>, token: Option<String>) -> Self {
        self.allow = allow;
        self.token = token;
        self
    }

    /// Refuses a changing request from a peer or without the token that
    /// `admin:` requires: 403 or 401, with the reason.
    fn refuse_change(&self, session: &ServerSession) -> Option<Response<Vec<u8>>> {
        let req = session.req_header();
        if matches!(req.method, http::Method::GET | http::Method::HEAD) {
            return None;
        }
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_canonical());
        let what = format!("{} {}", req.method, req.uri.path());
        // A browser on an allowed host can be made to send a change by any
        // page it visits (a form's POST needs no preflight); it says so in
        // Origin and Sec-Fetch-Site, which `edge ctl`, curl and scripts do
        // not send. Only the status page's own origin may change things.
        if let Some(why) = cross_site(req) {
            tracing::warn!(peer = ?peer, request = %what, "admin change refused: {why}");
            return Some(reply(
                StatusCode::FORBIDDEN,
                "text/plain",
                format!("forbidden: {why}\n").into_bytes(),
            ));
        }
        if !peer.is_some_and(|ip| self.allow.iter().any(|n| n.contains(&ip))) {
            tracing::warn!(peer = ?peer, request = %what, "admin change refused: peer not in admin.allow");
            return Some(reply(
                StatusCode::FORBIDDEN,
                "text/plain",
                b"forbidden: changes are allowed only from admin.allow\n".to_vec(),
            ));
        }
        if let Some(token) = &self.token {
            let given = req
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim());
            if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
                tracing::warn!(peer = ?peer, request = %what, "admin change refused: bad or missing token");
                let mut resp = reply(
                    StatusCode::UNAUTHORIZED,
                    "text/plain",
                    b"unauthorized: a bearer token is required\n".to_vec(),
                );
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"edge-admin\""),
                );
                return Some(resp);
            }
        }
        tracing::info!(peer = ?peer, request = %what, "admin change");
        None
    }

    /// Also serves `POST /reload`.
    pub fn with_reloader(mut self, reloader: Arc<Reloader>) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Reloads the configuration: 200 and the new generation, or 422 and
    /// every reason the running configuration stays.
    async fn reload(&self, method: &http::Method) -> Response<Vec<u8>> {
        if method != http::Method::POST {
            let mut resp = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"method not allowed: POST /reload reloads the configuration\n".to_vec(),
            );
            resp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            return resp;
        }
        if self.reloader.is_none() {
            return reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec());
        }
        match self.run_reload("POST /reload").await {
            Ok(applied) => {
                let body = format!(
                    "reloaded: generation {}\n{}",
                    applied.generation,
                    applied.warning_lines()
                );
                reply(StatusCode::OK, "text/plain", body.into_bytes())
            }
            Err((status, why)) => reply(status, "text/plain", format!("{why}\n").into_bytes()),
        }
    }

    /// Reloads off the async workers (it reads files and writes maps), for
    /// `POST /reload` and `POST /api/reload`: what was applied, or the
    /// status and reason to answer with (422: the file was refused and the
    /// running configuration stays).
    async fn run_reload(
        &self,
        trigger: &'static str,
    ) -> Result<crate::runtime::reload::Applied, (StatusCode, String)> {
        let Some(reloader) = self.reloader.clone() else {
            return Err((StatusCode::NOT_FOUND, "no configuration to reload".into()));
        };
        match tokio::task::spawn_blocking(move || reloader.reload(trigger)).await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(e)) => Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("reload refused; the running configuration stays:\n{e}"),
            )),
            Err(e) => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the reload task failed: {e}"),
            )),
        }
    }

    /// Also serves `GET /bans` (the standing bans, JSON) and
    /// `DELETE /bans/<address>` (lifts one).
    pub fn with_bans(mut self, bans: Arc<crate::policy::bans::Bans>) -> Self {
        self.bans = Some(bans);
        self
    }

    fn bans(&self, method: &http::Method, path: &str) -> Response<Vec<u8>> {
        let Some(bans) = &self.bans else {
            return reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec());
        };
        let rest = path.trim_start_matches("/bans").trim_start_matches('/');
        match (method, rest) {
            (&http::Method::GET, "") => {
                let body = serde_json::json!({ "bans": bans.list() }).to_string() + "\n";
                reply(StatusCode::OK, "application/json", body.into_bytes())
            }
            (&http::Method::DELETE, ip) if !ip.is_empty() => match ip.parse::<std::net::IpAddr>() {
                Ok(ip) if bans.lift(ip) => {
                    tracing::info!(%ip, "ban lifted through the admin endpoint");
                    reply(
                        StatusCode::OK,
                        "text/plain",
                        format!("ban of {ip} lifted\n").into_bytes(),
                    )
                }
                Ok(ip) => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    format!("{ip} is not banned\n").into_bytes(),
                ),
                Err(_) => reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    b"DELETE /bans/<IP address>\n".to_vec(),
                ),
            },
            _ => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"GET /bans lists the bans; DELETE /bans/<address> lifts one\n".to_vec(),
            ),
        }
    }

    /// Also serves purge by key (`PURGE /cache/<listener>/<host><path>`).
    pub fn with_cache(mut self, cache: Option<&'static cache::Cache>) -> Self {
        self.cache = cache;
        self
    }

    /// The Pingora service listening on `address`.
    pub fn service(self, address: SocketAddr) -> pingora::services::listening::Service<Self> {
        let mut service = pingora::services::listening::Service::new("admin".to_string(), self);
        service.add_tcp(&address.to_string());
        service
    }
}

/// Why a change request comes from another site's page, if it does: an
/// `Origin` that is not this endpoint's own (as `Host` names it), or
/// `Sec-Fetch-Site` other than same-origin or none (typed by the user).
fn cross_site(req: &pingora::http::RequestHeader) -> Option<String> {
    let header = |name: &str| {
        req.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    if let Some(site) = header("sec-fetch-site")
        && !matches!(site.as_str(), "same-origin" | "none")
    {
        return Some(format!("a change from a {site} page"));
    }
    let origin = header("origin")?;
    let host = header("host").unwrap_or_default();
    let own = origin
        .strip_prefix("http://")
        .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(&host));
    (!own).then(|| format!("a change from the page of another origin ({origin})"))
}

/// Compares without stopping at the first difference, so the time taken
/// tells nothing about how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON answer (ending in a newline).
fn reply_json(status: StatusCode, value: &Value) -> Response<Vec<u8>> {
    let mut body = value.to_string().into_bytes();
    body.push(b'\n');
    let mut resp = reply(status, "application/json", body);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

fn json_error(status: StatusCode, why: impl std::fmt::Display) -> Response<Vec<u8>> {
    reply_json(status, &api::error(why))
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    let len = resp.body().len();
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    resp
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if let Some(refused) = self.refuse_change(session) {
            return refused;
        }
        if let Some((status, body)) = self
            .cache
            .and_then(|c| cache::admin::handle(c, session.req_header()))
        {
            return reply(status, "text/plain", body.into_bytes());
        }
        let path = session.req_header().uri.path().to_string();
        if path == "/" || path.starts_with("/api/") {
            return self.api(session, &path).await;
        }
        match path.as_str() {
            "/metrics" => {
                if let Some(xdp) = &self.xdp {
                    metrics::refresh_xdp(xdp);
                }
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.prometheus.render().into_bytes(),
                )
            }
            "/healthz" => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/reload" => {
                let method = session.req_header().method.clone();
                self.reload(&method).await
            }
            p if p == "/bans" || p.starts_with("/bans/") => {
                let method = session.req_header().method.clone();
                self.bans(&method, p)
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}

impl Admin {
    /// The status page and the JSON API.
    async fn api(&self, session: &mut ServerSession, path: &str) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let read = matches!(method, http::Method::GET | http::Method::HEAD);
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (read, segments.as_slice()) {
            (true, [""]) => {
                let mut resp = reply(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    STATUS_PAGE.as_bytes().to_vec(),
                );
                // The page is one file with inline script and style and
                // talks only to this origin: say so, so a browser refuses
                // anything else.
                resp.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    header::HeaderValue::from_static(
                        "default-src 'none'; script-src 'unsafe-inline'; \
                         style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
                    ),
                );
                resp
            }
            (true, ["api", "status"]) => reply_json(StatusCode::OK, &self.status().await),
            (true, ["api", "pools"]) => {
                reply_json(StatusCode::OK, &json!({ "pools": self.pools() }))
            }
            (true, ["api", "services"]) => reply_json(
                StatusCode::OK,
                &json!({ "services": self.services().await }),
            ),
            (true, ["api", "listeners"]) => {
                reply_json(StatusCode::OK, &json!({ "listeners": self.listeners() }))
            }
            (true, ["api", "xdp"]) => match self.xdp_view() {
                Some(v) => reply_json(StatusCode::OK, &v),
                None => json_error(StatusCode::NOT_FOUND, "XDP is not attached"),
            },
            (true, ["api", "config"]) => match &self.reloader {
                Some(r) => {
                    let view = r.view();
                    reply_json(
                        StatusCode::OK,
                        &json!({
                            "generation": view.generation,
                            "file": r.path().display().to_string(),
                            "config": redact::config_json(&view.text),
                        }),
                    )
                }
                None => json_error(StatusCode::NOT_FOUND, "no configuration"),
            },
            (true, ["api", "consumers"]) => {
                reply_json(StatusCode::OK, &json!({ "consumers": self.consumers() }))
            }
            (true, ["api", "bans"]) => match &self.bans {
                Some(b) => reply_json(StatusCode::OK, &json!({ "bans": b.list() })),
                None => reply_json(StatusCode::OK, &json!({ "bans": [] })),
            },
            (true, ["api", "bgp"]) => reply_json(
                StatusCode::OK,
                &json!({
                    "bgp": self.bgp_status(),
                    "host_draining": self.host_draining.load(Ordering::SeqCst),
                }),
            ),
            (false, ["api", "host", "drain"]) if method == http::Method::POST => {
                self.drain_host(session).await
            }
            (false, ["api", "reload"]) if method == http::Method::POST => self.reload_json().await,
            (
                false,
                [
                    "api",
                    kind @ ("pools" | "services"),
                    name,
                    "backends",
                    address,
                    action @ ("drain" | "undrain"),
                ],
            ) if method == http::Method::POST => {
                let drains = self.drains();
                let (kind, name, address) =
                    (kind.to_string(), name.to_string(), address.to_string());
                let drained = *action == "drain";
                // Off the async workers: the L4 lock can be held for
                // seconds while next hops resolve, and the file is synced.
                match tokio::task::spawn_blocking(move || {
                    drains.drain(&kind, &name, &address, drained)
                })
                .await
                {
                    Ok(resp) => resp,
                    Err(e) => json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("the drain task failed: {e}"),
                    ),
                }
            }
            (false, ["api", "cache", "purge"]) if method == http::Method::POST => {
                self.purge(session).await
            }
            (true, _) => json_error(StatusCode::NOT_FOUND, format!("no such resource: {path}")),
            (false, _) => json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} {path}: not a change the admin API makes"),
            ),
        }
    }

    fn consumers(&self) -> Value {
        match &self.reloader {
            Some(r) => Value::Array(
                r.view()
                    .config
                    .consumers
                    .iter()
                    .map(|c| api::consumer(&c.name, &c.groups))
                    .collect(),
            ),
            None => json!([]),
        }
    }

    fn pools(&self) -> Value {
        match &self.reloader {
            Some(r) => api::pools(&r.view().pools),
            None => json!([]),
        }
    }

    /// The L4 services; the controller's lock may be held for a while
    /// (next hops resolving), so it is read off the async workers.
    async fn services(&self) -> Value {
        let Some(controller) = self
            .l4
            .as_ref()
            .and_then(|l| l.get())
            .map(|l| l.controller())
        else {
            return json!([]);
        };
        match tokio::task::spawn_blocking(move || controller.services()).await {
            Ok(services) => Value::Array(services.iter().map(api::service).collect()),
            Err(e) => api::error(format!("reading the L4 services: {e}")),
        }
    }

    fn listeners(&self) -> Value {
        match &self.reloader {
            Some(r) => Value::Array(
                r.view()
                    .config
                    .listeners
                    .iter()
                    .map(api::listener)
                    .collect(),
            ),
            None => json!([]),
        }
    }

    fn xdp_view(&self) -> Option<Value> {
        let dp = self.dataplane.as_ref()?;
        let guard = dp.lock().unwrap_or_else(PoisonError::into_inner);
        guard.as_ref().map(api::xdp)
    }

    async fn status(&self) -> Value {
        let (generation, listeners, pools) = match &self.reloader {
            Some(r) => {
                let view = r.view();
                (
                    view.generation,
                    Value::Array(view.config.listeners.iter().map(api::listener).collect()),
                    api::pools(&view.pools),
                )
            }
            None => (0, json!([]), json!([])),
        };
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "generation": generation,
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "listeners": listeners,
            "pools": pools,
            "services": self.services().await,
            "xdp": self.xdp_view(),
            "bgp": self.bgp_status(),
            "host_draining": self.host_draining.load(Ordering::SeqCst),
        })
    }

    /// The announcer's status, `null` without `bgp:`.
    fn bgp_status(&self) -> Value {
        match self.bgp.get() {
            Some(a) => serde_json::to_value(a.status())
                .unwrap_or_else(|e| api::error(format!("rendering the BGP status: {e}"))),
            None => Value::Null,
        }
    }

    /// `POST /api/host/drain`, body `{"deadline": "30s"}` or none: every
    /// BGP route withdrawn (so the router sends this host nothing new),
    /// 202, then a stop as after SIGTERM once the host's L4 traffic has
    /// moved or the deadline has passed.
    async fn drain_host(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match read_body(session, "a host drain request").await {
            Ok(body) => body,
            Err(refused) => return refused,
        };
        if !body.iter().all(u8::is_ascii_whitespace) && !json_body(session) {
            return json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a host drain's body is Content-Type: application/json",
            );
        }
        let deadline = match host_deadline(&body) {
            Ok(d) => d,
            Err(why) => return json_error(StatusCode::BAD_REQUEST, why),
        };
        let Some(announcer) = self.bgp.get().cloned() else {
            return json_error(
                StatusCode::CONFLICT,
                "this edge announces nothing: stop it with SIGTERM",
            );
        };
        if self
            .host_draining
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return json_error(
                StatusCode::CONFLICT,
                "a host drain is already in progress: edge stops once its traffic has moved",
            );
        }
        // What BIRD announces now: what the withdrawal takes back.
        let withdrawn = announcer.status().announced;
        tracing::info!(
            vips = ?withdrawn,
            ?deadline,
            "host drain: withdrawing every BGP route"
        );
        if announcer.status().frozen {
            self.host_draining.store(false, Ordering::SeqCst);
            return json_error(
                StatusCode::CONFLICT,
                "this edge has handed over to a new process, which announces: drain that one",
            );
        }
        if let Err(e) = announcer.withdraw_all(HOST_WITHDRAW_DEADLINE).await {
            // Another drain may try again; the host announces nothing
            // meanwhile (the announcer keeps it drained).
            self.host_draining.store(false, Ordering::SeqCst);
            tracing::warn!(
                "host drain: withdrawing the routes failed: {e}; the host stays drained and \
                 keeps serving, nothing is stopped"
            );
            return json_error(
                StatusCode::BAD_GATEWAY,
                format!(
                    "withdrawing the routes: {e}; this host announces nothing from now on but \
                     keeps serving: ask again, or stop it with SIGTERM"
                ),
            );
        }
        let quiet_for = crate::drain::QUIET_FOR;
        tracing::info!(
            "host drain: every route withdrawn; edge stops once no L4 packet has arrived for \
             {quiet_for:?}, at the latest in {deadline:?}"
        );
        tokio::spawn(stop_when_quiet(self.l4.clone(), deadline, announcer));
        let withdrawn: Vec<String> = withdrawn.iter().map(IpAddr::to_string).collect();
        reply_json(
            StatusCode::ACCEPTED,
            &json!({
                "draining": true,
                "withdrawn": withdrawn,
                "deadline_ms": u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            }),
        )
    }

    async fn reload_json(&self) -> Response<Vec<u8>> {
        match self.run_reload("POST /api/reload").await {
            Ok(applied) => reply_json(
                StatusCode::OK,
                &json!({ "generation": applied.generation, "warnings": applied.warnings }),
            ),
            Err((status, why)) => json_error(status, why),
        }
    }

    /// `POST /api/cache/purge` with `{"listener", "host", "path"}`.
    async fn purge(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let Some(cache) = self.cache else {
            return json_error(StatusCode::NOT_FOUND, "no cache is configured");
        };
        if !json_body(session) {
            return json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a purge request is Content-Type: application/json",
            );
        }
        let body = match read_body(session, "a purge request").await {
            Ok(body) => body,
            Err(refused) => return refused,
        };
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Purge {
            listener: String,
            host: String,
            /// One URL, every variant.
            path: Option<String>,
            /// Every URL under it.
            prefix: Option<String>,
        }
        let p: Purge = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"listener\", \"host\", and \"path\" or \"prefix\"}}: {e}"),
                );
            }
        };
        let purged = match (&p.path, &p.prefix) {
            (Some(path), None) if path.starts_with('/') => cache.purge(&p.listener, &p.host, path),
            (None, Some(prefix)) if prefix.starts_with('/') => {
                // It walks the whole store: off the async workers.
                let (listener, host, prefix) = (p.listener.clone(), p.host.clone(), prefix.clone());
                match tokio::task::spawn_blocking(move || {
                    cache.purge_prefix(&listener, &host, &prefix)
                })
                .await
                {
                    Ok(n) => n,
                    Err(e) => {
                        return json_error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("the purge task failed: {e}"),
                        );
                    }
                }
            }
            _ => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "name one of \"path\" (one URL) or \"prefix\" (every URL under it), \
                     starting with /",
                );
            }
        };
        tracing::info!(
            listener = %p.listener,
            host = %p.host,
            path = ?p.path,
            prefix = ?p.prefix,
            purged,
            "cache purged through the admin API"
        );
        reply_json(StatusCode::OK, &json!({ "purged": purged }))
    }
}

/// Whether the request says its body is JSON: a type a cross-site form
/// cannot send.
fn json_body(session: &ServerSession) -> bool {
    session
        .req_header()
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The whole request body, at most [`MAX_BODY`] bytes; else the answer to
/// give (`what` names the request in it).
async fn read_body(session: &mut ServerSession, what: &str) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(json_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("{what} is at most {MAX_BODY} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(json_error(
                    StatusCode::BAD_REQUEST,
                    format!("reading the body: {e}"),
                ));
            }
        }
    }
}

/// A host drain's deadline from its body: none (or no `deadline`) is
/// [`crate::drain::HOST_DRAIN_DEADLINE`].
fn host_deadline(body: &[u8]) -> Result<Duration, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(crate::drain::HOST_DRAIN_DEADLINE);
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct HostDrain {
        deadline: Option<String>,
    }
    let asked: HostDrain = serde_json::from_slice(body)
        .map_err(|e| format!("expected no body or {{\"deadline\": \"30s\"}}: {e}"))?;
    match asked.deadline {
        Some(text) => crate::drain::parse_host_deadline(&text),
        None => Ok(crate::drain::HOST_DRAIN_DEADLINE),
    }
}

/// The total of the L4 backends' packet counters; `None` when the host has
/// no L4 service (nothing can still be arriving).
async fn l4_packets(l4: Option<&OnceLock<crate::l4::L4Reload>>) -> Result<Option<u64>, String> {
    let Some(controller) = l4.and_then(OnceLock::get).map(|l| l.controller()) else {
        return Ok(None);
    };
    let services = tokio::task::spawn_blocking(move || controller.services())
        .await
        .map_err(|e| e.to_string())?;
    if services.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        services
            .iter()
            .flat_map(|s| &s.backends)
            .fold(0u64, |sum, b| sum.wrapping_add(b.packets)),
    ))
}

/// The end of a host drain: waits until no L4 packet has been forwarded
/// for [`crate::drain::QUIET_FOR`] (read every [`crate::drain::QUIET_POLL`])
/// or `deadline` has passed, then sends this process SIGTERM, whose drain
/// lets the L7 requests in flight finish.
async fn stop_when_quiet(
    l4: Option<Arc<OnceLock<crate::l4::L4Reload>>>,
    deadline: Duration,
    announcer: Arc<crate::bgp::Announcer>,
) {
    use crate::drain::{QUIET_FOR, QUIET_POLL, Quiet, ROUTE_SETTLE};
    let started = Instant::now();
    let mut quiet = Quiet::default();
    loop {
        let at = started.elapsed();
        match l4_packets(l4.as_deref()).await {
            // Never before the routers have had time to act on the
            // withdrawal (a host without L4 services is quiet at once).
            Ok(total) if quiet.observe(at, total, QUIET_FOR) && at >= ROUTE_SETTLE => {
                tracing::info!(
                    after = ?at,
                    "host drain: no L4 packet for {QUIET_FOR:?}, the traffic has moved: stopping"
                );
                break;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("host drain: reading the L4 counters: {e}"),
        }
        if at >= deadline {
            tracing::warn!(
                "host drain: L4 packets still arrive at the deadline ({deadline:?}): stopping anyway"
            );
            break;
        }
        tokio::time::sleep(QUIET_POLL.min(deadline - at)).await;
    }
    if announcer.status().frozen {
        // Handed over to a new process meanwhile (an upgrade): this one
        // drains and exits by itself, and a SIGTERM now would be the
        // "second signal" that cuts its requests in flight.
        tracing::warn!(
            "host drain: this edge handed over to a new process during the drain, which \
             announces again: not stopping it; drain the new one"
        );
        return;
    }
    // The same stop as an operator's SIGTERM: the routes are withdrawn
    // already (the before-stop step finds nothing left), the listeners
    // close and the requests in flight drain.
    // SAFETY: kill(2) on our own pid with a signal edge handles has no
    // memory-safety preconditions.
    let sent = unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    if sent != 0 {
        tracing::error!(
            "host drain: cannot send SIGTERM to this process: {}; stop edge by hand",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_drain_body_is_optional_and_checked() {
        let default = crate::drain::HOST_DRAIN_DEADLINE;
        assert_eq!(host_deadline(b""), Ok(default));
        assert_eq!(host_deadline(b" \n"), Ok(default));
        assert_eq!(host_deadline(b"{}"), Ok(default));
        assert_eq!(
            host_deadline(br#"{"deadline": "90s"}"#),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(
            host_deadline(br#"{"deadline": "250ms"}"#),
            Ok(Duration::from_millis(250))
        );
        let bad: [&[u8]; 6] = [
            br#"{"deadline": "2h"}"#,
            br#"{"deadline": "0s"}"#,
            br#"{"deadline": 30}"#,
            br#"{"deadline": "soon"}"#,
            br#"{"grace": "30s"}"#,
            b"deadline=30s",
        ];
        for bad in bad {
            assert!(
                host_deadline(bad).is_err(),
                "{} was taken",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
