//! TLS termination on listeners: certificates chosen by SNI from the
//! listener's current runtime (so a reload changes them for the next
//! handshake), minimum version, ALPN. TLS towards pools is in
//! [`crate::upstream::tls`].

use crate::{
    config::{TlsTermination, TlsVersion},
    runtime::ListenerRuntime,
};
use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::{
    listeners::{TlsAccept, tls::TlsSettings},
    protocols::tls::TlsRef,
    proxy::Session,
    tls::{
        ext,
        pkey::{PKey, Private},
        ssl::{NameType, SslVersion},
        x509::X509,
    },
};
use std::{collections::HashMap, path::Path, sync::Arc};

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
    /// Loads the files of a checked configuration, warning about expired
    /// certificates.
    pub fn load(tls: &TlsTermination) -> Result<Self> {
        for c in tls.certificates.iter().filter(|c| c.expired) {
            tracing::warn!(
                certificate = %c.cert.display(),
                not_after = %c.not_after,
                "serving an EXPIRED certificate: clients will refuse it"
            );
        }
        let mut out = Self {
            identities: Vec::new(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for (i, c) in tls.certificates.iter().enumerate() {
            let chain = read_chain(&c.cert)?;
            let key = PKey::private_key_from_pem(&read(&c.key)?)
                .with_context(|| format!("parsing key {}", c.key.display()))?;
            // The files were checked, but a renewal may have rewritten one
            // of them since: a pair that does not match would fail every
            // handshake, so it is refused here (the reload with it).
            let matches = chain
                .first()
                .and_then(|leaf| leaf.public_key().ok())
                .is_some_and(|public| public.public_eq(&key));
            if !matches {
                bail!(
                    "{} does not match the certificate in {} (was one of them rewritten \
                     since the check?)",
                    c.key.display(),
                    c.cert.display()
                );
            }
            out.identities.push(Identity { chain, key });
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

impl SniCertificates {
    /// Installs the certificate for the handshake's SNI into `ssl`.
    fn install(&self, ssl: &mut TlsRef) {
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

/// Picks each handshake's certificate from the listener's runtime as it is
/// when the handshake starts: a reload that changes certificates changes
/// them for the next handshake, with no restart.
struct CurrentCertificates(Arc<ArcSwap<ListenerRuntime>>);

#[async_trait]
impl TlsAccept for CurrentCertificates {
    /// Runs in the middle of each handshake, once the ClientHello (and so
    /// the SNI) is known: installs the chosen chain and key.
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let runtime = self.0.load();
        match &runtime.certificates {
            Some(certs) => certs.install(ssl),
            None => tracing::warn!(
                listener = %runtime.config.name,
                "TLS handshake on a listener whose runtime has no certificates"
            ),
        }
    }
}

/// Pingora TLS settings for a listener: SNI certificate selection from the
/// listener's current runtime, the minimum version, and ALPN (`h2`
/// preferred when `http2`, else HTTP/1.1 only).
pub fn listener_settings(
    tls: &TlsTermination,
    http2: bool,
    runtime: Arc<ArcSwap<ListenerRuntime>>,
) -> Result<TlsSettings> {
    let mut settings = TlsSettings::with_callbacks(Box::new(CurrentCertificates(runtime)))
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

/// `https` when the client connected over TLS, else `http`
/// (for X-Forwarded-Proto).
pub fn downstream_scheme(session: &Session) -> &'static str {
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    if tls { "https" } else { "http" }
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

pub(crate) fn read_chain(path: &Path) -> Result<Vec<X509>> {
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
