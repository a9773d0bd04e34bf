//! REST→gRPC transcoding on the proxy path ([`crate::transcode`]): the
//! JSON request becomes a unary gRPC call, made by edge itself through the
//! route's pool ([`crate::upstream::call`]: its breaker, balancing,
//! health, deadlines, and retries of connect failures and of the
//! trailers-only statuses it retries), and the reply (bounded) is
//! answered as JSON.
//!
//! Pingora's proxy path cannot carry it: it sends no body upstream for a
//! request that came without one (a GET), and a gRPC call always has one.

use super::{EdgeProxy, RequestCtx, actions, client_ip, headers, shaping::client_gone, trace};
use crate::{
    grpc::Code,
    runtime::RouteRuntime,
    transcode::{error_body, http_status},
    upstream::call::{self, CallError, CallRequest},
};
use bytes::Bytes;
use pingora::{Result, prelude::Session};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// How long a transcoded call may take when the pool sets no `total`.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// Request fields not passed on as gRPC metadata: framing, the client's
/// content negotiation, and what gRPC reserves.
const NOT_METADATA: [&str; 8] = [
    "content-type",
    "content-length",
    "content-encoding",
    "accept-encoding",
    "transfer-encoding",
    "expect",
    "range",
    "if-range",
];

impl EdgeProxy {
    /// Answers a request on a transcoding route: its gRPC call, then the
    /// reply as JSON, or an error as JSON (`Some(status)`); `None` for a
    /// route that does not transcode.
    pub(super) async fn transcode(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        compiled: &RouteRuntime,
    ) -> Result<Option<u16>> {
        let (Some(t), Some(config), Some(pool)) = (
            &compiled.transcoder,
            &compiled.route.transcode,
            &compiled.pool,
        ) else {
            return Ok(None);
        };
        ctx.transcoded = true;
        ctx.pool = Some(Arc::clone(pool));
        let head = session.req_header();
        let path = ctx.match_path.as_deref().unwrap_or(head.uri.path());
        let Some((binding, vars)) = t.find(&head.method, path) else {
            let what = format!("no method is bound to {} {path}", head.method);
            return self
                .json_error(session, ctx, compiled, None, Code::NotFound, &what)
                .await;
        };
        let binding = binding.clone();
        let query = head.uri.query().map(str::to_string);
        let max = crate::config::shaping::MAX_REQUEST_BODY as usize;
        let body = match super::shaping::read_body(session, ctx, max).await {
            Ok(b) => b,
            Err(crate::transform::request::ReadError::TooLarge(_)) => {
                session.set_keepalive(None);
                let why = format!("the request body is larger than {max} bytes");
                let code = Code::ResourceExhausted;
                return self
                    .json_error(session, ctx, compiled, Some(413), code, &why)
                    .await;
            }
            Err(crate::transform::request::ReadError::Io(e)) => return Err(e),
        };
        let message = match binding.request(&vars, query.as_deref(), &body) {
            Ok(m) => m,
            Err(bad) => {
                ctx.policy.strike = true;
                let code = Code::InvalidArgument;
                return self
                    .json_error(session, ctx, compiled, None, code, &bad.0)
                    .await;
            }
        };
        let metadata = self.metadata(session, ctx, compiled)?;
        let deadline = Instant::now() + pool.config.timeouts.total.unwrap_or(DEFAULT_DEADLINE);
        let key = super::request_hash_key(
            pool.config.algorithm,
            &pool.config.hash_key,
            session.req_header(),
            client_ip(session),
        );
        let req = CallRequest {
            method: &http::Method::POST,
            target: &binding.grpc_path,
            headers: &metadata,
            body: Some(message),
            max_body: config.max_response.saturating_add(5),
            deadline,
            client: client_ip(session),
            hash_key: &key,
            read_body: true,
            grpc: true,
        };
        let watch = !crate::transform::request::declares_body(session.req_header());
        let result = tokio::select! {
            r = call::call(pool, &req, true) => r,
            () = client_gone(session, watch) => {
                session.set_keepalive(None);
                return Ok(Some(499));
            }
        };
        let outcome = match result {
            Ok(resp) => match resp.grpc {
                Some(g) if g.code == Code::Ok => match binding.response(&resp.body) {
                    Ok(json) => Ok(json),
                    Err(why) => Err((Code::Internal, why, Some(502))),
                },
                Some(g) => Err((g.code, g.message, None)),
                None => Err((Code::Unknown, "no gRPC answer".to_string(), Some(502))),
            },
            Err(e) => {
                let (code, status) = match &e {
                    CallError::BreakerOpen | CallError::NoBackend | CallError::Connect(_) => {
                        (Code::Unavailable, 503)
                    }
                    CallError::Timeout(_) => (Code::DeadlineExceeded, 504),
                    CallError::TooLarge(_) => (Code::ResourceExhausted, 502),
                    CallError::Io(_) => (Code::Unavailable, 502),
                };
                Err((code, e.to_string(), Some(status)))
            }
        };
        match outcome {
            Ok(json) => {
                ctx.grpc_status = Some(Code::Ok);
                let mut fields = vec![json_type()];
                fields.extend(ctx.policy.response_headers.iter().cloned());
                let ops = &compiled.route.response_headers;
                let status =
                    actions::respond(session, 200, &fields, ops, Bytes::from(json)).await?;
                Ok(Some(status))
            }
            Err((code, message, status)) => {
                self.json_error(session, ctx, compiled, status, code, &message)
                    .await
            }
        }
    }

    /// The client's request fields as the call's metadata, after the same
    /// hygiene as a proxied request (forwarded fields, `Via`, the loop
    /// mark, the request id and trace context, the route's and the
    /// policies' changes), and gRPC's own.
    fn metadata(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        compiled: &RouteRuntime,
    ) -> Result<Vec<(http::HeaderName, http::HeaderValue)>> {
        let mut head = session.req_header().clone();
        let host = ctx
            .host
            .get_or_insert_with(|| super::host_of(session.req_header()));
        let client = headers::Client {
            peer: client_ip(session),
            trusted: &ctx.rt.config.trusted_proxies,
            untrusted_headers: &ctx.rt.config.untrusted_headers,
            scheme: super::tls::downstream_scheme(session),
            host: host.as_deref(),
        };
        headers::forwarded(&mut head, &client)?;
        headers::via_request(&mut head, session.req_header().version)?;
        headers::mark_loop(&mut head, &self.loop_token)?;
        if let Some(id) = &ctx.identity {
            trace::apply_request(&mut head, id, &ctx.rt.config.request_trace)?;
        }
        headers::apply_request(&mut head, &compiled.route.request_headers)?;
        headers::apply_policy_outcome(&mut head, &ctx.policy)?;
        // Fields the client's `Connection` names are for the hop to edge.
        let named: Vec<String> = head
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        let mut out: Vec<(http::HeaderName, http::HeaderValue)> = head
            .headers
            .iter()
            .filter(|(name, _)| {
                let n = name.as_str();
                !NOT_METADATA.contains(&n)
                    && !headers::HOP_BY_HOP.contains(&n)
                    && !n.starts_with("grpc-")
                    && !named.iter().any(|c| c == n)
            })
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        out.push((
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        ));
        out.push((http::header::TE, http::HeaderValue::from_static("trailers")));
        Ok(out)
    }

    /// Answers gRPC error `code` as JSON, with `status` or the standard
    /// mapping's.
    async fn json_error(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        compiled: &RouteRuntime,
        status: Option<u16>,
        code: Code,
        message: &str,
    ) -> Result<Option<u16>> {
        ctx.grpc_status = Some(code);
        let status = status.unwrap_or_else(|| http_status(code));
        let mut fields = vec![json_type()];
        fields.extend(ctx.policy.response_headers.iter().cloned());
        let ops = &compiled.route.response_headers;
        let body = error_body(code, message);
        Ok(Some(
            actions::respond(session, status, &fields, ops, body).await?,
        ))
    }
}

fn json_type() -> (String, String) {
    ("content-type".to_string(), "application/json".to_string())
}
