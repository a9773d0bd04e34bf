//! Route selection.
//!
//! Precedence, most specific first (documented in the README):
//! 1. host: an exact host beats a `*.` wildcard (a longer suffix beats a
//!    shorter one), which beats a route without hosts;
//! 2. path: exact beats prefix (a longer prefix beats a shorter one), which
//!    beats regex, which beats a route without a path condition;
//! 3. more method/header/query conditions beat fewer;
//! 4. the earlier route in the file wins a tie.

use crate::config::{HostMatch, PathMatch, Route, RouteMatch, ValueCond, ValueMatch};
use http::HeaderMap;

/// What matching looks at.
pub struct RequestView<'a> {
    /// Host without port, lower-case.
    pub host: Option<&'a str>,
    /// Path (no query).
    pub path: &'a str,
    /// Raw query string.
    pub query: Option<&'a str>,
    /// Method, upper-case.
    pub method: &'a str,
    /// Header fields.
    pub headers: &'a HeaderMap,
}

/// Ranks a match: larger is more specific.
type Rank = (u8, usize, u8, usize, usize);

/// Picks the route for `req` among `routes` (its position among them), by
/// the precedence above.
pub fn select<'r>(
    routes: impl IntoIterator<Item = &'r Route>,
    req: &RequestView<'_>,
) -> Option<usize> {
    let mut best: Option<(Rank, usize)> = None;
    for (i, route) in routes.into_iter().enumerate() {
        let Some(rank) = rank(&route.matcher, req) else {
            continue;
        };
        // Strictly greater: a tie keeps the earlier route.
        if best.as_ref().is_none_or(|(b, _)| rank > *b) {
            best = Some((rank, i));
        }
    }
    best.map(|(_, i)| i)
}

fn rank(m: &RouteMatch, req: &RequestView<'_>) -> Option<Rank> {
    let (host_class, host_len) = if m.hosts.is_empty() {
        (0, 0)
    } else {
        let host = req.host?;
        m.hosts
            .iter()
            .filter_map(|h| match h {
                HostMatch::Exact(name) => (name == host).then_some((2, name.len())),
                HostMatch::Suffix(suffix) => host
                    .strip_suffix(suffix.as_str())
                    .filter(|rest| !rest.is_empty())
                    .map(|_| (1, suffix.len())),
            })
            .max()?
    };
    let (path_class, path_len) = match &m.path {
        None => (0, 0),
        Some(PathMatch::Exact(p)) => (p == req.path).then_some((3, p.len()))?,
        Some(PathMatch::Prefix(p)) => prefix_matches(p, req.path).then_some((2, p.len()))?,
        Some(PathMatch::Regex(r)) => r.0.is_match(req.path).then_some((1, 0))?,
    };
    if !m.methods.is_empty() && !m.methods.iter().any(|x| x == req.method) {
        return None;
    }
    for h in &m.headers {
        let value = req.headers.get(&h.name).and_then(|v| v.to_str().ok());
        if !value_ok(h, value) {
            return None;
        }
    }
    for q in &m.query {
        if !value_ok(q, query_param(req.query, &q.name).as_deref()) {
            return None;
        }
    }
    if let Some((name, value)) = &m.accept_param
        && !accept_has_param(req.headers, name, value)
    {
        return None;
    }
    if m.grpc && !crate::grpc::is_grpc(req.headers) {
        return None;
    }
    let conditions = usize::from(!m.methods.is_empty())
        + m.headers.len()
        + m.query.len()
        + usize::from(m.accept_param.is_some())
        + usize::from(m.grpc);
    Some((host_class, host_len, path_class, path_len, conditions))
}

/// `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`; `/api/`
/// matches what starts with it.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn value_ok(m: &ValueMatch, value: Option<&str>) -> bool {
    match (&m.value, value) {
        (_, None) => false,
        (ValueCond::Present, Some(_)) => true,
        (ValueCond::Exact(want), Some(v)) => want == v,
        (ValueCond::Regex(r), Some(v)) => r.0.is_match(v),
    }
}

/// Whether some media range of `Accept` carries parameter `name` (lower
/// case) with `value` (`application/vnd.x+json; version=2`); a quoted
/// value is compared unquoted.
pub fn accept_has_param(headers: &HeaderMap, name: &str, value: &str) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            range.split(';').skip(1).any(|param| {
                let Some((k, v)) = param.split_once('=') else {
                    return false;
                };
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                k.trim().eq_ignore_ascii_case(name) && v == value
            })
        })
}

/// A query parameter's name or value, `+` and percent-decoded.
pub fn query_component(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// The first value of query parameter `name`, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (query_component(k) == name).then(|| query_component(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Action, HeaderOps, Pattern};

    #[test]
    fn accept_parameters_are_found_in_any_media_range() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            "text/html, application/vnd.example+json; q=0.9; Version=\"2\""
                .parse()
                .unwrap(),
        );
        assert!(accept_has_param(&h, "version", "2"));
        assert!(!accept_has_param(&h, "version", "1"));
        assert!(!accept_has_param(&h, "q", "1"));
        assert!(!accept_has_param(&HeaderMap::new(), "version", "2"));
    }

    fn route(name: &str, m: RouteMatch) -> Route {
        Route {
            name: name.into(),
            matcher: m,
            action: Action::Respond {
                status: 200,
                headers: vec![],
                body: Default::default(),
            },
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            cache: None,
            compression: None,
            policies: Default::default(),
            shaping: Default::default(),
            transcode: None,
        }
    }

    fn pick(
        routes: &[Route],
        host: &str,
        path: &str,
        method: &str,
        headers: &HeaderMap,
    ) -> Option<String> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let view = RequestView {
            host: Some(host),
            path,
            query,
            method,
            headers,
        };
        select(routes, &view).map(|i| routes[i].name.clone())
    }

    #[test]
    fn precedence() {
        let re = |s: &str| Pattern(regex::Regex::new(s).unwrap());
        let routes = vec![
            route("catch-all", RouteMatch::default()),
            route(
                "wild",
                RouteMatch {
                    hosts: vec![HostMatch::Suffix(".example.com".into())],
                    ..Default::default()
                },
            ),
            route(
                "exact-host",
                RouteMatch {
                    hosts: vec![HostMatch::Exact("api.example.com".into())],
                    ..Default::default()
                },
            ),
            route(
                "regex",
                RouteMatch {
                    hosts: vec![HostMatch::Exact("api.example.com".into())],
                    path: Some(PathMatch::Regex(re("^/v[0-9]+/"))),
                    ..Default::default()
                },
            ),
            route(
                "prefix",
                RouteMatch {
                    hosts: vec![HostMatch::Exact("api.example.com".into())],
                    path: Some(PathMatch::Prefix("/v1".into())),
                    ..Default::default()
                },
            ),
            route(
                "longer-prefix",
                RouteMatch {
                    hosts: vec![HostMatch::Exact("api.example.com".into())],
                    path: Some(PathMatch::Prefix("/v1/users".into())),
                    ..Default::default()
                },
            ),
            route(
                "exact-path",
                RouteMatch {
                    hosts: vec![HostMatch::Exact("api.example.com".into())],
                    path: Some(PathMatch::Exact("/v1/users".into())),
                    ..Default::default()
                },
            ),
            route(
                "post-only",
                RouteMatch {
                    hosts: vec![HostMatch::Exact("api.example.com".into())],
                    path: Some(PathMatch::Prefix("/v1".into())),
                    methods: vec!["POST".into()],
                    ..Default::default()
                },
            ),
            route(
                "beta",
                RouteMatch {
                    hosts: vec![HostMatch::Exact("api.example.com".into())],
                    path: Some(PathMatch::Prefix("/v1".into())),
                    query: vec![ValueMatch {
                        name: "beta".into(),
                        value: ValueCond::Exact("yes please".into()),
                    }],
                    ..Default::default()
                },
            ),
            route(
                "canary",
                RouteMatch {
                    hosts: vec![HostMatch::Exact("api.example.com".into())],
                    path: Some(PathMatch::Prefix("/v1".into())),
                    headers: vec![ValueMatch {
                        name: "x-canary".into(),
                        value: ValueCond::Regex(re("^(1|true)$")),
                    }],
                    ..Default::default()
                },
            ),
        ];
        let none = HeaderMap::new();
        let p = |host, path, method| pick(&routes, host, path, method, &none);
        assert_eq!(p("other.org", "/", "GET").as_deref(), Some("catch-all"));
        assert_eq!(p("www.example.com", "/", "GET").as_deref(), Some("wild"));
        // The wildcard needs a label before the suffix.
        assert_eq!(p("example.com", "/", "GET").as_deref(), Some("catch-all"));
        assert_eq!(
            p("api.example.com", "/", "GET").as_deref(),
            Some("exact-host")
        );
        assert_eq!(
            p("api.example.com", "/v2/x", "GET").as_deref(),
            Some("regex")
        );
        assert_eq!(
            p("api.example.com", "/v1/x", "GET").as_deref(),
            Some("prefix")
        );
        assert_eq!(
            p("api.example.com", "/v1x", "GET").as_deref(),
            Some("exact-host")
        );
        assert_eq!(
            p("api.example.com", "/v1/users/7", "GET").as_deref(),
            Some("longer-prefix")
        );
        assert_eq!(
            p("api.example.com", "/v1/users", "POST").as_deref(),
            Some("exact-path")
        );
        assert_eq!(
            p("api.example.com", "/v1/x", "POST").as_deref(),
            Some("post-only")
        );
        assert_eq!(
            p("api.example.com", "/v1/x?a=1&beta=yes+please", "GET").as_deref(),
            Some("beta")
        );
        let mut canary = HeaderMap::new();
        canary.insert("x-canary", "true".parse().unwrap());
        assert_eq!(
            pick(&routes, "api.example.com", "/v1/x", "GET", &canary).as_deref(),
            Some("canary")
        );
        canary.insert("x-canary", "no".parse().unwrap());
        assert_eq!(
            pick(&routes, "api.example.com", "/v1/x", "GET", &canary).as_deref(),
            Some("prefix")
        );
    }

    #[test]
    fn prefixes_end_on_segments() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(prefix_matches("/", "/anything"));
    }
}
