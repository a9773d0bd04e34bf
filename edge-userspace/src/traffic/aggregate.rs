//! The `aggregate` action: one client request answered by several upstream
//! calls made in parallel, their JSON answers merged (KrakenD's model).
//!
//! Each call goes through its pool's breaker, balancing, health and
//! retries ([`crate::upstream::call`]). The calls run as tasks of a
//! [`JoinSet`]: when the client goes away the set is dropped and every call
//! still running is aborted, closing its upstream connection.

use crate::{
    config::shaping::{Aggregate, Call},
    metrics,
    upstream::{
        UpstreamPool,
        call::{self, CallRequest},
    },
};
use bytes::Bytes;
use pingora::http::RequestHeader;
use serde_json::{Map, Value};
use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::task::JoinSet;

/// A compiled aggregation.
pub struct Aggregator {
    route: Arc<str>,
    config: Aggregate,
    /// Each call's pool and metric label, in call order.
    targets: Vec<(Arc<UpstreamPool>, Arc<str>)>,
    /// The route's path regex, whose named captures fill the templates.
    regex: Option<regex::Regex>,
}

/// The client's request, as the calls see it.
#[derive(Clone, Copy)]
pub struct Incoming<'a> {
    /// Its head, after the gateway policies' changes.
    pub head: &'a RequestHeader,
    /// The path its route matched (named captures fill the templates).
    pub matched_path: &'a str,
    /// The client's address (balancing).
    pub client: Option<IpAddr>,
    /// Header fields every call carries whatever its allow-list: the
    /// consumer's identity and edge's loop mark.
    pub always: &'a [(http::HeaderName, http::HeaderValue)],
}

/// How long past the aggregation's deadline its calls get to report a
/// timeout themselves (so it is counted against the backend) before they
/// are dropped.
const GRACE: Duration = Duration::from_millis(100);

/// The merged answer.
#[derive(Debug)]
pub struct Answer {
    /// 200, or 502 when every call failed.
    pub status: u16,
    /// Header fields.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Bytes,
}

impl Aggregator {
    /// Compiles `config`; `pools` are the calls' pools, in call order.
    pub fn new(
        route: Arc<str>,
        config: Aggregate,
        pools: Vec<Arc<UpstreamPool>>,
        regex: Option<regex::Regex>,
    ) -> Self {
        let targets = pools
            .into_iter()
            .zip(&config.calls)
            .map(|(p, c)| (p, Arc::from(c.name.as_str())))
            .collect();
        Self {
            route,
            config,
            targets,
            regex,
        }
    }

    /// Makes the calls for `req` and merges their answers.
    pub async fn run(&self, req: &Incoming<'_>) -> Answer {
        let Incoming {
            head,
            matched_path,
            client,
            always,
        } = *req;
        let started = Instant::now();
        let vars = crate::transform::template::Captures::new(
            self.regex.as_ref(),
            matched_path,
            matched_path,
        );
        let lookup = |name: &str| vars.get(name);
        let mut set = JoinSet::new();
        for (i, (c, (pool, _))) in self.config.calls.iter().zip(&self.targets).enumerate() {
            let target = c.path.render(&lookup);
            let mut headers: Vec<(http::HeaderName, http::HeaderValue)> = c
                .headers
                .iter()
                .flat_map(|name| {
                    head.headers
                        .get_all(name)
                        .iter()
                        .map(move |v| (name.clone(), v.clone()))
                })
                .collect();
            for (name, value) in always {
                if !c.headers.contains(name) {
                    headers.push((name.clone(), value.clone()));
                }
            }
            if let Some(host) = head.headers.get(http::header::HOST) {
                headers.push((http::header::HOST, host.clone()));
            }
            headers.push((
                http::header::ACCEPT,
                http::HeaderValue::from_static("application/json"),
            ));
            let pool = Arc::clone(pool);
            let method = c.method.clone();
            let hash_key = crate::proxy::request_hash_key(
                pool.config.algorithm,
                &pool.config.hash_key,
                head,
                client,
            );
            let (deadline, max_body) = (started + c.timeout, self.config.max_body);
            set.spawn(async move {
                let bad_path = crate::transform::template::has_dot_segment(&target);
                let req = CallRequest {
                    method: &method,
                    target: &target,
                    headers: &headers,
                    body: None,
                    max_body,
                    deadline,
                    client,
                    hash_key: &hash_key,
                    read_body: true,
                    grpc: false,
                };
                let result = if bad_path {
                    Err("the path cannot be mapped".to_string())
                } else {
                    match call::call(&pool, &req, true).await {
                        Ok(r) if (200..300).contains(&r.status) => Ok(r),
                        Ok(r) => Err(format!("status {}", r.status)),
                        Err(e) => Err(e.to_string()),
                    }
                };
                (i, result)
            });
        }
        let mut results: Vec<Option<Result<Value, String>>> =
            (0..self.config.calls.len()).map(|_| None).collect();
        let deadline = tokio::time::sleep_until((started + self.config.timeout + GRACE).into());
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = set.join_next() => match joined {
                    Some(Ok((i, r))) => {
                        let parsed = r.and_then(|resp| parse(&self.config.calls[i], &resp));
                        if let Some(slot) = results.get_mut(i) {
                            *slot = Some(parsed);
                        }
                    }
                    Some(Err(_)) => {}
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        // Calls still running at the deadline are aborted with the set.
        drop(set);
        self.merge(results)
    }

    fn merge(&self, results: Vec<Option<Result<Value, String>>>) -> Answer {
        let mut out = Map::new();
        let mut failed = Vec::new();
        for ((c, (_, label)), r) in self.config.calls.iter().zip(&self.targets).zip(results) {
            let r = r.unwrap_or_else(|| Err(format!("no answer within {:?}", self.config.timeout)));
            metrics::aggregate_call(&self.route, label, r.is_ok());
            match r {
                Ok(v) => match &c.group {
                    Some(g) => {
                        out.insert(g.clone(), v);
                    }
                    None => {
                        if let Value::Object(m) = v {
                            out.extend(m);
                        }
                    }
                },
                Err(why) => {
                    tracing::debug!(route = %self.route, call = %c.name, "aggregation call failed: {why}");
                    failed.push(c.name.clone());
                }
            }
        }
        let json = |v: Value| {
            let mut b = v.to_string().into_bytes();
            b.push(b'\n');
            Bytes::from(b)
        };
        let content_type = ("content-type".to_string(), "application/json".to_string());
        if failed.len() == self.config.calls.len() {
            return Answer {
                status: 502,
                headers: vec![content_type, ("x-edge-completed".into(), "false".into())],
                body: json(serde_json::json!({
                    "message": "every upstream call failed",
                    "failed": failed,
                })),
            };
        }
        let mut headers = vec![
            content_type,
            (
                "x-edge-completed".into(),
                if failed.is_empty() { "true" } else { "false" }.into(),
            ),
        ];
        if !failed.is_empty() {
            headers.push(("x-edge-failed".into(), failed.join(",")));
        }
        Answer {
            status: 200,
            headers,
            body: json(Value::Object(out)),
        }
    }

    /// The aggregation's time limit.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }
}

/// A call's answer as it goes into the merge: JSON, `target` taken, fields
/// allowed, denied and renamed.
fn parse(c: &Call, resp: &call::CallResponse) -> Result<Value, String> {
    if !crate::transform::is_json(resp.content_type.as_deref()) {
        return Err(format!(
            "content-type {:?} is not JSON",
            resp.content_type.as_deref().unwrap_or("")
        ));
    }
    let mut v: Value =
        serde_json::from_slice(&resp.body).map_err(|e| format!("invalid JSON: {e}"))?;
    if let Some(t) = &c.target {
        v = match v {
            Value::Object(mut m) => m.remove(t).ok_or_else(|| format!("no member {t:?}"))?,
            _ => return Err("the answer is not an object".into()),
        };
    }
    let shapes = !c.allow.is_empty() || !c.deny.is_empty() || !c.mapping.is_empty();
    if !shapes && c.group.is_some() {
        return Ok(v);
    }
    let Value::Object(mut m) = v else {
        return Err("the answer is not an object".into());
    };
    if !c.allow.is_empty() {
        m.retain(|k, _| c.allow.iter().any(|a| a == k));
    }
    for d in &c.deny {
        m.remove(d);
    }
    for (from, to) in &c.mapping {
        if let Some(x) = m.remove(from) {
            m.insert(to.clone(), x);
        }
    }
    Ok(Value::Object(m))
}
