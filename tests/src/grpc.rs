//! gRPC for the tests: a real gRPC backend and a real gRPC client
//! (grpcio, in Python: `tests/grpc/backend.py` and `tests/grpc/client.py`)
//! as child processes killed by their PID when dropped, and a raw HTTP/2
//! call (the h2 crate) that shows exactly how an answer was framed; for
//! the transcoding tests, a bookstore backend (`tests/grpc/bookstore.py`)
//! and the descriptor set protoc makes of `config/protos/bookstore.proto`.

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use serde_json::{Value, json};
use std::{
    ffi::OsString,
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    time::{Duration, Instant},
};

/// The Python that has grpcio.
pub const PYTHON: &str = "/usr/bin/python3";

/// How long a call (or a backend's start) may take unless told otherwise.
pub const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// The gRPC deadline, in seconds, client.py commands carry: a call edge
/// never ends still ends, before [`CALL_DEADLINE`].
const COMMAND_TIMEOUT_SECS: f64 = 8.0;

/// The headers of a gRPC request, for [`raw_call`].
pub const GRPC_HEADERS: &[(&str, &str)] =
    &[("content-type", "application/grpc"), ("te", "trailers")];

/// The directory of the Python scripts.
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc")
}

/// `config/protos`: `bookstore.proto` and the `google/api` files it
/// imports.
pub fn protos() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config")
        .join("protos")
}

/// The lines `out` gives, on a channel, read by a thread of their own.
fn line_reader(out: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// SIGKILL to `child` if it still runs, then reaps it.
fn kill_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        // SAFETY: kill(2) on the PID of a child we spawned and have not
        // reaped, so the PID cannot have been reused.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    }
    let _ = child.wait();
}

/// A new temporary file for a child's stderr, and a handle to give it.
fn stderr_log() -> Result<(tempfile::NamedTempFile, Stdio)> {
    let log = tempfile::NamedTempFile::new()?;
    let out = Stdio::from(log.as_file().try_clone()?);
    Ok((log, out))
}

/// Spawns the server script `cmd` runs (its stderr to a new log) and
/// waits for the port it says on its first stdout line; kills it if that
/// does not come.
fn spawn_server(
    mut cmd: Command,
    what: &str,
) -> Result<(Child, tempfile::NamedTempFile, SocketAddr)> {
    let (log, stderr) = stderr_log()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {what} with {PYTHON}"))?;
    let port = match child.stdout.take() {
        None => Err(anyhow::anyhow!("{what} has no stdout")),
        Some(out) => match line_reader(out).recv_timeout(CALL_DEADLINE) {
            Ok(line) => line
                .trim()
                .parse::<u16>()
                .with_context(|| format!("{what} said {line:?}, not its port")),
            Err(_) => Err(anyhow::anyhow!(
                "{what} did not say its port within {CALL_DEADLINE:?}; its log:\n{}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            )),
        },
    };
    match port {
        Ok(port) => Ok((child, log, SocketAddr::from(([127, 0, 0, 1], port)))),
        Err(e) => {
            kill_child(&mut child);
            Err(e)
        }
    }
}

/// What a [`GrpcBackend`] does besides echoing.
#[derive(Clone, Debug, Default)]
pub struct BackendOptions {
    /// Serve TLS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Its health service answers NOT_SERVING while this file contains
    /// `NOT_SERVING`, SERVING otherwise.
    pub health_file: Option<PathBuf>,
    /// Every `Unary` call fails with UNAVAILABLE.
    pub unavailable: bool,
}

/// `backend.py`: service `test.Echo` (`Unary`, `ServerStream`,
/// `ClientStream`, `Bidi`) and `grpc.health.v1.Health/Check` on a free
/// port of 127.0.0.1. Every answer carries `x-backend: NAME`.
pub struct GrpcBackend {
    child: Child,
    log: tempfile::NamedTempFile,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name, the `x-backend` of its answers.
    pub name: String,
}

impl GrpcBackend {
    /// Starts backend `name` and waits for it to say its port.
    pub fn start(name: &str, opts: &BackendOptions) -> Result<Self> {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(scripts().join("backend.py")).args(["--name", name]);
        if let Some((cert, key)) = &opts.tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        if let Some(file) = &opts.health_file {
            cmd.arg("--health-file").arg(file);
        }
        if opts.unavailable {
            cmd.arg("--unavailable");
        }
        let (child, log, addr) = spawn_server(cmd, &format!("gRPC backend {name}"))?;
        Ok(Self {
            child,
            log,
            addr,
            name: name.to_string(),
        })
    }

    /// Kills it at once (SIGKILL: connections and streams just break) and
    /// waits for it to be gone.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// What it wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// A client.py command: a `kind` call (`unary`, `server_stream`,
/// `client_stream`, `bidi`) of `method` at `target` sending `requests`;
/// `tls` is [`Value::Null`] (plaintext, h2c) or [`tls`].
pub fn command(
    target: SocketAddr,
    tls: &Value,
    kind: &str,
    method: &str,
    requests: &[&str],
) -> Value {
    json!({
        "target": target.to_string(),
        "tls": tls,
        "kind": kind,
        "method": method,
        "requests": requests,
        "timeout": COMMAND_TIMEOUT_SECS,
    })
}

/// TLS for a [`command`]: trust `ca`, expect the certificate of
/// `server_name` (also the SNI sent).
pub fn tls(ca: &Path, server_name: &str) -> Value {
    json!({ "ca": ca.display().to_string(), "server_name": server_name })
}

/// `client.py`: runs the JSON commands it is sent one after the other,
/// answering each with JSON lines (see the script).
pub struct GrpcClient {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    log: tempfile::NamedTempFile,
}

impl GrpcClient {
    /// Starts the client.
    pub fn start() -> Result<Self> {
        let (log, stderr) = stderr_log()?;
        let mut child = Command::new(PYTHON)
            .arg(scripts().join("client.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting the gRPC client with {PYTHON}"))?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => {
                kill_child(&mut child);
                bail!("client.py has no stdin or stdout");
            }
        };
        Ok(Self {
            child,
            stdin,
            lines: line_reader(stdout),
            log,
        })
    }

    /// Sends `cmd` without waiting for anything.
    pub fn send(&mut self, cmd: &Value) -> Result<()> {
        writeln!(self.stdin, "{cmd}")
            .and_then(|()| self.stdin.flush())
            .with_context(|| {
                format!(
                    "sending a command to client.py; its log:\n{}",
                    self.log_text()
                )
            })
    }

    /// The next line the client writes, waiting at most `deadline`.
    pub fn next_line(&mut self, deadline: Duration) -> Result<Value> {
        match self.lines.recv_timeout(deadline) {
            Ok(line) => {
                serde_json::from_str(&line).with_context(|| format!("client.py said {line:?}"))
            }
            Err(RecvTimeoutError::Timeout) => bail!(
                "client.py said nothing within {deadline:?}; its log:\n{}",
                self.log_text()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                bail!("client.py exited; its log:\n{}", self.log_text())
            }
        }
    }

    /// Reads lines until the call's `"event": "done"` line, which it
    /// returns (the `"message"` lines before it are dropped), within
    /// `deadline`.
    pub fn until_done(&mut self, deadline: Duration) -> Result<Value> {
        let end = Instant::now() + deadline;
        loop {
            let line = self.next_line(end.saturating_duration_since(Instant::now()))?;
            if line["event"] == "done" {
                return Ok(line);
            }
        }
    }

    /// Runs `cmd` to its end: its `"done"` line, within [`CALL_DEADLINE`].
    pub fn call(&mut self, cmd: &Value) -> Result<Value> {
        self.send(cmd)?;
        self.until_done(CALL_DEADLINE)
            .with_context(|| format!("running {cmd}"))
    }

    /// What the client wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for GrpcClient {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// A gRPC message: the 5-byte prefix (not compressed, big-endian length)
/// and `msg`.
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let len = u32::try_from(msg.len()).expect("a gRPC message under 4 GiB");
    let mut out = Vec::with_capacity(5 + msg.len());
    out.push(0);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// An HTTP/2 answer as it came.
#[derive(Clone, Debug)]
pub struct RawAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The response head's fields, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Whether the head ended the stream (a gRPC "trailers-only" answer).
    pub ends_with_head: bool,
    /// The body, all DATA frames.
    pub body: Vec<u8>,
    /// The trailers, if any.
    pub trailers: Vec<(String, String)>,
}

impl RawAnswer {
    /// The first value of head field `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// The first value of trailer `name` (lower-case).
    pub fn trailer(&self, name: &str) -> Option<&str> {
        find(&self.trailers, name)
    }

    /// `grpc-status`: in the head of a trailers-only answer, else in the
    /// trailers.
    pub fn grpc_status(&self) -> Option<&str> {
        self.header("grpc-status")
            .or_else(|| self.trailer("grpc-status"))
    }

    /// `grpc-message`, wherever the status is.
    pub fn grpc_message(&self) -> Option<&str> {
        self.header("grpc-message")
            .or_else(|| self.trailer("grpc-message"))
    }
}

fn find<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn pairs(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// `POST path` to `addr` over HTTP/2 with prior knowledge (h2c) on a new
/// connection, with `headers` and `body` in one DATA frame ending the
/// stream; the whole answer within [`CALL_DEADLINE`].
pub fn raw_call(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<RawAnswer> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The timer needs the runtime: made inside it.
    let answer = rt.block_on(async {
        tokio::time::timeout(CALL_DEADLINE, exchange(addr, path, headers, body)).await
    });
    answer.with_context(|| {
        format!("no whole answer to {path} from {addr} within {CALL_DEADLINE:?}")
    })?
}

async fn exchange(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<RawAnswer> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .context("the HTTP/2 handshake")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client
        .ready()
        .await
        .context("HTTP/2 connection not ready")?;
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let (response, mut send) = client
        .send_request(request.body(())?, body.is_empty())
        .context("sending the request head")?;
    if !body.is_empty() {
        send.send_data(Bytes::copy_from_slice(body), true)
            .context("sending the request body")?;
    }
    let (head, mut recv) = response
        .await
        .context("reading the response head")?
        .into_parts();
    let ends_with_head = recv.is_end_stream();
    let (mut data, mut trailers) = (Vec::new(), None);
    if !ends_with_head {
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.context("reading the response body")?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        trailers = recv.trailers().await.context("reading the trailers")?;
    }
    drop(send);
    Ok(RawAnswer {
        status: head.status.as_u16(),
        headers: pairs(&head.headers),
        ends_with_head,
        body: data,
        trailers: trailers.as_ref().map(pairs).unwrap_or_default(),
    })
}

/// Compiles `bookstore.proto` with the `google/api` files it imports into
/// the descriptor set `out` (`protoc --include_imports`), for
/// [`BookstoreBackend`] and for edge's `transcode.descriptor_set`.
pub fn descriptor_set(out: &Path) -> Result<()> {
    // The example service of config/grpc.yaml: the tests use what users
    // are shown.
    let dir = protos();
    let mut flag = OsString::from("--descriptor_set_out=");
    flag.push(out);
    let done = Command::new("protoc")
        .arg("--include_imports")
        .arg(flag)
        .arg("-I")
        .arg(&dir)
        .args(["-I", "/usr/include"])
        .arg(dir.join("bookstore.proto"))
        .output()
        .context("running protoc")?;
    ensure!(
        done.status.success(),
        "protoc could not compile bookstore.proto: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    Ok(())
}

/// `bookstore.py`: service `shop.v1.Bookstore` of `bookstore.proto` on a
/// free port of 127.0.0.1, its messages made from a [`descriptor_set`].
/// Every answer carries `x-backend: bookstore` in its trailers.
pub struct BookstoreBackend {
    child: Child,
    log: tempfile::NamedTempFile,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl BookstoreBackend {
    /// Starts it with the descriptor set at `descriptors` and waits for it
    /// to say its port.
    pub fn start(descriptors: &Path) -> Result<Self> {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(scripts().join("bookstore.py"))
            .arg("--descriptor-set")
            .arg(descriptors);
        let (child, log, addr) = spawn_server(cmd, "the bookstore backend")?;
        Ok(Self { child, log, addr })
    }

    /// What it wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for BookstoreBackend {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}
