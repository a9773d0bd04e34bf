//! Both directions of a proxied stream at once, ended when either side
//! closes or errs, or when neither has sent anything for the idle
//! timeout (a quiet direction does not end a connection whose other
//! direction still talks).

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// When either side last sent something, in milliseconds since `start`.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A side of the stream that marks the activity whenever it delivers
/// bytes, and counts them.
struct Tracked<'a, S> {
    inner: &'a mut S,
    activity: Arc<Activity>,
    read: u64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.touch();
            self.read += n as u64;
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// How a stream ended.
#[derive(Debug)]
pub struct Copied {
    /// Bytes from the client to the backend.
    pub up: u64,
    /// Bytes from the backend to the client.
    pub down: u64,
    /// Why it ended, if not by both sides closing.
    pub error: Option<io::Error>,
}

/// Copies `client` ⇄ `backend` until both close, one fails, or nothing
/// moves for `idle`. The counts are of the bytes read from each side,
/// however it ended (a few read before a failure may not have been
/// written on).
pub async fn bidirectional<A, B>(client: &mut A, backend: &mut B, idle: Duration) -> Copied
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    let mut a = Tracked {
        inner: client,
        activity: Arc::clone(&activity),
        read: 0,
    };
    let mut b = Tracked {
        inner: backend,
        activity: Arc::clone(&activity),
        read: 0,
    };
    let error = {
        let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
        tokio::pin!(copy);
        loop {
            let deadline = activity.last() + idle;
            tokio::select! {
                result = &mut copy => break result.err(),
                _ = tokio::time::sleep_until(deadline) => {
                    if activity.last() + idle <= Instant::now() {
                        break Some(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"));
                    }
                }
            }
        }
    };
    Copied {
        up: a.read,
        down: b.read,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_ends_and_a_busy_one_does_not() {
        let (mut client, mut edge_client) = duplex(64);
        let (mut edge_backend, mut backend) = duplex(64);
        let relay = tokio::spawn(async move {
            bidirectional(&mut edge_client, &mut edge_backend, Duration::from_secs(10)).await
        });
        // Traffic one way only keeps it open past the idle time.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            backend.read_exact(&mut b).await.unwrap();
        }
        assert!(!relay.is_finished());
        tokio::time::sleep(Duration::from_secs(11)).await;
        let done = relay.await.unwrap();
        assert_eq!(done.error.map(|e| e.kind()), Some(io::ErrorKind::TimedOut));
        assert_eq!((done.up, done.down), (5, 0), "counted however it ended");
    }

    #[tokio::test]
    async fn both_closing_ends_it_with_the_counts() {
        let (mut client, mut edge_client) = duplex(64);
        let (mut edge_backend, mut backend) = duplex(64);
        let relay = tokio::spawn(async move {
            bidirectional(&mut edge_client, &mut edge_backend, Duration::from_secs(10)).await
        });
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        backend.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        backend.write_all(b"bye!").await.unwrap();
        backend.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye!");
        let done = relay.await.unwrap();
        assert_eq!((done.up, done.down), (5, 4));
        assert!(done.error.is_none());
    }
}
