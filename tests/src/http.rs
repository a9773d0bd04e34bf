//! A minimal HTTP/1.1 message reader and client, enough for tests to speak
//! real HTTP over real sockets without trusting the code under test.

use anyhow::{Context, Result, bail};
use socket2::{Domain, Socket, Type};
use std::{
    io::{BufRead, BufReader, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    time::Duration,
};

/// A parsed request or response head plus body.
#[derive(Clone, Debug, Default)]
pub struct Message {
    /// Request line or status line.
    pub start: String,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Message {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        self.start.split_whitespace().nth(1)?.parse().ok()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one message (head, then a Content-Length or chunked body). Returns
/// `None` on a clean end of stream before any byte.
pub fn read_message<R: BufRead>(r: &mut R) -> Result<Option<Message>> {
    let Some(mut msg) = read_head(r)? else {
        return Ok(None);
    };
    if msg
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .context("bad chunk size")?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            msg.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = msg.header("content-length") {
        let len: usize = len.parse().context("bad content-length")?;
        msg.body = vec![0; len];
        r.read_exact(&mut msg.body)?;
    }
    Ok(Some(msg))
}

/// Sends `GET path` to `addr` on a new connection (closed afterwards) and
/// reads the response. Must run in the client's namespace.
pub fn get(addr: SocketAddr, path: &str) -> Result<Message> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    exchange(stream, addr, path)
}

/// Like [`get`], from source address `from`.
pub fn get_from(from: IpAddr, addr: SocketAddr, path: &str, timeout: Duration) -> Result<Message> {
    let stream = connect_from(from, addr, timeout)?;
    exchange(stream, addr, path)
}

/// Connects to `addr` from source address `from` within `timeout`.
pub fn connect_from(from: IpAddr, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .with_context(|| format!("binding to {from}"))?;
    socket
        .connect_timeout(&addr.into(), timeout)
        .with_context(|| format!("connecting from {from} to {addr}"))?;
    Ok(socket.into())
}

fn exchange(mut stream: TcpStream, addr: SocketAddr, path: &str) -> Result<Message> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes())?;
    let mut reader = BufReader::new(stream);
    read_message(&mut reader)?.context("the server closed the connection without a response")
}

/// Sends one request (`method path`, extra header fields, body) to `addr`
/// on a new connection and reads the response.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Message> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let msg = if method == "HEAD" {
        read_head(&mut reader)?
    } else {
        read_message(&mut reader)?
    };
    msg.context("the server closed the connection without a response")
}

/// Like [`send`] without a body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Message> {
    send(addr, method, path, headers, b"")
}

/// Reads a message head only (also for responses to HEAD, whose
/// Content-Length announces a body that never comes).
fn read_head<R: BufRead>(r: &mut R) -> Result<Option<Message>> {
    let mut start = String::new();
    if r.read_line(&mut start)? == 0 {
        return Ok(None);
    }
    let mut msg = Message {
        start: start.trim_end().to_string(),
        ..Message::default()
    };
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            bail!("connection closed inside the header");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').context("header line without ':'")?;
        msg.headers
            .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(Some(msg))
}

/// A keep-alive connection to `addr` made in a namespace, through which
/// requests go one after another; each answer names its backend in
/// `X-Backend` (as the test backends do).
pub struct KeptAlive {
    reader: BufReader<TcpStream>,
    addr: SocketAddr,
    /// The backend that answered the first request.
    pub backend: String,
}

impl KeptAlive {
    /// Connects to `addr` from namespace `ns` and makes a first request.
    pub fn open(ns: &str, addr: SocketAddr) -> Result<Self> {
        let stream = crate::netns::run_in(ns, move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .with_context(|| format!("connecting to {addr}"))
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut this = Self {
            reader: BufReader::new(stream),
            addr,
            backend: String::new(),
        };
        this.backend = this.request()?;
        Ok(this)
    }

    /// One request on this connection; the backend that answered.
    pub fn request(&mut self) -> Result<String> {
        let req = format!("GET /kept HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr);
        self.reader.get_mut().write_all(req.as_bytes())?;
        let resp =
            read_message(&mut self.reader)?.context("the connection closed without a response")?;
        if resp.status() != Some(200) {
            bail!("status {:?}", resp.status());
        }
        resp.header("x-backend")
            .map(str::to_string)
            .context("no X-Backend header")
    }

    /// Whether the connection still works and reaches the same backend.
    pub fn still_on_its_backend(&mut self) -> bool {
        matches!(self.request(), Ok(b) if b == self.backend)
    }
}
