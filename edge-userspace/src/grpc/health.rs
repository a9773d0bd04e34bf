//! The standard gRPC health check (`grpc.health.v1.Health/Check`) over
//! an open connection: HTTP/2 with prior knowledge, or inside TLS
//! negotiated to `h2`.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};

/// The method every gRPC health service answers.
const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// Most bytes of a health answer read: the answer is a few bytes, and a
/// backend that sends more is not a health service.
const MAX_ANSWER: usize = 4096;
/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: i32 = 1;

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    /// The service asked about; empty: the server as a whole.
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    /// `ServingStatus`: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING,
    /// 3 SERVICE_UNKNOWN.
    #[prost(int32, tag = "1")]
    status: i32,
}

fn serving_status_name(status: i32) -> String {
    match status {
        0 => "UNKNOWN".to_string(),
        1 => "SERVING".to_string(),
        2 => "NOT_SERVING".to_string(),
        3 => "SERVICE_UNKNOWN".to_string(),
        n => format!("status {n}"),
    }
}

/// Asks the server on `io` whether `service` (empty: the whole server) is
/// serving; `authority` is the `:authority` sent, `tls` picks the scheme.
/// `Err` says why the backend is not healthy.
pub async fn check<S>(io: S, authority: &str, service: &str, tls: bool) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io)
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let exchange = ask(client, authority, service, tls);
    tokio::pin!(connection);
    tokio::select! {
        result = exchange => result,
        ended = &mut connection => Err(match ended {
            Ok(()) => "the backend closed the HTTP/2 connection".to_string(),
            Err(e) => format!("HTTP/2 connection: {e}"),
        }),
    }
}

async fn ask(
    client: h2::client::SendRequest<Bytes>,
    authority: &str,
    service: &str,
    tls: bool,
) -> Result<(), String> {
    let mut client = client.ready().await.map_err(|e| format!("HTTP/2: {e}"))?;
    let scheme = if tls { "https" } else { "http" };
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("{scheme}://{authority}{CHECK_PATH}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, "edge-health-check")
        .body(())
        .map_err(|e| format!("building the check: {e}"))?;
    let (answer, mut send) = client
        .send_request(request, false)
        .map_err(|e| format!("sending the check: {e}"))?;
    send.send_data(frame(service), true)
        .map_err(|e| format!("sending the check: {e}"))?;
    let answer = answer.await.map_err(|e| format!("no answer: {e}"))?;
    let (head, mut body) = answer.into_parts();
    if head.status != http::StatusCode::OK {
        return Err(format!("HTTP status {}", head.status.as_u16()));
    }
    // A trailers-only answer carries its status in the head.
    if let Some(code) = super::status(&head.headers) {
        return Err(format!("grpc-status {}", code.name()));
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("reading the answer: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if buf.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("answer longer than {MAX_ANSWER} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    let trailers = body
        .trailers()
        .await
        .map_err(|e| format!("reading the trailers: {e}"))?
        .unwrap_or_default();
    match super::status(&trailers) {
        Some(super::Code::Ok) => {}
        Some(code) => return Err(format!("grpc-status {}", code.name())),
        None => return Err("no grpc-status in the answer".to_string()),
    }
    let status = decode(&buf)?;
    if status == SERVING {
        Ok(())
    } else {
        Err(serving_status_name(status))
    }
}

/// The request as one uncompressed length-prefixed message.
fn frame(service: &str) -> Bytes {
    let message = HealthCheckRequest {
        service: service.to_string(),
    }
    .encode_to_vec();
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(&message);
    out.freeze()
}

/// The serving status in a body of one length-prefixed message.
fn decode(body: &[u8]) -> Result<i32, String> {
    let (prefix, rest) = body
        .split_at_checked(5)
        .ok_or_else(|| "no message in the answer".to_string())?;
    if prefix[0] != 0 {
        return Err("compressed answer (edge asks for none)".to_string());
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    let message = rest
        .get(..len)
        .ok_or_else(|| "answer shorter than its length prefix".to_string())?;
    HealthCheckResponse::decode(message)
        .map(|m| m.status)
        .map_err(|e| format!("not a HealthCheckResponse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers() {
        assert_eq!(&frame("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &frame("a.B")[..],
            &[0, 0, 0, 0, 5, 0x0a, 3, b'a', b'.', b'B']
        );
        assert_eq!(decode(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        assert_eq!(decode(&[0, 0, 0, 0, 2, 0x08, 2]), Ok(2));
        // Proto3 leaves a zero (UNKNOWN) out.
        assert_eq!(decode(&[0, 0, 0, 0, 0]), Ok(0));
        assert!(decode(&[0, 0, 0, 0, 9, 0x08]).is_err());
        assert!(decode(&[1, 0, 0, 0, 0]).is_err());
        assert!(decode(&[0, 0]).is_err());
    }
}
