//! A small, real HTTP/1.1 backend for tests and the demo lab.
//!
//! It answers every request with `200`, an `X-Backend: <name>` header and a
//! body that echoes the request head, so a test sees which backend served it
//! and what the proxy added. It runs on threads of this process, its socket
//! bound inside the namespace of the host it plays.

use crate::{http, netns};
use anyhow::{Context, Result};
use std::{
    io::{BufReader, ErrorKind, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

/// A running backend; stops when dropped.
pub struct Backend {
    name: String,
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Starts backend `name` listening on `addr` inside namespace `ns`
    /// (`None`: this process's namespace).
    pub fn start(name: &str, ns: Option<&str>, addr: SocketAddr) -> Result<Self> {
        let bind = move || TcpListener::bind(addr).with_context(|| format!("binding {addr}"));
        let listener = match ns {
            Some(ns) => netns::run_in(ns, bind)?,
            None => bind()?,
        };
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (name, requests, stop) = (name.to_string(), requests.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(&listener, &name, &requests, &stop))
        };
        Ok(Self {
            name: name.to_string(),
            addr,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    /// The backend's name, as sent in `X-Backend`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, name: &str, requests: &Arc<AtomicUsize>, stop: &AtomicBool) {
    // Non-blocking accept polled against the stop flag: dropping the
    // backend must not depend on a last connection arriving.
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (name, requests) = (name.to_string(), requests.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &name, &requests);
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve(stream: TcpStream, name: &str, requests: &AtomicUsize) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = http::read_message(&mut reader)? {
        requests.fetch_add(1, Ordering::Relaxed);
        let mut body = format!("{}\n", req.start);
        for (k, v) in &req.headers {
            body.push_str(&format!("{k}: {v}\n"));
        }
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let resp = format!(
            "HTTP/1.1 200 OK\r\nX-Backend: {name}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        writer.write_all(resp.as_bytes())?;
        if close {
            break;
        }
    }
    Ok(())
}
