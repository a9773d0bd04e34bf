//! Answering a fresh cache hit in `request_filter` ([`crate::cache::fresh`]
//! says which hits): the response goes through the same filters, in the
//! same order and with the same pieces of body, as on pingora-cache's hit
//! path (`proxy_cache_hit` of pingora-proxy 0.9.1: re-check this against
//! it on every Pingora upgrade), so a client cannot tell the two apart.
//! One difference is left: a response filter that fails here is answered
//! by `fail_to_proxy` (a 500, the connection closed) where pingora-cache
//! answers a bare 500 and keeps it.

use super::{EdgeProxy, RequestCtx};
use crate::cache::{fresh, storage::FreshHit};
use pingora::{
    Result,
    prelude::{ProxyHttp, Session},
};

impl EdgeProxy {
    /// Answers the request from a fresh hit if it has one; `true` when it
    /// did.
    pub(super) async fn serve_fresh_hit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        // A route that transforms responses keeps pingora-cache's path: a
        // transformation refused there is answered as pingora-cache
        // answers a failed response filter.
        if ctx
            .route
            .as_ref()
            .is_some_and(|r| r.route.shaping.response.is_some())
        {
            return Ok(false);
        }
        let Some(FreshHit { header, age, body }) =
            fresh::lookup(session, ctx.rt.cache.as_ref(), &mut ctx.cache)
        else {
            return Ok(false);
        };
        let mut head = fresh::head(header, age)?;
        // The request has no Range (a fresh-path rule), so this only adds
        // `Accept-Ranges: bytes` where pingora-cache's hit path does (the
        // store can seek).
        if !session.ignore_downstream_range {
            self.range_header_filter(session, &mut head, ctx);
        }
        self.response_filter(session, &mut head, ctx).await?;
        // Pingora's downstream modules run here, as on its hit path.
        session
            .write_response_header(head, false)
            .await
            .map_err(|e| e.into_down())?;
        // pingora-cache's hit handler yields the whole stored body, then
        // its end; an empty piece before the end is not written.
        for (piece, end) in [(Some(body), false), (None, true)] {
            let mut piece = piece;
            if let Some(delay) = self.response_body_filter(session, &mut piece, end, ctx)? {
                tokio::time::sleep(delay).await;
            }
            if end || piece.as_ref().is_some_and(|b| !b.is_empty()) {
                session
                    .write_response_body(piece, end)
                    .await
                    .map_err(|e| e.into_down())?;
            }
        }
        Ok(true)
    }
}
