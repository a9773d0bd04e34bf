//! Rate limits shared by every edge through Redis: one atomic script call
//! per request for all its Redis limits (the same GCRA as the local counters, on
//! Redis's clock), over one multiplexed connection that reconnects by
//! itself, within a timeout.

use super::ratelimit::Decision;
use crate::config::gateway::{RateLimitPolicy, RedisConfig};
use sha2::{Digest, Sha256};
use std::{sync::Arc, time::Duration};

/// GCRA in microseconds of the server's clock, for every limit of a
/// request at once. KEYS[i]: a counter; ARGV[2i-1], ARGV[2i]: its limit
/// and window (µs). Returns one {allowed, remaining, retry_after µs, reset
/// µs} per key. Either every counter takes the request or none does; a
/// key expires when its state would be fresh anyway.
const SCRIPT: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out, nexts, refused = {}, {}, false
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  local step = window / limit
  local tau = window - step
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local used = tat - now
  if used > tau + 0.5 then
    refused = true
    out[i] = {0, 0, math.ceil(used - tau), math.ceil(used)}
  else
    local nxt = tat + step
    nexts[i] = nxt
    out[i] = {1, math.floor((window - (nxt - now)) / step + 0.000001), 0, math.ceil(nxt - now)}
  end
end
if not refused then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], string.format('%.0f', nexts[i]), 'PX', math.ceil((nexts[i] - now) / 1000) + 1)
  end
end
return out
"#;

/// Why Redis gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting or the call failed.
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// No connection yet, and another request is making one.
    #[error("not connected yet")]
    NotConnected,
    /// The script answered for another number of limits.
    #[error("{0} answers for {1} limits")]
    Answer(usize, usize),
}

/// The shared store.
pub struct RedisStore {
    config: RedisConfig,
    client: redis::Client,
    conn: Arc<arc_swap::ArcSwapOption<redis::aio::ConnectionManager>>,
    /// Held by the one task connecting; requests that find it taken do
    /// not queue behind it.
    connecting: Arc<tokio::sync::Mutex<()>>,
    script: redis::Script,
}

/// How long a connection attempt made in the background may take (a
/// request's own attempt has only the request's `timeout`).
const BACKGROUND_CONNECT: Duration = Duration::from_secs(2);

impl RedisStore {
    /// A store for `config`; it starts connecting on `handle` at once.
    pub fn new(config: RedisConfig, handle: &tokio::runtime::Handle) -> anyhow::Result<Self> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| anyhow::anyhow!("gateway.redis.url: {e}"))?;
        let store = Self {
            config,
            client,
            conn: Arc::default(),
            connecting: Arc::default(),
            script: redis::Script::new(SCRIPT),
        };
        let (client, slot, lock) = (
            store.client.clone(),
            Arc::clone(&store.conn),
            Arc::clone(&store.connecting),
        );
        let timeout = store.config.timeout;
        handle.spawn(async move {
            let _one = lock.lock().await;
            if let Ok(c) = connect(client, timeout, BACKGROUND_CONNECT).await {
                slot.store(Some(Arc::new(c)));
            }
        });
        Ok(store)
    }

    /// Its settings.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The connection; when there is none yet, one request at a time
    /// tries to connect and the others fail at once (the caller's
    /// `on_error` decides), rather than wait behind it.
    async fn connection(&self) -> Result<redis::aio::ConnectionManager, StoreError> {
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        let Ok(_one) = self.connecting.try_lock() else {
            return Err(StoreError::NotConnected);
        };
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        let c = connect(
            self.client.clone(),
            self.config.timeout,
            self.config.timeout,
        )
        .await?;
        self.conn.store(Some(Arc::new(c.clone())));
        Ok(c)
    }

    /// One request against every limit in `batch` (counter prefix, key,
    /// limit), in one atomic call; the decisions in the same order.
    pub async fn check_many(
        &self,
        batch: &[(&str, &[u8], &RateLimitPolicy)],
    ) -> Result<Vec<Decision>, StoreError> {
        let timeout = self.config.timeout;
        tokio::time::timeout(timeout, self.check_inner(batch))
            .await
            .map_err(|_| StoreError::Timeout(timeout))?
    }

    async fn check_inner(
        &self,
        batch: &[(&str, &[u8], &RateLimitPolicy)],
    ) -> Result<Vec<Decision>, StoreError> {
        let mut conn = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        for (prefix, key, p) in batch {
            // A digest, not the raw value: a header value could be long,
            // and every edge must name the same key the same way.
            let digest = Sha256::digest(key);
            let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            let window_us = u64::try_from(p.window.as_micros()).unwrap_or(u64::MAX);
            invocation
                .key(format!("{prefix}{name}"))
                .arg(p.limit)
                .arg(window_us);
        }
        let answers: Vec<(i64, i64, i64, i64)> = invocation.invoke_async(&mut conn).await?;
        if answers.len() != batch.len() {
            return Err(StoreError::Answer(answers.len(), batch.len()));
        }
        let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(answers
            .into_iter()
            .map(|(allowed, remaining, retry_us, reset_us)| Decision {
                allowed: allowed == 1,
                remaining: u64::try_from(remaining).unwrap_or(0),
                reset: us(reset_us),
                retry_after: us(retry_us),
            })
            .collect())
    }
}

/// A connection that reconnects by itself (a `ConnectionManager`), whose
/// calls take at most `timeout`.
async fn connect(
    client: redis::Client,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<redis::aio::ConnectionManager, StoreError> {
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(0);
    Ok(redis::aio::ConnectionManager::new_with_config(client, cfg).await?)
}
