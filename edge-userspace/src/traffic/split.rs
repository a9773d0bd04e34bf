//! A route's traffic split: requests with a header or cookie value, then
//! weighted shares, go to other pools; the rest to the route's own.

use crate::config::{
    HashKey,
    shaping::{SplitRule, SplitWhen},
};
use crate::upstream::UpstreamPool;
use http::HeaderMap;
use std::{net::IpAddr, sync::Arc};

/// A compiled split.
pub struct Split {
    rules: Vec<(SplitRule, Arc<UpstreamPool>)>,
    /// What keeps a client on its side (the first share rule's).
    sticky: Option<HashKey>,
}

impl Split {
    /// Compiles `rules` against their pools (resolved by the caller).
    pub fn new(rules: Vec<(SplitRule, Arc<UpstreamPool>)>) -> Self {
        let sticky = rules.iter().find_map(|(r, _)| r.sticky.clone());
        Self { rules, sticky }
    }

    /// The pool this request goes to instead of the route's, if any.
    pub fn pick(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Option<&Arc<UpstreamPool>> {
        for (rule, pool) in &self.rules {
            let hit = match &rule.when {
                SplitWhen::Header(name, value) => headers
                    .get_all(name.as_str())
                    .iter()
                    .any(|v| v.as_bytes() == value.as_bytes()),
                SplitWhen::Cookie(name, value) => {
                    crate::proxy::headers::cookie(headers, name).is_some_and(|c| c == value)
                }
                SplitWhen::Share(_) => false,
            };
            if hit {
                return Some(pool);
            }
        }
        let key = self.sticky.as_ref().and_then(|k| match k {
            HashKey::ClientIp => client.map(|ip| ip.to_canonical().to_string().into_bytes()),
            HashKey::Header(name) => headers.get(name.as_str()).map(|v| v.as_bytes().to_vec()),
            HashKey::Cookie(name) => {
                crate::proxy::headers::cookie(headers, name).map(|c| c.as_bytes().to_vec())
            }
            HashKey::Path => None,
        });
        // A client without the sticky key draws at random, like one with
        // no stickiness asked for.
        let n = match key {
            Some(k) => super::draw_for(&k),
            None => super::draw(),
        };
        let mut upto = 0;
        for (rule, pool) in &self.rules {
            if let SplitWhen::Share(share) = rule.when {
                upto += share;
                if n < upto {
                    return Some(pool);
                }
            }
        }
        None
    }
}
