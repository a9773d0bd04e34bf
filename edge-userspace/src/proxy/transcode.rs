//! REST→gRPC transcoding on the proxy path ([`crate::transcode`]): the
//! JSON request becomes a gRPC call before an upstream is chosen, and the
//! reply message (collected, bounded, until its trailers say how the call
//! ended) becomes JSON.

use super::{EdgeProxy, RequestCtx, actions, limits};
use crate::{
    grpc::Code,
    runtime::RouteRuntime,
    transcode::{Binding, error_body, http_status},
};
use bytes::{Bytes, BytesMut};
use pingora::{
    Error, ErrorType, Result,
    http::{RequestHeader, ResponseHeader},
    prelude::Session,
};
use std::sync::Arc;

/// One transcoded call under way.
pub(super) struct Transcoding {
    binding: Binding,
    /// The reply's bytes so far.
    reply: BytesMut,
    max_reply: usize,
    /// A gRPC error the backend answered with in its head: sent as its
    /// HTTP status and JSON body by `fail_to_proxy`.
    pub(super) refusal: Option<(Code, String)>,
}

/// The JSON error answer for gRPC `code`.
fn json_error(code: Code, message: &str) -> (u16, Vec<(String, String)>, Bytes) {
    (
        http_status(code),
        vec![("content-type".to_string(), "application/json".to_string())],
        error_body(code, message),
    )
}

impl EdgeProxy {
    /// Turns a request on a transcoding route into its gRPC call (the
    /// body to send is left in `ctx.request_body`); `Some(status)` when
    /// it was answered here (no method for it, a body that does not fit
    /// the message).
    pub(super) async fn transcode_request(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        compiled: &RouteRuntime,
    ) -> Result<Option<u16>> {
        let (Some(t), Some(config)) = (&compiled.transcoder, &compiled.route.transcode) else {
            return Ok(None);
        };
        let head = session.req_header();
        let path = ctx.match_path.as_deref().unwrap_or(head.uri.path());
        let Some((binding, vars)) = t.find(&head.method, path) else {
            let what = format!("no method is bound to {} {path}", head.method);
            let (_, headers, body) = json_error(Code::NotFound, &what);
            let status =
                actions::respond(session, 404, &headers, &Default::default(), body).await?;
            return Ok(Some(status));
        };
        let binding = binding.clone();
        let query = head.uri.query().map(str::to_string);
        let rt = Arc::clone(&ctx.rt);
        let pace = &mut ctx.body_pace;
        let mut check = |s: &Session| {
            let l = &rt.config.transport.limits;
            limits::check_body_read(s, l.max_body_size)?;
            limits::check_body_rate(s, pace, l)
        };
        let max = crate::config::shaping::MAX_REQUEST_BODY as usize;
        let body = match crate::transform::request::read_body(session, max, &mut check).await {
            Ok(b) => b,
            Err(crate::transform::request::ReadError::TooLarge(r)) => {
                session.set_keepalive(None);
                let status = actions::respond(
                    session,
                    r.status,
                    &[json_type()],
                    &Default::default(),
                    r.body,
                )
                .await?;
                return Ok(Some(status));
            }
            Err(crate::transform::request::ReadError::Io(e)) => return Err(e),
        };
        match binding.request(&vars, query.as_deref(), &body) {
            Ok(call) => {
                ctx.request_body = Some(call);
                ctx.body_changed = true;
                ctx.body_content_type = Some("application/grpc");
                ctx.transcode = Some(Box::new(Transcoding {
                    binding,
                    reply: BytesMut::new(),
                    max_reply: config.max_response,
                    refusal: None,
                }));
                Ok(None)
            }
            Err(bad) => {
                ctx.policy.strike = true;
                let (_, headers, body) = json_error(Code::InvalidArgument, &bad.0);
                let status =
                    actions::respond(session, 400, &headers, &Default::default(), body).await?;
                Ok(Some(status))
            }
        }
    }
}

fn json_type() -> (String, String) {
    ("content-type".to_string(), "application/json".to_string())
}

/// The gRPC call's head: POST to `/pkg.Service/Method`, no query,
/// `te: trailers` (gRPC servers insist on it; Pingora drops it from an
/// HTTP/1.1 client's request as hop-by-hop).
pub(super) fn upstream_request(req: &mut RequestHeader, t: &Transcoding) -> Result<()> {
    req.set_method(http::Method::POST);
    let uri: http::Uri = t
        .binding
        .grpc_path
        .parse()
        .map_err(|e| Error::because(ErrorType::InternalError, "gRPC path is not a URI", e))?;
    req.set_uri(uri);
    req.insert_header(http::header::TE, "trailers")?;
    for name in [
        http::header::ACCEPT_ENCODING,
        http::header::CONTENT_ENCODING,
        http::header::IF_NONE_MATCH,
        http::header::IF_MODIFIED_SINCE,
        http::header::RANGE,
        http::header::IF_RANGE,
    ] {
        req.remove_header(&name);
    }
    Ok(())
}

/// The reply's head: a trailers-only gRPC error is kept for
/// `fail_to_proxy` (`Err`); otherwise a JSON answer whose body comes
/// with the trailers.
pub(super) fn response_head(resp: &mut ResponseHeader, t: &mut Transcoding) -> Result<()> {
    if let Some(code) = crate::grpc::status(&resp.headers) {
        let message = crate::transcode::grpc_message(&resp.headers);
        let (code, message) = if code == Code::Ok {
            (
                Code::Internal,
                "the backend sent no reply message".to_string(),
            )
        } else {
            (code, message)
        };
        t.refusal = Some((code, message.clone()));
        return Err(Error::explain(
            ErrorType::HTTPStatus(http_status(code)),
            format!("the backend answered {}: {message}", code.name()),
        ));
    }
    if resp.status != http::StatusCode::OK || !crate::grpc::is_grpc(&resp.headers) {
        let code = Code::Unknown;
        let message = format!(
            "the backend's answer is not gRPC (HTTP {})",
            resp.status.as_u16()
        );
        t.refusal = Some((code, message.clone()));
        return Err(Error::explain(ErrorType::HTTPStatus(502), message));
    }
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    for name in ["content-length", "grpc-encoding", "grpc-accept-encoding"] {
        resp.remove_header(name);
    }
    Ok(())
}

/// Collects the reply's bytes (nothing goes out until the trailers).
pub(super) fn body(body: &mut Option<Bytes>, end: bool, t: &mut Transcoding) -> Result<()> {
    if let Some(piece) = body.take() {
        if t.reply.len() + piece.len() > t.max_reply + 5 {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                format!(
                    "the reply message is larger than the route's max_response ({} bytes)",
                    t.max_reply
                ),
            ));
        }
        t.reply.extend_from_slice(&piece);
    }
    if end {
        // A gRPC answer ends with trailers; one that just stops has no
        // status to go by.
        *body = Some(error_body(
            Code::Unknown,
            "the backend ended its answer without a grpc-status",
        ));
    }
    Ok(())
}

/// The JSON body, once the trailers say how the call ended.
pub(super) fn trailers(trailers: &http::HeaderMap, t: &mut Transcoding) -> Bytes {
    match crate::grpc::status(trailers) {
        Some(Code::Ok) => match t.binding.response(&t.reply) {
            Ok(json) => Bytes::from(json),
            Err(why) => error_body(Code::Internal, &why),
        },
        // The head (200) is gone already: the error can only be the body.
        Some(code) => error_body(code, &crate::transcode::grpc_message(trailers)),
        None => error_body(Code::Unknown, "the backend's trailers have no grpc-status"),
    }
}
