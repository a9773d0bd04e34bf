//! JWT verification: keys from the file and from a JWKS document that is
//! fetched, cached, refreshed in the background and fetched again
//! (rate-limited) when a token names an unknown `kid`.
//!
//! Each key verifies exactly the algorithms it was made for: an HS256
//! token is never checked against an RSA public key (the algorithm
//! confusion attack), and `alg: none` does not parse.

use super::{Generation, Rejection, auth::CredentialSource, fetch};
use crate::{
    config::gateway::{JwksSource, JwtAlgorithm as Alg, JwtAuth, KeyMaterial, TokenSource},
    metrics,
};
use arc_swap::ArcSwap;
use jsonwebtoken::{DecodingKey, Validation, errors::ErrorKind, jwk};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use sha2::Digest;
use std::{
    sync::{Arc, Weak},
    time::Instant,
};

/// Verified tokens remembered per route.
pub const VERIFIED_TOKENS: usize = 10_000;
/// Longest a verified token is taken on trust without a new signature
/// check (its `exp` and `nbf` are checked every time; one a JWKS key
/// verified is checked again once the JWKS changes).
pub const VERIFIED_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// Most keys kept from one JWKS document.
pub const MAX_JWKS_KEYS: usize = 64;

/// Builds the verification key of `material` for `alg`.
pub fn decoding_key(alg: Alg, material: &KeyMaterial) -> Result<DecodingKey, String> {
    let r = match (material, alg) {
        (KeyMaterial::Secret(s), Alg::HS256 | Alg::HS384 | Alg::HS512) => {
            DecodingKey::from_secret(s)
        }
        (KeyMaterial::Pem(p), Alg::RS256 | Alg::RS384 | Alg::RS512)
        | (KeyMaterial::Pem(p), Alg::PS256 | Alg::PS384 | Alg::PS512) => {
            DecodingKey::from_rsa_pem(p)
        }
        (KeyMaterial::Pem(p), Alg::ES256 | Alg::ES384) => DecodingKey::from_ec_pem(p),
        (KeyMaterial::Pem(p), Alg::EdDSA) => DecodingKey::from_ed_pem(p),
        _ => return Err("this key material does not go with this algorithm".into()),
    };
    r.map_err(|e| e.to_string())
}

/// A key and the algorithms it may verify.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    algs: Vec<Alg>,
    key: DecodingKey,
    /// Whether it came from the JWKS (which may drop it).
    from_set: bool,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Not a JWT, or a header or payload that does not parse.
    Malformed,
    /// `exp` has passed.
    Expired,
    /// `nbf` is still ahead.
    NotYetValid,
    /// `iss` is not accepted.
    Issuer,
    /// No accepted `aud`.
    Audience,
    /// The signature does not verify.
    Signature,
    /// No key has this `kid`.
    UnknownKid,
    /// The token's algorithm is not one its key verifies.
    Algorithm,
    /// A claim edge requires is missing (`exp`).
    MissingClaim,
    /// The consumer claim names no consumer.
    UnknownConsumer,
    /// The key set could not be fetched yet: edge's fault, not the
    /// client's.
    KeysUnavailable,
}

impl JwtError {
    /// The metric reason.
    pub fn reason(self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::Issuer => "issuer",
            JwtError::Audience => "audience",
            JwtError::Signature => "signature",
            JwtError::UnknownKid => "unknown_kid",
            JwtError::Algorithm => "algorithm",
            JwtError::MissingClaim => "missing_claim",
            JwtError::UnknownConsumer => "unknown_consumer",
            JwtError::KeysUnavailable => "keys_unavailable",
        }
    }

    fn description(self) -> &'static str {
        match self {
            JwtError::Malformed => "The token is malformed",
            JwtError::Expired => "The token has expired",
            JwtError::NotYetValid => "The token is not valid yet",
            JwtError::Issuer => "The token's issuer is not accepted",
            JwtError::Audience => "The token's audience is not accepted",
            JwtError::Signature => "The token's signature does not verify",
            JwtError::UnknownKid => "The token's key is unknown",
            JwtError::Algorithm => "The token's algorithm does not match its key",
            JwtError::MissingClaim => "The token lacks a required claim",
            JwtError::UnknownConsumer => "The token names no known consumer",
            JwtError::KeysUnavailable => "The keys to check the token are not available",
        }
    }

    /// The answer: 401 with an RFC 6750 `invalid_token` challenge (503
    /// when edge could not get the keys).
    pub fn rejection(self, realm: &str, others: &[String]) -> Rejection {
        if self == JwtError::KeysUnavailable {
            return Rejection::new(503, "auth", self.reason(), self.description())
                .with("retry-after", "5")
                .no_strike();
        }
        let mut r = Rejection::new(401, "auth", self.reason(), self.description());
        r.headers.push((
            "www-authenticate".into(),
            format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                self.description()
            ),
        ));
        for c in others.iter().filter(|c| !c.starts_with("Bearer")) {
            r.headers.push(("www-authenticate".into(), c.clone()));
        }
        r
    }
}

/// A verified token.
#[derive(Clone)]
pub struct Verified {
    /// Its claims.
    pub claims: Arc<Map<String, Value>>,
    /// The `kid` it named.
    pub kid: Option<String>,
    /// The JWKS version whose key verified it, if a JWKS key did: once the
    /// set changes, the token is checked again.
    set_version: Option<u64>,
}

/// One route's JWT verification.
pub struct Verifier {
    keys: Vec<Key>,
    key_set: Option<Arc<KeySet>>,
    /// One validation per algorithm: jsonwebtoken wants every algorithm
    /// a validation lists to be of its key's family.
    validations: Vec<(Alg, Validation)>,
    /// Tokens verified lately, by digest: a client sends the same token
    /// for its whole life, and an RSA verification costs ~100 µs.
    verified: parking_lot::Mutex<lru::LruCache<[u8; 32], (Instant, Verified)>>,
    leeway: u64,
    consumer_claim: Option<String>,
    forward_claims: Vec<(String, String)>,
    hide: bool,
}

impl Verifier {
    /// Compiles `j`; a JWKS source is shared through `generation`.
    pub fn new(j: &JwtAuth, generation: &Generation) -> anyhow::Result<Self> {
        Self::with_key_set(j, j.jwks.as_ref().map(|s| generation.key_set(s)))
    }

    fn with_key_set(j: &JwtAuth, key_set: Option<Arc<KeySet>>) -> anyhow::Result<Self> {
        let keys = j
            .keys
            .iter()
            .map(|k| {
                Ok(Key {
                    kid: k.kid.clone(),
                    algs: vec![k.algorithm],
                    key: decoding_key(k.algorithm, &k.material).map_err(anyhow::Error::msg)?,
                    from_set: false,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut base = Validation::new(Alg::RS256);
        base.leeway = j.leeway.as_secs();
        base.validate_nbf = true;
        base.validate_exp = true;
        // jsonwebtoken checks `iss` and `aud` only when the token has
        // them: a configured issuer or audience must also be required, or
        // a token without the claim would pass.
        let mut required = vec!["exp"];
        if j.issuers.is_empty() {
            base.iss = None;
        } else {
            base.set_issuer(&j.issuers);
            required.push("iss");
        }
        if j.audiences.is_empty() {
            base.validate_aud = false;
        } else {
            base.set_audience(&j.audiences);
            required.push("aud");
        }
        base.set_required_spec_claims(&required);
        let validations = [
            Alg::HS256,
            Alg::HS384,
            Alg::HS512,
            Alg::RS256,
            Alg::RS384,
            Alg::RS512,
            Alg::PS256,
            Alg::PS384,
            Alg::PS512,
            Alg::ES256,
            Alg::ES384,
            Alg::EdDSA,
        ]
        .into_iter()
        .map(|alg| {
            let mut v = base.clone();
            v.algorithms = vec![alg];
            (alg, v)
        })
        .collect();
        Ok(Self {
            keys,
            key_set,
            validations,
            verified: parking_lot::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(VERIFIED_TOKENS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            leeway: j.leeway.as_secs(),
            consumer_claim: j.consumer_claim.clone(),
            forward_claims: j.forward_claims.clone(),
            hide: j.hide_credentials,
        })
    }

    /// The claim naming the consumer.
    pub fn consumer_claim(&self) -> Option<&str> {
        self.consumer_claim.as_deref()
    }

    /// Claims copied to headers.
    pub fn forward_claims(&self) -> &[(String, String)] {
        &self.forward_claims
    }

    /// Whether the token is removed before proxying.
    pub fn hide_credentials(&self) -> bool {
        self.hide
    }

    /// Verifies `token`.
    pub async fn verify(&self, token: &str) -> Result<Verified, JwtError> {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let hit = {
            let mut cache = self.verified.lock();
            match cache.get(&digest) {
                Some((until, v)) if Instant::now() < *until => Some(v.clone()),
                Some(_) => {
                    cache.pop(&digest);
                    None
                }
                None => None,
            }
        };
        let current = self.key_set.as_ref().map(|k| k.version());
        if let Some(v) = hit
            && (v.set_version.is_none() || v.set_version == current)
        {
            self.check_times(&v.claims)?;
            return Ok(v);
        }
        let verified = self.verify_signature(token).await?;
        self.verified
            .lock()
            .put(digest, (Instant::now() + VERIFIED_FOR, verified.clone()));
        Ok(verified)
    }

    /// `exp` and `nbf` of a token verified before, against the clock now.
    fn check_times(&self, claims: &Map<String, Value>) -> Result<(), JwtError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let exp = claims.get("exp").and_then(Value::as_u64);
        if exp.is_none_or(|e| e.saturating_add(self.leeway) < now) {
            return Err(JwtError::Expired);
        }
        if claims
            .get("nbf")
            .and_then(Value::as_u64)
            .is_some_and(|n| n > now.saturating_add(self.leeway))
        {
            return Err(JwtError::NotYetValid);
        }
        Ok(())
    }

    async fn verify_signature(&self, token: &str) -> Result<Verified, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
                JwtError::Algorithm
            }
            _ => JwtError::Malformed,
        })?;
        let kid = header.kid.clone();
        // A token's kid picks the keys with that kid; keys given without
        // one are tried when no key has it.
        let named: Vec<Key> = self
            .keys
            .iter()
            .filter(|k| kid.is_some() && k.kid == kid)
            .cloned()
            .collect();
        let mut candidates = if named.is_empty() {
            self.keys
                .iter()
                .filter(|k| k.kid.is_none())
                .cloned()
                .collect()
        } else {
            named
        };
        if let Some(set) = &self.key_set
            && (candidates.is_empty()
                || kid.is_some() && candidates.iter().all(|k| k.kid.is_none()))
        {
            candidates.extend(set.lookup(kid.as_deref()).await?);
        }
        if candidates.is_empty() {
            return Err(if kid.is_some() {
                JwtError::UnknownKid
            } else {
                JwtError::Signature
            });
        }
        candidates.retain(|k| k.algs.contains(&header.alg));
        if candidates.is_empty() {
            return Err(JwtError::Algorithm);
        }
        // The set's version before its keys are read: a change after that
        // makes the next request check again.
        let set_version = self.key_set.as_ref().map(|k| k.version());
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err(JwtError::Algorithm);
        };
        let mut last = JwtError::Signature;
        for k in &candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, validation) {
                Ok(data) => {
                    return Ok(Verified {
                        claims: Arc::new(data.claims),
                        kid: kid.clone(),
                        set_version: k.from_set.then_some(set_version).flatten(),
                    });
                }
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::InvalidSignature => JwtError::Signature,
                        ErrorKind::ExpiredSignature => JwtError::Expired,
                        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                        ErrorKind::InvalidIssuer => JwtError::Issuer,
                        ErrorKind::InvalidAudience => JwtError::Audience,
                        ErrorKind::MissingRequiredClaim(c) if c == "iss" => JwtError::Issuer,
                        ErrorKind::MissingRequiredClaim(c) if c == "aud" => JwtError::Audience,
                        ErrorKind::MissingRequiredClaim(_) => JwtError::MissingClaim,
                        ErrorKind::InvalidAlgorithm => JwtError::Algorithm,
                        _ => JwtError::Malformed,
                    };
                    // Another key with the same kid may still verify it;
                    // a bad claim is bad whatever the key.
                    if last != JwtError::Signature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

/// The first token found in the places `from` lists.
pub fn find_token(
    head: &pingora::http::RequestHeader,
    from: &[TokenSource],
) -> Option<(String, CredentialSource)> {
    for source in from {
        match source {
            TokenSource::Header => {
                // No Authorization: the next source may still hold one.
                let v = head
                    .headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                if let Some((scheme, token)) = v.and_then(|v| v.trim().split_once(' '))
                    && scheme.eq_ignore_ascii_case("bearer")
                {
                    return Some((
                        token.trim().to_string(),
                        CredentialSource::Header("authorization".into()),
                    ));
                }
            }
            TokenSource::Cookie(name) => {
                if let Some(token) = crate::proxy::headers::cookie(&head.headers, name) {
                    return Some((token.to_string(), CredentialSource::Cookie(name.clone())));
                }
            }
            TokenSource::Query(name) => {
                if let Some(token) = crate::proxy::router::query_param(head.uri.query(), name) {
                    return Some((token, CredentialSource::Query(name.clone())));
                }
            }
        }
    }
    None
}

/// The keys of one JWKS document, kept fresh by a background task that
/// stops when the last route using them is gone.
pub struct KeySet {
    source: JwksSource,
    keys: ArcSwap<Vec<Key>>,
    /// Whether a fetch ever succeeded.
    loaded: std::sync::atomic::AtomicBool,
    /// When a fetch last started (for `min_refetch`).
    last_attempt: Mutex<Option<Instant>>,
    /// One fetch at a time; requests that need one wait for it.
    fetching: tokio::sync::Mutex<()>,
    connector: pingora::connectors::http::Connector,
    task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Bumped whenever a fetch brings a different document.
    version: std::sync::atomic::AtomicU64,
    /// The digest of the document the keys came from.
    digest: Mutex<[u8; 32]>,
}

impl Drop for KeySet {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().take() {
            t.abort();
        }
    }
}

impl KeySet {
    /// Starts fetching `source` on `handle`, at once and every `refresh`.
    pub fn start(source: JwksSource, handle: &tokio::runtime::Handle) -> Arc<Self> {
        let set = Arc::new(Self {
            source,
            keys: ArcSwap::from_pointee(Vec::new()),
            loaded: std::sync::atomic::AtomicBool::new(false),
            last_attempt: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            connector: pingora::connectors::http::Connector::new(None),
            task: Mutex::new(None),
            version: std::sync::atomic::AtomicU64::new(0),
            digest: Mutex::new([0; 32]),
        });
        let weak = Arc::downgrade(&set);
        let task = handle.spawn(refresh_loop(weak));
        *set.task.lock() = Some(task.abort_handle());
        set
    }

    /// Keys for a token naming `kid` (or none): fetches the set again
    /// when the `kid` is unknown and the last fetch is older than
    /// `min_refetch`.
    async fn lookup(&self, kid: Option<&str>) -> Result<Vec<Key>, JwtError> {
        let pick = |keys: &[Key]| -> Vec<Key> {
            keys.iter()
                .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
                .cloned()
                .collect()
        };
        let found = pick(&self.keys.load());
        if !found.is_empty() || kid.is_none() {
            if found.is_empty() && !self.loaded() {
                return Err(JwtError::KeysUnavailable);
            }
            return Ok(found);
        }
        let due = self
            .last_attempt
            .lock()
            .is_none_or(|t| t.elapsed() >= self.source.min_refetch);
        if due {
            let _one = self.fetching.lock().await;
            // Someone else may have fetched while this one waited.
            let still_due = self
                .last_attempt
                .lock()
                .is_none_or(|t| t.elapsed() >= self.source.min_refetch);
            if still_due {
                self.fetch("unknown_kid").await;
            }
        }
        let found = pick(&self.keys.load());
        if found.is_empty() && !self.loaded() {
            return Err(JwtError::KeysUnavailable);
        }
        Ok(found)
    }

    /// The version of the keys (changes when the document does).
    fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    fn loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn fetch(&self, why: &'static str) -> bool {
        *self.last_attempt.lock() = Some(Instant::now());
        let result = fetch::get(&self.connector, &self.source.url, self.source.timeout).await;
        let parsed = match result {
            Ok(body) => parse_jwks(&body)
                .map(|keys| (keys, sha2::Sha256::digest(&body).into()))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match parsed {
            Ok((keys, digest)) => {
                tracing::debug!(url = %self.source.url, keys = keys.len(), why, "JWKS fetched");
                self.keys.store(Arc::new(keys));
                let mut last = self.digest.lock();
                if *last != digest {
                    *last = digest;
                    self.version
                        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                }
                drop(last);
                self.loaded
                    .store(true, std::sync::atomic::Ordering::Release);
                metrics::jwks_fetch(true);
                true
            }
            Err(e) => {
                // The keys fetched before stay: a key set server that is
                // down must not lock every caller out.
                tracing::warn!(url = %self.source.url, why, "JWKS fetch failed: {e}");
                metrics::jwks_fetch(false);
                false
            }
        }
    }
}

async fn refresh_loop(weak: Weak<KeySet>) {
    loop {
        let (ok, refresh, retry) = {
            let Some(set) = weak.upgrade() else { return };
            let _one = set.fetching.lock().await;
            let ok = set.fetch("refresh").await;
            (ok, set.source.refresh, set.source.min_refetch)
        };
        // After a failure, try again sooner than the refresh period.
        let wait = if ok { refresh } else { retry.min(refresh) };
        tokio::time::sleep(wait).await;
    }
}

/// The usable keys of a JWKS document: keys that do not parse, are
/// symmetric (`oct`: a secret fetched over the network is no secret) or
/// are for encryption are left out.
fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    let mut out = Vec::new();
    for item in list.iter().take(MAX_JWKS_KEYS) {
        let Ok(j) = serde_json::from_value::<jwk::Jwk>(item.clone()) else {
            continue;
        };
        if j.common.public_key_use == Some(jwk::PublicKeyUse::Encryption) {
            continue;
        }
        let family: Vec<Alg> = match &j.algorithm {
            jwk::AlgorithmParameters::RSA(_) => vec![
                Alg::RS256,
                Alg::RS384,
                Alg::RS512,
                Alg::PS256,
                Alg::PS384,
                Alg::PS512,
            ],
            jwk::AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                jwk::EllipticCurve::P256 => vec![Alg::ES256],
                jwk::EllipticCurve::P384 => vec![Alg::ES384],
                _ => continue,
            },
            jwk::AlgorithmParameters::OctetKeyPair(okp)
                if okp.curve == jwk::EllipticCurve::Ed25519 =>
            {
                vec![Alg::EdDSA]
            }
            _ => continue,
        };
        let algs = match j.common.key_algorithm {
            Some(named) => match key_alg(named) {
                Some(a) if family.contains(&a) => vec![a],
                _ => continue,
            },
            None => family,
        };
        let Ok(key) = DecodingKey::from_jwk(&j) else {
            continue;
        };
        out.push(Key {
            kid: j.common.key_id.clone(),
            algs,
            key,
            from_set: true,
        });
    }
    if out.is_empty() && !list.is_empty() {
        return Err("no usable signature key".into());
    }
    Ok(out)
}

fn key_alg(a: jwk::KeyAlgorithm) -> Option<Alg> {
    use jwk::KeyAlgorithm as K;
    Some(match a {
        K::RS256 => Alg::RS256,
        K::RS384 => Alg::RS384,
        K::RS512 => Alg::RS512,
        K::PS256 => Alg::PS256,
        K::PS384 => Alg::PS384,
        K::PS512 => Alg::PS512,
        K::ES256 => Alg::ES256,
        K::ES384 => Alg::ES384,
        K::EdDSA => Alg::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::gateway::JwtKey;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier(issuers: &[&str], audiences: &[&str]) -> Verifier {
        let j = JwtAuth {
            keys: vec![JwtKey {
                kid: None,
                algorithm: Alg::HS256,
                material: KeyMaterial::Secret(SECRET.to_vec()),
            }],
            jwks: None,
            issuers: issuers.iter().map(|s| s.to_string()).collect(),
            audiences: audiences.iter().map(|s| s.to_string()).collect(),
            leeway: std::time::Duration::ZERO,
            from: vec![TokenSource::Header],
            consumer_claim: None,
            forward_claims: vec![],
            hide_credentials: false,
        };
        Verifier::with_key_set(&j, None).unwrap()
    }

    fn token(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Alg::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap()
    }

    fn far() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600
    }

    #[tokio::test]
    async fn an_hmac_token_keyed_with_the_rsa_public_key_and_alg_none_are_refused() {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let public = rsa.public_key_to_pem().unwrap();
        let private = rsa.private_key_to_pem().unwrap();
        let j = JwtAuth {
            keys: vec![JwtKey {
                kid: None,
                algorithm: Alg::RS256,
                material: KeyMaterial::Pem(public.clone()),
            }],
            jwks: None,
            issuers: vec![],
            audiences: vec![],
            leeway: std::time::Duration::ZERO,
            from: vec![TokenSource::Header],
            consumer_claim: None,
            forward_claims: vec![],
            hide_credentials: false,
        };
        let v = Verifier::with_key_set(&j, None).unwrap();
        let claims = serde_json::json!({"exp": far()});
        let good = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Alg::RS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(&private).unwrap(),
        )
        .unwrap();
        assert_eq!(v.verify(&good).await.err(), None);
        let confused = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Alg::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&public).unwrap(),
        )
        .unwrap();
        assert_eq!(v.verify(&confused).await.err(), Some(JwtError::Algorithm));
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        );
        assert!(v.verify(&none).await.is_err());
        assert!(v.verify("not-a-token").await.is_err());
    }

    #[tokio::test]
    async fn a_remembered_token_is_still_checked_for_exp_and_nbf() {
        let v = verifier(&[], &[]);
        let t = token(serde_json::json!({"exp": far()}));
        assert_eq!(v.verify(&t).await.err(), None);
        // From the cache the second time: the same claims.
        let again = v.verify(&t).await.ok().map(|v| v.claims);
        assert_eq!(
            again.and_then(|c| c.get("exp").cloned()),
            Some(far().into())
        );
        let now = far() - 600;
        let past = serde_json::json!({"exp": now - 10})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(v.check_times(&past), Err(JwtError::Expired));
        let early = serde_json::json!({"exp": now + 100, "nbf": now + 50})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(v.check_times(&early), Err(JwtError::NotYetValid));
    }

    #[tokio::test]
    async fn a_configured_issuer_or_audience_must_be_in_the_token() {
        let v = verifier(&["https://issuer"], &["api"]);
        let ok = token(serde_json::json!({"exp": far(), "iss": "https://issuer", "aud": "api"}));
        assert_eq!(v.verify(&ok).await.err(), None);
        let no_iss = token(serde_json::json!({"exp": far(), "aud": "api"}));
        assert_eq!(v.verify(&no_iss).await.err(), Some(JwtError::Issuer));
        let no_aud = token(serde_json::json!({"exp": far(), "iss": "https://issuer"}));
        assert_eq!(v.verify(&no_aud).await.err(), Some(JwtError::Audience));
        let no_exp = token(serde_json::json!({"iss": "https://issuer", "aud": "api"}));
        assert_eq!(v.verify(&no_exp).await.err(), Some(JwtError::MissingClaim));
        let other = token(serde_json::json!({"exp": far(), "iss": "https://other", "aud": "api"}));
        assert_eq!(v.verify(&other).await.err(), Some(JwtError::Issuer));
    }

    #[test]
    fn symmetric_and_encryption_keys_in_a_jwks_are_ignored() {
        let doc = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"s"},
            {"kty":"EC","crv":"P-256","use":"enc","kid":"e",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","crv":"P-256","kid":"ok",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        let keys = parse_jwks(doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ok"));
        assert_eq!(keys[0].algs, vec![Alg::ES256]);
    }

    #[test]
    fn a_named_algorithm_outside_the_key_family_drops_the_key() {
        let doc = br#"{"keys":[{"kty":"EC","crv":"P-256","alg":"HS256","kid":"x",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        assert!(parse_jwks(doc).is_err());
    }
}
