//! The admin endpoint: `/metrics` (Prometheus text), `/healthz`, cache
//! purges, and `POST /reload` (the same reload as SIGHUP and `edge
//! reload`: 200 with the new generation, or 422 with every error while the
//! running configuration stays).
//!
//! Reads are open to whoever reaches the address. Every request that
//! changes something (any method but GET and HEAD) must come from a peer
//! in `admin.allow` (loopback by default) and, when `admin.token` is set,
//! carry `Authorization: Bearer TOKEN`; each one is logged with who and
//! what.

use crate::{cache, dataplane::ClassStats, metrics, runtime::Reloader};
use async_trait::async_trait;
use http::{Response, StatusCode, header};
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use pingora::{apps::http_app::ServeHttp, protocols::http::ServerSession};
use std::{net::SocketAddr, sync::Arc};

/// Serves the admin routes.
pub struct Admin {
    prometheus: PrometheusHandle,
    xdp: Option<Arc<ClassStats>>,
    cache: Option<&'static cache::Cache>,
    allow: Vec<IpNet>,
    token: Option<String>,
    reloader: Option<Arc<Reloader>>,
    bans: Option<Arc<crate::policy::bans::Bans>>,
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
        }
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
        let Some(reloader) = self.reloader.clone() else {
            return reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec());
        };
        match tokio::task::spawn_blocking(move || reloader.reload("POST /reload")).await {
            Ok(Ok(applied)) => {
                let body = format!(
                    "reloaded: generation {}\n{}",
                    applied.generation,
                    applied.warning_lines()
                );
                reply(StatusCode::OK, "text/plain", body.into_bytes())
            }
            Ok(Err(e)) => reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                "text/plain",
                format!("reload refused; the running configuration stays:\n{e}\n").into_bytes(),
            ),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("the reload task failed: {e}\n").into_bytes(),
            ),
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

/// Compares without stopping at the first difference, so the time taken
/// tells nothing about how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        match session.req_header().uri.path() {
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
