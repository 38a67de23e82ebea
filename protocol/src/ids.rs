//! Typed identifiers.
//!
//! | type          | wire                  | who picks it                         |
//! |---------------|-----------------------|--------------------------------------|
//! | [`UserId`]    | 16 raw bytes          | the relay, at random, on registration|
//! | [`DeviceId`]  | varint u32            | the relay, 1, 2, 3… per user         |
//! | [`RoomId`]    | 16 raw bytes          | the relay, at random, on creation    |
//! | [`MessageId`] | 16 raw bytes          | the sender, at random; retransmissions reuse it |
//! | [`BlobId`]    | 32 raw bytes          | the relay, at random: knowing it is the capability to download |
//! | [`LinkToken`] | 16 raw bytes          | the relay, at random: the secret of an invite link |
//! | [`RequestId`] | varint u32            | the client, per connection; echoed in the reply |
//! | [`Seq`]       | varint u64            | the relay, per recipient device mailbox, strictly increasing |
//! | [`PreKeyId`]  | varint u32            | the device that made the prekey      |
//! | [`Timestamp`] | varint u64            | milliseconds since the Unix epoch, UTC |

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::bytes::FixedBytes;

macro_rules! random_id {
    ($(#[$m:meta])* $name:ident, $n:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        pub struct $name(pub FixedBytes<$n>);

        impl $name {
            /// The length of this identifier in bytes.
            pub const LEN: usize = $n;

            /// Wraps raw bytes.
            pub const fn from_bytes(b: [u8; $n]) -> Self {
                Self(FixedBytes(b))
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0 .0
            }

            /// Lower-case hex, as used in logs, file names and the CLI.
            pub fn to_hex(&self) -> String {
                let mut s = String::with_capacity($n * 2);
                for b in self.as_bytes() {
                    s.push_str(&format!("{b:02x}"));
                }
                s
            }

            /// Parses lower- or upper-case hex of exactly the right length.
            pub fn from_hex(s: &str) -> Option<Self> {
                let s = s.as_bytes();
                if s.len() != $n * 2 {
                    return None;
                }
                let mut out = [0u8; $n];
                for (i, pair) in s.chunks_exact(2).enumerate() {
                    let hi = (pair[0] as char).to_digit(16)?;
                    let lo = (pair[1] as char).to_digit(16)?;
                    out[i] = (hi * 16 + lo) as u8;
                }
                Some(Self::from_bytes(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl TryFrom<&[u8]> for $name {
            type Error = crate::bytes::LengthError;
            fn try_from(b: &[u8]) -> Result<Self, Self::Error> {
                FixedBytes::try_from(b).map(Self)
            }
        }
    };
}

random_id!(
    /// A user account on one relay (or cluster). Stable for the account's life.
    UserId,
    16
);
random_id!(
    /// A room.
    RoomId,
    16
);
random_id!(
    /// A message, chosen at random by its sender. The relay stores a message id
    /// once per recipient device: a retransmission with the same id is acked
    /// again but neither stored nor delivered twice.
    MessageId,
    16
);
random_id!(
    /// An uploaded, encrypted attachment. 256 random bits: the id is the
    /// capability to download, so it must not be guessable.
    BlobId,
    32
);
random_id!(
    /// The secret part of a room invite link.
    LinkToken,
    16
);

macro_rules! number_id {
    ($(#[$m:meta])* $name:ident, $t:ty) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        pub struct $name(pub $t);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

number_id!(
    /// One device of a user: 1 for the device that registered, then 2, 3…
    DeviceId,
    u32
);
number_id!(
    /// Chosen by the client per connection; the relay echoes it in the reply.
    RequestId,
    u32
);
number_id!(
    /// Position in one device's mailbox. Strictly increasing, never reused,
    /// gaps allowed (acked envelopes are deleted). Acks are cumulative.
    Seq,
    u64
);
number_id!(
    /// Identifies one prekey among those its device uploaded.
    PreKeyId,
    u32
);
number_id!(
    /// Milliseconds since 1970-01-01T00:00:00Z.
    Timestamp,
    u64
);

/// One device of one user: where an envelope comes from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct DeviceAddress {
    /// The account.
    pub user: UserId,
    /// The device of that account.
    pub device: DeviceId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_wrong_length_or_digits() {
        let id = UserId::from_bytes([0xab; 16]);
        assert_eq!(UserId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(UserId::from_hex(&"AB".repeat(16)), Some(id));
        assert_eq!(UserId::from_hex("ab"), None);
        assert_eq!(UserId::from_hex(&"zz".repeat(16)), None);
        // Multi-byte UTF-8 of the right byte length is not hex.
        assert_eq!(UserId::from_hex(&"é".repeat(16)), None);
    }

    #[test]
    fn ids_encode_as_raw_bytes_and_varints() {
        let id = MessageId::from_bytes([1; 16]);
        assert_eq!(postcard::to_allocvec(&id).unwrap(), [1; 16]);
        assert_eq!(postcard::to_allocvec(&Seq(300)).unwrap(), [0xac, 0x02]);
        assert_eq!(postcard::to_allocvec(&DeviceId(1)).unwrap(), [1]);
    }
}
