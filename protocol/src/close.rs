//! WebSocket close codes. 1000-1011 are the standard codes (RFC 6455); 4000-4099
//! are browsergrid's own. Every close frame the coordinator sends carries one
//! of these and a human-readable reason, cut to fit by [`close_reason`].

/// The longest reason a close frame may carry: a control frame's payload is
/// at most 125 bytes (RFC 6455, 5.5), two of which are the code.
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// `reason`, cut to fit a close frame: a longer one (serde's messages quote
/// the input) is cut at a character boundary and ends with "...". Browsers
/// throw on a longer reason rather than cutting it.
pub fn close_reason(mut reason: String) -> String {
    if reason.len() > MAX_CLOSE_REASON_BYTES {
        let mut end = MAX_CLOSE_REASON_BYTES - "...".len();
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    reason
}

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 1000: the peer is done; nothing went wrong.
    Normal,
    /// 1001: the coordinator is shutting down. Reconnect with backoff.
    GoingAway,
    /// 1011: the coordinator hit an internal error (e.g. its store failed).
    /// Reconnect with backoff.
    InternalError,
    /// 4000: a frame could not be decoded: not JSON, an unknown message type,
    /// a missing or mistyped field, or a malformed binary frame.
    MalformedFrame,
    /// 4001: the hello named a protocol version this coordinator does not speak.
    UnsupportedVersion,
    /// 4002: a message arrived that is not allowed in this state (anything
    /// before hello, a second hello).
    ProtocolViolation,
    /// 4003: a frame exceeded the size limit.
    FrameTooLarge,
    /// 4004: no hello within the hello timeout.
    HelloTimeout,
    /// 4005: nothing received within the idle timeout (heartbeats missing).
    IdleTimeout,
    /// 4006: the peer sent messages faster than the rate limit.
    RateLimited,
    /// 4007: the coordinator has too many connections, in total or from this
    /// address. Try again later.
    TooManyConnections,
    /// 4008: results from this worker failed validation; it gets no more work.
    Quarantined,
    /// 4009: the hello was well-formed but its values are not acceptable
    /// (zero threads, an over-long name).
    BadHello,
}

impl CloseCode {
    pub const ALL: [CloseCode; 13] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::InternalError,
        CloseCode::MalformedFrame,
        CloseCode::UnsupportedVersion,
        CloseCode::ProtocolViolation,
        CloseCode::FrameTooLarge,
        CloseCode::HelloTimeout,
        CloseCode::IdleTimeout,
        CloseCode::RateLimited,
        CloseCode::TooManyConnections,
        CloseCode::Quarantined,
        CloseCode::BadHello,
    ];

    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::InternalError => 1011,
            CloseCode::MalformedFrame => 4000,
            CloseCode::UnsupportedVersion => 4001,
            CloseCode::ProtocolViolation => 4002,
            CloseCode::FrameTooLarge => 4003,
            CloseCode::HelloTimeout => 4004,
            CloseCode::IdleTimeout => 4005,
            CloseCode::RateLimited => 4006,
            CloseCode::TooManyConnections => 4007,
            CloseCode::Quarantined => 4008,
            CloseCode::BadHello => 4009,
        }
    }

    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// Whether a worker should try again after this close. Closes that say
    /// the worker itself is broken or unwelcome are not retried blindly.
    pub fn should_reconnect(self) -> bool {
        !matches!(
            self,
            CloseCode::UnsupportedVersion | CloseCode::Quarantined | CloseCode::BadHello
        )
    }

    /// A short name for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::GoingAway => "going_away",
            CloseCode::InternalError => "internal_error",
            CloseCode::MalformedFrame => "malformed_frame",
            CloseCode::UnsupportedVersion => "unsupported_version",
            CloseCode::ProtocolViolation => "protocol_violation",
            CloseCode::FrameTooLarge => "frame_too_large",
            CloseCode::HelloTimeout => "hello_timeout",
            CloseCode::IdleTimeout => "idle_timeout",
            CloseCode::RateLimited => "rate_limited",
            CloseCode::TooManyConnections => "too_many_connections",
            CloseCode::Quarantined => "quarantined",
            CloseCode::BadHello => "bad_hello",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in CloseCode::ALL {
            assert!(seen.insert(code.code()), "{code:?} repeats a number");
            assert_eq!(CloseCode::from_code(code.code()), Some(code));
        }
        assert_eq!(CloseCode::from_code(4999), None);
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        assert_eq!(close_reason("short".into()), "short");
        let long = close_reason("é".repeat(100));
        assert!(long.len() <= 123, "{}", long.len());
        assert!(long.ends_with("..."));
        // Cut at a character boundary: 60 two-byte characters, then "...".
        assert_eq!(long, format!("{}...", "é".repeat(60)));
        let exact = "a".repeat(MAX_CLOSE_REASON_BYTES);
        assert_eq!(close_reason(exact.clone()), exact);
    }
}
