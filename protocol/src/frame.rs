//! The two frame enums and their size limits.
//!
//! A frame is a postcard-encoded [`ClientFrame`] (client to relay) or
//! [`ServerFrame`] (relay to client). Postcard writes an enum variant as its
//! index in varint form; every index here is below 128, so **the first byte
//! of a frame's body is its tag**. The decoder reads that byte and checks the
//! declared length against the tag's maximum before it allocates anything.
//!
//! Tags are stable within a protocol version. Tag 0 in both directions
//! (`Hello`, `Welcome`) and tag 1 from the relay (`Error`) are frozen across
//! all versions, so version negotiation works between any two releases.

use serde::{Deserialize, Serialize};

use crate::keys::{
    KEM_PUBLIC_LEN, MAX_ONE_TIME_KEM_PREKEYS_PER_UPLOAD, MAX_ONE_TIME_PREKEYS_PER_UPLOAD,
};
use crate::message::*;

/// Room for ids, varints and option tags around the large fields.
const SLACK: usize = 256;
/// Largest encoding of one KEM prekey: id, key, signature.
const KEM_PREKEY_MAX: usize = 5 + KEM_PUBLIC_LEN + 64;
/// Largest encoding of a prekey upload.
const PREKEY_UPLOAD_MAX: usize = SLACK
    + (5 + 32 + 64)
    + KEM_PREKEY_MAX
    + MAX_ONE_TIME_PREKEYS_PER_UPLOAD * (5 + 32)
    + MAX_ONE_TIME_KEM_PREKEYS_PER_UPLOAD * KEM_PREKEY_MAX;
/// Largest encoding of one device's prekey bundle.
const BUNDLE_MAX: usize = 5 + 128 + (5 + 32 + 64) + KEM_PREKEY_MAX + 1 + (1 + 5 + 32);
/// Largest encoding of a signed room change: room, epoch, actor, time,
/// action (the largest is `Create` with a 32-byte name: 34 bytes with its
/// tag), signature.
const ROOM_CHANGE_MAX: usize = 16 + 10 + (16 + 5) + 10 + 34 + 64;
/// Largest encoding of a room member: id, name, role, devices.
const MEMBER_MAX: usize = 16 + 33 + 1 + 1 + MAX_DEVICES_PER_USER * 5;
/// Largest frame that is not otherwise listed: handshake and control frames.
const SMALL: usize = 1024;

/// The largest body any frame may have, in either direction. The decoder
/// refuses a larger declared length before reading the tag.
pub const MAX_FRAME_LEN: usize = {
    let a = ClientKind::max_len_of_all();
    let b = ServerKind::max_len_of_all();
    if a > b { a } else { b }
};

macro_rules! frames {
    (
        $(#[$em:meta])* $enum:ident / $kind:ident {
            $($(#[$vm:meta])* $tag:literal => $var:ident($ty:ty) max $max:expr,)*
        }
    ) => {
        $(#[$em])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        #[non_exhaustive]
        pub enum $enum {
            $($(#[$vm])* $var($ty),)*
        }

        #[doc = concat!("The kind of a [`", stringify!($enum), "`]: its tag, name and maximum size.")]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $kind {
            $(#[doc = concat!("Tag ", stringify!($tag), ": [`", stringify!($ty), "`].")] $var,)*
        }

        impl $kind {
            /// Every kind, in tag order.
            pub const ALL: &'static [$kind] = &[$($kind::$var),*];

            /// The kind whose tag this is.
            pub const fn from_tag(tag: u8) -> Option<Self> {
                match tag {
                    $($tag => Some(Self::$var),)*
                    _ => None,
                }
            }

            /// The tag: the first byte of the frame's body.
            pub const fn tag(self) -> u8 {
                match self {
                    $(Self::$var => $tag,)*
                }
            }

            /// The kind's name, as in docs/protocol.md.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$var => stringify!($var),)*
                }
            }

            /// The largest body a frame of this kind may have, tag included.
            pub const fn max_len(self) -> usize {
                match self {
                    $(Self::$var => $max,)*
                }
            }

            const fn max_len_of_all() -> usize {
                let mut m = 0;
                $(if $max > m { m = $max; })*
                m
            }
        }

        impl $enum {
            /// This frame's kind.
            pub fn kind(&self) -> $kind {
                match self {
                    $(Self::$var(_) => $kind::$var,)*
                }
            }
        }

        $(
            impl From<$ty> for $enum {
                fn from(v: $ty) -> Self {
                    Self::$var(v)
                }
            }
        )*
    };
}

frames! {
    /// A frame from a client to the relay.
    ClientFrame / ClientKind {
        /// First frame of every connection. Frozen layout.
        0 => Hello(Hello) max SMALL,
        /// Create an account.
        1 => Register(Register) max PREKEY_UPLOAD_MAX + SLACK,
        /// Sign in as a device.
        2 => Login(Login) max SMALL,
        /// Add a device to an account.
        3 => AddDevice(AddDevice) max PREKEY_UPLOAD_MAX + SLACK,
        /// Refill or rotate prekeys.
        4 => UploadPreKeys(UploadPreKeys) max PREKEY_UPLOAD_MAX,
        /// Get prekey bundles.
        5 => FetchPreKeys(FetchPreKeys) max SMALL,
        /// Look up an account.
        6 => LookupUser(LookupUser) max SMALL,
        /// Send a 1:1 message.
        7 => SendDirect(SendDirect) max SLACK + MAX_DEVICES_PER_USER * (5 + 3 + MAX_CIPHERTEXT_LEN),
        /// Send a room message.
        8 => SendRoom(SendRoom) max SLACK + MAX_CIPHERTEXT_LEN,
        /// Send a typing notice or receipt.
        9 => SendEphemeral(SendEphemeral) max SLACK + MAX_DEVICES_PER_USER * (5 + 2 + MAX_EPHEMERAL_LEN),
        /// Acknowledge delivered envelopes.
        10 => Ack(Ack) max SMALL,
        /// Change a room's membership.
        11 => ChangeRoom(ChangeRoom) max SMALL,
        /// Read a room's state.
        12 => GetRoom(GetRoom) max SMALL,
        /// Resolve an invite link.
        13 => ResolveLink(ResolveLink) max SMALL,
        /// List my rooms and invitations.
        14 => ListRooms(ListRooms) max SMALL,
        /// Set my presence.
        15 => SetPresence(SetPresence) max SMALL,
        /// Add or remove a contact.
        16 => EditContact(EditContact) max SMALL,
        /// List contacts.
        17 => ListContacts(ListContacts) max SMALL,
        /// Store my encrypted profile.
        18 => SetProfile(SetProfile) max SLACK + MAX_PROFILE_LEN,
        /// Fetch a profile.
        19 => GetProfile(GetProfile) max SMALL,
        /// Start an upload.
        20 => BlobUploadStart(BlobUploadStart) max SMALL,
        /// Upload a chunk.
        21 => BlobChunk(BlobChunk) max SLACK + MAX_BLOB_CHUNK,
        /// Finish an upload.
        22 => BlobUploadFinish(BlobUploadFinish) max SMALL,
        /// Download a blob.
        23 => BlobDownload(BlobDownload) max SMALL,
        /// Liveness probe.
        24 => Ping(Ping) max SMALL,
        /// Answer to the relay's ping.
        25 => Pong(Pong) max SMALL,
    }
}

frames! {
    /// A frame from the relay to a client.
    ServerFrame / ServerKind {
        /// Answer to a hello. Frozen layout.
        0 => Welcome(Welcome) max SMALL,
        /// An error. Frozen layout.
        1 => Error(ErrorFrame) max SMALL,
        /// Authenticated.
        2 => AuthOk(AuthOk) max SMALL,
        /// A request succeeded.
        3 => Done(Done) max SMALL,
        /// Prekey bundles.
        4 => PreKeyBundles(PreKeyBundles) max SLACK + MAX_DEVICES_PER_USER * BUNDLE_MAX,
        /// Run low on one-time prekeys.
        5 => PreKeysLow(PreKeysLow) max SMALL,
        /// An account.
        6 => UserInfo(UserInfo) max SLACK + MAX_DEVICES_PER_USER * (5 + 128),
        /// A send is durable.
        7 => Sent(Sent) max SMALL,
        /// A stored envelope.
        8 => Deliver(Deliver) max SLACK + MAX_CIPHERTEXT_LEN + ROOM_CHANGE_MAX,
        /// Everything queued has been sent.
        9 => CaughtUp(CaughtUp) max SMALL,
        /// A typing notice or receipt.
        10 => Ephemeral(Ephemeral) max SLACK + MAX_EPHEMERAL_LEN,
        /// A room's state.
        11 => RoomInfo(RoomInfo) max SLACK + MAX_ROOM_MEMBERS * (MEMBER_MAX + 16),
        /// A new invite link.
        12 => LinkCreated(LinkCreated) max SMALL,
        /// What a link leads to.
        13 => LinkInfo(LinkInfo) max SMALL,
        /// My rooms.
        14 => RoomList(RoomList) max SLACK + MAX_ROOMS_LISTED * (16 + 33 + 2 + 5),
        /// A presence change.
        15 => Presence(PresenceUpdate) max SMALL,
        /// My contacts.
        16 => Contacts(Contacts) max SLACK + MAX_CONTACTS * (16 + 33 + 13),
        /// A profile.
        17 => Profile(Profile) max SLACK + MAX_PROFILE_LEN,
        /// An upload may start.
        18 => BlobUploadReady(BlobUploadReady) max SMALL,
        /// An upload is durable.
        19 => BlobStored(BlobStored) max SMALL,
        /// A downloaded chunk.
        20 => BlobChunk(BlobChunk) max SLACK + MAX_BLOB_CHUNK,
        /// A download is complete.
        21 => BlobEnd(BlobEnd) max SMALL,
        /// Liveness probe.
        22 => Ping(Ping) max SMALL,
        /// Answer to the client's ping.
        23 => Pong(Pong) max SMALL,
        /// The relay is shutting down.
        24 => Drain(Drain) max SMALL,
    }
}
