//! TLS at both ends of the proxy: termination on listeners (certificates
//! chosen by SNI, minimum version, ALPN) and TLS towards upstream pools
//! (SNI, verification, trusted CAs).

use crate::config::{TlsTermination, TlsVersion, UpstreamTls};
use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use pingora::{
    listeners::{TlsAccept, tls::TlsSettings},
    prelude::HttpPeer,
    protocols::tls::TlsRef,
    proxy::Session,
    tls::{
        ext,
        pkey::{PKey, Private},
        ssl::{NameType, SslVersion},
        x509::X509,
    },
};
use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    net::SocketAddr,
    path::Path,
    sync::Arc,
};

/// One certificate chain and its key, ready to hand to a handshake.
struct Identity {
    chain: Vec<X509>,
    key: PKey<Private>,
}

/// The certificates of one listener and the SNI names that select them.
///
/// Exact names win over wildcards; a wildcard `*.example.com` covers exactly
/// one label (`a.example.com`, not `example.com` nor `a.b.example.com`), as
/// in RFC 6125. No SNI, or a name nothing covers, gets the first certificate.
pub struct SniCertificates {
    identities: Vec<Identity>,
    exact: HashMap<String, usize>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, usize>,
}

impl SniCertificates {
    /// Loads the files of a checked configuration.
    pub fn load(tls: &TlsTermination) -> Result<Self> {
        let mut out = Self {
            identities: Vec::new(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for (i, c) in tls.certificates.iter().enumerate() {
            out.identities.push(Identity {
                chain: read_chain(&c.cert)?,
                key: PKey::private_key_from_pem(&read(&c.key)?)
                    .with_context(|| format!("parsing key {}", c.key.display()))?,
            });
            for name in &c.server_names {
                match name.strip_prefix("*.") {
                    Some(base) => out.wildcard.entry(base.to_string()).or_insert(i),
                    None => out.exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        if out.identities.is_empty() {
            bail!("a TLS listener needs at least one certificate");
        }
        Ok(out)
    }

    /// The index of the certificate for SNI `name` (`None`: no SNI).
    pub fn select(&self, name: Option<&str>) -> usize {
        let Some(name) = name else { return 0 };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&name) {
            return i;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent).copied())
            .unwrap_or(0)
    }
}

#[async_trait]
impl TlsAccept for SniCertificates {
    /// Runs in the middle of each handshake, once the ClientHello (and so
    /// the SNI) is known: installs the chosen chain and key.
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let i = self.select(ssl.servername(NameType::HOST_NAME));
        let Some(id) = self.identities.get(i) else {
            return;
        };
        let Some((leaf, intermediates)) = id.chain.split_first() else {
            return;
        };
        // A failure here leaves the handshake without a certificate, and
        // OpenSSL then fails it with an alert: the client sees an error.
        let installed = ext::ssl_use_certificate(ssl, leaf)
            .and_then(|()| ext::ssl_use_private_key(ssl, &id.key))
            .and_then(|()| {
                intermediates
                    .iter()
                    .try_for_each(|c| ext::ssl_add_chain_cert(ssl, c))
            });
        if let Err(e) = installed {
            tracing::warn!("installing TLS certificate {i}: {e}");
        }
    }
}

/// Pingora TLS settings for a listener: SNI certificate selection, the
/// minimum version, and ALPN (`h2` preferred when `http2`, else HTTP/1.1
/// only).
pub fn listener_settings(tls: &TlsTermination, http2: bool) -> Result<TlsSettings> {
    for c in tls.certificates.iter().filter(|c| c.expired) {
        tracing::warn!(
            certificate = %c.cert.display(),
            not_after = %c.not_after,
            "serving an EXPIRED certificate: clients will refuse it"
        );
    }
    let certs = SniCertificates::load(tls)?;
    let mut settings = TlsSettings::with_callbacks(Box::new(certs))
        .map_err(|e| anyhow::anyhow!("building the TLS acceptor: {e}"))?;
    let min = match tls.min_version {
        TlsVersion::Tls12 => SslVersion::TLS1_2,
        TlsVersion::Tls13 => SslVersion::TLS1_3,
    };
    settings
        .set_min_proto_version(Some(min))
        .context("setting the minimum TLS version")?;
    if http2 {
        settings.enable_h2();
    }
    Ok(settings)
}

/// A pool's upstream TLS, loaded.
pub struct UpstreamTlsPeer {
    sni: String,
    verify: bool,
    ca: Option<Arc<Box<[X509]>>>,
    /// Pingora reuses upstream connections by a peer hash that leaves out
    /// the trusted CAs; this key (a digest of them) keeps a connection that
    /// one pool verified with its CAs from serving a pool that trusts others.
    group_key: u64,
}

impl UpstreamTlsPeer {
    /// Loads the CA file of a checked configuration.
    pub fn load(tls: &UpstreamTls) -> Result<Self> {
        let ca = match &tls.ca {
            Some(path) => Some(read_chain(path)?),
            None => None,
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for c in ca.iter().flatten() {
            c.to_der()?.hash(&mut hasher);
        }
        Ok(Self {
            sni: tls.sni.clone().unwrap_or_default(),
            verify: tls.verify,
            group_key: if ca.is_some() { hasher.finish() } else { 0 },
            ca: ca.map(|c| Arc::new(c.into_boxed_slice())),
        })
    }

    /// A TLS peer for backend `addr`.
    pub fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, true, self.sni.clone());
        // Pingora checks the chain and, through `verify_hostname`, that the
        // certificate names the SNI (validation insists on an SNI when
        // verifying: without one Pingora would skip verification).
        peer.options.verify_cert = self.verify;
        peer.options.verify_hostname = self.verify;
        peer.options.ca = self.ca.clone();
        peer.group_key = self.group_key;
        peer
    }
}

/// A peer for backend `addr`: plain, or with the pool's TLS.
pub fn upstream_peer(tls: Option<&UpstreamTlsPeer>, addr: SocketAddr) -> HttpPeer {
    match tls {
        Some(tls) => tls.peer(addr),
        None => HttpPeer::new(addr, false, String::new()),
    }
}

/// `https` when the client connected over TLS, else `http`
/// (for X-Forwarded-Proto).
pub fn downstream_scheme(session: &Session) -> &'static str {
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    if tls { "https" } else { "http" }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn read_chain(path: &Path) -> Result<Vec<X509>> {
    let chain = X509::stack_from_pem(&read(path)?)
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if chain.is_empty() {
        bail!("{} has no PEM certificate", path.display());
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certs(names: &[&[&str]]) -> SniCertificates {
        let mut s = SniCertificates {
            identities: Vec::new(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for (i, list) in names.iter().enumerate() {
            for n in *list {
                match n.strip_prefix("*.") {
                    Some(b) => s.wildcard.insert(b.to_string(), i),
                    None => s.exact.insert(n.to_string(), i),
                };
            }
        }
        s
    }

    #[test]
    fn selection() {
        let s = certs(&[
            &["a.example.com"],
            &["*.b.example.com", "b.example.com"],
            &["x.b.example.com"],
        ]);
        assert_eq!(s.select(None), 0);
        assert_eq!(s.select(Some("a.example.com")), 0);
        assert_eq!(s.select(Some("B.Example.com.")), 1);
        assert_eq!(s.select(Some("y.b.example.com")), 1);
        assert_eq!(s.select(Some("x.b.example.com")), 2, "exact beats wildcard");
        assert_eq!(s.select(Some("z.y.b.example.com")), 0, "one label only");
        assert_eq!(s.select(Some("unknown.org")), 0);
    }
}
