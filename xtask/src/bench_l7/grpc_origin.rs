//! The gRPC origin of the benchmark's gRPC row (`cargo xtask
//! grpc-origin`, started by the benchmark): plain HTTP/2 (h2c), one
//! thread, answering every call with the request's own message and
//! `grpc-status: 0`, so that all three proxies are measured in front of
//! the same fast backend.

use anyhow::{Context, Result};
use bytes::BytesMut;
use std::net::SocketAddr;

/// Largest request read; the benchmark sends a few bytes.
const MAX_REQUEST: usize = 64 * 1024;

/// Serves on `listen` until killed.
pub fn serve(listen: SocketAddr) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        loop {
            let (socket, _) = listener.accept().await?;
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((request, respond))) = conn.accept().await {
                    tokio::spawn(answer(request, respond));
                }
            });
        }
    })
}

async fn answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
) {
    let mut body = request.into_body();
    let mut got = BytesMut::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        if got.len() + chunk.len() > MAX_REQUEST {
            return;
        }
        got.extend_from_slice(&chunk);
    }
    let Ok(head) = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
    else {
        return;
    };
    let Ok(mut send) = respond.send_response(head, false) else {
        return;
    };
    let _ = send.send_data(got.freeze(), false);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let _ = send.send_trailers(trailers);
}
