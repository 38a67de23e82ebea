//! Version negotiation.
//!
//! The client's first frame is a [`Hello`] listing the versions it speaks,
//! most preferred first. The relay answers with a [`Welcome`](crate::message::Welcome)
//! naming the first of them it speaks, or, if none, with an
//! [`ErrorFrame`] of code `UNSUPPORTED_VERSION` whose detail lists the
//! versions it does speak, and closes. `Hello`, `Welcome` and `Error` keep
//! their tags and layouts in every version, so this works across releases.

use crate::bytes::{BoundedString, BoundedVec};
use crate::error::{ErrorCode, ErrorDetail};
use crate::message::{ErrorFrame, Hello, MAX_TEXT};

/// The version this crate speaks best.
pub const PROTOCOL_VERSION: u16 = 1;
/// Every version this crate speaks, best first.
pub const SUPPORTED_VERSIONS: &[u16] = &[PROTOCOL_VERSION];
/// QUIC ALPN. (The WebSocket fallback runs over ordinary HTTPS, whose TLS
/// ALPN is `http/1.1`.)
pub const ALPN: &[u8] = b"spider/1";
/// HTTP path of the WebSocket fallback.
pub const WEBSOCKET_PATH: &str = "/spider";
/// TLS exporter label for the auth challenge binding (RFC 8446 §7.5); no
/// context; 32 bytes.
pub const AUTH_EXPORTER_LABEL: &[u8] = b"EXPORTER-spider-auth";
/// Length of the exported keying material.
pub const AUTH_EXPORTER_LEN: usize = 32;

/// A hello offering every version this crate speaks.
pub fn hello(agent: &str) -> Hello {
    Hello {
        // SUPPORTED_VERSIONS is far below MAX_OFFERED_VERSIONS (checked by a test).
        versions: BoundedVec::new(SUPPORTED_VERSIONS.to_vec()).unwrap_or_default(),
        agent: BoundedString::truncating(agent),
    }
}

/// Picks the version for a connection: the client's most preferred one that
/// `supported` contains. `Err` holds the error frame to send before closing.
pub fn negotiate(hello: &Hello, supported: &[u16]) -> Result<u16, ErrorFrame> {
    if let Some(v) = hello.versions.iter().find(|v| supported.contains(v)) {
        return Ok(*v);
    }
    let list: Vec<String> = supported.iter().map(u16::to_string).collect();
    Err(ErrorFrame {
        req: None,
        code: ErrorCode::UNSUPPORTED_VERSION,
        message: BoundedString::truncating(&format!(
            "no common protocol version; this relay speaks {}",
            list.join(", ")
        )),
        detail: ErrorDetail::Versions(
            BoundedVec::new(
                supported
                    .iter()
                    .copied()
                    .take(crate::message::MAX_OFFERED_VERSIONS)
                    .collect(),
            )
            .unwrap_or_default(),
        ),
    })
}

/// The QUIC application close code for a connection closed because of
/// `code`: the error code's number. 0 is a normal close.
pub fn quic_close_code(code: ErrorCode) -> u32 {
    u32::from(code.0)
}

/// The WebSocket close code (RFC 6455 §7.4.2, private use 4000–4999) for a
/// connection closed because of `code`: 4000 plus the error code's number.
/// Codes are below 1000, so the result stays in the private range.
pub fn websocket_close_code(code: ErrorCode) -> u16 {
    4000 + code.0 % 1000
}

/// The error code behind a WebSocket close code, if it is one of ours.
pub fn error_from_websocket_close(close: u16) -> Option<ErrorCode> {
    (4000..5000)
        .contains(&close)
        .then(|| ErrorCode(close - 4000))
}

const _: () = assert!(SUPPORTED_VERSIONS.len() <= crate::message::MAX_OFFERED_VERSIONS);
const _: () = assert!(MAX_TEXT >= 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_clients_first_common_version() {
        let h = Hello {
            versions: BoundedVec::new(vec![3, 2, 1]).unwrap(),
            agent: BoundedString::new("t").unwrap(),
        };
        assert_eq!(negotiate(&h, &[1, 2]), Ok(2));
    }

    #[test]
    fn unknown_version_gets_an_error_listing_ours() {
        let h = Hello {
            versions: BoundedVec::new(vec![7]).unwrap(),
            agent: BoundedString::new("t").unwrap(),
        };
        let e = negotiate(&h, SUPPORTED_VERSIONS).unwrap_err();
        assert_eq!(e.code, ErrorCode::UNSUPPORTED_VERSION);
        assert_eq!(
            e.detail,
            ErrorDetail::Versions(BoundedVec::new(vec![1]).unwrap())
        );
        assert!(e.message.as_str().contains("speaks 1"));
        assert!(e.code.is_fatal());
    }

    #[test]
    fn close_codes_map_error_codes_both_ways() {
        let c = ErrorCode::SLOW_CONSUMER;
        assert_eq!(quic_close_code(c), 106);
        assert_eq!(websocket_close_code(c), 4106);
        assert_eq!(error_from_websocket_close(4106), Some(c));
        assert_eq!(error_from_websocket_close(1000), None);
        for c in ErrorCode::ALL {
            assert!(c.0 < 1000, "{c:?} would leave the WebSocket private range");
            assert_eq!(
                error_from_websocket_close(websocket_close_code(*c)),
                Some(*c)
            );
        }
    }

    #[test]
    fn empty_offer_is_refused() {
        let h = Hello {
            versions: BoundedVec::empty(),
            agent: BoundedString::default(),
        };
        assert!(negotiate(&h, SUPPORTED_VERSIONS).is_err());
    }
}
