//! PQXDH: X3DH with an ML-KEM-768 encapsulation, as in Signal's PQXDH
//! specification, with Spider's identity keys.
//!
//! With `IK` the X25519 half of an identity, `SPK` the signed prekey, `OPK`
//! the optional one-time prekey, `EK` Alice's ephemeral key and `SS` the
//! ML-KEM-768 shared secret to Bob's (signed) KEM prekey:
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)   DH4 = DH(EK_A, OPK_B)
//! SK  = HKDF-SHA256(salt = 0^32, IKM = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4] || SS,
//!                   info = domain::KDF_PQXDH)
//! AD  = Encode(IK_A) || Encode(IK_B),   Encode(IK) = Ed25519 key (32) || X25519 key (32)
//! ```
//!
//! Every DH output must be contributory, so a low-order key in any position
//! (identity, signed prekey, one-time prekey, ephemeral) is refused.
//!
//! Replay (PQXDH §4.2 leaves it to the application): a first message that used
//! a one-time prekey cannot be accepted twice because the key is deleted on
//! first success. For first messages without one, the responder keeps a
//! [`ReplayCache`] of accepted ephemeral keys per signed prekey; an entry lives
//! as long as its signed prekey (after which the message cannot be decrypted at
//! all), within a bound of [`MAX_REPLAY_ENTRIES`].

use std::collections::VecDeque;

use core::fmt;

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::domain::{WIRE_VERSION, message_type};
use crate::error::{AcceptError, DecodeError, HandshakeError};
use crate::kdf;
use crate::keys::{
    IDENTITY_PUBLIC_KEY_LEN, IdentityKeyPair, IdentityPublicKey, KEM_CIPHERTEXT_LEN, KemPreKeyPair,
    OneTimePreKeyPair, PreKeyId, Secret32, SignedPreKeyPair, VerifiedPreKeyBundle, kem_encapsulate,
};
use crate::primitives;
use crate::ratchet::{MAX_RATCHET_MESSAGE_LEN, RatchetMessage};
use crate::wire;

/// Length of the fixed part of a [`PreKeyMessage`], before the ratchet message.
pub const PREKEY_MESSAGE_FIXED_LEN: usize =
    2 + IDENTITY_PUBLIC_KEY_LEN + 32 + 4 + 4 + 1 + 4 + KEM_CIPHERTEXT_LEN;

/// Largest encoded [`PreKeyMessage`].
pub const MAX_PREKEY_MESSAGE_LEN: usize = PREKEY_MESSAGE_FIXED_LEN + MAX_RATCHET_MESSAGE_LEN;

/// Most ephemeral keys a [`ReplayCache`] remembers. Past it the oldest entry is
/// dropped, which re-opens that one message to replay; SECURITY.md discusses
/// this. 10 000 entries is 360 KB, and more first messages than that per
/// signed-prekey lifetime means the prekey should rotate.
pub const MAX_REPLAY_ENTRIES: usize = 10_000;

/// The first message of a session (PQXDH §3.3 "initial message").
///
/// Wire layout (integers big-endian):
///
/// | offset | length | field                                                  |
/// |-------:|-------:|--------------------------------------------------------|
/// | 0      | 1      | version = `0x01`                                       |
/// | 1      | 1      | type = `0x02` (`message_type::PREKEY`)                 |
/// | 2      | 128    | sender identity public key ([`IdentityPublicKey`])     |
/// | 130    | 32     | sender ephemeral key `EK_A` (X25519)                   |
/// | 162    | 4      | signed prekey id used                                  |
/// | 166    | 4      | KEM prekey id used                                     |
/// | 170    | 1      | one-time prekey used: `0x00` or `0x01`                 |
/// | 171    | 4      | one-time prekey id (zeros when none)                   |
/// | 175    | 1088   | ML-KEM-768 ciphertext                                  |
/// | 1263   | 58..   | a complete [`RatchetMessage`] (its own version and type) |
///
/// At most [`MAX_PREKEY_MESSAGE_LEN`] bytes. The sender keeps sending these
/// (same ephemeral key and KEM ciphertext, advancing ratchet messages) until it
/// receives a reply.
#[derive(Clone, PartialEq, Eq)]
pub struct PreKeyMessage {
    sender: IdentityPublicKey,
    base_key: [u8; 32],
    signed_prekey_id: PreKeyId,
    kem_prekey_id: PreKeyId,
    one_time_prekey_id: Option<PreKeyId>,
    kem_ciphertext: Box<[u8; KEM_CIPHERTEXT_LEN]>,
    message: RatchetMessage,
}

impl fmt::Debug for PreKeyMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreKeyMessage")
            .field("signed_prekey_id", &self.signed_prekey_id)
            .field("kem_prekey_id", &self.kem_prekey_id)
            .field("one_time_prekey_id", &self.one_time_prekey_id)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl PreKeyMessage {
    pub(crate) fn new(
        pending: &PendingPreKey,
        message: RatchetMessage,
    ) -> Result<Self, DecodeError> {
        Ok(Self {
            sender: IdentityPublicKey::try_from(&pending.sender_identity[..])?,
            base_key: pending.base_key,
            signed_prekey_id: PreKeyId(pending.signed_prekey_id),
            kem_prekey_id: PreKeyId(pending.kem_prekey_id),
            one_time_prekey_id: pending.one_time_prekey_id.map(PreKeyId),
            kem_ciphertext: Box::new(
                pending
                    .kem_ciphertext
                    .as_slice()
                    .try_into()
                    .map_err(|_| DecodeError::CorruptState)?,
            ),
            message,
        })
    }

    /// The sender's identity (binding signature already checked).
    #[must_use]
    pub fn sender(&self) -> &IdentityPublicKey {
        &self.sender
    }

    /// The sender's ephemeral ("base") key, which names the session.
    #[must_use]
    pub fn base_key(&self) -> &[u8; 32] {
        &self.base_key
    }

    /// The signed prekey id used.
    #[must_use]
    pub fn signed_prekey_id(&self) -> PreKeyId {
        self.signed_prekey_id
    }

    /// The KEM prekey id used.
    #[must_use]
    pub fn kem_prekey_id(&self) -> PreKeyId {
        self.kem_prekey_id
    }

    /// The one-time prekey id used, if any.
    #[must_use]
    pub fn one_time_prekey_id(&self) -> Option<PreKeyId> {
        self.one_time_prekey_id
    }

    /// The ratchet message inside.
    #[must_use]
    pub fn message(&self) -> &RatchetMessage {
        &self.message
    }

    /// SHA-256 of the encoded fixed part (everything before the ratchet
    /// message). A responder session remembers it, so that the initiator's
    /// repeated first messages are accepted only with identical handshake
    /// fields.
    pub(crate) fn handshake_digest(&self) -> [u8; 32] {
        use sha2::Digest as _;
        let bytes = self.to_bytes();
        let fixed = bytes.get(..PREKEY_MESSAGE_FIXED_LEN).unwrap_or(&bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(&sha2::Sha256::digest(fixed));
        out
    }

    /// Encodes the message (layout in the type's doc).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let inner = self.message.to_bytes();
        let mut out = Vec::with_capacity(PREKEY_MESSAGE_FIXED_LEN + inner.len());
        out.push(WIRE_VERSION);
        out.push(message_type::PREKEY);
        out.extend_from_slice(&self.sender.to_bytes());
        out.extend_from_slice(&self.base_key);
        out.extend_from_slice(&self.signed_prekey_id.0.to_be_bytes());
        out.extend_from_slice(&self.kem_prekey_id.0.to_be_bytes());
        match self.one_time_prekey_id {
            Some(id) => {
                out.push(1);
                out.extend_from_slice(&id.0.to_be_bytes());
            }
            None => out.extend_from_slice(&[0; 5]),
        }
        out.extend_from_slice(&self.kem_ciphertext[..]);
        out.extend_from_slice(&inner);
        out
    }
}

impl TryFrom<&[u8]> for PreKeyMessage {
    type Error = DecodeError;

    /// Decodes the layout in the type's doc; checks the sender's identity
    /// binding and refuses a low-order ephemeral key.
    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = wire::open(bytes, message_type::PREKEY, MAX_PREKEY_MESSAGE_LEN)?;
        let sender = IdentityPublicKey::try_from(&r.array::<IDENTITY_PUBLIC_KEY_LEN>()?[..])?;
        let base_key = r.array::<32>()?;
        if primitives::x25519_is_low_order(&base_key) {
            return Err(DecodeError::LowOrderKey);
        }
        let signed_prekey_id = PreKeyId(r.u32()?);
        let kem_prekey_id = PreKeyId(r.u32()?);
        let has_otk = r.flag()?;
        let otk_id = r.u32()?;
        let one_time_prekey_id = match (has_otk, otk_id) {
            (true, id) => Some(PreKeyId(id)),
            (false, 0) => None,
            (false, _) => return Err(DecodeError::InvalidFlag),
        };
        let kem_ciphertext = Box::new(r.array::<KEM_CIPHERTEXT_LEN>()?);
        let message = RatchetMessage::try_from(r.rest())?;
        Ok(Self {
            sender,
            base_key,
            signed_prekey_id,
            kem_prekey_id,
            one_time_prekey_id,
            kem_ciphertext,
            message,
        })
    }
}

/// What the initiator remembers to build [`PreKeyMessage`]s until the first
/// reply arrives.
#[derive(Clone, Serialize, Deserialize, zeroize::Zeroize)]
pub(crate) struct PendingPreKey {
    pub(crate) sender_identity: Vec<u8>,
    pub(crate) base_key: [u8; 32],
    pub(crate) signed_prekey_id: u32,
    pub(crate) kem_prekey_id: u32,
    pub(crate) one_time_prekey_id: Option<u32>,
    pub(crate) kem_ciphertext: Vec<u8>,
}

/// The initiator's result: the shared secret and what the first message
/// carries.
pub(crate) struct Initiated {
    pub(crate) shared_secret: Zeroizing<[u8; 32]>,
    pub(crate) pending: PendingPreKey,
}

fn dh(private: &[u8; 32], public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, HandshakeError> {
    primitives::x25519(private, public).map_err(|_| HandshakeError::NonContributory)
}

/// PQXDH §3.3, Alice's side. The bundle's signatures were checked (the type
/// proves it); every DH is checked for contribution.
pub(crate) fn initiate<R: CryptoRng + ?Sized>(
    rng: &mut R,
    identity: &IdentityKeyPair,
    bundle: &VerifiedPreKeyBundle,
) -> Result<Initiated, HandshakeError> {
    let b = bundle.bundle();
    let ephemeral = Secret32::random(rng);
    let base_key = primitives::x25519_public(&ephemeral.0);
    let ik_b = b.identity.dh_key_bytes();
    let spk_b = &b.signed_prekey.public;
    let dh1 = dh(identity.dh_private(), spk_b)?;
    let dh2 = dh(&ephemeral.0, ik_b)?;
    let dh3 = dh(&ephemeral.0, spk_b)?;
    let dh4 = match &b.one_time_prekey {
        Some(otk) => Some(dh(&ephemeral.0, &otk.public)?),
        None => None,
    };
    let (ct, ss) =
        kem_encapsulate(rng, &b.kem_prekey).map_err(|_| HandshakeError::InvalidKemKey)?;
    let shared_secret = kdf::pqxdh_secret(&dh1, &dh2, &dh3, dh4.as_deref(), Some(&ss));
    Ok(Initiated {
        shared_secret,
        pending: PendingPreKey {
            sender_identity: identity.public().to_bytes().to_vec(),
            base_key,
            signed_prekey_id: b.signed_prekey.id.0,
            kem_prekey_id: b.kem_prekey.id().0,
            one_time_prekey_id: b.one_time_prekey.as_ref().map(|k| k.id.0),
            kem_ciphertext: ct.to_vec(),
        },
    })
}

/// PQXDH §3.4, Bob's side: the same secret from the private halves.
pub(crate) fn respond(
    identity: &IdentityKeyPair,
    signed_prekey: &SignedPreKeyPair,
    one_time_prekey: Option<&OneTimePreKeyPair>,
    kem_prekey: &KemPreKeyPair,
    message: &PreKeyMessage,
) -> Result<Zeroizing<[u8; 32]>, AcceptError> {
    let nc = |_| AcceptError::NonContributory;
    let ik_a = message.sender.dh_key_bytes();
    let ek_a = &message.base_key;
    let dh1 = primitives::x25519(signed_prekey.private(), ik_a).map_err(nc)?;
    let dh2 = primitives::x25519(identity.dh_private(), ek_a).map_err(nc)?;
    let dh3 = primitives::x25519(signed_prekey.private(), ek_a).map_err(nc)?;
    let dh4 = match one_time_prekey {
        Some(otk) => Some(primitives::x25519(otk.private(), ek_a).map_err(nc)?),
        None => None,
    };
    let ss = kem_prekey.decapsulate(&message.kem_ciphertext);
    Ok(kdf::pqxdh_secret(
        &dh1,
        &dh2,
        &dh3,
        dh4.as_deref(),
        Some(&ss),
    ))
}

/// The PQXDH associated data `Encode(IK_A) || Encode(IK_B)` (128 bytes), see
/// [`IdentityPublicKey::encode_for_ad`].
#[must_use]
pub fn associated_data(initiator: &IdentityPublicKey, responder: &IdentityPublicKey) -> Vec<u8> {
    let mut ad = Vec::with_capacity(128);
    ad.extend_from_slice(&initiator.encode_for_ad());
    ad.extend_from_slice(&responder.encode_for_ad());
    ad
}

/// Ephemeral keys of accepted first messages, per signed prekey, so that a
/// replayed first message without a one-time prekey is refused. Persist it
/// with the prekeys (it serializes) and call [`ReplayCache::retain_signed_prekeys`]
/// when signed prekeys are deleted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplayCache {
    entries: VecDeque<(u32, [u8; 32])>,
}

impl ReplayCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether this (signed prekey, ephemeral key) pair was accepted before.
    #[must_use]
    pub fn contains(&self, signed_prekey: PreKeyId, base_key: &[u8; 32]) -> bool {
        self.entries
            .iter()
            .any(|(id, k)| *id == signed_prekey.0 && k == base_key)
    }

    /// Records an accepted first message; drops the oldest entry past
    /// [`MAX_REPLAY_ENTRIES`].
    pub fn insert(&mut self, signed_prekey: PreKeyId, base_key: [u8; 32]) {
        if self.entries.len() >= MAX_REPLAY_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back((signed_prekey.0, base_key));
    }

    /// Forgets entries of signed prekeys not in `live` (deleted prekeys cannot
    /// decrypt anything, so their entries are no longer needed).
    pub fn retain_signed_prekeys(&mut self, live: &[PreKeyId]) {
        self.entries.retain(|(id, _)| live.contains(&PreKeyId(*id)));
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_is_bounded_at_its_edge() {
        let mut c = ReplayCache::new();
        for i in 0..MAX_REPLAY_ENTRIES {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_be_bytes());
            c.insert(PreKeyId(1), k);
        }
        assert_eq!(c.len(), MAX_REPLAY_ENTRIES);
        assert!(c.contains(PreKeyId(1), &[0; 32]));
        c.insert(PreKeyId(1), [0xff; 32]);
        assert_eq!(c.len(), MAX_REPLAY_ENTRIES);
        assert!(!c.contains(PreKeyId(1), &[0; 32]));
        assert!(c.contains(PreKeyId(1), &[0xff; 32]));
        assert!(!c.contains(PreKeyId(2), &[0xff; 32]));
        c.retain_signed_prekeys(&[PreKeyId(2)]);
        assert!(c.is_empty());
    }
}
