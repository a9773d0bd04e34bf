//! The request-head deadline (`limits.header_read_timeout`): a client must
//! send a complete HTTP/1.x request head within it.
//!
//! Pingora's own downstream timeouts are per `read()`, so a client that
//! trickles one byte at a time (slowloris) never trips them. This wrapper
//! sits between the connection and Pingora's HTTP/1 parser and keeps one
//! deadline per request head: it starts when the connection is handed over
//! (first request) or at the first byte of a later request on a kept-alive
//! connection (before that byte, the idle timeout applies), and it ends at
//! the blank line that closes the head. Bodies are not timed here.
//!
//! On expiry a client that has sent part of a head gets `408 Request
//! Timeout` and the connection is closed; one that sent nothing is closed
//! silently (as for an idle keep-alive connection: browsers open spare
//! connections they may never use).
//!
//! On an HTTP/2 connection the same deadline covers the client's connection
//! preface, which Pingora (through the h2 crate) would otherwise wait for
//! without end; after it, HTTP/2's own idle timeout takes over.

use async_trait::async_trait;
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType, raw_connect::ProxyDigest, tls::SslDigest,
    tls::TlsRef,
};
use std::{
    fmt,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

/// The HTTP/2 client connection preface (RFC 9113 section 3.4).
const H2_PREFACE_LEN: usize = 24;

/// Sent when a partly received head times out.
const REPLY_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Tells a [`HeadTimeout`] that the next request on its connection begins.
#[derive(Clone, Debug, Default)]
pub struct NextRequest(Arc<AtomicBool>);

impl NextRequest {
    /// The previous request is done: time the next head from its first byte.
    pub fn starts(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Finds the end of an HTTP/1 head (an empty line, CRLF or bare LF) in
/// bytes fed in arbitrary pieces. Empty lines before the request line are
/// skipped, as RFC 9112 section 2.2 allows.
#[derive(Clone, Copy, Debug, Default)]
struct EndOfHead {
    line_len: usize,
    seen_line: bool,
}

impl EndOfHead {
    /// Feeds `bytes`; true once the head is complete.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            match b {
                b'\n' if self.line_len == 0 && self.seen_line => return true,
                b'\n' => {
                    self.seen_line |= self.line_len > 0;
                    self.line_len = 0;
                }
                b'\r' => {}
                _ => self.line_len += 1,
            }
        }
        false
    }
}

/// What ends the timed part of a connection.
#[derive(Clone, Copy, Debug)]
enum Until {
    /// The end of an HTTP/1 request head.
    Head(EndOfHead),
    /// The HTTP/2 connection preface.
    Preface,
}

/// A connection whose request heads must arrive within a deadline.
pub struct HeadTimeout {
    inner: Stream,
    timeout: Duration,
    next: NextRequest,
    /// Looking for the end of a head.
    watching: bool,
    until: Until,
    head_bytes: usize,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Bytes of [`REPLY_408`] written, once the deadline has passed.
    replying: Option<usize>,
}

impl HeadTimeout {
    /// Wraps an HTTP/1 connection; the first head's deadline starts now.
    pub fn new(inner: Stream, timeout: Duration) -> (Self, NextRequest) {
        Self::with(inner, timeout, Until::Head(EndOfHead::default()))
    }

    /// Wraps an HTTP/2 connection: its preface is due within `timeout`.
    pub fn h2_preface(inner: Stream, timeout: Duration) -> Self {
        Self::with(inner, timeout, Until::Preface).0
    }

    fn with(inner: Stream, timeout: Duration, until: Until) -> (Self, NextRequest) {
        let next = NextRequest::default();
        let s = Self {
            inner,
            timeout,
            next: next.clone(),
            watching: true,
            until,
            head_bytes: 0,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            replying: None,
        };
        (s, next)
    }

    fn poll_reply(&mut self, cx: &mut Context<'_>, mut written: usize) -> Poll<io::Result<()>> {
        let mut inner = Pin::new(&mut *self.inner);
        while written < REPLY_408.len() {
            match inner.as_mut().poll_write(cx, &REPLY_408[written..]) {
                Poll::Ready(Ok(n)) if n > 0 => written += n,
                Poll::Ready(_) => break,
                Poll::Pending => {
                    self.replying = Some(written);
                    return Poll::Pending;
                }
            }
        }
        self.replying = Some(REPLY_408.len());
        let _ = ready!(inner.poll_flush(cx));
        Poll::Ready(Err(timed_out(self.timeout)))
    }
}

fn timed_out(t: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("request head not received within {t:?}"),
    )
}

impl AsyncRead for HeadTimeout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.next.0.swap(false, Ordering::AcqRel) {
            this.watching = true;
            this.until = Until::Head(EndOfHead::default());
            this.head_bytes = 0;
            this.deadline = None;
        }
        if let Some(written) = this.replying {
            return this.poll_reply(cx, written);
        }
        if this.watching
            && let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.watching = false;
            this.deadline = None;
            if this.head_bytes == 0 || matches!(this.until, Until::Preface) {
                return Poll::Ready(Err(timed_out(this.timeout)));
            }
            return this.poll_reply(cx, 0);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut *this.inner).poll_read(cx, buf))?;
        let fresh = &buf.filled()[before..];
        if this.watching && !fresh.is_empty() {
            this.head_bytes += fresh.len();
            let done = match &mut this.until {
                Until::Head(scan) => scan.feed(fresh),
                Until::Preface => this.head_bytes >= H2_PREFACE_LEN,
            };
            if done {
                this.watching = false;
                this.deadline = None;
            } else if this.deadline.is_none() {
                // The clock starts at the head's first byte; a head that
                // came whole in one read (nearly all) needs no timer, and
                // makes none (an allocation and a clock read each).
                this.deadline = Some(Box::pin(tokio::time::sleep(this.timeout)));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HeadTimeout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl fmt::Debug for HeadTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadTimeout")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .field("watching", &self.watching)
            .finish()
    }
}

// Everything else is the wrapped connection's.

#[async_trait]
impl Shutdown for HeadTimeout {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for HeadTimeout {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadTimeout {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadTimeout {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadTimeout {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for HeadTimeout {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for HeadTimeout {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::EndOfHead;

    #[test]
    fn end_of_head_in_pieces() {
        let mut s = EndOfHead::default();
        assert!(!s.feed(b"\r\n"), "leading empty lines are skipped");
        assert!(!s.feed(b"GET / HTTP/1.1\r"));
        assert!(!s.feed(b"\nHost: a\r\n\r"));
        assert!(s.feed(b"\n"));
        let mut s = EndOfHead::default();
        assert!(s.feed(b"GET / HTTP/1.1\nHost: a\n\nbody"));
        let mut s = EndOfHead::default();
        assert!(!s.feed(b"GET / HTTP/1.1\r\nHost: a\r\n"));
    }
}
