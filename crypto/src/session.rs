//! A 1:1 session: PQXDH to start, the Double Ratchet after.
//!
//! Call order. Initiator: [`Session::initiate`] with a
//! [`VerifiedPreKeyBundle`], then [`Session::encrypt`] (which yields
//! [`Message::PreKey`] until the first reply is decrypted, then
//! [`Message::Ratchet`]). Responder: on a [`Message::PreKey`] from a device with
//! no session whose [`Session::base_key`] matches, [`Session::accept`]; every
//! other message goes to [`Session::decrypt`] of the existing session. Both
//! take the time `now` (unix seconds) and an RNG; nothing here reads a clock.
//!
//! Several sessions per remote device are kept in a [`SessionRecord`] (the
//! current one and a few previous ones), and [`decrypt_from`] routes each
//! message among them, as libsignal does.

use core::fmt;

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::domain::{WIRE_VERSION, message_type};
use crate::error::{
    AcceptError, DecodeError, DecryptError, EncryptError, HandshakeError, ReceiveError, SendError,
    StartError,
};
use crate::keys::{IdentityKeyPair, IdentityPublicKey, KemPreKeyKind, VerifiedPreKeyBundle};
use crate::ratchet::{RatchetMessage, RatchetState};
use crate::store::{DeviceAddress, IdentityStore, PreKeyStore, SessionStore};
use crate::x3dh::{self, PendingPreKey, PreKeyMessage, ReplayCache};

/// Largest serialized session accepted by [`Session::from_bytes`]: room for
/// [`crate::ratchet::MAX_SKIPPED_KEYS`] skipped keys and the rest, doubled.
pub const MAX_SESSION_STATE_LEN: usize = 2 * (crate::ratchet::MAX_SKIPPED_KEYS * 80 + 4096);

/// A message of a 1:1 session, as sent and received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A first message (carries the PQXDH handshake).
    PreKey(PreKeyMessage),
    /// A Double Ratchet message.
    Ratchet(RatchetMessage),
}

impl Message {
    /// Encodes the message; the type byte tells the two kinds apart.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::PreKey(m) => m.to_bytes(),
            Self::Ratchet(m) => m.to_bytes(),
        }
    }
}

impl TryFrom<&[u8]> for Message {
    type Error = DecodeError;

    /// Dispatches on the type byte (after checking the version byte).
    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes {
            [v, ..] if *v != WIRE_VERSION => Err(DecodeError::UnsupportedVersion(*v)),
            [_, t, ..] if *t == message_type::PREKEY => {
                Ok(Self::PreKey(PreKeyMessage::try_from(bytes)?))
            }
            [_, t, ..] if *t == message_type::RATCHET => {
                Ok(Self::Ratchet(RatchetMessage::try_from(bytes)?))
            }
            [_, t, ..] => Err(DecodeError::UnknownMessageType(*t)),
            _ => Err(DecodeError::TooShort { len: bytes.len() }),
        }
    }
}

#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct SessionState {
    remote_identity: Vec<u8>,
    ad: Vec<u8>,
    base_key: [u8; 32],
    /// Responder only: digest of the accepted first message's handshake
    /// fields, which repeats must match.
    handshake_digest: Option<[u8; 32]>,
    initiator: bool,
    pending: Option<PendingPreKey>,
    ratchet: RatchetState,
}

/// One 1:1 session with one remote device. Wiped on drop; `Debug` prints no
/// secrets; [`Session::to_bytes`] serializes it for the keystore.
#[derive(Clone)]
pub struct Session {
    state: SessionState,
    remote: IdentityPublicKey,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("remote", &self.remote)
            .field("initiator", &self.state.initiator)
            .field("awaiting_reply", &self.state.pending.is_some())
            .field("ratchet", &self.state.ratchet)
            .finish()
    }
}

impl Session {
    /// PQXDH initiator: starts a session from a verified bundle. The first
    /// [`Session::encrypt`] gives the [`PreKeyMessage`].
    ///
    /// # Errors
    /// [`HandshakeError`] if a key in the bundle is of low order.
    pub fn initiate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        bundle: &VerifiedPreKeyBundle,
    ) -> Result<Self, HandshakeError> {
        let b = bundle.bundle();
        let init = x3dh::initiate(rng, identity, bundle)?;
        let ratchet = RatchetState::init_alice(rng, &init.shared_secret, &b.signed_prekey.public)
            .map_err(|_| HandshakeError::NonContributory)?;
        Ok(Self {
            state: SessionState {
                remote_identity: b.identity.to_bytes().to_vec(),
                ad: x3dh::associated_data(identity.public(), &b.identity),
                base_key: init.pending.base_key,
                handshake_digest: None,
                initiator: true,
                pending: Some(init.pending),
                ratchet,
            },
            remote: b.identity.clone(),
        })
    }

    /// PQXDH responder: accepts a first message and decrypts it. Consumes the
    /// one-time prekey (and a one-time KEM prekey) and records the ephemeral
    /// key in `replay` only if decryption succeeds, so a corrupted first
    /// message leaves every prekey usable. Returns the session and the
    /// plaintext (an ordinary `Vec`, not wiped on drop).
    ///
    /// Check the sender's identity against the [`crate::store::IdentityStore`]
    /// (see [`PreKeyMessage::sender`]) before or after, as the application's
    /// trust policy says.
    ///
    /// # Errors
    /// [`AcceptError`]; nothing is consumed or recorded on error.
    pub fn accept<R: CryptoRng + ?Sized, S: PreKeyStore + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        prekeys: &mut S,
        replay: &mut ReplayCache,
        message: &PreKeyMessage,
        now: u64,
    ) -> Result<(Self, Vec<u8>), AcceptError> {
        if replay.contains(message.signed_prekey_id(), message.base_key()) {
            return Err(AcceptError::Replayed);
        }
        let spk = prekeys
            .signed_prekey(message.signed_prekey_id())?
            .ok_or(AcceptError::UnknownSignedPreKey)?;
        let kem = prekeys
            .kem_prekey(message.kem_prekey_id())?
            .ok_or(AcceptError::UnknownKemPreKey)?;
        let otk = match message.one_time_prekey_id() {
            Some(id) => Some(
                prekeys
                    .one_time_prekey(id)?
                    .ok_or(AcceptError::UnknownOneTimePreKey)?,
            ),
            None => None,
        };
        let sk = x3dh::respond(identity, &spk, otk.as_ref(), &kem, message)?;
        let spk_public = spk.public().public;
        let mut ratchet = RatchetState::init_bob(&sk, spk.private(), &spk_public);
        let ad = x3dh::associated_data(message.sender(), identity.public());
        let plaintext = ratchet.decrypt(rng, message.message(), &ad, now)?;

        // Success: only now consume (PQXDH §3.4: delete the one-time keys).
        if let Some(otk) = &otk {
            prekeys.remove_one_time_prekey(otk.id())?;
        }
        if kem.kind() == KemPreKeyKind::OneTime {
            prekeys.remove_kem_prekey(kem.id())?;
        }
        replay.insert(message.signed_prekey_id(), *message.base_key());
        let session = Self {
            state: SessionState {
                remote_identity: message.sender().to_bytes().to_vec(),
                ad,
                base_key: *message.base_key(),
                handshake_digest: Some(message.handshake_digest()),
                initiator: false,
                pending: None,
                ratchet,
            },
            remote: message.sender().clone(),
        };
        Ok((session, plaintext))
    }

    /// Encrypts `plaintext`. Until the first reply is decrypted, an initiator's
    /// messages are [`Message::PreKey`], so that whichever arrives first
    /// establishes the session.
    ///
    /// # Errors
    /// [`EncryptError`].
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Message, EncryptError> {
        let message = self.state.ratchet.encrypt(plaintext, &self.state.ad)?;
        match &self.state.pending {
            Some(pending) => Ok(Message::PreKey(
                PreKeyMessage::new(pending, message).map_err(|_| EncryptError::ChainUnavailable)?,
            )),
            None => Ok(Message::Ratchet(message)),
        }
    }

    /// Decrypts a message of this session. On any error the session is left
    /// exactly as it was. The plaintext is an ordinary `Vec` (not wiped).
    ///
    /// A [`Message::PreKey`] is accepted here only by the responder session it
    /// created (same sender identity and ephemeral key): the initiator's
    /// repeats before our first reply.
    ///
    /// # Errors
    /// [`DecryptError`].
    pub fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        message: &Message,
        now: u64,
    ) -> Result<Vec<u8>, DecryptError> {
        let inner = match message {
            Message::Ratchet(m) => m,
            Message::PreKey(m) => {
                // Every handshake field must be the one accepted: the inner
                // message is authenticated by the session, the outer fields
                // by this comparison.
                if self.state.initiator
                    || m.base_key() != &self.state.base_key
                    || m.sender() != &self.remote
                    || self.state.handshake_digest != Some(m.handshake_digest())
                {
                    return Err(DecryptError::WrongSession);
                }
                m.message()
            }
        };
        let plaintext = self
            .state
            .ratchet
            .decrypt(rng, inner, &self.state.ad, now)?;
        // Any message from the peer proves it holds the session: stop
        // sending the handshake (libsignal behaves the same).
        self.state.pending = None;
        Ok(plaintext)
    }

    /// The remote device's identity.
    #[must_use]
    pub fn remote_identity(&self) -> &IdentityPublicKey {
        &self.remote
    }

    /// The initiator's ephemeral key, which names this session.
    #[must_use]
    pub fn base_key(&self) -> &[u8; 32] {
        &self.state.base_key
    }

    /// True until an initiator session has decrypted a reply.
    #[must_use]
    pub fn awaiting_reply(&self) -> bool {
        self.state.pending.is_some()
    }

    /// Serializes the session for the keystore:
    ///
    /// | offset | length | field                                        |
    /// |-------:|-------:|----------------------------------------------|
    /// | 0      | 1      | version = `0x01`                             |
    /// | 1      | 1      | type = `0x20` (`message_type::SESSION_STATE`) |
    /// | 2      | ..     | postcard encoding of the state               |
    ///
    /// The result holds secrets and is wiped when dropped; encrypt it at rest.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![WIRE_VERSION, message_type::SESSION_STATE]);
        // Serializing plain bytes and integers into a Vec cannot fail.
        #[allow(clippy::expect_used)]
        let body = Zeroizing::new(
            postcard::to_allocvec(&self.state).expect("postcard serializes plain data to a Vec"),
        );
        out.extend_from_slice(&body);
        out
    }

    /// Restores a session from [`Session::to_bytes`].
    ///
    /// # Errors
    /// [`DecodeError`] for a wrong version or type, or corrupt state.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = crate::wire::open(bytes, message_type::SESSION_STATE, MAX_SESSION_STATE_LEN)?;
        let (state, trailing): (SessionState, _) =
            postcard::take_from_bytes(r.rest()).map_err(|_| DecodeError::CorruptState)?;
        let remote = IdentityPublicKey::try_from(&state.remote_identity[..])
            .map_err(|_| DecodeError::CorruptState)?;
        if !trailing.is_empty() || state.ad.len() != 128 {
            return Err(DecodeError::CorruptState);
        }
        Ok(Self { state, remote })
    }

    /// Deletes skipped message keys older than
    /// [`crate::ratchet::SKIPPED_KEY_MAX_AGE_SECS`] at `now`, for forward
    /// secrecy even when no message arrives (decryption also does this).
    /// Returns how many were deleted.
    pub fn expire_skipped_keys(&mut self, now: u64) -> usize {
        self.state.ratchet.expire(now)
    }

    /// Number of stored skipped message keys (for tests and diagnostics).
    #[must_use]
    pub fn skipped_key_count(&self) -> usize {
        self.state.ratchet.skipped_len()
    }
}

// ---------------------------------------------------------------------------
// Several sessions per remote device

/// Most previous sessions a [`SessionRecord`] keeps besides the current one.
///
/// Why keep any: when two devices start a session with each other at the same
/// moment, or a peer starts afresh while our messages are in flight, messages
/// of the session just replaced are still on their way; libsignal keeps up to
/// 40 "archived states" per device for this. Why only 8: each kept session
/// still holds receiving chain keys (forward secrecy of messages not yet
/// received ends only when it is dropped), every message is tried against
/// each of them, and the whole record is re-encrypted into the keystore on
/// every message. Eight covers a simultaneous start (two sessions) with room
/// for several reinstalls in flight at once. SECURITY.md records the choice.
pub const MAX_PREVIOUS_SESSIONS: usize = 8;

/// Largest serialized record accepted by [`SessionRecord::from_bytes`].
pub const MAX_SESSION_RECORD_LEN: usize =
    3 + (1 + MAX_PREVIOUS_SESSIONS) * (4 + MAX_SESSION_STATE_LEN);

/// The sessions kept for one remote device: the current one, used to send,
/// and up to [`MAX_PREVIOUS_SESSIONS`] previous ones, newest first, which
/// still receive (Signal's `SessionRecord` with its archived states).
///
/// A message is tried against the current session, then the previous ones;
/// the session that decrypts it becomes current, so both devices converge on
/// the session that last received a message. Wiped on drop (each session is).
#[derive(Clone)]
pub struct SessionRecord {
    current: Session,
    previous: Vec<Session>,
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("current", &self.current)
            .field("previous", &self.previous.len())
            .finish()
    }
}

impl SessionRecord {
    /// A record holding only `session`.
    #[must_use]
    pub fn new(session: Session) -> Self {
        Self {
            current: session,
            previous: Vec::new(),
        }
    }

    /// The current session (the one [`encrypt_to`] uses).
    #[must_use]
    pub fn current(&self) -> &Session {
        &self.current
    }

    /// The current session, mutably.
    pub fn current_mut(&mut self) -> &mut Session {
        &mut self.current
    }

    /// The previous sessions, newest first.
    #[must_use]
    pub fn previous(&self) -> &[Session] {
        &self.previous
    }

    /// Makes `session` current; the old current one becomes the newest
    /// previous session and the oldest beyond [`MAX_PREVIOUS_SESSIONS`] is
    /// dropped (and wiped).
    pub fn promote(&mut self, session: Session) {
        let old = core::mem::replace(&mut self.current, session);
        self.previous.insert(0, old);
        self.previous.truncate(MAX_PREVIOUS_SESSIONS);
    }

    /// Index 0 is the current session, `i + 1` the previous session `i`.
    fn get(&self, index: usize) -> Option<&Session> {
        match index {
            0 => Some(&self.current),
            i => self.previous.get(i - 1),
        }
    }

    fn len(&self) -> usize {
        1 + self.previous.len()
    }

    /// Decrypts with the session at `index` (see [`Self::get`]) and on success
    /// makes it current. On error the record is unchanged.
    fn decrypt_with<R: CryptoRng + ?Sized>(
        &mut self,
        index: usize,
        rng: &mut R,
        message: &Message,
        now: u64,
    ) -> Result<Vec<u8>, DecryptError> {
        if index == 0 {
            return self.current.decrypt(rng, message, now);
        }
        let slot = self
            .previous
            .get_mut(index - 1)
            .ok_or(DecryptError::WrongSession)?;
        let plaintext = slot.decrypt(rng, message, now)?;
        let session = self.previous.remove(index - 1);
        self.promote(session);
        Ok(plaintext)
    }

    /// Decrypts a ratchet message with the first session (current, then
    /// previous, newest first) that accepts it, and makes that one current.
    /// Every failed try leaves its session untouched; if none decrypts, the
    /// record is unchanged and the current session's error is returned.
    ///
    /// # Errors
    /// [`DecryptError`].
    pub fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        message: &Message,
        now: u64,
    ) -> Result<Vec<u8>, DecryptError> {
        let first_err = match self.current.decrypt(rng, message, now) {
            Ok(plaintext) => return Ok(plaintext),
            Err(e) => e,
        };
        for index in 1..self.len() {
            if let Ok(plaintext) = self.decrypt_with(index, rng, message, now) {
                return Ok(plaintext);
            }
        }
        Err(first_err)
    }

    /// The responder session created by the first message with this base key,
    /// if it is still kept.
    fn responder_session_for(&self, base_key: &[u8; 32]) -> Option<usize> {
        (0..self.len()).find(|&i| {
            self.get(i)
                .is_some_and(|s| !s.state.initiator && s.base_key() == base_key)
        })
    }

    /// Serializes the record for the keystore:
    ///
    /// | offset | length | field                                                   |
    /// |-------:|-------:|---------------------------------------------------------|
    /// | 0      | 1      | version = `0x01`                                        |
    /// | 1      | 1      | type = `0x21` (`message_type::SESSION_RECORD`)          |
    /// | 2      | 1      | number of sessions `k`, 1 ..= 1 + [`MAX_PREVIOUS_SESSIONS`] |
    /// | 3      | ..     | `k` times: length (u32, big-endian) and [`Session::to_bytes`]; current first, then previous newest first |
    ///
    /// The result holds secrets and is wiped when dropped; encrypt it at rest.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![WIRE_VERSION, message_type::SESSION_RECORD]);
        // At most 1 + MAX_PREVIOUS_SESSIONS sessions (promote truncates).
        out.push(u8::try_from(self.len()).unwrap_or(u8::MAX));
        for session in core::iter::once(&self.current).chain(&self.previous) {
            let bytes = session.to_bytes();
            // A session is at most MAX_SESSION_STATE_LEN bytes, far below 4 GiB.
            out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Restores a record from [`SessionRecord::to_bytes`]. A lone session
    /// ([`Session::to_bytes`], as stored before records existed) is read as a
    /// record with no previous sessions.
    ///
    /// # Errors
    /// [`DecodeError`] for a wrong version or type, too many sessions, or
    /// corrupt state.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.get(1) == Some(&message_type::SESSION_STATE) {
            return Session::from_bytes(bytes).map(Self::new);
        }
        let mut r = crate::wire::open(bytes, message_type::SESSION_RECORD, MAX_SESSION_RECORD_LEN)?;
        let count = usize::from(r.u8()?);
        if count == 0 || count > 1 + MAX_PREVIOUS_SESSIONS {
            return Err(DecodeError::CorruptState);
        }
        let mut sessions = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::try_from(r.u32()?).map_err(|_| DecodeError::CorruptState)?;
            sessions.push(Session::from_bytes(r.bytes(len)?)?);
        }
        r.finish()?;
        let mut sessions = sessions.into_iter();
        let current = sessions.next().ok_or(DecodeError::CorruptState)?;
        Ok(Self {
            current,
            previous: sessions.collect(),
        })
    }
}

// ---------------------------------------------------------------------------
// Driving sessions through the stores

/// Starts a session with `address` from a verified bundle and stores it as
/// the current session (a session already held becomes a previous one, so
/// that replies to it still decrypt), after checking the bundle's identity
/// against the identity store (trust on first use: a changed identity is
/// refused until the application accepts it with
/// [`IdentityStore::save_identity`]).
///
/// # Errors
/// [`StartError`].
pub fn start_session<R, I, S>(
    rng: &mut R,
    identities: &mut I,
    sessions: &mut S,
    address: &DeviceAddress,
    bundle: &VerifiedPreKeyBundle,
) -> Result<(), StartError>
where
    R: CryptoRng + ?Sized,
    I: IdentityStore + ?Sized,
    S: SessionStore + ?Sized,
{
    let remote = &bundle.bundle().identity;
    if !identities.is_trusted(address, remote)? {
        return Err(StartError::UntrustedIdentity);
    }
    let session = Session::initiate(rng, identities.identity_key_pair(), bundle)?;
    let record = match sessions.load_session(address)? {
        Some(mut record) => {
            record.promote(session);
            record
        }
        None => SessionRecord::new(session),
    };
    sessions.store_session(address, &record)?;
    identities.save_identity(address, remote)?;
    Ok(())
}

/// Encrypts for `address` with the current session and stores the advanced
/// record.
///
/// # Errors
/// [`SendError`].
pub fn encrypt_to<S: SessionStore + ?Sized>(
    sessions: &mut S,
    address: &DeviceAddress,
    plaintext: &[u8],
) -> Result<Message, SendError> {
    let mut record = sessions
        .load_session(address)?
        .ok_or(SendError::NoSession)?;
    let message = record.current_mut().encrypt(plaintext)?;
    sessions.store_session(address, &record)?;
    Ok(message)
}

/// Decrypts a message from `address`, routing it (libsignal's
/// `message_decrypt`):
///
/// - a ratchet message is tried against the current session, then the
///   previous ones ([`SessionRecord::decrypt`]);
/// - a first message whose base key names a responder session still in the
///   record (the initiator repeats it until we reply) decrypts through that
///   session, so a repeat is never refused as a replay, and a true replay is
///   refused by that session's ratchet as a duplicate;
/// - any other first message goes to [`Session::accept`] and its session
///   becomes current, even when one exists (the peer started afresh, or both
///   devices started at once); the replaced session is kept as a previous one.
///
/// Whichever session decrypts becomes current, so both devices converge on the
/// session that last received a message. The sender's identity is checked
/// against the identity store before anything is consumed. Nothing is stored
/// on error.
///
/// # Errors
/// [`ReceiveError`].
#[allow(clippy::too_many_arguments)]
pub fn decrypt_from<R, I, P, S>(
    rng: &mut R,
    identities: &mut I,
    prekeys: &mut P,
    replay: &mut ReplayCache,
    sessions: &mut S,
    address: &DeviceAddress,
    message: &Message,
    now: u64,
) -> Result<Vec<u8>, ReceiveError>
where
    R: CryptoRng + ?Sized,
    I: IdentityStore + ?Sized,
    P: PreKeyStore + ?Sized,
    S: SessionStore + ?Sized,
{
    let existing = sessions.load_session(address)?;
    match message {
        Message::Ratchet(_) => {
            let mut record = existing.ok_or(ReceiveError::NoSession)?;
            let plaintext = record.decrypt(rng, message, now)?;
            sessions.store_session(address, &record)?;
            Ok(plaintext)
        }
        Message::PreKey(first) => {
            if !identities.is_trusted(address, first.sender())? {
                return Err(ReceiveError::UntrustedIdentity);
            }
            if let Some(mut record) = existing.clone()
                && let Some(index) = record.responder_session_for(first.base_key())
            {
                let plaintext = record.decrypt_with(index, rng, message, now)?;
                sessions.store_session(address, &record)?;
                return Ok(plaintext);
            }
            let (session, plaintext) = Session::accept(
                rng,
                identities.identity_key_pair(),
                prekeys,
                replay,
                first,
                now,
            )?;
            let record = match existing {
                Some(mut record) => {
                    record.promote(session);
                    record
                }
                None => SessionRecord::new(session),
            };
            sessions.store_session(address, &record)?;
            identities.save_identity(address, first.sender())?;
            Ok(plaintext)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KemPreKeyPair, OneTimePreKeyPair, PreKeyBundle, PreKeyId, SignedPreKeyPair};
    use crate::store::InMemPreKeyStore;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn leaks(text: &str, secret: &[u8]) -> bool {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let upper = hex.to_uppercase();
        let decimal = format!("{:?}", &secret[..4]);
        let decimal = &decimal[1..decimal.len() - 1];
        text.contains(&hex[..8]) || text.contains(&upper[..8]) || text.contains(decimal)
    }

    #[test]
    fn session_debug_output_never_contains_key_bytes() {
        let mut rng = ChaCha20Rng::from_seed([8; 32]);
        let bob = IdentityKeyPair::generate(&mut rng);
        let alice = IdentityKeyPair::generate(&mut rng);
        let spk = SignedPreKeyPair::generate(&mut rng, &bob, PreKeyId(1), 0);
        let kem = KemPreKeyPair::generate(&mut rng, &bob, PreKeyId(1), KemPreKeyKind::OneTime, 0);
        let otk = OneTimePreKeyPair::generate(&mut rng, PreKeyId(1));
        let bundle = PreKeyBundle {
            identity: bob.public().clone(),
            signed_prekey: spk.public(),
            kem_prekey: kem.public().clone(),
            one_time_prekey: Some(otk.public()),
        };
        let mut store = InMemPreKeyStore::new();
        store.save_signed_prekey(spk).unwrap();
        store.save_kem_prekey(kem).unwrap();
        store.save_one_time_prekey(otk).unwrap();
        let mut a = Session::initiate(&mut rng, &alice, &bundle.verify().unwrap()).unwrap();
        let first = a.encrypt(b"secret plaintext 1").unwrap();
        let _skipped = a.encrypt(b"two").unwrap();
        let third = a.encrypt(b"three").unwrap();
        let Message::PreKey(first) = first else {
            panic!()
        };
        let mut replay = ReplayCache::new();
        let (mut b, _) =
            Session::accept(&mut rng, &bob, &mut store, &mut replay, &first, 0).unwrap();
        b.decrypt(&mut rng, &third, 0).unwrap();
        assert_eq!(b.skipped_key_count(), 1);
        for session in [&a, &b] {
            let text = format!("{session:?} {session:#?} {first:?} {third:?}");
            let secrets = session.state.ratchet.secrets();
            assert!(secrets.len() >= 3);
            for secret in secrets {
                assert!(
                    !leaks(&text, &secret),
                    "Debug output leaks a secret: {text}"
                );
            }
            assert!(!text.contains("secret plaintext"));
            // Nothing that looks like a byte array at all.
            assert!(!text.contains(", 0, ") && !text.contains("[0"));
        }
    }
}
