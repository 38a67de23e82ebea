//! The bodies of frames, by domain.
//!
//! Each struct is one frame's payload (see [`crate::frame`] for the tags and
//! the maximum sizes). Fields are encoded by postcard in the order they are
//! declared; docs/protocol.md draws each layout byte by byte.

use serde::{Deserialize, Serialize};

use crate::bytes::{BoundedBytes, BoundedString, BoundedVec, FixedBytes};
use crate::error::{ErrorCode, ErrorDetail};
use crate::ids::{
    BlobId, DeviceAddress, DeviceId, LinkToken, MessageId, RequestId, RoomId, Seq, Timestamp,
    UserId,
};
use crate::keys::{IdentityKeys, PreKeyBundle, PreKeyCounts, PreKeyUpload, Signature};
use crate::name::{RoomName, Username};

/// Most devices one account may have. Each send carries one ciphertext per
/// device, so this bounds the size of a send frame.
pub const MAX_DEVICES_PER_USER: usize = 8;
/// Largest ciphertext of one message to one device (or one room message).
/// Text and control messages are far smaller; files go as attachments.
pub const MAX_CIPHERTEXT_LEN: usize = 32 * 1024;
/// Largest typing or receipt payload: a few ratchet headers' worth.
pub const MAX_EPHEMERAL_LEN: usize = 2 * 1024;
/// Largest encrypted profile (display name, status, avatar pointer).
pub const MAX_PROFILE_LEN: usize = 8 * 1024;
/// Most members a room may have.
pub const MAX_ROOM_MEMBERS: usize = 2048;
/// Most rooms and pending invitations listed in one reply.
pub const MAX_ROOMS_LISTED: usize = 1024;
/// Most contacts one account may keep on the relay.
pub const MAX_CONTACTS: usize = 2048;
/// Largest blob data in one chunk frame.
pub const MAX_BLOB_CHUNK: usize = 64 * 1024;
/// Most protocol versions a hello may offer.
pub const MAX_OFFERED_VERSIONS: usize = 16;
/// Longest free-text field: client agent, error message, drain hint.
pub const MAX_TEXT: usize = 256;
/// Longest relay name: a DNS name (RFC 1035 §2.3.4). It fits the one-byte
/// length in the auth signature's payload.
pub const MAX_RELAY_NAME: usize = 253;

// ---------------------------------------------------------------- handshake

/// Client's first frame: which protocol versions it speaks. Its layout is
/// frozen across versions, so that any relay can read it and answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Hello {
    /// Versions the client speaks, most preferred first.
    pub versions: BoundedVec<u16, MAX_OFFERED_VERSIONS>,
    /// Free text naming the client software, for the operator's statistics.
    pub agent: BoundedString<MAX_TEXT>,
}

/// Relay's answer to a hello it can serve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Welcome {
    /// The version this connection speaks from now on.
    pub version: u16,
    /// The relay's name, which the auth signature covers. Clients check it is
    /// the name they meant to reach.
    pub relay_name: BoundedString<MAX_RELAY_NAME>,
    /// Fresh random challenge for this connection.
    pub challenge: FixedBytes<32>,
    /// The relay's clock, for display only.
    pub server_time: Timestamp,
    /// The relay closes a connection it has heard nothing from for this long;
    /// clients ping at a third of it when they have nothing else to send.
    pub idle_timeout_ms: u32,
}

/// Proof of an identity key for this connection: the identity signing key's
/// signature over the auth-challenge label, the relay name, the connection's
/// TLS exporter value (label `EXPORTER-spider-auth`, no context, 32 bytes)
/// and the challenge. A signature for one connection is useless on any other.
pub type AuthSignature = Signature;

/// Create an account and its first device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Register {
    /// Correlates the reply.
    pub req: RequestId,
    /// The name to claim.
    pub username: Username,
    /// The first device's identity.
    pub identity: IdentityKeys,
    /// Its prekeys; signed and last-resort KEM prekeys are required.
    pub prekeys: PreKeyUpload,
    /// Signature over this connection's challenge.
    pub auth: AuthSignature,
}

/// Sign in as an existing device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Login {
    /// Correlates the reply.
    pub req: RequestId,
    /// The account.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// Signature over this connection's challenge by the device's identity.
    pub auth: AuthSignature,
}

/// Add a device to an existing account, approved by one of its devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct AddDevice {
    /// Correlates the reply.
    pub req: RequestId,
    /// The account.
    pub user: UserId,
    /// The new device's identity.
    pub identity: IdentityKeys,
    /// Its prekeys.
    pub prekeys: PreKeyUpload,
    /// The approving device.
    pub approver: DeviceId,
    /// The approver's identity signature over the device-approval label,
    /// then the user id (16 bytes) and the new `identity.signing` key (32).
    pub approval: Signature,
    /// Signature over this connection's challenge by the new device.
    pub auth: AuthSignature,
}

/// Reply to a successful register, login or add-device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct AuthOk {
    /// Echoed.
    pub req: RequestId,
    /// The account.
    pub user: UserId,
    /// Its name.
    pub username: Username,
    /// This device.
    pub device: DeviceId,
    /// One-time prekeys left on the relay.
    pub prekeys: PreKeyCounts,
    /// Envelopes waiting in this device's mailbox; they follow at once.
    pub queued: u64,
}

// ---------------------------------------------------------------- directory

/// Upload prekeys (refill or rotation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct UploadPreKeys {
    /// Correlates the reply (`Done`).
    pub req: RequestId,
    /// The keys.
    pub prekeys: PreKeyUpload,
}

/// Ask for prekey bundles of a user's devices. Each call hands out one-time
/// prekeys, so it is rate-limited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct FetchPreKeys {
    /// Correlates the reply.
    pub req: RequestId,
    /// The account.
    pub user: UserId,
    /// One device, or all of them.
    pub device: Option<DeviceId>,
}

/// Reply to [`FetchPreKeys`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PreKeyBundles {
    /// Echoed.
    pub req: RequestId,
    /// The account.
    pub user: UserId,
    /// One bundle per device asked for.
    pub bundles: BoundedVec<PreKeyBundle, MAX_DEVICES_PER_USER>,
}

/// Pushed when this device's one-time prekeys run low: upload more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PreKeysLow {
    /// What is left.
    pub remaining: PreKeyCounts,
}

/// Look an account up by name or id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct LookupUser {
    /// Correlates the reply.
    pub req: RequestId,
    /// Whom to look up.
    pub who: UserRef,
}

/// An account, by name or by id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum UserRef {
    /// By name.
    Name(Username),
    /// By id.
    Id(UserId),
}

/// One device of an account, as others see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct DeviceInfo {
    /// The device.
    pub device: DeviceId,
    /// Its identity keys.
    pub identity: IdentityKeys,
}

/// Reply to [`LookupUser`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct UserInfo {
    /// Echoed.
    pub req: RequestId,
    /// The account.
    pub user: UserId,
    /// Its name.
    pub username: Username,
    /// Its devices.
    pub devices: BoundedVec<DeviceInfo, MAX_DEVICES_PER_USER>,
}

// ---------------------------------------------------------------- envelopes

/// One device's copy of a 1:1 message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct DeviceCiphertext {
    /// The recipient device.
    pub device: DeviceId,
    /// What spider-crypto produced for it (opaque to the relay).
    pub ciphertext: BoundedBytes<MAX_CIPHERTEXT_LEN>,
}

/// Send a 1:1 message to every device of one account (the peer, or the
/// sender's own other devices). The relay refuses it with
/// `MISMATCHED_DEVICES` unless `copies` names exactly that account's current
/// devices (less the sending device), so no device is silently left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SendDirect {
    /// Correlates the reply ([`Sent`]).
    pub req: RequestId,
    /// Chosen at random by the sender; the same on every retransmission.
    pub message_id: MessageId,
    /// The account.
    pub to: UserId,
    /// One ciphertext per device.
    pub copies: BoundedVec<DeviceCiphertext, MAX_DEVICES_PER_USER>,
}

/// Send one room message; the relay fans the one ciphertext out to every
/// member device but the sender's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SendRoom {
    /// Correlates the reply ([`Sent`]).
    pub req: RequestId,
    /// Chosen at random by the sender; the same on every retransmission.
    pub message_id: MessageId,
    /// The room.
    pub room: RoomId,
    /// The room's membership epoch as the sender knows it. The relay refuses
    /// the message with `STALE_EPOCH` unless it is current: a member who
    /// joined since would get a message the sender never gave a Sender Key
    /// for.
    pub epoch: u64,
    /// [`room_devices_digest`] of the member devices the sender handed its
    /// Sender Key to (every member device but its own). The relay refuses the
    /// message with `MISMATCHED_DEVICES` unless it matches the devices it
    /// would fan out to (a member added or removed a device).
    pub devices: FixedBytes<32>,
    /// Sender Key ciphertext (opaque to the relay).
    pub ciphertext: BoundedBytes<MAX_CIPHERTEXT_LEN>,
}

/// Domain separation for [`room_devices_digest`].
pub const ROOM_DEVICES_DOMAIN: &[u8] = b"spider room devices v1";

/// The digest a [`SendRoom`] carries of the devices it is meant for:
/// SHA-256 over [`ROOM_DEVICES_DOMAIN`], then for each device in ascending
/// order (user bytes, then device number), without repeats, the user's 16
/// bytes and the device number as a big-endian u32.
pub fn room_devices_digest(devices: impl IntoIterator<Item = DeviceAddress>) -> FixedBytes<32> {
    use sha2::Digest as _;
    let mut all: Vec<DeviceAddress> = devices.into_iter().collect();
    all.sort_unstable();
    all.dedup();
    let mut h = sha2::Sha256::new();
    h.update(ROOM_DEVICES_DOMAIN);
    for d in &all {
        h.update(d.user.as_bytes());
        h.update(d.device.0.to_be_bytes());
    }
    FixedBytes(h.finalize().into())
}

/// The message is durable on the relay: the sender may forget it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Sent {
    /// Echoed.
    pub req: RequestId,
    /// Echoed.
    pub message_id: MessageId,
    /// The relay's time of storing, as recipients will see it.
    pub sent_at: Timestamp,
}

/// What an envelope carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum EnvelopeBody {
    /// A 1:1 ciphertext for this device.
    Direct {
        /// Opaque ciphertext.
        ciphertext: BoundedBytes<MAX_CIPHERTEXT_LEN>,
    },
    /// A room ciphertext.
    Room {
        /// The room.
        room: RoomId,
        /// Opaque Sender Key ciphertext.
        ciphertext: BoundedBytes<MAX_CIPHERTEXT_LEN>,
    },
    /// A signed membership change of a room this device is in (or was just
    /// removed from, or invited to). Stored like messages, so an offline
    /// member learns of removals, in order, before later messages. Its
    /// envelope's `from` is the actor and its `message_id` is random, chosen
    /// by the relay.
    RoomChange(SignedRoomChange),
}

/// A stored message as its recipient device receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Envelope {
    /// The sender's message id.
    pub message_id: MessageId,
    /// The sending device (authenticated by the relay at login).
    pub from: DeviceAddress,
    /// When the relay stored it.
    pub sent_at: Timestamp,
    /// The content.
    pub body: EnvelopeBody,
}

/// Relay pushes one stored envelope. Envelopes of one mailbox come in `seq`
/// order; the device acks them (cumulatively) once it has handled them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Deliver {
    /// Position in this device's mailbox.
    pub seq: Seq,
    /// The envelope.
    pub envelope: Envelope,
}

/// Every envelope up to and including `up_to` has been handled: delete them.
/// An `up_to` beyond the last sequence number delivered on this connection
/// acks only what was delivered, so a confused client cannot lose mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Ack {
    /// The highest handled sequence number.
    pub up_to: Seq,
}

/// Pushed once after login, when everything that was queued has been sent:
/// the device is caught up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct CaughtUp {
    /// The last sequence number sent, if any.
    pub last: Option<Seq>,
}

/// Where an ephemeral payload goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum EphemeralTarget {
    /// Every online device of one account, one ciphertext each.
    User {
        /// The account.
        user: UserId,
        /// One ciphertext per device.
        copies: BoundedVec<EphemeralCopy, MAX_DEVICES_PER_USER>,
    },
    /// Every online member device of a room, one shared ciphertext.
    Room {
        /// The room.
        room: RoomId,
        /// Sender Key ciphertext.
        payload: BoundedBytes<MAX_EPHEMERAL_LEN>,
    },
}

/// One device's copy of an ephemeral payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct EphemeralCopy {
    /// The device.
    pub device: DeviceId,
    /// Opaque ciphertext.
    pub payload: BoundedBytes<MAX_EPHEMERAL_LEN>,
}

/// Typing notices and receipts: relayed to online devices only, never stored,
/// never acked. Lost if nobody is online, by design.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SendEphemeral {
    /// Where to.
    pub to: EphemeralTarget,
}

/// An ephemeral payload as its recipient receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Ephemeral {
    /// The sending device.
    pub from: DeviceAddress,
    /// The room, for room ephemerals.
    pub room: Option<RoomId>,
    /// Opaque ciphertext.
    pub payload: BoundedBytes<MAX_EPHEMERAL_LEN>,
}

// ---------------------------------------------------------------- rooms

/// A member's power in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Role {
    /// Joined; may send, invite nobody, leave.
    Member,
    /// May invite, kick and ban members, and make invite links.
    Admin,
    /// May do anything, including changing roles. Exactly one per room.
    Owner,
}

/// One change to a room's membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum RoomAction {
    /// Create the room with the actor as owner (epoch 0).
    Create {
        /// The room's relay-wide name.
        name: RoomName,
    },
    /// Invite an account.
    Invite {
        /// Who.
        user: UserId,
    },
    /// Accept the actor's pending invitation.
    Accept,
    /// Decline the actor's pending invitation.
    Decline,
    /// Join through an invite link.
    JoinByLink {
        /// The link's secret.
        token: LinkToken,
    },
    /// Leave the room.
    Leave,
    /// Remove a member (may rejoin if invited again).
    Kick {
        /// Who.
        user: UserId,
    },
    /// Remove a member and refuse their return.
    Ban {
        /// Who.
        user: UserId,
    },
    /// Lift a ban.
    Unban {
        /// Who.
        user: UserId,
    },
    /// Change a member's role.
    SetRole {
        /// Who.
        user: UserId,
        /// The new role.
        role: Role,
    },
    /// Make an invite link. The relay picks the token and returns it.
    CreateLink {
        /// When the link stops working, if ever.
        expires_at: Option<Timestamp>,
        /// How many joins it allows, if limited.
        max_uses: Option<u32>,
    },
    /// Revoke an invite link.
    RevokeLink {
        /// The link's secret.
        token: LinkToken,
    },
}

/// The signed part of a room change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RoomChange {
    /// The room. For `Create`, all zeroes: the relay assigns the id.
    pub room: RoomId,
    /// The room's membership epoch this change applies to. The relay refuses
    /// it with `STALE_EPOCH` (and the current epoch) unless it is current, so
    /// changes are totally ordered and a signed change cannot be replayed.
    pub epoch: u64,
    /// The device that signs.
    pub actor: DeviceAddress,
    /// When the actor made it (checked to be near the relay's clock).
    pub at: Timestamp,
    /// What changes.
    pub action: RoomAction,
}

/// A room change and the actor's identity signature over the room-change
/// label and the postcard encoding of `change`. Relay and members verify it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SignedRoomChange {
    /// The change.
    pub change: RoomChange,
    /// The actor device's identity signature.
    pub signature: Signature,
}

/// Submit a room change. The reply is [`LinkCreated`] for `CreateLink`,
/// `Done` when the actor is no longer in the room afterwards (`Leave`,
/// `Decline`), and [`RoomInfo`] otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ChangeRoom {
    /// Correlates the reply.
    pub req: RequestId,
    /// The change.
    pub change: SignedRoomChange,
}

/// A room, by name or id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum RoomRef {
    /// By name.
    Name(RoomName),
    /// By id.
    Id(RoomId),
}

/// Ask for a room's state. Answered for members and invitees only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct GetRoom {
    /// Correlates the reply.
    pub req: RequestId,
    /// The room.
    pub room: RoomRef,
}

/// A room member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Member {
    /// The account.
    pub user: UserId,
    /// Its name.
    pub username: Username,
    /// Its role.
    pub role: Role,
    /// Its devices, to which room messages fan out.
    pub devices: BoundedVec<DeviceId, MAX_DEVICES_PER_USER>,
}

/// A room's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RoomInfo {
    /// Echoed.
    pub req: RequestId,
    /// The room.
    pub room: RoomId,
    /// Its name.
    pub name: RoomName,
    /// The current membership epoch.
    pub epoch: u64,
    /// Members.
    pub members: BoundedVec<Member, MAX_ROOM_MEMBERS>,
    /// Accounts invited but not yet joined.
    pub invited: BoundedVec<UserId, MAX_ROOM_MEMBERS>,
}

impl RoomInfo {
    /// The [`SendRoom::devices`] digest `sender` names when it sends to this
    /// room as it stands: every member device but `sender`.
    pub fn devices_digest(&self, sender: DeviceAddress) -> FixedBytes<32> {
        room_devices_digest(
            self.members
                .iter()
                .flat_map(|m| {
                    m.devices.iter().map(|d| DeviceAddress {
                        user: m.user,
                        device: *d,
                    })
                })
                .filter(|a| *a != sender),
        )
    }
}

/// Reply to a `CreateLink` change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct LinkCreated {
    /// Echoed.
    pub req: RequestId,
    /// The room.
    pub room: RoomId,
    /// The new epoch.
    pub epoch: u64,
    /// The link's secret.
    pub token: LinkToken,
}

/// What a link leads to, so that a joiner can sign a `JoinByLink` change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ResolveLink {
    /// Correlates the reply.
    pub req: RequestId,
    /// The link's secret.
    pub token: LinkToken,
}

/// Reply to [`ResolveLink`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct LinkInfo {
    /// Echoed.
    pub req: RequestId,
    /// The room.
    pub room: RoomId,
    /// Its name.
    pub name: RoomName,
    /// Its current epoch.
    pub epoch: u64,
}

/// List my rooms and pending invitations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ListRooms {
    /// Correlates the reply.
    pub req: RequestId,
}

/// One room in a [`RoomList`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RoomSummary {
    /// The room.
    pub room: RoomId,
    /// Its name.
    pub name: RoomName,
    /// My role, or `None` for a pending invitation.
    pub role: Option<Role>,
    /// Number of members.
    pub members: u32,
}

/// Reply to [`ListRooms`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RoomList {
    /// Echoed.
    pub req: RequestId,
    /// Rooms I am in and rooms I am invited to.
    pub rooms: BoundedVec<RoomSummary, MAX_ROOMS_LISTED>,
}

// ---------------------------------------------------------------- presence, contacts, profiles

/// What a user says about their own availability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum PresenceStatus {
    /// Available.
    Online,
    /// Connected but away.
    Away,
}

/// Set my presence. Shown to my contacts and room co-members only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SetPresence {
    /// The status.
    pub status: PresenceStatus,
}

/// Someone's presence, as seen by others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Presence {
    /// At least one device connected, status online.
    Online,
    /// Connected, status away.
    Away,
    /// No device connected.
    Offline {
        /// When the last device left, if known.
        last_seen: Option<Timestamp>,
    },
}

/// Pushed when the presence of a contact or co-member changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PresenceUpdate {
    /// Whose.
    pub user: UserId,
    /// Now.
    pub presence: Presence,
}

/// Add or remove a contact. Adding lets that account see my presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct EditContact {
    /// Correlates the reply (`Done`).
    pub req: RequestId,
    /// Whom.
    pub user: UserId,
    /// Add (`true`) or remove (`false`).
    pub add: bool,
}

/// List my contacts with their presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ListContacts {
    /// Correlates the reply.
    pub req: RequestId,
}

/// One contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Contact {
    /// The account.
    pub user: UserId,
    /// Its name.
    pub username: Username,
    /// Its presence, if it lets me see it (it has me as a contact, or we
    /// share a room); otherwise `None`.
    pub presence: Option<Presence>,
}

/// Reply to [`ListContacts`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Contacts {
    /// Echoed.
    pub req: RequestId,
    /// The contacts.
    pub contacts: BoundedVec<Contact, MAX_CONTACTS>,
}

/// Store my encrypted profile (the key travels in 1:1 messages).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SetProfile {
    /// Correlates the reply (`Done`).
    pub req: RequestId,
    /// Ciphertext.
    pub blob: BoundedBytes<MAX_PROFILE_LEN>,
}

/// Fetch someone's encrypted profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct GetProfile {
    /// Correlates the reply.
    pub req: RequestId,
    /// Whose.
    pub user: UserId,
}

/// Reply to [`GetProfile`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Profile {
    /// Echoed.
    pub req: RequestId,
    /// Whose.
    pub user: UserId,
    /// The ciphertext, if one was set.
    pub blob: Option<BoundedBytes<MAX_PROFILE_LEN>>,
}

// ---------------------------------------------------------------- blobs

/// Start uploading an encrypted attachment of a known size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BlobUploadStart {
    /// Correlates the reply ([`BlobUploadReady`]).
    pub req: RequestId,
    /// Total ciphertext size in bytes.
    pub size: u64,
}

/// The relay reserved space: send the chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BlobUploadReady {
    /// Echoed.
    pub req: RequestId,
    /// The new blob's id.
    pub blob: BlobId,
}

/// A piece of a blob, in either direction. Chunks of one blob come in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BlobChunk {
    /// The blob.
    pub blob: BlobId,
    /// Where this chunk starts.
    pub offset: u64,
    /// The bytes.
    pub data: BoundedBytes<MAX_BLOB_CHUNK>,
}

/// All chunks are sent: check and keep the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BlobUploadFinish {
    /// Correlates the reply ([`BlobStored`]).
    pub req: RequestId,
    /// The blob.
    pub blob: BlobId,
    /// SHA-256 of the whole ciphertext.
    pub digest: FixedBytes<32>,
}

/// The blob is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BlobStored {
    /// Echoed.
    pub req: RequestId,
    /// The blob.
    pub blob: BlobId,
    /// When the relay will delete it.
    pub expires_at: Timestamp,
}

/// Download a blob from an offset (to resume).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BlobDownload {
    /// Correlates the reply ([`BlobChunk`]s, then [`BlobEnd`]).
    pub req: RequestId,
    /// The blob.
    pub blob: BlobId,
    /// Where to start.
    pub offset: u64,
}

/// Download done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BlobEnd {
    /// Echoed.
    pub req: RequestId,
    /// The blob.
    pub blob: BlobId,
    /// Its total size.
    pub size: u64,
    /// Its SHA-256, as given at upload.
    pub digest: FixedBytes<32>,
}

// ---------------------------------------------------------------- connection

/// Liveness probe; the peer answers with a pong carrying the same nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Ping {
    /// Echoed in the pong.
    pub nonce: u64,
}

/// Answer to a [`Ping`], with its nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Pong {
    /// The ping's nonce.
    pub nonce: u64,
}

/// A request succeeded and has nothing else to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Done {
    /// Echoed.
    pub req: RequestId,
}

/// The relay is shutting down: reconnect, after the delay, here or elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Drain {
    /// How long to wait before reconnecting, in milliseconds.
    pub reconnect_after_ms: u32,
    /// Another address to try, if the operator set one.
    pub alternative: Option<BoundedString<MAX_TEXT>>,
}

/// Something went wrong. With `req`, that request failed. Without, the error
/// is about the connection or about a frame that has no `req` (`Ack`,
/// `SendEphemeral`, `SetPresence`, `BlobChunk`, `Pong`). Whatever `req`,
/// the relay closes the connection after an error whose code
/// [is fatal](ErrorCode::is_fatal), and only then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ErrorFrame {
    /// The failed request, if the error is about one.
    pub req: Option<RequestId>,
    /// Stable numeric code.
    pub code: ErrorCode,
    /// Human-readable; never contains user data or keys.
    pub message: BoundedString<MAX_TEXT>,
    /// Machine-readable details for some codes.
    pub detail: ErrorDetail,
}

impl RoomChange {
    /// The bytes the actor signs (after the room-change label): the postcard
    /// encoding of this change.
    pub fn signed_bytes(&self) -> Vec<u8> {
        // Every field is bounded and fixed in shape: encoding into a Vec
        // cannot fail, and an empty result would fail verification anyway.
        postcard::to_allocvec(self).unwrap_or_default()
    }
}
