//! The admin endpoint: `/metrics` (Prometheus text) and `/healthz`.

use crate::{cache, dataplane::ClassStats, metrics};
use async_trait::async_trait;
use http::{Response, StatusCode, header};
use metrics_exporter_prometheus::PrometheusHandle;
use pingora::{apps::http_app::ServeHttp, protocols::http::ServerSession};
use std::{net::SocketAddr, sync::Arc};

/// Serves the admin routes.
pub struct Admin {
    prometheus: PrometheusHandle,
    xdp: Option<Arc<ClassStats>>,
    cache: Option<&'static cache::Cache>,
}

impl Admin {
    /// An admin app rendering `prometheus`, refreshing `xdp` counters first.
    pub fn new(prometheus: PrometheusHandle, xdp: Option<Arc<ClassStats>>) -> Self {
        Self {
            prometheus,
            xdp,
            cache: None,
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
            _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}
