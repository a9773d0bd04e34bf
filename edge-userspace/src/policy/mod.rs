//! The gateway's policy chain: what a route asks of a request before it
//! is answered or proxied.
//!
//! A route's policies ([`crate::config::gateway::PolicySet`]) are compiled
//! once per runtime into a [`Chain`]; a route without policies has no
//! chain and pays nothing. [`Chain::run`] applies them in a fixed order:
//! client address allow/deny → CORS (a preflight is answered here) →
//! authentication → authorization → rate limits → concurrency. Each
//! either lets the request go on, adding to its [`Outcome`] (the
//! consumer, headers for the upstream and for the answer), or refuses it
//! with a [`Rejection`]: a status, headers and a short JSON body, counted
//! by listener, route, policy and reason.
//!
//! State that must outlive a reload (rate-limit counters, key sets
//! fetched over HTTP) lives in [`Shared`], keyed by name, and each
//! generation's chains take it from there.

pub mod auth;
pub mod authz;
pub mod bans;
pub mod client;
pub mod concurrency;
pub mod cors;
pub mod fetch;
pub mod introspect;
pub mod jwt;
pub mod probe;
pub mod ratelimit;
pub mod redis;
mod state;
pub mod usage;

pub use state::{Generation, Shared};

use crate::{
    config::gateway::{PolicySet, RateLimitHeaders},
    metrics,
};
use bytes::Bytes;
use pingora::http::RequestHeader;
use std::{net::IpAddr, sync::Arc};

/// A refused request: what the client is told.
#[derive(Debug)]
pub struct Rejection {
    /// Status.
    pub status: u16,
    /// Header fields of the answer.
    pub headers: Vec<(String, String)>,
    /// `{"message": ...}`.
    pub body: Bytes,
    /// The policy that refused (a metric label).
    pub policy: &'static str,
    /// Why, in a word (a metric label).
    pub reason: &'static str,
    /// Whether the refusal is the source's own doing and counts towards a
    /// ban (a bad credential, its own rate limit); a challenge to a client
    /// that has not sent credentials yet, a shared limit or a refused
    /// preflight does not.
    pub strike: bool,
}

impl Rejection {
    /// A rejection with a JSON `{"message": message}` body.
    pub fn new(status: u16, policy: &'static str, reason: &'static str, message: &str) -> Self {
        let body = serde_json::json!({ "message": message }).to_string() + "\n";
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body),
            policy,
            reason,
            strike: true,
        }
    }

    /// Marks the refusal as not the source's doing (see [`Self::strike`]).
    pub fn no_strike(mut self) -> Self {
        self.strike = false;
        self
    }

    /// Adds a header field.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// What the chain found out about a request it let through.
#[derive(Default)]
pub struct Outcome {
    /// The consumer, once authenticated (or the anonymous one).
    pub consumer: Option<Arc<auth::ConsumerRt>>,
    /// The verified token's claims, if a JWT identified the caller.
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// Header names removed from the upstream request (lower-case).
    pub upstream_remove: Vec<String>,
    /// Header fields set on the upstream request.
    pub upstream_set: Vec<(String, String)>,
    /// Query parameters removed from the upstream request.
    pub query_remove: Vec<String>,
    /// A cookie removed from the upstream request.
    pub cookie_remove: Vec<String>,
    /// Header fields added to the answer (CORS, rate-limit state).
    pub response_headers: Vec<(String, String)>,
    /// Fields of the upstream's answer removed first: edge's policy, not
    /// the service's, says who may read it and how much is left.
    pub response_remove: Vec<&'static str>,
    /// Counts the request against a concurrency bound until it ends.
    pub in_flight: Option<concurrency::Guard>,
    /// Whether the route authenticates callers (a cached answer must not
    /// serve one caller another's).
    pub authenticated_route: bool,
    /// The policy and reason that refused the request, for the access log.
    pub refused: Option<(&'static str, &'static str)>,
    /// Whether that refusal counts towards a ban.
    pub strike: bool,
    /// Whether the consumer is the anonymous one (limits by consumer then
    /// count by address: anonymous callers are many).
    pub anonymous: bool,
    /// Query parameters that may hold credentials on this route: their
    /// values are not written to the access log.
    pub secret_query: Vec<String>,
}

impl Outcome {
    /// The name limits count a consumer by: none for the anonymous one.
    pub fn limit_consumer(&self) -> Option<&str> {
        if self.anonymous {
            return None;
        }
        self.consumer_name()
    }

    /// The consumer's name, as a metric label and log field.
    pub fn consumer_name(&self) -> Option<&str> {
        self.consumer.as_ref().map(|c| c.name.as_ref())
    }
}

/// What a policy sees of a request.
pub struct Request<'a> {
    /// The request head (normalised).
    pub head: &'a RequestHeader,
    /// The client address edge trusts ([`client::trusted_client`]).
    pub client: Option<IpAddr>,
}

/// One route's compiled policies.
pub struct Chain {
    listener: Arc<str>,
    route: Arc<str>,
    ip: Option<crate::config::gateway::IpPolicy>,
    cors: Option<cors::Cors>,
    auth: Option<auth::Authenticator>,
    authorize: Option<crate::config::gateway::AuthorizePolicy>,
    limits: Vec<ratelimit::Limit>,
    limit_headers: RateLimitHeaders,
    concurrency: Option<concurrency::Bound>,
}

impl Chain {
    /// Compiles `set` for route `route` of `listener`; `None` when the
    /// route has no policy.
    pub fn compile(
        listener: &str,
        route: &str,
        set: &PolicySet,
        generation: &Generation,
    ) -> anyhow::Result<Option<Self>> {
        if set.is_empty() {
            return Ok(None);
        }
        let limits = set
            .rate_limits
            .iter()
            .map(|p| ratelimit::Limit::new(listener, route, p, generation))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some(Self {
            listener: Arc::from(listener),
            route: Arc::from(route),
            ip: set.ip.clone(),
            cors: set.cors.clone().map(cors::Cors::new),
            auth: set
                .auth
                .as_ref()
                .map(|a| auth::Authenticator::new(a, generation))
                .transpose()?,
            authorize: set.authorize.clone(),
            limits,
            limit_headers: set.rate_limit_headers,
            concurrency: set
                .concurrency
                .as_ref()
                .map(|c| concurrency::Bound::new(listener, route, c, generation)),
        }))
    }

    /// Runs the policies in order; `Err` is the answer to send instead.
    pub async fn run(&self, req: &Request<'_>, out: &mut Outcome) -> Result<(), Rejection> {
        let result = self.run_inner(req, out).await;
        // An answered preflight (204) is CORS working, not a refusal.
        if let Err(r) = &result
            && r.status >= 400
        {
            out.refused = Some((r.policy, r.reason));
            out.strike = r.strike;
            metrics::policy_rejection(&self.listener, &self.route, r.policy, r.reason);
        }
        result
    }

    async fn run_inner(&self, req: &Request<'_>, out: &mut Outcome) -> Result<(), Rejection> {
        if let Some(ip) = &self.ip {
            client::check_ip(ip, req.client)?;
        }
        if let Some(cors) = &self.cors {
            // A preflight is answered here, before any credential is
            // asked for: browsers send none with it.
            cors.apply(req.head, out)?;
        }
        let with_cors = |mut r: Rejection, out: &Outcome| {
            // The page that asked may read why it was refused.
            r.headers.extend(out.response_headers.iter().cloned());
            r
        };
        if let Some(auth) = &self.auth {
            out.authenticated_route = true;
            auth.authenticate(req, out)
                .await
                .map_err(|r| with_cors(r, out))?;
        }
        if let Some(rules) = &self.authorize {
            authz::check(rules, out).map_err(|r| with_cors(r, out))?;
        }
        if !self.limits.is_empty() {
            ratelimit::check_all(&self.limits, self.limit_headers, req, &self.route, out)
                .await
                .map_err(|r| with_cors(r, out))?;
        }
        if let Some(bound) = &self.concurrency {
            out.in_flight = Some(bound.enter(req, out).map_err(|r| with_cors(r, out))?);
        }
        Ok(())
    }
}
