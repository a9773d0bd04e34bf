//! OAuth2 token introspection (RFC 7662): an opaque bearer token is sent
//! to the authorization server, whose answer says whether it is active
//! and what it carries. Answers are cached (bounded) until the token's
//! `exp`, and never longer than `cache_for`, so a revoked token is
//! refused within that time.

use super::fetch;
use crate::config::gateway::IntrospectionAuth;
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::{
    num::NonZeroUsize,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// What the server said of a token.
pub enum Answer {
    /// Active, with the answer's members (scope, sub, username, ...).
    Active(Map<String, Value>),
    /// Not active (expired, revoked, unknown).
    Inactive,
}

/// Why the server could not say.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectionError {
    /// The request failed.
    #[error("introspection request: {0}")]
    Fetch(#[from] fetch::FetchError),
    /// The answer is not the JSON RFC 7662 describes.
    #[error("introspection answer: {0}")]
    Answer(String),
}

/// A route's introspection client.
pub struct Introspector {
    cfg: IntrospectionAuth,
    authorization: String,
    connector: pingora::connectors::http::Connector,
    cache: Mutex<lru::LruCache<[u8; 32], Cached>>,
    /// Inactive answers, apart: a flood of junk tokens must not evict the
    /// good ones.
    inactive: Mutex<lru::LruCache<[u8; 32], Instant>>,
}

/// Inactive answers remembered.
const INACTIVE_ENTRIES: usize = 4096;
/// Largest answer kept in the cache, in bytes of JSON.
const MAX_CACHED_ANSWER: usize = 16 * 1024;

/// A cached answer: until when it may be reused, and the members of an
/// active token (`None`: inactive).
type Cached = (Instant, Option<Map<String, Value>>);

/// How long an inactive answer is reused: a flood of one bad token costs
/// the server one request per this time.
const INACTIVE_FOR: Duration = Duration::from_secs(5);

impl Introspector {
    /// A client for `cfg`.
    pub fn new(cfg: &IntrospectionAuth) -> Self {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(&cfg.client_id),
            form_encode(&cfg.client_secret)
        ));
        Self {
            authorization: format!("Basic {basic}"),
            connector: pingora::connectors::http::Connector::new(None),
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(cfg.cache_entries).unwrap_or(NonZeroUsize::MIN),
            )),
            inactive: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(INACTIVE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
            cfg: cfg.clone(),
        }
    }

    /// Whether the token is removed before proxying.
    pub fn hide_credentials(&self) -> bool {
        self.cfg.hide_credentials
    }

    /// The member naming the consumer.
    pub fn consumer_claim(&self) -> Option<&str> {
        self.cfg.consumer_claim.as_deref()
    }

    /// What the server says of `token` (from the cache when fresh).
    pub async fn check(&self, token: &str) -> Result<Answer, IntrospectionError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self
            .inactive
            .lock()
            .get(&key)
            .is_some_and(|until| Instant::now() < *until)
        {
            return Ok(Answer::Inactive);
        }
        if let Some((until, Some(m))) = self.cache.lock().get(&key)
            && Instant::now() < *until
        {
            return Ok(Answer::Active(m.clone()));
        }
        let big = |m: &Map<String, Value>| {
            serde_json::to_vec(m).map_or(true, |v| v.len() > MAX_CACHED_ANSWER)
        };
        let form = format!("token={}&token_type_hint=access_token", form_encode(token));
        let body = fetch::post_form(
            &self.connector,
            &self.cfg.url,
            &[("authorization", self.authorization.clone())],
            form,
            self.cfg.timeout,
        )
        .await?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| IntrospectionError::Answer(format!("not JSON: {e}")))?;
        let Value::Object(members) = doc else {
            return Err(IntrospectionError::Answer("not a JSON object".into()));
        };
        let active = members
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let exp = members.get("exp").and_then(Value::as_u64);
        if active && exp.is_some_and(|e| e <= now_unix) {
            // The server says active but the token has expired: trust
            // the clock over a stale answer.
            return Ok(Answer::Inactive);
        }
        let until = if active {
            let left = exp.map_or(self.cfg.cache_for, |e| {
                Duration::from_secs(e.saturating_sub(now_unix)).min(self.cfg.cache_for)
            });
            Instant::now() + left
        } else {
            Instant::now() + INACTIVE_FOR.min(self.cfg.cache_for)
        };
        if !active {
            self.inactive.lock().put(key, until);
            return Ok(Answer::Inactive);
        }
        if !big(&members) {
            self.cache.lock().put(key, (until, Some(members.clone())));
        }
        Ok(Answer::Active(members))
    }
}

/// `application/x-www-form-urlencoded` encoding of `s`.
fn form_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, crate::transform::query::UNRESERVED).to_string()
}
