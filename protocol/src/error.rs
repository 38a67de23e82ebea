//! Error codes.
//!
//! Codes are stable: a number, once given a meaning, keeps it in every
//! version. They are grouped by hundreds: 1xx connection and framing, 2xx
//! accounts and auth, 3xx limits, 4xx messages, 5xx rooms, 6xx blobs, 9xx the
//! relay itself. An unknown code still decodes (it is a plain `u16`), so
//! clients can show the message of a code newer than themselves.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::bytes::BoundedVec;
use crate::ids::DeviceId;
use crate::message::{MAX_DEVICES_PER_USER, MAX_OFFERED_VERSIONS};

/// A stable numeric error code.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ErrorCode(pub u16);

macro_rules! codes {
    ($($(#[$m:meta])* $name:ident = $n:literal,)*) => {
        impl ErrorCode {
            $($(#[$m])* pub const $name: ErrorCode = ErrorCode($n);)*

            /// Every defined code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// The code's name as written here (`MAILBOX_FULL`), or `None`
            /// if this build does not know it.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($n => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    // 1xx: connection and framing. Without a `req`, the relay closes after.
    /// The hello offered no version this relay speaks. Detail: `Versions`.
    UNSUPPORTED_VERSION = 100,
    /// The frame could not be decoded.
    MALFORMED_FRAME = 101,
    /// The frame's declared length is over its kind's maximum.
    FRAME_TOO_LARGE = 102,
    /// A valid frame that is not allowed in this state (say, a send before
    /// authentication).
    UNEXPECTED_FRAME = 103,
    /// The handshake (hello to auth-ok) took too long.
    HANDSHAKE_TIMEOUT = 104,
    /// Nothing was received for too long.
    IDLE_TIMEOUT = 105,
    /// The client did not read fast enough; its messages wait in its mailbox.
    SLOW_CONSUMER = 106,
    /// The WebSocket `Origin` header is not allowed.
    ORIGIN_REFUSED = 107,

    // 2xx: accounts and auth.
    /// A signature did not verify (auth, prekey, binding, approval, room change).
    BAD_SIGNATURE = 200,
    /// The username is taken.
    USERNAME_TAKEN = 201,
    /// The username breaks the naming rules.
    INVALID_USERNAME = 202,
    /// No such account.
    UNKNOWN_USER = 203,
    /// No such device.
    UNKNOWN_DEVICE = 204,
    /// The account has its maximum number of devices.
    TOO_MANY_DEVICES = 205,
    /// Registration is missing required prekeys or carries invalid ones.
    INVALID_PREKEYS = 206,

    // 3xx: limits. Detail `RetryAfter` where waiting helps.
    /// Too many requests; slow down.
    RATE_LIMITED = 300,
    /// Too many connections from this address.
    TOO_MANY_CONNECTIONS = 301,
    /// The recipient device's mailbox is full; try later.
    MAILBOX_FULL = 302,
    /// This account's attachment storage is full.
    BLOB_QUOTA_EXCEEDED = 303,
    /// The attachment is over the relay's size limit.
    BLOB_TOO_LARGE = 304,
    /// Too many prekey fetches.
    PREKEY_FETCH_LIMITED = 305,
    /// Too many registrations from this address.
    REGISTRATION_LIMITED = 306,

    // 4xx: messages.
    /// The copies of a send do not match the account's devices (detail:
    /// `Devices`), or a room send's `devices` digest does not match the
    /// members' devices (no detail).
    MISMATCHED_DEVICES = 400,
    /// No such recipient.
    UNKNOWN_RECIPIENT = 401,

    // 5xx: rooms.
    /// No such room (or not visible to you).
    UNKNOWN_ROOM = 500,
    /// You are not a member.
    NOT_A_MEMBER = 501,
    /// Your role does not allow this.
    FORBIDDEN = 502,
    /// The change, or room send, names an old epoch. Detail: `Epoch`.
    STALE_EPOCH = 503,
    /// The room name is taken.
    ROOM_NAME_TAKEN = 504,
    /// You are banned from this room.
    BANNED = 505,
    /// No pending invitation for you.
    NO_INVITATION = 506,
    /// The invite link expired, was revoked or is used up.
    LINK_INVALID = 507,
    /// The room has its maximum number of members.
    ROOM_FULL = 508,
    /// The change's timestamp is too far from the relay's clock.
    CLOCK_SKEW = 509,

    // 6xx: blobs.
    /// No such blob (or expired).
    UNKNOWN_BLOB = 600,
    /// The upload's chunks do not add up to its declared size.
    BLOB_INCOMPLETE = 601,
    /// The upload's SHA-256 is not the one declared.
    BLOB_DIGEST_MISMATCH = 602,

    // 9xx: the relay.
    /// Something failed inside the relay; nothing was changed.
    INTERNAL = 900,
    /// The relay is draining and takes no new work.
    DRAINING = 901,
}

impl ErrorCode {
    /// Whether the connection can go on after this error (the relay closes
    /// after connection-level errors).
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            Self::UNSUPPORTED_VERSION
                | Self::MALFORMED_FRAME
                | Self::FRAME_TOO_LARGE
                | Self::HANDSHAKE_TIMEOUT
                | Self::IDLE_TIMEOUT
                | Self::SLOW_CONSUMER
                | Self::ORIGIN_REFUSED
                | Self::TOO_MANY_CONNECTIONS
                | Self::DRAINING
        )
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}({})", self.0),
            None => write!(f, "ErrorCode({})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{} ({})", n.to_ascii_lowercase(), self.0),
            None => write!(f, "error {}", self.0),
        }
    }
}

/// Machine-readable details of an error.
///
/// Variants keep their indices forever, and a relay sends only variants that
/// the connection's negotiated version has. `None` (0) and `Versions` (1) are
/// in every version, so a client of any version can read the
/// `UNSUPPORTED_VERSION` error of a relay of any version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ErrorDetail {
    /// Nothing more.
    None,
    /// The versions this relay speaks (with `UNSUPPORTED_VERSION`).
    Versions(BoundedVec<u16, MAX_OFFERED_VERSIONS>),
    /// Try again after this many milliseconds (with limits).
    RetryAfter {
        /// Milliseconds.
        ms: u32,
    },
    /// What a send got wrong about the recipient's devices.
    Devices {
        /// Devices that exist but had no copy.
        missing: BoundedVec<DeviceId, MAX_DEVICES_PER_USER>,
        /// Copies for devices that do not exist.
        extra: BoundedVec<DeviceId, MAX_DEVICES_PER_USER>,
    },
    /// The room's current epoch (with `STALE_EPOCH`).
    Epoch {
        /// The epoch to sign against.
        current: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_sorted() {
        for w in ErrorCode::ALL.windows(2) {
            assert!(w[0].0 < w[1].0, "{:?} then {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn names_and_unknown_codes() {
        assert_eq!(ErrorCode::MAILBOX_FULL.name(), Some("MAILBOX_FULL"));
        assert_eq!(ErrorCode::MAILBOX_FULL.to_string(), "mailbox_full (302)");
        assert_eq!(ErrorCode(4242).name(), None);
        assert_eq!(ErrorCode(4242).to_string(), "error 4242");
        // An unknown code still decodes.
        let enc = postcard::to_allocvec(&ErrorCode(4242)).unwrap();
        assert_eq!(
            postcard::from_bytes::<ErrorCode>(&enc).unwrap(),
            ErrorCode(4242)
        );
    }

    #[test]
    fn connection_level_codes_are_fatal_and_request_level_are_not() {
        assert!(ErrorCode::UNSUPPORTED_VERSION.is_fatal());
        assert!(ErrorCode::SLOW_CONSUMER.is_fatal());
        assert!(!ErrorCode::MAILBOX_FULL.is_fatal());
        assert!(!ErrorCode::RATE_LIMITED.is_fatal());
    }
}
