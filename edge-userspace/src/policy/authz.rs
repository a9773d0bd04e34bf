//! Authorization: deny rules first, then the request must match an allow
//! rule (when there are any). A rule holds when every condition it gives
//! holds.

use super::{Outcome, Rejection};
use crate::config::gateway::{AuthorizePolicy, Rule};
use serde_json::Value;

fn has_scope(claims: &serde_json::Map<String, Value>, scope: &str) -> bool {
    let listed = |v: &Value| match v {
        Value::String(s) => s.split_whitespace().any(|x| x == scope),
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(scope)),
        _ => false,
    };
    claims.get("scope").is_some_and(listed) || claims.get("scp").is_some_and(listed)
}

fn claim_equals(claims: &serde_json::Map<String, Value>, name: &str, value: &str) -> bool {
    match claims.get(name) {
        Some(Value::String(s)) => s == value,
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(value)),
        Some(Value::Bool(b)) => b.to_string() == value,
        Some(Value::Number(n)) => n.to_string() == value,
        _ => false,
    }
}

/// Whether `rule` holds for the caller in `out`.
pub fn matches(rule: &Rule, out: &Outcome) -> bool {
    let consumer = out.consumer.as_ref();
    if !rule.consumers.is_empty()
        && !consumer.is_some_and(|c| rule.consumers.iter().any(|n| **n == *c.name))
    {
        return false;
    }
    if !rule.groups.is_empty()
        && !consumer.is_some_and(|c| c.groups.iter().any(|g| rule.groups.contains(g)))
    {
        return false;
    }
    let claims = out.claims.as_deref();
    if let Some(scope) = &rule.scope
        && !claims.is_some_and(|c| has_scope(c, scope))
    {
        return false;
    }
    if let Some((name, value)) = &rule.claim
        && !claims.is_some_and(|c| claim_equals(c, name, value))
    {
        return false;
    }
    true
}

/// 403 unless the caller may use the route.
pub fn check(p: &AuthorizePolicy, out: &Outcome) -> Result<(), Rejection> {
    let forbidden = |reason| {
        let r = Rejection::new(403, "authorize", reason, "You cannot consume this service");
        // A token without the scope a rule asks for (RFC 6750 §3.1).
        if out.claims.is_some() {
            r.with("www-authenticate", "Bearer error=\"insufficient_scope\"")
        } else {
            r
        }
    };
    if p.deny.iter().any(|r| matches(r, out)) {
        return Err(forbidden("denied"));
    }
    if !p.allow.is_empty() && !p.allow.iter().any(|r| matches(r, out)) {
        return Err(forbidden("not_allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn outcome(claims: Value) -> Outcome {
        Outcome {
            claims: claims.as_object().cloned().map(Arc::new),
            ..Default::default()
        }
    }

    #[test]
    fn scope_and_claims_match_strings_and_arrays() {
        let out = outcome(
            serde_json::json!({"scope": "read write", "roles": ["a", "b"], "tenant": "acme"}),
        );
        let rule = |scope: Option<&str>, claim: Option<(&str, &str)>| Rule {
            scope: scope.map(str::to_string),
            claim: claim.map(|(a, b)| (a.to_string(), b.to_string())),
            ..Default::default()
        };
        assert!(matches(&rule(Some("write"), None), &out));
        assert!(!matches(&rule(Some("admin"), None), &out));
        assert!(!matches(&rule(Some("rea"), None), &out));
        assert!(matches(&rule(None, Some(("roles", "b"))), &out));
        assert!(matches(&rule(Some("read"), Some(("tenant", "acme"))), &out));
        assert!(!matches(
            &rule(Some("read"), Some(("tenant", "other"))),
            &out
        ));
    }

    #[test]
    fn deny_wins_and_no_allow_match_is_403() {
        let out = outcome(serde_json::json!({"scope": "read"}));
        let read = Rule {
            scope: Some("read".into()),
            ..Default::default()
        };
        let p = AuthorizePolicy {
            deny: vec![read.clone()],
            allow: vec![read.clone()],
        };
        assert_eq!(check(&p, &out).unwrap_err().reason, "denied");
        let p = AuthorizePolicy {
            deny: vec![],
            allow: vec![Rule {
                scope: Some("write".into()),
                ..Default::default()
            }],
        };
        assert_eq!(check(&p, &out).unwrap_err().status, 403);
    }
}
