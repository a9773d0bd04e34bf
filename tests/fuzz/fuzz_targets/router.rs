//! The router: a request (method, request target, Host and other fields,
//! as the proxy receives them) against routes written in the input, as the
//! proxy's `request_filter` does it: the target and Host normalised
//! (`proxy::normalize`; a request it refuses gets a 400 and is not
//! routed), then `router::select` on the normalised host and match path.
//!
//! Input (see `edge_fuzz::head`): the request's head, a blank line, then
//! one route a line, as space-separated conditions:
//!
//! ```text
//! GET /v1/users?beta=yes
//! host: api.example.com
//!
//! host=api.example.com prefix=/v1 method=POST
//! host=*.example.com path=/exact regex=0
//! header=x-canary header=x-version:2 header=x-a~3 query=beta=yes query=q~1
//! *
//! ```
//! `*` is a route with no conditions; `regex=N` and `~N` pick one of
//! [`REGEXES`] (as configured regexes are, they are fixed: compiling
//! arbitrary ones would fuzz the regex crate).
//!
//! Invariants, beyond not panicking:
//! - the chosen index is in range, and the chosen route matches on its own;
//! - when nothing is chosen, no route matches on its own;
//! - ties go to the earlier route: the list twice over picks the same index;
//! - a catch-all appended at the end is picked exactly when nothing else is.

#![no_main]

use edge_fuzz::{head, lines, text, words};
use edge_userspace::config::{
    self, HostMatch, PathMatch, Pattern, Route, RouteMatch, ValueCond, ValueMatch,
};
use edge_userspace::proxy::{
    normalize::{PathOptions, normalize_request},
    router,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const MAX_ROUTES: usize = 16;
const REGEXES: &[&str] = &[
    "^/v[0-9]+/",
    "^/$",
    "(?i)admin",
    "^(1|true)$",
    r"\.php$",
    "^/[a-z]+/[0-9]+$",
    "",
    "^/a+$",
];

fn regex(index: &str) -> Option<Pattern> {
    static COMPILED: OnceLock<Vec<regex::Regex>> = OnceLock::new();
    let all = COMPILED.get_or_init(|| {
        REGEXES
            .iter()
            .map(|r| regex::Regex::new(r).unwrap())
            .collect()
    });
    let i: usize = index.parse().ok()?;
    Some(Pattern(all.get(i)?.clone()))
}

/// A route as the configuration builds it, so that the fields this target
/// does not set keep whatever the model gives them.
fn base_route() -> &'static Route {
    static BASE: OnceLock<Route> = OnceLock::new();
    BASE.get_or_init(|| {
        let yaml = "listeners:\n  - name: fuzz\n    address: 127.0.0.1:1\n    routes:\n      \
                    - name: base\n        respond: { status: 200 }\n";
        let mut cfg = config::parse(yaml, std::path::Path::new("fuzz.yaml"))
            .unwrap_or_else(|e| panic!("the base route does not parse: {e}"));
        cfg.listeners.remove(0).routes.remove(0)
    })
}

/// `name`, `name:value` (`name=value` for a query), `name~N`.
fn value_match(spec: &str, exact: char, lower: bool) -> Option<ValueMatch> {
    let at = spec.find([exact, '~']);
    let (name, value) = match at {
        None => (spec, ValueCond::Present),
        Some(i) if spec[i..].starts_with('~') => {
            (&spec[..i], ValueCond::Regex(regex(&spec[i + 1..])?))
        }
        Some(i) => (&spec[..i], ValueCond::Exact(spec[i + 1..].to_string())),
    };
    let name = if lower {
        name.to_ascii_lowercase()
    } else {
        name.to_string()
    };
    Some(ValueMatch { name, value })
}

/// One route line; `None` if a condition is unreadable.
fn route(i: usize, line: &str) -> Option<Route> {
    let mut m = RouteMatch::default();
    for word in line.split(' ').filter(|w| !w.is_empty() && *w != "*") {
        let (key, value) = word.split_once('=')?;
        match key {
            // The configuration stores hosts lower-case, wildcards as `.suffix`.
            "host" => m.hosts.push(match value.strip_prefix("*.") {
                Some(suffix) => HostMatch::Suffix(format!(".{}", suffix.to_ascii_lowercase())),
                None => HostMatch::Exact(value.to_ascii_lowercase()),
            }),
            "path" => m.path = Some(PathMatch::Exact(value.into())),
            "prefix" => m.path = Some(PathMatch::Prefix(value.into())),
            "regex" => m.path = Some(PathMatch::Regex(regex(value)?)),
            "method" => m.methods.push(value.into()),
            "header" => m.headers.push(value_match(value, ':', true)?),
            "query" => m.query.push(value_match(value, '=', false)?),
            _ => return None,
        }
    }
    Some(Route {
        name: format!("r{i}"),
        matcher: m,
        ..base_route().clone()
    })
}

fuzz_target!(|data: &[u8]| {
    let (request, rest) = head(data);
    let Some(req) = edge_fuzz::request(&request) else {
        return;
    };
    let mut routes = Vec::new();
    for line in lines(rest).filter(|l| words(l).next().is_some()) {
        let Some(r) = text(line).and_then(|l| route(routes.len(), l)) else {
            return;
        };
        routes.push(r);
        if routes.len() == MAX_ROUTES {
            break;
        }
    }

    // What request_filter does before routing.
    let Ok(normal) = normalize_request(&req, PathOptions::default()) else {
        return;
    };
    let (host, path) = (normal.host, normal.path);
    let view = router::RequestView {
        host: host.as_ref().map(|h| h.name.as_str()),
        path: path.match_path(),
        query: req.uri.query(),
        method: req.method.as_str(),
        headers: &req.headers,
    };
    let chosen = router::select(&routes, &view);

    match chosen {
        Some(i) => {
            assert!(i < routes.len(), "index {i} of {} routes", routes.len());
            assert_eq!(
                router::select(&routes[i..=i], &view),
                Some(0),
                "the chosen route does not match on its own"
            );
        }
        None => {
            for (i, r) in routes.iter().enumerate() {
                assert_eq!(
                    router::select(std::slice::from_ref(r), &view),
                    None,
                    "route {i} matches on its own but none was chosen"
                );
            }
        }
    }

    let twice: Vec<Route> = routes.iter().chain(&routes).cloned().collect();
    assert_eq!(
        router::select(&twice, &view),
        chosen,
        "a tie went to a later route"
    );

    let mut with_catch_all = routes.clone();
    with_catch_all.push(Route {
        name: "catch-all".into(),
        matcher: RouteMatch::default(),
        ..base_route().clone()
    });
    assert_eq!(
        router::select(&with_catch_all, &view),
        Some(chosen.unwrap_or(routes.len())),
        "a trailing catch-all changed the choice"
    );

    // The query parser on its own, with a name from the request.
    if let Some((name, _)) = view.query.and_then(|q| q.split_once('=')) {
        let _ = router::query_param(view.query, name);
    }
});
