//! The access log: one JSON object per request, written by a thread of its
//! own so a slow disk never holds up a request; lines are dropped (and
//! counted) if it falls far behind.

use crate::{config::LogTarget, metrics};
use serde::Serialize;
use std::{
    io::{BufWriter, Write},
    sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
};

/// Lines queued before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// One request, as logged.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// RFC 3339 time the request arrived, UTC.
    pub time: String,
    /// Listener name.
    pub listener: &'a str,
    /// The request's id: a trusted proxy's, or edge's own (the one sent
    /// upstream and returned to the client).
    pub request_id: Option<&'a str>,
    /// The W3C trace id, 32 hex digits.
    pub trace_id: Option<String>,
    /// edge's span in that trace (the `parent-id` it sent upstream), 16
    /// hex digits.
    pub span_id: Option<String>,
    /// The caller's span, when the request came with a trace.
    pub parent_span_id: Option<String>,
    /// Client address.
    pub client: Option<String>,
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
    pub upstream: Option<String>,
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

/// What the writer thread is sent.
enum Msg {
    Line(String),
    /// Write everything before this, then answer.
    Flush(SyncSender<()>),
}

/// A running access log.
pub struct AccessLog {
    tx: SyncSender<Msg>,
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
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(rx, out))?;
        Ok(Self { tx })
    }

    /// Queues `entry`.
    pub fn log(&self, entry: &Entry<'_>) {
        let Ok(line) = serde_json::to_string(entry) else {
            return;
        };
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => metrics::access_log_dropped(),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Waits (at most `timeout`) until every line queued so far is written:
    /// before the process exits, so that no request goes unlogged.
    pub fn flush(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let (done, wait) = sync_channel(1);
        let mut msg = Msg::Flush(done);
        // Never block on a full queue: a stuck writer must not hang the exit.
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if std::time::Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = wait.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
    }
}

fn write_loop(rx: Receiver<Msg>, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::new(out);
    while let Ok(first) = rx.recv() {
        let mut ok = true;
        // Write what is queued, then flush once: lines reach the file in
        // batches under load and at once when idle.
        for msg in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match msg {
                Msg::Line(line) => ok &= writeln!(out, "{line}").is_ok(),
                // Answered as soon as what came before it is written, even
                // if lines keep coming.
                Msg::Flush(done) => {
                    ok &= out.flush().is_ok();
                    let _ = done.try_send(());
                }
            }
        }
        ok &= out.flush().is_ok();
        if !ok {
            tracing::warn!("access log write failed");
        }
    }
}

/// `time` formatted as RFC 3339 UTC with milliseconds.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    let d = time
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
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
