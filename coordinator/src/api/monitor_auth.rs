//! Who may open the monitor channel (PROTOCOL.md, "Monitor channel"), decided
//! on the upgrade request, before any socket exists. A browser cannot set
//! `Authorization` on a WebSocket, but it can offer subprotocols, so the
//! token travels in `Sec-WebSocket-Protocol`, never in the URL, where proxies'
//! logs and browser history would keep it:
//!
//! ```text
//! Sec-WebSocket-Protocol: browsergrid.monitor, browsergrid.token.<base64url of the token>
//! ```
//!
//! The answer names [`MONITOR_PROTOCOL`] (never the token's). Other clients
//! may send `Authorization: Bearer <token>` instead. The query `?token=` of
//! earlier releases still works for this one, with a warning in the log.
//! The first of the three the request carries is the one checked.

use base64::Engine as _;
use warp::http::{HeaderMap, StatusCode, header};

/// The subprotocol a monitor client offers, and the answer names.
pub const MONITOR_PROTOCOL: &str = "browsergrid.monitor";

/// The prefix of the subprotocol that carries the token, base64url-encoded
/// (RFC 4648, section 5) without padding: a subprotocol is an HTTP token,
/// and a token given with `--token` may hold any character.
pub const TOKEN_PROTOCOL_PREFIX: &str = "browsergrid.token.";

/// How a monitor client showed the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    Subprotocol,
    Header,
    /// `?token=`, deprecated.
    Query,
}

/// A monitor upgrade that may go ahead.
#[derive(Debug)]
pub(super) struct Admitted<T> {
    /// Who the token belongs to.
    pub who: T,
    pub via: Via,
    /// The subprotocol to name in the answer, if the client offered it.
    pub protocol: Option<&'static str>,
}

/// A monitor upgrade refused: 401 for a missing or wrong token, 400 for an
/// offer that is not well formed.
#[derive(Debug)]
pub(super) struct Refused {
    pub status: StatusCode,
    pub message: String,
}

impl warp::reject::Reject for Refused {}

/// Decides a monitor upgrade from its headers and its query's `token`,
/// with `matches` saying whether a presented token is the token.
pub(super) fn admit<T>(
    headers: &HeaderMap,
    query_token: Option<&str>,
    identify: impl Fn(&str) -> Option<T>,
) -> Result<Admitted<T>, Refused> {
    let mut offers_monitor = false;
    let mut tokens = Vec::new();
    for value in headers.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        let value = value
            .to_str()
            .map_err(|_| bad("Sec-WebSocket-Protocol is not ASCII"))?;
        for protocol in value.split(',').map(str::trim) {
            if protocol == MONITOR_PROTOCOL {
                offers_monitor = true;
            } else if let Some(encoded) = protocol.strip_prefix(TOKEN_PROTOCOL_PREFIX) {
                tokens.push(encoded);
            }
        }
    }
    let protocol = offers_monitor.then_some(MONITOR_PROTOCOL);
    let (presented, via) = match tokens.as_slice() {
        [] => match (headers.get(header::AUTHORIZATION), query_token) {
            (Some(authorization), _) => {
                let presented = authorization
                    .to_str()
                    .ok()
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .unwrap_or_default();
                (presented.to_string(), Via::Header)
            }
            (None, Some(token)) => (token.to_string(), Via::Query),
            (None, None) => return Err(unauthorized()),
        },
        [encoded] => {
            if !offers_monitor {
                return Err(bad(&format!(
                    "offer the subprotocol {MONITOR_PROTOCOL} beside {TOKEN_PROTOCOL_PREFIX}...: \
                     the answer names it, never the token"
                )));
            }
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .map_err(|_| {
                    bad(&format!(
                        "{TOKEN_PROTOCOL_PREFIX}... must carry the token in base64url"
                    ))
                })?;
            let token = String::from_utf8(bytes).map_err(|_| {
                bad(&format!(
                    "{TOKEN_PROTOCOL_PREFIX}... does not carry UTF-8 text"
                ))
            })?;
            (token, Via::Subprotocol)
        }
        _ => {
            return Err(bad(&format!(
                "offer one {TOKEN_PROTOCOL_PREFIX}... subprotocol, not several"
            )));
        }
    };
    match identify(&presented) {
        Some(who) => Ok(Admitted { who, via, protocol }),
        None => Err(unauthorized()),
    }
}

fn bad(message: &str) -> Refused {
    Refused {
        status: StatusCode::BAD_REQUEST,
        message: message.to_string(),
    }
}

fn unauthorized() -> Refused {
    Refused {
        status: StatusCode::UNAUTHORIZED,
        message: format!(
            "missing or invalid token: offer the subprotocols '{MONITOR_PROTOCOL}' and \
             '{TOKEN_PROTOCOL_PREFIX}<the token in base64url>', or send \
             'Authorization: Bearer <token>' (see DATA/token)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    const TOKEN: &str = "s3cret";

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn check(headers: &HeaderMap, query: Option<&str>) -> Result<Admitted<()>, Refused> {
        admit(headers, query, |t| {
            crate::auth::token_matches(t, TOKEN).then_some(())
        })
    }

    /// `s3cret` in base64url, written out (an oracle apart from the decoder).
    const ENCODED: &str = "czNjcmV0";

    #[test]
    fn the_token_may_come_in_a_subprotocol_the_header_or_the_deprecated_query() {
        let offer = format!("{MONITOR_PROTOCOL}, {TOKEN_PROTOCOL_PREFIX}{ENCODED}");
        let admitted = check(&headers(&[(header::SEC_WEBSOCKET_PROTOCOL, &offer)]), None).unwrap();
        assert_eq!(admitted.via, Via::Subprotocol);
        assert_eq!(admitted.protocol, Some(MONITOR_PROTOCOL));
        // Offered in two header lines, padded: the same.
        let two = headers(&[
            (header::SEC_WEBSOCKET_PROTOCOL, "chat"),
            (
                header::SEC_WEBSOCKET_PROTOCOL,
                &format!("{TOKEN_PROTOCOL_PREFIX}{ENCODED}==, {MONITOR_PROTOCOL}"),
            ),
        ]);
        assert_eq!(check(&two, None).unwrap().via, Via::Subprotocol);

        let bearer = headers(&[(header::AUTHORIZATION, "Bearer s3cret")]);
        let admitted = check(&bearer, None).unwrap();
        assert_eq!((admitted.via, admitted.protocol), (Via::Header, None));
        let admitted = check(&HeaderMap::new(), Some(TOKEN)).unwrap();
        assert_eq!((admitted.via, admitted.protocol), (Via::Query, None));
    }

    #[test]
    fn a_missing_or_wrong_token_is_401_and_a_bad_offer_400() {
        let wrong = format!("{MONITOR_PROTOCOL}, {TOKEN_PROTOCOL_PREFIX}d3Jvbmc");
        for (headers, query) in [
            (HeaderMap::new(), None),
            (HeaderMap::new(), Some("wrong")),
            (HeaderMap::new(), Some("")),
            (
                headers(&[(header::SEC_WEBSOCKET_PROTOCOL, MONITOR_PROTOCOL)]),
                None,
            ),
            (headers(&[(header::SEC_WEBSOCKET_PROTOCOL, &wrong)]), None),
            // The subprotocol is checked first: the right query does not help.
            (
                headers(&[(header::SEC_WEBSOCKET_PROTOCOL, &wrong)]),
                Some(TOKEN),
            ),
            (
                headers(&[(header::AUTHORIZATION, "Bearer wrong")]),
                Some(TOKEN),
            ),
            (headers(&[(header::AUTHORIZATION, "s3cret")]), None),
        ] {
            let refused = check(&headers, query).expect_err("refused");
            assert_eq!(
                refused.status,
                StatusCode::UNAUTHORIZED,
                "{headers:?} {query:?}"
            );
            assert!(refused.message.contains(MONITOR_PROTOCOL));
        }
        for (offer, says) in [
            (
                format!("{TOKEN_PROTOCOL_PREFIX}{ENCODED}"),
                "offer the subprotocol",
            ),
            (
                format!("{MONITOR_PROTOCOL}, {TOKEN_PROTOCOL_PREFIX}not*base64"),
                "base64url",
            ),
            (
                format!("{MONITOR_PROTOCOL}, {TOKEN_PROTOCOL_PREFIX}_w"),
                "UTF-8",
            ),
            (
                format!(
                    "{MONITOR_PROTOCOL}, {TOKEN_PROTOCOL_PREFIX}{ENCODED}, {TOKEN_PROTOCOL_PREFIX}{ENCODED}"
                ),
                "not several",
            ),
        ] {
            let refused = check(&headers(&[(header::SEC_WEBSOCKET_PROTOCOL, &offer)]), None)
                .expect_err("refused");
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{offer}");
            assert!(
                refused.message.contains(says),
                "{offer}: {}",
                refused.message
            );
        }
    }
}
