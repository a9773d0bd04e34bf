//! Real TLS for tests: a certificate authority that issues certificates made
//! on the spot, a client that reports what the server presented, and a
//! small HTTPS backend.

use crate::http::{self, Message};
use anyhow::{Context, Result, bail};
use openssl::{
    asn1::Asn1Time,
    bn::{BigNum, MsbOption},
    ec::{EcGroup, EcKey},
    hash::MessageDigest,
    nid::Nid,
    pkey::{PKey, Private},
    ssl::{SslAcceptor, SslConnector, SslMethod, SslStream, SslVerifyMode, SslVersion},
    x509::{
        X509, X509NameBuilder,
        extension::{BasicConstraints, KeyUsage, SubjectAlternativeName},
    },
};
use std::{
    io::{BufReader, ErrorKind, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

fn new_key() -> Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

fn serial() -> Result<openssl::asn1::Asn1Integer> {
    let mut bn = BigNum::new()?;
    bn.rand(64, MsbOption::MAYBE_ZERO, false)?;
    Ok(bn.to_asn1_integer()?)
}

/// A certificate authority made for one test.
pub struct Ca {
    /// Its self-signed certificate.
    pub cert: X509,
    key: PKey<Private>,
}

/// A certificate and its key.
pub struct Issued {
    /// The leaf certificate.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
}

impl Ca {
    /// A new CA named `cn`.
    pub fn new(cn: &str) -> Result<Self> {
        let key = new_key()?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
        let name = name.build();
        let mut b = X509::builder()?;
        b.set_version(2)?;
        b.set_serial_number(&*serial()?)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        b.set_pubkey(&key)?;
        b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
        b.set_not_after(&*Asn1Time::days_from_now(30)?)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        b.sign(&key, MessageDigest::sha256())?;
        Ok(Self {
            cert: b.build(),
            key,
        })
    }

    /// Issues an intermediate CA named `cn`, signed by this one.
    pub fn intermediate(&self, cn: &str) -> Result<Ca> {
        let key = new_key()?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
        let name = name.build();
        let mut b = X509::builder()?;
        b.set_version(2)?;
        b.set_serial_number(&*serial()?)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(self.cert.subject_name())?;
        b.set_pubkey(&key)?;
        b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
        b.set_not_after(&*Asn1Time::days_from_now(30)?)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        b.sign(&self.key, MessageDigest::sha256())?;
        Ok(Ca {
            cert: b.build(),
            key,
        })
    }

    /// Issues a server certificate with common name `cn` and the DNS names
    /// `dns` in its subjectAltName.
    pub fn issue(&self, cn: &str, dns: &[&str]) -> Result<Issued> {
        let key = new_key()?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
        let name = name.build();
        let mut b = X509::builder()?;
        b.set_version(2)?;
        b.set_serial_number(&*serial()?)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(self.cert.subject_name())?;
        b.set_pubkey(&key)?;
        b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
        b.set_not_after(&*Asn1Time::days_from_now(30)?)?;
        if !dns.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for d in dns {
                san.dns(d);
            }
            let ext = san.build(&b.x509v3_context(Some(&self.cert), None))?;
            b.append_extension(ext)?;
        }
        b.sign(&self.key, MessageDigest::sha256())?;
        Ok(Issued {
            cert: b.build(),
            key,
        })
    }

    /// Writes the CA certificate to `dir/<name>.pem`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.cert.to_pem()?)?;
        Ok(path)
    }
}

impl Issued {
    /// Writes `dir/<name>.pem` (certificate) and `dir/<name>.key`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
        self.write_chain(dir, name, &[])
    }

    /// Like [`Issued::write`], with `chain` (intermediates) after the leaf.
    pub fn write_chain(
        &self,
        dir: &Path,
        name: &str,
        chain: &[&X509],
    ) -> Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        let mut pem = self.cert.to_pem()?;
        for c in chain {
            pem.extend_from_slice(&c.to_pem()?);
        }
        std::fs::write(&cert, pem)?;
        std::fs::write(&key, self.key.private_key_to_pem_pkcs8()?)?;
        Ok((cert, key))
    }
}

/// The common name of a certificate's subject.
pub fn common_name(cert: &X509) -> Option<String> {
    cert.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
}

/// The DNS names of a certificate's subjectAltName.
pub fn dns_names(cert: &X509) -> Vec<String> {
    cert.subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// How a test client connects.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions<'a> {
    /// SNI to send; `None` sends none.
    pub sni: Option<&'a str>,
    /// Highest TLS version offered; `None`: the library's highest.
    pub max_version: Option<SslVersion>,
    /// ALPN protocols offered, e.g. `["h2", "http/1.1"]`.
    pub alpn: &'a [&'a str],
}

/// Connects to `addr` over TLS, trusting only `ca`. The chain is verified;
/// the name is not (tests look at the certificate the server chose).
pub fn connect(addr: SocketAddr, ca: &X509, o: &ClientOptions<'_>) -> Result<SslStream<TcpStream>> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    let mut store = openssl::x509::store::X509StoreBuilder::new()?;
    store.add_cert(ca.clone())?;
    b.set_verify_cert_store(store.build())?;
    b.set_verify(SslVerifyMode::PEER);
    if let Some(v) = o.max_version {
        b.set_max_proto_version(Some(v))?;
    }
    if !o.alpn.is_empty() {
        let mut wire = Vec::new();
        for p in o.alpn {
            wire.push(p.len() as u8);
            wire.extend_from_slice(p.as_bytes());
        }
        b.set_alpn_protos(&wire)?;
    }
    let connector = b.build();
    let mut config = connector.configure()?;
    config.set_verify_hostname(false);
    config.set_use_server_name_indication(o.sni.is_some());
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let stream = config
        .connect(o.sni.unwrap_or("ignored.invalid"), tcp)
        .map_err(|e| anyhow::anyhow!("TLS handshake with {addr}: {e}"))?;
    Ok(stream)
}

/// The certificate the server presented.
pub fn served_certificate(s: &SslStream<TcpStream>) -> Result<X509> {
    s.ssl()
        .peer_certificate()
        .context("the server presented no certificate")
}

/// Sends `GET path` with `Host: host` over `s` and reads the response.
pub fn get(mut s: SslStream<TcpStream>, host: &str, path: &str) -> Result<Message> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut r = BufReader::new(s);
    http::read_message(&mut r)?.context("closed without a response")
}

/// A small HTTPS backend: answers every request `200` with body `body`.
pub struct TlsBackend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handshakes: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl TlsBackend {
    /// Starts on a free loopback port with certificate `id`.
    pub fn start(id: &Issued, body: &str) -> Result<Self> {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
        b.set_certificate(&id.cert)?;
        b.set_private_key(&id.key)?;
        b.check_private_key()?;
        let acceptor = Arc::new(b.build());
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let body = body.to_string();
        let thread = {
            let (stop, handshakes) = (stop.clone(), handshakes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((tcp, _)) => {
                            let (acceptor, handshakes, body) =
                                (acceptor.clone(), handshakes.clone(), body.clone());
                            std::thread::spawn(move || {
                                let _ = serve_tls(&acceptor, tcp, &handshakes, &body);
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Ok(Self {
            addr,
            stop,
            handshakes,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Completed TLS handshakes so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::Relaxed)
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_tls(
    acceptor: &SslAcceptor,
    tcp: TcpStream,
    handshakes: &AtomicUsize,
    body: &str,
) -> Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let stream = match acceptor.accept(tcp) {
        Ok(s) => s,
        Err(e) => bail!("TLS accept: {e}"),
    };
    handshakes.fetch_add(1, Ordering::Relaxed);
    let mut r = BufReader::new(stream);
    while let Some(req) = http::read_message(&mut r)? {
        let sni = r
            .get_ref()
            .ssl()
            .servername(openssl::ssl::NameType::HOST_NAME);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Tls-Sni: {}\r\n\r\n{body}",
            body.len(),
            sni.unwrap_or("-")
        );
        r.get_mut().write_all(head.as_bytes())?;
        if req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            break;
        }
    }
    Ok(())
}
