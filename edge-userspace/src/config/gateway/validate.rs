//! Checks `consumers:` and `policies:` and builds their model.

use super::{model::*, surface};
use crate::config::{units::Quantity, validate::Validator};
use sha2::{Digest, Sha256};
use std::{collections::HashMap, str::FromStr, time::Duration};

/// Most consumers a file may declare.
pub const MAX_CONSUMERS: usize = 100_000;
/// Most API keys one consumer may have.
pub const MAX_KEYS_PER_CONSUMER: usize = 16;
/// Most rate limits one route may have (its listener's included).
pub const MAX_RATE_LIMITS: usize = 8;
/// Most entries of one list in a policy (origins, rules, prefixes, keys).
pub const MAX_POLICY_LIST: usize = 1024;
/// Longest consumer, group or limit name (they are metric labels and
/// header values).
pub const MAX_NAME: usize = 64;
/// Largest `limit` of a rate limit.
pub const MAX_LIMIT: u32 = 1_000_000_000;
/// Shortest and longest rate-limit window.
pub const WINDOW_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(86_400));
/// Largest concurrency bound.
pub const MAX_CONCURRENCY: u32 = 1_000_000;
/// Largest JWT leeway.
pub const MAX_LEEWAY: Duration = Duration::from_secs(600);
/// Default JWT leeway (Envoy's).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Largest CORS max age browsers honour (Firefox caps at a day).
pub const MAX_CORS_AGE: Duration = Duration::from_secs(86_400);

/// Checks `consumers[]`.
pub fn consumers(v: &mut Validator<'_>, list: &[surface::Consumer]) -> Vec<Consumer> {
    if list.len() > MAX_CONSUMERS {
        v.error(
            "consumers".into(),
            format!("{} consumers: at most {MAX_CONSUMERS}", list.len()),
        );
    }
    let mut names = HashMap::new();
    let mut keys: HashMap<[u8; 32], String> = HashMap::new();
    let mut users = HashMap::new();
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let path = format!("consumers[{i}]");
        name(v, format!("{path}.name"), &c.name, "consumer name");
        v.unique(&mut names, c.name.clone(), format!("{path}.name"), || {
            format!("consumer {:?} is defined twice", c.name)
        });
        let mut groups = Vec::new();
        for (j, g) in c.groups.iter().enumerate() {
            name(v, format!("{path}.groups[{j}]"), g, "group name");
            groups.push(g.clone());
        }
        groups.sort();
        groups.dedup();
        if c.api_keys.len() > MAX_KEYS_PER_CONSUMER {
            v.error(
                format!("{path}.api_keys"),
                format!("at most {MAX_KEYS_PER_CONSUMER} API keys per consumer"),
            );
        }
        let mut api_keys = Vec::new();
        for (j, k) in c.api_keys.iter().enumerate() {
            let kpath = format!("{path}.api_keys[{j}]");
            let digest = match (&k.key, &k.sha256) {
                (Some(key), None) if key.len() >= 8 && !key.chars().any(char::is_whitespace) => {
                    Some(Sha256::digest(key.as_bytes()).into())
                }
                (Some(_), None) => {
                    v.error(
                        format!("{kpath}.key"),
                        "an API key must be at least 8 characters, without spaces",
                    );
                    None
                }
                (None, Some(hex)) => match decode_hex32(hex) {
                    Some(d) => Some(d),
                    None => {
                        v.error(
                            format!("{kpath}.sha256"),
                            "sha256 must be 64 hex digits (the SHA-256 of the key)",
                        );
                        None
                    }
                },
                _ => {
                    v.error(
                        kpath.clone(),
                        "an API key has exactly one of key and sha256",
                    );
                    None
                }
            };
            if let Some(d) = digest {
                let owner = c.name.clone();
                if let Some(first) = keys.get(&d) {
                    let msg =
                        format!("this API key is already {first}'s: a key names one consumer");
                    v.error(kpath, msg);
                } else {
                    keys.insert(d, owner);
                    api_keys.push(d);
                }
            }
        }
        let basic = c.basic.as_ref().and_then(|b| {
            let bpath = format!("{path}.basic");
            let username = b.username.clone().unwrap_or_else(|| c.name.clone());
            if username.is_empty() || username.contains(':') {
                v.error(
                    format!("{bpath}.username"),
                    "a Basic user name is not empty and has no ':'",
                );
            }
            v.unique(
                &mut users,
                username.clone(),
                format!("{bpath}.username"),
                || format!("Basic user {username:?} belongs to two consumers"),
            );
            if let Err(why) = check_password_hash(&b.password_hash) {
                v.error(format!("{bpath}.password_hash"), why);
                return None;
            }
            Some(BasicCredential {
                username,
                password_hash: b.password_hash.clone(),
            })
        });
        out.push(Consumer {
            name: c.name.clone(),
            groups,
            api_keys,
            basic,
        });
    }
    out
}

fn name(v: &mut Validator<'_>, path: String, text: &str, what: &str) {
    let ok = !text.is_empty()
        && text.len() <= MAX_NAME
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if !ok {
        v.error(
            path,
            format!("bad {what} {text:?}: 1 to {MAX_NAME} letters, digits, '.', '_', '-' or '@'"),
        );
    }
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Highest bcrypt cost accepted: each check of a cost-14 hash already
/// takes about a second of CPU.
pub const MAX_BCRYPT_COST: u32 = 14;
/// Largest argon2 memory (KiB), passes and lanes accepted.
pub const MAX_ARGON2: (u32, u32, u32) = (65_536, 10, 4);

/// Whether `hash` is a bcrypt or argon2 hash edge can verify against at
/// a bearable cost. Only its text is read: checking one would cost as
/// much as a login, for every consumer, on every reload.
pub fn check_password_hash(hash: &str) -> Result<(), String> {
    if let Some(rest) = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))
    {
        let (cost, digest) = rest.split_once('$').ok_or("bad bcrypt hash: no cost")?;
        let cost: u32 = cost
            .parse()
            .map_err(|_| format!("bad bcrypt hash: cost {cost:?} is not a number"))?;
        let shaped = digest.len() == 53
            && digest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
        if !shaped {
            return Err("bad bcrypt hash: expected 53 characters of salt and digest".into());
        }
        if !(4..=MAX_BCRYPT_COST).contains(&cost) {
            return Err(format!(
                "bcrypt cost {cost} is outside 4..={MAX_BCRYPT_COST}: each login would cost too much CPU"
            ));
        }
        return Ok(());
    }
    if hash.starts_with("$argon2") {
        let parsed =
            argon2::PasswordHash::new(hash).map_err(|e| format!("bad argon2 hash: {e}"))?;
        let params =
            argon2::Params::try_from(&parsed).map_err(|e| format!("bad argon2 hash: {e}"))?;
        let (m, t, p) = MAX_ARGON2;
        if params.m_cost() > m || params.t_cost() > t || params.p_cost() > p {
            return Err(format!(
                "argon2 parameters m={}, t={}, p={} exceed m={m}, t={t}, p={p}: each login would cost too much",
                params.m_cost(),
                params.t_cost(),
                params.p_cost()
            ));
        }
        return Ok(());
    }
    Err(
        "password_hash must be a bcrypt ($2b$...) or argon2 ($argon2id$...) hash; \
         plain passwords are never stored"
            .into(),
    )
}

/// The checked `policies:` of one listener or route; the second value is
/// whether `rate_limit_headers` was written (a route's then wins).
pub fn policies(
    v: &mut Validator<'_>,
    path: &str,
    s: &surface::Policies,
    consumers: &[Consumer],
) -> (PolicySet, Option<RateLimitHeaders>) {
    let ip =
        s.ip.as_ref()
            .map(|p| ip_policy(v, &format!("{path}.ip"), p));
    let cors = s.cors.as_ref().map(|c| cors(v, &format!("{path}.cors"), c));
    let auth = s
        .auth
        .as_ref()
        .map(|a| auth(v, &format!("{path}.auth"), a, consumers));
    let authorize = s
        .authorize
        .as_ref()
        .map(|a| authorize(v, &format!("{path}.authorize"), a, consumers));
    let mut seen = HashMap::new();
    let rate_limits = s
        .rate_limits
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, r)| {
            let rpath = format!("{path}.rate_limits[{i}]");
            v.unique(&mut seen, r.name.clone(), format!("{rpath}.name"), || {
                format!("rate limit {:?} is defined twice", r.name)
            });
            rate_limit(v, &rpath, r)
        })
        .collect();
    let headers = s.rate_limit_headers.as_deref().map(|h| match h {
        "draft" => RateLimitHeaders::Draft,
        "x-ratelimit" => RateLimitHeaders::XRateLimit,
        "none" => RateLimitHeaders::None,
        other => {
            v.error(
                format!("{path}.rate_limit_headers"),
                format!("rate_limit_headers is {other:?}: expected draft, x-ratelimit or none"),
            );
            RateLimitHeaders::Draft
        }
    });
    let concurrency = s.concurrency.as_ref().map(|c| {
        let cpath = format!("{path}.concurrency");
        if c.max == 0 || c.max > MAX_CONCURRENCY {
            v.error(
                format!("{cpath}.max"),
                format!("max must be 1 to {MAX_CONCURRENCY}"),
            );
        }
        ConcurrencyPolicy {
            key: limit_key(v, format!("{cpath}.key"), c.key.as_deref(), LimitKey::Route),
            max: c.max.clamp(1, MAX_CONCURRENCY),
            scope: Scope::Route,
        }
    });
    let set = PolicySet {
        ip,
        cors,
        auth,
        authorize,
        rate_limits,
        rate_limit_headers: headers.unwrap_or_default(),
        concurrency,
    };
    (set, headers)
}

/// A route's policies over its listener's: each policy the route sets
/// replaces the listener's, and rate limits add up; with `inherit:
/// false` only the route's apply.
pub fn merge(
    v: &mut Validator<'_>,
    path: &str,
    listener: &(PolicySet, Option<RateLimitHeaders>),
    route: Option<(&surface::Policies, (PolicySet, Option<RateLimitHeaders>))>,
) -> PolicySet {
    let inherit = route
        .as_ref()
        .is_none_or(|(surface, _)| surface.inherit.unwrap_or(true));
    let mut base = if inherit {
        listener.0.clone()
    } else {
        PolicySet::default()
    };
    // What a route takes from its listener counts for the whole listener:
    // one budget, whichever route a request takes.
    for l in &mut base.rate_limits {
        l.scope = Scope::Listener;
    }
    if let Some(c) = &mut base.concurrency {
        c.scope = Scope::Listener;
    }
    let (own, headers) = match route {
        Some((_, (own, headers))) => (own, headers),
        None => (PolicySet::default(), None),
    };
    let mut rate_limits = base.rate_limits;
    let mut names: HashMap<String, String> = HashMap::new();
    for r in &rate_limits {
        names.insert(r.name.clone(), String::new());
    }
    for (i, r) in own.rate_limits.into_iter().enumerate() {
        if names.contains_key(&r.name) {
            v.error(
                format!("{path}.rate_limits[{i}].name"),
                format!(
                    "rate limit {:?} is also the listener's: names are unique on a route",
                    r.name
                ),
            );
            continue;
        }
        names.insert(r.name.clone(), String::new());
        rate_limits.push(r);
    }
    if rate_limits.len() > MAX_RATE_LIMITS {
        v.error(
            format!("{path}.rate_limits"),
            format!(
                "{} rate limits with the listener's: at most {MAX_RATE_LIMITS} per route",
                rate_limits.len()
            ),
        );
    }
    let set = PolicySet {
        ip: own.ip.or(base.ip),
        cors: own.cors.or(base.cors),
        auth: own.auth.or(base.auth),
        authorize: own.authorize.or(base.authorize),
        rate_limits,
        rate_limit_headers: headers.unwrap_or(base.rate_limit_headers),
        concurrency: own.concurrency.or(base.concurrency),
    };
    if set.authorize.is_some() && set.auth.is_none() {
        v.error(
            format!("{path}.authorize"),
            "authorize needs auth on the same route (or its listener): who is asking?",
        );
    }
    set
}

fn ip_policy(v: &mut Validator<'_>, path: &str, p: &surface::IpPolicy) -> IpPolicy {
    let mut list = |key: &str, items: &[String]| {
        if items.len() > MAX_POLICY_LIST {
            v.error(
                format!("{path}.{key}"),
                format!("at most {MAX_POLICY_LIST} prefixes"),
            );
        }
        items
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                crate::config::validate::parse_cidr(v, format!("{path}.{key}[{i}]"), c)
            })
            .collect::<Vec<_>>()
    };
    let allow = list("allow", &p.allow);
    let deny = list("deny", &p.deny);
    if p.allow.is_empty() && p.deny.is_empty() {
        v.error(
            path.to_string(),
            "an ip policy needs allow or deny prefixes",
        );
    }
    IpPolicy { allow, deny }
}

fn cors(v: &mut Validator<'_>, path: &str, c: &surface::Cors) -> CorsPolicy {
    let mut origins = Vec::new();
    if c.origins.len() + c.origin_regex.len() > MAX_POLICY_LIST {
        v.error(
            format!("{path}.origins"),
            format!("at most {MAX_POLICY_LIST} origins"),
        );
    }
    for (i, o) in c.origins.iter().enumerate() {
        let opath = format!("{path}.origins[{i}]");
        let o = o.trim().to_ascii_lowercase();
        if o == "*" {
            if c.credentials {
                v.error(
                    opath,
                    "origin * cannot go with credentials: true (browsers refuse it); list the origins",
                );
            }
            origins.push(OriginMatch::Any);
            continue;
        }
        let Some((scheme, host)) = o.split_once("://") else {
            v.error(
                opath,
                format!("origin {o:?} needs a scheme: https://app.example.com"),
            );
            continue;
        };
        if !matches!(scheme, "http" | "https") || host.is_empty() || host.contains('/') {
            v.error(
                opath,
                format!("origin {o:?} is scheme://host[:port], with no path"),
            );
            continue;
        }
        match host.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') && !rest.contains('*') && rest.len() > 1 => origins
                .push(OriginMatch::Subdomain {
                    scheme: format!("{scheme}://"),
                    suffix: rest.to_string(),
                }),
            Some(_) => v.error(
                opath,
                format!("origin {o:?}: a wildcard is one leading label, as https://*.example.com"),
            ),
            None if host.contains('*') => v.error(
                opath,
                format!("origin {o:?}: a wildcard is one leading label, as https://*.example.com"),
            ),
            None => origins.push(OriginMatch::Exact(o.clone())),
        }
    }
    for (i, r) in c.origin_regex.iter().enumerate() {
        // Anchored: a regex meant for one site must not match another
        // site that merely contains it.
        if let Some(p) = crate::config::l7::regex(
            v,
            format!("{path}.origin_regex[{i}]"),
            &format!("^(?:{r})$"),
        ) {
            origins.push(OriginMatch::Regex(p));
        }
    }
    if origins.is_empty() {
        v.error(
            format!("{path}.origins"),
            "cors needs origins: list them, or * for any",
        );
    }
    let methods = match &c.methods {
        Some(m) => m.iter().map(|m| m.trim().to_ascii_uppercase()).collect(),
        None => vec!["GET".into(), "HEAD".into(), "POST".into()],
    };
    for (i, m) in methods.iter().enumerate() {
        if http::Method::from_str(m).is_err() || m.is_empty() {
            v.error(format!("{path}.methods[{i}]"), format!("bad method {m:?}"));
        }
    }
    let mut header_list = |key: &str, items: &[String], star: bool| {
        items
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                let h = h.trim().to_ascii_lowercase();
                if h == "*" && star {
                    if c.credentials {
                        v.error(
                            format!("{path}.{key}[{i}]"),
                            "* cannot go with credentials: true; list the headers",
                        );
                    }
                    return Some(h);
                }
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    v.error(
                        format!("{path}.{key}[{i}]"),
                        format!("{h:?} is not a valid header name"),
                    );
                    return None;
                }
                Some(h)
            })
            .collect::<Vec<_>>()
    };
    let headers = header_list("headers", &c.headers, true);
    let expose_headers = header_list("expose_headers", &c.expose_headers, false);
    let max_age = c.max_age.as_ref().and_then(|q| {
        let d = v.duration(format!("{path}.max_age"), q)?;
        if d > MAX_CORS_AGE {
            v.error(format!("{path}.max_age"), "max_age is at most 24h");
        }
        Some(d.min(MAX_CORS_AGE))
    });
    let preflight_refusal_status = c.preflight_refusal_status.unwrap_or(403);
    if !(400..=499).contains(&preflight_refusal_status) {
        v.error(
            format!("{path}.preflight_refusal_status"),
            "preflight_refusal_status is a client error status (400-499)",
        );
    }
    CorsPolicy {
        origins,
        methods,
        headers,
        expose_headers,
        credentials: c.credentials,
        max_age,
        preflight_refusal_status,
    }
}

fn consumer_ref(v: &mut Validator<'_>, path: String, name: &str, consumers: &[Consumer]) {
    if !consumers.iter().any(|c| c.name == name) {
        v.error(
            path,
            format!("consumer {name:?} is not defined under consumers:"),
        );
    }
}

fn header_name(v: &mut Validator<'_>, path: String, name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        v.error(path, format!("{name:?} is not a valid header name"));
    }
    lower
}

fn auth(
    v: &mut Validator<'_>,
    path: &str,
    a: &surface::Auth,
    consumers: &[Consumer],
) -> AuthPolicy {
    if a.api_key.is_none() && a.jwt.is_none() && a.basic.is_none() && a.introspection.is_none() {
        v.error(
            path.to_string(),
            "auth needs at least one of api_key, jwt, basic and introspection",
        );
    }
    if let Some(anon) = &a.anonymous {
        consumer_ref(v, format!("{path}.anonymous"), anon, consumers);
    }
    let api_key = a.api_key.as_ref().map(|k| ApiKeyAuth {
        header: header_name(
            v,
            format!("{path}.api_key.header"),
            k.header.as_deref().unwrap_or("apikey"),
        ),
        query: k.query.clone(),
        hide_credentials: k.hide_credentials,
    });
    let jwt = a.jwt.as_ref().map(|j| jwt(v, &format!("{path}.jwt"), j));
    let basic = a.basic.as_ref().map(|b| BasicAuth {
        hide_credentials: b.hide_credentials,
    });
    let introspection = a
        .introspection
        .as_ref()
        .and_then(|i| introspection(v, &format!("{path}.introspection"), i));
    let mut identity_headers = IdentityHeaders::default();
    if let Some(h) = &a.identity_headers {
        let hpath = format!("{path}.identity_headers");
        for (key, given, slot) in [
            ("consumer", &h.consumer, &mut identity_headers.consumer),
            ("groups", &h.groups, &mut identity_headers.groups),
            (
                "credential",
                &h.credential,
                &mut identity_headers.credential,
            ),
            ("anonymous", &h.anonymous, &mut identity_headers.anonymous),
        ] {
            if let Some(name) = given {
                *slot = header_name(v, format!("{hpath}.{key}"), name);
            }
        }
    }
    let realm = a.realm.clone().unwrap_or_else(|| "edge".into());
    if realm.contains(['"', '\\']) || realm.chars().any(|c| c.is_control()) {
        v.error(
            format!("{path}.realm"),
            "a realm has no quotes, backslashes or control characters",
        );
    }
    AuthPolicy {
        api_key,
        jwt,
        basic,
        introspection,
        anonymous: a.anonymous.clone(),
        identity_headers,
        realm,
    }
}

fn opt_duration(
    v: &mut Validator<'_>,
    path: String,
    q: Option<&Quantity>,
    default: Duration,
    range: (Duration, Duration),
) -> Duration {
    let Some(q) = q else { return default };
    let Some(d) = v.duration(path.clone(), q) else {
        return default;
    };
    if d < range.0 || d > range.1 {
        v.error(
            path,
            format!("must be between {:?} and {:?}", range.0, range.1),
        );
        return default;
    }
    d
}

fn jwt(v: &mut Validator<'_>, path: &str, j: &surface::Jwt) -> JwtAuth {
    if j.keys.is_empty() && j.jwks.is_none() {
        v.error(path.to_string(), "jwt needs keys, a jwks URL, or both");
    }
    if j.keys.len() > MAX_POLICY_LIST {
        v.error(
            format!("{path}.keys"),
            format!("at most {MAX_POLICY_LIST} keys"),
        );
    }
    let mut kids = HashMap::new();
    let mut keys = Vec::new();
    for (i, k) in j.keys.iter().enumerate() {
        let kpath = format!("{path}.keys[{i}]");
        if let Some(kid) = &k.kid {
            v.unique(&mut kids, kid.clone(), format!("{kpath}.kid"), || {
                format!("kid {kid:?} is used twice")
            });
        }
        if let Some(key) = jwt_key(v, &kpath, k) {
            keys.push(key);
        }
    }
    let jwks = j.jwks.as_ref().and_then(|s| {
        let jpath = format!("{path}.jwks");
        let url = match s.url.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                Some(u)
            }
            _ => {
                v.error(
                    format!("{jpath}.url"),
                    format!(
                        "bad JWKS URL {:?}: expected http:// or https://host/path",
                        s.url
                    ),
                );
                None
            }
        };
        let refresh = opt_duration(
            v,
            format!("{jpath}.refresh"),
            s.refresh.as_ref(),
            Duration::from_secs(600),
            (Duration::from_secs(1), Duration::from_secs(86_400)),
        );
        let min_refetch = opt_duration(
            v,
            format!("{jpath}.min_refetch"),
            s.min_refetch.as_ref(),
            Duration::from_secs(30),
            (Duration::from_millis(100), Duration::from_secs(3600)),
        );
        let timeout = opt_duration(
            v,
            format!("{jpath}.timeout"),
            s.timeout.as_ref(),
            Duration::from_secs(5),
            (Duration::from_millis(100), Duration::from_secs(60)),
        );
        Some(JwksSource {
            url: url?,
            refresh,
            min_refetch,
            timeout,
        })
    });
    let leeway = opt_duration(
        v,
        format!("{path}.leeway"),
        j.leeway.as_ref(),
        DEFAULT_LEEWAY,
        (Duration::ZERO, MAX_LEEWAY),
    );
    let from = match &j.from {
        None => vec![TokenSource::Header],
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let fpath = format!("{path}.from[{i}]");
                match f.split_once(':') {
                    None if f == "header" => Some(TokenSource::Header),
                    Some(("cookie", n)) if !n.is_empty() => Some(TokenSource::Cookie(n.into())),
                    Some(("query", n)) if !n.is_empty() => Some(TokenSource::Query(n.into())),
                    _ => {
                        v.error(
                            fpath,
                            format!(
                                "token source {f:?}: expected header, cookie:NAME or query:NAME"
                            ),
                        );
                        None
                    }
                }
            })
            .collect(),
    };
    let forward_claims = j
        .forward_claims
        .iter()
        .map(|(claim, header)| {
            let h = header_name(v, format!("{path}.forward_claims.{claim}"), header);
            (claim.clone(), h)
        })
        .collect();
    for (key, list) in [("issuers", &j.issuers), ("audiences", &j.audiences)] {
        if list.len() > MAX_POLICY_LIST {
            v.error(
                format!("{path}.{key}"),
                format!("at most {MAX_POLICY_LIST}"),
            );
        }
    }
    JwtAuth {
        keys,
        jwks,
        issuers: j.issuers.clone(),
        audiences: j.audiences.clone(),
        leeway,
        from,
        consumer_claim: j.consumer_claim.clone(),
        forward_claims,
        hide_credentials: j.hide_credentials,
    }
}

/// Largest PEM key file read.
pub const MAX_KEY_FILE: u64 = 64 * 1024;

/// The algorithms edge verifies, as written in the file.
pub const JWT_ALGORITHMS: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

fn jwt_key(v: &mut Validator<'_>, path: &str, k: &surface::JwtKey) -> Option<JwtKey> {
    let algorithm = match JwtAlgorithm::from_str(&k.algorithm) {
        Ok(a) => a,
        Err(_) => {
            v.error(
                format!("{path}.algorithm"),
                format!(
                    "unsupported algorithm {:?}: expected one of {JWT_ALGORITHMS}",
                    k.algorithm
                ),
            );
            return None;
        }
    };
    let given = [
        k.secret.is_some(),
        k.public_key.is_some(),
        k.pem_file.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        v.error(
            path.to_string(),
            "a key has exactly one of secret, public_key and pem_file",
        );
        return None;
    }
    let hmac = matches!(
        algorithm,
        JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
    );
    let material = if let Some(secret) = &k.secret {
        if !hmac {
            v.error(
                format!("{path}.secret"),
                format!("{:?} verifies with a public key, not a secret", algorithm),
            );
            return None;
        }
        if secret.len() < 32 {
            v.error(
                format!("{path}.secret"),
                "an HMAC secret must be at least 32 bytes (RFC 7518 §3.2)",
            );
        }
        KeyMaterial::Secret(secret.as_bytes().to_vec())
    } else {
        if hmac {
            v.error(
                path.to_string(),
                format!("{algorithm:?} verifies with a secret, not a public key"),
            );
            return None;
        }
        let (pem, where_) = match (&k.public_key, &k.pem_file) {
            (Some(p), _) => (p.as_bytes().to_vec(), format!("{path}.public_key")),
            (_, Some(f)) => {
                let file = v.base_dir().join(f);
                // A key file is small and regular: /dev/zero or a huge
                // file must not hang or exhaust `edge check`.
                let small = std::fs::metadata(&file)
                    .map(|m| m.is_file() && m.len() <= MAX_KEY_FILE)
                    .unwrap_or(true);
                if !small {
                    v.error(
                        format!("{path}.pem_file"),
                        format!(
                            "{} is not a regular file of at most {MAX_KEY_FILE} bytes",
                            file.display()
                        ),
                    );
                    return None;
                }
                match std::fs::read(&file) {
                    Ok(bytes) => (bytes, format!("{path}.pem_file")),
                    Err(e) => {
                        v.error(
                            format!("{path}.pem_file"),
                            format!("cannot read {}: {e}", file.display()),
                        );
                        return None;
                    }
                }
            }
            _ => return None,
        };
        if let Err(e) = crate::policy::jwt::decoding_key(algorithm, &KeyMaterial::Pem(pem.clone()))
        {
            v.error(
                where_,
                format!("not a {algorithm:?} public key in PEM: {e}"),
            );
            return None;
        }
        KeyMaterial::Pem(pem)
    };
    Some(JwtKey {
        kid: k.kid.clone(),
        algorithm,
        material,
    })
}

fn authorize(
    v: &mut Validator<'_>,
    path: &str,
    a: &surface::Authorize,
    consumers: &[Consumer],
) -> AuthorizePolicy {
    let groups: std::collections::HashSet<&str> = consumers
        .iter()
        .flat_map(|c| c.groups.iter().map(String::as_str))
        .collect();
    let mut rules = |key: &str, list: &[surface::Rule]| {
        if list.len() > MAX_POLICY_LIST {
            v.error(
                format!("{path}.{key}"),
                format!("at most {MAX_POLICY_LIST} rules"),
            );
        }
        list.iter()
            .enumerate()
            .map(|(i, r)| {
                let rpath = format!("{path}.{key}[{i}]");
                for (j, c) in r.consumers.iter().enumerate() {
                    consumer_ref(v, format!("{rpath}.consumers[{j}]"), c, consumers);
                }
                for (j, g) in r.groups.iter().enumerate() {
                    if !groups.contains(g.as_str()) {
                        v.error(
                            format!("{rpath}.groups[{j}]"),
                            format!("no consumer is in group {g:?}"),
                        );
                    }
                }
                if r.consumers.is_empty()
                    && r.groups.is_empty()
                    && r.scope.is_none()
                    && r.claim.is_none()
                {
                    v.error(
                        rpath,
                        "an empty rule would match everyone: give consumers, groups, scope or claim",
                    );
                }
                Rule {
                    consumers: r.consumers.clone(),
                    groups: r.groups.clone(),
                    scope: r.scope.clone(),
                    claim: r.claim.as_ref().map(|c| (c.name.clone(), c.equals.clone())),
                }
            })
            .collect::<Vec<_>>()
    };
    let deny = rules("deny", &a.deny);
    let allow = rules("allow", &a.allow);
    AuthorizePolicy { deny, allow }
}

fn limit_key(
    v: &mut Validator<'_>,
    path: String,
    key: Option<&str>,
    default: LimitKey,
) -> LimitKey {
    match key {
        None => default,
        Some("consumer") => LimitKey::Consumer,
        Some("client_ip") => LimitKey::ClientIp,
        Some("route") => LimitKey::Route,
        Some(k) => match k.strip_prefix("header:") {
            Some(h) if !h.is_empty() => LimitKey::Header(header_name(v, path, h)),
            _ => {
                v.error(
                    path,
                    format!("key {k:?}: expected consumer, client_ip, route or header:NAME"),
                );
                default
            }
        },
    }
}

fn rate_limit(
    v: &mut Validator<'_>,
    path: &str,
    r: &surface::RateLimit,
) -> Option<RateLimitPolicy> {
    name(v, format!("{path}.name"), &r.name, "rate limit name");
    if r.limit == 0 || r.limit > MAX_LIMIT {
        v.error(
            format!("{path}.limit"),
            format!("limit must be 1 to {MAX_LIMIT}"),
        );
    }
    let window = v.duration(format!("{path}.window"), &r.window)?;
    if window < WINDOW_RANGE.0 || window > WINDOW_RANGE.1 {
        v.error(
            format!("{path}.window"),
            "window must be between 100ms and 24h",
        );
    }
    let store = match r.store.as_deref() {
        None | Some("local") => LimitStore::Local,
        Some("redis") if u128::from(r.limit) > window.as_micros() => {
            v.error(
                format!("{path}.limit"),
                "a Redis limit counts in microseconds: at most one request per microsecond of window",
            );
            LimitStore::Redis
        }
        Some("redis") => LimitStore::Redis,
        Some(other) => {
            v.error(
                format!("{path}.store"),
                format!("store is {other:?}: expected local or redis"),
            );
            LimitStore::Local
        }
    };
    Some(RateLimitPolicy {
        name: r.name.clone(),
        key: limit_key(
            v,
            format!("{path}.key"),
            r.key.as_deref(),
            LimitKey::ClientIp,
        ),
        limit: r.limit.clamp(1, MAX_LIMIT),
        window: window.clamp(WINDOW_RANGE.0, WINDOW_RANGE.1),
        store,
        scope: Scope::Route,
    })
}

/// Most keys a local limit may be told to remember.
pub const MAX_LIMIT_KEYS: u64 = 10_000_000;

/// Checks `gateway:`.
pub fn gateway(v: &mut Validator<'_>, g: Option<&surface::Gateway>) -> GatewayConfig {
    let Some(g) = g else {
        return GatewayConfig::default();
    };
    let max_limit_keys = match g.max_limit_keys {
        Some(n) if (1..=MAX_LIMIT_KEYS).contains(&n) => n as usize,
        Some(_) => {
            v.error(
                "gateway.max_limit_keys".into(),
                format!("max_limit_keys must be 1 to {MAX_LIMIT_KEYS}"),
            );
            DEFAULT_LIMIT_KEYS
        }
        None => DEFAULT_LIMIT_KEYS,
    };
    let redis = g.redis.as_ref().map(|r| {
        if r.url.starts_with("rediss://") {
            v.error(
                "gateway.redis.url".into(),
                "TLS to Redis (rediss://) is not supported yet: use redis:// on a trusted network",
            );
        } else if !r.url.starts_with("redis://")
            || redis::IntoConnectionInfo::into_connection_info(r.url.as_str()).is_err()
        {
            v.error(
                "gateway.redis.url".into(),
                format!("bad Redis URL {:?}: expected redis://host:port[/db]", r.url),
            );
        }
        let timeout = opt_duration(
            v,
            "gateway.redis.timeout".into(),
            r.timeout.as_ref(),
            Duration::from_millis(50),
            (Duration::from_millis(1), Duration::from_secs(10)),
        );
        let fail_open = match r.on_error.as_deref() {
            None | Some("open") => true,
            Some("closed") => false,
            Some(other) => {
                v.error(
                    "gateway.redis.on_error".into(),
                    format!("on_error is {other:?}: expected open or closed"),
                );
                true
            }
        };
        RedisConfig {
            url: r.url.clone(),
            timeout,
            fail_open,
        }
    });
    let bans = g.bans.as_ref().map(|b| {
        let p = "gateway.bans";
        if b.after == 0 || b.after > 1_000_000 {
            v.error(format!("{p}.after"), "after must be 1 to 1000000");
        }
        let within = opt_duration(
            v,
            format!("{p}.within"),
            Some(&b.within),
            Duration::from_secs(60),
            (Duration::from_secs(1), Duration::from_secs(86_400)),
        );
        let ban_for = opt_duration(
            v,
            format!("{p}.ban_for"),
            Some(&b.ban_for),
            Duration::from_secs(600),
            (Duration::from_secs(1), Duration::from_secs(7 * 86_400)),
        );
        let statuses = b.statuses.clone().unwrap_or_else(|| vec![401, 403, 429]);
        for (i, s) in statuses.iter().enumerate() {
            if !(400..=599).contains(s) {
                v.error(
                    format!("{p}.statuses[{i}]"),
                    format!("status {s}: only error statuses (400-599) count"),
                );
            }
        }
        let max = b.max.unwrap_or(10_000);
        if max == 0 || max > edge_common::MAX_BANS {
            v.error(
                format!("{p}.max"),
                format!(
                    "max must be 1 to {} (the kernel map's size)",
                    edge_common::MAX_BANS
                ),
            );
        }
        let never = b
            .never
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                crate::config::validate::parse_cidr(v, format!("{p}.never[{i}]"), c)
            })
            .collect();
        BanConfig {
            after: b.after.max(1),
            within,
            ban_for,
            statuses,
            max: max.clamp(1, edge_common::MAX_BANS) as usize,
            never,
        }
    });
    GatewayConfig {
        max_limit_keys,
        redis,
        bans,
    }
}

fn http_url(v: &mut Validator<'_>, path: String, text: &str) -> Option<http::Uri> {
    match text.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Some(u),
        _ => {
            v.error(
                path,
                format!("bad URL {text:?}: expected http:// or https://host/path"),
            );
            None
        }
    }
}

/// Most introspection answers a route may keep.
pub const MAX_INTROSPECTION_CACHE: u32 = 1_000_000;

fn introspection(
    v: &mut Validator<'_>,
    path: &str,
    i: &surface::Introspection,
) -> Option<IntrospectionAuth> {
    let url = http_url(v, format!("{path}.url"), &i.url);
    if i.client_id.is_empty() || i.client_id.contains(':') {
        v.error(
            format!("{path}.client_id"),
            "client_id is not empty and has no ':'",
        );
    }
    let timeout = opt_duration(
        v,
        format!("{path}.timeout"),
        i.timeout.as_ref(),
        Duration::from_secs(2),
        (Duration::from_millis(10), Duration::from_secs(60)),
    );
    let cache_for = opt_duration(
        v,
        format!("{path}.cache_for"),
        i.cache_for.as_ref(),
        Duration::from_secs(60),
        (Duration::ZERO, Duration::from_secs(86_400)),
    );
    let entries = i.cache_entries.unwrap_or(10_000);
    if entries == 0 || entries > MAX_INTROSPECTION_CACHE {
        v.error(
            format!("{path}.cache_entries"),
            format!("cache_entries must be 1 to {MAX_INTROSPECTION_CACHE}"),
        );
    }
    Some(IntrospectionAuth {
        url: url?,
        client_id: i.client_id.clone(),
        client_secret: i.client_secret.clone(),
        timeout,
        cache_for,
        cache_entries: entries.clamp(1, MAX_INTROSPECTION_CACHE) as usize,
        consumer_claim: i.consumer_claim.clone(),
        hide_credentials: i.hide_credentials,
    })
}
