//! A route's shaping on the proxy path: the request body read, checked
//! and transformed before an upstream is chosen, refusals, mirror copies,
//! the response transformation's counts, and watching for a client that
//! leaves an aggregation.

use super::{EdgeProxy, RequestCtx, actions, client_ip, headers, limits, trace};
use crate::{metrics, runtime::RouteRuntime};
use bytes::Bytes;
use pingora::{Result, prelude::Session};
use std::{net::IpAddr, sync::Arc};

impl EdgeProxy {
    /// Reads, validates and transforms the request body when the route
    /// needs it, and works out the upstream target; `Some(status)` when the
    /// request was answered here (refused).
    pub(super) async fn shape_request(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        compiled: &RouteRuntime,
    ) -> Result<Option<u16>> {
        use crate::transform::request as treq;
        let shaping = &compiled.route.shaping;
        if let Some(t) = &shaping.request {
            let head = session.req_header();
            let matched = ctx.match_path.as_deref().unwrap_or(head.uri.path());
            match treq::upstream_path(t, compiled.path_regex.as_ref(), matched, head.uri.path()) {
                Ok(path) => ctx.upstream_path = path,
                Err(r) => return self.refuse(session, ctx, compiled, r).await.map(Some),
            }
        }
        if !shaping.reads_request_body() {
            return Ok(None);
        }
        let head = session.req_header();
        let json = treq::json_body(head);
        let has_body = treq::declares_body(head);
        if shaping.validate.is_none() {
            // JSON changes only: other bodies pass as they come, at any
            // size the listener allows.
            if !json {
                if has_body {
                    metrics::transform(&compiled.name, "request_json", "skipped");
                }
                return Ok(None);
            }
        } else if !json && has_body {
            // Refused before the body is read: the connection cannot
            // carry another request after it.
            session.set_keepalive(None);
            let r = treq::Refusal::not_json();
            return self.refuse(session, ctx, compiled, r).await.map(Some);
        }
        let limit = [
            shaping.validate.as_ref().map(|v| v.max_body),
            shaping.request.as_ref().map(|r| r.max_body),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(crate::config::shaping::MAX_REQUEST_BODY as usize);
        // The body is read here, before any upstream: a client waiting for
        // `100 Continue` gets it from edge (the upstream then gets the
        // whole body at once and no `Expect`).
        if session.req_header().version == http::Version::HTTP_11
            && session
                .req_header()
                .headers
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        {
            session.as_mut().write_continue_response().await?;
        }
        let body = match read_body(session, ctx, limit).await {
            Ok(b) => b,
            Err(treq::ReadError::TooLarge(r)) => {
                // The rest of the body is not read: the connection cannot
                // carry another request.
                session.set_keepalive(None);
                return self.refuse(session, ctx, compiled, r).await.map(Some);
            }
            Err(treq::ReadError::Io(e)) => return Err(e),
        };
        match treq::prepare(shaping, session.req_header(), &body) {
            Ok(new) => {
                let body = match new {
                    Some(new) => {
                        let what = if new.content_type.is_some() {
                            "json_to_xml"
                        } else {
                            "request_json"
                        };
                        metrics::transform(&compiled.name, what, "ok");
                        ctx.body_changed = true;
                        ctx.body_content_type = new.content_type;
                        new.body
                    }
                    None => body,
                };
                // What was read is what goes upstream, changed or not,
                // with its own framing; a request that said it has no body
                // goes on as it came (no `Content-Length: 0` on a GET).
                if !body.is_empty() || has_body || ctx.body_changed {
                    ctx.request_body = Some(body);
                }
                Ok(None)
            }
            Err(r) => self.refuse(session, ctx, compiled, r).await.map(Some),
        }
    }

    /// Answers an `aggregate` route: the calls with the client's request
    /// as the policies left it, raced against the client leaving.
    /// `None` when the client left (the calls were cancelled).
    pub(super) async fn aggregate(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        compiled: &RouteRuntime,
    ) -> Result<Option<u16>> {
        let Some(agg) = &compiled.aggregate else {
            return Err(pingora::Error::explain(
                pingora::ErrorType::HTTPStatus(500),
                "aggregate route without its aggregator",
            ));
        };
        // The policies' changes hold for the calls too: hidden
        // credentials stay hidden, the consumer's identity is told.
        // Each call carries edge's loop mark and Via, like a proxied
        // request: a pool that points back at edge ends in a 508, not a
        // fan-out. And the request id and trace context: the calls are
        // part of this request.
        let mut head = session.req_header().clone();
        // Before the policies' changes, as on the proxy path.
        let request_trace = &ctx.rt.config.request_trace;
        if let Some(id) = &ctx.identity {
            trace::apply_request(&mut head, id, request_trace)?;
        }
        headers::apply_policy_outcome(&mut head, &ctx.policy)?;
        let version = head.version;
        headers::via_request(&mut head, version)?;
        headers::mark_loop(&mut head, &self.loop_token)?;
        let mut names: Vec<http::HeaderName> = ctx
            .policy
            .upstream_set
            .iter()
            .filter_map(|(n, _)| http::HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        names.push(http::header::VIA);
        names.push(http::HeaderName::from_static(headers::LOOP_HEADER));
        if let Ok(name) = http::HeaderName::from_bytes(&request_trace.header) {
            names.push(name);
        }
        names.push(http::HeaderName::from_static(trace::TRACEPARENT));
        names.push(http::HeaderName::from_static(trace::TRACESTATE));
        let always: Vec<(http::HeaderName, http::HeaderValue)> = names
            .iter()
            .flat_map(|n| {
                head.headers
                    .get_all(n)
                    .iter()
                    .map(move |v| (n.clone(), v.clone()))
            })
            .collect();
        let matched = ctx
            .match_path
            .clone()
            .unwrap_or_else(|| head.uri.path().to_string());
        let watch = !crate::transform::request::declares_body(&head);
        let incoming = crate::traffic::aggregate::Incoming {
            head: &head,
            matched_path: &matched,
            client: client_ip(session),
            always: &always,
        };
        let answer = tokio::select! {
            a = agg.run(&incoming) => Some(a),
            () = client_gone(session, watch) => None,
        };
        let Some(answer) = answer else {
            // Logged as nginx does, 499; the connection is not reused.
            session.set_keepalive(None);
            ctx.local_status = Some(499);
            return Ok(None);
        };
        let mut fields = answer.headers;
        fields.extend(ctx.policy.response_headers.iter().cloned());
        actions::respond(
            session,
            answer.status,
            &fields,
            &compiled.route.response_headers,
            answer.body,
        )
        .await
        .map(Some)
    }

    /// Answers a request its route's body checks refused.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        compiled: &RouteRuntime,
        r: crate::transform::request::Refusal,
    ) -> Result<u16> {
        metrics::validation_rejection(&compiled.name, r.reason);
        ctx.policy.refused = Some(("validate", r.reason));
        // A malformed body is the client's doing: it counts towards a ban.
        ctx.policy.strike = true;
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        headers.extend(ctx.policy.response_headers.iter().cloned());
        actions::respond(session, r.status, &headers, &Default::default(), r.body).await
    }

    /// Collects the mirror copy's body; sends the copy at the body's end,
    /// or gives it up when the body is larger than the mirror copies.
    pub(super) fn mirror_body(
        &self,
        ctx: &mut RequestCtx,
        piece: Option<&Bytes>,
        end: bool,
        client: Option<IpAddr>,
    ) {
        let Some(m) = ctx.route.as_ref().and_then(|r| r.mirror.as_ref()) else {
            return;
        };
        let Some((_, buf)) = ctx.mirror.as_mut() else {
            return;
        };
        if let Some(p) = piece {
            if buf.len() + p.len() > m.max_body() {
                ctx.mirror = None;
                m.skip();
                return;
            }
            buf.extend_from_slice(p);
        }
        if end && let Some((head, buf)) = ctx.mirror.take() {
            m.send(&head, buf.freeze(), client);
        }
    }
}

/// Counts how a response transformation ended.
pub(super) fn count_transform(route: &Arc<str>, done: crate::transform::response::Done) {
    use crate::transform::response::Done;
    match done {
        Done::Ok(w) => metrics::transform(route, w.label(), "ok"),
        Done::Skipped(w) => metrics::transform(route, w.label(), "skipped"),
    }
}

/// Reads the whole request body, at most `max` bytes, within the
/// listener's body limits and pace (a route that needs the body before
/// it can choose or call an upstream).
pub(super) async fn read_body(
    session: &mut Session,
    ctx: &mut RequestCtx,
    max: usize,
) -> std::result::Result<Bytes, crate::transform::request::ReadError> {
    let rt = Arc::clone(&ctx.rt);
    let pace = &mut ctx.body_pace;
    let mut check = |s: &Session| {
        let l = &rt.config.transport.limits;
        limits::check_body_read(s, l.max_body_size)?;
        limits::check_body_rate(s, pace, l)
    };
    crate::transform::request::read_body(session, max, &mut check).await
}

/// Resolves once the client has gone away (never when `watch` is false:
/// a request with a body would have its body taken for the sign).
pub(super) async fn client_gone(session: &mut Session, watch: bool) {
    if !watch {
        return std::future::pending().await;
    }
    loop {
        match session.as_mut().read_body_or_idle(true).await {
            Err(_) => return,
            // Half-closed: the client may still read the answer.
            Ok(None) => return std::future::pending().await,
            // Bytes after the request (edge serves no pipelining, so these
            // usually come back as an error above and end the request too).
            Ok(Some(_)) => {}
        }
    }
}
