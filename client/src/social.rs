//! Profiles, presence, invite links, and what the SDK remembers about
//! contacts and rooms beyond the core records: display names, profile keys,
//! roles, pending invitations, verification marks.
//!
//! The engine's side (requests, replies) is in `engine/social.rs`; this
//! module holds the formats and the profile records, so that an application
//! can read them offline (the CLI's `room members`, `contacts`).
//!
//! # Encrypted profile (what `SetProfile` stores)
//!
//! Each account has a random 32-byte **profile key**, made the first time it
//! sets a profile. It travels to contacts inside ordinary 1:1 messages
//! ([`crate::content::Body::ProfileKey`], so under the Double Ratchet, as
//! Signal shares profile keys); the relay stores only the blob below, which
//! it cannot read.
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0      | 1    | version, [`PROFILE_VERSION`] = `0x01` |
//! | 1      | 12   | nonce, random |
//! | 13     | [`PROFILE_PLAINTEXT_LEN`] + 16 | ChaCha20-Poly1305 of the padded plaintext, tag appended |
//!
//! The AEAD key is HKDF-SHA256(salt = 32 zero bytes, IKM = profile key,
//! info = `spider/v1/kdf/profile`); the associated data is the version byte
//! then the owner's 16-byte `UserId`, so a blob cannot be passed off as
//! another account's. The plaintext is the postcard encoding of the fields
//! (today one: the display name, a string of at most
//! [`MAX_DISPLAY_NAME_LEN`] bytes) followed by zero bytes up to exactly
//! [`PROFILE_PLAINTEXT_LEN`] bytes, so that every blob has the same size and
//! the relay does not learn the name's length.
//!
//! # Records
//!
//! Encrypted like every profile record ([`crate::profile`]):
//!
//! | key                      | value |
//! |--------------------------|-------|
//! | `social/own-key`         | our profile key (32 bytes) |
//! | `social/own-name`        | our display name (string) |
//! | `social/key/<user 16>`   | a contact's profile key (32 bytes) |
//! | `social/peer/<user 16>`  | [`PeerRecord`]: their display name, presence subscription, whether they have our key |
//! | `social/room/<room 16>`  | [`RoomExtra`]: roles, invitees, who invited us, whether we left |
//! | `cli/verified`           | accounts whose safety number was marked verified (`Vec<UserId>`; the name predates this module, the CLI wrote it first) |

use serde::{Deserialize, Serialize};
use spider_crypto::primitives::{AEAD_NONCE_LEN, aead_open, aead_seal, hkdf_sha256};
use spider_protocol::bytes::BoundedString;
use spider_protocol::ids::{LinkToken, RoomId, Timestamp, UserId};
use spider_protocol::message::{Presence, Role};
use spider_protocol::name::Username;
use zeroize::Zeroizing;

use crate::keystore::KeystoreError;
use crate::profile::{BoxRng, Contact, Profile, RoomState, key};
use crate::store::ProfileStore;

/// Version byte of the profile blob.
pub const PROFILE_VERSION: u8 = 1;
/// Longest display name, in bytes of UTF-8: room for a full name in any
/// script (Signal allows 26 characters each for given and family name).
pub const MAX_DISPLAY_NAME_LEN: usize = 128;
/// Size every profile plaintext is padded to: the encoded fields at their
/// largest (a 2-byte length and 128 bytes) with room for a few more fields.
pub const PROFILE_PLAINTEXT_LEN: usize = 256;
/// Size of every profile blob: version, nonce, padded plaintext, tag.
pub const PROFILE_BLOB_LEN: usize = 1 + AEAD_NONCE_LEN + PROFILE_PLAINTEXT_LEN + 16;
/// How an invite link is written: this prefix, then the token in hex.
pub const INVITE_LINK_PREFIX: &str = "spider://join/";
/// Most contacts one connection subscribes (`EditContact`) on sign-in;
/// the rest follow on later connections. Each costs a request and a relay
/// flush; 32 stays well inside the relay's default burst of 100 requests,
/// with room for the connection's other work.
pub const MAX_SUBSCRIBE_PER_CONNECTION: usize = 32;
/// Most profiles one `refresh_profiles` fetches, for the same reason.
pub const MAX_PROFILE_FETCHES: usize = 32;

pub(crate) const K_OWN_KEY: &[u8] = b"social/own-key";
pub(crate) const K_OWN_NAME: &[u8] = b"social/own-name";
pub(crate) const P_PEER_KEY: &[u8] = b"social/key/";
pub(crate) const P_PEER: &[u8] = b"social/peer/";
pub(crate) const P_ROOM_EXTRA: &[u8] = b"social/room/";
pub(crate) const K_VERIFIED: &[u8] = b"cli/verified";

/// The link a friend can paste: `spider://join/` and the token in hex.
#[must_use]
pub fn invite_link(token: &LinkToken) -> String {
    format!("{INVITE_LINK_PREFIX}{}", token.to_hex())
}

/// Parses an invite link (`spider://join/HEX`); `None` for anything else.
#[must_use]
pub fn parse_invite_link(s: &str) -> Option<LinkToken> {
    LinkToken::from_hex(s.trim().strip_prefix(INVITE_LINK_PREFIX)?)
}

/// A display name as it may be shown: control characters (which could
/// drive a terminal) and bidirectional overrides (which could make a name
/// read as another) become U+FFFD; surrounding white space goes. Names come
/// from other people's profiles: untrusted.
#[must_use]
pub fn sanitize_display_name(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Sealing or opening a profile blob failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileBlobError {
    /// The display name is over [`MAX_DISPLAY_NAME_LEN`] bytes.
    #[error("display name longer than {MAX_DISPLAY_NAME_LEN} bytes")]
    NameTooLong,
    /// Not a profile blob of this version and size.
    #[error("malformed profile")]
    Malformed,
    /// The blob does not decrypt with this key for this account.
    #[error("profile does not decrypt")]
    Decrypt,
}

#[derive(Serialize, Deserialize)]
struct ProfileFields {
    display_name: BoundedString<MAX_DISPLAY_NAME_LEN>,
}

fn blob_key(profile_key: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, ProfileBlobError> {
    let mut k = Zeroizing::new([0u8; 32]);
    hkdf_sha256(
        &[0u8; 32],
        profile_key,
        spider_crypto::domain::KDF_PROFILE,
        &mut k[..],
    )
    .map_err(|_| ProfileBlobError::Malformed)?;
    Ok(k)
}

fn blob_ad(user: &UserId) -> [u8; 17] {
    let mut ad = [0u8; 17];
    ad[0] = PROFILE_VERSION;
    ad[1..].copy_from_slice(user.as_bytes());
    ad
}

/// Encrypts `display_name` as `user`'s profile under `profile_key` (layout
/// in the module doc).
///
/// # Errors
/// [`ProfileBlobError::NameTooLong`].
pub fn seal_profile(
    profile_key: &[u8; 32],
    user: &UserId,
    display_name: &str,
    rng: &mut BoxRng,
) -> Result<Vec<u8>, ProfileBlobError> {
    let fields = ProfileFields {
        display_name: BoundedString::new(display_name.to_owned())
            .map_err(|_| ProfileBlobError::NameTooLong)?,
    };
    let mut plain =
        Zeroizing::new(postcard::to_allocvec(&fields).map_err(|_| ProfileBlobError::Malformed)?);
    if plain.len() > PROFILE_PLAINTEXT_LEN {
        return Err(ProfileBlobError::NameTooLong);
    }
    plain.resize(PROFILE_PLAINTEXT_LEN, 0);
    let mut nonce = [0u8; AEAD_NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let sealed = aead_seal(&*blob_key(profile_key)?, &nonce, &blob_ad(user), &plain)
        .map_err(|_| ProfileBlobError::Malformed)?;
    let mut out = Vec::with_capacity(PROFILE_BLOB_LEN);
    out.push(PROFILE_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decrypts `user`'s profile blob with their `profile_key`; returns the
/// display name, sanitized ([`sanitize_display_name`]), `None` if empty.
///
/// # Errors
/// [`ProfileBlobError::Malformed`] (wrong version or size, bad padding,
/// non-canonical fields), [`ProfileBlobError::Decrypt`]. Never panics.
pub fn open_profile(
    profile_key: &[u8; 32],
    user: &UserId,
    blob: &[u8],
) -> Result<Option<String>, ProfileBlobError> {
    if blob.len() != PROFILE_BLOB_LEN || blob.first() != Some(&PROFILE_VERSION) {
        return Err(ProfileBlobError::Malformed);
    }
    let (nonce, sealed) = blob[1..].split_at(AEAD_NONCE_LEN);
    let nonce: [u8; AEAD_NONCE_LEN] = nonce.try_into().map_err(|_| ProfileBlobError::Malformed)?;
    let plain = Zeroizing::new(
        aead_open(&*blob_key(profile_key)?, &nonce, &blob_ad(user), sealed)
            .map_err(|_| ProfileBlobError::Decrypt)?,
    );
    let (fields, rest): (ProfileFields, &[u8]) =
        postcard::take_from_bytes(&plain).map_err(|_| ProfileBlobError::Malformed)?;
    let used = plain.len() - rest.len();
    if rest.iter().any(|b| *b != 0)
        || !spider_protocol::codec::is_canonical(&fields, &plain[..used])
    {
        return Err(ProfileBlobError::Malformed);
    }
    let name = sanitize_display_name(fields.display_name.as_str());
    Ok((!name.is_empty()).then_some(name))
}

/// What we remember about another account besides [`Contact`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Their display name, from their profile (sanitized).
    pub display_name: Option<String>,
    /// The relay knows them as our contact (`EditContact`): they see our
    /// presence.
    pub subscribed: bool,
    /// Our profile key went to them.
    pub key_sent: bool,
}

/// What we remember about a room besides [`RoomState`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomExtra {
    /// Members' roles, as of the last room details or change seen.
    pub roles: Vec<(UserId, Role)>,
    /// Accounts invited and not yet joined.
    pub invited: Vec<UserId>,
    /// Who invited us, and when (for an invitation).
    pub inviter: Option<(UserId, Timestamp)>,
    /// We left (or declined) by our own choice; false if removed.
    pub left: bool,
}

/// A room with everything the SDK knows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomDetails {
    /// Membership, epoch, Sender Key bookkeeping.
    pub state: RoomState,
    /// Roles, invitees, inviter.
    pub extra: RoomExtra,
}

impl RoomDetails {
    /// `user`'s role, if a member.
    #[must_use]
    pub fn role_of(&self, user: &UserId) -> Option<Role> {
        self.extra
            .roles
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, r)| *r)
    }

    /// Whether this is a pending invitation for `me`.
    #[must_use]
    pub fn is_invitation(&self, me: &UserId) -> bool {
        !self.state.joined && !self.extra.left && self.extra.invited.contains(me)
    }
}

/// A contact with everything the SDK knows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactDetails {
    /// Name and devices.
    pub contact: Contact,
    /// Display name from their profile.
    pub display_name: Option<String>,
    /// Marked verified (safety number compared).
    pub verified: bool,
}

/// A contact as the relay lists it (`ListContacts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactPresence {
    /// The account.
    pub user: UserId,
    /// Its name.
    pub username: Username,
    /// Its presence; `None` unless it lets us see it (it has us as a
    /// contact, or we share a room).
    pub presence: Option<Presence>,
}

impl<S: ProfileStore> Profile<S> {
    /// Our profile key, if we ever set a profile.
    ///
    /// # Errors
    /// Keystore failure, or a stored key of the wrong size.
    pub(crate) fn own_profile_key(&self) -> Result<Option<Zeroizing<[u8; 32]>>, KeystoreError> {
        self.ks.get_bytes(K_OWN_KEY)?.map(key32).transpose()
    }

    /// Our profile key, made (and saved) if we have none.
    pub(crate) fn own_profile_key_or_new(&mut self) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        if let Some(k) = self.own_profile_key()? {
            return Ok(k);
        }
        let mut k = Zeroizing::new([0u8; 32]);
        self.rng.fill_bytes(&mut k[..]);
        self.ks.put_bytes(&mut *self.rng, K_OWN_KEY, &k[..])?;
        Ok(k)
    }

    /// `user`'s profile key, if they gave it to us.
    pub(crate) fn peer_profile_key(
        &self,
        user: &UserId,
    ) -> Result<Option<Zeroizing<[u8; 32]>>, KeystoreError> {
        self.ks
            .get_bytes(&key(P_PEER_KEY, &[user.as_bytes()]))?
            .map(key32)
            .transpose()
    }

    pub(crate) fn save_peer_profile_key(
        &mut self,
        user: &UserId,
        k: &[u8; 32],
    ) -> Result<(), KeystoreError> {
        self.ks
            .put_bytes(&mut *self.rng, &key(P_PEER_KEY, &[user.as_bytes()]), k)
    }

    /// What we remember about `user` (defaults if nothing).
    ///
    /// # Errors
    /// Keystore failure.
    pub fn peer_record(&self, user: &UserId) -> Result<PeerRecord, KeystoreError> {
        Ok(self
            .get(&key(P_PEER, &[user.as_bytes()]))?
            .unwrap_or_default())
    }

    pub(crate) fn save_peer_record(
        &mut self,
        user: &UserId,
        r: &PeerRecord,
    ) -> Result<(), KeystoreError> {
        self.put(&key(P_PEER, &[user.as_bytes()]), r)
    }

    /// `user`'s display name, from the last profile of theirs we read.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn display_name_of(&self, user: &UserId) -> Result<Option<String>, KeystoreError> {
        Ok(self.peer_record(user)?.display_name)
    }

    /// Our own display name, as last set.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn own_display_name(&self) -> Result<Option<String>, KeystoreError> {
        self.get(K_OWN_NAME)
    }

    pub(crate) fn save_own_display_name(&mut self, name: &str) -> Result<(), KeystoreError> {
        self.put(K_OWN_NAME, &name.to_owned())
    }

    /// A room's extra record (defaults if none).
    ///
    /// # Errors
    /// Keystore failure.
    pub fn room_extra(&self, room: &RoomId) -> Result<RoomExtra, KeystoreError> {
        Ok(self
            .get(&key(P_ROOM_EXTRA, &[room.as_bytes()]))?
            .unwrap_or_default())
    }

    pub(crate) fn save_room_extra(
        &mut self,
        room: &RoomId,
        e: &RoomExtra,
    ) -> Result<(), KeystoreError> {
        self.put(&key(P_ROOM_EXTRA, &[room.as_bytes()]), e)
    }

    /// A room with its roles and invitees.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn room_details(&self, room: &RoomId) -> Result<Option<RoomDetails>, KeystoreError> {
        let Some(state) = self.room(room)? else {
            return Ok(None);
        };
        Ok(Some(RoomDetails {
            extra: self.room_extra(room)?,
            state,
        }))
    }

    /// Every room this profile knows of (joined, invited, left), with
    /// roles and invitees.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn rooms_details(&self) -> Result<Vec<RoomDetails>, KeystoreError> {
        self.rooms()?
            .into_iter()
            .map(|state| {
                Ok(RoomDetails {
                    extra: self.room_extra(&state.room)?,
                    state,
                })
            })
            .collect()
    }

    /// Accounts marked verified.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn verified_users(&self) -> Result<Vec<UserId>, KeystoreError> {
        Ok(self.get(K_VERIFIED)?.unwrap_or_default())
    }

    /// Marks `user` verified (safety number compared), or not.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn set_verified(&mut self, user: UserId, verified: bool) -> Result<(), KeystoreError> {
        let mut v = self.verified_users()?;
        v.retain(|u| *u != user);
        if verified {
            v.push(user);
        }
        self.put(K_VERIFIED, &v)
    }

    /// Every contact (but ourselves) with display name and verification.
    ///
    /// # Errors
    /// Keystore failure.
    pub fn contact_details(&self) -> Result<Vec<ContactDetails>, KeystoreError> {
        let me = self.account()?.user;
        let verified = self.verified_users()?;
        self.contacts()?
            .into_iter()
            .filter(|c| Some(c.user) != me)
            .map(|contact| {
                Ok(ContactDetails {
                    display_name: self.display_name_of(&contact.user)?,
                    verified: verified.contains(&contact.user),
                    contact,
                })
            })
            .collect()
    }
}

fn key32(b: Zeroizing<Vec<u8>>) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let mut k = Zeroizing::new([0u8; 32]);
    if b.len() != 32 {
        return Err(KeystoreError::Corrupt);
    }
    k.copy_from_slice(&b);
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::os_rng;

    fn user(b: u8) -> UserId {
        UserId::from_bytes([b; 16])
    }

    #[test]
    fn profile_round_trips_and_every_blob_has_the_same_size() {
        let mut rng = os_rng();
        let k = [7u8; 32];
        let short = seal_profile(&k, &user(1), "Al", &mut rng).unwrap();
        let long = seal_profile(&k, &user(1), &"é".repeat(64), &mut rng).unwrap();
        assert_eq!(short.len(), PROFILE_BLOB_LEN);
        assert_eq!(long.len(), PROFILE_BLOB_LEN);
        assert_eq!(
            open_profile(&k, &user(1), &short).unwrap().as_deref(),
            Some("Al")
        );
        assert_eq!(
            open_profile(&k, &user(1), &long).unwrap().unwrap().len(),
            128
        );
        let empty = seal_profile(&k, &user(1), "", &mut rng).unwrap();
        assert_eq!(open_profile(&k, &user(1), &empty).unwrap(), None);
    }

    #[test]
    fn a_name_at_the_limit_seals_and_one_more_byte_does_not() {
        let mut rng = os_rng();
        let k = [7u8; 32];
        assert!(seal_profile(&k, &user(1), &"a".repeat(MAX_DISPLAY_NAME_LEN), &mut rng).is_ok());
        assert_eq!(
            seal_profile(
                &k,
                &user(1),
                &"a".repeat(MAX_DISPLAY_NAME_LEN + 1),
                &mut rng
            ),
            Err(ProfileBlobError::NameTooLong)
        );
    }

    #[test]
    fn a_profile_opens_only_with_its_key_for_its_account() {
        let mut rng = os_rng();
        let blob = seal_profile(&[7; 32], &user(1), "Alice", &mut rng).unwrap();
        assert_eq!(
            open_profile(&[8; 32], &user(1), &blob),
            Err(ProfileBlobError::Decrypt)
        );
        // The relay handing Alice's blob out as Bob's does not work.
        assert_eq!(
            open_profile(&[7; 32], &user(2), &blob),
            Err(ProfileBlobError::Decrypt)
        );
        let mut flipped = blob.clone();
        flipped[20] ^= 1;
        assert_eq!(
            open_profile(&[7; 32], &user(1), &flipped),
            Err(ProfileBlobError::Decrypt)
        );
        assert_eq!(
            open_profile(&[7; 32], &user(1), &blob[..blob.len() - 1]),
            Err(ProfileBlobError::Malformed)
        );
        let mut version = blob;
        version[0] = 2;
        assert_eq!(
            open_profile(&[7; 32], &user(1), &version),
            Err(ProfileBlobError::Malformed)
        );
    }

    #[test]
    fn display_names_cannot_carry_terminal_controls_or_bidi_overrides() {
        assert_eq!(
            sanitize_display_name("  Eve\u{1b}[2J\u{202e}gnp.exe \n"),
            "Eve\u{fffd}[2J\u{fffd}gnp.exe"
        );
        let mut rng = os_rng();
        let blob = seal_profile(&[1; 32], &user(3), "a\u{9b}b", &mut rng).unwrap();
        assert_eq!(
            open_profile(&[1; 32], &user(3), &blob).unwrap().as_deref(),
            Some("a\u{fffd}b")
        );
    }

    #[test]
    fn invite_links_round_trip_and_other_text_is_not_a_link() {
        let t = LinkToken::from_bytes([0xab; 16]);
        let link = invite_link(&t);
        assert_eq!(link, format!("spider://join/{}", "ab".repeat(16)));
        assert_eq!(parse_invite_link(&link), Some(t));
        assert_eq!(parse_invite_link(&"ab".repeat(16)), None);
        assert_eq!(parse_invite_link("spider://join/xyz"), None);
        assert_eq!(parse_invite_link("ops"), None);
    }
}
