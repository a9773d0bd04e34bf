//! The access log: one JSON object per request. A request appends its line
//! to a shared buffer; a thread of its own writes the buffer out every
//! [`TICK`] (sooner when it fills), so a slow disk never holds up a request
//! and the request path never wakes another thread per line (a wake-up and
//! context switch per request cost more than the request itself). Lines
//! are dropped (and counted) if the writer falls [`MAX_PENDING`] behind.

use crate::{
    config::LogTarget,
    metrics,
    proxy::trace::{SpanId, TraceId},
};
use serde::{Serialize, Serializer};
use std::{
    cell::RefCell,
    fmt,
    io::Write,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Condvar, Mutex, atomic::AtomicBool, atomic::Ordering},
    thread::Thread,
    time::{Duration, Instant},
};

/// Bytes waiting for the writer before new lines are dropped.
const MAX_PENDING: usize = 8 * 1024 * 1024;
/// Waiting bytes at which the writer is woken before its tick.
const WAKE_AT: usize = 256 * 1024;
/// How often the writer writes what waits: the longest a line waits when
/// edge is idle.
pub const TICK: Duration = Duration::from_millis(50);
/// A line longer than this is not kept in a thread's scratch buffer.
const SCRATCH_KEEP: usize = 16 * 1024;

/// One request, as logged.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// RFC 3339 time the request arrived, UTC.
    pub time: Rfc3339,
    /// Listener name.
    pub listener: &'a str,
    /// The request's id: a trusted proxy's, or edge's own (the one sent
    /// upstream and returned to the client).
    pub request_id: Option<&'a str>,
    /// The W3C trace id, 32 hex digits.
    pub trace_id: Option<TraceId>,
    /// edge's span in that trace (the `parent-id` it sent upstream), 16
    /// hex digits.
    pub span_id: Option<SpanId>,
    /// The caller's span, when the request came with a trace.
    pub parent_span_id: Option<SpanId>,
    /// Client address.
    pub client: Option<IpAddr>,
    /// Method.
    pub method: &'a str,
    /// Host asked for.
    pub host: Option<&'a str>,
    /// Path and query.
    pub path: &'a str,
    /// HTTP version.
    pub protocol: &'a str,
    /// Status sent (0: none).
    pub status: u16,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Total time, milliseconds.
    pub duration_ms: f64,
    /// Time to the upstream's response head, milliseconds.
    pub upstream_ms: Option<f64>,
    /// Route name.
    pub route: Option<&'a str>,
    /// Pool name.
    pub pool: Option<&'a str>,
    /// Backend address.
    pub upstream: Option<SocketAddr>,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Cache status, when the cache took part.
    pub cache: Option<&'a str>,
    /// The consumer a gateway policy identified.
    pub consumer: Option<&'a str>,
    /// `policy:reason` of the gateway policy that refused the request.
    pub refused: Option<String>,
    /// The gRPC status of a gRPC request, by name.
    pub grpc_status: Option<&'static str>,
    /// The error, if the request failed.
    pub error: Option<String>,
}

/// What the request path and the writer share.
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled by the writer after each write.
    written: Condvar,
    closed: AtomicBool,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// Flushes asked for, and flushes done (counts).
    flush_asked: u64,
    flushed: u64,
}

/// A running access log.
pub struct AccessLog {
    shared: Arc<Shared>,
    writer: Thread,
}

thread_local! {
    /// A line being serialised: a request allocates nothing for it.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl AccessLog {
    /// Opens `target` and starts the writer thread.
    pub fn open(target: &LogTarget) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match target {
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            written: Condvar::new(),
            closed: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(&theirs, out))?;
        Ok(Self {
            shared,
            writer: handle.thread().clone(),
        })
    }

    /// Queues `entry`.
    pub fn log(&self, entry: &Entry<'_>) {
        SCRATCH.with_borrow_mut(|line| {
            line.clear();
            if serde_json::to_writer(&mut *line, entry).is_err() {
                return;
            }
            line.push(b'\n');
            let wake = match self.shared.pending.lock() {
                Ok(mut p) if p.lines.len() + line.len() <= MAX_PENDING => {
                    p.lines.extend_from_slice(line);
                    p.lines.len() >= WAKE_AT
                }
                Ok(_) => {
                    metrics::access_log_dropped();
                    true
                }
                Err(_) => false,
            };
            if wake {
                self.writer.unpark();
            }
            if line.capacity() > SCRATCH_KEEP {
                *line = Vec::new();
            }
        });
    }

    /// Waits (at most `timeout`) until every line queued so far is written:
    /// before the process exits, so that no request goes unlogged.
    pub fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let Ok(mut p) = self.shared.pending.lock() else {
            return;
        };
        p.flush_asked += 1;
        let want = p.flush_asked;
        self.writer.unpark();
        while p.flushed < want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            p = match self.shared.written.wait_timeout(p, left) {
                Ok((p, _)) => p,
                Err(_) => return,
            };
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.writer.unpark();
    }
}

fn write_loop(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut batch = Vec::new();
    loop {
        std::thread::park_timeout(TICK);
        let closed = shared.closed.load(Ordering::Relaxed);
        let asked = {
            let Ok(mut p) = shared.pending.lock() else {
                return;
            };
            std::mem::swap(&mut p.lines, &mut batch);
            p.flush_asked
        };
        if !batch.is_empty() {
            // One write per batch; lines reach the file whole and in order.
            if let Err(e) = out.write_all(&batch).and_then(|()| out.flush()) {
                // The batch is lost (a partial write may leave a line cut
                // short): counted as dropped, and said once per batch.
                let lines = batch.iter().filter(|&&b| b == b'\n').count();
                metrics::access_log_dropped_n(lines as u64);
                tracing::warn!("access log write failed, {lines} lines lost: {e}");
            }
            batch.clear();
            // A burst's buffer is not kept for ever.
            if batch.capacity() > 4 * WAKE_AT {
                batch = Vec::new();
            }
        }
        if let Ok(mut p) = shared.pending.lock() {
            p.flushed = asked;
        }
        shared.written.notify_all();
        if closed {
            return;
        }
    }
}

// The time, like the trace's ids (`TraceId`, `SpanId`), is written into
// the line as it is formatted (serde_json's `collect_str`): a logged
// request allocates no string for it.

/// A time, written as RFC 3339 UTC with milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Rfc3339(pub std::time::SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self
            .0
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = d.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Howard Hinnant's civil_from_days.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            d.subsec_millis()
        )
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn entry(path: &str) -> Entry<'_> {
        Entry {
            time: Rfc3339(UNIX_EPOCH),
            listener: "web",
            request_id: None,
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            client: None,
            method: "GET",
            host: None,
            path,
            protocol: "HTTP/1.1",
            status: 200,
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 0.0,
            upstream_ms: None,
            route: None,
            pool: None,
            upstream: None,
            attempts: 1,
            cache: None,
            consumer: None,
            refused: None,
            grpc_status: None,
            error: None,
        }
    }

    #[test]
    fn every_line_is_written_whole_and_in_order_by_the_flush_and_the_tick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(&LogTarget::File(path.clone())).unwrap();
        let lines = |path: &std::path::Path| -> Vec<serde_json::Value> {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        // More than WAKE_AT bytes: the writer is woken before its tick.
        let paths: Vec<String> = (0..5000).map(|i| format!("/item/{i}")).collect();
        for p in &paths {
            log.log(&entry(p));
        }
        log.flush(Duration::from_secs(10));
        let written = lines(&path);
        assert_eq!(written.len(), paths.len());
        for (line, p) in written.iter().zip(&paths) {
            assert_eq!(line["path"], p.as_str());
        }
        // A lone line reaches the file by itself, within a few ticks.
        log.log(&entry("/last"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lines(&path).len() < paths.len() + 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the tick wrote nothing"
            );
            std::thread::sleep(TICK);
        }
        assert_eq!(lines(&path)[paths.len()]["path"], "/last");
    }

    #[test]
    fn formats_times() {
        let rfc3339 = |t| Rfc3339(t).to_string();
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn formatted_fields_are_json_strings_as_before() {
        let mut e = entry("/a?b=\"c\"");
        e.time = Rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_000_000_123));
        e.trace_id = Some(TraceId(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c));
        e.span_id = Some(SpanId(0xb7));
        e.client = Some("::ffff:192.0.2.7".parse().unwrap());
        e.upstream = Some("[fe80::1%2]:8080".parse().unwrap());
        // What the log writes (`to_writer`), whole.
        let line = serde_json::to_string(&e).unwrap();
        assert!(
            line.starts_with(
                "{\"time\":\"2026-11-18T11:06:40.123Z\",\"listener\":\"web\",\
                 \"request_id\":null,\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\",\
                 \"span_id\":\"00000000000000b7\",\"parent_span_id\":null,\
                 \"client\":\"::ffff:192.0.2.7\",\"method\":\"GET\",\"host\":null,\
                 \"path\":\"/a?b=\\\"c\\\"\","
            ),
            "{line}"
        );
        assert!(
            line.contains("\"upstream\":\"[fe80::1%2]:8080\","),
            "{line}"
        );
    }
}
