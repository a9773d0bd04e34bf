//! Copies of a route's requests to a shadow pool. A copy leaves once the
//! real request's body has been read, runs in its own task with its own
//! time limit, and its answer is read and dropped: the shadow can neither
//! slow nor change the real request. At most `max_in_flight` copies run;
//! beyond that a copy is skipped, never queued.

use crate::{
    config::shaping::Mirror as MirrorConfig,
    metrics,
    upstream::{
        UpstreamPool,
        call::{self, CallRequest},
    },
};
use bytes::Bytes;
use pingora::http::RequestHeader;
use std::{net::IpAddr, sync::Arc};
use tokio::sync::Semaphore;

/// Whether a field of the real request is repeated on its copy: not the
/// hop-by-hop ones, nor the framing (the copy's is computed from its body).
fn copied(name: &str) -> bool {
    !crate::proxy::headers::HOP_BY_HOP.contains(&name)
        && name != "transfer-encoding"
        && name != "content-length"
}

/// What carries a client's credentials: not copied to a shadow unless
/// `credentials: keep` (a shadow is often a less trusted deployment).
const CREDENTIALS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// A route's mirror.
pub struct Mirror {
    config: MirrorConfig,
    pool: Arc<UpstreamPool>,
    slots: Arc<Semaphore>,
    route: Arc<str>,
}

impl Mirror {
    /// A mirror of `route` to `pool`.
    pub fn new(config: MirrorConfig, pool: Arc<UpstreamPool>, route: Arc<str>) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_in_flight));
        Self {
            config,
            pool,
            slots,
            route,
        }
    }

    /// Whether this request is one of the share copied.
    pub fn wants(&self) -> bool {
        self.config.share >= 10_000 || super::draw() < self.config.share
    }

    /// The largest body copied.
    pub fn max_body(&self) -> usize {
        self.config.max_body
    }

    /// Counts a request not copied (its body too large).
    pub fn skip(&self) {
        metrics::mirror(&self.route, "skipped");
    }

    /// Sends a copy of `head` (the request as it goes upstream) with
    /// `body`, in the background.
    pub fn send(&self, head: &RequestHeader, body: Bytes, client: Option<IpAddr>) {
        let hash_key = crate::proxy::request_hash_key(
            self.pool.config.algorithm,
            &self.pool.config.hash_key,
            head,
            client,
        );
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            metrics::mirror(&self.route, "skipped");
            return;
        };
        let headers: Vec<(http::HeaderName, http::HeaderValue)> = head
            .headers
            .iter()
            .filter(|(n, _)| copied(n.as_str()))
            .filter(|(n, _)| self.config.credentials || !CREDENTIALS.contains(&n.as_str()))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let method = head.method.clone();
        let target = head
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        let pool = Arc::clone(&self.pool);
        let route = Arc::clone(&self.route);
        let timeout = self.config.timeout;
        metrics::mirror(&route, "sent");
        tokio::spawn(async move {
            let req = CallRequest {
                method: &method,
                target: &target,
                headers: &headers,
                body: (!body.is_empty()).then_some(body),
                max_body: 0,
                deadline: std::time::Instant::now() + timeout,
                client,
                hash_key: &hash_key,
                read_body: false,
                grpc: false,
            };
            let ok = matches!(call::call(&pool, &req, false).await, Ok(r) if r.status < 500);
            metrics::mirror(&route, if ok { "ok" } else { "error" });
            drop(permit);
        });
    }
}
