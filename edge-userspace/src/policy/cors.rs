//! CORS (the Fetch standard's CORS protocol): preflights answered by
//! edge, and the response fields of actual requests from allowed origins.

use super::{Outcome, Rejection};
use crate::config::gateway::{CorsPolicy, OriginMatch};
use pingora::http::RequestHeader;

/// What a preflight's answer always varies on.
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// The response fields of the CORS protocol.
const CORS_FIELDS: [&str; 6] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
];

/// A compiled CORS policy.
pub struct Cors {
    p: CorsPolicy,
    methods: String,
    expose: Option<String>,
    max_age: Option<String>,
}

impl Cors {
    /// Compiles `p`.
    pub fn new(p: CorsPolicy) -> Self {
        Self {
            methods: p.methods.join(", "),
            expose: (!p.expose_headers.is_empty()).then(|| p.expose_headers.join(", ")),
            max_age: p.max_age.map(|d| d.as_secs().to_string()),
            p,
        }
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let lower = origin.to_ascii_lowercase();
        self.p.origins.iter().any(|m| match m {
            OriginMatch::Any => true,
            OriginMatch::Exact(o) => *o == lower,
            OriginMatch::Subdomain { scheme, suffix } => lower
                .strip_prefix(scheme.as_str())
                .and_then(|host| host.strip_suffix(suffix.as_str()))
                .is_some_and(|labels| {
                    !labels.is_empty()
                        && labels
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                        && !labels.starts_with('.')
                        && !labels.ends_with('.')
                }),
            OriginMatch::Regex(r) => r.0.is_match(origin),
        })
    }

    /// `Access-Control-Allow-Origin`'s value for an allowed `origin`.
    fn allow_origin(&self, origin: &str) -> String {
        let any = self.p.origins.iter().any(|m| matches!(m, OriginMatch::Any));
        if any && !self.p.credentials {
            "*".into()
        } else {
            origin.to_string()
        }
    }

    /// Answers a preflight (as a [`Rejection`] with status 204 when it is
    /// allowed: the request goes no further either way), or adds the
    /// fields an actual request's answer carries to `out`.
    pub fn apply(&self, head: &RequestHeader, out: &mut Outcome) -> Result<(), Rejection> {
        let origin = head
            .headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        let requested_method = head
            .headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| v.to_str().ok());
        if head.method == http::Method::OPTIONS
            && let (Some(origin), Some(method)) = (origin, requested_method)
        {
            return Err(self.preflight(head, origin, method));
        }
        // Whether or not this origin may read the answer, the answer
        // depends on Origin: a shared cache must not give one origin's
        // answer to another. The service's own CORS fields go: they would
        // let in origins this policy refuses.
        out.response_headers.push(("vary".into(), "Origin".into()));
        out.response_remove.extend(CORS_FIELDS);
        let Some(origin) = origin.filter(|o| self.origin_allowed(o)) else {
            return Ok(());
        };
        out.response_headers.push((
            "access-control-allow-origin".into(),
            self.allow_origin(origin),
        ));
        if self.p.credentials {
            out.response_headers
                .push(("access-control-allow-credentials".into(), "true".into()));
        }
        if let Some(expose) = &self.expose {
            out.response_headers
                .push(("access-control-expose-headers".into(), expose.clone()));
        }
        Ok(())
    }

    fn preflight(&self, head: &RequestHeader, origin: &str, method: &str) -> Rejection {
        let requested_headers: Vec<String> = head
            .headers
            .get_all(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let why = if !self.origin_allowed(origin) {
            Some("origin")
        } else if !self.p.methods.iter().any(|m| m == method) {
            Some("method")
        } else if !requested_headers.iter().all(|h| {
            self.p
                .headers
                .iter()
                .any(|a| a == h || (a == "*" && h != "authorization"))
        }) {
            Some("headers")
        } else {
            None
        };
        if let Some(reason) = why {
            // No CORS fields at all: the browser refuses the request.
            let mut r = Rejection::new(
                self.p.preflight_refusal_status,
                "cors",
                reason,
                "CORS preflight refused",
            )
            .no_strike();
            r.headers.push(("vary".into(), PREFLIGHT_VARY.into()));
            return r;
        }
        let mut r = Rejection {
            status: 204,
            headers: vec![
                ("vary".into(), PREFLIGHT_VARY.into()),
                (
                    "access-control-allow-origin".into(),
                    self.allow_origin(origin),
                ),
                ("access-control-allow-methods".into(), self.methods.clone()),
            ],
            body: bytes::Bytes::new(),
            policy: "cors",
            reason: "preflight",
            strike: false,
        };
        if !requested_headers.is_empty() {
            r.headers.push((
                "access-control-allow-headers".into(),
                requested_headers.join(", "),
            ));
        }
        if self.p.credentials {
            r.headers
                .push(("access-control-allow-credentials".into(), "true".into()));
        }
        if let Some(age) = &self.max_age {
            r.headers
                .push(("access-control-max-age".into(), age.clone()));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: Vec<OriginMatch>, credentials: bool) -> Cors {
        Cors::new(CorsPolicy {
            origins,
            methods: vec!["GET".into(), "PUT".into()],
            headers: vec!["x-token".into()],
            expose_headers: vec![],
            credentials,
            max_age: None,
            preflight_refusal_status: 403,
        })
    }

    #[test]
    fn subdomain_wildcards_need_a_label_and_the_same_scheme() {
        let c = cors(
            vec![OriginMatch::Subdomain {
                scheme: "https://".into(),
                suffix: ".example.com".into(),
            }],
            false,
        );
        assert!(c.origin_allowed("https://app.example.com"));
        assert!(c.origin_allowed("https://a.b.example.com"));
        assert!(!c.origin_allowed("https://example.com"));
        assert!(!c.origin_allowed("http://app.example.com"));
        assert!(!c.origin_allowed("https://evilexample.com"));
        assert!(!c.origin_allowed("https://app.example.com.evil.net"));
        assert!(!c.origin_allowed("https://x/y.example.com"));
    }

    #[test]
    fn any_origin_with_credentials_echoes_the_origin() {
        let c = cors(vec![OriginMatch::Any], true);
        assert_eq!(c.allow_origin("https://a.test"), "https://a.test");
        let c = cors(vec![OriginMatch::Any], false);
        assert_eq!(c.allow_origin("https://a.test"), "*");
    }

    #[test]
    fn preflights_check_origin_method_and_headers() {
        let c = cors(vec![OriginMatch::Exact("https://a.test".into())], false);
        let pre = |origin: &str, method: &str, headers: &str| {
            let mut h = RequestHeader::build("OPTIONS", b"/", None).unwrap();
            h.insert_header("origin", origin).unwrap();
            h.insert_header("access-control-request-method", method)
                .unwrap();
            if !headers.is_empty() {
                h.insert_header("access-control-request-headers", headers)
                    .unwrap();
            }
            let mut out = Outcome::default();
            c.apply(&h, &mut out).unwrap_err()
        };
        let ok = pre("https://a.test", "PUT", "X-Token");
        assert_eq!((ok.status, ok.reason), (204, "preflight"));
        assert_eq!(pre("https://b.test", "PUT", "").reason, "origin");
        assert_eq!(pre("https://a.test", "DELETE", "").reason, "method");
        assert_eq!(pre("https://a.test", "GET", "x-other").reason, "headers");
    }
}
