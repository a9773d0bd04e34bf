//! The service manager's readiness protocol (`sd_notify`): `READY=1` once
//! every listener accepts, `RELOADING=1` … `READY=1` around a reload,
//! `STOPPING=1` when the drain starts, and a `STATUS=` line, so that
//! `Type=notify` units (config/systemd/edge.service) start dependants only
//! when edge serves, and `systemctl status` says what it does.
//!
//! The protocol is one datagram to the socket in `$NOTIFY_SOCKET` (a path,
//! or `@name` in the abstract namespace); without the variable every call
//! does nothing. It is a few lines, so no crate.

use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

/// Set once `READY=1` was sent: until then a reload says nothing (a
/// SIGHUP during start-up must not make a starting edge look ready).
static READY: AtomicBool = AtomicBool::new(false);

/// Says `READY=1` (with `extra` lines first, such as `MAINPID=`), and
/// lets reloads speak from now on.
pub fn ready(extra: &str) {
    READY.store(true, Ordering::SeqCst);
    notify(&format!("{extra}READY=1\nSTATUS=serving"));
}

/// `RELOADING=1` before a reload, once ready.
pub fn reloading() {
    if READY.load(Ordering::SeqCst) {
        notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }
}

/// `READY=1` after a reload (applied or refused), once ready.
pub fn reloaded(generation: u64) {
    if READY.load(Ordering::SeqCst) {
        notify(&format!("READY=1\nSTATUS=serving generation {generation}"));
    }
}

/// Sends `state` (newline-separated `KEY=VALUE` lines) to the service
/// manager, if there is one; a failure is logged, never fatal (edge serves
/// whether or not anyone listens).
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&socket.to_string_lossy(), state) {
        tracing::warn!("telling the service manager {state:?}: {e}");
    }
}

/// Sends `state` to `socket` (a path, or `@name` for an abstract socket).
pub fn send(socket: &str, state: &str) -> std::io::Result<()> {
    let addr = match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(Path::new(socket))?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// Whether something listens on TCP `addr` in this network namespace,
/// from `/proc/net/tcp{,6}`: looking, unlike connecting, neither opens a
/// connection a listener would count, log or wait on (a PROXY-protocol
/// listener waits for its header) nor holds the port.
pub fn listening(addr: std::net::SocketAddr) -> bool {
    let file = if addr.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    std::fs::read_to_string(file).is_ok_and(|t| table_has_listener(&t, addr))
}

/// Whether `table` (the text of /proc/net/tcp or tcp6) has a socket in
/// LISTEN state (`0A`) bound to `addr`.
pub fn table_has_listener(table: &str, addr: std::net::SocketAddr) -> bool {
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(_), Some(local), Some(_), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        // By address and port only: an IPv6 listener's scope id or flow
        // label is not in the table.
        state == "0A"
            && parse_local(local).is_some_and(|a| a.ip() == addr.ip() && a.port() == addr.port())
    })
}

/// `0100007F:1F90` → 127.0.0.1:8080. The kernel prints each 32-bit word
/// of the address as a native-endian integer.
fn parse_local(text: &str) -> Option<std::net::SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// `MONOTONIC_USEC=` now, which `RELOADING=1` must carry.
pub fn monotonic_usec() -> u64 {
    crate::dataplane::monotonic_ns() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_found_in_the_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n\
   1: 0100007F:1F91 0100007F:9C40 01 00000000:00000000 00:00000000 00000000\n";
        if cfg!(target_endian = "little") {
            assert!(table_has_listener(table, "127.0.0.1:8080".parse().unwrap()));
            // Established, not listening.
            assert!(!table_has_listener(
                table,
                "127.0.0.1:8081".parse().unwrap()
            ));
            assert!(!table_has_listener(
                table,
                "127.0.0.2:8080".parse().unwrap()
            ));
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(listening(l.local_addr().unwrap()));
        let free = l.local_addr().unwrap();
        drop(l);
        assert!(!listening(free));
        let l6 = std::net::TcpListener::bind("[::1]:0").unwrap();
        assert!(listening(l6.local_addr().unwrap()));
    }

    #[test]
    fn a_datagram_reaches_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("edge-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1\nSTATUS=serving").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        std::fs::remove_dir_all(&dir).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("edge-notify-test-{}", std::process::id());
        let abstract_listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        send(&format!("@{name}"), "STOPPING=1").unwrap();
        let n = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
