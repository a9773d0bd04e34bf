//! A small, real HTTP/1.1 backend for tests and the demo lab.
//!
//! By default it answers every request with `200`, an `X-Backend: <name>`
//! header and a body that echoes the request head, so a test sees which
//! backend served it and what the proxy added. [`Backend::start_with`] takes
//! a handler instead, for tests that need particular responses (cache
//! headers, errors, slow answers); `X-Backend` is always added. It runs on
//! threads of this process (one per connection, so a slow handler delays
//! only its own connection), its socket bound inside the namespace of the
//! host it plays.

use crate::{http, http::Message, netns};
use anyhow::{Context, Result};
use std::{
    io::{BufReader, ErrorKind, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

/// What a handler answers.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields (Content-Length is added).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Close the connection after this response.
    pub close: bool,
    /// Close the connection without answering at all.
    pub abort: bool,
}

impl Response {
    /// A `status` response with `body`.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
            close: false,
            abort: false,
        }
    }

    /// A response that is never sent: the connection is closed instead.
    pub fn abort() -> Self {
        Self {
            abort: true,
            ..Self::new(502, Vec::new())
        }
    }

    /// Adds a header field.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// Builds the response to a request.
pub type Handler = Arc<dyn Fn(&Message) -> Response + Send + Sync>;

/// The default handler: `200`, the request head echoed as text.
pub fn echo(req: &Message) -> Response {
    let mut body = format!("{}\n", req.start);
    for (k, v) in &req.headers {
        body.push_str(&format!("{k}: {v}\n"));
    }
    Response::new(200, body).header("Content-Type", "text/plain")
}

struct Shared {
    name: String,
    handler: Handler,
    requests: AtomicUsize,
    connections: AtomicUsize,
    stop: AtomicBool,
}

/// A running backend; stops when dropped.
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Starts backend `name` listening on `addr` inside namespace `ns`
    /// (`None`: this process's namespace), answering with [`echo`].
    pub fn start(name: &str, ns: Option<&str>, addr: SocketAddr) -> Result<Self> {
        Self::start_with(name, ns, addr, Arc::new(echo))
    }

    /// Like [`Backend::start`], answering with `handler`.
    pub fn start_with(
        name: &str,
        ns: Option<&str>,
        addr: SocketAddr,
        handler: Handler,
    ) -> Result<Self> {
        let bind = move || TcpListener::bind(addr).with_context(|| format!("binding {addr}"));
        let listener = match ns {
            Some(ns) => netns::run_in(ns, bind)?,
            None => bind()?,
        };
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            handler,
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(&listener, &shared))
        };
        Ok(Self {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// The backend's name, as sent in `X-Backend`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    // Wait for a connection in poll(2) with a short timeout rather than
    // sleeping between non-blocking accepts: a connection is accepted as soon
    // as it arrives (benchmarks measure connection set-up through this
    // backend), and dropping the backend still never depends on a last
    // connection arriving.
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                shared.connections.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => wait_readable(listener, STOP_POLL),
            Err(_) => std::thread::sleep(STOP_POLL),
        }
    }
}

/// How long the accept loop waits before looking at the stop flag again.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Waits until `listener` has a connection to accept, or `timeout`.
fn wait_readable(listener: &TcpListener, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a descriptor `listener` keeps open for
    // the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
}

fn serve(stream: TcpStream, shared: &Shared) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = http::read_message(&mut reader)? {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let resp = (shared.handler)(&req);
        if resp.abort {
            break;
        }
        let close = resp.close
            || req
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let reason = reason(resp.status);
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nX-Backend: {}\r\n",
            resp.status, shared.name
        );
        for (k, v) in &resp.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        // 1xx, 204 and 304 carry no body and no length.
        let bodyless = resp.status < 200 || resp.status == 204 || resp.status == 304;
        if !bodyless {
            head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        // One write per response: a head and a body written apart meet
        // Nagle's algorithm and the client's delayed ACK (40 ms a request).
        let mut out = head.into_bytes();
        if !bodyless && req.start.split_whitespace().next() != Some("HEAD") {
            out.extend_from_slice(&resp.body);
        }
        writer.write_all(&out)?;
        if close {
            break;
        }
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
