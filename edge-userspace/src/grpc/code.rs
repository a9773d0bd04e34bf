//! The gRPC status codes.

/// A gRPC status code (the `grpc-status` trailer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Code {
    /// 0
    Ok = 0,
    /// 1
    Cancelled = 1,
    /// 2
    Unknown = 2,
    /// 3
    InvalidArgument = 3,
    /// 4
    DeadlineExceeded = 4,
    /// 5
    NotFound = 5,
    /// 6
    AlreadyExists = 6,
    /// 7
    PermissionDenied = 7,
    /// 8
    ResourceExhausted = 8,
    /// 9
    FailedPrecondition = 9,
    /// 10
    Aborted = 10,
    /// 11
    OutOfRange = 11,
    /// 12
    Unimplemented = 12,
    /// 13
    Internal = 13,
    /// 14
    Unavailable = 14,
    /// 15
    DataLoss = 15,
    /// 16
    Unauthenticated = 16,
}

/// Every code, by number.
const ALL: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

impl Code {
    /// The code with number `n`; numbers gRPC does not define are
    /// `UNKNOWN`, as its clients read them.
    pub fn from_u32(n: u32) -> Self {
        usize::try_from(n)
            .ok()
            .and_then(|i| ALL.get(i).copied())
            .unwrap_or(Code::Unknown)
    }

    /// The code's number.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// The canonical name (`UNAVAILABLE`), used in configuration and as a
    /// metric label.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The code named `name` (any case, `unavailable` or `UNAVAILABLE`).
    pub fn from_name(name: &str) -> Option<Self> {
        ALL.into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// Whether the code says the server failed rather than the call:
    /// those gRPC's HTTP mapping puts at 5xx (UNKNOWN, DEADLINE_EXCEEDED,
    /// INTERNAL, UNAVAILABLE, DATA_LOSS). They count against the backend
    /// in outlier detection and the circuit breaker, as 5xx do.
    pub fn is_server_failure(self) -> bool {
        matches!(
            self,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        )
    }

    /// The code edge answers a gRPC request with instead of its own HTTP
    /// `status` (a refusal, or the failure to reach a backend). It follows
    /// gRPC's HTTP-to-gRPC mapping, made more precise where edge knows
    /// the cause: a deadline (408, 504) is DEADLINE_EXCEEDED, and a size
    /// limit or rate limit (413, 414, 429, 431) is RESOURCE_EXHAUSTED.
    pub fn for_http_status(status: u16) -> Self {
        match status {
            200..=299 => Code::Ok,
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 | 405 | 501 => Code::Unimplemented,
            408 | 504 => Code::DeadlineExceeded,
            413 | 414 | 429 | 431 => Code::ResourceExhausted,
            502 | 503 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_round_trip() {
        for (i, c) in ALL.iter().enumerate() {
            assert_eq!(c.number() as usize, i);
            assert_eq!(Code::from_u32(c.number()), *c);
            assert_eq!(Code::from_name(c.name()), Some(*c));
            assert_eq!(Code::from_name(&c.name().to_lowercase()), Some(*c));
        }
        assert_eq!(Code::from_u32(17), Code::Unknown);
        assert_eq!(Code::from_u32(u32::MAX), Code::Unknown);
        assert_eq!(Code::from_name("NOPE"), None);
    }

    #[test]
    fn edge_refusals() {
        assert_eq!(Code::for_http_status(503), Code::Unavailable);
        assert_eq!(Code::for_http_status(504), Code::DeadlineExceeded);
        assert_eq!(Code::for_http_status(429), Code::ResourceExhausted);
        assert_eq!(Code::for_http_status(401), Code::Unauthenticated);
        assert_eq!(Code::for_http_status(404), Code::Unimplemented);
        assert_eq!(Code::for_http_status(508), Code::Unknown);
    }
}
