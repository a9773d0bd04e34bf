//! How old a response already is when it reaches the cache (RFC 9111
//! §4.2.3), so that time spent in upstream caches and in transit counts
//! against its freshness, and the `Age` we send on hits includes it.

use http::{HeaderMap, header};
use std::time::{Duration, SystemTime};

/// When the exchange that brought a response happened, by our clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// When the request left for the upstream. The proxy records when the
    /// client's request arrived, which is earlier: the response delay it
    /// yields is an over-estimate, the conservative side RFC 9111 asks for.
    pub requested: SystemTime,
    /// When the response head arrived.
    pub received: SystemTime,
}

impl Exchange {
    /// An exchange with no measurable delay, received at `at`.
    pub fn at(at: SystemTime) -> Self {
        Self {
            requested: at,
            received: at,
        }
    }
}

/// The response's `Date`, if it has exactly one valid one.
pub fn date_value(headers: &HeaderMap) -> Option<SystemTime> {
    single_value(headers, header::DATE).and_then(|v| httpdate::parse_http_date(v).ok())
}

/// The response's `Age` in seconds, if it has exactly one valid one
/// (a list, or anything but delta-seconds, is ignored as RFC 9111 §5.1
/// allows).
pub fn age_value(headers: &HeaderMap) -> Option<Duration> {
    single_value(headers, header::AGE)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn single_value(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(str::trim)
}

/// `corrected_initial_age` of RFC 9111 §4.2.3: the larger of the age the
/// `Date` implies (`apparent_age`) and the upstream's `Age` plus the
/// request's round trip (`corrected_age_value`). A `Date` in our future
/// (a fast origin clock) implies no age, never a negative one.
pub fn initial_age(headers: &HeaderMap, exchange: Exchange) -> Duration {
    let apparent_age = date_value(headers)
        .and_then(|date| exchange.received.duration_since(date).ok())
        .unwrap_or(Duration::ZERO);
    let response_delay = exchange
        .received
        .duration_since(exchange.requested)
        .unwrap_or(Duration::ZERO);
    let corrected_age_value = age_value(headers)
        .unwrap_or(Duration::ZERO)
        .saturating_add(response_delay);
    apparent_age.max(corrected_age_value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn initial_age_is_the_larger_of_apparent_and_corrected_age() {
        // A whole second, as HTTP dates have no fractions.
        let received = SystemTime::UNIX_EPOCH + secs(1_700_000_000);
        let at = Exchange::at(received);
        let date = |t: SystemTime| ("date", httpdate::fmt_http_date(t));
        assert_eq!(initial_age(&headers(&[]), at), Duration::ZERO);
        assert_eq!(initial_age(&headers(&[("age", "50".into())]), at), secs(50));
        assert_eq!(
            initial_age(&headers(&[date(received - secs(30))]), at),
            secs(30)
        );
        // Both: the larger wins.
        assert_eq!(
            initial_age(
                &headers(&[date(received - secs(30)), ("age", "10".into())]),
                at
            ),
            secs(30)
        );
        assert_eq!(
            initial_age(
                &headers(&[date(received - secs(30)), ("age", "45".into())]),
                at
            ),
            secs(45)
        );
        // A Date ahead of our clock is no age at all.
        assert_eq!(
            initial_age(&headers(&[date(received + secs(3600))]), at),
            Duration::ZERO
        );
        // The round trip is added to Age (it may have aged in transit).
        let slow = Exchange {
            requested: received - secs(2),
            received,
        };
        assert_eq!(
            initial_age(&headers(&[("age", "50".into())]), slow),
            secs(52)
        );
        assert_eq!(initial_age(&headers(&[]), slow), secs(2));
        // Invalid or repeated values are ignored.
        assert_eq!(
            initial_age(&headers(&[("age", "soon".into())]), at),
            Duration::ZERO
        );
        assert_eq!(
            initial_age(&headers(&[("age", "5".into()), ("age", "6".into())]), at),
            Duration::ZERO
        );
        assert_eq!(
            initial_age(&headers(&[("date", "yesterday".into())]), at),
            Duration::ZERO
        );
    }
}
