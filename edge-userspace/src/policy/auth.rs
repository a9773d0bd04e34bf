//! Authentication: who is calling, from an API key, a JWT or HTTP Basic,
//! and the identity headers the upstream gets.
//!
//! The credential types a route accepts are tried in a fixed order: API
//! key, bearer token (a JWT when it has a JWT's three parts and JWT is
//! accepted, else an opaque token for introspection), Basic. The first type whose credential is present in the
//! request decides: a present but wrong credential is refused, never
//! passed over for the next type. A request with none becomes the
//! anonymous consumer if the route names one, else gets 401 with a
//! challenge per accepted type.

use super::{Generation, Outcome, Rejection, Request, jwt};
use crate::config::gateway::{AuthPolicy, Consumer};
use crate::proxy::router::{query_component, query_param};
use base64::Engine;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, Instant},
};

/// A consumer as requests see it.
#[derive(Debug)]
pub struct ConsumerRt {
    /// Its name.
    pub name: Arc<str>,
    /// Its groups.
    pub groups: Vec<String>,
    /// `X-Consumer-Groups`'s value.
    groups_header: String,
    /// Its usage metrics.
    pub stats: crate::metrics::ConsumerStats,
}

/// One generation's consumers, indexed by each credential.
#[derive(Default)]
pub struct Consumers {
    by_name: HashMap<String, Arc<ConsumerRt>>,
    by_key: HashMap<[u8; 32], Arc<ConsumerRt>>,
    by_user: HashMap<String, (Arc<ConsumerRt>, Arc<str>)>,
}

impl Consumers {
    /// Indexes `list`.
    pub fn new(list: &[Consumer]) -> Self {
        let mut out = Self::default();
        for c in list {
            let name: Arc<str> = Arc::from(c.name.as_str());
            let rt = Arc::new(ConsumerRt {
                stats: crate::metrics::ConsumerStats::new(&name),
                name,
                groups: c.groups.clone(),
                groups_header: c.groups.join(","),
            });
            for k in &c.api_keys {
                out.by_key.insert(*k, Arc::clone(&rt));
            }
            if let Some(b) = &c.basic {
                out.by_user.insert(
                    b.username.clone(),
                    (Arc::clone(&rt), Arc::from(b.password_hash.as_str())),
                );
            }
            out.by_name.insert(c.name.clone(), rt);
        }
        out
    }

    /// The consumer named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<ConsumerRt>> {
        self.by_name.get(name).cloned()
    }
}

/// Verified Basic credentials kept for a while, so that a client sending
/// the same password on every request does not cost a bcrypt or argon2
/// run (tens of milliseconds of CPU) each time.
pub struct VerifiedCache {
    entries: Mutex<lru::LruCache<[u8; 32], Instant>>,
}

/// How long a verified Basic credential is trusted without a new check.
const VERIFIED_FOR: Duration = Duration::from_secs(300);
/// Verified Basic credentials remembered.
const VERIFIED_ENTRIES: usize = 10_000;
/// Password checks running at once; more wait (a flood of wrong
/// passwords cannot take every blocking thread).
const MAX_CHECKS: usize = 4;

static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CHECKS);

impl VerifiedCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            entries: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(VERIFIED_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    fn key(user: &str, password: &str, hash: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [user, password, hash] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    fn fresh(&self, key: &[u8; 32]) -> bool {
        self.entries
            .lock()
            .get(key)
            .is_some_and(|at| at.elapsed() < VERIFIED_FOR)
    }

    fn remember(&self, key: [u8; 32]) {
        self.entries.lock().put(key, Instant::now());
    }
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks `password` against a bcrypt or argon2 `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::PasswordVerifier;
        return argon2::PasswordHash::new(hash).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
    }
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// A route's compiled authentication.
pub struct Authenticator {
    p: AuthPolicy,
    consumers: Arc<Consumers>,
    anonymous: Option<Arc<ConsumerRt>>,
    jwt: Option<jwt::Verifier>,
    introspector: Option<Arc<super::introspect::Introspector>>,
    verified: Arc<VerifiedCache>,
    challenges: Vec<String>,
    /// Every place this route reads a credential from.
    locations: Vec<CredentialSource>,
}

/// A credential found in a request.
enum Presented {
    ApiKey(String),
    Jwt(String),
    Opaque(String),
    Basic(String, String),
    BadBasic,
}

impl Authenticator {
    /// Compiles `p` against `generation`'s consumers.
    pub fn new(p: &AuthPolicy, generation: &Generation) -> anyhow::Result<Self> {
        let anonymous = match &p.anonymous {
            Some(name) => Some(
                generation
                    .consumers
                    .get(name)
                    .ok_or_else(|| anyhow::anyhow!("anonymous consumer {name} is not defined"))?,
            ),
            None => None,
        };
        let realm = &p.realm;
        let mut challenges = Vec::new();
        if p.api_key.is_some() {
            challenges.push(format!("Key realm=\"{realm}\""));
        }
        if p.jwt.is_some() || p.introspection.is_some() {
            challenges.push(format!("Bearer realm=\"{realm}\""));
        }
        if p.basic.is_some() {
            challenges.push(format!("Basic realm=\"{realm}\", charset=\"UTF-8\""));
        }
        let mut locations = Vec::new();
        if let Some(k) = &p.api_key {
            locations.push(CredentialSource::Header(k.header.clone()));
            if let Some(q) = &k.query {
                locations.push(CredentialSource::Query(q.clone()));
            }
        }
        if p.basic.is_some() || p.introspection.is_some() {
            locations.push(CredentialSource::Header("authorization".into()));
        }
        for source in p.jwt.iter().flat_map(|j| &j.from) {
            locations.push(match source {
                crate::config::gateway::TokenSource::Header => {
                    CredentialSource::Header("authorization".into())
                }
                crate::config::gateway::TokenSource::Cookie(c) => {
                    CredentialSource::Cookie(c.clone())
                }
                crate::config::gateway::TokenSource::Query(q) => CredentialSource::Query(q.clone()),
            });
        }
        locations.dedup();
        Ok(Self {
            locations,
            jwt: p
                .jwt
                .as_ref()
                .map(|j| jwt::Verifier::new(j, generation))
                .transpose()?,
            introspector: p.introspection.as_ref().map(|i| generation.introspector(i)),
            p: p.clone(),
            consumers: Arc::clone(&generation.consumers),
            anonymous,
            verified: generation.basic_cache(),
            challenges,
        })
    }

    fn unauthorized(&self, reason: &'static str, message: &str) -> Rejection {
        let mut r = Rejection::new(401, "auth", reason, message);
        for c in &self.challenges {
            r.headers.push(("www-authenticate".into(), c.clone()));
        }
        r
    }

    fn find(&self, req: &Request<'_>) -> Option<(Presented, CredentialSource)> {
        let head = req.head;
        if let Some(k) = &self.p.api_key {
            if let Some(v) = head.headers.get(k.header.as_str()) {
                let key = v.to_str().unwrap_or("").trim().to_string();
                return Some((
                    Presented::ApiKey(key),
                    CredentialSource::Header(k.header.clone()),
                ));
            }
            if let Some(q) = &k.query
                && let Some(v) = query_param(head.uri.query(), q)
            {
                return Some((Presented::ApiKey(v), CredentialSource::Query(q.clone())));
            }
        }
        if let Some(j) = &self.p.jwt
            && let Some((token, source)) = jwt::find_token(head, &j.from)
            && (self.introspector.is_none() || token.split('.').count() == 3)
        {
            return Some((Presented::Jwt(token), source));
        }
        if self.introspector.is_some()
            && let Some((token, source)) =
                jwt::find_token(head, &[crate::config::gateway::TokenSource::Header])
        {
            return Some((Presented::Opaque(token), source));
        }
        if self.p.basic.is_some()
            && let Some(v) = head.headers.get(http::header::AUTHORIZATION)
            && let Ok(v) = v.to_str()
            && let Some((scheme, rest)) = v.trim().split_once(' ')
            && scheme.eq_ignore_ascii_case("basic")
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let presented = match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((u, p)) => Presented::Basic(u.to_string(), p.to_string()),
                None => Presented::BadBasic,
            };
            return Some((presented, CredentialSource::Header("authorization".into())));
        }
        None
    }

    /// Finds and checks the request's credential; on success `out` holds
    /// the consumer and the upstream's identity headers.
    pub async fn authenticate(
        &self,
        req: &Request<'_>,
        out: &mut Outcome,
    ) -> Result<(), Rejection> {
        let ids = &self.p.identity_headers;
        // The client's own copies never reach the upstream, nor headers
        // edge fills from a token's claims.
        for h in [&ids.consumer, &ids.groups, &ids.credential, &ids.anonymous] {
            out.upstream_remove.push(h.clone());
        }
        if let Some(v) = &self.jwt {
            out.upstream_remove
                .extend(v.forward_claims().iter().map(|(_, h)| h.clone()));
        }
        out.secret_query
            .extend(self.locations.iter().filter_map(|l| match l {
                CredentialSource::Query(q) => Some(q.clone()),
                _ => None,
            }));
        let found = self.find(req);
        // Credentials edge did not check (another type than the one that
        // decided, or none at all) never reach the upstream: it could take
        // an unchecked token for one the gateway vouched for.
        let used = found.as_ref().map(|(_, source)| source.clone());
        for l in &self.locations {
            if Some(l) != used.as_ref() {
                remove_credential(l.clone(), out);
            }
        }
        let Some((presented, source)) = found else {
            let Some(anon) = &self.anonymous else {
                // The usual first step of a client that answers challenges.
                return Err(self
                    .unauthorized("missing", "No credentials found in request")
                    .no_strike());
            };
            out.consumer = Some(Arc::clone(anon));
            out.anonymous = true;
            out.upstream_set
                .push((ids.consumer.clone(), anon.name.to_string()));
            out.upstream_set
                .push((ids.anonymous.clone(), "true".into()));
            return Ok(());
        };
        let (consumer, credential, hide) = match presented {
            Presented::ApiKey(key) => {
                let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
                let Some(c) = self.consumers.by_key.get(&digest) else {
                    return Err(
                        self.unauthorized("invalid_key", "Invalid authentication credentials")
                    );
                };
                let hide = self.p.api_key.as_ref().is_some_and(|k| k.hide_credentials);
                (Some(Arc::clone(c)), "api_key".to_string(), hide)
            }
            Presented::Basic(user, password) => {
                let Some((c, hash)) = self.consumers.by_user.get(&user) else {
                    let dummy: Arc<str> = Arc::from(unknown_user_hash());
                    let _ = self.check_password(&user, &password, &dummy).await;
                    return Err(
                        self.unauthorized("invalid_password", "Invalid authentication credentials")
                    );
                };
                if !self.check_password(&user, &password, hash).await? {
                    return Err(
                        self.unauthorized("invalid_password", "Invalid authentication credentials")
                    );
                }
                let hide = self.p.basic.as_ref().is_some_and(|b| b.hide_credentials);
                (Some(Arc::clone(c)), format!("basic:{user}"), hide)
            }
            Presented::BadBasic => {
                return Err(self.unauthorized("malformed", "Malformed Basic credentials"));
            }
            Presented::Opaque(token) => {
                let Some(intro) = &self.introspector else {
                    return Err(self.unauthorized("missing", "No credentials found in request"));
                };
                let members = match intro.check(&token).await {
                    Ok(super::introspect::Answer::Active(m)) => m,
                    Ok(super::introspect::Answer::Inactive) => {
                        let mut r = self.unauthorized("inactive", "The token is not active");
                        r.headers.retain(|(_, v)| !v.starts_with("Bearer"));
                        r.headers.push((
                            "www-authenticate".into(),
                            format!(
                                "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"The token is not active\"",
                                self.p.realm
                            ),
                        ));
                        return Err(r);
                    }
                    Err(e) => {
                        tracing::warn!("token introspection failed: {e}");
                        return Err(Rejection::new(
                            503,
                            "auth",
                            "introspection_unavailable",
                            "The token cannot be checked right now",
                        )
                        .with("retry-after", "5")
                        .no_strike());
                    }
                };
                let consumer = self.consumer_by_claim(intro.consumer_claim(), &members)?;
                out.claims = Some(Arc::new(members));
                (
                    consumer,
                    "introspection".to_string(),
                    intro.hide_credentials(),
                )
            }
            Presented::Jwt(token) => {
                let Some(verifier) = &self.jwt else {
                    return Err(self.unauthorized("missing", "No credentials found in request"));
                };
                let verified = verifier
                    .verify(&token)
                    .await
                    .map_err(|e| e.rejection(&self.p.realm, &self.challenges))?;
                let consumer =
                    self.consumer_by_claim(verifier.consumer_claim(), &verified.claims)?;
                for (claim, header) in verifier.forward_claims() {
                    if let Some(value) = verified.claims.get(claim).and_then(claim_text) {
                        out.upstream_remove.push(header.clone());
                        out.upstream_set.push((header.clone(), value));
                    }
                }
                // The kid is the client's text: only a plain one goes
                // into a header.
                let credential = match &verified.kid {
                    Some(kid) if kid.len() <= 64 && kid.bytes().all(|b| b.is_ascii_graphic()) => {
                        format!("jwt:{kid}")
                    }
                    _ => "jwt".to_string(),
                };
                out.claims = Some(verified.claims);
                let hide = verifier.hide_credentials();
                (consumer, credential, hide)
            }
        };
        if hide {
            remove_credential(source, out);
        }
        if let Some(c) = &consumer {
            out.upstream_set
                .push((ids.consumer.clone(), c.name.to_string()));
            if !c.groups_header.is_empty() {
                out.upstream_set
                    .push((ids.groups.clone(), c.groups_header.clone()));
            }
        }
        out.upstream_set.push((ids.credential.clone(), credential));
        out.consumer = consumer;
        Ok(())
    }

    /// The consumer a token's `claim` names (none without a claim to look
    /// at); a claim naming no consumer is refused.
    fn consumer_by_claim(
        &self,
        claim: Option<&str>,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Arc<ConsumerRt>>, Rejection> {
        let Some(claim) = claim else {
            return Ok(None);
        };
        let name = claims.get(claim).and_then(|v| v.as_str());
        match name.and_then(|n| self.consumers.get(n)) {
            Some(c) => Ok(Some(c)),
            None => Err(jwt::JwtError::UnknownConsumer.rejection(&self.p.realm, &self.challenges)),
        }
    }

    /// Whether `password` is `user`'s; `Err` when no check could run in
    /// time (every checker busy).
    async fn check_password(
        &self,
        user: &str,
        password: &str,
        hash: &Arc<str>,
    ) -> Result<bool, Rejection> {
        let key = VerifiedCache::key(user, password, hash);
        if self.verified.fresh(&key) {
            return Ok(true);
        }
        // Slow on purpose: off the request threads, a few at a time, and a
        // request that cannot get a checker soon is told so rather than
        // queued behind a flood of wrong passwords.
        let busy = || {
            Rejection::new(
                503,
                "auth",
                "busy",
                "Credentials cannot be checked right now",
            )
            .with("retry-after", "1")
            .no_strike()
        };
        let permit = match tokio::time::timeout(CHECK_WAIT, CHECKS.acquire()).await {
            Ok(Ok(p)) => p,
            _ => return Err(busy()),
        };
        let (password, hash2) = (password.to_string(), Arc::clone(hash));
        // The permit goes with the check: a client that leaves does not
        // free a checker that is still busy.
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_password(&password, &hash2)
        })
        .await
        .unwrap_or(false);
        if ok {
            self.verified.remember(key);
        }
        Ok(ok)
    }
}

/// How long a Basic check waits for a free checker.
const CHECK_WAIT: Duration = Duration::from_secs(1);

/// A bcrypt hash checked for users that do not exist, so that an unknown
/// user takes as long to refuse as a wrong password.
fn unknown_user_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("edge-unknown-user", 10).unwrap_or_default())
}

/// Where a credential was found, to remove it with `hide_credentials`.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// A header (lower-case name).
    Header(String),
    /// A query parameter.
    Query(String),
    /// A cookie.
    Cookie(String),
}

fn remove_credential(source: CredentialSource, out: &mut Outcome) {
    match source {
        CredentialSource::Header(h) => out.upstream_remove.push(h),
        CredentialSource::Query(q) => out.query_remove.push(q),
        CredentialSource::Cookie(c) => out.cookie_remove.push(c),
    }
}

/// A claim's value as header text: strings as they are, arrays of
/// strings space-separated, other values as JSON.
fn claim_text(v: &serde_json::Value) -> Option<String> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_string()) => items
            .iter()
            .filter_map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    http::HeaderValue::from_str(&text).ok().map(|_| text)
}

/// `query` without the parameters named in `names`; `None` when none is
/// left.
pub fn remove_query_params(query: &str, names: &[String]) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
            let k = query_component(k);
            !names.contains(&k)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// `path?query` with the values of the parameters in `names` replaced by
/// `REDACTED` (for the access log).
pub fn redact_query(target: &str, names: &[String]) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let k = pair.split_once('=').map_or(pair, |(k, _)| k);
            if names.contains(&query_component(k)) {
                format!("{k}=REDACTED")
            } else {
                pair.to_string()
            }
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_query_are_redacted_for_the_log() {
        let names = vec!["apikey".to_string()];
        assert_eq!(
            redact_query("/a?x=1&apikey=s3cret&api%6Bey=2", &names),
            "/a?x=1&apikey=REDACTED&api%6Bey=REDACTED"
        );
        assert_eq!(redact_query("/a", &names), "/a");
    }

    #[test]
    fn query_parameters_are_found_decoded_and_removed() {
        assert_eq!(
            query_param(Some("a=1&apikey=s%20x"), "apikey").as_deref(),
            Some("s x")
        );
        assert_eq!(query_param(Some("a=1"), "apikey"), None);
        let names = vec!["apikey".to_string()];
        assert_eq!(
            remove_query_params("a=1&apikey=2&b", &names).as_deref(),
            Some("a=1&b")
        );
        assert_eq!(remove_query_params("api%6Bey=2", &names), None);
    }

    #[test]
    fn passwords_check_against_bcrypt_and_argon2() {
        let b = bcrypt::hash("s3cret", 4).unwrap();
        assert!(verify_password("s3cret", &b));
        assert!(!verify_password("nope", &b));
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let a = argon2::Argon2::default()
            .hash_password(b"s3cret", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("s3cret", &a));
        assert!(!verify_password("nope", &a));
        assert!(!verify_password("s3cret", "plain"));
    }
}
