//! Each consumer's usage since edge started, for the admin API
//! (`GET /api/consumers`): requests by status class and body bytes.
//!
//! The metrics recorder has the same figures but cannot be read back, and
//! the per-generation handles ([`crate::metrics::ConsumerStats`]) start
//! afresh at each reload; these are kept by consumer name across reloads.
//! The table holds the consumers of the live configuration: a successful
//! reload drops those it removed ([`retain`]), so it is bounded by the
//! configuration's own bound on consumers.

use crate::metrics::STATUS_CLASSES;
use std::{
    collections::HashMap,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

/// One consumer's counters.
#[derive(Debug, Default)]
pub struct Usage {
    requests: [AtomicU64; STATUS_CLASSES.len()],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// What [`Usage`] holds, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// Requests by status class, in [`STATUS_CLASSES`] order.
    pub requests: [u64; STATUS_CLASSES.len()],
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
}

impl Usage {
    /// Counts one finished request of status class `class` (an index into
    /// [`STATUS_CLASSES`]).
    pub fn record(&self, class: usize, bytes_in: u64, bytes_out: u64) {
        if let Some(c) = self.requests.get(class) {
            c.fetch_add(1, Relaxed);
        }
        self.bytes_in.fetch_add(bytes_in, Relaxed);
        self.bytes_out.fetch_add(bytes_out, Relaxed);
    }

    /// The counters now.
    pub fn read(&self) -> Read {
        Read {
            requests: std::array::from_fn(|i| self.requests[i].load(Relaxed)),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
        }
    }
}

static TABLE: LazyLock<parking_lot::Mutex<HashMap<String, Arc<Usage>>>> =
    LazyLock::new(Default::default);

/// Consumer `name`'s counters, made on first use.
pub fn of(name: &str) -> Arc<Usage> {
    Arc::clone(TABLE.lock().entry(name.to_string()).or_default())
}

/// Consumer `name`'s counters, if it has any.
pub fn read(name: &str) -> Option<Read> {
    TABLE.lock().get(name).map(|u| u.read())
}

/// Keeps only the consumers named in `live`.
pub fn retain<'a>(live: impl IntoIterator<Item = &'a str>) {
    let keep: std::collections::HashSet<&str> = live.into_iter().collect();
    TABLE.lock().retain(|name, _| keep.contains(name.as_str()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_kept_by_name_until_the_consumer_goes() {
        let a = of("usage-test-a");
        a.record(1, 10, 20);
        a.record(4, 0, 5);
        // A later generation's handle is the same counters.
        of("usage-test-a").record(1, 1, 1);
        let r = read("usage-test-a").unwrap();
        assert_eq!((r.requests[1], r.requests[4]), (2, 1));
        assert_eq!((r.bytes_in, r.bytes_out), (11, 26));
        of("usage-test-b");
        retain(["usage-test-b"]);
        assert_eq!(read("usage-test-a"), None);
        assert!(read("usage-test-b").is_some());
    }
}
