//! A bound on requests in flight per key (per route by default).

use super::{Generation, Outcome, Rejection, Request};
use crate::config::gateway::{ConcurrencyPolicy, LimitKey};
use parking_lot::Mutex;
use std::{collections::HashMap, sync::Arc};

/// Requests in flight by key; an entry exists only while its count is
/// above zero, and the table holds at most its capacity.
pub struct Table {
    counts: Mutex<HashMap<String, u32>>,
    capacity: usize,
}

impl Table {
    /// An empty table of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            counts: Mutex::new(HashMap::new()),
            capacity,
        }
    }
}

/// A compiled bound.
pub struct Bound {
    key: LimitKey,
    max: u32,
    route: Arc<str>,
    scope: crate::config::gateway::Scope,
    table: Arc<Table>,
}

/// Holds one place until dropped (the request's end).
pub struct Guard {
    table: Arc<Table>,
    key: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock();
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl Bound {
    /// Compiles `p` for `route` of `listener`.
    pub fn new(
        listener: &str,
        route: &str,
        p: &ConcurrencyPolicy,
        generation: &Generation,
    ) -> Self {
        Self {
            key: p.key.clone(),
            max: p.max,
            route: Arc::from(route),
            scope: p.scope,
            table: generation.concurrency_table(listener, route, p.scope),
        }
    }

    /// Takes a place for the request, or refuses it with 429.
    pub fn enter(&self, req: &Request<'_>, out: &Outcome) -> Result<Guard, Rejection> {
        let ip = || {
            format!(
                "i:{}",
                req.client
                    .map(super::client::limit_address)
                    .unwrap_or_default()
            )
        };
        let key = match &self.key {
            LimitKey::Consumer => out.limit_consumer().map_or_else(ip, |c| format!("c:{c}")),
            LimitKey::ClientIp => ip(),
            LimitKey::Route => match self.scope {
                crate::config::gateway::Scope::Listener => "r:*".to_string(),
                crate::config::gateway::Scope::Route => format!("r:{}", self.route),
            },
            // At most 128 bytes of the value: the table's size must not
            // depend on what clients send.
            LimitKey::Header(h) => {
                let v = req
                    .head
                    .headers
                    .get(h.as_str())
                    .map_or(&b""[..], |v| v.as_bytes());
                format!("h:{}", String::from_utf8_lossy(&v[..v.len().min(128)]))
            }
        };
        let busy = || {
            Rejection::new(
                429,
                "concurrency",
                "exceeded",
                "Too many requests in flight",
            )
            .with("retry-after", "1")
        };
        let mut counts = self.table.counts.lock();
        let full = counts.len() >= self.table.capacity;
        match counts.get_mut(&key) {
            Some(n) if *n >= self.max => return Err(busy()),
            Some(n) => *n += 1,
            None if full => return Err(busy()),
            None => {
                counts.insert(key.clone(), 1);
            }
        }
        Ok(Guard {
            table: Arc::clone(&self.table),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(capacity: usize, max: u32, key: LimitKey) -> Bound {
        Bound {
            key,
            max,
            route: Arc::from("r"),
            scope: crate::config::gateway::Scope::Route,
            table: Arc::new(Table::new(capacity)),
        }
    }

    #[test]
    fn places_are_bounded_per_key_and_the_table_in_keys() {
        let head = pingora::http::RequestHeader::build("GET", b"/", None).unwrap();
        let req = |ip: &str| Request {
            head: &head,
            client: ip.parse().ok(),
        };
        let out = Outcome::default();
        let b = bound(2, 1, LimitKey::ClientIp);
        let a = b.enter(&req("192.0.2.1"), &out).unwrap();
        assert!(
            b.enter(&req("192.0.2.1"), &out).is_err(),
            "one place per key"
        );
        let _c = b.enter(&req("192.0.2.2"), &out).unwrap();
        // A flood of new keys finds the table full instead of growing it.
        for i in 3..100 {
            assert!(b.enter(&req(&format!("192.0.2.{i}")), &out).is_err());
        }
        assert_eq!(b.table.counts.lock().len(), 2);
        drop(a);
        assert_eq!(b.table.counts.lock().len(), 1, "an empty entry goes");
        assert!(b.enter(&req("192.0.2.1"), &out).is_ok());
    }
}
